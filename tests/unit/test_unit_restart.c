/* Unit suite: runtime/restart.c — the restart file's round trip and every way it can be damaged. */
#include "runtime/restart.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], path[128];

static void setup(void)
{
    strcpy(dir, "/tmp/bm-unit-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/restart", dir);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const struct restart_ident ident = {8, 256, 32, 2, "0123456789abcdef"};

static void patch(off_t off, const void *bytes, size_t n)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, bytes, n, off), (ssize_t)n);
    close(fd);
}

START_TEST(t_round_trip)
{
    struct restart_ident got;
    uint32_t format = 0;
    ck_assert_int_eq(restart_read(path, &got, NULL), -ENOENT);
    ck_assert_int_eq(restart_write(path, &ident), 0);
    ck_assert_int_eq(restart_read(path, &got, &format), 0);
    ck_assert_uint_eq(format, RESTART_FORMAT);
    ck_assert_uint_eq(got.elem_size, 8);
    ck_assert_uint_eq(got.max_buckets, 256);
    ck_assert_uint_eq(got.max_search, 32);
    ck_assert_uint_eq(got.n_drives, 2);
    ck_assert_str_eq(got.prefix, ident.prefix);
}
END_TEST

START_TEST(t_truncated_and_extended)
{
    struct restart_ident got;
    for (off_t len = 0; len < 64; len += 7) {
        ck_assert_int_eq(restart_write(path, &ident), 0);
        ck_assert_int_eq(truncate(path, len), 0);
        ck_assert_int_eq(restart_read(path, &got, NULL), BM_ECORRUPT);
    }
    ck_assert_int_eq(restart_write(path, &ident), 0);
    ck_assert_int_eq(truncate(path, 65), 0);
    ck_assert_int_eq(restart_read(path, &got, NULL), BM_ECORRUPT);
}
END_TEST

START_TEST(t_flipped_bytes)
{
    struct restart_ident got;
    for (off_t off = 12; off < 64; off++) {
        ck_assert_int_eq(restart_write(path, &ident), 0);
        uint8_t b = 0x5a;
        patch(off, &b, 1);
        ck_assert_int_eq(restart_read(path, &got, NULL), BM_ECORRUPT);
    }
}
END_TEST

START_TEST(t_other_version)
{
    struct restart_ident got;
    uint32_t format = 0, v2 = 2;
    ck_assert_int_eq(restart_write(path, &ident), 0);
    patch(8, &v2, 4);
    ck_assert_int_eq(restart_read(path, &got, &format), BM_EVERSION);
    ck_assert_uint_eq(format, 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("unit_restart");
    TCase *tc = tcase_create("restart");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, t_round_trip);
    tcase_add_test(tc, t_truncated_and_extended);
    tcase_add_test(tc, t_flipped_bytes);
    tcase_add_test(tc, t_other_version);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
