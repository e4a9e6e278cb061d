#include "histogram.h"

#include <string.h>

void hist_init(histogram *h) { memset(h, 0, sizeof *h); }

static unsigned bucket(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 6; /* keep the top 7 bits: 1 + 6 of mantissa */
    return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1));
}

/* The lower edge of a bucket, plus half its width. */
static double middle(unsigned b)
{
    if (b < HIST_SUB)
        return b;
    unsigned shift = b / HIST_SUB - 1;
    uint64_t low = ((uint64_t)HIST_SUB + (b % HIST_SUB)) << shift;
    return (double)low + (double)(1ull << shift) / 2.0;
}

void hist_add(histogram *h, int64_t ns)
{
    uint64_t v = ns > 0 ? (uint64_t)ns : 0;
    unsigned b = bucket(v);
    h->counts[b < HIST_BUCKETS ? b : HIST_BUCKETS - 1]++;
    h->n++;
    if (ns > h->max)
        h->max = ns;
}

void hist_merge(histogram *into, const histogram *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->n += from->n;
    if (from->max > into->max)
        into->max = from->max;
}

double hist_quantile(const histogram *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)(h->n - 1)) + 1, seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            double m = middle(i);
            return m < (double)h->max ? m : (double)h->max;
        }
    }
    return (double)h->max;
}

double hist_max(const histogram *h) { return (double)h->max; }
