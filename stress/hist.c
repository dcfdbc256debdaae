/*
 * hist.c — snapshot, merge and percentile queries for the log-linear latency histograms of hist.h.
 */
#include "hist.h"

uint64_t hist_bucket_low(uint32_t i)
{
    if (i < 2 * HIST_SUB)
        return i;
    uint32_t shift = i / HIST_SUB - 1;
    return (uint64_t)(HIST_SUB + i % HIST_SUB) << shift;
}

uint64_t hist_bucket_width(uint32_t i)
{
    if (i < 2 * HIST_SUB)
        return 1;
    return UINT64_C(1) << (i / HIST_SUB - 1);
}

void hist_snapshot(const struct hist *h, struct hist_snap *out)
{
    for (uint32_t i = 0; i < HIST_BUCKETS; i++)
        out->count[i] = atomic_load_explicit(&h->count[i], memory_order_relaxed);
    out->n = atomic_load_explicit(&h->n, memory_order_relaxed);
    out->sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
    out->max = atomic_load_explicit(&h->max, memory_order_relaxed);
}

void hist_snap_add(struct hist_snap *acc, const struct hist_snap *s)
{
    for (uint32_t i = 0; i < HIST_BUCKETS; i++)
        acc->count[i] += s->count[i];
    acc->n += s->n;
    acc->sum += s->sum;
    if (s->max > acc->max)
        acc->max = s->max;
}

void hist_snap_diff(const struct hist_snap *cur, const struct hist_snap *prev, struct hist_snap *out)
{
    uint64_t n = 0;
    out->max = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        /* The snapshot is not atomic as a whole, so a bucket can briefly look ahead of n: sum the buckets
         * instead of trusting n, and never let a difference go negative. */
        uint64_t d = cur->count[i] >= prev->count[i] ? cur->count[i] - prev->count[i] : 0;
        out->count[i] = d;
        n += d;
        if (d)
            out->max = hist_bucket_low(i) + hist_bucket_width(i) - 1;
    }
    out->n = n;
    out->sum = cur->sum >= prev->sum ? cur->sum - prev->sum : 0;
    if (cur->max < out->max)
        out->max = cur->max;
}

double hist_quantile(const struct hist_snap *s, double q)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++)
        total += s->count[i];
    if (total == 0)
        return 0;
    if (q >= 1.0)
        return (double)s->max;
    /* The smallest value v with at least ceil(q * total) recorded values <= v. */
    uint64_t rank = (uint64_t)(q * (double)total + 0.999999);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += s->count[i];
        if (seen >= rank) {
            double mid = (double)hist_bucket_low(i) + (double)(hist_bucket_width(i) - 1) / 2.0;
            return s->max && mid > (double)s->max ? (double)s->max : mid;
        }
    }
    return (double)s->max;
}

double hist_mean(const struct hist_snap *s)
{
    return s->n ? (double)s->sum / (double)s->n : 0;
}
