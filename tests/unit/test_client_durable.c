/* Durable subscribers (issue 11), the client's side, against the scripted
 * fake broker (client_harness.h): the seven-element SUB on every
 * connection, cumulative ACKs batched on the I/O thread and sent only once
 * the application's callback has returned, flushed on close; ERR
 * durable_taken ending a subscription; ERR storage making a publisher
 * reconnect and send again; deleting a durable. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "client_harness.h"
#include "proto.h"

TestSuite(client_durable, .init = client_setup, .fini = client_teardown, .timeout = 120);

/* Reads the next SUB of conn, asserting the durable shape and its fields. */
static void expect_durable_sub(fb_conn *conn, uint64_t sid, const char *name, vg_sub_start start,
                               uint64_t epoch, uint64_t position, const char *what)
{
    vg_frame f;
    fb_expect(conn, VG_FRAME_SUB, &f, fb_ms(5000), what);
    cr_assert(f.form == 3 && f.sid == sid && f.start == start && f.epoch == epoch &&
                  f.position == position,
              "%s: SUB form %d sid %llu start %d epoch %llx position %llu", what, f.form,
              (unsigned long long)f.sid, (int)f.start, (unsigned long long)f.epoch,
              (unsigned long long)f.position);
    cr_assert(f.durable_len == strlen(name) && memcmp(f.durable, name, f.durable_len) == 0,
              "%s: durable name %.*s, expected %s", what, (int)f.durable_len, f.durable, name);
}

/* Reads frames (PINGs answered) until an ACK, within timeout_ms; false if
 * none came. Any other frame but PONG fails the test. */
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

static void expect_ack(fb_conn *conn, uint64_t sid, uint64_t seq, const char *what)
{
    vg_frame f;
    cr_assert(next_ack(conn, fb_ms(5000), &f), "%s: no ACK", what);
    cr_assert(f.sid == sid && f.seq == seq, "%s: ACK sid %llu seq %llu, expected %llu %llu", what,
              (unsigned long long)f.sid, (unsigned long long)f.seq, (unsigned long long)sid,
              (unsigned long long)seq);
}

static void lose_connection(fb_conn *conn, int nth_loss)
{
    fb_close(conn);
    cr_assert(fb_log_wait(nth_loss, fb_ms(5000), "event=disconnected", NULL),
              "the client did not log the lost connection #%d", nth_loss);
}

/* The durable SUB on the first connection carries the start asked for;
 * its renewal after a reconnect carries the same name and asks for the
 * message after the last one handed over; the new connection is told at
 * once what was processed on the last one. */
Test(client_durable, durable_sub_on_first_connect_and_after_a_reconnect)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    uint64_t sid = 0;
    cr_assert_eq(vg_client_subscribe_durable(c, "orders", "bad name", VG_SUB_FIRST, 0, 0, &sid),
                 VG_ERR_ARG);
    cr_assert_eq(vg_client_subscribe_durable(c, "orders", "", VG_SUB_FIRST, 0, 0, &sid),
                 VG_ERR_ARG);
    cr_assert_eq(vg_client_subscribe_durable(c, "orders", NULL, VG_SUB_FIRST, 0, 0, &sid),
                 VG_ERR_ARG);
    cr_assert_eq(vg_client_subscribe_durable(c, "orders", "billing", VG_SUB_NEW, 1, 0, &sid),
                 VG_ERR_ARG, "a start that breaks subscribe_from's rules");
    cr_assert_eq(vg_client_subscribe_durable(c, "orders", "billing", VG_SUB_FIRST, 0, 0, &sid),
                 VG_OK);
    expect_durable_sub(&c1, sid, "billing", VG_SUB_FIRST, 0, 0, "the first SUB");
    fb_send_ok(&c1, sid);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_OK);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=subscribed", "durable=billing", NULL));
    for (int i = 1; i <= 3; i++)
        fb_send_msg(&c1, "orders", "m");
    expect_ack(&c1, sid, 3, "the ACK of the first three");
    lose_connection(&c1, 1);

    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    expect_durable_sub(&c2, sid, "billing", VG_SUB_SEQ, FB_EPOCH, 4, "the renewal");
    /* The broker resumes after the durable's last ACK, 2: 3 again is a
     * duplicate, dropped; the new connection hears of 3 all the same. */
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_ok2(&b, sid, FB_EPOCH, 3), VG_OK);
    fb_send_raw(&c2, b.data, b.len);
    vg_buf_free(&b);
    expect_ack(&c2, sid, 3, "the ACK after the renewal");
    fb_send_msg_seq(&c2, "orders", "again", 3);
    fb_send_msg_seq(&c2, "orders", "four", 4);
    expect_ack(&c2, sid, 4, "the ACK of the 4th");
    cr_assert_eq(cb_msgs(), 4, "a message shown twice");
    vg_client_stats s = checked_stats(c, "after the resume");
    cr_assert_eq(s.duplicates, 1);
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* 5,000 messages in a burst: far fewer ACK frames, each cumulative (its
 * seq above the last), the last one carrying the last seq. */
Test(client_durable, acks_are_cumulative_and_batched)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t sid = 0;
    cr_assert_eq(vg_client_subscribe_durable(c, "load", "batch", VG_SUB_NEW, 0, 0, &sid), VG_OK);
    expect_durable_sub(&conn, sid, "batch", VG_SUB_NEW, 0, 0, "SUB");
    fb_send_ok(&conn, sid);
    enum { N = 5000 };
    vg_buf b = {0};
    for (uint64_t seq = 1; seq <= N; seq++)
        cr_assert_eq(vg_frame_put_msg_seq(&b, VG_FRAME_MSG_TYPE1, "load", 4, "payload", 7, seq),
                     VG_OK);
    fb_send_raw(&conn, b.data, b.len);
    vg_buf_free(&b);
    unsigned acks = 0;
    uint64_t last = 0;
    while (last < N) {
        vg_frame f;
        cr_assert(next_ack(&conn, fb_ms(10000), &f), "no ACK after %llu (%u ACKs)",
                  (unsigned long long)last, acks);
        cr_assert_eq(f.sid, sid);
        cr_assert_gt(f.seq, last, "ACK %llu after %llu: not cumulative",
                     (unsigned long long)f.seq, (unsigned long long)last);
        cr_assert_leq(f.seq, cb_msgs(), "ACK %llu before its callback returned",
                      (unsigned long long)f.seq);
        last = f.seq;
        acks++;
    }
    cr_assert_eq(last, N);
    cr_log_info("%u ACK frames for %d messages", acks, N);
    cr_assert_leq(acks, 200, "%u ACK frames for %d messages", acks, N);
    cr_assert_geq(acks, N / VG_ACK_BATCH, "at least one per %d messages", VG_ACK_BATCH);
    fb_barrier(&conn, fb_ms(5000), NULL); /* and nothing after the last one */
    vg_client_destroy(c);
    for (;;) { /* nothing owed: no ACK on close */
        vg_frame f;
        fb_result r = fb_read(&conn, &f, fb_ms(5000));
        if (r != FB_FRAME)
            break;
        cr_assert_neq(f.type, VG_FRAME_ACK, "an ACK again on close");
    }
    fb_close(&conn);
    fb_unlisten(&l);
}

/* ---- a callback that waits for the test ---- */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_entered, gate_open;
static unsigned gate_returned;

static void gated_msg(void *ud, const vg_msg *m)
{
    (void)ud;
    pthread_mutex_lock(&gate_mu);
    if (m->payload_len == 5 && memcmp(m->payload, "block", 5) == 0) {
        gate_entered = true;
        pthread_cond_broadcast(&gate_cv);
        while (!gate_open)
            pthread_cond_wait(&gate_cv, &gate_mu);
    }
    gate_returned++;
    pthread_mutex_unlock(&gate_mu);
}

static bool entered(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_mu);
    bool e = gate_entered;
    pthread_mutex_unlock(&gate_mu);
    return e;
}

/* A message is acknowledged only once its callback has returned: while
 * the callback of seq 2 runs, no ACK covers it. */
Test(client_durable, ack_follows_the_callback_return)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    o.on_msg = gated_msg;
    o.ack_delay_ms = 0;
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t sid = 0;
    cr_assert_eq(vg_client_subscribe_durable(c, "slow", "gate", VG_SUB_NEW, 0, 0, &sid), VG_OK);
    expect_durable_sub(&conn, sid, "gate", VG_SUB_NEW, 0, 0, "SUB");
    fb_send_ok(&conn, sid);
    fb_send_msg(&conn, "slow", "a");
    expect_ack(&conn, sid, 1, "the ACK of 1");
    fb_send_msg(&conn, "slow", "block");
    cr_assert(wait_until(entered, NULL, fb_ms(5000)), "the callback of 2 did not start");
    vg_frame f;
    cr_assert(!next_ack(&conn, fb_ms(300), &f), "ACK %llu while the callback of 2 runs",
              (unsigned long long)f.seq);
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    expect_ack(&conn, sid, 2, "the ACK of 2, once its callback returned");
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* With a long ACK delay nothing is acknowledged while the client runs; a
 * clean close sends the ACKs owed before the connection ends, one per
 * durable subscription, none for a plain one. */
Test(client_durable, pending_acks_are_flushed_on_close)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    o.ack_delay_ms = 600000;
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t a = 0, b2 = 0, plain = must_subscribe(c, "plain");
    cr_assert_eq(vg_client_subscribe_durable(c, "one", "closer", VG_SUB_NEW, 0, 0, &a), VG_OK);
    cr_assert_eq(vg_client_subscribe_durable(c, "two", "closer", VG_SUB_NEW, 0, 0, &b2), VG_OK);
    fb_expect(&conn, VG_FRAME_SUB, NULL, fb_ms(5000), "SUB plain");
    expect_durable_sub(&conn, a, "closer", VG_SUB_NEW, 0, 0, "SUB one");
    expect_durable_sub(&conn, b2, "closer", VG_SUB_NEW, 0, 0, "SUB two");
    fb_send_ok(&conn, plain);
    fb_send_ok(&conn, a);
    fb_send_ok(&conn, b2);
    for (int i = 0; i < 3; i++)
        fb_send_msg(&conn, "plain", "p");
    for (int i = 0; i < 10; i++)
        fb_send_msg(&conn, "one", "x");
    for (int i = 0; i < 4; i++)
        fb_send_msg(&conn, "two", "y");
    unsigned n = 17;
    cr_assert(wait_until(msgs_at_least, &n, fb_ms(5000)), "17 messages");
    vg_frame f;
    cr_assert(!next_ack(&conn, fb_ms(100), &f), "an ACK before the delay or the close");
    cr_assert_eq(vg_client_close(c, fb_ms(5000)), VG_OK);
    uint64_t seen[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        cr_assert(next_ack(&conn, fb_ms(5000), &f), "ACK %d of 2 on close", i + 1);
        seen[f.sid == b2] = f.seq;
    }
    cr_assert_eq(seen[0], 10, "one: ACK %llu", (unsigned long long)seen[0]);
    cr_assert_eq(seen[1], 4, "two: ACK %llu", (unsigned long long)seen[1]);
    for (;;) { /* then the end, and no other ACK */
        fb_result r = fb_read(&conn, &f, fb_ms(5000));
        cr_assert_neq(r, FB_TIMEOUT, "the connection does not end after the ACKs");
        if (r != FB_FRAME)
            break;
        cr_assert_neq(f.type, VG_FRAME_ACK, "a third ACK (sid %llu)", (unsigned long long)f.sid);
    }
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* ERR durable_taken: the subscription ends (one log line, on_sub_error
 * with the code), delivers nothing more, and is not renewed. */
Test(client_durable, durable_taken_drops_the_subscription)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    uint64_t sid = 0, other = must_subscribe(c, "plain");
    cr_assert_eq(vg_client_subscribe_durable(c, "orders", "billing", VG_SUB_FIRST, 0, 0, &sid),
                 VG_OK);
    fb_expect(&c1, VG_FRAME_SUB, NULL, fb_ms(5000), "SUB plain");
    expect_durable_sub(&c1, sid, "billing", VG_SUB_FIRST, 0, 0, "SUB orders");
    fb_send_ok(&c1, other);
    fb_send_ok(&c1, sid);
    fb_send_msg(&c1, "orders", "before");
    fb_send_err(&c1, VG_E_DURABLE_TAKEN, "taken over by another connection", sid);
    fb_send_msg(&c1, "orders", "after");
    fb_barrier(&c1, fb_ms(5000), NULL);
    cr_assert_eq(cb_msgs(), 1, "a message after the takeover was delivered");
    cr_assert_eq(cb_sub_errors(), 1);
    cr_assert_eq(cb.sub_error_code, VG_E_DURABLE_TAKEN);
    cr_assert_str_eq(cb.sub_error_topic, "orders");
    cr_assert_eq(fb_log_count("level=warn", "event=durable_taken", "orders", "durable=billing",
                              NULL),
                 1);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, 0), VG_ERR_REFUSED);

    lose_connection(&c1, 1);
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    vg_frame f;
    fb_expect(&c2, VG_FRAME_SUB, &f, fb_ms(5000), "the renewal of plain");
    cr_assert_eq(f.sid, other, "renewed the durable taken over");
    fb_send_ok(&c2, other);
    emu_init(&c2, true, false);
    emu_barrier();
    cr_assert_eq(emu_count(VG_FRAME_SUB, sid), 0, "the durable taken over was renewed");
    cr_assert_eq(vg_client_unsubscribe(c, sid), VG_OK, "forgotten at once");
    must_publish(c, "marker", "after the unsubscribe"); /* the stream's order: after any UNSUB */
    emu_until(saw_payload, "after the unsubscribe", fb_ms(5000), "the marker");
    cr_assert_eq(emu_count(VG_FRAME_UNSUB, sid), 0, "an UNSUB for what the broker lacks");
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* ERR storage is fatal: the publisher reconnects and sends its
 * unconfirmed messages again, from the first, as after ERR internal. */
Test(client_durable, storage_err_reconnects_and_sends_again)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    c1.pings = FB_PING_SKIP; /* nothing confirmed */
    must_publish(c, "st.t", "s0");
    must_publish(c, "st.t", "s1");
    must_publish(c, "st.t", "s2");
    for (int i = 0; i < 3; i++)
        fb_expect(&c1, VG_FRAME_MSG_TYPE1, NULL, fb_ms(5000), "the 3 MSGs");
    fb_send_err(&c1, VG_E_STORAGE, "disk full", 0);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=server_error", "code=storage",
                          "send the unconfirmed ones again", NULL));
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=disconnected", "reason=storage", "resending=3",
                          "retry_in_ms=", NULL));
    fb_close(&c1);
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection after ERR storage");
    fb_expect(&c2, VG_FRAME_CONNECT, NULL, fb_ms(5000), "CONNECT");
    cr_assert_eq(c2.resend_from, 1);
    fb_send_info(&c2, VG_DEFAULT_MAX_PAYLOAD);
    emu_init(&c2, true, false);
    unsigned three = 3;
    emu_until(fake_read_msgs, &three, fb_ms(5000), "the 3 frames sent again");
    cr_assert_str_eq(em.recs[0].payload, "s0");
    cr_assert_str_eq(em.recs[2].payload, "s2");
    cr_assert_eq(cb_closed(), 0, "storage is not a reason to give up");
    cr_assert_eq(vg_client_flush(c, fb_ms(100)) == VG_ERR_CLOSED, false);
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* ---- deleting ---- */

typedef struct {
    vg_client *c;
    uint64_t sid;
    vg_status st;
} deleter;

static void *delete_thread(void *arg)
{
    deleter *d = arg;
    d->st = vg_client_delete_durable(d->c, d->sid, fb_ms(5000));
    return NULL;
}

/* vg_client_delete_durable sends UNSUB with delete and returns once the
 * broker answered: VG_OK for OK (logged), VG_ERR_REFUSED for an ERR. */
Test(client_durable, delete_waits_for_the_answer)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t plain = must_subscribe(c, "plain"), a = 0, b2 = 0;
    cr_assert_eq(vg_client_subscribe_durable(c, "orders", "gone", VG_SUB_NEW, 0, 0, &a), VG_OK);
    cr_assert_eq(vg_client_subscribe_durable(c, "refused", "gone", VG_SUB_NEW, 0, 0, &b2), VG_OK);
    emu_init(&conn, true, false);
    emu_until_frame(VG_FRAME_SUB, b2); /* all three SUBs read and answered */
    cr_assert_eq(vg_client_wait_subscribed(c, a, fb_ms(5000)), VG_OK);
    cr_assert_eq(vg_client_wait_subscribed(c, b2, fb_ms(5000)), VG_OK);
    cr_assert_eq(vg_client_delete_durable(c, plain, 0), VG_ERR_ARG, "not a durable");

    deleter d = {c, a, VG_ERR_ARG};
    pthread_t t;
    pthread_create(&t, NULL, delete_thread, &d);
    vg_frame f;
    fb_expect(&conn, VG_FRAME_UNSUB, &f, fb_ms(5000), "UNSUB with delete");
    cr_assert(f.form == 2 && f.delete_durable && f.sid == a);
    fb_send_ok(&conn, a);
    pthread_join(t, NULL);
    cr_assert_eq(d.st, VG_OK, "%s", vg_strerror(d.st));
    cr_assert_eq(fb_log_count("event=durable_deleted", "durable=gone", "orders", NULL), 1);

    d = (deleter){c, b2, VG_ERR_ARG};
    pthread_create(&t, NULL, delete_thread, &d);
    fb_expect(&conn, VG_FRAME_UNSUB, &f, fb_ms(5000), "the second UNSUB with delete");
    fb_send_err(&conn, VG_E_NO_SUCH_SID, "no such sid", b2);
    pthread_join(t, NULL);
    cr_assert_eq(d.st, VG_ERR_REFUSED, "%s", vg_strerror(d.st));
    cr_assert_eq(vg_client_delete_durable(c, a, 0), VG_ERR_ARG, "deleted already");
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}
