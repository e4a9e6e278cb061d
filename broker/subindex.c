/* The index: subscriptions in one dense array; an open-addressing table
 * from sid to array slot (linear probing, deletion by backward shift, so
 * there are no tombstones to sweep); a chained table from (subject, queue)
 * to how many sids name it; and the slots of the pattern subscriptions,
 * which are the only ones a topic must be matched against. */
#include "subindex.h"

#include <stdlib.h>
#include <string.h>

#include "topic.h"

typedef struct ref {
    struct ref *next;
    uint64_t hash;
    uint64_t sid; /* one of the sids that name it (vg_subindex_covers) */
    unsigned count;
    uint32_t len;
    char key[]; /* subject, then ' ' and the queue's name if any */
} ref;

struct vg_subindex {
    conn_sub *subs;
    size_t n, cap;
    uint32_t *slots;  /* sid table: index + 1 into subs; 0: empty */
    size_t nslots;    /* a power of two, at least twice n */
    ref **refs;
    size_t nrefs, nbuckets; /* a power of two */
    size_t *patterns; /* indices into subs of the pattern subscriptions */
    size_t npatterns, patterns_cap;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < alen; i++)
        h = (h ^ (unsigned char)a[i]) * 1099511628211ull;
    if (b != NULL) {
        h = (h ^ ' ') * 1099511628211ull;
        for (size_t i = 0; i < blen; i++)
            h = (h ^ (unsigned char)b[i]) * 1099511628211ull;
    }
    return mix(h);
}

static void shrink(vg_subindex *x);

vg_subindex *vg_subindex_create(void)
{
    vg_subindex *x = calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    x->nslots = 16;
    x->slots = calloc(x->nslots, sizeof *x->slots);
    x->nbuckets = 16;
    x->refs = calloc(x->nbuckets, sizeof *x->refs);
    if (x->slots == NULL || x->refs == NULL) {
        vg_subindex_destroy(x);
        return NULL;
    }
    return x;
}

void vg_subindex_destroy(vg_subindex *x)
{
    if (x == NULL)
        return;
    for (size_t i = 0; i < x->n; i++) {
        free(x->subs[i].topic);
        free(x->subs[i].durable);
        free(x->subs[i].queue);
    }
    for (size_t b = 0; b < x->nbuckets && x->refs != NULL; b++)
        for (ref *r = x->refs[b], *next; r != NULL; r = next) {
            next = r->next;
            free(r);
        }
    free(x->subs);
    free(x->slots);
    free(x->refs);
    free(x->patterns);
    free(x);
}

/* The sid table's slot holding sid, or the empty one where it would go. */
static size_t probe(const vg_subindex *x, uint64_t sid)
{
    size_t mask = x->nslots - 1;
    size_t i = mix(sid) & mask;
    while (x->slots[i] != 0 && x->subs[x->slots[i] - 1].sid != sid)
        i = (i + 1) & mask;
    return i;
}

conn_sub *vg_subindex_find(vg_subindex *x, uint64_t sid)
{
    size_t i = probe(x, sid);
    return x->slots[i] != 0 ? &x->subs[x->slots[i] - 1] : NULL;
}

/* Rebuilds the sid table with nslots slots. */
static bool rehash(vg_subindex *x, size_t nslots)
{
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (slots == NULL)
        return false;
    free(x->slots);
    x->slots = slots;
    x->nslots = nslots;
    for (size_t k = 0; k < x->n; k++)
        x->slots[probe(x, x->subs[k].sid)] = (uint32_t)(k + 1);
    return true;
}

/* The count entry for (subject, queue): where it is, or where it would go. */
static ref **find_ref(const vg_subindex *x, const char *s, uint32_t len, const char *q,
                      uint32_t qlen, uint64_t h)
{
    size_t klen = len + (q != NULL ? 1 + (size_t)qlen : 0);
    ref **pp = &x->refs[h & (x->nbuckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        ref *r = *pp;
        if (r->hash == h && r->len == klen && memcmp(r->key, s, len) == 0 &&
            (q == NULL || (r->key[len] == ' ' && memcmp(r->key + len + 1, q, qlen) == 0)))
            return pp;
    }
    return pp;
}

/* Doubles the count table; on failure it just stays denser. */
static void grow_refs(vg_subindex *x)
{
    size_t nb = x->nbuckets * 2;
    ref **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < x->nbuckets; i++)
        for (ref *r = x->refs[i], *next; r != NULL; r = next) {
            next = r->next;
            r->next = b[r->hash & (nb - 1)];
            b[r->hash & (nb - 1)] = r;
        }
    free(x->refs);
    x->refs = b;
    x->nbuckets = nb;
}

vg_status vg_subindex_add(vg_subindex *x, const conn_sub *s)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8;
        conn_sub *subs = realloc(x->subs, cap * sizeof *subs);
        if (subs == NULL)
            return VG_ERR_NOMEM;
        x->subs = subs;
        x->cap = cap;
    }
    if (s->pattern && x->npatterns == x->patterns_cap) {
        size_t cap = x->patterns_cap ? x->patterns_cap * 2 : 4;
        size_t *p = realloc(x->patterns, cap * sizeof *p);
        if (p == NULL)
            return VG_ERR_NOMEM;
        x->patterns = p;
        x->patterns_cap = cap;
    }
    if ((x->n + 1) * 2 > x->nslots && !rehash(x, x->nslots * 2))
        return VG_ERR_NOMEM;
    uint64_t h = hash_bytes(s->topic, s->len, s->queue, s->queue_len);
    ref **pp = find_ref(x, s->topic, s->len, s->queue, s->queue_len, h);
    if (*pp == NULL) {
        size_t klen = s->len + (s->queue != NULL ? 1 + (size_t)s->queue_len : 0);
        ref *r = calloc(1, sizeof *r + klen);
        if (r == NULL)
            return VG_ERR_NOMEM;
        r->hash = h;
        r->sid = s->sid;
        r->len = (uint32_t)klen;
        memcpy(r->key, s->topic, s->len);
        if (s->queue != NULL) {
            r->key[s->len] = ' ';
            memcpy(r->key + s->len + 1, s->queue, s->queue_len);
        }
        *pp = r;
        x->nrefs++;
    }
    (*pp)->count++;
    x->subs[x->n] = *s;
    x->slots[probe(x, s->sid)] = (uint32_t)(x->n + 1);
    if (s->pattern)
        x->patterns[x->npatterns++] = x->n;
    x->n++;
    if (x->nrefs > x->nbuckets)
        grow_refs(x);
    return VG_OK;
}

/* Empties sid table slot i, shifting back the entries after it that probed
 * past it, so that lookups never meet a hole before their entry. */
static void delete_slot(vg_subindex *x, size_t i)
{
    size_t mask = x->nslots - 1;
    x->slots[i] = 0;
    for (size_t j = (i + 1) & mask; x->slots[j] != 0; j = (j + 1) & mask) {
        size_t home = mix(x->subs[x->slots[j] - 1].sid) & mask;
        /* j's entry may move to i if its home is not in (i, j] cyclically */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            x->slots[i] = x->slots[j];
            x->slots[j] = 0;
            i = j;
        }
    }
}

/* Whether a and b name the same subject in the same queue group (or none). */
static bool same_key(const conn_sub *a, const conn_sub *b)
{
    return a->len == b->len && memcmp(a->topic, b->topic, a->len) == 0 &&
           (a->queue == NULL) == (b->queue == NULL) &&
           (a->queue == NULL || (a->queue_len == b->queue_len &&
                                 memcmp(a->queue, b->queue, a->queue_len) == 0));
}

bool vg_subindex_remove(vg_subindex *x, uint64_t sid, conn_sub *out)
{
    size_t i = probe(x, sid);
    if (x->slots[i] == 0)
        return false;
    size_t k = x->slots[i] - 1;
    *out = x->subs[k];
    delete_slot(x, i);
    uint64_t h = hash_bytes(out->topic, out->len, out->queue, out->queue_len);
    ref **pp = find_ref(x, out->topic, out->len, out->queue, out->queue_len, h);
    if (*pp != NULL && --(*pp)->count == 0) {
        ref *r = *pp;
        *pp = r->next;
        free(r);
        x->nrefs--;
    } else if (*pp != NULL && (*pp)->sid == sid) {
        /* Another sid names it still: the first found (rare: duplicates). */
        for (size_t j = 0; j < x->n; j++)
            if (j != k && same_key(&x->subs[j], out)) {
                (*pp)->sid = x->subs[j].sid;
                break;
            }
    }
    for (size_t p = 0; p < x->npatterns; p++)
        if (x->patterns[p] == k) {
            x->patterns[p] = x->patterns[--x->npatterns];
            break;
        }
    size_t last = --x->n;
    if (k != last) { /* the last subscription fills the hole */
        x->subs[k] = x->subs[last];
        x->slots[probe(x, x->subs[k].sid)] = (uint32_t)(k + 1);
        for (size_t p = 0; p < x->npatterns; p++)
            if (x->patterns[p] == last) {
                x->patterns[p] = k;
                break;
            }
    }
    shrink(x);
    return true;
}

/* After removals, gives back what the arrays and tables no longer need (a
 * connection that held 100,000 subscriptions and dropped them); a failed
 * realloc just keeps the larger one. */
static void shrink(vg_subindex *x)
{
    if (x->cap > 8 && x->n < x->cap / 4) {
        conn_sub *subs = realloc(x->subs, x->cap / 2 * sizeof *subs);
        if (subs != NULL) {
            x->subs = subs;
            x->cap /= 2;
        }
    }
    if (x->nslots > 16 && x->n * 8 < x->nslots)
        (void)rehash(x, x->nslots / 2);
    if (x->nbuckets > 16 && x->nrefs * 4 < x->nbuckets) {
        size_t nb = x->nbuckets / 2;
        ref **b = calloc(nb, sizeof *b);
        if (b != NULL) {
            for (size_t i = 0; i < x->nbuckets; i++)
                for (ref *r = x->refs[i], *next; r != NULL; r = next) {
                    next = r->next;
                    r->next = b[r->hash & (nb - 1)];
                    b[r->hash & (nb - 1)] = r;
                }
            free(x->refs);
            x->refs = b;
            x->nbuckets = nb;
        }
    }
    if (x->patterns_cap > 4 && x->npatterns < x->patterns_cap / 4) {
        size_t *p = realloc(x->patterns, x->patterns_cap / 2 * sizeof *p);
        if (p != NULL) {
            x->patterns = p;
            x->patterns_cap /= 2;
        }
    }
}

size_t vg_subindex_count(const vg_subindex *x) { return x->n; }

conn_sub *vg_subindex_at(vg_subindex *x, size_t i) { return &x->subs[i]; }

unsigned vg_subindex_refs(const vg_subindex *x, const char *subject, uint32_t len,
                          const char *queue, uint32_t queue_len)
{
    uint64_t h = hash_bytes(subject, len, queue, queue_len);
    ref *r = *find_ref(x, subject, len, queue, queue_len, h);
    return r != NULL ? r->count : 0;
}

bool vg_subindex_covers(const vg_subindex *x, const char *topic, uint32_t len, uint64_t *sid)
{
    uint64_t h = hash_bytes(topic, len, NULL, 0);
    const ref *r = *find_ref(x, topic, len, NULL, 0, h);
    if (r != NULL) {
        if (sid != NULL)
            *sid = r->sid;
        return true;
    }
    for (size_t p = 0; p < x->npatterns; p++) {
        const conn_sub *s = &x->subs[x->patterns[p]];
        if (s->queue == NULL && vg_subject_matches(s->topic, s->len, topic, len)) {
            if (sid != NULL)
                *sid = s->sid;
            return true;
        }
    }
    return false;
}
