/* Confirmation accounting for a client's publishes: pure, owned by the
 * client's I/O thread.
 *
 * MSG frames are numbered from 1 in the order they are first written, over
 * every connection (protocol version 2 numbers them so too). The broker
 * handles a connection's frames in order and answers PINGs in order, so a
 * PING sent after MSG frame k was written on the connection (the mark k)
 * comes back as a PONG only after the broker has every frame up to k in
 * its log. Every frame up to confirmed + unconfirmed is settled: confirmed,
 * or given up as unconfirmed (possibly lost, maybe delivered). When a
 * connection is lost, the newest frames the client keeps copies of stay
 * pending, to be sent again on the next connection (client_resend.h), and
 * the older unsettled ones become unconfirmed. */
#ifndef VG_CLIENT_CONFIRM_H
#define VG_CLIENT_CONFIRM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PINGs in flight at most: the heartbeat's probes (at most
 * VG_CONFIRM_PROBES_MAX, the largest keep-alive probe count) plus the PINGs
 * that confirm publishes. */
#define VG_CONFIRM_MARKS 128
#define VG_CONFIRM_PROBES_MAX 100

typedef struct {
    uint64_t marks[VG_CONFIRM_MARKS]; /* FIFO of the marks of PINGs in flight */
    size_t head, n;
    uint64_t unmarked;    /* PINGs in flight after those, sent with no mark */
    uint64_t last_mark;   /* the highest mark sent on this connection */
    uint64_t written;     /* MSG frames completely written, every connection (each once) */
    uint64_t confirmed;   /* ... that a PONG has confirmed */
    uint64_t unconfirmed; /* ... written to a connection lost before its PONG */
} vg_confirm;

/* MSG frames written on every connection so far. */
static inline uint64_t vg_confirm_written(const vg_confirm *c) { return c->written; }

/* A PING was queued whose PONG will confirm mark MSG frames. false if
 * it could not be recorded (the FIFO is full, or PINGs sent earlier could
 * not be): it is then counted as unmarked, and its PONG confirms nothing. */
bool vg_confirm_ping(vg_confirm *c, uint64_t mark);

/* Whether a PING to confirm publishes may be queued now: the FIFO keeps
 * room for the heartbeat's probes, and no unmarked PING is in flight. */
bool vg_confirm_room_for_flush(const vg_confirm *c);

/* A PONG arrived: returns true if it confirmed more frames. An unsolicited
 * PONG changes nothing. */
bool vg_confirm_pong(vg_confirm *c);

/* The connection is lost: frames written and not confirmed become
 * unconfirmed (their count is returned), except the newest keep of them,
 * which stay pending (to be sent again); the PINGs in flight are
 * forgotten. keep is at most the unsettled frames. */
uint64_t vg_confirm_lost(vg_confirm *c, uint64_t keep);

/* The broker says it has every frame up to number in its log (INFO's
 * publisher_acked): returns how many more that confirms. A number beyond
 * what was written is held to it. */
uint64_t vg_confirm_acked(vg_confirm *c, uint64_t number);

/* Every frame up to this number is settled (confirmed or unconfirmed). */
static inline uint64_t vg_confirm_settled(const vg_confirm *c)
{
    return c->confirmed + c->unconfirmed;
}

#endif
