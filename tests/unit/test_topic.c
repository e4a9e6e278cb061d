/* Topic syntax: dot-separated non-empty tokens of printable ASCII, with
 * wildcard characters reserved and length and token limits enforced. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto.h"
#include "status.h"
#include "topic.h"

#define MAX_LEN VG_DEFAULT_TOPIC_MAX_LEN
#define MAX_TOKENS VG_DEFAULT_TOPIC_MAX_TOKENS

static vg_status check_n(const char *t, size_t len, size_t max_len, size_t max_tokens)
{
    const char *why = NULL;
    vg_status st = vg_topic_check(t, len, max_len, max_tokens, &why);
    if (st != VG_OK) {
        cr_assert_not_null(why, "rejected without a reason");
        cr_assert_neq(why[0], '\0');
    }
    /* A NULL why must give the same answer without crashing. */
    cr_assert_eq(vg_topic_check(t, len, max_len, max_tokens, NULL), st);
    return st;
}

static void expect_ok(const char *t)
{
    cr_assert_eq(check_n(t, strlen(t), MAX_LEN, MAX_TOKENS), VG_OK, "\"%s\" refused", t);
}

static void expect_bad(const char *t)
{
    cr_assert_eq(check_n(t, strlen(t), MAX_LEN, MAX_TOKENS), VG_ERR_BAD_TOPIC,
                 "\"%s\" accepted", t);
}

Test(topic, valid)
{
    expect_ok("a");
    expect_ok("news");
    expect_ok("a.b.c");
    expect_ok("$SYS.stats");
    expect_ok("x-y_z:1");
    expect_ok("A.Z.0.9");
    expect_ok("~!@#%^&()+=[]{}|;'\",<?/`");
}

Test(topic, empty_tokens)
{
    expect_bad("");
    expect_bad(".");
    expect_bad("..");
    expect_bad("a.");
    expect_bad(".a");
    expect_bad("a..b");
    expect_bad("a.b.");
}

Test(topic, spaces_controls_and_non_ascii)
{
    expect_bad("a b");
    expect_bad(" a");
    expect_bad("a ");
    expect_bad("tab\t");
    expect_bad("new\nline");
    expect_bad("del\x7f");
    expect_bad("caf\xc3\xa9");
    static const char lone[] = {(char)0xc3};
    cr_assert_eq(check_n(lone, 1, MAX_LEN, MAX_TOKENS), VG_ERR_BAD_TOPIC);
    static const char high[] = {'a', (char)0x80, 'b'};
    cr_assert_eq(check_n(high, 3, MAX_LEN, MAX_TOKENS), VG_ERR_BAD_TOPIC);
}

Test(topic, wildcards_reserved)
{
    expect_bad("*");
    expect_bad(">");
    expect_bad("a.*");
    expect_bad("a.>");
    expect_bad("*.a");
    expect_bad("foo*bar");
    expect_bad("foo>bar");
}

Test(topic, embedded_nul_rejected)
{
    static const char t[] = "ab\0cd"; /* len counts the NUL */
    cr_assert_eq(check_n(t, 5, MAX_LEN, MAX_TOKENS), VG_ERR_BAD_TOPIC);
    static const char trailing[] = "abc"; /* the terminator itself, included by mistake */
    cr_assert_eq(check_n(trailing, sizeof trailing, MAX_LEN, MAX_TOKENS), VG_ERR_BAD_TOPIC);
    /* The same bytes without the NUL are fine: len is honoured, not strlen. */
    cr_assert_eq(check_n(t, 2, MAX_LEN, MAX_TOKENS), VG_OK);
}

Test(topic, length_limit)
{
    char buf[VG_TOPIC_MAX_LEN + 2];
    memset(buf, 'x', sizeof buf);
    cr_assert_eq(check_n(buf, MAX_LEN, MAX_LEN, MAX_TOKENS), VG_OK, "exactly max_len");
    cr_assert_eq(check_n(buf, MAX_LEN + 1, MAX_LEN, MAX_TOKENS), VG_ERR_BAD_TOPIC,
                 "max_len + 1");
    cr_assert_eq(check_n(buf, VG_TOPIC_MAX_LEN, VG_TOPIC_MAX_LEN, MAX_TOKENS), VG_OK);
    cr_assert_eq(check_n(buf, VG_TOPIC_MAX_LEN + 1, VG_TOPIC_MAX_LEN, MAX_TOKENS),
                 VG_ERR_BAD_TOPIC);
    cr_assert_eq(check_n(buf, 1, 1, 1), VG_OK);
    cr_assert_eq(check_n(buf, 2, 1, 1), VG_ERR_BAD_TOPIC);
}

/* Builds "a.a.a..." with n tokens into buf; returns its length. */
static size_t tokens(char *buf, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            buf[len++] = '.';
        buf[len++] = 'a';
    }
    return len;
}

Test(topic, token_limit)
{
    char buf[256];
    size_t len = tokens(buf, MAX_TOKENS);
    cr_assert_eq(check_n(buf, len, MAX_LEN, MAX_TOKENS), VG_OK, "exactly max_tokens");
    len = tokens(buf, MAX_TOKENS + 1);
    cr_assert_eq(check_n(buf, len, MAX_LEN, MAX_TOKENS), VG_ERR_BAD_TOPIC, "max_tokens + 1");

    len = tokens(buf, 1);
    cr_assert_eq(check_n(buf, len, MAX_LEN, 1), VG_OK);
    len = tokens(buf, 2);
    cr_assert_eq(check_n(buf, len, MAX_LEN, 1), VG_ERR_BAD_TOPIC);
    len = tokens(buf, 100);
    cr_assert_eq(check_n(buf, len, MAX_LEN, 100), VG_OK);
    cr_assert_eq(check_n(buf, len, MAX_LEN, 99), VG_ERR_BAD_TOPIC);
}

Test(topic, both_limits_at_once)
{
    /* max_tokens tokens filling exactly max_len bytes. */
    char buf[64];
    size_t max_len = 31, max_tokens = 4;
    memcpy(buf, "aaaaaaa.bbbbbbb.ccccccc.ddddddd", 31);
    cr_assert_eq(check_n(buf, 31, max_len, max_tokens), VG_OK);
    cr_assert_eq(check_n(buf, 31, max_len - 1, max_tokens), VG_ERR_BAD_TOPIC);
    cr_assert_eq(check_n(buf, 31, max_len, max_tokens - 1), VG_ERR_BAD_TOPIC);
}

Test(topic, system_topics_are_recognised_by_first_token)
{
    cr_assert(vg_topic_is_system("$SYS", 4));
    cr_assert(vg_topic_is_system("$SYS.stats", 10));
    cr_assert_not(vg_topic_is_system("$SYSTEM.x", 9));
    cr_assert_not(vg_topic_is_system("a.$SYS", 6));
    cr_assert_not(vg_topic_is_system("$SY", 3));
}
