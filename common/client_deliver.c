/* The I/O thread's side of subscriptions: which topics the application
 * still wants, and where each subscription is in its topic's log.
 *
 * The subscriptions live under c->mu (client_subs.c); the I/O thread keeps
 * a copy of the wanted topics so that a message costs no lock, rebuilt
 * when subs_gen moves. Each topic of the copy holds the subscription's
 * position (client_resume.h), which only this thread touches: everything
 * the broker says about a topic's log (INFO's epoch, OK's next, a MSG's
 * seq, a GAP) goes through it, so each message reaches on_msg once and
 * each loss reaches on_gap once. A rebuild keeps the positions of the
 * topics still wanted, so a reconnect resumes where the application is. */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

/* ---- the copy of the wanted topics ---- */

static vg_client_topic *find(vg_client_filter *f, const char *topic, size_t len)
{
    if (f->last < f->n && f->v[f->last].len == len && memcmp(f->v[f->last].topic, topic, len) == 0)
        return &f->v[f->last];
    for (size_t i = 0; i < f->n; i++) {
        if (f->v[i].len == len && memcmp(f->v[i].topic, topic, len) == 0) {
            f->last = i;
            return &f->v[i];
        }
    }
    return NULL;
}

typedef struct {
    vg_client_filter *f;
    const vg_subs *subs;
} rebuild;

static vg_status keep(void *arg, const char *topic, size_t len, const vg_sub_from *from)
{
    const rebuild *rb = arg;
    vg_client_filter *f = rb->f;
    bool durable = vg_subs_topic_durable(rb->subs, topic, len);
    vg_client_topic *t = find(f, topic, len);
    if (t != NULL) {
        t->kept = true;
        t->durable = durable;
        return VG_OK;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        vg_client_topic *v = realloc(f->v, cap * sizeof *v);
        if (v == NULL)
            return VG_ERR_NOMEM;
        f->v = v;
        f->cap = cap;
    }
    char *copy = strndup(topic, len);
    if (copy == NULL)
        return VG_ERR_NOMEM;
    t = &f->v[f->n++];
    *t = (vg_client_topic){.topic = copy, .len = len, .kept = true, .durable = durable};
    vg_resume_init(&t->pos, from->start, from->epoch, from->position);
    return VG_OK;
}

/* Rebuilds the copy from the subscriptions. Out of memory, it stays
 * invalid and everything is delivered (retried on the next message). */
static void refresh(vg_client *c, uint64_t gen)
{
    vg_client_filter *f = &c->filter;
    for (size_t i = 0; i < f->n; i++)
        f->v[i].kept = false;
    pthread_mutex_lock(&c->mu);
    rebuild rb = {f, c->subs};
    f->valid = vg_subs_each_deliverable(c->subs, keep, &rb) == VG_OK;
    pthread_mutex_unlock(&c->mu);
    /* A topic no longer wanted loses its position: a later subscription to
     * it starts where it asks. */
    for (size_t i = 0; i < f->n;) {
        if (f->v[i].kept || !f->valid) {
            i++;
            continue;
        }
        free(f->v[i].topic);
        f->v[i] = f->v[--f->n];
    }
    f->last = 0;
    f->gen = gen;
}

static void count(_Atomic uint64_t *shared, uint64_t *local, uint64_t n)
{
    *local += n;
    atomic_store_explicit(shared, *local, memory_order_relaxed);
}

static void report(vg_client *c, const vg_client_topic *t, const vg_gap *g)
{
    count(&c->gaps, &c->gaps_local, 1);
    if (g->to != 0)
        count(&c->missed, &c->missed_local, g->to - g->from + 1);
    char q[96];
    vg_log(VG_LOG_DEBUG, "gap", "topic=%s from=%llu to=%llu reason=%d",
           vg_log_quote(q, sizeof q, t->topic, t->len), (unsigned long long)g->from,
           (unsigned long long)g->to, (int)g->reason);
    if (c->opts.on_gap != NULL)
        c->opts.on_gap(c->opts.ud, t->topic, t->len, g);
}

/* Rebuilds the copy if the subscriptions changed since. */
static void sync_copy(vg_client *c)
{
    uint64_t gen = atomic_load_explicit(&c->subs_gen, memory_order_acquire);
    if (gen != c->filter.gen || !c->filter.valid)
        refresh(c, gen);
}

/* Tells t's position the current connection's epoch, once per connection. */
static void tell_epoch(vg_client *c, vg_client_topic *t)
{
    if (t->connected || c->conn_epoch == 0)
        return;
    t->connected = true;
    vg_gap g;
    if (vg_resume_connected(&t->pos, c->conn_epoch, &g))
        report(c, t, &g);
}

/* Whether topic is wanted; *out is its entry, its position told the
 * current epoch (NULL if the copy is invalid: everything is wanted then,
 * and nothing is tracked). Callbacks run by on_gap leave the copy as it
 * is: only sync_copy rebuilds it. */
static bool wanted(vg_client *c, const char *topic, size_t len, vg_client_topic **out)
{
    sync_copy(c);
    *out = NULL;
    if (!c->filter.valid)
        return true;
    vg_client_topic *t = find(&c->filter, topic, len);
    if (t == NULL)
        return false;
    tell_epoch(c, t);
    *out = t;
    return true;
}

/* ---- what the broker says ---- */

void vg_client_stop_delivery(vg_client *c)
{
    atomic_store_explicit(&c->delivery_stopped, true, memory_order_relaxed);
}

void vg_client_deliver(vg_client *c, const vg_frame *f)
{
    vg_client_topic *t;
    if (atomic_load_explicit(&c->delivery_stopped, memory_order_relaxed) ||
        !wanted(c, f->topic, f->topic_len, &t))
        return; /* stopped: not handed over, so not processed, never acknowledged */
    uint64_t epoch = c->conn_epoch;
    if (t != NULL) {
        bool gapped;
        vg_gap g;
        if (vg_resume_msg(&t->pos, f->seq, &gapped, &g) == VG_RESUME_DUPLICATE) {
            count(&c->duplicates, &c->duplicates_local, 1);
            return;
        }
        if (gapped)
            report(c, t, &g);
        epoch = t->pos.epoch;
    }
    count(&c->received, &c->received_local, 1);
    if (c->opts.on_msg == NULL)
        return;
    vg_msg m = {f->type, f->topic, f->topic_len, f->payload, f->payload_len, f->seq, epoch};
    c->opts.on_msg(c->opts.ud, &m);
    /* Processed now that the callback has returned, unless it stopped
     * delivery; the callback cannot have changed the copy (only sync_copy
     * rebuilds it), so t is valid. */
    if (t == NULL || !t->durable ||
        atomic_load_explicit(&c->delivery_stopped, memory_order_relaxed))
        return;
    t->processed = f->seq;
    t->processed_epoch = epoch;
    if (++c->ack_pending >= VG_ACK_BATCH)
        vg_client_flush_acks(c);
    else
        vg_client_ack_soon(c, vg_now_ms());
}

/* ---- acknowledgements ---- */

void vg_client_ack_soon(vg_client *c, int64_t now)
{
    if (c->ack_due == INT64_MAX)
        c->ack_due = now + c->opts.ack_delay_ms;
}

/* vg_subs_acks's callback: an ACK for sid if its topic was processed
 * beyond what sid acknowledged on this connection, in its epoch. */
static vg_status ack_one(void *arg, uint64_t sid, const char *topic, size_t len, uint64_t *acked)
{
    vg_client *c = arg;
    vg_client_topic *t = c->filter.valid ? find(&c->filter, topic, len) : NULL;
    if (t == NULL || t->processed <= *acked || t->processed_epoch != c->conn_epoch)
        return VG_OK;
    vg_status st = vg_frame_put_ack(vg_link_ctl(c->link), sid, t->processed);
    if (st == VG_OK)
        *acked = t->processed;
    return st;
}

bool vg_client_flush_acks(vg_client *c)
{
    c->ack_pending = 0;
    c->ack_due = INT64_MAX;
    if (c->conn_epoch == 0)
        return true; /* no connection: the next one is told after its renewals */
    /* The copy as it is, not rebuilt: a topic just unsubscribed keeps what
     * it processed for the ACK that may still go ahead of its UNSUB. */
    pthread_mutex_lock(&c->mu);
    vg_status st = vg_subs_acks(c->subs, ack_one, c);
    pthread_mutex_unlock(&c->mu);
    return vg_link_ctl_ok(c->link, st);
}

void vg_client_gap_frame(vg_client *c, const vg_frame *f)
{
    vg_client_topic *t;
    if (!wanted(c, f->topic, f->topic_len, &t) || t == NULL)
        return;
    vg_gap g;
    bool news;
    if (f->code == VG_GAP_EPOCH) /* told already if the handshake's epoch showed it */
        news = vg_resume_connected(&t->pos, c->conn_epoch, &g);
    else
        news = vg_resume_gap(&t->pos, f->from, f->to, &g);
    if (news)
        report(c, t, &g);
}

void vg_client_positions_connected(vg_client *c)
{
    sync_copy(c);
    for (size_t i = 0; c->filter.valid && i < c->filter.n; i++)
        tell_epoch(c, &c->filter.v[i]);
}

void vg_client_position_started(vg_client *c, const char *topic, size_t len, uint64_t epoch,
                                uint64_t next)
{
    vg_client_topic *t;
    if (!wanted(c, topic, len, &t) || t == NULL || t->started)
        return;
    t->started = true;
    vg_gap g;
    if (vg_resume_started(&t->pos, epoch, next, &g))
        report(c, t, &g);
}

vg_status vg_client_put_renewal(vg_client *c, vg_buf *out, uint64_t sid, const char *topic,
                                size_t len)
{
    vg_client_topic *t = c->filter.valid ? find(&c->filter, topic, len) : NULL;
    if (t == NULL) /* out of memory for the copy: from now on */
        return vg_frame_put_sub2(out, sid, topic, len, VG_SUB_NEW, 0, 0);
    vg_sub_start start;
    uint64_t epoch, position;
    vg_resume_sub(&t->pos, &start, &epoch, &position);
    return vg_frame_put_sub2(out, sid, topic, len, start, epoch, position);
}

vg_status vg_client_put_durable_renewal(vg_client *c, vg_buf *out, uint64_t sid,
                                        const char *topic, size_t len, const char *name,
                                        size_t nlen)
{
    vg_client_topic *t = c->filter.valid ? find(&c->filter, topic, len) : NULL;
    vg_sub_start start = VG_SUB_NEW;
    uint64_t epoch = 0, position = 0;
    if (t != NULL)
        vg_resume_sub(&t->pos, &start, &epoch, &position);
    return vg_frame_put_sub_durable(out, sid, topic, len, start, epoch, position, name, nlen);
}

void vg_client_positions_lost(vg_client *c)
{
    for (size_t i = 0; i < c->filter.n; i++)
        c->filter.v[i].connected = c->filter.v[i].started = false;
}

void vg_client_filter_free(vg_client_filter *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].topic);
    free(f->v);
    *f = (vg_client_filter){0};
}
