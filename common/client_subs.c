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
} entry;

struct vg_subs {
    entry *v;
    size_t n, cap;
    uint64_t next_sid;
    unsigned renewing;
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
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].topic);
    free(s->v);
    free(s);
}

static entry *find(const vg_subs *s, uint64_t sid)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].sid == sid)
            return &s->v[i];
    return NULL;
}

static void drop(vg_subs *s, entry *e)
{
    if (e->renewing)
        s->renewing--;
    free(e->topic);
    *e = s->v[--s->n];
}

vg_status vg_subs_add(vg_subs *s, const char *topic, size_t len, const vg_sub_from *from,
                      uint64_t *sid)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        entry *v = realloc(s->v, cap * sizeof *v);
        if (v == NULL)
            return VG_ERR_NOMEM;
        s->v = v;
        s->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return VG_ERR_NOMEM;
    memcpy(copy, topic, len);
    copy[len] = '\0';
    *sid = s->next_sid++;
    s->v[s->n++] = (entry){.sid = *sid, .topic = copy, .len = len, .from = *from,
                             .state = VG_SUB_QUEUED};
    return VG_OK;
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
        drop(s, e);
        return VG_SUBEV_UNSUBSCRIBED;
    }
    return VG_SUBEV_UNEXPECTED;
}

void vg_subs_lost(vg_subs *s)
{
    for (size_t i = 0; i < s->n;) {
        entry *e = &s->v[i];
        if (e->unsub == UNSUB_SENT) {
            drop(s, e); /* its connection, and the subscription with it, are gone */
            continue;
        }
        if (e->state == VG_SUB_SENT || e->state == VG_SUB_ACTIVE)
            e->state = VG_SUB_RENEW;
        e->renewing = false;
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

vg_status vg_subs_each_deliverable(const vg_subs *s,
                                   vg_status (*fn)(void *arg, const char *topic, size_t len,
                                                   const vg_sub_from *from),
                                   void *arg)
{
    for (size_t i = 0; i < s->n; i++) {
        const entry *e = &s->v[i];
        if (!delivers(e))
            continue;
        bool seen = false; /* each topic once, even with several sids on it */
        for (size_t j = 0; j < i && !seen; j++)
            seen = delivers(&s->v[j]) && s->v[j].len == e->len &&
                   memcmp(s->v[j].topic, e->topic, e->len) == 0;
        if (seen)
            continue;
        vg_status st = fn(arg, e->topic, e->len, &e->from);
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
