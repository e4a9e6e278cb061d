/* libFuzzer target: the broker's handling of everything a client can send,
 * through the real server, its threads and its sockets; no mocks.
 *
 * Once per process a vg_server listens on 127.0.0.1 (an ephemeral port) and
 * runs on its own thread, heartbeats and statistics off so that nothing
 * happens that the input did not cause. Per input:
 *   byte 0     not a multiple of 8: a valid CONNECT is sent first, so most
 *              inputs reach the post-handshake frames, version 2 if bit 4
 *              is set, else version 1; a multiple of 8: the input itself is
 *              the first thing the broker sees
 *   the rest   sent as is, then shutdown(SHUT_WR)
 * and the broker's replies are read until it closes, each checked to be a
 * well-formed frame the broker may send, in the shapes of the version its
 * INFO named (version 1: no seq, no position, no GAP; version 2: every MSG
 * with its seq). The topic logs get a small budget, so that inputs also
 * run into retention and its GAP frames.
 * Then its connection thread must have ended. Every SERVE_CHECK_EVERY
 * inputs a subscriber and a publisher must still get a message through.
 *
 * A broker that does not close, or a thread that does not end, within
 * DEADLINE_MS is a hang: abort(), which libFuzzer reports with the input.
 * VIGIL_FUZZ_LOG=info (or debug) shows the broker's log lines. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "decoder.h"
#include "frame.h"
#include "log.h"
#include "proto.h"
#include "server.h"

#define DEADLINE_MS 3000
#define SERVE_CHECK_EVERY 128
#define ALIVE_TOPIC "fuzz.alive"

static vg_server srv;
static pthread_t server_thread;
static int stop_pipe[2] = {-1, -1};
static struct sockaddr_in broker_addr;
static uint64_t inputs;

/* A finding or a broken harness: libFuzzer reports the abort with the input. */
static void die(const char *what)
{
    fprintf(stderr, "fuzz_broker: %s\n", what);
    abort();
}

static void die_errno(const char *what)
{
    fprintf(stderr, "fuzz_broker: %s: %s\n", what, strerror(errno));
    abort();
}

/* The broker's accept thread; its connection threads inherit its signal
 * mask. libFuzzer's -timeout alarm and SIGINT/SIGTERM go to the fuzzing
 * thread instead, as main() of the real broker keeps signals away from its
 * threads: a broker thread never sees EINTR from a signal it would not get. */
static void *serve(void *arg)
{
    (void)arg;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGALRM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    vg_server_run(&srv, stop_pipe[0], DEADLINE_MS, NULL, NULL);
    return NULL;
}

/* At exit: stop the broker the way SIGTERM does, so that LeakSanitizer's
 * final check sees a broker that has freed what it should. */
static void stop_broker(void)
{
    if (write(stop_pipe[1], "x", 1) != 1)
        die_errno("cannot stop the broker");
    pthread_join(server_thread, NULL);
    vg_server_close(&srv);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
}

/* Threads in this process, from /proc/self/status. */
static int thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        die_errno("cannot open /proc/self/status");
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    if (n < 1)
        die("no Threads: line in /proc/self/status");
    return n;
}

/* Waits, bounded, until the broker's connection threads of this input have
 * ended; a thread that outlives its closed connection is a finding. */
static void wait_threads(int at_most)
{
    int64_t deadline = vg_now_ms() + DEADLINE_MS;
    while (thread_count() > at_most) {
        if (vg_now_ms() > deadline)
            die("a connection thread is still running after its connection closed");
        struct timespec pause = {0, 100 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* Waits until fd is ready for events; returns its revents, or 0 once the
 * deadline has passed. libFuzzer's -timeout alarm interrupts system calls
 * every few seconds, so EINTR only means: wait again. */
static short wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t now = vg_now_ms();
        if (now >= deadline)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, vg_poll_timeout(deadline, now));
        if (n > 0)
            return p.revents;
        if (n < 0 && errno != EINTR)
            die_errno("poll");
    }
}

/* A non-blocking TCP connection to the broker, established. */
static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die_errno("socket");
    if (connect(fd, (struct sockaddr *)&broker_addr, sizeof broker_addr) == 0)
        return fd;
    if (errno != EINPROGRESS && errno != EINTR)
        die_errno("cannot connect to the broker");
    if (wait_fd(fd, POLLOUT, vg_now_ms() + DEADLINE_MS) == 0)
        die("the broker did not accept a connection in time");
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        errno = err;
        die_errno("cannot connect to the broker");
    }
    return fd;
}

/* Closes without TIME_WAIT: millions of short connections would otherwise
 * use up the ephemeral ports. Only called once the broker has closed. */
static void hang_up(int fd)
{
    struct linger abortive = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
    close(fd);
}

static void put_connect(vg_buf *b)
{
    if (vg_frame_put_connect(b, VG_PROTO_V1, "fuzz", NULL) != VG_OK)
        die("out of memory");
}

/* A version-2 CONNECT whose publisher identity comes from the input, so
 * that inputs share publishers and meet the dedupe of earlier ones. */
static void put_connect2(vg_buf *b, uint64_t publisher)
{
    if (vg_frame_put_connect2(b, 2, "fuzz", NULL, publisher, 1) != VG_OK)
        die("out of memory");
}

/* ---- one input ---- */

typedef struct {
    vg_decoder *rx;
    size_t frames;
    size_t controls; /* replies other than MSG */
    uint64_t version; /* INFO's; 0 before it */
} replies;

/* Checks every complete frame the broker sent: well-formed and of a type the
 * broker sends. Control replies keep their order, so the first is INFO or
 * ERR and INFO comes at most once, and no MSG comes before INFO (a message
 * to itself once overtook it). */
static void check_replies(replies *r)
{
    for (;;) {
        vg_frame f;
        const char *why = NULL;
        vg_status st = vg_decoder_next(r->rx, &f, &why);
        if (st == VG_AGAIN)
            return;
        if (st != VG_OK) {
            fprintf(stderr, "fuzz_broker: reply %zu: %s (%s)\n", r->frames, vg_strerror(st), why);
            die("the broker sent a malformed frame");
        }
        r->frames++;
        if (f.type != VG_FRAME_INFO && r->version < 2 && (f.form != 1 || f.type == VG_FRAME_GAP)) {
            fprintf(stderr, "fuzz_broker: reply %zu: %s\n", r->frames, vg_frame_type_name(f.type));
            die("a version-2 frame on a version-1 connection");
        }
        if (vg_frame_is_msg(f.type)) {
            if (r->controls == 0)
                die("a MSG before INFO");
            if (r->version >= 2 && f.form < 2)
                die("a MSG without its seq on a version-2 connection");
            continue;
        }
        bool first = r->controls++ == 0;
        switch (f.type) {
        case VG_FRAME_INFO:
            if (!first)
                die("INFO after another control reply");
            if (f.version < VG_PROTO_V1 || f.version > VG_PROTO_VERSION)
                die("INFO with a version the broker does not speak");
            if ((f.version >= 2) != (f.form == 2))
                die("INFO in another shape than its version's");
            if (f.version >= 2 && f.epoch == 0)
                die("INFO version 2 without an epoch");
            r->version = f.version;
            break;
        case VG_FRAME_ERR:
            if (strcmp(vg_errcode_name(f.code), "unknown") == 0)
                die("ERR with an unknown code");
            break;
        case VG_FRAME_POS: /* version 2 only: checked above */
        case VG_FRAME_OK:
        case VG_FRAME_GAP:
        case VG_FRAME_PING:
        case VG_FRAME_PONG:
            if (first)
                die("the first control reply is neither INFO nor ERR");
            break;
        default:
            die("the broker sent a frame type only clients send");
        }
    }
}

/* Reads what is ready into the reply decoder; false once the broker closed. */
static bool read_replies(int fd, replies *r)
{
    uint8_t *space;
    size_t avail;
    if (vg_decoder_space(r->rx, &space, &avail) != VG_OK)
        die("out of memory");
    ssize_t n = recv(fd, space, avail, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
        return false;
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return true;
        die_errno("recv");
    }
    vg_decoder_commit(r->rx, (size_t)n);
    check_replies(r);
    return true;
}

/* Sends out, then half-closes, reading the broker's replies all along, until
 * the broker closes its side. Bounded by DEADLINE_MS. */
static void exchange(const uint8_t *out, size_t n)
{
    int fd = dial();
    replies r = {.rx = vg_decoder_create(64 * 1024, vg_max_frame_for_v2(srv.cfg.max_payload))};
    if (r.rx == NULL)
        die("out of memory");
    size_t sent = 0;
    bool shut = false, open = true;
    int64_t deadline = vg_now_ms() + DEADLINE_MS;
    while (open) {
        if (!shut && sent == n) {
            shutdown(fd, SHUT_WR);
            shut = true;
        }
        short ready = wait_fd(fd, POLLIN | (shut ? 0 : POLLOUT), deadline);
        if (ready == 0) {
            fprintf(stderr, "fuzz_broker: sent %zu of %zu bytes, %zu replies\n", sent, n, r.frames);
            die("the broker did not close the connection in time");
        }
        if (!shut && (ready & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t k = send(fd, out + sent, n - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (k > 0)
                sent += (size_t)k;
            else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                sent = n; /* the broker closed first: stop sending, keep reading */
        }
        if (ready & (POLLIN | POLLERR | POLLHUP))
            open = read_replies(fd, &r);
    }
    vg_decoder_destroy(r.rx);
    hang_up(fd);
}

/* ---- the broker still serves ---- */

static void send_all(int fd, const vg_buf *b)
{
    int64_t deadline = vg_now_ms() + DEADLINE_MS;
    for (size_t sent = 0; sent < b->len;) {
        ssize_t k = send(fd, b->data + sent, b->len - sent, MSG_NOSIGNAL);
        if (k > 0)
            sent += (size_t)k;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            die_errno("send to the broker failed");
        else if (wait_fd(fd, POLLOUT, deadline) == 0)
            die("the broker does not read a well-behaved client");
    }
}

/* Reads until the next frame arrives, which must be of type want. *f stays
 * valid until the next call with the same decoder. */
static void expect(int fd, vg_decoder *rx, vg_frame_type want, vg_frame *f)
{
    int64_t deadline = vg_now_ms() + DEADLINE_MS;
    for (;;) {
        const char *why = NULL;
        vg_status st = vg_decoder_next(rx, f, &why);
        if (st == VG_OK) {
            if (f->type != want) {
                fprintf(stderr, "fuzz_broker: got %s, want %s\n", vg_frame_type_name(f->type),
                        vg_frame_type_name(want));
                die("the broker no longer serves a well-behaved client");
            }
            return;
        }
        if (st != VG_AGAIN)
            die("the broker sent a malformed frame");
        if (wait_fd(fd, POLLIN, deadline) == 0) {
            fprintf(stderr, "fuzz_broker: no %s in %d ms\n", vg_frame_type_name(want), DEADLINE_MS);
            die("the broker no longer serves a well-behaved client");
        }
        uint8_t *space;
        size_t avail;
        if (vg_decoder_space(rx, &space, &avail) != VG_OK)
            die("out of memory");
        ssize_t n = recv(fd, space, avail, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            die("the broker closed a well-behaved client");
        if (n > 0)
            vg_decoder_commit(rx, (size_t)n);
    }
}

/* After our half-close: discards input until the broker closes, bounded. */
static void expect_close(int fd)
{
    int64_t deadline = vg_now_ms() + DEADLINE_MS;
    for (;;) {
        if (wait_fd(fd, POLLIN, deadline) == 0)
            die("the broker did not close a well-behaved client after its EOF");
        char sink[4096];
        ssize_t n = recv(fd, sink, sizeof sink, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            break;
    }
    hang_up(fd);
}

/* A subscriber and a publisher on two connections: the message must arrive. */
static void check_serving(void)
{
    int threads = thread_count();
    char payload[32];
    int plen = snprintf(payload, sizeof payload, "alive %llu", (unsigned long long)inputs);
    size_t max_frame = vg_max_frame_for(srv.cfg.max_payload);
    vg_decoder *sub_rx = vg_decoder_create(4096, max_frame);
    vg_decoder *pub_rx = vg_decoder_create(4096, max_frame);
    vg_buf b = {0};
    vg_frame f;
    if (sub_rx == NULL || pub_rx == NULL)
        die("out of memory");

    int sub = dial();
    put_connect(&b);
    if (vg_frame_put_sub(&b, 1, ALIVE_TOPIC, strlen(ALIVE_TOPIC)) != VG_OK)
        die("out of memory");
    send_all(sub, &b);
    expect(sub, sub_rx, VG_FRAME_INFO, &f);
    expect(sub, sub_rx, VG_FRAME_OK, &f);

    int pub = dial();
    b.len = 0;
    put_connect(&b);
    if (vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, ALIVE_TOPIC, strlen(ALIVE_TOPIC), payload,
                         (size_t)plen) != VG_OK ||
        vg_frame_put_ping(&b) != VG_OK)
        die("out of memory");
    send_all(pub, &b);
    expect(pub, pub_rx, VG_FRAME_INFO, &f);
    expect(pub, pub_rx, VG_FRAME_PONG, &f); /* the MSG before the PING was routed */

    expect(sub, sub_rx, VG_FRAME_MSG_TYPE1, &f);
    if (f.payload_len != (uint32_t)plen || memcmp(f.payload, payload, (size_t)plen) != 0)
        die("the subscriber got another message");

    shutdown(sub, SHUT_WR);
    shutdown(pub, SHUT_WR);
    expect_close(sub);
    expect_close(pub);
    vg_buf_free(&b);
    vg_decoder_destroy(sub_rx);
    vg_decoder_destroy(pub_rx);
    wait_threads(threads);
}

/* ---- libFuzzer's entry points ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vg_log_level level = VG_LOG_ERROR;
    const char *want = getenv("VIGIL_FUZZ_LOG");
    if (want != NULL && !vg_log_parse_level(want, &level))
        die("VIGIL_FUZZ_LOG must be error, warn, info or debug");
    vg_log_set_level(level);
    signal(SIGPIPE, SIG_IGN);

    vg_broker_config cfg;
    vg_broker_config_defaults(&cfg);
    if (vg_addr_parse("127.0.0.1:0", &cfg.listen, NULL) != VG_OK)
        die("vg_addr_parse");
    cfg.keepalive.time_ms = 0; /* heartbeats off: each input ends its connection itself */
    cfg.stats_interval_ms = 0; /* nothing the input did not cause */
    cfg.retention_bytes = 4u << 20;
    if (vg_server_open(&srv, &cfg) != VG_OK)
        die("vg_server_open");
    socklen_t len = sizeof broker_addr;
    if (getsockname(srv.listen_fd, (struct sockaddr *)&broker_addr, &len) != 0)
        die_errno("getsockname");
    if (pipe(stop_pipe) != 0)
        die_errno("pipe");
    if (pthread_create(&server_thread, NULL, serve, NULL) != 0)
        die("pthread_create");
    atexit(stop_broker);
    check_serving();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int threads = thread_count();
    vg_buf out = {0};
    if (data[0] % 8 != 0 && (data[0] & 0x10))
        put_connect2(&out, data[0] & 0x20 ? data[0] : 0);
    else if (data[0] % 8 != 0)
        put_connect(&out);
    if (vg_buf_append(&out, data + 1, size - 1) != VG_OK)
        die("out of memory");
    exchange(out.data, out.len);
    vg_buf_free(&out);
    wait_threads(threads);
    if (++inputs % SERVE_CHECK_EVERY == 0)
        check_serving();
    return 0;
}
