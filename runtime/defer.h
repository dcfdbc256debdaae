/*
 * defer.h — a map's own deferral queue and maintenance thread.
 *
 * Releases that must wait for a grace period (an old bucket state and the file it retired, a batch of
 * freed cells) are queued here instead of on liburcu's process-wide call_rcu thread, for two reasons:
 *   - the work is file I/O (recycling a retired file into a prepared spare: ftruncate, fallocate, a
 *     MAP_POPULATE mmap of up to 32 MiB), which on call_rcu's thread stalls every other callback of the
 *     process, a host's own included;
 *   - bm_close then waits for one grace period (microseconds) instead of two rcu_barrier() calls
 *     (~11 ms each: call_rcu's worker sleeps 10 ms between batches).
 *
 * The map's maintenance thread takes the whole queue, waits for one grace period, and runs the nodes in
 * queue order. It is started by the first urgent push (work that should not wait: a retired file to
 * recycle into a spare, cells to make reusable) or by defer_set_periodic, which makes it run the persistent
 * map's background checkpoint too, so a map has at most one thread of its own. A non-urgent node (an old
 * state that retired no file: at most one per data class a bucket creates, so a bounded amount of memory)
 * only rides along with the next batch or waits for close. So a small temporary map that never grows a file
 * starts no thread: creating and joining one costs more than the whole rest of its bm_close on a busy
 * machine. If the thread cannot be started, nodes wait for a later push to start it, or for defer_drain at
 * close: nothing is lost, only recycled later.
 */
#ifndef BM_DEFER_H
#define BM_DEFER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct defer_node {
    struct defer_node *next;
    void (*fn)(struct defer_node *);
};

struct defer_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    struct defer_node *head, **tail;
    pthread_t thread;
    bool running, stop, idle; /* idle: the thread waits on cond (a push must signal it) */
    void (*periodic)(void *);
    void *periodic_arg;
    uint32_t interval_ms;
    bool (*housekeep)(void *); /* see defer_set_housekeeping */
    void *housekeep_arg;
    uint32_t housekeep_ms;
    uint64_t batches, nodes; /* atomics, for stats and tests */
};

int defer_init(struct defer_queue *q);
/* Queues n: fn(n) runs on the maintenance thread (or at close) after a grace period that began after this
 * call; urgent: soon (see above). Never waits for a grace period or for I/O, so writers may call it under
 * their bucket lock. */
void defer_push(struct defer_queue *q, struct defer_node *n, void (*fn)(struct defer_node *), bool urgent);
/* The maintenance thread also calls fn(arg) every interval_ms (the background checkpoint). 0 or -errno. */
int defer_set_periodic(struct defer_queue *q, void (*fn)(void *), void *arg, uint32_t interval_ms);
/* Once the thread has run a batch, it also calls fn(arg) every interval_ms for as long as fn returns true
 * (tidying up after a burst of work: the map trims its spares once it has stopped growing); the next batch
 * starts the ticks again. Does not start the thread. Call before the first push. */
void defer_set_housekeeping(struct defer_queue *q, bool (*fn)(void *), void *arg, uint32_t interval_ms);
/* Stops and joins the thread (queued nodes stay queued). */
void defer_stop(struct defer_queue *q);
/* Runs every queued node after one grace period (none when the queue is empty), on the calling thread.
 * Outside read-side sections and bucket locks. */
void defer_drain(struct defer_queue *q);
/* After defer_stop and defer_drain. */
void defer_fini(struct defer_queue *q);

#endif
