/*
 * Lazy clean open (issue 9 part 5): a clean open reads the commit record and the manifest only; a bucket's
 * files are opened and checked when a call first touches the bucket (runtime/recovery.c), and a close
 * restamps and syncs only what was written since the files' stamps (runtime/checkpoint.c).
 *   - a reopened map opens no bucket, counts and stats come from the manifest, a get loads one bucket;
 *   - open / touch some buckets / close, many times, with and without writes: the checkpoints carry the
 *     untouched buckets' records unchanged, every key survives, and a round without writes changes no file
 *     (not even the restart file);
 *   - flushes and closes with a mix of loaded and unloaded buckets;
 *   - a stale copy of a file put back after a clean close is still refused, at its bucket's first touch;
 *   - a file that goes missing after the open: the touching call gets BM_EMISSING naming it, nothing is
 *     deleted, and a later commit keeps naming it (the next open refuses until it is back);
 *   - many threads touching unloaded buckets at once, readers and writers;
 *   - SIGKILL of a process that wrote to some buckets and left others unloaded, and of one that only read.
 */
#include "persist_util.h"

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>

#define NB 16u
#define NK 3000u

static uint64_t ver[NK + 2000], rcs[NK + 2000];
static bool present[NK + 2000];

static void put_ok(bm_map *m, uint32_t i, uint64_t v, uint64_t rc)
{
    int err = pu_put(m, i, v, rc);
    ck_assert_msg(err == 0, "put %u: %s", i, bm_strerror(err));
    ver[i] = v;
    rcs[i] = rc;
    present[i] = true;
}

static uint32_t bucket_of(uint32_t i)
{
    bm_key k = pu_key(i);
    return bm_bucket_of(&k, NB);
}

static void build(uint32_t n_drives)
{
    memset(present, 0, sizeof(present));
    bm_map *m = pu_open(n_drives, NB);
    for (uint32_t i = 0; i < NK; i++)
        put_ok(m, i, i, 1 + i % 5);
    bm_close(m);
}

static void check_all(bm_map *m, const char *when)
{
    uint64_t want = 0;
    for (uint32_t i = 0; i < NK + 2000; i++) {
        if (!present[i])
            continue;
        want++;
        int r = pu_check(m, i, ver[i], rcs[i]);
        ck_assert_msg(r == 0, "%s: key %u (bucket %u) %s", when, i, bucket_of(i), r > 0 ? "lost" : "wrong");
    }
    ck_assert_uint_eq(bm_count(m), want);
    pu_verify_clean(m, NULL);
}

static bm_stats stats(bm_map *m)
{
    bm_stats st;
    bm_get_stats(m, &st);
    return st;
}

/* A key of bucket b among the first NK. */
static uint32_t key_in(uint32_t b, uint32_t nth)
{
    for (uint32_t i = 0; i < NK; i++)
        if (bucket_of(i) == b && nth-- == 0)
            return i;
    ck_abort_msg("no key in bucket %u", b);
    return 0;
}

/* Every file of the map (restart file included) with its size and an FNV-1a hash of its bytes. */
static char *fingerprint(uint32_t n_drives)
{
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    out[0] = 0;
    for (uint32_t d = 0; d <= n_drives; d++) {
        const char *dirpath = d < n_drives ? pu_d[d] : pu_root;
        DIR *dir = opendir(dirpath);
        ck_assert_ptr_nonnull(dir);
        struct dirent *de;
        while ((de = readdir(dir))) {
            if (de->d_name[0] == '.' || (d == n_drives && strcmp(de->d_name, "restart")))
                continue;
            char p[1024];
            snprintf(p, sizeof(p), "%s/%s", dirpath, de->d_name);
            FILE *f = fopen(p, "rb");
            ck_assert_ptr_nonnull(f);
            uint64_t h = 0xcbf29ce484222325ull, n = 0;
            int c;
            while ((c = fgetc(f)) != EOF) {
                h = (h ^ (uint8_t)c) * 0x100000001b3ull;
                n++;
            }
            fclose(f);
            char line[1200];
            int l = snprintf(line, sizeof(line), "%s %" PRIu64 " %016" PRIx64 "\n", p, n, h);
            if (len + (size_t)l + 1 > cap)
                out = realloc(out, cap *= 2);
            memcpy(out + len, line, (size_t)l + 1);
            len += (size_t)l;
        }
        closedir(dir);
    }
    return out; /* readdir order is stable for an unchanged directory */
}

/* ---- a reopened map opens nothing until touched ---- */

START_TEST(t_open_loads_nothing)
{
    build(2);
    bm_map *m = pu_open(2, NB);
    bm_stats before = stats(m);
    ck_assert_uint_eq(before.buckets_unloaded, NB);
    ck_assert_uint_eq(before.buckets_allocated, NB);
    ck_assert_uint_eq(before.entries, NK);
    ck_assert_uint_eq(bm_count(m), NK);
    ck_assert_uint_eq(before.buckets_scrubbed, 0);
    /* One get loads exactly its bucket; the stats describe the same files either way. */
    uint32_t k = key_in(5, 0);
    ck_assert_int_eq(pu_check(m, k, ver[k], rcs[k]), 0);
    bm_stats after = stats(m);
    ck_assert_uint_eq(after.buckets_unloaded, NB - 1);
    ck_assert_uint_eq(after.files, before.files);
    ck_assert_uint_eq(after.index_bytes, before.index_bytes);
    ck_assert_uint_eq(after.data_bytes, before.data_bytes);
    ck_assert_uint_eq(after.index_capacity, before.index_capacity);
    ck_assert_uint_eq(after.data_cells_used, before.data_cells_used);
    /* A miss in an unloaded bucket loads it too (absence needs its index). */
    bm_key absent = pu_key(NK + 1999);
    ck_assert_int_eq(bm_get(m, &absent, NULL, 0, NULL, NULL), BM_ENOTFOUND);
    check_all(m, "reopened");
    ck_assert_uint_eq(stats(m).buckets_unloaded, 0);
    ck_assert_uint_eq(stats(m).bucket_load_errors, 0);
    bm_close(m);
}
END_TEST

/* bm_get_batch on a freshly reopened map loads the buckets its keys fall in (outside its read sections)
 * and answers exactly as bm_get does afterwards. */
START_TEST(t_batch_loads_buckets)
{
    build(2);
    bm_map *m = pu_open(2, NB);
    ck_assert_uint_eq(stats(m).buckets_unloaded, NB);
    enum { NQ = NK + 100 };
    static bm_key keys[NQ];
    static uint64_t out[NQ][PU_MAX_N], rc[NQ];
    static uint32_t n[NQ];
    static int status[NQ];
    for (uint32_t i = 0; i < NQ; i++)
        keys[i] = pu_key(i); /* the last 100 were never inserted */
    ck_assert_int_eq(bm_get_batch(m, keys, NQ, out, PU_MAX_N, n, rc, status), (int)NK);
    ck_assert_uint_eq(stats(m).buckets_unloaded, 0);
    for (uint32_t i = 0; i < NQ; i++) {
        uint64_t e[PU_MAX_N], r = 0;
        uint32_t en = 0;
        int want = bm_get(m, &keys[i], e, PU_MAX_N, &en, &r);
        ck_assert_int_eq(status[i], want);
        if (want)
            continue;
        ck_assert_uint_eq(n[i], en);
        ck_assert_uint_eq(rc[i], r);
        ck_assert_mem_eq(out[i], e, en * sizeof(uint64_t));
        ck_assert_int_eq(pu_check(m, i, ver[i], rcs[i]), 0);
    }
    bm_close(m);
}
END_TEST

/* ---- open / touch / close cycles: the manifest carries what was not loaded ---- */

START_TEST(t_cycles_carry_unloaded_buckets)
{
    build(3);
    for (uint32_t round = 0; round < 8; round++) {
        uint32_t b = (round * 5) % NB;
        bm_map *m = pu_open(3, NB);
        ck_assert_uint_eq(stats(m).buckets_unloaded, NB);
        if (round % 2) {
            /* writes to one bucket (a new value, a new key, a refcount, a delete) */
            uint32_t k0 = key_in(b, round), k1 = key_in(b, round + 1), k2 = key_in(b, round + 2);
            put_ok(m, k0, ver[k0] + 100, rcs[k0]);
            put_ok(m, NK + round, round, 3);
            bm_key k = pu_key(k1);
            uint64_t rc;
            ck_assert_int_eq(bm_addref(m, &k, &rc), 0);
            rcs[k1] = rc;
            k = pu_key(k2);
            ck_assert_int_eq(bm_delete(m, &k), 0);
            present[k2] = false;
        } else {
            uint32_t k = key_in(b, 0);
            ck_assert_int_eq(pu_check(m, k, ver[k], rcs[k]), 0);
        }
        bm_stats st = stats(m);
        ck_assert_uint_le(st.buckets_unloaded, NB - 1);
        ck_assert_uint_ge(st.buckets_unloaded, NB - 2);
        bm_close(m);
    }
    bm_map *m = pu_open(3, NB);
    check_all(m, "after 8 open/touch/close rounds");
    bm_close(m);
}
END_TEST

START_TEST(t_read_only_round_changes_no_file)
{
    build(2);
    /* One round with a write first, so the files carry this close's stamps. */
    bm_map *m = pu_open(2, NB);
    put_ok(m, 7, 77, 7);
    bm_close(m);
    char *before = fingerprint(2);
    for (int round = 0; round < 3; round++) {
        m = pu_open(2, NB);
        for (uint32_t i = round; i < NK; i += 7)
            ck_assert_int_eq(pu_check(m, i, ver[i], rcs[i]), 0);
        ck_assert_int_eq(bm_flush(m), 0); /* nothing written: the clean record stands */
        bm_close(m);
    }
    /* Every bucket touched, then closed: still nothing to write. */
    m = pu_open(2, NB);
    check_all(m, "read-only rounds");
    bm_close(m);
    char *after = fingerprint(2);
    ck_assert_msg(!strcmp(before, after), "a read-only open/close changed files:\nbefore:\n%s\nafter:\n%s", before,
                  after);
    free(before);
    free(after);
}
END_TEST

/* ---- flush and close with loaded and unloaded buckets ---- */

START_TEST(t_flush_close_mixed)
{
    build(2);
    bm_map *m = pu_open(2, NB);
    /* Buckets 0..5 written (some grow: many new keys), 6..NB-1 untouched. */
    for (uint32_t j = 0; j < 600; j++) {
        uint32_t i = NK + j;
        if (bucket_of(i) < 6)
            put_ok(m, i, j, 2);
    }
    ck_assert_int_eq(bm_flush(m), 0);
    ck_assert_uint_eq(stats(m).buckets_unloaded, NB - 6);
    for (uint32_t b = 0; b < 3; b++) {
        uint32_t k = key_in(b, 1);
        put_ok(m, k, ver[k] + 1, rcs[k]);
    }
    ck_assert_int_eq(bm_flush(m), 0);
    ck_assert_int_eq(bm_flush(m), 0); /* nothing new: the same manifest */
    bm_close(m);
    m = pu_open(2, NB);
    ck_assert_uint_eq(stats(m).buckets_unloaded, NB);
    ck_assert_uint_eq(stats(m).buckets_scrubbed, 0);
    check_all(m, "flushes and close with untouched buckets");
    /* Now with every bucket loaded, and a flush of nothing before the close. */
    ck_assert_int_eq(bm_flush(m), 0);
    put_ok(m, 11, 1011, 9);
    ck_assert_int_eq(bm_flush(m), 0);
    bm_close(m);
    m = pu_open(2, NB);
    check_all(m, "close after a flush with nothing dirty");
    bm_close(m);
}
END_TEST

/* ---- stale copies and missing files, found at first touch ---- */

static int count_fn(const bm_key *k, const bm_value *v, void *ctx)
{
    (void)k;
    (void)v;
    (*(uint64_t *)ctx)++;
    return 0;
}

/* The index file of bucket b in drives 0..n_drives-1 (the map's only one: it is closed). */
static void index_path(uint32_t n_drives, uint32_t b, char *out, size_t len)
{
    char tag[32];
    snprintf(tag, sizeof(tag), "-b%u-idx-", b);
    out[0] = 0;
    for (uint32_t d = 0; d < n_drives && !out[0]; d++) {
        DIR *dir = opendir(pu_d[d]);
        struct dirent *de;
        while ((de = readdir(dir)))
            if (strstr(de->d_name, tag) && strlen(pu_d[d]) + strlen(de->d_name) + 2 <= len)
                snprintf(out, len, "%.200s/%.200s", pu_d[d], de->d_name);
        closedir(dir);
    }
    ck_assert_msg(out[0], "no index file of bucket %u", b);
}

static void copy_file(const char *from, const char *to)
{
    static uint8_t buf[4 << 20];
    ssize_t n = pu_read_file(from, buf, sizeof(buf));
    ck_assert_int_gt(n, 0);
    ck_assert_int_lt(n, (ssize_t)sizeof(buf));
    pu_write_file(to, buf, (size_t)n);
}

START_TEST(t_stale_copy_found_at_touch)
{
    build(1);
    const uint32_t b = 3;
    char path[512], saved[600];
    index_path(1, b, path, sizeof(path));
    snprintf(saved, sizeof(saved), "%s/saved-index", pu_root);
    copy_file(path, saved);
    /* A refcount change rewrites an entry in place: the same file, new contents, restamped at close. */
    bm_map *m = pu_open(1, NB);
    uint32_t k = key_in(b, 0);
    bm_key key = pu_key(k);
    uint64_t rc;
    ck_assert_int_eq(bm_addref(m, &key, &rc), 0);
    rcs[k] = rc;
    bm_close(m);
    char now[512];
    index_path(1, b, now, sizeof(now));
    ck_assert_str_eq(now, path);
    /* Rounds that leave bucket b unloaded carry its record (and stamp) unchanged. */
    for (int round = 0; round < 3; round++) {
        m = pu_open(1, NB);
        uint32_t other = key_in((b + 1 + (uint32_t)round) % NB, 0);
        put_ok(m, other, ver[other] + 1, rcs[other]);
        bm_close(m);
    }
    char good[600];
    snprintf(good, sizeof(good), "%s/good-index", pu_root);
    copy_file(path, good);
    copy_file(saved, path); /* the stale copy put back */
    m = pu_open(1, NB);
    ck_assert_int_eq(bm_get(m, &key, NULL, 0, NULL, NULL), BM_ECORRUPT);
    ck_assert_int_eq(bm_addref(m, &key, &rc), BM_ECORRUPT);
    uint32_t other = key_in((b + 1) % NB, 0);
    ck_assert_int_eq(pu_check(m, other, ver[other], rcs[other]), 0);
    bm_verify_report rep;
    ck_assert_int_eq(bm_verify(m, &rep), BM_ECORRUPT);
    ck_assert_uint_eq(rep.unloadable_buckets, 1);
    ck_assert_msg(strstr(rep.error, strrchr(path, '/') + 1) && strstr(rep.error, "stale"), "error: %s", rep.error);
    uint64_t seen = 0;
    ck_assert_int_eq(bm_foreach(m, count_fn, &seen), BM_ECORRUPT); /* the other buckets are walked */
    ck_assert_uint_gt(seen, 0);
    bm_close(m);
    ck_assert_int_eq(access(path, F_OK), 0); /* refused, never deleted */
    copy_file(good, path); /* the right file back: everything reads */
    m = pu_open(1, NB);
    check_all(m, "the right file put back");
    bm_close(m);
}
END_TEST

START_TEST(t_missing_after_open)
{
    build(2);
    const uint32_t b = 6;
    char path[512], saved[600];
    index_path(2, b, path, sizeof(path));
    snprintf(saved, sizeof(saved), "%s/saved-index", pu_root);
    copy_file(path, saved);
    bm_map *m = pu_open(2, NB);
    ck_assert_int_eq(unlink(path), 0); /* e.g. its drive went away after the open */
    uint32_t k = key_in(b, 0);
    bm_key key = pu_key(k);
    ck_assert_int_eq(bm_get(m, &key, NULL, 0, NULL, NULL), BM_EMISSING);
    ck_assert_int_eq(pu_put(m, k, 5, 5), BM_EMISSING); /* writes are refused too, the map is unchanged */
    bm_verify_report rep;
    ck_assert_int_eq(bm_verify(m, &rep), BM_EMISSING);
    ck_assert_msg(strstr(rep.error, strrchr(path, '/') + 1) != NULL, "error: %s", rep.error);
    /* A write elsewhere arms the map; its checkpoints still name the missing file. */
    uint32_t o = key_in((b + 1) % NB, 0);
    put_ok(m, o, ver[o] + 7, rcs[o]);
    ck_assert_int_eq(bm_flush(m), 0);
    bm_close(m);
    bm_config cfg = pu_cfg(2, NB);
    char eb[512];
    cfg.errbuf = eb;
    cfg.errbuf_len = sizeof(eb);
    ck_assert_int_eq(bm_open(&cfg, &m), BM_EMISSING);
    ck_assert_msg(strstr(eb, strrchr(path, '/') + 1) != NULL, "errbuf: %s", eb);
    copy_file(saved, path);
    m = pu_open(2, NB);
    check_all(m, "missing file put back");
    bm_close(m);
}
END_TEST

/* ---- first touches from many threads ---- */

#define NT 4
#define NEWV 1000000u
static pthread_barrier_t bar;
static bm_map *shared;
static uint64_t base[NK];    /* versions at the round's start (read-only during the round) */
static uint32_t wrote[NK];   /* atomic: the owning writer replaced base with base + NEWV */

/* Threads 1 and 3 write their own keys (i % NT == t) once each, from base to base + NEWV; every thread reads
 * random keys: a key no writer owns reads exactly as it was, an owned one as one of its two versions. All
 * start at once on a map whose buckets are all unloaded, so first touches race. */
static void *toucher(void *arg)
{
    uint32_t t = (uint32_t)(uintptr_t)arg;
    pthread_barrier_wait(&bar);
    uint64_t s = t * 7919u + 1;
    for (uint32_t n = 0; n < 2 * NK; n++) {
        uint32_t i = (uint32_t)(pu_mix(&s) % NK);
        if (t % 2 && i % NT == t && !__atomic_load_n(&wrote[i], __ATOMIC_RELAXED)) {
            if (pu_put(shared, i, base[i] + NEWV, rcs[i]))
                return (void *)1;
            __atomic_store_n(&wrote[i], 1, __ATOMIC_RELAXED);
            continue;
        }
        int r = pu_check(shared, i, base[i], rcs[i]);
        if (r != 0 && (i % NT) % 2 == 0)
            return (void *)2;
        if (r != 0 && pu_check(shared, i, base[i] + NEWV, rcs[i]) != 0)
            return (void *)3;
    }
    return NULL;
}

START_TEST(t_concurrent_first_touch)
{
    build(2);
    for (int round = 0; round < 3; round++) {
        shared = pu_open(2, NB);
        ck_assert_uint_eq(stats(shared).buckets_unloaded, NB);
        for (uint32_t i = 0; i < NK; i++) {
            base[i] = ver[i];
            wrote[i] = 0;
        }
        pthread_barrier_init(&bar, NULL, NT);
        pthread_t th[NT];
        for (uintptr_t t = 0; t < NT; t++)
            ck_assert_int_eq(pthread_create(&th[t], NULL, toucher, (void *)t), 0);
        for (int t = 0; t < NT; t++) {
            void *rv;
            pthread_join(th[t], &rv);
            ck_assert_msg(rv == NULL, "round %d thread %d failed (%p)", round, t, rv);
        }
        pthread_barrier_destroy(&bar);
        for (uint32_t i = 0; i < NK; i++)
            if (wrote[i])
                ver[i] = base[i] + NEWV;
        ck_assert_uint_eq(stats(shared).bucket_load_errors, 0);
        check_all(shared, "after concurrent first touches");
        bm_close(shared);
    }
    bm_map *m = pu_open(2, NB);
    check_all(m, "reopened after concurrent rounds");
    bm_close(m);
}
END_TEST

/* ---- SIGKILL with unloaded buckets ---- */

static void kill_child(bool write)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        bm_config cfg = pu_cfg(2, NB);
        bm_map *m;
        if (bm_open(&cfg, &m))
            _exit(2);
        if (write) {
            /* two buckets written (one of them flushed), the rest never loaded */
            for (uint32_t j = 0; j < 20; j++)
                if (pu_put(m, key_in(2, j), 500 + j, 4))
                    _exit(3);
            if (bm_flush(m))
                _exit(4);
            for (uint32_t j = 0; j < 20; j++)
                if (pu_put(m, key_in(9, j), 600 + j, 5))
                    _exit(5);
        } else {
            for (uint32_t i = 0; i < NK; i += 11)
                if (pu_check(m, i, ver[i], rcs[i]))
                    _exit(6);
        }
        raise(SIGKILL);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child status %d", st);
    if (write) {
        for (uint32_t j = 0; j < 20; j++) {
            uint32_t a = key_in(2, j), b = key_in(9, j);
            ver[a] = 500 + j, rcs[a] = 4;
            ver[b] = 600 + j, rcs[b] = 5;
        }
    }
}

START_TEST(t_sigkill_with_unloaded_buckets)
{
    build(2);
    kill_child(false); /* only read: the clean record stands, the next open is clean (lazy) again */
    bm_map *m = pu_open(2, NB);
    ck_assert_uint_eq(stats(m).buckets_scrubbed, 0);
    ck_assert_uint_eq(stats(m).buckets_unloaded, NB);
    bm_close(m);
    kill_child(true); /* wrote: the first write committed an unclean record, so this open repairs */
    m = pu_open(2, NB);
    ck_assert_uint_eq(stats(m).buckets_scrubbed, NB);
    check_all(m, "after SIGKILL with unloaded buckets");
    bm_close(m);
    m = pu_open(2, NB);
    ck_assert_uint_eq(stats(m).buckets_scrubbed, 0);
    check_all(m, "clean reopen after the repair");
    bm_close(m);
}
END_TEST

/* ---- the first write from inside another map's bm_update callback ---- */

static bm_map *other_map;
static int cb_err;

static int write_other(const bm_value *cur, bm_value *out, void *ctx)
{
    (void)cur;
    (void)out;
    uint32_t i = *(uint32_t *)ctx;
    cb_err = pu_put(other_map, i, 4242, 2); /* arms other_map (trylock of its checkpoint lock) */
    return BM_KEEP;
}

START_TEST(t_first_write_in_callback)
{
    build(1);
    bm_config tcfg = {.elem_size = PU_ES, .max_buckets = 4};
    bm_map *tmp;
    ck_assert_int_eq(bm_open(&tcfg, &tmp), 0);
    other_map = pu_open(1, NB);
    uint32_t i = key_in(4, 0);
    bm_key k = pu_key(0);
    ck_assert_int_eq(bm_update(tmp, &k, write_other, &i), 0);
    ck_assert_int_eq(cb_err, 0);
    ver[i] = 4242;
    rcs[i] = 2;
    bm_close(tmp);
    bm_close(other_map);
    bm_map *m = pu_open(1, NB);
    check_all(m, "first write from a callback");
    bm_close(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("persist_lazy");
    TCase *tc = tcase_create("lazy");
    tcase_add_checked_fixture(tc, pu_setup, pu_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, t_open_loads_nothing);
    tcase_add_test(tc, t_batch_loads_buckets);
    tcase_add_test(tc, t_cycles_carry_unloaded_buckets);
    tcase_add_test(tc, t_read_only_round_changes_no_file);
    tcase_add_test(tc, t_flush_close_mixed);
    tcase_add_test(tc, t_stale_copy_found_at_touch);
    tcase_add_test(tc, t_missing_after_open);
    tcase_add_test(tc, t_concurrent_first_touch);
    tcase_add_test(tc, t_sigkill_with_unloaded_buckets);
    tcase_add_test(tc, t_first_write_in_callback);
    suite_add_tcase(s, tc);
    return pu_run_suite(s);
}
