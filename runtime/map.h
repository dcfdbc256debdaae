/*
 * map.h — the map object shared by the API (map.c), flushing (flush.c) and inspection (inspect.c).
 */
#ifndef BM_MAP_H
#define BM_MAP_H

#include "bucketmap.h"
#include "runtime/bucket.h"
#include "storage/stor_drives.h"
#include "storage/stor_uring.h"

#include <pthread.h>

#define BM_API __attribute__((visibility("default")))

struct bm_map {
    uint32_t nbuckets;
    uint32_t shift;  /* 64 - log2(nbuckets); 64 means one bucket */
    uint32_t failed; /* atomic, sticky: an I/O error made durability unknowable (SQLite's ERROR state) */
    bool persistent;
    struct bkt *buckets;
    struct bkt_ctx ctx;
    struct bkt_counters ctr;
    struct stor_drives *drives;
    struct stor_ring ring;   /* persistent maps only, created by the first checkpoint that syncs (ring_ready) */
    bool ring_ready, ring_fault_eio; /* ring_fault_eio: test hook, applied when the ring is created */
    int *dir_fds;            /* persistent maps: one per drive, synced by every flush */
    uint64_t flushes, flush_ns, files_flushed; /* atomics */
    /* checkpoints (checkpoint.c; ckpt_lock) */
    pthread_mutex_t ckpt_lock;
    bool ckpt_lock_init;
    int restart_fd;
    uint64_t epoch;           /* the epoch the next checkpoint commits */
    uint64_t committed_epoch; /* the newest durable commit record's */
    uint64_t manifest_epoch, manifest_len, manifest_sum, manifest_recs_sum;
    uint32_t manifest_nfiles;
    uint64_t boot_id; /* this boot's (recovery.c); 0 when unknown */
    uint64_t committed_count; /* entries the newest commit record holds */
    /* atomic: 0 from a clean open until the first write, which commits an unclean record first
     * (checkpoint_arm); until then the clean record describes the map and checkpoints have nothing to do. */
    uint32_t armed;
    /* Lazy loading (recovery.c): a clean open's manifest records, sorted by bucket then kind; bucket i's
     * are lazy_n[i] records from lazy_first[i] (its index first). Immutable after the open. */
    struct manifest_rec *lazy_recs;
    uint32_t *lazy_first;
    uint8_t *lazy_n;
    pthread_mutex_t lazy_lock; /* guards load_err */
    char load_err[512];        /* the last failed bucket load's reason, naming the file */
    uint64_t load_errors;
    uint32_t flush_interval_ms; /* background checkpoints, on the maintenance thread (ctx.defer) */
    uint64_t trim_grows;        /* grows counted at the last housekeeping tick (map.c trim_tick) */
};

/* The bucket of key words k (the top log2(nbuckets) bits of key bytes 0..7 read big-endian). */
static inline struct bkt *map_bucket_for(bm_map *m, const uint64_t k[4])
{
    if (m->shift == 64)
        return &m->buckets[0];
    return &m->buckets[__builtin_bswap64(k[0]) >> m->shift];
}

/* bm_get_batch's lookups (batch.c), arguments already checked: fills status[i] (and n, refcounts, out) for
 * every key and returns how many were found. Outside read-side sections; takes its own, one per group. */
int map_get_batch(bm_map *m, const bm_key *keys, size_t nkeys, void *out, uint32_t cap, uint32_t *n,
                  uint64_t *refcounts, int *status);

/* A checkpoint (checkpoint.c NOTES): every write that returned before the call is durable when it returns 0.
 * Outside read sections and bucket locks. 0, -ENOMEM (nothing changed), or an I/O error (sticky). */
int checkpoint_run(bm_map *m, bool clean);
int map_flush(bm_map *m);
/* bm_close's: a checkpoint, every deferred release, then a clean checkpoint. */
int checkpoint_close(bm_map *m);

/* Open-time recovery (recovery.c): adopts the files of the newest commit, repairs them when the map was
 * not closed cleanly (or salvage is set), commits, and removes files no commit needs. errbuf gets a
 * description naming the file on failure. */
int recovery_open(bm_map *m, const char *restart_path, bool salvage, char *errbuf, size_t errlen);
/* Opens and checks the files of a bucket a clean open left unloaded (recovery.c), under its lock; 0 when
 * it is (or meanwhile was) loaded. Outside read-side sections. BM_EMISSING, BM_ECORRUPT, BM_EVERSION,
 * -ENOMEM, another negated errno, or BM_EBUSY (this thread holds another bucket lock, in a bm_update
 * callback, and this one is taken); errbuf (may be NULL) and m->load_err get the reason naming the file. */
int recovery_load_bucket(bm_map *m, struct bkt *b, char *errbuf, size_t errlen);
static inline int map_load(bm_map *m, struct bkt *b)
{
    return __builtin_expect(__atomic_load_n(&b->unloaded, __ATOMIC_ACQUIRE), 0) ? recovery_load_bucket(m, b, NULL, 0)
                                                                                 : 0;
}
/* Before a persistent map's first write since a clean open: commits an unclean record (checkpoint.c). 0,
 * BM_EBUSY (inside a bm_update callback while a checkpoint runs), or an I/O error (sticky). */
int checkpoint_arm(bm_map *m);
/* Makes the map's maintenance thread also checkpoint every flush_interval_ms. 0 or -errno. */
int map_flusher_start(bm_map *m);
/* Whether this thread is inside a bm_update or bm_read callback (of any map). */
bool map_in_callback(void);

#endif
