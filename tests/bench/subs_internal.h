/* What subs.c (the workload, the cases, the report) and subs_phase.c (the
 * connections, the timed phases, churn) share. */
#ifndef BENCH_SUBS_INTERNAL_H
#define BENCH_SUBS_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "subs.h"

#define TOPICS 1000      /* published: bench.<a>.<b>, a in 0..99, b in 0..9 */
#define SUBJECT_MAX 48
#define SYNC_MS 300000   /* the longest a SUB/UNSUB batch may take to be answered */

/* One system under test. */
typedef struct {
    const char *name;
    const sb_backend *sb;
    const bench_backend *be; /* the publisher's */
    const char *server;
    int pid;   /* 0: unknown */
    bool nats; /* delivers once per subscription, not once per connection */
} system_ref;

/* The subscription table, worked out before any connection (subs.c). */
typedef struct {
    int nsubs, conns, width;
    char (*subjects)[SUBJECT_MAX];
    uint64_t expect_per_round_vigil; /* deliveries when every topic is published once */
    uint64_t expect_per_round_nats;
    uint32_t *hits_vigil, *hits_nats; /* [TOPICS]: connections / subscriptions matching */
} table;

/* Subject i of the table's shapes into buf (subs.c has the grammar); marks
 * in hit[TOPICS] the published topics it matches, if hit is not NULL.
 * churn: from outside the published range, matching nothing. */
void subs_subject(char *buf, int i, int width, bool literal_only, bool churn, uint64_t *rng,
                  uint8_t *hit);

/* Deliveries expected on the table's connections when count messages go
 * round robin over the topics; t NULL: count (a queue group: each once). */
uint64_t subs_expected(const table *t, bool nats, uint64_t count);

typedef struct {
    sb_conn **conns;
    int n;
} conn_set;

int64_t subs_now_ns(void);
long subs_rss_kb(int pid);       /* -1 if unknown */
double subs_cpu_seconds(int pid); /* user + system, -1 if unknown */

int conns_open(const system_ref *s, conn_set *cs, int n);
void conns_close(const system_ref *s, conn_set *cs);

/* Subscribes t on cs, one thread per connection, and waits until the
 * broker has answered every SUB; the wall time in *ms, the refusals in
 * *refused with the first one's reason. 0, or -1 on failure. */
int table_subscribe(const system_ref *s, conn_set *cs, const table *t, double *ms,
                    uint64_t *refused, const char **reason);

typedef struct {
    uint64_t sent, want, got; /* messages published; deliveries expected, seen */
    double pub_s;  /* from the first publish to the broker's confirmation of the last */
    double recv_s; /* from the first publish to the last delivery (sampled every ms) */
    double cpu_us_per_msg; /* the broker's, if its pid is known */
    int failed;
} phase_result;

/* One publisher on its own connection sends round robin over topics
 * (ntopics of them): count messages, or for secs if count is 0, waiting
 * for the broker's confirmation after growing windows (subs_phase.c) and
 * after the last;
 * then for every delivery on cs that t says is
 * due (t NULL: one per message), or for timeout_ms of silence. */
phase_result publish_phase(const system_ref *s, const conn_set *cs, char (*topics)[SUBJECT_MAX],
                           int ntopics, uint64_t count, double secs, size_t size, const table *t,
                           int timeout_ms);

/* Churn: a thread on a connection of its own queues SUBs of subjects that
 * match nothing published until CHURN_WINDOW are live, then an UNSUB of
 * the oldest and a SUB of a new one by turns, rate changes a second in
 * all, paced every millisecond, until stop; then waits for the broker to
 * have answered everything. */
typedef struct {
    const system_ref *sys;
    sb_conn *conn;
    int rate, width;
    bool literal_only;
    atomic_bool stop;
    uint64_t ops;   /* SUBs and UNSUBs queued */
    double secs;    /* from the first to stop */
    double sync_ms; /* from stop until the broker had answered them all */
    int rc;
} churner;

void *churn_main(void *arg);

#endif
