#include "client_resume.h"

void vg_resume_init(vg_resume *r, vg_sub_start start, uint64_t epoch, uint64_t position)
{
    bool seq = start == VG_SUB_SEQ;
    *r = (vg_resume){
        .epoch = seq ? epoch : 0,
        .last = seq && position > 0 ? position - 1 : 0,
        .anchored = seq,
        .start = start,
        .position = position,
    };
}

/* Everything after last is lost with the old log: the subscription is owed
 * the new log from its first message, so a retention gap at its start is
 * still reported exactly (vg_resume_started). */
static void new_epoch(vg_resume *r, uint64_t epoch, vg_gap *gap)
{
    *gap = (vg_gap){.from = r->last + 1, .to = 0, .reason = VG_GAP_EPOCH};
    r->epoch = epoch;
    r->last = 0;
    r->anchored = true;
}

bool vg_resume_connected(vg_resume *r, uint64_t epoch, vg_gap *gap)
{
    r->conn_epoch = epoch;
    if (r->epoch == 0) {
        if (r->anchored)
            r->epoch = epoch; /* a sequence number "in the current epoch" */
        return false;
    }
    if (r->epoch == epoch)
        return false;
    new_epoch(r, epoch, gap);
    return true;
}

void vg_resume_sub(const vg_resume *r, vg_sub_start *start, uint64_t *epoch, uint64_t *position)
{
    if (r->anchored || r->epoch != 0) {
        *start = VG_SUB_SEQ;
        *epoch = r->epoch;
        *position = r->last + 1;
        return;
    }
    *start = r->start;
    *epoch = 0;
    *position = r->start == VG_SUB_AGO ? r->position : 0;
}

bool vg_resume_started(vg_resume *r, uint64_t epoch, uint64_t next, vg_gap *gap)
{
    if (!r->anchored && r->epoch == 0) {
        /* The broker chose where to start, as asked: nothing is owed before. */
        r->epoch = epoch;
        r->last = next > 0 ? next - 1 : 0;
        r->anchored = true;
        return false;
    }
    if (r->epoch != 0 && r->epoch != epoch) {
        new_epoch(r, epoch, gap);
        r->last = next > 0 ? next - 1 : 0;
        return true;
    }
    r->epoch = epoch;
    if (next <= r->last + 1)
        return false;
    *gap = (vg_gap){.from = r->last + 1, .to = next - 1, .reason = VG_GAP_RETENTION};
    r->last = next - 1;
    return true;
}

vg_resume_verdict vg_resume_msg(vg_resume *r, uint64_t seq, bool *gapped, vg_gap *gap)
{
    *gapped = false;
    if (!r->anchored && r->epoch == 0) {
        /* No OK seen yet (not what a broker does): the first message is the start. */
        r->epoch = r->conn_epoch;
        r->anchored = true;
        r->last = seq;
        return VG_RESUME_DELIVER;
    }
    if (seq <= r->last)
        return VG_RESUME_DUPLICATE;
    if (seq > r->last + 1) {
        *gapped = true;
        *gap = (vg_gap){.from = r->last + 1, .to = seq - 1, .reason = VG_GAP_UNANNOUNCED};
    }
    r->last = seq;
    return VG_RESUME_DELIVER;
}

bool vg_resume_gap(vg_resume *r, uint64_t from, uint64_t to, vg_gap *gap)
{
    (void)from; /* everything after last up to to is missing, whatever from says */
    if (to <= r->last)
        return false;
    *gap = (vg_gap){.from = r->last + 1, .to = to, .reason = VG_GAP_RETENTION};
    r->last = to;
    return true;
}
