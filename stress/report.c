/*
 * report.c — progress line, result tables, scalability table, JSON.
 *
 * Numbers in tables are scaled for reading (812.3k ops/s, 1.93us); the JSON carries raw numbers (ops/s as
 * a float, latencies in nanoseconds) so scripts never parse units.
 */
#include "report.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double pcts[] = {0.50, 0.90, 0.99, 0.999};
static const char *const pct_label[] = {"p50", "p90", "p99", "p99.9"};
static const char *const pct_json[] = {"p50", "p90", "p99", "p99_9"};
#define NPCT 4

/* ---- formatting ---- */

static const char *fmt_rate(double v, char *buf, size_t len)
{
    if (v < 1e3)
        snprintf(buf, len, "%.0f", v);
    else if (v < 1e6)
        snprintf(buf, len, "%.1fk", v / 1e3);
    else if (v < 1e9)
        snprintf(buf, len, "%.2fM", v / 1e6);
    else
        snprintf(buf, len, "%.2fG", v / 1e9);
    return buf;
}

static const char *fmt_ns(double ns, char *buf, size_t len)
{
    if (ns < 1e3)
        snprintf(buf, len, "%.0fns", ns);
    else if (ns < 1e4)
        snprintf(buf, len, "%.2fus", ns / 1e3);
    else if (ns < 1e6)
        snprintf(buf, len, "%.1fus", ns / 1e3);
    else if (ns < 1e9)
        snprintf(buf, len, "%.2fms", ns / 1e6);
    else
        snprintf(buf, len, "%.2fs", ns / 1e9);
    return buf;
}

static const char *fmt_bytes(double b, char *buf, size_t len)
{
    if (b < 1024)
        snprintf(buf, len, "%.0f B", b);
    else if (b < 1024.0 * 1024)
        snprintf(buf, len, "%.1f KiB", b / 1024);
    else if (b < 1024.0 * 1024 * 1024)
        snprintf(buf, len, "%.1f MiB", b / (1024.0 * 1024));
    else
        snprintf(buf, len, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    return buf;
}

void process_rss(int pid, uint64_t *rss, uint64_t *peak)
{
    *rss = *peak = 0;
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/status", pid);
    else
        snprintf(path, sizeof path, "/proc/self/status");
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
            *rss = kb * 1024;
        else if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
            *peak = kb * 1024;
    }
    fclose(f);
}

static void threads_desc(const struct run *run, char *buf, size_t len)
{
    if (run->nmixed)
        snprintf(buf, len, "%u mixed thread%s", run->nmixed, run->nmixed == 1 ? "" : "s");
    else
        snprintf(buf, len, "%u reader%s + %u writer%s", run->nreaders, run->nreaders == 1 ? "" : "s",
                 run->nwriters, run->nwriters == 1 ? "" : "s");
}

/* Operation kinds this run does: in the mix, and done by some thread of this run's roles. */
static bool op_active(const struct run *run, int k)
{
    if (!run->o->mix[k])
        return false;
    if (run->nmixed)
        return true;
    return op_is_read(k) ? run->nreaders > 0 : run->nwriters > 0;
}

/* ---- progress ---- */

static void progress_snapshot(const struct run *run, struct progress *p, struct hist_snap *into)
{
    memset(into, 0, OP_N * sizeof *into);
    for (uint32_t t = 0; t < run->nthreads; t++)
        for (int k = 0; k < OP_N; k++) {
            hist_snapshot(&run->w[t]->hist[k], p->tmp);
            hist_snap_add(&into[k], p->tmp);
        }
}

int progress_init(struct progress *p, const struct run *run)
{
    memset(p, 0, sizeof *p);
    p->prev = calloc(OP_N, sizeof *p->prev);
    p->cur = calloc(OP_N, sizeof *p->cur);
    p->tmp = calloc(1, sizeof *p->tmp);
    p->interval = calloc(1, sizeof *p->interval);
    p->tty = isatty(STDERR_FILENO);
    if (!(p->prev && p->cur && p->tmp && p->interval)) {
        progress_free(p);
        return -1;
    }
    /* The histograms are not empty in a later --crash-cycles round: rates count from here. */
    progress_snapshot(run, p, p->prev);
    return 0;
}

void progress_free(struct progress *p)
{
    free(p->prev);
    free(p->cur);
    free(p->tmp);
    free(p->interval);
}

void progress_tick(struct run *run, struct progress *p, uint64_t start_ns, uint64_t now)
{
    progress_snapshot(run, p, p->cur);
    if (!p->prev_ns)
        p->prev_ns = start_ns;
    double dt = (double)(now - p->prev_ns) / 1e9;
    if (dt <= 0)
        dt = 1e-9;

    char line[512], a[32], b[32], c[32], e[32];
    size_t used = 0;
    uint64_t total = 0;
    memset(p->interval, 0, sizeof *p->interval);
    struct hist_snap *diff = p->tmp;
    for (int k = 0; k < OP_N; k++) {
        hist_snap_diff(&p->cur[k], &p->prev[k], diff);
        hist_snap_add(p->interval, diff);
        total += diff->n;
    }
    if (run->o->crash_cycles > 1)
        used += (size_t)snprintf(line + used, sizeof line - used, "round %u ", run->cycle + 1);
    used += (size_t)snprintf(line + used, sizeof line - used, "[%5.1fs] %7s ops/s ",
                             (double)(now - start_ns) / 1e9, fmt_rate((double)total / dt, a, sizeof a));
    static const char *const short_name[OP_N] = {"get", "read", "gbat", "ins", "upd", "del", "aref", "uref"};
    for (int k = 0; k < OP_N && used < sizeof line; k++) {
        if (!op_active(run, k))
            continue;
        uint64_t n = p->cur[k].n >= p->prev[k].n ? p->cur[k].n - p->prev[k].n : 0;
        used += (size_t)snprintf(line + used, sizeof line - used, " %s %s", short_name[k],
                                 fmt_rate((double)n / dt, a, sizeof a));
    }
    bm_stats st;
    bm_get_stats(run->map, &st);
    if (used < sizeof line)
        snprintf(line + used, sizeof line - used, " | p99 %s p99.9 %s max %s | %s entries, %" PRIu64 " grows",
                 fmt_ns(hist_quantile(p->interval, 0.99), a, sizeof a),
                 fmt_ns(hist_quantile(p->interval, 0.999), b, sizeof b), fmt_ns((double)p->interval->max, c, sizeof c),
                 fmt_rate((double)st.entries, e, sizeof e), st.index_grows + st.data_grows);
    if (p->tty) {
        fprintf(stderr, "\r%s\033[K", line);
        atomic_store(&run->progress_dirty, 1);
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
    memcpy(p->prev, p->cur, OP_N * sizeof *p->cur);
    p->prev_ns = now;
}

void progress_finish(struct run *run, struct progress *p)
{
    (void)p;
    if (atomic_exchange(&run->progress_dirty, 0))
        fputc('\n', stderr);
}

/* ---- text ---- */

static void table_row(const char *name, const struct hist_snap *h, double secs)
{
    char rate[32], mean[32], v[NPCT + 1][32];
    for (int i = 0; i < NPCT; i++)
        fmt_ns(hist_quantile(h, pcts[i]), v[i], sizeof v[i]);
    fmt_ns((double)h->max, v[NPCT], sizeof v[NPCT]);
    printf("%-8s %12" PRIu64 " %10s %9s %9s %9s %9s %9s %9s\n", name, h->n,
           fmt_rate(secs > 0 ? (double)h->n / secs : 0, rate, sizeof rate), fmt_ns(hist_mean(h), mean, sizeof mean),
           v[0], v[1], v[2], v[3], v[NPCT]);
}

static bool run_failed(const struct run *run) { return atomic_load(&run->mismatches) != 0; }

static void verify_text(const struct report_info *ri, const struct run *run)
{
    const struct options *o = ri->o;
    char a[32], b[32];
    if (!o->verify) {
        printf("verify    off (--no-verify)\n");
        return;
    }
    uint64_t reads = run->reads_exact + run->reads_window;
    uint64_t mism = atomic_load(&run->mismatches);
    char c[32];
    printf("verify    %s: %s reads checked, %s of them overlapped a write of their key; %s writes checked\n",
           mism ? "FAILED" : "OK", fmt_rate((double)reads, a, sizeof a),
           fmt_rate((double)run->reads_window, c, sizeof c), fmt_rate((double)run->writes_checked, b, sizeof b));
    if (o->fault != FAULT_NONE)
        printf("          --inject-fault %s: %" PRIu64 " faults injected (the checks must report them)\n",
               fault_name[o->fault], run->faults_injected);
    if (run->final_done)
        printf("          final check of all %" PRIu64 " keys: %" PRIu64 " present; bm_count %" PRIu64
               ", bm_foreach %" PRIu64 "%s\n",
               o->keys, run->final_present, run->final_count, run->final_foreach,
               mism ? "" : ", all values exact, bm_verify clean");
    if (run->restart_done && run->crashed)
        printf("          crash: workers' process SIGKILLed %u time%s, each %.2f s into its timed phase; every\n"
               "          recovery checked every key (the last reopen took %.2f ms); %" PRIu64 " write%s in flight\n"
               "          at the kills: %" PRIu64 " found applied, the rest not\n",
               run->cycle, run->cycle == 1 ? "" : "s", o->crash_after, run->reopen_ms, run->cs->inflight,
               run->cs->inflight == 1 ? " was" : "s were", run->cs->inflight_applied);
    else if (run->restart_done)
        printf("          restart: closed, reopened in %.2f ms, every key checked again\n", run->reopen_ms);
    if (mism)
        printf("          %" PRIu64 " mismatch%s (the first %u are listed on stderr and below)\n", mism,
               mism == 1 ? "" : "es", run->n_fail_msgs);
    for (uint32_t i = 0; i < run->n_fail_msgs; i++)
        printf("          - %s\n", run->fail_msgs[i]);
}

static void map_text(const struct run *run)
{
    const bm_stats *s = &run->stats;
    char a[32], b[32], c[32];
    if (run->crashed)
        printf("map       (as reopened after the crash: the grow counters start again at open)\n");
    printf("%s%" PRIu64 " entries, %" PRIu64 " buckets with files; grows: %" PRIu64 " index (%" PRIu64
           " retried larger), %" PRIu64 " data, %" PRIu64 " failed, %s growing\n",
           run->crashed ? "          " : "map       ", s->entries, s->buckets_allocated, s->index_grows,
           s->index_failed_grows, s->data_grows, s->grow_errors,
           fmt_ns((double)s->grow_ns, a, sizeof a));
    uint64_t disk = s->index_bytes + s->data_bytes;
    printf("          %" PRIu64 " files: index %s + data %s = %s", s->files,
           fmt_bytes((double)s->index_bytes, a, sizeof a), fmt_bytes((double)s->data_bytes, b, sizeof b),
           fmt_bytes((double)disk, c, sizeof c));
    if (s->entries)
        printf(", %.1f bytes/entry", (double)disk / (double)s->entries);
    printf("; %.1f%% of %" PRIu64 " index slots used; %" PRIu64 " reader retries\n",
           s->index_capacity ? 100.0 * (double)s->entries / (double)s->index_capacity : 0, s->index_capacity,
           s->reader_retries);
    if (s->flushes)
        printf("          %" PRIu64 " flushes (%" PRIu64 " files synced) in %s\n", s->flushes, s->files_flushed,
               fmt_ns((double)s->flush_ns, a, sizeof a));
}

static void run_text(const struct report_info *ri, const struct run *run)
{
    const struct options *o = ri->o;
    char thr[64], a[32], b[32];
    threads_desc(run, thr, sizeof thr);
    printf("\n%s, %.2f s%s\n", thr, run->elapsed_s, run->interrupted ? " (interrupted)" : "");
    printf("%-8s %12s %10s %9s %9s %9s %9s %9s %9s\n", "op", "count", "ops/s", "mean", pct_label[0], pct_label[1],
           pct_label[2], pct_label[3], "max");
    for (int k = 0; k < OP_N; k++)
        if (op_active(run, k))
            table_row(op_name[k], &run->op_hist[k], run->elapsed_s);
    table_row("all", run->all_hist, run->elapsed_s);
    printf("\n");
    if (run->prefill_keys)
        printf("prefill   %" PRIu64 " keys (%u%%) in %.2f s, before timing\n", run->prefill_keys, o->prefill_pct,
               run->prefill_s);
    verify_text(ri, run);
    if (run->lib_err)
        printf("error     %s\n", run->lib_err_msg);
    map_text(run);
    printf("process   RSS %s (peak %s)%s\n", fmt_bytes((double)run->rss, a, sizeof a),
           fmt_bytes((double)run->rss_peak, b, sizeof b),
           run->crashed ? " of the workers' process before the kill" : "");
}

static uint32_t sweep_value(const struct options *o, const struct run *run)
{
    return o->sweep == SWEEP_THREADS ? run->nmixed : o->sweep == SWEEP_READERS ? run->nreaders : run->nwriters;
}

static void sweep_text(const struct report_info *ri)
{
    const struct options *o = ri->o;
    char a[32];
    const struct run *base = ri->runs[0];
    for (uint32_t i = 0; i < ri->n_runs; i++)
        if (sweep_value(o, ri->runs[i]) == 1) {
            base = ri->runs[i];
            break;
        }
    double base_rate = base->elapsed_s > 0 ? (double)base->all_hist->n / base->elapsed_s : 0;
    printf("\nscalability: --sweep %s, fresh map per point; throughput in Mops/s; speedup vs %s=%u\n",
           sweep_name[o->sweep], sweep_name[o->sweep], sweep_value(o, base));
    printf("%7s %8s %8s", sweep_name[o->sweep], "total", "speedup");
    for (int k = 0; k < OP_N; k++)
        if (o->mix[k])
            printf(" %7s", op_name[k]);
    printf(" %9s %9s  %s\n", "get p99", "read p99", "verify");
    for (uint32_t i = 0; i < ri->n_runs; i++) {
        const struct run *r = ri->runs[i];
        double secs = r->elapsed_s > 0 ? r->elapsed_s : 1;
        double rate = (double)r->all_hist->n / secs;
        printf("%7u %8.3f %7.2fx", sweep_value(o, r), rate / 1e6, base_rate > 0 ? rate / base_rate : 0);
        for (int k = 0; k < OP_N; k++)
            if (o->mix[k])
                printf(" %7.3f", (double)r->op_hist[k].n / secs / 1e6);
        printf(" %9s", r->op_hist[OP_GET].n ? fmt_ns(hist_quantile(&r->op_hist[OP_GET], 0.99), a, sizeof a) : "-");
        printf(" %9s", r->op_hist[OP_READ].n ? fmt_ns(hist_quantile(&r->op_hist[OP_READ], 0.99), a, sizeof a) : "-");
        printf("  %s\n", !o->verify ? "off" : run_failed(r) ? "FAILED" : r->lib_err ? "error" : "OK");
    }
}

void report_text(const struct report_info *ri)
{
    const struct options *o = ri->o;
    char mix[160], thr[64];
    options_mix_string(o, mix, sizeof mix);
    printf("bm-stress (%s)  seed %" PRIu64 "\n", ri->variant, o->seed);
    if (o->crash_after > 0)
        printf("run       %u x (%.1f s, SIGKILL, recover)", o->crash_cycles, o->crash_after);
    else if (o->ops)
        printf("run       %" PRIu64 " operations in total", o->ops);
    else
        printf("run       %.1f s per point", o->duration_s);
    if (ri->n_runs == 1) {
        threads_desc(ri->runs[0], thr, sizeof thr);
        printf(", %s", thr);
    }
    printf("\nworkload  %" PRIu64 " keys, %s", o->keys, o->dist == DIST_ZIPF ? "zipf" : "uniform");
    if (o->dist == DIST_ZIPF)
        printf(" (theta %.3g)", o->theta);
    printf(", values of %u", o->len_min);
    if (o->len_max != o->len_min)
        printf("-%u", o->len_max);
    printf(" x %u-byte elements, prefill %u%%\n          mix %s\n", o->elem_size, o->prefill_pct, mix);
    printf("map       ");
    if (o->buckets)
        printf("%u buckets", o->buckets);
    else
        printf("default buckets (256)");
    if (o->max_search)
        printf(", max_search %u", o->max_search);
    printf(", %s%s%s%s\n", ri->drive_desc, o->restart ? ", restart file " : " (temporary map)",
           o->restart ? o->restart : "", o->no_prealloc ? ", no prealloc" : "");

    if (o->sweep == SWEEP_NONE) {
        for (uint32_t i = 0; i < ri->n_runs; i++)
            run_text(ri, ri->runs[i]);
    } else {
        sweep_text(ri);
        for (uint32_t i = 0; i < ri->n_runs; i++) {
            const struct run *r = ri->runs[i];
            if (run_failed(r) || r->lib_err)
                run_text(ri, r);
        }
        printf("\nlast point:\n");
        const struct run *last = ri->runs[ri->n_runs - 1];
        verify_text(ri, last);
        map_text(last);
    }
    printf("timing    every op timed with clock_gettime(CLOCK_MONOTONIC) at %.1f ns per call (one call's cost is\n"
           "          inside each latency); percentiles are histogram bucket midpoints (within 0.8%%), max is "
           "exact\n",
           ri->timer_ns);
    if (ri->exit_status == 1)
        printf("RESULT    FAILED: verification found mismatches\n");
    else if (ri->exit_status == 2)
        printf("RESULT    ERROR: library error\n");
}

/* ---- JSON ---- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_hist(FILE *f, const struct hist_snap *h, double secs)
{
    fprintf(f, "{\"count\": %" PRIu64 ", \"ops_per_s\": %.1f, \"latency_ns\": {\"mean\": %.1f", h->n,
            secs > 0 ? (double)h->n / secs : 0, hist_mean(h));
    for (int i = 0; i < NPCT; i++)
        fprintf(f, ", \"%s\": %.1f", pct_json[i], hist_quantile(h, pcts[i]));
    fprintf(f, ", \"max\": %" PRIu64 "}}", h->max);
}

static void json_run(FILE *f, const struct report_info *ri, const struct run *r)
{
    const struct options *o = ri->o;
    const bm_stats *s = &r->stats;
    fprintf(f, "    {\"mixed\": %u, \"readers\": %u, \"writers\": %u, \"threads\": %u, \"elapsed_s\": %.4f, "
               "\"interrupted\": %s,\n",
            r->nmixed, r->nreaders, r->nwriters, r->nthreads, r->elapsed_s, r->interrupted ? "true" : "false");
    fprintf(f, "     \"prefill\": {\"keys\": %" PRIu64 ", \"seconds\": %.4f},\n", r->prefill_keys, r->prefill_s);
    fprintf(f, "     \"ops\": {");
    bool first = true;
    for (int k = 0; k < OP_N; k++) {
        if (!op_active(r, k))
            continue;
        fprintf(f, "%s\n       \"%s\": ", first ? "" : ",", op_name[k]);
        json_hist(f, &r->op_hist[k], r->elapsed_s);
        first = false;
    }
    fprintf(f, ",\n       \"all\": ");
    json_hist(f, r->all_hist, r->elapsed_s);
    fprintf(f, "},\n");
    uint64_t disk = s->index_bytes + s->data_bytes;
    fprintf(f,
            "     \"map\": {\"entries\": %" PRIu64 ", \"buckets_allocated\": %" PRIu64 ", \"index_grows\": %" PRIu64
            ", \"index_failed_grows\": %" PRIu64 ", \"data_grows\": %" PRIu64 ", \"grow_errors\": %" PRIu64
            ", \"grow_ns\": %" PRIu64 ", \"files\": %" PRIu64 ", \"index_bytes\": %" PRIu64 ", \"data_bytes\": %" PRIu64
            ", \"index_capacity\": %" PRIu64 ", \"data_cells_used\": %" PRIu64 ", \"flushes\": %" PRIu64
            ", \"flush_ns\": %" PRIu64 ", \"files_flushed\": %" PRIu64 ", \"reader_retries\": %" PRIu64
            ", \"bytes_per_entry\": %.2f},\n",
            s->entries, s->buckets_allocated, s->index_grows, s->index_failed_grows, s->data_grows, s->grow_errors,
            s->grow_ns, s->files, s->index_bytes, s->data_bytes, s->index_capacity, s->data_cells_used, s->flushes,
            s->flush_ns, s->files_flushed, s->reader_retries, s->entries ? (double)disk / (double)s->entries : 0);
    fprintf(f, "     \"process\": {\"rss_bytes\": %" PRIu64 ", \"peak_rss_bytes\": %" PRIu64 "},\n", r->rss,
            r->rss_peak);
    uint64_t mism = atomic_load(&r->mismatches);
    fprintf(f,
            "     \"verify\": {\"enabled\": %s, \"ok\": %s, \"reads_exact\": %" PRIu64
            ", \"reads_overlapped\": %" PRIu64 ", \"writes_checked\": %" PRIu64 ", \"mismatches\": %" PRIu64
            ", \"final_check\": %s, \"present\": %" PRIu64
            ", \"bm_count\": %" PRIu64 ", \"foreach_visited\": %" PRIu64 ", \"restart_checked\": %s",
            o->verify ? "true" : "false", o->verify && !mism ? "true" : "false", r->reads_exact, r->reads_window,
            r->writes_checked, mism, r->final_done ? "true" : "false", r->final_present, r->final_count,
            r->final_foreach, r->restart_done ? "true" : "false");
    if (r->restart_done)
        fprintf(f, ", \"reopen_ms\": %.3f", r->reopen_ms);
    if (r->crashed)
        fprintf(f, ", \"crash\": {\"kills\": %u, \"after_s\": %.3f, \"inflight\": %" PRIu64
                   ", \"inflight_applied\": %" PRIu64 "}",
                r->cycle, o->crash_after, r->cs->inflight, r->cs->inflight_applied);
    if (o->fault != FAULT_NONE) {
        fprintf(f, ", \"inject_fault\": ");
        json_str(f, fault_name[o->fault]);
        fprintf(f, ", \"faults_injected\": %" PRIu64, r->faults_injected);
    }
    fprintf(f, ", \"failures\": [");
    for (uint32_t i = 0; i < r->n_fail_msgs; i++) {
        fputs(i ? ", " : "", f);
        json_str(f, r->fail_msgs[i]);
    }
    fprintf(f, "]},\n     \"library_error\": ");
    if (r->lib_err)
        json_str(f, r->lib_err_msg);
    else
        fputs("null", f);
    fprintf(f, "}");
}

void report_json(const struct report_info *ri)
{
    const struct options *o = ri->o;
    FILE *f = stdout;
    char mix[160];
    options_mix_string(o, mix, sizeof mix);
    fprintf(f, "{\n  \"tool\": \"bm-stress\",\n  \"variant\": ");
    json_str(f, ri->variant);
    fprintf(f, ",\n  \"config\": {\"seed\": %" PRIu64 ", \"duration_s\": %.3f, \"crash_after_s\": %.3f"
               ", \"crash_cycles\": %u, \"ops\": %" PRIu64 ", \"keys\": %" PRIu64
               ", \"dist\": \"%s\", \"theta\": %.4f, \"value_len_min\": %u, \"value_len_max\": %u, \"elem_size\": %u"
               ", \"mix\": ",
            o->seed, o->duration_s, o->crash_after, o->crash_cycles, o->ops, o->keys,
            o->dist == DIST_ZIPF ? "zipf" : "uniform", o->theta, o->len_min,
            o->len_max, o->elem_size);
    json_str(f, mix);
    fprintf(f, ", \"prefill_pct\": %u, \"buckets\": %u, \"max_search\": %u, \"flush_ms\": %u, \"no_prealloc\": %s"
               ", \"verify\": %s, \"drives\": ",
            o->prefill_pct, o->buckets, o->max_search, o->flush_ms, o->no_prealloc ? "true" : "false",
            o->verify ? "true" : "false");
    json_str(f, ri->drive_desc);
    fprintf(f, ", \"restart\": ");
    if (o->restart)
        json_str(f, o->restart);
    else
        fputs("null", f);
    fprintf(f, "},\n  \"timer_ns_per_call\": %.2f,\n  \"runs\": [\n", ri->timer_ns);
    for (uint32_t i = 0; i < ri->n_runs; i++) {
        json_run(f, ri, ri->runs[i]);
        fputs(i + 1 < ri->n_runs ? ",\n" : "\n", f);
    }
    fprintf(f, "  ]");
    if (o->sweep != SWEEP_NONE && ri->n_runs) {
        const struct run *base = ri->runs[0];
        for (uint32_t i = 0; i < ri->n_runs; i++)
            if (sweep_value(o, ri->runs[i]) == 1) {
                base = ri->runs[i];
                break;
            }
        double base_rate = base->elapsed_s > 0 ? (double)base->all_hist->n / base->elapsed_s : 0;
        fprintf(f, ",\n  \"sweep\": {\"param\": \"%s\", \"points\": [", sweep_name[o->sweep]);
        for (uint32_t i = 0; i < ri->n_runs; i++) {
            const struct run *r = ri->runs[i];
            double rate = r->elapsed_s > 0 ? (double)r->all_hist->n / r->elapsed_s : 0;
            fprintf(f, "%s\n    {\"value\": %u, \"ops_per_s\": %.1f, \"speedup\": %.4f, \"get_p99_ns\": %.1f, "
                       "\"read_p99_ns\": %.1f, \"ops_per_s_by_kind\": {",
                    i ? "," : "", sweep_value(o, r), rate, base_rate > 0 ? rate / base_rate : 0,
                    hist_quantile(&r->op_hist[OP_GET], 0.99), hist_quantile(&r->op_hist[OP_READ], 0.99));
            bool first = true;
            for (int k = 0; k < OP_N; k++) {
                if (!op_active(r, k))
                    continue;
                fprintf(f, "%s\"%s\": %.1f", first ? "" : ", ", op_name[k],
                        r->elapsed_s > 0 ? (double)r->op_hist[k].n / r->elapsed_s : 0);
                first = false;
            }
            fprintf(f, "}}");
        }
        fprintf(f, "\n  ]}");
    }
    fprintf(f, ",\n  \"status\": \"%s\",\n  \"exit_status\": %d\n}\n",
            ri->exit_status == 0 ? "ok" : ri->exit_status == 1 ? "verification_failed" : "error", ri->exit_status);
}
