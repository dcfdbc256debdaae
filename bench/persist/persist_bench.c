/*
 * bm-persist-bench: the persistence issue's numbers, each as a ratio measured in the same run.
 *   1. reopen time (clean close -> first successful bm_get) for N entries, and the time bm_close takes
 *      when nothing was written since the open;
 *   2. syncing 1,000 dirty mapped files over 4 drive directories: one io_uring batch of fsyncs vs a plain
 *      loop of msync(MS_SYNC) over the same files (the engine's design choice, measured in isolation),
 *      plus bm_flush of a real map with ~1,000 dirty files;
 *   3. insert throughput of a persistent map with the background flusher on vs off (and a temporary map).
 * Usage: bm-persist-bench [--n N] [--buckets B (1024)] [--dir DIR] [--skip-reopen | --only-reopen]
 */
#include <bucketmap.h>

#include "support/rng.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Key i (support/rng.h splitmix_key, the same keys in every persistence bench). */
static bm_key key_of(uint64_t i)
{
    bm_key k;
    splitmix_key(i, k.bytes);
    return k;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "%s: %s\n", what, bm_strerror(err));
    exit(2);
}

static void rm_tree(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
}

static char *mkdir_in(const char *base, const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", base, name);
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        perror(p);
        exit(2);
    }
    return p;
}

/* Inserts n keys (1 element of 8 bytes) into a map; returns Mops/s. */
static double fill(bm_map *m, uint64_t n)
{
    double t0 = now();
    for (uint64_t i = 0; i < n; i++) {
        bm_key k = key_of(i);
        int err = bm_insert(m, &k, &i, 1, 1);
        if (err)
            die("bm_insert", err);
    }
    return n / (now() - t0) / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Clean reopen -> first get, and bm_close of the reopened map with nothing written (nothing dirty), each
 * ROUNDS times: the best with the spread (max - min), since this machine is shared. */
#define ROUNDS 3

static void bench_reopen(const char *base, uint64_t n, uint32_t buckets)
{
    char *d = mkdir_in(base, "reopen");
    char rp[4200];
    snprintf(rp, sizeof(rp), "%s/restart", d);
    const char *drives[] = {d};
    bm_config cfg = {.elem_size = 8, .max_buckets = buckets, .drives = drives, .n_drives = 1, .restart_path = rp};
    bm_map *m;
    int err = bm_open(&cfg, &m);
    if (err)
        die("bm_open", err);
    double ins = fill(m, n);
    double t0 = now();
    bm_close(m);
    double tclose = now() - t0;
    bm_key k = key_of(n / 2);
    uint64_t v, count = 0;
    bm_stats st;
    double topen[ROUNDS], tget[ROUNDS], tidle[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        t0 = now();
        if ((err = bm_open(&cfg, &m)))
            die("reopen", err);
        double t1 = now();
        if ((err = bm_get(m, &k, &v, 1, NULL, NULL)) || v != n / 2)
            die("first get", err ? err : BM_ECORRUPT);
        double t2 = now();
        count = bm_count(m);
        bm_get_stats(m, &st);
        double t3 = now();
        bm_close(m); /* nothing written since the open */
        tidle[r] = now() - t3;
        topen[r] = t2 - t0;
        tget[r] = t2 - t1;
    }
    qsort(topen, ROUNDS, sizeof(double), cmp_double);
    qsort(tget, ROUNDS, sizeof(double), cmp_double);
    qsort(tidle, ROUNDS, sizeof(double), cmp_double);
    printf("reopen  %9" PRIu64 " entries  %4u buckets  %6" PRIu64 " files  insert %.2f Mops/s  close (flush) %.3f s  "
           "count after reopen %" PRIu64 "\n",
           n, buckets, st.files, ins, tclose, count);
    printf("reopen  clean reopen->first get %.3f ms (+%.3f; first get alone %.1f us)  close with nothing dirty "
           "%.3f ms (+%.3f)  [best of %d, +spread]\n",
           topen[0] * 1e3, (topen[ROUNDS - 1] - topen[0]) * 1e3, tget[0] * 1e6, tidle[0] * 1e3,
           (tidle[ROUNDS - 1] - tidle[0]) * 1e3, ROUNDS);
    /* Unclean: a process that wrote (one more key) is killed without closing; the next open replays and
     * scrubs every bucket (recovery.c) before it commits. */
    pid_t pid = fork();
    if (pid == 0) {
        bm_map *c;
        bm_key k2 = key_of(n);
        if (bm_open(&cfg, &c) || bm_insert(c, &k2, &n, 1, 1))
            _exit(2);
        kill(getpid(), SIGKILL);
    }
    int wst;
    waitpid(pid, &wst, 0);
    t0 = now();
    if ((err = bm_open(&cfg, &m)))
        die("unclean reopen", err);
    if ((err = bm_get(m, &k, &v, 1, NULL, NULL)) || v != n / 2)
        die("first get after an unclean shutdown", err ? err : BM_ECORRUPT);
    double tunclean = now() - t0;
    bm_get_stats(m, &st);
    printf("reopen  unclean (SIGKILL): reopen->first get %.1f ms (scrub of %" PRIu64 " buckets %.1f ms)  count %" PRIu64
           "\n",
           tunclean * 1e3, st.buckets_scrubbed, st.scrub_ns / 1e6, bm_count(m));
    bm_close(m);
    rm_tree(d);
    free(d);
}

#define NFILES 1000
#define NDRIVES 4
#define FILE_BYTES (64 * 1024)

static void dirty(uint8_t **maps, int round)
{
    for (int i = 0; i < NFILES; i++)
        for (int p = 0; p < FILE_BYTES; p += 16384)
            maps[i][p] = (uint8_t)(round + i + p);
}

static void bench_flush(const char *base)
{
    char *dirs[NDRIVES];
    static int fds[NFILES];
    static uint8_t *maps[NFILES];
    for (int d = 0; d < NDRIVES; d++) {
        char name[16];
        snprintf(name, sizeof(name), "drive%d", d);
        dirs[d] = mkdir_in(base, name);
    }
    for (int i = 0; i < NFILES; i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/f%d", dirs[i % NDRIVES], i);
        fds[i] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fds[i] < 0 || posix_fallocate(fds[i], 0, FILE_BYTES) != 0) {
            perror(path);
            exit(2);
        }
        maps[i] = mmap(NULL, FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
        if (maps[i] == MAP_FAILED) {
            perror("mmap");
            exit(2);
        }
    }
    struct io_uring ring;
    if (io_uring_queue_init(256, &ring, 0) != 0) {
        printf("flush   io_uring unavailable: skipped\n");
        return;
    }
    double best_loop = 1e9, best_ring = 1e9;
    for (int round = 0; round < 3; round++) {
        dirty(maps, 2 * round);
        double t0 = now();
        for (int i = 0; i < NFILES; i++)
            if (msync(maps[i], FILE_BYTES, MS_SYNC) != 0)
                perror("msync");
        double t = now() - t0;
        best_loop = t < best_loop ? t : best_loop;

        dirty(maps, 2 * round + 1);
        t0 = now();
        int queued = 0, done = 0;
        while (done < NFILES) {
            struct io_uring_sqe *sqe;
            while (queued < NFILES && (sqe = io_uring_get_sqe(&ring))) {
                io_uring_prep_fsync(sqe, fds[queued], 0);
                queued++;
            }
            io_uring_submit(&ring);
            struct io_uring_cqe *cqe;
            if (io_uring_wait_cqe(&ring, &cqe) == 0) {
                if (cqe->res < 0)
                    fprintf(stderr, "fsync: %s\n", strerror(-cqe->res));
                io_uring_cqe_seen(&ring, cqe);
                done++;
            }
        }
        t = now() - t0;
        best_ring = t < best_ring ? t : best_ring;
    }
    io_uring_queue_exit(&ring);
    printf("flush   %d dirty files on %d dirs (best of 3): msync loop %.1f ms, io_uring batch %.1f ms, "
           "ratio %.2fx\n",
           NFILES, NDRIVES, best_loop * 1e3, best_ring * 1e3, best_loop / best_ring);
    for (int i = 0; i < NFILES; i++) {
        munmap(maps[i], FILE_BYTES);
        close(fds[i]);
    }

    /* The library's own flush: a 1024-bucket map on the same 4 directories, one key per bucket written
     * between flushes, so every index file is dirty. */
    char rp[4200];
    snprintf(rp, sizeof(rp), "%s/restart", dirs[0]);
    bm_config cfg = {.elem_size = 8, .max_buckets = 1024, .drives = (const char *const *)dirs,
                     .n_drives = NDRIVES, .restart_path = rp};
    bm_map *m;
    int err = bm_open(&cfg, &m);
    if (err)
        die("bm_open", err);
    double best = 1e9;
    bm_stats st0, st1;
    for (int round = 0; round < 4; round++) {
        for (uint32_t b = 0; b < 1024; b++) {
            bm_key k = key_of(round);
            k.bytes[0] = (uint8_t)(b >> 2);
            k.bytes[1] = (uint8_t)(b << 6);
            uint64_t v = round;
            if ((err = bm_insert(m, &k, &v, 1, 1)))
                die("bm_insert", err);
        }
        bm_get_stats(m, &st0);
        double t0 = now();
        if ((err = bm_flush(m)))
            die("bm_flush", err);
        double t = now() - t0;
        bm_get_stats(m, &st1);
        if (round > 0 && t < best)
            best = t; /* round 0 also syncs file creation */
    }
    printf("flush   bm_flush of a 1024-bucket map on %d dirs: %" PRIu64 " files synced, best %.1f ms\n", NDRIVES,
           st1.files_flushed - st0.files_flushed, best * 1e3);
    bm_close(m);
    for (int d = 0; d < NDRIVES; d++) {
        rm_tree(dirs[d]);
        free(dirs[d]);
    }
}

static void bench_flusher(const char *base, uint64_t n)
{
    double r[3];
    for (int mode = 0; mode < 3; mode++) {
        char *d = mkdir_in(base, "flusher");
        char rp[4200];
        snprintf(rp, sizeof(rp), "%s/restart", d);
        const char *drives[] = {d};
        bm_config cfg = {.elem_size = 8, .max_buckets = 256, .drives = drives, .n_drives = 1};
        if (mode > 0)
            cfg.restart_path = rp;
        if (mode == 2)
            cfg.flush_interval_ms = 100;
        bm_map *m;
        int err = bm_open(&cfg, &m);
        if (err)
            die("bm_open", err);
        r[mode] = fill(m, n);
        bm_stats st;
        bm_get_stats(m, &st);
        bm_close(m);
        rm_tree(d);
        free(d);
        if (mode == 2)
            printf("insert  %" PRIu64 " keys: temporary %.2f, persistent %.2f, persistent + flusher(100 ms) %.2f "
                   "Mops/s (%" PRIu64 " background flushes); flusher on/off %.2fx\n",
                   n, r[0], r[1], r[2], st.flushes, r[2] / r[1]);
    }
}

int main(int argc, char **argv)
{
    uint64_t n = 1000000;
    const char *dir = NULL;
    int skip_reopen = 0, only_reopen = 0;
    uint32_t buckets = 1024;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--skip-reopen"))
            skip_reopen = 1;
        else if (!strcmp(argv[i], "--only-reopen"))
            only_reopen = 1;
        else if (!strcmp(argv[i], "--buckets") && i + 1 < argc)
            buckets = (uint32_t)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--n N] [--buckets B] [--dir DIR] [--skip-reopen | --only-reopen]\n",
                    argv[0]);
            return 2;
        }
    }
    char tmpl[] = "/tmp/bm-persist-bench-XXXXXX";
    char *base = dir ? (char *)dir : mkdtemp(tmpl);
    if (!base) {
        perror("mkdtemp");
        return 2;
    }
    if (!skip_reopen)
        bench_reopen(base, n, buckets);
    if (!only_reopen) {
        bench_flush(base);
        bench_flusher(base, n < 500000 ? n : 500000);
    }
    if (!dir)
        rm_tree(base);
    return 0;
}
