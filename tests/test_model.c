/*
 * test_model — randomized differential test against a trivially correct model (UPSTREAM.md §8.1 item 11,
 * "hashmap_compare", without batch insert).
 *
 * The model is an array indexed by key number: keys come from a fixed pool of NKEYS keys (some sharing
 * their first 8 bytes, so they collide in a bucket), and tu_key_index() maps a key seen in bm_foreach back
 * to its slot. Every operation's result and every value the library hands out (bm_get, bm_read, the
 * current value given to bm_update's callback) is compared with the model; every CHECK_EVERY steps and at
 * the end, bm_count and a full bm_foreach must equal the model exactly.
 *
 * Reproduce a failure with BM_TEST_SEED=<seed printed on stderr>; BM_MODEL_STEPS overrides the step count.
 */
#include "tu.h"

enum { NKEYS = 512, STEPS_DEFAULT = 10000, CHECK_EVERY = 1000, MAX_LEN = 400 };

typedef struct model_entry {
    bool present;
    uint32_t n;
    uint64_t rc;
    uint8_t *elems; /* n * elem_size bytes, owned */
} model_entry;

typedef struct model {
    model_entry e[NKEYS];
    bm_key keys[NKEYS];
    uint32_t elem_size;
    uint64_t count;
    uint64_t seed;
    uint64_t step;
} model;

typedef struct model_cfg {
    uint32_t buckets;
    uint32_t max_search;
    uint32_t elem_size;
} model_cfg;

static const model_cfg cfgs[] = {
    {1, 0, 8}, {2, 0, 8}, {1, 2, 8}, {2, 2, 8}, {2, 0, 5}, {1, 2, 16},
};

static uint64_t base_seed;

/* Every failure message carries the seed and step so the run can be replayed and stopped right there. */
#define MCHECK(md, cond, ...)                                                                           \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            char mc_buf_[400];                                                                         \
            snprintf(mc_buf_, sizeof mc_buf_, __VA_ARGS__);                                            \
            ck_abort_msg("seed=0x%016" PRIx64 " step=%" PRIu64 ": %s", (md)->seed, (md)->step, mc_buf_); \
        }                                                                                              \
    } while (0)

static uint32_t pick_len(tu_rng *r)
{
    static const uint32_t lens[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 1, 1, 2};
    if (tu_below(r, 50) == 0)
        return 100 + (uint32_t)tu_below(r, MAX_LEN - 100 + 1);
    return lens[tu_below(r, sizeof lens / sizeof lens[0])];
}

static uint64_t pick_rc(tu_rng *r)
{
    switch (tu_below(r, 10)) {
    case 0: return 0;
    case 1: return 2;
    case 2: return 1ull << 63;
    case 3: return UINT64_MAX;
    case 4: return UINT64_MAX - 1;
    case 5: return tu_next(r);
    default: return 1;
    }
}

static void model_set(model *md, uint32_t i, const void *elems, uint32_t n, uint64_t rc)
{
    model_entry *e = &md->e[i];
    if (!e->present)
        md->count++;
    free(e->elems);
    e->elems = NULL;
    if (n) {
        e->elems = tu_xmalloc((size_t)n * md->elem_size);
        memcpy(e->elems, elems, (size_t)n * md->elem_size);
    }
    e->present = true;
    e->n = n;
    e->rc = rc;
}

static void model_del(model *md, uint32_t i)
{
    model_entry *e = &md->e[i];
    if (e->present)
        md->count--;
    free(e->elems);
    e->elems = NULL;
    e->present = false;
}

static bool value_matches(const model *md, const model_entry *e, const bm_value *v)
{
    if (!e->present || v->n != e->n || v->refcount != e->rc)
        return false;
    if (e->n == 0)
        return true;
    return v->elems && memcmp(v->elems, e->elems, (size_t)e->n * md->elem_size) == 0;
}

/* ---- bm_update callback: compares cur with the model, then answers with a planned decision ---- */

typedef struct upd_plan {
    const model *md;
    const model_entry *want; /* the model's view of the key */
    int calls;
    bool cur_ok;
    int action;
    bm_value out;
} upd_plan;

static int plan_fn(const bm_value *cur, bm_value *out, void *ctx)
{
    upd_plan *p = ctx;
    p->calls++;
    p->cur_ok = cur ? value_matches(p->md, p->want, cur) : !p->want->present;
    *out = p->out;
    return p->action;
}

/* ---- bm_read callback ---- */

typedef struct read_check {
    const model *md;
    const model_entry *want;
    int calls;
    bool ok;
} read_check;

static void read_check_fn(const bm_value *v, void *ctx)
{
    read_check *c = ctx;
    c->calls++;
    c->ok = value_matches(c->md, c->want, v);
}

/* ---- full comparison ---- */

typedef struct walk {
    const model *md;
    uint8_t seen[NKEYS];
    uint64_t visits;
    char err[200];
} walk;

static int walk_fn(const bm_key *k, const bm_value *v, void *ctx)
{
    walk *w = ctx;
    w->visits++;
    uint64_t i = tu_key_index(k);
    if (i >= NKEYS || memcmp(k, &w->md->keys[i], sizeof *k) != 0) {
        snprintf(w->err, sizeof w->err, "bm_foreach visited a key that was never inserted");
        return 1;
    }
    if (w->seen[i]++) {
        snprintf(w->err, sizeof w->err, "bm_foreach visited key %" PRIu64 " twice", i);
        return 1;
    }
    const model_entry *e = &w->md->e[i];
    if (!e->present) {
        snprintf(w->err, sizeof w->err, "bm_foreach visited deleted key %" PRIu64, i);
        return 1;
    }
    if (!value_matches(w->md, e, v)) {
        snprintf(w->err, sizeof w->err,
                 "bm_foreach: key %" PRIu64 " has n=%u rc=%" PRIu64 ", model n=%u rc=%" PRIu64, i, v->n,
                 v->refcount, e->n, e->rc);
        return 1;
    }
    return 0;
}

static void full_compare(bm_map *m, model *md)
{
    MCHECK(md, bm_count(m) == md->count, "bm_count=%" PRIu64 ", model has %" PRIu64, bm_count(m), md->count);
    walk *w = calloc(1, sizeof *w);
    ck_assert_ptr_nonnull(w);
    w->md = md;
    int r = bm_foreach(m, walk_fn, w);
    MCHECK(md, r == 0, "bm_foreach returned %d (%s) %s", r, bm_strerror(r), w->err);
    MCHECK(md, w->visits == md->count, "bm_foreach visited %" PRIu64 " entries, model has %" PRIu64, w->visits,
           md->count);
    for (uint32_t i = 0; i < NKEYS; i++) {
        MCHECK(md, w->seen[i] == (md->e[i].present ? 1 : 0), "bm_foreach visited key %u %u times (present=%d)", i,
               w->seen[i], md->e[i].present);
        if (!md->e[i].present) {
            r = bm_get(m, &md->keys[i], NULL, 0, NULL, NULL);
            MCHECK(md, r == BM_ENOTFOUND, "absent key %u: bm_get returned %d", i, r);
        }
    }
    free(w);
}

/* ---- one step of each kind ---- */

static void do_get(bm_map *m, model *md, tu_rng *r, uint32_t i, uint8_t *buf)
{
    const model_entry *e = &md->e[i];
    if (tu_below(r, 4) == 0) {
        read_check c = {.md = md, .want = e};
        int rr = bm_read(m, &md->keys[i], read_check_fn, &c);
        if (!e->present) {
            MCHECK(md, rr == BM_ENOTFOUND && c.calls == 0, "bm_read of absent key %u: %d, %d calls", i, rr, c.calls);
        } else {
            MCHECK(md, rr == 0 && c.calls == 1, "bm_read of key %u: %d (%s), %d calls", i, rr, bm_strerror(rr),
                   c.calls);
            MCHECK(md, c.ok, "bm_read of key %u saw a value other than the model's", i);
        }
        return;
    }
    uint32_t cap = (uint32_t)tu_below(r, MAX_LEN + 2);
    uint32_t n = 0xFFFFFFFF;
    uint64_t rc = 0x5A5A;
    int rr = bm_get(m, &md->keys[i], cap ? buf : NULL, cap, &n, &rc);
    if (!e->present) {
        MCHECK(md, rr == BM_ENOTFOUND, "bm_get of absent key %u returned %d (%s)", i, rr, bm_strerror(rr));
        return;
    }
    MCHECK(md, rr == 0, "bm_get of key %u returned %d (%s)", i, rr, bm_strerror(rr));
    MCHECK(md, n == e->n && rc == e->rc, "bm_get of key %u: n=%u rc=%" PRIu64 ", model n=%u rc=%" PRIu64, i, n, rc,
           e->n, e->rc);
    uint32_t copied = cap < n ? cap : n;
    MCHECK(md, copied == 0 || memcmp(buf, e->elems, (size_t)copied * md->elem_size) == 0,
           "bm_get of key %u: element bytes differ from the model", i);
}

static void do_insert(bm_map *m, model *md, tu_rng *r, uint32_t i, uint8_t *buf)
{
    uint32_t n = pick_len(r);
    uint64_t rc = pick_rc(r);
    tu_fill(buf, (size_t)n * md->elem_size, tu_next(r));
    if (tu_below(r, 2)) {
        int rr = bm_insert(m, &md->keys[i], n ? buf : NULL, n, rc);
        MCHECK(md, rr == 0, "bm_insert(key %u, n=%u) returned %d (%s)", i, n, rr, bm_strerror(rr));
    } else {
        upd_plan p = {.md = md, .want = &md->e[i], .action = BM_WRITE, .out = {.elems = n ? buf : NULL, .n = n, .refcount = rc}};
        int rr = bm_update(m, &md->keys[i], plan_fn, &p);
        MCHECK(md, rr == 0, "bm_update(write key %u, n=%u) returned %d (%s)", i, n, rr, bm_strerror(rr));
        MCHECK(md, p.calls == 1, "bm_update called fn %d times", p.calls);
        MCHECK(md, p.cur_ok, "bm_update's callback saw a current value other than the model's for key %u", i);
    }
    model_set(md, i, buf, n, rc);
}

static void do_update(bm_map *m, model *md, tu_rng *r, uint32_t i, uint8_t *buf)
{
    upd_plan p = {.md = md, .want = &md->e[i]};
    uint64_t pick = tu_below(r, 20);
    uint32_t n = pick_len(r);
    uint64_t rc = pick_rc(r);
    tu_fill(buf, (size_t)n * md->elem_size, tu_next(r));
    /* Junk in out for the decisions that must ignore it. */
    p.out = (bm_value){.elems = n ? buf : NULL, .n = n, .refcount = rc};
    int want_ret = 0;
    if (pick < 12) {
        p.action = BM_WRITE;
    } else if (pick < 15) {
        p.action = BM_KEEP;
    } else if (pick < 18) {
        p.action = BM_DELETE;
    } else {
        p.action = -(int)(1 + tu_below(r, 200));
        want_ret = p.action;
    }
    int rr = bm_update(m, &md->keys[i], plan_fn, &p);
    MCHECK(md, rr == want_ret, "bm_update(key %u, action %d) returned %d (%s), expected %d", i, p.action, rr,
           bm_strerror(rr), want_ret);
    MCHECK(md, p.calls == 1, "bm_update called fn %d times", p.calls);
    MCHECK(md, p.cur_ok, "bm_update's callback saw a current value other than the model's for key %u", i);
    if (p.action == BM_WRITE)
        model_set(md, i, buf, n, rc);
    else if (p.action == BM_DELETE)
        model_del(md, i);
}

static void do_delete(bm_map *m, model *md, uint32_t i)
{
    int rr = bm_delete(m, &md->keys[i]);
    if (md->e[i].present)
        MCHECK(md, rr == 0, "bm_delete of key %u returned %d (%s)", i, rr, bm_strerror(rr));
    else
        MCHECK(md, rr == BM_ENOTFOUND, "bm_delete of absent key %u returned %d (%s)", i, rr, bm_strerror(rr));
    model_del(md, i);
}

static void do_ref(bm_map *m, model *md, tu_rng *r, uint32_t i)
{
    model_entry *e = &md->e[i];
    bool add = tu_below(r, 2);
    uint64_t nr = 0xABCD;
    int rr = add ? bm_addref(m, &md->keys[i], &nr) : bm_unref(m, &md->keys[i], &nr);
    const char *op = add ? "bm_addref" : "bm_unref";
    if (!e->present) {
        MCHECK(md, rr == BM_ENOTFOUND, "%s of absent key %u returned %d (%s)", op, i, rr, bm_strerror(rr));
        return;
    }
    if ((add && e->rc == UINT64_MAX) || (!add && e->rc == 0)) {
        MCHECK(md, rr == BM_EOVERFLOW, "%s of key %u at rc %" PRIu64 " returned %d (%s)", op, i, e->rc, rr,
               bm_strerror(rr));
        return;
    }
    MCHECK(md, rr == 0, "%s of key %u (rc %" PRIu64 ") returned %d (%s)", op, i, e->rc, rr, bm_strerror(rr));
    e->rc = add ? e->rc + 1 : e->rc - 1;
    MCHECK(md, nr == e->rc, "%s of key %u reported %" PRIu64 ", expected %" PRIu64, op, i, nr, e->rc);
}

static void run_model(const model_cfg *c, uint64_t seed, uint64_t steps)
{
    model *md = calloc(1, sizeof *md);
    ck_assert_ptr_nonnull(md);
    md->elem_size = c->elem_size;
    md->seed = seed;
    tu_rng r = {seed};
    bm_key shared = tu_key(tu_next(&r));
    for (uint32_t i = 0; i < NKEYS; i++) {
        md->keys[i] = tu_key(i);
        /* Every 8th key shares its first 8 bytes (its shard and the start of its hash input) with others. */
        if (i % 8 == 0)
            memcpy(md->keys[i].bytes, shared.bytes, 8);
    }
    uint8_t *buf = tu_xmalloc((size_t)(MAX_LEN + 2) * c->elem_size);
    bm_map *m = tu_open(c->elem_size, c->buckets, c->max_search);

    for (md->step = 0; md->step < steps; md->step++) {
        uint32_t i = (uint32_t)tu_below(&r, NKEYS);
        uint64_t op = md->step < 100 ? 0 : tu_below(&r, 100);
        if (op < 20)
            do_insert(m, md, &r, i, buf);
        else if (op < 30)
            do_update(m, md, &r, i, buf);
        else if (op < 35)
            do_delete(m, md, i);
        else if (op < 45)
            do_ref(m, md, &r, i);
        else
            do_get(m, md, &r, i, buf);
        if ((md->step + 1) % CHECK_EVERY == 0)
            full_compare(m, md);
    }
    full_compare(m, md);

    if (c->max_search == 2) {
        bm_stats st;
        bm_get_stats(m, &st);
        MCHECK(md, st.index_grows > 0, "max_search 2 with %" PRIu64 " keys never grew the index", md->count);
    }
    bm_close(m);
    for (uint32_t i = 0; i < NKEYS; i++)
        free(md->e[i].elems);
    free(md);
    free(buf);
}

START_TEST(t_model)
{
    const model_cfg *c = &cfgs[_i];
    uint64_t seed = tu_mix64(base_seed + (uint64_t)_i);
    uint64_t steps = STEPS_DEFAULT;
    const char *s = getenv("BM_MODEL_STEPS");
    if (s && *s)
        steps = strtoull(s, NULL, 0);
    fprintf(stderr, "test_model: config %d (buckets=%u max_search=%u elem_size=%u) seed=0x%016" PRIx64 "\n", _i,
            c->buckets, c->max_search, c->elem_size, seed);
    run_model(c, seed, steps);
}
END_TEST

int main(void)
{
    base_seed = tu_seed();
    fprintf(stderr, "test_model: BM_TEST_SEED=0x%016" PRIx64 " reproduces this run\n", base_seed);
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, TU_TIMEOUT);
    tcase_add_loop_test(tc, t_model, 0, (int)(sizeof cfgs / sizeof cfgs[0]));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed)
        fprintf(stderr, "test_model: FAILED; rerun with BM_TEST_SEED=0x%016" PRIx64 "\n", base_seed);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
