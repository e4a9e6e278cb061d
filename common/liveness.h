/* The heartbeat state machine: decides when to probe a silent peer and when
 * to declare it dead. Pure: time is an argument, it does no I/O.
 *
 * With keep-alive time T, interval I and probes P, after the last sign of
 * life at t0 the machine asks for probe k (k = 1..P) at t0 + T + (k-1)·I and
 * declares the peer dead at t0 + T + P·I, unless a sign of life comes first.
 * A tick that comes more than half an interval late (a stalled thread, a
 * laptop resuming from suspend) restarts the interval from its own time, so
 * the peer always has at least half an interval to answer each probe, and a
 * long sleep never turns into several probes and a verdict in one instant. */
#ifndef VG_LIVENESS_H
#define VG_LIVENESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int64_t time_ms;     /* silence before the first probe; 0 turns heartbeats off */
    int64_t interval_ms; /* between unanswered probes */
    int probes;          /* unanswered probes before the peer is dead */
} vg_keepalive;

/* The defaults of broker, pub and sub: 15 s, 5 s, 3 probes (dead after 30 s).
 * 15 s keeps 10,000 idle connections under 2% of a core (docs/performance.md). */
#define VG_KEEPALIVE_DEFAULT ((vg_keepalive){15000, 5000, 3})

/* The worst-case time from the last sign of life to "dead": T + P·I; 0 if off. */
int64_t vg_keepalive_bound_ms(const vg_keepalive *k);

typedef enum {
    VG_LIVE_WAIT,  /* nothing to do before the next deadline */
    VG_LIVE_PROBE, /* send a PING now */
    VG_LIVE_DEAD,  /* the peer has been silent too long */
} vg_live_action;

typedef struct vg_liveness vg_liveness;

/* Starts the clock at now. Returns NULL when out of memory. */
vg_liveness *vg_liveness_create(const vg_keepalive *k, int64_t now_ms);
void vg_liveness_destroy(vg_liveness *l);

/* A sign of life from the peer at now_ms: bytes received, or the peer's
 * acknowledgement of our data (progress.h). A time earlier than the last
 * sign of life is ignored: an acknowledgement observed late may carry the
 * time it arrived. */
void vg_liveness_heard(vg_liveness *l, int64_t now_ms);

/* A new connection at now_ms: the clock starts again, whatever was heard before. */
void vg_liveness_reset(vg_liveness *l, int64_t now_ms);

/* When vg_liveness_tick will next act (INT64_MAX when heartbeats are off). */
int64_t vg_liveness_next(const vg_liveness *l);

/* What to do at now. *next_ms receives the time of the next decision
 * (INT64_MAX when heartbeats are off). Call it again after acting on PROBE. */
vg_live_action vg_liveness_tick(vg_liveness *l, int64_t now_ms, int64_t *next_ms);

/* Probes sent since the last sign of life; the time of that sign. */
int vg_liveness_unanswered(const vg_liveness *l);
int64_t vg_liveness_last_heard(const vg_liveness *l);

#endif
