#include "dedupe.h"

#include <stdlib.h>

/* A fixed pool of entries (allocated once: remembering a publisher never
 * allocates), found through chained buckets and kept in order of last
 * sight, most recent first; expiry and eviction take from the old end.
 * Entries are numbered from 1 so that zeroed memory means "none": the pool
 * and buckets come from calloc and their pages are touched only as
 * publishers arrive (65,536 remembered would be 4 MiB of RSS at start). */

#define NONE 0

typedef struct {
    uint64_t pub;     /* 0: free */
    uint64_t hwm;
    int64_t seen_ms;
    size_t hnext;     /* bucket chain */
    size_t newer, older;
} entry;

struct vg_dedupe {
    entry *e;
    size_t max, used;
    size_t *buckets;
    size_t nbuckets;  /* a power of two */
    size_t newest, oldest;
    size_t free_head; /* freed entries, chained through hnext */
    size_t fresh;     /* entries from here on were never used */
    int64_t window_ms;
};

vg_dedupe *vg_dedupe_create(size_t max, int64_t window_ms)
{
    if (max == 0)
        return NULL;
    vg_dedupe *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->nbuckets = 1;
    while (d->nbuckets < max)
        d->nbuckets *= 2;
    d->e = calloc(max + 1, sizeof *d->e);
    d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
    if (d->e == NULL || d->buckets == NULL)
        goto fail_free_arrays;
    d->fresh = 1;
    d->max = max;
    d->window_ms = window_ms;
    return d;

fail_free_arrays:
    free(d->e);
    free(d->buckets);
    free(d);
    return NULL;
}

void vg_dedupe_destroy(vg_dedupe *d)
{
    if (d == NULL)
        return;
    free(d->e);
    free(d->buckets);
    free(d);
}

static size_t bucket_of(const vg_dedupe *d, uint64_t pub)
{
    /* Publisher identities are random, but a hostile client picks its own:
     * mix them so that chosen ones do not share a bucket by their low bits. */
    pub ^= pub >> 33;
    pub *= 0xff51afd7ed558ccdull;
    pub ^= pub >> 33;
    return (size_t)pub & (d->nbuckets - 1);
}

static void lru_unlink(vg_dedupe *d, size_t i)
{
    entry *x = &d->e[i];
    if (x->newer != NONE)
        d->e[x->newer].older = x->older;
    else
        d->newest = x->older;
    if (x->older != NONE)
        d->e[x->older].newer = x->newer;
    else
        d->oldest = x->newer;
}

static void lru_push_newest(vg_dedupe *d, size_t i)
{
    entry *x = &d->e[i];
    x->newer = NONE;
    x->older = d->newest;
    if (d->newest != NONE)
        d->e[d->newest].newer = i;
    else
        d->oldest = i;
    d->newest = i;
}

static void forget(vg_dedupe *d, size_t i)
{
    size_t *link = &d->buckets[bucket_of(d, d->e[i].pub)];
    while (*link != i)
        link = &d->e[*link].hnext;
    *link = d->e[i].hnext;
    lru_unlink(d, i);
    d->e[i].pub = 0;
    d->e[i].hnext = d->free_head;
    d->free_head = i;
    d->used--;
}

/* Forgets every publisher last seen before the window at now_ms. */
static void expire(vg_dedupe *d, int64_t now_ms)
{
    while (d->oldest != NONE && d->e[d->oldest].seen_ms < now_ms - d->window_ms)
        forget(d, d->oldest);
}

static size_t find(vg_dedupe *d, uint64_t pub)
{
    size_t i = d->buckets[bucket_of(d, pub)];
    while (i != NONE && d->e[i].pub != pub)
        i = d->e[i].hnext;
    return i;
}

uint64_t vg_dedupe_acked(vg_dedupe *d, uint64_t pub, int64_t now_ms)
{
    expire(d, now_ms);
    size_t i = pub != 0 ? find(d, pub) : NONE;
    return i != NONE ? d->e[i].hwm : 0;
}

uint64_t vg_dedupe_skip(vg_dedupe *d, uint64_t pub, uint64_t first, uint64_t n, int64_t now_ms)
{
    uint64_t hwm = vg_dedupe_acked(d, pub, now_ms);
    if (n == 0 || first > hwm)
        return 0;
    uint64_t dup = hwm - first + 1;
    return dup < n ? dup : n;
}

void vg_dedupe_appended(vg_dedupe *d, uint64_t pub, uint64_t last, int64_t now_ms)
{
    if (pub == 0)
        return;
    expire(d, now_ms);
    size_t i = find(d, pub);
    if (i == NONE) {
        if (d->used == d->max)
            forget(d, d->oldest); /* the least recently seen */
        if (d->free_head != NONE) {
            i = d->free_head;
            d->free_head = d->e[i].hnext;
        } else {
            i = d->fresh++; /* used < max, so fresh <= max */
        }
        size_t b = bucket_of(d, pub);
        d->e[i] = (entry){.pub = pub, .hwm = 0, .hnext = d->buckets[b]};
        d->buckets[b] = i;
        d->used++;
    } else {
        lru_unlink(d, i);
    }
    entry *x = &d->e[i];
    if (last > x->hwm)
        x->hwm = last;
    x->seen_ms = now_ms;
    lru_push_newest(d, i);
}

size_t vg_dedupe_count(vg_dedupe *d, int64_t now_ms)
{
    expire(d, now_ms);
    return d->used;
}
