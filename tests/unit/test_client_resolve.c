/* The client library (client.h) against the scripted fake broker
 * (client_harness.h): name resolution. A name is resolved again on every
 * attempt, every address of a name is tried, IPv6 works, and a lookup
 * that hangs does not hold up vg_client_close. The only client suite
 * linked with the scripted getaddrinfo (fake_resolver.h), which replaces
 * libc's for every test in the executable.
 *
 * "Defect N" marks the regression test of a numbered defect of the
 * outside review (client_harness.h). */
#include <criterion/criterion.h>
#include <stdio.h>

#include "client_harness.h"
#include "fake_resolver.h"
#include "proto.h"

TestSuite(client_resolve, .init = client_setup, .fini = client_teardown, .timeout = 120);

/* ==== names and addresses ==== */

/* Defect 4: addresses were resolved once, at start. A name that first
 * resolves where nothing listens, then to the broker, is found on a later
 * attempt. */
Test(client_resolve, name_is_resolved_again_on_every_attempt)
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
Test(client_resolve, every_address_of_a_name_is_tried_on_the_same_attempt)
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

#ifndef VG_OLD_API
Test(client_resolve, connects_over_ipv6)
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

/* ==== a lookup that hangs ==== */

#ifndef VG_OLD_API
Test(client_resolve, close_is_quick_while_a_name_lookup_hangs)
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
