#include "status.h"

const char *vg_strerror(vg_status s)
{
    switch (s) {
    case VG_OK: return "ok";
    case VG_AGAIN: return "try again";
    case VG_ERR_NOMEM: return "out of memory";
    case VG_ERR_TOO_LARGE: return "too large";
    case VG_ERR_MALFORMED: return "malformed frame";
    case VG_ERR_UNKNOWN_TYPE: return "unknown frame type";
    case VG_ERR_BAD_TOPIC: return "invalid topic";
    case VG_ERR_FULL: return "buffer full";
    case VG_ERR_CLOSED: return "closed";
    case VG_ERR_IO: return "i/o error";
    case VG_ERR_TIMEOUT: return "timed out";
    case VG_ERR_ARG: return "invalid argument";
    case VG_ERR_PROTOCOL: return "protocol violation";
    case VG_ERR_REFUSED: return "refused by peer";
    }
    return "unknown status";
}
