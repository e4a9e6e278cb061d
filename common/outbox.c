#include "outbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "frame.h"

struct vg_outbox {
    pthread_mutex_t mu;
    pthread_cond_t room; /* broadcast when the owner frees space and a producer waits */
    vg_buf pending;
    uint64_t pending_frames;
    size_t max_bytes;
    _Atomic size_t inflight;
    uint64_t dropped;
    _Atomic int waiters;
    _Atomic int64_t drained_ns; /* when the owner last got bytes into its socket */
    bool parked;
    bool closed;
    int lent_fd;          /* -1 unless the owner has lent its socket */
    size_t head_sent;     /* bytes of the first pending frame sent on the lent socket */
    int64_t last_lent_ns; /* the previous send on the lent socket */
    vg_lent lent;         /* what producers sent since the last reclaim */
    int efd;
};

vg_outbox *vg_outbox_create(size_t max_bytes)
{
    vg_outbox *ob = calloc(1, sizeof *ob);
    if (ob == NULL)
        return NULL;
    ob->max_bytes = max_bytes;
    ob->lent_fd = -1;
    ob->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ob->efd < 0)
        goto fail_free;
    if (vg_cond_init(&ob->room) != 0)
        goto fail_close;
    pthread_mutex_init(&ob->mu, NULL);
    return ob;

fail_close:
    close(ob->efd);
fail_free:
    free(ob);
    return NULL;
}

void vg_outbox_destroy(vg_outbox *ob)
{
    if (ob == NULL)
        return;
    close(ob->efd);
    vg_buf_free(&ob->pending);
    pthread_cond_destroy(&ob->room);
    pthread_mutex_destroy(&ob->mu);
    free(ob);
}

int vg_outbox_fd(const vg_outbox *ob) { return ob->efd; }

void vg_outbox_drain_wakeup(vg_outbox *ob)
{
    uint64_t v;
    ssize_t ignored = read(ob->efd, &v, sizeof v);
    (void)ignored;
}

static void signal_owner(vg_outbox *ob)
{
    uint64_t one = 1;
    ssize_t ignored = write(ob->efd, &one, sizeof one);
    (void)ignored;
}

static size_t used(vg_outbox *ob)
{
    return ob->pending.len + atomic_load_explicit(&ob->inflight, memory_order_relaxed);
}

static bool fits(vg_outbox *ob, size_t n)
{
    size_t u = used(ob);
    return u == 0 || (n <= ob->max_bytes && u <= ob->max_bytes - n);
}

bool vg_outbox_lend_allowed(int64_t last_ns, int64_t now_ns)
{
    return last_ns == 0 || now_ns - last_ns >= 10000;
}

/* On a lent socket, sends the queue from its head, under the lock, never
 * blocking; keeps what the kernel does not take, as whole frames with the
 * head's sent part remembered. An error is left for the owner to meet on
 * its own write. */
static void send_lent(vg_outbox *ob)
{
    int64_t now = vg_now_ns(); /* read only while lent, i.e. while the owner sleeps */
    if (!vg_outbox_lend_allowed(ob->last_lent_ns, now))
        return;
    ob->last_lent_ns = now;
    ssize_t w = send(ob->lent_fd, ob->pending.data + ob->head_sent, ob->pending.len - ob->head_sent,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w <= 0)
        return;
    atomic_store(&ob->drained_ns, now); /* the socket took bytes: draining */
    ob->lent.bytes += (uint64_t)w;
    size_t sent = ob->head_sent + (size_t)w, whole = 0;
    while (whole < ob->pending.len) {
        size_t len = VG_FRAME_HEADER + vg_be32(ob->pending.data + whole);
        if (whole + len > sent)
            break;
        whole += len;
        ob->lent.frames++;
        ob->pending_frames--;
    }
    memmove(ob->pending.data, ob->pending.data + whole, ob->pending.len - whole);
    ob->pending.len -= whole;
    ob->head_sent = sent - whole;
}

/* Appends under the lock, copying bytes or letting fill write them; sets
 * *wake if the owner must be signalled (it parked before this append and
 * something is left for it). */
static vg_status append_locked(vg_outbox *ob, const void *bytes, size_t n, uint32_t nframes,
                               void (*fill)(uint8_t *, void *), void *arg, bool *wake)
{
    if (vg_buf_reserve(&ob->pending, n) != VG_OK)
        return VG_ERR_NOMEM;
    if (fill != NULL)
        fill(ob->pending.data + ob->pending.len, arg);
    else
        memcpy(ob->pending.data + ob->pending.len, bytes, n);
    ob->pending.len += n;
    ob->pending_frames += nframes;
    if (ob->lent_fd >= 0)
        send_lent(ob);
    if (ob->parked && ob->pending.len > 0) {
        ob->parked = false;
        *wake = true;
    }
    return VG_OK;
}

/* Waits, under the lock, until n bytes may fit or deadline (NULL: none)
 * passes; returns ETIMEDOUT or 0. The waiter is counted before fits() is
 * checked again: vg_outbox_set_inflight frees room without the lock, and
 * either this check sees the room or set_inflight sees the waiter. */
static int wait_for_room(vg_outbox *ob, size_t n, const struct timespec *deadline)
{
    atomic_fetch_add(&ob->waiters, 1);
    int rc = 0;
    if (!fits(ob, n))
        rc = deadline == NULL ? pthread_cond_wait(&ob->room, &ob->mu)
                              : pthread_cond_timedwait(&ob->room, &ob->mu, deadline);
    atomic_fetch_sub(&ob->waiters, 1);
    return rc;
}

static vg_status put(vg_outbox *ob, const void *bytes, size_t n, uint32_t nframes, int timeout_ms,
                     void (*fill)(uint8_t *, void *), void *arg)
{
    struct timespec deadline;
    bool have_deadline = false; /* the clock is read only if we must wait */
    bool wake = false;
    vg_status st;

    pthread_mutex_lock(&ob->mu);
    for (;;) {
        if (ob->closed) {
            st = VG_ERR_CLOSED;
            break;
        }
        if (fits(ob, n)) {
            st = append_locked(ob, bytes, n, nframes, fill, arg, &wake);
            break;
        }
        if (timeout_ms == 0) {
            st = VG_ERR_FULL;
            break;
        }
        if (timeout_ms > 0 && !have_deadline) {
            deadline = vg_deadline_after(timeout_ms);
            have_deadline = true;
        }
        int rc = wait_for_room(ob, n, timeout_ms < 0 ? NULL : &deadline);
        if (rc == ETIMEDOUT && !fits(ob, n) && !ob->closed) {
            st = VG_ERR_FULL;
            break;
        }
    }
    pthread_mutex_unlock(&ob->mu);
    if (wake)
        signal_owner(ob);
    return st;
}

vg_status vg_outbox_put(vg_outbox *ob, const void *bytes, size_t n, uint32_t nframes,
                        int timeout_ms)
{
    return put(ob, bytes, n, nframes, timeout_ms, NULL, NULL);
}

vg_status vg_outbox_put_with(vg_outbox *ob, size_t n, uint32_t nframes, int timeout_ms,
                             void (*fill)(uint8_t *dst, void *arg), void *arg)
{
    return put(ob, NULL, n, nframes, timeout_ms, fill, arg);
}

vg_status vg_outbox_put_always(vg_outbox *ob, const void *bytes, size_t n, uint32_t nframes)
{
    bool wake = false;
    pthread_mutex_lock(&ob->mu);
    vg_status st = ob->closed ? VG_ERR_CLOSED
                              : append_locked(ob, bytes, n, nframes, NULL, NULL, &wake);
    pthread_mutex_unlock(&ob->mu);
    if (wake)
        signal_owner(ob);
    return st;
}

/* Length of the longest prefix of the nframes whole frames in bytes[0..n)
 * that fits; *frames receives how many frames that is. */
static size_t fitting_prefix(vg_outbox *ob, const uint8_t *bytes, size_t n, uint32_t nframes,
                             uint32_t *frames)
{
    *frames = nframes;
    if (fits(ob, n))
        return n; /* including an empty outbox, which takes any put */
    *frames = 0;
    size_t u = used(ob), room = ob->max_bytes > u ? ob->max_bytes - u : 0, take = 0;
    while (take < n) {
        size_t len = VG_FRAME_HEADER + vg_be32(bytes + take);
        if (len > room - take)
            break;
        take += len;
        (*frames)++;
    }
    return take;
}

bool vg_outbox_owner_draining(int64_t drained_ns, int64_t now_ns, int stall_ms)
{
    return stall_ms > 0 && drained_ns != 0 && now_ns - drained_ns < (int64_t)stall_ms * 1000000;
}

vg_status vg_outbox_put_frames(vg_outbox *ob, const uint8_t *bytes, size_t n, uint32_t nframes,
                               int stall_ms, int64_t now_ns, uint32_t *dropped)
{
    struct timespec deadline;
    bool have_deadline = false;
    bool wake = false;
    vg_status st = VG_OK;
    uint32_t left = nframes;

    pthread_mutex_lock(&ob->mu);
    for (;;) {
        if (ob->closed) {
            st = VG_ERR_CLOSED;
            left = 0; /* not a drop: there is no one left to deliver to */
            break;
        }
        uint32_t frames;
        size_t take = fitting_prefix(ob, bytes, n, left, &frames);
        if (take > 0) {
            if (append_locked(ob, bytes, take, frames, NULL, NULL, &wake) != VG_OK) {
                st = VG_ERR_NOMEM;
                break;
            }
            bytes += take;
            n -= take;
            left -= frames;
        }
        if (left == 0 ||
            !vg_outbox_owner_draining(atomic_load(&ob->drained_ns), now_ns, stall_ms))
            break;
        if (!have_deadline) {
            deadline = vg_deadline_after(stall_ms);
            have_deadline = true;
        }
        if (wake) { /* the owner must run to make room */
            signal_owner(ob);
            wake = false;
        }
        if (wait_for_room(ob, VG_FRAME_HEADER + vg_be32(bytes), &deadline) == ETIMEDOUT)
            stall_ms = 0; /* one last try, then drop what still does not fit */
    }
    *dropped = left;
    ob->dropped += left;
    pthread_mutex_unlock(&ob->mu);
    if (wake)
        signal_owner(ob);
    return st;
}

uint64_t vg_outbox_take(vg_outbox *ob, vg_buf *into, int64_t now_ns, size_t *skip)
{
    pthread_mutex_lock(&ob->mu);
    vg_buf empty = *into;
    *into = ob->pending;
    ob->pending = empty;
    ob->pending.len = 0;
    uint64_t frames = ob->pending_frames;
    ob->pending_frames = 0;
    *skip = ob->head_sent;
    ob->head_sent = 0;
    ob->parked = false;
    ob->lent_fd = -1; /* the owner writes from here on: never both */
    /* Called only once the previous bulk is written: if there was one, the
     * owner has drained. */
    if (atomic_exchange(&ob->inflight, into->len - *skip) > 0)
        atomic_store(&ob->drained_ns, now_ns);
    if (atomic_load(&ob->waiters) > 0)
        pthread_cond_broadcast(&ob->room);
    pthread_mutex_unlock(&ob->mu);
    return frames;
}

void vg_outbox_set_inflight(vg_outbox *ob, size_t bytes, int64_t now_ns)
{
    size_t before = atomic_exchange(&ob->inflight, bytes);
    if (bytes >= before)
        return;
    atomic_store(&ob->drained_ns, now_ns);
    /* Sequentially consistent with the waiter's increment before its last
     * fits() check: either it sees the room or we see it waiting. */
    if (atomic_load(&ob->waiters) > 0) {
        pthread_mutex_lock(&ob->mu);
        pthread_cond_broadcast(&ob->room);
        pthread_mutex_unlock(&ob->mu);
    }
}

bool vg_outbox_park_lending(vg_outbox *ob, int fd)
{
    pthread_mutex_lock(&ob->mu);
    bool idle = ob->pending.len == 0;
    ob->parked = idle;
    ob->lent_fd = idle && !ob->closed ? fd : -1;
    pthread_mutex_unlock(&ob->mu);
    return idle;
}

bool vg_outbox_park(vg_outbox *ob) { return vg_outbox_park_lending(ob, -1); }

vg_lent vg_outbox_reclaim(vg_outbox *ob)
{
    pthread_mutex_lock(&ob->mu);
    ob->lent_fd = -1;
    ob->parked = false;
    vg_lent l = ob->lent;
    ob->lent = (vg_lent){0, 0};
    pthread_mutex_unlock(&ob->mu);
    return l;
}

bool vg_outbox_lent_write(vg_outbox *ob, size_t (*write)(int fd, void *arg, uint64_t *frames),
                          void *arg)
{
    bool ran = false;
    pthread_mutex_lock(&ob->mu);
    if (ob->lent_fd >= 0 && ob->pending.len == 0) {
        int64_t now = vg_now_ns(); /* read only while lent, as in send_lent */
        if (vg_outbox_lend_allowed(ob->last_lent_ns, now)) {
            ob->last_lent_ns = now;
            uint64_t frames = 0;
            size_t w = write(ob->lent_fd, arg, &frames);
            if (w > 0) {
                atomic_store(&ob->drained_ns, now);
                ob->lent.bytes += w;
                ob->lent.frames += frames;
            }
            ran = true;
        }
    }
    pthread_mutex_unlock(&ob->mu);
    return ran;
}

void vg_outbox_wake(vg_outbox *ob) { signal_owner(ob); }

void vg_outbox_close(vg_outbox *ob)
{
    pthread_mutex_lock(&ob->mu);
    ob->closed = true;
    ob->lent_fd = -1;
    pthread_cond_broadcast(&ob->room);
    pthread_mutex_unlock(&ob->mu);
    signal_owner(ob);
}

uint64_t vg_outbox_dropped(vg_outbox *ob)
{
    pthread_mutex_lock(&ob->mu);
    uint64_t d = ob->dropped;
    pthread_mutex_unlock(&ob->mu);
    return d;
}

size_t vg_outbox_bytes(vg_outbox *ob)
{
    pthread_mutex_lock(&ob->mu);
    size_t u = used(ob);
    pthread_mutex_unlock(&ob->mu);
    return u;
}
