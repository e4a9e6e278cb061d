/* The client's subscription state machine (client_subs.h), walked through
 * every transition of the header's diagram and its comments: the stream
 * states, answers, lost connections, renewals and their count, the UNSUB
 * rules, what is deliverable (duplicate topics included), and sids that
 * are never reused. Pure: no client, no socket. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "client_subs.h"

/* ---- helpers ---- */

static vg_subs *s;

static void setup(void)
{
    s = vg_subs_create();
    cr_assert_not_null(s);
}

static void teardown(void) { vg_subs_destroy(s); }

TestSuite(subs, .init = setup, .fini = teardown);

static uint64_t add(const char *topic)
{
    uint64_t sid = 0;
    vg_sub_from from = {VG_SUB_NEW, 0, 0};
    cr_assert_eq(vg_subs_add(s, topic, strlen(topic), &from, &sid), VG_OK);
    return sid;
}

static const char *state_name(vg_sub_state st)
{
    switch (st) {
    case VG_SUB_QUEUED: return "QUEUED";
    case VG_SUB_SENT: return "SENT";
    case VG_SUB_ACTIVE: return "ACTIVE";
    case VG_SUB_RENEW: return "RENEW";
    case VG_SUB_REFUSED: return "REFUSED";
    }
    return "?";
}

static void expect_state(uint64_t sid, vg_sub_state want)
{
    vg_sub_state st;
    cr_assert(vg_subs_state(s, sid, &st), "sid %llu: no state (gone or leaving), want %s",
              (unsigned long long)sid, state_name(want));
    cr_assert_eq(st, want, "sid %llu: %s, want %s", (unsigned long long)sid, state_name(st),
                 state_name(want));
}

static void expect_no_state(uint64_t sid)
{
    vg_sub_state st;
    cr_assert(!vg_subs_state(s, sid, &st), "sid %llu still has a state (%s)",
              (unsigned long long)sid, state_name(st));
}

static vg_sub_event answer(uint64_t sid, bool ok)
{
    char topic[64];
    return vg_subs_answer(s, sid, ok, topic, sizeof topic);
}

/* Renewals emitted, recorded. */
static struct {
    uint64_t sids[16];
    char topics[16][32];
    int n;
    int fail_at; /* emit fails (VG_ERR_NOMEM) on this call, 1-based; 0: never */
} emitted;

static vg_status emit(void *arg, uint64_t sid, const char *topic, size_t len)
{
    (void)arg;
    if (emitted.fail_at != 0 && emitted.n + 1 == emitted.fail_at)
        return VG_ERR_NOMEM;
    emitted.sids[emitted.n] = sid;
    snprintf(emitted.topics[emitted.n], sizeof emitted.topics[0], "%.*s", (int)len, topic);
    emitted.n++;
    return VG_OK;
}

static unsigned renew(void)
{
    memset(&emitted, 0, sizeof emitted);
    unsigned count = 99;
    cr_assert_eq(vg_subs_renew(s, emit, NULL, &count), VG_OK);
    cr_assert_eq(count, (unsigned)emitted.n);
    return count;
}

/* A subscription taken to ACTIVE on the current connection. */
static uint64_t active(const char *topic)
{
    uint64_t sid = add(topic);
    vg_subs_written(s, VG_FRAME_SUB, sid);
    cr_assert_eq(answer(sid, true), VG_SUBEV_SUBSCRIBED);
    return sid;
}

static bool deliverable(const char *topic) { return vg_subs_deliverable(s, topic, strlen(topic)); }

/* ---- the diagram, edge by edge ---- */

Test(subs, add_is_queued_with_sids_from_one)
{
    uint64_t a = add("a"), b = add("b");
    cr_assert_eq(a, 1);
    cr_assert_eq(b, 2);
    expect_state(a, VG_SUB_QUEUED);
    expect_state(b, VG_SUB_QUEUED);
    cr_assert_eq(vg_subs_count(s), 2);
}

Test(subs, queued_written_is_sent_then_ok_is_active)
{
    uint64_t sid = add("t");
    vg_subs_written(s, VG_FRAME_SUB, sid);
    expect_state(sid, VG_SUB_SENT);
    cr_assert_eq(answer(sid, true), VG_SUBEV_SUBSCRIBED);
    expect_state(sid, VG_SUB_ACTIVE);
    cr_assert_eq(vg_subs_renewing(s), 0);
}

Test(subs, sent_err_is_refused_and_kept_until_unsubscribed)
{
    uint64_t sid = add("t");
    vg_subs_written(s, VG_FRAME_SUB, sid);
    char topic[64];
    cr_assert_eq(vg_subs_answer(s, sid, false, topic, sizeof topic), VG_SUBEV_REFUSED);
    cr_assert_str_eq(topic, "t");
    expect_state(sid, VG_SUB_REFUSED);
    vg_subs_lost(s);
    expect_state(sid, VG_SUB_REFUSED); /* not retried */
    cr_assert_eq(renew(), 0);
    cr_assert_eq(vg_subs_count(s), 1);
    cr_assert_eq(vg_subs_remove(s, sid), VG_UNSUB_DONE, "the broker does not have it");
    cr_assert_eq(vg_subs_count(s), 0);
}

Test(subs, queued_stays_queued_when_the_connection_is_lost)
{
    uint64_t sid = add("t");
    vg_subs_lost(s);
    expect_state(sid, VG_SUB_QUEUED); /* its SUB is still in the stream */
    cr_assert_eq(renew(), 0, "a queued SUB is not renewed: it would be sent twice");
    vg_subs_written(s, VG_FRAME_SUB, sid);
    expect_state(sid, VG_SUB_SENT);
}

Test(subs, sent_and_active_become_renew_when_lost)
{
    uint64_t sent = add("sent");
    vg_subs_written(s, VG_FRAME_SUB, sent);
    uint64_t act = active("active");
    vg_subs_lost(s);
    expect_state(sent, VG_SUB_RENEW);
    expect_state(act, VG_SUB_RENEW);
}

Test(subs, renew_sends_each_once_and_counts_them)
{
    uint64_t a = active("a");
    uint64_t b = active("b");
    uint64_t q = add("q");
    vg_subs_lost(s);
    cr_assert_eq(renew(), 2);
    cr_assert_eq(vg_subs_renewing(s), 2);
    cr_assert_eq(emitted.sids[0] + emitted.sids[1], a + b);
    expect_state(a, VG_SUB_SENT);
    expect_state(b, VG_SUB_SENT);
    expect_state(q, VG_SUB_QUEUED);
    cr_assert_eq(renew(), 0, "renewed twice");
    cr_assert_eq(answer(a, true), VG_SUBEV_RESUBSCRIBED);
    cr_assert_eq(vg_subs_renewing(s), 1);
    cr_assert_eq(answer(b, false), VG_SUBEV_REFUSED, "a renewal can be refused");
    cr_assert_eq(vg_subs_renewing(s), 0);
    expect_state(a, VG_SUB_ACTIVE);
    expect_state(b, VG_SUB_REFUSED);
    /* The queued one, once written and answered, is a first subscription. */
    vg_subs_written(s, VG_FRAME_SUB, q);
    cr_assert_eq(answer(q, true), VG_SUBEV_SUBSCRIBED);
}

Test(subs, renewal_topics_are_the_subscribed_ones)
{
    active("x.y");
    vg_subs_lost(s);
    cr_assert_eq(renew(), 1);
    cr_assert_str_eq(emitted.topics[0], "x.y");
}

Test(subs, renew_stops_at_the_first_failure)
{
    active("a");
    active("b");
    active("c");
    vg_subs_lost(s);
    memset(&emitted, 0, sizeof emitted);
    emitted.fail_at = 2;
    unsigned count = 99;
    cr_assert_eq(vg_subs_renew(s, emit, NULL, &count), VG_ERR_NOMEM);
    cr_assert_eq(count, 1);
    cr_assert_eq(vg_subs_renewing(s), 1);
}

Test(subs, a_renewal_lost_again_is_renewed_again)
{
    uint64_t sid = active("t");
    vg_subs_lost(s);
    cr_assert_eq(renew(), 1);
    vg_subs_lost(s); /* before the renewal's answer */
    cr_assert_eq(vg_subs_renewing(s), 0);
    expect_state(sid, VG_SUB_RENEW);
    cr_assert_eq(renew(), 1);
    cr_assert_eq(answer(sid, true), VG_SUBEV_RESUBSCRIBED);
}

/* ---- answers that match nothing ---- */

Test(subs, answers_for_nothing_in_flight_are_unexpected)
{
    cr_assert_eq(answer(42, true), VG_SUBEV_UNEXPECTED, "unknown sid");
    cr_assert_eq(answer(42, false), VG_SUBEV_UNEXPECTED, "unknown sid");
    uint64_t q = add("q");
    cr_assert_eq(answer(q, true), VG_SUBEV_UNEXPECTED, "its SUB was not written");
    expect_state(q, VG_SUB_QUEUED);
    uint64_t a = active("a");
    cr_assert_eq(answer(a, true), VG_SUBEV_UNEXPECTED, "a second OK");
    cr_assert_eq(answer(a, false), VG_SUBEV_UNEXPECTED, "an ERR after OK");
    expect_state(a, VG_SUB_ACTIVE);
    uint64_t r = add("r");
    vg_subs_written(s, VG_FRAME_SUB, r);
    answer(r, false);
    cr_assert_eq(answer(r, true), VG_SUBEV_UNEXPECTED);
    expect_state(r, VG_SUB_REFUSED);
}

Test(subs, answer_topic_is_truncated_to_the_buffer)
{
    uint64_t sid = add("abcdefgh");
    vg_subs_written(s, VG_FRAME_SUB, sid);
    char topic[4] = "zzz";
    cr_assert_eq(vg_subs_answer(s, sid, true, topic, sizeof topic), VG_SUBEV_SUBSCRIBED);
    cr_assert_str_eq(topic, "abc");
}

Test(subs, written_for_an_unknown_sid_or_a_second_time_changes_nothing)
{
    vg_subs_written(s, VG_FRAME_SUB, 77);
    vg_subs_written(s, VG_FRAME_UNSUB, 77);
    uint64_t a = active("a");
    vg_subs_written(s, VG_FRAME_SUB, a);
    expect_state(a, VG_SUB_ACTIVE);
    vg_subs_written(s, VG_FRAME_UNSUB, a); /* no UNSUB queued: ignored */
    cr_assert_eq(answer(a, true), VG_SUBEV_UNEXPECTED);
    expect_state(a, VG_SUB_ACTIVE);
}

/* ---- unsubscribing ---- */

Test(subs, unsubscribe_unknown_or_twice_is_unknown)
{
    cr_assert_eq(vg_subs_remove(s, 5), VG_UNSUB_UNKNOWN);
    uint64_t a = active("a");
    cr_assert_eq(vg_subs_remove(s, a), VG_UNSUB_SEND);
    cr_assert_eq(vg_subs_remove(s, a), VG_UNSUB_UNKNOWN, "already leaving");
}

Test(subs, unsubscribe_active_sends_and_the_answer_removes)
{
    uint64_t a = active("a");
    cr_assert_eq(vg_subs_remove(s, a), VG_UNSUB_SEND);
    expect_no_state(a); /* leaving: no state for the application */
    cr_assert_eq(vg_subs_count(s), 1, "kept until the UNSUB's answer");
    cr_assert(!deliverable("a"));
    cr_assert_eq(answer(a, true), VG_SUBEV_UNEXPECTED, "an answer before the UNSUB was written");
    vg_subs_written(s, VG_FRAME_UNSUB, a);
    cr_assert_eq(answer(a, true), VG_SUBEV_UNSUBSCRIBED);
    cr_assert_eq(vg_subs_count(s), 0);
}

Test(subs, unsub_answered_with_an_error_also_removes)
{
    uint64_t a = active("a");
    vg_subs_remove(s, a);
    vg_subs_written(s, VG_FRAME_UNSUB, a);
    cr_assert_eq(answer(a, false), VG_SUBEV_UNSUBSCRIBED);
    cr_assert_eq(vg_subs_count(s), 0);
}

/* Unsubscribing before the SUB was written: SUB, then UNSUB, both in the
 * stream and answered in order. */
Test(subs, unsubscribe_queued_sends_sub_then_unsub)
{
    uint64_t q = add("q");
    cr_assert_eq(vg_subs_remove(s, q), VG_UNSUB_SEND);
    vg_subs_written(s, VG_FRAME_SUB, q);
    vg_subs_written(s, VG_FRAME_UNSUB, q);
    cr_assert_eq(answer(q, true), VG_SUBEV_SUBSCRIBED, "the SUB's answer comes first");
    cr_assert_eq(vg_subs_count(s), 1);
    cr_assert_eq(answer(q, true), VG_SUBEV_UNSUBSCRIBED);
    cr_assert_eq(vg_subs_count(s), 0);
}

/* ... and a refused SUB whose UNSUB was already queued: the broker answers
 * the UNSUB with no_such_sid, which removes it without another event. */
Test(subs, unsubscribe_queued_then_refused)
{
    uint64_t q = add("q");
    vg_subs_remove(s, q);
    vg_subs_written(s, VG_FRAME_SUB, q);
    vg_subs_written(s, VG_FRAME_UNSUB, q);
    cr_assert_eq(answer(q, false), VG_SUBEV_REFUSED);
    cr_assert_eq(answer(q, false), VG_SUBEV_UNSUBSCRIBED);
    cr_assert_eq(vg_subs_count(s), 0);
}

/* Defect 3: an UNSUB for a SUB the broker never saw. A subscription to be
 * renewed is removed at once, and nothing is sent. */
Test(subs, unsubscribe_renew_is_done_at_once)
{
    uint64_t a = active("a");
    vg_subs_lost(s);
    cr_assert_eq(vg_subs_remove(s, a), VG_UNSUB_DONE);
    cr_assert_eq(vg_subs_count(s), 0);
    cr_assert_eq(renew(), 0);
}

Test(subs, unsubscribe_sent_waits_for_the_unsub_answer)
{
    uint64_t a = add("a");
    vg_subs_written(s, VG_FRAME_SUB, a);
    cr_assert_eq(vg_subs_remove(s, a), VG_UNSUB_SEND, "the broker may have it");
    vg_subs_written(s, VG_FRAME_UNSUB, a);
    cr_assert_eq(answer(a, true), VG_SUBEV_SUBSCRIBED);
    cr_assert_eq(answer(a, true), VG_SUBEV_UNSUBSCRIBED);
    cr_assert_eq(vg_subs_count(s), 0);
}

Test(subs, unsub_written_on_a_lost_connection_removes_the_entry)
{
    uint64_t a = active("a");
    vg_subs_remove(s, a);
    vg_subs_written(s, VG_FRAME_UNSUB, a);
    vg_subs_lost(s);
    cr_assert_eq(vg_subs_count(s), 0, "the broker's copy went with the connection");
    cr_assert_eq(renew(), 0);
}

/* UNSUB still queued when the connection is lost: the SUB is renewed
 * ahead of the stream, so the UNSUB that follows is for a SUB the broker
 * has seen; the answers then remove it. */
Test(subs, unsub_queued_on_a_lost_connection_follows_the_renewal)
{
    uint64_t a = active("a");
    vg_subs_remove(s, a);
    vg_subs_lost(s);
    cr_assert_eq(vg_subs_count(s), 1);
    cr_assert_eq(renew(), 1);
    cr_assert_eq(emitted.sids[0], a);
    cr_assert(!deliverable("a"), "leaving: still not deliverable");
    vg_subs_written(s, VG_FRAME_UNSUB, a);
    cr_assert_eq(answer(a, true), VG_SUBEV_RESUBSCRIBED);
    cr_assert_eq(answer(a, true), VG_SUBEV_UNSUBSCRIBED);
    cr_assert_eq(vg_subs_count(s), 0);
    cr_assert_eq(vg_subs_renewing(s), 0);
}

Test(subs, removing_a_renewal_in_flight_keeps_the_count_right)
{
    uint64_t a = active("a");
    uint64_t b = active("b");
    vg_subs_lost(s);
    cr_assert_eq(renew(), 2);
    cr_assert_eq(vg_subs_remove(s, a), VG_UNSUB_SEND);
    vg_subs_written(s, VG_FRAME_UNSUB, a);
    cr_assert_eq(answer(a, true), VG_SUBEV_RESUBSCRIBED);
    cr_assert_eq(vg_subs_renewing(s), 1);
    cr_assert_eq(answer(a, true), VG_SUBEV_UNSUBSCRIBED);
    cr_assert_eq(vg_subs_renewing(s), 1, "b's renewal is still in flight");
    cr_assert_eq(answer(b, true), VG_SUBEV_RESUBSCRIBED);
    cr_assert_eq(vg_subs_renewing(s), 0);
}

/* ---- cancel and sids ---- */

Test(subs, cancel_forgets_and_sids_are_never_reused)
{
    uint64_t a = add("a");
    vg_subs_cancel(s, a);
    cr_assert_eq(vg_subs_count(s), 0);
    expect_no_state(a);
    uint64_t b = add("a");
    cr_assert_gt(b, a);
    cr_assert_eq(vg_subs_remove(s, b), VG_UNSUB_SEND);
    vg_subs_written(s, VG_FRAME_UNSUB, b);
    answer(b, true);
    uint64_t seen[64] = {a, b};
    int n = 2;
    for (int i = 0; i < 40; i++) {
        uint64_t sid = add(i % 2 ? "x" : "y");
        for (int j = 0; j < n; j++)
            cr_assert_neq(sid, seen[j], "sid %llu reused", (unsigned long long)sid);
        seen[n++] = sid;
        if (i % 3 == 0)
            vg_subs_cancel(s, sid);
        else if (i % 3 == 1)
            vg_subs_remove(s, sid);
    }
    vg_subs_cancel(s, 9999); /* unknown: nothing happens */
}

/* ---- deliverable ---- */

Test(subs, deliverable_follows_the_states)
{
    cr_assert(!deliverable("t"));
    uint64_t q = add("t");
    cr_assert(deliverable("t"), "queued");
    vg_subs_written(s, VG_FRAME_SUB, q);
    cr_assert(deliverable("t"), "sent");
    answer(q, true);
    cr_assert(deliverable("t"), "active");
    vg_subs_lost(s);
    cr_assert(deliverable("t"), "to renew");
    renew();
    answer(q, false);
    cr_assert(!deliverable("t"), "refused");
    cr_assert(!deliverable("t.x"), "topics match exactly");
    cr_assert(!deliverable(""));
}

Test(subs, a_topic_stays_deliverable_while_any_of_its_sids_does)
{
    uint64_t a1 = active("a");
    uint64_t b = active("b");
    uint64_t a2 = active("a");
    add("a"); /* a third, queued */
    vg_subs_remove(s, a1);
    cr_assert(deliverable("a"), "a2 still wants it");
    vg_subs_remove(s, a2);
    cr_assert(deliverable("a"), "the queued one still wants it");
    cr_assert(deliverable("b"));
    vg_subs_remove(s, b);
    cr_assert(!deliverable("b"));
}

static vg_status refuse_sid(void *arg, const vg_sub_view *v)
{
    (void)v;
    ++*(int *)arg;
    return VG_ERR_NOMEM;
}

Test(subs, many_subscriptions_grow_the_table)
{
    uint64_t sids[100];
    char topic[16];
    for (int i = 0; i < 100; i++) {
        snprintf(topic, sizeof topic, "t.%d", i);
        sids[i] = add(topic);
    }
    cr_assert_eq(vg_subs_count(s), 100);
    for (int i = 0; i < 100; i += 2)
        vg_subs_cancel(s, sids[i]);
    for (int i = 1; i < 100; i += 2) {
        expect_state(sids[i], VG_SUB_QUEUED);
        snprintf(topic, sizeof topic, "t.%d", i);
        cr_assert(deliverable(topic));
    }
    cr_assert_eq(vg_subs_count(s), 50);
}

/* ---- durable subscriptions (issue 11) ---- */

static uint64_t add_durable(const char *topic, const char *name)
{
    uint64_t sid = 0;
    vg_sub_from from = {VG_SUB_FIRST, 0, 0};
    cr_assert_eq(vg_subs_add_durable(s, topic, strlen(topic), &from, name, strlen(name), &sid),
                 VG_OK);
    return sid;
}

/* Walks a sid to ACTIVE on the current connection. */
static void activate(uint64_t sid)
{
    vg_subs_written(s, VG_FRAME_SUB, sid);
    char t[32];
    cr_assert_eq(vg_subs_answer(s, sid, true, t, sizeof t), VG_SUBEV_SUBSCRIBED);
}

/* What vg_subs_acks offered: each sid with its acked value, which the walk
 * raises to set_to. */
typedef struct {
    uint64_t sids[8], before[8];
    uint64_t set_to;
    int n;
} ack_walk;

static vg_status note_ack(void *arg, uint64_t sid, const char *topic, size_t len,
                          uint64_t *acked)
{
    (void)topic, (void)len;
    ack_walk *w = arg;
    w->sids[w->n] = sid;
    w->before[w->n++] = *acked;
    if (w->set_to > *acked)
        *acked = w->set_to;
    return VG_OK;
}

Test(subs, durable_names_and_a_durable_taken_over)
{
    uint64_t plain = add("orders"), d = add_durable("orders", "billing");
    const char *name = NULL;
    size_t len = 0;
    cr_assert_not(vg_subs_durable(s, plain, &name, &len));
    cr_assert(vg_subs_durable(s, d, &name, &len));
    cr_assert(len == 7 && memcmp(name, "billing", 7) == 0);
    char t[32], n[80];
    cr_assert_not(vg_subs_taken(s, d, t, sizeof t, n, sizeof n), "taken before its SUB went");
    cr_assert_not(vg_subs_taken(s, plain, t, sizeof t, n, sizeof n), "a plain one taken");
    activate(d);
    cr_assert(vg_subs_taken(s, d, t, sizeof t, n, sizeof n));
    cr_assert_str_eq(t, "orders");
    cr_assert_str_eq(n, "billing");
    expect_state(d, VG_SUB_REFUSED);
    cr_assert_not(vg_subs_taken(s, d, t, sizeof t, n, sizeof n), "taken twice");
    cr_assert(vg_subs_deliverable(s, "orders", 6), "the plain one still does");
    vg_subs_lost(s);
    cr_assert_eq(renew(), 0, "a durable taken over is renewed");
}

/* ACKs go only for a durable whose SUB was written on this connection and
 * is not refused; a queued UNSUB still lets one go ahead of it; the value
 * acknowledged is kept per connection. */
Test(subs, acks_walk_the_durables_the_broker_has)
{
    uint64_t plain = add("p"), queued = add_durable("q", "d"), active = add_durable("a", "d"),
             leaving = add_durable("l", "d"), refused = add_durable("r", "d");
    activate(plain);
    activate(active);
    activate(leaving);
    vg_subs_written(s, VG_FRAME_SUB, refused);
    char t[32];
    cr_assert_eq(vg_subs_answer(s, refused, false, t, sizeof t), VG_SUBEV_REFUSED);
    cr_assert_eq(vg_subs_remove(s, leaving), VG_UNSUB_SEND);
    ack_walk w = {.set_to = 7};
    cr_assert_eq(vg_subs_acks(s, note_ack, &w), VG_OK);
    cr_assert_eq(w.n, 2, "%d durables walked", w.n);
    cr_assert(w.sids[0] + w.sids[1] == active + leaving && w.sids[0] != queued);
    vg_subs_written(s, VG_FRAME_UNSUB, leaving); /* its UNSUB is out: no ACK after it */
    w = (ack_walk){.set_to = 0};
    vg_subs_acks(s, note_ack, &w);
    cr_assert(w.n == 1 && w.sids[0] == active && w.before[0] == 7);
    vg_subs_lost(s);
    cr_assert_eq(renew(), 2, "plain and active");
    w = (ack_walk){.set_to = 0};
    vg_subs_acks(s, note_ack, &w);
    cr_assert(w.n == 1 && w.sids[0] == active && w.before[0] == 0,
              "the next connection is told again: acked %llu", (unsigned long long)w.before[0]);
}

/* A deletion leaves an outcome: OK, a refusal, or a connection lost
 * before the answer; one waiting for its renewal is kept, so that its
 * UNSUB follows the renewal. */
Test(subs, deletions_leave_an_outcome)
{
    uint64_t plain = add("p"), ok = add_durable("a", "d"), no = add_durable("b", "d"),
             lost = add_durable("c", "d"), later = add_durable("e", "d");
    activate(plain);
    activate(ok);
    activate(no);
    activate(lost);
    activate(later);
    cr_assert_eq(vg_subs_remove_delete(s, plain), VG_UNSUB_UNKNOWN, "not a durable");
    cr_assert_eq(vg_subs_remove_delete(s, ok), VG_UNSUB_SEND);
    cr_assert_eq(vg_subs_remove_delete(s, ok), VG_UNSUB_UNKNOWN, "leaving already");
    cr_assert(vg_subs_deleting(s, ok));
    cr_assert_eq(vg_subs_delete_outcome(s, ok), VG_DELETE_PENDING);
    vg_subs_written(s, VG_FRAME_UNSUB, ok);
    char t[32];
    cr_assert_eq(vg_subs_answer(s, ok, true, t, sizeof t), VG_SUBEV_UNSUBSCRIBED);
    cr_assert_eq(vg_subs_delete_outcome(s, ok), VG_DELETE_OK);
    cr_assert_eq(vg_subs_delete_outcome(s, ok), VG_DELETE_REFUSED, "asked twice: forgotten");

    cr_assert_eq(vg_subs_remove_delete(s, no), VG_UNSUB_SEND);
    vg_subs_written(s, VG_FRAME_UNSUB, no);
    cr_assert_eq(vg_subs_answer(s, no, false, t, sizeof t), VG_SUBEV_UNSUBSCRIBED);
    cr_assert_eq(vg_subs_delete_outcome(s, no), VG_DELETE_REFUSED);

    cr_assert_eq(vg_subs_remove_delete(s, lost), VG_UNSUB_SEND);
    vg_subs_written(s, VG_FRAME_UNSUB, lost);
    vg_subs_lost(s);
    cr_assert_eq(vg_subs_delete_outcome(s, lost), VG_DELETE_LOST);

    /* later is in RENEW now: its deletion waits for the next connection. */
    expect_state(later, VG_SUB_RENEW);
    cr_assert_eq(vg_subs_remove_delete(s, later), VG_UNSUB_SEND);
    cr_assert_eq(renew(), 2, "plain, and later renewed before its UNSUB");
    vg_subs_written(s, VG_FRAME_UNSUB, later);
    cr_assert_eq(vg_subs_answer(s, later, true, t, sizeof t), VG_SUBEV_RESUBSCRIBED,
                 "the renewal's answer first");
    cr_assert_eq(vg_subs_delete_outcome(s, later), VG_DELETE_PENDING);
    cr_assert_eq(vg_subs_answer(s, later, true, t, sizeof t), VG_SUBEV_UNSUBSCRIBED);
    cr_assert_eq(vg_subs_delete_outcome(s, later), VG_DELETE_OK);
}

/* What vg_subs_each_sid showed. */
typedef struct {
    vg_sub_view v[8];
    char subjects[8][16];
    int n;
} sid_walk;

static vg_status note_sid(void *arg, const vg_sub_view *v)
{
    sid_walk *w = arg;
    w->v[w->n] = *v;
    snprintf(w->subjects[w->n], sizeof w->subjects[0], "%.*s", (int)v->len, v->subject);
    w->v[w->n].subject = w->subjects[w->n];
    w->n++;
    return VG_OK;
}

/* Issue 12: a queue membership keeps its group's name (and a durable one
 * its durable's); vg_subs_each_sid shows each delivering sid once, with
 * its kind, leaving and refused ones left out; ACKs are offered for queue
 * members as for durables. */
Test(subs, queue_members_and_the_sids_that_deliver)
{
    uint64_t plain = add("a.*"), q = 0, dq = 0;
    vg_sub_from from = {VG_SUB_FIRST, 0, 0};
    cr_assert_eq(vg_subs_add_queue(s, "a.>", 3, &from, NULL, 0, "workers", 7, &q), VG_OK);
    cr_assert_eq(vg_subs_add_queue(s, "b", 1, &from, "bill", 4, "workers", 7, &dq), VG_OK);
    uint64_t gone = add("c"), refused = add("d");
    const char *name = NULL;
    size_t len = 0;
    cr_assert(vg_subs_queue(s, q, &name, &len) && len == 7 && memcmp(name, "workers", 7) == 0);
    cr_assert_not(vg_subs_durable(s, q, NULL, NULL));
    cr_assert(vg_subs_queue(s, dq, NULL, NULL) && vg_subs_durable(s, dq, &name, &len) &&
              len == 4 && memcmp(name, "bill", 4) == 0);
    cr_assert_not(vg_subs_queue(s, plain, NULL, NULL));
    activate(plain);
    activate(q);
    activate(dq);
    activate(gone);
    cr_assert_eq(vg_subs_remove(s, gone), VG_UNSUB_SEND);
    vg_subs_written(s, VG_FRAME_SUB, refused);
    char t[32];
    cr_assert_eq(vg_subs_answer(s, refused, false, t, sizeof t), VG_SUBEV_REFUSED);
    sid_walk w = {.n = 0};
    cr_assert_eq(vg_subs_each_sid(s, note_sid, &w), VG_OK);
    cr_assert_eq(w.n, 3, "%d sids deliver", w.n);
    for (int i = 0; i < w.n; i++) {
        const vg_sub_view *v = &w.v[i];
        if (v->sid == plain)
            cr_assert(!v->queue && !v->durable && strcmp(v->subject, "a.*") == 0);
        else if (v->sid == q)
            cr_assert(v->queue && !v->durable && v->from.start == VG_SUB_FIRST &&
                      strcmp(v->subject, "a.>") == 0);
        else
            cr_assert(v->sid == dq && v->queue && v->durable && strcmp(v->subject, "b") == 0);
    }
    ack_walk a = {.set_to = 0};
    cr_assert_eq(vg_subs_acks(s, note_ack, &a), VG_OK);
    cr_assert_eq(a.n, 2, "ACKs for the two queue members, not the plain sid");
    cr_assert(a.sids[0] + a.sids[1] == q + dq);
    int calls = 0;
    cr_assert_eq(vg_subs_each_sid(s, refuse_sid, &calls), VG_ERR_NOMEM);
    cr_assert_eq(calls, 1, "the walk stops at the first failure");
}
