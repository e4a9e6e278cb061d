/* The broker's memory of publishers, so that messages a publisher resends
 * after losing a connection are appended once (protocol version 2, issue
 * 10; not yet used by the broker). A version-2 publisher has an identity
 * and numbers its messages in the order it sends them; one publisher's
 * messages reach the broker in order, so "already appended" is simply
 * "numbered at or below the highest appended", one number per publisher,
 * as JetStream's duplicate window keeps message ids for a while.
 *
 * A publisher is remembered while it was seen within the window (default
 * 2 minutes, as JetStream's) and while fewer than max publishers are
 * remembered (the least recently seen is forgotten first). A publisher
 * forgotten and then resending is not deduplicated: docs/design.md.
 * Pure: time is a parameter; the caller serialises calls. */
#ifndef VG_DEDUPE_H
#define VG_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct vg_dedupe vg_dedupe;

/* Remembers up to max publishers for window_ms each. NULL on out of
 * memory or max 0. */
vg_dedupe *vg_dedupe_create(size_t max, int64_t window_ms);
void vg_dedupe_destroy(vg_dedupe *d);

/* The highest number appended from publisher pub (nonzero), 0 if it is not
 * remembered at now_ms. */
uint64_t vg_dedupe_acked(vg_dedupe *d, uint64_t pub, int64_t now_ms);

/* Of n messages numbered first.. from pub, how many at the front were
 * appended already and must be dropped (0..n). */
uint64_t vg_dedupe_skip(vg_dedupe *d, uint64_t pub, uint64_t first, uint64_t n, int64_t now_ms);

/* Messages from pub (0: not a publisher, ignored) up to number last were
 * appended at now_ms. Never allocates. */
void vg_dedupe_appended(vg_dedupe *d, uint64_t pub, uint64_t last, int64_t now_ms);

/* Publishers remembered at now_ms (for $SYS.stats). */
size_t vg_dedupe_count(vg_dedupe *d, int64_t now_ms);

#endif
