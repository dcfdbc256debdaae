/*
 * Bad restart files: missing while the drives hold map files (BM_ENORESTART), empty / truncated / extended
 * (BM_ECORRUPT), every single byte flipped (BM_ECORRUPT, or BM_EVERSION for the format field), another
 * format version with a valid checksum (BM_EVERSION), another elem_size / max_buckets / max_search / drive
 * count (BM_EMISMATCH). After every refusal the map's data is intact with the right config and file.
 */
#include "persist_util.h"

#define N 3000u
#define RESTART_SIZE 12288 /* identity page + two commit-record slots */
#define IDENT_SIZE 64      /* the identity record at offset 0 */

static uint8_t good[RESTART_SIZE];

static void fill(uint32_t n_drives)
{
    bm_map *m = pu_open(n_drives, 16);
    for (uint32_t i = 0; i < N; i++)
        ck_assert_int_eq(pu_put(m, i, i, i), 0);
    bm_close(m);
    ck_assert_int_eq(pu_read_file(pu_restart, good, sizeof(good)), RESTART_SIZE);
    uint8_t extra[8];
    ck_assert_int_eq(pu_read_file(pu_restart, extra, 0), 0);
}

static void restore(void) { pu_write_file(pu_restart, good, sizeof(good)); }

static void expect_open(uint32_t n_drives, int want, const char *what)
{
    bm_config cfg = pu_cfg(n_drives, 16);
    bm_map *m = NULL;
    int err = bm_open(&cfg, &m);
    ck_assert_msg(err == want, "%s: bm_open returned %d (%s), expected %d (%s)", what, err, bm_strerror(err), want,
                  bm_strerror(want));
    ck_assert_ptr_null(m);
}

static void expect_intact(uint32_t n_drives)
{
    restore();
    bm_map *m = pu_open(n_drives, 16);
    ck_assert_uint_eq(bm_count(m), N);
    for (uint32_t i = 0; i < N; i++)
        ck_assert_msg(pu_check(m, i, i, i) == 0, "key %u lost", i);
    pu_verify_clean(m, NULL);
    bm_close(m);
}

/* FNV-1a over the bytes before the trailing checksum (the format documented in runtime/restart.c). */
static uint32_t fnv1a(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void missing(uint32_t n_drives)
{
    fill(n_drives);
    ck_assert_int_eq(unlink(pu_restart), 0);
    expect_open(n_drives, BM_ENORESTART, "restart file missing");
    ck_assert_int_eq(access(pu_restart, F_OK), -1); /* the refused open did not create one */
    expect_intact(n_drives);
}

START_TEST(t_missing_1_drive) { missing(1); }
END_TEST

START_TEST(t_missing_3_drives) { missing(3); }
END_TEST

START_TEST(t_missing_fresh_drives_create)
{
    /* With empty drives a missing restart file just means a new map. */
    bm_map *m = pu_open(2, 16);
    ck_assert_uint_eq(bm_count(m), 0);
    bm_close(m);
    ck_assert_int_eq(access(pu_restart, F_OK), 0);
}
END_TEST

START_TEST(t_truncated_and_extended)
{
    fill(2);
    static const size_t lens[] = {0, 1, 8, 11, 12, 30, 60, 63, 64, 4096, 8192, 12287};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        pu_write_file(pu_restart, good, lens[i]);
        char what[64];
        snprintf(what, sizeof(what), "restart file truncated to %zu bytes", lens[i]);
        expect_open(2, BM_ECORRUPT, what);
        bm_restart_info ri;
        ck_assert_int_eq(bm_read_restart_info(pu_restart, &ri), BM_ECORRUPT);
    }
    uint8_t longer[RESTART_SIZE + 1];
    memcpy(longer, good, RESTART_SIZE);
    longer[RESTART_SIZE] = 0;
    pu_write_file(pu_restart, longer, sizeof(longer));
    expect_open(2, BM_ECORRUPT, "restart file with a trailing byte");
    expect_intact(2);
}
END_TEST

START_TEST(t_every_byte_flipped)
{
    fill(2);
    for (int off = 0; off < IDENT_SIZE; off++) {
        for (int bit = 0; bit < 8; bit += 7) {
            uint8_t bad[RESTART_SIZE];
            memcpy(bad, good, sizeof(bad));
            bad[off] ^= (uint8_t)(1u << bit);
            pu_write_file(pu_restart, bad, sizeof(bad));
            /* Bytes 8..11 are the format version: a changed one reads as another version. */
            int want = off >= 8 && off < 12 ? BM_EVERSION : BM_ECORRUPT;
            char what[64];
            snprintf(what, sizeof(what), "byte %d bit %d flipped", off, bit);
            expect_open(2, want, what);
            bm_restart_info ri;
            ck_assert_msg(bm_read_restart_info(pu_restart, &ri) == want, "%s: bm_read_restart_info", what);
        }
    }
    expect_intact(2);
}
END_TEST

START_TEST(t_other_version)
{
    fill(2);
    bm_restart_info ri;
    restore();
    ck_assert_int_eq(bm_read_restart_info(pu_restart, &ri), 0);
    ck_assert_uint_eq(ri.elem_size, PU_ES);
    ck_assert_uint_eq(ri.max_buckets, 16);
    ck_assert_uint_eq(ri.n_drives, 2);
    uint32_t fmt;
    memcpy(&fmt, good + 8, 4);
    ck_assert_uint_eq(fmt, ri.format);
    static const uint32_t others[] = {0, 2, 3, 0x100, 0xffffffffu};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        uint32_t v = others[i] == ri.format ? ri.format + 1 : others[i];
        uint8_t bad[RESTART_SIZE];
        memcpy(bad, good, sizeof(bad));
        memcpy(bad + 8, &v, 4);
        uint32_t sum = fnv1a(bad, IDENT_SIZE - 4); /* a well-formed file of another version */
        memcpy(bad + IDENT_SIZE - 4, &sum, 4);
        pu_write_file(pu_restart, bad, sizeof(bad));
        expect_open(2, BM_EVERSION, "another format version");
        ck_assert_int_eq(bm_read_restart_info(pu_restart, &ri), BM_EVERSION);
    }
    /* Sanity: the checksum recomputed over the genuine file matches, so the files above were well formed. */
    uint32_t sum;
    memcpy(&sum, good + IDENT_SIZE - 4, 4);
    ck_assert_uint_eq(sum, fnv1a(good, IDENT_SIZE - 4));
    expect_intact(2);
}
END_TEST

/* Commit slots: the newer record damaged falls back to the older one only where that one's manifest still
 * exists, which after a close it does not (a checkpoint removes the manifest it replaces): the map is then
 * refused, never opened smaller. Both slots damaged: BM_ECORRUPT. */
START_TEST(t_commit_slots_damaged)
{
    fill(2);
    for (int slot = 0; slot < 2; slot++) {
        for (int off = 0; off < 80; off += 9) {
            uint8_t bad[RESTART_SIZE];
            memcpy(bad, good, sizeof(bad));
            bad[4096 * (1 + slot) + off] ^= 0x10;
            pu_write_file(pu_restart, bad, sizeof(bad));
            bm_config cfg = pu_cfg(2, 16);
            bm_map *m = NULL;
            int err = bm_open(&cfg, &m);
            if (err == 0) {
                /* The damaged slot was the older one: the map must be complete. */
                ck_assert_uint_eq(bm_count(m), N);
                bm_close(m);
                ck_assert_int_eq(pu_read_file(pu_restart, good, sizeof(good)), RESTART_SIZE);
            } else {
                ck_assert_msg(err == BM_EMISSING || err == BM_ECORRUPT, "slot %d byte %d: %s", slot, off,
                              bm_strerror(err));
                restore();
            }
        }
    }
    uint8_t bad[RESTART_SIZE];
    memcpy(bad, good, sizeof(bad));
    bad[4096 + 8] ^= 1;
    bad[8192 + 8] ^= 1;
    pu_write_file(pu_restart, bad, sizeof(bad));
    expect_open(2, BM_ECORRUPT, "both commit slots damaged");
    expect_intact(2);
}
END_TEST

START_TEST(t_mismatch)
{
    fill(2);
    bm_map *m = NULL;
    bm_config base = pu_cfg(2, 16), c;
    c = base, c.elem_size = 16;
    ck_assert_int_eq(bm_open(&c, &m), BM_EMISMATCH);
    c = base, c.elem_size = 4;
    ck_assert_int_eq(bm_open(&c, &m), BM_EMISMATCH);
    c = base, c.max_buckets = 32;
    ck_assert_int_eq(bm_open(&c, &m), BM_EMISMATCH);
    c = base, c.max_buckets = 0; /* the default, 256 */
    ck_assert_int_eq(bm_open(&c, &m), BM_EMISMATCH);
    c = base, c.max_search = 8;
    ck_assert_int_eq(bm_open(&c, &m), BM_EMISMATCH);
    c = base, c.n_drives = 1;
    ck_assert_int_eq(bm_open(&c, &m), BM_EMISMATCH);
    c = base, c.n_drives = 3;
    ck_assert_int_eq(bm_open(&c, &m), BM_EMISMATCH);
    ck_assert_ptr_null(m);
    /* The refusals changed nothing: same restart file, same data. */
    uint8_t now[RESTART_SIZE];
    ck_assert_int_eq(pu_read_file(pu_restart, now, sizeof(now)), RESTART_SIZE);
    ck_assert_int_eq(memcmp(now, good, RESTART_SIZE), 0);
    expect_intact(2);
    /* max_search given explicitly as the default (32) is the same map. */
    c = base, c.max_search = 32;
    ck_assert_int_eq(bm_open(&c, &m), 0);
    ck_assert_uint_eq(bm_count(m), N);
    bm_close(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("persist_restart");
    TCase *tc = tcase_create("restart");
    tcase_add_checked_fixture(tc, pu_setup, pu_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t_missing_1_drive);
    tcase_add_test(tc, t_missing_3_drives);
    tcase_add_test(tc, t_missing_fresh_drives_create);
    tcase_add_test(tc, t_truncated_and_extended);
    tcase_add_test(tc, t_every_byte_flipped);
    tcase_add_test(tc, t_other_version);
    tcase_add_test(tc, t_mismatch);
    tcase_add_test(tc, t_commit_slots_damaged);
    suite_add_tcase(s, tc);
    return pu_run_suite(s);
}
