/* Output progress from TCP acknowledgements (progress.h): quiet and
 * outstanding, the clock that starts with the first unacknowledged byte,
 * acknowledgements that move it, a backlog, and a peer whose window is
 * full. Pure: times and the kernel's counters are arguments. */
#include <criterion/criterion.h>

#include "progress.h"

static vg_progress p;

Test(progress, a_new_connection_is_quiet)
{
    vg_progress_reset(&p, 1000);
    cr_assert(!vg_progress_outstanding(&p, false));
    cr_assert_eq(vg_progress_stuck_for(&p, 5000, false), 0);
    cr_assert(!vg_progress_peer_full(&p, false));
    cr_assert(vg_progress_outstanding(&p, true), "a backlog is outstanding");
}

Test(progress, writing_after_quiet_starts_the_clock_then)
{
    vg_progress_reset(&p, 0);
    vg_progress_observe(&p, 1000, 0, 65535, true, false); /* still quiet */
    vg_progress_wrote(&p, 5000, 100);
    cr_assert(vg_progress_outstanding(&p, false));
    cr_assert_eq(vg_progress_stuck_for(&p, 5100, false), 100,
                 "the quiet time before the write does not count");
    vg_progress_wrote(&p, 6000, 200); /* more, still unacknowledged */
    cr_assert_eq(vg_progress_stuck_for(&p, 7000, false), 2000, "the clock keeps running");
    vg_progress_wrote(&p, 8000, 200); /* the same total: nothing new */
    cr_assert_eq(vg_progress_stuck_for(&p, 8000, false), 3000);
}

Test(progress, acknowledgements_move_it)
{
    vg_progress_reset(&p, 0);
    vg_progress_wrote(&p, 100, 1000);
    vg_progress_observe(&p, 300, 400, 65535, true, false);
    cr_assert_eq(vg_progress_stuck_for(&p, 500, false), 200, "moved at 300");
    vg_progress_observe(&p, 600, 400, 65535, true, false); /* no new ack */
    cr_assert_eq(vg_progress_stuck_for(&p, 900, false), 600);
    vg_progress_observe(&p, 1000, 1000, 65535, true, false); /* all acknowledged */
    cr_assert(!vg_progress_outstanding(&p, false));
    cr_assert_eq(vg_progress_stuck_for(&p, 9000, false), 0);
    vg_progress_wrote(&p, 9000, 1500);
    cr_assert_eq(vg_progress_stuck_for(&p, 9500, false), 500);
}

Test(progress, a_backlog_keeps_it_outstanding)
{
    vg_progress_reset(&p, 0);
    vg_progress_wrote(&p, 0, 100);
    /* The peer has all we wrote, but we hold more we could not write. */
    vg_progress_observe(&p, 200, 100, 65535, true, true);
    cr_assert(vg_progress_outstanding(&p, true));
    cr_assert_eq(vg_progress_stuck_for(&p, 700, true), 500, "the clock runs from the observation");
    cr_assert_eq(vg_progress_stuck_for(&p, 700, false), 500,
                 "not quiet: the backlog was seen at the observation");
    vg_progress_observe(&p, 800, 100, 65535, true, false);
    cr_assert(!vg_progress_outstanding(&p, false));
}

Test(progress, peer_full_needs_a_zero_window_and_unacknowledged_bytes)
{
    vg_progress_reset(&p, 0);
    vg_progress_wrote(&p, 0, 5000);
    vg_progress_observe(&p, 100, 3000, 0, true, true);
    cr_assert(vg_progress_peer_full(&p, true));
    vg_progress_observe(&p, 200, 3000, 0, false, true);
    cr_assert(!vg_progress_peer_full(&p, true), "the window is not known");
    vg_progress_observe(&p, 300, 3000, 1024, true, true);
    cr_assert(!vg_progress_peer_full(&p, true), "the window is open");
    vg_progress_observe(&p, 400, 5000, 0, true, false);
    cr_assert(!vg_progress_peer_full(&p, false), "everything is acknowledged");
}

Test(progress, stuck_for_is_never_negative)
{
    vg_progress_reset(&p, 1000);
    vg_progress_wrote(&p, 1000, 10);
    cr_assert_eq(vg_progress_stuck_for(&p, 900, false), 0);
}
