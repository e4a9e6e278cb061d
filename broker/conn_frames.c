/* Frames from a client, on the connection's own thread: the handshake,
 * subscriptions, PING/PONG, and checking MSG frames before the router
 * delivers them. Every refusal is an ERR; the fatal ones end the
 * connection (docs/protocol.md has the table). */
#include "conn_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "monz.h"
#include "sublist.h"
#include "token.h"
#include "topic.h"
#include "version.h"

void vg_conn_send_err(vg_conn *c, vg_errcode code, const char *why, uint64_t sid)
{
    if (!vg_link_ctl_ok(c->link, vg_frame_put_err(vg_link_ctl(c->link), code, why, sid)))
        return;
    if (vg_errcode_is_fatal(code, sid)) {
        c->sent_fatal_err = code != VG_E_SHUTDOWN;
        vg_link_end(c->link, VG_END_ERR_SENT, code, why);
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
    vg_link_ctl_ok(c->link, vg_frame_put_ok(vg_link_ctl(c->link), sid));
}

/* ---- subscriptions ---- */

/* The subscription s is about to hold: its strings copied from f. */
static bool sub_of(const vg_frame *f, conn_sub *s)
{
    *s = (conn_sub){.sid = f->sid, .len = f->topic_len,
                    .pattern = vg_subject_is_pattern(f->topic, f->topic_len)};
    s->topic = malloc(f->topic_len);
    if (f->durable != NULL)
        s->durable = malloc(f->durable_len);
    if (f->queue != NULL)
        s->queue = malloc(f->queue_len);
    if (s->topic == NULL || (f->durable != NULL && s->durable == NULL) ||
        (f->queue != NULL && s->queue == NULL)) {
        free(s->topic);
        free(s->durable);
        free(s->queue);
        return false;
    }
    memcpy(s->topic, f->topic, f->topic_len);
    if (f->durable != NULL) {
        memcpy(s->durable, f->durable, f->durable_len);
        s->durable_len = f->durable_len;
    }
    if (f->queue != NULL) {
        memcpy(s->queue, f->queue, f->queue_len);
        s->queue_len = f->queue_len;
    }
    return true;
}

static void sub_free(conn_sub *s)
{
    free(s->topic);
    free(s->durable);
    free(s->queue);
}

static bool is_topic(const vg_frame *f, const char *topic)
{
    return f->topic_len == strlen(topic) && memcmp(f->topic, topic, f->topic_len) == 0;
}

/* The answer to subscribing to $SYS.varz, $SYS.connz or $SYS.topics: the
 * monitor's document (monz.h), published on that topic like $SYS.durables'
 * list. One over max_payload is replaced by a note saying so. */
static void publish_monz(vg_conn *c, const vg_frame *f)
{
    vg_buf doc = {0}, frame = {0};
    int64_t now = vg_now_ms();
    const char *topic;
    vg_status st;
    if (is_topic(f, VG_SYS_VARZ)) {
        topic = VG_SYS_VARZ;
        st = vg_monz_varz(c->srv, now, &doc);
    } else if (is_topic(f, VG_SYS_CONNZ)) {
        topic = VG_SYS_CONNZ;
        st = vg_monz_connz(c->srv, now, false, &doc);
    } else {
        topic = VG_SYS_TOPICS;
        st = vg_monz_topics(c->srv, &doc);
    }
    if (st == VG_OK && doc.len > c->srv->cfg.max_payload) {
        char note[160];
        int n = snprintf(note, sizeof note,
                         "{\"error\":\"the document is %zu bytes, over max_payload: ask the "
                         "HTTP monitor\"}", doc.len);
        doc.len = 0;
        st = vg_buf_append(&doc, note, (size_t)n);
    }
    if (st == VG_OK)
        st = vg_conn_publish_system(c->srv, topic, doc.data, doc.len, &frame, &c->match);
    if (st != VG_OK)
        vg_log(VG_LOG_WARN, "monitor_answer_failed", "client=%llu topic=%s error=\"out of memory\"",
               (unsigned long long)c->id, topic);
    vg_buf_free(&doc);
    vg_buf_free(&frame);
}

static void handle_sub(vg_conn *c, const vg_frame *f)
{
    vg_server_live *live = &c->srv->live; /* reloadable (server.h) */
    size_t max_len = atomic_load_explicit(&live->topic_max_len, memory_order_relaxed);
    size_t max_tokens = atomic_load_explicit(&live->topic_max_tokens, memory_order_relaxed);
    size_t max_subs = atomic_load_explicit(&live->max_subs, memory_order_relaxed);
    const char *why;
    if (f->sid == 0) {
        vg_conn_send_err(c, VG_E_BAD_FRAME, "sid 0 is reserved", 0);
        return;
    }
    if (vg_subject_check(f->topic, f->topic_len, max_len, max_tokens, &why) != VG_OK) {
        vg_conn_send_err(c, VG_E_BAD_TOPIC, why, f->sid);
        return;
    }
    if (vg_subindex_find(c->subs, f->sid) != NULL) {
        vg_conn_send_err(c, VG_E_DUPLICATE_SID, "sid already in use on this connection", f->sid);
        return;
    }
    if (vg_subindex_count(c->subs) >= max_subs) {
        if (!c->warned_subs)
            vg_log(VG_LOG_WARN, "limit", "what=subscriptions client=%llu addr=%s max_subs=%zu",
                   (unsigned long long)c->id, c->addr, max_subs);
        c->warned_subs = true;
        vg_conn_send_err(c, VG_E_LIMIT, "too many subscriptions", f->sid);
        return;
    }
    conn_sub sub;
    if (!sub_of(f, &sub))
        goto fail_nomem;
    if (sub.queue != NULL) { /* a queue group keeps its durable name itself */
        free(sub.durable);
        sub.durable = NULL;
        sub.durable_len = 0;
    }
    /* In the index first: the reader of a topic lives while a sid covers it. */
    pthread_mutex_lock(&c->mon.mu);
    vg_status ist = vg_subindex_add(c->subs, &sub);
    pthread_mutex_unlock(&c->mon.mu);
    if (ist != VG_OK) {
        sub_free(&sub);
        goto fail_nomem;
    }
    uint64_t next = 0;
    size_t mark = 0; /* version 2, not a queue: logs made from here on, settled below */
    if (c->version >= 2 && sub.queue == NULL)
        mark = vg_logs_count(c->srv->logs);
    if (c->version >= 2) {
        /* Before the table: a message appended in between is in the log
         * after the cursor's position, and the fill reads it. */
        vg_status st = sub.queue != NULL ? vg_queue_attach(c, f, vg_subindex_find(c->subs, f->sid),
                                                          &next)
                       : sub.durable != NULL && sub.pattern ? vg_durable_attach_pattern(c, f, &sub)
                       : sub.durable != NULL ? vg_durable_attach(c, f, &sub, &next)
                       : sub.pattern         ? vg_reader_attach_pattern(c, f)
                                             : vg_reader_attach(c, f, sub.topic, sub.len, &next);
        if (st != VG_OK) {
            pthread_mutex_lock(&c->mon.mu);
            vg_subindex_remove(c->subs, f->sid, &sub);
            pthread_mutex_unlock(&c->mon.mu);
            if (sub.queue == NULL)
                vg_reader_detach(c, sub.topic, sub.len, sub.pattern);
            sub_free(&sub);
            if (st == VG_ERR_ARG) {
                vg_conn_send_err(c, VG_E_BAD_POSITION, "position past the end", f->sid);
                return;
            }
            goto fail_nomem;
        }
    }
    /* Several sids may name one subject; the table holds the connection
     * once per subject, and a match lists it once whatever the number of
     * its subjects that match, so each message is delivered to it once. */
    if (vg_subindex_refs(c->subs, sub.topic, sub.len, sub.queue, sub.queue_len) == 1 &&
        vg_sublist_add(c->srv->subs, sub.topic, sub.len, sub.queue, sub.queue_len, c) != VG_OK) {
        pthread_mutex_lock(&c->mon.mu);
        vg_subindex_remove(c->subs, f->sid, &sub);
        pthread_mutex_unlock(&c->mon.mu);
        if (c->version >= 2 && sub.queue == NULL)
            vg_reader_detach(c, sub.topic, sub.len, sub.pattern);
        if (sub.durable != NULL)
            vg_durable_detach(c, &sub, false);
        vg_queue_detach(c, &sub, false);
        sub_free(&sub);
        goto fail_nomem;
    }
    if (c->version >= 2 && sub.queue == NULL)
        vg_reader_settle(c, sub.topic, sub.len, mark);
    if (c->version >= 2)
        vg_link_ctl_ok(c->link, vg_frame_put_ok2(vg_link_ctl(c->link), f->sid,
                                                 vg_logs_epoch(c->srv->logs), next));
    else
        send_ok(c, f->sid);
    if (is_topic(f, VG_SYS_DURABLES))
        vg_durable_publish_list(c); /* the answer to subscribing */
    else if (is_topic(f, VG_SYS_VARZ) || is_topic(f, VG_SYS_CONNZ) || is_topic(f, VG_SYS_TOPICS))
        publish_monz(c, f);
    if (vg_log_enabled(VG_LOG_DEBUG)) {
        char t[80];
        vg_log(VG_LOG_DEBUG, "subscribed", "client=%llu sid=%llu topic=%s",
               (unsigned long long)c->id, (unsigned long long)f->sid,
               vg_log_quote(t, sizeof t, f->topic, f->topic_len));
    }
    return;

fail_nomem:
    vg_conn_send_err(c, VG_E_INTERNAL, "broker out of memory", 0);
}

static void handle_unsub(vg_conn *c, const vg_frame *f)
{
    if (f->sid == 0) {
        vg_conn_send_err(c, VG_E_BAD_FRAME, "sid 0 is reserved", 0);
        return;
    }
    conn_sub *s = vg_subindex_find(c->subs, f->sid);
    if (s == NULL) {
        vg_conn_send_err(c, VG_E_NO_SUCH_SID, "no subscription with that sid", f->sid);
        return;
    }
    if (s->durable != NULL)
        vg_durable_detach(c, s, f->delete_durable);
    vg_queue_detach(c, s, f->delete_durable);
    vg_conn_remove_sub(c, f->sid);
    send_ok(c, f->sid);
}

void vg_conn_remove_sub(vg_conn *c, uint64_t sid)
{
    conn_sub gone;
    pthread_mutex_lock(&c->mon.mu);
    bool had = vg_subindex_remove(c->subs, sid, &gone);
    pthread_mutex_unlock(&c->mon.mu);
    if (!had)
        return;
    if (vg_subindex_refs(c->subs, gone.topic, gone.len, gone.queue, gone.queue_len) == 0)
        vg_sublist_remove(c->srv->subs, gone.topic, gone.len, gone.queue, gone.queue_len, c);
    if (c->version >= 2 && gone.queue == NULL)
        vg_reader_detach(c, gone.topic, gone.len, gone.pattern);
    sub_free(&gone);
}

/* ---- the handshake ---- */

static void handle_connect(vg_conn *c, const vg_frame *f)
{
    if (f->version < 1) {
        vg_conn_send_err(c, VG_E_VERSION, "protocol version must be 1 or later", 0);
        return;
    }
    if (f->name_len > VG_NAME_MAX_LEN) {
        vg_conn_send_err(c, VG_E_BAD_FRAME, "client name too long", 0);
        return;
    }
    free(c->mon.name); /* a CONNECT before that was refused: not ready, unread */
    c->mon.name = NULL;
    if (f->name_len > 0 && (c->mon.name = malloc(f->name_len)) == NULL) {
        vg_conn_send_err(c, VG_E_INTERNAL, "broker out of memory", 0);
        return;
    }
    if (f->name_len > 0)
        memcpy(c->mon.name, f->name, f->name_len); /* at most VG_NAME_MAX_LEN: checked above */
    c->mon.name_len = (uint32_t)f->name_len;
    c->named = true;
    const vg_broker_config *cfg = &c->srv->cfg;
    if (!vg_server_token_ok(c->srv, f->token, f->token_len)) {
        vg_conn_send_err(c, VG_E_AUTH, "authentication failed", 0); /* the same for missing and wrong */
        return;
    }
    /* A later client's CONNECT gets INFO of the highest version both
     * speak; a version-1 one gets today's version-1 behaviour, unchanged. */
    vg_status st;
    if (f->version >= 2) {
        c->version = 2;
        vg_reader_source(c, &vg_link_sender(c->link)->src); /* its topic logs, no outbox */
        c->publisher = f->publisher;
        c->pub_next = f->resend_from > 0 ? f->resend_from : 1;
        uint64_t acked = 0;
        if (c->publisher != 0) {
            pthread_mutex_lock(&c->srv->dedupe_mu);
            acked = vg_dedupe_acked(c->srv->dedupe, c->publisher, vg_now_ms());
            pthread_mutex_unlock(&c->srv->dedupe_mu);
        }
        st = vg_frame_put_info2(vg_link_ctl(c->link), 2, "vigil " VG_VERSION, c->id,
                                cfg->max_payload, vg_logs_epoch(c->srv->logs), acked);
    } else {
        c->version = 1;
        st = vg_frame_put_info(vg_link_ctl(c->link), VG_PROTO_V1, "vigil " VG_VERSION, c->id,
                               cfg->max_payload);
    }
    if (!vg_link_ctl_ok(c->link, st))
        return;
    vg_link_set_max_frame(c->link, c->version >= 2 ? vg_max_frame_for_v2(cfg->max_payload)
                                                   : vg_max_frame_for(cfg->max_payload));
    vg_link_hold_bulk(c->link, false);
    vg_link_set_heartbeat(c->link, true, vg_now_ms());
    c->connected = true;
    c->mon.version = c->version;
    atomic_store_explicit(&c->mon.ready, true, memory_order_release);
    char name[VG_CONN_LOG_NAME];
    vg_log(VG_LOG_INFO, "client_connected", "client=%llu addr=%s version=%u name=%s",
           (unsigned long long)c->id, c->addr, (unsigned)c->version, vg_conn_log_name(c, name));
}

/* ---- dispatch ---- */

/* Why a frame in a version-2 shape cannot be taken from this client, or
 * NULL. On a version-1 connection (or before CONNECT) every version-2
 * shape is refused as a malformed frame would be; a version-2 CONNECT is
 * the negotiation itself and is accepted (handle_connect). On a version-2
 * connection a client may send the version-2 SUB; it never sends OK, GAP
 * or a MSG with a sequence number, which are the broker's. */
static const char *shape_refusal(const vg_conn *c, const vg_frame *f)
{
    if (f->form < 2)
        return NULL;
    bool v2 = c->version >= 2;
    switch (f->type) {
    case VG_FRAME_SUB: return v2 ? NULL : "SUB with a start position on a version-1 connection";
    case VG_FRAME_UNSUB: return v2 ? NULL : "UNSUB with a delete flag on a version-1 connection";
    case VG_FRAME_ACK: return v2 ? NULL : "ACK on a version-1 connection";
    case VG_FRAME_POS: return v2 ? NULL : "POS on a version-1 connection";
    case VG_FRAME_OK: return "OK with a position from a client";
    case VG_FRAME_GAP: return "GAP from a client";
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2: return "MSG with a sequence number from a client";
    default: return NULL;
    }
}

/* Checks a MSG frame; false (and a fatal ERR) if it may not be delivered. */
static bool publish_ok(vg_conn *c, const vg_frame *f)
{
    const vg_broker_config *cfg = &c->srv->cfg;
    const char *why;
    if (f->payload_len > cfg->max_payload) {
        vg_conn_send_err(c, VG_E_TOO_LARGE, "payload exceeds max_payload", 0);
        return false;
    }
    vg_server_live *live = &c->srv->live; /* reloadable (server.h) */
    if (vg_topic_check(f->topic, f->topic_len,
                       atomic_load_explicit(&live->topic_max_len, memory_order_relaxed),
                       atomic_load_explicit(&live->topic_max_tokens, memory_order_relaxed),
                       &why) != VG_OK) {
        vg_conn_send_err(c, VG_E_BAD_TOPIC, why, 0);
        return false;
    }
    if (vg_topic_is_system(f->topic, f->topic_len)) {
        vg_conn_send_err(c, VG_E_PERMISSION, "$SYS topics are the broker's own", 0);
        return false;
    }
    return true;
}

/* Registers c with the store to be woken when pong_lsn is synced. */
static void confirm_wait(vg_conn *c)
{
    if (atomic_exchange(&c->pong_waiting, true))
        return;
    vg_conn_retain(c);
    if (!vg_store_wait(c->srv->store, c->pong_lsn, c)) { /* synced meanwhile */
        atomic_store(&c->pong_waiting, false);
        vg_conn_release(c);
    }
}

void vg_conn_on_ping(vg_conn *c)
{
    vg_store *store = c->srv->store;
    if (store != NULL && vg_store_holds(store) &&
        (c->pongs_owed > 0 || c->store_lsn > vg_store_synced(store))) {
        c->pongs_owed++; /* after the owed ones, whatever its own position */
        c->pong_lsn = c->store_lsn;
        confirm_wait(c);
        return;
    }
    if (store != NULL && vg_store_holds(store) && c->store_lsn > vg_store_synced(store))
        vg_store_note_early(store); /* cannot happen: counted to prove it */
    vg_link_ctl_ok(c->link, vg_frame_put_pong(vg_link_ctl(c->link)));
}

void vg_conn_flush_pongs(vg_conn *c)
{
    if (c->pongs_owed == 0)
        return;
    vg_store *store = c->srv->store;
    if (vg_store_synced(store) < c->pong_lsn) {
        confirm_wait(c); /* woken for an older position: wait on */
        return;
    }
    for (; c->pongs_owed > 0; c->pongs_owed--) {
        if (vg_store_synced(store) < c->pong_lsn)
            vg_store_note_early(store); /* cannot happen: counted to prove it */
        if (!vg_link_ctl_ok(c->link, vg_frame_put_pong(vg_link_ctl(c->link))))
            return;
    }
}

void vg_conn_on_frame(void *ud, const vg_frame *f)
{
    vg_conn *c = ud;
    const char *refused = shape_refusal(c, f);
    if (refused != NULL) {
        vg_router_flush(c); /* frames before a bad one were valid: they go out */
        vg_conn_send_err(c, VG_E_BAD_FRAME, refused, 0);
        return;
    }
    if (vg_frame_is_msg(f->type) && c->connected) {
        /* A frame that continues the run has the run's topic, already checked. */
        if ((!vg_router_extends(c, f) || f->payload_len > c->srv->cfg.max_payload) &&
            !publish_ok(c, f))
            return; /* the run so far is still delivered, at the end of this read */
        vg_router_add(c, f);
        return;
    }
    vg_router_flush(c); /* a control frame ends the run: what came before goes first */
    if (!c->connected && f->type != VG_FRAME_CONNECT) {
        vg_conn_send_err(c, VG_E_PROTOCOL, "expected CONNECT first", 0);
        return;
    }
    switch (f->type) {
    case VG_FRAME_CONNECT:
        if (c->connected)
            vg_conn_send_err(c, VG_E_PROTOCOL, "CONNECT sent twice", 0);
        else
            handle_connect(c, f);
        break;
    case VG_FRAME_PING:
        vg_conn_on_ping(c);
        break;
    case VG_FRAME_PONG: {
        atomic_fetch_add_explicit(&c->srv->stats.pongs_received, 1, memory_order_relaxed);
        int64_t rtt_ns;
        if (vg_rtt_answered(&c->rtt, vg_now_ns(), &rtt_ns))
            atomic_store_explicit(&c->mon.rtt_us, rtt_ns / 1000, memory_order_relaxed);
        break;
    }
    case VG_FRAME_SUB:
        atomic_fetch_add_explicit(&c->srv->stats.sub_changes, 1, memory_order_relaxed);
        handle_sub(c, f);
        break;
    case VG_FRAME_UNSUB:
        atomic_fetch_add_explicit(&c->srv->stats.sub_changes, 1, memory_order_relaxed);
        handle_unsub(c, f);
        break;
    case VG_FRAME_ACK:
        if (!vg_queue_on_ack(c, f))
            vg_durable_on_ack(c, f);
        break;
    case VG_FRAME_POS:
        vg_reader_on_pos(c, f);
        break;
    default:
        vg_conn_send_err(c, VG_E_PROTOCOL, "frame type not accepted from clients", 0);
        break;
    }
}

void vg_conn_on_read_end(void *ud) { vg_router_read_end(ud); }

void vg_conn_on_bad_input(void *ud, vg_status st, const char *why)
{
    vg_conn *c = ud;
    vg_router_flush(c); /* frames before a bad one were valid: they go out */
    vg_errcode code = st == VG_ERR_TOO_LARGE      ? VG_E_TOO_LARGE
                      : st == VG_ERR_UNKNOWN_TYPE ? VG_E_UNKNOWN_TYPE
                                                  : VG_E_BAD_FRAME;
    vg_conn_send_err(c, code, why, 0);
}
