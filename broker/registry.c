/* The registry: every connection that has a thread, under server.mu, so
 * that shutdown can stop them all and a resume can wake them all.
 *
 * A connection that cannot get a thread (the process is out of threads,
 * memory mappings or memory) is answered ERR limit like one over
 * --max-connections, and the state is logged when it begins and ends, not
 * for every refusal. Connections are only started by the accept thread. */
#include "conn_internal.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

void vg_conn_refuse(vg_server *srv, int fd, vg_errcode code, const char *why)
{
    vg_buf b = {0};
    if (vg_frame_put_err(&b, code, why, 0) == VG_OK) {
        ssize_t ignored = send(fd, b.data, b.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)ignored;
    }
    vg_buf_free(&b);
    /* Read what the client already sent, so that the close sends FIN, not
     * a reset that could destroy the ERR before the client reads it. */
    char sink[4096];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;
    shutdown(fd, SHUT_WR);
    close(fd);
    if (code == VG_E_LIMIT)
        atomic_fetch_add_explicit(&srv->stats.evictions[VG_EVICT_LIMIT], 1, memory_order_relaxed);
}

/* Logs entering or leaving the state of being unable to start threads.
 * Accept thread only, like everything that starts connections. */
static void thread_state(vg_server *srv, int rc, size_t conns)
{
    bool failing = rc != 0;
    if (failing && !srv->threads_failing)
        vg_log(VG_LOG_WARN, "thread_limit", "state=reached connections=%zu error=\"%s\"", conns,
               strerror(rc));
    else if (!failing && srv->threads_failing)
        vg_log(VG_LOG_INFO, "thread_limit", "state=cleared connections=%zu refused=%llu", conns,
               (unsigned long long)srv->thread_refusals);
    if (failing)
        srv->thread_refusals++;
    else if (srv->threads_failing)
        srv->thread_refusals = 0;
    srv->threads_failing = failing;
}

int vg_registry_start(vg_conn *c, void *(*conn_main)(void *))
{
    vg_server *srv = c->srv;
    pthread_mutex_lock(&srv->mu);
    if (atomic_load(&srv->stopping)) {
        pthread_mutex_unlock(&srv->mu);
        return ESHUTDOWN;
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
    }
    size_t conns = srv->nconns;
    pthread_mutex_unlock(&srv->mu);
    if (rc != 0 || srv->threads_failing)
        thread_state(srv, rc, conns);
    return rc;
}

void vg_registry_remove(vg_conn *c)
{
    vg_server *srv = c->srv;
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
}

void vg_conn_stop_all(vg_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    for (vg_conn *c = srv->conns; c != NULL; c = c->next)
        vg_outbox_close(c->outbox); /* wakes the thread, which sees srv->stopping */
    pthread_mutex_unlock(&srv->mu);
}

void vg_conn_wake_all(vg_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    for (vg_conn *c = srv->conns; c != NULL; c = c->next)
        vg_outbox_wake(c->outbox);
    pthread_mutex_unlock(&srv->mu);
}
