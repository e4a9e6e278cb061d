/* vigil client library: publish to and subscribe from a vigil broker.
 *
 * A vigil_client owns one background I/O thread, the only thread that
 * touches its socket. It connects, notices a dead connection by heartbeats
 * (PING/PONG) within a bound you choose, reconnects with backoff, renews
 * every subscription where it left off, and sends again what the broker
 * had not confirmed (the broker drops what it already has). docs/client.md
 * says what is guaranteed; in short: each subscription gets every message
 * of its topics once and in order per topic, or is told through the gap
 * handler exactly which sequence numbers it will never get.
 *
 * Threads. Every function may be called from any thread, except where a
 * comment says otherwise. Handlers run on the client's I/O thread, one at
 * a time; from a handler only these may be called on the same client:
 * vigil_publish with timeout 0, vigil_subscribe*, vigil_unsubscribe,
 * vigil_stop_delivery, vigil_client_stats and vigil_closed_reason. A
 * handler that blocks stops the client's I/O (and so its heartbeats).
 *
 * Memory. Strings passed in are copied unless said otherwise. Pointers
 * handed to a handler are valid during the call only.
 *
 * Timeouts, everywhere: timeout_ms < 0 waits for ever, 0 does not wait.
 *
 * The library never writes to stdout or stderr and never exits the
 * process: it reports through return values, handlers and the log handler.
 * Link with `pkg-config --cflags --libs vigil`, or in CMake
 * find_package(vigil) and target_link_libraries(... vigil::vigil). */
#ifndef VIGIL_H
#define VIGIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define VIGIL_API __attribute__((visibility("default")))
#else
#define VIGIL_API
#endif

#define VIGIL_VERSION_MAJOR 0
#define VIGIL_VERSION_MINOR 1
#define VIGIL_VERSION_PATCH 0

/* "0.1.0": the library's version (may differ from the header's). */
VIGIL_API const char *vigil_version(void);

/* ---- status ---- */

typedef enum {
    VIGIL_OK = 0,
    VIGIL_ERR_ARG,       /* an argument or option is invalid */
    VIGIL_ERR_NOMEM,     /* out of memory; nothing was done */
    VIGIL_ERR_BAD_TOPIC, /* not a topic (publish), or neither a topic nor a pattern */
    VIGIL_ERR_TOO_LARGE, /* a payload above the broker's maximum or this client's */
    VIGIL_ERR_FULL,      /* no room in the publish buffer within the timeout */
    VIGIL_ERR_TIMEOUT,   /* what was waited for did not happen in time */
    VIGIL_ERR_CLOSED,    /* the client has given up for good, or is closing */
    VIGIL_ERR_REFUSED,   /* the broker refused (a subscription, a deletion) */
    VIGIL_ERR_IO,        /* the connection ended before the broker answered */
} vigil_status;

/* A static, human-readable description of s ("timed out", ...). */
VIGIL_API const char *vigil_status_str(vigil_status s);

/* ---- checking names before use ---- */

/* VIGIL_OK if topic is one vigil_publish takes (printable ASCII without
 * spaces, '.'-separated non-empty tokens, at most 1024 bytes, no '*' or
 * '>'), or with pattern != 0
 * one vigil_subscribe takes (a topic or a pattern); else
 * VIGIL_ERR_BAD_TOPIC with *why (if why is not NULL) saying why. A broker
 * may have tighter limits (its --max-topic-length). */
VIGIL_API vigil_status vigil_topic_check(const char *topic, int pattern, const char **why);

/* Non-zero if name is a valid durable or queue group name: 1 to 64 bytes
 * of [A-Za-z0-9_.-]. */
VIGIL_API int vigil_name_valid(const char *name);

/* ---- options ---- */

typedef struct vigil_options vigil_options;
typedef struct vigil_client vigil_client;
typedef struct vigil_msg vigil_msg;
typedef struct vigil_gap vigil_gap;

/* New options with the defaults: server $VIGIL_SERVER or 127.0.0.1:7222,
 * token $VIGIL_TOKEN if set, name "vigil-client", an 8 MiB publish buffer,
 * payloads up to 64 MiB, heartbeats 15 s / 5 s / 3 probes (a dead broker
 * found within 30 s), reconnect delays 0.1 s to 0.5 s for ever, ACKs
 * within 20 ms, no handlers, no logging. NULL if out of memory. Options
 * are copied by vigil_client_create: destroy or reuse them after. */
VIGIL_API vigil_options *vigil_options_create(void);
VIGIL_API void vigil_options_destroy(vigil_options *o);

/* "HOST:PORT[,HOST:PORT...]": resolved on every attempt, tried in order. */
VIGIL_API vigil_status vigil_options_set_servers(vigil_options *o, const char *servers);
/* Sent to the broker in CONNECT and shown in its log and monitoring; at most 128 bytes. */
VIGIL_API vigil_status vigil_options_set_name(vigil_options *o, const char *name);
/* The broker's auth token; NULL for none. */
VIGIL_API vigil_status vigil_options_set_token(vigil_options *o, const char *token);
/* Bytes of publishes queued before vigil_publish waits; as many again of
 * written ones are kept to be sent again after a reconnect. */
VIGIL_API vigil_status vigil_options_set_max_buffer(vigil_options *o, size_t bytes);
/* The largest payload this client sends or accepts, whatever the broker allows. */
VIGIL_API vigil_status vigil_options_set_max_payload(vigil_options *o, uint64_t bytes);
/* Heartbeats: after idle_ms without a byte from the broker, a PING every
 * interval_ms; probes unanswered PINGs end the connection. So a silent
 * broker is found dead within idle_ms + probes * interval_ms. idle_ms 0
 * turns heartbeats off (not advised: a dead path is then never noticed). */
VIGIL_API vigil_status vigil_options_set_heartbeat(vigil_options *o, int64_t idle_ms,
                                                   int64_t interval_ms, int probes);
/* Reconnect delays: full jitter over [0, min(max_ms, base_ms * 2^n)]; both positive. */
VIGIL_API vigil_status vigil_options_set_backoff(vigil_options *o, int64_t base_ms, int64_t max_ms);
/* Failed attempts in a row before the client gives up for good; -1: never. */
VIGIL_API vigil_status vigil_options_set_max_reconnects(vigil_options *o, int64_t attempts);
/* The longest a processed message of a durable or queue subscription
 * waits for its acknowledgement (0: after each read from the socket). */
VIGIL_API vigil_status vigil_options_set_ack_delay(vigil_options *o, int64_t ms);

/* Every message, once per subscription it is for (vigil_msg_sid). */
typedef void (*vigil_msg_handler)(void *ud, const vigil_msg *m);
/* Messages a subscription will never receive (vigil_gap_*); messages after them follow. */
typedef void (*vigil_gap_handler)(void *ud, const vigil_gap *g);
/* After the messages of one read from the socket: flush output here, and
 * acknowledgements of durable messages wait for it to return. */
typedef void (*vigil_batch_handler)(void *ud);
/* A subscription the broker refused, or a durable another connection took
 * over (it has ended and is not renewed). code: the broker's error code;
 * reason: its words ("permission", "durable_taken", ...). */
typedef void (*vigil_sub_error_handler)(void *ud, uint64_t sid, const char *topic, int code,
                                        const char *reason);

typedef enum {
    VIGIL_CONNECTED = 1,    /* the first handshake with a broker completed */
    VIGIL_DISCONNECTED = 2, /* a connection that had completed its handshake ended */
    VIGIL_RECONNECTED = 3,  /* a later handshake completed, every subscription renewed */
} vigil_conn_event;
/* server: the HOST:PORT in use. reason, for VIGIL_DISCONNECTED only (else
 * NULL): "eof", "heartbeat" (the broker stopped answering), "error",
 * "timeout", "slow_consumer", "stop" (vigil_close), or the broker's error
 * name ("storage", "auth", ...). */
typedef void (*vigil_conn_handler)(void *ud, vigil_conn_event ev, const char *server,
                                   const char *reason);
/* The client has given up for good (reason "max_reconnects", "auth",
 * "version", ...): no handler runs after it, publishing fails with
 * VIGIL_ERR_CLOSED. */
typedef void (*vigil_closed_handler)(void *ud, const char *reason);

typedef enum { VIGIL_LOG_ERROR, VIGIL_LOG_WARN, VIGIL_LOG_INFO, VIGIL_LOG_DEBUG } vigil_log_level;
/* One event line, "ts=... level=... event=... key=value ...", no newline. */
typedef void (*vigil_log_handler)(void *ud, vigil_log_level level, const char *line);

/* Handlers, each may be NULL (the default); ud is passed to every one. */
VIGIL_API void vigil_options_set_user_data(vigil_options *o, void *ud);
VIGIL_API void vigil_options_on_msg(vigil_options *o, vigil_msg_handler fn);
VIGIL_API void vigil_options_on_gap(vigil_options *o, vigil_gap_handler fn);
VIGIL_API void vigil_options_on_batch_end(vigil_options *o, vigil_batch_handler fn);
VIGIL_API void vigil_options_on_sub_error(vigil_options *o, vigil_sub_error_handler fn);
VIGIL_API void vigil_options_on_connection(vigil_options *o, vigil_conn_handler fn);
VIGIL_API void vigil_options_on_closed(vigil_options *o, vigil_closed_handler fn);
/* Lines up to level go to fn; without it the library logs nothing. */
VIGIL_API void vigil_options_on_log(vigil_options *o, vigil_log_handler fn, vigil_log_level level);

/* ---- the client ---- */

/* Checks the options and starts the I/O thread, which connects in the
 * background (vigil_wait_connected waits for it). VIGIL_ERR_ARG with *why
 * (if why is not NULL) set to a static explanation, VIGIL_ERR_NOMEM. */
VIGIL_API vigil_status vigil_client_create(vigil_client **out, const vigil_options *o,
                                           const char **why);

/* Stops the I/O thread and closes the connection, waiting up to timeout_ms
 * (for a handler still running). Queued publishes not yet written are
 * dropped (vigil_flush first). VIGIL_OK or VIGIL_ERR_TIMEOUT (call again,
 * or vigil_client_destroy). Not from a handler. */
VIGIL_API vigil_status vigil_close(vigil_client *c, int timeout_ms);

/* Closes, waiting as long as it takes, and frees the client. Not from a handler. */
VIGIL_API void vigil_client_destroy(vigil_client *c);

/* Waits for the first completed handshake with a broker. VIGIL_OK,
 * VIGIL_ERR_TIMEOUT, VIGIL_ERR_CLOSED. Not from a handler. */
VIGIL_API vigil_status vigil_wait_connected(vigil_client *c, int timeout_ms);

/* Why the client gave up for good, or NULL while it has not. */
VIGIL_API const char *vigil_closed_reason(vigil_client *c);

/* ---- publishing ---- */

/* Queues payload for topic (tokens separated by '.', no '*' or '>'),
 * waiting up to timeout_ms for buffer room. The message is confirmed once
 * the broker has it in its log (vigil_flush waits for that). VIGIL_ERR_BAD_TOPIC,
 * VIGIL_ERR_TOO_LARGE, VIGIL_ERR_FULL, VIGIL_ERR_CLOSED. */
VIGIL_API vigil_status vigil_publish(vigil_client *c, const char *topic, const void *payload,
                                     size_t len, int timeout_ms);

/* The same with the protocol's message type: 1 (MSG_TYPE1, what
 * vigil_publish sends) or 2 (MSG_TYPE2); subscribers see it as
 * vigil_msg_type. The broker treats both alike. VIGIL_ERR_ARG for another. */
VIGIL_API vigil_status vigil_publish_type(vigil_client *c, unsigned type, const char *topic,
                                          const void *payload, size_t len, int timeout_ms);

/* Waits until every message published so far is confirmed by the broker,
 * or known possibly lost (vigil_client_stats). VIGIL_OK, VIGIL_ERR_TIMEOUT,
 * VIGIL_ERR_CLOSED. Not from a handler. */
VIGIL_API vigil_status vigil_flush(vigil_client *c, int timeout_ms);

/* ---- subscribing ---- */

/* Where a subscription starts, the first time (after a reconnect it always
 * resumes after the last message handed over). */
typedef enum {
    VIGIL_START_NEW = 0,   /* messages published from now on */
    VIGIL_START_FIRST = 1, /* the oldest message the broker retains */
    VIGIL_START_SEQ = 2,   /* sequence number position of log epoch (0: the current one) */
    VIGIL_START_AGO = 3,   /* what was published within the last position ms */
} vigil_start;

/* Subscribes to subject from now on: a topic, or a pattern where '*' as a
 * whole token matches one token and '>' as the last token one or more
 * ("orders.*", "orders.>"). The broker's answer comes later: a refusal
 * reaches the sub_error handler; vigil_wait_subscribed waits for it. *sid,
 * if sid is not NULL, receives the subscription's id. VIGIL_ERR_BAD_TOPIC,
 * VIGIL_ERR_CLOSED, VIGIL_ERR_NOMEM. */
VIGIL_API vigil_status vigil_subscribe(vigil_client *c, const char *subject, uint64_t *sid);

/* The same, starting at start (epoch and position as vigil_start says; 0
 * for NEW and FIRST). VIGIL_START_SEQ is for a topic only (sequence numbers
 * are per topic). A second subscription to a topic shares the first's
 * position. VIGIL_ERR_ARG for a start that breaks these rules. */
VIGIL_API vigil_status vigil_subscribe_from(vigil_client *c, const char *subject,
                                            vigil_start start, uint64_t epoch, uint64_t position,
                                            uint64_t *sid);

/* A durable subscription named name (1 to 64 bytes of [A-Za-z0-9_.-]):
 * the broker keeps its position; if it exists, delivery resumes after its
 * last acknowledged message (start is ignored), else it is created at
 * start. A message is acknowledged once the msg handler has returned for
 * it (and the batch handler after it) without vigil_stop_delivery; what a
 * process had not acknowledged when it died goes to the next subscriber
 * with the name (at least once across processes). */
VIGIL_API vigil_status vigil_subscribe_durable(vigil_client *c, const char *subject,
                                               const char *name, vigil_start start, uint64_t epoch,
                                               uint64_t position, uint64_t *sid);

/* A member of queue group queue on subject: each message goes to one
 * member of the group; what a member took and did not acknowledge goes to
 * another if it dies. durable (a name, or NULL) keeps the group's position
 * on the broker across restarts; start applies when the group is created. */
VIGIL_API vigil_status vigil_subscribe_queue(vigil_client *c, const char *subject,
                                             const char *queue, const char *durable,
                                             vigil_start start, uint64_t epoch, uint64_t position,
                                             uint64_t *sid);

/* Waits until the broker accepted subscription sid (VIGIL_OK) or refused it
 * (VIGIL_ERR_REFUSED); VIGIL_ERR_TIMEOUT, VIGIL_ERR_CLOSED, VIGIL_ERR_ARG
 * (unknown sid). Not from a handler. */
VIGIL_API vigil_status vigil_wait_subscribed(vigil_client *c, uint64_t sid, int timeout_ms);

/* Ends subscription sid: once this returns no message is handed over for
 * it. A durable's position stays on the broker. VIGIL_ERR_ARG if unknown. */
VIGIL_API vigil_status vigil_unsubscribe(vigil_client *c, uint64_t sid);

/* Ends durable (or durable queue) subscription sid and deletes it on the
 * broker, waiting up to timeout_ms for the answer. VIGIL_OK, VIGIL_ERR_REFUSED,
 * VIGIL_ERR_IO (the connection ended first: it may or may not be deleted),
 * VIGIL_ERR_TIMEOUT, VIGIL_ERR_CLOSED, VIGIL_ERR_ARG. Not from a handler. */
VIGIL_API vigil_status vigil_delete_durable(vigil_client *c, uint64_t sid, int timeout_ms);

/* From the msg handler only: this message is not processed after all, and
 * no more are handed over, so none is acknowledged: for an application
 * that is stopping and whose unhandled messages belong to its successor. */
VIGIL_API void vigil_stop_delivery(vigil_client *c);

/* ---- what a handler is given ---- */

/* The message's topic (not NUL-terminated: *len bytes) and payload. */
VIGIL_API const char *vigil_msg_topic(const vigil_msg *m, size_t *len);
VIGIL_API const void *vigil_msg_payload(const vigil_msg *m, size_t *len);
/* Its number in the topic's log (from 1) and the log's identity: a
 * subscription started at (epoch, seq + 1) resumes right after it. */
VIGIL_API uint64_t vigil_msg_seq(const vigil_msg *m);
VIGIL_API uint64_t vigil_msg_epoch(const vigil_msg *m);
/* 1 or 2: the type it was published with (vigil_publish_type). */
VIGIL_API unsigned vigil_msg_type(const vigil_msg *m);
/* The subscription it is handed to. */
VIGIL_API uint64_t vigil_msg_sid(const vigil_msg *m);
/* 0 the first time the message is handed over; 1, 2, ... when handed again
 * at once to other subscriptions of this client that match it too. */
VIGIL_API unsigned vigil_msg_copy(const vigil_msg *m);

typedef enum {
    VIGIL_GAP_RETENTION = 1,   /* from..to were dropped by the broker's retention */
    VIGIL_GAP_EPOCH = 2,       /* the broker lost its log: everything from `from` on in
                                  the old one (to is 0: how many is unknown) */
    VIGIL_GAP_UNANNOUNCED = 3, /* a message skipped ahead with no word from the broker */
} vigil_gap_reason;

VIGIL_API const char *vigil_gap_topic(const vigil_gap *g, size_t *len);
VIGIL_API uint64_t vigil_gap_from(const vigil_gap *g);
VIGIL_API uint64_t vigil_gap_to(const vigil_gap *g);
VIGIL_API vigil_gap_reason vigil_gap_reason_of(const vigil_gap *g);
VIGIL_API uint64_t vigil_gap_sid(const vigil_gap *g);
VIGIL_API unsigned vigil_gap_copy(const vigil_gap *g);

/* ---- counters ---- */

/* Every message vigil_publish accepted is in exactly one of CONFIRMED,
 * UNCONFIRMED (written, never to be sent again: possibly lost), PENDING
 * (written, not confirmed yet) and UNSENT (still queued). */
typedef enum {
    VIGIL_STAT_PUBLISHED = 0,
    VIGIL_STAT_CONFIRMED,
    VIGIL_STAT_UNCONFIRMED,
    VIGIL_STAT_PENDING,
    VIGIL_STAT_UNSENT,
    VIGIL_STAT_RECEIVED,   /* messages handed to the msg handler */
    VIGIL_STAT_DUPLICATES, /* messages received again after a resume, not handed over */
    VIGIL_STAT_GAPS,       /* gaps reported */
    VIGIL_STAT_MISSED,     /* messages in those gaps whose range is known */
    VIGIL_STAT_COUNT,      /* grows in later versions */
} vigil_stat;

/* A consistent snapshot: out[i] for i < n and < VIGIL_STAT_COUNT (the
 * library's). Returns how many were filled. */
VIGIL_API size_t vigil_client_stats(vigil_client *c, uint64_t *out, size_t n);

#ifdef __cplusplus
}
#endif

#endif
