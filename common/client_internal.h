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
#include "link.h"
#include "outbox.h"

/* One topic the application still wants, and the subscription's place in
 * its log (one per topic: the broker delivers each message of a topic to a
 * connection once, however many sids it has on it). */
typedef struct {
    char *topic;
    size_t len;
    vg_resume pos;
    bool connected; /* pos has been told this connection's epoch */
    bool started;   /* an OK on this connection has placed pos */
    bool kept;      /* scratch, during a rebuild */
    bool durable;   /* a durable subscription reads it: its progress is acknowledged */
    uint64_t processed;       /* the last seq whose on_msg call returned */
    uint64_t processed_epoch; /* ... in this epoch (0: none yet) */
} vg_client_topic;

/* The I/O thread's copy of the wanted topics, for its per-message check,
 * rebuilt when subs_gen moves; a rebuild keeps the positions of the topics
 * still wanted. */
typedef struct {
    vg_client_topic *v;
    size_t n, cap;
    size_t last; /* the topic matched last: most messages repeat it */
    uint64_t gen;
    bool valid;
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

/* client_deliver.c, on the I/O thread: what the broker says about the
 * subscriptions' logs. A delivered MSG, handed to on_msg unless it is
 * unsubscribed or a duplicate. */
void vg_client_deliver(vg_client *c, const vg_frame *f);

/* A GAP frame: reported to on_gap if it is news. */
void vg_client_gap_frame(vg_client *c, const vg_frame *f);

/* The handshake set c->conn_epoch: every position learns it (an epoch
 * change is reported as a gap) and none is placed on this connection yet.
 * Not under c->mu. */
void vg_client_positions_connected(vg_client *c);

/* The broker's OK v2 for a SUB on topic: the first on this connection for
 * the topic places its position (a skip is reported as a gap); later ones
 * share that cursor and change nothing. Not under c->mu. */
void vg_client_position_started(vg_client *c, const char *topic, size_t len, uint64_t epoch,
                                uint64_t next);

/* Appends the renewal SUB for sid on topic to out, asking for the topic's
 * position (vg_resume_sub). Under c->mu: it only reads the copy
 * vg_client_positions_connected refreshed. */
vg_status vg_client_put_renewal(vg_client *c, vg_buf *out, uint64_t sid, const char *topic,
                                size_t len);

/* Appends the renewal SUB of durable sid (name, nlen) on topic: the
 * seven-element SUB, asking for the topic's position as put_renewal does.
 * Under c->mu. */
vg_status vg_client_put_durable_renewal(vg_client *c, vg_buf *out, uint64_t sid,
                                        const char *topic, size_t len, const char *name,
                                        size_t nlen);

/* Queues one ACK per durable subscription whose topic's processed seq is
 * beyond what it acknowledged on this connection, and clears the pending
 * count and deadline. Not under c->mu (it takes it). False if the link ran
 * out of memory for them (it has ended then). */
bool vg_client_flush_acks(vg_client *c);

/* Arms the ACK deadline at now + ack_delay_ms unless one is armed. */
void vg_client_ack_soon(vg_client *c, int64_t now);

/* The connection is gone: no position knows the next one's epoch yet. */
void vg_client_positions_lost(vg_client *c);

/* Frees the I/O thread's topic copy (at destroy). */
void vg_client_filter_free(vg_client_filter *f);

#endif
