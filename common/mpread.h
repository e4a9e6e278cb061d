/* A bounds-checked msgpack reader over one frame body, for fixed schemas.
 *
 * msgpack-c 4.0's unpacker believes the element counts it reads (issue #1013:
 * five bytes claiming a 4-billion-element array ask for ~128 GiB). This reader
 * allocates nothing and rejects any count or length larger than the bytes
 * left, so a frame is fully checked before anything acts on it. */
#ifndef VG_MPREAD_H
#define VG_MPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} vg_mp_reader;

static inline void vg_mp_init(vg_mp_reader *r, const void *data, size_t len)
{
    r->p = data;
    r->end = r->p + len;
}

static inline bool vg_mp_at_end(const vg_mp_reader *r) { return r->p == r->end; }

/* Each returns VG_OK and advances, or VG_ERR_MALFORMED and leaves r unspecified. */
vg_status vg_mp_read_array(vg_mp_reader *r, uint32_t *count);
vg_status vg_mp_read_uint(vg_mp_reader *r, uint64_t *v); /* any non-negative int encoding */
vg_status vg_mp_read_str(vg_mp_reader *r, const char **s, uint32_t *len);
vg_status vg_mp_read_bytes(vg_mp_reader *r, const uint8_t **b, uint32_t *len); /* bin or str */
vg_status vg_mp_read_str_or_nil(vg_mp_reader *r, const char **s, uint32_t *len, bool *is_nil);
/* Skips one nil, bool, int, float, str or bin; an array, a map, an ext or a
 * length past the end is malformed (fields a later version adds are scalars). */
vg_status vg_mp_skip_scalar(vg_mp_reader *r);

#endif
