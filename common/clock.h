/* The one clock every vigil timer uses. */
#ifndef VG_CLOCK_H
#define VG_CLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_BOOTTIME: monotonic (never jumps with wall-clock
 * changes) and, unlike CLOCK_MONOTONIC, it keeps counting while a laptop is
 * suspended, so a deadline that passed during a suspend is due at once
 * when the thread next looks at it. */
int64_t vg_now_ms(void);

/* The same clock in nanoseconds, for latency measurements. */
int64_t vg_now_ns(void);

/* How long the machine was suspended since the previous call, judged from
 * the gap between CLOCK_BOOTTIME (counts a suspend) and CLOCK_MONOTONIC
 * (does not), both in ns: *offset holds the last gap (0 at first). Returns
 * the milliseconds of suspend found, 0 below 50 ms. Pure. */
int64_t vg_clock_suspended_ms(int64_t *offset, int64_t boot_ns, int64_t mono_ns);

/* The poll(2) timeout that sleeps until deadline (INT64_MAX: for ever).
 * poll counts CLOCK_MONOTONIC time, which stops during a suspend: a thread
 * that must wake on time across a suspend also needs a CLOCK_BOOTTIME timer
 * (link.h) or a wake-up from one (the broker's resume watcher). */
int vg_poll_timeout(int64_t deadline_ms, int64_t now_ms);

/* Adds ms milliseconds to *t, normalising tv_nsec. */
void vg_timespec_add_ms(struct timespec *t, int64_t ms);

/* CLOCK_MONOTONIC time ms from now: the deadline form pthread_cond_timedwait
 * wants for a condvar made by vg_cond_init (condvars cannot wait on
 * CLOCK_BOOTTIME; these waits are short and never span a suspend on purpose). */
struct timespec vg_deadline_after(int64_t ms);

/* Initialises a condvar whose timed waits use CLOCK_MONOTONIC. */
int vg_cond_init(pthread_cond_t *cv);

/* A deadline for waits on such a condvar: timeout_ms < 0 means none (wait
 * for ever), 0 means now (do not wait). */
typedef struct {
    bool forever;
    struct timespec at;
} vg_deadline;

vg_deadline vg_deadline_in(int timeout_ms);

/* One wait on cv with mu held, until signalled or the deadline; false once
 * the deadline has passed (the caller then checks its condition a last
 * time and gives up). */
bool vg_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, const vg_deadline *d);

#endif
