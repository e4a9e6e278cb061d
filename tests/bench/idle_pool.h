/* Idle connections for the idle-cost cases of the NATS and MQTT backends:
 * n raw TCP connections to a peer broker, driven by one epoll thread, each
 * speaking just enough of the peer's protocol to subscribe and stay alive.
 * The protocol is a small table of callbacks; this module owns the sockets,
 * the thread, and the wait until every connection is ready. */
#ifndef BENCH_IDLE_POOL_H
#define BENCH_IDLE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idle_pool idle_pool;

typedef struct {
    const char *name;  /* the system, for messages: "nats", "mosquitto" */
    size_t conn_size;  /* the protocol's state per connection, zeroed at start */
    /* A connection is open (on the opening thread): the protocol may speak
     * first. False fails the pool. */
    bool (*on_open)(idle_pool *p, int i);
    /* Bytes from connection i (on the pool's thread); the protocol calls
     * idle_pool_settle once the connection is subscribed, or has failed. */
    void (*on_bytes)(idle_pool *p, int i, const uint8_t *buf, size_t n);
    /* Every 200 ms at most, for keep-alives the client must send; may be NULL. */
    void (*on_tick)(idle_pool *p, int64_t now_ms);
} idle_proto;

/* Opens n connections to server and waits until each has settled, within
 * 30 s + 2 ms per connection. arg is the protocol's (idle_pool_arg).
 * Returns NULL, after saying why on stderr, if any failed. */
idle_pool *idle_pool_open(const idle_proto *proto, void *arg, const char *server, int n);
void idle_pool_close(idle_pool *p);

/* Marks connection i subscribed (ready) or failed, once. */
void idle_pool_settle(idle_pool *p, int i, bool ready);
bool idle_pool_ready(idle_pool *p, int i);
int idle_pool_fd(idle_pool *p, int i);
void *idle_pool_conn(idle_pool *p, int i); /* the protocol's state of connection i */
void *idle_pool_arg(idle_pool *p);
int idle_pool_count(idle_pool *p); /* connections opened so far */
int64_t idle_pool_now_ms(void);

/* send() of the whole buffer or false. */
bool idle_send(int fd, const void *data, size_t len);

#endif
