/* nats-server subscriber connections for subs.c, through libnats: each
 * subscription is a natsConnection_Subscribe (or QueueSubscribe) with the
 * same subject as vigil's, and every connection uses libnats' global message
 * delivery (a small shared pool of callback threads) because by default
 * libnats starts a thread per asynchronous subscription, which 100,000
 * subscriptions could not afford. Pending limits are lifted so that libnats
 * never drops for a slow consumer; reconnection is off so a lost connection
 * shows. The server has processed every SUB and UNSUB before it answers the
 * PING of a flush. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "subs.h"

struct sb_conn {
    natsOptions *opts;
    natsConnection *nc;
    natsSubscription **subs; /* by id - 1; NULL once unsubscribed */
    size_t nsubs, cap;
    _Atomic uint64_t received;
    _Atomic bool lost;
    _Atomic uint64_t errors;
    /* set by the closed callback, which libnats runs on its own thread
     * after natsConnection_Close returns: c is freed only after it */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool closed;
};

static void report(const char *what, natsStatus s)
{
    fprintf(stderr, "nats: %s: %s (%s)\n", what, natsStatus_GetText(s), nats_GetLastError(NULL));
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    sb_conn *c = closure;
    (void)nc, (void)sub;
    atomic_fetch_add_explicit(&c->received, 1, memory_order_relaxed);
    natsMsg_Destroy(msg);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    sb_conn *c = closure;
    (void)nc, (void)sub;
    if (atomic_fetch_add(&c->errors, 1) < 5)
        fprintf(stderr, "nats: asynchronous error: %s\n", natsStatus_GetText(err));
}

static void on_closed(natsConnection *nc, void *closure)
{
    sb_conn *c = closure;
    (void)nc;
    atomic_store(&c->lost, true);
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void n_close(sb_conn *c);

static sb_conn *n_connect(const char *server)
{
    sb_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    char url[300];
    snprintf(url, sizeof url, "nats://%s", server);
    natsStatus s = nats_Open(-1);
    if (s == NATS_OK) /* the shared callback threads: can only grow; 2 cores here */
        s = nats_SetMessageDeliveryPoolSize(2);
    if (s == NATS_OK)
        s = natsOptions_Create(&c->opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(c->opts, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(c->opts, "bench-subs");
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(c->opts, false);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(c->opts, 5000);
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(c->opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(c->opts, on_error, c);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(c->opts, on_closed, c);
    if (s == NATS_OK)
        s = natsConnection_Connect(&c->nc, c->opts);
    if (s != NATS_OK) {
        report(url, s);
        n_close(c);
        return NULL;
    }
    return c;
}

static uint64_t n_sub(sb_conn *c, const char *subject, const char *queue)
{
    if (c->nsubs == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        natsSubscription **s = realloc(c->subs, cap * sizeof *s);
        if (s == NULL)
            return 0;
        c->subs = s;
        c->cap = cap;
    }
    natsSubscription *sub = NULL;
    natsStatus s = queue != NULL
                       ? natsConnection_QueueSubscribe(&sub, c->nc, subject, queue, on_msg, c)
                       : natsConnection_Subscribe(&sub, c->nc, subject, on_msg, c);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(sub, -1, -1);
    if (s != NATS_OK) {
        report("subscribe", s);
        natsSubscription_Destroy(sub);
        return 0;
    }
    c->subs[c->nsubs++] = sub;
    return c->nsubs;
}

static int n_unsub(sb_conn *c, uint64_t id)
{
    if (id == 0 || id > c->nsubs || c->subs[id - 1] == NULL)
        return -1;
    natsStatus s = natsSubscription_Unsubscribe(c->subs[id - 1]);
    natsSubscription_Destroy(c->subs[id - 1]);
    c->subs[id - 1] = NULL;
    if (s != NATS_OK) {
        report("unsubscribe", s);
        return -1;
    }
    return 0;
}

static int n_sync(sb_conn *c, int timeout_ms)
{
    natsStatus s = natsConnection_FlushTimeout(c->nc, timeout_ms);
    if (s != NATS_OK) {
        report("flush", s);
        return -1;
    }
    return 0;
}

static uint64_t n_received(sb_conn *c) { return atomic_load(&c->received); }

static uint64_t n_refused(sb_conn *c, const char **first)
{
    uint64_t n = atomic_load(&c->errors);
    *first = n > 0 ? "asynchronous error (see stderr)" : NULL;
    return n;
}

static bool n_lost(sb_conn *c) { return atomic_load(&c->lost); }

static void n_close(sb_conn *c)
{
    if (c->nc != NULL) {
        natsConnection_Close(c->nc);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 5;
        pthread_mutex_lock(&c->mu);
        while (!c->closed)
            if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT)
                break;
        pthread_mutex_unlock(&c->mu);
    }
    for (size_t i = 0; i < c->nsubs; i++)
        natsSubscription_Destroy(c->subs[i]);
    free(c->subs);
    natsConnection_Destroy(c->nc);
    natsOptions_Destroy(c->opts);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

const sb_backend sb_nats = {"nats", n_connect, n_sub, n_unsub, n_sync, n_received,
                            n_refused, NULL, NULL, n_lost, n_close};
