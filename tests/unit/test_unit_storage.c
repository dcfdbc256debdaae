/* Unit suite: storage/ — mapped cell files and drive sets. */
#include "storage/stor_drives.h"
#include "storage/stor_file.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/bm-unit-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static off_t file_size(const char *name)
{
    char p[256];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return stat(p, &st) == 0 ? st.st_size : -1;
}

START_TEST(t_create_map_destroy)
{
    struct stor_file *f;
    ck_assert_int_eq(stor_file_create(dir, "a.bm", 0, 4096, 64, 10, 0, &f), 0);
    ck_assert_int_eq(file_size("a.bm"), 4096 + 640);
    ck_assert_uint_eq(f->ncells, 10);
    memset(stor_cell(f, 9), 0xab, 64); /* last cell is inside the mapping */
    ck_assert_int_eq(stor_file_msync(f), 0);
    /* Exclusive creation: never overwrite an existing file. */
    struct stor_file *g;
    ck_assert_int_eq(stor_file_create(dir, "a.bm", 0, 4096, 64, 10, 0, &g), -EEXIST);
    stor_file_destroy(f, true);
    ck_assert_int_eq(file_size("a.bm"), -1);
}
END_TEST

START_TEST(t_reopen_keeps_bytes)
{
    struct stor_file *f;
    ck_assert_int_eq(stor_file_create(dir, "b.bm", 0, 4096, 48, 7, STOR_NO_PREALLOC, &f), 0);
    memset(stor_header(f), 0x11, 16);
    memset(stor_cell(f, 3), 0x5a, 48);
    stor_file_destroy(f, false); /* keep the file */
    ck_assert_int_eq(stor_file_open(dir, "b.bm", 0, 4096, 48, 0, &f), 0);
    ck_assert_uint_eq(f->ncells, 7);
    ck_assert_uint_eq(((uint8_t *)stor_cell(f, 3))[47], 0x5a);
    ck_assert_uint_eq(((uint8_t *)stor_header(f))[15], 0x11);
    ck_assert(!f->created); /* opened, not created: never unlinked by destroy */
    stor_file_destroy(f, true);
    ck_assert_int_eq(file_size("b.bm"), 4096 + 7 * 48);
}
END_TEST

/* Upstream's load_on_restart_failures: sizes that are not header + whole cells are refused. */
START_TEST(t_open_rejects_bad_sizes)
{
    static const off_t sizes[] = {0, 1, 4096, 4096 + 47, 4096 + 49, 4096 + 4097};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s/s%u", dir, i);
        int fd = open(p, O_RDWR | O_CREAT, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, sizes[i]), 0);
        close(fd);
        struct stor_file *f;
        char name[16];
        snprintf(name, sizeof(name), "s%u", i);
        ck_assert_int_eq(stor_file_open(dir, name, 0, 4096, 48, 0, &f), -EBADMSG);
    }
    struct stor_file *f;
    ck_assert_int_eq(stor_file_open(dir, "missing", 0, 4096, 48, 0, &f), -ENOENT);
}
END_TEST

START_TEST(t_recycle_zeroes_and_resizes)
{
    struct stor_file *f;
    ck_assert_int_eq(stor_file_create(dir, "r.bm", 0, 4096, 64, 64, 0, &f), 0);
    memset(stor_cell(f, 0), 0xff, 64 * 64);
    stor_file_unmap(f);
    ck_assert_int_eq(stor_file_recycle(f, 128, 0), 0);
    ck_assert_uint_eq(f->ncells, 128);
    ck_assert_int_eq(file_size("r.bm"), 4096 + 128 * 64);
    for (uint64_t i = 0; i < 128; i++)
        ck_assert_uint_eq(*(uint64_t *)stor_cell(f, i), 0);
    stor_file_unmap(f);
    ck_assert_int_eq(stor_file_recycle(f, 16, STOR_NO_PREALLOC), 0); /* shrinking works too */
    ck_assert_int_eq(file_size("r.bm"), 4096 + 16 * 64);
    ck_assert_uint_eq(*(uint64_t *)stor_cell(f, 15), 0);
    stor_file_destroy(f, true);
}
END_TEST

/* A populated file is mapped in a reservation: regrowing it keeps the mapping where it is (the pages it
 * has stay mapped), zeroes it, grows and shrinks the file, and refuses past the reservation. */
START_TEST(t_regrow_in_place)
{
    struct stor_file *f;
    ck_assert_int_eq(stor_file_create(dir, "g.bm", 0, 4096, 64, 64, STOR_POPULATE, &f), 0);
    uint8_t *base = f->base;
    ck_assert_uint_ge(f->resv_len, 4ull << 20);
    memset(stor_cell(f, 0), 0xff, 64 * 64);
    ck_assert_int_eq(stor_file_regrow(f, 1000, STOR_POPULATE), 0);
    ck_assert_ptr_eq(f->base, base);
    ck_assert_uint_eq(f->ncells, 1000);
    ck_assert_int_eq(file_size("g.bm"), 4096 + 1000 * 64);
    for (uint64_t i = 0; i < 1000; i++)
        ck_assert_uint_eq(*(uint64_t *)stor_cell(f, i), 0);
    memset(stor_cell(f, 0), 0xee, 1000 * 64); /* every byte of the grown mapping is writable */
    ck_assert_int_eq(stor_file_regrow(f, 10, 0), 0); /* shrinking, still in place */
    ck_assert_ptr_eq(f->base, base);
    ck_assert_int_eq(file_size("g.bm"), 4096 + 10 * 64);
    ck_assert_uint_eq(*(uint64_t *)stor_cell(f, 9), 0);
    ck_assert_int_eq(stor_file_regrow(f, (f->resv_len / 64) + 1, 0), -EAGAIN); /* past the reservation */
    ck_assert_ptr_eq(f->base, base);
    ck_assert_uint_eq(f->ncells, 10);
    ck_assert_int_eq(stor_file_regrow(f, 2000, 0), 0); /* a refusal left it usable */
    ck_assert_uint_eq(*(uint64_t *)stor_cell(f, 1999), 0);
    stor_file_unmap(f);
    ck_assert_int_eq(stor_file_regrow(f, 20, 0), -EAGAIN); /* unmapped: the caller recycles instead */
    stor_file_destroy(f, true);
    ck_assert_int_eq(file_size("g.bm"), -1);
}
END_TEST

START_TEST(t_drives_validate_and_place)
{
    struct stor_drives *d;
    const char *missing[] = {"/nonexistent/bm"};
    ck_assert_int_eq(stor_drives_open(missing, 1, &d), -ENOENT);
    char file[128];
    snprintf(file, sizeof(file), "%s/plain", dir);
    close(open(file, O_CREAT | O_WRONLY, 0644));
    const char *notdir[] = {file};
    ck_assert_int_eq(stor_drives_open(notdir, 1, &d), -ENOTDIR);

    char a[128], b[128];
    snprintf(a, sizeof(a), "%s/a", dir);
    snprintf(b, sizeof(b), "%s/b", dir);
    mkdir(a, 0755);
    mkdir(b, 0755);
    const char *two[] = {a, b};
    ck_assert_int_eq(stor_drives_open(two, 2, &d), 0);
    /* Round-robin: consecutive files alternate drives. */
    uint32_t p0 = stor_drives_pick(d), p1 = stor_drives_pick(d), p2 = stor_drives_pick(d);
    ck_assert_uint_ne(p0, p1);
    ck_assert_uint_eq(p0, p2);
    char n1[96], n2[96];
    stor_drives_name(d, "t", n1, sizeof(n1));
    stor_drives_name(d, "t", n2, sizeof(n2));
    ck_assert_str_ne(n1, n2);
    /* The exclusive lock excludes everyone, also this process; shared locks exclude only it. */
    ck_assert_int_eq(stor_drives_lock(d, true), 0);
    struct stor_drives *d2, *d3;
    ck_assert_int_eq(stor_drives_open(two, 2, &d2), 0);
    ck_assert_int_eq(stor_drives_lock(d2, true), -EWOULDBLOCK);
    stor_drives_close(d2);
    ck_assert_int_eq(stor_drives_open(two, 2, &d2), 0);
    ck_assert_int_eq(stor_drives_lock(d2, false), -EWOULDBLOCK);
    stor_drives_close(d2);
    stor_drives_close(d);
    ck_assert_int_eq(stor_drives_open(two, 2, &d2), 0);
    ck_assert_int_eq(stor_drives_open(two, 2, &d3), 0);
    ck_assert_int_eq(stor_drives_lock(d2, false), 0);
    ck_assert_int_eq(stor_drives_lock(d3, false), 0);
    ck_assert_int_eq(stor_drives_open(two, 2, &d), 0);
    ck_assert_int_eq(stor_drives_lock(d, true), -EWOULDBLOCK);
    stor_drives_close(d);
    stor_drives_close(d3);
    stor_drives_close(d2);
    /* Released: exclusive again, and a shared lock leaves no file behind. */
    ck_assert_int_eq(stor_drives_open(two, 2, &d2), 0);
    ck_assert_int_eq(stor_drives_lock(d2, true), 0);
    stor_drives_close(d2);
    struct stat st;
    char owner[600];
    snprintf(owner, sizeof(owner), "%s/.bucketmap.lock", a);
    ck_assert_int_eq(stat(owner, &st), -1);
}
END_TEST

START_TEST(t_temp_drive_removed)
{
    struct stor_drives *d;
    ck_assert_int_eq(stor_drives_open(NULL, 0, &d), 0);
    char path[4096];
    snprintf(path, sizeof(path), "%s", d->dirs[0]);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    stor_drives_close(d);
    ck_assert_int_eq(stat(path, &st), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("unit_storage");
    TCase *tc = tcase_create("storage");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, t_create_map_destroy);
    tcase_add_test(tc, t_reopen_keeps_bytes);
    tcase_add_test(tc, t_open_rejects_bad_sizes);
    tcase_add_test(tc, t_recycle_zeroes_and_resizes);
    tcase_add_test(tc, t_regrow_in_place);
    tcase_add_test(tc, t_drives_validate_and_place);
    tcase_add_test(tc, t_temp_drive_removed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
