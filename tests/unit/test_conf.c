/* The configuration file: the pure line parser (common/conf.c) and the
 * option table that gives the keys their meaning (broker/options.c). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "options.h"

/* Reads every setting of text into keys/values ("key=value" each), stopping
 * at the first error, whose line and why it returns through *line, *why. */
static int read_all(const char *text, char out[][64], int max, unsigned *line, const char **why)
{
    vg_conf_reader r;
    vg_conf_line l;
    vg_conf_init(&r, text, strlen(text));
    int n = 0;
    *line = 0;
    *why = NULL;
    for (;;) {
        vg_conf_result res = vg_conf_next(&r, &l, why);
        if (res == VG_CONF_END)
            return n;
        if (res == VG_CONF_ERROR) {
            *line = l.line;
            return n;
        }
        cr_assert_lt(n, max);
        snprintf(out[n++], 64, "%u:%.*s=%.*s", l.line, (int)l.key_len, l.key, (int)l.value_len,
                 l.value);
    }
}

Test(conf, both_spellings_comments_blank_lines_and_crlf)
{
    char got[8][64];
    unsigned line;
    const char *why;
    const char *text = "# a comment\n"
                       "\n"
                       "max-subs 5\n"
                       "  listen = 127.0.0.1:0  \r\n"
                       "\t# indented comment\n"
                       "data-dir=/var/lib/my vigil\n"
                       "log-level\tdebug"; /* no final newline */
    int n = read_all(text, got, 8, &line, &why);
    cr_assert_null(why, "%s", why);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(got[0], "3:max-subs=5");
    cr_assert_str_eq(got[1], "4:listen=127.0.0.1:0");
    cr_assert_str_eq(got[2], "6:data-dir=/var/lib/my vigil"); /* inner blanks are the value's */
    cr_assert_str_eq(got[3], "7:log-level=debug");
}

Test(conf, a_key_without_value_is_an_error_with_its_line)
{
    char got[4][64];
    unsigned line;
    const char *why;
    int n = read_all("max-subs 5\nmax-payload\n", got, 4, &line, &why);
    cr_assert_eq(n, 1);
    cr_assert_eq(line, 2);
    cr_assert_str_eq(why, "missing value");
    n = read_all("\n\nmax-payload =   \n", got, 4, &line, &why);
    cr_assert_eq(n, 0);
    cr_assert_eq(line, 3);
    cr_assert_str_eq(why, "missing value");
}

Test(conf, a_value_without_key_and_a_nul_byte_are_errors)
{
    char got[4][64];
    unsigned line;
    const char *why;
    read_all("= 5\n", got, 4, &line, &why);
    cr_assert_eq(line, 1);
    cr_assert_str_eq(why, "a value without a key");

    vg_conf_reader r;
    vg_conf_line l;
    vg_conf_init(&r, "a 1\nb \0 2\nc 3\n", 13);
    cr_assert_eq(vg_conf_next(&r, &l, &why), VG_CONF_SETTING);
    cr_assert_eq(vg_conf_next(&r, &l, &why), VG_CONF_ERROR);
    cr_assert_eq(l.line, 2);
    cr_assert_str_eq(why, "a NUL byte in the line");
    cr_assert_eq(vg_conf_next(&r, &l, &why), VG_CONF_SETTING, "goes on at the next line");
    cr_assert_eq(l.line, 3);
}

Test(conf, a_comment_starts_only_a_line)
{
    char got[4][64];
    unsigned line;
    const char *why;
    int n = read_all("data-dir /srv/#1 # not a comment\n", got, 4, &line, &why);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(got[0], "1:data-dir=/srv/#1 # not a comment");
}

Test(conf, empty_input)
{
    char got[1][64];
    unsigned line;
    const char *why;
    cr_assert_eq(read_all("", got, 1, &line, &why), 0);
    cr_assert_null(why);
    cr_assert_eq(read_all("\n\n# only\n   \n", got, 1, &line, &why), 0);
    cr_assert_null(why);
}

/* ---- the option table ---- */

static bool load(vg_broker_settings *s, const char *text, vg_opt_error *e)
{
    vg_opts_defaults(s);
    return vg_opts_load_text(s, text, strlen(text), e);
}

Test(options, file_values_are_applied)
{
    vg_broker_settings s;
    vg_opt_error e;
    cr_assert(load(&s, "max-subs 5\nmax-payload 2M\nstats-interval 0.25\n"
                       "allow-unauthenticated true\nlog-level debug\nfsync interval=100\n"
                       "data-dir /d\nkeepalive-probes 7\n",
                   &e),
              "%u %s %s", e.line, e.key, e.why);
    cr_assert_eq(s.cfg.max_subs, 5);
    cr_assert_eq(s.cfg.max_payload, 2u << 20);
    cr_assert_eq(s.cfg.stats_interval_ms, 250);
    cr_assert(s.allow_unauth);
    cr_assert_eq(s.log_level, VG_LOG_DEBUG);
    cr_assert_eq(s.cfg.fsync, VG_FSYNC_INTERVAL);
    cr_assert_eq(s.cfg.fsync_interval_ms, 100);
    cr_assert_str_eq(s.cfg.data_dir, "/d");
    cr_assert_eq(s.cfg.keepalive.probes, 7);
    char buf[64];
    cr_assert_str_eq(vg_opts_show(&s, (size_t)vg_opts_find("stats-interval", 14), buf, sizeof buf),
                     "0.25");
    cr_assert_str_eq(vg_opts_show(&s, (size_t)vg_opts_find("fsync", 5), buf, sizeof buf),
                     "interval=100");
    cr_assert_str_eq(vg_opts_show(&s, (size_t)vg_opts_find("auth-token-file", 15), buf,
                                  sizeof buf),
                     "none");
    vg_opts_free(&s);
}

Test(options, each_kind_of_error_names_its_line_and_key)
{
    static const struct {
        const char *text;
        unsigned line;
        const char *key, *why;
    } cases[] = {
        {"max-subs 5\nmax-sub 6\n", 2, "max-sub", "unknown key"},
        {"\nmax-subs\n", 2, "max-subs", "missing value"},
        {"max-subs five\n", 1, "max-subs", "must be 1 or more, got 'five'"},
        {"allow-unauthenticated yes\n", 1, "allow-unauthenticated",
         "must be true or false, got 'yes'"},
        {"max-subs 5\n# x\nmax-subs 6\n", 3, "max-subs", "duplicate key (first set at line 1)"},
        {"log-level loud\n", 1, "log-level", "must be error, warn, info or debug, got 'loud'"},
        {"help true\n", 1, "help", "unknown key"}, /* --help, --config...: no keys */
        {"config /x\n", 1, "config", "unknown key"},
        {"handshake-timeout 0\n", 1, "handshake-timeout", "must be positive seconds, got '0'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vg_broker_settings s;
        vg_opt_error e;
        cr_assert_not(load(&s, cases[i].text, &e), "case %zu accepted", i);
        cr_assert_eq(e.line, cases[i].line, "case %zu: line %u", i, e.line);
        cr_assert_str_eq(e.key, cases[i].key, "case %zu", i);
        cr_assert_str_eq(e.why, cases[i].why, "case %zu", i);
        vg_opts_free(&s);
    }
}

Test(options, every_option_is_a_key_and_shows_what_it_parses)
{
    /* Each key's default, shown, is a value the key accepts and shows the same. */
    vg_broker_settings d, s;
    vg_opts_defaults(&d);
    for (size_t i = 0; i < vg_opts_count(); i++) {
        char a[128], b[128], line[256];
        const char *v = vg_opts_show(&d, i, a, sizeof a);
        if (strcmp(v, "none") == 0)
            v = "/some/path";
        snprintf(line, sizeof line, "%s %s\n", vg_opts_name(i), v);
        vg_opt_error e;
        cr_assert(load(&s, line, &e), "%s: %s", line, e.why);
        cr_assert_str_eq(vg_opts_show(&s, i, b, sizeof b), v, "%s", line);
        vg_opts_free(&s);
    }
    vg_opts_free(&d);
}

Test(options, a_flag_set_after_the_file_wins_and_take_moves_a_path)
{
    vg_broker_settings s, t;
    vg_opt_error e;
    cr_assert(load(&s, "max-subs 5\nauth-token-file /a\n", &e));
    size_t subs = (size_t)vg_opts_find("max-subs", 8);
    cr_assert_null(vg_opts_set(&s, subs, "9", VG_OPT_SRC_FLAG));
    cr_assert_eq(s.cfg.max_subs, 9);
    cr_assert_eq(s.source[subs], VG_OPT_SRC_FLAG);
    cr_assert_str_eq(vg_opts_set(&s, subs, "0", VG_OPT_SRC_FLAG), "must be 1 or more");
    cr_assert_eq(s.cfg.max_subs, 9, "a refused value changes nothing");

    cr_assert(load(&t, "auth-token-file /b\n", &e));
    size_t tf = (size_t)vg_opts_find("auth-token-file", 15);
    vg_opts_take(&s, &t, tf);
    cr_assert_str_eq(s.token_file, "/b");
    cr_assert_null(t.token_file);
    vg_opts_free(&s);
    vg_opts_free(&t);
}

Test(options, reload_classes)
{
    static const char *const live[] = {"log-level", "auth-token-file", "allow-unauthenticated",
                                       "max-subs", "max-connections", "handshake-timeout",
                                       "max-topic-length", "max-topic-tokens", "stats-interval"};
    static const char *const restart[] = {"listen", "max-payload", "max-outbox", "data-dir",
                                          "fsync", "segment-bytes", "retention-bytes",
                                          "retention-age", "keepalive-time"};
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
        cr_assert_eq(vg_opts_reload((size_t)vg_opts_find(live[i], strlen(live[i]))),
                     VG_RELOAD_LIVE, "%s", live[i]);
    for (size_t i = 0; i < sizeof restart / sizeof restart[0]; i++)
        cr_assert_eq(vg_opts_reload((size_t)vg_opts_find(restart[i], strlen(restart[i]))),
                     VG_RELOAD_RESTART, "%s", restart[i]);
}
