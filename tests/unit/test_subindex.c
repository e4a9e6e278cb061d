/* A connection's subscription index: lookups by sid after any sequence of
 * adds and removes (the sid table deletes by backward shift, so a wrong
 * shift would hide an entry), counts per (subject, queue), and coverage by
 * literals and patterns, all against a plain array as the model. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "subindex.h"

static conn_sub make(uint64_t sid, const char *subject, const char *queue)
{
    conn_sub s = {.sid = sid, .len = (uint32_t)strlen(subject)};
    s.topic = malloc(s.len);
    memcpy(s.topic, subject, s.len);
    s.pattern = strchr(subject, '*') != NULL || strchr(subject, '>') != NULL;
    if (queue != NULL) {
        s.queue_len = (uint32_t)strlen(queue);
        s.queue = malloc(s.queue_len);
        memcpy(s.queue, queue, s.queue_len);
    }
    return s;
}

static void add(vg_subindex *x, uint64_t sid, const char *subject, const char *queue)
{
    conn_sub s = make(sid, subject, queue);
    cr_assert_eq(vg_subindex_add(x, &s), VG_OK);
}

static void removed(vg_subindex *x, uint64_t sid)
{
    conn_sub s;
    cr_assert(vg_subindex_remove(x, sid, &s), "sid %llu not there", (unsigned long long)sid);
    cr_assert_eq(s.sid, sid);
    free(s.topic);
    free(s.queue);
    free(s.durable);
}

Test(subindex, counts_per_subject_and_queue)
{
    vg_subindex *x = vg_subindex_create();
    add(x, 1, "a.b", NULL);
    add(x, 2, "a.b", NULL);
    add(x, 3, "a.b", "workers");
    add(x, 4, "a.*", NULL);
    cr_assert_eq(vg_subindex_refs(x, "a.b", 3, NULL, 0), 2);
    cr_assert_eq(vg_subindex_refs(x, "a.b", 3, "workers", 7), 1);
    cr_assert_eq(vg_subindex_refs(x, "a.b", 3, "worker", 6), 0);
    cr_assert_eq(vg_subindex_refs(x, "a.*", 3, NULL, 0), 1);
    cr_assert_eq(vg_subindex_refs(x, "a", 1, NULL, 0), 0);
    removed(x, 1);
    cr_assert_eq(vg_subindex_refs(x, "a.b", 3, NULL, 0), 1);
    removed(x, 2);
    cr_assert_eq(vg_subindex_refs(x, "a.b", 3, NULL, 0), 0);
    cr_assert_eq(vg_subindex_refs(x, "a.b", 3, "workers", 7), 1);
    cr_assert_eq(vg_subindex_count(x), 2);
    vg_subindex_destroy(x); /* frees what is left */
}

Test(subindex, coverage_by_literals_and_patterns_not_queues)
{
    vg_subindex *x = vg_subindex_create();
    add(x, 1, "jobs.eu", "workers");
    add(x, 2, "jobs.>", "workers");
    uint64_t sid = 0;
    cr_assert_not(vg_subindex_covers(x, "jobs.eu", 7, &sid), "a queue's sid reads no topic");
    add(x, 3, "jobs.*", NULL);
    cr_assert(vg_subindex_covers(x, "jobs.eu", 7, &sid));
    cr_assert_eq(sid, 3);
    cr_assert_not(vg_subindex_covers(x, "jobs.eu.paris", 13, NULL));
    add(x, 4, "jobs.eu.paris", NULL);
    cr_assert(vg_subindex_covers(x, "jobs.eu.paris", 13, &sid));
    cr_assert_eq(sid, 4);
    removed(x, 3);
    cr_assert_not(vg_subindex_covers(x, "jobs.eu", 7, NULL));
    cr_assert(vg_subindex_covers(x, "jobs.eu.paris", 13, NULL));
    /* Two sids on one topic: the one named goes, the other is named. */
    add(x, 5, "jobs.eu.paris", NULL);
    add(x, 6, "jobs.eu.paris", "workers");
    removed(x, 4);
    cr_assert(vg_subindex_covers(x, "jobs.eu.paris", 13, &sid));
    cr_assert_eq(sid, 5, "sid %llu, not the remaining plain one", (unsigned long long)sid);
    removed(x, 5);
    cr_assert_not(vg_subindex_covers(x, "jobs.eu.paris", 13, NULL), "a queue's sid reads no topic");
    vg_subindex_destroy(x);
}

/* Random adds and removes of sids that collide in a small table: every
 * present sid is found with its subject, every absent one is not. */
Test(subindex, random_against_a_model)
{
    enum { SIDS = 3000, STEPS = 60000 };
    static bool present[SIDS];
    memset(present, 0, sizeof present);
    vg_subindex *x = vg_subindex_create();
    uint64_t rnd = 0x9e3779b97f4a7c15ull;
    size_t n = 0;
    char subject[32];
    for (int step = 0; step < STEPS; step++) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        uint64_t sid = 1 + rnd % SIDS;
        /* sids spaced by a power of two collide in any power-of-two table */
        uint64_t key = sid << 20;
        snprintf(subject, sizeof subject, "t.%llu", (unsigned long long)(sid % 97));
        if (present[sid - 1]) {
            removed(x, key);
            present[sid - 1] = false;
            n--;
        } else {
            add(x, key, subject, NULL);
            present[sid - 1] = true;
            n++;
        }
        if (step % 997 == 0 || step == STEPS - 1) {
            cr_assert_eq(vg_subindex_count(x), n);
            for (uint64_t s = 1; s <= SIDS; s++) {
                conn_sub *f = vg_subindex_find(x, s << 20);
                cr_assert_eq(f != NULL, present[s - 1], "step %d sid %llu", step,
                             (unsigned long long)s);
                if (f != NULL) {
                    snprintf(subject, sizeof subject, "t.%llu", (unsigned long long)(s % 97));
                    cr_assert(f->len == strlen(subject) && memcmp(f->topic, subject, f->len) == 0);
                }
            }
            for (unsigned t = 0; t < 97; t++) { /* counts match the model */
                unsigned want = 0;
                for (uint64_t s = 1; s <= SIDS; s++)
                    want += present[s - 1] && s % 97 == t;
                snprintf(subject, sizeof subject, "t.%u", t);
                cr_assert_eq(vg_subindex_refs(x, subject, (uint32_t)strlen(subject), NULL, 0), want);
            }
        }
    }
    vg_subindex_destroy(x);
}
