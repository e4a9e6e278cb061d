/* Every byte sequence in docs/protocol.md is what the encoder produces and
 * what the decoder accepts; and each one below appears in the document. */
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

static void check(vg_buf *b, const char *expected, vg_frame_type type)
{
    char got[512];
    hex(b, got);
    cr_assert_str_eq(got, expected);
    cr_assert(strstr(read_doc(), expected) != NULL, "docs/protocol.md lacks: %s", expected);
    vg_decoder *d = vg_decoder_create(64, 1 << 20);
    vg_frame f;
    const char *why = NULL;
    cr_assert_eq(vg_decoder_feed(d, b->data, b->len), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK, "%s", why);
    cr_assert_eq(f.type, type);
    vg_decoder_destroy(d);
    vg_buf_free(b);
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
