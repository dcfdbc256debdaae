#include "storage/stor_uring.h"

#include <errno.h>
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

int stor_ring_sync(struct stor_ring *r, const int *fds, size_t n, bool datasync)
{
    pthread_mutex_lock(&r->lock);
    if (!r->have_ring) {
        int e = sync_loop(r, fds, n, datasync);
        pthread_mutex_unlock(&r->lock);
        return e;
    }
    int first = 0;
    size_t queued = 0, inflight = 0;
    while (queued < n || inflight > 0) {
        while (queued < n) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
            if (!sqe)
                break; /* queue full: submit what we have, reap, refill */
            io_uring_prep_fsync(sqe, fds[queued], datasync ? IORING_FSYNC_DATASYNC : 0);
            queued++;
            inflight++;
        }
        int s = io_uring_submit(&r->ring);
        if (s < 0 && s != -EBUSY && s != -EAGAIN) {
            /* The ring itself failed: finish what is in flight, do the rest the slow way. */
            if (!first)
                first = s;
            break;
        }
        if (inflight > 0) {
            if (reap(r, &first) < 0)
                break;
            inflight--;
        }
    }
    while (inflight > 0 && reap(r, &first) == 0)
        inflight--;
    if (queued < n) {
        int e = sync_loop(r, fds + queued, n - queued, datasync);
        if (e && !first)
            first = e;
    }
    pthread_mutex_unlock(&r->lock);
    return first;
}
