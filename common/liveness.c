#include "liveness.h"

#include <stdlib.h>

struct vg_liveness {
    vg_keepalive k;
    int64_t last_heard;
    int64_t next_at; /* when the next probe, or the verdict, is due */
    int sent;        /* probes since last_heard */
};

int64_t vg_keepalive_bound_ms(const vg_keepalive *k)
{
    if (k->time_ms <= 0)
        return 0;
    return k->time_ms + (int64_t)k->probes * k->interval_ms;
}

vg_liveness *vg_liveness_create(const vg_keepalive *k, int64_t now_ms)
{
    vg_liveness *l = malloc(sizeof *l);
    if (l == NULL)
        return NULL;
    l->k = *k;
    vg_liveness_reset(l, now_ms);
    return l;
}

void vg_liveness_destroy(vg_liveness *l) { free(l); }

void vg_liveness_reset(vg_liveness *l, int64_t now_ms)
{
    l->last_heard = now_ms;
    l->sent = 0;
    l->next_at = now_ms + l->k.time_ms;
}

void vg_liveness_heard(vg_liveness *l, int64_t now_ms)
{
    if (now_ms >= l->last_heard)
        vg_liveness_reset(l, now_ms);
}

int64_t vg_liveness_next(const vg_liveness *l)
{
    return l->k.time_ms <= 0 ? INT64_MAX : l->next_at;
}

vg_live_action vg_liveness_tick(vg_liveness *l, int64_t now_ms, int64_t *next_ms)
{
    if (l->k.time_ms <= 0) {
        *next_ms = INT64_MAX;
        return VG_LIVE_WAIT;
    }
    if (now_ms < l->next_at) {
        *next_ms = l->next_at;
        return VG_LIVE_WAIT;
    }
    if (l->sent >= l->k.probes) {
        *next_ms = now_ms;
        return VG_LIVE_DEAD;
    }
    l->sent++;
    /* On time (or nearly): keep the schedule, so probe k goes out at
     * t0 + T + (k-1)·I exactly. Woken more than half an interval late (a
     * stalled thread, a suspended laptop): restart the interval from now, so
     * the peer always has at least half an interval to answer this probe. */
    int64_t base = (now_ms - l->next_at) * 2 > l->k.interval_ms ? now_ms : l->next_at;
    l->next_at = base + l->k.interval_ms;
    *next_ms = l->next_at;
    return VG_LIVE_PROBE;
}

int vg_liveness_unanswered(const vg_liveness *l) { return l->sent; }

int64_t vg_liveness_last_heard(const vg_liveness *l) { return l->last_heard; }
