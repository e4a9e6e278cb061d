/* Queue groups: the members of a group share its topics' messages, one
 * member each (docs/design.md, "Queue groups").
 *
 * A group is (queue name, subject, durable name): its members are
 * (connection, sid) pairs, opaque here. It reads each topic's log itself,
 * with its own position `next` per topic, and a pump hands the records
 * from `next` up to the log's ready mark (so with a store only synced
 * records go out) to its members, as 5-element MSG frames
 * [type, topic, payload, seq, sid] put into each member's inbox. Each
 * batch goes to the member with the fewest messages in flight among those
 * with room (in flight below max_inflight and the inbox taking more): a
 * member that does not keep up gets fewer. When none has room the records
 * wait in the log; nothing is dropped but what retention takes, which the
 * next member given a batch is told by a GAP frame naming its sid.
 *
 * A member's ACK for a topic is cumulative over the messages of that topic
 * given to it, in the order given (vg_qgroup_ack). A member that leaves gives its unacknowledged messages back:
 * they go first, at once, to the others (the redelivery queue). The floor
 * of a topic is the lowest seq nobody has acknowledged; a durable group
 * stores it (through ops.persist) and resumes there when created again
 * (ops.claim), so after a restart the messages above the floor that were
 * acknowledged out of order may be delivered again.
 *
 * Locks: the registry's rwlock, then a group's mutex, then (leaves) a
 * topic log's lock and a member's inbox (ops.put); never the other way.
 * No socket I/O under any of them; ops.wake and ops.persist run with no
 * group lock held. A pump never waits for a group's lock: if another
 * thread holds it, that thread pumps again before it lets go. */
#ifndef VG_QGROUP_H
#define VG_QGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "status.h"
#include "topiclog.h"

typedef struct vg_qgroups vg_qgroups; /* the registry */
typedef struct vg_qgroup vg_qgroup;   /* one group */

/* What the registry needs from its users. member is what joined (a
 * connection); ud is the ops' own. */
typedef struct {
    /* Whether member's inbox takes more now (called under the group's lock). */
    bool (*room)(void *member);
    /* Appends len bytes of n whole frames to member's inbox, never waiting
     * (under the group's lock: a leaf, no I/O). VG_OK, or an error: the
     * member cannot take them (it is leaving, or out of memory). */
    vg_status (*put)(void *member, const uint8_t *frames, size_t len, uint32_t n);
    /* Wakes member's thread for what was put (no lock held). */
    void (*wake)(void *member);
    void (*retain)(void *member);
    void (*release)(void *member);
    /* Durable groups: the stored position (last acknowledged seq) of name
     * on topic, claimed by group; true if there was one. NULL: none. */
    bool (*claim)(void *ud, const char *name, size_t name_len, const char *topic,
                  size_t topic_len, void *group, uint64_t *acked);
    /* Stores acked as name's position on topic (no group lock held). */
    void (*persist)(void *ud, const char *name, size_t name_len, const char *topic,
                    size_t topic_len, void *group, uint64_t acked);
    /* group lets go of name on topic; forget also deletes the position. */
    void (*unclaim)(void *ud, const char *name, size_t name_len, const char *topic,
                    size_t topic_len, void *group, bool forget);
    void *ud;
} vg_qgroup_ops;

typedef struct {
    uint32_t max_inflight; /* unacknowledged messages per member (JetStream's MaxAckPending) */
    uint32_t batch;        /* messages handed to one member at a time, at most */
    uint32_t pump_max;     /* messages one pump hands out before it lets others in */
} vg_qgroups_cfg;

/* 1024 in flight, batches of 16, 4096 per pump. */
void vg_qgroups_cfg_defaults(vg_qgroups_cfg *cfg);

/* A registry over logs (whose logs outlive it). NULL on out of memory. */
vg_qgroups *vg_qgroups_create(vg_logs *logs, const vg_qgroups_cfg *cfg, const vg_qgroup_ops *ops);
/* Frees the registry and every group left; no member may remain. */
void vg_qgroups_destroy(vg_qgroups *r);

/* How a group's topic starts when the group first reads it. */
typedef struct {
    vg_tstart start; /* NEW, FIRST, SEQ, AGO */
    uint64_t value;  /* SEQ: the seq; AGO: milliseconds */
    int64_t now_ms;
} vg_qgroup_start;

/* member joins as sid the group (queue, subject, durable; durable NULL or
 * empty: not durable), created if there is none: a literal subject's topic
 * starts as `start` says for a new group, after its stored position for a
 * durable one that has one, or at the group's position for a group that
 * exists. subject is a checked topic or pattern. *group gets the group
 * (the caller holds a reference until vg_qgroup_leave) and *next its
 * position on the subject's topic (0 for a pattern). Retains member.
 * VG_OK, VG_ERR_ARG (start SEQ past the log's end) or VG_ERR_NOMEM. */
vg_status vg_qgroup_join(vg_qgroups *r, const char *queue, size_t queue_len, const char *subject,
                         size_t subject_len, const char *durable, size_t durable_len, void *member,
                         uint64_t sid, const vg_qgroup_start *start, vg_qgroup **group,
                         uint64_t *next);

/* member's sid leaves g: its messages in flight are handed to the other
 * members at once. forget, for a durable group, deletes its stored
 * positions once it has no members left. Drops the caller's reference on g
 * and the group's on member. */
void vg_qgroup_leave(vg_qgroup *g, void *member, uint64_t sid, bool forget);

/* ACK from member's sid: it has processed its messages of topic up to and
 * including seq, in the order it received them: that one and every one of
 * topic handed to it before are done (when no message was handed out
 * again, the order is seq's: every one with seq <= seq). A seq not in
 * flight to it does nothing. Pumps (room was freed). false if topic is not
 * one of g's. */
bool vg_qgroup_ack(vg_qgroup *g, void *member, uint64_t sid, const char *topic, size_t topic_len,
                   uint64_t seq);

/* The ack wait, for member's sid, from its own thread: stamps the
 * messages handed to it since its last call with now_ms, and gives back
 * those stamped wait_ms or more ago and still not acknowledged: they go,
 * first, to the other members (this one counts them as its load until it
 * acknowledges again, so it gets them again only if it is the only member
 * with room). Returns when to call again for what it has stamped
 * (INT64_MAX: nothing, or wait_ms 0: no ack wait); what is handed to it
 * later is stamped by the next call, which its owner makes when its inbox
 * is given them. Pumps if it gave any back. */
int64_t vg_qgroup_expire(vg_qgroup *g, void *member, uint64_t sid, int64_t now_ms,
                         int64_t wait_ms);

/* Hands out what there is to hand out, unless another thread is doing it
 * (which then goes on): from publishers after appending, the store's
 * commit thread after releasing, a member whose inbox has room again. */
void vg_qgroup_pump(vg_qgroup *g);

/* The groups whose subject matches topic, each retained, in *scratch
 * (grown as needed); *count how many. Shared lock only. VG_ERR_NOMEM:
 * none. A pattern group that does not read topic yet starts to, at
 * first_seq (or its stored position), with log t; first_seq 0 teaches
 * nothing (the commit thread, which knows no run). */
vg_status vg_qgroups_match(vg_qgroups *r, const char *topic, size_t len, vg_tlog *t,
                           uint64_t first_seq, vg_qgroup ***scratch, size_t *cap, size_t *count);

/* Whether there is any group (a relaxed load: publishers skip the lookup). */
bool vg_qgroups_any(vg_qgroups *r);

/* References on a group: the registry holds one while it is linked, each
 * member's subscription one, a publisher one while it pumps. The last
 * release frees it (its cursors' pins go then). */
void vg_qgroup_retain(vg_qgroup *g);
void vg_qgroup_release(vg_qgroup *g);

/* A topic's state in g, for tests and $SYS.stats. */
typedef struct {
    uint64_t next;     /* next seq to hand out from the log */
    uint64_t floor;    /* lowest seq not acknowledged (all below are done) */
    uint64_t redo;     /* messages waiting to be handed out again */
    uint64_t inflight; /* messages handed out, not acknowledged */
} vg_qgroup_topic_info;

/* false if g does not read topic. */
bool vg_qgroup_topic(vg_qgroup *g, const char *topic, size_t len, vg_qgroup_topic_info *out);

/* member's sid's messages in flight in g (0 if not a member). */
uint64_t vg_qgroup_inflight(vg_qgroup *g, void *member, uint64_t sid);

/* Groups and members now, for $SYS.stats. */
void vg_qgroups_counts(vg_qgroups *r, size_t *groups, size_t *members);

/* Messages given back to be handed out again since the registry was made:
 * a member left with them in flight, or held them past the ack wait. */
uint64_t vg_qgroups_redelivered(vg_qgroups *r);

/* Appends a JSON array of at most max groups, each
 * {"queue":…,"subject":…,"durable":…,"members":N,"inflight":N}, to out. */
vg_status vg_qgroups_json(vg_qgroups *r, vg_buf *out, size_t max);

#endif
