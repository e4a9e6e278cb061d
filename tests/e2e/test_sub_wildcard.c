/* sub with patterns (issue 12), against the real broker and pub: a message
 * that several of sub's subjects match is printed once, with its topic;
 * topics a pattern does not match, and $SYS topics for a pattern that
 * begins with a wildcard, are not printed; --since first reads each
 * matching topic's retained messages. */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"

#define WAIT 10000

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
