/* The application-facing half of the client: options, start and stop, and
 * the calls that queue frames or wait on the I/O thread (client_io.c).
 *
 * Publishing, subscribing and unsubscribing all append to one outbox, so
 * the I/O thread writes SUB, UNSUB and MSG frames in the order the
 * application issued them; none of these calls touches the socket. */
#include "client_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "frame.h"
#include "log.h"
#include "proto.h"
#include "topic.h"

#define READ_CHUNK (64 * 1024)
#define READS_PER_WAKE 4
#define FLUSH_BUDGET (1024 * 1024)
#define CTL_LIMIT (256 * 1024) /* replies owed to a broker that does not read them */
#define MAX_PAYLOAD_LIMIT (64u << 20) /* the broker's own hard limit (--max-payload) */

void vg_client_opts_defaults(vg_client_opts *o)
{
    memset(o, 0, sizeof *o);
    const char *env = getenv("VIGIL_SERVER");
    o->servers = env && *env ? env : VG_DEFAULT_SERVER;
    o->name = "vigil-client";
    const char *token = getenv("VIGIL_TOKEN");
    o->token = token && *token ? token : NULL;
    o->max_buffer = 8u << 20;
    o->max_payload = MAX_PAYLOAD_LIMIT;
    o->keepalive = VG_KEEPALIVE_DEFAULT;
    o->backoff_base_ms = 100;
    o->backoff_max_ms = 500;
    o->max_reconnects = -1;
    o->ack_delay_ms = 20;
}

void vg_client_log(vg_client *c, vg_log_level level, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vg_log_vto(c->opts.on_log, c->opts.ud, c->opts.log_level, level, event, fmt, ap);
    va_end(ap);
}

/* ---- start and stop ---- */

static vg_status check_opts(const vg_client_opts *o, const char **why)
{
    const vg_keepalive *k = &o->keepalive;
    if (k->time_ms > 0 && (k->interval_ms <= 0 || k->probes < 1 || k->probes > VG_CONFIRM_PROBES_MAX)) {
        *why = "keep-alive needs a positive interval and 1 to 100 probes";
        return VG_ERR_ARG;
    }
    if (o->max_buffer == 0 || o->backoff_base_ms <= 0 || o->backoff_max_ms <= 0) {
        *why = "buffer and backoff must be positive";
        return VG_ERR_ARG;
    }
    if (o->ack_delay_ms < 0 || o->ack_delay_ms > 3600 * 1000) {
        *why = "the ACK delay must be 0 to 3600000 ms";
        return VG_ERR_ARG;
    }
    if (o->name != NULL && strlen(o->name) > VG_NAME_MAX_LEN) {
        *why = "name longer than 128 bytes";
        return VG_ERR_ARG;
    }
    return VG_OK;
}

vg_status vg_client_start(vg_client **out, const vg_client_opts *opts, const char **why)
{
    static const char *unused;
    if (why == NULL)
        why = &unused;
    vg_status st = check_opts(opts, why);
    if (st != VG_OK)
        return st;
    *why = "out of memory";
    vg_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return VG_ERR_NOMEM;
    c->opts = *opts;
    uint64_t cap = opts->max_payload < MAX_PAYLOAD_LIMIT ? opts->max_payload : MAX_PAYLOAD_LIMIT;
    c->opts.max_payload = cap;
    c->ack_due = INT64_MAX;
    atomic_init(&c->max_payload, cap < VG_DEFAULT_MAX_PAYLOAD ? cap : VG_DEFAULT_MAX_PAYLOAD);
    st = vg_servers_parse(opts->servers, &c->servers, why);
    if (st != VG_OK)
        goto fail_free;
    st = VG_ERR_NOMEM;
    *why = "out of memory";
    c->name = strdup(opts->name ? opts->name : "vigil-client");
    c->outbox = vg_outbox_create(opts->max_buffer);
    c->subs = vg_subs_create();
    c->backoff = vg_backoff_create(opts->backoff_base_ms, opts->backoff_max_ms);
    vg_link_config lc = {
        .read_chunk = READ_CHUNK,
        .reads_per_wake = READS_PER_WAKE,
        .max_frame = VG_HANDSHAKE_MAX_FRAME, /* ERR can come before INFO */
        .flush_budget = FLUSH_BUDGET,
        .ctl_limit = CTL_LIMIT,
        .keepalive = opts->keepalive,
        .timerfd = true, /* a heartbeat deadline that passed in a suspend fires on resume */
    };
    c->link = c->outbox != NULL ? vg_link_create(&lc, c->outbox) : NULL;
    if (c->name == NULL || c->link == NULL || c->subs == NULL || c->backoff == NULL)
        goto fail_free;
    vg_resend_init(&c->resend, opts->max_buffer);
    vg_sender *tx = vg_link_sender(c->link);
    tx->on_written = vg_client_on_written;
    tx->ud = c;
    if (getrandom(&c->rng, sizeof c->rng, 0) != sizeof c->rng || c->rng == 0)
        c->rng = (uint64_t)vg_now_ns() | 1;
    /* The broker drops a publisher's MSG frames it already has, so the
     * identity must not be another client's: 64 random bits, never 0
     * ("no identity"). Without getrandom, the clock and the address mix. */
    if (getrandom(&c->publisher, sizeof c->publisher, 0) != sizeof c->publisher)
        c->publisher = (uint64_t)vg_now_ns() * 0x9e3779b97f4a7c15u ^ (uint64_t)(uintptr_t)c;
    if (c->publisher == 0)
        c->publisher = 1;
    pthread_mutex_init(&c->mu, NULL);
    vg_cond_init(&c->cv);
    if (pthread_create(&c->thread, NULL, vg_client_io_main, c) != 0) {
        *why = "cannot start the I/O thread";
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        goto fail_free;
    }
    *out = c;
    return VG_OK;

fail_free:
    vg_link_destroy(c->link);
    vg_outbox_destroy(c->outbox);
    vg_subs_destroy(c->subs);
    vg_backoff_destroy(c->backoff);
    vg_servers_destroy(c->servers);
    free(c->name);
    free(c);
    return st;
}

vg_status vg_client_close(vg_client *c, int timeout_ms)
{
    atomic_store(&c->stop, true);
    vg_outbox_wake(c->outbox);
    vg_deadline d = vg_deadline_in(timeout_ms);
    pthread_mutex_lock(&c->mu);
    while (!c->stopped && vg_cond_wait_until(&c->cv, &c->mu, &d))
        ;
    bool stopped = c->stopped;
    pthread_mutex_unlock(&c->mu);
    if (!stopped)
        return VG_ERR_TIMEOUT;
    if (!c->joined) {
        pthread_join(c->thread, NULL);
        c->joined = true;
    }
    return VG_OK;
}

void vg_client_destroy(vg_client *c)
{
    if (c == NULL)
        return;
    vg_client_close(c, -1);
    vg_link_destroy(c->link);
    vg_outbox_destroy(c->outbox);
    vg_subs_destroy(c->subs);
    vg_backoff_destroy(c->backoff);
    vg_servers_destroy(c->servers);
    vg_client_filter_free(&c->filter);
    vg_resend_free(&c->resend);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->name);
    free(c);
}

/* ---- waiting on the I/O thread ---- */

vg_status vg_client_wait_connected(vg_client *c, int timeout_ms)
{
    vg_deadline d = vg_deadline_in(timeout_ms);
    vg_status st = VG_ERR_TIMEOUT;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (c->handshakes > 0) {
            st = VG_OK;
            break;
        }
        if (c->closed) {
            st = VG_ERR_CLOSED;
            break;
        }
        if (!vg_cond_wait_until(&c->cv, &c->mu, &d) && c->handshakes == 0 && !c->closed)
            break;
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

vg_status vg_client_wait_subscribed(vg_client *c, uint64_t sid, int timeout_ms)
{
    vg_deadline d = vg_deadline_in(timeout_ms);
    vg_status st;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        vg_sub_state s;
        if (!vg_subs_state(c->subs, sid, &s)) {
            st = VG_ERR_ARG;
            break;
        }
        if (s == VG_SUB_ACTIVE || s == VG_SUB_REFUSED) {
            st = s == VG_SUB_ACTIVE ? VG_OK : VG_ERR_REFUSED;
            break;
        }
        if (c->closed) {
            st = VG_ERR_CLOSED;
            break;
        }
        if (!vg_cond_wait_until(&c->cv, &c->mu, &d)) {
            st = vg_subs_state(c->subs, sid, &s) && s == VG_SUB_ACTIVE ? VG_OK : VG_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

vg_status vg_client_flush(vg_client *c, int timeout_ms)
{
    uint64_t target = atomic_load(&c->published);
    uint64_t had = atomic_load(&c->flush_target);
    while (had < target && !atomic_compare_exchange_weak(&c->flush_target, &had, target))
        ;
    vg_outbox_wake(c->outbox);
    vg_deadline d = vg_deadline_in(timeout_ms);
    vg_status st = VG_OK;
    pthread_mutex_lock(&c->mu);
    while (c->confirmed + c->unconfirmed < target) {
        if (c->closed) {
            st = VG_ERR_CLOSED;
            break;
        }
        if (!vg_cond_wait_until(&c->cv, &c->mu, &d) &&
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
    /* Read in this order, each at most the one after it: confirmed +
     * unconfirmed <= written <= published, so no difference goes negative. */
    pthread_mutex_lock(&c->mu);
    out->confirmed = c->confirmed;
    out->unconfirmed = c->unconfirmed;
    pthread_mutex_unlock(&c->mu);
    uint64_t written = atomic_load(&c->written);
    out->published = atomic_load(&c->published);
    out->pending = written - out->confirmed - out->unconfirmed;
    out->unsent = out->published - written;
    out->received = atomic_load(&c->received);
    out->duplicates = atomic_load(&c->duplicates);
    out->gaps = atomic_load(&c->gaps);
    out->missed = atomic_load(&c->missed);
}

const char *vg_client_closed_reason(vg_client *c)
{
    pthread_mutex_lock(&c->mu);
    const char *r = c->closed && c->closed_reason[0] ? c->closed_reason : NULL;
    pthread_mutex_unlock(&c->mu);
    return r; /* set once, never changed afterwards */
}

/* ---- queuing frames ---- */

/* Appends one SUB or UNSUB frame to the stream, under c->mu so that the
 * state machine and the stream agree. It never waits for room: these
 * frames are small, rare and must keep their place. */
static vg_status queue_control(vg_client *c, const vg_buf *frame)
{
    return vg_outbox_put_always(c->outbox, frame->data, frame->len, 1);
}

/* Whether a start keeps the rules of vg_client_subscribe_from. */
static bool start_ok(vg_sub_start start, uint64_t epoch, uint64_t position)
{
    switch (start) {
    case VG_SUB_NEW:
    case VG_SUB_FIRST: return epoch == 0 && position == 0;
    case VG_SUB_SEQ: return position >= 1;
    case VG_SUB_AGO: return epoch == 0;
    }
    return false;
}

/* A subscription to a topic or pattern, durable if name is not NULL (its
 * length: nlen), a queue group's member if queue is not NULL. */
static vg_status subscribe(vg_client *c, const char *topic, const char *name, size_t nlen,
                           const char *queue, vg_sub_start start, uint64_t epoch,
                           uint64_t position, uint64_t *sid_out)
{
    size_t len = strlen(topic);
    size_t qlen = queue != NULL ? strlen(queue) : 0;
    if (vg_subject_check(topic, len, VG_TOPIC_MAX_LEN, VG_TOPIC_MAX_LEN, NULL) != VG_OK)
        return VG_ERR_BAD_TOPIC;
    if (!start_ok(start, epoch, position) ||
        (start == VG_SUB_SEQ && vg_subject_is_pattern(topic, len)))
        return VG_ERR_ARG;
    vg_sub_from from = {start, epoch, position};
    vg_buf frame = {0};
    uint64_t sid;
    pthread_mutex_lock(&c->mu);
    vg_status st = c->closed ? VG_ERR_CLOSED
                             : vg_subs_add_queue(c->subs, topic, len, &from, name, nlen, queue,
                                                 qlen, &sid);
    if (st == VG_OK) {
        if (queue != NULL)
            st = vg_frame_put_sub_queue(&frame, sid, topic, len, start, epoch, position, name,
                                        nlen, queue, qlen);
        else if (name != NULL)
            st = vg_frame_put_sub_durable(&frame, sid, topic, len, start, epoch, position, name,
                                          nlen);
        else
            st = vg_frame_put_sub2(&frame, sid, topic, len, start, epoch, position);
        if (st == VG_OK)
            st = queue_control(c, &frame);
        if (st != VG_OK)
            vg_subs_cancel(c->subs, sid);
        atomic_fetch_add(&c->subs_gen, 1);
    }
    pthread_mutex_unlock(&c->mu);
    vg_buf_free(&frame);
    if (st == VG_OK && sid_out != NULL)
        *sid_out = sid;
    return st;
}

vg_status vg_client_subscribe_from(vg_client *c, const char *topic, vg_sub_start start,
                                   uint64_t epoch, uint64_t position, uint64_t *sid)
{
    return subscribe(c, topic, NULL, 0, NULL, start, epoch, position, sid);
}

vg_status vg_client_subscribe(vg_client *c, const char *topic, uint64_t *sid)
{
    return vg_client_subscribe_from(c, topic, VG_SUB_NEW, 0, 0, sid);
}

vg_status vg_client_subscribe_durable(vg_client *c, const char *topic, const char *name,
                                      vg_sub_start start, uint64_t epoch, uint64_t position,
                                      uint64_t *sid)
{
    size_t nlen = name != NULL ? strlen(name) : 0;
    if (name == NULL || !vg_durable_name_ok(name, nlen))
        return VG_ERR_ARG;
    return subscribe(c, topic, name, nlen, NULL, start, epoch, position, sid);
}

vg_status vg_client_subscribe_queue(vg_client *c, const char *subject, const char *queue,
                                    const char *durable, vg_sub_start start, uint64_t epoch,
                                    uint64_t position, uint64_t *sid)
{
    size_t nlen = durable != NULL ? strlen(durable) : 0;
    if (queue == NULL || !vg_durable_name_ok(queue, strlen(queue)) ||
        (durable != NULL && !vg_durable_name_ok(durable, nlen)))
        return VG_ERR_ARG;
    return subscribe(c, subject, durable, nlen, queue, start, epoch, position, sid);
}

static vg_status delete_status(vg_delete_outcome o)
{
    switch (o) {
    case VG_DELETE_PENDING: return VG_ERR_TIMEOUT;
    case VG_DELETE_OK: return VG_OK;
    case VG_DELETE_LOST: return VG_ERR_IO;
    case VG_DELETE_REFUSED: break;
    }
    return VG_ERR_REFUSED;
}

vg_status vg_client_delete_durable(vg_client *c, uint64_t sid, int timeout_ms)
{
    vg_buf frame = {0};
    vg_deadline d = vg_deadline_in(timeout_ms);
    pthread_mutex_lock(&c->mu);
    vg_unsub_action a = vg_subs_remove_delete(c->subs, sid);
    vg_status st = a == VG_UNSUB_UNKNOWN ? VG_ERR_ARG : a == VG_UNSUB_DONE ? VG_ERR_REFUSED : VG_OK;
    if (a == VG_UNSUB_SEND) {
        /* If this fails, the subscription delivers nothing any more and the
         * broker keeps the durable. */
        st = c->closed ? VG_ERR_CLOSED : vg_frame_put_unsub_delete(&frame, sid);
        if (st == VG_OK)
            st = queue_control(c, &frame);
    }
    atomic_fetch_add(&c->subs_gen, 1);
    pthread_cond_broadcast(&c->cv);
    while (st == VG_OK) {
        vg_delete_outcome o = vg_subs_delete_outcome(c->subs, sid);
        if (o != VG_DELETE_PENDING) {
            st = delete_status(o);
            break;
        }
        if (c->closed) {
            st = VG_ERR_CLOSED;
            break;
        }
        if (!vg_cond_wait_until(&c->cv, &c->mu, &d)) {
            st = delete_status(vg_subs_delete_outcome(c->subs, sid));
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    vg_buf_free(&frame);
    return st;
}

vg_status vg_client_unsubscribe(vg_client *c, uint64_t sid)
{
    vg_buf frame = {0};
    pthread_mutex_lock(&c->mu);
    vg_unsub_action a = vg_subs_remove(c->subs, sid);
    vg_status st = a == VG_UNSUB_UNKNOWN ? VG_ERR_ARG : VG_OK;
    if (a == VG_UNSUB_SEND && !c->closed) {
        /* Even if this fails, the subscription delivers nothing any more;
         * the broker's copy goes with the connection. */
        if (vg_frame_put_unsub(&frame, sid) == VG_OK)
            queue_control(c, &frame);
    }
    atomic_fetch_add(&c->subs_gen, 1);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    vg_buf_free(&frame);
    return st;
}

typedef struct {
    vg_client *c;
    vg_frame_type type;
    const char *topic;
    size_t topic_len;
    const void *payload;
    size_t payload_len;
} msg_args;

/* Encodes in place under the outbox lock, and counts the message there, so
 * that the I/O thread never writes a frame that published does not cover. */
static void fill_msg(uint8_t *dst, void *arg)
{
    const msg_args *m = arg;
    vg_frame_write_msg(dst, m->type, m->topic, m->topic_len, m->payload, m->payload_len);
    atomic_fetch_add_explicit(&m->c->published, 1, memory_order_relaxed);
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
    msg_args m = {c, type, topic, topic_len, payload, payload_len};
    return vg_outbox_put_with(c->outbox, vg_frame_msg_size(topic_len, payload_len), 1, timeout_ms,
                              fill_msg, &m);
}
