#include "topic.h"

#include <string.h>

vg_status vg_topic_check(const char *topic, size_t len, size_t max_len, size_t max_tokens,
                         const char **why)
{
    static const char *unused;
    if (why == NULL)
        why = &unused;
    if (len == 0) {
        *why = "topic is empty";
        return VG_ERR_BAD_TOPIC;
    }
    if (len > max_len) {
        *why = "topic is too long";
        return VG_ERR_BAD_TOPIC;
    }
    size_t tokens = 1;
    size_t token_len = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)topic[i];
        if (c == '.') {
            if (token_len == 0) {
                *why = "topic has an empty token";
                return VG_ERR_BAD_TOPIC;
            }
            tokens++;
            token_len = 0;
            continue;
        }
        if (c <= 0x20 || c >= 0x7f) {
            *why = "topic has a space, control or non-ASCII byte";
            return VG_ERR_BAD_TOPIC;
        }
        if (c == '*' || c == '>') {
            *why = "wildcards (* and >) are not supported yet";
            return VG_ERR_BAD_TOPIC;
        }
        token_len++;
    }
    if (token_len == 0) {
        *why = "topic has an empty token";
        return VG_ERR_BAD_TOPIC;
    }
    if (tokens > max_tokens) {
        *why = "topic has too many tokens";
        return VG_ERR_BAD_TOPIC;
    }
    return VG_OK;
}

bool vg_topic_is_system(const char *topic, size_t len)
{
    return len >= 4 && memcmp(topic, "$SYS", 4) == 0 && (len == 4 || topic[4] == '.');
}
