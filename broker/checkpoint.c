#include "checkpoint.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "crc32c.h"

/* One entry: kind, then the key's bytes (topic; publisher as 8 bytes;
 * topic NUL name for a durable), and its numbers. */
typedef struct {
    uint8_t *key; /* NULL: an empty slot */
    uint32_t key_len;
    uint16_t topic_len; /* of the key's topic part (ACK) */
    vg_block_kind kind;
    uint64_t value;     /* next seq, pub_last or acked */
    int64_t wall_ms;
    bool gone;          /* a FORGET: kept as a tombstone until the table grows */
} entry;

struct vg_ckpt {
    entry *slots;
    size_t cap, used; /* linear probing; cap a power of two */
};

vg_ckpt *vg_ckpt_create(void)
{
    vg_ckpt *k = calloc(1, sizeof *k);
    if (k == NULL)
        return NULL;
    k->cap = 64;
    k->slots = calloc(k->cap, sizeof *k->slots);
    if (k->slots == NULL) {
        free(k);
        return NULL;
    }
    return k;
}

void vg_ckpt_destroy(vg_ckpt *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->cap; i++)
        free(k->slots[i].key);
    free(k->slots);
    free(k);
}

static uint64_t hash(vg_block_kind kind, const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static entry *find(vg_ckpt *k, vg_block_kind kind, const uint8_t *key, size_t len)
{
    size_t i = hash(kind, key, len) & (k->cap - 1);
    for (;; i = (i + 1) & (k->cap - 1)) {
        entry *e = &k->slots[i];
        if (e->key == NULL || (e->kind == kind && e->key_len == len && memcmp(e->key, key, len) == 0))
            return e;
    }
}

/* Doubles the table once it is half full. */
static bool grow(vg_ckpt *k)
{
    if (k->used * 2 < k->cap)
        return true;
    vg_ckpt n = {.cap = k->cap * 2};
    n.slots = calloc(n.cap, sizeof *n.slots);
    if (n.slots == NULL)
        return false;
    for (size_t i = 0; i < k->cap; i++) {
        entry *e = &k->slots[i];
        if (e->key == NULL)
            continue;
        if (e->gone) {
            free(e->key);
            continue;
        }
        *find(&n, e->kind, e->key, e->key_len) = *e;
        n.used++;
    }
    free(k->slots);
    *k = n;
    return true;
}

vg_status vg_ckpt_apply(vg_ckpt *k, const vg_block *b, const char *topic, const char *name,
                        size_t name_len)
{
    uint8_t pub[8];
    const uint8_t *key = (const uint8_t *)topic;
    size_t len = b->topic_len;
    vg_block_kind kind = b->kind;
    uint64_t value;
    uint8_t *joined = NULL;
    switch (b->kind) {
    case VG_BLOCK_MSGS:
        if (b->publisher != 0) { /* the publisher's number, then the topic's */
            vg_block p = *b;
            p.kind = VG_BLOCK_PUBLISHER;
            if (vg_ckpt_apply(k, &p, topic, NULL, 0) != VG_OK)
                return VG_ERR_NOMEM;
        }
        kind = VG_BLOCK_NEXT;
        value = b->first_seq + b->count;
        break;
    case VG_BLOCK_NEXT: value = b->first_seq; break;
    case VG_BLOCK_PUBLISHER:
        for (int i = 0; i < 8; i++)
            pub[i] = (uint8_t)(b->publisher >> (56 - 8 * i));
        key = pub;
        len = 8;
        value = b->pub_last;
        break;
    case VG_BLOCK_ACK:
    case VG_BLOCK_FORGET:
        kind = VG_BLOCK_ACK;
        len = b->topic_len + 1 + name_len;
        joined = malloc(len);
        if (joined == NULL)
            return VG_ERR_NOMEM;
        memcpy(joined, topic, b->topic_len);
        joined[b->topic_len] = 0;
        memcpy(joined + b->topic_len + 1, name, name_len);
        key = joined;
        value = b->first_seq;
        break;
    default: return VG_OK;
    }
    if (!grow(k)) {
        free(joined);
        return VG_ERR_NOMEM;
    }
    entry *e = find(k, kind, key, len);
    if (e->key == NULL) {
        e->key = malloc(len ? len : 1);
        if (e->key == NULL) {
            free(joined);
            return VG_ERR_NOMEM;
        }
        memcpy(e->key, key, len);
        e->key_len = (uint32_t)len;
        e->kind = kind;
        e->topic_len = b->topic_len;
        e->gone = true; /* set below */
        e->value = 0;
        k->used++;
    }
    free(joined);
    if (b->kind == VG_BLOCK_FORGET) {
        e->gone = true;
        return VG_OK;
    }
    /* A durable deleted and made again starts afresh; numbers otherwise
     * only grow. */
    if (e->gone || value > e->value)
        e->value = value;
    e->gone = false;
    if (b->wall_ms > e->wall_ms)
        e->wall_ms = b->wall_ms;
    return VG_OK;
}

size_t vg_ckpt_count(const vg_ckpt *k)
{
    size_t n = 0;
    for (size_t i = 0; i < k->cap; i++)
        n += k->slots[i].key != NULL && !k->slots[i].gone;
    return n;
}

vg_status vg_ckpt_write(const vg_ckpt *k, int fd, int64_t forget_before_ms)
{
    vg_buf out = {0};
    vg_status st = VG_OK;
    for (size_t i = 0; i < k->cap && st == VG_OK; i++) {
        const entry *e = &k->slots[i];
        if (e->key == NULL || e->gone)
            continue;
        if (e->kind == VG_BLOCK_PUBLISHER && e->wall_ms < forget_before_ms)
            continue;
        vg_block b = {.kind = e->kind, .wall_ms = e->wall_ms};
        const uint8_t *body = e->key;
        size_t body_len = e->key_len;
        switch (e->kind) {
        case VG_BLOCK_NEXT: b.first_seq = e->value; b.topic_len = (uint16_t)e->key_len; break;
        case VG_BLOCK_PUBLISHER:
            for (int j = 0; j < 8; j++)
                b.publisher = b.publisher << 8 | e->key[j];
            b.pub_last = e->value;
            body_len = 0;
            break;
        default: /* ACK: topic, then name (the NUL between them left out) */
            b.first_seq = e->value;
            b.topic_len = e->topic_len;
            break;
        }
        uint8_t hdr[VG_BLOCK_HEADER];
        if (e->kind == VG_BLOCK_ACK) {
            b.body_len = (uint32_t)(e->key_len - 1);
            b.body_crc = vg_crc32c(vg_crc32c(0, body, e->topic_len), body + e->topic_len + 1,
                                   e->key_len - e->topic_len - 1);
            vg_block_put_header(hdr, &b);
            st = vg_buf_append(&out, hdr, sizeof hdr);
            if (st == VG_OK)
                st = vg_buf_append(&out, body, e->topic_len);
            if (st == VG_OK)
                st = vg_buf_append(&out, body + e->topic_len + 1, e->key_len - e->topic_len - 1);
        } else {
            b.body_len = (uint32_t)body_len;
            b.body_crc = vg_crc32c(0, body, body_len);
            vg_block_put_header(hdr, &b);
            st = vg_buf_append(&out, hdr, sizeof hdr);
            if (st == VG_OK)
                st = vg_buf_append(&out, body, body_len);
        }
    }
    for (size_t off = 0; st == VG_OK && off < out.len;) {
        ssize_t w = write(fd, out.data + off, out.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            st = VG_ERR_IO;
            break;
        }
        off += (size_t)w;
    }
    vg_buf_free(&out);
    return st;
}
