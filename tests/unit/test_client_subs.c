/* The client library (client.h) against the scripted fake broker
 * (client_harness.h): each subscription state across a lost connection
 * (queued, sent and unanswered, active: renewed once, ahead of the
 * publishes queued meanwhile), unsubscribing in each state, and a broker
 * refusing one SUB.
 *
 * "Defect N" marks the regression test of a numbered defect of the
 * outside review (client_harness.h). */
#include <criterion/criterion.h>
#include <stdio.h>

#include "client_harness.h"
#include "proto.h"

TestSuite(client_subs, .init = client_setup, .fini = client_teardown, .timeout = 120);

/* ==== subscriptions across disconnects ==== */

#ifndef VG_OLD_API
/* Ends connection conn and waits until the client has logged the loss. */
static void lose_connection(fb_conn *conn, int nth_loss)
{
    fb_close(conn);
    cr_assert(fb_log_wait(nth_loss, fb_ms(5000), "event=disconnected", NULL),
              "the client did not log the lost connection #%d", nth_loss);
}

/* A SUB still queued in the stream while disconnected goes out once on the
 * next connection: not also as a renewal. */
Test(client_subs, sub_queued_while_disconnected_is_sent_once_after_reconnect)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    lose_connection(&c1, 1);
    uint64_t sid = must_subscribe(c, "queued.t");
    must_publish(c, "queued.t", "marker");
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    emu_init(&c2, true, false);
    emu_until(saw_payload, "marker", fb_ms(5000), "the MSG queued after the SUB");
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_OK);
    emu_barrier();
    char seq[512];
    cr_assert_eq(emu_count(VG_FRAME_SUB, sid), 1, "want one SUB %llu: %s",
                 (unsigned long long)sid, emu_seq(seq, sizeof seq));
    cr_assert_eq(em.recs[0].type, VG_FRAME_SUB, "%s", emu_seq(seq, sizeof seq));
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* A SUB written on a connection lost before its answer is renewed once on
 * the next one. */
Test(client_subs, sub_sent_but_unanswered_is_renewed_once)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    uint64_t sid = must_subscribe(c, "unanswered.t");
    vg_frame f;
    fb_expect(&c1, VG_FRAME_SUB, &f, fb_ms(5000), "the SUB (left unanswered)");
    cr_assert_eq(f.sid, sid);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, 0), VG_ERR_TIMEOUT);
    lose_connection(&c1, 1);
    must_publish(c, "unanswered.t", "marker");
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    emu_init(&c2, true, false);
    emu_until(saw_payload, "marker", fb_ms(5000), "the marker MSG");
    emu_barrier();
    char seq[512];
    cr_assert_eq(emu_count(VG_FRAME_SUB, sid), 1, "want one SUB %llu: %s",
                 (unsigned long long)sid, emu_seq(seq, sizeof seq));
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_OK);
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* An ACTIVE subscription is renewed on the next connection ahead of the
 * publishes queued while disconnected; wait_subscribed waits for the
 * renewal's answer and then succeeds; the reconnect is logged with it. */
Test(client_subs, active_sub_is_renewed_ahead_of_queued_publishes)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    uint64_t sid = must_subscribe(c, "renew.t");
    emu_init(&c1, true, false);
    emu_until_frame(VG_FRAME_SUB, sid); /* and answers it */
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_OK);
    lose_connection(&c1, 1);
    must_publish(c, "renew.t", "m1");
    must_publish(c, "renew.t", "m2");
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    emu_init(&c2, false, false); /* the renewal stays unanswered for now */
    emu_until(saw_payload, "m2", fb_ms(5000), "the second queued MSG");
    char want[128], seq[512];
    snprintf(want, sizeof want, "SUB %llu renew.t | MSG renew.t m1 | MSG renew.t m2",
             (unsigned long long)sid);
    cr_assert_str_eq(emu_seq(seq, sizeof seq), want);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(50)), VG_ERR_TIMEOUT,
                 "the renewal is not answered yet");
    fb_send_ok(&c2, sid);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_OK);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=reconnected", "resubscribed=1", NULL));
    fb_send_msg(&c2, "renew.t", "after");
    unsigned one = 1;
    cr_assert(wait_until(msgs_at_least, &one, fb_ms(5000)), "no message after the renewal");
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

#endif

/* ==== unsubscribing ==== */

#ifndef VG_OLD_API
/* Unsubscribing before the SUB was written still sends the SUB, then the
 * UNSUB, in order; the entry is unknown at once. */
Test(client_subs, unsubscribe_before_the_sub_was_written_sends_sub_then_unsub)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = start(&o);
    uint64_t sid = must_subscribe(c, "early.t");
    cr_assert_eq(vg_client_unsubscribe(c, sid), VG_OK);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, 0), VG_ERR_ARG);
    must_publish(c, "early.t", "marker");
    fb_accept(&l, &conn, fb_ms(5000), "the connection");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    emu_init(&conn, true, false);
    emu_until(saw_payload, "marker", fb_ms(5000), "the marker MSG");
    emu_barrier();
    char want[128], seq[512];
    snprintf(want, sizeof want, "SUB %llu early.t | UNSUB %llu | MSG early.t marker",
             (unsigned long long)sid, (unsigned long long)sid);
    cr_assert_str_eq(emu_seq(seq, sizeof seq), want);
    cr_assert_eq(cb_sub_errors(), 0);
    cr_assert_eq(fb_log_count("event=unexpected_answer", NULL), 0);
    cr_assert_eq(vg_client_unsubscribe(c, sid), VG_ERR_ARG);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

#endif

/* Defect 3: an UNSUB for a SUB the broker never saw got no_such_sid, was
 * logged as subscribe_failed, called on_sub_error and the entry stayed for
 * ever. Unsubscribing, while disconnected, a subscription that would be
 * renewed sends nothing about it on the next connection. */
Test(client_subs, unsubscribe_while_disconnected_sends_nothing_the_broker_never_saw)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    uint64_t sid = must_subscribe(c, "gone.t");
    uint64_t keep = must_subscribe(c, "kept.t");
    emu_init(&c1, true, false);
    emu_until_frame(VG_FRAME_SUB, keep);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_OK);
    fb_close(&c1);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=disconnected", NULL), "no lost connection");
    cr_assert_eq(vg_client_unsubscribe(c, sid), VG_OK);
    must_publish(c, "kept.t", "marker");
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    emu_init(&c2, true, false);
    emu_until(saw_payload, "marker", fb_ms(5000), "the marker MSG");
    emu_barrier();
    emu_barrier(); /* any answer to a late UNSUB has been handled */
    char seq[512];
    cr_assert_eq(emu_count(VG_FRAME_SUB, sid) + emu_count(VG_FRAME_UNSUB, sid), 0,
                 "frames about sid %llu on the new connection: %s", (unsigned long long)sid,
                 emu_seq(seq, sizeof seq));
    cr_assert_eq(emu_count(VG_FRAME_SUB, keep), 1, "%s", emu_seq(seq, sizeof seq));
    cr_assert_eq(cb_sub_errors(), 0, "on_sub_error was called");
    cr_assert_eq(fb_log_count("event=subscribe_failed", NULL), 0);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, 0), VG_ERR_ARG, "the entry is still there");
    cr_assert_eq(vg_client_unsubscribe(c, sid), VG_ERR_ARG);
    cr_assert_eq(vg_client_wait_subscribed(c, keep, fb_ms(5000)), VG_OK);
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

#ifndef VG_OLD_API
/* After unsubscribe returns, no message on its topic reaches on_msg even
 * if the broker keeps sending; another sid on the same topic keeps it
 * delivered (once per message and sid: copy 0 to the first sid). */
Test(client_subs, no_message_reaches_on_msg_after_unsubscribe)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t a1 = must_subscribe(c, "t.a");
    uint64_t b = must_subscribe(c, "t.b");
    uint64_t a2 = must_subscribe(c, "t.a");
    emu_init(&conn, true, false);
    emu_until_frame(VG_FRAME_SUB, a2);
    cr_assert_eq(vg_client_wait_subscribed(c, a2, fb_ms(5000)), VG_OK);
    (void)b;
    for (int i = 0; i < 3; i++)
        fb_send_msg(&conn, "t.a", "x");
    fb_send_msg(&conn, "t.b", "y");
    emu_barrier();
    cr_assert_eq(cb_on_topic("t.a"), 6, "two sids on t.a: each message to each");
    cr_assert_eq(cb_on_sid(a1), 3);
    cr_assert_eq(cb_on_sid(a2), 3);
    cr_assert_eq(cb_firsts(), 4, "each message once with copy 0");
    cr_assert_eq(cb_on_topic("t.b"), 1);

    cr_assert_eq(vg_client_unsubscribe(c, a1), VG_OK);
    emu_until_frame(VG_FRAME_UNSUB, a1);
    fb_send_msg(&conn, "t.a", "x");
    emu_barrier();
    cr_assert_eq(cb_on_topic("t.a"), 7, "t.a is still subscribed through sid %llu",
                 (unsigned long long)a2);

    cr_assert_eq(vg_client_unsubscribe(c, a2), VG_OK);
    emu_until_frame(VG_FRAME_UNSUB, a2);
    for (int i = 0; i < 20; i++)
        fb_send_msg(&conn, "t.a", "late");
    fb_send_msg(&conn, "t.b", "y");
    emu_barrier();
    emu_barrier();
    cr_assert_eq(cb_on_topic("t.a"), 7, "a message on t.a reached on_msg after unsubscribe");
    cr_assert_eq(cb_on_topic("t.b"), 2);
    vg_client_stats s = checked_stats(c, "end");
    cr_assert_eq(s.received, 9, "received counts what reached on_msg");
    cr_assert_eq(emu_count(VG_FRAME_UNSUB, a1) + emu_count(VG_FRAME_UNSUB, a2), 2);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

Test(client_subs, unsubscribe_of_an_unknown_or_ended_sid_is_an_argument_error)
{
    vg_client_opts o = opts_for(fb_dead_port());
    o.backoff_base_ms = o.backoff_max_ms = 1000;
    vg_client *c = start(&o);
    cr_assert_eq(vg_client_unsubscribe(c, 12345), VG_ERR_ARG);
    cr_assert_eq(vg_client_unsubscribe(c, 0), VG_ERR_ARG);
    cr_assert_eq(vg_client_wait_subscribed(c, 12345, 0), VG_ERR_ARG);
    uint64_t s1 = must_subscribe(c, "ended.t");
    cr_assert_eq(vg_client_unsubscribe(c, s1), VG_OK);
    cr_assert_eq(vg_client_unsubscribe(c, s1), VG_ERR_ARG, "twice");
    uint64_t s2 = must_subscribe(c, "ended.t");
    cr_assert_gt(s2, s1, "sids are never reused");
    cr_assert_eq(vg_client_subscribe(c, "bad..topic", NULL), VG_ERR_BAD_TOPIC);
    vg_client_destroy(c);
}

#endif

/* ==== a refused subscription ==== */

#ifndef VG_OLD_API
/* A non-fatal ERR for a SUB: on_sub_error once, wait_subscribed says
 * REFUSED, the client keeps working, and the refused subscription is not
 * renewed on the next connection. */
Test(client_subs, refused_sub_calls_on_sub_error_once_and_is_not_renewed)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    uint64_t sid = must_subscribe(c, "refused.t");
    vg_frame f;
    fb_expect(&c1, VG_FRAME_SUB, &f, fb_ms(5000), "the SUB to refuse");
    fb_send_err(&c1, VG_E_LIMIT, "too many subscriptions", sid);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_ERR_REFUSED);
    emu_init(&c1, true, false);
    emu_barrier();
    cr_assert_eq(cb_sub_errors(), 1);
    cr_assert_eq(cb.sub_error_code, VG_E_LIMIT);
    cr_assert_str_eq(cb.sub_error_topic, "refused.t");
    cr_assert_eq(fb_log_count("event=subscribe_failed", "code=limit", NULL), 1);
    must_publish(c, "other.t", "still works");
    emu_until(saw_payload, "still works", fb_ms(5000), "a MSG after the refusal");

    lose_connection(&c1, 1);
    must_publish(c, "other.t", "marker");
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    emu_init(&c2, true, false);
    emu_until(saw_payload, "marker", fb_ms(5000), "the marker MSG");
    emu_barrier();
    char seq[256];
    cr_assert_eq(emu_count(VG_FRAME_SUB, sid), 0, "a refused SUB was renewed: %s",
                 emu_seq(seq, sizeof seq));
    cr_assert_eq(vg_client_wait_subscribed(c, sid, 0), VG_ERR_REFUSED);
    cr_assert_eq(vg_client_unsubscribe(c, sid), VG_OK);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, 0), VG_ERR_ARG);
    emu_barrier();
    cr_assert_eq(emu_count(VG_FRAME_UNSUB, sid), 0, "an UNSUB for a refused SUB");
    cr_assert_eq(cb_sub_errors(), 1);
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

#endif
