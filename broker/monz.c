#include "monz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "conn_info.h"
#include "sublist.h"
#include "version.h"

typedef unsigned long long ull;

static const char *fsync_name(vg_fsync_policy p)
{
    switch (p) {
    case VG_FSYNC_ALWAYS: return "always";
    case VG_FSYNC_INTERVAL: return "interval";
    case VG_FSYNC_NEVER: return "never";
    }
    return "unknown";
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An RFC 3339 UTC time with milliseconds. */
static void put_time(vg_jw *w, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[40];
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        vg_jw_raw(w, "null");
        return;
    }
    vg_jw_fmt(w, "\"%s.%03dZ\"", buf, (int)(ms % 1000));
}

static void facts_of(vg_server *srv, int64_t now_ms, vg_monz_facts *f)
{
    f->cfg = &srv->cfg;
    f->listen = srv->listen_str;
    f->monitor = srv->monitor_str;
    f->epoch = vg_logs_epoch(srv->logs);
    f->now_wall_ms = wall_ms();
    f->start_wall_ms = f->now_wall_ms - (now_ms - srv->started_ms);
}

/* ---- /varz ---- */

void vg_monz_varz_format(const vg_stats_snap *s, const vg_monz_facts *f, vg_jw *w)
{
    const vg_broker_config *cfg = f->cfg;
    /* First what $SYS.stats says, in its words: one source for both. */
    char stats[2048];
    size_t n = vg_stats_format(s, stats, sizeof stats);
    if (n < 2) {
        w->st = w->st == VG_OK ? VG_ERR_FULL : w->st;
        return;
    }
    stats[n - 1] = '\0'; /* its closing brace: the rest goes before it */
    vg_jw_raw(w, stats);
    vg_jw_fmt(w, ",\"version\":\"%s\",\"server_id\":\"%016llx\",\"listen\":", VG_VERSION,
              (ull)f->epoch);
    vg_jw_str(w, f->listen, strlen(f->listen));
    vg_jw_raw(w, ",\"monitor\":");
    vg_jw_str(w, f->monitor, strlen(f->monitor));
    vg_jw_raw(w, ",\"start\":");
    put_time(w, f->start_wall_ms);
    vg_jw_raw(w, ",\"now\":");
    put_time(w, f->now_wall_ms);
    vg_jw_fmt(w, ",\"uptime_ms\":%lld,\"topic_logs\":%llu,\"auth\":\"%s\"",
              (long long)s->uptime_ms, (ull)s->logs.logs, cfg->token != NULL ? "token" : "none");
    vg_jw_fmt(w,
              ",\"retention\":{\"budget_bytes\":%llu,\"max_age_ms\":%lld,\"used_bytes\":%llu,"
              "\"records\":%llu,\"dropped\":%llu}",
              (ull)cfg->retention_bytes, (long long)cfg->retention_age_ms, (ull)s->logs.bytes,
              (ull)s->logs.records, (ull)s->logs.dropped);
    vg_jw_raw(w, ",\"data_dir\":");
    if (cfg->data_dir != NULL) {
        vg_jw_str(w, cfg->data_dir, strlen(cfg->data_dir));
        vg_jw_fmt(w, ",\"fsync\":\"%s\",\"fsync_interval_ms\":%d,\"segment_bytes\":%llu",
                  fsync_name(cfg->fsync), cfg->fsync == VG_FSYNC_INTERVAL ? cfg->fsync_interval_ms : 0,
                  (ull)cfg->segment_bytes);
        vg_jw_fmt(w, ",\"storage_failing\":%s", s->has_store && s->store.failing ? "true" : "false");
    } else {
        vg_jw_raw(w, "null,\"fsync\":null");
    }
    const vg_keepalive *k = &cfg->keepalive;
    vg_jw_fmt(w,
              ",\"limits\":{\"max_payload\":%llu,\"max_outbox\":%zu,\"max_connections\":%zu,"
              "\"max_subs\":%zu,\"max_topic_length\":%zu,\"max_topic_tokens\":%zu,"
              "\"handshake_timeout_ms\":%lld,\"keepalive_time_ms\":%lld,"
              "\"keepalive_interval_ms\":%lld,\"keepalive_probes\":%d,\"dead_after_ms\":%lld,"
              "\"stats_interval_ms\":%lld}}",
              (ull)cfg->max_payload, cfg->max_outbox, cfg->max_connections, cfg->max_subs,
              cfg->topic_max_len, cfg->topic_max_tokens, (long long)cfg->handshake_timeout_ms,
              (long long)k->time_ms, (long long)k->interval_ms, k->probes,
              (long long)vg_keepalive_bound_ms(k), (long long)cfg->stats_interval_ms);
}

vg_status vg_monz_varz(vg_server *srv, int64_t now_ms, vg_buf *out)
{
    vg_stats_snap s;
    vg_stats_take(srv, now_ms, &s);
    vg_monz_facts f;
    facts_of(srv, now_ms, &f);
    vg_jw w = vg_jw_on(out);
    vg_monz_varz_format(&s, &f, &w);
    return vg_jw_status(&w);
}

/* ---- /connz ---- */

static void put_conn(vg_jw *w, const vg_conn_info *c, int64_t now_ms, bool subs, bool first)
{
    vg_jw_fmt(w, "%s{\"cid\":%llu,\"addr\":", first ? "" : ",", (ull)c->id);
    vg_jw_str(w, c->addr, strlen(c->addr));
    vg_jw_raw(w, ",\"name\":");
    if (c->connected)
        vg_jw_str(w, c->name, c->name_len);
    else
        vg_jw_raw(w, "null");
    int64_t idle = now_ms - c->heard_ms;
    vg_jw_fmt(w,
              ",\"protocol\":%u,\"uptime_ms\":%lld,\"last_activity_ms\":%lld,\"rtt_us\":",
              (unsigned)c->version, (long long)(now_ms - c->born_ms),
              (long long)(idle > 0 ? idle : 0));
    if (c->rtt_us >= 0)
        vg_jw_fmt(w, "%lld", (long long)c->rtt_us);
    else
        vg_jw_raw(w, "null");
    vg_jw_fmt(w,
              ",\"subscriptions\":%llu,\"pending_bytes\":%llu,\"lag\":%llu,\"msgs_in\":%llu,"
              "\"bytes_in\":%llu,\"msgs_out\":%llu,\"bytes_out\":%llu",
              (ull)c->subs, (ull)c->pending_bytes, (ull)c->lag, (ull)c->msgs_in,
              (ull)c->bytes_in, (ull)c->msgs_out, (ull)c->bytes_out);
    if (subs) {
        vg_jw_raw(w, ",\"subscriptions_list\":");
        if (c->subs_json.len > 0 && w->st == VG_OK)
            w->st = vg_buf_append(w->out, c->subs_json.data, c->subs_json.len);
        else
            vg_jw_raw(w, "[]");
    }
    vg_jw_raw(w, "}");
}

vg_status vg_monz_connz(vg_server *srv, int64_t now_ms, bool subs, vg_buf *out)
{
    vg_conn_info *v;
    size_t n;
    vg_status st = vg_conn_info_list(srv, subs, &v, &n);
    if (st != VG_OK)
        return st;
    pthread_mutex_lock(&srv->mu);
    uint64_t total = srv->next_client_id;
    pthread_mutex_unlock(&srv->mu);
    vg_jw w = vg_jw_on(out);
    vg_jw_fmt(&w, "{\"num_connections\":%zu,\"connections_total\":%llu,\"connections\":[", n,
              (ull)total);
    for (size_t i = 0; i < n; i++)
        put_conn(&w, &v[i], now_ms, subs, i == 0);
    vg_jw_raw(&w, "]}");
    vg_conn_info_free(v, n);
    return vg_jw_status(&w);
}

/* ---- /topics ---- */

vg_status vg_monz_topics(vg_server *srv, vg_buf *out)
{
    vg_tlog **logs;
    size_t n;
    if (vg_logs_list(srv->logs, 0, &logs, &n) != VG_OK)
        return VG_ERR_NOMEM;
    /* A cache of this call's own: its references to subscribers go with it. */
    vg_sublist_cache *cache = vg_sublist_cache_create(srv->subs);
    if (cache == NULL) {
        free(logs);
        return VG_ERR_NOMEM;
    }
    vg_jw w = vg_jw_on(out);
    vg_jw_fmt(&w, "{\"num_topics\":%zu,\"topics\":[", n);
    for (size_t i = 0; i < n && w.st == VG_OK; i++) {
        uint32_t len;
        const char *topic = vg_tlog_topic(logs[i], &len);
        vg_tlog_info ti;
        vg_tlog_get_info(logs[i], &ti);
        const vg_sublist_result *m;
        size_t subscribers = 0, groups = 0;
        if (vg_sublist_match(cache, topic, len, &m) == VG_OK) {
            subscribers = m->n;
            groups = m->ngroups;
        }
        vg_jw_raw(&w, i == 0 ? "{\"topic\":" : ",{\"topic\":");
        vg_jw_str(&w, topic, len);
        vg_jw_fmt(&w,
                  ",\"first_seq\":%llu,\"last_seq\":%llu,\"messages\":%llu,\"bytes\":%llu,"
                  "\"subscribers\":%zu,\"queue_groups\":%zu}",
                  (ull)ti.first_seq, (ull)(ti.next_seq - 1), (ull)ti.records, (ull)ti.bytes,
                  subscribers, groups);
    }
    vg_jw_raw(&w, "]}");
    vg_sublist_cache_destroy(cache);
    free(logs);
    return vg_jw_status(&w);
}

/* ---- /healthz ---- */

bool vg_monz_healthy(vg_server *srv, const char **reason)
{
    if (atomic_load(&srv->stopping)) {
        *reason = "stopping";
        return false;
    }
    if (srv->store != NULL) {
        vg_store_stats ss;
        vg_store_get_stats(srv->store, &ss);
        if (ss.failing) {
            *reason = "storage_failing";
            return false;
        }
    }
    *reason = NULL;
    return true;
}

vg_status vg_monz_health(vg_server *srv, vg_buf *out, bool *ok)
{
    const char *reason;
    *ok = vg_monz_healthy(srv, &reason);
    vg_jw w = vg_jw_on(out);
    if (*ok)
        vg_jw_raw(&w, "{\"status\":\"ok\"}");
    else
        vg_jw_fmt(&w, "{\"status\":\"unavailable\",\"reason\":\"%s\"}", reason);
    return vg_jw_status(&w);
}

/* ---- /metrics ---- */

void vg_prom_family(vg_jw *w, const char *name, const char *type, const char *help)
{
    vg_jw_fmt(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void vg_prom_u64(vg_jw *w, const char *name, const char *labels, uint64_t v)
{
    if (labels != NULL && labels[0] != '\0')
        vg_jw_fmt(w, "%s{%s} %llu\n", name, labels, (ull)v);
    else
        vg_jw_fmt(w, "%s %llu\n", name, (ull)v);
}

void vg_prom_f64(vg_jw *w, const char *name, const char *labels, double v)
{
    if (labels != NULL && labels[0] != '\0')
        vg_jw_fmt(w, "%s{%s} %.3f\n", name, labels, v);
    else
        vg_jw_fmt(w, "%s %.3f\n", name, v);
}

/* A family of one unlabelled sample. */
static void one(vg_jw *w, const char *name, const char *type, const char *help, uint64_t v)
{
    vg_prom_family(w, name, type, help);
    vg_prom_u64(w, name, NULL, v);
}

void vg_monz_metrics_format(const vg_stats_snap *s, const vg_monz_facts *f, vg_jw *w)
{
    char labels[96];
    snprintf(labels, sizeof labels, "version=\"%s\",server_id=\"%016llx\"", VG_VERSION,
             (ull)f->epoch);
    vg_prom_family(w, "vigil_info", "gauge", "The broker's version and server id (always 1).");
    vg_prom_u64(w, "vigil_info", labels, 1);
    vg_prom_family(w, "vigil_start_time_seconds", "gauge", "Unix time the broker started at.");
    vg_prom_f64(w, "vigil_start_time_seconds", NULL, (double)f->start_wall_ms / 1000.0);
    vg_prom_family(w, "vigil_uptime_seconds", "gauge", "Seconds since the broker started.");
    vg_prom_f64(w, "vigil_uptime_seconds", NULL, (double)s->uptime_ms / 1000.0);
    one(w, "vigil_connections", "gauge", "Client connections now.", s->conns);
    one(w, "vigil_connections_accepted_total", "counter", "Client connections accepted.",
        s->conns_total);
    one(w, "vigil_subscriptions", "gauge", "Entries in the subscription table.", s->subs);
    one(w, "vigil_subscribed_topics", "gauge", "Literal subjects subscribed to.", s->topics);
    one(w, "vigil_subscribed_patterns", "gauge", "Pattern subjects subscribed to.", s->patterns);
    one(w, "vigil_topic_logs", "gauge", "Topics with a log.", s->logs.logs);
    one(w, "vigil_messages_in_total", "counter", "Messages received from publishers.",
        s->msgs_in);
    one(w, "vigil_messages_in_bytes_total", "counter", "Payload bytes received from publishers.",
        s->bytes_in);
    one(w, "vigil_messages_out_total", "counter", "Messages sent to subscribers, one per subscriber.",
        s->msgs_out);
    one(w, "vigil_messages_out_bytes_total", "counter", "Payload bytes sent to subscribers.",
        s->bytes_out);
    one(w, "vigil_messages_dropped_total", "counter",
        "Messages dropped (slow version-1 subscribers, no memory, storage failing).", s->dropped);
    one(w, "vigil_messages_duplicate_total", "counter",
        "Resent messages dropped as already appended.", s->duplicates);
    vg_prom_family(w, "vigil_evictions_total", "counter", "Connections ended by the broker, by reason.");
    for (int r = 0; r < VG_EVICT_COUNT; r++) {
        snprintf(labels, sizeof labels, "reason=\"%s\"", vg_evict_name((vg_evict_reason)r));
        vg_prom_u64(w, "vigil_evictions_total", labels, s->evictions[r]);
    }
    one(w, "vigil_pings_sent_total", "counter", "Heartbeat PINGs sent to clients.", s->pings_sent);
    one(w, "vigil_pongs_received_total", "counter", "PONGs received from clients.",
        s->pongs_received);
    one(w, "vigil_threads", "gauge", "Threads of the broker process.", s->threads);
    one(w, "vigil_resident_memory_bytes", "gauge", "Resident memory of the broker process.",
        s->rss_bytes);
    one(w, "vigil_heap_bytes", "gauge", "Bytes malloc has handed out and not had back.",
        s->heap_bytes);
    one(w, "vigil_durables", "gauge", "Durable subscriptions known.", s->durables);
    one(w, "vigil_queue_groups", "gauge", "Queue groups.", s->groups);
    one(w, "vigil_queue_members", "gauge", "Members of queue groups.", s->members);
    one(w, "vigil_queue_redelivered_total", "counter",
        "Queue group messages given back to be handed out again.", s->redelivered);
    one(w, "vigil_retention_budget_bytes", "gauge", "The topic logs' byte budget.",
        f->cfg->retention_bytes);
    one(w, "vigil_retention_used_bytes", "gauge", "Bytes the topic logs hold.", s->logs.bytes);
    one(w, "vigil_retention_records", "gauge", "Records the topic logs hold.", s->logs.records);
    one(w, "vigil_retention_dropped_total", "counter", "Records retention dropped.",
        s->logs.dropped);
    if (!s->has_store)
        return;
    const vg_store_stats *ss = &s->store;
    one(w, "vigil_store_segments", "gauge", "Segment files in the data directory.", ss->segments);
    one(w, "vigil_store_bytes", "gauge", "Bytes of the segment files.", ss->bytes);
    one(w, "vigil_store_syncs_total", "counter", "fdatasync calls of the commit thread.", ss->syncs);
    one(w, "vigil_store_synced_bytes_total", "counter", "Bytes covered by those syncs.",
        ss->synced_bytes);
    one(w, "vigil_store_write_errors_total", "counter", "Appends refused for a failed write.",
        ss->write_errors);
    one(w, "vigil_store_failing", "gauge", "1 while the store's writes fail (ERR storage).",
        ss->failing ? 1 : 0);
}

vg_status vg_monz_metrics(vg_server *srv, int64_t now_ms, vg_buf *out)
{
    vg_stats_snap s;
    vg_stats_take(srv, now_ms, &s);
    vg_monz_facts f;
    facts_of(srv, now_ms, &f);
    vg_jw w = vg_jw_on(out);
    vg_monz_metrics_format(&s, &f, &w);
    return vg_jw_status(&w);
}
