/* Version-2 delivery: a connection reads its topics' logs itself.
 *
 * Publishers append each message once to its topic's log (router.c) and
 * only kick the subscribers' threads; each subscriber's own thread copies
 * whole records from its cursors into its outbox while little is queued
 * there, so a slow subscriber falls behind in the log instead of holding a
 * publisher up or losing messages, and what it holds in memory of its own
 * is bounded by FILL_LOW + FILL_MAX whatever its backlog. When retention
 * drops records before a cursor reached them, a GAP frame with the exact
 * range goes ahead of the next record (docs/protocol.md). */
#include "conn_internal.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "server.h"

#define FILL_LOW (64 * 1024)  /* refill when less than this is queued or in flight */
#define FILL_MAX (256 * 1024) /* copied per round, at least one record */

static conn_reader *find_reader(vg_conn *c, const char *topic, uint32_t len)
{
    for (size_t i = 0; i < c->nreaders; i++)
        if (c->readers[i].len == len && memcmp(c->readers[i].topic, topic, len) == 0)
            return &c->readers[i];
    return NULL;
}

static vg_tstart tstart_of(vg_sub_start s)
{
    switch (s) {
    case VG_SUB_FIRST: return VG_TSTART_FIRST;
    case VG_SUB_SEQ: return VG_TSTART_SEQ;
    case VG_SUB_AGO: return VG_TSTART_AGO;
    case VG_SUB_NEW: break;
    }
    return VG_TSTART_NEW;
}

vg_status vg_reader_attach(vg_conn *c, const vg_frame *f, const char *topic, uint32_t len,
                           uint64_t *next)
{
    conn_reader *r = find_reader(c, topic, len);
    if (r != NULL) {
        r->nsids++;
        *next = r->cur.seq;
        return VG_OK;
    }
    vg_logs *logs = c->srv->logs;
    uint64_t epoch = vg_logs_epoch(logs);
    vg_tstart start = f->form >= 2 ? tstart_of(f->start) : VG_TSTART_NEW;
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
    if (c->nreaders == c->readers_cap) {
        size_t cap = c->readers_cap ? c->readers_cap * 2 : 4;
        conn_reader *rs = realloc(c->readers, cap * sizeof *rs);
        if (rs == NULL)
            return VG_ERR_NOMEM;
        c->readers = rs;
        c->readers_cap = cap;
    }
    vg_tlog *log = vg_logs_get(logs, topic, len);
    char *copy = malloc(len);
    if (log == NULL || copy == NULL) {
        free(copy);
        return VG_ERR_NOMEM;
    }
    memcpy(copy, topic, len);
    r = &c->readers[c->nreaders];
    *r = (conn_reader){.topic = copy, .len = len, .sid = f->sid, .nsids = 1, .more = true};
    vg_tgap skipped; /* below the oldest retained: OK's next tells the client */
    if (vg_tlog_seek(log, &r->cur, start, value, vg_now_ms(), &skipped) != VG_OK) {
        free(copy);
        return VG_ERR_ARG;
    }
    c->nreaders++;
    *next = r->cur.seq;
    return VG_OK;
}

static void drop_reader(vg_conn *c, size_t i)
{
    vg_tcursor_release(&c->readers[i].cur);
    free(c->readers[i].topic);
    c->readers[i] = c->readers[--c->nreaders];
    if (c->rr >= c->nreaders)
        c->rr = 0;
}

void vg_reader_detach(vg_conn *c, const char *topic, uint32_t len)
{
    conn_reader *r = find_reader(c, topic, len);
    if (r == NULL)
        return;
    if (--r->nsids == 0) {
        drop_reader(c, (size_t)(r - c->readers));
        return;
    }
    for (size_t i = 0; i < c->nsubs; i++) /* GAP frames name a sid still there */
        if (c->subs[i].len == len && memcmp(c->subs[i].topic, topic, len) == 0) {
            r->sid = c->subs[i].sid;
            break;
        }
}

void vg_reader_free_all(vg_conn *c)
{
    while (c->nreaders > 0)
        drop_reader(c, c->nreaders - 1);
    free(c->readers);
    c->readers = NULL;
    c->readers_cap = 0;
}

void vg_reader_kick(vg_conn *c)
{
    if (!atomic_exchange_explicit(&c->kicked, true, memory_order_acq_rel))
        vg_outbox_wake(c->outbox);
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

typedef struct {
    const struct iovec *iov;
    size_t iovcnt;
    size_t bytes;
} copy_src;

static void copy_records(uint8_t *dst, void *arg)
{
    const copy_src *s = arg;
    size_t left = s->bytes;
    for (size_t i = 0; i < s->iovcnt && left > 0; i++) {
        size_t n = s->iov[i].iov_len < left ? s->iov[i].iov_len : left;
        memcpy(dst, s->iov[i].iov_base, n);
        dst += n;
        left -= n;
    }
}

/* Of what a read offered, the whole records that fit in budget (at least
 * one): their bytes, frames and payload bytes. Records never straddle two
 * iovecs: each chunk holds whole records. */
static size_t whole_records(const struct iovec *iov, size_t iovcnt, size_t budget,
                            uint32_t topic_len, uint32_t *frames, uint64_t *payload)
{
    size_t total = 0;
    *frames = 0;
    *payload = 0;
    for (size_t i = 0; i < iovcnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t off = 0;
        while (off < iov[i].iov_len) {
            uint32_t body = vg_be32(p + off);
            size_t len = VG_FRAME_HEADER + (size_t)body;
            if (*frames > 0 && total + len > budget)
                return total;
            total += len;
            off += len;
            ++*frames;
            *payload += record_payload(body, topic_len);
        }
    }
    return total;
}

/* Copies what r's cursor has (and a GAP first if retention skipped some)
 * into c's outbox, up to budget bytes; returns the bytes queued. */
static size_t fill_one(vg_conn *c, conn_reader *r, size_t budget, uint64_t *msgs,
                       uint64_t *payload)
{
    struct iovec iov[VG_TCURSOR_PINS];
    vg_tread rd;
    vg_tlog_read(&r->cur, iov, VG_TCURSOR_PINS, budget, &rd);
    size_t queued = 0;
    if (rd.gap.from != 0) {
        /* In the bulk stream, in order with the records, not ahead of them
         * as a control frame would go. Gaps are rare: a buffer of its own. */
        vg_buf gap = {0};
        vg_status st = vg_frame_put_gap(&gap, r->sid, r->topic, r->len, rd.gap.from, rd.gap.to,
                                        VG_GAP_RETENTION);
        if (st == VG_OK)
            st = vg_outbox_put_always(c->outbox, gap.data, gap.len, 1);
        vg_buf_free(&gap);
        if (st != VG_OK) {
            vg_link_end(c->link, VG_END_NOMEM, 0, "out of memory for a GAP frame");
            goto fail_release;
        }
        queued += 1; /* not a byte count: "something was queued" */
        char t[80];
        vg_log(VG_LOG_DEBUG, "gap", "client=%llu sid=%llu topic=%s from=%llu to=%llu missed=%llu",
               (unsigned long long)c->id, (unsigned long long)r->sid,
               vg_log_quote(t, sizeof t, r->topic, r->len), (unsigned long long)rd.gap.from,
               (unsigned long long)rd.gap.to, (unsigned long long)(rd.gap.to - rd.gap.from + 1));
    }
    if (rd.iovcnt == 0) {
        r->more = rd.gap.from != 0; /* after a gap, look again */
        vg_tcursor_consume(&r->cur, 0);
        return queued;
    }
    uint32_t frames;
    uint64_t pay;
    size_t n = whole_records(iov, rd.iovcnt, budget, r->len, &frames, &pay);
    copy_src src = {iov, rd.iovcnt, n};
    vg_status st = vg_outbox_put_with(c->outbox, n, frames, 0, copy_records, &src);
    if (st != VG_OK) {
        if (st == VG_ERR_NOMEM)
            vg_link_end(c->link, VG_END_NOMEM, 0, "out of memory for output");
        goto fail_release; /* FULL: the cursor stays where it was */
    }
    vg_tcursor_consume(&r->cur, n);
    *msgs += frames;
    *payload += pay;
    return queued + n;

fail_release:
    vg_tcursor_consume(&r->cur, 0);
    return queued;
}

void vg_reader_fill(vg_conn *c)
{
    if (c->nreaders == 0)
        return;
    if (atomic_exchange_explicit(&c->kicked, false, memory_order_acq_rel))
        for (size_t i = 0; i < c->nreaders; i++)
            c->readers[i].more = true;
    size_t queued = vg_outbox_bytes(c->outbox);
    if (queued >= FILL_LOW)
        return;
    size_t budget = FILL_MAX;
    uint64_t msgs = 0, payload = 0;
    /* Round robin from where the last round stopped, so one busy topic
     * cannot starve the others. */
    size_t idle = 0;
    for (size_t i = c->rr; budget > 0 && idle < c->nreaders && !vg_link_ended(c->link);
         i = (i + 1) % c->nreaders) {
        conn_reader *r = &c->readers[i];
        if (!r->more) {
            idle++;
            continue;
        }
        size_t n = fill_one(c, r, budget, &msgs, &payload);
        if (n == 0 && r->more)
            break; /* the outbox is full or memory ran out: the next round */
        budget = n >= budget ? 0 : budget - n;
        idle = r->more ? 0 : idle + 1;
        c->rr = (i + 1) % c->nreaders;
    }
    if (msgs > 0) {
        vg_server_stats *st = &c->srv->stats;
        atomic_fetch_add_explicit(&st->msgs_out, msgs, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->bytes_out, payload, memory_order_relaxed);
    }
}
