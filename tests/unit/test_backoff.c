/* Reconnect backoff: the window min(cap, base·2^n) per attempt, the mapping
 * of the 32-bit random number onto [0, window], the cap after many attempts,
 * counting and reset, clamping of odd arguments, and the spread of full
 * jitter over a seeded stream of random numbers. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "backoff.h"

#define DAY_MS 86400000LL /* the largest --backoff-base / --backoff-max the CLI accepts */

/* ---- helpers ---- */

static vg_backoff *make(int64_t base_ms, int64_t cap_ms)
{
    vg_backoff *b = vg_backoff_create(base_ms, cap_ms);
    cr_assert_not_null(b);
    return b;
}

/* min(cap, base·2^n) without overflow, for the expectations. */
static int64_t window_of(int64_t base, int64_t cap, unsigned n)
{
    int64_t w = base;
    for (unsigned i = 0; i < n && w < cap; i++)
        w = w > cap / 2 ? cap : w * 2;
    return w < cap ? w : cap;
}

/* Resets and burns n attempts, so the next call is attempt n. */
static void go_to_attempt(vg_backoff *b, unsigned n)
{
    vg_backoff_reset(b);
    for (unsigned i = 0; i < n; i++)
        (void)vg_backoff_next(b, 0);
    cr_assert_eq(vg_backoff_attempts(b), n);
}

/* xorshift32: deterministic, so a failure replays exactly. */
static uint32_t xorshift32(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* ---- the window and the mapping of the random number ---- */

Test(backoff, delay_within_window_for_edge_and_seeded_randoms)
{
    const int64_t base = 100, cap = 30000;
    vg_backoff *b = make(base, cap);
    uint32_t seed = 2463534242u;
    for (unsigned n = 0; n < 20; n++) {
        int64_t w = window_of(base, cap, n);
        uint32_t randoms[8] = {0, 1, UINT32_MAX, UINT32_MAX - 1, 1u << 31};
        for (int i = 5; i < 8; i++)
            randoms[i] = xorshift32(&seed);
        for (int i = 0; i < 8; i++) {
            go_to_attempt(b, n);
            int64_t d = vg_backoff_next(b, randoms[i]);
            cr_assert_geq(d, 0, "attempt %u random %u: %lld", n, randoms[i], (long long)d);
            cr_assert_leq(d, w, "attempt %u random %u: %lld > window %lld", n, randoms[i],
                          (long long)d, (long long)w);
            cr_assert_eq(vg_backoff_attempts(b), n + 1);
        }
    }
    vg_backoff_destroy(b);
}

Test(backoff, random_zero_gives_zero_and_max_gives_the_whole_window)
{
    const int64_t base = 100, cap = 30000;
    vg_backoff *b = make(base, cap);
    for (unsigned n = 0; n < 20; n++) {
        int64_t w = window_of(base, cap, n);
        go_to_attempt(b, n);
        cr_assert_eq(vg_backoff_next(b, 0), 0, "attempt %u", n);
        go_to_attempt(b, n);
        cr_assert_eq(vg_backoff_next(b, 1), 0, "attempt %u", n);
        /* The window is inclusive: the top of the random range reaches it. */
        go_to_attempt(b, n);
        int64_t top = vg_backoff_next(b, UINT32_MAX);
        cr_assert(top <= w && top >= w - 1, "attempt %u: %lld for window %lld", n, (long long)top,
                  (long long)w);
        cr_assert_eq(top, w, "attempt %u: the implementation maps UINT32_MAX to the window", n);
        /* The middle of the random range lands in the middle of the window. */
        go_to_attempt(b, n);
        cr_assert_eq(vg_backoff_next(b, 1u << 31), (w + 1) / 2, "attempt %u", n);
    }
    vg_backoff_destroy(b);
}

Test(backoff, windows_double_then_stop_at_the_cap)
{
    vg_backoff *b = make(100, 30000);
    const int64_t want[] = {100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert_eq(vg_backoff_attempts(b), i);
        cr_assert_eq(vg_backoff_next(b, UINT32_MAX), want[i], "attempt %zu", i);
    }
    vg_backoff_destroy(b);
}

Test(backoff, never_above_the_cap_after_many_attempts)
{
    const struct {
        int64_t base, cap;
    } cases[] = {{100, 30000}, {200, 10000}, {1, 1000}, {1, DAY_MS}, {DAY_MS, DAY_MS},
                 {7, 1000003}, {1000, 1000}};
    uint32_t seed = 88675123u;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        vg_backoff *b = make(cases[c].base, cases[c].cap);
        for (unsigned n = 0; n < 200; n++) {
            int64_t w = window_of(cases[c].base, cases[c].cap, n);
            uint32_t r = n % 3 == 0 ? UINT32_MAX : xorshift32(&seed);
            int64_t d = vg_backoff_next(b, r);
            cr_assert_geq(d, 0, "case %zu attempt %u: %lld", c, n, (long long)d);
            cr_assert_leq(d, cases[c].cap, "case %zu attempt %u: %lld above the cap", c, n,
                          (long long)d);
            cr_assert_leq(d, w, "case %zu attempt %u", c, n);
            if (r == UINT32_MAX)
                cr_assert_eq(d, w, "case %zu attempt %u: %lld, want %lld", c, n, (long long)d,
                             (long long)w);
        }
        cr_assert_eq(vg_backoff_attempts(b), 200);
        /* Attempt 200 still reaches exactly the cap, so nothing wrapped. */
        cr_assert_eq(vg_backoff_next(b, UINT32_MAX), cases[c].cap, "case %zu", c);
        vg_backoff_destroy(b);
    }
}

/* ---- counting and reset ---- */

Test(backoff, attempts_count_and_reset_returns_to_base)
{
    vg_backoff *b = make(250, 8000);
    cr_assert_eq(vg_backoff_attempts(b), 0);
    cr_assert_eq(vg_backoff_next(b, UINT32_MAX), 250);
    cr_assert_eq(vg_backoff_attempts(b), 1);
    for (unsigned i = 2; i <= 10; i++) {
        (void)vg_backoff_next(b, 12345);
        cr_assert_eq(vg_backoff_attempts(b), i);
    }
    cr_assert_eq(vg_backoff_next(b, UINT32_MAX), 8000);

    vg_backoff_reset(b);
    cr_assert_eq(vg_backoff_attempts(b), 0);
    cr_assert_eq(vg_backoff_next(b, UINT32_MAX), 250, "after reset the window is base again");
    cr_assert_eq(vg_backoff_attempts(b), 1);
    cr_assert_eq(vg_backoff_next(b, UINT32_MAX), 500);

    /* Reset twice, and reset of a fresh object, are harmless. */
    vg_backoff_reset(b);
    vg_backoff_reset(b);
    cr_assert_eq(vg_backoff_attempts(b), 0);
    vg_backoff_destroy(b);

    b = make(250, 8000);
    vg_backoff_reset(b);
    cr_assert_eq(vg_backoff_attempts(b), 0);
    cr_assert_eq(vg_backoff_next(b, UINT32_MAX), 250);
    vg_backoff_destroy(b);
}

/* ---- clamping ---- */

Test(backoff, base_at_or_below_zero_becomes_one_ms)
{
    const int64_t bases[] = {0, -1, -5000, INT64_MIN};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        vg_backoff *b = make(bases[i], 1000);
        /* Windows 1, 2, 4, ... 512, then the cap 1000. */
        for (unsigned n = 0; n < 15; n++) {
            int64_t w = window_of(1, 1000, n);
            cr_assert_eq(vg_backoff_next(b, UINT32_MAX), w, "base %lld attempt %u",
                         (long long)bases[i], n);
        }
        vg_backoff_destroy(b);
    }
}

Test(backoff, cap_below_base_is_raised_to_base)
{
    vg_backoff *b = make(500, 100);
    for (unsigned n = 0; n < 50; n++) {
        go_to_attempt(b, n);
        cr_assert_eq(vg_backoff_next(b, UINT32_MAX), 500, "attempt %u: the window stays at base", n);
        cr_assert_eq(vg_backoff_next(b, 0), 0);
    }
    vg_backoff_destroy(b);

    b = make(500, -7);
    cr_assert_eq(vg_backoff_next(b, UINT32_MAX), 500);
    cr_assert_eq(vg_backoff_next(b, UINT32_MAX), 500);
    vg_backoff_destroy(b);

    /* Both nonsense: one millisecond windows for ever. */
    b = make(0, 0);
    for (unsigned n = 0; n < 40; n++) {
        int64_t d = vg_backoff_next(b, UINT32_MAX);
        cr_assert_eq(d, 1, "attempt %u", n);
    }
    vg_backoff_destroy(b);
}

/* ---- full jitter ---- */

static void check_spread(int64_t base, int64_t cap, unsigned attempt, uint32_t seed)
{
    vg_backoff *b = make(base, cap);
    int64_t w = window_of(base, cap, attempt);
    enum { DRAWS = 1000, BUCKETS = 10 };
    int buckets[BUCKETS] = {0};
    int64_t lo = INT64_MAX, hi = -1, sum = 0;
    for (int i = 0; i < DRAWS; i++) {
        go_to_attempt(b, attempt);
        int64_t d = vg_backoff_next(b, xorshift32(&seed));
        cr_assert(d >= 0 && d <= w, "draw %d: %lld outside [0, %lld]", i, (long long)d, (long long)w);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        sum += d;
        int k = (int)(d * BUCKETS / (w + 1));
        buckets[k]++;
    }
    /* No thundering herd: clients spread over the whole window, not a band. */
    cr_assert_lt(lo * 10, w, "min %lld is not in the bottom 10%% of %lld", (long long)lo, (long long)w);
    cr_assert_gt(hi * 10, w * 9, "max %lld is not in the top 10%% of %lld", (long long)hi, (long long)w);
    double mean = (double)sum / DRAWS;
    cr_assert(mean >= 0.40 * (double)w && mean <= 0.60 * (double)w, "mean %.1f for window %lld", mean,
              (long long)w);
    /* Every tenth of the window gets its share (100 expected each). */
    for (int k = 0; k < BUCKETS; k++)
        cr_assert_geq(buckets[k], 60, "tenth %d of the window got %d of %d draws", k, buckets[k], DRAWS);
    vg_backoff_destroy(b);
}

Test(backoff, full_jitter_spreads_draws_over_the_window)
{
    check_spread(100, 30000, 4, 2463534242u);  /* window 1600 */
    check_spread(100, 30000, 12, 123456789u);  /* at the cap, 30000 */
    check_spread(200, 10000, 0, 362436069u);   /* the client defaults, first attempt */
    check_spread(200, 10000, 9, 521288629u);   /* the client defaults, capped */
    check_spread(1, DAY_MS, 40, 88675123u);    /* the largest window the CLI allows */
}

/* Caps beyond 2^32 ms must not wrap (the random product is 128-bit) and
 * caps near INT64_MAX must not overflow the doubling. A 32-bit random number
 * cannot name every millisecond of such a window, so the top is reached to
 * within window/2^31. */
Test(backoff, huge_cap_does_not_wrap)
{
    const int64_t cap = (int64_t)1 << 34;
    vg_backoff *b = make(1, cap);
    go_to_attempt(b, 40);
    int64_t top = vg_backoff_next(b, UINT32_MAX);
    cr_assert(top <= cap && top >= cap - (cap >> 31), "top=%lld", (long long)top);
    vg_backoff_destroy(b);

    b = make(1, INT64_MAX);
    go_to_attempt(b, 100);
    cr_assert_gt(vg_backoff_next(b, UINT32_MAX), 0);
    vg_backoff_destroy(b);
}
