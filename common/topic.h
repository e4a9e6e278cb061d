/* Topic syntax: non-empty tokens separated by '.', like NATS subjects. */
#ifndef VG_TOPIC_H
#define VG_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Checks a topic to publish to: 1..max_len bytes of printable ASCII without
 * spaces, at most max_tokens tokens, no empty token, and no '*' or '>',
 * which are for subscriptions only. Returns VG_OK or VG_ERR_BAD_TOPIC with
 * a static *why. */
vg_status vg_topic_check(const char *topic, size_t len, size_t max_len, size_t max_tokens,
                         const char **why);

/* Checks a subject to subscribe to: a topic, or a pattern where '*' is a
 * whole token (matching exactly one) and '>' a whole last token (matching
 * one or more), as in NATS. VG_OK or VG_ERR_BAD_TOPIC with a static *why. */
vg_status vg_subject_check(const char *subject, size_t len, size_t max_len, size_t max_tokens,
                           const char **why);

/* Whether a checked subject is a pattern. */
bool vg_subject_is_pattern(const char *subject, size_t len);

/* Whether topic matches the checked subject pat (a topic matches only
 * itself). A pattern beginning with a wildcard does not match $SYS topics.
 * No allocation: the reference every faster matcher is tested against. */
bool vg_subject_matches(const char *pat, size_t plen, const char *topic, size_t tlen);

/* True if the first token is "$SYS": topics the broker publishes on itself
 * and clients may only subscribe to. */
bool vg_topic_is_system(const char *topic, size_t len);

#endif
