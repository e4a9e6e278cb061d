/* Subscription table: membership per topic, retain on every member handed
 * out, empty topics removed, growth, and readers racing a writer. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "subtable.h"

static atomic_ulong retains;

static void count_retain(void *member)
{
    (void)member;
    atomic_fetch_add(&retains, 1);
}

static vg_subtable *table(void)
{
    atomic_store(&retains, 0);
    vg_subtable *t = vg_subtable_create(count_retain);
    cr_assert_not_null(t);
    return t;
}

#define ADD(t, topic, m) cr_assert_eq(vg_subtable_add((t), (topic), strlen(topic), (m)), VG_OK)
#define REMOVE(t, topic, m) vg_subtable_remove((t), (topic), strlen(topic), (m))

/* Matches topic, returning the count; members land in *scratch. */
static size_t match(vg_subtable *t, const char *topic, void ***scratch, size_t *cap)
{
    size_t n = 12345;
    cr_assert_eq(vg_subtable_match(t, topic, strlen(topic), scratch, cap, &n), VG_OK);
    return n;
}

static bool contains(void **v, size_t n, const void *m)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == m)
            return true;
    return false;
}

static void expect_counts(vg_subtable *t, size_t topics, size_t subs)
{
    size_t nt = 999, ns = 999;
    vg_subtable_counts(t, &nt, &ns);
    cr_assert_eq(nt, topics, "topics %zu, want %zu", nt, topics);
    cr_assert_eq(ns, subs, "subscriptions %zu, want %zu", ns, subs);
}

Test(subtable, add_match_remove)
{
    vg_subtable *t = table();
    int a, b;
    void **s = NULL;
    size_t cap = 0;
    expect_counts(t, 0, 0);

    ADD(t, "news", &a);
    ADD(t, "news", &b);
    expect_counts(t, 1, 2);
    cr_assert_eq(match(t, "news", &s, &cap), 2);
    cr_assert(contains(s, 2, &a) && contains(s, 2, &b));
    cr_assert_geq(cap, 2);
    cr_assert_eq(atomic_load(&retains), 2, "one retain per member handed out");

    REMOVE(t, "news", &a);
    expect_counts(t, 1, 1);
    cr_assert_eq(match(t, "news", &s, &cap), 1);
    cr_assert_eq(s[0], &b);
    cr_assert_eq(atomic_load(&retains), 3);

    REMOVE(t, "news", &b);
    expect_counts(t, 0, 0);
    cr_assert_eq(match(t, "news", &s, &cap), 0);
    cr_assert_eq(atomic_load(&retains), 3, "no retain when nothing matches");
    free(s);
    vg_subtable_destroy(t);
}

Test(subtable, topics_are_independent)
{
    vg_subtable *t = table();
    int a, b, c;
    void **s = NULL;
    size_t cap = 0;
    ADD(t, "a.b", &a);
    ADD(t, "a.c", &b);
    ADD(t, "a.c", &c);
    cr_assert_eq(match(t, "a.b", &s, &cap), 1);
    cr_assert_eq(s[0], &a);
    cr_assert_eq(match(t, "a.c", &s, &cap), 2);
    cr_assert(contains(s, 2, &b) && contains(s, 2, &c));
    cr_assert(!contains(s, 2, &a));

    /* Prefixes and near-misses are different topics. */
    cr_assert_eq(match(t, "a", &s, &cap), 0);
    cr_assert_eq(match(t, "a.b.c", &s, &cap), 0);
    cr_assert_eq(match(t, "A.b", &s, &cap), 0);

    REMOVE(t, "a.b", &a);
    cr_assert_eq(match(t, "a.c", &s, &cap), 2, "removing from a.b leaves a.c alone");
    REMOVE(t, "a.c", &a); /* a was never on a.c */
    cr_assert_eq(match(t, "a.c", &s, &cap), 2);
    expect_counts(t, 1, 2);
    free(s);
    vg_subtable_destroy(t);
}

Test(subtable, same_member_on_many_topics)
{
    vg_subtable *t = table();
    int a;
    void **s = NULL;
    size_t cap = 0;
    ADD(t, "x", &a);
    ADD(t, "y", &a);
    expect_counts(t, 2, 2);
    REMOVE(t, "x", &a);
    cr_assert_eq(match(t, "x", &s, &cap), 0);
    cr_assert_eq(match(t, "y", &s, &cap), 1);
    expect_counts(t, 1, 1);
    free(s);
    vg_subtable_destroy(t);
}

Test(subtable, add_twice_is_idempotent)
{
    vg_subtable *t = table();
    int a;
    void **s = NULL;
    size_t cap = 0;
    ADD(t, "t", &a);
    ADD(t, "t", &a);
    ADD(t, "t", &a);
    expect_counts(t, 1, 1);
    cr_assert_eq(match(t, "t", &s, &cap), 1);
    cr_assert_eq(s[0], &a);
    cr_assert_eq(atomic_load(&retains), 1);
    REMOVE(t, "t", &a); /* one remove undoes it */
    expect_counts(t, 0, 0);
    cr_assert_eq(match(t, "t", &s, &cap), 0);
    free(s);
    vg_subtable_destroy(t);
}

Test(subtable, remove_absent_is_harmless)
{
    vg_subtable *t = table();
    int a, b;
    void **s = NULL;
    size_t cap = 0;
    REMOVE(t, "nothing.here", &a); /* unknown topic */
    expect_counts(t, 0, 0);
    ADD(t, "t", &a);
    REMOVE(t, "t", &b); /* known topic, other member */
    REMOVE(t, "t", &b);
    expect_counts(t, 1, 1);
    cr_assert_eq(match(t, "t", &s, &cap), 1);
    REMOVE(t, "t", &a);
    REMOVE(t, "t", &a); /* twice */
    expect_counts(t, 0, 0);
    free(s);
    vg_subtable_destroy(t);
}

Test(subtable, empty_topic_entries_are_deleted)
{
    vg_subtable *t = table();
    int m[5];
    for (int i = 0; i < 5; i++)
        ADD(t, "e", &m[i]);
    expect_counts(t, 1, 5);
    for (int i = 0; i < 5; i++)
        REMOVE(t, "e", &m[i]);
    expect_counts(t, 0, 0);

    /* The topic can come back afterwards. */
    void **s = NULL;
    size_t cap = 0;
    ADD(t, "e", &m[2]);
    expect_counts(t, 1, 1);
    cr_assert_eq(match(t, "e", &s, &cap), 1);
    cr_assert_eq(s[0], &m[2]);
    free(s);
    vg_subtable_destroy(t);
}

Test(subtable, match_unknown_topic)
{
    vg_subtable *t = table();
    void **s = NULL;
    size_t cap = 0;
    cr_assert_eq(match(t, "never", &s, &cap), 0);
    cr_assert_null(s, "nothing allocated for no match");
    cr_assert_eq(cap, 0);
    cr_assert_eq(atomic_load(&retains), 0);
    vg_subtable_destroy(t);
}

Test(subtable, embedded_nul_topics_differ)
{
    vg_subtable *t = table();
    int a, b;
    void **s = NULL;
    size_t cap = 0;
    cr_assert_eq(vg_subtable_add(t, "ab\0c", 4, &a), VG_OK);
    cr_assert_eq(vg_subtable_add(t, "ab", 2, &b), VG_OK);
    expect_counts(t, 2, 2);
    size_t n;
    cr_assert_eq(vg_subtable_match(t, "ab\0c", 4, &s, &cap, &n), VG_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(s[0], &a);
    free(s);
    vg_subtable_destroy(t);
}

Test(subtable, scratch_grows)
{
    enum { N = 1000 };
    vg_subtable *t = table();
    char *members = calloc(N, 1);
    cr_assert_not_null(members);
    for (size_t i = 0; i < N; i++)
        ADD(t, "crowd", &members[i]);
    expect_counts(t, 1, N);

    /* A small scratch array given in is grown. */
    size_t cap = 2;
    void **s = malloc(cap * sizeof *s);
    cr_assert_not_null(s);
    cr_assert_eq(match(t, "crowd", &s, &cap), N);
    cr_assert_geq(cap, N);
    cr_assert_eq(atomic_load(&retains), N);
    char *seen = calloc(N, 1);
    cr_assert_not_null(seen);
    for (size_t i = 0; i < N; i++) {
        char *m = s[i];
        cr_assert(m >= members && m < members + N, "member %zu is foreign", i);
        cr_assert_eq(seen[m - members], 0, "member %td handed out twice", m - members);
        seen[m - members] = 1;
    }

    /* A large scratch array is reused as it is. */
    void **before = s;
    size_t cap_before = cap;
    REMOVE(t, "crowd", &members[0]);
    cr_assert_eq(match(t, "crowd", &s, &cap), N - 1);
    cr_assert_eq(s, before);
    cr_assert_eq(cap, cap_before);
    cr_assert(!contains(s, N - 1, &members[0]));

    free(seen);
    free(s);
    free(members);
    vg_subtable_destroy(t);
}

Test(subtable, many_topics_survive_rehash)
{
    enum { N = 5000 };
    vg_subtable *t = table();
    char *members = calloc(N, 1);
    cr_assert_not_null(members);
    char topic[32];
    for (size_t i = 0; i < N; i++) {
        snprintf(topic, sizeof topic, "topic.%zu", i);
        ADD(t, topic, &members[i]);
        if (i % 3 == 0)
            ADD(t, topic, &members[(i + 1) % N]);
    }
    size_t pairs = N + (N + 2) / 3;
    expect_counts(t, N, pairs);

    void **s = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < N; i++) {
        snprintf(topic, sizeof topic, "topic.%zu", i);
        size_t n = match(t, topic, &s, &cap);
        cr_assert_eq(n, i % 3 == 0 ? 2 : 1, "%s: %zu members", topic, n);
        cr_assert(contains(s, n, &members[i]), "%s lost its member", topic);
    }
    cr_assert_eq(match(t, "topic.5000", &s, &cap), 0);

    /* Remove every other topic entirely; the rest stay findable. */
    size_t removed_pairs = 0, removed_topics = 0;
    for (size_t i = 0; i < N; i += 2) {
        snprintf(topic, sizeof topic, "topic.%zu", i);
        REMOVE(t, topic, &members[i]);
        removed_pairs++;
        if (i % 3 == 0) {
            REMOVE(t, topic, &members[(i + 1) % N]);
            removed_pairs++;
        }
        removed_topics++;
    }
    expect_counts(t, N - removed_topics, pairs - removed_pairs);
    for (size_t i = 0; i < N; i++) {
        snprintf(topic, sizeof topic, "topic.%zu", i);
        cr_assert_eq(match(t, topic, &s, &cap) > 0, i % 2 == 1, "%s", topic);
    }
    free(s);
    free(members);
    vg_subtable_destroy(t);
}

/* ---- readers racing a writer ---- */

enum { STABLE = 8, TRANSIENT = 8, READER_ROUNDS = 20000, WRITER_ROUNDS = 5000 };

typedef struct {
    vg_subtable *t;
    char *stable;    /* always subscribed to "hot" */
    char *transient; /* added and removed by the writer */
    /* results, checked by the main thread after join */
    unsigned long matches;
    unsigned long handed_out;
    unsigned long errors;
    unsigned long bad_count;
    unsigned long missing_stable;
    unsigned long foreign;
    unsigned long duplicates;
} race;

static void *reader(void *arg)
{
    race *r = arg;
    void **s = NULL;
    size_t cap = 0;
    for (int i = 0; i < READER_ROUNDS; i++) {
        size_t n = 0;
        if (vg_subtable_match(r->t, "hot", 3, &s, &cap, &n) != VG_OK) {
            r->errors++;
            continue;
        }
        r->matches++;
        r->handed_out += n;
        if (n < STABLE || n > STABLE + TRANSIENT)
            r->bad_count++;
        for (int k = 0; k < STABLE; k++)
            if (!contains(s, n, &r->stable[k]))
                r->missing_stable++;
        for (size_t k = 0; k < n; k++) {
            char *m = s[k];
            bool ok = (m >= r->stable && m < r->stable + STABLE) ||
                      (m >= r->transient && m < r->transient + TRANSIENT);
            if (!ok)
                r->foreign++;
            for (size_t j = k + 1; j < n; j++)
                if (s[j] == m)
                    r->duplicates++;
        }
    }
    free(s);
    return NULL;
}

typedef struct {
    vg_subtable *t;
    char *transient;
    unsigned long errors;
} writer_args;

static void *writer(void *arg)
{
    writer_args *w = arg;
    char topic[32];
    for (int i = 0; i < WRITER_ROUNDS; i++) {
        char *m = &w->transient[i % TRANSIENT];
        if (vg_subtable_add(w->t, "hot", 3, m) != VG_OK)
            w->errors++;
        /* churn other topics too, forcing rehashes under the readers */
        snprintf(topic, sizeof topic, "cold.%d", i);
        if (vg_subtable_add(w->t, topic, strlen(topic), m) != VG_OK)
            w->errors++;
        if (i % 2 == 1) {
            vg_subtable_remove(w->t, "hot", 3, &w->transient[(i - 1) % TRANSIENT]);
            vg_subtable_remove(w->t, "hot", 3, m);
        }
        if (i % 4 == 3)
            vg_subtable_remove(w->t, topic, strlen(topic), m);
    }
    for (int k = 0; k < TRANSIENT; k++)
        vg_subtable_remove(w->t, "hot", 3, &w->transient[k]);
    return NULL;
}

Test(subtable, concurrent_match_while_writing)
{
    vg_subtable *t = table();
    char stable[STABLE], transient[TRANSIENT];
    for (int k = 0; k < STABLE; k++)
        cr_assert_eq(vg_subtable_add(t, "hot", 3, &stable[k]), VG_OK);

    race r[2];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 2; i++) {
        r[i].t = t;
        r[i].stable = stable;
        r[i].transient = transient;
    }
    writer_args w = {t, transient, 0};

    pthread_t th[3];
    cr_assert_eq(pthread_create(&th[0], NULL, reader, &r[0]), 0);
    cr_assert_eq(pthread_create(&th[1], NULL, reader, &r[1]), 0);
    cr_assert_eq(pthread_create(&th[2], NULL, writer, &w), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);

    cr_assert_eq(w.errors, 0);
    unsigned long handed_out = 0;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(r[i].errors, 0, "reader %d: match failed", i);
        cr_assert_eq(r[i].matches, READER_ROUNDS);
        cr_assert_eq(r[i].bad_count, 0, "reader %d: impossible member count", i);
        cr_assert_eq(r[i].missing_stable, 0, "reader %d: stable member missing", i);
        cr_assert_eq(r[i].foreign, 0, "reader %d: foreign pointer", i);
        cr_assert_eq(r[i].duplicates, 0, "reader %d: duplicate member", i);
        handed_out += r[i].handed_out;
    }
    cr_assert_eq(atomic_load(&retains), handed_out, "one retain per member handed out");

    /* The writer left only the stable members on "hot", and 1/4 of its
     * WRITER_ROUNDS cold topics removed. */
    void **s = NULL;
    size_t cap = 0;
    cr_assert_eq(match(t, "hot", &s, &cap), STABLE);
    size_t cold = WRITER_ROUNDS - WRITER_ROUNDS / 4;
    expect_counts(t, 1 + cold, STABLE + cold);
    free(s);
    vg_subtable_destroy(t);
}
