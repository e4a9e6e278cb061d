#include "stats.h"

#include <stdio.h>

#include "memory.h"
#include "version.h"

/* Threads and resident bytes of this process, from /proc; 0 if unknown. */
static void proc_status(uint64_t *threads, uint64_t *rss_bytes)
{
    *threads = 0;
    *rss_bytes = 0;
    FILE *f = fopen("/proc/self/status", "re");
    if (f == NULL)
        return;
    char line[256];
    unsigned long long v;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "Threads: %llu", &v) == 1)
            *threads = v;
        else if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
            *rss_bytes = v * 1024;
    }
    fclose(f);
}

static uint64_t get(_Atomic uint64_t *v) { return atomic_load_explicit(v, memory_order_relaxed); }

const char *vg_evict_name(vg_evict_reason r)
{
    switch (r) {
    case VG_EVICT_HEARTBEAT: return "heartbeat";
    case VG_EVICT_SLOW_CONSUMER: return "slow_consumer";
    case VG_EVICT_LIMIT: return "limit";
    case VG_EVICT_PROTOCOL: return "protocol";
    case VG_EVICT_AUTH: return "auth";
    case VG_EVICT_TIMEOUT: return "timeout";
    case VG_EVICT_INTERNAL: return "internal";
    case VG_EVICT_COUNT: break;
    }
    return "unknown";
}

void vg_stats_take(vg_server *srv, int64_t now_ms, vg_stats_snap *out)
{
    vg_server_stats *s = &srv->stats;
    *out = (vg_stats_snap){0};
    pthread_mutex_lock(&srv->mu);
    out->conns = srv->nconns;
    out->conns_total = srv->next_client_id;
    pthread_mutex_unlock(&srv->mu);
    out->uptime_ms = now_ms - srv->started_ms;
    vg_sublist_counts_t sc;
    vg_sublist_counts(srv->subs, &sc);
    out->subs = sc.entries;
    out->topics = sc.literals;
    out->patterns = sc.patterns;
    out->msgs_in = get(&s->msgs_in);
    out->bytes_in = get(&s->bytes_in);
    out->msgs_out = get(&s->msgs_out);
    out->bytes_out = get(&s->bytes_out);
    out->dropped = get(&s->dropped);
    out->duplicates = get(&s->duplicates);
    for (int r = 0; r < VG_EVICT_COUNT; r++)
        out->evictions[r] = get(&s->evictions[r]);
    out->pings_sent = get(&s->pings_sent);
    out->pongs_received = get(&s->pongs_received);
    proc_status(&out->threads, &out->rss_bytes);
    out->heap_bytes = vg_memory_heap_bytes();
    out->durables = vg_durables_count(srv->durables);
    vg_qgroups_counts(srv->qgroups, &out->groups, &out->members);
    out->redelivered = vg_qgroups_redelivered(srv->qgroups);
    vg_logs_get_stats(srv->logs, &out->logs);
    out->has_store = srv->store != NULL;
    if (out->has_store)
        vg_store_get_stats(srv->store, &out->store);
}

size_t vg_stats_format(const vg_stats_snap *s, char *buf, size_t cap)
{
    const uint64_t *ev = s->evictions;
    int n = snprintf(
        buf, cap,
        "{\"server\":\"vigil %s\",\"uptime_s\":%.1f,\"connections\":%llu,"
        "\"connections_total\":%llu,\"subscriptions\":%zu,\"topics\":%zu,\"patterns\":%zu,"
        "\"msgs_in\":%llu,\"bytes_in\":%llu,\"msgs_out\":%llu,\"bytes_out\":%llu,"
        "\"dropped\":%llu,\"evictions\":{\"heartbeat\":%llu,\"slow_consumer\":%llu,"
        "\"limit\":%llu,\"protocol\":%llu,\"auth\":%llu,\"timeout\":%llu,\"internal\":%llu},"
        "\"pings_sent\":%llu,\"pongs_received\":%llu,\"threads\":%llu,\"rss_bytes\":%llu,"
        "\"heap_bytes\":%llu,\"duplicates\":%llu,\"durables\":%zu,"
        "\"queues\":{\"groups\":%zu,\"members\":%zu,\"redelivered\":%llu}",
        VG_VERSION, (double)s->uptime_ms / 1000.0, (unsigned long long)s->conns,
        (unsigned long long)s->conns_total, s->subs, s->topics, s->patterns,
        (unsigned long long)s->msgs_in, (unsigned long long)s->bytes_in,
        (unsigned long long)s->msgs_out, (unsigned long long)s->bytes_out,
        (unsigned long long)s->dropped, (unsigned long long)ev[VG_EVICT_HEARTBEAT],
        (unsigned long long)ev[VG_EVICT_SLOW_CONSUMER], (unsigned long long)ev[VG_EVICT_LIMIT],
        (unsigned long long)ev[VG_EVICT_PROTOCOL], (unsigned long long)ev[VG_EVICT_AUTH],
        (unsigned long long)ev[VG_EVICT_TIMEOUT], (unsigned long long)ev[VG_EVICT_INTERNAL],
        (unsigned long long)s->pings_sent, (unsigned long long)s->pongs_received,
        (unsigned long long)s->threads, (unsigned long long)s->rss_bytes,
        (unsigned long long)s->heap_bytes, (unsigned long long)s->duplicates, s->durables,
        s->groups, s->members, (unsigned long long)s->redelivered);
    if (n <= 0 || (size_t)n >= cap)
        return 0;
    if (s->has_store) {
        const vg_store_stats *ss = &s->store;
        int m = snprintf(buf + n, cap - (size_t)n,
                         ",\"store\":{\"segments\":%llu,\"bytes\":%llu,\"syncs\":%llu,"
                         "\"synced_bytes\":%llu,\"confirm_waits\":%llu,\"early_confirms\":%llu,"
                         "\"write_errors\":%llu}",
                         (unsigned long long)ss->segments, (unsigned long long)ss->bytes,
                         (unsigned long long)ss->syncs, (unsigned long long)ss->synced_bytes,
                         (unsigned long long)ss->confirm_waits,
                         (unsigned long long)ss->early_confirms,
                         (unsigned long long)ss->write_errors);
        if (m <= 0 || (size_t)m >= cap - (size_t)n)
            return 0;
        n += m;
    }
    if ((size_t)n + 2 > cap)
        return 0;
    buf[n++] = '}';
    buf[n] = 0;
    return (size_t)n;
}

size_t vg_stats_json(vg_server *srv, int64_t now_ms, char *buf, size_t cap)
{
    vg_stats_snap s;
    vg_stats_take(srv, now_ms, &s);
    return vg_stats_format(&s, buf, cap);
}
