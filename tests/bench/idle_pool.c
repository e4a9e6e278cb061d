#include "idle_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sock.h"

enum { PENDING, READY, FAILED };

typedef struct {
    int fd;
    int state;
} conn;

struct idle_pool {
    const idle_proto *proto;
    void *arg;
    _Atomic int n; /* connections opened so far */
    conn *conns;
    uint8_t *states; /* the protocol's, conn_size bytes each */
    int ep;
    atomic_bool stop;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu; /* guards ready, failed */
    pthread_cond_t cv;
    int ready, failed;
    int dropped; /* closed by the broker after the handshake (pool thread only) */
};

int64_t idle_pool_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool idle_send(int fd, const void *data, size_t len)
{
    return send(fd, data, len, MSG_NOSIGNAL) == (ssize_t)len;
}

void idle_pool_settle(idle_pool *p, int i, bool ready)
{
    conn *c = &p->conns[i];
    if (c->state != PENDING && !(c->state == READY && !ready))
        return;
    bool was_ready = c->state == READY;
    c->state = ready ? READY : FAILED;
    pthread_mutex_lock(&p->mu);
    if (was_ready)
        p->ready--;
    if (ready)
        p->ready++;
    else
        p->failed++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

bool idle_pool_ready(idle_pool *p, int i) { return p->conns[i].state == READY; }
int idle_pool_fd(idle_pool *p, int i) { return p->conns[i].fd; }
void *idle_pool_conn(idle_pool *p, int i) { return p->states + (size_t)i * p->proto->conn_size; }
void *idle_pool_arg(idle_pool *p) { return p->arg; }
int idle_pool_count(idle_pool *p) { return atomic_load_explicit(&p->n, memory_order_acquire); }

static void pool_read(idle_pool *p, int i)
{
    conn *c = &p->conns[i];
    uint8_t buf[4096];
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r > 0) {
        p->proto->on_bytes(p, i, buf, (size_t)r);
        return;
    }
    epoll_ctl(p->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->state == READY && p->dropped++ == 0)
        fprintf(stderr, "%s: an idle connection was closed by the broker\n", p->proto->name);
    idle_pool_settle(p, i, false);
}

static void *pool_loop(void *arg)
{
    idle_pool *p = arg;
    struct epoll_event ev[256];
    while (!atomic_load(&p->stop)) {
        int k = epoll_wait(p->ep, ev, 256, 200);
        for (int i = 0; i < k; i++)
            pool_read(p, (int)ev[i].data.u32);
        if (p->proto->on_tick != NULL)
            p->proto->on_tick(p, idle_pool_now_ms());
    }
    return NULL;
}

idle_pool *idle_pool_open(const idle_proto *proto, void *arg, const char *server, int n)
{
    const char *name = proto->name;
    vg_addr a;
    if (vg_addr_parse(server, &a, NULL) != VG_OK) {
        fprintf(stderr, "%s: bad server address %s\n", name, server);
        return NULL;
    }
    idle_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->proto = proto;
    p->arg = arg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->conns = calloc((size_t)n, sizeof *p->conns);
    p->states = calloc((size_t)n, proto->conn_size > 0 ? proto->conn_size : 1);
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->conns == NULL || p->states == NULL || p->ep < 0 ||
        pthread_create(&p->thread, NULL, pool_loop, p) != 0)
        goto fail;
    p->thread_started = true;

    /* Connect one at a time (a blocking connect returns once the kernel has
     * queued the connection, so the broker's backlog never overflows); the
     * pool's thread carries on each handshake meanwhile. */
    for (int i = 0; i < n; i++) {
        conn *c = &p->conns[i];
        c->fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a.ss, a.len) != 0) {
            fprintf(stderr, "%s: idle connection %d failed: %s\n", name, i, strerror(errno));
            if (c->fd >= 0)
                close(c->fd);
            goto fail;
        }
        atomic_store_explicit(&p->n, i + 1, memory_order_release);
        if (!proto->on_open(p, i)) {
            fprintf(stderr, "%s: idle connection %d failed: %s\n", name, i, strerror(errno));
            goto fail;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(p->ep, EPOLL_CTL_ADD, c->fd, &ev);
    }

    /* Wait until the broker has every subscription, or something failed. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30 + n / 500;
    pthread_mutex_lock(&p->mu);
    while (p->ready + p->failed < n)
        if (pthread_cond_timedwait(&p->cv, &p->mu, &deadline) == ETIMEDOUT)
            break;
    int ready = p->ready;
    pthread_mutex_unlock(&p->mu);
    if (ready < n) {
        fprintf(stderr, "%s: only %d of %d idle connections completed the handshake\n", name,
                ready, n);
        goto fail;
    }
    return p;

fail:
    idle_pool_close(p);
    return NULL;
}

void idle_pool_close(idle_pool *p)
{
    atomic_store(&p->stop, true);
    if (p->thread_started)
        pthread_join(p->thread, NULL);
    int n = idle_pool_count(p);
    if (p->dropped > 0)
        fprintf(stderr, "%s: %d of %d idle connections were closed by the broker\n",
                p->proto->name, p->dropped, n);
    for (int i = 0; i < n; i++)
        close(p->conns[i].fd);
    if (p->ep >= 0)
        close(p->ep);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->conns);
    free(p->states);
    free(p);
}
