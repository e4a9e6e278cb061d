/* Command-line value parsers shared by broker, pub and sub. */
#ifndef VG_ARGS_H
#define VG_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* Decimal seconds ("0.5", "10", "1e-3" is refused) to milliseconds, within
 * [0, max_ms]. Sub-millisecond positive values round up to 1 ms. */
bool vg_parse_seconds(const char *s, int64_t max_ms, int64_t *ms_out);

/* A decimal integer within [min, max]. */
bool vg_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* A byte count with an optional binary suffix (K, M, G, also KiB, MiB, GiB),
 * within [min, max]. */
bool vg_parse_bytes(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Prints "prog: message" and the usage line to stderr and exits with 2. */
_Noreturn void vg_usage_error(const char *prog, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
