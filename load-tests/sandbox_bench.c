/*
 * sandbox_bench.c: the sandbox engine's latency, beside bubblewrap and a bare process, all
 * measured in the same run.  Prints its parameters and one JSON object with percentiles (ms).
 *
 *   sandbox_bench [-n ITER] [--no-bwrap] [--create-only]
 *
 * --create-only measures the first row only (quick A/B comparisons on a noisy host).
 *
 * Rows:
 *   sandbox_create_destroy       sb_sandbox_create -> ready -> sb_sandbox_destroy -> done
 *   sandbox_create, _destroy     the two halves of the same iterations (not a separate run)
 *   sandbox_true                 create -> run /bin/true -> destroy
 *   sandbox_python_cold          create -> run python3 -c 'print(1)' -> destroy
 *   sandbox_python_warm_exec     python3 -c 'print(1)' in an already created sandbox
 *   bwrap_true / bwrap_python    bwrap --unshare-all (new root of ro binds, /proc, /dev,
 *                                tmpfs /tmp) running the same commands
 *   bare_true / bare_python      fork+exec+wait, no isolation
 * bwrap rows are skipped when bwrap is not installed (it is not a SoulBox dependency).
 */
#include "sandbox/sandbox.h"
#include "base/clock.h"
#include "base/err.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static uv_loop_t loop;
static sb_engine_t *eng;
static int flag;
static sb_sandbox_t *cur;

static void
on_created(sb_sandbox_t *sb, int status, void *ud)
{
    (void)ud;
    if (status < 0) {
        fprintf(stderr, "create failed: %s\n", sb_strerror(status));
        exit(1);
    }
    cur = sb;
    flag = 1;
}
static void
on_destroyed(void *ud)
{
    (void)ud;
    flag = 1;
}
static void
on_done(sb_sandbox_run_t *r, const sb_run_result_t *res, void *ud)
{
    (void)r;
    (void)ud;
    if (res->status != SB_RUN_EXITED || res->exit_code != 0) {
        fprintf(stderr, "run failed: %s\n", sb_run_status_name(res->status));
        exit(1);
    }
    flag = 1;
}

static void
wait_flag(void)
{
    while (!flag)
        uv_run(&loop, UV_RUN_ONCE);
    flag = 0;
}

static void
sb_create(void)
{
    if (sb_sandbox_create(eng, NULL, on_created, NULL) < 0)
        exit(1);
    wait_flag();
}
static void
sb_destroy(void)
{
    sb_sandbox_destroy(cur, on_destroyed, NULL);
    wait_flag();
}
static void
sb_exec(const char *const *argv)
{
    sb_exec_opts_t o = {.argv = argv};
    if (sb_sandbox_exec(cur, &o, NULL, on_done, NULL, NULL) < 0)
        exit(1);
    wait_flag();
}

static void
spawn_wait(char *const *argv)
{
    pid_t pid;
    int st;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0)
        exit(1);
    posix_spawn_file_actions_destroy(&fa);
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "%s failed\n", argv[0]);
        exit(1);
    }
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void
report(const char *name, double *v, int n, int *first)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    printf("%s\n  \"%s\": {\"n\": %d, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"mean\": %.3f, "
           "\"max\": %.3f}",
           *first ? "" : ",", name, n, v[n / 2], v[(int)(n * 0.9)], v[(int)(n * 0.99)], sum / n,
           v[n - 1]);
    *first = 0;
    fflush(stdout);
}

#define MEASURE(name, body)                                                                        \
    do {                                                                                           \
        for (int i = 0; i < n + warm; i++) {                                                       \
            uint64_t t0 = sb_now_mono_us();                                                        \
            body;                                                                                  \
            if (i >= warm)                                                                         \
                v[i - warm] = (double)(sb_now_mono_us() - t0) / 1000.0;                            \
        }                                                                                          \
        report(name, v, n, &first);                                                                \
    } while (0)

int
main(int argc, char **argv)
{
    int n = 200, warm = 5, bwrap = 1, first = 1, create_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-bwrap"))
            bwrap = 0;
        else if (!strcmp(argv[i], "--create-only"))
            create_only = 1;
    }
    if (n < 1)
        n = 1;
    if (bwrap && access("/usr/bin/bwrap", X_OK) != 0)
        bwrap = 0;
    double *v = calloc((size_t)n, sizeof *v), *vc = calloc((size_t)n, sizeof *vc),
           *vd = calloc((size_t)n, sizeof *vd);
    uv_loop_init(&loop);
    if (sb_engine_new(&loop, NULL, &eng) < 0)
        return 1;
    const char *tru[] = {"/bin/true", NULL};
    const char *py[] = {"/usr/bin/python3", "-c", "print(1)", NULL};
    fprintf(stderr, "sandbox_bench: n=%d warmup=%d bwrap=%s cgroup=%s\n", n, warm,
            bwrap ? "yes" : "no", sb_cgroup_kind_name(sb_engine_cgroups(eng)->kind));
    printf("{\"params\": {\"n\": %d, \"warmup\": %d, \"cgroup\": \"%s\"},\n \"ms\": {", n, warm,
           sb_cgroup_kind_name(sb_engine_cgroups(eng)->kind));
    MEASURE("sandbox_create_destroy", do {
        uint64_t h0 = sb_now_mono_us();
        sb_create();
        uint64_t h1 = sb_now_mono_us();
        sb_destroy();
        if (i >= warm) {
            vc[i - warm] = (double)(h1 - h0) / 1000.0;
            vd[i - warm] = (double)(sb_now_mono_us() - h1) / 1000.0;
        }
    } while (0));
    report("sandbox_create", vc, n, &first);
    report("sandbox_destroy", vd, n, &first);
    if (create_only)
        goto out;
    MEASURE("sandbox_true", (sb_create(), sb_exec(tru), sb_destroy()));
    MEASURE("sandbox_python_cold", (sb_create(), sb_exec(py), sb_destroy()));
    sb_create();
    MEASURE("sandbox_python_warm_exec", sb_exec(py));
    MEASURE("sandbox_true_warm_exec", sb_exec(tru));
    sb_destroy();
    char *bare_t[] = {"/bin/true", NULL};
    char *bare_p[] = {"/usr/bin/python3", "-c", "print(1)", NULL};
    MEASURE("bare_true", spawn_wait(bare_t));
    MEASURE("bare_python", spawn_wait(bare_p));
    if (bwrap) {
#define BW "/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr", \
           "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", \
           "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"
        char *bw_t[] = {BW, "/bin/true", NULL};
        char *bw_p[] = {BW, "/usr/bin/python3", "-c", "print(1)", NULL};
        MEASURE("bwrap_true", spawn_wait(bw_t));
        MEASURE("bwrap_python", spawn_wait(bw_p));
    }
out:
    printf("\n }\n}\n");
    sb_engine_free(eng);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(v);
    free(vc);
    free(vd);
    return 0;
}
