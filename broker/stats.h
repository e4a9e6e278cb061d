/* The broker's live statistics: one snapshot (vg_stats_take) from which
 * both $SYS.stats and the monitor's /varz and /metrics (monz.c) are made,
 * so that they cannot disagree. */
#ifndef VG_STATS_H
#define VG_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

#define VG_STATS_TOPIC "$SYS.stats"

typedef struct {
    int64_t uptime_ms;
    uint64_t conns, conns_total;            /* now; accepted since start */
    size_t subs, topics, patterns;          /* subscription table: entries, literal
                                               subjects, pattern subjects */
    uint64_t msgs_in, bytes_in, msgs_out, bytes_out, dropped, duplicates;
    uint64_t evictions[VG_EVICT_COUNT];
    uint64_t pings_sent, pongs_received;
    uint64_t threads, rss_bytes;            /* this process, from /proc; 0 unknown */
    uint64_t heap_bytes;                    /* malloc's bytes in use (vg_memory_heap_bytes) */
    size_t durables, groups, members;
    uint64_t redelivered;                   /* queue groups' (vg_qgroups_redelivered) */
    vg_logs_stats logs;                     /* the topic logs (retention's view) */
    bool has_store;
    vg_store_stats store;                   /* with has_store */
} vg_stats_snap;

/* The name of an eviction reason, as in $SYS.stats and event=evict lines. */
const char *vg_evict_name(vg_evict_reason r);

/* Takes srv's statistics at now_ms. Takes the registry's lock briefly, and
 * the subscription table's, the logs' and the store's (leaves). */
void vg_stats_take(vg_server *srv, int64_t now_ms, vg_stats_snap *out);

/* Writes s as the $SYS.stats document, one line of JSON, into buf (cap
 * bytes); returns its length, or 0 if cap is too small. Pure. */
size_t vg_stats_format(const vg_stats_snap *s, char *buf, size_t cap);

/* vg_stats_take then vg_stats_format. */
size_t vg_stats_json(vg_server *srv, int64_t now_ms, char *buf, size_t cap);

#endif
