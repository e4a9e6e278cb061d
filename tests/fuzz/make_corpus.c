/* Writes the fuzzers' seed corpus: fuzz_make_corpus DIR writes DIR/decoder/
 * and DIR/broker/ (the committed copy is tests/fuzz/corpus; regenerate it
 * with build-fuzz/fuzz_make_corpus tests/fuzz/corpus).
 *
 * Each seed is a byte stream a client could send: valid frames of every
 * type, sessions, and the hostile classics (oversize and empty lengths,
 * truncation, msgpack-c issue #1013's count bomb, deep nesting, garbage).
 * The decoder's copy gets a header choosing how the stream is cut (see
 * fuzz_decoder.c); the broker's a first byte choosing whether a CONNECT goes
 * first (see fuzz_broker.c). Deterministic: the same files every time. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
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
        fprintf(stderr, "usage: fuzz_make_corpus DIR (writes DIR/decoder and DIR/broker)\n");
        return 2;
    }
    out_dir = argv[1];
    make_dir("");
    make_dir("decoder");
    make_dir("broker");
    vg_buf b = {0};
    valid_frames(&b);
    rule_breakers(&b);
    hostile_bytes(&b);
    vg_buf_free(&b);
    printf("fuzz_make_corpus: %u seeds each in %s/decoder and %s/broker\n", seeds, out_dir, out_dir);
    return 0;
}
