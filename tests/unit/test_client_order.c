/* The client library (client.h) against the scripted fake broker
 * (client_harness.h): SUB, UNSUB and MSG reach the broker in the order the
 * application issued them, on a connected client and on one still waiting
 * for INFO.
 *
 * "Defect N" marks the regression test of a numbered defect of the
 * outside review (client_harness.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "client_harness.h"
#include "proto.h"

TestSuite(client_order, .init = client_setup, .fini = client_teardown, .timeout = 120);

/* Defect 1: a publish overtook its own earlier SUB, so the broker routed
 * the message before the subscription existed. Repeated, with the client
 * idle before each pair, because the old overtaking was a race with the
 * I/O thread's wake-up. */
Test(client_order, sub_reaches_broker_before_the_publish_that_follows_it)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    emu_init(&conn, true, false);
    for (int i = 0; i < 20; i++) {
        char topic[32], payload[32], seq[512];
        snprintf(topic, sizeof topic, "order.%d", i);
        snprintf(payload, sizeof payload, "m%d", i);
        fb_sleep(i % 2 ? 20 : 1); /* let the I/O thread park (or not) */
        uint64_t sid = must_subscribe(c, topic);
        must_publish(c, topic, payload);
        int first = em.nrecs;
        emu_until(saw_payload, payload, fb_ms(5000), "the MSG after a SUB");
        cr_assert_eq(em.nrecs - first, 2, "round %d: want SUB then MSG, got %s", i,
                     emu_seq(seq, sizeof seq));
        cr_assert(em.recs[first].type == VG_FRAME_SUB && em.recs[first].sid == sid &&
                      strcmp(em.recs[first].topic, topic) == 0,
                  "round %d: the MSG came before its SUB: %s", i, emu_seq(seq, sizeof seq));
    }
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* publish a, subscribe, publish b, unsubscribe, publish c: the broker sees
 * exactly these frames in this order (PINGs aside). Defect 1. */
static void check_exact_sequence(bool connected_first)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c;
    if (connected_first) {
        c = connected_client(&l, &conn, &o);
    } else {
        c = start(&o);
        fb_accept(&l, &conn, fb_ms(5000), "the client's connection");
        fb_expect(&conn, VG_FRAME_CONNECT, NULL, fb_ms(5000), "CONNECT");
    }
    must_publish(c, "seq.x", "a");
    uint64_t sid = must_subscribe(c, "seq.y");
    must_publish(c, "seq.y", "b");
    cr_assert_eq(vg_client_unsubscribe(c, sid), VG_OK);
    must_publish(c, "seq.y", "c");
    if (!connected_first)
        fb_send_info(&conn, VG_DEFAULT_MAX_PAYLOAD); /* all of it was queued before INFO */
    emu_init(&conn, true, false);
    emu_until(saw_payload, "c", fb_ms(5000), "the last MSG, c");
    char want[200], seq[512];
    snprintf(want, sizeof want, "MSG seq.x a | SUB %llu seq.y | MSG seq.y b | UNSUB %llu | MSG seq.y c",
             (unsigned long long)sid, (unsigned long long)sid);
    cr_assert_str_eq(emu_seq(seq, sizeof seq), want);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

Test(client_order, sub_unsub_and_msgs_leave_in_the_order_issued)
{
    check_exact_sequence(true);
}

Test(client_order, sub_unsub_and_msgs_queued_before_the_handshake_keep_their_order)
{
    check_exact_sequence(false);
}

/* The end-to-end meaning of defect 1: a client that subscribes and then
 * publishes to its own topic receives its message from a broker that
 * routes a MSG only to subscriptions it already has. */
Test(client_order, publisher_receives_its_own_message_after_subscribing)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    emu_init(&conn, true, true);
    for (unsigned i = 1; i <= 10; i++) {
        char topic[32];
        snprintf(topic, sizeof topic, "self.%u", i);
        fb_sleep(i % 2 ? 20 : 1);
        must_subscribe(c, topic);
        must_publish(c, topic, "hello");
        emu_until(msgs_at_least, &i, fb_ms(5000), "the client to receive its own message");
    }
    cr_assert_eq(cb_msgs(), 10);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}
