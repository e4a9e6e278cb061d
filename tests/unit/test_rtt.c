/* The heartbeat's round-trip measurement (rtt.h), along timelines without
 * sleeping: PONGs pair with PINGs in order, several in flight, a PONG that
 * answers nothing, and PINGs beyond the slots kept. */
#include <criterion/criterion.h>

#include "rtt.h"

#define MS 1000000LL

Test(rtt, none_until_a_pong_answers)
{
    vg_rtt r;
    vg_rtt_init(&r);
    int64_t d = 42;
    cr_assert_eq(r.last_ns, -1);
    cr_assert_not(vg_rtt_answered(&r, 5 * MS, &d), "a PONG before any PING measures nothing");
    cr_assert_eq(d, 42);
    vg_rtt_sent(&r, 10 * MS);
    cr_assert_eq(r.last_ns, -1, "nothing measured while the PING is out");
    cr_assert(vg_rtt_answered(&r, 13 * MS, &d));
    cr_assert_eq(d, 3 * MS);
    cr_assert_eq(r.last_ns, 3 * MS);
}

Test(rtt, pongs_pair_with_pings_in_order)
{
    vg_rtt r;
    vg_rtt_init(&r);
    int64_t d;
    vg_rtt_sent(&r, 100 * MS);
    vg_rtt_sent(&r, 150 * MS);
    vg_rtt_sent(&r, 160 * MS);
    cr_assert(vg_rtt_answered(&r, 170 * MS, &d));
    cr_assert_eq(d, 70 * MS, "the first PONG answers the first PING");
    cr_assert(vg_rtt_answered(&r, 171 * MS, &d));
    cr_assert_eq(d, 21 * MS);
    cr_assert(vg_rtt_answered(&r, 175 * MS, &d));
    cr_assert_eq(d, 15 * MS);
    cr_assert_not(vg_rtt_answered(&r, 180 * MS, &d), "a fourth PONG answers nothing");
    cr_assert_eq(r.last_ns, 15 * MS, "and leaves the last measurement");
    vg_rtt_sent(&r, 200 * MS);
    cr_assert(vg_rtt_answered(&r, 201 * MS, &d), "the unmatched PONG did not shift the pairing");
    cr_assert_eq(d, 1 * MS);
}

Test(rtt, pings_beyond_the_slots)
{
    vg_rtt r;
    vg_rtt_init(&r);
    int64_t d;
    for (int i = 0; i < VG_RTT_SLOTS + 2; i++)
        vg_rtt_sent(&r, (int64_t)i * MS);
    /* The first two PINGs' times were overwritten: their PONGs measure nothing. */
    cr_assert_not(vg_rtt_answered(&r, 100 * MS, &d));
    cr_assert_not(vg_rtt_answered(&r, 100 * MS, &d));
    cr_assert_eq(r.last_ns, -1);
    cr_assert(vg_rtt_answered(&r, 100 * MS, &d), "the third one's time is still known");
    cr_assert_eq(d, 98 * MS);
}

Test(rtt, a_clock_that_does_not_move)
{
    vg_rtt r;
    vg_rtt_init(&r);
    int64_t d;
    vg_rtt_sent(&r, 7 * MS);
    cr_assert(vg_rtt_answered(&r, 7 * MS, &d));
    cr_assert_eq(d, 0, "a zero round trip is a measurement, not 'none'");
    cr_assert_eq(r.last_ns, 0);
}
