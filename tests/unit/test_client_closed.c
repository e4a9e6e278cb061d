/* The client library (client.h) against the scripted fake broker
 * (client_harness.h): how a client ends. For good after a fatal refusal
 * or max_reconnects failed attempts, or when the application closes it;
 * not after a refusal that retrying can fix; and how quickly
 * vg_client_close returns whatever the client is doing (while a name
 * lookup hangs: test_client_resolve.c, which has the scripted resolver).
 *
 * "Defect N" marks the regression test of a numbered defect of the
 * outside review (client_harness.h). */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client_harness.h"
#include "proto.h"

TestSuite(client_closed, .init = client_setup, .fini = client_teardown, .timeout = 120);

/* ==== refusals and the closed state ==== */

/* A publisher waiting for room in the buffer, on a helper thread: its result. */
typedef struct {
    vg_client *c;
    size_t len;
    int timeout_ms;
    pthread_t tid;
    atomic_bool done;
    vg_status st;
} blocked_pub;

static void *blocked_pub_main(void *arg)
{
    blocked_pub *b = arg;
    char *payload = calloc(1, b->len);
    b->st = payload ? vg_client_publish(b->c, VG_FRAME_MSG_TYPE1, "block.t", 7, payload, b->len,
                                        b->timeout_ms)
                    : VG_ERR_NOMEM;
    free(payload);
    atomic_store(&b->done, true);
    return NULL;
}

static bool blocked_done(void *arg) { return atomic_load(&((blocked_pub *)arg)->done); }

/* Defect 2: after a fatal refusal the client is closed for good: on_closed
 * once, the reason, publish fails at once with VG_ERR_CLOSED and a
 * publisher blocked for room is released with it, and no connection
 * attempt follows. before_info: the ERR answers CONNECT (auth, version);
 * else it comes after the handshake (permission, for a MSG). */
static void check_fatal_refusal(uint64_t code, const char *name, bool before_info)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    o.max_buffer = 64 * KIB;
    o.backoff_base_ms = o.backoff_max_ms = 10;
    vg_client *c = start(&o);
    fb_accept(&l, &conn, fb_ms(5000), "the connection");
    fb_expect(&conn, VG_FRAME_CONNECT, NULL, fb_ms(5000), "CONNECT");
    if (!before_info)
        fb_send_info(&conn, VG_DEFAULT_MAX_PAYLOAD);

    blocked_pub b = {.c = c, .len = 40 * KIB, .timeout_ms = fb_ms(6000)};
    if (before_info) {
        /* Nothing is written before INFO: the first fills the buffer, the
         * second waits for room. */
        char *big = calloc(1, 40 * KIB);
        cr_assert_eq(vg_client_publish(c, VG_FRAME_MSG_TYPE1, "block.t", 7, big, 40 * KIB, 0),
                     VG_OK);
        free(big);
        cr_assert_eq(pthread_create(&b.tid, NULL, blocked_pub_main, &b), 0);
        fb_sleep(fb_ms(100));
        cr_assert(!atomic_load(&b.done), "the second publish did not wait for room: %s",
                  vg_strerror(b.st));
    } else {
        cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_OK);
        must_publish(c, "$SYS.stats", "forbidden");
        fb_expect(&conn, VG_FRAME_MSG_TYPE1, NULL, fb_ms(5000), "the forbidden MSG");
    }
    fb_send_err(&conn, code, "refused by the test", 0);
    fb_close(&conn);

    cr_assert(wait_until(closed_called, NULL, fb_ms(5000)), "on_closed was not called");
    if (before_info) {
        bool released = wait_until(blocked_done, &b, fb_ms(2000));
        if (!released) { /* let it time out, and fail */
            pthread_join(b.tid, NULL);
            cr_assert_fail("the publisher waiting for room was not released (it returned %s "
                           "after its own timeout)", vg_strerror(b.st));
        }
        pthread_join(b.tid, NULL);
        cr_assert_eq(b.st, VG_ERR_CLOSED, "the blocked publisher got %s", vg_strerror(b.st));
    }
    int64_t t0 = fb_now();
    vg_status st = publish(c, "after.t", "x", fb_ms(5000));
    cr_assert_eq(st, VG_ERR_CLOSED, "publish after the refusal: %s", vg_strerror(st));
    cr_assert_lt(fb_now() - t0, fb_ms(100), "publish did not fail at once");
    cr_assert_eq(vg_client_wait_connected(c, before_info ? fb_ms(1000) : 0),
                 before_info ? VG_ERR_CLOSED : VG_OK);
    cr_assert_eq(vg_client_subscribe(c, "after.t", NULL), VG_ERR_CLOSED);
    /* Before INFO nothing was written: the flush can never complete. After
     * it, the forbidden MSG was written to a connection that died
     * unconfirmed, which is all a flush waits for. */
    cr_assert_eq(vg_client_flush(c, fb_ms(1000)), before_info ? VG_ERR_CLOSED : VG_OK);
    fb_conn again;
    cr_assert(!fb_try_accept(&l, &again, fb_ms(1000)), "the client tried again after %s", name);
    cr_assert_eq(cb_closed(), 1, "on_closed calls");
    cr_assert_str_eq(cb.closed_reason, name);
#ifndef VG_OLD_API
    const char *why = vg_client_closed_reason(c);
    cr_assert(why != NULL && strcmp(why, name) == 0, "closed reason %s, want %s",
              why ? why : "(none)", name);
    cr_assert_eq(vg_client_close(c, fb_ms(1000)), VG_OK);
#endif
    cr_assert(fb_log_wait(1, fb_ms(1000), "event=closed", name, NULL));
    vg_client_destroy(c);
    fb_unlisten(&l);
}

Test(client_closed, fatal_auth_refusal_closes_for_good)
{
    check_fatal_refusal(VG_E_AUTH, "auth", true);
}

Test(client_closed, fatal_version_refusal_closes_for_good)
{
    check_fatal_refusal(VG_E_VERSION, "version", true);
}

Test(client_closed, fatal_permission_refusal_closes_for_good)
{
    check_fatal_refusal(VG_E_PERMISSION, "permission", false);
}

#ifndef VG_OLD_API
/* A fatal ERR that retrying can fix (shutdown) is a lost connection, not
 * the end: the client reconnects. */
Test(client_closed, fatal_shutdown_error_reconnects)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &c1, &o);
    fb_send_err(&c1, VG_E_SHUTDOWN, "broker stopping", 0);
    fb_close(&c1);
    fb_accept(&l, &c2, fb_ms(5000), "the reconnection after ERR shutdown");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=reconnected", NULL));
    cr_assert(fb_log_wait(1, fb_ms(1000), "event=disconnected", "reason=shutdown", NULL));
    cr_assert_eq(cb_closed(), 0);
    cr_assert_null(vg_client_closed_reason(c));
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* ERR limit before INFO ("too many connections") is not a refusal for
 * good: the client backs off and tries again. */
Test(client_closed, too_many_connections_is_retried)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn c1, c2;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = start(&o);
    fb_accept(&l, &c1, fb_ms(5000), "the connection");
    fb_send_err(&c1, VG_E_LIMIT, "too many connections", 0);
    fb_close(&c1);
    fb_accept(&l, &c2, fb_ms(5000), "the retry");
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_OK);
    cr_assert(fb_log_wait(1, fb_ms(1000), "event=connect_failed", "reason=limit", NULL));
    cr_assert_eq(cb_closed(), 0);
    vg_client_destroy(c);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* max_reconnects failed attempts in a row close the client. */
Test(client_closed, max_reconnects_reached_closes_for_good)
{
    vg_client_opts o = opts_for(fb_dead_port());
    o.max_reconnects = 3;
    o.backoff_base_ms = o.backoff_max_ms = 10;
    vg_client *c = start(&o);
    cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_ERR_CLOSED);
    cr_assert(wait_until(closed_called, NULL, fb_ms(5000)));
    cr_assert_str_eq(cb.closed_reason, "max_reconnects");
    const char *why = vg_client_closed_reason(c);
    cr_assert(why != NULL && strcmp(why, "max_reconnects") == 0);
    cr_assert_eq(fb_log_count("event=connect_failed", NULL), 3);
    for (int i = 1; i <= 3; i++) {
        char a[16];
        snprintf(a, sizeof a, "attempt=%d", i);
        cr_assert_eq(fb_log_count("event=connect_failed", a, NULL), 1, "%s", a);
    }
    cr_assert_eq(fb_log_count("event=closed", "reason=max_reconnects", NULL), 1);
    cr_assert_eq(publish(c, "t", "x", fb_ms(1000)), VG_ERR_CLOSED);
    cr_assert_eq(cb_closed(), 1);
    vg_client_destroy(c);
}

/* ... and after a lost connection, max_reconnects attempts to get it back. */
Test(client_closed, max_reconnects_counts_from_the_lost_connection)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    o.max_reconnects = 2;
    o.backoff_base_ms = o.backoff_max_ms = 10;
    vg_client *c = connected_client(&l, &conn, &o);
    fb_unlisten(&l);
    fb_close(&conn);
    cr_assert(wait_until(closed_called, NULL, fb_ms(5000)), "not closed");
    cr_assert_str_eq(cb.closed_reason, "max_reconnects");
    cr_assert_eq(fb_log_count("event=connect_failed", NULL), 2);
    cr_assert_eq(fb_log_count("event=connect_failed", "attempt=2", NULL), 1);
    vg_client_destroy(c);
}

/* After vg_client_close, nothing is accepted any more. */
Test(client_closed, closed_by_the_application_refuses_everything)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    cr_assert_eq(vg_client_close(c, fb_ms(1000)), VG_OK);
    cr_assert_eq(vg_client_close(c, 0), VG_OK, "a second close");
    cr_assert(fb_wait_eof(&conn, fb_ms(2000)), "the connection stayed open");
    cr_assert_eq(publish(c, "t", "x", fb_ms(1000)), VG_ERR_CLOSED);
    cr_assert_eq(vg_client_subscribe(c, "t", NULL), VG_ERR_CLOSED);
    cr_assert_eq(vg_client_flush(c, 0), VG_OK, "nothing was published");
    cr_assert_not_null(vg_client_closed_reason(c));
    cr_assert_eq(cb_closed(), 0, "on_closed is for giving up, not for closing");
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

#endif

/* ==== stop latency ==== */

#ifndef VG_OLD_API
/* A listener that never accepts, with its accept queue full: Linux drops
 * the SYNs, so a connect to it hangs (a black hole on loopback). */
static int black_hole(int *port, int fills[4], int *nfill)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 0), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    *nfill = 0;
    for (int i = 0; i < 4; i++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        fills[(*nfill)++] = s;
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
            continue;
        struct pollfd p = {.fd = s, .events = POLLOUT};
        if (poll(&p, 1, 300) == 0)
            return fd; /* this one hangs: the queue is full */
    }
    cr_assert_fail("could not fill the accept queue of a listener with backlog 0");
    return fd;
}

Test(client_closed, close_is_quick_while_connecting_to_a_black_hole)
{
    int port, fills[4], nfill;
    int lfd = black_hole(&port, fills, &nfill);
    vg_client_opts o = opts_for(port);
    vg_client *c = start(&o);
    fb_sleep(fb_ms(200)); /* well into the connect */
    cr_assert_eq(fb_log_count("event=connect_failed", NULL), 0, "the connect did not hang");
    check_quick_close(c, "connecting to a black hole");
    vg_client_destroy(c);
    for (int i = 0; i < nfill; i++)
        close(fills[i]);
    close(lfd);
}

Test(client_closed, close_is_quick_while_backing_off)
{
    vg_client_opts o = opts_for(fb_dead_port());
    o.backoff_base_ms = o.backoff_max_ms = 60000;
    vg_client *c = start(&o);
    cr_assert(fb_log_wait(1, fb_ms(5000), "event=connect_failed", NULL));
    fb_sleep(fb_ms(20));
    check_quick_close(c, "backing off");
    vg_client_destroy(c);
}

typedef struct {
    vg_client *c;
    vg_status st;
    atomic_bool done;
} flusher;

static void *flusher_main(void *arg)
{
    flusher *f = arg;
    f->st = vg_client_flush(f->c, fb_ms(20000));
    atomic_store(&f->done, true);
    return NULL;
}

Test(client_closed, close_is_quick_while_flushing_with_no_pong_coming)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    vg_client *c = connected_client(&l, &conn, &o);
    conn.pings = FB_PING_SKIP;
    emu_init(&conn, false, false);
    for (int i = 0; i < 10; i++)
        must_publish(c, "flush.t", "x");
    flusher f = {.c = c};
    pthread_t tid;
    cr_assert_eq(pthread_create(&tid, NULL, flusher_main, &f), 0);
    unsigned ten = 10;
    emu_until(fake_read_msgs, &ten, fb_ms(5000), "the 10 MSGs");
    fb_read(&conn, &(vg_frame){0}, fb_ms(200)); /* and the flush's PING, skipped */
    if (atomic_load(&f.done)) {
        vg_client_stats s = checked_stats(c, "flush returned");
        cr_assert_fail("the flush returned %s without a PONG: confirmed %llu unconfirmed %llu "
                       "pending %llu, fake pings seen %u", vg_strerror(f.st),
                       (unsigned long long)s.confirmed, (unsigned long long)s.unconfirmed,
                       (unsigned long long)s.pending, conn.pings_seen);
    }
    check_quick_close(c, "flushing with no PONG coming");
    pthread_join(tid, NULL);
    /* Closing turned the 10 written messages into unconfirmed ones, which
     * is all a flush waits for (client.h): it returns VG_OK, released with
     * the close, and the stats say the messages are unconfirmed. */
    cr_assert_eq(f.st, VG_OK, "the flush returned %s", vg_strerror(f.st));
    vg_client_stats s = checked_stats(c, "after close");
    cr_assert_eq(s.pending, 0);
    cr_assert_eq(s.unconfirmed, 10);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool in_callback, release;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};

static void on_msg_blocking(void *ud, const vg_msg *m)
{
    (void)ud;
    (void)m;
    pthread_mutex_lock(&gate.mu);
    gate.in_callback = true;
    pthread_cond_broadcast(&gate.cv);
    while (!gate.release)
        pthread_cond_wait(&gate.cv, &gate.mu);
    pthread_mutex_unlock(&gate.mu);
}

static bool in_callback(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate.mu);
    bool in = gate.in_callback;
    pthread_mutex_unlock(&gate.mu);
    return in;
}

/* vg_client_close times out while a callback runs, and succeeds once it
 * has returned. */
Test(client_closed, close_times_out_while_a_callback_runs)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    fb_conn conn;
    vg_client_opts o = opts_for(l.port);
    o.on_msg = on_msg_blocking;
    vg_client *c = connected_client(&l, &conn, &o);
    uint64_t sid = must_subscribe(c, "cb.t");
    emu_init(&conn, true, false);
    emu_until_frame(VG_FRAME_SUB, sid);
    fb_send_msg(&conn, "cb.t", "hold");
    cr_assert(wait_until(in_callback, NULL, fb_ms(5000)), "on_msg was not called");
    cr_assert_eq(vg_client_close(c, fb_ms(100)), VG_ERR_TIMEOUT);
    pthread_mutex_lock(&gate.mu);
    gate.release = true;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    cr_assert_eq(vg_client_close(c, fb_ms(2000)), VG_OK);
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

#endif
