#include "memory.h"

#include <malloc.h>

bool vg_memory_tune(void)
{
    /* Setting either threshold also stops glibc from raising them itself. */
    return mallopt(M_MMAP_THRESHOLD, VG_MEMORY_MMAP_THRESHOLD) == 1 &&
           mallopt(M_TRIM_THRESHOLD, VG_MEMORY_TRIM_THRESHOLD) == 1;
}

void vg_memory_release(void) { (void)malloc_trim(0); /* its result says only whether any was */ }

uint64_t vg_memory_heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

bool vg_memory_idle_tick(vg_memory_idle *s, int64_t now_ms, uint64_t msgs, uint64_t conns)
{
    uint64_t work = msgs + conns;
    if (!s->started) {
        *s = (vg_memory_idle){.started = true, .last_ms = now_ms, .last_work = work,
                              .quiet_since = now_ms};
        return false;
    }
    int64_t dt = now_ms - s->last_ms;
    if (dt <= 0)
        return false; /* the next tick measures across this one */
    uint64_t done = work - s->last_work;
    s->last_ms = now_ms;
    s->last_work = work;
    bool busy = done > UINT64_MAX / 1000 || done * 1000 > (uint64_t)VG_MEMORY_QUIET_RATE * (uint64_t)dt;
    if (busy) {
        s->dirty = true;
        s->quiet_since = now_ms;
        return false;
    }
    if (!s->dirty || now_ms - s->quiet_since < VG_MEMORY_QUIET_MS)
        return false;
    s->dirty = false;
    return true;
}
