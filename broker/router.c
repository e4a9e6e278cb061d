/* The message router: from a publisher's read buffer to its subscribers'
 * outboxes.
 *
 * A MSG frame is forwarded exactly as the publisher encoded it, so
 * consecutive frames with the same topic in one read form a contiguous run
 * that is looked up once and copied into each subscriber's outbox with one
 * memcpy. Subscribers' threads write it out; this thread never touches
 * their sockets. */
#include "conn_internal.h"

#include <string.h>

#include "clock.h"
#include "log.h"
#include "subtable.h"

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

/* Queues a run of whole MSG frames on topic to every subscriber. from, if
 * not NULL, is the publishing connection: its own outbox is never waited
 * on (only its thread drains it); stall_ms bounds the wait for any other. */
static void fan_out(vg_server *srv, vg_conn *from, const char *topic, uint32_t topic_len,
                    const uint8_t *bytes, size_t len, uint32_t frames, uint64_t payload,
                    int stall_ms, void ***scratch, size_t *scratch_cap)
{
    size_t n = 0;
    if (vg_subtable_match(srv->subs, topic, topic_len, scratch, scratch_cap, &n) != VG_OK) {
        vg_log(VG_LOG_WARN, "deliver_failed", "client=%llu error=\"out of memory\"",
               from ? (unsigned long long)from->id : 0ull);
        atomic_fetch_add_explicit(&srv->stats.dropped, frames, memory_order_relaxed);
        return;
    }
    int64_t now_ns = vg_now_ns();
    uint64_t out = 0, out_bytes = 0, lost = 0;
    for (size_t i = 0; i < n; i++) {
        vg_conn *sub = (*scratch)[i];
        uint32_t dropped;
        vg_status st = vg_outbox_put_frames(sub->outbox, bytes, len, frames,
                                            sub == from ? 0 : stall_ms, now_ns, &dropped);
        if (st != VG_ERR_CLOSED) { /* closed: the subscriber is leaving; not a drop */
            out += frames - dropped;
            out_bytes += dropped == 0 ? payload : frames_payload(bytes, frames - dropped);
            lost += dropped;
            if (dropped > 0)
                note_drops(srv, sub, now_ns / 1000000);
        }
        vg_conn_release(sub);
    }
    vg_server_stats *st = &srv->stats;
    atomic_fetch_add_explicit(&st->msgs_out, out, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes_out, out_bytes, memory_order_relaxed);
    if (lost > 0)
        atomic_fetch_add_explicit(&st->dropped, lost, memory_order_relaxed);
}

void vg_router_flush(vg_conn *c)
{
    conn_run *r = &c->run;
    if (r->frames == 0)
        return;
    vg_server_stats *st = &c->srv->stats;
    atomic_fetch_add_explicit(&st->msgs_in, r->frames, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes_in, r->payload, memory_order_relaxed);
    fan_out(c->srv, c, r->topic, r->topic_len, r->start, r->len, r->frames, r->payload,
            VG_DELIVER_STALL_MS, &c->scratch, &c->scratch_cap);
    r->frames = 0;
}

void vg_router_add(vg_conn *c, const vg_frame *f)
{
    conn_run *r = &c->run;
    if (vg_router_extends(c, f)) {
        r->len += f->raw_len;
        r->frames++;
        r->payload += f->payload_len;
        return;
    }
    vg_router_flush(c);
    *r = (conn_run){f->topic, f->topic_len, f->raw, f->raw_len, 1, f->payload_len};
}

vg_status vg_conn_publish_system(vg_server *srv, const char *topic, const void *payload,
                                 size_t payload_len, vg_buf *frame, void ***scratch,
                                 size_t *scratch_cap)
{
    frame->len = 0;
    size_t topic_len = strlen(topic);
    vg_status st = vg_frame_put_msg(frame, VG_FRAME_MSG_TYPE1, topic, topic_len, payload,
                                    payload_len);
    if (st != VG_OK)
        return st;
    /* Never a stall: this is the main thread, which also accepts and stops. */
    fan_out(srv, NULL, topic, (uint32_t)topic_len, frame->data, frame->len, 1, payload_len, 0,
            scratch, scratch_cap);
    return VG_OK;
}
