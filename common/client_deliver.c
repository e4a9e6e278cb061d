/* The I/O thread's side of subscriptions: where each subscription is in
 * its topics' logs, and which sids each message goes to.
 *
 * Each topic of the copy (client_filter.c) holds one position
 * (client_resume.h), which only this thread touches: everything the broker
 * says about a topic's log (INFO's epoch, OK's next, a POS, a MSG's seq, a
 * GAP) goes through it, so each message is handed over once per sid it is
 * for, and each loss is reported once per such sid. A plain MSG (four
 * elements) goes to every sid whose subject is the topic or a pattern
 * matching it, in sid order (vg_msg.copy 0 for the first, 1, 2, ... for the
 * others). A queue member's MSG (five elements) goes to the sid it names
 * only, and bypasses the position: a member gets a sparse subset of the
 * topic's seqs, so only an exact repeat on the connection is dropped. */
#include "client_internal.h"

#include <stdlib.h>
#include <string.h>

#include "topic.h"
#include "clock.h"
#include "log.h"

static void count(_Atomic uint64_t *shared, uint64_t *local, uint64_t n)
{
    *local += n;
    atomic_store_explicit(shared, *local, memory_order_relaxed);
}

/* Counts and logs gap g of topic, once whatever the sids it concerns. */
static void note_gap(vg_client *c, const char *topic, size_t len, const vg_gap *g)
{
    count(&c->gaps, &c->gaps_local, 1);
    if (g->to != 0)
        count(&c->missed, &c->missed_local, g->to - g->from + 1);
    char q[96];
    vg_client_log(c, VG_LOG_DEBUG, "gap", "topic=%s from=%llu to=%llu reason=%d",
           vg_log_quote(q, sizeof q, topic, len), (unsigned long long)g->from,
           (unsigned long long)g->to, (int)g->reason);
}

/* Reports g to each plain sid of t. Callbacks run by on_gap leave the copy
 * as it is (only a sync rebuilds it), so t stays valid. */
static void report(vg_client *c, const vg_client_topic *t, vg_gap g)
{
    note_gap(c, t->topic, t->len, &g);
    if (c->opts.on_gap == NULL)
        return;
    g.copy = 0;
    for (size_t i = 0; i < t->nm; i++) {
        if (t->m[i].queue)
            continue;
        g.sid = t->m[i].sid;
        c->opts.on_gap(c->opts.ud, t->topic, t->len, &g);
        g.copy++;
    }
}

/* Tells t's position the current connection's epoch, once per connection. */
static void tell_epoch(vg_client *c, vg_client_topic *t)
{
    if (t->connected || c->conn_epoch == 0)
        return;
    t->connected = true;
    vg_gap g;
    if (t->nplain > 0 && vg_resume_connected(&t->pos, c->conn_epoch, &g))
        report(c, t, g);
}

/* ---- what the broker says ---- */

void vg_client_stop_delivery(vg_client *c)
{
    atomic_store_explicit(&c->delivery_stopped, true, memory_order_relaxed);
}

static bool stopped(const vg_client *c)
{
    return atomic_load_explicit(&c->delivery_stopped, memory_order_relaxed);
}

/* Hands f to on_msg for sid; true if it was processed (on_msg returned
 * without stopping delivery). */
static bool hand(vg_client *c, const vg_frame *f, uint64_t sid, unsigned copy, uint64_t epoch)
{
    count(&c->received, &c->received_local, 1);
    if (c->opts.on_msg == NULL)
        return false;
    vg_msg m = {f->type, f->topic, f->topic_len, f->payload, f->payload_len, f->seq, epoch,
                sid, copy};
    c->opts.on_msg(c->opts.ud, &m);
    return !stopped(c);
}

/* A durable or queue message processed: its ACK is due soon. */
static void ack_owed(vg_client *c)
{
    if (++c->ack_pending >= VG_ACK_BATCH)
        vg_client_flush_acks(c);
    else
        vg_client_ack_soon(c, vg_now_ms());
}

/* A plain MSG, not a duplicate, to t's plain sids in order. A callback
 * may subscribe or unsubscribe: the copy is synced after it, so a sid
 * unsubscribed gets nothing more, and a sid subscribed since (a higher
 * one) does not get this message, which the broker did not send for it. */
static void dispatch(vg_client *c, const vg_frame *f, vg_client_topic *t, uint64_t epoch)
{
    uint64_t upto = t->m[t->nm - 1].sid, last = 0, gen = c->filter.gen;
    unsigned copy = 0;
    bool owed = false;
    while (!stopped(c)) {
        size_t i = vg_topic_after(t, last);
        while (i < t->nm && t->m[i].queue)
            i++;
        if (i == t->nm || t->m[i].sid > upto)
            break;
        vg_client_member *m = &t->m[i];
        last = m->sid;
        if (hand(c, f, m->sid, copy++, epoch) && m->durable) {
            m->processed = f->seq;
            m->processed_epoch = epoch;
            owed = true;
        }
        if (atomic_load_explicit(&c->subs_gen, memory_order_acquire) != gen) {
            vg_client_sync_filter(c);
            gen = c->filter.gen;
            bool untracked;
            t = vg_client_topic_for(c, f->topic, f->topic_len, &untracked);
            if (t == NULL)
                break;
        }
    }
    if (owed)
        ack_owed(c);
}

/* A queue member's MSG: to the sid it names, if that is a queue member of
 * t, unless it was given this seq already on this connection. */
static void deliver_queue(vg_client *c, const vg_frame *f, vg_client_topic *t)
{
    vg_client_member *m = vg_topic_member(t, f->sid);
    if (m == NULL || !m->queue)
        return; /* unsubscribed, or not ours */
    if (!vg_member_first_time(m, f->seq)) {
        count(&c->duplicates, &c->duplicates_local, 1);
        return;
    }
    if (!hand(c, f, f->sid, 0, c->conn_epoch))
        return;
    /* The last one processed, not the highest: the broker takes an ACK of
     * a queue member's seq S as S and whatever it handed the member before
     * S (docs/protocol.md), so a redelivered lower seq is acknowledged
     * exactly when it has been processed. */
    m->processed = f->seq;
    m->processed_epoch = c->conn_epoch;
    m->owed = true;
    ack_owed(c);
}

void vg_client_deliver(vg_client *c, const vg_frame *f)
{
    /* Every connection this client keeps speaks version 2, where a broker
     * numbers each MSG it delivers: one without its seq cannot be placed. */
    if (f->form != 2 && f->form != 3) {
        vg_link_end(c->link, VG_END_PROTOCOL, 0, "a MSG without a sequence number");
        return;
    }
    if (stopped(c))
        return; /* not handed over, so not processed, never acknowledged */
    bool untracked;
    vg_client_topic *t = vg_client_topic_for(c, f->topic, f->topic_len, &untracked);
    if (untracked) {
        hand(c, f, f->form == 3 ? f->sid : 0, 0, c->conn_epoch);
        return;
    }
    if (t == NULL)
        return;
    if (f->form == 3) {
        deliver_queue(c, f, t);
        return;
    }
    if (t->nplain == 0)
        return;
    tell_epoch(c, t);
    t->started = true; /* the broker reads the topic for us: a later OK or POS is behind */
    bool gapped;
    vg_gap g;
    if (vg_resume_msg(&t->pos, f->seq, &gapped, &g) == VG_RESUME_DUPLICATE) {
        count(&c->duplicates, &c->duplicates_local, 1);
        return;
    }
    if (gapped)
        report(c, t, g);
    dispatch(c, f, t, t->pos.epoch);
}

void vg_client_gap_frame(vg_client *c, const vg_frame *f)
{
    bool untracked;
    vg_client_topic *t = vg_client_topic_for(c, f->topic, f->topic_len, &untracked);
    if (t == NULL)
        return;
    vg_client_member *m = vg_topic_member(t, f->sid);
    if (m != NULL && m->queue) {
        /* A queue group's loss: the broker's to tell, once, to this member. */
        vg_gap g = {f->from, f->to, (vg_gap_reason)f->code, f->sid, 0};
        note_gap(c, t->topic, t->len, &g);
        if (c->opts.on_gap != NULL)
            c->opts.on_gap(c->opts.ud, t->topic, t->len, &g);
        return;
    }
    if (t->nplain == 0)
        return;
    tell_epoch(c, t);
    vg_gap g;
    bool news;
    if (f->code == VG_GAP_EPOCH) /* told already if the handshake's epoch showed it */
        news = vg_resume_connected(&t->pos, c->conn_epoch, &g);
    else
        news = vg_resume_gap(&t->pos, f->from, f->to, &g);
    if (news)
        report(c, t, g);
}

/* The first placement of t's position on this connection, at next of
 * epoch; any later one names the shared cursor and changes nothing. */
static void place(vg_client *c, vg_client_topic *t, uint64_t epoch, uint64_t next)
{
    if (t->nplain == 0)
        return;
    tell_epoch(c, t);
    if (t->started)
        return;
    t->started = true;
    vg_gap g;
    if (vg_resume_started(&t->pos, epoch, next, &g))
        report(c, t, g);
}

void vg_client_pos_frame(vg_client *c, const vg_frame *f)
{
    bool untracked;
    vg_client_topic *t = vg_client_topic_for(c, f->topic, f->topic_len, &untracked);
    const vg_client_sid *s = t != NULL ? vg_client_filter_sid(&c->filter, f->sid) : NULL;
    const vg_client_member *m = s != NULL ? vg_topic_member(t, f->sid) : NULL;
    if (s == NULL || !s->pattern || m == NULL || m->queue)
        return; /* unsubscribed since, not a pattern of ours that matches it, or a group's */
    if (!t->started && !t->pos.anchored && t->pos.epoch == 0 && s->ok_epoch != 0 &&
        !s->durable && c->conn_epoch != 0) {
        /* A pattern the broker has answered is owed a topic new to the
         * client from its first message (one created later starts there;
         * one a resume finds is read whole: a RETENTION gap before its
         * first retained message), so the position is the application's,
         * before 1. A durable's is the broker's (its acknowledgements may
         * be another process's), as is any before the pattern's first OK. */
        vg_resume_init(&t->pos, VG_SUB_SEQ, c->conn_epoch, 1);
    }
    place(c, t, f->epoch, f->next);
}

void vg_client_positions_connected(vg_client *c)
{
    vg_client_sync_filter(c);
    vg_client_topics *tb = &c->filter.topics;
    for (size_t i = 0; c->filter.valid && i < tb->n; i++)
        tell_epoch(c, &tb->v[i]);
}

void vg_client_position_started(vg_client *c, uint64_t sid, const char *subject, size_t len,
                                uint64_t epoch, uint64_t next)
{
    vg_client_sync_filter(c);
    vg_client_sid *s = c->filter.valid ? vg_client_filter_sid(&c->filter, sid) : NULL;
    if (vg_subject_is_pattern(subject, len)) {
        if (s != NULL) /* its topics are placed by POS frames, each its own */
            s->ok_epoch = epoch;
        return;
    }
    pthread_mutex_lock(&c->mu); /* the copy lacks a sid that is leaving */
    bool queue = vg_subs_queue(c->subs, sid, NULL, NULL);
    pthread_mutex_unlock(&c->mu);
    if (queue)
        return; /* the group's position is the broker's: nothing of ours to place */
    bool untracked;
    vg_client_topic *t = vg_client_topic_for(c, subject, len, &untracked);
    if (t != NULL)
        place(c, t, epoch, next);
}

void vg_client_positions_lost(vg_client *c)
{
    vg_client_topics *tb = &c->filter.topics;
    for (size_t i = 0; i < tb->n; i++) {
        vg_client_topic *t = &tb->v[i];
        t->connected = t->started = false;
        for (size_t k = 0; k < t->nm; k++) {
            vg_client_member *m = &t->m[k];
            m->acked = 0; /* the next connection is told again */
            if (m->queue) /* what the group gave this member went with the connection */
                *m = (vg_client_member){.sid = m->sid, .durable = m->durable, .queue = true};
        }
    }
}

/* ---- acknowledgements ---- */

void vg_client_ack_soon(vg_client *c, int64_t now)
{
    if (c->ack_due == INT64_MAX)
        c->ack_due = now + c->opts.ack_delay_ms;
}

/* vg_subs_acks's callback, under c->mu: for a durable literal sid, a
 * three-element ACK if its topic was processed beyond what sid
 * acknowledged on this connection, in its epoch; for a pattern or queue
 * sid, a four-element ACK per topic with something new processed. */
static vg_status ack_one(void *arg, uint64_t sid, const char *subject, size_t len,
                         uint64_t *acked)
{
    vg_client *c = arg;
    vg_client_topics *tb = &c->filter.topics;
    if (!c->filter.valid)
        return VG_OK;
    bool queue = vg_subs_queue(c->subs, sid, NULL, NULL);
    vg_buf *out = vg_link_ctl(c->link);
    if (!queue && !vg_subject_is_pattern(subject, len)) {
        vg_client_topic *t = vg_topics_find(tb, subject, len);
        vg_client_member *m = t != NULL ? vg_topic_member(t, sid) : NULL;
        if (m == NULL || m->processed <= *acked || m->processed_epoch != c->conn_epoch)
            return VG_OK;
        vg_status st = vg_frame_put_ack(out, sid, m->processed);
        if (st == VG_OK)
            *acked = m->processed;
        return st;
    }
    for (size_t i = 0; i < tb->n; i++) {
        vg_client_topic *t = &tb->v[i];
        vg_client_member *m = vg_topic_member(t, sid);
        if (m == NULL || m->processed_epoch != c->conn_epoch ||
            !(queue ? m->owed : m->processed > m->acked))
            continue;
        vg_status st = vg_frame_put_ack_topic(out, sid, m->processed, t->topic, t->len);
        if (st != VG_OK)
            return st;
        m->acked = m->processed;
        m->owed = false;
    }
    return VG_OK;
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
