/* The durable log's unit on disk: a block, one run of messages of one
 * topic from one publisher (or one bookkeeping entry), with its own
 * checksums, as Kafka's record batch. Segment files and the checkpoint are
 * sequences of blocks (docs/operations.md, "The data directory").
 *
 *   0  u32 magic "VGB1"      32 i64 wall_ms (CLOCK_REALTIME at append)
 *   4  u32 body_len          40 u32 count (messages in the body)
 *   8  u64 first_seq         44 u16 topic_len
 *  16  u64 publisher         46 u8  kind, 47 u8 0
 *  24  u64 pub_last          48 u32 crc32c of the body
 *                            52 u32 crc32c of bytes 0..51
 *  56  body: topic_len bytes of topic, then (MSGS) the MSG frames as the
 *      publisher sent them, or (ACK, FORGET) a durable subscriber's name
 *
 * All integers big-endian. Pure: no I/O. */
#ifndef VG_BLOCK_H
#define VG_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#define VG_BLOCK_HEADER 56
#define VG_BLOCK_MAGIC 0x56474231u
#define VG_BLOCK_MAX_BODY (64u << 20) /* a longer body_len is damage, not a block */

typedef enum {
    VG_BLOCK_MSGS = 1,      /* count messages numbered from first_seq; publisher's pub_last */
    VG_BLOCK_ACK = 2,       /* durable `name` on topic has processed up to first_seq */
    VG_BLOCK_FORGET = 3,    /* durable `name` on topic was deleted */
    VG_BLOCK_NEXT = 4,      /* checkpoint: topic's next sequence number is first_seq */
    VG_BLOCK_PUBLISHER = 5, /* checkpoint: publisher appended up to pub_last at wall_ms */
} vg_block_kind;

typedef struct {
    vg_block_kind kind;
    uint64_t first_seq, publisher, pub_last;
    int64_t wall_ms;
    uint32_t count;
    uint32_t body_len; /* topic included */
    uint16_t topic_len;
    uint32_t body_crc;
} vg_block;

/* Writes b's header into out, with both checksums (b->body_crc given). */
void vg_block_put_header(uint8_t out[VG_BLOCK_HEADER], const vg_block *b);

typedef enum {
    VG_BLOCK_OK,
    VG_BLOCK_SHORT,      /* fewer bytes than the header or the body needs */
    VG_BLOCK_BAD_HEADER, /* not a block here: magic, header checksum or a field */
    VG_BLOCK_BAD_BODY,   /* a valid header whose body fails its checksum */
} vg_block_check;

/* Checks the block at p (avail bytes there) and fills *out from its header
 * when the header is valid (OK and BAD_BODY). */
vg_block_check vg_block_parse(const uint8_t *p, size_t avail, vg_block *out);

/* As vg_block_parse without checking the body's checksum (OK for a valid
 * header with its whole body there): for reading headers only. */
vg_block_check vg_block_parse_header(const uint8_t *p, size_t avail, vg_block *out);

/* The offset of the next valid block after from (from excluded), or avail:
 * where reading goes on after damage. */
size_t vg_block_resync(const uint8_t *p, size_t avail, size_t from);

#endif
