/* One queue group: its members, what each has in flight, its position in
 * each topic's log, the redelivery queue, and the pump (qgroup.h has the
 * rules; docs/design.md, "Queue groups").
 *
 * Everything here is under the group's mutex but for the learn list, which
 * publishers fill under a leaf mutex of its own. The pump reads records
 * with the group's own cursors (a topic log's lock, a leaf, for each read)
 * and copies them, re-encoded with seq and sid, into members' inboxes
 * (ops.put, a leaf): a memcpy per message, no socket, no waiting. */
#include "qgroup_internal.h"

#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define READ_BYTES (256 * 1024) /* offered by one log read, about */
#define PERSIST_AT_ONCE 8

/* ---- ranges ---- */

static bool ranges_reserve(qranges *r, size_t more)
{
    if (r->n + more <= r->cap)
        return true;
    size_t cap = r->cap ? r->cap : 8;
    while (cap < r->n + more)
        cap *= 2;
    qrange *v = realloc(r->v, cap * sizeof *v);
    if (v == NULL)
        return false;
    r->v = v;
    r->cap = cap;
    return true;
}

/* Adds seq of topic, extending the last range when it continues it. Room
 * must have been reserved. */
static void ranges_add(qranges *r, uint32_t topic, uint64_t seq)
{
    if (r->n > 0) {
        qrange *l = &r->v[r->n - 1];
        if (l->topic == topic && l->to + 1 == seq) {
            l->to = seq;
            return;
        }
    }
    r->v[r->n++] = (qrange){topic, seq, seq, 0};
}

/* The member has processed its messages of topic up to and including
 * seq, in the order it received them: removes seq's and every earlier one
 * of topic, and returns how many. A seq not in flight (acknowledged
 * already, or never given) removes nothing. Later ones with lower numbers
 * (redeliveries from a member that left) stay: the member has not seen
 * them yet when it sends this. */
static uint64_t ranges_ack(qranges *r, uint32_t topic, uint64_t seq)
{
    size_t at = r->n;
    for (size_t i = r->n; i-- > 0;)
        if (r->v[i].topic == topic && r->v[i].from <= seq && seq <= r->v[i].to) {
            at = i;
            break;
        }
    if (at == r->n)
        return 0;
    uint64_t gone = 0;
    size_t w = 0;
    for (size_t i = 0; i < r->n; i++) {
        qrange x = r->v[i];
        if (i < at && x.topic == topic) {
            gone += x.to - x.from + 1;
            continue;
        }
        if (i == at) {
            gone += seq - x.from + 1;
            if (seq == x.to)
                continue;
            x.from = seq + 1; /* a range is handed out in order */
        }
        r->v[w++] = x;
    }
    r->n = w;
    return gone;
}

/* ---- topics ---- */

static qtopic *find_topic(vg_qgroup *g, const char *topic, size_t len, uint32_t *idx)
{
    for (size_t i = 0; i < g->nt; i++)
        if (g->t[i].len == len && memcmp(g->t[i].topic, topic, len) == 0) {
            *idx = (uint32_t)i;
            return &g->t[i];
        }
    return NULL;
}

/* Starts reading log: after a durable's stored position, else at first_seq
 * (learn) or as start says. Under mu. VG_ERR_ARG: SEQ past the end. */
static vg_status add_topic(vg_qgroup *g, vg_tlog *log, const vg_qgroup_start *start,
                           bool learn, uint64_t first_seq)
{
    if (g->nt == g->tcap) {
        size_t cap = g->tcap ? g->tcap * 2 : 2;
        qtopic *t = realloc(g->t, cap * sizeof *t);
        if (t == NULL)
            return VG_ERR_NOMEM;
        g->t = t;
        g->tcap = cap;
    }
    const vg_qgroup_ops *ops = &g->reg->ops;
    qtopic *t = &g->t[g->nt];
    *t = (qtopic){.log = log};
    t->topic = vg_tlog_topic(log, &t->len);
    uint64_t acked = 0;
    bool stored = g->name != NULL && ops->claim != NULL &&
                  ops->claim(ops->ud, g->name, g->name_len, t->topic, t->len, g, &acked);
    vg_tgap gap;
    if (stored || learn) {
        /* Read lazily from here: with a store the run a publisher just
         * appended may not be readable yet, and a stored position may be
         * past a log that lost its tail. */
        uint64_t ready = vg_tlog_ready_seq(log);
        t->next = stored ? (acked + 1 <= ready ? acked + 1 : ready) : first_seq;
    } else {
        if (vg_tlog_seek(log, &t->cur, start->start, start->value, start->now_ms,
                         &gap) != VG_OK)
            return VG_ERR_ARG;
        t->cur_ok = true;
        t->next = t->cur.seq;
    }
    t->stored = stored ? acked : 0;
    t->persisted = stored;
    if (g->name != NULL && !stored)
        g->dirty = true; /* a new durable has processed nothing before next: persist_pending */
    g->nt++;
    return VG_OK;
}

/* Takes the topics publishers found for a pattern group. Under mu. */
static void take_learned(vg_qgroup *g)
{
    pthread_mutex_lock(&g->lmu);
    qlearn *l = g->learn;
    size_t n = g->nlearn;
    g->learn = NULL;
    g->nlearn = g->learncap = 0;
    pthread_mutex_unlock(&g->lmu);
    for (size_t i = 0; i < n; i++) {
        uint32_t len, idx;
        const char *topic = vg_tlog_topic(l[i].log, &len);
        if (find_topic(g, topic, len, &idx) == NULL)
            (void)add_topic(g, l[i].log, &g->start, true, l[i].first_seq); /* NOMEM: lost */
    }
    free(l);
}

void vg_qgroup_learn(vg_qgroup *g, vg_tlog *t, uint64_t first_seq)
{
    pthread_mutex_lock(&g->lmu);
    for (size_t i = 0; i < g->nknown; i++)
        if (g->known[i] == t) {
            pthread_mutex_unlock(&g->lmu);
            return;
        }
    if (g->nknown == g->knowncap) {
        size_t cap = g->knowncap ? g->knowncap * 2 : 4;
        vg_tlog **k = realloc(g->known, cap * sizeof *k);
        if (k == NULL)
            goto out;
        g->known = k;
        g->knowncap = cap;
    }
    if (g->nlearn == g->learncap) {
        size_t cap = g->learncap ? g->learncap * 2 : 4;
        qlearn *l = realloc(g->learn, cap * sizeof *l);
        if (l == NULL)
            goto out;
        g->learn = l;
        g->learncap = cap;
    }
    g->known[g->nknown++] = t;
    g->learn[g->nlearn++] = (qlearn){t, first_seq};
out:
    pthread_mutex_unlock(&g->lmu);
}

/* ---- the pump ---- */

/* Retention took from..to of topic ti before the group read them: counted,
 * and kept for a GAP frame to the next member given a batch (merged with a
 * range of the topic it continues: retention drops whole chunks, oldest
 * first). Out of memory: counted only. */
static void note_lost(vg_qgroup *g, uint32_t ti, uint64_t from, uint64_t to)
{
    g->t[ti].lost += to - from + 1;
    for (size_t i = 0; i < g->gaps.n; i++) {
        qrange *r = &g->gaps.v[i];
        if (r->topic == ti && from <= r->to + 1 && to + 1 >= r->from) {
            r->from = from < r->from ? from : r->from;
            r->to = to > r->to ? to : r->to;
            return;
        }
    }
    if (ranges_reserve(&g->gaps, 1))
        g->gaps.v[g->gaps.n++] = (qrange){ti, from, to, 0};
}

/* Appends a GAP frame for sid per range in g->gaps to the batch; how many
 * (fewer when out of memory: the rest wait). */
static size_t encode_gaps(vg_qgroup *g, uint64_t sid)
{
    size_t k = 0;
    for (; k < g->gaps.n; k++) {
        const qrange *r = &g->gaps.v[k];
        const qtopic *t = &g->t[r->topic];
        if (vg_frame_put_gap(&g->enc, sid, t->topic, t->len, r->from, r->to, VG_GAP_RETENTION) !=
            VG_OK)
            break;
    }
    return k;
}

/* Encodes record body (len bytes) for sid into the batch. */
static bool encode(vg_qgroup *g, const uint8_t *body, uint32_t len, uint64_t sid, uint64_t *seq)
{
    vg_frame f;
    const char *why;
    if (vg_frame_parse(body, len, &f, &why) != VG_OK || !vg_frame_is_msg(f.type))
        return false; /* cannot be: the log holds MSG frames it encoded */
    size_t n = vg_frame_msg_qsize(f.topic_len, f.payload_len);
    if (vg_buf_reserve(&g->enc, n) != VG_OK)
        return false;
    vg_frame_write_msg_q(g->enc.data + g->enc.len, f.type, f.topic, f.topic_len, f.payload,
                         f.payload_len, f.seq, sid);
    g->enc.len += n;
    *seq = f.seq;
    return true;
}

/* Reads records of topic ti from cur below upto into the batch, at most
 * quota; returns how many. */
static uint32_t take_records(vg_qgroup *g, uint32_t ti, vg_tcursor *cur, uint64_t upto,
                             uint32_t quota, uint64_t sid)
{
    struct iovec iov[VG_TCURSOR_PINS];
    uint32_t n = 0;
    bool stop = false;
    while (n < quota && !stop && cur->seq < upto) {
        vg_tread rd;
        vg_tlog_read(cur, iov, VG_TCURSOR_PINS, READ_BYTES, &rd);
        if (rd.gap.from != 0) { /* retention dropped them before anyone got them */
            note_lost(g, ti, rd.gap.from, rd.gap.to);
            vg_tcursor_consume(cur, 0);
            continue;
        }
        if (rd.iovcnt == 0) {
            vg_tcursor_consume(cur, 0);
            break;
        }
        size_t used = 0;
        for (size_t i = 0; i < rd.iovcnt && !stop; i++) {
            const uint8_t *p = iov[i].iov_base;
            size_t off = 0;
            while (off + VG_FRAME_HEADER <= iov[i].iov_len) {
                uint32_t body = vg_be32(p + off);
                uint64_t seq;
                size_t before = g->enc.len;
                if (n == quota || !encode(g, p + off + VG_FRAME_HEADER, body, sid, &seq)) {
                    stop = true;
                    break;
                }
                if (seq >= upto) {
                    g->enc.len = before;
                    stop = true;
                    break;
                }
                ranges_add(&g->batch, ti, seq);
                n++;
                off += VG_FRAME_HEADER + body;
                used += VG_FRAME_HEADER + body;
            }
        }
        vg_tcursor_consume(cur, used);
    }
    return n;
}

/* Fills the batch for sid with up to quota messages: redeliveries first,
 * then new ones, topics in turn. Returns how many. */
static uint32_t fill(vg_qgroup *g, uint32_t quota, uint64_t sid)
{
    g->enc.len = 0;
    g->batch.n = 0;
    uint32_t n = 0;
    while (n < quota && g->redo.n > 0) {
        qrange *r = &g->redo.v[0];
        qtopic *t = &g->t[r->topic];
        vg_tcursor cur;
        vg_tgap gap;
        uint32_t got = 0;
        if (vg_tlog_seek(t->log, &cur, VG_TSTART_SEQ, r->from, 0, &gap) == VG_OK) {
            if (gap.from != 0)
                note_lost(g, r->topic, gap.from, gap.to < r->to ? gap.to : r->to);
            got = take_records(g, r->topic, &cur, r->to + 1, quota - n, sid);
            r->from = cur.seq;
            vg_tcursor_release(&cur);
        } else {
            r->from = r->to + 1; /* cannot be: it was handed out once */
        }
        if (r->from > r->to)
            memmove(g->redo.v, g->redo.v + 1, --g->redo.n * sizeof *g->redo.v);
        else if (got == 0)
            break; /* out of memory */
        n += got;
    }
    for (size_t k = 0; k < g->nt && n < quota; k++) {
        size_t ti = (g->rr_topic + k) % g->nt;
        qtopic *t = &g->t[ti];
        uint64_t ready = vg_tlog_ready_seq(t->log);
        if (t->next >= ready)
            continue;
        if (!t->cur_ok) {
            vg_tgap gap;
            if (vg_tlog_seek(t->log, &t->cur, VG_TSTART_SEQ, t->next, 0, &gap) != VG_OK)
                continue;
            t->cur_ok = true;
            if (gap.from != 0)
                note_lost(g, (uint32_t)ti, gap.from, gap.to);
        }
        uint32_t got = take_records(g, (uint32_t)ti, &t->cur, ready, quota - n, sid);
        t->next = t->cur.seq;
        if (got > 0) {
            n += got;
            g->rr_topic = ti + 1;
        }
    }
    return n;
}

/* The member with room and the fewest messages in flight (counting those
 * its ack wait took back since its last ACK), ties taken in turn (the
 * caller moves the turn on once it handed it something); NULL if none has
 * room. */
static qmember *choose(vg_qgroup *g, size_t *at)
{
    const vg_qgroups *r = g->reg;
    qmember *best = NULL;
    for (size_t k = 0; k < g->nm; k++) {
        size_t i = (g->rr_member + k) % g->nm;
        qmember *m = &g->m[i];
        if (m->dead || m->inflight >= r->cfg.max_inflight || !r->ops.room(m->member))
            continue;
        if (best == NULL || m->inflight + m->expired < best->inflight + best->expired) {
            best = m;
            *at = i;
        }
    }
    return best;
}

/* Hands out batches until no member has room or nothing is left, at most
 * pump_max messages (then asks for another round). Under mu. */
static void pump_locked(vg_qgroup *g)
{
    const vg_qgroups *r = g->reg;
    if (g->pattern)
        take_learned(g);
    uint32_t handed = 0;
    while (handed < r->cfg.pump_max) {
        size_t at;
        qmember *m = choose(g, &at);
        if (m == NULL)
            break;
        uint64_t room = r->cfg.max_inflight - m->inflight;
        uint32_t quota = room < r->cfg.batch ? (uint32_t)room : r->cfg.batch;
        if (!ranges_reserve(&m->fl, quota) || !ranges_reserve(&g->redo, quota))
            break; /* out of memory: the records wait in the log */
        uint32_t n = fill(g, quota, m->sid);
        size_t gaps = encode_gaps(g, m->sid); /* after the messages: a member's are sparse anyway */
        if (n == 0 && gaps == 0)
            break;
        g->rr_member = at + 1;
        if (r->ops.put(m->member, g->enc.data, g->enc.len, n) == VG_OK) {
            for (size_t i = 0; i < g->batch.n; i++)
                m->fl.v[m->fl.n++] = g->batch.v[i];
            m->inflight += n;
            if (gaps > 0) { /* told: gone from the list */
                g->gaps.n -= gaps;
                memmove(g->gaps.v, g->gaps.v + gaps, g->gaps.n * sizeof *g->gaps.v);
            }
            r->ops.wake(m->member); /* an eventfd write, at most one per round of its thread */
        } else { /* it is leaving: the batch goes first to another */
            memmove(g->redo.v + g->batch.n, g->redo.v, g->redo.n * sizeof *g->redo.v);
            memcpy(g->redo.v, g->batch.v, g->batch.n * sizeof *g->batch.v);
            g->redo.n += g->batch.n;
            m->dead = true;
        }
        handed += n;
    }
    if (handed >= r->cfg.pump_max)
        atomic_store(&g->again, true);
}

/* The lowest seq of topic ti nobody has acknowledged. Under mu. */
static uint64_t floor_of(vg_qgroup *g, uint32_t ti)
{
    uint64_t f = g->t[ti].next;
    for (size_t i = 0; i < g->redo.n; i++)
        if (g->redo.v[i].topic == ti && g->redo.v[i].from < f)
            f = g->redo.v[i].from;
    for (size_t k = 0; k < g->nm; k++)
        for (size_t i = 0; i < g->m[k].fl.n; i++)
            if (g->m[k].fl.v[i].topic == ti && g->m[k].fl.v[i].from < f)
                f = g->m[k].fl.v[i].from;
    return f;
}

/* Stores the durable positions that moved, with no lock held (a journal
 * write). A concurrent call may store an older one after a newer: the
 * durables table keeps the highest. */
static void persist_pending(vg_qgroup *g)
{
    const vg_qgroup_ops *ops = &g->reg->ops;
    if (g->name == NULL || ops->persist == NULL)
        return;
    for (;;) {
        struct {
            const char *topic;
            uint32_t len;
            uint64_t acked;
        } todo[PERSIST_AT_ONCE];
        size_t n = 0;
        pthread_mutex_lock(&g->mu);
        g->dirty = false;
        for (size_t i = 0; i < g->nt && n < PERSIST_AT_ONCE; i++) {
            uint64_t acked = floor_of(g, (uint32_t)i) - 1;
            if (acked > g->t[i].stored || !g->t[i].persisted) {
                g->t[i].stored = acked;
                g->t[i].persisted = true;
                todo[n].topic = g->t[i].topic;
                todo[n].len = g->t[i].len;
                todo[n++].acked = acked;
            }
        }
        pthread_mutex_unlock(&g->mu);
        for (size_t i = 0; i < n; i++)
            ops->persist(ops->ud, g->name, g->name_len, todo[i].topic, todo[i].len, g,
                         todo[i].acked);
        if (n < PERSIST_AT_ONCE)
            return;
    }
}

/* Pumps and lets go of mu; pumps again while others asked meanwhile. */
static void pump_unlock(vg_qgroup *g)
{
    for (;;) {
        atomic_store(&g->again, false);
        pump_locked(g);
        bool dirty = g->dirty;
        pthread_mutex_unlock(&g->mu);
        if (dirty)
            persist_pending(g);
        if (!atomic_load(&g->again) || pthread_mutex_trylock(&g->mu) != 0)
            return;
    }
}

void vg_qgroup_pump(vg_qgroup *g)
{
    atomic_store(&g->again, true);
    if (pthread_mutex_trylock(&g->mu) != 0)
        return; /* the holder pumps again before it lets go */
    pump_unlock(g);
}

/* ---- members ---- */

static qmember *find_member(vg_qgroup *g, void *member, uint64_t sid)
{
    for (size_t i = 0; i < g->nm; i++)
        if (g->m[i].member == member && g->m[i].sid == sid)
            return &g->m[i];
    return NULL;
}

vg_status vg_qgroup_add_member(vg_qgroup *g, void *member, uint64_t sid, vg_tlog *log,
                               const vg_qgroup_start *start, uint64_t *next)
{
    pthread_mutex_lock(&g->mu);
    vg_status st = VG_OK;
    if (g->nm == g->mcap) {
        size_t cap = g->mcap ? g->mcap * 2 : 4;
        qmember *m = realloc(g->m, cap * sizeof *m);
        if (m == NULL) {
            st = VG_ERR_NOMEM;
            goto out;
        }
        g->m = m;
        g->mcap = cap;
    }
    if (g->nt == 0 && !g->pattern) {
        st = log == NULL ? VG_ERR_NOMEM : add_topic(g, log, start, false, 0);
        if (st != VG_OK)
            goto out;
    }
    if (g->nm == 0 && g->pattern)
        g->start = *start;
    g->reg->ops.retain(member);
    g->m[g->nm++] = (qmember){.member = member, .sid = sid};
    *next = g->pattern ? 0 : g->t[0].next;
out:
    pthread_mutex_unlock(&g->mu);
    return st; /* the caller pumps, with the registry's lock released */
}

void vg_qgroup_leave(vg_qgroup *g, void *member, uint64_t sid, bool forget)
{
    pthread_mutex_lock(&g->mu);
    qmember *m = find_member(g, member, sid);
    size_t left = g->nm;
    if (m != NULL) {
        /* Its messages in flight go first, at once, to the others. */
        if (ranges_reserve(&g->redo, m->fl.n)) {
            memcpy(g->redo.v + g->redo.n, m->fl.v, m->fl.n * sizeof *m->fl.v);
            g->redo.n += m->fl.n;
            atomic_fetch_add_explicit(&g->reg->redelivered, m->inflight, memory_order_relaxed);
        } else {
            for (size_t i = 0; i < m->fl.n; i++) /* out of memory: lost, told if it can be */
                note_lost(g, m->fl.v[i].topic, m->fl.v[i].from, m->fl.v[i].to);
        }
        free(m->fl.v);
        *m = g->m[--g->nm];
        left = g->nm;
    }
    pump_unlock(g);
    if (m != NULL)
        g->reg->ops.release(member);
    if (left == 0)
        vg_qgroups_maybe_unlink(g->reg, g, forget);
    vg_qgroup_release(g);
}

bool vg_qgroup_ack(vg_qgroup *g, void *member, uint64_t sid, const char *topic, size_t topic_len,
                   uint64_t seq)
{
    pthread_mutex_lock(&g->mu);
    uint32_t ti;
    if (find_topic(g, topic, topic_len, &ti) == NULL) {
        pthread_mutex_unlock(&g->mu);
        return false;
    }
    qmember *m = find_member(g, member, sid);
    if (m != NULL) {
        uint64_t done = ranges_ack(&m->fl, ti, seq);
        m->inflight -= done;
        if (done > 0)
            m->expired = 0; /* it acknowledges again: it takes its share again */
        if (g->name != NULL && floor_of(g, ti) - 1 > g->t[ti].stored)
            g->dirty = true;
    }
    pump_unlock(g);
    return true;
}

int64_t vg_qgroup_expire(vg_qgroup *g, void *member, uint64_t sid, int64_t now_ms,
                         int64_t wait_ms)
{
    if (wait_ms <= 0)
        return INT64_MAX;
    pthread_mutex_lock(&g->mu);
    qmember *m = find_member(g, member, sid);
    if (m == NULL) {
        pthread_mutex_unlock(&g->mu);
        return INT64_MAX;
    }
    /* Ranges are in the order handed out and stamped on the first look,
     * so the stamps never decrease along the list: the expired ones are a
     * prefix, and the first one left says when to look again. */
    for (size_t i = m->fl.n; i-- > 0 && m->fl.v[i].at == 0;)
        m->fl.v[i].at = now_ms;
    size_t k = 0;
    while (k < m->fl.n && m->fl.v[k].at + wait_ms <= now_ms)
        k++;
    if (k > 0 && !ranges_reserve(&g->redo, k))
        k = 0; /* out of memory: they stay with it; the next look tries again */
    uint64_t back = 0;
    for (size_t i = 0; i < k; i++) {
        qrange x = m->fl.v[i];
        x.at = 0;
        g->redo.v[g->redo.n++] = x;
        back += x.to - x.from + 1;
    }
    m->inflight -= back;
    m->expired += back;
    if (k > 0) { /* (fl.v is NULL while nothing was ever handed to it) */
        atomic_fetch_add_explicit(&g->reg->redelivered, back, memory_order_relaxed);
        m->fl.n -= k;
        memmove(m->fl.v, m->fl.v + k, m->fl.n * sizeof *m->fl.v);
    }
    int64_t next = m->fl.n > 0 ? m->fl.v[0].at + wait_ms : INT64_MAX;
    if (k == 0) {
        pthread_mutex_unlock(&g->mu);
        return next;
    }
    pump_unlock(g); /* to another member first: this one now counts them as its load */
    return next;
}

/* ---- looking ---- */

bool vg_qgroup_topic(vg_qgroup *g, const char *topic, size_t len, vg_qgroup_topic_info *out)
{
    pthread_mutex_lock(&g->mu);
    uint32_t ti;
    bool found = find_topic(g, topic, len, &ti) != NULL;
    if (found) {
        *out = (vg_qgroup_topic_info){.next = g->t[ti].next, .floor = floor_of(g, ti)};
        for (size_t i = 0; i < g->redo.n; i++)
            if (g->redo.v[i].topic == ti)
                out->redo += g->redo.v[i].to - g->redo.v[i].from + 1;
        for (size_t k = 0; k < g->nm; k++)
            for (size_t i = 0; i < g->m[k].fl.n; i++)
                if (g->m[k].fl.v[i].topic == ti)
                    out->inflight += g->m[k].fl.v[i].to - g->m[k].fl.v[i].from + 1;
    }
    pthread_mutex_unlock(&g->mu);
    return found;
}

uint64_t vg_qgroup_inflight(vg_qgroup *g, void *member, uint64_t sid)
{
    pthread_mutex_lock(&g->mu);
    qmember *m = find_member(g, member, sid);
    uint64_t n = m != NULL ? m->inflight : 0;
    pthread_mutex_unlock(&g->mu);
    return n;
}

size_t vg_qgroup_members(vg_qgroup *g, uint64_t *inflight)
{
    pthread_mutex_lock(&g->mu);
    size_t n = g->nm;
    *inflight = 0;
    for (size_t i = 0; i < g->nm; i++)
        *inflight += g->m[i].inflight;
    pthread_mutex_unlock(&g->mu);
    return n;
}
