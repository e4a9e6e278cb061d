/* Wire-protocol constants shared by the broker and the client library (docs/protocol.md). */
#ifndef VG_PROTO_H
#define VG_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VG_PROTO_VERSION 2 /* the highest version this build speaks */
#define VG_PROTO_V1 1      /* the version-1 forms, still served to older clients */
#define VG_DEFAULT_PORT 7222
#define VG_DEFAULT_SERVER "127.0.0.1:7222"

#define VG_TOPIC_MAX_LEN 1024         /* hard protocol limit; the broker may set a lower one */
#define VG_DEFAULT_TOPIC_MAX_LEN 256
#define VG_DEFAULT_TOPIC_MAX_TOKENS 16
#define VG_DEFAULT_MAX_PAYLOAD (1024 * 1024)
#define VG_HANDSHAKE_MAX_FRAME 4096   /* the longest frame accepted before CONNECT/INFO */
#define VG_NAME_MAX_LEN 128
#define VG_TOKEN_MAX_LEN 1024

/* Bytes a valid MSG frame needs beyond its payload at worst, in any
 * encoding the parser accepts: an array32 header (5), the type as a uint64
 * (9), a str32 header with the longest topic, and a bin32 header (5). */
#define VG_MSG_OVERHEAD (5 + 9 + 5 + VG_TOPIC_MAX_LEN + 5)

/* The largest frame body accepted once max_payload is negotiated; callers
 * bound max_payload (64 MiB at most), so the sum cannot wrap. */
static inline uint64_t vg_max_frame_for(uint64_t max_payload)
{
    return max_payload + VG_MSG_OVERHEAD;
}

/* On a version-2 connection a delivered MSG also carries its seq, always
 * as a uint64 (9 bytes): the largest frame body is 9 bytes longer. */
#define VG_MSG_SEQ_OVERHEAD 9

static inline uint64_t vg_max_frame_for_v2(uint64_t max_payload)
{
    return max_payload + VG_MSG_OVERHEAD + VG_MSG_SEQ_OVERHEAD;
}

/* Codes carried by ERR frames. A fatal one is followed by the broker closing
 * the connection. */
typedef enum {
    VG_E_BAD_FRAME = 1,      /* fatal: not msgpack, wrong shape, or truncated */
    VG_E_TOO_LARGE = 2,      /* fatal: declared length above the maximum */
    VG_E_UNKNOWN_TYPE = 3,   /* fatal */
    VG_E_BAD_TOPIC = 4,      /* fatal on MSG, not on SUB */
    VG_E_PROTOCOL = 5,       /* fatal: a valid frame at the wrong moment */
    VG_E_VERSION = 6,        /* fatal: no common protocol version */
    VG_E_AUTH = 7,           /* fatal */
    VG_E_LIMIT = 8,          /* not fatal on SUB; fatal on CONNECT (too many connections) */
    VG_E_SHUTDOWN = 9,       /* fatal: the broker is stopping */
    VG_E_DUPLICATE_SID = 10, /* not fatal */
    VG_E_NO_SUCH_SID = 11,   /* not fatal */
    VG_E_TIMEOUT = 12,       /* fatal: handshake or heartbeat timeout */
    VG_E_SLOW_CONSUMER = 13, /* fatal */
    VG_E_INTERNAL = 14,      /* fatal: the broker ran out of memory for this client */
    VG_E_PERMISSION = 15,    /* not fatal on SUB, fatal on MSG: reserved topic */
    VG_E_BAD_POSITION = 16,  /* not fatal: a SUB's start position the broker cannot serve */
    VG_E_STORAGE = 17,       /* fatal: the broker could not store the client's messages
                                (disk full, a failed write); a publisher reconnects and
                                sends its unconfirmed messages again */
    VG_E_DURABLE_TAKEN = 18, /* not fatal, with the sid: another connection took this
                                durable subscription over; it has ended here */
} vg_errcode;

/* The snake_case name of an ERR code, as logged ("bad_frame"); "unknown" if not known. */
const char *vg_errcode_name(uint64_t code);

/* True for the codes after which the broker closes the connection. Context
 * matters for a few codes; sid != 0 means the ERR answers a SUB or UNSUB. */
static inline bool vg_errcode_is_fatal(uint64_t code, uint64_t sid)
{
    return sid == 0 || !(code == VG_E_BAD_TOPIC || code == VG_E_LIMIT ||
                         code == VG_E_DUPLICATE_SID || code == VG_E_NO_SUCH_SID ||
                         code == VG_E_PERMISSION || code == VG_E_BAD_POSITION ||
                         code == VG_E_DURABLE_TAKEN);
}

/* A durable subscriber's name (SUB's seventh element): 1 to 64 bytes of
 * [A-Za-z0-9_.-]. */
#define VG_DURABLE_NAME_MAX 64

/* Whether name[0..len) is a valid durable name. */
bool vg_durable_name_ok(const char *name, size_t len);

#endif
