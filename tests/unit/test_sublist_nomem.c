/* The subscription matcher when allocations fail: every allocation of an
 * add and of a cache miss is made to fail in turn, and each time the call
 * reports VG_ERR_NOMEM (an empty result for a match) and leaves nothing
 * changed: counts, generation, what matches, references and live
 * allocations. Its own executable, because it replaces malloc for the whole
 * process (failing only inside the window a test opens). Not under ASan,
 * whose allocator cannot be replaced this way. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "sublist.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define REPLACE_MALLOC 0
#else
#define REPLACE_MALLOC 1
#endif

#if REPLACE_MALLOC
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void __libc_free(void *);

static long countdown = -1; /* allocations left before one fails; -1: never */
static long live;           /* allocations not yet freed */
static bool failed;

static bool fail_now(void)
{
    if (countdown < 0)
        return false;
    if (countdown-- > 0)
        return false;
    countdown = -1; /* one failure per window: the caller then backs out */
    failed = true;
    return true;
}

void *malloc(size_t n)
{
    if (fail_now())
        return NULL;
    void *p = __libc_malloc(n);
    live += p != NULL;
    return p;
}

void *calloc(size_t n, size_t sz)
{
    if (fail_now())
        return NULL;
    void *p = __libc_calloc(n, sz);
    live += p != NULL;
    return p;
}

void *realloc(void *old, size_t n)
{
    if (fail_now())
        return NULL;
    void *p = __libc_realloc(old, n);
    live += old == NULL && p != NULL;
    return p;
}

void free(void *p)
{
    live -= p != NULL;
    __libc_free(p);
}

static atomic_long refs[16];
#define M(i) ((void *)&refs[(i)])

static void retain(void *m)
{
    atomic_fetch_add((atomic_long *)m, 1);
}

static void release(void *m)
{
    atomic_fetch_sub((atomic_long *)m, 1);
}

static long total_refs(void)
{
    long t = 0;
    for (size_t i = 0; i < 16; i++)
        t += atomic_load(&refs[i]);
    return t;
}

static size_t qlen(const char *q)
{
    return q != NULL ? strlen(q) : 0;
}

#define ADD(sl, s, q, m)                                                                      \
    cr_assert_eq(vg_sublist_add((sl), (s), strlen(s), (q), qlen(q), M(m)), VG_OK)

/* A table where "a.b.c" reaches a literal, three patterns and two groups,
 * one of them through two subjects. */
static vg_sublist *populated(void)
{
    vg_sublist *sl = vg_sublist_create(retain, release);
    cr_assert_not_null(sl);
    ADD(sl, "a.b.c", NULL, 0);
    ADD(sl, "a.*.c", NULL, 0);
    ADD(sl, "a.*.c", NULL, 1);
    ADD(sl, "a.>", "q1", 2);
    ADD(sl, "a.b.c", "q1", 3);
    ADD(sl, ">", "q2", 4);
    for (int i = 0; i < 20; i++) { /* enough members that the arrays grow */
        ADD(sl, "a.b.*", NULL, i % 8);
        ADD(sl, "a.b.*", "q2", i % 8);
    }
    return sl;
}

static bool same_counts(const vg_sublist_counts_t *x, const vg_sublist_counts_t *y)
{
    return x->literals == y->literals && x->patterns == y->patterns &&
           x->entries == y->entries && x->groups == y->groups;
}

/* Tries add(subj, queue, member) failing its k-th allocation, for k = 0, 1,
 * ... until it needs no more; checks that each failure changed nothing. */
static void add_fails_cleanly(const char *subj, const char *queue, size_t member)
{
    long before_live = live;
    vg_sublist *sl = populated();
    for (long k = 0;; k++) {
        vg_sublist_counts_t c0, c1;
        vg_sublist_counts(sl, &c0);
        uint64_t g0 = vg_sublist_generation(sl);
        failed = false;
        countdown = k;
        vg_status st = vg_sublist_add(sl, subj, strlen(subj), queue, queue ? strlen(queue) : 0,
                                      M(member));
        countdown = -1;
        vg_sublist_counts(sl, &c1);
        if (!failed) {
            cr_assert_eq(st, VG_OK);
            cr_assert_eq(c1.entries, c0.entries + 1, "%s: added", subj);
            cr_assert_gt(k, 0, "the add allocated nothing?");
            break;
        }
        cr_assert_eq(st, VG_ERR_NOMEM, "%s, allocation %ld failed: status %d", subj, k, st);
        cr_assert(same_counts(&c0, &c1), "%s, allocation %ld failed: counts changed", subj, k);
        cr_assert_eq(vg_sublist_generation(sl), g0);
        /* Removing what was not added is harmless and leaves the counts. */
        vg_sublist_remove(sl, subj, strlen(subj), queue, queue ? strlen(queue) : 0, M(member));
        vg_sublist_counts(sl, &c1);
        cr_assert(same_counts(&c0, &c1));
    }
    vg_sublist_destroy(sl);
    cr_assert_eq(live, before_live, "allocations leaked: %ld", live - before_live);
}

Test(sublist_nomem, create_destroy_balanced)
{
    long before = live;
    vg_sublist *sl = vg_sublist_create(retain, release);
    long mid = live;
    vg_sublist_add(sl, "a.b", 3, NULL, 0, M(0));
    long mid2 = live;
    vg_sublist_destroy(sl);
    long after = live;
    cr_assert_eq(after, before, "live allocations: %ld, %ld, %ld, %ld", before, mid, mid2, after);
}

Test(sublist_nomem, add_of_a_new_pattern)
{
    add_fails_cleanly("x.y.z.*.w", "q9", 5);   /* new nodes, a new group */
    add_fails_cleanly("a.b.*.d.>", NULL, 5);   /* a branch off existing nodes */
    add_fails_cleanly("a.b.*", NULL, 9);       /* an existing set that grows */
    add_fails_cleanly("a.b.*", "q7", 9);       /* a new group in an existing set */
}

Test(sublist_nomem, add_of_a_new_literal)
{
    add_fails_cleanly("new.topic", NULL, 5);
    add_fails_cleanly("new.topic", "q1", 5);
    add_fails_cleanly("a.b.c", "q3", 6);
}

Test(sublist_nomem, match_miss)
{
    long before_live = live;
    vg_sublist *sl = populated();
    vg_sublist_cache *c = vg_sublist_cache_create(sl);
    cr_assert_not_null(c);
    const vg_sublist_result *r;
    cr_assert_eq(vg_sublist_match(c, "q.r", 3, &r), VG_OK); /* another entry, kept */
    long held = total_refs();
    for (long k = 0;; k++) {
        failed = false;
        countdown = k;
        vg_status st = vg_sublist_match(c, "a.b.c", 5, &r);
        countdown = -1;
        if (!failed) {
            cr_assert_eq(st, VG_OK);
            cr_assert_eq(r->n, 8, "plain: %zu", r->n);
            cr_assert_eq(r->ngroups, 2);
            break;
        }
        cr_assert_eq(st, VG_ERR_NOMEM, "allocation %ld failed: status %d", k, st);
        cr_assert_eq(r->n + r->ngroups, 0, "an empty result");
        cr_assert_eq(total_refs(), held, "allocation %ld failed: references left", k);
        /* The next match without failures is right (and a miss). */
        cr_assert_eq(vg_sublist_match(c, "a.b.c", 5, &r), VG_OK);
        cr_assert_eq(r->n, 8);
        vg_sublist_cache_destroy(c); /* start again from a cold cache */
        c = vg_sublist_cache_create(sl);
        cr_assert_eq(vg_sublist_match(c, "q.r", 3, &r), VG_OK);
    }
    vg_sublist_cache_destroy(c);
    cr_assert_eq(total_refs(), 0);
    vg_sublist_destroy(sl);
    cr_assert_eq(live, before_live, "allocations leaked: %ld", live - before_live);
}

#else

Test(sublist_nomem, skipped)
{
    cr_skip_test("malloc cannot be replaced under a sanitizer");
}

#endif
