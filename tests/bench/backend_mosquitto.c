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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#include "backend.h"
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

/* ---- idle pool: raw MQTT 3.1.1 sockets, one epoll thread ----
 *
 * Each connection sends CONNECT (clean session, keep-alive 60 s), waits for
 * CONNACK, sends SUBSCRIBE (QoS 0) and is ready at SUBACK. MQTT leaves the
 * keep-alive to the client: the broker drops a connection silent for 1.5 x
 * its keep-alive, so the thread sends each connection a PINGREQ every 30 s
 * and discards the PINGRESPs. Packets are parsed only as far as needed: the
 * fixed header, and the first bytes of the body. */

#define PING_EVERY_MS 30000

enum { IDLE_WAIT_CONNACK, IDLE_WAIT_SUBACK, IDLE_READY, IDLE_FAILED };

typedef struct {
    int fd;
    int state;
    bool in_body;   /* past the fixed header */
    uint8_t hdr[5]; /* the fixed header: type, remaining length */
    int hdr_len;
    uint32_t body_left; /* bytes of the current packet's body still to come */
    uint8_t body[4];    /* its first bytes */
    uint32_t body_len;
    int64_t next_ping_ms;
} idle_conn;

typedef struct {
    _Atomic int n; /* connections opened so far */
    idle_conn *conns;
    char topic[256];
    size_t topic_len;
    int ep;
    atomic_bool stop;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu; /* guards ready, failed */
    pthread_cond_t cv;
    int ready, failed;
    int dropped; /* closed by the broker after the handshake (loop thread only) */
} idle_pool;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

static bool send_all(int fd, const uint8_t *data, size_t len)
{
    return send(fd, data, len, MSG_NOSIGNAL) == (ssize_t)len;
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
    return send_all(fd, pkt, k + b);
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
    return send_all(fd, pkt, k);
}

static void idle_settle(idle_pool *p, idle_conn *c, int state)
{
    c->state = state;
    pthread_mutex_lock(&p->mu);
    if (state == IDLE_READY)
        p->ready++;
    else
        p->failed++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Acts on one complete packet (its type and first body bytes). */
static void idle_packet(idle_pool *p, idle_conn *c)
{
    int type = c->hdr[0] >> 4;
    if (type == 2 && c->state == IDLE_WAIT_CONNACK) { /* CONNACK */
        if (c->body_len < 2 || c->body[1] != 0) {
            fprintf(stderr, "mosquitto: idle connection refused (code %d)\n",
                    c->body_len >= 2 ? c->body[1] : -1);
            idle_settle(p, c, IDLE_FAILED);
        } else if (!send_subscribe(c->fd, p->topic, p->topic_len)) {
            idle_settle(p, c, IDLE_FAILED);
        } else {
            c->state = IDLE_WAIT_SUBACK;
        }
    } else if (type == 9 && c->state == IDLE_WAIT_SUBACK) { /* SUBACK */
        if (c->body_len < 3 || c->body[2] == 0x80) {
            fprintf(stderr, "mosquitto: idle subscription refused\n");
            idle_settle(p, c, IDLE_FAILED);
        } else {
            c->next_ping_ms = mono_ms() + PING_EVERY_MS;
            idle_settle(p, c, IDLE_READY);
        }
    }
    /* PINGRESP and anything else: discarded */
}

/* Feeds received bytes through the packet framing. */
static void idle_feed(idle_pool *p, idle_conn *c, const uint8_t *buf, size_t n)
{
    size_t i = 0;
    while (i < n && c->state != IDLE_FAILED) {
        if (!c->in_body) {
            if (c->hdr_len == (int)sizeof c->hdr) { /* a fifth length byte: malformed */
                fprintf(stderr, "mosquitto: idle connection: malformed packet\n");
                idle_settle(p, c, IDLE_FAILED);
                return;
            }
            c->hdr[c->hdr_len++] = buf[i++];
            if (c->hdr_len < 2 || (c->hdr[c->hdr_len - 1] & 0x80) != 0)
                continue;
            uint32_t len = 0, mult = 1;
            for (int j = 1; j < c->hdr_len; j++, mult *= 128)
                len += (uint32_t)(c->hdr[j] & 0x7f) * mult;
            c->in_body = true;
            c->body_left = len;
            c->body_len = 0;
        } else {
            size_t take = n - i < c->body_left ? n - i : c->body_left;
            for (size_t j = 0; j < take && c->body_len < sizeof c->body; j++)
                c->body[c->body_len++] = buf[i + j];
            i += take;
            c->body_left -= (uint32_t)take;
        }
        if (c->body_left == 0) {
            idle_packet(p, c);
            c->in_body = false;
            c->hdr_len = 0;
        }
    }
}

static void idle_read(idle_pool *p, idle_conn *c)
{
    uint8_t buf[4096];
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r <= 0) {
        epoll_ctl(p->ep, EPOLL_CTL_DEL, c->fd, NULL);
        if (c->state != IDLE_FAILED) {
            if (c->state == IDLE_READY && p->dropped++ == 0)
                fprintf(stderr, "mosquitto: an idle connection was closed by the broker\n");
            idle_settle(p, c, IDLE_FAILED);
        }
        return;
    }
    idle_feed(p, c, buf, (size_t)r);
}

static void *idle_loop(void *arg)
{
    idle_pool *p = arg;
    static const uint8_t pingreq[2] = {0xc0, 0x00};
    struct epoll_event ev[256];
    while (!atomic_load(&p->stop)) {
        int k = epoll_wait(p->ep, ev, 256, 200);
        for (int i = 0; i < k; i++)
            idle_read(p, &p->conns[ev[i].data.u32]);
        int64_t now = mono_ms();
        int n = atomic_load_explicit(&p->n, memory_order_acquire);
        for (int i = 0; i < n; i++) {
            idle_conn *c = &p->conns[i];
            if (c->state == IDLE_READY && now >= c->next_ping_ms) {
                c->next_ping_ms = now + PING_EVERY_MS;
                if (!send_all(c->fd, pingreq, sizeof pingreq))
                    idle_settle(p, c, IDLE_FAILED);
            }
        }
    }
    return NULL;
}

static void q_idle_close(void *arg);

static void *q_idle_open(const char *server, int n, const char *topic)
{
    vg_addr a;
    if (vg_addr_parse(server, &a, NULL) != VG_OK) {
        fprintf(stderr, "mosquitto: bad server address %s\n", server);
        return NULL;
    }
    if (strlen(topic) >= sizeof ((idle_pool *)0)->topic) {
        fprintf(stderr, "mosquitto: topic too long\n");
        return NULL;
    }
    idle_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->topic_len = strlen(topic);
    memcpy(p->topic, topic, p->topic_len + 1);
    p->conns = calloc((size_t)n, sizeof *p->conns);
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->conns == NULL || p->ep < 0 || pthread_create(&p->thread, NULL, idle_loop, p) != 0) {
        q_idle_close(p);
        return NULL;
    }
    p->thread_started = true;

    /* Connect one at a time, so the broker's backlog never overflows; the
     * loop thread carries on each handshake meanwhile. */
    for (int i = 0; i < n; i++) {
        idle_conn *c = &p->conns[i];
        c->fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a.ss, a.len) != 0 ||
            !send_connect(c->fd, i)) {
            fprintf(stderr, "mosquitto: idle connection %d failed: %s\n", i, strerror(errno));
            if (c->fd >= 0)
                close(c->fd);
            q_idle_close(p);
            return NULL;
        }
        atomic_store_explicit(&p->n, i + 1, memory_order_release);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(p->ep, EPOLL_CTL_ADD, c->fd, &ev);
    }

    /* Wait until the broker has every subscription, or something failed. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30 + n / 500;
    pthread_mutex_lock(&p->mu);
    while (p->ready + p->failed < n)
        if (pthread_cond_timedwait(&p->cv, &p->mu, &deadline) == ETIMEDOUT)
            break;
    int ready = p->ready;
    pthread_mutex_unlock(&p->mu);
    if (ready < n) {
        fprintf(stderr, "mosquitto: only %d of %d idle connections completed the handshake\n",
                ready, n);
        q_idle_close(p);
        return NULL;
    }
    return p;
}

static void q_idle_close(void *arg)
{
    idle_pool *p = arg;
    atomic_store(&p->stop, true);
    if (p->thread_started)
        pthread_join(p->thread, NULL);
    if (p->dropped > 0)
        fprintf(stderr, "mosquitto: %d of %d idle connections were closed by the broker\n",
                p->dropped, p->n);
    for (int i = 0; i < p->n; i++)
        close(p->conns[i].fd);
    if (p->ep >= 0)
        close(p->ep);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->conns);
    free(p);
}

const bench_backend bench_mosquitto = {"mosquitto", q_connect,  q_subscribe,  q_publish,
                                       q_flush,     q_close,    q_idle_open, q_idle_close};
