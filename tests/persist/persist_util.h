/*
 * Helpers shared by the persistence suites: per-test directories, deterministic keys, values that encode
 * (key, version) so that a torn or misplaced value is detectable, and assertion helpers.
 */
#ifndef PERSIST_UTIL_H
#define PERSIST_UTIL_H

#include <bucketmap.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PU_ES 8u       /* elem_size of every persistence test map */
#define PU_MAX_N 40u   /* values hold 0..PU_MAX_N elements */

/* pu_base is made by the runner before Check forks; each test's directories live below it, so the runner
 * can remove them (and unmount a test's tmpfs) even when a failed assertion ended the test's process
 * before its teardown ran. */
static char pu_base[64], pu_root[96], pu_d[3][128], pu_restart[128];
static const char *pu_drives[3] = {pu_d[0], pu_d[1], pu_d[2]};

static inline void pu_setup(void)
{
    snprintf(pu_root, sizeof(pu_root), "%s/t-XXXXXX", pu_base);
    ck_assert_ptr_nonnull(mkdtemp(pu_root));
    for (int i = 0; i < 3; i++) {
        snprintf(pu_d[i], sizeof(pu_d[i]), "%s/d%d", pu_root, i);
        ck_assert_int_eq(mkdir(pu_d[i], 0755), 0);
    }
    snprintf(pu_restart, sizeof(pu_restart), "%s/restart", pu_root);
}

static inline void pu_remove_tree(const char *dir)
{
    /* A test that failed while its tmpfs was mounted leaves the mount behind: detach it before removing. */
    FILE *mounts = fopen("/proc/self/mounts", "r");
    if (mounts) {
        char line[1024], dev[256], mnt[512];
        size_t n = strlen(dir);
        while (fgets(line, sizeof(line), mounts))
            if (sscanf(line, "%255s %511s", dev, mnt) == 2 && strncmp(mnt, dir, n) == 0 && mnt[n] == '/')
                umount2(mnt, MNT_DETACH);
        fclose(mounts);
    }
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
}

static inline void pu_teardown(void) { pu_remove_tree(pu_root); }

static inline uint64_t pu_mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t pu_seed(const char *suite)
{
    const char *s = getenv("BM_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    fprintf(stderr, "%s: seed=0x%" PRIx64 " (replay with BM_TEST_SEED=0x%" PRIx64 ")\n", suite, seed, seed);
    return seed;
}

static inline bm_key pu_key(uint32_t i)
{
    bm_key k;
    uint64_t s = (uint64_t)i * 0x100000001B3ull + 0x51;
    for (int w = 0; w < 4; w++) {
        uint64_t r = pu_mix(&s);
        memcpy(k.bytes + 8 * w, &r, 8);
    }
    return k;
}

/* Value of (key, version): n = 0..PU_MAX_N elements, element j encodes key, version and j. */
static inline uint32_t pu_n(uint32_t key, uint64_t version) { return (uint32_t)((key * 7u + version * 13u) % (PU_MAX_N + 1)); }

static inline uint64_t pu_elem(uint32_t key, uint64_t version, uint32_t j)
{
    return ((uint64_t)key << 40) ^ (version << 8) ^ j ^ 0xA5A5000000000000ull;
}

static inline uint32_t pu_fill(uint64_t *e, uint32_t key, uint64_t version)
{
    uint32_t n = pu_n(key, version);
    for (uint32_t j = 0; j < n; j++)
        e[j] = pu_elem(key, version, j);
    return n;
}

static inline int pu_put(bm_map *m, uint32_t key, uint64_t version, uint64_t rc)
{
    uint64_t e[PU_MAX_N];
    uint32_t n = pu_fill(e, key, version);
    bm_key k = pu_key(key);
    return bm_insert(m, &k, e, n, rc);
}

/* 0: key holds exactly (version, rc); 1: absent; -1: present but different (torn, stale, foreign). */
static inline int pu_check(bm_map *m, uint32_t key, uint64_t version, uint64_t rc)
{
    uint64_t e[PU_MAX_N + 8];
    uint32_t n = 0;
    uint64_t got_rc = 0;
    bm_key k = pu_key(key);
    int err = bm_get(m, &k, e, PU_MAX_N + 8, &n, &got_rc);
    if (err == BM_ENOTFOUND)
        return 1;
    if (err || n != pu_n(key, version) || got_rc != rc)
        return -1;
    for (uint32_t j = 0; j < n; j++)
        if (e[j] != pu_elem(key, version, j))
            return -1;
    return 0;
}

static inline bm_config pu_cfg(uint32_t n_drives, uint32_t buckets)
{
    bm_config cfg = {.elem_size = PU_ES, .max_buckets = buckets, .drives = pu_drives, .n_drives = n_drives,
                     .restart_path = pu_restart};
    return cfg;
}

static inline bm_map *pu_open(uint32_t n_drives, uint32_t buckets)
{
    bm_config cfg = pu_cfg(n_drives, buckets);
    bm_map *m = NULL;
    int err = bm_open(&cfg, &m);
    ck_assert_msg(err == 0, "bm_open (%u drives, %u buckets): %s", n_drives, buckets, bm_strerror(err));
    return m;
}

static inline void pu_verify_clean(bm_map *m, bm_verify_report *out)
{
    bm_verify_report r;
    memset(&r, 0, sizeof(r));
    int err = bm_verify(m, &r);
    ck_assert_msg(err == 0,
                  "bm_verify: %s (entries %" PRIu64 ", bad sums %" PRIu64 ", bad cells %" PRIu64 ", bad refs %" PRIu64
                  ", misplaced %" PRIu64 ", orphan cells %" PRIu64 ", count mismatches %" PRIu64 ")",
                  bm_strerror(err), r.entries, r.bad_entry_sums, r.bad_cells, r.bad_refs, r.misplaced,
                  r.orphan_cells, r.count_mismatches);
    ck_assert_uint_eq(r.entries, bm_count(m));
    if (out)
        *out = r;
}

static inline void pu_write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

/* Bytes read, or -1. */
static inline ssize_t pu_read_file(const char *path, void *p, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, p, cap);
    close(fd);
    return n;
}

/* Runs s with its directories below parent (pu_run_suite: /tmp). */
static inline int pu_run_suite_in(Suite *s, const char *parent)
{
    snprintf(pu_base, sizeof(pu_base), "%s/bm-persist-XXXXXX", parent);
    if (!mkdtemp(pu_base)) {
        perror("mkdtemp");
        return 1;
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    pu_remove_tree(pu_base);
    return failed ? 1 : 0;
}

static inline int pu_run_suite(Suite *s) { return pu_run_suite_in(s, "/tmp"); }

#endif
