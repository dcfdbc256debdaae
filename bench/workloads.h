/* The six workloads of issue 4, issue 7's flush costs (workload 7) and issue 9's batched gets (workload 8),
 * run against one system in the current process. */
#ifndef BENCH_WORKLOADS_H
#define BENCH_WORKLOADS_H

#include <stdint.h>
#include <stdio.h>

#include "system.h"

#define MAX_THREAD_COUNTS 8

typedef struct bench_opts {
    uint64_t n;                           /* keys inserted by workload 1 */
    unsigned threads[MAX_THREAD_COUNTS];  /* thread counts for workloads 2, 3, 5 */
    unsigned n_threads;
    double dur;                           /* seconds per timed read run (workloads 2, 3, 5) */
    double w4_dur;                        /* seconds per workload-4 run */
    unsigned w4_readers;                  /* reader threads in workload 4 (plus one writer) */
    uint32_t w4_buckets;                  /* the small bucket count of workload 4's second run */
    uint32_t w4_flush_ms;                 /* workload 4: background flusher period (0 = none) */
    unsigned w7_updates;                  /* workload 7: random updates before the second flush */
    unsigned sample;                      /* time every sample-th op in throughput runs (power of two) */
    unsigned batch;                       /* workload 8: keys per batched get (1..BATCH_MAX_KEYS) */
    uint64_t seed;
    const char *scratch;                  /* parent directory for the systems' files */
    unsigned workloads;                   /* bit w set: run workload w (1..8) */
} bench_opts;

/* Runs the selected workloads on s, appending result rows to csv. Returns 0, or non-zero when the system
 * failed (an error, a wrong value, a lost key): that is a bug to report, and the worker exits non-zero. */
int run_system(const sys_ops *s, const bench_opts *o, FILE *csv);

#endif
