#include "client_topics.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_of(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3u;
    return h;
}

static bool same(const vg_client_topic *t, uint64_t h, const char *topic, size_t len)
{
    return t->hash == h && t->len == len && memcmp(t->topic, topic, len) == 0;
}

vg_client_topic *vg_topics_find(const vg_client_topics *tb, const char *topic, size_t len)
{
    if (tb->nslot == 0)
        return NULL;
    uint64_t h = hash_of(topic, len);
    for (size_t i = h & (tb->nslot - 1);; i = (i + 1) & (tb->nslot - 1)) {
        uint32_t s = tb->slot[i];
        if (s == 0)
            return NULL;
        if (same(&tb->v[s - 1], h, topic, len))
            return &tb->v[s - 1];
    }
}

/* Fills the slots from v (nslot > n: there is always an empty slot). */
static void index_all(vg_client_topics *tb)
{
    memset(tb->slot, 0, tb->nslot * sizeof *tb->slot);
    for (size_t k = 0; k < tb->n; k++) {
        size_t i = tb->v[k].hash & (tb->nslot - 1);
        while (tb->slot[i] != 0)
            i = (i + 1) & (tb->nslot - 1);
        tb->slot[i] = (uint32_t)(k + 1);
    }
}

vg_client_topic *vg_topics_add(vg_client_topics *tb, const char *topic, size_t len)
{
    if (tb->n >= UINT32_MAX - 1)
        return NULL;
    if (tb->n == tb->cap) {
        size_t cap = tb->cap ? tb->cap * 2 : 8;
        vg_client_topic *v = realloc(tb->v, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        tb->v = v;
        tb->cap = cap;
    }
    if ((tb->n + 1) * 2 > tb->nslot) {
        size_t nslot = tb->nslot ? tb->nslot * 2 : 16;
        uint32_t *slot = malloc(nslot * sizeof *slot);
        if (slot == NULL)
            return NULL;
        free(tb->slot);
        tb->slot = slot;
        tb->nslot = nslot;
        index_all(tb);
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, topic, len);
    copy[len] = '\0';
    vg_client_topic *t = &tb->v[tb->n];
    *t = (vg_client_topic){.topic = copy, .len = len, .hash = hash_of(topic, len)};
    vg_resume_init(&t->pos, VG_SUB_NEW, 0, 0);
    size_t i = t->hash & (tb->nslot - 1);
    while (tb->slot[i] != 0)
        i = (i + 1) & (tb->nslot - 1);
    tb->slot[i] = (uint32_t)(++tb->n);
    return t;
}

static void free_topic(vg_client_topic *t)
{
    free(t->topic);
    free(t->m);
}

void vg_topics_compact(vg_client_topics *tb)
{
    size_t k = 0;
    for (size_t i = 0; i < tb->n; i++) {
        if (tb->v[i].nm == 0)
            free_topic(&tb->v[i]);
        else
            tb->v[k++] = tb->v[i];
    }
    if (k == tb->n)
        return;
    tb->n = k;
    index_all(tb);
}

void vg_topics_free(vg_client_topics *tb)
{
    for (size_t i = 0; i < tb->n; i++)
        free_topic(&tb->v[i]);
    free(tb->v);
    free(tb->slot);
    *tb = (vg_client_topics){0};
}

size_t vg_topic_after(const vg_client_topic *t, uint64_t sid)
{
    size_t lo = 0, hi = t->nm;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->m[mid].sid <= sid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

vg_client_member *vg_topic_member(const vg_client_topic *t, uint64_t sid)
{
    size_t i = vg_topic_after(t, sid);
    return i > 0 && t->m[i - 1].sid == sid ? &t->m[i - 1] : NULL;
}

vg_status vg_topic_add_member(vg_client_topic *t, uint64_t sid, bool durable, bool queue)
{
    if (vg_topic_member(t, sid) != NULL)
        return VG_OK;
    if (t->nm == t->capm) {
        size_t cap = t->capm ? t->capm * 2 : 2;
        vg_client_member *m = realloc(t->m, cap * sizeof *m);
        if (m == NULL)
            return VG_ERR_NOMEM;
        t->m = m;
        t->capm = cap;
    }
    size_t i = vg_topic_after(t, sid);
    memmove(&t->m[i + 1], &t->m[i], (t->nm - i) * sizeof *t->m);
    t->m[i] = (vg_client_member){.sid = sid, .durable = durable, .queue = queue};
    t->nm++;
    if (!queue)
        t->nplain++;
    return VG_OK;
}

void vg_topic_drop_members(vg_client_topic *t, bool (*gone)(void *arg, uint64_t sid), void *arg)
{
    size_t k = 0;
    for (size_t i = 0; i < t->nm; i++) {
        if (!gone(arg, t->m[i].sid))
            t->m[k++] = t->m[i];
        else if (!t->m[i].queue)
            t->nplain--;
    }
    t->nm = k;
}

bool vg_member_first_time(vg_client_member *m, uint64_t seq)
{
    if (seq > m->hi) {
        uint64_t shift = seq - m->hi;
        m->seen = (shift >= 64 ? 0 : m->seen << shift) | 1;
        m->hi = seq;
        return true;
    }
    uint64_t back = m->hi - seq;
    if (back >= 64)
        return true; /* older than the window: taken as new */
    uint64_t bit = (uint64_t)1 << back;
    if (m->seen & bit)
        return false;
    m->seen |= bit;
    return true;
}
