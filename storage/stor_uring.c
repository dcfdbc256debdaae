#include "storage/stor_uring.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int stor_ring_init(struct stor_ring *r, unsigned depth)
{
    memset(r, 0, sizeof(*r));
    r->depth = depth;
    if (pthread_mutex_init(&r->lock, NULL))
        return -ENOMEM;
    r->have_ring = io_uring_queue_init(depth, &r->ring, 0) == 0;
    return 0;
}

void stor_ring_fini(struct stor_ring *r)
{
    if (r->have_ring)
        io_uring_queue_exit(&r->ring);
    pthread_mutex_destroy(&r->lock);
}

static int sync_loop(struct stor_ring *r, const int *fds, size_t n, bool datasync)
{
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        int e = (datasync ? fdatasync(fds[i]) : fsync(fds[i])) ? -errno : 0;
        if (r->fault_eio)
            e = -EIO;
        if (e && !first)
            first = e;
    }
    return first;
}

/* Reaps one completion; records its error. */
static int reap(struct stor_ring *r, int *first)
{
    struct io_uring_cqe *cqe;
    int e = io_uring_wait_cqe(&r->ring, &cqe);
    if (e < 0)
        return e;
    int res = r->fault_eio ? -EIO : cqe->res;
    if (res < 0 && !*first)
        *first = res;
    io_uring_cqe_seen(&r->ring, cqe);
    return 0;
}

/* A kernel that keeps refusing submissions (-EAGAIN: no memory for requests) while nothing of ours is in
 * flight, so that no completion will ever free anything, gets this many more tries before the batch goes
 * the slow way. */
#define SUBMIT_STALL_LIMIT 64

/* The ring cannot be trusted any more: SQEs it refused stay in its submission queue, and the next
 * io_uring_enter (a later flush) would submit them for fds that may be closed or reused by then. Drop it;
 * every later batch uses the plain loop. */
static void drop_ring(struct stor_ring *r)
{
    io_uring_queue_exit(&r->ring);
    r->have_ring = false;
}

int stor_ring_sync(struct stor_ring *r, const int *fds, size_t n, bool datasync)
{
    pthread_mutex_lock(&r->lock);
    if (!r->have_ring) {
        int e = sync_loop(r, fds, n, datasync);
        pthread_mutex_unlock(&r->lock);
        return e;
    }
    int first = 0;
    /* Only what io_uring_submit accepted is in flight and will complete; an SQE that is merely prepared
     * never produces a completion, so waiting for one would wait forever. */
    size_t prepared = 0; /* fds[0..prepared) have an SQE */
    size_t pending = 0;  /* prepared, not yet accepted by the kernel */
    size_t inflight = 0; /* accepted, completion not yet reaped */
    unsigned stalls = 0;
    bool broken = false;
    while (prepared < n || pending > 0 || inflight > 0) {
        while (prepared < n) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
            if (!sqe)
                break; /* queue full: submit what we have, reap, refill */
            io_uring_prep_fsync(sqe, fds[prepared], datasync ? IORING_FSYNC_DATASYNC : 0);
            prepared++;
            pending++;
        }
        if (pending > 0) {
            int s = io_uring_submit(&r->ring);
            if (s > 0) {
                size_t got = (size_t)s < pending ? (size_t)s : pending;
                pending -= got;
                inflight += got;
                stalls = 0;
            } else if (s == 0 || s == -EAGAIN || s == -EBUSY || s == -EINTR) {
                /* Transient: completions of what is in flight free room. With nothing in flight, retry a
                 * bounded number of times. */
                if (inflight == 0 && ++stalls > SUBMIT_STALL_LIMIT) {
                    broken = true;
                    break;
                }
                if (inflight == 0)
                    sched_yield();
            } else {
                broken = true; /* the ring itself failed */
                break;
            }
        }
        if (inflight > 0) {
            if (reap(r, &first) < 0) {
                broken = true;
                break;
            }
            inflight--;
        }
    }
    if (broken) {
        /* Which of the accepted syncs completed is unknown: sync every fd again the slow way (a second
         * fsync of a clean file costs little and this path is for a failing ring only). The ring's own
         * error is not the disk's: the batch succeeds if the files reached the disk. */
        drop_ring(r);
        int e = sync_loop(r, fds, n, datasync);
        if (e && !first)
            first = e;
    }
    pthread_mutex_unlock(&r->lock);
    return first;
}
