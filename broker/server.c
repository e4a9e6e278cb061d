#include "server.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "frame.h"
#include "log.h"
#include "memory.h"
#include "proto.h"
#include "stats.h"
#include "token.h"

#define ACCEPT_BACKOFF_MS 100
#define RESUME_CHECK_MS 1000
#define MEMORY_CHECK_MS 1000 /* how often the load is looked at (memory.h) */
#define EXPIRE_CHECK_MS 1000 /* how late an aged log chunk may go */
/* Publishers deduplicated at once, and for how long after they were last
 * seen: JetStream's duplicate window is 2 minutes too (dedupe.h). */
#define DEDUPE_PUBLISHERS 65536
#define DEDUPE_WINDOW_MS (120 * 1000)

/* A nonzero random epoch: the identity of this process's log. A clock-
 * derived fallback if the kernel's generator fails (it does not after
 * boot), because a broker without an epoch could not serve version 2. */
static uint64_t new_epoch(void)
{
    uint64_t e = 0;
    if (getrandom(&e, sizeof e, 0) != (ssize_t)sizeof e) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        e = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    return e != 0 ? e : 1;
}

/* Store hook, commit thread: t's records are readable: kick the
 * version-2 connections that read t (reader.c) and pump the queue groups
 * that do (qgroup.h). */
static void on_released(void *ud, vg_tlog *t)
{
    vg_server *srv = ud;
    uint32_t len;
    const char *topic = vg_tlog_topic(t, &len);
    const vg_sublist_result *m;
    if (srv->commit_match == NULL)
        srv->commit_match = vg_sublist_cache_create(srv->subs);
    if (srv->commit_match == NULL)
        return; /* out of memory: they are woken by the next run or their heartbeat */
    vg_sublist_cache_sweep(srv->commit_match); /* this thread has no other tick */
    if (vg_sublist_match(srv->commit_match, topic, len, &m) != VG_OK)
        return;
    for (size_t i = 0; i < m->n; i++)
        vg_conn_kick_reader(m->members[i]);
    if (m->ngroups > 0)
        vg_conn_route_queues(srv, topic, len, t, &srv->commit_qscratch, &srv->commit_qscratch_cap);
}

/* Topic logs hook, any thread: log was just created. The version-2
 * connections whose subscriptions match it (patterns, and literals that
 * came before the log) start reading it (reader.c). Rare
 * (once per topic), so a cache of its own each time is fine. */
static void on_created(void *ud, vg_tlog *log)
{
    vg_server *srv = ud;
    uint32_t len;
    const char *topic = vg_tlog_topic(log, &len);
    const vg_sublist_result *m;
    vg_sublist_cache *cache = vg_sublist_cache_create(srv->subs);
    if (cache == NULL || vg_sublist_match(cache, topic, len, &m) != VG_OK) {
        vg_log(VG_LOG_WARN, "deliver_failed", "topic_created=1 error=\"out of memory\"");
        vg_sublist_cache_destroy(cache);
        return;
    }
    for (size_t i = 0; i < m->n; i++)
        vg_conn_topic_created(m->members[i], log);
    vg_sublist_cache_destroy(cache);
}

/* Store hook, commit thread: a connection's confirm may go now. */
static void on_wake(void *ud, void *waiter)
{
    (void)ud;
    vg_conn_confirm_ready(waiter);
}

void vg_broker_config_defaults(vg_broker_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    vg_addr_parse(VG_DEFAULT_SERVER, &cfg->listen, NULL);
    cfg->max_payload = VG_DEFAULT_MAX_PAYLOAD;
    cfg->max_outbox = 64u << 20; /* as nats-server's max_pending */
    cfg->topic_max_len = VG_DEFAULT_TOPIC_MAX_LEN;
    cfg->topic_max_tokens = VG_DEFAULT_TOPIC_MAX_TOKENS;
    cfg->keepalive = VG_KEEPALIVE_DEFAULT;
    cfg->max_connections = 65536; /* main() lowers it to what the fd limit allows */
    cfg->max_subs = 10000;
    cfg->handshake_timeout_ms = 5000;
    cfg->ack_wait_ms = 30000; /* JetStream's AckWait */
    cfg->stats_interval_ms = 5000;
    vg_logs_cfg lc;
    vg_logs_cfg_defaults(&lc);
    cfg->retention_bytes = lc.max_bytes;
    cfg->retention_age_ms = 0;
    cfg->data_dir = NULL;
    cfg->fsync = VG_FSYNC_ALWAYS;
    cfg->fsync_interval_ms = 1000;
    cfg->segment_bytes = VG_STORE_SEGMENT_DEFAULT;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    cfg->thread_stack = 1u << 20; /* sanitizers need far deeper stacks */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    cfg->thread_stack = 1u << 20;
#else
    cfg->thread_stack = 64u << 10;
#endif
#else
    cfg->thread_stack = 64u << 10;
#endif
}

void vg_server_set_limits(vg_server *srv, const vg_broker_config *cfg)
{
    vg_server_live *l = &srv->live;
    atomic_store_explicit(&l->max_connections, cfg->max_connections, memory_order_relaxed);
    atomic_store_explicit(&l->max_subs, cfg->max_subs, memory_order_relaxed);
    atomic_store_explicit(&l->topic_max_len, cfg->topic_max_len, memory_order_relaxed);
    atomic_store_explicit(&l->topic_max_tokens, cfg->topic_max_tokens, memory_order_relaxed);
    atomic_store_explicit(&l->handshake_timeout_ms, cfg->handshake_timeout_ms,
                          memory_order_relaxed);
    atomic_store_explicit(&l->stats_interval_ms, cfg->stats_interval_ms, memory_order_relaxed);
    atomic_store_explicit(&l->ack_wait_ms, cfg->ack_wait_ms, memory_order_relaxed);
}

bool vg_server_token_ok(vg_server *srv, const char *got, size_t len)
{
    pthread_mutex_lock(&srv->token_mu);
    bool ok = srv->token == NULL || vg_token_equal(srv->token, srv->token_len, got, len);
    pthread_mutex_unlock(&srv->token_mu);
    return ok;
}

void vg_server_set_token(vg_server *srv, char *token)
{
    pthread_mutex_lock(&srv->token_mu);
    char *old = srv->token;
    size_t old_len = srv->token_len;
    srv->token = token;
    srv->token_len = token != NULL ? strlen(token) : 0;
    pthread_mutex_unlock(&srv->token_mu);
    if (old != NULL) /* no thread can be comparing it any more */
        memset(old, 0, old_len);
    free(old);
}

/* Undoes the token's part of vg_server_open, for its failure paths. */
static void forget_token(vg_server *srv)
{
    vg_server_set_token(srv, NULL);
    pthread_mutex_destroy(&srv->token_mu);
}

vg_status vg_server_open(vg_server *srv, const vg_broker_config *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = *cfg;
    srv->cfg.token = NULL; /* the copy below is the one in force */
    srv->cfg.token_len = 0;
    srv->listen_fd = -1;
    vg_server_set_limits(srv, cfg);
    pthread_mutex_init(&srv->token_mu, NULL);
    if (cfg->token != NULL) {
        srv->token = strdup(cfg->token);
        if (srv->token == NULL) {
            pthread_mutex_destroy(&srv->token_mu);
            vg_log(VG_LOG_ERROR, "start_failed", "error=\"out of memory\"");
            return VG_ERR_NOMEM;
        }
        srv->token_len = strlen(srv->token);
    }
    char want[VG_ADDR_STRLEN];
    vg_addr_format(&cfg->listen, want);
    /* As deep as the kernel allows (net.core.somaxconn): thousands of clients
     * come back at once after a restart, and an overflow costs each a 1 s
     * SYN retransmission (docs/liveness.md). */
    if (vg_listen(&cfg->listen, 65535, &srv->listen_fd) != VG_OK) {
        vg_log(VG_LOG_ERROR, "listen_failed", "addr=%s error=\"%s\"", want, strerror(errno));
        forget_token(srv);
        return VG_ERR_IO;
    }
    srv->subs = vg_sublist_create(vg_conn_retain, vg_conn_release_member);
    if (srv->subs == NULL)
        goto fail_listen;
    vg_logs_cfg lc;
    vg_logs_cfg_defaults(&lc);
    lc.max_bytes = cfg->retention_bytes;
    lc.max_age_ms = cfg->retention_age_ms;
    srv->dedupe = vg_dedupe_create(DEDUPE_PUBLISHERS, DEDUPE_WINDOW_MS);
    srv->durables = vg_durables_create();
    if (srv->dedupe == NULL || srv->durables == NULL)
        goto fail_subs;
    if (cfg->data_dir != NULL) {
        vg_store_cfg sc = {
            .dir = cfg->data_dir,
            .fsync = cfg->fsync,
            .interval_ms = cfg->fsync_interval_ms,
            .segment_bytes = cfg->segment_bytes,
            .retention_bytes = cfg->retention_bytes,
            .retention_age_ms = cfg->retention_age_ms,
        };
        vg_status st = vg_store_open(&sc, &lc, srv->dedupe, srv->durables, &srv->logs, &srv->store);
        if (st != VG_OK) { /* logged */
            vg_sublist_destroy(srv->subs);
            vg_dedupe_destroy(srv->dedupe);
            vg_durables_destroy(srv->durables);
            close(srv->listen_fd);
            forget_token(srv);
            return VG_ERR_IO;
        }
        vg_store_hooks hooks = {.ud = srv, .released = on_released, .wake = on_wake};
        if (vg_store_start(srv->store, &hooks) != VG_OK) {
            vg_store_close(srv->store);
            goto fail_logs;
        }
    } else {
        srv->logs = vg_logs_create(&lc, new_epoch());
        if (srv->logs == NULL)
            goto fail_subs;
        vg_log(VG_LOG_WARN, "memory_only",
               "detail=\"no --data-dir: the log lives in memory and is lost when the broker stops\"");
    }
    vg_logs_on_create(srv->logs, on_created, srv); /* before any connection thread */
    vg_qgroups_cfg qc;
    vg_qgroups_cfg_defaults(&qc);
    vg_qgroup_ops qops;
    vg_conn_queue_ops(srv, &qops);
    srv->qgroups = vg_qgroups_create(srv->logs, &qc, &qops);
    if (srv->qgroups == NULL) {
        vg_store_close(srv->store);
        goto fail_logs;
    }
    pthread_mutex_init(&srv->dedupe_mu, NULL);
    pthread_mutex_init(&srv->mu, NULL);
    vg_cond_init(&srv->drained);
    pthread_attr_init(&srv->thread_attr);
    pthread_attr_setdetachstate(&srv->thread_attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&srv->thread_attr, cfg->thread_stack);

    vg_sock_name(srv->listen_fd, 0, srv->listen_str);
    srv->started_ms = vg_now_ms();
    const vg_keepalive *k = &cfg->keepalive;
    vg_log(VG_LOG_INFO, "listening",
           "addr=%s max_payload=%llu keepalive_ms=%lld/%lld/%d dead_after_ms=%lld "
           "max_connections=%zu auth=%s epoch=%llu retention_bytes=%llu retention_age_ms=%lld",
           srv->listen_str, (unsigned long long)cfg->max_payload, (long long)k->time_ms,
           (long long)k->interval_ms, k->probes, (long long)vg_keepalive_bound_ms(k),
           cfg->max_connections, cfg->token != NULL ? "token" : "none",
           (unsigned long long)vg_logs_epoch(srv->logs), (unsigned long long)cfg->retention_bytes,
           (long long)cfg->retention_age_ms);
    return VG_OK;

fail_logs:
    vg_logs_destroy(srv->logs);
fail_subs:
    vg_dedupe_destroy(srv->dedupe);
    vg_durables_destroy(srv->durables);
    vg_sublist_destroy(srv->subs);
fail_listen:
    close(srv->listen_fd);
    forget_token(srv);
    vg_log(VG_LOG_ERROR, "start_failed", "error=\"out of memory\"");
    return VG_ERR_NOMEM;
}

/* Whether a new connection may be served; logs entering and leaving the
 * state of refusing, not each refusal. */
static bool admit(vg_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    size_t n = srv->nconns;
    pthread_mutex_unlock(&srv->mu);
    size_t max = atomic_load_explicit(&srv->live.max_connections, memory_order_relaxed);
    bool ok = n < max;
    if (ok == !srv->at_limit)
        return ok; /* no change of state */
    if (ok)
        vg_log(VG_LOG_INFO, "connection_limit", "state=cleared connections=%zu refused=%llu", n,
               (unsigned long long)srv->refused);
    else
        vg_log(VG_LOG_WARN, "connection_limit", "state=reached connections=%zu max_connections=%zu",
               n, max);
    srv->at_limit = !ok;
    srv->refused = 0;
    return ok;
}

/* Accepts everything pending. Returns false when out of descriptors or
 * memory, so the caller stops polling the listener for a moment. */
static bool accept_pending(vg_server *srv, bool *warned)
{
    for (;;) {
        int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            *warned = false;
            if (!admit(srv)) {
                vg_conn_refuse(srv, fd, VG_E_LIMIT, "too many connections");
                srv->refused++;
                continue;
            }
            vg_sock_tune(fd);
            const vg_keepalive *k = &srv->cfg.keepalive;
            if (k->time_ms > 0) /* a second layer under the heartbeat: docs/liveness.md */
                vg_sock_keepalive(fd, k->time_ms, k->interval_ms, k->probes,
                                  vg_keepalive_bound_ms(k) + k->interval_ms);
            vg_conn_start(srv, fd);
            continue;
        }
        switch (errno) {
        case EAGAIN:
#if EAGAIN != EWOULDBLOCK
        case EWOULDBLOCK:
#endif
            return true;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            continue;
        default:
            if (!*warned) /* log the state change, not every retry */
                vg_log(VG_LOG_WARN, "accept_failed", "error=\"%s\" retry_ms=%d", strerror(errno),
                       ACCEPT_BACKOFF_MS);
            *warned = true;
            return false;
        }
    }
}

static void wait_drained(vg_server *srv, int drain_ms)
{
    struct timespec deadline = vg_deadline_after(drain_ms);
    pthread_mutex_lock(&srv->mu);
    while (srv->nconns > 0)
        if (pthread_cond_timedwait(&srv->drained, &srv->mu, &deadline) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&srv->mu);
}

/* Publishes $SYS.stats if it is due; returns when the next one is. */
static int64_t publish_stats(vg_server *srv, int64_t due, int64_t now, vg_buf *frame,
                             vg_sublist_cache **cache)
{
    int64_t interval = atomic_load_explicit(&srv->live.stats_interval_ms, memory_order_relaxed);
    if (interval <= 0)
        return INT64_MAX;
    if (now < due)
        return due;
    char json[2048];
    size_t n = vg_stats_json(srv, now, json, sizeof json);
    if (n > 0 && vg_conn_publish_system(srv, VG_STATS_TOPIC, json, n, frame, cache) != VG_OK)
        vg_log(VG_LOG_WARN, "stats_failed", "error=\"out of memory\"");
    return now + interval;
}

/* Reads the signals that arrived; returns true for a stop (SIGINT,
 * SIGTERM, or a readable pipe in tests), false after a SIGHUP, which it
 * hands to hup. */
static bool read_signals(vg_server *srv, int sig_fd, vg_server_hup_fn *hup, void *ud)
{
    struct signalfd_siginfo si;
    ssize_t n = read(sig_fd, &si, sizeof si);
    if (n != (ssize_t)sizeof si)
        return true; /* a pipe, or EOF: stop */
    if (si.ssi_signo != SIGHUP)
        return true;
    if (hup != NULL)
        hup(ud, srv);
    else
        vg_log(VG_LOG_INFO, "sighup", "action=none");
    return false;
}

/* A CLOCK_BOOTTIME timer firing every RESUME_CHECK_MS: after a suspend it
 * fires at once, and the connection threads, whose poll timeouts stop
 * counting during a suspend, are woken to look at their deadlines. -1 if
 * it cannot be made (then a deadline can be late by the suspend's length). */
static int resume_timer(void)
{
    int fd = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = {
        .it_interval = {RESUME_CHECK_MS / 1000, (RESUME_CHECK_MS % 1000) * 1000000},
        .it_value = {RESUME_CHECK_MS / 1000, (RESUME_CHECK_MS % 1000) * 1000000},
    };
    if (fd >= 0 && timerfd_settime(fd, 0, &its, NULL) != 0) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        vg_log(VG_LOG_WARN, "resume_watch_failed", "error=\"%s\"", strerror(errno));
    return fd;
}

static void check_resume(vg_server *srv, int tfd, int64_t *offset)
{
    uint64_t expirations;
    ssize_t ignored = read(tfd, &expirations, sizeof expirations);
    (void)ignored;
    struct timespec b, m;
    clock_gettime(CLOCK_BOOTTIME, &b);
    clock_gettime(CLOCK_MONOTONIC, &m);
    int64_t slept = vg_clock_suspended_ms(offset, (int64_t)b.tv_sec * 1000000000 + b.tv_nsec,
                                          (int64_t)m.tv_sec * 1000000000 + m.tv_nsec);
    if (slept == 0)
        return;
    vg_log(VG_LOG_INFO, "resumed", "suspended_ms=%lld", (long long)slept);
    vg_conn_wake_all(srv);
}

void vg_server_run(vg_server *srv, int sig_fd, int drain_ms, vg_server_hup_fn *hup, void *ud)
{
    bool warned = false;
    int tfd = resume_timer();
    int64_t offset = 0;
    struct pollfd p[3] = {{.fd = srv->listen_fd, .events = POLLIN},
                          {.fd = sig_fd, .events = POLLIN},
                          {.fd = tfd, .events = POLLIN}};
    vg_buf frame = {0};
    vg_sublist_cache *match = NULL; /* this thread's, for $SYS.stats */
    int64_t interval = atomic_load_explicit(&srv->live.stats_interval_ms, memory_order_relaxed);
    int64_t stats_due = srv->started_ms + interval;
    vg_memory_idle idle = {0};
    int64_t expire_due = 0;
    if (tfd >= 0)
        check_resume(srv, tfd, &offset); /* the first reading of the clocks' gap */
    for (;;) {
        int64_t now = vg_now_ms();
        stats_due = publish_stats(srv, stats_due, now, &frame, &match);
        if (match != NULL)
            vg_sublist_cache_sweep(match);
        /* Once load has dropped after a spike, give the freed memory back
         * (memory.h). next_client_id is written on this thread only. */
        /* Subscription churn counts as work too: 100,000 of them come and go. */
        uint64_t msgs = atomic_load_explicit(&srv->stats.msgs_in, memory_order_relaxed) +
                        atomic_load_explicit(&srv->stats.msgs_out, memory_order_relaxed) +
                        atomic_load_explicit(&srv->stats.sub_changes, memory_order_relaxed);
        if (vg_memory_idle_tick(&idle, now, msgs, srv->next_client_id))
            vg_memory_release();
        if (srv->cfg.retention_age_ms > 0 && now >= expire_due) {
            vg_logs_expire(srv->logs, now);
            expire_due = now + EXPIRE_CHECK_MS;
        }
        int64_t wake = p[0].events ? stats_due : now + ACCEPT_BACKOFF_MS;
        if (wake > stats_due)
            wake = stats_due;
        if (wake > now + MEMORY_CHECK_MS) /* also EXPIRE_CHECK_MS */
            wake = now + MEMORY_CHECK_MS;
        int n = poll(p, 3, vg_poll_timeout(wake, now));
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && p[1].revents) {
            if (read_signals(srv, sig_fd, hup, ud))
                break;
            /* A reloaded interval counts from now (this thread alone writes it). */
            int64_t was = interval;
            interval = atomic_load_explicit(&srv->live.stats_interval_ms, memory_order_relaxed);
            if (interval != was)
                stats_due = interval > 0 ? vg_now_ms() + interval : INT64_MAX;
        }
        if (n > 0 && (p[2].revents & POLLIN))
            check_resume(srv, tfd, &offset);
        if ((n > 0 && p[0].revents) || !p[0].events)
            p[0].events = accept_pending(srv, &warned) ? POLLIN : 0;
    }
    vg_buf_free(&frame);
    vg_sublist_cache_destroy(match);
    if (tfd >= 0)
        close(tfd);

    close(srv->listen_fd);
    srv->listen_fd = -1;
    pthread_mutex_lock(&srv->mu);
    size_t clients = srv->nconns;
    pthread_mutex_unlock(&srv->mu);
    vg_log(VG_LOG_INFO, "shutting_down", "clients=%zu", clients);
    atomic_store(&srv->stopping, true);
    vg_conn_stop_all(srv);
    wait_drained(srv, drain_ms);
}

void vg_server_close(vg_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    size_t left = srv->nconns;
    pthread_mutex_unlock(&srv->mu);
    if (left > 0) { /* threads still running own these; the process is exiting anyway */
        vg_log(VG_LOG_WARN, "shutdown_incomplete", "clients=%zu", left);
        return;
    }
    vg_store_close(srv->store); /* no connection is left to append */
    vg_sublist_cache_destroy(srv->commit_match); /* the commit thread has stopped */
    vg_qgroups_destroy(srv->qgroups); /* durable groups without members; before the logs */
    free(srv->commit_qscratch);
    vg_sublist_destroy(srv->subs);
    vg_logs_destroy(srv->logs);
    vg_dedupe_destroy(srv->dedupe);
    vg_durables_destroy(srv->durables);
    pthread_mutex_destroy(&srv->dedupe_mu);
    forget_token(srv);
    pthread_attr_destroy(&srv->thread_attr);
    pthread_cond_destroy(&srv->drained);
    pthread_mutex_destroy(&srv->mu);
}
