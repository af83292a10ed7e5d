/*
 * ws_session.c: the `/ws` protocol (docs/api.md "WebSocket /ws") -- JSON messages, sessions
 * that name stateful sandboxes, executions and terminals.  The transport is ws.c's.
 *
 * A session is (session_id -> owner, sandbox).  Its sandbox lives in the gateway's sandbox
 * table (handlers/sandboxes.c), with ws.session_idle_s as idle timeout and "session_expired"
 * as the reason its expiry records; while a connection is attached, the heartbeat sweep
 * touches it, so only a session nobody is attached to expires.  We watch the sandbox: when it
 * leaves the table for any reason (expiry, DELETE through REST, node lost, shutdown) the
 * session ends, its connection is told (error session_ended, close 4004) and the id is free.
 *
 * Invariants:
 *   - A session is used only by its owner (principal id); another principal naming it gets
 *     session_forbidden and never touches it.  At most one connection is attached; a second
 *     one takes over (the first is closed 4001).
 *   - Executions run one at a time per session, in arrival order, from a queue of at most
 *     WSS_QUEUE_MAX; every execute ends with exactly one `exit` frame (or one protocol error
 *     if it never started).  Output for a detached session is dropped, never buffered.
 *   - Every asynchronous operation in flight (sandbox creation, one execution, the terminal's
 *     command) holds a reference on its session, as does the table; a session is freed at zero.
 *     Ending a session cancels them (sb__gw_kernel_cancel, sb_actor_cancel), so no callback
 *     ever sends for a session that is gone.
 *   - Bytes from programs become JSON strings only as valid UTF-8: a sequence split between two
 *     chunks is carried to the next one, an invalid byte becomes U+FFFD.
 *
 * Session states: NEW (no sandbox yet) -> CREATING (sandbox requested; executes and a terminal
 * wait) -> READY -> GONE (sandbox destroyed or session closed; out of the table).  CREATING
 * goes back to NEW if the creation fails (the next execute tries again).
 * An execution: KERNEL (warm kernel, api.h contract) or PROCESS (FILE_OP write of the code,
 * then CMD background+stream+keep_stdin of the runtime's run command, so `stdin` messages have
 * a pid to go to).  The terminal: NONE -> STARTING (CMD pty in flight) -> RUNNING (pid known)
 * -> NONE on its RESULT.
 */
#include "ws_internal.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "base/clock.h"
#include "base/alloc.h"
#include "base/id.h"

#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WSS_QUEUE_MAX 16
#define WSS_STDIN_PENDING_MAX (1u << 20)

typedef enum { SES_NEW, SES_CREATING, SES_READY, SES_GONE } ses_state_t;
typedef enum { EX_KERNEL = 1, EX_PROCESS } ex_kind_t;
typedef enum { PTY_NONE, PTY_STARTING, PTY_RUNNING } pty_state_t;

typedef struct wss_session wss_session_t;

typedef struct {
    uint8_t carry[4];
    size_t n;
} utf8_carry_t;

typedef struct wss_exec {
    wss_session_t *s;
    ex_kind_t kind;
    json_t *msg;   /* the execute message (kept for process mode's second step) */
    json_t *id;    /* the client's "id", echoed; NULL if none */
    char runtime[64];
    uint64_t start_us;
    uint64_t handle; /* kernel */
    uint64_t corr;   /* process: the FILE_OP or CMD request in flight */
    uint64_t pid;
    int errored, interrupted, cancelled;
    sb_buf_t stdin_pending;
    int stdin_eof;
    utf8_carry_t u8[2];
} wss_exec_t;

struct wss_session {
    wss_sessions_t *ss;
    char id[65];
    gw_principal_t p;
    char runtime[64];
    ses_state_t state;
    gw_sandbox_t *sbx;
    ws_conn_t *conn;
    int resumed;   /* what the next `session` frame says */
    int announced; /* the attached connection has had its `session` frame */
    json_t *queue; /* execute messages waiting */
    sb_buf_t early_stdin; /* stdin sent before the queued execute started */
    int early_eof;
    wss_exec_t *exec;
    /* terminal */
    pty_state_t pty;
    uint64_t pty_corr, pty_pid;
    uint64_t pty_rows, pty_cols;
    int pty_wanted;
    utf8_carry_t pty_u8;
    int refs;
    wss_session_t *next;
};

struct wss_sessions {
    gw_ctx_t *ctx;
    wss_session_t *list;
    int stopped;
};

static void ses_pump(wss_session_t *s);
static void ses_end(wss_session_t *s, const char *why, int close_code);

/* ---- helpers ----------------------------------------------------------------------------- */

static void
ses_unref(wss_session_t *s)
{
    if (--s->refs > 0)
        return;
    json_decref(s->queue);
    sb_buf_fini(&s->early_stdin);
    free(s);
}

/* utf8_to_json makes a JSON string of data, keeping an incomplete trailing sequence in carry
 * and replacing invalid bytes with U+FFFD. */
static json_t *
utf8_to_json(utf8_carry_t *cy, const uint8_t *data, size_t len)
{
    sb_buf_t in, out;
    sb_buf_init(&in, 0);
    sb_buf_init(&out, 0);
    sb_buf_append(&in, cy->carry, cy->n);
    sb_buf_append(&in, data, len);
    cy->n = 0;
    const uint8_t *p = in.data;
    size_t n = in.len, i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t need = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3
                                 : (b & 0xF8) == 0xF0 ? 4 : 0;
        if (need == 0 || (need == 2 && b < 0xC2) || (need == 4 && b > 0xF4)) {
            sb_buf_append(&out, "\xEF\xBF\xBD", 3);
            i++;
            continue;
        }
        if (i + need > n) {
            /* Possibly split: keep it if every byte so far is a continuation byte. */
            size_t k;
            for (k = 1; i + k < n && (p[i + k] & 0xC0) == 0x80; k++)
                ;
            if (i + k == n) {
                memcpy(cy->carry, p + i, n - i);
                cy->n = n - i;
                break;
            }
            sb_buf_append(&out, "\xEF\xBF\xBD", 3);
            i++;
            continue;
        }
        size_t k;
        for (k = 1; k < need && (p[i + k] & 0xC0) == 0x80; k++)
            ;
        int bad = k < need;
        if (!bad && need == 3) {
            uint32_t cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(p[i + 1] & 0x3F) << 6);
            bad = cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF);
        } else if (!bad && need == 4) {
            uint32_t cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(p[i + 1] & 0x3F) << 12);
            bad = cp < 0x10000 || cp > 0x10FFFF;
        }
        if (bad) {
            sb_buf_append(&out, "\xEF\xBF\xBD", 3);
            i++;
            continue;
        }
        sb_buf_append(&out, p + i, need);
        i += need;
    }
    json_t *j = json_stringn(out.len ? (const char *)out.data : "", out.len);
    sb_buf_fini(&in);
    sb_buf_fini(&out);
    return j ? j : json_string("");
}

static void
ses_send(wss_session_t *s, json_t *obj)
{
    if (s->conn && !s->ss->stopped)
        sb__ws_send(s->conn, obj);
    else
        json_decref(obj);
}

static void
conn_error(ws_conn_t *c, json_t *id, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
conn_error(ws_conn_t *c, json_t *id, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:s,s:s,s:s}", "type", "error", "code", code, "message", msg);
    if (id)
        json_object_set(o, "id", id);
    sb__ws_send(c, o);
}

static void
ex_send(wss_exec_t *e, json_t *obj)
{
    if (e->id)
        json_object_set(obj, "id", e->id);
    ses_send(e->s, obj);
}

static void
ses_announce(wss_session_t *s)
{
    if (!s->conn || s->announced || s->state != SES_READY)
        return;
    s->announced = 1;
    sb__ws_send(s->conn, json_pack("{s:s,s:s,s:s,s:s,s:b}", "type", "session", "session_id",
                                   s->id, "sandbox_id", sb__gw_sandbox_id(s->sbx), "runtime",
                                   s->runtime, "resumed", s->resumed));
}

static wss_session_t *
ses_find(wss_sessions_t *ss, const char *id)
{
    for (wss_session_t *s = ss->list; s; s = s->next)
        if (!strcmp(s->id, id))
            return s;
    return NULL;
}

static void
ses_unlist(wss_session_t *s)
{
    for (wss_session_t **pp = &s->ss->list; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            ses_unref(s); /* the table's reference */
            return;
        }
}

static void
ses_detach(wss_session_t *s)
{
    if (s->conn) {
        sb__ws_set_data(s->conn, NULL);
        s->conn = NULL;
    }
}

static void
ses_attach(wss_session_t *s, ws_conn_t *c, int resumed)
{
    if (s->conn && s->conn != c) {
        ws_conn_t *old = s->conn;
        ses_detach(s);
        sb__ws_close(old, 4001, "session taken over by another connection");
    }
    s->conn = c;
    s->resumed = resumed;
    s->announced = 0;
    sb__ws_set_data(c, s);
    if (s->sbx)
        sb__gw_sandbox_touch(s->ss->ctx, s->sbx);
    ses_announce(s);
}

/* ---- executions -------------------------------------------------------------------------- */

static void
ex_free(wss_exec_t *e)
{
    wss_session_t *s = e->s;
    if (s->exec == e)
        s->exec = NULL;
    json_decref(e->msg);
    json_decref(e->id);
    sb_buf_fini(&e->stdin_pending);
    free(e);
    ses_unref(s);
}

static uint64_t
ex_ms(const wss_exec_t *e)
{
    return (sb_now_mono_us() - e->start_us) / 1000;
}

/* ex_finish sends the one `exit` frame, frees e and starts the next execute. */
static void
ex_finish(wss_exec_t *e, json_t *exit_frame)
{
    wss_session_t *s = e->s;
    ex_send(e, exit_frame);
    s->refs++; /* ex_free may drop the last reference otherwise */
    ex_free(e);
    if (s->state == SES_READY)
        ses_pump(s);
    ses_unref(s);
}

static void
ex_kernel_cb(void *ud, int err, const char *type, json_t *data)
{
    wss_exec_t *e = ud;
    if (err) {
        int to = err == SB_ETIMEDOUT;
        /* the executor's reason in words (kernel crashed, unknown context, ...), not just
         * the error code, so a client can tell what happened */
        const char *why = sb__gw_kernel_error();
        ex_send(e, json_pack("{s:s,s:s,s:s,s:s}", "type", "error", "code", "execution_failed",
                             "message", to ? "the execution timed out"
                                        : why && *why ? why : sb_strerror(err),
                             "reason", type ? type : "failed"));
        ex_finish(e, json_pack("{s:s,s:i,s:s,s:I}", "type", "exit", "exit_code", -1, "status",
                               to ? "timeout" : "failed", "execution_time",
                               (json_int_t)ex_ms(e)));
        return;
    }
    if (!strcmp(type, "stdout") || !strcmp(type, "stderr")) {
        json_t *o = json_pack("{s:s,s:O}", "type", type, "output", data);
        ex_send(e, o);
    } else if (!strcmp(type, "result")) {
        json_t *o = json_is_object(data) ? json_deep_copy(data) : json_object();
        json_object_set_new(o, "type", json_string("result"));
        ex_send(e, o);
    } else if (!strcmp(type, "error")) {
        json_t *o = json_is_object(data) ? json_deep_copy(data) : json_object();
        json_object_set_new(o, "type", json_string("error"));
        e->errored = 1;
        ex_send(e, o);
    } else if (!strcmp(type, "done")) {
        const char *status = e->interrupted && e->errored ? "interrupted"
                             : e->errored                 ? "error"
                                                          : "ok";
        int code = !strcmp(status, "interrupted") ? 130 : e->errored ? 1 : 0;
        json_t *o = json_pack("{s:s,s:i,s:s,s:I}", "type", "exit", "exit_code", code, "status",
                              status, "execution_time", (json_int_t)ex_ms(e));
        json_t *cnt = json_object_get(data, "execution_count");
        if (cnt)
            json_object_set(o, "execution_count", cnt);
        ex_finish(e, o);
    }
}

static void ex_on_cmd(sb_actor_t *a, int status, const sb_msg_t *m, void *ud);

static void
ex_send_stdin(wss_exec_t *e)
{
    wss_session_t *s = e->s;
    if (!e->pid || !s->sbx || (e->stdin_pending.len == 0 && !e->stdin_eof))
        return;
    sb_proc_input_t pi = {.sandbox = sb_str(sb__gw_sandbox_id(s->sbx)), .pid = e->pid,
                          .data = {(const char *)e->stdin_pending.data,
                                   (uint32_t)e->stdin_pending.len},
                          .eof = e->stdin_eof};
    sb_buf_t *b = sb_actor_scratch(s->ss->ctx->actor);
    if (sb_proc_input_encode(&pi, b) == 0)
        sb_actor_send(s->ss->ctx->actor, sb__gw_sandbox_addr(s->sbx), SB_MSG_PROC_INPUT, 0, 0, 0,
                      b->data, b->len);
    sb_buf_reset(&e->stdin_pending);
    e->stdin_eof = 0;
}

static void
ex_on_written(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    wss_exec_t *e = ud;
    wss_session_t *s = e->s;
    sb_file_reply_t fr;
    (void)a;
    e->corr = 0;
    if (e->cancelled || s->state != SES_READY) {
        ex_free(e);
        return;
    }
    if (status || sb_file_reply_decode(m, &fr) != 0 || fr.errno_) {
        ex_send(e, json_pack("{s:s,s:s,s:s}", "type", "error", "code", "execution_failed",
                             "message", "could not write the code into the sandbox"));
        ex_finish(e, json_pack("{s:s,s:i,s:s,s:I}", "type", "exit", "exit_code", -1, "status",
                               "failed", "execution_time", (json_int_t)ex_ms(e)));
        return;
    }
    const sb_config_t *cfg = s->ss->ctx->cfg;
    const sb_plugin_t *pl = sb_plugins_find(s->ss->ctx->plugins, e->runtime);
    char path[300];
    snprintf(path, sizeof path, "/home/user/.ws/%s", pl->source_file);
    char **argv = sb_plugin_expand(pl, pl->run_cmd, path, NULL, 0);
    sb_buf_t av, env, body;
    msgpack_packer pk;
    sb_buf_init(&av, 0);
    sb_buf_init(&env, 0);
    sb_buf_init(&body, 0);
    size_t argc = 0;
    while (argv && argv[argc])
        argc++;
    sb_codec_packer(&pk, &av);
    msgpack_pack_array(&pk, (uint32_t)argc);
    for (size_t i = 0; i < argc; i++) {
        msgpack_pack_str(&pk, strlen(argv[i]));
        msgpack_pack_str_body(&pk, argv[i], strlen(argv[i]));
    }
    sb_codec_packer(&pk, &env);
    size_t nenv = 0;
    while (pl->env && pl->env[nenv])
        nenv++;
    msgpack_pack_array(&pk, (uint32_t)nenv);
    for (size_t i = 0; i < nenv; i++) {
        msgpack_pack_str(&pk, strlen(pl->env[i]));
        msgpack_pack_str_body(&pk, pl->env[i], strlen(pl->env[i]));
    }
    sb_plugin_argv_free(argv);
    json_t *tv = json_object_get(e->msg, "timeout");
    uint64_t timeout = json_is_integer(tv) && json_integer_value(tv) > 0
                           ? (uint64_t)json_integer_value(tv)
                           : (uint64_t)cfg->executor_default_timeout_ms;
    if (timeout > (uint64_t)cfg->executor_max_timeout_ms)
        timeout = (uint64_t)cfg->executor_max_timeout_ms;
    sb_cmd_t c = {.sandbox = sb_str(sb__gw_sandbox_id(s->sbx)),
                  .argv = {(const char *)av.data, (uint32_t)av.len},
                  .env = {(const char *)env.data, (uint32_t)env.len},
                  .cwd = SB_STR("/home/user"),
                  .timeout_ms = timeout,
                  .background = true,
                  .stream = true,
                  .keep_stdin = true};
    int r = sb_cmd_encode(&c, &body);
    if (r == 0)
        r = sb_actor_request(s->ss->ctx->actor, sb__gw_sandbox_addr(s->sbx), SB_MSG_CMD,
                             body.data, body.len, (uint32_t)(timeout + 15000), ex_on_cmd, e,
                             &e->corr);
    sb_buf_fini(&av);
    sb_buf_fini(&env);
    sb_buf_fini(&body);
    if (r) {
        ex_send(e, json_pack("{s:s,s:s,s:s}", "type", "error", "code", "execution_failed",
                             "message", sb_strerror(r)));
        ex_finish(e, json_pack("{s:s,s:i,s:s,s:I}", "type", "exit", "exit_code", -1, "status",
                               "failed", "execution_time", (json_int_t)ex_ms(e)));
    }
}

static void
ex_on_cmd(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    wss_exec_t *e = ud;
    int final = status != 0 || !(m->flags & SB_MF_STREAM) || (m->flags & SB_MF_FINAL);
    (void)a;
    if (final)
        e->corr = 0;
    if (e->cancelled || e->s->state != SES_READY) {
        if (final)
            ex_free(e);
        return;
    }
    if (status) {
        ex_send(e, json_pack("{s:s,s:s,s:s}", "type", "error", "code", "execution_failed",
                             "message", sb_strerror(status)));
        ex_finish(e, json_pack("{s:s,s:i,s:s,s:I}", "type", "exit", "exit_code", -1, "status",
                               status == SB_ETIMEDOUT ? "timeout" : "failed", "execution_time",
                               (json_int_t)ex_ms(e)));
        return;
    }
    if (m->type == SB_MSG_CMD_STARTED) {
        sb_cmd_started_t cs;
        if (sb_cmd_started_decode(m, &cs) == 0)
            e->pid = cs.pid;
        ex_send_stdin(e);
        return;
    }
    if (m->type == SB_MSG_OUTPUT) {
        sb_output_t o;
        if (sb_output_decode(m, &o) == 0 && (o.stream == 1 || o.stream == 2)) {
            json_t *str = utf8_to_json(&e->u8[o.stream - 1], (const uint8_t *)o.data.ptr,
                                       o.data.len);
            ex_send(e, json_pack("{s:s,s:o}", "type", o.stream == 1 ? "stdout" : "stderr",
                                 "output", str));
        }
        return;
    }
    if (m->type == SB_MSG_RESULT) {
        sb_result_t r;
        if (sb_result_decode(m, &r) != 0) {
            ex_finish(e, json_pack("{s:s,s:i,s:s,s:I}", "type", "exit", "exit_code", -1,
                                   "status", "failed", "execution_time", (json_int_t)ex_ms(e)));
            return;
        }
        char st[33];
        sb_str_copy(st, sizeof st, r.status);
        json_t *o = json_pack("{s:s,s:I,s:s,s:I}", "type", "exit", "exit_code",
                              (json_int_t)r.exit_code, "status", st[0] ? st : "exited",
                              "execution_time", (json_int_t)r.execution_time_ms);
        if (r.signal)
            json_object_set_new(o, "signal", json_integer((json_int_t)r.signal));
        if (r.error.len)
            json_object_set_new(o, "message", json_stringn(r.error.ptr, r.error.len));
        ex_finish(e, o);
    }
}

/* ex_start runs one execute message (the session is READY, nothing running). */
static void
ex_start(wss_session_t *s, json_t *msg)
{
    gw_ctx_t *ctx = s->ss->ctx;
    wss_exec_t *e = sb_xcalloc(1, sizeof *e);
    const char *code = json_string_value(json_object_get(msg, "code"));
    size_t len = json_string_length(json_object_get(msg, "code"));
    const char *rt = json_string_value(json_object_get(msg, "runtime"));
    const char *mode = json_string_value(json_object_get(msg, "mode"));
    const sb_plugin_t *pl = sb_plugins_find(ctx->plugins, rt ? rt : s->runtime);
    e->s = s;
    s->refs++;
    e->msg = json_incref(msg);
    json_t *id = json_object_get(msg, "id");
    e->id = id ? json_incref(id) : NULL;
    e->start_us = sb_now_mono_us();
    sb_buf_init(&e->stdin_pending, WSS_STDIN_PENDING_MAX);
    snprintf(e->runtime, sizeof e->runtime, "%s", pl ? pl->name : s->runtime);
    s->exec = e;
    sb_buf_append(&e->stdin_pending, s->early_stdin.data, s->early_stdin.len);
    e->stdin_eof = s->early_eof;
    sb_buf_reset(&s->early_stdin);
    s->early_eof = 0;
    int want_process = (mode && !strcmp(mode, "process")) || !pl || !pl->kernel_cmd;
    int r = SB_EUNSUPPORTED;
    if (!want_process) {
        e->kind = EX_KERNEL;
        json_t *tv = json_object_get(msg, "timeout");
        uint64_t tmo = json_is_integer(tv) ? (uint64_t)json_integer_value(tv) : 0;
        r = sb__gw_kernel_execute_timeout(ctx, s->sbx, code, len, e->runtime, NULL, tmo,
                                          ex_kernel_cb, e, &e->handle);
        /* A gateway without warm kernels (ws_kernel_fallback.c) runs the code as a process. */
        want_process = r == SB_EUNSUPPORTED;
    }
    if (!want_process) {
    } else if (!pl || pl->compile_cmd) {
        r = SB_EUNSUPPORTED;
    } else {
        e->kind = EX_PROCESS;
        char path[300];
        snprintf(path, sizeof path, "/home/user/.ws/%s", pl->source_file);
        sb_file_op_t fo = {.sandbox = sb_str(sb__gw_sandbox_id(s->sbx)), .op = SB_STR("write"),
                           .path = sb_str(path), .data = {code, (uint32_t)len}, .mode = 0644};
        sb_buf_t body;
        sb_buf_init(&body, 0);
        r = sb_file_op_encode(&fo, &body);
        if (r == 0)
            r = sb_actor_request(ctx->actor, sb__gw_sandbox_addr(s->sbx), SB_MSG_FILE_OP,
                                 body.data, body.len, 15000, ex_on_written, e, &e->corr);
        sb_buf_fini(&body);
    }
    sb__gw_sandbox_touch(ctx, s->sbx);
    if (r) {
        ex_send(e, json_pack("{s:s,s:s,s:s}", "type", "error", "code", "execution_failed",
                             "message",
                             r == SB_EUNSUPPORTED ? "compiled runtimes are not supported on /ws yet"
                                                  : sb_strerror(r)));
        ex_finish(e, json_pack("{s:s,s:i,s:s,s:I}", "type", "exit", "exit_code", -1, "status",
                               "failed", "execution_time", (json_int_t)0));
    }
}

/* ex_cancel forgets the running execution: no callback will send anything for it. */
static void
ex_cancel(wss_session_t *s)
{
    wss_exec_t *e = s->exec;
    if (!e)
        return;
    s->exec = NULL;
    e->cancelled = 1;
    if (e->kind == EX_KERNEL) {
        sb__gw_kernel_cancel(s->ss->ctx, e->handle);
        ex_free(e);
    } else if (e->corr) {
        sb_actor_cancel(s->ss->ctx->actor, e->corr); /* its callback frees e */
    } else {
        ex_free(e);
    }
}

static void
ses_pump(wss_session_t *s)
{
    while (s->state == SES_READY && !s->exec && json_array_size(s->queue) > 0) {
        json_t *msg = json_incref(json_array_get(s->queue, 0));
        json_array_remove(s->queue, 0);
        ex_start(s, msg);
        json_decref(msg);
    }
}

/* ---- the terminal ------------------------------------------------------------------------ */

static void
pty_on_cmd(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    wss_session_t *s = ud;
    int final = status != 0 || !(m->flags & SB_MF_STREAM) || (m->flags & SB_MF_FINAL);
    (void)a;
    if (final) {
        s->pty_corr = 0;
        s->pty = PTY_NONE;
        s->pty_pid = 0;
        s->pty_u8.n = 0;
    }
    if (s->state == SES_READY) {
        if (status) {
            ses_send(s, json_pack("{s:s,s:i,s:s}", "type", "pty_exit", "exit_code", -1,
                                  "status", status == SB_ETIMEDOUT ? "timeout" : "failed"));
        } else if (m->type == SB_MSG_CMD_STARTED) {
            sb_cmd_started_t cs;
            if (sb_cmd_started_decode(m, &cs) == 0) {
                s->pty_pid = cs.pid;
                s->pty = PTY_RUNNING;
                ses_send(s, json_pack("{s:s,s:I,s:I,s:I}", "type", "pty_started", "pid",
                                      (json_int_t)cs.pid, "cols", (json_int_t)s->pty_cols,
                                      "rows", (json_int_t)s->pty_rows));
            }
        } else if (m->type == SB_MSG_OUTPUT) {
            sb_output_t o;
            if (sb_output_decode(m, &o) == 0)
                ses_send(s, json_pack("{s:s,s:o}", "type", "pty_output", "data",
                                      utf8_to_json(&s->pty_u8, (const uint8_t *)o.data.ptr,
                                                   o.data.len)));
        } else if (m->type == SB_MSG_RESULT) {
            sb_result_t r;
            char st[33] = "exited";
            if (sb_result_decode(m, &r) == 0 && r.status.len)
                sb_str_copy(st, sizeof st, r.status);
            ses_send(s, json_pack("{s:s,s:I,s:s}", "type", "pty_exit", "exit_code",
                                  (json_int_t)r.exit_code, "status", st));
        }
    }
    if (final)
        ses_unref(s);
}

static void
pty_start(wss_session_t *s)
{
    gw_ctx_t *ctx = s->ss->ctx;
    static const char *const argv[] = {"/bin/bash", "-i"};
    sb_buf_t av, body;
    msgpack_packer pk;
    s->pty_wanted = 0;
    sb_buf_init(&av, 0);
    sb_buf_init(&body, 0);
    sb_codec_packer(&pk, &av);
    msgpack_pack_array(&pk, 2);
    for (int i = 0; i < 2; i++) {
        msgpack_pack_str(&pk, strlen(argv[i]));
        msgpack_pack_str_body(&pk, argv[i], strlen(argv[i]));
    }
    uint64_t timeout = (uint64_t)ctx->cfg->executor_max_timeout_ms;
    sb_cmd_t c = {.sandbox = sb_str(sb__gw_sandbox_id(s->sbx)),
                  .argv = {(const char *)av.data, (uint32_t)av.len},
                  .cwd = SB_STR("/home/user"),
                  .timeout_ms = timeout,
                  .background = true,
                  .stream = true,
                  .pty = true,
                  .keep_stdin = true,
                  .rows = s->pty_rows,
                  .cols = s->pty_cols};
    int r = sb_cmd_encode(&c, &body);
    if (r == 0)
        r = sb_actor_request(ctx->actor, sb__gw_sandbox_addr(s->sbx), SB_MSG_CMD, body.data,
                             body.len, (uint32_t)(timeout + 15000), pty_on_cmd, s, &s->pty_corr);
    sb_buf_fini(&av);
    sb_buf_fini(&body);
    if (r) {
        s->pty = PTY_NONE;
        ses_send(s, json_pack("{s:s,s:s,s:s}", "type", "error", "code", "pty_failed", "message",
                              sb_strerror(r)));
        return;
    }
    s->refs++;
}

static void
pty_cancel(wss_session_t *s)
{
    s->pty_wanted = 0;
    if (s->pty_corr)
        sb_actor_cancel(s->ss->ctx->actor, s->pty_corr); /* pty_on_cmd drops the reference */
    s->pty = PTY_NONE;
}

/* ---- sandbox life ------------------------------------------------------------------------ */

static void
ses_on_gone(void *ud, gw_sandbox_t *sbx)
{
    wss_session_t *s = ud;
    (void)sbx;
    s->sbx = NULL;
    if (s->state != SES_GONE)
        ses_end(s, "the session's sandbox ended (expired or deleted)", 4004);
}

/* ses_end: the session is over; its id is free again. */
static void
ses_end(wss_session_t *s, const char *why, int close_code)
{
    if (s->state == SES_GONE)
        return;
    s->state = SES_GONE;
    s->refs++;
    if (s->sbx)
        sb__gw_sandbox_watch(s->sbx, NULL, NULL);
    ex_cancel(s);
    pty_cancel(s);
    json_array_clear(s->queue);
    if (s->conn && close_code) {
        ws_conn_t *c = s->conn;
        conn_error(c, NULL, "session_ended", "session '%s' ended: %s", s->id, why);
        ses_detach(s);
        sb__ws_close(c, close_code, why);
    }
    ses_detach(s);
    ses_unlist(s);
    ses_unref(s);
}

static void
ses_on_created(gw_ctx_t *ctx, int err, const char *message, gw_sandbox_t *sbx, void *ud)
{
    wss_session_t *s = ud;
    if (s->state == SES_GONE) {
        /* Closed or shut down while it was being made: nobody wants it. */
        if (!err && !s->ss->stopped)
            sb__gw_sandbox_destroy(ctx, sbx, "session_closed", &s->p);
        ses_unref(s);
        return;
    }
    if (err) {
        s->state = SES_NEW;
        if (s->conn) {
            conn_error(s->conn, NULL, "sandbox_failed", "could not create the sandbox: %s",
                       message ? message : sb_strerror(err));
            size_t i;
            json_t *m;
            json_array_foreach(s->queue, i, m)
            {
                json_t *o = json_pack("{s:s,s:i,s:s,s:i}", "type", "exit", "exit_code", -1,
                                      "status", "failed", "execution_time", 0);
                json_t *id = json_object_get(m, "id");
                if (id)
                    json_object_set(o, "id", id);
                sb__ws_send(s->conn, o);
            }
        }
        json_array_clear(s->queue);
        s->pty_wanted = 0;
        ses_unref(s);
        return;
    }
    s->sbx = sbx;
    s->state = SES_READY;
    sb__gw_sandbox_set_expiry(sbx, ctx->cfg->ws_session_idle_s, "session_expired");
    sb__gw_sandbox_watch(sbx, ses_on_gone, s);
    sb_log_info("SB-WS-SESSION", "session %s of %s: sandbox %s", s->id, s->p.id,
                sb__gw_sandbox_id(sbx));
    ses_announce(s);
    if (s->pty_wanted)
        pty_start(s);
    ses_pump(s);
    ses_unref(s);
}

static int
ses_ensure_sandbox(wss_session_t *s, ws_conn_t *c)
{
    if (s->state != SES_NEW)
        return 0;
    int r = sb__gw_sandbox_create(s->ss->ctx, &s->p, s->runtime,
                                  s->ss->ctx->cfg->ws_session_idle_s, ses_on_created, s);
    if (r) {
        conn_error(c, NULL, "sandbox_failed", "could not create the sandbox: %s", sb_strerror(r));
        return r;
    }
    s->refs++;
    s->state = SES_CREATING;
    return 0;
}

/* ---- binding a connection to a session --------------------------------------------------- */

/* ses_bind finds or makes the session for c; NULL after answering an error. */
static wss_session_t *
ses_bind(wss_sessions_t *ss, ws_conn_t *c, json_t *msg, const char *runtime, json_t *id)
{
    wss_session_t *cur = sb__ws_get_data(c);
    const gw_principal_t *p = sb__ws_principal(c);
    json_t *sv = json_object_get(msg, "session_id");
    const char *sid = json_string_value(sv);
    if (sv && !json_is_null(sv) &&
        (!sid || !sb__ws_session_id_ok(sid, json_string_length(sv)))) {
        conn_error(c, id, "bad_message", "session_id must be 1..64 of [A-Za-z0-9._-]");
        return NULL;
    }
    if (cur) {
        if (sid && strcmp(sid, cur->id) != 0) {
            conn_error(c, id, "session_mismatch",
                       "this connection is attached to session '%s'", cur->id);
            return NULL;
        }
        return cur;
    }
    char gen[65];
    if (!sid) {
        sb_random_id("ses-", gen, sizeof gen);
        sid = gen;
    }
    wss_session_t *s = ses_find(ss, sid);
    if (s) {
        if (strcmp(s->p.id, p->id) != 0) {
            conn_error(c, id, "session_forbidden", "session '%s' is not yours", sid);
            return NULL;
        }
        ses_attach(s, c, 1);
        return s;
    }
    s = sb_xcalloc(1, sizeof *s);
    s->ss = ss;
    snprintf(s->id, sizeof s->id, "%s", sid);
    s->p = *p;
    snprintf(s->runtime, sizeof s->runtime, "%s", runtime ? runtime : "python");
    s->queue = json_array();
    sb_buf_init(&s->early_stdin, WSS_STDIN_PENDING_MAX);
    s->refs = 1;
    s->next = ss->list;
    ss->list = s;
    ses_attach(s, c, 0);
    return s;
}

/* ---- messages ---------------------------------------------------------------------------- */

static int
msg_int(ws_conn_t *c, json_t *msg, const char *f, int64_t lo, int64_t hi, int64_t *out)
{
    json_t *v = json_object_get(msg, f);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        conn_error(c, NULL, "bad_message", "'%s' must be an integer in %lld..%lld", f,
                   (long long)lo, (long long)hi);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static const sb_plugin_t *
msg_runtime(wss_sessions_t *ss, ws_conn_t *c, json_t *msg, json_t *id, int *bad)
{
    json_t *rv = json_object_get(msg, "runtime");
    *bad = 0;
    if (!rv || json_is_null(rv))
        return NULL;
    const sb_plugin_t *pl = json_is_string(rv) && ss->ctx->plugins
                                ? sb_plugins_find(ss->ctx->plugins, json_string_value(rv))
                                : NULL;
    if (!pl || !pl->installed) {
        conn_error(c, id, "unknown_runtime", "runtime '%.64s' is not installed here",
                   json_is_string(rv) ? json_string_value(rv) : "?");
        *bad = 1;
    }
    return pl;
}

static void
on_execute(wss_sessions_t *ss, ws_conn_t *c, json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    json_t *code = json_object_get(msg, "code");
    json_t *mode = json_object_get(msg, "mode");
    int bad;
    if (id && !json_is_string(id) && !json_is_integer(id)) {
        conn_error(c, NULL, "bad_message", "'id' must be a string or an integer");
        return;
    }
    if (id && json_is_string(id) && json_string_length(id) > 64) {
        conn_error(c, NULL, "bad_message", "'id' is at most 64 bytes");
        return;
    }
    if (!json_is_string(code)) {
        conn_error(c, id, "bad_message", "execute needs 'code' (a string)");
        return;
    }
    if (mode && !json_is_null(mode) &&
        (!json_is_string(mode) || (strcmp(json_string_value(mode), "kernel") != 0 &&
                                   strcmp(json_string_value(mode), "process") != 0))) {
        conn_error(c, id, "bad_message", "'mode' is \"kernel\" or \"process\"");
        return;
    }
    int64_t t = 0;
    if (msg_int(c, msg, "timeout", 1, ss->ctx->cfg->executor_max_timeout_ms, &t))
        return;
    const sb_plugin_t *pl = msg_runtime(ss, c, msg, id, &bad);
    if (bad)
        return;
    wss_session_t *s = ses_bind(ss, c, msg, pl ? pl->name : NULL, id);
    if (!s)
        return;
    if (json_array_size(s->queue) >= WSS_QUEUE_MAX) {
        conn_error(c, id, "busy", "%d executes are already waiting", WSS_QUEUE_MAX);
        return;
    }
    json_array_append(s->queue, msg);
    if (ses_ensure_sandbox(s, c) == 0)
        ses_pump(s);
    else
        json_array_clear(s->queue);
}

static void
on_stdin(wss_session_t *s, ws_conn_t *c, json_t *msg)
{
    json_t *d = json_object_get(msg, "data");
    json_t *eof = json_object_get(msg, "eof");
    if ((d && !json_is_string(d)) || (eof && !json_is_boolean(eof))) {
        conn_error(c, NULL, "bad_message", "stdin takes 'data' (a string) and 'eof' (a bool)");
        return;
    }
    wss_exec_t *e = s ? s->exec : NULL;
    if (!e && s && json_array_size(s->queue) > 0) {
        /* For the execute that is about to start (its sandbox or its turn is coming). */
        if (d && sb_buf_append(&s->early_stdin, json_string_value(d), json_string_length(d)))
            conn_error(c, NULL, "busy", "too much stdin waiting for the program to start");
        if (json_is_true(eof))
            s->early_eof = 1;
        return;
    }
    if (!e) {
        conn_error(c, NULL, "no_execution", "nothing is running to take stdin");
        return;
    }
    if (e->kind == EX_KERNEL) {
        conn_error(c, NULL, "stdin_unsupported",
                   "warm-kernel executions read no stdin: execute with \"mode\":\"process\"");
        return;
    }
    if (d && sb_buf_append(&e->stdin_pending, json_string_value(d), json_string_length(d))) {
        conn_error(c, NULL, "busy", "too much stdin waiting for the program to start");
        return;
    }
    if (json_is_true(eof))
        e->stdin_eof = 1;
    ex_send_stdin(e);
}

static void
on_interrupt(wss_session_t *s, ws_conn_t *c)
{
    wss_exec_t *e = s ? s->exec : NULL;
    if (!e) {
        conn_error(c, NULL, "no_execution", "nothing is running");
        return;
    }
    e->interrupted = 1;
    if (e->kind == EX_KERNEL) {
        sb__gw_kernel_interrupt(s->ss->ctx, e->handle);
        return;
    }
    if (!e->pid || !s->sbx)
        return; /* not started yet: the flag reports it */
    sb_proc_signal_t ps = {.sandbox = sb_str(sb__gw_sandbox_id(s->sbx)), .pid = e->pid,
                           .signal = SIGINT};
    sb_buf_t *b = sb_actor_scratch(s->ss->ctx->actor);
    if (sb_proc_signal_encode(&ps, b) == 0)
        sb_actor_send(s->ss->ctx->actor, sb__gw_sandbox_addr(s->sbx), SB_MSG_PROC_SIGNAL, 0, 0,
                      0, b->data, b->len);
}

static void
on_pty(wss_sessions_t *ss, ws_conn_t *c, json_t *msg)
{
    int64_t cols = 80, rows = 24;
    int bad;
    if (msg_int(c, msg, "cols", 1, 1000, &cols) || msg_int(c, msg, "rows", 1, 1000, &rows))
        return;
    const sb_plugin_t *pl = msg_runtime(ss, c, msg, NULL, &bad);
    if (bad)
        return;
    wss_session_t *s = ses_bind(ss, c, msg, pl ? pl->name : NULL, NULL);
    if (!s)
        return;
    if (s->pty != PTY_NONE || s->pty_wanted) {
        conn_error(c, NULL, "pty_exists", "this session already has a terminal");
        return;
    }
    s->pty_cols = (uint64_t)cols;
    s->pty_rows = (uint64_t)rows;
    s->pty = PTY_STARTING;
    if (s->state == SES_READY) {
        pty_start(s);
        return;
    }
    s->pty_wanted = 1;
    if (ses_ensure_sandbox(s, c) != 0) {
        s->pty_wanted = 0;
        s->pty = PTY_NONE;
    }
}

static int
pty_ready(wss_session_t *s, ws_conn_t *c)
{
    if (!s || s->pty != PTY_RUNNING || !s->sbx) {
        conn_error(c, NULL, "no_pty", "no terminal is running: send {\"type\":\"pty\"} first");
        return 0;
    }
    return 1;
}

static void
on_pty_msg(wss_session_t *s, ws_conn_t *c, json_t *msg, const char *type)
{
    gw_ctx_t *ctx;
    sb_buf_t *b;
    int r = 0;
    uint16_t mt;
    if (!pty_ready(s, c))
        return;
    ctx = s->ss->ctx;
    b = sb_actor_scratch(ctx->actor);
    sb_str_t sid = sb_str(sb__gw_sandbox_id(s->sbx));
    if (!strcmp(type, "input")) {
        json_t *d = json_object_get(msg, "data");
        if (!json_is_string(d)) {
            conn_error(c, NULL, "bad_message", "input takes 'data' (a string)");
            return;
        }
        sb_proc_input_t pi = {.sandbox = sid, .pid = s->pty_pid,
                              .data = {json_string_value(d), (uint32_t)json_string_length(d)}};
        r = sb_proc_input_encode(&pi, b);
        mt = SB_MSG_PROC_INPUT;
    } else if (!strcmp(type, "resize")) {
        int64_t cols = (int64_t)s->pty_cols, rows = (int64_t)s->pty_rows;
        if (msg_int(c, msg, "cols", 1, 1000, &cols) || msg_int(c, msg, "rows", 1, 1000, &rows))
            return;
        s->pty_cols = (uint64_t)cols;
        s->pty_rows = (uint64_t)rows;
        sb_proc_resize_t rs = {.sandbox = sid, .pid = s->pty_pid, .rows = s->pty_rows,
                               .cols = s->pty_cols};
        r = sb_proc_resize_encode(&rs, b);
        mt = SB_MSG_PROC_RESIZE;
    } else {
        static const struct {
            const char *name;
            int sig;
        } sigs[] = {{"SIGINT", SIGINT},   {"SIGTERM", SIGTERM}, {"SIGKILL", SIGKILL},
                    {"SIGHUP", SIGHUP},   {"SIGQUIT", SIGQUIT}, {"SIGTSTP", SIGTSTP},
                    {"SIGCONT", SIGCONT}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}};
        json_t *sv = json_object_get(msg, "signal");
        int sig = 0;
        if (json_is_integer(sv) && json_integer_value(sv) > 0 && json_integer_value(sv) < 65)
            sig = (int)json_integer_value(sv);
        for (size_t i = 0; json_is_string(sv) && i < sizeof sigs / sizeof sigs[0]; i++)
            if (!strcmp(json_string_value(sv), sigs[i].name) ||
                !strcmp(json_string_value(sv), sigs[i].name + 3))
                sig = sigs[i].sig;
        if (!sig) {
            conn_error(c, NULL, "bad_message", "'signal' is a name like \"SIGINT\" or a number");
            return;
        }
        sb_proc_signal_t ps = {.sandbox = sid, .pid = s->pty_pid, .signal = (uint64_t)sig};
        r = sb_proc_signal_encode(&ps, b);
        mt = SB_MSG_PROC_SIGNAL;
    }
    if (r == 0)
        r = sb_actor_send(ctx->actor, sb__gw_sandbox_addr(s->sbx), mt, 0, 0, 0, b->data, b->len);
    if (r)
        conn_error(c, NULL, "pty_failed", "%s", sb_strerror(r));
    sb__gw_sandbox_touch(ctx, s->sbx);
}

void
sb__wss_on_message(wss_sessions_t *ss, ws_conn_t *c, const char *data, size_t len)
{
    json_error_t je;
    json_t *msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    wss_session_t *s = sb__ws_get_data(c);
    if (!msg || !json_is_object(msg)) {
        if (msg)
            conn_error(c, NULL, "bad_json", "a message is one JSON object");
        else
            conn_error(c, NULL, "bad_json", "malformed JSON at line %d column %d: %s", je.line,
                       je.column, je.text);
        json_decref(msg);
        return;
    }
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!type)
        conn_error(c, NULL, "bad_message", "a message needs a string 'type'");
    else if (!strcmp(type, "execute"))
        on_execute(ss, c, msg);
    else if (!strcmp(type, "stdin"))
        on_stdin(s, c, msg);
    else if (!strcmp(type, "interrupt"))
        on_interrupt(s, c);
    else if (!strcmp(type, "pty"))
        on_pty(ss, c, msg);
    else if (!strcmp(type, "resize") || !strcmp(type, "input") || !strcmp(type, "signal"))
        on_pty_msg(s, c, msg, type);
    else if (!strcmp(type, "ping"))
        sb__ws_send(c, json_pack("{s:s}", "type", "pong"));
    else if (!strcmp(type, "close")) {
        if (s) {
            gw_sandbox_t *sbx = s->sbx;
            ses_detach(s);
            if (sbx) {
                sb__gw_sandbox_watch(sbx, NULL, NULL);
                sb__gw_sandbox_destroy(ss->ctx, sbx, "session_closed", &s->p);
                s->sbx = NULL;
            }
            ses_end(s, "closed by the client", 0);
        }
        sb__ws_close(c, 1000, "session closed");
    } else
        conn_error(c, NULL, "unknown_type", "unknown message type '%.64s'", type);
    json_decref(msg);
}

void
sb__wss_on_open(wss_sessions_t *ss, ws_conn_t *c, const char *session_id)
{
    if (!session_id)
        return;
    json_t *msg = json_pack("{s:s}", "session_id", session_id);
    wss_session_t *s = ses_bind(ss, c, msg, NULL, NULL);
    json_decref(msg);
    (void)s;
}

void
sb__wss_on_closed(wss_sessions_t *ss, ws_conn_t *c)
{
    wss_session_t *s = sb__ws_get_data(c);
    (void)ss;
    if (!s)
        return;
    ses_detach(s);
    /* A session that never got a sandbox and has nothing coming is not worth keeping. */
    if (s->state == SES_NEW)
        ses_end(s, "unused", 0);
    else if (s->sbx)
        sb__gw_sandbox_touch(ss->ctx, s->sbx); /* idle from now */
}

void
sb__wss_touch(wss_sessions_t *ss, ws_conn_t *c)
{
    wss_session_t *s = sb__ws_get_data(c);
    if (s && s->sbx)
        sb__gw_sandbox_touch(ss->ctx, s->sbx);
}

wss_sessions_t *
sb__wss_alloc(gw_ctx_t *ctx)
{
    wss_sessions_t *ss = sb_xcalloc(1, sizeof *ss);
    ss->ctx = ctx;
    return ss;
}

void
sb__wss_stop(wss_sessions_t *ss)
{
    ss->stopped = 1;
    while (ss->list)
        ses_end(ss->list, "server shutting down", 0);
}

void
sb__wss_free(wss_sessions_t *ss)
{
    free(ss);
}
