/* Wildcard subscriptions (issue 12), the client's side, against the
 * scripted fake broker (client_harness.h): a message dispatched once to
 * each sid whose subject matches it, POS frames placing a pattern's topic
 * positions (gaps as for an OK), and a pattern's renewal after a reconnect
 * (a POS per topic it has a position for, then SUB SEQ 0; FIRST after an
 * epoch change), durable patterns acknowledged per topic. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "client_harness.h"
#include "proto.h"

TestSuite(client_wildcard, .init = client_setup, .fini = client_teardown, .timeout = 120);

static void expect_gap(unsigned i, uint64_t sid, uint64_t from, uint64_t to,
                       vg_gap_reason reason)
{
    pthread_mutex_lock(&cb.mu);
    vg_gap g = cb.gap[i];
    pthread_mutex_unlock(&cb.mu);
    cr_assert(g.sid == sid && g.from == from && g.to == to && g.reason == reason,
              "gap %u: sid %llu %llu..%llu reason %d, expected sid %llu %llu..%llu reason %d", i,
              (unsigned long long)g.sid, (unsigned long long)g.from, (unsigned long long)g.to,
              (int)g.reason, (unsigned long long)sid, (unsigned long long)from,
              (unsigned long long)to, (int)reason);
}

/* Reads the next SUB, asserting its sid, subject, form and start. */
static void expect_sub(fb_conn *conn, uint64_t sid, const char *subject, int form,
                       vg_sub_start start, uint64_t epoch, uint64_t position, const char *what)
{
    vg_frame f;
    fb_expect(conn, VG_FRAME_SUB, &f, fb_ms(5000), what);
    cr_assert(f.form == form && f.sid == sid && f.start == start && f.epoch == epoch &&
                  f.position == position && f.topic_len == strlen(subject) &&
                  memcmp(f.topic, subject, f.topic_len) == 0,
              "%s: SUB form %d sid %llu %.*s start %d epoch %llx position %llu", what, f.form,
              (unsigned long long)f.sid, (int)f.topic_len, f.topic, (int)f.start,
              (unsigned long long)f.epoch, (unsigned long long)f.position);
}

static uint64_t sub_ok(vg_client *c, fb_conn *conn, const char *subject)
{
    uint64_t sid = must_subscribe(c, subject);
    expect_sub(conn, sid, subject, 2, VG_SUB_NEW, 0, 0, subject);
    fb_send_ok(conn, sid);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_OK);
    return sid;
}

static bool gaps_at_least(void *arg) { return cb_gaps() >= *(unsigned *)arg; }

static void lose_connection(fb_conn *conn, int nth_loss)
{
    fb_close(conn);
    cr_assert(fb_log_wait(nth_loss, fb_ms(5000), "event=disconnected", NULL),
              "the client did not log the lost connection #%d", nth_loss);
}

Test(client_wildcard, bad_patterns_are_refused_and_a_pattern_takes_no_seq)
{
    vg_client_opts o = opts_for(fb_dead_port());
    vg_client *c = start(&o);
    const char *bad[] = {"a*", "a.>.b", ">b", "a.*b", "a..*", ".>", "*.", "a b.*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(vg_client_subscribe(c, bad[i], NULL), VG_ERR_BAD_TOPIC, "%s", bad[i]);
    const char *good[] = {"*", ">", "a.*", "a.>", "*.b.>", "$SYS.>", "a.*.c"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert_eq(vg_client_subscribe(c, good[i], NULL), VG_OK, "%s", good[i]);
    cr_assert_eq(vg_client_subscribe_from(c, "a.*", VG_SUB_SEQ, 0, 5, NULL), VG_ERR_ARG);
    cr_assert_eq(vg_client_subscribe_from(c, "a.*", VG_SUB_FIRST, 0, 0, NULL), VG_OK);
    cr_assert_eq(vg_client_subscribe_from(c, "a.*", VG_SUB_AGO, 0, 500, NULL), VG_OK);
    vg_client_destroy(c);
}

/* A literal, a.* and a.> on a.b: each sid once per message, in sid order,
 * the first with copy 0; a.c reaches the two patterns, a.b.c only a.>, a
 * redelivery none, a "$SYS" topic no pattern that begins with a wildcard;
 * an unsubscribed sid nothing more. */
Test(client_wildcard, a_message_reaches_each_matching_sid_once)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t lit = sub_ok(c, &conn, "a.b");
    uint64_t star = sub_ok(c, &conn, "a.*");
    uint64_t rest = sub_ok(c, &conn, "a.>");
    uint64_t sys = sub_ok(c, &conn, "*.stats");
    uint64_t other = sub_ok(c, &conn, "b.*");
    fb_send_msg_seq(&conn, "a.b", "1", 1);
    fb_send_msg_seq(&conn, "a.b", "2", 2);
    fb_send_msg_seq(&conn, "a.b", "2 again", 2);
    fb_send_pos(&conn, star, "a.c", FB_EPOCH, 1);
    fb_send_msg_seq(&conn, "a.c", "c", 1);
    fb_send_msg_seq(&conn, "a.b.c", "deep", 1);
    fb_send_msg_seq(&conn, "$SYS.stats", "{}", 1);
    fb_send_msg_seq(&conn, "b.x", "x", 1);
    fb_send_msg_seq(&conn, "c.x", "nobody's", 1);
    fb_barrier(&conn, fb_ms(5000), NULL);
    cr_assert_eq(cb_on_sid(lit), 2);
    cr_assert_eq(cb_on_sid(star), 3);
    cr_assert_eq(cb_on_sid(rest), 4);
    cr_assert_eq(cb_on_sid(sys), 0, "*.stats matched a $SYS topic");
    cr_assert_eq(cb_on_sid(other), 1);
    cr_assert_eq(cb_msgs(), 10);
    cr_assert_eq(cb_firsts(), 5, "one copy 0 per message");
    for (unsigned i = 0; i < 3; i++) {
        cb_delivery d = cb_delivery_at(i);
        uint64_t want[3] = {lit, star, rest};
        cr_assert(d.sid == want[i] && d.copy == i && d.seq == 1 && strcmp(d.topic, "a.b") == 0,
                  "call %u: sid %llu copy %u seq %llu %s", i, (unsigned long long)d.sid, d.copy,
                  (unsigned long long)d.seq, d.topic);
    }
    vg_client_stats s = checked_stats(c, "after the dispatch");
    cr_assert_eq(s.duplicates, 1, "the redelivery of a.b 2 dropped once, not once per sid");
    cr_assert_eq(s.received, 10);

    cr_assert_eq(vg_client_unsubscribe(c, star), VG_OK);
    fb_send_msg_seq(&conn, "a.b", "3", 3);
    fb_send_msg_seq(&conn, "a.c", "c2", 2);
    fb_barrier(&conn, fb_ms(5000), NULL);
    cr_assert_eq(cb_on_sid(star), 3, "an unsubscribed pattern still delivered");
    cr_assert_eq(cb_on_sid(lit), 3);
    cr_assert_eq(cb_on_sid(rest), 6);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* A POS places its topic's position (the broker's choice for a new
 * pattern: no gap); a second one on the connection changes nothing; a MSG
 * with no POS before it starts its topic; gaps go to every sid of the
 * topic, once each. */
Test(client_wildcard, pos_frames_place_positions_and_gaps_reach_each_sid)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t p = 0;
    cr_assert_eq(vg_client_subscribe_from(c, "p.*", VG_SUB_FIRST, 0, 0, &p), VG_OK);
    expect_sub(&conn, p, "p.*", 2, VG_SUB_FIRST, 0, 0, "the pattern's SUB");
    fb_send_pos(&conn, p, "p.a", FB_EPOCH, 5); /* before the OK, as a broker sends it */
    fb_send_ok(&conn, p);
    cr_assert_eq(vg_client_wait_subscribed(c, p, fb_ms(5000)), VG_OK);
    fb_send_msg_seq(&conn, "p.a", "5", 5);
    fb_send_pos(&conn, p, "p.a", FB_EPOCH, 20); /* not the first: ignored */
    fb_send_msg_seq(&conn, "p.a", "6", 6);
    fb_send_msg_seq(&conn, "p.b", "3", 3); /* no POS: the start */
    fb_barrier(&conn, fb_ms(5000), NULL);
    cr_assert_eq(cb_msgs(), 3);
    cr_assert_eq(cb_gaps(), 0, "a position the broker chose is no gap");

    uint64_t lit = sub_ok(c, &conn, "p.a"); /* joins p.a's position */
    fb_send_gap(&conn, p, "p.a", 7, 9, VG_GAP_RETENTION);
    fb_send_gap(&conn, lit, "p.a", 7, 9, VG_GAP_RETENTION); /* the same: no news */
    fb_send_msg_seq(&conn, "p.a", "12", 12);
    fb_barrier(&conn, fb_ms(5000), NULL);
    cr_assert_eq(cb_gaps(), 4, "two gaps, each to both sids");
    expect_gap(0, p, 7, 9, VG_GAP_RETENTION);
    expect_gap(1, lit, 7, 9, VG_GAP_RETENTION);
    expect_gap(2, p, 10, 11, VG_GAP_UNANNOUNCED);
    expect_gap(3, lit, 10, 11, VG_GAP_UNANNOUNCED);
    pthread_mutex_lock(&cb.mu);
    cr_assert(cb.gap[0].copy == 0 && cb.gap[1].copy == 1);
    pthread_mutex_unlock(&cb.mu);
    vg_client_stats s = checked_stats(c, "after the gaps");
    cr_assert_eq(s.gaps, 2, "gaps counted once each");
    cr_assert_eq(s.missed, 5);
    cr_assert_eq(cb_on_sid(lit), 1);
    cr_assert_eq(cb_on_sid(p), 4);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* Reads POS frames until the SUB of sid, recording each (topic, next). */
static int read_renewal(fb_conn *conn, uint64_t sid, char topics[][16], uint64_t *next,
                        vg_frame *sub)
{
    int n = 0;
    for (;;) {
        vg_frame f;
        cr_assert_eq(fb_read(conn, &f, fb_ms(5000)), FB_FRAME, "the renewal");
        if (f.type == VG_FRAME_SUB) {
            *sub = f;
            return n;
        }
        cr_assert_eq(f.type, VG_FRAME_POS, "a POS or the SUB, got %s", vg_frame_type_name(f.type));
        cr_assert(f.sid == sid && f.epoch == FB_EPOCH && n < 8, "POS sid %llu",
                  (unsigned long long)f.sid);
        snprintf(topics[n], sizeof topics[n], "%.*s", (int)f.topic_len, f.topic);
        next[n++] = f.next;
    }
}

static uint64_t next_for(char topics[][16], const uint64_t *next, int n, const char *topic)
{
    for (int i = 0; i < n; i++)
        if (strcmp(topics[i], topic) == 0)
            return next[i];
    return 0;
}

/* A pattern whose OK came is renewed with a POS per topic it has a
 * position for (next: the message after the last one), then SUB SEQ 0;
 * the broker's POS for a known topic beyond it is a RETENTION gap, and so
 * is one for a topic new to the client beyond 1 (reported once, whether
 * the broker's GAP comes too); a pattern never answered asks for its start
 * again. After an epoch change: EPOCH gaps and SUB FIRST, no POS. */
Test(client_wildcard, a_pattern_resumes_its_topics_after_a_reconnect)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2, c3;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    uint64_t p = sub_ok(c, &c1, "r.*");
    uint64_t silent = 0;
    cr_assert_eq(vg_client_subscribe_from(c, "s.>", VG_SUB_FIRST, 0, 0, &silent), VG_OK);
    expect_sub(&c1, silent, "s.>", 2, VG_SUB_FIRST, 0, 0, "a SUB left unanswered");
    fb_send_msg_seq(&c1, "r.a", "a4", 4);
    fb_send_msg_seq(&c1, "r.b", "b1", 1);
    fb_send_msg_seq(&c1, "r.b", "b2", 2);
    fb_barrier(&c1, fb_ms(5000), NULL);
    cr_assert_eq(cb_msgs(), 3);
    lose_connection(&c1, 1);

    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    char topics[8][16];
    uint64_t next[8];
    vg_frame sub;
    int n = read_renewal(&c2, p, topics, next, &sub);
    vg_frame s2;
    fb_expect(&c2, VG_FRAME_SUB, &s2, fb_ms(5000), "the unanswered one's renewal");
    if (sub.sid != p) { /* renewals may come in either order */
        vg_frame t = sub;
        sub = s2;
        s2 = t;
    }
    cr_assert_eq(n, 2, "a POS per topic with a position");
    cr_assert_eq(next_for(topics, next, n, "r.a"), 5);
    cr_assert_eq(next_for(topics, next, n, "r.b"), 3);
    cr_assert(sub.sid == p && sub.form == 2 && sub.start == VG_SUB_SEQ && sub.position == 0,
              "SUB sid %llu form %d start %d position %llu", (unsigned long long)sub.sid,
              sub.form, (int)sub.start, (unsigned long long)sub.position);
    cr_assert(s2.sid == silent && s2.start == VG_SUB_FIRST && s2.position == 0,
              "the unanswered pattern asks for its start again");
    fb_send_pos(&c2, p, "r.a", FB_EPOCH, 9); /* 5..8 dropped meanwhile */
    fb_send_pos(&c2, p, "r.b", FB_EPOCH, 3);
    fb_send_pos(&c2, p, "r.new", FB_EPOCH, 1);
    fb_send_pos(&c2, p, "r.late", FB_EPOCH, 4); /* new to the client: owed from 1 */
    fb_send_gap(&c2, p, "r.late", 1, 3, VG_GAP_RETENTION); /* the broker's word: no news */
    fb_send_ok(&c2, p);
    fb_send_msg_seq(&c2, "r.a", "a9", 9);
    fb_send_msg_seq(&c2, "r.b", "b2 again", 2);
    fb_send_msg_seq(&c2, "r.new", "n1", 1);
    fb_barrier(&c2, fb_ms(5000), NULL);
    cr_assert_eq(cb_gaps(), 2);
    expect_gap(0, p, 5, 8, VG_GAP_RETENTION);
    expect_gap(1, p, 1, 3, VG_GAP_RETENTION);
    cr_assert_eq(cb_msgs(), 5, "b2 shown twice, or a9/n1 missing");
    lose_connection(&c2, 2);

    fb_accept(&l, &c3, fb_ms(5000), "the reconnection to a new log");
    c3.epoch = FB_EPOCH + 1;
    fb_handshake(&c3, VG_DEFAULT_MAX_PAYLOAD);
    vg_frame f;
    for (int i = 0; i < 2; i++) {
        fb_expect(&c3, VG_FRAME_SUB, &f, fb_ms(5000), "a renewal in the new epoch, no POS");
        if (f.sid == p)
            cr_assert(f.start == VG_SUB_FIRST && f.epoch == 0 && f.position == 0,
                      "the pattern from the new log's first message");
    }
    unsigned six = 6;
    cr_assert(wait_until(gaps_at_least, &six, fb_ms(5000)), "an EPOCH gap per topic");
    /* r.a, r.b, r.new, r.late: after the last of each */
    const uint64_t from[6] = {0, 0, 10, 3, 2, 4};
    for (unsigned i = 2; i < 6; i++)
        expect_gap(i, p, from[i], 0, VG_GAP_EPOCH);
    fb_send_pos(&c3, p, "r.a", c3.epoch, 3);
    fb_send_ok(&c3, p);
    fb_barrier(&c3, fb_ms(5000), NULL);
    cr_assert_eq(cb_gaps(), 7, "four EPOCH gaps, then 1..2 of the new log");
    expect_gap(6, p, 1, 2, VG_GAP_RETENTION);
    vg_client_destroy(c);
    fb_close(&c3);
    fb_unlisten(&l);
}

static bool next_ack(fb_conn *conn, int timeout_ms, vg_frame *ack)
{
    int64_t deadline = fb_now() + timeout_ms;
    for (;;) {
        int64_t left = deadline - fb_now();
        if (left <= 0)
            return false;
        fb_result r = fb_read(conn, ack, (int)left);
        if (r == FB_TIMEOUT)
            return false;
        cr_assert_eq(r, FB_FRAME, "waiting for an ACK: %s", fb_result_name(r));
        if (ack->type == VG_FRAME_ACK)
            return true;
        cr_assert(ack->type == VG_FRAME_PONG, "waiting for an ACK, got %s",
                  vg_frame_type_name(ack->type));
    }
}

/* A durable pattern is acknowledged per topic with the 4-element ACK. */
Test(client_wildcard, a_durable_pattern_acknowledges_each_topic)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t sid = 0;
    cr_assert_eq(vg_client_subscribe_durable(c, "d.*", "dn", VG_SUB_FIRST, 0, 0, &sid), VG_OK);
    expect_sub(&conn, sid, "d.*", 3, VG_SUB_FIRST, 0, 0, "the durable pattern's SUB");
    fb_send_ok(&conn, sid);
    for (uint64_t i = 1; i <= 3; i++)
        fb_send_msg_seq(&conn, "d.a", "a", i);
    fb_send_msg_seq(&conn, "d.b", "b", 7);
    uint64_t got[2] = {0, 0};
    for (int i = 0; i < 8 && (got[0] != 3 || got[1] != 7); i++) {
        vg_frame f;
        cr_assert(next_ack(&conn, fb_ms(5000), &f), "no ACK");
        cr_assert(f.form == 3 && f.sid == sid, "ACK form %d sid %llu", f.form,
                  (unsigned long long)f.sid);
        int k = f.topic_len == 3 && memcmp(f.topic, "d.b", 3) == 0;
        cr_assert(k || (f.topic_len == 3 && memcmp(f.topic, "d.a", 3) == 0), "ACK topic");
        cr_assert_gt(f.seq, got[k], "ACKs go up");
        got[k] = f.seq;
    }
    cr_assert(got[0] == 3 && got[1] == 7, "ACKs d.a %llu d.b %llu", (unsigned long long)got[0],
              (unsigned long long)got[1]);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* A callback that unsubscribes a later sid, and subscribes a new one (the
 * test reads what it did after a barrier, through atomics). */
static struct {
    vg_client *c;
    uint64_t first, later;
    _Atomic uint64_t added;
    _Atomic unsigned calls[8];
} cbu;

static void on_msg_unsub(void *ud, const vg_msg *m)
{
    (void)ud;
    if (m->sid < 8)
        cbu.calls[m->sid]++;
    if (m->sid == cbu.first && cbu.later != 0) {
        vg_client_unsubscribe(cbu.c, cbu.later);
        uint64_t added = 0;
        vg_client_subscribe(cbu.c, "u.>", &added);
        atomic_store(&cbu.added, added);
        cbu.later = 0;
    }
}

/* On the I/O thread, on_msg for the first sid unsubscribes the third: the
 * message does not reach it (its turn had not come); the sid subscribed
 * from the callback does not get the message being dispatched either. */
Test(client_wildcard, a_callback_unsubscribing_a_later_sid_stops_the_message_there)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    o.on_msg = on_msg_unsub;
    vg_client *c = connected_client(&l, &conn, &o);
    cbu.c = c;
    cbu.first = sub_ok(c, &conn, "u.a");
    uint64_t middle = sub_ok(c, &conn, "u.*");
    cbu.later = sub_ok(c, &conn, "*.a");
    uint64_t later = cbu.later;
    fb_send_msg_seq(&conn, "u.a", "1", 1);
    fb_barrier(&conn, fb_ms(5000), NULL);
    cr_assert_eq(cbu.calls[cbu.first], 1);
    cr_assert_eq(cbu.calls[middle], 1);
    cr_assert_eq(cbu.calls[later], 0, "the message reached a sid unsubscribed before its turn");
    uint64_t added = atomic_load(&cbu.added);
    cr_assert(added != 0 && added < 8);
    cr_assert_eq(cbu.calls[added], 0, "a sid subscribed during the dispatch got the message");
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}
