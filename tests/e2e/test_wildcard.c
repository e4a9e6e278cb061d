/* Wildcard subscriptions seen from the wire (raw frames against a real
 * broker): '*' and '>' as in NATS, each message once per connection however
 * many of its subscriptions match, POS frames announcing a pattern's
 * topics, and a pattern's resume after a reconnect covering topics that
 * appeared, or stayed silent, while the subscriber was away. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "frame.h"
#include "harness.h"
#include "proto.h"

#define WAIT h_ms(10000)

/* A version-2 CONNECT on r and its INFO. */
static h_raw v2_connect_on(h_raw r, uint64_t *epoch)
{
    vg_buf b = {0};
    cr_assert_eq(vg_frame_put_connect2(&b, 2, "wildcard-test", NULL, 0, 1), VG_OK);
    h_raw_send_buf(&r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(&r, &f, WAIT), "no INFO after a version-2 CONNECT");
    cr_assert_eq(f.type, VG_FRAME_INFO);
    if (epoch != NULL)
        *epoch = f.epoch;
    return r;
}

static h_raw v2_connect(int port, uint64_t *epoch)
{
    return v2_connect_on(h_raw_connect(port), epoch);
}

static void send_sub(h_raw *r, int version, uint64_t sid, const char *subject,
                     vg_sub_start start, uint64_t epoch)
{
    vg_buf b = {0};
    if (version == 1)
        cr_assert_eq(vg_frame_put_sub(&b, sid, subject, strlen(subject)), VG_OK);
    else
        cr_assert_eq(vg_frame_put_sub2(&b, sid, subject, strlen(subject), start, epoch, 0),
                     VG_OK);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
}

/* Publishes "topic:i" on each topic of the NULL-terminated list, then
 * waits for the PONG that proves they are in. */
static void publish(h_raw *r, const char *const topics[], int i)
{
    vg_buf b = {0};
    char payload[128];
    for (size_t k = 0; topics[k] != NULL; k++) {
        int len = snprintf(payload, sizeof payload, "%s:%d", topics[k], i);
        cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, topics[k], strlen(topics[k]),
                                      payload, (size_t)len),
                     VG_OK);
    }
    vg_frame_put_ping(&b);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    vg_frame f;
    do
        cr_assert(h_raw_read(r, &f, WAIT), "no PONG after publishing");
    while (f.type != VG_FRAME_PONG);
}

/* What a subscriber read until its PING's PONG: the MSG payloads joined by
 * spaces, and the POS/GAP/OK frames in the same way ("POS topic next"). */
typedef struct {
    char msgs[4096];
    char ctl[4096];
    int nmsgs;
} seen;

static void append(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(dst);
    snprintf(dst + n, cap - n, "%s%s", n > 0 ? " " : "", s);
}

static void note(seen *s, const vg_frame *f)
{
    char one[256];
    if (vg_frame_is_msg(f->type)) {
        s->nmsgs++;
        snprintf(one, sizeof one, "%.*s", (int)f->payload_len, (const char *)f->payload);
        append(s->msgs, sizeof s->msgs, one);
        return;
    }
    if (f->type == VG_FRAME_POS)
        snprintf(one, sizeof one, "POS:%.*s:%llu", (int)f->topic_len, f->topic,
                 (unsigned long long)f->next);
    else if (f->type == VG_FRAME_GAP)
        snprintf(one, sizeof one, "GAP:%.*s:%llu-%llu", (int)f->topic_len, f->topic,
                 (unsigned long long)f->from, (unsigned long long)f->to);
    else if (f->type == VG_FRAME_OK)
        snprintf(one, sizeof one, "OK:%llu", (unsigned long long)f->sid);
    else if (f->type == VG_FRAME_ERR)
        snprintf(one, sizeof one, "ERR:%llu:%llu", (unsigned long long)f->sid,
                 (unsigned long long)f->code);
    else
        return;
    append(s->ctl, sizeof s->ctl, one);
}

/* Control frames until the PONG of a PING sent now (a PONG does not wait
 * for deliveries: only for what the broker answers on this connection). */
static seen read_until_pong(h_raw *r)
{
    vg_buf b = {0};
    vg_frame_put_ping(&b);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    seen s = {{0}, {0}, 0};
    vg_frame f;
    for (;;) {
        cr_assert(h_raw_read(r, &f, WAIT), "no PONG; so far: %s | %s", s.ctl, s.msgs);
        if (f.type == VG_FRAME_PONG)
            return s;
        note(&s, &f);
    }
}

/* Publishes "topic:end#N" on each of topics (NULL-terminated; N new at
 * each call), then reads until sub has every one of them: each topic's
 * messages arrive in order, so whatever was published on them before has
 * arrived. End markers of earlier calls (a redelivery) are passed over. */
static void read_until_ends(h_raw *pub, h_raw *sub, const char *const topics[], seen *s)
{
    static int round;
    char mine[32];
    int mine_len = snprintf(mine, sizeof mine, ":end#%d", ++round);
    vg_buf b = {0};
    char payload[128];
    size_t want = 0;
    for (; topics[want] != NULL; want++) {
        int len = snprintf(payload, sizeof payload, "%s%s", topics[want], mine);
        vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, topics[want], strlen(topics[want]), payload,
                         (size_t)len);
    }
    h_raw_send_buf(pub, &b);
    vg_buf_free(&b);
    for (size_t ends = 0; ends < want;) {
        vg_frame f;
        cr_assert(h_raw_read(sub, &f, WAIT), "waiting for %zu end markers, %zu seen: %s | %s",
                  want, ends, s->ctl, s->msgs);
        if (vg_frame_is_msg(f.type) && f.payload_len > (uint32_t)mine_len &&
            memcmp(f.payload + f.payload_len - mine_len, mine, (size_t)mine_len) == 0) {
            ends++;
            continue;
        }
        if (vg_frame_is_msg(f.type) && memmem(f.payload, f.payload_len, ":end#", 5) != NULL)
            continue; /* an earlier call's */
        note(s, &f);
    }
}

static h_raw v1_connect(int port)
{
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r);
    return r;
}

/* Both versions: '*' takes exactly one token, '>' one or more; a literal
 * and two patterns matching one topic deliver it once. */
static void matching_rules(int version)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_raw sub = version == 1 ? v1_connect(port) : v2_connect(port, NULL);
    send_sub(&sub, version, 1, "orders.*", VG_SUB_NEW, 0);
    send_sub(&sub, version, 2, "orders.>", VG_SUB_NEW, 0);
    send_sub(&sub, version, 3, "orders.eu", VG_SUB_NEW, 0);
    send_sub(&sub, version, 4, "*.eu.paris", VG_SUB_NEW, 0);
    seen s = read_until_pong(&sub);
    cr_assert_eq(h_count(s.ctl, "OK:"), 4, "%s", s.ctl);
    h_raw pub = v1_connect(port);
    static const char *const topics[] = {"orders.eu", "orders.eu.paris", "orders", "orders.us",
                                         "shipping.eu.paris", "shipping.eu", "ordersx.eu",
                                         NULL};
    static const char *const covered[] = {"orders.eu", "orders.eu.paris", "orders.us",
                                          "shipping.eu.paris", NULL};
    static const char *const still[] = {"orders.eu", "orders.us", NULL};
    publish(&pub, topics, 1);
    s = (seen){{0}, {0}, 0};
    read_until_ends(&pub, &sub, covered, &s);
    for (size_t k = 0; covered[k] != NULL; k++) {
        char want[64];
        snprintf(want, sizeof want, "%s:1", covered[k]);
        cr_assert_eq(h_count(s.msgs, want), 1, "version %d: %s", version, s.msgs);
    }
    cr_assert_eq(h_count(s.msgs, ":"), 4, "version %d: %s", version, s.msgs);
    /* Unsubscribing one of the overlapping patterns changes nothing for
     * topics another still covers; the last one ends them. */
    vg_buf u = {0};
    vg_frame_put_unsub(&u, 2);
    vg_frame_put_unsub(&u, 4);
    h_raw_send_buf(&sub, &u);
    vg_buf_free(&u);
    s = read_until_pong(&sub); /* their OKs: the UNSUBs are done */
    cr_assert_eq(h_count(s.ctl, "OK:"), 2, "%s", s.ctl);
    publish(&pub, topics, 2);
    s = (seen){{0}, {0}, 0};
    read_until_ends(&pub, &sub, still, &s);
    cr_assert(h_count(s.msgs, "orders.eu:2") == 1 && h_count(s.msgs, "orders.us:2") == 1,
              "version %d: %s", version, s.msgs);
    cr_assert_eq(h_count(s.msgs, "paris"), 0, "version %d: %s", version, s.msgs);
    h_raw_close(&pub);
    h_raw_close(&sub);
    h_free(b);
}

Test(wildcard, matching_rules_version_1) { matching_rules(1); }

Test(wildcard, matching_rules_version_2) { matching_rules(2); }

Test(wildcard, publishing_to_a_pattern_is_refused)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_raw pub = v1_connect(port);
    vg_buf m = {0};
    vg_frame_put_msg(&m, VG_FRAME_MSG_TYPE1, "orders.*", 8, "x", 1);
    h_raw_send_buf(&pub, &m);
    vg_buf_free(&m);
    h_raw_expect_fatal(&pub, VG_E_BAD_TOPIC, WAIT);
    h_raw_close(&pub);
    h_free(b);
}

/* A pattern's topics are announced by POS before their first message: the
 * existing ones before the SUB's OK (from where NEW starts), a new one
 * when it appears, from 1. */
Test(wildcard, pos_frames_announce_a_patterns_topics)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_raw pub = v1_connect(port);
    static const char *const before[] = {"jobs.a", "jobs.b", "other", NULL};
    publish(&pub, before, 1);
    publish(&pub, before, 2);
    h_raw sub = v2_connect(port, NULL);
    send_sub(&sub, 2, 7, "jobs.*", VG_SUB_NEW, 0);
    seen s = read_until_pong(&sub);
    cr_assert(strstr(s.ctl, "POS:jobs.a:3") && strstr(s.ctl, "POS:jobs.b:3"), "%s", s.ctl);
    cr_assert(strstr(s.ctl, "other") == NULL, "%s", s.ctl);
    cr_assert(strstr(s.ctl, "OK:7") > strstr(s.ctl, "POS:jobs.a") &&
                  strstr(s.ctl, "OK:7") > strstr(s.ctl, "POS:jobs.b"),
              "POS after OK: %s", s.ctl);
    cr_assert_str_eq(s.msgs, "");
    static const char *const after[] = {"jobs.a", "jobs.c", "other", NULL};
    static const char *const ends[] = {"jobs.a", "jobs.c", NULL};
    publish(&pub, after, 3);
    s = (seen){{0}, {0}, 0};
    read_until_ends(&pub, &sub, ends, &s);
    cr_assert_str_eq(s.ctl, "POS:jobs.c:1", "%s", s.ctl);
    cr_assert(h_count(s.msgs, "jobs.a:3") == 1 && h_count(s.msgs, "jobs.c:3") == 1 &&
                  h_count(s.msgs, ":") == 2,
              "%s", s.msgs);
    h_raw_close(&pub);
    h_raw_close(&sub);
    h_free(b);
}

/* The resume of a pattern: positions for the topics it knew (one of them
 * silent until now), and everything of a topic that appeared meanwhile. */
Test(wildcard, a_pattern_resumes_across_topics_that_appeared_while_away)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_raw pub = v1_connect(port);
    static const char *const known[] = {"jobs.a", "jobs.quiet", NULL};
    publish(&pub, known, 1);
    uint64_t epoch;
    h_raw sub = v2_connect(port, &epoch);
    send_sub(&sub, 2, 7, "jobs.>", VG_SUB_NEW, 0);
    seen s = read_until_pong(&sub);
    cr_assert(strstr(s.ctl, "POS:jobs.a:2") && strstr(s.ctl, "POS:jobs.quiet:2"), "%s", s.ctl);
    static const char *const a[] = {"jobs.a", NULL};
    publish(&pub, a, 2);
    s = (seen){{0}, {0}, 0};
    read_until_ends(&pub, &sub, a, &s); /* jobs.a 2, and the marker, 3 */
    cr_assert_str_eq(s.msgs, "jobs.a:2");
    h_raw_close(&sub); /* it had jobs.a up to 3 (the marker), jobs.quiet nothing after 1 */

    static const char *const away[] = {"jobs.a", "jobs.quiet", "jobs.new.x", "other", NULL};
    publish(&pub, away, 3);
    publish(&pub, away, 4);

    sub = v2_connect(port, NULL);
    vg_buf r = {0};
    vg_frame_put_pos(&r, 7, "jobs.a", 6, epoch, 4);
    vg_frame_put_pos(&r, 7, "jobs.quiet", 10, epoch, 2);
    h_raw_send_buf(&sub, &r);
    vg_buf_free(&r);
    send_sub(&sub, 2, 7, "jobs.>", VG_SUB_SEQ, epoch);
    static const char *const ends[] = {"jobs.a", "jobs.quiet", "jobs.new.x", NULL};
    s = (seen){{0}, {0}, 0};
    read_until_ends(&pub, &sub, ends, &s);
    for (int i = 3; i <= 4; i++) {
        char want[64];
        snprintf(want, sizeof want, "jobs.a:%d", i);
        cr_assert_eq(h_count(s.msgs, want), 1, "%s missing or twice: %s (%s)", want, s.msgs,
                     s.ctl);
        snprintf(want, sizeof want, "jobs.quiet:%d", i);
        cr_assert_eq(h_count(s.msgs, want), 1, "%s missing or twice: %s", want, s.msgs);
        snprintf(want, sizeof want, "jobs.new.x:%d", i);
        cr_assert_eq(h_count(s.msgs, want), 1, "%s missing or twice: %s", want, s.msgs);
    }
    cr_assert_eq(h_count(s.msgs, ":"), 6, "more than the six missed: %s", s.msgs);
    cr_assert(strstr(s.ctl, "POS:jobs.new.x:1") != NULL, "%s", s.ctl);
    cr_assert(strstr(s.ctl, "GAP") == NULL, "%s", s.ctl);
    h_raw_close(&pub);
    h_raw_close(&sub);
    h_free(b);
}

/* A pattern resuming at a topic whose start retention dropped is told
 * exactly what went. */
Test(wildcard, a_new_topics_dropped_start_is_a_gap)
{
    int port;
    h_proc *b = h_broker(&port, "--retention-bytes", "1MiB", NULL);
    uint64_t epoch;
    h_raw sub = v2_connect(port, &epoch);
    send_sub(&sub, 2, 3, "big.>", VG_SUB_NEW, 0);
    read_until_pong(&sub);
    h_raw_close(&sub);
    h_raw pub = v1_connect(port);
    /* 1 MiB of retention: 3,000 messages of 1 KiB push the first out. */
    char payload[1024];
    memset(payload, 'x', sizeof payload);
    vg_buf m = {0};
    for (int i = 0; i < 3000; i++)
        vg_frame_put_msg(&m, VG_FRAME_MSG_TYPE1, "big.one", 7, payload, sizeof payload);
    vg_frame_put_ping(&m);
    h_raw_send_buf(&pub, &m);
    vg_buf_free(&m);
    vg_frame f;
    do
        cr_assert(h_raw_read(&pub, &f, WAIT), "no PONG after publishing");
    while (f.type != VG_FRAME_PONG);
    sub = v2_connect(port, NULL);
    send_sub(&sub, 2, 3, "big.>", VG_SUB_SEQ, epoch);
    static const char *const ends[] = {"big.one", NULL};
    seen s = {{0}, {0}, 0};
    read_until_ends(&pub, &sub, ends, &s);
    cr_assert(strstr(s.ctl, "POS:big.one:1 GAP:big.one:1-") != NULL, "%s", s.ctl);
    unsigned long long to = 0;
    sscanf(strstr(s.ctl, "GAP:big.one:1-") + strlen("GAP:big.one:1-"), "%llu", &to);
    cr_assert_eq((unsigned long long)s.nmsgs + to, 3000, "gap to %llu, %d read", to, s.nmsgs);
    h_raw_close(&pub);
    h_raw_close(&sub);
    h_free(b);
}

/* The broker's own topics: only a pattern that names $SYS sees them. */
Test(wildcard, sys_topics_need_a_pattern_that_names_them)
{
    int port;
    h_proc *b = h_broker(&port, "--stats-interval", "0.1", NULL);
    h_raw sub = v1_connect(port);
    send_sub(&sub, 1, 1, ">", VG_SUB_NEW, 0);
    send_sub(&sub, 1, 2, "$SYS.>", VG_SUB_NEW, 0);
    vg_frame f;
    int stats = 0;
    int64_t end = h_now_ms() + WAIT;
    while (stats < 2 && h_now_ms() < end) {
        cr_assert(h_raw_read(&sub, &f, WAIT), "no $SYS.stats on $SYS.>");
        if (vg_frame_is_msg(f.type)) {
            cr_assert(f.topic_len == 10 && memcmp(f.topic, "$SYS.stats", 10) == 0);
            stats++;
        }
    }
    cr_assert_eq(stats, 2, "waiting for two $SYS.stats messages");
    vg_buf u = {0};
    vg_frame_put_unsub(&u, 2);
    h_raw_send_buf(&sub, &u);
    vg_buf_free(&u);
    seen s = read_until_pong(&sub); /* the UNSUB's OK and what came before it */
    /* '>' alone must not deliver $SYS.stats: while a literal subscriber on
     * another connection gets three more, the first gets none. */
    h_raw lit = v1_connect(port);
    send_sub(&lit, 1, 1, "$SYS.stats", VG_SUB_NEW, 0);
    for (int got = 0; got < 3;) {
        cr_assert(h_raw_read(&lit, &f, WAIT), "waiting for $SYS.stats on a literal SUB");
        got += vg_frame_is_msg(f.type);
    }
    s = read_until_pong(&sub);
    cr_assert_str_eq(s.msgs, "", "'>' delivered $SYS topics: %s", s.msgs);
    h_raw_close(&lit);
    h_raw_close(&sub);
    h_free(b);
}

/* A durable pattern (stored): kill -9 of the broker, and the durable comes
 * back after its last acknowledgement in each topic, and from the start in
 * a topic that appeared while it was away. */
Test(wildcard, a_durable_pattern_survives_kill_9)
{
    char dir[] = "/tmp/vigil-wildcard-XXXXXX";
    cr_assert(mkdtemp(dir) != NULL);
    int port;
    h_proc *b = h_broker(&port, "--data-dir", dir, NULL);
    h_raw pub = v1_connect(port);
    static const char *const a[] = {"jobs.a", NULL};
    publish(&pub, a, 0); /* jobs.a exists before the durable: it starts after it */
    h_raw sub = v2_connect(port, NULL);
    vg_buf m = {0};
    vg_frame_put_sub_durable(&m, 5, "jobs.>", 6, VG_SUB_NEW, 0, 0, "billing", 7);
    h_raw_send_buf(&sub, &m);
    seen s = read_until_pong(&sub);
    cr_assert(strstr(s.ctl, "POS:jobs.a:2 OK:5") != NULL, "%s", s.ctl);
    publish(&pub, a, 1);
    publish(&pub, a, 2);
    s = (seen){{0}, {0}, 0};
    read_until_ends(&pub, &sub, a, &s); /* seqs 2, 3, and the marker 4 */
    cr_assert_str_eq(s.msgs, "jobs.a:1 jobs.a:2");
    vg_frame_put_ack_topic(&m, 5, 2, "jobs.a", 6); /* processed jobs.a:1 only */
    h_raw_send_buf(&sub, &m);
    read_until_pong(&sub);
    h_raw_close(&sub);
    static const char *const away[] = {"jobs.a", "jobs.b", NULL};
    publish(&pub, away, 3);
    h_raw_close(&pub);
    h_signal(b, SIGKILL);
    cr_assert(h_wait_exit(b, WAIT), "the broker outlived SIGKILL");
    h_free(b);

    b = h_broker_at(port, "--data-dir", dir, NULL);
    pub = v1_connect(port);
    sub = v2_connect(port, NULL);
    vg_frame_put_sub_durable(&m, 5, "jobs.>", 6, VG_SUB_NEW, 0, 0, "billing", 7);
    h_raw_send_buf(&sub, &m);
    vg_buf_free(&m);
    s = (seen){{0}, {0}, 0};
    read_until_ends(&pub, &sub, away, &s);
    /* jobs.a from 3 (2, its first end marker, 3), all of jobs.b */
    cr_assert(h_count(s.msgs, "jobs.a:2") == 1 && h_count(s.msgs, "jobs.a:3") == 1 &&
                  h_count(s.msgs, "jobs.b:3") == 1 && h_count(s.msgs, "jobs.a:1") == 0 &&
                  s.nmsgs == 3,
              "after its ACK of 2 in jobs.a, and all of jobs.b: %s (%s)", s.msgs, s.ctl);
    cr_assert(strstr(s.ctl, "POS:jobs.a:3") && strstr(s.ctl, "POS:jobs.b:1"), "%s", s.ctl);
    h_raw_close(&pub);
    h_raw_close(&sub);
    h_free(b);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The payload of message seq on topic many.k: its name and number, then
 * filler to a length that varies from 12 bytes to over 8 KiB. */
static size_t many_payload(char *buf, size_t cap, int k, uint64_t seq)
{
    size_t len = 12 + (size_t)((k * 7919 + (int)seq * 104729) % 9000);
    if (len > cap)
        len = cap;
    int head = snprintf(buf, cap, "many.%d:%llu:", k, (unsigned long long)seq);
    for (size_t i = (size_t)head; i < len; i++)
        buf[i] = (char)('a' + (k + (int)i) % 26);
    return len < (size_t)head ? (size_t)head : len;
}

/* One connection reading 300 topics through a pattern, from a socket with
 * a small receive buffer: the broker writes several topics' records in one
 * sendmsg and the kernel takes part of it, cut anywhere. Every message
 * still arrives whole, once, and in order on its topic. */
Test(wildcard, a_slow_reader_of_many_topics_gets_every_message_whole_and_in_order)
{
    enum { TOPICS = 300, ROUNDS = 20 };
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_raw sub = v2_connect_on(h_raw_connect_small(port, 4096), NULL);
    send_sub(&sub, 2, 1, "many.>", VG_SUB_NEW, 0);
    vg_frame f;
    cr_assert(h_raw_read(&sub, &f, WAIT), "waiting for the OK of many.>");
    cr_assert_eq(f.type, VG_FRAME_OK, "expected OK, got type %d", f.type);
    h_raw pub = v2_connect(port, NULL);
    static char payload[9100];
    char topic[32];
    for (int round = 1; round <= ROUNDS; round++) {
        vg_buf m = {0};
        for (int k = 0; k < TOPICS; k++) {
            int tl = snprintf(topic, sizeof topic, "many.%d", k);
            size_t pl = many_payload(payload, sizeof payload, k, (uint64_t)round);
            cr_assert_eq(vg_frame_put_msg(&m, VG_FRAME_MSG_TYPE1, topic, (size_t)tl, payload, pl),
                         VG_OK);
        }
        h_raw_send_buf(&pub, &m);
        vg_buf_free(&m);
    }
    static uint64_t next[TOPICS];
    static char want[9100];
    for (int k = 0; k < TOPICS; k++)
        next[k] = 1;
    int got = 0;
    while (got < TOPICS * ROUNDS) {
        cr_assert(h_raw_read(&sub, &f, WAIT), "waiting for message %d of %d", got + 1,
                  TOPICS * ROUNDS);
        if (f.type == VG_FRAME_POS)
            continue; /* each new topic announced before its first record */
        cr_assert(vg_frame_is_msg(f.type), "frame type %d after %d messages", f.type, got);
        int k = -1;
        cr_assert(f.topic_len > 5 && sscanf((const char *)f.topic + 5, "%d", &k) == 1 && k >= 0 &&
                      k < TOPICS,
                  "topic %.*s", (int)f.topic_len, (const char *)f.topic);
        cr_assert_eq(f.seq, next[k], "many.%d: seq %llu, expected %llu", k,
                     (unsigned long long)f.seq, (unsigned long long)next[k]);
        size_t wl = many_payload(want, sizeof want, k, f.seq);
        cr_assert(f.payload_len == wl && memcmp(f.payload, want, wl) == 0,
                  "many.%d seq %llu: %u bytes, expected %zu", k, (unsigned long long)f.seq,
                  f.payload_len, wl);
        next[k]++;
        got++;
    }
    seen s = read_until_pong(&sub);
    cr_assert_str_eq(s.msgs, "", "more than was published");
    h_raw_close(&pub);
    h_raw_close(&sub);
    h_free(b);
}

/* 100,000 subscriptions (half literal, a quarter with '*', a quarter
 * ending in '>') on four connections: held, matched, then released by
 * UNSUB on two connections and by closing the other two; the broker's
 * memory comes back near where it was. */
Test(wildcard, a_hundred_thousand_subscriptions_held_and_released, .timeout = 120)
{
    enum { CONNS = 4 };
    int port;
    h_proc *b = h_broker(&port, "--max-subs", "25000", NULL);
    /* A sanitized broker is 5-20 times slower: a tenth of them there. */
    const int PER = h_sanitized(b) ? 2500 : 25000;
    h_raw pub = v1_connect(port);
    h_raw subs[CONNS];
    for (int k = 0; k < CONNS; k++)
        subs[k] = v1_connect(port);
    static const char *const warm[] = {"warm.up", NULL};
    publish(&pub, warm, 0); /* the broker's baseline with its clients connected */
    h_usage base = h_usage_of(b);
    char subject[64];
    for (int k = 0; k < CONNS; k++) {
        vg_buf m = {0};
        for (int i = 0; i < PER; i++) {
            int n = i % 4;
            if (n < 2) /* bench.<k>.<i>: literal */
                snprintf(subject, sizeof subject, "bench.%d.%d", k, i);
            else if (n == 2)
                snprintf(subject, sizeof subject, "bench.%d.*.%d", k, i);
            else
                snprintf(subject, sizeof subject, "deep.%d.%d.>", k, i);
            cr_assert_eq(vg_frame_put_sub(&m, (uint64_t)i + 1, subject, strlen(subject)), VG_OK);
        }
        h_raw_send_buf(&subs[k], &m);
        vg_buf_free(&m);
    }
    for (int k = 0; k < CONNS; k++) {
        int oks = 0;
        vg_frame f;
        while (oks < PER) {
            cr_assert(h_raw_read(&subs[k], &f, WAIT), "connection %d: %d of %d OKs", k, oks, PER);
            cr_assert_eq(f.type, VG_FRAME_OK, "connection %d: frame type %d code %llu", k, f.type,
                         (unsigned long long)f.code);
            oks++;
        }
    }
    h_usage held = h_usage_of(b);
    if (!h_sanitized(b))
        cr_assert_gt(held.rss_kb, base.rss_kb + 4096, "100,000 subscriptions took only %ld kB",
                     held.rss_kb - base.rss_kb);
    /* Matching with them all there: a literal, a '*' and a '>' subscription
     * of connection 1 each match once; connection 2 gets nothing. */
    static const char *const probe[] = {"bench.1.8", "bench.1.x.10", "deep.1.11.a.b", NULL};
    publish(&pub, probe, 1);
    vg_frame f;
    char got[256] = "";
    for (int i = 0; i < 3; i++) {
        cr_assert(h_raw_read(&subs[1], &f, WAIT), "connection 1 has %s so far", got);
        cr_assert(vg_frame_is_msg(f.type));
        append(got, sizeof got, (const char *)f.payload);
    }
    cr_assert(strstr(got, "bench.1.8:1") && strstr(got, "bench.1.x.10:1") &&
                  strstr(got, "deep.1.11.a.b:1"),
              "%s", got);
    seen s = read_until_pong(&subs[2]);
    cr_assert_str_eq(s.msgs, "");
    /* Released: UNSUB on 0 and 1, closed 2 and 3. */
    for (int k = 0; k < 2; k++) {
        vg_buf m = {0};
        for (int i = 0; i < PER; i++)
            vg_frame_put_unsub(&m, (uint64_t)i + 1);
        h_raw_send_buf(&subs[k], &m);
        vg_buf_free(&m);
        for (int oks = 0; oks < PER;) {
            cr_assert(h_raw_read(&subs[k], &f, WAIT), "connection %d: %d UNSUB OKs", k, oks);
            oks += f.type == VG_FRAME_OK;
        }
    }
    h_raw_close(&subs[2]);
    h_raw_close(&subs[3]);
    publish(&pub, probe, 2); /* the publisher's cache lets go of what it held */
    h_usage now = h_usage_of(b);
    /* The broker gives freed memory back once it has been quiet for 10 s
     * after a busy spell (broker/memory.h). */
    int64_t until = h_now_ms() + h_ms(25000);
    while (!h_sanitized(b) && now.rss_kb > base.rss_kb + 4096 && h_now_ms() < until) {
        h_raw_read(&pub, &f, 100); /* nothing comes: a bounded pause between looks */
        now = h_usage_of(b);
    }
    if (!h_sanitized(b))
        cr_assert_leq(now.rss_kb, base.rss_kb + 4096,
                      "after release: RSS %ld kB, baseline %ld kB (%ld kB with them)", now.rss_kb,
                      base.rss_kb, held.rss_kb);
    cr_log_info("RSS: baseline %ld kB, 100,000 subscriptions %ld kB, released %ld kB",
                base.rss_kb, held.rss_kb, now.rss_kb);
    s = read_until_pong(&subs[0]);
    cr_assert_str_eq(s.msgs, "", "an unsubscribed connection got: %s", s.msgs);
    h_raw_close(&subs[0]);
    h_raw_close(&subs[1]);
    h_raw_close(&pub);
    h_free(b);
}
