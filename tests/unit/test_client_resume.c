/* The client library's side of protocol version 2 against the scripted
 * fake broker (client_harness.h): the handshake, subscriptions with a
 * start, resuming after a reconnect without showing a message twice, and
 * gaps reported once each. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "client_harness.h"
#include "proto.h"

TestSuite(client_resume, .init = client_setup, .fini = client_teardown, .timeout = 120);

static void lose_connection(fb_conn *conn, int nth_loss)
{
    fb_close(conn);
    cr_assert(fb_log_wait(nth_loss, fb_ms(5000), "event=disconnected", NULL),
              "the client did not log the lost connection #%d", nth_loss);
}

static bool gaps_at_least(void *arg) { return cb_gaps() >= *(unsigned *)arg; }

static void expect_gap(unsigned i, uint64_t from, uint64_t to, vg_gap_reason reason)
{
    pthread_mutex_lock(&cb.mu);
    vg_gap g = cb.gap[i];
    pthread_mutex_unlock(&cb.mu);
    cr_assert(g.from == from && g.to == to && g.reason == reason,
              "gap %u: %llu..%llu reason %d, expected %llu..%llu reason %d", i,
              (unsigned long long)g.from, (unsigned long long)g.to, (int)g.reason,
              (unsigned long long)from, (unsigned long long)to, (int)reason);
}

/* Reads the next SUB of conn, asserting its start. */
static void expect_sub(fb_conn *conn, uint64_t sid, vg_sub_start start, uint64_t epoch,
                       uint64_t position, const char *what)
{
    vg_frame f;
    fb_expect(conn, VG_FRAME_SUB, &f, fb_ms(5000), what);
    cr_assert(f.form == 2 && f.sid == sid && f.start == start && f.epoch == epoch &&
                  f.position == position,
              "%s: SUB form %d sid %llu start %d epoch %llx position %llu", what, f.form,
              (unsigned long long)f.sid, (int)f.start, (unsigned long long)f.epoch,
              (unsigned long long)f.position);
}

Test(client_resume, handshake_offers_version_2_and_accepts_info_v2)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = start(&o);
    fb_accept(&l, &conn, fb_ms(5000), "the connection");
    vg_frame f;
    fb_expect(&conn, VG_FRAME_CONNECT, &f, fb_ms(5000), "CONNECT");
    cr_assert_eq(f.form, 2, "CONNECT in the version-2 form");
    cr_assert_eq(f.version, VG_PROTO_VERSION);
    cr_assert_neq(f.publisher, 0, "a publisher identity");
    cr_assert_eq(f.resend_from, 1);
    fb_send_info(&conn, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_OK);
    uint64_t sid = 0;
    cr_assert_eq(vg_client_subscribe_from(c, "first.t", VG_SUB_FIRST, 0, 0, &sid), VG_OK);
    expect_sub(&conn, sid, VG_SUB_FIRST, 0, 0, "the first SUB, FIRST");
    cr_assert_eq(vg_client_subscribe_from(c, "bad.t", VG_SUB_NEW, 1, 0, NULL), VG_ERR_ARG);
    cr_assert_eq(vg_client_subscribe_from(c, "bad.t", VG_SUB_SEQ, 1, 0, NULL), VG_ERR_ARG);
    cr_assert_eq(vg_client_subscribe_from(c, "bad.t", (vg_sub_start)7, 0, 0, NULL), VG_ERR_ARG);
    fb_send_ok(&conn, sid);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_OK);
    fb_send_msg_seq(&conn, "first.t", "hello", 5);
    unsigned one = 1;
    cr_assert(wait_until(msgs_at_least, &one, fb_ms(5000)), "no message");
    cr_assert_eq(cb.last_seq, 5);
    cr_assert_eq(cb.last_epoch, FB_EPOCH);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* A vigil 0.1 broker answers INFO version 1: this client needs version 2
 * and gives up for good, saying why, without trying again. */
Test(client_resume, info_version_1_closes_the_client_with_reason_version)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn, again;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = start(&o);
    fb_accept(&l, &conn, fb_ms(5000), "the connection");
    fb_expect(&conn, VG_FRAME_CONNECT, NULL, fb_ms(5000), "CONNECT");
    fb_send_info_v1(&conn, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert(wait_until(closed_called, NULL, fb_ms(5000)), "on_closed not called");
    cr_assert_str_eq(cb.closed_reason, "version");
    cr_assert_str_eq(vg_client_closed_reason(c), "version");
    cr_assert_eq(fb_log_count("event=closed", "reason=version", "needs version 2", NULL), 1);
    cr_assert_eq(vg_client_wait_connected(c, 0), VG_ERR_CLOSED);
    cr_assert_eq(publish(c, "t", "x", 0), VG_ERR_CLOSED);
    cr_assert(!fb_try_accept(&l, &again, fb_ms(300)), "the client tried again");
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* After a reconnect the renewal asks for the message after the last one
 * handed over, in the epoch it came from; messages the broker sends again
 * are dropped, counted as duplicates. */
Test(client_resume, renewal_asks_seq_last_plus_one_and_redeliveries_are_dropped)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    uint64_t sid = must_subscribe(c, "news");
    expect_sub(&c1, sid, VG_SUB_NEW, 0, 0, "the first SUB");
    fb_send_ok(&c1, sid); /* next = 1 */
    for (int i = 1; i <= 3; i++)
        fb_send_msg(&c1, "news", "m");
    unsigned three = 3;
    cr_assert(wait_until(msgs_at_least, &three, fb_ms(5000)), "3 messages");
    lose_connection(&c1, 1);

    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    expect_sub(&c2, sid, VG_SUB_SEQ, FB_EPOCH, 4, "the renewal");
    /* A broker that starts earlier than asked: 2 and 3 again, then 4. */
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_ok2(&b, sid, FB_EPOCH, 2), VG_OK);
    fb_send_raw(&c2, b.data, b.len);
    vg_buf_free(&b);
    fb_send_msg_seq(&c2, "news", "again", 2);
    fb_send_msg_seq(&c2, "news", "again", 3);
    fb_send_msg_seq(&c2, "news", "four", 4);
    unsigned four = 4;
    cr_assert(wait_until(msgs_at_least, &four, fb_ms(5000)), "the 4th message");
    fb_barrier(&c2, fb_ms(5000), NULL);
    cr_assert_eq(cb_msgs(), 4, "a message shown twice");
    cr_assert_str_eq(cb.last_payload, "four");
    cr_assert_eq(cb.last_seq, 4);
    vg_client_stats s = checked_stats(c, "after the redeliveries");
    cr_assert_eq(s.duplicates, 2);
    cr_assert_eq(s.received, 4);
    cr_assert_eq(cb_gaps(), 0);
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* A GAP frame reaches on_gap once with its range; the same range again, or
 * a part of it, is not news; an OK that starts past the position owed is a
 * gap too, and a MSG that skips ahead without a word is reported as such. */
Test(client_resume, gaps_reach_on_gap_exactly_once)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    uint64_t sid = 0;
    cr_assert_eq(vg_client_subscribe_from(c, "g.t", VG_SUB_SEQ, FB_EPOCH, 10, &sid), VG_OK);
    expect_sub(&c1, sid, VG_SUB_SEQ, FB_EPOCH, 10, "SUB SEQ 10");
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_ok2(&b, sid, FB_EPOCH, 12), VG_OK); /* 10, 11 are gone */
    fb_send_raw(&c1, b.data, b.len);
    vg_buf_free(&b);
    unsigned one = 1;
    cr_assert(wait_until(gaps_at_least, &one, fb_ms(5000)), "no gap from OK");
    expect_gap(0, 10, 11, VG_GAP_RETENTION);
    fb_send_msg_seq(&c1, "g.t", "12", 12);
    fb_send_gap(&c1, sid, "g.t", 13, 20, VG_GAP_RETENTION);
    fb_send_gap(&c1, sid, "g.t", 13, 20, VG_GAP_RETENTION);
    fb_send_gap(&c1, sid, "g.t", 15, 18, VG_GAP_RETENTION);
    fb_send_msg_seq(&c1, "g.t", "21", 21);
    fb_send_msg_seq(&c1, "g.t", "25", 25);
    fb_barrier(&c1, fb_ms(5000), NULL);
    cr_assert_eq(cb_gaps(), 3, "%u gaps", cb_gaps());
    expect_gap(1, 13, 20, VG_GAP_RETENTION);
    expect_gap(2, 22, 24, VG_GAP_UNANNOUNCED);
    cr_assert_str_eq(cb.gap_topic, "g.t");
    cr_assert_eq(cb_msgs(), 3);
    vg_client_stats s = checked_stats(c, "after the gaps");
    cr_assert_eq(s.gaps, 3);
    cr_assert_eq(s.missed, 2 + 8 + 3);

    /* The broker restarted without its log: a new epoch in INFO is a gap
     * (from the message after the last one, to unknown), and the renewal
     * asks for the new log from its first message. */
    lose_connection(&c1, 1);
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    c2.epoch = FB_EPOCH + 1;
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    expect_sub(&c2, sid, VG_SUB_SEQ, FB_EPOCH + 1, 1, "the renewal in the new epoch");
    unsigned four = 4;
    cr_assert(wait_until(gaps_at_least, &four, fb_ms(5000)), "no epoch gap");
    expect_gap(3, 26, 0, VG_GAP_EPOCH);
    fb_send_gap(&c2, sid, "g.t", 26, 0, VG_GAP_EPOCH); /* told already */
    fb_send_ok(&c2, sid);
    fb_send_msg(&c2, "g.t", "new 1");
    cr_assert(wait_until(msgs_at_least, &four, fb_ms(5000)), "no message in the new epoch");
    fb_barrier(&c2, fb_ms(5000), NULL);
    cr_assert_eq(cb_gaps(), 4);
    cr_assert_eq(cb.last_seq, 1);
    cr_assert_eq(cb.last_epoch, FB_EPOCH + 1);
    s = checked_stats(c, "after the new epoch");
    cr_assert_eq(s.missed, 13, "an epoch gap has no known size");
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* Two subscriptions to one topic share one position: the second OK (the
 * broker's shared cursor, possibly ahead of messages still on their way)
 * is no gap, and each message is handed over once per sid (copy 0, then
 * copy 1). */
Test(client_resume, two_sids_on_a_topic_share_one_position)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t a = must_subscribe(c, "both.t");
    expect_sub(&conn, a, VG_SUB_NEW, 0, 0, "SUB a");
    fb_send_ok(&conn, a);
    uint64_t b2 = 0;
    cr_assert_eq(vg_client_subscribe_from(c, "both.t", VG_SUB_FIRST, 0, 0, &b2), VG_OK);
    expect_sub(&conn, b2, VG_SUB_FIRST, 0, 0, "SUB b");
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_ok2(&b, b2, FB_EPOCH, 3), VG_OK); /* 1, 2 still on their way */
    fb_send_raw(&conn, b.data, b.len);
    vg_buf_free(&b);
    fb_send_msg(&conn, "both.t", "1");
    fb_send_msg(&conn, "both.t", "2");
    fb_barrier(&conn, fb_ms(5000), NULL);
    cr_assert_eq(cb_msgs(), 4, "each message once per sid");
    cr_assert_eq(cb_firsts(), 2, "each message once with copy 0");
    cr_assert_eq(cb_on_sid(a), 2);
    cr_assert_eq(cb_on_sid(b2), 2);
    cr_assert_eq(cb_gaps(), 0);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}
