/* The NATS backend: libnats (nats.c) for publishers and subscribers, and a
 * raw text-protocol pool for idle connections.
 *
 * libnats buffers publications and writes them from its flusher thread; when
 * the buffer is full, natsConnection_Publish writes it out itself and blocks,
 * so a publication is never dropped on the client side. Reconnection is
 * turned off so that a lost connection surfaces as a failed call instead of
 * messages vanishing into the reconnect buffer.
 *
 * Latency. libnats does not write a publication at once: its flusher thread
 * waits about 1 ms for more to batch. Measured one message at a time, that
 * wait is all one sees (p50 ~ 1 ms on loopback, against ~60 us with it off).
 * BENCH_NATS_SEND_ASAP=1 in the environment turns on natsOptions_SetSendAsap
 * for every connection, so each publication is written by the publishing
 * call; it costs about 5x in throughput, so scripts/bench-compare sets it for
 * the one-in-flight case only. (backend.h has no way to pass the mode.) */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "backend.h"
#include "sock.h"

struct bench_conn {
    natsOptions *opts;
    natsConnection *nc;
    natsSubscription *sub;
    bench_on_msg on_msg;
    void *ud;
    /* set once the subscription's handler has returned for the last time */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool sub_done;
};

/* Whether BENCH_NATS_SEND_ASAP asks for unbuffered publications (see the top). */
static bool send_asap(void)
{
    const char *v = getenv("BENCH_NATS_SEND_ASAP");
    return v != NULL && strcmp(v, "1") == 0;
}

static void report(const char *what, natsStatus s)
{
    fprintf(stderr, "nats: %s: %s (%s)\n", what, natsStatus_GetText(s), nats_GetLastError(NULL));
}

/* Asynchronous errors (a slow consumer, above all) would otherwise be silent;
 * the loss they cause is counted by the benchmark, this says why. */
static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    static atomic_int printed;
    (void)nc;
    (void)sub;
    (void)closure;
    if (atomic_fetch_add(&printed, 1) < 10)
        fprintf(stderr, "nats: asynchronous error: %s\n", natsStatus_GetText(err));
}

static void deliver(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    bench_conn *c = closure;
    (void)nc;
    (void)sub;
    c->on_msg(c->ud, (const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

static void sub_complete(void *closure)
{
    bench_conn *c = closure;
    pthread_mutex_lock(&c->mu);
    c->sub_done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void n_close(bench_conn *c);

static bench_conn *n_connect(const char *server, bench_on_msg on_msg, void *ud)
{
    bench_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->on_msg = on_msg;
    c->ud = ud;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    char url[300];
    snprintf(url, sizeof url, "nats://%s", server);
    natsStatus s = natsOptions_Create(&c->opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(c->opts, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(c->opts, "bench");
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(c->opts, false);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(c->opts, 5000);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(c->opts, on_async_error, NULL);
    if (s == NATS_OK && send_asap())
        s = natsOptions_SetSendAsap(c->opts, true);
    if (s == NATS_OK)
        s = natsConnection_Connect(&c->nc, c->opts);
    if (s != NATS_OK) {
        report(url, s);
        n_close(c);
        return NULL;
    }
    return c;
}

static int n_subscribe(bench_conn *c, const char *topic)
{
    natsStatus s = natsConnection_Subscribe(&c->sub, c->nc, topic, deliver, c);
    /* No limit on messages held for the handler: the library must never
     * declare the benchmark's subscriber a slow consumer and drop. */
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(c->sub, -1, -1);
    if (s == NATS_OK)
        s = natsSubscription_SetOnCompleteCB(c->sub, sub_complete, c);
    /* The server answers the PING after it has processed the SUB. */
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(c->nc, 5000);
    if (s != NATS_OK) {
        report("subscribe", s);
        return -1;
    }
    return 0;
}

static int n_publish(bench_conn *c, const char *topic, const void *p, size_t n)
{
    natsStatus s = natsConnection_Publish(c->nc, topic, p, (int)n);
    if (s != NATS_OK) {
        report("publish", s);
        return -1;
    }
    return 0;
}

static int n_flush(bench_conn *c, int timeout_ms)
{
    natsStatus s = natsConnection_FlushTimeout(c->nc, timeout_ms < 0 ? 60000 : timeout_ms);
    if (s != NATS_OK) {
        report("flush", s);
        return -1;
    }
    return 0;
}

/* Closes the subscription first and waits (at most 5 s) until its handler
 * has returned for the last time, so that c can be freed. */
static void n_close(bench_conn *c)
{
    if (c->sub != NULL) {
        if (natsSubscription_Unsubscribe(c->sub) == NATS_OK) {
            struct timespec deadline;
            clock_gettime(CLOCK_REALTIME, &deadline);
            deadline.tv_sec += 5;
            pthread_mutex_lock(&c->mu);
            while (!c->sub_done)
                if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT)
                    break;
            pthread_mutex_unlock(&c->mu);
        }
    }
    if (c->nc != NULL)
        natsConnection_Close(c->nc);
    natsSubscription_Destroy(c->sub);
    natsConnection_Destroy(c->nc);
    natsOptions_Destroy(c->opts);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

/* ---- idle pool: raw sockets speaking the text protocol, one epoll thread ----
 *
 * Each connection waits for the server's INFO line, then sends CONNECT, SUB
 * and a PING; the server's PONG (sent after it has processed the SUB) makes
 * the connection ready. From then on the thread answers each PING with a
 * PONG: nats-server pings every client each ping_interval and drops one that
 * leaves max_pings_out of them unanswered. Only the first bytes of each line
 * are kept: the pool needs nothing more than the line's verb. */

#define LINE_KEEP 64

enum { IDLE_WAIT_INFO, IDLE_WAIT_PONG, IDLE_READY, IDLE_FAILED };

typedef struct {
    int fd;
    int state;
    size_t line_len; /* bytes of the current line seen so far */
    char line[LINE_KEEP];
} idle_conn;

typedef struct {
    int n;
    idle_conn *conns;
    char *hello;
    size_t hello_len;
    int ep;
    atomic_bool stop;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu; /* guards ready, failed */
    pthread_cond_t cv;
    int ready, failed;
    int dropped; /* closed by the broker after the handshake (loop thread only) */
} idle_pool;

static void idle_settle(idle_pool *p, idle_conn *c, int state)
{
    c->state = state;
    pthread_mutex_lock(&p->mu);
    if (state == IDLE_READY)
        p->ready++;
    else
        p->failed++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static bool send_all(int fd, const char *data, size_t len)
{
    return send(fd, data, len, MSG_NOSIGNAL) == (ssize_t)len;
}

/* Acts on one complete line (its first LINE_KEEP bytes, without CR LF). */
static void idle_line(idle_pool *p, idle_conn *c, const char *line, size_t len)
{
    if (len >= 4 && memcmp(line, "PING", 4) == 0) {
        if (!send_all(c->fd, "PONG\r\n", 6) && c->state != IDLE_FAILED)
            idle_settle(p, c, IDLE_FAILED);
    } else if (len >= 4 && memcmp(line, "INFO", 4) == 0 && c->state == IDLE_WAIT_INFO) {
        if (send_all(c->fd, p->hello, p->hello_len))
            c->state = IDLE_WAIT_PONG;
        else
            idle_settle(p, c, IDLE_FAILED);
    } else if (len >= 4 && memcmp(line, "PONG", 4) == 0 && c->state == IDLE_WAIT_PONG) {
        idle_settle(p, c, IDLE_READY);
    } else if (len >= 4 && memcmp(line, "-ERR", 4) == 0) {
        fprintf(stderr, "nats: idle connection: %.*s\n", (int)len, line);
        if (c->state != IDLE_FAILED)
            idle_settle(p, c, IDLE_FAILED);
    }
}

static void idle_read(idle_pool *p, idle_conn *c)
{
    char buf[4096];
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r <= 0) {
        epoll_ctl(p->ep, EPOLL_CTL_DEL, c->fd, NULL);
        if (c->state != IDLE_FAILED) {
            if (c->state == IDLE_READY && p->dropped++ == 0)
                fprintf(stderr, "nats: an idle connection was closed by the server\n");
            idle_settle(p, c, IDLE_FAILED);
        }
        return;
    }
    for (ssize_t i = 0; i < r; i++) {
        if (buf[i] == '\n') {
            size_t len = c->line_len < LINE_KEEP ? c->line_len : LINE_KEEP;
            if (len > 0 && c->line[len - 1] == '\r')
                len--;
            idle_line(p, c, c->line, len);
            c->line_len = 0;
        } else {
            if (c->line_len < LINE_KEEP)
                c->line[c->line_len] = buf[i];
            c->line_len++;
        }
    }
}

static void *idle_loop(void *arg)
{
    idle_pool *p = arg;
    struct epoll_event ev[256];
    while (!atomic_load(&p->stop)) {
        int k = epoll_wait(p->ep, ev, 256, 200);
        for (int i = 0; i < k; i++)
            idle_read(p, &p->conns[ev[i].data.u32]);
    }
    return NULL;
}

static void n_idle_close(void *arg);

static void *n_idle_open(const char *server, int n, const char *topic)
{
    vg_addr a;
    if (vg_addr_parse(server, &a, NULL) != VG_OK) {
        fprintf(stderr, "nats: bad server address %s\n", server);
        return NULL;
    }
    idle_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->conns = calloc((size_t)n, sizeof *p->conns);
    p->hello_len = (size_t)snprintf(NULL, 0,
                                    "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n"
                                    "SUB %s 1\r\nPING\r\n",
                                    topic);
    p->hello = malloc(p->hello_len + 1);
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->conns == NULL || p->hello == NULL || p->ep < 0) {
        n_idle_close(p);
        return NULL;
    }
    snprintf(p->hello, p->hello_len + 1,
             "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB %s 1\r\nPING\r\n", topic);
    if (pthread_create(&p->thread, NULL, idle_loop, p) != 0) {
        n_idle_close(p);
        return NULL;
    }
    p->thread_started = true;

    /* Connect one at a time (a blocking connect returns once the kernel has
     * queued the connection, so the server's backlog never overflows); the
     * loop thread carries on each handshake meanwhile. */
    for (int i = 0; i < n; i++) {
        idle_conn *c = &p->conns[i];
        c->fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a.ss, a.len) != 0) {
            fprintf(stderr, "nats: idle connection %d failed: %s\n", i, strerror(errno));
            if (c->fd >= 0)
                close(c->fd);
            n_idle_close(p);
            return NULL;
        }
        p->n = i + 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(p->ep, EPOLL_CTL_ADD, c->fd, &ev);
    }

    /* Wait until the server has every subscription, or something failed. */
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
        fprintf(stderr, "nats: only %d of %d idle connections completed the handshake\n", ready,
                n);
        n_idle_close(p);
        return NULL;
    }
    return p;
}

static void n_idle_close(void *arg)
{
    idle_pool *p = arg;
    atomic_store(&p->stop, true);
    if (p->thread_started)
        pthread_join(p->thread, NULL);
    if (p->dropped > 0)
        fprintf(stderr, "nats: %d of %d idle connections were closed by the server\n", p->dropped,
                p->n);
    for (int i = 0; i < p->n; i++)
        close(p->conns[i].fd);
    if (p->ep >= 0)
        close(p->ep);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->conns);
    free(p->hello);
    free(p);
}

const bench_backend bench_nats = {"nats", n_connect, n_subscribe, n_publish, n_flush, n_close,
                                  n_idle_open, n_idle_close};
