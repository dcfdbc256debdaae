/*
 * test_api_upstream — the public-API scenarios of upstream bucket_map.rs (UPSTREAM.md §8.1), the edge cases
 * listed at the end of §8, and the documented contract of every call in bucketmap.h.
 *
 * Upstream's value type in these tests is u64, so most maps here use elem_size 8 and one-element lists.
 * Upstream's try_insert/grow dance (insert2) has no counterpart: bm_insert grows by itself, so that test
 * checks that inserts needing a data file succeed straight away on fresh maps.
 */
#include "tu.h"

/* ---- a scripted bm_update callback: records what it saw, answers with a preset decision ---- */

typedef struct upd_script {
    int calls;
    int action;      /* returned as is: BM_WRITE/BM_KEEP/BM_DELETE or an error */
    bm_value out;    /* copied to *out */
    bool saw_absent; /* cur was NULL */
    uint32_t cur_n;
    uint64_t cur_rc;
    uint8_t cur_bytes[512];
    size_t elem_size;
} upd_script;

static int upd_fn(const bm_value *cur, bm_value *out, void *ctx)
{
    upd_script *u = ctx;
    u->calls++;
    u->saw_absent = cur == NULL;
    if (cur) {
        u->cur_n = cur->n;
        u->cur_rc = cur->refcount;
        size_t bytes = (size_t)cur->n * u->elem_size;
        if (bytes > sizeof u->cur_bytes)
            bytes = sizeof u->cur_bytes;
        if (bytes)
            memcpy(u->cur_bytes, cur->elems, bytes);
    }
    *out = u->out;
    return u->action;
}

/* update(k, -> ([x], rc)) the way upstream's tests write through closures. */
static void update_u64(bm_map *m, const bm_key *k, uint64_t x, uint64_t rc)
{
    upd_script u = {.action = BM_WRITE, .out = {.elems = &x, .n = 1, .refcount = rc}, .elem_size = 8};
    TU_OK(bm_update(m, k, upd_fn, &u));
    ck_assert_int_eq(u.calls, 1);
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = (x << 8) | p[i];
    return x;
}

/* ======================= UPSTREAM.md §8.1 ======================= */

START_TEST(t_insert)
{
    bm_map *m = tu_open(8, 2, 0);
    bm_key k = tu_key(1);
    update_u64(m, &k, 0, 0);
    tu_expect_u64(m, &k, 0, 0);
    update_u64(m, &k, 0, 1); /* V-C's variant: rc 1 (inline element) */
    tu_expect_u64(m, &k, 0, 1);
    ck_assert_uint_eq(bm_count(m), 1);
    bm_close(m);
}
END_TEST

START_TEST(t_insert2)
{
    /* Upstream's passes 1 and 2 needed explicit grows before an rc-0 value (data file) could be written.
     * Here every pass starts from a fresh map, and the very first writes must succeed on their own. */
    for (int pass = 0; pass < 3; pass++) {
        bm_map *m = tu_open(8, 2, 0);
        for (int j = 0; j <= pass; j++) {
            bm_key k = tu_key(100 * (uint64_t)pass + (uint64_t)j);
            tu_expect_absent(m, &k);
            uint64_t zero = 0;
            TU_OK(bm_insert(m, &k, &zero, 1, 0));
            tu_expect_u64(m, &k, 0, 0);
        }
        ck_assert_uint_eq(bm_count(m), (uint64_t)pass + 1);
        bm_close(m);
    }
}
END_TEST

START_TEST(t_update2)
{
    bm_map *m = tu_open(8, 2, 0);
    bm_key k = tu_key(7);
    uint64_t v0 = 0, v1 = 1;
    TU_OK(bm_insert(m, &k, &v0, 1, 0));
    tu_expect_u64(m, &k, 0, 0);
    TU_OK(bm_insert(m, &k, &v1, 1, 0));
    tu_expect_u64(m, &k, 1, 0);
    ck_assert_uint_eq(bm_count(m), 1);
    bm_close(m);
}
END_TEST

START_TEST(t_update)
{
    bm_map *m = tu_open(8, 2, 0);
    bm_key k = tu_key(7);
    uint64_t v0 = 0, v1 = 1;
    upd_script u = {.action = BM_WRITE, .out = {.elems = &v0, .n = 1, .refcount = 0}, .elem_size = 8};
    TU_OK(bm_update(m, &k, upd_fn, &u));
    ck_assert(u.saw_absent);
    tu_expect_u64(m, &k, 0, 0);

    u = (upd_script){.action = BM_WRITE, .out = {.elems = &v1, .n = 1, .refcount = 0}, .elem_size = 8};
    TU_OK(bm_update(m, &k, upd_fn, &u));
    ck_assert_int_eq(u.calls, 1);
    ck_assert(!u.saw_absent);
    ck_assert_uint_eq(u.cur_n, 1);
    ck_assert_uint_eq(u.cur_rc, 0);
    uint64_t seen;
    memcpy(&seen, u.cur_bytes, 8);
    ck_assert_uint_eq(seen, 0);
    tu_expect_u64(m, &k, 1, 0);
    ck_assert_uint_eq(bm_count(m), 1);
    bm_close(m);
}
END_TEST

START_TEST(t_update_to_0_len)
{
    bm_map *m = tu_open(8, 2, 0);
    bm_key k = tu_key(3);
    update_u64(m, &k, 0, 1);
    tu_expect_u64(m, &k, 0, 1);

    upd_script u = {.action = BM_WRITE, .out = {.elems = NULL, .n = 0, .refcount = 1}, .elem_size = 8};
    TU_OK(bm_update(m, &k, upd_fn, &u));
    tu_expect_value(m, &k, 8, NULL, 0, 1);

    u = (upd_script){.action = BM_WRITE, .out = {.elems = NULL, .n = 0, .refcount = 2}, .elem_size = 8};
    TU_OK(bm_update(m, &k, upd_fn, &u));
    ck_assert_uint_eq(u.cur_n, 0);
    ck_assert_uint_eq(u.cur_rc, 1);
    tu_expect_value(m, &k, 8, NULL, 0, 2);

    update_u64(m, &k, 1, 2);
    tu_expect_u64(m, &k, 1, 2);
    ck_assert_uint_eq(bm_count(m), 1);
    bm_close(m);
}
END_TEST

static void delete_rounds(uint32_t buckets, int rounds)
{
    bm_map *m = tu_open(8, buckets, 0);
    for (int i = 0; i < rounds; i++) {
        bm_key k = tu_key(1000 + (uint64_t)i);
        tu_expect_absent(m, &k);
        update_u64(m, &k, (uint64_t)i, 0);
        tu_expect_u64(m, &k, (uint64_t)i, 0);
        TU_OK(bm_delete(m, &k));
        tu_expect_absent(m, &k);
        update_u64(m, &k, (uint64_t)i, 0);
        tu_expect_u64(m, &k, (uint64_t)i, 0);
        TU_OK(bm_delete(m, &k));
        tu_expect_absent(m, &k);
    }
    ck_assert_uint_eq(bm_count(m), 0);
    bm_close(m);
}

START_TEST(t_delete)
{
    delete_rounds(2, 10);
}
END_TEST

START_TEST(t_delete_2)
{
    delete_rounds(4, 100);
}
END_TEST

START_TEST(t_n_drives)
{
    enum { ND = 3 };
    char dirs[ND][PATH_MAX];
    const char *drives[ND];
    for (int d = 0; d < ND; d++) {
        tu_mkdtemp(dirs[d], "drive");
        drives[d] = dirs[d];
    }
    bm_config cfg = {.elem_size = 8, .max_buckets = 4, .drives = drives, .n_drives = ND};
    bm_map *m = tu_open_cfg(&cfg);
    for (uint64_t i = 0; i < 100; i++) {
        bm_key k = tu_key(i);
        update_u64(m, &k, i, 0);
        tu_expect_u64(m, &k, i, 0);
    }
    for (uint64_t i = 0; i < 100; i++) {
        bm_key k = tu_key(i);
        tu_expect_u64(m, &k, i, 0);
    }
    ck_assert_uint_eq(bm_count(m), 100);
    int files = 0;
    for (int d = 0; d < ND; d++)
        files += tu_dir_entries(dirs[d]);
    ck_assert_msg(files > 0, "an open map with 100 keys has no file in any of its drives");
    bm_close(m);
    for (int d = 0; d < ND; d++) {
        ck_assert_msg(tu_dir_entries(dirs[d]) == 0, "temporary map left %d entries in drive %s",
                      tu_dir_entries(dirs[d]), dirs[d]);
        tu_rmrf(dirs[d]);
    }
}
END_TEST

static void grow_read(uint32_t buckets, uint32_t max_search, uint64_t nkeys)
{
    bm_map *m = tu_open(8, buckets, max_search);
    bm_key *keys = tu_xmalloc(nkeys * sizeof *keys);
    for (uint64_t i = 0; i < nkeys; i++)
        keys[i] = tu_key(i);
    for (uint64_t i = 0; i < nkeys; i++) {
        uint64_t v = be64(keys[i].bytes);
        TU_OK(bm_insert(m, &keys[i], &v, 1, 0));
        for (uint64_t j = 0; j <= i; j++) {
            uint64_t got = 0;
            uint32_t n = 0;
            uint64_t rc = 1;
            int r = bm_get(m, &keys[j], &got, 1, &n, &rc);
            ck_assert_msg(r == 0, "after inserting key %" PRIu64 ", key %" PRIu64 " reads %d (%s)", i, j, r,
                          bm_strerror(r));
            ck_assert_msg(n == 1 && rc == 0 && got == be64(keys[j].bytes),
                          "after inserting key %" PRIu64 ", key %" PRIu64 " reads n=%u rc=%" PRIu64, i, j, n, rc);
        }
        for (uint64_t j = i + 1; j < nkeys; j++)
            TU_ERR(bm_get(m, &keys[j], NULL, 0, NULL, NULL), BM_ENOTFOUND);
    }
    ck_assert_uint_eq(bm_count(m), nkeys);
    bm_stats st;
    bm_get_stats(m, &st);
    ck_assert_uint_eq(st.entries, nkeys);
    free(keys);
    bm_close(m);
}

START_TEST(t_grow_read)
{
    grow_read(4, 0, 100);
}
END_TEST

START_TEST(t_grow_read_tight)
{
    /* One bucket and a 2-slot window: the index must grow many times while earlier keys stay readable. */
    grow_read(1, 2, 600);
}
END_TEST

START_TEST(t_n_delete)
{
    enum { N = 20 };
    bm_map *m = tu_open(8, 4, 0);
    bm_key keys[N];
    for (uint64_t i = 0; i < N; i++) {
        keys[i] = tu_key(i);
        update_u64(m, &keys[i], i, 0);
        tu_expect_u64(m, &keys[i], i, 0);
    }
    for (int i = 0; i < N; i++) {
        TU_OK(bm_delete(m, &keys[i]));
        tu_expect_absent(m, &keys[i]);
        for (int j = i + 1; j < N; j++)
            tu_expect_u64(m, &keys[j], (uint64_t)j, 0);
        ck_assert_uint_eq(bm_count(m), (uint64_t)(N - 1 - i));
    }
    bm_close(m);
}
END_TEST

/* ======================= edge cases (end of UPSTREAM.md §8) ======================= */

START_TEST(t_empty_list_refcounts)
{
    /* Upstream stores ([],1) as a bare tag and ([],rc!=1) in a data cell: both must read back exactly. */
    const uint64_t rcs[] = {1, 0, 2, 3, (1ull << 63) - 1, 1ull << 63, UINT64_MAX, 1};
    bm_map *m = tu_open(8, 2, 0);
    bm_key k = tu_key(5), other = tu_key(6);
    TU_OK(bm_insert(m, &other, NULL, 0, 1));
    for (size_t i = 0; i < sizeof rcs / sizeof rcs[0]; i++) {
        TU_OK(bm_insert(m, &k, NULL, 0, rcs[i]));
        tu_expect_value(m, &k, 8, NULL, 0, rcs[i]);
        tu_expect_value(m, &other, 8, NULL, 0, 1);
    }
    /* And from a fresh key each time, not only by overwriting. */
    for (size_t i = 0; i < sizeof rcs / sizeof rcs[0]; i++) {
        bm_key f = tu_key(100 + i);
        TU_OK(bm_insert(m, &f, NULL, 0, rcs[i]));
        tu_expect_value(m, &f, 8, NULL, 0, rcs[i]);
    }
    ck_assert_uint_eq(bm_count(m), 2 + sizeof rcs / sizeof rcs[0]);
    bm_close(m);
}
END_TEST

START_TEST(t_refcount_extremes)
{
    const uint64_t rcs[] = {0, 1, 2, (1ull << 63) - 1, 1ull << 63, UINT64_MAX - 1, UINT64_MAX};
    const uint32_t lens[] = {0, 1, 2, 5};
    bm_map *m = tu_open(8, 2, 0);
    uint64_t elems[5];
    uint64_t id = 0;
    for (size_t r = 0; r < sizeof rcs / sizeof rcs[0]; r++)
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            bm_key k = tu_key(id);
            tu_fill(elems, sizeof elems, id);
            TU_OK(bm_insert(m, &k, elems, lens[l], rcs[r]));
            id++;
        }
    id = 0;
    for (size_t r = 0; r < sizeof rcs / sizeof rcs[0]; r++)
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            bm_key k = tu_key(id);
            tu_fill(elems, sizeof elems, id);
            tu_expect_value(m, &k, 8, elems, lens[l], rcs[r]);
            id++;
        }
    ck_assert_uint_eq(bm_count(m), id);
    bm_close(m);
}
END_TEST

static const uint32_t class_lens[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 65, 200};
#define N_CLASS_LENS (sizeof class_lens / sizeof class_lens[0])

START_TEST(t_class_boundaries)
{
    /* Every length at and around a power of two, each with rc 1 (the inline candidate) and rc 7. */
    bm_map *m = tu_open(8, 2, 0);
    uint64_t buf[200];
    for (size_t i = 0; i < N_CLASS_LENS; i++)
        for (uint64_t rc = 1; rc <= 7; rc += 6) {
            bm_key k = tu_key(i * 10 + rc);
            tu_fill(buf, sizeof buf, i * 10 + rc);
            TU_OK(bm_insert(m, &k, buf, class_lens[i], rc));
        }
    for (size_t i = 0; i < N_CLASS_LENS; i++)
        for (uint64_t rc = 1; rc <= 7; rc += 6) {
            bm_key k = tu_key(i * 10 + rc);
            tu_fill(buf, sizeof buf, i * 10 + rc);
            tu_expect_value(m, &k, 8, buf, class_lens[i], rc);
        }
    bm_close(m);
}
END_TEST

START_TEST(t_shrink_grow_classes)
{
    /* One key walks up and down through the size classes while neighbours in the same buckets hold still;
     * a stale cell or a wrong class would show up as wrong bytes in the key or its neighbours. */
    const uint32_t walk[] = {1, 2, 3, 4, 5, 16, 17, 33, 17, 16, 5, 4, 3, 2, 1, 0, 17, 0, 2, 1, 200, 1, 0, 5};
    const uint64_t rcs[] = {1, 0, 2, 1};
    bm_map *m = tu_open(8, 1, 0);
    uint64_t buf[200], nb[200];
    for (uint64_t j = 0; j < 20; j++) {
        bm_key n = tu_key(500 + j);
        tu_fill(nb, sizeof nb, 500 + j);
        TU_OK(bm_insert(m, &n, nb, (uint32_t)(j % 9), j % 3));
    }
    bm_key k = tu_key(1);
    for (size_t s = 0; s < sizeof walk / sizeof walk[0]; s++) {
        uint64_t rc = rcs[s % 4];
        tu_fill(buf, sizeof buf, 1000 + s);
        if (s % 2) {
            TU_OK(bm_insert(m, &k, buf, walk[s], rc));
        } else {
            upd_script u = {.action = BM_WRITE, .out = {.elems = buf, .n = walk[s], .refcount = rc}, .elem_size = 8};
            TU_OK(bm_update(m, &k, upd_fn, &u));
        }
        tu_expect_value(m, &k, 8, buf, walk[s], rc);
        for (uint64_t j = 0; j < 20; j++) {
            bm_key n = tu_key(500 + j);
            tu_fill(nb, sizeof nb, 500 + j);
            tu_expect_value(m, &n, 8, nb, (uint32_t)(j % 9), j % 3);
        }
    }
    ck_assert_uint_eq(bm_count(m), 21);
    bm_close(m);
}
END_TEST

START_TEST(t_update_delete_absent)
{
    bm_map *m = tu_open(8, 2, 0);
    bm_key present = tu_key(1), absent = tu_key(2);
    update_u64(m, &present, 9, 1);
    upd_script u = {.action = BM_DELETE, .elem_size = 8};
    TU_OK(bm_update(m, &absent, upd_fn, &u));
    ck_assert_int_eq(u.calls, 1);
    ck_assert(u.saw_absent);
    tu_expect_absent(m, &absent);
    ck_assert_uint_eq(bm_count(m), 1);
    tu_expect_u64(m, &present, 9, 1);
    bm_close(m);
}
END_TEST

START_TEST(t_delete_absent)
{
    bm_map *m = tu_open(8, 4, 0);
    bm_key never = tu_key(1);
    /* A bucket that was never written and one that was. */
    TU_ERR(bm_delete(m, &never), BM_ENOTFOUND);
    bm_key k = tu_key(2);
    update_u64(m, &k, 2, 0);
    TU_OK(bm_delete(m, &k));
    TU_ERR(bm_delete(m, &k), BM_ENOTFOUND);
    TU_ERR(bm_delete(m, &never), BM_ENOTFOUND);
    ck_assert_uint_eq(bm_count(m), 0);
    bm_close(m);
}
END_TEST

START_TEST(t_delete_reinsert_many)
{
    /* Small windows in one bucket: deleted slots must be reusable without tombstones, over and over. */
    enum { N = 400, ROUNDS = 5 };
    bm_map *m = tu_open(8, 1, 4);
    uint64_t buf[9];
    for (int round = 0; round < ROUNDS; round++) {
        for (uint64_t i = 0; i < N; i++) {
            bm_key k = tu_key(i);
            tu_fill(buf, sizeof buf, i * 31 + (uint64_t)round);
            TU_OK(bm_insert(m, &k, buf, (uint32_t)((i + (uint64_t)round) % 10), (uint64_t)round));
        }
        ck_assert_uint_eq(bm_count(m), N);
        for (uint64_t i = 0; i < N; i++) {
            bm_key k = tu_key(i);
            tu_fill(buf, sizeof buf, i * 31 + (uint64_t)round);
            tu_expect_value(m, &k, 8, buf, (uint32_t)((i + (uint64_t)round) % 10), (uint64_t)round);
        }
        /* Delete every other key, then all; reinsertion in the next round lands in the freed slots. */
        for (uint64_t i = 0; i < N; i += 2) {
            bm_key k = tu_key(i);
            TU_OK(bm_delete(m, &k));
        }
        for (uint64_t i = 1; i < N; i += 2) {
            bm_key k = tu_key(i);
            tu_fill(buf, sizeof buf, i * 31 + (uint64_t)round);
            tu_expect_value(m, &k, 8, buf, (uint32_t)((i + (uint64_t)round) % 10), (uint64_t)round);
        }
        for (uint64_t i = 1; i < N; i += 2) {
            bm_key k = tu_key(i);
            TU_OK(bm_delete(m, &k));
        }
        ck_assert_uint_eq(bm_count(m), 0);
        for (uint64_t i = 0; i < N; i++) {
            bm_key k = tu_key(i);
            TU_ERR(bm_get(m, &k, NULL, 0, NULL, NULL), BM_ENOTFOUND);
        }
    }
    bm_close(m);
}
END_TEST

START_TEST(t_same_prefix_keys)
{
    /* Equal bytes 0..7 put keys in one bucket; they must still be told apart by the rest of the key,
     * including keys that differ only in their very last byte. */
    enum { N = 300 };
    bm_map *m = tu_open(8, 16, 0);
    bm_key base = tu_key(42);
    for (uint64_t i = 0; i < N; i++) {
        bm_key k = base;
        k.bytes[31] = (uint8_t)i;
        k.bytes[30] = (uint8_t)(i >> 8);
        TU_OK(bm_insert(m, &k, &i, 1, i % 3));
    }
    bm_key mid = base;
    mid.bytes[8] ^= 1; /* differs in the first byte after the shard prefix */
    uint64_t x = 999;
    TU_OK(bm_insert(m, &mid, &x, 1, 1));
    for (uint64_t i = 0; i < N; i++) {
        bm_key k = base;
        k.bytes[31] = (uint8_t)i;
        k.bytes[30] = (uint8_t)(i >> 8);
        tu_expect_u64(m, &k, i, i % 3);
    }
    tu_expect_u64(m, &mid, 999, 1);
    ck_assert_uint_eq(bm_count(m), N + 1);
    bm_stats st;
    bm_get_stats(m, &st);
    ck_assert_uint_eq(st.buckets_allocated, 1);
    bm_close(m);
}
END_TEST

START_TEST(t_one_bucket_search_1)
{
    /* max_search 1: every collision forces an index grow. */
    enum { N = 300 };
    bm_map *m = tu_open(8, 1, 1);
    for (uint64_t i = 0; i < N; i++) {
        bm_key k = tu_key(i);
        TU_OK(bm_insert(m, &k, &i, 1, 1));
    }
    for (uint64_t i = 0; i < N; i++) {
        bm_key k = tu_key(i);
        tu_expect_u64(m, &k, i, 1);
    }
    for (uint64_t i = 0; i < N; i += 3) {
        bm_key k = tu_key(i);
        TU_OK(bm_delete(m, &k));
    }
    for (uint64_t i = 0; i < N; i++) {
        bm_key k = tu_key(i);
        if (i % 3 == 0)
            tu_expect_absent(m, &k);
        else
            tu_expect_u64(m, &k, i, 1);
    }
    ck_assert_uint_eq(bm_count(m), N - (N + 2) / 3);
    bm_stats st;
    bm_get_stats(m, &st);
    ck_assert_msg(st.index_grows > 0, "300 keys in one bucket with max_search 1 did not grow the index");
    bm_close(m);
}
END_TEST

static void elem_size_roundtrip(uint32_t es)
{
    const uint32_t lens[] = {0, 1, 2, 3, 4, 5, 16, 17, 33};
    bm_map *m = tu_open(es, 2, 0);
    size_t max_bytes = (size_t)es * 33;
    uint8_t *buf = tu_xmalloc(max_bytes);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (uint64_t rc = 0; rc < 3; rc++) {
            bm_key k = tu_key(i * 4 + rc);
            tu_fill(buf, (size_t)es * lens[i], es * 1000 + i * 4 + rc);
            TU_OK(bm_insert(m, &k, buf, lens[i], rc));
        }
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (uint64_t rc = 0; rc < 3; rc++) {
            bm_key k = tu_key(i * 4 + rc);
            tu_fill(buf, (size_t)es * lens[i], es * 1000 + i * 4 + rc);
            tu_expect_value(m, &k, es, buf, lens[i], rc);
        }
    /* Rewrite everything one class up, then read again: exercises moves between classes for this size. */
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (uint64_t rc = 0; rc < 3; rc++) {
            bm_key k = tu_key(i * 4 + rc);
            uint32_t n = lens[(i + 1) % (sizeof lens / sizeof lens[0])];
            tu_fill(buf, (size_t)es * n, es * 7000 + i * 4 + rc);
            TU_OK(bm_insert(m, &k, buf, n, rc + 1));
        }
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (uint64_t rc = 0; rc < 3; rc++) {
            bm_key k = tu_key(i * 4 + rc);
            uint32_t n = lens[(i + 1) % (sizeof lens / sizeof lens[0])];
            tu_fill(buf, (size_t)es * n, es * 7000 + i * 4 + rc);
            tu_expect_value(m, &k, es, buf, n, rc + 1);
        }
    free(buf);
    bm_close(m);
}

static const uint32_t elem_sizes[] = {1, 8, 16, 17, 4096};

START_TEST(t_elem_sizes)
{
    elem_size_roundtrip(elem_sizes[_i]);
}
END_TEST

/* ======================= the documented contract, call by call ======================= */

START_TEST(t_get_partial_copy)
{
    bm_map *m = tu_open(8, 2, 0);
    bm_key k = tu_key(1);
    uint64_t vals[10];
    tu_fill(vals, sizeof vals, 77);
    TU_OK(bm_insert(m, &k, vals, 10, 5));
    for (uint32_t cap = 0; cap <= 12; cap++) {
        uint64_t out[13];
        memset(out, 0xCC, sizeof out);
        uint32_t n = 0;
        uint64_t rc = 0;
        TU_OK(bm_get(m, &k, cap ? out : NULL, cap, &n, &rc));
        ck_assert_uint_eq(n, 10); /* the true count, whatever cap is */
        ck_assert_uint_eq(rc, 5);
        uint32_t copied = cap < 10 ? cap : 10;
        ck_assert(memcmp(out, vals, copied * 8u) == 0);
        const uint8_t *tail = (const uint8_t *)(out + copied);
        for (size_t b = 0; b < (13 - copied) * 8u; b++)
            ck_assert_msg(tail[b] == 0xCC, "bm_get with cap %u wrote beyond min(cap, n)", cap);
    }
    bm_close(m);
}
END_TEST

START_TEST(t_get_null_outputs)
{
    bm_map *m = tu_open(8, 2, 0);
    bm_key k = tu_key(1);
    uint64_t v[3] = {1, 2, 3};
    TU_OK(bm_insert(m, &k, v, 3, 9));
    uint64_t out[3] = {0};
    uint32_t n = 0;
    uint64_t rc = 0;
    TU_OK(bm_get(m, &k, out, 3, NULL, NULL));
    ck_assert(memcmp(out, v, sizeof v) == 0);
    TU_OK(bm_get(m, &k, NULL, 0, &n, NULL));
    ck_assert_uint_eq(n, 3);
    TU_OK(bm_get(m, &k, NULL, 0, NULL, &rc));
    ck_assert_uint_eq(rc, 9);
    TU_OK(bm_get(m, &k, NULL, 0, NULL, NULL));
    /* out may be non-NULL with cap 0: nothing is written. */
    memset(out, 0, sizeof out);
    TU_OK(bm_get(m, &k, out, 0, &n, &rc));
    ck_assert_uint_eq(out[0], 0);
    bm_close(m);
}
END_TEST

typedef struct read_probe {
    int calls;
    bm_value v;
    uint8_t copy[4096];
} read_probe;

static void read_probe_fn(const bm_value *v, void *ctx)
{
    read_probe *p = ctx;
    p->calls++;
    p->v = *v;
    size_t b = (size_t)v->n * 16;
    if (b > sizeof p->copy)
        b = sizeof p->copy;
    if (b)
        memcpy(p->copy, v->elems, b);
}

START_TEST(t_read_zero_copy)
{
    bm_map *m = tu_open(16, 2, 0);
    const uint32_t lens[] = {0, 1, 2, 17, 100};
    uint8_t buf[100 * 16];
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        bm_key k = tu_key(i);
        tu_fill(buf, sizeof buf, i);
        TU_OK(bm_insert(m, &k, buf, lens[i], i == 1 ? 1 : i + 10));
    }
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        bm_key k = tu_key(i);
        tu_fill(buf, sizeof buf, i);
        read_probe p = {0};
        TU_OK(bm_read(m, &k, read_probe_fn, &p));
        ck_assert_int_eq(p.calls, 1);
        ck_assert_uint_eq(p.v.n, lens[i]);
        ck_assert_uint_eq(p.v.refcount, i == 1 ? 1 : i + 10);
        ck_assert(lens[i] == 0 || p.v.elems != NULL);
        ck_assert(memcmp(p.copy, buf, (size_t)lens[i] * 16) == 0);
    }
    bm_key absent = tu_key(99);
    read_probe p = {0};
    TU_ERR(bm_read(m, &absent, read_probe_fn, &p), BM_ENOTFOUND);
    ck_assert_int_eq(p.calls, 0);
    bm_close(m);
}
END_TEST

START_TEST(t_update_semantics)
{
    bm_map *m = tu_open(8, 2, 0);
    bm_key k = tu_key(1), a = tu_key(2);
    uint64_t v[4] = {10, 11, 12, 13}, w[2] = {20, 21}, junk[3] = {666, 667, 668};

    /* Absent + BM_WRITE inserts; fn sees NULL. */
    upd_script u = {.action = BM_WRITE, .out = {.elems = v, .n = 4, .refcount = 3}, .elem_size = 8};
    TU_OK(bm_update(m, &k, upd_fn, &u));
    ck_assert_int_eq(u.calls, 1);
    ck_assert(u.saw_absent);
    tu_expect_value(m, &k, 8, v, 4, 3);

    /* Present + BM_WRITE: fn sees the current value, exactly once. */
    u = (upd_script){.action = BM_WRITE, .out = {.elems = w, .n = 2, .refcount = 0}, .elem_size = 8};
    TU_OK(bm_update(m, &k, upd_fn, &u));
    ck_assert_int_eq(u.calls, 1);
    ck_assert(!u.saw_absent);
    ck_assert_uint_eq(u.cur_n, 4);
    ck_assert_uint_eq(u.cur_rc, 3);
    ck_assert(memcmp(u.cur_bytes, v, sizeof v) == 0);
    tu_expect_value(m, &k, 8, w, 2, 0);

    /* BM_KEEP ignores whatever fn put in out. */
    u = (upd_script){.action = BM_KEEP, .out = {.elems = junk, .n = 3, .refcount = 99}, .elem_size = 8};
    TU_OK(bm_update(m, &k, upd_fn, &u));
    ck_assert_int_eq(u.calls, 1);
    tu_expect_value(m, &k, 8, w, 2, 0);
    u = (upd_script){.action = BM_KEEP, .out = {.elems = junk, .n = 3, .refcount = 99}, .elem_size = 8};
    TU_OK(bm_update(m, &a, upd_fn, &u));
    ck_assert_int_eq(u.calls, 1);
    tu_expect_absent(m, &a);
    ck_assert_uint_eq(bm_count(m), 1);

    /* A negative return from fn is returned as is and nothing changes. */
    const int errs[] = {-EPERM, -1, -777, BM_ENOTFOUND, BM_EINVAL, INT_MIN};
    for (size_t e = 0; e < sizeof errs / sizeof errs[0]; e++) {
        u = (upd_script){.action = errs[e], .out = {.elems = junk, .n = 3, .refcount = 99}, .elem_size = 8};
        TU_ERR(bm_update(m, &k, upd_fn, &u), errs[e]);
        ck_assert_int_eq(u.calls, 1);
        tu_expect_value(m, &k, 8, w, 2, 0);
        u = (upd_script){.action = errs[e], .out = {.elems = junk, .n = 3, .refcount = 99}, .elem_size = 8};
        TU_ERR(bm_update(m, &a, upd_fn, &u), errs[e]);
        ck_assert_int_eq(u.calls, 1);
        tu_expect_absent(m, &a);
    }
    ck_assert_uint_eq(bm_count(m), 1);

    /* elems NULL with n 0 is an empty list. */
    u = (upd_script){.action = BM_WRITE, .out = {.elems = NULL, .n = 0, .refcount = 4}, .elem_size = 8};
    TU_OK(bm_update(m, &k, upd_fn, &u));
    tu_expect_value(m, &k, 8, NULL, 0, 4);

    /* BM_DELETE removes. */
    u = (upd_script){.action = BM_DELETE, .elem_size = 8};
    TU_OK(bm_update(m, &k, upd_fn, &u));
    ck_assert_int_eq(u.calls, 1);
    ck_assert(!u.saw_absent);
    ck_assert_uint_eq(u.cur_n, 0);
    ck_assert_uint_eq(u.cur_rc, 4);
    tu_expect_absent(m, &k);
    ck_assert_uint_eq(bm_count(m), 0);
    bm_close(m);
}
END_TEST

START_TEST(t_addref_unref)
{
    bm_map *m = tu_open(8, 2, 0);
    bm_key k = tu_key(1), big = tu_key(2), absent = tu_key(3), mid = tu_key(4);
    uint64_t x = 0x1234567890abcdefull, nr = 0;

    /* ([x],1) is upstream's inline case; leaving and re-entering rc 1 must keep the element. */
    TU_OK(bm_insert(m, &k, &x, 1, 1));
    TU_OK(bm_addref(m, &k, &nr));
    ck_assert_uint_eq(nr, 2);
    tu_expect_u64(m, &k, x, 2);
    TU_OK(bm_unref(m, &k, &nr));
    ck_assert_uint_eq(nr, 1);
    tu_expect_u64(m, &k, x, 1);
    TU_OK(bm_unref(m, &k, &nr));
    ck_assert_uint_eq(nr, 0);
    tu_expect_u64(m, &k, x, 0);
    TU_ERR(bm_unref(m, &k, &nr), BM_EOVERFLOW);
    tu_expect_u64(m, &k, x, 0);
    TU_ERR(bm_unref(m, &k, NULL), BM_EOVERFLOW);
    tu_expect_u64(m, &k, x, 0);
    TU_OK(bm_addref(m, &k, NULL));
    tu_expect_u64(m, &k, x, 1);
    ck_assert_uint_eq(bm_count(m), 1);

    /* The refcount is a full u64, past upstream's 63-bit limit. */
    uint64_t list[3] = {7, 8, 9};
    TU_OK(bm_insert(m, &mid, list, 3, (1ull << 63) - 1));
    TU_OK(bm_addref(m, &mid, &nr));
    ck_assert_uint_eq(nr, 1ull << 63);
    tu_expect_value(m, &mid, 8, list, 3, 1ull << 63);
    TU_OK(bm_unref(m, &mid, &nr));
    ck_assert_uint_eq(nr, (1ull << 63) - 1);

    TU_OK(bm_insert(m, &big, list, 3, UINT64_MAX));
    TU_ERR(bm_addref(m, &big, &nr), BM_EOVERFLOW);
    tu_expect_value(m, &big, 8, list, 3, UINT64_MAX);
    TU_OK(bm_unref(m, &big, &nr));
    ck_assert_uint_eq(nr, UINT64_MAX - 1);
    TU_OK(bm_addref(m, &big, &nr));
    ck_assert_uint_eq(nr, UINT64_MAX);
    tu_expect_value(m, &big, 8, list, 3, UINT64_MAX);

    /* Empty lists too: ([],1) <-> ([],0) <-> ([],2). */
    bm_key e = tu_key(5);
    TU_OK(bm_insert(m, &e, NULL, 0, 1));
    TU_OK(bm_unref(m, &e, &nr));
    ck_assert_uint_eq(nr, 0);
    tu_expect_value(m, &e, 8, NULL, 0, 0);
    TU_OK(bm_addref(m, &e, &nr));
    TU_OK(bm_addref(m, &e, &nr));
    ck_assert_uint_eq(nr, 2);
    tu_expect_value(m, &e, 8, NULL, 0, 2);

    TU_ERR(bm_addref(m, &absent, &nr), BM_ENOTFOUND);
    TU_ERR(bm_unref(m, &absent, &nr), BM_ENOTFOUND);
    tu_expect_absent(m, &absent);
    ck_assert_uint_eq(bm_count(m), 4);
    bm_close(m);
}
END_TEST

static void max_value_for(uint32_t es)
{
    uint32_t nmax = BM_MAX_VALUE_BYTES / es;
    size_t bytes = (size_t)(nmax + 1) * es;
    uint8_t *buf = tu_xmalloc(bytes);
    tu_fill(buf, bytes, es);
    bm_config cfg = {.elem_size = es, .max_buckets = 2};
    bm_map *m = tu_open_cfg(&cfg);
    bm_key k = tu_key(1), fresh = tu_key(2);
    TU_OK(bm_insert(m, &k, buf, nmax, 3));
    tu_expect_value(m, &k, es, buf, nmax, 3);

    /* One element of es bytes (es is up to 4096, so it cannot live in a small stack buffer). */
    uint8_t *small = tu_xmalloc(es);
    tu_fill(small, es, 5);
    TU_OK(bm_insert(m, &k, small, 1, 3));
    TU_ERR(bm_insert(m, &k, buf, nmax + 1, 4), BM_ETOOBIG);
    tu_expect_value(m, &k, es, small, 1, 3);
    TU_ERR(bm_insert(m, &fresh, buf, nmax + 1, 4), BM_ETOOBIG);
    tu_expect_absent(m, &fresh);

    upd_script u = {.action = BM_WRITE, .out = {.elems = buf, .n = nmax + 1, .refcount = 9}, .elem_size = es};
    TU_ERR(bm_update(m, &k, upd_fn, &u), BM_ETOOBIG);
    ck_assert_int_eq(u.calls, 1);
    tu_expect_value(m, &k, es, small, 1, 3);

    u = (upd_script){.action = BM_WRITE, .out = {.elems = buf, .n = nmax, .refcount = 9}, .elem_size = es};
    TU_OK(bm_update(m, &fresh, upd_fn, &u));
    tu_expect_value(m, &fresh, es, buf, nmax, 9);
    ck_assert_uint_eq(bm_count(m), 2);
    bm_close(m);
    free(small);
    free(buf);
}

static const uint32_t max_value_sizes[] = {8, 4096, 3};

START_TEST(t_max_value)
{
    max_value_for(max_value_sizes[_i]);
}
END_TEST

START_TEST(t_count)
{
    bm_map *m = tu_open(8, 8, 0);
    ck_assert_uint_eq(bm_count(m), 0);
    for (uint64_t i = 0; i < 500; i++) {
        bm_key k = tu_key(i);
        TU_OK(bm_insert(m, &k, &i, 1, 1));
        ck_assert_uint_eq(bm_count(m), i + 1);
    }
    for (uint64_t i = 0; i < 500; i++) { /* overwrites do not count */
        bm_key k = tu_key(i);
        TU_OK(bm_insert(m, &k, NULL, 0, 2));
    }
    ck_assert_uint_eq(bm_count(m), 500);
    for (uint64_t i = 0; i < 500; i += 5) {
        bm_key k = tu_key(i);
        TU_OK(bm_delete(m, &k));
    }
    ck_assert_uint_eq(bm_count(m), 400);
    ck_assert_uint_eq(bm_count(NULL), 0);
    bm_close(m);
}
END_TEST

typedef struct fe_state {
    uint8_t *seen;
    uint64_t nkeys;
    uint64_t calls;
    uint64_t stop_after; /* 0 = never */
    int stop_with;
    bool bad;
    char why[200];
} fe_state;

static int fe_fn(const bm_key *k, const bm_value *v, void *ctx)
{
    fe_state *s = ctx;
    s->calls++;
    uint64_t i = tu_key_index(k);
    bm_key want = tu_key(i);
    if (i >= s->nkeys || memcmp(&want, k, sizeof want) != 0) {
        s->bad = true;
        snprintf(s->why, sizeof s->why, "unknown key visited (index %" PRIu64 ")", i);
    } else {
        s->seen[i]++;
        uint64_t buf[6];
        tu_fill(buf, sizeof buf, i);
        if (v->n != i % 6 || v->refcount != i || (v->n && memcmp(v->elems, buf, v->n * 8u) != 0)) {
            s->bad = true;
            snprintf(s->why, sizeof s->why, "key %" PRIu64 " visited with a wrong value", i);
        }
    }
    if (s->stop_after && s->calls == s->stop_after)
        return s->stop_with;
    return 0;
}

START_TEST(t_foreach)
{
    enum { N = 1000 };
    bm_map *m = tu_open(8, 16, 0);
    fe_state s = {.seen = calloc(N, 1), .nkeys = N};
    ck_assert_ptr_nonnull(s.seen);
    TU_OK(bm_foreach(m, fe_fn, &s)); /* empty map */
    ck_assert_uint_eq(s.calls, 0);
    uint64_t buf[6];
    for (uint64_t i = 0; i < N; i++) {
        bm_key k = tu_key(i);
        tu_fill(buf, sizeof buf, i);
        TU_OK(bm_insert(m, &k, buf, (uint32_t)(i % 6), i));
    }
    for (uint64_t i = 0; i < N; i += 4) {
        bm_key k = tu_key(i);
        TU_OK(bm_delete(m, &k));
    }
    TU_OK(bm_foreach(m, fe_fn, &s));
    ck_assert_msg(!s.bad, "%s", s.why);
    ck_assert_uint_eq(s.calls, N - N / 4);
    for (uint64_t i = 0; i < N; i++)
        ck_assert_msg(s.seen[i] == (i % 4 ? 1 : 0), "key %" PRIu64 " visited %u times", i, s.seen[i]);

    /* A nonzero return stops the walk right there and comes back unchanged. */
    const int stops[] = {7, -5, 1, INT_MAX};
    for (size_t t = 0; t < sizeof stops / sizeof stops[0]; t++) {
        memset(s.seen, 0, N);
        s.calls = 0;
        s.stop_after = 3 + t * 100;
        s.stop_with = stops[t];
        TU_ERR(bm_foreach(m, fe_fn, &s), stops[t]);
        ck_assert_uint_eq(s.calls, s.stop_after);
    }
    free(s.seen);
    bm_close(m);
}
END_TEST

START_TEST(t_strerror)
{
    const int codes[] = {BM_OK,        BM_ENOTFOUND, BM_EINVAL,    BM_ETOOBIG,  BM_EBUSY,   BM_ECORRUPT,
                         BM_EVERSION,  BM_EMISMATCH, BM_EOVERFLOW, BM_ELOCKED,  BM_EFAILED, BM_ENOSPACE};
    const size_t nc = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < nc; i++) {
        const char *s = bm_strerror(codes[i]);
        ck_assert_msg(s != NULL && s[0] != '\0', "bm_strerror(%d) is NULL or empty", codes[i]);
    }
    /* The library's own errors must be told apart by their messages. */
    for (size_t i = 1; i < nc; i++)
        for (size_t j = i + 1; j < nc; j++)
            ck_assert_msg(strcmp(bm_strerror(codes[i]), bm_strerror(codes[j])) != 0,
                          "bm_strerror(%d) and bm_strerror(%d) give the same message", codes[i], codes[j]);
    for (int e = 1; e < 4096; e++) {
        const char *s = bm_strerror(-e);
        ck_assert_msg(s != NULL && s[0] != '\0', "bm_strerror(-%d) is NULL or empty", e);
    }
    const int unknown[] = {1, 2, 42, 4096, -4096, -5000, -10000, -10012, -10099, -20000, 10001, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = bm_strerror(unknown[i]);
        ck_assert_msg(s != NULL && s[0] != '\0', "bm_strerror(%d) is NULL or empty", unknown[i]);
    }
}
END_TEST

START_TEST(t_stats)
{
    enum { N = 3000 };
    bm_stats st;
    memset(&st, 0xFF, sizeof st);
    bm_get_stats(NULL, &st);
    const uint8_t *raw = (const uint8_t *)&st;
    for (size_t b = 0; b < sizeof st; b++)
        ck_assert_msg(raw[b] == 0, "bm_get_stats(NULL) left nonzero counters");

    bm_map *m = tu_open(8, 2, 0);
    bm_get_stats(m, &st);
    ck_assert_uint_eq(st.entries, 0);
    uint64_t buf[5];
    for (uint64_t i = 0; i < N; i++) {
        bm_key k = tu_key(i);
        tu_fill(buf, sizeof buf, i);
        TU_OK(bm_insert(m, &k, buf, (uint32_t)(i % 6), 1));
    }
    bm_get_stats(m, &st);
    ck_assert_uint_eq(st.entries, bm_count(m));
    ck_assert_uint_eq(st.entries, N);
    ck_assert_uint_eq(st.buckets_allocated, 2);
    ck_assert_msg(st.index_grows > 0, "%d keys in 2 buckets reported no index grow", N);
    ck_assert_uint_ge(st.index_capacity, N);
    ck_assert_uint_gt(st.index_bytes, 0);
    ck_assert_uint_gt(st.data_bytes, 0);
    ck_assert_uint_ge(st.files, 2);
    /* Lists of 2..5 elements need a data cell each (0 and 1 may not). */
    ck_assert_uint_ge(st.data_cells_used, (uint64_t)N * 4 / 6);
    ck_assert_uint_ge(st.grow_ns, 1);

    for (uint64_t i = 0; i < N; i += 3) {
        bm_key k = tu_key(i);
        TU_OK(bm_delete(m, &k));
    }
    bm_get_stats(m, &st);
    ck_assert_uint_eq(st.entries, bm_count(m));
    ck_assert_uint_eq(st.entries, N - N / 3);
    bm_close(m);

    /* Buckets are created lazily: one key in a 256-bucket map allocates one bucket, reads allocate none. */
    m = tu_open(8, 0, 0);
    bm_key k = tu_key(1);
    TU_OK(bm_insert(m, &k, buf, 1, 1));
    for (uint64_t i = 2; i < 300; i++) {
        bm_key o = tu_key(i);
        bm_get(m, &o, NULL, 0, NULL, NULL);
    }
    bm_get_stats(m, &st);
    ck_assert_uint_eq(st.buckets_allocated, 1);
    ck_assert_uint_eq(st.entries, 1);
    bm_close(m);
}
END_TEST

START_TEST(t_null_map_queries)
{
    bm_close(NULL);
    ck_assert_uint_eq(bm_count(NULL), 0);
}
END_TEST

START_TEST(t_bucket_of)
{
    bm_key k;
    memset(&k, 0, sizeof k);
    k.bytes[0] = 0xC0; /* top two bits 11 */
    ck_assert_uint_eq(bm_bucket_of(&k, 1), 0);
    ck_assert_uint_eq(bm_bucket_of(&k, 2), 1);
    ck_assert_uint_eq(bm_bucket_of(&k, 4), 3);
    ck_assert_uint_eq(bm_bucket_of(&k, 8), 6);
    k.bytes[0] = 0x12;
    k.bytes[1] = 0x34;
    k.bytes[7] = 0x01;
    ck_assert_uint_eq(bm_bucket_of(&k, 1u << 16), 0x1234);
    ck_assert_uint_eq(bm_bucket_of(&k, BM_MAX_BUCKETS), 0x1234); /* BM_MAX_BUCKETS == 1 << 16 */
    ck_assert_uint_eq(bm_bucket_of(&k, BM_MAX_BUCKETS * 2), 0); /* too many buckets: invalid */
    for (uint32_t nb = 1; nb <= 1024; nb *= 2)
        for (uint32_t b = 0; b < nb; b += (nb / 8 ? nb / 8 : 1)) {
            bm_key t = tu_key_in_bucket(b * 7 + nb, b, nb);
            ck_assert_uint_eq(bm_bucket_of(&t, nb), b);
        }
    ck_assert_uint_eq(bm_bucket_of(NULL, 4), 0);
    ck_assert_uint_eq(bm_bucket_of(&k, 3), 0);
    ck_assert_uint_eq(bm_bucket_of(&k, 0), 0);
}
END_TEST

START_TEST(t_flush_temporary)
{
    bm_map *m = tu_open(8, 2, 0);
    bm_key k = tu_key(1);
    TU_OK(bm_insert(m, &k, NULL, 0, 3));
    TU_OK(bm_flush(m));
    tu_expect_value(m, &k, 8, NULL, 0, 3);
    bm_close(m);
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("api_upstream");
    TCase *tc = tcase_create("upstream");
    tcase_set_timeout(tc, TU_TIMEOUT);
    tcase_add_test(tc, t_insert);
    tcase_add_test(tc, t_insert2);
    tcase_add_test(tc, t_update2);
    tcase_add_test(tc, t_update);
    tcase_add_test(tc, t_update_to_0_len);
    tcase_add_test(tc, t_delete);
    tcase_add_test(tc, t_delete_2);
    tcase_add_test(tc, t_n_drives);
    tcase_add_test(tc, t_grow_read);
    tcase_add_test(tc, t_grow_read_tight);
    tcase_add_test(tc, t_n_delete);
    suite_add_tcase(s, tc);

    tc = tcase_create("edge");
    tcase_set_timeout(tc, TU_TIMEOUT);
    tcase_add_test(tc, t_empty_list_refcounts);
    tcase_add_test(tc, t_refcount_extremes);
    tcase_add_test(tc, t_class_boundaries);
    tcase_add_test(tc, t_shrink_grow_classes);
    tcase_add_test(tc, t_update_delete_absent);
    tcase_add_test(tc, t_delete_absent);
    tcase_add_test(tc, t_delete_reinsert_many);
    tcase_add_test(tc, t_same_prefix_keys);
    tcase_add_test(tc, t_one_bucket_search_1);
    tcase_add_loop_test(tc, t_elem_sizes, 0, (int)(sizeof elem_sizes / sizeof elem_sizes[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("contract");
    tcase_set_timeout(tc, TU_TIMEOUT);
    tcase_add_test(tc, t_get_partial_copy);
    tcase_add_test(tc, t_get_null_outputs);
    tcase_add_test(tc, t_read_zero_copy);
    tcase_add_test(tc, t_update_semantics);
    tcase_add_test(tc, t_addref_unref);
    tcase_add_loop_test(tc, t_max_value, 0, (int)(sizeof max_value_sizes / sizeof max_value_sizes[0]));
    tcase_add_test(tc, t_count);
    tcase_add_test(tc, t_foreach);
    tcase_add_test(tc, t_strerror);
    tcase_add_test(tc, t_stats);
    tcase_add_test(tc, t_null_map_queries);
    tcase_add_test(tc, t_bucket_of);
    tcase_add_test(tc, t_flush_temporary);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(api_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
