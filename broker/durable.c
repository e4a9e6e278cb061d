#include "durable.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topic.h"

typedef struct durable {
    struct durable *next; /* in its bucket */
    uint64_t hash;
    char *name, *topic;
    size_t name_len, topic_len;
    uint64_t acked;
    void *owner; /* holds a reference; NULL: not connected */
} durable;

/* By (name, topic) in a chained hash table: a durable pattern keeps one
 * entry per topic it read and a durable queue group one per topic too,
 * so there can be thousands. */
struct vg_durables {
    pthread_mutex_t mu;
    durable **buckets;
    size_t nbuckets; /* a power of two */
    size_t n;
};

vg_durables *vg_durables_create(void)
{
    vg_durables *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->nbuckets = 64;
    d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
    if (d->buckets == NULL || pthread_mutex_init(&d->mu, NULL) != 0) {
        free(d->buckets);
        free(d);
        return NULL;
    }
    return d;
}

void vg_durables_destroy(vg_durables *d)
{
    if (d == NULL)
        return;
    for (size_t b = 0; b < d->nbuckets; b++)
        for (durable *x = d->buckets[b], *next; x != NULL; x = next) {
            next = x->next;
            free(x->name);
            free(x->topic);
            free(x);
        }
    free(d->buckets);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static uint64_t hash_of(const char *name, size_t nl, const char *topic, size_t tl)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < nl; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; /* no byte of a name or topic: the seam is unambiguous */
    for (size_t i = 0; i < tl; i++)
        h = (h ^ (unsigned char)topic[i]) * 1099511628211ull;
    return h ^ (h >> 31);
}

/* Where (name, topic) is in its bucket, or where it would go. */
static durable **slot(vg_durables *d, uint64_t h, const char *name, size_t nl, const char *topic,
                      size_t tl)
{
    durable **pp = &d->buckets[h & (d->nbuckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        durable *x = *pp;
        if (x->hash == h && x->name_len == nl && x->topic_len == tl &&
            memcmp(x->name, name, nl) == 0 && memcmp(x->topic, topic, tl) == 0)
            break;
    }
    return pp;
}

static durable *find(vg_durables *d, const char *name, size_t nl, const char *topic, size_t tl)
{
    return *slot(d, hash_of(name, nl, topic, tl), name, nl, topic, tl);
}

/* Doubles the buckets; on allocation failure the table just stays denser. */
static void grow(vg_durables *d)
{
    size_t nb = d->nbuckets * 2;
    durable **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < d->nbuckets; i++)
        for (durable *x = d->buckets[i], *next; x != NULL; x = next) {
            next = x->next;
            x->next = b[x->hash & (nb - 1)];
            b[x->hash & (nb - 1)] = x;
        }
    free(d->buckets);
    d->buckets = b;
    d->nbuckets = nb;
}

/* A new entry, under mu; NULL on out of memory. */
static durable *add(vg_durables *d, const char *name, size_t nl, const char *topic, size_t tl)
{
    durable *x = calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    *x = (durable){.hash = hash_of(name, nl, topic, tl), .name = malloc(nl + 1),
                   .topic = malloc(tl + 1), .name_len = nl, .topic_len = tl};
    if (x->name == NULL || x->topic == NULL) {
        free(x->name);
        free(x->topic);
        free(x);
        return NULL;
    }
    memcpy(x->name, name, nl);
    x->name[nl] = 0;
    memcpy(x->topic, topic, tl);
    x->topic[tl] = 0;
    durable **b = &d->buckets[x->hash & (d->nbuckets - 1)];
    x->next = *b;
    *b = x;
    if (++d->n > d->nbuckets)
        grow(d);
    return x;
}

static void drop(vg_durables *d, durable *x)
{
    durable **pp = slot(d, x->hash, x->name, x->name_len, x->topic, x->topic_len);
    *pp = x->next;
    free(x->name);
    free(x->topic);
    free(x);
    d->n--;
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

static int by_name_topic(const void *a, const void *b)
{
    const durable *x = *(const durable *const *)a, *y = *(const durable *const *)b;
    int c = strcmp(x->name, y->name); /* both NUL-terminated (add) */
    return c != 0 ? c : strcmp(x->topic, y->topic);
}

/* One entry of the JSON list. A pattern's holder entry (its topic a
 * pattern) has no position of its own; its positions are entries named
 * "name pattern" (durable.h), shown with the two apart. */
static vg_status put_entry(vg_buf *out, const durable *x, bool first,
                           uint64_t (*next_of)(void *ud, const char *topic, size_t len), void *ud)
{
    const char *sp = memchr(x->name, ' ', x->name_len);
    size_t nl = sp != NULL ? (size_t)(sp - x->name) : x->name_len;
    bool holder = vg_subject_is_pattern(x->topic, x->topic_len);
    vg_status st = vg_buf_append(out, first ? "{\"name\":" : ",{\"name\":", first ? 8 : 9);
    if (st == VG_OK)
        st = put_str(out, x->name, nl);
    if (st == VG_OK && sp != NULL) {
        st = vg_buf_append(out, ",\"pattern\":", 11);
        if (st == VG_OK)
            st = put_str(out, sp + 1, x->name_len - nl - 1);
    }
    if (st == VG_OK)
        st = vg_buf_append(out, holder ? ",\"pattern\":" : ",\"topic\":", holder ? 11 : 9);
    if (st == VG_OK)
        st = put_str(out, x->topic, x->topic_len);
    char num[96];
    int n = holder ? snprintf(num, sizeof num, ",\"connected\":%s}",
                              x->owner != NULL ? "true" : "false")
            : sp != NULL
                ? snprintf(num, sizeof num, ",\"acked\":%llu,\"next\":%llu}",
                           (unsigned long long)x->acked,
                           (unsigned long long)next_of(ud, x->topic, x->topic_len))
                : snprintf(num, sizeof num, ",\"acked\":%llu,\"next\":%llu,\"connected\":%s}",
                           (unsigned long long)x->acked,
                           (unsigned long long)next_of(ud, x->topic, x->topic_len),
                           x->owner != NULL ? "true" : "false");
    return st == VG_OK ? vg_buf_append(out, num, (size_t)n) : st;
}

vg_status vg_durables_json(vg_durables *d, vg_buf *out,
                           uint64_t (*next_of)(void *ud, const char *topic, size_t len), void *ud)
{
    pthread_mutex_lock(&d->mu);
    /* Sorted by name and topic: the same table always reads the same. */
    const durable **all = malloc((d->n ? d->n : 1) * sizeof *all);
    if (all == NULL) {
        pthread_mutex_unlock(&d->mu);
        return VG_ERR_NOMEM;
    }
    size_t n = 0;
    for (size_t b = 0; b < d->nbuckets; b++)
        for (durable *x = d->buckets[b]; x != NULL; x = x->next)
            all[n++] = x;
    qsort(all, n, sizeof *all, by_name_topic);
    vg_status st = vg_buf_append(out, "{\"durables\":[", 13);
    for (size_t i = 0; i < n && st == VG_OK; i++)
        st = put_entry(out, all[i], i == 0, next_of, ud);
    free(all);
    if (st == VG_OK)
        st = vg_buf_append(out, "]}", 2);
    pthread_mutex_unlock(&d->mu);
    return st;
}

bool vg_durables_position(vg_durables *d, const char *name, size_t name_len, const char *topic,
                          size_t topic_len, uint64_t *acked)
{
    pthread_mutex_lock(&d->mu);
    durable *x = find(d, name, name_len, topic, topic_len);
    if (x != NULL)
        *acked = x->acked;
    pthread_mutex_unlock(&d->mu);
    return x != NULL;
}

bool vg_durables_set(vg_durables *d, const char *name, size_t name_len, const char *topic,
                     size_t topic_len, uint64_t acked, vg_status *st)
{
    *st = VG_OK;
    pthread_mutex_lock(&d->mu);
    durable *x = find(d, name, name_len, topic, topic_len);
    bool moved = x == NULL || acked > x->acked;
    if (x == NULL && (x = add(d, name, name_len, topic, topic_len)) == NULL) {
        *st = VG_ERR_NOMEM;
        moved = false;
    } else if (moved) {
        x->acked = acked;
    }
    pthread_mutex_unlock(&d->mu);
    return moved;
}

bool vg_durables_forget_any(vg_durables *d, const char *name, size_t name_len, char *topic,
                            size_t cap, size_t *topic_len)
{
    pthread_mutex_lock(&d->mu);
    for (size_t b = 0; b < d->nbuckets; b++)
        for (durable *x = d->buckets[b]; x != NULL; x = x->next)
            if (x->name_len == name_len && memcmp(x->name, name, name_len) == 0 &&
                x->topic_len <= cap) {
                memcpy(topic, x->topic, x->topic_len);
                *topic_len = x->topic_len;
                drop(d, x);
                pthread_mutex_unlock(&d->mu);
                return true;
            }
    pthread_mutex_unlock(&d->mu);
    return false;
}

size_t vg_durables_count(vg_durables *d)
{
    pthread_mutex_lock(&d->mu);
    size_t n = d->n;
    pthread_mutex_unlock(&d->mu);
    return n;
}
