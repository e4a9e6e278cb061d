#include "topiclog_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The largest chunk, header included: one transparent huge page. Fresh
 * memory costs a page fault per 4 KiB page otherwise, which made appending
 * 1 KiB messages run at about 1 GB/s (docs/performance.md, "The topic log,
 * alone"); with the hint, one fault maps 2 MiB. Where the kernel has no
 * huge page to give, it falls back to small pages by itself. */
#define HUGE_CHUNK (2u << 20)
#define POOL_MAX 8 /* huge chunks kept for reuse: 16 MiB at most */

void vg_logs_cfg_defaults(vg_logs_cfg *cfg)
{
    *cfg = (vg_logs_cfg){
        .max_bytes = 512u << 20,
        .max_age_ms = 0,
        .min_chunk = 4096,
        .max_chunk = HUGE_CHUNK - (uint32_t)sizeof(vg_chunk),
    };
}

vg_logs *vg_logs_create(const vg_logs_cfg *cfg, uint64_t epoch)
{
    if (epoch == 0 || cfg->min_chunk == 0 || cfg->max_chunk < cfg->min_chunk)
        return NULL;
    vg_logs *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->nbuckets = 64;
    s->table = calloc(s->nbuckets, sizeof *s->table);
    if (s->table == NULL)
        goto fail_free_store;
    if (pthread_mutex_init(&s->mu, NULL) != 0)
        goto fail_free_table;
    if (pthread_mutex_init(&s->pool_mu, NULL) != 0)
        goto fail_destroy_mu;
    s->cfg = *cfg;
    /* A chunk is what retention drops at once: keep it to a quarter of
     * the budget, or a small budget would hold one chunk or none. */
    if (cfg->max_bytes > 0 && s->cfg.max_chunk > cfg->max_bytes / 4)
        s->cfg.max_chunk = (uint32_t)(cfg->max_bytes / 4 > cfg->min_chunk ? cfg->max_bytes / 4
                                                                           : cfg->min_chunk);
    s->epoch = epoch;
    return s;

fail_destroy_mu:
    pthread_mutex_destroy(&s->mu);
fail_free_table:
    free(s->table);
fail_free_store:
    free(s);
    return NULL;
}

uint64_t vg_logs_epoch(const vg_logs *s) { return s->epoch; }

static bool is_huge(const vg_chunk *ch) { return sizeof *ch + ch->cap == HUGE_CHUNK; }

/* The last pin of ch went: a huge chunk goes to the pool if it has room. */
static void chunk_free(vg_chunk *ch)
{
    vg_logs *s = ch->log->store;
    if (is_huge(ch)) {
        pthread_mutex_lock(&s->pool_mu);
        bool kept = s->npool < POOL_MAX;
        if (kept) {
            ch->next = s->pool;
            s->pool = ch;
            s->npool++;
        }
        pthread_mutex_unlock(&s->pool_mu);
        if (kept)
            return;
    }
    free(ch);
}

void vg_chunk_unpin(vg_chunk *ch)
{
    if (atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) == 1)
        chunk_free(ch);
}

void vg_logs_destroy(vg_logs *s)
{
    if (s == NULL)
        return;
    for (size_t b = 0; b < s->nbuckets; b++) {
        vg_tlog *t = s->table[b];
        while (t != NULL) {
            vg_tlog *tn = t->hnext;
            if (t->ready_at != NULL)
                vg_chunk_unpin(t->ready_at);
            for (vg_chunk *ch = t->head; ch != NULL;) {
                vg_chunk *next = ch->next;
                vg_chunk_unpin(ch);
                ch = next;
            }
            pthread_mutex_destroy(&t->mu);
            free(t);
            t = tn;
        }
    }
    for (vg_chunk *ch = s->pool; ch != NULL;) {
        vg_chunk *next = ch->next;
        free(ch);
        ch = next;
    }
    free(s->table);
    free(s->order);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void vg_logs_get_stats(vg_logs *s, vg_logs_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->bytes = s->bytes;
    out->chunks = s->chunks;
    out->logs = s->nlogs;
    pthread_mutex_unlock(&s->mu);
    out->records = atomic_load_explicit(&s->records, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&s->dropped, memory_order_relaxed);
}

/* ---- the topics ---- */

static uint64_t hash_topic(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

/* Doubles the table when it is as full as it is wide; a failed grow just
 * leaves longer chains. Under s->mu. */
static void grow_table(vg_logs *s)
{
    size_t n = s->nbuckets * 2;
    vg_tlog **table = calloc(n, sizeof *table);
    if (table == NULL)
        return;
    for (size_t b = 0; b < s->nbuckets; b++) {
        for (vg_tlog *t = s->table[b], *tn; t != NULL; t = tn) {
            tn = t->hnext;
            t->hnext = table[t->hash & (n - 1)];
            table[t->hash & (n - 1)] = t;
        }
    }
    free(s->table);
    s->table = table;
    s->nbuckets = n;
}

/* The log of topic in the table, or NULL. Under s->mu. */
static vg_tlog *lookup(vg_logs *s, uint64_t h, const char *topic, size_t topic_len)
{
    vg_tlog *t = s->table[h & (s->nbuckets - 1)];
    while (t != NULL && !(t->hash == h && t->topic_len == topic_len &&
                          memcmp(t->topic, topic, topic_len) == 0))
        t = t->hnext;
    return t;
}

vg_tlog *vg_logs_find(vg_logs *s, const char *topic, size_t topic_len)
{
    uint64_t h = hash_topic(topic, topic_len);
    pthread_mutex_lock(&s->mu);
    vg_tlog *t = lookup(s, h, topic, topic_len);
    pthread_mutex_unlock(&s->mu);
    return t;
}

vg_tlog *vg_logs_get(vg_logs *s, const char *topic, size_t topic_len)
{
    uint64_t h = hash_topic(topic, topic_len);
    pthread_mutex_lock(&s->mu);
    vg_tlog *t = lookup(s, h, topic, topic_len);
    if (t == NULL) {
        t = calloc(1, sizeof *t + topic_len);
        if (t == NULL || pthread_mutex_init(&t->mu, NULL) != 0) {
            free(t);
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        if (s->nlogs == s->order_cap) {
            size_t cap = s->order_cap ? s->order_cap * 2 : 64;
            vg_tlog **order = realloc(s->order, cap * sizeof *order);
            if (order == NULL) {
                pthread_mutex_destroy(&t->mu);
                free(t);
                pthread_mutex_unlock(&s->mu);
                return NULL;
            }
            s->order = order;
            s->order_cap = cap;
        }
        s->order[s->nlogs] = t;
        t->store = s;
        t->hash = h;
        t->next_seq = 1;
        t->ready_seq = 1;
        atomic_init(&t->ready_pub, 1);
        t->next_cap = s->cfg.min_chunk;
        t->topic_len = (uint32_t)topic_len;
        memcpy(t->topic, topic, topic_len);
        if (s->nlogs >= s->nbuckets)
            grow_table(s);
        t->hnext = s->table[h & (s->nbuckets - 1)];
        s->table[h & (s->nbuckets - 1)] = t;
        s->nlogs++;
        pthread_mutex_unlock(&s->mu);
        if (s->on_create != NULL) /* before anything is appended to it */
            s->on_create(s->on_create_ud, t);
        return t;
    }
    pthread_mutex_unlock(&s->mu);
    return t;
}

void vg_logs_on_create(vg_logs *s, void (*fn)(void *ud, vg_tlog *t), void *ud)
{
    s->on_create = fn;
    s->on_create_ud = ud;
}

vg_status vg_logs_list(vg_logs *s, size_t from, vg_tlog ***out, size_t *n)
{
    pthread_mutex_lock(&s->mu);
    size_t k = s->nlogs > from ? s->nlogs - from : 0;
    vg_tlog **all = malloc((k ? k : 1) * sizeof *all);
    if (all == NULL) {
        pthread_mutex_unlock(&s->mu);
        return VG_ERR_NOMEM;
    }
    if (k > 0)
        memcpy(all, s->order + from, k * sizeof *all);
    pthread_mutex_unlock(&s->mu);
    *out = all;
    *n = k;
    return VG_OK;
}

size_t vg_logs_count(vg_logs *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->nlogs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- retention ---- */

/* Takes ch out of its log and the store. Under t->mu and s->mu; the log's
 * reference is then the caller's to drop. */
static void unlink_chunk(vg_logs *s, vg_tlog *t, vg_chunk *ch)
{
    t->head = ch->next;
    if (t->tail == ch)
        t->tail = NULL;
    ch->next = NULL;
    ch->dropped = true;
    if (ch->older != NULL)
        ch->older->newer = ch->newer;
    else
        s->oldest = ch->newer;
    if (ch->newer != NULL)
        ch->newer->older = ch->older;
    else
        s->newest = ch->older;
    s->bytes -= ch->cap;
    s->chunks--;
    atomic_fetch_sub_explicit(&s->records, ch->count, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->dropped, ch->count, memory_order_relaxed);
}

/* If the store is over its budget, the chunk to drop, pinned: the oldest
 * one that is not its log's tail (one being appended to holds the records
 * just published, which readers that keep up have not read yet: Kafka
 * never deletes an active segment either), or the oldest if every chunk
 * is a tail. Else NULL. */
static vg_chunk *pick_victim(vg_logs *s)
{
    pthread_mutex_lock(&s->mu);
    vg_chunk *ch = NULL;
    if (s->cfg.max_bytes != 0 && s->bytes > s->cfg.max_bytes) {
        for (vg_chunk *c = s->oldest; c != NULL && ch == NULL; c = c->newer)
            if (!atomic_load_explicit(&c->open, memory_order_relaxed))
                ch = c;
        if (ch == NULL)
            ch = s->oldest;
    }
    if (ch != NULL)
        atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
    return ch;
}

/* Drops chunks (pick_victim's) while the store is over its byte budget.
 * The one picked is always the head of its log: a log's chunks enter the
 * store in the log's order and leave only from its head, so the oldest
 * chunk, and the oldest that is not a tail, is some log's head (the chunks
 * of a log before a non-tail are not tails). */
static void trim(vg_logs *s)
{
    vg_chunk *ch;
    while ((ch = pick_victim(s)) != NULL) {
        vg_tlog *t = ch->log;
        bool dropped = false, stuck = false;
        pthread_mutex_lock(&t->mu);
        pthread_mutex_lock(&s->mu);
        /* Checked again: another thread may have dropped it meanwhile. */
        if (!ch->dropped && s->bytes > s->cfg.max_bytes) {
            if (t->head == ch) {
                unlink_chunk(s, t, ch);
                dropped = true;
            } else {
                stuck = true; /* cannot be (above); never loop on it */
            }
        }
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_unlock(&t->mu);
        if (dropped)
            vg_chunk_unpin(ch); /* the log's reference */
        vg_chunk_unpin(ch);     /* ours */
        if (stuck)
            break;
    }
}

void vg_logs_expire(vg_logs *s, int64_t now_ms)
{
    if (s->cfg.max_age_ms <= 0)
        return;
    int64_t cutoff = now_ms - s->cfg.max_age_ms;
    /* Logs live as long as the store, so a snapshot of the table stays
     * valid without the store's lock, which must not be held while taking
     * a log's. Within a log last_ms only grows, so the expired chunks are
     * a prefix. */
    pthread_mutex_lock(&s->mu);
    size_t n = s->nlogs;
    vg_tlog **logs = malloc((n ? n : 1) * sizeof *logs);
    if (logs != NULL && n > 0)
        memcpy(logs, s->order, n * sizeof *logs);
    pthread_mutex_unlock(&s->mu);
    if (logs == NULL)
        return; /* out of memory: try again at the next tick */
    for (size_t i = 0; i < n; i++) {
        vg_tlog *t = logs[i];
        pthread_mutex_lock(&t->mu);
        while (t->head != NULL && t->head->last_ms < cutoff) {
            vg_chunk *ch = t->head;
            pthread_mutex_lock(&s->mu);
            unlink_chunk(s, t, ch);
            pthread_mutex_unlock(&s->mu);
            vg_chunk_unpin(ch);
        }
        pthread_mutex_unlock(&t->mu);
    }
    free(logs);
}

/* ---- appending ---- */

/* A chunk of cap bytes, or of need if that is more; a largest one is a
 * huge page, aligned so that the kernel can map it as one. */
static vg_chunk *chunk_new(vg_tlog *t, size_t cap, size_t need)
{
    if (cap < need)
        cap = need;
    if (cap > UINT32_MAX)
        return NULL;
    vg_chunk *ch = NULL;
    size_t bytes = sizeof *ch + cap;
    if (bytes == HUGE_CHUNK) {
        vg_logs *s = t->store;
        pthread_mutex_lock(&s->pool_mu);
        if (s->pool != NULL) {
            ch = s->pool;
            s->pool = ch->next;
            s->npool--;
        }
        pthread_mutex_unlock(&s->pool_mu);
        if (ch == NULL) {
            ch = aligned_alloc(HUGE_CHUNK, HUGE_CHUNK);
            if (ch != NULL)
                (void)madvise(ch, HUGE_CHUNK, MADV_HUGEPAGE);
        }
    } else {
        ch = malloc(bytes);
    }
    if (ch == NULL)
        return NULL;
    memset(ch, 0, sizeof *ch);
    atomic_init(&ch->refs, 1);
    atomic_init(&ch->open, false);
    ch->log = t;
    ch->cap = (uint32_t)cap;
    return ch;
}

/* The largest chunk a log gets now: max_chunk, and at most a quarter of
 * the budget shared by every log. Many topics then keep small tails, so
 * retention has sealed chunks of old records to drop rather than the tail
 * a topic is being appended to. Takes s->mu (under a log's mu is fine). */
static uint32_t chunk_max(vg_logs *s)
{
    uint32_t max = s->cfg.max_chunk;
    if (s->cfg.max_bytes == 0)
        return max;
    pthread_mutex_lock(&s->mu);
    size_t n = s->nlogs > 0 ? s->nlogs : 1;
    pthread_mutex_unlock(&s->mu);
    uint64_t share = s->cfg.max_bytes / 4 / n;
    if (share < s->cfg.min_chunk)
        share = s->cfg.min_chunk;
    return share < max ? (uint32_t)share : max;
}

/* The capacity of the chunk after one of cap: doubling up to chunk_max. */
static uint32_t grown(const vg_tlog *t, uint32_t cap)
{
    uint32_t max = chunk_max(t->store);
    return cap >= max / 2 ? max : cap * 2;
}

/* Puts a new chunk at the end of t and of the store. Under t->mu. */
static void chunk_link(vg_tlog *t, vg_chunk *ch)
{
    vg_logs *s = t->store;
    ch->first_seq = t->next_seq;
    atomic_store_explicit(&ch->open, true, memory_order_relaxed);
    if (t->tail != NULL) {
        t->tail->next = ch;
        /* Sealed before the new one is in the store (its lock orders it). */
        atomic_store_explicit(&t->tail->open, false, memory_order_relaxed);
    } else {
        t->head = ch;
    }
    t->tail = ch;
    t->next_cap = grown(t, t->next_cap);
    pthread_mutex_lock(&s->mu);
    ch->older = s->newest;
    ch->newer = NULL;
    if (s->newest != NULL)
        s->newest->newer = ch;
    else
        s->oldest = ch;
    s->newest = ch;
    s->bytes += ch->cap;
    s->chunks++;
    pthread_mutex_unlock(&s->mu);
}

/* Whether t's tail chunk ends at next_seq: after a hole (vg_tlog_restore)
 * records go to a new chunk, whose first_seq says where they start. */
static bool continues(const vg_tlog *t)
{
    return t->tail->first_seq + t->tail->count == t->next_seq;
}

/* Allocates the chunks that messages msgs[i..] need after t's tail, at
 * most SPARE, and returns how many of the messages they (and the tail's
 * room) hold; 0 with *nomem set if an allocation failed. Under t->mu. */
enum { SPARE = 8 };
static size_t reserve(vg_tlog *t, const vg_tlog_msg *msgs, size_t n, vg_chunk **spare,
                      size_t *nspare, bool *nomem)
{
    size_t room = t->tail != NULL && continues(t) ? t->tail->cap - t->tail->len : 0;
    uint32_t cap = t->next_cap, lim = chunk_max(t->store);
    if (cap > lim)
        cap = lim; /* topics were created since next_cap was set */
    size_t j = 0;
    *nspare = 0;
    for (; j < n; j++) {
        size_t rec = vg_frame_msg_seq_size(t->topic_len, msgs[j].payload_len);
        if (rec > room) {
            if (*nspare == SPARE)
                break;
            vg_chunk *ch = chunk_new(t, cap, rec);
            if (ch == NULL) {
                for (size_t k = 0; k < *nspare; k++)
                    chunk_free(spare[k]); /* back to the pool, if they came from it */
                *nspare = 0;
                *nomem = true;
                return 0;
            }
            spare[(*nspare)++] = ch;
            room = ch->cap;
            cap = grown(t, cap); /* as chunk_link will grow next_cap */
        }
        room -= rec;
    }
    return j;
}

vg_status vg_tlog_append(vg_tlog *t, const vg_tlog_msg *msgs, size_t n, int64_t now_ms,
                         uint64_t *first_seq, size_t *appended)
{
    vg_chunk *spare[SPARE];
    size_t done = 0, nspare;
    bool nomem = false, grew = false;

    pthread_mutex_lock(&t->mu);
    *first_seq = t->next_seq;
    if (t->tail != NULL && now_ms < t->tail->last_ms)
        now_ms = t->tail->last_ms; /* two threads' clocks: keep last_ms growing */
    while (done < n) {
        size_t fit = reserve(t, msgs + done, n - done, spare, &nspare, &nomem);
        if (fit == 0)
            break;
        size_t used = 0;
        for (size_t i = done; i < done + fit; i++) {
            size_t rec = vg_frame_msg_seq_size(t->topic_len, msgs[i].payload_len);
            vg_chunk *ch = t->tail;
            if (ch == NULL || ch->cap - ch->len < rec || !continues(t)) {
                ch = spare[used++];
                chunk_link(t, ch);
                grew = true;
            }
            vg_frame_write_msg_seq(ch->data + ch->len, msgs[i].type, t->topic, t->topic_len,
                                   msgs[i].payload, msgs[i].payload_len, t->next_seq);
            ch->len += (uint32_t)rec;
            ch->count++;
            ch->last_ms = now_ms;
            t->next_seq++;
            if (!t->store->cfg.held) {
                ch->ready_len = ch->len;
                ch->ready_count = ch->count;
                t->ready_seq = t->next_seq;
                atomic_store_explicit(&t->ready_pub, t->ready_seq, memory_order_release);
            }
        }
        done += fit;
    }
    pthread_mutex_unlock(&t->mu);
    atomic_fetch_add_explicit(&t->store->records, done, memory_order_relaxed);
    *appended = done;
    if (grew)
        trim(t->store); /* only a new chunk adds bytes: most appends skip the store's lock */
    return nomem ? VG_ERR_NOMEM : VG_OK;
}

vg_status vg_tlog_restore(vg_tlog *t, uint64_t first_seq, const vg_tlog_msg *msgs, size_t n,
                          int64_t at_ms)
{
    pthread_mutex_lock(&t->mu);
    uint64_t next = t->next_seq;
    if (first_seq > next)
        t->next_seq = first_seq; /* a hole: the next chunk starts at first_seq */
    pthread_mutex_unlock(&t->mu);
    size_t skip = first_seq < next ? (size_t)(next - first_seq < n ? next - first_seq : n) : 0;
    vg_status st = VG_OK;
    if (skip < n) {
        uint64_t seq;
        size_t appended;
        st = vg_tlog_append(t, msgs + skip, n - skip, at_ms, &seq, &appended);
    }
    vg_tlog_release(t, UINT64_MAX);
    return st;
}

void vg_tlog_skip_to(vg_tlog *t, uint64_t seq)
{
    pthread_mutex_lock(&t->mu);
    if (seq > t->next_seq)
        t->next_seq = seq;
    if (t->head == NULL && seq > t->ready_seq) {
        t->ready_seq = seq;
        atomic_store_explicit(&t->ready_pub, seq, memory_order_release);
    }
    pthread_mutex_unlock(&t->mu);
}

void vg_tlog_release(vg_tlog *t, uint64_t upto)
{
    pthread_mutex_lock(&t->mu);
    vg_chunk *ch = t->ready_at;
    if (ch == NULL || ch->dropped)
        ch = t->head;
    while (ch != NULL && t->ready_seq < upto) {
        if (ch->first_seq > t->ready_seq)
            t->ready_seq = ch->first_seq; /* a hole, or records dropped unread */
        while (ch->ready_count < ch->count && t->ready_seq < upto) {
            ch->ready_len += vg_chunk_record_len(ch, ch->ready_len);
            ch->ready_count++;
            t->ready_seq = ch->first_seq + ch->ready_count;
        }
        if (ch->ready_count < ch->count || ch->next == NULL)
            break;
        ch = ch->next;
    }
    atomic_store_explicit(&t->ready_pub, t->ready_seq, memory_order_release);
    if (ch != t->ready_at) {
        if (ch != NULL)
            vg_chunk_pin(ch);
        if (t->ready_at != NULL)
            vg_chunk_unpin(t->ready_at);
        t->ready_at = ch;
    }
    pthread_mutex_unlock(&t->mu);
}

const char *vg_tlog_topic(const vg_tlog *t, uint32_t *len)
{
    *len = t->topic_len;
    return t->topic;
}

uint64_t vg_tlog_ready_seq(vg_tlog *t)
{
    pthread_mutex_lock(&t->mu);
    uint64_t seq = t->ready_seq;
    pthread_mutex_unlock(&t->mu);
    return seq;
}

bool vg_tlog_ready_after(vg_tlog *t, uint64_t seq)
{
    return atomic_load_explicit(&t->ready_pub, memory_order_acquire) > seq;
}

uint64_t vg_tlog_ready_hint(vg_tlog *t)
{
    return atomic_load_explicit(&t->ready_pub, memory_order_acquire);
}

void vg_tlog_get_info(vg_tlog *t, vg_tlog_info *out)
{
    *out = (vg_tlog_info){0};
    pthread_mutex_lock(&t->mu);
    out->next_seq = t->next_seq;
    out->first_seq = t->head != NULL ? t->head->first_seq : t->next_seq;
    for (const vg_chunk *ch = t->head; ch != NULL; ch = ch->next) {
        out->records += ch->count;
        out->bytes += ch->len;
    }
    pthread_mutex_unlock(&t->mu);
}

uint64_t vg_tlog_next_seq(vg_tlog *t)
{
    pthread_mutex_lock(&t->mu);
    uint64_t seq = t->next_seq;
    pthread_mutex_unlock(&t->mu);
    return seq;
}

uint64_t vg_tlog_first_seq(vg_tlog *t)
{
    pthread_mutex_lock(&t->mu);
    uint64_t seq = t->head != NULL ? t->head->first_seq : t->next_seq;
    pthread_mutex_unlock(&t->mu);
    return seq;
}
