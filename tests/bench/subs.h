/* Subscriptions at scale (issue 12): a large subscription table of literal
 * topics and wildcard patterns, churn of that table while messages flow,
 * and queue groups; each case runs against vigil and nats-server in one
 * invocation and prints both side by side (subs.c).
 *
 * A subscriber connection here holds many subscriptions, so it has its own
 * small interface (sb_backend) beside backend.h's one-topic one: vigil's is
 * raw frames (subs_vigil.c: independent of how far the client library has
 * got with patterns and queue groups), nats-server's is libnats
 * (subs_nats.c). The
 * publisher is backend.h's (vigil's client library confirms with PING/PONG,
 * libnats with a flush). */
#ifndef BENCH_SUBS_H
#define BENCH_SUBS_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

typedef struct sb_conn sb_conn;

typedef struct {
    const char *name;
    /* Connects and completes the handshake; NULL (after saying why on
     * stderr) on failure. */
    sb_conn *(*connect)(const char *server);
    /* Queues a subscription to subject (a topic or a pattern), in queue
     * group queue if not NULL; does not wait for the broker. Returns its
     * id (> 0), or 0 on failure. */
    uint64_t (*sub)(sb_conn *c, const char *subject, const char *queue);
    /* Queues the end of subscription id. 0, or -1 on failure. */
    int (*unsub)(sb_conn *c, uint64_t id);
    /* Waits until the broker has processed every SUB and UNSUB queued so
     * far. 0; -1 on timeout or a lost connection (after saying why). */
    int (*sync)(sb_conn *c, int timeout_ms);
    /* Messages received so far (any thread). */
    uint64_t (*received)(sb_conn *c);
    /* SUBs the broker refused, and the reason of the first (static or owned
     * by c; NULL if none). nats-server refuses nothing here. */
    uint64_t (*refused)(sb_conn *c, const char **first_reason);
    /* Of the messages received, those delivered as a queue group member's
     * (vigil: the 5-element MSG naming the sid); NULL: all of them. */
    uint64_t (*queue_msgs)(sb_conn *c);
    /* Messages the broker said are gone (vigil: the ranges of its GAP
     * frames); NULL: it never says. */
    uint64_t (*gap_missed)(sb_conn *c);
    /* Whether the connection is lost (the broker closed it). */
    bool (*lost)(sb_conn *c);
    void (*close)(sb_conn *c);
} sb_backend;

extern const sb_backend sb_vigil;
#ifdef HAVE_NATS
extern const sb_backend sb_nats;
#endif

typedef enum { SUBS_TABLE, SUBS_CHURN, SUBS_QUEUE } subs_mode;

typedef struct {
    subs_mode mode;
    const char *vigil_server; /* NULL: vigil is not run */
    const char *nats_server;  /* NULL: nats-server is not run */
    int vigil_pid, nats_pid;  /* 0: unknown; else their RSS is reported */
    int subs;                 /* subscriptions in the table (SUBS_TABLE, SUBS_CHURN) */
    int conns;                /* subscriber connections holding them */
    int churn_rate;           /* SUBS_CHURN: changes (a SUB or an UNSUB) per second */
    int members;              /* SUBS_QUEUE: queue group members */
    bool literal_only;        /* every subscription a literal topic (no patterns) */
    uint64_t count;           /* messages per publishing phase; 0: for secs */
    double secs;
    size_t size;
    int timeout_ms;           /* silence before giving up on deliveries */
} subs_cfg;

/* Runs the case against each system configured and prints, per system, one
 * key=value line starting "system=", then a side-by-side table. Returns 0
 * when every system ran cleanly, 1 otherwise. */
int bench_subs(const subs_cfg *cfg);

#endif
