/* A subscription's place in its topic's log, as the client library keeps
 * it for protocol version 2 (issue 10): pure, no locks, no I/O; the I/O
 * thread owns it (client_deliver.c keeps one per topic; docs/design.md,
 * "The topic log").
 *
 * The position is the last sequence number handed to the application, in
 * one epoch of the broker's log. Everything the client learns about the
 * log goes through it, so that each message reaches the application once,
 * in order, and everything in between that it will never get is reported
 * exactly once as a gap:
 *
 *   a delivered MSG     seq <= last: a redelivery, dropped; last+1: handed
 *                       over; beyond: the range between is a gap the broker
 *                       did not announce (reported, then handed over)
 *   a GAP frame         from..to dropped by retention: reported, skipped
 *   OK for a SUB        where the broker starts: anything skipped before it
 *                       is a gap, unless the position was the broker's to
 *                       choose (a new subscription from now, first or ago)
 *   INFO at connect     another epoch: the broker lost its log; everything
 *                       after last is unknown, and the subscription starts
 *                       again from the first message of the new log
 *
 * A connection receives each message of a topic once however many sids it
 * has on it, so the library keeps one position per topic, a wildcard
 * subscription's topics included (issue 12). */
#ifndef VG_CLIENT_RESUME_H
#define VG_CLIENT_RESUME_H

#include <stdbool.h>
#include <stdint.h>

#include "frame.h"

/* What the application must be told is missing: from..to inclusive, or
 * with to = 0 everything after from - 1 up to the new epoch (unknown). */
typedef struct {
    uint64_t from, to;
    vg_gap_reason reason;
    uint64_t sid;  /* set by the client library: the subscription it is reported to */
    unsigned copy; /* ... 0 for the first one, 1, 2, ... for others it concerns too */
} vg_gap;

typedef struct {
    uint64_t epoch;  /* of the log last is in; 0: no position yet */
    uint64_t last;   /* last seq handed over (or skipped as a gap) */
    bool anchored;   /* last is the application's: a start before the
                        broker's is a gap */
    vg_sub_start start; /* what to ask for while there is no position */
    uint64_t position;
    uint64_t conn_epoch; /* the current connection's (vg_resume_connected) */
} vg_resume;

/* A subscription starting at start (position: the sequence number for
 * VG_SUB_SEQ, in epoch, 0 = the broker's current one; milliseconds for
 * VG_SUB_AGO; else 0). */
void vg_resume_init(vg_resume *r, vg_sub_start start, uint64_t epoch, uint64_t position);

/* The connection's handshake named the broker's epoch. true with *gap set
 * if the position was in another one: it is then reset to start from the
 * first message of the new epoch. */
bool vg_resume_connected(vg_resume *r, uint64_t epoch, vg_gap *gap);

/* What the next SUB for this subscription asks for. */
void vg_resume_sub(const vg_resume *r, vg_sub_start *start, uint64_t *epoch, uint64_t *position);

/* The broker's OK for the SUB: it starts at next in epoch. true with *gap
 * set if that skips messages the subscription was owed. */
bool vg_resume_started(vg_resume *r, uint64_t epoch, uint64_t next, vg_gap *gap);

typedef enum {
    VG_RESUME_DELIVER,   /* hand it to the application */
    VG_RESUME_DUPLICATE, /* already handed over: drop it */
} vg_resume_verdict;

/* A delivered message with seq. *gapped is set, with *gap, if messages
 * before it were skipped without a GAP frame; it is delivered anyway. */
vg_resume_verdict vg_resume_msg(vg_resume *r, uint64_t seq, bool *gapped, vg_gap *gap);

/* A GAP frame for from..to (to >= from). true with *gap set to the part
 * not already delivered or reported. */
bool vg_resume_gap(vg_resume *r, uint64_t from, uint64_t to, vg_gap *gap);

#endif
