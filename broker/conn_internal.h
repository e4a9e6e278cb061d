/* What the files of one broker connection share: conn.c (life cycle and
 * thread), conn_frames.c (frames from the client), router.c (fan-out) and
 * registry.c (the list of connections). Not for other modules: they use
 * conn.h. */
#ifndef VG_CONN_INTERNAL_H
#define VG_CONN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "frame.h"
#include "link.h"
#include "outbox.h"
#include "proto.h"
#include "qgroup.h"
#include "rtt.h"
#include "sock.h"
#include "subindex.h"
#include "topiclog.h"

/* How long a publisher's thread may wait, per delivery, for room in the
 * outbox of a subscriber that is still draining (its socket took bytes within
 * this long; nats-server stalls a fast producer the same way). 5 ms lost
 * messages in the 4-to-1 benchmark: on 2 busy cores an owner thread's writes
 * can be 50 ms apart. A stopped reader is not waited for at all. */
#define VG_DELIVER_STALL_MS 50

/* A subscriber that dropped messages is reported recovered only once its
 * outbox has drained and no message was dropped for this long, so a reader
 * that is steadily a little too slow is one episode, not a flapping pair of
 * log lines every few seconds (redis holds its soft limit the same way). */
#define VG_DROP_HOLD_MS 10000


/* The topic the broker publishes its list of durable subscribers on, to a
 * connection that subscribes to it. */
#define VG_SYS_DURABLES "$SYS.durables"

/* What the monitor (conn_info.c) reads of a connection from another
 * thread: atomics, and the name and version, written at CONNECT before
 * ready is set (release) and read only after it is seen (acquire). */
typedef struct {
    atomic_bool ready;        /* CONNECT accepted */
    uint8_t version;
    uint32_t name_len;
    char *name;               /* as the client sent it, any bytes; malloc'd
                                 (NULL if empty), freed with the connection */
    _Atomic int64_t heard_ms; /* the last byte from the client (vg_now_ms) */
    _Atomic int64_t rtt_us;   /* the last PING -> PONG round trip; -1: none yet */
    _Atomic uint64_t lag;     /* records the logs hold past its cursors (on_tick) */
    _Atomic uint64_t msgs_in, bytes_in;   /* as vg_server_stats, this connection's */
    _Atomic uint64_t msgs_out, bytes_out;
    /* A leaf: the connection's thread holds it while it adds or removes a
     * subscription, the monitor while it reads them. */
    pthread_mutex_t mu;
} conn_mon;

/* A version-2 connection's cursor into one topic's log (reader.c): every
 * sid of the connection that covers the topic (names it, or a pattern
 * matching it) shares it, so each message reaches the connection once. */
typedef struct {
    char *topic;
    uint32_t len;
    uint64_t sid;    /* a sid of the connection covering it, named in its GAP frames */
    bool leaving;    /* no sid covers it any more: it only finishes a record */
    bool more;       /* may have records not yet written */
    vg_buf gap;      /* control frames (POS, GAP) to write before its next record */
    size_t gap_off;  /* ... bytes of them written */
    vg_tcursor cur;
} conn_reader;

/* A position a client named for a pattern subscription it is about to
 * renew (a POS frame before its SUB): topic resumes at next of epoch. */
typedef struct {
    uint64_t sid;
    char *topic;
    uint32_t len;
    uint64_t epoch, next;
} conn_pos;

/* How many POS frames a connection may have waiting for their SUB: enough
 * for a pattern over every topic of a big broker; beyond, ERR limit. */
#define VG_POS_MAX 100000

#define VG_RUN_LOGS 64 /* a power of two */

/* A version-2 subscriber a publisher's read reached (router.c). */
typedef struct {
    struct vg_conn *sub;
    vg_tlog *log;    /* the first run's log and seq: one run alone goes out */
    uint64_t first;  /* on the publisher's thread if the subscriber sleeps */
    bool many;       /* more than one run: it is woken instead */
} conn_defer;

/* A run of consecutive MSG frames with one topic, contiguous in the read
 * buffer: looked up once and copied into each subscriber's outbox at once. */
typedef struct {
    const char *topic;
    uint32_t topic_len;
    const uint8_t *start;
    size_t len;
    uint32_t frames;
    uint64_t payload; /* payload bytes of its frames */
    vg_tlog_msg *msgs; /* the frames' types and payloads, for the topic log */
    size_t msgs_cap;
} conn_run;

/* One reader's part of an offer: niov iovecs, the first partial bytes of
 * them finishing a frame begun before (reader.c). */
typedef struct {
    size_t reader;
    size_t niov;
    size_t partial;
} conn_offer_seg;

/* The readers' last offer to the sender, kept for taken() (the sender may
 * shorten its own copy of the iovecs). Allocated with the first reader:
 * a connection that reads nothing does not carry its 2.5 KiB. */
typedef struct {
    struct iovec iov[VG_SOURCE_IOV];
    conn_offer_seg seg[VG_SOURCE_IOV];
    size_t nseg;
} conn_offer;

struct vg_conn {
    atomic_int refs;
    vg_server *srv;
    uint64_t id;
    char addr[VG_ADDR_STRLEN];
    bool named;        /* CONNECT gave its name (mon.name): logged as name= */
    vg_outbox *outbox; /* publishers append here; the connection's thread drains it */
    vg_link *link;     /* the socket, owned by the connection's thread */
    int fd;            /* the accepted socket until the thread attaches it to link */
    int64_t born_ms;   /* accepted at; the handshake timeout runs from here */
    bool connected;    /* CONNECT accepted */
    uint8_t version;   /* negotiated: 1, or 2 (fixed before any SUB) */
    uint64_t publisher; /* version 2: the publisher identity (0: none) */
    uint64_t pub_next;  /* version 2: the publisher number of the next MSG */
    bool sent_fatal_err;

    vg_subindex *subs;        /* by sid and subject (subindex.h) */
    conn_pos *pos;            /* POS frames from the client, waiting for their SUB */
    size_t npos, pos_cap;
    bool warned_subs;         /* the max_subs limit was logged for this connection */
    uint32_t refusals_logged; /* bit per ERR code already logged at info */

    /* Slow-consumer episode: set by publishers when they drop for this
     * connection, cleared by its own thread after VG_DROP_HOLD_MS. */
    atomic_bool dropping;
    _Atomic int64_t last_drop_ms;
    uint64_t drops_before; /* outbox drop count when the episode began (own thread) */

    /* Version 2: cursors into the topic logs; publishers set kicked after
     * appending to a topic this connection reads (reader.c). */
    conn_reader *readers;
    size_t nreaders, readers_cap, rr;
    uint32_t *rslot;  /* readers by topic hash (reader.c): index + 1; 0: empty */
    size_t rslots;    /* a power of two, at least twice nreaders; 0: no index */
    size_t mid;       /* the reader inside a frame on the socket; SIZE_MAX: none */
    size_t lent_hint; /* the reader a lent write found last (outbox lock): a guess */
    atomic_bool kicked;
    /* Topics created since a subscription of this connection may cover them:
     * handed over by whichever thread created the log (vg_reader_fresh),
     * taken by this connection's thread, which starts reading them. */
    pthread_mutex_t fresh_mu;
    vg_tlog **fresh;
    size_t nfresh, fresh_cap;
    atomic_bool has_fresh;
    /* The sender's last offer: SIZE_MAX none, QUEUE_STREAM (reader.c) the
     * queue groups' inbox, READERS the readers in c->offer. */
    size_t offered;
    conn_offer *offer; /* NULL until the first reader */

    conn_run run;   /* the run being built from the current read */
    /* The logs of the topics this connection published to lately, by a
     * hash of the topic: a publisher cycling through many topics would
     * otherwise take the logs' table lock on every run. */
    vg_tlog *run_logs[VG_RUN_LOGS];
    /* With a store that holds records until synced (store.h): a PONG
     * confirms the MSG frames before its PING, so it waits until the log
     * position of the last block appended for them, store_lsn, is synced. */
    uint64_t store_lsn;
    uint32_t pongs_owed;      /* PINGs not answered yet, in order */
    uint64_t pong_lsn;        /* what the newest of them waits for */
    atomic_bool pong_waiting; /* registered with the store (holds a reference) */
    atomic_bool durable_check; /* another connection took one of our durables */
    struct vg_sublist_cache *match; /* this thread's match results (sublist.h); NULL: none yet */
    /* Version-2 subscribers this read's runs reached, woken once each at
     * the read's end (router.c): one wake-up or write per subscriber per
     * read, not per message. Each holds a reference. */
    conn_defer *defer;
    size_t ndefer, defer_cap;
    uint32_t *defer_slot;     /* open addressing: index + 1 into defer; 0: empty */
    size_t defer_slots;       /* a power of two, at least twice defer_cap */

    /* Queue groups (conn_queue.c): the inbox their pumps put this
     * connection's deliveries in, written as one more stream of the
     * sender's source (reader.c). */
    pthread_mutex_t qmu;  /* qpending and qclosed; a leaf */
    vg_buf qpending;      /* whole frames put by pumps */
    bool qclosed;         /* the connection is ending: puts fail */
    atomic_size_t qbytes; /* in qpending, plus unwritten in qout */
    atomic_bool qwant;    /* a pump found the inbox full */
    bool qpump_due;       /* own thread: ... and it has drained: pump its groups */
    atomic_bool qstamp;   /* a pump put deliveries: the ack wait is to stamp them */
    int64_t qexpire_at;   /* own thread: when the ack wait looks again */
    vg_buf qout;          /* own thread: taken from qpending, being written */
    size_t qoff, qframe_start, qframe_end; /* written so far; the frame qoff is in */
    bool qlast;           /* own thread: the sender's last offer was the inbox's */
    vg_qgroup **qscratch; /* groups matched by the run being delivered */
    size_t qscratch_cap;

    conn_mon mon;
    vg_rtt rtt;           /* own thread: the heartbeat's PINGs in flight */
    int64_t lag_due;      /* own thread: the next refresh of mon.lag */

    vg_conn *prev, *next; /* registry, under srv->mu */
};

/* conn.c: c's name for a log line's name=: quoted as vg_log_quote does,
 * in buf (VG_CONN_LOG_NAME bytes: longer names are cut), "-" before
 * CONNECT. */
#define VG_CONN_LOG_NAME (VG_NAME_MAX_LEN + 8)
const char *vg_conn_log_name(const vg_conn *c, char *buf);

/* conn_frames.c: answers a PING: at once, or once what came before it is
 * synced; conn_flush_pongs sends the owed ones whose sync came. */
void vg_conn_on_ping(vg_conn *c);
void vg_conn_flush_pongs(vg_conn *c);

/* conn_frames.c: drops subscription sid (subscription table, reader,
 * memory; not its durable, which the caller has dealt with). */
void vg_conn_remove_sub(vg_conn *c, uint64_t sid);

/* conn_durable.c: SUB with a durable name (s filled but not yet in
 * c->subs): claims it, taking it from another connection, and positions
 * the reader after its last acknowledged message, or as f asks for a new
 * one. As vg_reader_attach. */
vg_status vg_durable_attach(vg_conn *c, const vg_frame *f, conn_sub *s, uint64_t *next);
/* conn_durable.c: a SUB with a durable name on a pattern (s filled and in
 * c->subs): claims it as vg_durable_attach does, and reads every topic it
 * matches from after its position there; a topic with no position is one
 * that appeared since the durable was made, read from its start. A new
 * durable takes a position in every topic there is, as f asks. */
vg_status vg_durable_attach_pattern(vg_conn *c, const vg_frame *f, conn_sub *s);
/* conn_durable.c: an ACK frame. */
void vg_durable_on_ack(vg_conn *c, const vg_frame *f);
/* conn_durable.c: s leaves: the durable keeps its position, or is deleted. */
void vg_durable_detach(vg_conn *c, const conn_sub *s, bool forget);
/* conn_durable.c: ends the subscriptions whose durables were taken over. */
void vg_durable_check(vg_conn *c);
/* conn_durable.c: the connection ends: its durables keep their positions. */
void vg_durable_leave_all(vg_conn *c);
/* conn_durable.c: publishes the durables as JSON on $SYS.durables. */
void vg_durable_publish_list(vg_conn *c);

/* conn_queue.c: the inbox's life (vg_conn_start, vg_conn_release). */
void vg_queue_init(vg_conn *c);
void vg_queue_free(vg_conn *c);
/* conn_queue.c: SUB with a queue name (s in c->subs, its subject checked):
 * joins the group, s->group set; *next the group's position. As
 * vg_qgroup_join. */
vg_status vg_queue_attach(vg_conn *c, const vg_frame *f, conn_sub *s, uint64_t *next);
/* conn_queue.c: an ACK frame; false if its sid is not a queue member's
 * (conn_durable.c's then). */
bool vg_queue_on_ack(vg_conn *c, const vg_frame *f);
/* conn_queue.c: s leaves its group (if it is in one), forget as UNSUB's
 * delete flag. */
void vg_queue_detach(vg_conn *c, conn_sub *s, bool forget);
/* conn_queue.c: the connection ends: its inbox refuses puts (close), then
 * every member leaves, its messages in flight going to the others. */
void vg_queue_close(vg_conn *c);
void vg_queue_leave_all(vg_conn *c);
/* conn_queue.c, on_tick: the inbox drained after a pump found it full:
 * pumps c's groups; runs the ack wait (vg_qgroup_expire) for its members
 * when deliveries were put or its deadline came. Returns its next
 * deadline. */
int64_t vg_queue_tick(vg_conn *c, int64_t now);
/* conn_queue.c, reader.c's source: the inbox's unwritten frames (one
 * iovec; *partial as vg_source's), what was written of them, and whether
 * a frame of it is half written. Own thread. */
size_t vg_queue_offer(vg_conn *c, struct iovec *iov, size_t max, size_t *partial);
void vg_queue_taken(vg_conn *c, size_t n);
bool vg_queue_mid_frame(const vg_conn *c);
/* conn_queue.c: a run from first_seq was appended to log (topic), whose
 * match lists queue groups: the registry's groups that read it pump, if
 * pump (else the store's commit thread does once synced); a pattern group
 * starts reading it. scratch is the caller's. */
void vg_queue_route(vg_server *srv, const char *topic, uint32_t len, vg_tlog *log,
                    uint64_t first_seq, bool pump, vg_qgroup ***scratch, size_t *cap);

/* conn_frames.c: the link callbacks for frames from the client. */
void vg_conn_on_frame(void *ud, const vg_frame *f);
void vg_conn_on_read_end(void *ud);
void vg_conn_on_bad_input(void *ud, vg_status st, const char *why);

/* Queues ERR; ends the connection if the code is fatal (conn_frames.c). */
void vg_conn_send_err(vg_conn *c, vg_errcode code, const char *why, uint64_t sid);

/* router.c: whether MSG frame f continues the run being built (contiguous
 * in the read buffer, same topic). */
bool vg_router_extends(const vg_conn *c, const vg_frame *f);

/* router.c: adds a checked MSG frame to the run being built, delivering the
 * run first if the frame does not extend it. */
void vg_router_add(vg_conn *c, const vg_frame *f);

/* router.c: delivers the run being built, if any. */
void vg_router_flush(vg_conn *c);

/* router.c: the read ended: wakes (or writes to) each version-2
 * subscriber its runs reached, once, and drops their references. Also
 * when the connection ends. */
void vg_router_read_end(vg_conn *c);

/* reader.c: a version-2 SUB for sid on topic (checked) that no other sid
 * of c reads: positions a cursor as f asks (a 3-element SUB starts NEW),
 * queuing a GAP for a position in another epoch. *next gets the first
 * sequence number it will deliver. VG_OK, VG_ERR_ARG (the position is past
 * the end: ERR bad_position) or VG_ERR_NOMEM. Another sid on a topic
 * already read shares its cursor (*next: its position). A topic with no
 * log gets no cursor and no log (*next is 1): it is read from 1 once a
 * message creates its log (vg_reader_fresh, vg_reader_settle). */
vg_status vg_reader_attach(vg_conn *c, const vg_frame *f, const char *topic, uint32_t len,
                           uint64_t *next);

/* reader.c: after subject (literal or pattern) went into the table, reads
 * from 1 each log created since vg_logs_count returned mark (taken before
 * the attach) that it matches and c does not read: one made after the
 * attach looked but before the table had the subscription, which the
 * topic-created hook missed. Ends the connection when out of memory. */
void vg_reader_settle(vg_conn *c, const char *subject, uint32_t len, size_t mark);

/* reader.c: a version-2 SUB for sid on a pattern (checked): a cursor on
 * every existing topic it matches that c does not read yet, positioned as
 * f asks (SEQ with position 0: where the client's POS frames for sid say,
 * else from 1), each announced with a POS frame ahead of its records.
 * Topics created later join through vg_reader_fresh. VG_OK or VG_ERR_NOMEM. */
vg_status vg_reader_attach_pattern(vg_conn *c, const vg_frame *f);

/* reader.c: pattern sid reads log from start/value (VG_TSTART_SEQ past
 * the end: from what comes next), announced by a POS frame among the
 * connection's control frames, unless c reads log already. *next gets
 * where it starts. VG_OK or VG_ERR_NOMEM. */
vg_status vg_reader_attach_log(vg_conn *c, uint64_t sid, vg_tlog *log, vg_tstart start,
                               uint64_t value, uint64_t *next);

/* reader.c: a SUB's start as the topic log's. */
vg_tstart vg_tstart_of(vg_sub_start s);

/* reader.c: whether c reads topic for some sid already. */
bool vg_reader_reads(vg_conn *c, const char *topic, uint32_t len);

/* reader.c: a sid covering topic left (already gone from c->subs); the
 * cursor goes once no sid covers the topic, when a record it is writing is
 * whole. A pattern's sid: every topic it matched is looked at. */
void vg_reader_detach(vg_conn *c, const char *subject, uint32_t len, bool pattern);

/* reader.c: log was just created, and a subscription of c may cover it: c's
 * thread starts reading it from its first record. Any thread. */
void vg_reader_fresh(vg_conn *c, vg_tlog *log);

/* reader.c: a POS frame from the client: kept for its sid's SUB. */
void vg_reader_on_pos(vg_conn *c, const vg_frame *f);

/* reader.c: forgets the POS frames the client sent for sid. */
void vg_reader_drop_pos(vg_conn *c, uint64_t sid);

/* reader.c: the connection's cursors as its sender's source (sender.h):
 * records written straight from the log's chunks, GAP frames first where
 * retention skipped some. */
void vg_reader_source(vg_conn *c, vg_source *src);

/* reader.c: a publisher appended to a topic c reads: wakes c's thread
 * unless a wake-up is already owed (one per round of c's, not per run). */
void vg_reader_kick(vg_conn *c);

/* reader.c: a publisher appended a run from first_seq on topic, which c
 * reads. If c's thread sleeps with its socket lent (outbox.h) and its
 * cursor is right there, the run goes out on the publisher's thread at
 * once: one wake-up and one hop less for an isolated message, as for
 * version 1 (docs/performance.md). Otherwise, or for what is left, c is
 * kicked. */
void vg_reader_deliver(vg_conn *c, const char *topic, uint32_t len, uint64_t first_seq);

/* reader.c: the records the logs make readable past c's cursors, summed
 * (ones retention dropped included: they come as a GAP). Own thread; no
 * lock (each log's published ready position). */
uint64_t vg_reader_lag(vg_conn *c);

/* reader.c: drops every cursor (the connection is gone). */
void vg_reader_free_all(vg_conn *c);

/* registry.c: registers c and starts its thread (conn_main); on failure
 * unregisters it and returns the pthread_create error, or ESHUTDOWN if the
 * server is stopping. Accept thread only. */
int vg_registry_start(vg_conn *c, void *(*conn_main)(void *));

/* registry.c: removes c from the registry (its thread is ending). */
void vg_registry_remove(vg_conn *c);

#endif
