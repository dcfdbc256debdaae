#include "report.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"

static const char *const systems[] = {"bucketmap", "bucketmap-tmp", "rwlock", "rwlock-tmp", "lfht", "lmdb", "lmdb-wmap"};
#define N_SYS (sizeof systems / sizeof systems[0])
static const char *const wls[] = {"w1_insert", "w2_get", "w3_absent", "w5_zipf", "w8_get_batch", "w4_churn",
                                  "w4_churn16"};
#define N_WL (sizeof wls / sizeof wls[0])

static FILE *open_in(const char *dir, const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f)
        perror(p);
    return f;
}

/* Thread counts present for (sys, wl), ascending, deduplicated. */
static unsigned thread_counts(const res_set *rs, const char *sys, const char *wl, unsigned *out, unsigned max)
{
    unsigned n = 0;
    for (size_t i = 0; i < rs->n; i++) {
        const res_row *r = &rs->rows[i];
        if (strcmp(r->metric, "mops") || strcmp(r->sys, sys) || strcmp(r->wl, wl))
            continue;
        unsigned j = 0;
        while (j < n && out[j] != r->threads)
            j++;
        if (j == n && n < max)
            out[n++] = r->threads;
    }
    for (unsigned a = 1; a < n; a++)
        for (unsigned b = a; b > 0 && out[b - 1] > out[b]; b--) {
            unsigned t = out[b];
            out[b] = out[b - 1], out[b - 1] = t;
        }
    return n;
}

static void us(FILE *out, double ns)
{
    if (isnan(ns))
        fprintf(out, " %9s", "-");
    else
        fprintf(out, " %9.2f", ns / 1e3);
}

static void print_table(const res_set *rs, FILE *out, FILE *wide)
{
    fprintf(out, "%-13s %-12s %3s %8s %9s %9s %9s %9s %9s  %s\n", "system", "workload", "T", "Mops/s", "p50 us",
            "p99 us", "p99.9 us", "max us", "stall us", "notes");
    if (wide)
        fprintf(wide, "system,workload,threads,mops,p50_us,p99_us,p999_us,max_us,stall_us,writer_ops\n");
    for (unsigned w = 0; w < N_WL; w++)
        for (unsigned s = 0; s < N_SYS; s++) {
            unsigned th[16];
            unsigned nt = thread_counts(rs, systems[s], wls[w], th, 16);
            for (unsigned k = 0; k < nt; k++) {
                const char *sy = systems[s], *wl = wls[w];
                double v[6] = {res_get(rs, sy, wl, th[k], "mops"),      res_get(rs, sy, wl, th[k], "p50_ns"),
                               res_get(rs, sy, wl, th[k], "p99_ns"),    res_get(rs, sy, wl, th[k], "p999_ns"),
                               res_get(rs, sy, wl, th[k], "max_ns"),    res_get(rs, sy, wl, th[k], "stall_ns")};
                fprintf(out, "%-13s %-12s %3u %8.3f", sy, wl, th[k], v[0]);
                for (int i = 1; i < 6; i++)
                    us(out, v[i]);
                double wops = res_get(rs, sy, wl, th[k], "writer_ops");
                double bpe = res_get(rs, sy, wl, th[k], "bytes_per_entry");
                double grows = res_get(rs, sy, wl, th[k], "grows");
                fprintf(out, " ");
                if (!isnan(wops))
                    fprintf(out, " writer %.0f ops/s", wops);
                if (!isnan(bpe))
                    fprintf(out, " %.1f B/entry", bpe);
                if (!isnan(grows))
                    fprintf(out, " %.0f grows", grows);
                double batch = res_get(rs, sy, wl, th[k], "batch");
                if (!isnan(batch))
                    fprintf(out, " M keys/s, batches of %.0f (latency per batch); %.2fx w2 1 thread", batch,
                            res_get(rs, sy, wl, th[k], "ratio_w2"));
                double fms = res_get(rs, sy, wl, th[k], "flush_ms");
                if (!isnan(fms))
                    fprintf(out, fms > 0 ? " flusher %.0f ms: %.0f flushes" : " no flusher",
                            fms, res_get(rs, sy, wl, th[k], "flushes"));
                fprintf(out, "\n");
                if (wide)
                    fprintf(wide, "%s,%s,%u,%.4f,%.3f,%.3f,%.3f,%.3f,%.3f,%.0f\n", sy, wl, th[k], v[0], v[1] / 1e3,
                            v[2] / 1e3, v[3] / 1e3, v[4] / 1e3, v[5] / 1e3, wops);
            }
        }
    for (unsigned s = 0; s < N_SYS; s++) {
        const res_row *na = res_find(rs, systems[s], "w8_get_batch", 1, "na");
        if (na)
            fprintf(out, "%-13s %-12s    n/a: %s\n", systems[s], "w8_get_batch", na->text);
    }
    for (unsigned s = 0; s < N_SYS; s++) {
        const res_row *na = res_find(rs, systems[s], "w6_reopen", 1, "na");
        double ro = res_get(rs, systems[s], "w6_reopen", 1, "reopen_ms");
        if (na)
            fprintf(out, "%-13s %-11s     n/a: %s\n", systems[s], "w6_reopen", na->text);
        else if (!isnan(ro))
            fprintf(out,
                    "%-13s %-11s     close %.2f ms, reopen %.3f ms, first get %.1f us (reopen + first get %.3f "
                    "ms), close with nothing dirty %.3f ms\n",
                    systems[s], "w6_reopen", res_get(rs, systems[s], "w6_reopen", 1, "close_ms"), ro,
                    res_get(rs, systems[s], "w6_reopen", 1, "first_get_us"),
                    res_get(rs, systems[s], "w6_reopen", 1, "reopen_first_get_ms"),
                    res_get(rs, systems[s], "w6_reopen", 1, "close_idle_ms"));
    }
}

/* Workload 7: one flush right after N inserts, one after U random updates (systems with a flush). */
static void print_flush_table(const res_set *rs, FILE *out)
{
    int any = 0;
    for (unsigned s = 0; s < N_SYS; s++) {
        const char *sy = systems[s];
        double a = res_get(rs, sy, "w7_flush", 1, "fill_flush_ms");
        if (isnan(a))
            continue;
        if (!any++)
            fprintf(out, "\nWorkload 7: cost of one flush (bucketmap: bm_flush; lmdb: mdb_env_sync(force)), no "
                         "background flusher\n%-11s %22s %7s %22s %7s\n",
                    "system", "after N inserts (ms)", "files", "after U updates (ms)", "files");
        double fa = res_get(rs, sy, "w7_flush", 1, "fill_flush_files");
        double fb = res_get(rs, sy, "w7_flush", 1, "upd_flush_files");
        fprintf(out, "%-11s %22.2f", sy, a);
        if (isnan(fa))
            fprintf(out, " %7s", "-");
        else
            fprintf(out, " %7.0f", fa);
        fprintf(out, " %22.2f", res_get(rs, sy, "w7_flush", 1, "upd_flush_ms"));
        if (isnan(fb))
            fprintf(out, " %7s", "-");
        else
            fprintf(out, " %7.0f", fb);
        fprintf(out, "   (N = %.0f, U = %.0f)\n", res_get(rs, sy, "w7_flush", 1, "keys"),
                res_get(rs, sy, "w7_flush", 1, "updates"));
    }
}

/* One target line: ratio (or value) against a bound, and whether it is met. */
static void target(FILE *out, const char *what, double v, int at_least, double bound, const char *unit)
{
    if (isnan(v)) {
        fprintf(out, "  %-58s %10s   (target %s %g%s)  NOT MEASURED\n", what, "-", at_least ? ">=" : "<=", bound, unit);
        return;
    }
    int met = at_least ? v >= bound : v <= bound;
    fprintf(out, "  %-58s %9.3g%s  (target %s %g%s)  %s", what, v, unit, at_least ? ">=" : "<=", bound, unit,
            met ? "met" : "MISSED");
    if (!met)
        fprintf(out, " by %.2fx", at_least ? bound / v : v / bound);
    fprintf(out, "\n");
}

static void print_targets(const res_set *rs, FILE *out)
{
    double b1 = res_get(rs, "bucketmap", "w2_get", 1, "mops");
    fprintf(out, "\nTargets (issue 4), from this one run:\n");
    target(out, "w2 1 thread: bucketmap / rwlock ablation (Mops/s)", b1 / res_get(rs, "rwlock", "w2_get", 1, "mops"),
           1, 1.3, "x");
    target(out, "w2 1 thread: bucketmap / lmdb (Mops/s)", b1 / res_get(rs, "lmdb", "w2_get", 1, "mops"), 1, 3, "x");
    target(out, "w2 bucketmap: 2 threads / 1 thread (Mops/s)", res_get(rs, "bucketmap", "w2_get", 2, "mops") / b1, 1,
           1.9, "x");
    unsigned th[4];
    unsigned r = thread_counts(rs, "bucketmap", "w4_churn16", th, 4) ? th[0] : 1;
    double p = res_get(rs, "bucketmap", "w4_churn16", r, "p999_ns");
    target(out, "w4 16 buckets: bucketmap reader p99.9 (us)", p / 1e3, 0, 2, "");
    target(out, "w4 16 buckets: reader p99.9 bucketmap / rwlock", p / res_get(rs, "rwlock", "w4_churn16", r, "p999_ns"),
           0, 0.1, "x");
    target(out, "w4 16 buckets: reader Mops/s bucketmap / rwlock",
           res_get(rs, "bucketmap", "w4_churn16", r, "mops") / res_get(rs, "rwlock", "w4_churn16", r, "mops"), 1, 1.5,
           "x");
    target(out, "w4 16 buckets: longest stall bucketmap / rwlock",
           res_get(rs, "bucketmap", "w4_churn16", r, "stall_ns") / res_get(rs, "rwlock", "w4_churn16", r, "stall_ns"),
           0, 0.1, "x");
    target(out, "w4 default buckets: bucketmap reader p99.9 (us)",
           res_get(rs, "bucketmap", "w4_churn", r, "p999_ns") / 1e3, 0, 2, "");
    target(out, "w1 insert: bucketmap / lmdb (Mops/s)",
           res_get(rs, "bucketmap", "w1_insert", 1, "mops") / res_get(rs, "lmdb", "w1_insert", 1, "mops"), 1, 2, "x");
    target(out, "bytes on disk per entry, bucketmap", res_get(rs, "bucketmap", "w1_insert", 1, "bytes_per_entry"), 0,
           72, "");
    fprintf(out, "  (lmdb: %.1f bytes per entry; keys: %.0f)\n",
            res_get(rs, "lmdb", "w1_insert", 1, "bytes_per_entry"), res_get(rs, "bucketmap", "w1_insert", 1, "ops"));

    /* Issue 7 (persistent map on the ext4 scratch, N = 1M); w4 runs with the background flusher. */
    fprintf(out, "\nTargets (issue 7), from this one run:\n");
    target(out, "w1 insert: bucketmap / lmdb-wmap (Mops/s)",
           res_get(rs, "bucketmap", "w1_insert", 1, "mops") / res_get(rs, "lmdb-wmap", "w1_insert", 1, "mops"), 1, 2,
           "x");
    static const char *const w4[2] = {"w4_churn16", "w4_churn"};
    static const char *const w4name[2] = {"w4 16 buckets", "w4 default bkts"};
    for (unsigned k = 0; k < 2; k++) {
        char what[96];
        unsigned t4[4];
        unsigned rr = thread_counts(rs, "bucketmap", w4[k], t4, 4) ? t4[0] : 1;
        double fms = res_get(rs, "bucketmap", w4[k], rr, "flush_ms");
        snprintf(what, sizeof what, "%s, flusher %s: reader p99.9 (us)", w4name[k],
                 isnan(fms) ? "?" : fms > 0 ? "on" : "OFF");
        target(out, what, res_get(rs, "bucketmap", w4[k], rr, "p999_ns") / 1e3, 0, 2, "");
        snprintf(what, sizeof what, "%s: longest stall bucketmap / rwlock", w4name[k]);
        target(out, what,
               res_get(rs, "bucketmap", w4[k], rr, "stall_ns") / res_get(rs, "rwlock", w4[k], rr, "stall_ns"), 0,
               0.1, "x");
    }
    if (isnan(res_get(rs, "bucketmap", "w7_flush", 1, "fill_flush_ms")))
        fprintf(out, "  bm_flush after N inserts and after 1000 random updates (workload 7)  NOT MEASURED\n");
    else
        fprintf(out, "  bm_flush right after %.0f inserts: %.2f ms; after %.0f random updates: %.2f ms (no target)\n",
                res_get(rs, "bucketmap", "w7_flush", 1, "keys"),
                res_get(rs, "bucketmap", "w7_flush", 1, "fill_flush_ms"),
                res_get(rs, "bucketmap", "w7_flush", 1, "updates"),
                res_get(rs, "bucketmap", "w7_flush", 1, "upd_flush_ms"));

    fprintf(out, "\nTargets (issue 9), from this one run:\n");
    double w1 = res_get(rs, "bucketmap", "w1_insert", 1, "mops");
    target(out, "w1 insert: bucketmap-tmp / lfht (Mops/s)",
           res_get(rs, "bucketmap-tmp", "w1_insert", 1, "mops") / res_get(rs, "lfht", "w1_insert", 1, "mops"), 1, 1.5,
           "x");
    target(out, "w1 insert: bucketmap / lmdb-wmap (Mops/s)", w1 / res_get(rs, "lmdb-wmap", "w1_insert", 1, "mops"), 1,
           2, "x");
    target(out, "bytes on disk per entry: bucketmap / lmdb-wmap",
           res_get(rs, "bucketmap", "w1_insert", 1, "bytes_per_entry") /
               res_get(rs, "lmdb-wmap", "w1_insert", 1, "bytes_per_entry"),
           0, 1, "x");
    double g1 = res_get(rs, "bucketmap", "w2_get", 1, "mops");
    target(out, "w2 1 thread: bucketmap (M gets/s)", g1, 1, 6, "");
    target(out, "w2 1 thread: bucketmap / rwlock ablation", g1 / res_get(rs, "rwlock", "w2_get", 1, "mops"), 1, 1.5,
           "x");
    target(out, "w2 bucketmap: 2 threads / 1 thread", res_get(rs, "bucketmap", "w2_get", 2, "mops") / g1, 1, 1.9, "x");
    char what[96];
    snprintf(what, sizeof what, "w8 at %.0f keys: bm_get_batch / bm_get (10M bound)",
             res_get(rs, "bucketmap", "w8_get_batch", 1, "keys"));
    target(out, what, res_get(rs, "bucketmap", "w8_get_batch", 1, "ratio_w2"), 1, 3, "x");
    target(out, "w6: bucketmap clean reopen + first get (ms)",
           res_get(rs, "bucketmap", "w6_reopen", 1, "reopen_first_get_ms"), 0, 1, "");
    target(out, "w6: bucketmap close with nothing dirty (ms)", res_get(rs, "bucketmap", "w6_reopen", 1, "close_idle_ms"),
           0, 5, "");
}

static void write_dat(const res_set *rs, const char *dir)
{
    FILE *f = open_in(dir, "w2_threads.dat");
    if (f) {
        unsigned th[16], nt = thread_counts(rs, "bucketmap", "w2_get", th, 16);
        fprintf(f, "threads");
        for (unsigned s = 0; s < N_SYS; s++)
            fprintf(f, " %s", systems[s]);
        fprintf(f, "\n");
        for (unsigned k = 0; k < nt; k++) {
            fprintf(f, "%u", th[k]);
            for (unsigned s = 0; s < N_SYS; s++) {
                double v = res_get(rs, systems[s], "w2_get", th[k], "mops");
                fprintf(f, isnan(v) ? " NaN" : " %.4f", v);
            }
            fprintf(f, "\n");
        }
        fclose(f);
    }
    f = open_in(dir, "w4_latency.dat");
    if (f) {
        fprintf(f, "# label p50_us p99_us p999_us max_us stall_us (reader latency under workload 4)\n");
        static const char *const w4[2] = {"w4_churn", "w4_churn16"};
        for (unsigned k = 0; k < 2; k++)
            for (unsigned s = 0; s < N_SYS; s++) {
                unsigned th[4];
                if (!thread_counts(rs, systems[s], w4[k], th, 4))
                    continue;
                fprintf(f, "\"%s%s\"", systems[s], k ? " 16b" : "");
                static const char *const m[5] = {"p50_ns", "p99_ns", "p999_ns", "max_ns", "stall_ns"};
                for (unsigned i = 0; i < 5; i++)
                    fprintf(f, " %.4f", res_get(rs, systems[s], w4[k], th[0], m[i]) / 1e3);
                fprintf(f, "\n");
            }
        fclose(f);
    }
}

int report(const char *csv_path, const char *dir, FILE *out)
{
    res_set rs;
    if (res_load(csv_path, &rs) != 0) {
        perror(csv_path);
        return -1;
    }
    FILE *wide = dir ? open_in(dir, "table.csv") : NULL;
    const res_row *m = res_find(&rs, "machine", "info", 0, "timer_ns");
    if (m)
        fprintf(out, "(timer pair cost %.0f ns, included in every latency below)\n", m->v);
    print_table(&rs, out, wide);
    if (wide)
        fclose(wide);
    print_flush_table(&rs, out);
    print_targets(&rs, out);
    if (dir)
        write_dat(&rs, dir);
    res_free(&rs);
    return 0;
}
