/* What the durable log's dropped segments leave behind: each topic's next
 * sequence number, each publisher's last appended number, each durable
 * subscriber's position. Before a segment file is deleted its blocks'
 * headers are folded in here and the result is written as the data dir's
 * `state` file, so that state + the remaining segments always say what all
 * segments ever written said (store.c). Pure but for vg_ckpt_write. */
#ifndef VG_CHECKPOINT_H
#define VG_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "block.h"
#include "status.h"

typedef struct vg_ckpt vg_ckpt;

vg_ckpt *vg_ckpt_create(void);
void vg_ckpt_destroy(vg_ckpt *k);

/* Folds in the block b whose body starts with topic and, for ACK and
 * FORGET, goes on with name (name_len bytes). VG_ERR_NOMEM leaves k as it
 * was. */
vg_status vg_ckpt_apply(vg_ckpt *k, const vg_block *b, const char *topic, const char *name,
                        size_t name_len);

/* Entries held (for tests and the log line). */
size_t vg_ckpt_count(const vg_ckpt *k);

/* Writes k to fd as blocks (NEXT, PUBLISHER, ACK), leaving out publishers
 * last seen before forget_before_ms (wall clock): the dedupe window is
 * long past for them. VG_ERR_IO (errno set) or VG_ERR_NOMEM. */
vg_status vg_ckpt_write(const vg_ckpt *k, int fd, int64_t forget_before_ms);

#endif
