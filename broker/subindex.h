/* A connection's subscriptions, indexed: by sid, and by subject (how many
 * of its sids name it), with its pattern subscriptions kept apart, so that
 * a SUB, an UNSUB and "does one of my subscriptions cover this topic" cost
 * O(1), plus O(patterns) for the last, however many subscriptions the
 * connection holds (issue 12: 100,000 of them over a few connections).
 *
 * Owned by the connection's thread; no locks. Pure: unit-tested alone. */
#ifndef VG_SUBINDEX_H
#define VG_SUBINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct {
    uint64_t sid;
    char *topic;          /* the subject: a topic or a pattern (not NUL-terminated) */
    uint32_t len;
    bool pattern;         /* has a '*' or '>' token */
    char *durable;        /* a durable subscriber's name (conn_durable.c); NULL: none */
    uint32_t durable_len;
    char *queue;          /* a queue group's name; NULL: none */
    uint32_t queue_len;
    struct vg_qgroup *group; /* its queue group (conn_queue.c; a reference); NULL once left */
} conn_sub;

typedef struct vg_subindex vg_subindex;

/* NULL when out of memory. */
vg_subindex *vg_subindex_create(void);
/* Frees the index and the strings of every subscription still in it. */
void vg_subindex_destroy(vg_subindex *x);

/* The subscription with sid, or NULL. Valid until the next add or remove. */
conn_sub *vg_subindex_find(vg_subindex *x, uint64_t sid);

/* Adds a copy of *s (its sid not yet in x), which then owns s's strings.
 * VG_OK or VG_ERR_NOMEM (nothing changed, the strings still the caller's). */
vg_status vg_subindex_add(vg_subindex *x, const conn_sub *s);

/* Removes sid's subscription into *out (its strings the caller's now).
 * false if there is none. */
bool vg_subindex_remove(vg_subindex *x, uint64_t sid, conn_sub *out);

/* How many subscriptions there are; the i-th of them (0 <= i < count),
 * in no particular order, valid until the next add or remove. */
size_t vg_subindex_count(const vg_subindex *x);
conn_sub *vg_subindex_at(vg_subindex *x, size_t i);

/* How many sids name exactly this subject (as a string: a pattern counts
 * only for itself) in this queue group (NULL: in none). */
unsigned vg_subindex_refs(const vg_subindex *x, const char *subject, uint32_t len,
                          const char *queue, uint32_t queue_len);

/* Whether a subscription that is not a queue group's covers topic (names
 * it, or is a pattern matching it); *sid, if not NULL, gets one such sid. */
bool vg_subindex_covers(const vg_subindex *x, const char *topic, uint32_t len, uint64_t *sid);

#endif
