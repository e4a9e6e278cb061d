/* The scripted fake broker of fake_broker.h: plain blocking-with-timeout
 * socket code on the test thread, frames decoded with vg_decoder. */
#include "fake_broker.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "proto.h"

#define FB_MAX_FRAME (128u << 20)
#define SEND_TIMEOUT_MS 5000

/* ---- time ---- */

double fb_scale(void)
{
    const char *s = getenv("VIGIL_TEST_TIME_SCALE");
    double v = s != NULL ? atof(s) : 1.0;
    return v >= 1.0 ? v : 1.0;
}

int fb_ms(int ms) { return (int)(ms * fb_scale()); }

int64_t fb_now(void) { return vg_now_ms(); }

void fb_sleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int left_ms(int64_t deadline)
{
    int64_t left = deadline - fb_now();
    return left > 0 ? (int)left : 0;
}

/* ---- the listener ---- */

static int listen_on(int family, int rcvbuf, int *port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0, "fake broker: socket: %s", strerror(errno));
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        int one = 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        len = sizeof *a;
    }
    cr_assert_eq(bind(fd, (struct sockaddr *)&ss, len), 0, "fake broker: bind: %s", strerror(errno));
    cr_assert_eq(listen(fd, 16), 0, "fake broker: listen: %s", strerror(errno));
    len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *port = family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                              : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

void fb_listen(fb_listener *l, bool ipv6, int rcvbuf)
{
    *l = (fb_listener){.fd = -1, .fd6 = -1};
    l->fd = listen_on(AF_INET, rcvbuf, &l->port);
    if (ipv6)
        l->fd6 = listen_on(AF_INET6, rcvbuf, &l->port6);
}

void fb_unlisten(fb_listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    if (l->fd6 >= 0)
        close(l->fd6);
    l->fd = l->fd6 = -1;
}

int fb_dead_port(void)
{
    int port;
    int fd = listen_on(AF_INET, 0, &port);
    close(fd);
    return port;
}

/* ---- connections ---- */

bool fb_try_accept(fb_listener *l, fb_conn *c, int timeout_ms)
{
    int64_t deadline = fb_now() + timeout_ms;
    for (;;) {
        struct pollfd p[2] = {{.fd = l->fd, .events = POLLIN}, {.fd = l->fd6, .events = POLLIN}};
        int n = poll(p, 2, left_ms(deadline));
        if (n < 0 && errno != EINTR)
            return false;
        for (int i = 0; i < 2 && n > 0; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            int fd = accept4(p[i].fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                continue;
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            *c = (fb_conn){.fd = fd, .index = ++l->accepted, .pings = FB_PING_ANSWER,
                           .epoch = FB_EPOCH};
            c->rx = vg_decoder_create(64 * 1024, FB_MAX_FRAME);
            if (c->rx == NULL) {
                close(fd);
                return false;
            }
            return true;
        }
        if (fb_now() >= deadline)
            return false;
    }
}

void fb_accept(fb_listener *l, fb_conn *c, int timeout_ms, const char *what)
{
    cr_assert(fb_try_accept(l, c, timeout_ms),
              "fake broker: no connection (#%d) within %d ms: waiting for %s", l->accepted + 1,
              timeout_ms, what);
}

const char *fb_result_name(fb_result r)
{
    switch (r) {
    case FB_FRAME: return "a frame";
    case FB_TIMEOUT: return "nothing (timeout)";
    case FB_EOF: return "end of connection";
    case FB_BAD: return "undecodable bytes";
    }
    return "?";
}

/* One frame from what is buffered or the socket, PINGs included. */
static fb_result read_any(fb_conn *c, vg_frame *f, int64_t deadline)
{
    for (;;) {
        const char *why;
        vg_status st = vg_decoder_next(c->rx, f, &why);
        if (st == VG_OK)
            return FB_FRAME;
        if (st != VG_AGAIN)
            return FB_BAD;
        if (c->eof || c->fd < 0)
            return FB_EOF;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int n = poll(&p, 1, left_ms(deadline));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return FB_TIMEOUT;
        uint8_t *space;
        size_t avail;
        if (vg_decoder_space(c->rx, &space, &avail) != VG_OK)
            return FB_BAD;
        ssize_t r = recv(c->fd, space, avail, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0) {
            c->eof = true;
            return FB_EOF;
        }
        vg_decoder_commit(c->rx, (size_t)r);
    }
}

static void copy_str(char *dst, size_t cap, const void *src, size_t len);

static fb_topic *topic_of(fb_conn *c, const char *topic, size_t len)
{
    for (int i = 0; i < c->ntopics; i++)
        if (strlen(c->topics[i].topic) == len && memcmp(c->topics[i].topic, topic, len) == 0)
            return &c->topics[i];
    cr_assert_lt(c->ntopics, FB_TOPICS, "fake broker: too many topics");
    fb_topic *t = &c->topics[c->ntopics++];
    copy_str(t->topic, sizeof t->topic, topic, len);
    t->last = 0;
    return t;
}

/* What a broker remembers of the client's frames: CONNECT's fields, and
 * the SUBs to answer. */
static void note(fb_conn *c, const vg_frame *f)
{
    if (f->type == VG_FRAME_CONNECT) {
        c->version = f->version;
        c->publisher = f->publisher;
        c->resend_from = f->resend_from;
    } else if (f->type == VG_FRAME_SUB && c->nsubs < 32) {
        fb_sub *s = &c->subs[c->nsubs++];
        s->sid = f->sid;
        copy_str(s->topic, sizeof s->topic, f->topic, f->topic_len);
        s->start = f->form >= 2 ? f->start : VG_SUB_NEW; /* 3: with a durable name */
        s->position = f->form >= 2 ? f->position : 0;
    }
}

fb_result fb_read(fb_conn *c, vg_frame *f, int timeout_ms)
{
    int64_t deadline = fb_now() + timeout_ms;
    for (;;) {
        fb_result r = read_any(c, f, deadline);
        if (r != FB_FRAME || f->type != VG_FRAME_PING || c->pings == FB_PING_RETURN) {
            if (r == FB_FRAME && f->type == VG_FRAME_PING)
                c->pings_seen++;
            if (r == FB_FRAME)
                note(c, f);
            return r;
        }
        c->pings_seen++;
        if (c->pings == FB_PING_ANSWER)
            fb_send_pong(c);
    }
}

void fb_expect(fb_conn *c, vg_frame_type t, vg_frame *out, int timeout_ms, const char *what)
{
    vg_frame f;
    fb_result r = fb_read(c, &f, timeout_ms);
    cr_assert(r == FB_FRAME && f.type == t,
              "fake broker, connection #%d: waited %d ms for %s (%s), got %s%s%s", c->index,
              timeout_ms, what, vg_frame_type_name(t), fb_result_name(r),
              r == FB_FRAME ? ": " : "", r == FB_FRAME ? vg_frame_type_name(f.type) : "");
    if (out != NULL)
        *out = f;
}

void fb_handshake(fb_conn *c, uint64_t max_payload)
{
    fb_expect(c, VG_FRAME_CONNECT, NULL, fb_ms(5000), "the client's CONNECT");
    fb_send_info(c, max_payload);
}

long fb_send_some(fb_conn *c, const void *bytes, size_t n, int timeout_ms)
{
    int64_t deadline = fb_now() + timeout_ms;
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(c->fd, (const uint8_t *)bytes + done, n - done, MSG_NOSIGNAL);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return -1;
        if (fb_now() >= deadline)
            break;
        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
        poll(&p, 1, left_ms(deadline) < 50 ? left_ms(deadline) : 50);
    }
    return (long)done;
}

void fb_send_raw(fb_conn *c, const void *bytes, size_t n)
{
    long w = fb_send_some(c, bytes, n, fb_ms(SEND_TIMEOUT_MS));
    cr_assert_eq(w, (long)n, "fake broker, connection #%d: could send only %ld of %zu bytes",
                 c->index, w, n);
}

static void send_buf(fb_conn *c, vg_buf *b, vg_status st)
{
    cr_assert_eq(st, VG_OK, "fake broker: cannot encode a frame");
    fb_send_raw(c, b->data, b->len);
    vg_buf_free(b);
}

void fb_send_info(fb_conn *c, uint64_t max_payload)
{
    vg_buf b = {0};
    send_buf(c, &b, vg_frame_put_info2(&b, VG_PROTO_VERSION, "fake-broker", 7, max_payload,
                                       c->epoch, c->publisher_acked));
}

void fb_send_info_v1(fb_conn *c, uint64_t max_payload)
{
    vg_buf b = {0};
    send_buf(c, &b, vg_frame_put_info(&b, VG_PROTO_V1, "fake-broker", 7, max_payload));
}

void fb_send_ok(fb_conn *c, uint64_t sid)
{
    vg_buf b = {0};
    for (int i = 0; i < c->nsubs; i++) {
        if (c->subs[i].sid != sid)
            continue;
        fb_sub s = c->subs[i];
        c->subs[i] = c->subs[--c->nsubs];
        fb_topic *t = topic_of(c, s.topic, strlen(s.topic));
        if (s.start == VG_SUB_SEQ && s.position > t->last + 1)
            t->last = s.position - 1;
        send_buf(c, &b, vg_frame_put_ok2(&b, sid, c->epoch, t->last + 1));
        return;
    }
    send_buf(c, &b, vg_frame_put_ok(&b, sid));
}

void fb_send_gap(fb_conn *c, uint64_t sid, const char *topic, uint64_t from, uint64_t to,
                 vg_gap_reason reason)
{
    vg_buf b = {0};
    send_buf(c, &b, vg_frame_put_gap(&b, sid, topic, strlen(topic), from, to, reason));
}

void fb_send_msg_bytes(fb_conn *c, vg_frame_type type, const char *topic, size_t topic_len,
                       const void *payload, size_t payload_len)
{
    vg_buf b = {0};
    uint64_t seq = ++topic_of(c, topic, topic_len)->last;
    send_buf(c, &b, vg_frame_put_msg_seq(&b, type, topic, topic_len, payload, payload_len, seq));
}

void fb_send_msg_seq(fb_conn *c, const char *topic, const char *payload, uint64_t seq)
{
    fb_topic *t = topic_of(c, topic, strlen(topic));
    if (seq > t->last)
        t->last = seq;
    vg_buf b = {0};
    send_buf(c, &b, vg_frame_put_msg_seq(&b, VG_FRAME_MSG_TYPE1, topic, strlen(topic), payload,
                                         strlen(payload), seq));
}

void fb_send_err(fb_conn *c, uint64_t code, const char *reason, uint64_t sid)
{
    vg_buf b = {0};
    send_buf(c, &b, vg_frame_put_err(&b, code, reason, sid));
}

void fb_send_msg(fb_conn *c, const char *topic, const char *payload)
{
    fb_send_msg_bytes(c, VG_FRAME_MSG_TYPE1, topic, strlen(topic), payload, strlen(payload));
}

void fb_send_pos(fb_conn *c, uint64_t sid, const char *topic, uint64_t epoch, uint64_t next)
{
    vg_buf b = {0};
    send_buf(c, &b, vg_frame_put_pos(&b, sid, topic, strlen(topic), epoch, next));
}

void fb_send_msg_q(fb_conn *c, const char *topic, const char *payload, uint64_t seq,
                   uint64_t sid)
{
    vg_buf b = {0};
    size_t tl = strlen(topic), pl = strlen(payload), n = vg_frame_msg_qsize(tl, pl);
    cr_assert_eq(vg_buf_reserve(&b, n), VG_OK, "fake broker: out of memory");
    vg_frame_write_msg_q(b.data, VG_FRAME_MSG_TYPE1, topic, tl, payload, pl, seq, sid);
    b.len = n;
    send_buf(c, &b, VG_OK);
}

void fb_send_ping(fb_conn *c)
{
    vg_buf b = {0};
    send_buf(c, &b, vg_frame_put_ping(&b));
}

void fb_send_pong(fb_conn *c)
{
    vg_buf b = {0};
    send_buf(c, &b, vg_frame_put_pong(&b));
}

void fb_barrier(fb_conn *c, int timeout_ms, unsigned *msgs)
{
    fb_send_ping(c);
    int64_t deadline = fb_now() + timeout_ms;
    fb_ping_mode saved = c->pings;
    c->pings = FB_PING_ANSWER;
    for (;;) {
        vg_frame f;
        fb_result r = fb_read(c, &f, left_ms(deadline));
        cr_assert_eq(r, FB_FRAME, "fake broker, connection #%d: waited %d ms for the PONG of a "
                     "barrier PING, got %s", c->index, timeout_ms, fb_result_name(r));
        if (f.type == VG_FRAME_PONG)
            break;
        if (f.type == VG_FRAME_SUB || f.type == VG_FRAME_UNSUB)
            fb_send_ok(c, f.sid);
        if (vg_frame_is_msg(f.type) && msgs != NULL)
            (*msgs)++;
    }
    c->pings = saved;
}

bool fb_wait_eof(fb_conn *c, int timeout_ms)
{
    int64_t deadline = fb_now() + timeout_ms;
    for (;;) {
        vg_frame f;
        fb_result r = fb_read(c, &f, left_ms(deadline));
        if (r == FB_EOF)
            return true;
        if (r == FB_TIMEOUT)
            return false;
        if (r == FB_BAD) { /* skip the rest: only the end matters */
            char sink[65536];
            struct pollfd p = {.fd = c->fd, .events = POLLIN};
            while (poll(&p, 1, left_ms(deadline)) == 1) {
                ssize_t n = recv(c->fd, sink, sizeof sink, 0);
                if (n <= 0)
                    return n == 0 || errno == ECONNRESET;
            }
            return false;
        }
    }
}

static void drop(fb_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    vg_decoder_destroy(c->rx);
    c->rx = NULL;
}

void fb_close(fb_conn *c) { drop(c); }

void fb_reset(fb_conn *c)
{
    struct linger lg = {1, 0};
    if (c->fd >= 0)
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    drop(c);
}

/* ---- records ---- */

static void copy_str(char *dst, size_t cap, const void *src, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void fb_record(fb_rec *r, const vg_frame *f)
{
    *r = (fb_rec){.type = f->type, .sid = f->sid};
    if (f->type == VG_FRAME_SUB || vg_frame_is_msg(f->type))
        copy_str(r->topic, sizeof r->topic, f->topic, f->topic_len);
    if (vg_frame_is_msg(f->type))
        copy_str(r->payload, sizeof r->payload, f->payload, f->payload_len);
}

const char *fb_rec_str(const fb_rec *r, char *buf, size_t cap)
{
    switch (r->type) {
    case VG_FRAME_SUB: snprintf(buf, cap, "SUB %llu %s", (unsigned long long)r->sid, r->topic); break;
    case VG_FRAME_UNSUB: snprintf(buf, cap, "UNSUB %llu", (unsigned long long)r->sid); break;
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2: snprintf(buf, cap, "MSG %s %s", r->topic, r->payload); break;
    default: snprintf(buf, cap, "%s", vg_frame_type_name(r->type)); break;
    }
    return buf;
}

/* ---- the client's log ---- */

static int log_fd = -1;   /* the capture file */
static int saved_fd2 = -1; /* the real stderr */
static char log_path[64];

void fb_log_start(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/vigil-test-log-XXXXXX");
    log_fd = mkstemp(log_path);
    cr_assert(log_fd >= 0, "cannot create a log capture file: %s", strerror(errno));
    /* Said on the real stderr, because a crash (a sanitizer's report, an
     * abort) leaves the file there instead of copying it back. */
    char line[128];
    int n = snprintf(line, sizeof line, "(the client's log is captured in %s until the test ends)\n",
                     log_path);
    ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
    (void)ignored;
    saved_fd2 = dup(STDERR_FILENO);
    dup2(log_fd, STDERR_FILENO);
}

char *fb_log_text(void)
{
    off_t size = lseek(log_fd, 0, SEEK_END);
    char *text = malloc((size_t)size + 1);
    cr_assert_not_null(text);
    ssize_t n = size > 0 ? pread(log_fd, text, (size_t)size, 0) : 0;
    text[n > 0 ? n : 0] = '\0';
    return text;
}

void fb_log_stop(void)
{
    if (log_fd < 0)
        return;
    char *text = fb_log_text();
    dup2(saved_fd2, STDERR_FILENO);
    close(saved_fd2);
    ssize_t ignored = write(STDERR_FILENO, text, strlen(text));
    (void)ignored;
    free(text);
    close(log_fd);
    unlink(log_path);
    log_fd = saved_fd2 = -1;
}

static int count_lines(const char *first, va_list ap)
{
    const char *subs[8];
    int k = 0;
    for (const char *s = first; s != NULL && k < 8; s = va_arg(ap, const char *))
        subs[k++] = s;
    char *text = fb_log_text();
    int count = 0;
    for (char *line = text, *end; *line; line = end + (*end != '\0')) {
        end = strchr(line, '\n');
        if (end == NULL)
            end = line + strlen(line);
        char saved = *end;
        *end = '\0';
        bool all = true;
        for (int i = 0; i < k && all; i++)
            all = strstr(line, subs[i]) != NULL;
        count += all;
        *end = saved;
    }
    free(text);
    return count;
}

int fb_log_count(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int n = count_lines(first, ap);
    va_end(ap);
    return n;
}

bool fb_log_wait(int n, int timeout_ms, const char *first, ...)
{
    int64_t deadline = fb_now() + timeout_ms;
    for (;;) {
        va_list ap;
        va_start(ap, first);
        int got = count_lines(first, ap);
        va_end(ap);
        if (got >= n)
            return true;
        if (fb_now() >= deadline)
            return false;
        fb_sleep(10);
    }
}
