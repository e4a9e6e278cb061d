/* Reading a topic log with cursors (topiclog.h): seek, read without the
 * log's lock from pinned chunks, consume, release. */
#include "topiclog_internal.h"

#include <string.h>

/* Offset of record seq in ch, which holds it. */
static uint32_t offset_of(const vg_chunk *ch, uint64_t seq)
{
    uint32_t off = 0;
    for (uint64_t k = ch->first_seq; k < seq; k++)
        off += vg_chunk_record_len(ch, off);
    return off;
}

/* Puts c on record c->seq, or after the last record when c->seq is next,
 * pinning its chunk; a c->seq below the oldest retained record moves to it
 * and reports the range skipped. Under t->mu. */
static void locate(vg_tlog *t, vg_tcursor *c, vg_tgap *gap)
{
    if (t->head != NULL && c->seq < t->head->first_seq) {
        *gap = (vg_tgap){c->seq, t->head->first_seq - 1};
        c->seq = t->head->first_seq;
    } else if (t->head == NULL && c->seq < t->next_seq) {
        *gap = (vg_tgap){c->seq, t->next_seq - 1};
        c->seq = t->next_seq;
    }
    c->at = NULL;
    c->off = c->into = 0;
    for (vg_chunk *ch = t->head; ch != NULL; ch = ch->next) {
        if (c->seq < ch->first_seq + ch->count || ch->next == NULL) {
            if (c->seq < ch->first_seq) { /* in a hole: what was never stored */
                *gap = (vg_tgap){c->seq, ch->first_seq - 1};
                c->seq = ch->first_seq;
            }
            c->at = ch;
            c->off = c->seq < ch->first_seq + ch->count ? offset_of(ch, c->seq) : ch->len;
            vg_chunk_pin(ch);
            return;
        }
    }
}

vg_status vg_tlog_seek(vg_tlog *t, vg_tcursor *c, vg_tstart start, uint64_t value,
                       int64_t now_ms, vg_tgap *gap)
{
    memset(c, 0, sizeof *c);
    *gap = (vg_tgap){0, 0};
    c->log = t;
    pthread_mutex_lock(&t->mu);
    uint64_t first = t->head != NULL ? t->head->first_seq : t->next_seq;
    switch (start) {
    case VG_TSTART_NEW: c->seq = t->ready_seq; break;
    case VG_TSTART_FIRST: c->seq = first; break;
    case VG_TSTART_SEQ:
        if (value == 0 || value > t->ready_seq) {
            pthread_mutex_unlock(&t->mu);
            return VG_ERR_ARG;
        }
        c->seq = value;
        break;
    case VG_TSTART_AGO:
        c->seq = t->ready_seq;
        for (vg_chunk *ch = t->head; ch != NULL; ch = ch->next) {
            if (ch->ready_count > 0 && ch->last_ms >= now_ms - (int64_t)value) {
                c->seq = ch->first_seq;
                break;
            }
        }
        break;
    default: pthread_mutex_unlock(&t->mu); return VG_ERR_ARG;
    }
    locate(t, c, gap);
    pthread_mutex_unlock(&t->mu);
    return VG_OK;
}

static void release_ahead(vg_tcursor *c)
{
    for (unsigned i = 0; i < c->nahead; i++)
        vg_chunk_unpin(c->ahead[i]);
    c->nahead = 0;
}

void vg_tlog_read(vg_tcursor *c, struct iovec *iov, size_t iovmax, size_t max_bytes,
                  vg_tread *out)
{
    vg_tlog *t = c->log;
    *out = (vg_tread){0};
    release_ahead(c);
    if (iovmax == 0)
        return;
    pthread_mutex_lock(&t->mu);
    if (c->at != NULL && c->at->dropped) {
        if (c->into > 0) {
            /* A record partly sent must be finished, or the stream breaks;
             * the pin keeps its bytes. The gap comes with the next read. */
            uint32_t len = vg_chunk_record_len(c->at, c->off);
            iov[0] = (struct iovec){c->at->data + c->off + c->into, len - c->into};
            c->at_end = c->off + len;
            *out = (vg_tread){.iovcnt = 1, .bytes = len - c->into, .records = 1,
                              .partial = len - c->into};
            pthread_mutex_unlock(&t->mu);
            return;
        }
        vg_chunk_unpin(c->at);
        c->at = NULL;
    }
    if (c->at == NULL)
        locate(t, c, &out->gap);
    if (c->at == NULL) {
        pthread_mutex_unlock(&t->mu);
        return;
    }
    vg_chunk *ch = c->at;
    if (c->into == 0 && c->off == ch->len && ch->ready_count == ch->count && ch->next != NULL &&
        ch->next->first_seq > c->seq) {
        /* At the end of a chunk before a hole: report it, go past it. */
        out->gap = (vg_tgap){c->seq, ch->next->first_seq - 1};
        vg_chunk *next = ch->next;
        vg_chunk_pin(next);
        vg_chunk_unpin(ch);
        c->at = next;
        c->off = c->at_end = 0;
        c->seq = next->first_seq;
        pthread_mutex_unlock(&t->mu);
        return;
    }
    uint32_t pos = c->off + c->into;
    if (c->into > 0 && c->off < ch->len)
        out->partial = vg_chunk_record_len(ch, c->off) - c->into;
    uint64_t seq = c->seq; /* of the record at pos's start */
    for (;;) {
        if (pos < ch->ready_len) {
            iov[out->iovcnt++] = (struct iovec){ch->data + pos, ch->ready_len - pos};
            out->bytes += ch->ready_len - pos;
            out->records += ch->first_seq + ch->ready_count - seq;
        }
        if (ch == c->at)
            c->at_end = pos > ch->ready_len ? pos : ch->ready_len;
        else
            c->ahead_end[c->nahead - 1] = ch->ready_len;
        seq = ch->first_seq + ch->ready_count;
        if (ch->ready_count < ch->count || ch->next == NULL || ch->next->first_seq != seq ||
            out->iovcnt == iovmax || out->bytes >= max_bytes || c->nahead == VG_TCURSOR_PINS)
            break;
        ch = ch->next;
        vg_chunk_pin(ch);
        c->ahead[c->nahead++] = ch;
        pos = 0;
    }
    pthread_mutex_unlock(&t->mu);
}

uint64_t vg_tcursor_consume(vg_tcursor *c, size_t n)
{
    uint64_t done = 0;
    unsigned next = 0; /* the ahead chunk after at */
    while (c->at != NULL) {
        if (c->off + c->into == c->at_end) {
            if (next == c->nahead)
                break; /* at the end of what was offered */
            vg_chunk_unpin(c->at);
            c->at = c->ahead[next];
            c->at_end = c->ahead_end[next];
            next++;
            c->off = c->into = 0;
            continue;
        }
        if (n == 0)
            break;
        uint32_t left = vg_chunk_record_len(c->at, c->off) - c->into;
        if (n < left) {
            c->into += (uint32_t)n;
            n = 0;
            break;
        }
        n -= left;
        c->off += c->into + left;
        c->into = 0;
        c->seq++;
        done++;
    }
    for (; next < c->nahead; next++)
        vg_chunk_unpin(c->ahead[next]);
    c->nahead = 0;
    return done;
}

void vg_tcursor_release(vg_tcursor *c)
{
    release_ahead(c);
    if (c->at != NULL)
        vg_chunk_unpin(c->at);
    c->at = NULL;
}
