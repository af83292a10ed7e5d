/* test_ratelimit: token bucket arithmetic and the bounded table, on an injected clock. */
#include "base/err.h"
#include "gateway/auth/ratelimit.h"
#include "test.h"

#include <stdio.h>
#include <string.h>

#define S 1000000ull /* one second in microseconds */

static void
test_bucket_math(void)
{
    sb_bucket_t b;
    uint32_t retry = 0;
    uint64_t t = 1000 * S;
    /* 100 per minute, burst 100: 100 pass at once, the 101st waits 0.6 s -> Retry-After 1. */
    sb_bucket_init(&b, 100.0 / 60.0, 100, t);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(sb_bucket_take(&b, 1, t, &retry), 0);
    CHECK_EQ(sb_bucket_take(&b, 1, t, &retry), SB_ELIMIT);
    CHECK_EQ(retry, 1);
    /* 0.5 s later still < 1 token; 0.6 s later exactly one. */
    CHECK_EQ(sb_bucket_take(&b, 1, t + S / 2, &retry), SB_ELIMIT);
    CHECK_EQ(sb_bucket_take(&b, 1, t + 600000, &retry), 0);
    CHECK_EQ(sb_bucket_take(&b, 1, t + 600000, &retry), SB_ELIMIT);
    /* A long idle refills to the burst, never beyond. */
    t += 3600 * S;
    for (int i = 0; i < 100; i++)
        CHECK_EQ(sb_bucket_take(&b, 1, t, NULL), 0);
    CHECK_EQ(sb_bucket_take(&b, 1, t, NULL), SB_ELIMIT);
    /* A clock going backwards refills nothing and does not crash. */
    CHECK_EQ(sb_bucket_take(&b, 1, t - 10 * S, NULL), SB_ELIMIT);
    sb_test_ok("bucket_math");
}

static void
test_retry_after_rounding(void)
{
    sb_bucket_t b;
    uint32_t retry = 0;
    /* 5 per minute: a token every 12 s; empty -> Retry-After 12, 11.5 s later -> 1. */
    sb_bucket_init(&b, 5.0 / 60.0, 5, 0);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(sb_bucket_take(&b, 1, 0, NULL), 0);
    CHECK_EQ(sb_bucket_take(&b, 1, 0, &retry), SB_ELIMIT);
    CHECK_EQ(retry, 12);
    CHECK_EQ(sb_bucket_peek(&b, 1, 11 * S + S / 2, &retry), SB_ELIMIT);
    CHECK_EQ(retry, 1);
    CHECK_EQ(sb_bucket_peek(&b, 1, 12 * S, &retry), 0);
    CHECK_EQ(sb_bucket_peek(&b, 1, 12 * S, &retry), 0); /* peek takes nothing */
    /* 1000 per second: the refusal still says at least 1 s. */
    sb_bucket_init(&b, 1000, 1000, 0);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(sb_bucket_take(&b, 1, 0, NULL), 0);
    CHECK_EQ(sb_bucket_take(&b, 1, 0, &retry), SB_ELIMIT);
    CHECK_EQ(retry, 1);
    CHECK_EQ(sb_bucket_take(&b, 1, 1000, NULL), 0); /* 1 ms later one token is back */
    /* rate 0 = unlimited */
    sb_bucket_init(&b, 0, 0, 0);
    for (int i = 0; i < 10000; i++)
        CHECK_EQ(sb_bucket_take(&b, 1, 0, NULL), 0);
    sb_test_ok("retry_after_rounding");
}

static void
test_table(void)
{
    sb_ratelimit_t *rl = sb_ratelimit_alloc(1.0, 3, 4);
    uint32_t retry;
    char k[32];
    /* Keys are independent. */
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sb_ratelimit_take(rl, "a", 1, 0, NULL), 0);
    CHECK_EQ(sb_ratelimit_take(rl, "a", 1, 0, &retry), SB_ELIMIT);
    CHECK_EQ(retry, 1);
    CHECK_EQ(sb_ratelimit_peek(rl, "a", 1, 0, NULL), SB_ELIMIT);
    CHECK_EQ(sb_ratelimit_take(rl, "b", 1, 0, NULL), 0);
    CHECK_EQ(sb_ratelimit_peek(rl, "never-seen", 1, 0, NULL), 0);
    CHECK_EQ(sb_ratelimit_count(rl), 2); /* peek created nothing */
    /* Bounded: 100 distinct keys never hold more than 4 buckets; "a" is used all along, so
     * it stays (least recently used goes first) and stays limited. */
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%d", i);
        CHECK_EQ(sb_ratelimit_take(rl, k, 1, 0, NULL), 0);
        CHECK_EQ(sb_ratelimit_take(rl, "a", 1, 0, NULL), SB_ELIMIT);
        CHECK(sb_ratelimit_count(rl) <= 4);
    }
    /* After refilling to full, the sweep drops them all: they carry no state. */
    sb_ratelimit_sweep(rl, 10 * S);
    CHECK_EQ(sb_ratelimit_count(rl), 0);
    /* Long keys are truncated, not overflowed. */
    char longk[1000];
    memset(longk, 'x', sizeof longk - 1);
    longk[sizeof longk - 1] = 0;
    CHECK_EQ(sb_ratelimit_take(rl, longk, 1, 20 * S, NULL), 0);
    sb_ratelimit_set_rate(rl, 1.0, 1);
    CHECK_EQ(sb_ratelimit_take(rl, longk, 1, 20 * S, NULL), 0);
    CHECK_EQ(sb_ratelimit_take(rl, longk, 1, 20 * S, NULL), SB_ELIMIT);
    sb_ratelimit_free(rl);
    sb_test_ok("table_bounded_lru");
}

int
main(void)
{
    test_bucket_math();
    test_retry_after_rounding();
    test_table();
    return sb_test_done();
}
