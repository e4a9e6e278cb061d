/* Reading the programs' event lines after the fact: which line an event is
 * on, when the program wrote it (its ts= field) and the numbers in it, so
 * that a test can time an event by the program's own clock rather than by
 * when the test happened to read the pipe. */
#ifndef VG_LOGLINE_H
#define VG_LOGLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

/* Milliseconds on the wall clock (CLOCK_REALTIME), the clock of ts=. */
int64_t h_wall_ms(void);

/* Copies the first line of text that contains needle into line (without
 * its newline, truncated to cap); returns line, or NULL if there is none. */
const char *h_line(const char *text, const char *needle, char *line, size_t cap);

/* The line's ts=YYYY-MM-DDTHH:MM:SS.mmmZ as Unix milliseconds. */
bool h_line_ts(const char *line, int64_t *ms);

/* The integer right after the first occurrence of key in line ("client=",
 * "silent for "). */
bool h_line_num(const char *line, const char *key, long long *v);

/* Waits until p's stderr contains one of needles (NULL-terminated) or the
 * monotonic clock (h_now_ms) reaches deadline; returns the index of the
 * first needle found (in the order given), or -1. */
int h_wait_err_any(h_proc *p, const char *const needles[], int64_t deadline);

#endif
