/* vigil-logbench: the cost of the topic log alone (broker/topiclog.c), no
 * sockets: how fast publishers can append, and how fast a reader that is
 * a backlog behind replays it (reads and consumes, touching every byte as a
 * socket copy would) while appends go on. Numbers for issue 10's design,
 * in docs/performance.md ("The topic log, alone").
 *
 *   vigil-logbench [--size B] [--count N] [--batch K] [--writers W] [--live R]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "clock.h"
#include "topiclog.h"

typedef struct {
    vg_tlog *t;
    size_t size, batch;
    uint64_t count;
    uint64_t rate; /* messages per second per writer; 0: as fast as it can */
    atomic_bool *stop;
} job;

static void *writer(void *p)
{
    job *j = p;
    uint8_t *payload = calloc(1, j->size ? j->size : 1);
    vg_tlog_msg *m = calloc(j->batch, sizeof *m);
    if (payload == NULL || m == NULL) {
        fprintf(stderr, "level=error event=out_of_memory\n");
        exit(1);
    }
    for (size_t i = 0; i < j->batch; i++)
        m[i] = (vg_tlog_msg){VG_FRAME_MSG_TYPE1, payload, j->size};
    int64_t start = vg_now_ns();
    for (uint64_t done = 0; done < j->count && !atomic_load(j->stop);) {
        if (j->rate > 0 && done * 1000000000.0 / j->rate > (double)(vg_now_ns() - start)) {
            nanosleep(&(struct timespec){0, 1000000}, NULL); /* paced live traffic */
            continue;
        }
        uint64_t seq;
        size_t n;
        if (vg_tlog_append(j->t, m, j->batch, vg_now_ms(), &seq, &n) != VG_OK) {
            fprintf(stderr, "level=error event=append_failed\n");
            exit(1);
        }
        done += n;
    }
    free(m);
    free(payload);
    return NULL;
}

/* Reads from the first record to next_seq at the start of the call plus
 * whatever the writers add, until it has `want` records; returns them. */
static uint64_t replay(vg_tlog *t, uint64_t want, uint64_t *bytes, uint64_t *gaps)
{
    vg_tcursor c;
    vg_tgap gap;
    if (vg_tlog_seek(t, &c, VG_TSTART_FIRST, 0, 0, &gap) != VG_OK)
        return 0;
    uint64_t got = 0, sum = 0;
    while (got < want) {
        struct iovec iov[16];
        vg_tread r;
        vg_tlog_read(&c, iov, 16, 1 << 20, &r);
        if (r.gap.from != 0)
            *gaps += r.gap.to - r.gap.from + 1;
        for (size_t i = 0; i < r.iovcnt; i++) {
            const uint64_t *q = iov[i].iov_base; /* touch every byte, as send() would */
            for (size_t k = 0; k < iov[i].iov_len / 8; k++)
                sum += q[k];
        }
        *bytes += r.bytes;
        got += vg_tcursor_consume(&c, r.bytes);
    }
    vg_tcursor_release(&c);
    return got + (sum == 42); /* keep the sum alive */
}

int main(int argc, char **argv)
{
    uint64_t size = 128, count = 1000000, batch = 64, writers = 1, live = 100000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: vigil-logbench [--size B] [--count N] [--batch K] [--writers W] [--live R]\n"
                   "  appends N (1000000) messages of B (128) bytes in batches of K (64) from\n"
                   "  W (1) threads to one topic log as fast as they can, then replays them\n"
                   "  from the first while the W threads go on appending R (100000) msgs/s each.\n");
            return 0;
        }
        uint64_t *dst = strcmp(argv[i], "--size") == 0    ? &size
                        : strcmp(argv[i], "--count") == 0 ? &count
                        : strcmp(argv[i], "--batch") == 0 ? &batch
                        : strcmp(argv[i], "--writers") == 0 ? &writers
                        : strcmp(argv[i], "--live") == 0    ? &live
                                                            : NULL;
        int64_t v;
        if (dst == NULL || i + 1 == argc || !vg_parse_int(argv[i + 1], 1, INT64_MAX, &v) ||
            (dst == &writers && v > 16)) {
            fprintf(stderr, "vigil-logbench: bad argument %s (see --help)\n", argv[i]);
            return 2;
        }
        *dst = (uint64_t)v;
        i++;
    }
    vg_logs_cfg cfg;
    vg_logs_cfg_defaults(&cfg);
    cfg.max_bytes = 0; /* keep everything: the replay must find it all */
    vg_logs *s = vg_logs_create(&cfg, 1);
    vg_tlog *t = s ? vg_logs_get(s, "bench", 5) : NULL;
    if (t == NULL) {
        fprintf(stderr, "level=error event=out_of_memory\n");
        return 1;
    }
    atomic_bool stop = false;
    job j = {t, size, batch, count / writers, 0, &stop};
    pthread_t tw[16];

    int64_t t0 = vg_now_ns();
    for (uint64_t i = 0; i < writers; i++)
        pthread_create(&tw[i], NULL, writer, &j);
    for (uint64_t i = 0; i < writers; i++)
        pthread_join(tw[i], NULL);
    int64_t t1 = vg_now_ns();
    uint64_t appended = vg_tlog_next_seq(t) - 1;

    /* replay the backlog while the writers go on at the live rate */
    j.rate = live;
    j.count = UINT64_MAX;
    for (uint64_t i = 0; i < writers; i++)
        pthread_create(&tw[i], NULL, writer, &j);
    uint64_t bytes = 0, gaps = 0;
    int64_t t2 = vg_now_ns();
    uint64_t replayed = replay(t, appended, &bytes, &gaps);
    int64_t t3 = vg_now_ns();
    atomic_store(&stop, true);
    for (uint64_t i = 0; i < writers; i++)
        pthread_join(tw[i], NULL);
    vg_logs_stats st;
    vg_logs_get_stats(s, &st);
    printf("size=%llu batch=%llu writers=%llu append_rate=%.0f replay_rate=%.0f replay_mb_s=%.1f "
           "gaps=%llu log_bytes=%llu\n",
           (unsigned long long)size, (unsigned long long)batch, (unsigned long long)writers,
           appended / ((t1 - t0) / 1e9), replayed / ((t3 - t2) / 1e9),
           bytes / ((t3 - t2) / 1e9) / 1e6, (unsigned long long)gaps,
           (unsigned long long)st.bytes);
    vg_logs_destroy(s);
    return 0;
}
