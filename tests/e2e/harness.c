#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

/* h_mu guards live[], the growth of the children's captured output, and the
 * wait descriptions, which the watchdog thread reads. The test's thread
 * holds it only for non-blocking work, and never across a cr_assert. */
static pthread_mutex_t h_mu = PTHREAD_MUTEX_INITIALIZER;

static void arm_watchdog(void);
static void wait_push(int timeout_ms, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wait_pop(void);
static char proc_state(pid_t pid);

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
    arm_watchdog();
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
    const char *base = strrchr(argv[0], '/');
    size_t used = (size_t)snprintf(p->cmd, sizeof p->cmd, "%s", base ? base + 1 : argv[0]);
    for (size_t i = 1; argv[i] != NULL && used < sizeof p->cmd; i++)
        used += (size_t)snprintf(p->cmd + used, sizeof p->cmd - used, " %s", argv[i]);
    pthread_mutex_lock(&h_mu);
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] == NULL) {
            live[i] = p;
            break;
        }
    }
    pthread_mutex_unlock(&h_mu);
    return p;
}

/* Appends n bytes to a captured output, under h_mu; false if out of memory. */
static bool append(char **buf, size_t *len, size_t *cap, const char *bytes, size_t n)
{
    pthread_mutex_lock(&h_mu);
    bool ok = true;
    if (*len + n + 1 > *cap) {
        size_t want = *cap;
        while (*len + n + 1 > want)
            want *= 2;
        char *grown = realloc(*buf, want);
        ok = grown != NULL;
        if (ok)
            *buf = grown, *cap = want;
    }
    if (ok) {
        memcpy(*buf + *len, bytes, n);
        *len += n;
        (*buf)[*len] = '\0';
    }
    pthread_mutex_unlock(&h_mu);
    return ok;
}

/* Appends what fd has to the buffer, at most 1 MiB per call so that a child
 * writing as fast as we read cannot keep us here; returns false at EOF. */
static bool drain(int *fd, char **buf, size_t *len, size_t *cap)
{
    char chunk[65536];
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(*fd, chunk, sizeof chunk);
        if (n > 0) {
            cr_assert(append(buf, len, cap, chunk, (size_t)n), "out of memory");
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
    int status;
    if (!p->exited && waitpid(p->pid, &status, WNOHANG) == p->pid) {
        pthread_mutex_lock(&h_mu);
        p->status = status;
        p->exited = true;
        pthread_mutex_unlock(&h_mu);
    }
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
static bool wait_text_for(h_proc *p, bool out, const char *needle, int n, int timeout_ms)
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

static bool wait_text(h_proc *p, bool out, const char *needle, int n, int timeout_ms)
{
    if (n > 1)
        wait_push(timeout_ms, "%d x '%s' in %s's %s (pid %d), up to %d ms", n, needle, p->name,
                  out ? "stdout" : "stderr", (int)p->pid, timeout_ms);
    else
        wait_push(timeout_ms, "'%s' in %s's %s (pid %d), up to %d ms", needle, p->name,
                  out ? "stdout" : "stderr", (int)p->pid, timeout_ms);
    bool found = wait_text_for(p, out, needle, n, timeout_ms);
    wait_pop();
    return found;
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
    wait_push(timeout_ms, "%s (pid %d) to exit, up to %d ms", p->name, (int)p->pid, timeout_ms);
    int64_t deadline = h_now_ms() + timeout_ms;
    bool exited;
    for (;;) {
        h_pump(p, 0);
        if (p->exited) {
            int64_t last = h_now_ms() + 2000; /* collect the last words, briefly */
            while ((p->out_fd >= 0 || p->err_fd >= 0) && h_now_ms() < last)
                h_pump(p, 100);
            exited = true;
            break;
        }
        if (h_now_ms() >= deadline) {
            exited = false;
            break;
        }
        int64_t left = deadline - h_now_ms();
        h_pump(p, left > 100 ? 100 : (int)left);
    }
    wait_pop();
    return exited;
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
    /* A polite stop first, so the child exits normally and leak checks run.
     * Its stdout is read in full meanwhile: a sub blocked writing it could
     * not act on SIGTERM. */
    p->throttled = false;
    if (!p->exited) {
        kill(p->pid, SIGTERM);
        h_wait_exit(p, 5000);
    }
    pthread_mutex_lock(&h_mu);
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == p)
            live[i] = NULL;
    pthread_mutex_unlock(&h_mu);
    if (!p->exited) {
        kill(p->pid, SIGKILL);
        int ms = h_ms(10000);
        wait_push(ms, "%s (pid %d) to die of SIGKILL, up to %d ms", p->name, (int)p->pid, ms);
        struct pollfd dead = {.fd = p->pid_fd, .events = POLLIN};
        poll(&dead, 1, ms); /* only a process stuck in the kernel outlives SIGKILL */
        wait_pop();
        p->exited = waitpid(p->pid, &p->status, WNOHANG) == p->pid;
        cr_assert(p->exited, "%s (pid %d) still alive %d ms after SIGKILL (state %c)", p->name,
                  (int)p->pid, ms, proc_state(p->pid));
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

h_proc *h_proxy(int upstream, int *port)
{
    char up[32];
    snprintf(up, sizeof up, "127.0.0.1:%d", upstream);
    const char *argv[] = {h_bin("proxy"), "--listen", "127.0.0.1:0", "--upstream", up, NULL};
    h_proc *p = h_spawn("proxy", argv);
    cr_assert(h_wait_err(p, "event=listening", h_ms(10000)), "proxy did not start: %s",
              h_tail(p->err));
    *port = atoi(strstr(p->err, "addr=127.0.0.1:") + strlen("addr=127.0.0.1:"));
    return p;
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
    cr_assert(append(&p->out, &p->out_len, &p->out_cap, chunk, (size_t)n), "out of memory");
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
            /* sub's only options without a value */
            bool bare = strcmp(argv[i], "--raw") == 0 || strcmp(argv[i], "--json") == 0;
            if (!bare && strchr(argv[i], '=') == NULL && i + 1 < n)
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
    wait_push(30000, "%s to finish, up to 30000 ms", p->cmd);
    int code = h_wait_exit(p, 30000) ? h_exit_code(p) : -1;
    wait_pop();
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
    arm_watchdog();
    h_raw r = {.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    cr_assert(r.fd >= 0);
    if (rcvbuf > 0)
        setsockopt(r.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    wait_push(0, "connect() to 127.0.0.1:%d (raw connection)", port);
    int rc = connect(r.fd, (struct sockaddr *)&a, sizeof a);
    wait_pop();
    cr_assert(rc == 0, "connect to 127.0.0.1:%d: %s", port, strerror(errno));
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

/* Waits until fd is ready for events or deadline passes (0), in slices of
 * 50 ms between which every child's pipes are drained: a broker or sub
 * blocked on a full stdout or stderr pipe would stall for real meanwhile. */
static int raw_poll(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int ready = poll(&p, 1, left > 50 ? 50 : (int)left);
        for (int i = 0; i < MAX_LIVE; i++)
            if (live[i] != NULL)
                drain_all(live[i]);
        if (ready != 0)
            return ready;
    }
}

void h_raw_send(h_raw *r, const void *bytes, size_t n)
{
    const char *p = bytes;
    wait_push(0, "send() of %zu bytes on raw connection fd %d (blocks while the broker does not read)",
              n, r->fd);
    while (n > 0) {
        ssize_t w = send(r->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            raw_poll(r->fd, POLLOUT, INT64_MAX); /* as long as it takes, as send() would */
            continue;
        }
        if (w < 0)
            break; /* the broker may already have closed: tests check for that */
        p += w;
        n -= (size_t)w;
    }
    wait_pop();
}

void h_raw_send_buf(h_raw *r, vg_buf *b)
{
    h_raw_send(r, b->data, b->len);
    b->len = 0;
}

void h_raw_handshake(h_raw *r)
{
    vg_buf b = {0};
    cr_assert(vg_frame_put_connect(&b, VG_PROTO_V1, "raw-test", NULL) == VG_OK);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(r, &f, 5000), "no INFO after CONNECT");
    cr_assert_eq(f.type, VG_FRAME_INFO);
}

static bool raw_read_for(h_raw *r, vg_frame *f, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        const char *why;
        vg_status st = vg_decoder_next(r->dec, f, &why);
        if (st == VG_OK)
            return true;
        cr_assert_eq(st, VG_AGAIN, "broker sent a bad frame: %s", why);
        if (h_now_ms() >= deadline)
            return false;
        if (raw_poll(r->fd, POLLIN, deadline) <= 0)
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

bool h_raw_read(h_raw *r, vg_frame *f, int timeout_ms)
{
    wait_push(timeout_ms, "a frame from the broker on raw connection fd %d, up to %d ms", r->fd,
              timeout_ms);
    bool got = raw_read_for(r, f, timeout_ms);
    wait_pop();
    return got;
}

static bool raw_wait_eof_for(h_raw *r, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    char buf[65536];
    for (;;) {
        /* Look before the clock: with a 1 ms timeout the deadline can pass
         * before the first look, at a millisecond's edge (a flake in the
         * ASan stage: "not closed after ERR auth" with EOF waiting). */
        ssize_t n = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (h_now_ms() >= deadline)
            return false;
        if (n < 0)
            (void)raw_poll(r->fd, POLLIN, deadline);
    }
}

bool h_raw_wait_eof(h_raw *r, int timeout_ms)
{
    wait_push(timeout_ms, "the broker to close raw connection fd %d, up to %d ms", r->fd, timeout_ms);
    bool closed = raw_wait_eof_for(r, timeout_ms);
    wait_pop();
    return closed;
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
    wait_push(timeout_ms, "%s (pid %d) to be back to %ld threads, up to %d ms", p->name, (int)p->pid,
              base.threads + slack_threads, timeout_ms);
    while (now.threads > base.threads + slack_threads && h_now_ms() < deadline) {
        h_pump((h_proc *)p, 50); /* keeps its stderr pipe drained meanwhile */
        now = h_usage_of(p);
    }
    wait_pop();
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
    arm_watchdog();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    wait_push(0, "connect() to 127.0.0.1:%d", port);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    wait_pop();
    if (rc != 0) {
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

/* ---- what the test waits for, and the watchdog ----
 *
 * A test that blocks must end by itself and say on what, before ctest kills
 * the whole executable with nothing printed. Criterion's own timeout is no
 * help: the runner enforces it from the same loop that waits for the
 * worker's messages, it kills the worker with SIGKILL (so the worker can say
 * nothing), and all it prints is "Timed out".
 *
 * So each test worker (Criterion runs every test in its own process) starts
 * a watchdog thread the first time the harness starts a child or opens a
 * connection. At the test's deadline the thread writes to stderr what the
 * test was doing (the harness waits in progress, innermost last, with the
 * test's own h_step), a backtrace of the test's thread, and the state and
 * last stderr of every child, in one write; then it ends the worker with
 * _exit(1), which Criterion reports as a failure of that test (and which
 * unblocks a runner stuck waiting for that worker's message). The children
 * die with the worker (PR_SET_PDEATHSIG).
 *
 * The deadline: VIGIL_TEST_WATCHDOG seconds (default 60, times the time
 * scale) after the watchdog starts, but no later than 15 s before ctest's
 * TIMEOUT for the executable (VIGIL_TEST_TIMEOUT seconds from the start of
 * the run, which the runner records in VIGIL_TEST_RUN_START_MS below). */

#define MAX_WAITS 4
#define RUN_MARGIN_MS 15000
#define REPORT_TAIL 2000

typedef struct {
    char what[320];
    int64_t since, until; /* until: INT64_MAX for a call without a timeout */
} wait_rec;

static wait_rec waits[MAX_WAITS]; /* under h_mu, outermost first */
static int nwaits;
static wait_rec step, last_wait; /* h_step's; the last wait that ended (until: when) */
static pthread_once_t watchdog_once = PTHREAD_ONCE_INIT;
static pthread_t test_thread;
static pid_t test_tid;
static int64_t watchdog_start, watchdog_deadline;
static const char *deadline_why;
static void *bt_frames[48]; /* the test thread's backtrace, taken in a signal handler */
static int bt_count;
static atomic_bool bt_done;

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set; /* runs once, in the runner, before any worker starts */
    char ms[32];
    snprintf(ms, sizeof ms, "%lld", (long long)h_now_ms());
    setenv("VIGIL_TEST_RUN_START_MS", ms, 1);
}

static void describe(wait_rec *w, int timeout_ms, const char *fmt, va_list ap)
{
    vsnprintf(w->what, sizeof w->what, fmt, ap);
    w->since = h_now_ms();
    w->until = timeout_ms > 0 ? w->since + timeout_ms : INT64_MAX;
}

static void wait_push(int timeout_ms, const char *fmt, ...)
{
    pthread_mutex_lock(&h_mu);
    if (nwaits < MAX_WAITS) {
        va_list ap;
        va_start(ap, fmt);
        describe(&waits[nwaits], timeout_ms, fmt, ap);
        va_end(ap);
    }
    nwaits++;
    pthread_mutex_unlock(&h_mu);
}

static void wait_pop(void)
{
    pthread_mutex_lock(&h_mu);
    if (nwaits > 0 && --nwaits < MAX_WAITS) {
        last_wait = waits[nwaits];
        last_wait.until = h_now_ms();
    }
    pthread_mutex_unlock(&h_mu);
}

void h_step(const char *fmt, ...)
{
    pthread_mutex_lock(&h_mu);
    if (fmt == NULL) {
        step.what[0] = '\0';
    } else {
        va_list ap;
        va_start(ap, fmt);
        describe(&step, 0, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&h_mu);
}

static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    const char *paren = strrchr(buf, ')'); /* the name may hold spaces */
    return paren != NULL && paren[1] == ' ' ? paren[2] : '?';
}

/* ---- the report, built in one static buffer and written with write(2) ---- */

static char report[64 * 1024];
static size_t report_len;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    if (report_len >= sizeof report - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(report + report_len, sizeof report - report_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        report_len = report_len + (size_t)n < sizeof report ? report_len + (size_t)n : sizeof report - 1;
}

static void say_flush(void)
{
    for (size_t off = 0; off < report_len;) {
        ssize_t w = write(2, report + off, report_len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    report_len = 0;
}

/* The last REPORT_TAIL bytes of a captured output, indented. */
static void say_tail(const char *label, const char *buf, size_t len)
{
    size_t from = len > REPORT_TAIL ? len - REPORT_TAIL : 0;
    say("  %s: %zu bytes%s\n", label, len, len == 0 ? "" : from > 0 ? ", the last ones:" : ":");
    const char *p = buf + from;
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        say("    | %.*s\n", n, p);
        p += n + (nl != NULL);
    }
}

static void say_wait(const char *label, const wait_rec *w, int64_t now)
{
    say("  %s %s, for %lld ms", label, w->what, (long long)(now - w->since));
    if (w->until != INT64_MAX && now > w->until + 1000)
        say(" (its own timeout passed %lld ms ago: the test thread has left it without"
            " saying so, e.g. a failed assertion that Criterion could not deliver)",
            (long long)(now - w->until));
    say("\n");
}

static void on_backtrace_signal(int sig)
{
    (void)sig; /* backtrace() is safe here: arm_watchdog loaded libgcc already */
    bt_count = backtrace(bt_frames, 48);
    atomic_store(&bt_done, true);
}

/* The test thread's backtrace, with the offsets to give addr2line for the
 * frames in the test executable (its static functions have no symbols). */
static void say_backtrace(void)
{
    if (pthread_kill(test_thread, SIGRTMIN + 4) == 0)
        for (int i = 0; i < 100 && !atomic_load(&bt_done); i++)
            poll(NULL, 0, 10);
    if (!atomic_load(&bt_done)) {
        say("    (no backtrace: the test thread did not take the signal)\n");
        return;
    }
    char **names = backtrace_symbols(bt_frames, bt_count);
    char exe[512] = "?", offsets[512] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 1] = '\0';
    size_t used = 0;
    Dl_info self = {0};
    dladdr((void *)h_now_ms, &self); /* the harness is linked into the test executable */
    for (int i = 1; i < bt_count; i++) { /* frame 0 is the handler */
        say("    %s\n", names ? names[i] : "?");
        Dl_info info;
        if (dladdr(bt_frames[i], &info) != 0 && info.dli_fbase == self.dli_fbase &&
            used < sizeof offsets)
            used += (size_t)snprintf(offsets + used, sizeof offsets - used, " %#lx",
                                     (unsigned long)((char *)bt_frames[i] - (char *)info.dli_fbase));
    }
    free(names);
    if (used > 0)
        say("    (for the unnamed frames: addr2line -f -e %s%s)\n", exe, offsets);
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    struct timespec at = {watchdog_deadline / 1000, (watchdog_deadline % 1000) * 1000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) != 0)
        ;
    int64_t now = h_now_ms();
    struct timespec wait_lock;
    clock_gettime(CLOCK_REALTIME, &wait_lock);
    wait_lock.tv_sec += 2;
    bool locked = pthread_mutex_timedlock(&h_mu, &wait_lock) == 0;

    say("\n==== TIMEOUT %s::%s: the harness watchdog stops it after %lld ms (%s)\n",
        criterion_current_suite ? criterion_current_suite->name : "?",
        criterion_current_test ? criterion_current_test->name : "?",
        (long long)(now - watchdog_start), deadline_why);
    if (!locked)
        say("  (the harness lock is held: what follows may be incomplete)\n");
    if (step.what[0] != '\0')
        say_wait("test step:", &step, now);
    for (int i = 0; i < nwaits && i < MAX_WAITS; i++)
        say_wait(i == 0 ? "waiting for" : "  within it, for", &waits[i], now);
    if (nwaits == 0) {
        say("  not in a harness wait");
        if (last_wait.what[0] != '\0')
            say("; the last one (%s) ended %lld ms ago", last_wait.what,
                (long long)(now - last_wait.until));
        say(": the test thread is blocked or busy elsewhere (see its backtrace)\n");
    }
    char path[64], wchan[64] = "?";
    snprintf(path, sizeof path, "/proc/self/task/%d/wchan", (int)test_tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, wchan, sizeof wchan - 1);
        wchan[n > 0 ? n : 1] = '\0';
        close(fd);
    }
    say("  test thread %d: state %c, in kernel function %s; its backtrace:\n", (int)test_tid,
        proc_state(test_tid), wchan);
    say_backtrace();

    for (int i = 0; locked && i < MAX_LIVE; i++) {
        h_proc *p = live[i];
        if (p == NULL)
            continue;
        char state[64];
        if (p->exited && WIFEXITED(p->status))
            snprintf(state, sizeof state, "exited %d", WEXITSTATUS(p->status));
        else if (p->exited)
            snprintf(state, sizeof state, "killed by signal %d", WTERMSIG(p->status));
        else
            snprintf(state, sizeof state, "running, state %c", proc_state(p->pid));
        say("---- %s, pid %d, %s%s: %s\n", p->name, (int)p->pid, state,
            p->throttled ? ", stdout throttled" : "", p->cmd);
        say_tail("stderr", p->err, p->err_len);
        say("  stdout: %zu bytes read so far\n", p->out_len);
    }
    /* One write, so that a parallel test's output is less likely to land in
     * the middle. The children die with the worker (PR_SET_PDEATHSIG); killing
     * them first would only let the test thread react to it meanwhile. */
    say("==== end of the watchdog report; the test worker ends here\n");
    say_flush();
    _exit(1);
}

static void watchdog_start_once(void)
{
    test_thread = pthread_self();
    test_tid = (pid_t)syscall(SYS_gettid);
    watchdog_start = h_now_ms();
    const char *own = getenv("VIGIL_TEST_WATCHDOG");
    int64_t budget = own != NULL && *own ? (int64_t)(atof(own) * 1000) : h_ms(60000);
    watchdog_deadline = watchdog_start + budget;
    static char why[128];
    snprintf(why, sizeof why, "its budget: %lld ms per test%s", (long long)budget,
             own != NULL && *own ? ", VIGIL_TEST_WATCHDOG" : "");
    const char *run_start = getenv("VIGIL_TEST_RUN_START_MS");
    const char *total = getenv("VIGIL_TEST_TIMEOUT");
    if (run_start != NULL && total != NULL) {
        int64_t run_end = atoll(run_start) + (int64_t)(atof(total) * 1000) - RUN_MARGIN_MS;
        if (run_end < watchdog_deadline) {
            watchdog_deadline = run_end;
            snprintf(why, sizeof why, "%d s before ctest's TIMEOUT of %s s for this executable",
                     RUN_MARGIN_MS / 1000, total);
        }
    }
    deadline_why = why;

    void *warm[1];
    backtrace(warm, 1); /* loads libgcc now rather than in the signal handler */
    struct sigaction sa = {.sa_handler = on_backtrace_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN + 4, &sa, NULL);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &attr, watchdog_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        fprintf(stderr, "harness: no watchdog for this test: %s\n", strerror(rc));
}

static void arm_watchdog(void) { pthread_once(&watchdog_once, watchdog_start_once); }
