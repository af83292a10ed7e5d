/*
 * test_bus.c: the actor runtime and bus end to end, in one process: request/reply, streams,
 * error replies, deadlines, unknown messages, backpressure, inproc and tcp (two buses joined
 * over loopback with a shared secret), a stranger refused, and clean shutdown (every loop
 * closes with uv_loop_close() == 0).
 */
#include "core/actor.h"
#include "core/bus.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "test.h"
#include "base/clock.h"

#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static atomic_int slow_release;

/* ---- the echo actor (kind SCHEDULER here): answers BENCH by seq ---------------------------
 * seq 0: echo;  seq 1: a 3-chunk stream then a final;  seq 2: never answers;
 * seq 3: refuse with SB_EINVAL;  seq 4: block the loop 20 ms (to make a slow peer). */
static int
echo_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    sb_bench_t b;
    sb_replyto_t to = sb_replyto(m);
    (void)state;
    if (m->type != SB_MSG_BENCH)
        return SB_EUNKNOWN_TYPE;
    if (sb_bench_decode(m, &b) != 0)
        return SB_EBADMSG;
    switch (b.seq) {
    case 0:
        return sb_actor_reply(a, &to, SB_MSG_BENCH, 0, m->body, m->body_len);
    case 1:
        for (int i = 0; i < 3; i++)
            sb_actor_reply(a, &to, SB_MSG_BENCH, SB_MF_STREAM, m->body, m->body_len);
        return sb_actor_reply(a, &to, SB_MSG_BENCH, SB_MF_FINAL, m->body, m->body_len);
    case 2:
        return 0;
    case 3:
        return SB_EINVAL;
    default:
        if (!atomic_load(&slow_release))
            usleep(20000); /* deliberately slow: a peer that cannot keep up */
        return 0;
    }
}

static sb_actor_ops_t echo_ops = {
    .abi = SB_ACTOR_ABI_V1, .name = "echo", .kind = SB_ACTOR_SCHEDULER, .handle = echo_handle};
static sb_actor_ops_t slow_ops = {
    .abi = SB_ACTOR_ABI_V1, .name = "slow", .kind = SB_ACTOR_POOL, .handle = echo_handle};

/* ---- the client actor: runs a script of checks from a timer, reports to the main thread -- */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int failed;
    char why[256];
    int target_node_remote; /* 1: the echo actor is on another bus */
} report_t;

typedef struct {
    sb_actor_t *a;
    report_t *rep;
    uv_timer_t t;
    int step;
    int chunks;
    int got_final;
    uint64_t corr;
} client_t;

static void client_next(client_t *c);

static void
client_report(client_t *c, int failed, const char *why)
{
    pthread_mutex_lock(&c->rep->mu);
    c->rep->done = 1;
    c->rep->failed = failed;
    snprintf(c->rep->why, sizeof c->rep->why, "%s", why);
    pthread_cond_signal(&c->rep->cv);
    pthread_mutex_unlock(&c->rep->mu);
}

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            client_report(c, 1, #cond);                                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static int
send_bench(client_t *c, int kind, uint64_t seq, uint32_t timeout, sb_reply_cb cb)
{
    sb_bench_t b = {.seq = seq, .payload = SB_STR("hello")};
    sb_buf_t *buf = sb_actor_scratch(c->a);
    sb_bench_encode(&b, buf);
    return sb_actor_request(c->a, sb_addr((uint8_t)kind), SB_MSG_BENCH, buf->data, buf->len,
                            timeout, cb, c, &c->corr);
}

static void
on_echo(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    client_t *c = ud;
    sb_bench_t b;
    (void)a;
    EXPECT(status == 0);
    EXPECT(sb_bench_decode(m, &b) == 0 && sb_str_eq(b.payload, "hello"));
    EXPECT(m->corr == c->corr);
    client_next(c);
}

static void
on_stream(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    client_t *c = ud;
    (void)a;
    EXPECT(status == 0);
    if (m->flags & SB_MF_FINAL) {
        EXPECT(c->chunks == 3);
        client_next(c);
    } else {
        EXPECT(m->flags & SB_MF_STREAM);
        c->chunks++;
    }
}

static void
on_timeout(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    client_t *c = ud;
    (void)a;
    EXPECT(status == SB_ETIMEDOUT && m == NULL);
    client_next(c);
}

static void
on_refused(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    client_t *c = ud;
    (void)a;
    EXPECT(status == SB_EINVAL && m != NULL && (m->flags & SB_MF_ERROR));
    client_next(c);
}

static void
on_unknown(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    client_t *c = ud;
    (void)a;
    (void)m;
    EXPECT(status == SB_EUNKNOWN_TYPE);
    client_next(c);
}

static void
on_pong(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    client_t *c = ud;
    sb_pong_t p;
    (void)a;
    EXPECT(status == 0 && sb_pong_decode(m, &p) == 0 && sb_str_eq(p.actor, "echo"));
    client_next(c);
}

static void
on_cancel(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    client_t *c = ud;
    (void)a;
    (void)m;
    EXPECT(status == SB_ECANCELED);
    c->got_final++;
}

static void
on_ignore(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    (void)a;
    (void)status;
    (void)m;
    (void)ud;
}

static void
client_next(client_t *c)
{
    int r;
    switch (c->step++) {
    case 0: /* plain request/reply */
        EXPECT(send_bench(c, SB_ACTOR_SCHEDULER, 0, 2000, on_echo) == 0);
        break;
    case 1: /* a stream of 3 chunks and a final */
        EXPECT(send_bench(c, SB_ACTOR_SCHEDULER, 1, 2000, on_stream) == 0);
        break;
    case 2: /* an unanswered request times out, never waits forever */
        EXPECT(send_bench(c, SB_ACTOR_SCHEDULER, 2, 150, on_timeout) == 0);
        break;
    case 3: /* a handler error becomes an error reply */
        EXPECT(send_bench(c, SB_ACTOR_SCHEDULER, 3, 2000, on_refused) == 0);
        break;
    case 4: { /* an unknown message type is refused with an error reply */
        sb_buf_t *b = sb_actor_scratch(c->a);
        sb_ping_t p = {0};
        sb_ping_encode(&p, b);
        EXPECT(sb_actor_request(c->a, sb_addr(SB_ACTOR_SCHEDULER), 999, b->data, b->len, 2000,
                                on_unknown, c, NULL) == 0);
        break;
    }
    case 5: { /* the runtime answers PING on the actor's loop */
        sb_buf_t *b = sb_actor_scratch(c->a);
        sb_ping_t p = {.sent_us = 1};
        sb_ping_encode(&p, b);
        EXPECT(sb_actor_request(c->a, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_PING, b->data, b->len,
                                2000, on_pong, c, NULL) == 0);
        break;
    }
    case 6: /* cancel: the callback runs once with SB_ECANCELED */
        EXPECT(send_bench(c, SB_ACTOR_SCHEDULER, 2, 5000, on_cancel) == 0);
        EXPECT(sb_actor_cancel(c->a, c->corr) == 0);
        EXPECT(c->got_final == 1);
        EXPECT(sb_actor_cancel(c->a, c->corr) == SB_ENOTFOUND);
        /* no route: nothing runs the monitor kind in this test */
        r = sb_actor_request(c->a, sb_addr(SB_ACTOR_MONITOR), SB_MSG_PING, "\x80", 1, 100,
                             on_ignore, c, NULL);
        EXPECT(r == SB_ENOROUTE);
        client_next(c);
        break;
    case 7: { /* oversized body refused before it is queued */
        static uint8_t big[SB_MSG_MAX_BODY + 1];
        EXPECT(sb_actor_send(c->a, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_BENCH, 0, 0, 0, big,
                             sizeof big) == SB_ETOOBIG);
        client_report(c, 0, "all steps passed");
        break;
    }
    }
}

static void
client_start(uv_timer_t *t)
{
    client_t *c = t->data;
    uv_close((uv_handle_t *)t, NULL);
    client_next(c);
}

static int
client_init(sb_actor_t *a, void *state)
{
    client_t *c = state;
    c->a = a;
    c->rep = sb_actor_arg(a);
    uv_timer_init(sb_actor_loop(a), &c->t);
    c->t.data = c;
    uv_timer_start(&c->t, client_start, 0, 0);
    return 0;
}

static sb_actor_ops_t client_ops = {.abi = SB_ACTOR_ABI_V1, .name = "client",
                                    .kind = SB_ACTOR_CLIENT, .state_size = sizeof(client_t),
                                    .init = client_init};

static void
wait_report(report_t *r, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    pthread_mutex_lock(&r->mu);
    while (!r->done)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) != 0)
            break;
    pthread_mutex_unlock(&r->mu);
    if (!r->done || r->failed)
        fprintf(stderr, "client: %s\n", r->done ? r->why : "no report (timed out)");
    CHECK(r->done && !r->failed);
}

static void
stop_join(sb_actor_t *a)
{
    sb_actor_stop(a, 2000);
    CHECK_EQ(sb_actor_join(a), 0); /* the loop closed cleanly */
    sb_actor_free(a);
}

static void
test_inproc(void)
{
    sb_bus_opts_t o = {0};
    sb_bus_t *bus;
    sb_actor_t *echo, *client;
    report_t rep = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, "", 0};

    CHECK_EQ(sb_bus_alloc(&o, &bus), 0);
    CHECK_EQ(sb_actor_spawn(bus, &echo_ops, NULL, &echo), 0);
    /* the same kind twice in one process is refused */
    sb_actor_t *dup;
    CHECK_EQ(sb_actor_spawn(bus, &echo_ops, NULL, &dup), SB_EEXIST);
    CHECK_EQ(sb_actor_spawn(bus, &client_ops, &rep, &client), 0);
    wait_report(&rep, 10000);
    stop_join(client);
    stop_join(echo);
    CHECK(sb_bus_count(bus, SB_MSG_BENCH) > 0);
    sb_bus_free(bus);
    sb_test_ok("inproc request/reply, stream, timeout, error, unknown, ping, cancel, sizes");
}

static void
test_tcp(void)
{
    const char *secret = "a-test-secret-of-decent-length";
    char url_a[64], url_b[64], *joins[1];
    sb_bus_t *bus_a, *bus_b;
    sb_actor_t *echo, *client;
    report_t rep = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, "", 1};

    snprintf(url_a, sizeof url_a, "tcp://127.0.0.1:%d", sb_test_free_port());
    snprintf(url_b, sizeof url_b, "tcp://127.0.0.1:%d", sb_test_free_port());
    sb_bus_opts_t oa = {.node_name = "node-a", .listen = url_a, .secret = (const uint8_t *)secret,
                        .secret_len = strlen(secret), .hello_ms = 100};
    CHECK_EQ(sb_bus_alloc(&oa, &bus_a), 0);
    CHECK_EQ(sb_actor_spawn(bus_a, &echo_ops, NULL, &echo), 0);
    CHECK_EQ(sb_bus_start(bus_a), 0);

    /* tcp without a secret is refused at configuration time */
    sb_bus_t *open_bus;
    sb_bus_opts_t bad = {.listen = url_b};
    CHECK_EQ(sb_bus_alloc(&bad, &open_bus), SB_ECONFIG);

    joins[0] = url_a;
    sb_bus_opts_t ob = {.node_name = "node-b", .listen = url_b, .join = (const char *const *)joins,
                        .njoin = 1, .secret = (const uint8_t *)secret,
                        .secret_len = strlen(secret), .hello_ms = 100};
    CHECK_EQ(sb_bus_alloc(&ob, &bus_b), 0);
    CHECK_EQ(sb_bus_start(bus_b), 0);
    CHECK_EQ(sb_bus_wait_kind(bus_b, SB_ACTOR_SCHEDULER, 10000), 0);
    sb_node_info_t nodes[4];
    CHECK_EQ(sb_bus_nodes(bus_b, nodes, 4), 2);
    CHECK(strcmp(nodes[1].name, "node-a") == 0 && nodes[1].alive);

    CHECK_EQ(sb_actor_spawn(bus_b, &client_ops, &rep, &client), 0);
    wait_report(&rep, 10000);
    sb_test_ok("tcp request/reply across two nodes (same script as inproc)");

    /* A stranger: a raw NNG push peer with no secret, then one with the wrong secret. */
    uint64_t before = sb_bus_auth_refused(bus_a);
    nng_socket s;
    CHECK_EQ(nng_push0_open(&s), 0);
    CHECK_EQ(nng_dial(s, url_a, NULL, 0), 0);
    sb_buf_t b;
    sb_buf_init(&b, 0);
    sb_batch_begin(&b, 0x5555);
    sb_msg_t m = {.type = SB_MSG_BENCH, .flags = SB_MF_REQ, .dst_actor = SB_ACTOR_SCHEDULER,
                  .body = (const uint8_t *)"\x80", .body_len = 1};
    sb_batch_add(&b, &m);
    sb_batch_seal(&b, NULL, 0);
    CHECK_EQ(nng_send(s, b.data, b.len, 0), 0);
    uint64_t t0 = sb_now_mono_us();
    while (sb_bus_auth_refused(bus_a) == before && sb_now_mono_us() - t0 < 5000000)
        usleep(1000); /* polling a counter for the refusal event, with a deadline */
    CHECK(sb_bus_auth_refused(bus_a) > before);
    nng_close(s);
    before = sb_bus_auth_refused(bus_a);
    CHECK_EQ(nng_push0_open(&s), 0);
    CHECK_EQ(nng_dial(s, url_a, NULL, 0), 0);
    sb_batch_begin(&b, 0x5555);
    sb_batch_add(&b, &m);
    sb_batch_seal(&b, (const uint8_t *)"not-the-secret-at-all", 21);
    CHECK_EQ(nng_send(s, b.data, b.len, 0), 0);
    t0 = sb_now_mono_us();
    while (sb_bus_auth_refused(bus_a) == before && sb_now_mono_us() - t0 < 5000000)
        usleep(1000);
    CHECK(sb_bus_auth_refused(bus_a) > before);
    nng_close(s);
    sb_buf_fini(&b);
    sb_test_ok("a bus peer without the secret is refused");

    stop_join(client);
    stop_join(echo);
    sb_bus_free(bus_b);
    sb_bus_free(bus_a);
}

/* Backpressure: flood a peer that handles 50 messages/s; sends must start failing with
 * SB_EAGAIN (bounded queues), not grow without bound. */
typedef struct {
    sb_actor_t *a;
    report_t *rep;
    uv_timer_t t;
} flood_t;

static void
flood_tick(uv_timer_t *t)
{
    flood_t *f = t->data;
    sb_bench_t b = {.seq = 4, .payload = {"................................................", 48}};
    sb_buf_t *buf = sb_actor_scratch(f->a);
    sb_bench_encode(&b, buf);
    for (int i = 0; i < 1000; i++) {
        int r = sb_actor_send(f->a, sb_addr(SB_ACTOR_POOL), SB_MSG_BENCH, 0, 0, 0, buf->data,
                              buf->len);
        if (r == SB_EAGAIN) {
            uv_close((uv_handle_t *)t, NULL);
            pthread_mutex_lock(&f->rep->mu);
            f->rep->done = 1;
            pthread_cond_signal(&f->rep->cv);
            pthread_mutex_unlock(&f->rep->mu);
            return;
        }
        if (r != 0) {
            uv_close((uv_handle_t *)t, NULL);
            pthread_mutex_lock(&f->rep->mu);
            f->rep->done = f->rep->failed = 1;
            snprintf(f->rep->why, sizeof f->rep->why, "send: %s", sb_strerror(r));
            pthread_cond_signal(&f->rep->cv);
            pthread_mutex_unlock(&f->rep->mu);
            return;
        }
    }
}

static int
flood_init(sb_actor_t *a, void *state)
{
    flood_t *f = state;
    f->a = a;
    f->rep = sb_actor_arg(a);
    uv_timer_init(sb_actor_loop(a), &f->t);
    f->t.data = f;
    uv_timer_start(&f->t, flood_tick, 0, 1);
    return 0;
}

static sb_actor_ops_t flood_ops = {.abi = SB_ACTOR_ABI_V1, .name = "flood",
                                   .kind = SB_ACTOR_CLIENT, .state_size = sizeof(flood_t),
                                   .init = flood_init};

static void
test_backpressure(void)
{
    sb_bus_opts_t o = {0};
    sb_bus_t *bus;
    sb_actor_t *slow, *flood;
    report_t rep = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, "", 0};
    CHECK_EQ(sb_bus_alloc(&o, &bus), 0);
    CHECK_EQ(sb_actor_spawn(bus, &slow_ops, NULL, &slow), 0);
    CHECK_EQ(sb_actor_spawn(bus, &flood_ops, &rep, &flood), 0);
    wait_report(&rep, 30000);
    atomic_store(&slow_release, 1);
    stop_join(flood);
    /* the slow actor still has a backlog; stop must not hang on it */
    sb_actor_stop(slow, 500);
    CHECK_EQ(sb_actor_join(slow), 0);
    sb_actor_free(slow);
    sb_bus_free(bus);
    sb_test_ok("a full peer gives SB_EAGAIN (backpressure), and stop still completes");
}

int
main(void)
{
    sb_log_setup(SB_LOG_WARN, 0);
    test_inproc();
    test_tcp();
    test_backpressure();
    return sb_test_done();
}
