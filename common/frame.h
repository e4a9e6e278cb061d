/* The frame codec: a 4-byte big-endian length, then one msgpack array whose
 * first element is the frame type (docs/protocol.md). Pure: bytes in, bytes out. */
#ifndef VG_FRAME_H
#define VG_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "status.h"

typedef enum {
    VG_FRAME_PING = 1,
    VG_FRAME_PONG = 2,
    VG_FRAME_CONNECT = 3,
    VG_FRAME_INFO = 4,
    VG_FRAME_OK = 5,
    VG_FRAME_ERR = 6,
    VG_FRAME_SUB = 7,
    VG_FRAME_UNSUB = 8,
    VG_FRAME_MSG_TYPE1 = 11,
    VG_FRAME_MSG_TYPE2 = 21,
} vg_frame_type;

#define VG_FRAME_HEADER 4

/* A parsed frame. Pointers refer into the bytes it was parsed from. */
typedef struct {
    vg_frame_type type;
    const uint8_t *raw; /* the whole frame, length prefix included (set by the decoder) */
    size_t raw_len;
    uint64_t version;     /* CONNECT, INFO */
    uint64_t sid;         /* SUB, UNSUB, OK, ERR (0: not about a subscription) */
    uint64_t code;        /* ERR */
    uint64_t client_id;   /* INFO */
    uint64_t max_payload; /* INFO */
    const char *name;     /* CONNECT: client name; INFO: server name */
    uint32_t name_len;
    const char *token;    /* CONNECT; NULL when absent */
    uint32_t token_len;
    const char *reason;   /* ERR */
    uint32_t reason_len;
    const char *topic;    /* SUB, MSG */
    uint32_t topic_len;
    const uint8_t *payload; /* MSG */
    uint32_t payload_len;
} vg_frame;

static inline bool vg_frame_is_msg(vg_frame_type t)
{
    return t == VG_FRAME_MSG_TYPE1 || t == VG_FRAME_MSG_TYPE2;
}

/* "PING", "MSG_TYPE1", ...; "UNKNOWN" for anything else. */
const char *vg_frame_type_name(uint64_t type);

static inline uint32_t vg_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Parses one frame body (the bytes after the length prefix). Returns VG_OK,
 * VG_ERR_MALFORMED or VG_ERR_UNKNOWN_TYPE; *why then names the problem (static). */
vg_status vg_frame_parse(const uint8_t *body, size_t len, vg_frame *out, const char **why);

/* Encoders append one whole frame, length prefix included, to out. On
 * VG_ERR_NOMEM out is left as it was. Strings are not validated here. */
vg_status vg_frame_put_ping(vg_buf *out);
vg_status vg_frame_put_pong(vg_buf *out);
vg_status vg_frame_put_connect(vg_buf *out, uint64_t version, const char *name,
                               const char *token);
vg_status vg_frame_put_info(vg_buf *out, uint64_t version, const char *server,
                            uint64_t client_id, uint64_t max_payload);
vg_status vg_frame_put_ok(vg_buf *out, uint64_t sid);
vg_status vg_frame_put_err(vg_buf *out, uint64_t code, const char *reason, uint64_t sid);
vg_status vg_frame_put_sub(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len);
vg_status vg_frame_put_unsub(vg_buf *out, uint64_t sid);
vg_status vg_frame_put_msg(vg_buf *out, vg_frame_type type, const char *topic, size_t topic_len,
                           const void *payload, size_t payload_len);

/* The exact encoded size of a MSG frame, length prefix included. */
size_t vg_frame_msg_size(size_t topic_len, size_t payload_len);

/* Encodes a MSG frame into dst, which holds exactly vg_frame_msg_size() bytes. */
void vg_frame_write_msg(uint8_t *dst, vg_frame_type type, const char *topic, size_t topic_len,
                        const void *payload, size_t payload_len);

/* The delivered form of a message on a version-2 connection,
 * [type, topic, payload, seq], with seq always as a 9-byte uint64 so that
 * a record's size does not depend on its number. Exact size, length prefix
 * included; then the encoder into exactly that many bytes. */
size_t vg_frame_msg_seq_size(size_t topic_len, size_t payload_len);
void vg_frame_write_msg_seq(uint8_t *dst, vg_frame_type type, const char *topic, size_t topic_len,
                            const void *payload, size_t payload_len, uint64_t seq);

#endif
