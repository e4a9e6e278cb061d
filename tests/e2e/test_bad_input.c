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
    vg_frame_put_sub(&b, 8, "news.*", 6);
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
    cr_assert(strstr(f.reason, "wildcards") != NULL);
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
