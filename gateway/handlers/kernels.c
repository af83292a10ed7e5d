/*
 * kernels.c: warm kernels from the gateway -- the in-gateway contract of api.h
 * (sb__gw_kernel_execute / _interrupt / _cancel, used here and by WebSocket sessions) over the
 * executor's KERNEL_* messages (protocols/executor.def), and the REST routes built on it:
 *
 *   POST   /api/v1/sandboxes/{id}/execute                  stateful execution (role user)
 *   POST   /api/v1/sandboxes/{id}/contexts                 create a context (user)
 *   GET    /api/v1/sandboxes/{id}/contexts                 list (viewer)
 *   DELETE /api/v1/sandboxes/{id}/contexts/{ctx}           delete (user)
 *   POST   /api/v1/sandboxes/{id}/contexts/{ctx}/restart   clear its state (user)
 * (and the same under /api/v1/containers).
 *
 * An execution (gk_exec_t) lives from KERNEL_EXEC until its final reply (KERNEL_DONE, or an
 * error, or the bus deadline: the cell's timeout plus a margin).  Its events go to the
 * caller's callback as they come, in order; after sb__gw_kernel_cancel no callback runs, and
 * the record is freed when the final reply arrives.  Executions are kept per gateway thread
 * (thread-local list), so handles are only meaningful on the gateway loop that made them.
 *
 * REST execute answers once the cell is done: {stdout, stderr, results, error,
 * execution_count}.  A kernel that timed out or died is reported in-band -- 200 with error
 * {"name": "KernelTimeout" | "KernelDied", "value": what happened, "traceback": []} and the
 * output it produced before -- because the request itself was fine and the caller wants that
 * output; refusals (unknown context or language, sandbox gone) are HTTP errors.
 */
#include "gateway/api.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "base/alloc.h"
#include "base/sha256.h"

#include <stdlib.h>
#include <string.h>

#define GK_MARGIN_MS 15000 /* beyond the cell's own timeout: a lost node, not a slow cell */

typedef struct gk_exec {
    gw_ctx_t *ctx;
    uint64_t handle;
    char sandbox[64], language[64];
    sb_addr_t addr;
    gw_kernel_cb cb;
    void *ud;
    bool canceled;
    struct gk_exec *next;
} gk_exec_t;

static _Thread_local gk_exec_t *gk_execs;
static _Thread_local uint64_t gk_next_handle;
static _Thread_local char gk_errmsg[1100];

const char *
sb__gw_kernel_error(void)
{
    return gk_errmsg;
}

static gk_exec_t *
gk_find(gw_ctx_t *ctx, uint64_t handle)
{
    for (gk_exec_t *e = gk_execs; e; e = e->next)
        if (e->handle == handle && e->ctx == ctx && !e->canceled)
            return e;
    return NULL;
}

static void
gk_free(gk_exec_t *e)
{
    for (gk_exec_t **pp = &gk_execs; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    free(e);
}

/* gk_result turns the kernel's {"is_main_result", "data": {mime: value}} into the API's
 * result object {text, png, jpeg, svg, html, markdown, latex, json, javascript, is_main_result}. */
static json_t *
gk_result(json_t *ev)
{
    static const struct {
        const char *mime, *key;
    } map[] = {{"text/plain", "text"},          {"image/png", "png"},
               {"image/jpeg", "jpeg"},          {"image/svg+xml", "svg"},
               {"text/html", "html"},           {"text/markdown", "markdown"},
               {"text/latex", "latex"},         {"application/json", "json"},
               {"application/javascript", "javascript"}};
    json_t *o = json_object(), *data = json_object_get(ev, "data");
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        json_t *v = json_object_get(data, map[i].mime);
        if (v)
            json_object_set(o, map[i].key, v);
    }
    json_object_set_new(o, "is_main_result",
                        json_boolean(json_is_true(json_object_get(ev, "is_main_result"))));
    return o;
}

static void
gk_on_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    gk_exec_t *e = ud;
    (void)a;
    bool final = status != 0 || !m || !(m->flags & SB_MF_STREAM) || (m->flags & SB_MF_FINAL);
    if (e->canceled) {
        if (final)
            gk_free(e);
        return;
    }
    if (status != 0) {
        sb_error_t er;
        gk_errmsg[0] = 0;
        if (m && (m->flags & SB_MF_ERROR) && sb_error_decode(m, &er) == 0)
            sb_str_copy(gk_errmsg, sizeof gk_errmsg, er.message);
        if (!gk_errmsg[0])
            snprintf(gk_errmsg, sizeof gk_errmsg, "%s",
                     status == SB_ETIMEDOUT ? "the executor did not answer in time"
                     : status == SB_ENOROUTE ? "the sandbox's node is gone"
                                             : sb_strerror(status));
        e->cb(e->ud, status, "failed", NULL);
        gk_free(e);
        return;
    }
    if (m->type == SB_MSG_KERNEL_EVENT) {
        sb_kernel_event_t ev;
        if (sb_kernel_event_decode(m, &ev) != 0)
            return;
        json_t *data = NULL;
        char kind[16];
        sb_str_copy(kind, sizeof kind, ev.kind);
        if (!strcmp(kind, "stdout") || !strcmp(kind, "stderr")) {
            data = json_stringn_nocheck(ev.data.ptr ? ev.data.ptr : "", ev.data.len);
        } else {
            json_t *j = json_loadb(ev.data.ptr ? ev.data.ptr : "", ev.data.len, 0, NULL);
            if (j && !strcmp(kind, "result")) {
                data = gk_result(j);
                json_decref(j);
            } else {
                data = j;
            }
        }
        if (data)
            e->cb(e->ud, 0, kind, data);
        json_decref(data);
        if (final)
            gk_free(e);
        return;
    }
    sb_kernel_done_t d;
    if (m->type != SB_MSG_KERNEL_DONE || sb_kernel_done_decode(m, &d) != 0) {
        snprintf(gk_errmsg, sizeof gk_errmsg, "the executor sent a malformed answer");
        e->cb(e->ud, SB_EBADMSG, "failed", NULL);
    } else {
        char st[33];
        sb_str_copy(st, sizeof st, d.status);
        if (!strcmp(st, "timeout") || !strcmp(st, "crashed") || !strcmp(st, "canceled")) {
            sb_str_copy(gk_errmsg, sizeof gk_errmsg, d.error);
            e->cb(e->ud, st[0] == 't' ? SB_ETIMEDOUT : st[1] == 'r' ? SB_EIO : SB_ECANCELED, st,
                  NULL);
        } else {
            json_t *o = json_pack("{s:o,s:s,s:I}", "execution_count",
                                  d.execution_count ? json_integer((json_int_t)d.execution_count)
                                                    : json_null(),
                                  "status", st, "execution_time",
                                  (json_int_t)d.execution_time_ms);
            if (d.error.len)
                json_object_set_new(o, "message", json_stringn(d.error.ptr, d.error.len));
            e->cb(e->ud, 0, "done", o);
            json_decref(o);
        }
    }
    if (final)
        gk_free(e);
}

int
sb__gw_kernel_execute_timeout(gw_ctx_t *ctx, gw_sandbox_t *s, const char *code, size_t len,
                              const char *language, const char *context_id, uint64_t timeout_ms,
                              gw_kernel_cb cb, void *ud, uint64_t *handle)
{
    sb_kernel_exec_t req = {.sandbox = sb_str(sb__gw_sandbox_id(s)),
                            .language = sb_str(language ? language : ""),
                            .code = {code, (uint32_t)len},
                            .context_id = sb_str(context_id ? context_id : ""),
                            .timeout_ms = timeout_ms};
    sb_buf_t body;
    sb_buf_init(&body, 0);
    int r = sb_kernel_exec_encode(&req, &body);
    if (r) {
        sb_buf_fini(&body);
        return r;
    }
    gk_exec_t *e = sb_xcalloc(1, sizeof *e);
    e->ctx = ctx;
    e->handle = ++gk_next_handle;
    e->addr = sb__gw_sandbox_addr(s);
    e->cb = cb;
    e->ud = ud;
    snprintf(e->sandbox, sizeof e->sandbox, "%s", sb__gw_sandbox_id(s));
    snprintf(e->language, sizeof e->language, "%s", language ? language : "");
    uint64_t budget = (timeout_ms ? timeout_ms : (uint64_t)ctx->cfg->api_max_timeout_ms) +
                      GK_MARGIN_MS;
    r = sb_actor_request(ctx->actor, e->addr, SB_MSG_KERNEL_EXEC, body.data, body.len,
                         (uint32_t)budget, gk_on_reply, e, NULL);
    sb_buf_fini(&body);
    if (r) {
        free(e);
        return r;
    }
    e->next = gk_execs;
    gk_execs = e;
    sb__gw_sandbox_touch(ctx, s);
    if (handle)
        *handle = e->handle;
    return 0;
}

int
sb__gw_kernel_execute(gw_ctx_t *ctx, gw_sandbox_t *s, const char *code, size_t len,
                      const char *language, const char *context_id, gw_kernel_cb cb, void *ud,
                      uint64_t *handle)
{
    return sb__gw_kernel_execute_timeout(ctx, s, code, len, language, context_id, 0, cb, ud,
                                         handle);
}

static void
gk_on_ack(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    (void)a;
    (void)m;
    (void)ud;
    if (status && status != SB_ENOTFOUND)
        sb_log_warn("SB-GW-KERNEL-INTERRUPT", "interrupt not delivered: %s", sb_strerror(status));
}

int
sb__gw_kernel_interrupt(gw_ctx_t *ctx, uint64_t handle)
{
    gk_exec_t *e = gk_find(ctx, handle);
    if (!e)
        return SB_ENOTFOUND;
    sb_kernel_interrupt_t ir = {.sandbox = sb_str(e->sandbox), .language = sb_str(e->language)};
    sb_buf_t *b = sb_actor_scratch(ctx->actor);
    int r = sb_kernel_interrupt_encode(&ir, b);
    if (r == 0)
        r = sb_actor_request(ctx->actor, e->addr, SB_MSG_KERNEL_INTERRUPT, b->data, b->len, 10000,
                             gk_on_ack, NULL, NULL);
    return r;
}

void
sb__gw_kernel_cancel(gw_ctx_t *ctx, uint64_t handle)
{
    gk_exec_t *e = gk_find(ctx, handle);
    if (e)
        e->canceled = true; /* freed when its final reply (or deadline) comes */
}

/* ---- REST: POST /sandboxes/{id}/execute -------------------------------------------------- */

typedef struct {
    gw_ctx_t *ctx;
    sb_http_req_t *req;
    gw_principal_t p;
    char sandbox[64], language[64], ctx_id[129], sha[65];
    uint64_t handle;
    sb_buf_t out, err;
    json_t *results, *error;
    bool aborted;
} gk_rest_t;

static void
gk_rest_free(gk_rest_t *x)
{
    sb_buf_fini(&x->out);
    sb_buf_fini(&x->err);
    json_decref(x->results);
    json_decref(x->error);
    free(x);
}

static void
gk_rest_audit(gk_rest_t *x, const char *status)
{
    json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s}", "sandbox_id", x->sandbox, "runtime",
                           x->language[0] ? x->language : "default", "context_id",
                           x->ctx_id[0] ? x->ctx_id : "default", "code_sha256", x->sha,
                           "status", status);
    sb__gw_audit(x->ctx, "execution", &x->p, ev);
}

static void
gk_rest_on_abort(sb_http_req_t *req, void *ud)
{
    gk_rest_t *x = ud;
    sb__gw_kernel_cancel(x->ctx, x->handle);
    x->aborted = true;
    sb_http_respond_error(req, 503, "unavailable", "the client went away");
    gk_rest_audit(x, "abandoned");
    gk_rest_free(x);
}

static json_t *
gk_text(const sb_buf_t *b)
{
    json_t *s = json_stringn((const char *)(b->data ? b->data : (const uint8_t *)""), b->len);
    return s ? s : json_stringn_nocheck((const char *)b->data, b->len);
}

static void
gk_rest_on_event(void *ud, int err, const char *type, json_t *data)
{
    gk_rest_t *x = ud;
    if (err == 0 && (!strcmp(type, "stdout") || !strcmp(type, "stderr"))) {
        sb_buf_append(type[3] == 'o' ? &x->out : &x->err, json_string_value(data),
                      json_string_length(data));
        return;
    }
    if (err == 0 && !strcmp(type, "result")) {
        json_array_append(x->results, data);
        return;
    }
    if (err == 0 && !strcmp(type, "error")) {
        json_decref(x->error);
        x->error = json_incref(data);
        return;
    }
    /* the last call */
    sb_http_on_abort(x->req, NULL, NULL);
    if (err && err != SB_ETIMEDOUT && err != SB_EIO) {
        const char *msg = sb__gw_kernel_error();
        int st = sb__gw_status(err == SB_ECANCELED ? SB_EUNAVAILABLE : err);
        if (st == 503)
            sb_http_add_header(x->req, "Retry-After", "1");
        sb_http_respond_error(x->req, st,
                              st == 404 ? "not_found"
                              : st == 400 ? "bad_request"
                              : st == 503 ? "unavailable"
                              : st == 504 ? "timeout"
                                          : "internal",
                              "%s", msg[0] ? msg : sb_strerror(err));
        gk_rest_audit(x, "refused");
        gk_rest_free(x);
        return;
    }
    json_t *count = json_null();
    const char *status = "ok";
    if (err) {
        json_decref(x->error);
        x->error = json_pack("{s:s,s:s,s:[]}", "name",
                             err == SB_ETIMEDOUT ? "KernelTimeout" : "KernelDied", "value",
                             sb__gw_kernel_error(), "traceback");
        status = err == SB_ETIMEDOUT ? "timeout" : "crashed";
    } else {
        json_t *c = json_object_get(data, "execution_count");
        if (json_is_integer(c))
            count = json_incref(c);
        status = json_string_value(json_object_get(data, "status"));
    }
    json_t *o = json_object();
    json_object_set_new(o, "stdout", gk_text(&x->out));
    json_object_set_new(o, "stderr", gk_text(&x->err));
    json_object_set(o, "results", x->results);
    json_object_set(o, "error", x->error ? x->error : json_null());
    json_object_set_new(o, "execution_count", count);
    if (!err && data && json_object_get(data, "status") &&
        !strcmp(json_string_value(json_object_get(data, "status")), "output_limit"))
        json_object_set_new(o, "truncated", json_true());
    sb_http_respond_json(x->req, 200, o);
    gk_rest_audit(x, status ? status : "ok");
    gk_rest_free(x);
}

static void
gk_execute(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    gw_sandbox_t *s = sb__gw_sandbox_from_req(ctx, req, p);
    if (!s)
        return;
    json_t *b = sb__gw_json_body(req);
    if (!b)
        return;
    const char *code, *lang, *cid;
    size_t code_len;
    int64_t timeout = 0;
    if (!sb__gw_str(req, b, "code", true, (size_t)ctx->cfg->api_max_code_bytes, &code,
                    &code_len) ||
        !sb__gw_str(req, b, "language", false, 64, &lang, NULL) ||
        !sb__gw_str(req, b, "context_id", false, 128, &cid, NULL) ||
        !sb__gw_int(req, b, "timeout", 1, ctx->cfg->api_max_timeout_ms, "api.max_timeout_ms",
                    &timeout)) {
        json_decref(b);
        return;
    }
    gk_rest_t *x = sb_xcalloc(1, sizeof *x);
    x->ctx = ctx;
    x->req = req;
    x->p = *p;
    snprintf(x->sandbox, sizeof x->sandbox, "%s", sb__gw_sandbox_id(s));
    snprintf(x->language, sizeof x->language, "%s", lang ? lang : "");
    snprintf(x->ctx_id, sizeof x->ctx_id, "%s", cid ? cid : "");
    sb_sha256_hex(code, code_len, x->sha);
    sb_buf_init(&x->out, 0);
    sb_buf_init(&x->err, 0);
    x->results = json_array();
    int r = sb__gw_kernel_execute_timeout(ctx, s, code, code_len, lang, cid, (uint64_t)timeout,
                                          gk_rest_on_event, x, &x->handle);
    json_decref(b);
    if (r) {
        sb__gw_fail(req, r, NULL, "executor");
        gk_rest_free(x);
        return;
    }
    sb_http_on_abort(req, gk_rest_on_abort, x);
}

/* ---- REST: contexts --------------------------------------------------------------------- */

typedef struct {
    char op[16];
    gw_principal_t p;
    char sandbox[64];
} gk_cop_t;

static void
gk_on_context(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m, void *ud)
{
    gk_cop_t *c = ud;
    sb_kernel_context_reply_t r;
    if (status || sb_kernel_context_reply_decode(m, &r) != 0) {
        sb__gw_fail(req, status ? status : SB_EBADMSG, m, "executor");
        free(c);
        return;
    }
    if (!strcmp(c->op, "list")) {
        json_t *arr = json_array();
        sb_mp_reader_t rd;
        uint32_t n, two;
        sb_mp_reader_init(&rd, r.contexts.ptr, r.contexts.len);
        if (r.contexts.len && sb_mp_read_array(&rd, &n) == 0)
            for (uint32_t i = 0; i < n; i++) {
                sb_str_t id, lang;
                if (sb_mp_read_array(&rd, &two) || two != 2 || sb_mp_read_str(&rd, &id) ||
                    sb_mp_read_str(&rd, &lang))
                    break;
                json_array_append_new(arr, json_pack("{s:s%,s:s%}", "id", id.ptr, (size_t)id.len,
                                                     "language", lang.ptr, (size_t)lang.len));
            }
        sb_http_respond_json(req, 200, json_pack("{s:o}", "contexts", arr));
    } else if (!strcmp(c->op, "delete")) {
        sb_http_respond(req, 204, NULL, NULL, 0);
    } else {
        json_t *o = json_pack("{s:s%,s:s%}", "id", r.context_id.ptr, (size_t)r.context_id.len,
                              "language", r.language.ptr, (size_t)r.language.len);
        sb_http_respond_json(req, !strcmp(c->op, "create") ? 201 : 200, o);
    }
    if (strcmp(c->op, "list") != 0)
        sb__gw_audit(ctx, "kernel.context", &c->p,
                     json_pack("{s:s,s:s}", "sandbox_id", c->sandbox, "op", c->op));
    free(c);
}

static void
gk_context_op(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p, const char *op)
{
    gw_sandbox_t *s = sb__gw_sandbox_from_req(ctx, req, p);
    if (!s)
        return;
    char cid[129] = "";
    const char *lang = NULL, *given = NULL;
    json_t *b = NULL;
    if (!strcmp(op, "create")) {
        if (sb_http_body(req).len) {
            if (!(b = sb__gw_json_body(req)))
                return;
            if (!sb__gw_str(req, b, "language", false, 64, &lang, NULL) ||
                !sb__gw_str(req, b, "id", false, 64, &given, NULL)) {
                json_decref(b);
                return;
            }
            if (given)
                snprintf(cid, sizeof cid, "%s", given);
        }
    } else if (strcmp(op, "list") != 0 &&
               sb_str_copy(cid, sizeof cid, sb_http_param(req, "ctx")) != 0) {
        sb_http_respond_error(req, 404, "not_found", "no such context");
        return;
    }
    sb__gw_sandbox_touch(ctx, s);
    sb_kernel_context_t q = {.sandbox = sb_str(sb__gw_sandbox_id(s)), .op = sb_str(op),
                             .context_id = sb_str(cid), .language = sb_str(lang ? lang : "")};
    sb_buf_t body;
    sb_buf_init(&body, 0);
    gk_cop_t *c = sb_xcalloc(1, sizeof *c);
    snprintf(c->op, sizeof c->op, "%s", op);
    snprintf(c->sandbox, sizeof c->sandbox, "%s", sb__gw_sandbox_id(s));
    c->p = *p;
    int r = sb_kernel_context_encode(&q, &body);
    if (r == 0)
        r = sb__gw_call(ctx, req, sb__gw_sandbox_addr(s), SB_MSG_KERNEL_CONTEXT, &body, 30000,
                        gk_on_context, c);
    sb_buf_fini(&body);
    json_decref(b);
    if (r) {
        free(c);
        sb__gw_fail(req, r, NULL, "executor");
    }
}

static void
gk_ctx_create(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    gk_context_op(ctx, req, p, "create");
}

static void
gk_ctx_list(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    gk_context_op(ctx, req, p, "list");
}

static void
gk_ctx_delete(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    gk_context_op(ctx, req, p, "delete");
}

static void
gk_ctx_restart(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    gk_context_op(ctx, req, p, "restart");
}

void
sb__gw_kernel_routes(gw_ctx_t *ctx, sb_http_server_t *srv)
{
    static const char *const bases[] = {"/api/v1/sandboxes", "/api/v1/containers"};
    size_t max = (size_t)ctx->cfg->api_max_body_bytes;
    for (int i = 0; i < 2; i++) {
        char pat[128];
        snprintf(pat, sizeof pat, "%s/{id}/execute", bases[i]);
        sb__gw_route(ctx, srv, "POST", pat, GW_ROLE_USER, gk_execute, max);
        snprintf(pat, sizeof pat, "%s/{id}/contexts", bases[i]);
        sb__gw_route(ctx, srv, "POST", pat, GW_ROLE_USER, gk_ctx_create, 4096);
        sb__gw_route(ctx, srv, "GET", pat, GW_ROLE_VIEWER, gk_ctx_list, 0);
        snprintf(pat, sizeof pat, "%s/{id}/contexts/{ctx}", bases[i]);
        sb__gw_route(ctx, srv, "DELETE", pat, GW_ROLE_USER, gk_ctx_delete, 0);
        snprintf(pat, sizeof pat, "%s/{id}/contexts/{ctx}/restart", bases[i]);
        sb__gw_route(ctx, srv, "POST", pat, GW_ROLE_USER, gk_ctx_restart, 4096);
    }
}
