/* The durable topic log and durable subscribers, end to end (issue 11):
 * real broker, pub and sub processes, a real data directory, real kill -9.
 *
 *   - kill -9 of the broker, ten times at random moments, under a steady
 *     publisher and a durable (or a plain) subscriber: every message
 *     exactly once, in order, no gap, no epoch change;
 *   - a torn tail (the last segment cut by 7 bytes) and a flipped byte (a
 *     block whose checksum fails): what is lost is exactly what the broker
 *     says (checked against the blocks' own headers), the rest is served
 *     in order; the epoch by --fsync policy; retention on the files;
 *   - a full disk (a small tmpfs, root only): publishers wait, subscribers
 *     keep reading, and once space returns nothing is lost or doubled;
 *   - start-up refusals: an unwritable, a locked or an incompatible data
 *     directory ends the broker with one clear error, never a fresh start;
 *   - durable subscribers across their own process's kill -9 or SIGTERM
 *     (or --count), a takeover, --list-durables and --delete;
 *   - the confirm rule: no PONG before the fdatasync that covers it.
 *
 * Data directories live under a mkdtemp directory (TMPDIR or /tmp) that each
 * test's .fini removes, unmounting what the test mounted first (also after a
 * failed assertion). A worker that the watchdog ended never ran its .fini:
 * the next test that mounts unmounts what such dead workers left.
 *
 * Timings are multiplied by VIGIL_TEST_TIME_SCALE (sanitizer builds); the
 * random delays of the kill -9 test are deliberate and not scaled. Their seed
 * is printed; VIGIL_TEST_SEED replays one. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define WAIT h_ms(15000)
#define LONG_WAIT h_ms(40000)
#define FAST_RETRY "--backoff-base", "0.05", "--backoff-max", "0.2"

/* ---- the test's directories and mounts, undone by .fini ---- */

#define MAX_MOUNTS 4

static struct {
    char base[512]; /* the mkdtemp directory, "" if none yet */
    char mounts[MAX_MOUNTS][600];
    int nmounts;
} fx;

/* What the test allocated, freed by release or, after a failed assertion,
 * by cleanup: LeakSanitizer then has nothing to say about a failed test. */
#define MAX_KEPT 256
static void *held[MAX_KEPT];

static void *keep(void *p)
{
    cr_assert(p != NULL, "out of memory");
    for (int i = 0; i < MAX_KEPT; i++)
        if (held[i] == NULL) {
            held[i] = p;
            return p;
        }
    cr_assert_fail("keep: more than %d allocations held", MAX_KEPT);
    return p;
}

/* Replaces a kept allocation by its reallocation. */
static void *rekeep(void *old, size_t size)
{
    for (int i = 0; i < MAX_KEPT; i++)
        if (held[i] == old) { /* found before realloc: old is not looked at after it */
            void *p = realloc(old, size);
            cr_assert(p != NULL, "out of memory");
            held[i] = p;
            return p;
        }
    cr_assert_fail("rekeep: not kept");
    return NULL;
}

static void release(void *p)
{
    for (int i = 0; p != NULL && i < MAX_KEPT; i++)
        if (held[i] == p)
            held[i] = NULL;
    free(p);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "test_durable: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Unmounts what this test mounted, then removes its directory. Safe at any
 * time and more than once. */
static void cleanup(void)
{
    for (int i = 0; i < MAX_KEPT; i++) {
        free(held[i]);
        held[i] = NULL;
    }
    for (int i = fx.nmounts - 1; i >= 0; i--) {
        /* Detached: a broker still inside (a failed test's) cannot keep it. */
        if (umount2(fx.mounts[i], MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
            fprintf(stderr, "test_durable: umount %s: %s\n", fx.mounts[i], strerror(errno));
    }
    fx.nmounts = 0;
    if (fx.base[0] != '\0') {
        /* A directory made unreadable or unwritable by a test must not stop its removal. */
        chmod(fx.base, 0700);
        rm_rf(fx.base);
        fx.base[0] = '\0';
    }
}

static const char *tmp_root(void)
{
    const char *dir = getenv("TMPDIR");
    return dir != NULL && *dir ? dir : "/tmp";
}

/* The test's own directory, made on first use. */
static const char *base_dir(void)
{
    if (fx.base[0] == '\0') {
        snprintf(fx.base, sizeof fx.base, "%s/vigil-durable-%d-XXXXXX", tmp_root(), (int)getpid());
        cr_assert(mkdtemp(fx.base) != NULL, "mkdtemp %s: %s", fx.base, strerror(errno));
    }
    return fx.base;
}

/* base_dir()/name, a new empty directory (from a ring of 8 static buffers). */
static const char *new_dir(const char *name)
{
    static char ring[8][600];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof ring[0], "%s/%s", base_dir(), name);
    cr_assert(mkdir(p, 0700) == 0, "mkdir %s: %s", p, strerror(errno));
    return p;
}

/* Unmounts tmpfs left under TMPDIR/vigil-durable-PID-* by a worker that is
 * gone (the watchdog ended it before its .fini), and removes their dirs. */
static void unmount_stale(void)
{
    FILE *m = fopen("/proc/self/mounts", "r");
    if (m == NULL)
        return;
    char line[2048], prefix[600];
    snprintf(prefix, sizeof prefix, "%s/vigil-durable-", tmp_root());
    while (fgets(line, sizeof line, m) != NULL) {
        char dev[256], dir[1024];
        int pid;
        if (sscanf(line, "%255s %1023s", dev, dir) != 2 || strncmp(dir, prefix, strlen(prefix)) != 0)
            continue;
        if (sscanf(dir + strlen(prefix), "%d-", &pid) != 1 || pid == (int)getpid() ||
            kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        if (umount2(dir, MNT_DETACH) == 0)
            cr_log_warn("unmounted %s, left by test worker %d", dir, pid);
    }
    fclose(m);
}

/* Mounts a tmpfs with options at dir (an existing directory); false, with
 * errno, if the system refuses (not root, no mount permission). */
static bool mount_tmpfs(const char *dir, unsigned long flags, const char *opts)
{
    cr_assert(fx.nmounts < MAX_MOUNTS);
    unmount_stale();
    if (mount("tmpfs", dir, "tmpfs", flags, opts) != 0)
        return false;
    snprintf(fx.mounts[fx.nmounts++], sizeof fx.mounts[0], "%s", dir);
    return true;
}

/* ---- a seeded generator, for the random moments ---- */

static uint64_t rng_state;

static uint64_t seed_rng(void)
{
    const char *s = getenv("VIGIL_TEST_SEED");
    uint64_t seed = s != NULL && *s ? strtoull(s, NULL, 0)
                                    : ((uint64_t)h_now_ms() * 0x9e3779b97f4a7c15ull) ^ (uint64_t)getpid();
    if (seed == 0)
        seed = 1;
    rng_state = seed;
    return seed;
}

static uint64_t rng(void)
{
    uint64_t x = rng_state; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* ---- sub's output ---- */

/* The numbers of sub's complete lines "TOPIC MSG_TYPE1 ...-N" (N: the
 * digits after the last '-'), in the order printed; lines of another shape
 * fail the test. *n receives the count; the array is malloc'd. Lines whose
 * payload does not start with prefix are skipped when skip_others. */
static int *numbers(const char *out, const char *topic, const char *prefix, bool skip_others, int *n)
{
    int cap = 1024, len = 0;
    int *v = keep(malloc(sizeof *v * (size_t)cap));
    char head[256];
    int hlen = snprintf(head, sizeof head, "%s MSG_TYPE1 ", topic);
    size_t plen = strlen(prefix);
    for (const char *p = out, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        cr_assert(strncmp(p, head, (size_t)hlen) == 0, "not a line of topic %s: \"%.*s\"", topic,
                  (int)(nl - p > 80 ? 80 : nl - p), p);
        const char *payload = p + hlen;
        if (strncmp(payload, prefix, plen) != 0) {
            cr_assert(skip_others, "line %d is not \"%s...\": \"%.*s\"", len + 1, prefix,
                      (int)(nl - payload > 80 ? 80 : nl - payload), payload);
            continue;
        }
        const char *dash = nl;
        while (dash > payload && dash[-1] != '-')
            dash--;
        cr_assert(dash > payload && dash < nl, "no number in \"%.*s\"", (int)(nl - p), p);
        if (len == cap) {
            cap *= 2;
            v = rekeep(v, sizeof *v * (size_t)cap);
        }
        v[len++] = atoi(dash);
    }
    *n = len;
    return v;
}

/* Asserts that v[0..n) is exactly from, from+1, ..., to. */
static void assert_run(const int *v, int n, int from, int to, const char *who)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(v[i], from + i,
                     "%s: line %d is %d, expected %d (a message lost, repeated or out of order)",
                     who, i + 1, v[i], from + i);
    cr_assert_eq(n, to - from + 1, "%s printed %d messages, expected %d..%d", who, n, from, to);
}

/* The line "TOPIC MSG_TYPE1 PREFIXn\n" (ring of 8 static buffers). */
static const char *line_of(const char *topic, const char *prefix, int n)
{
    static char ring[8][512];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof ring[0], "%s MSG_TYPE1 %s%d\n", topic, prefix, n);
    return p;
}

/* A payload of about size bytes: filler then "-{n}". */
static const char *padded(char *buf, size_t size, const char *prefix)
{
    size_t plen = strlen(prefix);
    cr_assert(size > plen + 8);
    memcpy(buf, prefix, plen);
    memset(buf + plen, 'x', size - plen - 5);
    strcpy(buf + size - 5, "-{n}");
    return buf;
}

/* ---- log lines ---- */

/* Copies the first line of text holding needle (without its newline) into
 * line; NULL if none. */
static const char *find_line(const char *text, const char *needle, char *line, size_t cap)
{
    const char *hit = strstr(text, needle);
    if (hit == NULL)
        return NULL;
    while (hit > text && hit[-1] != '\n')
        hit--;
    const char *end = strchr(hit, '\n');
    size_t n = end != NULL ? (size_t)(end - hit) : strlen(hit);
    if (n >= cap)
        n = cap - 1;
    memcpy(line, hit, n);
    line[n] = '\0';
    return line;
}

/* The integer after " key=" in line. */
static bool field_num(const char *line, const char *key, long long *v)
{
    char want[64];
    snprintf(want, sizeof want, " %s=", key);
    const char *at = strstr(line, want);
    if (at == NULL)
        return false;
    char *end;
    *v = strtoll(at + strlen(want), &end, 10);
    return end != at + strlen(want);
}

/* The value after " key=" in line, up to a space (quotes kept out). */
static bool field_str(const char *line, const char *key, char *buf, size_t cap)
{
    char want[64];
    snprintf(want, sizeof want, " %s=", key);
    const char *at = strstr(line, want);
    if (at == NULL)
        return false;
    at += strlen(want);
    bool quoted = *at == '"';
    at += quoted;
    size_t n = 0;
    while (at[n] != '\0' && (quoted ? at[n] != '"' : at[n] != ' ') && n + 1 < cap)
        n++;
    memcpy(buf, at, n);
    buf[n] = '\0';
    return true;
}

/* ---- processes ---- */

#define MAX_ARGV 32

static const char *server_of(int port)
{
    static char ring[4][32];
    static int next;
    char *p = ring[next++ % 4];
    snprintf(p, sizeof ring[0], "127.0.0.1:%d", port);
    return p;
}

/* Starts "sub --server 127.0.0.1:port args..." without waiting for anything. */
static h_proc *sub_start(int port, ...)
{
    const char *argv[MAX_ARGV] = {h_bin("sub"), "--server", server_of(port)};
    int n = 3;
    va_list ap;
    va_start(ap, port);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        cr_assert(n < MAX_ARGV - 1);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    return h_spawn("sub", argv);
}

/* Starts a broker on 127.0.0.1:0 with args that it must refuse at start:
 * waits for its exit and returns it (exited). */
static h_proc *broker_refused(const char *what, ...)
{
    const char *argv[MAX_ARGV] = {h_bin("broker"), "--listen", "127.0.0.1:0"};
    int n = 3;
    va_list ap;
    va_start(ap, what);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        cr_assert(n < MAX_ARGV - 1);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    h_proc *b = h_spawn("broker", argv);
    cr_assert(h_wait_exit(b, WAIT), "%s: the broker did not exit: %s", what, h_tail(b->err));
    cr_assert(WIFEXITED(b->status), "%s: the broker died of signal %d instead of refusing: %s", what,
              WTERMSIG(b->status), h_tail(b->err));
    cr_assert_neq(h_exit_code(b), 0, "%s: the broker exited 0: %s", what, h_tail(b->err));
    cr_assert(strstr(b->err, "event=listening") == NULL, "%s: the broker listened: %s", what,
              h_tail(b->err));
    cr_assert(strstr(b->err, "event=store_opened") == NULL, "%s: the broker opened a store: %s",
              what, h_tail(b->err));
    return b;
}

/* Asserts err holds one level=error line naming path (the directory) with
 * an error=, and returns it in line. */
static void assert_error_line(const h_proc *b, const char *path, const char *what, char *line,
                              size_t cap)
{
    const char *err = b->err;
    for (const char *p = err, *nl; *p != '\0'; p = nl != NULL ? nl + 1 : p + strlen(p)) {
        nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        snprintf(line, cap, "%.*s", (int)n, p);
        if (strstr(line, "level=error") != NULL && strstr(line, path) != NULL &&
            strstr(line, " dir=") != NULL && strstr(line, " error=") != NULL)
            return;
    }
    cr_assert_fail("%s: no line \"level=error event=... dir=%s error=...\" on the broker's"
                   " stderr: %s",
                   what, path, h_tail(err));
}

/* Kills the broker with SIGKILL and reaps it. */
static void kill9(h_proc *b)
{
    h_signal(b, SIGKILL);
    cr_assert(h_wait_exit(b, WAIT), "the broker outlived SIGKILL");
    h_free(b);
}

/* Runs "sub --list-durables" and returns its one line (malloc'd). */
static char *list_durables(int port)
{
    h_proc *l = sub_start(port, "--list-durables", NULL);
    cr_assert(h_wait_exit(l, WAIT), "sub --list-durables did not exit: %s", h_tail(l->err));
    cr_assert_eq(h_exit_code(l), 0, "sub --list-durables exited %d: %s", h_exit_code(l),
                 h_tail(l->err));
    cr_assert(strncmp(l->out, "{\"durables\":[", 13) == 0 && h_count(l->out, "\n") == 1,
              "sub --list-durables printed: %s", h_tail(l->out));
    char *json = keep(strdup(l->out));
    h_free(l);
    return json;
}

/* The object of durable name in a --list-durables line, copied into obj;
 * false if it is not listed. */
static bool durable_entry(const char *json, const char *name, char *obj, size_t cap)
{
    char want[200];
    snprintf(want, sizeof want, "\"name\":\"%s\"", name);
    const char *hit = strstr(json, want);
    if (hit == NULL)
        return false;
    const char *from = hit;
    while (from > json && *from != '{')
        from--;
    const char *to = strchr(hit, '}');
    cr_assert(to != NULL, "%s", json);
    snprintf(obj, cap, "%.*s", (int)(to - from + 1), from);
    return true;
}

static long long json_num(const char *obj, const char *key)
{
    char want[64];
    snprintf(want, sizeof want, "\"%s\":", key);
    const char *at = strstr(obj, want);
    cr_assert(at != NULL, "no \"%s\" in %s", key, obj);
    char *end;
    long long v = strtoll(at + strlen(want), &end, 10);
    cr_assert(end != at + strlen(want), "\"%s\" is not a number in %s", key, obj);
    return v;
}

/* Waits until --list-durables shows durable name with connected false and
 * acked at least min_acked; copies its entry into obj. */
static void wait_durable_idle(int port, const char *name, long long min_acked, char *obj, size_t cap)
{
    int64_t deadline = h_now_ms() + WAIT;
    char *json = NULL;
    for (;;) {
        release(json);
        json = list_durables(port);
        if (durable_entry(json, name, obj, cap) && strstr(obj, "\"connected\":false") != NULL &&
            json_num(obj, "acked") >= min_acked)
            break;
        cr_assert(h_now_ms() < deadline,
                  "durable %s never showed connected:false with acked >= %lld: %s", name, min_acked,
                  json);
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL); /* polling the broker's own answer */
    }
    release(json);
}

/* ---- segment files ---- */

typedef struct {
    char path[700];
    long long size;
} seg_file;

/* The segment files of dir ("%020llu.seg"), sorted by name; returns the count. */
static int segments(const char *dir, seg_file *out, int max)
{
    DIR *d = opendir(dir);
    cr_assert(d != NULL, "opendir %s: %s", dir, strerror(errno));
    char names[256][64];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len == 24 && strcmp(e->d_name + 20, ".seg") == 0 && n < 256)
            memcpy(names[n++], e->d_name, len + 1);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    int kept = 0;
    for (int i = 0; i < n && kept < max; i++) {
        int len = snprintf(out[kept].path, sizeof out[kept].path, "%s/%s", dir, names[i]);
        cr_assert(len > 0 && (size_t)len < sizeof out[kept].path, "path too long: %s", dir);
        struct stat st;
        if (stat(out[kept].path, &st) != 0) {
            /* removed meanwhile by a running broker's retention */
            cr_assert_eq(errno, ENOENT, "stat %s: %s", out[kept].path, strerror(errno));
            continue;
        }
        out[kept++].size = (long long)st.st_size;
    }
    return kept;
}

static unsigned char *read_all(const char *path, long long *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
    struct stat st;
    cr_assert(fstat(fd, &st) == 0);
    unsigned char *buf = keep(malloc((size_t)st.st_size + 1));
    cr_assert(read(fd, buf, (size_t)st.st_size) == st.st_size);
    close(fd);
    *size = (long long)st.st_size;
    return buf;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

#define BLOCK_HEADER 56
#define BLOCK_MAGIC 0x56474231u
#define BLOCK_MSGS 1

/* A block's header as docs/operations.md ("The data directory") and
 * broker/block.h lay it out: magic at 0, body_len (topic included) at 4,
 * first_seq at 8, count at 40, topic_len at 44, kind at 46. */
typedef struct {
    long long off;
    uint32_t body_len, count;
    uint64_t first_seq;
    unsigned kind, topic_len;
} blk;

/* Walks a segment's blocks into out[]; returns their count, or -1 if the
 * walk does not end exactly at the file's end (the layout is not the one
 * these tests assume: the exact checks are then skipped, and said so). */
static int walk_blocks(const unsigned char *buf, long long size, blk *out, int max)
{
    long long at = 0;
    int n = 0;
    while (at < size) {
        if (size - at < BLOCK_HEADER || be32(buf + at) != BLOCK_MAGIC || n == max)
            return -1;
        const unsigned char *h = buf + at;
        out[n] = (blk){.off = at, .body_len = be32(h + 4), .first_seq = be64(h + 8),
                       .count = be32(h + 40), .topic_len = (unsigned)h[44] << 8 | h[45],
                       .kind = h[46]};
        at += BLOCK_HEADER + (long long)out[n].body_len;
        n++;
    }
    return at == size ? n : -1;
}

/* ---- 1. kill -9, ten times ---- */

/* durable: the subscriber is "sub --durable d1" (the broker keeps its
 * position), else a plain "sub --since first" (the client keeps it). */
static void killed_ten_times(bool durable)
{
    enum { N = 4000, KILLS = 10 };
    uint64_t seed = seed_rng();
    fprintf(stderr, "durable::broker_killed_ten_times (%s): seed %llu (VIGIL_TEST_SEED replays it)\n",
            durable ? "durable subscriber" : "plain subscriber", (unsigned long long)seed);
    cr_log_info("seed %llu", (unsigned long long)seed);
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, "--fsync", "always", "--segment-bytes", "131072",
                         NULL);
    cr_assert(strstr(b->err, "event=store_opened") != NULL, "%s", h_tail(b->err));
    h_proc *s = durable ? h_sub(port, FAST_RETRY, "--durable", "d1", "k9", NULL)
                        : h_sub(port, FAST_RETRY, "--since", "first", "k9", NULL);
    char count[16];
    snprintf(count, sizeof count, "%d", N);
    h_proc *p = h_pub_start(port, FAST_RETRY, "--timeout", h_secs(60), "--buffer", "16M", "--count",
                            count, "--interval", "0.002", "k9", "k-{n}", NULL);
    char delays[KILLS * 8] = "";
    for (int k = 0; k < KILLS; k++) {
        int delay = 100 + (int)(rng() % 601);
        snprintf(delays + strlen(delays), sizeof delays - strlen(delays), " %d", delay);
        h_step("kill %d of %d: %d ms of publishing first", k + 1, KILLS, delay);
        int64_t until = h_now_ms() + delay;
        while (h_now_ms() < until)
            h_pump(b, (int)(until - h_now_ms()));
        h_step(NULL);
        cr_assert(!b->exited, "the broker died by itself before kill %d: %s", k + 1, h_tail(b->err));
        kill9(b);
        b = h_broker_at(port, "--data-dir", dir, "--fsync", "always", "--segment-bytes", "131072",
                        NULL);
        cr_assert(strstr(b->err, "event=store_opened") != NULL, "restart %d: %s", k + 1,
                  h_tail(b->err));
    }
    cr_log_info("kill delays (ms):%s", delays);
    int printed_at_last_kill = h_count(s->out, "\n");
    cr_assert(h_wait_exit(p, LONG_WAIT), "pub did not finish after the kills: %s", h_tail(p->err));
    cr_assert_eq(h_exit_code(p), 0, "pub did not have every message confirmed: %s", h_tail(p->err));
    cr_assert(h_wait_out(s, line_of("k9", "k-", N), LONG_WAIT),
              "the subscriber did not get k-%d; it printed %d lines; its log: %s", N,
              h_count(s->out, "\n"), h_tail(s->err));
    int n;
    int *v = numbers(s->out, "k9", "k-", false, &n);
    assert_run(v, n, 1, N, "the subscriber");
    release(v);
    cr_assert(strstr(s->err, "event=gap") == NULL, "a gap across kill -9 with --fsync always: %s",
              h_tail(s->err));
    cr_assert(strstr(s->err, "broker_restarted") == NULL,
              "the epoch changed across kill -9 with --fsync always: %s", h_tail(s->err));
    cr_log_info("%d messages, each once, in order, across %d kills (%d printed by the last kill)", N,
                KILLS, printed_at_last_kill);
    h_free(p), h_free(s), h_free(b);
}

Test(durable, broker_killed_ten_times_loses_and_repeats_nothing, .fini = cleanup)
{
    killed_ten_times(true);
}

/* The same with a plain subscriber: the broker's log and epoch alone. */
Test(durable, broker_killed_ten_times_a_plain_subscriber_misses_nothing, .fini = cleanup)
{
    killed_ten_times(false);
}

/* ---- 2. a torn tail ---- */

/* Publishes a-1..a-100, then in a second publisher tail-1..tail-20, 2 ms
 * apart (so the last block holds only tail messages, likely not all of
 * them), kills the broker, cuts 7 bytes off the last segment and restarts
 * it with the same --fsync policy. Returns the broker; *port its port;
 * what the last block held, from its header (-1: not known). */
static h_proc *torn_tail_setup(const char *dir, const char *fsync, int *port, h_proc **live_sub,
                               long long *cut_expected, int *cut_count)
{
    h_proc *b = h_broker(port, "--data-dir", dir, "--fsync", fsync, NULL);
    if (live_sub != NULL)
        *live_sub = h_sub(*port, FAST_RETRY, "--since", "first", "torn", NULL);
    cr_assert_eq(h_pub(*port, "--count", "100", "--interval", "0.0005", "torn", "a-{n}", NULL), 0);
    cr_assert_eq(h_pub(*port, "--count", "20", "--interval", "0.002", "torn", "tail-{n}", NULL), 0);
    if (live_sub != NULL)
        cr_assert(h_wait_out(*live_sub, line_of("torn", "tail-", 20), WAIT),
                  "the live subscriber did not get tail-20: %s", h_tail((*live_sub)->err));
    kill9(b);

    seg_file segs[64];
    int nsegs = segments(dir, segs, 64);
    cr_assert(nsegs >= 1, "no segment file in %s", dir);
    seg_file *last = &segs[nsegs - 1];
    long long size;
    unsigned char *buf = read_all(last->path, &size);
    static blk blocks[4096];
    int nblocks = walk_blocks(buf, size, blocks, 4096);
    release(buf);
    *cut_expected = -1;
    *cut_count = -1;
    if (nblocks > 0) {
        /* The broker cuts what is left of the last block. */
        blk *lb = &blocks[nblocks - 1];
        *cut_expected = size - 7 - lb->off;
        if (lb->kind == BLOCK_MSGS)
            *cut_count = (int)lb->count;
        cr_log_info("%s: %lld bytes, %d blocks, the last at %lld (kind %u, seq %llu, %u messages)",
                    last->path, size, nblocks, lb->off, lb->kind,
                    (unsigned long long)lb->first_seq, lb->count);
    } else {
        cr_log_warn("%s: its blocks do not walk as 56-byte header + body_len: the exact"
                    " count cut is not checked", last->path);
    }
    cr_assert(size > 7);
    cr_assert(truncate(last->path, size - 7) == 0, "truncate %s: %s", last->path, strerror(errno));
    return h_broker_at(*port, "--data-dir", dir, "--fsync", fsync, NULL);
}

static void assert_truncated_line(const h_proc *b, long long cut_expected)
{
    char line[1024];
    cr_assert(find_line(b->err, "event=store_truncated", line, sizeof line) != NULL,
              "no store_truncated after a torn tail: %s", h_tail(b->err));
    long long bytes, offset;
    cr_assert(field_num(line, "bytes", &bytes) && bytes > 0, "%s", line);
    cr_assert(field_num(line, "offset", &offset) && offset >= 0, "%s", line);
    cr_assert(strstr(line, "level=warn") != NULL, "%s", line);
    if (cut_expected >= 0)
        cr_assert_eq(bytes, cut_expected, "cut %lld bytes, the rest of the last block is %lld: %s",
                     bytes, cut_expected, line);
    const char *opened = strstr(b->err, "event=store_opened");
    cr_assert(opened != NULL && opened > strstr(b->err, "event=store_truncated"),
              "store_opened does not follow store_truncated: %s", h_tail(b->err));
    cr_log_info("%s", line);
}

Test(durable, a_torn_tail_loses_only_its_last_block, .fini = cleanup)
{
    const char *dir = new_dir("data");
    int port;
    long long cut_expected;
    int cut_count;
    h_proc *b = torn_tail_setup(dir, "always", &port, NULL, &cut_expected, &cut_count);
    assert_truncated_line(b, cut_expected);

    /* Everything from the first: a-1..a-100, then a prefix of the tail
     * messages (those of the cut block are simply absent: it was the end of
     * the log, nothing followed it), then what is published now. */
    h_proc *s = h_sub(port, "--since", "first", "torn", NULL);
    cr_assert_eq(h_pub(port, "--count", "5", "torn", "after-{n}", NULL), 0,
                 "publishing after the restart failed");
    cr_assert(h_wait_out(s, line_of("torn", "after-", 5), WAIT), "sub did not get after-5: %s\n%s",
              h_tail(s->out), h_tail(s->err));
    int na, nt, nafter;
    int *a = numbers(s->out, "torn", "a-", true, &na);
    int *t = numbers(s->out, "torn", "tail-", true, &nt);
    int *af = numbers(s->out, "torn", "after-", true, &nafter);
    assert_run(a, na, 1, 100, "the a- messages (before the cut block)");
    for (int i = 0; i < nt; i++)
        cr_assert_eq(t[i], i + 1, "tail messages: line %d is tail-%d", i + 1, t[i]);
    cr_assert_lt(nt, 20, "the torn block's messages were served: tail-1..tail-%d", nt);
    if (cut_count >= 0)
        cr_assert_eq(nt, 20 - cut_count, "the torn block held %d messages, yet tail-1..tail-%d came",
                     cut_count, nt);
    assert_run(af, nafter, 1, 5, "the after- messages");
    /* In order: the a's, then the tail's, then the after's. */
    const char *last_a = strstr(s->out, line_of("torn", "a-", 100));
    const char *first_after = strstr(s->out, line_of("torn", "after-", 1));
    cr_assert(last_a < first_after, "after-1 came before a-100");
    if (nt > 0) {
        const char *tail1 = strstr(s->out, line_of("torn", "tail-", 1));
        cr_assert(last_a < tail1 && tail1 < first_after, "the tail messages are out of order");
    }
    cr_assert(strstr(s->err, "event=gap") == NULL,
              "a gap for a torn tail: the cut block was the end of the log: %s", h_tail(s->err));
    cr_log_info("the torn block held tail-%d..tail-20 (%d messages)", nt + 1, 20 - nt);
    release(a), release(t), release(af);
    h_free(s), h_free(b);
}

/* A subscriber that had received the torn block's messages before the kill
 * reconnects to a log that ends before them. With --fsync always that
 * cannot happen short of a disk that lies (readers get only synced
 * records, and a torn tail is an unsynced write), so the epoch is kept;
 * run as it can happen, with --fsync never: the unclean stop starts a new
 * epoch, the subscriber is told (broker_restarted), and what is published
 * afterwards reaches it, none of it mistaken for a duplicate of a lost
 * sequence number. */
Test(durable, a_torn_tail_after_an_unsynced_crash_is_a_new_epoch_to_a_live_subscriber, .fini = cleanup)
{
    const char *dir = new_dir("data");
    int port;
    long long cut_expected;
    int cut_count;
    h_proc *live;
    h_proc *b = torn_tail_setup(dir, "never", &port, &live, &cut_expected, &cut_count);
    assert_truncated_line(b, cut_expected);
    cr_assert(strstr(b->err, "event=epoch_changed") != NULL, "%s", h_tail(b->err));
    cr_assert(h_wait_err(live, "event=reconnected", WAIT), "%s", h_tail(live->err));
    cr_assert_eq(h_pub(port, "--count", "25", "torn", "after-{n}", NULL), 0);
    bool got = h_wait_out(live, line_of("torn", "after-", 25), WAIT);
    int nafter;
    int *af = numbers(live->out, "torn", "after-", true, &nafter);
    cr_assert(got && nafter == 25,
              "the subscriber that had read tail-20 got %d of after-1..after-25 published after"
              " the restart (it %s; its stdout's end: %s)\nits log: %s\nbroker: %s",
              nafter, live->exited ? "exited" : "is still running", h_tail(live->out),
              h_tail(live->err), h_tail(b->err));
    assert_run(af, nafter, 1, 25, "the after- messages");
    release(af);
    cr_assert(strstr(live->err, "reason=broker_restarted") != NULL,
              "the subscriber was not told of the new epoch: %s", h_tail(live->err));
    h_free(live), h_free(b);
}

/* ---- 3. a flipped byte ---- */

/* in_header: the byte flipped is in the block's header (its first_seq), so
 * the broker cannot read the block's range there: it must still find the
 * next good block, and the hole it leaves is the same exact gap. */
static void flip_run(bool in_header)
{
    enum { N = 3000 };
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, "--segment-bytes", "65536", NULL);
    static char payload[160];
    char count[16];
    snprintf(count, sizeof count, "%d", N);
    cr_assert_eq(h_pub(port, "--count", count, "--interval", "0.0003", "flip",
                       padded(payload, sizeof payload - 1, "m"), NULL),
                 0);
    h_signal(b, SIGTERM);
    cr_assert(h_wait_exit(b, WAIT));
    h_free(b);

    seg_file segs[256];
    int nsegs = segments(dir, segs, 256);
    cr_assert_geq(nsegs, 3, "%d segments of 64 KiB for ~%d KB of messages", nsegs, N * 190 / 1000);
    long long size;
    unsigned char *buf = read_all(segs[0].path, &size);
    static blk blocks[8192];
    int nblocks = walk_blocks(buf, size, blocks, 8192);
    long long at = size / 2, block_at = -1, want_from = -1, want_to = -1;
    if (nblocks > 0) {
        /* A byte in the middle of the messages of the block that holds
         * the most messages in the middle half of the file: its header
         * stays intact, so the broker knows which messages it loses. */
        int i = -1;
        for (int k = 0; k < nblocks; k++)
            if (blocks[k].kind == BLOCK_MSGS && blocks[k].off >= size / 4 &&
                blocks[k].off <= size * 3 / 4 && (i < 0 || blocks[k].count > blocks[i].count))
                i = k;
        cr_assert_geq(i, 0, "no block of messages in the middle of %s", segs[0].path);
        blk *d = &blocks[i];
        block_at = d->off;
        want_from = (long long)d->first_seq;
        want_to = want_from + d->count - 1;
        at = in_header ? d->off + 12
                       : d->off + BLOCK_HEADER + d->topic_len + (d->body_len - d->topic_len) / 2;
        cr_log_info("%s: %lld bytes, %d blocks; flipping byte %lld, in the %s of block %d at"
                    " %lld (seq %lld..%lld)",
                    segs[0].path, size, nblocks, at, in_header ? "header" : "body", i, block_at,
                    want_from, want_to);
        cr_assert_geq(nblocks, 4, "the first segment holds only %d blocks", nblocks);
    } else {
        cr_assert(!in_header, "%s: its blocks do not walk as 56-byte header + body_len: no header"
                  " to flip a byte in", segs[0].path);
        cr_log_warn("%s: its blocks do not walk as 56-byte header + body_len: flipping"
                    " its middle byte, the block's offset and range are not checked", segs[0].path);
    }
    release(buf);
    int fd = open(segs[0].path, O_RDWR | O_CLOEXEC);
    cr_assert(fd >= 0);
    unsigned char byte;
    cr_assert(pread(fd, &byte, 1, at) == 1);
    byte ^= 0xff;
    cr_assert(pwrite(fd, &byte, 1, at) == 1);
    close(fd);

    b = h_broker_at(port, "--data-dir", dir, "--segment-bytes", "65536", NULL);
    char line[1024];
    cr_assert(find_line(b->err, "event=store_damaged", line, sizeof line) != NULL,
              "no store_damaged for a flipped byte: %s", h_tail(b->err));
    cr_log_info("%s", line);
    long long from, to, offset, bytes;
    char topic[64];
    cr_assert(strstr(line, "level=warn") != NULL, "%s", line);
    cr_assert(field_num(line, "offset", &offset) && field_num(line, "bytes", &bytes), "%s", line);
    if (in_header) {
        /* The header is what is damaged: what it said is unknown. */
        from = want_from, to = want_to;
        cr_assert_eq(offset, block_at, "the damaged block is at %lld: %s", block_at, line);
        cr_assert_geq(bytes, BLOCK_HEADER, "%s", line);
    } else {
        cr_assert(field_str(line, "topic", topic, sizeof topic) && strcmp(topic, "flip") == 0,
                  "%s", line);
        cr_assert(field_num(line, "from", &from) && field_num(line, "to", &to), "%s", line);
    }
    cr_assert(1 <= from && from <= to && to < N, "%s", line);
    if (block_at >= 0 && !in_header) {
        cr_assert_eq(offset, block_at, "the damaged block is at %lld: %s", block_at, line);
        cr_assert(from == want_from && to == want_to, "the damaged block holds %lld..%lld: %s",
                  want_from, want_to, line);
    }
    cr_assert_eq(h_count(b->err, "event=store_damaged"), 1, "%s", h_tail(b->err));

    h_proc *s = h_sub(port, "--since", "first", "flip", NULL);
    cr_assert(h_wait_out(s, "-3000\n", WAIT),
              "sub did not get message %d: %s", N, h_tail(s->err));
    int n;
    int *v = numbers(s->out, "flip", "m", false, &n);
    int want = 1;
    for (int i = 0; i < n; i++, want++) {
        if (want == from)
            want = (int)to + 1;
        cr_assert_eq(v[i], want, "line %d is m-%d, expected m-%d (damaged: %lld..%lld)", i + 1, v[i],
                     want, from, to);
    }
    cr_assert_eq(want, N + 1, "sub printed %d lines", n);
    release(v);
    char gap[1024];
    cr_assert(find_line(s->err, "event=gap", gap, sizeof gap) != NULL,
              "the damaged range was not reported as a gap: %s", h_tail(s->err));
    long long gfrom, gto, missed;
    char gtopic[64];
    cr_assert(field_str(gap, "topic", gtopic, sizeof gtopic) && strcmp(gtopic, "flip") == 0, "%s",
              gap);
    cr_assert(field_num(gap, "from", &gfrom) && field_num(gap, "to", &gto) &&
                  field_num(gap, "missed", &missed),
              "%s", gap);
    cr_assert(gfrom == from && gto == to && missed == to - from + 1,
              "gap %s, the broker said %lld..%lld damaged", gap, from, to);
    cr_assert_eq(h_count(s->err, "event=gap"), 1, "%s", h_tail(s->err));
    cr_assert(!b->exited, "the broker died: %s", h_tail(b->err));
    h_assert_serves(port);
    h_free(s), h_free(b);
}

Test(durable, a_flipped_byte_is_an_exact_gap, .fini = cleanup)
{
    flip_run(false);
}

Test(durable, a_flipped_byte_in_a_header_is_an_exact_gap_too, .fini = cleanup)
{
    flip_run(true);
}

/* ---- 4. a full disk ---- */

Test(durable, a_full_disk_holds_publishers_back_and_loses_nothing, .fini = cleanup)
{
    enum { N = 8000 };
    if (geteuid() != 0)
        cr_skip_test("needs root to mount a small tmpfs (running as uid %u)", (unsigned)geteuid());
    const char *dir = new_dir("small");
    if (!mount_tmpfs(dir, 0, "size=4m,mode=0700"))
        cr_skip_test("cannot mount a 4 MiB tmpfs on %s: %s", dir, strerror(errno));
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, "--segment-bytes", "262144", "--retention-bytes",
                         "64M", NULL);
    h_proc *s = h_sub(port, FAST_RETRY, "full", NULL);
    static char payload[1000];
    char count[16];
    snprintf(count, sizeof count, "%d", N);
    h_proc *p = h_pub_start(port, FAST_RETRY, "--timeout", h_secs(60), "--buffer", "32M", "--count",
                            count, "full", padded(payload, sizeof payload - 1, "f"), NULL);
    cr_assert(h_wait_err(b, "event=storage_failed", WAIT),
              "8 MB of messages into a 4 MiB file system and no storage_failed: %s", h_tail(b->err));
    char line[1024];
    find_line(b->err, "event=storage_failed", line, sizeof line);
    cr_log_info("%s", line);
    cr_assert(strstr(line, "level=error") != NULL && strstr(line, " op=") != NULL &&
                  strstr(line, "No space left on device") != NULL,
              "%s", line);
    /* The subscriber goes on reading what was stored before the fill (well
     * over 1,000 messages of 1 KB fit in 4 MiB). */
    int64_t deadline = h_now_ms() + WAIT;
    h_step("waiting for the subscriber to print 1000 lines while the disk is full");
    while (h_count(s->out, "\n") < 1000 && h_now_ms() < deadline)
        h_pump(s, 50);
    h_step(NULL);
    int n;
    int *v = numbers(s->out, "full", "f", false, &n);
    cr_assert_geq(n, 1000, "the subscriber printed only %d messages with the disk full: %s", n,
                  h_tail(s->err));
    assert_run(v, n, 1, n, "the subscriber with the disk full");
    release(v);
    cr_assert(!s->exited && !p->exited, "sub or pub gave up with the disk full:\nsub: %s\npub: %s",
              h_tail(s->err), h_tail(p->err));
    cr_assert(strstr(s->err, "event=disconnected") == NULL,
              "the subscriber was disconnected by a full disk: %s", h_tail(s->err));
    int before = n;

    cr_assert(mount(NULL, dir, NULL, MS_REMOUNT, "size=64m") == 0, "remount %s: %s", dir,
              strerror(errno));
    cr_assert(h_wait_err(b, "event=storage_recovered", WAIT),
              "space came back and no storage_recovered: %s", h_tail(b->err));
    cr_assert(h_wait_exit(p, LONG_WAIT), "pub did not finish once space came back: %s",
              h_tail(p->err));
    cr_assert_eq(h_exit_code(p), 0, "pub exited %d: %s", h_exit_code(p), h_tail(p->err));
    char last[32];
    snprintf(last, sizeof last, "-%d\n", N);
    deadline = h_now_ms() + WAIT;
    h_step("waiting for the subscriber to print message %d", N);
    while (strstr(s->out, last) == NULL && h_now_ms() < deadline)
        h_pump(s, 50);
    h_step(NULL);
    v = numbers(s->out, "full", "f", false, &n);
    assert_run(v, n, 1, N, "the subscriber after the disk had room again");
    release(v);
    cr_assert(strstr(s->err, "event=gap") == NULL, "%s", h_tail(s->err));
    cr_log_info("%d messages printed while the disk was full, %d in all, each once, in order; pub:"
                " %d ERR storage",
                before, N, h_count(p->err, "storage"));
    h_free(p), h_free(s), h_free(b);
}

/* ---- 5. start-up refusals ---- */

Test(durable, an_unusable_data_dir_is_refused_at_start, .fini = cleanup)
{
    char line[1024];
    /* A path under a regular file (ENOTDIR: root's permissions bypass
     * cannot help). */
    char file[700], under[720];
    snprintf(file, sizeof file, "%s/plain-file", base_dir());
    int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert(fd >= 0);
    close(fd);
    snprintf(under, sizeof under, "%s/data", file);
    h_proc *b = broker_refused("a data dir under a regular file", "--data-dir", under, NULL);
    assert_error_line(b, under, "a data dir under a regular file", line, sizeof line);
    cr_log_info("under a file: %s", line);
    h_free(b);

    /* A read-only file system (root only). */
    const char *ro = new_dir("ro");
    if (geteuid() == 0 && mount_tmpfs(ro, MS_RDONLY, "size=1m")) {
        b = broker_refused("a read-only data dir", "--data-dir", ro, NULL);
        assert_error_line(b, ro, "a read-only data dir", line, sizeof line);
        cr_log_info("read-only: %s", line);
        h_free(b);
    } else {
        cr_log_warn("the read-only case is not run: cannot mount a read-only tmpfs (uid %u): %s",
                    (unsigned)geteuid(), strerror(errno));
    }
}

Test(durable, a_data_dir_in_use_is_refused, .fini = cleanup)
{
    const char *dir = new_dir("data");
    int port;
    h_proc *first = h_broker(&port, "--data-dir", dir, NULL);
    cr_assert_eq(h_pub(port, "kept", "before", NULL), 0);
    h_proc *second = broker_refused("a second broker on a locked data dir", "--data-dir", dir, NULL);
    char line[1024];
    assert_error_line(second, dir, "a second broker on a locked data dir", line, sizeof line);
    cr_assert(strcasestr(line, "lock") != NULL, "the error does not mention the lock: %s", line);
    cr_log_info("%s", line);
    h_free(second);
    /* The first one is unharmed, its log intact. */
    cr_assert(!first->exited, "%s", h_tail(first->err));
    h_assert_serves(port);
    h_proc *s = h_sub(port, "--since", "first", "kept", NULL);
    cr_assert(h_wait_out(s, "kept MSG_TYPE1 before\n", WAIT), "%s", h_tail(s->err));
    h_free(s), h_free(first);
}

Test(durable, a_data_dir_of_another_version_is_refused_and_left_alone, .fini = cleanup)
{
    const char *dir = new_dir("data");
    char meta[700];
    snprintf(meta, sizeof meta, "%s/vigil.meta", dir);
    /* A real store first, so that there is something a fresh start would lose. */
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, NULL);
    cr_assert_eq(h_pub(port, "--count", "3", "v", "m-{n}", NULL), 0);
    h_signal(b, SIGTERM);
    cr_assert(h_wait_exit(b, WAIT));
    h_free(b);
    long long size;
    unsigned char *was = read_all(meta, &size);
    cr_assert(strncmp((char *)was, "vigil-data 1\n", 13) == 0, "vigil.meta: %.*s", (int)size, was);
    release(was);
    FILE *f = fopen(meta, "w");
    cr_assert(f != NULL);
    fputs("vigil-data 99\n", f);
    fclose(f);
    seg_file before[64];
    int nbefore = segments(dir, before, 64);

    b = broker_refused("vigil-data 99", "--data-dir", dir, NULL);
    char line[1024];
    assert_error_line(b, dir, "vigil-data 99", line, sizeof line);
    cr_log_info("%s", line);
    h_free(b);
    unsigned char *now = read_all(meta, &size);
    cr_assert(size == 14 && memcmp(now, "vigil-data 99\n", 14) == 0,
              "the broker rewrote vigil.meta: %.*s", (int)size, now);
    release(now);
    seg_file after[64];
    int nafter = segments(dir, after, 64);
    cr_assert_eq(nafter, nbefore, "segments changed");
    for (int i = 0; i < nafter; i++)
        cr_assert(strcmp(after[i].path, before[i].path) == 0 && after[i].size == before[i].size,
                  "%s changed", after[i].path);

    /* And a meta that is not a vigil one at all. */
    f = fopen(meta, "w");
    cr_assert(f != NULL);
    fputs("something else\n", f);
    fclose(f);
    b = broker_refused("a foreign vigil.meta", "--data-dir", dir, NULL);
    assert_error_line(b, dir, "a foreign vigil.meta", line, sizeof line);
    h_free(b);
}

Test(durable, without_a_data_dir_the_broker_says_it_is_memory_only)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    char line[512];
    cr_assert(find_line(b->err, "event=memory_only", line, sizeof line) != NULL,
              "no memory_only without --data-dir: %s", h_tail(b->err));
    cr_assert(strstr(line, "level=warn") != NULL, "%s", line);
    cr_assert(strstr(b->err, "event=store_opened") == NULL, "%s", h_tail(b->err));
    const char *mem = strstr(b->err, "event=memory_only"), *listening = strstr(b->err, "event=listening");
    cr_assert(mem < listening, "memory_only after listening: %s", h_tail(b->err));
    h_free(b);
}

Test(durable, store_opened_is_logged_before_listening, .fini = cleanup)
{
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, NULL);
    char line[1024];
    cr_assert(find_line(b->err, "event=store_opened", line, sizeof line) != NULL, "%s",
              h_tail(b->err));
    const char *opened = strstr(b->err, "event=store_opened"), *listening = strstr(b->err, "event=listening");
    cr_assert(opened < listening, "%s", h_tail(b->err));
    long long segs, records, bytes, ms;
    cr_assert(field_num(line, "segments", &segs) && field_num(line, "records", &records) &&
                  field_num(line, "bytes", &bytes) && field_num(line, "recovered_ms", &ms) &&
                  strstr(line, " epoch=") != NULL && strstr(line, dir) != NULL,
              "%s", line);
    cr_assert_eq(records, 0, "%s", line);
    cr_assert(strstr(b->err, "event=memory_only") == NULL, "%s", h_tail(b->err));
    char meta[700];
    snprintf(meta, sizeof meta, "%s/vigil.meta", dir);
    long long size;
    unsigned char *m = read_all(meta, &size);
    cr_assert(size >= 13 && memcmp(m, "vigil-data 1\n", 13) == 0, "vigil.meta: %.*s", (int)size, m);
    release(m);
    cr_assert_eq(h_pub(port, "--count", "10", "o", "m-{n}", NULL), 0);
    h_signal(b, SIGTERM);
    cr_assert(h_wait_exit(b, WAIT));
    h_free(b);
    b = h_broker_at(port, "--data-dir", dir, NULL);
    cr_assert(find_line(b->err, "event=store_opened", line, sizeof line) != NULL, "%s",
              h_tail(b->err));
    cr_assert(field_num(line, "records", &records) && records == 10, "%s", line);
    cr_log_info("%s", line);
    h_free(b);
}

/* ---- 6. a durable subscriber's own process restarted ---- */

/* Starts sub --durable name, then a publisher of n messages "w...-N", one a
 * millisecond, and stops the sub with sig once it has printed k lines,
 * while it is keeping up (its stdout is read at once). Returns the numbers
 * the first process printed (*n1), and in *acked_before how many it had
 * printed 200 ms (scaled) before the signal: those must have been
 * acknowledged by then (acks go within ~20 ms). Waits for the publisher to
 * have every message confirmed. */
static int *first_process(int port, const char *name, const char *topic, int n, int k, int sig,
                          int *n1, int *acked_before)
{
    static char payload[64];
    char count[16];
    snprintf(count, sizeof count, "%d", n);
    h_proc *s = h_sub(port, "--durable", name, topic, NULL);
    h_proc *p = h_pub_start(port, "--timeout", h_secs(30), "--count", count, "--interval", "0.001",
                            topic, padded(payload, sizeof payload - 1, "w"), NULL);
    enum { HISTORY = 8192 };
    static int64_t when[HISTORY];
    static int lines[HISTORY];
    int steps = 0;
    int64_t deadline = h_now_ms() + WAIT;
    h_step("waiting for sub --durable %s to print %d lines", name, k);
    while (h_count(s->out, "\n") < k) {
        cr_assert(h_now_ms() < deadline && !s->exited && !p->exited,
                  "sub printed only %d lines: %s\npub: %s", h_count(s->out, "\n"), h_tail(s->err),
                  h_tail(p->err));
        h_pump(s, 10);
        if (steps < HISTORY) {
            when[steps] = h_now_ms();
            lines[steps++] = h_count(s->out, "\n");
        }
    }
    h_step(NULL);
    h_signal(s, sig);
    int64_t at = h_now_ms();
    *acked_before = 0;
    for (int i = 0; i < steps && when[i] <= at - h_ms(200); i++)
        *acked_before = lines[i];
    cr_assert(h_wait_exit(s, WAIT), "sub did not stop on signal %d", sig);
    int *v = numbers(s->out, topic, "w", false, n1);
    assert_run(v, *n1, 1, *n1, "the first sub process");
    cr_log_info("first process: printed 1..%d (%d of them 200 ms before signal %d)", *n1,
                *acked_before, sig);
    h_free(s);
    cr_assert(h_wait_exit(p, LONG_WAIT), "pub did not finish: %s", h_tail(p->err));
    cr_assert_eq(h_exit_code(p), 0, "%s", h_tail(p->err));
    cr_assert_lt(*n1, n, "the first process printed everything: the test tested nothing");
    h_free(p);
    return v;
}

Test(durable, a_durable_subscriber_killed_resumes_with_at_most_a_short_repeat, .fini = cleanup)
{
    enum { N = 2000 };
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, NULL);
    int n1, acked_before;
    int *v1 = first_process(port, "w1", "wk", N, 900, SIGKILL, &n1, &acked_before);
    h_proc *s = h_sub(port, "--durable", "w1", "wk", NULL);
    cr_assert(h_wait_out(s, "-2000\n", WAIT),
              "the second process did not get message %d: %s", N, h_tail(s->err));
    int n2;
    int *v2 = numbers(s->out, "wk", "w", false, &n2);
    cr_assert_gt(n2, 0);
    int f2 = v2[0];
    cr_assert_leq(f2, n1 + 1, "the second process starts at %d: %d..%d were never printed", f2,
                  n1 + 1, f2 - 1);
    cr_assert_gt(f2, acked_before,
                 "the second process starts at %d, repeating what the first printed 200 ms before"
                 " it was killed (1..%d): acks were not sent within ~20 ms",
                 f2, acked_before);
    assert_run(v2, n2, f2, N, "the second sub process");
    cr_log_info("second process: %d..%d (%d repeated)", f2, N, n1 + 1 - f2);
    h_signal(s, SIGTERM);
    cr_assert(h_wait_exit(s, WAIT));
    char obj[512];
    wait_durable_idle(port, "w1", N, obj, sizeof obj);
    cr_assert_eq(json_num(obj, "acked"), N, "%s", obj);
    cr_assert_eq(json_num(obj, "next"), N + 1, "%s", obj);
    release(v1), release(v2);
    h_free(s), h_free(b);
}

Test(durable, a_durable_subscriber_stopped_cleanly_resumes_with_no_repeat, .fini = cleanup)
{
    enum { N = 2000 };
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, NULL);
    int n1, acked_before;
    int *v1 = first_process(port, "w1", "wt", N, 900, SIGTERM, &n1, &acked_before);
    char obj[512];
    wait_durable_idle(port, "w1", 0, obj, sizeof obj);
    cr_assert_eq(json_num(obj, "acked"), n1, "SIGTERM did not flush the acks: printed 1..%d; %s",
                 n1, obj);
    h_proc *s = h_sub(port, "--durable", "w1", "wt", NULL);
    cr_assert(h_wait_out(s, "-2000\n", WAIT),
              "the second process did not get message %d: %s", N, h_tail(s->err));
    int n2;
    int *v2 = numbers(s->out, "wt", "w", false, &n2);
    assert_run(v2, n2, n1 + 1, N, "the second sub process (after a SIGTERM, nothing repeats)");
    release(v1), release(v2);
    h_free(s), h_free(b);
}

/* The same with everything published first and the sub's stdout read
 * slowly (4 KiB every 20 ms, ~220-byte lines): the sub is blocked writing
 * stdout most of the time, with messages received and not yet printed.
 * Returns what the first process printed (*n1). */
static int *first_process_slow(int port, const char *name, const char *topic, int n, int k, int sig,
                          int *n1, int *acked_before)
{
    static char payload[220];
    char count[16];
    snprintf(count, sizeof count, "%d", n);
    cr_assert_eq(h_pub(port, "--count", count, topic, padded(payload, sizeof payload - 1, "w"),
                       NULL),
                 0);
    h_proc *s = sub_start(port, "--durable", name, topic, NULL);
    s->throttled = true; /* before anything reads its stdout */
    cr_assert(h_wait_err(s, "event=subscribed", WAIT), "%s", h_tail(s->err));
    enum { HISTORY = 4096 };
    static int64_t when[HISTORY];
    static int lines[HISTORY];
    int steps = 0;
    int64_t deadline = h_now_ms() + WAIT;
    h_step("reading sub --durable %s slowly until %d lines", name, k);
    while (h_count(s->out, "\n") < k) {
        cr_assert(h_now_ms() < deadline && !s->exited, "sub printed only %d lines: %s",
                  h_count(s->out, "\n"), h_tail(s->err));
        h_read_some(s, 4096);
        if (steps < HISTORY) {
            when[steps] = h_now_ms();
            lines[steps++] = h_count(s->out, "\n");
        }
        h_pump(s, 20);
    }
    h_step(NULL);
    h_signal(s, sig);
    int64_t at = h_now_ms();
    *acked_before = 0;
    for (int i = 0; i < steps && when[i] <= at - h_ms(500); i++)
        *acked_before = lines[i];
    /* Still slowly for a moment, so that the sub's main thread sees the
     * signal before its output is free again (on a loaded machine the I/O
     * thread could print everything first); not scaled and well under
     * sub's 80 ms stop wait, after which it would leave with its output
     * (and acks) still blocked. */
    for (int64_t until = h_now_ms() + 30; h_now_ms() < until && !s->exited;) {
        h_read_some(s, 4096);
        h_pump(s, 10);
    }
    s->throttled = false; /* everything it printed, to the last byte */
    cr_assert(h_wait_exit(s, WAIT), "sub did not stop on signal %d", sig);
    int *v = numbers(s->out, topic, "w", false, n1);
    assert_run(v, *n1, 1, *n1, "the first sub process");
    cr_assert_lt(*n1, n, "the first process printed everything: the test tested nothing");
    cr_log_info("first process: printed 1..%d (%d read 500 ms before signal %d)", *n1, *acked_before,
                sig);
    h_free(s);
    return v;
}

/* SIGTERM while the sub is blocked on a slow stdout, with received
 * messages it has not printed: it acknowledges exactly what it printed. */
Test(durable, a_durable_subscriber_behind_a_slow_reader_acknowledges_only_what_it_printed,
     .fini = cleanup)
{
    enum { N = 6000 };
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, NULL);
    int n1, read_before;
    int *v1 = first_process_slow(port, "w1", "ws", N, 900, SIGTERM, &n1, &read_before);
    char obj[512];
    wait_durable_idle(port, "w1", 0, obj, sizeof obj);
    cr_assert_leq(json_num(obj, "acked"), n1, "acknowledged beyond what was printed (1..%d): %s",
                  n1, obj);
    cr_assert_eq(json_num(obj, "acked"), n1, "SIGTERM did not flush the acks: printed 1..%d; %s",
                 n1, obj);
    h_proc *s = h_sub(port, "--durable", "w1", "ws", NULL);
    cr_assert(h_wait_out(s, "-6000\n", WAIT), "the second process did not get message %d: %s", N,
              h_tail(s->err));
    int n2;
    int *v2 = numbers(s->out, "ws", "w", false, &n2);
    assert_run(v2, n2, n1 + 1, N, "the second sub process (after a SIGTERM, nothing repeats)");
    release(v1), release(v2);
    h_free(s), h_free(b);
}

/* ---- 7. takeover ---- */

Test(durable, a_second_connection_takes_a_durable_over, .fini = cleanup)
{
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, NULL);
    cr_assert_eq(h_pub(port, "--count", "10", "tk", "a-{n}", NULL), 0);
    h_proc *first = h_sub(port, FAST_RETRY, "--durable", "w2", "tk", NULL);
    cr_assert(h_wait_out(first, line_of("tk", "a-", 10), WAIT), "%s", h_tail(first->err));
    /* Its acks have reached the broker (the listing says so). */
    char obj[512];
    int64_t deadline = h_now_ms() + WAIT;
    for (;;) {
        char *json = list_durables(port);
        cr_assert(durable_entry(json, "w2", obj, sizeof obj), "w2 not listed: %s", json);
        release(json);
        cr_assert(strstr(obj, "\"connected\":true") != NULL, "%s", obj);
        if (json_num(obj, "acked") == 10)
            break;
        cr_assert(h_now_ms() < deadline, "acked never 10: %s", obj);
        h_pump(first, 50);
    }
    h_proc *second = h_sub(port, FAST_RETRY, "--durable", "w2", "tk", NULL);
    cr_assert(h_wait_err(first, "durable_taken", WAIT),
              "the first connection was not told its durable was taken: %s", h_tail(first->err));
    cr_assert_eq(h_pub(port, "--count", "10", "tk", "b-{n}", NULL), 0);
    cr_assert(h_wait_out(second, line_of("tk", "b-", 10), WAIT), "%s", h_tail(second->err));
    int nb;
    int *vb = numbers(second->out, "tk", "b-", false, &nb);
    assert_run(vb, nb, 1, 10, "the second connection (it resumes after a-10)");
    release(vb);
    /* A window for a message wrongly still sent to the first: it would
     * arrive about as fast as to the second. */
    int64_t until = h_now_ms() + h_ms(500);
    while (h_now_ms() < until)
        h_pump(first, 50);
    cr_assert(strstr(first->out, "b-") == NULL, "the first connection still receives: %s",
              h_tail(first->out));
    int na;
    int *va = numbers(first->out, "tk", "a-", false, &na);
    assert_run(va, na, 1, 10, "the first connection");
    release(va);
    cr_log_info("first after the takeover: %s; %s",
                first->exited ? "exited" : "still running", h_tail(first->err));
    /* If the first one reconnects, it must not take the durable back. */
    cr_assert_eq(h_pub(port, "tk", "c-1", NULL), 0);
    cr_assert(h_wait_out(second, "tk MSG_TYPE1 c-1\n", WAIT), "the second lost the durable: %s",
              h_tail(second->err));
    h_free(first), h_free(second), h_free(b);
}

/* ---- 8. fdatasync before confirm ---- */

/* The number at "store"."key" in a $SYS.stats JSON. */
static bool store_num(const char *json, const char *key, double *v)
{
    const char *store = strstr(json, "\"store\":{");
    if (store == NULL)
        return false;
    int depth = 0;
    const char *end = store + strlen("\"store\":");
    for (; *end != '\0'; end++) {
        if (*end == '{')
            depth++;
        else if (*end == '}' && --depth == 0)
            break;
    }
    char want[64];
    snprintf(want, sizeof want, "\"%s\":", key);
    const char *at = strstr(store, want);
    if (at == NULL || at > end)
        return false;
    char *after;
    *v = strtod(at + strlen(want), &after);
    return after != at + strlen(want);
}

Test(durable, no_publisher_is_confirmed_before_the_fdatasync_that_covers_it, .fini = cleanup)
{
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, "--fsync", "always", "--stats-interval", "0.2",
                         NULL);
    h_proc *p1 = h_pub_start(port, "--timeout", h_secs(60), "--count", "20000", "heavy.a", "a-{n}",
                             NULL);
    h_proc *p2 = h_pub_start(port, "--timeout", h_secs(60), "--count", "20000", "heavy.b",
                             "b-{n}-with-a-somewhat-longer-payload", NULL);
    /* Meanwhile many short publishers, one after another in a few lanes:
     * each exit 0 is one more confirm that had to wait for a sync. */
    enum { LANES = 4, SHORT = 40 };
    h_proc *lane[LANES] = {0};
    int started = 0, done = 0;
    int64_t deadline0 = h_now_ms() + LONG_WAIT;
    h_step("short publishers: %d of %d done", done, SHORT);
    while (done < SHORT) {
        cr_assert(h_now_ms() < deadline0, "the short publishers did not finish: %d of %d", done,
                  SHORT);
        for (int i = 0; i < LANES; i++) {
            if (lane[i] != NULL && lane[i]->exited) {
                h_wait_exit(lane[i], WAIT); /* its last words */
                cr_assert_eq(h_exit_code(lane[i]), 0, "%s", h_tail(lane[i]->err));
                h_free(lane[i]);
                lane[i] = NULL;
                done++;
            }
            if (lane[i] == NULL && started < SHORT) {
                lane[i] = h_pub_start(port, "--timeout", h_secs(30), "--count", "50", "heavy.c",
                                      "c-{n}", NULL);
                started++;
            }
        }
        h_pump(p1, 20);
    }
    h_step(NULL);
    cr_assert(h_wait_exit(p1, LONG_WAIT) && h_wait_exit(p2, LONG_WAIT), "pub did not finish");
    cr_assert_eq(h_exit_code(p1), 0, "%s", h_tail(p1->err));
    cr_assert_eq(h_exit_code(p2), 0, "%s", h_tail(p2->err));
    h_proc *st = h_sub(port, "$SYS.stats", NULL);
    /* The second message after subscribing was composed after the pubs'
     * last PONG. */
    cr_assert(h_wait_out(st, "\n", WAIT), "no stats");
    int64_t deadline = h_now_ms() + WAIT;
    while (h_count(st->out, "\n") < 2 && h_now_ms() < deadline)
        h_pump(st, 50);
    cr_assert_geq(h_count(st->out, "\n"), 2, "fewer than 2 stats messages: %s", h_tail(st->err));
    const char *second = strchr(st->out, '\n') + 1;
    char json[8192];
    const char *end = strchr(second, '\n');
    snprintf(json, sizeof json, "%.*s", (int)(end - second), second);
    double syncs, synced, waits, early;
    cr_assert(store_num(json, "syncs", &syncs) && store_num(json, "synced_bytes", &synced) &&
                  store_num(json, "confirm_waits", &waits) &&
                  store_num(json, "early_confirms", &early),
              "no store.{syncs,synced_bytes,confirm_waits,early_confirms} in %s", json);
    cr_log_info("store: syncs %.0f, synced_bytes %.0f, confirm_waits %.0f, early_confirms %.0f",
                syncs, synced, waits, early);
    cr_assert_gt(syncs, 0, "%s", json);
    cr_assert_gt(synced, 40000.0 * 8, "synced_bytes %.0f for 40,000 messages: %s", synced, json);
    cr_assert_gt(waits, 0, "%s", json);
    cr_assert_eq(early, 0, "PONGs sent before the fdatasync covering them: %s", json);
    h_free(st), h_free(b);
}

/* ---- 9. --list-durables and --delete ---- */

Test(durable, durables_are_listed_and_deleted, .fini = cleanup)
{
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, NULL);
    cr_assert_eq(h_pub(port, "--count", "5", "la", "m-{n}", NULL), 0);
    cr_assert_eq(h_pub(port, "--count", "3", "lb", "m-{n}", NULL), 0);
    char *json = list_durables(port);
    cr_assert(strcmp(json, "{\"durables\":[]}\n") == 0, "durables before any: %s", json);
    release(json);

    h_proc *s = h_sub(port, "--durable", "r1", "la", NULL);
    cr_assert(h_wait_out(s, line_of("la", "m-", 5), WAIT), "%s", h_tail(s->err));
    h_signal(s, SIGTERM);
    cr_assert(h_wait_exit(s, WAIT));
    h_free(s);
    s = h_sub(port, "--durable", "r2", "lb", NULL);
    cr_assert(h_wait_out(s, line_of("lb", "m-", 3), WAIT), "%s", h_tail(s->err));

    char obj[512];
    wait_durable_idle(port, "r1", 5, obj, sizeof obj);
    cr_assert(strstr(obj, "\"topic\":\"la\"") != NULL, "%s", obj);
    cr_assert_eq(json_num(obj, "acked"), 5, "%s", obj);
    cr_assert_eq(json_num(obj, "next"), 6, "%s", obj);
    json = list_durables(port);
    cr_assert(durable_entry(json, "r2", obj, sizeof obj), "r2 not listed: %s", json);
    cr_assert(strstr(obj, "\"topic\":\"lb\"") != NULL && strstr(obj, "\"connected\":true") != NULL,
              "%s", obj);
    release(json);
    h_signal(s, SIGTERM);
    cr_assert(h_wait_exit(s, WAIT));
    h_free(s);

    h_proc *d = sub_start(port, "--durable", "r1", "--delete", "la", NULL);
    cr_assert(h_wait_exit(d, WAIT), "sub --delete did not exit");
    cr_assert_eq(h_exit_code(d), 0, "sub --durable r1 --delete la exited %d: %s", h_exit_code(d),
                 h_tail(d->err));
    h_free(d);
    json = list_durables(port);
    cr_assert(!durable_entry(json, "r1", obj, sizeof obj), "r1 still listed after --delete: %s",
              json);
    cr_assert(durable_entry(json, "r2", obj, sizeof obj), "r2 gone with r1: %s", json);
    release(json);

    /* A new r1 starts at the first message retained, as any new durable. */
    s = h_sub(port, "--durable", "r1", "la", NULL);
    cr_assert(h_wait_out(s, line_of("la", "m-", 5), WAIT), "%s", h_tail(s->err));
    int n;
    int *v = numbers(s->out, "la", "m-", false, &n);
    assert_run(v, n, 1, 5, "a new durable r1 after --delete");
    release(v);
    h_free(s);

    /* The durables survive a restart of the broker (they are in its state). */
    h_signal(b, SIGTERM);
    cr_assert(h_wait_exit(b, WAIT));
    h_free(b);
    b = h_broker_at(port, "--data-dir", dir, NULL);
    json = list_durables(port);
    cr_assert(durable_entry(json, "r1", obj, sizeof obj) && json_num(obj, "acked") == 5, "%s", json);
    cr_assert(durable_entry(json, "r2", obj, sizeof obj) && json_num(obj, "acked") == 3, "%s", json);
    release(json);
    h_free(b);
}

/* ---- the epoch across restarts, by --fsync policy ---- */

/* The epoch= of the broker's event=listening line. */
static unsigned long long epoch_of(const h_proc *b)
{
    char line[1024];
    cr_assert(find_line(b->err, "event=listening", line, sizeof line) != NULL, "%s", h_tail(b->err));
    const char *at = strstr(line, " epoch=");
    cr_assert(at != NULL, "no epoch= in %s", line);
    return strtoull(at + strlen(" epoch="), NULL, 10);
}

/* Publishes, then restarts the broker (kill -9 when unclean, else SIGTERM)
 * with the same data dir and policy; returns whether the epoch was kept,
 * and checks what a subscriber that was reading says about it. */
static bool epoch_kept(const char *name, const char *fsync, bool unclean)
{
    const char *dir = new_dir(name);
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, "--fsync", fsync, NULL);
    unsigned long long before = epoch_of(b);
    h_proc *s = h_sub(port, FAST_RETRY, "--since", "first", "ep", NULL);
    cr_assert_eq(h_pub(port, "--count", "20", "ep", "m-{n}", NULL), 0);
    cr_assert(h_wait_out(s, "ep MSG_TYPE1 m-20\n", WAIT), "%s", h_tail(s->err));
    if (unclean) {
        kill9(b);
    } else {
        h_signal(b, SIGTERM);
        cr_assert(h_wait_exit(b, WAIT));
        h_free(b);
    }
    b = h_broker_at(port, "--data-dir", dir, "--fsync", fsync, NULL);
    unsigned long long after = epoch_of(b);
    cr_assert(h_wait_err(s, "event=reconnected", WAIT), "%s", h_tail(s->err));
    cr_assert_eq(h_pub(port, "ep", "after-1", NULL), 0);
    cr_assert(h_wait_out(s, "ep MSG_TYPE1 after-1\n", WAIT), "%s", h_tail(s->err));
    bool kept = before == after;
    char line[1024];
    if (kept) {
        cr_assert(strstr(b->err, "event=epoch_changed") == NULL, "%s", h_tail(b->err));
        cr_assert(strstr(s->err, "broker_restarted") == NULL && strstr(s->err, "event=gap") == NULL,
                  "--fsync %s, %s: the epoch was kept, yet: %s", fsync,
                  unclean ? "kill -9" : "SIGTERM", h_tail(s->err));
        int n;
        int *v = numbers(s->out, "ep", "m-", true, &n);
        assert_run(v, n, 1, 20, "the subscriber across the restart");
        release(v);
    } else {
        cr_assert(find_line(b->err, "event=epoch_changed", line, sizeof line) != NULL,
                  "a new epoch without epoch_changed: %s", h_tail(b->err));
        cr_assert(strstr(line, "level=warn") != NULL, "%s", line);
        cr_assert(strstr(s->err, "reason=broker_restarted") != NULL,
                  "--fsync %s, kill -9: a new epoch, and the subscriber was not told: %s", fsync,
                  h_tail(s->err));
    }
    cr_log_info("--fsync %s, %s: epoch %llu -> %llu", fsync, unclean ? "kill -9" : "SIGTERM", before,
                after);
    h_free(s), h_free(b);
    return kept;
}

Test(durable, the_epoch_survives_a_restart_unless_an_unsynced_crash_may_have_lost_records,
     .fini = cleanup)
{
    cr_assert(epoch_kept("always-kill", "always", true), "--fsync always: kill -9 changed the epoch");
    cr_assert(!epoch_kept("never-kill", "never", true), "--fsync never: kill -9 kept the epoch");
    cr_assert(!epoch_kept("interval-kill", "interval=50", true),
              "--fsync interval=50: kill -9 kept the epoch");
    cr_assert(epoch_kept("never-term", "never", false), "--fsync never: SIGTERM changed the epoch");
    cr_assert(epoch_kept("interval-term", "interval=50", false),
              "--fsync interval=50: SIGTERM changed the epoch");
}

/* ---- retention on disk ---- */

Test(durable, retention_bytes_bounds_the_files_too, .fini = cleanup)
{
    enum { N = 4000 };
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, "--segment-bytes", "65536", "--retention-bytes",
                         "1M", NULL);
    static char payload[1000];
    char count[16];
    snprintf(count, sizeof count, "%d", N);
    int code = h_pub(port, "--count", count, "ret", padded(payload, sizeof payload - 1, "r"), NULL);
    cr_assert_eq(code, 0, "pub exited %d; the broker %s: %s", code,
                 b->exited ? "exited" : "is running", h_tail(b->err));
    /* Retention is applied by the broker's commit thread (about once a
     * second): wait, bounded, for the files to shrink to the budget. */
    const long long bound = (1 << 20) + 2 * 65536 + 8192;
    seg_file segs[256];
    int n;
    long long total;
    int64_t t0 = h_now_ms(), deadline = t0 + WAIT;
    h_step("waiting for the segments to shrink to %lld bytes", bound);
    for (;;) {
        n = segments(dir, segs, 256);
        total = 0;
        for (int i = 0; i < n; i++)
            total += segs[i].size;
        if (total <= bound || h_now_ms() >= deadline || b->exited)
            break;
        h_pump(b, 100);
    }
    h_step(NULL);
    cr_log_info("%d segments, %lld bytes on disk for %d KB published (after %lld ms)", n, total, N,
                (long long)(h_now_ms() - t0));
    cr_assert_leq(total, bound,
                  "%lld bytes of segments with --retention-bytes 1M, --segment-bytes 64K", total);
    cr_assert(strstr(segs[0].path, "00000000000000000001.seg") == NULL,
              "the first segment is still there");
    h_signal(b, SIGTERM);
    cr_assert(h_wait_exit(b, WAIT));
    h_free(b);
    b = h_broker_at(port, "--data-dir", dir, "--segment-bytes", "65536", "--retention-bytes", "1M",
                    NULL);
    h_proc *s = h_sub(port, "--since", "first", "ret", NULL);
    char last[32];
    snprintf(last, sizeof last, "-%d\n", N);
    cr_assert(h_wait_out(s, last, WAIT), "%s", h_tail(s->err));
    int k;
    int *v = numbers(s->out, "ret", "r", false, &k);
    cr_assert_gt(k, 500, "only %d messages of 1 KB kept under a 1 MiB retention", k);
    cr_assert_gt(v[0], 1, "retention dropped nothing");
    assert_run(v, k, v[0], N, "a subscriber from the first retained message after a restart");
    release(v);
    h_free(s), h_free(b);
}

/* sub --durable --count N exits after N printed: what it received beyond
 * them was not printed, so not processed, and the next sub --durable must
 * get it (at least once: never acknowledged unprinted). */
Test(durable, a_durable_subscriber_with_count_acknowledges_only_what_it_printed, .fini = cleanup)
{
    const char *dir = new_dir("data");
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, NULL);
    cr_assert_eq(h_pub(port, "--count", "50", "cnt", "m-{n}", NULL), 0);
    h_proc *s = sub_start(port, "--durable", "c1", "--count", "3", "cnt", NULL);
    cr_assert(h_wait_exit(s, WAIT), "sub --count 3 did not exit: %s", h_tail(s->err));
    cr_assert_eq(h_exit_code(s), 0, "%s", h_tail(s->err));
    int n;
    int *v = numbers(s->out, "cnt", "m-", false, &n);
    assert_run(v, n, 1, 3, "sub --durable c1 --count 3");
    release(v);
    h_free(s);
    char obj[512];
    wait_durable_idle(port, "c1", 0, obj, sizeof obj);
    cr_assert_leq(json_num(obj, "acked"), 3, "printed m-1..m-3, acknowledged more: %s", obj);
    s = h_sub(port, "--durable", "c1", "cnt", NULL);
    cr_assert(h_wait_out(s, "cnt MSG_TYPE1 m-50\n", WAIT),
              "the next sub --durable c1 did not get m-4..m-50 (%s): %s", obj, h_tail(s->out));
    v = numbers(s->out, "cnt", "m-", false, &n);
    cr_assert(n > 0 && v[0] <= 4, "the next sub starts at m-%d", n > 0 ? v[0] : 0);
    assert_run(v, n, v[0], 50, "the next sub --durable c1");
    release(v);
    h_free(s), h_free(b);
}

/* ---- a stalled disk: heartbeats go on, confirms wait ---- */

/* Every sync stalls 3 s (the store's test seam) while both sides would
 * declare the other dead after 2 s of silence: the publisher must stay
 * connected (the broker's threads never wait for a sync, so its PINGs go
 * on) and must not be confirmed before the stalled sync (it exits 0 no
 * sooner than 3 s after it started). */
Test(durable, a_stalled_sync_delays_confirms_and_misses_no_heartbeat, .fini = cleanup)
{
    const char *dir = new_dir("data");
    char stall[32];
    snprintf(stall, sizeof stall, "%d", 3000);
    setenv("VIGIL_TEST_SYNC_DELAY_MS", stall, 1);
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, "--keepalive-time", "1",
                         "--keepalive-interval", "1", "--keepalive-probes", "1", NULL);
    unsetenv("VIGIL_TEST_SYNC_DELAY_MS");
    int64_t t0 = h_now_ms();
    h_proc *p = h_pub_start(port, "--timeout", h_secs(30), "--keepalive-time", "1",
                            "--keepalive-interval", "1", "--keepalive-probes", "1", "--count",
                            "5", "stall", "s-{n}", NULL);
    cr_assert(h_wait_exit(p, LONG_WAIT), "pub did not finish while syncs stall: %s",
              h_tail(p->err));
    int64_t took = h_now_ms() - t0;
    cr_assert_eq(h_exit_code(p), 0, "%s", h_tail(p->err));
    cr_assert_geq(took, 3000, "confirmed after %lld ms, before the 3 s sync", (long long)took);
    cr_assert_null(strstr(p->err, "event=disconnected"), "pub lost the broker during a sync: %s",
                   h_tail(p->err));
    h_pump(b, 100);
    cr_assert_null(strstr(b->err, "event=evict"), "the broker evicted a client during a sync: %s",
                   h_tail(b->err));
    h_free(p), h_free(b);
}
