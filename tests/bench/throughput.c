/* vigil-bench's throughput, in-flight and idle-connection cases
 * (throughput.h). Every message carries its send time (CLOCK_MONOTONIC ns),
 * its publisher and its sequence number in its first 16 bytes, so latency
 * is measured end to end by the receiving thread, and loss by counting. */
#include "throughput.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "histogram.h"
#include "subs.h"
#include "sysprobe.h"

/* At full speed one message in SAMPLE carries a send time (the others carry
 * 0 and are only counted): reading the clock for every message on both ends
 * would make the driver, not the broker, the thing measured. */
#define SAMPLE 8

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}


/* ---- subscribers ---- */

typedef struct {
    _Atomic uint64_t received;
    _Atomic int64_t last_ns;
    histogram hist;
    bench_conn *conn;
    /* in-flight mode: the publisher waits for this sequence number */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t seen_seq;
    atomic_bool record;
    bool inflight; /* the publisher waits for each message */
} sub_state;

static void on_msg(void *ud, const uint8_t *p, size_t len)
{
    sub_state *s = ud;
    if (len < 16)
        return;
    int64_t sent;
    uint32_t seq;
    memcpy(&sent, p, 8);
    memcpy(&seq, p + 12, 4);
    uint64_t n = atomic_load_explicit(&s->received, memory_order_relaxed) + 1;
    if (sent != 0 || n % SAMPLE == 0) { /* the clock, only for a sample */
        int64_t now = now_ns();
        if (sent != 0 && atomic_load_explicit(&s->record, memory_order_relaxed))
            hist_add(&s->hist, now - sent);
        atomic_store_explicit(&s->last_ns, now, memory_order_relaxed);
    }
    atomic_store_explicit(&s->received, n, memory_order_relaxed); /* one writer */
    if (s->inflight) {
        pthread_mutex_lock(&s->mu);
        s->seen_seq = seq;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

/* ---- publishers ---- */

typedef struct {
    const bench_config *cfg;
    int id;
    uint64_t n;
    bench_conn *conn;
    pthread_barrier_t *go;
    int64_t start_ns, end_ns;
    int failed;
} pub_state;

static void stamp(uint8_t *msg, int id, uint32_t seq, bool always)
{
    int64_t t = always || seq % SAMPLE == 0 ? now_ns() : 0;
    uint32_t pid = (uint32_t)id;
    memcpy(msg, &t, 8);
    memcpy(msg + 8, &pid, 4);
    memcpy(msg + 12, &seq, 4);
}

static void *publisher(void *arg)
{
    pub_state *ps = arg;
    const bench_config *cfg = ps->cfg;
    uint8_t *msg = calloc(1, cfg->size);
    memset(msg + 16, 'x', cfg->size - 16);
    pthread_barrier_wait(ps->go);
    ps->start_ns = now_ns();
    for (uint64_t i = 0; i < ps->n; i++) {
        stamp(msg, ps->id, (uint32_t)(i + 1), false);
        if (cfg->be->publish(ps->conn, cfg->topic, msg, cfg->size) != 0) {
            ps->failed = 1;
            break;
        }
    }
    if (cfg->be->flush(ps->conn, 60000) != 0)
        ps->failed = 1;
    ps->end_ns = now_ns();
    free(msg);
    return NULL;
}


static int connect_subs(const bench_config *cfg, sub_state *subs, bool inflight)
{
    for (int i = 0; i < cfg->subs; i++) {
        sub_state *s = &subs[i];
        hist_init(&s->hist);
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        s->record = !inflight;
        s->inflight = inflight;
        s->conn = cfg->be->connect(cfg->server, on_msg, s);
        if (s->conn == NULL || cfg->be->subscribe(s->conn, cfg->topic) != 0)
            return -1;
    }
    return 0;
}

static void print_latency(histogram *h)
{
    printf(" p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f", hist_quantile(h, 0.50) / 1e3,
           hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3, hist_max(h) / 1e3);
}

/* P publishers, S subscribers, count messages as fast as they go. */
int bench_run_throughput(const bench_config *cfg)
{
    static sub_state subs[MAX_CLIENTS];
    static pub_state pubs[MAX_CLIENTS];
    pthread_t tids[MAX_CLIENTS];
    if (connect_subs(cfg, subs, false) != 0)
        return 1;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)cfg->pubs + 1);
    for (int i = 0; i < cfg->pubs; i++) {
        pubs[i] = (pub_state){.cfg = cfg, .id = i, .go = &go,
                              .n = cfg->count / (uint64_t)cfg->pubs +
                                   (i == 0 ? cfg->count % (uint64_t)cfg->pubs : 0)};
        pubs[i].conn = cfg->be->connect(cfg->server, NULL, NULL);
        if (pubs[i].conn == NULL)
            return 1;
        pthread_create(&tids[i], NULL, publisher, &pubs[i]);
    }
    double cpu0 = cfg->broker_pid > 0 ? sp_cpu_seconds(cfg->broker_pid) : 0;
    /* The broker's RSS: at the start, and the peak of samples every 10 ms. */
    long rss_start = cfg->broker_pid > 0 ? sp_status_field(cfg->broker_pid, "VmRSS") : -1;
    long rss_peak = rss_start;
    int64_t start = now_ns();
    pthread_barrier_wait(&go);

    /* Wait for every subscriber to have everything, or for silence. */
    uint64_t want = cfg->count * (uint64_t)cfg->subs, got = 0, last_got = 0;
    int64_t quiet_since = now_ns();
    for (unsigned tick_no = 1;; tick_no++) {
        struct timespec tick = {0, 2000000};
        nanosleep(&tick, NULL); /* a sampling period, not a wait for a condition */
        if (cfg->broker_pid > 0 && tick_no % 5 == 0) {
            long r = sp_status_field(cfg->broker_pid, "VmRSS");
            if (r > rss_peak)
                rss_peak = r;
        }
        got = 0;
        for (int i = 0; i < cfg->subs; i++)
            got += atomic_load(&subs[i].received);
        if (got >= want)
            break;
        if (got != last_got) {
            last_got = got;
            quiet_since = now_ns();
        } else if (now_ns() - quiet_since > (int64_t)cfg->timeout_ms * 1000000) {
            break;
        }
    }
    if (cfg->broker_pid > 0) {
        long r = sp_status_field(cfg->broker_pid, "VmRSS");
        if (r > rss_peak)
            rss_peak = r;
    }
    int failed = 0;
    int64_t pub_end = start;
    for (int i = 0; i < cfg->pubs; i++) {
        pthread_join(tids[i], NULL);
        failed |= pubs[i].failed;
        if (pubs[i].end_ns > pub_end)
            pub_end = pubs[i].end_ns;
    }
    /* last_ns is sampled; the main loop noticed completion within 2 ms of it. */
    int64_t recv_end = start;
    histogram all;
    hist_init(&all);
    for (int i = 0; i < cfg->subs; i++) {
        int64_t t = atomic_load(&subs[i].last_ns);
        if (t > recv_end)
            recv_end = t;
        hist_merge(&all, &subs[i].hist);
    }
    double pub_s = (double)(pub_end - start) / 1e9, recv_s = (double)(recv_end - start) / 1e9;
    double recv_rate = recv_s > 0 ? (double)got / recv_s : 0;
    printf("system=%s mode=throughput pubs=%d subs=%d size=%zu count=%llu pub_rate=%.0f "
           "recv_rate=%.0f mb_s=%.1f lost=%llu",
           cfg->be->name, cfg->pubs, cfg->subs, cfg->size, (unsigned long long)cfg->count,
           pub_s > 0 ? (double)cfg->count / pub_s : 0, recv_rate, recv_rate * (double)cfg->size / 1e6,
           (unsigned long long)(want - (got < want ? got : want)));
    print_latency(&all);
    if (cfg->broker_pid > 0) /* CPU time, user + system, of every broker thread */
        printf(" broker_cpu_us_per_msg=%.3f",
               (sp_cpu_seconds(cfg->broker_pid) - cpu0) * 1e6 / (double)cfg->count);
    if (cfg->broker_pid > 0) /* VmRSS before the run, and its peak over the run */
        printf(" broker_rss_start_kb=%ld broker_rss_kb=%ld", rss_start, rss_peak);
    printf(" secs=%.2f%s\n", recv_s, failed ? " error=publish_failed" : "");
    for (int i = 0; i < cfg->pubs; i++)
        cfg->be->close(pubs[i].conn);
    for (int i = 0; i < cfg->subs; i++)
        cfg->be->close(subs[i].conn);
    return failed || got < want;
}

/* One message in flight: publish, wait until the subscriber has it, repeat. */
int bench_run_inflight(const bench_config *cfg)
{
    static sub_state s;
    bench_config one = *cfg;
    one.subs = 1;
    if (connect_subs(&one, &s, true) != 0)
        return 1;
    bench_conn *p = cfg->be->connect(cfg->server, NULL, NULL);
    if (p == NULL)
        return 1;
    uint8_t *msg = calloc(1, cfg->size);
    memset(msg + 16, 'x', cfg->size - 16);
    uint64_t warmup = cfg->count / 10 + 100;
    int rc = 0;
    for (uint64_t i = 1; i <= warmup + cfg->count; i++) {
        atomic_store(&s.record, i > warmup);
        stamp(msg, 0, (uint32_t)i, true);
        /* No flush here: every client library under test sends at once by
         * itself, and a flush round trip would only add load to the path. */
        if (cfg->be->publish(p, cfg->topic, msg, cfg->size) != 0) {
            rc = 1;
            break;
        }
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += cfg->timeout_ms / 1000 + 1;
        pthread_mutex_lock(&s.mu);
        while (s.seen_seq != (uint32_t)i && rc == 0)
            if (pthread_cond_timedwait(&s.cv, &s.mu, &deadline) == ETIMEDOUT)
                rc = 1;
        pthread_mutex_unlock(&s.mu);
        if (rc != 0)
            break;
    }
    printf("system=%s mode=inflight size=%zu count=%llu", cfg->be->name, cfg->size,
           (unsigned long long)cfg->count);
    print_latency(&s.hist);
    printf("%s\n", rc ? " error=lost_or_timeout" : "");
    free(msg);
    cfg->be->close(p);
    cfg->be->close(s.conn);
    return rc;
}

/* ---- idle connections ---- */

int bench_run_idle(const bench_config *cfg, int conns, int secs, int broker_pid)
{
    if (broker_pid <= 0) {
        fprintf(stderr, "vigil-bench: --idle needs --broker-pid\n");
        return 2;
    }
    long before = sp_status_field(broker_pid, "VmRSS");
    void *pool = cfg->be->idle_open(cfg->server, conns, cfg->topic);
    if (pool == NULL)
        return 1;
    struct timespec settle = {3, 0};
    nanosleep(&settle, NULL); /* let the broker finish setting the connections up */
    long after = sp_status_field(broker_pid, "VmRSS");
    double c0 = sp_cpu_seconds(broker_pid);
    struct timespec window = {secs, 0};
    nanosleep(&window, NULL); /* the measurement window */
    double c1 = sp_cpu_seconds(broker_pid);
    long end = sp_status_field(broker_pid, "VmRSS");
    printf("system=%s mode=idle conns=%d rss_before_kb=%ld rss_after_kb=%ld rss_end_kb=%ld "
           "rss_per_conn_b=%.0f cpu_pct=%.2f window_s=%d\n",
           cfg->be->name, conns, before, after, end, (double)(after - before) * 1024.0 / conns,
           (c1 - c0) * 100.0 / secs, secs);
    cfg->be->idle_close(pool);
    return 0;
}

