/*
 * flush.c — durability: bm_flush and the background flusher.
 *
 * A flush collects every file marked dirty since the last flush (a flag per file, set by writers with a
 * load-then-store that costs nothing once set), clears the flags, and syncs all of them plus every drive
 * directory in one io_uring batch. A write that raced with the collection re-marks its file and is caught
 * by the next flush; writes that returned before bm_flush was called were marked before the collection,
 * so they are covered.
 *
 * The collection runs inside a read-side section and dup()s each fd, so the files may be retired, recycled
 * or closed while their syncs are in flight (a sync of a recycled file is harmless) and the flush never
 * holds up reclamation of retired files.
 *
 * An fsync error is sticky: Linux may have dropped the dirty pages it failed to write, so retrying could
 * report success for lost data. The map then refuses writes (BM_EFAILED) and keeps serving reads.
 */
#include "runtime/map.h"

#include "common/bm_atomic.h"
#include "common/bm_mem.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

struct collect {
    int *fds;
    size_t n, cap;
    int err;
};

static void push_fd(struct collect *c, int fd)
{
    if (c->err)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        int *p = bm_realloc(c->fds, cap * sizeof(int));
        if (!p) {
            c->err = -ENOMEM;
            return;
        }
        c->fds = p;
        c->cap = cap;
    }
    c->fds[c->n++] = fd;
}

static void collect_file(struct stor_file *f, bool is_index, void *arg)
{
    (void)is_index;
    struct collect *c = arg;
    if (!__atomic_load_n(&f->dirty, __ATOMIC_RELAXED))
        return;
    __atomic_store_n(&f->dirty, 0, __ATOMIC_RELAXED);
    int fd = c->err ? -1 : dup(f->fd);
    if (fd < 0) {
        if (!c->err)
            c->err = -errno;
        __atomic_store_n(&f->dirty, 1, __ATOMIC_RELAXED); /* not collected: the next flush takes it */
        return;
    }
    push_fd(c, fd);
    if (c->err) {
        close(fd);
        __atomic_store_n(&f->dirty, 1, __ATOMIC_RELAXED);
    }
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int map_flush(bm_map *m)
{
    if (!m->persistent)
        return 0;
    if (bm_load_rlx(&m->failed))
        return BM_EFAILED;
    uint64_t t0 = now_ns();
    struct collect c = {NULL, 0, 0, 0};
    for (uint32_t i = 0; i < m->nbuckets; i++)
        bkt_for_each_file(&m->buckets[i], collect_file, &c);
    size_t nfiles = c.n;
    for (uint32_t i = 0; i < m->drives->n; i++)
        push_fd(&c, m->dir_fds[i]);
    int err = c.err ? c.err : stor_ring_sync(&m->ring, c.fds, c.n, false);
    for (size_t i = 0; i < nfiles && i < c.n; i++)
        close(c.fds[i]);
    bm_free(c.fds);
    if (err && err != -ENOMEM)
        bm_store_rlx(&m->failed, 1);
    bm_add_rlx(&m->flushes, 1);
    bm_add_rlx(&m->files_flushed, c.n);
    bm_add_rlx(&m->flush_ns, now_ns() - t0);
    return err;
}

static void *flusher_main(void *arg)
{
    bm_map *m = arg;
    rcu_glue_thread_enter();
    pthread_mutex_lock(&m->flusher_lock);
    while (!m->flusher_stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = until.tv_nsec + (uint64_t)(m->flush_interval_ms % 1000) * 1000000ull;
        until.tv_sec += m->flush_interval_ms / 1000 + (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        if (pthread_cond_timedwait(&m->flusher_cond, &m->flusher_lock, &until) == ETIMEDOUT &&
            !m->flusher_stop) {
            pthread_mutex_unlock(&m->flusher_lock);
            (void)map_flush(m); /* an error is sticky in the map; the next caller sees it */
            pthread_mutex_lock(&m->flusher_lock);
        }
    }
    pthread_mutex_unlock(&m->flusher_lock);
    return NULL;
}

int map_flusher_start(bm_map *m)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&m->flusher_cond, &ca);
    pthread_condattr_destroy(&ca);
    if (e)
        return -e;
    if ((e = pthread_mutex_init(&m->flusher_lock, NULL))) {
        pthread_cond_destroy(&m->flusher_cond);
        return -e;
    }
    m->flusher_stop = false;
    if ((e = pthread_create(&m->flusher, NULL, flusher_main, m))) {
        pthread_mutex_destroy(&m->flusher_lock);
        pthread_cond_destroy(&m->flusher_cond);
        return -e;
    }
    m->flusher_running = true;
    return 0;
}

void map_flusher_stop(bm_map *m)
{
    if (!m->flusher_running)
        return;
    pthread_mutex_lock(&m->flusher_lock);
    m->flusher_stop = true;
    pthread_cond_signal(&m->flusher_cond);
    pthread_mutex_unlock(&m->flusher_lock);
    pthread_join(m->flusher, NULL);
    pthread_mutex_destroy(&m->flusher_lock);
    pthread_cond_destroy(&m->flusher_cond);
    m->flusher_running = false;
}
