/* The registry of queue groups: literal subjects in a hash table (a
 * publisher's lookup is one probe), patterns in a list matched one by one
 * (a broker has few), under one reader-writer lock taken shared by
 * publishers and exclusive by joins and the departure of a group; and a
 * group's making and freeing. */
#include "qgroup_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "topic.h"

void vg_qgroups_cfg_defaults(vg_qgroups_cfg *cfg)
{
    cfg->max_inflight = 1024;
    cfg->batch = 16;
    cfg->pump_max = 4096;
}

static uint64_t hash(const vg_qgroups *r, const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ r->seed;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

/* ---- a group's life ---- */

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

vg_qgroup *vg_qgroup_new(vg_qgroups *r, const char *queue, size_t queue_len, const char *subject,
                         size_t subject_len, const char *durable, size_t durable_len, bool pattern)
{
    vg_qgroup *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    atomic_init(&g->refs, 1);
    g->reg = r;
    g->queue = dup_n(queue, queue_len);
    g->subject = dup_n(subject, subject_len);
    g->queue_len = (uint32_t)queue_len;
    g->subject_len = (uint32_t)subject_len;
    g->pattern = pattern;
    g->batch.cap = r->cfg.batch; /* a batch's ranges: at most one per message */
    g->batch.v = malloc(g->batch.cap * sizeof *g->batch.v);
    bool ok = g->queue != NULL && g->subject != NULL && g->batch.v != NULL;
    if (ok && durable != NULL && durable_len > 0) {
        /* Stored as durable@queue (@pattern): '@' is no durable name's, so
         * it cannot meet a plain durable; a literal's topic is its subject. */
        size_t n = durable_len + 1 + queue_len + (pattern ? 1 + subject_len : 0);
        g->durable = dup_n(durable, durable_len);
        g->name = malloc(n);
        ok = g->durable != NULL && g->name != NULL;
        if (ok) {
            char *p = g->name;
            memcpy(p, durable, durable_len);
            p += durable_len;
            *p++ = '@';
            memcpy(p, queue, queue_len);
            p += queue_len;
            if (pattern) {
                *p++ = '@';
                memcpy(p, subject, subject_len);
            }
            g->durable_len = (uint32_t)durable_len;
            g->name_len = (uint32_t)n;
        }
    }
    if (!ok || pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g->queue);
        free(g->subject);
        free(g->durable);
        free(g->name);
        free(g->batch.v);
        free(g);
        return NULL;
    }
    pthread_mutex_init(&g->lmu, NULL);
    atomic_init(&g->again, false);
    return g;
}

void vg_qgroup_retain(vg_qgroup *g) { atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed); }

void vg_qgroup_release(vg_qgroup *g)
{
    if (g == NULL || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < g->nt; i++)
        if (g->t[i].cur_ok)
            vg_tcursor_release(&g->t[i].cur);
    for (size_t i = 0; i < g->nm; i++) { /* only if destroyed with members */
        free(g->m[i].fl.v);
        g->reg->ops.release(g->m[i].member);
    }
    free(g->t);
    free(g->m);
    free(g->redo.v);
    free(g->gaps.v);
    free(g->batch.v);
    free(g->learn);
    free(g->known);
    vg_buf_free(&g->enc);
    pthread_mutex_destroy(&g->mu);
    pthread_mutex_destroy(&g->lmu);
    free(g->queue);
    free(g->subject);
    free(g->durable);
    free(g->name);
    free(g);
}

/* ---- the registry ---- */

vg_qgroups *vg_qgroups_create(vg_logs *logs, const vg_qgroups_cfg *cfg, const vg_qgroup_ops *ops)
{
    vg_qgroups *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->logs = logs;
    r->cfg = *cfg;
    if (r->cfg.max_inflight == 0)
        r->cfg.max_inflight = 1;
    if (r->cfg.batch == 0)
        r->cfg.batch = 1;
    if (r->cfg.pump_max < r->cfg.batch)
        r->cfg.pump_max = r->cfg.batch;
    r->ops = *ops;
    r->nbuckets = 64;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if (r->buckets == NULL || pthread_rwlock_init(&r->lock, NULL) != 0) {
        free(r->buckets);
        free(r);
        return NULL;
    }
    if (getrandom(&r->seed, sizeof r->seed, 0) != (ssize_t)sizeof r->seed)
        r->seed = (uint64_t)(uintptr_t)r;
    atomic_init(&r->ngroups, 0);
    atomic_init(&r->redelivered, 0);
    return r;
}

static void unclaim_all(vg_qgroup *g, bool forget)
{
    const vg_qgroup_ops *ops = &g->reg->ops;
    if (g->name == NULL || ops->unclaim == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->nt; i++)
        ops->unclaim(ops->ud, g->name, g->name_len, g->t[i].topic, g->t[i].len, g, forget);
    pthread_mutex_unlock(&g->mu);
}

void vg_qgroups_destroy(vg_qgroups *r)
{
    if (r == NULL)
        return;
    for (size_t b = 0; b < r->nbuckets; b++)
        while (r->buckets[b] != NULL) {
            vg_qgroup *g = r->buckets[b];
            r->buckets[b] = g->hnext;
            unclaim_all(g, false);
            vg_qgroup_release(g);
        }
    while (r->patterns != NULL) {
        vg_qgroup *g = r->patterns;
        r->patterns = g->hnext;
        unclaim_all(g, false);
        vg_qgroup_release(g);
    }
    free(r->buckets);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}

static bool same(const vg_qgroup *g, const char *q, size_t ql, const char *s, size_t sl,
                 const char *d, size_t dl)
{
    return g->queue_len == ql && g->subject_len == sl && g->durable_len == dl &&
           memcmp(g->queue, q, ql) == 0 && memcmp(g->subject, s, sl) == 0 &&
           (dl == 0 || memcmp(g->durable, d, dl) == 0);
}

/* The list a group of subject lives in. Under the lock. */
static vg_qgroup **list_of(vg_qgroups *r, const char *subject, size_t len, bool pattern)
{
    return pattern ? &r->patterns : &r->buckets[hash(r, subject, len) & (r->nbuckets - 1)];
}

/* Doubles the literal table once it holds more groups than buckets. */
static void grow(vg_qgroups *r)
{
    if (r->nliteral < r->nbuckets)
        return;
    size_t nb = r->nbuckets * 2;
    vg_qgroup **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < r->nbuckets; i++)
        while (r->buckets[i] != NULL) {
            vg_qgroup *g = r->buckets[i];
            r->buckets[i] = g->hnext;
            vg_qgroup **at = &b[hash(r, g->subject, g->subject_len) & (nb - 1)];
            g->hnext = *at;
            *at = g;
        }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = nb;
}

vg_status vg_qgroup_join(vg_qgroups *r, const char *queue, size_t queue_len, const char *subject,
                         size_t subject_len, const char *durable, size_t durable_len, void *member,
                         uint64_t sid, const vg_qgroup_start *start, vg_qgroup **group,
                         uint64_t *next)
{
    if (durable == NULL)
        durable_len = 0;
    bool pattern = vg_subject_is_pattern(subject, subject_len);
    vg_tlog *log = pattern ? NULL : vg_logs_get(r->logs, subject, subject_len);
    if (!pattern && log == NULL)
        return VG_ERR_NOMEM;
    pthread_rwlock_wrlock(&r->lock);
    vg_qgroup **list = list_of(r, subject, subject_len, pattern);
    vg_qgroup *g = *list;
    while (g != NULL && !same(g, queue, queue_len, subject, subject_len, durable, durable_len))
        g = g->hnext;
    bool created = g == NULL;
    if (created) {
        g = vg_qgroup_new(r, queue, queue_len, subject, subject_len, durable, durable_len, pattern);
        if (g == NULL) {
            pthread_rwlock_unlock(&r->lock);
            return VG_ERR_NOMEM;
        }
    }
    /* Under the registry's lock, so that a group whose last member is
     * leaving cannot be unlinked in between (registry, then group). */
    vg_status st = vg_qgroup_add_member(g, member, sid, log, start, next);
    if (st == VG_OK && created) {
        g->hnext = *list;
        *list = g;
        g->linked = true;
        if (!pattern) {
            r->nliteral++;
            grow(r);
        }
        atomic_fetch_add_explicit(&r->ngroups, 1, memory_order_relaxed);
    }
    if (st == VG_OK)
        vg_qgroup_retain(g); /* the member's */
    pthread_rwlock_unlock(&r->lock);
    if (st != VG_OK && created) {
        unclaim_all(g, false);
        vg_qgroup_release(g);
        return st;
    }
    /* The registry keeps the creating reference. A new member has room:
     * pump, with the registry's lock released (a pump may store positions). */
    *group = st == VG_OK ? g : NULL;
    if (st == VG_OK)
        vg_qgroup_pump(g);
    return st;
}

void vg_qgroups_maybe_unlink(vg_qgroups *r, vg_qgroup *g, bool forget)
{
    pthread_rwlock_wrlock(&r->lock);
    pthread_mutex_lock(&g->mu);
    bool unlink = g->linked && g->nm == 0 && (g->name == NULL || forget);
    if (unlink) {
        vg_qgroup **p = list_of(r, g->subject, g->subject_len, g->pattern);
        while (*p != g)
            p = &(*p)->hnext;
        *p = g->hnext;
        g->linked = false;
        if (!g->pattern)
            r->nliteral--;
        atomic_fetch_sub_explicit(&r->ngroups, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&g->mu);
    pthread_rwlock_unlock(&r->lock);
    if (unlink) {
        unclaim_all(g, forget);
        vg_qgroup_release(g); /* the registry's */
    }
}

bool vg_qgroups_any(vg_qgroups *r)
{
    return r != NULL && atomic_load_explicit(&r->ngroups, memory_order_relaxed) > 0;
}

/* Appends g, retained, to the scratch list. */
static bool push(vg_qgroup *g, vg_qgroup ***scratch, size_t *cap, size_t *count)
{
    if (*count == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        vg_qgroup **s = realloc(*scratch, c * sizeof *s);
        if (s == NULL)
            return false;
        *scratch = s;
        *cap = c;
    }
    vg_qgroup_retain(g);
    (*scratch)[(*count)++] = g;
    return true;
}

vg_status vg_qgroups_match(vg_qgroups *r, const char *topic, size_t len, vg_tlog *t,
                           uint64_t first_seq, vg_qgroup ***scratch, size_t *cap, size_t *count)
{
    *count = 0;
    bool ok = true;
    pthread_rwlock_rdlock(&r->lock);
    for (vg_qgroup *g = *list_of(r, topic, len, false); g != NULL && ok; g = g->hnext)
        if (g->subject_len == len && memcmp(g->subject, topic, len) == 0)
            ok = push(g, scratch, cap, count);
    for (vg_qgroup *g = r->patterns; g != NULL && ok; g = g->hnext)
        if (vg_subject_matches(g->subject, g->subject_len, topic, len)) {
            ok = push(g, scratch, cap, count);
            if (ok && first_seq > 0)
                vg_qgroup_learn(g, t, first_seq); /* its leaf lock, under the registry's */
        }
    pthread_rwlock_unlock(&r->lock);
    if (!ok) {
        for (size_t i = 0; i < *count; i++)
            vg_qgroup_release((*scratch)[i]);
        *count = 0;
        return VG_ERR_NOMEM;
    }
    return VG_OK;
}

uint64_t vg_qgroups_redelivered(vg_qgroups *r)
{
    return atomic_load_explicit(&r->redelivered, memory_order_relaxed);
}

void vg_qgroups_counts(vg_qgroups *r, size_t *groups, size_t *members)
{
    *groups = *members = 0;
    uint64_t inflight;
    pthread_rwlock_rdlock(&r->lock);
    for (size_t b = 0; b < r->nbuckets; b++)
        for (vg_qgroup *g = r->buckets[b]; g != NULL; g = g->hnext) {
            (*groups)++;
            *members += vg_qgroup_members(g, &inflight);
        }
    for (vg_qgroup *g = r->patterns; g != NULL; g = g->hnext) {
        (*groups)++;
        *members += vg_qgroup_members(g, &inflight);
    }
    pthread_rwlock_unlock(&r->lock);
}

/* Appends s as a JSON string (queue names, subjects and durable names are
 * printable ASCII, checked when they arrive; escaped all the same). */
static vg_status put_str(vg_buf *out, const char *s, size_t n)
{
    vg_status st = vg_buf_append(out, "\"", 1);
    for (size_t i = 0; i < n && st == VG_OK; i++) {
        if (s[i] == '"' || s[i] == '\\')
            st = vg_buf_append(out, "\\", 1);
        if (st == VG_OK)
            st = vg_buf_append(out, &s[i], 1);
    }
    return st == VG_OK ? vg_buf_append(out, "\"", 1) : st;
}

static vg_status group_json(vg_buf *out, vg_qgroup *g, bool first)
{
    uint64_t inflight;
    size_t members = vg_qgroup_members(g, &inflight);
    vg_status st = vg_buf_append(out, first ? "{\"queue\":" : ",{\"queue\":", first ? 9 : 10);
    if (st == VG_OK)
        st = put_str(out, g->queue, g->queue_len);
    if (st == VG_OK)
        st = vg_buf_append(out, ",\"subject\":", 11);
    if (st == VG_OK)
        st = put_str(out, g->subject, g->subject_len);
    if (st == VG_OK && g->durable != NULL) {
        st = vg_buf_append(out, ",\"durable\":", 11);
        if (st == VG_OK)
            st = put_str(out, g->durable, g->durable_len);
    }
    char num[64];
    int n = snprintf(num, sizeof num, ",\"members\":%zu,\"inflight\":%llu}", members,
                     (unsigned long long)inflight);
    return st == VG_OK ? vg_buf_append(out, num, (size_t)n) : st;
}

vg_status vg_qgroups_json(vg_qgroups *r, vg_buf *out, size_t max)
{
    vg_status st = vg_buf_append(out, "[", 1);
    size_t n = 0;
    pthread_rwlock_rdlock(&r->lock);
    for (size_t b = 0; b < r->nbuckets && st == VG_OK; b++)
        for (vg_qgroup *g = r->buckets[b]; g != NULL && st == VG_OK && n < max; g = g->hnext)
            st = group_json(out, g, n++ == 0);
    for (vg_qgroup *g = r->patterns; g != NULL && st == VG_OK && n < max; g = g->hnext)
        st = group_json(out, g, n++ == 0);
    pthread_rwlock_unlock(&r->lock);
    return st == VG_OK ? vg_buf_append(out, "]", 1) : st;
}
