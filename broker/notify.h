/* Readiness for a service manager: systemd's notification protocol
 * (sd_notify(3)) without libsystemd. The protocol is one datagram of
 * NEWLINE-separated VAR=VALUE lines to the AF_UNIX socket named by
 * $NOTIFY_SOCKET: an absolute path, or @name in the abstract namespace.
 * Without the variable (not started by systemd as Type=notify) there is
 * nothing to do. */
#ifndef VG_NOTIFY_H
#define VG_NOTIFY_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "status.h"

/* The address $NOTIFY_SOCKET names: false if name is not an absolute
 * path or @name that fits a sockaddr_un. Pure. */
bool vg_notify_addr(const char *name, struct sockaddr_un *sa, socklen_t *len);

/* Sends state ("READY=1", "STOPPING=1", ...) to $NOTIFY_SOCKET. VG_OK
 * also when the variable is not set; VG_ERR_ARG if it names no usable
 * address, VG_ERR_IO if the send failed (errno says why). */
vg_status vg_notify(const char *state);

#endif
