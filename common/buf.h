/* A growable byte buffer. Callers bound its size; it only reports allocation failure. */
#ifndef VG_BUF_H
#define VG_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} vg_buf;

/* Makes room for `extra` more bytes after len. Returns VG_ERR_NOMEM on failure,
 * leaving the buffer unchanged. */
vg_status vg_buf_reserve(vg_buf *b, size_t extra);

/* Appends n bytes; VG_ERR_NOMEM leaves the buffer unchanged. */
vg_status vg_buf_append(vg_buf *b, const void *p, size_t n);

/* Frees the storage and empties the buffer. */
void vg_buf_free(vg_buf *b);

#endif
