/* The client's server list, resolved afresh on every connection attempt.
 *
 * A name is looked up on each attempt, and every address it has is tried
 * (as nats.c does): a broker whose name moves is found again, and
 * "localhost" answering ::1 first still reaches a broker that listens on
 * 127.0.0.1 only. A lookup can block for seconds (DNS), so it runs in a
 * helper thread that the I/O thread waits for next to its wake-up
 * descriptor; a stopping client abandons it and the helper frees itself.
 * Numeric addresses are resolved at once, without a thread. */
#ifndef VG_CLIENT_SERVERS_H
#define VG_CLIENT_SERVERS_H

#include <stddef.h>

#include "sock.h"
#include "status.h"

#define VG_RESOLVE_MAX 16 /* addresses tried per name and attempt */

typedef struct vg_servers vg_servers;

/* Parses "HOST:PORT[,HOST:PORT...]" ("[::1]:7222" for IPv6) without
 * resolving anything. VG_ERR_ARG with a static *why, or VG_ERR_NOMEM. */
vg_status vg_servers_parse(const char *list, vg_servers **out, const char **why);
void vg_servers_destroy(vg_servers *s);

size_t vg_servers_count(const vg_servers *s);

/* Entry i as given ("host:port"), for logs. */
const char *vg_servers_name(const vg_servers *s, size_t i);

typedef struct vg_resolve vg_resolve;

/* Starts resolving entry i; NULL when out of memory or threads. */
vg_resolve *vg_resolve_start(const vg_servers *s, size_t i);

/* Readable (POLLIN) once the result is in; -1 if it was in at once (a
 * numeric address). */
int vg_resolve_fd(const vg_resolve *r);

/* Once vg_resolve_fd is readable: the addresses, in the order the
 * resolver gave them (VG_OK), or VG_ERR_ARG with *why naming the failure. */
vg_status vg_resolve_result(const vg_resolve *r, const vg_addr **addrs, size_t *n,
                            const char **why);

/* Done with r, finished or not (a running lookup then frees it itself). */
void vg_resolve_release(vg_resolve *r);

#endif
