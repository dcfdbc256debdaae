/*
 * test_hygiene — a temporary map leaves nothing behind: after bm_close no mapping of its files remains in
 * /proc/self/maps, the descriptor and thread counts are back where they were, a supplied drive directory
 * holds exactly what the user put there, and no bucketmap-* directory is left in $TMPDIR. Repeated over
 * 1,000 open/insert/close cycles.
 *
 * The suite points TMPDIR at a private directory of its own, so "no new bucketmap-* directory" is exact even
 * while other processes use /tmp.
 */
#include "tu.h"

#include <pthread.h>

enum { ES = 8 };

static char tmpbase[PATH_MAX];

/* Threads of this process, not counting io_uring's kernel workers (iou-wrk-*, iou-sqp-*): the kernel
 * starts and retires those for a persistent map's syncs on its own schedule. */
static int count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[PATH_MAX], comm[64] = "";
        snprintf(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(p, "r");
        if (f) {
            if (!fgets(comm, sizeof comm, f))
                comm[0] = 0;
            fclose(f);
        }
        if (strncmp(comm, "iou-", 4) != 0)
            n++;
    }
    closedir(d);
    return n;
}

/* The library starts no process-wide thread of its own (each map's maintenance thread ends with the map),
 * but liburcu or the allocator might on first use; that would not be a per-map leak. The thread baseline is
 * therefore taken after one throwaway map has been used and closed; every later map must leave the count
 * exactly there. */
static void *idle_thread(void *arg) { return arg; }

static int tasks_after_warmup(void)
{
    bm_config cfg = {.elem_size = ES, .max_buckets = 2};
    bm_map *m = tu_open_cfg(&cfg);
    uint64_t v[5] = {1, 2, 3, 4, 5};
    for (uint64_t i = 0; i < 50; i++) {
        bm_key k = tu_key(777000 + i);
        TU_OK(bm_insert(m, &k, v, (uint32_t)(i % 6), 0));
        TU_OK(bm_insert(m, &k, v, (uint32_t)((i + 3) % 6), 0));
    }
    bm_close(m);
    /* ThreadSanitizer starts a helper thread of its own at the process's first pthread_create, which a map
     * that never started its maintenance thread has not done yet. */
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, idle_thread, NULL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    return count_tasks();
}

static int count_map_lines(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        if (c == '\n')
            n++;
    fclose(f);
    return n;
}

/* Entries of tmpbase named bucketmap-*; the first one's full path goes to first (if not NULL). */
static int count_tmp_dirs(char *first)
{
    DIR *d = opendir(tmpbase);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "bucketmap-", 10) == 0) {
            if (n == 0 && first) {
                size_t bl = strlen(tmpbase), nl = strlen(e->d_name);
                ck_assert(bl + 1 + nl < PATH_MAX);
                memcpy(first, tmpbase, bl);
                first[bl] = '/';
                memcpy(first + bl + 1, e->d_name, nl + 1);
            }
            n++;
        }
    closedir(d);
    return n;
}

/* Writes values across size classes so the map has an index file and several data files. */
static void fill(bm_map *m, uint64_t nkeys, uint64_t salt)
{
    uint64_t buf[40];
    for (uint64_t i = 0; i < nkeys; i++) {
        bm_key k = tu_key(i + salt);
        tu_fill(buf, sizeof buf, i + salt);
        TU_OK(bm_insert(m, &k, buf, (uint32_t)(i % 40), i));
    }
}

static void expect_filled(bm_map *m, uint64_t nkeys, uint64_t salt)
{
    uint64_t buf[40];
    for (uint64_t i = 0; i < nkeys; i++) {
        bm_key k = tu_key(i + salt);
        tu_fill(buf, sizeof buf, i + salt);
        tu_expect_value(m, &k, ES, buf, (uint32_t)(i % 40), i);
    }
}

static void setup(void)
{
    snprintf(tmpbase, sizeof tmpbase, "%s/bmtest_hyg_XXXXXX", tu_tmp_base());
    ck_assert_msg(mkdtemp(tmpbase) != NULL, "mkdtemp: %s", strerror(errno));
    ck_assert_int_eq(setenv("TMPDIR", tmpbase, 1), 0);
}

static void teardown(void)
{
    tu_rmrf(tmpbase);
}

START_TEST(t_temp_dir_null_drives)
{
    int fds = tu_count_fds(), tasks = tasks_after_warmup();
    ck_assert_int_eq(count_tmp_dirs(NULL), 0);
    bm_config cfg = {.elem_size = ES, .max_buckets = 4};
    bm_map *m = tu_open_cfg(&cfg);
    fill(m, 500, 0);
    char dir[PATH_MAX];
    ck_assert_msg(count_tmp_dirs(dir) == 1, "an open temporary map made %d bucketmap-* dirs in TMPDIR",
                  count_tmp_dirs(NULL));
    /* Sanity of the probes themselves: while open, the map's files are mapped and open. */
    ck_assert_msg(tu_maps_under(dir) > 0, "no mapping under %s while the map is open", dir);
    ck_assert_int_gt(tu_dir_entries(dir), 0);
    expect_filled(m, 500, 0);
    bm_close(m);

    ck_assert_msg(tu_maps_under(dir) == 0, "%d mappings under %s after bm_close", tu_maps_under(dir), dir);
    ck_assert_msg(tu_maps_under(tmpbase) == 0, "mappings under TMPDIR after bm_close");
    ck_assert_msg(tu_count_fds() == fds, "fd count %d after bm_close, %d before", tu_count_fds(), fds);
    ck_assert_msg(count_tasks() == tasks, "thread count %d after bm_close, %d before", count_tasks(), tasks);
    ck_assert_msg(count_tmp_dirs(NULL) == 0, "bm_close left a bucketmap-* directory in TMPDIR");
    ck_assert_msg(tu_dir_entries(tmpbase) == 0, "bm_close left %d entries in TMPDIR", tu_dir_entries(tmpbase));
}
END_TEST

/* Files a user keeps in a drive directory; none may be touched by a temporary map. */
static const char *const user_files[] = {"keep.txt", ".hidden", "mine-data-1.bm", "sub/inner.txt"};
#define N_USER_FILES (sizeof user_files / sizeof user_files[0])

static void put_user_files(const char *dir)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/sub", dir);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    for (size_t i = 0; i < N_USER_FILES; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, user_files[i]);
        tu_write_file(p, user_files[i]);
    }
}

static void expect_only_user_files(const char *dir)
{
    char p[PATH_MAX + 64];
    /* keep.txt, .hidden, mine-data-1.bm, sub */
    ck_assert_msg(tu_dir_entries(dir) == 4, "drive %s holds %d entries after bm_close, expected the user's 4", dir,
                  tu_dir_entries(dir));
    for (size_t i = 0; i < N_USER_FILES; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, user_files[i]);
        ck_assert_msg(tu_file_is(p, user_files[i]), "user file %s was changed or removed", p);
    }
    snprintf(p, sizeof p, "%s/sub", dir);
    ck_assert_int_eq(tu_dir_entries(p), 1);
}

/* Bytes of the regular files directly in dir. */
static uint64_t dir_file_bytes(const char *dir)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "find '%s' -maxdepth 1 -type f -printf '%%s\\n' | awk '{s+=$1} END {print s+0}'",
             dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    unsigned long long n = 0;
    ck_assert_int_eq(fscanf(p, "%llu", &n), 1);
    pclose(p);
    return n;
}

/* A growing map keeps its buckets' previous files mapped as spares (regrown in place by the next grow);
 * once it stops growing, the maintenance thread empties them, so memory and disk come back down to the
 * live files, and a later grow still works. */
START_TEST(t_spares_trimmed_when_growth_stops)
{
    char d[PATH_MAX];
    tu_mkdtemp(d, "trim");
    const char *drives[1] = {d};
    bm_config cfg = {.elem_size = ES, .max_buckets = 2, .drives = drives, .n_drives = 1};
    bm_map *m = tu_open_cfg(&cfg);
    fill(m, 20000, 0);
    bm_stats st;
    bm_get_stats(m, &st);
    ck_assert_uint_gt(st.index_grows, 10);
    uint64_t live = st.index_bytes + st.data_bytes, on_disk = dir_file_bytes(d);
    ck_assert_msg(on_disk > live, "no spare kept while growing: %llu bytes on disk, %llu live",
                  (unsigned long long)on_disk, (unsigned long long)live);
    for (int i = 0; i < 100 && (on_disk = dir_file_bytes(d)) > live; i++)
        usleep(100 * 1000); /* the trim comes one to two 1 s ticks after the last grow */
    ck_assert_msg(on_disk == live, "spares not trimmed: %llu bytes on disk, %llu live", (unsigned long long)on_disk,
                  (unsigned long long)live);
    expect_filled(m, 20000, 0);
    fill(m, 20000, 20000);
    expect_filled(m, 20000, 0);
    expect_filled(m, 20000, 20000);
    bm_close(m);
    ck_assert_int_eq(tu_dir_entries(d), 0);
    tu_rmrf(d);
}
END_TEST

START_TEST(t_temp_supplied_drive)
{
    char empty[PATH_MAX], full[PATH_MAX];
    tu_mkdtemp(empty, "empty");
    tu_mkdtemp(full, "full");
    put_user_files(full);
    int fds = tu_count_fds(), tasks = tasks_after_warmup();
    const char *drives[2] = {empty, full};
    bm_config cfg = {.elem_size = ES, .max_buckets = 8, .drives = drives, .n_drives = 2};
    bm_map *m = tu_open_cfg(&cfg);
    fill(m, 800, 0);
    ck_assert_msg(tu_maps_under(empty) + tu_maps_under(full) > 0, "no mapping under the drives while open");
    ck_assert_msg(tu_dir_entries(empty) > 0 && tu_dir_entries(full) > 4, "the map did not use both drives");
    expect_filled(m, 800, 0);
    bm_close(m);

    ck_assert_msg(tu_maps_under(empty) == 0 && tu_maps_under(full) == 0, "mappings under the drives after close");
    ck_assert_msg(tu_count_fds() == fds, "fd count %d after bm_close, %d before", tu_count_fds(), fds);
    ck_assert_msg(count_tasks() == tasks, "thread count %d after bm_close, %d before", count_tasks(), tasks);
    ck_assert_msg(tu_dir_entries(empty) == 0, "bm_close left %d entries in a supplied drive", tu_dir_entries(empty));
    expect_only_user_files(full);
    ck_assert_msg(count_tmp_dirs(NULL) == 0, "a map with drives made a bucketmap-* directory in TMPDIR");
    tu_rmrf(empty);
    tu_rmrf(full);
}
END_TEST

START_TEST(t_two_temp_maps_share_drive)
{
    /* Closing one temporary map removes its own files only: the other map on the same drive keeps working. */
    char dir[PATH_MAX];
    tu_mkdtemp(dir, "shared");
    put_user_files(dir);
    int fds = tu_count_fds();
    const char *drives[1] = {dir};
    bm_config cfg = {.elem_size = ES, .max_buckets = 4, .drives = drives, .n_drives = 1};
    bm_map *a = tu_open_cfg(&cfg);
    bm_map *b = tu_open_cfg(&cfg);
    fill(a, 300, 0);
    fill(b, 300, 10000);
    bm_close(a);
    expect_filled(b, 300, 10000);
    fill(b, 300, 20000); /* and it can still grow */
    expect_filled(b, 300, 10000);
    expect_filled(b, 300, 20000);
    bm_close(b);
    ck_assert_int_eq(tu_maps_under(dir), 0);
    ck_assert_int_eq(tu_count_fds(), fds);
    expect_only_user_files(dir);
    tu_rmrf(dir);
}
END_TEST

START_TEST(t_cycles)
{
    enum { CYCLES = 1000, WARMUP = 20 };
    char dir[PATH_MAX];
    tu_mkdtemp(dir, "cycles");
    put_user_files(dir);
    const char *drives[1] = {dir};
    int fds0 = tu_count_fds(), tasks0 = tasks_after_warmup();
    int lines_warm = 0, fds_warm = 0;
    for (int c = 0; c < CYCLES; c++) {
        bool supplied = c % 2;
        bm_config cfg = {.elem_size = ES, .max_buckets = (uint32_t)1 << (c % 4)};
        if (supplied) {
            cfg.drives = drives;
            cfg.n_drives = 1;
        }
        bm_map *m = tu_open_cfg(&cfg);
        uint64_t v[3] = {(uint64_t)c, 2, 3};
        for (uint64_t i = 0; i < 4; i++) {
            bm_key k = tu_key(i + (uint64_t)c);
            TU_OK(bm_insert(m, &k, v, (uint32_t)(i % 4), i));
        }
        bm_key k = tu_key((uint64_t)c + 3);
        tu_expect_value(m, &k, ES, v, 3, 3);
        bm_close(m);
        if (c == WARMUP) {
            /* The allocator and liburcu may settle in during the first cycles; from here on nothing grows. */
            lines_warm = count_map_lines();
            fds_warm = tu_count_fds();
        }
        if (c % 100 == 99 || c == CYCLES - 1) {
            ck_assert_msg(tu_count_fds() == fds0, "cycle %d: fd count %d, %d before the first open", c,
                          tu_count_fds(), fds0);
            ck_assert_msg(tu_maps_under(dir) == 0 && tu_maps_under(tmpbase) == 0, "cycle %d: mappings left", c);
            ck_assert_msg(count_tmp_dirs(NULL) == 0, "cycle %d: bucketmap-* directory left in TMPDIR", c);
            ck_assert_msg(count_tasks() == tasks0, "cycle %d: %d threads, %d before", c, count_tasks(), tasks0);
        }
    }
    int lines_end = count_map_lines();
    ck_assert_int_eq(fds_warm, fds0);
    ck_assert_msg(lines_end <= lines_warm + 8, "/proc/self/maps grew from %d to %d lines over %d cycles", lines_warm,
                  lines_end, CYCLES - WARMUP);
    expect_only_user_files(dir);
    tu_rmrf(dir);
}
END_TEST

/* Closes a map right after grows and deletes, while its maintenance thread (runtime/defer.h) still has
 * retired files and cell batches queued or in hand: bm_close must join the thread, run what is left, and
 * leave no thread, descriptor, mapping or file (and, under ASan, no leak). */
START_TEST(t_close_with_maintenance_pending)
{
    int fds = tu_count_fds(), tasks = tasks_after_warmup();
    for (int round = 0; round < 20; round++) {
        bm_config cfg = {.elem_size = ES, .max_buckets = 2};
        bm_map *m = tu_open_cfg(&cfg);
        fill(m, 1500, (uint64_t)round << 20);
        for (uint64_t i = 0; i < 1500; i += 2) {
            bm_key k = tu_key(i + ((uint64_t)round << 20));
            TU_OK(bm_delete(m, &k));
        }
        fill(m, 3000, ((uint64_t)round << 20) + 100000); /* more grows: files retired just before close */
        ck_assert_msg(count_tasks() <= tasks + 1, "a map runs %d threads of its own", count_tasks() - tasks);
        bm_close(m);
        ck_assert_msg(count_tasks() == tasks, "round %d: %d threads after bm_close, %d before", round,
                      count_tasks(), tasks);
        ck_assert_msg(tu_count_fds() == fds, "round %d: fd count %d after bm_close, %d before", round,
                      tu_count_fds(), fds);
        ck_assert_msg(tu_maps_under(tmpbase) == 0, "round %d: mappings under TMPDIR after bm_close", round);
        ck_assert_msg(tu_dir_entries(tmpbase) == 0, "round %d: bm_close left %d entries in TMPDIR", round,
                      tu_dir_entries(tmpbase));
    }
}
END_TEST

/* A persistent map's background checkpoints run on the same maintenance thread: closing it stops and joins
 * that one thread and keeps the map's files (they are the map). */
START_TEST(t_persistent_close_joins_thread)
{
    char dir[PATH_MAX], rdir[PATH_MAX], restart[PATH_MAX + 16];
    tu_mkdtemp(dir, "pers");
    tu_mkdtemp(rdir, "restart");
    snprintf(restart, sizeof restart, "%s/restart", rdir);
    int fds = tu_count_fds(), tasks = tasks_after_warmup();
    const char *drives[1] = {dir};
    for (int round = 0; round < 3; round++) {
        bm_config cfg = {.elem_size = ES, .max_buckets = 2, .drives = drives, .n_drives = 1,
                         .restart_path = restart, .flush_interval_ms = 2};
        bm_map *m = tu_open_cfg(&cfg);
        ck_assert_msg(count_tasks() == tasks + 1, "a persistent map with a flush interval runs %d threads",
                      count_tasks() - tasks);
        fill(m, 2000, (uint64_t)round << 20);
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL); /* a few background checkpoints, with pinned files released by them */
        ck_assert_msg(count_tasks() == tasks + 1, "the map's grows started a second thread beside the flusher");
        bm_close(m);
        ck_assert_int_eq(count_tasks(), tasks);
        ck_assert_int_eq(tu_count_fds(), fds);
        ck_assert_int_eq(tu_maps_under(dir), 0);
        m = tu_open_cfg(&cfg); /* everything written is there after the clean close */
        for (int r = 0; r <= round; r++)
            expect_filled(m, 2000, (uint64_t)r << 20);
        bm_close(m);
    }
    tu_rmrf(dir);
    tu_rmrf(rdir);
}
END_TEST

START_TEST(t_failed_open_leaves_nothing)
{
    /* A failing bm_open after a good drive: no descriptor, mapping or file left anywhere. */
    char good[PATH_MAX], missing[PATH_MAX + 16];
    tu_mkdtemp(good, "good");
    snprintf(missing, sizeof missing, "%s/nope", good);
    int fds = tu_count_fds();
    const char *drives[2] = {good, missing};
    bm_config cfg = {.elem_size = ES, .drives = drives, .n_drives = 2};
    for (int i = 0; i < 50; i++) {
        bm_map *m = NULL;
        TU_FAILS(bm_open(&cfg, &m));
        ck_assert_ptr_null(m);
    }
    ck_assert_int_eq(tu_count_fds(), fds);
    ck_assert_int_eq(tu_dir_entries(good), 0);
    ck_assert_int_eq(tu_maps_under(good), 0);
    ck_assert_int_eq(count_tmp_dirs(NULL), 0);
    tu_rmrf(good);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hygiene");
    TCase *tc = tcase_create("hygiene");
    tcase_set_timeout(tc, TU_TIMEOUT);
    /* Checked fixtures run inside each test's forked process, where the fd/task baselines are taken. */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, t_temp_dir_null_drives);
    tcase_add_test(tc, t_temp_supplied_drive);
    tcase_add_test(tc, t_two_temp_maps_share_drive);
    tcase_add_test(tc, t_cycles);
    tcase_add_test(tc, t_failed_open_leaves_nothing);
    tcase_add_test(tc, t_close_with_maintenance_pending);
    tcase_add_test(tc, t_persistent_close_joins_thread);
    tcase_add_test(tc, t_spares_trimmed_when_growth_stops);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
