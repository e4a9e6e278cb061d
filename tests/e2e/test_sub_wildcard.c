/* sub with patterns (issue 12), against the real broker and pub: a message
 * that several of sub's subjects match is printed once, with its topic;
 * topics a pattern does not match, and $SYS topics for a pattern that
 * begins with a wildcard, are not printed; --since first reads each
 * matching topic's retained messages; after a connection is lost, a
 * pattern resumes each topic after its last message printed (POS frames,
 * then SUB SEQ 0) and reads a topic created meanwhile from its first. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static double scale(void)
{
    const char *s = getenv("VIGIL_TEST_TIME_SCALE");
    double v = s != NULL ? atof(s) : 1.0;
    return v >= 1.0 ? v : 1.0;
}

/* Decimal seconds, scaled, as a command-line argument. */
static const char *secs(double s)
{
    static char buf[8][16];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], "%.3f", s * scale());
    return buf[i];
}

#define WAIT ((int)(10000 * scale()))
#define KA "--keepalive-time", secs(0.5), "--keepalive-interval", secs(0.25), "--keepalive-probes", "2"
#define FAST_RETRY "--backoff-base", "0.05", "--backoff-max", "0.2"

Test(sub_wildcard, overlapping_subjects_print_each_message_once_with_its_topic)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_proc *s = h_sub(port, "--count", "3", "w.*", "w.>", "w.a", NULL);
    cr_assert_eq(h_pub(port, "x.a", "not matched", NULL), 0);
    cr_assert_eq(h_pub(port, "w.a", "one", NULL), 0);
    cr_assert_eq(h_pub(port, "w.b", "two", NULL), 0);
    cr_assert_eq(h_pub(port, "w.a.b", "three", NULL), 0);
    cr_assert(h_wait_exit(s, WAIT), "sub did not finish: %s", s->out);
    cr_assert_eq(h_exit_code(s), 0, "%s", h_tail(s->err));
    cr_assert_str_eq(s->out, "w.a MSG_TYPE1 one\nw.b MSG_TYPE1 two\nw.a.b MSG_TYPE1 three\n");
    h_free(s);
    h_free(b);
}

Test(sub_wildcard, since_first_reads_every_matching_topic_and_no_sys_topic)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    cr_assert_eq(h_pub(port, "r.a", "a1", NULL), 0);
    cr_assert_eq(h_pub(port, "r.b", "b1", NULL), 0);
    cr_assert_eq(h_pub(port, "r.a", "a2", NULL), 0);
    cr_assert_eq(h_pub(port, "q.a", "other", NULL), 0);
    h_proc *s = h_sub(port, "--since", "first", "--count", "4", "r.*", "*.stats", NULL);
    cr_assert(h_wait_out(s, "a2\n", WAIT), "got: %s", s->out);
    cr_assert_eq(h_pub(port, "r.c", "c1", NULL), 0);
    cr_assert(h_wait_exit(s, WAIT), "sub did not finish: %s", s->out);
    cr_assert_eq(h_exit_code(s), 0, "%s", h_tail(s->err));
    /* Each topic's messages in order; the topics in any order. */
    const char *a1 = strstr(s->out, "r.a MSG_TYPE1 a1\n"), *a2 = strstr(s->out, "r.a MSG_TYPE1 a2\n");
    cr_assert(a1 != NULL && a2 != NULL && a1 < a2, "got: %s", s->out);
    cr_assert(strstr(s->out, "r.b MSG_TYPE1 b1\n") != NULL, "got: %s", s->out);
    cr_assert(strstr(s->out, "r.c MSG_TYPE1 c1\n") != NULL, "got: %s", s->out);
    cr_assert_eq(h_count(s->out, "\n"), 4, "got: %s", s->out);
    cr_assert_eq(h_count(s->out, "$SYS"), 0, "*.stats matched a $SYS topic: %s", s->out);
    cr_assert_eq(h_count(s->err, "event=gap"), 0, "%s", s->err);
    h_free(s);
    h_free(b);
}

Test(sub_wildcard, a_pattern_resumes_its_topics_after_a_lost_connection)
{
    int port, pport;
    h_proc *b = h_broker(&port, KA, NULL);
    h_proc *px = h_proxy(port, &pport);
    h_proc *s = h_sub(pport, KA, FAST_RETRY, "--count", "7", "m.*", NULL);
    cr_assert_eq(h_pub(port, "m.a", "a1", NULL), 0);
    cr_assert_eq(h_pub(port, "m.b", "b1", NULL), 0);
    cr_assert(h_wait_out(s, "m.b MSG_TYPE1 b1\n", WAIT), "got: %s", s->out);

    h_signal(px, SIGUSR1); /* the path goes dead: sub finds out by its heartbeat */
    cr_assert(h_wait_err(px, "event=blackholed connections=1", WAIT));
    cr_assert_eq(h_pub(port, "m.a", "a2", NULL), 0);
    cr_assert_eq(h_pub(port, "m.b", "b2", NULL), 0);
    cr_assert_eq(h_pub(port, "m.new", "n1", NULL), 0);
    cr_assert(h_wait_err(s, "event=reconnected", WAIT), "%s", h_tail(s->err));
    cr_assert_eq(h_pub(port, "m.a", "a3", NULL), 0);
    cr_assert_eq(h_pub(port, "m.new", "n2", NULL), 0);
    cr_assert(h_wait_exit(s, WAIT), "sub did not get 7 messages: %s\n%s", s->out, h_tail(s->err));
    cr_assert_eq(h_exit_code(s), 0, "%s", h_tail(s->err));
    const char *order[][3] = {{"m.a MSG_TYPE1 a1\n", "m.a MSG_TYPE1 a2\n", "m.a MSG_TYPE1 a3\n"},
                              {"m.b MSG_TYPE1 b1\n", "m.b MSG_TYPE1 b2\n", NULL},
                              {"m.new MSG_TYPE1 n1\n", "m.new MSG_TYPE1 n2\n", NULL}};
    for (int t = 0; t < 3; t++) {
        const char *at = s->out;
        for (int i = 0; i < 3 && order[t][i] != NULL; i++) {
            const char *hit = strstr(at, order[t][i]);
            cr_assert(hit != NULL, "missing or out of order: %s in %s", order[t][i], s->out);
            at = hit + 1;
        }
    }
    cr_assert_eq(h_count(s->out, "\n"), 7, "a message printed twice: %s", s->out);
    cr_assert_eq(h_count(s->err, "event=gap"), 0, "%s", s->err);
    h_free(s);
    h_free(px);
    h_free(b);
}
