/* Queue groups (issue 12), the client's side, against the scripted fake
 * broker (client_harness.h): the eight-element SUB, deliveries routed by
 * the sid in the 5-element MSG (not by topic, and not through the topic's
 * position: a member gets sparse seqs, which are no gap), an exact repeat
 * dropped, 4-element ACKs batched per (sid, topic), and the same SUB again
 * after a reconnect. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "client_harness.h"
#include "proto.h"

TestSuite(client_queue, .init = client_setup, .fini = client_teardown, .timeout = 120);

/* Reads the next SUB, asserting the queue shape and its fields (durable
 * NULL: not durable). */
static void expect_queue_sub(fb_conn *conn, uint64_t sid, const char *subject, const char *queue,
                             const char *durable, vg_sub_start start, const char *what)
{
    vg_frame f;
    fb_expect(conn, VG_FRAME_SUB, &f, fb_ms(5000), what);
    cr_assert(f.form == 4 && f.sid == sid && f.start == start &&
                  f.topic_len == strlen(subject) && memcmp(f.topic, subject, f.topic_len) == 0,
              "%s: SUB form %d sid %llu %.*s start %d", what, f.form, (unsigned long long)f.sid,
              (int)f.topic_len, f.topic, (int)f.start);
    cr_assert(f.queue_len == strlen(queue) && memcmp(f.queue, queue, f.queue_len) == 0,
              "%s: queue %.*s", what, (int)f.queue_len, f.queue);
    if (durable == NULL)
        cr_assert(f.durable == NULL || f.durable_len == 0, "%s: a durable name", what);
    else
        cr_assert(f.durable != NULL && f.durable_len == strlen(durable) &&
                      memcmp(f.durable, durable, f.durable_len) == 0,
                  "%s: durable %.*s", what, (int)f.durable_len, f.durable);
}

/* Reads frames (PONGs skipped) until an ACK; false if none came in time. */
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

static void expect_ack(fb_conn *conn, uint64_t sid, uint64_t seq, const char *topic,
                       const char *what)
{
    vg_frame f;
    cr_assert(next_ack(conn, fb_ms(5000), &f), "%s: no ACK", what);
    cr_assert(f.form == 3 && f.sid == sid && f.seq == seq && f.topic_len == strlen(topic) &&
                  memcmp(f.topic, topic, f.topic_len) == 0,
              "%s: ACK form %d sid %llu seq %llu %.*s", what, f.form, (unsigned long long)f.sid,
              (unsigned long long)f.seq, (int)f.topic_len, f.topic);
}

static void lose_connection(fb_conn *conn, int nth_loss)
{
    fb_close(conn);
    cr_assert(fb_log_wait(nth_loss, fb_ms(5000), "event=disconnected", NULL),
              "the client did not log the lost connection #%d", nth_loss);
}

Test(client_queue, bad_names_are_refused)
{
    vg_client_opts o = opts_for(fb_dead_port());
    vg_client *c = start(&o);
    cr_assert_eq(vg_client_subscribe_queue(c, "jobs", NULL, NULL, VG_SUB_NEW, 0, 0, NULL),
                 VG_ERR_ARG);
    cr_assert_eq(vg_client_subscribe_queue(c, "jobs", "", NULL, VG_SUB_NEW, 0, 0, NULL),
                 VG_ERR_ARG);
    cr_assert_eq(vg_client_subscribe_queue(c, "jobs", "a b", NULL, VG_SUB_NEW, 0, 0, NULL),
                 VG_ERR_ARG);
    cr_assert_eq(vg_client_subscribe_queue(c, "jobs", "w", "bad name", VG_SUB_NEW, 0, 0, NULL),
                 VG_ERR_ARG);
    cr_assert_eq(vg_client_subscribe_queue(c, "jo*bs", "w", NULL, VG_SUB_NEW, 0, 0, NULL),
                 VG_ERR_BAD_TOPIC);
    cr_assert_eq(vg_client_subscribe_queue(c, "jobs.*", "w", NULL, VG_SUB_SEQ, 0, 3, NULL),
                 VG_ERR_ARG, "SEQ on a pattern");
    cr_assert_eq(vg_client_subscribe_queue(c, "jobs", "w", "d", VG_SUB_SEQ, 0, 3, NULL), VG_OK);
    vg_client_destroy(c);
}

/* Two groups and a plain sid on one pattern: each 5-element MSG reaches
 * only the sid it names (copy 0), a 4-element one only the plain sid;
 * sparse seqs are no gap, a repeat to the member is dropped, a MSG naming
 * a sid that is no queue member of ours is dropped. ACKs: 4 elements, one
 * per (sid, topic), the highest seq processed. */
Test(client_queue, deliveries_go_by_sid_without_gaps_and_are_acknowledged_per_topic)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    o.ack_delay_ms = 200; /* every message below in one round of ACKs */
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t w = 0, x = 0;
    cr_assert_eq(vg_client_subscribe_queue(c, "jobs.*", "workers", NULL, VG_SUB_NEW, 0, 0, &w),
                 VG_OK);
    expect_queue_sub(&conn, w, "jobs.*", "workers", NULL, VG_SUB_NEW, "the member's SUB");
    fb_send_ok(&conn, w);
    cr_assert_eq(vg_client_subscribe_queue(c, "jobs.*", "audit", NULL, VG_SUB_FIRST, 0, 0, &x),
                 VG_OK);
    expect_queue_sub(&conn, x, "jobs.*", "audit", NULL, VG_SUB_FIRST, "another group's SUB");
    fb_send_ok(&conn, x);
    uint64_t plain = must_subscribe(c, "jobs.*");
    fb_expect(&conn, VG_FRAME_SUB, NULL, fb_ms(5000), "the plain SUB");
    fb_send_ok(&conn, plain);
    cr_assert_eq(vg_client_wait_subscribed(c, plain, fb_ms(5000)), VG_OK);

    fb_send_msg_q(&conn, "jobs.a", "w3", 3, w);
    fb_send_msg_q(&conn, "jobs.a", "w7", 7, w);
    fb_send_msg_q(&conn, "jobs.a", "x5", 5, x);
    fb_send_msg_q(&conn, "jobs.a", "w7 again", 7, w);
    fb_send_msg_q(&conn, "jobs.a", "w5, given late", 5, w);
    fb_send_msg_q(&conn, "jobs.b", "w2", 2, w);
    fb_send_msg_q(&conn, "jobs.a", "plain's sid", 8, plain);
    fb_send_msg_q(&conn, "jobs.a", "nobody's", 9, 77);
    fb_send_msg_q(&conn, "other", "not matching", 1, w);
    fb_send_msg_seq(&conn, "jobs.a", "plain 1", 1);
    fb_barrier(&conn, fb_ms(5000), NULL);
    cr_assert_eq(cb_on_sid(w), 4, "w3, w7, w5, w2");
    cr_assert_eq(cb_on_sid(x), 1);
    cr_assert_eq(cb_on_sid(plain), 1, "only the 4-element MSG");
    cr_assert_eq(cb_firsts(), 6);
    cr_assert_eq(cb_gaps(), 0, "a member's sparse seqs are no gap");
    vg_client_stats s = checked_stats(c, "after the deliveries");
    cr_assert_eq(s.duplicates, 1, "w7 again");

    /* One ACK per (sid, topic): w on jobs.a (5, the last processed, given
     * after 7: the broker takes it as covering 3 and 7 too), w on jobs.b,
     * x on jobs.a, in some order. */
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        vg_frame f;
        cr_assert(next_ack(&conn, fb_ms(5000), &f), "ACK %d", i);
        cr_assert_eq(f.form, 3, "a 4-element ACK");
        char t[16];
        snprintf(t, sizeof t, "%.*s", (int)f.topic_len, f.topic);
        if (f.sid == w && strcmp(t, "jobs.a") == 0 && f.seq == 5)
            seen |= 1;
        else if (f.sid == w && strcmp(t, "jobs.b") == 0 && f.seq == 2)
            seen |= 2;
        else if (f.sid == x && strcmp(t, "jobs.a") == 0 && f.seq == 5)
            seen |= 4;
        else
            cr_assert_fail("unexpected ACK sid %llu seq %llu %s", (unsigned long long)f.sid,
                           (unsigned long long)f.seq, t);
    }
    cr_assert_eq(seen, 7);
    vg_frame f;
    cr_assert_not(next_ack(&conn, fb_ms(400), &f), "an ACK more than one per (sid, topic)");
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* 3,000 deliveries in a burst: far fewer ACKs, each above the last, the
 * last one carrying the last seq. */
Test(client_queue, acks_are_batched)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t w = 0;
    cr_assert_eq(vg_client_subscribe_queue(c, "load", "g", NULL, VG_SUB_NEW, 0, 0, &w), VG_OK);
    expect_queue_sub(&conn, w, "load", "g", NULL, VG_SUB_NEW, "SUB");
    fb_send_ok(&conn, w);
    enum { N = 3000 };
    vg_buf b = {0};
    for (uint64_t seq = 1; seq <= N; seq++) {
        size_t n = vg_frame_msg_qsize(4, 1);
        cr_assert_eq(vg_buf_reserve(&b, n), VG_OK);
        vg_frame_write_msg_q(b.data + b.len, VG_FRAME_MSG_TYPE1, "load", 4, "p", 1, seq * 2, w);
        b.len += n;
    }
    fb_send_raw(&conn, b.data, b.len);
    vg_buf_free(&b);
    unsigned acks = 0;
    uint64_t last = 0;
    while (last < 2 * N) {
        vg_frame f;
        cr_assert(next_ack(&conn, fb_ms(5000), &f), "ACKs stopped at %llu",
                  (unsigned long long)last);
        cr_assert(f.form == 3 && f.sid == w && f.seq > last, "ACK seq %llu after %llu",
                  (unsigned long long)f.seq, (unsigned long long)last);
        last = f.seq;
        acks++;
    }
    cr_assert_lt(acks, 100, "%u ACKs for %d messages", acks, N);
    cr_assert_eq(cb_msgs(), N);
    cr_assert_eq(cb_gaps(), 0);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* After a reconnect a durable queue member sends the same 8-element SUB
 * (the group's position is the broker's), a seq it was given on the lost
 * connection is handed over again (a redelivery the broker chose), and no
 * ACK goes for what the lost connection gave. */
Test(client_queue, a_member_is_renewed_with_the_same_sub)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    uint64_t w = 0;
    cr_assert_eq(vg_client_subscribe_queue(c, "jobs.>", "workers", "billing", VG_SUB_FIRST, 0, 0,
                                           &w),
                 VG_OK);
    expect_queue_sub(&c1, w, "jobs.>", "workers", "billing", VG_SUB_FIRST, "the first SUB");
    fb_send_ok(&c1, w);
    fb_send_msg_q(&c1, "jobs.a.b", "one", 4, w);
    expect_ack(&c1, w, 4, "jobs.a.b", "the ACK on the first connection");
    fb_send_msg_q(&c1, "jobs.a.b", "two", 6, w);
    fb_barrier(&c1, fb_ms(5000), NULL);
    lose_connection(&c1, 1);

    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    expect_queue_sub(&c2, w, "jobs.>", "workers", "billing", VG_SUB_FIRST, "the renewal");
    fb_send_ok(&c2, w);
    vg_frame f;
    cr_assert_not(next_ack(&c2, fb_ms(300), &f), "an ACK for what the lost connection gave");
    fb_send_msg_q(&c2, "jobs.a.b", "two again", 6, w);
    expect_ack(&c2, w, 6, "jobs.a.b", "the ACK on the new connection");
    cr_assert_eq(cb_msgs(), 3, "the redelivery of 6 on a new connection is handed over");
    cr_assert_eq(vg_client_unsubscribe(c, w), VG_OK);
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}
