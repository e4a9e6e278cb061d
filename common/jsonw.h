/* A small JSON writer into a vg_buf, for the broker's monitoring documents
 * (monitor.c, $SYS.varz and friends).
 *
 * The first failure (out of memory) sticks: later calls do nothing and
 * vg_jw_status reports it, so a document is built without a check after
 * every piece. Strings are the client's bytes (names, topics): every byte
 * that JSON does not allow raw is escaped, so the output is always valid
 * JSON whatever the input. */
#ifndef VG_JSONW_H
#define VG_JSONW_H

#include <stddef.h>

#include "buf.h"
#include "status.h"

typedef struct {
    vg_buf *out;
    vg_status st;
} vg_jw;

/* A writer appending to out (which keeps what it had). */
vg_jw vg_jw_on(vg_buf *out);

/* Appends s as it is: punctuation and keys the caller knows are valid. */
void vg_jw_raw(vg_jw *w, const char *s);

/* Appends printf(fmt, ...) as it is (numbers). */
void vg_jw_fmt(vg_jw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends the n bytes at s as a JSON string, quotes included: '"' and '\\'
 * escaped, control characters as \n, \t ... or \u00XX, and each byte of
 * 0x80 and above as \u00XX (its Latin-1 reading: a name that is not UTF-8
 * still gives valid JSON, and ASCII, all that topics may hold, is exact). */
void vg_jw_str(vg_jw *w, const char *s, size_t n);

/* VG_OK, or the first failure. */
vg_status vg_jw_status(const vg_jw *w);

#endif
