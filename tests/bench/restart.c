/* The restart case (durable.h): a broker with a large retained log,
 * kill -9'd and started again. It runs the broker itself (broker_proc.h),
 * as vigil-reconnect does, so it knows when the exec happened and when the
 * event=listening line came.
 *
 * The fill goes to one topic, confirmed. After the restart one subscriber
 * asks for the last message filled (VG_SUB_SEQ, the broker's current
 * epoch): it arriving, with its number, says the log came back; the time
 * it takes is the first read of a cold log. */
#include <errno.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "broker_proc.h"
#include "client.h"
#include "durable.h"
#include "sysprobe.h"

#define RESTART_TOPIC "restart.fill"
#define MAX_ARGS 30

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

/* Bytes in the regular files under a directory (nftw has no closure). */
static uint64_t tree_bytes;

static int add_file(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)path, (void)f;
    if (type == FTW_F)
        tree_bytes += (uint64_t)st->st_size;
    return 0;
}

static uint64_t dir_bytes(const char *dir)
{
    tree_bytes = 0;
    nftw(dir, add_file, 16, FTW_PHYS);
    return tree_bytes;
}

static vg_client *connect_to(const char *server, const vg_client_opts *base)
{
    vg_client_opts o = *base;
    o.servers = server;
    vg_client *c;
    const char *why = NULL;
    vg_status st = vg_client_start(&c, &o, &why);
    if (st == VG_OK && (st = vg_client_wait_connected(c, 5000)) != VG_OK)
        vg_client_destroy(c);
    if (st != VG_OK) {
        fprintf(stderr, "vigil-bench: cannot connect to %s: %s %s\n", server, vg_strerror(st),
                why != NULL ? why : "");
        return NULL;
    }
    return c;
}

/* Publishes n messages of size to RESTART_TOPIC and waits for them to be
 * confirmed; returns the seconds it took, or -1. */
static double fill(const char *server, uint64_t n, size_t size, int timeout_ms)
{
    vg_client_opts o;
    vg_client_opts_defaults(&o);
    o.name = "bench-restart-fill";
    vg_client *c = connect_to(server, &o);
    uint8_t *msg = malloc(size);
    if (c == NULL || msg == NULL) {
        if (c != NULL)
            vg_client_destroy(c);
        free(msg);
        return -1;
    }
    memset(msg, 'x', size);
    int64_t t0 = now_ns();
    vg_status st = VG_OK;
    for (uint64_t i = 1; i <= n && st == VG_OK; i++) {
        uint64_t one = 1;
        memcpy(msg, &one, 8);
        memcpy(msg + 8, &i, 8);
        st = vg_client_publish(c, VG_FRAME_MSG_TYPE1, RESTART_TOPIC, strlen(RESTART_TOPIC), msg,
                               size, -1);
    }
    if (st == VG_OK)
        st = vg_client_flush(c, timeout_ms * 12);
    vg_client_stats s;
    vg_client_get_stats(c, &s);
    double secs = (double)(now_ns() - t0) / 1e9;
    vg_client_destroy(c);
    free(msg);
    if (st != VG_OK || s.confirmed != n) {
        fprintf(stderr, "vigil-bench: fill: %s; confirmed %llu of %llu\n", vg_strerror(st),
                (unsigned long long)s.confirmed, (unsigned long long)n);
        return -1;
    }
    return secs;
}

typedef struct {
    uint64_t want;
    _Atomic uint64_t seq;   /* the seq of the first message received, 0 before */
    _Atomic uint64_t index; /* its number from the payload */
    _Atomic int64_t at_ns;
    atomic_bool gap, refused;
} tail_state;

static void on_tail(void *ud, const vg_msg *m)
{
    tail_state *t = ud;
    if (atomic_load(&t->seq) != 0)
        return;
    uint64_t index = 0;
    if (m->payload_len >= 16)
        memcpy(&index, m->payload + 8, 8);
    atomic_store(&t->index, index);
    atomic_store(&t->at_ns, now_ns());
    atomic_store(&t->seq, m->seq);
}

static void on_tail_gap(void *ud, const char *topic, size_t len, const vg_gap *g)
{
    tail_state *t = ud;
    (void)topic, (void)len, (void)g;
    atomic_store(&t->gap, true);
}

static void on_tail_refused(void *ud, uint64_t sid, const char *topic, uint64_t code, const char *reason)
{
    (void)sid;
    tail_state *t = ud;
    (void)topic, (void)code;
    fprintf(stderr, "vigil-bench: the broker refused the subscription to the last message "
                    "filled: %s\n", reason);
    atomic_store(&t->refused, true);
}

/* Asks for message want of RESTART_TOPIC; returns the ms until it came,
 * or -1 (with *why) when something else or nothing came. */
static double read_tail(const char *server, uint64_t want, int timeout_ms, const char **why)
{
    static tail_state t;
    t = (tail_state){.want = want};
    vg_client_opts o;
    vg_client_opts_defaults(&o);
    o.name = "bench-restart-tail";
    o.ud = &t;
    o.on_msg = on_tail;
    o.on_gap = on_tail_gap;
    o.on_sub_error = on_tail_refused;
    vg_client *c = connect_to(server, &o);
    if (c == NULL) {
        *why = "connect";
        return -1;
    }
    int64_t t0 = now_ns();
    if (vg_client_subscribe_from(c, RESTART_TOPIC, VG_SUB_SEQ, 0, want, NULL) != VG_OK) {
        vg_client_destroy(c);
        *why = "subscribe";
        return -1;
    }
    while (atomic_load(&t.seq) == 0 && !atomic_load(&t.gap) && !atomic_load(&t.refused) &&
           now_ns() - t0 < (int64_t)timeout_ms * 1000000)
        sleep_ms(1); /* a sampling period */
    vg_client_destroy(c);
    uint64_t seq = atomic_load(&t.seq), index = atomic_load(&t.index);
    if (seq == want && index == want)
        return (double)(atomic_load(&t.at_ns) - t0) / 1e6;
    *why = seq != 0                  ? "other_message"
           : atomic_load(&t.refused) ? "refused"
           : atomic_load(&t.gap)     ? "gap"
                                     : "nothing";
    return -1;
}

int bench_restart(const restart_cfg *cfg)
{
    if (cfg->size < 16 || cfg->fill_bytes < cfg->size) {
        fprintf(stderr, "vigil-bench: --restart needs --size >= 16 and --fill-bytes >= --size\n");
        return 2;
    }
    struct stat st;
    if (stat(cfg->data_dir, &st) == 0 && dir_bytes(cfg->data_dir) > 0) {
        fprintf(stderr, "vigil-bench: --data-dir %s is not empty: give a fresh one\n",
                cfg->data_dir);
        return 2;
    }
    const char *args[MAX_ARGS + 3];
    int na = 0;
    args[na++] = "--data-dir";
    args[na++] = cfg->data_dir;
    for (int i = 0; cfg->broker_args != NULL && cfg->broker_args[i] != NULL; i++) {
        if (na == MAX_ARGS) {
            fprintf(stderr, "vigil-bench: more than %d broker arguments\n", MAX_ARGS - 2);
            return 2;
        }
        args[na++] = cfg->broker_args[i];
    }
    args[na] = NULL;
    int port = bp_pick_port();
    if (port < 0) {
        fprintf(stderr, "vigil-bench: no free port\n");
        return 1;
    }
    bp_broker *b = bp_create(cfg->broker, port, args, cfg->broker_log);
    if (b == NULL)
        return 1;
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    uint64_t n = cfg->fill_bytes / cfg->size;
    int rc = 1;
    bp_listen l0, l1;
    printf("system=vigil mode=restart size=%zu fill_msgs=%llu fill_bytes=%llu data_dir=%s",
           cfg->size, (unsigned long long)n, (unsigned long long)(n * cfg->size), cfg->data_dir);
    if (bp_start(b, 10000, &l0, 2) != 0) {
        fprintf(stderr, "vigil-bench: the broker did not start (does it know --data-dir?)\n");
        printf(" error=first_start_failed\n");
        goto out;
    }
    double fill_s = fill(server, n, cfg->size, cfg->timeout_ms);
    if (fill_s < 0) {
        printf(" error=fill_failed\n");
        goto out;
    }
    long rss_full = sp_status_field(bp_pid(b), "VmRSS");
    uint64_t on_disk = dir_bytes(cfg->data_dir);
    printf(" fill_rate=%.0f fill_mb_s=%.1f data_dir_bytes=%llu rss_before_kill_kb=%ld",
           (double)n / fill_s, (double)(n * cfg->size) / fill_s / 1e6,
           (unsigned long long)on_disk, rss_full);
    bp_kill(b); /* SIGKILL, reaped */
    if (bp_start(b, 600000, &l1, 2) != 0) {
        printf(" error=restart_failed\n");
        goto out;
    }
    long rss_listening = sp_status_field(bp_pid(b), "VmRSS");
    double listen_ms = (double)(l1.log_ns - l1.spawn_ns) / 1e6;
    double connect_ms = l1.connect_ns > 0 ? (double)(l1.connect_ns - l1.spawn_ns) / 1e6 : -1;
    sleep_ms(1000); /* anything the broker loads after it listens */
    long rss_1s = sp_status_field(bp_pid(b), "VmRSS");
    const char *why = NULL;
    double tail_ms = read_tail(server, n, cfg->timeout_ms, &why);
    long rss_tail = sp_status_field(bp_pid(b), "VmRSS");
    printf(" empty_start_ms=%.1f restart_ms=%.1f restart_connect_ms=%.1f rss_listening_kb=%ld "
           "rss_1s_kb=%ld rss_after_tail_read_kb=%ld tail_read_ms=%.1f retained=%s",
           (double)(l0.log_ns - l0.spawn_ns) / 1e6, listen_ms, connect_ms, rss_listening, rss_1s,
           rss_tail, tail_ms, tail_ms >= 0 ? "yes" : why);
    if (on_disk < n * cfg->size / 2) {
        fprintf(stderr, "vigil-bench: %s holds %llu bytes after %llu were confirmed: the broker "
                        "does not keep its log there\n",
                cfg->data_dir, (unsigned long long)on_disk, (unsigned long long)(n * cfg->size));
        printf(" error=data_dir_not_written\n");
    } else if (tail_ms < 0) {
        fprintf(stderr, "vigil-bench: message %llu is not there after the restart (%s)\n",
                (unsigned long long)n, why);
        printf(" error=log_not_retained\n");
    } else {
        printf("\n");
        rc = 0;
    }
out:
    bp_destroy(b);
    return rc;
}
