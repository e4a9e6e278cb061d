/* Nothing lost (issue 10), with the real programs: a publisher at about
 * 1,000 numbered messages a second, a subscriber, and a fault in the
 * middle: the subscriber's path black-holed (broker alive), the
 * publisher's, both, or the subscriber stopped for 10 s. After recovery
 * the subscriber must have printed every number exactly once, in order.
 *
 * Timings are multiplied by VIGIL_TEST_TIME_SCALE (sanitizer builds), as in
 * test_recovery.c. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define KA "--keepalive-time", h_secs(0.5), "--keepalive-interval", h_secs(0.25), \
           "--keepalive-probes", "2"
#define FAST_RETRY "--backoff-base", "0.05", "--backoff-max", "0.2"
#define WAIT h_ms(15000)

/* Waits until sub has printed "orders MSG_TYPE1 order-N". */
static void wait_for(h_proc *sub, int n, const char *why)
{
    char line[64];
    snprintf(line, sizeof line, "orders MSG_TYPE1 order-%d\n", n);
    cr_assert(h_wait_out(sub, line, WAIT), "waiting for order-%d (%s); sub printed: %s\nits log: %s",
              n, why, h_tail(sub->out), h_tail(sub->err));
}

/* The highest n printed so far (0: none). */
static int highest(const h_proc *sub)
{
    const char *last = NULL, *p = sub->out;
    while ((p = strstr(p, "order-")) != NULL)
        last = p++;
    return last != NULL ? atoi(last + strlen("order-")) : 0;
}

/* Every complete line of sub's output is "orders MSG_TYPE1 order-i" with
 * i = 1, 2, 3... in turn: nothing lost, nothing twice, in order. Returns the
 * count. (sub may still be printing: a last, partial line is not judged.) */
static int assert_exactly_once_in_order(const h_proc *sub)
{
    int want = 1;
    const char *p = sub->out;
    while (strchr(p, '\n') != NULL) {
        char line[64];
        int len = snprintf(line, sizeof line, "orders MSG_TYPE1 order-%d\n", want);
        cr_assert(strncmp(p, line, (size_t)len) == 0,
                  "line %d is not order-%d: \"%.40s\" (a message lost, repeated or out of order)",
                  want, want, p);
        p += len;
        want++;
    }
    return want - 1;
}

typedef enum { FREEZE_SUB = 1, FREEZE_PUB = 2 } freeze;

static void black_hole_run(freeze which)
{
    int port, sport = 0, pport = 0;
    h_proc *b = h_broker(&port, KA, NULL);
    h_proc *spx = (which & FREEZE_SUB) ? h_proxy(port, &sport) : NULL;
    h_proc *ppx = (which & FREEZE_PUB) ? h_proxy(port, &pport) : NULL;
    h_proc *s = h_sub(spx ? sport : port, KA, FAST_RETRY, "orders", NULL);
    cr_assert(h_wait_err(s, "event=subscribed", WAIT), "%s", h_tail(s->err));
    h_proc *p = h_pub_start(ppx ? pport : port, KA, FAST_RETRY, "--count", "0", "--interval",
                            "0.001", "orders", "order-{n}", NULL);
    wait_for(s, 200, "before the fault");

    if (spx != NULL)
        h_signal(spx, SIGUSR1);
    if (ppx != NULL)
        h_signal(ppx, SIGUSR1);
    if (spx != NULL) {
        cr_assert(h_wait_err(spx, "event=blackholed", WAIT));
        cr_assert(h_wait_err(s, "event=reconnected", WAIT), "%s", h_tail(s->err));
    }
    if (ppx != NULL) {
        cr_assert(h_wait_err(ppx, "event=blackholed", WAIT));
        cr_assert(h_wait_err(p, "event=reconnected", WAIT), "%s", h_tail(p->err));
    }
    /* Well after recovery: everything in between must have come too. */
    int after = highest(s) + 500;
    wait_for(s, after, "after recovery");
    h_signal(p, SIGINT);
    cr_assert(h_wait_exit(p, WAIT));
    int n = assert_exactly_once_in_order(s);
    cr_log_info("%d messages, each once, in order", n);
    cr_assert_geq(n, after);
    cr_assert(strstr(s->err, "event=gap") == NULL, "a gap with the broker alive: %s", s->err);
    h_free(p), h_free(s);
    if (spx != NULL)
        h_free(spx);
    if (ppx != NULL)
        h_free(ppx);
    h_free(b);
}

Test(nothing_lost, the_subscribers_path_goes_silent)
{
    black_hole_run(FREEZE_SUB);
}

Test(nothing_lost, the_publishers_path_goes_silent)
{
    black_hole_run(FREEZE_PUB);
}

Test(nothing_lost, both_paths_go_silent)
{
    black_hole_run(FREEZE_SUB | FREEZE_PUB);
}

/* A subscriber stopped for 10 s under load catches up with nothing lost,
 * and the publisher was not held back meanwhile: it kept publishing at
 * its own pace (at least a quarter of its nominal 1,000 a second). */
Test(nothing_lost, a_subscriber_stopped_for_ten_seconds_catches_up)
{
    int port;
    h_proc *b = h_broker(&port, NULL); /* default heartbeats: 30 s, the stop is shorter */
    h_proc *s = h_sub(port, "orders", NULL);
    cr_assert(h_wait_err(s, "event=subscribed", WAIT), "%s", h_tail(s->err));
    int64_t pub_t0 = h_now_ms();
    h_proc *p = h_pub_start(port, "--count", "0", "--interval", "0.001", "orders", "order-{n}",
                            NULL);
    wait_for(s, 100, "before the stop");
    h_signal(s, SIGSTOP);
    int64_t t0 = h_now_ms();
    int before = highest(s);
    while (h_now_ms() < t0 + 10000)
        h_pump(p, 100);
    h_signal(s, SIGCONT);
    /* pub's own count at the resume is unknown; what the stopped subscriber
     * receives afterwards tells: messages published during the stop. */
    int target = before + 2500;
    wait_for(s, target, "catching up after SIGCONT");
    h_signal(p, SIGINT);
    int64_t pub_ms = h_now_ms() - pub_t0;
    cr_assert(h_wait_exit(p, WAIT));
    int n = assert_exactly_once_in_order(s);
    cr_log_info("%d messages after a 10 s stop, each once, in order", n);
    cr_assert_geq(n, target);
    /* Its own count: a publisher held up by the stopped subscriber would
     * have published far fewer than one a millisecond over its run. */
    const char *pubd = strstr(p->err, "published=");
    cr_assert(pubd != NULL, "%s", h_tail(p->err));
    long published = atol(pubd + strlen("published="));
    double rate = published * 1000.0 / (double)pub_ms;
    cr_log_info("pub: %ld messages in %lld ms: %.0f/s (nominal 1000/s)", published,
                (long long)pub_ms, rate);
    cr_assert_geq(rate * h_time_scale(), 250.0, "the publisher was slowed to %.0f msgs/s", rate);
    h_free(p), h_free(s), h_free(b);
}

/* Retention exceeded while a subscriber is away: sub reports the exact
 * range it will never get, then goes on. */
Test(nothing_lost, a_gap_is_reported_with_its_exact_range)
{
    int port;
    h_proc *b = h_broker(&port, "--retention-bytes", "1M", NULL);
    h_proc *s = h_sub(port, "big", NULL);
    cr_assert(h_wait_err(s, "event=subscribed", WAIT), "%s", h_tail(s->err));
    h_signal(s, SIGSTOP);
    /* 10,000 messages of 2 KB: 20 MB into a 1 MiB log, with the subscriber
     * stopped (the sockets' buffers take a few MB of it). */
    static char payload[2048];
    memset(payload, 'x', sizeof payload - 16);
    strcpy(payload + sizeof payload - 16, "-{n}");
    cr_assert_eq(h_pub(port, "--count", "10000", "big", payload, NULL), 0);
    h_signal(s, SIGCONT);
    cr_assert(h_wait_err(s, "event=gap", WAIT), "no gap reported: %s", h_tail(s->err));
    cr_assert(h_wait_out(s, "-10000\n", WAIT), "the last message did not arrive: %s",
              h_tail(s->err));
    /* Every number 1..10000 is either printed or inside a reported range. */
    long missed_total = 0;
    for (const char *g = strstr(s->err, "event=gap"); g != NULL; g = strstr(g + 1, "event=gap")) {
        const char *from = strstr(g, "from="), *to = strstr(g, " to="), *missed = strstr(g, "missed=");
        cr_assert(from && to && missed, "%s", g);
        long f = atol(from + 5), t = atol(to + 4), m = atol(missed + 7);
        cr_assert_eq(m, t - f + 1, "%.120s", g);
        missed_total += m;
    }
    int printed = h_count(s->out, "\n");
    cr_assert_eq(printed + missed_total, 10000, "printed %d + missed %ld != 10000", printed,
                 missed_total);
    h_free(s), h_free(b);
}

/* kill -9 of a memory-only broker loses its log: the subscriber says so
 * (an epoch change), never silence. */
Test(nothing_lost, a_broker_restart_is_reported_as_unknown_loss)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s = h_sub(port, FAST_RETRY, "orders", NULL);
    cr_assert(h_wait_err(s, "event=subscribed", WAIT), "%s", h_tail(s->err));
    cr_assert_eq(h_pub(port, "orders", "order-1", NULL), 0);
    wait_for(s, 1, "before the kill");
    h_signal(b, SIGKILL);
    cr_assert(h_wait_exit(b, WAIT));
    h_free(b);
    b = h_broker_at(port, NULL);
    cr_assert(h_wait_err(s, "reason=broker_restarted", WAIT), "no epoch change reported: %s",
              h_tail(s->err));
    cr_assert_eq(h_pub(port, "orders", "order-2", NULL), 0);
    wait_for(s, 2, "after the restart");
    h_free(s), h_free(b);
}
