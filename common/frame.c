#include "frame.h"

#include <msgpack.h>
#include <string.h>

#include "mpread.h"

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
    case VG_FRAME_MSG_TYPE1: return "MSG_TYPE1";
    case VG_FRAME_MSG_TYPE2: return "MSG_TYPE2";
    }
    return "UNKNOWN";
}

/* ---- parsing ---- */

/* Element count of each known type, including the type itself; 0 if unknown. */
static uint32_t arity(uint64_t type)
{
    switch (type) {
    case VG_FRAME_PING:
    case VG_FRAME_PONG: return 1;
    case VG_FRAME_OK:
    case VG_FRAME_UNSUB: return 2;
    case VG_FRAME_SUB:
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2: return 3;
    case VG_FRAME_CONNECT:
    case VG_FRAME_ERR: return 4;
    case VG_FRAME_INFO: return 5;
    }
    return 0;
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
    uint64_t type;
    CHECK(vg_mp_read_array(&r, &count), "frame is not a msgpack array");
    if (count == 0) {
        *why = "frame array is empty";
        return VG_ERR_MALFORMED;
    }
    CHECK(vg_mp_read_uint(&r, &type), "frame type is not a non-negative integer");
    uint32_t want = arity(type);
    if (want == 0) {
        *why = "unknown frame type";
        return VG_ERR_UNKNOWN_TYPE;
    }
    if (count != want) {
        *why = "wrong number of elements for the frame type";
        return VG_ERR_MALFORMED;
    }
    f->type = (vg_frame_type)type;

    bool nil;
    switch (f->type) {
    case VG_FRAME_PING:
    case VG_FRAME_PONG:
        break;
    case VG_FRAME_CONNECT:
        CHECK(vg_mp_read_uint(&r, &f->version), "CONNECT version is not an integer");
        CHECK(vg_mp_read_str(&r, &f->name, &f->name_len), "CONNECT name is not a string");
        CHECK(vg_mp_read_str_or_nil(&r, &f->token, &f->token_len, &nil),
              "CONNECT token is neither a string nor nil");
        break;
    case VG_FRAME_INFO:
        CHECK(vg_mp_read_uint(&r, &f->version), "INFO version is not an integer");
        CHECK(vg_mp_read_str(&r, &f->name, &f->name_len), "INFO server is not a string");
        CHECK(vg_mp_read_uint(&r, &f->client_id), "INFO client id is not an integer");
        CHECK(vg_mp_read_uint(&r, &f->max_payload), "INFO max payload is not an integer");
        break;
    case VG_FRAME_OK:
    case VG_FRAME_UNSUB:
        CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
        break;
    case VG_FRAME_ERR:
        CHECK(vg_mp_read_uint(&r, &f->code), "ERR code is not an integer");
        CHECK(vg_mp_read_str(&r, &f->reason, &f->reason_len), "ERR reason is not a string");
        CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
        break;
    case VG_FRAME_SUB:
        CHECK(vg_mp_read_uint(&r, &f->sid), "sid is not an integer");
        CHECK(vg_mp_read_str(&r, &f->topic, &f->topic_len), "topic is not a string");
        break;
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2:
        CHECK(vg_mp_read_str(&r, &f->topic, &f->topic_len), "topic is not a string");
        CHECK(vg_mp_read_bytes(&r, &f->payload, &f->payload_len),
              "payload is neither bin nor str");
        break;
    }
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

vg_status vg_frame_put_connect(vg_buf *out, uint64_t version, const char *name, const char *token)
{
    encoder e;
    if (begin(&e, out, 4, VG_FRAME_CONNECT) != VG_OK)
        return VG_ERR_NOMEM;
    int failed = msgpack_pack_uint64(&e.pk, version) | pack_str(&e.pk, name, strlen(name));
    failed |= token ? pack_str(&e.pk, token, strlen(token)) : msgpack_pack_nil(&e.pk);
    return finish(&e, failed);
}

vg_status vg_frame_put_info(vg_buf *out, uint64_t version, const char *server, uint64_t client_id,
                            uint64_t max_payload)
{
    encoder e;
    if (begin(&e, out, 5, VG_FRAME_INFO) != VG_OK)
        return VG_ERR_NOMEM;
    int failed = msgpack_pack_uint64(&e.pk, version) | pack_str(&e.pk, server, strlen(server)) |
                 msgpack_pack_uint64(&e.pk, client_id) | msgpack_pack_uint64(&e.pk, max_payload);
    return finish(&e, failed);
}

vg_status vg_frame_put_ok(vg_buf *out, uint64_t sid)
{
    encoder e;
    if (begin(&e, out, 2, VG_FRAME_OK) != VG_OK)
        return VG_ERR_NOMEM;
    return finish(&e, msgpack_pack_uint64(&e.pk, sid));
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

vg_status vg_frame_put_sub(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len)
{
    encoder e;
    if (begin(&e, out, 3, VG_FRAME_SUB) != VG_OK)
        return VG_ERR_NOMEM;
    int failed = msgpack_pack_uint64(&e.pk, sid) | pack_str(&e.pk, topic, topic_len);
    return finish(&e, failed);
}

vg_status vg_frame_put_unsub(vg_buf *out, uint64_t sid)
{
    encoder e;
    if (begin(&e, out, 2, VG_FRAME_UNSUB) != VG_OK)
        return VG_ERR_NOMEM;
    return finish(&e, msgpack_pack_uint64(&e.pk, sid));
}

static size_t str_header(size_t n) { return n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5; }

static size_t bin_header(size_t n) { return n < 256 ? 2 : n < 65536 ? 3 : 5; }

size_t vg_frame_msg_size(size_t topic_len, size_t payload_len)
{
    /* fixarray, fixint type, str topic, bin payload */
    return VG_FRAME_HEADER + 1 + 1 + str_header(topic_len) + topic_len + bin_header(payload_len) +
           payload_len;
}

/* msgpack-c write callback over a region sized in advance. */
typedef struct {
    uint8_t *p;
    uint8_t *end;
} cursor;

static int cursor_write(void *data, const char *src, size_t n)
{
    cursor *c = data;
    if ((size_t)(c->end - c->p) < n)
        return -1; /* cannot happen when the size came from vg_frame_msg_size */
    if (n > 0)
        memcpy(c->p, src, n);
    c->p += n;
    return 0;
}

void vg_frame_write_msg(uint8_t *dst, vg_frame_type type, const char *topic, size_t topic_len,
                        const void *payload, size_t payload_len)
{
    size_t body = vg_frame_msg_size(topic_len, payload_len) - VG_FRAME_HEADER;
    dst[0] = (uint8_t)(body >> 24);
    dst[1] = (uint8_t)(body >> 16);
    dst[2] = (uint8_t)(body >> 8);
    dst[3] = (uint8_t)body;
    cursor c = {dst + VG_FRAME_HEADER, dst + VG_FRAME_HEADER + body};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &c, cursor_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, type);
    pack_str(&pk, topic, topic_len);
    msgpack_pack_bin(&pk, payload_len);
    msgpack_pack_bin_body(&pk, payload, payload_len);
}

size_t vg_frame_msg_seq_size(size_t topic_len, size_t payload_len)
{
    return vg_frame_msg_size(topic_len, payload_len) + 9; /* uint64 0xcf + 8 bytes */
}

void vg_frame_write_msg_seq(uint8_t *dst, vg_frame_type type, const char *topic, size_t topic_len,
                            const void *payload, size_t payload_len, uint64_t seq)
{
    size_t body = vg_frame_msg_seq_size(topic_len, payload_len) - VG_FRAME_HEADER;
    dst[0] = (uint8_t)(body >> 24);
    dst[1] = (uint8_t)(body >> 16);
    dst[2] = (uint8_t)(body >> 8);
    dst[3] = (uint8_t)body;
    cursor c = {dst + VG_FRAME_HEADER, dst + VG_FRAME_HEADER + body};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &c, cursor_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint64(&pk, type);
    pack_str(&pk, topic, topic_len);
    msgpack_pack_bin(&pk, payload_len);
    msgpack_pack_bin_body(&pk, payload, payload_len);
    msgpack_pack_fix_uint64(&pk, seq);
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
