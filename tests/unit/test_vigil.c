/* The public client API (vigil/vigil.h), linked from libvigil.so as an
 * application links it, against the scripted fake broker: connection
 * events with their reasons, the log handler (and silence without one),
 * messages and gaps through the accessors, and the option and name checks. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_broker.h"
#include "vigil/vigil.h"

TestSuite(vigil, .init = fb_log_start, .fini = fb_log_stop, .timeout = 60);

/* What the handlers saw; they run on the client's I/O thread. */
#define EVENTS 16
static struct {
    pthread_mutex_t mu;
    vigil_conn_event ev[EVENTS];
    char reason[EVENTS][32];
    int nev;
    int log_lines, connected_lines;
    char topic[32], payload[32];
    uint64_t seq, epoch, sid;
    int msgs, gaps;
    unsigned type;
    uint64_t gap_from, gap_to, gap_sid;
    vigil_gap_reason gap_reason;
} rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_connection(void *ud, vigil_conn_event ev, const char *server, const char *reason)
{
    (void)ud;
    pthread_mutex_lock(&rec.mu);
    if (rec.nev < EVENTS && server != NULL) {
        rec.ev[rec.nev] = ev;
        snprintf(rec.reason[rec.nev], sizeof rec.reason[0], "%s", reason ? reason : "-");
        rec.nev++;
    }
    pthread_mutex_unlock(&rec.mu);
}

static void on_log(void *ud, vigil_log_level level, const char *line)
{
    (void)ud, (void)level;
    pthread_mutex_lock(&rec.mu);
    rec.log_lines++;
    rec.connected_lines += strstr(line, "event=connected") != NULL && strchr(line, '\n') == NULL;
    pthread_mutex_unlock(&rec.mu);
}

static void on_msg(void *ud, const vigil_msg *m)
{
    (void)ud;
    size_t tl, pl;
    const char *t = vigil_msg_topic(m, &tl);
    const char *p = vigil_msg_payload(m, &pl);
    pthread_mutex_lock(&rec.mu);
    snprintf(rec.topic, sizeof rec.topic, "%.*s", (int)tl, t);
    snprintf(rec.payload, sizeof rec.payload, "%.*s", (int)pl, p);
    rec.seq = vigil_msg_seq(m);
    rec.epoch = vigil_msg_epoch(m);
    rec.sid = vigil_msg_sid(m);
    rec.type = vigil_msg_type(m);
    rec.msgs++;
    pthread_mutex_unlock(&rec.mu);
}

static void on_gap(void *ud, const vigil_gap *g)
{
    (void)ud;
    pthread_mutex_lock(&rec.mu);
    rec.gap_from = vigil_gap_from(g);
    rec.gap_to = vigil_gap_to(g);
    rec.gap_sid = vigil_gap_sid(g);
    rec.gap_reason = vigil_gap_reason_of(g);
    rec.gaps++;
    pthread_mutex_unlock(&rec.mu);
}

/* Waits up to ms for *counter (written under rec.mu) to reach n. */
static bool wait_count(const int *counter, int n, int ms)
{
    int64_t deadline = fb_now() + ms;
    for (;;) {
        pthread_mutex_lock(&rec.mu);
        bool ok = *counter >= n;
        pthread_mutex_unlock(&rec.mu);
        if (ok)
            return true;
        if (fb_now() >= deadline)
            return false;
        fb_sleep(2);
    }
}

static vigil_client *start(int port, bool log)
{
    vigil_options *o = vigil_options_create();
    cr_assert_not_null(o);
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%d", port);
    cr_assert_eq(vigil_options_set_servers(o, servers), VIGIL_OK);
    cr_assert_eq(vigil_options_set_backoff(o, 20, 50), VIGIL_OK);
    cr_assert_eq(vigil_options_set_heartbeat(o, fb_ms(300), fb_ms(100), 2), VIGIL_OK);
    vigil_options_on_connection(o, on_connection);
    vigil_options_on_msg(o, on_msg);
    vigil_options_on_gap(o, on_gap);
    if (log)
        vigil_options_on_log(o, on_log, VIGIL_LOG_INFO);
    vigil_client *c;
    const char *why = NULL;
    cr_assert_eq(vigil_client_create(&c, o, &why), VIGIL_OK, "%s", why ? why : "");
    vigil_options_destroy(o); /* the client keeps its own copy */
    return c;
}

/* A client started on l and its connection accepted and handshaken as a. */
static vigil_client *connected(fb_listener *l, fb_conn *a, bool log, const char *what)
{
    vigil_client *c = start(l->port, log);
    fb_accept(l, a, fb_ms(5000), what);
    fb_handshake(a, 1 << 20);
    return c;
}

static void expect_event(int i, vigil_conn_event ev, const char *reason, const char *what)
{
    cr_assert(wait_count(&rec.nev, i + 1, fb_ms(5000)), "waited 5 s for the %s event", what);
    pthread_mutex_lock(&rec.mu);
    vigil_conn_event got = rec.ev[i];
    char r[32];
    snprintf(r, sizeof r, "%s", rec.reason[i]);
    pthread_mutex_unlock(&rec.mu);
    cr_assert_eq(got, ev, "event %d is %d, not the %s event (%d)", i, (int)got, what, (int)ev);
    cr_assert_str_eq(r, reason, "the %s event's reason", what);
}

Test(vigil, connection_events_say_connected_disconnected_with_the_reason_and_reconnected)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn a;
    vigil_client *c = connected(&l, &a, false, "the first connection");
    expect_event(0, VIGIL_CONNECTED, "-", "connected");
    cr_assert_eq(vigil_wait_connected(c, fb_ms(1000)), VIGIL_OK);
    fb_close(&a);
    expect_event(1, VIGIL_DISCONNECTED, "eof", "disconnected (the broker closed)");
    fb_conn b;
    fb_accept(&l, &b, fb_ms(5000), "the reconnection");
    fb_handshake(&b, 1 << 20);
    expect_event(2, VIGIL_RECONNECTED, "-", "reconnected");
    b.pings = FB_PING_SKIP; /* a broker that has gone silent */
    int64_t t0 = fb_now();
    while (fb_now() - t0 < fb_ms(3000) && !wait_count(&rec.nev, 4, 0)) {
        vg_frame f;
        if (fb_read(&b, &f, 20) == FB_EOF)
            break;
    }
    expect_event(3, VIGIL_DISCONNECTED, "heartbeat", "disconnected (heartbeat)");
    vigil_client_destroy(c);
    fb_close(&b);
    fb_unlisten(&l);
}

Test(vigil, the_log_handler_gets_the_lines_and_nothing_goes_to_stderr)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn a;
    vigil_client *with_log = connected(&l, &a, true, "the logging client");
    cr_assert(wait_count(&rec.connected_lines, 1, fb_ms(5000)),
              "waited 5 s for an event=connected line (no newline) at the log handler");
    fb_conn b;
    vigil_client *silent = connected(&l, &b, false, "the silent client");
    cr_assert_eq(vigil_wait_connected(silent, fb_ms(5000)), VIGIL_OK);
    vigil_client_destroy(silent);
    vigil_client_destroy(with_log);
    char *err = fb_log_text();
    cr_assert(strstr(err, "event=") == NULL, "the library wrote to stderr: %s", err);
    free(err);
    fb_close(&a);
    fb_close(&b);
    fb_unlisten(&l);
}

Test(vigil, messages_and_gaps_reach_the_handlers_through_the_accessors)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn a;
    vigil_client *c = connected(&l, &a, false, "the client");
    uint64_t sid;
    cr_assert_eq(vigil_subscribe(c, "news", &sid), VIGIL_OK);
    vg_frame f;
    fb_expect(&a, VG_FRAME_SUB, &f, fb_ms(5000), "the SUB");
    cr_assert_eq(f.sid, sid);
    fb_send_ok(&a, sid);
    cr_assert_eq(vigil_wait_subscribed(c, sid, fb_ms(5000)), VIGIL_OK);
    fb_send_msg_bytes(&a, VG_FRAME_MSG_TYPE2, "news", 4, "hello", 5);
    cr_assert(wait_count(&rec.msgs, 1, fb_ms(5000)), "waited 5 s for the message");
    pthread_mutex_lock(&rec.mu);
    cr_assert_str_eq(rec.topic, "news");
    cr_assert_str_eq(rec.payload, "hello");
    cr_assert_eq(rec.seq, 1);
    cr_assert_eq(rec.epoch, FB_EPOCH);
    cr_assert_eq(rec.sid, sid);
    cr_assert_eq(rec.type, 2);
    pthread_mutex_unlock(&rec.mu);
    fb_send_gap(&a, sid, "news", 2, 9, VG_GAP_RETENTION);
    cr_assert(wait_count(&rec.gaps, 1, fb_ms(5000)), "waited 5 s for the gap");
    pthread_mutex_lock(&rec.mu);
    cr_assert_eq(rec.gap_from, 2);
    cr_assert_eq(rec.gap_to, 9);
    cr_assert_eq(rec.gap_sid, sid);
    cr_assert_eq(rec.gap_reason, VIGIL_GAP_RETENTION);
    pthread_mutex_unlock(&rec.mu);
    uint64_t s[VIGIL_STAT_COUNT + 4];
    cr_assert_eq(vigil_client_stats(c, s, 2), 2, "fills only what it is given room for");
    cr_assert_eq(vigil_client_stats(c, s, VIGIL_STAT_COUNT + 4), VIGIL_STAT_COUNT);
    cr_assert_eq(s[VIGIL_STAT_RECEIVED], 1);
    cr_assert_eq(s[VIGIL_STAT_GAPS], 1);
    cr_assert_eq(s[VIGIL_STAT_MISSED], 8);
    vigil_client_destroy(c);
    fb_close(&a);
    fb_unlisten(&l);
}

Test(vigil, bad_options_and_names_are_refused_with_a_reason)
{
    vigil_options *o = vigil_options_create();
    cr_assert_not_null(o);
    cr_assert_eq(vigil_options_set_servers(o, ""), VIGIL_ERR_ARG);
    cr_assert_eq(vigil_options_set_heartbeat(o, 1000, 0, 3), VIGIL_ERR_ARG);
    cr_assert_eq(vigil_options_set_heartbeat(o, 1000, 500, 101), VIGIL_ERR_ARG);
    cr_assert_eq(vigil_options_set_heartbeat(o, 0, 0, 0), VIGIL_OK, "0 turns heartbeats off");
    cr_assert_eq(vigil_options_set_backoff(o, 0, 10), VIGIL_ERR_ARG);
    cr_assert_eq(vigil_options_set_max_reconnects(o, -2), VIGIL_ERR_ARG);
    cr_assert_eq(vigil_options_set_ack_delay(o, -1), VIGIL_ERR_ARG);
    char long_name[200];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    cr_assert_eq(vigil_options_set_name(o, long_name), VIGIL_ERR_ARG);
    cr_assert_eq(vigil_options_set_servers(o, "no-port-here"), VIGIL_OK, "checked at create");
    vigil_client *c = NULL;
    const char *why = NULL;
    cr_assert_eq(vigil_client_create(&c, o, &why), VIGIL_ERR_ARG);
    cr_assert_null(c);
    cr_assert_not_null(why, "a refusal says why");
    vigil_options_destroy(o);
    cr_assert_eq(vigil_client_create(&c, NULL, NULL), VIGIL_ERR_ARG);

    cr_assert_eq(vigil_topic_check("orders.eu", 0, NULL), VIGIL_OK);
    cr_assert_eq(vigil_topic_check("orders.*", 0, &why), VIGIL_ERR_BAD_TOPIC);
    cr_assert_not_null(why);
    cr_assert_eq(vigil_topic_check("orders.*", 1, NULL), VIGIL_OK);
    cr_assert_eq(vigil_topic_check("orders.>.x", 1, NULL), VIGIL_ERR_BAD_TOPIC);
    cr_assert_eq(vigil_topic_check("a..b", 1, NULL), VIGIL_ERR_BAD_TOPIC);
    cr_assert_eq(vigil_topic_check(NULL, 0, NULL), VIGIL_ERR_BAD_TOPIC);
    cr_assert(vigil_name_valid("billing-1.a_b"));
    cr_assert_not(vigil_name_valid(""));
    cr_assert_not(vigil_name_valid("a b"));
    cr_assert_not(vigil_name_valid(NULL));
    for (int s = VIGIL_OK; s <= VIGIL_ERR_IO; s++)
        cr_assert(strcmp(vigil_status_str((vigil_status)s), "unknown status") != 0, "status %d", s);
    cr_assert_str_eq(vigil_version(), "0.1.0");
}
