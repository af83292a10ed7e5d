/*
 * http_load.c: an HTTP/1.1 load driver on libuv, for the numbers in docs/performance.md.
 *
 * Two ways to offer load:
 *   closed loop  (-c N, no -r): N keep-alive connections, each sends its next request as soon
 *                as the previous answer is in.  Latency is measured from the send.
 *   open loop    (-r RPS): requests are *scheduled* at a fixed arrival rate, whether or not
 *                earlier ones have come back, and handed to the first idle connection (at most
 *                -c of them).  Latency is measured from the scheduled time, so a request that
 *                waited for a free connection counts its wait: coordinated omission cannot hide
 *                queueing.  The time from the actual send is reported as "service" latency.
 *                Sends are woken by a timerfd armed for the next scheduled time (microsecond
 *                resolution, not libuv's 1 ms timers), so the timer adds tens of microseconds,
 *                not up to a millisecond, to an open-loop latency.
 * The run lasts -d seconds or -n requests.  A request is a template (method, path, body, the
 * shared -H headers); several weighted --req templates make a mixed scenario, and a template
 * may have a second step (--then) run on the same connection with {id} replaced by the "id"
 * field of the first step's JSON answer (create then delete).
 *
 * Prints its parameters, then p50/p90/p99/p99.9/max latency, throughput, status-code counts and
 * errors, overall and per template; --json FILE writes the same as JSON.  Exit status: 0, or 1
 * with --fail-on-error when any request failed (transport error, non-2xx, --expect-body
 * mismatch) or none completed; 2 on bad usage or when the server cannot be reached.
 *
 * Invariants: each worker thread owns its loop, its connections and its samples; main only
 * reads them after every worker joined.  A connection carries at most one request at a time
 * (no pipelining).  Every handle is closed before the loop ends, and uv_loop_close must give 0.
 */
#include <llhttp.h>
#include <uv.h>

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_TMPL 16
#define MAX_STEPS 2
#define MAX_HDRS 32
#define MAX_THREADS 16
#define READ_BUF 65536
#define BODY_KEEP 65536 /* bytes of a response body kept for --expect-body and {id} */

/* ---- parameters (read-only once the workers start) ------------------------------------- */

typedef struct {
    char *method, *path, *body;
    size_t body_len;
    char *req; /* the whole request, prebuilt when path has no {id} */
    size_t req_len;
} step_t;

typedef struct {
    char name[64];
    double weight;
    int nsteps;
    step_t steps[MAX_STEPS];
} tmpl_t;

static struct {
    char host[300], port[300], base_path[1024];
    struct sockaddr_storage addr;
    int conns, threads;
    double rate, duration, warmup;
    long count;
    int timeout_ms;
    const char *hdrs[MAX_HDRS];
    int nhdrs;
    char *hdr_block; /* "K: V\r\n..." */
    tmpl_t tmpl[MAX_TMPL];
    int ntmpl;
    double wsum;
    const char *expect_body;
    const char *json;
    int fail_on_error, quiet;
} P = {.conns = -1, .threads = 1, .timeout_ms = 30000};

/* ---- samples ------------------------------------------------------------------------------ */

typedef struct {
    uint32_t *v; /* microseconds */
    size_t n, cap;
} samples_t;

static void
samples_add(samples_t *s, uint64_t ns)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v)
            abort();
    }
    uint64_t us = ns / 1000;
    s->v[s->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void
samples_merge(samples_t *dst, const samples_t *src)
{
    for (size_t i = 0; i < src->n; i++)
        samples_add(dst, (uint64_t)src->v[i] * 1000);
}

enum { E_CONNECT, E_IO, E_TIMEOUT, E_PARSE, E_BODY, E_NOID, E_UNFINISHED, E__N };
static const char *const err_names[E__N] = {"connect",       "io",    "timeout",   "parse",
                                            "body_mismatch", "no_id", "unfinished"};

typedef struct {
    samples_t total;           /* per operation (all steps), from scheduled time */
    samples_t step[MAX_STEPS]; /* per step, from that step's send */
    uint64_t ok, failed;
} tstats_t;

/* ---- connections and workers ------------------------------------------------------------- */

typedef struct worker worker_t;

enum { C_CONNECTING, C_IDLE, C_BUSY, C_CLOSING };

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    worker_t *w;
    llhttp_t parser;
    int state, idx;
    int dead; /* could not reconnect: not reopened */
    /* the operation in flight */
    int tmpl, step;
    int counted; /* recorded (inside the measured window) */
    uint64_t sched_ns, send_ns, step_ns;
    int status, msg_done;
    char *dyn; /* request built for a step with {id} */
    char *body;
    size_t body_len;
    char rbuf[READ_BUF];
} conn_t;

typedef struct {
    uint64_t sched_ns;
    int tmpl;
} pend_t;

struct worker {
    int idx;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_timer_t tick, deadline;
    uv_poll_t sched_poll; /* open loop: the timerfd of the next scheduled send */
    int sched_fd;
    int nconns, nopen, nconnected;
    conn_t **conns;
    int started, stopping, finished;
    double rate; /* this worker's share */
    long count;  /* this worker's share (0: by duration) */
    long issued;
    uint64_t t0, measure_from, last_done;
    pend_t *pend;
    size_t phead, ptail, pcap, pmax;
    uint64_t rng;
    /* results */
    samples_t lat, service;
    tstats_t ts[MAX_TMPL];
    uint64_t status[600];
    uint64_t errors[E__N];
    int fatal;
};

static llhttp_settings_t parser_settings;

static void conn_open(worker_t *w, conn_t *c);
static void conn_dispatch(conn_t *c);
static void worker_maybe_finish(worker_t *w);
static void worker_begin(worker_t *w);
static void conn_fail(conn_t *c, int err);
static void on_close(uv_handle_t *h);

static uint64_t
now_ns(void)
{
    return uv_hrtime();
}

static uint64_t
rng_next(worker_t *w)
{
    uint64_t x = w->rng;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return w->rng = x;
}

static int
pick_tmpl(worker_t *w)
{
    if (P.ntmpl == 1)
        return 0;
    double r = (double)(rng_next(w) >> 11) / (double)(1ULL << 53) * P.wsum;
    for (int i = 0; i < P.ntmpl; i++) {
        if (r < P.tmpl[i].weight)
            return i;
        r -= P.tmpl[i].weight;
    }
    return P.ntmpl - 1;
}

/* ---- requests ------------------------------------------------------------------------------ */

static char *
build_request(const step_t *s, const char *path, size_t *len)
{
    size_t cap =
        strlen(s->method) + strlen(path) + strlen(P.host) + strlen(P.hdr_block) + s->body_len + 200;
    char *b = malloc(cap);
    if (!b)
        abort();
    int n = snprintf(b, cap, "%s %s HTTP/1.1\r\nHost: %s:%s\r\n%s%s", s->method, path, P.host,
                     P.port, P.hdr_block, s->body ? "" : "\r\n");
    if (s->body) {
        n += snprintf(b + n, cap - (size_t)n, "Content-Length: %zu\r\n\r\n", s->body_len);
        memcpy(b + n, s->body, s->body_len);
        n += (int)s->body_len;
    }
    *len = (size_t)n;
    return b;
}

/* json_id finds the string value of the first "id" key in a JSON text: enough for the
 * objects SoulBox answers with, whose "id" comes first. */
static int
json_id(const char *b, size_t n, char *out, size_t cap)
{
    const char *end = b + n, *p = b;
    while ((p = memmem(p, (size_t)(end - p), "\"id\"", 4))) {
        const char *q = p + 4;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            q++;
        if (q < end && *q == ':') {
            q++;
            while (q < end && (*q == ' ' || *q == '\t'))
                q++;
            if (q < end && *q == '"') {
                const char *s = ++q;
                while (q < end && *q != '"')
                    q++;
                if (q < end && (size_t)(q - s) < cap) {
                    memcpy(out, s, (size_t)(q - s));
                    out[q - s] = 0;
                    return 0;
                }
            }
            return -1;
        }
        p += 4;
    }
    return -1;
}

static char *
subst_id(const char *path, const char *id)
{
    const char *at = strstr(path, "{id}");
    size_t n = strlen(path) - 4 + strlen(id) + 1;
    char *out = malloc(n);
    if (!out)
        abort();
    snprintf(out, n, "%.*s%s%s", (int)(at - path), path, id, at + 4);
    return out;
}

static void
on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    if (status < 0 && c->state == C_BUSY)
        conn_fail(c, E_IO);
}

static void
conn_send_step(conn_t *c, const char *id)
{
    const step_t *s = &P.tmpl[c->tmpl].steps[c->step];
    uv_buf_t buf;
    free(c->dyn);
    c->dyn = NULL;
    if (s->req) {
        buf = uv_buf_init(s->req, (unsigned)s->req_len);
    } else {
        size_t len;
        char *path = subst_id(s->path, id ? id : "");
        c->dyn = build_request(s, path, &len);
        free(path);
        buf = uv_buf_init(c->dyn, (unsigned)len);
    }
    c->body_len = 0;
    c->status = 0;
    c->msg_done = 0;
    c->step_ns = now_ns();
    llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
    c->parser.data = c;
    c->wreq.data = c;
    c->state = C_BUSY;
    int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (r < 0)
        conn_fail(c, E_IO);
}

static void
conn_start_op(conn_t *c, int tmpl, uint64_t sched_ns)
{
    worker_t *w = c->w;
    c->tmpl = tmpl;
    c->step = 0;
    c->sched_ns = sched_ns;
    c->send_ns = now_ns();
    c->counted = sched_ns >= w->measure_from;
    conn_send_step(c, NULL);
}

/* conn_dispatch gives an idle connection its next operation, if any. */
static void
conn_dispatch(conn_t *c)
{
    worker_t *w = c->w;
    if (c->state != C_IDLE)
        return;
    if (w->rate > 0) {
        if (w->phead < w->ptail) {
            pend_t p = w->pend[w->phead++];
            conn_start_op(c, p.tmpl, p.sched_ns);
        }
    } else if (!w->stopping && (!w->count || w->issued < w->count)) {
        w->issued++;
        if (w->count && w->issued >= w->count)
            w->stopping = 1;
        conn_start_op(c, pick_tmpl(w), now_ns());
    }
    worker_maybe_finish(w);
}

static void
op_done(conn_t *c, int ok)
{
    worker_t *w = c->w;
    uint64_t t = now_ns();
    if (c->counted) {
        tstats_t *ts = &w->ts[c->tmpl];
        samples_add(&ts->total, t - c->sched_ns);
        samples_add(&w->lat, t - c->sched_ns);
        samples_add(&w->service, t - c->send_ns);
        if (ok)
            ts->ok++;
        else
            ts->failed++;
        w->last_done = t;
    }
}

/* conn_on_message: one whole response arrived on c. */
static void
conn_on_message(conn_t *c)
{
    worker_t *w = c->w;
    const tmpl_t *t = &P.tmpl[c->tmpl];
    int keep = llhttp_should_keep_alive(&c->parser);
    int st = c->status;
    if (c->counted) {
        if (st >= 100 && st < 600)
            w->status[st]++;
        samples_add(&w->ts[c->tmpl].step[c->step], now_ns() - c->step_ns);
    }
    int ok = st >= 200 && st < 300;
    int last = c->step + 1 >= t->nsteps;
    char id[256] = "";
    if (ok && last && P.expect_body &&
        !memmem(c->body, c->body_len, P.expect_body, strlen(P.expect_body))) {
        if (c->counted)
            w->errors[E_BODY]++;
        ok = 0;
    }
    if (ok && !last && json_id(c->body, c->body_len, id, sizeof id) < 0) {
        if (c->counted)
            w->errors[E_NOID]++;
        ok = 0;
    }
    c->state = C_IDLE;
    if (ok && !last && keep) {
        c->step++;
        conn_send_step(c, id);
        return;
    }
    op_done(c, ok && last);
    if (!keep) {
        c->state = C_CLOSING; /* on_close reopens */
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    conn_dispatch(c);
}

static int
p_on_status_done(llhttp_t *p)
{
    ((conn_t *)p->data)->status = llhttp_get_status_code(p);
    return 0;
}

static int
p_on_body(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    if (!c->body)
        return 0;
    size_t room = BODY_KEEP - c->body_len;
    if (len > room)
        len = room;
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int
p_on_message_done(llhttp_t *p)
{
    ((conn_t *)p->data)->msg_done = 1;
    return HPE_PAUSED; /* no pipelining: nothing may follow until we send again */
}

static void
on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn_t *c = h->data;
    (void)hint;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

/* conn_fail ends the operation in flight on c, if any, as failed, and closes c (on_close
 * reopens it while the run goes on). */
static void
conn_fail(conn_t *c, int err)
{
    worker_t *w = c->w;
    if (c->state == C_BUSY && c->counted) {
        w->errors[err]++;
        w->ts[c->tmpl].failed++;
    }
    c->state = C_CLOSING;
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (n == 0)
        return;
    if (c->state == C_CLOSING)
        return;
    if (n < 0) {
        /* EOF on an idle connection is the server closing keep-alive: not an error. */
        conn_fail(c, E_IO);
        return;
    }
    if (c->state != C_BUSY) {
        conn_fail(c, E_PARSE);
        return;
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, buf->base, (size_t)n);
    if (e == HPE_PAUSED && c->msg_done) {
        conn_on_message(c);
    } else if (e != HPE_OK) {
        conn_fail(c, E_PARSE);
    }
}

static void
on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    worker_t *w = c->w;
    if (status < 0) {
        w->errors[E_CONNECT]++;
        if (!w->started)
            w->fatal = 1;
        c->dead = 1;
        c->state = C_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = C_IDLE;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (!w->started) {
        if (++w->nconnected == w->nconns)
            worker_begin(w);
        return;
    }
    conn_dispatch(c);
}

static void
conn_open(worker_t *w, conn_t *c)
{
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    c->state = C_CONNECTING;
    w->nopen++;
    int r = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&P.addr, on_connect);
    if (r < 0) {
        w->errors[E_CONNECT]++;
        if (!w->started)
            w->fatal = 1;
        c->dead = 1;
        c->state = C_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, on_close);
    }
}

/* on_close keeps the connection count: it reopens c unless the run is over or c could not
 * connect; when no connection is left, the run ends. */
static void
on_close(uv_handle_t *h)
{
    conn_t *c = h->data;
    worker_t *w = c->w;
    w->nopen--;
    c->state = C_CLOSING;
    if (w->finished)
        return;
    int alive = 0;
    for (int i = 0; i < w->nconns; i++)
        alive += !w->conns[i]->dead;
    if (!alive) {
        w->stopping = 1;
        w->fatal |= !w->started;
        if (w->nopen == 0) {
            w->errors[E_UNFINISHED] += w->ptail - w->phead;
            w->phead = w->ptail;
        }
    }
    if (c->dead || (w->stopping && (w->rate <= 0 || w->phead == w->ptail))) {
        worker_maybe_finish(w);
        return;
    }
    conn_open(w, c);
}

/* ---- worker: schedule, time out, stop ------------------------------------------------------ */

static void
pend_push(worker_t *w, uint64_t sched, int tmpl)
{
    if (w->ptail == w->pcap) {
        if (w->phead > 0) {
            memmove(w->pend, w->pend + w->phead, (w->ptail - w->phead) * sizeof *w->pend);
            w->ptail -= w->phead;
            w->phead = 0;
        }
        if (w->ptail == w->pcap) {
            w->pcap = w->pcap ? w->pcap * 2 : 1024;
            w->pend = realloc(w->pend, w->pcap * sizeof *w->pend);
            if (!w->pend)
                abort();
        }
    }
    w->pend[w->ptail++] = (pend_t){sched, tmpl};
    if (w->ptail - w->phead > w->pmax)
        w->pmax = w->ptail - w->phead;
}

static void
worker_close_all(worker_t *w)
{
    w->finished = 1;
    for (int i = 0; i < w->nconns; i++) {
        conn_t *c = w->conns[i];
        if (c->state == C_BUSY && c->counted)
            w->errors[E_UNFINISHED]++;
        if (!uv_is_closing((uv_handle_t *)&c->tcp) && c->state != C_CLOSING)
            uv_close((uv_handle_t *)&c->tcp, on_close);
        c->state = C_CLOSING;
    }
    if (!uv_is_closing((uv_handle_t *)&w->tick))
        uv_close((uv_handle_t *)&w->tick, NULL);
    if (w->sched_fd >= 0 && !uv_is_closing((uv_handle_t *)&w->sched_poll))
        uv_close((uv_handle_t *)&w->sched_poll, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->deadline))
        uv_close((uv_handle_t *)&w->deadline, NULL);
}

static void
worker_maybe_finish(worker_t *w)
{
    if (w->finished)
        return;
    if (!w->started) {
        if (w->fatal)
            worker_close_all(w);
        return;
    }
    if (!w->stopping || w->phead < w->ptail)
        return;
    for (int i = 0; i < w->nconns; i++)
        if (w->conns[i]->state == C_BUSY || w->conns[i]->state == C_CONNECTING)
            return;
    worker_close_all(w);
}

/* sched_arm sets the timerfd to the next scheduled send (absolute CLOCK_MONOTONIC, the clock
 * uv_hrtime reads); a time already past fires at once. */
static void
sched_arm(worker_t *w)
{
    double per = 1e9 / w->rate;
    uint64_t next = w->t0 + (uint64_t)((double)w->issued * per);
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(next / 1000000000ULL),
                                          .tv_nsec = (long)(next % 1000000000ULL)}};
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1; /* zero would disarm it */
    if (timerfd_settime(w->sched_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        abort();
}

/* on_sched: the open-loop schedule -- queue every request due by now, hand them to idle
 * connections, arm for the next one. */
static void
on_sched(uv_poll_t *h, int status, int events)
{
    worker_t *w = h->data;
    uint64_t expirations;
    (void)status, (void)events;
    if (read(w->sched_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        abort();
    if (w->stopping || w->finished)
        return;
    uint64_t now = now_ns();
    double per = 1e9 / w->rate;
    long due = (long)((double)(now - w->t0) / per) + 1;
    if (w->count && due > w->count)
        due = w->count;
    while (w->issued < due) {
        uint64_t sched = w->t0 + (uint64_t)((double)w->issued * per);
        pend_push(w, sched, pick_tmpl(w));
        w->issued++;
    }
    if (w->count && w->issued >= w->count)
        w->stopping = 1;
    for (int i = 0; i < w->nconns && w->phead < w->ptail; i++)
        conn_dispatch(w->conns[i]);
    if (!w->stopping)
        sched_arm(w);
    worker_maybe_finish(w);
}

/* on_tick: request time-outs. */
static void
on_tick(uv_timer_t *t)
{
    worker_t *w = t->data;
    uint64_t limit = (uint64_t)P.timeout_ms * 1000000ULL;
    uint64_t now = now_ns();
    for (int i = 0; i < w->nconns; i++) {
        conn_t *c = w->conns[i];
        if (c->state == C_BUSY && now > c->step_ns + limit)
            conn_fail(c, E_TIMEOUT);
    }
    worker_maybe_finish(w);
}

static void
on_deadline(uv_timer_t *t)
{
    worker_t *w = t->data;
    w->stopping = 1;
    worker_maybe_finish(w);
}

static void
worker_begin(worker_t *w)
{
    w->started = 1;
    w->t0 = now_ns();
    w->measure_from = w->t0 + (uint64_t)(P.warmup * 1e9);
    if (P.duration > 0)
        uv_timer_start(&w->deadline, on_deadline, (uint64_t)((P.duration + P.warmup) * 1000), 0);
    uv_timer_start(&w->tick, on_tick, 50, 50);
    if (w->rate > 0) {
        uv_poll_start(&w->sched_poll, UV_READABLE, on_sched);
        sched_arm(w);
    } else {
        for (int i = 0; i < w->nconns; i++)
            conn_dispatch(w->conns[i]);
    }
}

static void
worker_run(void *arg)
{
    worker_t *w = arg;
    uv_loop_init(&w->loop);
    uv_timer_init(&w->loop, &w->tick);
    uv_timer_init(&w->loop, &w->deadline);
    w->tick.data = w->deadline.data = w;
    w->sched_fd = -1;
    if (w->rate > 0) {
        w->sched_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (w->sched_fd < 0 || uv_poll_init(&w->loop, &w->sched_poll, w->sched_fd) != 0) {
            fprintf(stderr, "http_load: timerfd: %s\n", strerror(errno));
            exit(2);
        }
        w->sched_poll.data = w;
    }
    for (int i = 0; i < w->nconns; i++) {
        conn_t *c = w->conns[i];
        c->w = w;
        c->idx = i;
        c->body = malloc(BODY_KEEP);
        if (!c->body)
            abort();
        conn_open(w, c);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->sched_fd >= 0)
        close(w->sched_fd);
    if (uv_loop_close(&w->loop) != 0) {
        fprintf(stderr, "http_load: worker %d: loop did not close cleanly\n", w->idx);
        w->fatal = 1;
    }
}

/* ---- reporting ------------------------------------------------------------------------------ */

typedef struct {
    size_t n;
    double min, p50, p90, p99, p999, max, mean; /* ms */
} pct_t;

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static pct_t
percentiles(samples_t *s)
{
    pct_t p = {.n = s->n};
    if (!s->n)
        return p;
    qsort(s->v, s->n, sizeof *s->v, cmp_u32);
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i];
#define AT(q) (s->v[(size_t)((double)(s->n - 1) * (q) + 0.5)] / 1000.0)
    p.min = s->v[0] / 1000.0;
    p.p50 = AT(0.50);
    p.p90 = AT(0.90);
    p.p99 = AT(0.99);
    p.p999 = AT(0.999);
    p.max = s->v[s->n - 1] / 1000.0;
    p.mean = sum / (double)s->n / 1000.0;
#undef AT
    return p;
}

static void
print_pct(const char *label, pct_t p)
{
    printf(
        "  %-22s n=%-8zu p50 %8.3f  p90 %8.3f  p99 %8.3f  p99.9 %8.3f  max %9.3f  mean %8.3f ms\n",
        label, p.n, p.p50, p.p90, p.p99, p.p999, p.max, p.mean);
}

static void
json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void
json_pct(FILE *f, pct_t p)
{
    fprintf(f,
            "{\"n\":%zu,\"min\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
            "\"max\":%.3f,\"mean\":%.3f}",
            p.n, p.min, p.p50, p.p90, p.p99, p.p999, p.max, p.mean);
}

/* A header's value is shown only when it is not a credential. */
static void
hdr_shown(const char *h, char *out, size_t cap)
{
    if (!strncasecmp(h, "authorization:", 14) || !strncasecmp(h, "x-api-key:", 10) ||
        !strncasecmp(h, "cookie:", 7)) {
        const char *colon = strchr(h, ':');
        snprintf(out, cap, "%.*s: <redacted>", (int)(colon - h), h);
    } else {
        snprintf(out, cap, "%s", h);
    }
}

/* ---- arguments ------------------------------------------------------------------------------ */

static void
usage(void)
{
    fprintf(stderr,
            "usage: http_load [options] http://HOST:PORT[/PATH]\n"
            "  -c N            connections (closed loop: N in flight; open loop: at most N; "
            "default 1 / 64)\n"
            "  -r RPS          open loop: fixed arrival rate, latency from the scheduled time\n"
            "  -d SECONDS      duration (default 5 unless -n)\n"
            "  -n COUNT        requests (operations) in all, instead of a duration\n"
            "  -t THREADS      worker threads (default 1), connections and rate split among them\n"
            "  -m METHOD       method of the single template (default GET, POST with a body)\n"
            "  -p PATH         path of the single template (default the URL's)\n"
            "  -H 'K: V'       header on every request (repeatable)\n"
            "  -b BODY | -f FILE  body of the single template\n"
            "  --req [NAME=]WEIGHT:METHOD:PATH[:BODY|:@FILE]   a weighted template (repeatable)\n"
            "  --then METHOD:PATH[:BODY|:@FILE]  second step of the last template, on the same\n"
            "                  connection; {id} in PATH is the \"id\" of the first step's answer\n"
            "  --warmup SECONDS  run this long first without recording\n"
            "  --timeout MS    per-request limit (default 30000)\n"
            "  --expect-body S a 2xx answer must contain S (else counted as body_mismatch)\n"
            "  --json FILE     write the results as JSON\n"
            "  --fail-on-error exit 1 if any request failed or none completed\n");
    exit(2);
}

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "http_load: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t r;
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            b = realloc(b, cap *= 2);
    }
    fclose(f);
    if (!b)
        abort();
    *len = n;
    return b;
}

static void
set_body(step_t *s, const char *arg, int is_file)
{
    if (is_file) {
        s->body = read_file(arg, &s->body_len);
    } else {
        s->body = strdup(arg);
        s->body_len = strlen(arg);
    }
}

/* parse_step reads METHOD:PATH[:BODY|:@FILE]. */
static void
parse_step(step_t *s, const char *spec)
{
    const char *c1 = strchr(spec, ':');
    if (!c1)
        usage();
    const char *c2 = strchr(c1 + 1, ':');
    s->method = strndup(spec, (size_t)(c1 - spec));
    s->path = c2 ? strndup(c1 + 1, (size_t)(c2 - c1 - 1)) : strdup(c1 + 1);
    if (c2)
        set_body(s, c2[1] == '@' ? c2 + 2 : c2 + 1, c2[1] == '@');
}

static void
parse_url(const char *url)
{
    if (strncmp(url, "http://", 7))
        usage();
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    char hostport[300];
    if (hl >= sizeof hostport)
        usage();
    memcpy(hostport, h, hl);
    hostport[hl] = 0;
    char *colon = strrchr(hostport, ':');
    snprintf(P.port, sizeof P.port, "%s", colon ? colon + 1 : "80");
    if (colon)
        *colon = 0;
    snprintf(P.host, sizeof P.host, "%s", hostport);
    snprintf(P.base_path, sizeof P.base_path, "%s", slash ? slash : "/");
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int r = getaddrinfo(P.host, P.port, &hints, &ai);
    if (r) {
        fprintf(stderr, "http_load: %s: %s\n", P.host, gai_strerror(r));
        exit(2);
    }
    memcpy(&P.addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
}

int
main(int argc, char **argv)
{
    const char *url = NULL, *m = NULL, *path = NULL, *body = NULL, *bodyfile = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
        if (!strcmp(a, "-c"))
            P.conns = atoi(NEXT());
        else if (!strcmp(a, "-r"))
            P.rate = atof(NEXT());
        else if (!strcmp(a, "-d"))
            P.duration = atof(NEXT());
        else if (!strcmp(a, "-n"))
            P.count = atol(NEXT());
        else if (!strcmp(a, "-t"))
            P.threads = atoi(NEXT());
        else if (!strcmp(a, "-m"))
            m = NEXT();
        else if (!strcmp(a, "-p"))
            path = NEXT();
        else if (!strcmp(a, "-H")) {
            if (P.nhdrs == MAX_HDRS)
                usage();
            P.hdrs[P.nhdrs++] = NEXT();
        } else if (!strcmp(a, "-b"))
            body = NEXT();
        else if (!strcmp(a, "-f"))
            bodyfile = NEXT();
        else if (!strcmp(a, "--req")) {
            if (P.ntmpl == MAX_TMPL)
                usage();
            const char *spec = NEXT();
            tmpl_t *t = &P.tmpl[P.ntmpl++];
            const char *eq = strchr(spec, '='), *c1 = strchr(spec, ':');
            if (eq && c1 && eq < c1) {
                snprintf(t->name, sizeof t->name, "%.*s", (int)(eq - spec), spec);
                spec = eq + 1;
                c1 = strchr(spec, ':');
            }
            if (!c1)
                usage();
            t->weight = atof(spec);
            t->nsteps = 1;
            parse_step(&t->steps[0], c1 + 1);
            if (!t->name[0])
                snprintf(t->name, sizeof t->name, "%s %s", t->steps[0].method, t->steps[0].path);
        } else if (!strcmp(a, "--then")) {
            if (!P.ntmpl || P.tmpl[P.ntmpl - 1].nsteps == MAX_STEPS)
                usage();
            tmpl_t *t = &P.tmpl[P.ntmpl - 1];
            parse_step(&t->steps[t->nsteps++], NEXT());
        } else if (!strcmp(a, "--warmup"))
            P.warmup = atof(NEXT());
        else if (!strcmp(a, "--timeout"))
            P.timeout_ms = atoi(NEXT());
        else if (!strcmp(a, "--expect-body"))
            P.expect_body = NEXT();
        else if (!strcmp(a, "--json"))
            P.json = NEXT();
        else if (!strcmp(a, "--fail-on-error"))
            P.fail_on_error = 1;
        else if (a[0] == '-')
            usage();
        else
            url = a;
#undef NEXT
    }
    if (!url || P.threads < 1 || P.threads > MAX_THREADS || P.rate < 0 || P.timeout_ms < 1)
        usage();
    parse_url(url);
    if (P.conns < 0)
        P.conns = P.rate > 0 ? 64 : 1;
    if (P.conns < P.threads)
        P.conns = P.threads;
    if (P.duration <= 0 && P.count <= 0)
        P.duration = 5;
    if (P.count > 0)
        P.duration = 0;
    if (!P.ntmpl) {
        tmpl_t *t = &P.tmpl[P.ntmpl++];
        t->weight = 1;
        t->nsteps = 1;
        step_t *s = &t->steps[0];
        if (body || bodyfile)
            set_body(s, bodyfile ? bodyfile : body, bodyfile != NULL);
        s->method = strdup(m ? m : s->body ? "POST" : "GET");
        s->path = strdup(path ? path : P.base_path);
        snprintf(t->name, sizeof t->name, "%s %s", s->method, s->path);
    }
    /* Headers: the user's, plus Content-Type for JSON bodies unless one was given. */
    size_t hl = 1;
    int has_ct = 0;
    for (int i = 0; i < P.nhdrs; i++) {
        hl += strlen(P.hdrs[i]) + 2;
        has_ct |= !strncasecmp(P.hdrs[i], "content-type:", 13);
    }
    P.hdr_block = malloc(hl + 64);
    P.hdr_block[0] = 0;
    for (int i = 0; i < P.nhdrs; i++)
        strcat(strcat(P.hdr_block, P.hdrs[i]), "\r\n");
    if (!has_ct)
        strcat(P.hdr_block, "Content-Type: application/json\r\n");
    for (int i = 0; i < P.ntmpl; i++) {
        tmpl_t *t = &P.tmpl[i];
        P.wsum += t->weight;
        for (int k = 0; k < t->nsteps; k++) {
            step_t *s = &t->steps[k];
            if (!strstr(s->path, "{id}"))
                s->req = build_request(s, s->path, &s->req_len);
            else if (k == 0)
                usage(); /* the first step has no answer to take an id from */
        }
    }
    if (P.wsum <= 0)
        usage();

    /* Parameters. */
    printf("http_load: http://%s:%s  %s", P.host, P.port, P.rate > 0 ? "open loop" : "closed loop");
    if (P.rate > 0)
        printf(" at %.1f req/s", P.rate);
    printf(", %d connection%s, %d thread%s, ", P.conns, P.conns == 1 ? "" : "s", P.threads,
           P.threads == 1 ? "" : "s");
    if (P.count > 0)
        printf("%ld requests", P.count);
    else
        printf("%.1f s", P.duration);
    if (P.warmup > 0)
        printf(" after %.1f s warm-up", P.warmup);
    printf(", timeout %d ms\n", P.timeout_ms);
    for (int i = 0; i < P.nhdrs; i++) {
        char shown[512];
        hdr_shown(P.hdrs[i], shown, sizeof shown);
        printf("  header  %s\n", shown);
    }
    for (int i = 0; i < P.ntmpl; i++) {
        tmpl_t *t = &P.tmpl[i];
        printf("  request %-14s weight %g:", t->name, t->weight);
        for (int k = 0; k < t->nsteps; k++)
            printf("%s %s %s (%zu-byte body)", k ? " then" : "", t->steps[k].method,
                   t->steps[k].path, t->steps[k].body_len);
        printf("\n");
    }
    if (P.expect_body)
        printf("  expect  2xx bodies containing ");
    if (P.expect_body) {
        json_str(stdout, P.expect_body);
        printf("\n");
    }
    fflush(stdout);

    llhttp_settings_init(&parser_settings);
    parser_settings.on_status_complete = p_on_status_done;
    parser_settings.on_body = p_on_body;
    parser_settings.on_message_complete = p_on_message_done;

    /* Workers. */
    worker_t *ws = calloc((size_t)P.threads, sizeof *ws);
    for (int i = 0; i < P.threads; i++) {
        worker_t *w = &ws[i];
        w->idx = i;
        w->rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
        w->nconns = P.conns / P.threads + (i < P.conns % P.threads);
        w->rate = P.rate / P.threads;
        w->count = P.count > 0 ? P.count / P.threads + (i < P.count % P.threads) : 0;
        w->conns = calloc((size_t)w->nconns, sizeof *w->conns);
        for (int k = 0; k < w->nconns; k++)
            w->conns[k] = calloc(1, sizeof(conn_t));
    }
    uint64_t start = now_ns();
    for (int i = 0; i < P.threads; i++)
        uv_thread_create(&ws[i].thread, worker_run, &ws[i]);
    for (int i = 0; i < P.threads; i++)
        uv_thread_join(&ws[i].thread);

    /* Merge. */
    samples_t lat = {0}, svc = {0};
    tstats_t ts[MAX_TMPL] = {0};
    uint64_t status[600] = {0}, errors[E__N] = {0}, maxq = 0, measure_from = UINT64_MAX, last = 0;
    int fatal = 0;
    for (int i = 0; i < P.threads; i++) {
        worker_t *w = &ws[i];
        fatal |= w->fatal;
        samples_merge(&lat, &w->lat);
        samples_merge(&svc, &w->service);
        for (int k = 0; k < P.ntmpl; k++) {
            samples_merge(&ts[k].total, &w->ts[k].total);
            for (int s = 0; s < MAX_STEPS; s++)
                samples_merge(&ts[k].step[s], &w->ts[k].step[s]);
            ts[k].ok += w->ts[k].ok;
            ts[k].failed += w->ts[k].failed;
        }
        for (int k = 0; k < 600; k++)
            status[k] += w->status[k];
        for (int k = 0; k < E__N; k++)
            errors[k] += w->errors[k];
        if (w->pmax > maxq)
            maxq = w->pmax;
        if (w->started && w->measure_from < measure_from)
            measure_from = w->measure_from;
        if (w->last_done > last)
            last = w->last_done;
    }
    if (fatal && !lat.n) {
        fprintf(stderr, "http_load: cannot connect to %s:%s\n", P.host, P.port);
        return 2;
    }
    double elapsed = last > measure_from ? (double)(last - measure_from) / 1e9 : 0;
    /* n arrivals at a fixed rate span (n - 1) intervals: never report more than was offered. */
    if (P.rate > 0 && elapsed < (double)lat.n / P.rate)
        elapsed = (double)lat.n / P.rate;
    double tput = elapsed > 0 ? (double)lat.n / elapsed : 0;
    uint64_t nok = 0, nbad = 0, nerr = 0;
    for (int k = 0; k < P.ntmpl; k++)
        nok += ts[k].ok, nbad += ts[k].failed;
    for (int k = 0; k < E__N; k++)
        nerr += errors[k];

    pct_t all = percentiles(&lat), service = percentiles(&svc);
    printf("results: %zu operations in %.3f s = %.1f ops/s (%" PRIu64 " ok, %" PRIu64 " failed)\n",
           lat.n, elapsed, tput, nok, nbad);
    print_pct(P.rate > 0 ? "latency (from schedule)" : "latency", all);
    if (P.rate > 0) {
        print_pct("service (from send)", service);
        printf("  achieved %.1f of %.1f req/s offered; deepest send queue %" PRIu64 "\n", tput,
               P.rate, maxq);
    }
    pct_t tp[MAX_TMPL], sp[MAX_TMPL][MAX_STEPS];
    for (int k = 0; k < P.ntmpl; k++) {
        tp[k] = percentiles(&ts[k].total);
        for (int s = 0; s < P.tmpl[k].nsteps; s++)
            sp[k][s] = percentiles(&ts[k].step[s]);
        if (P.ntmpl > 1 || P.tmpl[k].nsteps > 1)
            print_pct(P.tmpl[k].name, tp[k]);
        if (P.tmpl[k].nsteps > 1)
            for (int s = 0; s < P.tmpl[k].nsteps; s++) {
                char label[96];
                snprintf(label, sizeof label, "  step %d %s", s + 1, P.tmpl[k].steps[s].method);
                print_pct(label, sp[k][s]);
            }
    }
    printf("  status:");
    for (int k = 0; k < 600; k++)
        if (status[k])
            printf(" %d=%" PRIu64, k, status[k]);
    printf("\n  errors:");
    for (int k = 0; k < E__N; k++)
        if (errors[k])
            printf(" %s=%" PRIu64, err_names[k], errors[k]);
    printf(nerr ? "\n" : " none\n");
    fflush(stdout);

    if (P.json) {
        FILE *f = fopen(P.json, "w");
        if (!f) {
            fprintf(stderr, "http_load: %s: %s\n", P.json, strerror(errno));
            return 2;
        }
        fprintf(f, "{\"tool\":\"http_load\",\"params\":{\"url\":");
        char u[700];
        snprintf(u, sizeof u, "http://%s:%s", P.host, P.port);
        json_str(f, u);
        fprintf(f, ",\"mode\":\"%s\",\"connections\":%d,\"threads\":%d,\"rate\":%.3f,",
                P.rate > 0 ? "open" : "closed", P.conns, P.threads, P.rate);
        fprintf(f, "\"duration_s\":%.3f,\"count\":%ld,\"warmup_s\":%.3f,\"timeout_ms\":%d,",
                P.duration, P.count, P.warmup, P.timeout_ms);
        fprintf(f, "\"headers\":[");
        for (int i = 0; i < P.nhdrs; i++) {
            char shown[512];
            hdr_shown(P.hdrs[i], shown, sizeof shown);
            fprintf(f, "%s", i ? "," : "");
            json_str(f, shown);
        }
        fprintf(f, "],\"expect_body\":");
        if (P.expect_body)
            json_str(f, P.expect_body);
        else
            fprintf(f, "null");
        fprintf(f,
                "},\"started_unix_s\":%ld,\"elapsed_s\":%.6f,\"operations\":%zu,"
                "\"ok\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"throughput_rps\":%.3f,",
                (long)time(NULL), elapsed, lat.n, nok, nbad, tput);
        (void)start;
        fprintf(f, "\"latency_ms\":");
        json_pct(f, all);
        fprintf(f, ",\"service_ms\":");
        json_pct(f, service);
        fprintf(f, ",\"max_send_queue\":%" PRIu64 ",\"status\":{", maxq);
        int first = 1;
        for (int k = 0; k < 600; k++)
            if (status[k]) {
                fprintf(f, "%s\"%d\":%" PRIu64, first ? "" : ",", k, status[k]);
                first = 0;
            }
        fprintf(f, "},\"errors\":{");
        for (int k = 0; k < E__N; k++)
            fprintf(f, "%s\"%s\":%" PRIu64, k ? "," : "", err_names[k], errors[k]);
        fprintf(f, "},\"templates\":[");
        for (int k = 0; k < P.ntmpl; k++) {
            tmpl_t *t = &P.tmpl[k];
            fprintf(f, "%s{\"name\":", k ? "," : "");
            json_str(f, t->name);
            fprintf(f, ",\"weight\":%g,\"ok\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"latency_ms\":",
                    t->weight, ts[k].ok, ts[k].failed);
            json_pct(f, tp[k]);
            fprintf(f, ",\"steps\":[");
            for (int s = 0; s < t->nsteps; s++) {
                fprintf(f, "%s{\"method\":", s ? "," : "");
                json_str(f, t->steps[s].method);
                fprintf(f, ",\"path\":");
                json_str(f, t->steps[s].path);
                fprintf(f, ",\"body_bytes\":%zu,\"latency_ms\":", t->steps[s].body_len);
                json_pct(f, sp[k][s]);
                fprintf(f, "}");
            }
            fprintf(f, "]}");
        }
        fprintf(f, "]}\n");
        fclose(f);
    }

    for (int i = 0; i < P.threads; i++) {
        worker_t *w = &ws[i];
        for (int k = 0; k < w->nconns; k++) {
            free(w->conns[k]->body);
            free(w->conns[k]->dyn);
            free(w->conns[k]);
        }
        free(w->conns);
        free(w->pend);
        free(w->lat.v);
        free(w->service.v);
        for (int k = 0; k < MAX_TMPL; k++) {
            free(w->ts[k].total.v);
            for (int s = 0; s < MAX_STEPS; s++)
                free(w->ts[k].step[s].v);
        }
    }
    free(ws);
    if (fatal)
        return 2;
    if (P.fail_on_error && (nerr || nbad || !lat.n))
        return 1;
    return 0;
}
