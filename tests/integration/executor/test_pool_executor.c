/*
 * test_pool_executor.c: the warm path end to end with the real executor (real sandboxes:
 * needs root, user namespaces and cgroups, as on the build machine).  One bus carries the
 * executor, the pool, the scheduler, a fake monitor and a fake gateway that does what the
 * gateway does for POST /api/v1/execute: PLACE (oneshot) -> RUN on the leased node's executor
 * with the leased warm sandbox and destroy=true -> RELEASE.
 *
 * Checked: one-shot executions get warm sandboxes from the pool, each a different one; what a
 * run leaves behind (a file in the home directory, a background process) is never seen by the
 * next run; a used sandbox is gone from the executor afterwards; the pool refills; the pool's
 * NODE_CAPACITY-driven placement lands on the executor's node; on stop the pool destroys its
 * warm sandboxes and every loop closes cleanly.
 */
#include "fake.h"

#include "actors/executor/executor.h"
#include "actors/pool/pool.h"
#include "actors/scheduler/scheduler.h"
#include "base/err.h"
#include "protocols/msgs.h"
#include "test.h"

#include <signal.h>
#include <string.h>

static sb_bus_t *bus;
static fake_t gw, mon;
static int mon_warm, mon_reports;

static int
mon_on_msg(fake_t *f, const sb_msg_t *m)
{
    (void)f;
    if (m->type == SB_MSG_MON_POOL) {
        sb_mon_pool_t p;
        CHECK_EQ(sb_mon_pool_decode(m, &p), 0);
        mon_warm = (int)p.warm;
        mon_reports++;
    }
    return 0; /* MON_SANDBOX, MON_EXEC: not ours to check */
}

/* ---- one call at a time from the fake gateway -------------------------------------------- */

static struct {
    int done, status;
    uint16_t type;
    char err[512];
    sb_buf_t body;
} rep;

static void
gw_on_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    (void)a;
    (void)ud;
    fake_lock();
    if (status == 0 && m && (m->flags & SB_MF_STREAM)) { /* an OUTPUT chunk: wait for RESULT */
        fake_unlock();
        return;
    }
    rep.status = status;
    rep.type = m ? m->type : 0;
    sb_buf_reset(&rep.body);
    if (m)
        sb_buf_append(&rep.body, m->body, m->body_len);
    if (m && m->type == SB_MSG_ERROR) {
        sb_error_t e;
        if (sb_error_decode(m, &e) == 0)
            sb_str_copy(rep.err, sizeof rep.err, e.message);
    }
    rep.done = 1;
    fake_wake();
    fake_unlock();
}

typedef struct {
    sb_addr_t to;
    uint16_t type;
    sb_buf_t *body;
    uint32_t timeout_ms;
} req_t;

static void
gw_send_fn(fake_t *f, void *arg)
{
    req_t *r = arg;
    rep.done = 0;
    rep.err[0] = 0;
    CHECK_EQ(sb_actor_request(f->actor, r->to, r->type, r->body->data, r->body->len, r->timeout_ms,
                              gw_on_reply, NULL, NULL),
             0);
}

static int
rep_done(void *arg)
{
    (void)arg;
    return rep.done;
}

static sb_msg_t
call(sb_addr_t to, uint16_t type, sb_buf_t *body, uint32_t timeout_ms)
{
    req_t r = {to, type, body, timeout_ms};
    fake_call(&gw, gw_send_fn, &r);
    CHECK(fake_wait(rep_done, NULL, (int)timeout_ms + 5000));
    return (sb_msg_t){.type = rep.type, .body = rep.body.data, .body_len = (uint32_t)rep.body.len};
}

typedef struct {
    uint64_t lease, node;
    char sandbox[64];
} lease_t;

static int
place(lease_t *out)
{
    sb_buf_t b;
    sb_buf_init(&b, 0);
    sb_place_t p = {
        .runtime = SB_STR("python"), .owner = SB_STR("tenant"), .kind = SB_STR("oneshot")};
    CHECK_EQ(sb_place_encode(&p, &b), 0);
    sb_msg_t m = call(sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_PLACE, &b, 10000);
    sb_buf_fini(&b);
    if (rep.status != 0)
        return rep.status;
    sb_lease_t l;
    CHECK_EQ(sb_lease_decode(&m, &l), 0);
    out->lease = l.lease;
    out->node = l.node;
    sb_str_copy(out->sandbox, sizeof out->sandbox, l.sandbox);
    return 0;
}

static void
release(const lease_t *l)
{
    sb_buf_t b;
    sb_buf_init(&b, 0);
    sb_release_t r = {.lease = l->lease, .sandbox = sb_str(l->sandbox)};
    CHECK_EQ(sb_release_encode(&r, &b), 0);
    call(sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_RELEASE, &b, 5000); /* acknowledged when applied */
    CHECK_EQ(rep.status, 0);
    sb_buf_fini(&b);
}

/* run code in the leased sandbox as the gateway does (destroy after); returns stdout. */
static char *
run(const lease_t *l, const char *code)
{
    sb_buf_t b;
    sb_buf_init(&b, 0);
    sb_run_t r = {.sandbox = sb_str(l->sandbox),
                  .runtime = SB_STR("python"),
                  .code = sb_str(code),
                  .timeout_ms = 10000,
                  .destroy = true,
                  .owner = SB_STR("tenant")};
    CHECK_EQ(sb_run_encode(&r, &b), 0);
    sb_msg_t m = call((sb_addr_t){l->node == sb_bus_node_id(bus) ? 0 : l->node, SB_ACTOR_EXECUTOR},
                      SB_MSG_RUN, &b, 20000);
    sb_buf_fini(&b);
    if (rep.status != 0)
        fprintf(stderr, "RUN failed: %s %s\n", sb_err_name(rep.status), rep.err);
    CHECK_EQ(rep.status, 0);
    CHECK_EQ(m.type, SB_MSG_RESULT);
    sb_result_t res;
    CHECK_EQ(sb_result_decode(&m, &res), 0);
    if (!sb_str_eq(res.status, "exited"))
        fprintf(stderr, "run status %.*s: %.*s %.*s\n", (int)res.status.len, res.status.ptr,
                (int)res.stderr.len, res.stderr.ptr, (int)res.error.len, res.error.ptr);
    CHECK(sb_str_eq(res.status, "exited"));
    return sb_str_dup(res.stdout);
}

static int
destroy(const char *id)
{
    sb_buf_t b;
    sb_buf_init(&b, 0);
    sb_sbx_destroy_t d = {.id = sb_str(id), .reason = SB_STR("deleted")};
    CHECK_EQ(sb_sbx_destroy_encode(&d, &b), 0);
    call(sb_addr(SB_ACTOR_EXECUTOR), SB_MSG_SBX_DESTROY, &b, 10000);
    sb_buf_fini(&b);
    return rep.status;
}

static int want_reports;

static int
reports_reach(void *arg)
{
    (void)arg;
    return mon_reports >= want_reports;
}

/* warm_lease: a lease with a warm sandbox, waiting (a MON_POOL report at a time) for the pool
 * to have one on offer.  Leases without one are released unused. */
static void
warm_lease(lease_t *l)
{
    for (int i = 0; i < 60; i++) {
        int r = place(l);
        if (r == 0 && l->sandbox[0])
            return;
        if (r == 0)
            release(l);
        else /* at start: the executor has not reported its capacity yet */
            CHECK_EQ(r, SB_EUNAVAILABLE);
        fake_lock();
        want_reports = mon_reports + 1;
        fake_unlock();
        CHECK(fake_wait(reports_reach, NULL, 10000));
    }
    CHECK(!"no warm sandbox offered within 60 pool reports");
}

static const char *code_dirty = "import os, subprocess\n"
                                "open('/home/user/leftover.txt', 'w').write('secret')\n"
                                "subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
                                "print('dirty')\n";

static const char *code_check =
    "import os\n"
    "seen = os.path.exists('/home/user/leftover.txt')\n"
    "procs = []\n"
    "for p in os.listdir('/proc'):\n"
    "    if p.isdigit():\n"
    "        try:\n"
    "            procs.append(open('/proc/%s/cmdline' % p).read())\n"
    "        except OSError:\n"
    "            pass\n"
    "sleeping = any(c.startswith('sleep') for c in procs)\n"
    "print('clean' if not seen and not sleeping else 'LEAK file=%s sleep=%s' % (seen, sleeping))\n";

int
main(void)
{
    sb_config_t cfg;
    const char *flags[] = {"--pool.runtimes=python", "--pool.min_size=2", "--pool.max_size=3",
                           "--executor.max_sandboxes=16", NULL};
    signal(SIGPIPE, SIG_IGN);
    sb_buf_init(&rep.body, 0);
    sb_test_config(&cfg, flags);
    sb_bus_opts_t o = {.node_name = "exec-node"};
    CHECK_EQ(sb_bus_alloc(&o, &bus), 0);
    fake_start(&mon, bus, SB_ACTOR_MONITOR, "fake-monitor", mon_on_msg, NULL);
    sb_actor_t *exec = fake_spawn(bus, &sb_executor_actor, &cfg);
    sb_actor_t *pool = fake_spawn(bus, &sb_pool_actor, &cfg);
    sb_actor_t *sched = fake_spawn(bus, &sb_scheduler_actor, &cfg);
    fake_start(&gw, bus, SB_ACTOR_CLIENT, "fake-gateway", NULL, NULL);
    CHECK_EQ(sb_bus_start(bus), 0);

    char seen[8][64];
    lease_t l;
    warm_lease(&l);
    CHECK(l.node == sb_bus_node_id(bus));
    snprintf(seen[0], 64, "%s", l.sandbox);
    char *out = run(&l, code_dirty);
    CHECK(strcmp(out, "dirty\n") == 0);
    free(out);
    release(&l);
    /* RUN destroy=true: the executor destroys it after the run.  A destroy request joins one
     * in progress (answered when it is done) or finds nothing; after that it is gone. */
    int d = destroy(seen[0]);
    CHECK(d == 0 || d == SB_ENOTFOUND);
    CHECK_EQ(destroy(seen[0]), SB_ENOTFOUND);
    sb_test_ok("one-shot on a warm sandbox from the pool; the used sandbox is destroyed");

    for (int i = 1; i < 6; i++) {
        warm_lease(&l);
        for (int k = 0; k < i; k++)
            CHECK(strcmp(seen[k], l.sandbox) != 0); /* never a sandbox that ran anything */
        snprintf(seen[i], 64, "%s", l.sandbox);
        out = run(&l, i % 2 ? code_check : code_dirty);
        if (i % 2)
            CHECK(strcmp(out, "clean\n") == 0);
        free(out);
        release(&l);
    }
    sb_test_ok("six one-shots, six different warm sandboxes; no file or process of one run "
               "is seen by the next");

    /* The pool refills: a warm sandbox is on offer again. */
    warm_lease(&l);
    release(&l); /* leased but not run: the gateway would destroy it; here the test does */
    CHECK_EQ(destroy(l.sandbox), 0);
    sb_test_ok("the pool refills in the background");

    CHECK_EQ(fake_stop(&gw), 0);
    fake_stop_actor(sched, 5000);
    fake_stop_actor(pool, 10000); /* destroys its warm sandboxes */
    fake_stop_actor(exec, 10000);
    CHECK_EQ(fake_stop(&mon), 0);
    sb_bus_free(bus);
    sb_config_fini(&cfg);
    sb_buf_fini(&rep.body);
    sb_test_ok("stop: pool, scheduler and executor loops close cleanly");
    return sb_test_done();
}
