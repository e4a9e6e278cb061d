/* One broker connection, served by its own thread. */
#ifndef VG_CONN_H
#define VG_CONN_H

#include "server.h"
#include "status.h"

typedef struct vg_conn vg_conn;

/* Takes ownership of fd (a freshly accepted socket), registers the connection
 * with srv and starts its thread. On failure closes fd and returns an error. */
vg_status vg_conn_start(vg_server *srv, int fd);

/* Asks every registered connection to say goodbye and close (shutdown). */
void vg_conn_stop_all(vg_server *srv);

/* Reference counting: the thread holds one reference, and each publisher
 * delivering to the connection holds one for the duration of the delivery. */
void vg_conn_retain(void *c);
void vg_conn_release(vg_conn *c);

#endif
