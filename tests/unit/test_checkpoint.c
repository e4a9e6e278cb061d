/* The checkpoint of removed segments (broker/checkpoint.c): what each kind
 * of block folds into, numbers that only grow, a deleted durable that
 * starts afresh, and vg_ckpt_write's blocks parsed back with
 * vg_block_parse, entry by entry, with old publishers left out; then a
 * table grown to 10,000 topics. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "checkpoint.h"

/* ---- helpers ---- */

static vg_ckpt *make(void)
{
    vg_ckpt *k = vg_ckpt_create();
    cr_assert_not_null(k);
    return k;
}

static void apply(vg_ckpt *k, vg_block b, const char *topic, const char *name)
{
    b.topic_len = (uint16_t)strlen(topic);
    size_t nl = name != NULL ? strlen(name) : 0;
    b.body_len = (uint32_t)(b.topic_len + nl);
    cr_assert_eq(vg_ckpt_apply(k, &b, topic, name, nl), VG_OK);
}

static void msgs(vg_ckpt *k, const char *topic, uint64_t first, uint32_t count, uint64_t pub,
                 uint64_t pub_last, int64_t wall)
{
    apply(k, (vg_block){.kind = VG_BLOCK_MSGS, .first_seq = first, .count = count,
                        .publisher = pub, .pub_last = pub_last, .wall_ms = wall},
          topic, NULL);
}

static void durable(vg_ckpt *k, vg_block_kind kind, const char *topic, const char *name,
                    uint64_t acked)
{
    apply(k, (vg_block){.kind = kind, .first_seq = acked, .wall_ms = 5}, topic, name);
}

/* One block read back. */
typedef struct {
    vg_block_kind kind;
    char topic[64], name[64];
    uint64_t first_seq, publisher, pub_last;
    int64_t wall_ms;
} got_entry;

typedef struct {
    got_entry *v;
    size_t n;
} got;

/* vg_ckpt_write into a temporary file, then every block of it parsed back:
 * each must be OK and the file must end at a block's end. */
static got written(const vg_ckpt *k, int64_t forget_before)
{
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    int fd = fileno(f);
    cr_assert_eq(vg_ckpt_write(k, fd, forget_before), VG_OK);
    off_t size = lseek(fd, 0, SEEK_END);
    cr_assert_geq(size, 0);
    uint8_t *p = malloc((size_t)size + 1);
    cr_assert_not_null(p);
    cr_assert_eq(pread(fd, p, (size_t)size, 0), size);
    fclose(f);
    got g = {0};
    size_t cap = 0;
    for (size_t off = 0; off < (size_t)size;) {
        vg_block b;
        cr_assert_eq(vg_block_parse(p + off, (size_t)size - off, &b), VG_BLOCK_OK,
                     "block at %zu", off);
        cr_assert(b.kind == VG_BLOCK_NEXT || b.kind == VG_BLOCK_PUBLISHER ||
                  b.kind == VG_BLOCK_ACK, "a checkpoint holds NEXT, PUBLISHER and ACK, not %d",
                  b.kind);
        if (g.n == cap) {
            cap = cap ? cap * 2 : 16;
            g.v = realloc(g.v, cap * sizeof *g.v);
            cr_assert_not_null(g.v);
        }
        got_entry *e = &g.v[g.n++];
        memset(e, 0, sizeof *e);
        e->kind = b.kind;
        e->first_seq = b.first_seq;
        e->publisher = b.publisher;
        e->pub_last = b.pub_last;
        e->wall_ms = b.wall_ms;
        cr_assert_eq(b.count, 0);
        const uint8_t *body = p + off + VG_BLOCK_HEADER;
        cr_assert_lt(b.topic_len, sizeof e->topic);
        cr_assert_lt(b.body_len - b.topic_len, sizeof e->name);
        memcpy(e->topic, body, b.topic_len);
        memcpy(e->name, body + b.topic_len, b.body_len - b.topic_len);
        if (b.kind == VG_BLOCK_NEXT)
            cr_assert_eq(b.topic_len, b.body_len, "NEXT: the body is the topic");
        if (b.kind == VG_BLOCK_PUBLISHER)
            cr_assert_eq(b.body_len, 0, "PUBLISHER: no body");
        off += VG_BLOCK_HEADER + b.body_len;
    }
    free(p);
    return g;
}

static const got_entry *find(const got *g, vg_block_kind kind, const char *topic,
                             const char *name, uint64_t publisher)
{
    const got_entry *hit = NULL;
    for (size_t i = 0; i < g->n; i++) {
        const got_entry *e = &g->v[i];
        if (e->kind != kind)
            continue;
        bool same = kind == VG_BLOCK_PUBLISHER
                        ? e->publisher == publisher
                        : strcmp(e->topic, topic) == 0 &&
                              (kind != VG_BLOCK_ACK || strcmp(e->name, name) == 0);
        if (same) {
            cr_assert_null(hit, "two entries for one key");
            hit = e;
        }
    }
    return hit;
}

static uint64_t next_of(const got *g, const char *topic)
{
    const got_entry *e = find(g, VG_BLOCK_NEXT, topic, NULL, 0);
    cr_assert_not_null(e, "no NEXT for %s", topic);
    return e->first_seq;
}

static uint64_t acked_of(const got *g, const char *topic, const char *name)
{
    const got_entry *e = find(g, VG_BLOCK_ACK, topic, name, 0);
    cr_assert_not_null(e, "no ACK for %s/%s", topic, name);
    return e->first_seq;
}

static const got_entry *publisher_of(const got *g, uint64_t pub)
{
    return find(g, VG_BLOCK_PUBLISHER, NULL, NULL, pub);
}

/* ---- folding ---- */

Test(checkpoint, an_empty_one_writes_nothing)
{
    vg_ckpt *k = make();
    cr_assert_eq(vg_ckpt_count(k), 0);
    got g = written(k, 0);
    cr_assert_eq(g.n, 0);
    vg_ckpt_destroy(k);
    vg_ckpt_destroy(NULL);
}

Test(checkpoint, msgs_give_the_topics_next_and_the_publishers_last)
{
    vg_ckpt *k = make();
    msgs(k, "orders", 10, 5, 7, 33, 1000);
    cr_assert_eq(vg_ckpt_count(k), 2, "a NEXT and a PUBLISHER");
    msgs(k, "plain", 1, 3, 0, 0, 1000); /* no publisher identity: a NEXT only */
    cr_assert_eq(vg_ckpt_count(k), 3);
    got g = written(k, 0);
    cr_assert_eq(g.n, 3);
    cr_assert_eq(next_of(&g, "orders"), 15, "first_seq + count");
    cr_assert_eq(next_of(&g, "plain"), 4);
    const got_entry *p = publisher_of(&g, 7);
    cr_assert_not_null(p);
    cr_assert_eq(p->pub_last, 33);
    cr_assert_eq(p->wall_ms, 1000);
    cr_assert_str_eq(p->topic, "");
    cr_assert_null(publisher_of(&g, 0));
    free(g.v);
    vg_ckpt_destroy(k);
}

Test(checkpoint, next_and_publisher_blocks_fold_in_as_they_are)
{
    vg_ckpt *k = make();
    apply(k, (vg_block){.kind = VG_BLOCK_NEXT, .first_seq = 42, .wall_ms = 3}, "t", NULL);
    apply(k, (vg_block){.kind = VG_BLOCK_PUBLISHER, .publisher = 0x0102030405060708ull,
                        .pub_last = 9, .wall_ms = 77},
          "", NULL);
    got g = written(k, 0);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(next_of(&g, "t"), 42);
    const got_entry *p = publisher_of(&g, 0x0102030405060708ull);
    cr_assert_not_null(p, "the publisher's number back as it was, every byte");
    cr_assert_eq(p->pub_last, 9);
    cr_assert_eq(p->wall_ms, 77);
    free(g.v);
    vg_ckpt_destroy(k);
}

Test(checkpoint, numbers_only_grow)
{
    vg_ckpt *k = make();
    msgs(k, "a", 1, 20, 7, 40, 2000); /* next 21 */
    apply(k, (vg_block){.kind = VG_BLOCK_NEXT, .first_seq = 12}, "a", NULL);
    msgs(k, "a", 5, 2, 7, 35, 1000); /* an older block read again: next 7, pub 35 */
    apply(k, (vg_block){.kind = VG_BLOCK_PUBLISHER, .publisher = 7, .pub_last = 1,
                        .wall_ms = 500},
          "", NULL);
    durable(k, VG_BLOCK_ACK, "a", "d", 50);
    durable(k, VG_BLOCK_ACK, "a", "d", 49);
    durable(k, VG_BLOCK_ACK, "a", "d", 0);
    got g = written(k, 0);
    cr_assert_eq(g.n, 3);
    cr_assert_eq(next_of(&g, "a"), 21);
    cr_assert_eq(publisher_of(&g, 7)->pub_last, 40);
    cr_assert_eq(publisher_of(&g, 7)->wall_ms, 2000, "the newest time seen");
    cr_assert_eq(acked_of(&g, "a", "d"), 50);
    free(g.v);

    /* and up they go */
    apply(k, (vg_block){.kind = VG_BLOCK_NEXT, .first_seq = 100}, "a", NULL);
    durable(k, VG_BLOCK_ACK, "a", "d", 51);
    msgs(k, "a", 100, 1, 7, 41, 2500);
    g = written(k, 0);
    cr_assert_eq(next_of(&g, "a"), 101);
    cr_assert_eq(publisher_of(&g, 7)->pub_last, 41);
    cr_assert_eq(publisher_of(&g, 7)->wall_ms, 2500);
    cr_assert_eq(acked_of(&g, "a", "d"), 51);
    free(g.v);
    vg_ckpt_destroy(k);
}

Test(checkpoint, a_deleted_durable_starts_afresh)
{
    vg_ckpt *k = make();
    durable(k, VG_BLOCK_ACK, "t", "worker", 50);
    durable(k, VG_BLOCK_ACK, "t", "other", 8);
    cr_assert_eq(vg_ckpt_count(k), 2);
    durable(k, VG_BLOCK_FORGET, "t", "worker", 0);
    cr_assert_eq(vg_ckpt_count(k), 1);
    got g = written(k, 0);
    cr_assert_eq(g.n, 1, "a forgotten durable is not written");
    cr_assert_null(find(&g, VG_BLOCK_ACK, "t", "worker", 0));
    cr_assert_eq(acked_of(&g, "t", "other"), 8);
    free(g.v);

    durable(k, VG_BLOCK_ACK, "t", "worker", 3); /* made again: a lower number is its own */
    cr_assert_eq(vg_ckpt_count(k), 2);
    g = written(k, 0);
    cr_assert_eq(acked_of(&g, "t", "worker"), 3);
    free(g.v);
    durable(k, VG_BLOCK_ACK, "t", "worker", 2); /* and from there only up again */
    g = written(k, 0);
    cr_assert_eq(acked_of(&g, "t", "worker"), 3);
    free(g.v);

    /* a FORGET of one never seen: nothing to write, and an ACK after it counts */
    durable(k, VG_BLOCK_FORGET, "u", "ghost", 0);
    cr_assert_eq(vg_ckpt_count(k), 2);
    g = written(k, 0);
    cr_assert_eq(g.n, 2);
    free(g.v);
    durable(k, VG_BLOCK_ACK, "u", "ghost", 1);
    g = written(k, 0);
    cr_assert_eq(acked_of(&g, "u", "ghost"), 1);
    free(g.v);
    vg_ckpt_destroy(k);
}

Test(checkpoint, keys_are_kind_topic_and_name_apart)
{
    vg_ckpt *k = make();
    durable(k, VG_BLOCK_ACK, "ab", "c", 1);
    durable(k, VG_BLOCK_ACK, "a", "bc", 2);
    durable(k, VG_BLOCK_ACK, "abc", "", 3);
    apply(k, (vg_block){.kind = VG_BLOCK_NEXT, .first_seq = 4}, "abc", NULL);
    apply(k, (vg_block){.kind = VG_BLOCK_NEXT, .first_seq = 5}, "ab", NULL);
    cr_assert_eq(vg_ckpt_count(k), 5);
    got g = written(k, 0);
    cr_assert_eq(g.n, 5);
    cr_assert_eq(acked_of(&g, "ab", "c"), 1);
    cr_assert_eq(acked_of(&g, "a", "bc"), 2);
    cr_assert_eq(acked_of(&g, "abc", ""), 3);
    cr_assert_eq(next_of(&g, "abc"), 4);
    cr_assert_eq(next_of(&g, "ab"), 5);
    free(g.v);
    vg_ckpt_destroy(k);
}

Test(checkpoint, publishers_last_seen_before_the_cut_are_left_out)
{
    vg_ckpt *k = make();
    msgs(k, "t", 1, 1, 1, 10, 1000);
    msgs(k, "t", 2, 1, 2, 20, 5000);
    msgs(k, "t", 3, 1, 3, 30, 4999);
    msgs(k, "t", 4, 1, 1, 11, 900); /* older: publisher 1 was last seen at 1000 */
    durable(k, VG_BLOCK_ACK, "t", "d", 2); /* not a publisher: kept whatever its time */
    got g = written(k, 5000);
    cr_assert_eq(g.n, 3, "NEXT, ACK and publisher 2");
    cr_assert_null(publisher_of(&g, 1));
    cr_assert_null(publisher_of(&g, 3), "4999 is before 5000");
    cr_assert_not_null(publisher_of(&g, 2), "5000 is not before 5000");
    cr_assert_eq(publisher_of(&g, 2)->pub_last, 20);
    cr_assert_eq(next_of(&g, "t"), 5);
    cr_assert_eq(acked_of(&g, "t", "d"), 2);
    free(g.v);
    /* the table still has them: a later cut keeps them */
    g = written(k, 0);
    cr_assert_eq(g.n, 5);
    cr_assert_eq(publisher_of(&g, 1)->pub_last, 11);
    cr_assert_eq(publisher_of(&g, 1)->wall_ms, 1000);
    free(g.v);
    vg_ckpt_destroy(k);
}

Test(checkpoint, a_write_to_a_closed_pipe_is_an_io_error)
{
    vg_ckpt *k = make();
    msgs(k, "t", 1, 1, 0, 0, 0);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(vg_ckpt_write(k, p[1], 0), VG_ERR_IO);
    close(p[1]);
    vg_ckpt_destroy(k);
}

Test(checkpoint, ten_thousand_topics_grow_the_table)
{
    enum { TOPICS = 10000 };
    vg_ckpt *k = make();
    char topic[32], name[32];
    for (int i = 0; i < TOPICS; i++) {
        snprintf(topic, sizeof topic, "topic.%d", i);
        msgs(k, topic, 1, (uint32_t)(i + 1), i % 100 == 0 ? 1000 + (uint64_t)i : 0, (uint64_t)i,
             i);
        if (i % 10 == 0) {
            snprintf(name, sizeof name, "d%d", i);
            durable(k, VG_BLOCK_ACK, topic, name, (uint64_t)i / 2);
            if (i % 20 == 0)
                durable(k, VG_BLOCK_FORGET, topic, name, 0);
        }
    }
    /* everything read a second time, as a segment is after a crash: no change */
    for (int i = 0; i < TOPICS; i += 7) {
        snprintf(topic, sizeof topic, "topic.%d", i);
        msgs(k, topic, 1, 1, 0, 0, 0);
    }
    size_t want = TOPICS + TOPICS / 100 + TOPICS / 20;
    cr_assert_eq(vg_ckpt_count(k), want);
    got g = written(k, 0);
    cr_assert_eq(g.n, want);
    size_t nexts = 0, pubs = 0, acks = 0;
    for (size_t j = 0; j < g.n; j++) {
        const got_entry *e = &g.v[j];
        int i;
        switch (e->kind) {
        case VG_BLOCK_NEXT:
            cr_assert_eq(sscanf(e->topic, "topic.%d", &i), 1);
            cr_assert_eq(e->first_seq, (uint64_t)i + 2, "%s", e->topic);
            nexts++;
            break;
        case VG_BLOCK_PUBLISHER:
            i = (int)(e->publisher - 1000);
            cr_assert_eq(i % 100, 0);
            cr_assert_eq(e->pub_last, (uint64_t)i);
            cr_assert_eq(e->wall_ms, i);
            pubs++;
            break;
        default:
            cr_assert_eq(sscanf(e->topic, "topic.%d", &i), 1);
            cr_assert_eq(i % 20, 10, "%s: forgotten ones are not written", e->topic);
            snprintf(name, sizeof name, "d%d", i);
            cr_assert_str_eq(e->name, name);
            cr_assert_eq(e->first_seq, (uint64_t)i / 2);
            acks++;
            break;
        }
    }
    cr_assert_eq(nexts, TOPICS);
    cr_assert_eq(pubs, TOPICS / 100);
    cr_assert_eq(acks, TOPICS / 20);
    free(g.v);
    vg_ckpt_destroy(k);
}
