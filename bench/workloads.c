/* One system through the workloads: workload 1 fills a fresh store (timed, one insert at a time),
 * workloads 2, 3, 5 and 8 read that store, workload 6 closes and reopens it; workload 4 then runs on fresh
 * stores of its own (default shard count, then the small one), since it changes the contents; workload 7
 * (systems with a flush) times one flush right after N inserts and one after U random updates, on a fresh
 * store of its own so that workload 6's close still finds workload 1's writes unflushed.
 *
 * Calls go one way: workloads.c -> wl_reads.c, wl_churn.c -> wl_common.c (what they share). */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/clock.h"
#include "wl_common.h"

#define VERIFY_KEYS 1000u /* keys checked after workload 1 and after a reopen */

/* Gets VERIFY_KEYS spread-out keys of [0, n) and one absent key; 0 when all are right. */
static int verify(const wl_ctx *c, const char *when)
{
    void *tc = c->s->thread_enter(c->db);
    uint8_t key[KEY_LEN];
    int bad = 0;
    for (uint64_t j = 0; j < VERIFY_KEYS && !bad; j++) {
        uint64_t i = j * c->n / VERIFY_KEYS, v = 0;
        key_of(c->o->seed, KEY_PRESENT, i, key);
        int rc = c->s->get(c->db, tc, key, &v);
        if (rc != SYS_FOUND || v != val_of(i)) {
            fprintf(stderr, "%s %s: key %llu: rc %d, value %llu\n", c->s->name, when, (unsigned long long)i, rc,
                    (unsigned long long)v);
            bad = 1;
        }
    }
    key_of(c->o->seed, KEY_ABSENT, 7, key);
    uint64_t v;
    if (!bad && c->s->get(c->db, tc, key, &v) != SYS_ABSENT) {
        fprintf(stderr, "%s %s: an absent key was found\n", c->s->name, when);
        bad = 1;
    }
    c->s->thread_exit(c->db, tc);
    return bad ? -1 : 0;
}

/* Workload 1: N single-threaded inserts of new keys, every one timed; then the bytes on disk per key. */
static int w1_insert(wl_ctx *c)
{
    void *tc = c->s->thread_enter(c->db);
    uint8_t key[KEY_LEN];
    hist h;
    hist_init(&h);
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < c->o->n; i++) {
        key_of(c->o->seed, KEY_PRESENT, i, key);
        uint64_t s = now_ns();
        int rc = c->s->insert(c->db, tc, key, val_of(i));
        hist_add(&h, now_ns() - s);
        if (rc != 0) {
            fprintf(stderr, "%s w1_insert: key %llu: %s\n", c->s->name, (unsigned long long)i, c->s->strerror(rc));
            c->s->thread_exit(c->db, tc);
            return -1;
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    c->s->thread_exit(c->db, tc);
    c->n = c->o->n;
    wl_emit_hist(c, "w1_insert", 1, &h, c->o->n, secs);
    sys_info in;
    c->s->info(c->db, &in);
    if (in.has_entries && in.entries != c->n) {
        fprintf(stderr, "%s w1_insert: %llu entries after %llu inserts\n", c->s->name,
                (unsigned long long)in.entries, (unsigned long long)c->n);
        return -1;
    }
    if (in.has_disk) {
        res_emit(c->csv, c->s->name, "w1_insert", 1, "disk_bytes", (double)in.disk_bytes);
        res_emit(c->csv, c->s->name, "w1_insert", 1, "bytes_per_entry", (double)in.disk_bytes / (double)c->n);
    }
    if (in.has_grows)
        res_emit(c->csv, c->s->name, "w1_insert", 1, "grows", (double)in.grows);
    return verify(c, "after w1_insert");
}

/* Workload 6: close (durable: workload 1's writes are unflushed), reopen, first get (cold: the first touch
 * of the reopened mapping), 1000 verified gets, then close again with nothing written since the reopen
 * (close_idle_ms: what a read-only user's close costs) and reopen once more for the caller. */
static int w6_reopen(wl_ctx *c, const sys_cfg *cfg)
{
    char err[200] = "";
    if (!c->s->reopenable(c->db, err, sizeof err)) {
        res_emit_text(c->csv, c->s->name, "w6_reopen", 1, "na", err);
        return 0;
    }
    uint64_t t0 = now_ns();
    c->s->close(c->db);
    uint64_t t1 = now_ns();
    c->db = NULL;
    sys_cfg rc_cfg = *cfg;
    rc_cfg.reopen = 1;
    int rc = c->s->open(&rc_cfg, &c->db, err, sizeof err);
    uint64_t t2 = now_ns();
    if (rc != 0) {
        fprintf(stderr, "%s w6_reopen: %s\n", c->s->name, err);
        c->db = NULL;
        return -1;
    }
    void *tc = c->s->thread_enter(c->db);
    uint8_t key[KEY_LEN];
    uint64_t i = c->n / 3, v = 0;
    key_of(c->o->seed, KEY_PRESENT, i, key);
    uint64_t t3 = now_ns();
    rc = c->s->get(c->db, tc, key, &v);
    uint64_t t4 = now_ns();
    c->s->thread_exit(c->db, tc);
    if (rc != SYS_FOUND || v != val_of(i)) {
        fprintf(stderr, "%s w6_reopen: first get of key %llu: rc %d\n", c->s->name, (unsigned long long)i, rc);
        return -1;
    }
    res_emit(c->csv, c->s->name, "w6_reopen", 1, "close_ms", (double)(t1 - t0) / 1e6);
    res_emit(c->csv, c->s->name, "w6_reopen", 1, "reopen_ms", (double)(t2 - t1) / 1e6);
    res_emit(c->csv, c->s->name, "w6_reopen", 1, "first_get_us", (double)(t4 - t3) / 1e3);
    res_emit(c->csv, c->s->name, "w6_reopen", 1, "reopen_first_get_ms", (double)(t2 - t1 + t4 - t3) / 1e6);
    if (verify(c, "after reopen"))
        return -1;
    uint64_t t5 = now_ns();
    c->s->close(c->db);
    uint64_t t6 = now_ns();
    c->db = NULL;
    res_emit(c->csv, c->s->name, "w6_reopen", 1, "close_idle_ms", (double)(t6 - t5) / 1e6);
    if (c->s->open(&rc_cfg, &c->db, err, sizeof err) != 0) {
        fprintf(stderr, "%s w6_reopen: second reopen: %s\n", c->s->name, err);
        c->db = NULL;
        return -1;
    }
    return 0;
}

/* Workload 7: a fresh store (no background flusher), N inserts untimed (one per call for bucketmap; LMDB
 * commits them in batches, which leaves the same pages dirty), then one timed flush; then U upserts of
 * random present keys with a new value, one timed flush, and a check that those keys read the new value. */
static int w7_flush(const sys_ops *s, const bench_opts *o, FILE *csv, const char *dir)
{
    sys_cfg cfg = {.dir = dir, .n_hint = o->n};
    char err[200] = "";
    void *db;
    if (s->open(&cfg, &db, err, sizeof err) != 0) {
        fprintf(stderr, "%s w7_flush: open: %s\n", s->name, err);
        return -1;
    }
    int rc = wl_fill(s, db, 0, o->n, o->seed);
    if (rc != 0) {
        fprintf(stderr, "%s w7_flush: fill: %s\n", s->name, s->strerror(rc));
        s->close(db);
        return -1;
    }
    sys_info i0, i1, i2;
    s->info(db, &i0);
    uint64_t t0 = now_ns();
    rc = s->flush(db);
    uint64_t t1 = now_ns();
    s->info(db, &i1);
    if (rc != 0) {
        fprintf(stderr, "%s w7_flush: flush after fill: %s\n", s->name, s->strerror(rc));
        s->close(db);
        return -1;
    }
    const uint64_t upd_mask = 0xa5a5a5a5a5a5a5a5ull;
    void *tc = s->thread_enter(db);
    uint8_t key[KEY_LEN];
    uint64_t rng = o->seed ^ 0x7777, idx[64];
    for (unsigned u = 0; u < o->w7_updates && rc == 0; u++) {
        uint64_t i = rng_below(&rng, o->n);
        if (u < 64)
            idx[u] = i;
        key_of(o->seed, KEY_PRESENT, i, key);
        rc = s->insert(db, tc, key, val_of(i) ^ upd_mask);
    }
    s->thread_exit(db, tc);
    uint64_t t2 = now_ns();
    if (rc == 0)
        rc = s->flush(db);
    uint64_t t3 = now_ns();
    s->info(db, &i2);
    if (rc != 0) {
        fprintf(stderr, "%s w7_flush: updates or flush after updates: %s\n", s->name, s->strerror(rc));
        s->close(db);
        return -1;
    }
    tc = s->thread_enter(db);
    unsigned checked = o->w7_updates < 64 ? o->w7_updates : 64;
    for (unsigned u = 0; u < checked && rc == 0; u++) {
        uint64_t v = 0;
        key_of(o->seed, KEY_PRESENT, idx[u], key);
        if (s->get(db, tc, key, &v) != SYS_FOUND || v != (val_of(idx[u]) ^ upd_mask)) {
            fprintf(stderr, "%s w7_flush: key %llu does not read its updated value\n", s->name,
                    (unsigned long long)idx[u]);
            rc = -1;
        }
    }
    s->thread_exit(db, tc);
    if (rc == 0) {
        res_emit(csv, s->name, "w7_flush", 1, "keys", (double)o->n);
        res_emit(csv, s->name, "w7_flush", 1, "fill_flush_ms", (double)(t1 - t0) / 1e6);
        res_emit(csv, s->name, "w7_flush", 1, "updates", (double)o->w7_updates);
        res_emit(csv, s->name, "w7_flush", 1, "upd_flush_ms", (double)(t3 - t2) / 1e6);
        if (i0.has_flushes && i1.has_flushes && i2.has_flushes) {
            res_emit(csv, s->name, "w7_flush", 1, "fill_flush_files", (double)(i1.files_flushed - i0.files_flushed));
            res_emit(csv, s->name, "w7_flush", 1, "upd_flush_files", (double)(i2.files_flushed - i1.files_flushed));
        }
    }
    s->close(db);
    return rc;
}

/* Workload 8: batched gets of present keys, 1 thread, and their rate over the single gets of workload 2 at
 * 1 thread on the same store in the same run (w2_1t_mops; measured here first when workload 2 did not run). */
static int w8_get_batch(const wl_ctx *c, double w2_1t_mops)
{
    if (!c->s->get_batch) {
        res_emit_text(c->csv, c->s->name, "w8_get_batch", 1, "na", "no batched get");
        return 0;
    }
    if (w2_1t_mops <= 0) {
        fprintf(stderr, "  %s: workload 2, 1 thread (the single-get rate workload 8 is compared with)\n", c->s->name);
        if ((w2_1t_mops = wl_reads(c, RD_UNIFORM, 1)) < 0)
            return -1;
    }
    fprintf(stderr, "  %s: workload 8 (batches of %u keys, 1 thread)\n", c->s->name, c->o->batch);
    double mops = wl_reads(c, RD_BATCH, 1);
    if (mops < 0)
        return -1;
    res_emit(c->csv, c->s->name, "w8_get_batch", 1, "ratio_w2", mops / w2_1t_mops);
    res_emit(c->csv, c->s->name, "w8_get_batch", 1, "keys", (double)c->n);
    fprintf(stderr, "  %s: w8 %.3f M keys/s = %.2fx w2's %.3f M gets/s\n", c->s->name, mops, mops / w2_1t_mops,
            w2_1t_mops);
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int make_dir(char *out, size_t len, const bench_opts *o, const sys_ops *s, const char *what)
{
    snprintf(out, len, "%s/%s-%s", o->scratch, s->name, what);
    rm_tree(out);
    if (mkdir(out, 0755) != 0) {
        fprintf(stderr, "mkdir %s: %s\n", out, strerror(errno));
        return -1;
    }
    return 0;
}

int run_system(const sys_ops *s, const bench_opts *o, FILE *csv)
{
    char dir[PATH_MAX], err[200] = "";
    int rc = 0;
    unsigned want = o->workloads;
    if (want & (1u << 1 | 1u << 2 | 1u << 3 | 1u << 5 | 1u << 6 | 1u << 8)) {
        if (make_dir(dir, sizeof dir, o, s, "main") != 0)
            return -1;
        sys_cfg cfg = {.dir = dir, .n_hint = o->n};
        wl_ctx c = {.s = s, .o = o, .csv = csv};
        if (s->open(&cfg, &c.db, err, sizeof err) != 0) {
            fprintf(stderr, "%s: open: %s\n", s->name, err);
            return -1;
        }
        if (want & 1u << 1) {
            fprintf(stderr, "  %s: workload 1 (insert %llu)\n", s->name, (unsigned long long)o->n);
            rc = w1_insert(&c);
        } else {
            rc = wl_fill(s, c.db, 0, o->n, o->seed);
            c.n = o->n;
        }
        static const struct { unsigned w; int mode; } reads[] = {{2, RD_UNIFORM}, {3, RD_ABSENT}, {5, RD_ZIPF}};
        double w2_1t = 0;
        for (unsigned r = 0; r < 3 && rc == 0; r++) {
            if (!(want & 1u << reads[r].w))
                continue;
            for (unsigned t = 0; t < o->n_threads && rc == 0; t++) {
                fprintf(stderr, "  %s: workload %u, %u thread(s)\n", s->name, reads[r].w, o->threads[t]);
                double mops = wl_reads(&c, reads[r].mode, o->threads[t]);
                rc = mops < 0 ? -1 : 0;
                if (reads[r].mode == RD_UNIFORM && o->threads[t] == 1)
                    w2_1t = mops;
            }
        }
        if (rc == 0 && (want & 1u << 8))
            rc = w8_get_batch(&c, w2_1t);
        if (rc == 0 && (want & 1u << 6)) {
            fprintf(stderr, "  %s: workload 6 (close, reopen, first get)\n", s->name);
            rc = w6_reopen(&c, &cfg);
        }
        if (c.db)
            s->close(c.db);
        rm_tree(dir);
    }
    if (rc == 0 && (want & 1u << 4)) {
        static const char *const names[2] = {"w4_churn", "w4_churn16"};
        for (unsigned k = 0; k < 2 && rc == 0; k++) {
            uint32_t buckets = k ? o->w4_buckets : 0;
            /* Only a sharded system has a second configuration to run. */
            if (k && strcmp(s->name, "bucketmap") && strcmp(s->name, "rwlock"))
                break;
            fprintf(stderr, "  %s: workload 4 (%s buckets, %u reader(s) + 1 writer)\n", s->name,
                    k ? "few" : "default", o->w4_readers);
            if (make_dir(dir, sizeof dir, o, s, names[k]) != 0)
                return -1;
            rc = wl_churn(s, o, csv, dir, buckets, names[k]);
            rm_tree(dir);
        }
    }
    if (rc == 0 && (want & 1u << 7) && s->flush) {
        fprintf(stderr, "  %s: workload 7 (flush after %llu inserts, after %u updates)\n", s->name,
                (unsigned long long)o->n, o->w7_updates);
        if (make_dir(dir, sizeof dir, o, s, "flush") != 0)
            return -1;
        rc = w7_flush(s, o, csv, dir);
        rm_tree(dir);
    }
    return rc;
}
