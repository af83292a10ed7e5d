/*
 * run_cli.c: `soulbox run` (see run_cli.h).  Its own libuv loop and engine: create a sandbox,
 * run the program in it as a job of the engine (sandbox/job.h: the same write -> compile ->
 * run pipeline the executor's RUN uses, with the same defaults), print the output (streamed)
 * or the JSON record, destroy the sandbox, and exit with a status that mirrors the
 * program's.  Everything is torn down before returning, so a run leaves no process, cgroup or
 * state dir behind.  The runtimes are the plugins of core/plugin.h; nothing here knows a
 * language.
 */
#include "run_cli.h"

#include "base/buf.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "sandbox/env.h"
#include "sandbox/job.h"
#include "sandbox/sandbox.h"

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
    uv_loop_t loop;
    sb_engine_t *engine;
    sb_sandbox_t *sb;
    const sb_run_job_t *job;
    const sb_plugin_t *p;
    char **env;          /* the sandbox's default and the plugin's entries */
    int rc;              /* exit status */
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
run_output(void *ud, int stream, const uint8_t *data, size_t len)
{
    run_t *r = ud;
    if (!r->job->stream)
        return;
    /* Compiler output is diagnostics: it goes to stderr, whichever stream it came on. */
    FILE *f = stream == SB_JOB_STDOUT ? stdout : stderr;
    fwrite(data, 1, len, f);
    fflush(f);
}

/* run_record turns one process's end into its JSON record. */
static json_t *
run_record(const sb_run_result_t *res, const char *status)
{
    bool exited = res->status == SB_RUN_EXITED && !strcmp(status, sb_run_status_name(res->status));
    json_t *j = json_object();
    json_object_set_new(j, "status", json_string(status));
    json_object_set_new(j, "exit_code", exited ? json_integer(res->exit_code) : json_null());
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
    return j;
}

/* The CLI reports a program that could not start (an exec error) by its process's end, as a
 * shell would (127); "error" is kept for a job that never got that far. */
static const char *
run_status(const sb_job_result_t *jr)
{
    if (!strcmp(jr->status, "compile_error") || !jr->ran)
        return jr->status;
    return sb_run_status_name(jr->run.status);
}

static int
run_status_rc(const sb_job_result_t *jr)
{
    const sb_run_result_t *res = &jr->run;
    if (!strcmp(jr->status, "compile_error"))
        return SB_RUN_EXIT_COMPILE;
    if (!jr->ran)
        return SB_RUN_EXIT_SANDBOX;
    switch (res->status) {
    case SB_RUN_EXITED: return res->exit_code;
    case SB_RUN_SIGNALED: return 128 + res->signal;
    case SB_RUN_TIMEOUT: return SB_RUN_EXIT_TIMEOUT;
    case SB_RUN_CPU_LIMIT: return SB_RUN_EXIT_CPU;
    case SB_RUN_MEMORY_LIMIT: return SB_RUN_EXIT_MEMORY;
    case SB_RUN_OUTPUT_LIMIT: return SB_RUN_EXIT_OUTPUT;
    case SB_RUN_KILLED: return SB_RUN_EXIT_KILLED;
    default: return SB_RUN_EXIT_LOST;
    }
}

static void
run_done(void *ud, const sb_job_result_t *jr)
{
    run_t *r = ud;
    bool compile_failed = !strcmp(jr->status, "compile_error");
    sb_run_result_t none = {0};
    /* A failed compile: the program never ran; its record is empty, marked as the failure. */
    json_t *j = run_record(compile_failed ? &none : &jr->run, run_status(jr));
    if (!jr->ran && jr->error)
        json_object_set_new(j, "error", json_string(jr->error));
    json_t *s = json_object();
    json_object_set_new(s, "host_uid", json_integer(sb_sandbox_host_uid(r->sb)));
    json_object_set_new(s, "cgroup", json_string(sb_sandbox_cgroup_name(r->sb)));
    json_object_set_new(s, "cgroup_version",
                        json_string(sb_cgroup_kind_name(sb_engine_cgroups(r->engine)->kind)));
    json_object_set_new(j, "sandbox", s);
    json_object_set_new(j, "runtime", json_string(r->p->name));
    if (jr->compiled)
        json_object_set_new(j, "compile",
                            run_record(&jr->compile, sb_run_status_name(jr->compile.status)));
    r->result = j;
    r->rc = run_status_rc(jr);
    if (r->job->stream) {
        if (compile_failed)
            fprintf(stderr, "soulbox: compile error (%s%s%s)\n",
                    sb_run_status_name(jr->compile.status), jr->compile.error ? ": " : "",
                    jr->compile.error ? sb_strerror(jr->compile.error) : "");
        else if (!jr->ran)
            fprintf(stderr, "soulbox: %s\n", jr->error ? jr->error : "the program did not run");
        else if (jr->run.status != SB_RUN_EXITED || jr->run.error)
            fprintf(stderr, "soulbox: %s%s%s%s%s\n", sb_run_status_name(jr->run.status),
                    jr->run.signal ? ", signal " : "",
                    jr->run.signal ? strsignal(jr->run.signal) : "", jr->run.error ? ": " : "",
                    jr->run.error ? sb_strerror(jr->run.error) : "");
    }
    sb_sandbox_destroy(r->sb, run_destroyed, r);
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
    const sb_run_job_t *job = r->job;
    sb_job_spec_t spec = {
        .plugin = r->p,
        .code = job->code,
        .code_len = job->code_len,
        .stdin_data = job->input,
        .stdin_len = job->input_len,
        .args = (const char *const *)job->args,
        .nargs = job->nargs,
        .env = (const char *const *)r->env,
        .timeout_ms = job->timeout_ms ? job->timeout_ms : r->p->run_timeout_ms,
        .cpu_ms = job->cpu_ms,
        .output_max = job->output_max,
        .stream = job->stream,
    };
    static const sb_job_cb_t cb = {run_output, run_done};
    int rc = sb_job_start(sb, &spec, &cb, r, NULL);
    if (rc < 0) {
        fprintf(stderr, "soulbox: cannot run the program: %s\n", sb_strerror(rc));
        r->rc = SB_RUN_EXIT_SANDBOX;
        sb_sandbox_destroy(sb, run_destroyed, r);
    }
}

int
sb_run_job(const sb_run_job_t *job, json_t **result)
{
    run_t r;
    memset(&r, 0, sizeof r);
    r.job = job;
    r.p = job->plugin;
    r.rc = SB_RUN_EXIT_SANDBOX;
    if (sb_env_build(&r.env, NULL, false, r.p, NULL) < 0) {
        fprintf(stderr, "soulbox run: the %s plugin's env is malformed\n", r.p->name);
        return SB_RUN_EXIT_SANDBOX;
    }
    /* The sandbox's memory is the larger of the two steps' (the run's, or the plugin's run
     * default; the plugin's compile limit): the job sets each step's own. */
    sb_sandbox_limits_t lim = job->lim;
    uint64_t run_mb = lim.memory_bytes ? lim.memory_bytes >> 20 : r.p->run_memory_mb;
    uint64_t mb = run_mb > r.p->compile_memory_mb ? run_mb : r.p->compile_memory_mb;
    if (mb)
        lim.memory_bytes = mb << 20;

    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&r.loop);
    int rc = sb_engine_new(&r.loop, NULL, &r.engine);
    if (rc < 0) {
        fprintf(stderr, "soulbox run: sandbox engine unavailable: %s\n", sb_strerror(rc));
    } else if ((rc = sb_sandbox_create(r.engine, &lim, run_created, &r)) < 0) {
        fprintf(stderr, "soulbox run: cannot create a sandbox: %s\n", sb_strerror(rc));
    } else {
        uv_run(&r.loop, UV_RUN_DEFAULT);
    }
    sb_engine_free(r.engine);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    SB_ASSERT(uv_loop_close(&r.loop) == 0);
    sb_strv_free(r.env);
    if (result)
        *result = r.result;
    else
        json_decref(r.result);
    return r.rc;
}

/* run_pick: -r NAME, else the plugin whose source file has FILE's extension, else the
 * plugin with the extension as a name or alias. */
static const sb_plugin_t *
run_pick(const sb_plugins_t *ps, const char *name, const char *file)
{
    if (name)
        return sb_plugins_find(ps, name);
    const char *dot = file ? strrchr(file, '.') : NULL;
    if (!dot || strchr(dot, '/'))
        return NULL;
    for (size_t i = 0; i < sb_plugins_count(ps); i++) {
        const char *sd = strrchr(sb_plugins_at(ps, i)->source_file, '.');
        if (sd && !strcmp(sd, dot))
            return sb_plugins_at(ps, i);
    }
    return sb_plugins_find(ps, dot + 1);
}

static void
run_usage(const sb_plugins_t *ps)
{
    fprintf(stderr,
            "usage: soulbox run [-r RUNTIME] [-i INPUT] [--timeout MS] [--cpu-time MS] "
            "[--memory MB]\n"
            "                   [--pids N] [--disk MB] [--output BYTES] [--plugins DIR] [--json]\n"
            "                   FILE|- [ARGS...]\n"
            "runtimes:");
    for (size_t i = 0; i < sb_plugins_count(ps); i++)
        fprintf(stderr, " %s", sb_plugins_at(ps, i)->name);
    fprintf(stderr, "%s\n", sb_plugins_count(ps) ? "" : " (no plugins found)");
}

int
sb_cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"runtime", 1, 0, 'r'},  {"input", 1, 0, 'i'},  {"timeout", 1, 0, 't'},
        {"cpu-time", 1, 0, 'c'}, {"memory", 1, 0, 'm'}, {"pids", 1, 0, 'p'},
        {"disk", 1, 0, 'd'},     {"output", 1, 0, 'o'}, {"json", 0, 0, 'j'},
        {"plugins", 1, 0, 'P'},  {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    sb_run_job_t job;
    sb_buf_t code, input;
    const char *rtname = NULL, *infile = NULL, *pdir = NULL;
    int json = 0, help = 0;
    memset(&job, 0, sizeof job);
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "+r:i:jh", opts, NULL)) != -1) {
        char *end = NULL;
        unsigned long long v = optarg ? strtoull(optarg, &end, 10) : 0;
        if (optarg && strchr("tcmpdo", o) && (*end || !*optarg)) {
            fprintf(stderr, "soulbox run: %s needs a number\n", argv[optind - 1]);
            return 2;
        }
        switch (o) {
        case 'r': rtname = optarg; break;
        case 'i': infile = optarg; break;
        case 't': job.timeout_ms = v; break;
        case 'c': job.cpu_ms = v; break;
        case 'm': job.lim.memory_bytes = v << 20; break;
        case 'p': job.lim.pids = (uint32_t)v; break;
        case 'd': job.lim.disk_mb = (uint32_t)v; break;
        case 'o': job.output_max = v; break;
        case 'j': json = 1; break;
        case 'P': pdir = optarg; break;
        case 'h': help = 1; break;
        default: help = 2; break;
        }
    }

    sb_plugins_t *ps = NULL;
    char err[1024];
    if (!pdir)
        pdir = sb_plugins_default_dir();
    if (sb_plugins_load(pdir, false, false, &ps, err, sizeof err) != 0) {
        fprintf(stderr, "soulbox run: no runtime plugins: %s\n", err);
        return 2;
    }
    if (help || optind >= argc) {
        run_usage(ps);
        sb_plugins_free(ps);
        return help == 1 ? 0 : 2;
    }
    const char *file = argv[optind];
    job.args = argv + optind + 1;
    job.nargs = (size_t)(argc - optind - 1);
    job.plugin = run_pick(ps, rtname, strcmp(file, "-") ? file : NULL);
    if (!job.plugin) {
        fprintf(stderr, "soulbox run: unknown runtime%s%s (soulbox plugins list)\n",
                rtname ? " " : "", rtname ? rtname : "; use --runtime");
        sb_plugins_free(ps);
        return 2;
    }
    sb_buf_init(&code, RUN_CODE_MAX);
    sb_buf_init(&input, RUN_CODE_MAX);
    int rc = 2;
    int fd = strcmp(file, "-") ? open(file, O_RDONLY | O_CLOEXEC) : 0;
    if (fd < 0 || run_read_all(fd, &code) < 0) {
        fprintf(stderr, "soulbox run: cannot read %s: %s\n", file, strerror(errno));
        goto out;
    }
    if (fd > 0)
        close(fd);
    if (infile) {
        int ifd = open(infile, O_RDONLY | O_CLOEXEC);
        if (ifd < 0 || run_read_all(ifd, &input) < 0) {
            fprintf(stderr, "soulbox run: cannot read %s: %s\n", infile, strerror(errno));
            if (ifd >= 0)
                close(ifd);
            goto out;
        }
        close(ifd);
    }
    job.code = code.data ? (const void *)code.data : "";
    job.code_len = code.len;
    job.input = input.data;
    job.input_len = input.len;
    job.stream = !json;
    json_t *result = NULL;
    rc = sb_run_job(&job, &result);
    if (result && json) {
        char *s = json_dumps(result, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
    }
    fflush(stdout);
    json_decref(result);
out:
    sb_buf_fini(&code);
    sb_buf_fini(&input);
    sb_plugins_free(ps);
    return rc;
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
