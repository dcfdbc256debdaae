/*
 * bm-sync-probe: the writer half of issue 7's "no sync on the writer path" check (scripts/sync-probe.sh
 * runs it under perf and strace and counts the syncs of each phase).
 *
 * Opens a persistent map in DIR (restart file DIR/restart, no background flusher), inserts N new keys with
 * one bm_insert each and never calls bm_flush, then closes it (or, with --no-close, exits without closing:
 * nothing after the inserts then runs). Between phases it prints one marker line on stdout,
 *     PROBE <phase> mono_ns=<CLOCK_MONOTONIC ns> pid=<pid>
 * with phase open_begin, open_done, close_begin, close_done, so that a tracer can attribute each sync event
 * to open, to the writers (open_done .. close_begin) or to close. The markers go out with write(2) on an
 * unbuffered stdout, so strace sees them in order with the other system calls.
 * Usage: bm-sync-probe --dir DIR [--n N] [--buckets B] [--no-close]
 */
#include <bucketmap.h>

#include "support/rng.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void marker(const char *phase)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char line[160];
    int n = snprintf(line, sizeof line, "PROBE %s mono_ns=%" PRIu64 " pid=%ld\n", phase,
                     (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, (long)getpid());
    if (write(STDOUT_FILENO, line, (size_t)n) != n)
        _exit(3);
}

/* Key i (support/rng.h splitmix_key, the same keys in every persistence bench). */
static bm_key key_of(uint64_t i)
{
    bm_key k;
    splitmix_key(i, k.bytes);
    return k;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    uint64_t n = 1000000;
    uint32_t buckets = 0;
    int no_close = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--buckets") && i + 1 < argc)
            buckets = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--no-close"))
            no_close = 1;
        else {
            fprintf(stderr, "usage: bm-sync-probe --dir DIR [--n N] [--buckets B] [--no-close]\n");
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "bm-sync-probe: --dir is required\n");
        return 2;
    }
    char restart[PATH_MAX];
    snprintf(restart, sizeof restart, "%s/restart", dir);
    const char *drives[1] = {dir};
    bm_config c = {.elem_size = sizeof(uint64_t), .max_buckets = buckets, .drives = drives, .n_drives = 1,
                   .restart_path = restart, .flush_interval_ms = 0};
    bm_map *m;
    marker("open_begin");
    int rc = bm_open(&c, &m);
    if (rc != 0) {
        fprintf(stderr, "bm-sync-probe: bm_open %s: %s\n", dir, bm_strerror(rc));
        return 1;
    }
    marker("open_done");
    for (uint64_t i = 0; i < n; i++) {
        bm_key k = key_of(i);
        uint64_t v = i;
        rc = bm_insert(m, &k, &v, 1, 1);
        if (rc != 0) {
            fprintf(stderr, "bm-sync-probe: insert %" PRIu64 ": %s\n", i, bm_strerror(rc));
            return 1;
        }
    }
    bm_stats st;
    bm_get_stats(m, &st);
    marker("close_begin");
    fprintf(stderr, "bm-sync-probe: %" PRIu64 " keys, %" PRIu64 " index grows, %" PRIu64 " data grows, %" PRIu64
            " flushes before close\n", st.entries, st.index_grows, st.data_grows, st.flushes);
    if (no_close)
        _exit(0);
    bm_close(m);
    marker("close_done");
    return 0;
}
