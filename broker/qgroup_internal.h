/* What qgroup.c (a group's bookkeeping and pump) and qgroups.c (the
 * registry) share. Not for other modules: they use qgroup.h. */
#ifndef VG_QGROUP_INTERNAL_H
#define VG_QGROUP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "qgroup.h"

/* Messages of one topic (an index into the group's topics), from..to
 * inclusive. In a member's in-flight list, `at` is when its thread first
 * saw them handed out (vg_qgroup_expire; 0: not yet), for the ack wait. */
typedef struct {
    uint32_t topic;
    uint64_t from, to;
    int64_t at;
} qrange;

typedef struct {
    qrange *v;
    size_t n, cap;
} qranges;

typedef struct {
    void *member; /* retained */
    uint64_t sid;
    qranges fl;        /* in flight, in the order handed out */
    uint64_t inflight; /* messages in fl */
    uint64_t expired;  /* messages its ack wait took back since its last ACK: counted
                          as its load when choosing, so another member gets them */
    bool dead;         /* its inbox refused a batch: it is leaving */
} qmember;

typedef struct {
    vg_tlog *log;
    const char *topic; /* the log's (lives as long as the logs) */
    uint32_t len;
    uint64_t next;   /* the next seq to hand out from the log */
    vg_tcursor cur;  /* at next, when cur_ok */
    bool cur_ok;
    uint64_t stored; /* a durable group's last stored position */
    bool persisted;  /* ... which is in the store (else it is to be) */
    uint64_t lost;   /* records retention dropped before the group read them */
} qtopic;

/* A topic a pattern group is to start reading (set by publishers). */
typedef struct {
    vg_tlog *log;
    uint64_t first_seq;
} qlearn;

struct vg_qgroup {
    atomic_int refs;
    vg_qgroups *reg;
    char *queue, *subject, *durable, *name; /* name: durable's stored name; NULL if none */
    uint32_t queue_len, subject_len, durable_len, name_len;
    bool pattern;
    vg_qgroup *hnext; /* the registry's chain, under its lock */
    bool linked;      /* in the registry */

    pthread_mutex_t mu; /* everything below */
    atomic_bool again;  /* a pump was asked for while mu was held */
    qmember *m;
    size_t nm, mcap;
    qtopic *t;
    size_t nt, tcap;
    qranges redo; /* handed out to a member that left: served first */
    qranges gaps; /* what retention took before the group read it: a GAP
                     frame each, to the next member given a batch */
    vg_buf enc;   /* the batch being encoded */
    qranges batch;
    size_t rr_member, rr_topic;
    vg_qgroup_start start; /* a pattern group's, for the topics it learns */
    bool dirty;            /* a durable position is to be stored */

    pthread_mutex_t lmu; /* a leaf: learn and known, for publishers */
    qlearn *learn;
    size_t nlearn, learncap;
    vg_tlog **known; /* logs in t or in learn */
    size_t nknown, knowncap;
};

struct vg_qgroups {
    vg_logs *logs;
    vg_qgroups_cfg cfg;
    vg_qgroup_ops ops;
    pthread_rwlock_t lock;  /* the table and each group's linked/hnext */
    vg_qgroup **buckets;    /* literal subjects, by hash */
    size_t nbuckets, nliteral;
    vg_qgroup *patterns;    /* pattern groups, a list */
    atomic_size_t ngroups;
    _Atomic uint64_t redelivered; /* messages given back: a member left, or its ack wait */
    uint64_t seed;
};

/* qgroups.c: a new group (one reference, the caller's), not linked. NULL on
 * out of memory. */
vg_qgroup *vg_qgroup_new(vg_qgroups *r, const char *queue, size_t queue_len, const char *subject,
                         size_t subject_len, const char *durable, size_t durable_len,
                         bool pattern);
/* qgroup.c: adds member as sid (retaining it); for a literal group with no
 * topic yet, first positions its topic (log, the subject's, got before any
 * lock: creating a log runs the logs' hook) as start says (or its stored
 * position). Under the registry's write lock; does not pump (the caller
 * does, once it has let go of that lock). As vg_qgroup_join. */
vg_status vg_qgroup_add_member(vg_qgroup *g, void *member, uint64_t sid, vg_tlog *log,
                               const vg_qgroup_start *start, uint64_t *next);
/* qgroup.c: members now (locks g). */
size_t vg_qgroup_members(vg_qgroup *g, uint64_t *inflight);
/* qgroup.c: a publisher saw topic log t, from first_seq, for pattern
 * group g: g starts reading it if it does not yet. */
void vg_qgroup_learn(vg_qgroup *g, vg_tlog *t, uint64_t first_seq);

/* qgroups.c: g has no member left: unlinks it unless durable (and not
 * forget), under the registry's lock and g's. */
void vg_qgroups_maybe_unlink(vg_qgroups *r, vg_qgroup *g, bool forget);

#endif
