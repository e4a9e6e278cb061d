/* The vigil client connection, shared by pub and sub.
 *
 * A client owns one background I/O thread that connects, performs the
 * CONNECT/INFO handshake, (re)subscribes, writes queued publishes in large
 * batches, answers PINGs and hands received messages to a callback. The
 * application thread publishes into a bounded outbox and never touches the
 * socket. A connection found dead (EOF, error, or heartbeat silence) is
 * replaced with exponential backoff and full jitter; subscriptions are
 * renewed before any queued publish is sent. Callbacks run on the I/O thread and must not call back into the
 * client except vg_client_stats. */
#ifndef VG_CLIENT_H
#define VG_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "liveness.h"
#include "status.h"

typedef struct vg_client vg_client;

typedef struct {
    vg_frame_type type; /* VG_FRAME_MSG_TYPE1 or VG_FRAME_MSG_TYPE2 */
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
} vg_msg;

typedef struct {
    const char *servers; /* "HOST:PORT[,HOST:PORT...]" */
    const char *name;    /* sent in CONNECT, shown in the broker's log */
    const char *token;   /* sent in CONNECT if not NULL; must outlive the client */
    size_t max_buffer;   /* bytes of publishes queued before vg_client_publish waits */
    vg_keepalive keepalive;
    int64_t backoff_base_ms; /* reconnect delays: full jitter over [0, min(max, base*2^n)] */
    int64_t backoff_max_ms;
    int64_t max_reconnects;  /* failed attempts in a row before giving up; -1: never */
    void *ud;
    /* Each received message; the pointers are valid during the call only. */
    void (*on_msg)(void *ud, const vg_msg *m);
    /* After the messages of one read from the socket (e.g. to flush stdout). */
    void (*on_batch_end)(void *ud);
    /* A subscription the broker refused (code is a vg_errcode). */
    void (*on_sub_error)(void *ud, const char *topic, uint64_t code, const char *reason);
    /* The client has given up for good (--max-reconnects reached, or the broker
 * refused it for a reason retrying cannot fix); no more callbacks follow. */
    void (*on_closed)(void *ud, const char *reason);
} vg_client_opts;

typedef struct {
    uint64_t published; /* messages accepted by vg_client_publish */
    uint64_t confirmed; /* ... that the broker acknowledged receiving (PING/PONG after them) */
    uint64_t unconfirmed; /* ... written to a connection that died before the broker
                             confirmed them: possibly lost (at-most-once) */
    uint64_t received;
} vg_client_stats;

/* Fills opts with defaults: VIGIL_SERVER from the environment or
 * 127.0.0.1:7222, the token in VIGIL_TOKEN if set, an 8 MiB buffer, heartbeats 15 s/5 s/3, backoff 0.2 s to
 * 10 s, retry for ever, no callbacks. */
void vg_client_opts_defaults(vg_client_opts *opts);

/* Validates opts (an unparsable server list is VG_ERR_ARG with *why set) and
 * starts the I/O thread, which connects in the background. */
vg_status vg_client_start(vg_client **out, const vg_client_opts *opts, const char **why);

/* Stops the I/O thread, closes the connection and frees everything. Queued
 * publishes that were not written are dropped: call vg_client_flush first. */
void vg_client_destroy(vg_client *c);

/* Waits until the client has completed a handshake with a broker (at least
 * once), so that vg_client_publish checks payloads against the broker's own
 * maximum. VG_OK, VG_ERR_TIMEOUT or VG_ERR_CLOSED. */
vg_status vg_client_wait_connected(vg_client *c, int timeout_ms);

/* Subscribes to topic, now and after every reconnect. Returns at once; the
 * broker's answer arrives later (a refusal through on_sub_error). *sid, if
 * not NULL, receives the id used by vg_client_unsubscribe. */
vg_status vg_client_subscribe(vg_client *c, const char *topic, uint64_t *sid);
vg_status vg_client_unsubscribe(vg_client *c, uint64_t sid);

/* Waits until the broker has accepted subscription sid (VG_OK) or refused it
 * (VG_ERR_REFUSED); VG_ERR_TIMEOUT, VG_ERR_CLOSED, or VG_ERR_ARG if unknown. */
vg_status vg_client_wait_subscribed(vg_client *c, uint64_t sid, int timeout_ms);

/* Queues a message. Waits up to timeout_ms (<0: for ever) for room when the
 * buffer is full. VG_ERR_BAD_TOPIC, VG_ERR_TOO_LARGE (payload above the
 * broker's maximum), VG_ERR_FULL (timed out), VG_ERR_CLOSED. */
vg_status vg_client_publish(vg_client *c, vg_frame_type type, const char *topic,
                            size_t topic_len, const void *payload, size_t payload_len,
                            int timeout_ms);

/* Waits until every message published so far is either confirmed by the
 * broker or written to a connection that died unconfirmed (stats say which). VG_OK, VG_ERR_TIMEOUT or VG_ERR_CLOSED. */
vg_status vg_client_flush(vg_client *c, int timeout_ms);

void vg_client_get_stats(vg_client *c, vg_client_stats *out);

#endif
