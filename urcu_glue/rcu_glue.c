/*
 * Lazy thread registration. A thread is registered on its first library call and unregistered by a
 * pthread key destructor when it exits; a thread that exits while "registered" but idle never holds a
 * read-side section open (sections never span API calls), so it cannot stall grace periods meanwhile.
 */
#include "urcu_glue/rcu_glue.h"

#include <pthread.h>
#include <stddef.h>

__thread bool rcu_glue_registered;
#if defined(__SANITIZE_THREAD__)
char rcu_glue_tsan_gp;
#endif

static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void on_thread_exit(void *arg)
{
    (void)arg;
    if (rcu_glue_registered) {
        urcu_memb_unregister_thread();
        rcu_glue_registered = false;
    }
}

/* fork(): the child has only the forking thread, so liburcu's call_rcu worker must be stopped around the
 * fork and recreated in the child, or deferred frees would never run there and bm_close would wait
 * forever. A library whose callers may fork has to do this itself, since callers cannot know. */
static void before_fork(void) { urcu_memb_call_rcu_before_fork(); }
static void after_fork_parent(void) { urcu_memb_call_rcu_after_fork_parent(); }
static void after_fork_child(void) { urcu_memb_call_rcu_after_fork_child(); }

static void make_key(void)
{
    /* Without the key, threads stay registered until process exit: harmless, so ignore failure. */
    (void)pthread_key_create(&exit_key, on_thread_exit);
    (void)pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

void rcu_glue_register_slow(void)
{
    pthread_once(&key_once, make_key);
    urcu_memb_register_thread();
    rcu_glue_registered = true;
    /* Any non-NULL value makes the destructor run at thread exit. */
    (void)pthread_setspecific(exit_key, (void *)1);
}

void rcu_glue_defer(rcu_glue_head *h, void (*fn)(rcu_glue_head *))
{
    RCU_GLUE_TSAN_RELEASE(h);
    urcu_memb_call_rcu(h, fn);
}

/* After a grace period every read section that began before it has ended: TSan's side of that. */
void rcu_glue_synchronize(void)
{
    urcu_memb_synchronize_rcu();
    RCU_GLUE_TSAN_ACQUIRE(&rcu_glue_tsan_gp);
}

void rcu_glue_barrier(void)
{
    urcu_memb_barrier();
    RCU_GLUE_TSAN_ACQUIRE(&rcu_glue_tsan_gp);
}
