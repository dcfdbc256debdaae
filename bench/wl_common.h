/* What the workload files share: the store being measured, the expected value of a key, and how a
 * latency histogram becomes result rows. */
#ifndef BENCH_WL_COMMON_H
#define BENCH_WL_COMMON_H

#include <stdint.h>
#include <stdio.h>

#include "hist.h"
#include "results.h"
#include "system.h"
#include "workloads.h"

typedef struct wl_ctx {
    const sys_ops *s;
    const bench_opts *o;
    FILE *csv;
    void *db;  /* the open store */
    uint64_t n; /* keys 0..n-1 of KEY_PRESENT are in it */
} wl_ctx;

/* The element stored under key i, so every get can check it read its own key's value. */
static inline uint64_t val_of(uint64_t i)
{
    return i ^ 0x5bd1e9955bd1e995ull;
}

/* Rows mops (ops / secs / 1e6), p50/p99/p999/max/mean in ns, ops. */
void wl_emit_hist(const wl_ctx *c, const char *wl, unsigned threads, const hist *h, uint64_t ops, double secs);

/* Workloads 2 (uniform present), 3 (absent), 5 (Zipf), 8 (uniform present, o->batch keys per get_batch call)
 * on c->db at the given thread count; emits its result rows. Returns the rate in Mops/s (keys per second for
 * workload 8), or -1. */
enum { RD_UNIFORM, RD_ABSENT, RD_ZIPF, RD_BATCH };
double wl_reads(const wl_ctx *c, int mode, unsigned threads);

/* Workload 4 on a fresh store in dir with `buckets` shards (0 = default). 0 or -1. */
int wl_churn(const sys_ops *s, const bench_opts *o, FILE *csv, const char *dir, uint32_t buckets,
             const char *wl);

/* Inserts keys [from, to) untimed (batched where the system allows); 0 or the system's error. */
int wl_fill(const sys_ops *s, void *db, uint64_t from, uint64_t to, uint64_t seed);

#endif
