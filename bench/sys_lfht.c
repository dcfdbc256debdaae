/* Peer: liburcu's cds_lfht, the in-memory RCU lock-free hash table a user would reach for when they do not
 * need persistence. Same RCU flavour (memb) as bucketmap, read side inlined (_LGPL_SOURCE) as a
 * performance-minded user would build it. Each entry is one malloc'd node holding key, element and
 * refcount, so a get is a bucket-array load plus a pointer chase (two dependent misses where bucketmap
 * aims for one). */
#define _LGPL_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include "system.h"

typedef struct lf_node {
    struct cds_lfht_node nd;
    uint8_t key[KEY_LEN];
    uint64_t val;
    uint64_t refcount;
    struct rcu_head rh;
} lf_node;

typedef struct lf_db {
    struct cds_lfht *ht;
} lf_db;

/* Keys are uniformly random bytes, so their first word already is a good hash; mixing it again would
 * only add cost that a user with such keys would not pay. */
static inline unsigned long lf_hash(const uint8_t *key)
{
    unsigned long h;
    memcpy(&h, key, sizeof h);
    return h;
}

static int lf_match(struct cds_lfht_node *nd, const void *key)
{
    const lf_node *n = caa_container_of(nd, lf_node, nd);
    return memcmp(n->key, key, KEY_LEN) == 0;
}

static void lf_free_cb(struct rcu_head *rh)
{
    free(caa_container_of(rh, lf_node, rh));
}

static int lf_open(const sys_cfg *cfg, void **out, char *err, size_t errlen)
{
    if (cfg->reopen) {
        snprintf(err, errlen, "in-memory table: nothing to reopen");
        return -ENOTSUP;
    }
    lf_db *db = calloc(1, sizeof *db);
    if (!db)
        return -ENOMEM;
    /* Start small and let it auto-resize, like bucketmap starts with small buckets: both pay for their
     * own growth inside the measured insert workload. */
    db->ht = cds_lfht_new_flavor(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, &urcu_memb_flavor,
                                 NULL);
    if (!db->ht) {
        free(db);
        snprintf(err, errlen, "cds_lfht_new failed");
        return -ENOMEM;
    }
    *out = db;
    return 0;
}

/* Called on a thread outside any thread_enter, so it registers itself for the teardown walk. */
static void lf_close(void *p)
{
    lf_db *db = p;
    struct cds_lfht_iter it;
    struct cds_lfht_node *nd;
    urcu_memb_register_thread();
    urcu_memb_read_lock();
    cds_lfht_for_each(db->ht, &it, nd)
    {
        if (cds_lfht_del(db->ht, nd) == 0)
            urcu_memb_call_rcu(&caa_container_of(nd, lf_node, nd)->rh, lf_free_cb);
    }
    urcu_memb_read_unlock();
    urcu_memb_barrier();
    urcu_memb_unregister_thread();
    cds_lfht_destroy(db->ht, NULL);
    free(db);
}

static int lf_reopenable(void *db, char *err, size_t errlen)
{
    (void)db;
    snprintf(err, errlen, "in-memory");
    return 0;
}

static void *lf_thread_enter(void *db)
{
    (void)db;
    urcu_memb_register_thread();
    return NULL;
}

static void lf_thread_exit(void *db, void *tc)
{
    (void)db;
    (void)tc;
    urcu_memb_unregister_thread();
}

static int lf_insert(void *p, void *tc, const uint8_t key[KEY_LEN], uint64_t val)
{
    (void)tc;
    lf_db *db = p;
    lf_node *n = malloc(sizeof *n);
    if (!n)
        return -ENOMEM;
    memcpy(n->key, key, KEY_LEN);
    n->val = val;
    n->refcount = 1;
    cds_lfht_node_init(&n->nd);
    urcu_memb_read_lock();
    struct cds_lfht_node *old = cds_lfht_add_replace(db->ht, lf_hash(key), lf_match, key, &n->nd);
    urcu_memb_read_unlock();
    if (old)
        urcu_memb_call_rcu(&caa_container_of(old, lf_node, nd)->rh, lf_free_cb);
    return 0;
}

static int lf_get(void *p, void *tc, const uint8_t key[KEY_LEN], uint64_t *val)
{
    (void)tc;
    lf_db *db = p;
    struct cds_lfht_iter it;
    int rc = SYS_ABSENT;
    urcu_memb_read_lock();
    cds_lfht_lookup(db->ht, lf_hash(key), lf_match, key, &it);
    struct cds_lfht_node *nd = cds_lfht_iter_get_node(&it);
    if (nd) {
        *val = caa_container_of(nd, lf_node, nd)->val;
        rc = SYS_FOUND;
    }
    urcu_memb_read_unlock();
    return rc;
}

static int lf_del(void *p, void *tc, const uint8_t key[KEY_LEN])
{
    (void)tc;
    lf_db *db = p;
    struct cds_lfht_iter it;
    int rc = SYS_ABSENT;
    urcu_memb_read_lock();
    cds_lfht_lookup(db->ht, lf_hash(key), lf_match, key, &it);
    struct cds_lfht_node *nd = cds_lfht_iter_get_node(&it);
    if (nd && cds_lfht_del(db->ht, nd) == 0) {
        urcu_memb_call_rcu(&caa_container_of(nd, lf_node, nd)->rh, lf_free_cb);
        rc = SYS_FOUND;
    }
    urcu_memb_read_unlock();
    return rc;
}

static void lf_info(void *p, sys_info *out)
{
    lf_db *db = p;
    long before, after;
    unsigned long count;
    memset(out, 0, sizeof *out);
    urcu_memb_register_thread();
    urcu_memb_read_lock();
    cds_lfht_count_nodes(db->ht, &before, &count, &after);
    urcu_memb_read_unlock();
    urcu_memb_unregister_thread();
    out->has_entries = 1;
    out->entries = count;
}

static const char *lf_strerror(int err)
{
    return strerror(-err);
}

const sys_ops sys_lfht = {
    .name = "lfht",
    .open = lf_open,
    .close = lf_close,
    .reopenable = lf_reopenable,
    .thread_enter = lf_thread_enter,
    .thread_exit = lf_thread_exit,
    .bulk = NULL,
    .insert = lf_insert,
    .get = lf_get,
    .del = lf_del,
    .info = lf_info,
    .strerror = lf_strerror,
};
