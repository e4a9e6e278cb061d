#include "stats.h"

#include <stdio.h>

#include "version.h"

/* Threads and resident bytes of this process, from /proc; 0 if unknown. */
static void proc_status(uint64_t *threads, uint64_t *rss_bytes)
{
    *threads = 0;
    *rss_bytes = 0;
    FILE *f = fopen("/proc/self/status", "r");
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

size_t vg_stats_json(vg_server *srv, int64_t now_ms, char *buf, size_t cap)
{
    vg_server_stats *s = &srv->stats;
    pthread_mutex_lock(&srv->mu);
    uint64_t conns = srv->nconns, total = srv->next_client_id;
    pthread_mutex_unlock(&srv->mu);
    vg_sublist_counts_t sc;
    vg_sublist_counts(srv->subs, &sc);
    size_t topics = sc.literals, patterns = sc.patterns, subs = sc.entries;
    uint64_t threads, rss;
    proc_status(&threads, &rss);
    int n = snprintf(
        buf, cap,
        "{\"server\":\"vigil %s\",\"uptime_s\":%.1f,\"connections\":%llu,"
        "\"connections_total\":%llu,\"subscriptions\":%zu,\"topics\":%zu,\"patterns\":%zu,"
        "\"msgs_in\":%llu,\"bytes_in\":%llu,\"msgs_out\":%llu,\"bytes_out\":%llu,"
        "\"dropped\":%llu,\"evictions\":{\"heartbeat\":%llu,\"slow_consumer\":%llu,"
        "\"limit\":%llu,\"protocol\":%llu,\"auth\":%llu,\"timeout\":%llu,\"internal\":%llu},"
        "\"pings_sent\":%llu,\"pongs_received\":%llu,\"threads\":%llu,\"rss_bytes\":%llu}",
        VG_VERSION, (double)(now_ms - srv->started_ms) / 1000.0, (unsigned long long)conns,
        (unsigned long long)total, subs, topics, patterns, (unsigned long long)get(&s->msgs_in),
        (unsigned long long)get(&s->bytes_in), (unsigned long long)get(&s->msgs_out),
        (unsigned long long)get(&s->bytes_out), (unsigned long long)get(&s->dropped),
        (unsigned long long)get(&s->evictions[VG_EVICT_HEARTBEAT]),
        (unsigned long long)get(&s->evictions[VG_EVICT_SLOW_CONSUMER]),
        (unsigned long long)get(&s->evictions[VG_EVICT_LIMIT]),
        (unsigned long long)get(&s->evictions[VG_EVICT_PROTOCOL]),
        (unsigned long long)get(&s->evictions[VG_EVICT_AUTH]),
        (unsigned long long)get(&s->evictions[VG_EVICT_TIMEOUT]),
        (unsigned long long)get(&s->evictions[VG_EVICT_INTERNAL]),
        (unsigned long long)get(&s->pings_sent), (unsigned long long)get(&s->pongs_received),
        (unsigned long long)threads, (unsigned long long)rss);
    if (n <= 0 || (size_t)n >= cap)
        return 0;
    /* Later additions go before the closing brace. */
    n--;
    size_t groups, members;
    vg_qgroups_counts(srv->qgroups, &groups, &members);
    int m = snprintf(buf + n, cap - (size_t)n,
                     ",\"duplicates\":%llu,\"durables\":%zu,\"queues\":{\"groups\":%zu,"
                     "\"members\":%zu}",
                     (unsigned long long)get(&s->duplicates), vg_durables_count(srv->durables),
                     groups, members);
    if (m <= 0 || (size_t)m >= cap - (size_t)n)
        return 0;
    n += m;
    if (srv->store != NULL) {
        vg_store_stats ss;
        vg_store_get_stats(srv->store, &ss);
        m = snprintf(buf + n, cap - (size_t)n,
                     ",\"store\":{\"segments\":%llu,\"bytes\":%llu,\"syncs\":%llu,"
                     "\"synced_bytes\":%llu,\"confirm_waits\":%llu,\"early_confirms\":%llu,"
                     "\"write_errors\":%llu}",
                     (unsigned long long)ss.segments, (unsigned long long)ss.bytes,
                     (unsigned long long)ss.syncs, (unsigned long long)ss.synced_bytes,
                     (unsigned long long)ss.confirm_waits, (unsigned long long)ss.early_confirms,
                     (unsigned long long)ss.write_errors);
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
