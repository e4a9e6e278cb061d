/* The client's resume bookkeeping (common/client_resume.c): every start,
 * redeliveries dropped, each missing range reported exactly once whatever
 * announces it (OK, GAP, a message that skips), epoch changes, and a
 * randomized run against a plain model of "deliver once, in order, report
 * the rest". Pure: no sockets, no time. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "client_resume.h"

#define E1 0x1111
#define E2 0x2222

static void expect_gap(bool got, const vg_gap *g, uint64_t from, uint64_t to, vg_gap_reason why)
{
    cr_assert(got, "no gap reported, want %llu..%llu", (unsigned long long)from,
              (unsigned long long)to);
    cr_assert_eq(g->from, from, "gap from %llu, want %llu", (unsigned long long)g->from,
                 (unsigned long long)from);
    cr_assert_eq(g->to, to, "gap to %llu, want %llu", (unsigned long long)g->to,
                 (unsigned long long)to);
    cr_assert_eq(g->reason, why);
}

static void sub_is(const vg_resume *r, vg_sub_start start, uint64_t epoch, uint64_t position)
{
    vg_sub_start s;
    uint64_t e, p;
    vg_resume_sub(r, &s, &e, &p);
    cr_assert_eq(s, start);
    cr_assert_eq(e, epoch);
    cr_assert_eq(p, position);
}

static vg_resume_verdict msg(vg_resume *r, uint64_t seq)
{
    bool gapped;
    vg_gap g;
    vg_resume_verdict v = vg_resume_msg(r, seq, &gapped, &g);
    cr_assert(!gapped, "message %llu reported a gap", (unsigned long long)seq);
    return v;
}

Test(resume, a_new_subscription_starts_where_the_broker_says_and_resumes_after_the_last)
{
    vg_resume r;
    vg_gap g;
    vg_resume_init(&r, VG_SUB_NEW, 0, 0);
    cr_assert_not(vg_resume_connected(&r, E1, &g));
    sub_is(&r, VG_SUB_NEW, 0, 0);
    cr_assert_not(vg_resume_started(&r, E1, 40, &g), "the broker's choice is no gap");
    cr_assert_eq(msg(&r, 40), VG_RESUME_DELIVER);
    cr_assert_eq(msg(&r, 41), VG_RESUME_DELIVER);
    /* reconnect: ask for 42 in E1 */
    cr_assert_not(vg_resume_connected(&r, E1, &g));
    sub_is(&r, VG_SUB_SEQ, E1, 42);
    cr_assert_not(vg_resume_started(&r, E1, 42, &g));
    cr_assert_eq(msg(&r, 41), VG_RESUME_DUPLICATE, "a redelivery is dropped");
    cr_assert_eq(msg(&r, 42), VG_RESUME_DELIVER);
}

Test(resume, first_and_ago_are_asked_for_until_there_is_a_position)
{
    vg_resume r;
    vg_gap g;
    vg_resume_init(&r, VG_SUB_AGO, 0, 30000);
    sub_is(&r, VG_SUB_AGO, 0, 30000);
    vg_resume_connected(&r, E1, &g);
    sub_is(&r, VG_SUB_AGO, 0, 30000);
    cr_assert_not(vg_resume_started(&r, E1, 7, &g));
    sub_is(&r, VG_SUB_SEQ, E1, 7);
    vg_resume_init(&r, VG_SUB_FIRST, 0, 0);
    sub_is(&r, VG_SUB_FIRST, 0, 0);
}

Test(resume, a_start_by_sequence_is_owed_from_there)
{
    vg_resume r;
    vg_gap g;
    vg_resume_init(&r, VG_SUB_SEQ, 0, 100); /* "--since 100", current epoch */
    sub_is(&r, VG_SUB_SEQ, 0, 100);
    cr_assert_not(vg_resume_connected(&r, E1, &g));
    sub_is(&r, VG_SUB_SEQ, E1, 100);
    expect_gap(vg_resume_started(&r, E1, 150, &g), &g, 100, 149, VG_GAP_RETENTION);
    cr_assert_eq(msg(&r, 150), VG_RESUME_DELIVER);
}

Test(resume, a_gap_frame_and_a_later_ok_report_each_missing_message_once)
{
    vg_resume r;
    vg_gap g;
    vg_resume_init(&r, VG_SUB_NEW, 0, 0);
    vg_resume_connected(&r, E1, &g);
    vg_resume_started(&r, E1, 1, &g);
    cr_assert_eq(msg(&r, 1), VG_RESUME_DELIVER);
    expect_gap(vg_resume_gap(&r, 2, 10, &g), &g, 2, 10, VG_GAP_RETENTION);
    cr_assert_not(vg_resume_gap(&r, 2, 10, &g), "the same GAP again");
    expect_gap(vg_resume_gap(&r, 5, 12, &g), &g, 11, 12, VG_GAP_RETENTION);
    cr_assert_eq(msg(&r, 13), VG_RESUME_DELIVER);
    vg_resume_connected(&r, E1, &g);
    sub_is(&r, VG_SUB_SEQ, E1, 14);
    expect_gap(vg_resume_started(&r, E1, 20, &g), &g, 14, 19, VG_GAP_RETENTION);
    cr_assert_eq(msg(&r, 19), VG_RESUME_DUPLICATE, "skipped is not deliverable later");
    cr_assert_eq(msg(&r, 20), VG_RESUME_DELIVER);
}

Test(resume, a_message_that_skips_ahead_is_delivered_and_the_hole_reported)
{
    vg_resume r;
    vg_gap g;
    bool gapped;
    vg_resume_init(&r, VG_SUB_NEW, 0, 0);
    vg_resume_connected(&r, E1, &g);
    vg_resume_started(&r, E1, 5, &g);
    cr_assert_eq(vg_resume_msg(&r, 8, &gapped, &g), VG_RESUME_DELIVER);
    expect_gap(gapped, &g, 5, 7, VG_GAP_UNANNOUNCED);
}

Test(resume, another_epoch_reports_unknown_loss_and_starts_the_new_log_from_one)
{
    vg_resume r;
    vg_gap g;
    vg_resume_init(&r, VG_SUB_NEW, 0, 0);
    vg_resume_connected(&r, E1, &g);
    vg_resume_started(&r, E1, 1, &g);
    for (uint64_t s = 1; s <= 5; s++)
        cr_assert_eq(msg(&r, s), VG_RESUME_DELIVER);
    expect_gap(vg_resume_connected(&r, E2, &g), &g, 6, 0, VG_GAP_EPOCH);
    sub_is(&r, VG_SUB_SEQ, E2, 1);
    cr_assert_not(vg_resume_started(&r, E2, 1, &g), "the new log complete: nothing more");
    cr_assert_eq(msg(&r, 1), VG_RESUME_DELIVER, "seq 1 of the new epoch is new");
    /* retention already took the new log's first messages */
    expect_gap(vg_resume_connected(&r, E1, &g), &g, 2, 0, VG_GAP_EPOCH);
    expect_gap(vg_resume_started(&r, E1, 9, &g), &g, 1, 8, VG_GAP_RETENTION);
}

Test(resume, an_ok_in_another_epoch_than_the_position_is_an_epoch_gap)
{
    vg_resume r;
    vg_gap g;
    vg_resume_init(&r, VG_SUB_SEQ, E1, 10);
    cr_assert_not(vg_resume_connected(&r, E1, &g));
    expect_gap(vg_resume_started(&r, E2, 3, &g), &g, 10, 0, VG_GAP_EPOCH);
    sub_is(&r, VG_SUB_SEQ, E2, 3);
    vg_resume_init(&r, VG_SUB_SEQ, E1, 10);
    expect_gap(vg_resume_connected(&r, E2, &g), &g, 10, 0, VG_GAP_EPOCH);
}

/* A model: the broker's log holds 1..N; a random schedule of deliveries
 * (in order, sometimes repeated from earlier after a "reconnect"), drops
 * announced by GAP frames or by the OK's start. The application must see
 * each delivered seq once, in increasing order, and every seq it does not
 * see must be in exactly one reported gap. */
static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

Test(resume, randomized_schedules_deliver_once_in_order_and_account_for_every_message)
{
    enum { N = 5000 };
    for (uint64_t seed = 1; seed <= 200; seed++) {
        uint64_t x = seed * 0x9e3779b97f4a7c15ull;
        uint8_t *seen = calloc(N + 2, 1); /* 1 delivered, 2 reported missing */
        cr_assert_not_null(seen);
        vg_resume r;
        vg_gap g;
        vg_resume_init(&r, VG_SUB_FIRST, 0, 0);
        vg_resume_connected(&r, E1, &g);
        cr_assert_not(vg_resume_started(&r, E1, 1, &g));
        uint64_t cursor = 1, last_app = 0;
        while (cursor <= N) {
            uint64_t roll = rnd(&x) % 100;
            if (roll < 80) { /* deliver the next */
                bool gapped;
                if (vg_resume_msg(&r, cursor, &gapped, &g) == VG_RESUME_DELIVER) {
                    cr_assert_not(gapped);
                    cr_assert_gt(cursor, last_app, "out of order");
                    cr_assert_eq(seen[cursor], 0, "seq %llu twice", (unsigned long long)cursor);
                    seen[cursor] = 1;
                    last_app = cursor;
                }
                cursor++;
            } else if (roll < 88) { /* retention: a GAP frame for a range */
                uint64_t to = cursor + rnd(&x) % 20;
                if (to > N)
                    to = N;
                if (vg_resume_gap(&r, cursor, to, &g)) {
                    for (uint64_t s = g.from; s <= g.to; s++) {
                        cr_assert_eq(seen[s], 0, "seq %llu both seen and missing", (unsigned long long)s);
                        seen[s] = 2;
                    }
                }
                cursor = to + 1;
            } else { /* reconnect: the broker resumes where asked, or later */
                vg_sub_start st;
                uint64_t e, p;
                cr_assert_not(vg_resume_connected(&r, E1, &g));
                vg_resume_sub(&r, &st, &e, &p);
                cr_assert_eq(st, VG_SUB_SEQ);
                cr_assert_eq(e, E1);
                /* the broker may also redeliver from earlier (a resend) */
                uint64_t next = p + rnd(&x) % 5;
                if (rnd(&x) % 3 == 0 && p > 3)
                    next = p - 3; /* it starts earlier than asked: duplicates */
                if (next > N + 1)
                    next = N + 1;
                if (vg_resume_started(&r, E1, next, &g))
                    for (uint64_t s = g.from; s <= g.to; s++) {
                        cr_assert_eq(seen[s], 0);
                        seen[s] = 2;
                    }
                cursor = next;
            }
        }
        for (uint64_t s = 1; s <= N; s++)
            cr_assert_neq(seen[s], 0, "seed %llu: seq %llu neither delivered nor reported",
                          (unsigned long long)seed, (unsigned long long)s);
        free(seen);
    }
}
