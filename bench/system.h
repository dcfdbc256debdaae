/* The common interface every compared system is driven through, so the workloads are written once and a
 * difference in the table is the system's, not the harness's. */
#ifndef BENCH_SYSTEM_H
#define BENCH_SYSTEM_H

#include <stddef.h>
#include <stdint.h>

#include "keys.h"

enum { SYS_FOUND = 0, SYS_ABSENT = 1 }; /* get/del results; negative = the system's error code */
#define BATCH_MAX_KEYS 256u /* largest get_batch */

typedef struct sys_cfg {
    const char *dir;  /* directory the system may put its files in (kept across close + reopen) */
    int reopen;       /* open what close left in dir; do not fall back to a fresh store */
    uint32_t buckets; /* shard count for systems that shard; 0 = the system's default */
    uint64_t n_hint;  /* keys the run will hold, for systems that must size a file up front */
    uint32_t flush_ms; /* > 0: a background flusher with this period, where the system has one */
} sys_cfg;

/* --bm-expected: bucketmap gets n_hint as bm_config.expected_entries. */
extern int bench_bm_expected;

typedef struct sys_info {
    int has_disk;        /* disk_bytes valid */
    uint64_t disk_bytes; /* bytes the system's files take (as the system accounts them) */
    int has_grows;
    uint64_t grows; /* cumulative resizes so far */
    int has_entries;
    uint64_t entries;
    int has_flushes;
    uint64_t flushes;       /* cumulative completed flushes (explicit or background) */
    uint64_t files_flushed; /* cumulative files those flushes synced */
} sys_info;

typedef struct sys_ops {
    const char *name;
    /* Opens a new store in cfg->dir, or the one already there (reopen). err gets a message on failure. */
    int (*open)(const sys_cfg *cfg, void **db, char *err, size_t errlen);
    /* Closes; a persistent store makes its data durable first so reopen finds it. */
    void (*close)(void *db);
    /* Non-zero when close + open on the same dir brings the contents back; why not goes to err. */
    int (*reopenable)(void *db, char *err, size_t errlen);
    /* Per-thread state (RCU registration, a reusable read transaction); called on the thread itself. */
    void *(*thread_enter)(void *db);
    void (*thread_exit)(void *db, void *tc);
    /* Optional: batch the following inserts of this thread where the system allows (set-up only, never
     * in a measured phase). */
    void (*bulk)(void *db, void *tc, int on);
    int (*insert)(void *db, void *tc, const uint8_t key[KEY_LEN], uint64_t val);
    int (*get)(void *db, void *tc, const uint8_t key[KEY_LEN], uint64_t *val);
    int (*del)(void *db, void *tc, const uint8_t key[KEY_LEN]);
    /* Optional (NULL: the system has no batched get, workload 8 reports n/a): gets n keys (n * KEY_LEN bytes
     * at keys, n <= BATCH_MAX_KEYS) in one call; res[i] gets SYS_FOUND, SYS_ABSENT or an error, vals[i] the
     * value of a found key. Returns the number found or the system's (negative) error. */
    int (*get_batch)(void *db, void *tc, const uint8_t *keys, size_t n, uint64_t *vals, int *res);
    /* Optional (NULL for an in-memory system): makes every write that returned before it durable. 0 or
     * the system's (negative) error. Called on a thread that is not between thread_enter and thread_exit. */
    int (*flush)(void *db);
    /* open, close and info run on a thread that is not between thread_enter and thread_exit. */
    void (*info)(void *db, sys_info *out);
    const char *(*strerror)(int err);
} sys_ops;

extern const sys_ops sys_bucketmap;     /* named "bucketmap", or "rwlock" in the ablation build */
extern const sys_ops sys_bucketmap_tmp; /* "bucketmap-tmp" / "rwlock-tmp": the same without a restart file */
extern const sys_ops sys_lfht;
extern const sys_ops sys_lmdb;      /* MDB_NOSYNC */
extern const sys_ops sys_lmdb_wmap; /* MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC */

/* Systems this binary can run in-process (bm-bench: bucketmap, lfht, lmdb, lmdb-wmap; bm-bench-rwlock: rwlock), NULL
 * for any other name; sys_default_list is the comma-separated list run when none is given. */
const sys_ops *sys_find(const char *name);
const char *sys_default_list(void);

#endif
