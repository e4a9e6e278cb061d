/* A scripted fake broker for the client library's unit tests, driven
 * synchronously from the test's own thread (as nats.c's tests script a mock
 * server): listen on 127.0.0.1:0 (and [::1]:0), accept, read and expect
 * frames, send any frame, stop reading, close or reset a connection.
 *
 * Every wait is bounded and, where it asserts, says what it was waiting for.
 * Call it from the test thread only: Criterion asserts must not run on a
 * thread the test spawned. The non-asserting calls (fb_try_accept,
 * fb_read, fb_send_some, ...) report instead, for loops that decide.
 *
 * Also here, because every client test needs them: the time scale of slow
 * builds, and a capture of the client's log (vg_log writes to fd 2). */
#ifndef VG_FAKE_BROKER_H
#define VG_FAKE_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decoder.h"
#include "frame.h"

/* ---- time ---- */

/* VIGIL_TEST_TIME_SCALE (at least 1): sanitizer builds are slower, so every
 * timing in these tests is multiplied by it. */
double fb_scale(void);
/* ms multiplied by the time scale. */
int fb_ms(int ms);
/* Monotonic milliseconds (the client's own clock, vg_now_ms). */
int64_t fb_now(void);
/* Sleeps ms (not scaled). */
void fb_sleep(int ms);

/* ---- the listener ---- */

typedef struct {
    int fd, fd6;     /* listening sockets; fd6 -1 unless asked for */
    int port, port6;
    int accepted;    /* connections accepted so far */
} fb_listener;

/* Listens on 127.0.0.1:0 and, if ipv6, on [::1]:0. rcvbuf > 0 sets
 * SO_RCVBUF before listen, so accepted connections inherit a small window
 * (for a fake that stops reading). */
void fb_listen(fb_listener *l, bool ipv6, int rcvbuf);
void fb_unlisten(fb_listener *l);

/* A TCP port on 127.0.0.1 where nothing listens (bound, then closed). */
int fb_dead_port(void);

/* ---- connections ---- */

typedef enum {
    FB_PING_ANSWER, /* a PING is answered with PONG and skipped (the default) */
    FB_PING_SKIP,   /* a PING is skipped, unanswered */
    FB_PING_RETURN, /* a PING is returned like any other frame */
} fb_ping_mode;

/* The fake's epoch unless a test sets another before the handshake. */
#define FB_EPOCH 0x3c6ef372fe94f82bull
#define FB_TOPICS 256

/* A topic's log, as the fake numbers it: it retains nothing. */
typedef struct {
    char topic[64];
    uint64_t last; /* the last seq sent on the connection */
} fb_topic;

/* A SUB read and not yet answered, for the OK's position. */
typedef struct {
    uint64_t sid;
    char topic[64];
    vg_sub_start start;
    uint64_t position;
} fb_sub;

typedef struct {
    int fd;
    int index;          /* 1 for the listener's first connection, ... */
    vg_decoder *rx;
    fb_ping_mode pings;
    unsigned pings_seen; /* PINGs read on this connection */
    bool eof;            /* the client closed (or reset) the connection */
    /* Protocol version 2: what INFO says (set before fb_send_info), and
     * what the client's CONNECT said. */
    uint64_t epoch;      /* FB_EPOCH at accept */
    uint64_t publisher_acked;
    uint64_t publisher, resend_from, version;
    fb_topic topics[FB_TOPICS];
    int ntopics;
    fb_sub subs[32];
    int nsubs;
} fb_conn;

/* Accepts the next connection within timeout_ms (scaled by the caller). */
bool fb_try_accept(fb_listener *l, fb_conn *c, int timeout_ms);
/* The same, asserting; what says what the test waits for. */
void fb_accept(fb_listener *l, fb_conn *c, int timeout_ms, const char *what);

typedef enum { FB_FRAME, FB_TIMEOUT, FB_EOF, FB_BAD } fb_result;
const char *fb_result_name(fb_result r);

/* Reads the next frame within timeout_ms, handling PINGs as c->pings says.
 * The frame's pointers are valid until the next read on c. */
fb_result fb_read(fb_conn *c, vg_frame *f, int timeout_ms);

/* Reads frames until one of type t (anything else is a failure, PINGs
 * aside), asserting; what names it in the message. */
void fb_expect(fb_conn *c, vg_frame_type t, vg_frame *out, int timeout_ms, const char *what);

/* Expects CONNECT and answers INFO (version 2: c->epoch,
 * c->publisher_acked) with max_payload. */
void fb_handshake(fb_conn *c, uint64_t max_payload);

/* Senders. The asserting ones fail the test if the bytes cannot be written
 * within a few seconds. */
void fb_send_raw(fb_conn *c, const void *bytes, size_t n);
void fb_send_info(fb_conn *c, uint64_t max_payload);
/* INFO of version 1, as a vigil 0.1 broker answers. */
void fb_send_info_v1(fb_conn *c, uint64_t max_payload);
/* OK for sid: the version-2 form if it answers a SUB read on c (next: the
 * SEQ asked for, which the fake takes as its topic's position, or the
 * topic's next message for the other starts), else [5, sid]. */
void fb_send_ok(fb_conn *c, uint64_t sid);
/* A GAP frame. */
void fb_send_gap(fb_conn *c, uint64_t sid, const char *topic, uint64_t from, uint64_t to,
                 vg_gap_reason reason);
void fb_send_err(fb_conn *c, uint64_t code, const char *reason, uint64_t sid);
/* A MSG_TYPE1 with the topic's next seq on c. */
void fb_send_msg(fb_conn *c, const char *topic, const char *payload);
/* A MSG of type t with bytes for payload and the topic's next seq. */
void fb_send_msg_bytes(fb_conn *c, vg_frame_type t, const char *topic, size_t topic_len,
                       const void *payload, size_t payload_len);
/* A MSG_TYPE1 with the given seq (the topic's position moves up to it). */
void fb_send_msg_seq(fb_conn *c, const char *topic, const char *payload, uint64_t seq);
/* POS [12, sid, topic, epoch, next]: a pattern sid reads topic from next. */
void fb_send_pos(fb_conn *c, uint64_t sid, const char *topic, uint64_t epoch, uint64_t next);
/* A queue member's MSG_TYPE1, [11, topic, payload, seq, sid]. */
void fb_send_msg_q(fb_conn *c, const char *topic, const char *payload, uint64_t seq,
                   uint64_t sid);
void fb_send_ping(fb_conn *c);
void fb_send_pong(fb_conn *c);
/* Writes as much of bytes as the socket takes within timeout_ms; returns
 * how much, or -1 if the connection broke. */
long fb_send_some(fb_conn *c, const void *bytes, size_t n, int timeout_ms);

/* Sends PING and reads until the PONG, asserting: everything the client
 * received before the PING has been handled by then (frames are handled in
 * order). Frames read meanwhile are handled as a broker would (OK for SUB
 * and UNSUB) and counted in *msgs if not NULL. */
void fb_barrier(fb_conn *c, int timeout_ms, unsigned *msgs);

/* Reads (answering as c->pings says) until the client closes, within
 * timeout_ms; true on EOF or reset. */
bool fb_wait_eof(fb_conn *c, int timeout_ms);

/* Closes with a FIN, or with a reset (SO_LINGER 0). */
void fb_close(fb_conn *c);
void fb_reset(fb_conn *c);

/* ---- a broker's answers ---- */

/* A record of a frame (copies), for checking sequences. */
typedef struct {
    vg_frame_type type;
    uint64_t sid;
    char topic[64];
    char payload[64];
} fb_rec;

void fb_record(fb_rec *r, const vg_frame *f);
/* "SUB 1 t", "MSG_TYPE1 t a", "UNSUB 1", ... into buf. */
const char *fb_rec_str(const fb_rec *r, char *buf, size_t cap);

/* ---- the client's log ---- */

/* Sends fd 2 to a file (named on stderr: a crash leaves it behind) until
 * fb_log_stop, which copies what was captured back to the real stderr (so
 * that ctest shows it, sanitizer reports included). */
void fb_log_start(void);
void fb_log_stop(void);
/* Lines captured that contain every one of the NULL-terminated substrings. */
int fb_log_count(const char *first, ...) __attribute__((sentinel));
/* Waits up to timeout_ms for at least n such lines; true if they came. */
bool fb_log_wait(int n, int timeout_ms, const char *first, ...) __attribute__((sentinel));
/* The captured text (NUL-terminated, malloc'd; the caller frees). */
char *fb_log_text(void);

#endif
