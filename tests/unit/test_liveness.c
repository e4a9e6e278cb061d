/* The heartbeat state machine, walked along timelines without sleeping: the
 * probe schedule and the verdict to the millisecond, signs of life, heartbeats
 * off, late and slightly late wake-ups, edge shapes of T, I and P, and seeded
 * random event sequences checked against the contract in liveness.h. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>

#include "liveness.h"

/* ---- helpers ---- */

static vg_liveness *make(int64_t time_ms, int64_t interval_ms, int probes, int64_t now)
{
    vg_keepalive k = {time_ms, interval_ms, probes};
    vg_liveness *l = vg_liveness_create(&k, now);
    cr_assert_not_null(l);
    return l;
}

static const char *action_name(vg_live_action a)
{
    switch (a) {
    case VG_LIVE_WAIT:
        return "WAIT";
    case VG_LIVE_PROBE:
        return "PROBE";
    case VG_LIVE_DEAD:
        return "DEAD";
    }
    return "?";
}

/* Ticks at now and asserts the action and the next deadline it reports. */
static void expect(vg_liveness *l, int64_t now, vg_live_action want, int64_t want_next)
{
    int64_t next = -1;
    vg_live_action a = vg_liveness_tick(l, now, &next);
    cr_assert_eq(a, want, "tick at %lld: got %s, want %s", (long long)now, action_name(a),
                 action_name(want));
    cr_assert_eq(next, want_next, "tick at %lld (%s): next %lld, want %lld", (long long)now,
                 action_name(a), (long long)next, (long long)want_next);
}

/* Walks a whole on-time timeline from a sign of life at t0 with nothing heard:
 * WAIT until t0+T, probe k exactly at t0+T+(k-1)·I, DEAD exactly at t0+T+P·I
 * and not a millisecond before. */
static void walk_on_time(vg_liveness *l, const vg_keepalive *k, int64_t t0)
{
    int64_t first = t0 + k->time_ms;
    int64_t dead = first + (int64_t)k->probes * k->interval_ms;
    cr_assert_eq(dead - t0, vg_keepalive_bound_ms(k));

    expect(l, t0, VG_LIVE_WAIT, first);
    expect(l, first - 1, VG_LIVE_WAIT, first);
    for (int p = 1; p <= k->probes; p++) {
        int64_t due = first + (int64_t)(p - 1) * k->interval_ms;
        expect(l, due - 1, VG_LIVE_WAIT, due);
        cr_assert_eq(vg_liveness_unanswered(l), p - 1);
        expect(l, due, VG_LIVE_PROBE, due + k->interval_ms);
        cr_assert_eq(vg_liveness_unanswered(l), p, "after probe %d", p);
        /* Called again after acting on PROBE, at the same time: nothing more. */
        expect(l, due, VG_LIVE_WAIT, due + k->interval_ms);
        cr_assert_eq(vg_liveness_last_heard(l), t0);
    }
    expect(l, dead - 1, VG_LIVE_WAIT, dead);
    expect(l, dead, VG_LIVE_DEAD, dead);
    cr_assert_eq(vg_liveness_unanswered(l), k->probes);
    cr_assert_eq(vg_liveness_last_heard(l), t0);
    /* The verdict stands until a sign of life. */
    expect(l, dead + 1, VG_LIVE_DEAD, dead + 1);
}

/* xorshift64*: deterministic, so a failure replays exactly. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Uniform enough in [lo, hi] for test purposes. */
static int64_t rng_range(uint64_t *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* ---- the default timeline, to the millisecond ---- */

Test(liveness, default_timeline_explicit)
{
    /* T=10000, I=5000, P=3 from t0=1000: probes at 11000, 16000, 21000; dead at 26000. */
    vg_liveness *l = make(10000, 5000, 3, 1000);
    cr_assert_eq(vg_liveness_unanswered(l), 0);
    cr_assert_eq(vg_liveness_last_heard(l), 1000);

    expect(l, 1000, VG_LIVE_WAIT, 11000);
    expect(l, 5000, VG_LIVE_WAIT, 11000);
    expect(l, 10999, VG_LIVE_WAIT, 11000);
    expect(l, 11000, VG_LIVE_PROBE, 16000);
    cr_assert_eq(vg_liveness_unanswered(l), 1);
    expect(l, 11000, VG_LIVE_WAIT, 16000);
    expect(l, 15999, VG_LIVE_WAIT, 16000);
    expect(l, 16000, VG_LIVE_PROBE, 21000);
    cr_assert_eq(vg_liveness_unanswered(l), 2);
    expect(l, 20999, VG_LIVE_WAIT, 21000);
    expect(l, 21000, VG_LIVE_PROBE, 26000);
    cr_assert_eq(vg_liveness_unanswered(l), 3);
    expect(l, 25999, VG_LIVE_WAIT, 26000);
    expect(l, 26000, VG_LIVE_DEAD, 26000);
    cr_assert_eq(vg_liveness_unanswered(l), 3);
    cr_assert_eq(vg_liveness_last_heard(l), 1000);
    vg_liveness_destroy(l);
}

Test(liveness, default_timeline_walk)
{
    vg_keepalive k = VG_KEEPALIVE_DEFAULT;
    vg_liveness *l = vg_liveness_create(&k, 1000);
    cr_assert_not_null(l);
    walk_on_time(l, &k, 1000);
    vg_liveness_destroy(l);
}

Test(liveness, negative_and_zero_start_times)
{
    /* A monotonic clock may start anywhere; nothing assumes now > 0. */
    vg_keepalive k = {10000, 5000, 3};
    vg_liveness *l = vg_liveness_create(&k, 0);
    cr_assert_not_null(l);
    walk_on_time(l, &k, 0);
    vg_liveness_destroy(l);

    l = vg_liveness_create(&k, -20000);
    cr_assert_not_null(l);
    walk_on_time(l, &k, -20000);
    vg_liveness_destroy(l);
}

/* ---- signs of life ---- */

Test(liveness, heard_before_first_probe_moves_it)
{
    vg_liveness *l = make(10000, 5000, 3, 1000);
    expect(l, 4000, VG_LIVE_WAIT, 11000);
    vg_liveness_heard(l, 5000);
    cr_assert_eq(vg_liveness_last_heard(l), 5000);
    cr_assert_eq(vg_liveness_unanswered(l), 0);
    expect(l, 11000, VG_LIVE_WAIT, 15000); /* the old deadline is gone */
    expect(l, 14999, VG_LIVE_WAIT, 15000);
    expect(l, 15000, VG_LIVE_PROBE, 20000);
    vg_liveness_destroy(l);
}

Test(liveness, heard_after_one_probe_resets)
{
    vg_liveness *l = make(10000, 5000, 3, 1000);
    expect(l, 11000, VG_LIVE_PROBE, 16000);
    vg_liveness_heard(l, 11040); /* the PONG */
    cr_assert_eq(vg_liveness_unanswered(l), 0);
    cr_assert_eq(vg_liveness_last_heard(l), 11040);
    expect(l, 16000, VG_LIVE_WAIT, 21040);
    vg_liveness_destroy(l);
}

Test(liveness, heard_after_two_probes_gives_a_full_new_timeline)
{
    vg_keepalive k = {10000, 5000, 3};
    vg_liveness *l = vg_liveness_create(&k, 1000);
    cr_assert_not_null(l);
    expect(l, 11000, VG_LIVE_PROBE, 16000);
    expect(l, 16000, VG_LIVE_PROBE, 21000);
    cr_assert_eq(vg_liveness_unanswered(l), 2);
    vg_liveness_heard(l, 18500);
    cr_assert_eq(vg_liveness_unanswered(l), 0);
    cr_assert_eq(vg_liveness_last_heard(l), 18500);
    /* Three probes again, then the verdict at 18500 + 25000. */
    walk_on_time(l, &k, 18500);
    vg_liveness_destroy(l);
}

Test(liveness, heard_after_dead_revives)
{
    vg_keepalive k = {10000, 5000, 3};
    vg_liveness *l = vg_liveness_create(&k, 1000);
    cr_assert_not_null(l);
    walk_on_time(l, &k, 1000);
    vg_liveness_heard(l, 30000);
    cr_assert_eq(vg_liveness_unanswered(l), 0);
    walk_on_time(l, &k, 30000);
    vg_liveness_destroy(l);
}

Test(liveness, sign_of_life_one_ms_before_verdict_prevents_dead)
{
    vg_liveness *l = make(10000, 5000, 3, 1000);
    expect(l, 11000, VG_LIVE_PROBE, 16000);
    expect(l, 16000, VG_LIVE_PROBE, 21000);
    expect(l, 21000, VG_LIVE_PROBE, 26000);
    expect(l, 25999, VG_LIVE_WAIT, 26000);
    vg_liveness_heard(l, 25999);
    expect(l, 26000, VG_LIVE_WAIT, 35999);
    expect(l, 35998, VG_LIVE_WAIT, 35999);
    expect(l, 35999, VG_LIVE_PROBE, 40999);
    cr_assert_eq(vg_liveness_unanswered(l), 1);
    vg_liveness_destroy(l);
}

Test(liveness, sign_of_life_at_verdict_time_before_tick_prevents_dead)
{
    /* The frame read in the same loop round as the deadline wins. */
    vg_liveness *l = make(10000, 5000, 3, 1000);
    expect(l, 11000, VG_LIVE_PROBE, 16000);
    expect(l, 16000, VG_LIVE_PROBE, 21000);
    expect(l, 21000, VG_LIVE_PROBE, 26000);
    vg_liveness_heard(l, 26000);
    expect(l, 26000, VG_LIVE_WAIT, 36000);
    vg_liveness_destroy(l);
}

/* ---- the bound and the off switch ---- */

Test(liveness, keepalive_bound)
{
    vg_keepalive def = VG_KEEPALIVE_DEFAULT;
    cr_assert_eq(def.time_ms, 15000);
    cr_assert_eq(def.interval_ms, 5000);
    cr_assert_eq(def.probes, 3);
    cr_assert_eq(vg_keepalive_bound_ms(&def), 30000);

    vg_keepalive k1 = {10000, 5000, 3};
    cr_assert_eq(vg_keepalive_bound_ms(&k1), 25000);
    vg_keepalive k2 = {3000, 2000, 1};
    cr_assert_eq(vg_keepalive_bound_ms(&k2), 5000);
    vg_keepalive k3 = {1000, 10000, 2};
    cr_assert_eq(vg_keepalive_bound_ms(&k3), 21000);
    /* The CLI maxima (a day, a day, 100 probes) do not overflow. */
    vg_keepalive big = {86400000, 86400000, 100};
    cr_assert_eq(vg_keepalive_bound_ms(&big), 101LL * 86400000);

    vg_keepalive off = {0, 5000, 3};
    cr_assert_eq(vg_keepalive_bound_ms(&off), 0);
    vg_keepalive neg = {-1, 5000, 3};
    cr_assert_eq(vg_keepalive_bound_ms(&neg), 0);
}

Test(liveness, off_always_waits_forever)
{
    vg_liveness *l = make(0, 5000, 3, 1000);
    const int64_t times[] = {1000, 1001, 11000, 26000, 1000000, INT64_MAX / 2, INT64_MAX - 1};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        expect(l, times[i], VG_LIVE_WAIT, INT64_MAX);
        cr_assert_eq(vg_liveness_unanswered(l), 0);
    }
    vg_liveness_heard(l, 2000);
    expect(l, 1LL << 50, VG_LIVE_WAIT, INT64_MAX);
    cr_assert_eq(vg_liveness_unanswered(l), 0);
    vg_liveness_destroy(l);
}

/* ---- late wake-ups ---- */

Test(liveness, late_wake_probes_instead_of_dead_and_reschedules_from_now)
{
    /* Asleep through every deadline: at t0+T+10·I the peer has had no chance
     * to answer anything, so it gets a probe, not a verdict, and then a full
     * interval per probe measured from the actual time. */
    const int64_t t0 = 1000, T = 10000, I = 5000;
    vg_liveness *l = make(T, I, 3, t0);
    const int64_t w = t0 + T + 10 * I; /* 61000 */
    expect(l, w, VG_LIVE_PROBE, w + I);
    cr_assert_eq(vg_liveness_unanswered(l), 1);
    expect(l, w, VG_LIVE_WAIT, w + I);
    expect(l, w + I - 1, VG_LIVE_WAIT, w + I);
    expect(l, w + I, VG_LIVE_PROBE, w + 2 * I);
    cr_assert_eq(vg_liveness_unanswered(l), 2);
    expect(l, w + 2 * I - 1, VG_LIVE_WAIT, w + 2 * I);
    expect(l, w + 2 * I, VG_LIVE_PROBE, w + 3 * I);
    cr_assert_eq(vg_liveness_unanswered(l), 3);
    expect(l, w + 3 * I - 1, VG_LIVE_WAIT, w + 3 * I);
    expect(l, w + 3 * I, VG_LIVE_DEAD, w + 3 * I);
    cr_assert_eq(vg_liveness_last_heard(l), t0);
    vg_liveness_destroy(l);
}

Test(liveness, late_wake_between_probes_reschedules_from_now)
{
    const int64_t t0 = 1000, T = 10000, I = 5000;
    vg_liveness *l = make(T, I, 3, t0);
    expect(l, 11000, VG_LIVE_PROBE, 16000);
    /* Probe 2 was due at 16000; the thread resumes at 50000. */
    expect(l, 50000, VG_LIVE_PROBE, 55000);
    cr_assert_eq(vg_liveness_unanswered(l), 2);
    expect(l, 54999, VG_LIVE_WAIT, 55000);
    expect(l, 55000, VG_LIVE_PROBE, 60000);
    expect(l, 59999, VG_LIVE_WAIT, 60000);
    expect(l, 60000, VG_LIVE_DEAD, 60000);
    vg_liveness_destroy(l);
}

Test(liveness, late_wake_after_last_probe_is_dead)
{
    /* Every probe went out and was given its interval: a late wake-up past
     * the verdict is a verdict. */
    vg_liveness *l = make(10000, 5000, 3, 1000);
    expect(l, 11000, VG_LIVE_PROBE, 16000);
    expect(l, 16000, VG_LIVE_PROBE, 21000);
    expect(l, 21000, VG_LIVE_PROBE, 26000);
    expect(l, 90000, VG_LIVE_DEAD, 90000);
    vg_liveness_destroy(l);
}

Test(liveness, slightly_late_ticks_keep_the_original_schedule)
{
    /* Each tick 3 ms late: deadlines stay on the grid t0+T+k·I. */
    vg_liveness *l = make(10000, 5000, 3, 1000);
    expect(l, 11003, VG_LIVE_PROBE, 16000);
    expect(l, 16003, VG_LIVE_PROBE, 21000);
    expect(l, 21003, VG_LIVE_PROBE, 26000);
    expect(l, 25999, VG_LIVE_WAIT, 26000);
    expect(l, 26003, VG_LIVE_DEAD, 26003);
    cr_assert_eq(vg_liveness_unanswered(l), 3);
    vg_liveness_destroy(l);
}

Test(liveness, lateness_just_under_and_just_over_half_an_interval)
{
    const int64_t I = 5000;
    /* I/2 late: still on the original grid. */
    vg_liveness *l = make(10000, I, 3, 1000);
    expect(l, 11000 + I / 2, VG_LIVE_PROBE, 16000);
    vg_liveness_destroy(l);

    /* I/2+1 late: a full interval from now. */
    l = make(10000, I, 3, 1000);
    expect(l, 11000 + I / 2 + 1, VG_LIVE_PROBE, 11000 + I / 2 + 1 + I);
    vg_liveness_destroy(l);
}

/* Woken exactly an interval late, the probe just queued must still get time
 * to be answered: no PROBE and DEAD in the same millisecond. */
Test(liveness, late_by_exactly_one_interval_gives_time_to_answer)
{
    const int64_t I = 5000;
    vg_liveness *l = make(10000, I, 2, 1000);
    expect(l, 11000, VG_LIVE_PROBE, 16000);
    /* Probe 2 due at 16000; awake at 21000, exactly one interval late. */
    int64_t next = -1;
    cr_assert_eq(vg_liveness_tick(l, 21000, &next), VG_LIVE_PROBE);
    cr_assert_gt(next, 21000, "the last probe must have time to be answered, next=%lld",
                 (long long)next);
    cr_assert_neq(vg_liveness_tick(l, 21000, &next), VG_LIVE_DEAD);
    vg_liveness_destroy(l);
}

/* ---- shapes of T, I and P ---- */

Test(liveness, single_probe)
{
    vg_keepalive k = {3000, 2000, 1};
    vg_liveness *l = vg_liveness_create(&k, 500);
    cr_assert_not_null(l);
    expect(l, 3499, VG_LIVE_WAIT, 3500);
    expect(l, 3500, VG_LIVE_PROBE, 5500);
    expect(l, 5499, VG_LIVE_WAIT, 5500);
    expect(l, 5500, VG_LIVE_DEAD, 5500);
    vg_liveness_destroy(l);

    l = vg_liveness_create(&k, 500);
    cr_assert_not_null(l);
    walk_on_time(l, &k, 500);
    vg_liveness_destroy(l);
}

Test(liveness, interval_shorter_than_time)
{
    vg_keepalive k = {10000, 1000, 5};
    vg_liveness *l = vg_liveness_create(&k, 7);
    cr_assert_not_null(l);
    walk_on_time(l, &k, 7);
    vg_liveness_destroy(l);
}

Test(liveness, interval_longer_than_time)
{
    vg_keepalive k = {1000, 10000, 2};
    vg_liveness *l = vg_liveness_create(&k, 7);
    cr_assert_not_null(l);
    expect(l, 1007, VG_LIVE_PROBE, 11007);
    expect(l, 11006, VG_LIVE_WAIT, 11007);
    expect(l, 11007, VG_LIVE_PROBE, 21007);
    expect(l, 21006, VG_LIVE_WAIT, 21007);
    expect(l, 21007, VG_LIVE_DEAD, 21007);
    vg_liveness_destroy(l);

    l = vg_liveness_create(&k, 7);
    cr_assert_not_null(l);
    walk_on_time(l, &k, 7);
    vg_liveness_destroy(l);
}

Test(liveness, one_ms_grid)
{
    vg_keepalive k = {1, 1, 3};
    vg_liveness *l = vg_liveness_create(&k, 100);
    cr_assert_not_null(l);
    walk_on_time(l, &k, 100);
    vg_liveness_destroy(l);
}

/* ---- seeded random event sequences ---- */

/* What the contract says a tick every millisecond must see, given the last
 * sign of life: probe k exactly at last+T+(k-1)·I, DEAD from last+T+P·I on. */
static vg_live_action check_dense_tick(vg_liveness *l, const vg_keepalive *k, int64_t last,
                                       int64_t t)
{
    int64_t elapsed = t - last;
    int64_t bound = vg_keepalive_bound_ms(k);
    int64_t next = -1;
    vg_live_action a = vg_liveness_tick(l, t, &next);

    if (elapsed >= bound) {
        cr_assert_eq(a, VG_LIVE_DEAD, "t=%lld last=%lld: %s, want DEAD", (long long)t,
                     (long long)last, action_name(a));
        return a;
    }
    cr_assert_neq(a, VG_LIVE_DEAD, "t=%lld last=%lld: DEAD before the bound %lld", (long long)t,
                  (long long)last, (long long)bound);
    if (elapsed < k->time_ms) {
        cr_assert_eq(a, VG_LIVE_WAIT, "t=%lld last=%lld", (long long)t, (long long)last);
        cr_assert_eq(next, last + k->time_ms);
        cr_assert_eq(vg_liveness_unanswered(l), 0);
        return a;
    }
    int64_t since_first = elapsed - k->time_ms;
    int sent = (int)(since_first / k->interval_ms) + 1; /* probes due by now */
    int64_t following = last + k->time_ms + (int64_t)sent * k->interval_ms;
    if (since_first % k->interval_ms == 0) {
        cr_assert_eq(a, VG_LIVE_PROBE, "t=%lld last=%lld: %s, want PROBE %d", (long long)t,
                     (long long)last, action_name(a), sent);
    } else {
        cr_assert_eq(a, VG_LIVE_WAIT, "t=%lld last=%lld: %s, want WAIT", (long long)t,
                     (long long)last, action_name(a));
    }
    cr_assert_eq(next, following, "t=%lld last=%lld: next %lld, want %lld", (long long)t,
                 (long long)last, (long long)next, (long long)following);
    cr_assert_eq(vg_liveness_unanswered(l), sent);
    return a;
}

Test(liveness, random_signs_of_life_with_a_tick_every_ms)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 40; round++) {
        vg_keepalive k = {rng_range(&seed, 1, 60), rng_range(&seed, 1, 40),
                          (int)rng_range(&seed, 1, 5)};
        int64_t bound = vg_keepalive_bound_ms(&k);
        int64_t t0 = rng_range(&seed, -1000, 1000);
        vg_liveness *l = vg_liveness_create(&k, t0);
        cr_assert_not_null(l);
        int64_t last = t0;
        int deaths = 0;
        bool dead_seen = false; /* since the last sign of life */
        for (int64_t t = t0; t < t0 + 4000; t++) {
            /* About one sign of life per bound, so some gaps reach DEAD. */
            if (rng_next(&seed) % (uint64_t)(bound + 1) == 0) {
                vg_liveness_heard(l, t);
                last = t;
                dead_seen = false;
            }
            int before = vg_liveness_unanswered(l);
            vg_live_action a = check_dense_tick(l, &k, last, t);
            cr_assert_leq(vg_liveness_unanswered(l), k.probes);
            cr_assert_geq(vg_liveness_unanswered(l), before);
            if (a == VG_LIVE_DEAD && !dead_seen) {
                dead_seen = true;
                cr_assert_eq(t, last + bound, "round %d: first DEAD at %lld, want %lld", round,
                             (long long)t, (long long)(last + bound));
                deaths++;
            }
            cr_assert_eq(vg_liveness_last_heard(l), last);
        }
        cr_assert_gt(deaths, 0, "round %d never reached DEAD: the test would prove little", round);
        vg_liveness_destroy(l);
    }
}

Test(liveness, random_event_driven_loop_dies_exactly_at_the_bound)
{
    /* Like a poll loop: sleep until the reported deadline unless a frame
     * arrives first; tick on time; act on PROBE and tick again at once. */
    uint64_t seed = 42;
    for (int round = 0; round < 200; round++) {
        vg_keepalive k = {rng_range(&seed, 1, 20000), rng_range(&seed, 1, 10000),
                          (int)rng_range(&seed, 1, 6)};
        int64_t bound = vg_keepalive_bound_ms(&k);
        int64_t now = rng_range(&seed, 0, 1000000);
        vg_liveness *l = vg_liveness_create(&k, now);
        cr_assert_not_null(l);
        int64_t next = -1;
        int probes_seen = 0;
        for (;;) {
            vg_live_action a;
            while ((a = vg_liveness_tick(l, now, &next)) == VG_LIVE_PROBE)
                probes_seen++;
            if (a == VG_LIVE_DEAD)
                break;
            cr_assert_gt(next, now);
            /* Sometimes a frame arrives before the deadline, sometimes not. */
            if (rng_next(&seed) % 4 == 0) {
                now = rng_range(&seed, now, next - 1);
                vg_liveness_heard(l, now);
                probes_seen = 0;
            } else {
                now = next;
            }
        }
        cr_assert_eq(now - vg_liveness_last_heard(l), bound, "round %d: DEAD after %lld ms, want %lld",
                     round, (long long)(now - vg_liveness_last_heard(l)), (long long)bound);
        cr_assert_eq(probes_seen, k.probes);
        cr_assert_eq(vg_liveness_unanswered(l), k.probes);
        vg_liveness_destroy(l);
    }
}

Test(liveness, random_sparse_and_late_ticks_never_dead_early)
{
    /* Ticks at arbitrary times, some long after every deadline: DEAD still
     * needs at least T+P·I of silence, and a PROBE never comes before one
     * is due. */
    uint64_t seed = 0xdecafbadull;
    for (int round = 0; round < 200; round++) {
        vg_keepalive k = {rng_range(&seed, 1, 5000), rng_range(&seed, 1, 3000),
                          (int)rng_range(&seed, 1, 5)};
        int64_t bound = vg_keepalive_bound_ms(&k);
        int64_t now = rng_range(&seed, -100000, 100000);
        vg_liveness *l = vg_liveness_create(&k, now);
        cr_assert_not_null(l);
        int64_t due = now + k.time_ms; /* what the last tick said */
        for (int step = 0; step < 300; step++) {
            now += rng_range(&seed, 0, 3 * bound);
            if (rng_next(&seed) % 5 == 0) {
                vg_liveness_heard(l, now);
                due = now + k.time_ms;
                if (rng_next(&seed) % 2 == 0)
                    continue;
            }
            int64_t next = -1;
            vg_live_action a = vg_liveness_tick(l, now, &next);
            int64_t silent = now - vg_liveness_last_heard(l);
            switch (a) {
            case VG_LIVE_DEAD:
                cr_assert_geq(silent, bound, "round %d: DEAD after only %lld ms (bound %lld)", round,
                              (long long)silent, (long long)bound);
                cr_assert_eq(vg_liveness_unanswered(l), k.probes);
                cr_assert_geq(now, due);
                break;
            case VG_LIVE_PROBE:
                cr_assert_geq(now, due, "round %d: PROBE at %lld before due %lld", round,
                              (long long)now, (long long)due);
                cr_assert_geq(silent, k.time_ms);
                cr_assert_geq(next, now);
                cr_assert_leq(vg_liveness_unanswered(l), k.probes);
                due = next;
                break;
            case VG_LIVE_WAIT:
                cr_assert_lt(now, due);
                cr_assert_eq(next, due);
                break;
            }
        }
        vg_liveness_destroy(l);
    }
}
