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
    VG_FRAME_GAP = 9, /* version 2 only */
    VG_FRAME_ACK = 10, /* version 2 only: client -> broker, a durable's progress */
    VG_FRAME_POS = 12, /* version 2 only: a pattern subscription's position in one topic */
    VG_FRAME_MSG_TYPE1 = 11,
    VG_FRAME_MSG_TYPE2 = 21,
} vg_frame_type;

/* Where a version-2 SUB starts (docs/protocol.md). */
typedef enum {
    VG_SUB_NEW = 0,   /* only messages appended after the SUB */
    VG_SUB_FIRST = 1, /* the oldest retained */
    VG_SUB_SEQ = 2,   /* sequence number `position` of log `epoch` */
    VG_SUB_AGO = 3,   /* the oldest appended within the last `position` ms */
} vg_sub_start;

/* Why a GAP's messages are missing: the wire values, and one the client
 * library finds by itself. */
typedef enum {
    VG_GAP_RETENTION = 1,   /* from..to were dropped by retention */
    VG_GAP_EPOCH = 2,       /* the position is in another log; to is 0 (unknown loss) */
    VG_GAP_UNANNOUNCED = 3, /* never on the wire: a client saw a MSG skip ahead with no
                               GAP before it (a broker bug, reported all the same) */
} vg_gap_reason;

#define VG_FRAME_HEADER 4

/* A parsed frame. Pointers refer into the bytes it was parsed from. */
typedef struct {
    vg_frame_type type;
    uint8_t form; /* 1: the version-1 shape; 2: the version-2 one (GAP's and POS's only
                     shape; UNSUB with its delete flag); 3: SUB with a durable name, ACK
                     with a topic, MSG with a sid (a queue group's delivery); 4: SUB
                     with a queue group */
    const uint8_t *raw; /* the whole frame, length prefix included (set by the decoder) */
    size_t raw_len;
    uint64_t version;     /* CONNECT, INFO */
    uint64_t sid;         /* SUB, UNSUB, OK, ERR, GAP, ACK, POS, MSG form 3 (0: not about a
                             subscription) */
    uint64_t code;        /* ERR; GAP: the vg_gap_reason */
    uint64_t publisher;   /* CONNECT v2: the client's publisher identity (0: none) */
    uint64_t resend_from; /* CONNECT v2: the publisher number of its first MSG here */
    uint64_t epoch;       /* INFO, SUB, OK v2, POS: a message log's identity */
    uint64_t publisher_acked; /* INFO v2: the highest publisher number appended */
    vg_sub_start start;   /* SUB v2 */
    uint64_t position;    /* SUB v2: a sequence number (SEQ) or milliseconds (AGO) */
    uint64_t next;        /* OK v2, POS: the first sequence number the subscription delivers */
    uint64_t seq;         /* MSG v2, from the broker: the message's number, >= 1;
                             ACK: the last one processed (cumulative) */
    bool delete_durable;  /* UNSUB v2: also delete the durable subscription */
    uint64_t from, to;    /* GAP: the missing sequence numbers, inclusive */
    uint64_t client_id;   /* INFO */
    uint64_t max_payload; /* INFO */
    const char *name;     /* CONNECT: client name; INFO: server name */
    uint32_t name_len;
    const char *token;    /* CONNECT; NULL when absent */
    uint32_t token_len;
    const char *reason;   /* ERR */
    uint32_t reason_len;
    const char *topic;    /* SUB (a topic or a pattern), MSG, GAP, POS, ACK form 3 */
    uint32_t topic_len;
    const char *durable;  /* SUB form 3: the durable name (valid: vg_durable_name_ok);
                             NULL otherwise */
    uint32_t durable_len;
    const char *queue;    /* SUB form 4: the queue group's name (valid: vg_durable_name_ok) */
    uint32_t queue_len;
    const uint8_t *payload; /* MSG */
    uint32_t payload_len;
} vg_frame;

static inline bool vg_frame_is_msg(vg_frame_type t)
{
    return t == VG_FRAME_MSG_TYPE1 || t == VG_FRAME_MSG_TYPE2;
}

/* The lowest protocol version whose connections may carry f's shape: 1 for
 * the version-1 forms, 2 for the others (a version-2 CONNECT is how a
 * client offers version 2: the receiver decides about it). */
static inline uint64_t vg_frame_min_version(const vg_frame *f)
{
    return f->form >= 2 ? 2 : 1;
}

/* "PING", "MSG_TYPE1", ...; "UNKNOWN" for anything else. */
const char *vg_frame_type_name(uint64_t type);

static inline uint32_t vg_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Parses one frame body (the bytes after the length prefix) in either shape
 * of its type; f->form says which, and whether the connection allows it is
 * the receiver's decision. Returns VG_OK, VG_ERR_MALFORMED or
 * VG_ERR_UNKNOWN_TYPE; *why then names the problem (static). */
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

/* The version-2 shapes (docs/protocol.md). Versions are not checked: the
 * caller passes 2 or later to put_connect2 and put_info2. */
vg_status vg_frame_put_connect2(vg_buf *out, uint64_t version, const char *name, const char *token,
                                uint64_t publisher, uint64_t resend_from);
vg_status vg_frame_put_info2(vg_buf *out, uint64_t version, const char *server, uint64_t client_id,
                             uint64_t max_payload, uint64_t epoch, uint64_t publisher_acked);
vg_status vg_frame_put_sub2(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len,
                            vg_sub_start start, uint64_t epoch, uint64_t position);
vg_status vg_frame_put_ok2(vg_buf *out, uint64_t sid, uint64_t epoch, uint64_t next);
vg_status vg_frame_put_gap(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len,
                           uint64_t from, uint64_t to, vg_gap_reason reason);
/* SUB with a durable name: [7, sid, topic, start, epoch, position, durable]. */
vg_status vg_frame_put_sub_durable(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len,
                                   vg_sub_start start, uint64_t epoch, uint64_t position,
                                   const char *durable, size_t durable_len);
/* UNSUB that also deletes the durable subscription: [8, sid, 1]. */
vg_status vg_frame_put_unsub_delete(vg_buf *out, uint64_t sid);
/* ACK: [10, sid, seq], every message of sid's topic up to seq processed. */
vg_status vg_frame_put_ack(vg_buf *out, uint64_t sid, uint64_t seq);
/* ACK naming the topic, [10, sid, seq, topic]: for a pattern or queue sid. */
vg_status vg_frame_put_ack_topic(vg_buf *out, uint64_t sid, uint64_t seq, const char *topic,
                                 size_t topic_len);
/* SUB with a queue group: [7, sid, subject, start, epoch, position, durable
 * ("" when durable_len is 0), queue]. */
vg_status vg_frame_put_sub_queue(vg_buf *out, uint64_t sid, const char *subject, size_t len,
                                 vg_sub_start start, uint64_t epoch, uint64_t position,
                                 const char *durable, size_t durable_len, const char *queue,
                                 size_t queue_len);
/* POS: [12, sid, topic, epoch, next], a pattern subscription's position in
 * one of its topics (either direction; docs/protocol.md). */
vg_status vg_frame_put_pos(vg_buf *out, uint64_t sid, const char *topic, size_t topic_len,
                           uint64_t epoch, uint64_t next);
/* A MSG with its sequence number, as vg_frame_write_msg_seq encodes it. */
vg_status vg_frame_put_msg_seq(vg_buf *out, vg_frame_type type, const char *topic,
                               size_t topic_len, const void *payload, size_t payload_len,
                               uint64_t seq);

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

/* A queue group's delivery, [type, topic, payload, seq, sid], seq and sid
 * as 9-byte uint64s: exact size, then the encoder into that many bytes. */
size_t vg_frame_msg_qsize(size_t topic_len, size_t payload_len);
void vg_frame_write_msg_q(uint8_t *dst, vg_frame_type type, const char *topic, size_t topic_len,
                          const void *payload, size_t payload_len, uint64_t seq, uint64_t sid);

#endif
