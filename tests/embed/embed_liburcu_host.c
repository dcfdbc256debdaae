/*
 * A host that uses liburcu itself, in any flavour, on the same threads that call bucketmap.
 *
 * For each flavour (memb, qsbr, mb, bp) two host threads register with it, one before and one after
 * bucketmap first ran on it, use their own RCU (read sections, rcu_dereference, call_rcu, synchronize,
 * barrier) around and across bucketmap calls, unregister, and call bucketmap again. A bucketmap read call
 * also runs inside the host's read section (the host may hold its own section across a lookup).
 * Everything through the flavour tables liburcu exports, so one file can use four flavours.
 *
 * Exit 0 on success; an assertion inside liburcu (a second registration) aborts, a lost grace period hangs
 * (ctest's timeout).
 */
#define _LGPL_SOURCE 1 /* inline rcu_dereference / rcu_xchg_pointer, common to every flavour */
#include <bucketmap.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urcu/call-rcu.h>
#include <urcu/compiler.h>
#include <urcu/flavor.h>
#include <urcu/pointer.h>
#include <urcu/system.h>

extern const struct rcu_flavor_struct urcu_memb_flavor, urcu_qsbr_flavor, urcu_mb_flavor, urcu_bp_flavor;

#define CHECK(c)                                                                                           \
    do {                                                                                                   \
        if (!(c)) {                                                                                        \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #c);                                 \
            exit(1);                                                                                       \
        }                                                                                                  \
    } while (0)

struct host_obj {
    struct rcu_head rcu;
    int value;
};

static struct host_obj *shared_obj; /* the host's own RCU-protected pointer */
static int host_frees;              /* atomic: host callbacks that ran */

static void host_free(struct rcu_head *h)
{
    free(caa_container_of(h, struct host_obj, rcu));
    __atomic_fetch_add(&host_frees, 1, __ATOMIC_RELAXED);
}

struct run {
    const struct rcu_flavor_struct *fl;
    const char *name;
    bm_map *map;
    int id;
    int register_first; /* 1: host registers before its first bucketmap call */
};

static bm_key key_of(int id, int i)
{
    bm_key k;
    memset(&k, 0, sizeof(k));
    k.bytes[0] = (uint8_t)(id * 31 + i);
    k.bytes[1] = (uint8_t)id;
    k.bytes[2] = (uint8_t)i;
    return k;
}

static void use_bucketmap(struct run *r, int round)
{
    for (int i = 0; i < 64; i++) {
        bm_key k = key_of(r->id, i);
        uint64_t v = (uint64_t)(round * 1000 + i), out = 0;
        uint32_t n = 0;
        CHECK(bm_insert(r->map, &k, &v, 1, 1) == 0);
        CHECK(bm_get(r->map, &k, &out, 1, &n, NULL) == 0 && n == 1 && out == v);
    }
}

/* The host's own RCU: replace the shared object, read it, wait for a grace period, defer a free. */
static void use_host_rcu(const struct rcu_flavor_struct *fl)
{
    struct host_obj *o = malloc(sizeof(*o));
    CHECK(o);
    o->value = 7;
    struct host_obj *old = rcu_xchg_pointer(&shared_obj, o);
    fl->read_lock();
    struct host_obj *seen = rcu_dereference(shared_obj);
    CHECK(seen && seen->value == 7);
    fl->read_unlock();
    if (old)
        fl->update_call_rcu(&old->rcu, host_free);
    fl->update_synchronize_rcu();
    if (fl == &urcu_qsbr_flavor)
        fl->read_quiescent_state();
}

static void *host_thread(void *arg)
{
    struct run *r = arg;
    const struct rcu_flavor_struct *fl = r->fl;
    if (!r->register_first)
        use_bucketmap(r, 0); /* bucketmap runs on this thread before the host registers it */
    fl->register_thread();
    use_host_rcu(fl);
    use_bucketmap(r, 1);
    use_host_rcu(fl);
    /* A lookup inside the host's own read section. */
    fl->read_lock();
    bm_key k = key_of(r->id, 3);
    uint64_t out = 0;
    CHECK(bm_get(r->map, &k, &out, 1, NULL, NULL) == 0 && out == 1003);
    fl->read_unlock();
    /* Writes that retire storage (grows, deletes) while the host is registered and online. */
    for (int i = 0; i < 64; i++) {
        bm_key kd = key_of(r->id, i);
        CHECK(bm_delete(r->map, &kd) == 0);
    }
    use_bucketmap(r, 2);
    if (fl == &urcu_qsbr_flavor)
        fl->thread_offline(); /* qsbr: an offline host thread calling bucketmap must not stall anything */
    use_bucketmap(r, 3);
    if (fl == &urcu_qsbr_flavor)
        fl->thread_online();
    fl->unregister_thread();
    use_bucketmap(r, 4); /* and after the host let go of the thread */
    return NULL;
}

static void run_flavour(const struct rcu_flavor_struct *fl, const char *name)
{
    bm_config cfg = {.elem_size = 8, .max_buckets = 4, .flags = BM_F_NO_PREALLOC};
    bm_map *m;
    CHECK(bm_open(&cfg, &m) == 0);
    struct run runs[2] = {{fl, name, m, 1, 1}, {fl, name, m, 2, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, host_thread, &runs[i]) == 0);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(bm_count(m) == 128);
    bm_close(m);
    /* The main thread too: host registration around a whole map's life. */
    fl->register_thread();
    use_host_rcu(fl);
    CHECK(bm_open(&cfg, &m) == 0);
    struct run self = {fl, name, m, 3, 1};
    use_bucketmap(&self, 0);
    use_host_rcu(fl);
    bm_close(m);
    fl->barrier();
    fl->unregister_thread();
    printf("%s: ok\n", name);
}

int main(void)
{
    run_flavour(&urcu_memb_flavor, "memb");
    run_flavour(&urcu_qsbr_flavor, "qsbr");
    run_flavour(&urcu_mb_flavor, "mb");
    run_flavour(&urcu_bp_flavor, "bp");
    struct host_obj *last = shared_obj;
    shared_obj = NULL;
    free(last);
    CHECK(__atomic_load_n(&host_frees, __ATOMIC_RELAXED) > 0);
    return 0;
}
