/*
 * test_http.c: the gateway's HTTP/1.1 server against real sockets.  Each server runs on its
 * own loop in its own thread; the test thread is the client (raw sockets for byte-exact cases,
 * curl for a real client).  Every wait is on an event (bytes, a close, a pipe, a child's exit)
 * with a deadline; the only timed pauses pace a deliberately slow client.  Every server ends
 * with sb_http_server_close and uv_loop_close() == 0.
 */
#include "gateway/http/http_internal.h"

#include "base/err.h"
#include "base/log.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* the server side                                                                           */

typedef struct {
    uv_loop_t loop;
    uv_async_t stop;
    sb_http_server_t *srv;
    pthread_t th;
    int port;
    atomic_int closed;
    atomic_int aborted;
    atomic_int eagain;
    atomic_size_t high_water;
    atomic_size_t inflight_after_abort;
    int event_pipe[2]; /* the server thread writes one byte per notable event */
} tsrv_t;

static void
tsrv_event(tsrv_t *t, char ev)
{
    ssize_t w = write(t->event_pipe[1], &ev, 1);
    (void)w;
}

static void
h_health(sb_http_req_t *req, void *ud)
{
    (void)ud;
    sb_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void
h_echo(sb_http_req_t *req, void *ud)
{
    (void)ud;
    sb_str_t b = sb_http_body(req);
    sb_http_respond(req, 200, "text/plain", b.ptr, b.len);
}

static void
h_item(sb_http_req_t *req, void *ud)
{
    (void)ud;
    sb_str_t id = sb_http_param(req, "id");
    json_t *o = json_object();
    json_object_set_new(o, "id", json_stringn(id.ptr, id.len));
    json_object_set_new(o, "route", json_string(sb_http_route_pattern(req)));
    sb_http_respond_json(req, 200, o);
}

static void
h_files(sb_http_req_t *req, void *ud)
{
    (void)ud;
    sb_str_t p = sb_http_path(req);
    sb_http_respond(req, 200, "text/plain", p.ptr, p.len);
}

static void
h_query(sb_http_req_t *req, void *ud)
{
    (void)ud;
    char out[64];
    int n = sb_http_query(req, "q", out, sizeof(out));
    if (n < 0)
        sb_http_respond_error(req, 400, "bad_request", "no q (%d)", n);
    else
        sb_http_respond(req, 200, "text/plain", out, (size_t)n);
}

typedef struct {
    uv_timer_t timer;
    sb_http_req_t *req;
} slow_t;

static void
slow_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
slow_fire(uv_timer_t *t)
{
    slow_t *s = t->data;
    sb_http_respond(s->req, 200, "text/plain", "slow", 4);
    uv_close((uv_handle_t *)&s->timer, slow_closed);
}

static void
h_slow(sb_http_req_t *req, void *ud)
{
    tsrv_t *t = ud;
    slow_t *s = calloc(1, sizeof(*s));
    s->req = req;
    uv_timer_init(&t->loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, slow_fire, 60, 0);
    tsrv_event(t, 's');
}

/* /stream?n=BYTES: a chunked response that honours SB_EAGAIN and the drain callback. */
typedef struct {
    tsrv_t *t;
    size_t left;
    char chunk[64 * 1024];
} stream_t;

static void
stream_more(sb_http_req_t *req, void *ud)
{
    stream_t *s = ud;
    while (s->left > 0) {
        size_t n = s->left < sizeof(s->chunk) ? s->left : sizeof(s->chunk);
        int rc = sb_http_stream_write(req, s->chunk, n);
        size_t hw = sb__http_out_high_water(s->t->srv);
        if (hw > atomic_load(&s->t->high_water))
            atomic_store(&s->t->high_water, hw);
        if (rc == SB_EAGAIN) {
            if (atomic_fetch_add(&s->t->eagain, 1) == 0)
                tsrv_event(s->t, 'e');
            return; /* the drain callback calls us again */
        }
        if (rc != 0) {
            sb_http_stream_end(req);
            free(s);
            return;
        }
        s->left -= n;
    }
    sb_http_stream_end(req);
    free(s);
}

static void
h_stream(sb_http_req_t *req, void *ud)
{
    char nb[32];
    stream_t *s = calloc(1, sizeof(*s));
    s->t = ud;
    s->left = sb_http_query(req, "n", nb, sizeof(nb)) > 0 ? strtoul(nb, NULL, 10) : 1000;
    for (size_t i = 0; i < sizeof(s->chunk); i++)
        s->chunk[i] = (char)('a' + i % 26);
    sb_http_stream_on_drain(req, stream_more, s);
    sb_http_stream_begin(req, 200, "application/octet-stream");
    stream_more(req, s);
}

static void
abort_cb(sb_http_req_t *req, void *ud)
{
    tsrv_t *t = ud;
    atomic_fetch_add(&t->aborted, 1);
    /* The request stays valid until we respond; the response goes nowhere. */
    int rc = sb_http_respond(req, 200, "text/plain", "late", 4);
    atomic_store(&t->inflight_after_abort, sb_http_inflight(t->srv) + (rc == SB_ECLOSED ? 0 : 1000));
    tsrv_event(t, 'a');
}

static void
h_hang(sb_http_req_t *req, void *ud)
{
    tsrv_t *t = ud;
    sb_http_on_abort(req, abort_cb, t);
    tsrv_event(t, 'h');
}

static void
upgraded_closed(uv_handle_t *h)
{
    free(h);
}

static void
upgrade_cb(uv_tcp_t *sock, const sb_http_req_t *req, const void *extra, size_t extra_len,
           void *ud)
{
    (void)ud;
    char out[256];
    int n = snprintf(out, sizeof(out), "UPGRADED %s %.*s|", sb_http_method(req), (int)extra_len,
                     (const char *)extra);
    uv_buf_t b = uv_buf_init(out, (unsigned)n);
    CHECK(uv_try_write((uv_stream_t *)sock, &b, 1) == n);
    uv_close((uv_handle_t *)sock, upgraded_closed);
}

static void
h_upgrade(sb_http_req_t *req, void *ud)
{
    if (sb_http_upgrade(req, upgrade_cb, ud) != 0)
        sb_http_respond_error(req, 400, "bad_request", "not an upgrade");
}

static void
tsrv_on_closed(sb_http_server_t *srv, void *ud)
{
    tsrv_t *t = ud;
    (void)srv;
    atomic_store(&t->closed, 1);
}

static void
tsrv_on_stop(uv_async_t *a)
{
    tsrv_t *t = a->data;
    sb_http_server_close(t->srv, tsrv_on_closed, t);
    uv_close((uv_handle_t *)&t->stop, NULL);
}

static void *
tsrv_main(void *arg)
{
    tsrv_t *t = arg;
    uv_run(&t->loop, UV_RUN_DEFAULT);
    return NULL;
}

static tsrv_t *
tsrv_start(const sb_http_opts_t *opts)
{
    tsrv_t *t = calloc(1, sizeof(*t));
    CHECK(uv_loop_init(&t->loop) == 0);
    CHECK(pipe2(t->event_pipe, O_CLOEXEC) == 0);
    t->srv = sb_http_server_alloc(&t->loop, opts);
    CHECK(sb_http_route(t->srv, "GET", "/health", h_health, t, 0) == 0);
    CHECK(sb_http_route(t->srv, "POST", "/echo", h_echo, t, 0) == 0);
    CHECK(sb_http_route(t->srv, "POST", "/big", h_echo, t, 1 << 20) == 0);
    CHECK(sb_http_route(t->srv, "GET", "/items/{id}", h_item, t, 0) == 0);
    CHECK(sb_http_route(t->srv, "DELETE", "/items/{id}", h_item, t, 0) == 0);
    CHECK(sb_http_route(t->srv, "GET", "/files/*", h_files, t, 0) == 0);
    CHECK(sb_http_route(t->srv, "GET", "/query", h_query, t, 0) == 0);
    CHECK(sb_http_route(t->srv, "GET", "/slow", h_slow, t, 0) == 0);
    CHECK(sb_http_route(t->srv, "GET", "/stream", h_stream, t, 0) == 0);
    CHECK(sb_http_route(t->srv, "GET", "/hang", h_hang, t, 0) == 0);
    CHECK(sb_http_route(t->srv, "GET", "/ws", h_upgrade, t, 0) == 0);
    CHECK(sb_http_route(t->srv, "GET", "/bad/{x", h_health, t, 0) == SB_EINVAL);
    CHECK(sb_http_route(t->srv, "get", "/x", h_health, t, 0) == SB_EINVAL);
    CHECK(sb_http_listen(t->srv, "127.0.0.1", 0) == 0);
    t->port = sb_http_port(t->srv);
    CHECK(t->port > 0);
    CHECK(uv_async_init(&t->loop, &t->stop, tsrv_on_stop) == 0);
    t->stop.data = t;
    CHECK(pthread_create(&t->th, NULL, tsrv_main, t) == 0);
    return t;
}

static void
tsrv_stop(tsrv_t *t)
{
    uv_async_send(&t->stop);
    CHECK(pthread_join(t->th, NULL) == 0);
    CHECK(atomic_load(&t->closed) == 1);
    CHECK_EQ(uv_loop_close(&t->loop), 0);
    close(t->event_pipe[0]);
    close(t->event_pipe[1]);
    free(t);
}

static long long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* tsrv_wait_event waits for event byte ev from the server thread. */
static void
tsrv_wait_event(tsrv_t *t, char ev, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        long long left = end - now_ms();
        CHECK(left > 0);
        struct pollfd pf = {t->event_pipe[0], POLLIN, 0};
        if (poll(&pf, 1, (int)left) <= 0)
            continue;
        char c;
        if (read(t->event_pipe[0], &c, 1) == 1 && c == ev)
            return;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* the client side                                                                           */

typedef struct {
    int fd;
    char buf[1 << 16];
    size_t len;
} cl_t;

typedef struct {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
} resp_t;

static void
cl_open(cl_t *c, int port)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(c->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    c->len = 0;
}

static void
cl_close(cl_t *c)
{
    close(c->fd);
    c->fd = -1;
}

static void
cl_send(cl_t *c, const char *data, size_t len)
{
    while (len) {
        ssize_t w = send(c->fd, data, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        CHECK(w > 0);
        data += w;
        len -= (size_t)w;
    }
}

static void
cl_sends(cl_t *c, const char *s)
{
    cl_send(c, s, strlen(s));
}

/* cl_fill reads more bytes; 0 on EOF/reset, -1 on deadline. */
static int
cl_fill(cl_t *c, long long end)
{
    if (c->len == sizeof(c->buf))
        return -2;
    long long left = end - now_ms();
    if (left <= 0)
        return -1;
    struct pollfd pf = {c->fd, POLLIN, 0};
    int pr = poll(&pf, 1, (int)left);
    if (pr == 0)
        return -1;
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (r <= 0)
        return 0;
    c->len += (size_t)r;
    return (int)r;
}

static void
cl_consume(cl_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* cl_header finds a response header's value in r->head (case-insensitive); NULL if absent. */
static const char *
cl_header(const resp_t *r, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p && p[2] != '\0') {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vl = e ? (size_t)(e - v) : strlen(v);
            if (vl >= cap)
                vl = cap - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

static int cl_no_body; /* the next response answers HEAD */

/* cl_response reads one response (Content-Length, chunked, or until close).  Returns the
 * status, or -1 if the connection closed/timed out first. */
static int
cl_response(cl_t *c, resp_t *r, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    memset(r, 0, sizeof(*r));
    char *eoh;
    while (!(eoh = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (cl_fill(c, end) <= 0)
            return -1;
    size_t hl = (size_t)(eoh - c->buf) + 4;
    CHECK(hl < sizeof(r->head));
    memcpy(r->head, c->buf, hl);
    r->head[hl] = '\0';
    cl_consume(c, hl);
    CHECK(sscanf(r->head, "HTTP/1.1 %d", &r->status) == 1);
    char v[64];
    size_t cap = 1 << 20, len = 0;
    r->body = malloc(cap);
    if (r->status == 204 || r->status == 304 || r->status / 100 == 1) {
        /* no body */
    } else if (cl_header(r, "Content-Length", v, sizeof(v))) {
        size_t want = cl_no_body ? 0 : strtoul(v, NULL, 10);
        if (want > cap)
            r->body = realloc(r->body, cap = want);
        while (len < want) {
            if (c->len == 0 && cl_fill(c, end) <= 0)
                return -1;
            size_t n = want - len < c->len ? want - len : c->len;
            memcpy(r->body + len, c->buf, n);
            len += n;
            cl_consume(c, n);
        }
    } else if (cl_header(r, "Transfer-Encoding", v, sizeof(v))) {
        for (;;) {
            char *nl;
            while (!(nl = memmem(c->buf, c->len, "\r\n", 2)))
                if (cl_fill(c, end) <= 0)
                    return -1;
            size_t n = strtoul(c->buf, NULL, 16);
            cl_consume(c, (size_t)(nl - c->buf) + 2);
            if (len + n > cap) {
                while (len + n > cap)
                    cap *= 2;
                r->body = realloc(r->body, cap);
            }
            for (size_t got = 0; got < n;) {
                if (c->len == 0 && cl_fill(c, end) <= 0)
                    return -1;
                size_t k = n - got < c->len ? n - got : c->len;
                memcpy(r->body + len, c->buf, k);
                len += k;
                got += k;
                cl_consume(c, k);
            }
            while (c->len < 2)
                if (cl_fill(c, end) <= 0)
                    return -1;
            CHECK(c->buf[0] == '\r' && c->buf[1] == '\n');
            cl_consume(c, 2);
            if (n == 0)
                break;
        }
    }
    r->body_len = len;
    r->body = realloc(r->body, len + 1);
    r->body[len] = '\0';
    return r->status;
}

static void
resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* cl_wait_closed: 1 if the server closes the connection before the deadline (bytes that
 * arrive first are kept in c->buf). */
static int
cl_wait_closed(cl_t *c, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        int r = cl_fill(c, end);
        if (r == 0)
            return 1;
        if (r == -1)
            return 0;
        if (r == -2)
            c->len = 0;
    }
}

static int
roundtrip(int port, const char *req, resp_t *r)
{
    cl_t c;
    cl_open(&c, port);
    cl_sends(&c, req);
    int st = cl_response(&c, r, 5000);
    cl_close(&c);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* tests                                                                                     */

static void
test_keepalive_and_routes(tsrv_t *t)
{
    cl_t c;
    resp_t r;
    char v[128];
    cl_open(&c, t->port);
    cl_sends(&c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK(strcmp(r.body, "{\"status\":\"ok\"}") == 0);
    CHECK(cl_header(&r, "Content-Length", v, sizeof(v)) && atoi(v) == (int)r.body_len);
    CHECK(cl_header(&r, "Content-Type", v, sizeof(v)) && strcmp(v, "application/json") == 0);
    CHECK(!cl_header(&r, "Connection", v, sizeof(v)));
    resp_free(&r);
    /* Same socket, second request: keep-alive reuse. */
    cl_sends(&c, "GET /items/abc%20d HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK(strstr(r.body, "\"id\":\"abc d\""));
    CHECK(strstr(r.body, "\"route\":\"/items/{id}\""));
    resp_free(&r);
    cl_sends(&c, "GET /files/a/b/c.txt?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK(strcmp(r.body, "/files/a/b/c.txt") == 0);
    resp_free(&r);
    cl_sends(&c, "GET /query?a=1&q=a%20b+c&z HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK(strcmp(r.body, "a b c") == 0);
    resp_free(&r);
    /* HEAD through the GET route: the length, no body. */
    cl_sends(&c, "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n");
    cl_no_body = 1;
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    cl_no_body = 0;
    CHECK(cl_header(&r, "Content-Length", v, sizeof(v)) && atoi(v) == 15);
    resp_free(&r);
    cl_sends(&c, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK(cl_header(&r, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0);
    resp_free(&r);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&c);
    sb_test_ok("keep-alive reuse, params, wildcard, query, HEAD, Connection: close");
}

static void
test_errors(tsrv_t *t)
{
    resp_t r;
    char v[128];
    CHECK_EQ(roundtrip(t->port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
    CHECK(strstr(r.body, "{\"error\":{\"code\":\"not_found\",\"message\":"));
    resp_free(&r);
    CHECK_EQ(roundtrip(t->port, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &r),
             405);
    CHECK(strstr(r.body, "\"code\":\"method_not_allowed\""));
    CHECK(cl_header(&r, "Allow", v, sizeof(v)) && strcmp(v, "GET, HEAD") == 0);
    resp_free(&r);
    CHECK_EQ(roundtrip(t->port, "PUT /items/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", &r),
             405);
    CHECK(cl_header(&r, "Allow", v, sizeof(v)) && strcmp(v, "GET, HEAD, DELETE") == 0);
    resp_free(&r);

    /* A 404 keeps the connection (its body is read and dropped). */
    cl_t c;
    cl_open(&c, t->port);
    cl_sends(&c, "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /health "
                 "HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 404);
    resp_free(&r);
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    resp_free(&r);
    cl_close(&c);

    /* Malformed: 400 and the connection closes. */
    cl_open(&c, t->port);
    cl_sends(&c, "GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 400);
    CHECK(strstr(r.body, "\"code\":\"bad_request\""));
    CHECK(cl_header(&r, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0);
    resp_free(&r);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&c);
    cl_open(&c, t->port);
    cl_sends(&c, "\x01\x02garbage\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 400);
    resp_free(&r);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&c);
    /* Smuggling shape: both Content-Length and chunked. */
    CHECK_EQ(roundtrip(t->port,
                       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: "
                       "chunked\r\n\r\n0\r\n\r\n",
                       &r),
             400);
    resp_free(&r);
    CHECK_EQ(roundtrip(t->port, "GET /items/%zz HTTP/1.1\r\nHost: x\r\n\r\n", &r), 400);
    resp_free(&r);
    sb_test_ok("404, 405 with Allow, malformed requests get 400 and close");
}

static void
test_limits(tsrv_t *t)
{
    resp_t r;
    cl_t c;
    /* Header bytes over max_header_bytes (8 KiB here). */
    char *big = malloc(20000);
    int n = snprintf(big, 20000, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 12000);
    strcpy(big + n + 12000, "\r\n\r\n");
    cl_open(&c, t->port);
    cl_sends(&c, big);
    CHECK_EQ(cl_response(&c, &r, 5000), 431);
    CHECK(strstr(r.body, "\"code\":\"headers_too_large\""));
    resp_free(&r);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&c);
    /* Header count over max_headers (20 here). */
    n = snprintf(big, 20000, "GET /health HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 30; i++)
        n += snprintf(big + n, 20000 - (size_t)n, "X-H%d: v\r\n", i);
    snprintf(big + n, 20000 - (size_t)n, "\r\n");
    cl_open(&c, t->port);
    cl_sends(&c, big);
    CHECK_EQ(cl_response(&c, &r, 5000), 431);
    resp_free(&r);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&c);
    free(big);
    /* Content-Length over the body cap (64 KiB here): 413 before any body is read. */
    cl_open(&c, t->port);
    cl_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 413);
    CHECK(strstr(r.body, "\"code\":\"payload_too_large\""));
    resp_free(&r);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&c);
    /* Chunked body growing past the cap. */
    cl_open(&c, t->port);
    cl_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[8200];
    memset(chunk, 'z', sizeof(chunk));
    int st = -1;
    for (int i = 0; i < 20 && st < 0; i++) {
        char hdr[32];
        snprintf(hdr, sizeof(hdr), "2000\r\n");
        cl_sends(&c, hdr);
        cl_send(&c, chunk, 0x2000);
        cl_sends(&c, "\r\n");
    }
    CHECK_EQ(cl_response(&c, &r, 5000), 413);
    resp_free(&r);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&c);
    /* A route's own max_body raises the cap. */
    char *req = malloc(300000);
    n = snprintf(req, 300000, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n");
    memset(req + n, 'q', 200000);
    req[n + 200000] = '\0';
    cl_open(&c, t->port);
    cl_sends(&c, req);
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK_EQ(r.body_len, 200000);
    resp_free(&r);
    cl_close(&c);
    free(req);
    sb_test_ok("431 header bytes, 431 header count, 413 length and chunked, route max_body");
}

static void
test_chunked_and_expect(tsrv_t *t)
{
    resp_t r;
    cl_t c;
    cl_open(&c, t->port);
    cl_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK(strcmp(r.body, "hello world") == 0);
    resp_free(&r);
    /* Expect: 100-continue: the interim response comes before we send the body. */
    cl_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    long long end = now_ms() + 5000;
    while (!memmem(c.buf, c.len, "\r\n\r\n", 4))
        CHECK(cl_fill(&c, end) > 0);
    CHECK(c.len == 25 && memcmp(c.buf, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
    cl_consume(&c, 25);
    cl_sends(&c, "ping");
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK(strcmp(r.body, "ping") == 0);
    resp_free(&r);
    cl_close(&c);
    /* Expect with a body over the cap: 413 at once, no 100. */
    cl_open(&c, t->port);
    cl_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\nExpect: 100-continue\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 413);
    resp_free(&r);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&c);
    sb_test_ok("chunked body with extensions and trailers; Expect: 100-continue; 413 on Expect");
}

static void
test_pipelining(tsrv_t *t)
{
    resp_t r;
    cl_t c;
    cl_open(&c, t->port);
    /* The first answers late (timer), the others at once: order must hold anyway. */
    cl_sends(&c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                 "GET /items/7 HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK(strcmp(r.body, "slow") == 0);
    resp_free(&r);
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK(strcmp(r.body, "abc") == 0);
    resp_free(&r);
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    CHECK(strstr(r.body, "\"id\":\"7\""));
    resp_free(&r);
    /* More than max_pipelined (4 here) in one write, with bodies in between. */
    char req[8192];
    size_t n = 0;
    for (int i = 0; i < 12; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n,
                              "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n%02d", i);
    cl_send(&c, req, n);
    for (int i = 0; i < 12; i++) {
        char want[3];
        snprintf(want, sizeof(want), "%02d", i);
        CHECK_EQ(cl_response(&c, &r, 5000), 200);
        CHECK(strcmp(r.body, want) == 0);
        resp_free(&r);
    }
    cl_close(&c);
    sb_test_ok("pipelining: responses in request order, beyond max_pipelined");
}

static void
test_request_id(tsrv_t *t)
{
    resp_t r;
    char v[128];
    CHECK_EQ(roundtrip(t->port, "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc.DEF_12-3\r\n\r\n", &r),
             200);
    CHECK(cl_header(&r, "X-Request-Id", v, sizeof(v)) && strcmp(v, "abc.DEF_12-3") == 0);
    resp_free(&r);
    CHECK_EQ(roundtrip(t->port, "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: bad id!\r\n\r\n", &r),
             200);
    CHECK(cl_header(&r, "X-Request-Id", v, sizeof(v)) && strlen(v) == 16);
    for (int i = 0; i < 16; i++)
        CHECK(strchr("0123456789abcdef", v[i]));
    resp_free(&r);
    char req[256];
    snprintf(req, sizeof(req), "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: %065d\r\n\r\n", 1);
    CHECK_EQ(roundtrip(t->port, req, &r), 200);
    CHECK(cl_header(&r, "X-Request-Id", v, sizeof(v)) && strlen(v) == 16);
    resp_free(&r);
    CHECK_EQ(roundtrip(t->port, "GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-Id: e1\r\n\r\n", &r), 404);
    CHECK(cl_header(&r, "X-Request-Id", v, sizeof(v)) && strcmp(v, "e1") == 0);
    resp_free(&r);
    sb_test_ok("request id taken when sane, generated otherwise, on errors too");
}

static void
test_timeouts(tsrv_t *t)
{
    cl_t c;
    resp_t r;
    /* Slowloris: a header line every 50 ms never finishes the head; dropped at the header
     * deadline (300 ms) although bytes keep coming. */
    long long t0 = now_ms();
    cl_open(&c, t->port);
    cl_sends(&c, "GET /health HTTP/1.1\r\nHost: x\r\n");
    int closed = 0;
    for (int i = 0; i < 60 && !closed; i++) {
        struct pollfd pf = {c.fd, POLLIN, 0};
        if (poll(&pf, 1, 50) > 0) { /* paces the slow client; wakes early on the server's answer */
            closed = cl_wait_closed(&c, 3000);
            break;
        }
        if (send(c.fd, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL) < 0) {
            closed = 1;
            break;
        }
    }
    long long took = now_ms() - t0;
    CHECK(closed);
    CHECK(took >= 250 && took < 2000);
    CHECK(c.len > 0 && strstr(c.buf, "HTTP/1.1 408 ") == c.buf);
    CHECK(memmem(c.buf, c.len, "\"code\":\"timeout\"", 16));
    cl_close(&c);
    /* A connection that sends nothing is dropped at the header deadline too. */
    t0 = now_ms();
    cl_open(&c, t->port);
    CHECK(cl_wait_closed(&c, 3000));
    took = now_ms() - t0;
    CHECK(took >= 250 && took < 2000);
    cl_close(&c);
    /* Idle keep-alive connections close at idle_timeout (400 ms). */
    cl_open(&c, t->port);
    cl_sends(&c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(cl_response(&c, &r, 5000), 200);
    resp_free(&r);
    t0 = now_ms();
    CHECK(cl_wait_closed(&c, 3000));
    took = now_ms() - t0;
    CHECK(took >= 300 && took < 2000);
    cl_close(&c);
    /* Body that stops arriving: 408 at body_timeout. */
    cl_open(&c, t->port);
    cl_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    CHECK_EQ(cl_response(&c, &r, 3000), 408);
    resp_free(&r);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&c);
    sb_test_ok("slowloris dropped at header timeout; silent, idle and stalled-body connections closed");
}

static void
test_backpressure(tsrv_t *t)
{
    cl_t c;
    resp_t r;
    const size_t total = 48u << 20;
    int small = 16 * 1024;
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(connect(c.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    c.len = 0;
    char req[128];
    snprintf(req, sizeof(req), "GET /stream?n=%zu HTTP/1.1\r\nHost: x\r\n\r\n", total);
    cl_sends(&c, req);
    /* Do not read until the server reports it had to hold back. */
    tsrv_wait_event(t, 'e', 5000);
    size_t cap = 256 * 1024;
    size_t hw = atomic_load(&t->high_water);
    CHECK(hw > 0 && hw <= cap + 64 * 1024 + 64);
    /* Now read everything: the drain callback must have resumed the stream. */
    CHECK_EQ(cl_response(&c, &r, 20000), 200);
    CHECK_EQ(r.body_len, total);
    CHECK(r.body[0] == 'a' && r.body[total - 1] == (char)('a' + (total - 1) % (64 * 1024) % 26));
    resp_free(&r);
    CHECK(atomic_load(&t->high_water) <= cap + 64 * 1024 + 64);
    cl_close(&c);
    sb_test_ok("backpressure: unread stream output stays under max_output_bytes, resumes on drain");
}

static void
test_abort(tsrv_t *t)
{
    cl_t c;
    cl_open(&c, t->port);
    cl_sends(&c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
    tsrv_wait_event(t, 'h', 5000);
    cl_close(&c);
    tsrv_wait_event(t, 'a', 5000);
    CHECK_EQ(atomic_load(&t->aborted), 1);
    CHECK_EQ(atomic_load(&t->inflight_after_abort), 0);
    sb_test_ok("client gone: abort callback, late response discarded, in-flight back to 0");
}

static void
test_upgrade(tsrv_t *t)
{
    cl_t c;
    cl_open(&c, t->port);
    cl_sends(&c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nEXTRA");
    long long end = now_ms() + 5000;
    while (!memchr(c.buf, '|', c.len))
        CHECK(cl_fill(&c, end) > 0);
    CHECK(c.len == strlen("UPGRADED GET EXTRA|") && memcmp(c.buf, "UPGRADED GET EXTRA|", c.len) == 0);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&c);
    /* A plain request to the upgrade route cannot upgrade. */
    resp_t r;
    CHECK_EQ(roundtrip(t->port, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", &r), 400);
    resp_free(&r);
    sb_test_ok("upgrade hands over the socket with the bytes read past the head");
}

/* run_curl runs curl with args and returns its stdout (malloc'd) or NULL. */
static char *
run_curl(const char *const *args)
{
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        execvp("curl", (char *const *)args);
        _exit(127);
    }
    close(p[1]);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    long long end = now_ms() + 20000;
    for (;;) {
        long long left = end - now_ms();
        CHECK(left > 0);
        struct pollfd pf = {p[0], POLLIN, 0};
        if (poll(&pf, 1, (int)left) <= 0)
            continue;
        ssize_t r = read(p[0], out + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
        CHECK(len < cap - 1);
    }
    out[len] = '\0';
    close(p[0]);
    int st = sb_test_wait_exit(pid, 20000);
    CHECK(st >= 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static void
test_curl(tsrv_t *t)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", t->port);
    const char *get[] = {"curl", "-sS", "-H", "X-Request-Id: curl-1", "-D", "-", url, NULL};
    char *out = run_curl(get);
    CHECK(out);
    CHECK(strstr(out, "HTTP/1.1 200 OK"));
    CHECK(strstr(out, "X-Request-Id: curl-1"));
    CHECK(strstr(out, "{\"status\":\"ok\"}"));
    free(out);
    /* Chunked upload, with curl's own Expect: 100-continue for a large body. */
    char path[] = "/tmp/sb_http_curl_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    char block[4096];
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] = (char)('A' + i % 26);
    for (int i = 0; i < 10; i++)
        CHECK(write(fd, block, sizeof(block)) == (ssize_t)sizeof(block));
    close(fd);
    char data[64];
    snprintf(data, sizeof(data), "@%s", path);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", t->port);
    const char *post[] = {"curl", "-sS", "-H", "Transfer-Encoding: chunked", "--data-binary",
                          data, url, NULL};
    out = run_curl(post);
    unlink(path);
    CHECK(out);
    CHECK_EQ(strlen(out), 40960);
    CHECK(memcmp(out, block, sizeof(block)) == 0);
    free(out);
    sb_test_ok("curl: GET and a chunked upload");
}

static void
test_cors(void)
{
    sb_http_opts_t o = {.cors_origins = "https://a.example, https://b.example", .access_log = 1};
    char logpath[] = "/tmp/sb_http_log_XXXXXX";
    int logfd = mkstemp(logpath);
    CHECK(logfd >= 0);
    sb_log_set_fd(logfd);
    tsrv_t *t = tsrv_start(&o);
    resp_t r;
    char v[256];
    CHECK_EQ(roundtrip(t->port,
                       "OPTIONS /items/9 HTTP/1.1\r\nHost: x\r\nOrigin: https://b.example\r\n"
                       "Access-Control-Request-Method: DELETE\r\n"
                       "Access-Control-Request-Headers: content-type, x-api-key\r\n\r\n",
                       &r),
             204);
    CHECK(cl_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)) &&
          strcmp(v, "https://b.example") == 0);
    CHECK(cl_header(&r, "Access-Control-Allow-Methods", v, sizeof(v)) &&
          strcmp(v, "GET, HEAD, DELETE, OPTIONS") == 0);
    CHECK(cl_header(&r, "Access-Control-Allow-Headers", v, sizeof(v)) &&
          strcmp(v, "content-type, x-api-key") == 0);
    CHECK(!cl_header(&r, "Content-Length", v, sizeof(v)));
    resp_free(&r);
    CHECK_EQ(roundtrip(t->port, "GET /health HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n\r\n", &r),
             200);
    CHECK(cl_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)) &&
          strcmp(v, "https://a.example") == 0);
    CHECK(cl_header(&r, "Vary", v, sizeof(v)) && strcmp(v, "Origin") == 0);
    resp_free(&r);
    CHECK_EQ(roundtrip(t->port, "GET /health HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n", &r),
             200);
    CHECK(!cl_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)));
    resp_free(&r);
    CHECK_EQ(roundtrip(t->port,
                       "OPTIONS /nope HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n"
                       "Access-Control-Request-Method: GET\r\n\r\n",
                       &r),
             404);
    resp_free(&r);
    /* A plain OPTIONS (no preflight) lists the methods. */
    CHECK_EQ(roundtrip(t->port, "OPTIONS /health HTTP/1.1\r\nHost: x\r\n\r\n", &r), 204);
    CHECK(cl_header(&r, "Allow", v, sizeof(v)) && strcmp(v, "GET, HEAD, OPTIONS") == 0);
    resp_free(&r);
    CHECK_EQ(roundtrip(t->port, "GET /items/%41?x HTTP/1.1\r\nHost: x\r\nX-Request-Id: log-1\r\n\r\n", &r),
             200);
    resp_free(&r);
    /* The access line is written before the response leaves, so it is there already. */
    CHECK(sb_test_wait_file_contains(logpath, "SB-HTTP-ACCESS", 3000));
    CHECK(sb_test_wait_file_contains(logpath, "GET /items/%41 200 bytes=", 3000));
    CHECK(sb_test_wait_file_contains(logpath, "rid=log-1 peer=127.0.0.1:", 3000));
    tsrv_stop(t);
    sb_log_set_fd(2);
    close(logfd);
    unlink(logpath);
    sb_test_ok("CORS: preflight 204 with methods and headers, origin allow-list, Vary; access log");
}

static void
test_graceful_close(void)
{
    tsrv_t *t = tsrv_start(NULL);
    cl_t busy, idle, partial;
    resp_t r;
    char v[64];
    cl_open(&partial, t->port);
    cl_sends(&partial, "GET /health HTTP/1.1\r\nHost:");
    cl_open(&idle, t->port);
    cl_sends(&idle, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(cl_response(&idle, &r, 5000), 200);
    resp_free(&r);
    cl_open(&busy, t->port);
    cl_sends(&busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    tsrv_wait_event(t, 's', 5000);
    uv_async_send(&t->stop); /* close while /slow is in flight */
    CHECK(cl_wait_closed(&idle, 3000));
    CHECK(cl_wait_closed(&partial, 3000));
    CHECK(partial.len == 0);
    cl_close(&partial);
    CHECK_EQ(cl_response(&busy, &r, 5000), 200);
    CHECK(strcmp(r.body, "slow") == 0);
    CHECK(cl_header(&r, "Connection", v, sizeof(v)) && strcasecmp(v, "close") == 0);
    resp_free(&r);
    CHECK(cl_wait_closed(&busy, 3000));
    cl_close(&busy);
    cl_close(&idle);
    CHECK(pthread_join(t->th, NULL) == 0);
    CHECK(atomic_load(&t->closed) == 1);
    CHECK_EQ(uv_loop_close(&t->loop), 0);
    close(t->event_pipe[0]);
    close(t->event_pipe[1]);
    free(t);
    sb_test_ok("graceful close: idle closed, in-flight finished with Connection: close, cb, loop closes");
}

static void
test_max_connections(void)
{
    sb_http_opts_t o = {.max_connections = 2};
    tsrv_t *t = tsrv_start(&o);
    cl_t a, b, c;
    resp_t r;
    cl_open(&a, t->port);
    cl_open(&b, t->port);
    cl_sends(&a, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(cl_response(&a, &r, 5000), 200);
    resp_free(&r);
    cl_sends(&b, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(cl_response(&b, &r, 5000), 200);
    resp_free(&r);
    cl_open(&c, t->port);
    CHECK_EQ(cl_response(&c, &r, 5000), 503);
    resp_free(&r);
    CHECK(cl_wait_closed(&c, 3000));
    cl_close(&a);
    cl_close(&b);
    cl_close(&c);
    tsrv_stop(t);
    sb_test_ok("max_connections: 503 and close beyond the limit");
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    sb_http_opts_t o = {
        .max_header_bytes = 8192,
        .max_headers = 20,
        .max_body_bytes = 64 * 1024,
        .header_timeout_ms = 300,
        .body_timeout_ms = 300,
        .idle_timeout_ms = 400,
        .max_output_bytes = 256 * 1024,
        .max_pipelined = 4,
        .access_log = -1,
    };
    tsrv_t *t = tsrv_start(&o);
    test_keepalive_and_routes(t);
    test_errors(t);
    test_limits(t);
    test_chunked_and_expect(t);
    test_pipelining(t);
    test_request_id(t);
    test_timeouts(t);
    test_backpressure(t);
    test_abort(t);
    test_upgrade(t);
    test_curl(t);
    tsrv_stop(t);
    test_cors();
    test_graceful_close();
    test_max_connections();
    return sb_test_done();
}
