/* The client library (client.h) against the scripted fake broker
 * (client_harness.h): liveness. When the reconnect backoff grows and when
 * it resets, and the heartbeat's verdicts (a silent broker, one that
 * never reads, late PONGs) against their bound. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "client_harness.h"
#include "log.h"
#include "proto.h"

TestSuite(client_liveness, .init = client_setup, .fini = client_teardown, .timeout = 120);

/* ==== backoff reset rules ==== */

#ifndef VG_OLD_API
/* The connect_failed lines logged so far: attempt numbers and delays. */
typedef struct {
    unsigned attempt[64];
    long long retry[64];
    int n;
} attempts_log;

static attempts_log parse_attempts(void)
{
    attempts_log a = {.n = 0};
    char *text = fb_log_text();
    for (char *line = strtok(text, "\n"); line != NULL && a.n < 64; line = strtok(NULL, "\n")) {
        if (strstr(line, "event=connect_failed") == NULL)
            continue;
        const char *at = strstr(line, " attempt=");
        const char *re = strstr(line, " retry_in_ms=");
        a.attempt[a.n] = at ? (unsigned)strtoul(at + 9, NULL, 10) : 0;
        a.retry[a.n] = re ? strtoll(re + 13, NULL, 10) : -1;
        a.n++;
    }
    free(text);
    return a;
}

static bool lines_at_least(void *arg)
{
    return fb_log_count("event=connect_failed", NULL) >= *(int *)arg;
}

/* Attempt numbers start at 1; a listener that accepts TCP but never
 * completes the handshake (silent, or closing at once) does not reset the
 * backoff: attempt numbers and delay windows keep growing. A completed
 * handshake resets both, and `reconnected ... attempts=N` counts the
 * attempt that succeeded. */
Test(client_liveness, backoff_grows_until_a_handshake_completes)
{
    vg_log_set_level(VG_LOG_DEBUG); /* every attempt's line, not one per 10 s */
    fb_listener l;
    fb_listen(&l, false, 0);
    vg_client_opts o = opts_for(l.port);
    o.keepalive = (vg_keepalive){300, 150, 2}; /* the handshake deadline is then 1 s */
    o.backoff_base_ms = 10;
    o.backoff_max_ms = 10 * 64;
    vg_client *c = start(&o);
    fb_conn x;
    for (int i = 1; i <= 7; i++) {
        fb_accept(&l, &x, fb_ms(5000), "another attempt");
        fb_expect(&x, VG_FRAME_CONNECT, NULL, fb_ms(5000), "CONNECT, to be left unanswered");
        if (i > 2)
            fb_close(&x); /* attempts 3..7 end at once; 1 and 2 time out */
        cr_assert(wait_until(lines_at_least, &i, fb_ms(5000)), "no connect_failed line for attempt %d", i);
        if (i <= 2)
            fb_close(&x);
    }
    attempts_log a = parse_attempts();
    cr_assert_eq(a.n, 7);
    long long late = 0;
    for (int i = 0; i < 7; i++) {
        long long window = 10LL << i;
        cr_assert_eq(a.attempt[i], (unsigned)i + 1, "line %d says attempt=%u", i + 1, a.attempt[i]);
        cr_assert(a.retry[i] >= 0 && a.retry[i] <= window,
                  "attempt %d waits %lld ms, outside [0, %lld]", i + 1, a.retry[i], window);
        if (i >= 4 && a.retry[i] > late)
            late = a.retry[i];
    }
    /* Uniform over [0, 160], [0, 320], [0, 640]: all three <= 10 ms by
     * chance has probability below 4e-6; a reset backoff never exceeds 10. */
    cr_assert_gt(late, 10, "attempts 5 to 7 all waited at most the base delay: reset?");
    cr_assert_geq(fb_log_count("connect_failed", "reason=timeout", NULL), 2);

    /* Attempt 8 completes the handshake. */
    fb_conn c8, c9, c10;
    fb_accept(&l, &c8, fb_ms(5000), "attempt 8");
    fb_handshake(&c8, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_OK);
    c8.pings = FB_PING_ANSWER;
    emu_init(&c8, true, false);
    emu_barrier();
    fb_close(&c8);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=disconnected", NULL));
    char *text = fb_log_text();
    const char *d = strstr(text, "event=disconnected");
    const char *r = d ? strstr(d, "retry_in_ms=") : NULL;
    long long after_reset = r ? strtoll(r + 12, NULL, 10) : -1;
    free(text);
    cr_assert(after_reset >= 0 && after_reset <= 10,
              "the first delay after a handshake is %lld ms, want [0, 10]", after_reset);
    /* One more failed attempt (attempt=1 again), then a success: attempts=2. */
    fb_accept(&l, &c9, fb_ms(5000), "the first reconnect attempt");
    fb_expect(&c9, VG_FRAME_CONNECT, NULL, fb_ms(5000), "CONNECT");
    fb_close(&c9);
    int eight = 8;
    cr_assert(wait_until(lines_at_least, &eight, fb_ms(5000)));
    a = parse_attempts();
    cr_assert_eq(a.attempt[7], 1, "attempt numbers restart at 1 after a handshake, got %u",
                 a.attempt[7]);
    cr_assert_leq(a.retry[7], 20);
    fb_accept(&l, &c10, fb_ms(5000), "the second reconnect attempt");
    fb_handshake(&c10, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=reconnected", "attempts=2", NULL),
              "want event=reconnected ... attempts=2");
    vg_client_destroy(c);
    fb_close(&c10);
    fb_unlisten(&l);
}

#endif

/* ==== heartbeat verdicts ==== */

#ifndef VG_OLD_API
/* A broker that reads but never answers and never sends is declared dead
 * no earlier than the bound (time + probes x interval) after it was last
 * heard, and not much later. */
Test(client_liveness, silent_broker_is_declared_dead_within_the_bound)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    o.keepalive = small_keepalive(300, 150, 2);
    int64_t bound = vg_keepalive_bound_ms(&o.keepalive);
    vg_client *c = start(&o);
    fb_accept(&l, &conn, fb_ms(5000), "the connection");
    fb_expect(&conn, VG_FRAME_CONNECT, NULL, fb_ms(5000), "CONNECT");
    conn.pings = FB_PING_SKIP;
    fb_send_info(&conn, VG_DEFAULT_MAX_PAYLOAD);
    int64_t last_sent = fb_now(); /* the client cannot have heard anything later */
    cr_assert(fb_wait_eof(&conn, (int)bound + fb_ms(3000)), "still connected after %lld ms",
              (long long)(fb_now() - last_sent));
    int64_t took = fb_now() - last_sent;
    cr_assert_geq(took, bound - 20, "declared dead after %lld ms, before the bound %lld",
                  (long long)took, (long long)bound);
    cr_assert_leq(took, bound + fb_ms(1000), "declared dead after %lld ms, bound %lld",
                  (long long)took, (long long)bound);
    cr_assert_geq(conn.pings_seen, 2, "want the %d probes before the verdict, saw %u", 2,
                  conn.pings_seen);
    cr_assert(fb_log_wait(1, fb_ms(1000), "event=disconnected", "reason=heartbeat", NULL));
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* A broker that keeps sending but never reads, while the client publishes
 * a lot: the client's output is stuck, and the client ends the connection
 * as a slow consumer within the bound although the broker is not silent. */
Test(client_liveness, broker_that_sends_but_never_reads_is_a_slow_consumer)
{
    fb_listener l;
    fb_listen(&l, false, 4096);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    o.keepalive = small_keepalive(300, 150, 2);
    o.max_buffer = 8 * MIB;
    int64_t bound = vg_keepalive_bound_ms(&o.keepalive);
    vg_client *c = connected_client(&l, &c1, &o);
    static char big[64 * KIB];
    int64_t t0 = fb_now(), deadline = t0 + bound + fb_ms(5000);
    int64_t next_msg = t0;
    while (fb_log_count("event=disconnected", NULL) == 0) {
        cr_assert_lt(fb_now(), deadline, "no disconnect %lld ms after the broker stopped reading",
                     (long long)(fb_now() - t0));
        vg_client_publish(c, VG_FRAME_MSG_TYPE1, "stuck.t", 7, big, sizeof big, 0);
        if (fb_now() >= next_msg) { /* a sign of life every 50 ms */
            fb_send_msg(&c1, "noise.t", "alive");
            next_msg = fb_now() + 50;
        }
        fb_sleep(5);
    }
    int64_t took = fb_now() - t0;
    cr_assert_eq(fb_log_count("event=disconnected", "reason=slow_consumer", NULL), 1,
                 "the connection ended for another reason");
    cr_assert_geq(took, bound - 20, "ended after %lld ms, before the bound %lld", (long long)took,
                  (long long)bound);
    cr_assert_leq(took, bound + fb_ms(1500), "ended after %lld ms, bound %lld", (long long)took,
                  (long long)bound);
    fb_reset(&c1);
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=reconnected", NULL));
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* A broker that answers every PING late, after the next probe went out
 * but before the bound: never declared dead. */
Test(client_liveness, late_pongs_within_the_bound_are_not_a_death)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    o.keepalive = small_keepalive(1000, 1000, 2); /* probes at +1 s, +2 s; dead at +3 s */
    int delay = fb_ms(1400);
    vg_client *c = connected_client(&l, &conn, &o);
    conn.pings = FB_PING_RETURN;
    int64_t due[64];
    int ndue = 0;
    int64_t end = fb_now() + fb_ms(5500);
    while (fb_now() < end) {
        int64_t wait = end - fb_now();
        if (ndue > 0 && due[0] - fb_now() < wait)
            wait = due[0] - fb_now();
        vg_frame f;
        fb_result r = fb_read(&conn, &f, wait > 0 ? (int)wait : 0);
        cr_assert(r == FB_FRAME || r == FB_TIMEOUT, "the client ended the connection: %s",
                  fb_result_name(r));
        if (r == FB_FRAME && f.type == VG_FRAME_PING && ndue < 64)
            due[ndue++] = fb_now() + delay;
        while (ndue > 0 && fb_now() >= due[0]) {
            fb_send_pong(&conn);
            memmove(due, due + 1, (size_t)--ndue * sizeof due[0]);
        }
    }
    cr_assert_eq(fb_log_count("event=disconnected", NULL), 0, "declared dead");
    cr_assert_geq(fb_log_count("event=heartbeat_missed", NULL), 1,
                  "the PONGs were not late enough to test anything");
    cr_assert_geq(conn.pings_seen, 2);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

#endif
