/* The durable log: with --data-dir every block of messages the broker
 * accepts is written to segment files before it is confirmed or delivered,
 * and read back at start (docs/operations.md, "The data directory";
 * docs/design.md, "The log on disk").
 *
 * Writing: a publisher's thread writes its run as one block (block.h) with
 * one writev, under the append lock the router already holds, then appends
 * it to the topic log in memory, where it stays held (topiclog.h) until
 * the commit thread's fdatasync covers it. The commit thread syncs whatever
 * was written since its last sync (group commit: every publisher's blocks
 * share one fdatasync), then releases the blocks' records to readers and
 * wakes the connections waiting to confirm. A connection's thread never
 * waits for a sync: it defers its PONG and goes on with its heartbeats.
 *
 * Policies: always (the above), interval=MS (a sync every MS; confirmed
 * and delivered before synced), never (the kernel writes back when it
 * likes). What each can lose: docs/operations.md. */
#ifndef VG_STORE_H
#define VG_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "block.h"
#include "dedupe.h"
#include "durable.h"
#include "status.h"
#include "topiclog.h"

typedef enum { VG_FSYNC_ALWAYS, VG_FSYNC_INTERVAL, VG_FSYNC_NEVER } vg_fsync_policy;

typedef struct {
    const char *dir;
    vg_fsync_policy fsync;
    int interval_ms;          /* VG_FSYNC_INTERVAL */
    uint64_t segment_bytes;   /* a segment is rolled before it would pass this */
    uint64_t retention_bytes; /* segments beyond the newest this many bytes go (0: none) */
    int64_t retention_age_ms; /* segments whose newest block is older go (0: none) */
} vg_store_cfg;

#define VG_STORE_SEGMENT_DEFAULT (64u << 20)
#define VG_STORE_SEGMENT_MIN (64u << 10)

typedef struct {
    void *ud;
    /* Commit thread: t's records up to what was synced are readable now. */
    void (*released)(void *ud, vg_tlog *t);
    /* Commit thread: what waiter waited for (vg_store_wait) is synced. */
    void (*wake)(void *ud, void *waiter);
} vg_store_hooks;

typedef struct {
    uint64_t syncs, synced_bytes; /* fdatasync calls of the commit thread, bytes they covered */
    uint64_t confirm_waits;       /* PONGs that waited for a sync */
    uint64_t early_confirms;      /* PONGs sent before their sync: always 0 (checked) */
    uint64_t segments, bytes;     /* segment files and their bytes now */
    uint64_t write_errors;        /* appends refused for a failed write */
    bool failing;                 /* the last write failed (ERR storage), none has worked since */
} vg_store_stats;

typedef struct vg_store vg_store;

/* Opens (creating) dir, locks it against a second broker, and recovers it:
 * *logs is created with lcfg (held under VG_FSYNC_ALWAYS) and the stored
 * epoch, filled with the retained records; dedupe and durables get their
 * stored state. Logs one line per repair and event=store_opened. On
 * failure logs event=store_failed with the reason and returns VG_ERR_IO
 * (or VG_ERR_NOMEM); nothing is started fresh over a directory it cannot
 * read. */
vg_status vg_store_open(const vg_store_cfg *cfg, const vg_logs_cfg *lcfg, vg_dedupe *dedupe,
                        vg_durables *durables, vg_logs **logs, vg_store **out);

/* Starts the commit thread. */
vg_status vg_store_start(vg_store *s, const vg_store_hooks *hooks);

/* Syncs what is written, stops the thread, marks a clean stop, unlocks the
 * directory and frees s. The logs are the caller's. */
void vg_store_close(vg_store *s);

/* Whether records wait for their sync before confirms and readers. */
bool vg_store_holds(const vg_store *s);

/* A publisher's run: begin (takes the write lock), write the block of
 * count MSG frames (their bytes as received) numbered from first_seq,
 * append them to the topic log, then end. If the memory append fell short,
 * unwrite drops the block (a shorter one may be written again) before end.
 * write returns VG_ERR_IO (errno: ENOSPC, EIO…) when nothing was stored:
 * the publisher is told (ERR storage) and resends later. end publishes the
 * block to the commit thread: t's records below upto are released once
 * synced; *lsn gets the log position the caller's confirm waits for. */
void vg_store_begin(vg_store *s);
vg_status vg_store_write(vg_store *s, const char *topic, uint16_t topic_len, uint64_t first_seq,
                         uint32_t count, const uint8_t *frames, size_t len, uint64_t publisher,
                         uint64_t pub_last);
void vg_store_unwrite(vg_store *s);
void vg_store_end(vg_store *s, vg_tlog *t, uint64_t upto, uint64_t *lsn);

/* Stores a durable subscriber's position (VG_BLOCK_ACK) or its deletion
 * (VG_BLOCK_FORGET). Takes the write lock itself. */
vg_status vg_store_durable(vg_store *s, vg_block_kind kind, const char *topic, uint16_t topic_len,
                           const char *name, uint16_t name_len, uint64_t acked);

/* The log position synced so far. */
uint64_t vg_store_synced(vg_store *s);

/* Registers waiter to be woken (hooks.wake) once lsn is synced; false if
 * it is already (nothing registered). Counts a confirm wait. */
bool vg_store_wait(vg_store *s, uint64_t lsn, void *waiter);

/* A PONG went out although its position was not synced: counted, so that
 * tests can prove it never happens. */
void vg_store_note_early(vg_store *s);

void vg_store_get_stats(vg_store *s, vg_store_stats *out);

#endif
