/*
 * A consumer of the installed package: calls every function of bucketmap.h once, checking each result, so
 * a missing export, a wrong include path or an incomplete link line fails to build or to run. run.sh builds
 * it against an installed (and then moved) prefix with pkg-config (shared and --static) and with CMake's
 * find_package, and checks that every public function appears here.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <bucketmap.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(c)                                                                                           \
    do {                                                                                                   \
        if (!(c)) {                                                                                        \
            fprintf(stderr, "consumer: %s:%d: %s failed\n", __FILE__, __LINE__, #c);                       \
            exit(1);                                                                                       \
        }                                                                                                  \
    } while (0)

static void on_read(const bm_value *v, void *ctx) { *(uint64_t *)ctx = v->n; }

static int bump(const bm_value *cur, bm_value *out, void *ctx)
{
    static uint64_t elem;
    elem = cur ? ((const uint64_t *)cur->elems)[0] + 1 : 1;
    out->elems = &elem;
    out->n = 1;
    out->refcount = cur ? cur->refcount : 1;
    (void)ctx;
    return BM_WRITE;
}

static int count_entries(const bm_key *k, const bm_value *v, void *ctx)
{
    (void)k;
    (void)v;
    ++*(uint64_t *)ctx;
    return 0;
}

int main(void)
{
    char dir[] = "/tmp/bm-consumer-XXXXXX";
    CHECK(mkdtemp(dir));
    char drive[64], restart[64];
    snprintf(drive, sizeof(drive), "%s/drive", dir);
    snprintf(restart, sizeof(restart), "%s/restart", dir);
    CHECK(mkdir(drive, 0755) == 0);
    const char *drives[] = {drive};
    bm_config cfg = {.elem_size = 8, .max_buckets = 4, .drives = drives, .n_drives = 1,
                     .restart_path = restart, .flags = BM_F_NO_PREALLOC};
    bm_map *m;
    int err = bm_open(&cfg, &m);
    if (err)
        fprintf(stderr, "bm_open: %s\n", bm_strerror(err));
    CHECK(err == 0);
    CHECK(strcmp(bm_strerror(BM_ENOTFOUND), "key not found") == 0);

    bm_key k = {{1, 2, 3}};
    uint64_t elems[2] = {10, 11}, out[2] = {0}, rc = 0, n64 = 0;
    uint32_t n = 0;
    CHECK(bm_insert(m, &k, elems, 2, 1) == 0);
    CHECK(bm_get(m, &k, out, 2, &n, &rc) == 0 && n == 2 && out[1] == 11 && rc == 1);
    bm_key ks[2] = {k, {{9}}};
    uint64_t bout[4] = {0};
    uint32_t bn[2];
    int bst[2];
    CHECK(bm_get_batch(m, ks, 2, bout, 2, bn, NULL, bst) == 1 && bst[0] == 0 && bn[0] == 2 && bout[1] == 11 &&
          bst[1] == BM_ENOTFOUND);
    CHECK(bm_read(m, &k, on_read, &n64) == 0 && n64 == 2);
    CHECK(bm_addref(m, &k, &rc) == 0 && rc == 2);
    CHECK(bm_unref(m, &k, &rc) == 0 && rc == 1);
    CHECK(bm_update(m, &k, bump, NULL) == 0);
    CHECK(bm_get(m, &k, out, 2, &n, NULL) == 0 && n == 1 && out[0] == 11);
    CHECK(bm_count(m) == 1);
    n64 = 0;
    CHECK(bm_foreach(m, count_entries, &n64) == 0 && n64 == 1);
    CHECK(bm_flush(m) == 0);
    bm_stats st;
    bm_get_stats(m, &st);
    CHECK(st.entries == 1);
    CHECK(bm_bucket_of(&k, 4) < 4);
    CHECK(bm_bucket_count(m) == 4);
    bm_bucket_info bi;
    CHECK(bm_bucket_info_get(m, bm_bucket_of(&k, 4), &bi) == 0 && bi.allocated);
    bm_verify_report vr;
    CHECK(bm_verify(m, &vr) == 0 && vr.entries == 1);
    CHECK(bm_delete(m, &k) == 0);
    CHECK(bm_get(m, &k, NULL, 0, NULL, NULL) == BM_ENOTFOUND);
    bm_close(m);

    bm_restart_info ri;
    CHECK(bm_read_restart_info(restart, &ri) == 0 && ri.elem_size == 8 && ri.max_buckets == 4);

    /* Clean up: the restart file, then whatever map files the drive holds, then the directories. */
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    printf("consumer: every public function works\n");
    return 0;
}
