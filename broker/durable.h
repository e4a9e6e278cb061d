/* Durable (named) subscribers: per name and topic, the last sequence
 * number the subscriber acknowledged, and the connection that holds it now.
 * A second connection subscribing with the same name and topic takes it
 * over (as an MQTT session with the same client id does in mosquitto): the
 * usual reason is the same subscriber reconnecting before the broker has
 * seen its old connection die, and refusing would stall it for up to the
 * heartbeat bound. The table is in memory; with --data-dir every change is
 * also a block of the log (store.c). Thread-safe: one mutex, a leaf but
 * for vg_durables_json, which takes the topic logs' locks under it.
 *
 * A durable pattern subscription (issue 12) is one entry (name, pattern)
 * that says who holds it, and one entry per topic it read, named
 * "name pattern" (a space is in neither): its position in that topic. */
#ifndef VG_DURABLE_H
#define VG_DURABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "status.h"

typedef struct vg_durables vg_durables;

vg_durables *vg_durables_create(void);
void vg_durables_destroy(vg_durables *d);

/* Recovery: sets name on topic to acked (creating it; a lower number than
 * held is kept only for one just made), or deletes it when forget. */
vg_status vg_durables_restore(vg_durables *d, const char *name, size_t name_len,
                              const char *topic, size_t topic_len, uint64_t acked, bool forget);

/* owner subscribes as name on topic. *acked gets its position (0 with
 * *existed false when it is new: the caller sets it with vg_durables_ack);
 * *prev the connection that held it until now (NULL: none), whose
 * reference passes to the caller. owner is retained with retain(owner). */
vg_status vg_durables_claim(vg_durables *d, const char *name, size_t name_len,
                            const char *topic, size_t topic_len, void *owner,
                            void (*retain)(void *), uint64_t *acked, bool *existed, void **prev);

/* owner acknowledges up to seq: true if that moved the position (and owner
 * still holds it), so that the change is worth storing. */
bool vg_durables_ack(vg_durables *d, const char *name, size_t name_len, const char *topic,
                     size_t topic_len, const void *owner, uint64_t seq);

/* Whether owner still holds name on topic. */
bool vg_durables_held(vg_durables *d, const char *name, size_t name_len, const char *topic,
                      size_t topic_len, const void *owner);

/* owner leaves name on topic (if it holds it): the position stays. true
 * if it did hold it; the caller then drops its reference. */
bool vg_durables_leave(vg_durables *d, const char *name, size_t name_len, const char *topic,
                       size_t topic_len, const void *owner);

/* Deletes name on topic; true if it existed. Its holder, if any, is
 * returned in *prev with its reference. */
bool vg_durables_forget(vg_durables *d, const char *name, size_t name_len, const char *topic,
                        size_t topic_len, void **prev);

/* Appends {"durables":[{"name":…,"topic":…,"acked":…,"next":…,"connected":…}]}
 * to out; next_of(ud, topic, len) gives a topic's next sequence number. */
vg_status vg_durables_json(vg_durables *d, vg_buf *out,
                           uint64_t (*next_of)(void *ud, const char *topic, size_t len), void *ud);

/* The position of name on topic, if there is one. */
bool vg_durables_position(vg_durables *d, const char *name, size_t name_len, const char *topic,
                          size_t topic_len, uint64_t *acked);

/* Sets name on topic to acked, creating it, with no holder: a durable
 * pattern's position in one topic, which its holder entry guards. true if
 * that moved it (or made it); *st VG_ERR_NOMEM if it could not be made. */
bool vg_durables_set(vg_durables *d, const char *name, size_t name_len, const char *topic,
                     size_t topic_len, uint64_t acked, vg_status *st);

/* Deletes one entry named name, copying its topic (at most cap bytes) to
 * topic and *topic_len; false when there is none left. */
bool vg_durables_forget_any(vg_durables *d, const char *name, size_t name_len, char *topic,
                            size_t cap, size_t *topic_len);

size_t vg_durables_count(vg_durables *d);

#endif
