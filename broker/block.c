#include "block.h"

#include <stdbool.h>
#include <string.h>

#include "crc32c.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

void vg_block_put_header(uint8_t out[VG_BLOCK_HEADER], const vg_block *b)
{
    put32(out, VG_BLOCK_MAGIC);
    put32(out + 4, b->body_len);
    put64(out + 8, b->first_seq);
    put64(out + 16, b->publisher);
    put64(out + 24, b->pub_last);
    put64(out + 32, (uint64_t)b->wall_ms);
    put32(out + 40, b->count);
    out[44] = (uint8_t)(b->topic_len >> 8);
    out[45] = (uint8_t)b->topic_len;
    out[46] = (uint8_t)b->kind;
    out[47] = 0;
    put32(out + 48, b->body_crc);
    put32(out + 52, vg_crc32c(0, out, 52));
}

/* The header at p, which has VG_BLOCK_HEADER bytes: valid or not. */
static bool header_ok(const uint8_t *p, vg_block *out)
{
    if (get32(p) != VG_BLOCK_MAGIC || get32(p + 52) != vg_crc32c(0, p, 52))
        return false;
    *out = (vg_block){
        .kind = (vg_block_kind)p[46],
        .body_len = get32(p + 4),
        .first_seq = get64(p + 8),
        .publisher = get64(p + 16),
        .pub_last = get64(p + 24),
        .wall_ms = (int64_t)get64(p + 32),
        .count = get32(p + 40),
        .topic_len = (uint16_t)(p[44] << 8 | p[45]),
        .body_crc = get32(p + 48),
    };
    return out->kind >= VG_BLOCK_MSGS && out->kind <= VG_BLOCK_PUBLISHER && p[47] == 0 &&
           out->body_len <= VG_BLOCK_MAX_BODY && out->topic_len <= out->body_len;
}

vg_block_check vg_block_parse_header(const uint8_t *p, size_t avail, vg_block *out)
{
    if (avail < VG_BLOCK_HEADER)
        return VG_BLOCK_SHORT;
    if (!header_ok(p, out))
        return VG_BLOCK_BAD_HEADER;
    return avail - VG_BLOCK_HEADER < out->body_len ? VG_BLOCK_SHORT : VG_BLOCK_OK;
}

vg_block_check vg_block_parse(const uint8_t *p, size_t avail, vg_block *out)
{
    if (avail < VG_BLOCK_HEADER)
        return VG_BLOCK_SHORT;
    if (!header_ok(p, out))
        return VG_BLOCK_BAD_HEADER;
    if (avail - VG_BLOCK_HEADER < out->body_len)
        return VG_BLOCK_SHORT;
    if (vg_crc32c(0, p + VG_BLOCK_HEADER, out->body_len) != out->body_crc)
        return VG_BLOCK_BAD_BODY;
    return VG_BLOCK_OK;
}

size_t vg_block_resync(const uint8_t *p, size_t avail, size_t from)
{
    static const uint8_t magic[4] = {0x56, 0x47, 0x42, 0x31};
    for (size_t off = from + 1; off + VG_BLOCK_HEADER <= avail; off++) {
        const uint8_t *m = memchr(p + off, magic[0], avail - off);
        if (m == NULL)
            break;
        off = (size_t)(m - p);
        vg_block b;
        if (off + VG_BLOCK_HEADER <= avail && memcmp(m, magic, 4) == 0 &&
            vg_block_parse(m, avail - off, &b) == VG_BLOCK_OK)
            return off;
    }
    return avail;
}
