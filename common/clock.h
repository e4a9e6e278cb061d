/* The one clock every vigil timer uses. */
#ifndef VG_CLOCK_H
#define VG_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_BOOTTIME: monotonic (never jumps with wall-clock
 * changes) and, unlike CLOCK_MONOTONIC, it keeps counting while a laptop is
 * suspended, so a heartbeat deadline that passed during sleep fires on resume. */
int64_t vg_now_ms(void);

/* The same clock in nanoseconds, for latency measurements. */
int64_t vg_now_ns(void);

#endif
