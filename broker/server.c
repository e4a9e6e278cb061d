#include "server.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "proto.h"

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
    const vg_keepalive *k = &cfg->keepalive;
    vg_log(VG_LOG_INFO, "listening",
           "addr=%s max_payload=%llu keepalive_ms=%lld/%lld/%d dead_after_ms=%lld", srv->listen_str,
           (unsigned long long)cfg->max_payload, (long long)k->time_ms, (long long)k->interval_ms,
           k->probes, (long long)vg_keepalive_bound_ms(k));
    return VG_OK;

fail_listen:
    close(srv->listen_fd);
    vg_log(VG_LOG_ERROR, "start_failed", "error=\"out of memory\"");
    return VG_ERR_NOMEM;
}

/* Accepts everything pending. Returns false when out of descriptors or
 * memory, so the caller stops polling the listener for a moment. */
static bool accept_pending(vg_server *srv, bool *warned)
{
    for (;;) {
        int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            *warned = false;
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

void vg_server_run(vg_server *srv, int stop_fd, int drain_ms)
{
    bool warned = false;
    struct pollfd p[2] = {{.fd = srv->listen_fd, .events = POLLIN}, {.fd = stop_fd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, 2, p[0].events ? -1 : ACCEPT_BACKOFF_MS);
        if (n < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        p[0].events = accept_pending(srv, &warned) ? POLLIN : 0;
    }

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
