/* A connection's side of queue groups (qgroup.h): SUB with a queue name
 * joins a group, ACK naming a topic acknowledges to it, UNSUB and the end
 * of the connection leave it; and the inbox the groups' pumps put this
 * connection's deliveries in.
 *
 * The inbox is a stream of whole 5-element MSG frames that the
 * connection's own thread writes as one more stream of its sender's source
 * (reader.c), next to its cursors into the logs, so that its frames and
 * the records it writes from the logs never interleave inside a frame and
 * only this thread touches the socket. Pumps append under the inbox's
 * mutex, a leaf (a memcpy, no I/O), and kick the thread; the thread takes
 * everything appended in O(1) and writes it. An inbox holding more than
 * QIN_MAX bytes has no room: the pump gives its batches to others, and
 * the thread pumps its groups once it has written enough. */
#include "conn_internal.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "server.h"

#define QIN_MAX (1u << 20)      /* bytes in an inbox that has no room left */
#define QIN_SHRINK (4u << 20)   /* an emptied inbox above this gives its memory back */

void vg_queue_init(vg_conn *c)
{
    pthread_mutex_init(&c->qmu, NULL);
    atomic_init(&c->qbytes, 0);
    atomic_init(&c->qwant, false);
    atomic_init(&c->qstamp, false);
    c->qexpire_at = INT64_MAX;
}

void vg_queue_free(vg_conn *c)
{
    vg_buf_free(&c->qpending);
    vg_buf_free(&c->qout);
    free(c->qscratch);
    pthread_mutex_destroy(&c->qmu);
}

/* ---- the inbox, producers' side (the registry's ops) ---- */

static bool q_room(void *m)
{
    vg_conn *c = m;
    if (atomic_load(&c->qbytes) < QIN_MAX)
        return true;
    /* Either this second look sees the owner's writes, or the owner sees
     * qwant and pumps once it has written (vg_queue_taken). */
    atomic_store(&c->qwant, true);
    return atomic_load(&c->qbytes) < QIN_MAX;
}

static vg_status q_put(void *m, const uint8_t *frames, size_t len, uint32_t n)
{
    vg_conn *c = m;
    vg_status st = VG_OK;
    pthread_mutex_lock(&c->qmu);
    if (c->qclosed)
        st = VG_ERR_CLOSED;
    else if ((st = vg_buf_append(&c->qpending, frames, len)) == VG_OK)
        atomic_fetch_add(&c->qbytes, len);
    pthread_mutex_unlock(&c->qmu);
    if (st == VG_OK) {
        atomic_store(&c->qstamp, true);
        atomic_fetch_add_explicit(&c->srv->stats.msgs_out, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->mon.msgs_out, n, memory_order_relaxed);
    }
    return st;
}

static void q_wake(void *m) { vg_reader_kick(m); }
static void q_retain(void *m) { vg_conn_retain(m); }
static void q_release(void *m) { vg_conn_release(m); }

/* ---- durable groups' positions: the durables table and the store ---- */

static void no_retain(void *p) { (void)p; } /* a group outlives its claims */

static bool q_claim(void *ud, const char *name, size_t nl, const char *topic, size_t tl,
                    void *group, uint64_t *acked)
{
    vg_server *srv = ud;
    bool existed = false;
    void *prev;
    if (vg_durables_claim(srv->durables, name, nl, topic, tl, group, no_retain, acked, &existed,
                          &prev) != VG_OK)
        return false; /* out of memory: positioned as a new group, not stored */
    return existed;
}

static void q_persist(void *ud, const char *name, size_t nl, const char *topic, size_t tl,
                      void *group, uint64_t acked)
{
    vg_server *srv = ud;
    if ((vg_durables_ack(srv->durables, name, nl, topic, tl, group, acked) || acked == 0) &&
        srv->store != NULL)
        (void)vg_store_durable(srv->store, VG_BLOCK_ACK, topic, (uint16_t)tl, name, (uint16_t)nl,
                               acked); /* a failure is logged there */
}

static void q_unclaim(void *ud, const char *name, size_t nl, const char *topic, size_t tl,
                      void *group, bool forget)
{
    vg_server *srv = ud;
    void *prev;
    if (!forget) {
        (void)vg_durables_leave(srv->durables, name, nl, topic, tl, group);
        return;
    }
    if (vg_durables_forget(srv->durables, name, nl, topic, tl, &prev) && srv->store != NULL)
        (void)vg_store_durable(srv->store, VG_BLOCK_FORGET, topic, (uint16_t)tl, name,
                               (uint16_t)nl, 0);
}

void vg_conn_queue_ops(vg_server *srv, vg_qgroup_ops *ops)
{
    *ops = (vg_qgroup_ops){
        .room = q_room, .put = q_put, .wake = q_wake, .retain = q_retain, .release = q_release,
        .claim = q_claim, .persist = q_persist, .unclaim = q_unclaim, .ud = srv,
    };
}

/* ---- the inbox, the owner's side (reader.c's source) ---- */

bool vg_queue_mid_frame(const vg_conn *c)
{
    return c->qoff > c->qframe_start && c->qoff < c->qout.len;
}

size_t vg_queue_offer(vg_conn *c, struct iovec *iov, size_t max, size_t *partial)
{
    *partial = 0;
    if (max == 0)
        return 0;
    if (c->qoff >= c->qout.len) {
        c->qout.len = c->qoff = c->qframe_start = c->qframe_end = 0;
        if (c->qout.cap > QIN_SHRINK)
            vg_buf_free(&c->qout);
        if (atomic_load_explicit(&c->qbytes, memory_order_acquire) == 0)
            return 0;
        pthread_mutex_lock(&c->qmu);
        vg_buf t = c->qout;
        c->qout = c->qpending;
        c->qpending = t;
        pthread_mutex_unlock(&c->qmu);
        if (c->qout.len == 0)
            return 0;
        c->qframe_end = VG_FRAME_HEADER + vg_be32(c->qout.data);
    }
    iov[0] = (struct iovec){c->qout.data + c->qoff, c->qout.len - c->qoff};
    if (vg_queue_mid_frame(c))
        *partial = c->qframe_end - c->qoff;
    return 1;
}

void vg_queue_taken(vg_conn *c, size_t n)
{
    if (n == 0)
        return;
    c->qoff += n;
    while (c->qoff >= c->qframe_end && c->qframe_end < c->qout.len) {
        c->qframe_start = c->qframe_end;
        c->qframe_end += VG_FRAME_HEADER + vg_be32(c->qout.data + c->qframe_start);
    }
    size_t left = atomic_fetch_sub(&c->qbytes, n) - n;
    if (left < QIN_MAX / 2 && atomic_load(&c->qwant) && atomic_exchange(&c->qwant, false))
        c->qpump_due = true; /* on_tick pumps: not inside the sender's flush */
}

/* ---- subscriptions ---- */

vg_status vg_queue_attach(vg_conn *c, const vg_frame *f, conn_sub *s, uint64_t *next)
{
    vg_qgroup_start st = {vg_tstart_of(f->start), f->position, vg_now_ms()};
    if (st.start == VG_TSTART_SEQ && f->epoch != 0 && f->epoch != vg_logs_epoch(c->srv->logs))
        st = (vg_qgroup_start){VG_TSTART_FIRST, 0, st.now_ms}; /* that log is gone */
    vg_qgroup *g = NULL;
    vg_status r = vg_qgroup_join(c->srv->qgroups, f->queue, f->queue_len, s->topic, s->len,
                                 f->durable, f->durable != NULL ? f->durable_len : 0, c, f->sid,
                                 &st, &g, next);
    s->group = g;
    if (r == VG_OK && vg_log_enabled(VG_LOG_DEBUG)) {
        char q[80], t[80];
        vg_log(VG_LOG_DEBUG, "queue_joined", "client=%llu sid=%llu queue=%s subject=%s next=%llu",
               (unsigned long long)c->id, (unsigned long long)f->sid,
               vg_log_quote(q, sizeof q, f->queue, f->queue_len),
               vg_log_quote(t, sizeof t, s->topic, s->len), (unsigned long long)*next);
    }
    return r;
}

bool vg_queue_on_ack(vg_conn *c, const vg_frame *f)
{
    conn_sub *s = vg_subindex_find(c->subs, f->sid);
    if (s == NULL || s->queue == NULL)
        return false;
    if (s->group == NULL)
        return true; /* it left */
    /* A 3-element ACK on a literal subject names its one topic. */
    if (f->form >= 3)
        (void)vg_qgroup_ack(s->group, c, s->sid, f->topic, f->topic_len, f->seq);
    else if (!s->pattern)
        (void)vg_qgroup_ack(s->group, c, s->sid, s->topic, s->len, f->seq);
    return true;
}

void vg_queue_detach(vg_conn *c, conn_sub *s, bool forget)
{
    if (s->group == NULL)
        return;
    vg_qgroup_leave(s->group, c, s->sid, forget);
    s->group = NULL;
}

void vg_queue_close(vg_conn *c)
{
    pthread_mutex_lock(&c->qmu);
    c->qclosed = true;
    pthread_mutex_unlock(&c->qmu);
}

void vg_queue_leave_all(vg_conn *c)
{
    for (size_t i = 0; i < vg_subindex_count(c->subs); i++)
        vg_queue_detach(c, vg_subindex_at(c->subs, i), false);
}

int64_t vg_queue_tick(vg_conn *c, int64_t now)
{
    if (c->qpump_due) {
        c->qpump_due = false;
        for (size_t i = 0; i < vg_subindex_count(c->subs); i++) {
            conn_sub *s = vg_subindex_at(c->subs, i);
            if (s->group != NULL)
                vg_qgroup_pump(s->group);
        }
    }
    /* The wake-up that writes a batch is the one that stamps it: the
     * flag is set before the kick that wakes this thread. */
    bool stamp = atomic_exchange(&c->qstamp, false);
    if (!stamp && now < c->qexpire_at)
        return c->qexpire_at;
    int64_t wait = atomic_load_explicit(&c->srv->live.ack_wait_ms, memory_order_relaxed);
    c->qexpire_at = INT64_MAX;
    for (size_t i = 0; i < vg_subindex_count(c->subs); i++) {
        conn_sub *s = vg_subindex_at(c->subs, i);
        if (s->group == NULL)
            continue;
        int64_t at = vg_qgroup_expire(s->group, c, s->sid, now, wait);
        c->qexpire_at = at < c->qexpire_at ? at : c->qexpire_at;
    }
    return c->qexpire_at;
}

/* ---- publishers and the commit thread ---- */

void vg_queue_route(vg_server *srv, const char *topic, uint32_t len, vg_tlog *log,
                    uint64_t first_seq, bool pump, vg_qgroup ***scratch, size_t *cap)
{
    if (!vg_qgroups_any(srv->qgroups) || log == NULL)
        return;
    size_t n = 0;
    if (vg_qgroups_match(srv->qgroups, topic, len, log, first_seq, scratch, cap, &n) != VG_OK)
        return; /* out of memory: an ACK or the next run pumps them */
    for (size_t i = 0; i < n; i++) {
        if (pump)
            vg_qgroup_pump((*scratch)[i]);
        vg_qgroup_release((*scratch)[i]);
    }
}

void vg_conn_route_queues(vg_server *srv, const char *topic, uint32_t len, vg_tlog *t,
                          vg_qgroup ***scratch, size_t *cap)
{
    vg_queue_route(srv, topic, len, t, 0, true, scratch, cap);
}
