/* The I/O thread's copy of the subscriptions (issue 12): which sids
 * deliver, and which of them each topic's messages go to.
 *
 * The subscriptions live under c->mu (client_subs.c); the I/O thread
 * rebuilds its copy when subs_gen moves, so that a message costs no lock.
 * A literal subscription joins its topic's entry at once; a pattern joins
 * every entry it matches, and a topic first heard of (a POS, a MSG, a GAP)
 * gets an entry if some pattern matches it, so each topic's list of sids
 * is worked out once, not per message. A rebuild only does the work the
 * change calls for: a sid that left leaves its topics (a topic left with
 * no sid is forgotten, position and all), a new one joins its topics, and
 * the positions of the topics still subscribed are kept. A topic whose
 * last plain (not queue) sid left, and that a new one joins, starts again
 * where that one asks. */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

#include "topic.h"

vg_client_sid *vg_client_filter_sid(const vg_client_filter *f, uint64_t sid)
{
    size_t lo = 0, hi = f->nsids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->sids[mid].sid == sid)
            return &f->sids[mid];
        if (f->sids[mid].sid < sid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

typedef struct {
    vg_client_filter *f;
    size_t sorted; /* sids[0..sorted) are sorted; fresh ones follow */
} walk;

/* vg_subs_each_sid's callback: marks a sid kept, or appends it fresh. */
static vg_status note_sid(void *arg, const vg_sub_view *v)
{
    walk *w = arg;
    vg_client_filter *f = w->f;
    size_t n = f->nsids;
    f->nsids = w->sorted;
    vg_client_sid *s = vg_client_filter_sid(f, v->sid);
    f->nsids = n;
    if (s != NULL) {
        s->kept = true;
        return VG_OK;
    }
    if (f->nsids == f->capsids) {
        size_t cap = f->capsids ? f->capsids * 2 : 8;
        vg_client_sid *p = realloc(f->sids, cap * sizeof *p);
        if (p == NULL)
            return VG_ERR_NOMEM;
        f->sids = p;
        f->capsids = cap;
    }
    char *copy = strndup(v->subject, v->len);
    if (copy == NULL)
        return VG_ERR_NOMEM;
    f->sids[f->nsids++] = (vg_client_sid){
        .sid = v->sid, .subject = copy, .len = v->len, .from = v->from,
        .pattern = vg_subject_is_pattern(v->subject, v->len), .durable = v->durable,
        .queue = v->queue, .kept = true, .fresh = true};
    return VG_OK;
}

static bool sid_gone(void *arg, uint64_t sid)
{
    const vg_client_sid *s = vg_client_filter_sid(arg, sid);
    return s == NULL || !s->kept;
}

static int by_sid(const void *a, const void *b)
{
    uint64_t x = ((const vg_client_sid *)a)->sid, y = ((const vg_client_sid *)b)->sid;
    return x < y ? -1 : x > y;
}

/* s joins t; a topic that gets its first plain sid starts where s asks. */
static vg_status join(vg_client_topic *t, const vg_client_sid *s)
{
    size_t plain = t->nplain;
    vg_status st = vg_topic_add_member(t, s->sid, s->durable, s->queue);
    if (st == VG_OK && plain == 0 && t->nplain > 0) {
        /* A pattern never asks for SEQ (client.c refuses it): its topics
         * start as it asks, each at the broker's choice. */
        vg_resume_init(&t->pos, s->from.start, s->pattern ? 0 : s->from.epoch,
                       s->from.position);
        t->connected = t->started = false;
    }
    return st;
}

/* s joins its topics: its own, or every known one its pattern matches. */
static vg_status join_topics(vg_client_filter *f, const vg_client_sid *s)
{
    vg_client_topics *tb = &f->topics;
    if (!s->pattern) {
        vg_client_topic *t = vg_topics_find(tb, s->subject, s->len);
        if (t == NULL)
            t = vg_topics_add(tb, s->subject, s->len);
        return t != NULL ? join(t, s) : VG_ERR_NOMEM;
    }
    for (size_t i = 0; i < tb->n; i++) {
        vg_client_topic *t = &tb->v[i];
        if (vg_subject_matches(s->subject, s->len, t->topic, t->len) && join(t, s) != VG_OK)
            return VG_ERR_NOMEM;
    }
    return VG_OK;
}

/* Rebuilds the copy. Out of memory, it is left invalid (messages are
 * handed over untracked) and the next sync does the whole work again. */
static void refresh(vg_client *c, uint64_t gen)
{
    vg_client_filter *f = &c->filter;
    bool whole = !f->valid; /* a rebuild cut short: every sid joins again */
    for (size_t i = 0; i < f->nsids; i++)
        f->sids[i].kept = false;
    walk w = {f, f->nsids};
    pthread_mutex_lock(&c->mu);
    vg_status st = vg_subs_each_sid(c->subs, note_sid, &w);
    pthread_mutex_unlock(&c->mu);
    size_t n = f->nsids, gone = 0;
    for (size_t i = 0; i < w.sorted; i++)
        gone += !f->sids[i].kept;
    f->nsids = w.sorted; /* sid_gone looks among the sorted ones */
    if (st == VG_OK && gone > 0) { /* most changes (an answer, a new sid) remove none */
        for (size_t i = 0; i < f->topics.n; i++)
            vg_topic_drop_members(&f->topics.v[i], sid_gone, f);
    }
    f->nsids = n;
    size_t k = 0;
    for (size_t i = 0; i < f->nsids; i++) {
        vg_client_sid *s = &f->sids[i];
        if (st != VG_OK && s->fresh) /* not all of them were seen: try again */
            s->kept = false;
        if (s->kept || (st != VG_OK && i < w.sorted))
            f->sids[k++] = *s;
        else
            free(s->subject);
    }
    f->nsids = k;
    if (f->nsids > 1)
        qsort(f->sids, f->nsids, sizeof *f->sids, by_sid);
    for (size_t i = 0; st == VG_OK && i < f->nsids; i++) {
        vg_client_sid *s = &f->sids[i];
        if (s->fresh || whole)
            st = join_topics(f, s);
        s->fresh = false;
    }
    if (st == VG_OK)
        vg_topics_compact(&f->topics);
    f->valid = st == VG_OK;
    f->gen = gen;
}

void vg_client_sync_filter(vg_client *c)
{
    uint64_t gen = atomic_load_explicit(&c->subs_gen, memory_order_acquire);
    if (gen != c->filter.gen || !c->filter.valid)
        refresh(c, gen);
}

vg_client_topic *vg_client_topic_for(vg_client *c, const char *topic, size_t len,
                                     bool *untracked)
{
    vg_client_sync_filter(c);
    vg_client_filter *f = &c->filter;
    *untracked = !f->valid;
    if (!f->valid)
        return NULL;
    vg_client_topic *t = vg_topics_find(&f->topics, topic, len);
    if (t != NULL)
        return t;
    size_t first = f->nsids;
    for (size_t i = 0; i < f->nsids && first == f->nsids; i++)
        if (f->sids[i].pattern && vg_subject_matches(f->sids[i].subject, f->sids[i].len, topic, len))
            first = i;
    if (first == f->nsids)
        return NULL; /* nobody's: not kept */
    t = vg_topics_add(&f->topics, topic, len);
    for (size_t i = first; t != NULL && i < f->nsids; i++) {
        const vg_client_sid *s = &f->sids[i];
        if (s->pattern && vg_subject_matches(s->subject, s->len, topic, len) && join(t, s) != VG_OK)
            t = NULL;
    }
    if (t == NULL) { /* out of memory: the next sync joins every sid again */
        f->valid = false;
        *untracked = true;
    }
    return t;
}

void vg_client_filter_free(vg_client_filter *f)
{
    for (size_t i = 0; i < f->nsids; i++)
        free(f->sids[i].subject);
    free(f->sids);
    vg_topics_free(&f->topics);
    *f = (vg_client_filter){0};
}
