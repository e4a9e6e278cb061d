/* The connection core shared by the broker and the client library: one
 * socket, owned by the one thread that runs vg_link_run.
 *
 * The owner thread is the only thread that reads or writes the socket.
 * Others reach it through its outbox (outbox.h): they append whole frames
 * and, if it sleeps, wake it. The loop is:
 *
 *   flush (control frames first, then bulk from the outbox)
 *   -> the owner's own timers (on_tick)
 *   -> the peer check: acknowledgements, stuck output, heartbeat
 *   -> park and sleep in poll until input, a wake-up or the next deadline
 *   -> read (several reads per wake), calling on_frame for each frame
 *
 * Only what the peer did counts, never our own kernel taking bytes. A
 * peer from which no byte came for the keep-alive bound is dead
 * (VG_END_HEARTBEAT), or, if its kernel reports a full receive window while
 * our output waits, a slow consumer (VG_END_STUCK); output that the peer's
 * TCP has not acknowledged for the bound is stuck (VG_END_STUCK) even if the
 * peer keeps sending. Each side PINGs when the other is silent and also
 * when it has itself sent nothing for the keep-alive time, so a peer busy
 * reading a backlog from us is still heard. Before a verdict the owner
 * reads what is waiting: if this thread was the slow one, the answer may
 * be sitting unread. Acknowledgements come from TCP_INFO (Linux 4.2 or
 * later); on a socket that cannot report them the stuck rule is off. */
#ifndef VG_LINK_H
#define VG_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "frame.h"
#include "liveness.h"
#include "outbox.h"
#include "sender.h"
#include "status.h"

/* Why a connection ended. */
typedef enum {
    VG_END_NONE,
    VG_END_EOF,       /* the peer closed the connection */
    VG_END_IO,        /* a socket error */
    VG_END_HEARTBEAT, /* the peer was silent for the keep-alive bound */
    VG_END_STUCK,     /* the peer did not take our output for the bound */
    VG_END_UNREAD,    /* the peer does not read the replies it is owed */
    VG_END_NOMEM,     /* out of memory for this connection */
    VG_END_PROTOCOL,  /* the peer broke the protocol (code: the vg_errcode, if any) */
    VG_END_ERR_SENT,  /* we sent a fatal ERR (code) */
    VG_END_ERR_RECEIVED, /* the peer sent a fatal ERR (code) */
    VG_END_TIMEOUT,   /* no handshake in time */
    VG_END_STOP,      /* the owner is stopping */
} vg_end_kind;

typedef struct {
    vg_end_kind kind;
    uint64_t code; /* a vg_errcode for PROTOCOL, ERR_SENT and ERR_RECEIVED */
} vg_end;

/* The name logged as reason=...: "eof", "error", "heartbeat",
 * "slow_consumer" (STUCK and UNREAD), "internal", "timeout", "stop", and
 * for the ERR kinds the code's name ("auth", "shutdown", ...). */
const char *vg_end_name(vg_end e);

typedef struct vg_link vg_link;

typedef struct {
    size_t read_chunk;     /* the usual room offered to one read */
    int reads_per_wake;    /* reads before the loop looks at its timers again */
    size_t max_frame;      /* the largest frame body accepted until changed */
    size_t flush_budget;   /* bytes written per round before reading again */
    size_t ctl_limit;      /* control bytes owed to a peer that does not read */
    vg_keepalive keepalive;
    bool timerfd;          /* sleep on a CLOCK_BOOTTIME timerfd, so deadlines that
                              pass during a suspend fire on resume (poll's own
                              timeout stops during a suspend) */
    bool lend;             /* while asleep with nothing to write, lend the socket
                              to the outbox's producers (outbox.h) */
} vg_link_config;

/* What the owner does with the connection; every callback runs on the
 * owner thread, inside vg_link_run. */
typedef struct {
    /* Each frame from the peer, in order. */
    void (*on_frame)(void *ud, const vg_frame *f);
    /* After the frames of one read (may be NULL). */
    void (*on_read_end)(void *ud);
    /* The stream from the peer cannot be decoded (st: VG_ERR_TOO_LARGE,
     * VG_ERR_MALFORMED or VG_ERR_UNKNOWN_TYPE, why: static). The owner ends
     * the link, e.g. after queuing an ERR; if it does not, the link ends
     * with VG_END_PROTOCOL. May be NULL. */
    void (*on_bad_input)(void *ud, vg_status st, const char *why);
    /* The owner's own work and timers, on every round before sleeping:
     * returns its next deadline (INT64_MAX: none). May end the link. */
    int64_t (*on_tick)(void *ud, int64_t now);
    /* The link queued a PING: probe is its number since the peer was last
     * heard (0: not a probe, we had sent nothing for the keep-alive time),
     * silent_ms how long ago the peer was heard. Its PONG will come back
     * in order with the others. May be NULL. */
    void (*on_probe)(void *ud, int probe, int64_t silent_ms);
} vg_link_ops;

/* A link writing bulk frames from ob (borrowed: it must outlive the link).
 * Returns NULL when out of memory. */
vg_link *vg_link_create(const vg_link_config *cfg, vg_outbox *ob);

/* Frees the link; closes its socket if one is attached. */
void vg_link_destroy(vg_link *l);

/* Takes a connected, non-blocking socket (ownership of fd passes to the
 * link) and starts a new connection at now: empty decoder, heartbeat clock
 * started, heartbeat off until vg_link_set_heartbeat, bulk held until
 * vg_link_hold_bulk(l, false). Bulk frames left from a previous connection
 * stay queued, rewound to a frame boundary. */
void vg_link_attach(vg_link *l, int fd, int64_t now);

/* Ends the connection's life: closes the socket, drops unsent control
 * frames and rewinds a half-written bulk frame so it is sent again whole on
 * the next connection. */
void vg_link_detach(vg_link *l);

/* Runs the connection until it ends; returns why. Control frames queued by
 * the owner before the end (a final ERR) are written best-effort first. */
vg_end vg_link_run(vg_link *l, const vg_link_ops *ops, void *ud);

/* Ends the link (the first call wins); detail (may be NULL) is copied for
 * the log. Safe from the callbacks. */
void vg_link_end(vg_link *l, vg_end_kind kind, uint64_t code, const char *detail);

/* Whether vg_link_end was called on this connection. */
bool vg_link_ended(const vg_link *l);

/* The detail given with the end, quoted for a log line ("" if none). */
const char *vg_link_end_detail(const vg_link *l);

/* The control stream: the owner appends whole frames (PONG, OK, ERR, SUB...)
 * that go out ahead of queued bulk at the next frame boundary. Ends the
 * link with VG_END_NOMEM and returns false if frame could not be queued. */
vg_buf *vg_link_ctl(vg_link *l);
bool vg_link_ctl_ok(vg_link *l, vg_status put_status);

/* While held, only control frames are written (a handshake in progress). */
void vg_link_hold_bulk(vg_link *l, bool hold);

/* Turns the heartbeat and the stuck-output rule on or off (off until the
 * handshake completes); turning it on starts the clock at now. */
void vg_link_set_heartbeat(vg_link *l, bool on, int64_t now);

/* Changes the largest frame body accepted from the peer. */
void vg_link_set_max_frame(vg_link *l, size_t max_frame);

/* When the peer was last heard (a byte read), on vg_now_ms's clock. Owner
 * thread. */
int64_t vg_link_last_heard(const vg_link *l);

/* The socket, or -1 when detached. */
int vg_link_fd(const vg_link *l);

/* The writing half, for counters and the frame-written hook (sender.h). */
vg_sender *vg_link_sender(vg_link *l);

/* Reads and discards input for up to ms (bounded to a few MiB) after
 * shutting down our sending side: after a fatal ERR, closing with unread
 * input would make the kernel send a reset that can destroy the ERR before
 * the peer reads it. */
void vg_link_linger(vg_link *l, int ms);

#endif
