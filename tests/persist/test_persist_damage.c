/*
 * Damage on disk, as a power loss can leave it: one byte of a stored element changes while the map is
 * closed. The test finds the element's bytes in the map's files by content (no knowledge of the layout):
 * an element held inline in its index entry (n = 1) and one in a data cell (n = 3).
 *   - bm_verify reports the damage (bad_entry_sums / bad_cells) and every other key is intact.
 *   - No reader hands the damaged value out ("nothing torn is ever returned to a caller"): bm_get and bm_read
 *     return BM_ECORRUPT, bm_foreach visits every other key and then returns BM_ECORRUPT, bm_update does not
 *     call its function, bm_addref refuses a damaged entry. Overwriting the key with bm_insert (or deleting
 *     it) repairs the map: bm_verify is clean again.
 */
#include "persist_util.h"
#include "../tu.h"

#include <dirent.h>

#define N 2000u
#define VICTIM 777u

/* A victim value whose elements no other key's value can contain (pu_elem has 0xA5A5 in its top bytes). */
static uint64_t victim_elem(uint32_t j) { return 0x3C5A0F1E2D4B6978ull + j * 0x0101010101010101ull; }

static void fill(uint32_t n_victim)
{
    bm_map *m = pu_open(2, 16);
    for (uint32_t i = 0; i < N; i++)
        if (i != VICTIM)
            ck_assert_int_eq(pu_put(m, i, i, i), 0);
    uint64_t e[4];
    for (uint32_t j = 0; j < n_victim; j++)
        e[j] = victim_elem(j);
    bm_key k = pu_key(VICTIM);
    ck_assert_int_eq(bm_insert(m, &k, e, n_victim, 5), 0);
    bm_close(m);
}

/* Flips one bit of byte `at` of the first copy of `pat` in any *.bm file of the drives. Returns the number of
 * copies found (the test needs exactly one, or it cannot tell which copy the map uses). */
static int flip_in_files(const void *pat, size_t len, size_t at)
{
    const char *const dirs[2] = {pu_d[0], pu_d[1]};
    return tu_flip_in_bm_files(dirs, 2, pat, len, at);
}

static void damage(uint32_t n_victim)
{
    fill(n_victim);
    uint64_t e = victim_elem(n_victim - 1);
    ck_assert_int_eq(flip_in_files(&e, sizeof(e), 3), 1);
}

static void check_others(bm_map *m)
{
    for (uint32_t i = 0; i < N; i++)
        if (i != VICTIM)
            ck_assert_msg(pu_check(m, i, i, i) == 0, "undamaged key %u changed", i);
}

static void detected(uint32_t n_victim, int cell)
{
    damage(n_victim);
    bm_map *m = pu_open(2, 16);
    bm_verify_report r;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(bm_verify(m, &r), BM_ECORRUPT);
    ck_assert_uint_eq(r.entries, N);
    if (cell)
        ck_assert_uint_eq(r.bad_cells, 1);
    else
        ck_assert_uint_eq(r.bad_entry_sums, 1);
    check_others(m);
    bm_close(m);
}

START_TEST(t_inline_damage_detected) { detected(1, 0); }
END_TEST

START_TEST(t_cell_damage_detected) { detected(3, 1); }
END_TEST

struct seen {
    uint32_t n;
    uint64_t rc, e[4];
    int calls;
};

static void read_fn(const bm_value *v, void *arg)
{
    struct seen *s = arg;
    s->n = v->n;
    s->rc = v->refcount;
    memcpy(s->e, v->elems, (v->n < 4 ? v->n : 4) * sizeof(uint64_t));
    s->calls++;
}

static int walk_fn(const bm_key *k, const bm_value *v, void *arg)
{
    bm_key victim = pu_key(VICTIM);
    if (!memcmp(k, &victim, sizeof(victim)))
        read_fn(v, arg);
    return 0;
}

static int walk_all(const bm_key *k, const bm_value *v, void *arg)
{
    (void)k;
    (void)v;
    (*(uint32_t *)arg)++;
    return 0;
}

static int upd_fn(const bm_value *cur, bm_value *out, void *arg)
{
    (void)cur;
    (void)out;
    (*(int *)arg)++;
    return BM_KEEP;
}

static void refused(uint32_t n_victim, int repair_by_delete)
{
    damage(n_victim);
    bm_map *m = pu_open(2, 16);
    bm_key k = pu_key(VICTIM);
    struct seen s = {0};
    int err = bm_get(m, &k, s.e, 4, &s.n, &s.rc);
    ck_assert_msg(err == BM_ECORRUPT, "bm_get of the damaged value returned %d (n %u, last element %016" PRIx64
                  ", stored %016" PRIx64 "), expected BM_ECORRUPT", err, s.n, s.e[n_victim - 1],
                  victim_elem(n_victim - 1));
    ck_assert_int_eq(bm_read(m, &k, read_fn, &s), BM_ECORRUPT);
    ck_assert_int_eq(s.calls, 0);
    ck_assert_int_eq(bm_foreach(m, walk_fn, &s), BM_ECORRUPT);
    ck_assert_int_eq(s.calls, 0);
    uint32_t visited = 0;
    ck_assert_int_eq(bm_foreach(m, walk_all, &visited), BM_ECORRUPT);
    ck_assert_uint_eq(visited, N - 1);
    int upd_calls = 0;
    ck_assert_int_eq(bm_update(m, &k, upd_fn, &upd_calls), BM_ECORRUPT);
    ck_assert_int_eq(upd_calls, 0);
    /* addref checks the whole value (the entry's sum covers its cell's): a damaged value is never given a
     * new valid-looking version; only insert or delete replace it. */
    uint64_t rc = 0;
    ck_assert_int_eq(bm_addref(m, &k, &rc), BM_ECORRUPT);
    ck_assert_int_eq(bm_get(m, &k, s.e, 4, &s.n, &s.rc), BM_ECORRUPT);
    check_others(m);

    /* Repair: replace or remove the key; the map then verifies clean and walks without error. */
    if (repair_by_delete) {
        ck_assert_int_eq(bm_delete(m, &k), 0);
        ck_assert_int_eq(bm_get(m, &k, NULL, 0, NULL, NULL), BM_ENOTFOUND);
    } else {
        uint64_t e[3] = {1, 2, 3};
        ck_assert_int_eq(bm_insert(m, &k, e, 3, 9), 0);
        memset(&s, 0, sizeof(s));
        ck_assert_int_eq(bm_get(m, &k, s.e, 4, &s.n, &s.rc), 0);
        ck_assert_uint_eq(s.n, 3);
        ck_assert_uint_eq(s.rc, 9);
        ck_assert_uint_eq(s.e[2], 3);
    }
    bm_verify_report r;
    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(bm_verify(m, &r), 0);
    visited = 0;
    ck_assert_int_eq(bm_foreach(m, walk_all, &visited), 0);
    ck_assert_uint_eq(visited, repair_by_delete ? N - 1 : N);
    check_others(m);
    bm_close(m);
}

START_TEST(t_inline_damage_not_returned) { refused(1, 0); }
END_TEST

START_TEST(t_cell_damage_not_returned) { refused(3, 0); }
END_TEST

START_TEST(t_cell_damage_deleted) { refused(3, 1); }
END_TEST

int main(void)
{
    Suite *s = suite_create("persist_damage");
    TCase *tc = tcase_create("detect");
    tcase_add_checked_fixture(tc, pu_setup, pu_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t_inline_damage_detected);
    tcase_add_test(tc, t_cell_damage_detected);
    suite_add_tcase(s, tc);
    TCase *rd = tcase_create("readers_check_sums");
    tcase_add_checked_fixture(rd, pu_setup, pu_teardown);
    tcase_set_timeout(rd, 60);
    tcase_add_test(rd, t_inline_damage_not_returned);
    tcase_add_test(rd, t_cell_damage_not_returned);
    tcase_add_test(rd, t_cell_damage_deleted);
    suite_add_tcase(s, rd);
    return pu_run_suite(s);
}
