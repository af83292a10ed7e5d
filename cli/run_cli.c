/*
 * run_cli.c: `soulbox run` (see run_cli.h).  Its own libuv loop and engine: create a sandbox,
 * write the program to /home/user/<the plugin's source_file>, compile it if the runtime
 * plugin has a compile command (with the plugin's compile limits), run it with the limits
 * given, print the output (streamed) or the JSON record, destroy the sandbox, and exit with a
 * status that mirrors the program's.  Everything is torn down before returning, so a run
 * leaves no process, cgroup or state dir behind.  The runtimes are the plugins of
 * core/plugin.h; nothing here knows a language.
 *
 * States: CREATING -> WRITING -> [COMPILING ->] RUNNING -> DESTROYING; any failure goes
 * straight to DESTROYING with rc set.
 */
#include "run_cli.h"

#include "base/buf.h"
#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
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
#define RUN_COMPILE_TIMEOUT_MS 30000
#define RUN_COMPILE_MEMORY_MB 1024

/* The sandbox's default environment (sandbox.c's), which plugin env entries extend. */
static const char *const run_base_env[] = {
    "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin", "HOME=/home/user",
    "USER=user", "LOGNAME=user", "LANG=C.UTF-8", "SHELL=/bin/bash", NULL};

typedef struct {
    uv_loop_t loop;
    sb_engine_t *engine;
    sb_sandbox_t *sb;
    const sb_run_job_t *job;
    const sb_plugin_t *p;
    char path[128];
    char **env;          /* base + the plugin's, expanded */
    bool compiling;
    int rc;              /* exit status */
    json_t *compile;     /* the compile step's record, if any */
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
run_finish(run_t *r, int rc)
{
    r->rc = rc;
    sb_sandbox_destroy(r->sb, run_destroyed, r);
}

static void
run_output(sb_sandbox_run_t *h, int fd, const uint8_t *data, size_t len, void *ud)
{
    run_t *r = ud;
    (void)h;
    if (!r->job->stream)
        return;
    /* Compiler output is diagnostics: it goes to stderr, whichever stream it came on. */
    FILE *f = fd == 2 || r->compiling ? stderr : stdout;
    fwrite(data, 1, len, f);
    fflush(f);
}

/* run_record turns one process's result into its JSON record. */
static json_t *
run_record(const sb_run_result_t *res)
{
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
    return j;
}

static int
run_status_rc(const sb_run_result_t *res)
{
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
run_add_sandbox_info(run_t *r, json_t *j)
{
    json_t *s = json_object();
    json_object_set_new(s, "host_uid", json_integer(sb_sandbox_host_uid(r->sb)));
    json_object_set_new(s, "cgroup", json_string(sb_sandbox_cgroup_name(r->sb)));
    json_object_set_new(s, "cgroup_version",
                        json_string(sb_cgroup_kind_name(sb_engine_cgroups(r->engine)->kind)));
    json_object_set_new(j, "sandbox", s);
    json_object_set_new(j, "runtime", json_string(r->p->name));
    if (r->compile)
        json_object_set_new(j, "compile", json_incref(r->compile));
}

static void
run_done(sb_sandbox_run_t *h, const sb_run_result_t *res, void *ud)
{
    run_t *r = ud;
    (void)h;
    json_t *j = run_record(res);
    run_add_sandbox_info(r, j);
    r->result = j;
    if (r->job->stream && res->status != SB_RUN_EXITED)
        fprintf(stderr, "soulbox: %s%s%s%s%s\n", sb_run_status_name(res->status),
                res->signal ? ", signal " : "", res->signal ? strsignal(res->signal) : "",
                res->error ? ": " : "", res->error ? sb_strerror(res->error) : "");
    run_finish(r, run_status_rc(res));
}

/* run_exec starts one command of the plugin (compile or run) with its limits. */
static int
run_exec(run_t *r, char *const *tmpl, bool with_args, const void *in, size_t in_len,
         uint64_t timeout_ms, uint64_t cpu_ms, uint64_t memory_mb, sb_done_cb done)
{
    const sb_run_job_t *job = r->job;
    char **argv = sb_plugin_expand(r->p, tmpl, r->path, (const char *const *)job->args,
                                   with_args ? job->nargs : 0);
    sb_exec_opts_t ex = {
        .argv = (const char *const *)argv,
        .env = (const char *const *)r->env,
        .stdin_data = in,
        .stdin_len = in_len,
        .timeout_ms = timeout_ms,
        .cpu_ms = cpu_ms,
        .memory_bytes = memory_mb << 20,
        .output_max = job->output_max,
    };
    int rc = sb_sandbox_exec(r->sb, &ex, run_output, done, r, NULL);
    sb_plugin_argv_free(argv);
    return rc;
}

static void
run_start(run_t *r)
{
    const sb_run_job_t *job = r->job;
    uint64_t mem = job->lim.memory_bytes ? job->lim.memory_bytes >> 20 : r->p->run_memory_mb;
    r->compiling = false;
    int rc = run_exec(r, r->p->run_cmd, true, job->input, job->input_len,
                      job->timeout_ms ? job->timeout_ms : r->p->run_timeout_ms, job->cpu_ms, mem,
                      run_done);
    if (rc < 0) {
        fprintf(stderr, "soulbox: cannot start the program: %s\n", sb_strerror(rc));
        run_finish(r, SB_RUN_EXIT_SANDBOX);
    }
}

static void
run_compiled(sb_sandbox_run_t *h, const sb_run_result_t *res, void *ud)
{
    run_t *r = ud;
    (void)h;
    r->compile = run_record(res);
    if (res->status == SB_RUN_EXITED && res->exit_code == 0) {
        run_start(r);
        return;
    }
    /* The program never runs: the record is the compile step's, marked as its failure. */
    json_t *j = json_object();
    json_object_set_new(j, "status", json_string("compile_error"));
    json_object_set_new(j, "exit_code", json_null());
    json_object_set_new(j, "signal", json_null());
    json_object_set_new(j, "stdout", json_string(""));
    json_object_set_new(j, "stderr", json_string(""));
    json_object_set_new(j, "stdout_truncated", json_false());
    json_object_set_new(j, "stderr_truncated", json_false());
    json_object_set_new(j, "execution_time_ms", json_integer(0));
    json_object_set_new(j, "cpu_time_ms", json_integer(0));
    json_object_set_new(j, "memory_peak_bytes", json_integer(0));
    run_add_sandbox_info(r, j);
    r->result = j;
    if (r->job->stream)
        fprintf(stderr, "soulbox: compile error (%s%s%s)\n", sb_run_status_name(res->status),
                res->error ? ": " : "", res->error ? sb_strerror(res->error) : "");
    run_finish(r, SB_RUN_EXIT_COMPILE);
}

static void
run_written(const sb_file_result_t *fr, void *ud)
{
    run_t *r = ud;
    const sb_plugin_t *p = r->p;
    if (fr->err) {
        fprintf(stderr, "soulbox: cannot write the program into the sandbox: %s\n",
                sb_strerror(fr->err));
        run_finish(r, SB_RUN_EXIT_SANDBOX);
        return;
    }
    if (!p->compile_cmd) {
        run_start(r);
        return;
    }
    r->compiling = true;
    int rc = run_exec(r, p->compile_cmd, false, NULL, 0,
                      p->compile_timeout_ms ? p->compile_timeout_ms : RUN_COMPILE_TIMEOUT_MS,
                      p->compile_cpu_ms,
                      p->compile_memory_mb ? p->compile_memory_mb : RUN_COMPILE_MEMORY_MB,
                      run_compiled);
    if (rc < 0) {
        fprintf(stderr, "soulbox: cannot start the compiler: %s\n", sb_strerror(rc));
        run_finish(r, SB_RUN_EXIT_SANDBOX);
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
    int rc = sb_sandbox_file_write(sb, r->path, r->job->code, r->job->code_len, 0644, false,
                                   run_written, r);
    if (rc < 0)
        run_written(&(sb_file_result_t){.err = rc}, r);
}

/* run_env: the sandbox's default environment, then the plugin's entries (placeholders
 * filled); a plugin entry replaces a default of the same name. */
static char **
run_env(const sb_plugin_t *p, const char *file)
{
    char **penv = sb_plugin_expand(p, p->env, file, NULL, 0);
    size_t nb = sizeof run_base_env / sizeof run_base_env[0] - 1, np = 0, n = 0;
    while (penv[np])
        np++;
    char **env = sb_xcalloc(nb + np + 1, sizeof *env);
    for (size_t i = 0; i < nb; i++) {
        size_t klen = strcspn(run_base_env[i], "=") + 1;
        int overridden = 0;
        for (size_t k = 0; k < np; k++)
            overridden |= !strncmp(penv[k], run_base_env[i], klen);
        if (!overridden)
            env[n++] = sb_xstrdup(run_base_env[i]);
    }
    for (size_t k = 0; k < np; k++)
        env[n++] = sb_xstrdup(penv[k]);
    env[n] = NULL;
    sb_plugin_argv_free(penv);
    return env;
}

int
sb_run_job(const sb_run_job_t *job, json_t **result)
{
    run_t r;
    memset(&r, 0, sizeof r);
    r.job = job;
    r.p = job->plugin;
    r.rc = SB_RUN_EXIT_SANDBOX;
    snprintf(r.path, sizeof r.path, "/home/user/%s", r.p->source_file);
    r.env = run_env(r.p, r.path);

    /* The sandbox's memory is the larger of the two steps'; each step then sets its own. */
    sb_sandbox_limits_t lim = job->lim;
    uint64_t run_mb = lim.memory_bytes ? lim.memory_bytes >> 20 : r.p->run_memory_mb;
    uint64_t compile_mb = !r.p->compile_cmd        ? 0
                          : r.p->compile_memory_mb ? r.p->compile_memory_mb
                                                   : RUN_COMPILE_MEMORY_MB;
    uint64_t mb = run_mb > compile_mb ? run_mb : compile_mb;
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
    sb_plugin_argv_free(r.env);
    json_decref(r.compile);
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
