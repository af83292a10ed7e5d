/*
 * run_cli.c: `soulbox run` (see run_cli.h).  Its own libuv loop and engine: create a sandbox,
 * write the program to /home/user, run the runtime on it with the limits given, print the
 * output (streamed) or the JSON record, destroy the sandbox, and exit with a status that
 * mirrors the program's.  Everything is torn down before returning, so a run leaves no
 * process, cgroup or state dir behind.
 */
#include "run_cli.h"

#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RUN_CODE_MAX (8u << 20)

typedef struct {
    const char *name, *bin, *ext;
} run_runtime_t;

static const run_runtime_t run_runtimes[] = {
    {"python", "python3", "py"}, {"python3", "python3", "py"}, {"py", "python3", "py"},
    {"node", "node", "js"},      {"javascript", "node", "js"}, {"js", "node", "js"},
    {"bash", "bash", "sh"},      {"sh", "sh", "sh"},
};

typedef struct {
    uv_loop_t loop;
    sb_engine_t *engine;
    sb_sandbox_t *sb;
    const run_runtime_t *rt;
    sb_buf_t code, input;
    char path[64];
    char **args;
    int nargs;
    int json;
    sb_sandbox_limits_t lim;
    sb_exec_opts_t ex;
    int rc; /* exit status */
    json_t *result;
} run_t;

static int
run_read_all(int fd, sb_buf_t *b)
{
    for (;;) {
        if (sb_buf_reserve(b, 65536) != 0)
            return SB_ETOOBIG;
        ssize_t n = read(fd, b->data + b->len, 65536);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        b->len += (size_t)n;
    }
}

/* JSON strings must be UTF-8: invalid bytes become U+FFFD. */
static json_t *
run_json_text(const uint8_t *p, size_t n)
{
    sb_buf_t b;
    sb_buf_init(&b, 0);
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (p[i + k] & 0xc0) == 0x80;
        if (ok && len == 1 && c == 0)
            ok = 1;
        if (ok) {
            sb_buf_append(&b, p + i, len);
            i += len;
        } else {
            sb_buf_append(&b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    json_t *j = json_stringn_nocheck(b.len ? (const char *)b.data : "", b.len);
    sb_buf_fini(&b);
    return j;
}

static void
run_destroyed(void *ud)
{
    run_t *r = ud;
    r->sb = NULL;
}

static void
run_output(sb_sandbox_run_t *h, int fd, const uint8_t *data, size_t len, void *ud)
{
    run_t *r = ud;
    (void)h;
    if (r->json)
        return;
    fwrite(data, 1, len, fd == 2 ? stderr : stdout);
    fflush(fd == 2 ? stderr : stdout);
}

static void
run_done(sb_sandbox_run_t *h, const sb_run_result_t *res, void *ud)
{
    run_t *r = ud;
    (void)h;
    switch (res->status) {
    case SB_RUN_EXITED: r->rc = res->exit_code; break;
    case SB_RUN_SIGNALED: r->rc = 128 + res->signal; break;
    case SB_RUN_TIMEOUT: r->rc = SB_RUN_EXIT_TIMEOUT; break;
    case SB_RUN_CPU_LIMIT: r->rc = SB_RUN_EXIT_CPU; break;
    case SB_RUN_MEMORY_LIMIT: r->rc = SB_RUN_EXIT_MEMORY; break;
    case SB_RUN_OUTPUT_LIMIT: r->rc = SB_RUN_EXIT_OUTPUT; break;
    case SB_RUN_KILLED: r->rc = SB_RUN_EXIT_KILLED; break;
    default: r->rc = SB_RUN_EXIT_LOST; break;
    }
    json_t *j = json_object();
    json_object_set_new(j, "status", json_string(sb_run_status_name(res->status)));
    json_object_set_new(j, "exit_code", res->status == SB_RUN_EXITED ? json_integer(res->exit_code) : json_null());
    json_object_set_new(j, "signal", res->signal ? json_integer(res->signal) : json_null());
    json_object_set_new(j, "stdout", run_json_text(res->out, res->out_len));
    json_object_set_new(j, "stderr", run_json_text(res->err, res->err_len));
    json_object_set_new(j, "stdout_truncated", json_boolean(res->out_truncated));
    json_object_set_new(j, "stderr_truncated", json_boolean(res->err_truncated));
    json_object_set_new(j, "execution_time_ms", json_integer((json_int_t)res->execution_time_ms));
    json_object_set_new(j, "cpu_time_ms", json_integer((json_int_t)res->cpu_time_ms));
    json_object_set_new(j, "memory_peak_bytes", json_integer((json_int_t)res->memory_peak_bytes));
    if (res->error)
        json_object_set_new(j, "error", json_string(sb_strerror(res->error)));
    json_t *s = json_object();
    json_object_set_new(s, "host_uid", json_integer(sb_sandbox_host_uid(r->sb)));
    json_object_set_new(s, "cgroup", json_string(sb_sandbox_cgroup_name(r->sb)));
    json_object_set_new(s, "cgroup_version",
                        json_string(sb_cgroup_kind_name(sb_engine_cgroups(r->engine)->kind)));
    json_object_set_new(j, "sandbox", s);
    r->result = j;
    if (!r->json && res->status != SB_RUN_EXITED)
        fprintf(stderr, "soulbox: %s%s%s\n", sb_run_status_name(res->status),
                res->signal ? ", signal " : "", res->signal ? strsignal(res->signal) : "");
    sb_sandbox_destroy(r->sb, run_destroyed, r);
}

static void
run_written(const sb_file_result_t *fr, void *ud)
{
    run_t *r = ud;
    if (fr->err) {
        fprintf(stderr, "soulbox: cannot write the program into the sandbox: %s\n",
                sb_strerror(fr->err));
        r->rc = SB_RUN_EXIT_SANDBOX;
        sb_sandbox_destroy(r->sb, run_destroyed, r);
        return;
    }
    const char **argv = sb_xcalloc((size_t)r->nargs + 3, sizeof *argv);
    argv[0] = r->rt->bin;
    argv[1] = r->path;
    for (int i = 0; i < r->nargs; i++)
        argv[2 + i] = r->args[i];
    r->ex.argv = argv;
    r->ex.stdin_data = r->input.data;
    r->ex.stdin_len = r->input.len;
    int rc = sb_sandbox_exec(r->sb, &r->ex, run_output, run_done, r, NULL);
    free(argv);
    if (rc < 0) {
        fprintf(stderr, "soulbox: cannot start the program: %s\n", sb_strerror(rc));
        r->rc = SB_RUN_EXIT_SANDBOX;
        sb_sandbox_destroy(r->sb, run_destroyed, r);
    }
}

static void
run_created(sb_sandbox_t *sb, int status, void *ud)
{
    run_t *r = ud;
    if (status < 0) {
        fprintf(stderr, "soulbox: cannot create a sandbox: %s\n", sb_strerror(status));
        r->rc = SB_RUN_EXIT_SANDBOX;
        return;
    }
    r->sb = sb;
    int rc = sb_sandbox_file_write(sb, r->path, r->code.data, r->code.len, 0644, false,
                                   run_written, r);
    if (rc < 0) {
        run_written(&(sb_file_result_t){.err = rc}, r);
    }
}

static const run_runtime_t *
run_runtime(const char *name, const char *file)
{
    if (!name && file) {
        const char *dot = strrchr(file, '.');
        name = dot ? dot + 1 : NULL;
    }
    for (size_t i = 0; name && i < sizeof run_runtimes / sizeof run_runtimes[0]; i++)
        if (!strcmp(name, run_runtimes[i].name) || !strcmp(name, run_runtimes[i].ext))
            return &run_runtimes[i];
    return NULL;
}

static void
run_usage(void)
{
    fprintf(stderr,
            "usage: soulbox run [-r RUNTIME] [-i INPUT] [--timeout MS] [--cpu-time MS] "
            "[--memory MB]\n"
            "                   [--pids N] [--disk MB] [--output BYTES] [--json] FILE|- [ARGS...]\n"
            "runtimes: python, node, bash, sh\n");
}

int
sb_cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"runtime", 1, 0, 'r'}, {"input", 1, 0, 'i'},   {"timeout", 1, 0, 't'},
        {"cpu-time", 1, 0, 'c'}, {"memory", 1, 0, 'm'}, {"pids", 1, 0, 'p'},
        {"disk", 1, 0, 'd'},    {"output", 1, 0, 'o'},  {"json", 0, 0, 'j'},
        {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    run_t r;
    const char *rtname = NULL, *input = NULL;
    memset(&r, 0, sizeof r);
    sb_buf_init(&r.code, RUN_CODE_MAX);
    sb_buf_init(&r.input, RUN_CODE_MAX);
    r.rc = SB_RUN_EXIT_SANDBOX;
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "+r:i:jh", opts, NULL)) != -1) {
        char *end = NULL;
        unsigned long long v = optarg ? strtoull(optarg, &end, 10) : 0;
        if (optarg && (o == 't' || o == 'c' || o == 'm' || o == 'p' || o == 'd' || o == 'o') &&
            (*end || !*optarg)) {
            fprintf(stderr, "soulbox run: --%s needs a number\n", opts[o == 't' ? 2 : 0].name);
            return 2;
        }
        switch (o) {
        case 'r': rtname = optarg; break;
        case 'i': input = optarg; break;
        case 't': r.ex.timeout_ms = v; break;
        case 'c': r.ex.cpu_ms = v; break;
        case 'm': r.lim.memory_bytes = v << 20; break;
        case 'p': r.lim.pids = (uint32_t)v; break;
        case 'd': r.lim.disk_mb = (uint32_t)v; break;
        case 'o': r.ex.output_max = v; break;
        case 'j': r.json = 1; break;
        case 'h': run_usage(); return 0;
        default: run_usage(); return 2;
        }
    }
    if (optind >= argc) {
        run_usage();
        return 2;
    }
    const char *file = argv[optind];
    r.args = argv + optind + 1;
    r.nargs = argc - optind - 1;
    r.rt = run_runtime(rtname, strcmp(file, "-") ? file : NULL);
    if (!r.rt) {
        fprintf(stderr, "soulbox run: unknown runtime%s%s (python, node, bash, sh)\n",
                rtname ? " " : "", rtname ? rtname : "; use --runtime");
        return 2;
    }
    int fd = strcmp(file, "-") ? open(file, O_RDONLY | O_CLOEXEC) : 0;
    if (fd < 0 || run_read_all(fd, &r.code) < 0) {
        fprintf(stderr, "soulbox run: cannot read %s: %s\n", file, strerror(errno));
        return 2;
    }
    if (fd > 0)
        close(fd);
    if (input) {
        int ifd = open(input, O_RDONLY | O_CLOEXEC);
        if (ifd < 0 || run_read_all(ifd, &r.input) < 0) {
            fprintf(stderr, "soulbox run: cannot read %s: %s\n", input, strerror(errno));
            return 2;
        }
        close(ifd);
    }
    snprintf(r.path, sizeof r.path, "/home/user/main.%s", r.rt->ext);
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&r.loop);
    int rc = sb_engine_new(&r.loop, NULL, &r.engine);
    if (rc < 0) {
        fprintf(stderr, "soulbox run: sandbox engine unavailable: %s\n", sb_strerror(rc));
    } else if ((rc = sb_sandbox_create(r.engine, &r.lim, run_created, &r)) < 0) {
        fprintf(stderr, "soulbox run: cannot create a sandbox: %s\n", sb_strerror(rc));
    } else {
        uv_run(&r.loop, UV_RUN_DEFAULT);
    }
    if (r.result && r.json) {
        char *s = json_dumps(r.result, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
    }
    fflush(stdout);
    json_decref(r.result);
    sb_engine_free(r.engine);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    SB_ASSERT(uv_loop_close(&r.loop) == 0);
    sb_buf_fini(&r.code);
    sb_buf_fini(&r.input);
    return r.rc;
}

int
sb_cmd_run_main(int argc, char **argv, const sb_config_t *cfg)
{
    (void)cfg;
    char **v = sb_xcalloc((size_t)argc + 2, sizeof *v);
    v[0] = "run";
    for (int i = 0; i < argc; i++)
        v[i + 1] = argv[i];
    int rc = sb_cmd_run(argc + 1, v);
    free(v);
    return rc;
}
