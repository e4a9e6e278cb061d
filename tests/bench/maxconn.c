/* vigil-maxconn: how many connections a broker really serves.
 *
 * Starts a broker on 127.0.0.1:0 and opens idle connections that complete
 * the handshake (CONNECT, then INFO) and answer the broker's PINGs, a few
 * handshakes in flight at a time, until the broker turns one away (ERR limit,
 * or a close with no answer) or --max is reached. Then it records the
 * broker's resident memory, threads and mappings, tries --extra more
 * connections to show that the refusal is steady, and prints one line of
 * key=value results.
 *
 * One thread and one epoll set: the connection count it can drive is bounded
 * by descriptors (--nofile) and local ports, not threads. Connections are
 * spread over source addresses 127.0.0.1, .2, ... (20,000 each) so the
 * ephemeral port range (~28,000 ports per source address) is not the limit
 * being measured. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "decoder.h"
#include "frame.h"
#include "proto.h"

#define PER_SOURCE 20000
#define PIPE_TAG UINT32_MAX

enum { CONNECTING, HANDSHAKE, READY, GONE };

typedef struct {
    int fd;
    int state;
    vg_decoder *dec;
} conn;

/* How the run ended: the first connection that was not served says why. */
typedef struct {
    int served;         /* INFO received */
    int refused_limit;  /* ERR limit */
    int refused_other;  /* another ERR before INFO */
    int closed;         /* closed (EOF or reset) before any answer */
    int connect_failed; /* our own socket/connect failed */
    int lost;           /* served, then closed by the broker */
    int unanswered;     /* no answer within --stall (e.g. never accepted) */
    char first[64];     /* what turned the first one away */
} tally;

typedef struct {
    const char *broker;
    long nofile;
    int max;
    int window;
    int extra;
    double hold_s;
    double stall_s;
    double after_s;
    char **broker_args;
    int nbroker_args;
} options;

static const char usage[] = "vigil-maxconn [--broker PATH] [--nofile N] [--max N] [--window N] "
                            "[--extra N] [--hold SECS] [--stall SECS] [--after SECS] [-- BROKER_ARGS...]";

static void help(void)
{
    printf("usage: %s\n\n"
           "Measures how many idle connections a broker serves. Starts PATH (default:\n"
           "the broker beside this program) on 127.0.0.1:0 with BROKER_ARGS, then opens\n"
           "connections that send CONNECT, wait for INFO and answer PINGs, until the\n"
           "broker refuses one (ERR limit, or a close without an answer) or --max are\n"
           "served. Prints one line: served, what refused the next one, the broker's\n"
           "RSS, threads and mappings at the peak, and the time it took.\n\n"
           "Options:\n"
           "  --broker PATH  the broker program\n"
           "  --nofile N     set this process's (and so the broker's) open-file soft and\n"
           "                 hard limits to N first; raising the hard limit needs root\n"
           "                 (default: the soft limit is raised to the hard limit)\n"
           "  --max N        stop after N served connections (default 1000000)\n"
           "  --window N     handshakes in flight at once (default 64)\n"
           "  --extra N      connections tried after the first refusal (default 16)\n"
           "  --hold SECS    keep the connections open this long at the peak (default 0)\n"
           "  --stall SECS   give up on handshakes that get no answer for this long\n"
           "                 (default 10): a broker out of descriptors stops accepting\n"
           "  --after SECS   after closing every connection, wait this long and report\n"
           "                 the broker's RSS and threads again (default 0: not)\n"
           "  --help         this text\n\n"
           "Example (as root): vigil-maxconn --nofile 300000 -- --max-connections 65536\n"
           "Needs about one descriptor per connection here and two in the broker.\n",
           usage);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "vigil-maxconn: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static long parse_long(const char *s, const char *flag)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0)
        die("%s needs a non-negative integer", flag);
    return v;
}

static void parse_args(int argc, char **argv, options *o)
{
    static const struct option opts[] = {
        {"broker", required_argument, NULL, 'b'}, {"nofile", required_argument, NULL, 'n'},
        {"max", required_argument, NULL, 'm'},    {"window", required_argument, NULL, 'w'},
        {"extra", required_argument, NULL, 'e'},  {"hold", required_argument, NULL, 'H'},
        {"stall", required_argument, NULL, 's'},  {"after", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (options){.max = 1000000, .window = 64, .extra = 16, .stall_s = 10};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            o->broker = optarg;
            break;
        case 'n':
            o->nofile = parse_long(optarg, "--nofile");
            break;
        case 'm':
            o->max = (int)parse_long(optarg, "--max");
            break;
        case 'w':
            o->window = (int)parse_long(optarg, "--window");
            if (o->window < 1)
                o->window = 1;
            break;
        case 'e':
            o->extra = (int)parse_long(optarg, "--extra");
            break;
        case 'H':
            o->hold_s = strtod(optarg, NULL);
            break;
        case 's':
            o->stall_s = strtod(optarg, NULL);
            break;
        case 'a':
            o->after_s = strtod(optarg, NULL);
            break;
        case 'h':
            help();
            exit(0);
        default:
            fprintf(stderr, "usage: %s\n", usage);
            exit(2);
        }
    }
    o->broker_args = argv + optind;
    o->nbroker_args = argc - optind;
}

/* The broker beside this program, for the default --broker. */
static const char *default_broker(void)
{
    static char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
    if (n <= 0)
        return "broker";
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    strcpy(slash != NULL ? slash + 1 : path, "broker");
    return path;
}

static void set_nofile(long n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("%s", "getrlimit failed");
    if (n > 0)
        rl.rlim_cur = rl.rlim_max = (rlim_t)n;
    else
        rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("cannot set the open-file limit: %s (raising the hard limit needs root)",
            strerror(errno));
}

/* ---- the broker ---- */

typedef struct {
    pid_t pid;
    int err_fd; /* its stderr, non-blocking */
    char line[4096];
    size_t line_len;
    int port;
    char listening[512];   /* its event=listening line */
    char lowered[512];     /* event=max_connections_lowered */
    char limit_line[512];  /* the first event=connection_limit state=reached */
    char first_fail[512];  /* the first accept_failed */
    int accept_failed;
    int evicted;
} broker;

static void keep(char *dst, size_t cap, const char *line)
{
    if (dst[0] != '\0')
        return;
    size_t n = strlen(line) < cap - 1 ? strlen(line) : cap - 1; /* a long line is cut */
    memcpy(dst, line, n);
    dst[n] = '\0';
}

static void broker_line(broker *b, const char *line)
{
    const char *a;
    if (strstr(line, "event=listening") != NULL) {
        keep(b->listening, sizeof b->listening, line);
        if ((a = strstr(line, "addr=")) != NULL && (a = strrchr(a, ':')) != NULL)
            b->port = atoi(a + 1);
    } else if (strstr(line, "event=max_connections_lowered") != NULL) {
        keep(b->lowered, sizeof b->lowered, line);
    } else if (strstr(line, "event=connection_limit state=reached") != NULL) {
        keep(b->limit_line, sizeof b->limit_line, line);
    } else if (strstr(line, "event=accept_failed") != NULL) {
        keep(b->first_fail, sizeof b->first_fail, line);
        b->accept_failed++;
    } else if (strstr(line, "event=evict") != NULL) {
        b->evicted++;
    }
    if (strstr(line, "level=error") != NULL)
        fprintf(stderr, "broker: %s\n", line);
}

/* Reads what the broker logged; false at EOF (it exited). */
static bool broker_read(broker *b)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(b->err_fd, chunk, sizeof chunk);
        if (n == 0)
            return false;
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        for (ssize_t i = 0; i < n; i++) {
            if (chunk[i] == '\n') {
                b->line[b->line_len] = '\0';
                broker_line(b, b->line);
                b->line_len = 0;
            } else if (b->line_len < sizeof b->line - 1) {
                b->line[b->line_len++] = chunk[i];
            }
        }
    }
}

static void broker_start(broker *b, const options *o)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    b->pid = fork();
    if (b->pid < 0)
        die("fork: %s", strerror(errno));
    if (b->pid == 0) {
        char **argv = calloc((size_t)o->nbroker_args + 4, sizeof *argv);
        if (argv == NULL)
            _exit(127);
        argv[0] = (char *)o->broker;
        argv[1] = "--listen";
        argv[2] = "127.0.0.1:0";
        for (int i = 0; i < o->nbroker_args; i++)
            argv[3 + i] = o->broker_args[i];
        dup2(p[1], 2);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 1);
        execv(o->broker, argv);
        fprintf(stderr, "cannot run %s: %s\n", o->broker, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    b->err_fd = p[0];
    fcntl(b->err_fd, F_SETFL, O_NONBLOCK);
    int64_t deadline = now_ms() + 10000;
    while (b->port == 0 && now_ms() < deadline) {
        if (!broker_read(b))
            die("%s exited before listening", o->broker);
        usleep(10000);
    }
    if (b->port == 0)
        die("%s did not say where it listens", o->broker);
}

static long proc_status(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long v = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = atol(line + klen + 1);
            break;
        }
    fclose(f);
    return v;
}

static long proc_maps(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long n = 0;
    int c;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static long proc_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- the connections ---- */

typedef struct {
    conn *c;
    int n, cap;
    int ep;
    int in_flight;
    tally t;
    int64_t last_served_ms;
    vg_buf connect, pong;
    struct sockaddr_in server;
} pool;

static void note_first(pool *p, const char *what)
{
    if (p->t.first[0] == '\0')
        snprintf(p->t.first, sizeof p->t.first, "%s", what);
}

static void conn_gone(pool *p, conn *c)
{
    if (c->state == CONNECTING || c->state == HANDSHAKE)
        p->in_flight--;
    if (c->state == READY)
        p->t.lost++;
    c->state = GONE;
    epoll_ctl(p->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    vg_decoder_destroy(c->dec);
    c->dec = NULL;
}

/* Opens connection number i from source address 127.0.0.(1 + i / PER_SOURCE). */
static void conn_open(pool *p)
{
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 4096;
        conn *c = realloc(p->c, (size_t)cap * sizeof *c);
        if (c == NULL)
            die("%s", "out of memory");
        p->c = c;
        p->cap = cap;
    }
    int i = p->n++;
    conn *c = &p->c[i];
    *c = (conn){.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
    if (c->fd < 0) {
        c->state = GONE;
        p->t.connect_failed++;
        note_first(p, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i / PER_SOURCE))};
    c->dec = vg_decoder_create(1024, 1 << 16);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
    if (c->dec == NULL || bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        (connect(c->fd, (struct sockaddr *)&p->server, sizeof p->server) != 0 &&
         errno != EINPROGRESS) ||
        epoll_ctl(p->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        note_first(p, strerror(errno));
        p->t.connect_failed++;
        c->state = GONE;
        close(c->fd);
        c->fd = -1;
        vg_decoder_destroy(c->dec);
        c->dec = NULL;
        return;
    }
    c->state = CONNECTING;
    p->in_flight++;
}

static void conn_frame(pool *p, conn *c, const vg_frame *f)
{
    if (f->type == VG_FRAME_PING) {
        if (send(c->fd, p->pong.data, p->pong.len, MSG_NOSIGNAL) != (ssize_t)p->pong.len)
            conn_gone(p, c);
        return;
    }
    if (c->state != HANDSHAKE)
        return;
    if (f->type == VG_FRAME_INFO) {
        c->state = READY;
        p->in_flight--;
        p->t.served++;
        p->last_served_ms = now_ms();
        return;
    }
    if (f->type == VG_FRAME_ERR) {
        char what[64];
        snprintf(what, sizeof what, "err_%s", vg_errcode_name(f->code));
        note_first(p, what);
        if (f->code == VG_E_LIMIT)
            p->t.refused_limit++;
        else
            p->t.refused_other++;
        conn_gone(p, c);
    }
}

static void conn_event(pool *p, conn *c, uint32_t events)
{
    if (c->state == CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            note_first(p, strerror(err));
            p->t.connect_failed++;
            conn_gone(p, c);
            return;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - p->c)};
        epoll_ctl(p->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->state = HANDSHAKE;
        /* A failed send is not judged here: an ERR limit may be waiting to be read. */
        ssize_t sent = send(c->fd, p->connect.data, p->connect.len, MSG_NOSIGNAL);
        (void)sent;
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || c->state == GONE)
        return;
    for (;;) {
        uint8_t *space;
        size_t avail;
        if (vg_decoder_space(c->dec, &space, &avail) != VG_OK)
            die("%s", "out of memory");
        ssize_t n = recv(c->fd, space, avail, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            if (c->state == HANDSHAKE || c->state == CONNECTING) {
                p->t.closed++;
                note_first(p, n == 0 ? "closed_without_answer" : "reset_without_answer");
            }
            conn_gone(p, c);
            return;
        }
        vg_decoder_commit(c->dec, (size_t)n);
        vg_frame f;
        const char *why;
        while (c->state != GONE && vg_decoder_next(c->dec, &f, &why) == VG_OK)
            conn_frame(p, c, &f);
        if (c->state == GONE)
            return;
    }
}

/* Waits up to timeout_ms for events and handles them; false if the broker exited. */
static bool pump(pool *p, broker *b, int timeout_ms)
{
    struct epoll_event ev[512];
    int k = epoll_wait(p->ep, ev, 512, timeout_ms);
    bool alive = true;
    for (int i = 0; i < k; i++) {
        if (ev[i].data.u32 == PIPE_TAG)
            alive = broker_read(b) && alive;
        else
            conn_event(p, &p->c[ev[i].data.u32], ev[i].events);
    }
    return alive;
}

static int not_served(const tally *t)
{
    return t->refused_limit + t->refused_other + t->closed + t->connect_failed + t->unanswered;
}

/* Counts every handshake still in flight as unanswered and drops it. */
static void give_up_in_flight(pool *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->c[i].state == CONNECTING || p->c[i].state == HANDSHAKE) {
            p->t.unanswered++;
            note_first(p, "no_answer");
            conn_gone(p, &p->c[i]);
        }
}

/* Opens connections until target are served or stop_after_refusals are
 * not; then waits for the handshakes in flight. A handshake that gets no
 * answer while nothing else progresses for stall_ms is given up. Returns
 * false if the broker exited. */
static bool open_until(pool *p, broker *b, int target, int stop_after_refusals, int window,
                       int64_t stall_ms)
{
    int64_t progress_at = now_ms();
    int settled = p->t.served + not_served(&p->t);
    for (;;) {
        bool more = p->t.served < target && not_served(&p->t) < stop_after_refusals;
        if (!more && p->in_flight == 0)
            return true;
        while (more && p->in_flight < window && p->t.served + p->in_flight < target &&
               not_served(&p->t) < stop_after_refusals)
            conn_open(p);
        if (!pump(p, b, 200))
            return false;
        int now_settled = p->t.served + not_served(&p->t);
        if (now_settled != settled) {
            settled = now_settled;
            progress_at = now_ms();
        } else if (now_ms() - progress_at > stall_ms) {
            give_up_in_flight(p);
            return true;
        }
    }
}

int main(int argc, char **argv)
{
    options o;
    parse_args(argc, argv, &o);
    if (o.broker == NULL)
        o.broker = default_broker();
    set_nofile(o.nofile);
    signal(SIGPIPE, SIG_IGN);

    broker b = {0};
    broker_start(&b, &o);
    long base_rss = proc_status(b.pid, "VmRSS"), base_maps = proc_maps(b.pid);

    pool p = {.ep = epoll_create1(EPOLL_CLOEXEC)};
    p.server = (struct sockaddr_in){.sin_family = AF_INET,
                                    .sin_port = htons((uint16_t)b.port),
                                    .sin_addr.s_addr = htonl(0x7f000001u)};
    if (p.ep < 0 || vg_frame_put_connect(&p.connect, VG_PROTO_V1, "maxconn", NULL) != VG_OK ||
        vg_frame_put_pong(&p.pong) != VG_OK)
        die("%s", "setup failed");
    struct epoll_event pev = {.events = EPOLLIN, .data.u32 = PIPE_TAG};
    epoll_ctl(p.ep, EPOLL_CTL_ADD, b.err_fd, &pev);

    int64_t t0 = now_ms();
    int64_t stall_ms = (int64_t)(o.stall_s * 1000);
    bool alive = open_until(&p, &b, o.max, 1, o.window, stall_ms);
    int64_t t1 = p.last_served_ms > 0 ? p.last_served_ms : now_ms(); /* not the stall */
    for (int i = 0; i < 20 && alive; i++) /* let the broker's log of the peak arrive */
        alive = pump(&p, &b, 10);
    long rss = proc_status(b.pid, "VmRSS"), threads = proc_status(b.pid, "Threads");
    long maps = proc_maps(b.pid), fds = proc_fds(b.pid);
    tally at_peak = p.t;

    int64_t hold_until = now_ms() + (int64_t)(o.hold_s * 1000);
    while (alive && now_ms() < hold_until)
        alive = pump(&p, &b, 200);
    int lost_while_held = p.t.lost;

    /* A steady refusal, not a blip: --extra more, one at a time (not after
     * a stall: each would wait --stall for nothing). */
    tally before_extra = p.t;
    if (alive && o.extra > 0 && not_served(&p.t) > 0 && p.t.unanswered == 0)
        alive = open_until(&p, &b, o.max + o.extra, not_served(&p.t) + o.extra, 1, stall_ms);

    printf("served=%d refused_by=%s err_limit=%d closed_without_answer=%d other_err=%d "
           "connect_failed=%d unanswered=%d seconds=%.1f broker_rss_kb=%ld broker_threads=%ld "
           "broker_maps=%ld broker_fds=%ld "
           "rss_per_conn_b=%.0f maps_per_conn=%.2f lost_while_held=%d "
           "extra_tried=%d extra_served=%d extra_limit=%d extra_closed=%d accept_failed_logged=%d "
           "broker_alive=%s\n",
           at_peak.served, at_peak.first[0] ? at_peak.first : (at_peak.served >= o.max ? "max" : "none"),
           at_peak.refused_limit, at_peak.closed, at_peak.refused_other, at_peak.connect_failed,
           at_peak.unanswered, (double)(t1 - t0) / 1000, rss, threads, maps, fds,
           at_peak.served > 0 ? (double)(rss - base_rss) * 1024 / at_peak.served : 0.0,
           at_peak.served > 0 ? (double)(maps - base_maps) / at_peak.served : 0.0,
           lost_while_held, not_served(&p.t) - not_served(&before_extra) + p.t.served - before_extra.served,
           p.t.served - before_extra.served, p.t.refused_limit - before_extra.refused_limit,
           p.t.closed - before_extra.closed, b.accept_failed, alive ? "yes" : "no");
    if (b.lowered[0])
        printf("broker: %s\n", b.lowered);
    printf("broker: %s\n", b.listening);
    if (b.limit_line[0])
        printf("broker: %s\n", b.limit_line);
    if (b.first_fail[0])
        printf("broker: %s (%d such lines)\n", b.first_fail, b.accept_failed);
    fflush(stdout);

    for (int i = 0; i < p.n; i++)
        if (p.c[i].state != GONE)
            conn_gone(&p, &p.c[i]);
    if (o.after_s > 0 && alive) {
        for (int64_t until = now_ms() + (int64_t)(o.after_s * 1000); alive && now_ms() < until;)
            alive = pump(&p, &b, 200);
        printf("after_close_s=%.1f broker_rss_kb=%ld broker_threads=%ld broker_maps=%ld\n",
               o.after_s, proc_status(b.pid, "VmRSS"), proc_status(b.pid, "Threads"),
               proc_maps(b.pid));
        fflush(stdout);
    }
    kill(b.pid, SIGTERM);
    int status;
    /* Keep reading its log (a line per client closing) so that it never blocks on it. */
    for (int64_t until = now_ms() + 10000; now_ms() < until && waitpid(b.pid, &status, WNOHANG) == 0;) {
        struct pollfd pf = {.fd = b.err_fd, .events = POLLIN};
        if (poll(&pf, 1, 50) > 0 && !broker_read(&b))
            break;
    }
    if (waitpid(b.pid, &status, WNOHANG) == 0) {
        kill(b.pid, SIGKILL);
        waitpid(b.pid, &status, 0);
    }
    free(p.c);
    vg_buf_free(&p.connect);
    vg_buf_free(&p.pong);
    return 0;
}
