/* The line syntax of a configuration file, as mosquitto's: one setting a
 * line, "key value" or "key = value"; blank lines and lines whose first
 * non-blank character is '#' are skipped. Pure: it walks a buffer the
 * caller read, does no I/O and allocates nothing, so it is unit-tested and
 * fuzzed (tests/fuzz/fuzz_config.c). What the keys mean is the caller's
 * business (broker/options.h). */
#ifndef VG_CONF_H
#define VG_CONF_H

#include <stddef.h>

/* One setting; key and value point into the buffer and are not
 * NUL-terminated. Neither is empty nor has blanks at either end. */
typedef struct {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    unsigned line; /* 1-based */
} vg_conf_line;

typedef struct {
    const char *p, *end;
    unsigned line; /* of the line that starts at p, 1-based */
} vg_conf_reader;

typedef enum {
    VG_CONF_SETTING, /* *out holds the next setting */
    VG_CONF_END,
    VG_CONF_ERROR, /* *out has line and key (if any), *why the problem */
} vg_conf_result;

/* Starts reading the len bytes at buf (which the reader borrows). */
void vg_conf_init(vg_conf_reader *r, const char *buf, size_t len);

/* The next setting. A line with a key and no value and a line holding a
 * NUL byte are errors; after one the reader goes on at the next line. */
vg_conf_result vg_conf_next(vg_conf_reader *r, vg_conf_line *out, const char **why);

#endif
