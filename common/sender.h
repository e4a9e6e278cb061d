/* The writing half of a connection, owned by one thread.
 *
 * Two streams share the socket: control frames (PING, PONG, OK, ERR, SUB)
 * that the owner makes itself, and bulk frames taken from an outbox. A control
 * frame goes out at the next frame boundary of the bulk stream, so a PONG is
 * never stuck behind megabytes of queued messages (nats-server #7615) and
 * never splits a frame. Writes gather both streams into one sendmsg. */
#ifndef VG_SENDER_H
#define VG_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

#include "buf.h"
#include "outbox.h"
#include "status.h"

/* A third stream, after the bulk frames: bytes the owner offers straight
 * from memory of its own (the broker's topic logs), written with no copy.
 * offer fills up to max iovecs and returns how many (0: nothing to send
 * now); they hold whole frames, except that their first *partial bytes
 * finish a frame begun by an earlier write (0: they start at a frame
 * boundary, where a control frame may go first). taken(ud, n) reports that
 * the first n bytes of the last offer were written; the rest is offered
 * again. Both run on the owner thread, inside a flush. */
typedef struct {
    size_t (*offer)(void *ud, struct iovec *iov, size_t max, size_t *partial);
    void (*taken)(void *ud, size_t n);
    void *ud;
} vg_source;

#define VG_SOURCE_IOV 64 /* iovecs offered at most: several topics' records in one write */

typedef struct {
    vg_buf ctl; /* owner appends whole control frames here */
    size_t ctl_off;
    vg_buf bulk;
    size_t off;         /* next bulk byte to write */
    size_t frame_start; /* start of the bulk frame containing off */
    size_t frame_end;
    uint64_t frames_written; /* bulk frames completely handed to the kernel */
    uint64_t bytes_written;  /* all bytes handed to the kernel */
    bool blocked;            /* the kernel refused bytes on the last attempt */
    /* Called, if set, for each bulk frame once it is completely handed to
     * the kernel (the client tells its MSG frames from its SUB/UNSUB frames
     * this way); the bytes are valid during the call only. */
    void (*on_written)(void *ud, const uint8_t *frame, size_t len);
    void *ud;
    vg_source src;    /* optional (src.offer NULL: none) */
    bool src_pending; /* the source's last offer was not all written */
} vg_sender;

/* Writes control frames and bulk frames (taking more from ob, which may be
 * NULL, whenever the bulk stream runs dry, then from the source) until
 * everything is written
 * (VG_OK), the socket is full or budget bytes were written (VG_AGAIN), or an
 * error (VG_ERR_IO, errno set). now_ns is reported to ob as the time of
 * progress. */
vg_status vg_sender_flush(vg_sender *s, int fd, vg_outbox *ob, size_t budget, int64_t now_ns);

/* Writes control frames only, leaving bulk frames queued: for a handshake on
 * a fresh connection, when the bulk stream is at a frame boundary (after
 * vg_sender_rewind). */
vg_status vg_sender_flush_ctl(vg_sender *s, int fd);

/* True when bytes wait to be written (not counting the outbox, nor a source
 * that has not been asked yet). */
static inline bool vg_sender_busy(const vg_sender *s)
{
    return s->ctl.len > s->ctl_off || s->bulk.len > s->off || s->src_pending;
}

/* Control bytes queued and not yet written. */
static inline size_t vg_sender_ctl_pending(const vg_sender *s) { return s->ctl.len - s->ctl_off; }

/* The bulk frame a write stopped in the middle of, or NULL: a control frame
 * queued now goes out after it. */
static inline const uint8_t *vg_sender_partial_frame(const vg_sender *s)
{
    return s->off > s->frame_start && s->off < s->bulk.len ? s->bulk.data + s->frame_start : NULL;
}

/* After a lost connection: drops control frames and rewinds the bulk stream
 * to the start of a partly written frame, so the next connection sends whole
 * frames only; bytes_written restarts from 0 for the new connection. Frames
 * already written are gone. */
void vg_sender_rewind(vg_sender *s);

/* After vg_sender_rewind, before the next connection's first write: drops
 * the bulk frames already written and the next skip unwritten ones, and
 * puts front (len bytes of whole frames) ahead of the rest, so that a
 * client sends its unconfirmed frames again first. VG_OK, or VG_ERR_NOMEM
 * with nothing changed. */
vg_status vg_sender_replace_front(vg_sender *s, uint64_t skip, const uint8_t *front, size_t len);

/* Frees the buffers. */
void vg_sender_free(vg_sender *s);

#endif
