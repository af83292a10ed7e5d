/*
 * http_server.c: the gateway's HTTP/1.1 server -- connections, llhttp glue, request queue,
 * responses, timeouts, backpressure, graceful close and the upgrade hand-over.
 *
 * A connection reads into a shared buffer and feeds llhttp.  Each request gets an
 * sb_http_req_t when its first byte arrives; it joins the connection's queue when its head is
 * complete.  Only the queue's head is ever handed to a handler, so responses leave in request
 * order without reordering buffers; requests behind it are parsed ahead (up to max_pipelined)
 * but a request with a body is paused at its head until it reaches the front, so at most one
 * body per connection is ever buffered.  A paused parser keeps the unparsed bytes in `stash`
 * and reading stops until it resumes.
 *
 * Request states (one enum, transitions only forward):
 *   HEAD      request line and headers arriving (c->cur, not queued)
 *   BODY      queued; body arriving (c->cur is also this request)
 *   READY     complete; waits to reach the head of the queue
 *   ACTIVE    handed to its handler (or answered by the server itself for errors)
 *   STREAMING a chunked response has begun
 *   DONE      response fully queued for writing; leaves the queue at once
 * A connection that closes while its head is ACTIVE or STREAMING detaches that request
 * (req->conn = NULL): the abort callback runs, and the handler's final respond or stream_end
 * frees it.
 *
 * Connection phases, each with one deadline on the connection's single timer:
 *   fresh/head  (no request yet, or head arriving): absolute header deadline -> 408, close
 *   body        body arriving: body_timeout since the last read -> 408, close
 *   in flight   handler working: no deadline; output queued: idle_timeout without write
 *               progress -> close (a client that never reads)
 *   idle        keep-alive between requests: idle_timeout since the last response -> close
 *   linger      after a closing response: FIN sent, input discarded briefly, then close, so
 *               unread input does not turn our close into a reset that eats the response.
 *
 * Invariants: every buffer is capped (head: max_header_bytes, body: the route's max, stash:
 * one read, output: max_output_bytes for streams); user callbacks never run inside llhttp's
 * callbacks (conn_pump runs them after llhttp_execute returns, with a reentrancy guard); the
 * server is freed only after its listener, every connection and every detached request are
 * gone.
 */
#include "http_internal.h"

#include "base/err.h"
#include "base/log.h"
#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"

#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define HTTP_READ_BUF (64 * 1024)
#define HTTP_STASH_MAX (1024 * 1024)
#define HTTP_OUT_HDRS_MAX (16 * 1024)
#define HTTP_LINGER_MS 1000
#define HTTP_LINGER_BYTES (1024 * 1024)
#define HTTP_RID_MAX 64
#define HTTP_ALLOW_MAX 160

typedef enum {
    REQ_HEAD,
    REQ_BODY,
    REQ_READY,
    REQ_ACTIVE,
    REQ_STREAMING,
    REQ_DONE,
} req_state_t;

typedef struct {
    uint32_t no, nl, vo, vl; /* offsets into req->head */
} http_hdr_t;

struct sb_http_req {
    sb_http_server_t *srv;
    sb__http_conn_t *conn; /* NULL once detached */
    sb_http_req_t *next;
    req_state_t state;
    const char *method;
    sb_buf_t head; /* url, header names and values */
    http_hdr_t *hdrs;
    uint32_t nhdrs, hdrs_cap;
    uint32_t url_len;
    size_t trailer_bytes;
    sb_str_t raw_path, query;
    char *path;
    size_t path_len;
    sb_buf_t body;
    size_t max_body;
    size_t discarded;
    const sb__http_route_t *route;
    sb__http_param_t params[SB__HTTP_MAX_PARAMS];
    int nparams;
    char rid[HTTP_RID_MAX + 1];
    char peer[64];
    uint8_t http_major, http_minor;
    unsigned in_field : 1, keep_alive : 1, expect : 1, continued : 1, is_head : 1, upgrade : 1,
        discard_body : 1, has_body : 1, err_close : 1, want_drain : 1, stream_eof : 1,
        counted : 1, close_after : 1, preflight : 1, options_allow : 1;
    int err_status;
    const char *err_code, *err_msg;
    char allow[HTTP_ALLOW_MAX];
    uint64_t t0_us;
    sb_buf_t out_hdrs;
    int status;
    size_t bytes_out;
    void *data;
    void (*abort_cb)(sb_http_req_t *, void *);
    void *abort_ud;
    void (*drain_cb)(sb_http_req_t *, void *);
    void *drain_ud;
};

struct sb__http_conn {
    sb_http_server_t *srv;
    sb__http_conn_t *prev, *next;
    uv_tcp_t *tcp; /* NULL: virtual, or handed over by an upgrade */
    uv_timer_t timer;
    uv_shutdown_t shut;
    llhttp_t parser;
    sb_buf_t stash;
    sb_http_req_t *cur;
    sb_http_req_t *qhead, *qtail;
    uint32_t nq;
    size_t out_pending;
    size_t linger_bytes;
    uint64_t head_deadline, idle_since, last_read, last_write;
    int handles;
    int fail_status;
    const char *fail_code, *fail_msg;
    char peer[64];
    unsigned virt : 1, reading : 1, closing : 1, paused : 1, pause_hdrs : 1, upgrade_wait : 1,
        parse_dead : 1, peer_eof : 1, close_after : 1, shutting : 1, lingering : 1,
        upgrading : 1, in_pump : 1, again : 1, served : 1;
    sb_http_upgrade_cb up_cb;
    void *up_ud;
};

struct sb_http_server {
    uv_loop_t *loop;
    sb_http_opts_t opts;
    char *cors;
    uv_tcp_t listener;
    int listener_open;
    sb__http_route_t *routes;
    sb__http_conn_t *conns;
    size_t nconns;
    size_t inflight;
    size_t detached;
    int closing;
    sb_http_close_cb close_cb;
    void *close_ud;
    sb_http_observer_t obs;
    void *obs_ud;
    uint64_t rng;
    int port;
    size_t out_high_water;
    char rbuf[HTTP_READ_BUF];
};

static void conn_pump(sb__http_conn_t *c);
static void conn_close(sb__http_conn_t *c);
static void conn_update_read(sb__http_conn_t *c);
static void srv_maybe_done(sb_http_server_t *srv);
static int req_respond_raw(sb_http_req_t *r, int status, const char *ctype, const void *body,
                           size_t len);

/* ---------------------------------------------------------------------------------------- */
/* small helpers                                                                             */

static uint64_t
http_rand(sb_http_server_t *srv)
{
    /* splitmix64: request ids need to be unique and unguessable enough to not collide, not
     * secret; the seed comes from getrandom. */
    uint64_t z = (srv->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const char *
http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static int
http_rid_valid(sb_str_t v)
{
    if (v.len < 1 || v.len > HTTP_RID_MAX)
        return 0;
    for (uint32_t i = 0; i < v.len; i++) {
        char ch = v.ptr[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static int
http_token_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static uint64_t
http_now_ms(sb_http_server_t *srv)
{
    return uv_now(srv->loop);
}

/* ---------------------------------------------------------------------------------------- */
/* requests                                                                                  */

static sb_http_req_t *
req_alloc(sb__http_conn_t *c)
{
    sb_http_req_t *r = sb_xcalloc(1, sizeof(*r));
    r->srv = c->srv;
    r->conn = c;
    r->state = REQ_HEAD;
    r->method = "-";
    r->t0_us = sb_now_mono_us();
    sb_buf_init(&r->head, c->srv->opts.max_header_bytes);
    sb_buf_init(&r->body, 1);
    sb_buf_init(&r->out_hdrs, HTTP_OUT_HDRS_MAX);
    memcpy(r->peer, c->peer, sizeof(r->peer));
    return r;
}

static void
req_free(sb_http_req_t *r)
{
    sb_buf_fini(&r->head);
    sb_buf_fini(&r->body);
    sb_buf_fini(&r->out_hdrs);
    free(r->hdrs);
    free(r->path);
    free(r);
}

static void
conn_enqueue(sb__http_conn_t *c, sb_http_req_t *r)
{
    r->next = NULL;
    if (c->qtail)
        c->qtail->next = r;
    else
        c->qhead = r;
    c->qtail = r;
    c->nq++;
}

/* req_release ends a request whose connection is gone (after its final respond call). */
static void
req_release_detached(sb_http_req_t *r)
{
    sb_http_server_t *srv = r->srv;
    if (r->counted)
        srv->inflight--;
    srv->detached--;
    req_free(r);
    srv_maybe_done(srv);
}

/* ---------------------------------------------------------------------------------------- */
/* output                                                                                    */

typedef struct {
    uv_write_t req;
    sb__http_conn_t *conn;
    size_t len;
    char data[];
} http_write_t;

static void
conn_on_write(uv_write_t *w, int status)
{
    http_write_t *hw = (http_write_t *)w;
    sb__http_conn_t *c = hw->conn;
    c->out_pending -= hw->len;
    free(hw);
    if (c->closing)
        return;
    c->last_write = http_now_ms(c->srv);
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_pump(c);
}

/* conn_write queues up to three pieces as one write.  Virtual and closing connections drop
 * the bytes (they were serialized all the same, which is what the fuzzer wants to exercise). */
static void
conn_write(sb__http_conn_t *c, const void *a, size_t alen, const void *b, size_t blen,
           const void *d, size_t dlen)
{
    if (c->virt || c->closing || !c->tcp || c->shutting)
        return;
    size_t len = alen + blen + dlen;
    if (len == 0)
        return;
    http_write_t *hw = sb_xmalloc(sizeof(*hw) + len);
    hw->conn = c;
    hw->len = len;
    if (alen)
        memcpy(hw->data, a, alen);
    if (blen)
        memcpy(hw->data + alen, b, blen);
    if (dlen)
        memcpy(hw->data + alen + blen, d, dlen);
    uv_buf_t buf = uv_buf_init(hw->data, (unsigned)len);
    int rc = uv_write(&hw->req, (uv_stream_t *)c->tcp, &buf, 1, conn_on_write);
    if (rc < 0) {
        free(hw);
        conn_close(c);
        return;
    }
    if (c->out_pending == 0)
        c->last_write = http_now_ms(c->srv); /* the write-stall clock starts now */
    c->out_pending += len;
    if (c->out_pending > c->srv->out_high_water)
        c->srv->out_high_water = c->out_pending;
    if (c->out_pending >= c->srv->opts.max_output_bytes)
        conn_update_read(c);
}

static int
cors_origin_allowed(const sb_http_server_t *srv, sb_str_t origin)
{
    if (!srv->cors || origin.len == 0)
        return 0;
    if (strcmp(srv->cors, "*") == 0)
        return 1;
    const char *p = srv->cors;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        if ((size_t)(e - p) == origin.len && origin.len && memcmp(p, origin.ptr, origin.len) == 0)
            return 1;
        p = e;
    }
    return 0;
}

/* req_will_close decides whether r's response carries "Connection: close". */
static int
req_will_close(const sb_http_req_t *r)
{
    const sb__http_conn_t *c = r->conn;
    if (!r->keep_alive || r->err_close || c->srv->closing || c->upgrade_wait)
        return 1;
    if (c->peer_eof && !r->next && !c->cur && c->stash.len == 0)
        return 1;
    return 0;
}

/* resp_head writes the status line and headers.  length < 0: a chunked (or, for HTTP/1.0,
 * close-delimited) stream. */
static int
resp_head(sb_http_req_t *r, sb_buf_t *out, int status, const char *ctype, long long length)
{
    sb_http_server_t *srv = r->srv;
    int rc = sb_buf_appendf(out, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
    if (ctype && status != 204 && status != 304)
        rc = rc ? rc : sb_buf_appendf(out, "Content-Type: %s\r\n", ctype);
    int bodyless = status == 204 || status == 304 || (status >= 100 && status < 200);
    if (!bodyless) {
        if (length >= 0)
            rc = rc ? rc : sb_buf_appendf(out, "Content-Length: %lld\r\n", length);
        else if (r->http_minor >= 1 || r->http_major > 1)
            rc = rc ? rc : sb_buf_appendf(out, "Transfer-Encoding: chunked\r\n");
        else
            r->stream_eof = 1;
    }
    rc = rc ? rc : sb_buf_appendf(out, "X-Request-Id: %s\r\n", r->rid[0] ? r->rid : "-");
    if (srv->cors && r->conn) {
        sb_str_t origin = sb_http_header(r, "Origin");
        if (cors_origin_allowed(srv, origin)) {
            if (strcmp(srv->cors, "*") == 0)
                rc = rc ? rc : sb_buf_appendf(out, "Access-Control-Allow-Origin: *\r\n");
            else
                rc = rc ? rc
                        : sb_buf_appendf(out, "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n",
                                         (int)origin.len, origin.ptr);
            rc = rc ? rc : sb_buf_appendf(out, "Access-Control-Expose-Headers: X-Request-Id\r\n");
        }
    }
    if (r->out_hdrs.len)
        rc = rc ? rc : sb_buf_append(out, r->out_hdrs.data, r->out_hdrs.len);
    r->close_after = req_will_close(r) || r->stream_eof;
    if (r->close_after)
        rc = rc ? rc : sb_buf_appendf(out, "Connection: close\r\n");
    else if (r->http_major == 1 && r->http_minor == 0)
        rc = rc ? rc : sb_buf_appendf(out, "Connection: keep-alive\r\n");
    rc = rc ? rc : sb_buf_append(out, "\r\n", 2);
    return rc;
}

static void
req_log(sb_http_req_t *r)
{
    sb_http_server_t *srv = r->srv;
    uint64_t dur = sb_now_mono_us() - r->t0_us;
    const char *pattern = r->route ? r->route->pattern : "unmatched";
    if (srv->obs)
        srv->obs(pattern, r->method, r->status, dur, srv->obs_ud);
    if (srv->opts.access_log <= 0)
        return;
    /* The path is client-controlled: log it printable and bounded. */
    char path[201];
    size_t n = 0;
    sb_str_t p = r->raw_path.ptr ? r->raw_path : SB_STR("-");
    for (uint32_t i = 0; i < p.len && n < sizeof(path) - 1; i++)
        path[n++] = (p.ptr[i] > 0x20 && p.ptr[i] < 0x7f) ? p.ptr[i] : '?';
    path[n] = '\0';
    sb_log_info("SB-HTTP-ACCESS", "%s %s %d bytes=%zu dur_us=%llu rid=%s peer=%s", r->method,
                path, r->status, r->bytes_out, (unsigned long long)dur, r->rid[0] ? r->rid : "-",
                r->peer);
}

/* req_complete: the response is fully queued.  The request leaves the queue in conn_pump. */
static void
req_complete(sb_http_req_t *r)
{
    r->state = REQ_DONE;
    if (r->counted) {
        r->srv->inflight--;
        r->counted = 0;
    }
    req_log(r);
}

static int
req_respond_raw(sb_http_req_t *r, int status, const char *ctype, const void *body, size_t len)
{
    if (!r->conn) {
        if (r->state == REQ_ACTIVE || r->state == REQ_STREAMING) {
            req_release_detached(r);
            return SB_ECLOSED;
        }
        return SB_EINVAL;
    }
    if (r->state != REQ_ACTIVE)
        return SB_EINVAL;
    if (status < 100 || status > 999)
        status = 500;
    sb__http_conn_t *c = r->conn;
    sb_buf_t head;
    sb_buf_init(&head, 0);
    int bodyless = status == 204 || status == 304;
    if (resp_head(r, &head, status, ctype, bodyless ? 0 : (long long)len) != 0) {
        sb_buf_fini(&head);
        return SB_ENOMEM;
    }
    if (r->is_head || bodyless)
        len = 0;
    r->status = status;
    r->bytes_out = head.len + len;
    conn_write(c, head.data, head.len, body, len, NULL, 0);
    sb_buf_fini(&head);
    req_complete(r);
    conn_pump(c);
    return 0;
}

/* req_server_error answers a request the server itself rejects (parse errors, limits,
 * routing).  It runs from conn_pump when the request reaches the head of the queue. */
static void
req_server_answer(sb_http_req_t *r)
{
    r->state = REQ_ACTIVE;
    if (r->preflight) {
        sb_str_t rh = sb_http_header(r, "Access-Control-Request-Headers");
        int ok = rh.len > 0 && rh.len <= 512;
        for (uint32_t i = 0; ok && i < rh.len; i++)
            ok = http_token_char(rh.ptr[i]) || rh.ptr[i] == ',' || rh.ptr[i] == ' ';
        char methods[HTTP_ALLOW_MAX + 16];
        snprintf(methods, sizeof(methods), "%s%sOPTIONS", r->allow, r->allow[0] ? ", " : "");
        sb_http_add_header(r, "Access-Control-Allow-Methods", methods);
        if (ok) {
            char hdrs[520];
            snprintf(hdrs, sizeof(hdrs), "%.*s", (int)rh.len, rh.ptr);
            sb_http_add_header(r, "Access-Control-Allow-Headers", hdrs);
        } else {
            sb_http_add_header(r, "Access-Control-Allow-Headers",
                               "Content-Type, Authorization, X-API-Key, X-Request-Id");
        }
        sb_http_add_header(r, "Access-Control-Max-Age", "600");
        req_respond_raw(r, 204, NULL, NULL, 0);
        return;
    }
    if (r->options_allow) {
        char methods[HTTP_ALLOW_MAX + 16];
        snprintf(methods, sizeof(methods), "%s, OPTIONS", r->allow);
        sb_http_add_header(r, "Allow", methods);
        req_respond_raw(r, 204, NULL, NULL, 0);
        return;
    }
    if (r->err_status == 405)
        sb_http_add_header(r, "Allow", r->allow);
    sb_http_respond_error(r, r->err_status, r->err_code ? r->err_code : "bad_request", "%s",
                          r->err_msg ? r->err_msg : "bad request");
}

/* ---------------------------------------------------------------------------------------- */
/* llhttp callbacks: they only record; handlers run later, from conn_pump.                   */

static int
conn_fail(sb__http_conn_t *c, int status, const char *code, const char *msg)
{
    c->fail_status = status;
    c->fail_code = code;
    c->fail_msg = msg;
    return -1;
}

static int
conn_fail_head(sb__http_conn_t *c)
{
    return conn_fail(c, 431, "headers_too_large", "request head too large");
}

static int
http_on_message_begin(llhttp_t *p)
{
    sb__http_conn_t *c = p->data;
    SB_ASSERT(c->cur == NULL);
    c->cur = req_alloc(c);
    c->served = 1;
    c->head_deadline = http_now_ms(c->srv) + c->srv->opts.header_timeout_ms;
    return 0;
}

static int
http_on_url(llhttp_t *p, const char *at, size_t len)
{
    sb__http_conn_t *c = p->data;
    sb_http_req_t *r = c->cur;
    if (sb_buf_append(&r->head, at, len) != 0)
        return conn_fail_head(c);
    r->url_len += (uint32_t)len;
    return 0;
}

static int
http_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    sb__http_conn_t *c = p->data;
    sb_http_req_t *r = c->cur;
    if (r->state != REQ_HEAD) {
        /* Trailers of a chunked body: bounded, then dropped. */
        r->trailer_bytes += len;
        return r->trailer_bytes > c->srv->opts.max_header_bytes ? conn_fail_head(c) : 0;
    }
    if (!r->in_field) {
        if (r->nhdrs >= c->srv->opts.max_headers)
            return conn_fail(c, 431, "headers_too_large", "too many headers");
        if (r->nhdrs == r->hdrs_cap) {
            r->hdrs_cap = r->hdrs_cap ? r->hdrs_cap * 2 : 16;
            r->hdrs = sb_xrealloc(r->hdrs, r->hdrs_cap * sizeof(*r->hdrs));
        }
        r->hdrs[r->nhdrs++] = (http_hdr_t){(uint32_t)r->head.len, 0, (uint32_t)r->head.len, 0};
        r->in_field = 1;
    }
    if (sb_buf_append(&r->head, at, len) != 0)
        return conn_fail_head(c);
    r->hdrs[r->nhdrs - 1].nl += (uint32_t)len;
    r->hdrs[r->nhdrs - 1].vo = (uint32_t)r->head.len;
    return 0;
}

static int
http_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    sb__http_conn_t *c = p->data;
    sb_http_req_t *r = c->cur;
    if (r->state != REQ_HEAD) {
        r->trailer_bytes += len;
        return r->trailer_bytes > c->srv->opts.max_header_bytes ? conn_fail_head(c) : 0;
    }
    if (r->nhdrs == 0)
        return 0;
    if (sb_buf_append(&r->head, at, len) != 0)
        return conn_fail_head(c);
    r->hdrs[r->nhdrs - 1].vl += (uint32_t)len;
    return 0;
}

/* A header's name is complete: the next name bytes start a new header, even when this one's
 * value turns out empty (llhttp then calls no value callback at all). */
static int
http_on_header_field_complete(llhttp_t *p)
{
    sb__http_conn_t *c = p->data;
    if (c->cur)
        c->cur->in_field = 0;
    return 0;
}

/* http_route_request decodes the target and picks the route (or the server's own answer). */
static int
http_route_request(sb__http_conn_t *c, sb_http_req_t *r)
{
    sb_http_server_t *srv = c->srv;
    if (sb__http_split_target((const char *)r->head.data, r->url_len, &r->raw_path, &r->query) != 0)
        return conn_fail(c, 400, "bad_request", "malformed request target");
    r->path = sb_xmalloc((size_t)r->raw_path.len + 1);
    int n = sb__http_pct_decode(r->raw_path.ptr, r->raw_path.len, r->path, 0);
    if (n < 0)
        return conn_fail(c, 400, "bad_request", "malformed path encoding");
    r->path[n] = '\0';
    r->path_len = (size_t)n;

    sb_str_t origin = sb_http_header(r, "Origin");
    int preflight = strcmp(r->method, "OPTIONS") == 0 && srv->cors && origin.len &&
                    sb_http_header(r, "Access-Control-Request-Method").len;
    int rc = sb__http_route_match(srv->routes, preflight ? "\x01" : r->method, r->path,
                                  r->path_len, &r->route, r->params, &r->nparams, r->allow,
                                  sizeof(r->allow));
    if (rc == SB_ENOTFOUND) {
        r->route = NULL;
        r->err_status = 404;
        r->err_code = "not_found";
        r->err_msg = "no such route";
    } else if (rc == SB_EUNSUPPORTED && preflight) {
        r->route = NULL;
        r->preflight = 1;
    } else if (rc == SB_EUNSUPPORTED && strcmp(r->method, "OPTIONS") == 0) {
        r->route = NULL;
        r->options_allow = 1;
    } else if (rc == SB_EUNSUPPORTED) {
        r->route = NULL;
        r->err_status = 405;
        r->err_code = "method_not_allowed";
        r->err_msg = "method not allowed for this route";
    }
    return 0;
}

static int
http_on_headers_complete(llhttp_t *p)
{
    sb__http_conn_t *c = p->data;
    sb_http_server_t *srv = c->srv;
    sb_http_req_t *r = c->cur;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->method = llhttp_method_name((llhttp_method_t)p->method);
    r->keep_alive = llhttp_should_keep_alive(p) != 0;
    r->upgrade = p->upgrade != 0;
    r->is_head = p->method == HTTP_HEAD;
    r->has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    r->state = REQ_BODY;
    conn_enqueue(c, r);
    c->last_read = http_now_ms(srv);

    sb_str_t rid = sb_http_header(r, "X-Request-Id");
    if (http_rid_valid(rid))
        sb_str_copy(r->rid, sizeof(r->rid), rid);
    else
        snprintf(r->rid, sizeof(r->rid), "%016llx", (unsigned long long)http_rand(srv));

    if (http_route_request(c, r) != 0)
        return -1;
    r->max_body = r->route && r->route->max_body ? r->route->max_body : srv->opts.max_body_bytes;
    if (r->max_body >= UINT32_MAX)
        r->max_body = UINT32_MAX - 1;
    sb_buf_init(&r->body, r->max_body);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > r->max_body)
        return conn_fail(c, 413, "payload_too_large", "request body too large");

    sb_str_t expect = sb_http_header(r, "Expect");
    r->expect = r->has_body && expect.len == 12 && strncasecmp(expect.ptr, "100-continue", 12) == 0 &&
                (r->http_major > 1 || r->http_minor >= 1);
    if (r->err_status || r->preflight || r->options_allow) {
        /* The server answers this one itself: do not invite the body, and do not keep it. */
        if (r->expect)
            return conn_fail(c, r->err_status ? r->err_status : 400,
                             r->err_code ? r->err_code : "bad_request",
                             r->err_msg ? r->err_msg : "unexpected body");
        r->discard_body = 1;
    }
    if (r->has_body && c->qhead != r) {
        /* Hold the body back until this request is at the front: one body buffered at most. */
        c->paused = 1;
        c->pause_hdrs = 1;
        return HPE_PAUSED;
    }
    return 0;
}

static int
http_on_body(llhttp_t *p, const char *at, size_t len)
{
    sb__http_conn_t *c = p->data;
    sb_http_req_t *r = c->cur;
    if (r->discard_body) {
        r->discarded += len;
        if (r->discarded > r->max_body)
            return conn_fail(c, 413, "payload_too_large", "request body too large");
        return 0;
    }
    int rc = sb_buf_append(&r->body, at, len);
    if (rc == SB_ETOOBIG)
        return conn_fail(c, 413, "payload_too_large", "request body too large");
    if (rc != 0)
        return conn_fail(c, 503, "unavailable", "out of memory");
    return 0;
}

static int
http_on_message_complete(llhttp_t *p)
{
    sb__http_conn_t *c = p->data;
    sb_http_req_t *r = c->cur;
    r->state = REQ_READY;
    c->cur = NULL;
    if (c->nq >= c->srv->opts.max_pipelined && !r->upgrade) {
        c->paused = 1;
        c->pause_hdrs = 0;
        return HPE_PAUSED;
    }
    return 0;
}

static const llhttp_settings_t http_settings = {
    .on_message_begin = http_on_message_begin,
    .on_url = http_on_url,
    .on_header_field = http_on_header_field,
    .on_header_value = http_on_header_value,
    .on_header_field_complete = http_on_header_field_complete,
    .on_headers_complete = http_on_headers_complete,
    .on_body = http_on_body,
    .on_message_complete = http_on_message_complete,
};

/* ---------------------------------------------------------------------------------------- */
/* parsing                                                                                   */

static void
conn_stash(sb__http_conn_t *c, const char *p, size_t len)
{
    if (len == 0)
        return;
    if (c->stash.len + len > HTTP_STASH_MAX || sb_buf_append(&c->stash, p, len) != 0)
        conn_close(c);
}

/* conn_parse_failed turns a parse error into a queued error answer and stops parsing. */
static void
conn_parse_failed(sb__http_conn_t *c)
{
    sb_http_req_t *r = c->cur;
    if (!r)
        r = req_alloc(c);
    if (r->state == REQ_HEAD)
        conn_enqueue(c, r);
    if (!r->rid[0])
        snprintf(r->rid, sizeof(r->rid), "%016llx", (unsigned long long)http_rand(c->srv));
    if (c->fail_status) {
        r->err_status = c->fail_status;
        r->err_code = c->fail_code;
        r->err_msg = c->fail_msg;
    } else {
        r->err_status = 400;
        r->err_code = "bad_request";
        r->err_msg = llhttp_get_error_reason(&c->parser);
        if (!r->err_msg)
            r->err_msg = "malformed request";
    }
    r->preflight = r->options_allow = 0;
    r->err_close = 1;
    r->state = REQ_READY;
    c->cur = NULL;
    c->parse_dead = 1;
}

static void
conn_parse(sb__http_conn_t *c, const char *data, size_t len)
{
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
    if (e == HPE_OK)
        return;
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        if (!pos || pos < data || pos > data + len)
            pos = data + len;
        if (e == HPE_PAUSED_UPGRADE) {
            c->upgrade_wait = 1;
            c->paused = 0;
        }
        conn_stash(c, pos, (size_t)(data + len - pos));
        return;
    }
    conn_parse_failed(c);
}

static int
conn_can_resume(const sb__http_conn_t *c)
{
    if (!c->paused || c->closing || c->parse_dead || c->close_after || c->upgrade_wait)
        return 0;
    if (c->pause_hdrs)
        return c->cur != NULL && c->cur == c->qhead;
    return c->nq < c->srv->opts.max_pipelined;
}

static void
conn_resume(sb__http_conn_t *c)
{
    llhttp_resume(&c->parser);
    c->paused = 0;
    c->pause_hdrs = 0;
    c->last_read = http_now_ms(c->srv);
    size_t len;
    uint8_t *data = sb_buf_steal(&c->stash, &len);
    if (data && len)
        conn_parse(c, (const char *)data, len);
    free(data);
}

/* conn_input: bytes from the peer (a socket read or a virtual feed). */
static void
conn_input(sb__http_conn_t *c, const char *data, size_t len)
{
    if (c->closing || c->parse_dead || c->close_after)
        return;
    if (c->paused || c->upgrade_wait || c->upgrading) {
        conn_stash(c, data, len);
        return;
    }
    conn_parse(c, data, len);
    conn_pump(c);
}

/* ---------------------------------------------------------------------------------------- */
/* the pump: dispatch in order, resume parsing, drain callbacks; then reading and timers.    */

static void
conn_pop_head(sb__http_conn_t *c)
{
    sb_http_req_t *r = c->qhead;
    c->qhead = r->next;
    if (!c->qhead)
        c->qtail = NULL;
    c->nq--;
    c->idle_since = http_now_ms(c->srv);
    int close_after = r->close_after;
    req_free(r);
    if (close_after) {
        /* Nothing behind a closing response is answered; none of it was dispatched. */
        c->close_after = 1;
        while (c->qhead) {
            sb_http_req_t *n = c->qhead->next;
            if (c->qhead == c->cur)
                c->cur = NULL;
            req_free(c->qhead);
            c->qhead = n;
        }
        c->qtail = NULL;
        c->nq = 0;
        if (c->cur) {
            req_free(c->cur);
            c->cur = NULL;
        }
    }
}

static void
conn_dispatch(sb__http_conn_t *c)
{
    sb_http_req_t *r;
    while (!c->closing && !c->upgrading && (r = c->qhead) != NULL) {
        if (r->state == REQ_DONE) {
            conn_pop_head(c);
            continue;
        }
        if (r->state == REQ_READY) {
            if (r->err_status || r->preflight || r->options_allow || !r->route) {
                if (!r->err_status && !r->preflight && !r->options_allow) {
                    r->err_status = 404;
                    r->err_code = "not_found";
                    r->err_msg = "no such route";
                }
                req_server_answer(r);
                continue;
            }
            r->state = REQ_ACTIVE;
            r->counted = 1;
            c->srv->inflight++;
            r->route->fn(r, r->route->ud);
            continue;
        }
        if (r->state == REQ_BODY && r->expect && !r->continued && !c->paused) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            r->continued = 1;
            c->last_read = http_now_ms(c->srv);
            conn_write(c, cont, sizeof(cont) - 1, NULL, 0, NULL, 0);
        }
        break;
    }
}

static void
conn_update_read(sb__http_conn_t *c);
static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);

static void
conn_update_read(sb__http_conn_t *c)
{
    if (!c->tcp || c->closing || c->shutting)
        return;
    int want = !c->paused && !c->parse_dead && !c->close_after && !c->upgrade_wait &&
               !c->upgrading && !c->peer_eof && c->out_pending < c->srv->opts.max_output_bytes;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)c->tcp, conn_alloc_cb, conn_on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)c->tcp);
        c->reading = 0;
    }
}

static void conn_on_timer(uv_timer_t *t);
static void conn_on_handover(uv_timer_t *t);

static void
conn_arm_timer(sb__http_conn_t *c)
{
    sb_http_server_t *srv = c->srv;
    sb_http_req_t *h = c->qhead;
    uint64_t now = http_now_ms(srv), due;
    if (c->out_pending > 0) {
        due = c->last_write + srv->opts.idle_timeout_ms;
    } else if (h && (h->state == REQ_ACTIVE || h->state == REQ_STREAMING)) {
        uv_timer_stop(&c->timer);
        return;
    } else if ((c->cur && c->cur->state == REQ_HEAD) || !c->served) {
        due = c->head_deadline;
    } else if (c->cur) {
        due = c->last_read + srv->opts.body_timeout_ms;
    } else if (!h) {
        due = c->idle_since + srv->opts.idle_timeout_ms;
    } else {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, conn_on_timer, due > now ? due - now : 0, 0);
}

static void conn_shutdown(sb__http_conn_t *c);

static void
conn_after(sb__http_conn_t *c)
{
    sb_http_server_t *srv = c->srv;
    if (c->closing || c->shutting)
        return;
    if (c->upgrading) {
        conn_update_read(c);
        if (c->out_pending == 0)
            uv_timer_start(&c->timer, conn_on_handover, 0, 0);
        else
            uv_timer_stop(&c->timer);
        return;
    }
    if (srv->closing && !c->qhead && c->cur && c->cur->state == REQ_HEAD) {
        /* Shutting down: a request whose head has not even arrived is not in flight. */
        conn_close(c);
        return;
    }
    int nothing = !c->qhead && !c->cur && c->stash.len == 0 && !c->paused;
    if (nothing && (c->peer_eof || srv->closing || c->parse_dead || c->upgrade_wait))
        c->close_after = 1;
    if (c->peer_eof && c->qhead &&
        (c->qhead->state == REQ_ACTIVE || c->qhead->state == REQ_STREAMING)) {
        /* The peer closed its side while a handler works: treat it as gone (as node does),
         * so long work (an execution) learns of it through the abort callback.  Requests
         * answered synchronously were answered above, before this point. */
        conn_close(c);
        return;
    }
    if (c->peer_eof && c->cur && !c->paused && c->stash.len == 0 &&
        (!c->qhead || c->qhead == c->cur)) {
        /* The peer stopped halfway through a request: nothing to answer. */
        conn_close(c);
        return;
    }
    if (c->close_after && !c->qhead) {
        if (c->out_pending == 0) {
            conn_shutdown(c);
            return;
        }
    }
    conn_update_read(c);
    conn_arm_timer(c);
}

static void
conn_pump(sb__http_conn_t *c)
{
    if (c->in_pump) {
        c->again = 1;
        return;
    }
    c->in_pump = 1;
    do {
        c->again = 0;
        conn_dispatch(c);
        if (c->closing)
            break;
        if (conn_can_resume(c)) {
            conn_resume(c);
            c->again = 1;
            continue;
        }
        sb_http_req_t *h = c->qhead;
        if (h && h->state == REQ_STREAMING && h->want_drain &&
            c->out_pending < c->srv->opts.max_output_bytes) {
            h->want_drain = 0;
            if (h->drain_cb) {
                h->drain_cb(h, h->drain_ud);
                c->again = 1;
            }
        }
    } while (c->again && !c->closing);
    c->in_pump = 0;
    conn_after(c);
}

/* ---------------------------------------------------------------------------------------- */
/* connection lifetime                                                                       */

static void
conn_on_handle_closed(uv_handle_t *h)
{
    sb__http_conn_t *c = h->data;
    if (h != (uv_handle_t *)&c->timer)
        free(h);
    if (--c->handles > 0)
        return;
    sb_http_server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    sb_buf_fini(&c->stash);
    free(c);
    srv_maybe_done(srv);
}

/* conn_close closes at once: queued requests are dropped, the active one is detached and its
 * abort callback runs.  The memory goes when the handles have closed. */
static void
conn_close(sb__http_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    sb_http_req_t *aborted = NULL;
    for (sb_http_req_t *r = c->qhead, *n; r; r = n) {
        n = r->next;
        if (r == c->cur)
            c->cur = NULL;
        if (r->state == REQ_ACTIVE || r->state == REQ_STREAMING) {
            r->conn = NULL;
            r->next = aborted;
            aborted = r;
            c->srv->detached++;
        } else {
            req_free(r);
        }
    }
    c->qhead = c->qtail = NULL;
    c->nq = 0;
    if (c->cur) {
        req_free(c->cur);
        c->cur = NULL;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
    if (c->tcp) {
        uv_close((uv_handle_t *)c->tcp, conn_on_handle_closed);
        c->tcp = NULL;
    }
    /* Abort callbacks last: they may respond, which frees the request. */
    while (aborted) {
        sb_http_req_t *r = aborted;
        aborted = r->next;
        r->next = NULL;
        if (r->abort_cb) {
            void (*cb)(sb_http_req_t *, void *) = r->abort_cb;
            r->abort_cb = NULL;
            cb(r, r->abort_ud);
        }
    }
}

static void
conn_on_linger_timer(uv_timer_t *t)
{
    conn_close(t->data);
}

static void
conn_on_shutdown(uv_shutdown_t *s, int status)
{
    sb__http_conn_t *c = s->data;
    if (c->closing)
        return;
    if (status < 0 || c->peer_eof || !c->tcp) {
        conn_close(c);
        return;
    }
    c->lingering = 1;
    if (uv_read_start((uv_stream_t *)c->tcp, conn_alloc_cb, conn_on_read) != 0) {
        conn_close(c);
        return;
    }
    c->reading = 1;
    uv_timer_start(&c->timer, conn_on_linger_timer, HTTP_LINGER_MS, 0);
}

/* conn_shutdown: the last response is written; send FIN and linger (see the file header). */
static void
conn_shutdown(sb__http_conn_t *c)
{
    if (c->virt || !c->tcp) {
        conn_close(c);
        return;
    }
    c->shutting = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)c->tcp);
        c->reading = 0;
    }
    uv_timer_stop(&c->timer);
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)c->tcp, conn_on_shutdown) != 0)
        conn_close(c);
}

static void
conn_on_timer(uv_timer_t *t)
{
    sb__http_conn_t *c = t->data;
    if (c->closing)
        return;
    sb_http_req_t *h = c->qhead;
    if (c->out_pending > 0 || (h && (h->state == REQ_ACTIVE || h->state == REQ_STREAMING))) {
        /* The client has not taken any of its output for idle_timeout. */
        conn_close(c);
        return;
    }
    sb_http_req_t *r = c->cur;
    if (!r || c->parse_dead || c->close_after) {
        conn_close(c);
        return;
    }
    if (r->state == REQ_HEAD)
        conn_enqueue(c, r);
    if (!r->rid[0])
        snprintf(r->rid, sizeof(r->rid), "%016llx", (unsigned long long)http_rand(c->srv));
    r->err_status = 408;
    r->err_code = "timeout";
    r->err_msg = "request not received in time";
    r->preflight = r->options_allow = 0;
    r->err_close = 1;
    r->state = REQ_READY;
    c->cur = NULL;
    c->parse_dead = 1;
    conn_pump(c);
}

static sb__http_conn_t *
conn_alloc(sb_http_server_t *srv)
{
    sb__http_conn_t *c = sb_xcalloc(1, sizeof(*c));
    c->srv = srv;
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    llhttp_init(&c->parser, HTTP_REQUEST, &http_settings);
    c->parser.data = c;
    sb_buf_init(&c->stash, 0);
    uint64_t now = http_now_ms(srv);
    c->head_deadline = now + srv->opts.header_timeout_ms;
    c->idle_since = c->last_read = c->last_write = now;
    snprintf(c->peer, sizeof(c->peer), "-");
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    return c;
}

static void
conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sb__http_conn_t *c = h->data;
    (void)hint;
    /* One loop thread, and each read is consumed (parsed or stashed) before the next
     * allocation: a single server-wide buffer suffices. */
    *buf = uv_buf_init(c->srv->rbuf, sizeof(c->srv->rbuf));
}

static void
conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sb__http_conn_t *c = s->data;
    (void)buf;
    if (c->closing)
        return;
    if (c->lingering) {
        if (nread < 0 || (c->linger_bytes += (size_t)(nread > 0 ? nread : 0)) > HTTP_LINGER_BYTES)
            conn_close(c);
        return;
    }
    if (nread > 0) {
        c->last_read = http_now_ms(c->srv);
        conn_input(c, buf->base, (size_t)nread);
    } else if (nread == UV_EOF) {
        c->peer_eof = 1;
        conn_update_read(c);
        if (c->reading) {
            uv_read_stop(s);
            c->reading = 0;
        }
        conn_pump(c);
    } else if (nread < 0) {
        conn_close(c);
    }
}

static void
conn_on_handover(uv_timer_t *t)
{
    sb__http_conn_t *c = t->data;
    if (c->closing || !c->upgrading || c->out_pending > 0)
        return;
    uv_tcp_t *sock = c->tcp;
    c->tcp = NULL;
    c->handles--;
    if (c->reading)
        uv_read_stop((uv_stream_t *)sock);
    c->reading = 0;
    sock->data = NULL;
    sb_http_req_t *r = c->qhead;
    c->qhead = r->next;
    if (!c->qhead)
        c->qtail = NULL;
    c->nq--;
    r->status = 101;
    req_log(r);
    size_t len;
    uint8_t *extra = sb_buf_steal(&c->stash, &len);
    c->up_cb(sock, r, extra ? extra : (const uint8_t *)"", len, c->up_ud);
    free(extra);
    req_free(r);
    conn_close(c);
}

static void
srv_free_handle(uv_handle_t *h)
{
    free(h);
}

static void
srv_on_connection(uv_stream_t *ls, int status)
{
    sb_http_server_t *srv = ls->data;
    if (status < 0) {
        sb_log_warn("SB-HTTP-ACCEPT-FAIL", "accept: %s", uv_strerror(status));
        return;
    }
    if (srv->closing)
        return;
    uv_tcp_t *tcp = sb_xmalloc(sizeof(*tcp));
    uv_tcp_init(srv->loop, tcp);
    if (uv_accept(ls, (uv_stream_t *)tcp) != 0) {
        uv_close((uv_handle_t *)tcp, srv_free_handle);
        return;
    }
    if (srv->nconns >= (size_t)srv->opts.max_connections + 64) {
        /* Far over the limit: not even a 503 is worth the memory. */
        uv_close((uv_handle_t *)tcp, srv_free_handle);
        return;
    }
    sb__http_conn_t *c = conn_alloc(srv);
    c->tcp = tcp;
    tcp->data = c;
    c->handles++;
    uv_tcp_nodelay(tcp, 1);
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &sl) == 0) {
        char ip[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof(ip));
            snprintf(c->peer, sizeof(c->peer), "[%s]:%u", ip, ntohs(a->sin6_port));
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof(ip));
            snprintf(c->peer, sizeof(c->peer), "%s:%u", ip, ntohs(a->sin_port));
        }
    }
    if (srv->nconns > srv->opts.max_connections) {
        sb_http_req_t *r = req_alloc(c);
        snprintf(r->rid, sizeof(r->rid), "%016llx", (unsigned long long)http_rand(srv));
        r->err_status = 503;
        r->err_code = "unavailable";
        r->err_msg = "too many connections";
        r->err_close = 1;
        r->state = REQ_READY;
        conn_enqueue(c, r);
        c->parse_dead = 1;
    }
    conn_pump(c);
}

/* ---------------------------------------------------------------------------------------- */
/* server                                                                                    */

sb_http_server_t *
sb_http_server_alloc(uv_loop_t *loop, const sb_http_opts_t *opts)
{
    sb_http_server_t *srv = sb_xcalloc(1, sizeof(*srv));
    srv->loop = loop;
    if (opts)
        srv->opts = *opts;
    sb_http_opts_t *o = &srv->opts;
    if (!o->max_header_bytes)
        o->max_header_bytes = 16 * 1024;
    if (!o->max_headers)
        o->max_headers = 100;
    if (!o->max_body_bytes)
        o->max_body_bytes = 10 * 1024 * 1024;
    if (!o->header_timeout_ms)
        o->header_timeout_ms = 10000;
    if (!o->body_timeout_ms)
        o->body_timeout_ms = 30000;
    if (!o->idle_timeout_ms)
        o->idle_timeout_ms = 60000;
    if (!o->max_output_bytes)
        o->max_output_bytes = 8 * 1024 * 1024;
    if (!o->max_connections)
        o->max_connections = 10000;
    if (!o->max_pipelined)
        o->max_pipelined = 16;
    o->access_log = opts ? o->access_log > 0 : 1;
    srv->cors = o->cors_origins && o->cors_origins[0] ? sb_xstrdup(o->cors_origins) : NULL;
    o->cors_origins = srv->cors;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
        seed = uv_hrtime() ^ (uint64_t)(uintptr_t)srv;
    srv->rng = seed;
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    srv->listener_open = 1;
    return srv;
}

int
sb_http_route(sb_http_server_t *srv, const char *method, const char *pattern,
              sb_http_handler_t fn, void *ud, size_t max_body)
{
    return sb__http_route_add(&srv->routes, method, pattern, fn, ud, max_body);
}

int
sb_http_listen(sb_http_server_t *srv, const char *host, int port)
{
    struct sockaddr_storage ss;
    int rc;
    if (srv->closing)
        return SB_ECLOSED;
    if (strchr(host, ':'))
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (rc)
        return rc;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (rc)
        return rc;
    rc = uv_listen((uv_stream_t *)&srv->listener, 511, srv_on_connection);
    if (rc)
        return rc;
    int sl = sizeof(ss);
    rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &sl);
    if (rc)
        return rc;
    srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    sb_log_info("SB-HTTP-LISTEN", "listening on %s:%d", host, srv->port);
    return 0;
}

int
sb_http_port(const sb_http_server_t *srv)
{
    return srv->port;
}

static void
srv_maybe_done(sb_http_server_t *srv)
{
    if (!srv->closing || srv->listener_open || srv->nconns || srv->detached)
        return;
    sb_http_close_cb cb = srv->close_cb;
    void *ud = srv->close_ud;
    srv->close_cb = NULL;
    if (cb)
        cb(srv, ud);
    sb__http_routes_free(srv->routes);
    free(srv->cors);
    free(srv);
}

static void
srv_on_listener_closed(uv_handle_t *h)
{
    sb_http_server_t *srv = h->data;
    srv->listener_open = 0;
    srv_maybe_done(srv);
}

void
sb_http_server_close(sb_http_server_t *srv, sb_http_close_cb cb, void *ud)
{
    if (srv->closing)
        return;
    srv->closing = 1;
    srv->close_cb = cb;
    srv->close_ud = ud;
    uv_close((uv_handle_t *)&srv->listener, srv_on_listener_closed);
    for (sb__http_conn_t *c = srv->conns; c; c = c->next) {
        if (c->closing)
            continue;
        if (!c->qhead && (!c->cur || c->cur->state == REQ_HEAD) && !c->paused &&
            c->stash.len == 0)
            conn_close(c);
        else if (!c->in_pump)
            conn_after(c);
    }
}

size_t
sb_http_inflight(const sb_http_server_t *srv)
{
    return srv->inflight;
}

void
sb_http_set_observer(sb_http_server_t *srv, sb_http_observer_t fn, void *ud)
{
    srv->obs = fn;
    srv->obs_ud = ud;
}

/* ---------------------------------------------------------------------------------------- */
/* request accessors                                                                         */

const char *
sb_http_method(const sb_http_req_t *req)
{
    return req->method;
}

sb_str_t
sb_http_path(const sb_http_req_t *req)
{
    if (!req->path)
        return SB_STR("");
    return (sb_str_t){req->path, (uint32_t)req->path_len};
}

sb_str_t
sb_http_header(const sb_http_req_t *req, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const http_hdr_t *h = &req->hdrs[i];
        if (h->nl == n && strncasecmp((const char *)req->head.data + h->no, name, n) == 0) {
            const char *v = (const char *)req->head.data + h->vo;
            uint32_t vl = h->vl;
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            return (sb_str_t){v, vl};
        }
    }
    return (sb_str_t){NULL, 0};
}

int
sb_http_query(const sb_http_req_t *req, const char *name, char *out, size_t cap)
{
    return sb__http_query_get(req->query, name, out, cap);
}

sb_str_t
sb_http_param(const sb_http_req_t *req, const char *name)
{
    for (int i = 0; i < req->nparams; i++)
        if (sb_str_eq(req->params[i].name, name))
            return req->params[i].value;
    return (sb_str_t){NULL, 0};
}

sb_str_t
sb_http_body(const sb_http_req_t *req)
{
    if (!req->body.len)
        return SB_STR("");
    return (sb_str_t){(const char *)req->body.data, (uint32_t)req->body.len};
}

const char *
sb_http_request_id(const sb_http_req_t *req)
{
    return req->rid;
}

void
sb_http_peer(const sb_http_req_t *req, char *out, size_t cap)
{
    if (cap)
        snprintf(out, cap, "%s", req->peer);
}

void
sb_http_set_data(sb_http_req_t *req, void *data)
{
    req->data = data;
}

void *
sb_http_get_data(const sb_http_req_t *req)
{
    return req->data;
}

void
sb_http_on_abort(sb_http_req_t *req, void (*cb)(sb_http_req_t *req, void *ud), void *ud)
{
    req->abort_cb = cb;
    req->abort_ud = ud;
}

const char *
sb_http_route_pattern(const sb_http_req_t *req)
{
    return req->route ? req->route->pattern : "unmatched";
}

/* ---------------------------------------------------------------------------------------- */
/* responding                                                                                */

void
sb_http_add_header(sb_http_req_t *req, const char *name, const char *value)
{
    size_t nl = strlen(name);
    int ok = nl > 0;
    for (size_t i = 0; ok && i < nl; i++)
        ok = http_token_char(name[i]);
    for (const char *v = value; ok && *v; v++)
        ok = *v != '\r' && *v != '\n';
    if (!ok) {
        sb_log_warn("SB-HTTP-BAD-HEADER", "refused a response header with bad characters");
        return;
    }
    if (sb_buf_appendf(&req->out_hdrs, "%s: %s\r\n", name, value) != 0)
        sb_log_warn("SB-HTTP-BAD-HEADER", "response headers over %d bytes", HTTP_OUT_HDRS_MAX);
}

int
sb_http_respond(sb_http_req_t *req, int status, const char *content_type, const void *body,
                size_t len)
{
    return req_respond_raw(req, status, content_type, body, len);
}

int
sb_http_respond_json(sb_http_req_t *req, int status, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!s)
        return sb_http_respond_error(req, 500, "internal", "could not serialize the response");
    int rc = req_respond_raw(req, status, "application/json", s, strlen(s));
    free(s);
    return rc;
}

int
sb_http_respond_error(sb_http_req_t *req, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    if (!o) {
        /* Not UTF-8 (a handler quoted client bytes): keep it ASCII. */
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20)
                *p = '?';
        o = json_pack("{s:{s:s,s:s}}", "error", "code", code ? code : "internal", "message", msg);
    }
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int rc;
    if (s)
        rc = req_respond_raw(req, status, "application/json", s, strlen(s));
    else
        rc = req_respond_raw(req, status, "application/json", "{}", 2);
    free(s);
    return rc;
}

int
sb_http_stream_begin(sb_http_req_t *req, int status, const char *content_type)
{
    if (!req->conn) {
        if (req->state == REQ_ACTIVE)
            req->state = REQ_STREAMING;
        return SB_ECLOSED;
    }
    if (req->state != REQ_ACTIVE)
        return SB_EINVAL;
    sb_buf_t head;
    sb_buf_init(&head, 0);
    if (resp_head(req, &head, status, content_type, -1) != 0) {
        sb_buf_fini(&head);
        return SB_ENOMEM;
    }
    req->status = status;
    req->bytes_out = head.len;
    req->state = REQ_STREAMING;
    conn_write(req->conn, head.data, head.len, NULL, 0, NULL, 0);
    sb_buf_fini(&head);
    return 0;
}

int
sb_http_stream_write(sb_http_req_t *req, const void *data, size_t len)
{
    sb__http_conn_t *c = req->conn;
    if (!c || c->closing)
        return SB_ECLOSED;
    if (req->state != REQ_STREAMING)
        return SB_EINVAL;
    if (len == 0 || req->is_head)
        return 0;
    if (c->out_pending >= c->srv->opts.max_output_bytes) {
        req->want_drain = 1;
        return SB_EAGAIN;
    }
    if (req->stream_eof) {
        conn_write(c, data, len, NULL, 0, NULL, 0);
    } else {
        char hdr[24];
        int hl = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
        conn_write(c, hdr, (size_t)hl, data, len, "\r\n", 2);
    }
    req->bytes_out += len;
    return 0;
}

void
sb_http_stream_on_drain(sb_http_req_t *req, void (*cb)(sb_http_req_t *req, void *ud), void *ud)
{
    req->drain_cb = cb;
    req->drain_ud = ud;
}

int
sb_http_stream_end(sb_http_req_t *req)
{
    sb__http_conn_t *c = req->conn;
    if (!c) {
        if (req->state == REQ_STREAMING || req->state == REQ_ACTIVE) {
            req_release_detached(req);
            return SB_ECLOSED;
        }
        return SB_EINVAL;
    }
    if (req->state != REQ_STREAMING)
        return SB_EINVAL;
    if (!req->stream_eof && !req->is_head)
        conn_write(c, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
    req_complete(req);
    conn_pump(c);
    return 0;
}

int
sb_http_upgrade(sb_http_req_t *req, sb_http_upgrade_cb cb, void *ud)
{
    sb__http_conn_t *c = req->conn;
    if (!c)
        return SB_ECLOSED;
    if (req->state != REQ_ACTIVE || !req->upgrade || !c->upgrade_wait || c->qhead != req || !cb)
        return SB_EINVAL;
    if (c->virt)
        return SB_EUNSUPPORTED;
    c->upgrading = 1;
    c->up_cb = cb;
    c->up_ud = ud;
    req->state = REQ_DONE;
    req->counted = 0;
    c->srv->inflight--;
    conn_pump(c);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* memory-driven connections (fuzzer, tests)                                                 */

sb__http_conn_t *
sb__http_conn_virtual(sb_http_server_t *srv)
{
    sb__http_conn_t *c = conn_alloc(srv);
    c->virt = 1;
    snprintf(c->peer, sizeof(c->peer), "virtual:0");
    conn_pump(c);
    return c;
}

void
sb__http_conn_feed(sb__http_conn_t *c, const void *data, size_t len)
{
    if (len)
        conn_input(c, data, len);
}

void
sb__http_conn_eof(sb__http_conn_t *c)
{
    if (c->closing)
        return;
    c->peer_eof = 1;
    conn_pump(c);
}

void
sb__http_conn_close(sb__http_conn_t *c)
{
    conn_close(c);
}

size_t
sb__http_out_pending(const sb_http_req_t *req)
{
    return req->conn ? req->conn->out_pending : 0;
}

size_t
sb__http_out_high_water(const sb_http_server_t *srv)
{
    return srv->out_high_water;
}

size_t
sb__http_conn_count(const sb_http_server_t *srv)
{
    return srv->nconns;
}
