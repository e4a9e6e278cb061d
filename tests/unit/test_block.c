/* The durable log's blocks (broker/block.c) and their checksum
 * (common/crc32c.c): CRC-32C's known vectors, split computation, the table
 * path against the SSE4.2 one and a bitwise reference, the header's round
 * trip for every kind, every way vg_block_parse refuses bytes, and
 * vg_block_resync finding the next good block after damage anywhere. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "block.h"
#include "buf.h"
#include "crc32c.h"
#include "frame.h"

/* A second copy of crc32c.c with only its portable table path: the x86
 * branch is compiled out, so that the table is checked on this machine too
 * (vg_crc32c itself takes the SSE4.2 instruction where the CPU has it). All
 * the system headers it includes are in already, so that undefining the
 * architecture macro reaches no libc header. */
#pragma push_macro("__x86_64__")
#undef __x86_64__
#define vg_crc32c crc_table_only
#include "crc32c.c"
#undef vg_crc32c
#pragma pop_macro("__x86_64__")

/* ---- CRC-32C ---- */

/* One bit at a time, straight from the definition (reflected, init and
 * final xor all ones). */
static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return ~crc;
}

static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

Test(crc32c, known_vectors)
{
    cr_assert_eq(vg_crc32c(0, "123456789", 9), 0xe3069283u);
    cr_assert_eq(crc_table_only(0, "123456789", 9), 0xe3069283u);
    cr_assert_eq(crc_bitwise(0, (const uint8_t *)"123456789", 9), 0xe3069283u);
    cr_assert_eq(vg_crc32c(0, "", 0), 0);
    cr_assert_eq(vg_crc32c(0, NULL, 0), 0);
    cr_assert_eq(crc_table_only(0, "", 0), 0);
    cr_assert_eq(vg_crc32c(0x12345678u, "", 0), 0x12345678u, "no bytes: the crc goes through");
    /* RFC 3720 (iSCSI), B.4: 32 bytes of zeros, of 0xff, ascending. */
    uint8_t b[32];
    memset(b, 0, sizeof b);
    cr_assert_eq(vg_crc32c(0, b, sizeof b), 0x8a9136aau);
    memset(b, 0xff, sizeof b);
    cr_assert_eq(vg_crc32c(0, b, sizeof b), 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    cr_assert_eq(vg_crc32c(0, b, sizeof b), 0x46dd794eu);
    cr_assert_eq(crc_table_only(0, b, sizeof b), 0x46dd794eu);
}

Test(crc32c, split_computation_equals_whole)
{
    uint8_t buf[300];
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)next_rand(&rng);
    uint32_t whole = vg_crc32c(0, buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut++) {
        cr_assert_eq(vg_crc32c(vg_crc32c(0, buf, cut), buf + cut, sizeof buf - cut), whole,
                     "cut at %zu", cut);
        cr_assert_eq(crc_table_only(crc_table_only(0, buf, cut), buf + cut, sizeof buf - cut),
                     whole, "table path, cut at %zu", cut);
    }
    /* three pieces, one byte at a time */
    uint32_t c = 0;
    for (size_t i = 0; i < sizeof buf; i++)
        c = vg_crc32c(c, buf + i, 1);
    cr_assert_eq(c, whole);
}

Test(crc32c, table_path_equals_hardware_path_and_bitwise_reference)
{
    enum { MAX = 4200 };
    uint8_t *buf = malloc(MAX + 8);
    cr_assert_not_null(buf);
    uint64_t rng = 12345;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < MAX + 8; i++)
            buf[i] = (uint8_t)next_rand(&rng);
        for (size_t len = 0; len <= MAX; len += len < 80 ? 1 : 1 + next_rand(&rng) % 97) {
            for (size_t align = 0; align < 8; align += len < 80 ? 1 : 3) {
                uint32_t init = round == 0 ? 0 : (uint32_t)next_rand(&rng);
                uint32_t want = crc_bitwise(init, buf + align, len);
                cr_assert_eq(vg_crc32c(init, buf + align, len), want, "len %zu align %zu", len,
                             align);
                cr_assert_eq(crc_table_only(init, buf + align, len), want,
                             "table: len %zu align %zu", len, align);
            }
        }
    }
    free(buf);
}

/* ---- blocks ---- */

/* A whole block: header for b (body_len, topic_len and body_crc filled in
 * here), topic, then rest. */
static void make_block(vg_buf *out, vg_block *b, const char *topic, const void *rest,
                       size_t rest_len)
{
    size_t tl = strlen(topic);
    b->topic_len = (uint16_t)tl;
    b->body_len = (uint32_t)(tl + rest_len);
    b->body_crc = vg_crc32c(vg_crc32c(0, topic, tl), rest, rest_len);
    uint8_t hdr[VG_BLOCK_HEADER];
    vg_block_put_header(hdr, b);
    cr_assert_eq(vg_buf_append(out, hdr, sizeof hdr), VG_OK);
    cr_assert_eq(vg_buf_append(out, topic, tl), VG_OK);
    if (rest_len > 0)
        cr_assert_eq(vg_buf_append(out, rest, rest_len), VG_OK);
}

static void expect_same(const vg_block *got, const vg_block *want)
{
    cr_assert_eq(got->kind, want->kind);
    cr_assert_eq(got->first_seq, want->first_seq);
    cr_assert_eq(got->publisher, want->publisher);
    cr_assert_eq(got->pub_last, want->pub_last);
    cr_assert_eq(got->wall_ms, want->wall_ms);
    cr_assert_eq(got->count, want->count);
    cr_assert_eq(got->body_len, want->body_len);
    cr_assert_eq(got->topic_len, want->topic_len);
    cr_assert_eq(got->body_crc, want->body_crc);
}

/* Recomputes the header checksum of the block at p after a field changed. */
static void reseal(uint8_t *p)
{
    uint32_t c = vg_crc32c(0, p, 52);
    p[52] = (uint8_t)(c >> 24);
    p[53] = (uint8_t)(c >> 16);
    p[54] = (uint8_t)(c >> 8);
    p[55] = (uint8_t)c;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

Test(block, header_round_trip_for_every_kind)
{
    static const vg_block_kind kinds[] = {VG_BLOCK_MSGS, VG_BLOCK_ACK, VG_BLOCK_FORGET,
                                          VG_BLOCK_NEXT, VG_BLOCK_PUBLISHER};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        for (int variant = 0; variant < 3; variant++) {
            /* small numbers, every byte of every field set, and the extremes */
            vg_block b = {.kind = kinds[i]};
            if (variant == 1) {
                b.first_seq = 0x0102030405060708ull;
                b.publisher = 0x1112131415161718ull;
                b.pub_last = 0x2122232425262728ull;
                b.wall_ms = 0x3132333435363738ll;
                b.count = 0x41424344u;
            } else if (variant == 2) {
                b.first_seq = UINT64_MAX;
                b.publisher = UINT64_MAX;
                b.pub_last = UINT64_MAX;
                b.wall_ms = INT64_MIN;
                b.count = UINT32_MAX;
            } else {
                b.first_seq = 1;
                b.count = 1;
                b.wall_ms = 1700000000000ll;
            }
            vg_buf buf = {0};
            make_block(&buf, &b, variant == 1 ? "" : "orders.eu", "name-or-frames", 14);
            vg_block got;
            memset(&got, 0xa5, sizeof got);
            cr_assert_eq(vg_block_parse(buf.data, buf.len, &got), VG_BLOCK_OK, "kind %d",
                         kinds[i]);
            expect_same(&got, &b);
            /* the layout documented in block.h */
            cr_assert_eq(vg_be32(buf.data), VG_BLOCK_MAGIC);
            cr_assert_eq(buf.data[46], (uint8_t)kinds[i]);
            cr_assert_eq(buf.data[47], 0);
            cr_assert_eq(vg_be32(buf.data + 52), vg_crc32c(0, buf.data, 52));
            /* more bytes after it do not matter */
            cr_assert_eq(vg_buf_append(&buf, "tail", 4), VG_OK);
            cr_assert_eq(vg_block_parse(buf.data, buf.len, &got), VG_BLOCK_OK);
            expect_same(&got, &b);
            vg_buf_free(&buf);
        }
    }
}

Test(block, an_empty_body_is_a_block)
{
    vg_block b = {.kind = VG_BLOCK_PUBLISHER, .publisher = 9, .pub_last = 3};
    vg_buf buf = {0};
    make_block(&buf, &b, "", NULL, 0);
    cr_assert_eq(buf.len, VG_BLOCK_HEADER);
    vg_block got;
    cr_assert_eq(vg_block_parse(buf.data, buf.len, &got), VG_BLOCK_OK);
    expect_same(&got, &b);
    vg_buf_free(&buf);
}

Test(block, short_when_the_header_or_the_body_is_cut)
{
    vg_block b = {.kind = VG_BLOCK_MSGS, .first_seq = 5, .count = 2};
    vg_buf buf = {0};
    make_block(&buf, &b, "t", "0123456789abcdef", 16);
    vg_block got;
    for (size_t n = 0; n < VG_BLOCK_HEADER; n++)
        cr_assert_eq(vg_block_parse(buf.data, n, &got), VG_BLOCK_SHORT, "header cut at %zu", n);
    for (size_t n = VG_BLOCK_HEADER; n < buf.len; n++) {
        memset(&got, 0, sizeof got);
        cr_assert_eq(vg_block_parse(buf.data, n, &got), VG_BLOCK_SHORT, "body cut at %zu", n);
    }
    cr_assert_eq(vg_block_parse(buf.data, buf.len, &got), VG_BLOCK_OK);
    vg_buf_free(&buf);
}

/* The block in good, with its header byte at off set to v and (reseal)
 * the header checksum made right again: BAD_HEADER expected. */
static void expect_bad_header(const vg_buf *good, size_t off, uint8_t v, bool do_reseal,
                              const char *what)
{
    uint8_t *p = malloc(good->len);
    cr_assert_not_null(p);
    memcpy(p, good->data, good->len);
    p[off] = v;
    if (do_reseal)
        reseal(p);
    vg_block got;
    cr_assert_eq(vg_block_parse(p, good->len, &got), VG_BLOCK_BAD_HEADER, "%s", what);
    /* and with only the header there: still not SHORT, not a block at all */
    cr_assert_eq(vg_block_parse(p, VG_BLOCK_HEADER, &got), VG_BLOCK_BAD_HEADER, "%s (header only)",
                 what);
    free(p);
}

Test(block, bad_header_for_each_field)
{
    vg_block b = {.kind = VG_BLOCK_ACK, .first_seq = 77, .wall_ms = 1};
    vg_buf buf = {0};
    make_block(&buf, &b, "topic", "durable-name", 12);

    for (size_t i = 0; i < 4; i++)
        expect_bad_header(&buf, i, buf.data[i] ^ 0x20, true, "magic");
    for (size_t i = 0; i < VG_BLOCK_HEADER; i++) /* any byte, checksum not redone */
        expect_bad_header(&buf, i, buf.data[i] ^ 0x01, false, "header crc");
    expect_bad_header(&buf, 46, 0, true, "kind 0");
    expect_bad_header(&buf, 46, 6, true, "kind 6");
    expect_bad_header(&buf, 46, 0xff, true, "kind 255");
    expect_bad_header(&buf, 47, 1, true, "flag byte 1");
    expect_bad_header(&buf, 47, 0x80, true, "flag byte 0x80");

    /* body_len past VG_BLOCK_MAX_BODY */
    uint8_t *p = malloc(buf.len);
    memcpy(p, buf.data, buf.len);
    vg_block got;
    put_be32(p + 4, VG_BLOCK_MAX_BODY + 1);
    reseal(p);
    cr_assert_eq(vg_block_parse(p, buf.len, &got), VG_BLOCK_BAD_HEADER, "body_len > max");
    put_be32(p + 4, UINT32_MAX);
    reseal(p);
    cr_assert_eq(vg_block_parse(p, buf.len, &got), VG_BLOCK_BAD_HEADER, "body_len 2^32-1");
    put_be32(p + 4, VG_BLOCK_MAX_BODY); /* the largest allowed: a header fine, a body short */
    reseal(p);
    cr_assert_eq(vg_block_parse(p, buf.len, &got), VG_BLOCK_SHORT, "body_len = max");

    /* topic_len past body_len */
    memcpy(p, buf.data, buf.len);
    p[44] = 0;
    p[45] = (uint8_t)(b.body_len + 1);
    reseal(p);
    cr_assert_eq(vg_block_parse(p, buf.len, &got), VG_BLOCK_BAD_HEADER, "topic_len > body_len");
    p[45] = (uint8_t)b.body_len; /* all of the body a topic: allowed */
    reseal(p);
    cr_assert_eq(vg_block_parse(p, buf.len, &got), VG_BLOCK_OK, "topic_len = body_len");
    cr_assert_eq(got.topic_len, b.body_len);
    free(p);
    vg_buf_free(&buf);
}

Test(block, bad_body_for_every_byte_flipped)
{
    vg_block b = {.kind = VG_BLOCK_MSGS, .first_seq = 10, .count = 3, .publisher = 4,
                  .pub_last = 12, .wall_ms = 99};
    uint8_t rest[200];
    for (size_t i = 0; i < sizeof rest; i++)
        rest[i] = (uint8_t)(i * 7);
    vg_buf buf = {0};
    make_block(&buf, &b, "a.topic", rest, sizeof rest);
    for (size_t i = VG_BLOCK_HEADER; i < buf.len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            buf.data[i] ^= (uint8_t)(1u << bit);
            vg_block got;
            memset(&got, 0, sizeof got);
            cr_assert_eq(vg_block_parse(buf.data, buf.len, &got), VG_BLOCK_BAD_BODY,
                         "byte %zu bit %d", i, bit);
            expect_same(&got, &b); /* the header is still read */
            buf.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    vg_block got;
    cr_assert_eq(vg_block_parse(buf.data, buf.len, &got), VG_BLOCK_OK);
    vg_buf_free(&buf);
}

/* Three blocks one after another; offs gets where each starts, and
 * offs[3] the end. */
static void three_blocks(vg_buf *buf, size_t offs[4])
{
    static const char *topics[] = {"first", "second.topic", "t3"};
    for (int i = 0; i < 3; i++) {
        offs[i] = buf->len;
        vg_block b = {.kind = VG_BLOCK_MSGS, .first_seq = 1 + 10 * (uint64_t)i, .count = 10};
        char rest[64];
        memset(rest, 'a' + i, sizeof rest);
        /* the magic's bytes in a body: resync must not stop there */
        memcpy(rest + 5, "VGB1", 4);
        make_block(buf, &b, topics[i], rest, sizeof rest - (size_t)i * 11);
    }
    offs[3] = buf->len;
}

Test(block, resync_finds_the_next_good_block_after_damage_anywhere)
{
    vg_buf good = {0};
    size_t offs[4];
    three_blocks(&good, offs);
    cr_assert_eq(vg_block_resync(good.data, good.len, offs[0]), offs[1]);
    cr_assert_eq(vg_block_resync(good.data, good.len, offs[1]), offs[2]);
    cr_assert_eq(vg_block_resync(good.data, good.len, offs[2]), good.len, "none after the last");
    cr_assert_eq(vg_block_resync(good.data, good.len, offs[1] - 1), offs[1],
                 "a block right after from");
    uint8_t *p = malloc(good.len);
    cr_assert_not_null(p);
    /* damage at every offset of the middle block: from anywhere at or
     * before the damage, reading goes on at the third block */
    for (size_t d = offs[1]; d < offs[2]; d++) {
        memcpy(p, good.data, good.len);
        p[d] ^= 0x5a;
        vg_block got;
        cr_assert_neq(vg_block_parse(p + offs[1], good.len - offs[1], &got), VG_BLOCK_OK);
        cr_assert_eq(vg_block_resync(p, good.len, offs[1]), offs[2], "damage at %zu", d);
        cr_assert_eq(vg_block_resync(p, good.len, d), offs[2], "from the damage at %zu", d);
        cr_assert_eq(vg_block_resync(p, good.len, offs[0]), offs[2], "from 0, damage at %zu", d);
    }
    /* and in the last block: none is left */
    for (size_t d = offs[2]; d < offs[3]; d++) {
        memcpy(p, good.data, good.len);
        p[d] ^= 0xff;
        cr_assert_eq(vg_block_resync(p, good.len, offs[1]), good.len, "damage at %zu", d);
    }
    /* garbage in front: found from any offset in it */
    vg_buf g = {0};
    uint64_t rng = 7;
    for (int i = 0; i < 333; i++) {
        uint8_t c = (uint8_t)next_rand(&rng);
        cr_assert_eq(vg_buf_append(&g, &c, 1), VG_OK);
    }
    cr_assert_eq(vg_buf_append(&g, "VGB1VGB", 7), VG_OK); /* a magic with no block */
    size_t junk = g.len;
    cr_assert_eq(vg_buf_append(&g, good.data, good.len), VG_OK);
    for (size_t from = 0; from < junk; from++)
        cr_assert_eq(vg_block_resync(g.data, g.len, from), junk, "from %zu", from);
    /* a block cut short at the end is no block */
    cr_assert_eq(vg_block_resync(g.data, g.len - 1, junk + offs[1]), g.len - 1);
    cr_assert_eq(vg_block_resync(g.data, junk + VG_BLOCK_HEADER - 1, 0), junk + VG_BLOCK_HEADER - 1);
    /* nothing valid at all, and from at or past the end */
    cr_assert_eq(vg_block_resync(g.data, junk, 0), junk);
    cr_assert_eq(vg_block_resync(g.data, g.len, g.len), g.len);
    cr_assert_eq(vg_block_resync(g.data, g.len, g.len - 1), g.len);
    cr_assert_eq(vg_block_resync(g.data, 0, 0), 0);
    vg_buf_free(&g);
    free(p);
    vg_buf_free(&good);
}
