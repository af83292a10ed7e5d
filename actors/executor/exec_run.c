/*
 * exec_run.c: RUN, CMD and PROC_INPUT / PROC_SIGNAL / PROC_RESIZE -- a program or a command
 * line in a sandbox, its streamed output and its result, and input to running processes.
 *
 * A RUN is a job of the sandbox engine (sandbox/job.h: write, compile, run, collect); this
 * file only decides its limits from the request, the plugin and the configuration, finds or
 * creates its sandbox, and turns the job's output and result into replies (a reply stream,
 * exec_out.c).  A one-shot RUN (no sandbox named) gets a sandbox of its own, destroyed after
 * the run; so does a RUN with destroy=true (a leased warm sandbox), whose warm kernel the job
 * may use when the sandbox ran nothing before (kernel.h says what else it needs).
 *
 * A CMD is one process (foreground: its RESULT; background: CMD_STARTED at once, and with
 * stream its output and RESULT later).  The state of a run lives in its struct from the
 * request until the job or process has ended; a run finds its sandbox again by id when it
 * ends, so a sandbox destroyed meanwhile is never touched.
 */
#include "exec.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/mp.h"
#include "protocols/mpw.h"
#include "sandbox/env.h"
#include "sandbox/job.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sb__xstate_t *x;
    sb__xout_t *out;
    sb__xwait_t wait;
    char sandbox_id[SB__X_ID_LEN];
    const sb_plugin_t *plugin;
    bool oneshot, destroy_after, stream, memory_given;
    uint64_t t0_us;
    sb_run_t req;          /* scalars only: its views die with the message */
    uint8_t *code, *in;
    size_t code_len, in_len;
    char **args, **env;
    size_t nargs, nenv;
    sb__xfile_t *files;
    size_t nfiles;
} xr_run_t;

static void
xr_free(xr_run_t *r)
{
    free(r->code);
    free(r->in);
    sb_strv_free(r->args);
    sb_strv_free(r->env);
    sb__x_files_free(r->files, r->nfiles);
    free(r);
}

/* ---- results ------------------------------------------------------------------------------ */

static void
xr_compile_record(const sb_job_result_t *jr, sb_buf_t *b)
{
    const sb_run_result_t *c = &jr->compile;
    sb_mpw_map(b, 10);
    sb_mpw_kbin(b, "stdout", c->out, c->out_len);
    sb_mpw_kbin(b, "stderr", c->err, c->err_len);
    sb_mpw_kint(b, "exit_code", c->status == SB_RUN_EXITED ? c->exit_code : -1);
    sb_mpw_kint(b, "signal", c->signal);
    sb_mpw_cstr(b, "status");
    sb_mpw_cstr(b, c->error ? "error" : sb_run_status_name(c->status));
    sb_mpw_kuint(b, "execution_time_ms", c->execution_time_ms);
    sb_mpw_kuint(b, "cpu_time_ms", c->cpu_time_ms);
    sb_mpw_kuint(b, "memory_peak", c->memory_peak_bytes);
    sb_mpw_kbool(b, "stdout_truncated", c->out_truncated);
    sb_mpw_kbool(b, "stderr_truncated", c->err_truncated);
}

static void
xr_artifacts(const sb_job_result_t *jr, sb_buf_t *b)
{
    sb_mpw_array(b, (uint32_t)jr->nartifacts);
    for (size_t i = 0; i < jr->nartifacts; i++) {
        const sb_job_artifact_t *a = &jr->artifacts[i];
        sb_mpw_array(b, 4);
        sb_mpw_cstr(b, a->path);
        sb_mpw_cstr(b, a->mime);
        sb_mpw_uint(b, a->size);
        sb_mpw_bin(b, a->data, a->len);
    }
}

/* xr_result encodes a RESULT: of a job (jr), or of a command's process (res). */
static int
xr_result(const char *sandbox_id, const sb_job_result_t *jr, const sb_run_result_t *res,
          const char *status, const char *error, int pid, sb_buf_t *out)
{
    sb_buf_t compile, arts;
    sb_buf_init(&compile, 0);
    sb_buf_init(&arts, 0);
    if (jr && jr->compiled)
        xr_compile_record(jr, &compile);
    if (jr && jr->nartifacts)
        xr_artifacts(jr, &arts);
    bool ran = jr ? jr->ran : true;
    sb_result_t m = {
        .stdout = {(const char *)res->out, (uint32_t)res->out_len},
        .stderr = {(const char *)res->err, (uint32_t)res->err_len},
        .exit_code = ran && res->status == SB_RUN_EXITED && strcmp(status, "compile_error")
                         ? res->exit_code
                         : -1,
        .signal = res->signal,
        .status = sb_str(status),
        .execution_time_ms = res->execution_time_ms,
        .cpu_time_ms = res->cpu_time_ms,
        .memory_peak = res->memory_peak_bytes,
        .stdout_truncated = res->out_truncated,
        .stderr_truncated = res->err_truncated,
        .compile = {(const char *)compile.data, (uint32_t)compile.len},
        .artifacts = {(const char *)arts.data, (uint32_t)arts.len},
        .error = sb_str(error ? error : ""),
        .pid = (uint64_t)(pid > 0 ? pid : 0),
        .sandbox = sb_str(sandbox_id),
        .kernel = jr && jr->via_kernel,
    };
    int rc = sb_result_encode(&m, out);
    sb_buf_fini(&compile);
    sb_buf_fini(&arts);
    return rc;
}

static void
xr_send_result(sb__xout_t *o, const char *sandbox_id, const sb_job_result_t *jr,
               const sb_run_result_t *res, const char *status, const char *error, int pid)
{
    sb_buf_t b;
    sb_buf_init(&b, 0);
    if (xr_result(sandbox_id, jr, res, status, error, pid, &b) == 0)
        sb__x_out_final(o, SB_MSG_RESULT, b.data, b.len);
    else
        sb__x_out_error(o, SB_ETOOBIG, "result too big to send");
    sb_buf_fini(&b);
}

/* ---- RUN ------------------------------------------------------------------------------------ */

static void
xr_job_output(void *ud, int stream, const uint8_t *p, size_t n)
{
    xr_run_t *r = ud;
    if (stream != SB_JOB_COMPILE_OUTPUT && r->stream)
        sb__x_out_text(r->out, stream, p, n);
}

static void
xr_job_done(void *ud, const sb_job_result_t *jr)
{
    xr_run_t *r = ud;
    sb__xstate_t *x = r->x;
    x->running--;
    sb__x_out_set_pid(r->out, (uint64_t)(jr->pid > 0 ? jr->pid : 0));
    xr_send_result(r->out, r->sandbox_id, jr, &jr->run, jr->status, jr->error, jr->pid);
    sb__x_mon_exec(x, r->plugin->name, jr->status, sb_now_mono_us() - r->t0_us,
                   jr->run.memory_peak_bytes, jr->run.cpu_time_ms * 1000);
    sb__xsbx_t *s = sb__x_find(x, sb_str(r->sandbox_id));
    if (s && (r->oneshot || r->destroy_after))
        sb__x_sbx_destroy(s, r->oneshot ? "one-shot run done" : "destroy after run");
    xr_free(r);
}

/* xr_fail ends a RUN that never started: an error reply (code != 0), or a RESULT with
 * status "error" (the program could not be set up). */
static void
xr_fail(xr_run_t *r, int code, const char *msg)
{
    if (code) {
        sb__x_out_error(r->out, code, "%s", msg);
    } else {
        sb_run_result_t none = {.exit_code = -1};
        xr_send_result(r->out, r->sandbox_id, NULL, &none, "error", msg, 0);
    }
    sb__xsbx_t *s = sb__x_find(r->x, sb_str(r->sandbox_id));
    if (s && (r->oneshot || r->destroy_after))
        sb__x_sbx_destroy(s, "run failed");
    xr_free(r);
}

static void
xr_begin(xr_run_t *r, sb__xsbx_t *s)
{
    sb__xstate_t *x = r->x;
    const sb_config_t *c = x->cfg;
    const sb_plugin_t *p = r->plugin;
    char **env = NULL;
    /* The sandbox's own environment holds its runtime's entries; another runtime adds its. */
    if (sb_env_build(&env, (const char *const *)s->env, false,
                     !s->env || s->plugin != p ? p : NULL, (const char *const *)r->env) < 0) {
        xr_fail(r, SB_EBADMSG, "malformed env");
        return;
    }
    sb_job_file_t *files = r->nfiles ? sb_xcalloc(r->nfiles, sizeof *files) : NULL;
    for (size_t i = 0; i < r->nfiles; i++)
        files[i] = (sb_job_file_t){r->files[i].path, r->files[i].data, r->files[i].len,
                                   r->files[i].mode};
    /* A leased warm sandbox that ran nothing offers its kernel (the job decides). */
    sb_kernel_t *k = NULL;
    if (s->warm && r->destroy_after && s->plugin == p && !s->runs_done)
        sb__x_kern_get(s, p, false, &k);
    uint64_t max_ms = (uint64_t)c->executor_max_timeout_ms;
    sb_job_spec_t spec = {
        .plugin = p,
        .code = r->code,
        .code_len = r->code_len,
        .stdin_data = r->in,
        .stdin_len = r->in_len,
        .args = (const char *const *)r->args,
        .nargs = r->nargs,
        .env = (const char *const *)env,
        .env_given = r->nenv > 0,
        .memory_given = r->memory_given,
        .files = files,
        .nfiles = r->nfiles,
        .timeout_ms = sb__x_clamp(r->req.timeout_ms,
                                  p->run_timeout_ms ? p->run_timeout_ms
                                                    : (uint64_t)c->executor_default_timeout_ms,
                                  max_ms),
        .cpu_ms = r->req.cpu_ms,
        .memory_bytes = sb__x_clamp(r->req.memory_mb << 20,
                                    p->run_memory_mb ? p->run_memory_mb << 20
                                                     : s->lim.memory_bytes,
                                    (uint64_t)c->executor_max_memory_mb << 20),
        .output_max = sb__x_clamp(r->req.output_max, (uint64_t)c->executor_output_max,
                                  (uint64_t)c->executor_output_max),
        .compile_timeout_ms = sb__x_clamp(r->req.compile_timeout_ms,
                                          p->compile_timeout_ms ? p->compile_timeout_ms
                                                                : SB_JOB_COMPILE_TIMEOUT_MS,
                                          max_ms),
        .artifacts_max = r->req.artifacts_max < (uint64_t)c->executor_artifacts_max
                             ? r->req.artifacts_max
                             : (uint64_t)c->executor_artifacts_max,
        /* the RESULT is one message: what it carries besides output and artifacts */
        .result_max = SB_MSG_MAX_BODY - (256u << 10),
        .stream = r->stream,
        .kernel = k,
    };
    static const sb_job_cb_t cb = {xr_job_output, xr_job_done};
    s->runs_done = true;
    int rc = sb_job_start(s->sb, &spec, &cb, r, NULL);
    sb_strv_free(env);
    free(files);
    if (rc < 0) {
        xr_fail(r, 0, "sandbox is gone");
        return;
    }
    x->running++;
}

static void
xr_sandbox_ready(void *ud, sb__xsbx_t *s, int status)
{
    xr_run_t *r = ud;
    if (status == 0) {
        xr_begin(r, s);
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "no sandbox for the run: %s", sb_strerror(status));
    xr_fail(r, status == SB_ECLOSED ? SB_ECLOSED : SB_EUNAVAILABLE, msg);
}

static uint8_t *
xr_copy_bin(sb_str_t s, size_t *n)
{
    uint8_t *p = sb_xmalloc(s.len ? s.len : 1);
    if (s.len)
        memcpy(p, s.ptr, s.len);
    *n = s.len;
    return p;
}

int
sb__x_handle_run(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_run_t req;
    char rt[64], **env = NULL, **args = NULL;
    size_t nenv = 0, nargs = 0, nfiles = 0;
    sb__xfile_t *files = NULL;
    sb_replyto_t to = sb_replyto(m);
    int rc;
    if (sb_run_decode(m, &req) != 0)
        return SB_EBADMSG;
    if (sb_str_copy(rt, sizeof rt, req.runtime) != 0 || !*rt)
        return SB_EBADMSG;
    const sb_plugin_t *p = x->plugins ? sb_plugins_find(x->plugins, rt) : NULL;
    if (!p || !p->run_cmd) {
        sb_actor_reply_error(x->a, &to, SB_EINVAL, "unknown runtime '%s'", rt);
        return 0;
    }
    if (sb_mp_strv(req.args, 1024, &args, &nargs) != 0 ||
        sb_mp_strv(req.env, 1024, &env, &nenv) != 0 ||
        sb__x_files(req.files, &files, &nfiles) != 0) {
        sb_strv_free(args);
        sb_strv_free(env);
        return SB_EBADMSG;
    }
    sb__xsbx_t *s = NULL;
    bool oneshot = req.sandbox.len == 0;
    if (!oneshot) {
        s = sb__x_find(x, req.sandbox);
        rc = !s || s->state == SB__XSBX_DESTROYING ? SB_ENOTFOUND
             : s->state == SB__XSBX_CREATING       ? SB_EUNAVAILABLE
                                                   : 0;
    } else {
        sb_sandbox_limits_t lim = {.memory_bytes = req.memory_mb << 20,
                                   .cpu_pct = (uint32_t)req.cpu_pct};
        if (!lim.memory_bytes && p->run_memory_mb)
            lim.memory_bytes = p->run_memory_mb << 20;
        rc = sb__x_sbx_new(x, p->name, &lim, true, &s);
    }
    if (rc < 0) {
        sb_strv_free(args);
        sb_strv_free(env);
        sb__x_files_free(files, nfiles);
        return rc;
    }
    xr_run_t *r = sb_xcalloc(1, sizeof *r);
    r->x = x;
    r->out = sb__x_out_new(x, &to, SB_MSG_OUTPUT);
    r->plugin = p;
    r->req = req;
    r->oneshot = oneshot;
    r->destroy_after = req.destroy;
    r->stream = req.stream;
    r->memory_given = req.memory_mb > 0;
    r->t0_us = sb_now_mono_us();
    snprintf(r->sandbox_id, sizeof r->sandbox_id, "%s", s->id);
    r->code = xr_copy_bin(req.code, &r->code_len);
    if (req.stdin.len)
        r->in = xr_copy_bin(req.stdin, &r->in_len);
    r->args = args;
    r->nargs = nargs;
    r->env = env;
    r->nenv = nenv;
    r->files = files;
    r->nfiles = nfiles;
    if (s->state == SB__XSBX_CREATING) {
        r->wait = (sb__xwait_t){.ready = xr_sandbox_ready, .ud = r};
        sb__x_sbx_wait(s, &r->wait);
    } else {
        xr_begin(r, s);
    }
    return 0;
}

/* ---- CMD ------------------------------------------------------------------------------------ */

typedef struct {
    sb__xstate_t *x;
    sb__xout_t *out;     /* NULL once the answer is complete (a background CMD without stream) */
    char sandbox_id[SB__X_ID_LEN];
    bool background, stream, pty;
    int pid;
} xc_cmd_t;

static void
xc_on_output(sb_sandbox_run_t *h, int fd, const uint8_t *data, size_t len, void *ud)
{
    xc_cmd_t *c = ud;
    (void)h;
    if (c->stream && c->out)
        sb__x_out_text(c->out, c->pty ? 3 : fd == 2 ? 2 : 1, data, len);
}

static void
xc_on_started(sb_sandbox_run_t *h, int pid, void *ud)
{
    xc_cmd_t *c = ud;
    (void)h;
    c->pid = pid;
    if (c->out)
        sb__x_out_set_pid(c->out, (uint64_t)pid);
    if (!c->background || !c->out)
        return;
    sb_cmd_started_t st = {.sandbox = sb_str(c->sandbox_id), .pid = (uint64_t)pid};
    sb_buf_t *b = sb_actor_scratch(c->x->a);
    if (sb_cmd_started_encode(&st, b) != 0)
        return;
    if (c->stream) {
        sb__x_out_msg(c->out, SB_MSG_CMD_STARTED, b->data, b->len);
    } else {
        /* CMD_STARTED is the whole answer; the process runs on unobserved. */
        sb__x_out_final(c->out, SB_MSG_CMD_STARTED, b->data, b->len);
        c->out = NULL;
    }
}

static void
xc_on_done(sb_sandbox_run_t *h, const sb_run_result_t *res, void *ud)
{
    xc_cmd_t *c = ud;
    (void)h;
    c->x->running--;
    if (c->out) {
        if (c->background && !c->pid) {
            /* a background command that never started: nothing was answered yet */
            sb__x_out_error(c->out, SB_EINVAL, "cannot start: %s",
                            sb_strerror(res->error ? res->error : SB_EIO));
        } else {
            char error[160] = "";
            if (res->error)
                snprintf(error, sizeof error, "cannot start: %s", sb_strerror(res->error));
            /* Streamed output already went out chunk by chunk; the RESULT does not repeat it. */
            sb_run_result_t r = *res;
            if (c->stream) {
                r.out = r.err = NULL;
                r.out_len = r.err_len = 0;
            }
            xr_send_result(c->out, c->sandbox_id, NULL, &r,
                           res->error ? "error" : sb_run_status_name(res->status),
                           error[0] ? error : NULL, c->pid);
        }
    }
    free(c);
}

int
sb__x_handle_cmd(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_cmd_t req;
    char **argv = NULL, **env = NULL, cwd[4097] = "";
    size_t argc = 0, nenv = 0;
    if (sb_cmd_decode(m, &req) != 0 || sb_mp_strv(req.argv, 1024, &argv, &argc) != 0)
        return SB_EBADMSG;
    if (argc == 0 || sb_mp_strv(req.env, 1024, &env, &nenv) != 0 ||
        (req.cwd.len && memchr(req.cwd.ptr, 0, req.cwd.len))) {
        sb_strv_free(argv);
        sb_strv_free(env);
        return SB_EBADMSG;
    }
    sb__xsbx_t *s = sb__x_find(x, req.sandbox);
    if (!s || s->state != SB__XSBX_READY) {
        sb_strv_free(argv);
        sb_strv_free(env);
        return s && s->state == SB__XSBX_CREATING ? SB_EUNAVAILABLE : SB_ENOTFOUND;
    }
    sb_replyto_t to = sb_replyto(m);
    const sb_config_t *cf = x->cfg;
    char **penv = NULL;
    if (sb_env_build(&penv, (const char *const *)s->env, req.pty, NULL,
                     (const char *const *)env) < 0) {
        sb_strv_free(argv);
        sb_strv_free(env);
        sb_actor_reply_error(x->a, &to, SB_EBADMSG, "malformed env");
        return 0;
    }
    sb_strv_free(env);
    sb_str_copy(cwd, sizeof cwd, req.cwd);
    xc_cmd_t *c = sb_xcalloc(1, sizeof *c);
    c->x = x;
    c->background = req.background;
    c->stream = req.stream;
    c->pty = req.pty;
    snprintf(c->sandbox_id, sizeof c->sandbox_id, "%s", s->id);
    sb_exec_opts_t o = {
        .argv = (const char *const *)argv,
        .env = (const char *const *)penv,
        .cwd = *cwd ? cwd : NULL,
        .stdin_data = req.stdin.ptr,
        .stdin_len = req.stdin.len,
        .keep_stdin = req.keep_stdin,
        .pty = req.pty,
        .rows = (uint16_t)(req.rows > 1000 ? 1000 : req.rows),
        .cols = (uint16_t)(req.cols > 1000 ? 1000 : req.cols),
        /* A background process lives as long as it likes, up to the server's maximum. */
        .timeout_ms = sb__x_clamp(req.timeout_ms,
                                  c->background ? (uint64_t)cf->executor_max_timeout_ms
                                                : (uint64_t)cf->executor_default_timeout_ms,
                                  (uint64_t)cf->executor_max_timeout_ms),
        .memory_bytes = s->lim.memory_bytes,
        .output_max = sb__x_clamp(req.output_max, (uint64_t)cf->executor_output_max,
                                  (uint64_t)cf->executor_output_max),
        .on_started = xc_on_started,
    };
    c->out = sb__x_out_new(x, &to, SB_MSG_OUTPUT);
    int rc = sb_sandbox_exec(s->sb, &o, xc_on_output, xc_on_done, c, NULL);
    sb_strv_free(argv);
    sb_strv_free(penv);
    if (rc < 0) {
        sb__x_out_error(c->out, rc == SB_ECLOSED ? SB_ENOTFOUND : SB_EINVAL, "cannot start: %s",
                        sb_strerror(rc));
        free(c);
        return 0;
    }
    x->running++;
    return 0;
}

/* ---- PROC_* ----------------------------------------------------------------------------------- */

int
sb__x_handle_proc(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_str_t sid;
    uint64_t pid;
    int rc;
    sb_proc_input_t in;
    sb_proc_signal_t sg;
    sb_proc_resize_t rs;
    if (m->type == SB_MSG_PROC_INPUT) {
        if (sb_proc_input_decode(m, &in) != 0)
            return SB_EBADMSG;
        sid = in.sandbox;
        pid = in.pid;
    } else if (m->type == SB_MSG_PROC_SIGNAL) {
        if (sb_proc_signal_decode(m, &sg) != 0 || sg.signal > 64)
            return SB_EBADMSG;
        sid = sg.sandbox;
        pid = sg.pid;
    } else {
        if (sb_proc_resize_decode(m, &rs) != 0 || rs.rows > 1000 || rs.cols > 1000)
            return SB_EBADMSG;
        sid = rs.sandbox;
        pid = rs.pid;
    }
    sb__xsbx_t *s = sb__x_find(x, sid);
    if (!s || s->state != SB__XSBX_READY || pid == 0 || pid > (1u << 30))
        return SB_ENOTFOUND;
    sb_sandbox_run_t *h = sb_sandbox_find_run(s->sb, (int)pid);
    if (!h)
        return SB_ENOTFOUND;
    if (m->type == SB_MSG_PROC_INPUT) {
        rc = in.data.len ? sb_run_write_stdin(h, in.data.ptr, in.data.len) : 0;
        if (rc == 0 && in.eof)
            rc = sb_run_close_stdin(h);
    } else if (m->type == SB_MSG_PROC_SIGNAL) {
        rc = sb_run_signal(h, sg.signal ? (int)sg.signal : SIGKILL);
    } else {
        rc = sb_run_resize(h, (uint16_t)rs.rows, (uint16_t)rs.cols);
    }
    if (rc < 0)
        return rc == SB_ECLOSED ? SB_ENOTFOUND : rc;
    sb_exec_ack_t ack = {.id = sb_str(s->id)};
    sb_buf_t *b = sb_actor_scratch(x->a);
    sb_replyto_t to = sb_replyto(m);
    /* The ack is best effort: the input or signal has been delivered either way, and a
     * requester that cannot take it any more times out on its own. */
    if (sb_exec_ack_encode(&ack, b) == 0)
        (void)sb_actor_reply(x->a, &to, SB_MSG_EXEC_ACK, 0, b->data, b->len);
    return 0;
}
