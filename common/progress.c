#include "progress.h"

void vg_progress_reset(vg_progress *p, int64_t now)
{
    *p = (vg_progress){.observed_at = now, .moved_at = now, .quiet = true};
}

void vg_progress_wrote(vg_progress *p, int64_t now, uint64_t written)
{
    if (written == p->written)
        return;
    p->written = written;
    if (p->quiet)
        p->moved_at = now; /* the clock starts with the first unacknowledged byte */
    p->quiet = false;
}

void vg_progress_observe(vg_progress *p, int64_t now, uint64_t acked, uint32_t window,
                         bool window_known, bool backlog)
{
    if (acked > p->acked || acked >= p->written) /* moved, or the peer has it all */
        p->moved_at = now;
    p->acked = acked;
    p->window = window;
    p->window_known = window_known;
    p->observed_at = now;
    p->quiet = acked >= p->written && !backlog;
}

bool vg_progress_outstanding(const vg_progress *p, bool backlog)
{
    return backlog || !p->quiet;
}

int64_t vg_progress_stuck_for(const vg_progress *p, int64_t now, bool backlog)
{
    if (!vg_progress_outstanding(p, backlog))
        return 0;
    return now > p->moved_at ? now - p->moved_at : 0;
}

bool vg_progress_peer_full(const vg_progress *p, bool backlog)
{
    return vg_progress_outstanding(p, backlog) && p->window_known && p->window == 0 &&
           p->acked < p->written;
}
