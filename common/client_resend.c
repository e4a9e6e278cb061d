#include "client_resend.h"

#include <string.h>

#include "frame.h"

void vg_resend_init(vg_resend *r, size_t limit)
{
    *r = (vg_resend){.limit = limit};
}

void vg_resend_free(vg_resend *r)
{
    vg_buf_free(&r->buf);
    r->head = 0;
    r->n = 0;
}

#define SHRINK_ABOVE (1024 * 1024)

void vg_resend_clear(vg_resend *r)
{
    r->buf.len = 0;
    r->head = 0;
    r->n = 0;
    if (r->buf.cap > SHRINK_ABOVE) /* a burst has passed: give the memory back */
        vg_buf_free(&r->buf);
}

static void drop_oldest(vg_resend *r)
{
    r->head += VG_FRAME_HEADER + vg_be32(r->buf.data + r->head);
    r->first++;
    if (--r->n == 0)
        vg_resend_clear(r);
}

/* Moves the copies to the start of the buffer once the dropped bytes are
 * the larger part, so the buffer does not grow with what was dropped. */
static void compact(vg_resend *r)
{
    if (r->head == 0 || r->head < r->buf.len - r->head)
        return;
    memmove(r->buf.data, r->buf.data + r->head, r->buf.len - r->head);
    r->buf.len -= r->head;
    r->head = 0;
}

void vg_resend_add(vg_resend *r, uint64_t number, const uint8_t *frame, size_t len)
{
    if (r->n > 0 && number != r->first + r->n)
        vg_resend_clear(r); /* not the next one: the copies would have a hole */
    if (len > r->limit) {
        vg_resend_clear(r);
        return;
    }
    compact(r);
    if (vg_buf_append(&r->buf, frame, len) != VG_OK) {
        vg_resend_clear(r);
        return;
    }
    if (r->n++ == 0)
        r->first = number;
    while (r->buf.len - r->head > r->limit)
        drop_oldest(r);
}

void vg_resend_confirmed(vg_resend *r, uint64_t number)
{
    while (r->n > 0 && r->first <= number)
        drop_oldest(r);
}
