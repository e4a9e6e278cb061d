/* The catch-up case: backlog first, then a subscriber from FIRST while a
 * live publisher keeps going.
 *
 * Every payload carries its send time (live messages only; 0 in the
 * backlog) in bytes 0..7 and its publisher-side number (1..N for the
 * backlog, N+1.. for live traffic) in bytes 8..15. On a topic with no log
 * before the run the broker's seq equals that number, which the
 * subscriber checks. The subscriber's callback runs on its client's I/O
 * thread and is the only writer of its state; the main thread reads the
 * atomics while it runs and the rest after the client is closed. */
#include "catchup.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "histogram.h"
#include "sysprobe.h"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void stamp(uint8_t *msg, int64_t sent_ns, uint64_t index)
{
    memcpy(msg, &sent_ns, 8);
    memcpy(msg + 8, &index, 8);
}

/* ---- the subscriber ---- */

typedef struct {
    uint64_t n;
    uint64_t *seen;      /* bit per seq 1..n */
    uint64_t last_live;  /* the highest seq above n so far */
    uint64_t mismatch;   /* payload number != seq */
    uint64_t missed;     /* messages in GAPs with a known range */
    int64_t live_lag_max; /* the longest a live message took, ns */
    histogram live_hist;  /* latency of live messages sent after catching up */
    _Atomic uint64_t backlog; /* distinct seqs 1..n received */
    _Atomic uint64_t live;    /* distinct seqs above n received */
    _Atomic uint64_t dup;
    _Atomic uint64_t gaps;
    _Atomic int64_t caught_ns; /* when seq n (or, if it is missing, a later one) arrived */
    atomic_bool closed;
} sub_state;

static void add1(_Atomic uint64_t *v)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + 1,
                          memory_order_relaxed); /* one writer */
}

static void on_msg(void *ud, const vg_msg *m)
{
    sub_state *s = ud;
    uint64_t seq = m->seq, index = 0;
    int64_t sent = 0;
    if (m->payload_len >= 16) {
        memcpy(&sent, m->payload, 8);
        memcpy(&index, m->payload + 8, 8);
    }
    if (index != seq)
        s->mismatch++;
    if (seq >= 1 && seq <= s->n) {
        uint64_t bit = 1ull << ((seq - 1) % 64), *w = &s->seen[(seq - 1) / 64];
        if (*w & bit) {
            add1(&s->dup);
        } else {
            *w |= bit;
            add1(&s->backlog);
        }
        if (seq == s->n)
            atomic_store(&s->caught_ns, now_ns());
        return;
    }
    int64_t now = now_ns(), caught = atomic_load_explicit(&s->caught_ns, memory_order_relaxed);
    if (caught == 0)
        atomic_store(&s->caught_ns, caught = now); /* seq n never came */
    if (sent != 0 && now - sent > s->live_lag_max)
        s->live_lag_max = now - sent;
    if (sent >= caught)
        hist_add(&s->live_hist, now - sent);
    if (seq <= s->last_live) {
        add1(&s->dup);
    } else {
        s->last_live = seq;
        add1(&s->live);
    }
}

static void on_gap(void *ud, const char *topic, size_t topic_len, const vg_gap *gap)
{
    sub_state *s = ud;
    (void)topic;
    (void)topic_len;
    add1(&s->gaps);
    if (gap->to >= gap->from && gap->to != 0)
        s->missed += gap->to - gap->from + 1;
}

static void on_closed(void *ud, const char *reason)
{
    sub_state *s = ud;
    fprintf(stderr, "vigil-bench: the subscriber's client gave up: %s\n", reason);
    atomic_store(&s->closed, true);
}

/* ---- the live publisher ---- */

typedef struct {
    vg_client *c;
    const char *topic;
    size_t size;
    uint64_t rate;
    uint64_t first; /* number of the first live message */
    atomic_bool stop;
    _Atomic uint64_t sent;
    int failed;
} live_state;

/* Publishes at l->rate, paced against the start time in 1 ms steps, until
 * told to stop. */
static void *live_loop(void *arg)
{
    live_state *l = arg;
    uint8_t *msg = calloc(1, l->size);
    if (msg == NULL) {
        l->failed = 1;
        return NULL;
    }
    memset(msg + 16, 'x', l->size - 16);
    size_t tlen = strlen(l->topic);
    int64_t t0 = now_ns();
    uint64_t sent = 0;
    while (!atomic_load(&l->stop) && !l->failed) {
        uint64_t due = (uint64_t)((double)(now_ns() - t0) * (double)l->rate / 1e9);
        for (; sent < due; sent++) {
            stamp(msg, now_ns(), l->first + sent);
            if (vg_client_publish(l->c, VG_FRAME_MSG_TYPE1, l->topic, tlen, msg, l->size, -1) !=
                VG_OK) {
                l->failed = 1;
                break;
            }
        }
        atomic_store(&l->sent, sent);
        struct timespec tick = {0, 1000000};
        nanosleep(&tick, NULL); /* the pacing step */
    }
    free(msg);
    return NULL;
}

/* ---- the run ---- */

static vg_client *start_client(const char *server, const char *name, sub_state *s)
{
    vg_client_opts o;
    vg_client_opts_defaults(&o);
    o.servers = server;
    o.name = name;
    if (s != NULL) {
        o.ud = s;
        o.on_msg = on_msg;
        o.on_gap = on_gap;
        o.on_closed = on_closed;
    }
    vg_client *c;
    const char *why = NULL;
    vg_status st = vg_client_start(&c, &o, &why);
    if (st != VG_OK) {
        fprintf(stderr, "vigil-bench: %s: %s\n", vg_strerror(st), why ? why : "");
        return NULL;
    }
    if ((st = vg_client_wait_connected(c, 5000)) != VG_OK) {
        fprintf(stderr, "vigil-bench: cannot connect to %s: %s\n", server, vg_strerror(st));
        vg_client_destroy(c);
        return NULL;
    }
    return c;
}

/* Publishes the backlog 1..n and waits until the broker confirmed all of
 * it. Returns the seconds it took, or -1. */
static double publish_backlog(vg_client *pub, const char *topic, size_t size, uint64_t n)
{
    uint8_t *msg = calloc(1, size);
    if (msg == NULL)
        return -1;
    memset(msg + 16, 'x', size - 16);
    size_t tlen = strlen(topic);
    int64_t t0 = now_ns();
    vg_status st = VG_OK;
    for (uint64_t i = 1; i <= n && st == VG_OK; i++) {
        stamp(msg, 0, i);
        st = vg_client_publish(pub, VG_FRAME_MSG_TYPE1, topic, tlen, msg, size, -1);
    }
    free(msg);
    if (st == VG_OK)
        st = vg_client_flush(pub, 120000);
    vg_client_stats ps;
    vg_client_get_stats(pub, &ps);
    if (st != VG_OK || ps.confirmed != n) {
        fprintf(stderr, "vigil-bench: backlog not confirmed (%s): %llu of %llu\n",
                vg_strerror(st), (unsigned long long)ps.confirmed, (unsigned long long)n);
        return -1;
    }
    return (double)(now_ns() - t0) / 1e9;
}

/* Waits, sampling every 2 ms, until the subscriber caught up (for_caught)
 * or received live_want live messages, or until timeout_ms without a
 * message; returns whether it got there. */
static bool await(sub_state *s, uint64_t live_want, bool for_caught, int timeout_ms)
{
    uint64_t last = 0;
    int64_t quiet_since = now_ns();
    for (;;) {
        if (for_caught ? atomic_load(&s->caught_ns) != 0 : atomic_load(&s->live) >= live_want)
            return true;
        if (atomic_load(&s->closed))
            return false;
        uint64_t got = atomic_load(&s->backlog) + atomic_load(&s->live) + atomic_load(&s->dup);
        if (got != last) {
            last = got;
            quiet_since = now_ns();
        } else if (now_ns() - quiet_since > (int64_t)timeout_ms * 1000000) {
            return false;
        }
        struct timespec tick = {0, 2000000};
        nanosleep(&tick, NULL); /* a sampling period */
    }
}

static double broker_cpu(const catchup_cfg *cfg)
{
    return cfg->broker_pid > 0 ? sp_cpu_seconds(cfg->broker_pid) : -1;
}

/* Stops the live publisher and returns how many it published, or -1 if
 * it failed. */
static int64_t stop_live(live_state *l, pthread_t tid)
{
    atomic_store(&l->stop, true);
    pthread_join(tid, NULL);
    return l->failed ? -1 : (int64_t)atomic_load(&l->sent);
}

static void print_result(const catchup_cfg *cfg, sub_state *s, const char *topic, double backlog_s,
                         double replay_s, int64_t live_sent, double cpu_s, long rss_backlog,
                         long rss_end)
{
    uint64_t got = atomic_load(&s->backlog), lost = s->n - got; /* the rate counts got */
    uint64_t live = atomic_load(&s->live);
    printf("system=vigil mode=catchup size=%zu count=%llu live_rate=%llu topic=%s "
           "backlog_pub_rate=%.0f replay_rate=%.0f caught_up_ms=%.1f mb_s=%.1f "
           "live_published=%lld live_received=%llu live_lost=%lld lost=%llu dup=%llu gaps=%llu "
           "gap_missed=%llu seq_mismatch=%llu live_lag_max_ms=%.1f live_p50_us=%.1f live_p99_us=%.1f",
           cfg->size, (unsigned long long)cfg->count, (unsigned long long)cfg->live_rate, topic,
           backlog_s > 0 ? (double)cfg->count / backlog_s : 0,
           replay_s > 0 ? (double)got / replay_s : 0, replay_s * 1e3,
           replay_s > 0 ? (double)got * (double)cfg->size / replay_s / 1e6 : 0,
           (long long)live_sent, (unsigned long long)live,
           (long long)(live_sent - (int64_t)live), (unsigned long long)lost,
           (unsigned long long)atomic_load(&s->dup), (unsigned long long)atomic_load(&s->gaps),
           (unsigned long long)s->missed, (unsigned long long)s->mismatch,
           (double)s->live_lag_max / 1e6,
           hist_quantile(&s->live_hist, 0.50) / 1e3, hist_quantile(&s->live_hist, 0.99) / 1e3);
    if (cfg->broker_pid > 0)
        printf(" broker_cpu_us_per_replayed_msg=%.3f broker_rss_backlog_kb=%ld broker_rss_kb=%ld",
               cpu_s * 1e6 / (double)cfg->count, rss_backlog, rss_end);
    printf("\n");
}

int bench_catchup(const catchup_cfg *cfg)
{
    char fresh[64];
    const char *topic = cfg->topic;
    if (topic == NULL) {
        snprintf(fresh, sizeof fresh, "catchup.%d.%lld", (int)getpid(), (long long)now_ns());
        topic = fresh;
    }
    static sub_state s; /* its histogram is large */
    s.n = cfg->count;
    s.seen = calloc((size_t)(cfg->count + 63) / 64, sizeof *s.seen);
    if (s.seen == NULL)
        return 1;
    hist_init(&s.live_hist);
    int rc = 1;
    vg_client *pub = start_client(cfg->server, "bench-catchup-pub", NULL);
    if (pub == NULL)
        goto free_seen;
    double backlog_s = publish_backlog(pub, topic, cfg->size, cfg->count);
    if (backlog_s < 0)
        goto destroy_pub;
    long rss_backlog = cfg->broker_pid > 0 ? sp_status_field(cfg->broker_pid, "VmRSS") : -1;

    live_state live = {.c = pub, .topic = topic, .size = cfg->size, .rate = cfg->live_rate,
                       .first = cfg->count + 1};
    pthread_t live_tid;
    if (pthread_create(&live_tid, NULL, live_loop, &live) != 0) {
        fprintf(stderr, "vigil-bench: cannot start the live publisher\n");
        goto destroy_pub;
    }
    vg_client *sub = start_client(cfg->server, "bench-catchup-sub", &s);
    if (sub == NULL)
        goto stop_live;
    double cpu0 = broker_cpu(cfg);
    int64_t t_sub = now_ns();
    vg_status st = vg_client_subscribe_from(sub, topic, VG_SUB_FIRST, 0, 0, NULL);
    if (st != VG_OK) {
        fprintf(stderr, "vigil-bench: subscribe: %s\n", vg_strerror(st));
        goto destroy_sub;
    }
    bool caught = await(&s, 0, true, cfg->timeout_ms);
    double cpu1 = broker_cpu(cfg);
    int64_t caught_ns = atomic_load(&s.caught_ns);
    if (!caught)
        fprintf(stderr, "vigil-bench: the subscriber never reached seq %llu\n",
                (unsigned long long)cfg->count);
    struct timespec tail = {cfg->tail_ms / 1000, (long)(cfg->tail_ms % 1000) * 1000000};
    if (caught)
        nanosleep(&tail, NULL); /* live traffic goes on after catching up */
    int64_t live_sent = stop_live(&live, live_tid);
    if (live_sent < 0 || (st = vg_client_flush(pub, 60000)) != VG_OK) {
        fprintf(stderr, "vigil-bench: the live publisher failed\n");
        caught = false;
    }
    if (caught && !await(&s, (uint64_t)live_sent, false, cfg->timeout_ms))
        fprintf(stderr, "vigil-bench: live messages missing after %d ms of silence\n",
                cfg->timeout_ms);
    long rss_end = cfg->broker_pid > 0 ? sp_status_field(cfg->broker_pid, "VmRSS") : -1;
    vg_client_destroy(sub); /* joins its I/O thread: s is final */
    print_result(cfg, &s, topic, backlog_s, caught_ns > 0 ? (double)(caught_ns - t_sub) / 1e9 : 0,
                 live_sent, cpu1 - cpu0, rss_backlog, rss_end);
    bool clean = caught && s.backlog == s.n && s.dup == 0 && live_sent >= 0 &&
                 s.live == (uint64_t)live_sent;
    rc = clean ? 0 : 1;
    goto destroy_pub;

destroy_sub:
    vg_client_destroy(sub);
stop_live:
    stop_live(&live, live_tid);
destroy_pub:
    vg_client_destroy(pub);
free_seen:
    free(s.seen);
    return rc;
}
