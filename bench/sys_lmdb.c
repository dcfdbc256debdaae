/* Peer: LMDB, the persistent mmap'd B+tree with lock-free readers a user would pick for a durable index.
 * Two rows, one write transaction per insert/delete in both, and per thread one read-only transaction that
 * is reset and renewed around every get (the cheapest way LMDB offers to read a fresh snapshot):
 *   lmdb       MDB_NOSYNC (issue 4): commits do not wait for the disk, like bucketmap's unflushed writes;
 *              pages are written with pwrite from LMDB's own dirty-page buffers.
 *   lmdb-wmap  MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC (issue 7): how a user tunes LMDB for throughput;
 *              transactions write the shared mapping in place, nothing is synced until close.
 * The value is element + refcount (16 bytes) so it stores what bucketmap stores. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "system.h"

/* Address space. Without MDB_WRITEMAP the file grows with the pages written; with it LMDB ftruncates the
 * file to this size at open (sparse: only written pages take blocks), so lmdb-wmap's disk bytes are counted
 * from the pages in use instead of the file length (lm_info). */
#define LM_MAPSIZE (64ull << 30)
/* Set-up inserts are committed in batches of this many (never in a measured phase). */
#define LM_BULK_BATCH 65536u

typedef struct lm_db {
    MDB_env *env;
    MDB_dbi dbi;
    unsigned flags; /* the mdb_env_open flags */
    char path[PATH_MAX];
} lm_db;

typedef struct lm_tc {
    MDB_txn *rtxn;
    MDB_txn *bulk;
    unsigned bulk_n;
} lm_tc;

/* LMDB's own codes are negative, system errors are positive errno values: make both negative. */
static int lm_err(int rc)
{
    return rc < 0 ? rc : -rc;
}

static int lm_open_flags(const sys_cfg *cfg, void **out, char *err, size_t errlen, unsigned flags)
{
    lm_db *db = calloc(1, sizeof *db);
    if (!db)
        return -ENOMEM;
    db->flags = flags;
    snprintf(db->path, sizeof db->path, "%s/data.mdb", cfg->dir);
    int rc = mdb_env_create(&db->env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(db->env, LM_MAPSIZE);
    if (rc == 0)
        rc = mdb_env_open(db->env, cfg->dir, flags, 0644);
    MDB_txn *t = NULL;
    if (rc == 0)
        rc = mdb_txn_begin(db->env, NULL, 0, &t);
    if (rc == 0)
        rc = mdb_dbi_open(t, NULL, 0, &db->dbi);
    if (rc == 0) {
        rc = mdb_txn_commit(t);
        t = NULL;
    }
    if (rc != 0) {
        snprintf(err, errlen, "lmdb open %s: %s", cfg->dir, mdb_strerror(rc));
        if (t)
            mdb_txn_abort(t);
        if (db->env)
            mdb_env_close(db->env);
        free(db);
        return lm_err(rc);
    }
    *out = db;
    return 0;
}

static int lm_open(const sys_cfg *cfg, void **out, char *err, size_t errlen)
{
    return lm_open_flags(cfg, out, err, errlen, MDB_NOSYNC);
}

static int lm_open_wmap(const sys_cfg *cfg, void **out, char *err, size_t errlen)
{
    return lm_open_flags(cfg, out, err, errlen, MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC);
}

/* Makes every committed transaction durable (both configurations leave that to the caller). */
static int lm_flush(void *p)
{
    lm_db *db = p;
    return lm_err(mdb_env_sync(db->env, 1));
}

/* NOSYNC leaves durability to the caller; sync here so close means the same as bucketmap's close. */
static void lm_close(void *p)
{
    lm_db *db = p;
    mdb_env_sync(db->env, 1);
    mdb_env_close(db->env);
    free(db);
}

static int lm_reopenable(void *db, char *err, size_t errlen)
{
    (void)db;
    (void)err;
    (void)errlen;
    return 1;
}

static void *lm_thread_enter(void *db)
{
    (void)db;
    return calloc(1, sizeof(lm_tc));
}

static void lm_thread_exit(void *db, void *p)
{
    (void)db;
    lm_tc *tc = p;
    if (!tc)
        return;
    if (tc->bulk)
        mdb_txn_commit(tc->bulk);
    if (tc->rtxn)
        mdb_txn_abort(tc->rtxn);
    free(tc);
}

static void lm_bulk(void *p, void *q, int on)
{
    lm_db *db = p;
    lm_tc *tc = q;
    if (on && !tc->bulk) {
        if (mdb_txn_begin(db->env, NULL, 0, &tc->bulk) != 0)
            tc->bulk = NULL;
        tc->bulk_n = 0;
    } else if (!on && tc->bulk) {
        mdb_txn_commit(tc->bulk);
        tc->bulk = NULL;
    }
}

static int lm_insert(void *p, void *q, const uint8_t key[KEY_LEN], uint64_t val)
{
    lm_db *db = p;
    lm_tc *tc = q;
    uint64_t v[2] = {val, 1};
    MDB_val k = {KEY_LEN, (void *)key}, d = {sizeof v, v};
    if (tc->bulk) {
        int rc = mdb_put(tc->bulk, db->dbi, &k, &d, 0);
        if (rc == 0 && ++tc->bulk_n >= LM_BULK_BATCH) {
            rc = mdb_txn_commit(tc->bulk);
            tc->bulk = NULL;
            if (rc == 0)
                rc = mdb_txn_begin(db->env, NULL, 0, &tc->bulk);
            tc->bulk_n = 0;
        }
        return lm_err(rc);
    }
    MDB_txn *t;
    int rc = mdb_txn_begin(db->env, NULL, 0, &t);
    if (rc != 0)
        return lm_err(rc);
    rc = mdb_put(t, db->dbi, &k, &d, 0);
    if (rc != 0) {
        mdb_txn_abort(t);
        return lm_err(rc);
    }
    return lm_err(mdb_txn_commit(t));
}

static int lm_get(void *p, void *q, const uint8_t key[KEY_LEN], uint64_t *val)
{
    lm_db *db = p;
    lm_tc *tc = q;
    int rc = tc->rtxn ? mdb_txn_renew(tc->rtxn) : mdb_txn_begin(db->env, NULL, MDB_RDONLY, &tc->rtxn);
    if (rc != 0)
        return lm_err(rc);
    MDB_val k = {KEY_LEN, (void *)key}, d;
    rc = mdb_get(tc->rtxn, db->dbi, &k, &d);
    if (rc == 0) {
        memcpy(val, d.mv_data, sizeof *val);
        rc = SYS_FOUND;
    } else if (rc == MDB_NOTFOUND) {
        rc = SYS_ABSENT;
    } else {
        rc = lm_err(rc);
    }
    mdb_txn_reset(tc->rtxn);
    return rc;
}

static int lm_del(void *p, void *q, const uint8_t key[KEY_LEN])
{
    (void)q;
    lm_db *db = p;
    MDB_txn *t;
    int rc = mdb_txn_begin(db->env, NULL, 0, &t);
    if (rc != 0)
        return lm_err(rc);
    MDB_val k = {KEY_LEN, (void *)key};
    rc = mdb_del(t, db->dbi, &k, NULL);
    if (rc == MDB_NOTFOUND) {
        mdb_txn_abort(t);
        return SYS_ABSENT;
    }
    if (rc != 0) {
        mdb_txn_abort(t);
        return lm_err(rc);
    }
    return lm_err(mdb_txn_commit(t));
}

static void lm_info(void *p, sys_info *out)
{
    lm_db *db = p;
    struct stat st;
    MDB_stat ms;
    MDB_envinfo ei;
    memset(out, 0, sizeof *out);
    int have_stat = mdb_env_stat(db->env, &ms) == 0;
    if (have_stat) {
        out->has_entries = 1;
        out->entries = ms.ms_entries;
    }
    if (db->flags & MDB_WRITEMAP) {
        /* The file is as long as the map size: count the pages LMDB has used (free pages included). */
        if (have_stat && mdb_env_info(db->env, &ei) == 0) {
            out->has_disk = 1;
            out->disk_bytes = ((uint64_t)ei.me_last_pgno + 1) * ms.ms_psize;
        }
    } else if (stat(db->path, &st) == 0) {
        out->has_disk = 1;
        out->disk_bytes = (uint64_t)st.st_size;
    }
}

static const char *lm_strerror(int err)
{
    /* LMDB's codes sit in [MDB_KEYEXIST, MDB_LAST_ERRCODE]; anything else is a negated errno. */
    return mdb_strerror(err >= MDB_KEYEXIST && err <= MDB_LAST_ERRCODE ? err : -err);
}

const sys_ops sys_lmdb = {
    .name = "lmdb",
    .open = lm_open,
    .close = lm_close,
    .reopenable = lm_reopenable,
    .thread_enter = lm_thread_enter,
    .thread_exit = lm_thread_exit,
    .bulk = lm_bulk,
    .insert = lm_insert,
    .get = lm_get,
    .del = lm_del,
    .flush = lm_flush,
    .info = lm_info,
    .strerror = lm_strerror,
};

const sys_ops sys_lmdb_wmap = {
    .name = "lmdb-wmap",
    .open = lm_open_wmap,
    .close = lm_close,
    .reopenable = lm_reopenable,
    .thread_enter = lm_thread_enter,
    .thread_exit = lm_thread_exit,
    .bulk = lm_bulk,
    .insert = lm_insert,
    .get = lm_get,
    .del = lm_del,
    .flush = lm_flush,
    .info = lm_info,
    .strerror = lm_strerror,
};
