/* sub's output formats end to end: --raw, --json and the default text, with
 * payloads of every kind published through the real broker, and topics no
 * real broker would send from a fake one. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "proto.h"

#define WAIT 10000

/* Starts "sub --server 127.0.0.1:port --count count [flag] topic" and waits
 * for its subscription. (h_sub takes the word after a flag for the flag's
 * value, so it would not see the topic after --raw or --json.) */
static h_proc *sub_as(int port, const char *flag, const char *count, const char *topic)
{
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    const char *with_flag[] = {h_bin("sub"), "--server", server, "--count", count, flag, topic, NULL};
    const char *plain[] = {h_bin("sub"), "--server", server, "--count", count, topic, NULL};
    h_proc *s = h_spawn("sub", flag != NULL ? with_flag : plain);
    cr_assert(h_wait_err(s, "event=subscribed", WAIT), "sub did not subscribe: %s", s->err);
    return s;
}

/* Publishes each payload (n of them) to topic through a raw connection, so
 * that they may hold any byte, a newline included. */
static void publish_raw(int port, const char *topic, const char *const payloads[],
                        const size_t lens[], size_t n)
{
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r);
    vg_buf b = {0};
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, topic, strlen(topic), payloads[i],
                                      lens[i]),
                     VG_OK);
    h_raw_send_buf(&r, &b);
    vg_buf_free(&b);
    /* The broker has routed them all once it answers a PING sent after them. */
    cr_assert_eq(vg_frame_put_ping(&b), VG_OK);
    h_raw_send_buf(&r, &b);
    vg_buf_free(&b);
    vg_frame f;
    do
        cr_assert(h_raw_read(&r, &f, WAIT), "no PONG from the broker");
    while (f.type != VG_FRAME_PONG);
    h_raw_close(&r);
}

static void expect_exit_0(h_proc *s)
{
    cr_assert(h_wait_exit(s, WAIT), "sub still running; out: %s\nerr: %s", s->out, s->err);
    cr_assert_eq(h_exit_code(s), 0, "%s", s->err);
}

Test(sub_output, raw_keeps_a_json_payload_byte_for_byte)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s = sub_as(port, "--raw", "2", "feed.json");
    static const char doc[] = "{\"path\":\"C:\\\\tmp\\\\x\",\"say\":\"\\\"hi\\\"\",\"u\":\"\\u00e9\","
                              "\"tab\":\"\t\"}";
    cr_assert_eq(h_pub(port, "feed.json", doc, NULL), 0);
    cr_assert_eq(h_pub(port, "feed.json", "plain \\ text", NULL), 0);
    expect_exit_0(s);
    cr_assert_str_eq(s->out, "{\"path\":\"C:\\\\tmp\\\\x\",\"say\":\"\\\"hi\\\"\",\"u\":\"\\u00e9\","
                             "\"tab\":\"\t\"}\nplain \\ text\n");
    cr_assert_eq(h_count(s->err, "event=skipped"), 0, "%s", s->err);
    h_free(s), h_free(b);
}

/* out with the broker's epoch (random, from its listening line) written as
 * E, so that an exact line can be expected. Static storage. */
static const char *with_epoch_e(const char *out, const h_proc *broker)
{
    static char buf[4096];
    const char *e = strstr(broker->err, " epoch=");
    cr_assert(e != NULL, "%s", broker->err);
    char epoch[24];
    size_t n = strspn(e + 7, "0123456789");
    cr_assert(n > 0 && n < sizeof epoch);
    memcpy(epoch, e + 7, n);
    epoch[n] = '\0';
    size_t o = 0;
    for (const char *p = out; *p != '\0' && o + 2 < sizeof buf;) {
        if (strncmp(p, epoch, n) == 0) {
            buf[o++] = 'E';
            p += n;
        } else {
            buf[o++] = *p++;
        }
    }
    buf[o] = '\0';
    return buf;
}

Test(sub_output, json_prints_one_exact_object_per_line)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s = sub_as(port, "--json", "3", "news");
    cr_assert_eq(h_pub(port, "news", "hello", NULL), 0);
    cr_assert_eq(h_pub(port, "--type", "2", "news", "say \"hi\"\t\\ caf\xc3\xa9 \xe2\x80\xa8", NULL), 0);
    cr_assert_eq(h_pub(port, "news", "", NULL), 0);
    expect_exit_0(s);
    cr_assert_str_eq(with_epoch_e(s->out, b),
                     "{\"topic\":\"news\",\"type\":\"MSG_TYPE1\",\"payload\":\"hello\",\"seq\":1,\"epoch\":E}\n"
                     "{\"topic\":\"news\",\"type\":\"MSG_TYPE2\",\"payload\":"
                     "\"say \\\"hi\\\"\\t\\\\ caf\xc3\xa9 \\u2028\",\"seq\":2,\"epoch\":E}\n"
                     "{\"topic\":\"news\",\"type\":\"MSG_TYPE1\",\"payload\":\"\",\"seq\":3,\"epoch\":E}\n");
    h_free(s), h_free(b);
}

Test(sub_output, json_prints_a_binary_payload_as_base64_with_the_flag)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s = sub_as(port, "--json", "2", "bin");
    const char *payloads[] = {"\xde\xad\xbe\xef", "\0nul is text"};
    const size_t lens[] = {4, 12};
    publish_raw(port, "bin", payloads, lens, 2);
    expect_exit_0(s);
    cr_assert_str_eq(with_epoch_e(s->out, b),
                     "{\"topic\":\"bin\",\"type\":\"MSG_TYPE1\",\"payload\":\"3q2+7w==\",\"base64\":true,"
                     "\"seq\":1,\"epoch\":E}\n"
                     "{\"topic\":\"bin\",\"type\":\"MSG_TYPE1\",\"payload\":\"\\u0000nul is text\","
                     "\"seq\":2,\"epoch\":E}\n");
    h_free(s), h_free(b);
}

Test(sub_output, raw_skips_a_payload_with_a_newline_and_says_so)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    /* Skipped messages do not count towards --count: it exits after "end". */
    h_proc *s = sub_as(port, "--raw", "2", "lines");
    const char *payloads[] = {"first\nline", "kept", "x\ny", "\n", "end"};
    const size_t lens[] = {10, 4, 3, 1, 3};
    publish_raw(port, "lines", payloads, lens, 5);
    expect_exit_0(s);
    cr_assert_str_eq(s->out, "kept\nend\n");
    cr_assert_eq(h_count(s->err, "event=skipped"), 2, "%s", s->err);
    cr_assert_eq(h_count(s->err, "level=warn event=skipped reason=newline_in_payload topic=lines bytes=10\n"),
                 1, "%s", s->err);
    cr_assert_eq(h_count(s->err, "level=warn event=skipped reason=newline_in_payload total=3\n"), 1,
                 "%s", s->err);
    h_free(s), h_free(b);
}

Test(sub_output, raw_and_json_together_are_a_usage_error)
{
    const char *argv[] = {h_bin("sub"), "--raw", "--json", "news", NULL};
    h_proc *s = h_spawn("sub", argv);
    cr_assert(h_wait_exit(s, WAIT));
    cr_assert_eq(h_exit_code(s), 2);
    cr_assert(strstr(s->err, "--raw and --json cannot be used together"), "%s", s->err);
    cr_assert_str_eq(s->out, "");
    h_free(s);
}

/* ---- a fake broker, for topics a real one would refuse to route ---- */

/* Listens on 127.0.0.1:0; returns the socket, *port the port. */
static int fake_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 4) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Accepts sub's connection, answers its CONNECT and its SUB, sends one
 * message with the given topic and then one on "t" with payload, and
 * returns the connection. */
static h_raw fake_serve(int listener, const char *topic, size_t topic_len, const char *payload)
{
    struct pollfd p = {.fd = listener, .events = POLLIN};
    cr_assert(poll(&p, 1, WAIT) == 1, "sub did not connect");
    h_raw r = {.fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC), .dec = vg_decoder_create(65536, 1u << 20)};
    cr_assert(r.fd >= 0 && r.dec != NULL);
    vg_frame f;
    cr_assert(h_raw_read(&r, &f, WAIT) && f.type == VG_FRAME_CONNECT, "no CONNECT");
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_info2(&b, 2, "fake", 1, 1u << 20, 5, 0), VG_OK);
    h_raw_send_buf(&r, &b);
    do
        cr_assert(h_raw_read(&r, &f, WAIT), "no SUB");
    while (f.type != VG_FRAME_SUB);
    cr_assert_eq(vg_frame_put_ok2(&b, f.sid, 5, 1), VG_OK);
    cr_assert_eq(vg_frame_put_msg_seq(&b, VG_FRAME_MSG_TYPE1, topic, topic_len, payload,
                                      strlen(payload), 1), VG_OK);
    cr_assert_eq(vg_frame_put_msg_seq(&b, VG_FRAME_MSG_TYPE1, "t", 1, payload, strlen(payload), 1),
                 VG_OK);
    h_raw_send_buf(&r, &b);
    vg_buf_free(&b);
    return r;
}

/* A message on a topic the client never subscribed to is not for the
 * application: the library drops it (the escaping of such topics is
 * tested in tests/unit/test_format.c), and the next, real one is printed. */
Test(sub_output, a_hostile_topic_cannot_forge_a_line_or_reach_the_terminal)
{
    static const char topic[] = "evil\nevil MSG_TYPE1 forged\x1b[2J\x1b]0;owned\x07";
    static const struct {
        const char *flag;
        const char *want;
    } cases[] = {
        {NULL, "t MSG_TYPE1 x\n"},
        {"--json", "{\"topic\":\"t\",\"type\":\"MSG_TYPE1\",\"payload\":\"x\",\"seq\":1,\"epoch\":5}\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int port;
        int listener = fake_listen(&port);
        char server[32];
        snprintf(server, sizeof server, "127.0.0.1:%d", port);
        const char *with_flag[] = {h_bin("sub"), "--server", server, "--count", "1", cases[i].flag, "t", NULL};
        const char *plain[] = {h_bin("sub"), "--server", server, "--count", "1", "t", NULL};
        h_proc *s = h_spawn("sub", cases[i].flag != NULL ? with_flag : plain);
        h_raw r = fake_serve(listener, topic, sizeof topic - 1, "x");
        expect_exit_0(s);
        cr_assert_str_eq(s->out, cases[i].want);
        h_raw_close(&r);
        close(listener);
        h_free(s);
    }
}
