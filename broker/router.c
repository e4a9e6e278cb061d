/* The message router: from a publisher's read buffer to the topic log and
 * the subscribers.
 *
 * Consecutive MSG frames with the same topic in one read form a run,
 * handled at once: appended to the topic's log (each message gets its
 * sequence number there; a version-2 publisher's resent messages are
 * dropped as duplicates first, under the dedupe lock), then the topic's
 * subscribers are looked up once. A version-2 subscriber is only kicked:
 * its own thread reads the log (reader.c). A version-1 subscriber gets the
 * run's frames exactly as the publisher encoded them, copied into its
 * outbox with one memcpy. Subscribers' threads write their sockets; this
 * thread never touches them. */
#include "conn_internal.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "server.h"
#include "sublist.h"

#define RUN_MSGS_MIN 64

bool vg_router_extends(const vg_conn *c, const vg_frame *f)
{
    const conn_run *r = &c->run;
    return r->frames > 0 && f->raw == r->start + r->len && f->topic_len == r->topic_len &&
           memcmp(f->topic, r->topic, f->topic_len) == 0;
}

/* Payload bytes of the first n MSG frames in bytes, which were checked when
 * they arrived. Only needed when a delivery dropped some. */
static uint64_t frames_payload(const uint8_t *bytes, uint32_t n)
{
    uint64_t payload = 0;
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = vg_be32(bytes + off);
        vg_frame f;
        const char *why;
        if (vg_frame_parse(bytes + off + VG_FRAME_HEADER, len, &f, &why) == VG_OK)
            payload += f.payload_len;
        off += VG_FRAME_HEADER + len;
    }
    return payload;
}

/* A delivery to sub dropped messages: the first drop of an episode is
 * logged, the connection's thread logs its end (conn.c). */
static void note_drops(vg_server *srv, vg_conn *sub, int64_t now_ms)
{
    atomic_store_explicit(&sub->last_drop_ms, now_ms, memory_order_relaxed);
    if (!atomic_exchange(&sub->dropping, true)) {
        vg_log(VG_LOG_WARN, "slow_consumer", "state=dropping client=%llu addr=%s max_outbox=%zu",
               (unsigned long long)sub->id, sub->addr, srv->cfg.max_outbox);
        vg_outbox_wake(sub->outbox); /* its thread schedules the end of the episode */
    }
}

/* Whether appended records wait for their sync (store.h): then the
 * store's commit thread, not the publisher, kicks the readers and pumps
 * the queue groups. */
static bool held(const vg_server *srv)
{
    return srv->store != NULL && vg_store_holds(srv->store);
}

/* Hands a run of whole MSG frames on topic, just appended to its log from
 * first_seq, to every subscriber: version 2 reads it from the log
 * (vg_reader_deliver), version 1 gets the bytes. from, if not NULL, is the
 * publishing connection: its own outbox is never waited on (only its
 * thread drains it); stall_ms bounds the wait for any other. The match
 * comes from the calling thread's cache (*cache, made on first use).
 * Returns whether it lists queue groups (the caller routes to them). */
/* Notes that from's read reached version-2 subscriber sub with a run of
 * log from first; false when out of memory (the caller delivers now). */
static bool defer(vg_conn *from, vg_conn *sub, vg_tlog *log, uint64_t first)
{
    uint64_t h = (uint64_t)(uintptr_t)sub * 0x9e3779b97f4a7c15ull;
    if (from->defer_slots > 0) {
        size_t mask = from->defer_slots - 1;
        for (size_t i = (size_t)(h >> 40) & mask; from->defer_slot[i] != 0; i = (i + 1) & mask)
            if (from->defer[from->defer_slot[i] - 1].sub == sub) {
                from->defer[from->defer_slot[i] - 1].many = true;
                return true;
            }
    }
    if (from->ndefer == from->defer_cap) {
        size_t cap = from->defer_cap ? from->defer_cap * 2 : 16;
        conn_defer *d = realloc(from->defer, cap * sizeof *d);
        uint32_t *slots = calloc(cap * 2, sizeof *slots);
        if (d == NULL || slots == NULL) {
            if (d != NULL)
                from->defer = d;
            free(slots);
            return false;
        }
        from->defer = d;
        from->defer_cap = cap;
        free(from->defer_slot);
        from->defer_slot = slots;
        from->defer_slots = cap * 2;
        for (size_t k = 0; k < from->ndefer; k++) { /* rehash what is there */
            uint64_t hk = (uint64_t)(uintptr_t)from->defer[k].sub * 0x9e3779b97f4a7c15ull;
            size_t i = (size_t)(hk >> 40) & (from->defer_slots - 1);
            while (from->defer_slot[i] != 0)
                i = (i + 1) & (from->defer_slots - 1);
            from->defer_slot[i] = (uint32_t)(k + 1);
        }
    }
    size_t mask = from->defer_slots - 1, i = (size_t)(h >> 40) & mask;
    while (from->defer_slot[i] != 0)
        i = (i + 1) & mask;
    vg_conn_retain(sub); /* the match cache's entry may be refilled before the read ends */
    from->defer[from->ndefer] = (conn_defer){sub, log, first, false};
    from->defer_slot[i] = (uint32_t)(++from->ndefer);
    return true;
}

void vg_router_read_end(vg_conn *c)
{
    vg_router_flush(c);
    for (size_t k = 0; k < c->ndefer; k++) {
        conn_defer *d = &c->defer[k];
        if (d->many) {
            vg_reader_kick(d->sub);
        } else {
            uint32_t len;
            const char *topic = vg_tlog_topic(d->log, &len);
            vg_reader_deliver(d->sub, topic, len, d->first);
        }
        vg_conn_release(d->sub);
    }
    if (c->ndefer > 0)
        memset(c->defer_slot, 0, c->defer_slots * sizeof *c->defer_slot);
    c->ndefer = 0;
}

static bool fan_out(vg_server *srv, vg_conn *from, vg_tlog *log, const char *topic,
                    uint32_t topic_len, uint64_t first_seq, const uint8_t *bytes, size_t len,
                    uint32_t frames, uint64_t payload, int stall_ms, vg_sublist_cache **cache)
{
    const vg_sublist_result *m;
    if (*cache == NULL)
        *cache = vg_sublist_cache_create(srv->subs);
    if (*cache == NULL || vg_sublist_match(*cache, topic, topic_len, &m) != VG_OK) {
        vg_log(VG_LOG_WARN, "deliver_failed", "client=%llu error=\"out of memory\"",
               from ? (unsigned long long)from->id : 0ull);
        atomic_fetch_add_explicit(&srv->stats.dropped, frames, memory_order_relaxed);
        return false;
    }
    int64_t now_ns = vg_now_ns();
    bool is_held = held(srv);
    uint64_t out = 0, out_bytes = 0, lost = 0;
    for (size_t i = 0; i < m->n; i++) {
        vg_conn *sub = m->members[i];
        if (sub->version >= 2) { /* fixed before it could subscribe */
            /* else the store's commit thread kicks it once synced */
            if (!is_held && (from == NULL || !defer(from, sub, log, first_seq)))
                vg_reader_deliver(sub, topic, topic_len, first_seq);
            continue;
        }
        uint32_t dropped;
        vg_status st = vg_outbox_put_frames(sub->outbox, bytes, len, frames,
                                            sub == from ? 0 : stall_ms, now_ns, &dropped);
        if (st != VG_ERR_CLOSED) { /* closed: the subscriber is leaving; not a drop */
            uint64_t sub_bytes = dropped == 0 ? payload : frames_payload(bytes, frames - dropped);
            out += frames - dropped;
            out_bytes += sub_bytes;
            lost += dropped;
            atomic_fetch_add_explicit(&sub->mon.msgs_out, frames - dropped, memory_order_relaxed);
            atomic_fetch_add_explicit(&sub->mon.bytes_out, sub_bytes, memory_order_relaxed);
            if (dropped > 0)
                note_drops(srv, sub, now_ns / 1000000);
        }
    }
    vg_server_stats *st = &srv->stats;
    atomic_fetch_add_explicit(&st->msgs_out, out, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes_out, out_bytes, memory_order_relaxed);
    if (lost > 0)
        atomic_fetch_add_explicit(&st->dropped, lost, memory_order_relaxed);
    return m->ngroups > 0;
}

/* The log of topic, from the connection's cache (logs live as long as the
 * store): no lock when it is there. */
static vg_tlog *run_log(vg_conn *c, const char *topic, uint32_t len)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)topic[i]) * 16777619u;
    vg_tlog **slot = &c->run_logs[(h ^ h >> 15) & (VG_RUN_LOGS - 1)];
    if (*slot != NULL) {
        uint32_t tlen;
        const char *t = vg_tlog_topic(*slot, &tlen);
        if (tlen == len && memcmp(t, topic, len) == 0)
            return *slot;
    }
    vg_tlog *t = vg_logs_get(c->srv->logs, topic, len);
    if (t != NULL)
        *slot = t;
    return t;
}

/* The bytes from frame `from` of the run for n frames, and their payload. */
static const uint8_t *run_slice(const conn_run *r, uint32_t from, uint32_t n, size_t *len,
                                uint64_t *payload)
{
    if (from == 0 && n == r->frames) { /* the usual case: no walk */
        *len = r->len;
        *payload = r->payload;
        return r->start;
    }
    const uint8_t *p = r->start;
    for (uint32_t i = 0; i < from; i++)
        p += VG_FRAME_HEADER + vg_be32(p);
    const uint8_t *q = p;
    *payload = 0;
    for (uint32_t i = from; i < from + n; i++) {
        q += VG_FRAME_HEADER + vg_be32(q);
        *payload += r->msgs[i].payload_len;
    }
    *len = (size_t)(q - p);
    return p;
}

/* Writes n frames of the run from frame `from` to the store, then appends
 * them to the log (which holds them until synced: store.h). Under the
 * dedupe lock. VG_ERR_IO: the store could not write them, none went in. */
static vg_status append_stored(vg_conn *c, const conn_run *r, vg_tlog *log, uint32_t from,
                               uint32_t n, int64_t now, uint64_t *first_seq, size_t *appended)
{
    vg_store *store = c->srv->store;
    size_t len;
    uint64_t payload;
    const uint8_t *bytes = run_slice(r, from, n, &len, &payload);
    uint64_t pub_first = c->pub_next + from; /* the publisher's numbers, when it has them */
    *appended = 0;
    vg_store_begin(store);
    uint64_t seq = vg_tlog_next_seq(log); /* appends to it are serialised by the dedupe lock */
    vg_status st = vg_store_write(store, r->topic, (uint16_t)r->topic_len, seq, n, bytes, len,
                                  c->publisher, c->publisher ? pub_first + n - 1 : 0);
    if (st == VG_OK) {
        st = vg_tlog_append(log, r->msgs + from, n, now, first_seq, appended);
        if (*appended < n) {
            /* Out of memory for part of it: store only what the log took, or
             * the numbers of the rest would be used twice. */
            vg_store_unwrite(store);
            if (*appended > 0) {
                bytes = run_slice(r, from, (uint32_t)*appended, &len, &payload);
                if (vg_store_write(store, r->topic, (uint16_t)r->topic_len, seq,
                                   (uint32_t)*appended, bytes, len, c->publisher,
                                   c->publisher ? pub_first + *appended - 1 : 0) != VG_OK)
                    st = VG_ERR_IO; /* held in memory, unstored: released by a later run */
            }
        }
    }
    vg_store_end(store, *appended > 0 ? log : NULL, seq + *appended, &c->store_lsn);
    return st;
}

/* Appends the run to its log: *skip frames at its front were appended
 * before (a version-2 publisher resending), *done after them went in now,
 * from *first_seq on. With a store they are written to it first.
 * The dedupe lock covers check, append and record, so that two
 * connections of one publisher (an old one not yet found dead) cannot both
 * append a message; with a store it serialises every append, so that the
 * numbers a block is written with are the ones the log gives. */
static vg_status append_run(vg_conn *c, const conn_run *r, uint32_t *skip, uint32_t *done,
                            uint64_t *first_seq)
{
    vg_server *srv = c->srv;
    *skip = 0;
    *done = 0;
    vg_tlog *log = run_log(c, r->topic, r->topic_len);
    if (log == NULL)
        return VG_ERR_NOMEM;
    int64_t now = vg_now_ms();
    bool dedupe = c->publisher != 0;
    bool lock = dedupe || srv->store != NULL;
    if (lock)
        pthread_mutex_lock(&srv->dedupe_mu);
    if (dedupe)
        *skip = (uint32_t)vg_dedupe_skip(srv->dedupe, c->publisher, c->pub_next, r->frames, now);
    vg_status st = VG_OK;
    if (*skip < r->frames) {
        size_t appended = 0;
        if (srv->store != NULL)
            st = append_stored(c, r, log, *skip, r->frames - *skip, now, first_seq, &appended);
        else
            st = vg_tlog_append(log, r->msgs + *skip, r->frames - *skip, now, first_seq, &appended);
        *done = (uint32_t)appended;
    }
    if (dedupe && *done > 0)
        vg_dedupe_appended(srv->dedupe, c->publisher, c->pub_next + *skip + *done - 1, now);
    if (lock)
        pthread_mutex_unlock(&srv->dedupe_mu);
    return st;
}

void vg_router_flush(vg_conn *c)
{
    conn_run *r = &c->run;
    if (r->frames == 0)
        return;
    vg_server_stats *st = &c->srv->stats;
    atomic_fetch_add_explicit(&st->msgs_in, r->frames, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes_in, r->payload, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->mon.msgs_in, r->frames, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->mon.bytes_in, r->payload, memory_order_relaxed);
    uint32_t skip, done;
    uint64_t first_seq = 0;
    vg_status ast = append_run(c, r, &skip, &done, &first_seq);
    if (skip > 0)
        atomic_fetch_add_explicit(&st->duplicates, skip, memory_order_relaxed);
    if (ast == VG_ERR_IO && done == 0) {
        /* Logged by the store once per episode. Not confirmed: a version-2
         * publisher resends on its next connection (after its backoff),
         * which works again once the disk has room. */
        atomic_fetch_add_explicit(&st->dropped, r->frames - skip, memory_order_relaxed);
        vg_conn_send_err(c, c->version >= 2 ? VG_E_STORAGE : VG_E_INTERNAL,
                         "broker could not store the messages", 0); /* 17 is version 2's */
    } else if (ast != VG_OK) {
        uint32_t lost = r->frames - skip - done;
        atomic_fetch_add_explicit(&st->dropped, lost, memory_order_relaxed);
        vg_log(VG_LOG_WARN, "append_failed", "client=%llu lost=%u error=\"out of memory\"",
               (unsigned long long)c->id, lost);
        /* A version-2 publisher resends what was not appended on its next
         * connection: end this one, so it does. */
        if (c->version >= 2)
            vg_conn_send_err(c, VG_E_INTERNAL, "broker out of memory for the topic log", 0);
    }
    if (done > 0) {
        size_t len;
        uint64_t payload;
        const uint8_t *bytes = run_slice(r, skip, done, &len, &payload);
        vg_tlog *log = run_log(c, r->topic, r->topic_len); /* cached: appended to just now */
        if (fan_out(c->srv, c, log, r->topic, r->topic_len, first_seq, bytes, len, done, payload,
                    VG_DELIVER_STALL_MS, &c->match))
            vg_queue_route(c->srv, r->topic, r->topic_len, log, first_seq, !held(c->srv),
                           &c->qscratch, &c->qscratch_cap);
    }
    c->pub_next += r->frames;
    r->frames = 0;
}

/* Room for one more message of the run; false when out of memory. */
static bool run_room(conn_run *r)
{
    if (r->frames < r->msgs_cap)
        return true;
    size_t cap = r->msgs_cap ? r->msgs_cap * 2 : RUN_MSGS_MIN;
    vg_tlog_msg *m = realloc(r->msgs, cap * sizeof *m);
    if (m == NULL)
        return false;
    r->msgs = m;
    r->msgs_cap = cap;
    return true;
}

void vg_router_add(vg_conn *c, const vg_frame *f)
{
    conn_run *r = &c->run;
    if (!vg_router_extends(c, f) || !run_room(r)) {
        vg_router_flush(c);
        if (!run_room(r)) {
            atomic_fetch_add_explicit(&c->srv->stats.dropped, 1, memory_order_relaxed);
            vg_conn_send_err(c, VG_E_INTERNAL, "broker out of memory", 0);
            return;
        }
        r->topic = f->topic;
        r->topic_len = f->topic_len;
        r->start = f->raw;
        r->len = 0;
        r->payload = 0;
    }
    r->msgs[r->frames++] = (vg_tlog_msg){f->type, f->payload, f->payload_len};
    r->len += f->raw_len;
    r->payload += f->payload_len;
}

vg_status vg_conn_publish_system(vg_server *srv, const char *topic, const void *payload,
                                 size_t payload_len, vg_buf *frame, vg_sublist_cache **cache)
{
    frame->len = 0;
    size_t topic_len = strlen(topic);
    vg_status st = vg_frame_put_msg(frame, VG_FRAME_MSG_TYPE1, topic, topic_len, payload,
                                    payload_len);
    if (st != VG_OK)
        return st;
    vg_tlog *log = vg_logs_get(srv->logs, topic, topic_len);
    if (log == NULL)
        return VG_ERR_NOMEM;
    vg_tlog_msg m = {VG_FRAME_MSG_TYPE1, payload, payload_len};
    uint64_t seq = 0;
    size_t appended = 0;
    if (srv->store != NULL) { /* stored like any message: the log holds it until synced */
        pthread_mutex_lock(&srv->dedupe_mu);
        vg_store_begin(srv->store);
        uint64_t next = vg_tlog_next_seq(log), lsn;
        st = vg_store_write(srv->store, topic, (uint16_t)topic_len, next, 1, frame->data,
                            frame->len, 0, 0);
        if (st == VG_OK) {
            st = vg_tlog_append(log, &m, 1, vg_now_ms(), &seq, &appended);
            if (appended == 0)
                vg_store_unwrite(srv->store);
        }
        vg_store_end(srv->store, appended > 0 ? log : NULL, next + appended, &lsn);
        pthread_mutex_unlock(&srv->dedupe_mu);
    } else {
        st = vg_tlog_append(log, &m, 1, vg_now_ms(), &seq, &appended);
    }
    if (st != VG_OK)
        return st;
    /* Never a stall: this is the main thread, which also accepts and stops. */
    if (fan_out(srv, NULL, log, topic, (uint32_t)topic_len, seq, frame->data, frame->len, 1,
                payload_len, 0, cache)) {
        vg_qgroup **groups = NULL;
        size_t groups_cap = 0;
        vg_queue_route(srv, topic, (uint32_t)topic_len, log, seq, !held(srv), &groups,
                       &groups_cap);
        free(groups);
    }
    return VG_OK;
}
