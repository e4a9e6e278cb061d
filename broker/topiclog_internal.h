/* What topiclog.c (the logs, appending, retention) and tcursor.c (reading
 * with cursors) share. Not for other modules: they use topiclog.h. */
#ifndef VG_TOPICLOG_INTERNAL_H
#define VG_TOPICLOG_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "frame.h"
#include "topiclog.h"

/* Locks: a log's mu, then the store's mu, never the other way round. A
 * chunk's bytes below its len are written once, under its log's mu, and
 * never change: readers send them with no lock, holding a pin. */

struct vg_chunk {
    atomic_uint refs;         /* one for being in a log, one per pin */
    vg_tlog *log;
    vg_chunk *next;           /* in the log; log->mu */
    vg_chunk *older, *newer;  /* in the store's creation order; store->mu */
    uint64_t first_seq;       /* of its first record */
    uint32_t count;           /* records; log->mu */
    uint32_t len;             /* bytes written; log->mu */
    uint32_t cap;
    uint32_t ready_len;       /* bytes readers may have; log->mu (== len unless held) */
    uint32_t ready_count;     /* records in them; log->mu */
    int64_t last_ms;          /* when its newest record was appended; log->mu */
    bool dropped;             /* out of the log; log->mu */
    atomic_bool open;         /* its log's tail, appended to: set under log->mu,
                                 read by retention under store->mu */
    uint8_t data[];
};

struct vg_tlog {
    pthread_mutex_t mu;
    vg_logs *store;
    vg_tlog *hnext;           /* hash chain; store->mu */
    uint64_t hash;
    vg_chunk *head, *tail;    /* mu */
    uint64_t next_seq;        /* mu */
    uint64_t ready_seq;       /* mu: the first record readers may not have yet */
    _Atomic uint64_t ready_pub; /* ready_seq, written under mu, read without it */
    vg_chunk *ready_at;       /* mu: pinned; the chunk holding ready_seq, or NULL */
    uint32_t next_cap;        /* mu: capacity of the next chunk */
    uint32_t topic_len;
    char topic[];
};

struct vg_logs {
    pthread_mutex_t mu;
    vg_logs_cfg cfg;
    uint64_t epoch;
    vg_tlog **table;          /* mu */
    size_t nbuckets, nlogs;   /* mu */
    vg_tlog **order;          /* every log, by creation (vg_logs_list); mu */
    size_t order_cap;         /* mu */
    vg_chunk *oldest, *newest; /* every chunk in a log, by creation; mu */
    uint64_t bytes, chunks;   /* mu */
    atomic_uint_fast64_t records, dropped;
    /* Huge chunks whose last pin went, kept for the next ones (their pages
     * are mapped already: a full log recycles its memory instead of
     * faulting in fresh, zeroed pages for every 2 MiB). pool_mu is a leaf. */
    pthread_mutex_t pool_mu;
    vg_chunk *pool;           /* pool_mu, linked through next */
    unsigned npool;           /* pool_mu */
    void (*on_create)(void *ud, vg_tlog *t); /* set before any other thread uses the store */
    void *on_create_ud;
};

/* A record's length at off in ch, its frame header included. */
static inline uint32_t vg_chunk_record_len(const vg_chunk *ch, uint32_t off)
{
    return VG_FRAME_HEADER + vg_be32(ch->data + off);
}

/* A pin keeps ch's bytes (a cursor's, a reader's iovecs). */
static inline void vg_chunk_pin(vg_chunk *ch)
{
    atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
}

/* Drops a pin or the log's reference; the last one frees ch (a huge
 * chunk may go to the store's pool). */
void vg_chunk_unpin(vg_chunk *ch);

#endif
