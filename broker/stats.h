/* The broker's live statistics, published as JSON on $SYS.stats. */
#ifndef VG_STATS_H
#define VG_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

#define VG_STATS_TOPIC "$SYS.stats"

/* Writes srv's statistics at now_ms as one line of JSON into buf (cap
 * bytes); returns its length, or 0 if cap is too small. */
size_t vg_stats_json(vg_server *srv, int64_t now_ms, char *buf, size_t cap);

#endif
