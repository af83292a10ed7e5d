/*
 * ratelimit.h: token buckets -- one (sb_bucket_t, e.g. the global limit) or a bounded table
 * of them keyed by a string (sb_ratelimit_t: per API key, per login name, per client IP).
 *
 * A bucket holds at most `burst` tokens and refills continuously at `rate` tokens per second;
 * a request takes one token or is refused with the number of seconds (rounded up, at least 1)
 * until one is available -- the Retry-After a 429 carries.  Time is passed in (microseconds
 * of a monotonic clock), so the arithmetic is tested with an injected clock and no sleeps.
 *
 * Memory is bounded: a table holds at most max_buckets entries; a new key in a full table
 * evicts the least recently used bucket.  A bucket that has refilled to full is
 * indistinguishable from a fresh one, so sb_ratelimit_sweep (run periodically) drops those.
 * Not thread-safe: each gateway loop owns its tables.
 */
#ifndef SB_RATELIMIT_H
#define SB_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double rate;  /* tokens per second (> 0) */
    double burst; /* capacity (>= 1) */
    double tokens;
    uint64_t last_us; /* when tokens was last brought up to date */
} sb_bucket_t;

/* sb_bucket_init: a full bucket at now_us.  rate <= 0 means unlimited (take always succeeds). */
void sb_bucket_init(sb_bucket_t *b, double rate, double burst, uint64_t now_us);
/* sb_bucket_take takes n tokens: 0, or SB_ELIMIT (nothing taken) with *retry_s (if not NULL)
 * set to the whole seconds until n tokens are there (>= 1). */
int sb_bucket_take(sb_bucket_t *b, double n, uint64_t now_us, uint32_t *retry_s);
/* sb_bucket_peek: like take but takes nothing (0 if n tokens are there). */
int sb_bucket_peek(sb_bucket_t *b, double n, uint64_t now_us, uint32_t *retry_s);

typedef struct sb_ratelimit sb_ratelimit_t;

/* sb_ratelimit_alloc: a table of buckets of the given rate and burst holding at most
 * max_buckets (>= 1).  Aborts on OOM (small, fixed allocation). */
sb_ratelimit_t *sb_ratelimit_alloc(double rate, double burst, size_t max_buckets);
void sb_ratelimit_free(sb_ratelimit_t *rl);
/* sb_ratelimit_take takes n tokens from key's bucket (created full if absent; keys longer than
 * 255 bytes are truncated): 0 or SB_ELIMIT with *retry_s. */
int sb_ratelimit_take(sb_ratelimit_t *rl, const char *key, double n, uint64_t now_us,
                      uint32_t *retry_s);
/* sb_ratelimit_peek: 0 if key's bucket has n tokens (an absent key has), else SB_ELIMIT with
 * *retry_s; takes nothing and creates nothing. */
int sb_ratelimit_peek(sb_ratelimit_t *rl, const char *key, double n, uint64_t now_us,
                      uint32_t *retry_s);
/* sb_ratelimit_sweep drops buckets that have refilled to full (they carry no state). */
void sb_ratelimit_sweep(sb_ratelimit_t *rl, uint64_t now_us);
/* Number of buckets held (for tests and metrics). */
size_t sb_ratelimit_count(const sb_ratelimit_t *rl);
/* sb_ratelimit_set_rate changes the rate and burst of every bucket (existing ones keep their
 * tokens, capped at the new burst). */
void sb_ratelimit_set_rate(sb_ratelimit_t *rl, double rate, double burst);

#endif
