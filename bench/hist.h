/* Log-bucketed latency histogram (HdrHistogram-style): values below 64 ns are exact, above that every
 * power of two is split into 32 linear sub-buckets, so a reported percentile is within 1/32 (~3%) of the
 * true value. Fixed size, no allocation, so one per thread can be recorded into without sharing and merged
 * afterwards. */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    uint64_t sum;
    uint64_t b[HIST_BUCKETS];
} hist;

void hist_init(hist *h);

static inline unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (unsigned)(v >> shift) - HIST_SUB;
}

static inline void hist_add(hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist *into, const hist *from);
/* q in [0, 1]; returns the upper edge of the bucket holding that rank (never above the exact max), 0 when
 * empty. Upper edge, so a reported p99 is never optimistic. */
uint64_t hist_quantile(const hist *h, double q);

#endif
