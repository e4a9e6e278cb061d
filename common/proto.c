#include "proto.h"

const char *vg_errcode_name(uint64_t code)
{
    switch (code) {
    case VG_E_BAD_FRAME: return "bad_frame";
    case VG_E_TOO_LARGE: return "too_large";
    case VG_E_UNKNOWN_TYPE: return "unknown_type";
    case VG_E_BAD_TOPIC: return "bad_topic";
    case VG_E_PROTOCOL: return "protocol";
    case VG_E_VERSION: return "version";
    case VG_E_AUTH: return "auth";
    case VG_E_LIMIT: return "limit";
    case VG_E_SHUTDOWN: return "shutdown";
    case VG_E_DUPLICATE_SID: return "duplicate_sid";
    case VG_E_NO_SUCH_SID: return "no_such_sid";
    case VG_E_TIMEOUT: return "timeout";
    case VG_E_SLOW_CONSUMER: return "slow_consumer";
    case VG_E_INTERNAL: return "internal";
    case VG_E_PERMISSION: return "permission";
    case VG_E_BAD_POSITION: return "bad_position";
    case VG_E_STORAGE: return "storage";
    case VG_E_DURABLE_TAKEN: return "durable_taken";
    }
    return "unknown";
}

bool vg_durable_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > VG_DURABLE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                  ch == '_' || ch == '.' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}
