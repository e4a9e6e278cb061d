/* The confirmed-publish and replay cases (durable.h), and vigil's backend
 * for them.
 *
 * Every payload carries its publisher in bytes 0..7 and its number from 1
 * on that publisher in bytes 8..15; the rest is 'x'. A replay has one
 * publisher, so its reader expects 1, 2, ... N in that order, exactly
 * once each, and counts anything else. */
#include "durable.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "sysprobe.h"

#define MAX_PUBS 256

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void stamp(uint8_t *msg, uint64_t pub, uint64_t index)
{
    memcpy(msg, &pub, 8);
    memcpy(msg + 8, &index, 8);
}

/* A fresh topic name per run unless one was given: a topic with no log and
 * (JetStream) no stream of that name. */
static const char *topic_of(const durable_cfg *cfg, char *buf, size_t cap, const char *what)
{
    if (cfg->topic != NULL)
        return cfg->topic;
    snprintf(buf, cap, "%s.%d.%lld", what, (int)getpid(), (long long)(now_ns() / 1000));
    return buf;
}

/* ---- publishers ---- */

typedef struct {
    const durable_cfg *cfg;
    durable_pub *p;
    uint64_t id, n, confirmed;
    pthread_barrier_t *go;
    int64_t start_ns, published_ns, end_ns;
    int failed;
} pub_state;

static void *publisher(void *arg)
{
    pub_state *ps = arg;
    const durable_cfg *cfg = ps->cfg;
    uint8_t *msg = malloc(cfg->size);
    if (msg != NULL)
        memset(msg, 'x', cfg->size);
    pthread_barrier_wait(ps->go);
    ps->start_ns = now_ns();
    for (uint64_t i = 1; msg != NULL && i <= ps->n; i++) {
        stamp(msg, ps->id, i);
        if (cfg->be->publish(ps->p, msg, cfg->size) != 0) {
            ps->failed = 1;
            break;
        }
    }
    ps->published_ns = now_ns();
    /* the timeout is for silence; the confirmation of a large burst may take longer */
    if (msg == NULL || cfg->be->confirm(ps->p, cfg->timeout_ms * 12, &ps->confirmed) != 0)
        ps->failed = 1;
    ps->end_ns = now_ns();
    free(msg);
    return NULL;
}

typedef struct {
    double secs;          /* from the start to the last confirmation */
    double publish_secs;  /* from the start to the last publish call returned */
    uint64_t confirmed;
    int failed;
} pub_result;

/* Runs P publishers of n messages in all on topic; 0 when all were confirmed. */
static int publish_all(const durable_cfg *cfg, const char *topic, int pubs, uint64_t n,
                       pub_result *r)
{
    static pub_state ps[MAX_PUBS];
    pthread_t tids[MAX_PUBS];
    *r = (pub_result){0};
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)pubs + 1);
    int opened = 0;
    for (; opened < pubs; opened++) {
        ps[opened] = (pub_state){.cfg = cfg, .id = (uint64_t)opened + 1, .go = &go,
                                 .n = n / (uint64_t)pubs + (opened == 0 ? n % (uint64_t)pubs : 0)};
        ps[opened].p = cfg->be->pub_open(cfg->server, topic, &cfg->tuning);
        if (ps[opened].p == NULL)
            break;
    }
    if (opened < pubs) {
        for (int i = 0; i < opened; i++)
            cfg->be->pub_close(ps[i].p);
        pthread_barrier_destroy(&go);
        r->failed = 1;
        return -1;
    }
    for (int i = 0; i < pubs; i++)
        if (pthread_create(&tids[i], NULL, publisher, &ps[i]) != 0) {
            fprintf(stderr, "vigil-bench: cannot start publisher thread %d\n", i);
            exit(1); /* the others wait at the barrier */
        }
    pthread_barrier_wait(&go);
    int64_t start = now_ns(), end = start, published = start;
    for (int i = 0; i < pubs; i++) {
        pthread_join(tids[i], NULL);
        if (ps[i].end_ns > end)
            end = ps[i].end_ns;
        if (ps[i].published_ns > published)
            published = ps[i].published_ns;
        r->confirmed += ps[i].confirmed;
        r->failed |= ps[i].failed;
    }
    for (int i = 0; i < pubs; i++)
        cfg->be->pub_close(ps[i].p);
    pthread_barrier_destroy(&go);
    r->secs = (double)(end - start) / 1e9;
    r->publish_secs = (double)(published - start) / 1e9;
    return r->failed || r->confirmed != n ? -1 : 0;
}

static void print_tuning(const durable_cfg *cfg)
{
    if (strcmp(cfg->be->name, "jetstream") == 0)
        printf(" js_max_pending=%d js_fetch_batch=%d", cfg->tuning.max_pending,
               cfg->tuning.fetch_batch);
}

int bench_confirmed(const durable_cfg *cfg)
{
    char buf[96];
    const char *topic = topic_of(cfg, buf, sizeof buf, "confirmed");
    if (cfg->be->setup(cfg->server, topic, &cfg->tuning) != 0)
        return 1;
    double cpu0 = cfg->broker_pid > 0 ? sp_cpu_seconds(cfg->broker_pid) : 0;
    pub_result r;
    int rc = publish_all(cfg, topic, cfg->pubs, cfg->count, &r) == 0 ? 0 : 1;
    double cpu1 = cfg->broker_pid > 0 ? sp_cpu_seconds(cfg->broker_pid) : 0;
    long rss = cfg->broker_pid > 0 ? sp_status_field(cfg->broker_pid, "VmRSS") : -1;
    double rate = r.secs > 0 ? (double)r.confirmed / r.secs : 0;
    printf("system=%s mode=confirmed pubs=%d size=%zu count=%llu topic=%s rate=%.0f mb_s=%.1f "
           "secs=%.3f publish_secs=%.3f confirm_tail_ms=%.1f confirmed=%llu unconfirmed=%llu",
           cfg->be->name, cfg->pubs, cfg->size, (unsigned long long)cfg->count, topic, rate,
           rate * (double)cfg->size / 1e6, r.secs, r.publish_secs,
           (r.secs - r.publish_secs) * 1e3, (unsigned long long)r.confirmed,
           (unsigned long long)(r.confirmed < cfg->count ? cfg->count - r.confirmed : 0));
    print_tuning(cfg);
    if (cfg->broker_pid > 0)
        printf(" broker_cpu_us_per_msg=%.3f broker_rss_kb=%ld",
               (cpu1 - cpu0) * 1e6 / (double)cfg->count, rss);
    printf("%s\n", rc ? " error=not_all_confirmed" : "");
    cfg->be->teardown(cfg->server, topic);
    return rc;
}

/* ---- the replay ---- */

typedef struct {
    uint64_t n;
    uint64_t next;      /* the number expected next */
    uint64_t disorder;  /* a number other than the one expected */
    _Atomic uint64_t got;
    _Atomic uint64_t dup;
    _Atomic int64_t done_ns; /* when the n-th message arrived */
} replay_state;

static void on_replayed(void *ud, const uint8_t *p, size_t len)
{
    replay_state *s = ud;
    uint64_t index = 0;
    if (len >= 16)
        memcpy(&index, p + 8, 8);
    if (index < s->next) {
        atomic_fetch_add_explicit(&s->dup, 1, memory_order_relaxed);
        return;
    }
    if (index != s->next)
        s->disorder++;
    s->next = index + 1;
    uint64_t got = atomic_load_explicit(&s->got, memory_order_relaxed) + 1;
    atomic_store_explicit(&s->got, got, memory_order_relaxed); /* one writer */
    if (got == s->n)
        atomic_store(&s->done_ns, now_ns());
}

int bench_replay(const durable_cfg *cfg)
{
    char buf[96];
    const char *topic = topic_of(cfg, buf, sizeof buf, "replay");
    if (cfg->be->setup(cfg->server, topic, &cfg->tuning) != 0)
        return 1;
    pub_result r;
    if (publish_all(cfg, topic, 1, cfg->count, &r) != 0) {
        fprintf(stderr, "vigil-bench: the backlog was not confirmed: %llu of %llu\n",
                (unsigned long long)r.confirmed, (unsigned long long)cfg->count);
        printf("system=%s mode=replay size=%zu count=%llu topic=%s error=backlog_not_confirmed\n",
               cfg->be->name, cfg->size, (unsigned long long)cfg->count, topic);
        cfg->be->teardown(cfg->server, topic);
        return 1;
    }
    long rss_backlog = cfg->broker_pid > 0 ? sp_status_field(cfg->broker_pid, "VmRSS") : -1;
    static replay_state s;
    s = (replay_state){.n = cfg->count, .next = 1};
    int64_t sub_ns = 0;
    double cpu0 = cfg->broker_pid > 0 ? sp_cpu_seconds(cfg->broker_pid) : 0;
    int rc = cfg->be->replay(cfg->server, topic, cfg->count, &cfg->tuning, cfg->timeout_ms,
                             on_replayed, &s, &sub_ns) == 0 ? 0 : 1;
    double cpu1 = cfg->broker_pid > 0 ? sp_cpu_seconds(cfg->broker_pid) : 0;
    long rss = cfg->broker_pid > 0 ? sp_status_field(cfg->broker_pid, "VmRSS") : -1;
    uint64_t got = atomic_load(&s.got), dup = atomic_load(&s.dup);
    int64_t done = atomic_load(&s.done_ns);
    double secs = done > 0 && sub_ns > 0 ? (double)(done - sub_ns) / 1e9 : 0;
    double rate = secs > 0 ? (double)got / secs : 0;
    if (got != cfg->count || dup != 0 || s.disorder != 0)
        rc = 1;
    printf("system=%s mode=replay size=%zu count=%llu topic=%s backlog_rate=%.0f "
           "replay_rate=%.0f mb_s=%.1f replay_secs=%.3f received=%llu lost=%llu dup=%llu "
           "disorder=%llu",
           cfg->be->name, cfg->size, (unsigned long long)cfg->count, topic,
           r.secs > 0 ? (double)cfg->count / r.secs : 0, rate, rate * (double)cfg->size / 1e6,
           secs, (unsigned long long)got,
           (unsigned long long)(cfg->count - (got < cfg->count ? got : cfg->count)),
           (unsigned long long)dup, (unsigned long long)s.disorder);
    print_tuning(cfg);
    if (cfg->broker_pid > 0)
        printf(" broker_cpu_us_per_replayed_msg=%.3f broker_rss_backlog_kb=%ld broker_rss_kb=%ld",
               (cpu1 - cpu0) * 1e6 / (double)cfg->count, rss_backlog, rss);
    printf("%s\n", rc ? " error=replay_incomplete" : "");
    cfg->be->teardown(cfg->server, topic);
    return rc;
}

/* ---- vigil ---- */

struct durable_pub {
    vg_client *c;
    char *topic;
    size_t topic_len;
};

typedef struct {
    durable_on_msg on_msg;
    void *ud;
    _Atomic uint64_t count; /* messages handed to on_msg */
    atomic_bool closed;
} v_sub;

static void v_deliver(void *ud, const vg_msg *m)
{
    v_sub *s = ud;
    s->on_msg(s->ud, m->payload, m->payload_len);
    atomic_store_explicit(&s->count, atomic_load_explicit(&s->count, memory_order_relaxed) + 1,
                          memory_order_relaxed); /* one writer: the I/O thread */
}

static void v_closed(void *ud, const char *reason)
{
    v_sub *s = ud;
    fprintf(stderr, "vigil-bench: the client gave up: %s\n", reason);
    atomic_store(&s->closed, true);
}

static vg_client *v_start(const char *server, const char *name, v_sub *s)
{
    vg_client_opts o;
    vg_client_opts_defaults(&o);
    o.servers = server;
    o.name = name;
    if (s != NULL) {
        o.ud = s;
        o.on_msg = v_deliver;
        o.on_closed = v_closed;
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

static int v_setup(const char *server, const char *topic, const durable_tuning *t)
{
    (void)server, (void)topic, (void)t;
    return 0;
}

static void v_teardown(const char *server, const char *topic)
{
    (void)server, (void)topic;
}

static durable_pub *v_pub_open(const char *server, const char *topic, const durable_tuning *t)
{
    (void)t;
    durable_pub *p = calloc(1, sizeof *p);
    if (p == NULL || (p->topic = strdup(topic)) == NULL) {
        free(p);
        return NULL;
    }
    p->topic_len = strlen(topic);
    if ((p->c = v_start(server, "bench-durable-pub", NULL)) == NULL) {
        free(p->topic);
        free(p);
        return NULL;
    }
    return p;
}

static int v_publish(durable_pub *p, const void *payload, size_t len)
{
    vg_status st = vg_client_publish(p->c, VG_FRAME_MSG_TYPE1, p->topic, p->topic_len, payload,
                                     len, -1);
    if (st != VG_OK) {
        fprintf(stderr, "vigil-bench: publish: %s\n", vg_strerror(st));
        return -1;
    }
    return 0;
}

/* The broker confirms a publisher's messages by answering the PING that
 * follows them; with a data dir, only once they are synced as its --fsync
 * policy says. vg_client_flush waits for those answers. */
static int v_confirm(durable_pub *p, int timeout_ms, uint64_t *confirmed)
{
    vg_status st = vg_client_flush(p->c, timeout_ms);
    vg_client_stats s;
    vg_client_get_stats(p->c, &s);
    *confirmed = s.confirmed;
    if (st != VG_OK || s.confirmed != s.published) {
        fprintf(stderr, "vigil-bench: flush: %s; confirmed %llu of %llu (unconfirmed %llu)\n",
                vg_strerror(st), (unsigned long long)s.confirmed,
                (unsigned long long)s.published, (unsigned long long)s.unconfirmed);
        return -1;
    }
    return 0;
}

static void v_pub_close(durable_pub *p)
{
    vg_client_destroy(p->c);
    free(p->topic);
    free(p);
}

/* A subscription from the first message retained. With the client
 * library's durable subscriptions, the one call to change is the
 * vg_client_subscribe_from below, to
 *     vg_client_subscribe_durable(c, topic, "bench_replay", VG_SUB_FIRST, 0, 0, NULL)
 * (a fresh topic per run: the durable is new, so it starts at the first
 * message, as JetStream's consumer does). */
static int v_replay(const char *server, const char *topic, uint64_t n, const durable_tuning *t,
                    int timeout_ms, durable_on_msg on_msg, void *ud, int64_t *sub_ns)
{
    (void)t;
    v_sub s = {.on_msg = on_msg, .ud = ud};
    vg_client *c = v_start(server, "bench-durable-sub", &s);
    if (c == NULL)
        return -1;
    *sub_ns = now_ns();
    vg_status st = vg_client_subscribe_from(c, topic, VG_SUB_FIRST, 0, 0, NULL);
    if (st != VG_OK) {
        fprintf(stderr, "vigil-bench: subscribe: %s\n", vg_strerror(st));
        vg_client_destroy(c);
        return -1;
    }
    uint64_t last = 0;
    int64_t quiet_since = now_ns();
    int rc = 0;
    while (atomic_load(&s.count) < n) {
        if (atomic_load(&s.closed)) {
            rc = -1;
            break;
        }
        uint64_t got = atomic_load(&s.count);
        if (got != last) {
            last = got;
            quiet_since = now_ns();
        } else if (now_ns() - quiet_since > (int64_t)timeout_ms * 1000000) {
            fprintf(stderr, "vigil-bench: replay: nothing for %d ms after %llu of %llu\n",
                    timeout_ms, (unsigned long long)got, (unsigned long long)n);
            rc = -1;
            break;
        }
        sleep_ms(2); /* a sampling period */
    }
    vg_client_destroy(c); /* joins its I/O thread: the state is final */
    return rc;
}

const durable_backend durable_vigil = {"vigil", v_setup, v_teardown, v_pub_open, v_publish,
                                       v_confirm, v_pub_close, v_replay};
