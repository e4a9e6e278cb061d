#include "server.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "frame.h"
#include "log.h"
#include "proto.h"
#include "stats.h"

#define ACCEPT_BACKOFF_MS 100

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
    cfg->stats_interval_ms = 5000;
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

vg_status vg_server_open(vg_server *srv, const vg_broker_config *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = *cfg;
    srv->listen_fd = -1;
    char want[VG_ADDR_STRLEN];
    vg_addr_format(&cfg->listen, want);
    if (vg_listen(&cfg->listen, 1024, &srv->listen_fd) != VG_OK) {
        vg_log(VG_LOG_ERROR, "listen_failed", "addr=%s error=\"%s\"", want, strerror(errno));
        return VG_ERR_IO;
    }
    srv->subs = vg_subtable_create(vg_conn_retain);
    if (srv->subs == NULL)
        goto fail_listen;
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
           "max_connections=%zu auth=%s",
           srv->listen_str, (unsigned long long)cfg->max_payload, (long long)k->time_ms,
           (long long)k->interval_ms, k->probes, (long long)vg_keepalive_bound_ms(k),
           cfg->max_connections, cfg->token != NULL ? "token" : "none");
    return VG_OK;

fail_listen:
    close(srv->listen_fd);
    vg_log(VG_LOG_ERROR, "start_failed", "error=\"out of memory\"");
    return VG_ERR_NOMEM;
}

/* Turns away a connection over --max-connections: ERR limit, then close.
 * Input already received is read first, so that the close sends FIN, not a
 * reset that could destroy the ERR before the client reads it. */
static void refuse(vg_server *srv, int fd)
{
    vg_buf b = {0};
    if (vg_frame_put_err(&b, VG_E_LIMIT, "too many connections", 0) == VG_OK) {
        ssize_t ignored = send(fd, b.data, b.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)ignored;
    }
    vg_buf_free(&b);
    char sink[4096];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;
    shutdown(fd, SHUT_WR);
    close(fd);
    atomic_fetch_add_explicit(&srv->stats.evictions[VG_EVICT_LIMIT], 1, memory_order_relaxed);
    srv->refused++;
}

/* Whether a new connection may be served; logs entering and leaving the
 * state of refusing, not each refusal. */
static bool admit(vg_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    size_t n = srv->nconns;
    pthread_mutex_unlock(&srv->mu);
    bool ok = n < srv->cfg.max_connections;
    if (ok == !srv->at_limit)
        return ok; /* no change of state */
    if (ok)
        vg_log(VG_LOG_INFO, "connection_limit", "state=cleared connections=%zu refused=%llu", n,
               (unsigned long long)srv->refused);
    else
        vg_log(VG_LOG_WARN, "connection_limit", "state=reached connections=%zu max_connections=%zu",
               n, srv->cfg.max_connections);
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
                refuse(srv, fd);
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
                             void ***scratch, size_t *scratch_cap)
{
    if (srv->cfg.stats_interval_ms <= 0)
        return INT64_MAX;
    if (now < due)
        return due;
    char json[1024];
    size_t n = vg_stats_json(srv, now, json, sizeof json);
    if (n > 0 && vg_conn_publish_system(srv, VG_STATS_TOPIC, json, n, frame, scratch,
                                        scratch_cap) != VG_OK)
        vg_log(VG_LOG_WARN, "stats_failed", "error=\"out of memory\"");
    return now + srv->cfg.stats_interval_ms;
}

void vg_server_run(vg_server *srv, int stop_fd, int drain_ms)
{
    bool warned = false;
    struct pollfd p[2] = {{.fd = srv->listen_fd, .events = POLLIN}, {.fd = stop_fd, .events = POLLIN}};
    vg_buf frame = {0};
    void **scratch = NULL;
    size_t scratch_cap = 0;
    int64_t stats_due = srv->started_ms + srv->cfg.stats_interval_ms;
    for (;;) {
        int64_t now = vg_now_ms();
        stats_due = publish_stats(srv, stats_due, now, &frame, &scratch, &scratch_cap);
        int64_t wake = p[0].events ? stats_due : now + ACCEPT_BACKOFF_MS;
        if (wake > stats_due)
            wake = stats_due;
        int n = poll(p, 2, vg_poll_timeout(wake, now));
        if (n < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (n > 0 || !p[0].events)
            p[0].events = accept_pending(srv, &warned) ? POLLIN : 0;
    }
    vg_buf_free(&frame);
    free(scratch);

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
    vg_subtable_destroy(srv->subs);
    pthread_attr_destroy(&srv->thread_attr);
    pthread_cond_destroy(&srv->drained);
    pthread_mutex_destroy(&srv->mu);
}
