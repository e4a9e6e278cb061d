/* The whole path of a message, with the real broker, pub and sub. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

#define WAIT 10000

Test(pubsub, each_type_reaches_every_subscriber_of_its_topic_only)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s1 = h_sub(port, "news", NULL);
    h_proc *s2 = h_sub(port, "news", NULL);
    h_proc *other = h_sub(port, "--count", "1", "sports", NULL);

    cr_assert_eq(h_pub(port, "news", "hello", NULL), 0);
    cr_assert_eq(h_pub(port, "--type", "2", "news", "second kind", NULL), 0);
    for (h_proc **s = (h_proc *[]){s1, s2, NULL}; *s; s++) {
        cr_assert(h_wait_out(*s, "news MSG_TYPE1 hello\nnews MSG_TYPE2 second kind\n", WAIT),
                  "got: %s", (*s)->out);
    }
    /* The news messages were confirmed by the broker (pub exited 0) before this
     * publish began, so a wrongly routed one would reach `other` first. */
    cr_assert_eq(h_pub(port, "sports", "goal", NULL), 0);
    cr_assert(h_wait_exit(other, WAIT));
    cr_assert_eq(h_exit_code(other), 0);
    cr_assert_str_eq(other->out, "sports MSG_TYPE1 goal\n");
    cr_assert_eq(h_count(s1->out, "sports"), 0);

    h_free(s1), h_free(s2), h_free(other), h_free(b);
}

Test(pubsub, several_publishers_and_subscribers_at_once)
{
    enum { PUBS = 4, SUBS = 3, EACH = 500 };
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *subs[SUBS];
    for (int i = 0; i < SUBS; i++)
        subs[i] = h_sub(port, "--count", "2000", "load", NULL);

    h_proc *pubs[PUBS];
    char count[16];
    snprintf(count, sizeof count, "%d", EACH);
    const char *tmpl[PUBS] = {"A-{n}", "B-{n}", "C-{n}", "D-{n}"};
    for (int i = 0; i < PUBS; i++) {
        const char *argv[] = {h_bin("pub"), "--server", NULL, "--count", count, "load", tmpl[i], NULL};
        char server[32];
        snprintf(server, sizeof server, "127.0.0.1:%d", port);
        argv[2] = server;
        pubs[i] = h_spawn("pub", argv);
    }
    for (int i = 0; i < PUBS; i++) {
        cr_assert(h_wait_exit(pubs[i], 30000));
        cr_assert_eq(h_exit_code(pubs[i]), 0, "pub: %s", pubs[i]->err);
        h_free(pubs[i]);
    }
    for (int i = 0; i < SUBS; i++) {
        cr_assert(h_wait_exit(subs[i], 30000), "sub %d got %d lines", i, h_count(subs[i]->out, "\n"));
        cr_assert_eq(h_exit_code(subs[i]), 0);
        cr_assert_eq(h_count(subs[i]->out, "\n"), PUBS * EACH);
        /* Every message exactly once, and each publisher's messages in order. */
        for (int p = 0; p < PUBS; p++) {
            const char *at = subs[i]->out;
            for (int n = 1; n <= EACH; n++) {
                char line[64];
                snprintf(line, sizeof line, "load MSG_TYPE1 %c-%d\n", 'A' + p, n);
                const char *hit = strstr(at, line);
                cr_assert(hit != NULL, "sub %d: missing or out of order: %s", i, line);
                at = hit + strlen(line);
            }
        }
        h_free(subs[i]);
    }
    h_free(b);
}

Test(pubsub, stdin_lines_are_messages_and_payload_bytes_are_escaped)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s = h_sub(port, "--count", "3", "lines", NULL);
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    const char *argv[] = {"/bin/sh", "-c", "printf 'one\\ntwo\\tTAB\\nback\\\\slash\\n' | \"$0\" --server \"$1\" lines -",
                          h_bin("pub"), server, NULL};
    h_proc *p = h_spawn("pub", argv);
    cr_assert(h_wait_exit(p, WAIT));
    cr_assert_eq(h_exit_code(p), 0, "%s", p->err);
    cr_assert(h_wait_exit(s, WAIT));
    cr_assert_str_eq(s->out, "lines MSG_TYPE1 one\nlines MSG_TYPE1 two\\tTAB\nlines MSG_TYPE1 back\\\\slash\n");
    h_free(p), h_free(s), h_free(b);
}

Test(pubsub, payload_up_to_max_is_delivered_and_above_is_refused)
{
    int port;
    /* 100 KiB: one command-line argument may hold at most 128 KiB. */
    h_proc *b = h_broker(&port, "--max-payload", "100K", NULL);
    h_proc *s = h_sub(port, "--count", "1", "big", NULL);
    static char big[100 * 1024 + 2];
    memset(big, 'x', sizeof big - 1);
    big[100 * 1024] = '\0'; /* exactly the maximum */
    cr_assert_eq(h_pub(port, "big", big, NULL), 0);
    cr_assert(h_wait_exit(s, WAIT));
    cr_assert_eq(h_count(s->out, "x"), 100 * 1024);

    big[100 * 1024] = 'x'; /* one byte more */
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    const char *argv[] = {h_bin("pub"), "--server", server, "big", big, NULL};
    h_proc *p = h_spawn("pub", argv);
    cr_assert(h_wait_exit(p, WAIT));
    cr_assert_eq(h_exit_code(p), 1);
    cr_assert(strstr(p->err, "event=publish_failed") && strstr(p->err, "too large"), "%s", p->err);
    h_free(p), h_free(s), h_free(b);
}

Test(pubsub, sigterm_closes_clients_and_exits_zero)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s = h_sub(port, "news", NULL);
    h_signal(b, SIGTERM);
    cr_assert(h_wait_exit(b, WAIT), "broker did not stop");
    cr_assert_eq(h_exit_code(b), 0, "%s", b->err);
    cr_assert(strstr(b->err, "event=shutting_down clients=1"), "%s", b->err);
    cr_assert(strstr(b->err, "event=stopped"), "%s", b->err);
    /* The subscriber was told why, not just cut off. */
    cr_assert(h_wait_err(s, "code=shutdown", WAIT), "%s", s->err);
    h_free(s), h_free(b);
}

Test(pubsub, pub_without_broker_fails_clearly)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_signal(b, SIGKILL); /* a port that just stopped listening */
    cr_assert(h_wait_exit(b, WAIT));
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    const char *argv[] = {h_bin("pub"), "--server", server, "--timeout", "1", "news", "x", NULL};
    h_proc *p = h_spawn("pub", argv);
    cr_assert(h_wait_exit(p, WAIT));
    cr_assert_eq(h_exit_code(p), 1);
    cr_assert(strstr(p->err, "level=error event=connect_failed"), "%s", p->err);
    h_free(p), h_free(b);
}

static void expect_usage_error(const char *const argv[], const char *message)
{
    h_proc *p = h_spawn("cli", argv);
    cr_assert(h_wait_exit(p, WAIT));
    cr_assert_eq(h_exit_code(p), 2, "%s: exit %d", argv[0], h_exit_code(p));
    cr_assert(strstr(p->err, message) && strstr(p->err, "usage:"), "%s", p->err);
    cr_assert_str_eq(p->out, "", "usage errors must not print to stdout");
    h_free(p);
}

Test(cli, malformed_arguments_exit_2_with_usage)
{
    expect_usage_error((const char *[]){h_bin("pub"), "--type", "3", "t", "m", NULL}, "--type");
    expect_usage_error((const char *[]){h_bin("pub"), "--interval", "soon", "t", "m", NULL}, "--interval");
    expect_usage_error((const char *[]){h_bin("pub"), "t", NULL}, "TOPIC and MESSAGE");
    expect_usage_error((const char *[]){h_bin("pub"), "a..b", "m", NULL}, "invalid topic");
    expect_usage_error((const char *[]){h_bin("sub"), NULL}, "missing SUBJECT");
    expect_usage_error((const char *[]){h_bin("sub"), "--count", "-1", "t", NULL}, "--count");
    expect_usage_error((const char *[]){h_bin("sub"), "--server", "nope", "t", NULL}, "--server");
    expect_usage_error((const char *[]){h_bin("broker"), "--listen", "1.2.3.4", NULL}, "--listen");
    expect_usage_error((const char *[]){h_bin("broker"), "--max-payload", "0", NULL}, "--max-payload");
    expect_usage_error((const char *[]){h_bin("broker"), "--bogus", NULL}, "--bogus");
}

Test(cli, help_goes_to_stdout_and_exits_0)
{
    for (const char *const *prog = (const char *[]){"broker", "pub", "sub", NULL}; *prog; prog++) {
        const char *argv[] = {h_bin(*prog), "--help", NULL};
        h_proc *p = h_spawn(*prog, argv);
        cr_assert(h_wait_exit(p, WAIT));
        cr_assert_eq(h_exit_code(p), 0);
        cr_assert(strstr(p->out, "usage: ") != NULL, "%s --help: %s", *prog, p->out);
        h_free(p);
    }
}

Test(pubsub, subscriber_that_never_reads_does_not_block_publisher_or_others)
{
    /* 150 x 60 KB = 9 MB, paced at 12 MB/s so a live subscriber keeps up.
     * The stuck client can absorb only its 4 KiB window, the broker's socket
     * buffer (<= 4 MiB, net.ipv4.tcp_wmem) and a 1 MiB outbox. */
    enum { N = 150 };
    int port;
    h_proc *b = h_broker(&port, "--max-outbox", "1M", NULL);
    h_proc *healthy = h_sub(port, "--count", "150", "flood", NULL);
    h_raw stuck = h_raw_connect_small(port, 4096); /* subscribes, then never reads */
    h_raw_handshake(&stuck);
    vg_buf sub = {0};
    vg_frame_put_sub(&sub, 1, "flood", 5);
    h_raw_send_buf(&stuck, &sub);
    vg_buf_free(&sub);
    vg_frame f;
    cr_assert(h_raw_read(&stuck, &f, WAIT) && f.type == VG_FRAME_OK);

    static char msg[60010];
    memset(msg, 'x', 60000);
    strcpy(msg + 60000, "-{n}");
    cr_assert_eq(h_pub(port, "--count", "150", "--interval", "0.005", "flood", msg, NULL), 0,
                 "the publisher was held back by a subscriber that does not read");
    cr_assert(h_wait_exit(healthy, 30000), "healthy subscriber got %d of %d",
              h_count(healthy->out, "\n"), N);
    cr_assert_eq(h_count(healthy->out, "\n"), N);
    cr_assert(h_wait_err(b, "event=slow_consumer state=dropping", WAIT), "%s", b->err);
    h_raw_close(&stuck);
    cr_assert(h_wait_err(b, "event=client_closed reason=", WAIT));
    h_free(healthy), h_free(b);
}

Test(pubsub, replies_are_never_overtaken_by_a_message_to_oneself)
{
    /* SUB then MSG on that topic in one write, many times: each OK must
     * arrive before the message it makes possible. A publisher's own
     * delivery once went straight to its socket, ahead of the OK still
     * queued on its thread. */
    enum { ROUNDS = 200 };
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r);
    for (int i = 1; i <= ROUNDS; i++) {
        char topic[32];
        int n = snprintf(topic, sizeof topic, "self.%d", i);
        vg_buf out = {0};
        cr_assert_eq(vg_frame_put_sub(&out, (uint64_t)i, topic, (size_t)n), VG_OK);
        cr_assert_eq(vg_frame_put_msg(&out, VG_FRAME_MSG_TYPE1, topic, (size_t)n, "x", 1), VG_OK);
        h_raw_send_buf(&r, &out);
        vg_buf_free(&out);
        vg_frame f;
        cr_assert(h_raw_read(&r, &f, WAIT), "round %d: nothing came back", i);
        cr_assert_eq(f.type, VG_FRAME_OK, "round %d: frame type %d arrived before OK", i, f.type);
        cr_assert(h_raw_read(&r, &f, WAIT) && vg_frame_is_msg(f.type), "round %d: no MSG", i);
    }
    h_raw_close(&r);
    h_free(b);
}
