/* libFuzzer target: the client library's handling of everything a broker can
 * send, through the real library, its I/O thread and real sockets; no mocks.
 *
 * Once per process this harness listens on 127.0.0.1 (an ephemeral port) and
 * plays the broker. Per input it starts a vg_client (heartbeats off, so that
 * nothing happens that the input did not cause; max_reconnects 0, so that it
 * gives up when the connection ends; a small outbox), subscribes and maybe
 * publishes and unsubscribes, accepts the connection, reads its CONNECT and
 * then sends the input:
 *
 *   byte 0     bits 0-2: not all zero: a valid INFO goes first, so most
 *                        inputs reach the post-handshake states; all zero:
 *                        the rest is the first thing the client reads
 *              bit 3:    a second subscription, sid 2, on TOPIC_B ...
 *              bit 4:    ... or on TOPIC_A too (two sids, one topic)
 *              bit 5:    one message published on TOPIC_A before the handshake
 *              bit 6:    sid 1 unsubscribed before the handshake
 *   byte 1     bits 0-1: the INFO's max_payload: 1 MiB, 64, 0 or 1 GiB
 *              bit 2:    on_msg unsubscribes sid 1 at its first TOPIC_A message
 *              bit 3:    on_msg publishes each message back on ECHO_TOPIC
 *              bit 4:    the rest follows INFO at once, instead of after the
 *                        client has written what it had queued
 *              bit 5:    sid 1 is a durable subscription (DURABLE_NAME), its
 *                        ACKs sent after each read (ack_delay_ms 0)
 *   the rest   sent as is (any frames: INFO, OK/ERR with sids it used and did
 *              not, MSG on subscribed and other topics, PING floods, garbage,
 *              oversized lengths), then shutdown(SHUT_WR)
 *
 * and reads what the client writes until it closes, checking each frame:
 * well-formed, one a client may send, in the shape protocol version 2 asks
 * of a client (CONNECT and SUB in their version-2 form, MSG and UNSUB in
 * their only client form), CONNECT first and only then, nothing but PONG
 * before a handshake was possible, no more PONGs than PINGs sent,
 * and SUB, UNSUB and MSG exactly in the order the application issued them;
 * a durable sid 1 in the seven-element SUB with its name, and its ACKs
 * after its SUB, each above the last and at most the highest seq on its
 * topic whose on_msg has returned.
 *
 * A model of the client (model()) walks the input as the client must read
 * it: where it stops and why (a MSG without a seq, an INFO of another
 * version among the reasons; INFO version 1 closes it with "version"), the
 * reason on_closed must give, the PINGs it answers, and, with the
 * position client_resume.c (itself unit-tested) keeps for each topic,
 * which messages are duplicates and which gaps are news. Callbacks are
 * checked as they come against client.h's promises (on_msg only for a
 * message sent, in order, with its seq, on a topic subscribed, not
 * unsubscribed and not refused, once per sid on it: copies (vg_msg.copy
 * above 0) right after the first, for a sid on the topic; POS frames and
 * queue members' 5-element MSGs for sids that are neither a pattern nor a
 * queue member change nothing; on_gap only for our topics, with a range
 * its reason allows; on_sub_error only for our topics, with a code that
 * answers a SUB and a printable reason; nothing after on_closed; all on the
 * one I/O thread). When the sequence is deterministic (INFO first and the
 * client's queue written before the rest), the callbacks must be exactly
 * the model's. Then vg_client_close must return VG_OK within
 * DEADLINE_MS (a hang is a finding: abort()), on_closed must have been
 * called once, the stats must add up (published = confirmed + unconfirmed +
 * pending + unsent, nothing pending after the close) and vg_client_destroy
 * must free everything (LeakSanitizer).
 *
 * Any single allocation above 128 MiB is a finding (-malloc_limit_mb, set by
 * the target): a broker must not make the client reserve more than its own
 * 64 MiB limit. The library logs an error line per input ("closed"): unless
 * VIGIL_FUZZ_LOG is set, the target asks libFuzzer for -close_fd_mask=2 and
 * writes its own reports to a copy of stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "client.h"
#include "client_resume.h"
#include "clock.h"
#include "decoder.h"
#include "frame.h"
#include "log.h"
#include "proto.h"

#define DEADLINE_MS 3000
#define MAX_BUFFER 4096
#define CLIENT_NAME "fuzz"
#define TOPIC_A "news"
#define TOPIC_B "a.b"
#define ECHO_TOPIC "echo"
#define DURABLE_NAME "fuzz-durable"
#define CLIENT_MAX_PAYLOAD (64u << 20) /* vg_client_opts_defaults' cap */
#define HARNESS_EPOCH 0x3c6ef372fe94f82bull /* the harness's INFO's */

static const uint64_t info_max_payloads[4] = {VG_DEFAULT_MAX_PAYLOAD, 64, 0, 1u << 30};

static int listen_fd = -1;
static char server[64];
static FILE *report; /* stderr, or a copy of it when libFuzzer closes stderr */
static pthread_t harness_thread;

/* A finding or a broken harness: libFuzzer reports the abort with the input. */
static __attribute__((noreturn)) void die(const char *what)
{
    fprintf(report, "fuzz_client: %s\n", what);
    fflush(report);
    abort();
}

static __attribute__((noreturn)) void die_errno(const char *what)
{
    fprintf(report, "fuzz_client: %s: %s\n", what, strerror(errno));
    fflush(report);
    abort();
}

static void check(bool ok, const char *what)
{
    if (!ok)
        die(what);
}

static bool same(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool is_str(const void *p, size_t n, const char *s) { return same(p, n, s, strlen(s)); }

/* ---- the input and the model of how the client reads it ---- */

typedef struct {
    size_t end;         /* offset after the frame in the rest of the input */
    vg_frame f;         /* parsed */
    bool processed;     /* the client acts on it */
    bool deliver;       /* exact mode: on_msg gets it */
    bool refuse;        /* exact mode: on_sub_error for it */
    bool gap;           /* exact mode: on_gap for it (before its on_msg, if a MSG) */
    uint64_t max_payload; /* the client's limit on its own publishes when it acts */
} in_frame;

typedef struct {
    const char *topic;
    bool leaving; /* the application unsubscribed */
    bool answered;
    bool refused;
} model_sub;

typedef struct {
    in_frame *v;
    size_t n;
    size_t hs_end;      /* the rest's bytes after which a handshake is possible
                           (0: the harness's INFO; SIZE_MAX: never) */
    size_t pings;       /* PINGs the client answers */
    size_t pongs;       /* PONGs it reads after the handshake */
    size_t gaps;        /* exact mode: on_gap calls */
    bool clean;         /* it reads the whole input, then EOF */
    const char *reason; /* what on_closed must say */
} model_out;

/* One session's settings, from the first two bytes. */
typedef struct {
    bool info_first, two_subs, same_topic, publish, unsub_early;
    uint64_t max_payload;
    bool cb_unsub, cb_echo, no_wait, durable;
} plan;

/* An issued SUB, UNSUB or MSG, in the order the application issued them. */
typedef struct {
    vg_frame_type type;
    uint64_t sid;
    const char *topic;
    uint8_t *payload; /* owned */
    size_t payload_len;
    bool optional; /* an UNSUB that the client may rightly not send */
} issued;

typedef struct {
    plan p;
    const uint8_t *rest;
    size_t rest_len;
    model_out m;
    bool exact;
    size_t nsubs;
    const char *topics[2]; /* sid 1, sid 2 */

    /* shared with the I/O thread's callbacks */
    pthread_mutex_t mu;
    issued *log; /* mu */
    size_t nlog, caplog; /* mu */
    atomic_size_t sent; /* bytes of the rest offered to send() so far */
    _Atomic uint64_t returned_a; /* the highest seq on TOPIC_A whose on_msg returned */
    atomic_bool info_sent;

    /* callbacks only (read by the harness after vg_client_close) */
    bool have_io_thread;
    pthread_t io_thread;
    bool unsubscribed[2];
    unsigned refusals[2]; /* on_sub_error calls per sid's topic slot */
    bool cb_unsub_done;
    size_t msg_cursor, err_cursor;
    size_t deliveries, sub_errors, gaps; /* counts */
    size_t copies; /* on_msg calls for a message handed to another sid first */
    size_t *delivered, *refused_at; /* frame indices, as they came */
    unsigned closed_calls;
    char closed_reason[64];
    uint64_t accepted; /* publishes that returned VG_OK */
    vg_client *c;
} session;

static session s; /* one input at a time */

/* Where each of our topics is in its log, as the client keeps it: one
 * position per topic (TOPIC_A, TOPIC_B), placed by the connection's first
 * OK v2 for a SUB on it. */
typedef struct {
    vg_resume pos[2];
    bool started[2];
} model_positions;

static int topic_slot(const vg_frame *f)
{
    return is_str(f->topic, f->topic_len, TOPIC_A) ? 0 : is_str(f->topic, f->topic_len, TOPIC_B) ? 1 : -1;
}

static int sid_slot(uint64_t sid) { return strcmp(s.topics[sid - 1], TOPIC_A) == 0 ? 0 : 1; }

static bool model_deliverable(const model_sub *subs, size_t nsubs, const vg_frame *f);

static void model_answer(model_sub *subs, size_t nsubs, in_frame *fr, bool ok,
                         model_positions *mp)
{
    uint64_t sid = fr->f.sid;
    if (sid < 1 || sid > nsubs)
        return;
    model_sub *e = &subs[sid - 1];
    if (e->answered)
        return; /* an answer for the UNSUB, or unexpected: no callback either way */
    e->answered = true;
    e->refused = !ok;
    fr->refuse = !ok;
    int slot = sid_slot(sid);
    vg_frame on = {.topic = s.topics[sid - 1], .topic_len = (uint32_t)strlen(s.topics[sid - 1])};
    if (ok && fr->f.form == 2 && !mp->started[slot] && model_deliverable(subs, nsubs, &on)) {
        mp->started[slot] = true;
        vg_gap g;
        fr->gap = vg_resume_started(&mp->pos[slot], fr->f.epoch, fr->f.next, &g);
    }
}

static bool model_deliverable(const model_sub *subs, size_t nsubs, const vg_frame *f)
{
    for (size_t i = 0; i < nsubs; i++)
        if (!subs[i].leaving && !subs[i].refused && is_str(f->topic, f->topic_len, subs[i].topic))
            return true;
    return false;
}

static uint64_t capped(uint64_t mp) { return mp < CLIENT_MAX_PAYLOAD ? mp : CLIENT_MAX_PAYLOAD; }


/* Splits the rest into frames and walks them as client_io.c must: the limit
 * on a frame's length (4096 before the handshake, max_payload + 1057 after),
 * what ends the connection, whom each answer and message is for. */
static void model(void)
{
    model_out *m = &s.m;
    size_t cap = 16;
    m->v = calloc(cap, sizeof *m->v);
    check(m->v != NULL, "out of memory");
    m->hs_end = s.p.info_first ? 0 : SIZE_MAX;
    m->reason = "max_reconnects";
    bool handshaken = s.p.info_first;
    uint64_t limit = handshaken ? capped(s.p.max_payload) : VG_DEFAULT_MAX_PAYLOAD;
    size_t max_frame = handshaken ? vg_max_frame_for_v2(limit) : VG_HANDSHAKE_MAX_FRAME;
    model_sub subs[2] = {{.topic = s.topics[0], .leaving = s.p.unsub_early}, {.topic = s.topics[1]}};
    bool cb_unsub_done = false;
    model_positions mp;
    uint64_t epoch = handshaken ? HARNESS_EPOCH : 0; /* the connection's */
    for (int i = 0; i < 2; i++) {
        vg_resume_init(&mp.pos[i], VG_SUB_NEW, 0, 0);
        mp.started[i] = false;
        vg_gap g;
        if (handshaken)
            vg_resume_connected(&mp.pos[i], HARNESS_EPOCH, &g);
    }

    size_t off = 0;
    for (;;) {
        if (s.rest_len - off < VG_FRAME_HEADER) {
            m->clean = true; /* EOF between frames, or inside a length */
            return;
        }
        size_t len = vg_be32(s.rest + off);
        if (len == 0 || len > max_frame)
            return; /* refused as soon as the length arrives */
        if (s.rest_len - off - VG_FRAME_HEADER < len) {
            m->clean = true; /* EOF inside a frame */
            return;
        }
        if (m->n == cap) {
            cap *= 2;
            m->v = realloc(m->v, cap * sizeof *m->v);
            check(m->v != NULL, "out of memory");
        }
        in_frame *fr = &m->v[m->n];
        memset(fr, 0, sizeof *fr);
        fr->end = off + VG_FRAME_HEADER + len;
        const char *why;
        if (vg_frame_parse(s.rest + off + VG_FRAME_HEADER, len, &fr->f, &why) != VG_OK)
            return;
        m->n++;
        off = fr->end;
        vg_frame_type t = fr->f.type;
        if (!handshaken && t != VG_FRAME_INFO && t != VG_FRAME_ERR && t != VG_FRAME_PING)
            return; /* "expected INFO" */
        if (vg_frame_is_msg(t) && fr->f.form != 2 && fr->f.form != 3)
            return; /* a MSG without a seq */
        fr->processed = true;
        fr->max_payload = limit;
        int slot = topic_slot(&fr->f);
        vg_gap g;
        bool gapped = false;
        switch (t) {
        case VG_FRAME_MSG_TYPE1:
        case VG_FRAME_MSG_TYPE2:
            if (fr->f.form == 3)
                break; /* a queue member's: no sid here is one, so it is dropped */
            if (!model_deliverable(subs, s.nsubs, &fr->f))
                break;
            /* As the client: a MSG on the topic, even a duplicate, means
             * the broker reads it for us, so a later OK places nothing. */
            mp.started[slot] = true;
            fr->deliver = vg_resume_msg(&mp.pos[slot], fr->f.seq, &gapped, &g) == VG_RESUME_DELIVER;
            fr->gap = gapped;
            if (fr->deliver && s.p.cb_unsub && !cb_unsub_done &&
                is_str(fr->f.topic, fr->f.topic_len, TOPIC_A)) {
                cb_unsub_done = true;
                subs[0].leaving = true;
            }
            break;
        case VG_FRAME_POS: break; /* no sid here is a pattern: ignored */
        case VG_FRAME_PING: m->pings++; break;
        case VG_FRAME_PONG: m->pongs++; break;
        case VG_FRAME_OK: model_answer(subs, s.nsubs, fr, true, &mp); break;
        case VG_FRAME_GAP:
            if (!model_deliverable(subs, s.nsubs, &fr->f))
                break;
            if (fr->f.code == VG_GAP_EPOCH)
                fr->gap = vg_resume_connected(&mp.pos[slot], epoch, &g);
            else
                fr->gap = vg_resume_gap(&mp.pos[slot], fr->f.from, fr->f.to, &g);
            break;
        case VG_FRAME_ERR:
            if (fr->f.code == VG_E_DURABLE_TAKEN && fr->f.sid != 0) {
                /* Ends the durable sid 1 if the broker has it (its SUB is
                 * written: exact mode) and it is neither leaving nor
                 * refused; anything else ignores it. */
                if (s.p.durable && fr->f.sid == 1 && !subs[0].leaving && !subs[0].refused) {
                    subs[0].answered = subs[0].refused = true;
                    fr->refuse = true;
                }
                break;
            }
            if (vg_errcode_is_fatal(fr->f.code, fr->f.sid)) {
                uint64_t code = fr->f.code;
                if (code == VG_E_AUTH || code == VG_E_VERSION || code == VG_E_PERMISSION)
                    m->reason = vg_errcode_name(code);
                return;
            }
            model_answer(subs, s.nsubs, fr, false, &mp);
            break;
        case VG_FRAME_INFO:
            if (handshaken)
                return; /* "unexpected INFO" */
            if (fr->f.version == VG_PROTO_V1) {
                m->reason = "version"; /* a broker too old, for good */
                return;
            }
            if (fr->f.version != VG_PROTO_VERSION || fr->f.epoch == 0)
                return; /* a protocol version the client lacks, or no log */
            handshaken = true;
            m->hs_end = fr->end;
            limit = capped(fr->f.max_payload);
            max_frame = vg_max_frame_for_v2(limit);
            epoch = fr->f.epoch;
            for (int i = 0; i < 2; i++)
                vg_resume_connected(&mp.pos[i], epoch, &g);
            break;
        default: return; /* CONNECT, SUB, UNSUB: frames only clients send */
        }
    }
}

/* ---- what the application issued ---- */

/* Records a frame the client is to send; call it before the frame can be
 * written (or from the I/O thread, which writes it only later). */
static void issue(vg_frame_type type, uint64_t sid, const char *topic, const uint8_t *payload,
                  size_t payload_len, bool optional)
{
    pthread_mutex_lock(&s.mu);
    if (s.nlog == s.caplog) {
        s.caplog = s.caplog ? s.caplog * 2 : 8;
        s.log = realloc(s.log, s.caplog * sizeof *s.log);
        check(s.log != NULL, "out of memory");
    }
    issued *e = &s.log[s.nlog++];
    *e = (issued){.type = type, .sid = sid, .topic = topic, .payload_len = payload_len, .optional = optional};
    if (payload_len > 0) {
        e->payload = malloc(payload_len);
        check(e->payload != NULL, "out of memory");
        memcpy(e->payload, payload, payload_len);
    }
    pthread_mutex_unlock(&s.mu);
}

/* Forgets the last issued frame: the call that was to queue it failed. */
static void unissue(void)
{
    pthread_mutex_lock(&s.mu);
    free(s.log[--s.nlog].payload);
    pthread_mutex_unlock(&s.mu);
}

/* ---- callbacks (on the client's I/O thread) ---- */

static void callback_entered(const char *which)
{
    if (s.closed_calls > 0) {
        fprintf(report, "fuzz_client: %s after on_closed\n", which);
        die("a callback after on_closed");
    }
    pthread_t self = pthread_self();
    check(!pthread_equal(self, harness_thread), "a callback on the application's thread");
    if (!s.have_io_thread) {
        s.io_thread = self;
        s.have_io_thread = true;
    }
    check(pthread_equal(self, s.io_thread), "callbacks on two threads");
}

/* Whether a subscription to topic may still deliver, from what the
 * application did and on_sub_error said: refusals may have hit the sids
 * already unsubscribed first. */
static bool may_deliver(const char *topic, size_t len)
{
    unsigned live = 0, gone = 0, refused = 0;
    for (size_t i = 0; i < s.nsubs; i++) {
        if (!is_str(topic, len, s.topics[i]))
            continue;
        if (s.unsubscribed[i])
            gone++;
        else
            live++;
    }
    for (size_t i = 0; i < s.nsubs; i++) /* refusals are counted per topic, on its first sid */
        if (is_str(topic, len, s.topics[i])) {
            refused = s.refusals[i];
            break;
        }
    return live > (refused > gone ? refused - gone : 0);
}

static size_t record(size_t **v, size_t n, size_t index)
{
    if ((n & (n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
        *v = realloc(*v, (n ? n * 2 : 1) * sizeof **v);
        check(*v != NULL, "out of memory");
    }
    (*v)[n] = index;
    return n + 1;
}

static void on_msg(void *ud, const vg_msg *msg)
{
    (void)ud;
    callback_entered("on_msg");
    check(vg_frame_is_msg(msg->type), "on_msg with a type that is not a MSG");
    check(may_deliver(msg->topic, msg->topic_len),
          "on_msg for a topic not subscribed, unsubscribed or refused");
    check(msg->sid >= 1 && msg->sid <= s.nsubs &&
              is_str(msg->topic, msg->topic_len, s.topics[msg->sid - 1]),
          "on_msg for a sid that is not subscribed to its topic");
    if (msg->copy > 0) { /* the message just handed over, to another sid on its topic */
        check(s.deliveries > 0, "on_msg: a copy before any message");
        const in_frame *fr = &s.m.v[s.delivered[s.deliveries - 1]];
        check(fr->f.seq == msg->seq && same(fr->f.topic, fr->f.topic_len, msg->topic,
                                            msg->topic_len),
              "on_msg: a copy of another message than the last one");
        s.copies++;
        return;
    }
    size_t sent = atomic_load(&s.sent);
    size_t i = s.msg_cursor;
    for (; i < s.m.n; i++) {
        const in_frame *fr = &s.m.v[i];
        /* In exact mode only the frames the model delivers: identical
         * messages may differ in whether they are wanted. */
        if (fr->processed && (!s.exact || fr->deliver) && fr->f.type == msg->type &&
            fr->f.seq == msg->seq &&
            same(fr->f.topic, fr->f.topic_len, msg->topic, msg->topic_len) &&
            same(fr->f.payload, fr->f.payload_len, msg->payload, msg->payload_len))
            break;
    }
    check(i < s.m.n, "on_msg for a message the broker did not send (or again, or out of order)");
    check(s.m.v[i].end <= sent, "on_msg for a message not sent yet");
    s.msg_cursor = i + 1;
    s.deliveries = record(&s.delivered, s.deliveries, i);

    if (s.p.cb_unsub && !s.cb_unsub_done && is_str(msg->topic, msg->topic_len, TOPIC_A)) {
        s.cb_unsub_done = true;
        vg_status st = vg_client_unsubscribe(s.c, 1);
        check(st == (s.unsubscribed[0] ? VG_ERR_ARG : VG_OK),
              "vg_client_unsubscribe from on_msg: wrong status");
        if (!s.unsubscribed[0])
            issue(VG_FRAME_UNSUB, 1, NULL, NULL, 0, true); /* not sent if refused */
        s.unsubscribed[0] = true;
    }
    if (s.p.cb_echo) {
        issue(msg->type, 0, ECHO_TOPIC, msg->payload, msg->payload_len, false);
        vg_status st = vg_client_publish(s.c, msg->type, ECHO_TOPIC, strlen(ECHO_TOPIC),
                                         msg->payload, msg->payload_len, 0);
        bool too_large = msg->payload_len > s.m.v[i].max_payload;
        check(st != VG_ERR_TOO_LARGE || too_large, "publish refused as too large, yet within the limit");
        check(st == VG_OK || st == VG_ERR_FULL || st == VG_ERR_TOO_LARGE,
              "publish from on_msg: unexpected status");
        check(!too_large || st == VG_ERR_TOO_LARGE,
              "publish above the broker's max_payload accepted");
        if (st == VG_OK)
            s.accepted++;
        else
            unissue();
    }
    if (is_str(msg->topic, msg->topic_len, TOPIC_A)) { /* as it returns: processed */
        uint64_t had = atomic_load(&s.returned_a);
        if (msg->seq > had)
            atomic_store(&s.returned_a, msg->seq);
    }
}

static void on_gap(void *ud, const char *topic, size_t len, const vg_gap *g)
{
    (void)ud;
    callback_entered("on_gap");
    check(is_str(topic, len, TOPIC_A) || is_str(topic, len, TOPIC_B), "on_gap for another topic");
    check(g->from >= 1, "on_gap from 0");
    switch (g->reason) {
    case VG_GAP_RETENTION:
    case VG_GAP_UNANNOUNCED: check(g->to >= g->from, "on_gap with an empty range"); break;
    case VG_GAP_EPOCH: check(g->to == 0, "on_gap EPOCH with a known end"); break;
    default: die("on_gap with an unknown reason");
    }
    check(g->sid >= 1 && g->sid <= s.nsubs && is_str(topic, len, s.topics[g->sid - 1]),
          "on_gap for a sid that is not subscribed to its topic");
    if (g->copy == 0) /* copies: the same gap, to another sid on the topic */
        s.gaps++;
}

static void on_batch_end(void *ud)
{
    (void)ud;
    callback_entered("on_batch_end");
}

static void on_sub_error(void *ud, uint64_t sid, const char *topic, uint64_t code,
                         const char *reason)
{
    (void)ud;
    (void)sid;
    callback_entered("on_sub_error");
    check(topic != NULL && reason != NULL, "on_sub_error with a NULL string");
    for (const char *r = reason; *r; r++)
        check(*r >= 0x20 && *r < 0x7f, "on_sub_error: a reason with unprintable bytes");
    size_t slot = s.nsubs;
    for (size_t i = 0; i < s.nsubs && slot == s.nsubs; i++)
        if (strcmp(topic, s.topics[i]) == 0)
            slot = i;
    check(slot < s.nsubs, "on_sub_error for a topic never subscribed");
    check(!vg_errcode_is_fatal(code, 1), "on_sub_error with a code that does not answer a SUB");
    size_t i = s.err_cursor;
    for (; i < s.m.n; i++) {
        const in_frame *fr = &s.m.v[i];
        /* The callback names a topic, not a sid: in exact mode only the
         * ERRs the model says refuse, as two sids may share the topic. */
        if (fr->processed && (!s.exact || fr->refuse) && fr->f.type == VG_FRAME_ERR &&
            fr->f.code == code && fr->f.sid >= 1 &&
            fr->f.sid <= s.nsubs && strcmp(s.topics[fr->f.sid - 1], topic) == 0)
            break;
    }
    check(i < s.m.n, "on_sub_error without a matching ERR (or again, or out of order)");
    check(s.m.v[i].end <= atomic_load(&s.sent), "on_sub_error for an ERR not sent yet");
    s.err_cursor = i + 1;
    s.sub_errors = record(&s.refused_at, s.sub_errors, i);
    unsigned on_topic = 0;
    for (size_t k = 0; k < s.nsubs; k++)
        on_topic += strcmp(topic, s.topics[k]) == 0;
    check(++s.refusals[slot] <= on_topic, "more refusals than subscriptions to the topic");
}

static void on_closed(void *ud, const char *reason)
{
    (void)ud;
    callback_entered("on_closed");
    check(reason != NULL, "on_closed without a reason");
    snprintf(s.closed_reason, sizeof s.closed_reason, "%s", reason);
    s.closed_calls++;
}

/* ---- the broker's side of the socket ---- */

/* Waits until fd is ready for events; returns its revents, or 0 once the
 * deadline has passed. libFuzzer's -timeout alarm interrupts system calls
 * every few seconds, so EINTR only means: wait again. */
static short wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t now = vg_now_ms();
        if (now >= deadline)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, vg_poll_timeout(deadline, now));
        if (n > 0)
            return p.revents;
        if (n < 0 && errno != EINTR)
            die_errno("poll");
    }
}

static int accept_client(void)
{
    if (wait_fd(listen_fd, POLLIN, vg_now_ms() + DEADLINE_MS) == 0)
        die("the client did not connect in time");
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        die_errno("accept");
    return fd;
}

/* Closes without TIME_WAIT: millions of short connections would otherwise
 * use up the ephemeral ports. Only called once the client has closed. */
static void hang_up(int fd)
{
    struct linger abortive = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
    close(fd);
}

/* What the client wrote, frame by frame. */
typedef struct {
    vg_decoder *rx;
    size_t frames, bulk, pings, pongs;
    size_t next_issued; /* the next entry of s.log its bulk frames must match */
    bool open;
    bool sub1_seen;     /* the durable SUB of sid 1 */
    uint64_t last_ack;
} writes;

static void check_bulk(writes *w, const vg_frame *f)
{
    pthread_mutex_lock(&s.mu);
    bool ok = false;
    while (w->next_issued < s.nlog) {
        const issued *e = &s.log[w->next_issued++];
        if (e->type == VG_FRAME_UNSUB)
            ok = f->type == VG_FRAME_UNSUB && f->sid == e->sid;
        else if (e->type == VG_FRAME_SUB)
            ok = f->type == VG_FRAME_SUB && f->sid == e->sid &&
                 is_str(f->topic, f->topic_len, e->topic);
        else
            ok = f->type == e->type && is_str(f->topic, f->topic_len, e->topic) &&
                 same(f->payload, f->payload_len, e->payload, e->payload_len);
        if (ok || !e->optional)
            break;
    }
    pthread_mutex_unlock(&s.mu);
    if (!ok) {
        fprintf(report, "fuzz_client: client frame %zu: %s sid %llu\n", w->frames,
                vg_frame_type_name(f->type), (unsigned long long)f->sid);
        die("a SUB, UNSUB or MSG the application did not issue, or out of order");
    }
    w->bulk++;
}

/* PINGs among the frames sent so far that the client answers. */
static size_t pings_sent(void)
{
    size_t sent = atomic_load(&s.sent), n = 0;
    for (size_t i = 0; i < s.m.n && s.m.v[i].end <= sent; i++)
        n += s.m.v[i].processed && s.m.v[i].f.type == VG_FRAME_PING;
    return n;
}

/* Checks every complete frame the client sent. */
static void check_writes(writes *w)
{
    for (;;) {
        vg_frame f;
        const char *why = NULL;
        vg_status st = vg_decoder_next(w->rx, &f, &why);
        if (st == VG_AGAIN)
            return;
        if (st != VG_OK) {
            fprintf(report, "fuzz_client: client frame %zu: %s (%s)\n", w->frames, vg_strerror(st), why);
            die("the client sent a malformed frame");
        }
        bool first = w->frames++ == 0;
        bool v2_form = f.type == VG_FRAME_CONNECT || f.type == VG_FRAME_SUB ||
                       f.type == VG_FRAME_ACK;
        bool durable_sub = f.type == VG_FRAME_SUB && s.p.durable && f.sid == 1;
        if (f.form != (durable_sub ? 3 : v2_form ? 2 : 1)) {
            fprintf(report, "fuzz_client: client frame %zu: %s form %d\n", w->frames,
                    vg_frame_type_name(f.type), f.form);
            die("the client sent a frame in a shape version 2 does not ask of a client");
        }
        if (first) {
            check(f.type == VG_FRAME_CONNECT, "the client's first frame is not CONNECT");
            check(f.version == VG_PROTO_VERSION && is_str(f.name, f.name_len, CLIENT_NAME) &&
                      f.token == NULL && f.publisher != 0 && f.resend_from == 1,
                  "CONNECT does not carry the client's version, name, no token, a publisher "
                  "and resend_from 1");
            continue;
        }
        if (f.type == VG_FRAME_SUB)
            check(f.start == VG_SUB_NEW, "a SUB of vg_client_subscribe that is not NEW");
        if (durable_sub) {
            check(is_str(f.durable, f.durable_len, DURABLE_NAME), "the durable SUB's name");
            w->sub1_seen = true;
        }
        if (f.type == VG_FRAME_ACK) {
            check(s.p.durable && f.sid == 1, "an ACK for a subscription that is not durable");
            check(w->sub1_seen, "an ACK before its SUB");
            check(f.seq > w->last_ack, "an ACK not above the last one");
            check(f.seq <= atomic_load(&s.returned_a),
                  "an ACK beyond the messages whose on_msg returned");
            w->last_ack = f.seq;
            continue;
        }
        bool handshake_possible =
            atomic_load(&s.info_sent) || (s.m.hs_end != SIZE_MAX && atomic_load(&s.sent) >= s.m.hs_end);
        switch (f.type) {
        case VG_FRAME_PONG:
            check(++w->pongs <= pings_sent(), "more PONGs than PINGs sent");
            break;
        case VG_FRAME_PING:
        case VG_FRAME_SUB:
        case VG_FRAME_UNSUB:
        case VG_FRAME_MSG_TYPE1:
        case VG_FRAME_MSG_TYPE2:
            if (!handshake_possible) {
                fprintf(report, "fuzz_client: client frame %zu: %s\n", w->frames,
                        vg_frame_type_name(f.type));
                die("the client sent more than PONG before any INFO");
            }
            if (f.type == VG_FRAME_PING)
                w->pings++;
            else
                check_bulk(w, &f);
            break;
        case VG_FRAME_CONNECT: die("a second CONNECT");
        default:
            fprintf(report, "fuzz_client: client frame %zu: %s\n", w->frames, vg_frame_type_name(f.type));
            die("the client sent a frame only brokers send");
        }
    }
}

/* Reads what is ready; clears w->open once the client closed. */
static void read_writes(int fd, writes *w)
{
    uint8_t *space;
    size_t avail;
    if (vg_decoder_space(w->rx, &space, &avail) != VG_OK)
        die("out of memory");
    ssize_t n = recv(fd, space, avail, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
        w->open = false;
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        die_errno("recv");
    }
    vg_decoder_commit(w->rx, (size_t)n);
    check_writes(w);
}

/* Sends out (the rest of the input, counted in s.sent) while reading, until
 * done(w) holds; with out == NULL only reads. At the end of the rest: shut
 * down our side and read until the client closes. Bounded by DEADLINE_MS. */
static void talk(int fd, writes *w, const uint8_t *out, size_t n, bool (*done)(const writes *))
{
    int64_t deadline = vg_now_ms() + DEADLINE_MS;
    size_t sent = 0;
    bool shut = false;
    while (w->open && (done == NULL || !done(w))) {
        if (out != NULL && !shut && sent == n) {
            shutdown(fd, SHUT_WR);
            shut = true;
        }
        bool sending = out != NULL && !shut;
        short ready = wait_fd(fd, POLLIN | (sending ? POLLOUT : 0), deadline);
        if (ready == 0) {
            fprintf(report, "fuzz_client: sent %zu of %zu bytes; %zu client frames\n", sent, n, w->frames);
            die(done != NULL ? "the client did not write what it had queued in time"
                             : "the client did not close the connection in time");
        }
        if (sending && (ready & (POLLOUT | POLLERR | POLLHUP))) {
            /* Counted before the call: the client may act on the bytes
             * before send returns. */
            atomic_store(&s.sent, n);
            ssize_t k = send(fd, out + sent, n - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (k > 0) {
                sent += (size_t)k;
            } else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                sent = n; /* the client closed first: stop sending, keep reading */
            }
        }
        if (ready & (POLLIN | POLLERR | POLLHUP))
            read_writes(fd, w);
    }
}

static bool connected(const writes *w) { return w->frames >= 1; }

/* The client has written everything issued before the handshake, and the
 * PING that confirms a publish. */
static bool queue_written(const writes *w)
{
    pthread_mutex_lock(&s.mu);
    size_t n = s.nlog;
    pthread_mutex_unlock(&s.mu);
    return w->bulk >= n && (!s.p.publish || w->pings >= 1);
}

static void send_info(int fd)
{
    vg_buf b = {0};
    if (vg_frame_put_info2(&b, VG_PROTO_VERSION, "fuzz-broker", 1, s.p.max_payload, HARNESS_EPOCH,
                           0) != VG_OK)
        die("out of memory");
    atomic_store(&s.info_sent, true); /* just before: the answers may come at once */
    int64_t deadline = vg_now_ms() + DEADLINE_MS;
    for (size_t sent = 0; sent < b.len;) {
        ssize_t k = send(fd, b.data + sent, b.len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k > 0)
            sent += (size_t)k;
        else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break; /* the client is gone; reading will tell */
        else if (wait_fd(fd, POLLOUT, deadline) == 0)
            die("the client does not read INFO");
    }
    vg_buf_free(&b);
}

/* ---- one input ---- */

static vg_client *start_client(void)
{
    vg_client_opts o;
    vg_client_opts_defaults(&o);
    o.servers = server;
    o.name = CLIENT_NAME;
    o.token = NULL;
    o.max_buffer = MAX_BUFFER;
    o.keepalive = (vg_keepalive){0, 0, 0}; /* nothing happens that the input did not cause */
    o.max_reconnects = 0;
    o.on_msg = on_msg;
    o.on_batch_end = on_batch_end;
    o.on_sub_error = on_sub_error;
    o.on_closed = on_closed;
    o.on_gap = on_gap;
    o.ack_delay_ms = 0; /* a durable's ACKs after each read: as many as can be */
    /* The I/O thread inherits this mask: libFuzzer's -timeout alarm and
     * SIGINT go to the fuzzing thread, as the real programs keep signals
     * away from the client's thread. */
    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGALRM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, &old);
    vg_client *c = NULL;
    const char *why = NULL;
    vg_status st = vg_client_start(&c, &o, &why);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (st != VG_OK) {
        fprintf(report, "fuzz_client: vg_client_start: %s (%s)\n", vg_strerror(st), why);
        die("cannot start a client");
    }
    return c;
}

/* What the application does before the handshake. */
static void prepare(void)
{
    uint64_t sid = 0;
    s.topics[0] = TOPIC_A;
    s.topics[1] = s.p.same_topic ? TOPIC_A : TOPIC_B;
    s.nsubs = s.p.two_subs ? 2 : 1;
    for (size_t i = 0; i < s.nsubs; i++) {
        issue(VG_FRAME_SUB, i + 1, s.topics[i], NULL, 0, false);
        vg_status st = i == 0 && s.p.durable
                           ? vg_client_subscribe_durable(s.c, s.topics[i], DURABLE_NAME,
                                                         VG_SUB_NEW, 0, 0, &sid)
                           : vg_client_subscribe(s.c, s.topics[i], &sid);
        check(st == VG_OK && sid == i + 1, "vg_client_subscribe failed, or not sids 1, 2");
    }
    if (s.p.publish) {
        static const uint8_t hello[] = "hello from the client";
        issue(VG_FRAME_MSG_TYPE1, 0, TOPIC_A, hello, sizeof hello - 1, false);
        check(vg_client_publish(s.c, VG_FRAME_MSG_TYPE1, TOPIC_A, strlen(TOPIC_A), hello,
                                sizeof hello - 1, 0) == VG_OK,
              "vg_client_publish into an empty outbox failed");
        s.accepted++;
    }
    if (s.p.unsub_early) {
        issue(VG_FRAME_UNSUB, 1, NULL, NULL, 0, false);
        check(vg_client_unsubscribe(s.c, 1) == VG_OK, "vg_client_unsubscribe failed");
        s.unsubscribed[0] = true;
        check(vg_client_unsubscribe(s.c, 1) == VG_ERR_ARG, "a second vg_client_unsubscribe succeeded");
    }
}

/* Once the client has stopped: everything it did against the model. */
static void check_outcome(const writes *w)
{
    check(s.closed_calls == 1, "on_closed not called exactly once");
    if (strcmp(s.closed_reason, s.m.reason) != 0) {
        fprintf(report, "fuzz_client: on_closed said %s, want %s\n", s.closed_reason, s.m.reason);
        die("on_closed with the wrong reason");
    }
    const char *r = vg_client_closed_reason(s.c);
    check(r != NULL && strcmp(r, s.closed_reason) == 0,
          "vg_client_closed_reason differs from on_closed's");
    check(vg_client_publish(s.c, VG_FRAME_MSG_TYPE1, TOPIC_A, strlen(TOPIC_A), "", 0, 0) ==
              VG_ERR_CLOSED,
          "a closed client accepts a publish");

    if (s.m.clean)
        check(w->pongs == s.m.pings, "not one PONG for each PING");
    if (s.exact) {
        size_t k = 0, e = 0;
        for (size_t i = 0; i < s.m.n; i++) {
            if (s.m.v[i].deliver) {
                check(k < s.deliveries && s.delivered[k] == i, "a message the model delivers was not");
                k++;
            }
            if (s.m.v[i].gap)
                s.m.gaps++;
            if (s.m.v[i].refuse) {
                check(e < s.sub_errors && s.refused_at[e] == i, "a refusal the model reports was not");
                e++;
            }
        }
        check(k == s.deliveries, "more messages delivered than the model says");
        check(e == s.sub_errors, "more refusals reported than the model says");
        check(s.gaps == s.m.gaps, "not the gaps the model reports");
    }

    vg_client_stats st;
    vg_client_get_stats(s.c, &st);
    check(st.published == s.accepted, "published differs from the publishes accepted");
    check(st.published == st.confirmed + st.unconfirmed + st.pending + st.unsent,
          "published != confirmed + unconfirmed + pending + unsent");
    check(st.pending == 0, "frames still pending after vg_client_close");
    check(st.received == s.deliveries + s.copies, "received differs from the on_msg calls");
    check(st.gaps == s.gaps, "gaps differs from the on_gap calls");
    uint64_t written = st.published - st.unsent;
    size_t msgs_read = 0;
    for (size_t i = 0; i < w->next_issued; i++)
        msgs_read += vg_frame_is_msg(s.log[i].type);
    check(msgs_read <= written, "more MSG frames read than the client counts written");
    if (s.m.clean)
        check(msgs_read == written, "a MSG counted written never arrived");
    check(st.confirmed <= written, "more confirmed than written");
    if (s.exact && !s.p.cb_echo)
        check(st.confirmed == (s.p.publish && s.m.pongs > 0),
              "the PONG after the publish's PING did not confirm it (or something else did)");
}

static void end_session(void)
{
    for (size_t i = 0; i < s.nlog; i++)
        free(s.log[i].payload);
    free(s.log);
    free(s.m.v);
    free(s.delivered);
    free(s.refused_at);
    pthread_mutex_destroy(&s.mu);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    s.p = (plan){
        .info_first = data[0] % 8 != 0,
        .two_subs = data[0] & 0x08,
        .same_topic = data[0] & 0x10,
        .publish = data[0] & 0x20,
        .unsub_early = data[0] & 0x40,
        .max_payload = info_max_payloads[data[1] & 3],
        .cb_unsub = data[1] & 0x04,
        .cb_echo = data[1] & 0x08,
        .no_wait = data[1] & 0x10,
        .durable = data[1] & 0x20,
    };
    s.rest = data + 2;
    s.rest_len = size - 2;
    s.exact = s.p.info_first && !s.p.no_wait;
    s.c = start_client();
    prepare();
    model();

    writes w = {.rx = vg_decoder_create(64 * 1024, vg_max_frame_for(VG_DEFAULT_MAX_PAYLOAD)), .open = true};
    if (w.rx == NULL)
        die("out of memory");
    int fd = accept_client();
    talk(fd, &w, NULL, 0, connected);
    check(w.open, "the client closed before its CONNECT");
    if (s.p.info_first) {
        send_info(fd);
        if (!s.p.no_wait)
            talk(fd, &w, NULL, 0, queue_written);
    }
    talk(fd, &w, s.rest, s.rest_len, NULL);

    if (vg_client_close(s.c, DEADLINE_MS) != VG_OK)
        die("vg_client_close did not stop the client in time");
    check_outcome(&w);
    vg_client_destroy(s.c);
    vg_decoder_destroy(w.rx);
    hang_up(fd);
    end_session();
    return 0;
}

/* ---- libFuzzer's set-up ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    harness_thread = pthread_self();
    report = stderr;
    vg_log_level level = VG_LOG_ERROR;
    const char *want = getenv("VIGIL_FUZZ_LOG");
    if (want != NULL && !vg_log_parse_level(want, &level))
        die("VIGIL_FUZZ_LOG must be error, warn, info or debug");
    vg_log_set_level(level);
    /* libFuzzer parses its flags after this call, so flags put first
     * here are defaults that the command line can still override:
     * -malloc_limit_mb reports any single allocation above 128 MiB (the
     * client must never reserve more than 64 MiB and a frame header for
     * a broker, whatever its INFO says), and, unless the log is wanted,
     * -close_fd_mask=2 closes stderr (libFuzzer keeps a copy for its
     * reports and the sanitizers'; we keep one for ours). */
    static char malloc_limit[] = "-malloc_limit_mb=128";
    static char close_stderr[] = "-close_fd_mask=2";
    char **v = malloc(((size_t)*argc + 3) * sizeof *v);
    if (v == NULL)
        die("out of memory");
    int n = 0;
    v[n++] = (*argv)[0];
    v[n++] = malloc_limit;
    if (want == NULL) {
        int fd = dup(STDERR_FILENO);
        FILE *copy = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (copy != NULL) {
            setvbuf(copy, NULL, _IONBF, 0);
            report = copy;
            v[n++] = close_stderr;
        }
    }
    for (int i = 1; i < *argc; i++)
        v[n++] = (*argv)[i];
    v[n] = NULL;
    *argc = n;
    *argv = v; /* lives as long as the process */
    signal(SIGPIPE, SIG_IGN);

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0)
        die_errno("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(listen_fd, 16) != 0 ||
        getsockname(listen_fd, (struct sockaddr *)&a, &len) != 0)
        die_errno("cannot listen on 127.0.0.1");
    snprintf(server, sizeof server, "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    return 0;
}
