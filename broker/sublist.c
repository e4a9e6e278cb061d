/* The subscription table: literal subjects by whole-topic hash, patterns in
 * a token trie. (The caches are in sublist_cache.c.)
 *
 * Why two structures: most subscriptions name a literal topic, and a
 * literal lookup is one hash probe however many there are; the trie only
 * has to hold the patterns, so a topic whose first tokens no pattern
 * mentions leaves it after one probe of the root's kids. A match visits at
 * most, per token, the literal child and the '*' child of each node it has
 * reached, and collects the '>' sets on the way (nats-server's sublist
 * walks the same shape, but over every subscription, literal or not).
 *
 * Every set is a small array scanned linearly: adds are idempotent, so an
 * add scans its subject's members (fine for thousands per subject; see the
 * report if one subject ever holds a million). Empty sets, groups, trie
 * nodes and literal entries are freed at once, and hash arrays shrink, so a
 * mass unsubscribe returns its memory. */
#include "sublist_internal.h"

#include <stdlib.h>
#include <sys/random.h>

#include "topic.h"

enum { ADDED, EXISTS, NOMEM };

/* Token arrays of up to this many tokens live on the stack in add/remove. */
#define STACK_TOKENS 32

static bool subs_empty(const sl_subs *s)
{
    return s->n == 0 && s->ng == 0;
}

static void subs_free(sl_subs *s)
{
    for (size_t i = 0; i < s->ng; i++) {
        free(s->g[i]->m);
        free(s->g[i]);
    }
    free(s->g);
    free(s->m);
}

/* Grows *v (elements of size sz) to hold one more than n; false when out of
 * memory (nothing changed). */
static bool reserve(void *v, size_t *cap, size_t n, size_t sz)
{
    if (n < *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : 4;
    void *p = realloc(*(void **)v, nc * sz);
    if (p == NULL)
        return false;
    *(void **)v = p;
    *cap = nc;
    return true;
}

/* After a removal: halve an array that is three quarters empty, free an
 * empty one; failures just keep the larger array. */
static void shrink(void *v, size_t *cap, size_t n, size_t sz)
{
    if (n == 0) {
        free(*(void **)v);
        *(void **)v = NULL;
        *cap = 0;
    } else if (*cap > 16 && n < *cap / 4) {
        void *p = realloc(*(void **)v, *cap / 2 * sz);
        if (p != NULL) {
            *(void **)v = p;
            *cap /= 2;
        }
    }
}

static bool has(void *const *m, size_t n, const void *member)
{
    for (size_t i = 0; i < n; i++)
        if (m[i] == member)
            return true;
    return false;
}

static void drop(void **m, size_t *n, const void *member)
{
    for (size_t i = 0; i < *n; i++) {
        if (m[i] == member) {
            m[i] = m[--*n];
            return;
        }
    }
}

static sl_group **find_group(sl_subs *s, const char *q, size_t qlen)
{
    for (size_t i = 0; i < s->ng; i++)
        if (s->g[i]->name_len == qlen && memcmp(s->g[i]->name, q, qlen) == 0)
            return &s->g[i];
    return NULL;
}

/* Adds member to s, in group q if qlen > 0; *new_group says whether the
 * group was created. ADDED, EXISTS or NOMEM (nothing changed). */
static int subs_add(sl_subs *s, const char *q, size_t qlen, void *member, bool *new_group)
{
    *new_group = false;
    if (qlen == 0) {
        if (has(s->m, s->n, member))
            return EXISTS;
        if (!reserve(&s->m, &s->cap, s->n, sizeof *s->m))
            return NOMEM;
        s->m[s->n++] = member;
        return ADDED;
    }
    sl_group **gp = find_group(s, q, qlen);
    if (gp != NULL) {
        sl_group *g = *gp;
        if (has(g->m, g->n, member))
            return EXISTS;
        if (!reserve(&g->m, &g->cap, g->n, sizeof *g->m))
            return NOMEM;
        g->m[g->n++] = member;
        return ADDED;
    }
    if (!reserve(&s->g, &s->gcap, s->ng, sizeof *s->g))
        return NOMEM;
    sl_group *g = calloc(1, sizeof *g + qlen);
    if (g == NULL)
        return NOMEM;
    g->m = malloc(4 * sizeof *g->m);
    if (g->m == NULL) {
        free(g);
        return NOMEM;
    }
    g->cap = 4;
    g->m[g->n++] = member;
    g->name_len = (uint32_t)qlen;
    memcpy(g->name, q, qlen);
    s->g[s->ng++] = g;
    *new_group = true;
    return ADDED;
}

/* Removes member from s (group q if qlen > 0); true if it was there.
 * *group_gone says whether that emptied and freed its group. */
static bool subs_remove(sl_subs *s, const char *q, size_t qlen, void *member, bool *group_gone)
{
    *group_gone = false;
    if (qlen == 0) {
        size_t before = s->n;
        drop(s->m, &s->n, member);
        shrink(&s->m, &s->cap, s->n, sizeof *s->m);
        return s->n != before;
    }
    sl_group **gp = find_group(s, q, qlen);
    if (gp == NULL)
        return false;
    sl_group *g = *gp;
    size_t before = g->n;
    drop(g->m, &g->n, member);
    if (g->n == before)
        return false;
    shrink(&g->m, &g->cap, g->n, sizeof *g->m);
    if (g->n == 0) {
        free(g);
        *gp = s->g[--s->ng];
        shrink(&s->g, &s->gcap, s->ng, sizeof *s->g);
        *group_gone = true;
    }
    return true;
}

vg_sublist *vg_sublist_create(void (*retain)(void *), void (*release)(void *))
{
    vg_sublist *sl = calloc(1, sizeof *sl);
    if (sl == NULL)
        return NULL;
    sl->nbuckets = 64;
    sl->buckets = calloc(sl->nbuckets, sizeof *sl->buckets);
    sl->root = calloc(1, sizeof *sl->root);
    if (sl->buckets == NULL || sl->root == NULL) {
        free(sl->buckets);
        free(sl->root);
        free(sl);
        return NULL;
    }
    if (getrandom(&sl->seed, sizeof sl->seed, GRND_NONBLOCK) != sizeof sl->seed)
        sl->seed = (uint64_t)(uintptr_t)sl ^ 0x2545f4914f6cdd1dull;
    sl->retain = retain;
    sl->release = release;
    atomic_init(&sl->gen, 1);
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&sl->lock, &a);
    pthread_rwlockattr_destroy(&a);
    return sl;
}

static void node_free(sl_node *n)
{
    for (size_t b = 0; b < n->nbuckets; b++) {
        for (sl_node *k = n->kids[b], *next; k != NULL; k = next) {
            next = k->next;
            node_free(k);
        }
    }
    if (n->star != NULL)
        node_free(n->star);
    free(n->kids);
    subs_free(&n->subs);
    subs_free(&n->gt);
    free(n);
}

void vg_sublist_destroy(vg_sublist *sl)
{
    if (sl == NULL)
        return;
    for (size_t i = 0; i < sl->nbuckets; i++) {
        for (sl_lit *e = sl->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            subs_free(&e->subs);
            free(e);
        }
    }
    free(sl->buckets);
    node_free(sl->root);
    pthread_rwlock_destroy(&sl->lock);
    free(sl);
}

/* The literal table. */

static sl_lit **lit_find(vg_sublist *sl, uint64_t h, const char *s, size_t len)
{
    sl_lit **pp = &sl->buckets[h & (sl->nbuckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        sl_lit *e = *pp;
        if (e->hash == h && e->len == len && memcmp(e->subj, s, len) == 0)
            return pp;
    }
    return pp;
}

/* Rehashes into nb buckets; on allocation failure the table keeps its size. */
static void lit_resize(vg_sublist *sl, size_t nb)
{
    sl_lit **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < sl->nbuckets; i++) {
        for (sl_lit *e = sl->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(sl->buckets);
    sl->buckets = b;
    sl->nbuckets = nb;
}

/* The trie. */

static sl_node **kid_find(sl_node *n, uint64_t h, const char *tok, size_t len)
{
    if (n->nbuckets == 0)
        return NULL;
    sl_node **pp = &n->kids[h & (n->nbuckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        sl_node *k = *pp;
        if (k->hash == h && k->len == len && memcmp(k->tok, tok, len) == 0)
            return pp;
    }
    return pp;
}

/* Rehashes n's kids into nb buckets (0: frees them; there are none); on
 * allocation failure keeps the old array. */
static void kids_resize(sl_node *n, size_t nb)
{
    sl_node **b = NULL;
    if (nb > 0 && (b = calloc(nb, sizeof *b)) == NULL)
        return;
    for (size_t i = 0; i < n->nbuckets; i++) {
        for (sl_node *k = n->kids[i], *next; k != NULL; k = next) {
            next = k->next;
            k->next = b[k->hash & (nb - 1)];
            b[k->hash & (nb - 1)] = k;
        }
    }
    free(n->kids);
    n->kids = b;
    n->nbuckets = nb;
}

static sl_node *node_new(sl_node *parent, const sl_tok *t)
{
    sl_node *k = calloc(1, sizeof *k + t->len);
    if (k == NULL)
        return NULL;
    k->parent = parent;
    k->hash = t->hash;
    k->len = (uint32_t)t->len;
    memcpy(k->tok, t->p, t->len);
    return k;
}

static bool is_wild(const sl_tok *t, char c)
{
    return t->len == 1 && t->p[0] == c;
}

/* The child of n for token t, created if `create`; NULL if absent or out of
 * memory. */
static sl_node *child(sl_node *n, const sl_tok *t, bool create)
{
    if (is_wild(t, '*')) {
        if (n->star == NULL && create)
            n->star = node_new(n, t);
        return n->star;
    }
    sl_node **pp = kid_find(n, t->hash, t->p, t->len);
    if (pp != NULL && *pp != NULL)
        return *pp;
    if (!create)
        return NULL;
    if (n->nkids >= n->nbuckets) {
        kids_resize(n, n->nbuckets ? n->nbuckets * 2 : 4);
        if (n->nbuckets == 0)
            return NULL;
        pp = kid_find(n, t->hash, t->p, t->len);
    }
    sl_node *k = node_new(n, t);
    if (k == NULL)
        return NULL;
    *pp = k;
    n->nkids++;
    return k;
}

/* Frees n and its ancestors for as long as they hold nothing. */
static void prune(sl_node *root, sl_node *n)
{
    while (n != root && subs_empty(&n->subs) && subs_empty(&n->gt) && n->star == NULL &&
           n->nkids == 0) {
        sl_node *p = n->parent;
        if (p->star == n) {
            p->star = NULL;
        } else {
            sl_node **pp = kid_find(p, n->hash, n->tok, n->len);
            *pp = n->next;
            p->nkids--;
            if (p->nkids == 0)
                kids_resize(p, 0);
            else if (p->nbuckets > 4 && p->nkids < p->nbuckets / 4)
                kids_resize(p, p->nbuckets / 2);
        }
        free(n->kids);
        subs_free(&n->subs); /* empty, but a failed add may have left arrays */
        subs_free(&n->gt);
        free(n);
        n = p;
    }
}

/* The set for pattern t[0..n) and the node it hangs off, creating nodes if
 * `create`; NULL if absent or out of memory (*last: the deepest node
 * reached, for pruning). */
static sl_subs *pattern_set(vg_sublist *sl, const sl_tok *t, size_t n, bool create,
                            sl_node **last)
{
    sl_node *node = sl->root;
    *last = node;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 == n && is_wild(&t[i], '>'))
            return &node->gt;
        node = child(node, &t[i], create);
        if (node == NULL)
            return NULL;
        *last = node;
    }
    return &node->subs;
}

/* Tokenizes subj into *t (the stack array `stack`, or a heap one the caller
 * frees when it differs); false when out of memory. */
static bool tokens_of(vg_sublist *sl, const char *subj, size_t len, sl_tok *stack, sl_tok **t,
                      size_t *n, uint64_t *whole)
{
    *t = stack;
    *n = sl_tokenize(sl->seed, subj, len, stack, STACK_TOKENS, whole);
    if (*n <= STACK_TOKENS)
        return true;
    if ((*t = malloc(*n * sizeof **t)) == NULL)
        return false;
    sl_tokenize(sl->seed, subj, len, *t, *n, whole);
    return true;
}

static void changed(vg_sublist *sl)
{
    /* Release: a cache that reads the new generation also sees the change. */
    atomic_fetch_add_explicit(&sl->gen, 1, memory_order_release);
}

vg_status vg_sublist_add(vg_sublist *sl, const char *subj, size_t len, const char *queue,
                         size_t qlen, void *member)
{
    if (queue == NULL)
        qlen = 0;
    sl_tok stack[STACK_TOKENS], *t;
    size_t n;
    uint64_t whole;
    bool pattern = vg_subject_is_pattern(subj, len);
    if (pattern && !tokens_of(sl, subj, len, stack, &t, &n, &whole))
        return VG_ERR_NOMEM;
    if (!pattern)
        sl_tokenize(sl->seed, subj, len, NULL, 0, &whole);

    int r = NOMEM;
    bool new_group;
    pthread_rwlock_wrlock(&sl->lock);
    if (!pattern) {
        sl_lit **pp = lit_find(sl, whole, subj, len);
        sl_lit *e = *pp;
        if (e == NULL) {
            e = calloc(1, sizeof *e + len);
            if (e == NULL)
                goto out;
            e->hash = whole;
            e->len = len;
            memcpy(e->subj, subj, len);
        }
        r = subs_add(&e->subs, queue, qlen, member, &new_group);
        if (*pp == NULL) {
            if (r != ADDED) {
                subs_free(&e->subs); /* a failed add may have grown an array */
                free(e);
                goto out;
            }
            *pp = e;
            sl->nlit++;
            if (sl->nlit > sl->nbuckets)
                lit_resize(sl, sl->nbuckets * 2);
        }
    } else {
        sl_node *last;
        sl_subs *s = pattern_set(sl, t, n, true, &last);
        if (s != NULL) {
            bool was_empty = subs_empty(s);
            r = subs_add(s, queue, qlen, member, &new_group);
            if (r == ADDED && was_empty)
                sl->npat++;
        }
        if (r != ADDED)
            prune(sl->root, last);
    }
    if (r == ADDED) {
        sl->nentries++;
        sl->ngroups += new_group;
        changed(sl);
    }
out:
    pthread_rwlock_unlock(&sl->lock);
    if (pattern && t != stack)
        free(t);
    return r == NOMEM ? VG_ERR_NOMEM : VG_OK;
}

void vg_sublist_remove(vg_sublist *sl, const char *subj, size_t len, const char *queue,
                       size_t qlen, void *member)
{
    if (queue == NULL)
        qlen = 0;
    sl_tok stack[STACK_TOKENS], *t;
    size_t n;
    uint64_t whole;
    bool pattern = vg_subject_is_pattern(subj, len);
    /* Out of memory for a long pattern's tokens: it cannot be found, and
     * there is no status to say so; such a pattern (over 32 tokens) is far
     * past any configured limit. */
    if (pattern && !tokens_of(sl, subj, len, stack, &t, &n, &whole))
        return;
    if (!pattern)
        sl_tokenize(sl->seed, subj, len, NULL, 0, &whole);

    bool removed = false, group_gone = false;
    pthread_rwlock_wrlock(&sl->lock);
    if (!pattern) {
        sl_lit **pp = lit_find(sl, whole, subj, len);
        sl_lit *e = *pp;
        if (e != NULL && (removed = subs_remove(&e->subs, queue, qlen, member, &group_gone)) &&
            subs_empty(&e->subs)) {
            *pp = e->next;
            subs_free(&e->subs);
            free(e);
            sl->nlit--;
            if (sl->nbuckets > 64 && sl->nlit < sl->nbuckets / 4)
                lit_resize(sl, sl->nbuckets / 2);
        }
    } else {
        sl_node *last;
        sl_subs *s = pattern_set(sl, t, n, false, &last);
        if (s != NULL && (removed = subs_remove(s, queue, qlen, member, &group_gone))) {
            if (subs_empty(s))
                sl->npat--;
            prune(sl->root, last);
        }
    }
    if (removed) {
        sl->nentries--;
        sl->ngroups -= group_gone;
        changed(sl);
    }
    pthread_rwlock_unlock(&sl->lock);
    if (pattern && t != stack)
        free(t);
}

/* Matching. */

static vg_status push(sl_sets *out, const sl_subs *s)
{
    if (subs_empty(s))
        return VG_OK;
    if (!reserve(&out->v, &out->cap, out->n, sizeof *out->v))
        return VG_ERR_NOMEM;
    out->v[out->n++] = s;
    return VG_OK;
}

/* Collects what node, reached by t[0..i), sees of t[i..n). */
static vg_status visit(const sl_node *node, const sl_tok *t, size_t i, size_t n, bool sys,
                       sl_sets *out)
{
    if (i == n)
        return push(out, &node->subs);
    /* At the root, sys (a $SYS topic) hides '*' and '>': only patterns that
     * spell $SYS out see the broker's own topics. */
    bool wild = !(sys && i == 0);
    vg_status st = VG_OK;
    if (wild && (st = push(out, &node->gt)) != VG_OK)
        return st;
    if (node->nbuckets > 0) {
        const sl_node *k = node->kids[t[i].hash & (node->nbuckets - 1)];
        for (; k != NULL; k = k->next) {
            if (k->hash == t[i].hash && k->len == t[i].len &&
                memcmp(k->tok, t[i].p, t[i].len) == 0) {
                if ((st = visit(k, t, i + 1, n, sys, out)) != VG_OK)
                    return st;
                break;
            }
        }
    }
    if (wild && node->star != NULL)
        st = visit(node->star, t, i + 1, n, sys, out);
    return st;
}

vg_status sublist__collect(vg_sublist *sl, const char *topic, size_t len, const sl_tok *t,
                           size_t n, uint64_t whole, sl_sets *out)
{
    sl_lit *e = *lit_find(sl, whole, topic, len);
    vg_status st = e != NULL ? push(out, &e->subs) : VG_OK;
    if (st != VG_OK)
        return st;
    const sl_node *root = sl->root;
    if (root->nkids == 0 && root->star == NULL && subs_empty(&root->gt))
        return VG_OK; /* no patterns at all */
    return visit(root, t, 0, n, vg_topic_is_system(topic, len), out);
}

void vg_sublist_counts(vg_sublist *sl, vg_sublist_counts_t *out)
{
    pthread_rwlock_rdlock(&sl->lock);
    out->literals = sl->nlit;
    out->patterns = sl->npat;
    out->entries = sl->nentries;
    out->groups = sl->ngroups;
    pthread_rwlock_unlock(&sl->lock);
}

uint64_t vg_sublist_generation(vg_sublist *sl)
{
    return atomic_load_explicit(&sl->gen, memory_order_acquire);
}
