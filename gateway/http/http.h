/*
 * http.h: the gateway's HTTP/1.1 server on llhttp + libuv.
 *
 * One server lives on one loop (the gateway actor's); every function here must be called on
 * that loop's thread.  Features: keep-alive and pipelining (responses leave in request order),
 * Content-Length and chunked request bodies, Expect: 100-continue, limits on header bytes,
 * header count and body size, read/idle timeouts (a slowloris client is dropped), output
 * backpressure (a client that does not read stops being read from; its queued output is
 * capped), a router with path parameters ("/api/v1/sandboxes/{id}/files"), a request id per
 * request (X-Request-Id, taken from the client when sane, else generated) echoed in the
 * response and the access log, configurable CORS, JSON errors
 * {"error":{"code":"...","message":"..."}} with the right status (400, 404, 405, 408, 413,
 * 431, 500, 503).
 *
 * Ownership: a request (sb_http_req_t) belongs to the server.  A handler either responds
 * before it returns or keeps the pointer and responds later on the same loop; if the client
 * goes away first, the abort callback (if set) runs and the pointer stays valid until the
 * handler responds (the response is then discarded) -- so a handler never needs to guess.
 */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include "base/str.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sb_http_server sb_http_server_t;
typedef struct sb_http_req sb_http_req_t;

typedef struct {
    size_t max_header_bytes;     /* default 16 KiB -> 431 */
    size_t max_headers;          /* default 100 -> 431 */
    size_t max_body_bytes;       /* default 10 MiB -> 413 (a route may raise it) */
    uint32_t header_timeout_ms;  /* whole request head must arrive within this (default 10 s) */
    uint32_t body_timeout_ms;    /* body must keep arriving (default 30 s between reads) */
    uint32_t idle_timeout_ms;    /* keep-alive idle (default 60 s) */
    size_t max_output_bytes;     /* queued unsent response bytes per connection (default 8 MiB) */
    uint32_t max_connections;    /* default 10000; beyond, new connections get 503 and close */
    uint32_t max_pipelined;      /* requests parsed ahead of the one being answered (default 16) */
    const char *cors_origins;    /* NULL: no CORS headers; "*" or a comma list of origins */
    int access_log;              /* 1: one info line per response; 0: none (on if opts NULL) */
} sb_http_opts_t;

typedef void (*sb_http_handler_t)(sb_http_req_t *req, void *ud);
typedef void (*sb_http_close_cb)(sb_http_server_t *srv, void *ud);

/* sb_http_server_alloc: opts may be NULL for defaults.  Never fails (aborts on OOM). */
sb_http_server_t *sb_http_server_alloc(uv_loop_t *loop, const sb_http_opts_t *opts);
/* sb_http_route registers method ("GET", ...; "*" for any) and pattern ("/a/{id}/b"; a
 * last segment "*", as in "/files/" "*", matches the rest, even empty).  Routes match in
 * registration order.  A path that matches a pattern but not the method gets 405 with Allow
 * (HEAD is served by GET routes).  max_body overrides opts.max_body_bytes when non-zero. */
int sb_http_route(sb_http_server_t *srv, const char *method, const char *pattern,
                  sb_http_handler_t fn, void *ud, size_t max_body);
/* sb_http_listen binds host:port; host is an IPv4 or IPv6 literal (port 0: any; sb_http_port
 * tells).  UV errors returned. */
int sb_http_listen(sb_http_server_t *srv, const char *host, int port);
int sb_http_port(const sb_http_server_t *srv);
/* sb_http_server_close stops accepting, lets in-flight requests finish (new requests on
 * kept-alive connections get "Connection: close"), closes idle connections, and calls cb when
 * every handle is closed.  After cb the server is freed. */
void sb_http_server_close(sb_http_server_t *srv, sb_http_close_cb cb, void *ud);
/* Count of requests handed to handlers that have not responded yet. */
size_t sb_http_inflight(const sb_http_server_t *srv);

/* Request accessors: views valid until the response is sent. */
const char *sb_http_method(const sb_http_req_t *req);   /* "GET" */
sb_str_t sb_http_path(const sb_http_req_t *req);        /* decoded path, no query */
sb_str_t sb_http_header(const sb_http_req_t *req, const char *name); /* case-insensitive; {0} */
/* sb_http_query copies the URL-decoded value of a query parameter into out (NUL-terminated);
 * returns its length, or -1 if absent, SB_ETOOBIG if it does not fit. */
int sb_http_query(const sb_http_req_t *req, const char *name, char *out, size_t cap);
sb_str_t sb_http_param(const sb_http_req_t *req, const char *name); /* path parameter */
sb_str_t sb_http_body(const sb_http_req_t *req);
const char *sb_http_request_id(const sb_http_req_t *req);
/* sb_http_peer writes "ip:port" of the client. */
void sb_http_peer(const sb_http_req_t *req, char *out, size_t cap);
/* Per-request user data, e.g. the authenticated principal. */
void sb_http_set_data(sb_http_req_t *req, void *data);
void *sb_http_get_data(const sb_http_req_t *req);
/* sb_http_on_abort: cb runs once if the client disconnects before the response. */
void sb_http_on_abort(sb_http_req_t *req, void (*cb)(sb_http_req_t *req, void *ud), void *ud);
/* The route pattern that matched (for metrics labels), e.g. "/api/v1/sandboxes/{id}". */
const char *sb_http_route_pattern(const sb_http_req_t *req);

/* Responding: exactly one of respond / respond_json / respond_error / stream_begin per
 * request.  Headers added before that go out with it. */
void sb_http_add_header(sb_http_req_t *req, const char *name, const char *value);
int sb_http_respond(sb_http_req_t *req, int status, const char *content_type, const void *body,
                    size_t len);
/* sb_http_respond_json serializes (and decrefs) obj. */
int sb_http_respond_json(sb_http_req_t *req, int status, json_t *obj);
int sb_http_respond_error(sb_http_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Streaming (chunked) responses: begin, any number of writes, end.  sb_http_stream_write
 * returns SB_EAGAIN when the client's queued output is over max_output_bytes: the data was
 * NOT taken; the caller should pause its source and write it again from the drain callback
 * (called once the queue is back under the cap).  This keeps a connection's output bounded
 * by max_output_bytes plus one write.  After the client went away they return SB_ECLOSED;
 * the handler still ends with sb_http_stream_end (or a respond call), which frees the
 * request.  Likewise a respond call on an aborted request returns SB_ECLOSED and frees it. */
int sb_http_stream_begin(sb_http_req_t *req, int status, const char *content_type);
int sb_http_stream_write(sb_http_req_t *req, const void *data, size_t len);
void sb_http_stream_on_drain(sb_http_req_t *req, void (*cb)(sb_http_req_t *req, void *ud), void *ud);
int sb_http_stream_end(sb_http_req_t *req);

/* Observing every response, for metrics: route pattern (or "unmatched"), status. */
typedef void (*sb_http_observer_t)(const char *route, const char *method, int status,
                                   uint64_t duration_us, void *ud);
void sb_http_set_observer(sb_http_server_t *srv, sb_http_observer_t fn, void *ud);

/* Upgrades (WebSocket, later): a route may take over the connection's socket.  The bytes
 * already read past the request head are passed along.  The server forgets the connection.
 * Only for a request llhttp saw as an upgrade (Connection: Upgrade + Upgrade:, or CONNECT);
 * else SB_EINVAL and the handler must still respond.  On 0, req is the server's until cb:
 * cb runs from the loop (never inside sb_http_upgrade) once earlier responses are flushed;
 * req and extra are valid only during cb.  sock was malloc'd, is not reading, and has
 * data == NULL: the callee owns it, and frees it with free() in its uv_close callback.  If
 * the client disconnects before that, cb never runs. */
typedef void (*sb_http_upgrade_cb)(uv_tcp_t *sock, const sb_http_req_t *req, const void *extra,
                                   size_t extra_len, void *ud);
int sb_http_upgrade(sb_http_req_t *req, sb_http_upgrade_cb cb, void *ud);

#endif
