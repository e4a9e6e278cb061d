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

int64_t store_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void store_seg_name(char *out, size_t cap, uint64_t index)
{
    snprintf(out, cap, "%020" PRIu64 ".seg", index);
}

/* Grows *v (of elem bytes each) to hold one more; false on out of memory. */
bool store_room(void **v, size_t *cap, size_t n, size_t elem)
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

void store_fail_log(const vg_store *s, const char *what, int err)
{
    char d[200];
    vg_log(VG_LOG_ERROR, "store_failed", "dir=%s error=\"%s: %s\"",
           vg_log_quote(d, sizeof d, s->cfg.dir, strlen(s->cfg.dir)), what, strerror(err));
}

/* A sync failed: the kernel may have dropped the dirty pages, and a retry
 * can succeed without them (PostgreSQL's "fsyncgate"), so nothing written
 * since the last good sync can be trusted to be on disk. The broker stops;
 * recovery at the next start reads what is really there. */
void store_fatal_sync(const vg_store *s, const char *op, int err)
{
    char d[200];
    vg_log(VG_LOG_ERROR, "storage_fatal", "op=%s dir=%s error=\"%s\" detail=\"the broker stops: "
           "a failed sync cannot be retried safely\"", op,
           vg_log_quote(d, sizeof d, s->cfg.dir, strlen(s->cfg.dir)), strerror(err));
    _exit(3);
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
    store_seg_name(name, sizeof name, index);
    int fd = openat(s->dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return VG_ERR_IO;
    /* Room and push under one hold of mu: the commit thread swaps the
     * rolled list out whenever it does not hold mu. */
    pthread_mutex_lock(&s->mu);
    bool ok = store_room((void **)&s->segs, &s->segs_cap, s->nsegs, sizeof *s->segs) &&
              store_room((void **)&s->rolled, &s->rolled_cap, s->nrolled, sizeof *s->rolled);
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
        atomic_store(&s->failing_pub, false);
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
        atomic_store(&s->failing_pub, true);
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
    int64_t wall = store_wall_ms();
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
        else if (store_room((void **)&s->pending, &s->pending_cap, s->npending, sizeof *s->pending))
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
    int64_t wall = store_wall_ms();
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
                store_room((void **)&s->waiters, &s->waiters_cap, s->nwaiters, sizeof *s->waiters);
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
    out->failing = atomic_load(&s->failing_pub);
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
    store_seg_name(name, sizeof name, index);
    scan_ctx k = {.s = s, .live = false};
    uint64_t good;
    int64_t newest;
    if (store_scan_file(&k, name, false, &good, &newest) != VG_OK)
        return false; /* logged; tried again at the next tick */
    free(k.msgs);
    int fd = openat(s->dirfd, STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        store_fail_log(s, "writing " STATE_TMP, errno);
        return false;
    }
    vg_status st = vg_ckpt_write(s->ckpt, fd, store_wall_ms() - DEDUPE_WINDOW_MS);
    if (st == VG_OK && s->cfg.fsync != VG_FSYNC_NEVER && fdatasync(fd) != 0)
        store_fatal_sync(s, "fdatasync", errno);
    close(fd);
    if (st != VG_OK || renameat(s->dirfd, STATE_TMP, s->dirfd, STATE) != 0) {
        store_fail_log(s, "writing " STATE, errno);
        return false;
    }
    if (s->cfg.fsync != VG_FSYNC_NEVER && fsync(s->dirfd) != 0)
        store_fatal_sync(s, "fsync", errno);
    if (unlinkat(s->dirfd, name, 0) != 0) {
        store_fail_log(s, name, errno);
        return false;
    }
    if (s->cfg.fsync != VG_FSYNC_NEVER && fsync(s->dirfd) != 0)
        store_fatal_sync(s, "fsync", errno);
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
                    o->newest_wall < store_wall_ms() - s->cfg.retention_age_ms);
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
                store_fatal_sync(s, "fdatasync", errno);
            close(rolled[i]);
        }
        if (dirty && sync && fsync(s->dirfd) != 0)
            store_fatal_sync(s, "fsync", errno);
        uint64_t before = vg_store_synced(s);
        if (target > before) {
            if (sync && s->test_sync_delay_ms > 0) {
                struct timespec d = {s->test_sync_delay_ms / 1000,
                                     (s->test_sync_delay_ms % 1000) * 1000000L};
                nanosleep(&d, NULL);
            }
            if (sync) {
                if (fdatasync(fd) != 0)
                    store_fatal_sync(s, "fdatasync", errno);
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
                store_room((void **)&woken, &woken_cap, nw, sizeof *woken)) {
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
