/*
 * hist.h — latency histograms, log-linear like HdrHistogram.
 *
 * Values (nanoseconds) below 2*HIST_SUB are counted exactly; above, every power-of-two range [2^e, 2^(e+1))
 * is cut into HIST_SUB equal sub-buckets, so a bucket is at most 1/HIST_SUB = 1.6% of its lower bound
 * wide. Reporting a bucket's midpoint therefore errs by at most 0.8%. Values of 2^41 ns (about 37 minutes)
 * and more land in the last bucket; the exact maximum is kept separately.
 *
 * A live histogram (struct hist) has exactly one writer, the worker thread that owns it, and is read once
 * a second by the progress loop. Its counters are C11 atomics written with relaxed load+store (no locked
 * instruction: a single writer cannot lose an update), so the progress loop reads them without a data race
 * and without slowing the worker. Snapshots (struct hist_snap) are plain copies that can be merged,
 * subtracted (for per-interval percentiles) and queried.
 */
#ifndef BM_STRESS_HIST_H
#define BM_STRESS_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_EXP 40
#define HIST_BUCKETS ((HIST_MAX_EXP - HIST_SUB_BITS + 2) * HIST_SUB)

struct hist {
    _Atomic uint64_t count[HIST_BUCKETS];
    _Atomic uint64_t n;
    _Atomic uint64_t sum;
    _Atomic uint64_t max;
};

struct hist_snap {
    uint64_t count[HIST_BUCKETS];
    uint64_t n;
    uint64_t sum;
    uint64_t max;
};

static inline uint32_t hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (uint32_t)v;
    uint32_t e = 63u - (uint32_t)__builtin_clzll(v);
    if (e > HIST_MAX_EXP) {
        e = HIST_MAX_EXP;
        v = (UINT64_C(2) << HIST_MAX_EXP) - 1;
    }
    uint32_t shift = e - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (uint32_t)(v >> shift) - HIST_SUB;
}

/* Single-writer increment: see the header comment for why this is not atomic_fetch_add. */
static inline void hist_bump(_Atomic uint64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by, memory_order_relaxed);
}

/* Only the owning thread may call this. */
static inline void hist_record(struct hist *h, uint64_t ns)
{
    hist_bump(&h->count[hist_index(ns)], 1);
    hist_bump(&h->n, 1);
    hist_bump(&h->sum, ns);
    if (ns > atomic_load_explicit(&h->max, memory_order_relaxed))
        atomic_store_explicit(&h->max, ns, memory_order_relaxed);
}

/* Safe from any thread while the owner keeps recording; the copy is not a single instant, which only
 * matters for the last few operations of a live interval. */
void hist_snapshot(const struct hist *h, struct hist_snap *out);
void hist_snap_add(struct hist_snap *acc, const struct hist_snap *s);
/* cur - prev, for the operations recorded between two snapshots; max becomes the interval's highest
 * non-empty bucket's upper bound (the exact interval maximum is not tracked). */
void hist_snap_diff(const struct hist_snap *cur, const struct hist_snap *prev, struct hist_snap *out);
/* Value at quantile q in [0,1] (bucket midpoint, never above the exact max); 0 when empty. */
double hist_quantile(const struct hist_snap *s, double q);
double hist_mean(const struct hist_snap *s);

/* Lower bound and width of bucket i (exposed for the self-check in the README's precision claim). */
uint64_t hist_bucket_low(uint32_t i);
uint64_t hist_bucket_width(uint32_t i);

#endif
