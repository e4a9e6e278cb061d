#include "frame.h"

#include <msgpack.h>
#include <string.h>

#include "mpread.h"
#include "proto.h"

const char *vg_frame_type_name(uint64_t type)
{
    switch (type) {
    case VG_FRAME_PING: return "PING";
    case VG_FRAME_PONG: return "PONG";
    case VG_FRAME_CONNECT: return "CONNECT";
    case VG_FRAME_INFO: return "INFO";
    case VG_FRAME_OK: return "OK";
    case VG_FRAME_ERR: return "ERR";
    case VG_FRAME_SUB: return "SUB";
    case VG_FRAME_UNSUB: return "UNSUB";
    case VG_FRAME_GAP: return "GAP";
    case VG_FRAME_ACK: return "ACK";
    case VG_FRAME_POS: return "POS";
    case VG_FRAME_MSG_TYPE1: return "MSG_TYPE1";
    case VG_FRAME_MSG_TYPE2: return "MSG_TYPE2";
    }
    return "UNKNOWN";
}

/* ---- parsing ---- */

/* The element counts, the type included, of a type's version-1 and
 * version-2 shapes and of a third and fourth one (SUB with a durable name,
 * SUB with a queue group; ACK with a topic; MSG with a sid) (0: it has no
 * such shape); open: a later version may add scalars after the version-2
 * fields. */
typedef struct {
    uint32_t v1, v2;
    bool open;
    uint32_t v3, v4;
} shape;

/* False for a type this codec does not know. */
static bool shape_of(uint64_t type, shape *s)
{
    switch (type) {
    case VG_FRAME_PING:
    case VG_FRAME_PONG: *s = (shape){1, 0, false, 0, 0}; return true;
    case VG_FRAME_UNSUB: *s = (shape){2, 3, false, 0, 0}; return true;
    case VG_FRAME_OK: *s = (shape){2, 4, false, 0, 0}; return true;
    case VG_FRAME_ERR: *s = (shape){4, 0, false, 0, 0}; return true;
    case VG_FRAME_SUB: *s = (shape){3, 6, false, 7, 8}; return true;
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2: *s = (shape){3, 4, false, 5, 0}; return true;
    case VG_FRAME_CONNECT: *s = (shape){4, 6, true, 0, 0}; return true;
    case VG_FRAME_INFO: *s = (shape){5, 7, true, 0, 0}; return true;
    case VG_FRAME_GAP: *s = (shape){0, 6, false, 0, 0}; return true;
    case VG_FRAME_ACK: *s = (shape){0, 3, false, 4, 0}; return true;
    case VG_FRAME_POS: *s = (shape){0, 5, false, 0, 0}; return true;
    }
    return false;
}

/* CONNECT and INFO: versions 0 and 1 have the version-1 shape, version 2
 * exactly the version-2 one, and a later version at least as many elements,
 * so that a newer peer's extra fields do not break this parser. */
static bool version_fits(uint64_t version, uint32_t count, const shape *s)
{
    if (version < 2)
        return count == s->v1;
    return version == 2 ? count == s->v2 : count >= s->v2;
}

/* A version-2 SUB's rules beyond its element types; NULL if it keeps them. */
static const char *sub_problem(uint64_t start, const vg_frame *f)
{
    if (start > VG_SUB_AGO)
        return "unknown SUB start";
    if (start <= VG_SUB_FIRST && (f->epoch != 0 || f->position != 0))
        return "SUB NEW or FIRST with a nonzero epoch or position";
    return NULL;
}

/* A GAP's rules beyond its element types; NULL if it keeps them. */
static const char *gap_problem(const vg_frame *f)
{
    if (f->sid == 0)
        return "GAP with sid 0";
    switch (f->code) {
    case VG_GAP_RETENTION:
        return f->from >= 1 && f->to >= f->from ? NULL : "GAP range is empty or starts at 0";
    case VG_GAP_EPOCH: return f->to == 0 ? NULL : "GAP for another epoch with a known end";
    }
    return "unknown GAP reason";
}

#define CHECK(expr, msg)                                                                       \
    do {                                                                                       \
        if ((expr) != VG_OK) {                                                                 \
            *why = (msg);                                                                      \
            return VG_ERR_MALFORMED;                                                           \
        }                                                                                      \
    } while (0)

vg_status vg_frame_parse(const uint8_t *body, size_t len, vg_frame *f, const char **why)
{
    static const char *unused;
    if (why == NULL)
        why = &unused;
    memset(f, 0, sizeof *f);

    vg_mp_reader r;
    vg_mp_init(&r, body, len);
    uint32_t count;
    uint64_t type, start;
    CHECK(vg_mp_read_array(&r, &count), "frame is not a msgpack array");
    if (count == 0) {
        *why = "frame array is empty";
        return VG_ERR_MALFORMED;
    }
    CHECK(vg_mp_read_uint(&r, &type), "frame type is not a non-negative integer");
    shape s;
    if (!shape_of(type, &s)) {
        *why = "unknown frame type";
        return VG_ERR_UNKNOWN_TYPE;
    }
    bool third = s.v3 != 0 && count == s.v3;
    bool fourth = s.v4 != 0 && count == s.v4;
    if (count != s.v1 && count != s.v2 && !third && !fourth && !(s.open && count > s.v2)) {
        *why = "wrong number of elements for the frame type";
        return VG_ERR_MALFORMED;
    }
    f->type = (vg_frame_type)type;
    f->form = count == s.v1 ? 1 : third ? 3 : fourth ? 4 : 2;
    bool v2 = f->form >= 2;
    uint64_t flag;

    bool nil;
    const char *problem = NULL;
    switch (f->type) {
    case VG_FRAME_PING:
    case VG_FRAME_PONG:
        break;
    case VG_FRAME_CONNECT:
        CHECK(vg_mp_read_uint(&r, &f->version), "CONNECT version is not an integer");
        if (!version_fits(f->version, count, &s)) {
            *why = "CONNECT's element count does not fit its version";
            return VG_ERR_MALFORMED;
        }
        CHECK(vg_mp_read_str(&r, &f->name, &f->name_len), "CONNECT name is not a string");
        CHECK(vg_mp_read_str_or_nil(&r, &f->token, &f->token_len, &nil),
              "CONNECT token is neither a string nor nil");
        if (v2) {
            CHECK(vg_mp_read_uint(&r, &f->publisher), "CONNECT publisher is not an integer");
            CHECK(vg_mp_read_uint(&r, &f->resend_from), "CONNECT resend_from is not an integer");
        }
        break;
    case VG_FRAME_INFO:
        CHECK(vg_mp_read_uint(&r, &f->version), "INFO version is not an integer");
        if (!version_fits(f->version, count, &s)) {
            *why = "INFO's element count does not fit its version";
            return VG_ERR_MALFORMED;
        }
        CHECK(vg_mp_read_str(&r, &f->name, &f->name_len), "INFO server is not a string");
        CHECK(vg_mp_read_uint(&r, &f->client_id), "INFO client id is not an integer");
        CHECK(vg_mp_read_uint(&r, &f->max_payload), "INFO max payload is not an integer");
        if (v2) {
            CHECK(vg_mp_read_uint(&r, &f->epoch), "INFO epoch is not an integer");
            CHECK(vg_mp_read_uint(&r, &f->publisher_acked),
                  "INFO publisher_acked is not an integer");
        }
        break;
    case VG_FRAME_OK:
        CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
        if (v2) {
            CHECK(vg_mp_read_uint(&r, &f->epoch), "OK epoch is not an integer");
            CHECK(vg_mp_read_uint(&r, &f->next), "OK next is not an integer");
        }
        break;
    case VG_FRAME_UNSUB:
        CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
        if (v2) {
            CHECK(vg_mp_read_uint(&r, &flag), "UNSUB delete is not an integer");
            if (flag > 1)
                problem = "UNSUB delete is neither 0 nor 1";
            f->delete_durable = flag == 1;
        }
        break;
    case VG_FRAME_ACK:
        CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
        CHECK(vg_mp_read_uint(&r, &f->seq), "ACK sequence number is not an integer");
        if (f->form == 3)
            CHECK(vg_mp_read_str(&r, &f->topic, &f->topic_len), "ACK topic is not a string");
        if (f->sid == 0)
            problem = "ACK with sid 0";
        else if (f->seq == 0)
            problem = "ACK sequence number 0";
        break;
    case VG_FRAME_ERR:
        CHECK(vg_mp_read_uint(&r, &f->code), "ERR code is not an integer");
        CHECK(vg_mp_read_str(&r, &f->reason, &f->reason_len), "ERR reason is not a string");
        CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
        break;
    case VG_FRAME_SUB:
        CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
        CHECK(vg_mp_read_str(&r, &f->topic, &f->topic_len), "topic is not a string");
        if (v2) {
            CHECK(vg_mp_read_uint(&r, &start), "SUB start is not an integer");
            CHECK(vg_mp_read_uint(&r, &f->epoch), "SUB epoch is not an integer");
            CHECK(vg_mp_read_uint(&r, &f->position), "SUB position is not an integer");
            problem = sub_problem(start, f);
            if (problem == NULL)
                f->start = (vg_sub_start)start;
        }
        if (f->form >= 3) {
            CHECK(vg_mp_read_str(&r, &f->durable, &f->durable_len),
                  "SUB durable name is not a string");
            if (f->form == 4 && f->durable_len == 0)
                f->durable = NULL; /* a queue group that is not durable */
            else if (problem == NULL && !vg_durable_name_ok(f->durable, f->durable_len))
                problem = "bad durable name";
        }
        if (f->form == 4) {
            CHECK(vg_mp_read_str(&r, &f->queue, &f->queue_len), "SUB queue name is not a string");
            if (problem == NULL && !vg_durable_name_ok(f->queue, f->queue_len))
                problem = "bad queue name";
        }
        break;
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2:
        CHECK(vg_mp_read_str(&r, &f->topic, &f->topic_len), "topic is not a string");
        CHECK(vg_mp_read_bytes(&r, &f->payload, &f->payload_len),
              "payload is neither bin nor str");
        if (v2) {
            CHECK(vg_mp_read_uint(&r, &f->seq), "MSG sequence number is not an integer");
            if (f->seq == 0)
                problem = "MSG sequence number 0";
        }
        if (f->form == 3) {
            CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
            if (problem == NULL && f->sid == 0)
                problem = "MSG with sid 0";
        }
        break;
    case VG_FRAME_POS:
        CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
        CHECK(vg_mp_read_str(&r, &f->topic, &f->topic_len), "topic is not a string");
        CHECK(vg_mp_read_uint(&r, &f->epoch), "POS epoch is not an integer");
        CHECK(vg_mp_read_uint(&r, &f->next), "POS next is not an integer");
        if (f->sid == 0)
            problem = "POS with sid 0";
        else if (f->next == 0)
            problem = "POS next 0";
        break;
    case VG_FRAME_GAP:
        CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
        CHECK(vg_mp_read_str(&r, &f->topic, &f->topic_len), "topic is not a string");
        CHECK(vg_mp_read_uint(&r, &f->from), "GAP from is not an integer");
        CHECK(vg_mp_read_uint(&r, &f->to), "GAP to is not an integer");
        CHECK(vg_mp_read_uint(&r, &f->code), "GAP reason is not an integer");
        problem = gap_problem(f);
        break;
    }
    if (problem != NULL) {
        *why = problem;
        return VG_ERR_MALFORMED;
    }
    if (s.open) /* what a later version adds is skipped, but only scalars, within bounds */
        for (uint32_t i = s.v2; i < count; i++)
            CHECK(vg_mp_skip_scalar(&r), "a field after the version-2 ones is not a scalar");
    if (!vg_mp_at_end(&r)) {
        *why = "trailing bytes after the frame's msgpack value";
        return VG_ERR_MALFORMED;
    }
    return VG_OK;
}

/* ---- encoding, through msgpack-c's packer ---- */

static int buf_write(void *data, const char *p, size_t n)
{
    return vg_buf_append(data, p, n) == VG_OK ? 0 : -1;
}

typedef struct {
    vg_buf *out;
    size_t start;
    msgpack_packer pk;
} encoder;

static vg_status begin(encoder *e, vg_buf *out, uint32_t elements, uint64_t type)
{
    e->out = out;
    e->start = out->len;
    msgpack_packer_init(&e->pk, out, buf_write);
    static const uint8_t zero_len[VG_FRAME_HEADER];
    if (vg_buf_append(out, zero_len, sizeof zero_len) != VG_OK ||
        msgpack_pack_array(&e->pk, elements) != 0 || msgpack_pack_uint64(&e->pk, type) != 0) {
        out->len = e->start;
        return VG_ERR_NOMEM;
    }
    return VG_OK;
}

/* Patches the length prefix, or rolls the buffer back if any pack call failed. */
static vg_status finish(encoder *e, int failed)
{
    if (failed) {
        e->out->len = e->start;
        return VG_ERR_NOMEM;
    }
    size_t body = e->out->len - e->start - VG_FRAME_HEADER;
    uint8_t *p = e->out->data + e->start;
    p[0] = (uint8_t)(body >> 24);
    p[1] = (uint8_t)(body >> 16);
    p[2] = (uint8_t)(body >> 8);
    p[3] = (uint8_t)body;
    return VG_OK;
}

static int pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    return msgpack_pack_str(pk, len) | msgpack_pack_str_body(pk, s, len);
}

static vg_status put_bare(vg_buf *out, uint64_t type)
{
    encoder e;
    if (begin(&e, out, 1, type) != VG_OK)
        return VG_ERR_NOMEM;
    return finish(&e, 0);
}

vg_status vg_frame_put_ping(vg_buf *out) { return put_bare(out, VG_FRAME_PING); }

vg_status vg_frame_put_pong(vg_buf *out) { return put_bare(out, VG_FRAME_PONG); }

/* CONNECT in its version-1 shape, or with the version-2 fields (v2). */
static vg_status connect_frame(vg_buf *out, bool v2, uint64_t version, const char *name,
                               const char *token, uint64_t publisher, uint64_t resend_from)
{
    encoder e;
    if (begin(&e, out, v2 ? 6 : 4, VG_FRAME_CONNECT) != VG_OK)
        return VG_ERR_NOMEM;
    int failed = msgpack_pack_uint64(&e.pk, version) | pack_str(&e.pk, name, strlen(name));
    failed |= token ? pack_str(&e.pk, token, strlen(token)) : msgpack_pack_nil(&e.pk);
    if (v2)
        failed |= msgpack_pack_uint64(&e.pk, publisher) | msgpack_pack_uint64(&e.pk, resend_from);
    return finish(&e, failed);
}

vg_status vg_frame_put_connect(vg_buf *out, uint64_t version, const char *name, const char *token)
{
    return connect_frame(out, false, version, name, token, 0, 0);
}

vg_status vg_frame_put_connect2(vg_buf *out, uint64_t version, const char *name, const char *token,
                                uint64_t publisher, uint64_t resend_from)
{
    return connect_frame(out, true, version, name, token, publisher, resend_from);
}

/* INFO in its version-1 shape, or with the version-2 fields (v2). */
static vg_status info_frame(vg_buf *out, bool v2, uint64_t version, const char *server,
                            uint64_t client_id, uint64_t max_payload, uint64_t epoch,
                            uint64_t publisher_acked)
{
    encoder e;
    if (begin(&e, out, v2 ? 7 : 5, VG_FRAME_INFO) != VG_OK)
        return VG_ERR_NOMEM;
    int failed = msgpack_pack_uint64(&e.pk, version) | pack_str(&e.pk, server, strlen(server)) |
                 msgpack_pack_uint64(&e.pk, client_id) | msgpack_pack_uint64(&e.pk, max_payload);
    if (v2)
        failed |= msgpack_pack_uint64(&e.pk, epoch) | msgpack_pack_uint64(&e.pk, publisher_acked);
    return finish(&e, failed);
}

vg_status vg_frame_put_info(vg_buf *out, uint64_t version, const char *server, uint64_t client_id,
                            uint64_t max_payload)
{
    return info_frame(out, false, version, server, client_id, max_payload, 0, 0);
}

vg_status vg_frame_put_info2(vg_buf *out, uint64_t version, const char *server, uint64_t client_id,
                             uint64_t max_payload, uint64_t epoch, uint64_t publisher_acked)
{
    return info_frame(out, true, version, server, client_id, max_payload, epoch, publisher_acked);
}

/* OK in its version-1 shape, or with the version-2 fields (v2). */
static vg_status ok_frame(vg_buf *out, bool v2, uint64_t sid, uint64_t epoch, uint64_t next)
{
    encoder e;
    if (begin(&e, out, v2 ? 4 : 2, VG_FRAME_OK) != VG_OK)
        return VG_ERR_NOMEM;
    int failed = msgpack_pack_uint64(&e.pk, sid);
    if (v2)
        failed |= msgpack_pack_uint64(&e.pk, epoch) | msgpack_pack_uint64(&e.pk, next);
    return finish(&e, failed);
}

vg_status vg_frame_put_ok(vg_buf *out, uint64_t sid) { return ok_frame(out, false, sid, 0, 0); }

vg_status vg_frame_put_ok2(vg_buf *out, uint64_t sid, uint64_t epoch, uint64_t next)
{
    return ok_frame(out, true, sid, epoch, next);
}

vg_status vg_frame_put_err(vg_buf *out, uint64_t code, const char *reason, uint64_t sid)
{
    encoder e;
    if (begin(&e, out, 4, VG_FRAME_ERR) != VG_OK)
        return VG_ERR_NOMEM;
    int failed = msgpack_pack_uint64(&e.pk, code) | pack_str(&e.pk, reason, strlen(reason)) |
                 msgpack_pack_uint64(&e.pk, sid);
    return finish(&e, failed);
}

/* SUB in its version-1 shape, with a start position (v2), with a start
 * position and a durable name (durable not NULL), or with both and a queue
 * group (queue not NULL; durable "" for none). */
static vg_status sub_frame(vg_buf *out, bool v2, uint64_t sid, const char *topic,
                           size_t topic_len, vg_sub_start start, uint64_t epoch,
                           uint64_t position, const char *durable, size_t durable_len,
                           const char *queue, size_t queue_len)
{
    encoder e;
    if (begin(&e, out, queue ? 8 : durable ? 7 : v2 ? 6 : 3, VG_FRAME_SUB) != VG_OK)
        return VG_ERR_NOMEM;
    int failed = msgpack_pack_uint64(&e.pk, sid) | pack_str(&e.pk, topic, topic_len);
    if (v2)
        failed |= msgpack_pack_uint64(&e.pk, (uint64_t)start) |
                  msgpack_pack_uint64(&e.pk, epoch) | msgpack_pack_uint64(&e.pk, position);
    if (durable != NULL || queue != NULL)
        failed |= pack_str(&e.pk, durable != NULL ? durable : "", durable != NULL ? durable_len : 0);
    if (queue != NULL)
        failed |= pack_str(&e.pk, queue, queue_len);
    return finish(&e, failed);
}

vg_status vg_frame_put_sub(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len)
{
    return sub_frame(out, false, sid, topic, topic_len, VG_SUB_NEW, 0, 0, NULL, 0, NULL, 0);
}

vg_status vg_frame_put_sub2(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len,
                            vg_sub_start start, uint64_t epoch, uint64_t position)
{
    return sub_frame(out, true, sid, topic, topic_len, start, epoch, position, NULL, 0, NULL, 0);
}

vg_status vg_frame_put_sub_durable(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len,
                                   vg_sub_start start, uint64_t epoch, uint64_t position,
                                   const char *durable, size_t durable_len)
{
    return sub_frame(out, true, sid, topic, topic_len, start, epoch, position,
                     durable != NULL ? durable : "", durable_len, NULL, 0);
}

vg_status vg_frame_put_sub_queue(vg_buf *out, uint64_t sid, const char *subject, size_t len,
                                 vg_sub_start start, uint64_t epoch, uint64_t position,
                                 const char *durable, size_t durable_len, const char *queue,
                                 size_t queue_len)
{
    return sub_frame(out, true, sid, subject, len, start, epoch, position,
                     durable_len > 0 ? durable : NULL, durable_len, queue, queue_len);
}

/* UNSUB, with the delete flag (v2) or without. */
static vg_status unsub_frame(vg_buf *out, bool v2, uint64_t sid)
{
    encoder e;
    if (begin(&e, out, v2 ? 3 : 2, VG_FRAME_UNSUB) != VG_OK)
        return VG_ERR_NOMEM;
    int failed = msgpack_pack_uint64(&e.pk, sid);
    if (v2)
        failed |= msgpack_pack_uint64(&e.pk, 1);
    return finish(&e, failed);
}

vg_status vg_frame_put_unsub(vg_buf *out, uint64_t sid) { return unsub_frame(out, false, sid); }

vg_status vg_frame_put_unsub_delete(vg_buf *out, uint64_t sid) { return unsub_frame(out, true, sid); }

vg_status vg_frame_put_ack(vg_buf *out, uint64_t sid, uint64_t seq)
{
    encoder e;
    if (begin(&e, out, 3, VG_FRAME_ACK) != VG_OK)
        return VG_ERR_NOMEM;
    return finish(&e, msgpack_pack_uint64(&e.pk, sid) | msgpack_pack_uint64(&e.pk, seq));
}

vg_status vg_frame_put_ack_topic(vg_buf *out, uint64_t sid, uint64_t seq, const char *topic,
                                 size_t topic_len)
{
    encoder e;
    if (begin(&e, out, 4, VG_FRAME_ACK) != VG_OK)
        return VG_ERR_NOMEM;
    return finish(&e, msgpack_pack_uint64(&e.pk, sid) | msgpack_pack_uint64(&e.pk, seq) |
                          pack_str(&e.pk, topic, topic_len));
}

vg_status vg_frame_put_pos(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len,
                           uint64_t epoch, uint64_t next)
{
    encoder e;
    if (begin(&e, out, 5, VG_FRAME_POS) != VG_OK)
        return VG_ERR_NOMEM;
    return finish(&e, msgpack_pack_uint64(&e.pk, sid) | pack_str(&e.pk, topic, topic_len) |
                          msgpack_pack_uint64(&e.pk, epoch) | msgpack_pack_uint64(&e.pk, next));
}

vg_status vg_frame_put_gap(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len,
                           uint64_t from, uint64_t to, vg_gap_reason reason)
{
    encoder e;
    if (begin(&e, out, 6, VG_FRAME_GAP) != VG_OK)
        return VG_ERR_NOMEM;
    int failed = msgpack_pack_uint64(&e.pk, sid) | pack_str(&e.pk, topic, topic_len) |
                 msgpack_pack_uint64(&e.pk, from) | msgpack_pack_uint64(&e.pk, to) |
                 msgpack_pack_uint64(&e.pk, (uint64_t)reason);
    return finish(&e, failed);
}

static size_t str_header(size_t n) { return n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5; }

static size_t bin_header(size_t n) { return n < 256 ? 2 : n < 65536 ? 3 : 5; }

size_t vg_frame_msg_size(size_t topic_len, size_t payload_len)
{
    /* fixarray, fixint type, str topic, bin payload */
    return VG_FRAME_HEADER + 1 + 1 + str_header(topic_len) + topic_len + bin_header(payload_len) +
           payload_len;
}

/* Writes n as a big-endian integer of width bytes at p; returns p + width. */
static uint8_t *put_be(uint8_t *p, uint64_t n, int width)
{
    for (int i = width - 1; i >= 0; i--)
        *p++ = (uint8_t)(n >> (8 * i));
    return p;
}

/* Encodes [type, topic, payload] or, with_seq, [type, topic, payload, seq]
 * into dst, which holds exactly the frame's size. Written byte by byte in
 * the encodings msgpack-c's packer chooses (fixarray, a positive fixint
 * type, the smallest str and bin headers, the seq as a fixed uint64), which
 * the codec tests check against msgpack-c: this is every message's path,
 * in the client and into the broker's log, and the packer's callback per
 * field cost more than the copy of a small payload. */
static void write_msg(uint8_t *dst, vg_frame_type type, const char *topic, size_t topic_len,
                      const void *payload, size_t payload_len, bool with_seq, uint64_t seq,
                      bool with_sid, uint64_t sid)
{
    size_t body = vg_frame_msg_size(topic_len, payload_len) + (with_seq ? 9 : 0) +
                  (with_sid ? 9 : 0) - VG_FRAME_HEADER;
    uint8_t *p = put_be(dst, body, 4);
    *p++ = with_sid ? 0x95 : with_seq ? 0x94 : 0x93;
    *p++ = (uint8_t)type; /* 11 or 21: a positive fixint */
    if (topic_len < 32) {
        *p++ = (uint8_t)(0xa0 | topic_len);
    } else if (topic_len < 256) {
        *p++ = 0xd9;
        p = put_be(p, topic_len, 1);
    } else if (topic_len < 65536) {
        *p++ = 0xda;
        p = put_be(p, topic_len, 2);
    } else {
        *p++ = 0xdb;
        p = put_be(p, topic_len, 4);
    }
    memcpy(p, topic, topic_len);
    p += topic_len;
    if (payload_len < 256) {
        *p++ = 0xc4;
        p = put_be(p, payload_len, 1);
    } else if (payload_len < 65536) {
        *p++ = 0xc5;
        p = put_be(p, payload_len, 2);
    } else {
        *p++ = 0xc6;
        p = put_be(p, payload_len, 4);
    }
    if (payload_len > 0)
        memcpy(p, payload, payload_len);
    p += payload_len;
    if (with_seq) {
        *p++ = 0xcf; /* fixed width: a record's size is known before its number */
        p = put_be(p, seq, 8);
    }
    if (with_sid) {
        *p++ = 0xcf;
        put_be(p, sid, 8);
    }
}

void vg_frame_write_msg(uint8_t *dst, vg_frame_type type, const char *topic, size_t topic_len,
                        const void *payload, size_t payload_len)
{
    write_msg(dst, type, topic, topic_len, payload, payload_len, false, 0, false, 0);
}

size_t vg_frame_msg_seq_size(size_t topic_len, size_t payload_len)
{
    return vg_frame_msg_size(topic_len, payload_len) + 9; /* uint64 0xcf + 8 bytes */
}

void vg_frame_write_msg_seq(uint8_t *dst, vg_frame_type type, const char *topic, size_t topic_len,
                            const void *payload, size_t payload_len, uint64_t seq)
{
    write_msg(dst, type, topic, topic_len, payload, payload_len, true, seq, false, 0);
}

size_t vg_frame_msg_qsize(size_t topic_len, size_t payload_len)
{
    return vg_frame_msg_size(topic_len, payload_len) + 18; /* seq and sid as uint64s */
}

void vg_frame_write_msg_q(uint8_t *dst, vg_frame_type type, const char *topic, size_t topic_len,
                          const void *payload, size_t payload_len, uint64_t seq, uint64_t sid)
{
    write_msg(dst, type, topic, topic_len, payload, payload_len, true, seq, true, sid);
}

vg_status vg_frame_put_msg(vg_buf *out, vg_frame_type type, const char *topic, size_t topic_len,
                           const void *payload, size_t payload_len)
{
    size_t n = vg_frame_msg_size(topic_len, payload_len);
    if (vg_buf_reserve(out, n) != VG_OK)
        return VG_ERR_NOMEM;
    vg_frame_write_msg(out->data + out->len, type, topic, topic_len, payload, payload_len);
    out->len += n;
    return VG_OK;
}

vg_status vg_frame_put_msg_seq(vg_buf *out, vg_frame_type type, const char *topic,
                               size_t topic_len, const void *payload, size_t payload_len,
                               uint64_t seq)
{
    size_t n = vg_frame_msg_seq_size(topic_len, payload_len);
    if (vg_buf_reserve(out, n) != VG_OK)
        return VG_ERR_NOMEM;
    vg_frame_write_msg_seq(out->data + out->len, type, topic, topic_len, payload, payload_len, seq);
    out->len += n;
    return VG_OK;
}
