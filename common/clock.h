/* The one clock every vigil timer uses. */
#ifndef VG_CLOCK_H
#define VG_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_BOOTTIME: monotonic (never jumps with wall-clock
 * changes) and, unlike CLOCK_MONOTONIC, it keeps counting while a laptop is
 * suspended, so a heartbeat deadline that passed during sleep fires on resume. */
int64_t vg_now_ms(void);

/* The same clock in nanoseconds, for latency measurements. */
int64_t vg_now_ns(void);

/* The poll(2) timeout that sleeps until deadline (INT64_MAX: for ever). */
int vg_poll_timeout(int64_t deadline_ms, int64_t now_ms);

/* Adds ms milliseconds to *t, normalising tv_nsec. */
void vg_timespec_add_ms(struct timespec *t, int64_t ms);

/* CLOCK_MONOTONIC time ms from now: the deadline form pthread_cond_timedwait
 * wants for a condvar made by vg_cond_init (condvars cannot wait on
 * CLOCK_BOOTTIME; these waits are short and never span a suspend on purpose). */
struct timespec vg_deadline_after(int64_t ms);

/* Initialises a condvar whose timed waits use CLOCK_MONOTONIC. */
int vg_cond_init(pthread_cond_t *cv);

#endif
