/* Queue groups end to end (issue 12): a real broker and pub, and queue
 * members that are raw-frame clients in child processes of their own, so
 * that one can be killed with SIGKILL under load.
 *
 *   - four members share a topic's messages: each message once across
 *     them, each member's share between 10% and 40%; $SYS.stats counts
 *     the group and its members;
 *   - kill -9 of one member under load: every message still reaches some
 *     member, the survivors see no message twice, and the only messages
 *     both the dead one and a survivor have are ones the dead one had not
 *     acknowledged;
 *   - a durable group across a kill -9 of the broker with --data-dir
 *     resumes at its floor;
 *   - a queue SUB on a version-1 connection is malformed;
 *   - a connection with a plain and a queue subscription on one topic
 *     keeps its plain one when it leaves the group;
 *   - a pattern group shares every topic it matches;
 *   - three `sub --queue` processes (the client library's members) share
 *     a topic's messages, each once;
 *   - a member that reads and never acknowledges has its messages given
 *     to another member after --ack-wait, each once.
 *
 * A member writes one line per message it processed ("m SEQ") to a file,
 * then, every 16 messages or when nothing came for 5 ms, sends an ACK for
 * the last one and a PING, and writes "a SEQ" when the PONG comes (the
 * broker has read the ACK). Timings are multiplied
 * by VIGIL_TEST_TIME_SCALE. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "proto.h"

#define WAIT h_ms(20000)
#define MAXSEQ 40000
#define NMEMBERS 4

/* ---- a member, in a child process (no Criterion calls there) ---- */

static void put_all(int fd, vg_buf *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = send(fd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (n <= 0)
            _exit(3);
        off += (size_t)n;
    }
    b->len = 0;
}

static void line(int out, const char *kind, unsigned long long v)
{
    char s[40];
    int n = snprintf(s, sizeof s, "%s %llu\n", kind, v);
    if (write(out, s, (size_t)n) != n)
        _exit(4);
}

/* The last message processed of each topic (a pattern member reads several). */
typedef struct {
    char topic[64];
    size_t len;
    uint64_t last;
    bool pending;
} last_of;

/* ACKs sent, each group followed by a PING: "a SEQ" is written when its
 * PONG comes, so the broker has read them. (Written when sent, a kill -9
 * could beat them out: a killed process's unsent bytes are discarded, and
 * the test saw an ACK it counted that the broker never had.) */
enum { AWAIT = 1024 };
typedef struct {
    uint64_t v[AWAIT][8];
    int n[AWAIT];
    unsigned head, tail;
} awaiting;

/* Acknowledges the last message processed of each topic that has one,
 * then PINGs. */
static void ack_pending(int fd, vg_buf *b, last_of *t, int nt, awaiting *w)
{
    if (w->tail - w->head == AWAIT)
        _exit(8);
    unsigned g = w->tail++ % AWAIT;
    w->n[g] = 0;
    for (int i = 0; i < nt; i++)
        if (t[i].pending) {
            vg_frame_put_ack_topic(b, 1, t[i].last, t[i].topic, t[i].len);
            w->v[g][w->n[g]++] = t[i].last;
            t[i].pending = false;
        }
    vg_frame_put_ping(b);
    put_all(fd, b);
}

/* A PONG: the oldest group of ACKs was read by the broker. */
static void acks_confirmed(int out, awaiting *w)
{
    if (w->head == w->tail)
        return; /* not ours */
    unsigned g = w->head++ % AWAIT;
    for (int i = 0; i < w->n[g]; i++)
        line(out, "a", w->v[g][i]);
}

/* Connects, joins queue "q" on subject, processes and acknowledges until
 * the broker closes the connection. */
static void member_main(int port, const char *path, const char *topic, const char *durable)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (out < 0 || fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        _exit(2);
    vg_decoder *dec = vg_decoder_create(65536, 64u << 20);
    vg_buf b = {0};
    vg_frame_put_connect2(&b, 2, "member", NULL, 0, 1);
    vg_frame_put_sub_queue(&b, 1, topic, strlen(topic), VG_SUB_NEW, 0, 0, durable,
                           durable ? strlen(durable) : 0, "q", 1);
    put_all(fd, &b);
    last_of tl[8];
    int nt = 0;
    uint64_t unacked = 0;
    static awaiting w;
    for (;;) {
        vg_frame f;
        const char *why;
        vg_status st;
        while ((st = vg_decoder_next(dec, &f, &why)) == VG_OK) {
            if (f.type == VG_FRAME_OK && f.form >= 2)
                line(out, "ok", f.next);
            else if (f.type == VG_FRAME_ERR)
                line(out, "err", f.code);
            else if (f.type == VG_FRAME_PING)
                vg_frame_put_pong(&b);
            else if (f.type == VG_FRAME_PONG)
                acks_confirmed(out, &w);
            else if (vg_frame_is_msg(f.type) && f.form == 3 && f.sid == 1) {
                line(out, "m", f.seq);
                int i = 0;
                while (i < nt && (tl[i].len != f.topic_len ||
                                  memcmp(tl[i].topic, f.topic, f.topic_len) != 0))
                    i++;
                if (i == nt) {
                    if (nt == 8 || f.topic_len > sizeof tl[0].topic)
                        _exit(7);
                    memcpy(tl[i].topic, f.topic, f.topic_len);
                    tl[i].len = f.topic_len;
                    nt++;
                }
                tl[i].last = f.seq;
                tl[i].pending = true;
                unacked++;
            }
            if (unacked >= 16) {
                ack_pending(fd, &b, tl, nt, &w);
                unacked = 0;
            }
        }
        if (st != VG_AGAIN)
            _exit(5);
        if (b.len > 0)
            put_all(fd, &b);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5) == 0 && unacked > 0) { /* quiet: acknowledge what we have */
            ack_pending(fd, &b, tl, nt, &w);
            unacked = 0;
            continue;
        }
        uint8_t *space;
        size_t avail;
        if (vg_decoder_space(dec, &space, &avail) != VG_OK)
            _exit(6);
        ssize_t n = recv(fd, space, avail, 0);
        if (n <= 0)
            _exit(0);
        vg_decoder_commit(dec, (size_t)n);
    }
}

/* ---- the test's side ---- */

/* Stops the broker with SIGTERM: it exits 0, and a sanitizer build has
 * nothing to report (leaks included). */
static void stop_broker(h_proc *b)
{
    h_signal(b, SIGTERM);
    cr_assert(h_wait_exit(b, WAIT), "the broker did not stop");
    cr_assert_eq(h_exit_code(b), 0, "%s", h_tail(b->err));
    cr_assert(strstr(b->err, "Sanitizer") == NULL && strstr(b->err, "runtime error") == NULL,
              "%s", h_tail(b->err));
    h_free(b);
}

typedef struct {
    pid_t pid;
    char path[320];
    uint64_t msgs;      /* "m" lines */
    uint64_t next;      /* from "ok" */
    bool ok;
    uint8_t *seen;      /* times each seq was processed */
    uint8_t *acked;     /* seq processed before its last "a" line */
} member;

static char dir[256];

static void member_start(member *m, int port, int k, const char *topic, const char *durable)
{
    if (dir[0] == 0) {
        snprintf(dir, sizeof dir, "%s/vigil-queue-%d-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
        cr_assert(mkdtemp(dir) != NULL);
    }
    static int serial;
    snprintf(m->path, sizeof m->path, "%s/member-%d-%d", dir, k, serial++);
    m->seen = calloc(MAXSEQ + 1, 1);
    m->acked = calloc(MAXSEQ + 1, 1);
    cr_assert(m->seen != NULL && m->acked != NULL);
    m->pid = fork();
    cr_assert(m->pid >= 0);
    if (m->pid == 0)
        member_main(port, m->path, topic, durable);
}

/* Reads the member's file again from the start. */
static void member_read(member *m)
{
    memset(m->seen, 0, MAXSEQ + 1);
    memset(m->acked, 0, MAXSEQ + 1);
    m->msgs = 0;
    m->ok = false;
    FILE *f = fopen(m->path, "r");
    if (f == NULL)
        return;
    static uint64_t order[MAXSEQ * 2];
    size_t n = 0;
    char kind[8];
    unsigned long long v;
    while (fscanf(f, "%7s %llu", kind, &v) == 2) {
        if (strcmp(kind, "ok") == 0) {
            m->ok = true;
            m->next = v;
        } else if (strcmp(kind, "m") == 0 && v <= MAXSEQ) {
            m->seen[v]++;
            m->msgs++;
            if (n < MAXSEQ * 2)
                order[n++] = v;
        } else if (strcmp(kind, "a") == 0) {
            /* The ACK covers v and what was received before it, not what
             * came after (the line is written once the broker has read it,
             * by when more may have been processed). */
            size_t at = n;
            while (at > 0 && order[at - 1] != v)
                at--;
            for (size_t i = 0; i < at; i++)
                m->acked[order[i]] = 1;
        }
    }
    fclose(f);
}

static void member_kill(member *m)
{
    if (m->pid > 0) {
        kill(m->pid, SIGKILL);
        waitpid(m->pid, NULL, 0);
        m->pid = 0;
    }
}

static void member_free(member *m)
{
    member_kill(m);
    unlink(m->path);
    free(m->seen);
    free(m->acked);
}

/* Waits until every member has its OK. */
static void wait_joined(member *m, int n)
{
    int64_t deadline = h_now_ms() + WAIT;
    for (;;) {
        int ok = 0;
        for (int i = 0; i < n; i++) {
            member_read(&m[i]);
            ok += m[i].ok;
        }
        if (ok == n)
            return;
        cr_assert(h_now_ms() < deadline, "only %d of %d members joined", ok, n);
        usleep(10000);
    }
}

/* Waits until the members together processed at least total messages. */
static uint64_t wait_total(member *m, int n, uint64_t total)
{
    int64_t deadline = h_now_ms() + WAIT;
    for (;;) {
        uint64_t got = 0;
        for (int i = 0; i < n; i++) {
            member_read(&m[i]);
            got += m[i].msgs;
        }
        if (got >= total)
            return got;
        cr_assert(h_now_ms() < deadline, "members processed %llu of %llu",
                  (unsigned long long)got, (unsigned long long)total);
        usleep(20000);
    }
}

static void cleanup(void)
{
    if (dir[0] != 0)
        rmdir(dir);
}

TestSuite(queue, .fini = cleanup);

Test(queue, four_members_share_the_messages_once_each_and_balanced)
{
    int port;
    h_proc *b = h_broker(&port, "--stats-interval", "0.2", NULL);
    member m[NMEMBERS] = {0};
    for (int i = 0; i < NMEMBERS; i++)
        member_start(&m[i], port, i, "work", NULL);
    wait_joined(m, NMEMBERS);
    /* At a pace the members keep up with (a burst would go to whichever
     * acknowledges first, up to 1024 each: balance is among members that
     * keep up). */
    enum { N = 4000 };
    cr_assert_eq(h_pub(port, "--count", "4000", "--interval", "0.0005", "work", "job-{n}", NULL),
                 0);
    wait_total(m, NMEMBERS, N);
    usleep(h_ms(200) * 1000); /* anything more would be a duplicate */
    uint64_t total = 0;
    for (int i = 0; i < NMEMBERS; i++) {
        member_read(&m[i]);
        total += m[i].msgs;
    }
    cr_assert_eq(total, N, "%llu deliveries for %d messages", (unsigned long long)total, N);
    for (int s = 1; s <= N; s++) {
        int k = 0;
        for (int i = 0; i < NMEMBERS; i++)
            k += m[i].seen[s];
        cr_assert_eq(k, 1, "message %d delivered %d times", s, k);
    }
    cr_log_info("shares: %llu %llu %llu %llu of %d", (unsigned long long)m[0].msgs,
                (unsigned long long)m[1].msgs, (unsigned long long)m[2].msgs,
                (unsigned long long)m[3].msgs, N);
    for (int i = 0; i < NMEMBERS; i++)
        cr_assert(m[i].msgs >= N / 10 && m[i].msgs <= N * 4 / 10,
                  "member %d processed %llu of %d (%llu %llu %llu %llu)", i,
                  (unsigned long long)m[i].msgs, N, (unsigned long long)m[0].msgs,
                  (unsigned long long)m[1].msgs, (unsigned long long)m[2].msgs,
                  (unsigned long long)m[3].msgs);

    /* $SYS.stats: one group, four members. */
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r);
    vg_buf sb = {0};
    cr_assert_eq(vg_frame_put_sub(&sb, 1, "$SYS.stats", 10), VG_OK);
    h_raw_send_buf(&r, &sb);
    vg_buf_free(&sb);
    static const char want[] = "\"queues\":{\"groups\":1,\"members\":4,\"redelivered\":0}";
    bool seen = false;
    int64_t deadline = h_now_ms() + WAIT;
    while (!seen && h_now_ms() < deadline) {
        vg_frame f;
        if (h_raw_read(&r, &f, 1000) && vg_frame_is_msg(f.type))
            seen = memmem(f.payload, f.payload_len, want, sizeof want - 1) != NULL;
    }
    cr_assert(seen, "$SYS.stats counts the group and its members");
    h_raw_close(&r);
    stop_broker(b); /* with its members connected */
    for (int i = 0; i < NMEMBERS; i++)
        member_free(&m[i]);
}

Test(queue, a_member_killed_under_load_loses_nothing_and_survivors_see_nothing_twice)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    member m[NMEMBERS] = {0};
    for (int i = 0; i < NMEMBERS; i++)
        member_start(&m[i], port, i, "load", NULL);
    wait_joined(m, NMEMBERS);
    enum { N = 30000 };
    h_proc *pub = h_pub_start(port, "--count", "30000", "load", "j-{n}", NULL);
    /* Under load: the victim has processed some, more are coming. */
    int64_t deadline = h_now_ms() + WAIT;
    do {
        usleep(20000);
        member_read(&m[0]);
        cr_assert(h_now_ms() < deadline, "member 0 processed %llu", (unsigned long long)m[0].msgs);
    } while (m[0].msgs < 200);
    int64_t t0 = h_now_ms();
    h_pump(pub, 0);
    bool publishing = !pub->exited;
    member_kill(&m[0]);
    cr_assert(h_wait_exit(pub, WAIT), "pub did not finish");
    cr_log_info("pub done after %lld ms", (long long)(h_now_ms() - t0));
    cr_assert_eq(h_exit_code(pub), 0);
    member_read(&m[0]);
    uint64_t dead = m[0].msgs;
    cr_assert(dead < N, "killed under load");
    /* Every message reaches some member. */
    deadline = h_now_ms() + WAIT;
    int missing;
    do {
        missing = 0;
        for (int i = 1; i < NMEMBERS; i++)
            member_read(&m[i]);
        for (int s = 1; s <= N; s++)
            missing += m[0].seen[s] + m[1].seen[s] + m[2].seen[s] + m[3].seen[s] == 0;
        if (missing > 0)
            usleep(20000);
    } while (missing > 0 && h_now_ms() < deadline);
    cr_assert_eq(missing, 0, "%d messages reached no member", missing);
    cr_log_info("all delivered after %lld ms", (long long)(h_now_ms() - t0));
    usleep(h_ms(200) * 1000);
    for (int i = 1; i < NMEMBERS; i++)
        member_read(&m[i]);
    int again = 0;
    for (int s = 1; s <= N; s++) {
        int live = m[1].seen[s] + m[2].seen[s] + m[3].seen[s];
        cr_assert(live <= 1, "message %d twice among the survivors", s);
        if (live == 1 && m[0].seen[s]) {
            cr_assert_not(m[0].acked[s], "message %d acknowledged by the dead member, "
                          "delivered again", s);
            again++;
        }
    }
    cr_log_info("the dead member processed %llu (pub %s running); %d of them were delivered "
                "again", (unsigned long long)dead, publishing ? "still" : "no longer", again);
    h_free(pub);
    stop_broker(b);
    for (int i = 0; i < NMEMBERS; i++)
        member_free(&m[i]);
}

Test(queue, a_durable_group_resumes_at_its_floor_after_a_broker_kill_9)
{
    int port;
    char data[300];
    snprintf(data, sizeof data, "%s/vigil-queue-data-%d-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    cr_assert(mkdtemp(data) != NULL);
    h_proc *b = h_broker(&port, "--data-dir", data, NULL);
    member m[3] = {0};
    member_start(&m[0], port, 0, "dur", "billing");
    member_start(&m[1], port, 1, "dur", "billing");
    wait_joined(m, 2);
    cr_assert_eq(h_pub(port, "--count", "1000", "dur", "d-{n}", NULL), 0);
    wait_total(m, 2, 1000);
    /* Each member acknowledges within 5 ms of quiet; then they go. */
    usleep(h_ms(300) * 1000);
    member_kill(&m[0]);
    member_kill(&m[1]);
    cr_assert_eq(h_pub(port, "--count", "500", "dur", "late-{n}", NULL), 0); /* synced */
    h_signal(b, SIGKILL);
    cr_assert(h_wait_exit(b, WAIT));
    cr_assert(strstr(b->err, "Sanitizer") == NULL, "%s", h_tail(b->err));
    h_free(b);
    b = h_broker_at(port, "--data-dir", data, NULL);
    member_start(&m[2], port, 2, "dur", "billing");
    wait_joined(&m[2], 1);
    cr_assert_eq(m[2].next, 1001, "resumes at the floor, not %llu",
                 (unsigned long long)m[2].next);
    wait_total(&m[2], 1, 500);
    usleep(h_ms(200) * 1000);
    member_read(&m[2]);
    cr_assert_eq(m[2].msgs, 500);
    for (int s = 1001; s <= 1500; s++)
        cr_assert_eq(m[2].seen[s], 1, "message %d", s);
    member_kill(&m[2]);
    stop_broker(b); /* a durable group without members is left */
    for (int i = 0; i < 3; i++)
        member_free(&m[i]);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data);
    cr_assert_eq(system(cmd), 0);
}

Test(queue, a_queue_sub_on_a_version_1_connection_is_malformed)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r); /* version 1 */
    vg_buf sb = {0};
    cr_assert_eq(vg_frame_put_sub_queue(&sb, 1, "work", 4, VG_SUB_NEW, 0, 0, NULL, 0, "q", 1),
                 VG_OK);
    h_raw_send_buf(&r, &sb);
    vg_buf_free(&sb);
    h_raw_expect_fatal(&r, VG_E_BAD_FRAME, WAIT);
    h_raw_close(&r);
    h_assert_serves(port);
    stop_broker(b);
}

Test(queue, leaving_a_group_keeps_a_plain_subscription_on_the_same_topic)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_raw r = h_raw_connect(port);
    vg_buf out = {0};
    cr_assert_eq(vg_frame_put_connect2(&out, 2, "mixed", NULL, 0, 1), VG_OK);
    cr_assert_eq(vg_frame_put_sub(&out, 1, "mix", 3), VG_OK);
    cr_assert_eq(vg_frame_put_sub_queue(&out, 2, "mix", 3, VG_SUB_NEW, 0, 0, NULL, 0, "q", 1),
                 VG_OK);
    cr_assert_eq(vg_frame_put_unsub(&out, 2), VG_OK);
    h_raw_send_buf(&r, &out);
    vg_frame f;
    int oks = 0;
    while (oks < 3) {
        cr_assert(h_raw_read(&r, &f, WAIT), "%d answers", oks);
        cr_assert_neq(f.type, VG_FRAME_ERR);
        oks += f.type == VG_FRAME_OK;
    }
    cr_assert_eq(h_pub(port, "--count", "3", "mix", "x-{n}", NULL), 0);
    for (int i = 1; i <= 3; i++) {
        cr_assert(h_raw_read(&r, &f, WAIT), "message %d", i);
        cr_assert(vg_frame_is_msg(f.type));
        cr_assert_eq(f.form, 2, "a plain subscriber's 4-element MSG");
        cr_assert_eq(f.seq, (uint64_t)i);
    }
    vg_buf_free(&out);
    h_raw_close(&r);
    stop_broker(b);
}

Test(queue, a_pattern_group_shares_every_topic_it_matches)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    member m[2] = {0};
    member_start(&m[0], port, 0, "pq.*", NULL);
    member_start(&m[1], port, 1, "pq.*", NULL);
    wait_joined(m, 2);
    cr_assert_eq(m[0].next, 0, "no position for a pattern");
    cr_assert_eq(h_pub(port, "--count", "300", "pq.a", "a-{n}", NULL), 0);
    cr_assert_eq(h_pub(port, "--count", "300", "pq.b", "b-{n}", NULL), 0);
    cr_assert_eq(h_pub(port, "--count", "50", "pq.a.deep", "no-{n}", NULL), 0);
    wait_total(m, 2, 600);
    usleep(h_ms(200) * 1000);
    member_read(&m[0]);
    member_read(&m[1]);
    cr_assert_eq(m[0].msgs + m[1].msgs, 600, "%llu + %llu", (unsigned long long)m[0].msgs,
                 (unsigned long long)m[1].msgs);
    for (int s = 1; s <= 300; s++) /* each topic numbers from 1: a and b's seq s, both */
        cr_assert_eq(m[0].seen[s] + m[1].seen[s], 2, "seq %d of pq.a and pq.b", s);
    stop_broker(b);
    for (int i = 0; i < 2; i++)
        member_free(&m[i]);
}

/* Counts "seq":N in a sub --json output into seen. */
static void count_json_seqs(const char *out, uint8_t *seen, int max)
{
    for (const char *p = out; (p = strstr(p, "\"seq\":")) != NULL; p += 6) {
        long v = strtol(p + 6, NULL, 10);
        if (v >= 1 && v <= max)
            seen[v]++;
    }
}

Test(queue, sub_queue_processes_share_the_messages_once_each)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s[3];
    for (int i = 0; i < 3; i++)
        s[i] = h_sub(port, "--json", "--queue", "workers", "cli.work", NULL);
    enum { N = 3000 };
    cr_assert_eq(h_pub(port, "--count", "3000", "--interval", "0.0005", "cli.work", "w-{n}",
                       NULL),
                 0);
    static uint8_t seen[N + 1];
    int64_t deadline = h_now_ms() + WAIT;
    int total;
    do {
        memset(seen, 0, sizeof seen);
        total = 0;
        for (int i = 0; i < 3; i++) {
            h_pump(s[i], 20);
            count_json_seqs(s[i]->out, seen, N);
        }
        for (int k = 1; k <= N; k++)
            total += seen[k];
    } while (total < N && h_now_ms() < deadline);
    for (int k = 1; k <= N; k++)
        cr_assert_eq(seen[k], 1, "message %d printed %d times", k, seen[k]);
    for (int i = 0; i < 3; i++) {
        int n = h_count(s[i]->out, "\"seq\":");
        cr_log_info("sub %d printed %d", i, n);
        cr_assert(n >= N / 10, "sub %d printed %d of %d", i, n, N);
    }
    for (int i = 0; i < 3; i++)
        h_free(s[i]);
    stop_broker(b);
}

/* Retention takes messages before the group hands them out (a member that
 * does not read, a 1 MiB retention): the member is told by a GAP frame
 * naming its sid, and every message is either delivered once or inside a
 * GAP, none both. */
/* A raw version-2 connection named name, joined to queue group "q" on
 * topic as sid 1: returned once the broker said OK. */
static h_raw raw_member(int port, const char *name, const char *topic)
{
    h_raw r = h_raw_connect(port);
    vg_buf out = {0};
    cr_assert_eq(vg_frame_put_connect2(&out, 2, name, NULL, 0, 1), VG_OK);
    cr_assert_eq(vg_frame_put_sub_queue(&out, 1, topic, strlen(topic), VG_SUB_NEW, 0, 0, NULL, 0,
                                        "q", 1),
                 VG_OK);
    h_raw_send_buf(&r, &out);
    vg_buf_free(&out);
    vg_frame f;
    do
        cr_assert(h_raw_read(&r, &f, WAIT), "waiting for %s's queue SUB's OK", name);
    while (f.type != VG_FRAME_OK);
    return r;
}

Test(queue, what_retention_took_before_the_group_read_it_is_a_gap_to_a_member)
{
    enum { N = 1500, SIZE = 4000 };
    int port;
    h_proc *b = h_broker(&port, "--retention-bytes", "1M", NULL);
    h_raw r = raw_member(port, "gapped", "gq");
    vg_buf out = {0};
    vg_frame f;
    /* 6 MB while the member reads nothing: its inbox fills (1 MiB), the
     * rest waits in the log, and retention drops the oldest of it. */
    h_raw pub = h_raw_connect(port);
    cr_assert_eq(vg_frame_put_connect2(&out, 2, "gap-pub", NULL, 0, 1), VG_OK);
    static char payload[SIZE];
    memset(payload, 'p', sizeof payload);
    for (int i = 0; i < N; i++)
        cr_assert_eq(vg_frame_put_msg(&out, VG_FRAME_MSG_TYPE1, "gq", 2, payload, SIZE), VG_OK);
    vg_frame_put_ping(&out);
    h_raw_send_buf(&pub, &out);
    do
        cr_assert(h_raw_read(&pub, &f, WAIT), "waiting for the PONG after %d messages", N);
    while (f.type != VG_FRAME_PONG);
    static uint8_t seen[N + 1];
    int msgs = 0, told = 0, gaps = 0;
    while (msgs + told < N) {
        cr_assert(h_raw_read(&r, &f, WAIT), "%d delivered and %d told as gaps of %d", msgs, told,
                  N);
        if (f.type == VG_FRAME_GAP) {
            cr_assert_eq(f.sid, 1, "a GAP naming sid %llu", (unsigned long long)f.sid);
            cr_assert_eq(f.code, VG_GAP_RETENTION);
            cr_assert(f.from >= 1 && f.from <= f.to && f.to <= N, "GAP %llu..%llu",
                      (unsigned long long)f.from, (unsigned long long)f.to);
            for (uint64_t s = f.from; s <= f.to; s++) {
                cr_assert_eq(seen[s], 0, "seq %llu told twice", (unsigned long long)s);
                seen[s] = 2;
            }
            told += (int)(f.to - f.from + 1);
            gaps++;
            continue;
        }
        cr_assert(vg_frame_is_msg(f.type) && f.form == 3, "frame type %d form %d", f.type, f.form);
        cr_assert(f.seq >= 1 && f.seq <= N && seen[f.seq] == 0, "seq %llu twice or out of range",
                  (unsigned long long)f.seq);
        seen[f.seq] = 1;
        msgs++;
        if (msgs % 64 == 0) { /* keeps it under the 1,024 in flight */
            cr_assert_eq(vg_frame_put_ack_topic(&out, 1, f.seq, "gq", 2), VG_OK);
            h_raw_send_buf(&r, &out);
        }
    }
    cr_assert_gt(gaps, 0, "retention took nothing: %d delivered", msgs);
    cr_assert_gt(msgs, 0);
    vg_buf_free(&out);
    h_raw_close(&pub);
    h_raw_close(&r);
    stop_broker(b);
}

/* A member that reads its messages but never acknowledges them (its
 * connection stays healthy: the heartbeat has nothing to say) keeps them
 * only for --ack-wait: then they go to another member, each once. */
Test(queue, a_member_that_never_acknowledges_loses_its_messages_to_another_after_the_ack_wait)
{
    enum { N = 20 };
    int port;
    h_proc *b = h_broker(&port, "--ack-wait", h_secs(0.5), NULL);
    h_raw lazy = raw_member(port, "lazy", "aw.work");
    vg_frame f;
    int64_t t0 = h_now_ms();
    cr_assert_eq(h_pub(port, "--count", "20", "aw.work", "job-{n}", NULL), 0);
    for (int i = 1; i <= N; i++) {
        do
            cr_assert(h_raw_read(&lazy, &f, WAIT), "waiting for message %d at the only member", i);
        while (!vg_frame_is_msg(f.type));
        cr_assert_eq(f.seq, (uint64_t)i);
    }
    /* A second member, which acknowledges (the client library's). */
    h_proc *s = h_sub(port, "--json", "--queue", "q", "aw.work", NULL);
    static uint8_t seen[N + 1];
    int64_t deadline = h_now_ms() + WAIT;
    int total;
    do {
        h_pump(s, 20);
        memset(seen, 0, sizeof seen);
        count_json_seqs(s->out, seen, N);
        total = 0;
        for (int k = 1; k <= N; k++)
            total += seen[k] > 0;
    } while (total < N && h_now_ms() < deadline);
    int64_t took = h_now_ms() - t0;
    for (int k = 1; k <= N; k++)
        cr_assert_eq(seen[k], 1, "message %d reached the second member %d times (waiting for all %d)",
                     k, seen[k], N);
    cr_assert(took >= h_ms(500), "given back after %lld ms, before the ack wait", (long long)took);
    h_proc *v = h_sub(port, "--count", "1", "$SYS.varz", NULL);
    cr_assert(h_wait_exit(v, WAIT) && h_exit_code(v) == 0, "waiting for $SYS.varz: %s", v->err);
    cr_assert(strstr(v->out, "\"redelivered\":20}") != NULL, "20 given back: %s", v->out);
    h_free(v);
    /* The lazy member is still served: nothing ended it. */
    cr_assert(strstr(b->err, "event=evict") == NULL && strstr(b->err, "name=lazy") != NULL, "%s",
              b->err);
    h_free(s);
    h_raw_close(&lazy);
    stop_broker(b);
}
