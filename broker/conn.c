/* One broker connection and the thread that owns its socket.
 *
 * The thread is the only one that reads or writes the socket. Publishers on
 * other threads reach it through its outbox (common/outbox.c): they append
 * already-encoded frames and, if this thread sleeps, wake it. A MSG frame is
 * forwarded exactly as the publisher encoded it, so consecutive frames with
 * the same topic in one read form a contiguous run that is looked up once and
 * copied into each subscriber's outbox with one memcpy.
 *
 * Lifetime: the thread holds a reference; a publisher holds one per
 * subscriber while delivering (taken inside vg_subtable_match). When the
 * connection ends, the thread closes the outbox and leaves the subscription
 * table before dropping its reference, so no new delivery can start.
 *
 * Liveness: the thread sleeps in poll until the heartbeat's next deadline.
 * Signs of life are bytes from the client and the kernel taking more of our
 * output after refusing it (the client's window opened: it is reading). A
 * client silent for time + probes x interval is evicted (reason=heartbeat);
 * one whose output has not moved for that long while we have data for it is
 * evicted as a slow consumer even if it keeps sending. */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "decoder.h"
#include "frame.h"
#include "liveness.h"
#include "log.h"
#include "outbox.h"
#include "proto.h"
#include "sender.h"
#include "token.h"
#include "topic.h"
#include "version.h"

/* How long a publisher's thread may wait, per delivery, for room in the
 * outbox of a subscriber that is still draining (its socket took bytes within
 * this long; nats-server stalls a fast producer the same way). 5 ms lost
 * messages in the 4-to-1 benchmark: on 2 busy cores an owner thread's writes
 * can be 50 ms apart. A stopped reader is not waited for at all. */
#define VG_DELIVER_STALL_MS 50

#define READ_CHUNK (64 * 1024)
#define READS_PER_WAKE 4
#define FLUSH_BUDGET (1024 * 1024)
#define CTL_LIMIT (256 * 1024) /* replies owed to a peer that does not read them */

typedef struct {
    uint64_t sid;
    char *topic;
    uint32_t len;
} conn_sub;

struct vg_conn {
    atomic_int refs;
    vg_server *srv;
    uint64_t id;
    int fd;
    char addr[VG_ADDR_STRLEN];
    char name[VG_NAME_MAX_LEN + 8];
    vg_outbox *outbox;
    vg_sender tx;
    vg_decoder *rx;
    vg_liveness *live;
    uint64_t progress_bytes; /* tx.bytes_written when output last moved */
    int64_t progress_at;     /* ... and when; or when there was nothing to send */
    bool connected;
    atomic_bool dropping;  /* its outbox overflowed; logged once per episode */
    uint64_t drops_before; /* outbox drop count when the episode began (owner only) */

    conn_sub *subs;
    size_t nsubs, subs_cap;
    void **scratch; /* subscriber list of the run being delivered */
    size_t scratch_cap;

    const char *end_reason; /* set once: why the connection is ending */
    bool end_evict;
    bool sent_fatal_err;
    bool warned_subs;         /* the max_subs limit was logged for this connection */
    uint32_t refusals_logged; /* bit per ERR code already logged at info */
    int64_t born_ms;  /* accepted at; the handshake timeout runs from here */
    char end_detail[160];

    vg_conn *prev, *next; /* registry, under srv->mu */
};

/* A run of consecutive MSG frames with one topic, contiguous in the read buffer. */
typedef struct {
    const char *topic;
    uint32_t topic_len;
    const uint8_t *start;
    size_t len;
    uint32_t frames;
    uint64_t payload; /* payload bytes of its frames */
} run;

void vg_conn_retain(void *c) { atomic_fetch_add_explicit(&((vg_conn *)c)->refs, 1, memory_order_relaxed); }

void vg_conn_release(vg_conn *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    vg_outbox_destroy(c->outbox);
    vg_decoder_destroy(c->rx);
    vg_liveness_destroy(c->live);
    vg_sender_free(&c->tx);
    for (size_t i = 0; i < c->nsubs; i++)
        free(c->subs[i].topic);
    free(c->subs);
    free(c->scratch);
    free(c);
}

/* ---- ending a connection ---- */

static void end(vg_conn *c, const char *reason, bool evict, const char *detail)
{
    if (c->end_reason != NULL)
        return;
    c->end_reason = reason;
    c->end_evict = evict;
    if (detail != NULL)
        vg_log_quote(c->end_detail, sizeof c->end_detail, detail, strlen(detail));
}

/* Queues an ERR frame; the connection ends if the code is fatal or the frame
 * cannot be queued. */
static void send_err(vg_conn *c, vg_errcode code, const char *why, uint64_t sid)
{
    if (vg_frame_put_err(&c->tx.ctl, code, why, sid) != VG_OK) {
        end(c, "internal", true, "out of memory");
        return;
    }
    if (vg_errcode_is_fatal(code, sid)) {
        c->sent_fatal_err = code != VG_E_SHUTDOWN;
        end(c, vg_errcode_name(code), true, why);
        return;
    }
    /* A refused SUB or UNSUB: the first of each kind per connection at info,
     * the rest at debug, so a flood of them cannot flood the log. */
    uint32_t bit = code < 32 ? 1u << code : 0;
    vg_log_level level = (c->refusals_logged & bit) ? VG_LOG_DEBUG : VG_LOG_INFO;
    c->refusals_logged |= bit;
    if (vg_log_enabled(level) && code != VG_E_LIMIT) /* the limit has its own line */
        vg_log(level, "refused", "code=%s client=%llu addr=%s sid=%llu detail=\"%s\"",
               vg_errcode_name(code), (unsigned long long)c->id, c->addr,
               (unsigned long long)sid, why);
}

static void send_ok(vg_conn *c, uint64_t sid)
{
    if (vg_frame_put_ok(&c->tx.ctl, sid) != VG_OK)
        end(c, "internal", true, "out of memory");
}

/* ---- subscriptions ---- */

static conn_sub *find_sid(vg_conn *c, uint64_t sid)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].sid == sid)
            return &c->subs[i];
    return NULL;
}

static bool has_topic(vg_conn *c, const char *topic, uint32_t len)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].len == len && memcmp(c->subs[i].topic, topic, len) == 0)
            return true;
    return false;
}

static void handle_sub(vg_conn *c, const vg_frame *f)
{
    const vg_broker_config *cfg = &c->srv->cfg;
    const char *why;
    if (f->sid == 0) {
        send_err(c, VG_E_BAD_FRAME, "sid 0 is reserved", 0);
        return;
    }
    if (vg_topic_check(f->topic, f->topic_len, cfg->topic_max_len, cfg->topic_max_tokens,
                       &why) != VG_OK) {
        send_err(c, VG_E_BAD_TOPIC, why, f->sid);
        return;
    }
    if (find_sid(c, f->sid) != NULL) {
        send_err(c, VG_E_DUPLICATE_SID, "sid already in use on this connection", f->sid);
        return;
    }
    if (c->nsubs >= cfg->max_subs) {
        if (!c->warned_subs)
            vg_log(VG_LOG_WARN, "limit", "what=subscriptions client=%llu addr=%s max_subs=%zu",
                   (unsigned long long)c->id, c->addr, cfg->max_subs);
        c->warned_subs = true;
        send_err(c, VG_E_LIMIT, "too many subscriptions", f->sid);
        return;
    }
    if (c->nsubs == c->subs_cap) {
        size_t cap = c->subs_cap ? c->subs_cap * 2 : 4;
        conn_sub *s = realloc(c->subs, cap * sizeof *s);
        if (s == NULL)
            goto fail_nomem;
        c->subs = s;
        c->subs_cap = cap;
    }
    char *topic = malloc(f->topic_len);
    if (topic == NULL)
        goto fail_nomem;
    memcpy(topic, f->topic, f->topic_len);
    /* Several sids may name one topic; the table holds the connection once,
     * so each message is delivered to it once. */
    if (!has_topic(c, topic, f->topic_len) &&
        vg_subtable_add(c->srv->subs, topic, f->topic_len, c) != VG_OK) {
        free(topic);
        goto fail_nomem;
    }
    c->subs[c->nsubs++] = (conn_sub){f->sid, topic, f->topic_len};
    send_ok(c, f->sid);
    if (vg_log_enabled(VG_LOG_DEBUG)) {
        char t[80];
        vg_log(VG_LOG_DEBUG, "subscribed", "client=%llu sid=%llu topic=%s",
               (unsigned long long)c->id, (unsigned long long)f->sid,
               vg_log_quote(t, sizeof t, f->topic, f->topic_len));
    }
    return;

fail_nomem:
    send_err(c, VG_E_INTERNAL, "broker out of memory", 0);
}

static void handle_unsub(vg_conn *c, const vg_frame *f)
{
    conn_sub *s = find_sid(c, f->sid);
    if (f->sid == 0 || s == NULL) {
        send_err(c, VG_E_NO_SUCH_SID, "no subscription with that sid", f->sid);
        return;
    }
    conn_sub gone = *s;
    *s = c->subs[--c->nsubs];
    if (!has_topic(c, gone.topic, gone.len))
        vg_subtable_remove(c->srv->subs, gone.topic, gone.len, c);
    free(gone.topic);
    send_ok(c, f->sid);
}

/* ---- inbound frames ---- */

static void handle_connect(vg_conn *c, const vg_frame *f)
{
    if (f->version < 1) {
        send_err(c, VG_E_VERSION, "protocol version must be 1 or later", 0);
        return;
    }
    if (f->name_len > VG_NAME_MAX_LEN) {
        send_err(c, VG_E_BAD_FRAME, "client name too long", 0);
        return;
    }
    vg_log_quote(c->name, sizeof c->name, f->name, f->name_len);
    const vg_broker_config *cfg = &c->srv->cfg;
    if (cfg->token != NULL &&
        !vg_token_equal(cfg->token, cfg->token_len, f->token, f->token_len)) {
        send_err(c, VG_E_AUTH, "authentication failed", 0); /* the same for missing and wrong */
        return;
    }
    uint64_t version = f->version < VG_PROTO_VERSION ? f->version : VG_PROTO_VERSION;
    if (vg_frame_put_info(&c->tx.ctl, version, "vigil " VG_VERSION, c->id,
                          c->srv->cfg.max_payload) != VG_OK) {
        end(c, "internal", true, "out of memory");
        return;
    }
    vg_decoder_set_max_frame(c->rx, vg_max_frame_for(c->srv->cfg.max_payload));
    c->connected = true;
    /* Publishers may now write to this socket themselves while this thread
     * sleeps with nothing queued (see outbox.h); it is closed only after the
     * outbox is, in finish(). */
    vg_outbox_set_direct_fd(c->outbox, c->fd);
    vg_log(VG_LOG_INFO, "client_connected", "client=%llu addr=%s name=%s",
           (unsigned long long)c->id, c->addr, c->name);
}

static void handle_control(vg_conn *c, const vg_frame *f)
{
    if (!c->connected && f->type != VG_FRAME_CONNECT) {
        send_err(c, VG_E_PROTOCOL, "expected CONNECT first", 0);
        return;
    }
    switch (f->type) {
    case VG_FRAME_CONNECT:
        if (c->connected)
            send_err(c, VG_E_PROTOCOL, "CONNECT sent twice", 0);
        else
            handle_connect(c, f);
        break;
    case VG_FRAME_PING:
        if (vg_frame_put_pong(&c->tx.ctl) != VG_OK)
            end(c, "internal", true, "out of memory");
        break;
    case VG_FRAME_PONG:
        atomic_fetch_add_explicit(&c->srv->stats.pongs_received, 1, memory_order_relaxed);
        break;
    case VG_FRAME_SUB:
        handle_sub(c, f);
        break;
    case VG_FRAME_UNSUB:
        handle_unsub(c, f);
        break;
    default:
        send_err(c, VG_E_PROTOCOL, "frame type not accepted from clients", 0);
        break;
    }
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

/* Queues a run of whole MSG frames on topic to every subscriber; from, if
 * not NULL, is the publishing connection (its own outbox is never waited
 * on: only its thread drains it). */
static void fan_out(vg_server *srv, vg_conn *from, const char *topic, uint32_t topic_len,
                    const uint8_t *bytes, size_t len, uint32_t frames, uint64_t payload,
                    void ***scratch, size_t *scratch_cap)
{
    size_t n = 0;
    if (vg_subtable_match(srv->subs, topic, topic_len, scratch, scratch_cap, &n) != VG_OK)
        vg_log(VG_LOG_WARN, "deliver_failed", "client=%llu error=\"out of memory\"",
               from ? (unsigned long long)from->id : 0ull);
    uint64_t out = 0, out_bytes = 0, lost = 0;
    for (size_t i = 0; i < n; i++) {
        vg_conn *sub = (*scratch)[i];
        uint32_t dropped;
        vg_outbox_put_frames_stall(sub->outbox, bytes, len, frames,
                                   sub == from ? 0 : VG_DELIVER_STALL_MS, &dropped);
        out += frames - dropped;
        out_bytes += dropped == 0 ? payload : frames_payload(bytes, frames - dropped);
        lost += dropped;
        if (dropped > 0 && !atomic_exchange(&sub->dropping, true))
            vg_log(VG_LOG_WARN, "slow_consumer", "state=dropping client=%llu addr=%s max_outbox=%zu",
                   (unsigned long long)sub->id, sub->addr, srv->cfg.max_outbox);
        vg_conn_release(sub);
    }
    vg_server_stats *st = &srv->stats;
    atomic_fetch_add_explicit(&st->msgs_out, out, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes_out, out_bytes, memory_order_relaxed);
    if (lost > 0)
        atomic_fetch_add_explicit(&st->dropped, lost, memory_order_relaxed);
}

static void deliver(vg_conn *c, run *r)
{
    if (r->frames == 0)
        return;
    vg_server_stats *st = &c->srv->stats;
    atomic_fetch_add_explicit(&st->msgs_in, r->frames, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes_in, r->payload, memory_order_relaxed);
    fan_out(c->srv, c, r->topic, r->topic_len, r->start, r->len, r->frames, r->payload,
            &c->scratch, &c->scratch_cap);
    r->frames = 0;
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
    fan_out(srv, NULL, topic, (uint32_t)topic_len, frame->data, frame->len, 1, payload_len,
            scratch, scratch_cap);
    return VG_OK;
}

/* Checks a MSG frame that starts a new run; false (and a fatal ERR) if bad. */
static bool publish_ok(vg_conn *c, const vg_frame *f)
{
    const vg_broker_config *cfg = &c->srv->cfg;
    const char *why;
    if (f->payload_len > cfg->max_payload) {
        send_err(c, VG_E_TOO_LARGE, "payload exceeds max_payload", 0);
        return false;
    }
    if (vg_topic_check(f->topic, f->topic_len, cfg->topic_max_len, cfg->topic_max_tokens,
                       &why) != VG_OK) {
        send_err(c, VG_E_BAD_TOPIC, why, 0);
        return false;
    }
    if (vg_topic_is_system(f->topic, f->topic_len)) {
        send_err(c, VG_E_PERMISSION, "$SYS topics are the broker's own", 0);
        return false;
    }
    return true;
}

static void handle_frames(vg_conn *c)
{
    run r = {0};
    vg_frame f;
    const char *why = NULL;
    vg_status st;
    while ((st = vg_decoder_next(c->rx, &f, &why)) == VG_OK) {
        if (vg_frame_is_msg(f.type) && c->connected) {
            if (r.frames > 0 && f.raw == r.start + r.len && f.topic_len == r.topic_len &&
                memcmp(f.topic, r.topic, f.topic_len) == 0 &&
                f.payload_len <= c->srv->cfg.max_payload) {
                r.len += f.raw_len;
                r.frames++;
                r.payload += f.payload_len;
                continue;
            }
            deliver(c, &r);
            if (!publish_ok(c, &f))
                return;
            r = (run){f.topic, f.topic_len, f.raw, f.raw_len, 1, f.payload_len};
            continue;
        }
        deliver(c, &r);
        handle_control(c, &f);
        if (c->end_reason != NULL)
            return;
    }
    deliver(c, &r); /* frames before a bad one were valid: they go out */
    if (st == VG_ERR_TOO_LARGE)
        send_err(c, VG_E_TOO_LARGE, why, 0);
    else if (st == VG_ERR_UNKNOWN_TYPE)
        send_err(c, VG_E_UNKNOWN_TYPE, why, 0);
    else if (st != VG_AGAIN)
        send_err(c, VG_E_BAD_FRAME, why, 0);
}

static void read_and_handle(vg_conn *c)
{
    for (int i = 0; i < READS_PER_WAKE && c->end_reason == NULL; i++) {
        uint8_t *space;
        size_t avail;
        if (vg_decoder_space(c->rx, &space, &avail) != VG_OK) {
            end(c, "internal", true, "out of memory");
            return;
        }
        ssize_t n = recv(c->fd, space, avail, 0);
        if (n == 0) {
            end(c, "eof", false, NULL);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                end(c, "error", false, strerror(errno));
            return;
        }
        vg_decoder_commit(c->rx, (size_t)n);
        vg_liveness_heard(c->live, vg_now_ms());
        handle_frames(c);
        if ((size_t)n < avail)
            return; /* the socket is very likely drained */
    }
}

/* ---- the thread ---- */

#define LINGER_MS 1000
#define LINGER_BYTES (1024 * 1024)

/* After a fatal ERR: closing with unread input would make the kernel send a
 * reset that can destroy the ERR before the client reads it. So stop
 * sending, then discard input until the client closes, for a bounded time. */
static void linger(vg_conn *c)
{
    char sink[16384];
    size_t total = 0;
    int64_t deadline = vg_now_ms() + LINGER_MS;
    shutdown(c->fd, SHUT_WR);
    while (total < LINGER_BYTES) {
        int64_t left = deadline - vg_now_ms();
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}

/* The $SYS.stats bucket of an eviction reason (an ERR code name or one of
 * heartbeat, slow_consumer, internal). */
static vg_evict_reason evict_reason(const char *reason)
{
    static const struct {
        const char *name;
        vg_evict_reason bucket;
    } map[] = {
        {"heartbeat", VG_EVICT_HEARTBEAT}, {"slow_consumer", VG_EVICT_SLOW_CONSUMER},
        {"limit", VG_EVICT_LIMIT},         {"auth", VG_EVICT_AUTH},
        {"timeout", VG_EVICT_TIMEOUT},     {"internal", VG_EVICT_INTERNAL},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(reason, map[i].name) == 0)
            return map[i].bucket;
    return VG_EVICT_PROTOCOL;
}

static void finish(vg_conn *c)
{
    vg_server *srv = c->srv;
    vg_outbox_close(c->outbox);
    for (size_t i = 0; i < c->nsubs; i++)
        vg_subtable_remove(srv->subs, c->subs[i].topic, c->subs[i].len, c);

    if (c->end_evict) {
        atomic_fetch_add_explicit(&srv->stats.evictions[evict_reason(c->end_reason)], 1,
                                  memory_order_relaxed);
        vg_log(VG_LOG_WARN, "evict", "reason=%s client=%llu addr=%s name=%s%s%s", c->end_reason,
               (unsigned long long)c->id, c->addr, c->name, c->end_detail[0] ? " detail=" : "",
               c->end_detail);
    } else {
        vg_log(VG_LOG_INFO, "client_closed", "reason=%s client=%llu addr=%s name=%s%s%s",
               c->end_reason, (unsigned long long)c->id, c->addr, c->name,
               c->end_detail[0] ? " error=" : "", c->end_detail);
    }
    if (c->sent_fatal_err)
        linger(c);
    close(c->fd);

    pthread_mutex_lock(&srv->mu);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (--srv->nconns == 0)
        pthread_cond_broadcast(&srv->drained);
    pthread_mutex_unlock(&srv->mu);
    vg_conn_release(c);
}

/* The outbox has drained after dropping messages: say how many were lost. */
static void log_recovered(vg_conn *c)
{
    uint64_t total = vg_outbox_dropped(c->outbox);
    atomic_store(&c->dropping, false);
    vg_log(VG_LOG_WARN, "slow_consumer", "state=recovered client=%llu addr=%s dropped=%llu",
           (unsigned long long)c->id, c->addr, (unsigned long long)(total - c->drops_before));
    c->drops_before = total;
}

/* Runs the heartbeat and the stall check after a flush; returns the time the
 * thread must wake next, or ends the connection. */
static int64_t check_liveness(vg_conn *c, int64_t now)
{
    if (c->tx.window_opened) {
        c->tx.window_opened = false;
        vg_liveness_heard(c->live, now);
    }
    if (!vg_sender_busy(&c->tx) || c->tx.bytes_written != c->progress_bytes) {
        c->progress_bytes = c->tx.bytes_written;
        c->progress_at = now;
    }
    int64_t bound = vg_keepalive_bound_ms(&c->srv->cfg.keepalive);
    char detail[64];
    if (bound > 0 && vg_sender_busy(&c->tx) && now - c->progress_at >= bound) {
        snprintf(detail, sizeof detail, "output stuck for %lld ms", (long long)(now - c->progress_at));
        end(c, "slow_consumer", true, detail);
        return now;
    }

    int64_t next;
    vg_live_action a = vg_liveness_tick(c->live, now, &next);
    if (a == VG_LIVE_DEAD) {
        /* If this thread was the slow one, the answer may be waiting unread:
         * read before judging. */
        read_and_handle(c);
        if (c->end_reason != NULL)
            return now;
        a = vg_liveness_tick(c->live, now, &next);
    }
    for (; a == VG_LIVE_PROBE; a = vg_liveness_tick(c->live, now, &next)) {
        if (!c->connected)
            continue;
        if (vg_frame_put_ping(&c->tx.ctl) != VG_OK) {
            end(c, "internal", true, "out of memory");
            return now;
        }
        atomic_fetch_add_explicit(&c->srv->stats.pings_sent, 1, memory_order_relaxed);
    }
    if (!c->connected && c->srv->cfg.handshake_timeout_ms > 0) {
        int64_t due = c->born_ms + c->srv->cfg.handshake_timeout_ms;
        if (now >= due) {
            send_err(c, VG_E_TIMEOUT, "no CONNECT in time", 0);
            return now;
        }
        if (due < next)
            next = due;
    }
    if (a == VG_LIVE_DEAD) {
        snprintf(detail, sizeof detail, "silent for %lld ms",
                 (long long)(now - vg_liveness_last_heard(c->live)));
        if (c->connected)
            end(c, "heartbeat", true, detail);
        else
            send_err(c, VG_E_TIMEOUT, "no CONNECT in time", 0);
        return now;
    }
    if (bound > 0 && vg_sender_busy(&c->tx) && c->progress_at + bound < next)
        next = c->progress_at + bound;
    return next;
}

static void *conn_main(void *arg)
{
    vg_conn *c = arg;
    vg_server *srv = c->srv;
    for (;;) {
        if (atomic_load_explicit(&srv->stopping, memory_order_relaxed) && c->end_reason == NULL) {
            end(c, "shutdown", false, NULL);
            send_err(c, VG_E_SHUTDOWN, "broker shutting down", 0);
        }

        vg_status st = vg_sender_flush(&c->tx, c->fd, c->outbox, FLUSH_BUDGET);
        if (st == VG_ERR_IO)
            end(c, "error", false, strerror(errno));
        if (c->end_reason != NULL)
            break; /* the final ERR, if any, went out best effort above */
        if (c->tx.ctl.len > CTL_LIMIT) {
            end(c, "slow_consumer", true, "peer does not read its replies");
            break;
        }
        int64_t now = vg_now_ms();
        int64_t wake = check_liveness(c, now);
        if (c->end_reason != NULL)
            continue; /* one last flush of an ERR, if one was queued */
        if (vg_sender_busy(&c->tx) && st == VG_OK)
            continue; /* the heartbeat queued a PING */
        if (st == VG_OK && atomic_load_explicit(&c->dropping, memory_order_relaxed))
            log_recovered(c);
        if (st == VG_OK && !vg_outbox_park(c->outbox))
            continue; /* more was queued meanwhile */

        struct pollfd p[2] = {
            {.fd = c->fd, .events = POLLIN | (st == VG_AGAIN ? POLLOUT : 0)},
            {.fd = vg_outbox_fd(c->outbox), .events = POLLIN},
        };
        if (poll(p, 2, vg_poll_timeout(wake, now)) < 0) {
            if (errno == EINTR)
                continue;
            end(c, "error", false, strerror(errno));
            break;
        }
        if (p[1].revents & POLLIN)
            vg_outbox_drain_wakeup(c->outbox);
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            vg_outbox_unpark(c->outbox);
            read_and_handle(c);
        }
    }
    finish(c);
    return NULL;
}

vg_status vg_conn_start(vg_server *srv, int fd)
{
    vg_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        goto fail_fd;
    atomic_init(&c->refs, 1);
    c->srv = srv;
    c->fd = fd;
    vg_sock_name(fd, 1, c->addr);
    strcpy(c->name, "-");
    c->outbox = vg_outbox_create(srv->cfg.max_outbox);
    c->rx = vg_decoder_create(READ_CHUNK, VG_HANDSHAKE_MAX_FRAME);
    c->born_ms = vg_now_ms();
    c->live = vg_liveness_create(&srv->cfg.keepalive, c->born_ms);
    if (c->outbox == NULL || c->rx == NULL || c->live == NULL)
        goto fail_conn;

    pthread_mutex_lock(&srv->mu);
    if (atomic_load(&srv->stopping)) {
        pthread_mutex_unlock(&srv->mu);
        goto fail_conn;
    }
    c->id = ++srv->next_client_id;
    c->next = srv->conns;
    if (c->next != NULL)
        c->next->prev = c;
    srv->conns = c;
    srv->nconns++;
    pthread_t tid;
    int rc = pthread_create(&tid, &srv->thread_attr, conn_main, c);
    if (rc != 0) {
        srv->conns = c->next;
        if (c->next != NULL)
            c->next->prev = NULL;
        srv->nconns--;
        pthread_mutex_unlock(&srv->mu);
        vg_log(VG_LOG_WARN, "accept_failed", "addr=%s error=\"cannot start thread: %s\"", c->addr,
               strerror(rc));
        goto fail_conn;
    }
    pthread_mutex_unlock(&srv->mu);
    return VG_OK;

fail_conn:
    vg_outbox_destroy(c->outbox);
    vg_decoder_destroy(c->rx);
    vg_liveness_destroy(c->live);
    free(c);
fail_fd:
    close(fd);
    return VG_ERR_NOMEM;
}

void vg_conn_stop_all(vg_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    for (vg_conn *c = srv->conns; c != NULL; c = c->next)
        vg_outbox_close(c->outbox); /* wakes the thread, which sees srv->stopping */
    pthread_mutex_unlock(&srv->mu);
}
