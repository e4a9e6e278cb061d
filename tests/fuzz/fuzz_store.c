/* libFuzzer target: recovery of a data directory (broker/store.c) from
 * whatever its files hold: blocks good, damaged, cut, or none at all.
 *
 * Once per process a temporary directory is made, on /dev/shm when there
 * is one (tmpfs: the store's fsyncs cost nothing), else in TMPDIR or /tmp.
 * Per input it is emptied and filled from the input:
 *   byte 0   bit 0: a `state` file is split off the front, its length the
 *            next two bytes (big-endian, cut to what is left);
 *            bit 1: the rest is two segments, 1 and 2, the first's length
 *            the next two bytes; else it is all segment 1;
 *            bit 2 (with two segments): retention runs once, folding
 *            segment 1 into a new state file, and the directory is opened
 *            again, which must then know the same next sequence number of
 *            every topic and the same number of durables
 *   the rest the files' bytes
 * then opened with vg_store_open (fsync=never), every record of every
 * topic the files name read with a cursor and checked (a MSG with its seq,
 * numbered upwards, on its topic), and closed. Nothing may crash, leak or
 * trip a sanitizer. VIGIL_FUZZ_LOG=info (or warn, debug) shows the store's
 * log lines, which are otherwise off but for errors. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block.h"
#include "clock.h"
#include "dedupe.h"
#include "durable.h"
#include "frame.h"
#include "log.h"
#include "store.h"
#include "topiclog.h"

#define MAX_TOPICS 32
#define RETAIN_DEADLINE_MS 3000

static char dir[256];

static void die(const char *what)
{
    fprintf(stderr, "fuzz_store: %s\n", what);
    abort();
}

static void die_errno(const char *what)
{
    fprintf(stderr, "fuzz_store: %s: %s\n", what, strerror(errno));
    abort();
}

/* Removes every file of the directory (it has no subdirectories). */
static void clear_dir(void)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        die_errno("opendir");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0)
            die_errno("unlink");
    }
    closedir(d);
}

static void remove_dir(void)
{
    if (dir[0] == 0)
        return;
    clear_dir();
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vg_log_level level = VG_LOG_ERROR;
    const char *l = getenv("VIGIL_FUZZ_LOG");
    if (l != NULL && !vg_log_parse_level(l, &level))
        die("VIGIL_FUZZ_LOG: error, warn, info or debug");
    vg_log_set_level(level);
    struct stat st;
    const char *base = getenv("TMPDIR");
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        base = "/dev/shm";
    else if (base == NULL || base[0] == 0)
        base = "/tmp";
    snprintf(dir, sizeof dir, "%s/vigil-fuzz-store-XXXXXX", base);
    if (mkdtemp(dir) == NULL)
        die_errno("mkdtemp");
    atexit(remove_dir);
    return 0;
}

static void put_file(const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die_errno("creating a file");
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            die_errno("writing a file");
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

typedef struct {
    char name[MAX_TOPICS][64];
    uint16_t len[MAX_TOPICS];
    size_t n;
} topics;

/* The topics the blocks of p name (MSGS and NEXT, good or with a bad
 * body), walking them as recovery does; returns how many blocks it found. */
static size_t collect(topics *t, const uint8_t *p, size_t n)
{
    size_t blocks = 0;
    for (size_t off = 0; off < n;) {
        vg_block b;
        vg_block_check c = vg_block_parse(p + off, n - off, &b);
        if (c != VG_BLOCK_OK && c != VG_BLOCK_BAD_BODY) {
            off = vg_block_resync(p, n, off);
            continue;
        }
        blocks++;
        if ((b.kind == VG_BLOCK_MSGS || b.kind == VG_BLOCK_NEXT) && b.topic_len < 64 &&
            t->n < MAX_TOPICS) {
            const char *topic = (const char *)p + off + VG_BLOCK_HEADER;
            bool seen = false;
            for (size_t i = 0; i < t->n && !seen; i++)
                seen = t->len[i] == b.topic_len && memcmp(t->name[i], topic, b.topic_len) == 0;
            if (!seen) {
                memcpy(t->name[t->n], topic, b.topic_len);
                t->len[t->n++] = b.topic_len;
            }
        }
        off += VG_BLOCK_HEADER + b.body_len;
    }
    return blocks;
}

/* Reads every record of topic from the oldest, checking each. */
static void read_topic(vg_logs *logs, const char *topic, uint16_t tl)
{
    vg_tlog *t = vg_logs_get(logs, topic, tl);
    if (t == NULL)
        die("vg_logs_get");
    vg_tcursor c;
    vg_tgap gap;
    if (vg_tlog_seek(t, &c, VG_TSTART_FIRST, 0, 0, &gap) != VG_OK)
        die("seek to the first record");
    uint64_t last = 0, ready = vg_tlog_ready_seq(t);
    for (;;) {
        struct iovec iov[16];
        vg_tread r;
        vg_tlog_read(&c, iov, 16, 1 << 20, &r);
        if (r.gap.from != 0 && (r.gap.from > r.gap.to || r.gap.from <= last))
            die("a gap out of order");
        if (r.gap.from != 0)
            last = r.gap.to;
        if (r.iovcnt == 0) {
            if (r.gap.from != 0)
                continue;
            break;
        }
        if (r.partial != 0)
            die("a partial record with nothing sent");
        for (size_t i = 0; i < r.iovcnt; i++) {
            const uint8_t *p = iov[i].iov_base;
            size_t n = iov[i].iov_len;
            for (size_t off = 0; off < n;) {
                if (n - off < VG_FRAME_HEADER || vg_be32(p + off) > n - off - VG_FRAME_HEADER)
                    die("a record split across iovecs or cut");
                uint32_t len = vg_be32(p + off);
                vg_frame f;
                const char *why;
                if (vg_frame_parse(p + off + VG_FRAME_HEADER, len, &f, &why) != VG_OK ||
                    !vg_frame_is_msg(f.type))
                    die("a record is not a MSG");
                if (f.topic_len != tl || memcmp(f.topic, topic, tl) != 0)
                    die("a record of another topic");
                if (f.seq <= last || f.seq >= ready)
                    die("a record numbered out of order");
                last = f.seq;
                off += VG_FRAME_HEADER + len;
            }
        }
        if (vg_tcursor_consume(&c, r.bytes) != r.records)
            die("consume");
    }
    vg_tcursor_release(&c);
}

typedef struct {
    vg_dedupe *dedupe;
    vg_durables *durables;
    vg_logs *logs;
    vg_store *s;
} opened;

static bool open_dir(opened *o, uint64_t retention_bytes)
{
    vg_store_cfg cfg = {.dir = dir, .fsync = VG_FSYNC_NEVER, .segment_bytes = VG_STORE_SEGMENT_MIN,
                        .retention_bytes = retention_bytes};
    vg_logs_cfg lcfg;
    vg_logs_cfg_defaults(&lcfg);
    lcfg.max_bytes = 64u << 20;
    o->dedupe = vg_dedupe_create(64, 120000);
    o->durables = vg_durables_create();
    if (o->dedupe == NULL || o->durables == NULL)
        die("out of memory");
    vg_status st = vg_store_open(&cfg, &lcfg, o->dedupe, o->durables, &o->logs, &o->s);
    if (st == VG_OK)
        return true;
    if (st != VG_ERR_IO && st != VG_ERR_NOMEM)
        die("vg_store_open: an unexpected status");
    vg_dedupe_destroy(o->dedupe);
    vg_durables_destroy(o->durables);
    return false;
}

static void close_dir(opened *o)
{
    vg_store_close(o->s);
    vg_logs_destroy(o->logs);
    vg_dedupe_destroy(o->dedupe);
    vg_durables_destroy(o->durables);
}

static void ignore(void *ud, void *w)
{
    (void)ud;
    (void)w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    clear_dir();
    const uint8_t *state = NULL, *seg1 = data, *seg2 = NULL;
    size_t state_len = 0, seg1_len = size, seg2_len = 0;
    if (mode & 1) {
        if (seg1_len < 2)
            return 0;
        state_len = (size_t)seg1[0] << 8 | seg1[1];
        seg1 += 2;
        seg1_len -= 2;
        if (state_len > seg1_len)
            state_len = seg1_len;
        state = seg1;
        seg1 += state_len;
        seg1_len -= state_len;
        put_file("state", state, state_len);
    }
    if (mode & 2) {
        if (seg1_len < 2)
            return 0;
        size_t first = (size_t)seg1[0] << 8 | seg1[1];
        seg1 += 2;
        seg1_len -= 2;
        if (first > seg1_len)
            first = seg1_len;
        seg2 = seg1 + first;
        seg2_len = seg1_len - first;
        seg1_len = first;
        put_file("00000000000000000002.seg", seg2, seg2_len);
    }
    put_file("00000000000000000001.seg", seg1, seg1_len);

    topics t = {.n = 0};
    collect(&t, state, state_len);
    collect(&t, seg1, seg1_len);
    size_t seg2_blocks = collect(&t, seg2, seg2_len);

    opened o;
    if (!open_dir(&o, 0))
        return 0; /* refused with a reason: fine, as long as nothing broke */
    uint64_t next[MAX_TOPICS];
    for (size_t i = 0; i < t.n; i++) {
        read_topic(o.logs, t.name[i], t.len[i]);
        next[i] = vg_tlog_next_seq(vg_logs_get(o.logs, t.name[i], t.len[i]));
    }
    size_t durables = vg_durables_count(o.durables);
    close_dir(&o);
    /* Retention keeps segment 1 unless segment 2 has a byte to keep. */
    if (!(mode & 4) || seg2_blocks == 0)
        return 0;

    /* segment 1 folded into the state by the commit thread's retention */
    if (!open_dir(&o, 1))
        die("a directory opened once is refused the second time");
    vg_store_hooks hooks = {.wake = ignore};
    if (vg_store_start(o.s, &hooks) != VG_OK)
        die("vg_store_start");
    int64_t until = vg_now_ms() + RETAIN_DEADLINE_MS;
    vg_store_stats st;
    for (;;) {
        vg_store_get_stats(o.s, &st);
        if (st.segments == 1 || vg_now_ms() >= until)
            break;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    if (st.segments != 1)
        die("retention did not drop segment 1");
    close_dir(&o);
    if (!open_dir(&o, 0))
        die("the directory is refused after retention");
    for (size_t i = 0; i < t.n; i++) {
        read_topic(o.logs, t.name[i], t.len[i]);
        if (vg_tlog_next_seq(vg_logs_get(o.logs, t.name[i], t.len[i])) != next[i])
            die("a topic's next sequence number changed when its segment went into the state");
    }
    if (vg_durables_count(o.durables) != durables)
        die("the durables changed when their segment went into the state");
    close_dir(&o);
    return 0;
}
