/* Giving memory back to the system after a load spike.
 *
 * glibc's malloc starts with a 128 KiB mmap threshold and raises it to the
 * size of any mmap'd block that is freed (up to 32 MiB), and its trim
 * threshold to twice that. After a spike has filled and freed a few large
 * outboxes, later large buffers come from the per-thread arenas instead,
 * and a non-main arena gives its top back only beyond the trim threshold,
 * by then tens of MiB: the broker kept 35-68 MB resident with 21 KB in use
 * (docs/operations.md). malloc_trim(0) does not help there: it trims the
 * top of the main arena only.
 *
 * vg_memory_tune fixes both thresholds, which also stops their drift:
 * every buffer of 2 MiB or more is a mapping of its own, unmapped when
 * freed, and an arena gives back a top beyond 128 KiB at once. 2 MiB, not
 * less: a connection keeps its write buffer between bursts up to 1 MiB
 * (common/sender.c), which must not cost a mapping each (limits_fit.h
 * counts two per connection). After the same spike: 2.8 MB.
 *
 * vg_memory_release (malloc_trim(0)) also returns free pages in the middle
 * of the heaps; vg_memory_idle_tick says when it is worth calling. */
#ifndef VG_MEMORY_H
#define VG_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#define VG_MEMORY_MMAP_THRESHOLD (2u << 20)
#define VG_MEMORY_TRIM_THRESHOLD (128u << 10)

/* Sets malloc's thresholds. Call once at start, before any other thread
 * exists. Returns false if the allocator refused (then it keeps its own,
 * dynamic ones). */
bool vg_memory_tune(void);

/* Returns the free pages of every arena to the system (malloc_trim(0)).
 * Locks each arena in turn while it walks its free chunks, so an allocating
 * thread may wait that long: call it from the accept thread, only when
 * vg_memory_idle_tick says so. */
void vg_memory_release(void);

/* Bytes malloc has handed out and not had back, over every arena and the
 * blocks it mapped (mallinfo2: uordblks + hblkhd): unlike RSS, it does not
 * count freed memory malloc keeps or glibc's cache of thread stacks, so it
 * is what grows with a leak. Locks each arena in turn while it walks its
 * free lists, as vg_memory_release does: for statistics, not a hot path. */
uint64_t vg_memory_heap_bytes(void);

/* When to release: once the load has dropped, that is after a busy spell
 * (more than VG_MEMORY_QUIET_RATE messages, subscription changes and
 * connections accepted per second) followed by VG_MEMORY_QUIET_MS without one. Once per such drop: a
 * steady trickle never triggers it, a spike triggers it once. */
#define VG_MEMORY_QUIET_RATE 1000
#define VG_MEMORY_QUIET_MS 10000

typedef struct {
    bool started;
    bool dirty;          /* busy since the last release */
    int64_t last_ms;     /* the previous tick */
    uint64_t last_work;  /* msgs + conns at the previous tick */
    int64_t quiet_since; /* the last busy tick */
} vg_memory_idle;

/* Pure. now_ms: a monotonic clock; msgs: a cumulative count of messages
 * (in + out); conns: a cumulative count of connections accepted. Returns
 * true when vg_memory_release should be called now. Call it every second
 * or so (a coarser period only blurs what counts as busy); s starts zeroed. */
bool vg_memory_idle_tick(vg_memory_idle *s, int64_t now_ms, uint64_t msgs, uint64_t conns);

#endif
