/* What client.c (the application-facing calls) and client_io.c (the I/O
 * thread) share. Not for other modules: they use client.h.
 *
 * Locks: c->mu guards the fields marked "mu" and the subscription state;
 * an application thread holding it may append to the outbox (lock order:
 * c->mu, then the outbox's lock), so nothing holding the outbox's lock ever
 * takes c->mu (the publish fill callback only counts, atomically). No lock
 * is held across a socket call or a callback. */
#ifndef VG_CLIENT_INTERNAL_H
#define VG_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backoff.h"
#include "client.h"
#include "client_confirm.h"
#include "client_resend.h"
#include "client_resume.h"
#include "client_servers.h"
#include "client_subs.h"
#include "client_topics.h"
#include "link.h"
#include "outbox.h"

/* One subscription whose messages go to the application, as the I/O
 * thread copies it (client_filter.c). */
typedef struct {
    uint64_t sid;
    char *subject;
    size_t len;
    vg_sub_from from;
    bool pattern, durable, queue;
    bool kept;          /* scratch, during a rebuild */
    bool fresh;         /* scratch: added by this rebuild, its topics not joined yet */
    uint64_t ok_epoch;  /* pattern: the epoch of its last OK (0: none yet), kept
                           across connections for its renewal (client_renew.c) */
} vg_client_sid;

/* The I/O thread's copy of the subscriptions, for its per-message work
 * without a lock, rebuilt when subs_gen moves: the delivering sids (sorted
 * by sid) and the table of topics with their positions and sids. A
 * rebuild keeps the positions of the topics still subscribed. */
typedef struct {
    vg_client_sid *sids;
    size_t nsids, capsids;
    vg_client_topics topics;
    uint64_t gen;
    bool valid; /* false when out of memory: messages are handed over untracked */
} vg_client_filter;

struct vg_client {
    vg_client_opts opts;
    char *name;
    vg_servers *servers;
    pthread_t thread;
    atomic_bool stop;
    atomic_bool delivery_stopped; /* vg_client_stop_delivery: on_msg gets nothing more */
    _Atomic uint64_t max_payload; /* the current broker's, capped by opts.max_payload */
    _Atomic uint64_t published;   /* counted under the outbox lock (publish's fill) */
    _Atomic uint64_t written;     /* MSG frames written, every connection (I/O thread stores) */
    _Atomic uint64_t received;    /* I/O thread stores, as the three below */
    _Atomic uint64_t duplicates;
    _Atomic uint64_t gaps;
    _Atomic uint64_t missed;
    _Atomic uint64_t flush_target; /* a flush waits for the frames up to here */
    _Atomic uint64_t subs_gen;    /* bumped under mu whenever deliverability may change */
    vg_outbox *outbox;

    pthread_mutex_t mu;
    pthread_cond_t cv;        /* broadcast when anything below changes */
    vg_subs *subs;            /* mu */
    uint64_t confirmed;       /* mu: copies of the I/O thread's tally */
    uint64_t unconfirmed;     /* mu */
    uint64_t handshakes;      /* mu */
    bool closed;              /* mu: gave up for good, or closing */
    bool stopped;             /* mu: the I/O thread has returned */
    bool joined;
    char closed_reason[64];   /* mu, set once with closed */

    /* I/O thread only */
    vg_link *link;
    vg_backoff *backoff;
    uint64_t rng; /* xorshift state for backoff jitter */
    vg_confirm tally;
    vg_resend resend;     /* copies of the written, unconfirmed MSG frames */
    uint64_t conn_pos;    /* the number of the last MSG frame written on this connection */
    vg_client_filter filter;
    size_t next_server;
    char server_str[VG_ADDR_STRLEN + 8];
    bool ever_connected;  /* a handshake completed at least once */
    bool handshaken;      /* ... on the current connection */
    bool reconnecting;    /* a connection was lost since the last handshake */
    unsigned attempt;     /* attempts since the last handshake; the current one included */
    unsigned lost_attempts; /* attempts the last reconnect took */
    unsigned resubscribed;
    int64_t deadline;     /* the current connection attempt's */
    uint64_t received_local;
    uint64_t duplicates_local, gaps_local, missed_local;
    uint64_t publisher;   /* CONNECT's publisher identity, random, nonzero */
    uint64_t conn_epoch;  /* INFO's epoch on the current connection; 0 before INFO */
    unsigned ack_pending; /* durable messages processed since the last ACKs were queued */
    int64_t ack_due;      /* when the pending ACKs go (INT64_MAX: none pending) */
};

/* client_io.c: the I/O thread. */
void *vg_client_io_main(void *arg);

/* client_io.c: the I/O thread's hook for a bulk frame completely written. */
void vg_client_on_written(void *ud, const uint8_t *frame, size_t len);

/* client_filter.c, on the I/O thread: the copy of the subscriptions. */

/* Rebuilds the copy if the subscriptions changed since (takes c->mu: not
 * under it). */
void vg_client_sync_filter(vg_client *c);

/* sid in the copy, or NULL. */
vg_client_sid *vg_client_filter_sid(const vg_client_filter *f, uint64_t sid);

/* The topic entry for a message, GAP or POS on topic after a sync: found,
 * or created if some pattern subscription matches it (its sids joined);
 * NULL if no subscription wants it, or if the copy is out of memory, in
 * which case *untracked is set (everything is handed over then, with sid
 * 0 and no position). The entry is valid until the next sync. */
vg_client_topic *vg_client_topic_for(vg_client *c, const char *topic, size_t len,
                                     bool *untracked);

/* Frees the I/O thread's copy (at destroy). */
void vg_client_filter_free(vg_client_filter *f);

/* client_deliver.c, on the I/O thread: what the broker says about the
 * subscriptions' logs. A delivered MSG (each form the broker sends on a
 * version-2 connection; any other ends the connection), handed to on_msg
 * once per sid it is for unless it is unsubscribed or a duplicate. */
void vg_client_deliver(vg_client *c, const vg_frame *f);

/* A GAP frame: reported to on_gap if it is news. */
void vg_client_gap_frame(vg_client *c, const vg_frame *f);

/* A POS frame: a pattern subscription reads a topic from a place, which
 * places the topic's position unless something did on this connection. */
void vg_client_pos_frame(vg_client *c, const vg_frame *f);

/* The handshake set c->conn_epoch: every position learns it (an epoch
 * change is reported as a gap) and none is placed on this connection yet.
 * Not under c->mu. */
void vg_client_positions_connected(vg_client *c);

/* The broker's OK v2 for a SUB of sid on subject: for a topic, the first on
 * this connection for the topic places its position (a skip is reported as
 * a gap) and later ones share that cursor and change nothing; for a
 * pattern, it records the epoch the pattern's positions are in (its
 * renewal resumes them). Not under c->mu. */
void vg_client_position_started(vg_client *c, uint64_t sid, const char *subject, size_t len,
                                uint64_t epoch, uint64_t next);

/* client_renew.c: appends to out what renews sid on subject after a
 * reconnect: for a topic, the SUB asking for the topic's position
 * (vg_resume_sub), seven elements if durable; for a pattern, a POS per
 * topic it has a position for and the SUB that resumes them (or starts
 * from the first message after an epoch change); for a queue member, the
 * eight-element SUB as first sent. Under c->mu: it only reads the copy
 * vg_client_positions_connected refreshed. */
vg_status vg_client_put_renewal(vg_client *c, vg_buf *out, uint64_t sid, const char *subject,
                                size_t len);

/* Queues one ACK per durable or queue subscription (and topic, for a
 * pattern or a queue) whose processed seq is beyond what it acknowledged
 * on this connection, and clears the pending count and deadline. Not under
 * c->mu (it takes it). False if the link ran out of memory for them (it
 * has ended then). */
bool vg_client_flush_acks(vg_client *c);

/* Arms the ACK deadline at now + ack_delay_ms unless one is armed. */
void vg_client_ack_soon(vg_client *c, int64_t now);

/* The connection is gone: no position knows the next one's epoch yet, no
 * ACK went on the next one, and queue members were given nothing there. */
void vg_client_positions_lost(vg_client *c);

/* client.c: one event line to the application's on_log, if it set one and
 * level is within its log_level; nothing otherwise (the library never
 * writes to stderr by itself). */
void vg_client_log(vg_client *c, vg_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
