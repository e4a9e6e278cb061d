/* The resend copies (client_resend.h): contiguous up to the newest frame,
 * bounded by bytes (oldest dropped first), confirmed copies dropped, and a
 * frame that cannot be kept dropping them all. Pure. */
#include <criterion/criterion.h>
#include <string.h>

#include "client_resend.h"
#include "frame.h"

/* A MSG frame whose payload names its number. */
static size_t frame_of(vg_buf *b, uint64_t n, size_t payload_len)
{
    b->len = 0;
    char p[512];
    cr_assert_leq(payload_len, sizeof p);
    memset(p, 'a' + (int)(n % 26), sizeof p);
    cr_assert_eq(vg_frame_put_msg(b, VG_FRAME_MSG_TYPE1, "t", 1, p, payload_len), VG_OK);
    return b->len;
}

static void add(vg_resend *r, uint64_t n, size_t payload_len)
{
    vg_buf b = {0};
    frame_of(&b, n, payload_len);
    vg_resend_add(r, n, b.data, b.len);
    vg_buf_free(&b);
}

static void holds(vg_resend *r, uint64_t first, uint64_t n)
{
    cr_assert_eq(r->n, n, "%llu copies, expected %llu", (unsigned long long)r->n,
                 (unsigned long long)n);
    if (n > 0)
        cr_assert_eq(r->first, first);
    size_t len;
    const uint8_t *p = vg_resend_bytes(r, &len);
    uint64_t frames = 0;
    for (size_t off = 0; off < len; frames++)
        off += VG_FRAME_HEADER + vg_be32(p + off);
    cr_assert_eq(frames, n, "the bytes hold whole frames, one per copy");
}

Test(resend, keeps_the_newest_within_the_bound)
{
    vg_resend r;
    vg_buf b = {0};
    size_t one = frame_of(&b, 1, 100);
    vg_buf_free(&b);
    vg_resend_init(&r, 3 * one);
    for (uint64_t n = 1; n <= 5; n++)
        add(&r, n, 100);
    holds(&r, 3, 3);
    vg_resend_confirmed(&r, 3);
    holds(&r, 4, 2);
    vg_resend_confirmed(&r, 2);
    holds(&r, 4, 2);
    for (uint64_t n = 6; n <= 50; n++)
        add(&r, n, 100);
    holds(&r, 48, 3);
    vg_resend_confirmed(&r, 50);
    holds(&r, 0, 0);
    add(&r, 51, 100);
    holds(&r, 51, 1);
    vg_resend_free(&r);
}

Test(resend, a_frame_too_large_or_out_of_order_drops_every_copy)
{
    vg_resend r;
    vg_resend_init(&r, 1000);
    add(&r, 1, 100);
    add(&r, 2, 100);
    add(&r, 3, 250); /* fits */
    holds(&r, 1, 3);
    vg_resend_free(&r);
    vg_resend_init(&r, 300);
    add(&r, 1, 100);
    add(&r, 2, 100);
    holds(&r, 1, 2);
    add(&r, 3, 290); /* alone above the bound: 1 and 2 cannot be resent without it */
    holds(&r, 0, 0);
    add(&r, 4, 10);
    holds(&r, 4, 1);
    add(&r, 9, 10); /* a hole */
    holds(&r, 9, 1);
    vg_resend_clear(&r);
    holds(&r, 0, 0);
    vg_resend_free(&r);
}

/* Copies spanning several blocks come back as one run, oldest first, and
 * confirmations free the blocks they empty. */
Test(resend, copies_across_blocks_come_back_whole_and_in_order)
{
    vg_resend r;
    vg_resend_init(&r, 4u << 20);
    for (uint64_t n = 1; n <= 6000; n++)
        add(&r, n, 200); /* about 1.3 MB: six blocks */
    holds(&r, 1, 6000);
    vg_resend_confirmed(&r, 2500);
    holds(&r, 2501, 3500);
    size_t len;
    const uint8_t *p = vg_resend_bytes(&r, &len);
    vg_frame f;
    const char *why;
    for (uint64_t n = 2501, off = 0; n <= 6000; n++) {
        uint32_t body = vg_be32(p + off);
        cr_assert_eq(vg_frame_parse(p + off + VG_FRAME_HEADER, body, &f, &why), VG_OK);
        cr_assert_eq(f.payload[0], 'a' + (int)(n % 26), "copy %llu out of place",
                     (unsigned long long)n);
        off += VG_FRAME_HEADER + body;
    }
    vg_resend_confirmed(&r, 6000);
    holds(&r, 0, 0);
    cr_assert_null(r.head);
    vg_resend_free(&r);
}
