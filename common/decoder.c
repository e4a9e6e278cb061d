#include "decoder.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Reads start small, enough for handshakes and heartbeats, so that thousands
 * of idle connections each touch well under a page; the first read that
 * fills the buffer switches to full-size chunks for the life of the
 * connection. */
#define SMALL_CHUNK 1024

struct vg_decoder {
    uint8_t *buf;
    size_t cap;
    size_t rpos; /* next unparsed byte */
    size_t wpos; /* end of received bytes */
    size_t chunk;
    size_t max_frame;
    size_t offered; /* room offered by the last vg_decoder_space */
    bool hot;       /* a read has filled the buffer: use full chunks */
};

vg_decoder *vg_decoder_create(size_t read_chunk, size_t max_frame)
{
    vg_decoder *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->chunk = read_chunk < 64 ? 64 : read_chunk;
    d->max_frame = max_frame;
    return d;
}

void vg_decoder_destroy(vg_decoder *d)
{
    if (d == NULL)
        return;
    free(d->buf);
    free(d);
}

void vg_decoder_reset(vg_decoder *d, size_t max_frame)
{
    d->rpos = d->wpos = 0;
    d->max_frame = max_frame;
}

void vg_decoder_set_max_frame(vg_decoder *d, size_t max_frame) { d->max_frame = max_frame; }

size_t vg_decoder_pending(const vg_decoder *d) { return d->wpos - d->rpos; }

static vg_status resize(vg_decoder *d, size_t cap)
{
    uint8_t *p = realloc(d->buf, cap);
    if (p == NULL)
        return VG_ERR_NOMEM;
    d->buf = p;
    d->cap = cap;
    return VG_OK;
}

vg_status vg_decoder_space(vg_decoder *d, uint8_t **space, size_t *avail)
{
    size_t held = d->wpos - d->rpos;
    /* How much of the stream must fit from rpos: a chunk, or the whole frame in
     * progress when its length is known (already checked against max_frame). */
    size_t chunk = d->hot || d->chunk < SMALL_CHUNK ? d->chunk : SMALL_CHUNK;
    size_t need = chunk;
    if (held >= VG_FRAME_HEADER) {
        size_t body = vg_be32(d->buf + d->rpos);
        if (body <= d->max_frame && VG_FRAME_HEADER + body > need)
            need = VG_FRAME_HEADER + body; /* an oversized one is refused by next() instead */
    }

    if (held == 0) {
        d->rpos = d->wpos = 0;
        if (d->cap > chunk) { /* a large frame has passed: give the memory back */
            free(d->buf);
            d->buf = NULL;
            d->cap = 0;
        }
    } else if (d->rpos > 0 && (d->cap - d->wpos < chunk / 4 || d->rpos + need > d->cap)) {
        memmove(d->buf, d->buf + d->rpos, held);
        d->rpos = 0;
        d->wpos = held;
    }
    if (d->rpos + need > d->cap && resize(d, d->rpos + need) != VG_OK)
        return VG_ERR_NOMEM;
    if (d->cap == d->wpos && resize(d, d->cap + chunk) != VG_OK)
        return VG_ERR_NOMEM;
    *space = d->buf + d->wpos;
    *avail = d->offered = d->cap - d->wpos;
    return VG_OK;
}

void vg_decoder_commit(vg_decoder *d, size_t n)
{
    d->wpos += n;
    if (n == d->offered && n > 0)
        d->hot = true; /* there was more than we offered room for */
}

vg_status vg_decoder_next(vg_decoder *d, vg_frame *f, const char **why)
{
    size_t held = d->wpos - d->rpos;
    if (held < VG_FRAME_HEADER)
        return VG_AGAIN;
    const uint8_t *p = d->buf + d->rpos;
    size_t len = vg_be32(p);
    if (len == 0) {
        *why = "empty frame";
        return VG_ERR_MALFORMED;
    }
    if (len > d->max_frame) {
        *why = "declared frame length exceeds the maximum";
        return VG_ERR_TOO_LARGE;
    }
    if (held - VG_FRAME_HEADER < len)
        return VG_AGAIN;
    vg_status st = vg_frame_parse(p + VG_FRAME_HEADER, len, f, why);
    if (st != VG_OK)
        return st;
    f->raw = p;
    f->raw_len = VG_FRAME_HEADER + len;
    d->rpos += f->raw_len;
    return VG_OK;
}

vg_status vg_decoder_feed(vg_decoder *d, const void *bytes, size_t n)
{
    const uint8_t *src = bytes;
    while (n > 0) {
        uint8_t *space;
        size_t avail;
        vg_status st = vg_decoder_space(d, &space, &avail);
        if (st != VG_OK)
            return st;
        size_t k = avail < n ? avail : n;
        memcpy(space, src, k);
        vg_decoder_commit(d, k);
        src += k;
        n -= k;
    }
    return VG_OK;
}
