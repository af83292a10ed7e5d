/*
 * fuzz_http.c: libFuzzer target for the HTTP server's request path.  Each input goes to a
 * fresh memory-driven connection (sb__http_conn_virtual): llhttp, the head/body limits, the
 * router, path and query decoding, request ids, CORS, the pipelining queue and its pauses,
 * the response serializer, abort and detached responses -- everything but the socket.
 *
 * Input layout: byte 0 picks how the rest is cut into reads (1..255 bytes each, or 0 = one
 * read) and a few behaviours (bit 0 of byte 1: the peer sends EOF; bit 1: deferred requests
 * are answered before the connection closes, else after).  The server lives across inputs;
 * fuzz_http_teardown closes it and checks the loop closes clean.
 */
#include "gateway/http/http_internal.h"

#include "base/err.h"
#include "base/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_http_teardown(void);

static uv_loop_t fz_loop;
static sb_http_server_t *fz_srv;
static sb_http_req_t *fz_deferred[64];
static size_t fz_ndeferred;

static void
fz_health(sb_http_req_t *req, void *ud)
{
    (void)ud;
    sb_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void
fz_echo(sb_http_req_t *req, void *ud)
{
    (void)ud;
    sb_str_t b = sb_http_body(req);
    sb_http_add_header(req, "X-Echo", "1");
    sb_http_add_header(req, "Bad\r\nHeader", "x");
    sb_http_respond(req, 200, "application/octet-stream", b.ptr, b.len);
}

static void
fz_params(sb_http_req_t *req, void *ud)
{
    (void)ud;
    char q[32], peer[64];
    sb_str_t id = sb_http_param(req, "id"), x = sb_http_param(req, "x");
    int n = sb_http_query(req, "q", q, sizeof(q));
    sb_http_peer(req, peer, sizeof(peer));
    sb_str_t ua = sb_http_header(req, "User-Agent");
    sb_http_respond_error(req, 422, "params", "%.*s/%.*s q=%d %s ua=%.*s %s %s", (int)id.len,
                          id.ptr ? id.ptr : "", (int)x.len, x.ptr ? x.ptr : "", n,
                          n >= 0 ? q : "", (int)ua.len, ua.ptr ? ua.ptr : "",
                          sb_http_route_pattern(req), sb_http_request_id(req));
}

static void
fz_files(sb_http_req_t *req, void *ud)
{
    (void)ud;
    sb_str_t p = sb_http_path(req);
    sb_http_respond(req, 200, "text/plain", p.ptr, p.len);
}

static void
fz_stream(sb_http_req_t *req, void *ud)
{
    (void)ud;
    sb_http_stream_begin(req, 200, "text/plain");
    for (int i = 0; i < 3; i++)
        sb_http_stream_write(req, "chunk", 5);
    sb_http_stream_end(req);
}

static void
fz_defer(sb_http_req_t *req, void *ud)
{
    (void)ud;
    if (fz_ndeferred < sizeof(fz_deferred) / sizeof(fz_deferred[0]))
        fz_deferred[fz_ndeferred++] = req;
    else
        sb_http_respond(req, 503, NULL, NULL, 0);
}

static void
fz_upgrade(sb_http_req_t *req, void *ud)
{
    (void)ud;
    if (sb_http_upgrade(req, NULL, NULL) != 0)
        sb_http_respond(req, 400, "text/plain", "no", 2);
}

static void
fz_flush_deferred(void)
{
    /* Answering one may dispatch the next request, which may defer again. */
    while (fz_ndeferred > 0) {
        sb_http_req_t *r = fz_deferred[--fz_ndeferred];
        if (fz_ndeferred & 1) {
            sb_http_stream_begin(r, 200, "text/plain");
            sb_http_stream_write(r, "late", 4);
            sb_http_stream_end(r);
        } else {
            sb_http_respond(r, 200, "text/plain", "late", 4);
        }
    }
}

static void
fz_init(void)
{
    if (fz_srv)
        return;
    if (uv_loop_init(&fz_loop) != 0)
        abort();
    sb_log_setup(SB_LOG_ERROR, 0);
    sb_http_opts_t o = {
        .max_header_bytes = 2048,
        .max_headers = 16,
        .max_body_bytes = 4096,
        .max_pipelined = 3,
        .max_output_bytes = 1024,
        .cors_origins = "https://a.example,https://b.example",
        .access_log = -1,
    };
    fz_srv = sb_http_server_alloc(&fz_loop, &o);
    sb_http_route(fz_srv, "GET", "/health", fz_health, NULL, 0);
    sb_http_route(fz_srv, "POST", "/echo", fz_echo, NULL, 0);
    sb_http_route(fz_srv, "PUT", "/echo", fz_echo, NULL, 100);
    sb_http_route(fz_srv, "*", "/items/{id}/sub/{x}", fz_params, NULL, 0);
    sb_http_route(fz_srv, "GET", "/files/*", fz_files, NULL, 0);
    sb_http_route(fz_srv, "GET", "/stream", fz_stream, NULL, 0);
    sb_http_route(fz_srv, "GET", "/defer", fz_defer, NULL, 0);
    sb_http_route(fz_srv, "POST", "/defer", fz_defer, NULL, 0);
    sb_http_route(fz_srv, "GET", "/ws", fz_upgrade, NULL, 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    uint8_t cut = size > 0 ? data[0] : 0;
    uint8_t flags = size > 1 ? data[1] : 0;
    const uint8_t *p = size > 2 ? data + 2 : data + size;
    size_t left = size > 2 ? size - 2 : 0;
    sb__http_conn_t *c = sb__http_conn_virtual(fz_srv);
    while (left > 0) {
        size_t n = cut ? (cut < left ? cut : left) : left;
        sb__http_conn_feed(c, p, n);
        p += n;
        left -= n;
    }
    if (flags & 1)
        sb__http_conn_eof(c);
    if (flags & 2)
        fz_flush_deferred();
    sb__http_conn_close(c);
    fz_flush_deferred();
    while (sb__http_conn_count(fz_srv) > 0)
        uv_run(&fz_loop, UV_RUN_NOWAIT);
    if (sb_http_inflight(fz_srv) != 0)
        abort();
    return 0;
}

static void
fz_closed(sb_http_server_t *srv, void *ud)
{
    (void)srv;
    *(int *)ud = 1;
}

int
fuzz_http_teardown(void)
{
    if (!fz_srv)
        return 0;
    int closed = 0;
    sb_http_server_close(fz_srv, fz_closed, &closed);
    uv_run(&fz_loop, UV_RUN_DEFAULT);
    fz_srv = NULL;
    if (!closed)
        return -1;
    return uv_loop_close(&fz_loop);
}
