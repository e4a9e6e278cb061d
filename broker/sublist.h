/* The subscription matcher: subject (topic or pattern) -> members, with
 * queue groups, and per-thread caches of match results.
 *
 * Literal subjects live in one hash table keyed by the hash of the whole
 * topic; only patterns live in a token trie (per node: literal children in a
 * small hash, one '*' child, the subscriptions of patterns ending in '>').
 * A published topic is split and each token hashed once: the token hashes
 * drive the trie's lookups and are combined into the whole-topic hash for the
 * literal table and the cache. Hashes are seeded per table from getrandom, so
 * colliding topics cannot be precomputed.
 *
 * Locking: one writer-preferring rwlock guards the table. Writers (add,
 * remove) take it exclusive and bump an atomic generation before releasing
 * it. A cache hit (an entry for this topic filled at the current generation)
 * takes no lock and allocates nothing, so writers never make it wait; a miss
 * takes the lock shared while it matches. No other lock is taken while it is
 * held; retain is called under it (it must not take the lock back).
 *
 * Ownership: members are opaque and reference counted by the caller's
 * retain/release. The table holds no reference; a cache entry holds one per
 * member it lists, released when the entry is refilled, swept or destroyed. */
#ifndef VG_SUBLIST_H
#define VG_SUBLIST_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct vg_sublist vg_sublist;
typedef struct vg_sublist_cache vg_sublist_cache; /* one per thread; not shared */

/* A queue group in a result: its name and its members, each once. */
typedef struct {
    const char *name;
    uint32_t name_len;
    void *const *members;
    size_t n;
} vg_sublist_group;

/* What a topic matches. */
typedef struct {
    void *const *members; /* plain subscribers, each once */
    size_t n;
    const vg_sublist_group *groups; /* queue groups by name, each member once per group */
    size_t ngroups;
} vg_sublist_result;

typedef struct {
    size_t literals; /* literal subjects with at least one entry */
    size_t patterns; /* pattern subjects with at least one entry */
    size_t entries;  /* (subject, queue, member) entries */
    size_t groups;   /* distinct (subject, queue name) */
} vg_sublist_counts_t;

/* Creates an empty table. retain/release count references on members (see
 * above). Returns NULL when out of memory. */
vg_sublist *vg_sublist_create(void (*retain)(void *), void (*release)(void *));

/* Frees the table. No cache of it may still exist. NULL is ignored. */
void vg_sublist_destroy(vg_sublist *sl);

/* Adds member to subj (a topic or pattern already checked by
 * vg_subject_check), in queue group `queue` (qlen bytes; NULL or qlen 0: no
 * group). Set semantics: adding the same (subj, queue, member) again does
 * nothing and returns VG_OK. Copies subj and queue. Takes the write lock.
 * Returns VG_OK or VG_ERR_NOMEM (and then nothing changed). */
vg_status vg_sublist_add(vg_sublist *sl, const char *subj, size_t len, const char *queue,
                         size_t qlen, void *member);

/* Removes (subj, queue, member) if there; frees trie nodes, hash entries and
 * groups left empty, so memory returns after a mass unsubscribe. Takes the
 * write lock. */
void vg_sublist_remove(vg_sublist *sl, const char *subj, size_t len, const char *queue,
                       size_t qlen, void *member);

/* Creates a result cache for one thread's use. Returns NULL when out of
 * memory. */
vg_sublist_cache *vg_sublist_cache_create(vg_sublist *sl);

/* Releases every reference the cache holds and frees it. NULL is ignored. */
void vg_sublist_cache_destroy(vg_sublist_cache *c);

/* Sets *out to what the literal topic (len bytes, already checked) matches.
 * *out stays valid until the next call on this cache (or its sweep/destroy).
 * Cache hit: no lock, no allocation. Miss: the table's read lock while
 * matching; the result is copied into the cache entry, each listed member
 * retained. Returns VG_OK, or VG_ERR_NOMEM with *out an empty result. */
vg_status vg_sublist_match(vg_sublist_cache *c, const char *topic, size_t len,
                           const vg_sublist_result **out);

/* Releases the entries made stale by a change since they were filled, so a
 * cache does not keep departed members alive: call it from a periodic tick.
 * No lock. Invalidates results handed out by this cache. */
void vg_sublist_cache_sweep(vg_sublist_cache *c);

/* Hits and misses this cache has counted since it was created (for tests
 * and benchmarks). */
void vg_sublist_cache_stats(const vg_sublist_cache *c, uint64_t *hits, uint64_t *misses);

/* Fills *out (for $SYS.stats). Takes the read lock. */
void vg_sublist_counts(vg_sublist *sl, vg_sublist_counts_t *out);

/* The generation: bumped by every add or remove that changed something.
 * Acquire load; no lock. */
uint64_t vg_sublist_generation(vg_sublist *sl);

#endif
