/* The heartbeat's round trip: the time from queuing a PING to reading the
 * PONG that answers it.
 *
 * A peer answers PINGs in order, so the n-th PONG answers the n-th PING.
 * The send times of the last VG_RTT_SLOTS PINGs are kept; a PONG whose
 * PING was overwritten (more than that many unanswered) or that answers
 * nothing (more PONGs than PINGs) measures nothing. Time is an argument
 * (ns on a monotonic clock), so this is tested without sleeping. Only
 * correct on a side whose every PING goes through vg_rtt_sent (the
 * broker: the link's heartbeat is its only source of PINGs). */
#ifndef VG_RTT_H
#define VG_RTT_H

#include <stdbool.h>
#include <stdint.h>

#define VG_RTT_SLOTS 8

typedef struct {
    int64_t sent_ns[VG_RTT_SLOTS]; /* PING k's time at k % VG_RTT_SLOTS */
    uint64_t pings, pongs;         /* counted since vg_rtt_init */
    int64_t last_ns;               /* the last measurement; -1: none yet */
} vg_rtt;

/* Empty: nothing sent, nothing measured. */
void vg_rtt_init(vg_rtt *r);

/* A PING was queued at now_ns. */
void vg_rtt_sent(vg_rtt *r, int64_t now_ns);

/* A PONG was read at now_ns: true, with the round trip in *rtt_ns (also
 * kept as last_ns), if it answers a PING whose time is still known. */
bool vg_rtt_answered(vg_rtt *r, int64_t now_ns, int64_t *rtt_ns);

#endif
