/* The monitor's pure formatting: the JSON string escaper (jsonw.h) on
 * hostile bytes, the Prometheus lines, and the /varz and /metrics
 * documents of a made-up snapshot (monz.h), parsed back and compared
 * number by number. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../e2e/jsoncheck.h"
#include "jsonw.h"
#include "monz.h"
#include "server.h"
#include "stats.h"
#include "version.h"

static char *text(vg_buf *b)
{
    cr_assert_eq(vg_buf_append(b, "", 1), VG_OK);
    return (char *)b->data;
}

/* ---- the string escaper ---- */

static char *escaped(const char *s, size_t n, vg_buf *b)
{
    vg_jw w = vg_jw_on(b);
    vg_jw_str(&w, s, n);
    cr_assert_eq(vg_jw_status(&w), VG_OK);
    return text(b);
}

Test(jsonw, plain_ascii_is_kept)
{
    vg_buf b = {0};
    cr_assert_str_eq(escaped("orders.eu-1", 11, &b), "\"orders.eu-1\"");
    vg_buf_free(&b);
    b = (vg_buf){0};
    cr_assert_str_eq(escaped("", 0, &b), "\"\"");
    vg_buf_free(&b);
}

Test(jsonw, quotes_backslashes_and_controls)
{
    vg_buf b = {0};
    cr_assert_str_eq(escaped("a\"b\\c\nd\te\rf", 11, &b), "\"a\\\"b\\\\c\\nd\\te\\rf\"");
    vg_buf_free(&b);
    b = (vg_buf){0};
    const char ctl[] = {'x', 0x01, 0x1f, 0x7f, 'y', 0};
    cr_assert_str_eq(escaped(ctl, 6, &b), "\"x\\u0001\\u001f\\u007fy\\u0000\"");
    vg_buf_free(&b);
}

Test(jsonw, high_bytes_become_latin1_escapes)
{
    vg_buf b = {0};
    const char s[] = "caf\xc3\xa9\xff";
    cr_assert_str_eq(escaped(s, 6, &b), "\"caf\\u00c3\\u00a9\\u00ff\"");
    vg_buf_free(&b);
}

Test(jsonw, every_byte_gives_valid_json)
{
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    vg_buf b = {0};
    char *s = escaped(all, sizeof all, &b);
    cr_assert(h_json_valid(s), "not valid JSON: %s", s);
    vg_buf_free(&b);
}

Test(jsonw, long_numbers_and_failure_sticks)
{
    vg_buf b = {0};
    vg_jw w = vg_jw_on(&b);
    char big[300];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    vg_jw_fmt(&w, "[%s,%d]", big, 7); /* longer than the writer's small buffer */
    cr_assert_eq(vg_jw_status(&w), VG_OK);
    cr_assert_eq(b.len, strlen(big) + 4);
    cr_assert(memcmp(b.data + b.len - 3, ",7]", 3) == 0);
    w.st = VG_ERR_NOMEM;
    size_t len = b.len;
    vg_jw_raw(&w, "more");
    vg_jw_str(&w, "x", 1);
    cr_assert_eq(b.len, len, "nothing is appended after a failure");
    cr_assert_eq(vg_jw_status(&w), VG_ERR_NOMEM);
    vg_buf_free(&b);
}

/* ---- Prometheus lines ---- */

Test(prom, family_and_samples)
{
    vg_buf b = {0};
    vg_jw w = vg_jw_on(&b);
    vg_prom_family(&w, "vigil_x_total", "counter", "Things.");
    vg_prom_u64(&w, "vigil_x_total", NULL, 18446744073709551615ull);
    vg_prom_u64(&w, "vigil_x_total", "reason=\"a\"", 3);
    vg_prom_f64(&w, "vigil_up_seconds", "", 1.5);
    cr_assert_str_eq(text(&b), "# HELP vigil_x_total Things.\n# TYPE vigil_x_total counter\n"
                               "vigil_x_total 18446744073709551615\n"
                               "vigil_x_total{reason=\"a\"} 3\nvigil_up_seconds 1.500\n");
    vg_buf_free(&b);
}

/* ---- the documents of a made-up snapshot ---- */

static void sample(vg_stats_snap *s, vg_broker_config *cfg, vg_monz_facts *f)
{
    *s = (vg_stats_snap){0};
    s->uptime_ms = 61500;
    s->conns = 3;
    s->conns_total = 17;
    s->subs = 5;
    s->topics = 4;
    s->patterns = 1;
    s->msgs_in = 1001;
    s->bytes_in = 20020;
    s->msgs_out = 3003;
    s->bytes_out = 60060;
    s->dropped = 7;
    s->duplicates = 2;
    for (int r = 0; r < VG_EVICT_COUNT; r++)
        s->evictions[r] = 10 + (uint64_t)r;
    s->pings_sent = 40;
    s->pongs_received = 39;
    s->threads = 6;
    s->rss_bytes = 4096000;
    s->heap_bytes = 2048000;
    s->redelivered = 77;
    s->logs = (vg_logs_stats){.bytes = 65536, .records = 900, .dropped = 100, .logs = 4};
    s->has_store = true;
    s->store = (vg_store_stats){.segments = 2, .bytes = 123456, .syncs = 9, .failing = true};
    vg_broker_config_defaults(cfg);
    cfg->data_dir = "/var/lib/vigil \"x\"";
    cfg->fsync = VG_FSYNC_INTERVAL;
    cfg->fsync_interval_ms = 200;
    *f = (vg_monz_facts){.cfg = cfg,
                         .listen = "127.0.0.1:7222",
                         .monitor = "127.0.0.1:8222",
                         .epoch = 0xabcdef,
                         .start_wall_ms = 1700000000123,
                         .now_wall_ms = 1700000061623};
}

/* The number after "key": in json (the first occurrence). */
static unsigned long long jnum(const char *json, const char *key)
{
    char want[80];
    snprintf(want, sizeof want, "\"%s\":", key);
    const char *at = strstr(json, want);
    cr_assert(at != NULL, "no %s in %s", key, json);
    return strtoull(at + strlen(want), NULL, 10);
}

Test(monz, varz_is_valid_and_carries_the_snapshot)
{
    vg_stats_snap s;
    vg_broker_config cfg;
    vg_monz_facts f;
    sample(&s, &cfg, &f);
    vg_buf b = {0};
    vg_jw w = vg_jw_on(&b);
    vg_monz_varz_format(&s, &f, &w);
    cr_assert_eq(vg_jw_status(&w), VG_OK);
    char *j = text(&b);
    cr_assert(h_json_valid(j), "not valid JSON: %s", j);
    cr_assert_eq(jnum(j, "connections"), 3);
    cr_assert_eq(jnum(j, "connections_total"), 17);
    cr_assert_eq(jnum(j, "msgs_in"), 1001);
    cr_assert_eq(jnum(j, "bytes_out"), 60060);
    cr_assert_eq(jnum(j, "slow_consumer"), 11);
    cr_assert_eq(jnum(j, "uptime_ms"), 61500);
    cr_assert_eq(jnum(j, "used_bytes"), 65536);
    cr_assert_eq(jnum(j, "heap_bytes"), 2048000);
    cr_assert_eq(jnum(j, "redelivered"), 77);
    cr_assert_eq(jnum(j, "budget_bytes"), cfg.retention_bytes);
    cr_assert_eq(jnum(j, "fsync_interval_ms"), 200);
    cr_assert_eq(jnum(j, "max_subs"), 10000);
    cr_assert(strstr(j, "\"server_id\":\"0000000000abcdef\"") != NULL, "%s", j);
    cr_assert(strstr(j, "\"start\":\"2023-11-14T22:13:20.123Z\"") != NULL, "%s", j);
    cr_assert(strstr(j, "\"data_dir\":\"/var/lib/vigil \\\"x\\\"\"") != NULL, "%s", j);
    cr_assert(strstr(j, "\"fsync\":\"interval\"") != NULL, "%s", j);
    cr_assert(strstr(j, "\"storage_failing\":true") != NULL, "%s", j);
    /* $SYS.stats is its first part, word for word. */
    char stats[2048];
    size_t n = vg_stats_format(&s, stats, sizeof stats);
    cr_assert_gt(n, 1);
    cr_assert(strncmp(j, stats, n - 1) == 0, "/varz does not start as $SYS.stats:\n%s\n%s", j, stats);
    vg_buf_free(&b);
}

/* Checks every line of an exposition: comments are HELP or TYPE of the
 * family that follows, samples are name{labels} value, every sample's
 * family has both. Returns the value of the sample whose name and labels
 * are want (asserting it is there). */
static double metric(const char *text, const char *want)
{
    double found = -1;
    bool seen = false;
    char help[128] = "", type[128] = "";
    for (const char *line = text; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        cr_assert(nl != NULL, "an unterminated line");
        char buf[512];
        size_t n = (size_t)(nl - line);
        cr_assert_lt(n, sizeof buf);
        memcpy(buf, line, n);
        buf[n] = '\0';
        line = nl + 1;
        char name[128], kind[32];
        if (sscanf(buf, "# HELP %127s", name) == 1) {
            snprintf(help, sizeof help, "%s", name);
            continue;
        }
        if (sscanf(buf, "# TYPE %127s %31s", name, kind) == 2) {
            cr_assert(strcmp(kind, "counter") == 0 || strcmp(kind, "gauge") == 0, "%s", buf);
            cr_assert(strcmp(kind, "counter") != 0 || strstr(name, "_total") != NULL,
                      "a counter not ending in _total: %s", buf);
            snprintf(type, sizeof type, "%s", name);
            continue;
        }
        cr_assert_neq(buf[0], '#', "a comment that is neither HELP nor TYPE: %s", buf);
        char *sp = strrchr(buf, ' ');
        cr_assert(sp != NULL, "no value: %s", buf);
        *sp = '\0';
        char *end;
        double v = strtod(sp + 1, &end);
        cr_assert(end != sp + 1 && *end == '\0', "not a number: %s", sp + 1);
        size_t name_len = strcspn(buf, "{");
        cr_assert(strncmp(buf, "vigil_", 6) == 0, "no vigil_ prefix: %s", buf);
        for (size_t i = 0; i < name_len; i++)
            cr_assert(strchr("abcdefghijklmnopqrstuvwxyz_0123456789", buf[i]) != NULL,
                      "bad name: %s", buf);
        if (buf[name_len] == '{')
            cr_assert_eq(buf[strlen(buf) - 1], '}', "unclosed labels: %s", buf);
        cr_assert(strlen(help) == name_len && strncmp(help, buf, name_len) == 0,
                  "no HELP for %s", buf);
        cr_assert(strlen(type) == name_len && strncmp(type, buf, name_len) == 0,
                  "no TYPE for %s", buf);
        if (strcmp(buf, want) == 0) {
            found = v;
            seen = true;
        }
    }
    cr_assert(seen, "no sample %s", want);
    return found;
}

Test(monz, metrics_parse_and_carry_the_snapshot)
{
    vg_stats_snap s;
    vg_broker_config cfg;
    vg_monz_facts f;
    sample(&s, &cfg, &f);
    vg_buf b = {0};
    vg_jw w = vg_jw_on(&b);
    vg_monz_metrics_format(&s, &f, &w);
    cr_assert_eq(vg_jw_status(&w), VG_OK);
    const char *t = text(&b);
    cr_assert_eq(metric(t, "vigil_connections"), 3);
    cr_assert_eq(metric(t, "vigil_connections_accepted_total"), 17);
    cr_assert_eq(metric(t, "vigil_messages_in_total"), 1001);
    cr_assert_eq(metric(t, "vigil_messages_out_bytes_total"), 60060);
    cr_assert_eq(metric(t, "vigil_messages_dropped_total"), 7);
    cr_assert_eq(metric(t, "vigil_evictions_total{reason=\"heartbeat\"}"), 10);
    cr_assert_eq(metric(t, "vigil_evictions_total{reason=\"internal\"}"), 16);
    cr_assert_eq(metric(t, "vigil_uptime_seconds"), 61.5);
    cr_assert_eq(metric(t, "vigil_retention_used_bytes"), 65536);
    cr_assert_eq(metric(t, "vigil_resident_memory_bytes"), 4096000);
    cr_assert_eq(metric(t, "vigil_heap_bytes"), 2048000);
    cr_assert_eq(metric(t, "vigil_queue_redelivered_total"), 77);
    cr_assert_eq(metric(t, "vigil_store_failing"), 1);
    cr_assert_eq(metric(t, "vigil_info{version=\"" VG_VERSION "\",server_id=\"0000000000abcdef\"}"), 1);
    vg_buf_free(&b);
}

/* ---- /healthz's verdict ---- */

Test(monz, health_says_stopping)
{
    static vg_server srv; /* zeroed: no store, not stopping */
    vg_buf b = {0};
    bool ok = false;
    cr_assert_eq(vg_monz_health(&srv, &b, &ok), VG_OK);
    cr_assert(ok);
    cr_assert_str_eq(text(&b), "{\"status\":\"ok\"}");
    vg_buf_free(&b);
    b = (vg_buf){0};
    atomic_store(&srv.stopping, true);
    cr_assert_eq(vg_monz_health(&srv, &b, &ok), VG_OK);
    cr_assert_not(ok);
    char *j = text(&b);
    cr_assert_str_eq(j, "{\"status\":\"unavailable\",\"reason\":\"stopping\"}");
    cr_assert(h_json_valid(j));
    vg_buf_free(&b);
}
