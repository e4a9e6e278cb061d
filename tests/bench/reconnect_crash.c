/* The crash loop: one publisher publishing a numbered message every
 * --interval for the whole run, S subscribers, and R rounds of kill -9, a
 * random downtime, restart.
 *
 * What is timed, from t_listen (the restarted broker listening):
 *  - a subscriber: its first message published after the restart (epoch ==
 *    round, see rc_stamp). Messages the publisher buffered while the broker
 *    was down are delivered too, but do not count: what a user wants to know
 *    is when a message published now reaches everyone. A subscriber's figure
 *    therefore also waits for the publisher to be back.
 *  - the publisher: the first moment its messages are known to go through
 *    the new broker: a subscriber receiving any message after t_listen, or
 *    its confirmed counter (vg_client_get_stats) moving, whichever comes
 *    first. Confirmations need a PING after the messages, so a flusher thread
 *    calls vg_client_flush every few milliseconds.
 *  - a subscriber's own recovery (resub): when the broker acknowledged its
 *    resubscription, seen by a watcher thread blocked in
 *    vg_client_wait_subscribed. Independent of the publisher; valid because
 *    after a kill -9 on one host every client sees the EOF long before the
 *    restart (the shortest downtime is far above a loopback round trip).
 *  - a round's worst client: the time by which every client delivers again,
 *    the figure the 1 s goal is about.
 * A client not delivering within --bound is counted late and the round goes
 * on; it is never waited for beyond that. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "logcap.h"
#include "reconnect.h"
#include "sysprobe.h"

#define POLL_NS 2000000LL     /* how often the main thread looks at the clients */
#define FLUSH_GAP_NS 2000000LL /* between two flushes of the publisher */
#define START_TIMEOUT_MS 10000

typedef struct crash_run crash_run;

typedef struct {
    crash_run *run;
    int idx;
    vg_client *c;
    uint64_t sid;
    _Atomic int64_t *first_new; /* [round]: first message published in the round's epoch */
    _Atomic int64_t *first_any; /* [round]: first message received in the round */
    _Atomic int64_t *resub;     /* [round]: the broker acknowledged the resubscription */
    pthread_t watcher;
    bool watching;
} crash_sub;

struct crash_run {
    const rc_config *cfg;
    vg_client *pub;
    crash_sub *subs;
    _Atomic uint32_t epoch; /* the round whose broker is known to listen; 0 before */
    _Atomic bool stop;
    _Atomic int64_t *pub_confirm; /* [round]: confirmed moved past confirm_base */
    uint64_t *confirm_base;       /* [round]: written before epoch is published */
    _Atomic uint64_t published, publish_full, publish_failed;
    _Atomic unsigned closed, sub_errors;
};

/* ---- callbacks, on the clients' I/O threads ---- */

static void on_msg(void *ud, const vg_msg *m)
{
    crash_sub *s = ud;
    rc_stamp st;
    uint32_t e = atomic_load_explicit(&s->run->epoch, memory_order_acquire);
    if (e == 0 || !rc_stamp_read(m, &st))
        return;
    int64_t now = 0;
    if (atomic_load_explicit(&s->first_any[e], memory_order_relaxed) == 0) {
        now = rc_now_ns();
        atomic_store_explicit(&s->first_any[e], now, memory_order_relaxed);
    }
    if (st.epoch == e && atomic_load_explicit(&s->first_new[e], memory_order_relaxed) == 0)
        atomic_store_explicit(&s->first_new[e], now != 0 ? now : rc_now_ns(), memory_order_relaxed);
}

static void on_closed(void *ud, const char *reason)
{
    crash_sub *s = ud;
    atomic_fetch_add(&s->run->closed, 1);
    lc_progress("client %d gave up: reason=%s", s->idx, reason);
}

static void on_pub_closed(void *ud, const char *reason)
{
    crash_run *r = ud;
    atomic_fetch_add(&r->closed, 1);
    lc_progress("the publisher gave up: reason=%s", reason);
}

static void on_sub_error(void *ud, uint64_t sid, const char *topic, uint64_t code, const char *reason)
{
    (void)sid;
    crash_sub *s = ud;
    atomic_fetch_add(&s->run->sub_errors, 1);
    lc_progress("client %d: subscription to %s refused: code=%llu reason=%s", s->idx, topic,
                (unsigned long long)code, reason);
}

/* ---- the publisher's threads ---- */

static void *publisher_main(void *arg)
{
    crash_run *r = arg;
    const rc_config *cfg = r->cfg;
    uint8_t payload[RC_PAYLOAD_LEN];
    size_t tlen = strlen(cfg->topic);
    int64_t period = cfg->interval_ms * 1000000, next = rc_now_ns();
    for (uint64_t seq = 1; !atomic_load(&r->stop); seq++) {
        rc_stamp st = {seq, rc_now_ns(), atomic_load_explicit(&r->epoch, memory_order_acquire)};
        rc_stamp_write(payload, &st);
        /* Never waits: a full buffer is counted, not allowed to stall the clock. */
        vg_status s = vg_client_publish(r->pub, VG_FRAME_MSG_TYPE1, cfg->topic, tlen, payload,
                                        sizeof payload, 0);
        if (s == VG_OK)
            atomic_fetch_add(&r->published, 1);
        else if (s == VG_ERR_FULL)
            atomic_fetch_add(&r->publish_full, 1);
        else
            atomic_fetch_add(&r->publish_failed, 1);
        next += period;
        int64_t now = rc_now_ns();
        if (next < now - period)
            next = now; /* fell behind (a stall): resume the pace, no burst */
        rc_sleep_until(next);
    }
    return NULL;
}

static void *flusher_main(void *arg)
{
    crash_run *r = arg;
    while (!atomic_load(&r->stop)) {
        vg_client_flush(r->pub, 100); /* a timeout just means the broker is down */
        uint32_t e = atomic_load_explicit(&r->epoch, memory_order_acquire);
        if (e > 0 && atomic_load(&r->pub_confirm[e]) == 0) {
            vg_client_stats st;
            vg_client_get_stats(r->pub, &st);
            if (st.confirmed > r->confirm_base[e])
                atomic_store(&r->pub_confirm[e], rc_now_ns());
        }
        rc_sleep_until(rc_now_ns() + FLUSH_GAP_NS);
    }
    return NULL;
}

/* Times each restart's resubscription of one subscriber. Waits in short
 * slices so that it notices the end of the run and a new round. */
static void *watcher_main(void *arg)
{
    crash_sub *s = arg;
    crash_run *r = s->run;
    uint32_t seen = 0;
    while (!atomic_load(&r->stop)) {
        uint32_t e = atomic_load_explicit(&r->epoch, memory_order_acquire);
        if (e == seen || atomic_load(&s->resub[e]) != 0) {
            rc_sleep_until(rc_now_ns() + 1000000);
            continue;
        }
        seen = e;
        int64_t give_up = rc_now_ns() + r->cfg->bound_ms * 1000000;
        while (!atomic_load(&r->stop) && atomic_load(&r->epoch) == e && rc_now_ns() < give_up) {
            if (vg_client_wait_subscribed(s->c, s->sid, 100) == VG_OK) {
                atomic_store(&s->resub[e], rc_now_ns());
                break;
            }
        }
    }
    return NULL;
}

/* ---- setup ---- */

static int start_clients(crash_run *r, int nrounds)
{
    const rc_config *cfg = r->cfg;
    vg_client_opts o;
    const char *why = "";
    rc_client_opts(cfg, &o, "reconnect-pub", r);
    o.on_closed = on_pub_closed;
    vg_status st = vg_client_start(&r->pub, &o, &why);
    if (st == VG_OK)
        st = vg_client_wait_connected(r->pub, START_TIMEOUT_MS);
    if (st != VG_OK) {
        lc_progress("the publisher cannot connect: %s %s", vg_strerror(st), why);
        return -1;
    }
    for (int i = 0; i < cfg->subs; i++) {
        crash_sub *s = &r->subs[i];
        s->run = r;
        s->idx = i;
        s->first_new = calloc((size_t)nrounds + 1, sizeof *s->first_new);
        s->first_any = calloc((size_t)nrounds + 1, sizeof *s->first_any);
        s->resub = calloc((size_t)nrounds + 1, sizeof *s->resub);
        if (s->first_new == NULL || s->first_any == NULL || s->resub == NULL)
            return -1;
        char name[32];
        snprintf(name, sizeof name, "reconnect-sub-%d", i);
        rc_client_opts(cfg, &o, name, s);
        o.on_msg = on_msg;
        o.on_closed = on_closed;
        o.on_sub_error = on_sub_error;
        st = vg_client_start(&s->c, &o, &why);
        if (st == VG_OK)
            st = vg_client_subscribe(s->c, cfg->topic, &s->sid);
        if (st == VG_OK)
            st = vg_client_wait_subscribed(s->c, s->sid, START_TIMEOUT_MS);
        if (st != VG_OK) {
            lc_progress("subscriber %d cannot subscribe: %s", i, vg_strerror(st));
            return -1;
        }
        s->watching = pthread_create(&s->watcher, NULL, watcher_main, s) == 0;
        if (!s->watching)
            return -1;
    }
    return 0;
}

static void stop_clients(crash_run *r)
{
    atomic_store(&r->stop, true);
    for (int i = 0; i < r->cfg->subs; i++)
        if (r->subs[i].watching)
            pthread_join(r->subs[i].watcher, NULL);
    for (int i = 0; i < r->cfg->subs; i++) {
        vg_client_destroy(r->subs[i].c);
        free((void *)r->subs[i].first_new);
        free((void *)r->subs[i].first_any);
        free((void *)r->subs[i].resub);
    }
    vg_client_destroy(r->pub);
}

/* xorshift64*: a reproducible stream of downtimes from --seed. */
static double uniform(uint64_t *x)
{
    *x ^= *x >> 12, *x ^= *x << 25, *x ^= *x >> 27;
    return (double)((*x * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* ---- one round ---- */

typedef struct {
    int64_t *sub;   /* [subs] delay after t_listen, or RC_LATE */
    int64_t *resub; /* [subs] */
    int64_t pub, worst;
    int late;
} round_result;

static bool pub_through(crash_run *r, uint32_t e, int64_t *when)
{
    int64_t t = atomic_load(&r->pub_confirm[e]);
    for (int i = 0; i < r->cfg->subs; i++) {
        int64_t a = atomic_load(&r->subs[i].first_any[e]);
        if (a != 0 && (t == 0 || a < t))
            t = a;
    }
    *when = t;
    return t != 0;
}

/* Waits until every client delivers again after the restart at t_listen, or
 * the bound; fills *res. */
static void measure_round(crash_run *r, uint32_t e, int64_t t_listen, round_result *res)
{
    const rc_config *cfg = r->cfg;
    int64_t deadline = t_listen + cfg->bound_ms * 1000000;
    for (;;) {
        int64_t t;
        bool done = pub_through(r, e, &t);
        for (int i = 0; i < cfg->subs && done; i++)
            done = atomic_load(&r->subs[i].first_new[e]) != 0 &&
                   atomic_load(&r->subs[i].resub[e]) != 0;
        if (done || rc_now_ns() > deadline)
            break;
        rc_sleep_until(rc_now_ns() + POLL_NS);
    }
    int64_t t;
    res->late = 0;
    res->pub = pub_through(r, e, &t) ? t - t_listen : RC_LATE;
    res->worst = res->pub;
    res->late += res->pub == RC_LATE;
    for (int i = 0; i < cfg->subs; i++) {
        int64_t f = atomic_load(&r->subs[i].first_new[e]);
        int64_t a = atomic_load(&r->subs[i].resub[e]);
        res->resub[i] = a != 0 ? a - t_listen : RC_LATE;
        res->sub[i] = f != 0 ? f - t_listen : RC_LATE;
        res->late += f == 0;
        if (res->sub[i] > res->worst)
            res->worst = res->sub[i];
    }
}

static void print_ms(const char *key, int64_t ns)
{
    if (ns == RC_LATE)
        printf(" %s=inf", key);
    else
        printf(" %s=%.1f", key, (double)ns / 1e6);
}

static void print_list(const char *key, const int64_t *ns, int n)
{
    printf(" %s=", key);
    for (int i = 0; i < n; i++) {
        if (ns[i] == RC_LATE)
            printf("%sinf", i ? "," : "");
        else
            printf("%s%.1f", i ? "," : "", (double)ns[i] / 1e6);
    }
}

static void print_round(crash_run *r, int round, int64_t down_target_ms, int64_t t_kill,
                        int64_t t_gone, const bp_listen *L, const round_result *res,
                        const bp_problems *bpp)
{
    int64_t confirm = atomic_load(&r->pub_confirm[round]);
    printf("mode=crash round=%d down_target_ms=%lld down_ms=%.1f kill_ms=%.1f "
           "broker_start_ms=%.1f listen_by=%s log_lag_ms=%.1f start_tries=%d",
           round, (long long)down_target_ms, (double)(L->listen_ns - t_gone) / 1e6,
           (double)(t_gone - t_kill) / 1e6, (double)(L->listen_ns - L->spawn_ns) / 1e6,
           L->connect_ns != 0 ? "connect" : "log", (double)(L->log_ns - L->listen_ns) / 1e6,
           L->tries);
    print_ms("pub_ms", res->pub);
    print_ms("pub_confirm_ms", confirm != 0 ? confirm - L->listen_ns : RC_LATE);
    print_list("sub_ms", res->sub, r->cfg->subs);
    print_list("resub_ms", res->resub, r->cfg->subs);
    print_ms("worst_ms", res->worst);
    printf(" late=%d broker_warn=%zu broker_error=%zu\n", res->late, bpp->warn, bpp->error);
}

/* ---- the loop ---- */

static void print_summary(crash_run *r, int rounds, int64_t *subv, int64_t *resubv, int64_t *pubv,
                          int64_t *worstv, int rounds_late, const bp_problems *bp_total,
                          const lc_counts *lc)
{
    const rc_config *cfg = r->cfg;
    vg_client_opts o;
    rc_client_opts(cfg, &o, "", NULL);
    int within = 0;
    for (int i = 0; i < rounds; i++)
        within += worstv[i] != RC_LATE && worstv[i] <= 1000000000;
    rc_quantiles q;
    printf("mode=crash summary=1 rounds=%d subs=%d seed=%llu down_min_ms=%lld down_max_ms=%lld "
           "interval_ms=%lld backoff_base_ms=%lld backoff_max_ms=%lld bound_ms=%lld",
           rounds, cfg->subs, (unsigned long long)cfg->seed, (long long)cfg->down_min_ms,
           (long long)cfg->down_max_ms, (long long)cfg->interval_ms, (long long)o.backoff_base_ms,
           (long long)o.backoff_max_ms, (long long)cfg->bound_ms);
    rc_quantiles_of(subv, (size_t)rounds * (size_t)cfg->subs, &q);
    rc_print_quantiles("sub", &q);
    rc_quantiles_of(resubv, (size_t)rounds * (size_t)cfg->subs, &q);
    rc_print_quantiles("resub", &q);
    rc_quantiles_of(pubv, (size_t)rounds, &q);
    rc_print_quantiles("pub", &q);
    rc_quantiles_of(worstv, (size_t)rounds, &q);
    rc_print_quantiles("worst", &q);
    printf(" rounds_within_1s=%d rounds_late=%d closed=%u sub_errors=%u published=%llu "
           "publish_full=%llu publish_failed=%llu broker_warn=%zu broker_error=%zu "
           "client_warn_lines=%zu client_error_lines=%zu\n",
           within, rounds_late, atomic_load(&r->closed), atomic_load(&r->sub_errors),
           (unsigned long long)atomic_load(&r->published),
           (unsigned long long)atomic_load(&r->publish_full),
           (unsigned long long)atomic_load(&r->publish_failed), bp_total->warn, bp_total->error,
           lc->warn, lc->error);
}

static void add_problems(bp_broker *b, bp_problems *total)
{
    bp_problems p;
    bp_problems_get(b, &p);
    if (p.warn + p.error > 0)
        bp_problems_print(b, lc_progress_fd(), 20);
    total->warn += p.warn;
    total->error += p.error;
}

int rc_crash_loop(const rc_config *cfg, bp_broker *b)
{
    int R = cfg->restarts, S = cfg->subs;
    crash_run r = {.cfg = cfg};
    r.subs = calloc((size_t)S, sizeof *r.subs);
    r.pub_confirm = calloc((size_t)R + 1, sizeof *r.pub_confirm);
    r.confirm_base = calloc((size_t)R + 1, sizeof *r.confirm_base);
    int64_t *subv = calloc((size_t)R * (size_t)S, sizeof *subv);
    int64_t *resubv = calloc((size_t)R * (size_t)S, sizeof *resubv);
    int64_t *pubv = calloc((size_t)R, sizeof *pubv), *worstv = calloc((size_t)R, sizeof *worstv);
    int rc = 1;
    if (r.subs == NULL || r.pub_confirm == NULL || r.confirm_base == NULL || subv == NULL ||
        resubv == NULL || pubv == NULL || worstv == NULL)
        goto out_free;

    bp_listen L;
    if (bp_start(b, START_TIMEOUT_MS, &L, lc_progress_fd()) != 0)
        goto out_free;
    lc_progress("broker pid %d listening; accept backlog %d (somaxconn %ld), max_connections %ld",
                (int)bp_pid(b), sp_listen_backlog(cfg->port),
                sp_read_long("/proc/sys/net/core/somaxconn"), bp_max_connections(b));
    if (start_clients(&r, R) != 0)
        goto out_clients;
    pthread_t pub_thread, flush_thread;
    if (pthread_create(&pub_thread, NULL, publisher_main, &r) != 0)
        goto out_clients;
    if (pthread_create(&flush_thread, NULL, flusher_main, &r) != 0) {
        atomic_store(&r.stop, true);
        pthread_join(pub_thread, NULL);
        goto out_clients;
    }
    lc_progress("publisher and %d subscribers up; %d rounds, downtime %.3f-%.3f s, seed %llu", S,
                R, (double)cfg->down_min_ms / 1e3, (double)cfg->down_max_ms / 1e3,
                (unsigned long long)cfg->seed);
    rc_sleep_until(rc_now_ns() + cfg->uptime_ms * 1000000);

    uint64_t rng = cfg->seed;
    bp_problems bp_total = {0, 0};
    off_t mark0 = lc_mark();
    int rounds = 0, rounds_late = 0;
    for (int e = 1; e <= R; e++) {
        add_problems(b, &bp_total); /* this incarnation's, before it dies */
        double span = (double)(cfg->down_max_ms - cfg->down_min_ms);
        int64_t down = cfg->down_min_ms + (int64_t)llround(uniform(&rng) * span);
        int64_t t_kill = rc_now_ns();
        bp_kill(b);
        int64_t t_gone = rc_now_ns(); /* the downtime runs from the death, as in the swarm */
        rc_sleep_until(t_gone + down * 1000000);
        if (bp_start(b, START_TIMEOUT_MS, &L, lc_progress_fd()) != 0)
            break;
        vg_client_stats st;
        vg_client_get_stats(r.pub, &st);
        r.confirm_base[e] = st.confirmed;
        atomic_store_explicit(&r.epoch, (uint32_t)e, memory_order_release);

        round_result res = {.sub = subv + (size_t)(e - 1) * (size_t)S,
                            .resub = resubv + (size_t)(e - 1) * (size_t)S};
        measure_round(&r, (uint32_t)e, L.listen_ns, &res);
        pubv[e - 1] = res.pub;
        worstv[e - 1] = res.worst;
        rounds_late += res.late > 0;
        rounds = e;
        bp_problems bpp;
        bp_problems_get(b, &bpp);
        print_round(&r, e, down, t_kill, t_gone, &L, &res, &bpp);
        if (res.late > 0)
            lc_progress("round %d: %d client(s) not delivering %lld ms after the restart", e,
                        res.late, (long long)cfg->bound_ms);
        if (e < R)
            rc_sleep_until(rc_now_ns() + cfg->uptime_ms * 1000000);
    }
    add_problems(b, &bp_total);
    atomic_store(&r.stop, true);
    pthread_join(pub_thread, NULL);
    pthread_join(flush_thread, NULL);

    lc_counts lc;
    lc_count(mark0, lc_mark(), &lc);
    lc_print("client library log during the rounds", &lc);
    if (rounds > 0)
        print_summary(&r, rounds, subv, resubv, pubv, worstv, rounds_late, &bp_total, &lc);
    rc = rounds == R && rounds_late == 0 && atomic_load(&r.closed) == 0 &&
                 atomic_load(&r.sub_errors) == 0 && atomic_load(&r.publish_failed) == 0 &&
                 atomic_load(&r.publish_full) == 0 && bp_total.error == 0 && lc.error == 0
             ? 0
             : 1;
out_clients:
    stop_clients(&r);
    bp_kill(b);
out_free:
    free(r.subs);
    free((void *)r.pub_confirm);
    free(r.confirm_base);
    free(subv);
    free(resubv);
    free(pubv);
    free(worstv);
    return rc;
}
