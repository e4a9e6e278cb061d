/* Version-2 delivery: a connection reads its topics' logs itself.
 *
 * Publishers append each message once to its topic's log (router.c) and
 * only kick the subscribers' threads. Each subscriber's cursors are its
 * sender's source (sender.h): its own thread writes its socket straight
 * from the log's chunks with gathered writes, no copy, so a slow
 * subscriber falls behind in the log instead of holding a publisher up or
 * losing messages, and costs no memory of its own whatever its backlog.
 * When retention drops records before a cursor reached them, a GAP frame
 * with the exact range goes ahead of the next record (docs/protocol.md).
 * Control frames go between records: the source says when a write ended
 * inside one. */
#include "conn_internal.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "server.h"
#include "topic.h"

#define OFFER_MAX (1024 * 1024) /* bytes offered per write, about */
#define QUEUE_STREAM (SIZE_MAX - 1) /* c->offered: the queue groups' inbox */
#define READERS (SIZE_MAX - 2)      /* c->offered: readers, in c->offer */

static uint64_t topic_hash(const char *t, uint32_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)t[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* Rebuilds the index of readers by topic (open addressing, index + 1;
 * at least twice as many slots as readers); false when out of memory, the
 * old index kept only if it still fits (else lookups walk the array). */
static bool reindex(vg_conn *c, size_t min_slots)
{
    size_t n = c->rslots ? c->rslots : 16;
    while (n < min_slots)
        n *= 2;
    uint32_t *slots = n == c->rslots ? c->rslot : calloc(n, sizeof *slots);
    if (slots == NULL)
        return false;
    if (slots == c->rslot)
        memset(slots, 0, n * sizeof *slots);
    else {
        free(c->rslot);
        c->rslot = slots;
        c->rslots = n;
    }
    for (size_t k = 0; k < c->nreaders; k++) {
        size_t i = (size_t)topic_hash(c->readers[k].topic, c->readers[k].len) & (n - 1);
        while (slots[i] != 0)
            i = (i + 1) & (n - 1);
        slots[i] = (uint32_t)(k + 1);
    }
    return true;
}

/* The reader of topic, leaving ones (kept only to finish a record) aside:
 * by the index, so that a pattern reading thousands of topics attaches in
 * O(1) per topic. */
static conn_reader *find_reader(vg_conn *c, const char *topic, uint32_t len)
{
    if (c->rslots == 0 || c->rslots < 2 * c->nreaders) { /* none yet, or out of memory */
        for (size_t i = 0; i < c->nreaders; i++)
            if (!c->readers[i].leaving && c->readers[i].len == len &&
                memcmp(c->readers[i].topic, topic, len) == 0)
                return &c->readers[i];
        return NULL;
    }
    size_t mask = c->rslots - 1;
    for (size_t i = (size_t)topic_hash(topic, len) & mask; c->rslot[i] != 0; i = (i + 1) & mask) {
        conn_reader *r = &c->readers[c->rslot[i] - 1];
        if (!r->leaving && r->len == len && memcmp(r->topic, topic, len) == 0)
            return r;
    }
    return NULL;
}

bool vg_reader_reads(vg_conn *c, const char *topic, uint32_t len)
{
    return find_reader(c, topic, len) != NULL;
}

/* Whether r's socket stream is inside a frame: a GAP or a record begun. */
static bool mid_frame(const conn_reader *r)
{
    return (r->gap_off > 0 && r->gap_off < r->gap.len) || r->cur.into > 0;
}

vg_tstart vg_tstart_of(vg_sub_start s)
{
    switch (s) {
    case VG_SUB_FIRST: return VG_TSTART_FIRST;
    case VG_SUB_SEQ: return VG_TSTART_SEQ;
    case VG_SUB_AGO: return VG_TSTART_AGO;
    case VG_SUB_NEW: break;
    }
    return VG_TSTART_NEW;
}

/* Whether a control frame for a reader's pre-frames was encoded (st);
 * if not, the connection ends. */
static bool ctl_ok(vg_conn *c, vg_status st)
{
    if (st != VG_OK) {
        vg_link_end(c->link, VG_END_NOMEM, 0, "out of memory for a control frame");
        return false;
    }
    return true;
}

/* Room for one more reader (and for the readers' offer). */
static bool readers_room(vg_conn *c)
{
    if (c->offer == NULL && (c->offer = calloc(1, sizeof *c->offer)) == NULL)
        return false;
    if (c->nreaders < c->readers_cap)
        return true;
    size_t cap = c->readers_cap ? c->readers_cap * 2 : 4;
    conn_reader *rs = realloc(c->readers, cap * sizeof *rs);
    if (rs == NULL)
        return false;
    c->readers = rs;
    c->readers_cap = cap;
    return true;
}

/* A new reader of log for sid, positioned by start and value; with pos_sid
 * (when no OK tells the client where it starts), a GAP naming pos_sid for
 * what retention took from before its start when it starts at 1, after a
 * POS frame announcing it if announce (pos_sid is a pattern's): among the
 * connection's control frames if ctl (so before the SUB's OK), else ahead
 * of the reader's first record. *next gets its position. VG_OK, VG_ERR_ARG
 * (past the end) or VG_ERR_NOMEM. */
static vg_status add_reader(vg_conn *c, vg_tlog *log, uint64_t sid, vg_tstart start,
                            uint64_t value, uint64_t pos_sid, bool announce, bool ctl,
                            uint64_t *next)
{
    uint32_t len;
    const char *topic = vg_tlog_topic(log, &len);
    char *copy = malloc(len);
    if (copy == NULL || !readers_room(c)) {
        free(copy);
        return VG_ERR_NOMEM;
    }
    memcpy(copy, topic, len);
    conn_reader *r = &c->readers[c->nreaders];
    *r = (conn_reader){.topic = copy, .len = len, .sid = sid, .more = true};
    vg_tgap skipped; /* below the oldest retained: OK's next tells the client */
    if (vg_tlog_seek(log, &r->cur, start, value, vg_now_ms(), &skipped) != VG_OK) {
        free(copy);
        return VG_ERR_ARG;
    }
    c->nreaders++;
    if (c->rslots >= 2 * c->nreaders) { /* room: insert; else grow and rebuild */
        size_t mask = c->rslots - 1, i = (size_t)topic_hash(copy, len) & mask;
        while (c->rslot[i] != 0)
            i = (i + 1) & mask;
        c->rslot[i] = (uint32_t)c->nreaders;
    } else {
        (void)reindex(c, 2 * c->nreaders); /* failing, find_reader walks */
    }
    *next = r->cur.seq;
    if (pos_sid != 0) {
        /* A pattern's client learns the topic here: from the position
         * asked for, with what it cannot have said by a GAP. */
        uint64_t from = skipped.from != 0 ? skipped.from : r->cur.seq;
        uint64_t epoch = vg_logs_epoch(c->srv->logs);
        vg_buf *out = ctl ? vg_link_ctl(c->link) : &r->gap;
        if (announce && !ctl_ok(c, vg_frame_put_pos(out, pos_sid, topic, len, epoch, from)))
            return VG_ERR_NOMEM;
        if (skipped.from != 0 &&
            !ctl_ok(c, vg_frame_put_gap(out, pos_sid, topic, len, skipped.from, skipped.to,
                                        VG_GAP_RETENTION)))
            return VG_ERR_NOMEM;
    }
    return VG_OK;
}

vg_status vg_reader_attach(vg_conn *c, const vg_frame *f, const char *topic, uint32_t len,
                           uint64_t *next)
{
    conn_reader *r = find_reader(c, topic, len);
    if (r != NULL) {
        *next = r->cur.seq;
        return VG_OK;
    }
    vg_logs *logs = c->srv->logs;
    uint64_t epoch = vg_logs_epoch(logs);
    vg_tstart start = f->form >= 2 ? vg_tstart_of(f->start) : VG_TSTART_NEW;
    uint64_t value = f->form >= 2 ? f->position : 0;
    bool other_epoch = start == VG_TSTART_SEQ && f->epoch != 0 && f->epoch != epoch;
    if (other_epoch) {
        /* That log is gone: say so, and serve this one from its start. */
        if (!vg_link_ctl_ok(c->link, vg_frame_put_gap(vg_link_ctl(c->link), f->sid, topic, len,
                                                      f->position > 0 ? f->position : 1, 0,
                                                      VG_GAP_EPOCH)))
            return VG_ERR_NOMEM;
        start = VG_TSTART_FIRST;
        value = 0;
    }
    vg_tlog *log = vg_logs_find(logs, topic, len);
    if (log == NULL) {
        /* Never published: no log (most subscriptions of a large table
         * name such topics). An empty log would start every position but
         * SEQ 1 at 1; the first message creates the log, and the hook or
         * vg_reader_settle starts this reader on it from 1. */
        if (start == VG_TSTART_SEQ && value != 1)
            return VG_ERR_ARG;
        *next = 1;
        return VG_OK;
    }
    return add_reader(c, log, f->sid, start, value, 0, false, false, next);
}

void vg_reader_settle(vg_conn *c, const char *subject, uint32_t len, size_t mark)
{
    vg_tlog **made;
    size_t n;
    if (vg_logs_list(c->srv->logs, mark, &made, &n) != VG_OK) {
        vg_link_end(c->link, VG_END_NOMEM, 0, "out of memory for a new topic's reader");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t tlen;
        const char *topic = vg_tlog_topic(made[i], &tlen);
        if (vg_subject_matches(subject, len, topic, tlen))
            vg_reader_fresh(c, made[i]); /* take_fresh skips a topic read already */
    }
    free(made);
}

/* The position the client sent for sid on topic (a POS frame), or NULL. */
static conn_pos *find_pos(vg_conn *c, uint64_t sid, const char *topic, uint32_t len)
{
    for (size_t i = 0; i < c->npos; i++)
        if (c->pos[i].sid == sid && c->pos[i].len == len &&
            memcmp(c->pos[i].topic, topic, len) == 0)
            return &c->pos[i];
    return NULL;
}

void vg_reader_drop_pos(vg_conn *c, uint64_t sid)
{
    for (size_t i = 0; i < c->npos;) {
        if (c->pos[i].sid != sid) {
            i++;
            continue;
        }
        free(c->pos[i].topic);
        c->pos[i] = c->pos[--c->npos];
    }
}

void vg_reader_on_pos(vg_conn *c, const vg_frame *f)
{
    vg_server_live *live = &c->srv->live; /* reloadable (server.h) */
    if (vg_topic_check(f->topic, f->topic_len,
                       atomic_load_explicit(&live->topic_max_len, memory_order_relaxed),
                       atomic_load_explicit(&live->topic_max_tokens, memory_order_relaxed),
                       NULL) != VG_OK)
        return; /* no topic the broker could have: nothing to resume */
    conn_pos *p = find_pos(c, f->sid, f->topic, f->topic_len);
    if (p == NULL) {
        if (c->npos >= VG_POS_MAX) {
            vg_conn_send_err(c, VG_E_LIMIT, "too many POS frames before their SUB", f->sid);
            return;
        }
        if (c->npos == c->pos_cap) {
            size_t cap = c->pos_cap ? c->pos_cap * 2 : 16;
            conn_pos *ps = realloc(c->pos, cap * sizeof *ps);
            if (ps == NULL)
                goto fail_nomem;
            c->pos = ps;
            c->pos_cap = cap;
        }
        char *topic = malloc(f->topic_len);
        if (topic == NULL)
            goto fail_nomem;
        memcpy(topic, f->topic, f->topic_len);
        p = &c->pos[c->npos++];
        *p = (conn_pos){.sid = f->sid, .topic = topic, .len = f->topic_len};
    }
    p->epoch = f->epoch;
    p->next = f->next;
    return;

fail_nomem:
    vg_conn_send_err(c, VG_E_INTERNAL, "broker out of memory", 0);
}

/* Reads log for pattern sid f->sid, as its SUB f asks, unless c reads it. */
static vg_status attach_one(vg_conn *c, const vg_frame *f, vg_tlog *log)
{
    uint32_t len;
    const char *topic = vg_tlog_topic(log, &len);
    if (find_reader(c, topic, len) != NULL)
        return VG_OK; /* shared: the client has its position already */
    vg_tstart start = f->form >= 2 ? vg_tstart_of(f->start) : VG_TSTART_NEW;
    uint64_t value = f->form >= 2 ? f->position : 0, next;
    if (start == VG_TSTART_SEQ) {
        /* A renewal: where the client says, else from the start, as the
         * client never saw the topic. */
        const conn_pos *p = find_pos(c, f->sid, topic, len);
        uint64_t epoch = vg_logs_epoch(c->srv->logs);
        value = 1;
        if (p != NULL && (p->epoch == 0 || p->epoch == epoch))
            value = p->next;
        else if (p != NULL &&
                 !vg_link_ctl_ok(c->link, vg_frame_put_gap(vg_link_ctl(c->link), f->sid, topic,
                                                           len, p->next, 0, VG_GAP_EPOCH)))
            return VG_ERR_NOMEM;
    }
    return vg_reader_attach_log(c, f->sid, log, start, value, &next);
}

vg_status vg_reader_attach_log(vg_conn *c, uint64_t sid, vg_tlog *log, vg_tstart start,
                               uint64_t value, uint64_t *next)
{
    vg_status st = add_reader(c, log, sid, start, value, sid, true, true, next);
    if (st == VG_ERR_ARG) /* beyond the end: this log has less than the client had */
        st = add_reader(c, log, sid, VG_TSTART_NEW, 0, sid, true, true, next);
    return st;
}

vg_status vg_reader_attach_pattern(vg_conn *c, const vg_frame *f)
{
    vg_logs *logs = c->srv->logs;
    vg_status st = VG_OK;
    /* Topics the client named first: they may have no log yet. */
    for (size_t i = 0; i < c->npos && st == VG_OK; i++) {
        const conn_pos *p = &c->pos[i];
        if (p->sid != f->sid || !vg_subject_matches(f->topic, f->topic_len, p->topic, p->len))
            continue;
        vg_tlog *log = vg_logs_get(logs, p->topic, p->len);
        st = log != NULL ? attach_one(c, f, log) : VG_ERR_NOMEM;
    }
    vg_tlog **all = NULL;
    size_t n = 0;
    if (st == VG_OK)
        st = vg_logs_list(logs, 0, &all, &n);
    for (size_t i = 0; i < n && st == VG_OK; i++) {
        uint32_t len;
        const char *topic = vg_tlog_topic(all[i], &len);
        if (vg_subject_matches(f->topic, f->topic_len, topic, len))
            st = attach_one(c, f, all[i]);
    }
    free(all);
    vg_reader_drop_pos(c, f->sid);
    return st;
}

static void drop_reader(vg_conn *c, size_t i)
{
    vg_tcursor_release(&c->readers[i].cur);
    vg_buf_free(&c->readers[i].gap);
    free(c->readers[i].topic);
    c->readers[i] = c->readers[--c->nreaders];
    if (c->rslots > 0 && !reindex(c, 0)) { /* rare (an UNSUB): rebuilt whole */
        free(c->rslot);
        c->rslot = NULL;
        c->rslots = 0;
    }
    if (c->mid == i)
        c->mid = SIZE_MAX; /* only when all go: a reader inside a frame stays until whole */
    else if (c->mid == c->nreaders)
        c->mid = i; /* it moved */
    if (c->rr >= c->nreaders)
        c->rr = 0;
}

/* Reader i is no longer wanted unless a sid still covers its topic; one
 * that is, names such a sid in its GAP frames from now on. */
static void reconsider(vg_conn *c, size_t i)
{
    conn_reader *r = &c->readers[i];
    uint64_t sid;
    if (vg_subindex_covers(c->subs, r->topic, r->len, &sid)) {
        r->sid = sid;
        return;
    }
    /* A record half written must be finished, or the stream breaks: then
     * taken() drops it. */
    r->leaving = true;
    if (!mid_frame(r))
        drop_reader(c, i);
}

void vg_reader_detach(vg_conn *c, const char *subject, uint32_t len, bool pattern)
{
    if (!pattern) {
        conn_reader *r = find_reader(c, subject, len);
        if (r != NULL)
            reconsider(c, (size_t)(r - c->readers));
        return;
    }
    for (size_t i = c->nreaders; i-- > 0;) /* backwards: a drop moves the last to i */
        if (!c->readers[i].leaving &&
            vg_subject_matches(subject, len, c->readers[i].topic, c->readers[i].len))
            reconsider(c, i);
}

void vg_reader_fresh(vg_conn *c, vg_tlog *log)
{
    pthread_mutex_lock(&c->fresh_mu);
    bool ok = true;
    if (c->nfresh == c->fresh_cap) {
        size_t cap = c->fresh_cap ? c->fresh_cap * 2 : 8;
        vg_tlog **f = realloc(c->fresh, cap * sizeof *f);
        ok = f != NULL;
        if (ok) {
            c->fresh = f;
            c->fresh_cap = cap;
        }
    }
    if (ok)
        c->fresh[c->nfresh++] = log;
    pthread_mutex_unlock(&c->fresh_mu);
    if (!ok) {
        vg_log(VG_LOG_WARN, "deliver_failed", "client=%llu error=\"out of memory for a new topic\"",
               (unsigned long long)c->id);
        return;
    }
    atomic_store_explicit(&c->has_fresh, true, memory_order_release);
    vg_reader_kick(c);
}

/* On c's thread: starts reading the topics created since the last look
 * that one of its subscriptions covers (a pattern, or a literal subscribed
 * before the topic had a log), from their first record. */
static void take_fresh(vg_conn *c)
{
    if (!atomic_exchange_explicit(&c->has_fresh, false, memory_order_acq_rel))
        return;
    pthread_mutex_lock(&c->fresh_mu);
    vg_tlog **logs = c->fresh;
    size_t n = c->nfresh;
    c->fresh = NULL;
    c->nfresh = c->fresh_cap = 0;
    pthread_mutex_unlock(&c->fresh_mu);
    for (size_t i = 0; i < n; i++) {
        uint32_t len;
        const char *topic = vg_tlog_topic(logs[i], &len);
        uint64_t sid, next;
        if (find_reader(c, topic, len) != NULL || !vg_subindex_covers(c->subs, topic, len, &sid))
            continue;
        const conn_sub *s = vg_subindex_find(c->subs, sid);
        bool pattern = s != NULL && s->pattern; /* a literal's OK said 1 already */
        if (add_reader(c, logs[i], sid, VG_TSTART_SEQ, 1, sid, pattern, false, &next) != VG_OK &&
            !vg_link_ended(c->link))
            vg_link_end(c->link, VG_END_NOMEM, 0, "out of memory for a new topic's reader");
    }
    free(logs);
}

uint64_t vg_reader_lag(vg_conn *c)
{
    uint64_t lag = 0;
    for (size_t i = 0; i < c->nreaders; i++) {
        const conn_reader *r = &c->readers[i];
        if (r->leaving || r->cur.log == NULL)
            continue;
        uint64_t ready = vg_tlog_ready_hint(r->cur.log);
        if (ready > r->cur.seq)
            lag += ready - r->cur.seq;
    }
    return lag;
}

void vg_reader_free_all(vg_conn *c)
{
    for (size_t i = 0; i < c->npos; i++)
        free(c->pos[i].topic);
    c->npos = 0;
    free(c->rslot); /* first: dropping them all rebuilds no index */
    c->rslot = NULL;
    c->rslots = 0;
    while (c->nreaders > 0)
        drop_reader(c, c->nreaders - 1);
    free(c->readers);
    c->readers = NULL;
    c->readers_cap = 0;
    free(c->offer);
    c->offer = NULL;
}

void vg_reader_kick(vg_conn *c)
{
    if (!atomic_exchange_explicit(&c->kicked, true, memory_order_acq_rel))
        vg_outbox_wake(c->outbox);
}

/* Queues a GAP frame for from..to ahead of r's next record. */
static bool queue_gap(vg_conn *c, conn_reader *r, vg_tgap gap)
{
    r->gap.len = 0; /* what was before it is written (offer_one sends it first) */
    r->gap_off = 0;
    if (vg_frame_put_gap(&r->gap, r->sid, r->topic, r->len, gap.from, gap.to, VG_GAP_RETENTION) !=
        VG_OK) {
        vg_link_end(c->link, VG_END_NOMEM, 0, "out of memory for a GAP frame");
        return false;
    }
    if (vg_log_enabled(VG_LOG_DEBUG)) {
        char t[80];
        vg_log(VG_LOG_DEBUG, "gap", "client=%llu sid=%llu topic=%s from=%llu to=%llu missed=%llu",
               (unsigned long long)c->id, (unsigned long long)r->sid,
               vg_log_quote(t, sizeof t, r->topic, r->len), (unsigned long long)gap.from,
               (unsigned long long)gap.to, (unsigned long long)(gap.to - gap.from + 1));
    }
    return true;
}

/* What reader i has to write now, into up to max iovecs and about
 * max_bytes; 0 if nothing. */
static size_t offer_one(vg_conn *c, size_t i, struct iovec *iov, size_t max, size_t max_bytes,
                        size_t *partial)
{
    conn_reader *r = &c->readers[i];
    *partial = 0;
    if (r->gap.len > r->gap_off) {
        iov[0] = (struct iovec){r->gap.data + r->gap_off, r->gap.len - r->gap_off};
        *partial = r->gap_off > 0 ? iov[0].iov_len : 0;
        return 1;
    }
    if (!r->more && r->cur.into == 0)
        return 0;
    if (r->cur.into == 0 && !vg_tlog_ready_after(r->cur.log, r->cur.seq)) {
        r->more = false; /* nothing to read: no lock taken (a pattern's many topics) */
        return 0;
    }
    vg_tread rd;
    vg_tlog_read(&r->cur, iov, max, max_bytes, &rd);
    if (rd.gap.from != 0) { /* the cursor moved past it: the GAP goes first */
        vg_tcursor_consume(&r->cur, 0);
        if (!queue_gap(c, r, rd.gap))
            return 0;
        iov[0] = (struct iovec){r->gap.data, r->gap.len};
        return 1;
    }
    if (rd.iovcnt == 0) {
        r->more = false;
        vg_tcursor_consume(&r->cur, 0);
        return 0;
    }
    *partial = rd.partial;
    if (r->leaving) { /* only the end of the record begun */
        size_t left = rd.partial, n;
        for (n = 0; n < rd.iovcnt && left > 0; n++) {
            if (iov[n].iov_len > left)
                iov[n].iov_len = left;
            left -= iov[n].iov_len;
        }
        return n;
    }
    return rd.iovcnt;
}

/* The queue groups' inbox (conn_queue.c) as the source's stream. */
static size_t offer_queue(vg_conn *c, struct iovec *iov, size_t max, size_t *partial)
{
    size_t n = vg_queue_offer(c, iov, max, partial);
    if (n > 0) {
        c->offered = QUEUE_STREAM;
        c->qlast = true;
    }
    return n;
}

static size_t offer(void *ud, struct iovec *iov, size_t max, size_t *partial)
{
    vg_conn *c = ud;
    *partial = 0;
    c->offered = SIZE_MAX;
    take_fresh(c);
    if (atomic_exchange_explicit(&c->kicked, false, memory_order_acq_rel))
        for (size_t i = 0; i < c->nreaders; i++)
            c->readers[i].more = true;
    /* A stream inside a frame goes on. Otherwise the queue groups' inbox
     * and the readers take turns, and the readers go round robin from
     * where the last write stopped, so one busy topic cannot starve the
     * others. */
    if (vg_queue_mid_frame(c))
        return offer_queue(c, iov, max, partial);
    bool reader_mid = c->mid < c->nreaders;
    bool queue_first = !reader_mid && !c->qlast;
    size_t q;
    if (queue_first && (q = offer_queue(c, iov, max, partial)) > 0)
        return q;
    c->qlast = false;
    /* Readers in turn into one write until the iovecs or OFFER_MAX run
     * out: with many topics each has a record or two at a time, and a
     * write per topic would be a system call per message or so. Only the
     * first can start inside a frame (c->mid goes first); the others give
     * whole records, so the segments follow each other at boundaries. */
    size_t first = reader_mid ? c->mid : c->rr;
    size_t used = 0, bytes = 0;
    if (c->nreaders > 0) /* so c->offer is there */
        c->offer->nseg = 0;
    for (size_t k = 0; k < c->nreaders && used < max && bytes < OFFER_MAX; k++) {
        size_t i = (first + k) % c->nreaders;
        size_t part;
        size_t n = offer_one(c, i, iov + used, max - used, OFFER_MAX - bytes, &part);
        if (vg_link_ended(c->link))
            return 0;
        if (n == 0)
            continue;
        if (used > 0 && part > 0) { /* cannot happen (one reader is inside a frame) */
            conn_reader *r = &c->readers[i];
            if (r->gap.len == 0) /* records were read: unpinned */
                vg_tcursor_consume(&r->cur, 0);
            break;
        }
        if (used == 0)
            *partial = part;
        c->offer->seg[c->offer->nseg++] = (conn_offer_seg){i, n, part};
        for (size_t j = used; j < used + n; j++)
            bytes += iov[j].iov_len;
        used += n;
    }
    if (used > 0) {
        c->offered = READERS;
        memcpy(c->offer->iov, iov, used * sizeof *iov);
        return used;
    }
    return queue_first ? 0 : offer_queue(c, iov, max, partial);
}

/* The payload length of a stored record whose body is body bytes, on a
 * topic of topic_len bytes (the encoding of vg_frame_write_msg_seq: fixarray,
 * the type, a str, a bin, and the 9-byte seq). */
static uint64_t record_payload(uint32_t body, uint32_t topic_len)
{
    uint32_t str_hdr = topic_len < 32 ? 1 : topic_len < 256 ? 2 : 3;
    uint32_t rest = body - 1 - 1 - str_hdr - topic_len - 9; /* bin header + payload */
    if (rest < 2 + 256)
        return rest - 2;
    if (rest < 3 + 65536)
        return rest - 3;
    return rest - 5;
}

/* Counts the records of r whose first byte is among the first n bytes of
 * iov[0..cnt), whose first partial bytes end a record counted before. */
static void count_started(vg_conn *c, const conn_reader *r, const struct iovec *iov, size_t cnt,
                          size_t partial, size_t n)
{
    uint64_t msgs = 0, payload = 0;
    size_t seen = 0;
    for (size_t i = 0; i < cnt && seen < n; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        size_t off = i == 0 ? partial : 0; /* iovecs after the first start a record */
        if (off > len)
            off = len;
        seen += off;
        while (off < len && seen < n) {
            uint32_t body = vg_be32(p + off);
            size_t rec = VG_FRAME_HEADER + (size_t)body;
            msgs++;
            payload += record_payload(body, r->len);
            off += rec;
            seen += rec;
        }
    }
    vg_server_stats *st = &c->srv->stats;
    atomic_fetch_add_explicit(&st->msgs_out, msgs, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes_out, payload, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->mon.msgs_out, msgs, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->mon.bytes_out, payload, memory_order_relaxed);
}

/* The first n bytes of the readers' offer were written: each segment's
 * reader moves on by its share, in order. */
static void taken_readers(vg_conn *c, size_t n)
{
    size_t drop[VG_SOURCE_IOV], ndrop = 0;
    size_t at = 0;
    c->mid = SIZE_MAX;
    for (size_t k = 0; k < c->offer->nseg; k++) {
        const conn_offer_seg *sg = &c->offer->seg[k];
        conn_reader *r = &c->readers[sg->reader];
        size_t len = 0;
        for (size_t j = at; j < at + sg->niov; j++)
            len += c->offer->iov[j].iov_len;
        size_t got = n < len ? n : len;
        n -= got;
        if (r->gap.len > r->gap_off) {
            r->gap_off += got;
            if (r->gap_off >= r->gap.len)
                r->gap.len = r->gap_off = 0;
        } else {
            if (got > 0)
                count_started(c, r, c->offer->iov + at, sg->niov, sg->partial, got);
            vg_tcursor_consume(&r->cur, got); /* 0 too: it unpins what was offered */
        }
        at += sg->niov;
        /* Only the last segment written to can be inside a frame: offer()
         * goes on with it, before any other. */
        if (mid_frame(r))
            c->mid = sg->reader;
        else if (got > 0)
            c->rr = (sg->reader + 1) % c->nreaders;
        if (r->leaving && !mid_frame(r))
            drop[ndrop++] = sg->reader;
    }
    c->offer->nseg = 0;
    /* Highest first: drop_reader moves the last reader into the slot it
     * frees, never one still to be dropped. */
    for (size_t k = 1; k < ndrop; k++)
        for (size_t j = k; j > 0 && drop[j - 1] < drop[j]; j--) {
            size_t t = drop[j];
            drop[j] = drop[j - 1];
            drop[j - 1] = t;
        }
    for (size_t k = 0; k < ndrop; k++)
        drop_reader(c, drop[k]);
}

static void taken(void *ud, size_t n)
{
    vg_conn *c = ud;
    size_t offered = c->offered;
    c->offered = SIZE_MAX;
    if (offered == QUEUE_STREAM)
        vg_queue_taken(c, n);
    else if (offered == READERS)
        taken_readers(c, n);
}

typedef struct {
    vg_conn *c;
    const char *topic;
    uint32_t len;
    uint64_t first; /* the seq of the run just appended */
    bool all;       /* everything up to the log's end went out */
} lent_arg;

/* Under c's outbox lock, c's thread asleep with its socket lent: if the
 * reader of the topic was caught up to the run just appended, writes it
 * on the publisher's thread, as the owner would have (vg_outbox_lent_write). */
static size_t lent_send(int fd, void *arg, uint64_t *frames)
{
    lent_arg *a = arg;
    vg_conn *c = a->c;
    if (c->mid < c->nreaders || vg_queue_mid_frame(c))
        return 0; /* the stream is inside a frame: the owner's to go on with */
    conn_reader *r = NULL;
    if (c->lent_hint < c->nreaders && !c->readers[c->lent_hint].leaving &&
        c->readers[c->lent_hint].len == a->len &&
        memcmp(c->readers[c->lent_hint].topic, a->topic, a->len) == 0)
        r = &c->readers[c->lent_hint]; /* a publisher repeats its topic */
    else if ((r = find_reader(c, a->topic, a->len)) != NULL)
        c->lent_hint = (size_t)(r - c->readers);
    if (r == NULL || r->cur.seq != a->first || r->gap.len > 0)
        return 0; /* its GAP or POS goes first: the owner's too */
    struct iovec iov[VG_SOURCE_IOV];
    vg_tread rd;
    vg_tlog_read(&r->cur, iov, VG_SOURCE_IOV, OFFER_MAX, &rd);
    if (rd.gap.from != 0 || rd.iovcnt == 0 || rd.partial != 0) {
        vg_tcursor_consume(&r->cur, 0);
        return 0;
    }
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = rd.iovcnt};
    ssize_t w = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w <= 0) { /* an error is the owner's to meet on its own write */
        vg_tcursor_consume(&r->cur, 0);
        return 0;
    }
    count_started(c, r, iov, rd.iovcnt, 0, (size_t)w);
    *frames = vg_tcursor_consume(&r->cur, (size_t)w);
    if (mid_frame(r))
        c->mid = (size_t)(r - c->readers);
    a->all = (size_t)w == rd.bytes && r->cur.seq == vg_tlog_next_seq(r->cur.log);
    return (size_t)w;
}

void vg_reader_deliver(vg_conn *c, const char *topic, uint32_t len, uint64_t first_seq)
{
    lent_arg a = {c, topic, len, first_seq, false};
    if (vg_outbox_lent_write(c->outbox, lent_send, &a) && a.all)
        return; /* it sleeps on, with nothing owed */
    vg_reader_kick(c);
}

void vg_reader_source(vg_conn *c, vg_source *src)
{
    c->offered = SIZE_MAX;
    c->mid = SIZE_MAX;
    c->lent_hint = SIZE_MAX;
    *src = (vg_source){.offer = offer, .taken = taken, .ud = c};
}
