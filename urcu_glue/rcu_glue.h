/*
 * rcu_glue.h — the only place that names the liburcu flavour (memb: membarrier-based, no signals, read-side
 * sections are two thread-local stores and a compiler barrier when the kernel has membarrier).
 *
 * Rules the rest of the library follows:
 *   - Every API entry point calls rcu_glue_thread_enter() first: it registers the thread on its first call
 *     and arranges unregistration at thread exit, so callers never see RCU.
 *   - rcu_glue_synchronize() and rcu_glue_barrier() must never be called inside a read-side section
 *     (deadlock) nor from a deferred callback.
 *   - Deferred callbacks run on liburcu's call_rcu worker thread after a grace period; they must not block
 *     for long (they delay every later callback).
 */
#ifndef RCU_GLUE_H
#define RCU_GLUE_H

#define _LGPL_SOURCE 1 /* inline read-side fast paths */
#include <urcu/urcu-memb.h>

#include <stdbool.h>

/* Embed one in any object whose release must wait for a grace period. */
typedef struct rcu_head rcu_glue_head;

extern __thread bool rcu_glue_registered;
void rcu_glue_register_slow(void);

/* Registers the calling thread with RCU if it is not yet (first call of this thread). */
static inline void rcu_glue_thread_enter(void)
{
    if (__builtin_expect(!rcu_glue_registered, 0))
        rcu_glue_register_slow();
}

static inline void rcu_glue_read_lock(void) { urcu_memb_read_lock(); }
static inline void rcu_glue_read_unlock(void) { urcu_memb_read_unlock(); }

#define rcu_glue_deref(p) rcu_dereference(p)
#define rcu_glue_assign(p, v) rcu_assign_pointer((p), (v))

/* Runs fn(head) on the call_rcu thread after a grace period. Never fails, never blocks. */
void rcu_glue_defer(rcu_glue_head *h, void (*fn)(rcu_glue_head *));
/* Waits for a grace period. Outside read-side sections only. */
void rcu_glue_synchronize(void);
/* Waits until every callback deferred so far has run. Outside read-side sections only. */
void rcu_glue_barrier(void);

#endif
