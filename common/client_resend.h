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

typedef struct {
    vg_buf buf;     /* whole frames, length prefixes included, from head */
    size_t head;    /* offset of the oldest copy in buf */
    uint64_t first; /* the number of the oldest copy */
    uint64_t n;     /* copies held */
    size_t limit;   /* bytes of copies at most */
} vg_resend;

/* An empty set holding at most limit bytes of copies. */
void vg_resend_init(vg_resend *r, size_t limit);

/* Frees the copies. */
void vg_resend_free(vg_resend *r);

/* MSG frame number (one more than the newest copy's, or any if there is
 * none) was written for the first time: keeps a copy of its len bytes,
 * dropping the oldest copies to stay within the limit (all of them if this
 * one cannot be kept). */
void vg_resend_add(vg_resend *r, uint64_t number, const uint8_t *frame, size_t len);

/* The broker has every frame up to number: their copies go. */
void vg_resend_confirmed(vg_resend *r, uint64_t number);

/* Drops every copy (the client is closing). */
void vg_resend_clear(vg_resend *r);

/* The copies, oldest first, as one run of whole frames (NULL if none was
 * ever kept). */
static inline const uint8_t *vg_resend_bytes(const vg_resend *r, size_t *len)
{
    *len = r->buf.len - r->head;
    return r->buf.data != NULL ? r->buf.data + r->head : NULL;
}

#endif
