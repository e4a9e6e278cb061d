/* Topic syntax: non-empty tokens separated by '.', like NATS subjects. */
#ifndef VG_TOPIC_H
#define VG_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Checks a topic: 1..max_len bytes of printable ASCII without spaces, at most
 * max_tokens tokens, no empty token. '*' and '>' are reserved for wildcards,
 * which this version does not implement, so they are refused rather than
 * matched literally. Returns VG_OK or VG_ERR_BAD_TOPIC with a static *why. */
vg_status vg_topic_check(const char *topic, size_t len, size_t max_len, size_t max_tokens,
                         const char **why);

/* True if the first token is "$SYS": topics the broker publishes on itself
 * and clients may only subscribe to. */
bool vg_topic_is_system(const char *topic, size_t len);

#endif
