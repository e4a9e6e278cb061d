/* vigil subscriber connections for subs.c, in raw frames: a version-2
 * connection holding many subscriptions, literal or patterns, plain or in a
 * queue group (docs/protocol.md; /work/spec/issue12.md for the queue forms).
 *
 * Raw frames, so that the benchmark does not depend on how far the client
 * library has got with issue 12: the 8-element SUB [7, sid, subject, start,
 * epoch, position, durable, queue] (common/frame.h encodes it), the
 * 5-element MSG [type, topic, payload, seq, sid] a queue member gets and the
 * 4-element ACK [10, sid, seq, topic] it answers with; POS (type 12) is
 * skipped. Frames are read with common/mpread.h, which needs no decoder
 * state and takes any shape.
 *
 * One I/O thread per connection owns the socket (non-blocking, poll): the
 * calling thread appends SUB and UNSUB frames to an outbox under the lock
 * and wakes the thread through an eventfd when the outbox was empty; the
 * I/O thread writes until EAGAIN, answers PINGs, counts MSGs and, for a
 * queue member, acknowledges cumulatively after each read. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "frame.h"
#include "mpread.h"
#include "proto.h"
#include "sock.h"
#include "subs.h"

#define READ_CHUNK (256 * 1024)
#define MAX_FRAME (1u << 24)
#define ACK_TOPIC_MAX 256

struct sb_conn {
    int fd, wake;
    pthread_t thread;
    pthread_mutex_t mu; /* guards the fields down to reason */
    pthread_cond_t cv;
    vg_buf out;         /* frames not yet handed to the I/O thread */
    uint64_t next_sid;
    uint64_t sent;      /* SUBs and UNSUBs queued */
    uint64_t answered;  /* OKs and ERRs naming a sid */
    uint64_t refused;
    char reason[160];   /* the first refusal, or the fatal ERR */
    bool connected, lost, stop;
    _Atomic uint64_t received, as_member, gap_missed;
    /* the I/O thread's own */
    vg_buf wbuf;
    size_t woff;
    uint8_t *in;
    size_t in_len;
    bool ack_due;
    uint64_t ack_sid, ack_seq;
    char ack_topic[ACK_TOPIC_MAX];
    uint32_t ack_topic_len;
};

/* ---- the I/O thread ---- */

/* Appends to the outbox and wakes the I/O thread if it was empty. Locked by the caller. */
static void wake_locked(sb_conn *c, size_t before)
{
    if (before == 0 && c->out.len > 0) {
        uint64_t one = 1;
        ssize_t ignored = write(c->wake, &one, sizeof one);
        (void)ignored;
    }
}

static void set_lost(sb_conn *c, const char *why)
{
    pthread_mutex_lock(&c->mu);
    if (!c->lost && c->reason[0] == '\0')
        snprintf(c->reason, sizeof c->reason, "%s", why);
    c->lost = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Acts on one frame body. False when the connection cannot go on. */
static bool on_frame(sb_conn *c, const uint8_t *body, size_t len)
{
    vg_mp_reader r;
    uint32_t count;
    uint64_t type, sid;
    vg_mp_init(&r, body, len);
    if (vg_mp_read_array(&r, &count) != VG_OK || count < 1 || vg_mp_read_uint(&r, &type) != VG_OK)
        return false;
    switch (type) {
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2: {
        atomic_fetch_add_explicit(&c->received, 1, memory_order_relaxed);
        if (count != 5)
            return true;
        const char *topic;
        const uint8_t *payload;
        uint32_t tlen, plen;
        uint64_t seq;
        if (vg_mp_read_str(&r, &topic, &tlen) != VG_OK ||
            vg_mp_read_bytes(&r, &payload, &plen) != VG_OK ||
            vg_mp_read_uint(&r, &seq) != VG_OK || vg_mp_read_uint(&r, &sid) != VG_OK ||
            tlen > ACK_TOPIC_MAX)
            return false;
        /* One topic per member in this benchmark: the ACK names the last. */
        if (c->ack_due && (sid != c->ack_sid || tlen != c->ack_topic_len ||
                           memcmp(topic, c->ack_topic, tlen) != 0)) {
            pthread_mutex_lock(&c->mu);
            size_t before = c->out.len;
            vg_frame_put_ack_topic(&c->out, c->ack_sid, c->ack_seq, c->ack_topic, c->ack_topic_len);
            wake_locked(c, before);
            pthread_mutex_unlock(&c->mu);
        }
        atomic_fetch_add_explicit(&c->as_member, 1, memory_order_relaxed);
        c->ack_due = true;
        c->ack_sid = sid;
        c->ack_seq = seq;
        memcpy(c->ack_topic, topic, tlen);
        c->ack_topic_len = tlen;
        return true;
    }
    case VG_FRAME_PING: {
        pthread_mutex_lock(&c->mu);
        size_t before = c->out.len;
        vg_frame_put_pong(&c->out);
        wake_locked(c, before);
        pthread_mutex_unlock(&c->mu);
        return true;
    }
    case VG_FRAME_INFO:
        pthread_mutex_lock(&c->mu);
        c->connected = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        return true;
    case VG_FRAME_OK:
        if (vg_mp_read_uint(&r, &sid) != VG_OK)
            return false;
        pthread_mutex_lock(&c->mu);
        c->answered++;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        return true;
    case VG_FRAME_ERR: {
        uint64_t code;
        const char *why;
        uint32_t wlen;
        if (count != 4 || vg_mp_read_uint(&r, &code) != VG_OK ||
            vg_mp_read_str(&r, &why, &wlen) != VG_OK || vg_mp_read_uint(&r, &sid) != VG_OK)
            return false;
        bool fatal = vg_errcode_is_fatal(code, sid);
        pthread_mutex_lock(&c->mu);
        if (c->reason[0] == '\0')
            snprintf(c->reason, sizeof c->reason, "%s: %.*s", vg_errcode_name(code), (int)wlen, why);
        if (sid != 0) {
            c->answered++;
            c->refused++;
        }
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        return !fatal;
    }
    case VG_FRAME_GAP: { /* [9, sid, topic, from, to, reason] */
        const char *topic;
        uint32_t tlen;
        uint64_t from, to;
        if (count >= 5 && vg_mp_read_uint(&r, &sid) == VG_OK &&
            vg_mp_read_str(&r, &topic, &tlen) == VG_OK && vg_mp_read_uint(&r, &from) == VG_OK &&
            vg_mp_read_uint(&r, &to) == VG_OK && to >= from && from > 0)
            atomic_fetch_add_explicit(&c->gap_missed, to - from + 1, memory_order_relaxed);
        return true;
    }
    default: /* PONG, POS (12): nothing to do here */
        return true;
    }
}

/* Reads what is there and handles every complete frame. False at EOF or error. */
static bool read_some(sb_conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, READ_CHUNK + MAX_FRAME - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            set_lost(c, n == 0 ? "connection closed by the broker" : strerror(errno));
            return false;
        }
        c->in_len += (size_t)n;
        size_t off = 0;
        while (c->in_len - off >= VG_FRAME_HEADER) {
            uint32_t blen = vg_be32(c->in + off);
            if (blen > MAX_FRAME) {
                set_lost(c, "frame too large");
                return false;
            }
            if (c->in_len - off < VG_FRAME_HEADER + blen)
                break;
            if (!on_frame(c, c->in + off + VG_FRAME_HEADER, blen)) {
                set_lost(c, "malformed or fatal frame from the broker");
                return false;
            }
            off += VG_FRAME_HEADER + blen;
        }
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
        if ((size_t)n < READ_CHUNK / 2)
            break;
    }
    if (c->ack_due) { /* cumulative, once per read */
        pthread_mutex_lock(&c->mu);
        size_t before = c->out.len;
        vg_frame_put_ack_topic(&c->out, c->ack_sid, c->ack_seq, c->ack_topic, c->ack_topic_len);
        wake_locked(c, before);
        pthread_mutex_unlock(&c->mu);
        c->ack_due = false;
    }
    return true;
}

/* Writes until EAGAIN. False on error. */
static bool write_some(sb_conn *c)
{
    for (;;) {
        if (c->woff == c->wbuf.len) {
            c->wbuf.len = c->woff = 0;
            pthread_mutex_lock(&c->mu);
            vg_buf t = c->wbuf; /* swap: the outbox becomes the write buffer */
            c->wbuf = c->out;
            c->out = t;
            pthread_mutex_unlock(&c->mu);
            if (c->wbuf.len == 0)
                return true;
        }
        ssize_t n = send(c->fd, c->wbuf.data + c->woff, c->wbuf.len - c->woff, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n < 0) {
            set_lost(c, strerror(errno));
            return false;
        }
        c->woff += (size_t)n;
    }
}

static void *io_main(void *arg)
{
    sb_conn *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool stop = c->stop, more = c->out.len > 0;
        pthread_mutex_unlock(&c->mu);
        if (stop)
            break;
        struct pollfd p[2] = {{c->fd, POLLIN, 0}, {c->wake, POLLIN, 0}};
        if (more || c->woff < c->wbuf.len)
            p[0].events |= POLLOUT;
        if (poll(p, 2, 100) < 0 && errno != EINTR)
            break;
        if (p[1].revents & POLLIN) {
            uint64_t v;
            ssize_t ignored = read(c->wake, &v, sizeof v);
            (void)ignored;
        }
        if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && !read_some(c))
            break;
        if (!write_some(c))
            break;
    }
    return NULL;
}

/* ---- sb_backend ---- */

static void v_close(sb_conn *c);

static sb_conn *v_connect(const char *server)
{
    vg_addr a;
    const char *why = NULL;
    if (vg_addr_parse(server, &a, &why) != VG_OK) {
        fprintf(stderr, "vigil: bad server %s: %s\n", server, why ? why : "?");
        return NULL;
    }
    sb_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    c->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->in = malloc(READ_CHUNK + MAX_FRAME);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (c->fd < 0 || c->wake < 0 || c->in == NULL ||
        connect(c->fd, (struct sockaddr *)&a.ss, a.len) != 0) {
        fprintf(stderr, "vigil: cannot connect to %s: %s\n", server, strerror(errno));
        v_close(c);
        return NULL;
    }
    vg_sock_tune(c->fd); /* TCP_NODELAY, non-blocking */
    vg_frame_put_connect2(&c->out, VG_PROTO_VERSION, "bench-subs", NULL, 0, 0);
    if (pthread_create(&c->thread, NULL, io_main, c) != 0) {
        v_close(c);
        return NULL;
    }
    uint64_t one = 1;
    ssize_t ignored = write(c->wake, &one, sizeof one);
    (void)ignored;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    pthread_mutex_lock(&c->mu);
    while (!c->connected && !c->lost)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT)
            break;
    bool ok = c->connected;
    pthread_mutex_unlock(&c->mu);
    if (!ok) {
        fprintf(stderr, "vigil: no INFO from %s: %s\n", server, c->reason[0] ? c->reason : "timeout");
        v_close(c);
        return NULL;
    }
    return c;
}

static uint64_t v_sub(sb_conn *c, const char *subject, const char *queue)
{
    pthread_mutex_lock(&c->mu);
    size_t before = c->out.len;
    uint64_t sid = ++c->next_sid;
    vg_status st = queue != NULL
                       ? vg_frame_put_sub_queue(&c->out, sid, subject, strlen(subject), VG_SUB_NEW,
                                                0, 0, NULL, 0, queue, strlen(queue))
                       : vg_frame_put_sub2(&c->out, sid, subject, strlen(subject), VG_SUB_NEW, 0, 0);
    if (st == VG_OK)
        c->sent++;
    wake_locked(c, before);
    bool lost = c->lost;
    pthread_mutex_unlock(&c->mu);
    return st == VG_OK && !lost ? sid : 0;
}

static int v_unsub(sb_conn *c, uint64_t sid)
{
    pthread_mutex_lock(&c->mu);
    size_t before = c->out.len;
    vg_status st = vg_frame_put_unsub(&c->out, sid);
    if (st == VG_OK)
        c->sent++;
    wake_locked(c, before);
    bool lost = c->lost;
    pthread_mutex_unlock(&c->mu);
    return st == VG_OK && !lost ? 0 : -1;
}

static int v_sync(sb_conn *c, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000)
        deadline.tv_sec++, deadline.tv_nsec -= 1000000000;
    pthread_mutex_lock(&c->mu);
    while (c->answered < c->sent && !c->lost)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT)
            break;
    int rc = c->answered >= c->sent && !c->lost ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "vigil: %llu of %llu SUB/UNSUB answered: %s\n",
                (unsigned long long)c->answered, (unsigned long long)c->sent,
                c->lost ? c->reason : "timeout");
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static uint64_t v_received(sb_conn *c) { return atomic_load(&c->received); }
static uint64_t v_gap_missed(sb_conn *c) { return atomic_load(&c->gap_missed); }

static uint64_t v_queue_msgs(sb_conn *c) { return atomic_load(&c->as_member); }

static uint64_t v_refused(sb_conn *c, const char **first)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->refused;
    *first = c->reason[0] ? c->reason : NULL;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static bool v_lost(sb_conn *c)
{
    pthread_mutex_lock(&c->mu);
    bool lost = c->lost;
    pthread_mutex_unlock(&c->mu);
    return lost;
}

static void v_close(sb_conn *c)
{
    if (c->thread) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_mutex_unlock(&c->mu);
        uint64_t one = 1;
        ssize_t ignored = write(c->wake, &one, sizeof one);
        (void)ignored;
        pthread_join(c->thread, NULL);
    }
    if (c->fd >= 0)
        close(c->fd);
    if (c->wake >= 0)
        close(c->wake);
    vg_buf_free(&c->out);
    vg_buf_free(&c->wbuf);
    free(c->in);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

const sb_backend sb_vigil = {"vigil", v_connect, v_sub, v_unsub, v_sync, v_received,
                             v_refused, v_queue_msgs, v_gap_missed, v_lost, v_close};
