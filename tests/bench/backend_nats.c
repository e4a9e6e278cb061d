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
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "backend.h"
#include "idle_pool.h"
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

/* ---- idle pool: the text protocol over raw sockets (idle_pool.h) ----
 *
 * Each connection waits for the server's INFO line, then sends CONNECT, SUB
 * and a PING; the server's PONG (sent after it has processed the SUB) makes
 * the connection ready. From then on each PING gets a PONG: nats-server
 * pings every client each ping_interval and drops one that leaves
 * max_pings_out of them unanswered. Only the first bytes of each line are
 * kept: the pool needs nothing more than the line's verb. */

#define LINE_KEEP 64

typedef struct {
    bool sent_hello;
    size_t line_len; /* bytes of the current line seen so far */
    char line[LINE_KEEP];
} n_idle_conn;

static bool n_idle_open_conn(idle_pool *p, int i)
{
    (void)p, (void)i;
    return true; /* the server speaks first */
}

/* Acts on one complete line (its first LINE_KEEP bytes, without CR LF). */
static void n_idle_line(idle_pool *p, int i, const char *line, size_t len)
{
    n_idle_conn *c = idle_pool_conn(p, i);
    int fd = idle_pool_fd(p, i);
    const char *hello = idle_pool_arg(p);
    if (len >= 4 && memcmp(line, "PING", 4) == 0) {
        if (!idle_send(fd, "PONG\r\n", 6))
            idle_pool_settle(p, i, false);
    } else if (len >= 4 && memcmp(line, "INFO", 4) == 0 && !c->sent_hello) {
        c->sent_hello = true;
        if (!idle_send(fd, hello, strlen(hello)))
            idle_pool_settle(p, i, false);
    } else if (len >= 4 && memcmp(line, "PONG", 4) == 0 && c->sent_hello) {
        idle_pool_settle(p, i, true);
    } else if (len >= 4 && memcmp(line, "-ERR", 4) == 0) {
        fprintf(stderr, "nats: idle connection: %.*s\n", (int)len, line);
        idle_pool_settle(p, i, false);
    }
}

static void n_idle_bytes(idle_pool *p, int i, const uint8_t *buf, size_t n)
{
    n_idle_conn *c = idle_pool_conn(p, i);
    for (size_t k = 0; k < n; k++) {
        if (buf[k] == '\n') {
            size_t len = c->line_len < LINE_KEEP ? c->line_len : LINE_KEEP;
            if (len > 0 && c->line[len - 1] == '\r')
                len--;
            n_idle_line(p, i, c->line, len);
            c->line_len = 0;
        } else {
            if (c->line_len < LINE_KEEP)
                c->line[c->line_len] = (char)buf[k];
            c->line_len++;
        }
    }
}

static const idle_proto n_idle_proto = {"nats", sizeof(n_idle_conn), n_idle_open_conn,
                                        n_idle_bytes, NULL};

typedef struct {
    idle_pool *pool;
    char hello[512];
} n_idle;

static void *n_idle_open(const char *server, int n, const char *topic)
{
    n_idle *x = calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    int len = snprintf(x->hello, sizeof x->hello,
                       "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB %s 1\r\nPING\r\n",
                       topic);
    if (len < 0 || (size_t)len >= sizeof x->hello) {
        fprintf(stderr, "nats: topic too long\n");
        free(x);
        return NULL;
    }
    x->pool = idle_pool_open(&n_idle_proto, x->hello, server, n);
    if (x->pool == NULL) {
        free(x);
        return NULL;
    }
    return x;
}

static void n_idle_close(void *arg)
{
    n_idle *x = arg;
    idle_pool_close(x->pool);
    free(x);
}

const bench_backend bench_nats = {"nats", n_connect, n_subscribe, n_publish, n_flush, n_close,
                                  n_idle_open, n_idle_close};
