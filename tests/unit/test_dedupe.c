/* The broker's publisher memory (broker/dedupe.c): a resend's leading
 * duplicates are found exactly, the window forgets, the capacity evicts the
 * least recently seen, and a randomized comparison against a plain model.
 * Time is a parameter: nothing sleeps. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "dedupe.h"

#define WINDOW 120000

Test(dedupe, a_resend_drops_exactly_what_was_appended)
{
    vg_dedupe *d = vg_dedupe_create(16, WINDOW);
    cr_assert_not_null(d);
    cr_assert_eq(vg_dedupe_acked(d, 7, 0), 0, "unknown publisher");
    cr_assert_eq(vg_dedupe_skip(d, 7, 1, 10, 0), 0);
    vg_dedupe_appended(d, 7, 10, 0);
    cr_assert_eq(vg_dedupe_acked(d, 7, 1), 10);
    cr_assert_eq(vg_dedupe_skip(d, 7, 6, 10, 1), 5, "6..10 again, 11..15 new");
    cr_assert_eq(vg_dedupe_skip(d, 7, 1, 3, 1), 3, "all old");
    cr_assert_eq(vg_dedupe_skip(d, 7, 11, 3, 1), 0, "all new");
    cr_assert_eq(vg_dedupe_skip(d, 7, 6, 0, 1), 0);
    cr_assert_eq(vg_dedupe_skip(d, 8, 1, 3, 1), 0, "another publisher");
    vg_dedupe_appended(d, 7, 4, 2); /* never goes back */
    cr_assert_eq(vg_dedupe_acked(d, 7, 2), 10);
    vg_dedupe_appended(d, 0, 99, 2); /* not a publisher */
    cr_assert_eq(vg_dedupe_acked(d, 0, 2), 0);
    cr_assert_eq(vg_dedupe_count(d, 2), 1);
    vg_dedupe_destroy(d);
}

Test(dedupe, a_publisher_unseen_for_the_window_is_forgotten)
{
    vg_dedupe *d = vg_dedupe_create(16, WINDOW);
    vg_dedupe_appended(d, 1, 5, 0);
    vg_dedupe_appended(d, 2, 5, 100000);
    cr_assert_eq(vg_dedupe_acked(d, 1, WINDOW), 5, "at the window's edge still kept");
    cr_assert_eq(vg_dedupe_acked(d, 1, WINDOW + 1), 0);
    cr_assert_eq(vg_dedupe_acked(d, 2, WINDOW + 1), 5);
    vg_dedupe_appended(d, 2, 6, 200000); /* seen again: its window moves */
    cr_assert_eq(vg_dedupe_acked(d, 2, 300000), 6);
    cr_assert_eq(vg_dedupe_count(d, 400000), 0);
    vg_dedupe_destroy(d);
}

Test(dedupe, at_capacity_the_least_recently_seen_goes)
{
    vg_dedupe *d = vg_dedupe_create(3, WINDOW);
    vg_dedupe_appended(d, 1, 1, 0);
    vg_dedupe_appended(d, 2, 1, 1);
    vg_dedupe_appended(d, 3, 1, 2);
    vg_dedupe_appended(d, 1, 2, 3); /* 1 is the most recent now; 2 the least */
    vg_dedupe_appended(d, 4, 1, 4);
    cr_assert_eq(vg_dedupe_acked(d, 2, 5), 0, "2 was evicted");
    cr_assert_eq(vg_dedupe_acked(d, 1, 5), 2);
    cr_assert_eq(vg_dedupe_acked(d, 3, 5), 1);
    cr_assert_eq(vg_dedupe_acked(d, 4, 5), 1);
    cr_assert_eq(vg_dedupe_count(d, 5), 3);
    cr_assert_null(vg_dedupe_create(0, WINDOW));
    vg_dedupe_destroy(d);
}

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* The model: per publisher the highest number and when it was last seen;
 * forgotten after the window or when the least recently seen must make room.
 * Publishers with chosen (colliding) identities exercise the buckets. */
Test(dedupe, randomized_against_a_plain_model)
{
    enum { MAX = 64, PUBS = 200, STEPS = 200000 };
    vg_dedupe *d = vg_dedupe_create(MAX, 1000);
    uint64_t hwm[PUBS] = {0};
    int64_t seen[PUBS];
    int order[PUBS]; /* when last touched: ties in time are broken by order */
    bool known[PUBS] = {false};
    uint64_t x = 12345;
    int64_t now = 0;
    for (int step = 0; step < STEPS; step++) {
        now += (int64_t)(rnd(&x) % 20);
        size_t p = rnd(&x) % PUBS;
        uint64_t id = (uint64_t)(p + 1) << 40; /* low bits all zero */
        /* the model forgets by the window first */
        for (size_t q = 0; q < PUBS; q++)
            if (known[q] && seen[q] < now - 1000)
                known[q] = false;
        uint64_t want = known[p] ? hwm[p] : 0;
        cr_assert_eq(vg_dedupe_acked(d, id, now), want, "step %d publisher %zu", step, p);
        uint64_t first = want + 1 - (want > 0 ? rnd(&x) % (want < 5 ? want : 5) : 0);
        uint64_t n = rnd(&x) % 8;
        uint64_t skip = vg_dedupe_skip(d, id, first, n, now);
        uint64_t dup = want >= first ? want - first + 1 : 0;
        cr_assert_eq(skip, dup < n ? dup : n);
        if (n == 0)
            continue;
        if (!known[p]) {
            size_t count = 0, lru = PUBS;
            for (size_t q = 0; q < PUBS; q++) {
                if (!known[q])
                    continue;
                count++;
                if (lru == PUBS || order[q] < order[lru])
                    lru = q;
            }
            if (count == MAX)
                known[lru] = false;
            hwm[p] = 0;
        }
        vg_dedupe_appended(d, id, first + n - 1, now);
        known[p] = true;
        if (first + n - 1 > hwm[p])
            hwm[p] = first + n - 1;
        seen[p] = now;
        order[p] = step;
    }
    vg_dedupe_destroy(d);
}
