/* End-to-end test harness: real broker/pub/sub processes on 127.0.0.1 and
 * ephemeral ports, readiness read from their logs, every wait bounded.
 *
 * Children get PR_SET_PDEATHSIG, so they die with the test worker even if a
 * test fails half-way. Never cr_assert from a thread; these helpers run on
 * the test's own thread.
 *
 * Each harness wait records what it waits for. A watchdog thread, started
 * with the test's first child or connection, ends a test that outlives its
 * deadline (VIGIL_TEST_WATCHDOG seconds, default 60 times the time scale,
 * and always before ctest's TIMEOUT, passed in VIGIL_TEST_TIMEOUT): it
 * writes to stderr what the test was waiting for, the test thread's
 * backtrace and every child's state and last stderr, and ends the worker. */
#ifndef VG_HARNESS_H
#define VG_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "decoder.h"
#include "frame.h"

typedef struct {
    pid_t pid;
    int out_fd, err_fd;
    int pid_fd; /* pidfd: readable once the child exits */
    char *out, *err; /* everything the child wrote so far, NUL-terminated */
    size_t out_len, err_len, out_cap, err_cap;
    bool exited;
    bool throttled; /* stdout is read only by h_read_some: a deliberately slow reader */
    int status; /* waitpid status once exited */
    const char *name;
    char cmd[200]; /* the command line, shortened: for reports */
} h_proc;

/* Paths of the programs under test: in $VIGIL_TEST_BIN_DIR when it is set,
 * else from the environment set by ctest. */
const char *h_bin(const char *which); /* "broker", "pub", "sub", "proxy" */

/* Starts argv (NULL-terminated; argv[0] a path) with stdout/stderr captured. */
h_proc *h_spawn(const char *name, const char *const argv[]);

/* Starts a broker on 127.0.0.1:0 plus extra args (NULL-terminated list) and
 * waits for its event=listening line; *port receives the bound port. */
h_proc *h_broker(int *port, ...);

/* Starts "sub --server 127.0.0.1:port [extra...] TOPIC..." (args NULL
 * terminated, extras before the topics as given) and waits until every
 * topic is acknowledged (event=subscribed). */
h_proc *h_sub(int port, ...);

/* Starts a broker on 127.0.0.1:port exactly (e.g. a restart after kill -9),
 * retrying briefly if the port is not free yet. */
h_proc *h_broker_at(int port, ...);

/* Starts "pub --server 127.0.0.1:port args..." without waiting for it. */
h_proc *h_pub_start(int port, ...);
/* A vigil-proxy to the broker at upstream, listening on an ephemeral port
 * returned in *port (SIGUSR1 black-holes the connections it holds). */
h_proc *h_proxy(int upstream, int *port);

/* Reads at most max bytes of a throttled child's stdout, if any are ready. */
size_t h_read_some(h_proc *p, size_t max);

/* The client id the broker gave the connection named name (from its
 * event=client_connected line), or 0 if not seen. */
unsigned h_client_id(const h_proc *broker, const char *name);

/* Runs "pub --server 127.0.0.1:port args..." to completion (bounded) and
 * returns its exit status (or -1 on timeout, after killing it). */
int h_pub(int port, ...);

/* Reads whatever the child wrote, waiting up to timeout_ms for something. */
void h_pump(h_proc *p, int timeout_ms);

/* Waits until stdout (h_wait_out) or stderr (h_wait_err) contains needle. */
bool h_wait_out(h_proc *p, const char *needle, int timeout_ms);
bool h_wait_err(h_proc *p, const char *needle, int timeout_ms);

/* Waits until the child's stderr contains needle at least n times. */
bool h_wait_err_count(h_proc *p, const char *needle, int n, int timeout_ms);

/* Names what the test itself is doing (printf-style), for the watchdog's
 * report, until the next call; NULL clears it. For a test's own loops: the
 * harness's waits describe themselves. */
void h_step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Occurrences of needle in s. */
int h_count(const char *s, const char *needle);

/* s itself if it is short, else its last few KiB (from a line start) after a
 * note of how much was cut; from a ring of 8 static buffers. Put a child's
 * output in an assertion or log message only through this: Criterion 2.4
 * hands each message to its runner over nanomsg, whose receive limit (1 MiB)
 * drops a larger one without a word, and the test then waits forever for the
 * acknowledgement: a silent hang instead of a failure. */
const char *h_tail(const char *s);

/* Waits for the child to exit; returns false on timeout. */
bool h_wait_exit(h_proc *p, int timeout_ms);
int h_exit_code(const h_proc *p); /* -1 if killed by a signal */

void h_signal(h_proc *p, int sig);

/* Kills (SIGKILL) if still running, reaps, frees. */
void h_free(h_proc *p);

/* Milliseconds on the monotonic clock. */
int64_t h_now_ms(void);

/* Asserts the broker still serves a fresh pub/sub pair end to end. */
void h_assert_serves(int port);

/* ---- raw protocol client, for hostile-input tests ---- */

typedef struct {
    int fd;
    vg_decoder *dec;
} h_raw;

h_raw h_raw_connect(int port);
/* The same with a small receive buffer, so that a client that stops reading
 * closes its TCP window quickly. */
h_raw h_raw_connect_small(int port, int rcvbuf);
void h_raw_close(h_raw *r);
void h_raw_send(h_raw *r, const void *bytes, size_t n);
void h_raw_send_buf(h_raw *r, vg_buf *b); /* sends and empties b */
/* Sends CONNECT and asserts INFO comes back. */
void h_raw_handshake(h_raw *r);
/* Reads the next frame (valid until the next read); false on EOF/timeout. */
bool h_raw_read(h_raw *r, vg_frame *f, int timeout_ms);
/* True if the peer closes the connection within timeout_ms (frames before EOF are skipped). */
bool h_raw_wait_eof(h_raw *r, int timeout_ms);

/* ---- resources, time scale, files: for the hardening tests (issue 5) ---- */

/* VIGIL_TEST_TIME_SCALE (at least 1; 1 if unset): sanitizer builds run
 * several times slower, so tests multiply their timings by it. */
double h_time_scale(void);
/* ms multiplied by the time scale. */
int h_ms(int ms);
/* Decimal seconds multiplied by the time scale, as a command-line argument
 * (from a ring of 16 static buffers). */
const char *h_secs(double s);

/* The number in /proc/PID/status for key ("Threads"; "VmRSS" in kB), or -1. */
long h_proc_status(pid_t pid, const char *key);

/* Whether the running child was built with AddressSanitizer or
 * ThreadSanitizer (their runtime is mapped into it): their allocators keep
 * freed memory (ASan's quarantine), so its RSS says nothing about leaks. */
bool h_sanitized(const h_proc *p);

typedef struct {
    long threads;
    long rss_kb;
} h_usage;

/* The child's thread count and resident memory now. */
h_usage h_usage_of(const h_proc *p);

/* Waits (bounded) until p has at most base.threads + slack_threads threads
 * (one more for a sanitized child), then asserts its RSS is at most
 * base.rss_kb + slack_kb (not checked for a sanitized child, whose leaks
 * LeakSanitizer reports at exit instead). */
void h_assert_usage_back(const h_proc *p, h_usage base, int slack_threads, long slack_kb,
                         int timeout_ms);

/* Raises this process's RLIMIT_NOFILE soft limit to the hard limit;
 * returns the soft limit now in force. */
long h_raise_nofile(void);

/* Writes len bytes to a new temporary file (mode 0600); returns its path,
 * malloc'd: unlink and free it. */
char *h_temp_file(const void *bytes, size_t len);

/* A plain blocking TCP connection to 127.0.0.1:port; -1 on failure. */
int h_tcp_connect(int port);

/* Reads frames until an ERR (skipping others), asserts its code, then that
 * the broker closes the connection. */
void h_raw_expect_fatal(h_raw *r, uint64_t code, int timeout_ms);

#endif
