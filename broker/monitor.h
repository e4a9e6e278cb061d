/* The monitoring endpoint: HTTP on a listener of its own (--monitor),
 * serving monz.c's documents. Off unless asked for. libmicrohttpd runs it
 * on one internal thread (epoll), with a cap on clients, on each one's
 * memory and on idle time, so a stuck or hostile HTTP client costs the
 * broker at most that thread's attention for a moment, never a connection
 * thread's: every document is a snapshot taken holding locks briefly and
 * formatted, then sent, holding none. */
#ifndef VG_MONITOR_H
#define VG_MONITOR_H

#include "server.h"
#include "sock.h"
#include "status.h"

typedef struct vg_monitor vg_monitor;

/* Binds addr, writes the bound address into srv->monitor_str, logs
 * event=monitor_listening addr=..., and starts serving srv. On failure logs
 * event=monitor_failed and returns VG_ERR_IO (or VG_ERR_NOMEM). */
vg_status vg_monitor_start(vg_server *srv, const vg_addr *addr, vg_monitor **out);

/* Stops serving (waits for the thread) and frees; NULL is fine. */
void vg_monitor_stop(vg_monitor *m);

#endif
