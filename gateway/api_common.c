/*
 * api_common.c: helpers the REST handlers share (see api.h): authenticated routes, validation that
 * names the offending field, error mapping, bus calls bound to an HTTP request, and the
 * storage records and audit events that accompany every request type.
 */
#include "api.h"

#include "base/err.h"
#include "base/log.h"
#include "gateway/auth/auth.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/base64.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- routes with authentication -------------------------------------------------------- */

typedef struct gw_route {
    gw_ctx_t *ctx;
    gw_handler_t fn;
    gw_role_t min_role;
} gw_route_t;

typedef struct {
    gw_route_t *route;
} gw_pending_t;

static void
gw_on_principal(sb_http_req_t *req, const sb_principal_t *sp, int err, void *ud)
{
    gw_route_t *rt = ud;
    gw_principal_t p = {0};
    if (err) {
        sb_auth_respond_error(req, err);
        return;
    }
    snprintf(p.id, sizeof p.id, "%s", sp->id);
    snprintf(p.name, sizeof p.name, "%s", sp->name);
    p.role = sp->role == SB_ROLE_ADMIN ? GW_ROLE_ADMIN
             : sp->role == SB_ROLE_USER ? GW_ROLE_USER
                                        : GW_ROLE_VIEWER;
    if (p.role < rt->min_role) {
        sb_http_respond_error(req, 403, "forbidden", "this needs the %s role (you are %s)",
                              sb__gw_role_name(rt->min_role), sb__gw_role_name(p.role));
        return;
    }
    rt->fn(rt->ctx, req, &p);
}

static void
gw_route_trampoline(sb_http_req_t *req, void *ud)
{
    gw_route_t *rt = ud;
    if (!rt->ctx->auth) {
        sb_http_respond_error(req, 503, "unavailable", "authentication is not ready");
        return;
    }
    sb_auth_check(rt->ctx->auth, req, gw_on_principal, rt);
}

void
sb__gw_route(gw_ctx_t *ctx, sb_http_server_t *srv, const char *method, const char *pattern,
             gw_role_t min_role, gw_handler_t fn, size_t max_body)
{
    /* Routes live as long as the process: the server never unregisters them. */
    static gw_route_t routes[128];
    static size_t nroutes;
    SB_ASSERT(nroutes < sizeof routes / sizeof routes[0]);
    gw_route_t *rt = &routes[nroutes++];
    rt->ctx = ctx;
    rt->fn = fn;
    rt->min_role = min_role;
    sb_http_route(srv, method, pattern, gw_route_trampoline, rt, max_body);
}

const char *
sb__gw_role_name(gw_role_t r)
{
    switch (r) {
    case GW_ROLE_ADMIN: return "admin";
    case GW_ROLE_USER: return "user";
    case GW_ROLE_VIEWER: return "viewer";
    default: return "none";
    }
}

/* ---- errors ---------------------------------------------------------------------------- */

int
sb__gw_status(int err)
{
    switch (err) {
    case SB_EINVAL:
    case SB_EBADMSG: return 400;
    case SB_EAUTH: return 401;
    case SB_EPERM: return 403;
    case SB_ENOTFOUND: return 404;
    case SB_EEXIST: return 409;
    case SB_ETOOBIG: return 413;
    case SB_ELIMIT: return 429;
    case SB_EUNAVAILABLE:
    case SB_ENOROUTE:
    case SB_EAGAIN:
    case SB_ECLOSED: return 503;
    case SB_ETIMEDOUT: return 504;
    default: return 500;
    }
}

static const char *
gw_code(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 409: return "conflict";
    case 413: return "payload_too_large";
    case 429: return "rate_limited";
    case 503: return "unavailable";
    case 504: return "timeout";
    default: return "internal";
    }
}

void
sb__gw_fail(sb_http_req_t *req, int err, const sb_msg_t *m, const char *what)
{
    int status = sb__gw_status(err);
    char text[600] = "";
    sb_error_t e;
    if (m && (m->flags & SB_MF_ERROR) && sb_error_decode(m, &e) == 0)
        sb_str_copy(text, sizeof text, e.message);
    const char *ra = strstr(text, "retry_after_ms=");
    if (ra && (status == 429 || status == 503)) {
        char secs[32];
        unsigned long long ms = strtoull(ra + 15, NULL, 10);
        snprintf(secs, sizeof secs, "%llu", (ms + 999) / 1000 ? (ms + 999) / 1000 : 1);
        sb_http_add_header(req, "Retry-After", secs);
    } else if (status == 503) {
        sb_http_add_header(req, "Retry-After", "1");
    }
    if (err == SB_ENOROUTE)
        snprintf(text, sizeof text, "no %s is running", what);
    sb_http_respond_error(req, status, gw_code(status), "%s: %s", what,
                          text[0] ? text : sb_strerror(err));
}

/* ---- validation ------------------------------------------------------------------------ */

json_t *
sb__gw_json_body(sb_http_req_t *req)
{
    sb_str_t b = sb_http_body(req);
    json_error_t je;
    if (b.len == 0) {
        sb_http_respond_error(req, 400, "bad_request", "a JSON object body is required");
        return NULL;
    }
    json_t *root = json_loadb(b.ptr, b.len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        sb_http_respond_error(req, 400, "invalid_json", "malformed JSON at line %d column %d: %s",
                              je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        sb_http_respond_error(req, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

bool
sb__gw_str(sb_http_req_t *req, json_t *o, const char *field, bool required, size_t max,
           const char **out, size_t *len)
{
    json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v)) {
        if (required) {
            sb_http_respond_error(req, 400, "bad_request", "missing field '%s'", field);
            return false;
        }
        *out = NULL;
        if (len)
            *len = 0;
        return true;
    }
    if (!json_is_string(v)) {
        sb_http_respond_error(req, 400, "bad_request", "field '%s' must be a string", field);
        return false;
    }
    size_t n = json_string_length(v);
    if (n > max) {
        sb_http_respond_error(req, max >= 65536 ? 413 : 400,
                              max >= 65536 ? "payload_too_large" : "bad_request",
                              "field '%s' is %zu bytes; the maximum is %zu", field, n, max);
        return false;
    }
    *out = json_string_value(v);
    if (len)
        *len = n;
    return true;
}

bool
sb__gw_int(sb_http_req_t *req, json_t *o, const char *field, int64_t min, int64_t max,
           const char *max_key, int64_t *out)
{
    json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v))
        return true; /* keeps the caller's default */
    if (!json_is_integer(v)) {
        sb_http_respond_error(req, 400, "bad_request", "field '%s' must be an integer", field);
        return false;
    }
    json_int_t x = json_integer_value(v);
    if (x < min || x > max) {
        sb_http_respond_error(req, 400, "limit_exceeded",
                              "field '%s' is %lld; allowed %lld..%lld%s%s%s", field,
                              (long long)x, (long long)min, (long long)max,
                              max_key ? " (server maximum " : "", max_key ? max_key : "",
                              max_key ? ")" : "");
        return false;
    }
    *out = x;
    return true;
}

bool
sb__gw_num(sb_http_req_t *req, json_t *o, const char *field, double min, double max,
           const char *max_key, double *out)
{
    json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_number(v)) {
        sb_http_respond_error(req, 400, "bad_request", "field '%s' must be a number", field);
        return false;
    }
    double x = json_number_value(v);
    if (!(x >= min && x <= max)) {
        sb_http_respond_error(req, 400, "limit_exceeded", "field '%s' is %g; allowed %g..%g%s%s%s",
                              field, x, min, max, max_key ? " (server maximum " : "",
                              max_key ? max_key : "", max_key ? ")" : "");
        return false;
    }
    *out = x;
    return true;
}

bool
sb__gw_bool(sb_http_req_t *req, json_t *o, const char *field, bool *out)
{
    json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_boolean(v)) {
        sb_http_respond_error(req, 400, "bad_request", "field '%s' must be a boolean", field);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

bool
sb__gw_str_array(sb_http_req_t *req, json_t *o, const char *field, size_t n, size_t max,
                 sb_buf_t *out)
{
    json_t *v = json_object_get(o, field), *e;
    size_t i;
    msgpack_packer pk;
    sb_codec_packer(&pk, out);
    if (!v || json_is_null(v)) {
        msgpack_pack_array(&pk, 0);
        return true;
    }
    if (!json_is_array(v) || json_array_size(v) > n) {
        sb_http_respond_error(req, 400, "bad_request",
                              "field '%s' must be an array of at most %zu strings", field, n);
        return false;
    }
    msgpack_pack_array(&pk, (uint32_t)json_array_size(v));
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || json_string_length(e) > max) {
            sb_http_respond_error(req, 400, "bad_request",
                                  "field '%s'[%zu] must be a string of at most %zu bytes", field,
                                  i, max);
            return false;
        }
        msgpack_pack_str(&pk, json_string_length(e));
        msgpack_pack_str_body(&pk, json_string_value(e), json_string_length(e));
    }
    return true;
}

bool
sb__gw_env(sb_http_req_t *req, json_t *o, const char *field, sb_buf_t *out)
{
    json_t *v = json_object_get(o, field), *val;
    const char *k;
    msgpack_packer pk;
    sb_codec_packer(&pk, out);
    if (!v || json_is_null(v)) {
        msgpack_pack_array(&pk, 0);
        return true;
    }
    if (!json_is_object(v) || json_object_size(v) > 256) {
        sb_http_respond_error(req, 400, "bad_request",
                              "field '%s' must be an object of at most 256 string values", field);
        return false;
    }
    msgpack_pack_array(&pk, (uint32_t)json_object_size(v));
    json_object_foreach(v, k, val)
    {
        size_t kl = strlen(k);
        if (!json_is_string(val) || kl == 0 || kl > 256 || strchr(k, '=') ||
            json_string_length(val) > 32768) {
            sb_http_respond_error(req, 400, "bad_request",
                                  "field '%s': '%.64s' must be a name without '=' mapped to a "
                                  "string",
                                  field, k);
            return false;
        }
        size_t vl = json_string_length(val);
        msgpack_pack_str(&pk, kl + 1 + vl);
        msgpack_pack_str_body(&pk, k, kl);
        msgpack_pack_str_body(&pk, "=", 1);
        msgpack_pack_str_body(&pk, json_string_value(val), vl);
    }
    return true;
}

/* ---- bus -------------------------------------------------------------------------------- */

typedef struct {
    gw_ctx_t *ctx;
    sb_http_req_t *req;
    gw_reply_t cb;
    void *ud;
} gw_call_t;

static void
gw_on_call_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    gw_call_t *c = ud;
    (void)a;
    int final = status != 0 || !m || !(m->flags & SB_MF_STREAM) || (m->flags & SB_MF_FINAL);
    c->cb(c->ctx, c->req, status, m, c->ud);
    if (final)
        free(c);
}

int
sb__gw_call(gw_ctx_t *ctx, sb_http_req_t *req, sb_addr_t dst, uint16_t type, const sb_buf_t *body,
            uint32_t timeout_ms, gw_reply_t cb, void *ud)
{
    gw_call_t *c = sb_xcalloc(1, sizeof *c);
    *c = (gw_call_t){ctx, req, cb, ud};
    int r = sb_actor_request(ctx->actor, dst, type, body->data, body->len, timeout_ms,
                             gw_on_call_reply, c, NULL);
    if (r)
        free(c);
    return r;
}

static void
gw_on_fire_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    (void)a;
    (void)m;
    if (status)
        sb_log_warn((const char *)ud, "%s", sb_strerror(status));
}

void
sb__gw_store(gw_ctx_t *ctx, const char *kind, json_t *record)
{
    char *text = json_dumps(record, JSON_COMPACT);
    json_decref(record);
    if (!text)
        return;
    sb_store_put_t put = {.kind = sb_str(kind), .record = sb_str(text)};
    sb_buf_t *b = sb_actor_scratch(ctx->actor);
    int r = sb_store_put_encode(&put, b);
    if (r == 0)
        r = sb_actor_request(ctx->actor, sb_addr(SB_ACTOR_STORAGE), SB_MSG_STORE_PUT, b->data,
                             b->len, 10000, gw_on_fire_reply, "SB-GW-STORE-FAIL", NULL);
    if (r)
        sb_log_warn("SB-GW-STORE-FAIL", "%s record not stored: %s", kind, sb_strerror(r));
    free(text);
}

/* Audit events never block a response, and none is dropped silently: an event the auditor
 * cannot take yet (its queue full: SB_EAGAIN, or no answer in time) waits in a bounded queue
 * here and is re-sent by sb__gw_audit_flush (the gateway's 1 s timer); past GW_AUDIT_QUEUE
 * events, or on a hard error, it is logged as SB-GW-AUDIT-DROP and counted. */
#define GW_AUDIT_QUEUE 4096

typedef struct gw_audit_ev {
    struct gw_audit_ev *next;
    gw_ctx_t *ctx;
    size_t len;
    uint8_t body[];
} gw_audit_ev_t;

static void gw_audit_send(gw_ctx_t *ctx, gw_audit_ev_t *ev);

static void
gw_audit_park(gw_ctx_t *ctx, gw_audit_ev_t *ev, int why)
{
    if (ctx->audit_queued >= GW_AUDIT_QUEUE) {
        ctx->audit_dropped++;
        sb_log_error("SB-GW-AUDIT-DROP", "audit event dropped (%s; %llu dropped so far): the "
                     "auditor has not kept up with %d queued events",
                     sb_strerror(why), (unsigned long long)ctx->audit_dropped, GW_AUDIT_QUEUE);
        free(ev);
        return;
    }
    ev->next = NULL;
    if (ctx->audit_tail)
        ((gw_audit_ev_t *)ctx->audit_tail)->next = ev;
    else
        ctx->audit_head = ev;
    ctx->audit_tail = ev;
    ctx->audit_queued++;
}

static void
gw_on_audit_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    gw_audit_ev_t *ev = ud;
    (void)a;
    (void)m;
    if (status == 0) {
        free(ev);
    } else if (status == SB_EAGAIN || status == SB_ETIMEDOUT) {
        gw_audit_park(ev->ctx, ev, status); /* the auditor is slow: try again later */
    } else {
        ev->ctx->audit_dropped++;
        sb_log_error("SB-GW-AUDIT-DROP", "audit event refused by the auditor: %s",
                     sb_strerror(status));
        free(ev);
    }
}

static void
gw_audit_send(gw_ctx_t *ctx, gw_audit_ev_t *ev)
{
    int r = sb_actor_request(ctx->actor, sb_addr(SB_ACTOR_AUDITOR), SB_MSG_AUDIT_EVENT, ev->body,
                             ev->len, 10000, gw_on_audit_reply, ev, NULL);
    if (r)
        gw_audit_park(ctx, ev, r);
}

void
sb__gw_audit_flush(gw_ctx_t *ctx)
{
    /* Re-send what waits, oldest first; stop at the first refusal (it goes back in line). */
    size_t n = ctx->audit_queued;
    for (size_t i = 0; i < n && ctx->audit_head; i++) {
        gw_audit_ev_t *ev = ctx->audit_head;
        ctx->audit_head = ev->next;
        if (!ctx->audit_head)
            ctx->audit_tail = NULL;
        ctx->audit_queued--;
        size_t before = ctx->audit_queued;
        gw_audit_send(ctx, ev);
        if (ctx->audit_queued > before)
            break;
    }
}

void
sb__gw_audit_fini(gw_ctx_t *ctx)
{
    if (ctx->audit_queued)
        sb_log_error("SB-GW-AUDIT-DROP", "%zu audit event(s) still waiting at shutdown",
                     ctx->audit_queued);
    while (ctx->audit_head) {
        gw_audit_ev_t *ev = ctx->audit_head;
        ctx->audit_head = ev->next;
        free(ev);
    }
    ctx->audit_tail = NULL;
    ctx->audit_queued = 0;
}

void
sb__gw_audit(gw_ctx_t *ctx, const char *type, const gw_principal_t *p, json_t *fields)
{
    char *text = json_dumps(fields ? fields : json_object(), JSON_COMPACT);
    if (fields)
        json_decref(fields);
    char who[300];
    snprintf(who, sizeof who, "%s", p ? p->id : "anonymous");
    sb_audit_event_t e = {.type = sb_str(type), .actor = SB_STR("gateway"),
                          .principal = sb_str(who), .fields = sb_str(text ? text : "{}"),
                          .ts_ms = sb_now_real_ms()};
    sb_buf_t *b = sb_actor_scratch(ctx->actor);
    int r = sb_audit_event_encode(&e, b);
    free(text);
    if (r) {
        sb_log_error("SB-GW-AUDIT-DROP", "audit event %s not encodable: %s", type,
                     sb_strerror(r));
        return;
    }
    gw_audit_ev_t *ev = sb_xmalloc(sizeof *ev + b->len);
    ev->ctx = ctx;
    ev->len = b->len;
    memcpy(ev->body, b->data, b->len);
    if (ctx->audit_queued) /* keep the order: behind what already waits */
        gw_audit_park(ctx, ev, SB_EAGAIN);
    else
        gw_audit_send(ctx, ev);
}

/* ---- small helpers ---------------------------------------------------------------------- */

static json_t *
gw_mp_value(sb_mp_reader_t *r, int depth)
{
    sb_str_t s;
    uint32_t n;
    bool b;
    uint64_t u;
    int64_t i;
    double d;
    if (depth > 16)
        return NULL;
    switch (sb_mp_peek(r)) {
    case SB_MP_NIL: sb_mp_read_nil(r); return json_null();
    case SB_MP_BOOL: sb_mp_read_bool(r, &b); return json_boolean(b);
    case SB_MP_UINT: sb_mp_read_u64(r, &u); return json_integer((json_int_t)u);
    case SB_MP_INT: sb_mp_read_i64(r, &i); return json_integer((json_int_t)i);
    case SB_MP_FLOAT: sb_mp_read_f64(r, &d); return json_real(d);
    case SB_MP_STR: sb_mp_read_str(r, &s); return json_stringn_nocheck(s.ptr, s.len);
    case SB_MP_BIN: {
        sb_mp_read_bin(r, &s);
        char *b64 = sb_base64_encode_alloc(s.ptr, s.len);
        json_t *j = json_string(b64);
        free(b64);
        return j;
    }
    case SB_MP_ARRAY: {
        if (sb_mp_read_array(r, &n))
            return NULL;
        json_t *a = json_array();
        for (uint32_t k = 0; k < n; k++) {
            json_t *e = gw_mp_value(r, depth + 1);
            if (!e) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, e);
        }
        return a;
    }
    case SB_MP_MAP: {
        if (sb_mp_read_map(r, &n))
            return NULL;
        json_t *o = json_object();
        for (uint32_t k = 0; k < n; k++) {
            char key[256];
            if (sb_mp_read_str(r, &s) || sb_str_copy(key, sizeof key, s)) {
                json_decref(o);
                return NULL;
            }
            json_t *e = gw_mp_value(r, depth + 1);
            if (!e) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, key, e);
        }
        return o;
    }
    default:
        return NULL;
    }
}

json_t *
sb__gw_mp_to_json(sb_str_t raw)
{
    sb_mp_reader_t r;
    if (raw.len == 0)
        return json_null();
    sb_mp_reader_init(&r, raw.ptr, raw.len);
    json_t *j = gw_mp_value(&r, 0);
    return j ? j : json_null();
}

/* gw_text: program output as a JSON string (invalid UTF-8 replaced, never refused). */
static json_t *
gw_text(sb_str_t s)
{
    json_t *j = json_stringn(s.ptr, s.len);
    if (j)
        return j;
    char *copy = sb_xmalloc((size_t)s.len * 3 + 1);
    size_t o = 0;
    for (uint32_t i = 0; i < s.len;) {
        unsigned char c = (unsigned char)s.ptr[i];
        int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        json_t *probe = n && i + (uint32_t)n <= s.len ? json_stringn(s.ptr + i, (size_t)n) : NULL;
        if (probe) {
            memcpy(copy + o, s.ptr + i, (size_t)n);
            o += (size_t)n;
            i += (uint32_t)n;
            json_decref(probe);
        } else {
            memcpy(copy + o, "\xef\xbf\xbd", 3); /* U+FFFD */
            o += 3;
            i++;
        }
    }
    j = json_stringn(copy, o);
    free(copy);
    return j ? j : json_string("");
}

/* gw_compile_json: the compile step's record (a msgpack map with the RESULT field names) in
 * the API's shape: output as text, the same names as the run's own fields. */
static json_t *
gw_compile_json(sb_str_t raw)
{
    sb_mp_reader_t r;
    uint32_t n;
    json_t *o = json_object();
    int exited = 0;
    int64_t exit_code = 0;
    sb_mp_reader_init(&r, raw.ptr, raw.len);
    if (sb_mp_read_map(&r, &n))
        return o;
    for (uint32_t i = 0; i < n; i++) {
        sb_str_t k, v;
        uint64_t u;
        int64_t x;
        bool b;
        if (sb_mp_read_str(&r, &k))
            break;
        if (sb_str_eq(k, "stdout") || sb_str_eq(k, "stderr")) {
            if (sb_mp_read_bin(&r, &v))
                break;
            json_object_set_new(o, sb_str_eq(k, "stdout") ? "stdout" : "stderr", gw_text(v));
        } else if (sb_str_eq(k, "status")) {
            if (sb_mp_read_str(&r, &v))
                break;
            exited = sb_str_eq(v, "exited");
            json_object_set_new(o, "status", json_stringn(v.ptr, v.len));
        } else if (sb_str_eq(k, "exit_code") || sb_str_eq(k, "signal")) {
            if (sb_mp_read_i64(&r, &x))
                break;
            if (sb_str_eq(k, "exit_code"))
                exit_code = x;
            else
                json_object_set_new(o, "signal", x ? json_integer(x) : json_null());
        } else if (sb_str_eq(k, "execution_time_ms") || sb_str_eq(k, "cpu_time_ms") ||
                   sb_str_eq(k, "memory_peak")) {
            if (sb_mp_read_u64(&r, &u))
                break;
            json_object_set_new(o, sb_str_eq(k, "memory_peak") ? "memory_used"
                                   : sb_str_eq(k, "cpu_time_ms") ? "cpu_time"
                                                                 : "execution_time",
                                json_integer((json_int_t)u));
        } else if (sb_str_eq(k, "stdout_truncated") || sb_str_eq(k, "stderr_truncated")) {
            if (sb_mp_read_bool(&r, &b))
                break;
            if (b)
                json_object_set_new(o, "truncated", json_true());
        } else if (sb_mp_skip(&r)) {
            break;
        }
    }
    json_object_set_new(o, "exit_code", exited ? json_integer(exit_code) : json_null());
    if (!json_object_get(o, "truncated"))
        json_object_set_new(o, "truncated", json_false());
    return o;
}

json_t *
sb__gw_result_json(const sb_msg_t *m)
{
    sb_result_t r;
    if (sb_result_decode(m, &r) != 0)
        return NULL;
    json_t *o = json_object();
    json_object_set_new(o, "stdout", gw_text(r.stdout));
    json_object_set_new(o, "stderr", gw_text(r.stderr));
    json_object_set_new(o, "exit_code", r.status.len && sb_str_eq(r.status, "exited")
                                            ? json_integer(r.exit_code)
                                            : json_null());
    json_object_set_new(o, "signal", r.signal ? json_integer(r.signal) : json_null());
    char status[33];
    sb_str_copy(status, sizeof status, r.status);
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "execution_time", json_integer((json_int_t)r.execution_time_ms));
    json_object_set_new(o, "cpu_time", json_integer((json_int_t)r.cpu_time_ms));
    json_object_set_new(o, "memory_used", json_integer((json_int_t)r.memory_peak));
    json_t *trunc = json_object();
    json_object_set_new(trunc, "stdout", json_boolean(r.stdout_truncated));
    json_object_set_new(trunc, "stderr", json_boolean(r.stderr_truncated));
    json_object_set_new(o, "truncated", json_boolean(r.stdout_truncated || r.stderr_truncated));
    json_object_set_new(o, "truncated_streams", trunc);
    if (r.error.len)
        json_object_set_new(o, "error", json_stringn(r.error.ptr, r.error.len));
    if (r.kernel) /* ran in the warm sandbox's kernel: no interpreter start (executor.def) */
        json_object_set_new(o, "kernel", json_true());
    /* artifacts: [[path, mime, size, data bin], ...] -> objects with base64 data */
    json_t *arts = json_array();
    if (r.artifacts.len) {
        sb_mp_reader_t rd;
        uint32_t n, four;
        sb_mp_reader_init(&rd, r.artifacts.ptr, r.artifacts.len);
        if (sb_mp_read_array(&rd, &n) == 0)
            for (uint32_t i = 0; i < n; i++) {
                sb_str_t path, mime, data;
                uint64_t size;
                if (sb_mp_read_array(&rd, &four) || four != 4 || sb_mp_read_str(&rd, &path) ||
                    sb_mp_read_str(&rd, &mime) || sb_mp_read_u64(&rd, &size) ||
                    sb_mp_read_bin(&rd, &data))
                    break;
                json_t *a = json_object();
                json_object_set_new(a, "path", json_stringn(path.ptr, path.len));
                json_object_set_new(a, "mime_type", json_stringn(mime.ptr, mime.len));
                json_object_set_new(a, "size", json_integer((json_int_t)size));
                if (data.len || size == 0) {
                    char *b64 = sb_base64_encode_alloc(data.ptr, data.len);
                    json_object_set_new(a, "data", json_string(b64));
                    free(b64);
                } else {
                    json_object_set_new(a, "data", json_null());
                    json_object_set_new(a, "data_omitted", json_true());
                }
                json_array_append_new(arts, a);
            }
    }
    json_object_set_new(o, "artifacts", arts);
    if (r.compile.len)
        json_object_set_new(o, "compile", gw_compile_json(r.compile));
    return o;
}
