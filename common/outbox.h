/* A bounded queue of whole frames from any number of producer threads to the
 * one thread that owns a socket.
 *
 * Producers append bytes under a mutex; the owner swaps the whole queue out
 * in O(1) (vg_outbox_take) and writes it without the lock. The owner is
 * woken through an eventfd only when it has said it is about to sleep
 * (vg_outbox_park), so a burst of appends costs one wake-up, not one each.
 *
 * Lending (optional, for latency): an owner about to sleep with nothing of
 * its own to write may lend its socket's writing side to the queue
 * (vg_outbox_park_lending). While lent, a producer that appends to an
 * empty queue sends the queue's head itself, under the lock, without
 * blocking, saving the owner a wake-up; what the kernel does not take stays
 * queued as whole frames and the owner is woken for it. The owner takes
 * the socket back (vg_outbox_reclaim) before it does anything else when it
 * wakes. So at every moment exactly one party may write: the owner, or
 * whoever holds this mutex while the socket is lent; and every byte sent
 * while lent comes from the head of the one queue, in order. */
#ifndef VG_OUTBOX_H
#define VG_OUTBOX_H

#include <stdbool.h>
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
 * encode the frames in place, under the lock, saving a copy. fill runs
 * before the owner can take the frames, so it may also count them. */
vg_status vg_outbox_put_with(vg_outbox *ob, size_t n, uint32_t nframes, int timeout_ms,
                             void (*fill)(uint8_t *dst, void *arg), void *arg);

/* Producer: appends n bytes holding nframes whole frames even beyond
 * max_bytes, never waiting: for rare, small frames that must keep their
 * place in the stream (a client's SUB and UNSUB). VG_OK, VG_ERR_CLOSED or
 * VG_ERR_NOMEM. */
vg_status vg_outbox_put_always(vg_outbox *ob, const void *bytes, size_t n, uint32_t nframes);

/* Whether a producer should wait for an owner whose socket last took bytes
 * at drained_ns: only while it is draining, i.e. within stall_ms of now. A
 * stopped reader costs producers nothing. Pure; exposed for tests. */
bool vg_outbox_owner_draining(int64_t drained_ns, int64_t now_ns, int stall_ms);

/* Producer, for fan-out: appends the longest prefix of the n bytes of
 * nframes whole frames that fits and reports in *dropped how many frames
 * did not. While the owner is draining (vg_outbox_owner_draining at now_ns)
 * it first waits up to stall_ms in all for room, so a reader that keeps up
 * but lags a burst slows the producer briefly instead of losing messages;
 * stall_ms 0 never waits. Returns VG_OK (possibly with drops), VG_ERR_CLOSED
 * (the owner is gone: nothing appended, *dropped 0, which is not a drop) or
 * VG_ERR_NOMEM (the frames not appended are counted as dropped). */
vg_status vg_outbox_put_frames(vg_outbox *ob, const uint8_t *bytes, size_t n, uint32_t nframes,
                               int stall_ms, int64_t now_ns, uint32_t *dropped);

/* Owner: moves everything queued into *into, which must be empty, by
 * swapping storage; returns the number of frames moved and, in *skip, how
 * many bytes of the first one a producer already sent while the socket was
 * lent. now_ns is when the owner's previous batch (if any) finished
 * draining into its socket. */
uint64_t vg_outbox_take(vg_outbox *ob, vg_buf *into, int64_t now_ns, size_t *skip);

/* Owner: reports bytes taken but not yet written, which still count against
 * max_bytes; a decrease records progress at now_ns and wakes waiting
 * producers. */
void vg_outbox_set_inflight(vg_outbox *ob, size_t bytes, int64_t now_ns);

/* Owner, before sleeping, with nothing of its own left to write: returns
 * true if nothing is queued, and arms the wake-up so that the next put
 * signals the eventfd; false if there is work. */
bool vg_outbox_park(vg_outbox *ob);

/* Owner: like vg_outbox_park, and when parked lends fd to producers until
 * vg_outbox_reclaim. The owner must have nothing of its own unwritten. */
bool vg_outbox_park_lending(vg_outbox *ob, int fd);

typedef struct {
    uint64_t frames; /* whole frames producers sent while the socket was lent */
    uint64_t bytes;  /* bytes they sent, a partly sent head frame included */
} vg_lent;

/* Owner, on waking, before any write of its own: takes the socket back and
 * reports what producers sent on it. */
vg_lent vg_outbox_reclaim(vg_outbox *ob);

/* The lending policy: a producer sends on a lent socket only if the
 * previous such send (at last_ns; 0: none) was at least 10 us before now,
 * so an isolated message goes at once while a burst is left queued for the
 * owner to write in large batches (one syscall per message would cost more
 * than the wake-up it saves). Pure; exposed for tests. */
bool vg_outbox_lend_allowed(int64_t last_ns, int64_t now_ns);

/* Producer: while the owner sleeps with its socket lent and nothing queued
 * (and the lending policy allows a send now), calls write(fd, arg, &frames)
 * under the lock, so that the producer writes on the socket itself, as
 * the owner would, from memory the owner reads too (the broker's topic
 * logs): the owner does nothing but sleep until it has the lock back.
 * write returns the bytes it sent and sets the frames it completed; they
 * count as the producers' (vg_outbox_reclaim). Returns true if write ran. */
bool vg_outbox_lent_write(vg_outbox *ob, size_t (*write)(int fd, void *arg, uint64_t *frames),
                          void *arg);

/* Wakes the owner unconditionally (it has other work: a stop, a subscription). */
void vg_outbox_wake(vg_outbox *ob);

/* Refuses further puts (VG_ERR_CLOSED), ends any lending, releases waiting
 * producers, wakes the owner. */
void vg_outbox_close(vg_outbox *ob);

/* Frames dropped by vg_outbox_put_frames since creation (vg_outbox_put does
 * not drop: its caller gets VG_ERR_FULL and still holds the frame). */
uint64_t vg_outbox_dropped(vg_outbox *ob);

/* Queued plus in-flight bytes. */
size_t vg_outbox_bytes(vg_outbox *ob);

#endif
