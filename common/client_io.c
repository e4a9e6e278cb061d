/* The client's I/O thread: connection attempts, the handshake, and what it
 * does with the connection (common/link.c runs the loop).
 *
 *   attempt: resolve -> connect (each address in turn) -> CONNECT/INFO
 *            -> renew subscriptions -> run until the connection ends
 *   then:    account for what the connection took with it, and either back
 *            off and try again, or give up for good
 *
 * Every wait (lookup, connect, backoff, the connection itself) also wakes
 * on the outbox's eventfd, so a stopping client stops at once.
 *
 * Delivery accounting (client_confirm.h): MSG frames are numbered in the
 * order first written, learnt from the sender's written-frame hook, which
 * also tells the subscription state machine when SUB and UNSUB frames went
 * out. Each frame written for the first time is copied (client_resend.h)
 * until the broker confirms it; a new connection sends the copies again
 * ahead of the outbox's stream, from CONNECT's resend_from, and a version-2
 * broker drops those it already has. */
#include "client_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "proto.h"
#include "sock.h"

#define HANDSHAKE_TIMEOUT_MS 10000 /* with heartbeats off; else max(bound, 1 s) */
#define ATTEMPT_LOG_EVERY_MS 10000 /* after the first three, failed attempts are logged this often */

static uint32_t next_random(vg_client *c)
{
    uint64_t x = c->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return (uint32_t)(x >> 32);
}

static bool stopping(const vg_client *c) { return atomic_load(&c->stop); }

/* Sleeps until deadline, or until fd (if >= 0) has events, or a stop.
 * True if fd is ready. */
static bool wait_for(vg_client *c, int64_t deadline, int fd, short events)
{
    while (!stopping(c)) {
        int64_t now = vg_now_ms();
        if (now >= deadline)
            return false;
        struct pollfd p[2] = {{.fd = vg_outbox_fd(c->outbox), .events = POLLIN},
                              {.fd = fd, .events = events}};
        int n = poll(p, 2, vg_poll_timeout(deadline, now));
        if (n < 0 && errno != EINTR)
            return false;
        if (p[0].revents & POLLIN)
            vg_outbox_drain_wakeup(c->outbox);
        if (fd >= 0 && p[1].revents != 0)
            return true;
    }
    return false;
}

/* ---- giving up ---- */

/* No connection will send the copies again: what they hold is unconfirmed. */
static void settle_all(vg_client *c)
{
    vg_confirm_lost(&c->tally, 0);
    vg_resend_clear(&c->resend);
    pthread_mutex_lock(&c->mu);
    c->unconfirmed = c->tally.unconfirmed;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void close_for_good(vg_client *c, const char *reason, const char *detail)
{
    settle_all(c);
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    snprintf(c->closed_reason, sizeof c->closed_reason, "%s", reason);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    vg_outbox_close(c->outbox); /* publish now fails fast with VG_ERR_CLOSED */
    vg_client_log(c, VG_LOG_ERROR, "closed", "reason=%s server=%s%s%s", reason, c->server_str,
           detail && detail[0] ? " detail=" : "", detail ? detail : "");
    if (c->opts.on_closed != NULL)
        c->opts.on_closed(c->opts.ud, reason);
}

/* ---- what the sender wrote ---- */

/* Our own encoder writes every frame as a fixarray then a fixint type, so
 * the type is the second body byte (frame.c). */
static vg_frame_type written_type(const uint8_t *frame) { return (vg_frame_type)frame[VG_FRAME_HEADER + 1]; }

void vg_client_on_written(void *ud, const uint8_t *frame, size_t len)
{
    vg_client *c = ud;
    vg_frame_type t = written_type(frame);
    if (vg_frame_is_msg(t)) {
        /* Frames up to tally.written are copies sent again. */
        if (++c->conn_pos > c->tally.written) {
            c->tally.written = c->conn_pos;
            vg_resend_add(&c->resend, c->conn_pos, frame, len);
            atomic_store_explicit(&c->written, c->tally.written, memory_order_relaxed);
        }
        return;
    }
    vg_frame f;
    const char *why;
    if (vg_frame_parse(frame + VG_FRAME_HEADER, len - VG_FRAME_HEADER, &f, &why) != VG_OK)
        return;
    pthread_mutex_lock(&c->mu);
    vg_subs_written(c->subs, f.type, f.sid);
    pthread_mutex_unlock(&c->mu);
}

/* MSG frames written once a control frame queued now goes out: after the
 * frame in progress, if any. */
static uint64_t mark_now(vg_client *c)
{
    const uint8_t *partial = vg_sender_partial_frame(vg_link_sender(c->link));
    return c->conn_pos + (partial != NULL && vg_frame_is_msg(written_type(partial)));
}

/* ---- answers from the broker ---- */

static void log_reconnected(vg_client *c)
{
    c->reconnecting = false;
    vg_client_log(c, VG_LOG_INFO, "reconnected", "server=%s attempts=%u resubscribed=%u", c->server_str,
           c->lost_attempts, c->resubscribed);
    if (c->opts.on_connection != NULL)
        c->opts.on_connection(c->opts.ud, VG_CONN_RECONNECTED, c->server_str, NULL);
}

/* An OK (ok: the frame, whose version-2 form places a SUB's position) or a
 * non-fatal ERR for sid. */
static void on_answer(vg_client *c, uint64_t sid, const vg_frame *ok, uint64_t code,
                      const char *reason)
{
    char topic[VG_TOPIC_MAX_LEN + 1] = "";
    char durable[VG_DURABLE_NAME_MAX + 1] = "";
    pthread_mutex_lock(&c->mu);
    const char *name;
    size_t nlen;
    if (vg_subs_durable(c->subs, sid, &name, &nlen)) {
        memcpy(durable, name, nlen);
        durable[nlen] = '\0';
    }
    bool deleting = vg_subs_deleting(c->subs, sid);
    vg_sub_event ev = vg_subs_answer(c->subs, sid, ok != NULL, topic, sizeof topic);
    unsigned renewing = vg_subs_renewing(c->subs);
    atomic_fetch_add(&c->subs_gen, 1);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);

    char q[96];
    vg_log_quote(q, sizeof q, topic, strlen(topic));
    if ((ev == VG_SUBEV_SUBSCRIBED || ev == VG_SUBEV_RESUBSCRIBED) && ok->form == 2)
        vg_client_position_started(c, sid, topic, strlen(topic), ok->epoch, ok->next);
    if ((ev == VG_SUBEV_SUBSCRIBED || ev == VG_SUBEV_RESUBSCRIBED) && durable[0])
        vg_client_ack_soon(c, vg_now_ms()); /* what was processed before, on this connection */
    switch (ev) {
    case VG_SUBEV_SUBSCRIBED:
        if (durable[0])
            vg_client_log(c, VG_LOG_INFO, "subscribed", "topic=%s sid=%llu durable=%s", q,
                   (unsigned long long)sid, durable);
        else
            vg_client_log(c, VG_LOG_INFO, "subscribed", "topic=%s sid=%llu", q, (unsigned long long)sid);
        break;
    case VG_SUBEV_RESUBSCRIBED:
        c->resubscribed++;
        break;
    case VG_SUBEV_REFUSED:
        vg_client_log(c, VG_LOG_ERROR, "subscribe_failed", "topic=%s sid=%llu code=%s reason=%s", q,
               (unsigned long long)sid, vg_errcode_name(code), reason);
        if (c->opts.on_sub_error != NULL)
            c->opts.on_sub_error(c->opts.ud, sid, topic, code, reason);
        break;
    case VG_SUBEV_UNSUBSCRIBED:
        if (deleting && ok != NULL)
            vg_client_log(c, VG_LOG_INFO, "durable_deleted", "topic=%s durable=%s sid=%llu", q, durable,
                   (unsigned long long)sid);
        else if (deleting)
            vg_client_log(c, VG_LOG_ERROR, "durable_delete_failed", "topic=%s durable=%s sid=%llu code=%s "
                   "reason=%s", q, durable, (unsigned long long)sid, vg_errcode_name(code), reason);
        else
            vg_client_log(c, VG_LOG_DEBUG, "unsubscribed", "topic=%s sid=%llu", q, (unsigned long long)sid);
        break;
    case VG_SUBEV_UNEXPECTED:
        /* A broken or hostile broker; nothing of ours is affected. */
        vg_client_log(c, VG_LOG_WARN, "unexpected_answer", "server=%s sid=%llu answer=%s", c->server_str,
               (unsigned long long)sid, ok != NULL ? "ok" : vg_errcode_name(code));
        return;
    }
    if (c->reconnecting && renewing == 0 &&
        (ev == VG_SUBEV_RESUBSCRIBED || ev == VG_SUBEV_REFUSED))
        log_reconnected(c);
}

/* ERR durable_taken: another connection took durable subscription sid
 * over. It has ended here: not renewed, reported once. */
static void on_taken(vg_client *c, uint64_t sid, const char *reason)
{
    char topic[VG_TOPIC_MAX_LEN + 1], durable[VG_DURABLE_NAME_MAX + 1];
    pthread_mutex_lock(&c->mu);
    bool taken = vg_subs_taken(c->subs, sid, topic, sizeof topic, durable, sizeof durable);
    if (taken) {
        atomic_fetch_add(&c->subs_gen, 1);
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    if (!taken) { /* not one of ours, or already leaving: nothing to end */
        vg_client_log(c, VG_LOG_WARN, "unexpected_answer", "server=%s sid=%llu answer=durable_taken",
               c->server_str, (unsigned long long)sid);
        return;
    }
    char q[96];
    vg_client_log(c, VG_LOG_WARN, "durable_taken", "topic=%s durable=%s sid=%llu server=%s reason=%s",
           vg_log_quote(q, sizeof q, topic, strlen(topic)), durable, (unsigned long long)sid,
           c->server_str, reason);
    if (c->opts.on_sub_error != NULL)
        c->opts.on_sub_error(c->opts.ud, sid, topic, VG_E_DURABLE_TAKEN, reason);
}

static void on_err(vg_client *c, const vg_frame *f)
{
    char reason[128];
    vg_log_quote(reason, sizeof reason, f->reason, f->reason_len);
    if (f->code == VG_E_DURABLE_TAKEN && f->sid != 0) {
        on_taken(c, f->sid, reason);
        return;
    }
    if (!vg_errcode_is_fatal(f->code, f->sid)) {
        on_answer(c, f->sid, NULL, f->code, reason);
        return;
    }
    /* The broker closes the connection after a fatal ERR: it is the reason. */
    vg_client_log(c, VG_LOG_ERROR, "server_error", "server=%s code=%s reason=%s%s", c->server_str,
           vg_errcode_name(f->code), reason,
           f->code == VG_E_STORAGE ? " detail=\"the broker could not store our messages: "
                                     "reconnecting to send the unconfirmed ones again\""
                                   : "");
    vg_link_end(c->link, VG_END_ERR_RECEIVED, f->code, NULL);
}

static void on_pong(vg_client *c)
{
    if (!vg_confirm_pong(&c->tally))
        return; /* unsolicited, or nothing new confirmed */
    vg_resend_confirmed(&c->resend, vg_confirm_settled(&c->tally));
    pthread_mutex_lock(&c->mu);
    c->confirmed = c->tally.confirmed;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static vg_status emit_renewal(void *arg, uint64_t sid, const char *topic, size_t len)
{
    vg_client *c = arg; /* under c->mu, as vg_subs_renew is */
    return vg_client_put_renewal(c, vg_link_ctl(c->link), sid, topic, len);
}

static void handshake_done(vg_client *c, const vg_frame *f)
{
    /* INFO says what both will speak. This client needs version 2 (its
     * positions and resends rely on it): a version-1 broker is refused for
     * good, as retrying cannot change its version. */
    if (f->version == VG_PROTO_V1) {
        vg_link_end(c->link, VG_END_PROTOCOL, VG_E_VERSION,
                    "the broker speaks protocol version 1; this client needs version 2 "
                    "(a vigil 0.2 broker or later)");
        return;
    }
    if (f->version != VG_PROTO_VERSION) {
        vg_link_end(c->link, VG_END_PROTOCOL, 0, "INFO names a protocol version this client lacks");
        return;
    }
    if (f->epoch == 0) {
        vg_link_end(c->link, VG_END_PROTOCOL, 0, "INFO with epoch 0");
        return;
    }
    uint64_t max = f->max_payload;
    if (max > c->opts.max_payload) { /* never trust the broker with our memory */
        vg_client_log(c, VG_LOG_WARN, "broker_limit", "server=%s max_payload=%llu using=%llu", c->server_str,
               (unsigned long long)max, (unsigned long long)c->opts.max_payload);
        max = c->opts.max_payload;
    }
    atomic_store(&c->max_payload, max);
    int64_t now = vg_now_ms();
    vg_link_set_max_frame(c->link, vg_max_frame_for_v2(max));
    vg_link_hold_bulk(c->link, false);
    vg_link_set_heartbeat(c->link, true, now);
    const vg_keepalive *k = &c->opts.keepalive;
    if (k->time_ms > 0) /* a second layer under the heartbeat: see docs/liveness.md */
        vg_sock_keepalive(vg_link_fd(c->link), k->time_ms, k->interval_ms, k->probes,
                          vg_keepalive_bound_ms(k) + k->interval_ms);
    c->handshaken = true;
    c->lost_attempts = c->attempt;
    c->attempt = 0;
    c->resubscribed = 0;
    vg_backoff_reset(c->backoff); /* only now: a refused handshake keeps backing off */
    c->conn_epoch = f->epoch;
    vg_client_positions_connected(c); /* before the renewals, which ask for positions */

    /* The copies the broker already has are confirmed now; they are sent
     * again all the same (resend_from is said), and it drops them. */
    if (vg_confirm_acked(&c->tally, f->publisher_acked) > 0)
        vg_resend_confirmed(&c->resend, vg_confirm_settled(&c->tally));

    unsigned renewals = 0;
    pthread_mutex_lock(&c->mu);
    c->handshakes++;
    c->confirmed = c->tally.confirmed;
    vg_status st = vg_subs_renew(c->subs, emit_renewal, c, &renewals);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (!vg_link_ctl_ok(c->link, st))
        return;

    char server[80];
    vg_log_quote(server, sizeof server, f->name, f->name_len);
    bool first = !c->ever_connected;
    c->ever_connected = true;
    if (first) {
        vg_client_log(c, VG_LOG_INFO, "connected", "server=%s broker=%s client_id=%llu",
                      c->server_str, server, (unsigned long long)f->client_id);
        if (c->opts.on_connection != NULL)
            c->opts.on_connection(c->opts.ud, VG_CONN_CONNECTED, c->server_str, NULL);
    }
    if (c->reconnecting && renewals == 0)
        log_reconnected(c);
}

/* ---- the link callbacks ---- */

static void on_frame(void *ud, const vg_frame *f)
{
    vg_client *c = ud;
    if (!c->handshaken && f->type != VG_FRAME_INFO && f->type != VG_FRAME_ERR &&
        f->type != VG_FRAME_PING) {
        vg_link_end(c->link, VG_END_PROTOCOL, 0, "expected INFO");
        return;
    }
    switch (f->type) { /* INFO's shape follows its version, which handshake_done checks */
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2: vg_client_deliver(c, f); break;
    case VG_FRAME_GAP: vg_client_gap_frame(c, f); break;
    case VG_FRAME_POS: vg_client_pos_frame(c, f); break;
    case VG_FRAME_PING: vg_link_ctl_ok(c->link, vg_frame_put_pong(vg_link_ctl(c->link))); break;
    case VG_FRAME_PONG: on_pong(c); break;
    case VG_FRAME_OK: on_answer(c, f->sid, f, 0, ""); break;
    case VG_FRAME_ERR: on_err(c, f); break;
    case VG_FRAME_INFO:
        if (c->handshaken)
            vg_link_end(c->link, VG_END_PROTOCOL, 0, "unexpected INFO");
        else
            handshake_done(c, f);
        break;
    default: vg_link_end(c->link, VG_END_PROTOCOL, 0, "unexpected frame type from broker"); break;
    }
}

static void on_read_end(void *ud)
{
    vg_client *c = ud;
    if (c->opts.on_batch_end != NULL)
        c->opts.on_batch_end(c->opts.ud);
}

/* Queues a PING to confirm what has been written: whenever no PING is in
 * flight and frames were written since the last one (so a steady publisher
 * learns within a round trip what the broker has, at the cost of one PING
 * per round trip at most), and when a flush waits for frames that are all
 * written (or will be, once the frame in progress completes). */
static void ping_to_confirm(vg_client *c)
{
    uint64_t mark = mark_now(c);
    if (mark <= c->tally.last_mark || !vg_confirm_room_for_flush(&c->tally))
        return;
    uint64_t target = atomic_load(&c->flush_target);
    bool flushing = target > c->tally.last_mark && mark >= target;
    if (c->tally.n > 0 && !flushing)
        return;
    if (vg_link_ctl_ok(c->link, vg_frame_put_ping(vg_link_ctl(c->link))))
        vg_confirm_ping(&c->tally, mark);
}

static int64_t on_tick(void *ud, int64_t now)
{
    vg_client *c = ud;
    if (stopping(c)) {
        /* A clean close: the ACKs owed go out (best effort) with the last
         * flush of the link, before it closes the socket. */
        if (c->handshaken && c->ack_due != INT64_MAX)
            vg_client_flush_acks(c);
        vg_link_end(c->link, VG_END_STOP, 0, NULL);
        return now;
    }
    if (!c->handshaken) {
        if (now >= c->deadline)
            vg_link_end(c->link, VG_END_TIMEOUT, 0, "no handshake in time");
        return c->deadline;
    }
    if (now >= c->ack_due && !vg_client_flush_acks(c))
        return now;
    ping_to_confirm(c);
    return c->ack_due;
}

static void on_probe(void *ud, int probe, int64_t silent_ms)
{
    vg_client *c = ud;
    vg_confirm_ping(&c->tally, mark_now(c)); /* its PONG confirms like any other */
    if (probe > 1)
        vg_client_log(c, VG_LOG_WARN, "heartbeat_missed", "server=%s unanswered=%d silent_ms=%lld",
               c->server_str, probe - 1, (long long)silent_ms);
    else if (probe == 1)
        vg_client_log(c, VG_LOG_DEBUG, "ping", "server=%s silent_ms=%lld", c->server_str, (long long)silent_ms);
}

static const vg_link_ops client_ops = {
    .on_frame = on_frame,
    .on_read_end = on_read_end,
    .on_tick = on_tick,
    .on_probe = on_probe,
};

/* ---- attempts and their end ---- */

/* Refusals that retrying cannot fix: the broker's, and a broker too old
 * (handshake_done). */
static bool permanent(vg_end e)
{
    if (e.kind == VG_END_PROTOCOL && e.code == VG_E_VERSION)
        return true;
    if (e.kind != VG_END_ERR_RECEIVED)
        return false;
    switch (e.code) {
    case VG_E_AUTH:
    case VG_E_VERSION:
    case VG_E_PERMISSION: return true;
    default: return false;
    }
}

/* Decides what follows a failed attempt or a lost connection: a backoff
 * delay (logged), or giving up, at once for a refusal retrying cannot fix
 * (refused), or once --max-reconnects is used up. */
static void after_failure(vg_client *c, const char *reason, const char *detail, bool was_connected,
                          uint64_t unconfirmed, bool refused)
{
    char d[200] = "";
    if (detail != NULL && detail[0])
        snprintf(d, sizeof d, " detail=%s", detail);
    bool give_up = refused;
    if (!give_up && c->opts.max_reconnects >= 0)
        give_up = was_connected ? c->opts.max_reconnects == 0
                                : c->attempt >= (unsigned)c->opts.max_reconnects;
    int64_t delay = give_up ? 0 : vg_backoff_next(c->backoff, next_random(c));
    char retry[40] = "";
    if (!give_up)
        snprintf(retry, sizeof retry, " retry_in_ms=%lld", (long long)delay);
    int64_t now = vg_now_ms();
    if (was_connected) {
        /* Giving up, the copies will not be sent again (close_for_good). */
        uint64_t resending = give_up ? 0 : c->resend.n;
        vg_client_log(c, VG_LOG_WARN, "disconnected",
               "reason=%s server=%s unconfirmed=%llu resending=%llu%s%s", reason, c->server_str,
               (unsigned long long)(unconfirmed + c->resend.n - resending),
               (unsigned long long)resending, retry, d);
    } else {
        /* The first attempts, then one line every ATTEMPT_LOG_EVERY_MS. */
        static _Thread_local int64_t logged_at;
        bool loud = c->attempt <= 3 || give_up || now - logged_at >= ATTEMPT_LOG_EVERY_MS;
        if (loud)
            logged_at = now;
        vg_client_log(c, loud ? VG_LOG_WARN : VG_LOG_DEBUG, "connect_failed",
               "reason=%s server=%s attempt=%u%s%s", reason, c->server_str, c->attempt, retry, d);
    }
    if (give_up) {
        close_for_good(c, refused ? reason : "max_reconnects", d[0] ? d + 8 : NULL);
        return;
    }
    c->deadline = now + delay;
}

/* The connection has ended: account for what it took with it. */
static void conn_ended(vg_client *c, vg_end e)
{
    bool was_connected = c->handshaken;
    uint64_t lost = vg_confirm_lost(&c->tally, c->resend.n);
    pthread_mutex_lock(&c->mu);
    c->unconfirmed = c->tally.unconfirmed;
    vg_subs_lost(c->subs);
    atomic_fetch_add(&c->subs_gen, 1);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    char detail[200];
    snprintf(detail, sizeof detail, "%s", vg_link_end_detail(c->link));
    vg_link_detach(c->link);
    c->handshaken = false;
    c->conn_epoch = 0;
    c->ack_pending = 0;
    c->ack_due = INT64_MAX; /* the next connection acknowledges after its renewals */
    vg_client_positions_lost(c);
    if (was_connected && c->opts.on_connection != NULL)
        c->opts.on_connection(c->opts.ud, VG_CONN_DISCONNECTED, c->server_str, vg_end_name(e));
    if (e.kind == VG_END_STOP)
        return;
    c->reconnecting = c->reconnecting || was_connected;
    after_failure(c, vg_end_name(e), detail, was_connected, lost, permanent(e));
}

/* Connects to one address, waiting until deadline; the socket, or -1 with
 * the reason in err and *timed_out set if the deadline passed. */
static int connect_to(vg_client *c, const vg_addr *a, int64_t deadline, char *err, size_t cap,
                      bool *timed_out)
{
    int fd;
    *timed_out = false;
    vg_status st = vg_connect_start(a, &fd);
    if (st == VG_AGAIN) {
        if (!wait_for(c, deadline, fd, POLLOUT)) {
            *timed_out = !stopping(c);
            snprintf(err, cap, "%s", stopping(c) ? "stopped" : "connect timed out");
            close(fd);
            return -1;
        }
        st = vg_connect_finish(fd);
        if (st != VG_OK)
            close(fd);
    }
    if (st != VG_OK) {
        snprintf(err, cap, "%s", strerror(errno));
        return -1;
    }
    return fd;
}

/* One attempt on the next server of the list: look its name up, try each
 * address, and run the connection if one answers. */
static void attempt(vg_client *c)
{
    c->attempt++;
    size_t i = c->next_server;
    c->next_server = (i + 1) % vg_servers_count(c->servers);
    snprintf(c->server_str, sizeof c->server_str, "%s", vg_servers_name(c->servers, i));
    int64_t now = vg_now_ms();
    int64_t bound = vg_keepalive_bound_ms(&c->opts.keepalive);
    c->deadline = now + (bound > 0 ? (bound > 1000 ? bound : 1000) : HANDSHAKE_TIMEOUT_MS);

    vg_resolve *r = vg_resolve_start(c->servers, i);
    if (r == NULL) {
        after_failure(c, "error", "cannot start a name lookup", false, 0, false);
        return;
    }
    if (vg_resolve_fd(r) >= 0 && !wait_for(c, c->deadline, vg_resolve_fd(r), POLLIN)) {
        vg_resolve_release(r);
        if (!stopping(c))
            after_failure(c, "timeout", "name lookup took too long", false, 0, false);
        return;
    }
    const vg_addr *found;
    size_t n;
    const char *why;
    if (vg_resolve_result(r, &found, &n, &why) != VG_OK) {
        char q[120];
        after_failure(c, "resolve", vg_log_quote(q, sizeof q, why, strlen(why)), false, 0, false);
        vg_resolve_release(r);
        return;
    }
    vg_addr addrs[VG_RESOLVE_MAX];
    memcpy(addrs, found, n * sizeof *addrs);
    vg_resolve_release(r);

    int fd = -1;
    bool timed_out = false;
    char err[96] = "";
    for (size_t k = 0; k < n && fd < 0 && !stopping(c); k++) {
        /* Each address left gets an equal share of the time left. */
        int64_t left = c->deadline - vg_now_ms();
        int64_t until = vg_now_ms() + (left > 0 ? left / (int64_t)(n - k) : 0);
        fd = connect_to(c, &addrs[k], until, err, sizeof err, &timed_out);
        if (fd < 0)
            vg_client_log(c, VG_LOG_DEBUG, "connect_address_failed", "server=%s address=%s error=\"%s\"",
                   c->server_str, vg_addr_format(&addrs[k], (char[VG_ADDR_STRLEN]){0}), err);
    }
    if (fd < 0) {
        if (!stopping(c)) {
            char q[120];
            after_failure(c, timed_out ? "timeout" : "error",
                          vg_log_quote(q, sizeof q, err, strlen(err)), false, 0, false);
        }
        return;
    }
    /* The copies go first, from the oldest unconfirmed frame, replacing
     * those of them the last connection did not finish writing. */
    size_t copies_len;
    const uint8_t *copies = vg_resend_bytes(&c->resend, &copies_len);
    if ((copies == NULL && c->resend.n > 0) ||
        vg_sender_replace_front(vg_link_sender(c->link), c->tally.written - c->conn_pos, copies,
                                copies_len) != VG_OK) {
        close(fd);
        after_failure(c, "internal", "out of memory for the frames to send again", false, 0, false);
        return;
    }
    uint64_t resend_from = c->tally.written - c->resend.n + 1;
    c->conn_pos = resend_from - 1;
    vg_client_log(c, VG_LOG_DEBUG, "connecting", "server=%s resend_from=%llu resending=%llu", c->server_str,
           (unsigned long long)resend_from, (unsigned long long)c->resend.n);
    vg_link_attach(c->link, fd, vg_now_ms());
    c->handshaken = false;
    if (vg_link_ctl_ok(c->link, vg_frame_put_connect2(vg_link_ctl(c->link), VG_PROTO_VERSION,
                                                      c->name, c->opts.token, c->publisher,
                                                      resend_from)))
        conn_ended(c, vg_link_run(c->link, &client_ops, c));
    else
        conn_ended(c, (vg_end){VG_END_NOMEM, 0});
}

void *vg_client_io_main(void *arg)
{
    vg_client *c = arg;
    bool closed = false;
    c->deadline = 0; /* the first attempt is at once */
    while (!stopping(c) && !closed) {
        if (vg_now_ms() < c->deadline) {
            wait_for(c, c->deadline, -1, 0); /* the backoff; a stop ends it */
            continue;
        }
        attempt(c);
        pthread_mutex_lock(&c->mu);
        closed = c->closed;
        pthread_mutex_unlock(&c->mu);
    }
    vg_outbox_close(c->outbox); /* release publishers waiting for room */
    settle_all(c); /* copies left from a lost connection go unsent */
    pthread_mutex_lock(&c->mu);
    if (!c->closed) {
        c->closed = true;
        snprintf(c->closed_reason, sizeof c->closed_reason, "closed");
    }
    c->stopped = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}
