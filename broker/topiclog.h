/* The topic logs: every message the broker accepts, appended once to its
 * topic's log as the bytes a version-2 subscriber receives (a MSG frame
 * carrying its sequence number), numbered from 1 in its topic, never
 * reused within one epoch.
 *
 * A log is a list of chunks. Appends copy whole records into the newest
 * chunk under the log's mutex; a chunk never moves and its bytes never
 * change once written, so a reader may send straight from chunk memory
 * without any lock once it has pinned the chunk. Retention drops whole
 * chunks, oldest first across all logs of a store, to keep the bytes held
 * under a budget (and, optionally, younger than an age); a dropped chunk's
 * memory goes when its last pin does. A reader that was positioned in
 * dropped records learns it as a gap with the exact range.
 *
 * Time is a parameter (milliseconds on any clock that does not go back),
 * and so is the epoch, so that all of this is tested without sleeping.
 * With --data-dir the store is held: records are readable once on disk
 * (store.c releases them). docs/design.md, "The topic log". */
#ifndef VG_TOPICLOG_H
#define VG_TOPICLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "frame.h"
#include "status.h"

typedef struct vg_logs vg_logs;   /* a store: the logs sharing one budget and epoch */
typedef struct vg_tlog vg_tlog;   /* one topic's log */
typedef struct vg_chunk vg_chunk; /* opaque; readers hold pins on them */

typedef struct {
    uint64_t max_bytes; /* chunk capacity held by all logs together (0: no limit) */
    int64_t max_age_ms; /* drop a chunk once its newest record is older (0: no limit) */
    uint32_t min_chunk; /* first chunk of a log; doubles per chunk up to max_chunk */
    uint32_t max_chunk; /* a larger record gets a chunk of its own size; at
                           most a quarter of max_bytes, whatever is asked */
    bool held;          /* appended records reach readers only once released
                           (vg_tlog_release): the durable log's "stored first" */
} vg_logs_cfg;

/* Defaults: 512 MiB, no age limit, chunks of 4 KiB growing to 2 MiB less
 * the chunk's header (the largest one is a huge page, topiclog.c). */
void vg_logs_cfg_defaults(vg_logs_cfg *cfg);

/* A store with the given epoch (nonzero: the identity of this log). NULL
 * on out of memory. */
vg_logs *vg_logs_create(const vg_logs_cfg *cfg, uint64_t epoch);
/* Frees every log and chunk. No reader may hold a pin any more. */
void vg_logs_destroy(vg_logs *s);
uint64_t vg_logs_epoch(const vg_logs *s);

typedef struct {
    uint64_t bytes;    /* capacity of the chunks still in logs */
    uint64_t chunks;   /* chunks still in logs */
    uint64_t records;  /* records still in logs */
    uint64_t dropped;  /* records dropped by retention, ever */
    uint64_t logs;     /* topics with a log */
} vg_logs_stats;
void vg_logs_get_stats(vg_logs *s, vg_logs_stats *out);

/* The log of topic, created empty (next seq 1) if there is none; the log
 * lives as long as the store. NULL on out of memory. */
vg_tlog *vg_logs_get(vg_logs *s, const char *topic, size_t topic_len);
/* The log of topic if it has one, else NULL: a subscription to a topic
 * never published costs no log (the on_create hook finds it later). */
vg_tlog *vg_logs_find(vg_logs *s, const char *topic, size_t topic_len);

/* Calls fn(ud, log) on the thread that created a log, right after (holding
 * no lock of the store), before vg_logs_get returns it: before anything is
 * appended to it. Set once, before other threads use the store. */
void vg_logs_on_create(vg_logs *s, void (*fn)(void *ud, vg_tlog *t), void *ud);

/* The logs there are now in the order they were created, from the from'th
 * (0: all), in *out (malloc'd, the caller frees it; the logs live as long
 * as the store), *n of them; from + *n is where a later call takes up what
 * was created since. VG_OK or VG_ERR_NOMEM. */
vg_status vg_logs_list(vg_logs *s, size_t from, vg_tlog ***out, size_t *n);

/* How many logs there are (they are never removed): a mark for
 * vg_logs_list. */
size_t vg_logs_count(vg_logs *s);

/* Drops every chunk whose newest record is older than the age limit at
 * now_ms (appends keep the byte budget themselves; age needs a timer).
 * Takes the locks it needs; call it holding none. */
void vg_logs_expire(vg_logs *s, int64_t now_ms);

/* One message to append: its type and payload (the topic is the log's). */
typedef struct {
    vg_frame_type type;
    const void *payload;
    size_t payload_len;
} vg_tlog_msg;

/* Appends n messages in order at now_ms and reports the sequence number
 * of the first in *first_seq (the others follow it) and how many went in,
 * in *appended: all of them, or on VG_ERR_NOMEM a prefix (every chunk a
 * part needs is allocated before any of it is written, so the prefix is
 * empty unless the batch needs more than eight new chunks). If it started
 * a chunk, it then drops the oldest chunks of the store while it is over
 * its byte budget (a chunk just written included, if it alone is larger
 * than the budget). */
vg_status vg_tlog_append(vg_tlog *t, const vg_tlog_msg *msgs, size_t n, int64_t now_ms,
                         uint64_t *first_seq, size_t *appended);

/* Recovery: appends n messages read back from disk, numbered from
 * first_seq, as readable at once. Messages numbered below the log's next
 * are skipped (already there); a first_seq above it leaves a hole, which
 * readers crossing it learn as a gap. VG_ERR_NOMEM as vg_tlog_append. */
vg_status vg_tlog_restore(vg_tlog *t, uint64_t first_seq, const vg_tlog_msg *msgs, size_t n,
                          int64_t at_ms);

/* Recovery: the next message appended gets at least seq (numbers below it
 * that the log never had are a hole). */
void vg_tlog_skip_to(vg_tlog *t, uint64_t seq);

/* In a held store: records numbered below upto become readable. Readers
 * waiting for them are not woken here: the caller kicks them. */
void vg_tlog_release(vg_tlog *t, uint64_t upto);

/* The first record readers may not have yet: vg_tlog_next_seq unless
 * held records wait for vg_tlog_release. A NEW reader starts here. */
uint64_t vg_tlog_ready_seq(vg_tlog *t);

/* Whether a record numbered seq or later is readable: vg_tlog_ready_seq >
 * seq, read without the log's lock (a reader looks at many logs often). A
 * false answer may be stale by an append in progress, whose appender then
 * kicks the reader. */
bool vg_tlog_ready_after(vg_tlog *t, uint64_t seq);

/* vg_tlog_ready_seq read without the log's lock: as fresh as
 * vg_tlog_ready_after (for counting, not for reading). */
uint64_t vg_tlog_ready_hint(vg_tlog *t);

/* What one log holds now: first retained and next sequence numbers,
 * records and their bytes (MSG frames with sequence numbers, as sent to
 * version-2 subscribers). Takes the log's lock; walks its chunks. */
typedef struct {
    uint64_t first_seq, next_seq;
    uint64_t records, bytes;
} vg_tlog_info;
void vg_tlog_get_info(vg_tlog *t, vg_tlog_info *out);

/* The log's topic (not NUL-terminated). */
const char *vg_tlog_topic(const vg_tlog *t, uint32_t *len);

/* The sequence number the next appended message will get. */
uint64_t vg_tlog_next_seq(vg_tlog *t);
/* The oldest retained sequence number; vg_tlog_next_seq when none is. */
uint64_t vg_tlog_first_seq(vg_tlog *t);

/* A reader's position in one log: the next record to send, and how much of
 * it has been sent. Start it with vg_tlog_seek; end it with vg_tcursor_release.
 * Only its owner touches it. */
#define VG_TCURSOR_PINS 16
typedef struct {
    vg_tlog *log;
    uint64_t seq;       /* the record at the position */
    vg_chunk *at;       /* pinned chunk holding it; NULL: not yet appended */
    uint32_t off;       /* its offset in at */
    uint32_t into;      /* bytes of it already sent */
    /* what the last read offered, for vg_tcursor_consume */
    uint32_t at_end;                      /* offered bytes of at end here */
    vg_chunk *ahead[VG_TCURSOR_PINS];     /* later chunks, pinned */
    uint32_t ahead_end[VG_TCURSOR_PINS];  /* ... and where their offer ends */
    unsigned nahead;
} vg_tcursor;

typedef enum {
    VG_TSTART_NEW,   /* what is appended from now on */
    VG_TSTART_FIRST, /* the oldest retained record */
    VG_TSTART_SEQ,   /* the record with this sequence number */
    VG_TSTART_AGO,   /* the oldest record appended within the last value ms,
                        to within one chunk (see docs/design.md) */
} vg_tstart;

/* Records the reader cannot have: from..to inclusive (to - from + 1 of them). */
typedef struct {
    uint64_t from, to;
} vg_tgap;

/* Positions c in t. For VG_TSTART_SEQ, a value below the oldest retained
 * record starts at the oldest and reports the missing range in *gap
 * (else gap->from = 0); a value past vg_tlog_ready_seq is VG_ERR_ARG.
 * Returns VG_OK or VG_ERR_ARG. */
vg_status vg_tlog_seek(vg_tlog *t, vg_tcursor *c, vg_tstart start, uint64_t value,
                       int64_t now_ms, vg_tgap *gap);

/* What a read found. */
typedef struct {
    size_t iovcnt;   /* iovecs filled: whole records from the position on,
                        the first possibly starting inside a record (into) */
    size_t bytes;    /* their total */
    uint64_t records; /* records they end (a partly sent first one included) */
    size_t partial;  /* bytes that finish a record partly sent (the first
                        iovec's start); 0: the first starts a record */
    vg_tgap gap;     /* from = 0: none; else records dropped before the
                        position, which has moved past them */
} vg_tread;

/* Fills up to iovmax iovecs (at most VG_TCURSOR_PINS chunks) and about
 * max_bytes (never less than one record) from c's position, pinning the
 * chunks they point into until vg_tcursor_consume passes them. Nothing
 * filled and no gap: the reader has everything. Takes the log's lock once. */
void vg_tlog_read(vg_tcursor *c, struct iovec *iov, size_t iovmax, size_t max_bytes,
                  vg_tread *out);

/* Moves c on by n bytes of what the last read returned (a socket write may
 * take less than offered, ending inside a record). Returns the number of
 * records completed. No lock. */
uint64_t vg_tcursor_consume(vg_tcursor *c, size_t n);

/* Drops every pin c holds. */
void vg_tcursor_release(vg_tcursor *c);

#endif
