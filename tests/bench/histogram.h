/* A log-linear latency histogram: 64 sub-buckets per power of two (under
 * 1.6% error), fixed size, no allocation, cheap enough to record every
 * message at millions per second. */
#ifndef BENCH_HISTOGRAM_H
#define BENCH_HISTOGRAM_H

#include <stdint.h>

#define HIST_SUB 64
#define HIST_BUCKETS (64 * HIST_SUB)

typedef struct {
    uint64_t n;
    int64_t max;
    uint64_t counts[HIST_BUCKETS];
} histogram;

void hist_init(histogram *h);
void hist_add(histogram *h, int64_t ns);
void hist_merge(histogram *into, const histogram *from);
/* The value at quantile q (0..1), in ns; 0 if empty. */
double hist_quantile(const histogram *h, double q);
double hist_max(const histogram *h);

#endif
