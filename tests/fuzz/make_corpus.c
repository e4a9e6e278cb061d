/* Writes the fuzzers' seed corpus: fuzz_make_corpus DIR writes DIR/decoder/,
 * DIR/broker/, DIR/client/ and DIR/format/ (the committed copy is
 * tests/fuzz/corpus; regenerate it with
 * build-fuzz/fuzz_make_corpus tests/fuzz/corpus).
 *
 * Each seed is a byte stream a client could send: valid frames of every
 * type and shape (version 1 and 2), sessions, and the hostile classics (oversize and empty lengths,
 * truncation, msgpack-c issue #1013's count bomb, deep nesting, garbage).
 * The decoder's copy gets a header choosing how the stream is cut (see
 * fuzz_decoder.c); the broker's a first byte choosing whether a CONNECT goes
 * first (see fuzz_broker.c). The client's seeds are what a broker could send,
 * after two bytes choosing the session (see fuzz_client.c); the format's,
 * a topic and a payload after two bytes choosing the format (see
 * fuzz_format.c). The store's are data directories: a mode byte, then
 * the files' bytes, blocks good, cut and damaged (see fuzz_store.c).
 * Deterministic: the same files every time. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "block.h"
#include "buf.h"
#include "crc32c.h"
#include "frame.h"

static const vg_frame_type MSG1 = VG_FRAME_MSG_TYPE1;
static const vg_frame_type MSG2 = VG_FRAME_MSG_TYPE2;

static const char *out_dir;
static unsigned seeds;

static void fail(const char *what, const char *path)
{
    fprintf(stderr, "fuzz_make_corpus: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void ok(vg_status st)
{
    if (st != VG_OK) {
        fprintf(stderr, "fuzz_make_corpus: %s\n", vg_strerror(st));
        exit(1);
    }
}

static void write_file(const char *dir, const char *name, const uint8_t *head, size_t head_len,
                       const vg_buf *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        fail("cannot create", path);
    if (fwrite(head, 1, head_len, f) != head_len || (b->len && fwrite(b->data, 1, b->len, f) != b->len))
        fail("cannot write", path);
    if (fclose(f) != 0)
        fail("cannot write", path);
}

/* How the decoder seeds cut their stream, in turn: whole; one byte at a time
 * through space/commit; pieces of 3, 11 and the rest; small read chunks and
 * pieces of 7 and 1; the handshake's max_frame; a 16-byte max_frame. */
static const uint8_t cuts[][4] = {
    {0x00}, {0x41, 0x00}, {0x03, 2, 10, 0xff}, {0xc2, 6, 0}, {0x10}, {0x21, 4},
};
static const size_t cut_len[] = {1, 2, 4, 3, 1, 2};

/* Writes the stream in b as a seed for both fuzzers, then empties b.
 * connect_first: the broker seed has the CONNECT done for it; otherwise the
 * stream is all the broker sees. */
static void seed(const char *name, vg_buf *b, bool connect_first)
{
    size_t c = seeds++ % (sizeof cut_len / sizeof cut_len[0]);
    write_file("decoder", name, cuts[c], cut_len[c], b);
    uint8_t first = connect_first ? 1 : 0;
    write_file("broker", name, &first, 1, b);
    b->len = 0;
}

/* Writes the stream in b as a broker seed on a version-2 connection (first
 * byte 0x11; 0x31 also gives it a publisher identity: fuzz_broker.c), then
 * empties b. */
static void seed_v2(const char *name, vg_buf *b, bool publisher)
{
    uint8_t first = publisher ? 0x31 : 0x11;
    write_file("broker", name, &first, 1, b);
    b->len = 0;
}

/* Appends a frame around a hand-written body, for shapes the encoders refuse to make. */
static void body(vg_buf *b, const uint8_t *p, size_t n)
{
    uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    ok(vg_buf_append(b, len, 4));
    ok(vg_buf_append(b, p, n));
}

static void raw(vg_buf *b, const uint8_t *p, size_t n) { ok(vg_buf_append(b, p, n)); }

static void sub(vg_buf *b, uint64_t sid, const char *topic)
{
    ok(vg_frame_put_sub(b, sid, topic, strlen(topic)));
}

static void msg(vg_buf *b, vg_frame_type t, const char *topic, const char *payload)
{
    ok(vg_frame_put_msg(b, t, topic, strlen(topic), payload, strlen(payload)));
}

/* A MSG on "news" whose payload is n copies of c. */
static void msg_of(vg_buf *b, vg_frame_type t, size_t n, char c)
{
    char *p = malloc(n + 1);
    if (p == NULL)
        exit(1);
    memset(p, c, n);
    p[n] = 0;
    msg(b, t, "news", p);
    free(p);
}

static void connect_frame(vg_buf *b) { ok(vg_frame_put_connect(b, 1, "seed", NULL)); }

/* n fixed pseudo-random bytes (xorshift64). */
static void garbage(vg_buf *b, size_t n)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint8_t c = (uint8_t)x;
        raw(b, &c, 1);
    }
}

static void valid_frames(vg_buf *b)
{
    connect_frame(b);
    seed("connect", b, false);
    ok(vg_frame_put_connect(b, 1, "seed", "secret"));
    seed("connect_token", b, false);
    ok(vg_frame_put_connect(b, 0, "seed", NULL));
    seed("connect_version0", b, false);
    ok(vg_frame_put_connect(b, 7, "seed", NULL));
    seed("connect_version7", b, false);
    connect_frame(b);
    connect_frame(b);
    seed("connect_twice", b, false);

    sub(b, 1, "news");
    seed("sub", b, true);
    ok(vg_frame_put_unsub(b, 1));
    seed("unsub_unknown", b, true);
    sub(b, 1, "news");
    ok(vg_frame_put_unsub(b, 1));
    ok(vg_frame_put_unsub(b, 1));
    seed("sub_unsub_twice", b, true);
    sub(b, 5, "a.b");
    sub(b, 5, "a.c");
    sub(b, 6, "a.b");
    seed("sub_duplicate_sid", b, true);
    sub(b, 0, "news");
    seed("sub_sid0", b, true);
    ok(vg_frame_put_unsub(b, 0));
    seed("unsub_sid0", b, true);

    msg(b, MSG1, "news", "hello");
    seed("msg1", b, true);
    msg(b, MSG2, "news", "second kind");
    seed("msg2", b, true);
    msg(b, MSG1, "news", "before connect");
    seed("msg_before_connect", b, false);
    ok(vg_frame_put_ping(b));
    seed("ping", b, true);
    ok(vg_frame_put_ping(b));
    seed("ping_before_connect", b, false);
    ok(vg_frame_put_pong(b));
    seed("pong", b, true);
    for (int i = 0; i < 50; i++)
        ok(vg_frame_put_ping(b));
    seed("pings", b, true);

    sub(b, 1, "news"); /* a publisher receives its own messages */
    msg(b, MSG1, "news", "to myself");
    msg(b, MSG2, "news", "again");
    ok(vg_frame_put_ping(b));
    ok(vg_frame_put_unsub(b, 1));
    ok(vg_frame_put_pong(b));
    msg(b, MSG1, "news", "after unsub");
    seed("session", b, true);
    connect_frame(b);
    sub(b, 1, "a.b.c");
    msg(b, MSG1, "a.b.c", "x");
    ok(vg_frame_put_ping(b));
    seed("session_with_connect", b, false);

    for (int i = 1; i <= 300; i++) {
        char t[32];
        snprintf(t, sizeof t, "flood.%d", i);
        sub(b, (uint64_t)i, t);
    }
    seed("sub_flood", b, true);
    sub(b, 1, "news");
    msg_of(b, MSG2, 4000, 'p');
    seed("msg_4000", b, true);
}

static void rule_breakers(vg_buf *b)
{
    static const char *const bad[] = {"a..b",      ".a",     "a.",          "news.*",
                                      "news.>",    "has space", "ctl\x01", "caf\xc3\xa9",
                                      "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        sub(b, i + 1, bad[i]);
    char longest[301];
    memset(longest, 't', 300);
    longest[300] = 0;
    sub(b, 99, longest);
    sub(b, 100, "fine");
    seed("sub_bad_topics", b, true);
    ok(vg_frame_put_sub(b, 1, "", 0));
    seed("sub_empty_topic", b, true);
    msg(b, MSG1, "a..b", "x");
    seed("msg_bad_topic", b, true);
    msg(b, MSG1, longest, "x");
    seed("msg_long_topic", b, true);
    sub(b, 1, "$SYS.stats");
    msg(b, MSG1, "$SYS.stats", "{}");
    seed("sys_topics", b, true);

    ok(vg_frame_put_info(b, 1, "vigil", 7, 1024));
    ok(vg_frame_put_ok(b, 1));
    ok(vg_frame_put_err(b, 4, "nope", 1));
    seed("server_frames", b, true);
    ok(vg_frame_put_err(b, 9, "bye", 0));
    seed("err_before_connect", b, false);
}

/* Hand-written bodies: shapes and claims no encoder makes. */
static const struct {
    const char *name;
    bool connect_first;
    uint8_t len;
    uint8_t bytes[16];
} bodies[] = {
    {"unknown_type", true, 2, {0x91, 0x63}},                               /* [99] */
    {"count_bomb", true, 5, {0xdd, 0xff, 0x00, 0x00, 0x00}},               /* issue #1013 */
    {"count_bomb_before_connect", false, 5, {0xdd, 0xff, 0x00, 0x00, 0x00}},
    {"array16_claim", true, 4, {0xdc, 0xff, 0xff, 0x01}},
    {"map32_claim", true, 5, {0xdf, 0xff, 0xff, 0xff, 0xff}},
    {"bin32_claim", true, 9, {0x93, 0x0b, 0xa1, 0x74, 0xc6, 0xff, 0xff, 0xff, 0xff}},
    {"str32_claim", true, 8, {0x93, 0x07, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xf0}},
    {"trailing_bytes", true, 3, {0x91, 0x01, 0x00}},
    {"ping_with_extra", true, 3, {0x92, 0x01, 0x02}},
    {"sub_without_topic", true, 3, {0x92, 0x07, 0x01}},
    {"sid_uint64", true, 13, {0x93, 0x07, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1, 0xa1, 0x74}},
    {"sid_int8", true, 6, {0x93, 0x07, 0xd0, 0x02, 0xa1, 0x74}},
    {"sid_negative", true, 6, {0x93, 0x07, 0xd0, 0xff, 0xa1, 0x74}},
    {"msg_str_payload", true, 7, {0x93, 0x0b, 0xa1, 0x74, 0xa2, 0x68, 0x69}},
    {"connect_nil_name", false, 5, {0x94, 0x03, 0x01, 0xc0, 0xc0}},
    {"connect_int_token", false, 6, {0x94, 0x03, 0x01, 0xa1, 0x73, 0x05}},
    {"empty_array", true, 1, {0x90}},
    {"float_type", true, 6, {0x91, 0xca, 0x3f, 0x80, 0x00, 0x00}},
    {"not_an_array", true, 5, {0xa4, 0x50, 0x49, 0x4e, 0x47}},
};

static void hostile_bytes(vg_buf *b)
{
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        body(b, bodies[i].bytes, bodies[i].len);
        seed(bodies[i].name, b, bodies[i].connect_first);
    }

    static const uint8_t oversize[] = {0x00, 0xff, 0xff, 0xff, 0x91, 0x01};
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    static const uint8_t empty[] = {0x00, 0x00, 0x00, 0x00};
    static const uint8_t half_header[] = {0x00, 0x00};
    raw(b, oversize, sizeof oversize);
    seed("oversize_length", b, true);
    raw(b, oversize, sizeof oversize);
    seed("oversize_before_connect", b, false);
    raw(b, huge, sizeof huge);
    seed("length_4g", b, true);
    raw(b, empty, sizeof empty);
    seed("empty_frame", b, true);
    ok(vg_frame_put_ping(b));
    raw(b, half_header, sizeof half_header);
    seed("truncated_header", b, true);
    msg(b, MSG1, "news", "cut short");
    b->len -= 3;
    seed("truncated_msg", b, true);
    connect_frame(b);
    b->len -= 2;
    seed("truncated_connect", b, false);

    uint8_t deep[201]; /* 200 nested one-element arrays around a PING type */
    memset(deep, 0x91, 200);
    deep[200] = 0x01;
    body(b, deep, sizeof deep);
    seed("deep_nesting", b, true);

    size_t n = 4000; /* a body of 4097 bytes: one over the handshake's limit */
    while (vg_frame_msg_size(4, n) - VG_FRAME_HEADER < 4097)
        n++;
    msg_of(b, MSG1, n, 'q');
    seed("msg_4097_body", b, true);
    msg_of(b, MSG1, n, 'q');
    seed("msg_4097_body_before_connect", b, false);

    garbage(b, 64);
    seed("garbage_64", b, true);
    garbage(b, 64);
    seed("garbage_before_connect", b, false);
    garbage(b, 512);
    seed("garbage_512", b, true);
}

/* The version-2 shapes, from a client: a CONNECT of a later version is
 * answered INFO version 1, the rest refused on a version-1 connection;
 * and the malformed variants of each. */
static void version2_frames(vg_buf *b)
{
    ok(vg_frame_put_connect2(b, 2, "seed", NULL, 0x1234567890abcdefull, 1));
    seed("connect2", b, false);
    ok(vg_frame_put_connect2(b, 2, "seed", "secret", 0, 5000));
    sub(b, 1, "news");
    msg(b, MSG1, "news", "on a negotiated version-1 connection");
    ok(vg_frame_put_ping(b));
    seed("connect2_session", b, false);
    ok(vg_frame_put_connect2(b, 7, "seed", NULL, 1, 1));
    seed("connect2_version7", b, false);
    ok(vg_frame_put_connect2(b, 1, "seed", NULL, 1, 1));
    seed("connect2_version1", b, false);
    ok(vg_frame_put_connect2(b, 2, "seed", NULL, 1, 1));
    ok(vg_frame_put_connect2(b, 2, "seed", NULL, 1, 1));
    seed("connect2_twice", b, false);

    ok(vg_frame_put_sub2(b, 1, "news", 4, VG_SUB_NEW, 0, 0));
    seed("sub2_new", b, true);
    ok(vg_frame_put_sub2(b, 1, "news", 4, VG_SUB_FIRST, 0, 0));
    seed("sub2_first", b, true);
    ok(vg_frame_put_sub2(b, 1, "news", 4, VG_SUB_SEQ, 0x77, 1000));
    seed("sub2_seq", b, true);
    ok(vg_frame_put_sub2(b, 1, "news", 4, VG_SUB_AGO, 0, 60000));
    seed("sub2_ago", b, true);
    ok(vg_frame_put_sub2(b, 1, "news", 4, VG_SUB_SEQ, 0, 1));
    seed("sub2_before_connect", b, false);
    sub(b, 1, "news");
    msg(b, MSG1, "news", "before the version-2 SUB");
    ok(vg_frame_put_sub2(b, 2, "news", 4, VG_SUB_FIRST, 0, 0));
    msg(b, MSG1, "news", "after it");
    seed("sub2_after_sub", b, true);
    ok(vg_frame_put_msg_seq(b, MSG1, "news", 4, "with a seq", 10, 1));
    seed("msg_seq", b, true);

    /* On a negotiated version-2 connection. */
    msg(b, MSG1, "news", "one");
    msg(b, MSG2, "news", "two");
    ok(vg_frame_put_sub2(b, 1, "news", 4, VG_SUB_FIRST, 0, 0));
    sub(b, 2, "news");
    ok(vg_frame_put_sub2(b, 3, "other", 5, VG_SUB_AGO, 0, 1000));
    msg(b, MSG1, "news", "three");
    ok(vg_frame_put_unsub(b, 1));
    ok(vg_frame_put_ping(b));
    seed_v2("v2_session", b, false);
    ok(vg_frame_put_sub2(b, 1, "news", 4, VG_SUB_SEQ, 0, 1000000));
    ok(vg_frame_put_sub2(b, 2, "news", 4, VG_SUB_SEQ, 0x77, 3));
    ok(vg_frame_put_sub2(b, 3, "news", 4, VG_SUB_SEQ, 0, 1));
    ok(vg_frame_put_ping(b));
    seed_v2("v2_positions", b, false);
    ok(vg_frame_put_sub2(b, 1, "flood", 5, VG_SUB_FIRST, 0, 0));
    for (int i = 0; i < 64; i++)
        msg(b, MSG2, "flood", "a message the dedupe of a publisher sees once");
    ok(vg_frame_put_ping(b));
    seed_v2("v2_publisher", b, true);
    ok(vg_frame_put_msg_seq(b, MSG1, "news", 4, "a seq from a client", 19, 1));
    seed_v2("v2_msg_seq", b, false);
    ok(vg_frame_put_gap(b, 1, "news", 4, 1, 2, VG_GAP_RETENTION));
    seed_v2("v2_gap_from_client", b, false);
    msg(b, MSG2, "news", "a run");
    msg(b, MSG2, "news", "of two");
    ok(vg_frame_put_msg_seq(b, MSG2, "news", 4, "then a seq", 10, UINT64_MAX));
    seed("msg_seq_after_run", b, true);
    ok(vg_frame_put_ok2(b, 1, 7, 1));
    seed("ok2_from_client", b, true);
    ok(vg_frame_put_gap(b, 1, "news", 4, 1, 10, VG_GAP_RETENTION));
    seed("gap_from_client", b, true);
    ok(vg_frame_put_gap(b, 1, "news", 4, 5, 0, VG_GAP_EPOCH));
    seed("gap_epoch_from_client", b, true);
    ok(vg_frame_put_info2(b, 2, "vigil", 7, 1024, 9, 0));
    seed("info2_from_client", b, true);
}

/* Hand-written version-2 bodies: the shapes' rules broken, later versions' fields. */
static const struct {
    const char *name;
    bool connect_first;
    uint8_t len;
    uint8_t bytes[40];
} v2_bodies[] = {
    /* [3, 3, "seed", nil, 1, 1, nil, true, -1, 1.5f32, "x", bin "y"] */
    {"connect3_scalars", false, 24, {0x9c, 0x03, 0x03, 0xa4, 's', 'e', 'e', 'd', 0xc0, 0x01,
                                     0x01, 0xc0, 0xc3, 0xff, 0xca, 0x3f, 0xc0, 0x00, 0x00, 0xa1,
                                     'x', 0xc4, 0x01, 'y'}},
    {"connect3_nested", false, 12, {0x97, 0x03, 0x03, 0xa4, 's', 'e', 'e', 'd', 0xc0, 0x01,
                                    0x01, 0x90}},
    {"connect3_map", false, 13, {0x97, 0x03, 0x03, 0xa4, 's', 'e', 'e', 'd', 0xc0, 0x01, 0x01,
                                 0x81, 0xc0}},
    {"connect3_str_overrun", false, 14, {0x97, 0x03, 0x03, 0xa4, 's', 'e', 'e', 'd', 0xc0, 0x01,
                                         0x01, 0xd9, 0xff, 'x'}},
    {"connect3_ext", false, 14, {0x97, 0x03, 0x03, 0xa4, 's', 'e', 'e', 'd', 0xc0, 0x01, 0x01,
                                 0xd4, 0x01, 0x02}},
    {"connect3_four", false, 9, {0x94, 0x03, 0x03, 0xa4, 's', 'e', 'e', 'd', 0xc0}},
    {"connect2_seven", false, 12, {0x97, 0x03, 0x02, 0xa4, 's', 'e', 'e', 'd', 0xc0, 0x01,
                                   0x01, 0xc0}},
    {"connect_five", false, 10, {0x95, 0x03, 0x02, 0xa4, 's', 'e', 'e', 'd', 0xc0, 0x01}},
    {"sub2_start4", true, 11, {0x96, 0x07, 0x01, 0xa4, 'n', 'e', 'w', 's', 0x04, 0x00, 0x00}},
    {"sub2_new_position", true, 11, {0x96, 0x07, 0x01, 0xa4, 'n', 'e', 'w', 's', 0x00, 0x00,
                                     0x05}},
    {"sub2_first_epoch", true, 11, {0x96, 0x07, 0x01, 0xa4, 'n', 'e', 'w', 's', 0x01, 0x09,
                                    0x00}},
    {"sub_five", true, 10, {0x95, 0x07, 0x01, 0xa4, 'n', 'e', 'w', 's', 0x02, 0x00}},
    {"msg_seq0", true, 11, {0x94, 0x0b, 0xa4, 'n', 'e', 'w', 's', 0xc4, 0x01, 'x', 0x00}},
    {"msg_seq_fixint", true, 11, {0x94, 0x15, 0xa4, 'n', 'e', 'w', 's', 0xc4, 0x01, 'x', 0x05}},
    {"gap_sid0", true, 11, {0x96, 0x09, 0x00, 0xa4, 'n', 'e', 'w', 's', 0x01, 0x01, 0x01}},
    {"gap_reversed", true, 11, {0x96, 0x09, 0x01, 0xa4, 'n', 'e', 'w', 's', 0x05, 0x04, 0x01}},
    {"gap_epoch_end", true, 11, {0x96, 0x09, 0x01, 0xa4, 'n', 'e', 'w', 's', 0x05, 0x06, 0x02}},
    {"gap_reason3", true, 11, {0x96, 0x09, 0x01, 0xa4, 'n', 'e', 'w', 's', 0x01, 0x01, 0x03}},
    {"gap_one", true, 2, {0x91, 0x09}},
    {"ok_three", true, 4, {0x93, 0x05, 0x01, 0x01}},
};

static void version2_bodies(vg_buf *b)
{
    for (size_t i = 0; i < sizeof v2_bodies / sizeof *v2_bodies; i++) {
        body(b, v2_bodies[i].bytes, v2_bodies[i].len);
        seed(v2_bodies[i].name, b, v2_bodies[i].connect_first);
    }
}

#define DURABLES "$SYS.durables"

/* Durable subscribers (issue 11): the seven-element SUB, UNSUB with delete,
 * ACK, and the names and values the codec refuses. */
static void durable_frames(vg_buf *b)
{
    ok(vg_frame_put_sub_durable(b, 1, "orders", 6, VG_SUB_FIRST, 0, 0, "billing", 7));
    seed("sub_durable", b, true);
    ok(vg_frame_put_sub_durable(b, 1, "orders", 6, VG_SUB_SEQ, 0x77, 5, "billing", 7));
    ok(vg_frame_put_sub_durable(b, 2, "audit", 5, VG_SUB_NEW, 0, 0, "billing", 7));
    ok(vg_frame_put_ack(b, 1, 5));
    ok(vg_frame_put_ack(b, 2, 1));
    ok(vg_frame_put_ack(b, 1, 3)); /* below the last: the broker keeps the highest */
    ok(vg_frame_put_ack(b, 9, 1)); /* an unknown sid */
    ok(vg_frame_put_unsub(b, 2));
    ok(vg_frame_put_unsub_delete(b, 1));
    seed("durable_session", b, true);
    ok(vg_frame_put_sub2(b, 1, "news", 4, VG_SUB_NEW, 0, 0));
    ok(vg_frame_put_ack(b, 1, 1)); /* a sid that is not durable: ignored */
    ok(vg_frame_put_unsub_delete(b, 1));
    seed("ack_not_durable", b, true);
    ok(vg_frame_put_ack(b, 1, 1));
    seed("ack_before_connect", b, false);
    ok(vg_frame_put_sub_durable(b, 1, "orders", 6, VG_SUB_NEW, 0, 0, "twice", 5));
    ok(vg_frame_put_sub_durable(b, 2, "orders", 6, VG_SUB_NEW, 0, 0, "twice", 5));
    seed("sub_durable_twice", b, true);
    /* The same on a version-2 connection, where the broker takes them. */
    ok(vg_frame_put_sub_durable(b, 1, "orders", 6, VG_SUB_FIRST, 0, 0, "billing", 7));
    ok(vg_frame_put_sub2(b, 2, "orders", 6, VG_SUB_NEW, 0, 0));
    ok(vg_frame_put_ack(b, 1, 1));
    ok(vg_frame_put_ack(b, 2, 1));
    ok(vg_frame_put_unsub(b, 1));
    ok(vg_frame_put_sub_durable(b, 3, "orders", 6, VG_SUB_NEW, 0, 0, "billing", 7));
    ok(vg_frame_put_unsub_delete(b, 3));
    ok(vg_frame_put_sub(b, 4, DURABLES, strlen(DURABLES)));
    ok(vg_frame_put_ping(b));
    seed_v2("durable_session_v2", b, false);

    static const struct {
        const char *name;
        uint8_t len;
        uint8_t bytes[24];
    } bodies[] = {
        {"sub_durable_empty_name", 10, {0x97, 0x07, 0x01, 0xa1, 't', 0x00, 0x00, 0x00, 0xa0}},
        {"sub_durable_space", 12, {0x97, 0x07, 0x01, 0xa1, 't', 0x00, 0x00, 0x00, 0xa2, 'a', ' '}},
        {"sub_durable_nil_name", 9, {0x97, 0x07, 0x01, 0xa1, 't', 0x00, 0x00, 0x00, 0xc0}},
        {"sub_durable_bin_name", 11, {0x97, 0x07, 0x01, 0xa1, 't', 0x00, 0x00, 0x00, 0xc4, 0x01,
                                      'a'}},
        {"sub_durable_bad_start", 10, {0x97, 0x07, 0x01, 0xa1, 't', 0x07, 0x00, 0x00, 0xa1, 'd'}},
        {"sub_eight", 11, {0x98, 0x07, 0x01, 0xa1, 't', 0x00, 0x00, 0x00, 0xa1, 'd', 0xc0}},
        {"unsub_delete_two", 4, {0x93, 0x08, 0x01, 0x02}},
        {"unsub_delete_zero", 4, {0x93, 0x08, 0x01, 0x00}},
        {"unsub_four", 5, {0x94, 0x08, 0x01, 0x01, 0x01}},
        {"ack_sid0", 4, {0x93, 0x0a, 0x00, 0x01}},
        {"ack_seq0", 4, {0x93, 0x0a, 0x01, 0x00}},
        {"ack_two", 3, {0x92, 0x0a, 0x01}},
        {"ack_uint64", 20, {0x93, 0x0a, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                            0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        body(b, bodies[i].bytes, bodies[i].len);
        seed(bodies[i].name, b, true);
    }
    char name[66];
    memset(name, 'n', sizeof name);
    ok(vg_frame_put_sub_durable(b, 1, "t", 1, VG_SUB_NEW, 0, 0, name, 64));
    seed("sub_durable_name64", b, true);
    ok(vg_frame_put_sub_durable(b, 1, "t", 1, VG_SUB_NEW, 0, 0, name, 65));
    seed("sub_durable_name65", b, true);
}

/* Wildcards (issue 12): patterns on both versions, POS before a resuming
 * pattern SUB, durable patterns with the ACK that names its topic, queue
 * SUBs, and the shapes the codec refuses. */
static void pattern_frames(vg_buf *b)
{
    sub(b, 1, "orders.*");
    sub(b, 2, "orders.>");
    sub(b, 3, "orders.eu");
    sub(b, 4, "orders.e*"); /* refused: not a whole token */
    sub(b, 5, ">.x");       /* refused: '>' not last */
    msg(b, VG_FRAME_MSG_TYPE1, "orders.eu", "once");
    ok(vg_frame_put_unsub(b, 2));
    msg(b, VG_FRAME_MSG_TYPE1, "orders.*", "refused: a pattern"); /* fatal */
    seed("patterns_v1", b, true);
    ok(vg_frame_put_sub2(b, 1, "jobs.>", 6, VG_SUB_NEW, 0, 0));
    msg(b, VG_FRAME_MSG_TYPE1, "jobs.a", "x");
    msg(b, VG_FRAME_MSG_TYPE1, "jobs.b.c", "y");
    ok(vg_frame_put_pos(b, 2, "jobs.a", 6, 0, 1));
    ok(vg_frame_put_pos(b, 2, "jobs.zz", 7, 0x77, 9));
    ok(vg_frame_put_pos(b, 2, "bad..topic", 10, 0, 1));
    ok(vg_frame_put_sub2(b, 2, "jobs.*", 6, VG_SUB_SEQ, 0, 0));
    ok(vg_frame_put_sub_durable(b, 3, "jobs.>", 6, VG_SUB_FIRST, 0, 0, "pat", 3));
    ok(vg_frame_put_ack_topic(b, 3, 1, "jobs.a", 6));
    ok(vg_frame_put_ack_topic(b, 3, 5, "other", 5));
    ok(vg_frame_put_ack(b, 3, 1));
    ok(vg_frame_put_unsub_delete(b, 3));
    ok(vg_frame_put_sub_queue(b, 4, "jobs", 4, VG_SUB_NEW, 0, 0, NULL, 0, "workers", 7));
    ok(vg_frame_put_unsub(b, 1));
    ok(vg_frame_put_ping(b));
    seed_v2("patterns_v2", b, false);
    static const struct {
        const char *name;
        uint8_t len;
        uint8_t bytes[24];
    } bodies[] = {
        {"pos_sid0", 8, {0x95, 0x0c, 0x00, 0xa1, 't', 0x00, 0x01}},
        {"pos_next0", 8, {0x95, 0x0c, 0x01, 0xa1, 't', 0x00, 0x00}},
        {"pos_four", 6, {0x94, 0x0c, 0x01, 0xa1, 't', 0x00}},
        {"ack_topic_int", 5, {0x94, 0x0a, 0x01, 0x01, 0x01}},
        {"sub_queue_empty", 11, {0x98, 0x07, 0x01, 0xa1, 't', 0x00, 0x00, 0x00, 0xa0, 0xa0}},
        {"msg_sid0", 9, {0x95, 0x0b, 0xa1, 't', 0xc4, 0x00, 0x01, 0x00}},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        body(b, bodies[i].bytes, bodies[i].len);
        seed(bodies[i].name, b, true);
    }
}

/* ---- fuzz_client: what a broker sends ---- */

/* fuzz_client.c's first two bytes. */
enum {
    C_INFO = 0x01,        /* the harness sends a valid INFO first */
    C_TWO_SUBS = 0x08,    /* sid 2 on "a.b" ... */
    C_SAME_TOPIC = 0x10,  /* ... or on "news" too */
    C_PUBLISH = 0x20,     /* one message on "news" before the handshake */
    C_UNSUB_EARLY = 0x40, /* sid 1 unsubscribed before the handshake */
};
enum {
    C_MP_1MIB = 0, C_MP_64 = 1, C_MP_0 = 2, C_MP_1GIB = 3, /* the INFO's max_payload */
    C_CB_UNSUB = 0x04, /* on_msg unsubscribes sid 1 at its first "news" message */
    C_CB_ECHO = 0x08,  /* on_msg publishes each message back */
    C_NO_WAIT = 0x10,  /* the input follows INFO at once */
    C_DURABLE = 0x20,  /* sid 1 is a durable subscription */
};

#define C_EPOCH 0x3c6ef372fe94f82bull /* fuzz_client.c's HARNESS_EPOCH */

/* What a version-2 broker delivers: each topic numbered from 1, per seed. */
static struct {
    char topic[64];
    uint64_t last;
} c_topics[16];
static int c_ntopics;

static uint64_t next_seq(const char *topic)
{
    for (int i = 0; i < c_ntopics; i++)
        if (strcmp(c_topics[i].topic, topic) == 0)
            return ++c_topics[i].last;
    if (c_ntopics == 16)
        return 1;
    snprintf(c_topics[c_ntopics].topic, sizeof c_topics[0].topic, "%s", topic);
    c_topics[c_ntopics].last = 1;
    return c_topics[c_ntopics++].last;
}

static void client_seed(const char *name, uint8_t session, uint8_t options, vg_buf *b)
{
    uint8_t head[2] = {session, options};
    write_file("client", name, head, 2, b);
    seeds++;
    b->len = 0;
    c_ntopics = 0;
}

static void bmsg(vg_buf *b, vg_frame_type t, const char *topic, const char *payload)
{
    ok(vg_frame_put_msg_seq(b, t, topic, strlen(topic), payload, strlen(payload),
                            next_seq(topic)));
}

static void bmsg_of(vg_buf *b, vg_frame_type t, size_t n, char c)
{
    char *p = malloc(n);
    if (p == NULL)
        exit(1);
    memset(p, c, n);
    ok(vg_frame_put_msg_seq(b, t, "news", 4, p, n, next_seq("news")));
    free(p);
}

/* A queue group's delivery, [type, topic, payload, seq, sid]. */
static void msg_q(vg_buf *b, const char *topic, const char *payload, uint64_t seq, uint64_t sid)
{
    size_t tl = strlen(topic), pl = strlen(payload), n = vg_frame_msg_qsize(tl, pl);
    ok(vg_buf_reserve(b, n));
    vg_frame_write_msg_q(b->data + b->len, MSG1, topic, tl, payload, pl, seq, sid);
    b->len += n;
}

/* The answer to a SUB, from the next message on (as a broker's OK v2). */
static void ok_frame(vg_buf *b, uint64_t sid) { ok(vg_frame_put_ok2(b, sid, C_EPOCH, 1)); }

static void err_frame(vg_buf *b, uint64_t code, const char *reason, uint64_t sid)
{
    ok(vg_frame_put_err(b, code, reason, sid));
}

static void info_frame(vg_buf *b, uint64_t max_payload)
{
    ok(vg_frame_put_info2(b, 2, "vigil 0.2.0", 7, max_payload, C_EPOCH, 0));
}

static void broker_sessions(vg_buf *b)
{
    /* the session of docs/protocol.md, then more of everything */
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "hello");
    ok(vg_frame_put_ping(b));
    client_seed("session", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    ok_frame(b, 2);
    bmsg(b, MSG1, "news", "one");
    bmsg(b, MSG2, "a.b", "two");
    ok(vg_frame_put_ping(b));
    ok(vg_frame_put_pong(b));
    bmsg(b, MSG1, "other", "not subscribed");
    ok(vg_frame_put_ok(b, 1)); /* the UNSUB's answer */
    bmsg(b, MSG1, "news", "after the unsub");
    client_seed("session_two_subs_publish_unsub", C_INFO | C_TWO_SUBS | C_PUBLISH | C_UNSUB_EARLY,
                C_MP_1MIB, b);
    info_frame(b, 1024 * 1024);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "hello");
    client_seed("session_info_in_input", 0, 0, b);
    ok_frame(b, 1);
    ok_frame(b, 2);
    bmsg(b, MSG1, "news", "to both sids, once");
    client_seed("same_topic_two_sids", C_INFO | C_TWO_SUBS | C_SAME_TOPIC, C_MP_1MIB, b);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "first");
    bmsg(b, MSG2, "news", "after the unsubscribe in on_msg");
    ok_frame(b, 1);
    client_seed("unsub_in_callback", C_INFO, C_CB_UNSUB, b);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "echo me");
    bmsg_of(b, MSG2, 3000, 'e'); /* over the 64-byte limit, and most of the client's buffer */
    bmsg_of(b, MSG1, 3000, 'f');
    ok(vg_frame_put_pong(b));
    client_seed("echo_in_callback", C_INFO | C_PUBLISH, C_CB_ECHO, b);
    ok_frame(b, 1);
    bmsg_of(b, MSG1, 100, 'l');
    client_seed("echo_above_max_payload", C_INFO, C_CB_ECHO | C_MP_64, b);
    ok_frame(b, 1);
    ok_frame(b, 2);
    bmsg(b, MSG1, "news", "before the SUB was written");
    client_seed("no_wait", C_INFO | C_TWO_SUBS, C_NO_WAIT, b);
    ok(vg_frame_put_pong(b));
    client_seed("pong_confirms_publish", C_INFO | C_PUBLISH, C_MP_1MIB, b);
}

static void broker_frames(vg_buf *b)
{
    info_frame(b, 1024 * 1024);
    client_seed("info", 0, 0, b);
    info_frame(b, 1u << 30); /* the review's 1 GiB: capped at the client's 64 MiB */
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "x");
    client_seed("info_max_payload_1gib", 0, 0, b);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "x");
    client_seed("harness_info_1gib", C_INFO, C_MP_1GIB, b);
    info_frame(b, UINT64_MAX);
    client_seed("info_max_payload_uint64", 0, 0, b);
    info_frame(b, 0);
    bmsg(b, MSG1, "news", "a payload above max_payload 0, in a frame within its limit");
    client_seed("info_max_payload_0", 0, 0, b);
    ok(vg_frame_put_info(b, 0, "old", 1, 1024));
    client_seed("info_version0", 0, 0, b);
    ok(vg_frame_put_info(b, 9, "new", 1, 1024));
    client_seed("info_version9", 0, 0, b);
    info_frame(b, 1024);
    client_seed("info_twice", C_INFO, C_MP_1MIB, b);

    ok_frame(b, 1);
    client_seed("ok", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 99);
    client_seed("ok_unknown_sid", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 0);
    client_seed("ok_sid0", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    ok_frame(b, 1);
    ok_frame(b, 1);
    client_seed("ok_thrice", C_INFO, C_MP_1MIB, b);
    err_frame(b, 4, "bad topic", 1);
    bmsg(b, MSG1, "news", "after the refusal");
    client_seed("err_refuses_sub", C_INFO, C_MP_1MIB, b);
    err_frame(b, 10, "duplicate sid", 2);
    err_frame(b, 8, "too many subscriptions", 1);
    bmsg(b, MSG1, "news", "refused");
    bmsg(b, MSG1, "a.b", "still wanted");
    client_seed("err_refuses_both", C_INFO | C_TWO_SUBS | C_SAME_TOPIC, C_MP_1MIB, b);
    err_frame(b, 11, "no such sid", 99);
    client_seed("err_unknown_sid", C_INFO, C_MP_1MIB, b);
    err_frame(b, 11, "no such sid", 1);
    client_seed("err_before_info", 0, 0, b);
    err_frame(b, 7, "authentication failed", 0);
    client_seed("err_auth", 0, 0, b);
    err_frame(b, 6, "version", 0);
    client_seed("err_version", 0, 0, b);
    err_frame(b, 15, "permission", 0);
    client_seed("err_permission_fatal", C_INFO, C_MP_1MIB, b);
    err_frame(b, 9, "shutdown", 0);
    client_seed("err_shutdown", C_INFO, C_MP_1MIB, b);
    err_frame(b, 8, "too many connections", 0);
    client_seed("err_limit_fatal", 0, 0, b);
    err_frame(b, 99, "a code this version does not know", 1);
    client_seed("err_unknown_code", C_INFO, C_MP_1MIB, b);
    err_frame(b, 4, "reason \x1b]0;owned\x07 with\nnewline and \xff bytes", 1);
    client_seed("err_hostile_reason", C_INFO, C_MP_1MIB, b);

    bmsg(b, MSG1, "news", "before INFO");
    client_seed("msg_before_info", 0, 0, b);
    ok_frame(b, 1);
    bmsg(b, MSG1, "a.b", "not subscribed");
    bmsg(b, MSG2, "news", "subscribed");
    client_seed("msg_unsubscribed_topic", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news\x1b[2J\r\n", "hostile topic");
    bmsg(b, MSG1, "news", "hostile payload \x1b[31m\r\nforged line\x7f");
    bmsg(b, MSG1, "", "empty topic");
    client_seed("msg_hostile_topic", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "");
    client_seed("msg_empty_payload", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    body(b, (const uint8_t[]){0x93, 0x0b, 0xa4, 'n', 'e', 'w', 's', 0xa2, 'h', 'i'}, 10);
    client_seed("msg_str_payload", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    bmsg_of(b, MSG1, 100, 'p');
    client_seed("msg_above_max_payload_64", C_INFO, C_MP_64, b);

    for (int i = 0; i < 600; i++)
        ok(vg_frame_put_ping(b));
    client_seed("ping_flood", C_INFO, C_MP_1MIB, b);
    for (int i = 0; i < 100; i++)
        ok(vg_frame_put_ping(b));
    client_seed("ping_flood_before_info", 0, 0, b);
    for (int i = 0; i < 100; i++)
        ok(vg_frame_put_pong(b));
    client_seed("pong_flood", C_INFO | C_PUBLISH, C_MP_1MIB, b);
    ok(vg_frame_put_pong(b));
    client_seed("pong_before_info", 0, 0, b);

    connect_frame(b);
    client_seed("connect_from_broker", C_INFO, C_MP_1MIB, b);
    sub(b, 1, "news");
    client_seed("sub_from_broker", C_INFO, C_MP_1MIB, b);
    ok(vg_frame_put_unsub(b, 1));
    client_seed("unsub_from_broker", C_INFO, C_MP_1MIB, b);

    /* version 2: what a broker says about the logs */
    ok(vg_frame_put_info(b, 1, "vigil 0.1.0", 7, 1024 * 1024));
    client_seed("info_version1", 0, 0, b);
    ok(vg_frame_put_info2(b, 2, "vigil 0.2.0", 7, 1024 * 1024, 0, 0));
    client_seed("info_epoch0", 0, 0, b);
    ok_frame(b, 1);
    body(b, (const uint8_t[]){0x94, 0x0b, 0xa4, 'n', 'e', 'w', 's', 0xa2, 'h', 'i', 0x01}, 11);
    client_seed("msg_str_payload_seq", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    msg(b, MSG1, "news", "no seq");
    client_seed("msg_without_seq", C_INFO, C_MP_1MIB, b);
    ok(vg_frame_put_ok2(b, 1, C_EPOCH, 5));
    ok(vg_frame_put_msg_seq(b, MSG1, "news", 4, "5", 1, 5));
    ok(vg_frame_put_msg_seq(b, MSG1, "news", 4, "4 again", 7, 4));
    ok(vg_frame_put_msg_seq(b, MSG1, "news", 4, "5 again", 7, 5));
    ok(vg_frame_put_gap(b, 1, "news", 4, 6, 9, VG_GAP_RETENTION));
    ok(vg_frame_put_gap(b, 1, "news", 4, 7, 8, VG_GAP_RETENTION));
    ok(vg_frame_put_msg_seq(b, MSG1, "news", 4, "10", 2, 10));
    ok(vg_frame_put_msg_seq(b, MSG2, "news", 4, "20: 11..19 unannounced", 22, 20));
    ok(vg_frame_put_gap(b, 1, "news", 4, 21, 0, VG_GAP_EPOCH));
    ok(vg_frame_put_gap(b, 2, "a.b", 3, 1, 3, VG_GAP_RETENTION));
    ok(vg_frame_put_gap(b, 9, "other", 5, 1, 3, VG_GAP_RETENTION));
    client_seed("duplicates_and_gaps", C_INFO | C_TWO_SUBS, C_MP_1MIB, b);
    ok(vg_frame_put_ok2(b, 1, C_EPOCH, 3));
    ok(vg_frame_put_ok2(b, 2, C_EPOCH, 9)); /* the shared cursor: no gap */
    ok(vg_frame_put_msg_seq(b, MSG1, "news", 4, "3", 1, 3));
    client_seed("two_sids_one_position", C_INFO | C_TWO_SUBS | C_SAME_TOPIC, C_MP_1MIB, b);
    ok(vg_frame_put_info2(b, 2, "vigil 0.2.0", 7, 1024 * 1024, 77, 0));
    ok(vg_frame_put_ok2(b, 1, 77, 1));
    ok(vg_frame_put_gap(b, 1, "news", 4, 1, 0, VG_GAP_EPOCH));
    ok(vg_frame_put_msg_seq(b, MSG1, "news", 4, "1", 1, 1));
    client_seed("info_in_input_then_gaps", 0, 0, b);
}

static void broker_hostile_bytes(vg_buf *b)
{
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        char name[64];
        body(b, bodies[i].bytes, bodies[i].len);
        snprintf(name, sizeof name, "hostile_%s", bodies[i].name);
        client_seed(name, C_INFO, C_MP_1MIB, b);
    }
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    static const uint8_t empty[] = {0x00, 0x00, 0x00, 0x00};
    static const uint8_t over_1mib[] = {0x00, 0x10, 0x04, 0x19}; /* 1 MiB + 1049 */
    static const uint8_t over_4k[] = {0x00, 0x00, 0x10, 0x01};   /* 4097 */
    static const uint8_t at_64mib[] = {0x04, 0x00, 0x04, 0x18};  /* 64 MiB + 1048 */
    static const uint8_t over_64mib[] = {0x40, 0x00, 0x04, 0x18}; /* 1 GiB + 1048 */
    raw(b, huge, sizeof huge);
    client_seed("length_4g", C_INFO, C_MP_1MIB, b);
    raw(b, empty, sizeof empty);
    client_seed("length_0", C_INFO, C_MP_1MIB, b);
    raw(b, over_1mib, sizeof over_1mib);
    client_seed("length_over_max_payload", C_INFO, C_MP_1MIB, b);
    raw(b, over_4k, sizeof over_4k);
    client_seed("length_over_handshake_limit", 0, 0, b);
    raw(b, at_64mib, sizeof at_64mib); /* accepted, never completed: the client's largest buffer */
    client_seed("length_64mib_after_1gib_info", C_INFO, C_MP_1GIB, b);
    raw(b, over_64mib, sizeof over_64mib); /* refused: reserving it would break the cap */
    client_seed("length_1gib_after_1gib_info", C_INFO, C_MP_1GIB, b);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "cut short");
    b->len -= 3;
    client_seed("truncated_msg", C_INFO, C_MP_1MIB, b);
    garbage(b, 64);
    client_seed("garbage_64", C_INFO, C_MP_1MIB, b);
    garbage(b, 64);
    client_seed("garbage_before_info", 0, 0, b);
}

/* Version-2 frames from a broker that agreed to version 1 (all end the
 * connection), INFOs of later versions (the client lacks them), and the
 * malformed variants. */
static void broker_v2_frames(vg_buf *b)
{
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "before");
    ok(vg_frame_put_msg_seq(b, MSG1, "news", 4, "with a seq", 10, 1));
    bmsg(b, MSG1, "news", "after");
    client_seed("msg_seq", C_INFO, C_MP_1MIB, b);
    ok(vg_frame_put_msg_seq(b, MSG2, "news", 4, "before the OK", 13, 3));
    client_seed("msg_seq_before_ok", C_INFO, C_MP_1MIB, b);
    ok(vg_frame_put_ok2(b, 1, 0x77, 1));
    bmsg(b, MSG1, "news", "after");
    client_seed("ok2", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    ok(vg_frame_put_ok2(b, 2, 0x77, 5));
    client_seed("ok2_second_sid", C_INFO | C_TWO_SUBS, C_MP_1MIB, b);
    ok_frame(b, 1);
    ok(vg_frame_put_gap(b, 1, "news", 4, 1, 10, VG_GAP_RETENTION));
    bmsg(b, MSG1, "news", "after the gap");
    client_seed("gap_retention", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    ok(vg_frame_put_gap(b, 1, "news", 4, 7, 0, VG_GAP_EPOCH));
    client_seed("gap_epoch", C_INFO, C_CB_UNSUB, b);
    ok(vg_frame_put_gap(b, 1, "news", 4, 1, 1, VG_GAP_RETENTION));
    client_seed("gap_before_info", 0, 0, b);
    ok(vg_frame_put_info2(b, 2, "vigil 0.2.0", 7, 1024, 0x77, 0));
    ok_frame(b, 1);
    client_seed("info2_version2", 0, 0, b);
    body(b, (const uint8_t[]){0x99, 0x04, 0x03, 0xa1, 's', 0x07, 0xcd, 0x04, 0x00, 0x01, 0x00,
                              0xa1, 'x', 0xc0},
         14); /* [4, 3, "s", 7, 1024, 1, 0, "x", nil] */
    client_seed("info3_scalars", 0, 0, b);
    body(b, (const uint8_t[]){0x97, 0x04, 0x01, 0xa1, 's', 0x07, 0xcd, 0x04, 0x00, 0x01, 0x00}, 11);
    client_seed("info1_seven", 0, 0, b);
    ok_frame(b, 1);
    ok(vg_frame_put_sub2(b, 1, "news", 4, VG_SUB_SEQ, 1, 1));
    client_seed("sub2_from_broker", C_INFO, C_MP_1MIB, b);
    ok(vg_frame_put_connect2(b, 2, "seed", NULL, 1, 1));
    client_seed("connect2_from_broker", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    body(b, (const uint8_t[]){0x94, 0x0b, 0xa4, 'n', 'e', 'w', 's', 0xc4, 0x01, 'x', 0x00}, 11);
    client_seed("msg_seq0", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    body(b, (const uint8_t[]){0x96, 0x09, 0x00, 0xa4, 'n', 'e', 'w', 's', 0x01, 0x01, 0x01}, 11);
    client_seed("gap_sid0", C_INFO, C_MP_1MIB, b);
    err_frame(b, 16, "position past the end of the log", 1);
    bmsg(b, MSG1, "news", "refused");
    client_seed("err_bad_position", C_INFO, C_MP_1MIB, b);
    err_frame(b, 16, "position past the end of the log", 0);
    client_seed("err_bad_position_fatal", C_INFO, C_MP_1MIB, b);
}

/* Durable subscribers (issue 11), the broker's side: ERR storage (fatal),
 * ERR durable_taken (for a subscription that is not durable: ignored), and
 * frames only clients send. */
static void broker_durable_frames(vg_buf *b)
{
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "stored?");
    err_frame(b, 17, "disk full", 0);
    client_seed("err_storage", C_INFO | C_PUBLISH, C_MP_1MIB, b);
    err_frame(b, 17, "sync failed", 1);
    client_seed("err_storage_with_sid", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    err_frame(b, 18, "taken over", 1);
    bmsg(b, MSG1, "news", "still ours");
    client_seed("err_durable_taken", C_INFO, C_MP_1MIB, b);
    err_frame(b, 18, "taken over", 0);
    client_seed("err_durable_taken_sid0", C_INFO, C_MP_1MIB, b);
    err_frame(b, 18, "taken over", 1);
    client_seed("err_durable_taken_before_ok", C_INFO | C_TWO_SUBS | C_SAME_TOPIC, C_MP_1MIB, b);
    ok_frame(b, 1);
    ok(vg_frame_put_ack(b, 1, 1));
    client_seed("ack_from_broker", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    ok(vg_frame_put_sub_durable(b, 1, "news", 4, VG_SUB_NEW, 0, 0, "d", 1));
    client_seed("sub_durable_from_broker", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    ok(vg_frame_put_unsub_delete(b, 1));
    client_seed("unsub_delete_from_broker", C_INFO, C_MP_1MIB, b);

    /* A durable sid 1: its ACKs, a takeover, a redelivery after it. */
    ok_frame(b, 1);
    for (int i = 0; i < 20; i++)
        bmsg(b, MSG1, "news", "acked");
    client_seed("durable_acks", C_INFO, C_MP_1MIB | C_DURABLE, b);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "before");
    err_frame(b, 18, "taken over", 1);
    bmsg(b, MSG1, "news", "after");
    err_frame(b, 18, "taken over", 1);
    client_seed("durable_taken", C_INFO, C_MP_1MIB | C_DURABLE, b);
    err_frame(b, 18, "taken over", 1);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "after");
    client_seed("durable_taken_before_ok", C_INFO, C_MP_1MIB | C_DURABLE, b);
    ok_frame(b, 1);
    ok_frame(b, 2);
    bmsg(b, MSG1, "news", "both");
    err_frame(b, 18, "taken over", 1);
    bmsg(b, MSG1, "news", "sid 2 still");
    client_seed("durable_taken_shared_topic", C_INFO | C_TWO_SUBS | C_SAME_TOPIC,
                C_MP_1MIB | C_DURABLE, b);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "unsubscribes");
    bmsg(b, MSG1, "news", "after the unsubscribe");
    err_frame(b, 18, "taken over", 1);
    client_seed("durable_cb_unsub", C_INFO, C_MP_1MIB | C_DURABLE | C_CB_UNSUB, b);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "one");
    err_frame(b, 17, "disk full", 0);
    client_seed("durable_storage", C_INFO, C_MP_1MIB | C_DURABLE, b);
    info_frame(b, 1024);
    ok_frame(b, 1);
    bmsg(b, MSG1, "news", "after the handshake");
    err_frame(b, 18, "taken over", 1);
    client_seed("durable_info_in_rest", 0, C_DURABLE, b);

    /* Issue 12: POS frames (for a sid that is no pattern, ignored; for a
     * topic nobody reads), and a queue member's 5-element MSG, for a sid
     * that is in no group (dropped), around plain messages. */
    ok_frame(b, 1);
    ok(vg_frame_put_pos(b, 1, "news", 4, C_EPOCH, 1));
    ok(vg_frame_put_pos(b, 9, "other", 5, C_EPOCH, 7));
    bmsg(b, MSG1, "news", "after the POS");
    client_seed("pos", C_INFO, C_MP_1MIB, b);
    ok(vg_frame_put_pos(b, 2, "a.b", 3, C_EPOCH + 1, 40));
    ok_frame(b, 1);
    ok_frame(b, 2);
    bmsg(b, MSG1, "a.b", "b");
    client_seed("pos_other_epoch_two_subs", C_INFO | C_TWO_SUBS, C_MP_1MIB, b);
    ok_frame(b, 1);
    msg_q(b, "news", "queued", 1, 1);
    msg_q(b, "news", "queued again", 1, 1);
    msg_q(b, "news", "not ours", 2, 7);
    bmsg(b, MSG1, "news", "plain");
    client_seed("msg_queue", C_INFO, C_MP_1MIB, b);
    ok_frame(b, 1);
    ok_frame(b, 2);
    msg_q(b, "news", "both", 3, 2);
    bmsg(b, MSG2, "news", "both, plain");
    client_seed("msg_queue_same_topic_two_sids", C_INFO | C_TWO_SUBS | C_SAME_TOPIC, C_MP_1MIB,
                b);
    ok_frame(b, 1);
    msg_q(b, "news", "durable", 1, 1);
    bmsg(b, MSG1, "news", "durable, plain");
    client_seed("msg_queue_durable", C_INFO, C_MP_1MIB | C_DURABLE, b);
}

/* ---- fuzz_format: a topic and a payload ---- */

/* fuzz_format.c's layout: format (3: all three), type, the topic's length. */
static void format_seed(const char *name, int format, bool type2, const char *topic,
                        size_t topic_len, const void *payload, size_t payload_len)
{
    vg_buf b = {0};
    uint8_t head[2] = {(uint8_t)(format | (type2 ? 4 : 0) | (topic_len >> 8) << 3),
                       (uint8_t)topic_len};
    ok(vg_buf_append(&b, topic, topic_len));
    ok(vg_buf_append(&b, payload, payload_len));
    write_file("format", name, head, 2, &b);
    vg_buf_free(&b);
    seeds++;
}

static void format_seeds(void)
{
    static const struct {
        const char *name;
        const char *payload;
        size_t len; /* 0: strlen */
    } payloads[] = {
        {"plain", "hello world", 0},
        {"controls", "tab\there\r\nnew line \\ backslash \x1b[31mred\x7f", 0},
        {"nul", "a\0b", 3},
        {"newline_only", "\n", 0},
        {"empty", "", 0},
        {"utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", 0},
        {"line_separators", "a\xe2\x80\xa8" "b\xe2\x80\xa9" "c\xe2\x80\xaa", 0},
        {"c1_controls", "\xc2\x9b" "31m\xc2\x85", 0},
        {"overlong", "\xc0\x80 \xe0\x80\xaf \xf0\x80\x80\xaf", 0},
        {"surrogate", "\xed\xa0\x80\xed\xbf\xbf", 0},
        {"above_max", "\xf4\x90\x80\x80 \xf5\x80\x80\x80", 0},
        {"truncated_utf8", "ok \xe2\x82", 0},
        {"stray_continuation", "\x80\xbf", 0},
        {"latin1", "na\xefve \xff\xfe", 0},
        {"json_specials", "\"quoted\" {\"k\":[1,2]} \\u0041 \b\f/", 0},
        {"base64_pad1", "\xff\xfe", 0},
        {"base64_pad2", "\xff", 0},
        {"base64_nopad", "\xff\xfe\xfd", 0},
    };
    static const char *const modes[] = {"text", "raw", "json", "all"};
    for (int f = 0; f < 4; f++)
        for (size_t i = 0; i < sizeof payloads / sizeof *payloads; i++) {
            char name[64];
            size_t n = payloads[i].len ? payloads[i].len : strlen(payloads[i].payload);
            snprintf(name, sizeof name, "%s_%s", modes[f], payloads[i].name);
            format_seed(name, f, i % 2 == 1, "news", 4, payloads[i].payload, n);
        }
    format_seed("all_hostile_topic", 3, false, "t\x1b[2J\n\"\\\x7f\xc3\xa9\xff", 12, "x", 1);
    format_seed("all_empty_topic", 3, true, "", 0, "payload", 7);
    format_seed("all_empty_both", 3, false, "", 0, "", 0);

    /* Lines longer than format.c's 2 KiB line buffer, and escapes across it. */
    size_t n = 5000;
    uint8_t *p = malloc(n);
    char *topic = malloc(1024);
    if (p == NULL || topic == NULL)
        exit(1);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i % 7 == 0 ? 0x01 : i % 5 == 0 ? '"' : 'a' + i % 26);
    memset(topic, 'T', 1024);
    format_seed("all_long_escaped", 3, false, topic, 1024, p, n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 37);
    format_seed("all_long_binary", 3, true, "bin", 3, p, n);
    for (size_t i = 0; i + 3 <= n; i += 3)
        memcpy(p + i, "\xe2\x80\xa8", 3);
    format_seed("json_long_line_separators", 2, false, "news", 4, p, n - n % 3);
    free(p);
    free(topic);
}

/* ---- store: data directories for fuzz_store.c ---- */

static void put_be16(vg_buf *b, size_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    ok(vg_buf_append(b, x, 2));
}

/* One block: header for kind and the numbers, body topic then rest. */
static void block(vg_buf *b, vg_block_kind kind, const char *topic, const void *rest,
                  size_t rest_len, uint64_t first_seq, uint32_t count, uint64_t publisher,
                  uint64_t pub_last)
{
    size_t tl = strlen(topic);
    vg_block h = {.kind = kind, .first_seq = first_seq, .publisher = publisher,
                  .pub_last = pub_last, .wall_ms = 1700000000000ll, .count = count,
                  .body_len = (uint32_t)(tl + rest_len), .topic_len = (uint16_t)tl};
    h.body_crc = vg_crc32c(vg_crc32c(0, topic, tl), rest, rest_len);
    uint8_t hdr[VG_BLOCK_HEADER];
    vg_block_put_header(hdr, &h);
    ok(vg_buf_append(b, hdr, sizeof hdr));
    ok(vg_buf_append(b, topic, tl));
    if (rest_len > 0)
        ok(vg_buf_append(b, rest, rest_len));
}

/* A MSGS block of count messages "p<seq>" on topic from first_seq. */
static void msgs_block(vg_buf *b, vg_frame_type type, const char *topic, uint64_t first_seq,
                       uint32_t count, uint64_t publisher, uint64_t pub_last)
{
    vg_buf frames = {0};
    for (uint32_t i = 0; i < count; i++) {
        char p[32];
        int n = snprintf(p, sizeof p, "p%llu", (unsigned long long)(first_seq + i));
        ok(vg_frame_put_msg(&frames, type, topic, strlen(topic), p, (size_t)n));
    }
    block(b, VG_BLOCK_MSGS, topic, frames.data, frames.len, first_seq, count, publisher, pub_last);
    vg_buf_free(&frames);
}

static void durable_block(vg_buf *b, vg_block_kind kind, const char *topic, const char *name,
                          uint64_t acked)
{
    block(b, kind, topic, name, strlen(name), acked, 0, 0, 0);
}

/* A segment's worth of every kind of block over two topics. */
static void segment(vg_buf *b, uint64_t from)
{
    msgs_block(b, MSG1, "orders", from, 3, 7, from + 2);
    msgs_block(b, MSG2, "orders.eu", from, 1, 0, 0);
    durable_block(b, VG_BLOCK_ACK, "orders", "worker", from + 1);
    msgs_block(b, MSG1, "orders", from + 3, 2, 7, from + 4);
    durable_block(b, VG_BLOCK_ACK, "orders.eu", "audit", from);
    durable_block(b, VG_BLOCK_FORGET, "orders.eu", "audit", 0);
    msgs_block(b, MSG2, "orders.eu", from + 1, 4, 8, 4);
}

/* A checkpoint as store.c writes it: NEXT, PUBLISHER and ACK blocks. */
static void state(vg_buf *b)
{
    block(b, VG_BLOCK_NEXT, "orders", NULL, 0, 11, 0, 0, 0);
    block(b, VG_BLOCK_NEXT, "gone", NULL, 0, 100, 0, 0, 0);
    block(b, VG_BLOCK_PUBLISHER, "", NULL, 0, 0, 0, 7, 10);
    durable_block(b, VG_BLOCK_ACK, "orders", "worker", 9);
    durable_block(b, VG_BLOCK_ACK, "gone", "idle", 50);
}

static void store_seed(const char *name, uint8_t mode, const vg_buf *st, const vg_buf *s1,
                       const vg_buf *s2)
{
    vg_buf b = {0};
    ok(vg_buf_append(&b, &mode, 1));
    if (mode & 1) {
        put_be16(&b, st->len);
        ok(vg_buf_append(&b, st->data, st->len));
    }
    if (mode & 2)
        put_be16(&b, s1->len);
    ok(vg_buf_append(&b, s1->data, s1->len));
    if (mode & 2)
        ok(vg_buf_append(&b, s2->data, s2->len));
    write_file("store", name, NULL, 0, &b);
    vg_buf_free(&b);
    seeds++;
}

static unsigned store_seeds(void)
{
    unsigned before = seeds;
    vg_buf st = {0}, s1 = {0}, s2 = {0}, x = {0};
    state(&st);
    segment(&s1, 11);
    segment(&s2, 21);
    store_seed("segment", 0, NULL, &s1, NULL);
    store_seed("state_segment", 1, &st, &s1, NULL);
    store_seed("two_segments", 2, NULL, &s1, &s2);
    store_seed("state_two_segments_retained", 7, &st, &s1, &s2);
    store_seed("two_segments_retained", 6, NULL, &s1, &s2);

    /* the newest segment's tail torn in a header, in a body */
    ok(vg_buf_append(&x, s1.data, s1.len - 3));
    store_seed("torn_body", 0, NULL, &x, NULL);
    x.len = 0;
    ok(vg_buf_append(&x, s1.data, s1.len));
    msgs_block(&x, MSG1, "orders", 16, 1, 0, 0);
    x.len -= 40;
    store_seed("torn_header", 0, NULL, &x, NULL);
    store_seed("torn_first_of_two", 6, NULL, &x, &s2);

    /* a byte of a body flipped, of a header, and garbage between blocks */
    x.len = 0;
    ok(vg_buf_append(&x, s1.data, s1.len));
    x.data[VG_BLOCK_HEADER + 10] ^= 0x40;
    store_seed("damaged_body", 0, NULL, &x, NULL);
    store_seed("damaged_body_retained", 6, NULL, &x, &s2);
    x.data[VG_BLOCK_HEADER + 10] ^= 0x40;
    x.data[20] ^= 0x01;
    store_seed("damaged_header", 0, NULL, &x, NULL);
    x.len = 0;
    msgs_block(&x, MSG1, "orders", 1, 2, 0, 0);
    ok(vg_buf_append(&x, "VGB1 not a block \x56\x47\x42\x31", 21));
    ok(vg_buf_append(&x, s1.data, s1.len));
    store_seed("garbage_between", 2, NULL, &x, &s2);

    /* numbers that skip ahead, go back, and sit near the top */
    x.len = 0;
    msgs_block(&x, MSG1, "t", 5, 2, 0, 0);
    msgs_block(&x, MSG1, "t", 1, 3, 0, 0);
    msgs_block(&x, MSG1, "t", 1000, 1, 0, 0);
    block(&x, VG_BLOCK_NEXT, "t", NULL, 0, 2000, 0, 0, 0);
    msgs_block(&x, MSG1, "t", 1999, 3, 0, 0);
    msgs_block(&x, MSG1, "t", 0, 1, 0, 0);
    store_seed("numbers", 2, NULL, &x, &s2);
    x.len = 0;
    msgs_block(&x, MSG1, "top", UINT64_MAX - 2, 2, 0, 0);
    store_seed("near_the_top", 0, NULL, &x, NULL);

    /* a good checksum over frames that are not MSGs, and a count too large */
    x.len = 0;
    vg_buf f = {0};
    ok(vg_frame_put_ping(&f));
    block(&x, VG_BLOCK_MSGS, "t", f.data, f.len, 1, 1, 0, 0);
    block(&x, VG_BLOCK_MSGS, "t", f.data, f.len, 2, UINT32_MAX, 0, 0);
    msgs_block(&x, MSG1, "t", 3, 1, 0, 0);
    vg_buf_free(&f);
    store_seed("not_msgs", 0, NULL, &x, NULL);

    x.len = 0;
    store_seed("empty", 0, NULL, &x, NULL);
    vg_buf_free(&st);
    vg_buf_free(&s1);
    vg_buf_free(&s2);
    vg_buf_free(&x);
    return seeds - before;
}

static void make_dir(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", out_dir, dir[0] ? "/" : "", dir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        fail("cannot create", path);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr,
                "usage: fuzz_make_corpus DIR (writes DIR/decoder, broker, client, format, store)\n");
        return 2;
    }
    out_dir = argv[1];
    make_dir("");
    make_dir("decoder");
    make_dir("broker");
    make_dir("client");
    make_dir("format");
    make_dir("store");
    vg_buf b = {0};
    valid_frames(&b);
    rule_breakers(&b);
    hostile_bytes(&b);
    version2_frames(&b); /* after the others: their cuts stay as they were */
    version2_bodies(&b);
    durable_frames(&b);
    pattern_frames(&b);
    unsigned shared = seeds;
    broker_sessions(&b);
    broker_frames(&b);
    broker_hostile_bytes(&b);
    broker_v2_frames(&b);
    broker_durable_frames(&b);
    unsigned client = seeds - shared;
    format_seeds();
    unsigned store = store_seeds();
    vg_buf_free(&b);
    printf("fuzz_make_corpus: %u seeds each in %s/decoder and %s/broker, %u in %s/client, %u in "
           "%s/format, %u in %s/store\n",
           shared, out_dir, out_dir, client, out_dir, seeds - shared - client - store, out_dir,
           store, out_dir);
    return 0;
}
