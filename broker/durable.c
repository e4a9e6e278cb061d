#include "durable.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name, *topic;
    size_t name_len, topic_len;
    uint64_t acked;
    void *owner; /* holds a reference; NULL: not connected */
} durable;

/* A few durables per broker, not thousands: a list is enough (issue 12
 * brings queue groups and with them a real index, if it is needed). */
struct vg_durables {
    pthread_mutex_t mu;
    durable *v;
    size_t n, cap;
};

vg_durables *vg_durables_create(void)
{
    vg_durables *d = calloc(1, sizeof *d);
    if (d == NULL || pthread_mutex_init(&d->mu, NULL) != 0) {
        free(d);
        return NULL;
    }
    return d;
}

void vg_durables_destroy(vg_durables *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].name);
        free(d->v[i].topic);
    }
    free(d->v);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static durable *find(vg_durables *d, const char *name, size_t nl, const char *topic, size_t tl)
{
    for (size_t i = 0; i < d->n; i++) {
        durable *x = &d->v[i];
        if (x->name_len == nl && x->topic_len == tl && memcmp(x->name, name, nl) == 0 &&
            memcmp(x->topic, topic, tl) == 0)
            return x;
    }
    return NULL;
}

/* A new entry, under mu; NULL on out of memory. */
static durable *add(vg_durables *d, const char *name, size_t nl, const char *topic, size_t tl)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        durable *v = realloc(d->v, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        d->v = v;
        d->cap = cap;
    }
    durable *x = &d->v[d->n];
    *x = (durable){.name = malloc(nl + 1), .topic = malloc(tl + 1), .name_len = nl, .topic_len = tl};
    if (x->name == NULL || x->topic == NULL) {
        free(x->name);
        free(x->topic);
        return NULL;
    }
    memcpy(x->name, name, nl);
    x->name[nl] = 0;
    memcpy(x->topic, topic, tl);
    x->topic[tl] = 0;
    d->n++;
    return x;
}

static void drop(vg_durables *d, durable *x)
{
    free(x->name);
    free(x->topic);
    *x = d->v[--d->n];
}

vg_status vg_durables_restore(vg_durables *d, const char *name, size_t name_len,
                              const char *topic, size_t topic_len, uint64_t acked, bool forget)
{
    vg_status st = VG_OK;
    pthread_mutex_lock(&d->mu);
    durable *x = find(d, name, name_len, topic, topic_len);
    if (forget) {
        if (x != NULL)
            drop(d, x);
    } else if (x != NULL) {
        if (acked > x->acked)
            x->acked = acked;
    } else if ((x = add(d, name, name_len, topic, topic_len)) != NULL) {
        x->acked = acked;
    } else {
        st = VG_ERR_NOMEM;
    }
    pthread_mutex_unlock(&d->mu);
    return st;
}

vg_status vg_durables_claim(vg_durables *d, const char *name, size_t name_len,
                            const char *topic, size_t topic_len, void *owner,
                            void (*retain)(void *), uint64_t *acked, bool *existed, void **prev)
{
    pthread_mutex_lock(&d->mu);
    durable *x = find(d, name, name_len, topic, topic_len);
    *existed = x != NULL;
    if (x == NULL && (x = add(d, name, name_len, topic, topic_len)) == NULL) {
        pthread_mutex_unlock(&d->mu);
        return VG_ERR_NOMEM;
    }
    *prev = x->owner;
    retain(owner);
    x->owner = owner;
    *acked = x->acked;
    pthread_mutex_unlock(&d->mu);
    return VG_OK;
}

bool vg_durables_ack(vg_durables *d, const char *name, size_t name_len, const char *topic,
                     size_t topic_len, const void *owner, uint64_t seq)
{
    pthread_mutex_lock(&d->mu);
    durable *x = find(d, name, name_len, topic, topic_len);
    bool moved = x != NULL && x->owner == owner && seq > x->acked;
    if (moved)
        x->acked = seq;
    pthread_mutex_unlock(&d->mu);
    return moved;
}

bool vg_durables_held(vg_durables *d, const char *name, size_t name_len, const char *topic,
                      size_t topic_len, const void *owner)
{
    pthread_mutex_lock(&d->mu);
    durable *x = find(d, name, name_len, topic, topic_len);
    bool held = x != NULL && x->owner == owner;
    pthread_mutex_unlock(&d->mu);
    return held;
}

bool vg_durables_leave(vg_durables *d, const char *name, size_t name_len, const char *topic,
                       size_t topic_len, const void *owner)
{
    pthread_mutex_lock(&d->mu);
    durable *x = find(d, name, name_len, topic, topic_len);
    bool held = x != NULL && x->owner == owner;
    if (held)
        x->owner = NULL;
    pthread_mutex_unlock(&d->mu);
    return held;
}

bool vg_durables_forget(vg_durables *d, const char *name, size_t name_len, const char *topic,
                        size_t topic_len, void **prev)
{
    pthread_mutex_lock(&d->mu);
    durable *x = find(d, name, name_len, topic, topic_len);
    *prev = x != NULL ? x->owner : NULL;
    if (x != NULL)
        drop(d, x);
    pthread_mutex_unlock(&d->mu);
    return x != NULL;
}

/* Appends s as a JSON string (names and topics are printable ASCII, checked
 * when they arrive; quotes and backslashes escaped all the same). */
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

vg_status vg_durables_json(vg_durables *d, vg_buf *out,
                           uint64_t (*next_of)(void *ud, const char *topic, size_t len), void *ud)
{
    pthread_mutex_lock(&d->mu);
    vg_status st = vg_buf_append(out, "{\"durables\":[", 13);
    for (size_t i = 0; i < d->n && st == VG_OK; i++) {
        durable *x = &d->v[i];
        char num[96];
        st = vg_buf_append(out, i ? ",{\"name\":" : "{\"name\":", i ? 9 : 8);
        if (st == VG_OK)
            st = put_str(out, x->name, x->name_len);
        if (st == VG_OK)
            st = vg_buf_append(out, ",\"topic\":", 9);
        if (st == VG_OK)
            st = put_str(out, x->topic, x->topic_len);
        int n = snprintf(num, sizeof num, ",\"acked\":%llu,\"next\":%llu,\"connected\":%s}",
                         (unsigned long long)x->acked,
                         (unsigned long long)next_of(ud, x->topic, x->topic_len),
                         x->owner != NULL ? "true" : "false");
        if (st == VG_OK)
            st = vg_buf_append(out, num, (size_t)n);
    }
    if (st == VG_OK)
        st = vg_buf_append(out, "]}", 2);
    pthread_mutex_unlock(&d->mu);
    return st;
}

size_t vg_durables_count(vg_durables *d)
{
    pthread_mutex_lock(&d->mu);
    size_t n = d->n;
    pthread_mutex_unlock(&d->mu);
    return n;
}
