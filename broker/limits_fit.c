#include "limits_fit.h"

/* Descriptors kept for the listener, the signalfd, logs and everything but connections. */
#define FDS_RESERVED 64

vg_conn_costs vg_limits_costs(uint64_t map_reserve)
{
    return (vg_conn_costs){
        .fds = 2,  /* the socket and the outbox's eventfd */
        .maps = 2, /* the thread's stack and its guard page */
        .fd_reserve = FDS_RESERVED,
        .map_reserve = map_reserve,
        .task_reserve = 1024,
    };
}

/* a - b - c, or 0 when that would be negative. */
static uint64_t left(uint64_t a, uint64_t b, uint64_t c)
{
    if (b >= a)
        return 0;
    a -= b;
    return c >= a ? 0 : a - c;
}

/* Connections a limit of `limit` allows when `used` is taken and `reserve`
 * kept, at `each` per connection; VG_UNLIMITED for no limit. */
static uint64_t room(uint64_t limit, uint64_t used, uint64_t reserve, unsigned each)
{
    if (limit == VG_UNLIMITED)
        return VG_UNLIMITED;
    return left(limit, used, reserve) / (each > 0 ? each : 1);
}

void vg_limits_fit(const vg_host_limits *h, const vg_conn_costs *c, size_t asked, vg_fit *out)
{
    uint64_t *r = out->room;
    r[VG_LIMIT_NONE] = VG_UNLIMITED;
    r[VG_LIMIT_NOFILE] = room(h->nofile, 0, c->fd_reserve, c->fds);
    r[VG_LIMIT_MAX_MAP_COUNT] = room(h->max_map_count, h->maps_in_use, c->map_reserve, c->maps);
    r[VG_LIMIT_THREADS_MAX] = room(h->threads_max, h->threads_now, c->task_reserve, 1);
    r[VG_LIMIT_PID_MAX] =
        h->pid_max == VG_UNLIMITED
            ? VG_UNLIMITED
            : room(left(h->pid_max, VG_PIDS_RESERVED, 0), h->threads_now, c->task_reserve, 1);
    r[VG_LIMIT_NPROC] = h->nproc_applies ? room(h->nproc, h->user_threads, 0, 1) : VG_UNLIMITED;
    r[VG_LIMIT_PIDS_MAX] = room(h->pids_max, h->pids_current, 0, 1);

    /* The smallest room wins; on a tie, the first limit in the enum. */
    uint64_t min = asked > 0 ? asked : 1;
    out->limited_by = VG_LIMIT_NONE;
    for (int l = VG_LIMIT_NONE + 1; l < VG_LIMIT_COUNT; l++)
        if (r[l] < min) {
            min = r[l];
            out->limited_by = (vg_limit)l;
        }
    out->max_connections = min > 0 ? (size_t)min : 1; /* min <= asked: it fits */
}

const char *vg_limit_name(vg_limit l)
{
    static const char *const names[VG_LIMIT_COUNT] = {
        [VG_LIMIT_NONE] = "none",
        [VG_LIMIT_NOFILE] = "nofile",
        [VG_LIMIT_MAX_MAP_COUNT] = "max_map_count",
        [VG_LIMIT_THREADS_MAX] = "threads_max",
        [VG_LIMIT_PID_MAX] = "pid_max",
        [VG_LIMIT_NPROC] = "nproc",
        [VG_LIMIT_PIDS_MAX] = "pids_max",
    };
    return (unsigned)l < VG_LIMIT_COUNT ? names[l] : "unknown";
}
