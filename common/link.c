#include "link.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "clock.h"
#include "decoder.h"
#include "log.h"
#include "progress.h"
#include "proto.h"
#include "sock.h"

/* How often, at most, the kernel is asked what the peer acknowledged while
 * output is outstanding: how late the stuck-output rule may see progress. */
#define ACK_POLL_MAX_MS 250
#define ACK_POLL_MIN_MS 10
#define LINGER_BYTES (1024 * 1024)

struct vg_link {
    vg_link_config cfg;
    int fd;
    vg_outbox *ob;
    vg_sender tx;
    vg_decoder *rx;
    vg_liveness *live;
    vg_progress progress;
    int64_t sent_at; /* we last handed the kernel bytes */
    int64_t ack_poll_ms;
    bool acks_known; /* the kernel reports acknowledgements on this socket */
    bool heartbeat;  /* heartbeat and the stuck-output rule are on */
    bool hold;       /* only control frames are written */
    int tfd;         /* CLOCK_BOOTTIME timerfd, or -1 */
    int64_t timer_at; /* when tfd fires (INT64_MAX: not armed) */
    bool ended;
    vg_end end;
    char detail[160];
    const vg_link_ops *ops;
    void *ud;
};

const char *vg_end_name(vg_end e)
{
    switch (e.kind) {
    case VG_END_NONE: return "none";
    case VG_END_EOF: return "eof";
    case VG_END_IO: return "error";
    case VG_END_HEARTBEAT: return "heartbeat";
    case VG_END_STUCK:
    case VG_END_UNREAD: return "slow_consumer";
    case VG_END_NOMEM: return "internal";
    case VG_END_PROTOCOL: return e.code != 0 ? vg_errcode_name(e.code) : "protocol";
    case VG_END_ERR_SENT:
    case VG_END_ERR_RECEIVED: return vg_errcode_name(e.code);
    case VG_END_TIMEOUT: return "timeout";
    case VG_END_STOP: return "stop";
    }
    return "unknown";
}

vg_link *vg_link_create(const vg_link_config *cfg, vg_outbox *ob)
{
    vg_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->cfg = *cfg;
    l->fd = -1;
    l->tfd = -1;
    l->timer_at = INT64_MAX;
    l->ob = ob;
    int64_t poll = cfg->keepalive.interval_ms / 4;
    l->ack_poll_ms = poll > ACK_POLL_MAX_MS ? ACK_POLL_MAX_MS
                     : poll < ACK_POLL_MIN_MS ? ACK_POLL_MIN_MS : poll;
    l->rx = vg_decoder_create(cfg->read_chunk, cfg->max_frame);
    if (l->rx == NULL)
        goto fail_free;
    l->live = vg_liveness_create(&cfg->keepalive, vg_now_ms());
    if (l->live == NULL)
        goto fail_decoder;
    if (cfg->timerfd) {
        l->tfd = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
        if (l->tfd < 0)
            goto fail_liveness;
    }
    return l;

fail_liveness:
    vg_liveness_destroy(l->live);
fail_decoder:
    vg_decoder_destroy(l->rx);
fail_free:
    free(l);
    return NULL;
}

void vg_link_destroy(vg_link *l)
{
    if (l == NULL)
        return;
    if (l->fd >= 0)
        close(l->fd);
    if (l->tfd >= 0)
        close(l->tfd);
    vg_sender_free(&l->tx);
    vg_decoder_destroy(l->rx);
    vg_liveness_destroy(l->live);
    free(l);
}

int64_t vg_link_last_heard(const vg_link *l) { return vg_liveness_last_heard(l->live); }

void vg_link_attach(vg_link *l, int fd, int64_t now)
{
    l->fd = fd;
    vg_decoder_reset(l->rx, l->cfg.max_frame);
    vg_liveness_reset(l->live, now);
    vg_progress_reset(&l->progress, now);
    l->sent_at = now;
    vg_sock_acked a;
    l->acks_known = vg_sock_acks(fd, &a) == VG_OK;
    l->heartbeat = false;
    l->hold = true;
    l->ended = false;
    l->end = (vg_end){VG_END_NONE, 0};
    l->detail[0] = '\0';
}

void vg_link_detach(vg_link *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    vg_sender_rewind(&l->tx);
}

void vg_link_end(vg_link *l, vg_end_kind kind, uint64_t code, const char *detail)
{
    if (l->ended)
        return;
    l->ended = true;
    l->end = (vg_end){kind, code};
    if (detail != NULL)
        vg_log_quote(l->detail, sizeof l->detail, detail, strlen(detail));
}

bool vg_link_ended(const vg_link *l) { return l->ended; }

const char *vg_link_end_detail(const vg_link *l) { return l->detail; }

vg_buf *vg_link_ctl(vg_link *l) { return &l->tx.ctl; }

bool vg_link_ctl_ok(vg_link *l, vg_status put_status)
{
    if (put_status == VG_OK)
        return true;
    vg_link_end(l, VG_END_NOMEM, 0, "out of memory for a control frame");
    return false;
}

void vg_link_hold_bulk(vg_link *l, bool hold) { l->hold = hold; }

void vg_link_set_heartbeat(vg_link *l, bool on, int64_t now)
{
    l->heartbeat = on;
    if (on)
        vg_liveness_reset(l->live, now);
}

void vg_link_set_max_frame(vg_link *l, size_t max_frame) { vg_decoder_set_max_frame(l->rx, max_frame); }

int vg_link_fd(const vg_link *l) { return l->fd; }

vg_sender *vg_link_sender(vg_link *l) { return &l->tx; }

/* ---- input ---- */

static void decode(vg_link *l)
{
    vg_frame f;
    const char *why = NULL;
    vg_status st = VG_AGAIN;
    while (!l->ended && (st = vg_decoder_next(l->rx, &f, &why)) == VG_OK)
        l->ops->on_frame(l->ud, &f);
    if (!l->ended && st != VG_AGAIN) {
        if (l->ops->on_bad_input != NULL)
            l->ops->on_bad_input(l->ud, st, why);
        vg_link_end(l, VG_END_PROTOCOL, 0, why);
    }
    if (l->ops->on_read_end != NULL)
        l->ops->on_read_end(l->ud);
}

/* Reads what the socket has, up to reads_per_wake reads, handling every
 * complete frame. Bytes from the peer are life, valid frames or not: if
 * they are not, the connection ends here anyway. With last_words (after a
 * failed write) it only picks up what is waiting, such as an ERR that
 * explains the failure, and leaves EOF and errors to the caller: the write
 * error is the better reason. */
static void read_some(vg_link *l, bool last_words)
{
    for (int i = 0; i < l->cfg.reads_per_wake && !l->ended; i++) {
        uint8_t *space;
        size_t avail;
        if (vg_decoder_space(l->rx, &space, &avail) != VG_OK) {
            vg_link_end(l, VG_END_NOMEM, 0, "out of memory for input");
            return;
        }
        ssize_t n = recv(l->fd, space, avail, 0);
        if (n == 0) {
            if (!last_words)
                vg_link_end(l, VG_END_EOF, 0, NULL);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK && !last_words)
                vg_link_end(l, VG_END_IO, 0, strerror(errno));
            return;
        }
        vg_decoder_commit(l->rx, (size_t)n);
        vg_liveness_heard(l->live, vg_now_ms());
        decode(l);
        if ((size_t)n < avail)
            return; /* the socket is very likely drained */
    }
}

static void read_input(vg_link *l) { read_some(l, false); }

/* ---- output ---- */

static vg_status flush(vg_link *l, int64_t now)
{
    uint64_t before = l->tx.bytes_written;
    vg_status st = l->hold ? vg_sender_flush_ctl(&l->tx, l->fd)
                           : vg_sender_flush(&l->tx, l->fd, l->ob, l->cfg.flush_budget,
                                             now * 1000000);
    if (l->tx.bytes_written != before) {
        vg_progress_wrote(&l->progress, now, l->tx.bytes_written);
        l->sent_at = now;
    }
    return st;
}

/* ---- the peer check ---- */

/* Asks the kernel what the peer has acknowledged of our output. */
static void observe_acks(vg_link *l, int64_t now, bool backlog)
{
    vg_sock_acked a;
    if (vg_sock_acks(l->fd, &a) != VG_OK) {
        l->acks_known = false;
        return;
    }
    vg_progress_observe(&l->progress, now, a.bytes, a.window, a.window_known, backlog);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static bool queue_ping(vg_link *l, int probe, int64_t now)
{
    if (!vg_link_ctl_ok(l, vg_frame_put_ping(&l->tx.ctl)))
        return false;
    if (l->ops->on_probe != NULL)
        l->ops->on_probe(l->ud, probe, now - vg_liveness_last_heard(l->live));
    return true;
}

/* Runs the stuck-output rule and the heartbeat at now; queues PINGs, ends
 * the link on a verdict, and returns when it must run next.
 *
 * Only bytes from the peer are life. A peer that is busy receiving from us
 * may have nothing to say, so each side also PINGs when it has sent
 * nothing for the keep-alive time: a live reader is then heard at least
 * that often, whatever its backlog, and a stopped one is not. */
static int64_t check_peer(vg_link *l, int64_t now)
{
    const vg_keepalive *k = &l->cfg.keepalive;
    int64_t bound = vg_keepalive_bound_ms(k);
    if (!l->heartbeat || bound == 0)
        return INT64_MAX;
    bool backlog = vg_sender_busy(&l->tx);
    if (l->acks_known && vg_progress_outstanding(&l->progress, backlog) &&
        (now >= l->progress.observed_at + l->ack_poll_ms || now >= l->progress.moved_at + bound ||
         now >= vg_liveness_next(l->live)))
        observe_acks(l, now, backlog);

    char detail[64];
    /* Output not taken for the bound from a peer that still talks: a slow
     * consumer. A peer that is silent as well is left to the heartbeat,
     * which tells a dead path from a full reader (below). */
    int64_t stuck = l->acks_known ? vg_progress_stuck_for(&l->progress, now, backlog) : 0;
    if (stuck >= bound && now - vg_liveness_last_heard(l->live) < k->time_ms) {
        snprintf(detail, sizeof detail, "output not taken for %lld ms", (long long)stuck);
        vg_link_end(l, VG_END_STUCK, 0, detail);
        return now;
    }

    int64_t next;
    vg_live_action a = vg_liveness_tick(l->live, now, &next);
    if (a == VG_LIVE_DEAD) {
        read_input(l); /* this thread may have been the slow one */
        if (l->ended)
            return now;
        a = vg_liveness_tick(l->live, now, &next);
    }
    for (; a == VG_LIVE_PROBE; a = vg_liveness_tick(l->live, now, &next))
        if (!queue_ping(l, vg_liveness_unanswered(l->live), now))
            return now;
    if (a == VG_LIVE_DEAD) {
        /* Silent for the bound. If its kernel said it was full while our
         * output waited, it is there but not reading: a slow consumer. */
        bool full = l->acks_known && vg_progress_peer_full(&l->progress, vg_sender_busy(&l->tx));
        snprintf(detail, sizeof detail, "silent for %lld ms%s",
                 (long long)(now - vg_liveness_last_heard(l->live)),
                 full ? ", not reading its socket" : "");
        vg_link_end(l, full ? VG_END_STUCK : VG_END_HEARTBEAT, 0, detail);
        return now;
    }
    if (now - l->sent_at >= k->time_ms && !vg_sender_busy(&l->tx)) {
        if (!queue_ping(l, 0, now)) /* we heard, but said nothing for a while */
            return now;
        l->sent_at = now; /* it goes out on this round */
    }
    next = min64(next, l->sent_at + k->time_ms);
    if (l->acks_known && vg_progress_outstanding(&l->progress, vg_sender_busy(&l->tx))) {
        /* A wake-up just to look at the acknowledgements only while our own
         * buffers hold data (a peer that does not read): otherwise each
         * PING of an idle connection would cost a second wake-up (10,000
         * idle connections: 2.4 % of a core instead of 1.6 %). An awake
         * loop looks anyway, as often as ack_poll_ms. */
        if (vg_sender_busy(&l->tx))
            next = min64(next, l->progress.observed_at + l->ack_poll_ms);
        if (l->progress.moved_at + bound > now) /* past it, the heartbeat decides */
            next = min64(next, l->progress.moved_at + bound);
    }
    return next;
}

/* ---- sleeping ---- */

/* Makes the timerfd fire no later than at (absolute, CLOCK_BOOTTIME ms).
 * A timer armed earlier is left alone: when it fires the loop runs and
 * arms it again, one spare wake-up per deadline that moved later. */
static bool arm_timer(vg_link *l, int64_t at)
{
    int64_t now = vg_now_ms();
    if (l->timer_at <= at && l->timer_at > now)
        return true;
    struct itimerspec its = {.it_value = {.tv_sec = at / 1000, .tv_nsec = (at % 1000) * 1000000}};
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1; /* zero would disarm it */
    if (timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        return false;
    l->timer_at = at;
    return true;
}

/* After a sleep with the socket lent: takes it back and counts what
 * producers wrote on it as ours. */
static void take_back(vg_link *l, int64_t now)
{
    vg_lent lent = vg_outbox_reclaim(l->ob);
    if (lent.bytes == 0)
        return;
    l->tx.frames_written += lent.frames;
    l->tx.bytes_written += lent.bytes;
    vg_progress_wrote(&l->progress, now, l->tx.bytes_written);
    l->sent_at = now;
}

static void sleep_until(vg_link *l, int64_t wake, bool want_out, int64_t now)
{
    struct pollfd p[3] = {
        {.fd = l->fd, .events = POLLIN | (want_out ? POLLOUT : 0)},
        {.fd = vg_outbox_fd(l->ob), .events = POLLIN},
        {.fd = -1, .events = POLLIN},
    };
    int timeout = vg_poll_timeout(wake, now);
    if (l->tfd >= 0 && timeout > 0 && arm_timer(l, wake)) {
        p[2].fd = l->tfd;
        timeout = -1;
    }
    int n = poll(p, 3, timeout);
    int err = errno;
    if (l->cfg.lend) /* first of all: the socket is ours again, and what producers sent counts */
        take_back(l, vg_now_ms());
    if (n < 0) {
        if (err != EINTR)
            vg_link_end(l, VG_END_IO, 0, strerror(err));
        return;
    }
    if (p[1].revents & POLLIN)
        vg_outbox_drain_wakeup(l->ob);
    if (p[2].revents & POLLIN) {
        uint64_t expirations;
        ssize_t ignored = read(l->tfd, &expirations, sizeof expirations);
        (void)ignored;
        l->timer_at = INT64_MAX;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
        read_input(l);
}

vg_end vg_link_run(vg_link *l, const vg_link_ops *ops, void *ud)
{
    l->ops = ops;
    l->ud = ud;
    for (;;) {
        int64_t now = vg_now_ms();
        vg_status st = flush(l, now);
        if (st == VG_ERR_IO) {
            char why[64];
            snprintf(why, sizeof why, "%s", strerror(errno));
            read_some(l, true); /* an ERR from the peer explains it better than EPIPE */
            vg_link_end(l, VG_END_IO, 0, why);
        }
        if (l->ended)
            break; /* a final ERR, if queued, went out best-effort just above */
        if (vg_sender_ctl_pending(&l->tx) > l->cfg.ctl_limit) {
            vg_link_end(l, VG_END_UNREAD, 0, "peer does not read its replies");
            break;
        }
        int64_t wake = ops->on_tick != NULL ? ops->on_tick(ud, now) : INT64_MAX;
        if (l->ended)
            continue;
        wake = min64(wake, check_peer(l, now));
        if (l->ended)
            continue;
        /* While bulk is held, bulk left from a previous connection is not
         * work for this round: only control frames are. */
        if (st == VG_OK && (l->hold ? vg_sender_ctl_pending(&l->tx) > 0 : vg_sender_busy(&l->tx)))
            continue; /* the owner or the heartbeat queued frames */
        if (st == VG_OK && !l->hold &&
            !vg_outbox_park_lending(l->ob, l->cfg.lend && !l->hold ? l->fd : -1))
            continue; /* more was queued meanwhile */
        sleep_until(l, wake, st == VG_AGAIN, now);
    }
    return l->end;
}

void vg_link_linger(vg_link *l, int ms)
{
    char sink[16384];
    size_t total = 0;
    int64_t deadline = vg_now_ms() + ms;
    shutdown(l->fd, SHUT_WR);
    while (total < LINGER_BYTES) {
        int64_t left = deadline - vg_now_ms();
        struct pollfd p = {.fd = l->fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = recv(l->fd, sink, sizeof sink, 0);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}
