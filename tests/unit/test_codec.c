/* Frame codec: every encoder round-trips through vg_frame_parse, sizes match
 * at msgpack header boundaries, msgpack-c agrees with us in both directions,
 * and malformed bodies are refused with the right status. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "frame.h"
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
    cr_assert_eq(vg_frame_put_connect(&b, 7, "client-a", "s3cret"), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_CONNECT);
    cr_assert_eq(f.version, 7);
    assert_mem(f.name, f.name_len, "client-a", 8);
    cr_assert_not_null(f.token);
    assert_mem(f.token, f.token_len, "s3cret", 6);
    vg_buf_free(&b);
}

Test(codec, connect_without_token)
{
    vg_buf b = {0};
    vg_frame f;
    cr_assert_eq(vg_frame_put_connect(&b, UINT64_MAX, "", NULL), VG_OK);
    parse_whole(&b, &f);
    cr_assert_eq(f.type, VG_FRAME_CONNECT);
    cr_assert_eq(f.version, UINT64_MAX);
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
        cr_assert_eq(vg_frame_put_info(&b, v, "vigil-1.0", c, m), VG_OK);
        parse_whole(&b, &f);
        cr_assert_eq(f.type, VG_FRAME_INFO);
        cr_assert_eq(f.version, v);
        cr_assert_eq(f.client_id, c);
        cr_assert_eq(f.max_payload, m);
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
    REJECT(VG_ERR_UNKNOWN_TYPE, 0x91, 9);
    REJECT(VG_ERR_UNKNOWN_TYPE, 0x91, 12);
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
    REJECT(VG_ERR_MALFORMED, 0x93, VG_FRAME_UNSUB, 0x01, 0x01);
    REJECT(VG_ERR_MALFORMED, 0x92, VG_FRAME_MSG_TYPE1, 0xa1, 't');
    REJECT(VG_ERR_MALFORMED, 0x94, VG_FRAME_MSG_TYPE2, 0xa1, 't', 0xc4, 0x00, 0xc0);
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
