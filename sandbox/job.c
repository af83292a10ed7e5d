/*
 * job.c: the write -> compile -> snapshot -> run -> collect pipeline (job.h).
 *
 * A job moves through its states by the engine's callbacks: file writes, the compile run,
 * the file listings and reads, the program's run (or its kernel cell).  Every path ends in
 * job_finish, which fills the result and arms a zero timer: on_done always runs from the
 * loop, never inside sb_job_start or inside an engine callback, and the job is freed after
 * its timer handle has closed.  While a step is in flight the job holds no reference the
 * engine could invalidate: runs and file operations all complete (killed / SB_ECLOSED) before
 * their sandbox is freed.
 */
#include "job.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/mime.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOB_LIST_DEPTH 8

typedef enum {
    JOB_WRITING,
    JOB_COMPILING,
    JOB_SNAPSHOT,
    JOB_RUNNING,
    JOB_ARTIFACTS,
    JOB_DONE,
} job_state_t;

typedef struct {
    char *path;
    uint64_t size, mtime;
    uint8_t *data;
    size_t len;
} job_file_t;

struct sb_job {
    sb_sandbox_t *sb;
    job_state_t state;
    sb_job_cb_t cb;
    void *ud;
    const sb_plugin_t *plugin;
    /* the spec, copied */
    uint8_t *code, *in;
    size_t code_len, in_len;
    char **args, **env;
    size_t nargs;
    job_file_t *files;
    int *modes;
    size_t nfiles;
    uint64_t timeout_ms, cpu_ms, memory_bytes, output_max, compile_timeout_ms, artifacts_max,
        result_max;
    bool stream, via_kernel;
    sb_kernel_t *kernel;
    char src[320];
    /* progress */
    size_t writes_left;
    int write_err;
    sb_sandbox_run_t *h;
    int pid;
    sb_job_result_t res;
    sb_buf_t out, err, cout, cerr;
    char error[256];
    job_file_t *snap, *arts, *figs; /* arts: files the run left; figs: a kernel cell's figures */
    size_t nsnap, narts, nfigs, art_next;
    uint64_t art_budget;
    sb_job_artifact_t *views;
    uv_timer_t later;
};

static void job_step(sb_job_t *j);
static void job_collect(sb_job_t *j);

sb_sandbox_run_t *
sb_job_process(const sb_job_t *j)
{
    return j->state == JOB_RUNNING ? j->h : NULL;
}

/* ---- the end ------------------------------------------------------------------------------ */

static void
job_files_free(job_file_t *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++) {
        free(f[i].path);
        free(f[i].data);
    }
    free(f);
}

static void
job_closed(uv_handle_t *h)
{
    sb_job_t *j = h->data;
    free(j->code);
    free(j->in);
    sb_plugin_argv_free(j->args);
    sb_plugin_argv_free(j->env);
    job_files_free(j->files, j->nfiles);
    free(j->modes);
    job_files_free(j->snap, j->nsnap);
    job_files_free(j->arts, j->narts);
    job_files_free(j->figs, j->nfigs);
    free(j->views);
    sb_buf_fini(&j->out);
    sb_buf_fini(&j->err);
    sb_buf_fini(&j->cout);
    sb_buf_fini(&j->cerr);
    free(j);
}

static void
job_deliver(uv_timer_t *t)
{
    sb_job_t *j = t->data;
    sb_job_result_t *r = &j->res;
    r->run.out = j->out.data;
    r->run.out_len = j->out.len;
    r->run.err = j->err.data;
    r->run.err_len = j->err.len;
    r->compile.out = j->cout.data;
    r->compile.out_len = j->cout.len;
    r->compile.err = j->cerr.data;
    r->compile.err_len = j->cerr.len;
    size_t n = j->narts + j->nfigs;
    if (n) {
        j->views = sb_xcalloc(n, sizeof *j->views);
        for (size_t i = 0; i < n; i++) {
            const job_file_t *f = i < j->narts ? &j->arts[i] : &j->figs[i - j->narts];
            j->views[i] = (sb_job_artifact_t){
                .path = strncmp(f->path, "/home/user/", 11) == 0 ? f->path + 11 : f->path,
                .mime = sb_mime_type(f->path),
                .size = f->size,
                .data = f->data,
                .len = f->len,
            };
        }
        r->artifacts = j->views;
        r->nartifacts = n;
    }
    r->via_kernel = j->via_kernel;
    r->pid = j->pid;
    if (j->cb.on_done)
        j->cb.on_done(j->ud, r);
    uv_close((uv_handle_t *)&j->later, job_closed);
}

/* job_finish ends the job: status from what happened, then on_done from the loop. */
static void
job_finish(sb_job_t *j)
{
    sb_job_result_t *r = &j->res;
    j->state = JOB_DONE;
    j->h = NULL;
    if (!r->status)
        r->status = !r->ran || r->run.error ? "error" : sb_run_status_name(r->run.status);
    if (!strcmp(r->status, "error") && !j->error[0] && r->run.error)
        snprintf(j->error, sizeof j->error, "cannot start: %s", sb_strerror(r->run.error));
    r->error = j->error[0] ? j->error : NULL;
    uv_timer_start(&j->later, job_deliver, 0, 0);
}

static void job_fail(sb_job_t *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
job_fail(sb_job_t *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->error, sizeof j->error, fmt, ap);
    va_end(ap);
    j->res.status = "error";
    job_finish(j);
}

/* ---- the program -------------------------------------------------------------------------- */

static void
job_keep(sb_buf_t *b, const uint8_t *p, size_t n)
{
    if (n)
        sb_buf_append(b, p, n);
}

static void
job_on_output(sb_sandbox_run_t *h, int fd, const uint8_t *data, size_t len, void *ud)
{
    sb_job_t *j = ud;
    (void)h;
    if (j->state == JOB_COMPILING) {
        if (j->cb.on_output)
            j->cb.on_output(j->ud, SB_JOB_COMPILE_OUTPUT, data, len);
        return;
    }
    if (j->stream && j->state == JOB_RUNNING && j->cb.on_output)
        j->cb.on_output(j->ud, fd == 2 ? SB_JOB_STDERR : SB_JOB_STDOUT, data, len);
}

static void
job_on_started(sb_sandbox_run_t *h, int pid, void *ud)
{
    sb_job_t *j = ud;
    (void)h;
    if (j->state == JOB_RUNNING)
        j->pid = pid;
}

static void
job_on_done(sb_sandbox_run_t *h, const sb_run_result_t *res, void *ud)
{
    sb_job_t *j = ud;
    (void)h;
    j->h = NULL;
    j->res.ran = true;
    j->res.run = *res;
    if (!j->stream) {
        job_keep(&j->out, res->out, res->out_len);
        job_keep(&j->err, res->err, res->err_len);
    }
    job_collect(j);
}

/* job_exec starts run_cmd with the run's limits. */
static int
job_exec(sb_job_t *j)
{
    char **argv = sb_plugin_expand(j->plugin, j->plugin->run_cmd, j->src,
                                   (const char *const *)j->args, j->nargs);
    if (!argv)
        return SB_EINVAL;
    sb_exec_opts_t o = {
        .argv = (const char *const *)argv,
        .env = (const char *const *)j->env,
        .stdin_data = j->in,
        .stdin_len = j->in_len,
        .timeout_ms = j->timeout_ms,
        .cpu_ms = j->cpu_ms,
        .memory_bytes = j->memory_bytes,
        .output_max = j->output_max,
        .on_started = job_on_started,
    };
    int rc = sb_sandbox_exec(j->sb, &o, job_on_output, job_on_done, j, &j->h);
    sb_plugin_argv_free(argv);
    return rc;
}

static void
job_k_text(void *ud, int fd, const char *p, size_t n)
{
    sb_job_t *j = ud;
    if (j->stream && j->cb.on_output)
        j->cb.on_output(j->ud, fd == 2 ? SB_JOB_STDERR : SB_JOB_STDOUT, (const uint8_t *)p, n);
    else
        job_keep(fd == 2 ? &j->err : &j->out, (const uint8_t *)p, n);
}

/* A figure the cell showed: an artifact "figure-N.png", kept while the budget allows. */
static void
job_k_figure(void *ud, const uint8_t *png, size_t n)
{
    sb_job_t *j = ud;
    if (j->nfigs >= SB_JOB_ARTIFACTS_MAX)
        return;
    uint64_t used = 0;
    for (size_t i = 0; i < j->nfigs; i++)
        used += j->figs[i].len;
    j->figs = sb_xrealloc(j->figs, (j->nfigs + 1) * sizeof *j->figs);
    job_file_t *f = &j->figs[j->nfigs++];
    char path[64];
    snprintf(path, sizeof path, "figure-%zu.png", j->nfigs);
    *f = (job_file_t){.path = sb_xstrdup(path), .size = n};
    if (used + n <= j->artifacts_max && used + n <= (2u << 20)) {
        f->data = sb_xmalloc(n ? n : 1);
        memcpy(f->data, png, n);
        f->len = n;
    }
}

static void
job_k_done(void *ud, const sb_run_result_t *res)
{
    sb_job_t *j = ud;
    j->res.ran = true;
    j->res.run = *res;
    j->res.run.out = j->res.run.err = NULL;
    job_collect(j);
}

static void
job_run(sb_job_t *j)
{
    int rc;
    j->state = JOB_RUNNING;
    if (j->via_kernel) {
        static const sb_kernel_prog_cb_t kcb = {job_k_text, job_k_figure, job_k_done};
        j->pid = sb_kernel_pid(j->kernel);
        rc = sb_kernel_run_program(j->kernel, j->code, j->code_len, j->timeout_ms,
                                   j->output_max, &kcb, j);
    } else {
        rc = job_exec(j);
    }
    if (rc < 0)
        job_fail(j, "cannot start: %s", sb_strerror(rc));
}

/* ---- compile ------------------------------------------------------------------------------ */

static void
job_compiled(sb_sandbox_run_t *h, const sb_run_result_t *res, void *ud)
{
    sb_job_t *j = ud;
    (void)h;
    j->h = NULL;
    j->res.compiled = true;
    j->res.compile = *res;
    job_keep(&j->cout, res->out, res->out_len);
    job_keep(&j->cerr, res->err, res->err_len);
    if (res->error || res->status != SB_RUN_EXITED || res->exit_code != 0) {
        j->res.status = "compile_error";
        j->res.ran = true;
        j->res.run.execution_time_ms = res->execution_time_ms;
        j->res.run.cpu_time_ms = res->cpu_time_ms;
        j->res.run.memory_peak_bytes = res->memory_peak_bytes;
        j->res.run.exit_code = -1;
        job_finish(j);
        return;
    }
    j->state = JOB_SNAPSHOT;
    job_step(j);
}

static void
job_compile(sb_job_t *j)
{
    const sb_plugin_t *p = j->plugin;
    char **argv = sb_plugin_expand(p, p->compile_cmd, j->src, NULL, 0);
    int rc = SB_EINVAL;
    if (argv) {
        sb_exec_opts_t o = {
            .argv = (const char *const *)argv,
            .env = (const char *const *)j->env,
            .timeout_ms = j->compile_timeout_ms,
            .cpu_ms = p->compile_cpu_ms,
            .memory_bytes = p->compile_memory_mb << 20, /* 0: the sandbox's */
            .output_max = SB_JOB_COMPILE_OUT_MAX,
        };
        rc = sb_sandbox_exec(j->sb, &o, job_on_output, job_compiled, j, &j->h);
        sb_plugin_argv_free(argv);
    }
    if (rc < 0)
        job_fail(j, "cannot start the compiler: %s", sb_strerror(rc));
}

/* ---- artifacts ----------------------------------------------------------------------------- */

static bool
job_hidden(const char *path)
{
    const char *p = path;
    if (strncmp(p, "/home/user/", 11) == 0)
        p += 11;
    for (const char *c = p; *c; c++)
        if (*c == '.' && (c == p || c[-1] == '/'))
            return true;
    return false;
}

static void
job_snapshot_cb(const sb_file_result_t *fr, void *ud)
{
    sb_job_t *j = ud;
    if (fr->err == 0 && fr->nents) {
        j->snap = sb_xcalloc(fr->nents, sizeof *j->snap);
        for (size_t i = 0; i < fr->nents; i++) {
            if (fr->ents[i].type != SB_FILE_REGULAR)
                continue;
            j->snap[j->nsnap].path = sb_xstrdup(fr->ents[i].path);
            j->snap[j->nsnap].size = fr->ents[i].size;
            j->snap[j->nsnap].mtime = fr->ents[i].mtime;
            j->nsnap++;
        }
    }
    job_run(j);
}

static void job_read_next(sb_job_t *j);

static void
job_read_cb(const sb_file_result_t *fr, void *ud)
{
    sb_job_t *j = ud;
    job_file_t *f = &j->arts[j->art_next];
    if (fr->err == 0 && fr->len <= j->art_budget) {
        f->data = sb_xmalloc(fr->len ? fr->len : 1);
        if (fr->len)
            memcpy(f->data, fr->data, fr->len);
        f->len = fr->len;
        j->art_budget -= fr->len;
    }
    j->art_next++;
    job_read_next(j);
}

static void
job_read_next(sb_job_t *j)
{
    while (j->art_next < j->narts) {
        job_file_t *f = &j->arts[j->art_next];
        if (f->size <= j->art_budget &&
            sb_sandbox_file_read(j->sb, f->path, f->size, job_read_cb, j) == 0)
            return;
        j->art_next++; /* too big for what is left: listed without data */
    }
    job_finish(j);
}

static void
job_list_cb(const sb_file_result_t *fr, void *ud)
{
    sb_job_t *j = ud;
    if (fr->err) {
        job_finish(j);
        return;
    }
    for (size_t i = 0; i < fr->nents && j->narts < SB_JOB_ARTIFACTS_MAX; i++) {
        const sb_file_entry_t *e = &fr->ents[i];
        if (e->type != SB_FILE_REGULAR || !strcmp(e->path, j->src) || job_hidden(e->path))
            continue;
        bool same = false;
        for (size_t k = 0; k < j->nsnap && !same; k++)
            same = !strcmp(j->snap[k].path, e->path) && j->snap[k].size == e->size &&
                   j->snap[k].mtime == e->mtime;
        if (same)
            continue;
        j->arts = sb_xrealloc(j->arts, (j->narts + 1) * sizeof *j->arts);
        j->arts[j->narts++] = (job_file_t){.path = sb_xstrdup(e->path), .size = e->size,
                                           .mtime = e->mtime};
    }
    /* What fits beside the output and the compile record. */
    uint64_t used = j->out.len + j->err.len + j->cout.len + j->cerr.len;
    for (size_t i = 0; i < j->nfigs; i++)
        used += j->figs[i].len;
    uint64_t room = !j->result_max ? UINT64_MAX : j->result_max > used ? j->result_max - used : 0;
    j->art_budget = j->artifacts_max < room ? j->artifacts_max : room;
    j->art_next = 0;
    job_read_next(j);
}

/* job_collect: the program ended; with artifacts, list what it left. */
static void
job_collect(sb_job_t *j)
{
    if (j->artifacts_max == 0 || !sb_sandbox_alive(j->sb)) {
        job_finish(j);
        return;
    }
    j->state = JOB_ARTIFACTS;
    if (sb_sandbox_file_list(j->sb, "/home/user", JOB_LIST_DEPTH, job_list_cb, j) < 0)
        job_finish(j);
}

/* ---- writing, and the steps ------------------------------------------------------------------ */

static void
job_step(sb_job_t *j)
{
    if (!sb_sandbox_alive(j->sb)) {
        job_fail(j, "sandbox is gone");
        return;
    }
    if (j->state == JOB_COMPILING) {
        job_compile(j);
        return;
    }
    /* JOB_SNAPSHOT */
    if (j->artifacts_max == 0 ||
        sb_sandbox_file_list(j->sb, "/home/user", JOB_LIST_DEPTH, job_snapshot_cb, j) < 0)
        job_run(j);
}

static void
job_written(const sb_file_result_t *fr, void *ud)
{
    sb_job_t *j = ud;
    if (fr->err && !j->write_err)
        j->write_err = fr->err;
    if (--j->writes_left > 0)
        return;
    if (j->write_err) {
        job_fail(j, "cannot write the program's files: %s", sb_strerror(j->write_err));
        return;
    }
    j->state = j->plugin->compile_cmd ? JOB_COMPILING : JOB_SNAPSHOT;
    job_step(j);
}

static void
job_write_all(sb_job_t *j)
{
    /* through the kernel the code travels in the request: no source file to write */
    size_t first = j->via_kernel ? 1 : 0;
    j->writes_left = (j->via_kernel ? 0 : 1) + j->nfiles;
    if (j->writes_left == 0) {
        j->state = JOB_SNAPSHOT;
        job_step(j);
        return;
    }
    for (size_t i = first; i <= j->nfiles; i++) {
        int rc = i == 0 ? sb_sandbox_file_write(j->sb, j->src, j->code, j->code_len, 0644, false,
                                                job_written, j)
                        : sb_sandbox_file_write(j->sb, j->files[i - 1].path, j->files[i - 1].data,
                                                j->files[i - 1].len, j->modes[i - 1], false,
                                                job_written, j);
        if (rc < 0) {
            job_written(&(sb_file_result_t){.err = rc}, j);
            if (j->state != JOB_WRITING)
                return; /* that was the last one: the job has moved on */
        }
    }
}

static uint8_t *
job_dup(const void *p, size_t n)
{
    uint8_t *d = sb_xmalloc(n ? n : 1);
    if (n)
        memcpy(d, p, n);
    return d;
}

static char **
job_strv(const char *const *v, size_t n)
{
    if (!v)
        return NULL;
    if (n == (size_t)-1)
        for (n = 0; v[n];)
            n++;
    char **o = sb_xcalloc(n + 1, sizeof *o);
    for (size_t i = 0; i < n; i++)
        o[i] = sb_xstrdup(v[i]);
    return o;
}

int
sb_job_start(sb_sandbox_t *sb, const sb_job_spec_t *spec, const sb_job_cb_t *cb, void *ud,
             sb_job_t **out)
{
    const sb_plugin_t *p = spec->plugin;
    if (!p || !p->run_cmd || !cb || !cb->on_done)
        return SB_EINVAL;
    if (!sb_sandbox_alive(sb))
        return SB_ECLOSED;
    sb_job_t *j = sb_xcalloc(1, sizeof *j);
    j->sb = sb;
    j->cb = *cb;
    j->ud = ud;
    j->plugin = p;
    j->code = job_dup(spec->code, spec->code_len);
    j->code_len = spec->code_len;
    if (spec->stdin_len) {
        j->in = job_dup(spec->stdin_data, spec->stdin_len);
        j->in_len = spec->stdin_len;
    }
    j->args = job_strv(spec->args, spec->nargs);
    j->nargs = spec->args ? spec->nargs : 0;
    j->env = job_strv(spec->env, (size_t)-1);
    if (spec->nfiles) {
        j->files = sb_xcalloc(spec->nfiles, sizeof *j->files);
        j->modes = sb_xcalloc(spec->nfiles, sizeof *j->modes);
        for (size_t i = 0; i < spec->nfiles; i++) {
            j->files[i].path = sb_xstrdup(spec->files[i].path);
            j->files[i].data = job_dup(spec->files[i].data, spec->files[i].len);
            j->files[i].len = spec->files[i].len;
            j->modes[i] = spec->files[i].mode ? spec->files[i].mode : 0644;
        }
        j->nfiles = spec->nfiles;
    }
    j->timeout_ms = spec->timeout_ms;
    j->cpu_ms = spec->cpu_ms;
    j->memory_bytes = spec->memory_bytes;
    j->output_max = spec->output_max;
    j->compile_timeout_ms = spec->compile_timeout_ms   ? spec->compile_timeout_ms
                            : p->compile_timeout_ms ? p->compile_timeout_ms
                                                    : SB_JOB_COMPILE_TIMEOUT_MS;
    j->artifacts_max = spec->artifacts_max;
    j->result_max = spec->result_max;
    j->stream = spec->stream;
    snprintf(j->src, sizeof j->src, "/home/user/%s", p->source_file ? p->source_file : "main");
    sb_buf_init(&j->out, 0);
    sb_buf_init(&j->err, 0);
    sb_buf_init(&j->cout, 0);
    sb_buf_init(&j->cerr, 0);
    uv_timer_init(sb_sandbox_loop(sb), &j->later);
    j->later.data = j;
    /* The kernel route: only what the kernel model can honour (kernel.h). */
    j->via_kernel = spec->kernel && !spec->stdin_len && !spec->nargs && !spec->env_given &&
                    !spec->memory_given && !spec->cpu_ms &&
                    sb_kernel_can_run(spec->kernel, p, spec->code, spec->code_len);
    j->kernel = j->via_kernel ? spec->kernel : NULL;
    j->state = JOB_WRITING;
    if (out)
        *out = j;
    job_write_all(j);
    return 0;
}
