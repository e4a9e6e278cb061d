/* The vigil client connection, shared by pub and sub.
 *
 * A client owns one background I/O thread, the only thread that touches
 * its socket: it connects, performs the CONNECT/INFO handshake, renews
 * subscriptions, writes queued frames in large batches, answers PINGs and
 * hands received messages to a callback. Application threads publish,
 * subscribe and unsubscribe by appending frames to one bounded, ordered
 * outbox, so SUB, UNSUB and MSG leave the connection in the order they
 * were issued. A connection found dead (EOF, error, or heartbeat silence)
 * is replaced with exponential backoff and full jitter; subscriptions the
 * broker had are renewed ahead of everything still queued, each resuming
 * after the last message handed over (protocol version 2, which this
 * client requires of a broker: docs/protocol.md).
 *
 * Threads: every function may be called from any thread except where said.
 * Callbacks run on the I/O thread and must not call back into the client
 * except vg_client_stop_delivery, vg_client_get_stats, vg_client_publish with timeout 0,
 * vg_client_subscribe, vg_client_subscribe_from, vg_client_subscribe_durable,
 * vg_client_subscribe_queue and vg_client_unsubscribe.
 *
 * Durable subscriptions (vg_client_subscribe_durable): the broker keeps a
 * named subscriber's position per topic. A message counts as processed
 * when on_msg has returned for it without calling vg_client_stop_delivery.
 * The I/O thread acknowledges processed
 * messages with cumulative ACKs, one per durable subscription carrying the
 * highest seq processed (for a pattern, and for a queue group's member,
 * one per topic, naming it): at most once every ack_delay_ms, at once when
 * 1024 processed messages wait for an ACK, after each (re)subscription,
 * and, best effort, when vg_client_close or vg_client_destroy ends the
 * connection. ACKs are written only after on_batch_end has returned for
 * the read that brought their messages, so an application that flushes
 * its output there (as sub does) acknowledges only what it has flushed.
 * So a durable that comes back (the same name, in this process
 * or another) resumes after the last ACK: what was processed but not yet
 * acknowledged when a process died is delivered again (at least once
 * across processes; once within one process).
 *
 * Timeouts, everywhere: timeout_ms < 0 waits for ever, 0 does not wait. */
#ifndef VG_CLIENT_H
#define VG_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "client_resume.h"
#include "frame.h"
#include "liveness.h"
#include "log.h"
#include "status.h"

typedef struct vg_client vg_client;

/* ACKs go at once when this many processed durable messages wait for one. */
#define VG_ACK_BATCH 1024

typedef struct {
    vg_frame_type type; /* VG_FRAME_MSG_TYPE1 or VG_FRAME_MSG_TYPE2 */
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    uint64_t seq;   /* its number in the topic's log, from 1 */
    uint64_t epoch; /* the log's identity: resume from seq + 1 of this epoch */
    uint64_t sid;   /* the subscription it is handed to (0 only if the library ran out
                       of memory for its copy of the subscriptions) */
    unsigned copy;  /* 0 the first time this message is handed over; 1, 2, ... when
                       it is handed again, at once, to the other subscriptions whose
                       subject it matches too (an application that wants each message
                       once, as sub does, skips those) */
} vg_msg;

/* What on_connection reports. */
typedef enum {
    VG_CONN_CONNECTED,    /* the first handshake with a broker completed */
    VG_CONN_DISCONNECTED, /* a connection that had completed its handshake ended */
    VG_CONN_RECONNECTED,  /* a later handshake completed and every subscription is renewed */
} vg_conn_event;

typedef struct {
    const char *servers; /* "HOST:PORT[,HOST:PORT...]", resolved on every attempt */
    const char *name;    /* sent in CONNECT, shown in the broker's log */
    const char *token;   /* sent in CONNECT if not NULL; must outlive the client */
    size_t max_buffer;   /* bytes of publishes queued before vg_client_publish waits;
                            as many again of written ones kept to send again */
    uint64_t max_payload; /* the largest payload this client sends or accepts,
                             whatever a broker's INFO says */
    vg_keepalive keepalive;
    int64_t backoff_base_ms; /* reconnect delays: full jitter over [0, min(max, base*2^n)] */
    int64_t backoff_max_ms;
    int64_t max_reconnects;  /* failed attempts in a row before giving up; -1: never */
    int64_t ack_delay_ms;    /* the longest a processed durable message waits for its ACK
                                (default 20; 0: after each read from the socket) */
    void *ud;
    /* Each received message, once per subscription it is for that is not
     * unsubscribed (m->sid; m->copy says whether another had it first):
     * every subscription whose subject is its topic or a pattern matching
     * it, in sid order, or, for a queue group's delivery, the one member
     * the broker gave it to. The pointers are valid during the call only. */
    void (*on_msg)(void *ud, const vg_msg *m);
    /* After the messages of one read from the socket (e.g. to flush stdout). */
    void (*on_batch_end)(void *ud);
    /* Messages of topic the subscriptions to it will never receive (once
     * per range and subscription it concerns, gap->sid, gap->copy as
     * vg_msg's; gap->reason: VG_GAP_RETENTION, from..to dropped by the
     * broker's retention; VG_GAP_EPOCH, the broker lost its log and
     * everything from gap->from on in the old one, to = 0;
     * VG_GAP_UNANNOUNCED, a message skipped from..to with no word from the
     * broker). Messages after the gap follow. May be NULL. */
    void (*on_gap)(void *ud, const char *topic, size_t topic_len, const vg_gap *gap);
    /* A subscription the broker refused (code is a vg_errcode), or a
     * durable one another connection took over (code VG_E_DURABLE_TAKEN:
     * it has ended and is not renewed; vg_client_unsubscribe forgets it). */
    void (*on_sub_error)(void *ud, uint64_t sid, const char *topic, uint64_t code,
                         const char *reason);
    /* The client has given up for good (--max-reconnects reached, the
     * broker refused it for a reason retrying cannot fix, or the broker
     * speaks only protocol version 1: reason "version"); no more callbacks
     * follow, and publishing fails with VG_ERR_CLOSED. */
    void (*on_closed)(void *ud, const char *reason);
    /* Connection changes: server is the HOST:PORT in use; reason, for
     * VG_CONN_DISCONNECTED only (else NULL), is what ended it: "eof",
     * "heartbeat", "error", "protocol", "server_error", "shutdown", ... May
     * be NULL. */
    void (*on_connection)(void *ud, vg_conn_event ev, const char *server, const char *reason);
    /* The library's event lines (as vg_log formats them), up to log_level;
     * NULL (the default): the library logs nothing. Called on the I/O
     * thread, or on the calling thread for what a call reports. */
    vg_log_fn on_log;
    vg_log_level log_level;
} vg_client_opts;

/* Every message vg_client_publish accepted is in exactly one of the last
 * four counters: published = confirmed + unconfirmed + pending + unsent.
 * MSG frames written but not confirmed when a connection dies are sent
 * again on the next one (the newest, up to max_buffer bytes of them), and a
 * version-2 broker drops those it already has. */
typedef struct {
    uint64_t published;   /* messages accepted by vg_client_publish */
    uint64_t confirmed;   /* ... that the broker has in its log (a PONG after them,
                             or INFO's publisher_acked) */
    uint64_t unconfirmed; /* ... written, not confirmed, and never to be sent again
                             (beyond the max_buffer bytes kept when a connection
                             died, or still waiting when the client closed):
                             possibly lost */
    uint64_t pending;     /* ... written, not confirmed yet: on the current
                             connection, or kept to be sent again on the next */
    uint64_t unsent;      /* ... still queued: never written (dropped by vg_client_close) */
    uint64_t received;    /* messages handed to on_msg (once per subscription) */
    uint64_t duplicates;  /* messages received again after a resume, not handed over */
    uint64_t gaps;        /* gaps reported to on_gap (once each, whatever the number
                             of subscriptions it was reported to) */
    uint64_t missed;      /* messages in those gaps whose range is known (not EPOCH) */
} vg_client_stats;

/* Fills opts with defaults: VIGIL_SERVER from the environment or
 * 127.0.0.1:7222, the token in VIGIL_TOKEN if set, an 8 MiB buffer, 64 MiB
 * payloads at most, heartbeats 15 s/5 s/3, backoff 0.1 s to 0.5 s, retry
 * for ever, ACKs within 20 ms, no callbacks. */
void vg_client_opts_defaults(vg_client_opts *opts);

/* Validates opts (an unparsable server list or keep-alive is VG_ERR_ARG
 * with *why set) and starts the I/O thread, which connects in the
 * background. */
vg_status vg_client_start(vg_client **out, const vg_client_opts *opts, const char **why);

/* Asks the I/O thread to stop and close the connection, and waits up to
 * timeout_ms for it. VG_OK: stopped, and the counters are final (pending
 * frames count as unconfirmed, queued ones stay unsent and are dropped).
 * VG_ERR_TIMEOUT: a callback is still running (e.g. blocked writing);
 * call again or vg_client_destroy. Not from a callback. */
vg_status vg_client_close(vg_client *c, int timeout_ms);

/* Closes (waiting as long as it takes) and frees everything. Queued
 * publishes that were not written are dropped: call vg_client_flush first. */
void vg_client_destroy(vg_client *c);

/* Waits until the client has completed a handshake with a broker (at least
 * once), so that vg_client_publish checks payloads against the broker's own
 * maximum. VG_OK, VG_ERR_TIMEOUT or VG_ERR_CLOSED. */
vg_status vg_client_wait_connected(vg_client *c, int timeout_ms);

/* Subscribes to topic from now on (VG_SUB_NEW), now and after every
 * reconnect: the SUB is queued in order with publishes (never waiting for
 * buffer room) and the broker's answer arrives later (a refusal through
 * on_sub_error). topic may be a pattern (protocol version 2, issue 12):
 * '*' as a whole token matches one token, '>' as the whole last token one
 * or more, and a pattern that begins with either matches no "$SYS" topic.
 * *sid, if not NULL, receives the id used by vg_client_unsubscribe.
 * VG_ERR_BAD_TOPIC (neither a topic nor a valid pattern), VG_ERR_CLOSED,
 * VG_ERR_NOMEM. */
vg_status vg_client_subscribe(vg_client *c, const char *topic, uint64_t *sid);

/* The same, starting where start says: VG_SUB_FIRST, the oldest message
 * retained; VG_SUB_SEQ, sequence number position (>= 1) of log epoch (0:
 * the broker's current one); VG_SUB_AGO, what was appended within the last
 * position ms (epoch 0); epoch and position are 0 for NEW and FIRST. The
 * client keeps one position per topic: a reconnect resumes after the last
 * message handed over, whatever the start, and a second subscription to a
 * topic already subscribed shares its position (its start is ignored, as
 * the broker ignores it). A pattern keeps one position per topic it has
 * received (or been told of) and resumes each; it starts NEW, FIRST or AGO
 * for every topic (sequence numbers are per topic: VG_SUB_SEQ is refused).
 * VG_ERR_ARG for a start that breaks these rules. */
vg_status vg_client_subscribe_from(vg_client *c, const char *topic, vg_sub_start start,
                                   uint64_t epoch, uint64_t position, uint64_t *sid);

/* From on_msg only: the message being handled is not processed after all,
 * and on_msg gets no more, so none of them is acknowledged to a durable:
 * for an application that is stopping (sub after --count N or a signal),
 * whose unhandled messages must go to its successor. */
void vg_client_stop_delivery(vg_client *c);

/* A durable subscription to topic named name (1 to 64 bytes of
 * [A-Za-z0-9_.-]): if the broker has durable name for topic, delivery
 * resumes after its last acknowledged message and start is ignored; if
 * not, it is created at start (as vg_client_subscribe_from). Every
 * reconnect renews it with the same name. Acknowledgements: see the top of
 * this file. One name may be used for several topics, each its own
 * durable. VG_ERR_ARG for a bad name or start, else as
 * vg_client_subscribe_from. vg_client_unsubscribe detaches it (the broker
 * keeps the durable): an ACK still owed goes ahead of the UNSUB only if the
 * UNSUB waits in the queue for the next ACK round; otherwise its messages
 * are delivered again to the next subscriber with the name.
 * vg_client_delete_durable deletes it. */
vg_status vg_client_subscribe_durable(vg_client *c, const char *topic, const char *name,
                                      vg_sub_start start, uint64_t epoch, uint64_t position,
                                      uint64_t *sid);

/* A member of queue group queue (1 to 64 bytes of [A-Za-z0-9_.-]) on
 * subject (a topic or a pattern): the broker gives each message of the
 * subject to one member of the group, so on_msg gets a sparse subset of
 * each topic's sequence numbers (no gap is reported for the others, and
 * the topic's position is not used). A message given to this member again
 * on the same connection (the highest seq of its topic given to it, or
 * one of the 63 below) is dropped as a duplicate. Processed messages are acknowledged as a
 * durable's are (top of this file), cumulatively per topic. durable, if
 * not NULL (a name as for vg_client_subscribe_durable), makes it a durable
 * queue group, whose position the broker keeps as it keeps a durable's;
 * start, epoch and position apply when the broker creates the
 * group (as vg_client_subscribe_from, SEQ only on a topic). Every
 * reconnect renews the membership with the same SUB. VG_ERR_ARG for a bad
 * name or start, else as vg_client_subscribe_from; vg_client_unsubscribe
 * leaves the group, vg_client_delete_durable also deletes a durable one. */
vg_status vg_client_subscribe_queue(vg_client *c, const char *subject, const char *queue,
                                    const char *durable, vg_sub_start start, uint64_t epoch,
                                    uint64_t position, uint64_t *sid);

/* Ends durable subscription sid as vg_client_unsubscribe does and deletes
 * the durable on the broker (UNSUB with delete), then waits up to
 * timeout_ms for the broker's answer. VG_OK: deleted; VG_ERR_REFUSED: the
 * broker refused, or never had the subscription (it was refused or taken
 * over); VG_ERR_IO: the connection ended before the answer (the deletion
 * may or may not have happened); VG_ERR_TIMEOUT; VG_ERR_CLOSED; VG_ERR_ARG
 * if sid is not a durable subscription or is already unsubscribed. Not
 * from a callback. */
vg_status vg_client_delete_durable(vg_client *c, uint64_t sid, int timeout_ms);

/* Ends subscription sid: from the return on, no message is handed to
 * on_msg for it (a call already running may finish). The broker is told
 * only if it has the subscription. VG_ERR_ARG if sid is unknown or
 * already unsubscribed. */
vg_status vg_client_unsubscribe(vg_client *c, uint64_t sid);

/* Waits until the broker has accepted subscription sid (VG_OK) or refused it
 * (VG_ERR_REFUSED); VG_ERR_TIMEOUT, VG_ERR_CLOSED, or VG_ERR_ARG if unknown
 * or unsubscribed. */
vg_status vg_client_wait_subscribed(vg_client *c, uint64_t sid, int timeout_ms);

/* Queues a message. Waits up to timeout_ms for room when the buffer is
 * full. VG_ERR_ARG (not a MSG type), VG_ERR_BAD_TOPIC, VG_ERR_TOO_LARGE
 * (payload above the broker's maximum, or this client's), VG_ERR_FULL (no
 * room in time), VG_ERR_CLOSED (the client gave up or is closing). */
vg_status vg_client_publish(vg_client *c, vg_frame_type type, const char *topic,
                            size_t topic_len, const void *payload, size_t payload_len,
                            int timeout_ms);

/* Waits until every message published so far is either confirmed by the
 * broker or unconfirmed (stats say which): a message sent again after a
 * reconnect keeps it waiting. VG_OK, VG_ERR_TIMEOUT or VG_ERR_CLOSED. */
vg_status vg_client_flush(vg_client *c, int timeout_ms);

/* A consistent snapshot of the counters. */
void vg_client_get_stats(vg_client *c, vg_client_stats *out);

/* Why the client gave up for good ("auth", "max_reconnects", ...), or NULL
 * while it has not. */
const char *vg_client_closed_reason(vg_client *c);

#endif
