#include "topic.h"

#include <string.h>

/* The rules of both: wildcards, if allowed, as whole tokens ('>' last). */
static vg_status check(const char *topic, size_t len, size_t max_len, size_t max_tokens,
                       bool patterns, const char **why)
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
            if (!patterns) {
                *why = "wildcards (* and >) are only for subscriptions";
                return VG_ERR_BAD_TOPIC;
            }
            bool whole = token_len == 0 && (i + 1 == len || topic[i + 1] == '.');
            if (!whole) {
                *why = c == '*' ? "'*' must be a whole token" : "'>' must be a whole token";
                return VG_ERR_BAD_TOPIC;
            }
            if (c == '>' && i + 1 != len) {
                *why = "'>' must be the last token";
                return VG_ERR_BAD_TOPIC;
            }
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

vg_status vg_topic_check(const char *topic, size_t len, size_t max_len, size_t max_tokens,
                         const char **why)
{
    return check(topic, len, max_len, max_tokens, false, why);
}

vg_status vg_subject_check(const char *subject, size_t len, size_t max_len, size_t max_tokens,
                           const char **why)
{
    return check(subject, len, max_len, max_tokens, true, why);
}

bool vg_subject_is_pattern(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((s[i] == '*' || s[i] == '>') && (i == 0 || s[i - 1] == '.') &&
            (i + 1 == len || s[i + 1] == '.'))
            return true;
    return false;
}

bool vg_subject_matches(const char *pat, size_t plen, const char *topic, size_t tlen)
{
    if (plen == 0 || tlen == 0)
        return false;
    if ((pat[0] == '*' || pat[0] == '>') && vg_topic_is_system(topic, tlen))
        return false; /* as in NATS: only a pattern naming $SYS sees the broker's topics */
    size_t p = 0, t = 0; /* the starts of the current tokens: both within their strings */
    for (;;) {
        size_t pe = p, te = t;
        while (pe < plen && pat[pe] != '.')
            pe++;
        if (pe - p == 1 && pat[p] == '>')
            return true; /* the topic has a token here, and '>' takes it and the rest */
        while (te < tlen && topic[te] != '.')
            te++;
        bool star = pe - p == 1 && pat[p] == '*';
        if (!star && (pe - p != te - t || memcmp(pat + p, topic + t, pe - p) != 0))
            return false;
        if (pe == plen || te == tlen)
            return pe == plen && te == tlen;
        p = pe + 1;
        t = te + 1;
    }
}

bool vg_topic_is_system(const char *topic, size_t len)
{
    return len >= 4 && memcmp(topic, "$SYS", 4) == 0 && (len == 4 || topic[4] == '.');
}
