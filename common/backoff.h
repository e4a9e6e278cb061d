/* Reconnect delays: exponential backoff with full jitter. Pure: the random
 * number is an argument.
 *
 * Attempt n (from 0) waits a delay drawn uniformly from
 * [0, min(cap, base·2^n)]. Full jitter, rather than a fixed delay plus a
 * little noise, spreads a thousand clients that lost the same broker over the
 * whole window instead of sending them back in synchronised waves. */
#ifndef VG_BACKOFF_H
#define VG_BACKOFF_H

#include <stdint.h>

typedef struct vg_backoff vg_backoff;

/* Returns NULL when out of memory. */
vg_backoff *vg_backoff_create(int64_t base_ms, int64_t cap_ms);
void vg_backoff_destroy(vg_backoff *b);

/* The delay before the next attempt, given a uniform 32-bit random number;
 * counts the attempt. */
int64_t vg_backoff_next(vg_backoff *b, uint32_t random);

/* Attempts counted since the last reset. */
unsigned vg_backoff_attempts(const vg_backoff *b);

/* Back to attempt 0: call once a connection has completed its handshake. */
void vg_backoff_reset(vg_backoff *b);

#endif
