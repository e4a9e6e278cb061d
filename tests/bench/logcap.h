/* The tool's own progress lines and the client library's log, kept apart.
 *
 * The client library logs to this process's stderr, one line per event; with
 * 10,000 clients a broker restart writes tens of thousands of lines in a
 * burst. lc_open points descriptor 2 at a file (an append to a file never
 * blocks a client's I/O thread the way a full pipe or a slow terminal would,
 * which would distort the very delays measured) and keeps the original stderr
 * for the tool's progress lines. A mark is a byte offset in that file;
 * lc_count tallies the lines between two marks by level and by event. */
#ifndef RC_LOGCAP_H
#define RC_LOGCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define LC_MAX_EVENTS 32

typedef struct {
    size_t lines, warn, error;
    struct {
        char name[40];
        bool error; /* level=error, else level=warn */
        size_t n;
    } ev[LC_MAX_EVENTS]; /* warn and error lines by event; the rest go to "other" */
    size_t nev;
} lc_counts;

/* Sends stderr to path, or to an unlinked temporary file when path is NULL.
 * Returns 0, or -1 with a message on the original stderr. */
int lc_open(const char *path);

/* A progress line on the original stderr, prefixed with the seconds since
 * lc_open; a newline is added. */
void lc_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The original stderr, for writers that print lines of their own. */
int lc_progress_fd(void);

/* Where the log ends now. */
off_t lc_mark(void);

/* Counts the lines in [from, to). */
void lc_count(off_t from, off_t to, lc_counts *out);

/* Counts the lines in [from, to) by their own ts= field: into *before those
 * stamped before cut_ns (Unix time, ns), the rest (and any line without a
 * ts=) into *after. A line's place in the file is when it was written, and
 * a thread that waits for the CPU between the stamp and the write (seconds,
 * with thousands of threads on 2 cores) writes it late; its stamp says when
 * the event happened. */
void lc_count_split(off_t from, off_t to, int64_t cut_ns, lc_counts *before, lc_counts *after);

/* The times of the lines in [from, to) whose event is event, from their
 * ts= field (UTC wall clock, ms resolution), as Unix time in ns; at most max
 * are stored. Returns how many were found. Each line is written by the
 * client's own I/O thread as the event happens, so, unlike an observer
 * thread that would wait its turn for the CPU behind thousands of clients,
 * these times stay right under load. A change of the log format makes this
 * find nothing, never wrong times. */
size_t lc_event_times(off_t from, off_t to, const char *event, int64_t *out_ns, size_t max);

/* Prints the warn/error tallies as one progress line, after label. */
void lc_print(const char *label, const lc_counts *c);

/* Puts stderr back. */
void lc_close(void);

#endif
