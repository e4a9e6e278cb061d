/* Socket helpers: addresses, listening, non-blocking connects, options. */
#ifndef VG_SOCK_H
#define VG_SOCK_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "status.h"

typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
} vg_addr;

#define VG_ADDR_STRLEN 64

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: only this host can connect. */
bool vg_addr_is_loopback(const vg_addr *a);

#define VG_HOST_MAX 255

/* Splits the len bytes at s, "HOST:PORT" ("[::1]:7222" for IPv6), into
 * host (VG_HOST_MAX + 1 bytes) and port (8 bytes), NUL-terminated, without
 * resolving anything; the port must be min_port to 65535. VG_ERR_ARG with
 * a static *why otherwise. */
vg_status vg_hostport_split(const char *s, size_t len, unsigned min_port, char *host, char *port,
                            const char **why);

/* Parses "HOST:PORT" ("[::1]:7222" for IPv6; HOST may be a name such as
 * localhost, resolved once here: for a listening address; the client looks
 * its servers up on every attempt, client_servers.h). *why names the
 * problem on VG_ERR_ARG. */
vg_status vg_addr_parse(const char *hostport, vg_addr *out, const char **why);

/* Renders "1.2.3.4:5678" or "[::1]:5678" into buf (VG_ADDR_STRLEN bytes). */
const char *vg_addr_format(const vg_addr *a, char *buf);

/* Local (want_peer=0) or peer address of fd, formatted. */
const char *vg_sock_name(int fd, int want_peer, char *buf);

/* A non-blocking, close-on-exec listening socket bound to a. */
vg_status vg_listen(const vg_addr *a, int backlog, int *fd_out);

/* Starts a non-blocking connect. VG_OK: connected at once; VG_AGAIN: wait for
 * POLLOUT then call vg_connect_finish; VG_ERR_IO: failed (errno set). */
vg_status vg_connect_start(const vg_addr *a, int *fd_out);

/* After POLLOUT on a connecting socket: VG_OK, or VG_ERR_IO with errno set. */
vg_status vg_connect_finish(int fd);

/* Low-latency options every vigil connection uses (TCP_NODELAY, non-blocking). */
void vg_sock_tune(int fd);

/* What the peer's TCP has acknowledged of the data we sent on a connection. */
typedef struct {
    uint64_t bytes;    /* bytes acknowledged since the connection began */
    uint32_t window;   /* the peer's advertised receive window */
    bool window_known; /* the kernel reports it (Linux 5.4 or later) */
} vg_sock_acked;

/* Reads the kernel's record (TCP_INFO) of the peer's acknowledgements: the
 * only proof that the peer's side is taking our data, as opposed to our own
 * kernel buffering it. VG_ERR_IO if the socket cannot tell (not TCP, or a
 * kernel older than Linux 4.2). */
vg_status vg_sock_acks(int fd, vg_sock_acked *out);

/* TCP keep-alive (idle, interval, count) and TCP_USER_TIMEOUT, in milliseconds;
 * 0 leaves a setting alone. Failures are ignored: these are a second line of defence. */
void vg_sock_keepalive(int fd, int64_t idle_ms, int64_t interval_ms, int count,
                       int64_t user_timeout_ms);

#endif
