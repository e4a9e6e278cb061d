/* What store.c (writing, the commit thread) and store_open.c (opening
 * and recovering a data directory) share. Not for other modules. */
#ifndef VG_STORE_INTERNAL_H
#define VG_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "store.h"

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
    atomic_bool failing_pub; /* failing, for vg_store_get_stats (no lock) */
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

/* A pass over a data directory's files: into the logs, dedupe and durables
 * (live, at open), or into the checkpoint (folding a segment before it
 * goes). */
typedef struct {
    vg_store *s;
    bool live;      /* into the logs, dedupe and durables; else into the checkpoint */
    int64_t mono_now, wall_now;
    vg_tlog_msg *msgs;
    size_t msgs_cap;
    uint64_t records, damaged;
} scan_ctx;

/* store.c: the wall clock in ms; a segment's file name; room for one more
 * of n elements in *v; one store_failed line; a failed sync (exits). */
int64_t store_wall_ms(void);
void store_seg_name(char *out, size_t cap, uint64_t index);
bool store_room(void **v, size_t *cap, size_t n, size_t elem);
void store_fail_log(const vg_store *s, const char *what, int err);
void store_fatal_sync(const vg_store *s, const char *op, int err);

/* store_open.c: reads the blocks of file name into x. A torn tail of the
 * newest segment (last) is cut off; damage elsewhere is skipped and
 * logged. *good gets the bytes up to the end of the last good block. */
vg_status store_scan_file(scan_ctx *x, const char *name, bool last, uint64_t *good,
                          int64_t *newest_wall);

#endif
