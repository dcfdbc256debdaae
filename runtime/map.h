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
    /* background flusher */
    pthread_t flusher;
    bool flusher_running;
    bool flusher_stop;
    uint32_t flush_interval_ms;
    pthread_mutex_t flusher_lock;
    pthread_cond_t flusher_cond;
};

/* Syncs every file dirtied since the last flush, plus the drive directories. Outside read sections.
 * 0, or the first error (which also makes the map's failed state sticky). */
int map_flush(bm_map *m);
int map_flusher_start(bm_map *m);
void map_flusher_stop(bm_map *m);

#endif
