/* Unit suite: runtime/restart.c — the restart file's round trip and every way it can be damaged. */
#include "runtime/restart.h"

#include "common/bm_mem.h"

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
    for (off_t len = 0; len < 12288; len += len < 64 ? 7 : 4096) {
        ck_assert_int_eq(restart_write(path, &ident), 0);
        ck_assert_int_eq(truncate(path, len), 0);
        ck_assert_int_eq(restart_read(path, &got, NULL), BM_ECORRUPT);
    }
    ck_assert_int_eq(restart_write(path, &ident), 0);
    ck_assert_int_eq(truncate(path, 12289), 0);
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
    uint32_t format = 0, v1 = 1;
    ck_assert_int_eq(restart_write(path, &ident), 0);
    patch(8, &v1, 4);
    ck_assert_int_eq(restart_read(path, &got, &format), BM_EVERSION);
    ck_assert_uint_eq(format, 1);
}
END_TEST

/* Commit records alternate between two slots; the newest valid one wins, and a torn newest one leaves the
 * one before it. */
START_TEST(t_commit_slots)
{
    ck_assert_int_eq(restart_write(path, &ident), 0);
    int fd = restart_open_rw(path);
    ck_assert_int_ge(fd, 0);
    struct commit_rec c;
    ck_assert_int_eq(restart_read_commit(fd, &c), 0);
    ck_assert_uint_eq(c.epoch, 0); /* a new map: commit 0, empty and clean */
    ck_assert_uint_eq(c.clean, 1);
    for (uint64_t e = 1; e <= 5; e++) {
        struct commit_rec w = {.epoch = e, .count = e * 10};
        ck_assert_int_eq(restart_write_commit(fd, &w), 0);
        ck_assert_int_eq(restart_read_commit(fd, &c), 0);
        ck_assert_uint_eq(c.epoch, e);
        ck_assert_uint_eq(c.count, e * 10);
    }
    /* Epoch 5 lives in slot 1: tear it, epoch 4 (slot 0) is what is left. */
    uint8_t b = 0xff;
    ck_assert_int_eq(pwrite(fd, &b, 1, 8192 + 17), 1);
    ck_assert_int_eq(restart_read_commit(fd, &c), 0);
    ck_assert_uint_eq(c.epoch, 4);
    ck_assert_int_eq(pwrite(fd, &b, 1, 4096 + 17), 1);
    ck_assert_int_eq(restart_read_commit(fd, &c), BM_ECORRUPT);
    close(fd);
}
END_TEST

START_TEST(t_manifest_round_trip)
{
    struct manifest_rec recs[3] = {{0, 0, 0, 0, 7, 70, 64, 5, 10}, {0, 3, 1, 0, 8, 71, 32, 0, 0}, {5, 0, 1, 0, 9, 72, 128, 5, 3}};
    struct commit_rec c = {.manifest_epoch = 12};
    ck_assert_int_eq(manifest_write(dir, ident.prefix, 12, recs, 3, &c.manifest_len, &c.manifest_sum), 0);
    struct manifest_rec *got;
    uint32_t n;
    ck_assert_int_eq(manifest_read(dir, ident.prefix, &c, &got, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(memcmp(got, recs, sizeof(recs)), 0);
    bm_free(got);
    /* Damaged or of another length: refused, never half read. */
    char mp[256], name[96];
    manifest_name(ident.prefix, 12, name, sizeof(name));
    snprintf(mp, sizeof(mp), "%s/%s", dir, name);
    int fd = open(mp, O_RDWR);
    uint8_t b = 0x77;
    ck_assert_int_eq(pwrite(fd, &b, 1, 40), 1);
    close(fd);
    ck_assert_int_eq(manifest_read(dir, ident.prefix, &c, &got, &n), BM_ECORRUPT);
    c.manifest_epoch = 13;
    ck_assert_int_eq(manifest_read(dir, ident.prefix, &c, &got, &n), -ENOENT);
}
END_TEST

/* The temporary file is created exclusively and never through a symlink an attacker (or an accident)
 * planted: the symlink's target stays untouched. */
START_TEST(t_tmp_symlink_not_followed)
{
    char target[160], tmp[160];
    snprintf(target, sizeof(target), "%s/victim", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(target, "w");
    fputs("keep me", f);
    fclose(f);
    ck_assert_int_eq(symlink(target, tmp), 0);
    ck_assert_int_eq(restart_write(path, &ident), 0);
    char buf[16] = {0};
    f = fopen(target, "r");
    ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
    fclose(f);
    ck_assert_str_eq(buf, "keep me");
    struct restart_ident got;
    ck_assert_int_eq(restart_read(path, &got, NULL), 0);
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
    tcase_add_test(tc, t_commit_slots);
    tcase_add_test(tc, t_manifest_round_trip);
    tcase_add_test(tc, t_tmp_symlink_not_followed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
