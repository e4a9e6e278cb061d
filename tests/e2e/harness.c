#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define MAX_ARGS 64
#define MAX_LIVE 256

/* Every child not yet freed. A wait on one child also drains the others'
 * pipes: a child blocked writing to a full pipe would stall for real. */
static h_proc *live[MAX_LIVE];

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* $VIGIL_TEST_BIN_DIR/<program> when that is set: CI drives the programs of
 * another build (TSan, whose Criterion binaries cannot run) with these tests.
 * Otherwise the path ctest passes in VIGIL_BROKER, VIGIL_PUB, ... */
const char *h_bin(const char *which)
{
    static const struct {
        const char *name, *var, *file;
    } bins[] = {
        {"broker", "VIGIL_BROKER", "broker"},
        {"pub", "VIGIL_PUB", "pub"},
        {"sub", "VIGIL_SUB", "sub"},
        {"proxy", "VIGIL_PROXY", "vigil-proxy"},
    };
    static char paths[sizeof bins / sizeof *bins][4096];
    size_t i = 0;
    while (i < sizeof bins / sizeof *bins && strcmp(which, bins[i].name) != 0)
        i++;
    cr_assert(i < sizeof bins / sizeof *bins, "h_bin: no program named %s", which);
    const char *dir = getenv("VIGIL_TEST_BIN_DIR");
    if (dir != NULL && dir[0] != 0) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, bins[i].file);
        cr_assert(access(paths[i], X_OK) == 0, "VIGIL_TEST_BIN_DIR: %s: %s", paths[i],
                  strerror(errno));
        return paths[i];
    }
    const char *path = getenv(bins[i].var);
    cr_assert(path != NULL, "%s is not set: run the tests through ctest", bins[i].var);
    return path;
}

h_proc *h_spawn(const char *name, const char *const argv[])
{
    int out[2], err[2];
    cr_assert(pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(out[1], 1);
        dup2(err[1], 2);
        /* The test worker may block signals; the child must not inherit that. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], (char *const *)argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    h_proc *p = calloc(1, sizeof *p);
    cr_assert(p != NULL);
    p->pid = pid;
    p->pid_fd = (int)syscall(SYS_pidfd_open, pid, 0);
    cr_assert(p->pid_fd >= 0, "pidfd_open: %s", strerror(errno));
    p->out_fd = out[0];
    p->err_fd = err[0];
    p->name = name;
    p->out = calloc(1, 1);
    p->err = calloc(1, 1);
    p->out_cap = p->err_cap = 1;
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] == NULL) {
            live[i] = p;
            break;
        }
    }
    return p;
}

/* Appends what fd has to the buffer, at most 1 MiB per call so that a child
 * writing as fast as we read cannot keep us here; returns false at EOF. */
static bool drain(int *fd, char **buf, size_t *len, size_t *cap)
{
    char chunk[65536];
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(*fd, chunk, sizeof chunk);
        if (n > 0) {
            if (*len + (size_t)n + 1 > *cap) {
                while (*len + (size_t)n + 1 > *cap)
                    *cap *= 2;
                *buf = realloc(*buf, *cap);
                cr_assert(*buf != NULL);
            }
            memcpy(*buf + *len, chunk, (size_t)n);
            *len += (size_t)n;
            (*buf)[*len] = '\0';
            continue;
        }
        if (n == 0) {
            close(*fd);
            *fd = -1;
            return false;
        }
        return true; /* EAGAIN */
    }
    return true;
}

static void reap(h_proc *p)
{
    if (!p->exited && waitpid(p->pid, &p->status, WNOHANG) == p->pid)
        p->exited = true;
}

static void drain_all(h_proc *p)
{
    if (p->out_fd >= 0 && !p->throttled)
        drain(&p->out_fd, &p->out, &p->out_len, &p->out_cap);
    if (p->err_fd >= 0)
        drain(&p->err_fd, &p->err, &p->err_len, &p->err_cap);
    reap(p);
}

void h_pump(h_proc *p, int timeout_ms)
{
    /* Wake on output from any live child, or the exit of p. */
    struct pollfd fds[2 * MAX_LIVE + 1];
    nfds_t n = 0;
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] == NULL)
            continue;
        fds[n++] = (struct pollfd){.fd = live[i]->throttled ? -1 : live[i]->out_fd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = live[i]->err_fd, .events = POLLIN};
    }
    fds[n++] = (struct pollfd){.fd = p->exited ? -1 : p->pid_fd, .events = POLLIN};
    poll(fds, n, timeout_ms);
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] != NULL && live[i] != p)
            drain_all(live[i]);
    drain_all(p);
}

int h_count(const char *s, const char *needle)
{
    int n = 0;
    size_t step = strlen(needle);
    for (const char *q = strstr(s, needle); q != NULL; q = strstr(q + step, needle))
        n++;
    return n;
}

#define TAIL_BYTES 3000

const char *h_tail(const char *s)
{
    static char ring[8][TAIL_BYTES + 64];
    static int next;
    size_t len = strlen(s);
    if (len <= TAIL_BYTES)
        return s;
    const char *from = s + len - TAIL_BYTES;
    const char *nl = memchr(from, '\n', 200);
    if (nl != NULL)
        from = nl + 1; /* a whole first line */
    char *out = ring[next];
    next = (next + 1) % 8;
    snprintf(out, sizeof ring[0], "[... %zu bytes not shown ...]\n%s", (size_t)(from - s), from);
    return out;
}

/* Waits for n occurrences of needle (non-empty). Only text not yet searched
 * is scanned on each pass: a child's output can run to megabytes, and
 * rescanning it all after every read made waits quadratic. */
static bool wait_text(h_proc *p, bool out, const char *needle, int n, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    size_t nl = strlen(needle), from = 0;
    int found = 0;
    for (;;) {
        const char *buf = out ? p->out : p->err;
        size_t len = out ? p->out_len : p->err_len;
        for (const char *q = strstr(buf + from, needle); q != NULL; q = strstr(q + nl, needle)) {
            found++;
            from = (size_t)(q - buf) + nl;
        }
        if (found >= n)
            return true;
        if (len >= nl && from < len - nl + 1)
            from = len - nl + 1; /* a match may still straddle the end */
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            return false;
        if (p->out_fd < 0 && p->err_fd < 0) /* nothing more will come */
            return false;
        h_pump(p, left > 50 ? 50 : (int)left);
    }
}

bool h_wait_out(h_proc *p, const char *needle, int timeout_ms)
{
    return wait_text(p, true, needle, 1, timeout_ms);
}

bool h_wait_err(h_proc *p, const char *needle, int timeout_ms)
{
    return wait_text(p, false, needle, 1, timeout_ms);
}

bool h_wait_err_count(h_proc *p, const char *needle, int n, int timeout_ms)
{
    return wait_text(p, false, needle, n, timeout_ms);
}

bool h_wait_exit(h_proc *p, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        h_pump(p, 0);
        if (p->exited) {
            int64_t last = h_now_ms() + 2000; /* collect the last words, briefly */
            while ((p->out_fd >= 0 || p->err_fd >= 0) && h_now_ms() < last)
                h_pump(p, 100);
            return true;
        }
        if (h_now_ms() >= deadline)
            return false;
        int64_t left = deadline - h_now_ms();
        h_pump(p, left > 100 ? 100 : (int)left);
    }
}

int h_exit_code(const h_proc *p)
{
    if (!p->exited || !WIFEXITED(p->status))
        return -1;
    return WEXITSTATUS(p->status);
}

void h_signal(h_proc *p, int sig)
{
    if (!p->exited)
        kill(p->pid, sig);
}

/* A sanitizer report in a child's stderr fails the test, and is copied to
 * the test's own stderr where ctest also looks for it. */
static void check_sanitizers(const h_proc *p)
{
    static const char *const marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                        "WARNING: ThreadSanitizer", "runtime error:"};
    for (size_t i = 0; i < sizeof marks / sizeof *marks; i++) {
        if (strstr(p->err, marks[i]) != NULL) {
            fprintf(stderr, "---- %s (pid %d) stderr ----\n%s\n", p->name, (int)p->pid, p->err);
            cr_assert_fail("%s reported: %s", p->name, marks[i]);
        }
    }
}

void h_free(h_proc *p)
{
    if (p == NULL)
        return;
    /* A polite stop first, so the child exits normally and leak checks run. */
    if (!p->exited) {
        kill(p->pid, SIGTERM);
        h_wait_exit(p, 5000);
    }
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == p)
            live[i] = NULL;
    if (!p->exited) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &p->status, 0);
        p->exited = true;
    }
    check_sanitizers(p);
    if (p->out_fd >= 0)
        close(p->out_fd);
    if (p->err_fd >= 0)
        close(p->err_fd);
    close(p->pid_fd);
    free(p->out);
    free(p->err);
    free(p);
}

/* Collects a NULL-terminated vararg list after fixed leading arguments. */
static size_t collect(const char **argv, size_t n, va_list ap)
{
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        cr_assert(n < MAX_ARGS - 1, "too many arguments");
        argv[n++] = a;
    }
    argv[n] = NULL;
    return n;
}

h_proc *h_broker(int *port, ...)
{
    const char *argv[MAX_ARGS] = {h_bin("broker"), "--listen", "127.0.0.1:0"};
    va_list ap;
    va_start(ap, port);
    collect(argv, 3, ap);
    va_end(ap);
    h_proc *b = h_spawn("broker", argv);
    cr_assert(h_wait_err(b, "event=listening", 10000), "broker did not start: %s", h_tail(b->err));
    const char *addr = strstr(b->err, "addr=127.0.0.1:");
    cr_assert(addr != NULL);
    *port = atoi(addr + strlen("addr=127.0.0.1:"));
    cr_assert(*port > 0);
    return b;
}

h_proc *h_broker_at(int port, ...)
{
    char listen_at[32];
    snprintf(listen_at, sizeof listen_at, "127.0.0.1:%d", port);
    const char *argv[MAX_ARGS] = {h_bin("broker"), "--listen", listen_at};
    va_list ap;
    va_start(ap, port);
    collect(argv, 3, ap);
    va_end(ap);
    for (int attempt = 0;; attempt++) {
        h_proc *b = h_spawn("broker", argv);
        if (h_wait_err(b, "event=listening", 10000))
            return b;
        cr_assert(attempt < 50 && strstr(b->err, "listen_failed") != NULL,
                  "broker did not restart on port %d: %s", port, h_tail(b->err));
        h_wait_exit(b, 1000);
        h_free(b);
        struct pollfd none = {.fd = -1};
        poll(&none, 1, 100); /* the port is held by a socket the kernel is tearing down */
    }
}

size_t h_read_some(h_proc *p, size_t max)
{
    if (p->out_fd < 0)
        return 0;
    char chunk[65536];
    ssize_t n = read(p->out_fd, chunk, max < sizeof chunk ? max : sizeof chunk);
    if (n <= 0)
        return 0;
    if (p->out_len + (size_t)n + 1 > p->out_cap) {
        while (p->out_len + (size_t)n + 1 > p->out_cap)
            p->out_cap *= 2;
        p->out = realloc(p->out, p->out_cap);
        cr_assert(p->out != NULL);
    }
    memcpy(p->out + p->out_len, chunk, (size_t)n);
    p->out_len += (size_t)n;
    p->out[p->out_len] = '\0';
    return (size_t)n;
}

unsigned h_client_id(const h_proc *broker, const char *name)
{
    char needle[160];
    snprintf(needle, sizeof needle, " name=%s\n", name);
    const char *hit = strstr(broker->err, needle);
    if (hit == NULL)
        return 0;
    while (hit > broker->err && hit[-1] != '\n')
        hit--; /* start of that line */
    const char *id = strstr(hit, " client=");
    return id ? (unsigned)atoi(id + strlen(" client=")) : 0;
}

static char *server_arg(int port)
{
    static _Thread_local char s[32];
    snprintf(s, sizeof s, "127.0.0.1:%d", port);
    return s;
}

h_proc *h_sub(int port, ...)
{
    const char *argv[MAX_ARGS] = {h_bin("sub"), "--server", server_arg(port)};
    va_list ap;
    va_start(ap, port);
    size_t n = collect(argv, 3, ap);
    va_end(ap);
    int topics = 0;
    for (size_t i = 3; i < n; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            if (strchr(argv[i], '=') == NULL && i + 1 < n)
                i++; /* the option's value */
            continue;
        }
        topics++;
    }
    h_proc *s = h_spawn("sub", argv);
    cr_assert(h_wait_err_count(s, "event=subscribed", topics, 10000),
              "sub did not subscribe: %s", h_tail(s->err));
    return s;
}

h_proc *h_pub_start(int port, ...)
{
    const char *argv[MAX_ARGS] = {h_bin("pub"), "--server", server_arg(port)};
    va_list ap;
    va_start(ap, port);
    collect(argv, 3, ap);
    va_end(ap);
    return h_spawn("pub", argv);
}

int h_pub(int port, ...)
{
    const char *argv[MAX_ARGS] = {h_bin("pub"), "--server", server_arg(port)};
    va_list ap;
    va_start(ap, port);
    collect(argv, 3, ap);
    va_end(ap);
    h_proc *p = h_spawn("pub", argv);
    int code = h_wait_exit(p, 30000) ? h_exit_code(p) : -1;
    if (code != 0)
        cr_log_info("pub exited %d: %s", code, h_tail(p->err));
    h_free(p);
    return code;
}

void h_assert_serves(int port)
{
    static int seq;
    char topic[64], msg[64], line[160];
    snprintf(topic, sizeof topic, "health.%d.%d", getpid(), ++seq);
    snprintf(msg, sizeof msg, "still-serving-%d", seq);
    snprintf(line, sizeof line, "%s MSG_TYPE1 %s\n", topic, msg);
    h_proc *s = h_sub(port, "--count", "1", topic, NULL);
    cr_assert_eq(h_pub(port, topic, msg, NULL), 0, "broker no longer serves publishers");
    cr_assert(h_wait_out(s, line, 10000), "broker no longer serves subscribers: %s", h_tail(s->out));
    cr_assert(h_wait_exit(s, 10000));
    cr_assert_eq(h_exit_code(s), 0);
    h_free(s);
}

/* ---- raw client ---- */

h_raw h_raw_connect(int port) { return h_raw_connect_small(port, 0); }

h_raw h_raw_connect_small(int port, int rcvbuf)
{
    h_raw r = {.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    cr_assert(r.fd >= 0);
    if (rcvbuf > 0)
        setsockopt(r.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(connect(r.fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    r.dec = vg_decoder_create(65536, 64u << 20);
    cr_assert(r.dec != NULL);
    return r;
}

void h_raw_close(h_raw *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    vg_decoder_destroy(r->dec);
    r->dec = NULL;
}

void h_raw_send(h_raw *r, const void *bytes, size_t n)
{
    const char *p = bytes;
    while (n > 0) {
        ssize_t w = send(r->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return; /* the broker may already have closed: tests check for that */
        p += w;
        n -= (size_t)w;
    }
}

void h_raw_send_buf(h_raw *r, vg_buf *b)
{
    h_raw_send(r, b->data, b->len);
    b->len = 0;
}

void h_raw_handshake(h_raw *r)
{
    vg_buf b = {0};
    cr_assert(vg_frame_put_connect(&b, VG_PROTO_VERSION, "raw-test", NULL) == VG_OK);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(r, &f, 5000), "no INFO after CONNECT");
    cr_assert_eq(f.type, VG_FRAME_INFO);
}

bool h_raw_read(h_raw *r, vg_frame *f, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        const char *why;
        vg_status st = vg_decoder_next(r->dec, f, &why);
        if (st == VG_OK)
            return true;
        cr_assert_eq(st, VG_AGAIN, "broker sent a bad frame: %s", why);
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        uint8_t *space;
        size_t avail;
        cr_assert(vg_decoder_space(r->dec, &space, &avail) == VG_OK);
        ssize_t n = recv(r->fd, space, avail, 0);
        if (n <= 0)
            return false;
        vg_decoder_commit(r->dec, (size_t)n);
    }
}

bool h_raw_wait_eof(h_raw *r, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    char buf[65536];
    for (;;) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        ssize_t n = recv(r->fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
    }
}

/* ---- resources, time scale, files: for the hardening tests (issue 5) ---- */

double h_time_scale(void)
{
    const char *s = getenv("VIGIL_TEST_TIME_SCALE");
    double v = s != NULL ? atof(s) : 1.0;
    return v >= 1.0 ? v : 1.0;
}

int h_ms(int ms) { return (int)(ms * h_time_scale()); }

const char *h_secs(double s)
{
    static char buf[16][24];
    static int i;
    i = (i + 1) % 16;
    snprintf(buf[i], sizeof buf[i], "%.3f", s * h_time_scale());
    return buf[i];
}

long h_proc_status(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t klen = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

bool h_sanitized(const h_proc *p)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)p->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, "libasan") != NULL || strstr(line, "libtsan") != NULL;
    fclose(f);
    /* clang links the runtimes statically: fall back on the CI's signal. */
    return found || getenv("VIGIL_TEST_TIME_SCALE") != NULL;
}

h_usage h_usage_of(const h_proc *p)
{
    h_usage u = {h_proc_status(p->pid, "Threads"), h_proc_status(p->pid, "VmRSS")};
    cr_assert(u.threads > 0 && u.rss_kb > 0, "cannot read /proc/%d/status", (int)p->pid);
    return u;
}

void h_assert_usage_back(const h_proc *p, h_usage base, int slack_threads, long slack_kb,
                         int timeout_ms)
{
    int64_t t0 = h_now_ms(), deadline = t0 + timeout_ms;
    if (h_sanitized(p))
        slack_threads++; /* TSan starts a background thread with the first thread created */
    h_usage now = h_usage_of(p);
    while (now.threads > base.threads + slack_threads && h_now_ms() < deadline) {
        h_pump((h_proc *)p, 50); /* keeps its stderr pipe drained meanwhile */
        now = h_usage_of(p);
    }
    cr_log_info("%s: threads %ld -> %ld (after %lld ms), rss %ld kB -> %ld kB", p->name,
                base.threads, now.threads, (long long)(h_now_ms() - t0), base.rss_kb, now.rss_kb);
    cr_assert(now.threads <= base.threads + slack_threads,
              "%s still has %ld threads after %d ms (baseline %ld)", p->name, now.threads,
              timeout_ms, base.threads);
    if (h_sanitized(p))
        return;
    cr_assert(now.rss_kb <= base.rss_kb + slack_kb, "%s RSS %ld kB, baseline %ld kB + %ld kB",
              p->name, now.rss_kb, base.rss_kb, slack_kb);
}

long h_raise_nofile(void)
{
    struct rlimit rl;
    cr_assert(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
}

char *h_temp_file(const void *bytes, size_t len)
{
    const char *dir = getenv("TMPDIR");
    char *path = NULL;
    cr_assert(asprintf(&path, "%s/vigil-test-XXXXXX", dir && *dir ? dir : "/tmp") > 0);
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    cr_assert(write(fd, bytes, len) == (ssize_t)len);
    close(fd);
    return path;
}

int h_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void h_raw_expect_fatal(h_raw *r, uint64_t code, int timeout_ms)
{
    vg_frame f;
    do {
        cr_assert(h_raw_read(r, &f, timeout_ms), "expected ERR %s, got nothing",
                  vg_errcode_name(code));
    } while (f.type != VG_FRAME_ERR);
    cr_assert_eq(f.code, code, "ERR code %s, expected %s", vg_errcode_name(f.code),
                 vg_errcode_name(code));
    cr_assert(f.reason_len > 0, "ERR without a reason");
    cr_assert(h_raw_wait_eof(r, timeout_ms), "broker did not close after a fatal ERR %s",
              vg_errcode_name(code));
}
