/*
 * Restart round trips: 120k keys with 0..40 elements and refcounts 0, 1, 2, 2^63, UINT64_MAX on 1 and 3
 * drives survive close/reopen identically; then a mix of updates, deletes, refcount changes and new keys
 * survives another close/reopen; a full bm_foreach walk sees exactly the model.
 */
#include "persist_util.h"

#define N_KEYS 120000u
#define N_NEW 10000u

static const uint64_t rcs[] = {0, 1, 2, 1ull << 63, UINT64_MAX};

struct mstate {
    uint8_t present;
    uint64_t version, rc;
};

static struct mstate model[N_KEYS + N_NEW];

static void check_all(bm_map *m, uint32_t n_keys, const char *when)
{
    uint64_t present = 0;
    for (uint32_t i = 0; i < n_keys; i++) {
        int r = pu_check(m, i, model[i].version, model[i].rc);
        ck_assert_msg(model[i].present ? r == 0 : r == 1, "%s: key %u: check %d, expected %s", when, i, r,
                      model[i].present ? "value" : "absent");
        present += model[i].present;
    }
    ck_assert_uint_eq(bm_count(m), present);
}

struct walk {
    uint64_t seen, bad;
    uint8_t *mark;
    uint32_t n_keys;
};

/* Keys are found back through a small open-addressing table from key bytes to index. */
static uint32_t *lookup;
#define LOOKUP_SIZE (1u << 18)

static uint32_t lookup_slot(const bm_key *k)
{
    uint64_t h;
    memcpy(&h, k->bytes, 8);
    return (uint32_t)(h & (LOOKUP_SIZE - 1));
}

static void lookup_build(uint32_t n_keys)
{
    lookup = malloc(sizeof(*lookup) * LOOKUP_SIZE);
    ck_assert_ptr_nonnull(lookup);
    memset(lookup, 0xff, sizeof(*lookup) * LOOKUP_SIZE);
    for (uint32_t i = 0; i < n_keys; i++) {
        bm_key k = pu_key(i);
        uint32_t s = lookup_slot(&k);
        while (lookup[s] != UINT32_MAX)
            s = (s + 1) & (LOOKUP_SIZE - 1);
        lookup[s] = i;
    }
}

static int walk_fn(const bm_key *k, const bm_value *v, void *arg)
{
    struct walk *w = arg;
    w->seen++;
    for (uint32_t s = lookup_slot(k);; s = (s + 1) & (LOOKUP_SIZE - 1)) {
        uint32_t i = lookup[s];
        if (i == UINT32_MAX) {
            w->bad++; /* a key the test never wrote */
            return 0;
        }
        bm_key ki = pu_key(i);
        if (memcmp(&ki, k, sizeof(ki)))
            continue;
        uint64_t e[PU_MAX_N];
        uint32_t n = pu_fill(e, i, model[i].version);
        if (!model[i].present || w->mark[i] || v->n != n || v->refcount != model[i].rc ||
            (n && memcmp(v->elems, e, n * sizeof(uint64_t))))
            w->bad++;
        w->mark[i] = 1;
        return 0;
    }
}

static void walk_all(bm_map *m, uint32_t n_keys)
{
    struct walk w = {0, 0, calloc(n_keys, 1), n_keys};
    ck_assert_ptr_nonnull(w.mark);
    ck_assert_int_eq(bm_foreach(m, walk_fn, &w), 0);
    ck_assert_uint_eq(w.bad, 0);
    ck_assert_uint_eq(w.seen, bm_count(m));
    free(w.mark);
}

static void round_trip(uint32_t n_drives)
{
    uint64_t seed = pu_seed(n_drives == 1 ? "roundtrip/1 drive" : "roundtrip/3 drives");
    lookup_build(N_KEYS + N_NEW);
    memset(model, 0, sizeof(model));

    bm_map *m = pu_open(n_drives, 256);
    for (uint32_t i = 0; i < N_KEYS; i++) {
        model[i] = (struct mstate){1, i, rcs[i % 5]};
        ck_assert_int_eq(pu_put(m, i, i, rcs[i % 5]), 0);
    }
    check_all(m, N_KEYS, "before the first close");
    bm_close(m);

    m = pu_open(n_drives, 256);
    check_all(m, N_KEYS, "after the first reopen");
    walk_all(m, N_KEYS);
    pu_verify_clean(m, NULL);
    bm_stats st;
    bm_get_stats(m, &st);
    ck_assert_uint_eq(st.undo_replayed, 0);     /* a clean close leaves nothing to repair */
    ck_assert_uint_eq(st.orphan_files_removed, 0);

    /* Modify: new versions (other sizes), deletes, addref/unref at the edges, new keys. */
    for (uint32_t it = 0; it < 60000; it++) {
        uint32_t i = (uint32_t)(pu_mix(&seed) % N_KEYS);
        bm_key k = pu_key(i);
        uint64_t nrc;
        switch (pu_mix(&seed) % 4) {
        case 0:
            model[i] = (struct mstate){1, model[i].version + N_KEYS + it, rcs[it % 5]};
            ck_assert_int_eq(pu_put(m, i, model[i].version, model[i].rc), 0);
            break;
        case 1:
            ck_assert_int_eq(bm_delete(m, &k), model[i].present ? 0 : BM_ENOTFOUND);
            model[i].present = 0;
            break;
        case 2:
            if (!model[i].present)
                ck_assert_int_eq(bm_addref(m, &k, &nrc), BM_ENOTFOUND);
            else if (model[i].rc == UINT64_MAX)
                ck_assert_int_eq(bm_addref(m, &k, &nrc), BM_EOVERFLOW);
            else {
                ck_assert_int_eq(bm_addref(m, &k, &nrc), 0);
                ck_assert_uint_eq(nrc, ++model[i].rc);
            }
            break;
        default:
            if (!model[i].present)
                ck_assert_int_eq(bm_unref(m, &k, &nrc), BM_ENOTFOUND);
            else if (model[i].rc == 0)
                ck_assert_int_eq(bm_unref(m, &k, &nrc), BM_EOVERFLOW);
            else {
                ck_assert_int_eq(bm_unref(m, &k, &nrc), 0);
                ck_assert_uint_eq(nrc, --model[i].rc);
            }
            break;
        }
    }
    for (uint32_t i = N_KEYS; i < N_KEYS + N_NEW; i++) {
        model[i] = (struct mstate){1, i * 3ull, rcs[i % 5]};
        ck_assert_int_eq(pu_put(m, i, model[i].version, model[i].rc), 0);
    }
    check_all(m, N_KEYS + N_NEW, "after modifying");
    bm_close(m);

    m = pu_open(n_drives, 256);
    check_all(m, N_KEYS + N_NEW, "after the second reopen");
    walk_all(m, N_KEYS + N_NEW);
    pu_verify_clean(m, NULL);
    bm_close(m);

    /* A reopen without changes is idempotent. */
    m = pu_open(n_drives, 256);
    check_all(m, N_KEYS + N_NEW, "after the third reopen");
    bm_close(m);
    free(lookup);
}

START_TEST(t_round_trip_1_drive) { round_trip(1); }
END_TEST

START_TEST(t_round_trip_3_drives)
{
    round_trip(3);
    /* Every drive got files. */
    for (int d = 0; d < 3; d++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "ls '%s' | grep -q '\\.bm$'", pu_d[d]);
        ck_assert_msg(system(cmd) == 0, "drive %d holds no map file", d);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("persist_roundtrip");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_checked_fixture(tc, pu_setup, pu_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, t_round_trip_1_drive);
    tcase_add_test(tc, t_round_trip_3_drives);
    suite_add_tcase(s, tc);
    return pu_run_suite(s);
}
