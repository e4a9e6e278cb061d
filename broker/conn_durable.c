/* Durable subscribers on a connection (durable.h holds their positions):
 * a SUB with a name starts after the name's last acknowledged message,
 * ACK frames move that position (stored with --data-dir), UNSUB with the
 * delete flag forgets it, and a connection whose durable another one took
 * over is told so (ERR durable_taken) and stops reading it. All on the
 * connection's own thread. */
#include "conn_internal.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "topic.h"

/* Stores a position or a deletion, when there is a store. */
static void store_durable(vg_conn *c, vg_block_kind kind, const conn_sub *s, uint64_t acked)
{
    vg_store *store = c->srv->store;
    if (store != NULL)
        (void)vg_store_durable(store, kind, s->topic, (uint16_t)s->len, s->durable,
                               (uint16_t)s->durable_len, acked); /* a failure is logged there */
}

/* The previous holder of a durable c just took: it must stop reading it. */
static void tell_taken(vg_conn *prev)
{
    atomic_store(&prev->durable_check, true);
    vg_outbox_wake(prev->outbox);
    vg_conn_release(prev);
}

vg_status vg_durable_attach(vg_conn *c, const vg_frame *f, conn_sub *s, uint64_t *next)
{
    vg_server *srv = c->srv;
    uint64_t acked;
    bool existed;
    void *prev;
    if (vg_durables_claim(srv->durables, s->durable, s->durable_len, s->topic, s->len, c,
                          vg_conn_retain, &acked, &existed, &prev) != VG_OK)
        return VG_ERR_NOMEM;
    if (prev == c)
        vg_conn_release(c); /* claimed twice by one connection: one reference is enough */
    else if (prev != NULL)
        tell_taken(prev);
    vg_frame g = *f;
    if (existed) {
        vg_tlog *t = vg_logs_get(srv->logs, s->topic, s->len);
        if (t == NULL)
            return VG_ERR_NOMEM;
        /* After the last acknowledged message; one past the end (a log
         * that lost its tail) starts with what comes next. */
        g.start = acked + 1 <= vg_tlog_ready_seq(t) ? VG_SUB_SEQ : VG_SUB_NEW;
        g.epoch = 0;
        g.position = acked + 1;
    }
    g.form = 2;
    vg_status st = vg_reader_attach(c, &g, s->topic, s->len, next);
    if (st == VG_OK && !existed) { /* a new durable: it has processed nothing before next */
        vg_durables_ack(srv->durables, s->durable, s->durable_len, s->topic, s->len, c,
                        *next - 1);
        store_durable(c, VG_BLOCK_ACK, s, *next - 1);
    }
    if (st != VG_OK && vg_durables_leave(srv->durables, s->durable, s->durable_len, s->topic,
                                         s->len, c))
        vg_conn_release(c);
    return st;
}

/* The name under which a durable pattern keeps its positions, "name
 * pattern" (durable.h), into buf; its length, or 0 if it does not fit. */
static size_t positions_name(const conn_sub *s, char *buf, size_t cap)
{
    size_t n = (size_t)s->durable_len + 1 + s->len;
    if (n > cap || n > UINT16_MAX)
        return 0;
    memcpy(buf, s->durable, s->durable_len);
    buf[s->durable_len] = ' ';
    memcpy(buf + s->durable_len + 1, s->topic, s->len);
    return n;
}

/* Stores a durable pattern's position in topic (or its deletion). */
static void store_position(vg_conn *c, vg_block_kind kind, const char *pname, size_t plen,
                           const char *topic, size_t tlen, uint64_t acked)
{
    vg_store *store = c->srv->store;
    if (store != NULL)
        (void)vg_store_durable(store, kind, topic, (uint16_t)tlen, pname, (uint16_t)plen, acked);
}

/* The buffer for a "name pattern": a name is at most 64 bytes. */
#define PNAME_MAX (64 + 1 + VG_TOPIC_MAX_LEN)

vg_status vg_durable_attach_pattern(vg_conn *c, const vg_frame *f, conn_sub *s)
{
    vg_server *srv = c->srv;
    char pname[PNAME_MAX];
    size_t plen = positions_name(s, pname, sizeof pname);
    uint64_t unused;
    bool existed;
    void *prev;
    if (plen == 0)
        return VG_ERR_NOMEM; /* cannot happen: names and topics are bounded */
    if (vg_durables_claim(srv->durables, s->durable, s->durable_len, s->topic, s->len, c,
                          vg_conn_retain, &unused, &existed, &prev) != VG_OK)
        return VG_ERR_NOMEM;
    if (prev == c)
        vg_conn_release(c);
    else if (prev != NULL)
        tell_taken(prev);
    if (!existed) /* stored, so that after a restart it is not new: its topics that
                     appear meanwhile are then read from their start */
        store_durable(c, VG_BLOCK_ACK, s, 0);
    vg_reader_drop_pos(c, s->sid); /* the broker keeps a durable's positions itself */
    vg_tlog **all = NULL;
    size_t n = 0;
    vg_status st = vg_logs_list(srv->logs, 0, &all, &n);
    for (size_t i = 0; i < n && st == VG_OK; i++) {
        uint32_t len;
        const char *topic = vg_tlog_topic(all[i], &len);
        if (!vg_subject_matches(s->topic, s->len, topic, len) || vg_reader_reads(c, topic, len))
            continue;
        uint64_t acked, next;
        vg_tstart start = VG_TSTART_SEQ;
        uint64_t value = 1; /* a topic that appeared since: all of it */
        if (vg_durables_position(srv->durables, pname, plen, topic, len, &acked))
            value = acked + 1;
        else if (!existed) { /* a new durable starts where the SUB asks, everywhere */
            start = f->form >= 2 ? vg_tstart_of(f->start) : VG_TSTART_NEW;
            value = f->form >= 2 ? f->position : 0;
            if (start == VG_TSTART_SEQ) /* no one position fits every topic */
                start = VG_TSTART_FIRST;
        }
        st = vg_reader_attach_log(c, s->sid, all[i], start, value, &next);
        if (st == VG_OK && !existed) { /* it has processed nothing before next */
            vg_durables_set(srv->durables, pname, plen, topic, len, next - 1, &st);
            store_position(c, VG_BLOCK_ACK, pname, plen, topic, len, next - 1);
        }
    }
    free(all);
    if (st != VG_OK && vg_durables_leave(srv->durables, s->durable, s->durable_len, s->topic,
                                         s->len, c))
        vg_conn_release(c);
    return st;
}

/* An ACK naming its topic, for a durable pattern s. */
static void pattern_ack(vg_conn *c, const conn_sub *s, const vg_frame *f)
{
    vg_durables *d = c->srv->durables;
    char pname[PNAME_MAX];
    size_t plen = positions_name(s, pname, sizeof pname);
    vg_status st;
    if (plen == 0 || !vg_subject_matches(s->topic, s->len, f->topic, f->topic_len) ||
        !vg_durables_held(d, s->durable, s->durable_len, s->topic, s->len, c))
        return; /* not a topic of it, or taken over: not its to move */
    if (vg_durables_set(d, pname, plen, f->topic, f->topic_len, f->seq, &st))
        store_position(c, VG_BLOCK_ACK, pname, plen, f->topic, f->topic_len, f->seq);
    else if (st != VG_OK)
        vg_log(VG_LOG_WARN, "durable_failed", "client=%llu error=\"out of memory\"",
               (unsigned long long)c->id);
}

void vg_durable_on_ack(vg_conn *c, const vg_frame *f)
{
    conn_sub *s = vg_subindex_find(c->subs, f->sid);
    if (s == NULL || s->durable == NULL || s->queue != NULL)
        return; /* an ACK for a sid gone, or not durable: nothing to do (docs/protocol.md) */
    if (s->pattern) {
        if (f->form == 3)
            pattern_ack(c, s, f);
        return;
    }
    if (vg_durables_ack(c->srv->durables, s->durable, s->durable_len, s->topic, s->len, c,
                        f->seq))
        store_durable(c, VG_BLOCK_ACK, s, f->seq);
}

void vg_durable_detach(vg_conn *c, const conn_sub *s, bool forget)
{
    vg_durables *d = c->srv->durables;
    if (forget && s->pattern) { /* its positions go first, then its holder entry */
        char pname[PNAME_MAX], topic[VG_TOPIC_MAX_LEN];
        size_t plen = positions_name(s, pname, sizeof pname), tlen;
        while (plen > 0 && vg_durables_forget_any(d, pname, plen, topic, sizeof topic, &tlen))
            store_position(c, VG_BLOCK_FORGET, pname, plen, topic, tlen, 0);
    }
    if (forget) {
        void *prev;
        if (vg_durables_forget(d, s->durable, s->durable_len, s->topic, s->len, &prev)) {
            store_durable(c, VG_BLOCK_FORGET, s, 0);
            char n[80];
            vg_log(VG_LOG_INFO, "durable_deleted", "client=%llu durable=%s",
                   (unsigned long long)c->id, vg_log_quote(n, sizeof n, s->durable, s->durable_len));
        }
        if (prev != NULL)
            vg_conn_release(prev); /* c itself, unless another took it meanwhile */
        return;
    }
    if (vg_durables_leave(d, s->durable, s->durable_len, s->topic, s->len, c))
        vg_conn_release(c);
}

void vg_durable_check(vg_conn *c)
{
    if (!atomic_exchange(&c->durable_check, false))
        return;
    for (size_t i = 0; i < vg_subindex_count(c->subs);) {
        conn_sub *s = vg_subindex_at(c->subs, i);
        if (s->durable == NULL || vg_durables_held(c->srv->durables, s->durable, s->durable_len,
                                                   s->topic, s->len, c)) {
            i++;
            continue;
        }
        char n[80];
        vg_log(VG_LOG_INFO, "durable_taken", "client=%llu durable=%s sid=%llu",
               (unsigned long long)c->id, vg_log_quote(n, sizeof n, s->durable, s->durable_len),
               (unsigned long long)s->sid);
        vg_conn_send_err(c, VG_E_DURABLE_TAKEN, "another connection took this durable", s->sid);
        vg_conn_remove_sub(c, s->sid); /* its reference went with the takeover; the last
                                          subscription moved to i: looked at next */
    }
}

void vg_durable_leave_all(vg_conn *c)
{
    for (size_t i = 0; i < vg_subindex_count(c->subs); i++)
        if (vg_subindex_at(c->subs, i)->durable != NULL)
            vg_durable_detach(c, vg_subindex_at(c->subs, i), false);
}

static uint64_t next_of(void *ud, const char *topic, size_t len)
{
    vg_tlog *t = vg_logs_get(ud, topic, len);
    return t != NULL ? vg_tlog_ready_seq(t) : 0;
}

void vg_durable_publish_list(vg_conn *c)
{
    vg_buf json = {0}, frame = {0};
    if (vg_durables_json(c->srv->durables, &json, next_of, c->srv->logs) == VG_OK)
        (void)vg_conn_publish_system(c->srv, VG_SYS_DURABLES, json.data, json.len, &frame,
                                     &c->match);
    vg_buf_free(&json);
    vg_buf_free(&frame);
}
