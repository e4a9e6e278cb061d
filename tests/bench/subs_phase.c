/* The moving parts of subs.c's cases: subscriber connections, the table's
 * setup, a timed publishing phase with its delivery count, and churn. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "subs_internal.h"
#include "sysprobe.h"

#define CHURN_WINDOW 256 /* live churn subscriptions */
/* A publisher waits for the broker's confirmation after 1,024 messages,
 * then after windows twice as long each time up to this many, both
 * systems alike: what is measured is what the broker accepts, not what
 * the client library can buffer (vigil's holds 8 MiB, ~280,000 messages of
 * 16 B, which a slow broker would take minutes to confirm after the
 * phase), and a phase overruns --secs by about one window at most. One
 * round trip per 65,536 messages costs a fast broker under 1 %. */
#define CONFIRM_WINDOW 65536

int64_t subs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

long subs_rss_kb(int pid) { return pid > 0 ? sp_status_field(pid, "VmRSS") : -1; }

double subs_cpu_seconds(int pid)
{
    char path[64];
    unsigned long ut = 0, st = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = pid > 0 ? fopen(path, "r") : NULL;
    if (f == NULL)
        return -1;
    /* fields 14 and 15; neither broker's command name has a space */
    int n = fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
    fclose(f);
    return n == 2 ? (double)(ut + st) / (double)sysconf(_SC_CLK_TCK) : -1;
}

/* ---- connections ---- */

void conns_close(const system_ref *s, conn_set *cs)
{
    for (int i = 0; i < cs->n; i++)
        if (cs->conns[i] != NULL)
            s->sb->close(cs->conns[i]);
    free(cs->conns);
    cs->conns = NULL;
    cs->n = 0;
}

int conns_open(const system_ref *s, conn_set *cs, int n)
{
    cs->conns = calloc((size_t)n, sizeof *cs->conns);
    cs->n = cs->conns != NULL ? n : 0;
    for (int i = 0; i < cs->n; i++)
        if ((cs->conns[i] = s->sb->connect(s->server)) == NULL)
            return -1;
    return cs->conns != NULL ? 0 : -1;
}

static uint64_t conns_received(const system_ref *s, const conn_set *cs)
{
    uint64_t n = 0;
    for (int i = 0; i < cs->n; i++)
        n += s->sb->received(cs->conns[i]);
    return n;
}

typedef struct {
    const system_ref *sys;
    sb_conn *conn;
    const table *t;
    int index;
    int rc;
} setup_job;

static void *setup_main(void *arg)
{
    setup_job *j = arg;
    for (int i = j->index; i < j->t->nsubs && j->rc == 0; i += j->t->conns)
        if (j->sys->sb->sub(j->conn, j->t->subjects[i], NULL) == 0)
            j->rc = -1;
    if (j->rc == 0)
        j->rc = j->sys->sb->sync(j->conn, SYNC_MS);
    return NULL;
}

int table_subscribe(const system_ref *s, conn_set *cs, const table *t, double *ms,
                    uint64_t *refused, const char **reason)
{
    setup_job jobs[cs->n];
    pthread_t tids[cs->n];
    int64_t t0 = subs_now_ns();
    for (int i = 0; i < cs->n; i++) {
        jobs[i] = (setup_job){s, cs->conns[i], t, i, 0};
        pthread_create(&tids[i], NULL, setup_main, &jobs[i]);
    }
    int rc = 0;
    *refused = 0;
    *reason = NULL;
    for (int i = 0; i < cs->n; i++) {
        pthread_join(tids[i], NULL);
        rc |= jobs[i].rc;
        const char *why;
        *refused += s->sb->refused(cs->conns[i], &why);
        if (*reason == NULL)
            *reason = why;
    }
    *ms = (double)(subs_now_ns() - t0) / 1e6;
    return rc;
}

/* ---- a publishing phase ---- */

typedef struct {
    const system_ref *sys;
    const conn_set *cs;
    uint64_t base;
    _Atomic int64_t last_change_ns;
    _Atomic uint64_t got;
    atomic_bool stop;
} sampler;

static void *sampler_main(void *arg)
{
    sampler *sp = arg;
    while (!atomic_load(&sp->stop)) {
        uint64_t g = conns_received(sp->sys, sp->cs) - sp->base;
        if (g != atomic_load(&sp->got)) {
            atomic_store(&sp->got, g);
            atomic_store(&sp->last_change_ns, subs_now_ns());
        }
        struct timespec tick = {0, 1000000}; /* a sampling period, not a wait for a condition */
        nanosleep(&tick, NULL);
    }
    return NULL;
}

phase_result publish_phase(const system_ref *s, const conn_set *cs, char (*topics)[SUBJECT_MAX],
                           int ntopics, uint64_t count, double secs, size_t size, const table *t,
                           int timeout_ms)
{
    phase_result r = {0};
    bench_conn *p = s->be->connect(s->server, NULL, NULL);
    uint8_t *msg = calloc(1, size);
    if (p == NULL || msg == NULL) {
        r.failed = 1;
        free(msg);
        return r;
    }
    memset(msg, 'x', size);
    sampler sp = {.sys = s, .cs = cs, .base = conns_received(s, cs)};
    pthread_t tid;
    double cpu0 = subs_cpu_seconds(s->pid);
    int64_t t0 = subs_now_ns(), until = t0 + (int64_t)(secs * 1e9);
    atomic_store(&sp.last_change_ns, t0);
    pthread_create(&tid, NULL, sampler_main, &sp);
    uint64_t window = 1024, next_confirm = window;
    for (uint64_t i = 0; !r.failed; i++) {
        if (count > 0 ? i == count : i % 256 == 0 && subs_now_ns() >= until)
            break;
        r.failed = s->be->publish(p, topics[i % (uint64_t)ntopics], msg, size) != 0;
        r.sent = i + !r.failed;
        if (!r.failed && r.sent == next_confirm) { /* the broker keeps up, or we wait */
            r.failed = s->be->flush(p, 120000) != 0;
            window = window * 2 < CONFIRM_WINDOW ? window * 2 : CONFIRM_WINDOW;
            next_confirm += window;
        }
    }
    if (!r.failed)
        r.failed = s->be->flush(p, 120000) != 0;
    r.pub_s = (double)(subs_now_ns() - t0) / 1e9;
    r.want = t != NULL ? subs_expected(t, s->nats, r.sent) : r.sent;
    for (;;) { /* every delivery, or silence */
        if (atomic_load(&sp.got) >= r.want)
            break;
        if (subs_now_ns() - atomic_load(&sp.last_change_ns) > (int64_t)timeout_ms * 1000000)
            break;
        struct timespec tick = {0, 2000000};
        nanosleep(&tick, NULL);
    }
    atomic_store(&sp.stop, true);
    pthread_join(tid, NULL);
    r.got = conns_received(s, cs) - sp.base;
    r.recv_s = (double)(atomic_load(&sp.last_change_ns) - t0) / 1e9;
    if (s->pid > 0 && r.sent > 0)
        r.cpu_us_per_msg = (subs_cpu_seconds(s->pid) - cpu0) * 1e6 / (double)r.sent;
    free(msg);
    s->be->close(p);
    return r;
}

/* ---- churn ---- */

void *churn_main(void *arg)
{
    churner *ch = arg;
    uint64_t live[CHURN_WINDOW], rng = 99;
    size_t head = 0, nlive = 0;
    int i = 0;
    int64_t t0 = subs_now_ns();
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!atomic_load(&ch->stop) && ch->rc == 0) {
        uint64_t due = (uint64_t)((double)(subs_now_ns() - t0) * ch->rate / 1e9);
        while (ch->ops < due && ch->rc == 0) {
            if (nlive == CHURN_WINDOW) { /* full: by turns from now on */
                ch->rc = ch->sys->sb->unsub(ch->conn, live[head]);
                head = (head + 1) % CHURN_WINDOW;
                nlive--;
            } else {
                char subj[SUBJECT_MAX];
                subs_subject(subj, i++, ch->width, ch->literal_only, true, &rng, NULL);
                uint64_t id = ch->sys->sb->sub(ch->conn, subj, NULL);
                ch->rc = id == 0 ? -1 : 0;
                live[(head + nlive++) % CHURN_WINDOW] = id;
            }
            ch->ops++;
        }
        next.tv_nsec += 1000000; /* the pace: a tick every millisecond */
        if (next.tv_nsec >= 1000000000)
            next.tv_sec++, next.tv_nsec -= 1000000000;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    int64_t t1 = subs_now_ns();
    ch->secs = (double)(t1 - t0) / 1e9;
    if (ch->rc == 0)
        ch->rc = ch->sys->sb->sync(ch->conn, SYNC_MS);
    ch->sync_ms = (double)(subs_now_ns() - t1) / 1e6;
    return NULL;
}
