/*
 * Unit suite: storage/stor_uring.c — the batch sync engine when the kernel refuses submissions.
 *
 * io_uring_submit, fsync and fdatasync are wrapped at link time (-Wl,--wrap, see CMakeLists.txt), so the
 * library carries no test hook: the test decides what the "kernel" answers and counts the slow-path syncs.
 */
#include "storage/stor_uring.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int __real_io_uring_submit(struct io_uring *ring);
int __real_fsync(int fd);
int __real_fdatasync(int fd);

static int pass_first;      /* io_uring_submit calls to let through before refusing */
static int refuse_left;     /* io_uring_submit calls still to refuse */
static int refuse_err;      /* what they return */
static int slow_syncs[256]; /* fsync/fdatasync calls per fd */

int __wrap_io_uring_submit(struct io_uring *ring)
{
    if (pass_first > 0)
        pass_first--;
    else if (refuse_left > 0) {
        refuse_left--;
        return refuse_err;
    }
    return __real_io_uring_submit(ring);
}

int __wrap_fsync(int fd)
{
    if (fd >= 0 && fd < 256)
        slow_syncs[fd]++;
    return __real_fsync(fd);
}

int __wrap_fdatasync(int fd)
{
    if (fd >= 0 && fd < 256)
        slow_syncs[fd]++;
    return __real_fdatasync(fd);
}

#define NFILES 10
static char dir[64];
static int fds[NFILES];

static void setup(void)
{
    strcpy(dir, "/tmp/bm-uring-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (int i = 0; i < NFILES; i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/f%d", dir, i);
        fds[i] = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        ck_assert_int_ge(fds[i], 0);
        ck_assert_int_lt(fds[i], 256);
        ck_assert_int_eq(write(fds[i], "x", 1), 1);
    }
    memset(slow_syncs, 0, sizeof(slow_syncs));
    pass_first = 0;
    refuse_left = 0;
}

static void teardown(void)
{
    for (int i = 0; i < NFILES; i++) {
        char p[128];
        close(fds[i]);
        snprintf(p, sizeof(p), "%s/f%d", dir, i);
        unlink(p);
    }
    rmdir(dir);
}

/* A depth smaller than the batch makes the engine submit, reap and refill several times. */
static bool ring_or_skip(struct stor_ring *r)
{
    ck_assert_int_eq(stor_ring_init(r, 4), 0);
    if (!r->have_ring) {
        fprintf(stderr, "unit_uring: io_uring unavailable here, nothing to test\n");
        stor_ring_fini(r);
        return false;
    }
    return true;
}

/* -EAGAIN from io_uring_submit means nothing was accepted. Counting the prepared SQEs as in flight made the
 * engine wait for completions that could never come (the test timed out). */
START_TEST(t_transient_refusal_completes)
{
    struct stor_ring r;
    if (!ring_or_skip(&r))
        return;
    refuse_left = 3;
    refuse_err = -EAGAIN;
    ck_assert_int_eq(stor_ring_sync(&r, fds, NFILES, true), 0);
    ck_assert(r.have_ring); /* a transient refusal keeps the ring */
    for (int i = 0; i < NFILES; i++)
        ck_assert_int_eq(slow_syncs[fds[i]], 0); /* all went through the ring */
    /* The ring is left clean: the next batch works too. */
    ck_assert_int_eq(stor_ring_sync(&r, fds, NFILES, false), 0);
    stor_ring_fini(&r);
}
END_TEST

/* A refusal that never ends (the kernel keeps failing with nothing of ours in flight) must not spin or hang:
 * the batch goes the slow way. */
START_TEST(t_endless_refusal_falls_back)
{
    struct stor_ring r;
    if (!ring_or_skip(&r))
        return;
    refuse_left = 1 << 30;
    refuse_err = -EAGAIN;
    ck_assert_int_eq(stor_ring_sync(&r, fds, NFILES, true), 0);
    for (int i = 0; i < NFILES; i++)
        ck_assert_int_ge(slow_syncs[fds[i]], 1);
    ck_assert(!r.have_ring);
    stor_ring_fini(&r);
}
END_TEST

/* A broken ring (here: -EBADF) syncs every file the slow way, reports success when the disk did, and is
 * never used again, so SQEs it refused cannot be submitted by a later batch for reused fds. */
START_TEST(t_broken_ring_syncs_everything)
{
    struct stor_ring r;
    if (!ring_or_skip(&r))
        return;
    refuse_left = 1;
    refuse_err = -EBADF;
    ck_assert_int_eq(stor_ring_sync(&r, fds, NFILES, false), 0);
    for (int i = 0; i < NFILES; i++)
        ck_assert_int_ge(slow_syncs[fds[i]], 1);
    ck_assert(!r.have_ring);
    memset(slow_syncs, 0, sizeof(slow_syncs));
    ck_assert_int_eq(stor_ring_sync(&r, fds, NFILES, true), 0);
    for (int i = 0; i < NFILES; i++)
        ck_assert_int_eq(slow_syncs[fds[i]], 1);
    stor_ring_fini(&r);
}
END_TEST

/* A refusal after part of the batch was accepted: what was accepted completes, the rest follows. */
START_TEST(t_refusal_mid_batch)
{
    struct stor_ring r;
    if (!ring_or_skip(&r))
        return;
    pass_first = 1; /* depth 4, 10 files: the first 4 are accepted, the next submit is refused twice */
    refuse_left = 2;
    refuse_err = -EAGAIN;
    ck_assert_int_eq(stor_ring_sync(&r, fds, NFILES, true), 0);
    ck_assert(r.have_ring);
    for (int i = 0; i < NFILES; i++)
        ck_assert_int_eq(slow_syncs[fds[i]], 0);
    stor_ring_fini(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("unit_uring");
    TCase *tc = tcase_create("uring");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10); /* a hang is the failure this suite exists for */
    tcase_add_test(tc, t_transient_refusal_completes);
    tcase_add_test(tc, t_endless_refusal_falls_back);
    tcase_add_test(tc, t_broken_ring_syncs_everything);
    tcase_add_test(tc, t_refusal_mid_batch);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
