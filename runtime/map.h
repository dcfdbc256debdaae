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
    struct stor_ring ring;   /* persistent maps only */
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
/* Makes the map's maintenance thread also checkpoint every flush_interval_ms. 0 or -errno. */
int map_flusher_start(bm_map *m);
/* Whether this thread is inside a bm_update or bm_read callback (of any map). */
bool map_in_callback(void);

#endif
