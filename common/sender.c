#include "sender.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "frame.h"

#define SHRINK_ABOVE (1024 * 1024)

static void bulk_reset(vg_sender *s)
{
    s->bulk.len = 0;
    s->off = s->frame_start = s->frame_end = 0;
    if (s->bulk.cap > SHRINK_ABOVE) /* a burst has passed: give the memory back */
        vg_buf_free(&s->bulk);
}

/* Starts writing a batch just taken from the outbox, whose first skip bytes
 * a producer already sent on the lent socket: mid-frame, so control frames
 * wait for that frame to end. */
static void bulk_begin(vg_sender *s, size_t skip)
{
    s->frame_start = 0;
    s->off = skip;
    s->frame_end = s->bulk.len >= VG_FRAME_HEADER ? VG_FRAME_HEADER + vg_be32(s->bulk.data) : 0;
}

/* Accounts for w bytes written; control bytes come first when ctl_first. */
static void consume(vg_sender *s, size_t w, bool ctl_first)
{
    if (ctl_first) {
        size_t c = s->ctl.len - s->ctl_off;
        if (c > w)
            c = w;
        s->ctl_off += c;
        w -= c;
        if (s->ctl_off == s->ctl.len)
            s->ctl.len = s->ctl_off = 0;
    }
    s->off += w;
    while (s->bulk.len > 0 && s->off >= s->frame_end) {
        s->frames_written++;
        if (s->on_written != NULL)
            s->on_written(s->ud, s->bulk.data + s->frame_start, s->frame_end - s->frame_start);
        s->frame_start = s->frame_end;
        if (s->frame_start >= s->bulk.len) {
            bulk_reset(s);
            break;
        }
        s->frame_end = s->frame_start + VG_FRAME_HEADER + vg_be32(s->bulk.data + s->frame_start);
    }
}

/* Control frames (at a frame boundary of the source's stream) and what
 * the source offers, in one sendmsg: VG_OK (all of it written), VG_AGAIN
 * (the socket took less) or VG_ERR_IO. *offered is false when the source
 * had nothing. */
static vg_status write_source(vg_sender *s, int fd, size_t *wrote, bool *offered)
{
    struct iovec iov[1 + VG_SOURCE_IOV];
    size_t partial;
    size_t k = s->src.offer(s->src.ud, iov + 1, VG_SOURCE_IOV, &partial);
    *offered = k > 0;
    *wrote = 0;
    s->src_pending = false;
    if (k == 0)
        return VG_OK;
    bool has_ctl = s->ctl.len > s->ctl_off;
    struct iovec *first = iov + 1;
    size_t n = k;
    if (has_ctl && partial == 0) { /* a boundary: control first */
        iov[0] = (struct iovec){s->ctl.data + s->ctl_off, s->ctl.len - s->ctl_off};
        first = iov;
        n++;
    } else if (has_ctl) { /* finish the frame in progress, then control */
        size_t left = partial;
        for (n = 0; n < k && left > 0; n++) {
            if (iov[1 + n].iov_len > left)
                iov[1 + n].iov_len = left;
            left -= iov[1 + n].iov_len;
        }
    }
    size_t want = 0;
    for (size_t i = 0; i < n; i++)
        want += first[i].iov_len;
    struct msghdr msg = {.msg_iov = first, .msg_iovlen = n};
    ssize_t w;
    do
        w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    if (w < 0) {
        s->src.taken(s->src.ud, 0);
        s->src_pending = true;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->blocked = true;
            return VG_AGAIN;
        }
        return VG_ERR_IO;
    }
    size_t rest = (size_t)w;
    if (first == iov) {
        size_t c = iov[0].iov_len < rest ? iov[0].iov_len : rest;
        s->ctl_off += c;
        rest -= c;
        if (s->ctl_off == s->ctl.len)
            s->ctl.len = s->ctl_off = 0;
    }
    s->src.taken(s->src.ud, rest);
    s->bytes_written += (size_t)w;
    *wrote = (size_t)w;
    s->blocked = (size_t)w < want;
    s->src_pending = s->blocked;
    return s->blocked ? VG_AGAIN : VG_OK;
}

static vg_status flush(vg_sender *s, int fd, vg_outbox *ob, size_t budget, bool with_bulk,
                       int64_t now_ns)
{
    size_t total = 0;
    vg_status st = VG_OK;
    for (;;) {
        if (with_bulk && s->bulk.len == 0 && ob != NULL) {
            size_t skip;
            vg_outbox_take(ob, &s->bulk, now_ns, &skip);
            if (s->bulk.len > 0)
                bulk_begin(s, skip);
        }
        bool has_ctl = s->ctl.len > s->ctl_off;
        bool has_bulk = with_bulk && s->bulk.len > s->off;
        if (!has_bulk && with_bulk && s->src.offer != NULL) {
            size_t wrote;
            bool offered;
            st = write_source(s, fd, &wrote, &offered);
            total += wrote;
            if (st != VG_OK)
                break;
            if (offered && total < budget)
                continue; /* the source may have more, and control may wait */
            if (offered) {
                st = VG_AGAIN;
                break;
            }
            /* nothing from the source: control alone, below */
        }
        if (!has_ctl && !has_bulk) {
            s->blocked = false;
            st = VG_OK;
            break;
        }

        struct iovec iov[2];
        int n = 0;
        bool ctl_first = false;
        if (has_ctl && (s->off == s->frame_start || !with_bulk)) {
            iov[n++] = (struct iovec){s->ctl.data + s->ctl_off, s->ctl.len - s->ctl_off};
            ctl_first = true;
            if (has_bulk)
                iov[n++] = (struct iovec){s->bulk.data + s->off, s->bulk.len - s->off};
        } else if (has_ctl) { /* finish the frame in progress, then control */
            iov[n++] = (struct iovec){s->bulk.data + s->off, s->frame_end - s->off};
        } else {
            iov[n++] = (struct iovec){s->bulk.data + s->off, s->bulk.len - s->off};
        }
        size_t want = iov[0].iov_len + (n > 1 ? iov[1].iov_len : 0);

        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                s->blocked = true;
                st = VG_AGAIN;
                break;
            }
            st = VG_ERR_IO;
            break;
        }
        s->blocked = (size_t)w < want;
        consume(s, (size_t)w, ctl_first);
        s->bytes_written += (size_t)w;
        total += (size_t)w;
        if (s->blocked || total >= budget) {
            st = VG_AGAIN;
            break;
        }
    }
    if (ob != NULL && with_bulk)
        vg_outbox_set_inflight(ob, s->bulk.len - s->off, now_ns);
    return st;
}

vg_status vg_sender_flush(vg_sender *s, int fd, vg_outbox *ob, size_t budget, int64_t now_ns)
{
    return flush(s, fd, ob, budget, true, now_ns);
}

vg_status vg_sender_flush_ctl(vg_sender *s, int fd)
{
    return flush(s, fd, NULL, SIZE_MAX, false, 0);
}

void vg_sender_rewind(vg_sender *s)
{
    s->ctl.len = s->ctl_off = 0;
    s->off = s->frame_start;
    s->blocked = false;
    s->bytes_written = 0;
}

vg_status vg_sender_replace_front(vg_sender *s, uint64_t skip, const uint8_t *front, size_t len)
{
    if (len == 0 && skip == 0)
        return VG_OK; /* the rest goes out from where it is, as it would have */
    size_t rest = s->off;
    for (uint64_t i = 0; i < skip && rest + VG_FRAME_HEADER <= s->bulk.len; i++)
        rest += VG_FRAME_HEADER + vg_be32(s->bulk.data + rest);
    if (rest > s->bulk.len)
        rest = s->bulk.len;
    vg_buf next = {0};
    if (vg_buf_reserve(&next, len + (s->bulk.len - rest)) != VG_OK)
        return VG_ERR_NOMEM;
    if (len > 0)
        memcpy(next.data, front, len);
    if (s->bulk.len > rest)
        memcpy(next.data + len, s->bulk.data + rest, s->bulk.len - rest);
    next.len = len + (s->bulk.len - rest);
    vg_buf_free(&s->bulk);
    s->bulk = next;
    bulk_begin(s, 0);
    if (s->bulk.len == 0)
        bulk_reset(s);
    return VG_OK;
}

void vg_sender_free(vg_sender *s)
{
    vg_buf_free(&s->ctl);
    vg_buf_free(&s->bulk);
    s->ctl.len = s->ctl_off = 0;
    s->bulk.len = s->off = s->frame_start = s->frame_end = 0;
}
