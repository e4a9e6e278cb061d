/* Incremental frame decoder: socket bytes in, parsed frames out, in place.
 *
 * Reads go straight into the decoder's buffer (vg_decoder_space/commit), and
 * vg_decoder_next parses complete frames where they lie. A frame's pointers
 * stay valid until the next vg_decoder_space call, so every frame from one
 * read can be handled (and forwarded as contiguous bytes) before the buffer
 * moves. A declared length is checked against the maximum as soon as its four
 * bytes arrive, before any memory is reserved for the frame. */
#ifndef VG_DECODER_H
#define VG_DECODER_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "status.h"

typedef struct vg_decoder vg_decoder;

/* read_chunk: the usual room offered to a read; max_frame: the largest body accepted.
 * Returns NULL when out of memory. Nothing is allocated until the first read. */
vg_decoder *vg_decoder_create(size_t read_chunk, size_t max_frame);
void vg_decoder_destroy(vg_decoder *d);

/* Forgets buffered bytes, for a new connection; keeps the buffer. */
void vg_decoder_reset(vg_decoder *d, size_t max_frame);

/* Changes the largest accepted body, e.g. once the handshake has negotiated it. */
void vg_decoder_set_max_frame(vg_decoder *d, size_t max_frame);

/* Offers room for the next read: *avail >= 1 bytes at *space. Invalidates
 * earlier frames. VG_ERR_NOMEM if room could not be made. */
vg_status vg_decoder_space(vg_decoder *d, uint8_t **space, size_t *avail);

/* Records that n bytes were written at the space last offered. */
void vg_decoder_commit(vg_decoder *d, size_t n);

/* Parses the next complete frame. VG_OK: *f is set. VG_AGAIN: need more bytes.
 * Otherwise VG_ERR_TOO_LARGE, VG_ERR_MALFORMED or VG_ERR_UNKNOWN_TYPE with a
 * static reason in *why; the stream cannot be resynchronised after an error. */
vg_status vg_decoder_next(vg_decoder *d, vg_frame *f, const char **why);

/* Copies n bytes in (for tests and fuzzing; sockets use space/commit). */
vg_status vg_decoder_feed(vg_decoder *d, const void *bytes, size_t n);

/* Bytes received but not yet returned as frames. */
size_t vg_decoder_pending(const vg_decoder *d);

#endif
