/* The interface each benchmarked system implements (vigil, NATS, MQTT), so
 * one benchmark core drives all of them with the same workload.
 *
 * A connection is created by one thread and used by it; received messages
 * arrive on a thread the backend owns (its client library's I/O or callback
 * thread). Every call returns 0 on success, -1 on failure (after printing
 * why to stderr). */
#ifndef BENCH_BACKEND_H
#define BENCH_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct bench_conn bench_conn;

/* Called for each message received on a connection that subscribed. */
typedef void (*bench_on_msg)(void *ud, const uint8_t *payload, size_t len);

typedef struct {
    const char *name; /* "vigil", "nats", "mosquitto" */
    /* Connects to server ("HOST:PORT"). on_msg/ud may be NULL for publishers. */
    bench_conn *(*connect)(const char *server, bench_on_msg on_msg, void *ud);
    /* Subscribes and returns once the broker has acknowledged the subscription. */
    int (*subscribe)(bench_conn *c, const char *topic);
    /* Queues one message for publication; may block when the client's buffer is full,
     * but must never drop. */
    int (*publish)(bench_conn *c, const char *topic, const void *payload, size_t len);
    /* Returns once everything published so far has reached the broker. */
    int (*flush)(bench_conn *c, int timeout_ms);
    void (*close)(bench_conn *c);
    /* Idle connections for the idle-cost cases: opens n connections that
     * complete the system's handshake, subscribe to topic, and answer the
     * broker's keep-alives (or send their own, as the protocol requires) for
     * as long as the pool lives. Returns NULL on failure. */
    void *(*idle_open)(const char *server, int n, const char *topic);
    void (*idle_close)(void *pool);
} bench_backend;

extern const bench_backend bench_vigil;
#ifdef HAVE_NATS
extern const bench_backend bench_nats;
#endif
#ifdef HAVE_MOSQUITTO
extern const bench_backend bench_mosquitto;
#endif

#endif
