/* bucketmap itself, through its public header only. The same file is compiled into bm-bench (RCU readers,
 * system "bucketmap") and into bm-bench-rwlock (linked with the reader-rwlock ablation library, system
 * "rwlock"): the two libraries export the same symbols, so only the name differs here. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bucketmap.h"
#include "system.h"

#ifndef BENCH_BM_NAME
#define BENCH_BM_NAME "bucketmap"
#endif

_Static_assert(sizeof(bm_key) == KEY_LEN, "bench keys are bucketmap keys");

int bench_bm_expected;

typedef struct bmb_db {
    bm_map *m;
    int reopenable;
    char why[200]; /* why a reopen is not possible, when it is not */
} bmb_db;

static int bmb_open_as(const sys_cfg *cfg, int temporary, void **out, char *err, size_t errlen)
{
    bmb_db *db = calloc(1, sizeof *db);
    if (!db)
        return -ENOMEM;
    char restart[PATH_MAX];
    snprintf(restart, sizeof restart, "%s/restart", cfg->dir);
    const char *drives[1] = {cfg->dir};
    bm_config c = {
        .elem_size = sizeof(uint64_t),
        .max_buckets = cfg->buckets,
        .drives = drives,
        .n_drives = 1,
        .restart_path = temporary ? NULL : restart,
        .flush_interval_ms = temporary ? 0 : cfg->flush_ms,
        .expected_entries = bench_bm_expected ? cfg->n_hint : 0,
    };
    int rc = bm_open(&c, &db->m);
    if (rc == 0 && temporary) {
        snprintf(db->why, sizeof db->why, "a temporary map (no restart_path) removes its files at close");
    } else if (rc == 0) {
        db->reopenable = 1;
    } else if (!cfg->reopen) {
        /* Persistence may not be implemented yet: measure everything else on a temporary map and let
         * the reopen workload report n/a with this reason. */
        snprintf(db->why, sizeof db->why, "bm_open with restart_path: %s", bm_strerror(rc));
        c.restart_path = NULL;
        c.flush_interval_ms = 0;
        rc = bm_open(&c, &db->m);
    }
    if (rc != 0) {
        snprintf(err, errlen, "bm_open%s: %s", cfg->reopen ? " (reopen)" : "", bm_strerror(rc));
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

static int bmb_open(const sys_cfg *cfg, void **out, char *err, size_t errlen)
{
    return bmb_open_as(cfg, 0, out, err, errlen);
}

/* The same map without a restart file: nothing is made durable, as in an in-RAM table (lfht's row). */
static int bmb_open_tmp(const sys_cfg *cfg, void **out, char *err, size_t errlen)
{
    return bmb_open_as(cfg, 1, out, err, errlen);
}

static void bmb_close(void *p)
{
    bmb_db *db = p;
    bm_close(db->m);
    free(db);
}

static int bmb_reopenable(void *p, char *err, size_t errlen)
{
    bmb_db *db = p;
    if (!db->reopenable)
        snprintf(err, errlen, "%s", db->why);
    return db->reopenable;
}

/* The library registers threads with RCU by itself; nothing per thread here. */
static void *bmb_thread_enter(void *db)
{
    (void)db;
    return NULL;
}

static void bmb_thread_exit(void *db, void *tc)
{
    (void)db;
    (void)tc;
}

static int bmb_insert(void *p, void *tc, const uint8_t key[KEY_LEN], uint64_t val)
{
    (void)tc;
    bmb_db *db = p;
    bm_key k;
    memcpy(k.bytes, key, KEY_LEN);
    return bm_insert(db->m, &k, &val, 1, 1);
}

static int bmb_get(void *p, void *tc, const uint8_t key[KEY_LEN], uint64_t *val)
{
    (void)tc;
    bmb_db *db = p;
    bm_key k;
    memcpy(k.bytes, key, KEY_LEN);
    uint32_t n = 0;
    int rc = bm_get(db->m, &k, val, 1, &n, NULL);
    if (rc == BM_ENOTFOUND)
        return SYS_ABSENT;
    if (rc < 0)
        return rc;
    if (n != 1)
        *val = UINT64_MAX; /* a wrong element count must fail the harness's value check */
    return SYS_FOUND;
}

static int bmb_get_batch(void *p, void *tc, const uint8_t *keys, size_t n, uint64_t *vals, int *res)
{
    (void)tc;
    bmb_db *db = p;
    uint32_t cnt[BATCH_MAX_KEYS];
    int found = bm_get_batch(db->m, (const bm_key *)keys, n, vals, 1, cnt, NULL, res);
    if (found < 0)
        return found;
    for (size_t i = 0; i < n; i++) {
        if (res[i] == BM_ENOTFOUND)
            res[i] = SYS_ABSENT;
        else if (res[i] == 0 && cnt[i] != 1)
            vals[i] = UINT64_MAX; /* a wrong element count must fail the harness's value check */
    }
    return found;
}

static int bmb_del(void *p, void *tc, const uint8_t key[KEY_LEN])
{
    (void)tc;
    bmb_db *db = p;
    bm_key k;
    memcpy(k.bytes, key, KEY_LEN);
    int rc = bm_delete(db->m, &k);
    return rc == BM_ENOTFOUND ? SYS_ABSENT : rc;
}

static int bmb_flush(void *p)
{
    bmb_db *db = p;
    return bm_flush(db->m);
}

static void bmb_info(void *p, sys_info *out)
{
    bmb_db *db = p;
    bm_stats st;
    bm_get_stats(db->m, &st);
    memset(out, 0, sizeof *out);
    out->has_disk = 1;
    out->disk_bytes = st.index_bytes + st.data_bytes;
    out->has_grows = 1;
    out->grows = st.index_grows + st.data_grows;
    out->has_entries = 1;
    out->entries = st.entries;
    out->has_flushes = 1;
    out->flushes = st.flushes;
    out->files_flushed = st.files_flushed;
}

#define BMB_OPS                                                                                                \
    .close = bmb_close, .reopenable = bmb_reopenable, .thread_enter = bmb_thread_enter,                        \
    .thread_exit = bmb_thread_exit, .bulk = NULL, .insert = bmb_insert, .get = bmb_get,                        \
    .get_batch = bmb_get_batch, .del = bmb_del, .flush = bmb_flush, .info = bmb_info, .strerror = bm_strerror

const sys_ops sys_bucketmap = {.name = BENCH_BM_NAME, .open = bmb_open, BMB_OPS};
const sys_ops sys_bucketmap_tmp = {.name = BENCH_BM_NAME "-tmp", .open = bmb_open_tmp, BMB_OPS};
