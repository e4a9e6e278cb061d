/* Subject matching for the client library's dispatch (issue 12), local to
 * the client until common/topic.h has vg_subject_check,
 * vg_subject_is_pattern and vg_subject_matches on main: the same rules
 * (/work/spec/issue12.md), to be replaced by those three calls. '*' as a
 * whole token matches exactly one token; '>' as the whole last token
 * matches one or more; a pattern whose first token is '*' or '>' never
 * matches a "$SYS" topic. Pure, static, no allocation. */
#ifndef VG_CLIENT_MATCH_H
#define VG_CLIENT_MATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "proto.h"
#include "topic.h"

/* The length of the token of s[0..len) starting at i. */
static inline size_t vg_cm_token(const char *s, size_t len, size_t i)
{
    const char *dot = i < len ? memchr(s + i, '.', len - i) : NULL;
    return dot != NULL ? (size_t)(dot - (s + i)) : len - i;
}

/* Whether subj is a valid subject: a topic (vg_topic_check's rules), or a
 * pattern under the same rules once each '*' token and a last '>' token
 * are counted as one ordinary byte; '*' or '>' inside a longer token, or
 * '>' before the last token, are refused. */
static inline bool vg_cm_subject_ok(const char *subj, size_t len)
{
    char copy[VG_TOPIC_MAX_LEN];
    if (len == 0 || len > sizeof copy)
        return false;
    memcpy(copy, subj, len);
    for (size_t i = 0; i <= len;) {
        size_t n = vg_cm_token(subj, len, i);
        bool last = i + n >= len;
        if (n == 1 && (subj[i] == '*' || (subj[i] == '>' && last)))
            copy[i] = 'x'; /* a wildcard token stands for one valid token */
        i += n + 1;
    }
    return vg_topic_check(copy, len, VG_TOPIC_MAX_LEN, VG_TOPIC_MAX_LEN, NULL) == VG_OK;
}

/* Whether the valid subject subj has a '*' or '>' token. */
static inline bool vg_cm_is_pattern(const char *subj, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = vg_cm_token(subj, len, i);
        if (n == 1 && (subj[i] == '*' || subj[i] == '>'))
            return true;
        i += n + 1;
    }
    return false;
}

/* Whether the valid subject pat matches the valid topic. */
static inline bool vg_cm_matches(const char *pat, size_t plen, const char *topic, size_t tlen)
{
    if (plen > 0 && (pat[0] == '*' || pat[0] == '>') && (plen == 1 || pat[1] == '.') &&
        vg_topic_is_system(topic, tlen))
        return false;
    size_t i = 0, j = 0;
    while (i < plen) {
        size_t pn = vg_cm_token(pat, plen, i);
        if (pn == 1 && pat[i] == '>')
            return j < tlen; /* one or more tokens left */
        if (j >= tlen)
            return false;
        size_t tn = vg_cm_token(topic, tlen, j);
        if (!(pn == 1 && pat[i] == '*') && (pn != tn || memcmp(pat + i, topic + j, pn) != 0))
            return false;
        i += pn + 1;
        j += tn + 1;
    }
    return j >= tlen;
}

#endif
