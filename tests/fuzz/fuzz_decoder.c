/* libFuzzer target: the incremental frame decoder and the frame codec.
 *
 * Input layout (tests/fuzz/make_corpus.c writes seeds in it):
 *   byte 0      bits 0-3: n, the number of piece-size bytes that follow
 *               bits 4-5: the decoder's max_frame (see max_frames[])
 *               bit 6:    write through space/commit (as a socket read does)
 *                         instead of vg_decoder_feed
 *               bit 7:    read_chunk 64 instead of 64 KiB
 *   bytes 1..n  piece sizes, used in turn: s + 1 bytes, or the rest when s is 255
 *   the rest    the byte stream the decoder receives
 *
 * The stream is decoded twice: in those pieces, draining frames after each,
 * and in one piece. Both must yield the same frames and the same final
 * status, whatever the cut. Every frame must be exactly the bytes of the
 * stream at its offset, keep the rules of its shape (version 1 or 2), and
 * survive a round trip through the encoders of that shape.
 * A failed check prints what and aborts, which libFuzzer reports as a crash. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "decoder.h"
#include "frame.h"
#include "proto.h"
#include "status.h"
#include "topic.h"

#define MAX_FRAMES 4096 /* a 5-byte frame is the smallest: 20 KiB of input */

static const size_t max_frames[4] = {
    VG_DEFAULT_MAX_PAYLOAD + VG_MSG_OVERHEAD, /* after the handshake */
    VG_HANDSHAKE_MAX_FRAME,                   /* before it */
    16,                                       /* tiny: most frames are too large */
    1,                                        /* only one-byte bodies pass */
};

typedef struct {
    size_t max_frame;
    size_t read_chunk;
    bool space_commit;
    const uint8_t *sizes;
    size_t nsizes;
    const uint8_t *stream;
    size_t len;
} plan;

/* What one decoding of the stream produced, for the comparison. */
typedef struct {
    size_t off[MAX_FRAMES];
    size_t len[MAX_FRAMES];
    vg_frame_type type[MAX_FRAMES];
    size_t n;
    vg_status final; /* VG_AGAIN when the stream ended between or inside frames */
    size_t consumed;
} outcome;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_decoder: invariant violated: %s\n", what);
    abort();
}

static void check(bool ok, const char *what)
{
    if (!ok)
        fail(what);
}

/* A string field must lie inside the frame body it was parsed from. */
static void check_inside(const void *p, size_t n, const vg_frame *f, const char *what)
{
    if (p == NULL) {
        check(n == 0, what);
        return;
    }
    const uint8_t *b = p;
    check(b >= f->raw + VG_FRAME_HEADER && b + n <= f->raw + f->raw_len, what);
}

static bool same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen || (a == NULL) != (b == NULL))
        return false;
    return alen == 0 || memcmp(a, b, alen) == 0;
}

/* Field-by-field equality, ignoring where the bytes lie. */
static bool same_fields(const vg_frame *a, const vg_frame *b)
{
    return a->type == b->type && a->form == b->form && a->version == b->version &&
           a->sid == b->sid && a->code == b->code && a->client_id == b->client_id &&
           a->max_payload == b->max_payload && a->publisher == b->publisher &&
           a->resend_from == b->resend_from && a->epoch == b->epoch &&
           a->publisher_acked == b->publisher_acked && a->start == b->start &&
           a->position == b->position && a->next == b->next && a->seq == b->seq &&
           a->from == b->from && a->to == b->to && a->delete_durable == b->delete_durable &&
           same_bytes(a->durable, a->durable_len, b->durable, b->durable_len) &&
           same_bytes(a->queue, a->queue_len, b->queue, b->queue_len) &&
           same_bytes(a->name, a->name_len, b->name, b->name_len) &&
           same_bytes(a->token, a->token_len, b->token, b->token_len) &&
           same_bytes(a->reason, a->reason_len, b->reason, b->reason_len) &&
           same_bytes(a->topic, a->topic_len, b->topic, b->topic_len) &&
           same_bytes(a->payload, a->payload_len, b->payload, b->payload_len);
}

/* A NUL-terminated copy for the encoders that take C strings; NULL when the
 * bytes hold a NUL (such a field cannot be re-encoded) or memory ran out. */
static char *cstr(const char *s, size_t n)
{
    if (s == NULL || memchr(s, 0, n) != NULL)
        return NULL;
    char *c = malloc(n + 1);
    if (c == NULL)
        return NULL;
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

/* Encodes f again with the real encoders, in the shape it came in (the
 * scalars a version above 2 may add are not kept). Returns false when it
 * cannot be (a C-string field holds a NUL); encoding failures abort. */
static bool reencode(const vg_frame *f, vg_buf *out)
{
    char *a = NULL, *b = NULL;
    vg_status st = VG_OK;
    bool done = true, v2 = f->form >= 2;
    switch (f->type) {
    case VG_FRAME_PING: st = vg_frame_put_ping(out); break;
    case VG_FRAME_PONG: st = vg_frame_put_pong(out); break;
    case VG_FRAME_OK:
        st = v2 ? vg_frame_put_ok2(out, f->sid, f->epoch, f->next) : vg_frame_put_ok(out, f->sid);
        break;
    case VG_FRAME_UNSUB:
        /* [8, sid, 0] has no encoder: vigil writes the 2-element UNSUB for it */
        done = !v2 || f->delete_durable;
        if (done)
            st = v2 ? vg_frame_put_unsub_delete(out, f->sid) : vg_frame_put_unsub(out, f->sid);
        break;
    case VG_FRAME_ACK:
        st = f->form == 3 ? vg_frame_put_ack_topic(out, f->sid, f->seq, f->topic, f->topic_len)
                          : vg_frame_put_ack(out, f->sid, f->seq);
        break;
    case VG_FRAME_POS:
        st = vg_frame_put_pos(out, f->sid, f->topic, f->topic_len, f->epoch, f->next);
        break;
    case VG_FRAME_SUB:
        if (f->form == 4)
            st = vg_frame_put_sub_queue(out, f->sid, f->topic, f->topic_len, f->start, f->epoch,
                                        f->position, f->durable, f->durable_len, f->queue,
                                        f->queue_len);
        else if (f->form == 3)
            st = vg_frame_put_sub_durable(out, f->sid, f->topic, f->topic_len, f->start, f->epoch,
                                          f->position, f->durable, f->durable_len);
        else
            st = v2 ? vg_frame_put_sub2(out, f->sid, f->topic, f->topic_len, f->start, f->epoch,
                                        f->position)
                    : vg_frame_put_sub(out, f->sid, f->topic, f->topic_len);
        break;
    case VG_FRAME_GAP:
        st = vg_frame_put_gap(out, f->sid, f->topic, f->topic_len, f->from, f->to,
                              (vg_gap_reason)f->code);
        break;
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2:
        if (f->form == 3) { /* a queue group's delivery: no buffer encoder, the writer */
            size_t n = vg_frame_msg_qsize(f->topic_len, f->payload_len);
            st = vg_buf_reserve(out, n);
            if (st == VG_OK) {
                vg_frame_write_msg_q(out->data + out->len, f->type, f->topic, f->topic_len,
                                     f->payload, f->payload_len, f->seq, f->sid);
                out->len += n;
            }
            break;
        }
        st = v2 ? vg_frame_put_msg_seq(out, f->type, f->topic, f->topic_len, f->payload,
                                       f->payload_len, f->seq)
                : vg_frame_put_msg(out, f->type, f->topic, f->topic_len, f->payload,
                                   f->payload_len);
        break;
    case VG_FRAME_CONNECT:
        a = cstr(f->name, f->name_len);
        b = cstr(f->token, f->token_len);
        done = a != NULL && (f->token == NULL || b != NULL);
        if (done && v2)
            st = vg_frame_put_connect2(out, f->version, a, b, f->publisher, f->resend_from);
        else if (done)
            st = vg_frame_put_connect(out, f->version, a, b);
        break;
    case VG_FRAME_INFO:
        a = cstr(f->name, f->name_len);
        done = a != NULL;
        if (done && v2)
            st = vg_frame_put_info2(out, f->version, a, f->client_id, f->max_payload, f->epoch,
                                    f->publisher_acked);
        else if (done)
            st = vg_frame_put_info(out, f->version, a, f->client_id, f->max_payload);
        break;
    case VG_FRAME_ERR:
        a = cstr(f->reason, f->reason_len);
        done = a != NULL;
        if (done)
            st = vg_frame_put_err(out, f->code, a, f->sid);
        break;
    }
    free(a);
    free(b);
    check(st == VG_OK, "an encoder failed on a parsed frame");
    return done;
}

/* The rules of the two shapes (docs/protocol.md) hold for an accepted frame. */
static void check_shape(const vg_frame *f)
{
    bool third = f->type == VG_FRAME_SUB || f->type == VG_FRAME_ACK || vg_frame_is_msg(f->type);
    check(f->form == 1 || f->form == 2 || (f->form == 3 && third) ||
              (f->form == 4 && f->type == VG_FRAME_SUB),
          "a frame of no known shape");
    bool two_shapes = f->type == VG_FRAME_CONNECT || f->type == VG_FRAME_INFO ||
                      f->type == VG_FRAME_SUB || f->type == VG_FRAME_OK ||
                      f->type == VG_FRAME_UNSUB || vg_frame_is_msg(f->type);
    bool v2_only = f->type == VG_FRAME_GAP || f->type == VG_FRAME_ACK || f->type == VG_FRAME_POS;
    check(v2_only ? f->form >= 2 : two_shapes || f->form == 1,
          "a version-2 shape for a type that has none, or a version-1 GAP or ACK");
    check(vg_frame_min_version(f) == (f->form >= 2 ? 2u : 1u), "min_version against the form");
    bool sub3 = f->type == VG_FRAME_SUB && f->form == 3, sub4 = f->type == VG_FRAME_SUB && f->form == 4;
    check(f->durable == NULL || sub3 || sub4, "a durable name outside SUB forms 3 and 4");
    check(!sub3 || f->durable != NULL, "SUB form 3 without its durable name");
    check((f->queue != NULL) == sub4, "a queue name outside SUB form 4");
    if (f->durable != NULL)
        check(vg_durable_name_ok(f->durable, f->durable_len), "a bad durable name accepted");
    if (f->queue != NULL)
        check(vg_durable_name_ok(f->queue, f->queue_len), "a bad queue name accepted");
    if (f->type == VG_FRAME_POS)
        check(f->sid >= 1 && f->next >= 1, "a POS with sid or next 0 accepted");
    if (vg_frame_is_msg(f->type) && f->form == 3)
        check(f->sid >= 1 && f->seq >= 1, "a queue MSG with sid or seq 0 accepted");
    if (f->type == VG_FRAME_ACK)
        check(f->sid >= 1 && f->seq >= 1, "an ACK with sid or seq 0 accepted");
    if (f->delete_durable)
        check(f->type == VG_FRAME_UNSUB && f->form == 2, "delete outside a 3-element UNSUB");
    if (f->type == VG_FRAME_CONNECT || f->type == VG_FRAME_INFO)
        check((f->version >= 2) == (f->form == 2), "CONNECT or INFO of a version not its shape's");
    if (f->form == 1)
        check(f->publisher == 0 && f->resend_from == 0 && f->epoch == 0 &&
                  f->publisher_acked == 0 && f->start == VG_SUB_NEW && f->position == 0 &&
                  f->next == 0 && f->seq == 0 && f->from == 0 && f->to == 0 &&
                  !f->delete_durable,
              "a version-1 frame with version-2 fields set");
    if (f->type == VG_FRAME_SUB && f->form >= 2)
        check(f->start <= VG_SUB_AGO &&
                  (f->start >= VG_SUB_SEQ || (f->epoch == 0 && f->position == 0)),
              "a SUB start accepted against its rules");
    if (vg_frame_is_msg(f->type) && f->form == 2)
        check(f->seq >= 1, "a MSG with sequence number 0 accepted");
    if (f->type == VG_FRAME_GAP)
        check(f->sid >= 1 && ((f->code == VG_GAP_RETENTION && f->from >= 1 && f->to >= f->from) ||
                              (f->code == VG_GAP_EPOCH && f->to == 0)),
              "a GAP accepted against its rules");
}

/* Everything that must hold for one frame the decoder returned; stream_off
 * is where the frame starts in the stream. */
static void check_frame(const plan *p, const vg_frame *f, size_t stream_off)
{
    check(f->raw_len > VG_FRAME_HEADER, "frame shorter than a header and one byte");
    check(stream_off + f->raw_len <= p->len, "frame claims more bytes than were fed");
    check(memcmp(f->raw, p->stream + stream_off, f->raw_len) == 0,
          "frame bytes differ from the stream at its offset");
    size_t body = f->raw_len - VG_FRAME_HEADER;
    check(vg_be32(f->raw) == body, "length prefix differs from the frame's length");
    check(body <= p->max_frame, "frame above max_frame accepted");
    check_inside(f->name, f->name_len, f, "name outside the frame");
    check_inside(f->token, f->token_len, f, "token outside the frame");
    check_inside(f->reason, f->reason_len, f, "reason outside the frame");
    check_inside(f->topic, f->topic_len, f, "topic outside the frame");
    check_inside(f->payload, f->payload_len, f, "payload outside the frame");
    check(strcmp(vg_frame_type_name(f->type), "UNKNOWN") != 0, "a frame of unknown type");
    check_shape(f);

    vg_frame again;
    const char *why = NULL;
    check(vg_frame_parse(f->raw + VG_FRAME_HEADER, body, &again, &why) == VG_OK,
          "the body does not parse on its own");
    again.raw = f->raw;
    again.raw_len = f->raw_len;
    check(same_fields(f, &again), "parsing the body alone gives other fields");

    if (f->topic != NULL) { /* the topic rules on hostile bytes: an accepted topic is clean */
        const char *twhy = NULL;
        if (vg_topic_check(f->topic, f->topic_len, VG_TOPIC_MAX_LEN, 16, &twhy) == VG_OK) {
            check(f->topic_len >= 1 && f->topic_len <= VG_TOPIC_MAX_LEN, "topic length accepted");
            for (size_t i = 0; i < f->topic_len; i++)
                check(f->topic[i] > 0x20 && f->topic[i] < 0x7f && f->topic[i] != '*' &&
                          f->topic[i] != '>',
                      "topic with a forbidden byte accepted");
        } else {
            check(twhy != NULL, "topic refused without a reason");
        }
        (void)vg_topic_is_system(f->topic, f->topic_len);
    }

    vg_buf one = {0}, two = {0};
    if (reencode(f, &one)) {
        vg_frame g;
        check(one.len > VG_FRAME_HEADER && vg_be32(one.data) == one.len - VG_FRAME_HEADER,
              "re-encoded frame has a bad length prefix");
        check(vg_frame_parse(one.data + VG_FRAME_HEADER, one.len - VG_FRAME_HEADER, &g, &why) == VG_OK,
              "re-encoded frame does not parse");
        check(same_fields(f, &g), "re-encoded frame parses to other fields");
        check(reencode(&g, &two) && same_bytes(one.data, one.len, two.data, two.len),
              "encoding is not stable across a round trip");
        if (vg_frame_is_msg(f->type) && f->form == 1) {
            check(vg_frame_msg_size(f->topic_len, f->payload_len) == one.len,
                  "vg_frame_msg_size differs from the encoder");
            uint8_t *direct = malloc(one.len);
            check(direct != NULL, "out of memory");
            vg_frame_write_msg(direct, f->type, f->topic, f->topic_len, f->payload, f->payload_len);
            check(memcmp(direct, one.data, one.len) == 0, "vg_frame_write_msg differs from put_msg");
            free(direct);
        } else if (vg_frame_is_msg(f->type) && f->form == 3) {
            check(vg_frame_msg_qsize(f->topic_len, f->payload_len) == one.len,
                  "vg_frame_msg_qsize differs from the encoder");
        } else if (vg_frame_is_msg(f->type)) {
            check(vg_frame_msg_seq_size(f->topic_len, f->payload_len) == one.len,
                  "vg_frame_msg_seq_size differs from the encoder");
            check(one.data[one.len - 9] == 0xcf, "a MSG's seq not encoded as a uint64");
        }
    }
    vg_buf_free(&one);
    vg_buf_free(&two);
}

/* After vg_decoder_next failed at offset off: the error must be the right one. */
static void check_error(const plan *p, vg_status st, const char *why, size_t off)
{
    check(st == VG_ERR_TOO_LARGE || st == VG_ERR_MALFORMED || st == VG_ERR_UNKNOWN_TYPE,
          "unexpected decoder status");
    check(why != NULL && why[0] != 0, "error without a reason");
    check(p->len - off >= VG_FRAME_HEADER, "error before a whole length prefix");
    size_t body = vg_be32(p->stream + off);
    if (st == VG_ERR_TOO_LARGE)
        check(body > p->max_frame, "too large, yet within max_frame");
    else
        check(body <= p->max_frame && (body == 0 || p->len - off - VG_FRAME_HEADER >= body),
              "a parse error before the whole frame arrived");
}

/* Takes every complete frame now buffered. The frames of one drain are
 * checked only after the last vg_decoder_next, as the broker uses them: they
 * must stay valid until the next vg_decoder_space. Returns false on an error. */
static bool drain(const plan *p, vg_decoder *d, outcome *o, size_t fed, bool verify)
{
    static vg_frame batch[MAX_FRAMES];
    size_t first = o->n;
    bool more = true;
    while (more) {
        vg_frame f;
        const char *why = NULL;
        vg_status st = vg_decoder_next(d, &f, &why);
        if (st == VG_AGAIN)
            break;
        if (st != VG_OK) {
            o->final = st;
            check_error(p, st, why, o->consumed);
            more = false;
            break;
        }
        check(o->n < MAX_FRAMES, "more frames than the input can hold");
        o->off[o->n] = o->consumed;
        o->len[o->n] = f.raw_len;
        o->type[o->n] = f.type;
        batch[o->n - first] = f;
        o->n++;
        o->consumed += f.raw_len;
        check(o->consumed <= fed, "decoder returned bytes not yet fed");
    }
    if (verify)
        for (size_t i = first; i < o->n; i++)
            check_frame(p, &batch[i - first], o->off[i]);
    check(vg_decoder_pending(d) == fed - o->consumed, "pending bytes miscounted");
    return more;
}

/* Writes n bytes the way the plan says. */
static void put(const plan *p, vg_decoder *d, const uint8_t *src, size_t n)
{
    if (!p->space_commit) {
        check(vg_decoder_feed(d, src, n) == VG_OK, "vg_decoder_feed ran out of memory");
        return;
    }
    while (n > 0) {
        uint8_t *space;
        size_t avail;
        check(vg_decoder_space(d, &space, &avail) == VG_OK, "vg_decoder_space failed");
        check(avail >= 1, "vg_decoder_space offered no room");
        size_t k = avail < n ? avail : n;
        memcpy(space, src, k);
        vg_decoder_commit(d, k);
        src += k;
        n -= k;
    }
}

static void decode(const plan *p, bool in_pieces, outcome *o)
{
    memset(o, 0, sizeof *o);
    o->final = VG_AGAIN;
    vg_decoder *d = vg_decoder_create(p->read_chunk, p->max_frame);
    check(d != NULL, "vg_decoder_create failed");
    size_t fed = 0, turn = 0;
    while (fed < p->len) {
        size_t k = p->len - fed;
        if (in_pieces && p->nsizes > 0) {
            uint8_t s = p->sizes[turn++ % p->nsizes];
            if (s != 255 && (size_t)s + 1 < k)
                k = (size_t)s + 1;
        }
        put(p, d, p->stream + fed, k);
        fed += k;
        if (!drain(p, d, o, fed, in_pieces))
            break;
    }
    if (o->final == VG_AGAIN && fed == p->len) { /* the stream ended: the rest is incomplete */
        size_t left = p->len - o->consumed;
        check(left < VG_FRAME_HEADER || vg_be32(p->stream + o->consumed) > left - VG_FRAME_HEADER,
              "a complete frame was left in the decoder");
    }
    vg_decoder_destroy(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static outcome pieces, whole;
    if (size < 1)
        return 0;
    plan p = {0};
    p.nsizes = data[0] & 0x0f;
    p.max_frame = max_frames[(data[0] >> 4) & 3];
    p.space_commit = (data[0] & 0x40) != 0;
    p.read_chunk = (data[0] & 0x80) ? 64 : 64 * 1024;
    if (size < 1 + p.nsizes)
        return 0;
    p.sizes = data + 1;
    p.stream = data + 1 + p.nsizes;
    p.len = size - 1 - p.nsizes;
    if (p.len / (VG_FRAME_HEADER + 1) >= MAX_FRAMES)
        return 0; /* too long to record every frame; libFuzzer's inputs are far shorter */

    decode(&p, true, &pieces);
    decode(&p, false, &whole);
    check(pieces.n == whole.n, "frame count depends on how the stream was cut");
    check(pieces.final == whole.final, "final status depends on how the stream was cut");
    check(pieces.consumed == whole.consumed, "consumed bytes depend on how the stream was cut");
    for (size_t i = 0; i < pieces.n; i++)
        check(pieces.off[i] == whole.off[i] && pieces.len[i] == whole.len[i] &&
                  pieces.type[i] == whole.type[i],
              "a frame depends on how the stream was cut");
    return 0;
}
