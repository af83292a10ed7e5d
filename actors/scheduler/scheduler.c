/*
 * scheduler.c: the scheduler actor -- the queue.  It admits work (PLACE), places it on an
 * executor node and answers with a lease (LEASE: node + warm sandbox, if any), and frees the
 * slot when the gateway is done (RELEASE).  It never touches a sandbox itself.
 *
 * What it knows, all learned from messages:
 *   - nodes: each executor's NODE_CAPACITY (every second and on change).  A node not heard
 *     from for scheduler.node_stale_ms gets no new work.  Free capacity is what the node last
 *     reported minus the sandboxes our own leases have made it create since that report
 *     (its `epoch`), so a burst between two reports cannot overfill a node.
 *   - offers: warm sandboxes the pool offered (POOL_OFFER), by id, node and runtime.  An
 *     offer is handed out at most once: leasing it removes it, and its id goes into a ring of
 *     taken ids so a re-offer of the same id is refused (SB_EEXIST).
 *   - keys: per owner (API key or user) the executions it has placed and queued, and the
 *     long-lived sandboxes it holds.
 *
 * Two kinds of lease.  An execution lease ("oneshot", "existing") lasts one run: it takes a
 * slot of its key (scheduler.max_concurrent_per_key) and a global one
 * (scheduler.max_concurrent), and is reclaimed if not released within
 * scheduler.lease_timeout_ms.  A sandbox lease ("sandbox") lasts the sandbox's life -- the
 * gateway releases it when the sandbox is destroyed -- and counts against
 * scheduler.max_sandboxes_per_key and the node's capacity instead; it is reclaimed only when
 * its node has been silent for three times scheduler.node_stale_ms (its sandboxes are lost).
 *
 * Admission (in this order): a key over its limit for the kind asked is refused with
 * SB_ELIMIT (429; queued requests count); work no live node can run is refused with
 * SB_EUNAVAILABLE (503); otherwise it is placed at once if a slot and a node are free, else
 * queued -- unless the queue holds scheduler.max_queue requests already (503).  Every
 * refusal's message starts with "retry_after_ms=N ".  "existing" goes to node_hint, the node
 * the gateway recorded for the sandbox (the id is the executor's, chosen after placement, so
 * the scheduler cannot learn it first); a node_hint that is not live is refused at once
 * (503 "node lost").
 *
 * Fairness: each key has its own FIFO; keys with queued work form a ring, and whenever a
 * slot or a node frees up the ring is served round-robin from the key after the one served
 * last, so a key flooding the queue gets one turn per round like everyone else.
 *
 * A queued request (job) has one life:  QUEUED -> PLACED (LEASE sent) | REFUSED (its node
 * or runtime vanished) | EXPIRED (scheduler.queue_timeout_ms or the request's own deadline
 * passed: 503) | DROPPED (shutdown: 503).
 * A lease:  ACTIVE -> RELEASED (RELEASE) | RECLAIMED (execution: not released in time,
 * logged SB-SCHED-LEASE-RECLAIM; sandbox: its node lost, logged SB-SCHED-SANDBOX-LOST).
 * An offer:  OFFERED -> LEASED (POOL_TAKEN sent to the pool that offered it) | WITHDRAWN.
 *
 * Invariants: nexec <= max_concurrent; key->active / key->sandboxes / key->queued equal
 * the execution leases / sandbox leases / jobs naming the key; a key lives while any of its
 * counters is non-zero; a key is in the ring iff it has queued jobs.  POOL_TAKEN and POOL_ACK to
 * one pool leave through one outbox (sched_addr normalises this node's id to 0, as replies do), so
 * the pool sees them in order.
 */
#include "scheduler.h"

#include "core/config.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "base/clock.h"
#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHED_TICK_MS 50
#define SCHED_MAX_NODES 256
#define SCHED_MAX_RUNTIMES 32
#define SCHED_MAX_OFFERS 8192
#define SCHED_TAKEN_RING 4096
#define SCHED_MISS_SLOTS 16
#define SCHED_MISS_EVERY_MS 100

typedef enum { SCHED_ONESHOT, SCHED_SANDBOX, SCHED_EXISTING } sched_kind_t;

typedef struct {
    uint64_t id;
    char name[128];
    uint64_t max_sandboxes, sandboxes, running, memory_free;
    char runtimes[SCHED_MAX_RUNTIMES][64];
    size_t nruntimes;
    uint64_t heard_ms;   /* monotonic ms of the last report */
    uint64_t epoch;      /* bumped by each report */
    uint64_t unreported; /* sandboxes our leases made it create since the last report */
    uint64_t active;     /* leases on it */
    int stale_logged;
} sched_node_t;

typedef struct sched_key sched_key_t;

typedef struct sched_job {
    struct sched_job *next;
    sb_replyto_t to;
    sched_key_t *key;
    int kind;
    char runtime[64], sandbox[64];
    uint64_t node_hint;
    uint64_t queued_ms, expires_ms; /* monotonic */
} sched_job_t;

struct sched_key {
    sched_key_t *next;                  /* all keys */
    sched_key_t *ring_next, *ring_prev; /* keys with queued work */
    int in_ring;
    char owner[128];
    uint32_t active;     /* execution leases */
    uint32_t sandboxes;  /* sandbox leases */
    uint32_t queued;     /* jobs of either kind */
    uint32_t queued_sbx; /* of which "sandbox" */
    sched_job_t *head, *tail;
};

typedef struct {
    uint64_t id;
    sched_key_t *key;
    uint64_t node;
    int kind;
    int creates; /* the executor creates a sandbox for it */
    uint64_t epoch;
    char sandbox[64];
    uint64_t granted_ms;
} sched_lease_t;

typedef struct {
    char id[64];
    char runtime[64];
    uint64_t node;      /* the executor node holding it */
    uint64_t pool_node; /* the pool that offered it */
    uint64_t offered_ms;
} sched_offer_t;

typedef struct {
    sb_actor_t *actor;
    uv_timer_t tick;
    int stopping;
    uint64_t self;
    /* configuration */
    uint32_t per_key, max_concurrent, max_sbx_per_key, max_queue;
    uint64_t queue_timeout_ms, lease_timeout_ms, stale_ms;
    /* what it knows */
    sched_node_t *nodes;
    size_t nnodes;
    sched_key_t *keys;
    sched_key_t *cursor; /* the ring: the key served next */
    size_t nring;
    uint64_t queued;
    sched_lease_t *leases;
    size_t nleases, cap_leases;
    size_t nexec; /* execution leases among them */
    sched_offer_t *offers;
    size_t noffers, cap_offers;
    char (*taken)[64];
    size_t taken_next, ntaken;
    struct {
        char runtime[64];
        uint64_t at_ms;
    } misses[SCHED_MISS_SLOTS];
    uint64_t next_lease, rr;
    double hold_ms; /* moving average of how long a lease is held */
    /* counters */
    uint64_t placed, warm_hits, refused_limit, refused_unavail, expired, reclaimed, lost;
} sched_state;

enum { SCHED_PLACED = 0, SCHED_WAIT = 1 };

static uint64_t
sched_now(void)
{
    return sb_now_mono_us() / 1000;
}

static void
sched_copy(char *dst, size_t cap, sb_str_t s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n)
        memcpy(dst, s.ptr, n);
    dst[n] = 0;
}

/* sched_addr: this node's own id becomes 0, as sb_actor_reply does, so messages and replies
 * to one local actor share one outbox and keep their order. */
static sb_addr_t
sched_addr(sched_state *s, uint64_t node, uint8_t kind)
{
    return (sb_addr_t){node == s->self ? 0 : node, kind};
}

/* ---- retry-after hints ----------------------------------------------------------------- */

static uint64_t
sched_clamp(double v)
{
    return v < 50 ? 50 : v > 60000 ? 60000 : (uint64_t)v;
}

/* When a slot of this key is likely free again: about one lease hold time. */
static uint64_t
sched_retry_limit(sched_state *s)
{
    return sched_clamp(s->hold_ms);
}

/* When the queue is likely to have room: the queue's length in hold times per slot. */
static uint64_t
sched_retry_busy(sched_state *s)
{
    return sched_clamp(s->hold_ms * (1.0 + (double)s->queued / (double)s->max_concurrent));
}

/* ---- nodes ----------------------------------------------------------------------------- */

static sched_node_t *
sched_node_find(sched_state *s, uint64_t id)
{
    for (size_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i].id == id)
            return &s->nodes[i];
    return NULL;
}

static int
sched_node_live(sched_state *s, const sched_node_t *n, uint64_t now)
{
    return n && now - n->heard_ms <= s->stale_ms;
}

static int
sched_node_runs(const sched_node_t *n, const char *runtime)
{
    if (!runtime[0] || n->nruntimes == 0) /* no runtime asked, or the node did not say */
        return 1;
    for (size_t i = 0; i < n->nruntimes; i++)
        if (!strcmp(n->runtimes[i], runtime))
            return 1;
    return 0;
}

static uint64_t
sched_node_free(const sched_node_t *n)
{
    uint64_t used = n->sandboxes + n->unreported;
    return used >= n->max_sandboxes ? 0 : n->max_sandboxes - used;
}

/* sched_pick_node: the live node running runtime with the most free capacity (ties: fewer
 * leases, then rotating).  *any says whether some live node runs runtime at all. */
static sched_node_t *
sched_pick_node(sched_state *s, const char *runtime, uint64_t now, int *any)
{
    sched_node_t *best = NULL;
    uint64_t best_free = 0;
    *any = 0;
    for (size_t k = 0; k < s->nnodes; k++) {
        sched_node_t *n = &s->nodes[(k + s->rr) % s->nnodes];
        if (!sched_node_live(s, n, now) || !sched_node_runs(n, runtime))
            continue;
        *any = 1;
        uint64_t f = sched_node_free(n);
        if (f == 0)
            continue;
        if (!best || f > best_free || (f == best_free && n->active < best->active)) {
            best = n;
            best_free = f;
        }
    }
    s->rr++;
    return best;
}

static void
sched_on_capacity(sched_state *s, const sb_msg_t *m)
{
    sb_node_capacity_t c;
    if (sb_node_capacity_decode(m, &c) != 0) {
        sb_log_warn("SB-SCHED-BAD-MSG", "malformed NODE_CAPACITY from node %016llx dropped",
                    (unsigned long long)m->src_node);
        return;
    }
    sched_node_t *n = sched_node_find(s, m->src_node);
    if (!n) {
        if (s->nnodes == SCHED_MAX_NODES) {
            sb_log_warn("SB-SCHED-NODES-FULL", "node table full (%d): node %016llx ignored",
                        SCHED_MAX_NODES, (unsigned long long)m->src_node);
            return;
        }
        n = &s->nodes[s->nnodes++];
        memset(n, 0, sizeof *n);
        n->id = m->src_node;
        sched_copy(n->name, sizeof n->name, c.node);
        sb_log_info("SB-SCHED-NODE-NEW", "executor node %s (%016llx) reports %llu/%llu sandboxes",
                    n->name, (unsigned long long)n->id, (unsigned long long)c.sandboxes,
                    (unsigned long long)c.max_sandboxes);
    } else if (n->stale_logged) {
        sb_log_info("SB-SCHED-NODE-BACK", "executor node %s reports again", n->name);
    }
    if (c.node.len)
        sched_copy(n->name, sizeof n->name, c.node);
    if (!n->name[0])
        snprintf(n->name, sizeof n->name, "%016llx", (unsigned long long)n->id);
    n->max_sandboxes = c.max_sandboxes;
    n->sandboxes = c.sandboxes;
    n->running = c.running;
    n->memory_free = c.memory_free;
    n->heard_ms = sched_now();
    n->epoch++;
    n->unreported = 0;
    n->stale_logged = 0;
    n->nruntimes = 0;
    if (c.runtimes.len) {
        sb_mp_reader_t r;
        uint32_t cnt;
        sb_mp_reader_init(&r, c.runtimes.ptr, c.runtimes.len);
        if (sb_mp_read_array(&r, &cnt) == 0) {
            for (uint32_t i = 0; i < cnt && n->nruntimes < SCHED_MAX_RUNTIMES; i++) {
                sb_str_t rt;
                if (sb_mp_read_str(&r, &rt) != 0)
                    break;
                if (rt.len == 0 || rt.len >= 64)
                    continue;
                sched_copy(n->runtimes[n->nruntimes++], 64, rt);
            }
        }
    }
}

/* ---- keys and the ring ----------------------------------------------------------------- */

static sched_key_t *
sched_key_get(sched_state *s, sb_str_t owner)
{
    for (sched_key_t *k = s->keys; k; k = k->next)
        if (sb_str_eq(owner, k->owner))
            return k;
    sched_key_t *k = sb_xcalloc(1, sizeof *k);
    sched_copy(k->owner, sizeof k->owner, owner);
    k->next = s->keys;
    s->keys = k;
    return k;
}

static void
sched_key_maybe_free(sched_state *s, sched_key_t *k)
{
    if (k->active || k->queued || k->sandboxes || k->in_ring)
        return;
    for (sched_key_t **p = &s->keys; *p; p = &(*p)->next) {
        if (*p == k) {
            *p = k->next;
            free(k);
            return;
        }
    }
}

static void
sched_ring_add(sched_state *s, sched_key_t *k)
{
    if (k->in_ring)
        return;
    k->in_ring = 1;
    s->nring++;
    if (!s->cursor) {
        k->ring_next = k->ring_prev = k;
        s->cursor = k;
        return;
    }
    /* Just before the cursor: a newcomer waits for the keys already waiting this round. */
    k->ring_next = s->cursor;
    k->ring_prev = s->cursor->ring_prev;
    k->ring_prev->ring_next = k;
    s->cursor->ring_prev = k;
}

static void
sched_ring_remove(sched_state *s, sched_key_t *k)
{
    if (!k->in_ring)
        return;
    k->in_ring = 0;
    s->nring--;
    if (k->ring_next == k) {
        s->cursor = NULL;
    } else {
        k->ring_prev->ring_next = k->ring_next;
        k->ring_next->ring_prev = k->ring_prev;
        if (s->cursor == k)
            s->cursor = k->ring_next;
    }
    k->ring_next = k->ring_prev = NULL;
}

static void
sched_job_push(sched_state *s, sched_job_t *j)
{
    sched_key_t *k = j->key;
    j->next = NULL;
    if (k->tail)
        k->tail->next = j;
    else
        k->head = j;
    k->tail = j;
    k->queued++;
    if (j->kind == SCHED_SANDBOX)
        k->queued_sbx++;
    s->queued++;
    sched_ring_add(s, k);
}

/* sched_job_unlink removes j (whose predecessor in its key's queue is prev) from the queue. */
static void
sched_job_unlink(sched_state *s, sched_job_t *prev, sched_job_t *j)
{
    sched_key_t *k = j->key;
    if (prev)
        prev->next = j->next;
    else
        k->head = j->next;
    if (k->tail == j)
        k->tail = prev;
    k->queued--;
    if (j->kind == SCHED_SANDBOX)
        k->queued_sbx--;
    s->queued--;
    if (!k->head)
        sched_ring_remove(s, k);
}

/* sched_job_end answers a job that was not placed and frees it (and maybe its key). */
static void
sched_job_end(sched_state *s, sched_job_t *j, int code, const char *why)
{
    sched_key_t *k = j->key;
    if (code == SB_EUNAVAILABLE)
        s->refused_unavail++;
    sb_actor_reply_error(s->actor, &j->to, code, "%s", why);
    free(j);
    sched_key_maybe_free(s, k);
}

/* ---- offers, leases, sandboxes --------------------------------------------------------- */

static void
sched_taken_remember(sched_state *s, const char *id)
{
    snprintf(s->taken[s->taken_next], 64, "%s", id);
    s->taken_next = (s->taken_next + 1) % SCHED_TAKEN_RING;
    if (s->ntaken < SCHED_TAKEN_RING)
        s->ntaken++;
}

static int
sched_taken_has(sched_state *s, const char *id)
{
    for (size_t i = 0; i < s->ntaken; i++)
        if (!strcmp(s->taken[i], id))
            return 1;
    return 0;
}

static sched_offer_t *
sched_offer_find(sched_state *s, const char *id)
{
    for (size_t i = 0; i < s->noffers; i++)
        if (!strcmp(s->offers[i].id, id))
            return &s->offers[i];
    return NULL;
}

static void
sched_offer_remove(sched_state *s, sched_offer_t *o)
{
    *o = s->offers[--s->noffers];
}

/* sched_pick_offer: the oldest warm sandbox of runtime on the live node with most free room. */
static sched_offer_t *
sched_pick_offer(sched_state *s, const char *runtime, uint64_t now)
{
    sched_offer_t *best = NULL;
    uint64_t best_free = 0;
    for (size_t i = 0; i < s->noffers; i++) {
        sched_offer_t *o = &s->offers[i];
        if (strcmp(o->runtime, runtime) != 0)
            continue;
        sched_node_t *n = sched_node_find(s, o->node);
        if (!sched_node_live(s, n, now))
            continue;
        uint64_t f = sched_node_free(n);
        if (!best || f > best_free || (f == best_free && o->offered_ms < best->offered_ms)) {
            best = o;
            best_free = f;
        }
    }
    return best;
}

static sched_lease_t *
sched_lease_find(sched_state *s, uint64_t id)
{
    for (size_t i = 0; i < s->nleases; i++)
        if (s->leases[i].id == id)
            return &s->leases[i];
    return NULL;
}

/* sched_miss tells the pool a one-shot found no warm sandbox of runtime (demand), at most
 * once per runtime per SCHED_MISS_EVERY_MS. */
static void
sched_miss(sched_state *s, uint64_t node, const char *runtime, uint64_t now)
{
    size_t slot = 0;
    for (size_t i = 0; i < SCHED_MISS_SLOTS; i++) {
        if (!strcmp(s->misses[i].runtime, runtime)) {
            if (now - s->misses[i].at_ms < SCHED_MISS_EVERY_MS)
                return;
            slot = i;
            break;
        }
        if (s->misses[i].at_ms < s->misses[slot].at_ms)
            slot = i;
    }
    snprintf(s->misses[slot].runtime, sizeof s->misses[slot].runtime, "%s", runtime);
    s->misses[slot].at_ms = now;
    sb_pool_taken_t t = {.node = node, .runtime = sb_str(runtime)};
    sb_buf_t *b = sb_actor_scratch(s->actor);
    if (sb_pool_taken_encode(&t, b) == 0)
        sb_actor_send(s->actor, sb_addr(SB_ACTOR_POOL), SB_MSG_POOL_TAKEN, 0, 0, 0, b->data,
                      b->len); /* best effort: no pool, no demand signal */
}

/* sched_release frees a lease (and its slot). */
static void
sched_release(sched_state *s, sched_lease_t *l)
{
    uint64_t now = sched_now();
    sched_key_t *k = l->key;
    sched_node_t *n = sched_node_find(s, l->node);
    if (n) {
        n->active--;
        if (l->creates && l->epoch == n->epoch && n->unreported)
            n->unreported--;
    }
    if (l->kind == SCHED_SANDBOX) {
        k->sandboxes--;
    } else {
        k->active--;
        s->nexec--;
        double held = (double)(now - l->granted_ms);
        s->hold_ms = s->hold_ms * 0.9 + held * 0.1;
    }
    *l = s->leases[--s->nleases];
    sched_key_maybe_free(s, k);
}

/* sched_grant records a lease for j on node and answers j with it.  0, or the send error
 * (then nothing is recorded). */
static int
sched_grant(sched_state *s, sched_job_t *j, sched_node_t *n, const char *sandbox, int creates)
{
    uint64_t id = ++s->next_lease;
    sb_lease_t lr = {
        .lease = id, .node = n->id, .node_name = sb_str(n->name), .sandbox = sb_str(sandbox)};
    sb_buf_t *b = sb_actor_scratch(s->actor);
    int r = sb_lease_encode(&lr, b);
    if (r == 0)
        r = sb_actor_reply(s->actor, &j->to, SB_MSG_LEASE, 0, b->data, b->len);
    if (r != 0) {
        sb_log_warn("SB-SCHED-REPLY-FAIL", "lease for %s could not be sent: %s", j->key->owner,
                    sb_strerror(r));
        return r;
    }
    if (s->nleases == s->cap_leases) {
        s->cap_leases = s->cap_leases ? s->cap_leases * 2 : 64;
        s->leases = sb_xrealloc(s->leases, s->cap_leases * sizeof *s->leases);
    }
    sched_lease_t *l = &s->leases[s->nleases++];
    memset(l, 0, sizeof *l);
    l->id = id;
    l->key = j->key;
    l->node = n->id;
    l->kind = j->kind;
    l->creates = creates;
    l->epoch = n->epoch;
    snprintf(l->sandbox, sizeof l->sandbox, "%s", sandbox);
    l->granted_ms = sched_now();
    if (j->kind == SCHED_SANDBOX) {
        j->key->sandboxes++;
    } else {
        j->key->active++;
        s->nexec++;
    }
    n->active++;
    if (creates)
        n->unreported++;
    s->placed++;
    return 0;
}

/* sched_try_place places j now (SCHED_PLACED: answered, the caller frees j), or says it must
 * wait (SCHED_WAIT), or that it cannot be placed at all (a negative SB_E*, why in why[]). */
static int
sched_try_place(sched_state *s, sched_job_t *j, char *why, size_t cap)
{
    uint64_t now = sched_now();
    int any = 0;

    if (j->kind == SCHED_EXISTING) {
        sched_node_t *n = sched_node_find(s, j->node_hint);
        if (!sched_node_live(s, n, now)) {
            snprintf(why, cap,
                     "retry_after_ms=%llu node lost: the node holding sandbox %s "
                     "is not reporting",
                     (unsigned long long)s->stale_ms, j->sandbox);
            return SB_EUNAVAILABLE;
        }
        if (s->nexec >= s->max_concurrent)
            return SCHED_WAIT;
        return sched_grant(s, j, n, j->sandbox, 0) == 0 ? SCHED_PLACED : SCHED_WAIT;
    }
    if (j->kind == SCHED_ONESHOT && s->nexec >= s->max_concurrent)
        return SCHED_WAIT;
    if (j->kind == SCHED_ONESHOT && j->runtime[0]) {
        sched_offer_t *o = sched_pick_offer(s, j->runtime, now);
        if (o) {
            sched_node_t *n = sched_node_find(s, o->node);
            if (sched_grant(s, j, n, o->id, 0) != 0)
                return SCHED_WAIT;
            sched_offer_t taken = *o;
            sched_offer_remove(s, o);
            sched_taken_remember(s, taken.id);
            s->warm_hits++;
            sb_pool_taken_t t = {
                .node = taken.node, .sandbox = sb_str(taken.id), .runtime = sb_str(taken.runtime)};
            sb_buf_t *b = sb_actor_scratch(s->actor);
            if (sb_pool_taken_encode(&t, b) == 0 &&
                sb_actor_send(s->actor, sched_addr(s, taken.pool_node, SB_ACTOR_POOL),
                              SB_MSG_POOL_TAKEN, 0, 0, 0, b->data, b->len) != 0)
                sb_log_warn("SB-SCHED-TAKEN-LOST",
                            "POOL_TAKEN for %s could not be sent; the "
                            "pool refills when it retires it",
                            taken.id);
            return SCHED_PLACED;
        }
    }
    sched_node_t *n = sched_pick_node(s, j->runtime, now, &any);
    if (!n) {
        if (any)
            return SCHED_WAIT;
        snprintf(why, cap, "retry_after_ms=%llu no live executor node runs runtime '%s'",
                 (unsigned long long)s->stale_ms, j->runtime);
        return SB_EUNAVAILABLE;
    }
    if (sched_grant(s, j, n, "", 1) != 0)
        return SCHED_WAIT;
    if (j->kind == SCHED_ONESHOT && j->runtime[0])
        sched_miss(s, n->id, j->runtime, now);
    return SCHED_PLACED;
}

/* sched_dispatch serves queued jobs round-robin across keys while slots and nodes allow. */
static void
sched_dispatch(sched_state *s)
{
    char why[256];
    int progress = 1;
    while (progress && s->cursor) {
        progress = 0;
        sched_key_t *k = s->cursor;
        for (size_t i = 0, n = s->nring; i < n; i++) {
            sched_key_t *next = k->ring_next;
            sched_job_t *j = k->head;
            int r = sched_try_place(s, j, why, sizeof why);
            if (r == SCHED_WAIT) {
                k = next;
                continue;
            }
            /* Served (or refused): the next turn is the next key's. */
            s->cursor = next;
            sched_job_unlink(s, NULL, j);
            if (r == SCHED_PLACED) {
                free(j);
                sched_key_maybe_free(s, k);
            } else {
                sched_job_end(s, j, r, why);
            }
            progress = 1;
            break;
        }
    }
}

/* ---- messages -------------------------------------------------------------------------- */

static int
sched_on_place(sched_state *s, const sb_msg_t *m)
{
    sb_place_t p;
    char why[256];
    sb_replyto_t to = sb_replyto(m);

    if (!(m->flags & SB_MF_REQ))
        return SB_EINVAL;
    if (sb_place_decode(m, &p) != 0)
        return SB_EBADMSG;
    int kind = sb_str_eq(p.kind, "oneshot") || p.kind.len == 0 ? SCHED_ONESHOT
               : sb_str_eq(p.kind, "sandbox")                  ? SCHED_SANDBOX
               : sb_str_eq(p.kind, "existing")                 ? SCHED_EXISTING
                                                               : -1;
    if (kind < 0) {
        sb_actor_reply_error(s->actor, &to, SB_EINVAL, "unknown placement kind '%.*s'",
                             (int)p.kind.len, p.kind.ptr);
        return 0;
    }
    if (kind == SCHED_EXISTING && (p.sandbox.len == 0 || p.sandbox.len >= 64 || p.node_hint == 0)) {
        sb_actor_reply_error(s->actor, &to, SB_EINVAL,
                             "kind existing needs the sandbox id and its node (node_hint)");
        return 0;
    }
    if (s->stopping) {
        sb_actor_reply_error(s->actor, &to, SB_EUNAVAILABLE,
                             "retry_after_ms=1000 scheduler shutting down");
        return 0;
    }
    sched_key_t *k = sched_key_get(s, p.owner);
    uint32_t execs = k->active + (k->queued - k->queued_sbx);
    if (kind != SCHED_SANDBOX && execs >= s->per_key) {
        s->refused_limit++;
        sb_actor_reply_error(s->actor, &to, SB_ELIMIT,
                             "retry_after_ms=%llu key has %u executions placed or queued "
                             "(limit %u)",
                             (unsigned long long)sched_retry_limit(s), execs, s->per_key);
        sched_key_maybe_free(s, k);
        return 0;
    }
    if (kind == SCHED_SANDBOX && s->max_sbx_per_key &&
        k->sandboxes + k->queued_sbx >= s->max_sbx_per_key) {
        s->refused_limit++;
        /* A sandbox slot frees when one is destroyed: no estimate beats a minute. */
        sb_actor_reply_error(s->actor, &to, SB_ELIMIT,
                             "retry_after_ms=60000 key holds %u sandboxes (limit %u)",
                             k->sandboxes + k->queued_sbx, s->max_sbx_per_key);
        sched_key_maybe_free(s, k);
        return 0;
    }

    sched_job_t *j = sb_xcalloc(1, sizeof *j);
    j->to = to;
    j->key = k;
    j->kind = kind;
    sched_copy(j->runtime, sizeof j->runtime, p.runtime);
    sched_copy(j->sandbox, sizeof j->sandbox, p.sandbox);
    j->node_hint = p.node_hint;
    j->queued_ms = sched_now();
    j->expires_ms = j->queued_ms + s->queue_timeout_ms;
    if (m->deadline_ms) {
        uint64_t real = sb_now_real_ms();
        uint64_t left = m->deadline_ms > real ? m->deadline_ms - real : 0;
        if (j->queued_ms + left < j->expires_ms)
            j->expires_ms = j->queued_ms + left;
    }
    /* Place at once unless this key already waits (FIFO within a key). */
    int r = k->head ? SCHED_WAIT : sched_try_place(s, j, why, sizeof why);
    if (r == SCHED_PLACED) {
        free(j);
        return 0;
    }
    if (r < 0) {
        sched_job_end(s, j, r, why);
        return 0;
    }
    if (s->queued >= s->max_queue) {
        snprintf(why, sizeof why, "retry_after_ms=%llu no capacity: %llu requests queued",
                 (unsigned long long)sched_retry_busy(s), (unsigned long long)s->queued);
        sched_job_end(s, j, SB_EUNAVAILABLE, why);
        return 0;
    }
    sched_job_push(s, j);
    sched_dispatch(s);
    return 0;
}

/* One-way messages sent as requests are acknowledged (tests use this to know they landed). */
static void
sched_ack(sched_state *s, const sb_msg_t *m)
{
    if (m->flags & SB_MF_REQ) {
        sb_replyto_t to = sb_replyto(m);
        sb_actor_reply(s->actor, &to, m->type, 0, NULL, 0);
    }
}

static int
sched_on_release(sched_state *s, const sb_msg_t *m)
{
    sb_release_t r;
    char sbx[64];
    if (sb_release_decode(m, &r) != 0)
        return SB_EBADMSG;
    sched_copy(sbx, sizeof sbx, r.sandbox);
    sched_lease_t *l = sched_lease_find(s, r.lease);
    if (!l) {
        sb_log_debug("SB-SCHED-RELEASE-UNKNOWN",
                     "RELEASE of unknown lease %llu (sandbox '%s') "
                     "ignored",
                     (unsigned long long)r.lease, sbx);
    } else {
        sched_release(s, l);
        sched_dispatch(s);
    }
    sched_ack(s, m);
    return 0;
}

static int
sched_on_offer(sched_state *s, const sb_msg_t *m)
{
    sb_pool_offer_t o;
    char id[64];
    sb_replyto_t to = sb_replyto(m);
    if (sb_pool_offer_decode(m, &o) != 0 || o.sandbox.len == 0 || o.sandbox.len >= 64 ||
        o.runtime.len == 0 || o.runtime.len >= 64)
        return SB_EBADMSG;
    sched_copy(id, sizeof id, o.sandbox);
    int leased = sched_taken_has(s, id);
    for (size_t i = 0; i < s->nleases && !leased; i++)
        leased = !strcmp(s->leases[i].sandbox, id);
    if (leased) {
        sb_log_warn("SB-SCHED-OFFER-REFUSED", "offer of %s refused: it was leased already", id);
        if (m->flags & SB_MF_REQ)
            sb_actor_reply_error(s->actor, &to, SB_EEXIST,
                                 "sandbox %s was leased once; it is never offered again", id);
        return 0;
    }
    sched_offer_t *x = sched_offer_find(s, id);
    if (!x) {
        if (s->noffers == SCHED_MAX_OFFERS) {
            if (m->flags & SB_MF_REQ)
                sb_actor_reply_error(s->actor, &to, SB_EUNAVAILABLE,
                                     "retry_after_ms=1000 offer table full");
            return 0;
        }
        if (s->noffers == s->cap_offers) {
            s->cap_offers = s->cap_offers ? s->cap_offers * 2 : 64;
            s->offers = sb_xrealloc(s->offers, s->cap_offers * sizeof *s->offers);
        }
        x = &s->offers[s->noffers++];
        memset(x, 0, sizeof *x);
        snprintf(x->id, sizeof x->id, "%s", id);
        x->offered_ms = sched_now();
    }
    sched_copy(x->runtime, sizeof x->runtime, o.runtime);
    x->node = o.node ? o.node : m->src_node;
    x->pool_node = m->src_node;
    if (m->flags & SB_MF_REQ) {
        sb_pool_ack_t ack = {.sandbox = o.sandbox};
        sb_buf_t *b = sb_actor_scratch(s->actor);
        if (sb_pool_ack_encode(&ack, b) == 0)
            sb_actor_reply(s->actor, &to, SB_MSG_POOL_ACK, 0, b->data, b->len);
    }
    sched_dispatch(s);
    return 0;
}

static int
sched_on_withdraw(sched_state *s, const sb_msg_t *m)
{
    sb_pool_withdraw_t w;
    char id[64];
    if (sb_pool_withdraw_decode(m, &w) != 0)
        return SB_EBADMSG;
    sched_copy(id, sizeof id, w.sandbox);
    sched_offer_t *o = sched_offer_find(s, id);
    if (o)
        sched_offer_remove(s, o);
    if (m->flags & SB_MF_REQ) {
        sb_replyto_t to = sb_replyto(m);
        sb_pool_ack_t ack = {.sandbox = w.sandbox, .withdrawn = o != NULL};
        sb_buf_t *b = sb_actor_scratch(s->actor);
        if (sb_pool_ack_encode(&ack, b) == 0)
            sb_actor_reply(s->actor, &to, SB_MSG_POOL_ACK, 0, b->data, b->len);
    }
    return 0;
}

static int
sched_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    sched_state *s = state;
    (void)a;
    switch (m->type) {
    case SB_MSG_PLACE:
        return sched_on_place(s, m);
    case SB_MSG_RELEASE:
        return sched_on_release(s, m);
    case SB_MSG_NODE_CAPACITY:
        sched_on_capacity(s, m);
        sched_ack(s, m);
        sched_dispatch(s);
        return 0;
    case SB_MSG_POOL_OFFER:
        return sched_on_offer(s, m);
    case SB_MSG_POOL_WITHDRAW:
        return sched_on_withdraw(s, m);
    default:
        return SB_EUNKNOWN_TYPE;
    }
}

/* ---- the clock ------------------------------------------------------------------------- */

static void
sched_on_tick(uv_timer_t *t)
{
    sched_state *s = t->data;
    uint64_t now = sched_now();
    char why[256];

    /* Queue deadlines.  Walk the list of all keys: ending a job frees at most its own key. */
    for (sched_key_t *k = s->keys, *kn; k; k = kn) {
        kn = k->next;
        sched_job_t *prev = NULL, *j = k->head;
        while (j) {
            sched_job_t *jn = j->next;
            if (j->expires_ms > now) {
                prev = j;
                j = jn;
                continue;
            }
            sched_job_unlink(s, prev, j);
            s->expired++;
            snprintf(why, sizeof why,
                     "retry_after_ms=%llu no capacity within %llu ms (%llu queued)",
                     (unsigned long long)sched_retry_busy(s),
                     (unsigned long long)(now - j->queued_ms), (unsigned long long)s->queued);
            sched_job_end(s, j, SB_EUNAVAILABLE, why); /* may free k when j was its last */
            j = jn;
        }
    }

    /* Execution leases never released; sandbox leases whose node is lost. */
    for (size_t i = 0; i < s->nleases;) {
        sched_lease_t *l = &s->leases[i];
        if (l->kind != SCHED_SANDBOX && now - l->granted_ms >= s->lease_timeout_ms) {
            sb_log_warn("SB-SCHED-LEASE-RECLAIM",
                        "lease %llu of %s (node %016llx, sandbox '%s') not released within "
                        "%llu ms: reclaimed",
                        (unsigned long long)l->id, l->key->owner, (unsigned long long)l->node,
                        l->sandbox, (unsigned long long)s->lease_timeout_ms);
            s->reclaimed++;
            sched_release(s, l); /* moves the last lease into slot i */
            continue;
        }
        sched_node_t *n = sched_node_find(s, l->node);
        if (l->kind == SCHED_SANDBOX && (!n || now - n->heard_ms > 3 * s->stale_ms)) {
            sb_log_warn("SB-SCHED-SANDBOX-LOST",
                        "sandbox lease %llu of %s: node %016llx silent for %llu ms, its "
                        "sandbox counts as lost",
                        (unsigned long long)l->id, l->key->owner, (unsigned long long)l->node,
                        (unsigned long long)(n ? now - n->heard_ms : 0));
            s->lost++;
            sched_release(s, l);
            continue;
        }
        i++;
    }

    /* Nodes going quiet; offers on nodes silent for long are forgotten. */
    for (size_t i = 0; i < s->nnodes; i++) {
        sched_node_t *n = &s->nodes[i];
        if (!sched_node_live(s, n, now) && !n->stale_logged) {
            n->stale_logged = 1;
            sb_log_warn("SB-SCHED-NODE-STALE",
                        "executor node %s silent for %llu ms: no new work goes there", n->name,
                        (unsigned long long)(now - n->heard_ms));
        }
    }
    for (size_t i = 0; i < s->noffers;) {
        sched_node_t *n = sched_node_find(s, s->offers[i].node);
        if (!n || now - n->heard_ms > 3 * s->stale_ms)
            sched_offer_remove(s, &s->offers[i]);
        else
            i++;
    }
    sched_dispatch(s);
}

static int
sched_init(sb_actor_t *a, void *state)
{
    sched_state *s = state;
    const sb_config_t *cfg = sb_actor_arg(a);
    s->actor = a;
    s->self = sb_bus_node_id(sb_actor_bus(a));
    s->per_key = (uint32_t)cfg->scheduler_max_concurrent_per_key;
    s->max_concurrent = (uint32_t)cfg->scheduler_max_concurrent;
    s->max_sbx_per_key = (uint32_t)cfg->scheduler_max_sandboxes_per_key;
    s->max_queue = (uint32_t)cfg->scheduler_max_queue;
    s->queue_timeout_ms = (uint64_t)cfg->scheduler_queue_timeout_ms;
    s->lease_timeout_ms = (uint64_t)cfg->scheduler_lease_timeout_ms;
    s->stale_ms = (uint64_t)cfg->scheduler_node_stale_ms;
    s->nodes = sb_xcalloc(SCHED_MAX_NODES, sizeof *s->nodes);
    s->taken = sb_xcalloc(SCHED_TAKEN_RING, sizeof *s->taken);
    s->hold_ms = 100;
    /* Lease ids start from the clock so a restarted scheduler does not reuse recent ones. */
    s->next_lease = sb_now_real_ms() << 16;
    uv_timer_init(sb_actor_loop(a), &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, sched_on_tick, SCHED_TICK_MS, SCHED_TICK_MS);
    sb_log_info("SB-SCHED-START",
                "scheduler: %u per key, %u at once, %u queued at most, queue timeout %llu ms",
                s->per_key, s->max_concurrent, s->max_queue,
                (unsigned long long)s->queue_timeout_ms);
    return 0;
}

static void
sched_stop(sb_actor_t *a, void *state)
{
    sched_state *s = state;
    (void)a;
    if (s->stopping)
        return;
    s->stopping = 1;
    if (!uv_is_closing((uv_handle_t *)&s->tick))
        uv_close((uv_handle_t *)&s->tick, NULL);
    while (s->cursor) {
        sched_key_t *k = s->cursor;
        sched_job_t *j = k->head;
        sched_job_unlink(s, NULL, j);
        sched_job_end(s, j, SB_EUNAVAILABLE, "retry_after_ms=1000 scheduler shutting down");
    }
}

static void
sched_fini(sb_actor_t *a, void *state)
{
    sched_state *s = state;
    (void)a;
    while (s->cursor) { /* only if stop never ran */
        sched_job_t *j = s->cursor->head;
        sched_job_unlink(s, NULL, j);
        free(j);
    }
    for (sched_key_t *k = s->keys, *n; k; k = n) {
        n = k->next;
        free(k);
    }
    free(s->nodes);
    free(s->leases);
    free(s->offers);
    free(s->taken);
}

const sb_actor_ops_t sb_scheduler_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "scheduler",
    .kind = SB_ACTOR_SCHEDULER,
    .state_size = sizeof(sched_state),
    .init = sched_init,
    .handle = sched_handle,
    .stop = sched_stop,
    .fini = sched_fini,
};
