/* Signals end to end: every program stops within 100 ms of SIGINT/SIGTERM
 * in every state (connecting, backing off, waiting for buffer room,
 * confirming, blocked writing its output), an interrupted pub that lost
 * nothing exits 0, SIGHUP makes the broker reload, not die, and under
 * systemd (NOTIFY_SOCKET) the broker says READY, RELOADING and STOPPING.
 *
 * The 100 ms is multiplied by the time scale for sanitizer builds. */
#include <criterion/criterion.h>
#include <poll.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

#define WAIT h_ms(10000)
#define STOP_MS h_ms(100)

/* Waits for p's exit itself (its pidfd), not for its pipes to close. */
static bool exited_within(h_proc *p, int timeout_ms)
{
    struct pollfd pf = {.fd = p->pid_fd, .events = POLLIN};
    return poll(&pf, 1, timeout_ms) == 1;
}

/* Sends sig to p and asserts it exits within STOP_MS; returns its code. */
static int stop_within_bound(h_proc *p, int sig, const char *state)
{
    /* ThreadSanitizer's runtime sleeps 1 s at exit (atexit_sleep_ms) when
     * other threads still run: that is not the program's doing. */
    int limit = STOP_MS + (h_sanitized(p) ? 1000 : 0);
    int64_t t0 = h_now_ms();
    h_signal(p, sig);
    bool gone = exited_within(p, WAIT);
    int64_t took = h_now_ms() - t0;
    h_wait_exit(p, WAIT); /* reap, and collect what it said */
    cr_assert(gone, "%s (%s) ignored signal %d: %s", p->name, state, sig, p->err);
    cr_log_info("%s %s: stopped %lld ms after signal %d", p->name, state, (long long)took, sig);
    cr_assert(took <= limit, "%s (%s) took %lld ms to stop (at most %d): %s", p->name, state,
              (long long)took, limit, h_tail(p->err));
    return h_exit_code(p);
}

/* The bytes waiting in the receive queue (rx) or send queue (tx) of the
 * TCP socket from 127.0.0.1:local to 127.0.0.1:remote, from /proc/net/tcp;
 * -1 if there is no such socket. */
static long queued(int local, int remote, bool rx)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    cr_assert(f != NULL);
    char line[512];
    long found = -1;
    while (found < 0 && fgets(line, sizeof line, f) != NULL) {
        unsigned la, lp, ra, rp, st;
        unsigned long txq, rxq;
        if (sscanf(line, " %*d: %x:%x %x:%x %x %lx:%lx", &la, &lp, &ra, &rp, &st, &txq, &rxq) == 7 &&
            (int)lp == local && (int)rp == remote)
            found = (long)(rx ? rxq : txq);
    }
    fclose(f);
    return found;
}

/* The client port of the connection the broker logged for name. */
static int client_port(h_proc *broker, const char *name)
{
    char needle[64];
    snprintf(needle, sizeof needle, " name=%s\n", name);
    cr_assert(h_wait_err(broker, needle, WAIT), "%s", broker->err);
    const char *hit = strstr(broker->err, needle);
    while (hit > broker->err && hit[-1] != '\n')
        hit--;
    const char *addr = strstr(hit, "addr=127.0.0.1:");
    cr_assert(addr != NULL);
    return atoi(addr + strlen("addr=127.0.0.1:"));
}

/* Waits until the socket's queue holds more than min bytes. */
static void wait_queued(int local, int remote, bool rx, long min, const char *what)
{
    int64_t deadline = h_now_ms() + WAIT;
    while (queued(local, remote, rx) <= min) {
        cr_assert(h_now_ms() < deadline, "timed out waiting for %s", what);
        poll(NULL, 0, 5);
    }
}

/* A port where nothing listens (a broker started and stopped on it). */
static int dead_port(void)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_free(b);
    return port;
}

Test(signals, pub_stops_at_once_while_it_cannot_connect)
{
    int port = dead_port();
    h_proc *p = h_pub_start(port, "--timeout", "30", "t", "m", NULL);
    cr_assert(h_wait_err(p, "event=connect_failed", WAIT), "%s", p->err);
    cr_assert_eq(stop_within_bound(p, SIGINT, "connecting"), 0, "nothing was published: %s", p->err);
    h_free(p);
}

Test(signals, sub_stops_at_once_while_backing_off)
{
    int port = dead_port();
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    const char *argv[] = {h_bin("sub"), "--server", server, "--backoff-base", "5", "--backoff-max",
                          "5", "t", NULL};
    h_proc *s = h_spawn("sub", argv);
    cr_assert(h_wait_err(s, "event=connect_failed", WAIT), "%s", s->err);
    cr_assert_eq(stop_within_bound(s, SIGTERM, "backing off"), 0, "%s", s->err);
    h_free(s);
}

/* The broker is stopped (SIGSTOP): its kernel takes the bytes, but no PONG
 * will ever come, so pub waits in its final flush. */
Test(signals, pub_stops_at_once_while_it_waits_for_a_confirmation)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *p = h_pub_start(port, "--timeout", "30", "--count", "3", "t", "m-{n}", NULL);
    cr_assert(h_wait_err(p, "event=connected", WAIT), "%s", p->err);
    h_signal(b, SIGSTOP);
    /* It connects (the stopped broker's kernel accepts), and is never answered. */
    h_proc *q = h_pub_start(port, "--log-level", "debug", "--timeout", "30", "t", "late", NULL);
    cr_assert(h_wait_err(q, "event=connecting", WAIT), "%s", q->err);
    int code = stop_within_bound(q, SIGINT, "connecting to a stopped broker");
    cr_assert_eq(code, 0, "nothing was published: %s", q->err);
    h_signal(b, SIGCONT);
    cr_assert(h_wait_exit(p, WAIT) && h_exit_code(p) == 0, "%s", p->err);
    h_free(q), h_free(p);

    /* Now one that has published and waits for its PONG. */
    p = h_pub_start(port, "--name", "confirming", "--timeout", "30", "--count", "0", "--interval",
                    "0.01", "t", "m-{n}", NULL);
    int pport = client_port(b, "confirming");
    cr_assert(h_wait_err(p, "event=connected", WAIT), "%s", p->err); /* INFO reached it */
    h_signal(b, SIGSTOP);
    /* Once the stopped broker holds bytes it has not read, pub has messages
     * that cannot be confirmed. */
    wait_queued(port, pport, true, 0, "pub to publish to the stopped broker");
    code = stop_within_bound(p, SIGINT, "waiting for confirmations");
    cr_assert_eq(code, 1, "messages it could not confirm: exit 1: %s", p->err);
    cr_assert(strstr(p->err, "event=incomplete") && strstr(p->err, "interrupted=true"), "%s", p->err);
    h_signal(b, SIGCONT);
    h_free(p), h_free(b);
}

/* The buffer is full because the broker does not read. */
Test(signals, pub_stops_at_once_while_it_waits_for_buffer_room)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *p = h_pub_start(port, "--name", "filling", "--buffer", "64K", "--count", "0", "t",
                            "x-{n}", NULL);
    int pport = client_port(b, "filling");
    cr_assert(h_wait_err(p, "event=connected", WAIT), "%s", p->err);
    h_signal(b, SIGSTOP);
    /* Once pub's own socket holds bytes the broker's full one refused, its
     * 64 KiB buffer fills at once: it is waiting for room. */
    wait_queued(pport, port, false, 0, "the stopped broker's receive buffer to fill");
    int code = stop_within_bound(p, SIGTERM, "waiting for buffer room");
    cr_assert_eq(code, 1, "%s", p->err);
    h_signal(b, SIGCONT);
    h_free(p), h_free(b);
}

/* Defect 12: interrupted while waiting for room, with a broker that keeps
 * up, pub confirmed everything it had published: it must not look like a
 * loss (it exited 1 with unconfirmed=0 before). */
Test(signals, an_interrupted_pub_that_lost_nothing_exits_zero)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s = h_sub(port, "t", NULL);
    h_proc *p = h_pub_start(port, "--buffer", "64K", "--count", "0", "t", "x-{n}", NULL);
    /* A flood with a small buffer: pub is mostly waiting for room. */
    cr_assert(h_wait_out(s, "t MSG_TYPE1 x-20000\n", WAIT), "no flood reached the subscriber");
    h_signal(p, SIGINT);
    cr_assert(h_wait_exit(p, WAIT), "%s", p->err);
    const char *line = strstr(p->err, "published=");
    cr_assert(line != NULL, "%s", p->err);
    unsigned long long pub = 0, conf = 0, unconf = 0, unsent = 0;
    cr_assert_eq(sscanf(line, "published=%llu confirmed=%llu unconfirmed=%llu unsent=%llu", &pub,
                        &conf, &unconf, &unsent),
                 4, "%s", line);
    cr_assert_eq(pub, conf + unconf + unsent, "the counters do not add up: %s", line);
    if (conf == pub)
        cr_assert_eq(h_exit_code(p), 0, "nothing lost, yet exit %d: %s", h_exit_code(p), p->err);
    else
        cr_assert_eq(h_exit_code(p), 1, "%s", p->err);
    cr_log_info("interrupted pub: %s", line);
    h_free(p), h_free(s), h_free(b);
}

/* sub's I/O thread is blocked writing a stdout nobody reads. */
Test(signals, sub_stops_at_once_while_its_output_is_blocked)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s = h_sub(port, "flood", NULL);
    s->throttled = true; /* nobody reads its stdout: the pipe fills */
    static char msg[1100];
    memset(msg, 'y', 1000);
    strcpy(msg + 1000, "-{n}");
    h_proc *p = h_pub_start(port, "--count", "20000", "flood", msg, NULL);
    cr_assert(h_wait_exit(p, WAIT), "%s", p->err);
    stop_within_bound(s, SIGTERM, "blocked on stdout");
    h_free(p), h_free(s), h_free(b);
}

Test(signals, broker_stops_at_once_with_clients_connected)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s1 = h_sub(port, "a", NULL);
    h_proc *s2 = h_sub(port, "b", NULL);
    h_signal(s2, SIGSTOP); /* one that will not read its ERR shutdown */
    cr_assert_eq(stop_within_bound(b, SIGTERM, "with clients"), 0, "%s", b->err);
    h_signal(s2, SIGCONT);
    h_free(s1), h_free(s2), h_free(b);
}

/* Defect 13: SIGHUP killed the broker silently (exit 129). Now it reloads
 * (test_config.c); without --config, nothing changes. */
Test(signals, sighup_reloads_and_the_broker_keeps_serving)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_signal(b, SIGHUP);
    cr_assert(h_wait_err(b, "event=sighup action=reload file=none", WAIT), "%s", h_tail(b->err));
    cr_assert(h_wait_err(b, "event=reload_done changed=0 skipped=0", WAIT), "%s", h_tail(b->err));
    cr_assert(!b->exited, "the broker died of SIGHUP");
    h_assert_serves(port);
    h_free(b);
}

/* A datagram socket in the abstract namespace for NOTIFY_SOCKET. */
static int notify_socket(char *name, size_t cap)
{
    snprintf(name, cap, "@vigil-test-notify-%d", (int)getpid());
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path + 1, name + 1, strlen(name) - 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa,
                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name))),
                 0, "bind %s", name);
    return fd;
}

/* The next datagram on fd, which must start with want. */
static void expect_state(int fd, const char *want, h_proc *b)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int64_t deadline = h_now_ms() + WAIT;
    while (poll(&p, 1, 20) == 0 && h_now_ms() < deadline)
        h_pump(b, 0); /* keep its log pipe from filling */
    cr_assert(p.revents & POLLIN, "waiting for the broker's %s: %s", want, h_tail(b->err));
    char got[256];
    ssize_t n = recv(fd, got, sizeof got - 1, 0);
    cr_assert(n >= 0);
    got[n] = '\0';
    cr_assert(strncmp(got, want, strlen(want)) == 0, "got '%s', not '%s'", got, want);
}

/* Under systemd with Type=notify: READY=1 once it accepts connections,
 * RELOADING=1 and READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM. */
Test(signals, the_broker_tells_systemd_when_it_is_ready_reloading_and_stopping)
{
    char name[64];
    int fd = notify_socket(name, sizeof name);
    setenv("NOTIFY_SOCKET", name, 1);
    int port;
    h_proc *b = h_broker(&port, NULL);
    unsetenv("NOTIFY_SOCKET");
    char ready[96];
    snprintf(ready, sizeof ready, "READY=1\nSTATUS=listening on 127.0.0.1:%d", port);
    expect_state(fd, ready, b);
    h_assert_serves(port);
    h_signal(b, SIGHUP);
    expect_state(fd, "RELOADING=1\nMONOTONIC_USEC=", b);
    expect_state(fd, "READY=1", b);
    cr_assert(h_wait_err(b, "event=reload_done", WAIT), "%s", h_tail(b->err));
    h_signal(b, SIGTERM);
    expect_state(fd, "STOPPING=1", b);
    cr_assert(h_wait_exit(b, WAIT) && h_exit_code(b) == 0, "%s", h_tail(b->err));
    cr_assert(strstr(b->err, "notify_failed") == NULL, "%s", b->err);
    h_free(b);
    close(fd);
}
