/* The swarm: N subscriber clients, spread over K child processes of this
 * one (swarm_procs.h: one process's descriptors fit only ~6,600 clients),
 * all subscribed, then one kill -9 of the broker, --down seconds, a
 * restart, and a reconnect storm. This process keeps the broker, the
 * publisher and the figures; the children only run their clients and
 * write each one's state and first-message time into a shared mapping.
 *
 * A fresh publisher client is started once the restarted broker listens, so
 * every message it publishes is "after the restart" (epoch 1) and its own
 * backoff does not hide the subscribers'; it connects at once, and its
 * connect time is reported. Each subscriber's first message is timed from
 * t_listen (CLOCK_MONOTONIC: the children's clock is this one).
 *
 * With N threads on each side of a small machine, the first message also
 * waits for the CPU: N I/O threads wake at once, and the broker fans each
 * message out to every subscriber back. So each client's own steps are also
 * timed, from the lines its I/O thread logs as they happen (logcap, one log
 * file for every process):
 * event=disconnected ("lost", after the kill: when it noticed) and
 * event=reconnected, logged once the broker acknowledged every
 * resubscription ("resub", after t_listen: what the backoff policy alone
 * decides). These lines do not name the client, so they give distributions,
 * not pairs. (An observer thread asking every client in turn was tried: it
 * waits its turn for the CPU behind thousands of threads, and its figures
 * came out seconds late.)
 *
 * Errors counted: on_closed and on_sub_error callbacks, client processes
 * that died, the broker's level=warn/error lines after the restart
 * (accept_failed, connection_limit, evict ...), and the client library's
 * level=error lines after the restart. The kernel's side: TcpExt
 * ListenOverflows/ListenDrops (accept queue full) and TCPReqQFull* (SYN
 * queue full) across the connect phase and the storm, and the deepest
 * accept queue seen by a sampler thread. Memory and threads of the broker
 * and of the tool (this process and its children, summed) are read before
 * the kill and after the storm.
 *
 * Each client has one I/O thread: N clients are N threads here and N more in
 * the broker, so kernel.pid_max and kernel.threads-max are checked up front. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>

#include "logcap.h"
#include "reconnect.h"
#include "swarm_procs.h"
#include "sysprobe.h"

#define START_TIMEOUT_MS 10000
#define SAMPLE_NS 10000000LL /* accept-queue sampling period */
#define POLL_NS 10000000LL
#define CONNECT_MARGIN_NS 10000000000LL /* children's own connect bound, plus this */
#define STOP_TIMEOUT_MS 60000 /* for the children to destroy their clients */

typedef struct {
    const rc_config *cfg;
    vg_client *pub;
    _Atomic unsigned pub_closed;
    _Atomic uint64_t published, publish_full, publish_failed;
    _Atomic bool stop_pub, stop_sampler;
    _Atomic int phase; /* 0: connecting, 1: after the kill */
    _Atomic int max_queue[2];
} swarm_run;

static void on_pub_closed(void *ud, const char *reason)
{
    swarm_run *r = ud;
    atomic_fetch_add(&r->pub_closed, 1);
    lc_progress("the publisher gave up: reason=%s", reason);
}

/* ---- helper threads ---- */

static void *publisher_main(void *arg)
{
    swarm_run *r = arg;
    const rc_config *cfg = r->cfg;
    uint8_t payload[RC_PAYLOAD_LEN];
    size_t tlen = strlen(cfg->topic);
    int64_t period = cfg->interval_ms * 1000000, next = rc_now_ns();
    for (uint64_t seq = 1; !atomic_load(&r->stop_pub); seq++) {
        rc_stamp st = {seq, rc_now_ns(), 1};
        rc_stamp_write(payload, &st);
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
            next = now; /* fell behind: resume the pace, no burst */
        rc_sleep_until(next);
    }
    return NULL;
}

static void *sampler_main(void *arg)
{
    swarm_run *r = arg;
    while (!atomic_load(&r->stop_sampler)) {
        int q = sp_accept_queue(r->cfg->port);
        int p = atomic_load(&r->phase);
        if (q > atomic_load(&r->max_queue[p]))
            atomic_store(&r->max_queue[p], q);
        rc_sleep_until(rc_now_ns() + SAMPLE_NS);
    }
    return NULL;
}

/* ---- phases ---- */

/* Says whether the machine can hold the clients in procs processes and n
 * connections in the broker; a warning, not a refusal: the run shows what
 * actually happens. */
static void check_limits(const rc_config *cfg, bp_broker *b, int procs)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    long pid_max = sp_read_long("/proc/sys/kernel/pid_max");
    long threads_max = sp_read_long("/proc/sys/kernel/threads-max");
    long maps = sp_read_long("/proc/sys/vm/max_map_count");
    long maxconn = bp_max_connections(b);
    int share = (cfg->swarm + procs - 1) / procs; /* the largest */
    lc_progress("limits: nofile=%llu (need ~%d in each of %d client processes of up to %d "
                "clients, ~%d in the broker) broker max_connections=%ld pid_max=%ld "
                "threads-max=%ld max_map_count=%ld (need ~%d threads, ~%d maps in the broker, ~%d "
                "in a client process) somaxconn=%ld accept backlog=%d",
                (unsigned long long)rl.rlim_cur, SW_FDS_PER_CLIENT * share + 64, procs, share,
                2 * cfg->swarm + 64, maxconn, pid_max, threads_max, maps, 2 * cfg->swarm + 100,
                2 * cfg->swarm, 2 * share, sp_read_long("/proc/sys/net/core/somaxconn"),
                sp_listen_backlog(cfg->port));
    long fit_proc = sw_fit_per_proc((long)rl.rlim_cur);
    if (share > fit_proc)
        lc_progress("warning: a client process holds up to %d clients but its descriptors fit "
                    "about %ld: the rest fail (EMFILE); give more --procs",
                    share, fit_proc);
    /* The broker: N + the publisher + the listen probe. */
    if (maxconn >= 0 && maxconn - 2 < cfg->swarm)
        lc_progress("warning: the broker's max_connections %ld fits about %ld clients besides "
                    "the publisher and the probe: the rest compete for slots and are refused "
                    "(ERR limit)",
                    maxconn, maxconn - 2);
    if (pid_max > 0 && pid_max < 2L * cfg->swarm + 1000)
        lc_progress("warning: kernel.pid_max %ld leaves no room for %d threads", pid_max,
                    2 * cfg->swarm);
}

/* CLOCK_REALTIME minus CLOCK_MONOTONIC, to place the log's wall-clock
 * times on the tool's clock (ms resolution is all the log has). */
static int64_t wall_minus_mono(void)
{
    struct timespec w;
    clock_gettime(CLOCK_REALTIME, &w);
    return (int64_t)w.tv_sec * 1000000000 + w.tv_nsec - rc_now_ns();
}

/* The times of one event in the client log as delays after base (wall
 * clock, ns), into v (room for max). Exactly `want` values come back: the
 * earliest, since a client that loses a new connection again logs a second
 * line, and RC_LATE for clients that never logged it. */
static size_t log_delays(off_t from, off_t to, const char *event, int64_t base, int64_t *v,
                         size_t max, size_t want)
{
    size_t n = lc_event_times(from, to, event, v, max);
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++)
        v[i] -= base;
    rc_sort(v, n);
    if (n > want)
        n = want;
    for (; n < want && n < max; n++)
        v[n] = RC_LATE;
    return n;
}

typedef struct {
    long rss_kb, hwm_kb, threads;
} proc_mem;

static proc_mem mem_of(pid_t pid)
{
    return (proc_mem){sp_status_field(pid, "VmRSS"), sp_status_field(pid, "VmHWM"),
                      sp_status_field(pid, "Threads")};
}

/* This process and its running children, summed (HWM: the sum of each
 * one's peak). */
static proc_mem tool_mem(const sw_fleet *f)
{
    proc_mem m = mem_of(0);
    for (int k = 0; k < sw_fleet_procs(f); k++) {
        pid_t pid = sw_fleet_pid(f, k);
        proc_mem c = pid > 0 ? mem_of(pid) : (proc_mem){-1, -1, -1};
        if (c.rss_kb > 0)
            m.rss_kb += c.rss_kb;
        if (c.hwm_kb > 0)
            m.hwm_kb += c.hwm_kb;
        if (c.threads > 0)
            m.threads += c.threads;
    }
    return m;
}

static void print_listen(const char *name, const sp_listen_counters *d, int max_queue)
{
    if (d->ok)
        printf(" %s_listen_overflows=%lld %s_listen_drops=%lld %s_reqq_full_drops=%lld "
               "%s_reqq_full_cookies=%lld",
               name, d->overflows, name, d->drops, name, d->reqq_full_drop, name,
               d->reqq_full_cookies);
    printf(" %s_accept_queue_max=%d", name, max_queue);
}

int rc_swarm(const rc_config *cfg, bp_broker *b)
{
    /* The children first, while this process has no thread. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int procs = cfg->procs > 0 ? cfg->procs : sw_procs_for(cfg->swarm, (long)rl.rlim_cur);
    if (procs > cfg->swarm)
        procs = cfg->swarm;
    sw_fleet *f = sw_fleet_start(cfg, procs);
    if (f == NULL)
        return 1;
    swarm_run r = {.cfg = cfg};
    bool *ok = calloc((size_t)cfg->swarm, sizeof *ok);
    int64_t *delays = calloc((size_t)cfg->swarm, sizeof *delays);
    /* A client that loses a new connection again logs a second line: room
     * for a few each. */
    size_t times_max = (size_t)cfg->swarm * 4;
    int64_t *lost_v = calloc(times_max, sizeof *lost_v);
    int64_t *resub_v = calloc(times_max, sizeof *resub_v);
    int rc = 1;
    bool sampling = false;
    pthread_t sampler, pub_thread;
    if (ok == NULL || delays == NULL || lost_v == NULL || resub_v == NULL)
        goto out_free;
    bp_listen L;
    if (bp_start(b, START_TIMEOUT_MS, &L, lc_progress_fd()) != 0)
        goto out_free;
    check_limits(cfg, b, procs);
    sampling = pthread_create(&sampler, NULL, sampler_main, &r) == 0;

    /* 1. Connect N, in every child at once. */
    sp_listen_counters c0, c1, c2;
    sp_listen_counters_read(&c0);
    lc_progress("%d clients in %d process%s (%d to %d each)", cfg->swarm, procs,
                procs == 1 ? "" : "es", cfg->swarm / procs, (cfg->swarm + procs - 1) / procs);
    int64_t t_go = rc_now_ns();
    sw_fleet_connect(f);
    sw_connect_result cr;
    sw_fleet_wait_subscribed(f, t_go + cfg->connect_bound_ms * 1000000 + CONNECT_MARGIN_NS, ok,
                             &cr);
    int nok = cr.subscribed;
    long long start_ms = cr.start_ns / 1000000, connect_ms = cr.connect_ns / 1000000;
    lc_progress("%d of %d clients subscribed in %lld ms (started in %lld ms); refused %d, timed "
                "out %d, closed %d",
                nok, cr.started, connect_ms, start_ms, cr.refused, cr.timedout, cr.closed);
    sp_listen_counters_read(&c1);
    proc_mem tool0 = tool_mem(f), broker0 = mem_of(bp_pid(b));
    double broker_cpu0 = sp_cpu_seconds(bp_pid(b));
    lc_progress("before the kill: tool rss %ld MB threads %ld (%d processes); broker rss %ld MB "
                "threads %ld, %.1f s CPU so far",
                tool0.rss_kb / 1024, tool0.threads, procs + 1, broker0.rss_kb / 1024,
                broker0.threads, broker_cpu0);
    if (nok == 0)
        goto out_clients;

    /* 2. kill -9, downtime, restart. The downtime runs from the old broker's
     * death: reaping N threads takes seconds on a small machine, and until
     * then some clients have not even seen their EOF. */
    atomic_store(&r.phase, 1);
    off_t mark_kill = lc_mark();
    int64_t t_kill = rc_now_ns();
    int64_t wall_offset = wall_minus_mono();
    bp_kill(b);
    int64_t t_gone = rc_now_ns();
    rc_sleep_until(t_gone + cfg->down_ms * 1000000);
    if (bp_start(b, START_TIMEOUT_MS, &L, lc_progress_fd()) != 0)
        goto out_clients;
    int64_t t_listen = L.listen_ns;
    off_t mark_listen = lc_mark();
    lc_progress("broker killed in %.1f ms, restarted %.1f ms later (listening by %s), pid %d",
                (double)(t_gone - t_kill) / 1e6, (double)(t_listen - t_gone) / 1e6,
                L.connect_ns != 0 ? "connect" : "log line", (int)bp_pid(b));

    /* 3. A fresh publisher; wait for deliveries, or for the bound, or for
     * every client still waiting to be in a dead child. */
    vg_client_opts o;
    rc_client_opts(cfg, &o, "swarm-pub", &r);
    o.on_closed = on_pub_closed;
    const char *why = "";
    if (vg_client_start(&r.pub, &o, &why) != VG_OK) {
        lc_progress("the publisher cannot start: %s", why);
        goto out_clients;
    }
    if (pthread_create(&pub_thread, NULL, publisher_main, &r) != 0)
        goto out_clients;
    int64_t pub_connect = vg_client_wait_connected(r.pub, (int)cfg->bound_ms) == VG_OK
                              ? rc_now_ns() - t_listen
                              : RC_LATE;
    int64_t deadline = t_listen + cfg->bound_ms * 1000000, next_note = rc_now_ns() + 1000000000;
    size_t delivered, waiting;
    for (;;) {
        sw_fleet_scan(f, ok, &delivered, &waiting);
        if (waiting == 0 || rc_now_ns() >= deadline)
            break;
        rc_sleep_until(rc_now_ns() + POLL_NS);
        if (rc_now_ns() >= next_note) {
            lc_progress("%zu of %d delivering", delivered, nok);
            next_note += 1000000000;
        }
    }
    int64_t t_end = rc_now_ns();
    atomic_store(&r.stop_pub, true);
    pthread_join(pub_thread, NULL);
    off_t mark_end = lc_mark();
    sp_listen_counters_read(&c2);
    proc_mem tool1 = tool_mem(f), broker1 = mem_of(bp_pid(b));
    double broker_cpu = sp_cpu_seconds(bp_pid(b));

    /* 4. Figures. */
    size_t nd = 0, within[6] = {0};
    static const int64_t cuts_ms[6] = {250, 500, 1000, 2000, 5000, 10000};
    for (int i = 0; i < cfg->swarm; i++) {
        if (!ok[i])
            continue;
        int64_t first = sw_fleet_first(f, i);
        delays[nd] = first != 0 ? first - t_listen : RC_LATE;
        for (int k = 0; k < 6; k++)
            within[k] += delays[nd] != RC_LATE && delays[nd] <= cuts_ms[k] * 1000000;
        nd++;
    }
    rc_quantiles q, ql, qr;
    rc_quantiles_of(delays, nd, &q);
    size_t nlost = log_delays(mark_kill, mark_end, "disconnected", t_kill + wall_offset, lost_v,
                              times_max, nd);
    size_t nresub = log_delays(mark_kill, mark_end, "reconnected", t_listen + wall_offset,
                               resub_v, times_max, nd);
    rc_quantiles_of(lost_v, nlost, &ql);
    rc_quantiles_of(resub_v, nresub, &qr);
    bp_problems bpp;
    bp_problems_get(b, &bpp);
    if (bpp.warn + bpp.error > 0) {
        lc_progress("the broker's warn/error lines after the restart:");
        bp_problems_print(b, lc_progress_fd(), 30);
    }
    /* By the lines' own stamps, not by where they are in the file: an I/O
     * thread refused before the listen may write its line long after. The
     * stamps are whole ms: a line in the ms of the listen counts after. */
    lc_counts down_log, after_log, late_before, late_after;
    int64_t cut = (t_listen + wall_offset) / 1000000 * 1000000;
    lc_count_split(mark_kill, mark_end, cut, &down_log, &after_log);
    lc_count_split(mark_listen, mark_end, cut, &late_before, &late_after);
    lc_print("client library log while the broker was down", &down_log);
    lc_print("client library log after the restart", &after_log);
    if (late_before.lines > 0)
        lc_progress("(%zu of the lines stamped before the listen were written after it: their "
                    "threads waited for the CPU)",
                    late_before.lines);
    unsigned closed, sub_errors;
    sw_fleet_callbacks(f, &closed, &sub_errors);
    closed += atomic_load(&r.pub_closed);
    int died = sw_fleet_died(f);

    sp_listen_counters dc = sp_listen_counters_diff(&c1, &c0);
    sp_listen_counters ds = sp_listen_counters_diff(&c2, &c1);
    printf("mode=swarm clients=%d subscribed=%d procs=%d start_ms=%lld connect_ms=%lld "
           "down_target_ms=%lld down_ms=%.1f kill_ms=%.1f broker_start_ms=%.1f listen_by=%s "
           "interval_ms=%lld backoff_base_ms=%lld backoff_max_ms=%lld bound_ms=%lld",
           cr.started, nok, procs, start_ms, connect_ms, (long long)cfg->down_ms,
           (double)(t_listen - t_gone) / 1e6, (double)(t_gone - t_kill) / 1e6,
           (double)(t_listen - L.spawn_ns) / 1e6, L.connect_ns != 0 ? "connect" : "log",
           (long long)cfg->interval_ms,
           (long long)o.backoff_base_ms, (long long)o.backoff_max_ms, (long long)cfg->bound_ms);
    if (pub_connect == RC_LATE)
        printf(" pub_connect_ms=inf");
    else
        printf(" pub_connect_ms=%.1f", (double)pub_connect / 1e6);
    rc_print_quantiles("sub", &q);
    rc_print_quantiles("resub", &qr);
    rc_print_quantiles("lost", &ql);
    for (int k = 0; k < 6; k++)
        printf(" within_%lldms=%zu", (long long)cuts_ms[k], within[k]);
    printf(" closed=%u sub_errors=%u procs_died=%d publish_full=%llu publish_failed=%llu "
           "broker_warn=%zu broker_error=%zu client_warn_lines=%zu client_error_lines=%zu",
           closed, sub_errors, died, (unsigned long long)atomic_load(&r.publish_full),
           (unsigned long long)atomic_load(&r.publish_failed), bpp.warn, bpp.error,
           after_log.warn, after_log.error);
    print_listen("connect", &dc, atomic_load(&r.max_queue[0]));
    print_listen("storm", &ds, atomic_load(&r.max_queue[1]));
    printf(" tool_rss_mb=%ld tool_hwm_mb=%ld tool_threads=%ld broker_rss_before_mb=%ld "
           "broker_rss_mb=%ld broker_hwm_mb=%ld broker_threads=%ld broker_cpu_s=%.1f secs=%.1f\n",
           tool1.rss_kb / 1024, tool1.hwm_kb / 1024, tool1.threads, broker0.rss_kb / 1024,
           broker1.rss_kb / 1024, broker1.hwm_kb / 1024, broker1.threads, broker_cpu,
           (double)(t_end - t_listen) / 1e9);
    rc = q.late == 0 && nok == cfg->swarm && closed == 0 && sub_errors == 0 && died == 0 &&
                 bpp.error == 0 && bpp.warn == 0 && after_log.error == 0
             ? 0
             : 1;

out_clients:
    vg_client_destroy(r.pub);
    if (sw_fleet_stop(f, STOP_TIMEOUT_MS) > 0)
        rc = 1;
    if (sampling) {
        atomic_store(&r.stop_sampler, true);
        pthread_join(sampler, NULL);
    }
    bp_kill(b);
out_free:
    sw_fleet_free(f);
    free(ok);
    free(delays);
    free(lost_v);
    free(resub_v);
    return rc;
}
