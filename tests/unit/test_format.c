/* sub's output formats: text, raw and JSON, byte for byte. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "frame.h"

/* What one sub_fmt_write call printed. */
typedef struct {
    bool printed;
    char *out; /* malloc'd, NUL-terminated; out_len may count NULs inside */
    size_t out_len;
} rendered;

static rendered render_type(sub_fmt *f, vg_frame_type type, const char *topic, size_t topic_len,
                            const void *payload, size_t payload_len)
{
    rendered r = {0};
    FILE *m = open_memstream(&r.out, &r.out_len);
    cr_assert(m != NULL);
    r.printed = sub_fmt_write(f, m, type == VG_FRAME_MSG_TYPE2 ? 2 : 1, topic, topic_len, payload, payload_len, 0, 0);
    cr_assert(!ferror(m));
    cr_assert_eq(fclose(m), 0);
    if (r.printed) { /* whatever the bytes, one message is one line */
        cr_assert(r.out_len > 0 && r.out[r.out_len - 1] == '\n', "no newline at the end");
        cr_assert(memchr(r.out, '\n', r.out_len - 1) == NULL, "a second line: %s", r.out);
    } else {
        cr_assert_eq(r.out_len, 0, "skipped, yet printed: %s", r.out);
    }
    return r;
}

static rendered render(sub_fmt *f, const char *topic, const void *payload, size_t payload_len)
{
    return render_type(f, VG_FRAME_MSG_TYPE1, topic, strlen(topic), payload, payload_len);
}

/* Formats one TYPE1 message and asserts the exact bytes printed. */
static void expect_bytes(sub_format format, const char *topic, size_t topic_len,
                         const void *payload, size_t payload_len, const char *want,
                         size_t want_len)
{
    sub_fmt f;
    sub_fmt_init(&f, format);
    rendered r = render_type(&f, VG_FRAME_MSG_TYPE1, topic, topic_len, payload, payload_len);
    cr_assert(r.printed);
    cr_assert_eq(r.out_len, want_len, "got %zu bytes: %s\nwant %zu: %s", r.out_len, r.out,
                 want_len, want);
    cr_assert(memcmp(r.out, want, want_len) == 0, "got:  %s\nwant: %s", r.out, want);
    cr_assert_eq(f.skipped, 0);
    free(r.out);
}

/* The same for a topic and a payload without NUL bytes. */
static void expect(sub_format format, const char *topic, const char *payload, const char *want)
{
    expect_bytes(format, topic, strlen(topic), payload, strlen(payload), want, strlen(want));
}

/* ---- stderr capture, for the skip log lines (vg_log writes fd 2) ---- */

typedef struct {
    int saved;
    FILE *file;
} capture;

static capture capture_stderr(void)
{
    capture c = {.saved = dup(STDERR_FILENO), .file = tmpfile()};
    cr_assert(c.saved >= 0 && c.file != NULL);
    cr_assert(dup2(fileno(c.file), STDERR_FILENO) >= 0);
    return c;
}

/* Restores stderr; returns what was written meanwhile (malloc'd). */
static char *captured(capture *c)
{
    cr_assert(dup2(c->saved, STDERR_FILENO) >= 0);
    close(c->saved);
    long n = ftell(c->file);
    cr_assert(n >= 0);
    char *s = calloc(1, (size_t)n + 1);
    cr_assert(s != NULL);
    rewind(c->file);
    cr_assert_eq(fread(s, 1, (size_t)n, c->file), (size_t)n);
    fclose(c->file);
    return s;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *q = strstr(s, needle); q != NULL; q = strstr(q + 1, needle))
        n++;
    return n;
}

/* ---- text ---- */

Test(text, keeps_the_format_scripts_depend_on)
{
    expect(SUB_FMT_TEXT, "news", "hello world", "news MSG_TYPE1 hello world\n");
    expect(SUB_FMT_TEXT, "news", "", "news MSG_TYPE1 \n");
    sub_fmt f;
    sub_fmt_init(&f, SUB_FMT_TEXT);
    rendered r = render_type(&f, VG_FRAME_MSG_TYPE2, "a.b", 3, "x", 1);
    cr_assert_str_eq(r.out, "a.b MSG_TYPE2 x\n");
    free(r.out);
}

Test(text, escapes_every_control_byte_del_and_backslash)
{
    static const char payload[] = "a\nb\tc\rd\\e\x01"
                                  "f\x1f"
                                  "g\x7f"
                                  "h\0i\x1b[2J";
    static const char want[] = "t MSG_TYPE1 a\\nb\\tc\\rd\\\\e\\x01f\\x1fg\\x7fh\\x00i\\x1b[2J\n";
    expect_bytes(SUB_FMT_TEXT, "t", 1, payload, sizeof payload - 1, want, sizeof want - 1);
}

Test(text, leaves_other_bytes_as_they_are)
{
    /* UTF-8 stays readable; invalid bytes from 0x80 are not control bytes. */
    expect(SUB_FMT_TEXT, "t", "caf\xc3\xa9 \"q\" / \x80\xff", "t MSG_TYPE1 caf\xc3\xa9 \"q\" / \x80\xff\n");
}

Test(text, escapes_a_hostile_topic_like_the_payload)
{
    /* A broker cannot forge a second line, nor send the terminal a command. */
    static const char topic[] = "evil\nnews MSG_TYPE1 forged\r\x1b]0;pwned\x07\\\0end";
    static const char want[] =
        "evil\\nnews MSG_TYPE1 forged\\r\\x1b]0;pwned\\x07\\\\\\x00end MSG_TYPE1 x\n";
    expect_bytes(SUB_FMT_TEXT, topic, sizeof topic - 1, "x", 1, want, sizeof want - 1);
}

/* ---- raw ---- */

Test(raw, prints_the_payload_byte_for_byte)
{
    expect(SUB_FMT_RAW, "news", "{\"path\":\"C:\\\\tmp\",\"s\":\"a\\\"b\\u00e9\"}",
           "{\"path\":\"C:\\\\tmp\",\"s\":\"a\\\"b\\u00e9\"}\n");
    static const char bin[] = "\0\x01\r\t\x1b\x7f\x80\xff\\";
    static const char want[] = "\0\x01\r\t\x1b\x7f\x80\xff\\\n";
    expect_bytes(SUB_FMT_RAW, "t", 1, bin, sizeof bin - 1, want, sizeof want - 1);
    expect(SUB_FMT_RAW, "t", "", "\n");
}

Test(raw, topic_is_not_printed)
{
    expect(SUB_FMT_RAW, "evil\nline", "ok", "ok\n");
}

Test(raw, payload_with_a_newline_is_skipped_logged_once_and_counted)
{
    sub_fmt f;
    sub_fmt_init(&f, SUB_FMT_RAW);
    capture c = capture_stderr();
    rendered a = render(&f, "news", "one\ntwo", 7);
    rendered b = render(&f, "news", "fine", 4);
    rendered d = render(&f, "other\x1b", "\n", 1);
    rendered e = render(&f, "news", "trailing\n", 9);
    sub_fmt_log_skipped(&f);
    char *err = captured(&c);

    cr_assert(!a.printed && b.printed && !d.printed && !e.printed);
    cr_assert_str_eq(b.out, "fine\n");
    cr_assert_eq(f.skipped, 3);
    cr_assert_eq(count(err, "\n"), 2, "%s", err);
    cr_assert_eq(count(err, "level=warn event=skipped reason=newline_in_payload topic=news bytes=7\n"), 1,
                 "%s", err);
    cr_assert_eq(count(err, "level=warn event=skipped reason=newline_in_payload total=3\n"), 1, "%s", err);
    free(a.out), free(b.out), free(d.out), free(e.out), free(err);
}

Test(raw, first_skip_quotes_a_hostile_topic)
{
    sub_fmt f;
    sub_fmt_init(&f, SUB_FMT_RAW);
    capture c = capture_stderr();
    rendered a = render(&f, "a\nb=\"c\"\x1b", "x\ny", 3);
    char *err = captured(&c);
    cr_assert(!a.printed);
    cr_assert(strstr(err, " topic=\"a\\x0ab=\\\"c\\\"\\x1b\" bytes=3\n") != NULL, "%s", err);
    cr_assert_eq(count(err, "\n"), 1, "%s", err);
    free(a.out), free(err);
}

Test(raw, nothing_skipped_logs_nothing_at_exit)
{
    sub_fmt f;
    sub_fmt_init(&f, SUB_FMT_RAW);
    capture c = capture_stderr();
    sub_fmt_log_skipped(&f);
    char *err = captured(&c);
    cr_assert_str_eq(err, "");
    free(err);
}

Test(raw, other_formats_never_skip)
{
    expect(SUB_FMT_TEXT, "t", "a\nb", "t MSG_TYPE1 a\\nb\n");
    expect(SUB_FMT_JSON, "t", "a\nb", "{\"topic\":\"t\",\"type\":\"MSG_TYPE1\",\"payload\":\"a\\nb\"}\n");
}

/* ---- JSON ---- */

Test(json, one_object_per_line)
{
    expect(SUB_FMT_JSON, "news", "hello", "{\"topic\":\"news\",\"type\":\"MSG_TYPE1\",\"payload\":\"hello\"}\n");
    sub_fmt f;
    sub_fmt_init(&f, SUB_FMT_JSON);
    rendered r = render_type(&f, VG_FRAME_MSG_TYPE2, "a.b", 3, "", 0);
    cr_assert_str_eq(r.out, "{\"topic\":\"a.b\",\"type\":\"MSG_TYPE2\",\"payload\":\"\"}\n");
    free(r.out);
}

Test(json, seq_and_epoch_follow_when_known)
{
    sub_fmt f;
    sub_fmt_init(&f, SUB_FMT_JSON);
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    cr_assert(m != NULL);
    cr_assert(sub_fmt_write(&f, m, 1, "news", 4, (const uint8_t *)"\xff", 1, 42,
                            UINT64_MAX));
    cr_assert(sub_fmt_write(&f, m, 2, "news", 4, (const uint8_t *)"hi", 2, 1, 7));
    cr_assert_eq(fclose(m), 0);
    cr_assert_str_eq(out, "{\"topic\":\"news\",\"type\":\"MSG_TYPE1\",\"payload\":\"/w==\","
                          "\"base64\":true,\"seq\":42,\"epoch\":18446744073709551615}\n"
                          "{\"topic\":\"news\",\"type\":\"MSG_TYPE2\",\"payload\":\"hi\","
                          "\"seq\":1,\"epoch\":7}\n");
    free(out);
}

Test(json, escapes_quotes_backslashes_and_every_control_character)
{
    static const char payload[] = "\"\\\b\f\n\r\t\x01\x1f\x7f / \x1b[0m";
    expect(SUB_FMT_JSON, "t", payload,
           "{\"topic\":\"t\",\"type\":\"MSG_TYPE1\",\"payload\":"
           "\"\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f / \\u001b[0m\"}\n");
}

Test(json, nul_byte_is_valid_utf8_and_escaped)
{
    static const char payload[] = "a\0b";
    static const char want[] = "{\"topic\":\"t\",\"type\":\"MSG_TYPE1\",\"payload\":\"a\\u0000b\"}\n";
    expect_bytes(SUB_FMT_JSON, "t", 1, payload, sizeof payload - 1, want, sizeof want - 1);
}

Test(json, line_and_paragraph_separators_are_escaped)
{
    /* U+2028 and U+2029 end a line in JavaScript; their neighbours do not. */
    expect(SUB_FMT_JSON, "t", "a\xe2\x80\xa8" "b\xe2\x80\xa9" "c\xe2\x80\xa7\xe2\x80\xaa",
           "{\"topic\":\"t\",\"type\":\"MSG_TYPE1\",\"payload\":"
           "\"a\\u2028b\\u2029c\xe2\x80\xa7\xe2\x80\xaa\"}\n");
}

Test(json, valid_multibyte_utf8_is_written_as_it_is)
{
    static const char *const valid[] = {
        "\xc2\x80",         /* U+0080, the first 2-byte */
        "caf\xc3\xa9",      /* é */
        "\xdf\xbf",         /* U+07FF, the last 2-byte */
        "\xe0\xa0\x80",     /* U+0800, the first 3-byte */
        "\xe2\x82\xac",     /* € */
        "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",     /* U+E000, just above them */
        "\xef\xbf\xbf",     /* U+FFFF */
        "\xf0\x90\x80\x80", /* U+10000, the first 4-byte */
        "\xf0\x9f\x98\x80", /* 😀 */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
    };
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
        cr_assert(sub_fmt_utf8_valid((const uint8_t *)valid[i], strlen(valid[i])), "case %zu", i);
        char want[128];
        snprintf(want, sizeof want, "{\"topic\":\"t\",\"type\":\"MSG_TYPE1\",\"payload\":\"%s\"}\n",
                 valid[i]);
        expect(SUB_FMT_JSON, "t", valid[i], want);
    }
    cr_assert(sub_fmt_utf8_valid((const uint8_t *)"", 0));
}

Test(json, invalid_utf8_of_every_kind_is_refused)
{
    static const struct {
        const char *bytes;
        const char *why;
    } invalid[] = {
        {"\xc0\x80", "overlong NUL"},
        {"\xc1\xbf", "overlong 2-byte"},
        {"\xe0\x80\x80", "overlong 3-byte"},
        {"\xe0\x9f\xbf", "overlong 3-byte, highest"},
        {"\xf0\x80\x80\x80", "overlong 4-byte"},
        {"\xf0\x8f\xbf\xbf", "overlong 4-byte, highest"},
        {"\xed\xa0\x80", "surrogate U+D800"},
        {"\xed\xbf\xbf", "surrogate U+DFFF"},
        {"\xed\xa0\xbd\xed\xb8\x80", "surrogate pair (CESU-8)"},
        {"\xf4\x90\x80\x80", "U+110000"},
        {"\xf5\x80\x80\x80", "lead byte f5"},
        {"\xff", "byte ff"},
        {"\xfe", "byte fe"},
        {"\x80", "lone continuation byte"},
        {"a\xbf", "lone continuation byte after ASCII"},
        {"\xc3", "truncated 2-byte"},
        {"\xe2\x82", "truncated 3-byte"},
        {"\xf0\x9f\x98", "truncated 4-byte"},
        {"\xc3(", "bad continuation"},
        {"\xe2\x82(", "bad third byte"},
        {"\xf0\x9f\x98(", "bad fourth byte"},
        {"ok\xe2\x80", "truncated U+2028 at the end"},
    };
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        const uint8_t *p = (const uint8_t *)invalid[i].bytes;
        size_t n = strlen(invalid[i].bytes);
        cr_assert(!sub_fmt_utf8_valid(p, n), "accepted: %s", invalid[i].why);
        sub_fmt f;
        sub_fmt_init(&f, SUB_FMT_JSON);
        rendered r = render(&f, "t", p, n);
        cr_assert(strstr(r.out, "\",\"base64\":true}\n") != NULL, "%s: %s", invalid[i].why, r.out);
        free(r.out);
    }
}

Test(json, binary_payload_is_base64_with_a_flag)
{
    expect(SUB_FMT_JSON, "news", "\xde\xad\xbe\xef",
           "{\"topic\":\"news\",\"type\":\"MSG_TYPE1\",\"payload\":\"3q2+7w==\",\"base64\":true}\n");
    static const char with_nul[] = "\0\xff\x01";
    static const char want[] =
        "{\"topic\":\"t\",\"type\":\"MSG_TYPE1\",\"payload\":\"AP8B\",\"base64\":true}\n";
    expect_bytes(SUB_FMT_JSON, "t", 1, with_nul, sizeof with_nul - 1, want, sizeof want - 1);
}

Test(json, base64_of_lengths_0_to_5)
{
    /* RFC 4648 section 10's test vectors. */
    static const char *const want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE="};
    for (size_t n = 0; n <= 5; n++) {
        char dst[16] = "";
        size_t k = sub_fmt_base64(dst, (const uint8_t *)"fooba", n);
        cr_assert_eq(k, strlen(want[n]), "length %zu", n);
        cr_assert(memcmp(dst, want[n], k) == 0, "length %zu: %.*s", n, (int)k, dst);
    }
    /* The same lengths through the JSON writer, on bytes that are not UTF-8. */
    static const char *const json[] = {"/w==", "//4=", "//79", "//79/A==", "//79/Ps="};
    static const uint8_t bytes[] = {0xff, 0xfe, 0xfd, 0xfc, 0xfb};
    for (size_t n = 1; n <= 5; n++) {
        char line[128];
        snprintf(line, sizeof line,
                 "{\"topic\":\"t\",\"type\":\"MSG_TYPE1\",\"payload\":\"%s\",\"base64\":true}\n",
                 json[n - 1]);
        expect_bytes(SUB_FMT_JSON, "t", 1, bytes, n, line, strlen(line));
    }
}

Test(json, long_base64_crosses_the_writer_slices)
{
    enum { N = 3001 }; /* several 768-byte slices and a padded tail */
    static uint8_t p[N];
    memset(p, 0xff, sizeof p);
    sub_fmt f;
    sub_fmt_init(&f, SUB_FMT_JSON);
    rendered r = render(&f, "t", p, N);
    static const char head[] = "{\"topic\":\"t\",\"type\":\"MSG_TYPE1\",\"payload\":\"";
    static const char tail[] = "\",\"base64\":true}\n";
    size_t b64 = (N + 2) / 3 * 4;
    cr_assert_eq(r.out_len, sizeof head - 1 + b64 + sizeof tail - 1);
    cr_assert(memcmp(r.out, head, sizeof head - 1) == 0);
    const char *enc = r.out + sizeof head - 1;
    for (size_t i = 0; i < b64 - 4; i++)
        cr_assert_eq(enc[i], '/', "at %zu", i);
    cr_assert(memcmp(enc + b64 - 4, "/w==", 4) == 0);
    cr_assert_str_eq(enc + b64, tail);
    free(r.out);
}

Test(json, hostile_topic_becomes_printable_ascii)
{
    static const char topic[] = "a\"b\\c\nd\x1b[31m\x7f\xc3\xa9\xe2\x80\xa8\0z";
    static const char want[] = "{\"topic\":\"a\\\"b\\\\c\\u000ad\\u001b[31m\\u007f\\u00c3\\u00a9"
                               "\\u00e2\\u0080\\u00a8\\u0000z\",\"type\":\"MSG_TYPE1\",\"payload\":\"x\"}\n";
    expect_bytes(SUB_FMT_JSON, topic, sizeof topic - 1, "x", 1, want, sizeof want - 1);
}
