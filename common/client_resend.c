#include "client_resend.h"

#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define BLOCK (256 * 1024) /* a larger frame gets a block of its own size */

struct vg_resend_block {
    vg_resend_block *next;
    size_t head; /* offset of its oldest copy */
    size_t len;  /* bytes written */
    size_t cap;
    uint8_t data[];
};

void vg_resend_init(vg_resend *r, size_t limit)
{
    *r = (vg_resend){.limit = limit};
}

static void free_blocks(vg_resend_block *b)
{
    while (b != NULL) {
        vg_resend_block *next = b->next;
        free(b);
        b = next;
    }
}

void vg_resend_clear(vg_resend *r)
{
    free_blocks(r->head);
    free(r->spare); /* a burst has passed: give the memory back */
    r->head = r->tail = r->spare = NULL;
    r->bytes = 0;
    r->n = 0;
    vg_buf_free(&r->linear);
}

void vg_resend_free(vg_resend *r) { vg_resend_clear(r); }

static void drop_oldest(vg_resend *r)
{
    vg_resend_block *b = r->head;
    size_t len = VG_FRAME_HEADER + vg_be32(b->data + b->head);
    b->head += len;
    r->bytes -= len;
    r->first++;
    if (--r->n == 0) {
        vg_resend_clear(r);
        return;
    }
    if (b->head < b->len)
        return;
    r->head = b->next; /* emptied: kept for reuse if it is an ordinary one */
    if (r->tail == b)
        r->tail = NULL;
    if (r->spare == NULL && b->cap == BLOCK) {
        r->spare = b;
        return;
    }
    free(b);
}

/* An empty block for at least need bytes: the spare, or a new one. */
static vg_resend_block *new_block(vg_resend *r, size_t need)
{
    vg_resend_block *b;
    if (need <= BLOCK && r->spare != NULL) {
        b = r->spare;
        r->spare = NULL;
    } else {
        size_t cap = need > BLOCK ? need : BLOCK;
        b = malloc(sizeof *b + cap);
        if (b == NULL)
            return NULL;
        b->cap = cap;
    }
    b->next = NULL;
    b->head = b->len = 0;
    return b;
}

void vg_resend_add(vg_resend *r, uint64_t number, const uint8_t *frame, size_t len)
{
    if (r->n > 0 && number != r->first + r->n)
        vg_resend_clear(r); /* not the next one: the copies would have a hole */
    if (len > r->limit) {
        vg_resend_clear(r);
        return;
    }
    vg_resend_block *b = r->tail;
    if (b == NULL || b->cap - b->len < len) {
        b = new_block(r, len);
        if (b == NULL) {
            vg_resend_clear(r);
            return;
        }
        if (r->tail != NULL)
            r->tail->next = b;
        else
            r->head = b;
        r->tail = b;
    }
    memcpy(b->data + b->len, frame, len);
    b->len += len;
    r->bytes += len;
    if (r->n++ == 0)
        r->first = number;
    while (r->bytes > r->limit)
        drop_oldest(r);
}

void vg_resend_confirmed(vg_resend *r, uint64_t number)
{
    while (r->n > 0 && r->first <= number)
        drop_oldest(r);
}

const uint8_t *vg_resend_bytes(vg_resend *r, size_t *len)
{
    *len = 0;
    if (r->n == 0)
        return NULL;
    if (r->head == r->tail) {
        *len = r->head->len - r->head->head;
        return r->head->data + r->head->head;
    }
    r->linear.len = 0;
    if (vg_buf_reserve(&r->linear, r->bytes) != VG_OK)
        return NULL;
    for (vg_resend_block *b = r->head; b != NULL; b = b->next) {
        memcpy(r->linear.data + r->linear.len, b->data + b->head, b->len - b->head);
        r->linear.len += b->len - b->head;
    }
    *len = r->linear.len;
    return r->linear.data;
}
