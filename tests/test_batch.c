/*
 * test_batch — bm_get_batch gives, key by key, exactly what bm_get gives.
 *
 * Every check compares a batch's per-key status, count, refcount and copied bytes with a bm_get of the same
 * key (and what the test stored), over present, absent, zero-element, inline and multi-element keys, caps
 * that truncate, NULL result arrays, keys spread over many buckets (most without files), batches of every
 * size around the library's group size, values large enough to cut a group short, a damaged entry (that key
 * alone is BM_ECORRUPT), invalid arguments, and calls from callbacks (refused where bm_get is). Concurrent
 * batches against writers are in test_concurrency.
 */
#include "tu.h"

#include <sys/stat.h>

#define SENTINEL 0xA5

/* Element count of key i (0 and large counts included, so every tag and several size classes occur). */
static uint32_t len_of(uint64_t i)
{
    static const uint32_t lens[] = {1, 0, 1, 2, 3, 1, 5, 8, 17, 1, 33, 64, 1, 2};
    return lens[i % (sizeof lens / sizeof lens[0])];
}

static uint64_t rc_of(uint64_t i) { return tu_mix64(i) >> 8; }

/* Stores keys [0, n) (key i present unless i % 5 == 4) in m. */
static void fill(bm_map *m, uint32_t es, uint64_t n)
{
    uint8_t *buf = tu_xmalloc((size_t)64 * es);
    for (uint64_t i = 0; i < n; i++) {
        if (i % 5 == 4)
            continue;
        bm_key k = tu_key(i);
        uint32_t len = len_of(i);
        tu_fill(buf, (size_t)len * es, i);
        TU_OK(bm_insert(m, &k, len ? buf : NULL, len, rc_of(i)));
    }
    free(buf);
}

/* Check reports every passing assert to its parent process (a write to a pipe): the per-key checks below
 * assert only on failure, or they would dominate the run. */
#define CHECK(cond, ...)                                                                                \
    do {                                                                                               \
        if (!(cond))                                                                                   \
            ck_abort_msg(__VA_ARGS__);                                                                 \
    } while (0)

/* Whether p[0..len) still holds the sentinel. */
static bool untouched(const uint8_t *p, size_t len)
{
    for (size_t b = 0; b < len; b++)
        if (p[b] != SENTINEL)
            return false;
    return true;
}

/* Runs one batch over keys[0..nk) with the given cap (NULL arrays when with_arrays is false) and checks every
 * key against bm_get and against what fill stored. */
static void check_batch(bm_map *m, uint32_t es, const bm_key *keys, size_t nk, uint32_t cap, bool with_arrays)
{
    size_t slot = (size_t)cap * es;
    uint8_t *out = tu_xmalloc(nk * slot + 1), *one = tu_xmalloc(slot + 1);
    uint32_t *n = with_arrays ? tu_xmalloc(nk * sizeof *n) : NULL;
    uint64_t *rc = with_arrays ? tu_xmalloc(nk * sizeof *rc) : NULL;
    int *st = tu_xmalloc(nk * sizeof *st);
    memset(out, SENTINEL, nk * slot + 1);
    for (size_t i = 0; i < nk; i++) {
        st[i] = 12345;
        if (n)
            n[i] = 0xDEAD;
        if (rc)
            rc[i] = 0xDEAD;
    }
    int found = bm_get_batch(m, keys, nk, cap ? out : NULL, cap, n, rc, st);
    CHECK(found >= 0, "bm_get_batch returned %d (%s)", found, bm_strerror(found));
    int want_found = 0;
    uint8_t *want = tu_xmalloc((size_t)64 * es + 1);
    for (size_t i = 0; i < nk; i++) {
        uint32_t gn = 0;
        uint64_t grc = 0;
        memset(one, SENTINEL, slot + 1);
        int gr = bm_get(m, &keys[i], cap ? one : NULL, cap, &gn, &grc);
        CHECK(st[i] == gr, "key %zu (cap %u): batch status %d, bm_get %d", i, cap, st[i], gr);
        uint8_t *mine = out + i * slot;
        if (gr) {
            if (n)
                CHECK(n[i] == 0, "key %zu not found, n %u", i, n[i]);
            if (rc)
                CHECK(rc[i] == 0, "key %zu not found, refcount %" PRIu64, i, rc[i]);
            CHECK(untouched(mine, slot), "key %zu not found but its slot was written", i);
            continue;
        }
        want_found++;
        uint64_t idx = tu_key_index(&keys[i]);
        uint32_t len = len_of(idx);
        CHECK(gn == len, "key %zu: bm_get n %u, stored %u", i, gn, len);
        CHECK(grc == rc_of(idx), "key %zu: bm_get refcount %" PRIu64 " is not the stored one", i, grc);
        if (n)
            CHECK(n[i] == gn, "key %zu: batch n %u, bm_get %u", i, n[i], gn);
        if (rc)
            CHECK(rc[i] == grc, "key %zu: batch refcount %" PRIu64 ", bm_get %" PRIu64, i, rc[i], grc);
        size_t copied = (size_t)(len < cap ? len : cap) * es;
        tu_fill(want, (size_t)len * es, idx);
        CHECK(memcmp(mine, want, copied) == 0, "key %zu: batch copied wrong bytes", i);
        CHECK(memcmp(one, want, copied) == 0, "key %zu: bm_get copied wrong bytes", i);
        CHECK(untouched(mine + copied, slot - copied), "key %zu: batch wrote past its %zu bytes", i, copied);
    }
    CHECK(out[nk * slot] == SENTINEL, "the batch wrote past its output buffer");
    CHECK(found == want_found, "batch found %d, bm_get %d", found, want_found);
    free(out), free(one), free(n), free(rc), free(st), free(want);
}

/* elem_size: 8 (one element inline), 16 (largest inline), 24 (every non-empty value in a data cell), 1. */
static const uint32_t elem_sizes[] = {8, 16, 24, 1};

START_TEST(t_matches_get)
{
    uint32_t es = elem_sizes[_i];
    const uint64_t N = 3000;
    bm_map *m = tu_open(es, 64, 0);
    fill(m, es, N);
    /* Present and absent keys (every fifth was never stored, and keys past N), shuffled, one repeated. */
    size_t nk = N + 200;
    bm_key *keys = tu_xmalloc(nk * sizeof *keys);
    tu_rng r = {0x1234 + _i};
    for (size_t i = 0; i < nk; i++)
        keys[i] = tu_key(tu_below(&r, N + 100));
    keys[7] = keys[3];
    static const uint32_t caps[] = {0, 1, 3, 64, 100};
    static const size_t sizes[] = {1, 2, 31, 32, 33, 65, 500}; /* around the library's group of 32 */
    for (unsigned c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        check_batch(m, es, keys, nk, caps[c], true);
        check_batch(m, es, keys, nk, caps[c], false);
    }
    for (unsigned s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t off = 0; off + sizes[s] <= nk; off += sizes[s] * 7 + 1)
            check_batch(m, es, keys + off, sizes[s], s & 1 ? 64 : 2, s & 2);
    free(keys);
    bm_close(m);
}
END_TEST

/* Most of 4096 buckets have no files (absent keys there must not touch a state); an empty map too. */
START_TEST(t_absent_buckets)
{
    bm_map *m = tu_open(8, 4096, 0);
    bm_key keys[600];
    for (uint64_t i = 0; i < 600; i++)
        keys[i] = tu_key(i);
    check_batch(m, 8, keys, 600, 4, true); /* nothing stored at all */
    for (uint64_t i = 0; i < 600; i += 50) {
        uint32_t len = len_of(i);
        uint8_t buf[64 * 8];
        tu_fill(buf, (size_t)len * 8, i);
        TU_OK(bm_insert(m, &keys[i], len ? buf : NULL, len, rc_of(i)));
    }
    check_batch(m, 8, keys, 600, 4, true);
    check_batch(m, 8, keys, 600, 64, false);
    bm_close(m);
}
END_TEST

START_TEST(t_nkeys_zero)
{
    bm_map *m = tu_open(8, 4, 0);
    fill(m, 8, 100);
    bm_key k = tu_key(0);
    int st = 77;
    uint64_t out = 99;
    ck_assert_int_eq(bm_get_batch(m, NULL, 0, NULL, 0, NULL, NULL, NULL), 0);
    ck_assert_int_eq(bm_get_batch(m, &k, 0, &out, 1, NULL, NULL, &st), 0);
    ck_assert_int_eq(st, 77);
    ck_assert_uint_eq(out, 99);
    bm_close(m);
}
END_TEST

START_TEST(t_invalid_args)
{
    bm_map *m = tu_open(8, 4, 0);
    fill(m, 8, 10);
    bm_key k[2] = {tu_key(0), tu_key(1)};
    uint64_t out[2] = {99, 99};
    uint32_t n[2] = {77, 77};
    int st[2] = {77, 77};
    TU_ERR(bm_get_batch(NULL, k, 2, out, 1, n, NULL, st), BM_EINVAL);
    TU_ERR(bm_get_batch(m, NULL, 2, out, 1, n, NULL, st), BM_EINVAL);
    TU_ERR(bm_get_batch(m, k, 2, out, 1, n, NULL, NULL), BM_EINVAL);
    TU_ERR(bm_get_batch(m, k, 2, NULL, 1, n, NULL, st), BM_EINVAL);
    TU_ERR(bm_get_batch(NULL, NULL, 0, NULL, 0, NULL, NULL, NULL), BM_EINVAL);
    /* The return value counts found keys, and key i's slot starts at i * cap * elem_size. */
    TU_ERR(bm_get_batch(m, k, (size_t)INT_MAX + 1, NULL, 0, NULL, NULL, st), BM_EINVAL);
    TU_ERR(bm_get_batch(m, k, (size_t)1 << 30, out, UINT32_MAX, NULL, NULL, st), BM_EINVAL);
    ck_assert(out[0] == 99 && out[1] == 99 && n[0] == 77 && st[0] == 77 && st[1] == 77); /* nothing written */
    TU_ERR(bm_get_batch(m, k, 2, NULL, 0, NULL, NULL, st), 2); /* cap 0: status only */
    ck_assert(st[0] == 0 && st[1] == 0);
    bm_close(m);
}
END_TEST

/* Values of 40,000 elements: a group's read section is cut short after a few keys, the rest of the group
 * goes to the next one; results are unchanged. */
START_TEST(t_large_values)
{
    const uint32_t big = 40000;
    bm_map *m = tu_open(8, 2, 0);
    uint64_t *buf = tu_xmalloc((size_t)big * 8);
    bm_key keys[40];
    for (uint64_t i = 0; i < 40; i++) {
        keys[i] = tu_key(i);
        tu_fill(buf, (size_t)big * 8, i);
        if (i % 7 != 3)
            TU_OK(bm_insert(m, &keys[i], buf, i % 3 ? big : 2, i));
    }
    uint32_t caps[] = {0, 5, big};
    for (unsigned c = 0; c < 3; c++) {
        uint32_t cap = caps[c];
        uint64_t *out = tu_xmalloc((size_t)40 * (cap ? cap : 1) * 8);
        uint32_t n[40];
        uint64_t rc[40];
        int st[40];
        int found = bm_get_batch(m, keys, 40, cap ? out : NULL, cap, n, rc, st);
        int want = 0;
        for (uint64_t i = 0; i < 40; i++) {
            if (i % 7 == 3) {
                ck_assert_int_eq(st[i], BM_ENOTFOUND);
                continue;
            }
            want++;
            uint32_t len = i % 3 ? big : 2;
            ck_assert_int_eq(st[i], 0);
            ck_assert_uint_eq(n[i], len);
            ck_assert_uint_eq(rc[i], i);
            tu_fill(buf, (size_t)len * 8, i);
            size_t cp = len < cap ? len : cap;
            ck_assert(memcmp(out + i * cap, buf, cp * 8) == 0);
        }
        ck_assert_int_eq(found, want);
        free(out);
    }
    free(buf);
    bm_close(m);
}
END_TEST

/* ---- a damaged entry: that key alone is BM_ECORRUPT ---- */

/* Flips a bit of byte `at` of the single copy of pat in the *.bm files of dir. Returns the copies found. */
static int flip_in_dir(const char *dir, const void *pat, size_t len, size_t at)
{
    return tu_flip_in_bm_files(&dir, 1, pat, len, at);
}

/* _i = 0: the victim's one element inline in its entry; 1: three elements in a data cell. */
START_TEST(t_corrupt_entry)
{
    char dir[PATH_MAX];
    tu_mkdtemp(dir, "batch");
    const char *drives[] = {dir};
    bm_config cfg = {.elem_size = 8, .max_buckets = 8, .drives = drives, .n_drives = 1};
    bm_map *m = tu_open_cfg(&cfg);
    const uint64_t N = 1000, victim = 321;
    fill(m, 8, N);
    uint64_t e[3];
    uint32_t vn = _i ? 3 : 1;
    for (uint32_t j = 0; j < vn; j++)
        e[j] = 0x3C5A0F1E2D4B6978ull + j * 0x0101010101010101ull; /* a pattern no other value holds */
    bm_key vk = tu_key(victim);
    TU_OK(bm_insert(m, &vk, e, vn, 5));
    ck_assert_int_eq(flip_in_dir(dir, &e[vn - 1], 8, 3), 1);
    TU_ERR(bm_get(m, &vk, e, 3, NULL, NULL), BM_ECORRUPT);

    bm_key *keys = tu_xmalloc(N * sizeof *keys);
    for (uint64_t i = 0; i < N; i++)
        keys[i] = tu_key(i);
    uint64_t *out = tu_xmalloc(N * 64 * 8);
    int *st = tu_xmalloc(N * sizeof *st);
    uint32_t *n = tu_xmalloc(N * sizeof *n);
    int found = bm_get_batch(m, keys, N, out, 64, n, NULL, st);
    int want = 0;
    for (uint64_t i = 0; i < N; i++) {
        if (i == victim) {
            ck_assert_int_eq(st[i], BM_ECORRUPT);
            ck_assert_uint_eq(n[i], 0);
        } else {
            ck_assert_int_eq(st[i], i % 5 == 4 ? BM_ENOTFOUND : 0);
            want += st[i] == 0;
        }
    }
    ck_assert_int_eq(found, want);
    check_batch(m, 8, keys, victim, 64, true); /* the keys before it are unchanged */
    free(keys), free(out), free(st), free(n);
    bm_close(m);
    tu_rmrf(dir);
}
END_TEST

/* ---- callbacks: refused where bm_get is ---- */

struct cb_ctx {
    bm_map *m, *other;
    int get, batch, batch_other;
};

static void in_read(const bm_value *v, void *arg)
{
    (void)v;
    struct cb_ctx *c = arg;
    bm_key k = tu_key(0);
    int st;
    c->get = bm_get(c->m, &k, NULL, 0, NULL, NULL);
    c->batch = bm_get_batch(c->m, &k, 1, NULL, 0, NULL, NULL, &st);
    c->batch_other = bm_get_batch(c->other, &k, 1, NULL, 0, NULL, NULL, &st);
}

static int in_update(const bm_value *cur, bm_value *out, void *arg)
{
    (void)cur, (void)out;
    struct cb_ctx *c = arg;
    bm_key k = tu_key(0);
    int st;
    c->get = bm_get(c->m, &k, NULL, 0, NULL, NULL);
    c->batch = bm_get_batch(c->m, &k, 1, NULL, 0, NULL, NULL, &st);
    c->batch_other = bm_get_batch(c->other, &k, 1, NULL, 0, NULL, NULL, &st); /* another map: allowed */
    return BM_KEEP;
}

START_TEST(t_refused_in_callbacks)
{
    bm_map *m = tu_open(8, 4, 0), *other = tu_open(8, 4, 0);
    fill(m, 8, 10);
    fill(other, 8, 10);
    bm_key k = tu_key(0);
    struct cb_ctx c = {m, other, 1, 1, 1};
    TU_OK(bm_read(m, &k, in_read, &c));
    TU_ERR(c.get, BM_EBUSY);
    TU_ERR(c.batch, BM_EBUSY);
    TU_ERR(c.batch_other, BM_EBUSY); /* inside any read callback */
    c = (struct cb_ctx){m, other, 1, 1, 1};
    TU_OK(bm_update(m, &k, in_update, &c));
    TU_ERR(c.get, BM_EBUSY);
    TU_ERR(c.batch, BM_EBUSY);
    TU_ERR(c.batch_other, 1);
    bm_close(m);
    bm_close(other);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, TU_TIMEOUT);
    tcase_add_loop_test(tc, t_matches_get, 0, (int)(sizeof elem_sizes / sizeof elem_sizes[0]));
    tcase_add_test(tc, t_absent_buckets);
    tcase_add_test(tc, t_nkeys_zero);
    tcase_add_test(tc, t_invalid_args);
    tcase_add_test(tc, t_large_values);
    tcase_add_loop_test(tc, t_corrupt_entry, 0, 2);
    tcase_add_test(tc, t_refused_in_callbacks);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
