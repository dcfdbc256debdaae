/*
 * hist_test.c — checks the precision the README and the report promise for hist.c: every value lands in a
 * bucket that contains it, a bucket is at most 1/HIST_SUB of its lower bound wide, and a percentile of a
 * known distribution comes back within half a bucket. Run by ctest as stress_hist_precision.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hist.h"

static int failures;

static void fail(const char *what, uint64_t v, double got, double want)
{
    if (failures++ < 10)
        fprintf(stderr, "hist_test: %s: value %" PRIu64 ": got %.3f, want %.3f\n", what, v, got, want);
}

static void check_value(uint64_t v)
{
    uint32_t i = hist_index(v);
    if (i >= HIST_BUCKETS) {
        fail("index out of range", v, i, HIST_BUCKETS);
        return;
    }
    uint64_t lo = hist_bucket_low(i), w = hist_bucket_width(i);
    if (v < (UINT64_C(2) << HIST_MAX_EXP) && (v < lo || v >= lo + w))
        fail("value outside its bucket", v, (double)lo, (double)v);
    if (lo >= 2 * HIST_SUB && (double)w / (double)lo > 1.0 / HIST_SUB + 1e-12)
        fail("bucket wider than 1/HIST_SUB", v, (double)w / (double)lo, 1.0 / HIST_SUB);
}

int main(void)
{
    /* Every value up to 2^22 exhaustively, then both edges of every power of two up to the top. */
    for (uint64_t v = 0; v < (UINT64_C(1) << 22); v++)
        check_value(v);
    for (int e = 22; e < 64; e++)
        for (int64_t d = -3; d <= 3; d++)
            check_value((UINT64_C(1) << e) + (uint64_t)d);
    check_value(UINT64_MAX);

    /* Quantiles: values 1000..100999 ns once each; the true p-quantile is 1000 + p * 100000. */
    static struct hist h;
    static struct hist_snap s;
    for (uint64_t v = 1000; v < 101000; v++)
        hist_record(&h, v);
    hist_snapshot(&h, &s);
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (int k = 0; k < 4; k++) {
        double want = 1000 + qs[k] * 100000, got = hist_quantile(&s, qs[k]);
        if (got < want * (1 - 0.5 / HIST_SUB) || got > want * (1 + 0.5 / HIST_SUB))
            fail("quantile", (uint64_t)(qs[k] * 1000), got, want);
    }
    if (s.max != 100999 || hist_quantile(&s, 1.0) != 100999.0)
        fail("max", s.max, hist_quantile(&s, 1.0), 100999);
    double mean = hist_mean(&s);
    if (mean != 50999.5)
        fail("mean", 0, mean, 50999.5);

    /* Merging two halves gives the same snapshot as recording everything in one. */
    static struct hist a, b;
    static struct hist_snap sa, sb;
    for (uint64_t v = 1000; v < 101000; v++)
        hist_record(v & 1 ? &a : &b, v);
    hist_snapshot(&a, &sa);
    hist_snapshot(&b, &sb);
    hist_snap_add(&sa, &sb);
    if (memcmp(&sa, &s, sizeof s) != 0)
        fail("merge differs from a single histogram", 0, 0, 0);

    if (failures) {
        fprintf(stderr, "hist_test: %d failure(s)\n", failures);
        return 1;
    }
    printf("hist_test: OK (buckets <= 1/%u of their value wide; quantiles within %.1f%%)\n", HIST_SUB,
           50.0 / HIST_SUB);
    return 0;
}
