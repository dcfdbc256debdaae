/* Unit suite: runtime/entry.h — size classes, data refs, hashing, checksums, the reader's seqcount copy. */
#include "runtime/entry.h"

#include <check.h>
#include <stdlib.h>

START_TEST(t_size_class)
{
    /* Upstream's data_bucket_from_num_slots table. */
    ck_assert_uint_eq(size_class(0), 0);
    ck_assert_uint_eq(size_class(1), 0);
    ck_assert_uint_eq(size_class(2), 1);
    ck_assert_uint_eq(size_class(3), 2);
    ck_assert_uint_eq(size_class(4), 2);
    ck_assert_uint_eq(size_class(5), 3);
    ck_assert_uint_eq(size_class(16), 4);
    ck_assert_uint_eq(size_class(17), 5);
    ck_assert_uint_eq(size_class(UINT32_MAX), 32);
}
END_TEST

START_TEST(t_data_ref)
{
    /* offset and pow2 are independent fields (upstream's index_entry test_api). */
    static const uint64_t offs[] = {0, 1, (1ull << 32) - 1, (1ull << 56) - 1};
    static const unsigned pows[] = {0, 1, 40, 255};
    for (unsigned i = 0; i < 4; i++)
        for (unsigned j = 0; j < 4; j++) {
            uint64_t r = DATA_REF(pows[j], offs[i]);
            ck_assert_uint_eq(DATA_REF_OFF(r), offs[i]);
            ck_assert_uint_eq(DATA_REF_POW2(r), pows[j]);
        }
}
END_TEST

START_TEST(t_home_in_range_and_spread)
{
    uint64_t k[4] = {1, 2, 3, 4};
    unsigned hits[10] = {0};
    for (uint64_t i = 0; i < 100000; i++) {
        k[0] = i; /* structured keys must spread too */
        uint64_t h = entry_home(entry_hash(k, 42), 10);
        ck_assert_uint_lt(h, 10);
        hits[h]++;
    }
    for (int i = 0; i < 10; i++)
        ck_assert(hits[i] > 9000 && hits[i] < 11000);
    /* The seed matters. */
    ck_assert_uint_ne(entry_hash(k, 1), entry_hash(k, 2));
}
END_TEST

START_TEST(t_sums_detect_change)
{
    uint64_t k[4] = {9, 8, 7, 6};
    uint32_t a = entry_sum(TAG_INLINE, k, 1, 2, 3);
    ck_assert_uint_ne(a, entry_sum(TAG_INLINE, k, 1, 2, 4));
    ck_assert_uint_ne(a, entry_sum(TAG_DATA, k, 1, 2, 3));
    ck_assert_uint_ne(a, entry_sum(TAG_INLINE, k, 2, 2, 3));
    uint8_t buf[37] = {0};
    uint32_t s = cell_sum(buf, sizeof(buf));
    buf[36] = 1;
    ck_assert_uint_ne(s, cell_sum(buf, sizeof(buf)));
    ck_assert_uint_ne(cell_sum(buf, 0), cell_sum(buf, 8));
}
END_TEST

START_TEST(t_reader_copy)
{
    struct bkt_entry e = {0};
    uint64_t k[4] = {1, 2, 3, 4}, other[4] = {1, 2, 3, 5}, retries = 0;
    struct entry_snap s;
    ck_assert_int_eq(entry_read_if_key(&e, k, &s, &retries), 0); /* free */
    entry_write_begin(&e);
    for (int i = 0; i < 4; i++)
        entry_set(&e, key[i], k[i]);
    entry_set(&e, rc, 77);
    entry_set(&e, p[0], 5);
    /* A FREE slot being filled is still free to readers (the insert has not happened yet). */
    ck_assert_int_eq(entry_read_if_key(&e, k, &s, &retries), 0);
    entry_write_end(&e, TAG_INLINE, 0);
    ck_assert_int_eq(entry_read_if_key(&e, k, &s, &retries), 1);
    ck_assert_uint_eq(s.rc, 77);
    ck_assert_uint_eq(s.p[0], 5);
    ck_assert_uint_eq(entry_tag(s.state), TAG_INLINE);
    ck_assert_int_eq(entry_read_if_key(&e, other, &s, &retries), 0);
    ck_assert_uint_eq(retries, 0);
    /* Each write advances the version, so a reader can tell two writes of equal content apart. */
    uint64_t v1 = e.state;
    entry_write_begin(&e);
    entry_write_end(&e, TAG_INLINE, 0);
    ck_assert_uint_ne(v1, e.state);
    ck_assert_uint_eq(v1 >> 32, e.state >> 32); /* same content, same sum */
    /* A shadowed entry is invisible to readers but keeps its contents and sum for recovery. */
    entry_set_flags(&e, ENTRY_SHADOW);
    ck_assert_int_eq(entry_read_if_key(&e, k, &s, &retries), 0);
    ck_assert_uint_eq(v1 >> 32, e.state >> 32);
    entry_set_flags(&e, 0);
    ck_assert_int_eq(entry_read_if_key(&e, k, &s, &retries), 1);
}
END_TEST

START_TEST(t_sum_binds_cell)
{
    /* A DATA entry's sum covers its cell's sum: the same entry words with another cell's sum fail. */
    uint64_t k[4] = {9, 8, 7, 6};
    uint32_t a = entry_sum_bound(TAG_DATA, k, 1, DATA_REF(5, 3), 4, 0x1234u);
    uint64_t state = (uint64_t)a << 32 | TAG_DATA;
    ck_assert(entry_sum_ok(state, k, 1, DATA_REF(5, 3), 4, 0x1234u));
    ck_assert(!entry_sum_ok(state, k, 1, DATA_REF(5, 3), 4, 0x1235u));
    ck_assert(!entry_sum_ok(state, k, 1, DATA_REF(5, 3), 4, 0));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("unit_entry");
    TCase *tc = tcase_create("entry");
    tcase_add_test(tc, t_size_class);
    tcase_add_test(tc, t_data_ref);
    tcase_add_test(tc, t_home_in_range_and_spread);
    tcase_add_test(tc, t_sums_detect_change);
    tcase_add_test(tc, t_reader_copy);
    tcase_add_test(tc, t_sum_binds_cell);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
