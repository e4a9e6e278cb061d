/* Readings from /proc for vigil-reconnect: a process's memory, threads and
 * CPU time, the kernel's TCP listen-drop counters, and the accept queue of
 * the broker's listening socket. Every reader returns -1 (or ok = false)
 * when the value cannot be read, never aborts. */
#ifndef RC_SYSPROBE_H
#define RC_SYSPROBE_H

#include <stdbool.h>
#include <sys/types.h>

/* VmRSS, VmHWM (peak RSS) or Threads from /proc/PID/status (pid 0: this
 * process), in kB or threads. */
long sp_status_field(pid_t pid, const char *field);

/* User plus system CPU seconds of every thread of pid. */
double sp_cpu_seconds(pid_t pid);

/* A number from a one-value file such as /proc/sys/net/core/somaxconn. */
long sp_read_long(const char *path);

/* The TcpExt counters that say whether connections were dropped at a listening
 * socket: ListenOverflows (accept queue full), ListenDrops (all drops at a
 * listener, overflows included), TCPReqQFullDrop and TCPReqQFullDoCookies
 * (SYN queue full). They count for the whole network namespace, so other
 * processes' listeners add to them too. */
typedef struct {
    bool ok;
    long long overflows, drops, reqq_full_drop, reqq_full_cookies;
} sp_listen_counters;

void sp_listen_counters_read(sp_listen_counters *out);

/* b - a, field by field; ok only if both were. */
sp_listen_counters sp_listen_counters_diff(const sp_listen_counters *b,
                                           const sp_listen_counters *a);

/* Connections waiting in the accept queue of the socket listening on
 * 127.0.0.1:port (/proc/net/tcp rx_queue of the LISTEN row); -1 if none.
 * Cheap: listeners come first in the file, so it stops reading there. */
int sp_accept_queue(int port);

/* The accept backlog the kernel applied to that listener (ss -ltn Send-Q:
 * min(the broker's listen() backlog, somaxconn)); -1 if ss cannot tell. Runs
 * ss: call it while this process is small, not during a measurement. */
int sp_listen_backlog(int port);

#endif
