/* A bounded queue of whole frames from any number of producer threads to the
 * one thread that owns a socket.
 *
 * Producers append bytes under a mutex; the owner swaps the whole queue out
 * in O(1) (vg_outbox_take) and writes it without the lock. The owner is woken
 * through an eventfd only when it has said it is about to sleep
 * (vg_outbox_park), so a burst of appends costs one wake-up, not one each.
 *
 * Direct writes: while the owner is parked with nothing queued and nothing
 * half-written, a producer may write its frames straight to the owner's
 * socket (vg_outbox_set_direct_fd), saving the owner a wake-up and a thread
 * hop. The write happens under this outbox's mutex, so the owner, which
 * reclaims the socket in vg_outbox_take before any write of its own, never
 * writes at the same time. Bytes the kernel does not take stay queued as
 * whole frames; the owner learns how much of the first one already went out
 * (vg_take.skip) and how many frames went out whole (vg_take.direct_frames). */
#ifndef VG_OUTBOX_H
#define VG_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "status.h"

typedef struct vg_outbox vg_outbox;

/* max_bytes bounds queued plus in-flight bytes; an empty outbox accepts one
 * put of any size (one frame, or one read's run of frames) so that a large
 * frame always makes progress.
 * Returns NULL on failure (memory or file descriptors), errno set. */
vg_outbox *vg_outbox_create(size_t max_bytes);
void vg_outbox_destroy(vg_outbox *ob);

/* The eventfd the owner polls for POLLIN; vg_outbox_drain_wakeup clears it. */
int vg_outbox_fd(const vg_outbox *ob);
void vg_outbox_drain_wakeup(vg_outbox *ob);

/* Producer: appends n bytes holding nframes whole frames, all or nothing.
 * Waits up to timeout_ms for room (0: never waits; <0: no limit). Returns
 * VG_OK, VG_ERR_FULL (no room in time), VG_ERR_CLOSED or VG_ERR_NOMEM. */
vg_status vg_outbox_put(vg_outbox *ob, const void *bytes, size_t n, uint32_t nframes,
                        int timeout_ms);

/* Producer: like vg_outbox_put, but reserves n bytes and lets fill(dst, arg)
 * encode the frames in place, under the lock, saving a copy. */
vg_status vg_outbox_put_with(vg_outbox *ob, size_t n, uint32_t nframes, int timeout_ms,
                             void (*fill)(uint8_t *dst, void *arg), void *arg);

/* Producer, never waits: appends the longest prefix of the n bytes of whole
 * frames that fits and reports in *dropped how many frames did not. Returns
 * VG_OK (possibly with drops), VG_ERR_CLOSED or VG_ERR_NOMEM (all dropped). */
vg_status vg_outbox_put_frames(vg_outbox *ob, const uint8_t *bytes, size_t n,
                               uint32_t nframes, uint32_t *dropped);

/* Producer: like vg_outbox_put_frames, but while the owner is draining its
 * socket (it wrote within the last stall_ms) waits up to stall_ms in all for
 * room before dropping, so a reader that keeps up but lags a burst slows the
 * producer briefly instead of losing messages. A reader that has stopped
 * costs the producer nothing. */
vg_status vg_outbox_put_frames_stall(vg_outbox *ob, const uint8_t *bytes, size_t n,
                                     uint32_t nframes, int stall_ms, uint32_t *dropped);

typedef struct {
    uint64_t frames;        /* frames moved into the caller's buffer */
    size_t skip;            /* bytes of the first one already written directly */
    uint64_t direct_frames; /* frames written whole by producers since the last take */
} vg_take;

/* Owner: moves everything queued into *into, which must be empty, by swapping
 * storage, and reclaims the socket from producers until the next park. */
vg_take vg_outbox_claim(vg_outbox *ob, vg_buf *into);

/* vg_outbox_claim, returning only the number of frames moved. */
uint64_t vg_outbox_take(vg_outbox *ob, vg_buf *into);

/* Owner: lets producers write directly to fd while the owner is parked. */
void vg_outbox_set_direct_fd(vg_outbox *ob, int fd);

/* Owner, before closing the socket: forbids direct writes, forgets that part
 * of the first queued frame went out (it will be sent again whole on the next
 * connection), and returns the frames producers wrote whole since the last
 * take. */
uint64_t vg_outbox_stop_direct(vg_outbox *ob);

/* Owner: reports bytes taken but not yet written, which still count against
 * max_bytes; a decrease records progress and wakes waiting producers. */
void vg_outbox_set_inflight(vg_outbox *ob, size_t bytes);

/* Owner, before sleeping, with nothing of its own left to write: returns 1
 * if nothing is queued, arms the wake-up so the next put signals the eventfd,
 * and hands the socket to producers for direct writes; 0 if there is work. */
int vg_outbox_park(vg_outbox *ob);

/* Owner, awake again: takes the socket back from producers before doing
 * anything that queues control replies, so that no direct write can
 * overtake them (e.g. a message to itself overtaking its own OK). */
void vg_outbox_unpark(vg_outbox *ob);

/* Wakes the owner unconditionally (it has other work: a stop, a subscription). */
void vg_outbox_wake(vg_outbox *ob);

/* Refuses further puts (VG_ERR_CLOSED), releases waiting producers, wakes the owner. */
void vg_outbox_close(vg_outbox *ob);

/* Frames dropped by vg_outbox_put_frames since creation (vg_outbox_put does
 * not drop: its caller gets VG_ERR_FULL and still holds the frame). */
uint64_t vg_outbox_dropped(vg_outbox *ob);

/* Queued plus in-flight bytes. */
size_t vg_outbox_bytes(vg_outbox *ob);

#endif
