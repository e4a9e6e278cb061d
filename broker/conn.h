/* One broker connection, served by its own thread. */
#ifndef VG_CONN_H
#define VG_CONN_H

#include "buf.h"
#include "server.h"
#include "status.h"

typedef struct vg_conn vg_conn;

/* Takes ownership of fd (a freshly accepted socket), registers the connection
 * with srv and starts its thread. On failure closes fd and returns an error. */
vg_status vg_conn_start(vg_server *srv, int fd);

/* Publishes one MSG_TYPE1 message from the broker itself (e.g. $SYS.stats)
 * to the subscribers of topic, never waiting for any of them. frame and
 * scratch are the caller's reusable buffers. */
vg_status vg_conn_publish_system(vg_server *srv, const char *topic, const void *payload,
                                 size_t payload_len, vg_buf *frame, void ***scratch,
                                 size_t *scratch_cap);

/* Asks every registered connection to say goodbye and close (shutdown). */
void vg_conn_stop_all(vg_server *srv);

/* Reference counting: the thread holds one reference, and each publisher
 * delivering to the connection holds one for the duration of the delivery. */
void vg_conn_retain(void *c);
void vg_conn_release(vg_conn *c);

#endif
