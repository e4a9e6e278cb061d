/* TEMPORARY shim (lead): linear, uncached. */
#include "sublist.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "topic.h"

typedef struct {
    char *subj;
    size_t len;
    void *member;
} ent;

struct vg_sublist {
    pthread_rwlock_t lock;
    ent *e;
    size_t n, cap;
    void (*retain)(void *);
    void (*release)(void *);
};

struct vg_sublist_cache {
    vg_sublist *sl;
    void **m;
    size_t n, cap;
    vg_sublist_result r;
};

vg_sublist *vg_sublist_create(void (*retain)(void *), void (*release)(void *))
{
    vg_sublist *sl = calloc(1, sizeof *sl);
    if (sl == NULL)
        return NULL;
    pthread_rwlock_init(&sl->lock, NULL);
    sl->retain = retain;
    sl->release = release;
    return sl;
}

void vg_sublist_destroy(vg_sublist *sl)
{
    if (sl == NULL)
        return;
    for (size_t i = 0; i < sl->n; i++)
        free(sl->e[i].subj);
    free(sl->e);
    pthread_rwlock_destroy(&sl->lock);
    free(sl);
}

vg_status vg_sublist_add(vg_sublist *sl, const char *subj, size_t len, const char *queue,
                         size_t qlen, void *member)
{
    (void)queue;
    (void)qlen;
    vg_status st = VG_OK;
    pthread_rwlock_wrlock(&sl->lock);
    for (size_t i = 0; i < sl->n; i++)
        if (sl->e[i].member == member && sl->e[i].len == len && !memcmp(sl->e[i].subj, subj, len))
            goto out;
    if (sl->n == sl->cap) {
        size_t cap = sl->cap ? sl->cap * 2 : 16;
        ent *e = realloc(sl->e, cap * sizeof *e);
        if (e == NULL) {
            st = VG_ERR_NOMEM;
            goto out;
        }
        sl->e = e;
        sl->cap = cap;
    }
    char *copy = malloc(len);
    if (copy == NULL) {
        st = VG_ERR_NOMEM;
        goto out;
    }
    memcpy(copy, subj, len);
    sl->e[sl->n++] = (ent){copy, len, member};
out:
    pthread_rwlock_unlock(&sl->lock);
    return st;
}

void vg_sublist_remove(vg_sublist *sl, const char *subj, size_t len, const char *queue,
                       size_t qlen, void *member)
{
    (void)queue;
    (void)qlen;
    pthread_rwlock_wrlock(&sl->lock);
    for (size_t i = 0; i < sl->n; i++)
        if (sl->e[i].member == member && sl->e[i].len == len && !memcmp(sl->e[i].subj, subj, len)) {
            free(sl->e[i].subj);
            sl->e[i] = sl->e[--sl->n];
            break;
        }
    pthread_rwlock_unlock(&sl->lock);
}

vg_sublist_cache *vg_sublist_cache_create(vg_sublist *sl)
{
    vg_sublist_cache *c = calloc(1, sizeof *c);
    if (c != NULL)
        c->sl = sl;
    return c;
}

static void drop(vg_sublist_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        c->sl->release(c->m[i]);
    c->n = 0;
}

void vg_sublist_cache_destroy(vg_sublist_cache *c)
{
    if (c == NULL)
        return;
    drop(c);
    free(c->m);
    free(c);
}

vg_status vg_sublist_match(vg_sublist_cache *c, const char *topic, size_t len,
                           const vg_sublist_result **out)
{
    vg_sublist *sl = c->sl;
    drop(c);
    c->r = (vg_sublist_result){0};
    *out = &c->r;
    vg_status st = VG_OK;
    pthread_rwlock_rdlock(&sl->lock);
    for (size_t i = 0; i < sl->n; i++) {
        if (!vg_subject_matches(sl->e[i].subj, sl->e[i].len, topic, len))
            continue;
        bool seen = false;
        for (size_t k = 0; k < c->n && !seen; k++)
            seen = c->m[k] == sl->e[i].member;
        if (seen)
            continue;
        if (c->n == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 16;
            void **m = realloc(c->m, cap * sizeof *m);
            if (m == NULL) {
                st = VG_ERR_NOMEM;
                break;
            }
            c->m = m;
            c->cap = cap;
        }
        sl->retain(sl->e[i].member);
        c->m[c->n++] = sl->e[i].member;
    }
    pthread_rwlock_unlock(&sl->lock);
    if (st != VG_OK)
        drop(c);
    c->r.members = c->m;
    c->r.n = c->n;
    return st;
}

void vg_sublist_cache_sweep(vg_sublist_cache *c) { (void)c; }

void vg_sublist_counts(vg_sublist *sl, size_t *subjects, size_t *entries)
{
    pthread_rwlock_rdlock(&sl->lock);
    *subjects = sl->n;
    *entries = sl->n;
    pthread_rwlock_unlock(&sl->lock);
}
