/* bm-bench / bm-bench-rwlock: runs the issue-4 workloads (and issue 7's flush costs) on the systems this binary
 * carries and appends result rows to a CSV (run mode), or turns such a CSV into the merged table and target
 * ratios (--report).
 * bench/run.sh runs both binaries into one CSV and then reports. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"
#include "support/clock.h" /* now_ns_pair_min */
#include "results.h"
#include "workloads.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bm-bench [options]            run workloads, append rows to --csv\n"
            "       bm-bench --report CSV [--out-dir DIR]   print table and target ratios\n"
            "  --systems LIST     comma-separated (default: %s)\n"
            "  --n N              keys (default 1000000)\n"
            "  --threads LIST     thread counts for workloads 2, 3, 5 (default 1,2)\n"
            "  --dur S            seconds per read run (default 2)\n"
            "  --w4-dur S         seconds per workload-4 run (default 5)\n"
            "  --w4-readers R     reader threads in workload 4 (default 1, plus the writer)\n"
            "  --w4-buckets B     shard count of workload 4's second run (default 16)\n"
            "  --w4-flush-ms MS   background flusher period in workload 4, systems that have one\n"
            "                     (default 1000; 0 = no flusher)\n"
            "  --w7-updates U     workload 7: random updates before the second timed flush (default 1000)\n"
            "  --bm-expected      bucketmap: pass the run's key count as bm_config.expected_entries (first index\n"
            "                     files sized for it; default: start small and grow)\n"
            "  --workloads LIST   subset of 1..8 (default all; 7 = flush after N inserts, after U updates;\n"
            "                     8 = batched gets, 1 thread, with its ratio to workload 2's single gets)\n"
            "  --batch K          workload 8: keys per batched get (default 32, at most %u)\n"
            "  --sample K         time every K-th get in workloads 2, 3, 5 (power of two, default 8)\n"
            "  --seed S           key seed\n"
            "  --scratch DIR      where the stores live (default: a new directory in $TMPDIR or /tmp)\n"
            "  --csv FILE         append result rows here (default: stdout)\n"
            "  --quick            smoke settings: --n 20000 --dur 0.1 --w4-dur 0.3\n",
            sys_default_list(), BATCH_MAX_KEYS);
}

typedef struct sys_run {
    const sys_ops *s;
    const bench_opts *o;
    FILE *csv;
    int rc;
} sys_run;

/* Each system runs on a thread of its own: bucketmap registers the threads that call it with liburcu-memb
 * itself, and cds_lfht's explicit registration of the same thread would then be a double registration. */
static void *sys_thread(void *p)
{
    sys_run *r = p;
    r->rc = run_system(r->s, r->o, r->csv);
    return NULL;
}

static unsigned parse_list(const char *s, unsigned *out, unsigned max)
{
    unsigned n = 0;
    while (*s && n < max) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v == 0 || v > 1024)
            return 0;
        out[n++] = (unsigned)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return 0;
    }
    return n;
}

int main(int argc, char **argv)
{
    bench_opts o = {.n = 1000000, .threads = {1, 2}, .n_threads = 2, .dur = 2, .w4_dur = 5, .w4_readers = 1,
                    .w4_buckets = 16, .w4_flush_ms = 1000, .w7_updates = 1000, .sample = 8,
                    .batch = 32, .seed = 0x6b75636b65746d61ull, .workloads = 0x1fe};
    const char *systems = sys_default_list(), *csv_path = NULL, *report_path = NULL, *out_dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int has = 1;
        if (!strcmp(a, "--quick")) {
            o.n = 20000, o.dur = 0.1, o.w4_dur = 0.3;
            has = 0;
        } else if (!strcmp(a, "--bm-expected")) {
            bench_bm_expected = 1;
            has = 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!v) {
            fprintf(stderr, "bm-bench: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--systems")) {
            systems = v;
        } else if (!strcmp(a, "--n")) {
            o.n = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--threads")) {
            o.n_threads = parse_list(v, o.threads, MAX_THREAD_COUNTS);
        } else if (!strcmp(a, "--dur")) {
            o.dur = atof(v);
        } else if (!strcmp(a, "--w4-dur")) {
            o.w4_dur = atof(v);
        } else if (!strcmp(a, "--w4-readers")) {
            o.w4_readers = (unsigned)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--w4-buckets")) {
            o.w4_buckets = (uint32_t)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--w4-flush-ms")) {
            o.w4_flush_ms = (uint32_t)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--w7-updates")) {
            o.w7_updates = (unsigned)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--workloads")) {
            unsigned w[8], n = parse_list(v, w, 8);
            o.workloads = 0;
            for (unsigned k = 0; k < n; k++)
                o.workloads |= w[k] <= 8 ? 1u << w[k] : 0;
            if (!o.workloads)
                o.workloads = 1; /* bit 0 alone: no valid workload, rejected below */
        } else if (!strcmp(a, "--batch")) {
            o.batch = (unsigned)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--sample")) {
            o.sample = (unsigned)strtoul(v, NULL, 10);
        } else if (!strcmp(a, "--seed")) {
            o.seed = strtoull(v, NULL, 0);
        } else if (!strcmp(a, "--scratch")) {
            o.scratch = v;
        } else if (!strcmp(a, "--csv")) {
            csv_path = v;
        } else if (!strcmp(a, "--report")) {
            report_path = v;
        } else if (!strcmp(a, "--out-dir")) {
            out_dir = v;
        } else {
            fprintf(stderr, "bm-bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        i += has;
    }
    if (report_path)
        return report(report_path, out_dir, stdout) == 0 ? 0 : 1;
    if (o.n < 1000 || o.n > UINT32_MAX || !o.n_threads || o.dur <= 0 || o.w4_dur <= 0 || !o.w4_readers ||
        !o.sample || (o.sample & (o.sample - 1)) || !o.batch || o.batch > BATCH_MAX_KEYS || (o.workloads & 1u) || (o.w4_buckets & (o.w4_buckets - 1))) {
        fprintf(stderr, "bm-bench: invalid option value (see --help)\n");
        return 2;
    }
    char scratch[] = "/tmp/bm-bench.XXXXXX";
    int own_scratch = !o.scratch;
    if (own_scratch) {
        const char *t = getenv("TMPDIR");
        static char buf[4096];
        snprintf(buf, sizeof buf, "%s/bm-bench.XXXXXX", t && *t ? t : "/tmp");
        o.scratch = mkdtemp(buf) ? buf : (mkdtemp(scratch) ? scratch : NULL);
        if (!o.scratch) {
            perror("mkdtemp");
            return 1;
        }
    }
    FILE *csv = csv_path ? fopen(csv_path, "a") : stdout;
    if (!csv) {
        perror(csv_path);
        return 1;
    }
    res_emit(csv, "machine", "info", 0, "timer_ns", (double)now_ns_pair_min());
    res_emit(csv, "machine", "info", 0, "cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
    int rc = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", systems);
    for (char *save, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        const sys_ops *s = sys_find(name);
        if (!s) {
            fprintf(stderr, "bm-bench: system %s is not in this binary (it has %s)\n", name, sys_default_list());
            rc = 2;
            continue;
        }
        fprintf(stderr, "%s:\n", s->name);
        sys_run r = {s, &o, csv, -1};
        pthread_t th;
        if (pthread_create(&th, NULL, sys_thread, &r) == 0)
            pthread_join(th, NULL);
        if (r.rc != 0) {
            fprintf(stderr, "bm-bench: %s FAILED\n", s->name);
            rc = 1;
        }
    }
    if (csv != stdout)
        fclose(csv);
    if (own_scratch)
        rmdir(o.scratch);
    return rc;
}
