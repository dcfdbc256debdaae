/*
 * Lazy thread registration with liburcu-bp: a thread is registered on its first library call (so the
 * read-side fast path never registers) and liburcu-bp removes it from its registry when the thread exits.
 */
#include "urcu_glue/rcu_glue.h"

#include "common/bm_probes.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

__thread bool rcu_glue_registered;
#if defined(__SANITIZE_THREAD__)
char rcu_glue_tsan_gp;
#endif

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/*
 * fork(): only the forking thread exists in the child. Without help the child's RCU state still lists the
 * parent's other threads as readers (a thread inside bm_get at the fork would stall every grace period
 * forever), may hold liburcu's grace-period or registry lock as a vanished thread left it, and has no
 * call_rcu worker. So around every fork: pause the call_rcu worker, then take bp's locks (in that order:
 * the worker may be waiting for a grace period, which needs the lock); in the child, bp prunes every reader
 * but the forking thread and releases its locks, then a fresh worker is started. A library whose callers
 * may fork has to do this itself, since callers cannot know.
 *
 * A host that uses the bp flavour too must not register urcu_bp_before_fork & co. again (they take
 * non-recursive locks): README "Embedding".
 */
static void before_fork(void)
{
    urcu_bp_call_rcu_before_fork();
    urcu_bp_before_fork();
}

static void after_fork_parent(void)
{
    urcu_bp_after_fork_parent();
    urcu_bp_call_rcu_after_fork_parent();
}

static void after_fork_child(void)
{
    urcu_bp_after_fork_child();
    urcu_bp_call_rcu_after_fork_child();
}

static void install_fork_handlers(void) { (void)pthread_atfork(before_fork, after_fork_parent, after_fork_child); }

void rcu_glue_register_slow(void)
{
    pthread_once(&fork_once, install_fork_handlers);
    /* Idempotent: a no-op when the host (or an earlier call) already registered this thread with bp. The
     * thread leaves the registry by itself when it exits. */
    urcu_bp_register_thread();
    rcu_glue_registered = true;
}

void rcu_glue_defer(rcu_glue_head *h, void (*fn)(rcu_glue_head *))
{
    RCU_GLUE_TSAN_RELEASE(h);
    urcu_bp_call_rcu(h, fn);
}

/* Clock reads only a grace-period probe uses: none when the probes are compiled out. */
static inline uint64_t probe_clock(void)
{
#if BM_PROBES_ON
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
#else
    return 0;
#endif
}

/* After a grace period every read section that began before it has ended: TSan's side of that. */
void rcu_glue_synchronize(void)
{
    uint64_t t0 = probe_clock();
    urcu_bp_synchronize_rcu();
    RCU_GLUE_TSAN_ACQUIRE(&rcu_glue_tsan_gp);
    BM_PROBE2(gp_wait, 0, probe_clock() - t0); /* kind 0: synchronize */
    (void)t0;
}

void rcu_glue_barrier(void)
{
    uint64_t t0 = probe_clock();
    urcu_bp_barrier();
    RCU_GLUE_TSAN_ACQUIRE(&rcu_glue_tsan_gp);
    BM_PROBE2(gp_wait, 1, probe_clock() - t0); /* kind 1: barrier */
    (void)t0;
}
