/* The catch-up case (vigil only): a backlog of N messages sits in a topic's
 * log, live traffic keeps arriving at a fixed rate, and a new subscriber
 * reads the topic from its first message. Reports how fast the backlog is
 * replayed while the live traffic goes on, and whether every message came
 * exactly once. */
#ifndef BENCH_CATCHUP_H
#define BENCH_CATCHUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *server;  /* HOST:PORT of a running vigil broker */
    const char *topic;   /* must have no log yet (seq 1 is the first message); NULL: a
                            fresh name per run */
    uint64_t count;      /* the backlog, published before the subscriber starts */
    size_t size;         /* payload bytes, at least 16 */
    uint64_t live_rate;  /* live messages per second, from before the SUB to the end */
    int tail_ms;         /* live traffic kept up after the subscriber caught up */
    int timeout_ms;      /* silence at the subscriber before giving up */
    int broker_pid;      /* 0: unknown; else the broker's RSS and CPU are reported */
} catchup_cfg;

/* Runs the case against cfg->server and prints one key=value line on
 * stdout (reasons for failure on stderr). Returns a process exit status:
 * 0 when every message 1..N and every live one arrived exactly once, 1
 * otherwise or on any failure. */
int bench_catchup(const catchup_cfg *cfg);

#endif
