/* Confirmation marks (client_confirm.h): the FIFO of PINGs in flight,
 * unsolicited and repeated PONGs, a lost connection and the counting
 * across connections, the room kept for heartbeat probes. Pure. */
#include <criterion/criterion.h>

#include "client_confirm.h"

/* Writes n more MSG frames, as the client's written-frame hook does. */
static void wrote(vg_confirm *c, uint64_t n) { c->written += n; }

/* The invariant the client's stats rest on. */
static void check(const vg_confirm *c)
{
    cr_assert_leq(c->confirmed + c->unconfirmed, c->written,
                  "confirmed %llu + unconfirmed %llu > written %llu",
                  (unsigned long long)c->confirmed, (unsigned long long)c->unconfirmed,
                  (unsigned long long)c->written);
}

Test(confirm, pongs_confirm_marks_in_fifo_order)
{
    vg_confirm c = {0};
    wrote(&c, 5);
    cr_assert(vg_confirm_ping(&c, 5));
    wrote(&c, 5);
    cr_assert(vg_confirm_ping(&c, 10));
    cr_assert_eq(c.last_mark, 10);
    cr_assert_eq(c.n, 2);
    cr_assert(vg_confirm_pong(&c));
    cr_assert_eq(c.confirmed, 5, "the first PONG answers the first PING");
    cr_assert(vg_confirm_pong(&c));
    cr_assert_eq(c.confirmed, 10);
    cr_assert_eq(vg_confirm_written(&c), 10);
    check(&c);
}

Test(confirm, unsolicited_pong_changes_nothing)
{
    vg_confirm c = {0};
    cr_assert(!vg_confirm_pong(&c));
    wrote(&c, 3);
    cr_assert(!vg_confirm_pong(&c), "no PING in flight");
    cr_assert_eq(c.confirmed, 0);
    cr_assert(vg_confirm_ping(&c, 3));
    cr_assert(vg_confirm_pong(&c));
    cr_assert(!vg_confirm_pong(&c), "one PONG per PING");
    cr_assert_eq(c.confirmed, 3);
}

Test(confirm, a_pong_that_confirms_nothing_new_returns_false)
{
    vg_confirm c = {0};
    wrote(&c, 4);
    vg_confirm_ping(&c, 4);
    vg_confirm_ping(&c, 4); /* a heartbeat probe with nothing written since */
    vg_confirm_ping(&c, 0);
    cr_assert(vg_confirm_pong(&c));
    cr_assert(!vg_confirm_pong(&c));
    cr_assert(!vg_confirm_pong(&c));
    cr_assert_eq(c.confirmed, 4);
    cr_assert_eq(c.n, 0);
    cr_assert_eq(c.last_mark, 4, "last_mark is the highest mark sent");
}

Test(confirm, lost_connection_makes_the_unconfirmed_ones_unconfirmed)
{
    vg_confirm c = {0};
    wrote(&c, 10);
    vg_confirm_ping(&c, 10);
    vg_confirm_pong(&c);
    wrote(&c, 7);
    vg_confirm_ping(&c, 17);
    cr_assert_eq(vg_confirm_lost(&c, 0), 7);
    cr_assert_eq(c.unconfirmed, 7);
    cr_assert_eq(c.confirmed, 10);
    cr_assert_eq(c.n, 0, "the PINGs in flight are forgotten");
    cr_assert_eq(c.last_mark, 17);
    cr_assert(!vg_confirm_pong(&c), "a PONG of the old connection cannot arrive; if one does");
    check(&c);
    cr_assert_eq(vg_confirm_lost(&c, 0), 0, "nothing more was written");
    cr_assert_eq(c.unconfirmed, 7);
}

Test(confirm, marks_count_across_connections)
{
    vg_confirm c = {0};
    wrote(&c, 10);
    vg_confirm_ping(&c, 10);
    vg_confirm_lost(&c, 0); /* 10 unconfirmed */
    wrote(&c, 5);        /* frames 11..15 on the next connection */
    vg_confirm_ping(&c, 15);
    cr_assert(vg_confirm_pong(&c));
    cr_assert_eq(c.confirmed, 5, "only the new connection's frames are confirmed");
    cr_assert_eq(c.unconfirmed, 10);
    cr_assert_eq(c.confirmed + c.unconfirmed, c.written);
    /* A mark not above what is settled confirms nothing. */
    vg_confirm_ping(&c, 12);
    cr_assert(!vg_confirm_pong(&c));
    cr_assert_eq(c.confirmed, 5);
    check(&c);
}

Test(confirm, fifo_is_bounded_and_wraps)
{
    vg_confirm c = {0};
    for (int i = 0; i < VG_CONFIRM_MARKS; i++) {
        wrote(&c, 1);
        cr_assert(vg_confirm_ping(&c, c.written), "ping %d", i);
    }
    cr_assert_eq(c.n, VG_CONFIRM_MARKS);
    /* Drain half, refill, many times round: the order holds. */
    uint64_t expect = 0;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < VG_CONFIRM_MARKS / 2; i++) {
            cr_assert(vg_confirm_pong(&c));
            cr_assert_eq(c.confirmed, ++expect);
        }
        for (int i = 0; i < VG_CONFIRM_MARKS / 2; i++) {
            wrote(&c, 1);
            cr_assert(vg_confirm_ping(&c, c.written));
        }
    }
    while (c.n > 0)
        vg_confirm_pong(&c);
    cr_assert_eq(c.confirmed, c.written);
}

Test(confirm, room_for_flush_keeps_room_for_every_probe)
{
    vg_confirm c = {0};
    int flushes = 0;
    while (vg_confirm_room_for_flush(&c)) {
        cr_assert(vg_confirm_ping(&c, 0));
        flushes++;
    }
    cr_assert_eq(flushes, VG_CONFIRM_MARKS - VG_CONFIRM_PROBES_MAX);
    for (int p = 0; p < VG_CONFIRM_PROBES_MAX; p++)
        cr_assert(vg_confirm_ping(&c, 0), "probe %d found no room", p + 1);
    vg_confirm_pong(&c);
    cr_assert(!vg_confirm_room_for_flush(&c));
    vg_confirm_lost(&c, 0);
    cr_assert(vg_confirm_room_for_flush(&c), "a new connection starts empty");
}

/* More PINGs than the FIFO holds (a peer that is heard but answers no
 * PING, while the heartbeat keeps probing): the PINGs it cannot record
 * are still sent, so their PONGs must be matched to them and confirm
 * nothing; marks recorded later must wait for those PONGs. */
Test(confirm, pings_beyond_the_fifo_are_matched_and_confirm_nothing)
{
    vg_confirm c = {0};
    for (int i = 0; i < VG_CONFIRM_MARKS; i++)
        cr_assert(vg_confirm_ping(&c, 0));
    cr_assert(!vg_confirm_ping(&c, 0), "the FIFO is full");
    cr_assert(!vg_confirm_ping(&c, 0));
    cr_assert_eq(c.unmarked, 2);
    cr_assert(!vg_confirm_room_for_flush(&c));
    wrote(&c, 5); /* a message, after those PINGs */
    cr_assert(vg_confirm_pong(&c) == false && c.n == VG_CONFIRM_MARKS - 1);
    /* Room in the FIFO again, but unmarked PINGs are older than any new one. */
    cr_assert(!vg_confirm_ping(&c, 5), "recorded ahead of older unmarked PINGs");
    cr_assert_eq(c.unmarked, 3);
    cr_assert(!vg_confirm_room_for_flush(&c), "no flush PING while unmarked ones are in flight");
    for (int i = 1; i < VG_CONFIRM_MARKS; i++)
        cr_assert(!vg_confirm_pong(&c));
    for (int i = 0; i < 3; i++) {
        cr_assert(!vg_confirm_pong(&c), "a PONG for a PING sent before the message");
        cr_assert_eq(c.confirmed, 0);
    }
    cr_assert_eq(c.unmarked, 0);
    cr_assert(vg_confirm_room_for_flush(&c));
    cr_assert(vg_confirm_ping(&c, 5));
    cr_assert(vg_confirm_pong(&c));
    cr_assert_eq(c.confirmed, 5);
}

Test(confirm, lost_connection_forgets_unmarked_pings)
{
    vg_confirm c = {0};
    for (int i = 0; i <= VG_CONFIRM_MARKS; i++)
        vg_confirm_ping(&c, 0);
    cr_assert_eq(c.unmarked, 1);
    vg_confirm_lost(&c, 0);
    cr_assert_eq(c.unmarked, 0);
    wrote(&c, 2);
    cr_assert(vg_confirm_ping(&c, 2));
    cr_assert(vg_confirm_pong(&c));
    cr_assert_eq(c.confirmed, 2);
}

/* Frames kept for a resend stay pending across the loss; the next
 * connection's marks start after the settled ones, and INFO's
 * publisher_acked confirms up to what was written, no further. */
Test(confirm, kept_frames_stay_pending_and_acked_confirms_them)
{
    vg_confirm c = {0};
    wrote(&c, 10);
    vg_confirm_ping(&c, 4);
    cr_assert(vg_confirm_pong(&c));
    cr_assert_eq(vg_confirm_lost(&c, 3), 3, "5..7 lost, 8..10 kept");
    cr_assert_eq(c.unconfirmed, 3);
    cr_assert_eq(vg_confirm_settled(&c), 7);
    cr_assert_eq(c.last_mark, 7);
    cr_assert_eq(vg_confirm_acked(&c, 6), 0, "already settled");
    cr_assert_eq(vg_confirm_acked(&c, 8), 1);
    cr_assert_eq(vg_confirm_acked(&c, 99), 2, "held to what was written");
    cr_assert_eq(c.confirmed, 7);
    check(&c);
    cr_assert_eq(vg_confirm_lost(&c, 5), 0, "keep beyond the unsettled keeps them all");
    check(&c);
}
