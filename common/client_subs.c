#include "client_subs.h"

#include <stdlib.h>
#include <string.h>

typedef enum { UNSUB_NONE, UNSUB_QUEUED, UNSUB_SENT } unsub_state;

typedef struct {
    uint64_t sid;
    char *topic;
    size_t len;
    vg_sub_from from;
    vg_sub_state state;
    bool leaving;     /* the application unsubscribed */
    unsub_state unsub;
    bool renewing;    /* SENT as a renewal on this connection */
    char *durable;    /* the durable name, or NULL */
    size_t durable_len;
    uint64_t acked;   /* durable: the last seq acknowledged on this connection */
    bool deleting;    /* its UNSUB deletes the durable: an outcome is kept */
    char *queue;      /* the queue group's name, or NULL */
    size_t queue_len;
} entry;

typedef struct {
    uint64_t sid;
    vg_delete_outcome outcome;
} outcome;

struct vg_subs {
    entry *v;
    size_t n, cap;
    uint64_t next_sid;
    unsigned renewing;
    outcome *done; /* deletions answered, until asked */
    size_t ndone, capdone;
};

vg_subs *vg_subs_create(void)
{
    vg_subs *s = calloc(1, sizeof *s);
    if (s != NULL)
        s->next_sid = 1;
    return s;
}

void vg_subs_destroy(vg_subs *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].topic);
        free(s->v[i].durable);
        free(s->v[i].queue);
    }
    free(s->v);
    free(s->done);
    free(s);
}

static entry *find(const vg_subs *s, uint64_t sid)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].sid == sid)
            return &s->v[i];
    return NULL;
}

/* Records what became of a deletion; out of memory, the waiter sees
 * REFUSED, which is the safe answer. */
static void note_outcome(vg_subs *s, uint64_t sid, vg_delete_outcome o)
{
    if (s->ndone == s->capdone) {
        size_t cap = s->capdone ? s->capdone * 2 : 4;
        outcome *v = realloc(s->done, cap * sizeof *v);
        if (v == NULL)
            return;
        s->done = v;
        s->capdone = cap;
    }
    s->done[s->ndone++] = (outcome){sid, o};
}

/* Removes e; a deletion in flight ends with outcome o. */
static void drop_as(vg_subs *s, entry *e, vg_delete_outcome o)
{
    if (e->deleting)
        note_outcome(s, e->sid, o);
    if (e->renewing)
        s->renewing--;
    free(e->topic);
    free(e->durable);
    free(e->queue);
    *e = s->v[--s->n];
}

static void drop(vg_subs *s, entry *e) { drop_as(s, e, VG_DELETE_REFUSED); }

vg_status vg_subs_add(vg_subs *s, const char *topic, size_t len, const vg_sub_from *from,
                      uint64_t *sid)
{
    return vg_subs_add_durable(s, topic, len, from, NULL, 0, sid);
}

vg_status vg_subs_add_durable(vg_subs *s, const char *topic, size_t len, const vg_sub_from *from,
                              const char *durable, size_t durable_len, uint64_t *sid)
{
    return vg_subs_add_queue(s, topic, len, from, durable, durable_len, NULL, 0, sid);
}

/* A malloc'd NUL-terminated copy of p[0..n), or NULL. */
static char *copy_of(const char *p, size_t n)
{
    char *c = malloc(n + 1);
    if (c != NULL) {
        memcpy(c, p, n);
        c[n] = '\0';
    }
    return c;
}

vg_status vg_subs_add_queue(vg_subs *s, const char *topic, size_t len, const vg_sub_from *from,
                            const char *durable, size_t durable_len, const char *queue,
                            size_t queue_len, uint64_t *sid)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        entry *v = realloc(s->v, cap * sizeof *v);
        if (v == NULL)
            return VG_ERR_NOMEM;
        s->v = v;
        s->cap = cap;
    }
    char *copy = copy_of(topic, len);
    char *name = durable != NULL ? copy_of(durable, durable_len) : NULL;
    char *group = queue != NULL ? copy_of(queue, queue_len) : NULL;
    if (copy == NULL || (durable != NULL && name == NULL) || (queue != NULL && group == NULL)) {
        free(copy);
        free(name);
        free(group);
        return VG_ERR_NOMEM;
    }
    *sid = s->next_sid++;
    s->v[s->n++] = (entry){.sid = *sid, .topic = copy, .len = len, .from = *from,
                             .state = VG_SUB_QUEUED, .durable = name,
                             .durable_len = name != NULL ? durable_len : 0, .queue = group,
                             .queue_len = group != NULL ? queue_len : 0};
    return VG_OK;
}

bool vg_subs_queue(const vg_subs *s, uint64_t sid, const char **name, size_t *len)
{
    const entry *e = find(s, sid);
    if (e == NULL || e->queue == NULL)
        return false;
    if (name != NULL)
        *name = e->queue;
    if (len != NULL)
        *len = e->queue_len;
    return true;
}

bool vg_subs_durable(const vg_subs *s, uint64_t sid, const char **name, size_t *len)
{
    const entry *e = find(s, sid);
    if (e == NULL || e->durable == NULL)
        return false;
    if (name != NULL)
        *name = e->durable;
    if (len != NULL)
        *len = e->durable_len;
    return true;
}

void vg_subs_cancel(vg_subs *s, uint64_t sid)
{
    entry *e = find(s, sid);
    if (e != NULL)
        drop(s, e);
}

vg_unsub_action vg_subs_remove(vg_subs *s, uint64_t sid)
{
    entry *e = find(s, sid);
    if (e == NULL || e->leaving)
        return VG_UNSUB_UNKNOWN;
    if (e->state == VG_SUB_REFUSED || e->state == VG_SUB_RENEW) {
        drop(s, e); /* the broker has no such subscription: nothing to send */
        return VG_UNSUB_DONE;
    }
    e->leaving = true;
    e->unsub = UNSUB_QUEUED;
    return VG_UNSUB_SEND;
}

vg_unsub_action vg_subs_remove_delete(vg_subs *s, uint64_t sid)
{
    entry *e = find(s, sid);
    if (e == NULL || e->leaving || e->durable == NULL)
        return VG_UNSUB_UNKNOWN;
    e->deleting = true;
    if (e->state == VG_SUB_REFUSED) {
        drop_as(s, e, VG_DELETE_REFUSED); /* the broker has no such subscription */
        return VG_UNSUB_DONE;
    }
    e->leaving = true; /* RENEW included: renewed, then its UNSUB follows */
    e->unsub = UNSUB_QUEUED;
    return VG_UNSUB_SEND;
}

vg_delete_outcome vg_subs_delete_outcome(vg_subs *s, uint64_t sid)
{
    for (size_t i = 0; i < s->ndone; i++) {
        if (s->done[i].sid != sid)
            continue;
        vg_delete_outcome o = s->done[i].outcome;
        s->done[i] = s->done[--s->ndone];
        return o;
    }
    const entry *e = find(s, sid);
    return e != NULL && e->deleting ? VG_DELETE_PENDING : VG_DELETE_REFUSED;
}

static void copy_out(char *dst, size_t cap, const char *src, size_t len)
{
    if (cap == 0)
        return;
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

bool vg_subs_taken(vg_subs *s, uint64_t sid, char *topic, size_t cap, char *durable,
                   size_t dcap)
{
    copy_out(topic, cap, "", 0);
    copy_out(durable, dcap, "", 0);
    entry *e = find(s, sid);
    if (e == NULL || e->durable == NULL || e->leaving ||
        (e->state != VG_SUB_SENT && e->state != VG_SUB_ACTIVE))
        return false;
    copy_out(topic, cap, e->topic, e->len);
    copy_out(durable, dcap, e->durable, e->durable_len);
    if (e->renewing) {
        e->renewing = false;
        s->renewing--;
    }
    e->state = VG_SUB_REFUSED;
    return true;
}

vg_status vg_subs_acks(vg_subs *s,
                       vg_status (*fn)(void *arg, uint64_t sid, const char *topic, size_t len,
                                       uint64_t *acked),
                       void *arg)
{
    for (size_t i = 0; i < s->n; i++) {
        entry *e = &s->v[i];
        if ((e->durable == NULL && e->queue == NULL) ||
            (e->state != VG_SUB_SENT && e->state != VG_SUB_ACTIVE) ||
            (e->leaving && e->unsub != UNSUB_QUEUED))
            continue;
        vg_status st = fn(arg, e->sid, e->topic, e->len, &e->acked);
        if (st != VG_OK)
            return st;
    }
    return VG_OK;
}

bool vg_subs_deleting(const vg_subs *s, uint64_t sid)
{
    const entry *e = find(s, sid);
    return e != NULL && e->deleting;
}

void vg_subs_written(vg_subs *s, vg_frame_type type, uint64_t sid)
{
    entry *e = find(s, sid);
    if (e == NULL)
        return;
    if (type == VG_FRAME_SUB && e->state == VG_SUB_QUEUED)
        e->state = VG_SUB_SENT;
    else if (type == VG_FRAME_UNSUB && e->unsub == UNSUB_QUEUED)
        e->unsub = UNSUB_SENT;
}

vg_sub_event vg_subs_answer(vg_subs *s, uint64_t sid, bool ok, char *topic, size_t cap)
{
    if (cap > 0)
        topic[0] = '\0';
    entry *e = find(s, sid);
    if (e == NULL)
        return VG_SUBEV_UNEXPECTED;
    if (cap > 0) {
        size_t n = e->len < cap - 1 ? e->len : cap - 1;
        memcpy(topic, e->topic, n);
        topic[n] = '\0';
    }
    if (e->state == VG_SUB_SENT) { /* the answer to its SUB comes first */
        bool renewal = e->renewing;
        if (e->renewing) {
            e->renewing = false;
            s->renewing--;
        }
        e->state = ok ? VG_SUB_ACTIVE : VG_SUB_REFUSED;
        return !ok ? VG_SUBEV_REFUSED : renewal ? VG_SUBEV_RESUBSCRIBED : VG_SUBEV_SUBSCRIBED;
    }
    if (e->unsub == UNSUB_SENT) { /* OK, or ERR no_such_sid after a refusal: gone either way */
        drop_as(s, e, ok ? VG_DELETE_OK : VG_DELETE_REFUSED);
        return VG_SUBEV_UNSUBSCRIBED;
    }
    return VG_SUBEV_UNEXPECTED;
}

void vg_subs_lost(vg_subs *s)
{
    for (size_t i = 0; i < s->n;) {
        entry *e = &s->v[i];
        if (e->unsub == UNSUB_SENT) {
            /* its connection, and the subscription with it, are gone */
            drop_as(s, e, VG_DELETE_LOST);
            continue;
        }
        if (e->state == VG_SUB_SENT || e->state == VG_SUB_ACTIVE)
            e->state = VG_SUB_RENEW;
        e->renewing = false;
        e->acked = 0; /* the next connection is told again */
        i++;
    }
    s->renewing = 0;
}

vg_status vg_subs_renew(vg_subs *s, vg_status (*emit)(void *arg, uint64_t sid, const char *topic,
                                                      size_t len),
                        void *arg, unsigned *count)
{
    *count = 0;
    for (size_t i = 0; i < s->n; i++) {
        entry *e = &s->v[i];
        if (e->state != VG_SUB_RENEW)
            continue;
        vg_status st = emit(arg, e->sid, e->topic, e->len);
        if (st != VG_OK)
            return st;
        e->state = VG_SUB_SENT;
        e->renewing = true;
        s->renewing++;
        (*count)++;
    }
    return VG_OK;
}

unsigned vg_subs_renewing(const vg_subs *s) { return s->renewing; }

static bool delivers(const entry *e) { return !e->leaving && e->state != VG_SUB_REFUSED; }

bool vg_subs_deliverable(const vg_subs *s, const char *topic, size_t len)
{
    for (size_t i = 0; i < s->n; i++) {
        const entry *e = &s->v[i];
        if (delivers(e) && e->len == len && memcmp(e->topic, topic, len) == 0)
            return true;
    }
    return false;
}

vg_status vg_subs_each_sid(const vg_subs *s, vg_status (*fn)(void *arg, const vg_sub_view *v),
                           void *arg)
{
    for (size_t i = 0; i < s->n; i++) {
        const entry *e = &s->v[i];
        if (!delivers(e))
            continue;
        vg_sub_view v = {e->sid, e->topic, e->len, e->from, e->durable != NULL, e->queue != NULL};
        vg_status st = fn(arg, &v);
        if (st != VG_OK)
            return st;
    }
    return VG_OK;
}

bool vg_subs_state(const vg_subs *s, uint64_t sid, vg_sub_state *state)
{
    const entry *e = find(s, sid);
    if (e == NULL || e->leaving)
        return false;
    *state = e->state;
    return true;
}

size_t vg_subs_count(const vg_subs *s) { return s->n; }
