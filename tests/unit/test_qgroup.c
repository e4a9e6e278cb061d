/* Queue groups (broker/qgroup.c, qgroups.c) over real topic logs, with
 * fake members whose inboxes are buffers: balance across members (one that
 * never acknowledges gets its cap and no more), failover of what a leaving
 * member had in flight (nothing lost, nothing handed to two live members),
 * ack floors, a held log (nothing beyond the ready mark), a full inbox,
 * an inbox that refuses a batch, durable positions stored and resumed,
 * pattern groups learning topics, and the registry's counts. Nothing here
 * sleeps; no thread is started. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qgroup.h"
#include "topiclog.h"

#define EPOCH 0x5eed5eedu
#define MAXSEQ 20000

/* ---- fake members ---- */

typedef struct {
    int refs;
    bool full;    /* room() says no */
    bool closed;  /* put() refuses */
    uint64_t got; /* frames received */
    uint64_t last_seq;
    uint64_t last_sid;
    uint32_t wakes;
    uint8_t seen[MAXSEQ + 1]; /* times each seq arrived */
    uint64_t order[MAXSEQ];   /* seqs in the order they arrived */
} fake;

static bool f_room(void *m) { return !((fake *)m)->full; }

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* A 5-element MSG ends with seq and sid, each 0xcf and 8 bytes. */
static vg_status f_put(void *m, const uint8_t *frames, size_t len, uint32_t n)
{
    fake *f = m;
    if (f->closed)
        return VG_ERR_CLOSED;
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        cr_assert(off + 4 <= len);
        size_t flen = 4 + ((size_t)frames[off] << 24 | (size_t)frames[off + 1] << 16 |
                           (size_t)frames[off + 2] << 8 | frames[off + 3]);
        cr_assert(off + flen <= len);
        const uint8_t *end = frames + off + flen;
        cr_assert_eq(frames[off + 4], 0x95, "a 5-element MSG");
        cr_assert_eq(end[-18], 0xcf);
        cr_assert_eq(end[-9], 0xcf);
        uint64_t seq = be64(end - 17), sid = be64(end - 8);
        cr_assert(seq >= 1 && seq <= MAXSEQ);
        f->seen[seq]++;
        cr_assert(f->got < MAXSEQ);
        f->order[f->got] = seq;
        f->last_seq = seq;
        f->last_sid = sid;
        f->got++;
        off += flen;
    }
    cr_assert_eq(off, len);
    return VG_OK;
}

static void f_wake(void *m) { ((fake *)m)->wakes++; }
static void f_retain(void *m) { ((fake *)m)->refs++; }
static void f_release(void *m) { ((fake *)m)->refs--; }

/* A durable store: one entry per (name, topic). */
static struct {
    char name[128], topic[64];
    bool exists;
    uint64_t acked;
    int persists, claims, forgets;
} store;

static bool s_claim(void *ud, const char *name, size_t nl, const char *topic, size_t tl,
                    void *group, uint64_t *acked)
{
    (void)ud, (void)group;
    store.claims++;
    bool match = store.exists && strlen(store.name) == nl && memcmp(store.name, name, nl) == 0 &&
                 strlen(store.topic) == tl && memcmp(store.topic, topic, tl) == 0;
    *acked = match ? store.acked : 0;
    return match;
}

static void s_persist(void *ud, const char *name, size_t nl, const char *topic, size_t tl,
                      void *group, uint64_t acked)
{
    (void)ud, (void)group;
    snprintf(store.name, sizeof store.name, "%.*s", (int)nl, name);
    snprintf(store.topic, sizeof store.topic, "%.*s", (int)tl, topic);
    store.exists = true;
    if (acked > store.acked || store.persists == 0)
        store.acked = acked;
    store.persists++;
}

static void s_unclaim(void *ud, const char *name, size_t nl, const char *topic, size_t tl,
                      void *group, bool forget)
{
    (void)ud, (void)name, (void)nl, (void)topic, (void)tl, (void)group;
    if (forget) {
        store.exists = false;
        store.forgets++;
    }
}

static const vg_qgroup_ops ops = {
    .room = f_room, .put = f_put, .wake = f_wake, .retain = f_retain, .release = f_release,
    .claim = s_claim, .persist = s_persist, .unclaim = s_unclaim,
};

/* ---- helpers ---- */

static vg_logs *logs_new(bool held)
{
    vg_logs_cfg cfg;
    vg_logs_cfg_defaults(&cfg);
    cfg.held = held;
    vg_logs *s = vg_logs_create(&cfg, EPOCH);
    cr_assert_not_null(s);
    return s;
}

static vg_qgroups *reg_new(vg_logs *logs, uint32_t cap, uint32_t batch)
{
    vg_qgroups_cfg cfg;
    vg_qgroups_cfg_defaults(&cfg);
    cfg.max_inflight = cap;
    cfg.batch = batch;
    vg_qgroups *r = vg_qgroups_create(logs, &cfg, &ops);
    cr_assert_not_null(r);
    return r;
}

static void append(vg_logs *logs, const char *topic, size_t n)
{
    vg_tlog *t = vg_logs_get(logs, topic, strlen(topic));
    cr_assert_not_null(t);
    for (size_t i = 0; i < n; i++) {
        vg_tlog_msg m = {VG_FRAME_MSG_TYPE1, "payload", 7};
        uint64_t seq;
        size_t done;
        cr_assert_eq(vg_tlog_append(t, &m, 1, 0, &seq, &done), VG_OK);
    }
}

static vg_qgroup *join(vg_qgroups *r, const char *subject, const char *durable, fake *m,
                       uint64_t sid, vg_tstart start, uint64_t *next)
{
    vg_qgroup_start st = {start, 0, 0};
    vg_qgroup *g = NULL;
    uint64_t n;
    cr_assert_eq(vg_qgroup_join(r, "workers", 7, subject, strlen(subject), durable,
                                durable ? strlen(durable) : 0, m, sid, &st, &g, &n),
                 VG_OK);
    cr_assert_not_null(g);
    if (next != NULL)
        *next = n;
    return g;
}

/* Routes like the router after an append: every matching group pumps. */
static void route(vg_qgroups *r, vg_logs *logs, const char *topic, uint64_t first_seq)
{
    vg_tlog *t = vg_logs_get(logs, topic, strlen(topic));
    vg_qgroup **gs = NULL;
    size_t cap = 0, n = 0;
    cr_assert_eq(vg_qgroups_match(r, topic, strlen(topic), t, first_seq, &gs, &cap, &n), VG_OK);
    for (size_t i = 0; i < n; i++) {
        vg_qgroup_pump(gs[i]);
        vg_qgroup_release(gs[i]);
    }
    free(gs);
}

/* m acknowledges everything it received on topic: the last one received. */
static void ack_all(vg_qgroup *g, fake *m, uint64_t sid, const char *topic)
{
    if (m->got > 0)
        vg_qgroup_ack(g, m, sid, topic, strlen(topic), m->last_seq);
}

/* ---- balance ---- */

Test(qgroup, balanced_across_members_that_keep_up)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 1024, 16);
    static fake m[4];
    memset(m, 0, sizeof m);
    vg_qgroup *g[4];
    for (int i = 0; i < 4; i++)
        g[i] = join(r, "jobs", NULL, &m[i], (uint64_t)i + 1, VG_TSTART_NEW, NULL);
    cr_assert_eq(g[0], g[3], "one group");
    for (int round = 0; round < 100; round++) {
        append(logs, "jobs", 40);
        route(r, logs, "jobs", 0);
        for (int i = 0; i < 4; i++)
            ack_all(g[i], &m[i], (uint64_t)i + 1, "jobs");
    }
    uint64_t total = 0;
    for (int i = 0; i < 4; i++) {
        total += m[i].got;
        cr_assert(m[i].got >= 800 && m[i].got <= 1200, "member %d got %llu of 4000 (%llu %llu %llu %llu)", i,
                  (unsigned long long)m[i].got, (unsigned long long)m[0].got, (unsigned long long)m[1].got, (unsigned long long)m[2].got, (unsigned long long)m[3].got);
        cr_assert_eq(m[i].last_sid, (uint64_t)i + 1, "its own sid");
    }
    cr_assert_eq(total, 4000);
    for (uint64_t s = 1; s <= 4000; s++)
        cr_assert_eq(m[0].seen[s] + m[1].seen[s] + m[2].seen[s] + m[3].seen[s], 1,
                     "seq %llu exactly once", (unsigned long long)s);
    vg_qgroup_topic_info ti;
    cr_assert(vg_qgroup_topic(g[0], "jobs", 4, &ti));
    cr_assert_eq(ti.floor, 4001);
    cr_assert_eq(ti.inflight, 0);
    for (int i = 0; i < 4; i++)
        vg_qgroup_leave(g[i], &m[i], (uint64_t)i + 1, false);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(m[i].refs, 0);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

Test(qgroup, a_member_that_never_acks_gets_its_cap_and_no_more)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 100, 16);
    static fake lazy, busy;
    memset(&lazy, 0, sizeof lazy);
    memset(&busy, 0, sizeof busy);
    vg_qgroup *g = join(r, "jobs", NULL, &lazy, 1, VG_TSTART_NEW, NULL);
    vg_qgroup *g2 = join(r, "jobs", NULL, &busy, 2, VG_TSTART_NEW, NULL);
    for (int round = 0; round < 50; round++) {
        append(logs, "jobs", 20);
        route(r, logs, "jobs", 0);
        ack_all(g2, &busy, 2, "jobs");
    }
    cr_assert(lazy.got > 0 && lazy.got <= 100, "lazy got %llu", (unsigned long long)lazy.got);
    cr_assert_eq(lazy.got + busy.got, 1000);
    cr_assert_eq(vg_qgroup_inflight(g, &lazy, 1), lazy.got);
    uint64_t had = lazy.got;
    vg_qgroup_leave(g, &lazy, 1, false);
    cr_assert_eq(vg_qgroups_redelivered(r), had, "what it had, counted as given back");
    cr_assert_eq(busy.got, 1000, "the lazy one's %llu went to the other at once",
                 (unsigned long long)had);
    for (uint64_t s = 1; s <= 1000; s++)
        cr_assert_eq(busy.seen[s], 1);
    vg_qgroup_leave(g2, &busy, 2, false);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

/* ---- the ack wait ---- */

Test(qgroup, the_ack_wait_gives_what_was_not_acknowledged_to_another_member)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 100, 16);
    static fake lazy, busy;
    memset(&lazy, 0, sizeof lazy);
    memset(&busy, 0, sizeof busy);
    vg_qgroup *g = join(r, "jobs", NULL, &lazy, 1, VG_TSTART_NEW, NULL);
    vg_qgroup *g2 = join(r, "jobs", NULL, &busy, 2, VG_TSTART_NEW, NULL);
    append(logs, "jobs", 16);
    route(r, logs, "jobs", 0);
    cr_assert_eq(lazy.got, 16, "the first batch went to the first member");
    /* The first look stamps; the wait counts from there. */
    cr_assert_eq(vg_qgroup_expire(g, &lazy, 1, 1000, 500), 1500);
    append(logs, "jobs", 16);
    route(r, logs, "jobs", 0);
    cr_assert_eq(busy.got, 16, "the second to the other, which had none in flight");
    ack_all(g2, &busy, 2, "jobs");
    append(logs, "jobs", 8);
    route(r, logs, "jobs", 0);
    cr_assert_eq(lazy.got + busy.got, 40);
    uint64_t lazy_had = lazy.got;
    cr_assert_eq(vg_qgroup_expire(g, &lazy, 1, 1300, 500), 1500, "the oldest says when");
    cr_assert_eq(vg_qgroup_expire(g, &lazy, 1, 1499, 500), 1500);
    cr_assert_eq(vg_qgroup_inflight(g, &lazy, 1), lazy_had, "nothing taken back early");
    /* At 1500 the first batch goes to busy; what lazy got later (stamped
     * at 1300, if any) waits until 1800. */
    cr_assert_eq(vg_qgroups_redelivered(r), 0);
    int64_t next = vg_qgroup_expire(g, &lazy, 1, 1500, 500);
    cr_assert_eq(vg_qgroup_inflight(g, &lazy, 1), lazy_had - 16);
    cr_assert_eq(vg_qgroups_redelivered(r), 16, "counted as given back");
    cr_assert_eq(next, lazy_had > 16 ? 1800 : INT64_MAX);
    for (uint64_t s = 1; s <= 16; s++)
        cr_assert_eq(busy.seen[s], 1, "seq %llu handed to busy after lazy's wait",
                     (unsigned long long)s);
    /* lazy's late ACK of the first batch does nothing: busy has it now. */
    cr_assert(vg_qgroup_ack(g, &lazy, 1, "jobs", 4, 16));
    vg_qgroup_topic_info ti;
    cr_assert(vg_qgroup_topic(g, "jobs", 4, &ti));
    cr_assert_eq(ti.floor, 1, "seq 1 is busy's, unacknowledged");
    ack_all(g2, &busy, 2, "jobs");
    if (lazy_had > 16)
        cr_assert_eq(vg_qgroup_expire(g, &lazy, 1, 1800, 500), INT64_MAX);
    ack_all(g2, &busy, 2, "jobs");
    cr_assert(vg_qgroup_topic(g, "jobs", 4, &ti));
    cr_assert_eq(ti.floor, 41, "everything acknowledged, by busy: %llu", (unsigned long long)ti.floor);
    for (uint64_t s = 1; s <= 40; s++)
        cr_assert_eq(busy.seen[s], 1, "seq %llu once to busy", (unsigned long long)s);
    cr_assert_eq(busy.got, 40);
    vg_qgroup_leave(g, &lazy, 1, false);
    vg_qgroup_leave(g2, &busy, 2, false);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

Test(qgroup, a_sole_member_gets_its_expired_messages_again_and_wait_zero_is_off)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 100, 16);
    static fake m;
    memset(&m, 0, sizeof m);
    vg_qgroup *g = join(r, "jobs", NULL, &m, 1, VG_TSTART_NEW, NULL);
    append(logs, "jobs", 10);
    route(r, logs, "jobs", 0);
    cr_assert_eq(vg_qgroup_expire(g, &m, 1, 100, 0), INT64_MAX, "0: no ack wait");
    cr_assert_eq(vg_qgroup_expire(g, &m, 1, 1000000, 0), INT64_MAX);
    cr_assert_eq(m.got, 10);
    cr_assert_eq(vg_qgroup_expire(g, &m, 1, 100, 50), 150);
    /* Given back and, with no other member, redelivered to it at once:
     * its inbox's put has it look again, which stamps them anew. */
    cr_assert_eq(vg_qgroup_expire(g, &m, 1, 150, 50), INT64_MAX);
    cr_assert_eq(m.got, 20);
    cr_assert_eq(vg_qgroup_expire(g, &m, 1, 160, 50), 210);
    for (uint64_t s = 1; s <= 10; s++)
        cr_assert_eq(m.seen[s], 2);
    /* Acknowledging the redelivery ends it. */
    vg_qgroup_ack(g, &m, 1, "jobs", 4, 10);
    cr_assert_eq(vg_qgroup_inflight(g, &m, 1), 0);
    cr_assert_eq(vg_qgroup_expire(g, &m, 1, 1000, 50), INT64_MAX);
    cr_assert_eq(m.got, 20);
    vg_qgroup_leave(g, &m, 1, false);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

/* ---- failover ---- */

Test(qgroup, leaving_hands_in_flight_messages_to_the_others)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 30, 8);
    static fake m[3];
    memset(m, 0, sizeof m);
    vg_qgroup *g[3];
    for (int i = 0; i < 3; i++)
        g[i] = join(r, "jobs", NULL, &m[i], 7, VG_TSTART_NEW, NULL); /* same sid, other conns */
    append(logs, "jobs", 500);
    route(r, logs, "jobs", 0);
    cr_assert_eq(m[0].got + m[1].got + m[2].got, 90, "three caps of 30");
    /* m[0] acknowledges part of what it has (and takes no more), then dies. */
    uint64_t acked = m[0].order[19];
    cr_assert(acked >= 20);
    m[0].full = true;
    vg_qgroup_ack(g[0], &m[0], 7, "jobs", 4, acked);
    cr_assert_eq(vg_qgroup_inflight(g[0], &m[0], 7), 10);
    static uint8_t before[MAXSEQ + 1];
    memcpy(before, m[0].seen, sizeof before);
    vg_qgroup_leave(g[0], &m[0], 7, false);
    for (int k = 0; k < 100; k++) {
        ack_all(g[1], &m[1], 7, "jobs");
        ack_all(g[2], &m[2], 7, "jobs");
    }
    cr_assert_eq(memcmp(before, m[0].seen, sizeof before), 0, "nothing more to the dead one");
    for (uint64_t s = 1; s <= 500; s++) {
        cr_assert_eq(m[1].seen[s] + m[2].seen[s] > 1, false, "seq %llu to two live members",
                     (unsigned long long)s);
        bool dead_acked = false;
        for (int k = 0; k < 20; k++)
            dead_acked |= m[0].order[k] == s;
        cr_assert(m[1].seen[s] + m[2].seen[s] == 1 || dead_acked, "seq %llu lost",
                  (unsigned long long)s);
        cr_assert(!(dead_acked && m[1].seen[s] + m[2].seen[s] > 0),
                  "seq %llu acked by the dead one, delivered again", (unsigned long long)s);
    }
    vg_qgroup_topic_info ti;
    cr_assert(vg_qgroup_topic(g[1], "jobs", 4, &ti));
    cr_assert_eq(ti.floor, 501);
    vg_qgroup_leave(g[1], &m[1], 7, false);
    vg_qgroup_leave(g[2], &m[2], 7, false);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

Test(qgroup, an_inbox_that_refuses_a_batch_gives_it_to_another)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 1024, 16);
    static fake a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    vg_qgroup *g = join(r, "jobs", NULL, &a, 1, VG_TSTART_NEW, NULL);
    join(r, "jobs", NULL, &b, 2, VG_TSTART_NEW, NULL);
    a.closed = true; /* leaving: not yet gone from the group */
    append(logs, "jobs", 100);
    route(r, logs, "jobs", 0);
    cr_assert_eq(a.got, 0);
    cr_assert_eq(b.got, 100);
    for (uint64_t s = 1; s <= 100; s++)
        cr_assert_eq(b.seen[s], 1);
    vg_qgroup_leave(g, &a, 1, false);
    vg_qgroup_leave(g, &b, 2, false);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

Test(qgroup, a_full_inbox_gets_nothing_and_the_records_wait)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 1024, 16);
    static fake a;
    memset(&a, 0, sizeof a);
    vg_qgroup *g = join(r, "jobs", NULL, &a, 1, VG_TSTART_NEW, NULL);
    a.full = true;
    append(logs, "jobs", 50);
    route(r, logs, "jobs", 0);
    cr_assert_eq(a.got, 0);
    a.full = false;
    vg_qgroup_pump(g); /* its inbox drained */
    cr_assert_eq(a.got, 50);
    vg_qgroup_leave(g, &a, 1, false);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

/* ---- floors ---- */

Test(qgroup, the_floor_is_the_lowest_unacknowledged)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 1024, 5);
    static fake a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    vg_qgroup *g = join(r, "jobs", NULL, &a, 1, VG_TSTART_NEW, NULL);
    join(r, "jobs", NULL, &b, 2, VG_TSTART_NEW, NULL);
    append(logs, "jobs", 20); /* a: 1-5, 11-15; b: 6-10, 16-20 (batches of 5, fewest first) */
    route(r, logs, "jobs", 0);
    cr_assert_eq(a.seen[1] + a.seen[11], 2, "a has 1 and 11");
    cr_assert_eq(b.seen[6] + b.seen[16], 2, "b has 6 and 16");
    vg_qgroup_topic_info ti;
    vg_qgroup_ack(g, &b, 2, "jobs", 4, 20); /* out of order: b is done */
    cr_assert(vg_qgroup_topic(g, "jobs", 4, &ti));
    cr_assert_eq(ti.floor, 1);
    cr_assert_eq(ti.inflight, 10);
    vg_qgroup_ack(g, &a, 1, "jobs", 4, 3); /* cumulative over a's: 1-3 */
    cr_assert(vg_qgroup_topic(g, "jobs", 4, &ti));
    cr_assert_eq(ti.floor, 4);
    vg_qgroup_ack(g, &a, 1, "jobs", 4, 12); /* a's 4-5 and 11-12 */
    cr_assert(vg_qgroup_topic(g, "jobs", 4, &ti));
    cr_assert_eq(ti.floor, 13);
    cr_assert_eq(ti.inflight, 3);
    cr_assert_not(vg_qgroup_ack(g, &a, 1, "other", 5, 99), "not a topic of the group");
    vg_qgroup_ack(g, &a, 1, "jobs", 4, 20); /* never given to a: nothing */
    cr_assert(vg_qgroup_topic(g, "jobs", 4, &ti));
    cr_assert_eq(ti.floor, 13);
    vg_qgroup_ack(g, &a, 1, "jobs", 4, 15);
    cr_assert(vg_qgroup_topic(g, "jobs", 4, &ti));
    cr_assert_eq(ti.floor, 21);
    cr_assert_eq(ti.next, 21);
    vg_qgroup_leave(g, &a, 1, false);
    vg_qgroup_leave(g, &b, 2, false);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

Test(qgroup, an_ack_covers_what_was_received_before_it_not_later_redeliveries)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 1024, 5);
    static fake a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    vg_qgroup *g = join(r, "jobs", NULL, &a, 1, VG_TSTART_NEW, NULL);
    join(r, "jobs", NULL, &b, 2, VG_TSTART_NEW, NULL);
    append(logs, "jobs", 10); /* a: 1-5, b: 6-10 */
    route(r, logs, "jobs", 1);
    cr_assert_eq(b.order[0], 6);
    vg_qgroup_leave(g, &a, 1, false); /* 1-5 go to b, after 10 */
    cr_assert_eq(b.got, 10);
    cr_assert_eq(b.order[5], 1, "redelivered after the others");
    vg_qgroup_ack(g, &b, 2, "jobs", 4, 10); /* sent before b saw 1-5 */
    cr_assert_eq(vg_qgroup_inflight(g, &b, 2), 5, "1-5 are not covered");
    vg_qgroup_ack(g, &b, 2, "jobs", 4, 10); /* again (a client that acks its highest): nothing */
    cr_assert_eq(vg_qgroup_inflight(g, &b, 2), 5);
    append(logs, "jobs", 5);
    route(r, logs, "jobs", 11);
    cr_assert_eq(b.order[10], 11, "after the redeliveries");
    vg_qgroup_ack(g, &b, 2, "jobs", 4, 15); /* received after 1-5: covers them */
    cr_assert_eq(vg_qgroup_inflight(g, &b, 2), 0);
    vg_qgroup_leave(g, &b, 2, false);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

/* ---- a held log ---- */

Test(qgroup, a_held_log_delivers_nothing_beyond_ready)
{
    vg_logs *logs = logs_new(true);
    vg_qgroups *r = reg_new(logs, 1024, 16);
    static fake a;
    memset(&a, 0, sizeof a);
    vg_qgroup *g = join(r, "jobs", NULL, &a, 1, VG_TSTART_NEW, NULL);
    append(logs, "jobs", 10);
    route(r, logs, "jobs", 1);
    cr_assert_eq(a.got, 0, "nothing synced yet");
    vg_tlog_release(vg_logs_get(logs, "jobs", 4), 6); /* 1..5 synced */
    route(r, logs, "jobs", 1);
    cr_assert_eq(a.got, 5);
    for (uint64_t s = 1; s <= 5; s++)
        cr_assert_eq(a.seen[s], 1);
    cr_assert_eq(a.seen[6], 0);
    vg_tlog_release(vg_logs_get(logs, "jobs", 4), 11);
    vg_qgroup_pump(g);
    cr_assert_eq(a.got, 10);
    vg_qgroup_leave(g, &a, 1, false);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

/* ---- start positions, durability ---- */

Test(qgroup, a_new_group_starts_as_asked_and_later_members_at_its_position)
{
    vg_logs *logs = logs_new(false);
    append(logs, "jobs", 30);
    vg_qgroups *r = reg_new(logs, 10, 16);
    static fake a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    uint64_t next;
    vg_qgroup *g = join(r, "jobs", NULL, &a, 1, VG_TSTART_FIRST, &next);
    cr_assert_eq(next, 1);
    cr_assert_eq(a.got, 10, "its cap, at once");
    join(r, "jobs", NULL, &b, 2, VG_TSTART_NEW, &next);
    cr_assert_eq(next, 11, "the group's position, whatever b asked");
    cr_assert_eq(b.got, 10);
    vg_qgroup_start past = {VG_TSTART_SEQ, 99, 0};
    vg_qgroup *g2;
    static fake c;
    cr_assert_eq(vg_qgroup_join(r, "other", 5, "jobs", 4, NULL, 0, &c, 1, &past, &g2, &next),
                 VG_ERR_ARG);
    cr_assert_eq(c.refs, 0);
    vg_qgroup_leave(g, &a, 1, false);
    vg_qgroup_leave(g, &b, 2, false);
    size_t groups, members;
    vg_qgroups_counts(r, &groups, &members);
    cr_assert_eq(groups, 0, "a group without members or durable name goes");
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

Test(qgroup, a_durable_group_stores_its_floor_and_resumes_there)
{
    memset(&store, 0, sizeof store);
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 1024, 4);
    static fake a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    vg_qgroup *g = join(r, "jobs", "billing", &a, 1, VG_TSTART_NEW, NULL);
    cr_assert_eq(store.persists, 1, "a new durable is stored at once");
    cr_assert_str_eq(store.name, "billing@workers");
    cr_assert_str_eq(store.topic, "jobs");
    cr_assert_eq(store.acked, 0);
    join(r, "jobs", "billing", &b, 2, VG_TSTART_NEW, NULL);
    append(logs, "jobs", 16); /* a: 1-4, 9-12; b: 5-8, 13-16 */
    route(r, logs, "jobs", 1);
    vg_qgroup_ack(g, &b, 2, "jobs", 4, 16);
    cr_assert_eq(store.acked, 0, "the floor has not moved");
    vg_qgroup_ack(g, &a, 1, "jobs", 4, 4);
    cr_assert_eq(store.acked, 8, "1-8 done: 9-12 are a's");
    /* Both leave: the group stays (durable) with its state. */
    vg_qgroup_leave(g, &a, 1, false);
    vg_qgroup_leave(g, &b, 2, false);
    size_t groups, members;
    vg_qgroups_counts(r, &groups, &members);
    cr_assert_eq(groups, 1);
    cr_assert_eq(members, 0);
    vg_qgroups_destroy(r); /* a restart: only the store remains */

    r = reg_new(logs, 1024, 4);
    static fake c;
    memset(&c, 0, sizeof c);
    uint64_t next;
    g = join(r, "jobs", "billing", &c, 1, VG_TSTART_NEW, &next);
    cr_assert_eq(next, 9, "resumes at the floor");
    cr_assert_eq(c.got, 8, "9..16 again: 13-16 were acknowledged out of order");
    vg_qgroup_ack(g, &c, 1, "jobs", 4, 16);
    cr_assert_eq(store.acked, 16);
    vg_qgroup_leave(g, &c, 1, true); /* UNSUB with delete: the durable goes */
    cr_assert_eq(store.forgets, 1);
    vg_qgroups_counts(r, &groups, &members);
    cr_assert_eq(groups, 0);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

/* ---- patterns, the registry ---- */

Test(qgroup, a_pattern_group_learns_topics_as_they_are_published)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 1024, 16);
    static fake a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    vg_qgroup *g = join(r, "jobs.*", NULL, &a, 1, VG_TSTART_NEW, NULL);
    join(r, "jobs.*", NULL, &b, 2, VG_TSTART_NEW, NULL);
    append(logs, "jobs.a", 10);
    route(r, logs, "jobs.a", 1);
    append(logs, "jobs.b", 10);
    route(r, logs, "jobs.b", 1);
    append(logs, "other.c", 10);
    route(r, logs, "other.c", 1);
    append(logs, "jobs.a.deeper", 10);
    route(r, logs, "jobs.a.deeper", 1);
    cr_assert_eq(a.got + b.got, 20);
    vg_qgroup_topic_info ti;
    cr_assert(vg_qgroup_topic(g, "jobs.b", 6, &ti));
    cr_assert_eq(ti.next, 11);
    cr_assert_not(vg_qgroup_topic(g, "other.c", 7, &ti));
    cr_assert_not(vg_qgroup_topic(g, "jobs.a.deeper", 13, &ti));
    vg_qgroup_leave(g, &a, 1, false);
    vg_qgroup_leave(g, &b, 2, false);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}

Test(qgroup, groups_are_told_apart_by_queue_subject_and_durable)
{
    vg_logs *logs = logs_new(false);
    vg_qgroups *r = reg_new(logs, 1024, 16);
    static fake a, b, c;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    vg_qgroup_start st = {VG_TSTART_NEW, 0, 0};
    vg_qgroup *ga, *gb, *gc;
    uint64_t next;
    cr_assert_eq(vg_qgroup_join(r, "q1", 2, "jobs", 4, NULL, 0, &a, 1, &st, &ga, &next), VG_OK);
    cr_assert_eq(vg_qgroup_join(r, "q2", 2, "jobs", 4, NULL, 0, &b, 1, &st, &gb, &next), VG_OK);
    cr_assert_eq(vg_qgroup_join(r, "q1", 2, "jobs", 4, "d", 1, &c, 1, &st, &gc, &next), VG_OK);
    cr_assert(ga != gb && ga != gc && gb != gc);
    append(logs, "jobs", 10);
    route(r, logs, "jobs", 1);
    cr_assert_eq(a.got, 10, "each group gets every message");
    cr_assert_eq(b.got, 10);
    cr_assert_eq(c.got, 10);
    size_t groups, members;
    vg_qgroups_counts(r, &groups, &members);
    cr_assert_eq(groups, 3);
    cr_assert_eq(members, 3);
    vg_buf json = {0};
    cr_assert_eq(vg_qgroups_json(r, &json, 10), VG_OK);
    static const char want[] = "\"queue\":\"q2\",\"subject\":\"jobs\",\"members\":1";
    cr_assert_not_null(memmem(json.data, json.len, want, sizeof want - 1), "%.*s", (int)json.len,
                       (char *)json.data);
    vg_buf_free(&json);
    vg_qgroup_leave(ga, &a, 1, false);
    vg_qgroup_leave(gb, &b, 1, false);
    vg_qgroup_leave(gc, &c, 1, true);
    vg_qgroups_destroy(r);
    vg_logs_destroy(logs);
}
