/* One broker connection and the thread that owns its socket.
 *
 * The thread is the only one that reads or writes the socket (common/link.c
 * runs the loop). Publishers on other threads reach it through its outbox:
 * they append already-encoded frames and, if this thread sleeps, wake it
 * (router.c). Frames from the client are handled in conn_frames.c.
 *
 * Lifetime: the thread holds a reference; a publisher's match cache holds
 * one per subscriber it lists (sublist.h), dropped when a change to the
 * table makes the entry stale and the publisher refills or sweeps it. When
 * the connection ends, the thread closes the outbox and leaves the
 * subscription table before dropping its reference, so no new delivery
 * can start: a stale cache entry may still name it, and finds its outbox
 * closed.
 *
 * Liveness (link.c): a client silent for time + probes x interval is
 * evicted (reason=heartbeat); one that has not acknowledged our output for
 * that long while we have data for it is evicted as a slow consumer even if
 * it keeps sending. Only what the client did counts: bytes from it, and its
 * TCP acknowledgements of our data. */
#include "conn_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "sublist.h"

#define READ_CHUNK (64 * 1024) /* the decoder starts with 1 KiB reads: idle connections stay small */
#define READS_PER_WAKE 4
#define FLUSH_BUDGET (1024 * 1024)
#define CTL_LIMIT (256 * 1024) /* replies owed to a peer that does not read them */
#define LINGER_MS 1000
/* The monitor's lag figure: recomputed on every round for at most this many
 * cursors (a few atomic loads), else at most every LAG_REFRESH_MS. */
#define LAG_EVERY_ROUND 64
#define LAG_REFRESH_MS 250

void vg_conn_retain(void *c) { atomic_fetch_add_explicit(&((vg_conn *)c)->refs, 1, memory_order_relaxed); }

void vg_conn_release(vg_conn *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    vg_link_destroy(c->link);
    vg_outbox_destroy(c->outbox);
    vg_subindex_destroy(c->subs);
    free(c->pos); /* their topics went with vg_reader_free_all */
    vg_reader_free_all(c);
    vg_queue_free(c);
    pthread_mutex_destroy(&c->fresh_mu);
    pthread_mutex_destroy(&c->mon.mu);
    free(c->mon.name);
    free(c->fresh);
    free(c->run.msgs);
    free(c->defer);
    free(c->defer_slot);
    free(c);
}

void vg_conn_release_member(void *c) { vg_conn_release(c); }

const char *vg_conn_log_name(const vg_conn *c, char *buf)
{
    if (!c->named)
        return strcpy(buf, "-");
    return vg_log_quote(buf, VG_CONN_LOG_NAME, c->mon.name != NULL ? c->mon.name : "",
                        c->mon.name_len);
}

void vg_conn_topic_created(vg_conn *c, vg_tlog *log)
{
    if (c->version >= 2)
        vg_reader_fresh(c, log);
}

void vg_conn_kick_reader(vg_conn *c)
{
    if (c->version >= 2)
        vg_reader_kick(c);
}

void vg_conn_confirm_ready(vg_conn *c)
{
    atomic_store(&c->pong_waiting, false);
    vg_outbox_wake(c->outbox);
    vg_conn_release(c);
}

/* ---- the thread ---- */

/* The $SYS.stats bucket of an ending, and whether it is an eviction at all
 * (a client that closed, a socket error or a shutdown is not). */
static bool eviction_bucket(vg_end e, vg_evict_reason *bucket)
{
    switch (e.kind) {
    case VG_END_HEARTBEAT: *bucket = VG_EVICT_HEARTBEAT; return true;
    case VG_END_STUCK:
    case VG_END_UNREAD: *bucket = VG_EVICT_SLOW_CONSUMER; return true;
    case VG_END_NOMEM: *bucket = VG_EVICT_INTERNAL; return true;
    case VG_END_TIMEOUT: *bucket = VG_EVICT_TIMEOUT; return true;
    case VG_END_PROTOCOL: *bucket = VG_EVICT_PROTOCOL; return true;
    case VG_END_ERR_SENT:
        switch (e.code) {
        case VG_E_SHUTDOWN: return false;
        case VG_E_LIMIT: *bucket = VG_EVICT_LIMIT; return true;
        case VG_E_AUTH: *bucket = VG_EVICT_AUTH; return true;
        case VG_E_TIMEOUT: *bucket = VG_EVICT_TIMEOUT; return true;
        case VG_E_INTERNAL:
        case VG_E_STORAGE: *bucket = VG_EVICT_INTERNAL; return true;
        case VG_E_SLOW_CONSUMER: *bucket = VG_EVICT_SLOW_CONSUMER; return true;
        default: *bucket = VG_EVICT_PROTOCOL; return true;
        }
    case VG_END_NONE:
    case VG_END_EOF:
    case VG_END_IO:
    case VG_END_ERR_RECEIVED:
    case VG_END_STOP: return false;
    }
    return false;
}

/* The outbox has drained and nothing was dropped for a while: say how many
 * messages the episode lost. */
static void log_recovered(vg_conn *c)
{
    uint64_t total = vg_outbox_dropped(c->outbox);
    atomic_store(&c->dropping, false);
    vg_log(VG_LOG_WARN, "slow_consumer", "state=recovered client=%llu addr=%s dropped=%llu",
           (unsigned long long)c->id, c->addr, (unsigned long long)(total - c->drops_before));
    c->drops_before = total;
}

/* Refreshes what the monitor reads of this connection (conn_mon): the
 * last time the client was heard, on every round, and the lag behind the
 * logs, on every round for a few cursors, else at most every LAG_REFRESH_MS
 * (then one more round at that deadline, so the figure is never older).
 * Returns the deadline it needs (INT64_MAX: none). */
static int64_t refresh_mon(vg_conn *c, int64_t now)
{
    atomic_store_explicit(&c->mon.heard_ms, vg_link_last_heard(c->link), memory_order_relaxed);
    if (c->nreaders > LAG_EVERY_ROUND && now < c->lag_due)
        return c->lag_due;
    uint64_t lag = vg_reader_lag(c);
    atomic_store_explicit(&c->mon.lag, lag, memory_order_relaxed);
    if (c->nreaders <= LAG_EVERY_ROUND)
        return INT64_MAX;
    c->lag_due = now + LAG_REFRESH_MS;
    return lag > 0 ? c->lag_due : INT64_MAX;
}

/* The connection's own timers: shutdown, the handshake deadline, the end
 * of a slow-consumer episode and the monitor's figures. Returns the next
 * deadline. */
static int64_t on_tick(void *ud, int64_t now)
{
    vg_conn *c = ud;
    vg_server *srv = c->srv;
    if (atomic_load_explicit(&srv->stopping, memory_order_relaxed)) {
        vg_conn_send_err(c, VG_E_SHUTDOWN, "broker shutting down", 0);
        return now;
    }
    int64_t next = refresh_mon(c, now);
    vg_conn_flush_pongs(c);
    vg_durable_check(c);
    int64_t expire_at = vg_queue_tick(c, now);
    next = expire_at < next ? expire_at : next;
    if (c->match != NULL) /* references to subscribers that left go */
        vg_sublist_cache_sweep(c->match);
    int64_t handshake_ms =
        atomic_load_explicit(&srv->live.handshake_timeout_ms, memory_order_relaxed);
    if (!c->connected && handshake_ms > 0) {
        int64_t limit = handshake_ms;
        int64_t bound = vg_keepalive_bound_ms(&srv->cfg.keepalive);
        if (bound > 0 && bound < limit)
            limit = bound;
        if (now >= c->born_ms + limit) {
            vg_conn_send_err(c, VG_E_TIMEOUT, "no CONNECT in time", 0);
            return now;
        }
        if (c->born_ms + limit < next)
            next = c->born_ms + limit;
    }
    if (atomic_load_explicit(&c->dropping, memory_order_relaxed)) {
        int64_t quiet_at = atomic_load_explicit(&c->last_drop_ms, memory_order_relaxed) + VG_DROP_HOLD_MS;
        if (now < quiet_at)
            next = next < quiet_at ? next : quiet_at;
        else if (!vg_sender_busy(vg_link_sender(c->link)) && vg_outbox_bytes(c->outbox) == 0)
            log_recovered(c);
        /* else: not drained yet; the next flush round comes back here */
    }
    return next;
}

static void on_probe(void *ud, int probe, int64_t silent_ms)
{
    (void)probe, (void)silent_ms;
    vg_conn *c = ud;
    atomic_fetch_add_explicit(&c->srv->stats.pings_sent, 1, memory_order_relaxed);
    vg_rtt_sent(&c->rtt, vg_now_ns()); /* every PING of ours goes through here */
}

static const vg_link_ops conn_ops = {
    .on_frame = vg_conn_on_frame,
    .on_read_end = vg_conn_on_read_end,
    .on_bad_input = vg_conn_on_bad_input,
    .on_tick = on_tick,
    .on_probe = on_probe,
};

/* After the connection ended: stop deliveries to it, log one line, say
 * goodbye properly, unregister, drop the thread's reference. */
static void finish(vg_conn *c, vg_end e)
{
    vg_server *srv = c->srv;
    vg_outbox_close(c->outbox); /* after it, no publisher writes for us (lent_write) */
    vg_router_read_end(c);      /* wakes whom its last read reached; their references go */
    vg_queue_close(c);          /* no pump puts for us: what is in flight goes to others */
    vg_queue_leave_all(c);
    vg_durable_leave_all(c);    /* their positions stay for the next connection */
    for (size_t i = 0; i < vg_subindex_count(c->subs); i++) {
        const conn_sub *s = vg_subindex_at(c->subs, i);
        vg_sublist_remove(srv->subs, s->topic, s->len, s->queue, s->queue_len, c);
    }
    /* The cursors' pins go now, while the topic logs surely exist: once
     * this thread leaves the registry, a stopping server may free them. */
    vg_reader_free_all(c);
    /* Its references to subscribers, c itself perhaps among them. */
    vg_sublist_cache_destroy(c->match);
    c->match = NULL;

    const char *detail = vg_link_end_detail(c->link);
    char name[VG_CONN_LOG_NAME];
    vg_conn_log_name(c, name);
    vg_evict_reason bucket;
    if (eviction_bucket(e, &bucket)) {
        atomic_fetch_add_explicit(&srv->stats.evictions[bucket], 1, memory_order_relaxed);
        vg_log(VG_LOG_WARN, "evict", "reason=%s client=%llu addr=%s name=%s%s%s", vg_end_name(e),
               (unsigned long long)c->id, c->addr, name, detail[0] ? " detail=" : "", detail);
    } else {
        vg_log(VG_LOG_INFO, "client_closed", "reason=%s client=%llu addr=%s name=%s%s%s",
               vg_end_name(e), (unsigned long long)c->id, c->addr, name,
               detail[0] ? " error=" : "", detail);
    }
    if (c->sent_fatal_err)
        vg_link_linger(c->link, LINGER_MS);
    vg_link_detach(c->link); /* closes the socket */
    vg_registry_remove(c);
    vg_conn_release(c);
}

static void *conn_main(void *arg)
{
    vg_conn *c = arg;
    vg_link_attach(c->link, c->fd, c->born_ms); /* from here on the socket is this thread's */
    c->fd = -1;
    vg_end e = vg_link_run(c->link, &conn_ops, c);
    finish(c, e);
    return NULL;
}

vg_status vg_conn_start(vg_server *srv, int fd)
{
    vg_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        goto fail_refuse;
    atomic_init(&c->refs, 1);
    c->srv = srv;
    c->fd = fd;
    vg_sock_name(fd, 1, c->addr);
    c->born_ms = vg_now_ms();
    c->outbox = vg_outbox_create(srv->cfg.max_outbox);
    c->subs = vg_subindex_create();
    pthread_mutex_init(&c->fresh_mu, NULL);
    pthread_mutex_init(&c->mon.mu, NULL);
    atomic_init(&c->mon.rtt_us, -1);
    atomic_init(&c->mon.heard_ms, c->born_ms);
    vg_rtt_init(&c->rtt);
    vg_queue_init(c);
    vg_link_config lc = {
        .read_chunk = READ_CHUNK,
        .reads_per_wake = READS_PER_WAKE,
        .max_frame = VG_HANDSHAKE_MAX_FRAME,
        .flush_budget = FLUSH_BUDGET,
        .ctl_limit = CTL_LIMIT,
        .keepalive = srv->cfg.keepalive,
        .timerfd = false, /* the server wakes every connection after a suspend */
        /* An isolated message to a sleeping subscriber goes out on the
         * publisher's thread (outbox.h): one wake-up and one hop less, the
         * difference between beating nats-server's latency and not
         * (docs/performance.md). */
        .lend = true,
    };
    c->link = c->outbox != NULL && c->subs != NULL ? vg_link_create(&lc, c->outbox) : NULL;
    if (c->link == NULL)
        goto fail_free;
    int rc = vg_registry_start(c, conn_main); /* logs a change of state */
    if (rc != 0) {
        vg_link_destroy(c->link);
        vg_outbox_destroy(c->outbox);
        vg_subindex_destroy(c->subs);
        pthread_mutex_destroy(&c->fresh_mu);
        pthread_mutex_destroy(&c->mon.mu);
        vg_queue_free(c);
        free(c);
        if (rc == ESHUTDOWN)
            vg_conn_refuse(srv, fd, VG_E_SHUTDOWN, "broker shutting down");
        else
            vg_conn_refuse(srv, fd, VG_E_LIMIT, "broker cannot start a thread for more connections");
        return VG_ERR_FULL;
    }
    return VG_OK;

fail_free:
    vg_link_destroy(c->link);
    vg_outbox_destroy(c->outbox);
    vg_subindex_destroy(c->subs);
    pthread_mutex_destroy(&c->fresh_mu);
    pthread_mutex_destroy(&c->mon.mu);
    vg_queue_free(c);
    free(c);
fail_refuse:
    vg_conn_refuse(srv, fd, VG_E_INTERNAL, "broker out of memory");
    return VG_ERR_NOMEM;
}
