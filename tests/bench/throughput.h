/* vigil-bench's throughput, in-flight and idle-connection cases
 * (throughput.c): P publishers and S subscribers on one topic through a
 * running broker, messages stamped with their send time, publisher and
 * sequence number; one line of key=value results on stdout. */
#ifndef BENCH_THROUGHPUT_H
#define BENCH_THROUGHPUT_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define MAX_CLIENTS 256 /* publishers, and subscribers, at most */

typedef struct {
    const bench_backend *be;
    const char *server;
    const char *topic;
    int pubs, subs;
    int broker_pid; /* 0: unknown; else the broker's CPU per message is reported */
    size_t size;
    uint64_t count; /* messages published in all (throughput), or round trips (in flight) */
    int timeout_ms;
} bench_config;

/* Publishes cfg->count messages from cfg->pubs publishers to cfg->subs
 * subscribers; rates, loss and latency. 0 if nothing was lost. */
int bench_run_throughput(const bench_config *cfg);

/* One message in flight at a time, cfg->count round trips: latency. */
int bench_run_inflight(const bench_config *cfg);

/* conns idle connections for secs: the broker's RSS and CPU for them. */
int bench_run_idle(const bench_config *cfg, int conns, int secs, int broker_pid);

#endif
