/* The broker under test, as a child process of vigil-reconnect (and of
 * vigil-bench --restart): started on a fixed port of 127.0.0.1, kill -9'd,
 * and started again on the same port.
 *
 * Its stderr comes back through a pipe that one reader thread drains at once
 * (a broker blocked writing its log would stall for real), timestamping each
 * read with CLOCK_MONOTONIC. The reader notes the event=listening line and
 * keeps the level=warn and level=error lines. While a start waits for that
 * line, the calling thread also tries to connect every millisecond: "the
 * broker is listening" is the earlier of the two.
 *
 * The child gets PR_SET_PDEATHSIG(SIGKILL), which fires when the *thread*
 * that forked it exits: call bp_start from the main thread only. bp_create
 * also installs SIGINT/SIGTERM/SIGHUP handlers and an atexit hook that kill
 * the child, so no broker outlives the tool. One broker per process. */
#ifndef RC_BROKER_PROC_H
#define RC_BROKER_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct bp_broker bp_broker;

typedef struct {
    int64_t spawn_ns;   /* the fork of the start that succeeded */
    int64_t log_ns;     /* when the reader read event=listening */
    int64_t connect_ns; /* first probe connect accepted; 0 if the line came first */
    int64_t listen_ns;  /* the earlier of the two */
    int tries;          /* starts it took: the port can be busy for a moment */
} bp_listen;

typedef struct {
    size_t warn, error; /* lines at those levels since the last start */
} bp_problems;

/* A broker program at path, to listen on 127.0.0.1:port with extra_args
 * (NULL-terminated, may be NULL) after --listen; its stderr is also copied
 * to log_path if not NULL. Not started yet. NULL (with a message) on failure. */
bp_broker *bp_create(const char *path, int port, const char *const *extra_args,
                     const char *log_path);

/* Starts the broker and waits up to timeout_ms for it to listen, starting it
 * again while the port is still busy (listen_failed "Address already in
 * use"). Returns 0 and fills *out, or -1 after printing why to fd err_fd. */
int bp_start(bp_broker *b, int timeout_ms, bp_listen *out, int err_fd);

/* kill -9, reap, and wait for the reader to drain the last of the log. */
void bp_kill(bp_broker *b);

/* The running broker's pid, or 0. */
pid_t bp_pid(const bp_broker *b);

/* max_connections from the last event=listening line, or -1. */
long bp_max_connections(const bp_broker *b);

void bp_problems_get(bp_broker *b, bp_problems *out);

/* Writes up to max of the kept warn/error lines (since the last start) to fd. */
void bp_problems_print(bp_broker *b, int fd, size_t max);

/* Kills the broker if it runs and frees everything. */
void bp_destroy(bp_broker *b);

/* A port free on 127.0.0.1 right now, below the ephemeral range (so that no
 * client's own outgoing connection can take it while the broker is down, and
 * no client can connect to itself through it); falls back to one the kernel
 * picks. -1 on failure. */
int bp_pick_port(void);

#endif
