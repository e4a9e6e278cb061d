/* Outbox and sender over a real socketpair: bounded queueing, the empty-outbox
 * rule, partial batches, close, park/wake signalling, control frames slotted
 * in at bulk frame boundaries, and rewinding a partly written frame. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "decoder.h"
#include "frame.h"
#include "outbox.h"
#include "sender.h"
#include "status.h"

#define MIB (1024 * 1024)

/* ---- helpers ---- */

/* vg_outbox_take for tests that never lend the socket: nothing was sent. */
static uint64_t take(vg_outbox *ob, vg_buf *into)
{
    size_t skip;
    uint64_t n = vg_outbox_take(ob, into, vg_now_ns(), &skip);
    cr_assert_eq(skip, 0);
    return n;
}

static void make_pair(int fds[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0,
                 "socketpair: %s", strerror(errno));
}

/* A pair whose writing end (fds[0]) accepts only a few KiB at a time. */
static void make_small_pair(int fds[2])
{
    make_pair(fds);
    int sz = 4096;
    cr_assert_eq(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz), 0);
    cr_assert_eq(setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz), 0);
}

static void close_pair(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Reads at most max bytes that are available now; returns how many. */
static size_t read_some(int fd, vg_buf *sink, size_t max)
{
    size_t total = 0;
    uint8_t tmp[16384];
    while (total < max) {
        size_t want = max - total < sizeof tmp ? max - total : sizeof tmp;
        ssize_t r = read(fd, tmp, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "read: %s", strerror(errno));
            break;
        }
        if (r == 0)
            break;
        cr_assert_eq(vg_buf_append(sink, tmp, (size_t)r), VG_OK);
        total += (size_t)r;
    }
    return total;
}

static size_t read_all(int fd, vg_buf *sink) { return read_some(fd, sink, SIZE_MAX); }

/* Reads until sink holds n bytes, waiting at most 5 s in all. */
static void read_exactly(int fd, vg_buf *sink, size_t n)
{
    int64_t deadline = now_ms() + 5000;
    while (sink->len < n) {
        read_some(fd, sink, n - sink->len);
        if (sink->len >= n)
            break;
        int64_t left = deadline - now_ms();
        cr_assert_gt(left, 0, "only %zu of %zu bytes arrived", sink->len, n);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, (int)left);
    }
    cr_assert_eq(sink->len, n, "more bytes than expected");
}

/* Alternates flushing and draining until the sender and outbox are empty
 * and every byte has been read into sink. */
static void pump(vg_sender *s, int wfd, vg_outbox *ob, int rfd, vg_buf *sink)
{
    for (int i = 0; i < 1000000; i++) {
        vg_status st = vg_sender_flush(s, wfd, ob, SIZE_MAX, vg_now_ns());
        cr_assert(st == VG_OK || st == VG_AGAIN, "flush: %s", vg_strerror(st));
        read_all(rfd, sink);
        if (st == VG_OK && !vg_sender_busy(s) && (ob == NULL || vg_outbox_bytes(ob) == 0)) {
            read_all(rfd, sink);
            return;
        }
    }
    cr_assert_fail("pump did not finish");
}

/* A run of bulk MSG frames with distinct, odd sizes and contents. */
typedef struct {
    vg_buf bytes;
    size_t n;
    size_t off[64];
    size_t len[64];
} frames;

static void make_frames(frames *f, size_t n, size_t base_payload)
{
    cr_assert_leq(n, 64);
    memset(f, 0, sizeof *f);
    f->n = n;
    uint8_t *p = malloc(base_payload + 64 * 37);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
        size_t plen = base_payload + i * 37;
        for (size_t k = 0; k < plen; k++)
            p[k] = (uint8_t)(i * 31 + k * 7 + (k >> 10));
        f->off[i] = f->bytes.len;
        cr_assert_eq(vg_frame_put_msg(&f->bytes, i % 2 ? VG_FRAME_MSG_TYPE2 : VG_FRAME_MSG_TYPE1,
                                      "bulk.data", 9, p, plen),
                     VG_OK);
        f->len[i] = f->bytes.len - f->off[i];
    }
    free(p);
}

/* Number of frames of f wholly inside the first `off` bytes. */
static uint64_t whole_frames_before(const frames *f, size_t off)
{
    uint64_t k = 0;
    while (k < f->n && f->off[k] + f->len[k] <= off)
        k++;
    return k;
}

/* One expected frame in a received stream: bulk frame `bulk`, or a PONG (-1). */
static void expect_stream(const vg_buf *sink, const frames *f, const int *want, size_t nwant)
{
    vg_decoder *d = vg_decoder_create(64 * 1024, MIB);
    cr_assert_not_null(d);
    cr_assert_eq(vg_decoder_feed(d, sink->data, sink->len), VG_OK);
    for (size_t i = 0; i < nwant; i++) {
        vg_frame fr;
        const char *why = NULL;
        vg_status st = vg_decoder_next(d, &fr, &why);
        cr_assert_eq(st, VG_OK, "frame %zu of the stream: %s (%s)", i, vg_strerror(st),
                     why ? why : "incomplete");
        if (want[i] < 0) {
            cr_assert_eq(fr.type, VG_FRAME_PONG, "stream frame %zu: type %d, want PONG", i,
                         (int)fr.type);
        } else {
            size_t b = (size_t)want[i];
            cr_assert(vg_frame_is_msg(fr.type), "stream frame %zu: type %d, want bulk %zu", i,
                      (int)fr.type, b);
            cr_assert_eq(fr.raw_len, f->len[b], "stream frame %zu: not bulk frame %zu", i, b);
            cr_assert(memcmp(fr.raw, f->bytes.data + f->off[b], f->len[b]) == 0,
                      "stream frame %zu: bulk frame %zu damaged", i, b);
        }
    }
    cr_assert_eq(vg_decoder_pending(d), 0, "bytes left over after the expected frames");
    vg_decoder_destroy(d);
}

/* Flushes f (already in ob) into a small socket until the sender is blocked
 * in the middle of a bulk frame. */
static void block_mid_frame(vg_sender *s, int fds[2], vg_outbox *ob, vg_buf *sink)
{
    vg_status st = vg_sender_flush(s, fds[0], ob, SIZE_MAX, vg_now_ns());
    cr_assert_eq(st, VG_AGAIN, "the socket should fill: %s", vg_strerror(st));
    for (int i = 0; i < 100000 && s->off == s->frame_start; i++) {
        read_some(fds[1], sink, 3000);
        st = vg_sender_flush(s, fds[0], ob, SIZE_MAX, vg_now_ns());
        cr_assert_eq(st, VG_AGAIN, "everything went out before blocking mid-frame");
    }
    cr_assert_neq(s->off, s->frame_start, "never blocked mid-frame");
    cr_assert(s->blocked);
}

static void fill_zero(uint8_t *dst, void *arg)
{
    memset(dst, 0, *(size_t *)arg);
}

/* ---- outbox: bounds ---- */

Test(outbox, put_then_flush_writes_exact_bytes)
{
    int fds[2];
    make_pair(fds);
    vg_outbox *ob = vg_outbox_create(MIB);
    cr_assert_not_null(ob);

    vg_buf a = {0}, b = {0};
    cr_assert_eq(vg_frame_put_msg(&a, VG_FRAME_MSG_TYPE1, "a.b", 3, "one", 3), VG_OK);
    cr_assert_eq(vg_frame_put_msg(&a, VG_FRAME_MSG_TYPE2, "a.b", 3, "two", 3), VG_OK);
    cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, "c", 1, "three", 5), VG_OK);
    cr_assert_eq(vg_outbox_put(ob, a.data, a.len, 2, 0), VG_OK);
    cr_assert_eq(vg_outbox_put(ob, b.data, b.len, 1, 0), VG_OK);
    cr_assert_eq(vg_outbox_bytes(ob), a.len + b.len);

    vg_sender s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(vg_sender_flush(&s, fds[0], ob, SIZE_MAX, vg_now_ns()), VG_OK);
    cr_assert_eq(s.frames_written, 3);
    cr_assert(!vg_sender_busy(&s));
    cr_assert_eq(vg_outbox_bytes(ob), 0, "nothing queued or in flight");

    vg_buf sink = {0};
    read_exactly(fds[1], &sink, a.len + b.len);
    cr_assert(memcmp(sink.data, a.data, a.len) == 0);
    cr_assert(memcmp(sink.data + a.len, b.data, b.len) == 0);
    cr_assert_eq(read_all(fds[1], &sink), 0, "nothing extra");

    vg_buf_free(&a);
    vg_buf_free(&b);
    vg_buf_free(&sink);
    vg_sender_free(&s);
    vg_outbox_destroy(ob);
    close_pair(fds);
}

Test(outbox, put_with_encodes_in_place)
{
    vg_outbox *ob = vg_outbox_create(1024);
    cr_assert_not_null(ob);
    size_t n = 100;
    cr_assert_eq(vg_outbox_put_with(ob, n, 1, 0, fill_zero, &n), VG_OK);
    cr_assert_eq(vg_outbox_bytes(ob), 100);
    vg_buf got = {0};
    cr_assert_eq(take(ob, &got), 1);
    cr_assert_eq(got.len, 100);
    for (size_t i = 0; i < got.len; i++)
        cr_assert_eq(got.data[i], 0);
    vg_buf_free(&got);
    vg_outbox_destroy(ob);
}

Test(outbox, empty_outbox_accepts_one_oversized_put)
{
    vg_outbox *ob = vg_outbox_create(100);
    cr_assert_not_null(ob);
    uint8_t *big = calloc(1, 1000);
    cr_assert_not_null(big);
    cr_assert_eq(vg_outbox_put(ob, big, 1000, 1, 0), VG_OK, "empty: any size goes");
    cr_assert_eq(vg_outbox_bytes(ob), 1000);
    cr_assert_eq(vg_outbox_put(ob, big, 1, 1, 0), VG_ERR_FULL, "but only one");
    cr_assert_eq(vg_outbox_put(ob, big, 1000, 1, 0), VG_ERR_FULL);

    /* While it is in flight it still counts. */
    vg_buf got = {0};
    cr_assert_eq(take(ob, &got), 1);
    cr_assert_eq(vg_outbox_bytes(ob), 1000);
    cr_assert_eq(vg_outbox_put(ob, big, 1, 1, 0), VG_ERR_FULL);
    vg_outbox_set_inflight(ob, 0, vg_now_ns());
    cr_assert_eq(vg_outbox_put(ob, big, 1000, 1, 0), VG_OK, "empty again");
    vg_buf_free(&got);
    free(big);
    vg_outbox_destroy(ob);
}

Test(outbox, full_when_over_max)
{
    vg_outbox *ob = vg_outbox_create(100);
    cr_assert_not_null(ob);
    uint8_t bytes[100] = {0};
    cr_assert_eq(vg_outbox_put(ob, bytes, 60, 1, 0), VG_OK);
    cr_assert_eq(vg_outbox_put(ob, bytes, 41, 1, 0), VG_ERR_FULL);
    cr_assert_eq(vg_outbox_bytes(ob), 60, "a refused put adds nothing");
    cr_assert_eq(vg_outbox_put(ob, bytes, 40, 1, 0), VG_OK, "exactly max fits");
    cr_assert_eq(vg_outbox_bytes(ob), 100);
    cr_assert_eq(vg_outbox_put(ob, bytes, 1, 1, 0), VG_ERR_FULL);
    size_t n = 1;
    cr_assert_eq(vg_outbox_put_with(ob, n, 1, 0, fill_zero, &n), VG_ERR_FULL);

    /* Partly written bytes still count; reporting them written makes room. */
    vg_buf got = {0};
    cr_assert_eq(take(ob, &got), 2);
    cr_assert_eq(got.len, 100);
    cr_assert_eq(vg_outbox_put(ob, bytes, 50, 1, 0), VG_ERR_FULL);
    vg_outbox_set_inflight(ob, 50, vg_now_ns());
    cr_assert_eq(vg_outbox_put(ob, bytes, 50, 1, 0), VG_OK);
    cr_assert_eq(vg_outbox_bytes(ob), 100);
    vg_buf_free(&got);
    vg_outbox_destroy(ob);
}

Test(outbox, put_with_timeout_gives_up)
{
    vg_outbox *ob = vg_outbox_create(100);
    cr_assert_not_null(ob);
    uint8_t bytes[100] = {0};
    cr_assert_eq(vg_outbox_put(ob, bytes, 80, 1, 0), VG_OK);
    int64_t t0 = now_ms();
    vg_status st = vg_outbox_put(ob, bytes, 50, 1, 100);
    int64_t waited = now_ms() - t0;
    cr_assert_eq(st, VG_ERR_FULL, "got %s", vg_strerror(st));
    cr_assert_geq(waited, 50, "returned after %lld ms: did it wait at all?", (long long)waited);
    cr_assert_lt(waited, 10000, "waited %lld ms", (long long)waited);
    cr_assert_eq(vg_outbox_bytes(ob), 80);
    vg_outbox_destroy(ob);
}

typedef struct {
    vg_outbox *ob;
    size_t n;
    int timeout_ms;
    vg_status st;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    uint8_t *bytes = calloc(1, p->n);
    p->st = bytes ? vg_outbox_put(p->ob, bytes, p->n, 1, p->timeout_ms) : VG_ERR_NOMEM;
    free(bytes);
    return NULL;
}

Test(outbox, waiting_put_succeeds_when_owner_drains)
{
    int fds[2];
    make_pair(fds);
    vg_outbox *ob = vg_outbox_create(100);
    cr_assert_not_null(ob);
    vg_buf frame = {0};
    uint8_t payload[70] = {0};
    cr_assert_eq(vg_frame_put_msg(&frame, VG_FRAME_MSG_TYPE1, "t", 1, payload, sizeof payload),
                 VG_OK);
    cr_assert_eq(vg_outbox_put(ob, frame.data, frame.len, 1, 0), VG_OK);

    producer p = {ob, 60, 10000, VG_ERR_IO};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, produce, &p), 0);
    /* The owner writes the queued frame out; that frees the room. */
    vg_sender s;
    memset(&s, 0, sizeof s);
    vg_status st = vg_sender_flush(&s, fds[0], ob, SIZE_MAX, vg_now_ns());
    pthread_join(th, NULL);
    cr_assert_eq(st, VG_OK);
    cr_assert_eq(p.st, VG_OK, "producer got %s", vg_strerror(p.st));
    cr_assert_eq(vg_outbox_bytes(ob), 60);
    vg_buf_free(&frame);
    vg_sender_free(&s);
    vg_outbox_destroy(ob);
    close_pair(fds);
}

Test(outbox, close_refuses_and_releases_waiters)
{
    vg_outbox *ob = vg_outbox_create(100);
    cr_assert_not_null(ob);
    uint8_t bytes[100] = {0};
    cr_assert_eq(vg_outbox_put(ob, bytes, 100, 1, 0), VG_OK);

    producer p = {ob, 50, -1, VG_ERR_IO}; /* waits without limit */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, produce, &p), 0);
    vg_outbox_close(ob);
    pthread_join(th, NULL);
    cr_assert_eq(p.st, VG_ERR_CLOSED, "waiting producer got %s", vg_strerror(p.st));

    cr_assert_eq(vg_outbox_put(ob, bytes, 1, 1, 0), VG_ERR_CLOSED);
    cr_assert_eq(vg_outbox_put(ob, bytes, 1, 1, 100), VG_ERR_CLOSED);
    size_t n = 1;
    cr_assert_eq(vg_outbox_put_with(ob, n, 1, 0, fill_zero, &n), VG_ERR_CLOSED);
    vg_buf f = {0};
    cr_assert_eq(vg_frame_put_ping(&f), VG_OK);
    uint32_t dropped = 99;
    cr_assert_eq(vg_outbox_put_frames(ob, f.data, f.len, 1, 0, 0, &dropped), VG_ERR_CLOSED);
    cr_assert(readable(vg_outbox_fd(ob)), "close wakes the owner");
    vg_buf_free(&f);
    vg_outbox_destroy(ob);
}

/* ---- outbox: put_frames ---- */

/* Appends a MSG frame of exactly `size` bytes (20 <= size < 260). */
static void put_sized(vg_buf *b, size_t size)
{
    uint8_t payload[256];
    memset(payload, (int)size, sizeof payload);
    size_t plen = size - 10; /* 4 prefix + fixarray + type + fixstr "t" + bin8 header */
    cr_assert_eq(vg_frame_msg_size(1, plen), size);
    cr_assert_eq(vg_frame_put_msg(b, VG_FRAME_MSG_TYPE1, "t", 1, payload, plen), VG_OK);
}

Test(outbox, put_frames_keeps_longest_whole_prefix)
{
    vg_outbox *ob = vg_outbox_create(100);
    cr_assert_not_null(ob);
    vg_buf pre = {0}, batch = {0};
    put_sized(&pre, 40);
    for (int i = 0; i < 5; i++)
        put_sized(&batch, 20);
    cr_assert_eq(vg_outbox_put(ob, pre.data, pre.len, 1, 0), VG_OK);

    uint32_t dropped = 99;
    cr_assert_eq(vg_outbox_put_frames(ob, batch.data, batch.len, 5, 0, 0, &dropped), VG_OK);
    cr_assert_eq(dropped, 2, "60 bytes of room hold 3 of 5 frames");
    cr_assert_eq(vg_outbox_dropped(ob), 2);
    cr_assert_eq(vg_outbox_bytes(ob), 100);

    vg_buf got = {0};
    cr_assert_eq(take(ob, &got), 4, "1 + 3 frames queued");
    cr_assert_eq(got.len, 100);
    cr_assert(memcmp(got.data, pre.data, 40) == 0);
    cr_assert(memcmp(got.data + 40, batch.data, 60) == 0);
    vg_buf_free(&got);
    vg_buf_free(&pre);
    vg_buf_free(&batch);
    vg_outbox_destroy(ob);
}

Test(outbox, put_frames_uneven_sizes)
{
    vg_outbox *ob = vg_outbox_create(100);
    cr_assert_not_null(ob);
    vg_buf pre = {0}, batch = {0};
    put_sized(&pre, 30);
    put_sized(&batch, 25);
    put_sized(&batch, 40); /* 30 + 25 + 40 = 95 */
    put_sized(&batch, 20); /* would make 115 */
    put_sized(&batch, 21); /* the prefix stops at the first misfit, even if later ones fit */
    cr_assert_eq(vg_outbox_put(ob, pre.data, pre.len, 1, 0), VG_OK);
    uint32_t dropped = 99;
    cr_assert_eq(vg_outbox_put_frames(ob, batch.data, batch.len, 4, 0, 0, &dropped), VG_OK);
    cr_assert_eq(dropped, 2);
    cr_assert_eq(vg_outbox_bytes(ob), 95);

    /* Nothing fits any more: all dropped, still VG_OK. */
    cr_assert_eq(vg_outbox_put_frames(ob, batch.data, batch.len, 4, 0, 0, &dropped), VG_OK);
    cr_assert_eq(dropped, 4);
    cr_assert_eq(vg_outbox_bytes(ob), 95);
    cr_assert_eq(vg_outbox_dropped(ob), 6);
    vg_buf_free(&pre);
    vg_buf_free(&batch);
    vg_outbox_destroy(ob);
}

Test(outbox, put_frames_all_fit)
{
    vg_outbox *ob = vg_outbox_create(1000);
    cr_assert_not_null(ob);
    vg_buf batch = {0};
    for (int i = 0; i < 5; i++)
        put_sized(&batch, 20 + (size_t)i);
    uint32_t dropped = 99;
    cr_assert_eq(vg_outbox_put_frames(ob, batch.data, batch.len, 5, 0, 0, &dropped), VG_OK);
    cr_assert_eq(dropped, 0);
    cr_assert_eq(vg_outbox_dropped(ob), 0);
    cr_assert_eq(vg_outbox_bytes(ob), batch.len);
    vg_buf got = {0};
    cr_assert_eq(take(ob, &got), 5);
    cr_assert_eq(got.len, batch.len);
    cr_assert(memcmp(got.data, batch.data, batch.len) == 0);
    vg_buf_free(&got);
    vg_buf_free(&batch);
    vg_outbox_destroy(ob);
}

Test(outbox, put_frames_into_empty_outbox_makes_progress)
{
    /* One frame larger than the whole bound still goes into an empty outbox. */
    vg_outbox *ob = vg_outbox_create(30);
    cr_assert_not_null(ob);
    vg_buf one = {0};
    put_sized(&one, 50);
    uint32_t dropped = 99;
    cr_assert_eq(vg_outbox_put_frames(ob, one.data, one.len, 1, 0, 0, &dropped), VG_OK);
    cr_assert_eq(dropped, 0);
    cr_assert_eq(vg_outbox_bytes(ob), 50);
    cr_assert_eq(vg_outbox_put_frames(ob, one.data, one.len, 1, 0, 0, &dropped), VG_OK);
    cr_assert_eq(dropped, 1, "no longer empty");
    vg_buf_free(&one);
    vg_outbox_destroy(ob);

    /* Several frames into an empty outbox: at least the first is kept, and
     * what is kept is a whole-frame prefix. */
    ob = vg_outbox_create(30);
    cr_assert_not_null(ob);
    vg_buf batch = {0};
    for (int i = 0; i < 4; i++)
        put_sized(&batch, 20);
    cr_assert_eq(vg_outbox_put_frames(ob, batch.data, batch.len, 4, 0, 0, &dropped), VG_OK);
    cr_assert_lt(dropped, 4, "an empty outbox must make progress");
    cr_assert_eq(vg_outbox_bytes(ob), (4 - dropped) * 20);
    vg_buf_free(&batch);
    vg_outbox_destroy(ob);
}

/* ---- outbox: park and wake ---- */

/* ---- outbox: bounded stall for a draining owner ---- */

Test(outbox, stall_does_not_wait_for_an_owner_that_never_drained)
{
    vg_outbox *ob = vg_outbox_create(100);
    cr_assert_not_null(ob);
    vg_buf pre = {0}, batch = {0};
    put_sized(&pre, 100);
    for (int i = 0; i < 3; i++)
        put_sized(&batch, 20);
    cr_assert_eq(vg_outbox_put(ob, pre.data, pre.len, 1, 0), VG_OK);

    uint32_t dropped = 0;
    int64_t t0 = now_ms();
    cr_assert_eq(vg_outbox_put_frames(ob, batch.data, batch.len, 3, 10000, vg_now_ns(), &dropped),
                 VG_OK);
    cr_assert_eq(dropped, 3);
    cr_assert_lt(now_ms() - t0, 5000, "a stopped reader must not hold the producer");
    vg_buf_free(&pre);
    vg_buf_free(&batch);
    vg_outbox_destroy(ob);
}

typedef struct {
    vg_outbox *ob;
    int fds[2];
    vg_buf sink; /* what the peer received */
    atomic_bool stop;
} drainer;

/* An owner that keeps writing what is queued, a little at a time, and a
 * peer that keeps reading it: many tiny writes would otherwise fill the
 * socketpair (each costs a whole skb) while the producer waits. */
static void *drain_loop(void *arg)
{
    drainer *d = arg;
    vg_sender s;
    memset(&s, 0, sizeof s);
    while (!atomic_load(&d->stop)) {
        vg_sender_flush(&s, d->fds[0], d->ob, 64, vg_now_ns());
        uint8_t tmp[4096];
        ssize_t r;
        while ((r = read(d->fds[1], tmp, sizeof tmp)) > 0)
            if (vg_buf_append(&d->sink, tmp, (size_t)r) != VG_OK)
                abort(); /* no cr_assert off the test's thread */
        struct pollfd p = {.fd = d->fds[1], .events = POLLIN};
        poll(&p, 1, 1);
    }
    vg_sender_free(&s);
    return NULL;
}

Test(outbox, stall_waits_for_a_draining_owner_instead_of_dropping)
{
    drainer d = {.stop = false};
    make_pair(d.fds);
    vg_outbox *ob = vg_outbox_create(100);
    cr_assert_not_null(ob);
    d.ob = ob;
    vg_buf batch = {0};
    for (int i = 0; i < 50; i++)
        put_sized(&batch, 20);
    vg_buf first = {0};
    put_sized(&first, 20);
    cr_assert_eq(vg_outbox_put(ob, first.data, first.len, 1, 0), VG_OK);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, drain_loop, &d), 0);
    int64_t deadline = now_ms() + 10000;
    while (vg_outbox_bytes(ob) > 0 && now_ms() < deadline) { /* the owner has drained once */
        struct pollfd p = {.fd = -1};
        poll(&p, 0, 1);
    }

    /* 4000 bytes through a 100-byte outbox: every frame must arrive. */
    uint32_t dropped = 99, total_dropped = 0;
    for (int round = 0; round < 4; round++) {
        cr_assert_eq(vg_outbox_put_frames(ob, batch.data, batch.len, 50, 10000, vg_now_ns(), &dropped),
                     VG_OK);
        total_dropped += dropped;
    }
    while (vg_outbox_bytes(ob) > 0 && now_ms() < deadline) {
        struct pollfd p = {.fd = -1};
        poll(&p, 0, 1);
    }
    atomic_store(&d.stop, true);
    pthread_join(th, NULL);
    read_all(d.fds[1], &d.sink);
    cr_assert_eq(total_dropped, 0);
    cr_assert_eq(d.sink.len, first.len + 4 * batch.len);
    for (int round = 0; round < 4; round++)
        cr_assert(memcmp(d.sink.data + first.len + round * batch.len, batch.data, batch.len) == 0);
    vg_buf_free(&first);
    vg_buf_free(&batch);
    vg_buf_free(&d.sink);
    vg_outbox_destroy(ob);
    close_pair(d.fds);
}

Test(outbox, park_then_put_signals_once)
{
    vg_outbox *ob = vg_outbox_create(MIB);
    cr_assert_not_null(ob);
    int fd = vg_outbox_fd(ob);
    uint8_t bytes[8] = {0};
    cr_assert(!readable(fd), "fresh outbox signals nothing");

    cr_assert_eq(vg_outbox_park(ob), 1, "nothing queued");
    cr_assert(!readable(fd), "parking alone signals nothing");
    cr_assert_eq(vg_outbox_put(ob, bytes, 8, 1, 0), VG_OK);
    cr_assert(readable(fd), "a put after park wakes the owner");
    vg_outbox_drain_wakeup(ob);
    cr_assert(!readable(fd), "drained");
    cr_assert_eq(vg_outbox_put(ob, bytes, 8, 1, 0), VG_OK);
    cr_assert(!readable(fd), "one wake-up per park");

    cr_assert_eq(vg_outbox_park(ob), 0, "work is queued: no parking");
    cr_assert_eq(vg_outbox_put(ob, bytes, 8, 1, 0), VG_OK);
    cr_assert(!readable(fd));
    vg_outbox_destroy(ob);
}

Test(outbox, no_signal_without_park)
{
    vg_outbox *ob = vg_outbox_create(MIB);
    cr_assert_not_null(ob);
    int fd = vg_outbox_fd(ob);
    uint8_t bytes[8] = {0};
    for (int i = 0; i < 10; i++)
        cr_assert_eq(vg_outbox_put(ob, bytes, 8, 1, 0), VG_OK);
    cr_assert(!readable(fd));

    /* take clears a park: a put after it does not signal. */
    vg_buf got = {0};
    cr_assert_eq(take(ob, &got), 10);
    cr_assert_eq(vg_outbox_park(ob), 1);
    vg_buf_free(&got);
    cr_assert_eq(take(ob, &got), 0);
    cr_assert_eq(vg_outbox_put(ob, bytes, 8, 1, 0), VG_OK);
    cr_assert(!readable(fd), "take disarmed the park");
    vg_buf_free(&got);
    vg_outbox_destroy(ob);
}

Test(outbox, park_then_other_puts_signal)
{
    vg_outbox *ob = vg_outbox_create(MIB);
    cr_assert_not_null(ob);
    int fd = vg_outbox_fd(ob);

    cr_assert_eq(vg_outbox_park(ob), 1);
    size_t n = 16;
    cr_assert_eq(vg_outbox_put_with(ob, n, 1, 0, fill_zero, &n), VG_OK);
    cr_assert(readable(fd), "put_with wakes a parked owner");
    vg_outbox_drain_wakeup(ob);

    vg_buf got = {0};
    cr_assert_eq(take(ob, &got), 1);
    vg_outbox_set_inflight(ob, 0, vg_now_ns());
    cr_assert_eq(vg_outbox_park(ob), 1);
    vg_buf f = {0};
    cr_assert_eq(vg_frame_put_ping(&f), VG_OK);
    uint32_t dropped;
    cr_assert_eq(vg_outbox_put_frames(ob, f.data, f.len, 1, 0, 0, &dropped), VG_OK);
    cr_assert(readable(fd), "put_frames wakes a parked owner");
    vg_outbox_drain_wakeup(ob);
    cr_assert(!readable(fd));

    vg_outbox_wake(ob);
    cr_assert(readable(fd), "wake signals unconditionally");
    vg_buf_free(&f);
    vg_buf_free(&got);
    vg_outbox_destroy(ob);
}

/* ---- sender ---- */

Test(sender, frames_written_counts_whole_frames)
{
    int fds[2];
    make_pair(fds);
    vg_outbox *ob = vg_outbox_create(16 * MIB);
    cr_assert_not_null(ob);
    frames f;
    make_frames(&f, 5, 100);
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, 5, 0), VG_OK);
    vg_sender s;
    memset(&s, 0, sizeof s);
    vg_buf sink = {0};
    pump(&s, fds[0], ob, fds[1], &sink);
    cr_assert_eq(s.frames_written, 5);
    cr_assert_eq(sink.len, f.bytes.len);
    cr_assert(memcmp(sink.data, f.bytes.data, f.bytes.len) == 0);

    /* Control frames are not counted as bulk frames. */
    cr_assert_eq(vg_frame_put_pong(&s.ctl), VG_OK);
    cr_assert_eq(vg_sender_flush(&s, fds[0], ob, SIZE_MAX, vg_now_ns()), VG_OK);
    cr_assert_eq(s.frames_written, 5);
    vg_buf_free(&sink);
    vg_buf_free(&f.bytes);
    vg_sender_free(&s);
    vg_outbox_destroy(ob);
    close_pair(fds);
}

Test(sender, works_without_outbox)
{
    int fds[2];
    make_pair(fds);
    vg_sender s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(vg_frame_put_ping(&s.ctl), VG_OK);
    cr_assert_eq(vg_frame_put_ok(&s.ctl, 3), VG_OK);
    size_t n = s.ctl.len;
    vg_buf want = {0};
    cr_assert_eq(vg_buf_append(&want, s.ctl.data, n), VG_OK);
    cr_assert(vg_sender_busy(&s));
    cr_assert_eq(vg_sender_flush_ctl(&s, fds[0]), VG_OK);
    cr_assert(!vg_sender_busy(&s));
    vg_buf sink = {0};
    read_exactly(fds[1], &sink, n);
    cr_assert(memcmp(sink.data, want.data, n) == 0);
    cr_assert_eq(vg_sender_flush(&s, fds[0], NULL, SIZE_MAX, vg_now_ns()), VG_OK, "nothing to do");
    vg_buf_free(&want);
    vg_buf_free(&sink);
    vg_sender_free(&s);
    close_pair(fds);
}

Test(sender, control_goes_first_at_a_boundary)
{
    int fds[2];
    make_pair(fds);
    vg_outbox *ob = vg_outbox_create(16 * MIB);
    cr_assert_not_null(ob);
    frames f;
    make_frames(&f, 3, 500);
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, 3, 0), VG_OK);
    vg_sender s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(vg_frame_put_pong(&s.ctl), VG_OK);
    vg_buf sink = {0};
    pump(&s, fds[0], ob, fds[1], &sink);
    static const int want[] = {-1, 0, 1, 2};
    expect_stream(&sink, &f, want, 4);
    vg_buf_free(&sink);
    vg_buf_free(&f.bytes);
    vg_sender_free(&s);
    vg_outbox_destroy(ob);
    close_pair(fds);
}

#define NBULK 24
#define BULK_PAYLOAD (48 * 1024 + 13)

Test(sender, control_frame_waits_for_frame_boundary)
{
    int fds[2];
    make_small_pair(fds);
    vg_outbox *ob = vg_outbox_create(64 * MIB);
    cr_assert_not_null(ob);
    frames f;
    make_frames(&f, NBULK, BULK_PAYLOAD);
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, NBULK, 0), VG_OK);

    vg_sender s;
    memset(&s, 0, sizeof s);
    vg_buf sink = {0};
    block_mid_frame(&s, fds, ob, &sink);

    /* The sender's bulk stream is exactly f.bytes (one take). */
    uint64_t k = s.frames_written;
    cr_assert_eq(k, whole_frames_before(&f, s.off), "frames_written %llu with %zu bytes out",
                 (unsigned long long)k, s.off);
    cr_assert_lt(k, NBULK - 1, "blocked too late to test anything");
    cr_assert_eq(s.frame_start, f.off[k]);
    cr_assert_gt(s.off, f.off[k], "frame %llu is partly written", (unsigned long long)k);
    cr_assert_eq(vg_outbox_bytes(ob), f.bytes.len - s.off, "unwritten bytes stay counted");

    /* A PONG now must wait for the end of frame k and precede frame k+1. */
    cr_assert_eq(vg_frame_put_pong(&s.ctl), VG_OK);
    pump(&s, fds[0], ob, fds[1], &sink);
    cr_assert_eq(s.frames_written, NBULK);
    cr_assert(!vg_sender_busy(&s));
    cr_assert_eq(sink.len, f.bytes.len + VG_FRAME_HEADER + 2);

    int want[NBULK + 1];
    size_t nw = 0;
    for (size_t i = 0; i <= k; i++)
        want[nw++] = (int)i;
    want[nw++] = -1;
    for (size_t i = k + 1; i < NBULK; i++)
        want[nw++] = (int)i;
    expect_stream(&sink, &f, want, nw);

    vg_buf_free(&sink);
    vg_buf_free(&f.bytes);
    vg_sender_free(&s);
    vg_outbox_destroy(ob);
    close_pair(fds);
}

Test(sender, several_control_frames_while_blocked)
{
    int fds[2];
    make_small_pair(fds);
    vg_outbox *ob = vg_outbox_create(64 * MIB);
    cr_assert_not_null(ob);
    frames f;
    make_frames(&f, 8, BULK_PAYLOAD);
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, 8, 0), VG_OK);
    vg_sender s;
    memset(&s, 0, sizeof s);
    vg_buf sink = {0};
    block_mid_frame(&s, fds, ob, &sink);
    uint64_t k = s.frames_written;

    /* Two PONGs appended while mid-frame; a flush that cannot finish the
     * frame must not let either of them out. */
    cr_assert_eq(vg_frame_put_pong(&s.ctl), VG_OK);
    cr_assert_eq(vg_sender_flush(&s, fds[0], ob, SIZE_MAX, vg_now_ns()), VG_AGAIN);
    cr_assert_eq(vg_frame_put_pong(&s.ctl), VG_OK);
    pump(&s, fds[0], ob, fds[1], &sink);

    int want[8 + 2];
    size_t nw = 0;
    for (size_t i = 0; i <= k; i++)
        want[nw++] = (int)i;
    want[nw++] = -1;
    want[nw++] = -1;
    for (size_t i = k + 1; i < 8; i++)
        want[nw++] = (int)i;
    expect_stream(&sink, &f, want, nw);
    vg_buf_free(&sink);
    vg_buf_free(&f.bytes);
    vg_sender_free(&s);
    vg_outbox_destroy(ob);
    close_pair(fds);
}

Test(sender, rewind_resends_partial_frame_whole)
{
    int a[2];
    make_small_pair(a);
    vg_outbox *ob = vg_outbox_create(64 * MIB);
    cr_assert_not_null(ob);
    frames f;
    make_frames(&f, NBULK, BULK_PAYLOAD);
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, NBULK, 0), VG_OK);
    vg_sender s;
    memset(&s, 0, sizeof s);
    vg_buf old_sink = {0};
    block_mid_frame(&s, a, ob, &old_sink);
    uint64_t k = s.frames_written;
    cr_assert_lt(k, NBULK - 1);
    cr_assert_gt(s.off, f.off[k]);
    cr_assert_eq(vg_frame_put_pong(&s.ctl), VG_OK); /* queued behind the partial frame */

    /* The connection is lost. */
    close_pair(a);
    vg_sender_rewind(&s);
    cr_assert_eq(s.off, f.off[k], "rewound to the start of the partial frame");
    cr_assert_eq(s.off, s.frame_start);
    cr_assert_eq(s.ctl.len, 0, "control frames dropped");
    cr_assert(!s.blocked);
    cr_assert_eq(s.bytes_written, 0, "the new connection counts from 0");
    cr_assert(vg_sender_busy(&s));

    /* A fresh connection receives whole frames only, starting with frame k. */
    int b[2];
    make_pair(b);
    vg_buf sink = {0};
    pump(&s, b[0], ob, b[1], &sink);
    cr_assert_eq(s.frames_written, NBULK);
    cr_assert_eq(sink.len, f.bytes.len - f.off[k]);
    int want[NBULK];
    size_t nw = 0;
    for (size_t i = k; i < NBULK; i++)
        want[nw++] = (int)i;
    expect_stream(&sink, &f, want, nw);

    vg_buf_free(&old_sink);
    vg_buf_free(&sink);
    vg_buf_free(&f.bytes);
    vg_sender_free(&s);
    vg_outbox_destroy(ob);
    close_pair(b);
}

Test(sender, rewind_at_boundary_loses_nothing)
{
    int fds[2];
    make_pair(fds);
    vg_sender s;
    memset(&s, 0, sizeof s);
    vg_outbox *ob = vg_outbox_create(MIB);
    cr_assert_not_null(ob);
    frames f;
    make_frames(&f, 2, 100);
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, 2, 0), VG_OK);
    vg_buf sink = {0};
    pump(&s, fds[0], ob, fds[1], &sink);
    vg_sender_rewind(&s); /* nothing partial: a no-op for bulk */
    cr_assert(!vg_sender_busy(&s));
    cr_assert_eq(vg_sender_flush(&s, fds[0], ob, SIZE_MAX, vg_now_ns()), VG_OK);
    cr_assert_eq(read_all(fds[1], &sink), 0, "nothing resent");
    cr_assert_eq(s.frames_written, 2);
    vg_buf_free(&sink);
    vg_buf_free(&f.bytes);
    vg_sender_free(&s);
    vg_outbox_destroy(ob);
    close_pair(fds);
}

Test(sender, peer_closed_is_io_error)
{
    int fds[2];
    make_pair(fds);
    close(fds[1]);
    vg_sender s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(vg_frame_put_ping(&s.ctl), VG_OK);
    cr_assert_eq(vg_sender_flush(&s, fds[0], NULL, SIZE_MAX, vg_now_ns()), VG_ERR_IO, "no SIGPIPE either");
    vg_sender_free(&s);
    close(fds[0]);
}

/* ---- lending: producers sending on a sleeping owner's socket ---- */

Test(lend, the_policy_lets_an_isolated_send_through_and_queues_a_burst)
{
    cr_assert(vg_outbox_lend_allowed(0, 5), "the first send");
    cr_assert(vg_outbox_lend_allowed(1000000, 1010000), "10 us after the previous one");
    cr_assert_not(vg_outbox_lend_allowed(1000000, 1009999), "a burst: left for the owner");
}

Test(lend, nothing_is_sent_unless_the_owner_lent_its_socket)
{
    int fds[2];
    make_pair(fds);
    vg_outbox *ob = vg_outbox_create(MIB);
    cr_assert_eq(vg_outbox_park(ob), true, "parked, but not lending");
    frames f;
    make_frames(&f, 1, 10);
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, 1, 0), VG_OK);
    cr_assert_not(readable(fds[1]), "a producer wrote a socket it was not lent");
    cr_assert(readable(vg_outbox_fd(ob)), "the owner is woken instead");
    cr_assert_eq(vg_outbox_bytes(ob), f.bytes.len);
    vg_outbox_destroy(ob);
    vg_buf_free(&f.bytes);
    close_pair(fds);
}

Test(lend, an_isolated_frame_goes_straight_out_and_is_reported_on_reclaim)
{
    int fds[2];
    make_pair(fds);
    vg_outbox *ob = vg_outbox_create(MIB);
    cr_assert_eq(vg_outbox_park_lending(ob, fds[0]), true);
    frames f;
    make_frames(&f, 1, 10);
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, 1, 0), VG_OK);
    vg_buf sink = {0};
    read_all(fds[1], &sink);
    int want[] = {0};
    expect_stream(&sink, &f, want, 1);
    cr_assert_not(readable(vg_outbox_fd(ob)), "no wake-up is needed for a frame already sent");
    vg_lent l = vg_outbox_reclaim(ob);
    cr_assert_eq(l.frames, 1);
    cr_assert_eq(l.bytes, f.bytes.len);
    cr_assert_eq(vg_outbox_reclaim(ob).bytes, 0, "reported once");
    /* Taken back: the next put is queued, not sent. */
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, 1, 0), VG_OK);
    cr_assert_not(readable(fds[1]), "a producer wrote after the owner took the socket back");
    vg_buf_free(&sink), vg_buf_free(&f.bytes);
    vg_outbox_destroy(ob);
    close_pair(fds);
}

/* Whether the rest of a burst is sent by producers depends on timing
 * (10 us); either way the stream arrives whole, in order, and counted. */
Test(lend, a_burst_arrives_whole_in_order_and_counted)
{
    int fds[2];
    make_pair(fds);
    vg_outbox *ob = vg_outbox_create(MIB);
    cr_assert_eq(vg_outbox_park_lending(ob, fds[0]), true);
    frames f;
    make_frames(&f, 3, 10);
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(vg_outbox_put(ob, f.bytes.data + f.off[i], f.len[i], 1, 0), VG_OK);
    vg_lent l = vg_outbox_reclaim(ob);
    vg_sender s = {0};
    vg_buf sink = {0};
    pump(&s, fds[0], ob, fds[1], &sink);
    int want[] = {0, 1, 2};
    expect_stream(&sink, &f, want, 3);
    cr_assert_eq(s.frames_written + l.frames, 3, "every frame counted once");
    vg_sender_free(&s), vg_buf_free(&sink), vg_buf_free(&f.bytes);
    vg_outbox_destroy(ob);
    close_pair(fds);
}

Test(lend, a_partial_send_keeps_frames_whole_and_control_frames_on_a_boundary)
{
    int fds[2];
    make_small_pair(fds);
    vg_outbox *ob = vg_outbox_create(4 * MIB);
    cr_assert_eq(vg_outbox_park_lending(ob, fds[0]), true);
    frames f;
    make_frames(&f, 2, 300000); /* far more than the socket takes at once */
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, 2, 0), VG_OK);
    cr_assert(readable(fds[1]), "part of the first frame should have gone out on the lent socket");
    cr_assert(readable(vg_outbox_fd(ob)), "the owner must be woken for the rest");

    vg_lent l = vg_outbox_reclaim(ob);
    cr_assert_eq(l.frames, 0);
    cr_assert_gt(l.bytes, 0);
    vg_sender s = {0};
    cr_assert_eq(vg_frame_put_pong(&s.ctl), VG_OK); /* owed once the owner is awake */
    vg_buf sink = {0};
    pump(&s, fds[0], ob, fds[1], &sink);
    int want[] = {0, -1, 1}; /* the PONG waits for the half-sent frame to end */
    expect_stream(&sink, &f, want, 3);
    cr_assert_eq(s.frames_written, 2);
    vg_sender_free(&s), vg_buf_free(&sink), vg_buf_free(&f.bytes);
    vg_outbox_destroy(ob);
    close_pair(fds);
}

Test(lend, close_ends_the_loan)
{
    int fds[2];
    make_pair(fds);
    vg_outbox *ob = vg_outbox_create(MIB);
    cr_assert_eq(vg_outbox_park_lending(ob, fds[0]), true);
    vg_outbox_close(ob);
    frames f;
    make_frames(&f, 1, 10);
    cr_assert_eq(vg_outbox_put(ob, f.bytes.data, f.bytes.len, 1, 0), VG_ERR_CLOSED);
    cr_assert_not(readable(fds[1]));
    cr_assert_eq(vg_outbox_park_lending(ob, fds[0]), true);
    cr_assert_eq(vg_outbox_reclaim(ob).bytes, 0, "a closed outbox lends nothing");
    vg_outbox_destroy(ob);
    vg_buf_free(&f.bytes);
    close_pair(fds);
}

/* A subscriber leaving during a delivery is not a slow consumer's drop. */
Test(outbox, put_frames_to_a_closed_outbox_drops_nothing)
{
    vg_outbox *ob = vg_outbox_create(MIB);
    vg_outbox_close(ob);
    frames f;
    make_frames(&f, 3, 10);
    uint32_t dropped = 99;
    cr_assert_eq(vg_outbox_put_frames(ob, f.bytes.data, f.bytes.len, 3, 50, vg_now_ns(), &dropped),
                 VG_ERR_CLOSED);
    cr_assert_eq(dropped, 0);
    cr_assert_eq(vg_outbox_dropped(ob), 0);
    vg_outbox_destroy(ob);
    vg_buf_free(&f.bytes);
}

/* The stall decision takes time as an argument: no sleeping needed. */
Test(outbox, the_stall_waits_only_for_an_owner_that_drained_recently)
{
    int64_t ms = 1000000;
    cr_assert_not(vg_outbox_owner_draining(0, 5 * ms, 50), "never drained: a stopped reader");
    cr_assert(vg_outbox_owner_draining(100 * ms, 149 * ms, 50));
    cr_assert_not(vg_outbox_owner_draining(100 * ms, 150 * ms, 50), "50 ms ago: stopped");
    cr_assert_not(vg_outbox_owner_draining(100 * ms, 101 * ms, 0), "stall 0 never waits");
}
