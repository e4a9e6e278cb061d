/* The monitoring documents (docs/operations.md, "Monitoring"): /varz,
 * /connz and /topics as JSON, the health verdict, and /metrics as
 * Prometheus text. One set of functions for both ways of asking: HTTP
 * (monitor.c) and subscribing to $SYS.varz, $SYS.connz or $SYS.topics
 * (conn_frames.c). Each takes a snapshot holding locks briefly (stats.h,
 * conn_info.h) and formats it holding none. */
#ifndef VG_MONZ_H
#define VG_MONZ_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "jsonw.h"
#include "server.h"
#include "stats.h"
#include "status.h"

#define VG_SYS_VARZ "$SYS.varz"
#define VG_SYS_CONNZ "$SYS.connz"
#define VG_SYS_TOPICS "$SYS.topics"

/* What /varz and /metrics say besides the statistics: the configuration
 * and where the broker is. */
typedef struct {
    const vg_broker_config *cfg;
    const char *listen;    /* the bound address */
    const char *monitor;   /* the monitor's bound address; "" if off */
    uint64_t epoch;        /* the log's identity: the server id */
    int64_t start_wall_ms; /* Unix time of the start, ms */
    int64_t now_wall_ms;
} vg_monz_facts;

/* Each of these appends its document to out: VG_OK or VG_ERR_NOMEM (out
 * then holds a part of it: the caller drops it). now_ms is vg_now_ms. */
vg_status vg_monz_varz(vg_server *srv, int64_t now_ms, vg_buf *out);
/* With subs, each connection lists its subscriptions. */
vg_status vg_monz_connz(vg_server *srv, int64_t now_ms, bool subs, vg_buf *out);
vg_status vg_monz_topics(vg_server *srv, vg_buf *out);
vg_status vg_monz_metrics(vg_server *srv, int64_t now_ms, vg_buf *out);

/* Whether the broker serves: false while it stops, or while the store's
 * writes fail (ERR storage), with the reason ("stopping", "storage_failing")
 * in *reason. */
bool vg_monz_healthy(vg_server *srv, const char **reason);
/* {"status":"ok"}, or {"status":"unavailable","reason":"..."}; *ok as
 * vg_monz_healthy. */
vg_status vg_monz_health(vg_server *srv, vg_buf *out, bool *ok);

/* ---- pure formatting, for the above and the unit tests ---- */

/* The /varz document of s and f. */
void vg_monz_varz_format(const vg_stats_snap *s, const vg_monz_facts *f, vg_jw *w);

/* The /metrics text of s and f: exposition format 0.0.4. */
void vg_monz_metrics_format(const vg_stats_snap *s, const vg_monz_facts *f, vg_jw *w);

/* A metric family's "# HELP" and "# TYPE" lines (type "counter" or
 * "gauge"; help one line of plain text). */
void vg_prom_family(vg_jw *w, const char *name, const char *type, const char *help);
/* One sample line, "name{labels} value" ("name value" if labels is NULL
 * or ""); labels already formatted as key="value" pairs. */
void vg_prom_u64(vg_jw *w, const char *name, const char *labels, uint64_t v);
/* ... with v to the millisecond (seconds). */
void vg_prom_f64(vg_jw *w, const char *name, const char *labels, double v);

#endif
