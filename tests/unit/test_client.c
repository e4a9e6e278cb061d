/* The client library (client.h) against a scripted fake broker inside the
 * test (fake_broker.h): the order of SUB, UNSUB and MSG; every
 * subscription state across disconnects; refusals and the closed state;
 * name resolution on each attempt; confirmation accounting; a hostile
 * broker; backoff reset rules; heartbeat verdicts; how fast a client
 * stops.
 *
 * Everything goes through the public API, with the pieces the client
 * suites share (client_harness.h). getaddrinfo is scripted
 * (fake_resolver.h) to say what a name resolves to on each attempt.
 *
 * Cases marked "defect N" are the regression tests of the numbered defects
 * of the outside review. Built with -DVG_OLD_API against the library
 * before the restructuring (commit 0def24f), only those cases compile; the
 * report of that run is the before-fix evidence. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#ifndef VG_OLD_API
#include "client_confirm.h" /* VG_CONFIRM_MARKS */
#endif
#include "client_harness.h"
#include "fake_broker.h"
#include "fake_resolver.h"
#include "log.h"
#include "proto.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* The old library (before the restructuring) has no max_payload option,
 * no vg_client_close, no pending/unsent counters and no closed reason. */
#ifdef VG_OLD_API
#define SET_MAX_PAYLOAD(o, v) ((void)(o), (void)(v))
#else
#define SET_MAX_PAYLOAD(o, v) ((o)->max_payload = (v))
#endif

TestSuite(client, .init = client_setup, .fini = client_teardown, .timeout = 120);

/* ==== name resolution on each attempt ==== */

/* Defect 4: addresses were resolved once, at start. A name that first
 * resolves where nothing listens, then to the broker, is found on a later
 * attempt. */
Test(client, name_is_resolved_again_on_every_attempt)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    gai_set_ports(l.port, fb_dead_port());
    vg_client_opts o = opts_for(0);
    snprintf(servers, sizeof servers, "moving.test:%d", l.port);
    vg_client *c = start(&o);
    fb_conn conn;
    fb_accept(&l, &conn, fb_ms(5000), "a connection once the name resolves to the fake");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_OK);
    cr_assert_geq(gai_calls(), 2, "the interposed getaddrinfo was called %d times", gai_calls());
    cr_assert_geq(fb_log_count("event=connect_failed", "attempt=1", NULL), 1,
                  "the first attempt should have failed");
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* Defect 4: only the first address was kept. A name giving [::1] (where
 * nothing listens) before 127.0.0.1 connects on the first attempt. */
Test(client, every_address_of_a_name_is_tried_on_the_same_attempt)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    gai_set_ports(l.port, 0);
    vg_client_opts o = opts_for(0);
    snprintf(servers, sizeof servers, "dual.test:%d", l.port);
    vg_client *c = start(&o);
    fb_conn conn;
    fb_accept(&l, &conn, fb_ms(5000), "a connection to the second address");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_OK);
    cr_assert_eq(gai_calls(), 1, "want one lookup (one attempt), got %d", gai_calls());
    cr_assert_eq(fb_log_count("event=connect_failed", NULL), 0, "the first attempt failed");
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* ==== stop latency ==== */

#ifndef VG_OLD_API
Test(client, close_is_quick_while_a_name_lookup_hangs)
{
    vg_client_opts o = opts_for(0);
    snprintf(servers, sizeof servers, "hang.test:7222");
    vg_client *c = start(&o);
    cr_assert(gai_wait_hanging(fb_ms(5000)), "the lookup did not start");
    check_quick_close(c, "a name lookup hangs");
    vg_client_destroy(c);
    cr_assert(gai_release(fb_ms(5000)), "the abandoned lookup did not return");
}

#endif

/* ==== the handshake, and closing with a callback running ==== */

#ifndef VG_OLD_API
Test(client, connects_over_ipv6)
{
    fb_listener l;
    fb_listen(&l, true, 0);
    vg_client_opts o = opts_for(0);
    snprintf(servers, sizeof servers, "[::1]:%d", l.port6);
    vg_client *c = start(&o);
    fb_conn conn;
    fb_accept(&l, &conn, fb_ms(5000), "a connection on [::1]");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_OK);
    cr_assert(fb_log_wait(1, fb_ms(2000), "event=connected", "server=[::1]:", NULL));
    vg_client_destroy(c);
    fb_close(&conn);
    fb_unlisten(&l);
}

#endif
