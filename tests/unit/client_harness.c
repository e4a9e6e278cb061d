/* The shared pieces of the client suites (client_harness.h): plain code
 * on the test thread, except the callbacks, which run on the client's. */
#include "client_harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proto.h"

/* ---- the application's callbacks ---- */

cb_record cb = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_msg(void *ud, const vg_msg *m)
{
    (void)ud;
    pthread_mutex_lock(&cb.mu);
    if (cb.msgs < DELIVERIES) {
        cb_delivery *d = &cb.dl[cb.msgs];
        *d = (cb_delivery){.sid = m->sid, .seq = m->seq, .copy = m->copy};
        snprintf(d->topic, sizeof d->topic, "%.*s", (int)m->topic_len, m->topic);
    }
    cb.msgs++;
    cb.firsts += m->copy == 0;
    if (m->sid < 32)
        cb.per_sid[m->sid]++;
    for (int i = 0; i < TOPICS; i++) {
        if (cb.topics[i][0] == '\0' && m->topic_len < sizeof cb.topics[i]) {
            memcpy(cb.topics[i], m->topic, m->topic_len);
            cb.topics[i][m->topic_len] = '\0';
        }
        if (strlen(cb.topics[i]) == m->topic_len &&
            memcmp(cb.topics[i], m->topic, m->topic_len) == 0) {
            cb.per_topic[i]++;
            break;
        }
    }
    size_t n = m->payload_len < sizeof cb.last_payload - 1 ? m->payload_len
                                                           : sizeof cb.last_payload - 1;
    memcpy(cb.last_payload, m->payload, n);
    cb.last_payload[n] = '\0';
    cb.last_seq = m->seq;
    cb.last_epoch = m->epoch;
    pthread_mutex_unlock(&cb.mu);
}

static void on_gap(void *ud, const char *topic, size_t len, const vg_gap *g)
{
    (void)ud;
    pthread_mutex_lock(&cb.mu);
    if (cb.gaps < 8)
        cb.gap[cb.gaps] = *g;
    cb.gaps++;
    snprintf(cb.gap_topic, sizeof cb.gap_topic, "%.*s", (int)len, topic);
    pthread_mutex_unlock(&cb.mu);
}

unsigned cb_firsts(void)
{
    pthread_mutex_lock(&cb.mu);
    unsigned n = cb.firsts;
    pthread_mutex_unlock(&cb.mu);
    return n;
}

unsigned cb_on_sid(uint64_t sid)
{
    pthread_mutex_lock(&cb.mu);
    unsigned n = sid < 32 ? cb.per_sid[sid] : 0;
    pthread_mutex_unlock(&cb.mu);
    return n;
}

cb_delivery cb_delivery_at(unsigned i)
{
    pthread_mutex_lock(&cb.mu);
    cb_delivery d = i < DELIVERIES ? cb.dl[i] : (cb_delivery){0};
    pthread_mutex_unlock(&cb.mu);
    return d;
}

unsigned cb_gaps(void)
{
    pthread_mutex_lock(&cb.mu);
    unsigned n = cb.gaps;
    pthread_mutex_unlock(&cb.mu);
    return n;
}

static void on_sub_error(void *ud, uint64_t sid, const char *topic, uint64_t code,
                         const char *reason)
{
    (void)ud;
    (void)sid;
    (void)reason;
    pthread_mutex_lock(&cb.mu);
    cb.sub_errors++;
    cb.sub_error_code = code;
    snprintf(cb.sub_error_topic, sizeof cb.sub_error_topic, "%s", topic);
    pthread_mutex_unlock(&cb.mu);
}

static void on_closed(void *ud, const char *reason)
{
    (void)ud;
    pthread_mutex_lock(&cb.mu);
    cb.closed++;
    snprintf(cb.closed_reason, sizeof cb.closed_reason, "%s", reason);
    pthread_mutex_unlock(&cb.mu);
}

unsigned cb_msgs(void)
{
    pthread_mutex_lock(&cb.mu);
    unsigned n = cb.msgs;
    pthread_mutex_unlock(&cb.mu);
    return n;
}

unsigned cb_on_topic(const char *topic)
{
    unsigned n = 0;
    pthread_mutex_lock(&cb.mu);
    for (int i = 0; i < TOPICS; i++)
        if (strcmp(cb.topics[i], topic) == 0)
            n = cb.per_topic[i];
    pthread_mutex_unlock(&cb.mu);
    return n;
}

unsigned cb_sub_errors(void)
{
    pthread_mutex_lock(&cb.mu);
    unsigned n = cb.sub_errors;
    pthread_mutex_unlock(&cb.mu);
    return n;
}

unsigned cb_closed(void)
{
    pthread_mutex_lock(&cb.mu);
    unsigned n = cb.closed;
    pthread_mutex_unlock(&cb.mu);
    return n;
}

bool wait_until(bool (*pred)(void *), void *arg, int timeout_ms)
{
    int64_t deadline = fb_now() + timeout_ms;
    while (!pred(arg)) {
        if (fb_now() >= deadline)
            return pred(arg);
        fb_sleep(5);
    }
    return true;
}

bool msgs_at_least(void *arg) { return cb_msgs() >= *(unsigned *)arg; }
bool closed_called(void *arg) { (void)arg; return cb_closed() > 0; }

/* ---- the client under test ---- */

char servers[300];

/* The client's lines go to stderr, where the fake broker's tests look for
 * them, at the level the test set with vg_log_set_level. */
static void harness_log(void *ud, vg_log_level level, const char *line)
{
    if (vg_log_enabled(level))
        vg_log_write_stderr(ud, level, line);
}

vg_client_opts opts_for(int port)
{
    vg_client_opts o;
    vg_client_opts_defaults(&o);
    if (port > 0)
        snprintf(servers, sizeof servers, "127.0.0.1:%d", port);
    o.servers = servers;
    o.name = "test-client";
    o.token = NULL;
    o.backoff_base_ms = 20;
    o.backoff_max_ms = 100;
    o.on_msg = on_msg;
    o.on_sub_error = on_sub_error;
    o.on_closed = on_closed;
    o.on_gap = on_gap;
    o.on_log = harness_log;
    o.log_level = VG_LOG_DEBUG; /* harness_log applies the test's level */
    return o;
}

vg_keepalive small_keepalive(int time_ms, int interval_ms, int probes)
{
    return (vg_keepalive){fb_ms(time_ms), fb_ms(interval_ms), probes};
}

vg_client *start(const vg_client_opts *o)
{
    vg_client *c = NULL;
    const char *why = "?";
    vg_status st = vg_client_start(&c, o, &why);
    cr_assert_eq(st, VG_OK, "vg_client_start: %s (%s)", vg_strerror(st), why);
    return c;
}

vg_status publish(vg_client *c, const char *topic, const char *payload, int timeout_ms)
{
    return vg_client_publish(c, VG_FRAME_MSG_TYPE1, topic, strlen(topic), payload,
                             strlen(payload), timeout_ms);
}

void must_publish(vg_client *c, const char *topic, const char *payload)
{
    vg_status st = publish(c, topic, payload, fb_ms(5000));
    cr_assert_eq(st, VG_OK, "publish %s %s: %s", topic, payload, vg_strerror(st));
}

uint64_t must_subscribe(vg_client *c, const char *topic)
{
    uint64_t sid = 0;
    vg_status st = vg_client_subscribe(c, topic, &sid);
    cr_assert_eq(st, VG_OK, "subscribe %s: %s", topic, vg_strerror(st));
    return sid;
}

vg_client *connected_client(fb_listener *l, fb_conn *conn, vg_client_opts *o)
{
    vg_client *c = start(o);
    fb_accept(l, conn, fb_ms(5000), "the client's first connection");
    fb_handshake(conn, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert_eq(vg_client_wait_connected(c, fb_ms(5000)), VG_OK, "no handshake");
    return c;
}

/* The snapshot before, for "none going backwards". */
static vg_client_stats last_stats;

vg_client_stats checked_stats(vg_client *c, const char *when)
{
    vg_client_stats s;
    vg_client_get_stats(c, &s);
#ifndef VG_OLD_API
    cr_assert(s.confirmed <= s.published && s.unconfirmed <= s.published &&
                  s.pending <= s.published && s.unsent <= s.published &&
                  s.confirmed + s.unconfirmed + s.pending + s.unsent == s.published,
              "%s: published %llu != confirmed %llu + unconfirmed %llu + pending %llu + "
              "unsent %llu",
              when, (unsigned long long)s.published, (unsigned long long)s.confirmed,
              (unsigned long long)s.unconfirmed, (unsigned long long)s.pending,
              (unsigned long long)s.unsent);
#else
    cr_assert(s.confirmed + s.unconfirmed <= s.published,
              "%s: confirmed %llu + unconfirmed %llu > published %llu", when,
              (unsigned long long)s.confirmed, (unsigned long long)s.unconfirmed,
              (unsigned long long)s.published);
#endif
    cr_assert(s.published >= last_stats.published && s.confirmed >= last_stats.confirmed &&
                  s.unconfirmed >= last_stats.unconfirmed && s.received >= last_stats.received,
              "%s: a counter went backwards", when);
    last_stats = s;
    return s;
}

#ifndef VG_OLD_API
void check_quick_close(vg_client *c, const char *while_what)
{
    int limit = fb_ms(100);
    int64_t t0 = fb_now();
    vg_status st = vg_client_close(c, limit);
    int64_t took = fb_now() - t0;
    cr_assert_eq(st, VG_OK, "close while %s: %s after %lld ms", while_what, vg_strerror(st),
                 (long long)took);
    cr_assert_leq(took, limit + 20, "close while %s took %lld ms", while_what, (long long)took);
}
#endif

/* ---- a broker, emulated on one fake connection ---- */

emu em;

void emu_init(fb_conn *c, bool answer, bool echo)
{
    memset(&em, 0, sizeof em);
    em.c = c;
    em.answer = answer;
    em.echo = echo;
}

static int emu_find(uint64_t sid)
{
    for (int i = 0; i < em.nsubs; i++)
        if (em.sids[i] == sid)
            return i;
    return -1;
}

fb_result emu_step(int timeout_ms)
{
    vg_frame f;
    fb_result r = fb_read(em.c, &f, timeout_ms);
    if (r != FB_FRAME)
        return r;
    if (f.type == VG_FRAME_PONG) {
        em.pongs++;
        return r;
    }
    if (em.nrecs < RECS)
        fb_record(&em.recs[em.nrecs++], &f);
    int i;
    switch (f.type) {
    case VG_FRAME_SUB:
        if (em.nsubs < 32) {
            em.sids[em.nsubs] = f.sid;
            snprintf(em.topics[em.nsubs++], 64, "%.*s", (int)f.topic_len, f.topic);
        }
        if (em.answer)
            fb_send_ok(em.c, f.sid);
        break;
    case VG_FRAME_UNSUB:
        i = emu_find(f.sid);
        if (i >= 0) {
            em.sids[i] = em.sids[--em.nsubs];
            memcpy(em.topics[i], em.topics[em.nsubs], 64);
        }
        if (em.answer && i >= 0)
            fb_send_ok(em.c, f.sid);
        else if (em.answer)
            fb_send_err(em.c, VG_E_NO_SUCH_SID, "no such subscription", f.sid);
        break;
    case VG_FRAME_MSG_TYPE1:
    case VG_FRAME_MSG_TYPE2:
        em.msgs++;
        for (i = 0; em.echo && i < em.nsubs; i++) {
            if (strlen(em.topics[i]) == f.topic_len &&
                memcmp(em.topics[i], f.topic, f.topic_len) == 0) {
                fb_send_msg_bytes(em.c, f.type, f.topic, f.topic_len, f.payload, f.payload_len);
                break;
            }
        }
        break;
    default: break;
    }
    return FB_FRAME;
}

void emu_until(bool (*pred)(void *), void *arg, int timeout_ms, const char *what)
{
    int64_t deadline = fb_now() + timeout_ms;
    while (!pred(arg)) {
        int left = (int)(deadline - fb_now());
        cr_assert(left > 0, "fake broker, connection #%d: %d ms waiting for %s", em.c->index,
                  timeout_ms, what);
        fb_result r = emu_step(left < 20 ? left : 20);
        cr_assert(r == FB_FRAME || r == FB_TIMEOUT,
                  "fake broker, connection #%d: %s while waiting for %s", em.c->index,
                  fb_result_name(r), what);
    }
}

static bool pongs_at_least(void *arg) { return em.pongs >= *(unsigned *)arg; }

void emu_barrier(void)
{
    unsigned want = em.pongs + 1;
    fb_send_ping(em.c);
    emu_until(pongs_at_least, &want, fb_ms(5000), "the PONG of a barrier PING");
}

/* Serves until n frames of type t for sid have been read. */
typedef struct {
    vg_frame_type type;
    uint64_t sid;
    int n;
} frame_want;

static bool saw_frames(void *arg)
{
    const frame_want *w = arg;
    return emu_count(w->type, w->sid) >= w->n;
}

void emu_until_frame(vg_frame_type t, uint64_t sid)
{
    frame_want w = {t, sid, 1};
    char what[64];
    snprintf(what, sizeof what, "%s for sid %llu", vg_frame_type_name(t), (unsigned long long)sid);
    emu_until(saw_frames, &w, fb_ms(5000), what);
}

bool saw_payload(void *arg)
{
    return em.nrecs > 0 && vg_frame_is_msg(em.recs[em.nrecs - 1].type) &&
           strcmp(em.recs[em.nrecs - 1].payload, (const char *)arg) == 0;
}

bool fake_read_msgs(void *arg) { return em.msgs >= *(unsigned *)arg; }

const char *emu_seq(char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < em.nrecs && o + 1 < cap; i++) {
        char one[160];
        int n = snprintf(buf + o, cap - o, "%s%s", i ? " | " : "", fb_rec_str(&em.recs[i], one, sizeof one));
        if (n < 0)
            break;
        o += (size_t)n;
    }
    return buf;
}

int emu_count(vg_frame_type t, uint64_t sid)
{
    int n = 0;
    for (int i = 0; i < em.nrecs; i++)
        n += em.recs[i].type == t && em.recs[i].sid == sid;
    return n;
}

/* ---- the suites ---- */

void client_setup(void)
{
    fb_log_start();
    /* VIGIL_TEST_DEBUG=1 shows the client's debug lines in the output. */
    vg_log_set_level(getenv("VIGIL_TEST_DEBUG") ? VG_LOG_DEBUG : VG_LOG_INFO);
}

void client_teardown(void) { fb_log_stop(); }
