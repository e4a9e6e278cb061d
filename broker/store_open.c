/* Opening a data directory: its lock, vigil.meta and the epoch, and the
 * recovery of what its files hold (docs/design.md, "The log on disk"). */
#include "store_internal.h"

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

/* ---- recovery ---- */


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
vg_status store_scan_file(scan_ctx *x, const char *name, bool last, uint64_t *good,
                           int64_t *newest_wall)
{
    vg_store *s = x->s;
    int fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        store_fail_log(s, name, errno);
        return VG_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        store_fail_log(s, name, errno);
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
        store_fail_log(s, name, errno);
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
        store_fail_log(s, "reading the directory", errno);
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
        if (!store_room((void **)&idx, &cap, n, sizeof *idx)) {
            st = VG_ERR_NOMEM;
            break;
        }
        idx[n++] = strtoull(nm, NULL, 10);
    }
    closedir(d);
    if (st == VG_OK && n > 0)
        qsort(idx, n, sizeof *idx, cmp_u64);
    for (size_t i = 0; i < n && st == VG_OK; i++) {
        if (!store_room((void **)&s->segs, &s->segs_cap, s->nsegs, sizeof *s->segs))
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
        store_fail_log(s, META, errno);
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
        store_fail_log(s, "writing " META, errno);
        return VG_ERR_IO;
    }
    return VG_OK;
}

static uint64_t new_epoch(void)
{
    uint64_t e = 0;
    if (getrandom(&e, sizeof e, 0) != (ssize_t)sizeof e)
        e = (uint64_t)store_wall_ms() * 1000003u;
    return e != 0 ? e : 1;
}

/* Opens segment index for appending (creating it), as the current one. */
static vg_status open_current(vg_store *s, uint64_t index, bool create)
{
    char name[32];
    store_seg_name(name, sizeof name, index);
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    int fd = openat(s->dirfd, name, flags, 0644);
    if (fd < 0) {
        store_fail_log(s, name, errno);
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
    scan_ctx x = {.s = s, .live = true, .mono_now = vg_now_ms(), .wall_now = store_wall_ms()};
    vg_status st = VG_OK;
    uint64_t good;
    int64_t newest;
    struct stat sb;
    if (fstatat(s->dirfd, STATE, &sb, 0) == 0) {
        st = store_scan_file(&x, STATE, false, &good, &newest);
        scan_ctx k = {.s = s, .live = false};
        if (st == VG_OK)
            st = store_scan_file(&k, STATE, false, &good, &newest);
        free(k.msgs);
    }
    if (st == VG_OK)
        st = list_segments(s);
    for (size_t i = 0; i < s->nsegs && st == VG_OK; i++) {
        char name[32];
        store_seg_name(name, sizeof name, s->segs[i].index);
        bool last = i + 1 == s->nsegs;
        st = store_scan_file(&x, name, last, &good, &newest);
        s->segs[i].newest_wall = newest;
        if (st != VG_OK)
            break;
        if (last) {
            int fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC);
            struct stat fs;
            if (fd < 0 || fstat(fd, &fs) != 0) {
                store_fail_log(s, name, errno);
                st = VG_ERR_IO;
            } else if ((uint64_t)fs.st_size > good &&
                       (ftruncate(fd, (off_t)good) != 0 || fsync(fd) != 0)) {
                store_fail_log(s, "cutting a torn tail", errno);
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
        if (!store_room((void **)&s->segs, &s->segs_cap, 0, sizeof *s->segs))
            return VG_ERR_NOMEM;
        s->segs[s->nsegs++] = (seg){.index = 1};
        st = open_current(s, 1, true);
        if (st == VG_OK && fsync(s->dirfd) != 0) {
            store_fail_log(s, "syncing the directory", errno);
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
        store_fail_log(s, "creating the directory", errno);
        goto fail_free;
    }
    s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        store_fail_log(s, "opening the directory", errno);
        goto fail_free;
    }
    s->metafd = openat(s->dirfd, META, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->metafd < 0) {
        store_fail_log(s, "opening " META, errno);
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
            store_fail_log(s, want_unsynced ? "creating " UNSYNCED : "removing " UNSYNCED, errno);
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
        store_fail_log(s, "removing the clean-stop mark", errno);
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
