/* Live statistics on $SYS.stats end to end (issue 5): the JSON and its
 * keys, counters that follow what happened, evictions by reason, and the
 * rule that clients may not publish to $SYS topics. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "proto.h"

#define WAIT h_ms(10000)
#define KA "--keepalive-time", h_secs(0.5), "--keepalive-interval", h_secs(0.25), "--keepalive-probes", "2"
#define INTERVAL "--stats-interval", "0.2"
#define PREFIX "$SYS.stats MSG_TYPE1 "

/* ---- reading the stats subscriber's output ---- */

/* Complete lines printed so far: every one is a $SYS.stats message. */
static int stats_n(const h_proc *s) { return h_count(s->out, "\n"); }

/* Copies the JSON of the i-th message (from 0) into buf; asserts the line's shape. */
static void stats_at(const h_proc *s, int i, char *buf, size_t cap)
{
    const char *line = s->out;
    for (int k = 0; k < i; k++) {
        line = strchr(line, '\n');
        cr_assert(line != NULL, "no message %d", i);
        line++;
    }
    const char *end = strchr(line, '\n');
    cr_assert(end != NULL, "message %d is not complete", i);
    cr_assert(strncmp(line, PREFIX, strlen(PREFIX)) == 0, "not a stats line: %.*s",
              (int)(end - line), line);
    line += strlen(PREFIX);
    size_t n = (size_t)(end - line);
    cr_assert(n < cap, "stats message of %zu bytes", n);
    memcpy(buf, line, n);
    buf[n] = '\0';
}

static bool wait_stats_n(h_proc *s, int n, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    while (stats_n(s) < n) {
        if (h_now_ms() >= deadline || s->exited)
            return false;
        h_pump(s, 50);
    }
    return true;
}

/* The number at key in json: "msgs_in" at the top level, or
 * "evictions.heartbeat" inside the evictions object. */
static bool jnum(const char *json, const char *key, double *v)
{
    char want[64];
    const char *dot = strchr(key, '.');
    const char *from = json, *to = json + strlen(json);
    if (dot != NULL) {
        snprintf(want, sizeof want, "\"%.*s\":{", (int)(dot - key), key);
        from = strstr(json, want);
        if (from == NULL)
            return false;
        to = strchr(from, '}');
        key = dot + 1;
    }
    snprintf(want, sizeof want, "\"%s\":", key);
    const char *at = strstr(from, want);
    if (at == NULL || at >= to)
        return false;
    char *end;
    *v = strtod(at + strlen(want), &end);
    return end != at + strlen(want);
}

static unsigned long long ju(const char *json, const char *key)
{
    double v;
    cr_assert(jnum(json, key, &v), "no number \"%s\" in %s", key, json);
    cr_assert(v >= 0, "%s is negative in %s", key, json);
    return (unsigned long long)v;
}

/* Waits for a message, at index from or later, in which every key[i] is at
 * least want[i]; copies its JSON to buf and returns its index (-1 if none
 * came in time). */
static int wait_stats_ge(h_proc *s, int from, const char *const key[], const unsigned long long want[],
                         char *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (int i = from;; i++) {
        if (!wait_stats_n(s, i + 1, (int)(deadline - h_now_ms())))
            return -1;
        stats_at(s, i, buf, cap);
        bool all = true;
        for (int k = 0; key[k] != NULL && all; k++)
            all = ju(buf, key[k]) >= want[k];
        if (all)
            return i;
    }
}

/* One-key form of wait_stats_ge. */
static int wait_stat(h_proc *s, int from, const char *key, unsigned long long want, char *buf,
                     size_t cap)
{
    return wait_stats_ge(s, from, (const char *const[]){key, NULL}, (unsigned long long[]){want}, buf,
                         cap, WAIT);
}

/* Waits until a message says exactly n connections are served: the
 * broker's own count, so a connection just closed has left its registry. */
static void wait_connections(h_proc *s, unsigned long long n)
{
    char json[2048];
    int64_t deadline = h_now_ms() + WAIT;
    for (int i = stats_n(s);; i++) {
        cr_assert(wait_stats_n(s, i + 1, (int)(deadline - h_now_ms())), "connections never %llu: %s", n,
                  s->out);
        stats_at(s, i, json, sizeof json);
        if (ju(json, "connections") == n)
            return;
    }
}

/* ---- tests ---- */

Test(stats, published_as_json_with_the_documented_keys)
{
    static const char *const keys[] = {
        "uptime_s", "connections", "connections_total", "subscriptions", "msgs_in", "bytes_in",
        "msgs_out", "bytes_out", "dropped", "evictions.heartbeat", "evictions.slow_consumer",
        "evictions.limit", "evictions.protocol", "evictions.auth", "evictions.timeout",
        "pings_sent", "pongs_received", "threads", "rss_bytes", "heap_bytes", NULL};
    int port;
    h_proc *b = h_broker(&port, INTERVAL, NULL);
    h_proc *st = h_sub(port, "$SYS.stats", NULL);
    cr_assert(wait_stats_n(st, 3, WAIT), "fewer than 3 stats messages: %s", st->err);
    char json[2048];
    double prev_uptime = -1;
    for (int i = 0; i < 3; i++) {
        stats_at(st, i, json, sizeof json);
        size_t n = strlen(json);
        cr_assert(json[0] == '{' && json[n - 1] == '}', "not one JSON object: %s", json);
        cr_assert_eq(h_count(json, "{"), h_count(json, "}"), "%s", json);
        cr_assert(strncmp(json, "{\"server\":\"vigil ", 17) == 0, "%s", json);
        for (const char *const *k = keys; *k != NULL; k++)
            ju(json, *k);
        double up;
        jnum(json, "uptime_s", &up);
        cr_assert(up > prev_uptime, "uptime did not grow: %s", json);
        prev_uptime = up;
    }
    /* The interval is 0.2 s, not the default 5 s. */
    int n0 = stats_n(st);
    int64_t t0 = h_now_ms();
    cr_assert(wait_stats_n(st, n0 + 5, h_ms(3000)), "5 messages at 0.2 s took over 3 s");
    cr_log_info("5 messages in %lld ms", (long long)(h_now_ms() - t0));
    double up0, up1;
    stats_at(st, n0 - 1, json, sizeof json);
    jnum(json, "uptime_s", &up0);
    stats_at(st, n0 + 4, json, sizeof json);
    jnum(json, "uptime_s", &up1);
    cr_assert(up1 - up0 > 0.75 && up1 - up0 < 2.0 * h_time_scale(), "5 intervals span %.1f s",
              up1 - up0);

    /* Only the stats subscriber is connected: its numbers, and the
     * broker's own threads and memory as /proc shows them. */
    cr_assert_eq(ju(json, "connections"), 1, "%s", json);
    cr_assert_eq(ju(json, "connections_total"), 1, "%s", json);
    cr_assert_eq(ju(json, "subscriptions"), 1, "%s", json);
    cr_assert_eq(ju(json, "msgs_in"), 0, "%s", json);
    cr_assert_eq(ju(json, "dropped"), 0, "%s", json);
    h_usage u = h_usage_of(b);
    cr_assert_eq((long)ju(json, "threads"), u.threads, "/proc says %ld threads: %s", u.threads, json);
    unsigned long long rss_kb = ju(json, "rss_bytes") / 1024;
    cr_assert(rss_kb > (unsigned long long)u.rss_kb / 2 && rss_kb < (unsigned long long)u.rss_kb * 2,
              "/proc says %ld kB: %s", u.rss_kb, json);
    /* malloc's bytes in use: some, and of the order of what is resident (a
     * sanitizer's allocator is not malloc's: it has none). */
    unsigned long long heap_kb = ju(json, "heap_bytes") / 1024;
    if (!h_sanitized(b))
        cr_assert(heap_kb > 0 && heap_kb < (unsigned long long)u.rss_kb * 2, "/proc says %ld kB: %s",
                  u.rss_kb, json);

    /* Three more connections, then none. */
    h_raw r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = h_raw_connect(port);
        h_raw_handshake(&r[i]);
    }
    int at = wait_stat(st, stats_n(st), "connections", 4, json, sizeof json);
    cr_assert(at >= 0, "connections never reached 4: %s", st->out);
    cr_assert_eq(ju(json, "connections"), 4, "%s", json);
    cr_assert_eq(ju(json, "connections_total"), 4, "%s", json);
    for (int i = 0; i < 3; i++)
        h_raw_close(&r[i]);
    int64_t deadline = h_now_ms() + WAIT;
    do {
        cr_assert(wait_stats_n(st, at + 2, WAIT));
        stats_at(st, ++at, json, sizeof json);
    } while (ju(json, "connections") != 1 && h_now_ms() < deadline);
    cr_assert_eq(ju(json, "connections"), 1, "%s", json);
    cr_assert_eq(ju(json, "connections_total"), 4, "%s", json);
    h_assert_serves(port);
    h_free(st), h_free(b);
}

Test(stats, message_counters_follow_what_was_published)
{
    enum { N = 25 };
    int port;
    h_proc *b = h_broker(&port, INTERVAL, NULL);
    h_proc *st = h_sub(port, "$SYS.stats", NULL);
    h_proc *s1 = h_sub(port, "--count", "25", "counted", NULL);
    h_proc *s2 = h_sub(port, "--count", "25", "counted", NULL);
    char json[2048];
    int a = wait_stat(st, 0, "subscriptions", 3, json, sizeof json);
    cr_assert(a >= 0, "the subscriptions never showed: %s", st->out);
    unsigned long long in0 = ju(json, "msgs_in"), bin0 = ju(json, "bytes_in");
    unsigned long long out0 = ju(json, "msgs_out"), bout0 = ju(json, "bytes_out");

    cr_assert_eq(h_pub(port, "--count", "25", "counted", "m-{n}", NULL), 0);
    size_t payload = 0; /* "m-1" .. "m-25" */
    for (int i = 1; i <= N; i++)
        payload += (size_t)snprintf(NULL, 0, "m-%d", i);
    cr_assert(h_wait_exit(s1, WAIT) && h_wait_exit(s2, WAIT));
    cr_assert_eq(h_exit_code(s1), 0);
    cr_assert_eq(h_exit_code(s2), 0);

    /* pub exited 0: every message was routed. A snapshot taken two
     * intervals after that has all of them. */
    int c = stats_n(st) + 2;
    cr_assert(wait_stats_n(st, c + 1, WAIT));
    stats_at(st, c, json, sizeof json);
    cr_log_info("before: in %llu/%llu B, out %llu/%llu B; after: %s", in0, bin0, out0, bout0, json);
    cr_assert_eq(ju(json, "msgs_in") - in0, N, "%s", json);
    /* cr_expect: a wrong byte count should not hide the checks below. */
    cr_expect_eq(ju(json, "bytes_in") - bin0, payload, "bytes_in grew by %llu, not by the %zu payload bytes: %s",
                 ju(json, "bytes_in") - bin0, payload, json);
    cr_assert_eq(ju(json, "dropped"), 0, "%s", json);

    /* Out: N to each of two subscribers, and perhaps also the stats
     * messages a..c-1 themselves (one subscriber each). */
    size_t k = (size_t)(c - a), stats_bytes = 0;
    char other[2048];
    for (int i = a; i < c; i++) {
        stats_at(st, i, other, sizeof other);
        stats_bytes += strlen(other);
    }
    unsigned long long dout = ju(json, "msgs_out") - out0, dbout = ju(json, "bytes_out") - bout0;
    cr_assert(dout == 2 * N || dout == 2 * N + k, "msgs_out grew by %llu, expected %d (or %zu): %s",
              dout, 2 * N, 2 * N + k, json);
    cr_expect(dbout == 2 * payload || dbout == 2 * payload + stats_bytes,
              "bytes_out grew by %llu, expected %zu payload bytes (or %zu with the stats): %s", dbout,
              2 * payload, 2 * payload + stats_bytes, json);
    h_free(s1), h_free(s2);
    h_assert_serves(port);
    h_free(st), h_free(b);
}

Test(stats, evictions_are_counted_by_reason)
{
    int port;
    h_proc *b = h_broker(&port, INTERVAL, KA, "--handshake-timeout", h_secs(0.5), "--max-connections",
                         "3", NULL);
    h_proc *st = h_sub(port, "$SYS.stats", NULL);
    h_usage base = h_usage_of(b);

    /* protocol: a bad frame. */
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r);
    h_raw_send(&r, "\x00\x00\x00\x01\xc1", 5);
    h_raw_expect_fatal(&r, VG_E_BAD_FRAME, WAIT);
    h_raw_close(&r);
    wait_connections(st, 1); /* its slot is free again */
    /* timeout: no CONNECT. */
    r = h_raw_connect(port);
    h_raw_expect_fatal(&r, VG_E_TIMEOUT, WAIT);
    h_raw_close(&r);
    wait_connections(st, 1);
    /* heartbeat: connected, then silent. */
    r = h_raw_connect(port);
    h_raw_handshake(&r);
    cr_assert(h_raw_wait_eof(&r, WAIT), "a silent client was not evicted");
    h_raw_close(&r);
    cr_assert(h_wait_err(b, "event=evict reason=heartbeat", WAIT), "%s", b->err);
    wait_connections(st, 1);
    /* limit: with the stats subscriber and two more, the fourth is refused. */
    h_raw held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = h_raw_connect(port);
        h_raw_handshake(&held[i]);
    }
    r = h_raw_connect(port);
    h_raw_expect_fatal(&r, VG_E_LIMIT, WAIT);
    h_raw_close(&r);
    for (int i = 0; i < 2; i++)
        h_raw_close(&held[i]);

    char json[2048];
    static const char *const keys[] = {"evictions.protocol", "evictions.timeout", "evictions.heartbeat",
                                       "evictions.limit", "pings_sent", "pongs_received", NULL};
    int at = wait_stats_ge(st, 0, keys, (unsigned long long[]){1, 1, 1, 1, 1, 1}, json, sizeof json, WAIT);
    cr_assert(at >= 0, "the evictions never all showed: %s", st->out);
    cr_log_info("%s", json);
    /* Exactly one of each happened; nothing else. */
    cr_assert_eq(ju(json, "evictions.protocol"), 1, "%s", json);
    cr_assert_eq(ju(json, "evictions.timeout"), 1, "%s", json);
    cr_assert_eq(ju(json, "evictions.heartbeat"), 1, "%s", json);
    cr_assert_eq(ju(json, "evictions.limit"), 1, "%s", json);
    cr_assert_eq(ju(json, "evictions.auth"), 0, "%s", json);
    cr_assert_eq(ju(json, "evictions.slow_consumer"), 0, "%s", json);
    /* The broker PINGed the quiet stats subscriber, which answered. */
    cr_assert(ju(json, "pings_sent") >= ju(json, "pongs_received"), "%s", json);
    h_assert_usage_back(b, base, 0, 8 * 1024, WAIT);
    h_assert_serves(port);
    h_free(st), h_free(b);
}

Test(stats, auth_and_slow_consumer_evictions_are_counted)
{
    enum { N = 150 };
    setenv("VIGIL_AUTH_TOKEN", "stats-test-token", 1);
    int port;
    h_proc *b = h_broker(&port, INTERVAL, KA, "--max-outbox", "1M", NULL);
    unsetenv("VIGIL_AUTH_TOKEN");
    setenv("VIGIL_TOKEN", "stats-test-token", 1); /* for every pub and sub below */
    h_proc *st = h_sub(port, "$SYS.stats", NULL);

    /* auth: a CONNECT without the token. */
    h_raw r = h_raw_connect(port);
    vg_buf b0 = {0};
    vg_frame_put_connect(&b0, VG_PROTO_V1, "no-token", NULL);
    h_raw_send_buf(&r, &b0);
    h_raw_expect_fatal(&r, VG_E_AUTH, WAIT);
    h_raw_close(&r);
    char json[2048];
    cr_assert(wait_stat(st, 0, "evictions.auth", 1, json, sizeof json) >= 0, "%s", st->out);
    cr_assert_eq(ju(json, "evictions.auth"), 1, "%s", json);
    cr_assert(strstr(st->out, "stats-test-token") == NULL);

    /* slow_consumer: subscribes, never reads, keeps PINGing (so the
     * heartbeat sees it alive) while a publisher floods its topic. */
    h_raw stuck = h_raw_connect_small(port, 4096);
    vg_frame_put_connect(&b0, VG_PROTO_V1, "stuck", "stats-test-token");
    vg_frame_put_sub(&b0, 1, "flood", 5);
    h_raw_send_buf(&stuck, &b0);
    vg_frame f;
    cr_assert(h_raw_read(&stuck, &f, WAIT) && f.type == VG_FRAME_INFO);
    cr_assert(h_raw_read(&stuck, &f, WAIT) && f.type == VG_FRAME_OK);
    static char msg[60010];
    memset(msg, 'x', 60000);
    strcpy(msg + 60000, "-{n}");
    h_proc *p = h_pub_start(port, "--count", "150", "--interval", "0.005", "flood", msg, NULL);
    int64_t deadline = h_now_ms() + h_ms(30000);
    while (strstr(b->err, "event=evict reason=slow_consumer") == NULL && h_now_ms() < deadline) {
        vg_frame_put_ping(&b0);
        h_raw_send_buf(&stuck, &b0);
        h_pump(p, 100);
    }
    vg_buf_free(&b0);
    cr_assert(strstr(b->err, "event=evict reason=slow_consumer") != NULL, "%s", b->err);
    cr_assert(h_wait_exit(p, WAIT) && h_exit_code(p) == 0, "%s", p->err);
    h_free(p);
    h_raw_close(&stuck);
    int at = wait_stat(st, 0, "evictions.slow_consumer", 1, json, sizeof json);
    cr_assert(at >= 0, "%s", st->out);
    cr_assert_eq(ju(json, "evictions.slow_consumer"), 1, "%s", json);
    cr_assert(ju(json, "dropped") > 0, "messages were dropped for the stuck client: %s", json);
    h_assert_serves(port);
    unsetenv("VIGIL_TOKEN");
    h_free(st), h_free(b);
}

Test(stats, clients_may_not_publish_to_sys_topics)
{
    int port;
    h_proc *b = h_broker(&port, INTERVAL, NULL);
    h_proc *st = h_sub(port, "$SYS.stats", NULL);
    cr_assert(wait_stats_n(st, 1, WAIT));

    /* A raw client may subscribe to $SYS.stats, but not publish there. */
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r);
    vg_buf buf = {0};
    vg_frame_put_sub(&buf, 1, "$SYS.stats", 10);
    h_raw_send_buf(&r, &buf);
    vg_frame f;
    cr_assert(h_raw_read(&r, &f, WAIT));
    cr_assert_eq(f.type, VG_FRAME_OK, "SUB to $SYS.stats refused: %s", vg_errcode_name(f.code));
    vg_frame_put_msg(&buf, VG_FRAME_MSG_TYPE1, "$SYS.stats", 10, "forged-1", 8);
    h_raw_send_buf(&r, &buf);
    h_raw_expect_fatal(&r, VG_E_PERMISSION, WAIT);
    h_raw_close(&r);

    /* Any topic whose first token is $SYS, either type. */
    const char *topics[] = {"$SYS.other", "$SYS"};
    for (int i = 0; i < 2; i++) {
        r = h_raw_connect(port);
        h_raw_handshake(&r);
        vg_frame_put_msg(&buf, i ? VG_FRAME_MSG_TYPE2 : VG_FRAME_MSG_TYPE1, topics[i],
                         strlen(topics[i]), "forged-2", 8);
        h_raw_send_buf(&r, &buf);
        h_raw_expect_fatal(&r, VG_E_PERMISSION, WAIT);
        h_raw_close(&r);
    }
    vg_buf_free(&buf);
    cr_assert(h_wait_err_count(b, "event=evict reason=permission", 3, WAIT), "%s", b->err);

    /* pub is told, and does not claim success. */
    h_proc *p = h_pub_start(port, "$SYS.stats", "forged-3", NULL);
    cr_assert(h_wait_exit(p, WAIT), "%s", p->err);
    cr_assert_neq(h_exit_code(p), 0, "%s", p->err);
    cr_assert(strstr(p->err, "code=permission") != NULL, "%s", p->err);
    h_free(p);

    /* A first token that only starts with $SYS is an ordinary topic. */
    h_proc *s = h_sub(port, "--count", "1", "$SYSTEM.x", NULL);
    cr_assert_eq(h_pub(port, "$SYSTEM.x", "ordinary", NULL), 0);
    cr_assert(h_wait_exit(s, WAIT) && h_exit_code(s) == 0, "%s", s->err);
    h_free(s);

    /* The stats subscriber keeps getting the broker's messages, never the forged ones. */
    int n = stats_n(st);
    cr_assert(wait_stats_n(st, n + 3, WAIT));
    cr_assert(strstr(st->out, "forged") == NULL, "%s", st->out);
    char json[2048];
    for (int i = 0; i < stats_n(st); i++)
        stats_at(st, i, json, sizeof json); /* every line is a stats message */
    h_assert_serves(port);
    h_free(st), h_free(b);
}
