#include "client_confirm.h"

bool vg_confirm_ping(vg_confirm *c, uint64_t mark)
{
    /* The PING goes out anyway (a heartbeat probe is queued before it is
     * counted here): its PONG must be matched to it, not to a later mark.
     * Unmarked PINGs come after every recorded one and before any later. */
    if (c->n == VG_CONFIRM_MARKS || c->unmarked > 0) {
        c->unmarked++;
        return false;
    }
    c->marks[(c->head + c->n++) % VG_CONFIRM_MARKS] = mark;
    if (mark > c->last_mark)
        c->last_mark = mark;
    return true;
}

bool vg_confirm_room_for_flush(const vg_confirm *c)
{
    return c->unmarked == 0 && c->n + VG_CONFIRM_PROBES_MAX < VG_CONFIRM_MARKS;
}

bool vg_confirm_pong(vg_confirm *c)
{
    if (c->n == 0) {
        if (c->unmarked > 0)
            c->unmarked--; /* the answer to a PING that confirms nothing */
        return false;
    }
    uint64_t mark = c->marks[c->head];
    c->head = (c->head + 1) % VG_CONFIRM_MARKS;
    c->n--;
    /* Frames unconfirmed on earlier connections come first in the count. */
    if (mark <= c->confirmed + c->unconfirmed)
        return false;
    c->confirmed = mark - c->unconfirmed;
    return true;
}

uint64_t vg_confirm_lost(vg_confirm *c, uint64_t keep)
{
    uint64_t open = c->written - c->confirmed - c->unconfirmed;
    uint64_t lost = keep < open ? open - keep : 0;
    c->unconfirmed += lost;
    c->n = 0;
    c->head = 0;
    c->unmarked = 0;
    /* The next connection starts writing after the settled frames. */
    c->last_mark = vg_confirm_settled(c);
    return lost;
}

uint64_t vg_confirm_acked(vg_confirm *c, uint64_t number)
{
    if (number > c->written)
        number = c->written;
    uint64_t settled = vg_confirm_settled(c);
    if (number <= settled)
        return 0;
    c->confirmed += number - settled;
    return number - settled;
}
