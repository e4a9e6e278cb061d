/* Whether the peer is taking our output, judged only by what the peer did:
 * its TCP acknowledgements. Pure: time and the kernel's counters are
 * arguments.
 *
 * Our own kernel accepting bytes proves nothing (its send buffer just
 * grows). The peer's TCP acknowledging them proves that its side is taking
 * the stream; that is what the slow-consumer rule needs. It is not a sign
 * of life for the heartbeat: a stopped or hung process's kernel goes on
 * acknowledging small writes, such as PINGs, until its receive buffer is
 * full. */
#ifndef VG_PROGRESS_H
#define VG_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    uint64_t acked;      /* bytes acknowledged at the last observation */
    uint64_t written;    /* bytes handed to the kernel at the last observation or write */
    uint32_t window;     /* the peer's advertised window at the last observation */
    bool window_known;
    int64_t observed_at; /* time of the last observation */
    int64_t moved_at;    /* output last moved: acknowledged, or nothing outstanding */
    bool quiet;          /* nothing was outstanding at the last observation or since */
} vg_progress;

/* A new connection at now: nothing written, nothing outstanding. */
void vg_progress_reset(vg_progress *p, int64_t now);

/* We handed the kernel more bytes at now (written is the running total).
 * If nothing was outstanding, output starts to be outstanding now. */
void vg_progress_wrote(vg_progress *p, int64_t now, uint64_t written);

/* The kernel's record at now: acked bytes acknowledged so far; window the
 * peer's advertised receive window (window_known false if the kernel does
 * not say); backlog: we still hold bytes not yet written. More acknowledged
 * than at the last observation is progress, dated now (so at most one
 * observation period late). */
void vg_progress_observe(vg_progress *p, int64_t now, uint64_t acked, uint32_t window,
                         bool window_known, bool backlog);

/* True if bytes may be waiting for the peer: unacknowledged at the last
 * observation, written since, or held back (backlog). */
bool vg_progress_outstanding(const vg_progress *p, bool backlog);

/* How long output has been outstanding without moving, at now (0 if none). */
int64_t vg_progress_stuck_for(const vg_progress *p, int64_t now, bool backlog);

/* True if, at the last observation, output was outstanding and the peer
 * advertised a zero window: its kernel is there, but its application is
 * not reading. */
bool vg_progress_peer_full(const vg_progress *p, bool backlog);

#endif
