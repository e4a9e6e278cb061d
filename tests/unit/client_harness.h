/* What the client library's suites (tests/unit/test_client_*.c) share: a
 * recorder of the application's callbacks, the client under test built
 * through the public API (client.h), and a broker emulated on one
 * connection of the scripted fake (fake_broker.h). Each suite runs
 * client_setup and client_teardown around every test, so the client's log
 * (fd 2) is captured into a file and copied back to stderr at the end.
 *
 * The state here (cb, servers, em) is global and starts at zero in each
 * test: Criterion runs every test in a forked worker.
 *
 * Cases marked "defect N" in the suites are the regression tests of the
 * numbered defects of the outside review. Built with -DVG_OLD_API against
 * the library before the restructuring (commit 0def24f), only those cases
 * compile; the report of that run is the before-fix evidence. */
#ifndef VG_CLIENT_HARNESS_H
#define VG_CLIENT_HARNESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "fake_broker.h"

#define KIB 1024
#define MIB (1024 * 1024)

/* ---- the application's callbacks ---- */

#define TOPICS 8

#define DELIVERIES 64

/* One call of on_msg. */
typedef struct {
    uint64_t sid, seq;
    unsigned copy;
    char topic[32];
} cb_delivery;

/* What on_msg, on_sub_error and on_closed were called with, written on
 * the client's thread under mu: read the counts through the cb_
 * functions, a string or code once its callback is known to have run. */
typedef struct {
    pthread_mutex_t mu;
    unsigned msgs;
    char topics[TOPICS][32]; /* the first TOPICS topics seen */
    unsigned per_topic[TOPICS];
    char last_payload[64];
    unsigned sub_errors;
    uint64_t sub_error_code;
    char sub_error_topic[64];
    unsigned closed;
    char closed_reason[64];
    uint64_t last_seq, last_epoch; /* of the last message */
    unsigned gaps;
    vg_gap gap[8];                 /* the first 8 gaps */
    char gap_topic[64];            /* of the last gap */
    unsigned firsts;               /* messages with copy 0 */
    unsigned per_sid[32];          /* messages per sid (sids below 32) */
    cb_delivery dl[DELIVERIES];    /* the first DELIVERIES calls of on_msg */
} cb_record;

extern cb_record cb;

/* Counts so far: messages, messages on one topic, on_sub_error and
 * on_closed calls. */
unsigned cb_msgs(void);
unsigned cb_on_topic(const char *topic);
unsigned cb_sub_errors(void);
unsigned cb_closed(void);
unsigned cb_gaps(void);
/* on_msg calls with copy 0; calls for sid (below 32). */
unsigned cb_firsts(void);
unsigned cb_on_sid(uint64_t sid);
/* on_msg call i (below DELIVERIES and cb_msgs()). */
cb_delivery cb_delivery_at(unsigned i);

/* Waits (polling) until pred(arg) or timeout_ms; returns pred's last value. */
bool wait_until(bool (*pred)(void *), void *arg, int timeout_ms);
/* Predicates for wait_until: at least *(unsigned *)arg messages; on_closed
 * called (arg unused). */
bool msgs_at_least(void *arg);
bool closed_called(void *arg);

/* ---- the client under test ---- */

/* The servers option of opts_for's clients; a test may write its own
 * before start. */
extern char servers[300];

/* Options for a client of 127.0.0.1:port (0: servers already in
 * `servers`): the defaults, the recording callbacks, a quick backoff. */
vg_client_opts opts_for(int port);
/* A small keep-alive (time, interval, probes), scaled. */
vg_keepalive small_keepalive(int time_ms, int interval_ms, int probes);

/* Starts a client, asserting; the caller destroys it. */
vg_client *start(const vg_client_opts *o);
/* Publishes a MSG_TYPE1 of NUL-terminated topic and payload. */
vg_status publish(vg_client *c, const char *topic, const char *payload, int timeout_ms);
/* The same, asserting VG_OK within 5 s. */
void must_publish(vg_client *c, const char *topic, const char *payload);
/* Subscribes, asserting; returns the sid. */
uint64_t must_subscribe(vg_client *c, const char *topic);
/* Starts a client of l, accepts its connection into *conn and completes
 * its first handshake, asserting. */
vg_client *connected_client(fb_listener *l, fb_conn *conn, vg_client_opts *o);

/* The stats, checked against the contract of vg_client_stats on every
 * snapshot: each message in exactly one of the four states, no counter
 * wrapped, none going backwards since the last call in this test. */
vg_client_stats checked_stats(vg_client *c, const char *when);

#ifndef VG_OLD_API
/* vg_client_close(c, 100) returns VG_OK within 100 ms (scaled). */
void check_quick_close(vg_client *c, const char *while_what);
#endif

/* ---- a broker, emulated on one fake connection ----
 *
 * Reads frames and answers as the real broker would (OK for SUB and for
 * the UNSUB of a known sid, ERR no_such_sid for an unknown one; with echo,
 * a MSG on a topic this connection subscribed goes back to it), recording
 * every frame but PINGs. */

#define RECS 4096

typedef struct {
    fb_conn *c;
    bool answer; /* answer SUB and UNSUB */
    bool echo;
    uint64_t sids[32];
    char topics[32][64];
    int nsubs;
    fb_rec recs[RECS];
    int nrecs;
    unsigned msgs;
    unsigned pongs; /* answers to our own PINGs (not recorded) */
} emu;

extern emu em; /* large: global, one per test */

/* Starts emulating on c, forgetting what was recorded before. */
void emu_init(fb_conn *c, bool answer, bool echo);
/* Reads and handles one frame within timeout_ms. */
fb_result emu_step(int timeout_ms);
/* Serves until pred(arg) holds, asserting within timeout_ms; what names
 * the wait in the failure. */
void emu_until(bool (*pred)(void *), void *arg, int timeout_ms, const char *what);
/* Sends PING and serves until its PONG: everything sent to the client
 * before has been handled by then (frames are handled in order), and
 * everything it wrote before handling the PING has been read. */
void emu_barrier(void);
/* Serves until a frame of type t for sid has been read. */
void emu_until_frame(vg_frame_type t, uint64_t sid);
/* Predicates for emu_until: the last frame read is a MSG with payload
 * (const char *)arg; at least *(unsigned *)arg MSGs read. */
bool saw_payload(void *arg);
bool fake_read_msgs(void *arg);
/* The frames recorded, as "SUB 1 t | MSG t a | ...", into buf. */
const char *emu_seq(char *buf, size_t cap);
/* How many recorded frames are of type t for sid. */
int emu_count(vg_frame_type t, uint64_t sid);

/* ---- the suites ---- */

/* .init and .fini of every client suite: the log captured, at the level
 * VIGIL_TEST_DEBUG asks for. */
void client_setup(void);
void client_teardown(void);

#endif
