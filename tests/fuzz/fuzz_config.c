/* libFuzzer target: the broker's configuration file (common/conf.c, the
 * line parser; broker/options.c, the keys), which an operator writes and
 * a typo must never crash.
 *
 * Input: the file's bytes. Seeds: tests/fuzz/corpus/config, written by hand
 * (they are plain configuration files).
 *
 * Checked: every setting the parser yields lies inside the input, on a
 * line number that grows, with a non-empty key free of blanks and '=' and a
 * non-empty value with no blank at either end; an error names a line of
 * the input. Then the settings as a whole: a refused file names a line and
 * says why; an accepted one shows each of its values in a form that, read
 * back, shows the same (what a reload compares). Inputs that name the
 * listen key are left at the parser: its value is resolved (getaddrinfo),
 * which is I/O. A failed check prints what and aborts, which libFuzzer
 * reports as a crash. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"
#include "options.h"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_config: %s\n", what);
    abort();
}

static bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Walks the parser over the input; returns whether a listen key is in it. */
static bool check_parser(const char *text, size_t len)
{
    unsigned lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    vg_conf_reader r;
    vg_conf_line l;
    const char *why;
    vg_conf_init(&r, text, len);
    unsigned last = 0;
    bool listen = false;
    for (;;) {
        vg_conf_result res = vg_conf_next(&r, &l, &why);
        if (res == VG_CONF_END)
            return listen;
        if (l.line <= last || l.line > lines)
            fail("line numbers must grow within the input");
        last = l.line;
        if (res == VG_CONF_ERROR) {
            if (why == NULL || why[0] == '\0')
                fail("an error without a reason");
            continue; /* it goes on at the next line */
        }
        if (l.key < text || l.key_len == 0 || l.key + l.key_len > text + len)
            fail("key outside the input or empty");
        if (l.value < l.key + l.key_len || l.value_len == 0 || l.value + l.value_len > text + len)
            fail("value outside the input or empty");
        for (size_t i = 0; i < l.key_len; i++)
            if (blank(l.key[i]) || l.key[i] == '=' || l.key[i] == '\n' || l.key[i] == '\0')
                fail("a blank, '=', newline or NUL in a key");
        if (blank(l.value[0]) || blank(l.value[l.value_len - 1]))
            fail("a value with a blank at an end");
        if (memchr(l.value, '\n', l.value_len) != NULL || memchr(l.value, '\0', l.value_len))
            fail("a newline or NUL in a value");
        listen |= l.key_len == 6 && memcmp(l.key, "listen", 6) == 0;
    }
}

static void check_settings(const char *text, size_t len)
{
    vg_broker_settings s;
    vg_opt_error e;
    vg_opts_defaults(&s);
    if (!vg_opts_load_text(&s, text, len, &e)) {
        if (e.line == 0 || e.why[0] == '\0')
            fail("a refused file without line or reason");
        vg_opts_free(&s);
        return;
    }
    for (size_t i = 0; i < vg_opts_count(); i++) {
        char a[VG_OPT_VALUE_MAX + 1], b[VG_OPT_VALUE_MAX + 1];
        const char *shown = vg_opts_show(&s, i, a, sizeof a);
        if (s.source[i] != VG_OPT_SRC_FILE || strcmp(vg_opts_name(i), "listen") == 0)
            continue;
        vg_broker_settings t;
        vg_opts_defaults(&t);
        if (vg_opts_set(&t, i, shown, VG_OPT_SRC_FILE) != NULL)
            fail("a shown value is refused when read back");
        if (strcmp(vg_opts_show(&t, i, b, sizeof b), shown) != 0)
            fail("a value read back shows differently");
        vg_opts_free(&t);
    }
    vg_opts_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        vg_log_set_level(VG_LOG_ERROR);
        quiet = true;
    }
    const char *text = (const char *)data;
    if (!check_parser(text, size))
        check_settings(text, size);
    return 0;
}
