#include "options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "conf.h"
#include "proto.h"
#include "sock.h"
#include "store.h"

#define DAY_MS (86400ll * 1000)

/* How a value is parsed, shown and copied. The plain kinds name a field
 * by offset and width; KIND_CUSTOM has functions of its own. */
typedef enum {
    KIND_COUNT,   /* a decimal integer in [min, max] (vg_parse_int) */
    KIND_BYTES,   /* a byte count in [min, max] (vg_parse_bytes) */
    KIND_SECONDS, /* decimal seconds, kept as ms in [min, max] (vg_parse_seconds) */
    KIND_BOOL,    /* a flag without argument; "true" or "false" in a file */
    KIND_PATH,    /* an owned char *, not empty */
    KIND_CUSTOM,
} kind;

typedef struct {
    const char *name;
    kind kind;
    vg_reload_class reload;
    size_t offset, width; /* of the field in vg_broker_settings */
    int64_t min, max;
    const char *why; /* the complaint for a refused value */
    const char *(*parse)(vg_broker_settings *s, const char *value); /* KIND_CUSTOM */
    const char *(*show)(const vg_broker_settings *s, char *buf, size_t cap); /* KIND_CUSTOM */
} option;

static const char *parse_listen(vg_broker_settings *s, const char *v)
{
    const char *why;
    vg_addr a;
    if (vg_addr_parse(v, &a, &why) != VG_OK)
        return why;
    s->cfg.listen = a;
    return NULL;
}

static const char *show_listen(const vg_broker_settings *s, char *buf, size_t cap)
{
    char a[VG_ADDR_STRLEN];
    snprintf(buf, cap, "%s", vg_addr_format(&s->cfg.listen, a));
    return buf;
}

/* "off" (the default) or the monitor's HOST:PORT. */
static const char *parse_monitor(vg_broker_settings *s, const char *v)
{
    if (strcmp(v, "off") == 0) {
        s->monitor_on = false;
        return NULL;
    }
    const char *why;
    vg_addr a;
    if (vg_addr_parse(v, &a, &why) != VG_OK)
        return why;
    s->monitor = a;
    s->monitor_on = true;
    return NULL;
}

static const char *show_monitor(const vg_broker_settings *s, char *buf, size_t cap)
{
    if (!s->monitor_on)
        return "off";
    char a[VG_ADDR_STRLEN];
    snprintf(buf, cap, "%s", vg_addr_format(&s->monitor, a));
    return buf;
}

static const char *parse_fsync(vg_broker_settings *s, const char *v)
{
    int64_t ms;
    if (strcmp(v, "always") == 0) {
        s->cfg.fsync = VG_FSYNC_ALWAYS;
    } else if (strcmp(v, "never") == 0) {
        s->cfg.fsync = VG_FSYNC_NEVER;
    } else if (strncmp(v, "interval=", 9) == 0 && vg_parse_int(v + 9, 1, 3600 * 1000, &ms)) {
        s->cfg.fsync = VG_FSYNC_INTERVAL;
        s->cfg.fsync_interval_ms = (int)ms;
    } else {
        return "must be always, interval=MS or never";
    }
    return NULL;
}

static const char *show_fsync(const vg_broker_settings *s, char *buf, size_t cap)
{
    switch (s->cfg.fsync) {
    case VG_FSYNC_ALWAYS:
        return "always";
    case VG_FSYNC_NEVER:
        return "never";
    case VG_FSYNC_INTERVAL:
        break;
    }
    snprintf(buf, cap, "interval=%d", s->cfg.fsync_interval_ms);
    return buf;
}

static const char *parse_log_level(vg_broker_settings *s, const char *v)
{
    if (!vg_log_parse_level(v, &s->log_level))
        return "must be error, warn, info or debug";
    return NULL;
}

static const char *show_log_level(const vg_broker_settings *s, char *buf, size_t cap)
{
    (void)buf, (void)cap;
    return vg_log_level_name(s->log_level);
}

#define FIELD(f) offsetof(vg_broker_settings, f), sizeof(((vg_broker_settings *)0)->f)

/* Every option, in --help's order. The reload class of each is decided by
 * where the running broker reads the value (docs/operations.md,
 * "Reloading"): per operation (live), or once at start or per connection
 * at its handshake (restart). */
static const option table[] = {
    {"listen", KIND_CUSTOM, VG_RELOAD_RESTART, FIELD(cfg.listen), 0, 0, NULL, parse_listen,
     show_listen},
    {"max-payload", KIND_BYTES, VG_RELOAD_RESTART, FIELD(cfg.max_payload), 1, 64 << 20,
     "must be 1 to 64MiB", NULL, NULL},
    {"max-outbox", KIND_BYTES, VG_RELOAD_RESTART, FIELD(cfg.max_outbox), 64 << 10, 1ll << 40,
     "must be at least 64KiB", NULL, NULL},
    {"max-connections", KIND_COUNT, VG_RELOAD_LIVE, FIELD(cfg.max_connections), 1,
     VG_OPT_MAX_CONNECTIONS,
     "must be 1 or more", NULL, NULL},
    {"max-subs", KIND_COUNT, VG_RELOAD_LIVE, FIELD(cfg.max_subs), 1, 1 << 24, "must be 1 or more",
     NULL, NULL},
    {"max-topic-length", KIND_COUNT, VG_RELOAD_LIVE, FIELD(cfg.topic_max_len), 1,
     VG_TOPIC_MAX_LEN, "must be 1 to 1024", NULL, NULL},
    {"max-topic-tokens", KIND_COUNT, VG_RELOAD_LIVE, FIELD(cfg.topic_max_tokens), 1,
     VG_TOPIC_MAX_LEN, "must be 1 or more", NULL, NULL},
    {"handshake-timeout", KIND_SECONDS, VG_RELOAD_LIVE, FIELD(cfg.handshake_timeout_ms), 1,
     3600 * 1000, "must be positive seconds", NULL, NULL},
    {"auth-token-file", KIND_PATH, VG_RELOAD_LIVE, FIELD(token_file), 0, 0, "must name a file",
     NULL, NULL},
    {"allow-unauthenticated", KIND_BOOL, VG_RELOAD_LIVE, FIELD(allow_unauth), 0, 0,
     "must be true or false", NULL, NULL},
    {"monitor", KIND_CUSTOM, VG_RELOAD_RESTART, FIELD(monitor), 0, 0, NULL, parse_monitor,
     show_monitor},
    {"ack-wait", KIND_SECONDS, VG_RELOAD_LIVE, FIELD(cfg.ack_wait_ms), 0, DAY_MS,
     "must be decimal seconds (0: never)", NULL, NULL},
    {"stats-interval", KIND_SECONDS, VG_RELOAD_LIVE, FIELD(cfg.stats_interval_ms), 0,
     DAY_MS, "must be decimal seconds", NULL, NULL},
    {"retention-bytes", KIND_BYTES, VG_RELOAD_RESTART, FIELD(cfg.retention_bytes), 1 << 20,
     1ll << 44, "must be at least 1MiB", NULL, NULL},
    {"retention-age", KIND_SECONDS, VG_RELOAD_RESTART, FIELD(cfg.retention_age_ms), 0,
     365 * DAY_MS, "must be decimal seconds", NULL, NULL},
    {"data-dir", KIND_PATH, VG_RELOAD_RESTART, FIELD(cfg.data_dir), 0, 0,
     "must name a directory", NULL, NULL},
    {"fsync", KIND_CUSTOM, VG_RELOAD_RESTART, FIELD(cfg.fsync), 0, 0, NULL, parse_fsync,
     show_fsync},
    {"segment-bytes", KIND_BYTES, VG_RELOAD_RESTART, FIELD(cfg.segment_bytes),
     VG_STORE_SEGMENT_MIN, 1 << 30, "must be 64KiB to 1GiB", NULL, NULL},
    {"keepalive-time", KIND_SECONDS, VG_RELOAD_RESTART, FIELD(cfg.keepalive.time_ms), 0, DAY_MS,
     "must be decimal seconds (0: off)", NULL, NULL},
    {"keepalive-interval", KIND_SECONDS, VG_RELOAD_RESTART, FIELD(cfg.keepalive.interval_ms), 1,
     DAY_MS, "must be positive decimal seconds", NULL, NULL},
    {"keepalive-probes", KIND_COUNT, VG_RELOAD_RESTART, FIELD(cfg.keepalive.probes), 1, 100,
     "must be 1 to 100", NULL, NULL},
    {"log-level", KIND_CUSTOM, VG_RELOAD_LIVE, FIELD(log_level), 0, 0, NULL, parse_log_level,
     show_log_level},
};

#define COUNT (sizeof table / sizeof table[0])
_Static_assert(COUNT <= VG_OPT_MAX, "raise VG_OPT_MAX");

size_t vg_opts_count(void) { return COUNT; }

const char *vg_opts_name(size_t i) { return table[i].name; }

bool vg_opts_is_flag(size_t i) { return table[i].kind == KIND_BOOL; }

vg_reload_class vg_opts_reload(size_t i) { return table[i].reload; }

int vg_opts_find(const char *name, size_t len)
{
    for (size_t i = 0; i < COUNT; i++)
        if (strlen(table[i].name) == len && memcmp(table[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

void vg_opts_defaults(vg_broker_settings *s)
{
    memset(s, 0, sizeof *s);
    vg_broker_config_defaults(&s->cfg);
    s->log_level = VG_LOG_INFO;
}

void vg_opts_free(vg_broker_settings *s)
{
    free((char *)s->cfg.data_dir);
    free(s->token_file);
    s->cfg.data_dir = NULL;
    s->token_file = NULL;
}

/* Unsigned integer fields of width 1, 4 or 8, read and written through
 * memcpy so that the field's own type (size_t, int64_t, int) is respected. */
static void store(vg_broker_settings *s, const option *o, uint64_t v)
{
    char *p = (char *)s + o->offset;
    if (o->width == 8) {
        memcpy(p, &v, 8);
    } else if (o->width == 4) {
        uint32_t w = (uint32_t)v;
        memcpy(p, &w, 4);
    } else {
        bool b = v != 0;
        memcpy(p, &b, sizeof b);
    }
}

static uint64_t load(const vg_broker_settings *s, const option *o)
{
    const char *p = (const char *)s + o->offset;
    if (o->width == 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    if (o->width == 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        return w;
    }
    bool b;
    memcpy(&b, p, sizeof b);
    return b;
}

const char *vg_opts_set(vg_broker_settings *s, size_t i, const char *value, vg_opt_source src)
{
    const option *o = &table[i];
    int64_t v;
    uint64_t bytes;
    const char *why = NULL;
    switch (o->kind) {
    case KIND_COUNT:
        if (!vg_parse_int(value, o->min, o->max, &v))
            return o->why;
        store(s, o, (uint64_t)v);
        break;
    case KIND_BYTES:
        if (!vg_parse_bytes(value, (uint64_t)o->min, (uint64_t)o->max, &bytes))
            return o->why;
        store(s, o, bytes);
        break;
    case KIND_SECONDS:
        if (!vg_parse_seconds(value, o->max, &v) || v < o->min)
            return o->why;
        store(s, o, (uint64_t)v);
        break;
    case KIND_BOOL:
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
            return o->why;
        store(s, o, value[0] == 't');
        break;
    case KIND_PATH: {
        if (value[0] == '\0')
            return o->why;
        char *copy = strdup(value), *old;
        if (copy == NULL)
            return "out of memory";
        memcpy(&old, (char *)s + o->offset, sizeof old); /* the field may be const char * */
        free(old);
        memcpy((char *)s + o->offset, &copy, sizeof copy);
        break;
    }
    case KIND_CUSTOM:
        why = o->parse(s, value);
        if (why != NULL)
            return why;
        break;
    }
    s->source[i] = (uint8_t)src;
    return NULL;
}

/* Copies at most cap - 1 bytes of s (len bytes) into dst, NUL-terminated. */
static void copy_cut(char *dst, size_t cap, const char *s, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

bool vg_opts_load_text(vg_broker_settings *s, const char *text, size_t len, vg_opt_error *err)
{
    memset(err, 0, sizeof *err);
    vg_conf_reader r;
    vg_conf_line l;
    const char *why;
    vg_conf_init(&r, text, len);
    for (;;) {
        vg_conf_result res = vg_conf_next(&r, &l, &why);
        if (res == VG_CONF_END)
            return true;
        err->line = l.line;
        if (l.key != NULL)
            copy_cut(err->key, sizeof err->key, l.key, l.key_len);
        if (res == VG_CONF_ERROR) {
            snprintf(err->why, sizeof err->why, "%s", why);
            return false;
        }
        int i = vg_opts_find(l.key, l.key_len);
        if (i < 0) {
            snprintf(err->why, sizeof err->why, "unknown key");
            return false;
        }
        if (s->source[i] == VG_OPT_SRC_FILE) {
            snprintf(err->why, sizeof err->why, "duplicate key (first set at line %u)",
                     s->file_line[i]);
            return false;
        }
        if (l.value_len > VG_OPT_VALUE_MAX) {
            snprintf(err->why, sizeof err->why, "value longer than %d bytes", VG_OPT_VALUE_MAX);
            return false;
        }
        char value[VG_OPT_VALUE_MAX + 1];
        copy_cut(value, sizeof value, l.value, l.value_len);
        why = vg_opts_set(s, (size_t)i, value, VG_OPT_SRC_FILE);
        if (why != NULL) {
            snprintf(err->why, sizeof err->why, "%s, got '%.64s%s'", why, value,
                     l.value_len > 64 ? "..." : "");
            return false;
        }
        s->file_line[i] = l.line;
    }
}

/* ms as decimal seconds, as a file spells them: "5", "0.25". */
static const char *show_ms(uint64_t ms, char *buf, size_t cap)
{
    if (ms % 1000 == 0) {
        snprintf(buf, cap, "%llu", (unsigned long long)(ms / 1000));
    } else {
        snprintf(buf, cap, "%llu.%03llu", (unsigned long long)(ms / 1000),
                 (unsigned long long)(ms % 1000));
        size_t n = strlen(buf);
        while (n > 0 && buf[n - 1] == '0')
            buf[--n] = '\0';
    }
    return buf;
}

const char *vg_opts_show(const vg_broker_settings *s, size_t i, char *buf, size_t cap)
{
    const option *o = &table[i];
    switch (o->kind) {
    case KIND_COUNT:
    case KIND_BYTES:
        snprintf(buf, cap, "%llu", (unsigned long long)load(s, o));
        return buf;
    case KIND_SECONDS:
        return show_ms(load(s, o), buf, cap);
    case KIND_BOOL:
        return load(s, o) ? "true" : "false";
    case KIND_PATH: {
        const char *p;
        memcpy(&p, (const char *)s + o->offset, sizeof p);
        return p != NULL ? p : "none";
    }
    case KIND_CUSTOM:
        break;
    }
    return o->show(s, buf, cap);
}

void vg_opts_take(vg_broker_settings *dst, vg_broker_settings *src, size_t i)
{
    const option *o = &table[i];
    char *d = (char *)dst + o->offset, *from = (char *)src + o->offset;
    if (o->kind == KIND_PATH) {
        char *old, *moved, *none = NULL;
        memcpy(&old, d, sizeof old);
        memcpy(&moved, from, sizeof moved);
        free(old);
        memcpy(d, &moved, sizeof moved);
        memcpy(from, &none, sizeof none);
    } else if (o->kind == KIND_CUSTOM && o->parse == parse_fsync) { /* two fields */
        dst->cfg.fsync = src->cfg.fsync;
        dst->cfg.fsync_interval_ms = src->cfg.fsync_interval_ms;
    } else {
        memcpy(d, from, o->width);
    }
    dst->source[i] = src->source[i];
    dst->file_line[i] = src->file_line[i];
}

const char *vg_opts_check(const vg_broker_settings *s)
{
    if (s->cfg.keepalive.time_ms > 0 && s->cfg.keepalive.interval_ms <= 0)
        return "keepalive-interval must be positive";
    return NULL;
}
