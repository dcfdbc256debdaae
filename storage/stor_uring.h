/*
 * stor_uring.h — the asynchronous I/O engine: one io_uring per map that syncs many files at once.
 *
 * fsync on a single file waits for that file's disk; a flush of a map touches hundreds of files over
 * several drives, so they are all submitted in one batch and run in parallel on the kernel's workers,
 * keeping every drive busy. A full submission queue is submitted and refilled, never dropped.
 * Where io_uring is unavailable (old kernel, seccomp), the same calls fall back to a plain loop.
 *
 * Test hook: BM_TEST_FAULT=flush-eio in the environment (read when the ring is created) makes every
 * completion report -EIO, to test the sticky-error path.
 */
#ifndef STOR_URING_H
#define STOR_URING_H

#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct stor_ring {
    struct io_uring ring;
    bool have_ring;
    bool fault_eio;
    unsigned depth;
    pthread_mutex_t lock; /* one batch at a time */
};

/* 0 even when io_uring is unavailable (then have_ring is false and the fallback is used). */
int stor_ring_init(struct stor_ring *r, unsigned depth);
void stor_ring_fini(struct stor_ring *r);

/* fsync (datasync: fdatasync) of every fd, all in flight together; returns when all completed.
 * Returns 0 or the first negated errno any of them reported. */
int stor_ring_sync(struct stor_ring *r, const int *fds, size_t n, bool datasync);

#endif
