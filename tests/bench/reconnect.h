/* vigil-reconnect: how long after a broker restart its clients deliver again.
 * main and the options live in reconnect.c, the crash loop in
 * reconnect_crash.c, the swarm in reconnect_swarm.c and its client
 * processes in swarm_procs.c. The clients are the client library's own
 * (client.h), with its default options unless --backoff-base/--backoff-max
 * say otherwise, so the figures are what users get. Every time is
 * CLOCK_MONOTONIC. */
#ifndef RC_RECONNECT_H
#define RC_RECONNECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker_proc.h"
#include "client.h"

typedef struct {
    const char *topic;
    char server[32]; /* 127.0.0.1:PORT */
    int port;
    int64_t bound_ms;    /* a client not delivering this long after the restart is late */
    int64_t interval_ms; /* between two publishes */
    int64_t backoff_base_ms, backoff_max_ms; /* < 0: the library's defaults */
    /* crash loop */
    int restarts, subs;
    int64_t down_min_ms, down_max_ms, uptime_ms;
    uint64_t seed;
    /* swarm */
    int swarm;
    int procs; /* client processes; 0: chosen from the open-file limit */
    int64_t down_ms, connect_bound_ms;
} rc_config;

/* Every message carries its sequence number, its publish time and its epoch:
 * the round whose restarted broker the tool already knew to be listening when
 * the message was published (0 before the first restart). "Published after
 * the restart of round r" is then exactly "epoch == r". */
#define RC_PAYLOAD_LEN 24
typedef struct {
    uint64_t seq;
    int64_t pub_ns;
    uint32_t epoch;
} rc_stamp;

void rc_stamp_write(uint8_t *p, const rc_stamp *s);

/* False if m is not one of ours (too short). */
bool rc_stamp_read(const vg_msg *m, rc_stamp *out);

int64_t rc_now_ns(void);

/* Sleeps until CLOCK_MONOTONIC reaches t_ns. */
void rc_sleep_until(int64_t t_ns);

/* vg_client_opts_defaults aimed at the broker under test, named name, with
 * the --backoff-* overrides; callbacks are the caller's to set. */
void rc_client_opts(const rc_config *cfg, vg_client_opts *o, const char *name, void *ud);

/* Sorts n values in place, ascending. */
void rc_sort(int64_t *v, size_t n);

/* RC_LATE marks a client that did not deliver within the bound. */
#define RC_LATE INT64_MAX

/* Nearest-rank quantiles of n delays in ns (RC_LATE sorts last and makes
 * any quantile that reaches it infinite), in ms. Sorts v. */
typedef struct {
    size_t n, late;
    double median, p90, p99, max; /* ms; INFINITY past the delivered ones */
} rc_quantiles;

void rc_quantiles_of(int64_t *v, size_t n, rc_quantiles *out);

/* Appends " NAME_n=.. NAME_median_ms=.. NAME_p90_ms=.. NAME_p99_ms=..
 * NAME_max_ms=.. NAME_late=.." to stdout. */
void rc_print_quantiles(const char *name, const rc_quantiles *q);

/* The two modes. Results go to stdout, progress through logcap. Return the
 * exit status: 0 if every client delivered in time without errors, 1 if not. */
int rc_crash_loop(const rc_config *cfg, bp_broker *b);
int rc_swarm(const rc_config *cfg, bp_broker *b);

#endif
