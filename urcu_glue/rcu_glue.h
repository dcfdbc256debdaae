/*
 * rcu_glue.h — the only place that names the liburcu flavour.
 *
 * The flavour is bp ("bulletproof"), the one liburcu made for libraries:
 *   - A host may use liburcu itself. memb, qsbr, mb and signal keep one registration per thread and
 *     assert on a second one, so a library using them aborts in (or is corrupted by) a host that registers
 *     its threads with the same flavour, before or after the library did, and unregisters them when it
 *     likes. bp registers a thread implicitly and idempotently and drops it only when the thread exits, so
 *     the library and a bp host share it safely, and hosts on the other flavours never meet our state.
 *   - fork(): bp alone can prune the parent's readers from the child's registry (see rcu_glue.c); with the
 *     others a child of a process whose other threads were readers waits for them forever.
 * The price is on the read side: a thread-local pointer load and a check of the registration and of
 * membarrier availability per lock/unlock (measured in README "Embedding"). With membarrier, read-side
 * sections still need no fence.
 *
 * Rules the rest of the library follows:
 *   - Every API entry point calls rcu_glue_thread_enter() first: it registers the thread on its first call,
 *     so the read-side fast path never takes the registration branch; liburcu-bp drops the thread at exit.
 *   - rcu_glue_synchronize() and rcu_glue_barrier() must never be called inside a read-side section
 *     (deadlock) nor from a deferred callback. bp read sections nest, including a host's own bp section,
 *     so a host must not call a bucketmap write (which may wait for a grace period) inside its own bp
 *     read-side section.
 *   - Deferred callbacks run on liburcu-bp's call_rcu worker thread after a grace period; they must not
 *     block for long (they delay every later callback, a bp host's included). The library itself defers
 *     nothing there: its releases go through each map's own queue and thread (runtime/defer.h), which do
 *     file I/O and let bm_close wait for one grace period instead of rcu_barrier().
 */
#ifndef RCU_GLUE_H
#define RCU_GLUE_H

/*
 * Inline read-side fast paths, except in sanitizer builds, which call liburcu's own (uninstrumented)
 * out-of-line functions instead:
 *   - ASan + UBSan: liburcu-bp 0.13 hands out its per-thread reader records from an mmapped arena that
 *     leaves them 32 bytes past a cache line, while the record type is declared cache-line aligned. x86 and
 *     arm64 load them fine, but UBSan stops on the misaligned access inside bp's inline read-side code.
 *     The record's alignment is liburcu's to fix.
 *   - TSan: a record freed by an exiting thread is handed to a new thread under liburcu's registry mutex,
 *     which TSan cannot see (tsan.supp ignores liburcu's calls), so inline accesses to the reused record
 *     would be reported as races.
 */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define _LGPL_SOURCE 1
#endif
#include <urcu/urcu-bp.h>

#include <stdbool.h>

/* Embed one in any object whose release must wait for a grace period. */
typedef struct rcu_head rcu_glue_head;

/*
 * ThreadSanitizer cannot see liburcu's grace periods (membarrier, uninstrumented queues). In TSan builds the
 * glue tells it what a grace period guarantees: everything a reader did before rcu_read_unlock, and
 * everything a thread did before deferring a callback, happens before that callback runs. This is coarser
 * than RCU (one token for all readers) but never hides a real ordering bug inside one read section.
 */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char rcu_glue_tsan_gp;
#define RCU_GLUE_TSAN_RELEASE(p) __tsan_release(p)
#define RCU_GLUE_TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define RCU_GLUE_TSAN_RELEASE(p) ((void)0)
#define RCU_GLUE_TSAN_ACQUIRE(p) ((void)0)
#endif

extern __thread bool rcu_glue_registered;
void rcu_glue_register_slow(void);

/* Registers the calling thread with RCU if it is not yet (first call of this thread). */
static inline void rcu_glue_thread_enter(void)
{
    if (__builtin_expect(!rcu_glue_registered, 0))
        rcu_glue_register_slow();
}

static inline void rcu_glue_read_lock(void) { urcu_bp_read_lock(); }
static inline void rcu_glue_read_unlock(void)
{
    RCU_GLUE_TSAN_RELEASE(&rcu_glue_tsan_gp);
    urcu_bp_read_unlock();
}

/* First statement of every deferred callback: TSan's view of the grace period that preceded it. */
static inline void rcu_glue_callback_enter(rcu_glue_head *h)
{
    (void)h;
    RCU_GLUE_TSAN_ACQUIRE(h);
    RCU_GLUE_TSAN_ACQUIRE(&rcu_glue_tsan_gp);
}

#if defined(__SANITIZE_THREAD__)
/* liburcu's rcu_dereference is a volatile load plus a compiler barrier, which is right for every CPU Linux
 * runs on (address dependencies order it) but is no synchronization TSan knows: it then reports the
 * initialization of every published object as racing with its readers. The same ordering as acquire /
 * release atomics tells TSan exactly what the dependency guarantees. */
#define rcu_glue_deref(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define rcu_glue_assign(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
#else
#define rcu_glue_deref(p) rcu_dereference(p)
#define rcu_glue_assign(p, v) rcu_assign_pointer((p), (v))
#endif

/* Runs fn(head) on the call_rcu thread after a grace period. Never fails, never blocks. */
void rcu_glue_defer(rcu_glue_head *h, void (*fn)(rcu_glue_head *));
/* Waits for a grace period. Outside read-side sections only. */
void rcu_glue_synchronize(void);
/* Waits until every callback deferred so far has run. Outside read-side sections only. */
void rcu_glue_barrier(void);

#endif
