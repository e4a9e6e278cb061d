/* The client I/O thread's topic table (common/client_topics.h): found by
 * hash through growth and compaction, members kept in sid order with their
 * plain count, and a queue member's repeat window. Pure. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "client_topics.h"

static bool odd(void *arg, uint64_t sid)
{
    (void)arg;
    return sid % 2 == 1;
}

Test(client_topics, found_by_hash_through_growth_and_compaction)
{
    vg_client_topics tb = {0};
    enum { N = 1000 };
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "t.%d", i);
        cr_assert_null(vg_topics_find(&tb, name, strlen(name)));
        vg_client_topic *t = vg_topics_add(&tb, name, strlen(name));
        cr_assert_not_null(t);
        cr_assert_eq(vg_topic_add_member(t, (uint64_t)i + 1, false, false), VG_OK);
    }
    cr_assert_geq(tb.nslot, 2 * tb.n);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "t.%d", i);
        vg_client_topic *t = vg_topics_find(&tb, name, strlen(name));
        cr_assert(t != NULL && t->len == strlen(name) && memcmp(t->topic, name, t->len) == 0,
                  "%s", name);
        vg_topic_drop_members(t, odd, NULL); /* topics of odd sids lose their member */
    }
    vg_topics_compact(&tb);
    cr_assert_eq(tb.n, N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "t.%d", i);
        vg_client_topic *t = vg_topics_find(&tb, name, strlen(name));
        cr_assert_eq(t != NULL, i % 2 == 1, "%s after the compaction", name);
    }
    cr_assert_null(vg_topics_find(&tb, "t.1x", 4));
    vg_topics_free(&tb);
    cr_assert_null(vg_topics_find(&tb, "t.1", 3));
}

Test(client_topics, members_in_sid_order_with_their_plain_count)
{
    vg_client_topics tb = {0};
    vg_client_topic *t = vg_topics_add(&tb, "a.b", 3);
    const uint64_t sids[] = {9, 3, 7, 1, 3, 12};
    for (size_t i = 0; i < sizeof sids / sizeof sids[0]; i++)
        cr_assert_eq(vg_topic_add_member(t, sids[i], false, sids[i] == 7), VG_OK);
    cr_assert_eq(t->nm, 5, "3 added twice counts once");
    cr_assert_eq(t->nplain, 4);
    for (size_t i = 1; i < t->nm; i++)
        cr_assert_lt(t->m[i - 1].sid, t->m[i].sid);
    cr_assert_eq(vg_topic_after(t, 0), 0);
    cr_assert_eq(vg_topic_after(t, 3), 2);
    cr_assert_eq(vg_topic_after(t, 12), 5);
    cr_assert(vg_topic_member(t, 7) != NULL && vg_topic_member(t, 7)->queue);
    cr_assert_null(vg_topic_member(t, 8));
    vg_topic_drop_members(t, odd, NULL);
    cr_assert_eq(t->nm, 1);
    cr_assert_eq(t->nplain, 1, "the queue member 7 left too");
    vg_topics_free(&tb);
}

Test(client_topics, a_queue_member_drops_only_exact_repeats_within_its_window)
{
    vg_client_member m = {.sid = 1, .queue = true};
    cr_assert(vg_member_first_time(&m, 5));
    cr_assert(vg_member_first_time(&m, 9));
    cr_assert_not(vg_member_first_time(&m, 9));
    cr_assert_not(vg_member_first_time(&m, 5));
    cr_assert(vg_member_first_time(&m, 7), "a lower seq never given is new");
    cr_assert_not(vg_member_first_time(&m, 7));
    cr_assert(vg_member_first_time(&m, 9 + 63));
    cr_assert_not(vg_member_first_time(&m, 9), "63 below the highest: still known");
    cr_assert(vg_member_first_time(&m, 9 + 64));
    cr_assert(vg_member_first_time(&m, 9), "64 below: outside the window, taken as new");
    cr_assert(vg_member_first_time(&m, 1000));
    cr_assert_not(vg_member_first_time(&m, 1000));
    cr_assert(vg_member_first_time(&m, 9 + 63), "a jump past the window forgets it");
}
