/* Frame codec: every encoder round-trips through vg_frame_parse, sizes match
 * at msgpack header boundaries, msgpack-c agrees with us in both directions,
 * and malformed bodies are refused with the right status; and the ERR codes. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "frame.h"
#include "proto.h"
#include "status.h"

/* ---- helpers ---- */

/* Checks the length prefix of the frame at b->data + off, parses its body into
 * *f and returns the offset just past it. */
static size_t parse_at(const vg_buf *b, size_t off, vg_frame *f)
{
    cr_assert_geq(b->len - off, VG_FRAME_HEADER, "no room for a length prefix");
    uint32_t body = vg_be32(b->data + off);
    cr_assert_leq((size_t)body, b->len - off - VG_FRAME_HEADER,
                  "prefix %u runs past the %zu bytes encoded", body, b->len - off);
    const char *why = NULL;
    vg_status st = vg_frame_parse(b->data + off + VG_FRAME_HEADER, body, f, &why);
    cr_assert_eq(st, VG_OK, "parse failed: %s (%s)", vg_strerror(st), why ? why : "?");
    return off + VG_FRAME_HEADER + body;
}

/* Parses the single frame that makes up all of b. */
static void parse_whole(const vg_buf *b, vg_frame *f)
{
    cr_assert_eq(vg_be32(b->data), b->len - VG_FRAME_HEADER,
                 "prefix %u != body length %zu", vg_be32(b->data), b->len - VG_FRAME_HEADER);
    cr_assert_eq(parse_at(b, 0, f), b->len);
}

static void assert_mem(const void *got, size_t got_len, const void *want, size_t want_len)
{
    cr_assert_eq(got_len, want_len, "length %zu, want %zu", got_len, want_len);
    if (want_len > 0)
        cr_assert(memcmp(got, want, want_len) == 0, "bytes differ");
}

/* Expects vg_frame_parse to refuse body with status want and a reason. */
static void expect_reject(const void *body, size_t len, vg_status want, const char *label)
{
    vg_frame f;
    const char *why = NULL;
    vg_status st = vg_frame_parse(body, len, &f, &why);
    cr_assert_eq(st, want, "%s: got %s, want %s", label, vg_strerror(st), vg_strerror(want));
    cr_assert_not_null(why, "%s: why not set", label);
    cr_assert_neq(why[0], '\0', "%s: why is empty", label);
    /* A NULL why is allowed and must not crash. */
    cr_assert_eq(vg_frame_parse(body, len, &f, NULL), want, "%s: differs without why", label);
}

#define REJECT(want, ...)                                                                      \
    do {                                                                                       \
        static const uint8_t body_[] = {__VA_ARGS__};                                          \
        expect_reject(body_, sizeof body_, (want), #__VA_ARGS__);                              \
    } while (0)

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 31u + seed * 7u + (i >> 8)) & 0xff);
}

/* ---- round trips ---- */

Test(codec, ping_pong)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_ping(&b), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_PING);
    cr_assert_eq(b.len, VG_FRAME_HEADER + 2, "PING is [1]: fixarray + fixint");

    b.len = 0;
    cr_assert_eq(vg_frame_put_pong(&b), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_PONG);
    cr_assert_eq(f.sid, 0);
    cr_assert_null(f.topic);
    vg_buf_free(&b);
}

Test(codec, connect_with_token)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_connect(&b, 1, "client-a", "s3cret"), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_CONNECT);
    cr_assert_eq(f.form, 1);
    cr_assert_eq(f.version, 1);
    assert_mem(f.name, f.name_len, "client-a", 8);
    cr_assert_not_null(f.token);
    assert_mem(f.token, f.token_len, "s3cret", 6);
    vg_buf_free(&b);
}

Test(codec, connect_without_token)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_connect(&b, 0, "", NULL), VG_OK); /* parses; the broker refuses 0 */
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_CONNECT);
    cr_assert_eq(f.version, 0);
    cr_assert_eq(f.name_len, 0);
    cr_assert_null(f.token, "a nil token parses as NULL");
    cr_assert_eq(f.token_len, 0);
    vg_buf_free(&b);
}

Test(codec, connect_empty_token_is_not_nil)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_connect(&b, 1, "n", ""), VG_OK);
    parse_whole(&b, &f);
    cr_assert_not_null(f.token, "an empty string token is present, not absent");
    cr_assert_eq(f.token_len, 0);
    vg_buf_free(&b);
}

Test(codec, info)
{
    static const uint64_t values[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffffffu,
                                      0x100000000ull, UINT64_MAX};
    size_t nv = sizeof values / sizeof values[0];
    for (size_t i = 0; i < nv; i++) {
        vg_buf b = {0};
        vg_frame f;
        uint64_t v = values[i], c = values[(i + 3) % nv], m = values[(i + 5) % nv];
        uint64_t e = values[(i + 7) % nv], a = values[(i + 9) % nv];
        /* Versions 0 and 1 have the version-1 shape; any later one the version-2 shape. */
        if (v < 2)
            cr_assert_eq(vg_frame_put_info(&b, v, "vigil-1.0", c, m), VG_OK);
        else
            cr_assert_eq(vg_frame_put_info2(&b, v, "vigil-1.0", c, m, e, a), VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, VG_FRAME_INFO);
        cr_assert_eq(f.form, v < 2 ? 1 : 2);
        cr_assert_eq(f.version, v);
        cr_assert_eq(f.client_id, c);
        cr_assert_eq(f.max_payload, m);
        cr_assert_eq(f.epoch, v < 2 ? 0 : e);
        cr_assert_eq(f.publisher_acked, v < 2 ? 0 : a);
        assert_mem(f.name, f.name_len, "vigil-1.0", 9);
        vg_buf_free(&b);
    }
}

Test(codec, ok_and_unsub)
{
    static const uint64_t sids[] = {0, 1, 200, 70000, UINT64_MAX};
    for (size_t i = 0; i < sizeof sids / sizeof sids[0]; i++) {
        vg_buf b = {0};
        vg_frame f;
        cr_assert_eq(vg_frame_put_ok(&b, sids[i]), VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, VG_FRAME_OK);
        cr_assert_eq(f.sid, sids[i]);

        b.len = 0;
        cr_assert_eq(vg_frame_put_unsub(&b, sids[i]), VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, VG_FRAME_UNSUB);
        cr_assert_eq(f.sid, sids[i]);
        vg_buf_free(&b);
    }
}

Test(codec, err)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_err(&b, 13, "slow consumer", 42), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_ERR);
    cr_assert_eq(f.code, 13);
    cr_assert_eq(f.sid, 42);
    assert_mem(f.reason, f.reason_len, "slow consumer", 13);
    vg_buf_free(&b);
}

Test(codec, sub)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_sub(&b, 9, "news.sport.x", 12), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_SUB);
    cr_assert_eq(f.sid, 9);
    assert_mem(f.topic, f.topic_len, "news.sport.x", 12);

    /* The length is honoured, not strlen: only a prefix is sent. */
    b.len = 0;
    cr_assert_eq(vg_frame_put_sub(&b, 10, "abcdef", 3), VG_OK);
    parse_whole(&b, &f);
    assert_mem(f.topic, f.topic_len, "abc", 3);
    vg_buf_free(&b);
}

Test(codec, msg_both_types_binary_payload)
{
    static const uint8_t payload[] = {0x00, 0xff, 0xc1, 0x90, 0x00, 0x0a, 0x0d};
    static const vg_frame_type types[] = {VG_FRAME_MSG_TYPE1, VG_FRAME_MSG_TYPE2};
    for (size_t i = 0; i < 2; i++) {
        vg_buf b = {0};
        vg_frame f;
        cr_assert_eq(vg_frame_put_msg(&b, types[i], "a.b", 3, payload, sizeof payload), VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, types[i]);
        cr_assert(vg_frame_is_msg(f.type));
        assert_mem(f.topic, f.topic_len, "a.b", 3);
        assert_mem(f.payload, f.payload_len, payload, sizeof payload);
        vg_buf_free(&b);
    }
}

Test(codec, msg_empty_payload)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "t", 1, NULL, 0), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.payload_len, 0);
    assert_mem(f.topic, f.topic_len, "t", 1);
    vg_buf_free(&b);
}

Test(codec, many_frames_appended_to_one_buffer)
{
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_ping(&b), VG_OK);
    cr_assert_eq(vg_frame_put_connect(&b, 1, "me", NULL), VG_OK);
    cr_assert_eq(vg_frame_put_sub(&b, 3, "x.y", 3), VG_OK);
    cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE2, "x.y", 3, "hello", 5), VG_OK);
    cr_assert_eq(vg_frame_put_err(&b, 4, "bad topic", 3), VG_OK);
    cr_assert_eq(vg_frame_put_pong(&b), VG_OK);

    static const vg_frame_type want[] = {VG_FRAME_PING, VG_FRAME_CONNECT, VG_FRAME_SUB,
                                         VG_FRAME_MSG_TYPE2, VG_FRAME_ERR, VG_FRAME_PONG};
    size_t off = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        vg_frame f;
        off = parse_at(&b, off, &f);
        cr_assert_eq(f.type, want[i], "frame %zu", i);
        if (f.type == VG_FRAME_MSG_TYPE2)
            assert_mem(f.payload, f.payload_len, "hello", 5);
    }
    cr_assert_eq(off, b.len);
    vg_buf_free(&b);
}

Test(codec, type_names)
{
    cr_assert_str_eq(vg_frame_type_name(VG_FRAME_PING), "PING");
    cr_assert_str_eq(vg_frame_type_name(VG_FRAME_MSG_TYPE1), "MSG_TYPE1");
    cr_assert_str_eq(vg_frame_type_name(VG_FRAME_MSG_TYPE2), "MSG_TYPE2");
    cr_assert_str_eq(vg_frame_type_name(99), "UNKNOWN");
    cr_assert(!vg_frame_is_msg(VG_FRAME_SUB));
}

/* ---- sizes at msgpack header boundaries ---- */

Test(codec, msg_size_matches_encoding_at_boundaries)
{
    static const size_t topic_lens[] = {0, 1, 31, 32, 255, 256, 1024, 65535, 65536};
    static const size_t payload_lens[] = {0, 31, 32, 255, 256, 65535, 65536};
    size_t nt = sizeof topic_lens / sizeof topic_lens[0];
    size_t np = sizeof payload_lens / sizeof payload_lens[0];

    char *topic = malloc(65536);
    uint8_t *payload = malloc(65536);
    cr_assert(topic && payload);
    memset(topic, 'k', 65536);
    fill_pattern(payload, 65536, 5);

    for (size_t i = 0; i < nt; i++) {
        for (size_t j = 0; j < np; j++) {
            size_t tl = topic_lens[i], pl = payload_lens[j];
            vg_buf b = {0};
            static const uint8_t junk[3] = {0xaa, 0xbb, 0xcc};
            cr_assert_eq(vg_buf_append(&b, junk, sizeof junk), VG_OK);
            cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, topic, tl, payload, pl), VG_OK);
            size_t want = vg_frame_msg_size(tl, pl);
            cr_assert_eq(b.len - sizeof junk, want, "topic %zu payload %zu: appended %zu, size %zu",
                         tl, pl, b.len - sizeof junk, want);
            cr_assert(memcmp(b.data, junk, sizeof junk) == 0, "earlier bytes untouched");

            vg_frame f;
            cr_assert_eq(vg_be32(b.data + sizeof junk), want - VG_FRAME_HEADER);
            cr_assert_eq(parse_at(&b, sizeof junk, &f), b.len);
            cr_assert_eq(f.type, VG_FRAME_MSG_TYPE1);
            assert_mem(f.topic, f.topic_len, topic, tl);
            assert_mem(f.payload, f.payload_len, payload, pl);

            /* vg_frame_write_msg into an exactly sized region writes the same bytes. */
            uint8_t *dst = malloc(want);
            cr_assert_not_null(dst);
            vg_frame_write_msg(dst, VG_FRAME_MSG_TYPE1, topic, tl, payload, pl);
            cr_assert(memcmp(dst, b.data + sizeof junk, want) == 0,
                      "write_msg differs (topic %zu payload %zu)", tl, pl);
            free(dst);
            vg_buf_free(&b);
        }
    }
    free(topic);
    free(payload);
}

/* ---- msgpack-c cross-checks: other valid encodings parse ---- */

static void parse_sbuf(const msgpack_sbuffer *sb, vg_frame *f)
{
    const char *why = NULL;
    vg_status st = vg_frame_parse((const uint8_t *)sb->data, sb->size, f, &why);
    cr_assert_eq(st, VG_OK, "hand-built frame refused: %s (%s)", vg_strerror(st),
                 why ? why : "?");
}

/* Writes raw bytes through the packer's callback, for encodings msgpack-c
 * never chooses itself (str8 for a short string, array16 for 3 elements). */
static void raw(msgpack_sbuffer *sb, const void *p, size_t n)
{
    cr_assert_eq(msgpack_sbuffer_write(sb, p, n), 0);
}

Test(codec_msgpack, uint64_type_str8_topic_str_payload)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    msgpack_pack_array(&pk, 3);
    msgpack_pack_fix_uint64(&pk, VG_FRAME_MSG_TYPE1); /* 0xcf + 8 bytes */
    raw(&sb, "\xd9\x03", 2);                          /* str8 for a 3-byte topic */
    raw(&sb, "a.b", 3);
    msgpack_pack_str(&pk, 5); /* payload as str, not bin */
    msgpack_pack_str_body(&pk, "hello", 5);
    cr_assert_eq((uint8_t)sb.data[1], 0xcf, "really uint64-encoded");

    vg_frame f;
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_MSG_TYPE1);
    assert_mem(f.topic, f.topic_len, "a.b", 3);
    assert_mem(f.payload, f.payload_len, "hello", 5);
    msgpack_sbuffer_destroy(&sb);
}

Test(codec_msgpack, int8_and_other_int_widths)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    /* INFO [int8 4, int16 1, str16 "srv", int32 77, int64 1 MiB] */
    msgpack_pack_array(&pk, 5);
    msgpack_pack_fix_int8(&pk, VG_FRAME_INFO);
    msgpack_pack_fix_int16(&pk, 1);
    raw(&sb, "\xda\x00\x03srv", 6);
    msgpack_pack_fix_int32(&pk, 77);
    msgpack_pack_fix_int64(&pk, 1 << 20);
    cr_assert_eq((uint8_t)sb.data[1], 0xd0, "really int8-encoded");

    vg_frame f;
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_INFO);
    cr_assert_eq(f.version, 1);
    assert_mem(f.name, f.name_len, "srv", 3);
    cr_assert_eq(f.client_id, 77);
    cr_assert_eq(f.max_payload, 1 << 20);

    /* OK [uint8 5, uint16 300] and UNSUB [uint32 8, uint32 sid] */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_fix_uint8(&pk, VG_FRAME_OK);
    msgpack_pack_fix_uint16(&pk, 300);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_OK);
    cr_assert_eq(f.sid, 300);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_fix_uint32(&pk, VG_FRAME_UNSUB);
    msgpack_pack_fix_uint32(&pk, 0xfffffff0u);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_UNSUB);
    cr_assert_eq(f.sid, 0xfffffff0u);
    msgpack_sbuffer_destroy(&sb);
}

Test(codec_msgpack, long_array_headers_and_str32)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    /* SUB as array16 with a str32 topic */
    raw(&sb, "\xdc\x00\x03", 3);
    msgpack_pack_uint64(&pk, VG_FRAME_SUB);
    msgpack_pack_uint64(&pk, 12);
    raw(&sb, "\xdb\x00\x00\x00\x04news", 9);
    vg_frame f;
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_SUB);
    cr_assert_eq(f.sid, 12);
    assert_mem(f.topic, f.topic_len, "news", 4);

    /* PING as array32 */
    msgpack_sbuffer_clear(&sb);
    raw(&sb, "\xdd\x00\x00\x00\x01", 5);
    msgpack_pack_uint64(&pk, VG_FRAME_PING);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_PING);

    /* MSG_TYPE2 with a bin32 payload */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, VG_FRAME_MSG_TYPE2);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "z", 1);
    raw(&sb, "\xc6\x00\x00\x00\x02\x01\x02", 7);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_MSG_TYPE2);
    assert_mem(f.payload, f.payload_len, "\x01\x02", 2);
    msgpack_sbuffer_destroy(&sb);
}

Test(codec_msgpack, connect_and_err_built_by_msgpack)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, VG_FRAME_CONNECT);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "abc", 3);
    msgpack_pack_nil(&pk);
    vg_frame f;
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_CONNECT);
    cr_assert_eq(f.version, 1);
    assert_mem(f.name, f.name_len, "abc", 3);
    cr_assert_null(f.token);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_unsigned_char(&pk, VG_FRAME_ERR);
    msgpack_pack_unsigned_long_long(&pk, 10);
    msgpack_pack_str_with_body(&pk, "duplicate sid", 13);
    msgpack_pack_unsigned_int(&pk, 3);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_ERR);
    cr_assert_eq(f.code, 10);
    cr_assert_eq(f.sid, 3);
    assert_mem(f.reason, f.reason_len, "duplicate sid", 13);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- msgpack-c cross-checks: our frames decode as expected ---- */

/* Unpacks b's body (after the prefix) with msgpack-c, expecting one array of
 * `size` elements that consumes every byte. */
static const msgpack_object *unpack_body(const vg_buf *b, msgpack_unpacked *u, uint32_t size)
{
    msgpack_unpacked_init(u);
    size_t off = 0;
    const char *body = (const char *)b->data + VG_FRAME_HEADER;
    size_t len = b->len - VG_FRAME_HEADER;
    msgpack_unpack_return rc = msgpack_unpack_next(u, body, len, &off);
    cr_assert_eq(rc, MSGPACK_UNPACK_SUCCESS, "msgpack-c rc %d", (int)rc);
    cr_assert_eq(off, len, "msgpack-c consumed %zu of %zu", off, len);
    const msgpack_object *o = &u->data;
    cr_assert_eq(o->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(o->via.array.size, size);
    return o->via.array.ptr;
}

static void expect_uint(const msgpack_object *o, uint64_t v)
{
    cr_assert_eq(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER, "type %d", (int)o->type);
    cr_assert_eq(o->via.u64, v);
}

static void expect_str(const msgpack_object *o, const char *s, size_t n)
{
    cr_assert_eq(o->type, MSGPACK_OBJECT_STR, "type %d", (int)o->type);
    assert_mem(o->via.str.ptr, o->via.str.size, s, n);
}

Test(codec_msgpack, our_frames_decode_with_msgpack_c)
{
    vg_buf b = {0};
    msgpack_unpacked u;
    const msgpack_object *e;

    cr_assert_eq(vg_frame_put_ping(&b), VG_OK);
    e = unpack_body(&b, &u, 1);
    expect_uint(&e[0], 1);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_pong(&b), VG_OK);
    e = unpack_body(&b, &u, 1);
    expect_uint(&e[0], 2);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_connect(&b, 1, "me", NULL), VG_OK);
    e = unpack_body(&b, &u, 4);
    expect_uint(&e[0], 3);
    expect_uint(&e[1], 1);
    expect_str(&e[2], "me", 2);
    cr_assert_eq(e[3].type, MSGPACK_OBJECT_NIL);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_connect(&b, 2, "you", "tok"), VG_OK);
    e = unpack_body(&b, &u, 4);
    expect_uint(&e[1], 2);
    expect_str(&e[3], "tok", 3);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_info(&b, 1, "srv", UINT64_MAX, 1048576), VG_OK);
    e = unpack_body(&b, &u, 5);
    expect_uint(&e[0], 4);
    expect_uint(&e[1], 1);
    expect_str(&e[2], "srv", 3);
    expect_uint(&e[3], UINT64_MAX);
    expect_uint(&e[4], 1048576);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_ok(&b, 65536), VG_OK);
    e = unpack_body(&b, &u, 2);
    expect_uint(&e[0], 5);
    expect_uint(&e[1], 65536);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_err(&b, 2, "too large", 0), VG_OK);
    e = unpack_body(&b, &u, 4);
    expect_uint(&e[0], 6);
    expect_uint(&e[1], 2);
    expect_str(&e[2], "too large", 9);
    expect_uint(&e[3], 0);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_sub(&b, 77, "a.b.c", 5), VG_OK);
    e = unpack_body(&b, &u, 3);
    expect_uint(&e[0], 7);
    expect_uint(&e[1], 77);
    expect_str(&e[2], "a.b.c", 5);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_unsub(&b, 77), VG_OK);
    e = unpack_body(&b, &u, 2);
    expect_uint(&e[0], 8);
    expect_uint(&e[1], 77);
    msgpack_unpacked_destroy(&u);

    vg_buf_free(&b);
}

Test(codec_msgpack, our_msg_frames_decode_with_msgpack_c_at_boundaries)
{
    static const size_t lens[] = {0, 31, 32, 255, 256, 65535, 65536};
    uint8_t *payload = malloc(65536);
    char *topic = malloc(65536);
    cr_assert(payload && topic);
    fill_pattern(payload, 65536, 9);
    memset(topic, 'q', 65536);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t tl = lens[(i + 2) % (sizeof lens / sizeof lens[0])], pl = lens[i];
        for (int t = 0; t < 2; t++) {
            vg_frame_type type = t ? VG_FRAME_MSG_TYPE2 : VG_FRAME_MSG_TYPE1;
            vg_buf b = {0};
            cr_assert_eq(vg_frame_put_msg(&b, type, topic, tl, payload, pl), VG_OK);
            msgpack_unpacked u;
            const msgpack_object *e = unpack_body(&b, &u, 3);
            expect_uint(&e[0], type);
            expect_str(&e[1], topic, tl);
            cr_assert_eq(e[2].type, MSGPACK_OBJECT_BIN, "payload is bin");
            assert_mem(e[2].via.bin.ptr, e[2].via.bin.size, payload, pl);
            msgpack_unpacked_destroy(&u);
            vg_buf_free(&b);
        }
    }
    free(payload);
    free(topic);
}

/* ---- rejections ---- */

Test(codec_reject, not_an_array_or_empty)
{
    expect_reject((const uint8_t *)"", 0, VG_ERR_MALFORMED, "zero-length body");
    REJECT(VG_ERR_MALFORMED, 0x90);                         /* [] */
    REJECT(VG_ERR_MALFORMED, 0xdc, 0x00, 0x00);             /* [] as array16 */
    REJECT(VG_ERR_MALFORMED, 0x01);                         /* top-level int */
    REJECT(VG_ERR_MALFORMED, 0xa1, 0x01);                   /* top-level str */
    REJECT(VG_ERR_MALFORMED, 0x81, 0x01, 0x01);             /* top-level map {1:1} */
    REJECT(VG_ERR_MALFORMED, 0xc0);                         /* nil */
    REJECT(VG_ERR_MALFORMED, 0xc1);                         /* never-used byte */
    REJECT(VG_ERR_MALFORMED, 0xdc, 0x00);                   /* truncated array16 header */
    REJECT(VG_ERR_MALFORMED, 0xdd, 0xff, 0x00, 0x00, 0x00); /* msgpack-c #1013 */
    REJECT(VG_ERR_MALFORMED, 0x93, 0x07);                   /* claims 3, holds 1 */
}

Test(codec_reject, bad_type_element)
{
    REJECT(VG_ERR_MALFORMED, 0x91, 0xff);                   /* negative fixint -1 */
    REJECT(VG_ERR_MALFORMED, 0x91, 0xd0, 0xff);             /* int8 -1 */
    REJECT(VG_ERR_MALFORMED, 0x91, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0x01); /* int64 < 0 */
    REJECT(VG_ERR_MALFORMED, 0x91, 0xa1, '1');              /* type as a string */
    REJECT(VG_ERR_MALFORMED, 0x91, 0xc0);                   /* type nil */
    REJECT(VG_ERR_MALFORMED, 0x91, 0xca, 0x3f, 0x80, 0, 0); /* float32 1.0 */
    REJECT(VG_ERR_MALFORMED, 0x91, 0xc3);                   /* true */
    REJECT(VG_ERR_MALFORMED, 0x91, 0xcd, 0x00);             /* truncated uint16 */
}

Test(codec_reject, unknown_types)
{
    REJECT(VG_ERR_UNKNOWN_TYPE, 0x91, 99);
    REJECT(VG_ERR_UNKNOWN_TYPE, 0x91, 0x00);
    REJECT(VG_ERR_UNKNOWN_TYPE, 0x91, 13);
    REJECT(VG_ERR_UNKNOWN_TYPE, 0x93, 99, 0x01, 0x02);
    REJECT(VG_ERR_UNKNOWN_TYPE, 0x91, 0xcf, 0, 0, 0, 0x01, 0, 0, 0, VG_FRAME_PING);
}

Test(codec_reject, wrong_arity)
{
    REJECT(VG_ERR_MALFORMED, 0x92, VG_FRAME_PING, 0x00);
    REJECT(VG_ERR_MALFORMED, 0x92, VG_FRAME_PONG, 0x00);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_CONNECT, 0x01, 0xa1, 'n');
    REJECT(VG_ERR_MALFORMED, 0x95, VG_FRAME_CONNECT, 0x01, 0xa1, 'n', 0xc0, 0xc0);
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_INFO, 0x01, 0xa1, 's', 0x01);
    REJECT(VG_ERR_MALFORMED, 0x91, VG_FRAME_OK);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_OK, 0x01, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_ERR, 0x01, 0xa1, 'r');
    REJECT(VG_ERR_MALFORMED, 0x92, VG_FRAME_SUB, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_UNSUB, 0x01, 0x01, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x92, VG_FRAME_MSG_TYPE1, 0xa1, 't');
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_MSG_TYPE2, 0xa1, 't', 0xc4, 0x00, 0xc0);
    REJECT(VG_ERR_MALFORMED, 0x91, VG_FRAME_GAP); /* a known type now: wrong shape, not unknown */
    REJECT(VG_ERR_MALFORMED, 0x91, VG_FRAME_ACK);
    REJECT(VG_ERR_MALFORMED, 0x92, VG_FRAME_ACK, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_ACK, 0x01, 0x01, 0x01);
}

Test(codec_reject, wrong_element_types)
{
    /* CONNECT: version str; name nil (only the token may be nil); token int */
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_CONNECT, 0xa1, '1', 0xa1, 'n', 0xc0);
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_CONNECT, 0x01, 0xc0, 0xc0);
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_CONNECT, 0x01, 0xa1, 'n', 0x05);
    /* INFO: server name as bin; negative client id; max_payload str */
    REJECT(VG_ERR_MALFORMED, 0x95, VG_FRAME_INFO, 0x01, 0xc4, 0x01, 's', 0x01, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x95, VG_FRAME_INFO, 0x01, 0xa1, 's', 0xff, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x95, VG_FRAME_INFO, 0x01, 0xa1, 's', 0x01, 0xa1, '1');
    /* OK / UNSUB: sid nil or negative */
    REJECT(VG_ERR_MALFORMED, 0x92, VG_FRAME_OK, 0xc0);
    REJECT(VG_ERR_MALFORMED, 0x92, VG_FRAME_UNSUB, 0xe0);
    /* ERR: reason int; sid str */
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_ERR, 0x01, 0x01, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_ERR, 0x01, 0xa1, 'r', 0xa1, '1');
    /* SUB: sid str; topic int; topic bin */
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_SUB, 0xa1, '1', 0xa1, 't');
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_SUB, 0x01, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_SUB, 0x01, 0xc4, 0x01, 't');
    /* MSG: topic bin; topic int; payload int; payload nil; payload array */
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE1, 0xc4, 0x01, 't', 0xc4, 0x00);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE1, 0x01, 0xc4, 0x00);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE2, 0xa1, 't', 0x01);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE2, 0xa1, 't', 0xc0);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE2, 0xa1, 't', 0x90);
}

Test(codec_reject, nested_map_in_place_of_topic)
{
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE1, 0x81, 0xa1, 'a', 0x01, 0xc4, 0x00);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_SUB, 0x01, 0x80);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_SUB, 0x01, 0x91, 0xa1, 't');
}

Test(codec_reject, trailing_bytes)
{
    REJECT(VG_ERR_MALFORMED, 0x91, VG_FRAME_PING, 0x00);
    REJECT(VG_ERR_MALFORMED, 0x92, VG_FRAME_OK, 0x01, 0xc0);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE1, 0xa1, 't', 0xc4, 0x01, 'p', 'x');

    /* A valid encoded frame followed by one extra byte. */
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "a", 1, "xyz", 3), VG_OK);
    uint8_t extra = 0;
    cr_assert_eq(vg_buf_append(&b, &extra, 1), VG_OK);
    expect_reject(b.data + VG_FRAME_HEADER, b.len - VG_FRAME_HEADER, VG_ERR_MALFORMED,
                  "msg + 1 byte");
    /* ...and the same frame cut one byte short. */
    expect_reject(b.data + VG_FRAME_HEADER, b.len - VG_FRAME_HEADER - 2, VG_ERR_MALFORMED,
                  "msg - 1 byte");
    vg_buf_free(&b);
}

Test(codec_reject, truncated_lengths)
{
    /* fixstr topic claiming 5 bytes, 2 present */
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_SUB, 0x01, 0xa5, 'a', 'b');
    /* str8 / str16 / str32 headers cut short */
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_SUB, 0x01, 0xd9);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_SUB, 0x01, 0xda, 0x00);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_SUB, 0x01, 0xdb, 0x00, 0x00, 0x00);
    /* str32 claiming 4 GiB */
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_SUB, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 'x');
    /* bin8 claiming 10 bytes with 3; bin16 cut; bin32 claiming 4 GiB */
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE1, 0xa1, 't', 0xc4, 0x0a, 1, 2, 3);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE1, 0xa1, 't', 0xc5, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE1, 0xa1, 't', 0xc6, 0xff, 0xff, 0xff, 0xff);
    /* str payload claiming more than present */
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_MSG_TYPE2, 0xa1, 't', 0xa3, 'p');
    /* CONNECT token cut short */
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_CONNECT, 0x01, 0xa1, 'n', 0xa4, 't');
}

/* ---- version 2: round trips ---- */

static const uint64_t wide[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffffffu,
                                0x100000000ull, UINT64_MAX};
#define NWIDE (sizeof wide / sizeof wide[0])

Test(codec_v2, version1_encoders_keep_the_version1_shape)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_connect(&b, 1, "c", NULL), VG_OK);
    cr_assert_eq(vg_frame_put_info(&b, 1, "s", 1, 2), VG_OK);
    cr_assert_eq(vg_frame_put_sub(&b, 1, "t", 1), VG_OK);
    cr_assert_eq(vg_frame_put_ok(&b, 1), VG_OK);
    cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "t", 1, "p", 1), VG_OK);
    cr_assert_eq(vg_frame_put_ping(&b), VG_OK);
    cr_assert_eq(vg_frame_put_err(&b, 4, "r", 1), VG_OK);
    cr_assert_eq(vg_frame_put_unsub(&b, 1), VG_OK);
    size_t off = 0;
    while (off < b.len) {
        off = parse_at(&b, off, &f);
        cr_assert_eq(f.form, 1, "%s", vg_frame_type_name(f.type));
        cr_assert_eq(f.seq, 0);
        cr_assert_eq(f.epoch, 0);
        cr_assert_eq(f.start, VG_SUB_NEW, "a version-1 SUB means NEW");
    }
    vg_buf_free(&b);
}

Test(codec_v2, connect2)
{
    for (size_t i = 0; i < NWIDE; i++) {
        vg_buf b = {0};
        vg_frame f;
        uint64_t version = i % 2 ? 2 : UINT64_MAX - i, p = wide[i], r = wide[(i + 4) % NWIDE];
        const char *token = i % 3 ? "s3cret" : NULL;
        cr_assert_eq(vg_frame_put_connect2(&b, version, "client-a", token, p, r), VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, VG_FRAME_CONNECT);
        cr_assert_eq(f.form, 2);
        cr_assert_eq(f.version, version);
        assert_mem(f.name, f.name_len, "client-a", 8);
        if (token)
            assert_mem(f.token, f.token_len, token, 6);
        else
            cr_assert_null(f.token);
        cr_assert_eq(f.publisher, p);
        cr_assert_eq(f.resend_from, r);
        vg_buf_free(&b);
    }
}

Test(codec_v2, sub2_every_start)
{
    static const struct {
        vg_sub_start start;
        uint64_t epoch, position;
    } cases[] = {{VG_SUB_NEW, 0, 0},
                 {VG_SUB_FIRST, 0, 0},
                 {VG_SUB_SEQ, 0, 1},
                 {VG_SUB_SEQ, UINT64_MAX, UINT64_MAX},
                 {VG_SUB_SEQ, 0x1234567890ull, 70000},
                 {VG_SUB_AGO, 0, 60000},
                 {VG_SUB_AGO, 5, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vg_buf b = {0};
        vg_frame f;
        cr_assert_eq(vg_frame_put_sub2(&b, i + 1, "news.x", 6, cases[i].start, cases[i].epoch,
                                       cases[i].position),
                     VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, VG_FRAME_SUB);
        cr_assert_eq(f.form, 2);
        cr_assert_eq(f.sid, i + 1);
        assert_mem(f.topic, f.topic_len, "news.x", 6);
        cr_assert_eq(f.start, cases[i].start);
        cr_assert_eq(f.epoch, cases[i].epoch);
        cr_assert_eq(f.position, cases[i].position);
        vg_buf_free(&b);
    }
}

Test(codec_v2, ok2)
{
    for (size_t i = 0; i < NWIDE; i++) {
        vg_buf b = {0};
        vg_frame f;
        cr_assert_eq(vg_frame_put_ok2(&b, wide[i], wide[(i + 2) % NWIDE], wide[(i + 5) % NWIDE]),
                     VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, VG_FRAME_OK);
        cr_assert_eq(f.form, 2);
        cr_assert_eq(f.sid, wide[i]);
        cr_assert_eq(f.epoch, wide[(i + 2) % NWIDE]);
        cr_assert_eq(f.next, wide[(i + 5) % NWIDE]);
        vg_buf_free(&b);
    }
}

Test(codec_v2, gap_both_reasons)
{
    static const struct {
        uint64_t sid, from, to;
        vg_gap_reason reason;
    } cases[] = {{1, 1, 1, VG_GAP_RETENTION},
                 {7, 10, 20, VG_GAP_RETENTION},
                 {UINT64_MAX, 1, UINT64_MAX, VG_GAP_RETENTION},
                 {2, 500, 0, VG_GAP_EPOCH},
                 {3, 0, 0, VG_GAP_EPOCH}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vg_buf b = {0};
        vg_frame f;
        cr_assert_eq(vg_frame_put_gap(&b, cases[i].sid, "a.b", 3, cases[i].from, cases[i].to,
                                      cases[i].reason),
                     VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, VG_FRAME_GAP);
        cr_assert_eq(f.form, 2);
        cr_assert_eq(f.sid, cases[i].sid);
        assert_mem(f.topic, f.topic_len, "a.b", 3);
        cr_assert_eq(f.from, cases[i].from);
        cr_assert_eq(f.to, cases[i].to);
        cr_assert_eq(f.code, cases[i].reason);
        vg_buf_free(&b);
    }
    cr_assert_str_eq(vg_frame_type_name(VG_FRAME_GAP), "GAP");
}

Test(codec_v2, msg_seq_round_trip_and_fixed_width)
{
    static const uint64_t seqs[] = {1, 2, 127, 128, 0xffffffffu, UINT64_MAX};
    static const size_t payload_lens[] = {0, 5, 255, 256, 65536};
    uint8_t *payload = malloc(65536);
    cr_assert_not_null(payload);
    fill_pattern(payload, 65536, 3);
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        size_t pl = payload_lens[i % (sizeof payload_lens / sizeof payload_lens[0])];
        vg_frame_type type = i % 2 ? VG_FRAME_MSG_TYPE2 : VG_FRAME_MSG_TYPE1;
        vg_buf b = {0};
        vg_frame f;
        cr_assert_eq(vg_frame_put_msg_seq(&b, type, "news", 4, payload, pl, seqs[i]), VG_OK);
        cr_assert_eq(b.len, vg_frame_msg_seq_size(4, pl));
        cr_assert_eq(b.len, vg_frame_msg_size(4, pl) + 9, "seq is always 9 bytes");
        cr_assert_eq(b.data[b.len - 9], 0xcf, "seq is a uint64, whatever its value");
        parse_whole(&b, &f);
        cr_assert_eq(f.type, type);
        cr_assert_eq(f.form, 2);
        cr_assert_eq(f.seq, seqs[i]);
        assert_mem(f.topic, f.topic_len, "news", 4);
        assert_mem(f.payload, f.payload_len, payload, pl);

        uint8_t *direct = malloc(b.len);
        cr_assert_not_null(direct);
        vg_frame_write_msg_seq(direct, type, "news", 4, payload, pl, seqs[i]);
        cr_assert(memcmp(direct, b.data, b.len) == 0, "put_msg_seq differs from write_msg_seq");
        free(direct);
        vg_buf_free(&b);
    }
    free(payload);
}

Test(codec_v2, msg_seq_appends_after_earlier_bytes)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_ping(&b), VG_OK);
    cr_assert_eq(vg_frame_put_msg_seq(&b, VG_FRAME_MSG_TYPE1, "t", 1, "x", 1, 9), VG_OK);
    cr_assert_eq(vg_frame_put_gap(&b, 1, "t", 1, 3, 4, VG_GAP_RETENTION), VG_OK);
    size_t off = parse_at(&b, 0, &f);
    cr_assert_eq(f.type, VG_FRAME_PING);
    off = parse_at(&b, off, &f);
    cr_assert_eq(f.seq, 9);
    cr_assert_eq(parse_at(&b, off, &f), b.len);
    cr_assert_eq(f.type, VG_FRAME_GAP);
    vg_buf_free(&b);
}

/* ---- version 2: rejections, each with its reason ---- */

/* Expects vg_frame_parse to refuse body as malformed, saying want_why. */
static void expect_why(const void *body, size_t len, const char *want_why, const char *label)
{
    vg_frame f;
    const char *why = NULL;
    vg_status st = vg_frame_parse(body, len, &f, &why);
    cr_assert_eq(st, VG_ERR_MALFORMED, "%s: got %s", label, vg_strerror(st));
    cr_assert_not_null(why, "%s: why not set", label);
    cr_assert_str_eq(why, want_why, "%s", label);
}

#define REJECT_WHY(want_why, ...)                                                              \
    do {                                                                                       \
        static const uint8_t body_[] = {__VA_ARGS__};                                          \
        expect_why(body_, sizeof body_, (want_why), #__VA_ARGS__);                             \
    } while (0)

static const char *const COUNT = "wrong number of elements for the frame type";
static const char *const CONNECT_VERSION = "CONNECT's element count does not fit its version";
static const char *const INFO_VERSION = "INFO's element count does not fit its version";

Test(codec_v2_reject, connect_count_must_fit_the_version)
{
    /* version 1 (or 0) with the version-2 fields */
    REJECT_WHY(CONNECT_VERSION, 0x96, VG_FRAME_CONNECT, 0x01, 0xa1, 'n', 0xc0, 0x01, 0x01);
    REJECT_WHY(CONNECT_VERSION, 0x96, VG_FRAME_CONNECT, 0x00, 0xa1, 'n', 0xc0, 0x01, 0x01);
    /* version 2 without them, or with more */
    REJECT_WHY(CONNECT_VERSION, 0x94, VG_FRAME_CONNECT, 0x02, 0xa1, 'n', 0xc0);
    REJECT_WHY(CONNECT_VERSION, 0x97, VG_FRAME_CONNECT, 0x02, 0xa1, 'n', 0xc0, 0x01, 0x01, 0xc0);
    /* a later version with fewer than six */
    REJECT_WHY(CONNECT_VERSION, 0x94, VG_FRAME_CONNECT, 0x03, 0xa1, 'n', 0xc0);
    REJECT_WHY(CONNECT_VERSION, 0x94, VG_FRAME_CONNECT, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
               0xff, 0xff, 0xa1, 'n', 0xc0);
    /* five elements fit no version */
    REJECT_WHY(COUNT, 0x95, VG_FRAME_CONNECT, 0x03, 0xa1, 'n', 0xc0, 0x01);
    /* the version-2 fields are integers */
    REJECT_WHY("CONNECT publisher is not an integer", 0x96, VG_FRAME_CONNECT, 0x02, 0xa1, 'n',
               0xc0, 0xa1, '1', 0x01);
    REJECT_WHY("CONNECT resend_from is not an integer", 0x96, VG_FRAME_CONNECT, 0x02, 0xa1, 'n',
               0xc0, 0x01, 0xff);
}

Test(codec_v2_reject, info_count_must_fit_the_version)
{
    REJECT_WHY(INFO_VERSION, 0x97, VG_FRAME_INFO, 0x01, 0xa1, 's', 0x01, 0x01, 0x01, 0x01);
    REJECT_WHY(INFO_VERSION, 0x95, VG_FRAME_INFO, 0x02, 0xa1, 's', 0x01, 0x01);
    REJECT_WHY(INFO_VERSION, 0x98, VG_FRAME_INFO, 0x02, 0xa1, 's', 0x01, 0x01, 0x01, 0x01, 0xc0);
    REJECT_WHY(INFO_VERSION, 0x95, VG_FRAME_INFO, 0x09, 0xa1, 's', 0x01, 0x01);
    REJECT_WHY(COUNT, 0x96, VG_FRAME_INFO, 0x03, 0xa1, 's', 0x01, 0x01, 0x01);
    REJECT_WHY("INFO epoch is not an integer", 0x97, VG_FRAME_INFO, 0x02, 0xa1, 's', 0x01, 0x01,
               0xc0, 0x01);
    REJECT_WHY("INFO publisher_acked is not an integer", 0x97, VG_FRAME_INFO, 0x02, 0xa1, 's',
               0x01, 0x01, 0x01, 0xca, 0x3f, 0x80, 0, 0);
}

Test(codec_v2_reject, sub_start_and_its_fields)
{
    REJECT_WHY("unknown SUB start", 0x96, VG_FRAME_SUB, 0x01, 0xa1, 't', 0x04, 0x00, 0x00);
    REJECT_WHY("unknown SUB start", 0x96, VG_FRAME_SUB, 0x01, 0xa1, 't', 0xcf, 0, 0, 0, 0x01, 0,
               0, 0, VG_SUB_SEQ, 0x00, 0x01);
    static const char *const zero = "SUB NEW or FIRST with a nonzero epoch or position";
    REJECT_WHY(zero, 0x96, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x01, 0x00);
    REJECT_WHY(zero, 0x96, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x00, 0x01);
    REJECT_WHY(zero, 0x96, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_FIRST, 0x07, 0x00);
    REJECT_WHY(zero, 0x96, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_FIRST, 0x00, 0xcc, 0x80);
    REJECT_WHY("SUB start is not an integer", 0x96, VG_FRAME_SUB, 0x01, 0xa1, 't', 0xc0, 0x00,
               0x00);
    REJECT_WHY("SUB start is not an integer", 0x96, VG_FRAME_SUB, 0x01, 0xa1, 't', 0xff, 0x00,
               0x00);
    REJECT_WHY("SUB epoch is not an integer", 0x96, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_SEQ,
               0xa0, 0x01);
    REJECT_WHY("SUB position is not an integer", 0x96, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_SEQ,
               0x00, 0x90);
    REJECT_WHY(COUNT, 0x94, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_SEQ);
    REJECT_WHY(COUNT, 0x95, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_SEQ, 0x00);
    REJECT_WHY(COUNT, 0x99, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_SEQ, 0x00, 0x01, 0xa1, 'd',
               0xa1, 'q', 0xc0);
}

/* ---- durable subscribers (issue 11) ---- */

Test(codec_v2, sub_durable_round_trip)
{
    static const char *const names[] = {"a", "billing", "A-Z_a-z.0-9",
                                        "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        vg_buf b = {0};
        vg_frame f;
        size_t n = strlen(names[i]);
        cr_assert_eq(vg_frame_put_sub_durable(&b, i + 1, "orders", 6, VG_SUB_SEQ, 7, 42 + i,
                                              names[i], n),
                     VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, VG_FRAME_SUB);
        cr_assert_eq(f.form, 3);
        cr_assert_eq(vg_frame_min_version(&f), 2);
        cr_assert_eq(f.sid, i + 1);
        assert_mem(f.topic, f.topic_len, "orders", 6);
        cr_assert_eq(f.start, VG_SUB_SEQ);
        cr_assert_eq(f.epoch, 7);
        cr_assert_eq(f.position, 42 + i);
        assert_mem(f.durable, f.durable_len, names[i], n);
        vg_buf_free(&b);
    }
    /* The other SUB shapes carry no name. */
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_sub2(&b, 1, "orders", 6, VG_SUB_FIRST, 0, 0), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.form, 2);
    cr_assert_null(f.durable);
    cr_assert_eq(f.durable_len, 0);
    vg_buf_free(&b);
}

Test(codec_v2, unsub_delete_and_ack)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_unsub(&b, 9), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.form, 1);
    cr_assert_not(f.delete_durable);
    cr_assert_eq(vg_frame_min_version(&f), 1);
    vg_buf_free(&b);
    cr_assert_eq(vg_frame_put_unsub_delete(&b, 9), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_UNSUB);
    cr_assert_eq(f.form, 2);
    cr_assert_eq(f.sid, 9);
    cr_assert(f.delete_durable);
    cr_assert_eq(vg_frame_min_version(&f), 2);
    vg_buf_free(&b);
    for (size_t i = 0; i < NWIDE; i++) {
        if (wide[i] == 0 || wide[(i + 3) % NWIDE] == 0)
            continue;
        cr_assert_eq(vg_frame_put_ack(&b, wide[i], wide[(i + 3) % NWIDE]), VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, VG_FRAME_ACK);
        cr_assert_eq(f.form, 2);
        cr_assert_eq(f.sid, wide[i]);
        cr_assert_eq(f.seq, wide[(i + 3) % NWIDE]);
        vg_buf_free(&b);
    }
    cr_assert_str_eq(vg_frame_type_name(VG_FRAME_ACK), "ACK");
    /* [8, sid, 0] is the 2-element UNSUB said longer: it keeps the durable. */
    static const uint8_t keep[] = {0x93, VG_FRAME_UNSUB, 0x05, 0x00};
    cr_assert_eq(vg_frame_parse(keep, sizeof keep, &f, NULL), VG_OK);
    cr_assert_eq(f.form, 2);
    cr_assert_not(f.delete_durable);
}

Test(codec_v2_reject, durable_shapes)
{
    static const char *const bad = "bad durable name";
    REJECT_WHY(bad, 0x97, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x00, 0x00, 0xa0);
    REJECT_WHY(bad, 0x97, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x00, 0x00, 0xa2, 'a', ' ');
    REJECT_WHY(bad, 0x97, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x00, 0x00, 0xa1, '*');
    REJECT_WHY(bad, 0x97, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x00, 0x00, 0xa1, 0xc3);
    REJECT_WHY(bad, 0x97, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x00, 0x00, 0xa1, '/');
    REJECT_WHY("SUB durable name is not a string", 0x97, VG_FRAME_SUB, 0x01, 0xa1, 't',
               VG_SUB_NEW, 0x00, 0x00, 0xc0);
    REJECT_WHY("SUB durable name is not a string", 0x97, VG_FRAME_SUB, 0x01, 0xa1, 't',
               VG_SUB_NEW, 0x00, 0x00, 0xc4, 0x01, 'a'); /* bin */
    REJECT_WHY("unknown SUB start", 0x97, VG_FRAME_SUB, 0x01, 0xa1, 't', 0x09, 0x00, 0x00, 0xa1,
               'd');
    REJECT_WHY("UNSUB delete is neither 0 nor 1", 0x93, VG_FRAME_UNSUB, 0x01, 0x02);
    REJECT_WHY("UNSUB delete is not an integer", 0x93, VG_FRAME_UNSUB, 0x01, 0xc3);
    REJECT_WHY("ACK with sid 0", 0x93, VG_FRAME_ACK, 0x00, 0x01);
    REJECT_WHY("ACK sequence number 0", 0x93, VG_FRAME_ACK, 0x01, 0x00);
    REJECT_WHY("ACK sequence number is not an integer", 0x93, VG_FRAME_ACK, 0x01, 0xa1, '1');
    REJECT_WHY("sid is not an integer", 0x93, VG_FRAME_ACK, 0xc0, 0x01);

    /* A 65-byte name is one too many. */
    char name[VG_DURABLE_NAME_MAX + 2];
    memset(name, 'n', sizeof name);
    vg_buf b = {0};
    vg_frame f;
    const char *why = NULL;
    cr_assert_eq(vg_frame_put_sub_durable(&b, 1, "t", 1, VG_SUB_NEW, 0, 0, name,
                                          VG_DURABLE_NAME_MAX + 1),
                 VG_OK);
    cr_assert_eq(vg_frame_parse(b.data + VG_FRAME_HEADER, b.len - VG_FRAME_HEADER, &f, &why),
                 VG_ERR_MALFORMED);
    cr_assert_str_eq(why, bad);
    vg_buf_free(&b);
}

Test(proto, durable_names)
{
    cr_assert(vg_durable_name_ok("billing", 7));
    cr_assert(vg_durable_name_ok("a.b-c_D9", 8));
    cr_assert_not(vg_durable_name_ok("", 0));
    cr_assert_not(vg_durable_name_ok("a b", 3));
    cr_assert_not(vg_durable_name_ok("a*", 2));
    cr_assert_not(vg_durable_name_ok("a>", 2));
    cr_assert_not(vg_durable_name_ok("\xc3\xa9", 2));
    char name[VG_DURABLE_NAME_MAX + 1];
    memset(name, 'x', sizeof name);
    cr_assert(vg_durable_name_ok(name, VG_DURABLE_NAME_MAX));
    cr_assert_not(vg_durable_name_ok(name, VG_DURABLE_NAME_MAX + 1));
}

Test(codec_v2_reject, ok_and_msg_fields)
{
    REJECT_WHY(COUNT, 0x93, VG_FRAME_OK, 0x01, 0x01);
    REJECT_WHY(COUNT, 0x95, VG_FRAME_OK, 0x01, 0x01, 0x01, 0x01);
    REJECT_WHY("OK epoch is not an integer", 0x94, VG_FRAME_OK, 0x01, 0xc2, 0x01);
    REJECT_WHY("OK next is not an integer", 0x94, VG_FRAME_OK, 0x01, 0x01, 0xd0, 0x80);
    REJECT_WHY("MSG sequence number 0", 0x94, VG_FRAME_MSG_TYPE1, 0xa1, 't', 0xc4, 0x00, 0x00);
    REJECT_WHY("MSG sequence number 0", 0x94, VG_FRAME_MSG_TYPE2, 0xa1, 't', 0xc4, 0x00, 0xcf, 0,
               0, 0, 0, 0, 0, 0, 0);
    REJECT_WHY("MSG sequence number is not an integer", 0x94, VG_FRAME_MSG_TYPE1, 0xa1, 't', 0xc4,
               0x00, 0xa1, '1');
    REJECT_WHY("MSG sequence number is not an integer", 0x94, VG_FRAME_MSG_TYPE1, 0xa1, 't', 0xc4,
               0x00, 0xcf, 0, 0, 0); /* a uint64 cut short */
    REJECT_WHY(COUNT, 0x96, VG_FRAME_MSG_TYPE1, 0xa1, 't', 0xc4, 0x00, 0x01, 0x01, 0x01);
}

Test(codec_v2_reject, gap_rules)
{
    REJECT_WHY("GAP with sid 0", 0x96, VG_FRAME_GAP, 0x00, 0xa1, 't', 0x01, 0x01, VG_GAP_RETENTION);
    REJECT_WHY("unknown GAP reason", 0x96, VG_FRAME_GAP, 0x01, 0xa1, 't', 0x01, 0x01, 0x00);
    REJECT_WHY("unknown GAP reason", 0x96, VG_FRAME_GAP, 0x01, 0xa1, 't', 0x01, 0x01, 0x03);
    static const char *const range = "GAP range is empty or starts at 0";
    REJECT_WHY(range, 0x96, VG_FRAME_GAP, 0x01, 0xa1, 't', 0x00, 0x05, VG_GAP_RETENTION);
    REJECT_WHY(range, 0x96, VG_FRAME_GAP, 0x01, 0xa1, 't', 0x00, 0x00, VG_GAP_RETENTION);
    REJECT_WHY(range, 0x96, VG_FRAME_GAP, 0x01, 0xa1, 't', 0x05, 0x04, VG_GAP_RETENTION);
    REJECT_WHY("GAP for another epoch with a known end", 0x96, VG_FRAME_GAP, 0x01, 0xa1, 't', 0x05,
               0x05, VG_GAP_EPOCH);
    REJECT_WHY("GAP from is not an integer", 0x96, VG_FRAME_GAP, 0x01, 0xa1, 't', 0xc0, 0x01,
               VG_GAP_RETENTION);
    REJECT_WHY("GAP to is not an integer", 0x96, VG_FRAME_GAP, 0x01, 0xa1, 't', 0x01, 0xa0,
               VG_GAP_RETENTION);
    REJECT_WHY("GAP reason is not an integer", 0x96, VG_FRAME_GAP, 0x01, 0xa1, 't', 0x01, 0x01,
               0xc3);
    REJECT_WHY("topic is not a string", 0x96, VG_FRAME_GAP, 0x01, 0xc4, 0x01, 't', 0x01, 0x01,
               VG_GAP_RETENTION);
    REJECT_WHY(COUNT, 0x95, VG_FRAME_GAP, 0x01, 0xa1, 't', 0x01, 0x01);
    REJECT_WHY(COUNT, 0x97, VG_FRAME_GAP, 0x01, 0xa1, 't', 0x01, 0x01, VG_GAP_RETENTION, 0x00);
    REJECT_WHY(COUNT, 0x93, VG_FRAME_GAP, 0x01, 0xa1, 't');
}

/* ---- version 2: what a later version may add ---- */

/* CONNECT [3, 3, "n", nil, 5, 6, ...extra] packed by msgpack-c; extra
 * appends the fields after the sixth. */
static void pack_connect3(msgpack_sbuffer *sb, msgpack_packer *pk, uint32_t elements)
{
    msgpack_sbuffer_clear(sb);
    msgpack_pack_array(pk, elements);
    msgpack_pack_uint64(pk, VG_FRAME_CONNECT);
    msgpack_pack_uint64(pk, 3);
    msgpack_pack_str_with_body(pk, "n", 1);
    msgpack_pack_nil(pk);
    msgpack_pack_uint64(pk, 5);
    msgpack_pack_uint64(pk, 6);
}

Test(codec_v2, later_versions_add_scalars_that_are_skipped)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    vg_frame f;

    pack_connect3(&sb, &pk, 6); /* version 3 with nothing more */
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.version, 3);
    cr_assert_eq(f.form, 2);
    cr_assert_eq(f.publisher, 5);
    cr_assert_eq(f.resend_from, 6);

    pack_connect3(&sb, &pk, 6 + 18); /* every kind of scalar, in every width */
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_int(&pk, -1);          /* negative fixint */
    msgpack_pack_fix_int8(&pk, -100);
    msgpack_pack_fix_int16(&pk, -1000);
    msgpack_pack_fix_int32(&pk, -100000);
    msgpack_pack_fix_int64(&pk, INT64_MIN);
    msgpack_pack_fix_uint8(&pk, 200);
    msgpack_pack_fix_uint16(&pk, 60000);
    msgpack_pack_fix_uint32(&pk, 4000000000u);
    msgpack_pack_fix_uint64(&pk, UINT64_MAX);
    msgpack_pack_float(&pk, 1.5f);
    msgpack_pack_double(&pk, -2.25);
    msgpack_pack_str_with_body(&pk, "a later field", 13);
    raw(&sb, "\xd9\x02hi\xda\x00\x01x", 8); /* str8, str16 */
    msgpack_pack_bin_with_body(&pk, "\x00\x01", 2);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_CONNECT);
    cr_assert_eq(f.version, 3);
    assert_mem(f.name, f.name_len, "n", 1);
    cr_assert_null(f.token);
    cr_assert_eq(f.publisher, 5);
    cr_assert_eq(f.resend_from, 6);

    /* str32 and bin16, bin32 */
    pack_connect3(&sb, &pk, 9);
    raw(&sb, "\xdb\x00\x00\x00\x02ok", 7);
    raw(&sb, "\xc5\x00\x01z", 4);
    raw(&sb, "\xc6\x00\x00\x00\x00", 5);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.resend_from, 6);

    /* INFO of version 3, with two more fields */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 9);
    msgpack_pack_uint64(&pk, VG_FRAME_INFO);
    msgpack_pack_uint64(&pk, 3);
    msgpack_pack_str_with_body(&pk, "srv", 3);
    msgpack_pack_uint64(&pk, 7);
    msgpack_pack_uint64(&pk, 1024);
    msgpack_pack_uint64(&pk, 99);
    msgpack_pack_uint64(&pk, 42);
    msgpack_pack_str_with_body(&pk, "x", 1);
    msgpack_pack_double(&pk, 0.5);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_INFO);
    cr_assert_eq(f.form, 2);
    cr_assert_eq(f.version, 3);
    cr_assert_eq(f.max_payload, 1024);
    cr_assert_eq(f.epoch, 99);
    cr_assert_eq(f.publisher_acked, 42);
    msgpack_sbuffer_destroy(&sb);
}

static void expect_sbuf_why(const msgpack_sbuffer *sb, const char *want_why, const char *label)
{
    expect_why(sb->data, sb->size, want_why, label);
}

Test(codec_v2_reject, later_fields_must_be_bounded_scalars)
{
    static const char *const scalar = "a field after the version-2 ones is not a scalar";
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    pack_connect3(&sb, &pk, 7);
    msgpack_pack_array(&pk, 0);
    expect_sbuf_why(&sb, scalar, "an empty array");
    pack_connect3(&sb, &pk, 7);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_nil(&pk);
    expect_sbuf_why(&sb, scalar, "a nested array");
    pack_connect3(&sb, &pk, 7);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    expect_sbuf_why(&sb, scalar, "a nested map");
    pack_connect3(&sb, &pk, 7);
    raw(&sb, "\xdc\x00\x00", 3);
    expect_sbuf_why(&sb, scalar, "an array16");
    pack_connect3(&sb, &pk, 7);
    raw(&sb, "\xdf\x00\x00\x00\x00", 5);
    expect_sbuf_why(&sb, scalar, "a map32");
    pack_connect3(&sb, &pk, 7);
    msgpack_pack_ext_with_body(&pk, "\x01", 1, 5);
    expect_sbuf_why(&sb, scalar, "a fixext");
    pack_connect3(&sb, &pk, 7);
    raw(&sb, "\xc7\x01\x05\x01", 4);
    expect_sbuf_why(&sb, scalar, "an ext8");
    pack_connect3(&sb, &pk, 7);
    raw(&sb, "\xc1", 1);
    expect_sbuf_why(&sb, scalar, "the never-used byte");

    /* lengths past the end of the frame */
    pack_connect3(&sb, &pk, 7);
    raw(&sb, "\xa5xy", 3);
    expect_sbuf_why(&sb, scalar, "a fixstr claiming 5 bytes, 2 present");
    pack_connect3(&sb, &pk, 7);
    raw(&sb, "\xd9\x10x", 3);
    expect_sbuf_why(&sb, scalar, "a str8 claiming 16 bytes");
    pack_connect3(&sb, &pk, 7);
    raw(&sb, "\xdb\xff\xff\xff\xff", 5);
    expect_sbuf_why(&sb, scalar, "a str32 claiming 4 GiB");
    pack_connect3(&sb, &pk, 7);
    raw(&sb, "\xc6\xff\xff\xff\xf0\x00", 6);
    expect_sbuf_why(&sb, scalar, "a bin32 claiming 4 GiB");
    pack_connect3(&sb, &pk, 7);
    raw(&sb, "\xcb\x00\x00\x00", 4);
    expect_sbuf_why(&sb, scalar, "a float64 cut short");
    pack_connect3(&sb, &pk, 7);
    raw(&sb, "\xd9", 1);
    expect_sbuf_why(&sb, scalar, "a str8 without its length");
    pack_connect3(&sb, &pk, 8); /* claims two more, holds one */
    msgpack_pack_nil(&pk);
    expect_sbuf_why(&sb, scalar, "one field short");

    /* the array's count is checked first: more elements than bytes */
    pack_connect3(&sb, &pk, 200);
    expect_sbuf_why(&sb, "frame is not a msgpack array", "a count above the bytes left");

    /* and a valid field followed by bytes outside the array */
    pack_connect3(&sb, &pk, 7);
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    expect_sbuf_why(&sb, "trailing bytes after the frame's msgpack value", "trailing bytes");

    /* INFO the same */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 8);
    msgpack_pack_uint64(&pk, VG_FRAME_INFO);
    msgpack_pack_uint64(&pk, 4);
    msgpack_pack_str_with_body(&pk, "srv", 3);
    msgpack_pack_uint64(&pk, 7);
    msgpack_pack_uint64(&pk, 1024);
    msgpack_pack_uint64(&pk, 99);
    msgpack_pack_uint64(&pk, 42);
    msgpack_pack_map(&pk, 0);
    expect_sbuf_why(&sb, scalar, "INFO with a map");
    msgpack_sbuffer_destroy(&sb);
}

/* ---- version 2: msgpack-c cross-checks ---- */

Test(codec_msgpack, our_v2_frames_decode_with_msgpack_c)
{
    vg_buf b = {0};
    msgpack_unpacked u;
    const msgpack_object *e;

    cr_assert_eq(vg_frame_put_connect2(&b, 2, "me", NULL, UINT64_MAX, 1), VG_OK);
    e = unpack_body(&b, &u, 6);
    expect_uint(&e[0], VG_FRAME_CONNECT);
    expect_uint(&e[1], 2);
    expect_str(&e[2], "me", 2);
    cr_assert_eq(e[3].type, MSGPACK_OBJECT_NIL);
    expect_uint(&e[4], UINT64_MAX);
    expect_uint(&e[5], 1);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_info2(&b, 2, "srv", 7, 1048576, 0xdeadbeefcafeull, 300), VG_OK);
    e = unpack_body(&b, &u, 7);
    expect_uint(&e[0], VG_FRAME_INFO);
    expect_uint(&e[1], 2);
    expect_str(&e[2], "srv", 3);
    expect_uint(&e[3], 7);
    expect_uint(&e[4], 1048576);
    expect_uint(&e[5], 0xdeadbeefcafeull);
    expect_uint(&e[6], 300);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_sub2(&b, 77, "a.b.c", 5, VG_SUB_AGO, 0, 60000), VG_OK);
    e = unpack_body(&b, &u, 6);
    expect_uint(&e[0], VG_FRAME_SUB);
    expect_uint(&e[1], 77);
    expect_str(&e[2], "a.b.c", 5);
    expect_uint(&e[3], VG_SUB_AGO);
    expect_uint(&e[4], 0);
    expect_uint(&e[5], 60000);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_ok2(&b, 77, 65536, 12), VG_OK);
    e = unpack_body(&b, &u, 4);
    expect_uint(&e[0], VG_FRAME_OK);
    expect_uint(&e[1], 77);
    expect_uint(&e[2], 65536);
    expect_uint(&e[3], 12);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_gap(&b, 3, "news", 4, 10, 19, VG_GAP_RETENTION), VG_OK);
    e = unpack_body(&b, &u, 6);
    expect_uint(&e[0], VG_FRAME_GAP);
    expect_uint(&e[1], 3);
    expect_str(&e[2], "news", 4);
    expect_uint(&e[3], 10);
    expect_uint(&e[4], 19);
    expect_uint(&e[5], VG_GAP_RETENTION);
    msgpack_unpacked_destroy(&u);

    b.len = 0;
    cr_assert_eq(vg_frame_put_msg_seq(&b, VG_FRAME_MSG_TYPE2, "news", 4, "hi", 2, 5), VG_OK);
    e = unpack_body(&b, &u, 4);
    expect_uint(&e[0], VG_FRAME_MSG_TYPE2);
    expect_str(&e[1], "news", 4);
    cr_assert_eq(e[2].type, MSGPACK_OBJECT_BIN);
    assert_mem(e[2].via.bin.ptr, e[2].via.bin.size, "hi", 2);
    expect_uint(&e[3], 5);
    msgpack_unpacked_destroy(&u);
    vg_buf_free(&b);
}

/* The smallest encodings: what msgpack-c's own packer writes for the same values. */
Test(codec_msgpack, v2_integers_use_the_smallest_encoding)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint64(&pk, VG_FRAME_OK);
    msgpack_pack_uint64(&pk, 300);
    msgpack_pack_uint64(&pk, 70000);
    msgpack_pack_uint64(&pk, 5);
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_ok2(&b, 300, 70000, 5), VG_OK);
    assert_mem(b.data + VG_FRAME_HEADER, b.len - VG_FRAME_HEADER, sb.data, sb.size);
    cr_assert_eq(b.len - VG_FRAME_HEADER, 1 + 1 + 3 + 5 + 1);
    vg_buf_free(&b);
    msgpack_sbuffer_destroy(&sb);
}

Test(codec_msgpack, v2_frames_built_by_msgpack_with_other_encodings)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    vg_frame f;

    /* CONNECT: int8 type, uint64 version, str8 name, str token, int16 and int64 ids */
    msgpack_pack_array(&pk, 6);
    msgpack_pack_fix_int8(&pk, VG_FRAME_CONNECT);
    msgpack_pack_fix_uint64(&pk, 2);
    raw(&sb, "\xd9\x01n", 3);
    msgpack_pack_str_with_body(&pk, "tok", 3);
    msgpack_pack_fix_int16(&pk, 12345);
    msgpack_pack_fix_int64(&pk, 1);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_CONNECT);
    cr_assert_eq(f.version, 2);
    assert_mem(f.token, f.token_len, "tok", 3);
    cr_assert_eq(f.publisher, 12345);
    cr_assert_eq(f.resend_from, 1);

    /* INFO as array16, with uint32 epoch and uint8 publisher_acked */
    msgpack_sbuffer_clear(&sb);
    raw(&sb, "\xdc\x00\x07", 3);
    msgpack_pack_fix_uint16(&pk, VG_FRAME_INFO);
    msgpack_pack_fix_int32(&pk, 2);
    msgpack_pack_str_with_body(&pk, "s", 1);
    msgpack_pack_fix_uint8(&pk, 1);
    msgpack_pack_fix_uint32(&pk, 1 << 20);
    msgpack_pack_fix_uint32(&pk, 0xfffffffeu);
    msgpack_pack_fix_uint8(&pk, 9);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_INFO);
    cr_assert_eq(f.epoch, 0xfffffffeu);
    cr_assert_eq(f.publisher_acked, 9);

    /* SUB with every field a uint64, a str16 topic */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_fix_uint64(&pk, VG_FRAME_SUB);
    msgpack_pack_fix_uint64(&pk, 4);
    raw(&sb, "\xda\x00\x04news", 7);
    msgpack_pack_fix_uint64(&pk, VG_SUB_SEQ);
    msgpack_pack_fix_uint64(&pk, 0);
    msgpack_pack_fix_uint64(&pk, 1);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_SUB);
    cr_assert_eq(f.start, VG_SUB_SEQ);
    cr_assert_eq(f.position, 1);

    /* SUB FIRST with zeros as int8 and int64 */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_int(&pk, VG_FRAME_SUB);
    msgpack_pack_int(&pk, 5);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_fix_int8(&pk, VG_SUB_FIRST);
    msgpack_pack_fix_int8(&pk, 0);
    msgpack_pack_fix_int64(&pk, 0);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.start, VG_SUB_FIRST);

    /* OK with uint16 fields */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_fix_uint16(&pk, VG_FRAME_OK);
    msgpack_pack_fix_uint16(&pk, 1);
    msgpack_pack_fix_uint16(&pk, 2);
    msgpack_pack_fix_uint16(&pk, 3);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_OK);
    cr_assert_eq(f.next, 3);

    /* MSG with a str payload and a smallest-encoded seq (vigil's is always 9 bytes) */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint64(&pk, VG_FRAME_MSG_TYPE1);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "p", 1);
    msgpack_pack_uint64(&pk, 1);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.seq, 1);
    assert_mem(f.payload, f.payload_len, "p", 1);

    /* GAP with a uint32 sid and an int32 reason */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_uint64(&pk, VG_FRAME_GAP);
    msgpack_pack_fix_uint32(&pk, 1);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_fix_uint64(&pk, 77);
    msgpack_pack_fix_int16(&pk, 0);
    msgpack_pack_fix_int32(&pk, VG_GAP_EPOCH);
    parse_sbuf(&sb, &f);
    cr_assert_eq(f.type, VG_FRAME_GAP);
    cr_assert_eq(f.from, 77);
    cr_assert_eq(f.to, 0);
    cr_assert_eq(f.code, VG_GAP_EPOCH);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- ERR codes (proto.h) ---- */

Test(proto, errcode_names_and_fatality)
{
    for (uint64_t code = VG_E_BAD_FRAME; code <= VG_E_DURABLE_TAKEN; code++)
        cr_assert_str_neq(vg_errcode_name(code), "unknown", "code %llu", (unsigned long long)code);
    cr_assert_str_eq(vg_errcode_name(VG_E_BAD_POSITION), "bad_position");
    cr_assert_str_eq(vg_errcode_name(VG_E_STORAGE), "storage");
    cr_assert_str_eq(vg_errcode_name(VG_E_DURABLE_TAKEN), "durable_taken");
    cr_assert_str_eq(vg_errcode_name(VG_E_DURABLE_TAKEN + 1), "unknown");
    cr_assert_str_eq(vg_errcode_name(0), "unknown");
    /* The answers to a SUB or UNSUB that leave the connection open... */
    static const vg_errcode answers[] = {VG_E_BAD_TOPIC, VG_E_LIMIT, VG_E_DUPLICATE_SID,
                                         VG_E_NO_SUCH_SID, VG_E_PERMISSION, VG_E_BAD_POSITION,
                                         VG_E_DURABLE_TAKEN};
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
        cr_assert_not(vg_errcode_is_fatal(answers[i], 1), "%s", vg_errcode_name(answers[i]));
        cr_assert(vg_errcode_is_fatal(answers[i], 0), "%s without a sid",
                  vg_errcode_name(answers[i]));
    }
    /* ...and no other code. */
    cr_assert(vg_errcode_is_fatal(VG_E_BAD_FRAME, 1));
    cr_assert(vg_errcode_is_fatal(VG_E_PROTOCOL, 3));
    cr_assert(vg_errcode_is_fatal(VG_E_STORAGE, 1), "storage is fatal, sid or not");
    cr_assert(vg_errcode_is_fatal(VG_E_STORAGE, 0));
    cr_assert(vg_errcode_is_fatal(VG_E_INTERNAL, 1));
    cr_assert(vg_errcode_is_fatal(VG_E_DURABLE_TAKEN + 1, 1));
}

Test(codec_v2, queue_sub_round_trip)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_sub_queue(&b, 3, "jobs.>", 6, VG_SUB_FIRST, 0, 0, NULL, 0,
                                        "workers", 7),
                 VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_SUB);
    cr_assert_eq(f.form, 4);
    cr_assert_eq(vg_frame_min_version(&f), 2);
    cr_assert_eq(f.sid, 3);
    assert_mem(f.topic, f.topic_len, "jobs.>", 6);
    cr_assert_eq(f.start, VG_SUB_FIRST);
    cr_assert_null(f.durable); /* "" on the wire: not durable */
    assert_mem(f.queue, f.queue_len, "workers", 7);
    vg_buf_free(&b);
    cr_assert_eq(vg_frame_put_sub_queue(&b, 4, "jobs", 4, VG_SUB_SEQ, 9, 17, "billing", 7,
                                        "w", 1),
                 VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.form, 4);
    assert_mem(f.durable, f.durable_len, "billing", 7);
    assert_mem(f.queue, f.queue_len, "w", 1);
    cr_assert_eq(f.epoch, 9);
    cr_assert_eq(f.position, 17);
    vg_buf_free(&b);
}

Test(codec_v2_reject, queue_shapes)
{
    REJECT_WHY("bad queue name", 0x98, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x00, 0x00,
               0xa0, 0xa0);
    REJECT_WHY("bad queue name", 0x98, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x00, 0x00,
               0xa0, 0xa1, ' ');
    REJECT_WHY("SUB queue name is not a string", 0x98, VG_FRAME_SUB, 0x01, 0xa1, 't',
               VG_SUB_NEW, 0x00, 0x00, 0xa0, 0x01);
    REJECT_WHY("bad durable name", 0x98, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x00, 0x00,
               0xa1, '*', 0xa1, 'q');
    REJECT(VG_ERR_MALFORMED, 0x99, VG_FRAME_SUB, 0x01, 0xa1, 't', VG_SUB_NEW, 0x00, 0x00, 0xa0,
           0xa1, 'q', 0x00);
}

Test(codec_v2, ack_topic_pos_and_queue_msg)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_ack_topic(&b, 5, 77, "a.b", 3), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_ACK);
    cr_assert_eq(f.form, 3);
    cr_assert_eq(f.sid, 5);
    cr_assert_eq(f.seq, 77);
    assert_mem(f.topic, f.topic_len, "a.b", 3);
    vg_buf_free(&b);
    cr_assert_eq(vg_frame_put_pos(&b, 6, "a.c", 3, 0x3c6ef372fe94f82bull, 42), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_POS);
    cr_assert_eq(f.form, 2);
    cr_assert_eq(vg_frame_min_version(&f), 2);
    cr_assert_eq(f.sid, 6);
    assert_mem(f.topic, f.topic_len, "a.c", 3);
    cr_assert_eq(f.epoch, 0x3c6ef372fe94f82bull);
    cr_assert_eq(f.next, 42);
    cr_assert_str_eq(vg_frame_type_name(VG_FRAME_POS), "POS");
    vg_buf_free(&b);
    static const size_t lens[] = {0, 1, 255, 256, 65535, 65536};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t *payload = calloc(1, lens[i] + 1);
        size_t n = vg_frame_msg_qsize(3, lens[i]);
        cr_assert_eq(n, vg_frame_msg_seq_size(3, lens[i]) + 9);
        uint8_t *dst = malloc(n);
        vg_frame_write_msg_q(dst, VG_FRAME_MSG_TYPE2, "q.x", 3, payload, lens[i], 1234, 99);
        cr_assert_eq(vg_be32(dst), n - VG_FRAME_HEADER);
        cr_assert_eq(vg_frame_parse(dst + VG_FRAME_HEADER, n - VG_FRAME_HEADER, &f, NULL), VG_OK);
        cr_assert_eq(f.type, VG_FRAME_MSG_TYPE2);
        cr_assert_eq(f.form, 3);
        cr_assert_eq(f.seq, 1234);
        cr_assert_eq(f.sid, 99);
        cr_assert_eq(f.payload_len, lens[i]);
        free(dst);
        free(payload);
    }
}

Test(codec_v2_reject, pos_ack_and_queue_msg)
{
    REJECT_WHY("POS with sid 0", 0x95, VG_FRAME_POS, 0x00, 0xa1, 't', 0x00, 0x01);
    REJECT_WHY("POS next 0", 0x95, VG_FRAME_POS, 0x01, 0xa1, 't', 0x00, 0x00);
    REJECT_WHY("POS epoch is not an integer", 0x95, VG_FRAME_POS, 0x01, 0xa1, 't', 0xa0, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_POS, 0x01, 0xa1, 't', 0x00);
    REJECT_WHY("ACK topic is not a string", 0x94, VG_FRAME_ACK, 0x01, 0x01, 0x01);
    REJECT_WHY("MSG with sid 0", 0x95, VG_FRAME_MSG_TYPE1, 0xa1, 't', 0xc4, 0x00, 0x01, 0x00);
    REJECT(VG_ERR_MALFORMED, 0x96, VG_FRAME_MSG_TYPE1, 0xa1, 't', 0xc4, 0x00, 0x01, 0x01, 0x01);
}
