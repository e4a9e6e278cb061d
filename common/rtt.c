#include "rtt.h"

void vg_rtt_init(vg_rtt *r)
{
    *r = (vg_rtt){.last_ns = -1};
}

void vg_rtt_sent(vg_rtt *r, int64_t now_ns)
{
    r->sent_ns[r->pings % VG_RTT_SLOTS] = now_ns;
    r->pings++;
}

bool vg_rtt_answered(vg_rtt *r, int64_t now_ns, int64_t *rtt_ns)
{
    if (r->pongs >= r->pings)
        return false; /* answers nothing we sent: not counted, so later pairs stay right */
    uint64_t k = r->pongs++;
    if (r->pings - k > VG_RTT_SLOTS)
        return false; /* its slot was reused by a later PING */
    int64_t d = now_ns - r->sent_ns[k % VG_RTT_SLOTS];
    r->last_ns = d > 0 ? d : 0;
    *rtt_ns = r->last_ns;
    return true;
}
