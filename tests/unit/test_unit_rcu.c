/* Unit suite: urcu_glue/ — lazy registration and deferred release after a grace period. */
#include "urcu_glue/rcu_glue.h"

#include <check.h>
#include <pthread.h>
#include <stdint.h>

struct obj {
    rcu_glue_head rcu;
    int *freed;
};

static void release(rcu_glue_head *h)
{
    rcu_glue_callback_enter(h);
    struct obj *o = caa_container_of(h, struct obj, rcu);
    __atomic_store_n(o->freed, 1, __ATOMIC_RELEASE);
}

static void *thread_body(void *arg)
{
    (void)arg;
    rcu_glue_thread_enter(); /* a fresh thread needs no set-up by the caller */
    rcu_glue_thread_enter(); /* and entering twice is harmless */
    rcu_glue_read_lock();
    rcu_glue_read_unlock();
    return (void *)(uintptr_t)rcu_glue_registered;
}

START_TEST(t_lazy_registration)
{
    pthread_t t;
    void *ret;
    ck_assert_int_eq(pthread_create(&t, NULL, thread_body, NULL), 0);
    ck_assert_int_eq(pthread_join(t, &ret), 0);
    ck_assert_ptr_eq(ret, (void *)1);
}
END_TEST

START_TEST(t_defer_waits_for_reader)
{
    int freed = 0;
    struct obj o = {.freed = &freed};
    rcu_glue_thread_enter();
    rcu_glue_read_lock();
    rcu_glue_defer(&o.rcu, release);
    /* We are a reader: the grace period cannot have ended, so the object must still be alive. */
    for (volatile int i = 0; i < 1000000; i++) {
    }
    ck_assert_int_eq(__atomic_load_n(&freed, __ATOMIC_ACQUIRE), 0);
    rcu_glue_read_unlock();
    rcu_glue_barrier();
    ck_assert_int_eq(__atomic_load_n(&freed, __ATOMIC_ACQUIRE), 1);
    rcu_glue_synchronize(); /* outside a read section: returns */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("unit_rcu");
    TCase *tc = tcase_create("rcu");
    tcase_add_test(tc, t_lazy_registration);
    tcase_add_test(tc, t_defer_waits_for_reader);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* RCU state is per process: keep tests in one */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
