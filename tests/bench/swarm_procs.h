/* The swarm's client processes: the swarm's N library clients spread over K
 * child processes, so that N is not bounded by one process's open-file
 * limit.
 *
 * Why: a library client holds 3 descriptors (its socket, its outbox's
 * eventfd, its heartbeat timerfd), so under a 20,000-descriptor limit that
 * root cannot raise (no CAP_SYS_RESOURCE) one process fits about 6,600
 * clients, while the broker, at 2 per connection, serves about 9,970. Child
 * k runs clients [first, first + count) exactly as a single process would:
 * started one after another, subscribed, then left alone to reconnect.
 *
 * Processes: the children are forked (no exec) before the parent creates
 * any thread, so each starts as a copy of a single-threaded program. The
 * parent keeps the broker and the publisher. Each child sets
 * PR_SET_PDEATHSIG(SIGKILL), which fires when the forking thread exits:
 * the parent's main thread, which lives to the end.
 *
 * Sharing: one anonymous MAP_SHARED mapping made before the fork holds a
 * command word that the parent advances (connect, stop) and the children
 * poll every 10 ms; per child its progress and counts; per client its state
 * and the time of its first message of epoch 1, written once by that
 * client's I/O thread. Times are CLOCK_MONOTONIC, one clock for the whole
 * system, so a child's times compare with the parent's t_listen as they
 * are. Lock-free atomics work across processes in a shared mapping (checked
 * at compile time). The client library's log needs nothing: the children
 * inherit stderr, the O_APPEND log file logcap opened, and the library
 * writes each line with one write(), so all processes' lines land whole in
 * the one file that the parent reads as before.
 *
 * Every wait is bounded. A child that hears no command in time exits by
 * itself. The parent reaps with waitpid(WNOHANG) in each of its waits and
 * reports a child that died, with its clients; after stop it waits a
 * bounded time, then kill -9s the stragglers. */
#ifndef RC_SWARM_PROCS_H
#define RC_SWARM_PROCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "reconnect.h"

#define SW_FDS_PER_CLIENT 3 /* socket, outbox eventfd, heartbeat timerfd */
/* A child's own descriptors besides its clients': stdio, the log, the
 * progress descriptor, and a resolver eventfd per lookup in flight should
 * the server be a name (127.0.0.1 needs none). */
#define SW_FD_RESERVE 512
#define SW_MAX_PER_PROC 5000 /* the automatic choice's cap: room to spare */

typedef struct sw_fleet sw_fleet;

/* Clients that fit one process's descriptors under an open-file limit of
 * nofile (not capped by SW_MAX_PER_PROC); at least 1. */
long sw_fit_per_proc(long nofile);

/* Processes for n clients: enough that each holds at most
 * min(SW_MAX_PER_PROC, sw_fit_per_proc(nofile)); at most n. */
int sw_procs_for(int n, long nofile);

/* Forks procs children (1 to cfg->swarm) sharing cfg->swarm clients out
 * as evenly as possible; they wait for sw_fleet_connect. Call before this
 * process creates any thread, with stdout flushed. cfg must stay valid.
 * NULL (with a progress line, any children killed) on failure. */
sw_fleet *sw_fleet_start(const rc_config *cfg, int procs);

int sw_fleet_procs(const sw_fleet *f);

/* Child k's pid, or 0 once it has been reaped. */
pid_t sw_fleet_pid(const sw_fleet *f, int k);

/* Tells every child to start and subscribe its clients now. */
void sw_fleet_connect(sw_fleet *f);

typedef struct {
    int started, subscribed, refused, timedout, closed; /* clients, over all children */
    int64_t start_ns;   /* the last child done starting its clients, after the connect */
    int64_t connect_ns; /* ... done waiting for their subscriptions */
    int unfinished;     /* children still at it by the deadline (not dead) */
} sw_connect_result;

/* Waits until every child has started its clients and waited (up to
 * cfg->connect_bound_ms after sw_fleet_connect) for their subscriptions, or
 * has died, or deadline_ns passes. Sets ok[i] (room for cfg->swarm) for
 * each client subscribed by then: the measured set, fixed from now on.
 * Prints progress every 2 s. */
void sw_fleet_wait_subscribed(sw_fleet *f, int64_t deadline_ns, bool *ok,
                              sw_connect_result *out);

/* When client i received its first message of epoch 1 (CLOCK_MONOTONIC
 * ns), or 0 if it has not. */
int64_t sw_fleet_first(const sw_fleet *f, int i);

/* Reaps the children that exited, reporting each one that died, and counts
 * the clients in ok: *delivered have a first message, *waiting have none
 * and belong to a running child (the rest are lost with a dead child). */
void sw_fleet_scan(sw_fleet *f, const bool *ok, size_t *delivered, size_t *waiting);

/* on_closed and on_sub_error callbacks so far, over all children. */
void sw_fleet_callbacks(const sw_fleet *f, unsigned *closed, unsigned *sub_errors);

/* Children that died or exited with an error so far. */
int sw_fleet_died(const sw_fleet *f);

/* Tells every child to destroy its clients and exit, and waits up to
 * timeout_ms for them all, then kill -9s and reaps the rest. Prints how long
 * destroying took. Returns the number of children that did not finish
 * cleanly (died at any point, or killed here). */
int sw_fleet_stop(sw_fleet *f, int timeout_ms);

/* Kills any child still running, reaps it, and frees everything. */
void sw_fleet_free(sw_fleet *f);

#endif
