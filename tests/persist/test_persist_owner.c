/*
 * One owner and foreign files: a second bm_open of the drives from this process or a forked child gets
 * BM_ELOCKED while the map is open and succeeds after bm_close; files the map did not create ("notes.txt",
 * "123", "foo.bm", and names of another map's files) survive persistent and temporary maps, their opens,
 * closes and crash-free cycles.
 */
#include "persist_util.h"

static const char *foreign_names[] = {"notes.txt", "123", "foo.bm"};

static void make_foreign(void)
{
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 3; i++) {
            char p[512], body[256];
            snprintf(p, sizeof(p), "%s/%s", pu_d[d], foreign_names[i]);
            int n = snprintf(body, sizeof(body), "foreign %d %s\n", d, foreign_names[i]);
            pu_write_file(p, body, (size_t)n);
        }
}

static void check_foreign(const char *when)
{
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 3; i++) {
            char p[512], body[256], want[256];
            snprintf(p, sizeof(p), "%s/%s", pu_d[d], foreign_names[i]);
            int n = snprintf(want, sizeof(want), "foreign %d %s\n", d, foreign_names[i]);
            ssize_t got = pu_read_file(p, body, sizeof(body));
            ck_assert_msg(got == n && memcmp(body, want, (size_t)n) == 0, "%s: %s missing or changed", when, p);
        }
}

static int child_open_result(const bm_config *cfg)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        bm_map *m = NULL;
        int err = bm_open(cfg, &m);
        int code = err == 0 ? 0 : err == BM_ELOCKED ? 1 : 2;
        if (m) {
            code = pu_check(m, 1, 1, 1) == 0 ? 0 : 3;
            bm_close(m);
        }
        _exit(code);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

START_TEST(t_second_opener)
{
    bm_map *m = pu_open(3, 16), *m2 = NULL;
    ck_assert_int_eq(pu_put(m, 1, 1, 1), 0);
    ck_assert_int_eq(bm_flush(m), 0);
    bm_config cfg = pu_cfg(3, 16);
    ck_assert_int_eq(bm_open(&cfg, &m2), BM_ELOCKED);
    ck_assert_ptr_null(m2);
    /* Any one shared drive is enough to conflict. */
    bm_config one = pu_cfg(1, 16);
    one.drives = &pu_drives[2];
    ck_assert_int_eq(bm_open(&one, &m2), BM_ELOCKED);
    ck_assert_int_eq(child_open_result(&cfg), 1);
    ck_assert_int_eq(pu_check(m, 1, 1, 1), 0); /* the refused opens did not disturb the owner */
    ck_assert_int_eq(pu_put(m, 2, 2, 2), 0);
    bm_close(m);

    ck_assert_int_eq(child_open_result(&cfg), 0); /* free again, for another process */
    m = pu_open(3, 16);                              /* and for this one */
    ck_assert_int_eq(pu_check(m, 1, 1, 1), 0);
    ck_assert_int_eq(pu_check(m, 2, 2, 2), 0);
    bm_close(m);
}
END_TEST

START_TEST(t_lock_of_killed_owner)
{
    bm_config cfg = pu_cfg(2, 16);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        bm_map *m;
        close(p[0]);
        if (bm_open(&cfg, &m) || pu_put(m, 1, 1, 1))
            _exit(1);
        if (write(p[1], "R", 1) != 1)
            _exit(1);
        pause(); /* killed while holding the lock */
        _exit(2);
    }
    close(p[1]);
    char c;
    ck_assert_msg(read(p[0], &c, 1) == 1, "the child could not open the map");
    close(p[0]);
    bm_map *m2 = NULL;
    ck_assert_int_eq(bm_open(&cfg, &m2), BM_ELOCKED);
    kill(pid, SIGKILL);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    bm_map *m = pu_open(2, 16); /* a dead owner's lock is released */
    ck_assert_int_eq(pu_check(m, 1, 1, 1), 0);
    pu_verify_clean(m, NULL);
    bm_close(m);
}
END_TEST

/* A temporary map on the caller's drives takes a shared lock (bucketmap.h, bm_open): it cannot open beside a
 * persistent map, whose recovery would take its files for a lost map's (BM_ENORESTART, or worse), and a
 * persistent map cannot open beside it. This was a bug found here: temporary maps took no lock at all. */
START_TEST(t_temporary_map_respects_lock)
{
    bm_map *m = pu_open(3, 16), *m2 = NULL;
    ck_assert_int_eq(pu_put(m, 1, 1, 1), 0);
    bm_config tmp = {.elem_size = PU_ES, .drives = &pu_drives[2], .n_drives = 1};
    int err = bm_open(&tmp, &m2);
    if (m2)
        bm_close(m2);
    bm_close(m);
    ck_assert_msg(err == BM_ELOCKED, "temporary map on a locked drive: bm_open returned %d (%s), expected BM_ELOCKED",
                  err, bm_strerror(err));
}
END_TEST

START_TEST(t_persistent_open_beside_temporary_map)
{
    bm_config tmp = {.elem_size = PU_ES, .drives = pu_drives, .n_drives = 1};
    bm_map *t = NULL, *m = NULL;
    ck_assert_int_eq(bm_open(&tmp, &t), 0);
    ck_assert_int_eq(pu_put(t, 1, 1, 1), 0);
    bm_config cfg = pu_cfg(1, 16);
    int err = bm_open(&cfg, &m);
    if (m)
        bm_close(m);
    bm_close(t);
    ck_assert_msg(err == BM_ELOCKED,
                  "persistent open of a drive an open temporary map uses: bm_open returned %d (%s), expected "
                  "BM_ELOCKED", err, bm_strerror(err));
    /* Once the temporary map is gone the drive is free and empty: a new persistent map opens. */
    m = pu_open(1, 16);
    bm_close(m);
}
END_TEST

START_TEST(t_foreign_files_survive)
{
    make_foreign();
    /* Persistent map on all three drives: create, fill, close, reopen, close. */
    bm_map *m = pu_open(3, 16);
    /* Files named like another map's (another prefix): created after ours exists, since on empty drives they
     * would make the missing restart file look like a lost one (BM_ENORESTART). */
    static const char *lookalikes[] = {"0123456789abcdef-b0-idx-0.bm", "0123456789abcdef-b3-d2-7.bm"};
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 2; i++) {
            char p[512];
            snprintf(p, sizeof(p), "%s/%s", pu_d[d], lookalikes[i]);
            pu_write_file(p, "another map\n", 12);
        }
    for (uint32_t i = 0; i < 20000; i++)
        ck_assert_int_eq(pu_put(m, i, i, 1), 0);
    check_foreign("persistent map open");
    bm_close(m);
    check_foreign("persistent map closed");
    m = pu_open(3, 16);
    ck_assert_uint_eq(bm_count(m), 20000);
    for (uint32_t i = 0; i < 20000; i += 2) {
        bm_key k = pu_key(i);
        ck_assert_int_eq(bm_delete(m, &k), 0);
    }
    bm_close(m);
    check_foreign("persistent map reopened and closed");

    /* A temporary map on the same directories removes only what it created. */
    bm_config tmp = {.elem_size = PU_ES, .max_buckets = 16, .drives = pu_drives, .n_drives = 3};
    ck_assert_int_eq(bm_open(&tmp, &m), 0);
    for (uint32_t i = 0; i < 20000; i++)
        ck_assert_int_eq(pu_put(m, i, i + 1, 2), 0);
    bm_close(m);
    check_foreign("temporary map closed");

    /* ... and the persistent map's files survived the temporary one. */
    m = pu_open(3, 16);
    ck_assert_uint_eq(bm_count(m), 10000);
    for (uint32_t i = 0; i < 20000; i++)
        ck_assert_int_eq(pu_check(m, i, i, 1), i % 2 ? 0 : 1);
    pu_verify_clean(m, NULL);
    bm_close(m);
    check_foreign("end");
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 2; i++) {
            char p[512], body[32];
            snprintf(p, sizeof(p), "%s/%s", pu_d[d], lookalikes[i]);
            ck_assert_msg(pu_read_file(p, body, sizeof(body)) == 12 && !memcmp(body, "another map\n", 12),
                          "%s missing or changed", p);
        }
}
END_TEST

START_TEST(t_foreign_files_temporary_only)
{
    make_foreign();
    bm_config tmp = {.elem_size = PU_ES, .max_buckets = 4, .drives = pu_drives, .n_drives = 3};
    bm_map *m;
    for (int round = 0; round < 3; round++) {
        ck_assert_int_eq(bm_open(&tmp, &m), 0);
        for (uint32_t i = 0; i < 5000; i++)
            ck_assert_int_eq(pu_put(m, i, i, 1), 0);
        bm_close(m);
        check_foreign("temporary map closed");
    }
    /* Nothing of the temporary maps is left behind but the foreign files (and a lock file). */
    for (int d = 0; d < 3; d++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -v -e '^notes.txt$' -e '^123$' -e '^foo.bm$' | grep -q .", pu_d[d]);
        ck_assert_msg(system(cmd) != 0, "drive %d: a temporary map left files behind", d);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("persist_owner");
    TCase *tc = tcase_create("owner");
    tcase_add_checked_fixture(tc, pu_setup, pu_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, t_second_opener);
    tcase_add_test(tc, t_lock_of_killed_owner);
    tcase_add_test(tc, t_foreign_files_survive);
    tcase_add_test(tc, t_foreign_files_temporary_only);
    suite_add_tcase(s, tc);
    TCase *kb = tcase_create("temporary_map_lock");
    tcase_add_checked_fixture(kb, pu_setup, pu_teardown);
    tcase_set_timeout(kb, 60);
    tcase_add_test(kb, t_temporary_map_respects_lock);
    tcase_add_test(kb, t_persistent_open_beside_temporary_map);
    suite_add_tcase(s, kb);
    return pu_run_suite(s);
}
