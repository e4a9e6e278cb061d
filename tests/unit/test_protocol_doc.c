/* Every byte sequence in docs/protocol.md is what the encoder produces and
 * what the decoder accepts, in the form the page gives it; and each one
 * below appears in the document. A later version's CONNECT, which no
 * encoder writes, is parsed from the page's bytes instead. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decoder.h"
#include "frame.h"

static char *read_doc(void)
{
    FILE *f = fopen(VIGIL_PROTOCOL_DOC, "r");
    cr_assert(f != NULL, "cannot open %s", VIGIL_PROTOCOL_DOC);
    static char doc[128 * 1024];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    return doc;
}

/* Renders a frame as the doc writes it: "00 00 00 02  91 01". */
static void hex(const vg_buf *b, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < b->len; i++)
        o += (size_t)sprintf(out + o, i == 0 ? "%02x" : i == 4 ? "  %02x" : " %02x", b->data[i]);
}

/* Checks b against expected and decodes it into *f, whose integer fields
 * the caller may check (its pointers are gone with the decoder). */
static void check_form(vg_buf *b, const char *expected, vg_frame_type type, int form, vg_frame *f)
{
    char got[512];
    hex(b, got);
    cr_assert_str_eq(got, expected);
    cr_assert(strstr(read_doc(), expected) != NULL, "docs/protocol.md lacks: %s", expected);
    vg_decoder *d = vg_decoder_create(64, 1 << 20);
    const char *why = NULL;
    cr_assert_eq(vg_decoder_feed(d, b->data, b->len), VG_OK);
    cr_assert_eq(vg_decoder_next(d, f, &why), VG_OK, "%s", why);
    cr_assert_eq(f->type, type);
    cr_assert_eq(f->form, form, "%s: form %d", expected, f->form);
    vg_decoder_destroy(d);
    vg_buf_free(b);
}

static void check(vg_buf *b, const char *expected, vg_frame_type type)
{
    vg_frame f;
    check_form(b, expected, type, 1, &f);
}

Test(protocol_doc, examples_match_the_codec)
{
    vg_buf b = {0};
    vg_frame_put_ping(&b);
    check(&b, "00 00 00 02  91 01", VG_FRAME_PING);
    vg_frame_put_pong(&b);
    check(&b, "00 00 00 02  91 02", VG_FRAME_PONG);
    vg_frame_put_connect(&b, 1, "sub", NULL);
    check(&b, "00 00 00 08  94 03 01 a3 73 75 62 c0", VG_FRAME_CONNECT);
    vg_frame_put_info(&b, 1, "vigil 0.1.0", 7, 1048576);
    check(&b, "00 00 00 15  95 04 01 ab 76 69 67 69 6c 20 30 2e 31 2e 30 07 ce 00 10 00 00",
          VG_FRAME_INFO);
    vg_frame_put_sub(&b, 1, "news", 4);
    check(&b, "00 00 00 08  93 07 01 a4 6e 65 77 73", VG_FRAME_SUB);
    vg_frame_put_unsub(&b, 1);
    check(&b, "00 00 00 03  92 08 01", VG_FRAME_UNSUB);
    vg_frame_put_ok(&b, 1);
    check(&b, "00 00 00 03  92 05 01", VG_FRAME_OK);
    vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "news", 4, "hello", 5);
    check(&b, "00 00 00 0e  93 0b a4 6e 65 77 73 c4 05 68 65 6c 6c 6f", VG_FRAME_MSG_TYPE1);
    vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE2, "news", 4, "hello", 5);
    check(&b, "00 00 00 0e  93 15 a4 6e 65 77 73 c4 05 68 65 6c 6c 6f", VG_FRAME_MSG_TYPE2);
    vg_frame_put_err(&b, 4, "topic is empty", 1);
    check(&b, "00 00 00 13  94 06 04 ae 74 6f 70 69 63 20 69 73 20 65 6d 70 74 79 01", VG_FRAME_ERR);
}

Test(protocol_doc, the_1013_bytes_are_refused)
{
    cr_assert(strstr(read_doc(), "dd ff 00 00 00") != NULL);
    vg_decoder *d = vg_decoder_create(64, 1 << 20);
    vg_frame f;
    const char *why = NULL;
    cr_assert_eq(vg_decoder_feed(d, "\x00\x00\x00\x05\xdd\xff\x00\x00\x00", 9), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_MALFORMED);
    vg_decoder_destroy(d);
}

Test(protocol_doc, version2_examples_match_the_codec)
{
    vg_buf b = {0};
    vg_frame f;
    vg_frame_put_connect2(&b, 2, "sub", NULL, 0x9e3779b97f4a7c15ull, 1);
    check_form(&b, "00 00 00 12  96 03 02 a3 73 75 62 c0 cf 9e 37 79 b9 7f 4a 7c 15 01",
               VG_FRAME_CONNECT, 2, &f);
    cr_assert_eq(f.publisher, 0x9e3779b97f4a7c15ull);
    cr_assert_eq(f.resend_from, 1);
    vg_frame_put_info2(&b, 2, "vigil 0.2.0", 7, 1048576, 0x3c6ef372fe94f82bull, 41);
    check_form(&b,
               "00 00 00 1f  97 04 02 ab 76 69 67 69 6c 20 30 2e 32 2e 30 07 ce 00 10 00 00 cf 3c "
               "6e f3 72 fe 94 f8 2b 29",
               VG_FRAME_INFO, 2, &f);
    cr_assert_eq(f.epoch, 0x3c6ef372fe94f82bull);
    cr_assert_eq(f.publisher_acked, 41);

    vg_frame_put_sub2(&b, 1, "news", 4, VG_SUB_NEW, 0, 0);
    check_form(&b, "00 00 00 0b  96 07 01 a4 6e 65 77 73 00 00 00", VG_FRAME_SUB, 2, &f);
    cr_assert_eq(f.start, VG_SUB_NEW);
    vg_frame_put_sub2(&b, 1, "news", 4, VG_SUB_FIRST, 0, 0);
    check_form(&b, "00 00 00 0b  96 07 01 a4 6e 65 77 73 01 00 00", VG_FRAME_SUB, 2, &f);
    cr_assert_eq(f.start, VG_SUB_FIRST);
    vg_frame_put_sub2(&b, 1, "news", 4, VG_SUB_SEQ, 0x3c6ef372fe94f82bull, 42);
    check_form(&b, "00 00 00 13  96 07 01 a4 6e 65 77 73 02 cf 3c 6e f3 72 fe 94 f8 2b 2a",
               VG_FRAME_SUB, 2, &f);
    cr_assert_eq(f.start, VG_SUB_SEQ);
    cr_assert_eq(f.epoch, 0x3c6ef372fe94f82bull);
    cr_assert_eq(f.position, 42);
    vg_frame_put_sub2(&b, 1, "news", 4, VG_SUB_AGO, 0, 30000);
    check_form(&b, "00 00 00 0d  96 07 01 a4 6e 65 77 73 03 00 cd 75 30", VG_FRAME_SUB, 2, &f);
    cr_assert_eq(f.start, VG_SUB_AGO);
    cr_assert_eq(f.position, 30000);

    vg_frame_put_ok2(&b, 1, 0x3c6ef372fe94f82bull, 42);
    check_form(&b, "00 00 00 0d  94 05 01 cf 3c 6e f3 72 fe 94 f8 2b 2a", VG_FRAME_OK, 2, &f);
    cr_assert_eq(f.next, 42);
    vg_frame_put_msg_seq(&b, VG_FRAME_MSG_TYPE1, "news", 4, "hello", 5, 42);
    check_form(&b,
               "00 00 00 17  94 0b a4 6e 65 77 73 c4 05 68 65 6c 6c 6f cf 00 00 00 00 00 00 00 2a",
               VG_FRAME_MSG_TYPE1, 2, &f);
    cr_assert_eq(f.seq, 42);
    vg_frame_put_gap(&b, 1, "news", 4, 42, 99, VG_GAP_RETENTION);
    check_form(&b, "00 00 00 0b  96 09 01 a4 6e 65 77 73 2a 63 01", VG_FRAME_GAP, 2, &f);
    cr_assert_eq(f.from, 42);
    cr_assert_eq(f.to, 99);
    cr_assert_eq(f.code, VG_GAP_RETENTION);
    /* A queue group's: the member's sid, the topic, what retention took. */
    vg_frame_put_gap(&b, 3, "jobs", 4, 40, 41, VG_GAP_RETENTION);
    check_form(&b, "00 00 00 0b  96 09 03 a4 6a 6f 62 73 28 29 01", VG_FRAME_GAP, 2, &f);
    cr_assert_eq(f.sid, 3);
    vg_frame_put_gap(&b, 1, "news", 4, 42, 0, VG_GAP_EPOCH);
    check_form(&b, "00 00 00 0b  96 09 01 a4 6e 65 77 73 2a 00 02", VG_FRAME_GAP, 2, &f);
    cr_assert_eq(f.code, VG_GAP_EPOCH);
    vg_frame_put_err(&b, 16, "position past the end", 1);
    check_form(&b,
               "00 00 00 1a  94 06 10 b5 70 6f 73 69 74 69 6f 6e 20 70 61 73 74 20 74 68 65 20 65 "
               "6e 64 01",
               VG_FRAME_ERR, 1, &f);
    cr_assert_eq(f.code, 16);
}

Test(protocol_doc, durable_examples_match_the_codec)
{
    vg_buf b = {0};
    vg_frame f;
    vg_frame_put_sub_durable(&b, 1, "orders", 6, VG_SUB_FIRST, 0, 0, "billing", 7);
    check_form(&b, "00 00 00 15  97 07 01 a6 6f 72 64 65 72 73 01 00 00 a7 62 69 6c 6c 69 6e 67",
               VG_FRAME_SUB, 3, &f);
    cr_assert_eq(f.start, VG_SUB_FIRST);
    cr_assert_eq(f.durable_len, 7);
    vg_frame_put_unsub_delete(&b, 1);
    check_form(&b, "00 00 00 04  93 08 01 01", VG_FRAME_UNSUB, 2, &f);
    cr_assert(f.delete_durable);
    vg_frame_put_ack(&b, 1, 41);
    check_form(&b, "00 00 00 04  93 0a 01 29", VG_FRAME_ACK, 2, &f);
    cr_assert_eq(f.sid, 1);
    cr_assert_eq(f.seq, 41);
    vg_frame_put_err(&b, 17, "disk full", 0);
    check_form(&b, "00 00 00 0e  94 06 11 a9 64 69 73 6b 20 66 75 6c 6c 00", VG_FRAME_ERR, 1, &f);
    cr_assert_eq(f.code, 17);
    vg_frame_put_err(&b, 18, "taken over", 1);
    check_form(&b, "00 00 00 0f  94 06 12 aa 74 61 6b 65 6e 20 6f 76 65 72 01", VG_FRAME_ERR, 1,
               &f);
    cr_assert_eq(f.code, 18);
}

/* Bytes as the page writes them ("00 00 00 02  91 01") into out; their count. */
static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    unsigned v;
    int used;
    while (n < cap && sscanf(s, " %2x%n", &v, &used) == 1) {
        out[n++] = (uint8_t)v;
        s += used;
    }
    return n;
}

Test(protocol_doc, pattern_examples_match_the_codec)
{
    vg_buf b = {0};
    vg_frame f;
    vg_frame_put_pos(&b, 7, "jobs.a", 6, 0x3c6ef372fe94f82bull, 3);
    check_form(&b, "00 00 00 14  95 0c 07 a6 6a 6f 62 73 2e 61 cf 3c 6e f3 72 fe 94 f8 2b 03",
               VG_FRAME_POS, 2, &f);
    cr_assert(f.sid == 7 && f.epoch == 0x3c6ef372fe94f82bull && f.next == 3);
    vg_frame_put_sub2(&b, 7, "jobs.>", 6, VG_SUB_SEQ, 0x3c6ef372fe94f82bull, 0);
    check_form(&b,
               "00 00 00 15  96 07 07 a6 6a 6f 62 73 2e 3e 02 cf 3c 6e f3 72 fe 94 f8 2b 00",
               VG_FRAME_SUB, 2, &f);
    cr_assert(f.start == VG_SUB_SEQ && f.position == 0);
    vg_frame_put_ack_topic(&b, 5, 2, "jobs.a", 6);
    check_form(&b, "00 00 00 0b  94 0a 05 02 a6 6a 6f 62 73 2e 61", VG_FRAME_ACK, 3, &f);
    cr_assert(f.sid == 5 && f.seq == 2);
    vg_frame_put_sub_queue(&b, 3, "jobs", 4, VG_SUB_NEW, 0, 0, NULL, 0, "workers", 7);
    check_form(&b, "00 00 00 14  98 07 03 a4 6a 6f 62 73 00 00 00 a0 a7 77 6f 72 6b 65 72 73",
               VG_FRAME_SUB, 4, &f);
    cr_assert_eq(f.sid, 3);
    size_t n = vg_frame_msg_qsize(4, 2);
    cr_assert_eq(vg_buf_reserve(&b, n), VG_OK);
    vg_frame_write_msg_q(b.data, VG_FRAME_MSG_TYPE1, "jobs", 4, "hi", 2, 42, 3);
    b.len = n;
    check_form(&b,
               "00 00 00 1d  95 0b a4 6a 6f 62 73 c4 02 68 69 cf 00 00 00 00 00 00 00 2a cf 00 "
               "00 00 00 00 00 00 03",
               VG_FRAME_MSG_TYPE1, 3, &f);
    cr_assert(f.seq == 42 && f.sid == 3);
}

Test(protocol_doc, a_later_versions_connect_parses_as_the_page_says)
{
    static const char hex[] = "00 00 00 10  97 03 03 a3 73 75 62 c0 00 01 a5 6c 61 74 65 72";
    cr_assert(strstr(read_doc(), hex) != NULL, "docs/protocol.md lacks: %s", hex);
    uint8_t bytes[64];
    size_t n = unhex(hex, bytes, sizeof bytes);
    cr_assert_eq(n, 20);
    vg_decoder *d = vg_decoder_create(64, 1 << 20);
    vg_frame f;
    const char *why = NULL;
    cr_assert_eq(vg_decoder_feed(d, bytes, n), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK, "%s", why);
    cr_assert_eq(f.type, VG_FRAME_CONNECT);
    cr_assert_eq(f.form, 2);
    cr_assert_eq(f.version, 3);
    cr_assert_eq(f.name_len, 3);
    cr_assert(memcmp(f.name, "sub", 3) == 0);
    cr_assert_null(f.token);
    cr_assert_eq(f.publisher, 0);
    cr_assert_eq(f.resend_from, 1);
    vg_decoder_destroy(d);
}
