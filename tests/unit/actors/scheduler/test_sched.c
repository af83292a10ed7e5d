/*
 * test_sched.c: the scheduler actor against fake executors on two other nodes (three buses
 * joined over tcp loopback), a fake gateway and a fake pool.  Each case spawns a scheduler
 * with its own configuration.  Reports and releases are sent as requests, which the
 * scheduler acknowledges once applied, and a lease it grants on a release travels ahead of
 * that acknowledgement, so every step waits on an event, never on time.
 *
 * Cases: placement by free capacity and by runtime; affinity (existing -> node_hint; a lost
 * node refused); per-key limit (SB_ELIMIT with retry_after_ms) and RELEASE freeing the slot;
 * global limit with queueing, queue full and queue deadline (SB_EUNAVAILABLE with
 * retry_after_ms); fairness between keys; a node that stops reporting gets no work; a warm
 * offer is leased once only (also under concurrent requests; re-offer refused; withdraw);
 * sandbox leases count against max_sandboxes_per_key, not execution slots; lease reclaim.
 */
#include "fake.h"

#include "actors/scheduler/scheduler.h"
#include "base/err.h"
#include "protocols/msgs.h"
#include "test.h"
#include "base/clock.h"

#include <string.h>

static sb_bus_t *bus[3]; /* a: scheduler, gateway, pool; b and c: executors */
static uint64_t node_id[3];

/* ---- fake executors ------------------------------------------------------------------- */

typedef struct {
    fake_t f;
    const char *name;
    uint64_t max, used;
    const char *rts[4];
    int acked, failed;
} fexec_t;

static fexec_t ex[2]; /* ex[0] on node b, ex[1] on node c */

static void
ex_encode(fexec_t *e, sb_buf_t *b)
{
    uint8_t arr[256];
    size_t n = 0, k = 0;
    while (k < 4 && e->rts[k])
        k++;
    arr[n++] = (uint8_t)(0x90 | k);
    for (size_t i = 0; i < k; i++) {
        size_t l = strlen(e->rts[i]);
        arr[n++] = (uint8_t)(0xa0 | l);
        memcpy(arr + n, e->rts[i], l);
        n += l;
    }
    sb_node_capacity_t c = {.node = sb_str(e->name),
                            .sandboxes = e->used,
                            .max_sandboxes = e->max,
                            .runtimes = {(const char *)arr, (uint32_t)n}};
    sb_buf_reset(b);
    CHECK_EQ(sb_node_capacity_encode(&c, b), 0);
}

static void
ex_on_ack(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    fexec_t *e = ud;
    (void)a;
    (void)m;
    fake_lock();
    if (status == 0)
        e->acked++;
    else
        e->failed++;
    fake_wake();
    fake_unlock();
}

static void
ex_report_fn(fake_t *f, void *arg)
{
    fexec_t *e = f->user;
    sb_buf_t *b = sb_actor_scratch(f->actor);
    ex_encode(e, b);
    if (arg) {
        if (sb_actor_request(f->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_NODE_CAPACITY, b->data,
                             b->len, 1000, ex_on_ack, e, NULL) != 0)
            e->failed++;
    } else {
        sb_actor_send(f->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_NODE_CAPACITY, 0, 0, 0, b->data,
                      b->len);
    }
}

typedef struct {
    fexec_t *e;
    int acked, failed;
} ex_wait_t;

static int
ex_answered(void *arg)
{
    ex_wait_t *w = arg;
    return w->e->acked != w->acked || w->e->failed != w->failed;
}

/* report: send NODE_CAPACITY and wait until the scheduler applied it (retrying while a freshly
 * spawned scheduler is not yet routable from the executor's node). */
static void
report(fexec_t *e, uint64_t max, uint64_t used)
{
    fake_lock();
    e->max = max;
    e->used = used;
    fake_unlock();
    /* A scheduler spawned a moment ago is routable from e's node once a HELLO says so. */
    CHECK_EQ(sb_bus_wait_kind(sb_actor_bus(e->f.actor), SB_ACTOR_SCHEDULER, 10000), 0);
    for (int tries = 0; tries < 5; tries++) {
        fake_lock();
        ex_wait_t w = {e, e->acked, e->failed};
        fake_unlock();
        fake_call(&e->f, ex_report_fn, (void *)1);
        CHECK(fake_wait(ex_answered, &w, 5000));
        fake_lock();
        int ok = e->acked != w.acked;
        fake_unlock();
        if (ok)
            return;
    }
    CHECK(!"the scheduler never acknowledged NODE_CAPACITY");
}

static void
ex_periodic(fake_t *f, void *arg)
{
    (void)arg;
    ex_report_fn(f, NULL);
}

/* ---- the fake gateway ------------------------------------------------------------------- */

typedef struct {
    int done, status, seq;
    uint64_t lease, node;
    char sandbox[64], err[512];
} res_t;

static fake_t gw;
#define NRES 4096 /* a ring: probes reuse old slots, long since answered */
static res_t res[NRES];
static int nres, done_seq, releases;

static void
gw_on_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    res_t *r = &res[(intptr_t)ud];
    (void)a;
    fake_lock();
    r->status = status;
    if (status == 0 && m && m->type == SB_MSG_LEASE) {
        sb_lease_t l;
        CHECK_EQ(sb_lease_decode(m, &l), 0);
        r->lease = l.lease;
        r->node = l.node;
        sb_str_copy(r->sandbox, sizeof r->sandbox, l.sandbox);
    } else if (m && m->type == SB_MSG_ERROR) {
        sb_error_t e;
        if (sb_error_decode(m, &e) == 0)
            sb_str_copy(r->err, sizeof r->err, e.message);
    }
    r->seq = ++done_seq;
    r->done = 1;
    fake_wake();
    fake_unlock();
}

typedef struct {
    const char *owner, *kind, *runtime, *sandbox;
    uint64_t hint;
    int idx;
} place_t;

static void
gw_place_fn(fake_t *f, void *arg)
{
    place_t *p = arg;
    sb_place_t pl = {.runtime = sb_str(p->runtime),
                     .owner = sb_str(p->owner),
                     .kind = sb_str(p->kind),
                     .sandbox = sb_str(p->sandbox),
                     .node_hint = p->hint};
    sb_buf_t *b = sb_actor_scratch(f->actor);
    CHECK_EQ(sb_place_encode(&pl, b), 0);
    CHECK_EQ(sb_actor_request(f->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_PLACE, b->data, b->len,
                              30000, gw_on_reply, (void *)(intptr_t)p->idx, NULL),
             0);
}

/* place_async sends PLACE; returns the index of its result. */
static int
place_async(const char *owner, const char *kind, const char *runtime, const char *sandbox,
            uint64_t hint)
{
    fake_lock();
    int n = nres++, idx = n % NRES;
    CHECK(n < NRES || res[idx].done);
    memset(&res[idx], 0, sizeof res[idx]);
    fake_unlock();
    place_t p = {owner, kind, runtime, sandbox ? sandbox : "", hint, idx};
    fake_call(&gw, gw_place_fn, &p);
    return idx;
}

static int
res_done(void *arg)
{
    return res[(intptr_t)arg].done;
}

static res_t *
wait_res(int idx)
{
    CHECK(fake_wait(res_done, (void *)(intptr_t)idx, 15000));
    return &res[idx];
}

static res_t *
place(const char *owner, const char *kind, const char *runtime, const char *sandbox, uint64_t hint)
{
    return wait_res(place_async(owner, kind, runtime, sandbox, hint));
}

static int
is_done(int idx)
{
    fake_lock();
    int d = res[idx].done;
    fake_unlock();
    return d;
}

static void
gw_on_release_ack(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    (void)a;
    (void)m;
    (void)ud;
    CHECK_EQ(status, 0);
    fake_lock();
    releases++;
    fake_wake();
    fake_unlock();
}

static void
gw_release_fn(fake_t *f, void *arg)
{
    sb_release_t r = {.lease = *(uint64_t *)arg};
    sb_buf_t *b = sb_actor_scratch(f->actor);
    CHECK_EQ(sb_release_encode(&r, b), 0);
    CHECK_EQ(sb_actor_request(f->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_RELEASE, b->data,
                              b->len, 5000, gw_on_release_ack, NULL, NULL),
             0);
}

static int
releases_reach(void *arg)
{
    return releases >= *(int *)arg;
}

/* release: RELEASE and wait for its acknowledgement (any lease it frees reached us first). */
static void
release(uint64_t lease)
{
    fake_lock();
    int want = releases + 1;
    fake_unlock();
    fake_call(&gw, gw_release_fn, &lease);
    CHECK(fake_wait(releases_reach, &want, 10000));
}

/* ---- the fake pool ---------------------------------------------------------------------- */

static fake_t pool;
static char taken[64][64];
static int ntaken, nmisses, offer_status, offer_done, withdrawn, withdraw_done;

static int
pool_on_msg(fake_t *f, const sb_msg_t *m)
{
    (void)f;
    if (m->type != SB_MSG_POOL_TAKEN)
        return SB_EUNKNOWN_TYPE;
    sb_pool_taken_t t;
    CHECK_EQ(sb_pool_taken_decode(m, &t), 0);
    if (t.sandbox.len == 0) {
        CHECK(t.runtime.len > 0); /* a miss names its runtime */
        nmisses++;
    } else if (ntaken < 64) {
        sb_str_copy(taken[ntaken++], 64, t.sandbox);
    }
    return 0;
}

static void
pool_on_ack(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    (void)a;
    fake_lock();
    if (ud) {
        sb_pool_ack_t ack;
        withdrawn = status == 0 && sb_pool_ack_decode(m, &ack) == 0 && ack.withdrawn;
        withdraw_done = 1;
    } else {
        offer_status = status;
        offer_done = 1;
    }
    fake_wake();
    fake_unlock();
}

typedef struct {
    const char *id;
    uint64_t node;
    int withdraw;
} offer_t;

static void
pool_offer_fn(fake_t *f, void *arg)
{
    offer_t *o = arg;
    sb_buf_t *b = sb_actor_scratch(f->actor);
    if (o->withdraw) {
        sb_pool_withdraw_t w = {.node = o->node, .sandbox = sb_str(o->id)};
        CHECK_EQ(sb_pool_withdraw_encode(&w, b), 0);
        withdraw_done = 0;
        CHECK_EQ(sb_actor_request(f->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_POOL_WITHDRAW,
                                  b->data, b->len, 5000, pool_on_ack, (void *)1, NULL),
                 0);
    } else {
        sb_pool_offer_t of = {.node = o->node,
                              .runtime = SB_STR("python"),
                              .sandbox = sb_str(o->id),
                              .created_ms = sb_now_real_ms()};
        CHECK_EQ(sb_pool_offer_encode(&of, b), 0);
        offer_done = 0;
        CHECK_EQ(sb_actor_request(f->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_POOL_OFFER, b->data,
                                  b->len, 5000, pool_on_ack, NULL, NULL),
                 0);
    }
}

static int
flag_set(void *arg)
{
    return *(int *)arg;
}

static int
offer(const char *id, uint64_t node)
{
    offer_t o = {id, node, 0};
    fake_call(&pool, pool_offer_fn, &o);
    CHECK(fake_wait(flag_set, &offer_done, 10000));
    return offer_status;
}

static int
withdraw(const char *id, uint64_t node)
{
    offer_t o = {id, node, 1};
    fake_call(&pool, pool_offer_fn, &o);
    CHECK(fake_wait(flag_set, &withdraw_done, 10000));
    return withdrawn;
}

/* ---- scheduler per case ----------------------------------------------------------------- */

static sb_config_t cfg;
static sb_actor_t *sched;

static void
sched_start(const char *const *flags)
{
    sb_test_config(&cfg, flags);
    sched = fake_spawn(bus[0], &sb_scheduler_actor, &cfg);
}

static void
sched_end(void)
{
    fake_stop_actor(sched, 2000);
    sb_config_fini(&cfg);
}

static int
retry_hint(const res_t *r)
{
    return strncmp(r->err, "retry_after_ms=", 15) == 0 && strtoull(r->err + 15, NULL, 10) > 0;
}

/* ---- cases ------------------------------------------------------------------------------ */

static void
test_capacity_runtime_affinity(void)
{
    const char *flags[] = {"--scheduler.queue_timeout_ms=300", NULL};
    sched_start(flags);
    report(&ex[0], 10, 8); /* b: 2 free */
    report(&ex[1], 10, 2); /* c: 8 free */
    res_t *r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, 0);
    CHECK(r->node == node_id[2]);
    CHECK_EQ(r->sandbox[0], 0); /* no warm sandbox: the executor creates one */
    release(r->lease);
    report(&ex[1], 10, 10); /* c full */
    r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, 0);
    CHECK(r->node == node_id[1]);
    uint64_t l1 = r->lease;
    r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, 0);
    CHECK(r->node == node_id[1]); /* b's last free slot (its report does not know of l1 yet) */
    uint64_t l2 = r->lease;
    sb_test_ok("placement follows free capacity, counting leases since the last report");

    /* Both full: the request waits, then expires with 503 + retry hint. */
    int q = place_async("k1", "oneshot", "python", NULL, 0);
    r = wait_res(q);
    CHECK_EQ(r->status, SB_EUNAVAILABLE);
    CHECK(retry_hint(r));
    CHECK(strstr(r->err, "no capacity"));
    release(l1);
    release(l2);
    sb_test_ok("no capacity: queued, then 503 with retry_after_ms at the queue deadline");

    /* Runtime: only c runs javascript, although b has more room. */
    report(&ex[1], 10, 5);
    report(&ex[0], 10, 0);
    r = place("k1", "oneshot", "javascript", NULL, 0);
    CHECK_EQ(r->status, 0);
    CHECK(r->node == node_id[2]);
    release(r->lease);
    r = place("k1", "oneshot", "ruby", NULL, 0);
    CHECK_EQ(r->status, SB_EUNAVAILABLE);
    CHECK(retry_hint(r));
    CHECK(strstr(r->err, "ruby"));
    sb_test_ok("placement by runtime; a runtime no node runs is 503 at once");

    /* Affinity: existing goes to node_hint even when another node is emptier. */
    r = place("k1", "existing", "python", "sbx-0123456789abcdef", node_id[2]);
    CHECK_EQ(r->status, 0);
    CHECK(r->node == node_id[2]);
    CHECK(strcmp(r->sandbox, "sbx-0123456789abcdef") == 0);
    release(r->lease);
    r = place("k1", "existing", "python", "sbx-0123456789abcdef", 0x1234567);
    CHECK_EQ(r->status, SB_EUNAVAILABLE);
    CHECK(retry_hint(r));
    CHECK(strstr(r->err, "node lost"));
    r = place("k1", "existing", "python", "", node_id[2]);
    CHECK_EQ(r->status, SB_EINVAL);
    r = place("k1", "bogus", "python", NULL, 0);
    CHECK_EQ(r->status, SB_EINVAL);
    sb_test_ok("existing sandbox: its node (node_hint); a node not reporting is 'node lost'");
    sched_end();
}

static void
test_limits(void)
{
    const char *flags[] = {"--scheduler.max_concurrent_per_key=3", "--scheduler.max_concurrent=5",
                           "--scheduler.max_queue=1", "--scheduler.max_sandboxes_per_key=2", NULL};
    sched_start(flags);
    report(&ex[0], 100, 0);
    report(&ex[1], 100, 0);
    uint64_t k1[3];
    for (int i = 0; i < 3; i++) {
        res_t *r = place("k1", "oneshot", "python", NULL, 0);
        CHECK_EQ(r->status, 0);
        k1[i] = r->lease;
    }
    res_t *r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, SB_ELIMIT);
    CHECK(retry_hint(r));
    r = place("k2", "oneshot", "python", NULL, 0); /* another key is not affected */
    CHECK_EQ(r->status, 0);
    uint64_t k2a = r->lease;
    release(k1[0]);
    r = place("k1", "oneshot", "python", NULL, 0); /* the released slot is free again */
    CHECK_EQ(r->status, 0);
    k1[0] = r->lease;
    sb_test_ok("per-key limit: SB_ELIMIT with retry_after_ms; RELEASE frees the slot");

    /* Global: 5 placed (k1 x3, k2 x1, k3 x1), the next one queues, one more is 503. */
    r = place("k3", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, 0);
    uint64_t k3a = r->lease;
    int q = place_async("k2", "oneshot", "python", NULL, 0);
    r = place("k4", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, SB_EUNAVAILABLE);
    CHECK(retry_hint(r));
    CHECK(!is_done(q));
    release(k3a); /* the queued one is placed before this release is acknowledged */
    CHECK(is_done(q));
    CHECK_EQ(res[q].status, 0);
    sb_test_ok("global limit: queued while full, queue full is 503 with retry_after_ms; a "
               "release places the queued request");

    /* Sandbox leases: their own per-key limit, not execution slots. */
    uint64_t s1 = place("k1", "sandbox", "python", NULL, 0)->lease;
    r = place("k1", "sandbox", "python", NULL, 0);
    CHECK_EQ(r->status, 0);
    uint64_t s2 = r->lease;
    r = place("k1", "sandbox", "python", NULL, 0);
    CHECK_EQ(r->status, SB_ELIMIT);
    CHECK(retry_hint(r));
    CHECK(strstr(r->err, "sandboxes"));
    release(s1);
    r = place("k1", "sandbox", "python", NULL, 0);
    CHECK_EQ(r->status, 0);
    release(r->lease);
    release(s2);
    sb_test_ok("sandbox leases: max_sandboxes_per_key (429), outside the execution slots");
    for (int i = 0; i < 3; i++)
        release(k1[i]);
    release(k2a);
    release(res[q].lease);
    sched_end();
}

static void
test_fairness(void)
{
    const char *flags[] = {"--scheduler.max_concurrent_per_key=50", "--scheduler.max_concurrent=2",
                           "--scheduler.max_queue=100", "--scheduler.queue_timeout_ms=60000", NULL};
    sched_start(flags);
    report(&ex[0], 100, 0);
    report(&ex[1], 100, 0);
    uint64_t a0 = place("flood", "oneshot", "python", NULL, 0)->lease;
    uint64_t a1 = place("flood", "oneshot", "python", NULL, 0)->lease;
    int aq[20];
    for (int i = 0; i < 20; i++)
        aq[i] = place_async("flood", "oneshot", "python", NULL, 0);
    int b = place_async("quiet", "oneshot", "python", NULL, 0);
    /* The pool of slots frees one at a time; round-robin gives "quiet" a turn after at most
     * one more of "flood"'s, long before flood's queue drains. */
    uint64_t held[2] = {a0, a1};
    int rounds = 0;
    while (!is_done(b)) {
        CHECK(rounds < 2);
        release(held[rounds]);
        rounds++;
    }
    CHECK_EQ(res[b].status, 0);
    int flood_done = 0;
    for (int i = 0; i < 20; i++)
        flood_done += is_done(aq[i]);
    CHECK(flood_done <= 1);
    /* And flood's own requests are served in their order. */
    for (int i = 0; i < flood_done; i++)
        CHECK(is_done(aq[i]));
    sb_test_ok("fairness: a quiet key is served before a flooding key's queue drains");
    /* Drain: each release places the next. */
    release(res[b].lease);
    for (int i = 0; i < 20; i++) {
        res_t *r = wait_res(aq[i]);
        CHECK_EQ(r->status, 0);
        release(r->lease);
    }
    if (rounds < 2)
        release(held[1]);
    sched_end();
}

static void
test_stale_node(void)
{
    const char *flags[] = {"--scheduler.node_stale_ms=1500", NULL};
    sched_start(flags);
    report(&ex[0], 100, 0); /* b: most room */
    report(&ex[1], 100, 50);
    fake_every(&ex[0].f, 100, ex_periodic);
    fake_every(&ex[1].f, 100, ex_periodic);
    res_t *r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, 0);
    CHECK(r->node == node_id[1]);
    release(r->lease);
    fake_every(&ex[0].f, 0, NULL); /* b goes quiet */
    /* Probe until the scheduler stops using b (a bounded sequence of placements). */
    uint64_t t0 = sb_now_mono_us();
    int moved = 0;
    while (!moved && sb_now_mono_us() - t0 < 20000000) {
        r = place("k1", "oneshot", "python", NULL, 0);
        CHECK_EQ(r->status, 0);
        moved = r->node == node_id[2];
        release(r->lease);
    }
    CHECK(moved);
    CHECK(sb_now_mono_us() - t0 >= 1000 * 1000); /* never before b's reports went stale */
    for (int i = 0; i < 5; i++) {
        r = place("k1", "oneshot", "python", NULL, 0);
        CHECK_EQ(r->status, 0);
        CHECK(r->node == node_id[2]);
        release(r->lease);
    }
    fake_every(&ex[1].f, 0, NULL);
    sb_test_ok("a node that stops reporting gets no new work");
    sched_end();
}

static void
test_warm_offers(void)
{
    sched_start(NULL);
    report(&ex[0], 100, 10);
    report(&ex[1], 100, 0);
    fake_lock();
    ntaken = nmisses = 0;
    fake_unlock();
    /* A warm sandbox on b is preferred over an emptier c. */
    CHECK_EQ(offer("sbx-warm1", node_id[1]), 0);
    res_t *r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, 0);
    CHECK(r->node == node_id[1]);
    CHECK(strcmp(r->sandbox, "sbx-warm1") == 0);
    uint64_t l1 = r->lease;
    CHECK(fake_wait(flag_set, &ntaken, 10000));
    fake_lock();
    CHECK(strcmp(taken[0], "sbx-warm1") == 0);
    fake_unlock();
    r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, 0);
    CHECK_EQ(r->sandbox[0], 0);
    CHECK(r->node == node_id[2]);
    CHECK(fake_wait(flag_set, &nmisses, 10000)); /* the pool hears of the miss */
    release(r->lease);
    /* The same id offered again (while leased, and after release) is refused. */
    CHECK_EQ(offer("sbx-warm1", node_id[1]), SB_EEXIST);
    release(l1);
    CHECK_EQ(offer("sbx-warm1", node_id[1]), SB_EEXIST);
    r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->sandbox[0], 0);
    release(r->lease);
    /* Two requests at once, one offer: exactly one gets it. */
    CHECK_EQ(offer("sbx-warm2", node_id[2]), 0);
    int x = place_async("k1", "oneshot", "python", NULL, 0);
    int y = place_async("k2", "oneshot", "python", NULL, 0);
    wait_res(x);
    wait_res(y);
    CHECK_EQ(res[x].status, 0);
    CHECK_EQ(res[y].status, 0);
    CHECK_EQ(
        (strcmp(res[x].sandbox, "sbx-warm2") == 0) + (strcmp(res[y].sandbox, "sbx-warm2") == 0), 1);
    release(res[x].lease);
    release(res[y].lease);
    /* A withdrawn offer is not leased; withdrawing a leased one says so. */
    CHECK_EQ(offer("sbx-warm3", node_id[2]), 0);
    CHECK_EQ(withdraw("sbx-warm3", node_id[2]), 1);
    r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->sandbox[0], 0);
    release(r->lease);
    CHECK_EQ(withdraw("sbx-warm2", node_id[2]), 0);
    sb_test_ok("a warm offer is leased once (POOL_TAKEN), never twice; re-offers refused");
    sched_end();
}

static void
test_reclaim(void)
{
    const char *flags[] = {"--scheduler.max_concurrent_per_key=1",
                           "--scheduler.lease_timeout_ms=200", NULL};
    sched_start(flags);
    report(&ex[0], 100, 0);
    report(&ex[1], 100, 0);
    res_t *r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, 0);
    r = place("k1", "oneshot", "python", NULL, 0);
    CHECK_EQ(r->status, SB_ELIMIT);
    /* Never released: reclaimed after the lease timeout, so the key gets its slot back. */
    uint64_t t0 = sb_now_mono_us();
    int ok = 0;
    while (!ok && sb_now_mono_us() - t0 < 20000000) {
        r = place("k1", "oneshot", "python", NULL, 0);
        ok = r->status == 0;
        if (!ok)
            CHECK_EQ(r->status, SB_ELIMIT);
    }
    CHECK(ok);
    CHECK(sb_now_mono_us() - t0 >= 150 * 1000);
    release(r->lease);
    sb_test_ok("a lease never released is reclaimed after scheduler.lease_timeout_ms");
    sched_end();
}

int
main(void)
{
    fake_buses(bus, 3);
    for (int i = 0; i < 3; i++)
        node_id[i] = sb_bus_node_id(bus[i]);
    static const char *rts_b[] = {"python", NULL};
    static const char *rts_c[] = {"python", "javascript", NULL};
    ex[0].name = "node-b";
    ex[1].name = "node-c";
    memcpy(ex[0].rts, rts_b, sizeof rts_b);
    memcpy(ex[1].rts, rts_c, sizeof rts_c);
    fake_start(&ex[0].f, bus[1], SB_ACTOR_EXECUTOR, "fake-exec-b", NULL, &ex[0]);
    fake_start(&ex[1].f, bus[2], SB_ACTOR_EXECUTOR, "fake-exec-c", NULL, &ex[1]);
    fake_start(&gw, bus[0], SB_ACTOR_CLIENT, "fake-gateway", NULL, NULL);
    fake_start(&pool, bus[0], SB_ACTOR_POOL, "fake-pool", pool_on_msg, NULL);
    fake_buses_start(bus, 3);

    test_capacity_runtime_affinity();
    test_limits();
    test_fairness();
    test_warm_offers();
    test_reclaim();
    test_stale_node();

    CHECK_EQ(fake_stop(&gw), 0);
    CHECK_EQ(fake_stop(&pool), 0);
    CHECK_EQ(fake_stop(&ex[0].f), 0);
    CHECK_EQ(fake_stop(&ex[1].f), 0);
    for (int i = 2; i >= 0; i--)
        sb_bus_free(bus[i]);
    return sb_test_done();
}
