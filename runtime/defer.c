/*
 * defer.c — the map's deferral queue and maintenance thread (see defer.h).
 */
#include "runtime/defer.h"

#include "common/bm_atomic.h"
#include "common/bm_probes.h"
#include "urcu_glue/rcu_glue.h"

#include <errno.h>
#include <time.h>

int defer_init(struct defer_queue *q)
{
    q->head = NULL;
    q->tail = &q->head;
    q->running = q->stop = q->idle = false;
    q->periodic = NULL;
    q->interval_ms = 0;
    q->housekeep = NULL;
    q->housekeep_ms = 0;
    q->batches = q->nodes = 0;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (e)
        return -e;
    if ((e = pthread_mutex_init(&q->lock, NULL))) {
        pthread_cond_destroy(&q->cond);
        return -e;
    }
    return 0;
}

void defer_fini(struct defer_queue *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Lock held. Detaches the queue: every node in it was pushed before the grace period the caller waits
 * for next, which is what makes running them afterwards safe. */
static struct defer_node *take_all(struct defer_queue *q)
{
    struct defer_node *n = q->head;
    q->head = NULL;
    q->tail = &q->head;
    return n;
}

static void run_batch(struct defer_queue *q, struct defer_node *n)
{
    uint64_t t0 = BM_PROBES_ON ? mono_ns() : 0, count = 0;
    rcu_glue_synchronize();
    while (n) {
        struct defer_node *next = n->next; /* fn may free n */
        n->fn(n);
        n = next;
        count++;
    }
    bm_add_rlx(&q->batches, 1);
    bm_add_rlx(&q->nodes, count);
    BM_PROBE2(defer_batch, count, mono_ns() - t0);
    (void)t0;
}

static void *maint_main(void *arg)
{
    struct defer_queue *q = arg;
    rcu_glue_thread_enter();
    pthread_mutex_lock(&q->lock);
    uint64_t due = q->periodic ? mono_ns() + q->interval_ms * 1000000ull : 0;
    uint64_t hk_due = 0; /* 0: no housekeeping tick armed */
    while (!q->stop) {
        if (q->head) {
            struct defer_node *n = take_all(q);
            pthread_mutex_unlock(&q->lock);
            run_batch(q, n);
            pthread_mutex_lock(&q->lock);
            if (q->housekeep)
                hk_due = mono_ns() + q->housekeep_ms * 1000000ull;
            continue;
        }
        if (q->periodic && !due)
            due = mono_ns() + q->interval_ms * 1000000ull;
        uint64_t wake = due && hk_due ? (due < hk_due ? due : hk_due) : due ? due : hk_due;
        q->idle = true;
        if (wake) {
            struct timespec until = {(time_t)(wake / 1000000000ull), (long)(wake % 1000000000ull)};
            (void)pthread_cond_timedwait(&q->cond, &q->lock, &until);
        } else {
            pthread_cond_wait(&q->cond, &q->lock);
        }
        q->idle = false;
        if (q->stop || q->head)
            continue;
        uint64_t now = mono_ns();
        if (q->periodic && due && now >= due) {
            void (*fn)(void *) = q->periodic;
            void *fa = q->periodic_arg;
            pthread_mutex_unlock(&q->lock);
            fn(fa); /* a checkpoint: its errors are sticky in the map, the next caller sees them */
            pthread_mutex_lock(&q->lock);
            due = mono_ns() + q->interval_ms * 1000000ull;
        }
        if (hk_due && now >= hk_due) {
            bool (*fn)(void *) = q->housekeep;
            void *fa = q->housekeep_arg;
            pthread_mutex_unlock(&q->lock);
            bool again = fn(fa);
            pthread_mutex_lock(&q->lock);
            hk_due = again ? mono_ns() + q->housekeep_ms * 1000000ull : 0;
        }
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

/* Lock held. A failure leaves the thread for a later call to start; after defer_stop nothing starts it
 * again (the closing map drains what is left itself). */
static int start_locked(struct defer_queue *q)
{
    if (q->running || q->stop)
        return 0;
    int e = pthread_create(&q->thread, NULL, maint_main, q);
    if (e)
        return -e;
    q->running = true;
    return 0;
}

void defer_push(struct defer_queue *q, struct defer_node *n, void (*fn)(struct defer_node *), bool urgent)
{
    n->fn = fn;
    n->next = NULL;
    pthread_mutex_lock(&q->lock);
    *q->tail = n;
    q->tail = &n->next;
    if (!urgent)
        ; /* rides along with the next batch */
    else if (!q->running)
        (void)start_locked(q);
    else if (q->idle)
        pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

void defer_set_housekeeping(struct defer_queue *q, bool (*fn)(void *), void *arg, uint32_t interval_ms)
{
    pthread_mutex_lock(&q->lock);
    q->housekeep = fn;
    q->housekeep_arg = arg;
    q->housekeep_ms = interval_ms;
    pthread_mutex_unlock(&q->lock);
}

int defer_set_periodic(struct defer_queue *q, void (*fn)(void *), void *arg, uint32_t interval_ms)
{
    pthread_mutex_lock(&q->lock);
    q->periodic = fn;
    q->periodic_arg = arg;
    q->interval_ms = interval_ms;
    int err = start_locked(q);
    if (err)
        q->periodic = NULL;
    pthread_mutex_unlock(&q->lock);
    return err;
}

void defer_stop(struct defer_queue *q)
{
    pthread_mutex_lock(&q->lock);
    bool running = q->running;
    q->stop = true;
    q->periodic = NULL;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (running)
        pthread_join(q->thread, NULL);
    pthread_mutex_lock(&q->lock);
    q->running = false;
    pthread_mutex_unlock(&q->lock);
}

void defer_drain(struct defer_queue *q)
{
    pthread_mutex_lock(&q->lock);
    struct defer_node *n = take_all(q);
    pthread_mutex_unlock(&q->lock);
    if (n)
        run_batch(q, n);
}
