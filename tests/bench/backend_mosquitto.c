/* The MQTT backend: libmosquitto (MQTT 3.1.1, QoS 0, clean sessions) for
 * publishers and subscribers, and a raw-packet pool for idle connections.
 *
 * Flush. MQTT QoS 0 has no acknowledgement, so "everything published so far
 * has reached the broker" cannot be asked directly. Each connection
 * subscribes at setup to a private topic, bench/flush/<client id>; flush
 * publishes a numbered marker there and waits for it to come back. The
 * broker handles one connection's packets in order, so when the marker
 * returns, every publication sent before it has been processed (routed to
 * the subscribers' queues) by the broker.
 *
 * Never dropping. mosquitto_publish only queues the packet for the loop
 * thread, without any bound. To keep memory bounded and to make a stalled
 * connection visible, publish blocks while more than WINDOW packets are
 * queued but not yet written to the socket; libmosquitto reports each QoS 0
 * packet written through the on_publish callback. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "backend.h"
#include "idle_pool.h"
#include "sock.h"

#define WINDOW 16384 /* publications queued in libmosquitto, not yet written */
#define KEEPALIVE_S 60

enum { CONN_PENDING, CONN_UP, CONN_DOWN };

struct bench_conn {
    struct mosquitto *m;
    bench_on_msg on_msg;
    void *ud;
    char id[48];
    char flush_topic[64];
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    int state;
    int suback_mid; /* the last subscription acknowledged */
    bool suback_ok;
    uint64_t queued, written; /* publications handed to libmosquitto / written out */
    uint64_t flush_sent, flush_seen;
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static atomic_int next_id;

static void lib_init(void)
{
    mosquitto_lib_init();
}

/* Splits "HOST:PORT" at its last colon. */
static int split_server(const char *server, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(server, ':');
    if (colon == NULL || (size_t)(colon - server) >= cap || colon[1] == '\0')
        return -1;
    memcpy(host, server, (size_t)(colon - server));
    host[colon - server] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

/* Waits on c->cv until pred(c) holds or timeout_ms passes; returns whether
 * it holds. Called with c->mu held. */
static bool wait_until(bench_conn *c, bool (*pred)(const bench_conn *), int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    while (!pred(c))
        if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT)
            return pred(c);
    return true;
}

/* ---- callbacks, on libmosquitto's loop thread ---- */

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    bench_conn *c = obj;
    (void)m;
    if (rc != 0)
        fprintf(stderr, "mosquitto: %s: connection refused: %s\n", c->id,
                mosquitto_connack_string(rc));
    pthread_mutex_lock(&c->mu);
    c->state = rc == 0 ? CONN_UP : CONN_DOWN;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    bench_conn *c = obj;
    (void)m;
    if (rc != 0) /* 0: we asked for it */
        fprintf(stderr, "mosquitto: %s: connection lost: %s\n", c->id, mosquitto_strerror(rc));
    pthread_mutex_lock(&c->mu);
    c->state = CONN_DOWN;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted)
{
    bench_conn *c = obj;
    (void)m;
    pthread_mutex_lock(&c->mu);
    c->suback_mid = mid;
    c->suback_ok = n >= 1 && granted[0] != 0x80;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    bench_conn *c = obj;
    (void)m;
    (void)mid;
    pthread_mutex_lock(&c->mu);
    c->written++;
    if (c->queued - c->written == WINDOW - 1) /* a publisher may be waiting for room */
        pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    bench_conn *c = obj;
    (void)m;
    if (strcmp(msg->topic, c->flush_topic) == 0) {
        uint64_t seq = 0;
        if (msg->payloadlen == (int)sizeof seq)
            memcpy(&seq, msg->payload, sizeof seq);
        pthread_mutex_lock(&c->mu);
        if (seq > c->flush_seen)
            c->flush_seen = seq;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    if (c->on_msg != NULL)
        c->on_msg(c->ud, msg->payload, (size_t)msg->payloadlen);
}

/* ---- the backend ---- */

static bool is_connected(const bench_conn *c)
{
    return c->state != CONN_PENDING;
}

static bool is_subscribed(const bench_conn *c)
{
    return c->suback_mid != 0 || c->state == CONN_DOWN;
}

static int subscribe_and_wait(bench_conn *c, const char *topic)
{
    int mid = 0;
    pthread_mutex_lock(&c->mu);
    c->suback_mid = 0;
    pthread_mutex_unlock(&c->mu);
    int rc = mosquitto_subscribe(c->m, &mid, topic, 0);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "mosquitto: subscribe %s: %s\n", topic, mosquitto_strerror(rc));
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    bool acked = wait_until(c, is_subscribed, 5000) && c->suback_mid == mid && c->suback_ok;
    pthread_mutex_unlock(&c->mu);
    if (!acked) {
        fprintf(stderr, "mosquitto: subscribe %s: not acknowledged\n", topic);
        return -1;
    }
    return 0;
}

static void q_close(bench_conn *c);

static bench_conn *q_connect(const char *server, bench_on_msg on_msg, void *ud)
{
    char host[256];
    int port;
    if (split_server(server, host, sizeof host, &port) != 0) {
        fprintf(stderr, "mosquitto: bad server address %s\n", server);
        return NULL;
    }
    pthread_once(&lib_once, lib_init);
    bench_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->on_msg = on_msg;
    c->ud = ud;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    snprintf(c->id, sizeof c->id, "vb-%d-%d", (int)getpid(), atomic_fetch_add(&next_id, 1));
    snprintf(c->flush_topic, sizeof c->flush_topic, "bench/flush/%s", c->id);
    c->m = mosquitto_new(c->id, true, c);
    if (c->m == NULL) {
        fprintf(stderr, "mosquitto: mosquitto_new: %s\n", strerror(errno));
        q_close(c);
        return NULL;
    }
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    /* as libnats and vigil do: each small publication leaves at once */
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_disconnect_callback_set(c->m, on_disconnect);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_publish_callback_set(c->m, on_publish);
    mosquitto_message_callback_set(c->m, on_message);
    int rc = mosquitto_connect(c->m, host, port, KEEPALIVE_S);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_loop_start(c->m);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "mosquitto: connect %s: %s\n", server,
                rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        q_close(c);
        return NULL;
    }
    pthread_mutex_lock(&c->mu);
    bool up = wait_until(c, is_connected, 5000) && c->state == CONN_UP;
    pthread_mutex_unlock(&c->mu);
    if (!up || subscribe_and_wait(c, c->flush_topic) != 0) {
        fprintf(stderr, "mosquitto: cannot connect to %s\n", server);
        q_close(c);
        return NULL;
    }
    return c;
}

static int q_subscribe(bench_conn *c, const char *topic)
{
    return subscribe_and_wait(c, topic);
}

static bool has_room(const bench_conn *c)
{
    return c->queued - c->written < WINDOW || c->state != CONN_UP;
}

/* Queues one QoS 0 publication, after waiting (at most 60 s) for room. */
static int publish_one(bench_conn *c, const char *topic, const void *p, size_t n)
{
    pthread_mutex_lock(&c->mu);
    bool room = wait_until(c, has_room, 60000) && c->state == CONN_UP;
    if (room)
        c->queued++;
    pthread_mutex_unlock(&c->mu);
    if (!room) {
        fprintf(stderr, "mosquitto: %s: publish: %s\n", c->id,
                c->state != CONN_UP ? "not connected" : "nothing written for 60 s");
        return -1;
    }
    int rc = mosquitto_publish(c->m, NULL, topic, (int)n, p, 0, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        pthread_mutex_lock(&c->mu);
        c->queued--;
        pthread_mutex_unlock(&c->mu);
        fprintf(stderr, "mosquitto: %s: publish: %s\n", c->id,
                rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

static int q_publish(bench_conn *c, const char *topic, const void *p, size_t n)
{
    return publish_one(c, topic, p, n);
}

static bool flushed(const bench_conn *c)
{
    return c->flush_seen >= c->flush_sent || c->state != CONN_UP;
}

static int q_flush(bench_conn *c, int timeout_ms)
{
    pthread_mutex_lock(&c->mu);
    uint64_t seq = ++c->flush_sent;
    pthread_mutex_unlock(&c->mu);
    if (publish_one(c, c->flush_topic, &seq, sizeof seq) != 0)
        return -1;
    pthread_mutex_lock(&c->mu);
    bool ok = wait_until(c, flushed, timeout_ms < 0 ? 60000 : timeout_ms) && c->flush_seen >= seq;
    pthread_mutex_unlock(&c->mu);
    if (!ok) {
        fprintf(stderr, "mosquitto: %s: flush marker %llu did not come back\n", c->id,
                (unsigned long long)seq);
        return -1;
    }
    return 0;
}

/* Disconnects and stops the loop thread: no callback runs after this. */
static void q_close(bench_conn *c)
{
    if (c->m != NULL) {
        mosquitto_disconnect(c->m);
        mosquitto_loop_stop(c->m, false);
        mosquitto_destroy(c->m);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

/* ---- idle pool: MQTT 3.1.1 over raw sockets (idle_pool.h) ----
 *
 * Each connection sends CONNECT (clean session, keep-alive 60 s), waits for
 * CONNACK, sends SUBSCRIBE (QoS 0) and is ready at SUBACK. MQTT leaves the
 * keep-alive to the client: the broker drops a connection silent for 1.5 x
 * its keep-alive, so each ready connection sends a PINGREQ every 30 s and
 * the PINGRESPs are discarded. Packets are parsed only as far as needed: the
 * fixed header, and the first bytes of the body. */

#define PING_EVERY_MS 30000

typedef struct {
    bool sent_subscribe;
    bool in_body;   /* past the fixed header */
    uint8_t hdr[5]; /* the fixed header: type, remaining length */
    int hdr_len;
    uint32_t body_left; /* bytes of the current packet's body still to come */
    uint8_t body[4];    /* its first bytes */
    uint32_t body_len;
    int64_t next_ping_ms;
} q_idle_conn;

typedef struct {
    idle_pool *pool;
    char topic[256];
    size_t topic_len;
} q_idle;

/* Appends an MQTT remaining length (variable-length integer); returns its size. */
static size_t put_varlen(uint8_t *out, size_t v)
{
    size_t i = 0;
    do {
        uint8_t b = v % 128;
        v /= 128;
        out[i++] = (uint8_t)(b | (v > 0 ? 0x80 : 0));
    } while (v > 0);
    return i;
}

static size_t put_str(uint8_t *out, const char *s, size_t len)
{
    out[0] = (uint8_t)(len >> 8);
    out[1] = (uint8_t)len;
    memcpy(out + 2, s, len);
    return len + 2;
}

static bool send_connect(int fd, int i)
{
    char id[48];
    size_t id_len = (size_t)snprintf(id, sizeof id, "vbi-%d-%d", (int)getpid(), i);
    uint8_t body[80], pkt[96];
    size_t b = put_str(body, "MQTT", 4);
    body[b++] = 4;    /* protocol level: 3.1.1 */
    body[b++] = 0x02; /* flags: clean session */
    body[b++] = (uint8_t)(KEEPALIVE_S >> 8);
    body[b++] = (uint8_t)KEEPALIVE_S;
    b += put_str(body + b, id, id_len);
    size_t k = 0;
    pkt[k++] = 0x10;
    k += put_varlen(pkt + k, b);
    memcpy(pkt + k, body, b);
    return idle_send(fd, pkt, k + b);
}

static bool send_subscribe(int fd, const char *topic, size_t topic_len)
{
    uint8_t pkt[16 + 256];
    size_t body = 2 + 2 + topic_len + 1, k = 0;
    pkt[k++] = 0x82; /* SUBSCRIBE, with its required flags */
    k += put_varlen(pkt + k, body);
    pkt[k++] = 0;
    pkt[k++] = 1; /* packet identifier */
    k += put_str(pkt + k, topic, topic_len);
    pkt[k++] = 0; /* requested QoS */
    return idle_send(fd, pkt, k);
}

static bool q_idle_open_conn(idle_pool *p, int i)
{
    return send_connect(idle_pool_fd(p, i), i);
}

/* Acts on one complete packet (its type and first body bytes). */
static void q_idle_packet(idle_pool *p, int i, q_idle_conn *c)
{
    q_idle *x = idle_pool_arg(p);
    int type = c->hdr[0] >> 4;
    if (type == 2 && !c->sent_subscribe) { /* CONNACK */
        if (c->body_len < 2 || c->body[1] != 0) {
            fprintf(stderr, "mosquitto: idle connection refused (code %d)\n",
                    c->body_len >= 2 ? c->body[1] : -1);
            idle_pool_settle(p, i, false);
        } else if (!send_subscribe(idle_pool_fd(p, i), x->topic, x->topic_len)) {
            idle_pool_settle(p, i, false);
        } else {
            c->sent_subscribe = true;
        }
    } else if (type == 9 && c->sent_subscribe && !idle_pool_ready(p, i)) { /* SUBACK */
        if (c->body_len < 3 || c->body[2] == 0x80) {
            fprintf(stderr, "mosquitto: idle subscription refused\n");
            idle_pool_settle(p, i, false);
        } else {
            c->next_ping_ms = idle_pool_now_ms() + PING_EVERY_MS;
            idle_pool_settle(p, i, true);
        }
    }
    /* PINGRESP and anything else: discarded */
}

/* Feeds received bytes through the packet framing. */
static void q_idle_bytes(idle_pool *p, int i, const uint8_t *buf, size_t n)
{
    q_idle_conn *c = idle_pool_conn(p, i);
    size_t k = 0;
    while (k < n) {
        if (!c->in_body) {
            if (c->hdr_len == (int)sizeof c->hdr) { /* a fifth length byte: malformed */
                fprintf(stderr, "mosquitto: idle connection: malformed packet\n");
                idle_pool_settle(p, i, false);
                return;
            }
            c->hdr[c->hdr_len++] = buf[k++];
            if (c->hdr_len < 2 || (c->hdr[c->hdr_len - 1] & 0x80) != 0)
                continue;
            uint32_t len = 0, mult = 1;
            for (int j = 1; j < c->hdr_len; j++, mult *= 128)
                len += (uint32_t)(c->hdr[j] & 0x7f) * mult;
            c->in_body = true;
            c->body_left = len;
            c->body_len = 0;
        } else {
            size_t take = n - k < c->body_left ? n - k : c->body_left;
            for (size_t j = 0; j < take && c->body_len < sizeof c->body; j++)
                c->body[c->body_len++] = buf[k + j];
            k += take;
            c->body_left -= (uint32_t)take;
        }
        if (c->body_left == 0) {
            q_idle_packet(p, i, c);
            c->in_body = false;
            c->hdr_len = 0;
        }
    }
}

static void q_idle_tick(idle_pool *p, int64_t now_ms)
{
    static const uint8_t pingreq[2] = {0xc0, 0x00};
    int n = idle_pool_count(p);
    for (int i = 0; i < n; i++) {
        q_idle_conn *c = idle_pool_conn(p, i);
        if (idle_pool_ready(p, i) && now_ms >= c->next_ping_ms) {
            c->next_ping_ms = now_ms + PING_EVERY_MS;
            if (!idle_send(idle_pool_fd(p, i), pingreq, sizeof pingreq))
                idle_pool_settle(p, i, false);
        }
    }
}

static const idle_proto q_idle_proto = {"mosquitto", sizeof(q_idle_conn), q_idle_open_conn,
                                        q_idle_bytes, q_idle_tick};

static void *q_idle_open(const char *server, int n, const char *topic)
{
    q_idle *x = calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    x->topic_len = strlen(topic);
    if (x->topic_len >= sizeof x->topic) {
        fprintf(stderr, "mosquitto: topic too long\n");
        free(x);
        return NULL;
    }
    memcpy(x->topic, topic, x->topic_len + 1);
    x->pool = idle_pool_open(&q_idle_proto, x, server, n);
    if (x->pool == NULL) {
        free(x);
        return NULL;
    }
    return x;
}

static void q_idle_close(void *arg)
{
    q_idle *x = arg;
    idle_pool_close(x->pool);
    free(x);
}

const bench_backend bench_mosquitto = {"mosquitto", q_connect,  q_subscribe,  q_publish,
                                       q_flush,     q_close,    q_idle_open, q_idle_close};
