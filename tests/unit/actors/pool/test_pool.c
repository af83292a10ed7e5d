/*
 * test_pool.c: the pool actor on one bus with a fake executor (answers SBX_CREATE with a
 * fresh id, records SBX_DESTROY), a fake scheduler (accepts offers, answers withdrawals, and
 * on the test's word leases an offer by sending POOL_TAKEN) and a fake monitor (records
 * MON_POOL).  Each case spawns a pool with its own configuration.  Waits are on recorded
 * events with deadlines; the monitor's once-a-second reports serve as the clock for "nothing
 * more happens" checks.
 *
 * Cases: warm-up to min and MON_POOL; refill after POOL_TAKEN and growth toward max, never
 * holding more than max; max-age retirement (withdraw, then destroy "pool_retired", then
 * replace), and a sandbox leased while its withdrawal was in flight is left alone; creation
 * failures back off (doubling gaps) and recover; warm_on_start=false waits for the first
 * miss; stop destroys every warm sandbox held.
 */
#include "fake.h"

#include "actors/pool/pool.h"
#include "base/err.h"
#include "protocols/msgs.h"
#include "test.h"
#include "base/clock.h"

#include <string.h>

#define MAXIDS 512

static sb_bus_t *bus;

/* ---- what the fakes record (under fake_lock) ------------------------------------------- */

static struct {
    /* executor */
    int attempts, creates, fail, live, peak, bad_create;
    uint64_t attempt_us[64];
    char destroyed[MAXIDS][64];
    char reason_bad;
    int ndestroyed;
    /* scheduler */
    char offers[MAXIDS][64];
    int noffers, offers_total;
    char withdrawn[MAXIDS][64];
    int nwithdrawn;
    int take_on_withdraw;
    char leased_on_withdraw[64];
    /* monitor */
    int reports, last_warm, last_max, bad_report;
} R;

static int
has(char (*list)[64], int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], id))
            return 1;
    return 0;
}

static void
drop(char (*list)[64], int *n, const char *id)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(list[i], id)) {
            memmove(list[i], list[i + 1], (size_t)(*n - i - 1) * 64);
            (*n)--;
            return;
        }
}

/* ---- fake executor ---------------------------------------------------------------------- */

static fake_t fexec;

static int
exec_on_msg(fake_t *f, const sb_msg_t *m)
{
    sb_replyto_t to = sb_replyto(m);
    sb_buf_t *b = sb_actor_scratch(f->actor);
    if (m->type == SB_MSG_SBX_CREATE) {
        sb_sbx_create_t c;
        CHECK_EQ(sb_sbx_create_decode(m, &c), 0);
        if (!c.warm || !sb_str_eq(c.runtime, "python"))
            R.bad_create = 1;
        if (R.attempts < 64)
            R.attempt_us[R.attempts] = sb_now_mono_us();
        R.attempts++;
        if (R.fail) {
            sb_actor_reply_error(f->actor, &to, SB_EUNAVAILABLE, "fake: cannot create now");
            return 0;
        }
        char id[64];
        snprintf(id, sizeof id, "sbx-%016x", ++R.creates);
        if (++R.live > R.peak)
            R.peak = R.live;
        sb_sbx_info_t info = {.id = sb_str(id),
                              .node = SB_STR("pool-node"),
                              .node_id = sb_bus_node_id(bus),
                              .runtime = c.runtime,
                              .state = SB_STR("running"),
                              .created_ms = sb_now_real_ms()};
        CHECK_EQ(sb_sbx_info_encode(&info, b), 0);
        sb_actor_reply(f->actor, &to, SB_MSG_SBX_INFO, 0, b->data, b->len);
        return 0;
    }
    if (m->type == SB_MSG_SBX_DESTROY) {
        sb_sbx_destroy_t d;
        CHECK_EQ(sb_sbx_destroy_decode(m, &d), 0);
        if (!sb_str_eq(d.reason, "pool_retired"))
            R.reason_bad = 1;
        CHECK(R.ndestroyed < MAXIDS);
        sb_str_copy(R.destroyed[R.ndestroyed++], 64, d.id);
        R.live--;
        sb_exec_ack_t ack = {.id = d.id};
        CHECK_EQ(sb_exec_ack_encode(&ack, b), 0);
        sb_actor_reply(f->actor, &to, SB_MSG_EXEC_ACK, 0, b->data, b->len);
        return 0;
    }
    return SB_EUNKNOWN_TYPE;
}

/* ---- fake scheduler --------------------------------------------------------------------- */

static fake_t fsched;

static void
send_taken(fake_t *f, const char *id)
{
    sb_pool_taken_t t = {
        .node = sb_bus_node_id(bus), .sandbox = sb_str(id), .runtime = SB_STR("python")};
    sb_buf_t *b = sb_actor_scratch(f->actor);
    CHECK_EQ(sb_pool_taken_encode(&t, b), 0);
    CHECK_EQ(sb_actor_send(f->actor, sb_addr(SB_ACTOR_POOL), SB_MSG_POOL_TAKEN, 0, 0, 0, b->data,
                           b->len),
             0);
    R.live--; /* the gateway's now: the executor destroys it after its run */
}

static int
sched_on_msg(fake_t *f, const sb_msg_t *m)
{
    sb_replyto_t to = sb_replyto(m);
    sb_buf_t *b = sb_actor_scratch(f->actor);
    char id[64];
    if (m->type == SB_MSG_POOL_OFFER) {
        sb_pool_offer_t o;
        CHECK_EQ(sb_pool_offer_decode(m, &o), 0);
        CHECK(sb_str_eq(o.runtime, "python"));
        CHECK(o.node == sb_bus_node_id(bus));
        sb_str_copy(id, sizeof id, o.sandbox);
        CHECK(!has(R.offers, R.noffers, id)); /* offered once */
        CHECK(R.noffers < MAXIDS);
        snprintf(R.offers[R.noffers++], 64, "%s", id);
        R.offers_total++;
        sb_pool_ack_t ack = {.sandbox = o.sandbox};
        CHECK_EQ(sb_pool_ack_encode(&ack, b), 0);
        sb_actor_reply(f->actor, &to, SB_MSG_POOL_ACK, 0, b->data, b->len);
        return 0;
    }
    if (m->type == SB_MSG_POOL_WITHDRAW) {
        sb_pool_withdraw_t w;
        CHECK_EQ(sb_pool_withdraw_decode(m, &w), 0);
        sb_str_copy(id, sizeof id, w.sandbox);
        int on_offer = has(R.offers, R.noffers, id);
        drop(R.offers, &R.noffers, id);
        if (R.nwithdrawn < MAXIDS)
            snprintf(R.withdrawn[R.nwithdrawn++], 64, "%s", id);
        int withdrawn = on_offer;
        if (on_offer && R.take_on_withdraw) {
            /* It was leased just before the withdrawal arrived: POOL_TAKEN goes first. */
            R.take_on_withdraw = 0;
            snprintf(R.leased_on_withdraw, 64, "%s", id);
            send_taken(f, id);
            withdrawn = 0;
        }
        if (m->flags & SB_MF_REQ) {
            sb_pool_ack_t ack = {.sandbox = w.sandbox, .withdrawn = withdrawn};
            CHECK_EQ(sb_pool_ack_encode(&ack, b), 0);
            sb_actor_reply(f->actor, &to, SB_MSG_POOL_ACK, 0, b->data, b->len);
        }
        return 0;
    }
    return SB_EUNKNOWN_TYPE;
}

/* take: lease the n oldest offers (POOL_TAKEN to the pool). */
static void
take_fn(fake_t *f, void *arg)
{
    int n = *(int *)arg;
    for (int i = 0; i < n && R.noffers > 0; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s", R.offers[0]);
        drop(R.offers, &R.noffers, id);
        send_taken(f, id);
    }
}

static void
take(int n)
{
    fake_call(&fsched, take_fn, &n);
}

static void
miss_fn(fake_t *f, void *arg)
{
    (void)arg;
    sb_pool_taken_t t = {.node = sb_bus_node_id(bus), .runtime = SB_STR("python")};
    sb_buf_t *b = sb_actor_scratch(f->actor);
    CHECK_EQ(sb_pool_taken_encode(&t, b), 0);
    CHECK_EQ(sb_actor_send(f->actor, sb_addr(SB_ACTOR_POOL), SB_MSG_POOL_TAKEN, 0, 0, 0, b->data,
                           b->len),
             0);
}

/* ---- fake monitor ----------------------------------------------------------------------- */

static fake_t fmon;

static int
mon_on_msg(fake_t *f, const sb_msg_t *m)
{
    (void)f;
    if (m->type != SB_MSG_MON_POOL)
        return SB_EUNKNOWN_TYPE;
    sb_mon_pool_t p;
    CHECK_EQ(sb_mon_pool_decode(m, &p), 0);
    if (!sb_str_eq(p.runtime, "python") || !sb_str_eq(p.node, "pool-node"))
        R.bad_report = 1;
    R.reports++;
    R.last_warm = (int)p.warm;
    R.last_max = (int)p.max;
    return 0;
}

/* ---- waiting ---------------------------------------------------------------------------- */

static int want_offers, want_creates, want_destroyed, want_reports, want_attempts;

static int
offers_are(void *arg)
{
    (void)arg;
    return R.noffers == want_offers && (!want_creates || R.creates == want_creates);
}
static int
destroyed_reach(void *arg)
{
    (void)arg;
    return R.ndestroyed >= want_destroyed;
}
static int
reports_reach(void *arg)
{
    (void)arg;
    return R.reports >= want_reports;
}
static int
attempts_reach(void *arg)
{
    (void)arg;
    return R.attempts >= want_attempts;
}

static void
wait_offers(int n, int creates)
{
    want_offers = n;
    want_creates = creates;
    if (!fake_wait(offers_are, NULL, 20000)) {
        fprintf(stderr, "FAIL: want %d offers (%d creates), have %d (%d)\n", n, creates, R.noffers,
                R.creates);
        exit(1);
    }
}

/* wait_reports waits for n more MON_POOL reports (about n seconds). */
static void
wait_reports(int n)
{
    fake_lock();
    want_reports = R.reports + n;
    fake_unlock();
    CHECK(fake_wait(reports_reach, NULL, 10000 + n * 2000));
}

static int
locked_int(int *p)
{
    fake_lock();
    int v = *p;
    fake_unlock();
    return v;
}

/* ---- the pool per case ------------------------------------------------------------------ */

static sb_config_t cfg;
static sb_actor_t *pool;

static void
pool_start(const char *const *flags, int fail)
{
    fake_lock();
    memset(&R, 0, sizeof R);
    R.fail = fail; /* before the pool's first tick */
    fake_unlock();
    sb_test_config(&cfg, flags);
    pool = fake_spawn(bus, &sb_pool_actor, &cfg);
}

static void
pool_end(void)
{
    fake_stop_actor(pool, 3000);
    sb_config_fini(&cfg);
    fake_lock();
    CHECK(!R.bad_create && !R.reason_bad && !R.bad_report);
    fake_unlock();
}

/* ---- cases ------------------------------------------------------------------------------ */

static void
test_min_max_refill_stop(void)
{
    const char *flags[] = {"--pool.runtimes=python", "--pool.min_size=2", "--pool.max_size=4",
                           NULL};
    pool_start(flags, 0);
    wait_offers(2, 2);
    wait_reports(2);
    fake_lock();
    CHECK_EQ(R.creates, 2); /* min, and no more without demand */
    CHECK_EQ(R.last_warm, 2);
    CHECK_EQ(R.last_max, 4);
    fake_unlock();
    sb_test_ok("warms min sandboxes (warm=true) and offers each; MON_POOL warm=2 max=4");

    char first[64];
    fake_lock();
    snprintf(first, sizeof first, "%s", R.offers[0]);
    fake_unlock();
    take(1);
    wait_offers(3, 4); /* the taken one replaced, and the target grew by one */
    fake_lock();
    CHECK(!has(R.offers, R.noffers, first));
    fake_unlock();
    sb_test_ok("refills after POOL_TAKEN; a taken sandbox is never offered again");

    take(3);
    wait_offers(4, 8); /* grown to max */
    take(4);
    wait_offers(4, 12);
    wait_reports(2);
    fake_lock();
    CHECK_EQ(R.creates, 12);
    CHECK(R.peak <= 4);
    CHECK_EQ(R.last_warm, 4);
    CHECK_EQ(R.ndestroyed, 0);
    char held[4][64];
    for (int i = 0; i < 4; i++)
        snprintf(held[i], 64, "%s", R.offers[i]);
    fake_unlock();
    sb_test_ok("grows toward max under demand and never holds more than max");

    fake_stop_actor(pool, 3000);
    pool = NULL;
    fake_lock();
    CHECK_EQ(R.ndestroyed, 4);
    for (int i = 0; i < 4; i++) {
        CHECK(has(R.destroyed, R.ndestroyed, held[i]));
        CHECK(has(R.withdrawn, R.nwithdrawn, held[i]));
    }
    CHECK_EQ(R.live, 0);
    fake_unlock();
    sb_config_fini(&cfg);
    sb_test_ok("stop withdraws and destroys every warm sandbox it holds");
}

static void
test_max_age(void)
{
    const char *flags[] = {"--pool.min_size=2", "--pool.max_size=2", "--pool.max_age_s=1", NULL};
    pool_start(flags, 0);
    wait_offers(2, 2);
    char first[2][64];
    fake_lock();
    snprintf(first[0], 64, "%s", R.offers[0]);
    snprintf(first[1], 64, "%s", R.offers[1]);
    R.take_on_withdraw = 1; /* the first withdrawal races with a lease */
    fake_unlock();
    uint64_t t0 = sb_now_mono_us();
    want_destroyed = 1;
    CHECK(fake_wait(destroyed_reach, NULL, 20000));
    CHECK(sb_now_mono_us() - t0 >= 500 * 1000); /* not before its age */
    fake_lock();
    /* One of the first two was leased during its withdrawal and left alone; the other was
     * withdrawn, then destroyed. */
    CHECK(R.leased_on_withdraw[0]);
    CHECK(!has(R.destroyed, R.ndestroyed, R.leased_on_withdraw));
    const char *other = strcmp(R.leased_on_withdraw, first[0]) ? first[0] : first[1];
    CHECK(has(R.destroyed, R.ndestroyed, other));
    CHECK(has(R.withdrawn, R.nwithdrawn, other));
    CHECK(!has(R.offers, R.noffers, other));
    fake_unlock();
    /* Replacements come, are retired in turn, and the pool never exceeds max. */
    want_destroyed = 3;
    CHECK(fake_wait(destroyed_reach, NULL, 20000));
    fake_lock();
    CHECK(R.peak <= 2);
    for (int i = 0; i < R.ndestroyed; i++)
        CHECK(has(R.withdrawn, R.nwithdrawn, R.destroyed[i])); /* withdrawn before destroyed */
    fake_unlock();
    sb_test_ok("max age: withdrawn, destroyed (pool_retired), replaced; one leased during "
               "its withdrawal is left alone");
    pool_end();
}

static void
test_backoff(void)
{
    const char *flags[] = {"--pool.min_size=1", "--pool.max_size=1", NULL};
    pool_start(flags, 1);
    want_attempts = 5;
    CHECK(fake_wait(attempts_reach, NULL, 20000));
    fake_lock();
    /* Each retry waits at least half the doubling back-off (100, 200, 400 ms) -- receipt
     * times jitter, the back-off never shrinks. */
    for (int i = 1; i < 4; i++) {
        uint64_t gap = R.attempt_us[i + 1] - R.attempt_us[i];
        CHECK(gap >= (uint64_t)(100 << (i - 1)) * 1000 / 2);
    }
    R.fail = 0;
    fake_unlock();
    wait_offers(1, 1);
    CHECK(locked_int(&R.attempts) <= 12);
    sb_test_ok("creation failures back off (doubling) instead of hot-looping, then recover");
    pool_end();
}

static void
test_on_demand(void)
{
    const char *flags[] = {"--pool.min_size=1", "--pool.max_size=2", "--pool.warm_on_start=false",
                           NULL};
    pool_start(flags, 0);
    wait_reports(2);
    CHECK_EQ(locked_int(&R.attempts), 0);
    CHECK_EQ(locked_int(&R.last_warm), 0);
    fake_call(&fsched, miss_fn, NULL); /* a one-shot found no warm sandbox */
    wait_offers(2, 2);                 /* min 1, grown by the miss to 2 */
    sb_test_ok("warm_on_start=false: warming begins with the first miss");
    pool_end();
}

int
main(void)
{
    sb_bus_opts_t o = {.node_name = "pool-node"};
    CHECK_EQ(sb_bus_alloc(&o, &bus), 0);
    fake_start(&fexec, bus, SB_ACTOR_EXECUTOR, "fake-exec", exec_on_msg, NULL);
    fake_start(&fsched, bus, SB_ACTOR_SCHEDULER, "fake-sched", sched_on_msg, NULL);
    fake_start(&fmon, bus, SB_ACTOR_MONITOR, "fake-monitor", mon_on_msg, NULL);
    CHECK_EQ(sb_bus_start(bus), 0);

    test_min_max_refill_stop();
    test_max_age();
    test_backoff();
    test_on_demand();

    CHECK_EQ(fake_stop(&fmon), 0);
    CHECK_EQ(fake_stop(&fsched), 0);
    CHECK_EQ(fake_stop(&fexec), 0);
    sb_bus_free(bus);
    return sb_test_done();
}
