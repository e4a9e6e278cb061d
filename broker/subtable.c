#include "subtable.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    void **members;
    size_t n, cap;
    size_t len;
    char topic[];
} entry;

struct vg_subtable {
    pthread_rwlock_t lock;
    entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t ntopics;
    size_t nsubs;
    uint64_t seed; /* random per table, so colliding topics cannot be precomputed */
    void (*retain)(void *);
};

static uint64_t hash_topic(uint64_t seed, const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ seed; /* FNV-1a, seeded */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

vg_subtable *vg_subtable_create(void (*retain)(void *member))
{
    vg_subtable *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    if (getrandom(&t->seed, sizeof t->seed, GRND_NONBLOCK) != sizeof t->seed)
        t->seed = (uint64_t)(uintptr_t)t;
    t->retain = retain;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&t->lock, &a);
    pthread_rwlockattr_destroy(&a);
    return t;
}

void vg_subtable_destroy(vg_subtable *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (entry *e = t->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e->members);
            free(e);
        }
    }
    free(t->buckets);
    pthread_rwlock_destroy(&t->lock);
    free(t);
}

static entry **find(vg_subtable *t, uint64_t h, const char *topic, size_t len)
{
    entry **pp = &t->buckets[h & (t->nbuckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        entry *e = *pp;
        if (e->hash == h && e->len == len && memcmp(e->topic, topic, len) == 0)
            return pp;
    }
    return pp;
}

/* Doubles the bucket array; on allocation failure the table just stays denser. */
static void grow(vg_subtable *t)
{
    size_t nb = t->nbuckets * 2;
    entry **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (entry *e = t->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
}

vg_status vg_subtable_add(vg_subtable *t, const char *topic, size_t len, void *member)
{
    uint64_t h = hash_topic(t->seed, topic, len);
    vg_status st = VG_OK;
    pthread_rwlock_wrlock(&t->lock);
    entry **pp = find(t, h, topic, len);
    entry *e = *pp;
    if (e == NULL) {
        e = calloc(1, sizeof *e + len);
        if (e == NULL) {
            st = VG_ERR_NOMEM;
            goto out;
        }
        e->hash = h;
        e->len = len;
        memcpy(e->topic, topic, len);
        *pp = e;
        t->ntopics++;
    }
    for (size_t i = 0; i < e->n; i++)
        if (e->members[i] == member)
            goto out;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 4;
        void **m = realloc(e->members, cap * sizeof *m);
        if (m == NULL) {
            st = VG_ERR_NOMEM;
            if (e->n == 0) { /* do not leave an empty entry behind */
                *pp = e->next;
                free(e);
                t->ntopics--;
            }
            goto out;
        }
        e->members = m;
        e->cap = cap;
    }
    e->members[e->n++] = member;
    t->nsubs++;
    if (t->ntopics > t->nbuckets)
        grow(t);
out:
    pthread_rwlock_unlock(&t->lock);
    return st;
}

void vg_subtable_remove(vg_subtable *t, const char *topic, size_t len, void *member)
{
    uint64_t h = hash_topic(t->seed, topic, len);
    pthread_rwlock_wrlock(&t->lock);
    entry **pp = find(t, h, topic, len);
    entry *e = *pp;
    if (e != NULL) {
        for (size_t i = 0; i < e->n; i++) {
            if (e->members[i] == member) {
                e->members[i] = e->members[--e->n];
                t->nsubs--;
                break;
            }
        }
        if (e->n == 0) {
            *pp = e->next;
            free(e->members);
            free(e);
            t->ntopics--;
        }
    }
    pthread_rwlock_unlock(&t->lock);
}

vg_status vg_subtable_match(vg_subtable *t, const char *topic, size_t len, void ***scratch,
                            size_t *cap, size_t *count)
{
    uint64_t h = hash_topic(t->seed, topic, len);
    vg_status st = VG_OK;
    *count = 0;
    pthread_rwlock_rdlock(&t->lock);
    entry *e = *find(t, h, topic, len);
    if (e == NULL)
        goto out;
    if (e->n > *cap) {
        void **m = realloc(*scratch, e->n * sizeof *m);
        if (m == NULL) {
            st = VG_ERR_NOMEM;
            goto out;
        }
        *scratch = m;
        *cap = e->n;
    }
    for (size_t i = 0; i < e->n; i++) {
        (*scratch)[i] = e->members[i];
        t->retain(e->members[i]);
    }
    *count = e->n;
out:
    pthread_rwlock_unlock(&t->lock);
    return st;
}

void vg_subtable_counts(vg_subtable *t, size_t *topics, size_t *subscriptions)
{
    pthread_rwlock_rdlock(&t->lock);
    *topics = t->ntopics;
    *subscriptions = t->nsubs;
    pthread_rwlock_unlock(&t->lock);
}
