/*
 * Unit suite: storage/stor_drives.c — the owner (pid) file of a locked drive. The drive directory may be
 * shared with other users, so anything planted under the owner file's name must neither be followed,
 * truncated nor deleted.
 */
#include "storage/stor_drives.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64], drive[96], victim[96], lockname[128];
static const char precious[] = "someone else's file\n";

static void setup(void)
{
    strcpy(root, "/tmp/bm-drives-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    snprintf(drive, sizeof(drive), "%s/drive", root);
    snprintf(victim, sizeof(victim), "%s/victim", root);
    snprintf(lockname, sizeof(lockname), "%s/.bucketmap.lock", drive);
    ck_assert_int_eq(mkdir(drive, 0755), 0);
    FILE *f = fopen(victim, "w");
    ck_assert_ptr_nonnull(f);
    fputs(precious, f);
    fclose(f);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    ck_assert_int_eq(system(cmd), 0);
}

static void assert_victim_untouched(void)
{
    char buf[64] = {0};
    FILE *f = fopen(victim, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    ck_assert_uint_eq(n, strlen(precious));
    ck_assert_str_eq(buf, precious);
}

static void lock_and_close(void)
{
    const char *dirs[] = { drive };
    struct stor_drives *d;
    ck_assert_int_eq(stor_drives_open(dirs, 1, &d), 0);
    /* The planted name costs only the pid record: the flock is still taken. */
    ck_assert_int_eq(stor_drives_lock(d, true), 0);
    assert_victim_untouched();
    stor_drives_close(d);
    assert_victim_untouched();
}

START_TEST(t_symlink_not_followed)
{
    ck_assert_int_eq(symlink(victim, lockname), 0);
    lock_and_close();
    struct stat st;
    ck_assert_int_eq(lstat(lockname, &st), 0); /* not ours: left in place */
    ck_assert(S_ISLNK(st.st_mode));
}
END_TEST

START_TEST(t_hardlink_not_truncated)
{
    ck_assert_int_eq(link(victim, lockname), 0);
    lock_and_close();
    struct stat st;
    ck_assert_int_eq(stat(lockname, &st), 0);
}
END_TEST

START_TEST(t_own_pid_file_written_and_removed)
{
    const char *dirs[] = { drive };
    struct stor_drives *d;
    ck_assert_int_eq(stor_drives_open(dirs, 1, &d), 0);
    ck_assert_int_eq(stor_drives_lock(d, true), 0);
    char buf[32] = {0}, want[32];
    FILE *f = fopen(lockname, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
    fclose(f);
    snprintf(want, sizeof(want), "%ld\n", (long)getpid());
    ck_assert_str_eq(buf, want);
    stor_drives_close(d);
    ck_assert_int_eq(access(lockname, F_OK), -1);
}
END_TEST

/* A stale pid file from an earlier owner (longer than ours) is rewritten whole, not partly overwritten. */
START_TEST(t_stale_pid_file_replaced)
{
    FILE *f = fopen(lockname, "w");
    ck_assert_ptr_nonnull(f);
    fputs("123456789012345\n", f);
    fclose(f);
    const char *dirs[] = { drive };
    struct stor_drives *d;
    ck_assert_int_eq(stor_drives_open(dirs, 1, &d), 0);
    ck_assert_int_eq(stor_drives_lock(d, true), 0);
    char buf[32] = {0}, want[32];
    f = fopen(lockname, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    snprintf(want, sizeof(want), "%ld\n", (long)getpid());
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_str_eq(buf, want);
    stor_drives_close(d);
    ck_assert_int_eq(access(lockname, F_OK), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("unit_drives");
    TCase *tc = tcase_create("owner_file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, t_symlink_not_followed);
    tcase_add_test(tc, t_hardlink_not_truncated);
    tcase_add_test(tc, t_own_pid_file_written_and_removed);
    tcase_add_test(tc, t_stale_pid_file_replaced);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
