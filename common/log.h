/* One-line key=value event log on stderr: "ts=... level=info event=name key=value ...". */
#ifndef VG_LOG_H
#define VG_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum { VG_LOG_ERROR, VG_LOG_WARN, VG_LOG_INFO, VG_LOG_DEBUG } vg_log_level;

/* The level may be changed while other threads log (the broker's SIGHUP). */
void vg_log_set_level(vg_log_level level);
/* "error", "warn", "info" or "debug", as vg_log_parse_level reads them. */
const char *vg_log_level_name(vg_log_level level);
bool vg_log_enabled(vg_log_level level);

/* Parses "error", "warn", "info" or "debug"; returns false on anything else. */
bool vg_log_parse_level(const char *name, vg_log_level *out);

/* Writes one line with a single write(2), so lines from threads never interleave.
 * fmt holds the key=value pairs after the event name; may be NULL. */
void vg_log(vg_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Where a library sends its lines instead of stderr: line is one event
 * without the newline, valid during the call only. */
typedef void (*vg_log_fn)(void *ud, vg_log_level level, const char *line);

/* Formats a line as vg_log does and hands it to fn, if fn is not NULL and
 * level is at most max (the process's vg_log_set_level does not apply). */
void vg_log_vto(vg_log_fn fn, void *ud, vg_log_level max, vg_log_level level, const char *event,
                const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

/* A vg_log_fn that writes the line and a newline to stderr in one writev(2). */
void vg_log_write_stderr(void *ud, vg_log_level level, const char *line);

/* Renders untrusted bytes as a log value: as-is when they are plain printable
 * characters, else double-quoted with \" \\ and \xNN escapes. Always
 * NUL-terminates dst (cap > 0), truncating with "..." when it does not fit. */
const char *vg_log_quote(char *dst, size_t cap, const char *s, size_t len);

#endif
