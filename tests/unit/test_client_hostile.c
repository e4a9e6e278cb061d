/* The client library (client.h) against the scripted fake broker
 * (client_harness.h): a hostile broker. INFO claiming payloads of 4 GiB
 * and more, a flood of PINGs whose PONGs it never reads, answers for sids
 * the client never used, frames before INFO, and version-2 frames.
 *
 * "Defect N" marks the regression test of a numbered defect of the
 * outside review (client_harness.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_harness.h"
#include "proto.h"

/* RSS is not compared under ASan: its shadow memory and the quarantine
 * of freed blocks grow it by themselves. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* The old library (before the restructuring) has no max_payload option,
 * no vg_client_close, no pending/unsent counters and no closed reason. */
#ifdef VG_OLD_API
#define SET_MAX_PAYLOAD(o, v) ((void)(o), (void)(v))
#else
#define SET_MAX_PAYLOAD(o, v) ((o)->max_payload = (v))
#endif

TestSuite(client_hostile, .init = client_setup, .fini = client_teardown, .timeout = 120);

/* ==== a broker past the client's limits ==== */

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    if (f != NULL)
        fclose(f);
    return v;
}

/* Defect 11: the broker's INFO max_payload was trusted. Whatever INFO says
 * (4 GiB, 2^64 - 1), the client keeps to its own max_payload for what it
 * sends and what it accepts: a bigger publish is refused, and a bigger
 * frame from the broker ends the connection at once, without allocating
 * for it. */
static void check_hostile_max_payload(uint64_t claimed)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    SET_MAX_PAYLOAD(&o, 1 * MIB);
    vg_client *c = start(&o);
    fb_accept(&l, &c1, fb_ms(5000), "the connection");
    fb_handshake(&c1, claimed);
    cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_OK);
    long rss0 = rss_kb();
    char *big = calloc(1, 1 * MIB + 1);
    cr_assert_not_null(big);
    vg_status st = vg_client_publish(c, VG_FRAME_MSG_TYPE1, "big.t", 5, big, 1 * MIB + 1, 0);
    cr_assert_eq(st, VG_ERR_TOO_LARGE, "a payload above the client's own max_payload: %s",
                 vg_strerror(st));
    st = vg_client_publish(c, VG_FRAME_MSG_TYPE1, "big.t", 5, big, 1 * MIB, fb_ms(5000));
    cr_assert_eq(st, VG_OK, "a payload of exactly max_payload: %s", vg_strerror(st));
    free(big);
    vg_frame f;
    fb_expect(&c1, VG_FRAME_MSG_TYPE1, &f, fb_ms(5000), "the 1 MiB MSG");
    cr_assert_eq(f.payload_len, 1 * MIB);
    /* A frame header claiming ~4 GiB: the client must end the connection
     * when the four length bytes arrive, not wait for (or allocate) the rest. */
    uint8_t hdr[8] = {0xff, 0xff, 0xff, 0x00, 0x93, 0x0b, 0xa1, 't'};
    fb_send_raw(&c1, hdr, sizeof hdr);
    int64_t t0 = fb_now();
    cr_assert(fb_wait_eof(&c1, fb_ms(3000)), "the client kept reading a 4 GiB frame");
    cr_assert_lt(fb_now() - t0, fb_ms(2000));
    fb_close(&c1);
    /* The next broker claims the same; a frame just above the client's
     * limit also ends the connection. */
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, claimed);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=reconnected", NULL));
    uint32_t body = (uint32_t)vg_max_frame_for_v2(1 * MIB) + 1;
    uint8_t hdr2[4] = {(uint8_t)(body >> 24), (uint8_t)(body >> 16), (uint8_t)(body >> 8),
                       (uint8_t)body};
    fb_send_raw(&c2, hdr2, sizeof hdr2);
    cr_assert(fb_wait_eof(&c2, fb_ms(3000)), "the client accepted a frame above its limit");
    long rss1 = rss_kb();
    if (!SANITIZED && rss0 > 0 && rss1 > 0)
        cr_assert_lt(rss1 - rss0, 32 * 1024, "RSS grew by %ld KiB", rss1 - rss0);
    cr_assert_geq(fb_log_count("event=disconnected", "reason=protocol", NULL), 1);
#ifndef VG_OLD_API
    cr_assert_geq(fb_log_count("event=broker_limit", "using=1048576", NULL), 1);
#endif
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

Test(client_hostile, broker_claiming_4gib_payloads_is_held_to_the_clients_limit)
{
    check_hostile_max_payload(0xFFFFFFFFu);
}

Test(client_hostile, broker_claiming_2_to_the_64_payloads_is_held_to_the_clients_limit)
{
    check_hostile_max_payload(UINT64_MAX);
}

/* Defect 11: a broker that floods PINGs and never reads the PONGs. The
 * client's control queue is capped (256 KiB): the link ends as a slow
 * consumer, the client reconnects, and its memory stays bounded. */
Test(client_hostile, ping_flood_from_a_broker_that_never_reads_is_bounded)
{
    fb_listener l;
    fb_listen(&l, false, 4096);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    static uint8_t pings[6 * 10000];
    for (size_t i = 0; i < sizeof pings; i += 6)
        memcpy(pings + i, "\x00\x00\x00\x02\x91\x01", 6);
    long rss0 = rss_kb();
    long sent = 0;
    int64_t deadline = fb_now() + fb_ms(20000);
    bool ended = false;
    while (!ended && fb_now() < deadline) {
        long w = fb_send_some(&c1, pings, sizeof pings, 50);
        if (w < 0)
            break; /* the client closed: a reset */
        sent += w;
        ended = fb_log_count("event=disconnected", NULL) > 0;
        cr_assert_lt(sent, 1L << 30, "1 GiB of PINGs and the client still takes them");
    }
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=disconnected", NULL),
              "no disconnect after %ld bytes of PINGs", sent);
    cr_assert_eq(fb_log_count("event=disconnected", "reason=slow_consumer", NULL), 1,
                 "the flood did not end as a slow consumer");
    long rss1 = rss_kb();
    if (!SANITIZED && rss0 > 0 && rss1 > 0)
        cr_assert_lt(rss1 - rss0, 32 * 1024, "RSS grew by %ld KiB", rss1 - rss0);
    fb_reset(&c1);
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection after the flood");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=reconnected", NULL));
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* ==== frames the client did not ask for ==== */

/* Defect 11 (part): an ERR or OK for a sid the client never used does not
 * call on_sub_error, and the client keeps working. */
Test(client_hostile, answer_for_a_sid_never_used_is_ignored)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    fb_send_err(&conn, VG_E_NO_SUCH_SID, "no such subscription", 99);
    fb_send_err(&conn, VG_E_BAD_TOPIC, "bad topic", 98);
    fb_send_ok(&conn, 97);
    emu_init(&conn, true, false);
    emu_barrier();
    cr_assert_eq(cb_sub_errors(), 0, "on_sub_error called for a sid never used");
    cr_assert_eq(fb_log_count("event=subscribe_failed", NULL), 0);
    uint64_t sid = must_subscribe(c, "works.t");
    emu_until_frame(VG_FRAME_SUB, sid);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_OK);
    must_publish(c, "works.t", "hello");
    emu_until(saw_payload, "hello", fb_ms(5000), "a MSG after the stray answers");
    fb_send_msg(&conn, "works.t", "back");
    unsigned one = 1;
    cr_assert(wait_until(msgs_at_least, &one, fb_ms(5000)), "no message delivered");
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

#ifndef VG_OLD_API
/* The client answers a PING that comes before INFO (docs/protocol.md);
 * any other frame before INFO ends the connection. */
Test(client_hostile, ping_before_info_is_answered_and_a_msg_is_a_protocol_error)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = start(&o);
    fb_accept(&l, &c1, fb_ms(5000), "the connection");
    fb_expect(&c1, VG_FRAME_CONNECT, NULL, fb_ms(5000), "CONNECT");
    fb_send_ping(&c1);
    fb_expect(&c1, VG_FRAME_PONG, NULL, fb_ms(5000), "the PONG to a PING before INFO");
    fb_send_msg(&c1, "early.t", "too early");
    cr_assert(fb_wait_eof(&c1, fb_ms(5000)), "a MSG before INFO was accepted");
    cr_assert(fb_log_wait(1, fb_ms(2000), "event=connect_failed", "reason=protocol", NULL));
    fb_close(&c1);
    fb_accept(&l, &c2, fb_ms(5000), "the next attempt");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_OK);
    cr_assert_eq(cb_msgs(), 0);
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* A broker delivers every MSG with its seq on a version-2 connection: one
 * without it is a protocol error that ends the connection, and nothing of
 * it (or after it) reaches the application; the next connection works. */
Test(client_hostile, a_msg_without_seq_ends_the_connection)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t sid = must_subscribe(c, "v2.t");
    emu_init(&conn, true, false);
    emu_until_frame(VG_FRAME_SUB, sid);
    cr_assert_eq(vg_client_wait_subscribed(c, sid, fb_ms(5000)), VG_OK);
    vg_buf b = {0};
    vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "v2.t", 4, "no seq", 6);
    vg_frame_put_msg_seq(&b, VG_FRAME_MSG_TYPE1, "v2.t", 4, "after it", 8, 1);
    fb_send_raw(&conn, b.data, b.len);
    vg_buf_free(&b);
    cr_assert(fb_wait_eof(&conn, fb_ms(5000)), "a MSG without seq did not end the connection");
    fb_close(&conn);
    cr_assert(fb_log_wait(1, fb_ms(2000), "event=disconnected", "reason=protocol",
                          "a MSG without a sequence number", NULL));
    fb_accept(&l, &conn, fb_ms(5000), "the reconnection");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    emu_init(&conn, true, false);
    emu_until_frame(VG_FRAME_SUB, sid); /* the renewal, answered OK */
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=reconnected", NULL));
    cr_assert_eq(cb_msgs(), 0, "a message from the broken connection was delivered");
    fb_send_msg(&conn, "v2.t", "with seq");
    unsigned one = 1;
    cr_assert(wait_until(msgs_at_least, &one, fb_ms(5000)), "no message after reconnecting");
    emu_barrier();
    cr_assert_eq(cb_msgs(), 1);
    cr_assert_str_eq(cb.last_payload, "with seq");
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

#endif
