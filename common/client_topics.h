/* The client I/O thread's table of topics (issue 12): for each topic a
 * message may come on, its position in the topic's log (client_resume.h,
 * one per topic whatever the number of sids on it) and the sids it is
 * dispatched to, each with the state that belongs to one (sid, topic)
 * pair. Pure: no locks, no I/O; client_filter.c keeps it in step with the
 * subscriptions.
 *
 * Topics are found by hash (FNV-1a of the whole topic, open addressing),
 * so a message costs one lookup and a walk of its own sids, whatever the
 * number of subscriptions and topics. Members are kept sorted by sid: the
 * order in which a message is handed over. */
#ifndef VG_CLIENT_TOPICS_H
#define VG_CLIENT_TOPICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client_resume.h"
#include "status.h"

/* One sid a topic's messages go to, and what belongs to the pair. */
typedef struct {
    uint64_t sid;
    bool durable, queue;
    uint64_t processed;       /* durable or queue: the last seq whose on_msg returned */
    uint64_t processed_epoch; /* ... in this epoch (0: none yet) */
    uint64_t acked;           /* pattern durable or queue: the last seq acknowledged
                                 on this connection */
    bool owed;                /* queue: a message processed since the last ACK */
    uint64_t hi;              /* queue: the highest seq given on this connection */
    uint64_t seen;            /* queue: bit i set if hi - i was given (i < 64) */
} vg_client_member;

typedef struct {
    char *topic;
    size_t len;
    uint64_t hash;
    vg_resume pos;   /* for the plain members (a queue member's seqs are sparse) */
    bool connected;  /* pos has been told this connection's epoch */
    bool started;    /* an OK, a POS or a MSG on this connection has placed pos */
    vg_client_member *m;
    size_t nm, capm;
    size_t nplain;   /* members that are not queue members */
} vg_client_topic;

typedef struct {
    vg_client_topic *v;
    size_t n, cap;
    uint32_t *slot; /* index + 1 of a topic in v; 0: empty */
    size_t nslot;   /* a power of two, at least twice n */
} vg_client_topics;

/* The topic, or NULL. */
vg_client_topic *vg_topics_find(const vg_client_topics *tb, const char *topic, size_t len);

/* Adds topic (copied; not present) with no members and pos for a new
 * subscription from now; NULL when out of memory (the table is unchanged).
 * Pointers to other topics are invalid afterwards. */
vg_client_topic *vg_topics_add(vg_client_topics *tb, const char *topic, size_t len);

/* Removes every topic without members (their positions are forgotten).
 * Pointers to topics are invalid afterwards. */
void vg_topics_compact(vg_client_topics *tb);

/* Frees everything; tb is empty afterwards. */
void vg_topics_free(vg_client_topics *tb);

/* sid's member of t, or NULL. */
vg_client_member *vg_topic_member(const vg_client_topic *t, uint64_t sid);

/* Adds sid to t (in sid order) unless it is there; its pair state starts
 * at zero. VG_OK or VG_ERR_NOMEM (t unchanged). */
vg_status vg_topic_add_member(vg_client_topic *t, uint64_t sid, bool durable, bool queue);

/* Removes the members for which gone(arg, sid) is true. */
void vg_topic_drop_members(vg_client_topic *t, bool (*gone)(void *arg, uint64_t sid), void *arg);

/* The index of the first member of t with a sid above sid (t->nm if none). */
size_t vg_topic_after(const vg_client_topic *t, uint64_t sid);

/* A queue member was given seq on this connection: false if it was
 * already (one of the last 64 below the highest given), else it is noted. */
bool vg_member_first_time(vg_client_member *m, uint64_t seq);

#endif
