/*
 * ratelimit.c: token buckets and a bounded table of them (ratelimit.h).
 *
 * Invariants: 0 <= tokens <= burst after every refill; a table's entries are both in one hash
 * chain and in the LRU list (head = most recently used); count <= max.  Refill is lazy (on
 * use), so an idle bucket costs no work.  Doubles are exact enough here: a bucket's tokens stay
 * within [0, burst] and elapsed time is clamped, so no precision is lost to huge values.
 */
#include "ratelimit.h"

#include "base/alloc.h"
#include "base/err.h"

#include <stdlib.h>
#include <string.h>

#define RL_KEY_MAX 255

/* Small helpers instead of libm (one less library for every gateway binary). */
static double
rl_min(double a, double b)
{
    return a < b ? a : b;
}

static double
rl_max(double a, double b)
{
    return a > b ? a : b;
}

/* ---- one bucket ------------------------------------------------------------------------ */

void
sb_bucket_init(sb_bucket_t *b, double rate, double burst, uint64_t now_us)
{
    b->rate = rate;
    b->burst = burst < 1 ? 1 : burst;
    b->tokens = b->burst;
    b->last_us = now_us;
}

static void
bucket_refill(sb_bucket_t *b, uint64_t now_us)
{
    if (now_us <= b->last_us)
        return; /* a clock that went backwards refills nothing */
    double dt = (double)(now_us - b->last_us) / 1e6;
    /* Clamp: after burst/rate seconds the bucket is full anyway. */
    if (dt * b->rate >= b->burst)
        b->tokens = b->burst;
    else
        b->tokens = rl_min(b->burst, b->tokens + dt * b->rate);
    b->last_us = now_us;
}

static int
bucket_check(sb_bucket_t *b, double n, uint64_t now_us, uint32_t *retry_s, int take)
{
    if (b->rate <= 0)
        return 0;
    bucket_refill(b, now_us);
    /* A tiny epsilon keeps 0.9999999 (float residue of an exact refill) from refusing. */
    if (b->tokens + 1e-9 >= n) {
        if (take)
            b->tokens = rl_max(0, b->tokens - n);
        return 0;
    }
    if (retry_s) {
        double wait = (n - b->tokens) / b->rate - 1e-9;
        if (wait > 86400)
            wait = 86400;
        uint32_t s = (uint32_t)wait;
        if ((double)s < wait)
            s++; /* round up: retrying sooner would be refused again */
        *retry_s = s < 1 ? 1 : s;
    }
    return SB_ELIMIT;
}

int
sb_bucket_take(sb_bucket_t *b, double n, uint64_t now_us, uint32_t *retry_s)
{
    return bucket_check(b, n, now_us, retry_s, 1);
}

int
sb_bucket_peek(sb_bucket_t *b, double n, uint64_t now_us, uint32_t *retry_s)
{
    return bucket_check(b, n, now_us, retry_s, 0);
}

/* ---- the table ------------------------------------------------------------------------- */

typedef struct rl_entry {
    struct rl_entry *hnext;        /* hash chain */
    struct rl_entry *prev, *next;  /* LRU list */
    uint64_t hash;
    sb_bucket_t b;
    uint8_t klen;
    char key[];
} rl_entry_t;

struct sb_ratelimit {
    double rate, burst;
    size_t max, count, nslots;
    rl_entry_t **slots;
    rl_entry_t *head, *tail;
};

static uint64_t
rl_hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)k[i];
        h *= 1099511628211ull;
    }
    return h;
}

sb_ratelimit_t *
sb_ratelimit_alloc(double rate, double burst, size_t max_buckets)
{
    sb_ratelimit_t *rl = sb_xcalloc(1, sizeof *rl);
    rl->rate = rate;
    rl->burst = burst < 1 ? 1 : burst;
    rl->max = max_buckets ? max_buckets : 1;
    rl->nslots = 64;
    while (rl->nslots < rl->max && rl->nslots < (1u << 20))
        rl->nslots <<= 1;
    rl->slots = sb_xcalloc(rl->nslots, sizeof *rl->slots);
    return rl;
}

void
sb_ratelimit_free(sb_ratelimit_t *rl)
{
    if (!rl)
        return;
    rl_entry_t *e = rl->head;
    while (e) {
        rl_entry_t *n = e->next;
        free(e);
        e = n;
    }
    free(rl->slots);
    free(rl);
}

static void
rl_lru_unlink(sb_ratelimit_t *rl, rl_entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        rl->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        rl->tail = e->prev;
    e->prev = e->next = NULL;
}

static void
rl_lru_push(sb_ratelimit_t *rl, rl_entry_t *e)
{
    e->prev = NULL;
    e->next = rl->head;
    if (rl->head)
        rl->head->prev = e;
    rl->head = e;
    if (!rl->tail)
        rl->tail = e;
}

static void
rl_remove(sb_ratelimit_t *rl, rl_entry_t *e)
{
    rl_entry_t **pp = &rl->slots[e->hash & (rl->nslots - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    SB_ASSERT(*pp == e);
    *pp = e->hnext;
    rl_lru_unlink(rl, e);
    rl->count--;
    free(e);
}

static rl_entry_t *
rl_find(sb_ratelimit_t *rl, const char *key, size_t n, uint64_t h)
{
    for (rl_entry_t *e = rl->slots[h & (rl->nslots - 1)]; e; e = e->hnext)
        if (e->hash == h && e->klen == n && memcmp(e->key, key, n) == 0)
            return e;
    return NULL;
}

void
sb_ratelimit_sweep(sb_ratelimit_t *rl, uint64_t now_us)
{
    rl_entry_t *e = rl->tail;
    while (e) {
        rl_entry_t *p = e->prev;
        bucket_refill(&e->b, now_us);
        if (e->b.tokens >= e->b.burst)
            rl_remove(rl, e);
        e = p;
    }
}

int
sb_ratelimit_peek(sb_ratelimit_t *rl, const char *key, double n, uint64_t now_us,
                  uint32_t *retry_s)
{
    size_t kl = strnlen(key, RL_KEY_MAX);
    rl_entry_t *e = rl_find(rl, key, kl, rl_hash(key, kl));
    if (!e)
        return n <= rl->burst || rl->rate <= 0 ? 0 : SB_ELIMIT;
    return sb_bucket_peek(&e->b, n, now_us, retry_s);
}

int
sb_ratelimit_take(sb_ratelimit_t *rl, const char *key, double n, uint64_t now_us,
                  uint32_t *retry_s)
{
    size_t kl = strnlen(key, RL_KEY_MAX);
    uint64_t h = rl_hash(key, kl);
    rl_entry_t *e = rl_find(rl, key, kl, h);

    if (rl->rate <= 0)
        return 0;
    if (e) {
        rl_lru_unlink(rl, e);
        rl_lru_push(rl, e);
        return sb_bucket_take(&e->b, n, now_us, retry_s);
    }
    if (rl->count >= rl->max) {
        /* Full: evict the least recently used bucket (O(1); a full sweep here would let a
         * stream of new keys cost O(max) each -- the periodic sweep drops idle ones). */
        rl_remove(rl, rl->tail);
    }
    e = sb_xcalloc(1, sizeof *e + kl + 1);
    memcpy(e->key, key, kl);
    e->klen = (uint8_t)kl;
    e->hash = h;
    sb_bucket_init(&e->b, rl->rate, rl->burst, now_us);
    e->hnext = rl->slots[h & (rl->nslots - 1)];
    rl->slots[h & (rl->nslots - 1)] = e;
    rl_lru_push(rl, e);
    rl->count++;
    return sb_bucket_take(&e->b, n, now_us, retry_s);
}

size_t
sb_ratelimit_count(const sb_ratelimit_t *rl)
{
    return rl->count;
}

void
sb_ratelimit_set_rate(sb_ratelimit_t *rl, double rate, double burst)
{
    rl->rate = rate;
    rl->burst = burst < 1 ? 1 : burst;
    for (rl_entry_t *e = rl->head; e; e = e->next) {
        e->b.rate = rl->rate;
        e->b.burst = rl->burst;
        if (e->b.tokens > e->b.burst)
            e->b.tokens = e->b.burst;
    }
}
