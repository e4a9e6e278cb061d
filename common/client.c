/* The client connection: an I/O thread and a small state machine.
 *
 *   IDLE -> CONNECTING -> HANDSHAKE -> CONNECTED -> (lost) -> BACKOFF -> CONNECTING ...
 *                                                         \-> CLOSED (gave up)
 *
 * Threads: the application calls publish/subscribe/flush; the I/O thread owns
 * the socket, the sender, the decoder and the PING bookkeeping. They share the
 * outbox (its own lock) and the fields under c->mu: the subscription list,
 * the delivery counters and the closed flag. No lock is held across a
 * socket call or a callback.
 *
 * Recovery: a connection found dead (EOF, a socket error, a fatal ERR, or the
 * heartbeat) is closed and the client waits a backoff delay (BACKOFF state,
 * interruptible: it sleeps in poll on the outbox's eventfd), then connects to
 * the next server of its list. The backoff resets only when a handshake
 * completes. After INFO it sends SUB for every subscription, as control
 * frames ahead of queued publishes, and logs event=reconnected once the
 * broker has answered all of them.
 *
 * Delivery accounting counts MSG frames. A PING sent after frame k has been
 * written records the mark k; its PONG proves the broker processed frames up
 * to k (the broker handles a connection's frames in order). When a connection
 * dies, frames written but not yet covered by a PONG are counted as
 * unconfirmed: possibly lost, maybe delivered;
 * vigil is at-most-once, and says so. */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sys/random.h>

#include "backoff.h"
#include "clock.h"
#include "decoder.h"
#include "log.h"
#include "outbox.h"
#include "proto.h"
#include "sender.h"
#include "sock.h"
#include "topic.h"

#define READ_CHUNK (64 * 1024)
#define FLUSH_BUDGET (1024 * 1024)
#define HANDSHAKE_TIMEOUT_MS 10000 /* with heartbeats off; else max(bound, 1 s) */
#define MAX_MARKS 128              /* > the largest --keepalive-probes + one flush PING */

typedef enum { ST_IDLE, ST_BACKOFF, ST_CONNECTING, ST_HANDSHAKE, ST_CONNECTED, ST_CLOSED } conn_state;

typedef enum {
    SUB_PENDING,    /* SUB to be sent on this connection */
    SUB_SENT,
    SUB_ACTIVE,
    SUB_FAILED,     /* refused by the broker; not retried */
    SUB_LEAVING,    /* UNSUB to be sent */
    SUB_UNSUB_SENT,
} sub_state;

typedef struct {
    uint64_t sid;
    char *topic;
    size_t len;
    sub_state state;
} client_sub;

struct vg_client {
    vg_client_opts opts;
    char *name;
    vg_addr *servers;
    size_t nservers;
    size_t next_server;
    char server_str[VG_ADDR_STRLEN];
    pthread_t thread;
    atomic_bool stop;
    _Atomic uint64_t max_payload;
    _Atomic uint64_t published;
    vg_outbox *outbox;

    pthread_mutex_t mu; /* guards the fields down to cv */
    client_sub *subs;
    size_t nsubs, subs_cap;
    uint64_t next_sid;
    bool subs_dirty;      /* a SUB or UNSUB is waiting to be sent */
    uint64_t flush_target; /* a flush waits for frames up to here */
    uint64_t confirmed, unconfirmed, received;
    uint64_t handshakes;
    bool closed;
    pthread_cond_t cv; /* broadcast when confirmed, unconfirmed, handshakes, a
                          subscription's state or closed change */

    /* I/O thread only */
    conn_state state;
    int fd;
    int64_t deadline; /* end of the backoff wait, or of the connect/handshake */
    vg_backoff *backoff;
    vg_liveness *live;
    uint64_t rng;         /* xorshift state for backoff jitter */
    bool reconnecting;    /* a connection was lost since the last handshake */
    unsigned resub_wait;  /* resubscriptions not yet answered */
    unsigned resub_ok;
    unsigned lost_attempts; /* attempts the last reconnect took */
    vg_sender tx;
    vg_decoder *rx;
    uint64_t marks[MAX_MARKS]; /* FIFO of frame counts covered by PINGs in flight */
    size_t marks_head, nmarks;
    uint64_t last_mark;
    const char *server_error; /* the reason of a fatal ERR, for the disconnect line */
    char server_reason[128];
};

void vg_client_opts_defaults(vg_client_opts *o)
{
    memset(o, 0, sizeof *o);
    const char *env = getenv("VIGIL_SERVER");
    o->servers = env && *env ? env : VG_DEFAULT_SERVER;
    o->name = "vigil-client";
    const char *token = getenv("VIGIL_TOKEN");
    o->token = token && *token ? token : NULL;
    o->max_buffer = 8u << 20;
    o->keepalive = VG_KEEPALIVE_DEFAULT;
    o->backoff_base_ms = 200;
    o->backoff_max_ms = 10000;
    o->max_reconnects = -1;
}

/* ---- setup ---- */

static vg_status parse_servers(vg_client *c, const char *list, const char **why)
{
    char *copy = strdup(list);
    if (copy == NULL)
        return VG_ERR_NOMEM;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    c->servers = calloc(n, sizeof *c->servers);
    vg_status st = c->servers ? VG_OK : VG_ERR_NOMEM;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && st == VG_OK; tok = strtok_r(NULL, ",", &save))
        st = vg_addr_parse(tok, &c->servers[c->nservers++], why);
    if (st == VG_OK && c->nservers == 0) {
        *why = "empty server list";
        st = VG_ERR_ARG;
    }
    free(copy);
    return st;
}

static void *io_main(void *arg);

vg_status vg_client_start(vg_client **out, const vg_client_opts *opts, const char **why)
{
    static const char *unused;
    if (why == NULL)
        why = &unused;
    *why = "out of memory";
    vg_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return VG_ERR_NOMEM;
    c->opts = *opts;
    c->fd = -1;
    c->next_sid = 1;
    atomic_init(&c->max_payload, VG_DEFAULT_MAX_PAYLOAD);
    vg_status st = parse_servers(c, opts->servers, why);
    if (st != VG_OK)
        goto fail;
    st = VG_ERR_NOMEM;
    c->name = strdup(opts->name ? opts->name : "vigil-client");
    c->outbox = vg_outbox_create(opts->max_buffer);
    c->rx = vg_decoder_create(READ_CHUNK, VG_HANDSHAKE_MAX_FRAME);
    c->backoff = vg_backoff_create(opts->backoff_base_ms, opts->backoff_max_ms);
    c->live = vg_liveness_create(&opts->keepalive, vg_now_ms());
    if (c->name == NULL || c->outbox == NULL || c->rx == NULL || c->backoff == NULL ||
        c->live == NULL)
        goto fail;
    if (getrandom(&c->rng, sizeof c->rng, 0) != sizeof c->rng || c->rng == 0)
        c->rng = (uint64_t)vg_now_ns() | 1;
    pthread_mutex_init(&c->mu, NULL);
    vg_cond_init(&c->cv);
    if (pthread_create(&c->thread, NULL, io_main, c) != 0) {
        *why = "cannot start the I/O thread";
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        goto fail;
    }
    *out = c;
    return VG_OK;

fail:
    vg_outbox_destroy(c->outbox);
    vg_decoder_destroy(c->rx);
    vg_backoff_destroy(c->backoff);
    vg_liveness_destroy(c->live);
    free(c->name);
    free(c->servers);
    free(c);
    return st;
}

void vg_client_destroy(vg_client *c)
{
    if (c == NULL)
        return;
    atomic_store(&c->stop, true);
    vg_outbox_wake(c->outbox);
    pthread_join(c->thread, NULL);
    if (c->fd >= 0)
        close(c->fd);
    vg_outbox_destroy(c->outbox);
    vg_decoder_destroy(c->rx);
    vg_backoff_destroy(c->backoff);
    vg_liveness_destroy(c->live);
    vg_sender_free(&c->tx);
    for (size_t i = 0; i < c->nsubs; i++)
        free(c->subs[i].topic);
    free(c->subs);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->name);
    free(c->servers);
    free(c);
}

/* ---- application-facing calls ---- */

vg_status vg_client_subscribe(vg_client *c, const char *topic, uint64_t *sid_out)
{
    size_t len = strlen(topic);
    if (vg_topic_check(topic, len, VG_TOPIC_MAX_LEN, VG_TOPIC_MAX_LEN, NULL) != VG_OK)
        return VG_ERR_BAD_TOPIC;
    char *copy = strdup(topic);
    if (copy == NULL)
        return VG_ERR_NOMEM;
    pthread_mutex_lock(&c->mu);
    if (c->nsubs == c->subs_cap) {
        size_t cap = c->subs_cap ? c->subs_cap * 2 : 4;
        client_sub *s = realloc(c->subs, cap * sizeof *s);
        if (s == NULL) {
            pthread_mutex_unlock(&c->mu);
            free(copy);
            return VG_ERR_NOMEM;
        }
        c->subs = s;
        c->subs_cap = cap;
    }
    uint64_t sid = c->next_sid++;
    c->subs[c->nsubs++] = (client_sub){sid, copy, len, SUB_PENDING};
    c->subs_dirty = true;
    pthread_mutex_unlock(&c->mu);
    vg_outbox_wake(c->outbox);
    if (sid_out != NULL)
        *sid_out = sid;
    return VG_OK;
}

vg_status vg_client_unsubscribe(vg_client *c, uint64_t sid)
{
    vg_status st = VG_ERR_ARG;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nsubs; i++) {
        if (c->subs[i].sid == sid && c->subs[i].state <= SUB_ACTIVE) {
            c->subs[i].state = SUB_LEAVING;
            c->subs_dirty = true;
            st = VG_OK;
        }
    }
    pthread_mutex_unlock(&c->mu);
    vg_outbox_wake(c->outbox);
    return st;
}

static client_sub *find_sub(vg_client *c, uint64_t sid);

vg_status vg_client_wait_subscribed(vg_client *c, uint64_t sid, int timeout_ms)
{
    struct timespec deadline = vg_deadline_after(timeout_ms);
    vg_status st;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        client_sub *s = find_sub(c, sid);
        if (s == NULL || s->state >= SUB_LEAVING) {
            st = VG_ERR_ARG;
            break;
        }
        if (s->state == SUB_ACTIVE || s->state == SUB_FAILED) {
            st = s->state == SUB_ACTIVE ? VG_OK : VG_ERR_REFUSED;
            break;
        }
        if (c->closed) {
            st = VG_ERR_CLOSED;
            break;
        }
        if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT) {
            s = find_sub(c, sid);
            st = s && s->state == SUB_ACTIVE ? VG_OK : VG_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

typedef struct {
    vg_frame_type type;
    const char *topic;
    size_t topic_len;
    const void *payload;
    size_t payload_len;
} msg_args;

static void fill_msg(uint8_t *dst, void *arg)
{
    const msg_args *m = arg;
    vg_frame_write_msg(dst, m->type, m->topic, m->topic_len, m->payload, m->payload_len);
}

vg_status vg_client_publish(vg_client *c, vg_frame_type type, const char *topic,
                            size_t topic_len, const void *payload, size_t payload_len,
                            int timeout_ms)
{
    if (!vg_frame_is_msg(type))
        return VG_ERR_ARG;
    if (vg_topic_check(topic, topic_len, VG_TOPIC_MAX_LEN, VG_TOPIC_MAX_LEN, NULL) != VG_OK)
        return VG_ERR_BAD_TOPIC;
    if (payload_len > atomic_load_explicit(&c->max_payload, memory_order_relaxed))
        return VG_ERR_TOO_LARGE;
    msg_args m = {type, topic, topic_len, payload, payload_len};
    vg_status st = vg_outbox_put_with(c->outbox, vg_frame_msg_size(topic_len, payload_len), 1,
                                      timeout_ms, fill_msg, &m);
    if (st == VG_OK)
        atomic_fetch_add_explicit(&c->published, 1, memory_order_relaxed);
    return st;
}

vg_status vg_client_wait_connected(vg_client *c, int timeout_ms)
{
    struct timespec deadline = vg_deadline_after(timeout_ms);
    vg_status st = VG_OK;
    pthread_mutex_lock(&c->mu);
    while (c->handshakes == 0) {
        if (c->closed) {
            st = VG_ERR_CLOSED;
            break;
        }
        if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT && c->handshakes == 0) {
            st = c->closed ? VG_ERR_CLOSED : VG_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

vg_status vg_client_flush(vg_client *c, int timeout_ms)
{
    uint64_t target = atomic_load(&c->published);
    struct timespec deadline = vg_deadline_after(timeout_ms);
    vg_status st = VG_OK;
    pthread_mutex_lock(&c->mu);
    if (target > c->flush_target)
        c->flush_target = target;
    pthread_mutex_unlock(&c->mu);
    vg_outbox_wake(c->outbox);
    pthread_mutex_lock(&c->mu);
    while (c->confirmed + c->unconfirmed < target) {
        if (c->closed) {
            st = VG_ERR_CLOSED;
            break;
        }
        if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT &&
            c->confirmed + c->unconfirmed < target) {
            st = VG_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

void vg_client_get_stats(vg_client *c, vg_client_stats *out)
{
    out->published = atomic_load(&c->published);
    pthread_mutex_lock(&c->mu);
    out->confirmed = c->confirmed;
    out->unconfirmed = c->unconfirmed;
    out->received = c->received;
    pthread_mutex_unlock(&c->mu);
}

/* ---- the I/O thread: connection life cycle ---- */

static void close_for_good(vg_client *c, const char *reason)
{
    c->state = ST_CLOSED;
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    vg_log(VG_LOG_ERROR, "closed", "reason=%s", reason);
    if (c->opts.on_closed != NULL)
        c->opts.on_closed(c->opts.ud, reason);
}

/* The connection is gone: account for what it took with it. */
static void conn_lost(vg_client *c, const char *reason, const char *detail)
{
    /* Frames the application wrote directly to this connection count as
     * written (and so unconfirmed); none may go to a reused descriptor. */
    c->tx.frames_written += vg_outbox_stop_direct(c->outbox);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    bool was_connected = c->state == ST_CONNECTED;
    c->state = ST_IDLE;
    c->nmarks = 0;
    vg_sender_rewind(&c->tx);
    vg_decoder_reset(c->rx, VG_HANDSHAKE_MAX_FRAME);

    pthread_mutex_lock(&c->mu);
    uint64_t unconfirmed = c->tx.frames_written - (c->confirmed + c->unconfirmed);
    c->unconfirmed += unconfirmed;
    c->last_mark = c->tx.frames_written;
    for (size_t i = 0; i < c->nsubs; i++) {
        if (c->subs[i].state == SUB_SENT || c->subs[i].state == SUB_ACTIVE)
            c->subs[i].state = SUB_PENDING;
        else if (c->subs[i].state == SUB_UNSUB_SENT)
            c->subs[i].state = SUB_LEAVING;
    }
    c->subs_dirty = true;
    if (unconfirmed > 0)
        pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);

    char d[160] = "";
    if (detail != NULL) {
        char q[140];
        snprintf(d, sizeof d, " detail=%s", vg_log_quote(q, sizeof q, detail, strlen(detail)));
    }
    c->reconnecting = c->reconnecting || was_connected;
    unsigned attempt = vg_backoff_attempts(c->backoff) + 1;
    /* auth, version and permission refusals will not change by retrying */
    bool permanent = strcmp(reason, "auth") == 0 || strcmp(reason, "version") == 0 ||
                     strcmp(reason, "permission") == 0;
    bool give_up = permanent || (c->opts.max_reconnects >= 0 &&
                                 vg_backoff_attempts(c->backoff) >= (unsigned)c->opts.max_reconnects);
    int64_t delay = 0;
    if (!give_up) {
        c->rng ^= c->rng << 13, c->rng ^= c->rng >> 7, c->rng ^= c->rng << 17;
        delay = vg_backoff_next(c->backoff, (uint32_t)(c->rng >> 32));
    }
    char retry[48] = " retry=none";
    if (!give_up)
        snprintf(retry, sizeof retry, " retry_in_ms=%lld", (long long)delay);
    if (was_connected)
        vg_log(VG_LOG_WARN, "disconnected", "reason=%s server=%s unconfirmed=%llu%s%s", reason,
               c->server_str, (unsigned long long)unconfirmed, retry, d);
    else
        vg_log(VG_LOG_WARN, "connect_failed", "reason=%s server=%s attempt=%u%s%s", reason,
               c->server_str, attempt, retry, d);
    if (give_up) {
        close_for_good(c, reason);
        return;
    }
    c->state = ST_BACKOFF;
    c->deadline = vg_now_ms() + delay;
}

static void start_connect(vg_client *c, int64_t now)
{
    const vg_addr *a = &c->servers[c->next_server];
    c->next_server = (c->next_server + 1) % c->nservers;
    vg_addr_format(a, c->server_str);
    c->server_error = NULL;
    int64_t bound = vg_keepalive_bound_ms(&c->opts.keepalive);
    c->deadline = now + (bound > 0 ? (bound > 1000 ? bound : 1000) : HANDSHAKE_TIMEOUT_MS);
    vg_status st = vg_connect_start(a, &c->fd);
    c->state = ST_CONNECTING;
    if (st == VG_ERR_IO) {
        conn_lost(c, "error", strerror(errno));
        return;
    }
    vg_log(VG_LOG_DEBUG, "connecting", "server=%s", c->server_str);
}

static void begin_handshake(vg_client *c)
{
    if (vg_frame_put_connect(&c->tx.ctl, VG_PROTO_VERSION, c->name, c->opts.token) != VG_OK) {
        conn_lost(c, "error", "out of memory");
        return;
    }
    c->state = ST_HANDSHAKE;
}

static void log_reconnected(vg_client *c)
{
    c->reconnecting = false;
    vg_log(VG_LOG_INFO, "reconnected", "server=%s attempts=%u resubscribed=%u", c->server_str,
           c->lost_attempts, c->resub_ok);
}

static void handshake_done(vg_client *c, const vg_frame *f)
{
    atomic_store(&c->max_payload, f->max_payload);
    vg_decoder_set_max_frame(c->rx, vg_max_frame_for(f->max_payload));
    c->state = ST_CONNECTED;
    c->last_mark = c->tx.frames_written;
    vg_outbox_set_direct_fd(c->outbox, c->fd); /* publish may now write while we sleep */
    c->lost_attempts = vg_backoff_attempts(c->backoff);
    vg_backoff_reset(c->backoff); /* only now: a refused handshake keeps backing off */
    vg_liveness_heard(c->live, vg_now_ms());
    const vg_keepalive *k = &c->opts.keepalive;
    if (k->time_ms > 0) /* a second layer under the heartbeat: see docs/liveness.md */
        vg_sock_keepalive(c->fd, k->time_ms, k->interval_ms, k->probes,
                          vg_keepalive_bound_ms(k) + k->interval_ms);
    pthread_mutex_lock(&c->mu);
    c->handshakes++;
    c->resub_wait = 0;
    c->resub_ok = 0;
    for (size_t i = 0; i < c->nsubs; i++)
        c->resub_wait += c->subs[i].state == SUB_PENDING;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    char server[80];
    vg_log_quote(server, sizeof server, f->name, f->name_len);
    if (!c->reconnecting)
        vg_log(VG_LOG_INFO, "connected", "server=%s broker=%s client_id=%llu", c->server_str,
               server, (unsigned long long)f->client_id);
    else if (c->resub_wait == 0)
        log_reconnected(c);
}

/* Queues SUB/UNSUB frames for subscriptions that need them. */
static void sync_subs(vg_client *c)
{
    pthread_mutex_lock(&c->mu);
    if (!c->subs_dirty)
        goto out;
    c->subs_dirty = false;
    for (size_t i = 0; i < c->nsubs; i++) {
        client_sub *s = &c->subs[i];
        if (s->state == SUB_PENDING) {
            if (vg_frame_put_sub(&c->tx.ctl, s->sid, s->topic, s->len) != VG_OK)
                goto fail_nomem;
            s->state = SUB_SENT;
        } else if (s->state == SUB_LEAVING) {
            if (vg_frame_put_unsub(&c->tx.ctl, s->sid) != VG_OK)
                goto fail_nomem;
            s->state = SUB_UNSUB_SENT;
        }
    }
out:
    pthread_mutex_unlock(&c->mu);
    return;
fail_nomem:
    c->subs_dirty = true; /* retried on the next pass */
    pthread_mutex_unlock(&c->mu);
}

/* Frames that will have been written when a PING queued now goes out: it
 * waits for the frame in progress to complete. */
static uint64_t mark_now(const vg_client *c)
{
    return c->tx.frames_written + (c->tx.off > c->tx.frame_start ? 1 : 0);
}

/* Queues a PING and remembers the frames its PONG will confirm. */
static bool queue_ping(vg_client *c)
{
    if (c->nmarks == MAX_MARKS || vg_frame_put_ping(&c->tx.ctl) != VG_OK)
        return false;
    uint64_t mark = mark_now(c);
    c->marks[(c->marks_head + c->nmarks++) % MAX_MARKS] = mark;
    c->last_mark = mark;
    return true;
}

/* Queues a PING when a flush waits for frames that are all written (or will
 * be, once the frame in progress completes). Returns true if it queued one. */
static bool ping_for_flush(vg_client *c)
{
    pthread_mutex_lock(&c->mu);
    bool want = c->flush_target > c->last_mark && mark_now(c) >= c->flush_target;
    pthread_mutex_unlock(&c->mu);
    return want && queue_ping(c);
}

static void on_pong(vg_client *c)
{
    if (c->nmarks == 0)
        return; /* unsolicited: harmless */
    uint64_t mark = c->marks[c->marks_head];
    c->marks_head = (c->marks_head + 1) % MAX_MARKS;
    c->nmarks--;
    pthread_mutex_lock(&c->mu);
    if (mark > c->confirmed + c->unconfirmed) {
        c->confirmed = mark - c->unconfirmed;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

static client_sub *find_sub(vg_client *c, uint64_t sid)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].sid == sid)
            return &c->subs[i];
    return NULL;
}

static void on_ok(vg_client *c, uint64_t sid)
{
    char topic[80] = "";
    bool subscribed = false;
    pthread_mutex_lock(&c->mu);
    client_sub *s = find_sub(c, sid);
    if (s != NULL && s->state == SUB_SENT) {
        s->state = SUB_ACTIVE;
        subscribed = !c->reconnecting;
        if (c->reconnecting && c->resub_wait > 0) {
            c->resub_wait--;
            c->resub_ok++;
        }
        vg_log_quote(topic, sizeof topic, s->topic, s->len);
    } else if (s != NULL && s->state == SUB_UNSUB_SENT) {
        free(s->topic);
        *s = c->subs[--c->nsubs];
    }
    bool resubscribed = c->reconnecting && c->resub_wait == 0 && c->state == ST_CONNECTED;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (subscribed)
        vg_log(VG_LOG_INFO, "subscribed", "topic=%s sid=%llu", topic, (unsigned long long)sid);
    if (resubscribed)
        log_reconnected(c);
}

static void on_err(vg_client *c, const vg_frame *f)
{
    char reason[128];
    vg_log_quote(reason, sizeof reason, f->reason, f->reason_len);
    if (!vg_errcode_is_fatal(f->code, f->sid)) {
        char topic[VG_TOPIC_MAX_LEN + 1] = "";
        pthread_mutex_lock(&c->mu);
        client_sub *s = find_sub(c, f->sid);
        if (s != NULL) {
            memcpy(topic, s->topic, s->len);
            topic[s->len] = '\0';
            if (c->reconnecting && s->state == SUB_SENT && c->resub_wait > 0)
                c->resub_wait--; /* reported below, and not counted as resubscribed */
            s->state = SUB_FAILED;
        }
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        char q[80];
        vg_log(VG_LOG_ERROR, "subscribe_failed", "topic=%s sid=%llu code=%s reason=%s",
               vg_log_quote(q, sizeof q, topic, strlen(topic)), (unsigned long long)f->sid,
               vg_errcode_name(f->code), reason);
        if (c->opts.on_sub_error != NULL)
            c->opts.on_sub_error(c->opts.ud, topic, f->code, reason);
        return;
    }
    /* The broker closes the connection after a fatal ERR; remember why. */
    vg_log(VG_LOG_ERROR, "server_error", "server=%s code=%s reason=%s", c->server_str,
           vg_errcode_name(f->code), reason);
    snprintf(c->server_reason, sizeof c->server_reason, "%s", vg_errcode_name(f->code));
    c->server_error = c->server_reason;
}

/* Handles every complete frame; returns false if the connection was lost. */
static bool handle_frames(vg_client *c)
{
    vg_frame f;
    const char *why = NULL;
    vg_status st;
    uint64_t received = 0;
    while ((st = vg_decoder_next(c->rx, &f, &why)) == VG_OK) {
        if (c->state == ST_HANDSHAKE && f.type != VG_FRAME_INFO && f.type != VG_FRAME_ERR &&
            f.type != VG_FRAME_PING) {
            conn_lost(c, "protocol", "expected INFO");
            return false;
        }
        switch (f.type) {
        case VG_FRAME_MSG_TYPE1:
        case VG_FRAME_MSG_TYPE2:
            received++;
            if (c->opts.on_msg != NULL) {
                vg_msg m = {f.type, f.topic, f.topic_len, f.payload, f.payload_len};
                c->opts.on_msg(c->opts.ud, &m);
            }
            break;
        case VG_FRAME_PING:
            if (vg_frame_put_pong(&c->tx.ctl) != VG_OK) {
                conn_lost(c, "error", "out of memory");
                return false;
            }
            break;
        case VG_FRAME_PONG: on_pong(c); break;
        case VG_FRAME_OK: on_ok(c, f.sid); break;
        case VG_FRAME_ERR: on_err(c, &f); break;
        case VG_FRAME_INFO:
            if (c->state != ST_HANDSHAKE) {
                conn_lost(c, "protocol", "unexpected INFO");
                return false;
            }
            handshake_done(c, &f);
            break;
        default:
            conn_lost(c, "protocol", "unexpected frame type from broker");
            return false;
        }
    }
    if (received > 0) {
        pthread_mutex_lock(&c->mu);
        c->received += received;
        pthread_mutex_unlock(&c->mu);
    }
    if (st != VG_AGAIN) {
        conn_lost(c, "protocol", why);
        return false;
    }
    return true;
}

static void read_and_handle(vg_client *c)
{
    uint8_t *space;
    size_t avail;
    if (vg_decoder_space(c->rx, &space, &avail) != VG_OK) {
        conn_lost(c, "error", "out of memory");
        return;
    }
    ssize_t n = recv(c->fd, space, avail, 0);
    if (n == 0) {
        conn_lost(c, c->server_error ? c->server_error : "eof", NULL);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_lost(c, "error", strerror(errno));
        return;
    }
    vg_decoder_commit(c->rx, (size_t)n);
    /* Bytes from the peer are life; if they are not valid frames, the
     * connection ends just below anyway. */
    vg_liveness_heard(c->live, vg_now_ms());
    if (handle_frames(c) && c->opts.on_batch_end != NULL)
        c->opts.on_batch_end(c->opts.ud);
}

/* A write failed (EPIPE, ECONNRESET): the broker may have said why in an ERR
 * that is still unread, so read what is there before giving up. */
static void write_failed(vg_client *c)
{
    char detail[64];
    snprintf(detail, sizeof detail, "%s", strerror(errno));
    for (int i = 0; i < 4 && c->fd >= 0; i++) {
        uint8_t *space;
        size_t avail;
        if (vg_decoder_space(c->rx, &space, &avail) != VG_OK)
            break;
        ssize_t n = recv(c->fd, space, avail, MSG_DONTWAIT);
        if (n <= 0)
            break;
        vg_decoder_commit(c->rx, (size_t)n);
        if (!handle_frames(c))
            return; /* already lost, with the reason read */
    }
    if (c->fd >= 0)
        conn_lost(c, c->server_error ? c->server_error : "error", detail);
}

/* Runs the heartbeat; false if the connection was declared dead. */
static bool heartbeat(vg_client *c, int64_t now, int64_t *next)
{
    vg_live_action a = vg_liveness_tick(c->live, now, next);
    if (a == VG_LIVE_DEAD) {
        /* If this thread was the slow one, the answer may be waiting unread:
         * read before judging. */
        read_and_handle(c);
        if (c->state != ST_CONNECTED)
            return false;
        a = vg_liveness_tick(c->live, now, next);
    }
    for (; a == VG_LIVE_PROBE; a = vg_liveness_tick(c->live, now, next)) {
        int n = vg_liveness_unanswered(c->live);
        int64_t silent = now - vg_liveness_last_heard(c->live);
        if (n > 1)
            vg_log(VG_LOG_WARN, "heartbeat_missed", "server=%s unanswered=%d silent_ms=%lld",
                   c->server_str, n - 1, (long long)silent);
        else
            vg_log(VG_LOG_DEBUG, "ping", "server=%s silent_ms=%lld", c->server_str, (long long)silent);
        queue_ping(c);
    }
    if (a == VG_LIVE_DEAD) {
        char detail[64];
        snprintf(detail, sizeof detail, "silent for %lld ms",
                 (long long)(now - vg_liveness_last_heard(c->live)));
        conn_lost(c, "heartbeat", detail);
        return false;
    }
    return true;
}

/* Writes what is due for the current state; fills *events for poll. Returns
 * false to run the loop again at once (more work was found). */
static bool do_writes(vg_client *c, short *events)
{
    vg_status st;
    *events = POLLIN;
    if (c->state == ST_CONNECTING) {
        *events = POLLOUT;
        return true;
    }
    if (c->state == ST_HANDSHAKE) {
        st = vg_sender_flush_ctl(&c->tx, c->fd);
    } else {
        sync_subs(c);
        ping_for_flush(c);
        st = vg_sender_flush(&c->tx, c->fd, c->outbox, FLUSH_BUDGET);
        if (c->tx.window_opened) { /* the broker is reading what we send */
            c->tx.window_opened = false;
            vg_liveness_heard(c->live, vg_now_ms());
        }
        if (st == VG_OK && ping_for_flush(c))
            return false;
        if (st == VG_OK && !vg_outbox_park(c->outbox))
            return false;
    }
    if (st == VG_ERR_IO) {
        write_failed(c);
        return false;
    }
    if (st == VG_AGAIN)
        *events |= POLLOUT;
    return true;
}

static void *io_main(void *arg)
{
    vg_client *c = arg;
    while (!atomic_load(&c->stop)) {
        int64_t now = vg_now_ms();
        if (c->state == ST_IDLE || (c->state == ST_BACKOFF && now >= c->deadline)) {
            start_connect(c, now);
            continue;
        }
        struct pollfd p[2] = {{.fd = vg_outbox_fd(c->outbox), .events = POLLIN}, {.fd = -1}};
        int64_t wake = INT64_MAX; /* when a timer needs the loop next */
        if (c->state == ST_BACKOFF) {
            wake = c->deadline;
        } else if (c->state != ST_CLOSED) {
            if (c->state != ST_CONNECTED && now >= c->deadline) {
                conn_lost(c, "timeout", "no handshake in time");
                continue;
            }
            if (c->state == ST_CONNECTED && !heartbeat(c, now, &wake))
                continue;
            if (!do_writes(c, &p[1].events))
                continue;
            p[1].fd = c->fd;
            if (c->state != ST_CONNECTED)
                wake = c->deadline;
        }
        if (poll(p, 2, vg_poll_timeout(wake, now)) < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN)
            vg_outbox_drain_wakeup(c->outbox);
        if (p[1].fd < 0 || p[1].revents == 0)
            continue;
        if (c->state == ST_CONNECTING) {
            if (vg_connect_finish(c->fd) != VG_OK)
                conn_lost(c, "error", strerror(errno));
            else
                begin_handshake(c);
        } else if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            read_and_handle(c);
        }
    }
    return NULL;
}
