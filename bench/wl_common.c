/* What the workload files share (wl_common.h): result rows from a histogram, the untimed fill. Called by
 * workloads.c, wl_reads.c and wl_churn.c; it calls none of them. */
#include "wl_common.h"

void wl_emit_hist(const wl_ctx *c, const char *wl, unsigned threads, const hist *h, uint64_t ops, double secs)
{
    const char *sys = c->s->name;
    res_emit(c->csv, sys, wl, threads, "mops", (double)ops / secs / 1e6);
    res_emit(c->csv, sys, wl, threads, "ops", (double)ops);
    res_emit(c->csv, sys, wl, threads, "p50_ns", (double)hist_quantile(h, 0.50));
    res_emit(c->csv, sys, wl, threads, "p99_ns", (double)hist_quantile(h, 0.99));
    res_emit(c->csv, sys, wl, threads, "p999_ns", (double)hist_quantile(h, 0.999));
    res_emit(c->csv, sys, wl, threads, "max_ns", (double)h->max);
    res_emit(c->csv, sys, wl, threads, "mean_ns", h->count ? (double)h->sum / (double)h->count : 0);
}

int wl_fill(const sys_ops *s, void *db, uint64_t from, uint64_t to, uint64_t seed)
{
    void *tc = s->thread_enter(db);
    uint8_t key[KEY_LEN];
    int rc = 0;
    if (s->bulk)
        s->bulk(db, tc, 1);
    for (uint64_t i = from; i < to && rc == 0; i++) {
        key_of(seed, KEY_PRESENT, i, key);
        rc = s->insert(db, tc, key, val_of(i));
    }
    if (s->bulk)
        s->bulk(db, tc, 0);
    s->thread_exit(db, tc);
    return rc;
}
