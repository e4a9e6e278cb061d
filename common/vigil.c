/* The public client API (include/vigil/vigil.h) over the internal client
 * (client.h): options kept behind functions so that adding one never
 * changes a struct the application compiled against, handlers adapted to
 * opaque message and gap types, statuses narrowed to the public enum. */
#include "vigil/vigil.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "proto.h"
#include "status.h"
#include "topic.h"

_Static_assert((int)VIGIL_LOG_DEBUG == (int)VG_LOG_DEBUG && (int)VIGIL_LOG_ERROR == (int)VG_LOG_ERROR,
               "the public log levels are the internal ones");
_Static_assert((int)VIGIL_START_AGO == (int)VG_SUB_AGO && (int)VIGIL_START_SEQ == (int)VG_SUB_SEQ,
               "the public starts are the wire's");
_Static_assert((int)VIGIL_GAP_UNANNOUNCED == (int)VG_GAP_UNANNOUNCED,
               "the public gap reasons are the internal ones");

/* What the application set, and the strings it passed (copied). */
typedef struct {
    void *ud;
    vigil_msg_handler on_msg;
    vigil_gap_handler on_gap;
    vigil_batch_handler on_batch_end;
    vigil_sub_error_handler on_sub_error;
    vigil_conn_handler on_connection;
    vigil_closed_handler on_closed;
    vigil_log_handler on_log;
    vigil_log_level log_level;
} handlers;

struct vigil_options {
    vg_client_opts opts; /* strings below, handlers unset */
    char *servers, *name, *token;
    handlers h;
};

struct vigil_client {
    vg_client *c;
    handlers h;
    char *token; /* the internal client keeps the pointer */
};

struct vigil_msg {
    vg_msg m;
};

struct vigil_gap {
    const char *topic;
    size_t topic_len;
    vg_gap g;
};

const char *vigil_version(void) { return "0.1.0"; }

static vigil_status narrow(vg_status s)
{
    switch (s) {
    case VG_OK: return VIGIL_OK;
    case VG_ERR_NOMEM: return VIGIL_ERR_NOMEM;
    case VG_ERR_TOO_LARGE: return VIGIL_ERR_TOO_LARGE;
    case VG_ERR_BAD_TOPIC: return VIGIL_ERR_BAD_TOPIC;
    case VG_ERR_FULL: return VIGIL_ERR_FULL;
    case VG_ERR_CLOSED: return VIGIL_ERR_CLOSED;
    case VG_ERR_TIMEOUT: return VIGIL_ERR_TIMEOUT;
    case VG_ERR_ARG: return VIGIL_ERR_ARG;
    case VG_ERR_REFUSED: return VIGIL_ERR_REFUSED;
    default: return VIGIL_ERR_IO; /* the connection's trouble, whatever its kind */
    }
}

const char *vigil_status_str(vigil_status s)
{
    switch (s) {
    case VIGIL_OK: return "ok";
    case VIGIL_ERR_ARG: return "invalid argument";
    case VIGIL_ERR_NOMEM: return "out of memory";
    case VIGIL_ERR_BAD_TOPIC: return "invalid topic";
    case VIGIL_ERR_TOO_LARGE: return "payload too large";
    case VIGIL_ERR_FULL: return "publish buffer full";
    case VIGIL_ERR_TIMEOUT: return "timed out";
    case VIGIL_ERR_CLOSED: return "client closed";
    case VIGIL_ERR_REFUSED: return "refused by the broker";
    case VIGIL_ERR_IO: return "connection ended";
    }
    return "unknown status";
}

vigil_status vigil_topic_check(const char *topic, int pattern, const char **why)
{
    const char *ignored;
    if (why == NULL)
        why = &ignored;
    if (topic == NULL) {
        *why = "no topic";
        return VIGIL_ERR_BAD_TOPIC;
    }
    size_t len = strlen(topic);
    vg_status st = pattern ? vg_subject_check(topic, len, VG_TOPIC_MAX_LEN, VG_TOPIC_MAX_LEN, why)
                           : vg_topic_check(topic, len, VG_TOPIC_MAX_LEN, VG_TOPIC_MAX_LEN, why);
    return narrow(st);
}

int vigil_name_valid(const char *name) { return name != NULL && vg_durable_name_ok(name, strlen(name)); }

/* ---- options ---- */

vigil_options *vigil_options_create(void)
{
    vigil_options *o = calloc(1, sizeof *o);
    if (o == NULL)
        return NULL;
    vg_client_opts_defaults(&o->opts);
    /* The defaults may point into the environment: own copies. */
    if (vigil_options_set_servers(o, o->opts.servers) != VIGIL_OK ||
        vigil_options_set_name(o, o->opts.name) != VIGIL_OK ||
        vigil_options_set_token(o, o->opts.token) != VIGIL_OK) {
        vigil_options_destroy(o);
        return NULL;
    }
    o->h.log_level = VIGIL_LOG_INFO;
    return o;
}

void vigil_options_destroy(vigil_options *o)
{
    if (o == NULL)
        return;
    free(o->servers);
    free(o->name);
    free(o->token);
    free(o);
}

/* Replaces *slot with a copy of s (NULL allowed). */
static vigil_status set_string(char **slot, const char *s)
{
    char *copy = NULL;
    if (s != NULL && (copy = strdup(s)) == NULL)
        return VIGIL_ERR_NOMEM;
    free(*slot);
    *slot = copy;
    return VIGIL_OK;
}

vigil_status vigil_options_set_servers(vigil_options *o, const char *servers)
{
    if (servers == NULL || servers[0] == '\0')
        return VIGIL_ERR_ARG;
    vigil_status st = set_string(&o->servers, servers);
    o->opts.servers = o->servers;
    return st;
}

vigil_status vigil_options_set_name(vigil_options *o, const char *name)
{
    if (name == NULL || strlen(name) > VG_NAME_MAX_LEN)
        return VIGIL_ERR_ARG;
    vigil_status st = set_string(&o->name, name);
    o->opts.name = o->name;
    return st;
}

vigil_status vigil_options_set_token(vigil_options *o, const char *token)
{
    vigil_status st = set_string(&o->token, token);
    o->opts.token = o->token;
    return st;
}

vigil_status vigil_options_set_max_buffer(vigil_options *o, size_t bytes)
{
    if (bytes == 0)
        return VIGIL_ERR_ARG;
    o->opts.max_buffer = bytes;
    return VIGIL_OK;
}

vigil_status vigil_options_set_max_payload(vigil_options *o, uint64_t bytes)
{
    if (bytes == 0)
        return VIGIL_ERR_ARG;
    o->opts.max_payload = bytes;
    return VIGIL_OK;
}

vigil_status vigil_options_set_heartbeat(vigil_options *o, int64_t idle_ms, int64_t interval_ms,
                                         int probes)
{
    vg_keepalive k = {idle_ms, interval_ms, probes};
    if (idle_ms < 0 || (idle_ms > 0 && (interval_ms <= 0 || probes < 1 || probes > 100)))
        return VIGIL_ERR_ARG;
    if (idle_ms == 0)
        k = (vg_keepalive){0, 0, 0};
    o->opts.keepalive = k;
    return VIGIL_OK;
}

vigil_status vigil_options_set_backoff(vigil_options *o, int64_t base_ms, int64_t max_ms)
{
    if (base_ms <= 0 || max_ms <= 0)
        return VIGIL_ERR_ARG;
    o->opts.backoff_base_ms = base_ms;
    o->opts.backoff_max_ms = max_ms;
    return VIGIL_OK;
}

vigil_status vigil_options_set_max_reconnects(vigil_options *o, int64_t attempts)
{
    if (attempts < -1)
        return VIGIL_ERR_ARG;
    o->opts.max_reconnects = attempts;
    return VIGIL_OK;
}

vigil_status vigil_options_set_ack_delay(vigil_options *o, int64_t ms)
{
    if (ms < 0 || ms > 3600 * 1000)
        return VIGIL_ERR_ARG;
    o->opts.ack_delay_ms = ms;
    return VIGIL_OK;
}

void vigil_options_set_user_data(vigil_options *o, void *ud) { o->h.ud = ud; }
void vigil_options_on_msg(vigil_options *o, vigil_msg_handler fn) { o->h.on_msg = fn; }
void vigil_options_on_gap(vigil_options *o, vigil_gap_handler fn) { o->h.on_gap = fn; }
void vigil_options_on_batch_end(vigil_options *o, vigil_batch_handler fn) { o->h.on_batch_end = fn; }
void vigil_options_on_sub_error(vigil_options *o, vigil_sub_error_handler fn) { o->h.on_sub_error = fn; }
void vigil_options_on_connection(vigil_options *o, vigil_conn_handler fn) { o->h.on_connection = fn; }
void vigil_options_on_closed(vigil_options *o, vigil_closed_handler fn) { o->h.on_closed = fn; }

void vigil_options_on_log(vigil_options *o, vigil_log_handler fn, vigil_log_level level)
{
    o->h.on_log = fn;
    o->h.log_level = level;
}

/* ---- handlers: the internal client's, adapted ---- */

static void tr_msg(void *ud, const vg_msg *m)
{
    vigil_client *vc = ud;
    vigil_msg pm = {*m};
    vc->h.on_msg(vc->h.ud, &pm);
}

static void tr_gap(void *ud, const char *topic, size_t len, const vg_gap *g)
{
    vigil_client *vc = ud;
    vigil_gap pg = {topic, len, *g};
    vc->h.on_gap(vc->h.ud, &pg);
}

static void tr_batch_end(void *ud)
{
    vigil_client *vc = ud;
    vc->h.on_batch_end(vc->h.ud);
}

static void tr_sub_error(void *ud, uint64_t sid, const char *topic, uint64_t code,
                         const char *reason)
{
    vigil_client *vc = ud;
    vc->h.on_sub_error(vc->h.ud, sid, topic, (int)code, reason);
}

static void tr_connection(void *ud, vg_conn_event ev, const char *server, const char *reason)
{
    vigil_client *vc = ud;
    vigil_conn_event pe = ev == VG_CONN_CONNECTED      ? VIGIL_CONNECTED
                          : ev == VG_CONN_DISCONNECTED ? VIGIL_DISCONNECTED
                                                       : VIGIL_RECONNECTED;
    vc->h.on_connection(vc->h.ud, pe, server, reason);
}

static void tr_closed(void *ud, const char *reason)
{
    vigil_client *vc = ud;
    vc->h.on_closed(vc->h.ud, reason);
}

static void tr_log(void *ud, vg_log_level level, const char *line)
{
    vigil_client *vc = ud;
    vc->h.on_log(vc->h.ud, (vigil_log_level)level, line);
}

/* ---- the client ---- */

vigil_status vigil_client_create(vigil_client **out, const vigil_options *o, const char **why)
{
    const char *ignored;
    if (why == NULL)
        why = &ignored;
    *why = NULL;
    *out = NULL;
    if (o == NULL) {
        *why = "no options";
        return VIGIL_ERR_ARG;
    }
    vigil_client *vc = calloc(1, sizeof *vc);
    if (vc == NULL)
        goto fail;
    vc->h = o->h;
    if (o->token != NULL && (vc->token = strdup(o->token)) == NULL)
        goto fail_client;
    vg_client_opts opts = o->opts;
    opts.token = vc->token;
    opts.ud = vc;
    opts.on_msg = vc->h.on_msg != NULL ? tr_msg : NULL;
    opts.on_gap = vc->h.on_gap != NULL ? tr_gap : NULL;
    opts.on_batch_end = vc->h.on_batch_end != NULL ? tr_batch_end : NULL;
    opts.on_sub_error = vc->h.on_sub_error != NULL ? tr_sub_error : NULL;
    opts.on_connection = vc->h.on_connection != NULL ? tr_connection : NULL;
    opts.on_closed = vc->h.on_closed != NULL ? tr_closed : NULL;
    opts.on_log = vc->h.on_log != NULL ? tr_log : NULL;
    opts.log_level = (vg_log_level)vc->h.log_level;
    vg_status st = vg_client_start(&vc->c, &opts, why);
    if (st != VG_OK) {
        free(vc->token);
        free(vc);
        return narrow(st);
    }
    *out = vc;
    return VIGIL_OK;

fail_client:
    free(vc);
fail:
    *why = "out of memory";
    return VIGIL_ERR_NOMEM;
}

vigil_status vigil_close(vigil_client *c, int timeout_ms) { return narrow(vg_client_close(c->c, timeout_ms)); }

void vigil_client_destroy(vigil_client *c)
{
    if (c == NULL)
        return;
    vg_client_destroy(c->c);
    free(c->token);
    free(c);
}

vigil_status vigil_wait_connected(vigil_client *c, int timeout_ms)
{
    return narrow(vg_client_wait_connected(c->c, timeout_ms));
}

const char *vigil_closed_reason(vigil_client *c) { return vg_client_closed_reason(c->c); }

vigil_status vigil_publish_type(vigil_client *c, unsigned type, const char *topic,
                                const void *payload, size_t len, int timeout_ms)
{
    if ((type != 1 && type != 2) || topic == NULL || (payload == NULL && len > 0))
        return VIGIL_ERR_ARG;
    vg_frame_type t = type == 1 ? VG_FRAME_MSG_TYPE1 : VG_FRAME_MSG_TYPE2;
    return narrow(vg_client_publish(c->c, t, topic, strlen(topic), payload, len, timeout_ms));
}

vigil_status vigil_publish(vigil_client *c, const char *topic, const void *payload, size_t len,
                           int timeout_ms)
{
    return vigil_publish_type(c, 1, topic, payload, len, timeout_ms);
}

vigil_status vigil_flush(vigil_client *c, int timeout_ms) { return narrow(vg_client_flush(c->c, timeout_ms)); }

vigil_status vigil_subscribe(vigil_client *c, const char *subject, uint64_t *sid)
{
    if (subject == NULL)
        return VIGIL_ERR_ARG;
    return narrow(vg_client_subscribe(c->c, subject, sid));
}

vigil_status vigil_subscribe_from(vigil_client *c, const char *subject, vigil_start start,
                                  uint64_t epoch, uint64_t position, uint64_t *sid)
{
    if (subject == NULL)
        return VIGIL_ERR_ARG;
    return narrow(vg_client_subscribe_from(c->c, subject, (vg_sub_start)start, epoch, position, sid));
}

vigil_status vigil_subscribe_durable(vigil_client *c, const char *subject, const char *name,
                                     vigil_start start, uint64_t epoch, uint64_t position,
                                     uint64_t *sid)
{
    if (subject == NULL || name == NULL)
        return VIGIL_ERR_ARG;
    return narrow(vg_client_subscribe_durable(c->c, subject, name, (vg_sub_start)start, epoch,
                                              position, sid));
}

vigil_status vigil_subscribe_queue(vigil_client *c, const char *subject, const char *queue,
                                   const char *durable, vigil_start start, uint64_t epoch,
                                   uint64_t position, uint64_t *sid)
{
    if (subject == NULL || queue == NULL)
        return VIGIL_ERR_ARG;
    return narrow(vg_client_subscribe_queue(c->c, subject, queue, durable, (vg_sub_start)start,
                                            epoch, position, sid));
}

vigil_status vigil_wait_subscribed(vigil_client *c, uint64_t sid, int timeout_ms)
{
    return narrow(vg_client_wait_subscribed(c->c, sid, timeout_ms));
}

vigil_status vigil_unsubscribe(vigil_client *c, uint64_t sid) { return narrow(vg_client_unsubscribe(c->c, sid)); }

vigil_status vigil_delete_durable(vigil_client *c, uint64_t sid, int timeout_ms)
{
    return narrow(vg_client_delete_durable(c->c, sid, timeout_ms));
}

void vigil_stop_delivery(vigil_client *c) { vg_client_stop_delivery(c->c); }

/* ---- messages and gaps ---- */

const char *vigil_msg_topic(const vigil_msg *m, size_t *len)
{
    if (len != NULL)
        *len = m->m.topic_len;
    return m->m.topic;
}

const void *vigil_msg_payload(const vigil_msg *m, size_t *len)
{
    if (len != NULL)
        *len = m->m.payload_len;
    return m->m.payload;
}

uint64_t vigil_msg_seq(const vigil_msg *m) { return m->m.seq; }
uint64_t vigil_msg_epoch(const vigil_msg *m) { return m->m.epoch; }
uint64_t vigil_msg_sid(const vigil_msg *m) { return m->m.sid; }
unsigned vigil_msg_type(const vigil_msg *m) { return m->m.type == VG_FRAME_MSG_TYPE2 ? 2 : 1; }
unsigned vigil_msg_copy(const vigil_msg *m) { return m->m.copy; }

const char *vigil_gap_topic(const vigil_gap *g, size_t *len)
{
    if (len != NULL)
        *len = g->topic_len;
    return g->topic;
}

uint64_t vigil_gap_from(const vigil_gap *g) { return g->g.from; }
uint64_t vigil_gap_to(const vigil_gap *g) { return g->g.to; }
vigil_gap_reason vigil_gap_reason_of(const vigil_gap *g) { return (vigil_gap_reason)g->g.reason; }
uint64_t vigil_gap_sid(const vigil_gap *g) { return g->g.sid; }
unsigned vigil_gap_copy(const vigil_gap *g) { return g->g.copy; }

size_t vigil_client_stats(vigil_client *c, uint64_t *out, size_t n)
{
    vg_client_stats s;
    vg_client_get_stats(c->c, &s);
    const uint64_t all[VIGIL_STAT_COUNT] = {
        [VIGIL_STAT_PUBLISHED] = s.published,     [VIGIL_STAT_CONFIRMED] = s.confirmed,
        [VIGIL_STAT_UNCONFIRMED] = s.unconfirmed, [VIGIL_STAT_PENDING] = s.pending,
        [VIGIL_STAT_UNSENT] = s.unsent,           [VIGIL_STAT_RECEIVED] = s.received,
        [VIGIL_STAT_DUPLICATES] = s.duplicates,   [VIGIL_STAT_GAPS] = s.gaps,
        [VIGIL_STAT_MISSED] = s.missed,
    };
    size_t k = n < VIGIL_STAT_COUNT ? n : VIGIL_STAT_COUNT;
    memcpy(out, all, k * sizeof *out);
    return k;
}
