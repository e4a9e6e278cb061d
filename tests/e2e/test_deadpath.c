/* A dead network path under traffic, and a stopped subscriber under a
 * flood: each side must find the connection dead by vigil's own rule, at the
 * detection bound, under the right reason.
 *
 * The trap: "the kernel took more of our output after refusing some" is no
 * sign of life of the peer. On a dead path, or towards a stopped peer whose
 * window is shut, the local send buffer still finds room now and then (a
 * PING written after a refusal fits in what is left, or the kernel grows
 * the buffer), so a sender that counts that as life finds the death late,
 * or never, and the kernel's TCP_USER_TIMEOUT closes the socket first, as
 * an error. Only what the peer did counts: bytes from it, or its TCP
 * acknowledging ours.
 *
 * A userspace proxy cannot show this (its kernel still ACKs), so the
 * network cases run the broker and clients in two network namespaces and
 * kill the path with nftables (netns.h): every packet dropped, no RST, no
 * ICMP. They need root and skip, saying why, without it.
 *
 * Keep-alive 1/0.5/3 makes a silent peer dead BOUND_MS = 2.5 s after its last
 * sign of life, so at most that long after the cut. Every time is judged by
 * the ts= of the program's own log line against the wall clock at the cut;
 * SLACK_MS covers scheduling. Each line that declares a death says how long
 * the peer had been silent: that silence must have started by the cut.
 * Timings are multiplied by VIGIL_TEST_TIME_SCALE (sanitizer builds). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "logline.h"
#include "netns.h"

#define KA "--keepalive-time", h_secs(1), "--keepalive-interval", h_secs(0.5), "--keepalive-probes", "3"
#define BOUND_MS h_ms(2500)
#define SLACK_MS h_ms(1000)
/* How long after the cut a last sign of life may still be dated: lines
 * carry milliseconds, and bytes that arrived just before the cut may be
 * read just after it. */
#define LIFE_TOLERANCE_MS h_ms(100)
#define WAIT h_ms(10000)
#define FAST_RETRY "--backoff-base", "0.05", "--backoff-max", "0.2"

/* A moment on both clocks: deadlines run on the monotonic one, log lines
 * are stamped with the wall one. */
typedef struct {
    int64_t mono, wall;
} instant;

static instant now(void) { return (instant){h_now_ms(), h_wall_ms()}; }

static instant cut(h_netns *n)
{
    h_netns_cut(n);
    return now();
}

/* What waiting for an event line found. */
typedef struct {
    bool found;       /* the awaited line (else line is a wrong one, or empty) */
    char line[512];
    long long at_ms;  /* the line's ts= minus the reference instant */
} seen;

/* Waits up to within_ms after t for want in p's stderr, stopping early at
 * any of wrong (lines that mean want will not come: the connection ended
 * otherwise). If neither comes in time, waits up to WAIT more, to tell what
 * happened instead. */
static seen await_line(h_proc *p, const char *want, const char *const wrong[], instant t,
                       int within_ms)
{
    const char *needles[8] = {want};
    int k = 1;
    for (; wrong != NULL && wrong[k - 1] != NULL && k < 7; k++)
        needles[k] = wrong[k - 1];
    needles[k] = NULL;
    int i = h_wait_err_any(p, needles, t.mono + within_ms);
    if (i < 0)
        i = h_wait_err_any(p, needles, t.mono + within_ms + WAIT);
    seen r = {.found = i == 0, .at_ms = -1};
    if (i >= 0) {
        h_line(p->err, needles[i], r.line, sizeof r.line);
        int64_t ts;
        cr_assert(h_line_ts(r.line, &ts), "no ts= in %s's line: %s", p->name, r.line);
        r.at_ms = ts - t.wall;
    }
    return r;
}

/* Expects p (who) to declare its peer dead with the line want within the
 * bound + slack of the cut, not with any of wrong, and the silence it
 * reports to have begun by the cut. Non-fatal, so that one run tells
 * everything that went wrong on both sides. */
static void expect_dead(h_proc *p, const char *who, const char *want, const char *const wrong[],
                        instant at_cut)
{
    int within = BOUND_MS + SLACK_MS;
    seen r = await_line(p, want, wrong, at_cut, within);
    if (!r.found) {
        if (r.line[0])
            cr_expect_fail("%s: no \"%s\" within %d ms of the cut (bound %d ms + slack %d ms); "
                           "instead, %lld ms after the cut: %s\n---- %s stderr ----\n%s",
                           who, want, within, BOUND_MS, SLACK_MS, r.at_ms, r.line, who, p->err);
        else
            cr_expect_fail("%s: no \"%s\", nor any other end of the connection, within %d ms of "
                           "the cut (bound %d ms + slack %d ms)\n---- %s stderr ----\n%s",
                           who, want, within + WAIT, BOUND_MS, SLACK_MS, who, p->err);
        return;
    }
    long long silent = -1;
    bool has_silence = h_line_num(r.line, "silent for ", &silent);
    long long life = r.at_ms - silent; /* the last sign of life it counted, from the cut */
    cr_log_info("%s: dead %lld ms after the cut (bound %d ms), last sign of life %+lld ms from the "
                "cut: %s",
                who, r.at_ms, BOUND_MS, life, r.line);
    cr_expect(r.at_ms <= within,
              "%s declared the path dead %lld ms after the cut, later than the bound %d ms + slack "
              "%d ms: %s",
              who, r.at_ms, BOUND_MS, SLACK_MS, r.line);
    cr_expect(has_silence, "%s did not say how long the peer was silent: %s", who, r.line);
    cr_expect(!has_silence || life <= LIFE_TOLERANCE_MS,
              "%s counted a sign of life %lld ms after the path died (silent for %lld ms when it "
              "declared death %lld ms after the cut): only the peer can show life, and it could "
              "not: %s",
              who, life, silent, r.at_ms, r.line);
}

/* The broker's two verdicts about client id, and the one it must not give. */
static void expect_evicted_for_heartbeat(h_proc *b, unsigned id, instant at_cut)
{
    char want[96], error[96], eof[96], other[96];
    snprintf(want, sizeof want, "event=evict reason=heartbeat client=%u ", id);
    snprintf(error, sizeof error, "event=client_closed reason=error client=%u ", id);
    snprintf(eof, sizeof eof, "event=client_closed reason=eof client=%u ", id);
    snprintf(other, sizeof other, "event=evict reason=slow_consumer client=%u ", id);
    expect_dead(b, "broker", want, (const char *const[]){error, eof, other, NULL}, at_cut);
    cr_expect(strstr(b->err, error) == NULL && strstr(b->err, eof) == NULL,
              "the kernel (TCP_USER_TIMEOUT), not vigil, ended client %u: no eviction, not "
              "counted in $SYS.stats:\n%s",
              id, b->err);
}

/* A client's verdict about the broker. */
static void expect_client_dead(h_proc *c, const char *who, instant at_cut)
{
    expect_dead(c, who, "event=disconnected reason=heartbeat",
                (const char *const[]){"event=disconnected reason=", NULL}, at_cut);
}

static unsigned client_id(h_proc *b, const char *name)
{
    int64_t deadline = h_now_ms() + WAIT;
    unsigned id;
    while ((id = h_client_id(b, name)) == 0 && h_now_ms() < deadline)
        h_pump(b, 50);
    cr_assert(id != 0, "the broker never logged client_connected for %s: %s", name, b->err);
    return id;
}

/* Waits until sub has printed message m-<n> of topic feed. */
static void await_message(h_proc *s, int n)
{
    char line[64];
    snprintf(line, sizeof line, "feed MSG_TYPE1 m-%d\n", n);
    cr_assert(h_wait_out(s, line, WAIT), "no message m-%d before the cut: %s", n, s->err);
}

/* Exits 77 (ctest: Skipped) when the namespace cases could not run. */
int main(int argc, char *argv[]) { return h_netns_main(argc, argv); }

/* ---- a dead path, both ends in their own namespaces ---- */

/* a. Nothing flowing: the plain heartbeat case, which must already work;
 * then the path heals and the subscriber comes back by itself. */
Test(deadpath, idle_subscriber_behind_a_dead_path, .fini = h_netns_down)
{
    h_netns *n = h_netns_up();
    int port;
    h_proc *b = h_netns_broker(n, &port, KA, NULL);
    h_proc *s = h_netns_sub(n, H_NS_B, port, KA, FAST_RETRY, "--name", "victim", "feed", NULL);
    unsigned id = client_id(b, "victim");
    /* Idle long enough for a PING/PONG round, so that the path dies on a
     * connection in its steady state, not one just opened. */
    int64_t idle_until = h_now_ms() + h_ms(1500);
    while (h_now_ms() < idle_until)
        h_pump(b, (int)(idle_until - h_now_ms()));
    cr_assert(strstr(b->err, "event=evict") == NULL && strstr(s->err, "event=disconnected") == NULL,
              "an idle connection on a working path was dropped:\n%s\n%s", b->err, s->err);

    instant t = cut(n);
    expect_evicted_for_heartbeat(b, id, t);
    expect_client_dead(s, "subscriber", t);

    h_netns_restore(n);
    cr_assert(h_wait_err(s, "event=reconnected", WAIT), "no reconnect once the path healed: %s",
              s->err);
    h_free(s), h_free(b);
}

/* b, c. A subscriber receiving a steady stream when the path dies: the
 * broker's output to it keeps going into its socket, which proves nothing. */
static void flowing_to_subscriber(const char *interval, int warm_up)
{
    h_netns *n = h_netns_up();
    int port;
    h_proc *b = h_netns_broker(n, &port, KA, NULL);
    h_proc *s = h_netns_sub(n, H_NS_B, port, KA, FAST_RETRY, "--name", "victim", "feed", NULL);
    unsigned id = client_id(b, "victim");
    h_proc *p = h_netns_pub_start(n, H_NS_A, port, KA, "--name", "feeder", "--count", "0",
                                  "--interval", interval, "feed", "m-{n}", NULL);
    int64_t t0 = h_now_ms();
    await_message(s, warm_up);
    cr_log_info("%d messages in %lld ms before the cut", warm_up, (long long)(h_now_ms() - t0));

    instant t = cut(n);
    expect_evicted_for_heartbeat(b, id, t);
    expect_client_dead(s, "subscriber", t);
    cr_expect(strstr(p->err, "event=disconnected") == NULL,
              "the publisher, on the broker's side of the cut, lost its connection: %s", p->err);
    h_free(p), h_free(s), h_free(b);
}

Test(deadpath, subscriber_receiving_100_msgs_per_s_behind_a_dead_path, .fini = h_netns_down)
{
    flowing_to_subscriber("0.01", 100);
}

Test(deadpath, subscriber_receiving_1000_msgs_per_s_behind_a_dead_path, .fini = h_netns_down)
{
    flowing_to_subscriber("0.001", 1000);
}

/* d. A publisher sending 1,000 msgs/s when the path dies: its own output
 * keeps going into its socket, which proves nothing either. */
Test(deadpath, publisher_sending_1000_msgs_per_s_behind_a_dead_path, .fini = h_netns_down)
{
    h_netns *n = h_netns_up();
    int port;
    h_proc *b = h_netns_broker(n, &port, KA, NULL);
    h_proc *watch = h_netns_sub(n, H_NS_A, port, KA, "--name", "watch", "feed", NULL);
    /* --timeout: once stopped, it gives up confirming over the dead path soon. */
    h_proc *p = h_netns_pub_start(n, H_NS_B, port, KA, FAST_RETRY, "--timeout", h_secs(1), "--name",
                                  "victim", "--count", "0", "--interval", "0.001", "feed", "m-{n}",
                                  NULL);
    unsigned id = client_id(b, "victim");
    int64_t t0 = h_now_ms();
    await_message(watch, 1000);
    cr_log_info("1000 messages in %lld ms before the cut", (long long)(h_now_ms() - t0));

    instant t = cut(n);
    expect_client_dead(p, "publisher", t);
    expect_evicted_for_heartbeat(b, id, t);
    h_free(p), h_free(watch), h_free(b);
}

/* ---- e. a stopped subscriber under a flood, on loopback ---- */

/* Keep-alive 3/1/2: dead after 5 s, long enough for a whole 20 MB flood to
 * be routed first. */
#define KA5 "--keepalive-time", h_secs(3), "--keepalive-interval", h_secs(1), "--keepalive-probes", "2"
#define BOUND5_MS h_ms(5000)
#define FLOOD 20000

/* evictions.<key> in a $SYS.stats JSON line, or -1. */
static long long evictions(const char *json, const char *key)
{
    const char *e = strstr(json, "\"evictions\":{");
    char want[48];
    snprintf(want, sizeof want, "\"%s\":", key);
    const char *at = e != NULL ? strstr(e, want) : NULL;
    const char *close = e != NULL ? strchr(e, '}') : NULL;
    return at != NULL && at < close ? atoll(at + strlen(want)) : -1;
}

/* Copies the JSON of the last complete $SYS.stats line s printed. */
static bool last_stats(const h_proc *s, char *json, size_t cap)
{
    const char prefix[] = "$SYS.stats MSG_TYPE1 ";
    const char *end = strrchr(s->out, '\n');
    if (end == NULL)
        return false;
    const char *l = end;
    while (l > s->out && l[-1] != '\n')
        l--;
    if (strncmp(l, prefix, strlen(prefix)) != 0)
        return false;
    l += strlen(prefix);
    snprintf(json, cap, "%.*s", (int)(end - l), l);
    return true;
}

/* Checks that s printed flood messages 1..FLOOD, each once; returns how
 * many distinct ones it printed. One pass over the lines: strstr from each
 * line would rescan the whole 20 MB under ASan (its interceptor measures
 * the haystack first). */
static int distinct_flood_messages(const h_proc *s, int *dups)
{
    static bool seen_n[FLOOD + 1];
    memset(seen_n, 0, sizeof seen_n);
    int distinct = 0;
    *dups = 0;
    const char prefix[] = "flood MSG_TYPE1 ";
    const char *end = s->out + s->out_len;
    for (const char *l = s->out; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        if (nl == NULL)
            break;
        if ((size_t)(nl - l) > strlen(prefix) && strncmp(l, prefix, strlen(prefix)) == 0) {
            long v = strtol(l + strlen(prefix), NULL, 10);
            if (v >= 1 && v <= FLOOD) {
                if (seen_n[v])
                    ++*dups;
                else
                    distinct++;
                seen_n[v] = true;
            }
        }
        l = nl + 1;
    }
    return distinct;
}

/* A duplicate (pidfd_getfd) of p's TCP socket connected to 127.0.0.1:port,
 * or -1: through it the test reads that socket's state while p is stopped.
 * (Not /proc/net/tcp: on a busy machine it lists tens of thousands of
 * sockets and takes a tenth of a second to read.) */
static int socket_of(const h_proc *p, int port)
{
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)p->pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int found = -1;
    for (struct dirent *e; found < 0 && (e = readdir(d)) != NULL;) {
        char fd_path[320];
        snprintf(fd_path, sizeof fd_path, "%s/%s", path, e->d_name);
        ssize_t len = readlink(fd_path, link, sizeof link - 1);
        if (len <= 0 || strncmp(link, "socket:", 7) != 0)
            continue;
        int fd = (int)syscall(SYS_pidfd_getfd, p->pid_fd, atoi(e->d_name), 0);
        if (fd < 0)
            continue;
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int type = 0;
        socklen_t tlen = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_STREAM &&
            getpeername(fd, (struct sockaddr *)&peer, &plen) == 0 && peer.sin_family == AF_INET &&
            ntohs(peer.sin_port) == port)
            found = fd;
        else
            close(fd);
    }
    closedir(d);
    return found;
}

/* Bytes in fd's receive queue: what its kernel accepted (and ACKed) and its
 * process has not read. */
static long rx_queue(int fd)
{
    int n = 0;
    return ioctl(fd, SIOCINQ, &n) == 0 ? n : -1;
}

/* Its kernel ACKs while its receive buffer fills, then advertises a zero
 * window for ever: output stuck, the slow-consumer rule. The bound runs from
 * the last data its kernel acknowledged, shortly after the flood began: the
 * test watches its receive queue (/proc/net/tcp) and takes the last time it
 * grew. Whatever the broker's own kernel accepts after that (its send buffer
 * grows with each ACK of a zero-window probe) is no progress. */
Test(deadpath, stopped_subscriber_under_a_flood_is_evicted_as_a_slow_consumer)
{
    int port;
    h_proc *b = h_broker(&port, KA5, "--stats-interval", h_secs(0.5), NULL);
    h_proc *stats = h_sub(port, "$SYS.stats", NULL);
    h_proc *frozen = h_sub(port, KA5, "--name", "frozen", "flood", NULL);
    h_proc *healthy = h_sub(port, KA5, "--name", "healthy", "flood", NULL);
    unsigned id = client_id(b, "frozen");
    int sock = socket_of(frozen, port);
    if (sock < 0)
        cr_log_warn("cannot reach the frozen subscriber's socket (pidfd_getfd: %s): the bound is "
                    "counted from the first delivery, a little early",
                    strerror(errno));

    static char msg[1100];
    strcpy(msg, "{n}-"); /* n, then x up to 1000 bytes for five-digit n */
    memset(msg + 4, 'x', 994);
    msg[998] = '\0';
    h_signal(frozen, SIGSTOP);
    instant stopped = now();
    h_proc *p = h_pub_start(port, "--count", "20000", "flood", msg, NULL);
    cr_assert(h_wait_out(healthy, "flood MSG_TYPE1 1-x", WAIT), "the flood did not start: %s",
              p->err);
    instant first = now();

    /* Follow the flood to its end at the healthy subscriber, and the frozen
     * one's receive queue until it has stopped growing. */
    char last[48];
    snprintf(last, sizeof last, "flood MSG_TYPE1 %d-x", FLOOD);
    instant last_ack = first, ended = {0};
    long queued = 0;
    size_t scanned = 0;
    int64_t give_up = first.mono + WAIT, sampled = 0;
    while (h_now_ms() < give_up) {
        if (sock >= 0 && h_now_ms() - sampled >= 5) {
            sampled = h_now_ms();
            long q = rx_queue(sock);
            if (q > queued)
                queued = q, last_ack = now();
        }
        if (ended.mono == 0) {
            if (strstr(healthy->out + scanned, last) != NULL)
                ended = now();
            scanned = healthy->out_len > sizeof last ? healthy->out_len - sizeof last : 0;
        }
        if (ended.mono != 0 && h_now_ms() - last_ack.mono >= h_ms(500))
            break;
        h_pump(healthy, 5);
    }
    if (sock >= 0) { /* a second opinion on the last data it took */
        struct tcp_info ti;
        socklen_t tl = sizeof ti;
        if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0)
            cr_log_info("frozen subscriber's kernel, by its TCP_INFO: last data received %lld ms "
                        "after the first delivery",
                        (long long)(h_now_ms() - ti.tcpi_last_data_recv - first.mono));
        close(sock);
    }
    cr_log_info("flood: first delivery %lld ms after the stop; the frozen subscriber's kernel took "
                "%ld bytes, the last %lld ms after the first delivery; the healthy subscriber had "
                "all %lld ms after it",
                (long long)(first.mono - stopped.mono), queued,
                (long long)(last_ack.mono - first.mono),
                ended.mono ? (long long)(ended.mono - first.mono) : -1LL);
    cr_expect(h_wait_exit(p, WAIT) && h_exit_code(p) == 0, "the publisher did not finish cleanly: %s",
              p->err);
    int dups, got = distinct_flood_messages(healthy, &dups);
    cr_expect(ended.mono != 0 && got == FLOOD && dups == 0,
              "the healthy subscriber got %d of %d messages (%d twice) in %d ms: a stopped "
              "subscriber cost it messages",
              got, FLOOD, dups, WAIT);

    char want[96], error[96], eof[96], hb[96];
    snprintf(want, sizeof want, "event=evict reason=slow_consumer client=%u ", id);
    snprintf(error, sizeof error, "event=client_closed reason=error client=%u ", id);
    snprintf(eof, sizeof eof, "event=client_closed reason=eof client=%u ", id);
    snprintf(hb, sizeof hb, "event=evict reason=heartbeat client=%u ", id);
    int within = BOUND5_MS + SLACK_MS;
    seen r = await_line(b, want, (const char *const[]){error, eof, hb, NULL}, last_ack, within);
    long long from_stop = r.at_ms + (long long)(last_ack.wall - stopped.wall);
    if (r.found) {
        cr_log_info("frozen subscriber evicted %lld ms after its kernel last took data (bound %d "
                    "ms), %lld ms after the stop: %s",
                    r.at_ms, BOUND5_MS, from_stop, r.line);
        cr_expect(r.at_ms <= within,
                  "evicted %lld ms after the frozen subscriber's kernel last took data, later than "
                  "the bound %d ms + slack %d ms: %s",
                  r.at_ms, BOUND5_MS, SLACK_MS, r.line);
    } else if (r.line[0]) {
        cr_expect_fail("no \"%s\" within %d ms of the last data the frozen subscriber's kernel "
                       "took (bound %d ms + slack %d ms); instead, %lld ms after it (%lld ms after "
                       "the stop): %s\n---- broker stderr ----\n%s",
                       want, within, BOUND5_MS, SLACK_MS, r.at_ms, from_stop, r.line, b->err);
    } else {
        cr_expect_fail("no \"%s\", nor any end of that connection, within %d ms of the last data "
                       "the frozen subscriber's kernel took\n---- broker stderr ----\n%s",
                       want, within + WAIT, b->err);
    }

    /* $SYS.stats counts it where operators look. */
    if (r.found) {
        int64_t deadline = h_now_ms() + WAIT;
        long long sc = -1;
        char json[4096] = "";
        while (h_now_ms() < deadline) {
            if (last_stats(stats, json, sizeof json) && (sc = evictions(json, "slow_consumer")) >= 1)
                break;
            h_pump(stats, 50);
        }
        cr_expect_eq(sc, 1, "evictions.slow_consumer is %lld, not 1, in the last $SYS.stats: %s", sc,
                     json);
    }

    h_signal(frozen, SIGCONT);
    h_free(p), h_free(healthy), h_free(frozen), h_free(stats), h_free(b);
}
