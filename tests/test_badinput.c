/*
 * test_badinput — every bad argument and every forbidden call is an error return, never a crash, and a
 * failed call leaves the map exactly as it was and usable.
 *
 * Each map-level test builds a map with a known baseline (keys across size classes and refcounts), makes
 * the bad call, then checks with check_intact() that bm_count, every baseline value and a full bm_foreach
 * are unchanged and that a fresh write/read/delete still works.
 */
#include "tu.h"

enum { NBASE = 40, ES = 8 };

/* ---- baseline map ---- */

static uint32_t base_len(uint64_t i)
{
    static const uint32_t lens[] = {0, 1, 2, 3, 5, 9, 17, 33};
    return lens[i % 8];
}

static uint64_t base_rc(uint64_t i)
{
    static const uint64_t rcs[] = {1, 0, 2, UINT64_MAX, 1ull << 63};
    return rcs[i % 5];
}

static bm_map *open_baseline(void)
{
    bm_map *m = tu_open(ES, 4, 0);
    uint64_t buf[33];
    for (uint64_t i = 0; i < NBASE; i++) {
        bm_key k = tu_key(i);
        tu_fill(buf, sizeof buf, i);
        TU_OK(bm_insert(m, &k, buf, base_len(i), base_rc(i)));
    }
    return m;
}

typedef struct fe_count {
    uint64_t visits;
    uint64_t bad;
} fe_count;

static int fe_check(const bm_key *k, const bm_value *v, void *ctx)
{
    fe_count *c = ctx;
    c->visits++;
    uint64_t i = tu_key_index(k);
    bm_key want = tu_key(i);
    uint64_t buf[33];
    tu_fill(buf, sizeof buf, i);
    if (i >= NBASE || memcmp(&want, k, sizeof want) != 0 || v->n != base_len(i) || v->refcount != base_rc(i) ||
        (v->n && memcmp(v->elems, buf, (size_t)v->n * ES) != 0))
        c->bad++;
    return 0;
}

#define check_intact(m) check_intact_at(__LINE__, m)

static void check_intact_at(int line, bm_map *m)
{
    ck_assert_msg(bm_count(m) == NBASE, "line %d: bm_count=%" PRIu64 " after a failed call, expected %d", line,
                  bm_count(m), NBASE);
    uint64_t buf[33];
    for (uint64_t i = 0; i < NBASE; i++) {
        bm_key k = tu_key(i);
        tu_fill(buf, sizeof buf, i);
        tu_expect_value_at(line, m, &k, ES, buf, base_len(i), base_rc(i));
    }
    fe_count c = {0};
    int r = bm_foreach(m, fe_check, &c);
    ck_assert_msg(r == 0, "line %d: bm_foreach returned %d (%s)", line, r, bm_strerror(r));
    ck_assert_msg(c.visits == NBASE && c.bad == 0, "line %d: bm_foreach visited %" PRIu64 " (%" PRIu64 " bad)",
                  line, c.visits, c.bad);
    /* Still usable: a write, a read and a delete of a scratch key. */
    bm_key s = tu_key(1000000);
    uint64_t x = 0xfeedface;
    r = bm_insert(m, &s, &x, 1, 5);
    ck_assert_msg(r == 0, "line %d: map unusable after a failed call: bm_insert returned %d (%s)", line, r,
                  bm_strerror(r));
    tu_expect_u64_at(line, m, &s, x, 5);
    r = bm_delete(m, &s);
    ck_assert_msg(r == 0, "line %d: bm_delete of the scratch key returned %d (%s)", line, r, bm_strerror(r));
    ck_assert_msg(bm_count(m) == NBASE, "line %d: count after scratch key", line);
}

/* ---- bm_open ---- */

/* bm_open must fail with want (or any error when want is 0), leave *out alone or NULL, and leak nothing. */
#define OPEN_FAILS(cfgp, want) open_fails_at(__LINE__, #cfgp, cfgp, want)

static void open_fails_at(int line, const char *what, const bm_config *cfg, int want)
{
    int fds = tu_count_fds();
    bm_map *m = NULL;
    int r = bm_open(cfg, &m);
    if (want)
        ck_assert_msg(r == want, "line %d: bm_open(%s) returned %d (%s), expected %d (%s)", line, what, r,
                      bm_strerror(r), want, bm_strerror(want));
    else
        ck_assert_msg(r < 0, "line %d: bm_open(%s) returned %d, expected an error", line, what, r);
    ck_assert_msg(m == NULL, "line %d: failed bm_open(%s) stored a map", line, what);
    ck_assert_msg(tu_count_fds() == fds, "line %d: failed bm_open(%s) leaked a descriptor", line, what);
}

START_TEST(t_open_null)
{
    bm_config cfg = {.elem_size = 8};
    bm_map *m = NULL;
    TU_ERR(bm_open(NULL, &m), BM_EINVAL);
    ck_assert_ptr_null(m);
    TU_ERR(bm_open(&cfg, NULL), BM_EINVAL);
    TU_ERR(bm_open(NULL, NULL), BM_EINVAL);
}
END_TEST

START_TEST(t_open_ranges)
{
    bm_config cfg = {.elem_size = 0};
    OPEN_FAILS(&cfg, BM_EINVAL);
    cfg.elem_size = BM_MAX_ELEM_SIZE + 1;
    OPEN_FAILS(&cfg, BM_EINVAL);
    cfg.elem_size = UINT32_MAX;
    OPEN_FAILS(&cfg, BM_EINVAL);

    const uint32_t bad_buckets[] = {3, 6, 12, 1000, BM_MAX_BUCKETS - 1, BM_MAX_BUCKETS + 1, BM_MAX_BUCKETS * 2,
                                    1u << 31, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_buckets / sizeof bad_buckets[0]; i++) {
        cfg = (bm_config){.elem_size = 8, .max_buckets = bad_buckets[i]};
        OPEN_FAILS(&cfg, BM_EINVAL);
    }
    const uint32_t bad_search[] = {BM_MAX_SEARCH_LIMIT + 1, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_search / sizeof bad_search[0]; i++) {
        cfg = (bm_config){.elem_size = 8, .max_search = bad_search[i]};
        OPEN_FAILS(&cfg, BM_EINVAL);
    }

    cfg = (bm_config){.elem_size = 8, .expected_entries = (1ull << 40) + 1};
    OPEN_FAILS(&cfg, BM_EINVAL);
    cfg = (bm_config){.elem_size = 8, .expected_entries = UINT64_MAX};
    OPEN_FAILS(&cfg, BM_EINVAL);

    /* The limits themselves are accepted. */
    const bm_config good[] = {
        {.elem_size = 8, .max_buckets = 2, .expected_entries = 100000},
        {.elem_size = 8, .max_buckets = BM_MAX_BUCKETS, .expected_entries = 1},
        {.elem_size = 1},
        {.elem_size = BM_MAX_ELEM_SIZE},
        {.elem_size = 8, .max_buckets = 1},
        {.elem_size = 8, .max_buckets = BM_MAX_BUCKETS},
        {.elem_size = 8, .max_search = 1},
        {.elem_size = 8, .max_search = BM_MAX_SEARCH_LIMIT},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        bm_map *m = tu_open_cfg(&good[i]);
        bm_key k = tu_key(i);
        uint8_t *e = calloc(1, good[i].elem_size);
        ck_assert_ptr_nonnull(e);
        TU_OK(bm_insert(m, &k, e, 1, 0));
        tu_expect_value(m, &k, good[i].elem_size, e, 1, 0);
        free(e);
        bm_close(m);
    }
}
END_TEST

START_TEST(t_open_drives)
{
    char dir[PATH_MAX], file[PATH_MAX + 16], missing[PATH_MAX + 16], ro[PATH_MAX + 16];
    tu_mkdtemp(dir, "bad");
    snprintf(file, sizeof file, "%s/plainfile", dir);
    snprintf(missing, sizeof missing, "%s/does/not/exist", dir);
    snprintf(ro, sizeof ro, "%s/readonly", dir);
    tu_write_file(file, "x");
    ck_assert_int_eq(mkdir(ro, 0555), 0);

    const char *one[1];
    bm_config cfg = {.elem_size = 8, .drives = one, .n_drives = 1};

    one[0] = missing;
    OPEN_FAILS(&cfg, -ENOENT);
    one[0] = file;
    OPEN_FAILS(&cfg, -ENOTDIR);
    if (access(ro, W_OK) != 0) {
        one[0] = ro;
        OPEN_FAILS(&cfg, -EACCES);
    } else {
        fprintf(stderr, "test_badinput: running with privileges that can write a 0555 directory; "
                        "read-only drive sub-check skipped\n");
    }
    one[0] = NULL;
    OPEN_FAILS(&cfg, BM_EINVAL);
    one[0] = "";
    OPEN_FAILS(&cfg, BM_EINVAL);

    /* n_drives > 0 with drives NULL, and drives without n_drives. */
    cfg = (bm_config){.elem_size = 8, .drives = NULL, .n_drives = 1};
    OPEN_FAILS(&cfg, BM_EINVAL);
    cfg = (bm_config){.elem_size = 8, .drives = NULL, .n_drives = 7};
    OPEN_FAILS(&cfg, BM_EINVAL);
    one[0] = dir;
    cfg = (bm_config){.elem_size = 8, .drives = one, .n_drives = 0};
    OPEN_FAILS(&cfg, BM_EINVAL);

    /* A NULL entry after a good one, and a bad drive after a good one: nothing may be left in the good one. */
    const char *two[2] = {dir, NULL};
    cfg = (bm_config){.elem_size = 8, .drives = two, .n_drives = 2};
    OPEN_FAILS(&cfg, BM_EINVAL);
    two[1] = missing;
    OPEN_FAILS(&cfg, -ENOENT);
    two[1] = file;
    OPEN_FAILS(&cfg, -ENOTDIR);
    ck_assert_msg(tu_dir_entries(dir) == 2, "a failed bm_open left %d entries in a good drive (expected 2)",
                  tu_dir_entries(dir));
    ck_assert(tu_file_is(file, "x"));

    /* Unknown flags. */
    cfg = (bm_config){.elem_size = 8, .flags = 0x80000000u};
    OPEN_FAILS(&cfg, BM_EINVAL);

    /* After all that, the same good drive still opens. */
    cfg = (bm_config){.elem_size = 8, .drives = one, .n_drives = 1};
    bm_map *m = tu_open_cfg(&cfg);
    bm_key k = tu_key(1);
    TU_OK(bm_insert(m, &k, NULL, 0, 1));
    bm_close(m);
    chmod(ro, 0755);
    tu_rmrf(dir);
}
END_TEST

/* ---- NULL arguments on a live map ---- */

static void read_noop(const bm_value *v, void *ctx)
{
    (void)v;
    (*(int *)ctx)++;
}

static int upd_never(const bm_value *cur, bm_value *out, void *ctx)
{
    (void)cur;
    (void)out;
    (*(int *)ctx)++;
    return BM_WRITE;
}

static int fe_noop(const bm_key *k, const bm_value *v, void *ctx)
{
    (void)k;
    (void)v;
    (void)ctx;
    return 0;
}

START_TEST(t_null_args)
{
    bm_map *m = open_baseline();
    bm_key k = tu_key(3), absent = tu_key(999);
    uint64_t x = 1, out[4];
    uint32_t n;
    uint64_t rc;
    int calls = 0;

    /* NULL map. */
    TU_ERR(bm_insert(NULL, &k, &x, 1, 1), BM_EINVAL);
    TU_ERR(bm_get(NULL, &k, out, 4, &n, &rc), BM_EINVAL);
    TU_ERR(bm_read(NULL, &k, read_noop, &calls), BM_EINVAL);
    TU_ERR(bm_update(NULL, &k, upd_never, &calls), BM_EINVAL);
    TU_ERR(bm_delete(NULL, &k), BM_EINVAL);
    TU_ERR(bm_addref(NULL, &k, &rc), BM_EINVAL);
    TU_ERR(bm_unref(NULL, &k, &rc), BM_EINVAL);
    TU_ERR(bm_foreach(NULL, fe_noop, NULL), BM_EINVAL);
    TU_ERR(bm_flush(NULL), BM_EINVAL);
    ck_assert_uint_eq(bm_count(NULL), 0);
    ck_assert_uint_eq(bm_bucket_count(NULL), 0);
    bm_stats st;
    bm_get_stats(NULL, &st);
    bm_close(NULL);
    check_intact(m);

    /* NULL key, for present and absent data alike. */
    TU_ERR(bm_insert(m, NULL, &x, 1, 1), BM_EINVAL);
    TU_ERR(bm_get(m, NULL, out, 4, &n, &rc), BM_EINVAL);
    TU_ERR(bm_read(m, NULL, read_noop, &calls), BM_EINVAL);
    TU_ERR(bm_update(m, NULL, upd_never, &calls), BM_EINVAL);
    TU_ERR(bm_delete(m, NULL), BM_EINVAL);
    TU_ERR(bm_addref(m, NULL, &rc), BM_EINVAL);
    TU_ERR(bm_unref(m, NULL, &rc), BM_EINVAL);
    check_intact(m);

    /* NULL callbacks. */
    TU_ERR(bm_read(m, &k, NULL, NULL), BM_EINVAL);
    TU_ERR(bm_read(m, &absent, NULL, NULL), BM_EINVAL);
    TU_ERR(bm_update(m, &k, NULL, NULL), BM_EINVAL);
    TU_ERR(bm_update(m, &absent, NULL, NULL), BM_EINVAL);
    TU_ERR(bm_foreach(m, NULL, NULL), BM_EINVAL);
    ck_assert_int_eq(calls, 0);
    check_intact(m);

    /* NULL outputs where a buffer is required. */
    TU_ERR(bm_get(m, &k, NULL, 1, &n, &rc), BM_EINVAL);
    TU_ERR(bm_get(m, &k, NULL, UINT32_MAX, &n, &rc), BM_EINVAL);
    bm_get_stats(m, NULL);
    TU_ERR(bm_bucket_info_get(m, 0, NULL), BM_EINVAL);
    bm_bucket_info bi;
    TU_ERR(bm_bucket_info_get(m, bm_bucket_count(m), &bi), BM_EINVAL);
    TU_ERR(bm_bucket_info_get(m, UINT32_MAX, &bi), BM_EINVAL);
    TU_ERR(bm_bucket_info_get(NULL, 0, &bi), BM_EINVAL);
    bm_verify_report vr;
    TU_ERR(bm_verify(NULL, &vr), BM_EINVAL);
    TU_ERR(bm_verify(m, NULL), BM_EINVAL);
    bm_restart_info ri;
    TU_ERR(bm_read_restart_info(NULL, &ri), BM_EINVAL);
    TU_ERR(bm_read_restart_info("/nonexistent-bm-restart", NULL), BM_EINVAL);
    check_intact(m);
    bm_close(m);
}
END_TEST

/* ---- elems NULL with n > 0, too-large values ---- */

typedef struct upd_ans {
    int calls;
    int action;
    bm_value out;
} upd_ans;

static int upd_answer(const bm_value *cur, bm_value *out, void *ctx)
{
    (void)cur;
    upd_ans *a = ctx;
    a->calls++;
    *out = a->out;
    return a->action;
}

START_TEST(t_elems_null)
{
    bm_map *m = open_baseline();
    bm_key present = tu_key(4), absent = tu_key(999);
    const uint32_t ns[] = {1, 2, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        TU_ERR(bm_insert(m, &present, NULL, ns[i], 7), BM_EINVAL);
        TU_ERR(bm_insert(m, &absent, NULL, ns[i], 7), BM_EINVAL);
        check_intact(m);
        tu_expect_absent(m, &absent);
        upd_ans a = {.action = BM_WRITE, .out = {.elems = NULL, .n = ns[i], .refcount = 7}};
        int r = bm_update(m, &present, upd_answer, &a);
        /* n = UINT32_MAX is also too big; either error is a correct refusal of this value. */
        ck_assert_msg(r == BM_EINVAL || (ns[i] == UINT32_MAX && r == BM_ETOOBIG), "bm_update(out NULL, n=%u): %d",
                      ns[i], r);
        ck_assert_int_eq(a.calls, 1);
        a.calls = 0;
        r = bm_update(m, &absent, upd_answer, &a);
        ck_assert_msg(r == BM_EINVAL || (ns[i] == UINT32_MAX && r == BM_ETOOBIG), "bm_update(out NULL, n=%u): %d",
                      ns[i], r);
        ck_assert_int_eq(a.calls, 1);
        check_intact(m);
        tu_expect_absent(m, &absent);
    }
    bm_close(m);
}
END_TEST

START_TEST(t_too_big)
{
    bm_map *m = open_baseline();
    bm_key present = tu_key(5), absent = tu_key(999);
    /* The library must refuse before reading elems: the buffer is far smaller than n claims. */
    uint64_t tiny[2] = {1, 2};
    const uint32_t ns[] = {UINT32_MAX, UINT32_MAX - 1, BM_MAX_VALUE_BYTES / ES + 1, 1u << 31};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        TU_ERR(bm_insert(m, &present, tiny, ns[i], 1), BM_ETOOBIG);
        TU_ERR(bm_insert(m, &absent, tiny, ns[i], 1), BM_ETOOBIG);
        check_intact(m);
        tu_expect_absent(m, &absent);
        upd_ans a = {.action = BM_WRITE, .out = {.elems = tiny, .n = ns[i], .refcount = 1}};
        TU_ERR(bm_update(m, &present, upd_answer, &a), BM_ETOOBIG);
        TU_ERR(bm_update(m, &absent, upd_answer, &a), BM_ETOOBIG);
        ck_assert_int_eq(a.calls, 2);
        check_intact(m);
        tu_expect_absent(m, &absent);
    }
    bm_close(m);
}
END_TEST

START_TEST(t_too_big_wraps)
{
    /* n * elem_size that wraps to a small number in 32-bit arithmetic (2^32 + a few bytes) would pass a naive
     * size check and then store a huge n over a few copied bytes: the check must be done in wider arithmetic. */
    const uint32_t sizes[] = {3, 16, 4095, 4096};
    uint8_t small[2 * 4096];
    tu_fill(small, sizeof small, 11);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uint32_t es = sizes[s];
        bm_map *m = tu_open(es, 2, 0);
        bm_key present = tu_key(1), absent = tu_key(2);
        TU_OK(bm_insert(m, &present, small, 2, 3));
        uint32_t n = (uint32_t)((1ull << 32) / es) + 1;
        int r = bm_insert(m, &absent, small, n, 1);
        ck_assert_msg(r == BM_ETOOBIG, "elem_size %u, n=%u: bm_insert returned %d (%s)", es, n, r, bm_strerror(r));
        r = bm_insert(m, &present, small, n, 1);
        ck_assert_msg(r == BM_ETOOBIG, "elem_size %u, n=%u: bm_insert over a key returned %d (%s)", es, n, r,
                      bm_strerror(r));
        upd_ans a = {.action = BM_WRITE, .out = {.elems = small, .n = n, .refcount = 1}};
        r = bm_update(m, &present, upd_answer, &a);
        ck_assert_msg(r == BM_ETOOBIG, "elem_size %u, n=%u: bm_update returned %d (%s)", es, n, r, bm_strerror(r));
        tu_expect_absent(m, &absent);
        tu_expect_value(m, &present, es, small, 2, 3);
        ck_assert_uint_eq(bm_count(m), 1);
        bm_close(m);
    }
}
END_TEST

START_TEST(t_update_unknown_action)
{
    bm_map *m = open_baseline();
    bm_key present = tu_key(6), absent = tu_key(999);
    uint64_t v[3] = {1, 2, 3};
    const int actions[] = {3, 4, 100, 12345, INT_MAX};
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++) {
        upd_ans a = {.action = actions[i], .out = {.elems = v, .n = 3, .refcount = 42}};
        TU_ERR(bm_update(m, &present, upd_answer, &a), BM_EINVAL);
        TU_ERR(bm_update(m, &absent, upd_answer, &a), BM_EINVAL);
        ck_assert_int_eq(a.calls, 2);
        check_intact(m);
        tu_expect_absent(m, &absent);
    }
    bm_close(m);
}
END_TEST

/* ---- forbidden calls from inside callbacks ---- */

typedef struct nest {
    bm_map *m;
    bm_map *other; /* a second map that callbacks may use freely */
    bm_key k;      /* a key of the baseline */
    bm_key absent;
    int calls;
    int errs[16];
    int nerrs;
    int other_rc;
} nest;

static void nest_put(nest *n, int r)
{
    if (n->nerrs < 16)
        n->errs[n->nerrs++] = r;
}

static int upd_plain(const bm_value *cur, bm_value *out, void *ctx)
{
    (void)cur;
    (void)ctx;
    static const uint64_t x = 77;
    *out = (bm_value){.elems = &x, .n = 1, .refcount = 1};
    return BM_WRITE;
}

/* Every public call on n's map, each result recorded: the ten calls a callback must be refused. */
static void nest_call_everything(nest *n)
{
    uint64_t x = 9, rc;
    int dummy = 0;
    nest_put(n, bm_insert(n->m, &n->k, &x, 1, 1));
    nest_put(n, bm_insert(n->m, &n->absent, &x, 1, 1));
    nest_put(n, bm_update(n->m, &n->k, upd_plain, NULL));
    nest_put(n, bm_delete(n->m, &n->k));
    nest_put(n, bm_addref(n->m, &n->k, &rc));
    nest_put(n, bm_unref(n->m, &n->k, &rc));
    nest_put(n, bm_flush(n->m));
    nest_put(n, bm_get(n->m, &n->k, NULL, 0, NULL, NULL));
    nest_put(n, bm_read(n->m, &n->k, read_noop, &dummy));
    nest_put(n, bm_foreach(n->m, fe_noop, NULL));
}

/* Inside bm_read's callback: every write on the map, and every read, must be refused. */
static void read_cb_misbehaves(const bm_value *v, void *ctx)
{
    (void)v;
    nest *n = ctx;
    n->calls++;
    nest_call_everything(n);
}

START_TEST(t_write_in_read_cb)
{
    bm_map *m = open_baseline();
    nest n = {.m = m, .k = tu_key(7), .absent = tu_key(999)};
    TU_OK(bm_read(m, &n.k, read_cb_misbehaves, &n));
    ck_assert_int_eq(n.calls, 1);
    ck_assert_int_eq(n.nerrs, 10);
    for (int i = 0; i < n.nerrs; i++)
        ck_assert_msg(n.errs[i] == BM_EBUSY, "call %d from inside bm_read's callback returned %d (%s)", i,
                      n.errs[i], bm_strerror(n.errs[i]));
    check_intact(m);
    tu_expect_absent(m, &n.absent);
    bm_close(m);
}
END_TEST

/* Inside bm_update's callback: every call on the same map must be refused. */
static int upd_cb_misbehaves(const bm_value *cur, bm_value *out, void *ctx)
{
    (void)cur;
    (void)out;
    nest *n = ctx;
    n->calls++;
    nest_call_everything(n);
    return BM_KEEP;
}

START_TEST(t_calls_in_update_cb)
{
    bm_map *m = open_baseline();
    nest n = {.m = m, .k = tu_key(8), .absent = tu_key(999)};
    /* Updating a present key and an absent one (callback sees NULL). */
    for (int pass = 0; pass < 2; pass++) {
        n.nerrs = 0;
        n.calls = 0;
        TU_OK(bm_update(m, pass ? &n.absent : &n.k, upd_cb_misbehaves, &n));
        ck_assert_int_eq(n.calls, 1);
        ck_assert_int_eq(n.nerrs, 10);
        for (int i = 0; i < n.nerrs; i++)
            ck_assert_msg(n.errs[i] == BM_EBUSY, "pass %d: call %d from inside bm_update's callback returned %d (%s)",
                          pass, i, n.errs[i], bm_strerror(n.errs[i]));
        check_intact(m);
        tu_expect_absent(m, &n.absent);
    }
    bm_close(m);
}
END_TEST

/* Another map may be used from inside a callback; doing so must not switch off the detection for the first
 * map (a same-bucket write would otherwise deadlock on the bucket lock this thread holds). */
static int upd_cb_other_then_same(const bm_value *cur, bm_value *out, void *ctx)
{
    (void)cur;
    (void)out;
    nest *n = ctx;
    n->calls++;
    bm_key ok = tu_key(5000);
    n->other_rc = bm_update(n->other, &ok, upd_plain, NULL);
    uint64_t x = 9;
    nest_put(n, bm_insert(n->m, &n->k, &x, 1, 1));
    return BM_KEEP;
}

START_TEST(t_update_cb_other_map)
{
    bm_map *m = open_baseline();
    bm_map *o = tu_open(8, 2, 0);
    nest n = {.m = m, .other = o, .k = tu_key(9), .absent = tu_key(999)};
    TU_OK(bm_update(m, &n.k, upd_cb_other_then_same, &n));
    ck_assert_int_eq(n.calls, 1);
    TU_ERR(n.other_rc, 0);
    bm_key ok = tu_key(5000);
    tu_expect_u64(o, &ok, 77, 1);
    ck_assert_int_eq(n.nerrs, 1);
    TU_ERR(n.errs[0], BM_EBUSY);
    check_intact(m);
    bm_close(o);
    bm_close(m);
}
END_TEST

/* bm_strerror never returns NULL, whatever it is given. */
START_TEST(t_strerror_any)
{
    for (int e = -20000; e <= 20000; e++)
        ck_assert_ptr_nonnull(bm_strerror(e));
    ck_assert_ptr_nonnull(bm_strerror(INT_MIN));
    ck_assert_ptr_nonnull(bm_strerror(INT_MAX));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("badinput");
    TCase *tc = tcase_create("open");
    tcase_set_timeout(tc, TU_TIMEOUT);
    tcase_add_test(tc, t_open_null);
    tcase_add_test(tc, t_open_ranges);
    tcase_add_test(tc, t_open_drives);
    suite_add_tcase(s, tc);

    tc = tcase_create("calls");
    tcase_set_timeout(tc, TU_TIMEOUT);
    tcase_add_test(tc, t_null_args);
    tcase_add_test(tc, t_elems_null);
    tcase_add_test(tc, t_too_big);
    tcase_add_test(tc, t_too_big_wraps);
    tcase_add_test(tc, t_update_unknown_action);
    tcase_add_test(tc, t_strerror_any);
    suite_add_tcase(s, tc);

    /* A missed detection deadlocks on the bucket lock: a short timeout turns that into a failure. */
    tc = tcase_create("callbacks");
    tcase_set_timeout(tc, 15);
    tcase_add_test(tc, t_write_in_read_cb);
    tcase_add_test(tc, t_calls_in_update_cb);
    tcase_add_test(tc, t_update_cb_other_map);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
