/* Liveness end to end: dead brokers, black-holed connections, stopped
 * processes, and the busy link that must not be mistaken for a dead one.
 *
 * Small keep-alive settings make a silent peer dead after BOUND_MS = time +
 * probes x interval. A detection must be seen within BOUND_MS + SLACK_MS of
 * the fault: the slack covers log polling (50 ms) and scheduling.
 *
 * Sanitizer builds run several times slower, and a TSan process on a busy
 * two-core machine can really be silent for most of a second. CI therefore
 * sets VIGIL_TEST_TIME_SCALE (e.g. 4) for them, and every timing here is
 * multiplied by it, so the tests keep their meaning instead of their numbers. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static double scale(void)
{
    const char *s = getenv("VIGIL_TEST_TIME_SCALE");
    double v = s != NULL ? atof(s) : 1.0;
    return v >= 1.0 ? v : 1.0;
}

/* Decimal seconds, scaled, as a command-line argument. */
static const char *secs(double s)
{
    static char buf[16][16];
    static int i;
    i = (i + 1) % 16;
    snprintf(buf[i], sizeof buf[i], "%.3f", s * scale());
    return buf[i];
}

#define KA "--keepalive-time", secs(0.5), "--keepalive-interval", secs(0.25), "--keepalive-probes", "2"
#define BOUND_MS ((int)(1000 * scale()))
#define SLACK_MS ((int)(1000 * scale()))
#define FAST_RETRY "--backoff-base", "0.05", "--backoff-max", "0.2"
#define WAIT ((int)(10000 * scale()))

/* Publishes one message directly to the broker at port and waits for sub to print it. */
static void expect_delivery(int port, h_proc *sub, const char *topic, const char *msg)
{
    char line[128];
    snprintf(line, sizeof line, "%s MSG_TYPE1 %s\n", topic, msg);
    cr_assert_eq(h_pub(port, topic, msg, NULL), 0);
    cr_assert(h_wait_out(sub, line, WAIT), "subscriber did not get '%s'; its stdout: %s\nits stderr: %s",
              msg, h_tail(sub->out), h_tail(sub->err));
}

/* 1. kill -9: the FIN arrives, so the subscriber notices at once (EOF). */
Test(recovery, broker_killed_subscriber_reconnects_and_resubscribes)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    /* Default heartbeats (dead after 30 s): detection here must come from EOF. */
    h_proc *s = h_sub(port, FAST_RETRY, "news", NULL);
    expect_delivery(port, s, "news", "before");

    h_signal(b, SIGKILL);
    int64_t t0 = h_now_ms();
    cr_assert(h_wait_exit(b, WAIT));
    cr_assert(h_wait_err(s, "event=disconnected reason=eof", 2000), "%s", h_tail(s->err));
    cr_log_info("EOF noticed after %lld ms", (long long)(h_now_ms() - t0));
    h_free(b);

    b = h_broker_at(port, NULL);
    cr_assert(h_wait_err(s, "event=reconnected", WAIT), "%s", h_tail(s->err));
    cr_assert(strstr(s->err, "resubscribed=1") != NULL, "%s", h_tail(s->err));
    expect_delivery(port, s, "news", "after");
    h_free(s), h_free(b);
}

/* 2. The incident: the path goes silent, no FIN, the broker is replaced. */
Test(recovery, blackholed_connection_is_declared_dead_within_the_bound)
{
    int port, pport;
    h_proc *b = h_broker(&port, KA, NULL);
    h_proc *px = h_proxy(port, &pport);
    h_proc *s = h_sub(pport, KA, FAST_RETRY, "news", NULL);
    expect_delivery(port, s, "news", "before");

    h_signal(px, SIGUSR1);
    cr_assert(h_wait_err(px, "event=blackholed connections=1", WAIT));
    int64_t t0 = h_now_ms();
    h_signal(b, SIGKILL);
    h_wait_exit(b, WAIT);
    h_free(b);
    b = h_broker_at(port, KA, NULL);

    cr_assert(h_wait_err(s, "event=disconnected reason=heartbeat", BOUND_MS + SLACK_MS),
              "not declared dead within %d ms + %d ms slack: %s", BOUND_MS, SLACK_MS, h_tail(s->err));
    int64_t detected = h_now_ms() - t0;
    cr_log_info("declared dead %lld ms after the black hole (bound %d ms)", (long long)detected, BOUND_MS);
    cr_assert(h_wait_err(s, "event=reconnected", WAIT), "%s", h_tail(s->err));
    cr_assert(strstr(s->err, "resubscribed=1") != NULL);
    expect_delivery(port, s, "news", "after");
    h_free(s), h_free(px), h_free(b);
}

/* 2b. The same with heartbeats off: the bug, reproduced. */
Test(recovery, without_heartbeats_the_subscriber_stays_stuck)
{
    int port, pport;
    h_proc *b = h_broker(&port, NULL);
    h_proc *px = h_proxy(port, &pport);
    h_proc *s = h_sub(pport, "--keepalive-time", "0", FAST_RETRY, "news", NULL);
    expect_delivery(port, s, "news", "before");

    h_signal(px, SIGUSR1);
    cr_assert(h_wait_err(px, "event=blackholed connections=1", WAIT));
    h_signal(b, SIGKILL);
    h_wait_exit(b, WAIT);
    h_free(b);
    b = h_broker_at(port, NULL);
    cr_assert_eq(h_pub(port, "news", "after", NULL), 0);

    /* Three times the bound the heartbeat would have needed: still nothing. */
    cr_assert(!h_wait_err(s, "event=disconnected", 3 * BOUND_MS),
              "with heartbeats off the subscriber should not notice: %s", h_tail(s->err));
    cr_assert(strstr(s->out, "after") == NULL);
    cr_assert_str_eq(s->out, "news MSG_TYPE1 before\n");
    h_free(s), h_free(px), h_free(b);
}

/* 3. A stopped broker: its kernel still ACKs, so only the heartbeat can tell. */
Test(recovery, stopped_broker_is_detected_by_subscriber_and_publisher)
{
    int port;
    h_proc *b = h_broker(&port, KA, NULL);
    h_proc *s = h_sub(port, KA, FAST_RETRY, "ticks", NULL);
    h_proc *p = h_pub_start(port, KA, FAST_RETRY, "--count", "0", "--interval", "0.05", "ticks", "t-{n}", NULL);
    cr_assert(h_wait_out(s, "ticks MSG_TYPE1 t-3\n", WAIT), "%s", h_tail(s->out));

    h_signal(b, SIGSTOP);
    cr_assert(h_wait_err(s, "event=disconnected reason=heartbeat", BOUND_MS + SLACK_MS),
              "subscriber: %s", h_tail(s->err));
    cr_assert(h_wait_err(p, "event=disconnected reason=heartbeat", BOUND_MS + SLACK_MS),
              "publisher: %s", h_tail(p->err));

    h_signal(b, SIGCONT);
    cr_assert(h_wait_err(s, "event=reconnected", WAIT), "%s", h_tail(s->err));
    cr_assert(h_wait_err(p, "event=reconnected", WAIT), "%s", h_tail(p->err));
    int lines = h_count(s->out, "\n");
    int64_t deadline = h_now_ms() + WAIT;
    h_step("waiting for 5 more lines on sub's stdout, up to %d ms", WAIT);
    while (h_count(s->out, "\n") < lines + 5 && h_now_ms() < deadline)
        h_pump(s, 100);
    h_step(NULL);
    cr_assert(h_count(s->out, "\n") >= lines + 5, "messages did not flow again: %s", h_tail(s->out));
    h_free(p), h_free(s), h_free(b);
}

/* 4. A stopped subscriber is evicted; the others miss nothing meanwhile. */
Test(recovery, stopped_subscriber_is_evicted_and_others_keep_receiving)
{
    int port;
    h_proc *b = h_broker(&port, KA, NULL);
    h_proc *frozen = h_sub(port, KA, "--name", "frozen", "feed", NULL);
    h_proc *healthy = h_sub(port, KA, "--name", "healthy", "feed", NULL);
    h_proc *p = h_pub_start(port, KA, "--count", "0", "--interval", "0.02", "feed", "m-{n}", NULL);
    cr_assert(h_wait_out(healthy, "feed MSG_TYPE1 m-5\n", WAIT));

    unsigned id = h_client_id(b, "frozen");
    cr_assert(id != 0, "%s", h_tail(b->err));
    char evict[64];
    snprintf(evict, sizeof evict, "event=evict reason=heartbeat client=%u ", id);
    h_signal(frozen, SIGSTOP);
    cr_assert(h_wait_err(b, evict, BOUND_MS + SLACK_MS), "not evicted in time: %s", h_tail(b->err));

    h_signal(p, SIGINT); /* stop publishing; pub confirms what it can and reports */
    cr_assert(h_wait_exit(p, WAIT));
    const char *last_line = strstr(p->err, "published=");
    cr_assert(last_line != NULL, "%s", h_tail(p->err));
    int published = 0, confirmed = 0;
    cr_assert_eq(sscanf(last_line, "published=%d confirmed=%d", &published, &confirmed), 2);
    /* Interrupted, its last messages may be left unconfirmed (exit 1, and
     * it says so); every confirmed one must have reached the healthy
     * subscriber, whatever happened to the frozen one. */
    cr_assert_eq(h_exit_code(p), confirmed == published ? 0 : 1, "%s", h_tail(p->err));
    cr_assert_gt(confirmed, 5, "%s", h_tail(p->err));
    char last[64];
    snprintf(last, sizeof last, "feed MSG_TYPE1 m-%d\n", confirmed);
    cr_assert(h_wait_out(healthy, last, WAIT), "healthy subscriber missed the end");
    for (int n = 1; n <= confirmed; n++) {
        char line[64];
        snprintf(line, sizeof line, "feed MSG_TYPE1 m-%d\n", n);
        cr_assert(strstr(healthy->out, line) != NULL, "healthy subscriber missed m-%d", n);
    }
    cr_assert_leq(h_count(healthy->out, "\n"), published, "a message twice, or one never published");

    h_signal(frozen, SIGCONT); /* it finds its connection gone and comes back */
    cr_assert(h_wait_err(frozen, "event=reconnected", WAIT), "%s", h_tail(frozen->err));
    h_free(frozen), h_free(healthy), h_free(b);
}

/* 5. A long-running publisher rides out a broker restart. */
Test(recovery, long_running_publisher_resumes_after_broker_restart)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s = h_sub(port, FAST_RETRY, "stream", NULL);
    h_proc *p = h_pub_start(port, FAST_RETRY, "--count", "0", "--interval", "0.05", "stream", "r-{n}", NULL);
    cr_assert(h_wait_out(s, "stream MSG_TYPE1 r-5\n", WAIT), "%s", h_tail(s->out));

    h_signal(b, SIGKILL);
    h_wait_exit(b, WAIT);
    int before = h_count(s->out, "\n");
    h_free(b);
    b = h_broker_at(port, NULL);
    cr_assert(h_wait_err(p, "event=reconnected", WAIT), "%s", h_tail(p->err));
    cr_assert(h_wait_err(s, "event=reconnected", WAIT), "%s", h_tail(s->err));

    int64_t deadline = h_now_ms() + WAIT;
    h_step("waiting for 10 more lines on sub's stdout, up to %d ms", WAIT);
    while (h_count(s->out, "\n") < before + 10 && h_now_ms() < deadline)
        h_pump(s, 100);
    h_step(NULL);
    cr_assert(h_count(s->out, "\n") >= before + 10, "publishing did not resume: %s", h_tail(s->out));
    cr_assert(p->exited == false, "the publisher gave up: %s", h_tail(p->err));
    h_free(p), h_free(s), h_free(b);
}

/* Reads the throttled s's stdout at ~640 KB/s (32 KiB every 50 ms), keeping
 * every other pipe drained, until end_ms or until wake exits; adds what it
 * read to *got and returns the longest time between two reads, in ms: a
 * test thread starved for the dead bound would make a live reader look stuck. */
static int64_t read_slowly(h_proc *s, h_proc *wake, int64_t end_ms, size_t *got)
{
    int64_t last = h_now_ms(), longest = 0;
    while (h_now_ms() < end_ms && !wake->exited) {
        *got += h_read_some(s, 32768);
        int64_t now = h_now_ms();
        if (now - last > longest)
            longest = now - last;
        last = now;
        while (h_now_ms() < now + 50 && !wake->exited)
            h_pump(wake, (int)(now + 50 - h_now_ms()));
    }
    return longest;
}

/* 6. A busy, slow subscriber with a long queue is alive, and must be seen so. */
Test(recovery, slow_reader_under_a_flood_is_not_declared_dead)
{
    int port;
    /* Dead after 0.5 + 3 x 0.3 = 1.4 s of silence: tiny, yet not so tiny that
     * two busy cores alone can starve a live reader for that long. */
#define TINY "--keepalive-time", secs(0.5), "--keepalive-interval", secs(0.3), "--keepalive-probes", "3"
    const int bound = (int)(1400 * scale());
    /* A small log, so that the flood soon passes the slow reader: it then
     * gets a gap, proof that it was behind (a version-2 subscriber is
     * never dropped for; it falls behind in the log). */
    h_proc *b = h_broker(&port, TINY, "--max-outbox", "1M", "--retention-bytes", "4M", NULL);
    h_proc *s = h_sub(port, TINY, "--name", "slow", "flood", NULL);
    unsigned id = h_client_id(b, "slow");
    cr_assert(id != 0, "%s", h_tail(b->err));
    s->throttled = true; /* its stdout is read slowly: it blocks, so it reads slowly */
    static char msg[1100];
    memset(msg, 'x', 1000);
    strcpy(msg + 1000, "-{n}");
    h_proc *p = h_pub_start(port, TINY, "--count", "0", "flood", msg, NULL);

    /* Over four dead-bounds of flood (6 s), read at ~640 KB/s. */
    size_t got = 0;
    int flood_ms = (int)(6000 * scale());
    h_step("reading the flooded sub slowly for %d ms", flood_ms);
    int64_t pause = read_slowly(s, b, h_now_ms() + flood_ms, &got);
    /* The reading goes on while the publisher stops: a reader that stopped
     * for the dead bound would rightly be evicted. */
    h_signal(p, SIGINT);
    h_step("reading the sub slowly until pub (pid %d) exits", (int)p->pid);
    int64_t pause2 = read_slowly(s, p, h_now_ms() + WAIT, &got);
    h_step(NULL);
    if (pause2 > pause)
        pause = pause2;
    cr_log_info("read %zu bytes; longest pause between reads %lld ms (dead bound %d ms)", got,
                (long long)pause, bound);
    cr_assert(h_wait_exit(p, WAIT), "pub did not stop: %s", h_tail(p->err));
    cr_assert(got > 1000000, "the subscriber hardly read anything (%zu bytes)", got);
    cr_assert(strstr(b->err, "event=evict") == NULL,
              "broker evicted a live client; the test's longest pause between reads was %lld ms"
              " (dead bound %d ms)\nbroker: %s\nsub: %s",
              (long long)pause, bound, h_tail(b->err), h_tail(s->err));
    cr_assert(strstr(s->err, "event=disconnected") == NULL,
              "subscriber disconnected; the test's longest pause between reads was %lld ms"
              " (dead bound %d ms)\nsub: %s\nbroker: %s",
              (long long)pause, bound, h_tail(s->err), h_tail(b->err));
    cr_assert(strstr(p->err, "event=disconnected") == NULL, "publisher: %s", h_tail(p->err));
    cr_assert(strstr(b->err, "event=slow_consumer") == NULL, "%s", h_tail(b->err));

    /* Read at full speed again: the gap comes in order, after what the
     * reader still had buffered; then the same connection still delivers. */
    s->throttled = false;
    cr_assert(h_wait_err(s, "event=gap", WAIT),
              "the subscriber never fell behind the log: the test did not test anything");
    expect_delivery(port, s, "flood", "still-connected");
    cr_assert(strstr(s->err, "event=reconnected") == NULL, "%s", h_tail(s->err));
    h_free(p), h_free(s), h_free(b);
}

/* A listener that completes TCP connects but never speaks: each attempt must
 * count, because the backoff resets only on a completed handshake. */
Test(recovery, a_bare_tcp_connect_does_not_reset_the_backoff)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 16) == 0);
    cr_assert(getsockname(lfd, (struct sockaddr *)&a, &len) == 0);
    int port = ntohs(a.sin_port);

    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    const char *argv[] = {h_bin("sub"), "--server", server, KA, FAST_RETRY, "news", NULL};
    h_proc *s = h_spawn("sub", argv);
    cr_assert(h_wait_err(s, "event=connect_failed reason=timeout server=127.0.0.1", 4 * WAIT), "%s", h_tail(s->err));
    cr_assert(h_wait_err(s, "attempt=3 ", 4 * WAIT), "the attempt count was reset: %s", h_tail(s->err));
    cr_assert(strstr(s->err, "event=connected") == NULL);
    h_free(s);
    close(lfd);
}
