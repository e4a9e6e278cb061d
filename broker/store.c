#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "clock.h"
#include "crc32c.h"
#include "frame.h"
#include "log.h"

#define META "vigil.meta"
#define META_FORMAT "vigil-data 1\n"
#define STATE "state"
#define STATE_TMP "state.tmp"
#define CLEAN "clean"
#define UNSYNCED "unsynced" /* kept while a run without fsync=always has the directory */
#define DEDUPE_WINDOW_MS (2 * 60 * 1000) /* as dedupe.c's default: older publishers go */

typedef struct {
    uint64_t index;
    uint64_t bytes;
    int64_t newest_wall; /* ms, of its newest block */
} seg;

typedef struct {
    vg_tlog *t;
    uint64_t upto;
} pend;

typedef struct {
    void *w;
    uint64_t lsn;
} wait_entry;

/* Locks: the caller's append lock, then wmu, then a topic log's, then mu.
 * The commit thread takes mu alone, and topic logs' locks without it. */
struct vg_store {
    vg_store_cfg cfg;
    char dir[4096];
    int dirfd, metafd;
    uint64_t epoch;
    vg_logs *logs;
    vg_dedupe *dedupe;
    vg_durables *durables;
    vg_ckpt *ckpt; /* what removed segments said: commit thread only, after open */
    vg_store_hooks hooks;

    pthread_mutex_t wmu;  /* the writing end */
    int cur_fd;           /* wmu to change, mu too */
    uint64_t cur_bytes;   /* wmu */
    uint64_t written;     /* wmu: bytes ever written, the log position */
    uint64_t last_len;    /* wmu: bytes of the last block written, for unwrite */
    bool failing;         /* wmu: writes fail; logged once */
    bool tail_dirty;      /* wmu: a failed write left bytes to cut */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    seg *segs;            /* mu: oldest first; the last is cur_fd's */
    size_t nsegs, segs_cap;
    uint64_t total_bytes; /* mu */
    uint64_t written_lsn; /* mu: written, as far as blocks were ended */
    int *rolled;          /* mu: fds of finished segments, to sync and close */
    size_t nrolled, rolled_cap;
    bool dir_dirty;       /* mu: entries created since the directory's last fsync */
    pend *pending;        /* mu */
    size_t npending, pending_cap;
    wait_entry *waiters;  /* mu */
    size_t nwaiters, waiters_cap;
    bool stop;            /* mu */
    bool started;
    int test_sync_delay_ms; /* VIGIL_TEST_SYNC_DELAY_MS: a slow disk, for tests */
    pthread_t thread;

    _Atomic uint64_t synced;
    atomic_uint_fast64_t syncs, synced_bytes, confirm_waits, early, write_errors;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void seg_name(char *out, size_t cap, uint64_t index)
{
    snprintf(out, cap, "%020" PRIu64 ".seg", index);
}

/* Grows *v (of elem bytes each) to hold one more; false on out of memory. */
static bool room(void **v, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(*v, c * elem);
    if (p == NULL)
        return false;
    *v = p;
    *cap = c;
    return true;
}

static void fail_log(const vg_store *s, const char *what, int err)
{
    char d[200];
    vg_log(VG_LOG_ERROR, "store_failed", "dir=%s error=\"%s: %s\"",
           vg_log_quote(d, sizeof d, s->cfg.dir, strlen(s->cfg.dir)), what, strerror(err));
}

/* A sync failed: the kernel may have dropped the dirty pages, and a retry
 * can succeed without them (PostgreSQL's "fsyncgate"), so nothing written
 * since the last good sync can be trusted to be on disk. The broker stops;
 * recovery at the next start reads what is really there. */
static void fatal_sync(const vg_store *s, const char *op, int err)
{
    char d[200];
    vg_log(VG_LOG_ERROR, "storage_fatal", "op=%s dir=%s error=\"%s\" detail=\"the broker stops: "
           "a failed sync cannot be retried safely\"", op,
           vg_log_quote(d, sizeof d, s->cfg.dir, strlen(s->cfg.dir)), strerror(err));
    _exit(3);
}

/* ---- recovery ---- */

typedef struct {
    vg_store *s;
    bool live;      /* into the logs, dedupe and durables; else into the checkpoint */
    int64_t mono_now, wall_now;
    vg_tlog_msg *msgs;
    size_t msgs_cap;
    uint64_t records, damaged;
} scan_ctx;

/* The MSG frames of a block's body, checked, into x->msgs. */
static bool split_frames(scan_ctx *x, const vg_block *b, const uint8_t *frames, size_t len)
{
    if (b->count > len / VG_FRAME_HEADER)
        return false; /* more frames than their headers would fill: before any allocation */
    if (b->count > x->msgs_cap) {
        vg_tlog_msg *m = realloc(x->msgs, b->count * sizeof *m);
        if (m == NULL)
            return false;
        x->msgs = m;
        x->msgs_cap = b->count;
    }
    size_t off = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        if (len - off < VG_FRAME_HEADER)
            return false;
        uint32_t flen = vg_be32(frames + off);
        if (len - off - VG_FRAME_HEADER < flen)
            return false;
        vg_frame f;
        const char *why;
        if (vg_frame_parse(frames + off + VG_FRAME_HEADER, flen, &f, &why) != VG_OK ||
            !vg_frame_is_msg(f.type))
            return false;
        x->msgs[i] = (vg_tlog_msg){f.type, f.payload, f.payload_len};
        off += VG_FRAME_HEADER + flen;
    }
    return off == len;
}

static void log_damaged(const char *segname, size_t off, size_t bytes, const vg_block *b,
                        const char *topic)
{
    char t[200];
    if (b != NULL && b->kind == VG_BLOCK_MSGS)
        vg_log(VG_LOG_WARN, "store_damaged",
               "segment=%s offset=%zu bytes=%zu topic=%s from=%" PRIu64 " to=%" PRIu64, segname,
               off, bytes, vg_log_quote(t, sizeof t, topic, b->topic_len), b->first_seq,
               b->first_seq + b->count - 1);
    else
        vg_log(VG_LOG_WARN, "store_damaged", "segment=%s offset=%zu bytes=%zu", segname, off,
               bytes);
}

/* Applies one good block (or, damaged, what its header says). */
static vg_status apply(scan_ctx *x, const vg_block *b, const uint8_t *body, bool damaged)
{
    vg_store *s = x->s;
    const char *topic = (const char *)body;
    const char *rest = topic + b->topic_len;
    size_t rest_len = b->body_len - b->topic_len;
    if (!x->live) {
        /* A damaged ACK's or FORGET's name is unreadable, as below: the
         * checkpoint would write it back as a good block. */
        if (damaged && (b->kind == VG_BLOCK_ACK || b->kind == VG_BLOCK_FORGET))
            return VG_OK;
        return vg_ckpt_apply(s->ckpt, b, topic, rest, rest_len);
    }
    switch (b->kind) {
    case VG_BLOCK_MSGS:
    case VG_BLOCK_NEXT: {
        vg_tlog *t = vg_logs_get(s->logs, topic, b->topic_len);
        if (t == NULL)
            return VG_ERR_NOMEM;
        if (b->kind == VG_BLOCK_NEXT || damaged) {
            vg_tlog_skip_to(t, b->kind == VG_BLOCK_NEXT ? b->first_seq : b->first_seq + b->count);
        } else {
            int64_t at = x->mono_now - (x->wall_now - b->wall_ms);
            if (at > x->mono_now)
                at = x->mono_now;
            if (!split_frames(x, b, (const uint8_t *)rest, rest_len))
                return VG_ERR_MALFORMED;
            vg_status st = vg_tlog_restore(t, b->first_seq, x->msgs, b->count, at);
            if (st != VG_OK)
                return st;
            x->records += b->count;
        }
        if (b->kind == VG_BLOCK_MSGS && b->publisher != 0)
            vg_dedupe_appended(s->dedupe, b->publisher, b->pub_last, x->mono_now);
        return VG_OK;
    }
    case VG_BLOCK_PUBLISHER:
        vg_dedupe_appended(s->dedupe, b->publisher, b->pub_last, x->mono_now);
        return VG_OK;
    case VG_BLOCK_ACK:
    case VG_BLOCK_FORGET:
        if (damaged)
            return VG_OK;
        return vg_durables_restore(s->durables, rest, rest_len, topic, b->topic_len,
                                   b->first_seq, b->kind == VG_BLOCK_FORGET);
    }
    return VG_OK;
}

/* Reads the blocks of file name. A torn tail of the newest segment (last)
 * is cut off; damage elsewhere is skipped and logged. *good gets the bytes
 * up to the end of the last good block. */
static vg_status scan_file(scan_ctx *x, const char *name, bool last, uint64_t *good,
                           int64_t *newest_wall)
{
    vg_store *s = x->s;
    int fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail_log(s, name, errno);
        return VG_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fail_log(s, name, errno);
        close(fd);
        return VG_ERR_IO;
    }
    size_t size = (size_t)st.st_size;
    *good = 0;
    *newest_wall = 0;
    if (size == 0) {
        close(fd);
        return VG_OK;
    }
    const uint8_t *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        fail_log(s, name, errno);
        return VG_ERR_IO;
    }
    (void)madvise((void *)p, size, MADV_SEQUENTIAL);
    vg_status rc = VG_OK;
    size_t off = 0;
    while (off < size && rc == VG_OK) {
        vg_block b;
        /* Folding into the checkpoint needs a MSGS block's header and topic,
         * not its messages: their checksum is not computed again (that
         * doubled the CPU the log spends per byte). The topic is then
         * unchecked, as a damaged block's is. Other kinds are small and
         * checked whole. */
        vg_block_check c = x->live ? vg_block_parse(p + off, size - off, &b)
                                   : vg_block_parse_header(p + off, size - off, &b);
        if (c == VG_BLOCK_OK && !x->live && b.kind != VG_BLOCK_MSGS &&
            vg_crc32c(0, p + off + VG_BLOCK_HEADER, b.body_len) != b.body_crc)
            c = VG_BLOCK_BAD_BODY;
        if (c == VG_BLOCK_OK || c == VG_BLOCK_BAD_BODY) {
            const uint8_t *body = p + off + VG_BLOCK_HEADER;
            if (c == VG_BLOCK_BAD_BODY) {
                x->damaged++;
                if (x->live)
                    log_damaged(name, off, VG_BLOCK_HEADER + b.body_len, &b, (const char *)body);
            }
            rc = apply(x, &b, body, c == VG_BLOCK_BAD_BODY);
            if (rc == VG_ERR_MALFORMED) { /* a good checksum over bad frames: damage all the same */
                x->damaged++;
                if (x->live)
                    log_damaged(name, off, VG_BLOCK_HEADER + b.body_len, &b, (const char *)body);
                rc = apply(x, &b, body, true);
            }
            off += VG_BLOCK_HEADER + b.body_len;
            *good = off;
            if (b.wall_ms > *newest_wall)
                *newest_wall = b.wall_ms;
            continue;
        }
        size_t next = vg_block_resync(p, size, off);
        if (next == size && last) {
            if (x->live)
                vg_log(VG_LOG_WARN, "store_truncated", "segment=%s offset=%zu bytes=%zu", name,
                       off, size - off);
            break;
        }
        x->damaged++;
        if (x->live)
            log_damaged(name, off, next - off, NULL, NULL);
        off = next;
        *good = off;
    }
    munmap((void *)p, size);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The indexes of DIR's segment files, sorted, into s->segs. */
static vg_status list_segments(vg_store *s)
{
    int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        fail_log(s, "reading the directory", errno);
        return VG_ERR_IO;
    }
    uint64_t *idx = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    vg_status st = VG_OK;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (strlen(nm) != 24 || strcmp(nm + 20, ".seg") != 0 || strspn(nm, "0123456789") != 20)
            continue;
        if (!room((void **)&idx, &cap, n, sizeof *idx)) {
            st = VG_ERR_NOMEM;
            break;
        }
        idx[n++] = strtoull(nm, NULL, 10);
    }
    closedir(d);
    if (st == VG_OK && n > 0)
        qsort(idx, n, sizeof *idx, cmp_u64);
    for (size_t i = 0; i < n && st == VG_OK; i++) {
        if (!room((void **)&s->segs, &s->segs_cap, s->nsegs, sizeof *s->segs))
            st = VG_ERR_NOMEM;
        else
            s->segs[s->nsegs++] = (seg){.index = idx[i]};
    }
    free(idx);
    return st;
}

/* Reads vigil.meta, or writes it in a new directory. *fresh: it was new.
 * The epoch line has a fixed width so that it is rewritten in place. */
static vg_status read_meta(vg_store *s, bool *fresh)
{
    char buf[256];
    ssize_t n = pread(s->metafd, buf, sizeof buf - 1, 0);
    if (n < 0) {
        fail_log(s, META, errno);
        return VG_ERR_IO;
    }
    buf[n] = 0;
    *fresh = n == 0;
    if (n == 0)
        return VG_OK;
    unsigned long long e = 0;
    if (strncmp(buf, META_FORMAT, strlen(META_FORMAT)) != 0 ||
        sscanf(buf + strlen(META_FORMAT), "epoch %llx", &e) != 1 || e == 0) {
        char d[200], first[64];
        size_t fl = strcspn(buf, "\n");
        vg_log(VG_LOG_ERROR, "store_failed",
               "dir=%s error=\"not a vigil data directory of this version (format 1)\" found=%s",
               vg_log_quote(d, sizeof d, s->cfg.dir, strlen(s->cfg.dir)),
               vg_log_quote(first, sizeof first, buf, fl < 40 ? fl : 40));
        return VG_ERR_IO;
    }
    s->epoch = e;
    return VG_OK;
}

static vg_status write_meta(vg_store *s)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, META_FORMAT "epoch %016llx\n", (unsigned long long)s->epoch);
    if (pwrite(s->metafd, buf, (size_t)n, 0) != n || ftruncate(s->metafd, n) != 0 ||
        fsync(s->metafd) != 0 || fsync(s->dirfd) != 0) {
        fail_log(s, "writing " META, errno);
        return VG_ERR_IO;
    }
    return VG_OK;
}

static uint64_t new_epoch(void)
{
    uint64_t e = 0;
    if (getrandom(&e, sizeof e, 0) != (ssize_t)sizeof e)
        e = (uint64_t)wall_ms() * 1000003u;
    return e != 0 ? e : 1;
}

/* Opens segment index for appending (creating it), as the current one. */
static vg_status open_current(vg_store *s, uint64_t index, bool create)
{
    char name[32];
    seg_name(name, sizeof name, index);
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    int fd = openat(s->dirfd, name, flags, 0644);
    if (fd < 0) {
        fail_log(s, name, errno);
        return VG_ERR_IO;
    }
    s->cur_fd = fd;
    return VG_OK;
}

static vg_status recover(vg_store *s, const vg_logs_cfg *lcfg, bool fresh, bool clean)
{
    vg_logs_cfg lc = *lcfg;
    lc.held = s->cfg.fsync == VG_FSYNC_ALWAYS;
    s->logs = vg_logs_create(&lc, s->epoch);
    if (s->logs == NULL)
        return VG_ERR_NOMEM;
    (void)unlinkat(s->dirfd, STATE_TMP, 0);
    scan_ctx x = {.s = s, .live = true, .mono_now = vg_now_ms(), .wall_now = wall_ms()};
    vg_status st = VG_OK;
    uint64_t good;
    int64_t newest;
    struct stat sb;
    if (fstatat(s->dirfd, STATE, &sb, 0) == 0) {
        st = scan_file(&x, STATE, false, &good, &newest);
        scan_ctx k = {.s = s, .live = false};
        if (st == VG_OK)
            st = scan_file(&k, STATE, false, &good, &newest);
        free(k.msgs);
    }
    if (st == VG_OK)
        st = list_segments(s);
    for (size_t i = 0; i < s->nsegs && st == VG_OK; i++) {
        char name[32];
        seg_name(name, sizeof name, s->segs[i].index);
        bool last = i + 1 == s->nsegs;
        st = scan_file(&x, name, last, &good, &newest);
        s->segs[i].newest_wall = newest;
        if (st != VG_OK)
            break;
        if (last) {
            int fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC);
            struct stat fs;
            if (fd < 0 || fstat(fd, &fs) != 0) {
                fail_log(s, name, errno);
                st = VG_ERR_IO;
            } else if ((uint64_t)fs.st_size > good &&
                       (ftruncate(fd, (off_t)good) != 0 || fsync(fd) != 0)) {
                fail_log(s, "cutting a torn tail", errno);
                st = VG_ERR_IO;
            }
            if (fd >= 0)
                close(fd);
        }
        s->segs[i].bytes = good;
        s->total_bytes += good;
    }
    free(x.msgs);
    if (st != VG_OK)
        return st;
    if (s->nsegs == 0) {
        if (!room((void **)&s->segs, &s->segs_cap, 0, sizeof *s->segs))
            return VG_ERR_NOMEM;
        s->segs[s->nsegs++] = (seg){.index = 1};
        st = open_current(s, 1, true);
        if (st == VG_OK && fsync(s->dirfd) != 0) {
            fail_log(s, "syncing the directory", errno);
            st = VG_ERR_IO;
        }
    } else {
        st = open_current(s, s->segs[s->nsegs - 1].index, false);
    }
    if (st != VG_OK)
        return st;
    s->cur_bytes = s->segs[s->nsegs - 1].bytes;
    vg_logs_stats ls;
    vg_logs_get_stats(s->logs, &ls);
    char d[200];
    vg_log(VG_LOG_INFO, "store_opened",
           "dir=%s segments=%zu records=%" PRIu64 " bytes=%" PRIu64 " damaged=%" PRIu64
           " recovered_ms=%lld epoch=%" PRIu64 " fsync=%s%s",
           vg_log_quote(d, sizeof d, s->cfg.dir, strlen(s->cfg.dir)), s->nsegs, x.records,
           s->total_bytes, x.damaged, (long long)(vg_now_ms() - x.mono_now), s->epoch,
           s->cfg.fsync == VG_FSYNC_ALWAYS ? "always"
           : s->cfg.fsync == VG_FSYNC_NEVER ? "never" : "interval",
           fresh ? " new=true" : clean ? "" : " clean_stop=false");
    return VG_OK;
}

vg_status vg_store_open(const vg_store_cfg *cfg, const vg_logs_cfg *lcfg, vg_dedupe *dedupe,
                        vg_durables *durables, vg_logs **logs, vg_store **out)
{
    vg_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return VG_ERR_NOMEM;
    s->cfg = *cfg;
    snprintf(s->dir, sizeof s->dir, "%s", cfg->dir);
    s->cfg.dir = s->dir;
    s->dedupe = dedupe;
    s->durables = durables;
    s->dirfd = s->metafd = s->cur_fd = -1;
    /* A test seam, read once: every sync of the commit thread takes this
     * much longer, as on a slow or stalled disk (tests/e2e/test_durable.c
     * shows that heartbeats go on and confirms wait). */
    const char *delay = getenv("VIGIL_TEST_SYNC_DELAY_MS");
    s->test_sync_delay_ms = delay != NULL ? atoi(delay) : 0;
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    vg_status st = VG_ERR_IO;
    s->ckpt = vg_ckpt_create();
    if (s->ckpt == NULL) {
        st = VG_ERR_NOMEM;
        goto fail_free;
    }
    if (mkdir(s->dir, 0750) != 0 && errno != EEXIST) {
        fail_log(s, "creating the directory", errno);
        goto fail_free;
    }
    s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        fail_log(s, "opening the directory", errno);
        goto fail_free;
    }
    s->metafd = openat(s->dirfd, META, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->metafd < 0) {
        fail_log(s, "opening " META, errno);
        goto fail_close;
    }
    if (flock(s->metafd, LOCK_EX | LOCK_NB) != 0) {
        char d[200];
        vg_log(VG_LOG_ERROR, "store_failed",
               "dir=%s error=\"the data directory is locked by another running broker\"",
               vg_log_quote(d, sizeof d, s->dir, strlen(s->dir)));
        goto fail_close;
    }
    bool fresh;
    if (read_meta(s, &fresh) != VG_OK)
        goto fail_close;
    struct stat sb;
    bool clean = fstatat(s->dirfd, CLEAN, &sb, 0) == 0;
    bool unsynced = fstatat(s->dirfd, UNSYNCED, &sb, 0) == 0;
    if (fresh || (!clean && (cfg->fsync != VG_FSYNC_ALWAYS || unsynced))) {
        /* Without a sync before each confirm, an unclean stop may have lost
         * records that readers had: the numbers start a new epoch. What
         * counts is the policy of the run that stopped (UNSYNCED), not only
         * this one's. */
        if (!fresh)
            vg_log(VG_LOG_WARN, "epoch_changed",
                   "reason=unclean_stop fsync=%s%s detail=\"records readers had may be lost\"",
                   cfg->fsync == VG_FSYNC_NEVER      ? "never"
                   : cfg->fsync == VG_FSYNC_INTERVAL ? "interval"
                                                     : "always",
                   unsynced ? " previous_run=unsynced" : "");
        s->epoch = new_epoch();
        if (write_meta(s) != VG_OK)
            goto fail_close;
    }
    /* This run's policy, for the next start to judge an unclean stop by. */
    bool want_unsynced = cfg->fsync != VG_FSYNC_ALWAYS;
    if (want_unsynced != unsynced) {
        int fd = -1;
        if (want_unsynced)
            fd = openat(s->dirfd, UNSYNCED, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        if ((want_unsynced ? fd < 0 : unlinkat(s->dirfd, UNSYNCED, 0) != 0) ||
            fsync(s->dirfd) != 0) {
            fail_log(s, want_unsynced ? "creating " UNSYNCED : "removing " UNSYNCED, errno);
            if (fd >= 0)
                close(fd);
            goto fail_close;
        }
        if (fd >= 0)
            close(fd);
    }
    st = recover(s, lcfg, fresh, clean);
    if (st != VG_OK)
        goto fail_logs;
    if (clean && (unlinkat(s->dirfd, CLEAN, 0) != 0 || fsync(s->dirfd) != 0)) {
        fail_log(s, "removing the clean-stop mark", errno);
        st = VG_ERR_IO;
        goto fail_logs;
    }
    *logs = s->logs;
    *out = s;
    return VG_OK;

fail_logs:
    vg_logs_destroy(s->logs);
    if (s->cur_fd >= 0)
        close(s->cur_fd);
fail_close:
    if (s->metafd >= 0)
        close(s->metafd);
    close(s->dirfd);
fail_free:
    vg_ckpt_destroy(s->ckpt);
    free(s->segs);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->wmu);
    free(s);
    return st == VG_OK ? VG_ERR_IO : st;
}

/* ---- writing ---- */

bool vg_store_holds(const vg_store *s) { return s->cfg.fsync == VG_FSYNC_ALWAYS; }

void vg_store_begin(vg_store *s) { pthread_mutex_lock(&s->wmu); }

/* Starts the next segment. Under wmu. */
static vg_status roll(vg_store *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t index = s->segs[s->nsegs - 1].index + 1; /* only wmu's holder adds segments */
    pthread_mutex_unlock(&s->mu);
    char name[32];
    seg_name(name, sizeof name, index);
    int fd = openat(s->dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return VG_ERR_IO;
    /* Room and push under one hold of mu: the commit thread swaps the
     * rolled list out whenever it does not hold mu. */
    pthread_mutex_lock(&s->mu);
    bool ok = room((void **)&s->segs, &s->segs_cap, s->nsegs, sizeof *s->segs) &&
              room((void **)&s->rolled, &s->rolled_cap, s->nrolled, sizeof *s->rolled);
    if (ok) {
        s->rolled[s->nrolled++] = s->cur_fd;
        s->segs[s->nsegs++] = (seg){.index = index};
        s->cur_fd = fd;
        s->dir_dirty = true;
    }
    pthread_mutex_unlock(&s->mu);
    if (!ok) {
        close(fd);
        (void)unlinkat(s->dirfd, name, 0);
        errno = ENOMEM;
        return VG_ERR_IO;
    }
    s->cur_bytes = 0;
    return VG_OK;
}

/* Writes iov (total bytes) at the end of the current segment, whole or not
 * at all. Under wmu. */
static vg_status put_block(vg_store *s, struct iovec *iov, int n, size_t total, int64_t wall)
{
    int err = 0;
    if (s->tail_dirty) { /* a failed write's bytes: cut before anything follows them */
        if (ftruncate(s->cur_fd, (off_t)s->cur_bytes) != 0) {
            err = errno;
            goto fail;
        }
        s->tail_dirty = false;
    }
    if (s->cur_bytes > 0 && s->cur_bytes + total > s->cfg.segment_bytes && roll(s) != VG_OK) {
        err = errno;
        goto fail;
    }
    size_t done = 0;
    while (done < total) {
        ssize_t w = writev(s->cur_fd, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = w < 0 ? errno : EIO;
            s->tail_dirty = done > 0;
            if (done > 0 && ftruncate(s->cur_fd, (off_t)s->cur_bytes) == 0)
                s->tail_dirty = false;
            goto fail;
        }
        done += (size_t)w;
        size_t left = (size_t)w; /* a short write: go on from where it stopped */
        while (n > 0 && left >= iov[0].iov_len) {
            left -= iov[0].iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov[0].iov_base = (uint8_t *)iov[0].iov_base + left;
            iov[0].iov_len -= left;
        }
    }
    if (s->failing) {
        s->failing = false;
        vg_log(VG_LOG_INFO, "storage_recovered", "dir=%s", s->dir);
    }
    s->cur_bytes += total;
    s->written += total;
    s->last_len = total;
    pthread_mutex_lock(&s->mu);
    s->segs[s->nsegs - 1].bytes = s->cur_bytes;
    s->segs[s->nsegs - 1].newest_wall = wall;
    s->total_bytes += total;
    pthread_mutex_unlock(&s->mu);
    return VG_OK;

fail:
    atomic_fetch_add_explicit(&s->write_errors, 1, memory_order_relaxed);
    if (!s->failing) {
        s->failing = true;
        vg_log(VG_LOG_ERROR, "storage_failed", "op=write dir=%s error=\"%s\"", s->dir,
               strerror(err));
    }
    s->last_len = 0;
    errno = err;
    return VG_ERR_IO;
}

vg_status vg_store_write(vg_store *s, const char *topic, uint16_t topic_len, uint64_t first_seq,
                         uint32_t count, const uint8_t *frames, size_t len, uint64_t publisher,
                         uint64_t pub_last)
{
    int64_t wall = wall_ms();
    vg_block b = {.kind = VG_BLOCK_MSGS, .first_seq = first_seq, .publisher = publisher,
                  .pub_last = pub_last, .wall_ms = wall, .count = count,
                  .body_len = (uint32_t)(topic_len + len), .topic_len = topic_len};
    b.body_crc = vg_crc32c(vg_crc32c(0, topic, topic_len), frames, len);
    uint8_t hdr[VG_BLOCK_HEADER];
    vg_block_put_header(hdr, &b);
    struct iovec iov[3] = {{hdr, sizeof hdr}, {(void *)topic, topic_len}, {(void *)frames, len}};
    return put_block(s, iov, 3, sizeof hdr + topic_len + len, wall);
}

void vg_store_unwrite(vg_store *s)
{
    if (s->last_len == 0)
        return;
    s->cur_bytes -= s->last_len;
    s->written -= s->last_len;
    pthread_mutex_lock(&s->mu);
    s->segs[s->nsegs - 1].bytes = s->cur_bytes;
    s->total_bytes -= s->last_len;
    pthread_mutex_unlock(&s->mu);
    s->last_len = 0;
    if (ftruncate(s->cur_fd, (off_t)s->cur_bytes) != 0)
        s->tail_dirty = true; /* cut before the next write */
}

void vg_store_end(vg_store *s, vg_tlog *t, uint64_t upto, uint64_t *lsn)
{
    pthread_mutex_lock(&s->mu);
    s->written_lsn = s->written;
    if (t != NULL && s->cfg.fsync == VG_FSYNC_ALWAYS) {
        if (s->npending > 0 && s->pending[s->npending - 1].t == t)
            s->pending[s->npending - 1].upto = upto; /* one topic's runs in a row: one entry */
        else if (room((void **)&s->pending, &s->pending_cap, s->npending, sizeof *s->pending))
            s->pending[s->npending++] = (pend){t, upto};
        else
            upto = 0; /* out of memory: released with this topic's next run */
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    *lsn = s->written;
    pthread_mutex_unlock(&s->wmu);
}

vg_status vg_store_durable(vg_store *s, vg_block_kind kind, const char *topic, uint16_t topic_len,
                           const char *name, uint16_t name_len, uint64_t acked)
{
    int64_t wall = wall_ms();
    vg_block b = {.kind = kind, .first_seq = acked, .wall_ms = wall,
                  .body_len = (uint32_t)topic_len + name_len, .topic_len = topic_len};
    b.body_crc = vg_crc32c(vg_crc32c(0, topic, topic_len), name, name_len);
    uint8_t hdr[VG_BLOCK_HEADER];
    vg_block_put_header(hdr, &b);
    struct iovec iov[3] = {{hdr, sizeof hdr}, {(void *)topic, topic_len}, {(void *)name, name_len}};
    pthread_mutex_lock(&s->wmu);
    vg_status st = put_block(s, iov, 3, sizeof hdr + topic_len + name_len, wall);
    uint64_t lsn;
    vg_store_end(s, NULL, 0, &lsn); /* unlocks wmu */
    return st;
}

uint64_t vg_store_synced(vg_store *s)
{
    return atomic_load_explicit(&s->synced, memory_order_acquire);
}

bool vg_store_wait(vg_store *s, uint64_t lsn, void *waiter)
{
    pthread_mutex_lock(&s->mu);
    bool wait = vg_store_synced(s) < lsn &&
                room((void **)&s->waiters, &s->waiters_cap, s->nwaiters, sizeof *s->waiters);
    if (wait) {
        s->waiters[s->nwaiters++] = (wait_entry){waiter, lsn};
        atomic_fetch_add_explicit(&s->confirm_waits, 1, memory_order_relaxed);
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return wait;
}

void vg_store_note_early(vg_store *s)
{
    atomic_fetch_add_explicit(&s->early, 1, memory_order_relaxed);
}

void vg_store_get_stats(vg_store *s, vg_store_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->segments = s->nsegs;
    out->bytes = s->total_bytes;
    pthread_mutex_unlock(&s->mu);
    out->syncs = atomic_load_explicit(&s->syncs, memory_order_relaxed);
    out->synced_bytes = atomic_load_explicit(&s->synced_bytes, memory_order_relaxed);
    out->confirm_waits = atomic_load_explicit(&s->confirm_waits, memory_order_relaxed);
    out->early_confirms = atomic_load_explicit(&s->early, memory_order_relaxed);
    out->write_errors = atomic_load_explicit(&s->write_errors, memory_order_relaxed);
}

/* ---- the commit thread ---- */

/* Folds the oldest segment into the checkpoint, writes it as the state
 * file (synced, then renamed over the old one, then the directory synced),
 * and only then deletes the segment: a crash anywhere in between leaves
 * either the old state and the segment, or the new state and perhaps the
 * segment, which is read again harmlessly (numbers only grow). */
static bool drop_oldest(vg_store *s, uint64_t index)
{
    char name[32];
    seg_name(name, sizeof name, index);
    scan_ctx k = {.s = s, .live = false};
    uint64_t good;
    int64_t newest;
    if (scan_file(&k, name, false, &good, &newest) != VG_OK)
        return false; /* logged; tried again at the next tick */
    free(k.msgs);
    int fd = openat(s->dirfd, STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        fail_log(s, "writing " STATE_TMP, errno);
        return false;
    }
    vg_status st = vg_ckpt_write(s->ckpt, fd, wall_ms() - DEDUPE_WINDOW_MS);
    if (st == VG_OK && s->cfg.fsync != VG_FSYNC_NEVER && fdatasync(fd) != 0)
        fatal_sync(s, "fdatasync", errno);
    close(fd);
    if (st != VG_OK || renameat(s->dirfd, STATE_TMP, s->dirfd, STATE) != 0) {
        fail_log(s, "writing " STATE, errno);
        return false;
    }
    if (s->cfg.fsync != VG_FSYNC_NEVER && fsync(s->dirfd) != 0)
        fatal_sync(s, "fsync", errno);
    if (unlinkat(s->dirfd, name, 0) != 0) {
        fail_log(s, name, errno);
        return false;
    }
    if (s->cfg.fsync != VG_FSYNC_NEVER && fsync(s->dirfd) != 0)
        fatal_sync(s, "fsync", errno);
    pthread_mutex_lock(&s->mu);
    s->total_bytes -= s->segs[0].bytes;
    memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof *s->segs);
    s->nsegs--;
    pthread_mutex_unlock(&s->mu);
    vg_log(VG_LOG_DEBUG, "segment_removed", "segment=%s", name);
    return true;
}

/* Drops the oldest segments that retention no longer keeps (never the
 * current one). Commit thread. */
static void retain(vg_store *s)
{
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool drop = false;
        uint64_t index = 0;
        if (s->nsegs > 1) {
            const seg *o = &s->segs[0];
            drop = (s->cfg.retention_bytes > 0 &&
                    s->total_bytes - o->bytes >= s->cfg.retention_bytes) ||
                   (s->cfg.retention_age_ms > 0 &&
                    o->newest_wall < wall_ms() - s->cfg.retention_age_ms);
            index = o->index;
        }
        pthread_mutex_unlock(&s->mu);
        if (!drop)
            return;
        if (!drop_oldest(s, index))
            return; /* failed: logged */
    }
}

/* Exchanges the list *v (n, cap) with the empty one *mine (its cap), so
 * that the commit thread works on the old entries without the lock.
 * Returns how many they are. */
static size_t swap_list(void **v, size_t *n, size_t *cap, void **mine, size_t *mine_cap)
{
    void *p = *v;
    size_t c = *cap, got = *n;
    *v = *mine;
    *cap = *mine_cap;
    *n = 0;
    *mine = p;
    *mine_cap = c;
    return got;
}

static void *commit_main(void *arg)
{
    vg_store *s = arg;
    int64_t retain_at = vg_now_ms();
    int *rolled = NULL;
    size_t rolled_cap = 0;
    pend *pending = NULL;
    size_t pending_cap = 0;
    wait_entry *woken = NULL;
    size_t woken_cap = 0;
    int64_t interval_at = 0; /* VG_FSYNC_INTERVAL: the next timed sync */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (;;) { /* until there is work */
            int64_t now = vg_now_ms();
            bool unsynced = s->written_lsn > vg_store_synced(s);
            bool due = s->cfg.fsync == VG_FSYNC_ALWAYS     ? unsynced || s->npending > 0
                       : s->cfg.fsync == VG_FSYNC_INTERVAL ? unsynced && now >= interval_at
                                                           : false;
            if (s->stop || due || s->nrolled > 0 || s->dir_dirty || now >= retain_at)
                break;
            int64_t until = retain_at;
            if (s->cfg.fsync == VG_FSYNC_INTERVAL && unsynced && interval_at < until)
                until = interval_at;
            struct timespec ts = {until / 1000, (until % 1000) * 1000000};
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        bool stopping = s->stop;
        uint64_t target = s->written_lsn;
        int fd = s->cur_fd;
        /* swap the lists out: appenders go on filling fresh ones */
        size_t nr = swap_list((void **)&s->rolled, &s->nrolled, &s->rolled_cap,
                              (void **)&rolled, &rolled_cap);
        size_t np = swap_list((void **)&s->pending, &s->npending, &s->pending_cap,
                              (void **)&pending, &pending_cap);
        bool dirty = s->dir_dirty;
        s->dir_dirty = false;
        pthread_mutex_unlock(&s->mu);

        bool sync = s->cfg.fsync != VG_FSYNC_NEVER || stopping;
        for (size_t i = 0; i < nr; i++) {
            if (sync && fdatasync(rolled[i]) != 0)
                fatal_sync(s, "fdatasync", errno);
            close(rolled[i]);
        }
        if (dirty && sync && fsync(s->dirfd) != 0)
            fatal_sync(s, "fsync", errno);
        uint64_t before = vg_store_synced(s);
        if (target > before) {
            if (sync && s->test_sync_delay_ms > 0) {
                struct timespec d = {s->test_sync_delay_ms / 1000,
                                     (s->test_sync_delay_ms % 1000) * 1000000L};
                nanosleep(&d, NULL);
            }
            if (sync) {
                if (fdatasync(fd) != 0)
                    fatal_sync(s, "fdatasync", errno);
                atomic_fetch_add_explicit(&s->syncs, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&s->synced_bytes, target - before, memory_order_relaxed);
            }
            atomic_store_explicit(&s->synced, target, memory_order_release);
        }
        for (size_t i = 0; i < np; i++) {
            vg_tlog_release(pending[i].t, pending[i].upto);
            if (s->hooks.released != NULL)
                s->hooks.released(s->hooks.ud, pending[i].t);
        }
        pthread_mutex_lock(&s->mu);
        size_t nw = 0;
        for (size_t i = 0; i < s->nwaiters;) {
            if (s->waiters[i].lsn <= target &&
                room((void **)&woken, &woken_cap, nw, sizeof *woken)) {
                woken[nw++] = s->waiters[i];
                s->waiters[i] = s->waiters[--s->nwaiters];
            } else {
                i++;
            }
        }
        pthread_mutex_unlock(&s->mu);
        for (size_t i = 0; i < nw; i++)
            s->hooks.wake(s->hooks.ud, woken[i].w);
        if (stopping)
            break;
        interval_at = vg_now_ms() + s->cfg.interval_ms;
        if (vg_now_ms() >= retain_at) {
            retain(s);
            retain_at = vg_now_ms() + 1000;
        }
        pthread_mutex_lock(&s->mu);
    }
    free(rolled);
    free(pending);
    free(woken);
    return NULL;
}

vg_status vg_store_start(vg_store *s, const vg_store_hooks *hooks)
{
    s->hooks = *hooks;
    if (pthread_create(&s->thread, NULL, commit_main, s) != 0)
        return VG_ERR_NOMEM;
    s->started = true;
    return VG_OK;
}

void vg_store_close(vg_store *s)
{
    if (s == NULL)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    for (size_t i = 0; i < s->nrolled; i++)
        close(s->rolled[i]);
    bool ok = s->cur_fd >= 0 && fdatasync(s->cur_fd) == 0;
    if (s->cur_fd >= 0)
        close(s->cur_fd);
    if (ok) { /* the next start may keep the epoch whatever the policy */
        int fd = openat(s->dirfd, CLEAN, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        if (fd >= 0) {
            close(fd);
            (void)fsync(s->dirfd);
        }
    }
    for (size_t i = 0; i < s->nwaiters; i++)
        s->hooks.wake(s->hooks.ud, s->waiters[i].w); /* their connections are gone or going */
    close(s->metafd); /* the lock goes with it */
    close(s->dirfd);
    vg_ckpt_destroy(s->ckpt);
    free(s->segs);
    free(s->rolled);
    free(s->pending);
    free(s->waiters);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->wmu);
    free(s);
}
