/* The connection core (link.h) over a real loopback TCP pair: vg_link_run
 * on a thread of its own, the peer's end driven from the test thread, the
 * link's thread joined before anything is asserted about it. The verdicts
 * (heartbeat, stuck output, a peer with a full window, unread replies,
 * EOF), a final ERR flushed before the end, bad input, and bulk written in
 * order with control frames at frame boundaries. Timings are multiplied by
 * VIGIL_TEST_TIME_SCALE and the bounds checked with generous slack. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "decoder.h"
#include "frame.h"
#include "link.h"
#include "outbox.h"
#include "proto.h"
#include "sock.h"

#define KIB 1024
#define MIB (1024 * 1024)

static int scaled(int ms)
{
    const char *s = getenv("VIGIL_TEST_TIME_SCALE");
    double v = s != NULL ? atof(s) : 1.0;
    return (int)(ms * (v >= 1.0 ? v : 1.0));
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- the loopback pair ---- */

/* *ours: the link's end (non-blocking); *peer: the test's end. A
 * peer_rcvbuf > 0 gives the peer a small receive window. */
static void tcp_pair(int *ours, int *peer, int peer_rcvbuf)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(l >= 0);
    if (peer_rcvbuf > 0)
        setsockopt(l, SOL_SOCKET, SO_RCVBUF, &peer_rcvbuf, sizeof peer_rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(l, 1), 0);
    socklen_t len = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &len);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    int p = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    cr_assert(p >= 0);
    close(l);
    vg_sock_tune(c);
    int one = 1;
    setsockopt(p, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *ours = c;
    *peer = p;
}

/* ---- the owner: vg_link_run on its thread ---- */

typedef struct {
    vg_link *link;
    vg_outbox *ob;
    pthread_t tid;
    atomic_bool stop;
    atomic_bool finished;  /* vg_link_run has returned */
    bool err_on_msg;       /* the first MSG from the peer gets a fatal ERR and the end */
    bool err_on_bad_input; /* bad input gets a fatal ERR and the end */
    int64_t attached_at;   /* the link's liveness clock starts here */
    /* written by the link's thread, read after the join */
    vg_end end;
    int64_t ended_at;
    int frames, pings, bad_inputs, probes;
    vg_status bad_st;
} owner;

static owner o;

static void on_frame(void *ud, const vg_frame *f)
{
    owner *w = ud;
    w->frames++;
    if (f->type == VG_FRAME_PING) {
        w->pings++;
        vg_link_ctl_ok(w->link, vg_frame_put_pong(vg_link_ctl(w->link)));
    }
    if (w->err_on_msg && vg_frame_is_msg(f->type)) {
        vg_link_ctl_ok(w->link, vg_frame_put_err(vg_link_ctl(w->link), VG_E_PERMISSION,
                                                 "not here", 0));
        vg_link_end(w->link, VG_END_ERR_SENT, VG_E_PERMISSION, NULL);
    }
}

static void on_bad_input(void *ud, vg_status st, const char *why)
{
    owner *w = ud;
    (void)why;
    w->bad_inputs++;
    w->bad_st = st;
    if (w->err_on_bad_input) {
        vg_link_ctl_ok(w->link, vg_frame_put_err(vg_link_ctl(w->link), VG_E_TOO_LARGE, "too big", 0));
        vg_link_end(w->link, VG_END_ERR_SENT, VG_E_TOO_LARGE, NULL);
    }
}

static int64_t on_tick(void *ud, int64_t now)
{
    owner *w = ud;
    (void)now;
    if (atomic_load(&w->stop))
        vg_link_end(w->link, VG_END_STOP, 0, NULL);
    return INT64_MAX;
}

static void on_probe(void *ud, int probe, int64_t silent_ms)
{
    owner *w = ud;
    (void)silent_ms;
    w->probes += probe > 0;
}

static const vg_link_ops ops = {
    .on_frame = on_frame,
    .on_bad_input = on_bad_input,
    .on_tick = on_tick,
    .on_probe = on_probe,
};

static void *owner_main(void *arg)
{
    owner *w = arg;
    w->end = vg_link_run(w->link, &ops, w);
    w->ended_at = vg_now_ms();
    atomic_store(&w->finished, true);
    return NULL;
}

/* A link on fd with keep-alive k (heartbeat on unless off), running. */
static void start_link(int fd, vg_keepalive k, bool heartbeat)
{
    memset(&o, 0, sizeof o);
    o.ob = vg_outbox_create(64 * MIB);
    cr_assert_not_null(o.ob);
    vg_link_config cfg = {
        .read_chunk = 64 * KIB,
        .reads_per_wake = 4,
        .max_frame = vg_max_frame_for(VG_DEFAULT_MAX_PAYLOAD),
        .flush_budget = 1 * MIB,
        .ctl_limit = 256 * KIB,
        .keepalive = k,
        .timerfd = true,
    };
    o.link = vg_link_create(&cfg, o.ob);
    cr_assert_not_null(o.link);
    int64_t now = vg_now_ms();
    o.attached_at = now;
    vg_link_attach(o.link, fd, now);
    vg_link_hold_bulk(o.link, false);
    vg_link_set_heartbeat(o.link, heartbeat, now);
}

static void run_link(void) { cr_assert_eq(pthread_create(&o.tid, NULL, owner_main, &o), 0); }

/* Joins the link's thread within timeout_ms; if it is still running, stops
 * it and fails. */
static void join_link(int timeout_ms, const char *what)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    if (pthread_timedjoin_np(o.tid, NULL, &until) != 0) {
        atomic_store(&o.stop, true);
        vg_outbox_wake(o.ob);
        pthread_join(o.tid, NULL);
        cr_assert_fail("the link did not end within %d ms (waiting for %s); it ended %s when "
                       "stopped", timeout_ms, what, vg_end_name(o.end));
    }
}

static void stop_link(void)
{
    atomic_store(&o.stop, true);
    vg_outbox_wake(o.ob);
    join_link(scaled(2000), "a stop");
}

static void free_link(void)
{
    vg_link_destroy(o.link); /* closes the socket */
    vg_outbox_destroy(o.ob);
}

static const char *kind_name(vg_end_kind k) { return vg_end_name((vg_end){k, 0}); }

static void expect_end(vg_end_kind want)
{
    cr_assert_eq(o.end.kind, want, "the link ended %s (%s), want %s", vg_end_name(o.end),
                 vg_link_end_detail(o.link), kind_name(want));
}

/* ---- the peer ---- */

static void peer_send(int fd, const void *bytes, size_t n)
{
    size_t done = 0;
    int64_t deadline = vg_now_ms() + scaled(5000);
    while (done < n) {
        ssize_t w = send(fd, (const uint8_t *)bytes + done, n - done, MSG_NOSIGNAL);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        cr_assert(w < 0 && (errno == EAGAIN || errno == EINTR), "peer send: %s", strerror(errno));
        cr_assert_lt(vg_now_ms(), deadline, "the peer could not send %zu bytes", n);
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, 50);
    }
}

static void peer_send_frame(int fd, vg_status (*put)(vg_buf *))
{
    vg_buf b = {0};
    cr_assert_eq(put(&b), VG_OK);
    peer_send(fd, b.data, b.len);
    vg_buf_free(&b);
}

static void peer_send_msg(int fd, const char *topic)
{
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, topic, strlen(topic), "x", 1), VG_OK);
    peer_send(fd, b.data, b.len);
    vg_buf_free(&b);
}

/* The peer's reader: frames from the link. */
typedef struct {
    vg_decoder *rx;
    int pings, pongs, msgs, errs;
    uint64_t err_code;
    bool eof;
} reader;

static void reader_init(reader *r)
{
    memset(r, 0, sizeof *r);
    r->rx = vg_decoder_create(64 * KIB, 128 * MIB);
    cr_assert_not_null(r->rx);
}

/* Reads and decodes for up to ms (or until EOF); answers PINGs if asked. */
static void peer_read(int fd, reader *r, int ms, bool answer_pings)
{
    int64_t deadline = vg_now_ms() + ms;
    while (!r->eof) {
        int64_t left = deadline - vg_now_ms();
        if (left <= 0)
            return;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        uint8_t *space;
        size_t avail;
        cr_assert_eq(vg_decoder_space(r->rx, &space, &avail), VG_OK);
        ssize_t n = recv(fd, space, avail, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0) {
            r->eof = true;
            return;
        }
        vg_decoder_commit(r->rx, (size_t)n);
        vg_frame f;
        const char *why;
        vg_status st;
        while ((st = vg_decoder_next(r->rx, &f, &why)) == VG_OK) {
            r->pings += f.type == VG_FRAME_PING;
            r->pongs += f.type == VG_FRAME_PONG;
            r->msgs += vg_frame_is_msg(f.type);
            if (f.type == VG_FRAME_ERR) {
                r->errs++;
                r->err_code = f.code;
            }
            if (f.type == VG_FRAME_PING && answer_pings)
                peer_send_frame(fd, vg_frame_put_pong);
        }
        cr_assert_eq(st, VG_AGAIN, "the link sent undecodable bytes: %s", why);
    }
}

/* Queues bytes of bulk MSG frames (64 KiB payloads) in the outbox;
 * returns how many frames. */
static int queue_bulk(size_t bytes)
{
    static uint8_t payload[64 * KIB];
    vg_buf b = {0};
    while (b.len < bytes)
        cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "bulk", 4, payload, sizeof payload),
                     VG_OK);
    uint32_t frames = (uint32_t)(b.len / vg_frame_msg_size(4, sizeof payload));
    cr_assert_eq(vg_outbox_put(o.ob, b.data, b.len, frames, 0), VG_OK);
    vg_buf_free(&b);
    return (int)frames;
}

/* ---- verdicts ---- */

/* A peer that reads everything but never answers nor sends: dead at the
 * bound, a heartbeat verdict (its window is open: not a slow consumer). */
Test(link, silent_peer_that_reads_is_a_heartbeat_death_at_the_bound)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 0);
    vg_keepalive k = {scaled(300), scaled(150), 2};
    int64_t bound = vg_keepalive_bound_ms(&k);
    start_link(fd, k, true);
    run_link();
    reader r;
    reader_init(&r);
    peer_read(peer, &r, (int)bound + scaled(3000), false);
    join_link(scaled(1000), "the heartbeat verdict");
    expect_end(VG_END_HEARTBEAT);
    int64_t took = o.ended_at - o.attached_at;
    cr_assert_geq(took, bound, "dead after %lld ms, the bound is %lld", (long long)took,
                  (long long)bound);
    cr_assert_leq(took, bound + scaled(1000), "dead after %lld ms, the bound is %lld",
                  (long long)took, (long long)bound);
    cr_assert_geq(r.pings, 2, "the probes");
    cr_assert_eq(o.probes, 2);
    vg_decoder_destroy(r.rx);
    free_link();
    close(peer);
}

Test(link, answered_pings_keep_a_quiet_peer_alive)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 0);
    vg_keepalive k = {scaled(200), scaled(100), 2};
    start_link(fd, k, true);
    run_link();
    reader r;
    reader_init(&r);
    peer_read(peer, &r, scaled(1500), true);
    cr_assert(!r.eof, "the link ended: %s", vg_end_name(o.end));
    stop_link();
    expect_end(VG_END_STOP);
    cr_assert_geq(r.pings, 3);
    vg_decoder_destroy(r.rx);
    free_link();
    close(peer);
}

Test(link, no_verdict_before_the_heartbeat_is_on)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 0);
    vg_keepalive k = {scaled(100), scaled(50), 1};
    start_link(fd, k, false);
    run_link();
    reader r;
    reader_init(&r);
    peer_read(peer, &r, (int)vg_keepalive_bound_ms(&k) + scaled(500), false);
    cr_assert(!r.eof, "a verdict with the heartbeat off: %s", vg_end_name(o.end));
    cr_assert_eq(r.pings, 0);
    stop_link();
    expect_end(VG_END_STOP);
    vg_decoder_destroy(r.rx);
    free_link();
    close(peer);
}

/* A peer that keeps sending but never reads while bulk waits: the output
 * is stuck (its TCP acknowledges nothing) although the peer is not silent. */
Test(link, peer_that_sends_but_never_reads_is_stuck_within_the_bound)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 4096);
    vg_keepalive k = {scaled(300), scaled(150), 2};
    int64_t bound = vg_keepalive_bound_ms(&k);
    start_link(fd, k, true);
    queue_bulk(8 * MIB);
    int64_t t0 = vg_now_ms();
    run_link();
    int64_t until = t0 + bound + scaled(3000);
    while (vg_now_ms() < until && !atomic_load(&o.finished)) {
        peer_send_msg(peer, "noise"); /* a sign of life */
        sleep_ms(50);
    }
    join_link(scaled(1000), "the stuck-output verdict");
    expect_end(VG_END_STUCK);
    cr_assert(strstr(vg_link_end_detail(o.link), "output not taken") != NULL, "detail: %s",
              vg_link_end_detail(o.link));
    int64_t took = o.ended_at - t0;
    cr_assert_geq(took, bound, "stuck after %lld ms, the bound is %lld", (long long)took,
                  (long long)bound);
    cr_assert_leq(took, bound + scaled(1500), "stuck after %lld ms, the bound is %lld",
                  (long long)took, (long long)bound);
    cr_assert_gt(o.frames, 0, "the peer's messages were read");
    free_link();
    close(peer);
}

/* A silent peer whose kernel reports a zero window while our output waits
 * is there but not reading: a slow consumer, not a heartbeat death. */
Test(link, silent_peer_with_a_full_window_is_a_slow_consumer)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 4096);
    vg_keepalive k = {scaled(300), scaled(150), 2};
    int64_t bound = vg_keepalive_bound_ms(&k);
    start_link(fd, k, true);
    queue_bulk(8 * MIB);
    int64_t t0 = vg_now_ms();
    run_link();
    join_link((int)bound + scaled(3000), "the slow-consumer verdict");
    expect_end(VG_END_STUCK);
    cr_assert(strstr(vg_link_end_detail(o.link), "not reading its socket") != NULL,
              "detail: %s", vg_link_end_detail(o.link));
    int64_t took = o.ended_at - t0;
    cr_assert_leq(took, bound + scaled(1500), "ended after %lld ms, the bound is %lld",
                  (long long)took, (long long)bound);
    free_link();
    close(peer);
}

/* A peer that floods PINGs and never reads the PONGs: once more than
 * ctl_limit of replies is owed, the link ends (UNREAD). */
Test(link, unread_replies_past_the_limit_end_the_link)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 4096);
    start_link(fd, VG_KEEPALIVE_DEFAULT, true);
    run_link();
    static uint8_t pings[6 * 10000];
    for (size_t i = 0; i < sizeof pings; i += 6)
        memcpy(pings + i, "\x00\x00\x00\x02\x91\x01", 6);
    int64_t until = vg_now_ms() + scaled(10000);
    while (vg_now_ms() < until && !atomic_load(&o.finished)) {
        ssize_t w = send(peer, pings, sizeof pings, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN)
            break;
        if (w < 0)
            sleep_ms(5);
    }
    join_link(scaled(2000), "the unread-replies verdict");
    expect_end(VG_END_UNREAD);
    cr_assert_str_eq(vg_end_name(o.end), "slow_consumer");
    cr_assert_gt(o.pings, (256 * KIB) / 6, "only %d PINGs read", o.pings);
    free_link();
    close(peer);
}

Test(link, peer_closing_is_eof)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 0);
    start_link(fd, VG_KEEPALIVE_DEFAULT, true);
    run_link();
    peer_send_msg(peer, "last");
    close(peer);
    join_link(scaled(2000), "EOF");
    expect_end(VG_END_EOF);
    cr_assert_eq(o.frames, 1, "the frame before the FIN was handled");
    free_link();
}

/* ---- the end of a connection ---- */

/* A fatal ERR queued by the owner with the end is written before
 * vg_link_run returns, ahead of the bulk still queued. */
Test(link, final_err_is_flushed_before_the_end)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 0);
    start_link(fd, VG_KEEPALIVE_DEFAULT, true);
    o.err_on_msg = true;
    run_link();
    peer_send_msg(peer, "$SYS.x");
    join_link(scaled(2000), "the end after the ERR");
    expect_end(VG_END_ERR_SENT);
    cr_assert_eq(o.end.code, VG_E_PERMISSION);
    reader r;
    reader_init(&r);
    peer_read(peer, &r, scaled(500), false); /* the socket is still open: no EOF yet */
    cr_assert_eq(r.errs, 1, "the ERR was not written before the link returned");
    cr_assert_eq(r.err_code, VG_E_PERMISSION);
    vg_link_detach(o.link);
    peer_read(peer, &r, scaled(2000), false);
    cr_assert(r.eof);
    vg_decoder_destroy(r.rx);
    free_link();
    close(peer);
}

static void check_bad_input(const void *bytes, size_t n, vg_status want)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 0);
    start_link(fd, VG_KEEPALIVE_DEFAULT, true);
    run_link();
    peer_send(peer, bytes, n);
    join_link(scaled(2000), "the end on bad input");
    expect_end(VG_END_PROTOCOL);
    cr_assert_eq(o.bad_inputs, 1);
    cr_assert_eq(o.bad_st, want, "on_bad_input got status %d, want %d", o.bad_st, want);
    cr_assert_neq(vg_link_end_detail(o.link)[0], '\0', "no detail for the log");
    free_link();
    close(peer);
}

Test(link, bad_input_too_large_is_reported_before_any_allocation)
{
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xf0}; /* ~4 GiB declared, nothing follows */
    check_bad_input(hdr, sizeof hdr, VG_ERR_TOO_LARGE);
}

Test(link, bad_input_malformed_is_reported)
{
    uint8_t f[5] = {0, 0, 0, 1, 0xc1}; /* 0xc1: never valid msgpack */
    check_bad_input(f, sizeof f, VG_ERR_MALFORMED);
}

Test(link, bad_input_unknown_type_is_reported)
{
    uint8_t f[6] = {0, 0, 0, 2, 0x91, 0x63}; /* [99] */
    check_bad_input(f, sizeof f, VG_ERR_UNKNOWN_TYPE);
}

Test(link, bad_input_the_owner_ends_with_an_err)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 0);
    start_link(fd, VG_KEEPALIVE_DEFAULT, true);
    o.err_on_bad_input = true;
    run_link();
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xf0};
    peer_send(peer, hdr, sizeof hdr);
    join_link(scaled(2000), "the end on bad input");
    expect_end(VG_END_ERR_SENT);
    reader r;
    reader_init(&r);
    peer_read(peer, &r, scaled(500), false);
    cr_assert_eq(r.errs, 1);
    cr_assert_eq(r.err_code, VG_E_TOO_LARGE);
    vg_decoder_destroy(r.rx);
    free_link();
    close(peer);
}

/* ---- output ---- */

/* Bulk frames arrive whole and in order, PONGs slotted in between them. */
Test(link, bulk_is_written_in_order_with_replies_at_frame_boundaries)
{
    int fd, peer;
    tcp_pair(&fd, &peer, 0);
    start_link(fd, VG_KEEPALIVE_DEFAULT, true);
    run_link();
    int want = queue_bulk(4 * MIB);
    for (int i = 0; i < 20; i++)
        peer_send_frame(peer, vg_frame_put_ping);
    reader r;
    reader_init(&r);
    int64_t until = vg_now_ms() + scaled(5000);
    while ((r.msgs < want || r.pongs < 20) && vg_now_ms() < until)
        peer_read(peer, &r, 50, false); /* asserts every frame decodes */
    cr_assert_eq(r.msgs, want, "got %d MSGs of %d", r.msgs, want);
    cr_assert_eq(r.pongs, 20);
    stop_link();
    expect_end(VG_END_STOP);
    vg_decoder_destroy(r.rx);
    free_link();
    close(peer);
}
