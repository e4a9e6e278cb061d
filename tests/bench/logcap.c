#include "logcap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int orig_fd = STDERR_FILENO; /* the original stderr once lc_open has run */
static int log_fd = -1;
static struct timespec t0;

int lc_open(const char *path)
{
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int fd;
    char temp_path[64];
    if (path != NULL) {
        /* read and write: lc_count reads it back */
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    } else {
        snprintf(temp_path, sizeof temp_path, "/tmp/vigil-reconnect-clients.XXXXXX");
        fd = mkostemp(temp_path, O_APPEND | O_CLOEXEC);
        if (fd >= 0)
            unlink(temp_path); /* lives while open: nothing left behind, even after a signal */
    }
    if (fd < 0) {
        fprintf(stderr, "vigil-reconnect: cannot open the client log %s: %s\n",
                path != NULL ? path : "(temporary)", strerror(errno));
        return -1;
    }
    int saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (saved < 0 || dup2(fd, STDERR_FILENO) < 0) {
        fprintf(stderr, "vigil-reconnect: cannot redirect stderr: %s\n", strerror(errno));
        if (saved >= 0)
            close(saved);
        close(fd);
        return -1;
    }
    close(fd);
    orig_fd = saved;
    log_fd = STDERR_FILENO;
    return 0;
}

int lc_progress_fd(void) { return orig_fd; }

void lc_progress(const char *fmt, ...)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double s = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
    char line[1024];
    int n = snprintf(line, sizeof line, "reconnect: [%8.3f] ", s);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* progress only: a failed write changes nothing */
    ssize_t ignored = write(orig_fd, line, (size_t)n);
    (void)ignored;
}

off_t lc_mark(void)
{
    if (log_fd < 0)
        return 0;
    off_t end = lseek(log_fd, 0, SEEK_END);
    return end < 0 ? 0 : end;
}

static void tally(lc_counts *c, const char *line, size_t len)
{
    c->lines++;
    bool err = memmem(line, len, " level=error ", 13) != NULL;
    if (!err && memmem(line, len, " level=warn ", 12) == NULL)
        return;
    if (err)
        c->error++;
    else
        c->warn++;
    const char *ev = memmem(line, len, "event=", 6);
    char name[40] = "other";
    if (ev != NULL) {
        ev += 6;
        size_t n = 0;
        while (ev + n < line + len && ev[n] != ' ' && n < sizeof name - 1)
            n++;
        memcpy(name, ev, n);
        name[n] = '\0';
    }
    for (size_t i = 0; i < c->nev; i++) {
        if (c->ev[i].error == err && strcmp(c->ev[i].name, name) == 0) {
            c->ev[i].n++;
            return;
        }
    }
    if (c->nev < LC_MAX_EVENTS) {
        snprintf(c->ev[c->nev].name, sizeof c->ev[c->nev].name, "%s", name);
        c->ev[c->nev].error = err;
        c->ev[c->nev++].n = 1;
    }
}

/* Calls each(line, len, arg) for every line in [from, to). */
static void each_line(off_t from, off_t to, void (*each)(const char *, size_t, void *), void *arg)
{
    if (log_fd < 0 || to <= from)
        return;
    static char buf[1 << 16];
    char line[1024];
    size_t llen = 0;
    for (off_t off = from; off < to;) {
        size_t want = (size_t)(to - off) < sizeof buf ? (size_t)(to - off) : sizeof buf;
        ssize_t n = pread(log_fd, buf, want, off);
        if (n <= 0)
            break;
        off += n;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                each(line, llen, arg);
                llen = 0;
            } else if (llen < sizeof line) {
                line[llen++] = buf[i];
            }
        }
    }
    if (llen > 0)
        each(line, llen, arg);
}

static void tally_line(const char *line, size_t len, void *arg) { tally(arg, line, len); }

void lc_count(off_t from, off_t to, lc_counts *out)
{
    memset(out, 0, sizeof *out);
    each_line(from, to, tally_line, out);
}

typedef struct {
    char needle[64];
    size_t needle_len;
    int64_t *out;
    size_t n, max;
} time_scan;

/* A line's ts= field as Unix time in ns; false if it has none. */
static bool line_ts(const char *line, size_t len, int64_t *out_ns)
{
    if (len < 28 || memcmp(line, "ts=", 3) != 0)
        return false;
    char ts[32];
    memcpy(ts, line + 3, 24);
    ts[24] = '\0';
    struct tm tm = {0};
    int ms;
    if (sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out_ns = ((int64_t)timegm(&tm) * 1000 + ms) * 1000000;
    return true;
}

static void time_line(const char *line, size_t len, void *arg)
{
    time_scan *t = arg;
    int64_t ns;
    if (memmem(line, len, t->needle, t->needle_len) == NULL || !line_ts(line, len, &ns))
        return;
    if (t->n < t->max)
        t->out[t->n] = ns;
    t->n++;
}

size_t lc_event_times(off_t from, off_t to, const char *event, int64_t *out_ns, size_t max)
{
    time_scan t = {.out = out_ns, .max = max};
    int n = snprintf(t.needle, sizeof t.needle, " event=%s ", event);
    if (n <= 0 || (size_t)n >= sizeof t.needle)
        return 0;
    t.needle_len = (size_t)n;
    each_line(from, to, time_line, &t);
    return t.n;
}

typedef struct {
    int64_t cut_ns;
    lc_counts *before, *after;
} split_scan;

static void split_line(const char *line, size_t len, void *arg)
{
    split_scan *s = arg;
    int64_t ns;
    tally(line_ts(line, len, &ns) && ns < s->cut_ns ? s->before : s->after, line, len);
}

void lc_count_split(off_t from, off_t to, int64_t cut_ns, lc_counts *before, lc_counts *after)
{
    memset(before, 0, sizeof *before);
    memset(after, 0, sizeof *after);
    split_scan s = {cut_ns, before, after};
    each_line(from, to, split_line, &s);
}

void lc_print(const char *label, const lc_counts *c)
{
    char text[900];
    size_t o = 0;
    for (size_t i = 0; i < c->nev && o < sizeof text - 64; i++) {
        int n = snprintf(text + o, sizeof text - o, " %s:%s=%zu", c->ev[i].error ? "error" : "warn",
                         c->ev[i].name, c->ev[i].n);
        if (n > 0)
            o += (size_t)n;
    }
    text[o] = '\0';
    lc_progress("%s: %zu lines, %zu warn, %zu error%s", label, c->lines, c->warn, c->error, text);
}

void lc_close(void)
{
    if (log_fd < 0)
        return;
    if (dup2(orig_fd, STDERR_FILENO) >= 0) {
        close(orig_fd);
        orig_fd = STDERR_FILENO;
    }
    log_fd = -1;
}
