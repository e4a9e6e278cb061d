/* The durable cases (docs/performance.md): confirmed publishing and the
 * replay of a retained backlog, for vigil (its client library against a
 * broker with a durable log) and nats-server JetStream (a file-storage
 * stream of one replica, through libnats); and, vigil only, the restart of
 * a broker holding a large retained log.
 *
 * A durable_backend hides what differs between the systems; durable.c
 * drives both the same way: the same payloads, the same clocks. */
#ifndef BENCH_DURABLE_H
#define BENCH_DURABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct durable_pub durable_pub;

/* Called for each message replayed, on a thread the backend owns (one
 * thread at a time). */
typedef void (*durable_on_msg)(void *ud, const uint8_t *payload, size_t len);

/* Tuning of the JetStream backend; ignored by vigil's. */
typedef struct {
    int max_pending; /* jsOptions.PublishAsync.MaxPending: publishes awaiting their ack */
    int fetch_batch; /* messages asked per natsSubscription_Fetch in a replay */
} durable_tuning;

typedef struct {
    const char *name; /* "vigil", "jetstream" */
    /* Prepares topic for a run: JetStream (re)creates its stream, empty;
     * vigil needs nothing (a fresh topic has no log). */
    int (*setup)(const char *server, const char *topic, const durable_tuning *t);
    /* Removes what setup made (JetStream deletes the stream). */
    void (*teardown)(const char *server, const char *topic);
    /* One publisher on its own connection. */
    durable_pub *(*pub_open)(const char *server, const char *topic, const durable_tuning *t);
    /* Queues one message; may block for room, never drops. */
    int (*publish)(durable_pub *p, const void *payload, size_t len);
    /* Waits until the broker has confirmed every message published so far
     * (or timeout_ms passed, or it failed); *confirmed: how many it has. */
    int (*confirm)(durable_pub *p, int timeout_ms, uint64_t *confirmed);
    void (*pub_close)(durable_pub *p);
    /* Reads topic from its first retained message until n messages came,
     * or until timeout_ms without one; *sub_ns: when the subscription (or
     * consumer) was asked for, CLOCK_MONOTONIC. */
    int (*replay)(const char *server, const char *topic, uint64_t n, const durable_tuning *t,
                  int timeout_ms, durable_on_msg on_msg, void *ud, int64_t *sub_ns);
} durable_backend;

extern const durable_backend durable_vigil;
#ifdef HAVE_NATS
extern const durable_backend durable_jetstream;
#endif

typedef struct {
    const durable_backend *be;
    const char *server;
    const char *topic; /* NULL: a fresh name per run */
    int pubs;
    size_t size;       /* payload bytes, at least 16 */
    uint64_t count;    /* messages in all (confirmed), or the backlog (replay) */
    int timeout_ms;    /* silence before giving up */
    int broker_pid;    /* 0: unknown; else its CPU and RSS are reported */
    durable_tuning tuning;
} durable_cfg;

/* P publishers, each on its own connection, publish count messages in all
 * as fast as they go; the rate is count over the time until the last of
 * them is confirmed. One key=value line on stdout; returns an exit status
 * (0: every message confirmed). */
int bench_confirmed(const durable_cfg *cfg);

/* count messages published by one publisher and confirmed, then one
 * reader from the first retained message times reading them all. One
 * line on stdout; 0 when all came, in order, once each. */
int bench_replay(const durable_cfg *cfg);

typedef struct {
    const char *broker;    /* the broker program */
    const char *data_dir;  /* passed as --data-dir; must be empty or absent */
    const char *const *broker_args; /* more arguments, NULL-terminated */
    const char *broker_log; /* a copy of the broker's stderr, or NULL */
    uint64_t fill_bytes;   /* payload bytes to retain before the kill */
    size_t size;           /* payload bytes per message */
    int timeout_ms;
} restart_cfg;

/* Starts the broker on data_dir, fills it with fill_bytes of size-byte
 * messages (confirmed), kill -9s it, starts it again and reports the time
 * from its exec to its event=listening line and its RSS after the start,
 * then checks that the last message filled is still there. One line on
 * stdout; 0 on success. */
int bench_restart(const restart_cfg *cfg);

#endif
