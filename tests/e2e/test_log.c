/* The topic log seen from the wire (protocol version 2, raw frames against
 * a real broker): sequence numbers, start positions, resume, exact gaps,
 * publisher dedupe, and a new epoch after kill -9. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "frame.h"
#include "harness.h"
#include "proto.h"

#define WAIT h_ms(10000)

/* A version-2 connection: CONNECT v2, and its INFO's epoch and
 * publisher_acked in *epoch and *acked (each may be NULL). */
static h_raw v2_connect(int port, uint64_t publisher, uint64_t resend_from, uint64_t *epoch,
                        uint64_t *acked)
{
    h_raw r = h_raw_connect(port);
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_connect2(&b, 2, "log-test", NULL, publisher, resend_from), VG_OK);
    h_raw_send_buf(&r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(&r, &f, WAIT), "no INFO after a version-2 CONNECT");
    cr_assert_eq(f.type, VG_FRAME_INFO);
    cr_assert_eq(f.version, 2);
    cr_assert_neq(f.epoch, 0);
    if (epoch != NULL)
        *epoch = f.epoch;
    if (acked != NULL)
        *acked = f.publisher_acked;
    return r;
}

/* Sends SUB sid topic with a start; returns OK's next (asserting OK). */
static uint64_t sub_at(h_raw *r, uint64_t sid, const char *topic, vg_sub_start start,
                       uint64_t epoch, uint64_t position)
{
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_sub2(&b, sid, topic, strlen(topic), start, epoch, position), VG_OK);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(r, &f, WAIT), "no answer to SUB %s", topic);
    cr_assert_eq(f.type, VG_FRAME_OK, "SUB %s answered with type %d code %llu", topic, f.type,
                 (unsigned long long)f.code);
    cr_assert_eq(f.form, 2);
    return f.next;
}

/* Publishes n messages "prefix-i" (i from first) on topic, then waits for
 * the PONG that proves they are in the log. */
static void publish(h_raw *r, const char *topic, const char *prefix, int first, int n)
{
    vg_buf b = {0};
    char payload[64];
    for (int i = first; i < first + n; i++) {
        int len = snprintf(payload, sizeof payload, "%s-%d", prefix, i);
        cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, topic, strlen(topic), payload,
                                      (size_t)len), VG_OK);
    }
    vg_frame_put_ping(&b);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    vg_frame f;
    do
        cr_assert(h_raw_read(r, &f, WAIT), "no PONG after publishing %d messages", n);
    while (f.type != VG_FRAME_PONG);
}

/* Reads the next MSG, asserting its seq and payload "prefix-i". */
static void expect_msg(h_raw *r, uint64_t seq, const char *prefix, int i)
{
    vg_frame f;
    cr_assert(h_raw_read(r, &f, WAIT), "waiting for seq %llu", (unsigned long long)seq);
    cr_assert(vg_frame_is_msg(f.type), "expected MSG seq %llu, got type %d",
              (unsigned long long)seq, f.type);
    cr_assert_eq(f.form, 2);
    cr_assert_eq(f.seq, seq, "seq %llu, expected %llu", (unsigned long long)f.seq,
                 (unsigned long long)seq);
    char want[64];
    int len = snprintf(want, sizeof want, "%s-%d", prefix, i);
    cr_assert(f.payload_len == (uint32_t)len && memcmp(f.payload, want, (size_t)len) == 0,
              "seq %llu: payload %.*s, expected %s", (unsigned long long)seq, (int)f.payload_len,
              (const char *)f.payload, want);
}

/* Sends PING and asserts that its PONG is the next frame: nothing else
 * was owed to this connection. */
static void expect_pong(h_raw *r)
{
    vg_buf b = {0};
    vg_frame_put_ping(&b);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(r, &f, WAIT), "no PONG");
    cr_assert_eq(f.type, VG_FRAME_PONG, "expected PONG, got type %d", f.type);
}

Test(log, messages_are_numbered_and_a_subscriber_resumes_where_it_stopped)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    uint64_t epoch;
    h_raw pub = v2_connect(port, 0, 1, &epoch, NULL);
    publish(&pub, "orders", "o", 1, 5);

    h_raw sub = v2_connect(port, 0, 1, NULL, NULL);
    cr_assert_eq(sub_at(&sub, 1, "orders", VG_SUB_FIRST, 0, 0), 1);
    for (int i = 1; i <= 5; i++)
        expect_msg(&sub, (uint64_t)i, "o", i);
    h_raw_close(&sub); /* gone after seq 5 */

    publish(&pub, "orders", "o", 6, 5);
    sub = v2_connect(port, 0, 1, NULL, NULL);
    cr_assert_eq(sub_at(&sub, 1, "orders", VG_SUB_SEQ, epoch, 6), 6);
    for (int i = 6; i <= 10; i++)
        expect_msg(&sub, (uint64_t)i, "o", i);
    /* And live from there on, in order. */
    publish(&pub, "orders", "o", 11, 3);
    for (int i = 11; i <= 13; i++)
        expect_msg(&sub, (uint64_t)i, "o", i);
    /* NEW starts after what is there; AGO 60 s starts at the first. */
    h_raw late = v2_connect(port, 0, 1, NULL, NULL);
    cr_assert_eq(sub_at(&late, 1, "orders", VG_SUB_NEW, 0, 0), 14);
    cr_assert_eq(sub_at(&late, 2, "other", VG_SUB_AGO, 0, 60000), 1);
    h_raw_close(&late);
    h_raw_close(&sub);
    h_raw_close(&pub);
    h_free(b);
}

Test(log, a_position_past_the_end_is_refused_and_the_connection_goes_on)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    uint64_t epoch;
    h_raw r = v2_connect(port, 0, 1, &epoch, NULL);
    publish(&r, "t", "m", 1, 3);
    vg_buf buf = {0};
    vg_frame_put_sub2(&buf, 7, "t", 1, VG_SUB_SEQ, epoch, 5); /* next is 4 */
    h_raw_send_buf(&r, &buf);
    vg_frame f;
    cr_assert(h_raw_read(&r, &f, WAIT));
    cr_assert_eq(f.type, VG_FRAME_ERR);
    cr_assert_eq(f.code, VG_E_BAD_POSITION, "ERR %s", vg_errcode_name(f.code));
    cr_assert_eq(f.sid, 7);
    /* SEQ 4, the next one, is fine: it waits for the next message. */
    cr_assert_eq(sub_at(&r, 8, "t", VG_SUB_SEQ, epoch, 4), 4);
    expect_pong(&r);
    vg_buf_free(&buf);
    h_raw_close(&r);
    h_free(b);
}

Test(log, a_topic_never_published_starts_at_one_and_is_read_once_its_first_message_comes)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    uint64_t epoch;
    h_raw sub = v2_connect(port, 0, 1, &epoch, NULL);
    /* No log yet: every position but 1 is past the end. */
    vg_buf buf = {0};
    vg_frame_put_sub2(&buf, 2, "silent", 6, VG_SUB_SEQ, epoch, 2);
    h_raw_send_buf(&sub, &buf);
    vg_buf_free(&buf);
    vg_frame f;
    cr_assert(h_raw_read(&sub, &f, WAIT), "waiting for the ERR of SEQ 2 on a topic never published");
    cr_assert_eq(f.type, VG_FRAME_ERR, "expected ERR, got type %d", f.type);
    cr_assert_eq(f.code, VG_E_BAD_POSITION, "ERR %s", vg_errcode_name(f.code));
    cr_assert_eq(sub_at(&sub, 3, "silent", VG_SUB_SEQ, epoch, 1), 1);
    cr_assert_eq(sub_at(&sub, 4, "quiet", VG_SUB_NEW, 0, 0), 1);
    /* The first message creates the log; both are read from 1. */
    h_raw pub = v2_connect(port, 0, 1, NULL, NULL);
    publish(&pub, "silent", "s", 1, 2);
    expect_msg(&sub, 1, "s", 1);
    expect_msg(&sub, 2, "s", 2);
    publish(&pub, "quiet", "q", 1, 1);
    expect_msg(&sub, 1, "q", 1);
    expect_pong(&sub); /* and nothing more: no POS, no GAP */
    h_raw_close(&pub);
    h_raw_close(&sub);
    h_free(b);
}

/* Retention over many topics takes sealed chunks of old records, not the
 * chunk a topic is being appended to: a subscriber that keeps up with 200
 * topics through a 1 MiB budget gets every message and no GAP, though 5 MB
 * go through. */
Test(log, retention_over_many_topics_spares_what_a_subscriber_that_keeps_up_has_not_read)
{
    enum { TOPICS = 200, ROUNDS = 25, SIZE = 1024 };
    int port;
    h_proc *b = h_broker(&port, "--retention-bytes", "1M", NULL);
    h_raw sub = v2_connect(port, 0, 1, NULL, NULL);
    cr_assert_eq(sub_at(&sub, 1, "r.>", VG_SUB_NEW, 0, 0), 0);
    h_raw pub = v2_connect(port, 0, 1, NULL, NULL);
    static char payload[SIZE];
    char topic[16];
    vg_buf m = {0};
    for (int round = 1; round <= ROUNDS; round++) {
        memset(payload, 'a' + round % 26, sizeof payload);
        for (int k = 0; k < TOPICS; k++) {
            int tl = snprintf(topic, sizeof topic, "r.%d", k);
            cr_assert_eq(vg_frame_put_msg(&m, VG_FRAME_MSG_TYPE1, topic, (size_t)tl, payload, SIZE),
                         VG_OK);
        }
        vg_frame_put_ping(&m);
        h_raw_send_buf(&pub, &m);
        vg_frame f;
        do
            cr_assert(h_raw_read(&pub, &f, WAIT), "no PONG after round %d", round);
        while (f.type != VG_FRAME_PONG);
        for (int got = 0; got < TOPICS;) {
            cr_assert(h_raw_read(&sub, &f, WAIT), "round %d: waiting for message %d of %d", round,
                      got + 1, TOPICS);
            if (f.type == VG_FRAME_POS)
                continue; /* a new topic of the pattern, round 1 */
            cr_assert_neq(f.type, VG_FRAME_GAP, "round %d: GAP %.*s %llu..%llu", round,
                          (int)f.topic_len, (const char *)f.topic, (unsigned long long)f.from,
                          (unsigned long long)f.to);
            cr_assert(vg_frame_is_msg(f.type), "round %d: frame type %d", round, f.type);
            cr_assert_eq(f.seq, (uint64_t)round, "%.*s: seq %llu in round %d", (int)f.topic_len,
                         (const char *)f.topic, (unsigned long long)f.seq, round);
            cr_assert(f.payload_len == SIZE && ((const char *)f.payload)[0] == 'a' + round % 26);
            got++;
        }
    }
    vg_buf_free(&m);
    h_raw_close(&pub);
    h_raw_close(&sub);
    h_free(b);
}

Test(log, a_position_in_another_epoch_is_a_gap_and_starts_at_the_first)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    uint64_t epoch;
    h_raw r = v2_connect(port, 0, 1, &epoch, NULL);
    publish(&r, "t", "m", 1, 2);
    vg_buf buf = {0};
    vg_frame_put_sub2(&buf, 3, "t", 1, VG_SUB_SEQ, epoch ^ 1, 40);
    h_raw_send_buf(&r, &buf);
    vg_buf_free(&buf);
    vg_frame f;
    cr_assert(h_raw_read(&r, &f, WAIT));
    cr_assert_eq(f.type, VG_FRAME_GAP, "expected GAP, got type %d", f.type);
    cr_assert_eq(f.code, VG_GAP_EPOCH);
    cr_assert_eq(f.from, 40);
    cr_assert_eq(f.to, 0);
    cr_assert(h_raw_read(&r, &f, WAIT));
    cr_assert_eq(f.type, VG_FRAME_OK);
    cr_assert_eq(f.next, 1);
    expect_msg(&r, 1, "m", 1);
    expect_msg(&r, 2, "m", 2);
    h_raw_close(&r);
    h_free(b);
}

/* A subscriber that does not read while the log overflows its budget gets,
 * when it reads again, every seq exactly once: delivered, or inside the
 * one GAP that names it. */
Test(log, retention_overflow_is_an_exact_gap)
{
    int port;
    h_proc *b = h_broker(&port, "--retention-bytes", "1M", NULL);
    h_raw sub = v2_connect(port, 0, 1, NULL, NULL);
    cr_assert_eq(sub_at(&sub, 1, "big", VG_SUB_FIRST, 0, 0), 1);
    h_raw pub = v2_connect(port, 0, 1, NULL, NULL);
    enum { N = 16000, SIZE = 1000 };
    static char payload[SIZE];
    memset(payload, 'p', sizeof payload);
    vg_buf buf = {0};
    for (int i = 0; i < N; i++)
        vg_frame_put_msg(&buf, VG_FRAME_MSG_TYPE2, "big", 3, payload, sizeof payload);
    vg_frame_put_ping(&buf);
    h_raw_send_buf(&pub, &buf); /* 16 MB while sub reads nothing: its socket buffers take a few */
    vg_frame f;
    do
        cr_assert(h_raw_read(&pub, &f, WAIT), "no PONG for the flood");
    while (f.type != VG_FRAME_PONG);

    uint64_t want = 1, delivered = 0, missed = 0;
    int gaps = 0;
    while (want <= N) {
        cr_assert(h_raw_read(&sub, &f, WAIT), "waiting for seq %llu (delivered %llu, missed %llu)",
                  (unsigned long long)want, (unsigned long long)delivered,
                  (unsigned long long)missed);
        if (f.type == VG_FRAME_GAP) {
            cr_assert_eq(f.code, VG_GAP_RETENTION);
            cr_assert_eq(f.from, want, "GAP from %llu, expected %llu", (unsigned long long)f.from,
                         (unsigned long long)want);
            cr_assert_geq(f.to, f.from);
            missed += f.to - f.from + 1;
            want = f.to + 1;
            gaps++;
            continue;
        }
        cr_assert(vg_frame_is_msg(f.type), "type %d", f.type);
        cr_assert_eq(f.seq, want, "seq %llu, expected %llu", (unsigned long long)f.seq,
                     (unsigned long long)want);
        want++;
        delivered++;
    }
    cr_assert_eq(delivered + missed, N);
    cr_assert_gt(missed, 0, "a 16 MB flood into a 1 MiB log lost nothing to a reader that stopped");
    cr_assert_gt(delivered, 0);
    cr_log_info("delivered %llu, missed %llu in %d gaps", (unsigned long long)delivered,
                (unsigned long long)missed, gaps);
    vg_buf_free(&buf);
    h_raw_close(&sub);
    h_raw_close(&pub);
    h_free(b);
}

/* A publisher that resends after a reconnect: the broker appends each of
 * its numbered messages once, and INFO says how far it got. */
Test(log, a_resending_publisher_is_deduplicated)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    const uint64_t me = 0x5eed5eed5eedull;
    uint64_t acked;
    h_raw sub = v2_connect(port, 0, 1, NULL, NULL);
    cr_assert_eq(sub_at(&sub, 1, "d", VG_SUB_NEW, 0, 0), 1);
    h_raw pub = v2_connect(port, me, 1, NULL, &acked);
    cr_assert_eq(acked, 0);
    publish(&pub, "d", "m", 1, 10);
    h_raw_close(&pub);
    /* It did not see the PONG, say: it resends from 6. */
    pub = v2_connect(port, me, 6, NULL, &acked);
    cr_assert_eq(acked, 10, "publisher_acked %llu", (unsigned long long)acked);
    publish(&pub, "d", "m", 6, 10); /* 6..15: 6..10 are duplicates */
    for (int i = 1; i <= 15; i++)
        expect_msg(&sub, (uint64_t)i, "m", i);
    expect_pong(&sub);
    /* Publisher 0 is not deduplicated. */
    h_raw anon = v2_connect(port, 0, 1, NULL, &acked);
    cr_assert_eq(acked, 0);
    publish(&anon, "d", "m", 16, 1);
    h_raw_close(&anon);
    anon = v2_connect(port, 0, 1, NULL, NULL);
    publish(&anon, "d", "m", 16, 1);
    expect_msg(&sub, 16, "m", 16);
    expect_msg(&sub, 17, "m", 16);
    h_raw_close(&anon);
    h_raw_close(&pub);
    h_raw_close(&sub);
    h_free(b);
}

/* Version 1 is served as before, beside version 2: no seq, no OK position,
 * and it receives what version-2 publishers send. */
Test(log, a_version1_subscriber_is_served_as_before)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_raw v1 = h_raw_connect(port);
    h_raw_handshake(&v1);
    vg_buf buf = {0};
    vg_frame_put_sub(&buf, 1, "mixed", 5);
    h_raw_send_buf(&v1, &buf);
    vg_frame f;
    cr_assert(h_raw_read(&v1, &f, WAIT));
    cr_assert_eq(f.type, VG_FRAME_OK);
    cr_assert_eq(f.form, 1);
    h_raw pub = v2_connect(port, 9, 1, NULL, NULL);
    publish(&pub, "mixed", "x", 1, 3);
    for (int i = 1; i <= 3; i++) {
        cr_assert(h_raw_read(&v1, &f, WAIT));
        cr_assert(vg_frame_is_msg(f.type));
        cr_assert_eq(f.form, 1, "a version-1 subscriber got a seq");
        char want[16];
        int len = snprintf(want, sizeof want, "x-%d", i);
        cr_assert(f.payload_len == (uint32_t)len && memcmp(f.payload, want, (size_t)len) == 0);
    }
    vg_buf_free(&buf);
    h_raw_close(&pub);
    h_raw_close(&v1);
    h_free(b);
}

/* kill -9 loses the memory-only log: the restarted broker has another
 * epoch, so that no client mistakes its numbers for the old ones. */
Test(log, a_restarted_broker_has_a_new_epoch)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    uint64_t first, second;
    h_raw r = v2_connect(port, 0, 1, &first, NULL);
    h_raw_close(&r);
    h_signal(b, SIGKILL);
    cr_assert(h_wait_exit(b, WAIT));
    h_free(b);
    b = h_broker_at(port, NULL);
    r = v2_connect(port, 0, 1, &second, NULL);
    cr_assert_neq(first, second, "the same epoch %llu after a restart", (unsigned long long)first);
    h_raw_close(&r);
    h_free(b);
}
