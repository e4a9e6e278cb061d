/* Incremental decoder: frames come out whole and in order however the stream
 * is split, declared lengths are checked before anything is reserved, and
 * hostile prefixes are refused at once. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "decoder.h"
#include "frame.h"
#include "status.h"

#define MIB (1024 * 1024)

/* ---- a deterministic stream of mixed frames ---- */

static uint64_t rng_next(uint64_t *s) /* xorshift64* */
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Frame i of the test stream is a function of i alone. */
static size_t payload_len_of(size_t i) { return (i * 97) % 3000 + (i % 7 == 0 ? 70000 : 0); }

static uint8_t payload_byte(size_t i, size_t k) { return (uint8_t)(i * 13 + k * 7 + (k >> 9)); }

static void topic_of(size_t i, char *out, size_t cap) { snprintf(out, cap, "t%zu.sub.%zu", i % 5, i); }

static vg_frame_type type_of(size_t i)
{
    static const vg_frame_type types[] = {VG_FRAME_MSG_TYPE1, VG_FRAME_PING, VG_FRAME_SUB,
                                          VG_FRAME_MSG_TYPE2, VG_FRAME_OK,   VG_FRAME_CONNECT,
                                          VG_FRAME_INFO,      VG_FRAME_ERR,  VG_FRAME_UNSUB,
                                          VG_FRAME_ACK,       VG_FRAME_MSG_TYPE1, VG_FRAME_GAP,
                                          VG_FRAME_POS};
    return types[i % (sizeof types / sizeof types[0])];
}

/* Every other round of the types above uses the version-2 shapes. */
static bool v2_of(size_t i) { return i / 13 % 2 == 1; }

static void put_frame(vg_buf *b, size_t i)
{
    char topic[64];
    topic_of(i, topic, sizeof topic);
    vg_status st = VG_OK;
    switch (type_of(i)) {
    case VG_FRAME_PING: st = vg_frame_put_ping(b); break;
    case VG_FRAME_PONG: st = vg_frame_put_pong(b); break;
    case VG_FRAME_CONNECT:
        st = v2_of(i) ? vg_frame_put_connect2(b, i, topic, i % 2 ? "tok" : NULL, i * 3, i + 1)
                      : vg_frame_put_connect(b, i % 2, topic, i % 2 ? "tok" : NULL);
        break;
    case VG_FRAME_INFO:
        st = v2_of(i) ? vg_frame_put_info2(b, 2, topic, i * 1000, i + 5, i * 7, i * 11)
                      : vg_frame_put_info(b, 1, topic, i * 1000, i + 5);
        break;
    case VG_FRAME_OK:
        st = v2_of(i) ? vg_frame_put_ok2(b, i, i * 7, i + 2) : vg_frame_put_ok(b, i);
        break;
    case VG_FRAME_ERR: st = vg_frame_put_err(b, i % 15, topic, i); break;
    case VG_FRAME_SUB:
        if (v2_of(i) && i % 2)
            st = vg_frame_put_sub_durable(b, i, topic, strlen(topic), VG_SUB_SEQ, i * 7, i + 3,
                                          "dur.a-b_c", 9);
        else
            st = v2_of(i) ? vg_frame_put_sub2(b, i, topic, strlen(topic), VG_SUB_SEQ, i * 7, i + 3)
                          : vg_frame_put_sub(b, i, topic, strlen(topic));
        break;
    case VG_FRAME_UNSUB: st = v2_of(i) ? vg_frame_put_unsub_delete(b, i) : vg_frame_put_unsub(b, i); break;
    case VG_FRAME_ACK: st = vg_frame_put_ack(b, i, i + 1); break;
    case VG_FRAME_POS: st = vg_frame_put_pos(b, i, topic, strlen(topic), i * 7, i + 1); break;
    case VG_FRAME_GAP:
        st = vg_frame_put_gap(b, i, topic, strlen(topic), i, i * 2, VG_GAP_RETENTION);
        break;
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2: {
        size_t n = payload_len_of(i);
        uint8_t *p = malloc(n ? n : 1);
        cr_assert_not_null(p);
        for (size_t k = 0; k < n; k++)
            p[k] = payload_byte(i, k);
        st = v2_of(i) ? vg_frame_put_msg_seq(b, type_of(i), topic, strlen(topic), p, n, i)
                      : vg_frame_put_msg(b, type_of(i), topic, strlen(topic), p, n);
        free(p);
        break;
    }
    }
    cr_assert_eq(st, VG_OK);
}

typedef struct {
    vg_buf bytes;
    size_t n;
    size_t *off; /* offset of frame i in bytes */
    size_t *len; /* its whole length, prefix included */
} stream;

static void stream_build(stream *s, size_t n)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->off = calloc(n, sizeof *s->off);
    s->len = calloc(n, sizeof *s->len);
    cr_assert(s->off && s->len);
    for (size_t i = 0; i < n; i++) {
        s->off[i] = s->bytes.len;
        put_frame(&s->bytes, i);
        s->len[i] = s->bytes.len - s->off[i];
    }
}

static void stream_free(stream *s)
{
    vg_buf_free(&s->bytes);
    free(s->off);
    free(s->len);
}

/* Checks that f is frame i of s, field by field and byte for byte. */
static void check_frame(const stream *s, size_t i, const vg_frame *f)
{
    char topic[64];
    topic_of(i, topic, sizeof topic);
    size_t tl = strlen(topic);
    cr_assert_lt(i, s->n, "more frames than sent");
    cr_assert_eq(f->type, type_of(i), "frame %zu: type %d", i, (int)f->type);
    cr_assert_eq(f->raw_len, s->len[i], "frame %zu: raw_len", i);
    cr_assert(memcmp(f->raw, s->bytes.data + s->off[i], s->len[i]) == 0, "frame %zu: raw", i);
    bool v2 = v2_of(i);
    switch (f->type) {
    case VG_FRAME_PING:
    case VG_FRAME_PONG:
    case VG_FRAME_ERR: cr_assert_eq(f->form, 1); break;
    case VG_FRAME_ACK: cr_assert_eq(f->form, 2); break;
    case VG_FRAME_SUB:
        cr_assert_eq(f->form, !v2 ? 1 : i % 2 ? 3 : 2, "frame %zu: SUB form", i);
        break;
    default:
        cr_assert_eq(f->form, v2 || f->type == VG_FRAME_GAP || f->type == VG_FRAME_POS ? 2 : 1,
                     "frame %zu: form", i);
        break;
    }
    switch (f->type) {
    case VG_FRAME_PING:
    case VG_FRAME_PONG: break;
    case VG_FRAME_CONNECT:
        cr_assert_eq(f->version, v2 ? i : i % 2);
        cr_assert_eq(f->publisher, v2 ? i * 3 : 0);
        cr_assert_eq(f->resend_from, v2 ? i + 1 : 0);
        cr_assert_eq(f->name_len, tl);
        cr_assert(memcmp(f->name, topic, tl) == 0);
        if (i % 2) {
            cr_assert_eq(f->token_len, 3);
            cr_assert(memcmp(f->token, "tok", 3) == 0);
        } else {
            cr_assert_null(f->token);
        }
        break;
    case VG_FRAME_INFO:
        cr_assert_eq(f->version, v2 ? 2 : 1);
        cr_assert_eq(f->epoch, v2 ? i * 7 : 0);
        cr_assert_eq(f->publisher_acked, v2 ? i * 11 : 0);
        cr_assert_eq(f->client_id, i * 1000);
        cr_assert_eq(f->max_payload, i + 5);
        cr_assert_eq(f->name_len, tl);
        cr_assert(memcmp(f->name, topic, tl) == 0);
        break;
    case VG_FRAME_OK:
        cr_assert_eq(f->sid, i);
        cr_assert_eq(f->epoch, v2 ? i * 7 : 0);
        cr_assert_eq(f->next, v2 ? i + 2 : 0);
        break;
    case VG_FRAME_UNSUB:
        cr_assert_eq(f->sid, i);
        cr_assert_eq(f->delete_durable, v2);
        break;
    case VG_FRAME_ACK:
        cr_assert_eq(f->sid, i);
        cr_assert_eq(f->seq, i + 1);
        break;
    case VG_FRAME_POS:
        cr_assert_eq(f->sid, i);
        cr_assert_eq(f->epoch, i * 7);
        cr_assert_eq(f->next, i + 1);
        cr_assert(f->topic_len == tl && memcmp(f->topic, topic, tl) == 0);
        break;
    case VG_FRAME_ERR:
        cr_assert_eq(f->code, i % 15);
        cr_assert_eq(f->sid, i);
        cr_assert_eq(f->reason_len, tl);
        cr_assert(memcmp(f->reason, topic, tl) == 0);
        break;
    case VG_FRAME_SUB:
        cr_assert_eq(f->sid, i);
        cr_assert_eq(f->topic_len, tl);
        cr_assert(memcmp(f->topic, topic, tl) == 0);
        cr_assert_eq(f->start, v2 ? VG_SUB_SEQ : VG_SUB_NEW);
        cr_assert_eq(f->epoch, v2 ? i * 7 : 0);
        cr_assert_eq(f->position, v2 ? i + 3 : 0);
        if (f->form == 3)
            cr_assert(f->durable_len == 9 && memcmp(f->durable, "dur.a-b_c", 9) == 0);
        else
            cr_assert_null(f->durable);
        break;
    case VG_FRAME_GAP:
        cr_assert_eq(f->sid, i);
        cr_assert_eq(f->topic_len, tl);
        cr_assert(memcmp(f->topic, topic, tl) == 0);
        cr_assert_eq(f->from, i);
        cr_assert_eq(f->to, i * 2);
        cr_assert_eq(f->code, VG_GAP_RETENTION);
        break;
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2:
        cr_assert_eq(f->seq, v2 ? i : 0);
        cr_assert_eq(f->topic_len, tl);
        cr_assert(memcmp(f->topic, topic, tl) == 0);
        cr_assert_eq(f->payload_len, payload_len_of(i), "frame %zu: payload_len", i);
        for (size_t k = 0; k < f->payload_len; k++)
            if (f->payload[k] != payload_byte(i, k))
                cr_assert_fail("frame %zu: payload byte %zu differs", i, k);
        break;
    }
}

/* Takes every complete frame now available, checking each; returns the new count. */
static size_t drain(vg_decoder *d, const stream *s, size_t got)
{
    for (;;) {
        vg_frame f;
        const char *why = NULL;
        vg_status st = vg_decoder_next(d, &f, &why);
        if (st == VG_AGAIN)
            return got;
        cr_assert_eq(st, VG_OK, "frame %zu: %s (%s)", got, vg_strerror(st), why ? why : "?");
        check_frame(s, got, &f);
        got++;
    }
}

/* Writes n bytes through space/commit, as a socket read would. */
static void feed_via_space(vg_decoder *d, const uint8_t *p, size_t n)
{
    while (n > 0) {
        uint8_t *space;
        size_t avail;
        cr_assert_eq(vg_decoder_space(d, &space, &avail), VG_OK);
        cr_assert_geq(avail, 1);
        size_t k = avail < n ? avail : n;
        memcpy(space, p, k);
        vg_decoder_commit(d, k);
        p += k;
        n -= k;
    }
}

#define NFRAMES 300

/* ---- whole streams ---- */

Test(decoder, one_byte_at_a_time)
{
    stream s;
    stream_build(&s, NFRAMES);
    vg_decoder *d = vg_decoder_create(4096, MIB);
    cr_assert_not_null(d);
    size_t got = 0;
    for (size_t i = 0; i < s.bytes.len; i++) {
        cr_assert_eq(vg_decoder_feed(d, s.bytes.data + i, 1), VG_OK);
        got = drain(d, &s, got);
    }
    cr_assert_eq(got, NFRAMES);
    cr_assert_eq(vg_decoder_pending(d), 0);
    vg_decoder_destroy(d);
    stream_free(&s);
}

Test(decoder, all_in_one_feed)
{
    stream s;
    stream_build(&s, NFRAMES);
    vg_decoder *d = vg_decoder_create(64 * 1024, MIB);
    cr_assert_not_null(d);
    cr_assert_eq(vg_decoder_feed(d, s.bytes.data, s.bytes.len), VG_OK);
    cr_assert_eq(vg_decoder_pending(d), s.bytes.len);
    cr_assert_eq(drain(d, &s, 0), NFRAMES);
    cr_assert_eq(vg_decoder_pending(d), 0);
    vg_decoder_destroy(d);
    stream_free(&s);
}

Test(decoder, random_chunks_feed)
{
    stream s;
    stream_build(&s, NFRAMES);
    for (uint64_t seed = 1; seed <= 8; seed++) {
        uint64_t r = seed * 0x9E3779B97F4A7C15ull;
        vg_decoder *d = vg_decoder_create(1024 * seed, MIB);
        cr_assert_not_null(d);
        size_t got = 0, pos = 0;
        while (pos < s.bytes.len) {
            /* mostly small pieces, sometimes large ones */
            size_t k = rng_next(&r) % 8 == 0 ? rng_next(&r) % 100000 + 1 : rng_next(&r) % 700 + 1;
            if (k > s.bytes.len - pos)
                k = s.bytes.len - pos;
            cr_assert_eq(vg_decoder_feed(d, s.bytes.data + pos, k), VG_OK);
            pos += k;
            got = drain(d, &s, got);
        }
        cr_assert_eq(got, NFRAMES, "seed %llu", (unsigned long long)seed);
        cr_assert_eq(vg_decoder_pending(d), 0);
        vg_decoder_destroy(d);
    }
    stream_free(&s);
}

Test(decoder, random_chunks_via_space_commit)
{
    stream s;
    stream_build(&s, NFRAMES);
    uint64_t r = 42;
    vg_decoder *d = vg_decoder_create(8192, MIB);
    cr_assert_not_null(d);
    size_t got = 0, pos = 0;
    while (pos < s.bytes.len) {
        uint8_t *space;
        size_t avail;
        cr_assert_eq(vg_decoder_space(d, &space, &avail), VG_OK);
        cr_assert_geq(avail, 1);
        size_t k = rng_next(&r) % avail + 1; /* a short read */
        if (k > s.bytes.len - pos)
            k = s.bytes.len - pos;
        memcpy(space, s.bytes.data + pos, k);
        vg_decoder_commit(d, k);
        pos += k;
        got = drain(d, &s, got);
    }
    cr_assert_eq(got, NFRAMES);
    vg_decoder_destroy(d);
    stream_free(&s);
}

Test(decoder, frames_stay_valid_until_next_space)
{
    stream s;
    stream_build(&s, 60);
    vg_decoder *d = vg_decoder_create(4096, MIB);
    cr_assert_not_null(d);
    /* Two reads' worth; every frame of the second read is collected first and
     * checked only after the last vg_decoder_next. */
    size_t half = s.off[30];
    cr_assert_eq(vg_decoder_feed(d, s.bytes.data, half), VG_OK);
    cr_assert_eq(drain(d, &s, 0), 30);
    cr_assert_eq(vg_decoder_feed(d, s.bytes.data + half, s.bytes.len - half), VG_OK);
    vg_frame frames[30];
    size_t n = 0;
    const char *why;
    while (n < 30 && vg_decoder_next(d, &frames[n], &why) == VG_OK)
        n++;
    cr_assert_eq(n, 30);
    vg_frame extra;
    cr_assert_eq(vg_decoder_next(d, &extra, &why), VG_AGAIN);
    for (size_t i = 0; i < n; i++)
        check_frame(&s, 30 + i, &frames[i]);
    vg_decoder_destroy(d);
    stream_free(&s);
}

Test(decoder, partial_frame_waits)
{
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "a.b", 3, "payload", 7), VG_OK);
    vg_decoder *d = vg_decoder_create(4096, MIB);
    cr_assert_not_null(d);
    vg_frame f;
    const char *why;
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_AGAIN, "nothing yet");
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len - 1), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_AGAIN);
    cr_assert_eq(vg_decoder_pending(d), b.len - 1);
    cr_assert_eq(vg_decoder_feed(d, b.data + b.len - 1, 1), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK);
    cr_assert_eq(f.type, VG_FRAME_MSG_TYPE1);
    cr_assert_eq(f.payload_len, 7);
    cr_assert(memcmp(f.payload, "payload", 7) == 0);
    cr_assert_eq(f.raw_len, b.len);
    cr_assert_eq(vg_decoder_pending(d), 0);
    vg_decoder_destroy(d);
    vg_buf_free(&b);
}

/* ---- large frames ---- */

Test(decoder, frame_larger_than_read_chunk_is_reassembled)
{
    size_t plen = 200 * 1024;
    uint8_t *payload = malloc(plen);
    cr_assert_not_null(payload);
    for (size_t k = 0; k < plen; k++)
        payload[k] = (uint8_t)(k * 2654435761u >> 13);
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_ping(&b), VG_OK);
    size_t big_off = b.len;
    cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE2, "big.one", 7, payload, plen), VG_OK);
    size_t big_end = b.len;
    cr_assert_eq(vg_frame_put_pong(&b), VG_OK);

    vg_decoder *d = vg_decoder_create(64 * 1024, MIB);
    cr_assert_not_null(d);
    vg_frame f;
    const char *why;
    size_t pos = 0;
    int seen_ping = 0, seen_big = 0, seen_pong = 0, reads = 0;
    while (pos < b.len) {
        uint8_t *space;
        size_t avail;
        cr_assert_eq(vg_decoder_space(d, &space, &avail), VG_OK);
        size_t k = avail < 64 * 1024 ? avail : 64 * 1024; /* at most one chunk per read */
        if (k > b.len - pos)
            k = b.len - pos;
        memcpy(space, b.data + pos, k);
        vg_decoder_commit(d, k);
        pos += k;
        reads++;
        vg_status st;
        while ((st = vg_decoder_next(d, &f, &why)) == VG_OK) {
            if (f.type == VG_FRAME_PING) {
                seen_ping++;
            } else if (f.type == VG_FRAME_MSG_TYPE2) {
                cr_assert_geq(pos, big_end, "big frame out before all its bytes arrived");
                cr_assert_eq(f.raw_len, big_end - big_off);
                cr_assert_eq(f.payload_len, plen);
                cr_assert(memcmp(f.payload, payload, plen) == 0);
                cr_assert_eq(f.topic_len, 7);
                cr_assert(memcmp(f.topic, "big.one", 7) == 0);
                seen_big++;
            } else {
                cr_assert_eq(f.type, VG_FRAME_PONG);
                cr_assert_eq(seen_big, 1, "PONG came before the big frame");
                seen_pong++;
            }
        }
        cr_assert_eq(st, VG_AGAIN);
    }
    cr_assert_eq(seen_ping, 1);
    cr_assert_eq(seen_big, 1);
    cr_assert_eq(seen_pong, 1);
    cr_assert_geq(reads, 4, "the frame really arrived in pieces");
    vg_decoder_destroy(d);
    vg_buf_free(&b);
    free(payload);
}

Test(decoder, frame_of_exactly_max_is_accepted)
{
    vg_buf b = {0};
    uint8_t payload[100] = {0};
    cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "t", 1, payload, sizeof payload), VG_OK);
    size_t body = b.len - VG_FRAME_HEADER;
    vg_decoder *d = vg_decoder_create(64, body);
    cr_assert_not_null(d);
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len), VG_OK);
    vg_frame f;
    const char *why;
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK);
    cr_assert_eq(f.payload_len, sizeof payload);
    vg_decoder_destroy(d);

    d = vg_decoder_create(64, body - 1);
    cr_assert_not_null(d);
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len), VG_OK);
    why = NULL;
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_TOO_LARGE);
    cr_assert_not_null(why);
    vg_decoder_destroy(d);
    vg_buf_free(&b);
}

/* ---- hostile prefixes ---- */

Test(decoder, huge_prefix_is_too_large_at_once)
{
    static const uint8_t bytes[] = {0xff, 0xff, 0xff, 0xf0, 0x93, 0x0b, 0xa1, 't'};
    vg_decoder *d = vg_decoder_create(64 * 1024, MIB);
    cr_assert_not_null(d);
    vg_frame f;
    const char *why = NULL;
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(vg_decoder_feed(d, bytes + i, 1), VG_OK);
        cr_assert_eq(vg_decoder_next(d, &f, &why), VG_AGAIN, "after %zu prefix bytes", i + 1);
    }
    cr_assert_eq(vg_decoder_feed(d, bytes + 3, 1), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_TOO_LARGE, "as soon as 4 bytes are in");
    cr_assert_not_null(why);

    /* More bytes do not make the decoder reserve the declared size. */
    cr_assert_eq(vg_decoder_feed(d, bytes + 4, sizeof bytes - 4), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_TOO_LARGE);
    uint8_t *space;
    size_t avail;
    cr_assert_eq(vg_decoder_space(d, &space, &avail), VG_OK);
    cr_assert_lt(avail, (size_t)MIB, "offered %zu bytes for a refused frame", avail);
    vg_decoder_destroy(d);
}

Test(decoder, prefix_just_above_max)
{
    static const uint8_t bytes[] = {0x00, 0x10, 0x00, 0x01, 0x91}; /* 1 MiB + 1 */
    vg_decoder *d = vg_decoder_create(64 * 1024, MIB);
    cr_assert_not_null(d);
    cr_assert_eq(vg_decoder_feed(d, bytes, sizeof bytes), VG_OK);
    vg_frame f;
    const char *why = NULL;
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_TOO_LARGE);
    cr_assert_not_null(why);
    vg_decoder_destroy(d);
}

Test(decoder, zero_length_is_malformed)
{
    static const uint8_t bytes[] = {0, 0, 0, 0, 0x91, 0x01};
    vg_decoder *d = vg_decoder_create(4096, MIB);
    cr_assert_not_null(d);
    cr_assert_eq(vg_decoder_feed(d, bytes, 4), VG_OK);
    vg_frame f;
    const char *why = NULL;
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_MALFORMED);
    cr_assert_not_null(why);
    vg_decoder_destroy(d);
}

Test(decoder, msgpack_c_issue_1013_array_count)
{
    /* body dd ff 00 00 00: an array32 claiming 0xff000000 elements */
    static const uint8_t bytes[] = {0x00, 0x00, 0x00, 0x05, 0xdd, 0xff, 0x00, 0x00, 0x00};
    vg_decoder *d = vg_decoder_create(4096, MIB);
    cr_assert_not_null(d);
    cr_assert_eq(vg_decoder_feed(d, bytes, sizeof bytes), VG_OK);
    vg_frame f;
    const char *why = NULL;
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_MALFORMED);
    cr_assert_not_null(why);
    vg_decoder_destroy(d);
}

Test(decoder, garbage_is_an_error)
{
    static const char *const garbage[] = {
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n", /* prefix 0x47455420: too large */
        "\x00\x00\x00\x03\xc1\xc1\xc1",      /* never-used msgpack byte */
        "\x00\x00\x00\x02\xa1x",             /* a string, not an array */
        "\x00\x00\x00\x02\x91\x63",          /* [99]: unknown type */
        "\x00\x00\x00\x03\x91\x01\x01",      /* PING with a trailing byte */
    };
    static const size_t lens[] = {27, 7, 6, 6, 7};
    static const vg_status want[] = {VG_ERR_TOO_LARGE, VG_ERR_MALFORMED, VG_ERR_MALFORMED,
                                     VG_ERR_UNKNOWN_TYPE, VG_ERR_MALFORMED};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        vg_decoder *d = vg_decoder_create(4096, MIB);
        cr_assert_not_null(d);
        cr_assert_eq(vg_decoder_feed(d, garbage[i], lens[i]), VG_OK);
        vg_frame f;
        const char *why = NULL;
        vg_status st = vg_decoder_next(d, &f, &why);
        cr_assert_eq(st, want[i], "garbage %zu: %s", i, vg_strerror(st));
        cr_assert_not_null(why);
        vg_decoder_destroy(d);
    }
}

Test(decoder, error_after_good_frames)
{
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_ping(&b), VG_OK);
    cr_assert_eq(vg_frame_put_ok(&b, 4), VG_OK);
    static const uint8_t bad[] = {0, 0, 0, 2, 0x91, 0xff};
    cr_assert_eq(vg_buf_append(&b, bad, sizeof bad), VG_OK);
    vg_decoder *d = vg_decoder_create(4096, MIB);
    cr_assert_not_null(d);
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len), VG_OK);
    vg_frame f;
    const char *why = NULL;
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK);
    cr_assert_eq(f.type, VG_FRAME_PING);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK);
    cr_assert_eq(f.type, VG_FRAME_OK);
    cr_assert_eq(f.sid, 4);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_MALFORMED);
    cr_assert_not_null(why);
    vg_decoder_destroy(d);
    vg_buf_free(&b);
}

/* ---- reset and limits ---- */

Test(decoder, reset_clears_pending_bytes)
{
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_sub(&b, 5, "x.y", 3), VG_OK);
    vg_decoder *d = vg_decoder_create(4096, MIB);
    cr_assert_not_null(d);
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len - 2), VG_OK); /* a frame cut short */
    cr_assert_eq(vg_decoder_pending(d), b.len - 2);
    vg_decoder_reset(d, MIB);
    cr_assert_eq(vg_decoder_pending(d), 0);
    vg_frame f;
    const char *why;
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_AGAIN);

    /* A fresh whole frame parses from its first byte. */
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK);
    cr_assert_eq(f.type, VG_FRAME_SUB);
    cr_assert_eq(f.sid, 5);
    cr_assert_eq(vg_decoder_pending(d), 0);

    /* reset also sets the limit. */
    vg_decoder_reset(d, 4);
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_TOO_LARGE);
    vg_decoder_destroy(d);
    vg_buf_free(&b);
}

Test(decoder, reset_after_error_recovers)
{
    static const uint8_t bad[] = {0xff, 0xff, 0xff, 0xff};
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_pong(&b), VG_OK);
    vg_decoder *d = vg_decoder_create(4096, MIB);
    cr_assert_not_null(d);
    cr_assert_eq(vg_decoder_feed(d, bad, sizeof bad), VG_OK);
    vg_frame f;
    const char *why;
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_TOO_LARGE);
    vg_decoder_reset(d, MIB);
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK);
    cr_assert_eq(f.type, VG_FRAME_PONG);
    vg_decoder_destroy(d);
    vg_buf_free(&b);
}

Test(decoder, set_max_frame_takes_effect)
{
    vg_buf b = {0};
    uint8_t payload[100];
    memset(payload, 7, sizeof payload);
    cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "t", 1, payload, sizeof payload), VG_OK);
    vg_frame f;
    const char *why;

    /* Lowered: the same frame is now too large. */
    vg_decoder *d = vg_decoder_create(4096, MIB);
    cr_assert_not_null(d);
    vg_decoder_set_max_frame(d, 50);
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_TOO_LARGE);
    vg_decoder_destroy(d);

    /* Raised (as after a handshake): accepted. */
    d = vg_decoder_create(4096, 50);
    cr_assert_not_null(d);
    vg_decoder_set_max_frame(d, 4096);
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len), VG_OK);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK);
    cr_assert_eq(f.payload_len, sizeof payload);

    /* Lowered between frames: the next frame is judged by the new limit. */
    cr_assert_eq(vg_decoder_feed(d, b.data, b.len), VG_OK);
    vg_decoder_set_max_frame(d, 10);
    cr_assert_eq(vg_decoder_next(d, &f, &why), VG_ERR_TOO_LARGE);
    vg_decoder_destroy(d);
    vg_buf_free(&b);
}

Test(decoder, large_frame_then_small_frames_reuse_memory)
{
    /* After a large frame passes, the decoder keeps decoding small ones. */
    size_t plen = 300 * 1024;
    uint8_t *payload = calloc(1, plen);
    cr_assert_not_null(payload);
    vg_buf big = {0}, small = {0};
    cr_assert_eq(vg_frame_put_msg(&big, VG_FRAME_MSG_TYPE1, "b", 1, payload, plen), VG_OK);
    cr_assert_eq(vg_frame_put_ok(&small, 99), VG_OK);
    vg_decoder *d = vg_decoder_create(16 * 1024, MIB);
    cr_assert_not_null(d);
    vg_frame f;
    const char *why;
    for (int round = 0; round < 3; round++) {
        feed_via_space(d, big.data, big.len);
        cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK);
        cr_assert_eq(f.payload_len, plen);
        feed_via_space(d, small.data, small.len);
        cr_assert_eq(vg_decoder_next(d, &f, &why), VG_OK);
        cr_assert_eq(f.type, VG_FRAME_OK);
        cr_assert_eq(f.sid, 99);
        cr_assert_eq(vg_decoder_next(d, &f, &why), VG_AGAIN);
    }
    vg_decoder_destroy(d);
    vg_buf_free(&big);
    vg_buf_free(&small);
    free(payload);
}
