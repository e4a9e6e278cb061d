#include "backoff.h"

#include <stdlib.h>

struct vg_backoff {
    int64_t base_ms;
    int64_t cap_ms;
    unsigned attempts;
};

vg_backoff *vg_backoff_create(int64_t base_ms, int64_t cap_ms)
{
    vg_backoff *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->base_ms = base_ms > 0 ? base_ms : 1;
    b->cap_ms = cap_ms > b->base_ms ? cap_ms : b->base_ms;
    return b;
}

void vg_backoff_destroy(vg_backoff *b) { free(b); }

int64_t vg_backoff_next(vg_backoff *b, uint32_t random)
{
    int64_t window = b->base_ms;
    for (unsigned i = 0; i < b->attempts && window < b->cap_ms; i++)
        window = window > b->cap_ms / 2 ? b->cap_ms : window * 2; /* never overflows */
    if (window > b->cap_ms)
        window = b->cap_ms;
    b->attempts++;
    /* uniform in [0, window]; 128-bit so that any cap scales without wrapping */
    return (int64_t)(((unsigned __int128)random * (uint64_t)(window + (window < INT64_MAX))) >> 32);
}

unsigned vg_backoff_attempts(const vg_backoff *b) { return b->attempts; }

void vg_backoff_reset(vg_backoff *b) { b->attempts = 0; }
