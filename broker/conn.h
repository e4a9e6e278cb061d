/* One broker connection, served by its own thread. */
#ifndef VG_CONN_H
#define VG_CONN_H

#include <stdint.h>

#include "buf.h"
#include "proto.h"
#include "server.h"
#include "status.h"

typedef struct vg_conn vg_conn;

/* Takes ownership of fd (a freshly accepted socket), registers the connection
 * with srv and starts its thread. If no thread can be started, the client
 * gets ERR limit and fd is closed. VG_OK, or the reason it is not served. */
vg_status vg_conn_start(vg_server *srv, int fd);

/* Publishes one MSG_TYPE1 message from the broker itself (e.g. $SYS.stats)
 * to the subscribers of topic; never waits for any of them (a full outbox
 * drops it for that subscriber). frame is the caller's reusable buffer,
 * *cache the calling thread's match cache (made on first use). */
struct vg_sublist_cache;
vg_status vg_conn_publish_system(vg_server *srv, const char *topic, const void *payload,
                                 size_t payload_len, vg_buf *frame,
                                 struct vg_sublist_cache **cache);

/* A topic log was just created that a pattern of c may cover: a version-2
 * c starts reading it (reader.c). Any thread. */
void vg_conn_topic_created(vg_conn *c, vg_tlog *log);

/* Answers a connection that will not be served with a fatal ERR (code,
 * why) and closes fd; ERR limit is counted as a limit eviction. */
void vg_conn_refuse(vg_server *srv, int fd, vg_errcode code, const char *why);

/* Asks every registered connection to say goodbye and close (shutdown). */
void vg_conn_stop_all(vg_server *srv);

/* Wakes every registered connection's thread so that it looks at its
 * timers now (after the machine resumed from a suspend). */
void vg_conn_wake_all(vg_server *srv);

/* The store's commit thread released records of a topic c reads: a
 * version-2 connection's thread is kicked to send them. */
void vg_conn_kick_reader(vg_conn *c);

/* The queue groups' ops over connections, the durables table and the
 * store, for srv's registry (conn_queue.c). */
void vg_conn_queue_ops(vg_server *srv, vg_qgroup_ops *ops);

/* The store's commit thread released records of topic (log t): the queue
 * groups that read it pump. scratch is the caller's. */
void vg_conn_route_queues(vg_server *srv, const char *topic, uint32_t len, vg_tlog *t,
                          vg_qgroup ***scratch, size_t *cap);

/* The store's commit thread: what c's deferred PONGs wait for is synced
 * (it drops the reference taken when c began to wait). */
void vg_conn_confirm_ready(vg_conn *c);

/* Reference counting: the thread holds one reference, and each entry of a
 * thread's match cache that lists the connection holds one (sublist.h). */
void vg_conn_retain(void *c);
void vg_conn_release(vg_conn *c);
/* vg_conn_release for a table's void * member (sublist.h). */
void vg_conn_release_member(void *c);

#endif
