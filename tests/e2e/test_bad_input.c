/* Hostile or broken clients get a clear ERR and are dropped; the broker and
 * its other clients carry on. Each test keeps a real subscriber connected
 * throughout and checks it still receives afterwards. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "proto.h"

#define WAIT 10000

typedef struct {
    h_proc *broker;
    h_proc *bystander;
    int port;
} fixture;

static fixture start(void)
{
    fixture fx;
    fx.broker = h_broker(&fx.port, NULL);
    fx.bystander = h_sub(fx.port, "bystander", NULL);
    return fx;
}

/* The bystander still gets a message published now, and a fresh pair works. */
static void finish(fixture *fx)
{
    static int seq;
    char msg[32], line[64];
    snprintf(msg, sizeof msg, "after-%d", ++seq);
    snprintf(line, sizeof line, "bystander MSG_TYPE1 %s\n", msg);
    cr_assert_eq(h_pub(fx->port, "bystander", msg, NULL), 0);
    cr_assert(h_wait_out(fx->bystander, line, WAIT), "bystander lost its data: %s", fx->bystander->out);
    h_assert_serves(fx->port);
    h_free(fx->bystander);
    h_free(fx->broker);
}

/* Reads frames until an ERR; asserts its code, then that the broker closes. */
static void expect_fatal(h_raw *r, vg_errcode code)
{
    vg_frame f;
    do {
        cr_assert(h_raw_read(r, &f, WAIT), "expected ERR %s, got nothing", vg_errcode_name(code));
    } while (f.type != VG_FRAME_ERR);
    cr_assert_eq(f.code, code, "ERR code %s, expected %s", vg_errcode_name(f.code), vg_errcode_name(code));
    cr_assert(f.reason_len > 0, "ERR without a reason");
    cr_assert(h_raw_wait_eof(r, WAIT), "broker did not close after a fatal ERR");
}

static void send_body(h_raw *r, const void *body, uint32_t len)
{
    uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    h_raw_send(r, hdr, 4);
    h_raw_send(r, body, len);
}

Test(bad_input, garbage_text_is_an_oversize_length)
{
    fixture fx = start();
    h_raw r = h_raw_connect(fx.port);
    const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"; /* "GET " reads as 1.2 GB */
    h_raw_send(&r, http, sizeof http - 1);
    expect_fatal(&r, VG_E_TOO_LARGE);
    h_raw_close(&r);
    cr_assert(h_wait_err(fx.broker, "event=evict reason=too_large", WAIT), "%s", fx.broker->err);
    finish(&fx);
}

Test(bad_input, oversize_length_after_handshake)
{
    fixture fx = start();
    h_raw r = h_raw_connect(fx.port);
    h_raw_handshake(&r);
    h_raw_send(&r, "\x7f\xff\xff\xff", 4);
    expect_fatal(&r, VG_E_TOO_LARGE);
    h_raw_close(&r);
    finish(&fx);
}

Test(bad_input, msgpack_count_bomb_issue_1013)
{
    fixture fx = start();
    h_raw r = h_raw_connect(fx.port);
    h_raw_handshake(&r);
    send_body(&r, "\xdd\xff\x00\x00\x00", 5); /* an array claiming 4 billion elements */
    expect_fatal(&r, VG_E_BAD_FRAME);
    h_raw_close(&r);
    finish(&fx);
}

Test(bad_input, invalid_msgpack_and_unknown_type)
{
    fixture fx = start();
    h_raw r = h_raw_connect(fx.port);
    h_raw_handshake(&r);
    send_body(&r, "\xc1", 1); /* a byte msgpack never uses */
    expect_fatal(&r, VG_E_BAD_FRAME);
    h_raw_close(&r);

    r = h_raw_connect(fx.port);
    h_raw_handshake(&r);
    send_body(&r, "\x91\x63", 2); /* [99] */
    expect_fatal(&r, VG_E_UNKNOWN_TYPE);
    h_raw_close(&r);
    finish(&fx);
}

Test(bad_input, truncated_frame_then_close)
{
    fixture fx = start();
    h_raw r = h_raw_connect(fx.port);
    h_raw_handshake(&r);
    h_raw_send(&r, "\x00\x00\x00\x64\x93\x0b", 6); /* promises 100 bytes, sends 2 */
    h_raw_close(&r);
    cr_assert(h_wait_err(fx.broker, "event=client_closed reason=eof", WAIT), "%s", fx.broker->err);
    finish(&fx);
}

Test(bad_input, frames_before_connect_are_refused)
{
    fixture fx = start();
    h_raw r = h_raw_connect(fx.port);
    vg_buf b = {0};
    vg_frame_put_sub(&b, 1, "bystander", 9);
    h_raw_send_buf(&r, &b);
    vg_buf_free(&b);
    expect_fatal(&r, VG_E_PROTOCOL);
    h_raw_close(&r);
    finish(&fx);
}

Test(bad_input, bad_sub_topic_is_refused_but_connection_stays)
{
    fixture fx = start();
    h_raw r = h_raw_connect(fx.port);
    h_raw_handshake(&r);
    vg_buf b = {0};
    vg_frame_put_sub(&b, 7, "a..b", 4);
    vg_frame_put_sub(&b, 8, "news.a*", 7);
    vg_frame_put_sub(&b, 10, "news.>.x", 8);
    vg_frame_put_sub(&b, 11, "news.*", 6); /* a pattern: accepted */
    vg_frame_put_ping(&b);
    h_raw_send_buf(&r, &b);
    vg_frame f;
    cr_assert(h_raw_read(&r, &f, WAIT));
    cr_assert_eq(f.type, VG_FRAME_ERR);
    cr_assert_eq(f.code, VG_E_BAD_TOPIC);
    cr_assert_eq(f.sid, 7);
    cr_assert(h_raw_read(&r, &f, WAIT));
    cr_assert_eq(f.type, VG_FRAME_ERR);
    cr_assert_eq(f.sid, 8);
    cr_assert(strstr(f.reason, "'*' must be a whole token") != NULL, "%s", f.reason);
    cr_assert(h_raw_read(&r, &f, WAIT));
    cr_assert_eq(f.type, VG_FRAME_ERR);
    cr_assert_eq(f.sid, 10);
    cr_assert(strstr(f.reason, "'>' must be the last token") != NULL, "%s", f.reason);
    cr_assert(h_raw_read(&r, &f, WAIT));
    cr_assert_eq(f.type, VG_FRAME_OK);
    cr_assert_eq(f.sid, 11);
    cr_assert(h_raw_read(&r, &f, WAIT));
    cr_assert_eq(f.type, VG_FRAME_PONG, "connection should still be open");

    /* Duplicate sid and unknown sid are refused without closing, too. */
    vg_frame_put_sub(&b, 9, "ok.topic", 8);
    vg_frame_put_sub(&b, 9, "other", 5);
    vg_frame_put_unsub(&b, 42);
    vg_frame_put_unsub(&b, 9);
    h_raw_send_buf(&r, &b);
    vg_buf_free(&b);
    uint64_t want[][2] = {{VG_FRAME_OK, 9}, {VG_FRAME_ERR, 9}, {VG_FRAME_ERR, 42}, {VG_FRAME_OK, 9}};
    for (int i = 0; i < 4; i++) {
        cr_assert(h_raw_read(&r, &f, WAIT));
        cr_assert_eq(f.type, want[i][0], "reply %d", i);
        cr_assert_eq(f.sid, want[i][1], "reply %d", i);
    }
    h_raw_close(&r);
    finish(&fx);
}

Test(bad_input, publish_to_bad_topic_is_fatal)
{
    fixture fx = start();
    h_raw r = h_raw_connect(fx.port);
    h_raw_handshake(&r);
    vg_buf b = {0};
    vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "bystander", 9, "ok", 2);
    vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "has space", 9, "x", 1);
    h_raw_send_buf(&r, &b);
    vg_buf_free(&b);
    expect_fatal(&r, VG_E_BAD_TOPIC);
    h_raw_close(&r);
    /* The valid message before the bad one was delivered. */
    cr_assert(h_wait_out(fx.bystander, "bystander MSG_TYPE1 ok\n", WAIT), "%s", fx.bystander->out);
    finish(&fx);
}

Test(bad_input, many_bad_clients_at_once)
{
    fixture fx = start();
    h_raw r[50];
    for (int i = 0; i < 50; i++) {
        r[i] = h_raw_connect(fx.port);
        h_raw_send(&r[i], "\xde\xad\xbe\xef garbage", 12);
    }
    for (int i = 0; i < 50; i++) {
        cr_assert(h_raw_wait_eof(&r[i], WAIT), "client %d not dropped", i);
        h_raw_close(&r[i]);
    }
    finish(&fx);
}

/* ---- version-2 shapes on a version-1 connection ---- */

/* A client of a later version sends CONNECT in the version-2 shape (or a
 * longer one, version 3): the broker answers INFO version 2, in the
 * version-2 shape; a 3-element SUB is a NEW one, answered with where it
 * starts, and messages carry their sequence numbers. */
Test(bad_input, version2_connect_gets_version2_info)
{
    fixture fx = start();
    for (int version = 2; version <= 3; version++) {
        h_raw r = h_raw_connect(fx.port);
        vg_buf b = {0};
        if (version == 2) {
            vg_frame_put_connect2(&b, 2, "v2-client", NULL, 0x1234567890abcdefull, 1);
        } else { /* [3, 3, "v3-client", nil, 7, 1, "a later field", nil] */
            static const uint8_t v3[] = {0x98, 0x03, 0x03, 0xa9, 'v', '3', '-', 'c', 'l', 'i',
                                         'e', 'n', 't', 0xc0, 0x07, 0x01, 0xad, 'a', ' ', 'l',
                                         'a', 't', 'e', 'r', ' ', 'f', 'i', 'e', 'l', 'd', 0xc0};
            send_body(&r, v3, sizeof v3);
        }
        vg_frame_put_sub(&b, 1, "bystander", 9);
        vg_frame_put_ping(&b);
        h_raw_send_buf(&r, &b);
        vg_frame f;
        cr_assert(h_raw_read(&r, &f, WAIT), "no INFO for a version-%d CONNECT", version);
        cr_assert_eq(f.type, VG_FRAME_INFO);
        cr_assert_eq(f.version, 2, "INFO version %llu", (unsigned long long)f.version);
        cr_assert_eq(f.form, 2);
        cr_assert_neq(f.epoch, 0);
        uint64_t epoch = f.epoch;
        cr_assert(h_raw_read(&r, &f, WAIT));
        cr_assert_eq(f.type, VG_FRAME_OK);
        cr_assert_eq(f.form, 2, "a version-2 OK answers any SUB on a version-2 connection");
        cr_assert_eq(f.epoch, epoch);
        uint64_t next = f.next;
        cr_assert_geq(next, 1);
        cr_assert(h_raw_read(&r, &f, WAIT));
        cr_assert_eq(f.type, VG_FRAME_PONG);
        /* A message to the topic arrives with its sequence number. */
        vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "bystander", 9, "v2", 2);
        h_raw_send_buf(&r, &b);
        cr_assert(h_raw_read(&r, &f, WAIT));
        cr_assert_eq(f.type, VG_FRAME_MSG_TYPE1);
        cr_assert_eq(f.form, 2);
        cr_assert_eq(f.seq, next, "seq %llu, OK said %llu", (unsigned long long)f.seq,
                     (unsigned long long)next);
        cr_assert(h_wait_out(fx.bystander, version == 2 ? "bystander MSG_TYPE1 v2\n"
                                                        : "bystander MSG_TYPE1 v2\nbystander MSG_TYPE1 v2\n",
                             WAIT), "%s",
                  fx.bystander->out);
        vg_buf_free(&b);
        h_raw_close(&r);
    }
    finish(&fx);
}

/* Reads frames until an ERR; asserts bad_frame with reason, then the close. */
static void expect_bad_frame(h_raw *r, const char *reason)
{
    vg_frame f;
    do {
        cr_assert(h_raw_read(r, &f, WAIT), "expected ERR bad_frame \"%s\", got nothing", reason);
    } while (f.type != VG_FRAME_ERR);
    cr_assert_eq(f.code, VG_E_BAD_FRAME, "ERR %s, expected bad_frame (\"%s\")",
                 vg_errcode_name(f.code), reason);
    cr_assert(f.reason_len == strlen(reason) && memcmp(f.reason, reason, f.reason_len) == 0,
              "reason \"%.*s\", expected \"%s\"", (int)f.reason_len, f.reason, reason);
    cr_assert(h_raw_wait_eof(r, WAIT), "broker did not close after a fatal ERR");
}

/* Every other version-2 shape is refused like a malformed frame: a
 * fatal ERR bad_frame that says what was wrong, logged as an eviction. A
 * valid MSG sent just before is still delivered. */
Test(bad_input, version2_shapes_on_a_version1_connection_are_refused)
{
    fixture fx = start();
    static const char *const reasons[] = {
        "SUB with a start position on a version-1 connection",
        "MSG with a sequence number from a client",
        "MSG with a sequence number from a client",
        "OK with a position from a client",
        "GAP from a client",
    };
    for (int i = 0; i < 5; i++) {
        h_raw r = h_raw_connect(fx.port);
        h_raw_handshake(&r);
        vg_buf b = {0};
        char before[16];
        snprintf(before, sizeof before, "before-%d", i);
        vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "bystander", 9, before, strlen(before));
        switch (i) {
        case 0: vg_frame_put_sub2(&b, 1, "bystander", 9, VG_SUB_FIRST, 0, 0); break;
        case 1: vg_frame_put_msg_seq(&b, VG_FRAME_MSG_TYPE1, "bystander", 9, "seq", 3, 1); break;
        case 2: vg_frame_put_msg_seq(&b, VG_FRAME_MSG_TYPE2, "bystander", 9, "seq", 3, 7); break;
        case 3: vg_frame_put_ok2(&b, 1, 1, 1); break;
        case 4: vg_frame_put_gap(&b, 1, "bystander", 9, 1, 5, VG_GAP_RETENTION); break;
        }
        vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "bystander", 9, "after", 5);
        h_raw_send_buf(&r, &b);
        vg_buf_free(&b);
        expect_bad_frame(&r, reasons[i]);
        h_raw_close(&r);
        char line[64];
        snprintf(line, sizeof line, "bystander MSG_TYPE1 %s\n", before);
        cr_assert(h_wait_out(fx.bystander, line, WAIT), "%s", fx.bystander->out);
        cr_assert(h_wait_err(fx.broker, reasons[i], WAIT), "%s", fx.broker->err);
    }
    cr_assert(h_wait_err(fx.broker, "event=evict reason=bad_frame", WAIT), "%s", fx.broker->err);
    /* Nothing of a refused frame, nor anything after it, was delivered. */
    cr_assert(strstr(fx.bystander->out, "MSG_TYPE1 seq") == NULL, "%s", fx.bystander->out);
    cr_assert(strstr(fx.bystander->out, "MSG_TYPE2 seq") == NULL, "%s", fx.bystander->out);
    cr_assert(strstr(fx.bystander->out, " after\n") == NULL, "%s", fx.bystander->out);
    finish(&fx);
}

/* Before CONNECT too: the shape is refused first, as a malformed frame is. */
Test(bad_input, version2_sub_before_connect_is_a_bad_frame)
{
    fixture fx = start();
    h_raw r = h_raw_connect(fx.port);
    vg_buf b = {0};
    vg_frame_put_sub2(&b, 1, "bystander", 9, VG_SUB_SEQ, 0, 1);
    h_raw_send_buf(&r, &b);
    vg_buf_free(&b);
    expect_bad_frame(&r, "SUB with a start position on a version-1 connection");
    h_raw_close(&r);
    finish(&fx);
}
