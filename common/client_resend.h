/* Copies of the MSG frames a client has written and the broker has not yet
 * confirmed, to send again on the next connection (protocol version 2):
 * pure, owned by the client's I/O thread.
 *
 * A version-2 broker numbers a connection's MSG frames implicitly from
 * CONNECT's resend_from and drops those it already has, so the copies sent
 * again must be the newest frames written, without a hole, right before
 * the frames never written. The copies are therefore always the numbers
 * first .. first + n - 1, the last being the newest frame written; a bound
 * on their bytes drops the oldest, and a frame that cannot be copied (no
 * memory, or larger than the bound) drops them all. A frame without a copy
 * is lost if its connection dies before the broker confirms it. */
#ifndef VG_CLIENT_RESEND_H
#define VG_CLIENT_RESEND_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct vg_resend_block vg_resend_block;

typedef struct {
    vg_resend_block *head, *tail; /* the copies, oldest first, in blocks */
    vg_resend_block *spare;       /* an emptied block kept for the next ones */
    size_t bytes;   /* bytes of copies held */
    uint64_t first; /* the number of the oldest copy */
    uint64_t n;     /* copies held */
    size_t limit;   /* bytes of copies at most */
    vg_buf linear;  /* vg_resend_bytes' copy when they span blocks */
} vg_resend;

/* An empty set holding at most limit bytes of copies. */
void vg_resend_init(vg_resend *r, size_t limit);

/* Frees the copies. */
void vg_resend_free(vg_resend *r);

/* MSG frame number (one more than the newest copy's, or any if there is
 * none) was written for the first time: keeps a copy of its len bytes,
 * dropping the oldest copies to stay within the limit (all of them if this
 * one cannot be kept). One memcpy into a block: copies are never moved
 * again, dropped ones free whole blocks. */
void vg_resend_add(vg_resend *r, uint64_t number, const uint8_t *frame, size_t len);

/* The broker has every frame up to number: their copies go. */
void vg_resend_confirmed(vg_resend *r, uint64_t number);

/* Drops every copy (the client is closing, or a burst has passed). */
void vg_resend_clear(vg_resend *r);

/* The copies, oldest first, as one run of whole frames (NULL if there are
 * none, or no memory to put blocks together: then *len is 0 too). Valid
 * until the next call on r. For a new connection, so rarely that putting
 * blocks together costs nothing that matters. */
const uint8_t *vg_resend_bytes(vg_resend *r, size_t *len);

#endif
