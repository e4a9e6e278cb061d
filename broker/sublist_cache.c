/* Per-thread caches of match results, valid while the table's generation is
 * unchanged.
 *
 * A cache has 64 entries in 16 sets of 4; a topic may live in either of two
 * sets chosen by its whole hash (8 candidate entries, the least recently
 * used replaced). With one set per topic, a thread cycling through 16
 * topics lost a third of its hits whenever five of them shared a set (the
 * hash seed is random, so some runs did); two choices make that far rarer.
 * A hit compares the topic's bytes, not just its hash, and the entry's
 * generation with the table's; it costs one tokenizing pass, one atomic
 * load and a memcmp: no lock, no allocation, no reference counting (the
 * entry already holds a reference on every member it lists).
 *
 * The generation an entry records is read BEFORE the miss takes the read
 * lock: a change that lands between that read and the lock makes the entry
 * stale at once, never a stale entry that looks current.
 *
 * A miss copies the reached sets' members and retains them under the read
 * lock, then, outside it, removes the duplicates (a member reached through
 * several subjects, a group name in several subjects) in O(n) with a small
 * open-addressing set of pointers, releasing the duplicate references
 * (glibc's qsort, tried first, took a quarter of a miss). An entry's arrays
 * are reused from fill to fill, but freed when they grew past KEEP
 * elements, so one huge fan-out does not pin its memory in every cache that
 * once saw it. */
#include "sublist_internal.h"

#include <stdlib.h>

#define SETS 16 /* a power of two */
#define WAYS 4
#define KEEP 256          /* an entry keeps arrays of up to this many elements */
#define INLINE_TOKENS 32  /* tokens held without allocating (more: grown on a miss) */

typedef struct {
    uint32_t name_off, name_len; /* in the entry's name pool */
    size_t off, n;               /* members in the entry's group pool */
} grec;

typedef struct {
    bool full;
    uint64_t hash, gen;
    uint64_t used; /* the cache's tick when last hit or filled: LRU */
    char *topic;
    size_t tlen, tcap;
    void **m; /* plain members: res.n of them */
    size_t mcap;
    void **gm; /* groups' members, ngm of them, each group's contiguous */
    size_t gmcap, ngm;
    vg_sublist_group *g;
    size_t gcap;
    char *names;
    size_t ncap;
    vg_sublist_result res;
} entry;

struct vg_sublist_cache {
    vg_sublist *sl;
    uint64_t swept; /* the generation of the last sweep: nothing older is left */
    entry e[SETS * WAYS];
    uint64_t tick;
    sl_tok *tok;
    size_t tokcap;
    sl_tok inline_tok[INLINE_TOKENS];
    /* Miss scratch, reused. */
    sl_sets sets;
    grec *recs;
    size_t rcap;
    void **gm2;
    size_t gm2cap;
    void **seen; /* unique()'s set */
    size_t seencap;
    uint64_t hits, misses;
};

static const vg_sublist_result empty_result;

vg_sublist_cache *vg_sublist_cache_create(vg_sublist *sl)
{
    vg_sublist_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->sl = sl;
    c->tok = c->inline_tok;
    c->tokcap = INLINE_TOKENS;
    return c;
}

/* Drops the references e holds and empties it; arrays past KEEP go too. */
static void entry_release(vg_sublist_cache *c, entry *e)
{
    void (*release)(void *) = c->sl->release;
    for (size_t i = 0; i < e->res.n; i++)
        release(e->m[i]);
    for (size_t i = 0; i < e->ngm; i++)
        release(e->gm[i]);
    e->res = empty_result;
    e->ngm = 0;
    e->full = false;
    if (e->mcap > KEEP) {
        free(e->m);
        e->m = NULL;
        e->mcap = 0;
    }
    if (e->gmcap > KEEP) {
        free(e->gm);
        e->gm = NULL;
        e->gmcap = 0;
    }
    if (e->gcap > KEEP) {
        free(e->g);
        e->g = NULL;
        e->gcap = 0;
    }
    if (e->ncap > KEEP * 16) {
        free(e->names);
        e->names = NULL;
        e->ncap = 0;
    }
}

void vg_sublist_cache_destroy(vg_sublist_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < SETS * WAYS; i++) {
        entry *e = &c->e[i];
        entry_release(c, e);
        free(e->topic);
        free(e->m);
        free(e->gm);
        free(e->g);
        free(e->names);
    }
    if (c->tok != c->inline_tok)
        free(c->tok);
    free(c->sets.v);
    free(c->recs);
    free(c->gm2);
    free(c->seen);
    free(c);
}

void vg_sublist_cache_sweep(vg_sublist_cache *c)
{
    uint64_t gen = vg_sublist_generation(c->sl);
    if (gen == c->swept)
        return; /* no change since: an entry filled meanwhile is of this generation */
    for (size_t i = 0; i < SETS * WAYS; i++)
        if (c->e[i].full && c->e[i].gen != gen)
            entry_release(c, &c->e[i]);
    c->swept = gen;
}

void vg_sublist_cache_stats(const vg_sublist_cache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = c->hits;
    *misses = c->misses;
}

/* Makes *v (elements of size sz) hold at least n; false when out of memory.
 * The contents need not survive (callers fill it afterwards). */
static bool fit(void *v, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap)
        return true;
    size_t nc = *cap ? *cap : 8;
    while (nc < n)
        nc *= 2;
    void *p = realloc(*(void **)v, nc * sz);
    if (p == NULL)
        return false;
    *(void **)v = p;
    *cap = nc;
    return true;
}

/* log2 of the size of unique()'s set for n pointers: at most half full. */
static unsigned set_bits(size_t n)
{
    unsigned bits = 4;
    while (((size_t)1 << bits) < 2 * n)
        bits++;
    return bits;
}

/* Removes the duplicates from m[0..n) in place, keeping first occurrences
 * and releasing the reference each duplicate held; returns the new count.
 * O(n): a scan for a few, else an open-addressing set of pointers in
 * c->seen, which the caller has fitted to 1 << set_bits(n). */
static size_t unique(vg_sublist_cache *c, void **m, size_t n)
{
    if (n <= 8) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            size_t j = 0;
            while (j < k && m[j] != m[i])
                j++;
            if (j < k)
                c->sl->release(m[i]);
            else
                m[k++] = m[i];
        }
        return k;
    }
    unsigned bits = set_bits(n);
    size_t size = (size_t)1 << bits;
    memset(c->seen, 0, size * sizeof *c->seen);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)(((uintptr_t)m[i] * 0x9e3779b97f4a7c15ull) >> (64 - bits));
        while (c->seen[h] != NULL && c->seen[h] != m[i])
            h = (h + 1) & (size - 1);
        if (c->seen[h] != NULL) {
            c->sl->release(m[i]);
        } else {
            c->seen[h] = m[i];
            m[k++] = m[i];
        }
    }
    return k;
}

/* Orders group records by name (names: the entry's name pool). */
static int cmp_grec(const void *a, const void *b, void *names)
{
    const grec *x = a, *y = b;
    if (x->name_len != y->name_len)
        return x->name_len < y->name_len ? -1 : 1;
    return memcmp((char *)names + x->name_off, (char *)names + y->name_off, x->name_len);
}

/* Copies what c->sets lists into e and retains it. The caller holds the
 * read lock. false when out of memory (nothing retained, e empty). */
static bool copy_sets(vg_sublist_cache *c, entry *e, size_t *ng)
{
    size_t np = 0, ngroups = 0, ngm = 0, nnames = 0;
    for (size_t i = 0; i < c->sets.n; i++) {
        const sl_subs *s = c->sets.v[i];
        np += s->n;
        ngroups += s->ng;
        for (size_t j = 0; j < s->ng; j++) {
            ngm += s->g[j]->n;
            nnames += s->g[j]->name_len;
        }
    }
    if (!fit(&e->m, &e->mcap, np, sizeof *e->m) || !fit(&e->gm, &e->gmcap, ngm, sizeof *e->gm) ||
        !fit(&c->recs, &c->rcap, ngroups, sizeof *c->recs) ||
        !fit(&e->g, &e->gcap, ngroups, sizeof *e->g) ||
        !fit(&e->names, &e->ncap, nnames, 1))
        return false;
    void (*retain)(void *) = c->sl->retain;
    size_t p = 0, gmo = 0, no = 0, r = 0;
    for (size_t i = 0; i < c->sets.n; i++) {
        const sl_subs *s = c->sets.v[i];
        for (size_t j = 0; j < s->n; j++) {
            retain(s->m[j]);
            e->m[p++] = s->m[j];
        }
        for (size_t j = 0; j < s->ng; j++) {
            const sl_group *g = s->g[j];
            c->recs[r++] = (grec){(uint32_t)no, g->name_len, gmo, g->n};
            memcpy(e->names + no, g->name, g->name_len);
            no += g->name_len;
            for (size_t k = 0; k < g->n; k++) {
                retain(g->m[k]);
                e->gm[gmo++] = g->m[k];
            }
        }
    }
    e->res.n = np;
    e->ngm = ngm;
    *ng = ngroups;
    return true;
}

/* Merges the groups of the same name from different subjects, each member
 * once (outside the lock), and points e->res at the arrays. */
static void finish(vg_sublist_cache *c, entry *e, size_t nrec, bool several)
{
    if (several) {
        e->res.n = unique(c, e->m, e->res.n);
        if (nrec > 1) {
            qsort_r(c->recs, nrec, sizeof *c->recs, cmp_grec, e->names);
            /* Rebuild the member pool in name order into gm2 (fitted by
             * fill to hold all of gm), then swap the two. */
            size_t out = 0, k = 0;
            for (size_t i = 0; i < nrec;) {
                size_t j = i, start = out;
                const grec *first = &c->recs[i];
                for (; j < nrec && cmp_grec(first, &c->recs[j], e->names) == 0; j++) {
                    memcpy(c->gm2 + out, e->gm + c->recs[j].off, c->recs[j].n * sizeof *c->gm2);
                    out += c->recs[j].n;
                }
                if (j - i > 1)
                    out = start + unique(c, c->gm2 + start, out - start);
                c->recs[k++] = (grec){first->name_off, first->name_len, start, out - start};
                i = j;
            }
            void **t = e->gm;
            size_t tc = e->gmcap;
            e->gm = c->gm2;
            e->gmcap = c->gm2cap;
            c->gm2 = t;
            c->gm2cap = tc;
            e->ngm = out;
            nrec = k;
        }
    }
    for (size_t i = 0; i < nrec; i++)
        e->g[i] = (vg_sublist_group){e->names + c->recs[i].name_off, c->recs[i].name_len,
                                     e->gm + c->recs[i].off, c->recs[i].n};
    e->res.members = e->m;
    e->res.groups = e->g;
    e->res.ngroups = nrec;
}

/* Fills e with what topic matches now. false when out of memory (e empty). */
static bool fill(vg_sublist_cache *c, entry *e, const char *topic, size_t len, size_t ntok,
                 uint64_t whole)
{
    vg_sublist *sl = c->sl;
    if (!fit(&e->topic, &e->tcap, len, 1))
        return false;
    /* Acquire, before the lock: see the top of the file. */
    uint64_t gen = atomic_load_explicit(&sl->gen, memory_order_acquire);
    size_t nrec = 0;
    c->sets.n = 0;
    pthread_rwlock_rdlock(&sl->lock);
    bool ok = sublist__collect(sl, topic, len, c->tok, ntok, whole, &c->sets) == VG_OK &&
              copy_sets(c, e, &nrec);
    pthread_rwlock_unlock(&sl->lock);
    /* The merge's scratch (only several sets can hold duplicates), fitted
     * before it starts so that it cannot fail half way. */
    bool several = c->sets.n > 1;
    size_t most = e->res.n > e->ngm ? e->res.n : e->ngm;
    ok = ok && (!several || (fit(&c->gm2, &c->gm2cap, e->ngm, sizeof *c->gm2) &&
                             fit(&c->seen, &c->seencap, (size_t)1 << set_bits(most),
                                 sizeof *c->seen)));
    if (!ok) {
        entry_release(c, e);
        return false;
    }
    finish(c, e, nrec, several);
    memcpy(e->topic, topic, len);
    e->tlen = len;
    e->hash = whole;
    e->gen = gen;
    e->full = true;
    if (c->gm2cap > KEEP) {
        free(c->gm2);
        c->gm2 = NULL;
        c->gm2cap = 0;
    }
    if (c->seencap > 4 * KEEP) {
        free(c->seen);
        c->seen = NULL;
        c->seencap = 0;
    }
    return true;
}

/* The two sets a topic may live in (different ones). */
static void sets_of(uint64_t whole, entry *e, entry *ways[2])
{
    size_t a = (size_t)(whole >> 7) & (SETS - 1), b = (size_t)(whole >> 29) & (SETS - 1);
    if (b == a)
        b = a ^ 1;
    ways[0] = &e[a * WAYS];
    ways[1] = &e[b * WAYS];
}

vg_status vg_sublist_match(vg_sublist_cache *c, const char *topic, size_t len,
                           const vg_sublist_result **out)
{
    uint64_t whole;
    size_t ntok = sl_tokenize(c->sl->seed, topic, len, c->tok, c->tokcap, &whole);
    entry *ways[2], *e = NULL;
    sets_of(whole, c->e, ways);
    for (size_t i = 0; i < 2 * WAYS && e == NULL; i++) {
        entry *x = &ways[i / WAYS][i % WAYS];
        if (x->full && x->hash == whole && x->tlen == len && memcmp(x->topic, topic, len) == 0) {
            if (x->gen == atomic_load_explicit(&c->sl->gen, memory_order_acquire)) {
                c->hits++;
                x->used = ++c->tick;
                *out = &x->res;
                return VG_OK;
            }
            e = x; /* stale: refill it in place */
        }
    }
    c->misses++;
    for (size_t i = 0; i < 2 * WAYS && e == NULL; i++)
        if (!ways[i / WAYS][i % WAYS].full)
            e = &ways[i / WAYS][i % WAYS];
    if (e == NULL) {
        e = &ways[0][0];
        for (size_t i = 1; i < 2 * WAYS; i++)
            if (ways[i / WAYS][i % WAYS].used < e->used)
                e = &ways[i / WAYS][i % WAYS];
    }
    e->used = ++c->tick;
    entry_release(c, e);
    *out = &empty_result;
    if (ntok > c->tokcap) {
        sl_tok *t = malloc(ntok * sizeof *t);
        if (t == NULL)
            return VG_ERR_NOMEM;
        if (c->tok != c->inline_tok)
            free(c->tok);
        c->tok = t;
        c->tokcap = ntok;
        sl_tokenize(c->sl->seed, topic, len, c->tok, c->tokcap, &whole);
    }
    if (!fill(c, e, topic, len, ntok, whole))
        return VG_ERR_NOMEM;
    *out = &e->res;
    return VG_OK;
}
