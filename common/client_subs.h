/* The client's subscriptions and what the broker knows of each: a pure
 * state machine (no locks, no I/O; the client calls it under its mutex).
 *
 * SUB and UNSUB frames travel in the same ordered stream as MSG frames, so
 * they leave the connection in the order the application issued them. The
 * machine learns from the client when each frame is completely written
 * (vg_subs_written), when the broker answers (vg_subs_answer: OK or ERR
 * with the sid, in order: a SUB's answer before its UNSUB's), and when a
 * connection is lost. A subscription whose SUB was written on a lost
 * connection is renewed with a SUB ahead of the stream on the next one
 * (vg_subs_renew); one whose SUB is still queued in the stream is not. An
 * UNSUB is only ever sent for a SUB the broker has seen.
 *
 *   QUEUED --written--> SENT --OK--> ACTIVE
 *     ^                   |  \--ERR--> REFUSED (kept until unsubscribed)
 *     |                 lost    ACTIVE --lost--> RENEW --renew--> SENT
 *   (stream)
 *
 * Unsubscribing marks the entry leaving (its messages are no longer
 * delivered) and queues an UNSUB unless the broker cannot have it (REFUSED,
 * RENEW), in which case the entry goes at once. The UNSUB's answer, or the
 * loss of the connection it was written on, removes the entry.
 *
 * A durable subscription (issue 11) also has a name, renewed with it, and
 * the last sequence number acknowledged on this connection (vg_subs_acks).
 * The broker may end one by itself (ERR durable_taken: vg_subs_taken); it
 * is then REFUSED, never renewed. Deleting one (vg_subs_remove_delete)
 * leaves an outcome for the caller who waits for the broker's answer.
 *
 * Issue 12: a subscription's subject may be a pattern, and a subscription
 * may belong to a queue group (a name, renewed with it; durable or not). */
#ifndef VG_CLIENT_SUBS_H
#define VG_CLIENT_SUBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "status.h"

typedef enum {
    VG_SUB_QUEUED,  /* SUB in the outgoing stream, not yet written */
    VG_SUB_SENT,    /* SUB written on this connection, no answer yet */
    VG_SUB_ACTIVE,  /* the broker answered OK */
    VG_SUB_RENEW,   /* its SUB was written on a connection that is gone */
    VG_SUB_REFUSED, /* the broker answered ERR; not retried */
} vg_sub_state;

typedef enum {
    VG_UNSUB_UNKNOWN, /* no such subscription, or already leaving */
    VG_UNSUB_DONE,    /* removed at once: the broker cannot have it */
    VG_UNSUB_SEND,    /* the caller must queue an UNSUB frame in the stream */
} vg_unsub_action;

typedef enum {
    VG_SUBEV_SUBSCRIBED,   /* OK for a first SUB */
    VG_SUBEV_RESUBSCRIBED, /* OK for a renewal */
    VG_SUBEV_REFUSED,      /* ERR for a SUB (first or renewal) */
    VG_SUBEV_UNSUBSCRIBED, /* the answer to an UNSUB: the entry is gone */
    VG_SUBEV_UNEXPECTED,   /* an answer for no SUB or UNSUB in flight */
} vg_sub_event;

/* Where a subscription asked to start (client.h, vg_client_subscribe_from). */
typedef struct {
    vg_sub_start start;
    uint64_t epoch, position;
} vg_sub_from;

typedef struct vg_subs vg_subs;

/* Returns NULL when out of memory. */
vg_subs *vg_subs_create(void);
void vg_subs_destroy(vg_subs *s);

/* A new subscription to topic (copied), QUEUED, starting at *from, with a
 * fresh sid (from 1, never reused). The caller queues its SUB frame. VG_OK
 * or VG_ERR_NOMEM. */
vg_status vg_subs_add(vg_subs *s, const char *topic, size_t len, const vg_sub_from *from,
                      uint64_t *sid);

/* The same, for a durable subscription named durable (copied; a valid
 * name, vg_durable_name_ok). */
vg_status vg_subs_add_durable(vg_subs *s, const char *topic, size_t len, const vg_sub_from *from,
                              const char *durable, size_t durable_len, uint64_t *sid);

/* The same, in queue group queue (copied; a valid name, as a durable's)
 * when queue is not NULL, durable if durable is not NULL. */
vg_status vg_subs_add_queue(vg_subs *s, const char *topic, size_t len, const vg_sub_from *from,
                            const char *durable, size_t durable_len, const char *queue,
                            size_t queue_len, uint64_t *sid);

/* Whether sid belongs to a queue group; *name and *len (if not NULL) then
 * point to the group's name, valid while the entry lives. */
bool vg_subs_queue(const vg_subs *s, uint64_t sid, const char **name, size_t *len);

/* Whether sid is a durable subscription; *name and *len (if not NULL) then
 * point to its name, valid while the entry lives. */
bool vg_subs_durable(const vg_subs *s, uint64_t sid, const char **name, size_t *len);

/* Whether sid's UNSUB deletes its durable (vg_subs_remove_delete). */
bool vg_subs_deleting(const vg_subs *s, uint64_t sid);

/* Forgets sid, just added, whose SUB frame could not be queued. */
void vg_subs_cancel(vg_subs *s, uint64_t sid);

/* The application unsubscribes sid: see vg_unsub_action. */
vg_unsub_action vg_subs_remove(vg_subs *s, uint64_t sid);

/* What became of a deletion (vg_subs_remove_delete). */
typedef enum {
    VG_DELETE_PENDING, /* no answer yet */
    VG_DELETE_OK,      /* the broker answered OK: the durable is gone */
    VG_DELETE_REFUSED, /* the broker answered ERR, or cannot have the subscription */
    VG_DELETE_LOST,    /* the connection ended before the answer: unknown */
} vg_delete_outcome;

/* The application unsubscribes durable sid and deletes the durable: as
 * vg_subs_remove, except that a subscription waiting for its renewal
 * (RENEW) is kept, so that the UNSUB the caller queues follows the renewal
 * on the next connection. VG_UNSUB_UNKNOWN also for a sid that is not
 * durable. The outcome is then kept for vg_subs_delete_outcome. */
vg_unsub_action vg_subs_remove_delete(vg_subs *s, uint64_t sid);

/* The outcome of sid's deletion; once it is not PENDING it is forgotten
 * (asked again: REFUSED). */
vg_delete_outcome vg_subs_delete_outcome(vg_subs *s, uint64_t sid);

/* ERR durable_taken for sid: a durable subscription, not leaving, that the
 * broker has (SENT or ACTIVE) becomes REFUSED (never renewed, delivers
 * nothing). False (nothing changed) otherwise. The topic and the name are
 * copied as vg_subs_answer copies the topic. */
bool vg_subs_taken(vg_subs *s, uint64_t sid, char *topic, size_t cap, char *durable,
                   size_t dcap);

/* Calls fn for each durable or queue subscription an ACK may be sent for on this
 * connection: its SUB written here (SENT or ACTIVE), not refused, and not
 * leaving unless its UNSUB is still queued (an ACK goes ahead of it).
 * *acked is the last seq acknowledged on this connection (0 after a loss),
 * for fn to raise. Stops at fn's first failure and returns it. */
vg_status vg_subs_acks(vg_subs *s,
                       vg_status (*fn)(void *arg, uint64_t sid, const char *topic, size_t len,
                                       uint64_t *acked),
                       void *arg);

/* A SUB or UNSUB frame for sid (type VG_FRAME_SUB or VG_FRAME_UNSUB) from
 * the stream was completely written on the current connection. */
void vg_subs_written(vg_subs *s, vg_frame_type type, uint64_t sid);

/* The broker answered OK (ok) or a non-fatal ERR for sid. The entry's topic
 * is copied into topic (cap bytes, NUL-terminated, truncated) for the log;
 * "" if there is no such entry. */
vg_sub_event vg_subs_answer(vg_subs *s, uint64_t sid, bool ok, char *topic, size_t cap);

/* The connection is gone: what it had is forgotten by the broker. */
void vg_subs_lost(vg_subs *s);

/* On a new connection, after the handshake: calls emit for every
 * subscription to renew (it queues a SUB ahead of the stream); stops at the
 * first failure and returns it. *count receives the renewals emitted. */
vg_status vg_subs_renew(vg_subs *s, vg_status (*emit)(void *arg, uint64_t sid, const char *topic,
                                                      size_t len),
                        void *arg, unsigned *count);

/* Renewals emitted on this connection whose answer has not come yet. */
unsigned vg_subs_renewing(const vg_subs *s);

/* Whether a message on topic is for the application: some subscription to
 * it is neither leaving nor refused. */
bool vg_subs_deliverable(const vg_subs *s, const char *topic, size_t len);

/* One delivering subscription, as vg_subs_each_sid shows it; the subject
 * is valid during the call only. */
typedef struct {
    uint64_t sid;
    const char *subject;
    size_t len;
    vg_sub_from from;
    bool durable, queue;
} vg_sub_view;

/* Calls fn for each subscription that is neither leaving nor refused (the
 * ones whose messages go to the application); stops at fn's first failure
 * and returns it. */
vg_status vg_subs_each_sid(const vg_subs *s, vg_status (*fn)(void *arg, const vg_sub_view *v),
                           void *arg);

/* The state of sid; false if there is no such subscription or it is leaving. */
bool vg_subs_state(const vg_subs *s, uint64_t sid, vg_sub_state *state);

/* Subscriptions held, leaving ones included. */
size_t vg_subs_count(const vg_subs *s);

#endif
