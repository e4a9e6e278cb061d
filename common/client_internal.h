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
#include "client_servers.h"
#include "client_subs.h"
#include "link.h"
#include "outbox.h"

/* A private copy of the topics the application still wants, for the I/O
 * thread's per-message check, rebuilt when subs_gen moves. */
typedef struct {
    char **topics;
    size_t *lens;
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
    _Atomic uint64_t max_payload; /* the current broker's, capped by opts.max_payload */
    _Atomic uint64_t published;   /* counted under the outbox lock (publish's fill) */
    _Atomic uint64_t written;     /* MSG frames written, every connection (I/O thread stores) */
    _Atomic uint64_t received;    /* I/O thread stores */
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
};

/* client_io.c: the I/O thread. */
void *vg_client_io_main(void *arg);

/* client_io.c: the I/O thread's hook for a bulk frame completely written. */
void vg_client_on_written(void *ud, const uint8_t *frame, size_t len);

#endif
