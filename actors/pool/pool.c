/*
 * pool.c: the pool actor -- warm sandboxes per runtime, created ahead of demand so no
 * namespace set-up or interpreter start sits on the request path.
 *
 * For each runtime in pool.runtimes it keeps between pool.min_size and pool.max_size warm
 * sandboxes on the executor nodes of the bus (SBX_CREATE with warm=true), spreading them by
 * its own count per node (fewest of that runtime first), and offers each ready one to the
 * scheduler (POOL_OFFER).  The scheduler leases an offer to exactly one one-shot execution
 * and tells the pool (POOL_TAKEN); from then on the sandbox is the gateway's, which has the
 * executor destroy it after the run (RUN destroy=true).  The pool forgets it and refills in
 * the background: a sandbox that ran anything is never offered again.
 *
 * Sizing: the target starts at min; each POOL_TAKEN (a hit, or a miss -- a one-shot that
 * found no warm sandbox, sandbox "") raises it by one up to max; each retirement of an
 * unused sandbox lowers it by one down to min.  So a busy runtime grows toward max and an
 * idle one shrinks back to min.  Sandboxes held (creating + ready + being retired) never
 * exceed max.  With pool.warm_on_start false a runtime starts warming on its first miss.
 *
 * Retirement: a ready sandbox older than pool.max_age_s is withdrawn (POOL_WITHDRAW ->
 * POOL_ACK).  The scheduler sends POOL_TAKEN and its reply along one path, so if the reply
 * comes while the pool still holds the sandbox, nobody leased it and the pool destroys it
 * (SBX_DESTROY reason "pool_retired"); if POOL_TAKEN came first, it was leased and is left
 * alone.  A sandbox on a node that left the bus is dropped (the node's sandboxes are lost).
 *
 * Failures: a failed SBX_CREATE puts that node in back-off for that runtime (100 ms,
 * doubling to 30 s, reset by a success), so a missing runtime or a full node is never
 * hot-looped.  Sizes go to the monitor once a second (MON_POOL per runtime and node).
 * On stop the pool withdraws and destroys every warm sandbox it still holds; creations in
 * flight are destroyed as they complete, within the grace period.
 *
 * States of one warm sandbox:  CREATING (SBX_CREATE in flight) -> READY (offered, or offer
 * being retried) -> gone when TAKEN (the gateway's now) | RETIRING (POOL_WITHDRAW in flight)
 * -> gone (destroyed, or taken after all) | LOST (its node left) | failed creation.
 */
#include "pool.h"

#include "core/config.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "base/clock.h"
#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_TICK_MS 100
#define POOL_REFILL_DELAY_MS 20 /* after a take: let the taker's RUN reach the executor first */
#define POOL_REPORT_MS 1000
#define POOL_MAX_RUNTIMES 16
#define POOL_MAX_NODES 64
#define POOL_CREATE_TIMEOUT_MS 30000
#define POOL_REQ_TIMEOUT_MS 5000
#define POOL_BACKOFF_MIN_MS 100
#define POOL_BACKOFF_MAX_MS 30000
#define POOL_OFFER_RETRY_MS 500

typedef enum { PW_CREATING, PW_READY, PW_RETIRING } pool_wstate_t;

typedef struct pool_rt pool_rt_t;

typedef struct pool_sbx {
    struct pool_sbx *next;
    pool_rt_t *rt;
    int state;
    int offered, offering;
    char id[64];
    uint64_t node;
    uint64_t created_ms, created_real_ms; /* monotonic / realtime */
    uint64_t next_offer_ms;
} pool_sbx_t;

typedef struct {
    uint64_t node;
    uint64_t until_ms, backoff_ms;
} pool_fail_t;

struct pool_rt {
    char name[64];
    int warming; /* begun: at start, or on the first miss */
    uint32_t target;
    uint32_t ncreating, nready, nretiring;
    pool_sbx_t *list;
    pool_fail_t fail[POOL_MAX_NODES];
    size_t nfail;
};

typedef struct {
    sb_actor_t *actor;
    uv_timer_t tick, report;
    uv_timer_t refill; /* a refill deferred just past the run that took the sandbox */
    int stopping;
    uint64_t self;
    uint32_t min, max;
    uint64_t max_age_ms;
    pool_rt_t rts[POOL_MAX_RUNTIMES];
    size_t nrts;
    sb_node_info_t *nodes; /* live executor nodes, refreshed each tick */
    size_t nnodes;
    uint64_t rr;
    uint64_t created, failed, taken, retired, lost;
} pool_state;

/* A request in flight about one ready sandbox names it by id: it may be gone by the reply. */
typedef struct {
    pool_state *s;
    char id[64];
} pool_ref_t;

static uint64_t
pool_now(void)
{
    return sb_now_mono_us() / 1000;
}

static sb_addr_t
pool_addr(pool_state *s, uint64_t node, uint8_t kind)
{
    return (sb_addr_t){node == s->self ? 0 : node, kind};
}

static pool_ref_t *
pool_ref(pool_state *s, const char *id)
{
    pool_ref_t *r = sb_xcalloc(1, sizeof *r);
    r->s = s;
    snprintf(r->id, sizeof r->id, "%s", id);
    return r;
}

static pool_sbx_t *
pool_find(pool_state *s, const char *id)
{
    for (size_t i = 0; i < s->nrts; i++)
        for (pool_sbx_t *w = s->rts[i].list; w; w = w->next)
            if (w->state != PW_CREATING && !strcmp(w->id, id))
                return w;
    return NULL;
}

static pool_rt_t *
pool_rt_find(pool_state *s, sb_str_t name)
{
    for (size_t i = 0; i < s->nrts; i++)
        if (sb_str_eq(name, s->rts[i].name))
            return &s->rts[i];
    return NULL;
}

/* pool_send_withdraw tells the scheduler an offered sandbox is gone (body encoded in b).  A
 * withdrawal the scheduler never hears leaves it offering a sandbox that no longer exists:
 * said loudly, since a RUN leased on it would fail. */
static void
pool_send_withdraw(pool_state *s, const sb_buf_t *b)
{
    int rc = sb_actor_send(s->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_POOL_WITHDRAW, 0, 0, 0,
                           b->data, b->len);
    if (rc < 0 && rc != SB_ENOROUTE)
        sb_log_warn("SB-POOL-WITHDRAW-LOST", "POOL_WITHDRAW could not be sent: %s",
                    sb_strerror(rc));
}

/* pool_forget unlinks and frees w, keeping its runtime's counts. */
static void
pool_forget(pool_sbx_t *w)
{
    pool_rt_t *rt = w->rt;
    if (w->state == PW_CREATING)
        rt->ncreating--;
    else if (w->state == PW_READY)
        rt->nready--;
    else
        rt->nretiring--;
    for (pool_sbx_t **p = &rt->list; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    free(w);
}

static void
pool_set_state(pool_sbx_t *w, int state)
{
    pool_rt_t *rt = w->rt;
    if (w->state == PW_CREATING)
        rt->ncreating--;
    else if (w->state == PW_READY)
        rt->nready--;
    else
        rt->nretiring--;
    w->state = state;
    if (state == PW_CREATING)
        rt->ncreating++;
    else if (state == PW_READY)
        rt->nready++;
    else
        rt->nretiring++;
}

/* ---- destroying ------------------------------------------------------------------------ */

static void
pool_on_destroyed(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    pool_ref_t *r = ud;
    (void)a;
    (void)m;
    if (status != 0 && status != SB_ENOTFOUND)
        sb_log_warn("SB-POOL-DESTROY-FAIL", "destroying warm sandbox %s: %s", r->id,
                    sb_strerror(status));
    free(r);
}

static void
pool_destroy(pool_state *s, const char *id, uint64_t node)
{
    sb_sbx_destroy_t d = {.id = sb_str(id), .reason = SB_STR("pool_retired")};
    sb_buf_t *b = sb_actor_scratch(s->actor);
    pool_ref_t *r = pool_ref(s, id);
    int e = sb_sbx_destroy_encode(&d, b);
    if (e == 0)
        e = sb_actor_request(s->actor, pool_addr(s, node, SB_ACTOR_EXECUTOR), SB_MSG_SBX_DESTROY,
                             b->data, b->len, POOL_REQ_TIMEOUT_MS, pool_on_destroyed, r, NULL);
    if (e != 0) {
        sb_log_warn("SB-POOL-DESTROY-FAIL", "destroying warm sandbox %s: %s", id, sb_strerror(e));
        free(r);
    }
}

/* ---- offering -------------------------------------------------------------------------- */

static void
pool_on_offer_ack(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    pool_ref_t *r = ud;
    pool_state *s = r->s;
    pool_sbx_t *w = pool_find(s, r->id);
    (void)a;
    (void)m;
    if (w && w->state == PW_READY) {
        w->offering = 0;
        if (status == 0) {
            w->offered = 1;
        } else if (status == SB_EEXIST) {
            /* The scheduler leased it once already: it is someone's; never touch it again. */
            sb_log_warn("SB-POOL-OFFER-REFUSED", "scheduler refused %s as leased already", r->id);
            pool_forget(w);
        } else {
            w->next_offer_ms = pool_now() + POOL_OFFER_RETRY_MS;
        }
    }
    free(r);
}

static void
pool_offer(pool_state *s, pool_sbx_t *w)
{
    sb_pool_offer_t o = {.node = w->node,
                         .runtime = sb_str(w->rt->name),
                         .sandbox = sb_str(w->id),
                         .created_ms = w->created_real_ms};
    sb_buf_t *b = sb_actor_scratch(s->actor);
    pool_ref_t *r = pool_ref(s, w->id);
    int e = sb_pool_offer_encode(&o, b);
    if (e == 0)
        e = sb_actor_request(s->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_POOL_OFFER, b->data,
                             b->len, POOL_REQ_TIMEOUT_MS, pool_on_offer_ack, r, NULL);
    if (e != 0) { /* no scheduler yet (it starts after us): the tick retries */
        free(r);
        w->next_offer_ms = pool_now() + POOL_OFFER_RETRY_MS;
        return;
    }
    w->offering = 1;
}

/* ---- retiring -------------------------------------------------------------------------- */

static void
pool_on_withdrawn(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    pool_ref_t *r = ud;
    pool_state *s = r->s;
    pool_sbx_t *w = pool_find(s, r->id);
    (void)a;
    (void)m;
    /* Still ours: nobody leased it (a POOL_TAKEN would have come before this reply), or the
     * scheduler cannot be asked -- then it cannot lease it either. */
    if (w) {
        if (status != 0)
            sb_log_warn("SB-POOL-WITHDRAW-FAIL", "withdrawing %s: %s; destroying it", w->id,
                        sb_strerror(status));
        uint64_t node = w->node;
        pool_forget(w);
        s->retired++;
        pool_destroy(s, r->id, node);
    }
    free(r);
}

static void
pool_retire(pool_state *s, pool_sbx_t *w)
{
    sb_pool_withdraw_t wd = {.node = w->node, .sandbox = sb_str(w->id)};
    sb_buf_t *b = sb_actor_scratch(s->actor);
    pool_ref_t *r = pool_ref(s, w->id);
    pool_set_state(w, PW_RETIRING);
    int e = sb_pool_withdraw_encode(&wd, b);
    if (e == 0)
        e = sb_actor_request(s->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_POOL_WITHDRAW, b->data,
                             b->len, POOL_REQ_TIMEOUT_MS, pool_on_withdrawn, r, NULL);
    if (e != 0)
        pool_on_withdrawn(s->actor, e, NULL, r); /* no scheduler: nobody can lease it */
}

/* ---- creating -------------------------------------------------------------------------- */

static pool_fail_t *
pool_fail_slot(pool_rt_t *rt, uint64_t node, int make)
{
    for (size_t i = 0; i < rt->nfail; i++)
        if (rt->fail[i].node == node)
            return &rt->fail[i];
    if (!make || rt->nfail == POOL_MAX_NODES)
        return NULL;
    pool_fail_t *f = &rt->fail[rt->nfail++];
    memset(f, 0, sizeof *f);
    f->node = node;
    return f;
}

static void
pool_on_created(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    pool_sbx_t *w = ud;
    pool_rt_t *rt = w->rt;
    pool_state *s = sb_actor_state(a);
    sb_sbx_info_t info;
    uint64_t now = pool_now();

    if (status == 0 &&
        (sb_sbx_info_decode(m, &info) != 0 || info.id.len == 0 || info.id.len >= sizeof w->id))
        status = SB_EBADMSG;
    if (status != 0) {
        pool_fail_t *f = pool_fail_slot(rt, w->node, 1);
        if (f) {
            f->backoff_ms = f->backoff_ms ? f->backoff_ms * 2 : POOL_BACKOFF_MIN_MS;
            if (f->backoff_ms > POOL_BACKOFF_MAX_MS)
                f->backoff_ms = POOL_BACKOFF_MAX_MS;
            f->until_ms = now + f->backoff_ms;
        }
        s->failed++;
        sb_log_warn("SB-POOL-CREATE-FAIL",
                    "warm %s sandbox on node %016llx failed: %s; retrying there in %llu ms",
                    rt->name, (unsigned long long)w->node, sb_strerror(status),
                    (unsigned long long)(f ? f->backoff_ms : POOL_BACKOFF_MAX_MS));
        pool_forget(w);
        return;
    }
    sb_str_copy(w->id, sizeof w->id, info.id);
    if (info.node_id)
        w->node = info.node_id;
    pool_fail_t *f = pool_fail_slot(rt, w->node, 0);
    if (f)
        f->backoff_ms = f->until_ms = 0;
    s->created++;
    if (s->stopping) {
        uint64_t node = w->node;
        char id[64];
        snprintf(id, sizeof id, "%s", w->id);
        pool_forget(w);
        pool_destroy(s, id, node);
        return;
    }
    w->created_ms = now;
    w->created_real_ms = info.created_ms ? info.created_ms : sb_now_real_ms();
    pool_set_state(w, PW_READY);
    sb_log_debug("SB-POOL-READY", "warm %s sandbox %s ready on node %016llx", rt->name, w->id,
                 (unsigned long long)w->node);
    pool_offer(s, w);
}

/* pool_pick_node: a live executor node not backing off for rt, with the fewest of rt's
 * sandboxes (then the fewest of all), rotating among equals; NULL if none. */
static const sb_node_info_t *
pool_pick_node(pool_state *s, pool_rt_t *rt, uint64_t now)
{
    const sb_node_info_t *best = NULL;
    size_t best_rt = 0, best_all = 0;
    for (size_t k = 0; k < s->nnodes; k++) {
        const sb_node_info_t *n = &s->nodes[(k + s->rr) % s->nnodes];
        pool_fail_t *f = pool_fail_slot(rt, n->id, 0);
        if (f && now < f->until_ms)
            continue;
        size_t c_rt = 0, c_all = 0;
        for (size_t i = 0; i < s->nrts; i++)
            for (pool_sbx_t *w = s->rts[i].list; w; w = w->next)
                if (w->node == n->id) {
                    c_all++;
                    if (&s->rts[i] == rt)
                        c_rt++;
                }
        if (!best || c_rt < best_rt || (c_rt == best_rt && c_all < best_all)) {
            best = n;
            best_rt = c_rt;
            best_all = c_all;
        }
    }
    s->rr++;
    return best;
}

/* pool_fill starts creations until rt holds its target (never more than max in all). */
static void
pool_fill(pool_state *s, pool_rt_t *rt)
{
    uint64_t now = pool_now();
    if (s->stopping || !rt->warming)
        return;
    while (rt->ncreating + rt->nready < rt->target &&
           rt->ncreating + rt->nready + rt->nretiring < s->max) {
        const sb_node_info_t *n = pool_pick_node(s, rt, now);
        if (!n)
            return;
        sb_sbx_create_t c = {.runtime = sb_str(rt->name), .owner = SB_STR("pool"), .warm = true};
        sb_buf_t *b = sb_actor_scratch(s->actor);
        pool_sbx_t *w = sb_xcalloc(1, sizeof *w);
        w->rt = rt;
        w->node = n->id;
        w->state = PW_CREATING;
        int e = sb_sbx_create_encode(&c, b);
        if (e == 0)
            e = sb_actor_request(s->actor, pool_addr(s, n->id, SB_ACTOR_EXECUTOR),
                                 SB_MSG_SBX_CREATE, b->data, b->len, POOL_CREATE_TIMEOUT_MS,
                                 pool_on_created, w, NULL);
        if (e != 0) {
            /* Not sent (the node's route is gone or its outbox full): back off there. */
            pool_fail_t *f = pool_fail_slot(rt, n->id, 1);
            if (f) {
                f->backoff_ms = f->backoff_ms ? f->backoff_ms * 2 : POOL_BACKOFF_MIN_MS;
                if (f->backoff_ms > POOL_BACKOFF_MAX_MS)
                    f->backoff_ms = POOL_BACKOFF_MAX_MS;
                f->until_ms = now + f->backoff_ms;
            }
            free(w);
            continue;
        }
        w->next = rt->list;
        rt->list = w;
        rt->ncreating++;
    }
}

/* ---- the clock ------------------------------------------------------------------------- */

static void
pool_refresh_nodes(pool_state *s)
{
    sb_node_info_t all[POOL_MAX_NODES];
    size_t n = sb_bus_nodes(sb_actor_bus(s->actor), all, POOL_MAX_NODES);
    s->nnodes = 0;
    for (size_t i = 0; i < n; i++)
        if (all[i].alive && (all[i].actors & (1ull << SB_ACTOR_EXECUTOR)))
            s->nodes[s->nnodes++] = all[i];
}

static int
pool_node_live(pool_state *s, uint64_t node)
{
    for (size_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i].id == node)
            return 1;
    return 0;
}

static void
pool_on_tick(uv_timer_t *t)
{
    pool_state *s = t->data;
    uint64_t now = pool_now();
    pool_refresh_nodes(s);
    for (size_t i = 0; i < s->nrts; i++) {
        pool_rt_t *rt = &s->rts[i];
        for (pool_sbx_t *w = rt->list, *wn; w; w = wn) {
            wn = w->next;
            if (w->state != PW_READY)
                continue;
            if (!pool_node_live(s, w->node)) {
                sb_log_warn("SB-POOL-NODE-LOST",
                            "warm %s sandbox %s: node %016llx left the "
                            "bus; dropped",
                            rt->name, w->id, (unsigned long long)w->node);
                sb_pool_withdraw_t wd = {.node = w->node, .sandbox = sb_str(w->id)};
                sb_buf_t *b = sb_actor_scratch(s->actor);
                if (sb_pool_withdraw_encode(&wd, b) == 0)
                    pool_send_withdraw(s, b);
                s->lost++;
                pool_forget(w);
            } else if (now - w->created_ms >= s->max_age_ms) {
                sb_log_debug("SB-POOL-RETIRE", "warm %s sandbox %s reached its max age", rt->name,
                             w->id);
                if (rt->target > s->min)
                    rt->target--;
                pool_retire(s, w);
            } else if (!w->offered && !w->offering && now >= w->next_offer_ms) {
                pool_offer(s, w);
            }
        }
        pool_fill(s, rt);
    }
}

static void
pool_on_report(uv_timer_t *t)
{
    pool_state *s = t->data;
    for (size_t i = 0; i < s->nrts; i++) {
        pool_rt_t *rt = &s->rts[i];
        for (size_t k = 0; k < s->nnodes; k++) {
            sb_mon_pool_t p = {
                .runtime = sb_str(rt->name), .max = s->max, .node = sb_str(s->nodes[k].name)};
            for (pool_sbx_t *w = rt->list; w; w = w->next)
                if (w->state == PW_READY && w->node == s->nodes[k].id)
                    p.warm++;
            sb_buf_t *b = sb_actor_scratch(s->actor);
            if (sb_mon_pool_encode(&p, b) == 0)
                sb_actor_send(s->actor, sb_addr(SB_ACTOR_MONITOR), SB_MSG_MON_POOL, 0, 0, 0,
                              b->data, b->len); /* no monitor: nothing to report to */
        }
    }
}

static void
pool_on_refill(uv_timer_t *t)
{
    pool_state *s = t->data;
    for (size_t i = 0; i < s->nrts; i++)
        pool_fill(s, &s->rts[i]);
}

/* ---- messages -------------------------------------------------------------------------- */

static int
pool_on_taken(pool_state *s, const sb_msg_t *m)
{
    sb_pool_taken_t t;
    char id[64];
    if (sb_pool_taken_decode(m, &t) != 0)
        return SB_EBADMSG;
    sb_str_copy(id, sizeof id, t.sandbox.len < sizeof id ? t.sandbox : SB_STR(""));
    pool_rt_t *rt = NULL;
    if (id[0]) {
        pool_sbx_t *w = pool_find(s, id);
        if (w) {
            rt = w->rt;
            s->taken++;
            pool_forget(w); /* the gateway's now; the executor destroys it after its run */
        }
    } else {
        rt = pool_rt_find(s, t.runtime);
        if (rt && !rt->warming) {
            sb_log_info("SB-POOL-WARM", "first demand for %s: warming begins", rt->name);
            rt->warming = 1;
        }
    }
    if (rt) {
        if (rt->target < s->max)
            rt->target++;
        /* Refill a moment later, not now: the scheduler sent the lease to the gateway at the
         * same time as this notice, and the gateway's RUN must reach the executor before our
         * SBX_CREATE, or the request waits behind a sandbox creation on the executor's loop. */
        if (!s->stopping && !uv_is_active((uv_handle_t *)&s->refill))
            uv_timer_start(&s->refill, pool_on_refill, POOL_REFILL_DELAY_MS, 0);
    }
    if (m->flags & SB_MF_REQ) {
        sb_replyto_t to = sb_replyto(m);
        sb_actor_reply(s->actor, &to, SB_MSG_POOL_TAKEN, 0, NULL, 0);
    }
    return 0;
}

static int
pool_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    (void)a;
    if (m->type == SB_MSG_POOL_TAKEN)
        return pool_on_taken(state, m);
    return SB_EUNKNOWN_TYPE;
}

static int
pool_init(sb_actor_t *a, void *state)
{
    pool_state *s = state;
    const sb_config_t *cfg = sb_actor_arg(a);
    s->actor = a;
    s->self = sb_bus_node_id(sb_actor_bus(a));
    s->min = (uint32_t)cfg->pool_min_size;
    s->max = (uint32_t)cfg->pool_max_size;
    if (s->min > s->max) {
        sb_log_warn("SB-POOL-CONFIG", "pool.min_size %u > pool.max_size %u: using %u for both",
                    s->min, s->max, s->max);
        s->min = s->max;
    }
    s->max_age_ms = (uint64_t)cfg->pool_max_age_s * 1000;
    s->nodes = sb_xcalloc(POOL_MAX_NODES, sizeof *s->nodes);

    char *list = sb_xstrdup(cfg->pool_runtimes), *names[POOL_MAX_RUNTIMES];
    size_t n = sb_split_list(list, names, POOL_MAX_RUNTIMES);
    for (size_t i = 0; i < n; i++) {
        if (!names[i][0] || strlen(names[i]) >= sizeof s->rts[0].name ||
            pool_rt_find(s, sb_str(names[i])))
            continue;
        pool_rt_t *rt = &s->rts[s->nrts++];
        snprintf(rt->name, sizeof rt->name, "%s", names[i]);
        rt->target = s->min;
        rt->warming = cfg->pool_warm_on_start;
    }
    free(list);

    uv_timer_init(sb_actor_loop(a), &s->tick);
    uv_timer_init(sb_actor_loop(a), &s->report);
    uv_timer_init(sb_actor_loop(a), &s->refill);
    s->tick.data = s->report.data = s->refill.data = s;
    uv_timer_start(&s->tick, pool_on_tick, 0, POOL_TICK_MS);
    uv_timer_start(&s->report, pool_on_report, POOL_REPORT_MS, POOL_REPORT_MS);
    sb_log_info("SB-POOL-START", "pool: %zu runtime(s) '%s', %u..%u warm each, max age %llu s%s",
                s->nrts, cfg->pool_runtimes, s->min, s->max,
                (unsigned long long)cfg->pool_max_age_s,
                cfg->pool_warm_on_start ? "" : ", warming on first demand");
    return 0;
}

static void
pool_stop(sb_actor_t *a, void *state)
{
    pool_state *s = state;
    (void)a;
    if (s->stopping)
        return;
    s->stopping = 1;
    if (!uv_is_closing((uv_handle_t *)&s->tick))
        uv_close((uv_handle_t *)&s->tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->report))
        uv_close((uv_handle_t *)&s->report, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->refill))
        uv_close((uv_handle_t *)&s->refill, NULL);
    /* Withdraw (one-way: no time to wait) and destroy what we hold; creations still in
     * flight are destroyed by pool_on_created as they land. */
    size_t n = 0;
    for (size_t i = 0; i < s->nrts; i++) {
        pool_rt_t *rt = &s->rts[i];
        for (pool_sbx_t *w = rt->list, *wn; w; w = wn) {
            wn = w->next;
            if (w->state == PW_CREATING)
                continue;
            char id[64];
            uint64_t node = w->node;
            snprintf(id, sizeof id, "%s", w->id);
            sb_pool_withdraw_t wd = {.node = node, .sandbox = sb_str(id)};
            sb_buf_t *b = sb_actor_scratch(s->actor);
            if (sb_pool_withdraw_encode(&wd, b) == 0)
                pool_send_withdraw(s, b);
            pool_forget(w);
            pool_destroy(s, id, node);
            n++;
        }
    }
    sb_log_info("SB-POOL-STOP", "pool stopping: destroying %zu warm sandbox(es)", n);
}

static void
pool_fini(sb_actor_t *a, void *state)
{
    pool_state *s = state;
    (void)a;
    for (size_t i = 0; i < s->nrts; i++)
        while (s->rts[i].list)
            pool_forget(s->rts[i].list);
    free(s->nodes);
}

const sb_actor_ops_t sb_pool_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "pool",
    .kind = SB_ACTOR_POOL,
    .state_size = sizeof(pool_state),
    .init = pool_init,
    .handle = pool_handle,
    .stop = pool_stop,
    .fini = pool_fini,
};
