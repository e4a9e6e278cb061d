/* When the broker gives memory back: once after a busy spell has been
 * followed by a quiet one, never for a steady trickle, at most once per
 * drop; connections count as work like messages; odd clocks and huge
 * counters. vg_memory_tune/vg_memory_release are checked on the real
 * allocator (they must not break it). */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memory.h"

/* Ticks once a second from t to t + secs with rate messages a second;
 * returns how many ticks said release, and the time of the last one. */
static int run(vg_memory_idle *s, int64_t *t, uint64_t *msgs, int secs, uint64_t rate,
               int64_t *released_at)
{
    int n = 0;
    for (int i = 0; i < secs; i++) {
        *t += 1000;
        *msgs += rate;
        if (vg_memory_idle_tick(s, *t, *msgs, 0)) {
            n++;
            if (released_at != NULL)
                *released_at = *t;
        }
    }
    return n;
}

Test(memory_idle, first_tick_never_releases)
{
    vg_memory_idle s = {0};
    cr_assert(!vg_memory_idle_tick(&s, 123456, 1u << 30, 1u << 20));
}

Test(memory_idle, a_spike_then_quiet_releases_once_after_the_quiet_period)
{
    vg_memory_idle s = {0};
    int64_t t = 0, at = -1;
    uint64_t msgs = 0;
    vg_memory_idle_tick(&s, t, msgs, 0);
    cr_assert_eq(run(&s, &t, &msgs, 30, 2000000, NULL), 0, "never while busy");
    int64_t last_busy = t;
    cr_assert_eq(run(&s, &t, &msgs, 60, 0, &at), 1, "once per drop");
    cr_assert_eq(at, last_busy + VG_MEMORY_QUIET_MS, "released at %lld", (long long)at);
}

Test(memory_idle, quiet_shorter_than_the_period_does_not_release)
{
    vg_memory_idle s = {0};
    int64_t t = 0;
    uint64_t msgs = 0;
    vg_memory_idle_tick(&s, t, msgs, 0);
    for (int round = 0; round < 10; round++) {
        cr_assert_eq(run(&s, &t, &msgs, 5, 50000, NULL), 0);
        cr_assert_eq(run(&s, &t, &msgs, VG_MEMORY_QUIET_MS / 1000 - 1, 0, NULL), 0,
                     "round %d: quiet for less than the period", round);
    }
}

Test(memory_idle, a_steady_trickle_never_releases)
{
    vg_memory_idle s = {0};
    int64_t t = 0;
    uint64_t msgs = 0;
    vg_memory_idle_tick(&s, t, msgs, 0);
    cr_assert_eq(run(&s, &t, &msgs, 3600, VG_MEMORY_QUIET_RATE, NULL), 0,
                 "exactly the quiet rate is quiet");
}

Test(memory_idle, each_drop_releases_again)
{
    vg_memory_idle s = {0};
    int64_t t = 0;
    uint64_t msgs = 0;
    vg_memory_idle_tick(&s, t, msgs, 0);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(run(&s, &t, &msgs, 3, VG_MEMORY_QUIET_RATE + 1, NULL), 0);
        cr_assert_eq(run(&s, &t, &msgs, 20, 0, NULL), 1, "drop %d", i);
    }
}

Test(memory_idle, a_burst_of_connections_counts_as_work)
{
    vg_memory_idle s = {0};
    vg_memory_idle_tick(&s, 0, 0, 0);
    cr_assert(!vg_memory_idle_tick(&s, 1000, 0, 10000), "10,000 connections in a second");
    int released = 0;
    for (int64_t t = 2000; t <= 30000; t += 1000)
        released += vg_memory_idle_tick(&s, t, 0, 10000);
    cr_assert_eq(released, 1);
}

Test(memory_idle, rate_is_per_second_whatever_the_tick_period)
{
    /* 150 messages in 100 ms is 1500/s: busy; 150 in 1 s is not. */
    vg_memory_idle s = {0};
    vg_memory_idle_tick(&s, 0, 0, 0);
    cr_assert(!vg_memory_idle_tick(&s, 100, 150, 0));
    cr_assert(s.dirty, "150 in 100 ms is busy");
    vg_memory_idle q = {0};
    vg_memory_idle_tick(&q, 0, 0, 0);
    cr_assert(!vg_memory_idle_tick(&q, 1000, 150, 0));
    cr_assert(!q.dirty, "150 in a second is quiet");
}

Test(memory_idle, a_clock_that_does_not_move_is_measured_across)
{
    vg_memory_idle s = {0};
    vg_memory_idle_tick(&s, 5000, 0, 0);
    for (int i = 0; i < 10; i++)
        cr_assert(!vg_memory_idle_tick(&s, 5000, 100u * (uint64_t)i, 0));
    cr_assert(!vg_memory_idle_tick(&s, 4000, 5000, 0), "backwards: ignored");
    cr_assert(!vg_memory_idle_tick(&s, 6000, 5000, 0));
    cr_assert(s.dirty, "5000 messages over the one real second: busy");
}

Test(memory_idle, huge_counters_do_not_overflow)
{
    vg_memory_idle s = {0};
    vg_memory_idle_tick(&s, 0, 0, 0);
    cr_assert(!vg_memory_idle_tick(&s, 1, UINT64_MAX / 2, UINT64_MAX / 4));
    cr_assert(s.dirty);
    cr_assert(vg_memory_idle_tick(&s, 1 + VG_MEMORY_QUIET_MS, UINT64_MAX / 2, UINT64_MAX / 4));
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1 /* their malloc refuses mallopt */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

Test(memory_idle, tune_and_release_leave_malloc_working)
{
    bool tuned = vg_memory_tune();
#ifndef SANITIZED
    cr_assert(tuned, "glibc's malloc accepts both thresholds");
#else
    (void)tuned;
#endif
    for (int round = 0; round < 3; round++) {
        void *big = malloc(VG_MEMORY_MMAP_THRESHOLD * 4);
        void *small = malloc(4096);
        cr_assert(big != NULL && small != NULL);
        memset(big, 1, VG_MEMORY_MMAP_THRESHOLD * 4);
        free(big);
        free(small);
        vg_memory_release();
    }
}
