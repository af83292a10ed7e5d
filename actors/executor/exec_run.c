/*
 * exec_run.c: RUN and CMD -- a program or a command line in a sandbox, its streamed output,
 * its result -- and PROC_INPUT / PROC_SIGNAL / PROC_RESIZE on running processes.
 *
 * Run states (one per run, in order; any step may jump to SENDING with an error):
 *   WAIT_SBX   one-shot: the run's own sandbox is being created
 *   WRITING    RUN: the source file and `files` are being written (in parallel)
 *   COMPILING  RUN of a compiled runtime: compile_cmd runs with the compile limits
 *   SNAPSHOT   RUN with artifacts: /home/user is listed before the program starts
 *   RUNNING    run_cmd (RUN) or argv (CMD) runs; output is coalesced into chunks -- or, for
 *              a one-shot RUN in a warm sandbox whose kernel is up, the code runs in that
 *              kernel (xr_route decides; exec_kernel.c speaks to it)
 *   ARTIFACTS  RUN with artifacts: /home/user is listed again, new or changed files read
 *   SENDING    the final reply is encoded; it leaves with the last chunks, then the run is freed
 * A run belongs to x->runs from its request until its final reply is sent (or dropped), and to
 * its sandbox's run list only while it uses the sandbox: it leaves that list before the
 * sandbox is destroyed (one-shot and destroy=true runs destroy theirs right after).
 *
 * Streaming: output arriving during one loop iteration is appended to the run's pending
 * buffers; a uv_check (after I/O) sends at most one OUTPUT chunk per stream per iteration,
 * and chunks of 64 KiB as soon as they fill, so a chatty program costs few messages and no
 * unbounded memory (the engine caps what a run keeps at output_max).  Every chunk is sent
 * before the RESULT, which is always last and flagged FINAL.  When the bus says a peer is
 * full (SB_EAGAIN) the rest waits for the next iteration, with a uv_idle keeping the loop
 * turning; nothing is reordered.
 */
#include "exec.h"

#include "base/err.h"
#include "base/log.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/base64.h"

#include <errno.h>
#include <msgpack.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XR_COMPILE_OUT_MAX (64u << 10)
#define XR_COMPILE_TIMEOUT_MS 30000
#define XR_LIST_DEPTH 8

typedef enum {
    XR_WAIT_SBX,
    XR_WRITING,
    XR_COMPILING,
    XR_SNAPSHOT,
    XR_RUNNING,
    XR_ARTIFACTS,
    XR_SENDING,
} xr_state_t;

typedef struct {
    char *path;
    uint64_t size, mtime;
    uint8_t *data;
    size_t len;
} xr_file_t;

struct sb__xrun {
    sb__xstate_t *x;
    sb__xsbx_t *s;
    uint64_t seq;
    sb_replyto_t to;
    xr_state_t state;
    bool is_cmd, stream, background, pty, keep_stdin, oneshot, destroy_after;
    bool want_final;   /* a RESULT (or error) ends this run's replies */
    bool final_ready, final_is_error, dirty, blocked;
    int final_err;
    char final_msg[256];
    sb_buf_t final;    /* the encoded RESULT */
    const sb_plugin_t *plugin;
    char runtime[64];
    char sandbox_id[SB__X_ID_LEN];
    /* the request */
    uint8_t *code, *in;
    size_t code_len, in_len;
    char **args, **env, **argv;
    size_t nargs;
    char *cwd;
    sb__xfile_t *files;
    size_t nfiles, writes_left;
    int write_err;
    uint64_t timeout_ms, cpu_ms, memory_bytes, compile_timeout_ms, output_max, artifacts_max;
    uint16_t rows, cols;
    char src[320];
    /* the process */
    sb_sandbox_run_t *h;
    int pid;
    uint64_t t0_us;
    sb_run_result_t res; /* scalars; out/err are copied to the buffers below */
    sb_buf_t out, err, compile;
    bool compile_failed, ran;
    /* through the warm kernel (xr_route) */
    bool via_kernel, k_errored;
    size_t req_env_n;
    uint64_t req_memory_mb;
    int k_exit;
    uint64_t k_cpu0_ns;
    xr_file_t *figs;
    size_t nfigs;
    /* streaming: pending chunks per stream (0 stdout or terminal, 1 stderr) */
    sb_buf_t pend[2];
    /* artifacts */
    xr_file_t *snap, *arts;
    size_t nsnap, narts, art_next;
    uint64_t art_budget;
    sb__xrun_t *next, *sbx_next;
};

static void xr_finish(sb__xrun_t *r);
static void xr_step(sb__xrun_t *r);

/* ---- lists and freeing ----------------------------------------------------------------------- */

static void
xr_detach(sb__xrun_t *r)
{
    if (!r->s)
        return;
    for (sb__xrun_t **pp = &r->s->runs; *pp; pp = &(*pp)->sbx_next)
        if (*pp == r) {
            *pp = r->sbx_next;
            break;
        }
    r->s = NULL;
}

static void
xr_files_free(xr_file_t *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++) {
        free(f[i].path);
        free(f[i].data);
    }
    free(f);
}

static void
xr_free(sb__xrun_t *r)
{
    sb__xstate_t *x = r->x;
    for (sb__xrun_t **pp = &x->runs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    xr_detach(r);
    free(r->code);
    free(r->in);
    sb__x_strv_free(r->args);
    sb__x_strv_free(r->env);
    sb__x_strv_free(r->argv);
    free(r->cwd);
    sb__x_files_free(r->files, r->nfiles);
    sb_buf_fini(&r->final);
    sb_buf_fini(&r->out);
    sb_buf_fini(&r->err);
    sb_buf_fini(&r->compile);
    sb_buf_fini(&r->pend[0]);
    sb_buf_fini(&r->pend[1]);
    xr_files_free(r->snap, r->nsnap);
    xr_files_free(r->arts, r->narts);
    xr_files_free(r->figs, r->nfigs);
    free(r);
}

static sb__xrun_t *
xr_new(sb__xstate_t *x, const sb_msg_t *m, bool is_cmd)
{
    sb__xrun_t *r = sb_xcalloc(1, sizeof *r);
    r->x = x;
    r->seq = ++x->next_seq;
    r->to = sb_replyto(m);
    r->is_cmd = is_cmd;
    r->want_final = true;
    r->t0_us = sb_now_mono_us();
    sb_buf_init(&r->final, 0);
    sb_buf_init(&r->out, 0);
    sb_buf_init(&r->err, 0);
    sb_buf_init(&r->compile, 0);
    sb_buf_init(&r->pend[0], 0);
    sb_buf_init(&r->pend[1], 0);
    r->next = x->runs;
    x->runs = r;
    return r;
}

static void
xr_attach(sb__xrun_t *r, sb__xsbx_t *s)
{
    r->s = s;
    snprintf(r->sandbox_id, sizeof r->sandbox_id, "%s", s->id);
    r->sbx_next = s->runs;
    s->runs = r;
}

/* ---- sending --------------------------------------------------------------------------------- */

/* xr_send_pending sends the pending chunks (all, or only whole 64 KiB ones) and then, when
 * everything before it is out, the final reply.  Returns 1 when nothing is left to send. */
static int
xr_send_pending(sb__xrun_t *r, bool whole_only)
{
    sb__xstate_t *x = r->x;
    r->blocked = false;
    for (int k = 0; k < 2; k++) {
        sb_buf_t *p = &r->pend[k];
        while (p->len && (!whole_only || p->len >= SB__X_CHUNK_MAX)) {
            size_t n = p->len < SB__X_CHUNK_MAX ? p->len : SB__X_CHUNK_MAX;
            sb_output_t o = {.pid = (uint64_t)(r->pid > 0 ? r->pid : 0),
                             .stream = r->pty ? 3 : (uint64_t)k + 1,
                             .data = {(const char *)p->data, (uint32_t)n}};
            sb_buf_t *b = sb_actor_scratch(x->a);
            int rc = sb_output_encode(&o, b);
            if (rc == 0)
                rc = sb_actor_reply(x->a, &r->to, SB_MSG_OUTPUT, SB_MF_STREAM, b->data, b->len);
            if (rc == SB_EAGAIN && !x->stopping) {
                r->blocked = true;
                return 0;
            }
            sb_buf_consume(p, n); /* sent, or the requester is gone: runs finish regardless */
        }
    }
    if (whole_only || !r->final_ready)
        return 0;
    int rc;
    if (r->final_is_error)
        rc = sb_actor_reply_error(x->a, &r->to, r->final_err, "%s", r->final_msg);
    else
        rc = sb_actor_reply(x->a, &r->to, SB_MSG_RESULT, SB_MF_FINAL, r->final.data,
                            r->final.len);
    if (rc == SB_EAGAIN && !x->stopping) {
        r->blocked = true;
        return 0;
    }
    if (rc < 0 && rc != SB_ENOROUTE)
        sb_log_warn("SB-EXEC-REPLY-DROP", "result of run %llu in %s dropped: %s",
                    (unsigned long long)r->seq, r->sandbox_id, sb_strerror(rc));
    return 1;
}

static void
xr_flush_cb(uv_check_t *h)
{
    sb__x_flush(h->data);
}

static void
xr_idle_cb(uv_idle_t *h)
{
    (void)h; /* only keeps the loop from blocking while replies wait for room */
}

void
sb__x_flush_schedule(sb__xstate_t *x)
{
    if (x->handles_open)
        uv_check_start(&x->flush, xr_flush_cb);
}

static void
xr_schedule(sb__xrun_t *r)
{
    r->dirty = true;
    sb__x_flush_schedule(r->x);
}

void
sb__x_flush(sb__xstate_t *x)
{
    bool blocked = false, dirty = false;
    for (sb__xrun_t *r = x->runs, *next; r; r = next) {
        next = r->next;
        if (!r->dirty)
            continue;
        r->dirty = false;
        if (xr_send_pending(r, false) && r->state == XR_SENDING) {
            xr_free(r);
            continue;
        }
        if (r->blocked) {
            r->dirty = true;
            blocked = dirty = true;
        }
    }
    if (sb__x_kern_flush(x))
        blocked = dirty = true;
    if (!x->handles_open)
        return;
    if (!dirty)
        uv_check_stop(&x->flush);
    if (blocked)
        uv_idle_start(&x->retry, xr_idle_cb);
    else
        uv_idle_stop(&x->retry);
}

/* ---- results --------------------------------------------------------------------------------- */

static void
xr_pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void
xr_pack_kstr(msgpack_packer *pk, const char *k, const char *v)
{
    xr_pack_str(pk, k, strlen(k));
    xr_pack_str(pk, v, strlen(v));
}

static void
xr_pack_kbin(msgpack_packer *pk, const char *k, const void *v, size_t n)
{
    xr_pack_str(pk, k, strlen(k));
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, v, n);
}

static void
xr_pack_ku(msgpack_packer *pk, const char *k, uint64_t v)
{
    xr_pack_str(pk, k, strlen(k));
    msgpack_pack_uint64(pk, v);
}

static void
xr_pack_ki(msgpack_packer *pk, const char *k, int64_t v)
{
    xr_pack_str(pk, k, strlen(k));
    msgpack_pack_int64(pk, v);
}

static void
xr_pack_kb(msgpack_packer *pk, const char *k, bool v)
{
    xr_pack_str(pk, k, strlen(k));
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static const char *
xr_status(const sb__xrun_t *r)
{
    if (r->compile_failed)
        return "compile_error";
    if (!r->ran || r->res.error)
        return "error";
    return sb_run_status_name(r->res.status);
}

static void
xr_mon_exec(sb__xrun_t *r)
{
    sb__xstate_t *x = r->x;
    sb_mon_exec_t m = {.runtime = sb_str(r->runtime), .status = sb_str(xr_status(r)),
                       .duration_us = sb_now_mono_us() - r->t0_us,
                       .memory_peak = r->res.memory_peak_bytes,
                       .cpu_us = r->res.cpu_time_ms * 1000};
    sb_buf_t *b = sb_actor_scratch(x->a);
    if (sb_mon_exec_encode(&m, b) != 0)
        return;
    int rc = sb_actor_send(x->a, sb_addr(SB_ACTOR_MONITOR), SB_MSG_MON_EXEC, 0, 0, 0, b->data,
                           b->len);
    if (rc < 0 && rc != SB_ENOROUTE)
        sb_log_debug("SB-EXEC-MON-DROP", "MON_EXEC dropped: %s", sb_strerror(rc));
}

/* Fail a run before its process ran: an error reply (protocol-level problems) or a RESULT
 * with status "error" (the program could not be set up). */
static void
xr_fail(sb__xrun_t *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void
xr_fail(sb__xrun_t *r, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->final_msg, sizeof r->final_msg, fmt, ap);
    va_end(ap);
    r->final_err = code;
    r->final_is_error = code != 0;
    r->ran = false;
    xr_finish(r);
}

static void
xr_encode_result(sb__xrun_t *r)
{
    sb_buf_t arts;
    msgpack_packer pk;
    sb_buf_init(&arts, 0);
    if (r->narts + r->nfigs) {
        sb_codec_packer(&pk, &arts);
        msgpack_pack_array(&pk, r->narts + r->nfigs);
        for (size_t i = 0; i < r->narts + r->nfigs; i++) {
            xr_file_t *f = i < r->narts ? &r->arts[i] : &r->figs[i - r->narts];
            const char *p = f->path;
            if (strncmp(p, "/home/user/", 11) == 0)
                p += 11;
            msgpack_pack_array(&pk, 4);
            xr_pack_str(&pk, p, strlen(p));
            const char *mime = sb__x_mime(p);
            xr_pack_str(&pk, mime, strlen(mime));
            msgpack_pack_uint64(&pk, f->size);
            msgpack_pack_bin(&pk, f->len);
            msgpack_pack_bin_body(&pk, f->data, f->len);
        }
    }
    sb_result_t res = {
        .stdout = {(const char *)r->out.data, (uint32_t)r->out.len},
        .stderr = {(const char *)r->err.data, (uint32_t)r->err.len},
        .exit_code = r->ran && r->res.status == SB_RUN_EXITED ? r->res.exit_code : -1,
        .signal = r->res.signal,
        .status = sb_str(xr_status(r)),
        .execution_time_ms = r->res.execution_time_ms,
        .cpu_time_ms = r->res.cpu_time_ms,
        .memory_peak = r->res.memory_peak_bytes,
        .stdout_truncated = r->res.out_truncated,
        .stderr_truncated = r->res.err_truncated,
        .compile = {(const char *)r->compile.data, (uint32_t)r->compile.len},
        .artifacts = {(const char *)arts.data, (uint32_t)arts.len},
        .error = sb_str(r->final_msg),
        .pid = (uint64_t)(r->pid > 0 ? r->pid : 0),
        .sandbox = sb_str(r->sandbox_id),
        .kernel = r->via_kernel,
    };
    if (!r->ran && !r->final_msg[0] && r->res.error)
        res.error = sb_str(sb_strerror(r->res.error));
    sb_buf_reset(&r->final);
    if (sb_result_encode(&res, &r->final) != 0) {
        r->final_is_error = true;
        r->final_err = SB_ETOOBIG;
        snprintf(r->final_msg, sizeof r->final_msg, "result too big to send");
    }
    sb_buf_fini(&arts);
}

/* xr_finish: the run is over (or never ran).  Its sandbox is let go first -- destroyed if
 * the run owned it -- then the final reply goes out after any chunks still pending. */
static void
xr_finish(sb__xrun_t *r)
{
    sb__xsbx_t *s = r->s;
    r->state = XR_SENDING;
    if (r->ran && r->res.error && !r->final_msg[0])
        snprintf(r->final_msg, sizeof r->final_msg, "cannot start: %s", sb_strerror(r->res.error));
    if (!r->final_is_error)
        xr_encode_result(r);
    if (!r->is_cmd && !r->final_is_error)
        xr_mon_exec(r);
    xr_detach(r);
    if (s && (r->oneshot || r->destroy_after))
        sb__x_sbx_destroy(s, r->oneshot ? "one-shot run done" : "destroy after run");
    if (!r->want_final) {
        r->final_ready = false;
        if (!r->pend[0].len && !r->pend[1].len) {
            xr_free(r);
            return;
        }
    }
    r->final_ready = r->want_final;
    if (xr_send_pending(r, false) && r->want_final) {
        xr_free(r);
        return;
    }
    if (!r->want_final && !r->pend[0].len && !r->pend[1].len) {
        xr_free(r);
        return;
    }
    xr_schedule(r);
}

/* ---- the process ----------------------------------------------------------------------------- */

static void
xr_on_output(sb_sandbox_run_t *h, int fd, const uint8_t *data, size_t len, void *ud)
{
    sb__xrun_t *r = ud;
    (void)h;
    if (!r->stream || r->state != XR_RUNNING)
        return;
    sb_buf_t *p = &r->pend[fd == 2 && !r->pty ? 1 : 0];
    if (sb_buf_append(p, data, len) != 0)
        return;
    if (p->len >= SB__X_CHUNK_MAX)
        xr_send_pending(r, true);
    xr_schedule(r);
}

static void
xr_on_started(sb_sandbox_run_t *h, int pid, void *ud)
{
    sb__xrun_t *r = ud;
    sb__xstate_t *x = r->x;
    (void)h;
    r->pid = pid;
    if (!r->background || r->state != XR_RUNNING)
        return;
    sb_cmd_started_t st = {.sandbox = sb_str(r->sandbox_id), .pid = (uint64_t)pid};
    sb_buf_t *b = sb_actor_scratch(x->a);
    if (sb_cmd_started_encode(&st, b) == 0)
        sb_actor_reply(x->a, &r->to, SB_MSG_CMD_STARTED, r->stream ? SB_MF_STREAM : 0, b->data,
                       b->len);
    /* Without stream, CMD_STARTED was the whole answer; the process runs on unobserved. */
    r->want_final = r->stream;
}

static void
xr_copy_result(sb__xrun_t *r, const sb_run_result_t *res, bool keep_output)
{
    r->res = *res;
    r->res.out = r->res.err = NULL;
    sb_buf_reset(&r->out);
    sb_buf_reset(&r->err);
    if (keep_output) {
        sb_buf_append(&r->out, res->out, res->out_len);
        sb_buf_append(&r->err, res->err, res->err_len);
    }
}

static void
xr_list_cb(const sb_file_result_t *fr, void *ud);

static void
xr_on_done(sb_sandbox_run_t *h, const sb_run_result_t *res, void *ud)
{
    sb__xrun_t *r = ud;
    (void)h;
    r->h = NULL;
    r->x->running--;
    r->ran = true;
    if (r->background && !r->pid) {
        /* a background command that never started: nothing was answered yet */
        r->ran = false;
        xr_fail(r, SB_EINVAL, "cannot start: %s", sb_strerror(res->error ? res->error : SB_EIO));
        return;
    }
    if (r->background && !r->want_final) {
        xr_finish(r);
        return;
    }
    /* Streamed output already went out chunk by chunk; the RESULT does not repeat it. */
    xr_copy_result(r, res, !r->stream);
    if (r->is_cmd || r->artifacts_max == 0 || !r->s || r->s->state != SB__XSBX_READY) {
        xr_finish(r);
        return;
    }
    r->state = XR_ARTIFACTS;
    int rc = sb_sandbox_file_list(r->s->sb, "/home/user", XR_LIST_DEPTH, xr_list_cb, r);
    if (rc < 0)
        xr_finish(r);
}

static void
xr_compile_done(sb_sandbox_run_t *h, const sb_run_result_t *res, void *ud)
{
    sb__xrun_t *r = ud;
    msgpack_packer pk;
    (void)h;
    r->h = NULL;
    r->x->running--;
    sb_buf_reset(&r->compile);
    sb_codec_packer(&pk, &r->compile);
    msgpack_pack_map(&pk, 10);
    xr_pack_kbin(&pk, "stdout", res->out, res->out_len);
    xr_pack_kbin(&pk, "stderr", res->err, res->err_len);
    xr_pack_ki(&pk, "exit_code", res->status == SB_RUN_EXITED ? res->exit_code : -1);
    xr_pack_ki(&pk, "signal", res->signal);
    xr_pack_kstr(&pk, "status", res->error ? "error" : sb_run_status_name(res->status));
    xr_pack_ku(&pk, "execution_time_ms", res->execution_time_ms);
    xr_pack_ku(&pk, "cpu_time_ms", res->cpu_time_ms);
    xr_pack_ku(&pk, "memory_peak", res->memory_peak_bytes);
    xr_pack_kb(&pk, "stdout_truncated", res->out_truncated);
    xr_pack_kb(&pk, "stderr_truncated", res->err_truncated);
    if (res->error || res->status != SB_RUN_EXITED || res->exit_code != 0) {
        r->compile_failed = true;
        r->ran = true;
        r->res.execution_time_ms = res->execution_time_ms;
        r->res.cpu_time_ms = res->cpu_time_ms;
        r->res.memory_peak_bytes = res->memory_peak_bytes;
        r->res.exit_code = -1;
        xr_finish(r);
        return;
    }
    r->state = XR_SNAPSHOT;
    xr_step(r);
}

static int
xr_exec(sb__xrun_t *r, const char *const *argv, bool main, uint64_t timeout_ms,
        uint64_t memory_bytes, uint64_t cpu_ms, uint64_t output_max)
{
    sb_exec_opts_t o = {
        .argv = argv,
        .env = (const char *const *)r->env,
        .cwd = main ? r->cwd : NULL,
        .stdin_data = main ? r->in : NULL,
        .stdin_len = main ? r->in_len : 0,
        .keep_stdin = main && r->keep_stdin,
        .pty = main && r->pty,
        .rows = r->rows,
        .cols = r->cols,
        .timeout_ms = timeout_ms,
        .cpu_ms = cpu_ms,
        .memory_bytes = memory_bytes,
        .output_max = output_max,
        .on_started = xr_on_started,
    };
    int rc = sb_sandbox_exec(r->s->sb, &o, main ? xr_on_output : NULL,
                             main ? xr_on_done : xr_compile_done, r, &r->h);
    if (rc == 0)
        r->x->running++;
    return rc;
}

/* Warm kernels (issue 6): a one-shot RUN -- a leased warm sandbox (the pool's, destroyed after
 * the run) -- of a runtime whose kernel is already running there is sent to that kernel, so no
 * interpreter starts on the request path.  Everything the kernel model cannot honour goes
 * through run_cmd as before: stdin (the kernel's user code reads an empty stdin), args (no
 * argv), per-run env, a CPU-time or memory limit of the run, a compiled runtime, code that is
 * not UTF-8 (the protocol is JSON), a sandbox that ran anything before (a long-lived sandbox's
 * kernel holds a user's state: a RUN there must not see or change it).  `files` are fine:
 * they are written to /home/user first, as for run_cmd.  The run's RESULT says which way it
 * went (kernel = true).  What differs from run_cmd, by design: an uncaught exception is exit
 * code 1 with the traceback on stderr (python: SystemExit(n) is exit code n; bash: the last
 * status), figures the code shows (matplotlib plt.show() or left open) come back as artifacts
 * "figure-N.png" (image/png), and the value of a trailing expression is not printed (as with
 * `python3 main.py`). */
typedef enum { XR_VIA_RUN_CMD, XR_VIA_KERNEL } xr_route_t;

static xr_route_t
xr_route(const sb__xrun_t *r)
{
    sb__xkern_t *k;
    if (r->is_cmd || !r->s || !r->s->warm || !r->destroy_after || r->plugin->compile_cmd ||
        !r->plugin->kernel_cmd || r->s->plugin != r->plugin || r->in_len || r->nargs ||
        r->req_env_n || r->cpu_ms || r->req_memory_mb || r->s->runs_done)
        return XR_VIA_RUN_CMD;
    if (sb__x_kern_get(r->s, r->plugin, false, &k) < 0)
        return XR_VIA_RUN_CMD;
    json_t *probe = json_stringn(r->code_len ? (const char *)r->code : "", r->code_len);
    if (!probe)
        return XR_VIA_RUN_CMD;
    json_decref(probe);
    return XR_VIA_KERNEL;
}

static void
xr_k_text(sb__xrun_t *r, int fd, const char *p, size_t n)
{
    if (!n)
        return;
    if (r->stream) {
        sb_buf_t *b = &r->pend[fd == 2 ? 1 : 0];
        if (sb_buf_append(b, p, n) != 0)
            return;
        if (b->len >= SB__X_CHUNK_MAX)
            xr_send_pending(r, true);
        xr_schedule(r);
    } else {
        sb_buf_append(fd == 2 ? &r->err : &r->out, p, n);
    }
}

/* xr_k_figure keeps a PNG the kernel sent as an artifact "figure-N.png". */
static void
xr_k_figure(sb__xrun_t *r, const char *b64, size_t n)
{
    if (r->nfigs >= SB__X_ARTIFACTS_MAX)
        return;
    uint8_t *data = sb_xmalloc(n / 4 * 3 + 4);
    int len = sb_base64_decode(b64, n, data, n / 4 * 3 + 4);
    if (len < 0) {
        free(data);
        return;
    }
    uint64_t used = 0;
    for (size_t i = 0; i < r->nfigs; i++)
        used += r->figs[i].len;
    r->figs = sb_xrealloc(r->figs, (r->nfigs + 1) * sizeof *r->figs);
    xr_file_t *f = &r->figs[r->nfigs++];
    char path[64];
    snprintf(path, sizeof path, "figure-%zu.png", r->nfigs);
    *f = (xr_file_t){.path = sb_xstrdup(path), .size = (uint64_t)len};
    if (used + (uint64_t)len <= r->artifacts_max && used + (uint64_t)len <= (2u << 20)) {
        f->data = data;
        f->len = (size_t)len;
    } else {
        free(data); /* listed, without data: past the artifacts cap */
    }
}

static void
xr_k_event(void *ud, const char *type, json_t *ev)
{
    sb__xrun_t *r = ud;
    if (r->state != XR_RUNNING)
        return;
    if (type[0] == 's') {
        json_t *t = json_object_get(ev, "text");
        if (json_is_string(t))
            xr_k_text(r, type[3] == 'o' ? 1 : 2, json_string_value(t), json_string_length(t));
        return;
    }
    if (type[0] == 'r') {
        json_t *png = json_object_get(json_object_get(ev, "data"), "image/png");
        if (json_is_string(png) && !json_is_true(json_object_get(ev, "is_main_result")))
            xr_k_figure(r, json_string_value(png), json_string_length(png));
        return; /* a trailing expression's value is not output, as with run_cmd */
    }
    /* error: what an uncaught exception does to a script */
    const char *name = json_string_value(json_object_get(ev, "name"));
    const char *value = json_string_value(json_object_get(ev, "value"));
    r->k_errored = true;
    r->k_exit = 1;
    if (name && (!strcmp(name, "ExitCode") || !strcmp(name, "SystemExit")) && value) {
        char *end;
        long v = strtol(value, &end, 10);
        if (*value && !*end) {
            r->k_exit = (int)(v & 0xff);
            return;
        }
        if (name[0] == 'S') { /* sys.exit("message"): the message on stderr, status 1 */
            xr_k_text(r, 2, value, strlen(value));
            xr_k_text(r, 2, "\n", 1);
            return;
        }
    }
    json_t *tb = json_object_get(ev, "traceback"), *line;
    size_t i;
    if (json_is_array(tb) && json_array_size(tb)) {
        json_array_foreach(tb, i, line)
            if (json_is_string(line)) {
                xr_k_text(r, 2, json_string_value(line), json_string_length(line));
                xr_k_text(r, 2, "\n", 1);
            }
    } else {
        char buf[600];
        int n = snprintf(buf, sizeof buf, "%s: %s\n", name ? name : "Error", value ? value : "");
        xr_k_text(r, 2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    }
}

static void
xr_k_end(void *ud, const sb__xkend_t *e)
{
    sb__xrun_t *r = ud;
    sb__xstate_t *x = r->x;
    x->running--;
    r->ran = true;
    memset(&r->res, 0, sizeof r->res);
    r->res.execution_time_ms = e->duration_us / 1000;
    r->res.exit_code = -1;
    sb_cgroup_stats_t st;
    if (r->s && r->s->sb &&
        sb_cgroup_stats(sb_engine_cgroups(x->engine), sb_sandbox_cgroup_name(r->s->sb), &st) == 0) {
        r->res.cpu_time_ms = st.cpu_usage_ns > r->k_cpu0_ns ? (st.cpu_usage_ns - r->k_cpu0_ns) / 1000000
                                                            : 0;
        r->res.memory_peak_bytes = st.memory_peak;
    }
    if (e->err == 0) {
        json_t *ec = json_object_get(e->reply, "exit_code"); /* bash: the cell's last status */
        r->res.status = SB_RUN_EXITED;
        r->res.exit_code = json_is_integer(ec) ? (int)(json_integer_value(ec) & 0xff)
                           : r->k_errored  ? r->k_exit
                                           : 0;
        if (!strcmp(e->status, "output_limit")) {
            r->res.status = SB_RUN_OUTPUT_LIMIT;
            r->res.exit_code = -1;
            r->res.out_truncated = true;
        }
    } else if (e->err == SB_ETIMEDOUT) {
        r->res.status = SB_RUN_TIMEOUT;
    } else if (e->kres && e->err == SB_EIO) {
        /* the kernel process itself ended (os._exit, process.exit, a crash, OOM): as if the
         * script's process had */
        r->res.status = e->kres->status;
        r->res.exit_code = e->kres->exit_code;
        r->res.signal = e->kres->signal;
    } else {
        r->res.status = SB_RUN_KILLED;
    }
    if (r->artifacts_max == 0 || !r->s || r->s->state != SB__XSBX_READY) {
        xr_finish(r);
        return;
    }
    r->state = XR_ARTIFACTS;
    if (sb_sandbox_file_list(r->s->sb, "/home/user", XR_LIST_DEPTH, xr_list_cb, r) < 0)
        xr_finish(r);
}

static int
xr_kernel_start(sb__xrun_t *r)
{
    sb__xkern_t *k;
    int rc = sb__x_kern_get(r->s, r->plugin, false, &k);
    if (rc < 0)
        return rc;
    json_t *code = json_stringn(r->code_len ? (const char *)r->code : "", r->code_len);
    if (!code)
        return SB_EINVAL;
    sb_cgroup_stats_t st;
    const sb_cgroup_sys_t *cg = sb_engine_cgroups(r->x->engine);
    sb_cgroup_reset_peak(cg, sb_sandbox_cgroup_name(r->s->sb));
    if (sb_cgroup_stats(cg, sb_sandbox_cgroup_name(r->s->sb), &st) == 0)
        r->k_cpu0_ns = st.cpu_usage_ns;
    r->pid = sb__x_kern_pid(k);
    static const sb__xkcb_t cb = {xr_k_event, xr_k_end};
    r->x->running++;
    sb__x_kern_submit(k, json_pack("{s:s,s:o}", "type", "execute", "code", code), r->timeout_ms,
                      r->output_max, &cb, r);
    return 0;
}

static void
xr_start_main(sb__xrun_t *r)
{
    int rc;
    r->state = XR_RUNNING;
    if (!r->s || r->s->state != SB__XSBX_READY) {
        xr_fail(r, 0, "sandbox is gone");
        return;
    }
    if (r->is_cmd) {
        rc = xr_exec(r, (const char *const *)r->argv, true, r->timeout_ms, r->memory_bytes,
                     r->cpu_ms, r->output_max);
    } else if (r->via_kernel) {
        rc = xr_kernel_start(r);
    } else {
        char **argv = sb_plugin_expand(r->plugin, r->plugin->run_cmd, r->src,
                                       (const char *const *)r->args, r->nargs);
        rc = argv ? xr_exec(r, (const char *const *)argv, true, r->timeout_ms, r->memory_bytes,
                            r->cpu_ms, r->output_max)
                  : SB_EINVAL;
        sb_plugin_argv_free(argv);
    }
    if (rc < 0) {
        if (r->background)
            xr_fail(r, SB_EINVAL, "cannot start: %s", sb_strerror(rc));
        else
            xr_fail(r, 0, "cannot start: %s", sb_strerror(rc));
    }
}

static void
xr_snapshot_cb(const sb_file_result_t *fr, void *ud)
{
    sb__xrun_t *r = ud;
    if (fr->err == 0 && fr->nents) {
        r->snap = sb_xcalloc(fr->nents, sizeof *r->snap);
        for (size_t i = 0; i < fr->nents; i++) {
            if (fr->ents[i].type != 1)
                continue;
            r->snap[r->nsnap].path = sb_xstrdup(fr->ents[i].path);
            r->snap[r->nsnap].size = fr->ents[i].size;
            r->snap[r->nsnap].mtime = fr->ents[i].mtime;
            r->nsnap++;
        }
    }
    xr_start_main(r);
}

/* xr_step moves a RUN from its current state to the next asynchronous operation. */
static void
xr_step(sb__xrun_t *r)
{
    if (!r->s || r->s->state != SB__XSBX_READY) {
        xr_fail(r, 0, "sandbox is gone");
        return;
    }
    if (r->state == XR_COMPILING) {
        char **argv = sb_plugin_expand(r->plugin, r->plugin->compile_cmd, r->src, NULL, 0);
        uint64_t mem = r->plugin->compile_memory_mb ? r->plugin->compile_memory_mb << 20
                                                    : r->s->lim.memory_bytes;
        uint64_t t = sb__x_clamp(r->compile_timeout_ms,
                                 r->plugin->compile_timeout_ms ? r->plugin->compile_timeout_ms
                                                               : XR_COMPILE_TIMEOUT_MS,
                                 (uint64_t)r->x->cfg->executor_max_timeout_ms);
        int rc = argv ? xr_exec(r, (const char *const *)argv, false, t, mem,
                                r->plugin->compile_cpu_ms, XR_COMPILE_OUT_MAX)
                      : SB_EINVAL;
        sb_plugin_argv_free(argv);
        if (rc < 0)
            xr_fail(r, 0, "cannot start the compiler: %s", sb_strerror(rc));
        return;
    }
    if (r->state == XR_SNAPSHOT) {
        if (r->artifacts_max == 0 ||
            sb_sandbox_file_list(r->s->sb, "/home/user", XR_LIST_DEPTH, xr_snapshot_cb, r) < 0)
            xr_start_main(r);
        return;
    }
}

static void
xr_written(const sb_file_result_t *fr, void *ud)
{
    sb__xrun_t *r = ud;
    if (fr->err && !r->write_err)
        r->write_err = fr->err;
    if (--r->writes_left > 0)
        return;
    if (r->write_err) {
        xr_fail(r, 0, "cannot write the program's files: %s", sb_strerror(r->write_err));
        return;
    }
    r->state = r->plugin->compile_cmd ? XR_COMPILING : XR_SNAPSHOT;
    xr_step(r);
}

/* xr_begin: the run's sandbox is ready. */
static void
xr_begin(sb__xrun_t *r)
{
    if (r->is_cmd) {
        xr_start_main(r);
        return;
    }
    r->via_kernel = xr_route(r) == XR_VIA_KERNEL;
    r->s->runs_done = true;
    r->state = XR_WRITING;
    /* through the kernel the code travels in the request: no source file to write */
    r->writes_left = (r->via_kernel ? 0 : 1) + r->nfiles;
    if (r->writes_left == 0) {
        r->state = XR_SNAPSHOT;
        xr_step(r);
        return;
    }
    sb_sandbox_t *sb = r->s->sb;
    for (size_t i = r->via_kernel ? 1 : 0; i <= r->nfiles; i++) {
        int rc = i == 0 ? sb_sandbox_file_write(sb, r->src, r->code, r->code_len, 0644, false,
                                                xr_written, r)
                        : sb_sandbox_file_write(sb, r->files[i - 1].path, r->files[i - 1].data,
                                                r->files[i - 1].len, r->files[i - 1].mode, false,
                                                xr_written, r);
        if (rc < 0) {
            xr_written(&(sb_file_result_t){.err = rc}, r);
            if (r->state != XR_WRITING)
                return; /* that was the last one: the run has moved on */
        }
    }
}

void
sb__x_sbx_ready(sb__xsbx_t *s, int status)
{
    for (sb__xrun_t *r = s->runs, *next; r; r = next) {
        next = r->sbx_next;
        if (r->state != XR_WAIT_SBX)
            continue;
        if (status == 0)
            xr_begin(r);
        else
            xr_fail(r, status == SB_ECLOSED ? SB_ECLOSED : SB_EUNAVAILABLE,
                    "no sandbox for the run: %s", sb_strerror(status));
    }
}

/* ---- artifacts ------------------------------------------------------------------------------- */

static bool
xr_hidden(const char *path)
{
    const char *p = path;
    if (strncmp(p, "/home/user/", 11) == 0)
        p += 11;
    for (; *p; p++)
        if (*p == '.' && (p == path || p[-1] == '/'))
            return true;
    return false;
}

static void xr_read_next(sb__xrun_t *r);

static void
xr_read_cb(const sb_file_result_t *fr, void *ud)
{
    sb__xrun_t *r = ud;
    xr_file_t *f = &r->arts[r->art_next];
    if (fr->err == 0 && fr->len <= r->art_budget) {
        f->data = sb_xmalloc(fr->len ? fr->len : 1);
        if (fr->len)
        memcpy(f->data, fr->data, fr->len);
        f->len = fr->len;
        r->art_budget -= fr->len;
    }
    r->art_next++;
    xr_read_next(r);
}

static void
xr_read_next(sb__xrun_t *r)
{
    while (r->art_next < r->narts) {
        xr_file_t *f = &r->arts[r->art_next];
        if (f->size <= r->art_budget && r->s && r->s->state == SB__XSBX_READY &&
            sb_sandbox_file_read(r->s->sb, f->path, f->size, xr_read_cb, r) == 0)
            return;
        r->art_next++; /* too big for what is left: listed without data */
    }
    xr_finish(r);
}

static void
xr_list_cb(const sb_file_result_t *fr, void *ud)
{
    sb__xrun_t *r = ud;
    if (fr->err) {
        xr_finish(r);
        return;
    }
    r->arts = sb_xcalloc(SB__X_ARTIFACTS_MAX, sizeof *r->arts);
    for (size_t i = 0; i < fr->nents && r->narts < SB__X_ARTIFACTS_MAX; i++) {
        const sb_file_entry_t *e = &fr->ents[i];
        if (e->type != 1 || !strcmp(e->path, r->src) || xr_hidden(e->path))
            continue;
        bool same = false;
        for (size_t k = 0; k < r->nsnap && !same; k++)
            same = !strcmp(r->snap[k].path, e->path) && r->snap[k].size == e->size &&
                   r->snap[k].mtime == e->mtime;
        if (same)
            continue;
        r->arts[r->narts].path = sb_xstrdup(e->path);
        r->arts[r->narts].size = e->size;
        r->arts[r->narts].mtime = e->mtime;
        r->narts++;
    }
    /* What fits in the one RESULT message beside the output and the compile record. */
    uint64_t used = r->out.len + r->err.len + r->compile.len + (256u << 10);
    uint64_t room = SB_MSG_MAX_BODY > used ? SB_MSG_MAX_BODY - used : 0;
    r->art_budget = r->artifacts_max < room ? r->artifacts_max : room;
    r->art_next = 0;
    xr_read_next(r);
}

/* ---- requests -------------------------------------------------------------------------------- */

static int
xr_copy_bin(sb_str_t s, uint8_t **p, size_t *n)
{
    *p = sb_xmalloc(s.len ? s.len : 1);
    if (s.len)
        memcpy(*p, s.ptr, s.len);
    *n = s.len;
    return 0;
}

int
sb__x_handle_run(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_run_t req;
    char rt[64], **env = NULL, **args = NULL;
    size_t nenv = 0, nargs = 0, nfiles = 0;
    sb__xfile_t *files = NULL;
    int rc;
    if (sb_run_decode(m, &req) != 0)
        return SB_EBADMSG;
    if (sb_str_copy(rt, sizeof rt, req.runtime) != 0 || !*rt)
        return SB_EBADMSG;
    const sb_plugin_t *p = x->plugins ? sb_plugins_find(x->plugins, rt) : NULL;
    if (!p || !p->run_cmd) {
        sb_replyto_t to = sb_replyto(m);
        sb_actor_reply_error(x->a, &to, SB_EINVAL, "unknown runtime '%s'", rt);
        return 0;
    }
    if (sb__x_strv(req.args, 1024, &args, &nargs) != 0 || sb__x_strv(req.env, 1024, &env, &nenv) != 0 ||
        sb__x_files(req.files, &files, &nfiles) != 0) {
        sb__x_strv_free(args);
        sb__x_strv_free(env);
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
        sb__x_strv_free(args);
        sb__x_strv_free(env);
        sb__x_files_free(files, nfiles);
        return rc;
    }
    sb__xrun_t *r = xr_new(x, m, false);
    r->plugin = p;
    snprintf(r->runtime, sizeof r->runtime, "%s", p->name);
    r->stream = req.stream;
    r->oneshot = oneshot;
    r->destroy_after = req.destroy;
    xr_copy_bin(req.code, &r->code, &r->code_len);
    if (req.stdin.len)
        xr_copy_bin(req.stdin, &r->in, &r->in_len);
    r->args = args;
    r->nargs = nargs;
    r->files = files;
    r->nfiles = nfiles;
    const sb_config_t *c = x->cfg;
    r->timeout_ms = sb__x_clamp(req.timeout_ms,
                                p->run_timeout_ms ? p->run_timeout_ms
                                                  : (uint64_t)c->executor_default_timeout_ms,
                                (uint64_t)c->executor_max_timeout_ms);
    r->cpu_ms = req.cpu_ms;
    r->req_env_n = nenv;
    r->req_memory_mb = req.memory_mb;
    r->memory_bytes = sb__x_clamp(req.memory_mb << 20,
                                  p->run_memory_mb ? p->run_memory_mb << 20 : s->lim.memory_bytes,
                                  (uint64_t)c->executor_max_memory_mb << 20);
    r->compile_timeout_ms = req.compile_timeout_ms;
    r->output_max = sb__x_clamp(req.output_max, (uint64_t)c->executor_output_max,
                                (uint64_t)c->executor_output_max);
    r->artifacts_max = req.artifacts_max < (uint64_t)c->executor_artifacts_max
                           ? req.artifacts_max
                           : (uint64_t)c->executor_artifacts_max;
    snprintf(r->src, sizeof r->src, "/home/user/%s", p->source_file ? p->source_file : "main");
    rc = sb__x_env_merge(&r->env, s->env ? (const char *const *)s->env : sb__x_default_env,
                         s->env ? NULL : (const char *const *)p->env,
                         s->env && s->plugin != p ? (const char *const *)p->env : NULL,
                         (const char *const *)env);
    sb__x_strv_free(env);
    xr_attach(r, s);
    if (rc < 0) {
        r->env = NULL;
        xr_fail(r, SB_EBADMSG, "malformed env");
        return 0;
    }
    if (s->state == SB__XSBX_CREATING)
        r->state = XR_WAIT_SBX;
    else
        xr_begin(r);
    return 0;
}

int
sb__x_handle_cmd(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_cmd_t req;
    char **argv = NULL, **env = NULL;
    size_t argc = 0, nenv = 0;
    if (sb_cmd_decode(m, &req) != 0 || sb__x_strv(req.argv, 1024, &argv, &argc) != 0)
        return SB_EBADMSG;
    if (argc == 0 || sb__x_strv(req.env, 1024, &env, &nenv) != 0 ||
        (req.cwd.len && memchr(req.cwd.ptr, 0, req.cwd.len))) {
        sb__x_strv_free(argv);
        sb__x_strv_free(env);
        return SB_EBADMSG;
    }
    sb__xsbx_t *s = sb__x_find(x, req.sandbox);
    if (!s || s->state != SB__XSBX_READY) {
        sb__x_strv_free(argv);
        sb__x_strv_free(env);
        return s && s->state == SB__XSBX_CREATING ? SB_EUNAVAILABLE : SB_ENOTFOUND;
    }
    sb__xrun_t *r = xr_new(x, m, true);
    snprintf(r->runtime, sizeof r->runtime, "cmd");
    r->argv = argv;
    r->background = req.background;
    r->stream = req.stream;
    r->pty = req.pty;
    r->keep_stdin = req.keep_stdin;
    r->rows = (uint16_t)(req.rows > 1000 ? 1000 : req.rows);
    r->cols = (uint16_t)(req.cols > 1000 ? 1000 : req.cols);
    if (req.cwd.len)
        r->cwd = sb_str_dup(req.cwd);
    if (req.stdin.len)
        xr_copy_bin(req.stdin, &r->in, &r->in_len);
    const sb_config_t *c = x->cfg;
    /* A background process lives as long as it likes, up to the server's maximum. */
    r->timeout_ms = sb__x_clamp(req.timeout_ms,
                                r->background ? (uint64_t)c->executor_max_timeout_ms
                                              : (uint64_t)c->executor_default_timeout_ms,
                                (uint64_t)c->executor_max_timeout_ms);
    r->memory_bytes = s->lim.memory_bytes;
    r->output_max = sb__x_clamp(req.output_max, (uint64_t)c->executor_output_max,
                                (uint64_t)c->executor_output_max);
    int rc = sb__x_env_merge(&r->env, s->env ? (const char *const *)s->env
                                             : r->pty ? sb__x_default_env_pty
                                                      : sb__x_default_env,
                             r->pty ? sb__x_default_env_pty + 6 : NULL,
                             (const char *const *)env, NULL);
    sb__x_strv_free(env);
    xr_attach(r, s);
    if (rc < 0) {
        r->env = NULL;
        xr_fail(r, SB_EBADMSG, "malformed env");
        return 0;
    }
    xr_begin(r);
    return 0;
}

static sb__xrun_t *
xr_find_pid(sb__xsbx_t *s, uint64_t pid)
{
    for (sb__xrun_t *r = s->runs; r; r = r->sbx_next)
        if (r->h && r->pid > 0 && (uint64_t)r->pid == pid)
            return r;
    return NULL;
}

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
    if (!s || s->state != SB__XSBX_READY)
        return SB_ENOTFOUND;
    sb__xrun_t *r = xr_find_pid(s, pid);
    if (!r)
        return SB_ENOTFOUND;
    if (m->type == SB_MSG_PROC_INPUT) {
        rc = in.data.len ? sb_run_write_stdin(r->h, in.data.ptr, in.data.len) : 0;
        if (rc == 0 && in.eof)
            rc = sb_run_close_stdin(r->h);
    } else if (m->type == SB_MSG_PROC_SIGNAL) {
        rc = sb_run_signal(r->h, sg.signal ? (int)sg.signal : SIGKILL);
    } else {
        rc = sb_run_resize(r->h, (uint16_t)rs.rows, (uint16_t)rs.cols);
    }
    if (rc < 0)
        return rc == SB_ECLOSED ? SB_ENOTFOUND : rc;
    sb_exec_ack_t ack = {.id = sb_str(s->id)};
    sb_buf_t *b = sb_actor_scratch(x->a);
    sb_replyto_t to = sb_replyto(m);
    if (sb_exec_ack_encode(&ack, b) == 0)
        sb_actor_reply(x->a, &to, SB_MSG_EXEC_ACK, 0, b->data, b->len);
    return 0;
}

void
sb__x_runs_stop(sb__xstate_t *x)
{
    (void)x; /* runs end as their sandboxes are destroyed (status killed); waiting ones fail */
}

void
sb__x_runs_free(sb__xstate_t *x)
{
    while (x->runs)
        xr_free(x->runs);
}
