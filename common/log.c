#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

/* Atomic: the broker changes it on SIGHUP while its threads log. */
static _Atomic int current_level = VG_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void vg_log_set_level(vg_log_level level)
{
    atomic_store_explicit(&current_level, (int)level, memory_order_relaxed);
}

const char *vg_log_level_name(vg_log_level level) { return level_names[level]; }

bool vg_log_enabled(vg_log_level level)
{
    return (int)level <= atomic_load_explicit(&current_level, memory_order_relaxed);
}

bool vg_log_parse_level(const char *name, vg_log_level *out)
{
    for (int i = 0; i <= VG_LOG_DEBUG; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (vg_log_level)i;
            return true;
        }
    }
    return false;
}

/* Formats "ts=... level=... event=... fields" into line (cap >= 2), with
 * no newline; returns its length. */
static size_t format_line(char *line, size_t cap, vg_log_level level, const char *event,
                          const char *fmt, va_list ap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts); /* wall time for humans only; never a timer */
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, cap, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], event);
    if (n < 0)
        return 0;
    if (fmt != NULL && (size_t)n < cap - 2) {
        line[n++] = ' ';
        int m = vsnprintf(line + n, cap - (size_t)n, fmt, ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n > cap - 2)
        n = (int)cap - 2;
    line[n] = '\0';
    return (size_t)n;
}

void vg_log(vg_log_level level, const char *event, const char *fmt, ...)
{
    if (!vg_log_enabled(level))
        return;
    char line[512]; /* every field is bounded; 512 keeps a thread's stack at two pages */
    va_list ap;
    va_start(ap, fmt);
    size_t n = format_line(line, sizeof line, level, event, fmt, ap);
    va_end(ap);
    line[n++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, n);
    (void)ignored;
}

void vg_log_vto(vg_log_fn fn, void *ud, vg_log_level max, vg_log_level level, const char *event,
                const char *fmt, va_list ap)
{
    if (fn == NULL || level > max)
        return;
    char line[512];
    format_line(line, sizeof line, level, event, fmt, ap);
    fn(ud, level, line);
}

void vg_log_write_stderr(void *ud, vg_log_level level, const char *line)
{
    (void)ud;
    (void)level;
    struct iovec iov[2] = {{(void *)line, strlen(line)}, {"\n", 1}};
    ssize_t ignored = writev(STDERR_FILENO, iov, 2);
    (void)ignored;
}

static bool plain_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
}

const char *vg_log_quote(char *dst, size_t cap, const char *s, size_t len)
{
    if (cap == 0)
        return dst;
    bool plain = len > 0;
    for (size_t i = 0; i < len && plain; i++)
        plain = plain_char((unsigned char)s[i]);

    size_t o = 0;
    if (plain) {
        for (size_t i = 0; i < len && o + 1 < cap; i++)
            dst[o++] = s[i];
        if (len >= cap && cap > 4)
            memcpy(dst + cap - 4, "...", 3), o = cap - 1;
        dst[o] = '\0';
        return dst;
    }

    static const char hex[] = "0123456789abcdef";
    if (cap < 8) {
        dst[0] = '\0';
        return dst;
    }
    dst[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 8 >= cap) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o++] = '"';
    dst[o] = '\0';
    return dst;
}
