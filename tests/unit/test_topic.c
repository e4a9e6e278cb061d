/* Topic and subject syntax: dot-separated non-empty tokens of printable
 * ASCII, length and token limits; wildcards refused in topics, allowed as
 * whole tokens in subjects; and the reference matcher. */
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
    const char *why = NULL;
    cr_assert_eq(vg_topic_check("a.*", 3, MAX_LEN, MAX_TOKENS, &why), VG_ERR_BAD_TOPIC);
    cr_assert_not_null(strstr(why, "wildcards"), "why: %s", why);
    cr_assert_not_null(strstr(why, "subscriptions"), "why: %s", why);
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

/* Subjects (the SUB side). */

static vg_status subj_n(const char *s, size_t len, size_t max_len, size_t max_tokens,
                        const char **why)
{
    const char *w = NULL;
    vg_status st = vg_subject_check(s, len, max_len, max_tokens, &w);
    if (st != VG_OK) {
        cr_assert_not_null(w, "rejected without a reason");
        cr_assert_neq(w[0], '\0');
    }
    cr_assert_eq(vg_subject_check(s, len, max_len, max_tokens, NULL), st);
    if (why != NULL)
        *why = w;
    return st;
}

static void subj_ok(const char *s)
{
    cr_assert_eq(subj_n(s, strlen(s), MAX_LEN, MAX_TOKENS, NULL), VG_OK, "\"%s\" refused", s);
}

/* Refused, with a reason containing `why_has`. */
static void subj_bad(const char *s, const char *why_has)
{
    const char *why = NULL;
    cr_assert_eq(subj_n(s, strlen(s), MAX_LEN, MAX_TOKENS, &why), VG_ERR_BAD_TOPIC,
                 "\"%s\" accepted", s);
    cr_assert_not_null(strstr(why, why_has), "\"%s\": why \"%s\", wanted \"%s\"", s, why,
                       why_has);
}

Test(subject, topics_are_subjects)
{
    subj_ok("a");
    subj_ok("a.b.c");
    subj_ok("$SYS.stats");
    subj_ok("~!@#%^&()+=[]{}|;'\",<?/`");
}

Test(subject, whole_token_wildcards)
{
    subj_ok("*");
    subj_ok(">");
    subj_ok("a.*");
    subj_ok("*.a");
    subj_ok("a.>");
    subj_ok("*.*.>");
    subj_ok("a.*.b.>");
    subj_ok("$SYS.>");
    subj_ok("$SYS.*");
}

Test(subject, partial_or_misplaced_wildcards)
{
    subj_bad("a*", "'*' must be a whole token");
    subj_bad("*a", "'*' must be a whole token");
    subj_bad("a.**", "'*' must be a whole token");
    subj_bad("a.b*c", "'*' must be a whole token");
    subj_bad(">b", "'>' must be a whole token");
    subj_bad("a.b>", "'>' must be a whole token");
    subj_bad(">>", "'>' must be a whole token");
    subj_bad("*>", "'*' must be a whole token");
    subj_bad(">.a", "'>' must be the last token");
    subj_bad("a.>.b", "'>' must be the last token");
    subj_bad(">.>", "'>' must be the last token");
    subj_bad(">.*", "'>' must be the last token");
}

Test(subject, shared_rules)
{
    subj_bad("", "empty");
    subj_bad(".", "empty token");
    subj_bad("a..*", "empty token");
    subj_bad("*.", "empty token");
    subj_bad(".>", "empty token");
    subj_bad("a.>.", "token"); /* either reason is right */
    subj_bad("a b.*", "space");
    subj_bad("a.\x01", "control");
    static const char nul[] = "a.*\0";
    cr_assert_eq(subj_n(nul, 4, MAX_LEN, MAX_TOKENS, NULL), VG_ERR_BAD_TOPIC);
    cr_assert_eq(subj_n(nul, 3, MAX_LEN, MAX_TOKENS, NULL), VG_OK);
}

Test(subject, limits)
{
    char buf[256];
    size_t len = tokens(buf, MAX_TOKENS - 1);
    memcpy(buf + len, ".>", 2);
    cr_assert_eq(subj_n(buf, len + 2, MAX_LEN, MAX_TOKENS, NULL), VG_OK, "max_tokens with >");
    memcpy(buf + len, ".*.>", 4);
    cr_assert_eq(subj_n(buf, len + 4, MAX_LEN, MAX_TOKENS, NULL), VG_ERR_BAD_TOPIC);
    cr_assert_eq(subj_n("*.*", 3, 3, 2, NULL), VG_OK);
    cr_assert_eq(subj_n("*.*", 3, 2, 2, NULL), VG_ERR_BAD_TOPIC);
    cr_assert_eq(subj_n("*.*", 3, 3, 1, NULL), VG_ERR_BAD_TOPIC);
}

#define IS_PAT(s) vg_subject_is_pattern((s), strlen(s))

Test(subject, is_pattern)
{
    cr_assert(IS_PAT("*"));
    cr_assert(IS_PAT(">"));
    cr_assert(IS_PAT("a.*"));
    cr_assert(IS_PAT("*.a"));
    cr_assert(IS_PAT("a.*.b"));
    cr_assert(IS_PAT("a.>"));
    cr_assert_not(IS_PAT("a"));
    cr_assert_not(IS_PAT("a.b.c"));
    cr_assert_not(IS_PAT("$SYS.stats"));
    /* Only the given length counts. */
    cr_assert_not(vg_subject_is_pattern("a.>", 1));
}

#define MATCH(p, t) vg_subject_matches((p), strlen(p), (t), strlen(t))

Test(subject, literal_matches_only_itself)
{
    cr_assert(MATCH("a", "a"));
    cr_assert(MATCH("a.b.c", "a.b.c"));
    cr_assert_not(MATCH("a.b", "a.b.c"));
    cr_assert_not(MATCH("a.b.c", "a.b"));
    cr_assert_not(MATCH("a.b", "a.c"));
    cr_assert_not(MATCH("ab", "a"));
    cr_assert_not(MATCH("a", "ab"));
    cr_assert_not(MATCH("a.bc", "a.b"));
    cr_assert(MATCH("$SYS.stats", "$SYS.stats"));
}

Test(subject, star_is_exactly_one_token)
{
    cr_assert(MATCH("*", "a"));
    cr_assert(MATCH("*", "abc"));
    cr_assert_not(MATCH("*", "a.b"));
    cr_assert(MATCH("a.*", "a.b"));
    cr_assert_not(MATCH("a.*", "a"));
    cr_assert_not(MATCH("a.*", "a.b.c"));
    cr_assert(MATCH("*.b", "a.b"));
    cr_assert_not(MATCH("*.b", "a.c"));
    cr_assert(MATCH("a.*.c", "a.x.c"));
    cr_assert_not(MATCH("a.*.c", "a.c"));
    cr_assert_not(MATCH("a.*.c", "a.x.y.c"));
    cr_assert(MATCH("*.*", "a.b"));
    cr_assert_not(MATCH("*.*", "a"));
    /* '*' only as a whole token is a wildcard. */
    cr_assert_not(MATCH("a.*", "b.c"));
}

Test(subject, gt_is_one_or_more_trailing)
{
    cr_assert(MATCH(">", "a"));
    cr_assert(MATCH(">", "a.b.c"));
    cr_assert(MATCH("a.>", "a.b"));
    cr_assert(MATCH("a.>", "a.b.c.d"));
    cr_assert_not(MATCH("a.>", "a"), "'>' needs at least one token");
    cr_assert_not(MATCH("a.>", "b.c"));
    cr_assert_not(MATCH("a.>", "ab.c"));
    cr_assert(MATCH("*.>", "a.b"));
    cr_assert_not(MATCH("*.>", "a"));
    cr_assert(MATCH("a.*.>", "a.b.c"));
    cr_assert_not(MATCH("a.*.>", "a.b"));
}

Test(subject, sys_topics_need_a_literal_first_token)
{
    cr_assert_not(MATCH(">", "$SYS.stats"));
    cr_assert_not(MATCH("*.stats", "$SYS.stats"));
    cr_assert_not(MATCH("*", "$SYS"));
    cr_assert_not(MATCH("*.>", "$SYS.a.b"));
    cr_assert(MATCH("$SYS.>", "$SYS.stats"));
    cr_assert(MATCH("$SYS.*", "$SYS.stats"));
    cr_assert(MATCH("$SYS.stats", "$SYS.stats"));
    /* Only the exact first token "$SYS" is protected. */
    cr_assert(MATCH(">", "$SYSTEM.x"));
    cr_assert(MATCH("*", "$SYSx"));
    cr_assert(MATCH("*.$SYS", "a.$SYS"));
    cr_assert(MATCH("a.>", "a.$SYS"));
}

Test(subject, lengths_are_honoured)
{
    /* Bytes past the given lengths never count. */
    cr_assert(vg_subject_matches("a.>", 3, "a.bXXXX", 3));
    cr_assert_not(vg_subject_matches("a.*", 3, "a.b.c", 1));
    cr_assert(vg_subject_matches("a.b.c", 3, "a.b", 3));
    cr_assert_not(vg_subject_matches("a", 1, "a.b", 3));
}

Test(subject, many_tokens)
{
    char pat[256], top[256];
    size_t tl = tokens(top, MAX_TOKENS);
    size_t pl = tokens(pat, MAX_TOKENS);
    cr_assert(vg_subject_matches(pat, pl, top, tl));
    pat[pl - 1] = '*';
    cr_assert(vg_subject_matches(pat, pl, top, tl));
    pat[pl - 1] = '>';
    cr_assert(vg_subject_matches(pat, pl, top, tl));
    cr_assert_not(vg_subject_matches(pat, pl, top, tl - 2), "one token short");
    cr_assert(vg_subject_matches(">", 1, top, tl));
}
