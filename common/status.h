/* Status codes shared by every vigil module. */
#ifndef VG_STATUS_H
#define VG_STATUS_H

typedef enum {
    VG_OK = 0,
    VG_AGAIN,            /* not an error: need more input, or would block */
    VG_ERR_NOMEM,
    VG_ERR_TOO_LARGE,    /* a declared length exceeds the allowed maximum */
    VG_ERR_MALFORMED,    /* not msgpack, or not the shape the frame type requires */
    VG_ERR_UNKNOWN_TYPE, /* well-formed frame of a type this version does not know */
    VG_ERR_BAD_TOPIC,
    VG_ERR_FULL,         /* a bounded buffer has no room */
    VG_ERR_CLOSED,
    VG_ERR_IO,           /* see errno */
    VG_ERR_TIMEOUT,
    VG_ERR_ARG,
    VG_ERR_PROTOCOL,     /* a valid frame at the wrong moment */
    VG_ERR_REFUSED,      /* the peer answered with ERR */
} vg_status;

/* Returns a static, human-readable description of s. */
const char *vg_strerror(vg_status s);

#endif
