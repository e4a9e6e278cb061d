/* The data directory (broker/store.c) on real files in a fresh temporary
 * directory, without a broker: blocks written as the router writes them
 * (router.c, append_stored), synced and released by the commit thread,
 * read back after a reopen; a torn tail cut to the last good block; a
 * damaged block served as a hole with its exact range; old segments
 * dropped by retention into the `state` checkpoint, which still knows every
 * topic's next number and every durable's position; the directory's lock;
 * a foreign format; and the epoch across an unclean stop for each fsync
 * policy. store_opened and the repairs are logged to stderr: not parsed
 * here, the results are checked. Every wait is bounded. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "block.h"
#include "clock.h"
#include "crc32c.h"
#include "dedupe.h"
#include "durable.h"
#include "frame.h"
#include "log.h"
#include "store.h"
#include "topiclog.h"

#define DEADLINE_MS 30000
#define SEG1 "00000000000000000001.seg"

static atomic_int released_n, wake_n;

static void on_released(void *ud, vg_tlog *t)
{
    (void)ud;
    cr_assert_not_null(t);
    atomic_fetch_add(&released_n, 1);
}

static void on_wake(void *ud, void *waiter)
{
    (void)ud;
    (void)waiter;
    atomic_fetch_add(&wake_n, 1);
}

/* One open data directory with what vg_store_open fills. */
typedef struct {
    char dir[64];
    vg_store_cfg cfg;
    vg_logs_cfg lcfg;
    vg_dedupe *dedupe;
    vg_durables *durables;
    vg_logs *logs;
    vg_store *s;
} env;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void make_dir(env *e, vg_fsync_policy fsync)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/vigil-test-store-XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));
    e->cfg = (vg_store_cfg){.dir = e->dir, .fsync = fsync, .interval_ms = 10,
                            .segment_bytes = VG_STORE_SEGMENT_DEFAULT};
    vg_logs_cfg_defaults(&e->lcfg);
}

/* Opens e's directory: VG_OK and a started commit thread, or the failure. */
static vg_status try_open(env *e, bool start)
{
    e->dedupe = vg_dedupe_create(64, 120000);
    e->durables = vg_durables_create();
    cr_assert(e->dedupe != NULL && e->durables != NULL);
    e->logs = NULL;
    e->s = NULL;
    vg_status st = vg_store_open(&e->cfg, &e->lcfg, e->dedupe, e->durables, &e->logs, &e->s);
    if (st != VG_OK) {
        cr_assert_null(e->s);
        vg_dedupe_destroy(e->dedupe);
        vg_durables_destroy(e->durables);
        e->dedupe = NULL;
        e->durables = NULL;
        return st;
    }
    cr_assert_not_null(e->logs);
    if (start) {
        vg_store_hooks h = {.released = on_released, .wake = on_wake};
        cr_assert_eq(vg_store_start(e->s, &h), VG_OK);
    }
    return VG_OK;
}

static void open_env(env *e)
{
    cr_assert_eq(try_open(e, true), VG_OK, "vg_store_open %s", e->dir);
}

static void close_env(env *e)
{
    vg_store_close(e->s);
    vg_logs_destroy(e->logs);
    vg_dedupe_destroy(e->dedupe);
    vg_durables_destroy(e->durables);
    e->s = NULL;
    e->logs = NULL;
    e->dedupe = NULL;
    e->durables = NULL;
}

static void remove_dir(env *e)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    cr_assert_eq(system(cmd), 0);
}

static void path_of(const env *e, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", e->dir, name);
}

static off_t file_size(const env *e, const char *name)
{
    char p[128];
    path_of(e, name, p, sizeof p);
    struct stat st;
    if (stat(p, &st) != 0)
        return -1;
    return st.st_size;
}

static vg_tlog *log_of(const env *e, const char *topic)
{
    vg_tlog *t = vg_logs_get(e->logs, topic, strlen(topic));
    cr_assert_not_null(t);
    return t;
}

/* The payload of message seq: "m<seq>" padded with dots to pad bytes. */
static size_t payload_of(uint64_t seq, size_t pad, char *out, size_t cap)
{
    int n = snprintf(out, cap, "m%llu", (unsigned long long)seq);
    size_t len = (size_t)n > pad ? (size_t)n : pad;
    cr_assert_lt(len, cap);
    memset(out + n, '.', len - (size_t)n);
    out[len] = 0;
    return len;
}

/* A publisher's run of n messages on topic, as router.c's append_stored
 * does it: block written, then appended to the log, then ended. Returns
 * the log position to wait for. */
static uint64_t publish(env *e, const char *topic, size_t n, size_t pad, uint64_t publisher,
                        uint64_t pub_last)
{
    vg_tlog *t = log_of(e, topic);
    size_t tl = strlen(topic);
    char (*text)[2048] = calloc(n, sizeof *text);
    vg_tlog_msg *m = calloc(n, sizeof *m);
    cr_assert(text != NULL && m != NULL);
    vg_buf frames = {0};
    vg_store_begin(e->s);
    uint64_t seq = vg_tlog_next_seq(t);
    for (size_t i = 0; i < n; i++) {
        size_t len = payload_of(seq + i, pad, text[i], sizeof text[i]);
        m[i] = (vg_tlog_msg){VG_FRAME_MSG_TYPE1, text[i], len};
        cr_assert_eq(vg_frame_put_msg(&frames, VG_FRAME_MSG_TYPE1, topic, tl, text[i], len), VG_OK);
    }
    cr_assert_eq(vg_store_write(e->s, topic, (uint16_t)tl, seq, (uint32_t)n, frames.data,
                                frames.len, publisher, pub_last),
                 VG_OK);
    uint64_t first = 0;
    size_t appended = 0;
    cr_assert_eq(vg_tlog_append(t, m, n, vg_now_ms(), &first, &appended), VG_OK);
    cr_assert_eq(first, seq);
    cr_assert_eq(appended, n);
    uint64_t lsn = 0;
    vg_store_end(e->s, t, seq + n, &lsn);
    vg_buf_free(&frames);
    free(m);
    free(text);
    return lsn;
}

static void wait_synced(env *e, uint64_t lsn)
{
    int64_t until = vg_now_ms() + DEADLINE_MS;
    while (vg_store_synced(e->s) < lsn && vg_now_ms() < until)
        sleep_ms(1);
    cr_assert_geq(vg_store_synced(e->s), lsn, "synced %llu, written %llu",
                  (unsigned long long)vg_store_synced(e->s), (unsigned long long)lsn);
}

/* Waits until topic's records up to its next are readable (released). */
static void wait_ready(env *e, const char *topic)
{
    vg_tlog *t = log_of(e, topic);
    int64_t until = vg_now_ms() + DEADLINE_MS;
    while (vg_tlog_ready_seq(t) < vg_tlog_next_seq(t) && vg_now_ms() < until)
        sleep_ms(1);
    cr_assert_eq(vg_tlog_ready_seq(t), vg_tlog_next_seq(t), "%s: records still held", topic);
}

/* Everything a reader from the oldest record gets on topic, as runs and
 * gaps: "1-3 [4-6] 7-9" (records 1..3, a gap of 4..6, records 7..9). Each
 * record's payload is checked to be "m<seq>" and its padding. */
static void read_desc(env *e, const char *topic, char *out, size_t cap)
{
    vg_tlog *t = log_of(e, topic);
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_FIRST, 0, 0, &gap), VG_OK);
    size_t used = 0;
    out[0] = 0;
    uint64_t run_from = 0, run_to = 0;
#define FLUSH_RUN()                                                                               \
    do {                                                                                          \
        if (run_from != 0)                                                                        \
            used += (size_t)snprintf(out + used, cap - used, "%s%llu-%llu", used ? " " : "",      \
                                     (unsigned long long)run_from, (unsigned long long)run_to);   \
        run_from = 0;                                                                             \
    } while (0)
    for (int guard = 0;; guard++) {
        cr_assert_lt(guard, 1000000, "the reader never ends");
        struct iovec iov[16];
        vg_tread r;
        vg_tlog_read(&c, iov, 16, 1 << 20, &r);
        if (r.gap.from != 0) {
            FLUSH_RUN();
            used += (size_t)snprintf(out + used, cap - used, "%s[%llu-%llu]", used ? " " : "",
                                     (unsigned long long)r.gap.from, (unsigned long long)r.gap.to);
        }
        if (r.iovcnt == 0) {
            if (r.gap.from != 0)
                continue;
            break;
        }
        vg_buf b = {0};
        for (size_t i = 0; i < r.iovcnt; i++)
            cr_assert_eq(vg_buf_append(&b, iov[i].iov_base, iov[i].iov_len), VG_OK);
        cr_assert_eq(vg_tcursor_consume(&c, r.bytes), r.records);
        for (size_t off = 0; off < b.len;) {
            cr_assert_geq(b.len - off, VG_FRAME_HEADER);
            uint32_t len = vg_be32(b.data + off);
            cr_assert_leq(len, b.len - off - VG_FRAME_HEADER);
            vg_frame f;
            const char *why = NULL;
            cr_assert_eq(vg_frame_parse(b.data + off + VG_FRAME_HEADER, len, &f, &why), VG_OK,
                         "%s", why);
            cr_assert_eq(f.type, VG_FRAME_MSG_TYPE1);
            cr_assert_eq(f.topic_len, strlen(topic));
            cr_assert_eq(memcmp(f.topic, topic, f.topic_len), 0);
            char want[32];
            size_t wl = payload_of(f.seq, 0, want, sizeof want);
            cr_assert_geq(f.payload_len, wl, "seq %llu: payload of %u bytes",
                          (unsigned long long)f.seq, f.payload_len);
            cr_assert_eq(memcmp(f.payload, want, wl), 0, "seq %llu: payload",
                         (unsigned long long)f.seq);
            for (size_t i = wl; i < f.payload_len; i++)
                cr_assert_eq(f.payload[i], '.', "seq %llu: padding", (unsigned long long)f.seq);
            if (run_from != 0 && f.seq == run_to + 1) {
                run_to = f.seq;
            } else {
                FLUSH_RUN();
                run_from = run_to = f.seq;
            }
            off += VG_FRAME_HEADER + len;
        }
        vg_buf_free(&b);
        cr_assert_lt(used, cap - 1);
    }
    FLUSH_RUN();
#undef FLUSH_RUN
    vg_tcursor_release(&c);
}

static void expect_read(env *e, const char *topic, const char *want)
{
    char got[512];
    read_desc(e, topic, got, sizeof got);
    cr_assert_str_eq(got, want, "%s: read \"%s\", want \"%s\"", topic, got, want);
}

static void retain_none(void *owner) { (void)owner; }

static void expect_durable(env *e, const char *name, const char *topic, uint64_t acked)
{
    static int owner;
    uint64_t got = 0;
    bool existed = false;
    void *prev = NULL;
    cr_assert_eq(vg_durables_claim(e->durables, name, strlen(name), topic, strlen(topic), &owner,
                                   retain_none, &got, &existed, &prev),
                 VG_OK);
    cr_assert(existed, "durable %s on %s not restored", name, topic);
    cr_assert_eq(got, acked, "durable %s on %s: acked %llu, want %llu", name, topic,
                 (unsigned long long)got, (unsigned long long)acked);
    cr_assert(vg_durables_leave(e->durables, name, strlen(name), topic, strlen(topic), &owner));
}

static void durable_block(env *e, vg_block_kind kind, const char *topic, const char *name,
                          uint64_t acked)
{
    cr_assert_eq(vg_store_durable(e->s, kind, topic, (uint16_t)strlen(topic), name,
                                  (uint16_t)strlen(name), acked),
                 VG_OK);
}

static void read_file(const env *e, const char *name, char *out, size_t cap)
{
    char p[128];
    path_of(e, name, p, sizeof p);
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f, "%s: %s", p, strerror(errno));
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    fclose(f);
}

static void write_file(const env *e, const char *name, const char *text)
{
    char p[128];
    path_of(e, name, p, sizeof p);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    cr_assert_eq(fclose(f), 0);
}

/* Flips one byte of file name at off. */
static void flip(const env *e, const char *name, off_t off)
{
    char p[128];
    path_of(e, name, p, sizeof p);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t c;
    cr_assert_eq(pread(fd, &c, 1, off), 1);
    c ^= 0x40;
    cr_assert_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static void cut(const env *e, const char *name, off_t size)
{
    char p[128];
    path_of(e, name, p, sizeof p);
    cr_assert_eq(truncate(p, size), 0);
}

static void init(void)
{
    atomic_store(&released_n, 0);
    atomic_store(&wake_n, 0);
}

TestSuite(store, .init = init);

/* ---- writing and reading back ---- */

Test(store, a_fresh_directory_written_closed_and_reopened)
{
    env e;
    make_dir(&e, VG_FSYNC_ALWAYS);
    open_env(&e);
    char meta[256];
    read_file(&e, "vigil.meta", meta, sizeof meta);
    cr_assert_eq(strncmp(meta, "vigil-data 1\nepoch ", 19), 0, "vigil.meta: %s", meta);
    cr_assert_eq(file_size(&e, SEG1), 0, "the first segment, empty");
    cr_assert(vg_store_holds(e.s));
    uint64_t epoch = vg_logs_epoch(e.logs);
    cr_assert_neq(epoch, 0);

    uint64_t l1 = publish(&e, "orders", 3, 0, 77, 3);
    uint64_t l2 = publish(&e, "orders", 2, 0, 77, 5);
    uint64_t l3 = publish(&e, "other", 1, 0, 0, 0);
    uint64_t l4 = publish(&e, "orders", 5, 100, 77, 10);
    cr_assert(l1 < l2 && l2 < l3 && l3 < l4, "positions grow with each block");
    wait_synced(&e, l4);
    wait_ready(&e, "orders");
    wait_ready(&e, "other");
    cr_assert_geq(atomic_load(&released_n), 1, "released() was called");
    expect_read(&e, "orders", "1-10");
    vg_store_stats st;
    vg_store_get_stats(e.s, &st);
    cr_assert_eq(st.segments, 1);
    cr_assert_eq(st.bytes, l4);
    cr_assert_eq(file_size(&e, SEG1), (off_t)l4, "the log position is the bytes written");
    cr_assert_geq(st.syncs, 1);
    cr_assert_eq(st.synced_bytes, l4);
    cr_assert_eq(st.early_confirms, 0);
    cr_assert_eq(st.write_errors, 0);
    close_env(&e);

    open_env(&e);
    cr_assert_eq(vg_logs_epoch(e.logs), epoch, "the epoch is kept");
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "orders")), 11);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "other")), 2);
    cr_assert_eq(vg_tlog_ready_seq(log_of(&e, "orders")), 11, "restored records are readable");
    vg_logs_stats ls;
    vg_logs_get_stats(e.logs, &ls);
    cr_assert_eq(ls.records, 11);
    cr_assert_eq(ls.logs, 2);
    expect_read(&e, "orders", "1-10");
    char got[64];
    read_desc(&e, "other", got, sizeof got);
    cr_assert_str_eq(got, "1-1");
    vg_tlog *t = log_of(&e, "orders");
    vg_tcursor c;
    vg_tgap gap;
    cr_assert_eq(vg_tlog_seek(t, &c, VG_TSTART_SEQ, 6, 0, &gap), VG_OK);
    vg_tcursor_release(&c);
    cr_assert_eq(vg_dedupe_acked(e.dedupe, 77, vg_now_ms()), 10, "the publisher's last number");
    vg_store_get_stats(e.s, &st);
    cr_assert_eq(st.segments, 1);
    cr_assert_eq(st.bytes, l4);

    /* appending goes on after the restored records */
    uint64_t l5 = publish(&e, "orders", 2, 0, 0, 0);
    wait_synced(&e, l5);
    close_env(&e);
    open_env(&e);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "orders")), 13);
    close_env(&e);
    remove_dir(&e);
}

Test(store, a_confirm_waiting_for_its_sync_is_woken)
{
    env e;
    make_dir(&e, VG_FSYNC_ALWAYS);
    cr_assert_eq(try_open(&e, false), VG_OK); /* no commit thread yet: nothing syncs */
    uint64_t lsn = publish(&e, "t", 4, 0, 0, 0);
    cr_assert_eq(vg_store_synced(e.s), 0);
    cr_assert_eq(vg_tlog_ready_seq(log_of(&e, "t")), 1, "held until synced");
    static int waiter;
    cr_assert(vg_store_wait(e.s, lsn, &waiter), "not synced yet: registered");
    vg_store_stats st;
    vg_store_get_stats(e.s, &st);
    cr_assert_eq(st.confirm_waits, 1);
    vg_store_hooks h = {.released = on_released, .wake = on_wake};
    cr_assert_eq(vg_store_start(e.s, &h), VG_OK);
    wait_synced(&e, lsn);
    int64_t until = vg_now_ms() + DEADLINE_MS;
    while ((atomic_load(&wake_n) < 1 || atomic_load(&released_n) < 1) && vg_now_ms() < until)
        sleep_ms(1);
    cr_assert_eq(atomic_load(&wake_n), 1, "woken once");
    cr_assert_eq(atomic_load(&released_n), 1, "released once");
    wait_ready(&e, "t");
    expect_read(&e, "t", "1-4");
    cr_assert_not(vg_store_wait(e.s, lsn, &waiter), "already synced: not registered");
    vg_store_note_early(e.s);
    vg_store_get_stats(e.s, &st);
    cr_assert_eq(st.confirm_waits, 1);
    cr_assert_eq(st.early_confirms, 1);
    close_env(&e);
    remove_dir(&e);
}

Test(store, an_unwritten_block_is_not_stored)
{
    env e;
    make_dir(&e, VG_FSYNC_ALWAYS);
    open_env(&e);
    uint64_t l1 = publish(&e, "t", 2, 0, 0, 0);
    vg_store_begin(e.s);
    vg_buf frames = {0};
    cr_assert_eq(vg_frame_put_msg(&frames, VG_FRAME_MSG_TYPE1, "t", 1, "m3", 2), VG_OK);
    cr_assert_eq(vg_store_write(e.s, "t", 1, 3, 1, frames.data, frames.len, 0, 0), VG_OK);
    vg_store_unwrite(e.s);
    uint64_t lsn;
    vg_store_end(e.s, NULL, 0, &lsn);
    vg_buf_free(&frames);
    cr_assert_eq(lsn, l1, "the position is back where it was");
    wait_synced(&e, l1);
    cr_assert_eq(file_size(&e, SEG1), (off_t)l1);
    close_env(&e);
    open_env(&e);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "t")), 3);
    expect_read(&e, "t", "1-2");
    close_env(&e);
    remove_dir(&e);
}

/* ---- repairs ---- */

Test(store, a_torn_tail_is_cut_to_the_last_good_block)
{
    /* the last block cut in its header, in its body, one byte short */
    for (int variant = 0; variant < 3; variant++) {
        env e;
        make_dir(&e, VG_FSYNC_ALWAYS);
        open_env(&e);
        publish(&e, "t", 3, 0, 0, 0);
        uint64_t l2 = publish(&e, "t", 3, 0, 0, 0);
        uint64_t l3 = publish(&e, "t", 4, 50, 0, 0);
        wait_synced(&e, l3);
        close_env(&e);
        off_t at = variant == 0 ? (off_t)l2 + 20 : variant == 1 ? (off_t)(l2 + l3) / 2
                                                                : (off_t)l3 - 1;
        cut(&e, SEG1, at);
        open_env(&e);
        cr_assert_eq(file_size(&e, SEG1), (off_t)l2, "variant %d: cut to the end of block 2",
                     variant);
        cr_assert_eq(vg_tlog_next_seq(log_of(&e, "t")), 7);
        expect_read(&e, "t", "1-6");
        vg_store_stats st;
        vg_store_get_stats(e.s, &st);
        cr_assert_eq(st.bytes, l2);
        /* new blocks go right after the cut, and read back whole */
        uint64_t l4 = publish(&e, "t", 2, 0, 0, 0);
        wait_synced(&e, l4);
        cr_assert_eq(file_size(&e, SEG1), (off_t)(l2 + l4),
                     "appended at the cut (positions count from the open)");
        close_env(&e);
        open_env(&e);
        expect_read(&e, "t", "1-8");
        close_env(&e);
        remove_dir(&e);
    }
}

Test(store, a_damaged_block_is_a_hole_with_its_exact_range)
{
    /* a byte flipped in the middle block's body, then in its header */
    for (int variant = 0; variant < 2; variant++) {
        env e;
        make_dir(&e, VG_FSYNC_ALWAYS);
        open_env(&e);
        uint64_t l1 = publish(&e, "t", 3, 0, 0, 0);
        uint64_t l2 = publish(&e, "t", 3, 30, 0, 0);
        uint64_t l3 = publish(&e, "u", 2, 0, 0, 0);
        uint64_t l4 = publish(&e, "t", 3, 0, 0, 0);
        wait_synced(&e, l4);
        close_env(&e);
        off_t at = variant == 0 ? (off_t)(l1 + VG_BLOCK_HEADER + l2) / 2 : (off_t)l1 + 30;
        cr_assert(at > (off_t)l1 && at < (off_t)l2);
        flip(&e, SEG1, at);
        open_env(&e);
        expect_read(&e, "t", "1-3 [4-6] 7-9");
        expect_read(&e, "u", "1-2");
        cr_assert_eq(vg_tlog_next_seq(log_of(&e, "t")), 10);
        cr_assert_eq(file_size(&e, SEG1), (off_t)l4, "damage in the middle is not cut");
        (void)l3;
        close_env(&e);
        remove_dir(&e);
    }
}

Test(store, a_damaged_body_in_the_last_block_is_a_hole_not_a_cut)
{
    env e;
    make_dir(&e, VG_FSYNC_ALWAYS);
    open_env(&e);
    uint64_t l1 = publish(&e, "t", 3, 0, 0, 0);
    uint64_t l2 = publish(&e, "t", 3, 40, 0, 0);
    wait_synced(&e, l2);
    close_env(&e);
    flip(&e, SEG1, (off_t)(l1 + VG_BLOCK_HEADER + l2) / 2);
    open_env(&e);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "t")), 7, "its numbers are not used again");
    uint64_t l3 = publish(&e, "t", 1, 0, 0, 0);
    wait_synced(&e, l3);
    close_env(&e);
    open_env(&e);
    expect_read(&e, "t", "1-3 [4-6] 7-7");
    close_env(&e);
    remove_dir(&e);
}

/* ---- retention and the checkpoint ---- */

Test(store, retention_drops_old_segments_and_the_state_keeps_what_they_said)
{
    env e;
    make_dir(&e, VG_FSYNC_ALWAYS);
    e.cfg.segment_bytes = VG_STORE_SEGMENT_MIN;
    open_env(&e);
    /* the first segment: a topic never written again, durables, a publisher */
    publish(&e, "early", 10, 0, 501, 10);
    durable_block(&e, VG_BLOCK_ACK, "orders", "w1", 5);
    durable_block(&e, VG_BLOCK_ACK, "orders", "w2", 3);
    durable_block(&e, VG_BLOCK_ACK, "early", "w3", 7);
    durable_block(&e, VG_BLOCK_FORGET, "orders", "w2", 0);
    /* then enough for several segments */
    uint64_t lsn = 0;
    for (int i = 0; i < 60; i++) {
        lsn = publish(&e, "orders", 4, 1000, 502, 4 * (uint64_t)i + 4);
        if (i % 3 == 0)
            lsn = publish(&e, "bulk", 1, 1500, 0, 0);
        if (i == 30)
            durable_block(&e, VG_BLOCK_ACK, "orders", "w1", 100);
    }
    durable_block(&e, VG_BLOCK_ACK, "orders", "w4", 1); /* in the newest segment */
    wait_synced(&e, lsn);
    vg_store_stats st;
    vg_store_get_stats(e.s, &st);
    cr_assert_geq(st.segments, 3, "rolled: %llu segments", (unsigned long long)st.segments);
    cr_assert_eq(file_size(&e, "state"), -1, "no state before retention");
    close_env(&e);

    /* reopened with retention: everything but the newest segment goes */
    e.cfg.retention_bytes = 1;
    open_env(&e);
    uint64_t next_early = vg_tlog_next_seq(log_of(&e, "early"));
    uint64_t next_orders = vg_tlog_next_seq(log_of(&e, "orders"));
    uint64_t next_bulk = vg_tlog_next_seq(log_of(&e, "bulk"));
    cr_assert_eq(next_early, 11);
    cr_assert_eq(next_orders, 241);
    cr_assert_eq(next_bulk, 21);
    int64_t until = vg_now_ms() + DEADLINE_MS;
    do {
        vg_store_get_stats(e.s, &st);
        if (st.segments == 1)
            break;
        sleep_ms(10);
    } while (vg_now_ms() < until);
    cr_assert_eq(st.segments, 1, "%llu segments left", (unsigned long long)st.segments);
    cr_assert_gt(file_size(&e, "state"), 0, "the state file");
    cr_assert_eq(file_size(&e, SEG1), -1, "the oldest segment is gone");
    cr_assert_eq(file_size(&e, "state.tmp"), -1);
    /* after the drop, its bytes are no longer counted */
    cr_assert_lt(st.bytes, VG_STORE_SEGMENT_MIN + 1);
    close_env(&e);

    /* what the dropped segments said, from the state file */
    e.cfg.retention_bytes = 0;
    open_env(&e);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "early")), next_early);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "orders")), next_orders);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "bulk")), next_bulk);
    expect_read(&e, "early", "");
    cr_assert_eq(vg_tlog_first_seq(log_of(&e, "early")), next_early, "nothing retained");
    char got[512];
    read_desc(&e, "orders", got, sizeof got);
    char want_end[32];
    snprintf(want_end, sizeof want_end, "-%llu", (unsigned long long)(next_orders - 1));
    cr_assert(strlen(got) > 0 && strcmp(got + strlen(got) - strlen(want_end), want_end) == 0 &&
                  strchr(got, ' ') == NULL,
              "orders: one run up to the last, got \"%s\"", got);
    expect_durable(&e, "w1", "orders", 100);
    expect_durable(&e, "w3", "early", 7);
    expect_durable(&e, "w4", "orders", 1);
    cr_assert_eq(vg_durables_count(e.durables), 3, "w2 was deleted");
    int64_t now = vg_now_ms();
    cr_assert_eq(vg_dedupe_acked(e.dedupe, 501, now), 10, "a publisher only in a dropped segment");
    cr_assert_eq(vg_dedupe_acked(e.dedupe, 502, now), 240);
    /* numbering goes on */
    uint64_t l = publish(&e, "early", 1, 0, 0, 0);
    wait_synced(&e, l);
    close_env(&e);
    open_env(&e);
    expect_read(&e, "early", "11-11");
    expect_durable(&e, "w1", "orders", 100);
    close_env(&e);
    remove_dir(&e);
}

/* ---- opening ---- */

Test(store, a_second_open_of_the_same_directory_fails)
{
    env a, b;
    make_dir(&a, VG_FSYNC_ALWAYS);
    open_env(&a);
    b = a;
    cr_assert_eq(try_open(&b, true), VG_ERR_IO, "locked by the first");
    uint64_t l = publish(&a, "t", 1, 0, 0, 0); /* the first is unharmed */
    wait_synced(&a, l);
    close_env(&a);
    cr_assert_eq(try_open(&b, true), VG_OK, "free again once closed");
    expect_read(&b, "t", "1-1");
    close_env(&b);
    remove_dir(&a);
}

Test(store, a_directory_of_another_format_is_not_opened)
{
    env e;
    make_dir(&e, VG_FSYNC_ALWAYS);
    write_file(&e, "vigil.meta", "vigil-data 99\nepoch 0000000000000001\n");
    cr_assert_eq(try_open(&e, true), VG_ERR_IO);
    char meta[256];
    read_file(&e, "vigil.meta", meta, sizeof meta);
    cr_assert_str_eq(meta, "vigil-data 99\nepoch 0000000000000001\n", "left as it was");
    cr_assert_eq(file_size(&e, SEG1), -1, "nothing started fresh over it");
    write_file(&e, "vigil.meta", "something else\n");
    cr_assert_eq(try_open(&e, true), VG_ERR_IO);
    write_file(&e, "vigil.meta", "vigil-data 1\nepoch 0000000000000000\n");
    cr_assert_eq(try_open(&e, true), VG_ERR_IO, "epoch 0 is no epoch");
    write_file(&e, "vigil.meta", "vigil-data 1\nepoch 00000000000000ab\n");
    cr_assert_eq(try_open(&e, true), VG_OK);
    cr_assert_eq(vg_logs_epoch(e.logs), 0xab);
    close_env(&e);
    remove_dir(&e);
}

/* A broker that dies without closing: opens e's directory, stores n
 * messages on "t" (synced, under fsync=always) and exits at once. */
static void crash_after_writing(env *e, size_t n)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (try_open(e, true) != VG_OK)
            _exit(2);
        uint64_t lsn = publish(e, "t", n, 0, 0, 0);
        if (e->cfg.fsync == VG_FSYNC_ALWAYS) {
            int64_t until = vg_now_ms() + DEADLINE_MS;
            while (vg_store_synced(e->s) < lsn && vg_now_ms() < until)
                sleep_ms(1);
        }
        _exit(0);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the crashing child: %d", status);
}

static void epoch_across_a_crash(vg_fsync_policy fsync, bool kept)
{
    env e;
    make_dir(&e, fsync);
    open_env(&e);
    uint64_t epoch = vg_logs_epoch(e.logs);
    close_env(&e);
    open_env(&e);
    cr_assert_eq(vg_logs_epoch(e.logs), epoch, "a clean stop keeps the epoch whatever the policy");
    close_env(&e);
    crash_after_writing(&e, 5);
    cr_assert_eq(file_size(&e, "clean"), -1, "no clean-stop mark");
    open_env(&e);
    if (kept)
        cr_assert_eq(vg_logs_epoch(e.logs), epoch, "fsync=always keeps the epoch");
    else
        cr_assert_neq(vg_logs_epoch(e.logs), epoch, "an unclean stop without syncs: a new epoch");
    expect_read(&e, "t", "1-5"); /* the kernel had them, the process died */
    uint64_t now_epoch = vg_logs_epoch(e.logs);
    close_env(&e);
    char meta[256], want[64];
    read_file(&e, "vigil.meta", meta, sizeof meta);
    snprintf(want, sizeof want, "vigil-data 1\nepoch %016llx\n", (unsigned long long)now_epoch);
    cr_assert_str_eq(meta, want, "the epoch as stored");
    remove_dir(&e);
}

Test(store, fsync_never_after_an_unclean_stop_starts_a_new_epoch)
{
    epoch_across_a_crash(VG_FSYNC_NEVER, false);
}

Test(store, fsync_interval_after_an_unclean_stop_starts_a_new_epoch)
{
    epoch_across_a_crash(VG_FSYNC_INTERVAL, false);
}

Test(store, fsync_always_after_an_unclean_stop_keeps_the_epoch)
{
    epoch_across_a_crash(VG_FSYNC_ALWAYS, true);
}

Test(store, fsync_never_releases_at_once_and_still_stores)
{
    env e;
    make_dir(&e, VG_FSYNC_NEVER);
    open_env(&e);
    cr_assert_not(vg_store_holds(e.s));
    uint64_t l = publish(&e, "t", 3, 0, 0, 0);
    cr_assert_eq(vg_tlog_ready_seq(log_of(&e, "t")), 4, "not held");
    wait_synced(&e, l); /* "synced" as far as the policy goes: the position moves on */
    close_env(&e);
    open_env(&e);
    expect_read(&e, "t", "1-3");
    close_env(&e);
    remove_dir(&e);
}

Test(store, a_damaged_durable_block_does_not_come_back_from_the_state)
{
    env e;
    make_dir(&e, VG_FSYNC_ALWAYS);
    e.cfg.segment_bytes = VG_STORE_SEGMENT_MIN;
    open_env(&e);
    uint64_t l0 = publish(&e, "orders", 1, 0, 0, 0);
    durable_block(&e, VG_BLOCK_ACK, "orders", "w1", 1);
    uint64_t lsn = 0;
    for (int i = 0; i < 40; i++)
        lsn = publish(&e, "orders", 4, 1000, 0, 0);
    wait_synced(&e, lsn);
    close_env(&e);
    /* the ACK's name "w1" becomes "71": its body checksum fails */
    flip(&e, SEG1, (off_t)l0 + VG_BLOCK_HEADER + 6);
    open_env(&e);
    cr_assert_eq(vg_durables_count(e.durables), 0, "live recovery skips the damaged ACK");
    close_env(&e);
    e.cfg.retention_bytes = 1;
    open_env(&e);
    int64_t until = vg_now_ms() + DEADLINE_MS;
    vg_store_stats st;
    do {
        vg_store_get_stats(e.s, &st);
        if (st.segments == 1)
            break;
        sleep_ms(10);
    } while (vg_now_ms() < until);
    cr_assert_eq(st.segments, 1);
    close_env(&e);
    open_env(&e);
    cr_assert_eq(vg_durables_count(e.durables), 0,
                 "the damaged ACK was folded into the state as a good block");
    close_env(&e);
    remove_dir(&e);
}

/* A block whose checksums are good but whose count is far past the frames
 * its body can hold (only a crafted file has one): damage, found without
 * first allocating room for four billion messages. */
Test(store, a_count_past_the_body_is_damage_not_an_allocation)
{
    env e;
    make_dir(&e, VG_FSYNC_ALWAYS);
    open_env(&e);
    uint64_t l1 = publish(&e, "u", 2, 0, 0, 0);
    wait_synced(&e, l1);
    close_env(&e);
    vg_buf frames = {0};
    cr_assert_eq(vg_frame_put_msg(&frames, VG_FRAME_MSG_TYPE1, "t", 1, "m1", 2), VG_OK);
    vg_block b = {.kind = VG_BLOCK_MSGS, .first_seq = 1, .count = UINT32_MAX,
                  .body_len = (uint32_t)(1 + frames.len), .topic_len = 1};
    b.body_crc = vg_crc32c(vg_crc32c(0, "t", 1), frames.data, frames.len);
    uint8_t hdr[VG_BLOCK_HEADER];
    vg_block_put_header(hdr, &b);
    char p[128];
    path_of(&e, SEG1, p, sizeof p);
    FILE *f = fopen(p, "ab");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(hdr, 1, sizeof hdr, f), sizeof hdr);
    cr_assert_eq(fwrite("t", 1, 1, f), 1);
    cr_assert_eq(fwrite(frames.data, 1, frames.len, f), frames.len);
    cr_assert_eq(fclose(f), 0);
    vg_buf_free(&frames);
    open_env(&e);
    expect_read(&e, "u", "1-2");
    expect_read(&e, "t", "");
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "t")), 1 + (uint64_t)UINT32_MAX,
                 "its numbers are a hole, as any damaged block's");
    close_env(&e);
    remove_dir(&e);
}

static void wait_segments_at_most(env *e, uint64_t n)
{
    vg_store_stats st;
    int64_t until = vg_now_ms() + DEADLINE_MS;
    do {
        vg_store_get_stats(e->s, &st);
        if (st.segments <= n)
            return;
        sleep_ms(10);
    } while (vg_now_ms() < until);
    cr_assert_leq(st.segments, n, "%llu segments left", (unsigned long long)st.segments);
}

/* Retention while blocks keep coming (segments rolled and dropped at the
 * same time), twice across a reopen: the second state file is written
 * from the first one read back plus the segments dropped since. */
Test(store, retention_while_writing_and_a_state_rewritten_from_a_state)
{
    env e;
    make_dir(&e, VG_FSYNC_ALWAYS);
    e.cfg.segment_bytes = VG_STORE_SEGMENT_MIN;
    e.cfg.retention_bytes = 2 * VG_STORE_SEGMENT_MIN;
    open_env(&e);
    publish(&e, "early", 3, 0, 0, 0);
    durable_block(&e, VG_BLOCK_ACK, "early", "d1", 2);
    uint64_t lsn = 0;
    int64_t until = vg_now_ms() + 1500; /* past the first retention tick */
    int rounds = 0;
    while (vg_now_ms() < until || rounds < 100) {
        lsn = publish(&e, "busy", 4, 1000, 0, 0);
        rounds++;
        cr_assert_lt(rounds, 100000);
    }
    wait_synced(&e, lsn);
    wait_segments_at_most(&e, 4);
    cr_assert_gt(file_size(&e, "state"), 0);
    uint64_t next_busy = vg_tlog_next_seq(log_of(&e, "busy"));
    cr_assert_eq(next_busy, 1 + 4 * (uint64_t)rounds);
    close_env(&e);

    open_env(&e); /* retention still on: the state read back, then more dropped */
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "busy")), next_busy);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "early")), 4);
    for (int i = 0; i < 100; i++)
        lsn = publish(&e, "busy", 4, 1000, 0, 0);
    durable_block(&e, VG_BLOCK_ACK, "busy", "d2", 5);
    lsn = publish(&e, "busy", 1, 0, 0, 0);
    wait_synced(&e, lsn);
    next_busy += 401;
    /* the next tick drops the segments of before the reopen */
    wait_segments_at_most(&e, 4);
    close_env(&e);

    e.cfg.retention_bytes = 0;
    open_env(&e);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "busy")), next_busy);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "early")), 4, "from the first state, via the second");
    expect_durable(&e, "d1", "early", 2);
    expect_durable(&e, "d2", "busy", 5);
    char got[512];
    read_desc(&e, "busy", got, sizeof got);
    char want_end[32];
    snprintf(want_end, sizeof want_end, "-%llu", (unsigned long long)(next_busy - 1));
    cr_assert(strlen(got) > 0 && strchr(got, ' ') == NULL &&
                  strcmp(got + strlen(got) - strlen(want_end), want_end) == 0,
              "busy: one run up to the last, got \"%s\"", got);
    close_env(&e);
    remove_dir(&e);
}

Test(store, close_wakes_who_still_waits)
{
    env e;
    make_dir(&e, VG_FSYNC_ALWAYS);
    cr_assert_eq(try_open(&e, false), VG_OK);
    uint64_t lsn = publish(&e, "t", 1, 0, 0, 0);
    static int w1, w2;
    cr_assert(vg_store_wait(e.s, lsn, &w1));
    cr_assert(vg_store_wait(e.s, lsn + 1000, &w2)); /* never written */
    vg_store_hooks h = {.released = on_released, .wake = on_wake};
    cr_assert_eq(vg_store_start(e.s, &h), VG_OK);
    wait_synced(&e, lsn);
    int64_t until = vg_now_ms() + DEADLINE_MS;
    while (atomic_load(&wake_n) < 1 && vg_now_ms() < until)
        sleep_ms(1);
    cr_assert_eq(atomic_load(&wake_n), 1, "only the one whose position is synced");
    close_env(&e);
    cr_assert_eq(atomic_load(&wake_n), 2, "the other one at close");
    remove_dir(&e);
}

/* What decides is the policy of the run that stopped uncleanly, not the
 * next one's: records that run handed out unsynced may be lost, and the
 * next numbers would be used again within the same epoch. */
Test(store, a_crash_under_fsync_never_is_a_new_epoch_even_when_reopened_with_always)
{
    env e;
    make_dir(&e, VG_FSYNC_NEVER);
    open_env(&e);
    uint64_t epoch = vg_logs_epoch(e.logs);
    close_env(&e);
    crash_after_writing(&e, 5);
    /* as a power loss takes what was never synced: the last records */
    cut(&e, SEG1, file_size(&e, SEG1) - 1);
    e.cfg.fsync = VG_FSYNC_ALWAYS;
    open_env(&e);
    cr_assert_eq(vg_tlog_next_seq(log_of(&e, "t")), 1, "the crashed run's block is lost");
    cr_assert_neq(vg_logs_epoch(e.logs), epoch,
                  "numbers readers of the crashed run had will be used again: a new epoch");
    uint64_t epoch2 = vg_logs_epoch(e.logs);
    close_env(&e);
    /* and from then on fsync=always keeps it across a crash */
    crash_after_writing(&e, 2);
    open_env(&e);
    cr_assert_eq(vg_logs_epoch(e.logs), epoch2);
    expect_read(&e, "t", "1-2");
    close_env(&e);
    remove_dir(&e);
}
