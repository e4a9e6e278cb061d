/* The subscription table: topic -> the connections subscribed to it.
 *
 * Locking: one reader-writer lock. Publishers take it shared, only long
 * enough to copy a topic's member list, taking a reference on each member
 * (retain) so the members outlive the lock; they deliver after releasing it.
 * SUB/UNSUB and disconnects take it exclusive. No socket I/O and no other
 * lock is ever taken while it is held. The lock prefers writers, so a flood of
 * publishes cannot starve a subscribe. */
#ifndef VG_SUBTABLE_H
#define VG_SUBTABLE_H

#include <stddef.h>

#include "status.h"

typedef struct vg_subtable vg_subtable;

/* retain is called on each member handed out by vg_subtable_match.
 * Returns NULL when out of memory. */
vg_subtable *vg_subtable_create(void (*retain)(void *member));
void vg_subtable_destroy(vg_subtable *t);

/* Adds member to topic; adding a member that is already there does nothing.
 * VG_OK or VG_ERR_NOMEM. The topic is copied. */
vg_status vg_subtable_add(vg_subtable *t, const char *topic, size_t len, void *member);

/* Removes member from topic, if there. */
void vg_subtable_remove(vg_subtable *t, const char *topic, size_t len, void *member);

/* Copies topic's members into *scratch (grown with realloc as needed, *cap
 * its capacity), retaining each; *count gets how many. VG_ERR_NOMEM leaves
 * *count 0 and nothing retained. */
vg_status vg_subtable_match(vg_subtable *t, const char *topic, size_t len, void ***scratch,
                            size_t *cap, size_t *count);

/* Number of topics with at least one member, and of (topic, member) pairs. */
void vg_subtable_counts(vg_subtable *t, size_t *topics, size_t *subscriptions);

#endif
