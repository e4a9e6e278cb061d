/* The topic logs (broker/topiclog.c): numbering, the records' bytes (read
 * back with msgpack-c), reading with partial writes across many chunks,
 * every start position, retention by bytes across topics and by age with
 * exact gaps, pins outliving a drop, allocation failure, and appenders and
 * readers on several threads (run under TSan in CI). Time is a parameter:
 * nothing here sleeps. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "frame.h"
#include "topiclog.h"

#define EPOCH 0x5eed5eedu

/* ---- helpers ---- */

static vg_logs *store(uint64_t max_bytes, uint32_t min_chunk, uint32_t max_chunk)
{
    vg_logs_cfg cfg;
    vg_logs_cfg_defaults(&cfg);
    cfg.max_bytes = max_bytes;
    cfg.min_chunk = min_chunk;
    cfg.max_chunk = max_chunk;
    vg_logs *s = vg_logs_create(&cfg, EPOCH);
    cr_assert_not_null(s);
    return s;
}

static vg_tlog *get(vg_logs *s, const char *topic)
{
    vg_tlog *t = vg_logs_get(s, topic, strlen(topic));
    cr_assert_not_null(t);
    return t;
}

/* Appends "m<k>" for k = first..first+n-1 as MSG_TYPE1 at now; checks the
 * numbers given. */
static void append_n(vg_tlog *t, uint64_t first, size_t n, int64_t now)
{
    char (*text)[24] = calloc(n, sizeof *text);
    vg_tlog_msg *m = calloc(n, sizeof *m);
    cr_assert(text != NULL && m != NULL);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(text[i], sizeof text[i], "m%llu", (unsigned long long)(first + i));
        m[i] = (vg_tlog_msg){VG_FRAME_MSG_TYPE1, text[i], (size_t)len};
    }
    uint64_t seq = 0;
    size_t done = 0;
    cr_assert_eq(vg_tlog_append(t, m, n, now, &seq, &done), VG_OK);
    cr_assert_eq(done, n);
    cr_assert_eq(seq, first, "first seq %llu, want %llu", (unsigned long long)seq,
                 (unsigned long long)first);
    free(m);
    free(text);
}

/* One record read back: its fields, checked against msgpack-c's reading. */
typedef struct {
    uint64_t type, seq;
    char topic[64];
    char payload[64];
} rec;

/* Splits the bytes of whole records in b, from *off, into out; returns how
 * many. Each body must unpack with msgpack-c to exactly
 * [type, topic str, payload bin, seq] with seq as a 9-byte uint64. */
static size_t parse_records(const vg_buf *b, size_t *off, rec *out, size_t max)
{
    size_t n = 0;
    while (n < max && b->len - *off >= VG_FRAME_HEADER) {
        uint32_t len = vg_be32(b->data + *off);
        if (b->len - *off - VG_FRAME_HEADER < len)
            break;
        const uint8_t *body = b->data + *off + VG_FRAME_HEADER;
        cr_assert(len > 9 && body[len - 9] == 0xcf, "seq is not a fixed uint64");
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t used = 0;
        cr_assert_eq(msgpack_unpack_next(&u, (const char *)body, len, &used), MSGPACK_UNPACK_SUCCESS);
        cr_assert_eq(used, len, "bytes after the record's array");
        const msgpack_object *o = &u.data;
        cr_assert_eq(o->type, MSGPACK_OBJECT_ARRAY);
        cr_assert_eq(o->via.array.size, 4);
        const msgpack_object *e = o->via.array.ptr;
        cr_assert_eq(e[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        cr_assert_eq(e[1].type, MSGPACK_OBJECT_STR);
        cr_assert_eq(e[2].type, MSGPACK_OBJECT_BIN);
        cr_assert_eq(e[3].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        rec *r = &out[n++];
        r->type = e[0].via.u64;
        r->seq = e[3].via.u64;
        cr_assert_lt(e[1].via.str.size, sizeof r->topic);
        cr_assert_lt(e[2].via.bin.size, sizeof r->payload);
        memcpy(r->topic, e[1].via.str.ptr, e[1].via.str.size);
        r->topic[e[1].via.str.size] = '\0';
        memcpy(r->payload, e[2].via.bin.ptr, e[2].via.bin.size);
        r->payload[e[2].via.bin.size] = '\0';
        msgpack_unpacked_destroy(&u);
        *off += VG_FRAME_HEADER + len;
    }
    return n;
}

/* A deterministic generator for write sizes. */
static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Reads c to the end as a socket would take it: each read offered, then
 * only part of it (up to take_max bytes; 0: all) consumed, appending what
 * was "sent" to out. Returns the gap the reads reported (from 0: none);
 * only one gap is expected per drain. */
static vg_tgap drain(vg_tcursor *c, vg_buf *out, size_t take_max, uint64_t *rng)
{
    vg_tgap gap = {0, 0};
    for (;;) {
        struct iovec iov[8];
        vg_tread r;
        vg_tlog_read(c, iov, 8, 1 << 20, &r);
        if (r.gap.from != 0) {
            cr_assert_eq(gap.from, 0, "two gaps in one drain");
            gap = r.gap;
        }
        if (r.iovcnt == 0) {
            if (r.gap.from != 0)
                continue;
            return gap;
        }
        size_t total = 0;
        for (size_t i = 0; i < r.iovcnt; i++)
            total += iov[i].iov_len;
        cr_assert_eq(total, r.bytes);
        size_t take = take_max == 0 ? total : 1 + next_rand(rng) % take_max;
        if (take > total)
            take = total;
        size_t left = take;
        for (size_t i = 0; i < r.iovcnt && left > 0; i++) {
            size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
            cr_assert_eq(vg_buf_append(out, iov[i].iov_base, k), VG_OK);
            left -= k;
        }
        vg_tcursor_consume(c, take);
    }
}

/* Checks that recs hold seqs from..to, each "m<seq>" on topic. */
static void expect_run(const rec *recs, size_t n, const char *topic, uint64_t from, uint64_t to)
{
    cr_assert_eq(n, to - from + 1, "%zu records, want %llu..%llu", n, (unsigned long long)from,
                 (unsigned long long)to);
    for (size_t i = 0; i < n; i++) {
        char want[24];
        snprintf(want, sizeof want, "m%llu", (unsigned long long)(from + i));
        cr_assert_eq(recs[i].seq, from + i);
        cr_assert_eq(recs[i].type, VG_FRAME_MSG_TYPE1);
        cr_assert_str_eq(recs[i].topic, topic);
        cr_assert_str_eq(recs[i].payload, want);
    }
}

/* ---- numbering and bytes ---- */

Test(topiclog, numbers_from_one_and_records_are_msg_frames_with_seq)
{
    vg_logs *s = store(0, 4096, 1 << 20);
    vg_tlog *t = get(s, "orders");
    cr_assert_eq(vg_tlog_next_seq(t), 1);
    cr_assert_eq(vg_tlog_first_seq(t), 1);
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_FIRST, 0, 0, &gap), VG_OK);
    cr_assert_eq(gap.from, 0);
    append_n(t, 1, 3, 10);
    append_n(t, 4, 1, 11);
    cr_assert_eq(vg_tlog_next_seq(t), 5);
    cr_assert_eq(vg_logs_epoch(s), EPOCH);
    cr_assert_eq(get(s, "orders"), t, "the same topic gives the same log");
    cr_assert_neq(get(s, "order"), t);

    vg_buf out = {0};
    uint64_t rng = 1;
    cr_assert_eq(drain(&c, &out, 0, &rng).from, 0);
    rec r[8];
    size_t off = 0;
    size_t n = parse_records(&out, &off, r, 8);
    cr_assert_eq(off, out.len);
    expect_run(r, n, "orders", 1, 4);
    cr_assert_eq(out.len, 4 * vg_frame_msg_seq_size(6, 2));

    vg_logs_stats st;
    vg_logs_get_stats(s, &st);
    cr_assert_eq(st.records, 4);
    cr_assert_eq(st.logs, 2);
    cr_assert_eq(st.dropped, 0);
    vg_buf_free(&out);
    vg_tcursor_release(&c);
    vg_logs_destroy(s);
}

Test(topiclog, epoch_zero_and_bad_chunk_sizes_are_refused)
{
    vg_logs_cfg cfg;
    vg_logs_cfg_defaults(&cfg);
    cr_assert_null(vg_logs_create(&cfg, 0));
    cfg.max_chunk = cfg.min_chunk - 1;
    cr_assert_null(vg_logs_create(&cfg, EPOCH));
}

/* ---- reading ---- */

Test(topiclog, partial_writes_across_many_small_chunks_give_the_exact_stream)
{
    /* 64-byte chunks growing to 256: a record is ~22 bytes, so thousands of
     * chunks, more than a read can pin at once. */
    vg_logs *s = store(0, 64, 256);
    vg_tlog *t = get(s, "a.b");
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_NEW, 0, 0, &gap), VG_OK);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    vg_buf out = {0};
    uint64_t seq = 1;
    for (int round = 0; round < 50; round++) {
        size_t n = 1 + next_rand(&rng) % 200;
        append_n(t, seq, n, round);
        seq += n;
        /* write sizes from 1 byte up to 3 records, so writes end inside
         * records and inside chunks */
        cr_assert_eq(drain(&c, &out, 70, &rng).from, 0);
    }
    rec *r = calloc(seq, sizeof *r);
    size_t off = 0;
    size_t n = parse_records(&out, &off, r, seq);
    cr_assert_eq(off, out.len, "the stream ends inside a record");
    expect_run(r, n, "a.b", 1, seq - 1);
    free(r);
    vg_buf_free(&out);
    vg_tcursor_release(&c);
    vg_logs_destroy(s);
}

Test(topiclog, a_read_is_bounded_by_iovecs_and_bytes_but_gives_at_least_one_chunk)
{
    vg_logs *s = store(0, 64, 64);
    vg_tlog *t = get(s, "t");
    append_n(t, 1, 100, 0);
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_FIRST, 0, 0, &gap), VG_OK);
    struct iovec iov[3];
    vg_tread r;
    vg_tlog_read(&c, iov, 3, 1 << 20, &r);
    cr_assert_eq(r.iovcnt, 3);
    uint64_t done = vg_tcursor_consume(&c, r.bytes);
    cr_assert_eq(done, r.records);
    cr_assert_eq(c.seq, 1 + r.records);
    vg_tlog_read(&c, iov, 3, 1, &r); /* one byte allowed: still one chunk's records */
    cr_assert_eq(r.iovcnt, 1);
    cr_assert_geq(r.records, 1);
    vg_tcursor_consume(&c, 0);
    vg_tcursor_release(&c);
    vg_logs_destroy(s);
}

Test(topiclog, seek_new_first_seq_and_the_refused_positions)
{
    vg_logs *s = store(0, 4096, 4096);
    vg_tlog *t = get(s, "t");
    append_n(t, 1, 10, 0);
    vg_tcursor c;
    vg_tgap gap;
    vg_buf out = {0};
    uint64_t rng = 7;
    rec r[32];
    size_t off;

    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_NEW, 0, 0, &gap), VG_OK);
    append_n(t, 11, 2, 0);
    drain(&c, &out, 0, &rng);
    off = 0;
    expect_run(r, parse_records(&out, &off, r, 32), "t", 11, 12);
    vg_tcursor_release(&c);

    out.len = 0;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_SEQ, 7, 0, &gap), VG_OK);
    cr_assert_eq(gap.from, 0);
    drain(&c, &out, 5, &rng);
    off = 0;
    expect_run(r, parse_records(&out, &off, r, 32), "t", 7, 12);
    vg_tcursor_release(&c);

    out.len = 0;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_SEQ, 13, 0, &gap), VG_OK, "the next seq is a start");
    drain(&c, &out, 0, &rng);
    cr_assert_eq(out.len, 0);
    append_n(t, 13, 1, 0);
    drain(&c, &out, 0, &rng);
    off = 0;
    expect_run(r, parse_records(&out, &off, r, 32), "t", 13, 13);
    vg_tcursor_release(&c);

    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_SEQ, 15, 0, &gap), VG_ERR_ARG, "past the end");
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_SEQ, 0, 0, &gap), VG_ERR_ARG, "seq 0");
    cr_assert_eq(vg_tlog_seek(t, &c, (vg_tstart)99, 0, 0, &gap), VG_ERR_ARG);
    vg_buf_free(&out);
    vg_logs_destroy(s);
}

Test(topiclog, seek_ago_starts_at_the_first_chunk_appended_to_since)
{
    vg_logs *s = store(0, 64, 64); /* about two records a chunk */
    vg_tlog *t = get(s, "t");
    for (uint64_t k = 1; k <= 20; k++)
        append_n(t, k, 1, (int64_t)k * 1000); /* record k at k seconds */
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_AGO, 5000, 20000, &gap), VG_OK);
    /* from 15 s on; the chunk holding 15 may start one record earlier */
    cr_assert(c.seq == 15 || c.seq == 14, "started at %llu", (unsigned long long)c.seq);
    vg_tcursor_release(&c);
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_AGO, 1000000, 20000, &gap), VG_OK);
    cr_assert_eq(c.seq, 1);
    vg_tcursor_release(&c);
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_AGO, 10, 90000, &gap), VG_OK);
    cr_assert_eq(c.seq, 21, "nothing that recent: from the next");
    vg_tcursor_release(&c);
    vg_logs_destroy(s);
}

/* ---- retention ---- */

Test(topiclog, over_budget_the_oldest_chunks_go_and_a_reader_gets_the_exact_gap)
{
    /* fixed 256-byte chunks; a budget of four */
    vg_logs *s = store(4 * 256, 256, 256);
    vg_tlog *t = get(s, "t");
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_FIRST, 0, 0, &gap), VG_OK);
    append_n(t, 1, 500, 0);
    vg_logs_stats st;
    vg_logs_get_stats(s, &st);
    cr_assert_leq(st.bytes, 4 * 256);
    cr_assert_eq(st.records + st.dropped, 500);
    uint64_t first = vg_tlog_first_seq(t);
    cr_assert_eq(first, st.dropped + 1, "dropped records are the oldest");
    cr_assert_gt(first, 1);

    vg_buf out = {0};
    uint64_t rng = 3;
    vg_tgap g = drain(&c, &out, 0, &rng);
    cr_assert_eq(g.from, 1);
    cr_assert_eq(g.to, first - 1, "gap to %llu, first retained %llu", (unsigned long long)g.to,
                 (unsigned long long)first);
    rec *r = calloc(500, sizeof *r);
    size_t off = 0;
    expect_run(r, parse_records(&out, &off, r, 500), "t", first, 500);
    vg_tcursor_release(&c);

    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_SEQ, 2, 0, &gap), VG_OK);
    cr_assert_eq(gap.from, 2);
    cr_assert_eq(gap.to, first - 1);
    cr_assert_eq(c.seq, first);
    vg_tcursor_release(&c);
    free(r);
    vg_buf_free(&out);
    vg_logs_destroy(s);
}

/* The budget is shared by all topics. What goes is the oldest chunk that
 * is not its topic's tail: a tail holds what was just published, which a
 * reader keeping up has not read yet. */
Test(topiclog, the_budget_is_shared_and_the_oldest_sealed_chunk_of_any_topic_goes_first)
{
    vg_logs *s = store(3 * 256, 256, 256);
    vg_tlog *a = get(s, "a"), *b = get(s, "b");
    append_n(a, 1, 5, 0); /* one chunk of a: its tail, the oldest chunk */
    append_n(b, 1, 5, 1); /* one of b */
    append_n(a, 6, 5, 2); /* still a's first chunk */
    /* Fill b until it has dropped chunks of its own. */
    uint64_t seq = 6;
    while (vg_tlog_first_seq(b) == 1) {
        append_n(b, seq, 1, 3);
        seq++;
        cr_assert_lt(seq, 1000);
    }
    cr_assert_eq(vg_tlog_first_seq(a), 1, "a's tail stayed, though it is the oldest chunk");
    cr_assert_gt(vg_tlog_first_seq(b), 1, "b's sealed chunk went");
    /* Appending to a seals its chunk: then it is the oldest sealed one. */
    uint64_t aseq = 11;
    while (vg_tlog_first_seq(a) == 1) {
        append_n(a, aseq, 1, 4);
        aseq++;
        cr_assert_lt(aseq, 1000);
    }
    vg_logs_destroy(s);
}

/* When every chunk is a tail, the oldest goes all the same: the budget
 * is a bound. */
Test(topiclog, the_budget_holds_when_every_chunk_is_a_tail)
{
    vg_logs *s = store(256, 256, 256);
    vg_tlog *a = get(s, "a"), *b = get(s, "b");
    append_n(a, 1, 5, 0);
    append_n(b, 1, 5, 1); /* a second chunk: over the budget, both tails */
    cr_assert_eq(vg_tlog_first_seq(a), vg_tlog_next_seq(a), "a's one chunk went");
    cr_assert_eq(vg_tlog_first_seq(b), 1);
    vg_logs_stats st;
    vg_logs_get_stats(s, &st);
    cr_assert_eq(st.chunks, 1);
    vg_logs_destroy(s);
}

Test(topiclog, a_record_partly_sent_from_a_dropped_chunk_is_finished_before_the_gap)
{
    vg_logs *s = store(2 * 256, 256, 256);
    vg_tlog *t = get(s, "t");
    append_n(t, 1, 3, 0);
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_FIRST, 0, 0, &gap), VG_OK);
    struct iovec iov[4];
    vg_tread r;
    vg_tlog_read(&c, iov, 4, 1 << 20, &r);
    vg_buf out = {0};
    cr_assert_eq(vg_buf_append(&out, iov[0].iov_base, 5), VG_OK);
    vg_tcursor_consume(&c, 5); /* 5 bytes into record 1 */
    append_n(t, 4, 100, 1);    /* the first chunk goes */
    cr_assert_gt(vg_tlog_first_seq(t), 3);

    vg_tlog_read(&c, iov, 4, 1 << 20, &r);
    cr_assert_eq(r.gap.from, 0, "the gap comes only after the record is finished");
    cr_assert_eq(r.iovcnt, 1);
    cr_assert_eq(r.records, 1);
    cr_assert_eq(vg_buf_append(&out, iov[0].iov_base, iov[0].iov_len), VG_OK);
    cr_assert_eq(vg_tcursor_consume(&c, r.bytes), 1);
    uint64_t rng = 5;
    vg_tgap g = drain(&c, &out, 0, &rng);
    uint64_t first = vg_tlog_first_seq(t);
    cr_assert_eq(g.from, 2);
    cr_assert_eq(g.to, first - 1);
    rec *rs = calloc(200, sizeof *rs);
    size_t off = 0;
    size_t n = parse_records(&out, &off, rs, 200);
    cr_assert_eq(off, out.len);
    expect_run(rs, 1, "t", 1, 1);
    expect_run(rs + 1, n - 1, "t", first, 103);
    free(rs);
    vg_buf_free(&out);
    vg_tcursor_release(&c);
    vg_logs_destroy(s);
}

Test(topiclog, a_pinned_chunk_outlives_its_drop)
{
    vg_logs *s = store(256, 256, 256);
    vg_tlog *t = get(s, "t");
    append_n(t, 1, 2, 0);
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_FIRST, 0, 0, &gap), VG_OK);
    struct iovec iov[2];
    vg_tread r;
    vg_tlog_read(&c, iov, 2, 1 << 20, &r);
    uint8_t copy[256];
    cr_assert_leq(r.bytes, sizeof copy);
    memcpy(copy, iov[0].iov_base, r.bytes);
    append_n(t, 3, 50, 0); /* drops the chunk the iovec points into */
    cr_assert_gt(vg_tlog_first_seq(t), 2);
    /* Under ASan a freed chunk would be a use-after-free here. */
    cr_assert_eq(memcmp(copy, iov[0].iov_base, r.bytes), 0);
    vg_tcursor_consume(&c, r.bytes);
    vg_tcursor_release(&c);
    vg_logs_destroy(s);
}

Test(topiclog, age_limit_drops_chunks_whose_newest_record_is_older)
{
    vg_logs_cfg cfg;
    vg_logs_cfg_defaults(&cfg);
    cfg.min_chunk = cfg.max_chunk = 64;
    cfg.max_age_ms = 10000;
    vg_logs *s = vg_logs_create(&cfg, EPOCH);
    cr_assert_not_null(s);
    vg_tlog *a = get(s, "a"), *b = get(s, "b");
    for (uint64_t k = 1; k <= 10; k++)
        append_n(a, k, 1, (int64_t)k * 1000);
    append_n(b, 1, 1, 0);
    vg_logs_expire(s, 9000); /* nothing is 10 s old */
    cr_assert_eq(vg_tlog_first_seq(a), 1);
    cr_assert_eq(vg_tlog_first_seq(b), 1);
    vg_logs_expire(s, 15500); /* records before 5.5 s: 1..5, by whole chunks */
    /* records from 5.5 s on (6..10) stay; whole chunks before them went */
    uint64_t first = vg_tlog_first_seq(a);
    cr_assert(first > 1 && first <= 6, "first %llu", (unsigned long long)first);
    cr_assert_eq(vg_tlog_first_seq(b), 2, "b's one record went");
    vg_logs_stats st;
    vg_logs_get_stats(s, &st);
    cr_assert_eq(st.dropped, first - 1 + 1);
    vg_logs_destroy(s);
}

Test(topiclog, a_chunk_that_cannot_be_allocated_appends_nothing_of_its_part)
{
    vg_logs *s = store(0, 4096, 4096);
    vg_tlog *t = get(s, "t");
    append_n(t, 1, 1, 0);
    /* Larger than any chunk can be: the allocation is refused before any
     * byte of the payload would be read. */
    vg_tlog_msg m[2] = {{VG_FRAME_MSG_TYPE1, "x", 1}, {VG_FRAME_MSG_TYPE1, NULL, (size_t)5 << 30}};
    uint64_t seq = 0;
    size_t done = 99;
    cr_assert_eq(vg_tlog_append(t, m, 2, 0, &seq, &done), VG_ERR_NOMEM);
    cr_assert_eq(done, 0);
    cr_assert_eq(vg_tlog_next_seq(t), 2, "the first message of the part did not go in alone");
    vg_logs_destroy(s);
}

/* ---- threads ---- */

#define WRITERS 2
#define READERS 2
#define PER_WRITER 20000

typedef struct {
    vg_tlog *t;
    atomic_int *writers_left;
    uint64_t rng;
    uint64_t seen, gaps_total, last;
} reader_arg;

static void *writer(void *p)
{
    reader_arg *a = p;
    for (int i = 0; i < PER_WRITER;) {
        vg_tlog_msg m[4];
        int n = 1 + (int)(next_rand(&a->rng) % 4);
        for (int k = 0; k < n; k++)
            m[k] = (vg_tlog_msg){VG_FRAME_MSG_TYPE2, "payload!", 8};
        uint64_t seq;
        size_t done;
        cr_assert_eq(vg_tlog_append(a->t, m, (size_t)n, i, &seq, &done), VG_OK);
        i += n;
    }
    atomic_fetch_sub(a->writers_left, 1);
    return NULL;
}

/* Reads until the writers are done and nothing is left; every record's seq
 * must be the one after the last, or after a gap that says so exactly. */
static void *reader(void *p)
{
    reader_arg *a = p;
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(a->t, &c, VG_TSTART_FIRST, 0, 0, &gap), VG_OK);
    uint64_t expect = c.seq;
    /* A reader thread that starts late finds the first records dropped
     * already: FIRST starts after them, and they count as missed. */
    a->gaps_total = c.seq - 1;
    vg_buf out = {0};
    size_t parsed = 0;
    for (;;) {
        int left = atomic_load(a->writers_left);
        struct iovec iov[8];
        vg_tread r;
        vg_tlog_read(&c, iov, 8, 64 * 1024, &r);
        if (r.gap.from != 0) {
            cr_assert_eq(r.gap.from, expect, "gap from %llu, expected %llu",
                         (unsigned long long)r.gap.from, (unsigned long long)expect);
            a->gaps_total += r.gap.to - r.gap.from + 1;
            expect = r.gap.to + 1;
        }
        if (r.iovcnt == 0) {
            if (left == 0 && r.gap.from == 0)
                break;
            continue;
        }
        size_t take = 1 + next_rand(&a->rng) % (r.bytes + 100);
        if (take > r.bytes)
            take = r.bytes;
        size_t rest = take;
        for (size_t i = 0; i < r.iovcnt && rest > 0; i++) {
            size_t k = iov[i].iov_len < rest ? iov[i].iov_len : rest;
            cr_assert_eq(vg_buf_append(&out, iov[i].iov_base, k), VG_OK);
            rest -= k;
        }
        vg_tcursor_consume(&c, take);
        /* check whole records as they complete, then forget them */
        while (out.len - parsed >= VG_FRAME_HEADER &&
               out.len - parsed - VG_FRAME_HEADER >= vg_be32(out.data + parsed)) {
            uint32_t len = vg_be32(out.data + parsed);
            const uint8_t *q = out.data + parsed + VG_FRAME_HEADER + len - 8;
            uint64_t seq = 0;
            for (int k = 0; k < 8; k++)
                seq = seq << 8 | q[k];
            cr_assert_eq(seq, expect, "record %llu, expected %llu", (unsigned long long)seq,
                         (unsigned long long)expect);
            expect++;
            a->seen++;
            parsed += VG_FRAME_HEADER + len;
        }
        if (parsed == out.len) {
            out.len = 0;
            parsed = 0;
        }
    }
    a->last = expect - 1;
    vg_buf_free(&out);
    vg_tcursor_release(&c);
    return NULL;
}

Test(topiclog, writers_and_readers_on_threads_see_every_record_once_or_an_exact_gap, .timeout = 60)
{
    /* A budget of about 40 KiB of 1 KiB chunks: readers fall behind and
     * get gaps while writers append. */
    vg_logs *s = store(40 * 1024, 1024, 1024);
    vg_tlog *t = get(s, "t");
    atomic_int left = WRITERS;
    reader_arg w[WRITERS], r[READERS];
    pthread_t tw[WRITERS], tr[READERS];
    for (int i = 0; i < READERS; i++) {
        r[i] = (reader_arg){.t = t, .writers_left = &left, .rng = 11u + (uint64_t)i};
        cr_assert_eq(pthread_create(&tr[i], NULL, reader, &r[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (reader_arg){.t = t, .writers_left = &left, .rng = 101u + (uint64_t)i};
        cr_assert_eq(pthread_create(&tw[i], NULL, writer, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(tw[i], NULL);
    for (int i = 0; i < READERS; i++)
        pthread_join(tr[i], NULL);
    uint64_t total = WRITERS * PER_WRITER;
    cr_assert_eq(vg_tlog_next_seq(t), total + 1);
    for (int i = 0; i < READERS; i++) {
        cr_assert_eq(r[i].last, total, "reader %d ended at %llu", i, (unsigned long long)r[i].last);
        cr_assert_eq(r[i].seen + r[i].gaps_total, total, "reader %d: seen + missed", i);
    }
    vg_logs_stats st;
    vg_logs_get_stats(s, &st);
    cr_assert_leq(st.bytes, 40 * 1024);
    cr_assert_eq(st.records + st.dropped, total);
    vg_logs_destroy(s);
}

/* ---- the durable log's held records and recovery's holes ---- */

/* Appends "m<k>" for k = first..first+n-1 through vg_tlog_restore. */
static void restore_n(vg_tlog *t, uint64_t first, size_t n)
{
    char (*text)[24] = calloc(n, sizeof *text);
    vg_tlog_msg *m = calloc(n, sizeof *m);
    cr_assert(text != NULL && m != NULL);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(text[i], sizeof text[i], "m%llu", (unsigned long long)(first + i));
        m[i] = (vg_tlog_msg){VG_FRAME_MSG_TYPE1, text[i], (size_t)len};
    }
    cr_assert_eq(vg_tlog_restore(t, first, m, n, 0), VG_OK);
    free(m);
    free(text);
}

Test(topiclog, held_records_reach_readers_only_once_released)
{
    vg_logs_cfg cfg;
    vg_logs_cfg_defaults(&cfg);
    cfg.min_chunk = 256; /* several chunks: release walks across them */
    cfg.max_chunk = 256;
    cfg.held = true;
    vg_logs *s = vg_logs_create(&cfg, EPOCH);
    cr_assert_not_null(s);
    vg_tlog *t = get(s, "held");
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_FIRST, 0, 0, &gap), VG_OK);
    append_n(t, 1, 40, 0);
    cr_assert_eq(vg_tlog_ready_seq(t), 1);
    vg_buf out = {0};
    uint64_t rng = 7;
    cr_assert_eq(drain(&c, &out, 0, &rng).from, 0);
    cr_assert_eq(out.len, 0, "held records were offered");
    /* NEW starts at the first held record; SEQ past it is refused. */
    vg_tcursor n;
    cr_assert_eq(vg_tlog_seek(t, &n, VG_TSTART_NEW, 0, 0, &gap), VG_OK);
    cr_assert_eq(n.seq, 1);
    vg_tcursor_release(&n);
    cr_assert_eq(vg_tlog_seek(t, &n, VG_TSTART_SEQ, 2, 0, &gap), VG_ERR_ARG);
    vg_tlog_release(t, 18); /* 1..17 */
    cr_assert_eq(vg_tlog_ready_seq(t), 18);
    cr_assert_eq(drain(&c, &out, 5, &rng).from, 0);
    rec recs[64];
    size_t off = 0;
    size_t got = parse_records(&out, &off, recs, 64);
    expect_run(recs, got, "held", 1, 17);
    cr_assert_eq(off, out.len, "a record offered in part");
    vg_tlog_release(t, UINT64_MAX);
    cr_assert_eq(drain(&c, &out, 3, &rng).from, 0);
    got = parse_records(&out, &off, recs + 17, 64 - 17);
    expect_run(recs, 17 + got, "held", 1, 40);
    vg_tcursor_release(&c);
    vg_buf_free(&out);
    vg_logs_destroy(s);
}

Test(topiclog, a_hole_left_by_recovery_is_a_gap_to_readers_crossing_or_starting_in_it)
{
    vg_logs *s = store(0, 4096, 4096);
    vg_tlog *t = get(s, "holes");
    restore_n(t, 1, 10);
    restore_n(t, 21, 10);  /* 11..20 were damaged */
    restore_n(t, 25, 10);  /* 25..30 are there already: only 31..34 go in */
    vg_tlog_skip_to(t, 40); /* 35..39 never stored */
    append_n(t, 40, 5, 0);
    cr_assert_eq(vg_tlog_next_seq(t), 45);
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_FIRST, 0, 0, &gap), VG_OK);
    vg_tgap gaps[4];
    size_t ngaps = 0;
    vg_buf out = {0};
    uint64_t rng = 3;
    for (;;) { /* as drain, which expects one gap at most */
        struct iovec iov[8];
        vg_tread r;
        vg_tlog_read(&c, iov, 8, 1 << 20, &r);
        if (r.gap.from != 0) {
            cr_assert_lt(ngaps, 4);
            gaps[ngaps++] = r.gap;
            vg_tcursor_consume(&c, 0);
            continue;
        }
        if (r.iovcnt == 0)
            break;
        size_t take = 1 + next_rand(&rng) % 7, left = take < r.bytes ? take : r.bytes;
        size_t sent = left;
        for (size_t i = 0; i < r.iovcnt && left > 0; i++) {
            size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
            cr_assert_eq(vg_buf_append(&out, iov[i].iov_base, k), VG_OK);
            left -= k;
        }
        vg_tcursor_consume(&c, sent);
    }
    cr_assert_eq(ngaps, 2);
    cr_assert(gaps[0].from == 11 && gaps[0].to == 20, "gap %llu..%llu",
              (unsigned long long)gaps[0].from, (unsigned long long)gaps[0].to);
    cr_assert(gaps[1].from == 35 && gaps[1].to == 39);
    rec recs[64];
    size_t off = 0, got = parse_records(&out, &off, recs, 64);
    cr_assert_eq(got, 10 + 14 + 5);
    expect_run(recs, 10, "holes", 1, 10);
    expect_run(recs + 10, 14, "holes", 21, 34);
    expect_run(recs + 24, 5, "holes", 40, 44);
    vg_tcursor_release(&c);
    /* Starting inside a hole: the gap to its end, then the records. */
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_SEQ, 13, 0, &gap), VG_OK);
    cr_assert(gap.from == 13 && gap.to == 20, "gap %llu..%llu", (unsigned long long)gap.from,
              (unsigned long long)gap.to);
    cr_assert_eq(c.seq, 21);
    vg_tcursor_release(&c);
    vg_buf_free(&out);
    vg_logs_destroy(s);
}
