/*
 * bucket.h — one shard: an index file (open addressing, linear probing in a window of max_search slots, a
 * per-bucket seed) and lazily created size-class data files for values that do not fit inline.
 *
 * Locking: readers (bkt_lookup, bkt_snapshot) run inside an RCU read-side section and take no lock.
 * Writers (bkt_upsert, bkt_remove, bkt_adjref, bkt_update) take the bucket's mutex themselves. In the
 * BM_READER_RWLOCK ablation, readers take the bucket's rwlock for reading and writers hold it for writing
 * for their whole operation, grows included (upstream's design, kept for measurement only).
 */
#ifndef BM_BUCKET_H
#define BM_BUCKET_H

#include "bucketmap.h"
#include "runtime/entry.h"
#include "storage/stor_drives.h"
#include "storage/stor_file.h"
#include "urcu_glue/rcu_glue.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define BKT_NCLASS 23 /* classes 0..22: 2^22 one-byte elements = BM_MAX_VALUE_BYTES */
_Static_assert((1u << (BKT_NCLASS - 1)) >= BM_MAX_VALUE_BYTES, "a class for the largest value");

#define IDX_HEADER_BYTES (2 * STOR_PAGE)
#define DATA_HEADER_BYTES STOR_PAGE
#define IDX_MAGIC 0x3130305844494d42ull  /* "BMIDX001" */
#define DATA_MAGIC 0x3130305441444d42ull /* "BMDAT001" */
/* 2: entry checksum computed in parallel lanes (entry.h) and the release record; format-1 files are refused
 * with BM_EVERSION rather than read as damaged. */
#define IDX_FORMAT 2u
#define FREE_RING 128u
#define RH_MAX_PATH 64u /* longest Robin Hood move chain, and so the most slots one mutation touches */
#define UNDO_NO_CELL 0xffffffffu

/*
 * Undo record: written before a mutation touches any live entry, cleared after its last store. A process
 * killed in between leaves it active, and the next open rolls the bucket back: the old contents of every
 * touched slot, the count, the free-ring tail, and the data cell the mutation had claimed. Mappings are
 * shared, so after a SIGKILL the page cache holds every store made before it, in program order.
 */
struct undo_rec {
    uint64_t active;
    uint32_t nslots;
    uint32_t cell_cls; /* UNDO_NO_CELL, or the class of the cell this mutation claimed */
    uint64_t cell_ref;
    uint64_t cell_used; /* that data file's used count before the claim */
    uint64_t count;
    uint64_t free_tail;
    uint64_t slots[RH_MAX_PATH];
    struct bkt_entry old[RH_MAX_PATH];
};
#define CELL_OCCUPIED 1ull
#define CELL_HEADER 8u

/* The first pages of every index file. Durable per-bucket state that is not an entry. magic is written
 * last when a file is built: a file without it is an unfinished grow, removed at the next open. */
struct idx_header {
    uint64_t magic;
    uint64_t gen; /* map-wide build counter: at open, a bucket's newest complete index file wins */
    uint32_t format;
    uint32_t elem_size;
    uint64_t capacity;
    uint64_t seed;
    uint32_t bucket;
    uint32_t max_search;
    uint64_t count;    /* occupied entries */
    uint64_t max_disp; /* largest probe displacement of any entry ever placed in this file (atomic) */
    /* Data cells freed but maybe still read by a zero-copy reader: reusable after a grace period. Kept in
     * the file so that cells freed just before a crash are reclaimed at the next open, not leaked. */
    uint64_t free_head;
    uint64_t free_tail;
    struct {
        uint64_t cls;
        uint64_t ref;
    } free_ring[FREE_RING];
    struct undo_rec undo __attribute__((aligned(64)));
    /* Release of the ring's head cell in progress (head = free_head + 1, 0 = none) and that cell's data
     * file used count before it: clearing the cell and decrementing used are two stores, and a crash
     * between them must not leave used off by one forever. Never armed together with undo. */
    struct {
        uint64_t head;
        uint64_t used;
    } release;
};
_Static_assert(sizeof(struct idx_header) <= IDX_HEADER_BYTES, "index header fits its page");

/* Page 0 of every data file; magic written last, as for index files. */
struct data_header {
    uint64_t magic;
    uint64_t gen;
    uint32_t cls;
    uint32_t elem_size;
    uint32_t pow2;
    uint32_t bucket;
    uint64_t used; /* occupied cells, pending frees included */
};

/* What a bucket is made of at one instant. Immutable once published; replaced whole by a grow. */
struct bkt_state {
    struct stor_file *index;
    struct bkt_entry *entries;
    uint64_t cap;
    uint64_t seed;
    struct stor_file *data[BKT_NCLASS];
    uint8_t data_pow2[BKT_NCLASS];
    rcu_glue_head rcu;
    struct bkt *owner;
    struct stor_file *retired; /* a storage the successor state replaced: recycled after a grace period */
    unsigned retired_slot;     /* SPARE_INDEX or SPARE_DATA(c) */
};

#define SPARE_INDEX 0u
#define SPARES 2u
/* Disk that spares prepared ahead of a grow may hold, map-wide. Beyond it a retired file is kept empty
 * (length 0, no blocks): it still saves the grow a file creation, which on ext4 after many unlinks costs
 * more than the copy, and a map's footprint stays its live files plus at most this much. */
#define SPARE_BUDGET_BYTES (32ull << 20)
#define SPARE_DATA(c) (1u + (c))

/* Map-wide counters the buckets update (relaxed atomics). */
struct bkt_counters {
    uint64_t index_grows, index_failed_grows, data_grows, grow_errors, grow_ns, reader_retries;
    uint64_t orphan_files_removed, undo_replayed;
};

/* Settings shared by all buckets of a map. */
struct bkt_ctx {
    uint32_t elem_size;
    uint32_t max_search;
    uint32_t data_cell_size[BKT_NCLASS];
    uint32_t max_elems;   /* BM_MAX_VALUE_BYTES / elem_size */
    unsigned file_flags;  /* STOR_* for new files */
    bool temporary;       /* unlink every file at close */
    bool durable_grows;   /* persistent map: a grown file is synced before it replaces the old one */
    uint64_t next_gen;    /* atomic: build counter for file headers */
    uint64_t spare_bytes; /* atomic: bytes held by prepared (mapped) spares, see SPARE_BUDGET_BYTES */
    uint64_t crash_countdown;         /* test hooks, see test_crash_point() */
    uint64_t crash_release_countdown;
    struct stor_drives *drives;
    struct bkt_counters *ctr;
};

struct bkt {
    /* Read-mostly line: what readers touch. */
    struct bkt_state *state; /* RCU-protected; NULL until the first write */
    struct bkt_ctx *ctx;
#ifdef BM_READER_RWLOCK
    pthread_rwlock_t rw;
#endif
    /* Writers' lines. */
    pthread_mutex_t lock __attribute__((aligned(BM_CACHELINE)));
    uint64_t wseq;  /* odd while a writer mutates entries: lets bm_foreach take lock-free snapshots */
    uint64_t count; /* atomic; bm_count sums these */
    uint32_t ix;
    uint32_t cursor[BKT_NCLASS];
    uint64_t used[BKT_NCLASS]; /* atomic mirror of each data header's used count, for lock-free stats */
    uint64_t reclaim_upto;     /* atomic: ring position whose grace period has elapsed */
    uint64_t reclaim_target;
    uint32_t reclaim_inflight; /* atomic */
    rcu_glue_head reclaim_rcu;
    /* atomic: up to SPARES retired files per kind, kept for the next grows to recycle (grows of a small
     * index come faster than grace periods end, so one spare is often still in use when the next is due) */
    struct stor_file *spare[1 + BKT_NCLASS][SPARES];
} __attribute__((aligned(BM_CACHELINE)));

/* A value found by a reader. elems points into the mapping (DATA) or into inl (INLINE); valid inside the
 * read-side section in which it was found. */
struct bkt_val {
    uint64_t rc;
    uint32_t n;
    const void *elems;
    uint64_t inl[2];
};

int bkt_init(struct bkt *b, struct bkt_ctx *ctx, uint32_t ix);
/* Frees every cell awaiting a grace period. Only when no reader can exist (closing, after a barrier). */
void bkt_quiesce(struct bkt *b);
/* After rcu_glue_barrier(): no reader, writer or callback may still use b. */
void bkt_fini(struct bkt *b);

/* Inside a read-side section (or the ablation's read lock, which bkt_read_begin/end take). */
int bkt_lookup(struct bkt *b, const uint64_t k[4], struct bkt_val *out);
void bkt_read_begin(struct bkt *b);
void bkt_read_end(struct bkt *b);

/* Writers: outside read-side sections. Return 0 or a negative BM_E* / -errno; on error nothing changed. */
int bkt_upsert(struct bkt *b, const uint64_t k[4], const void *elems, uint32_t n, uint64_t rc);
int bkt_remove(struct bkt *b, const uint64_t k[4]);
/* delta is +1 or -1; the new refcount goes to *out. */
int bkt_adjref(struct bkt *b, const uint64_t k[4], int delta, uint64_t *out);
int bkt_update(struct bkt *b, const uint64_t k[4], bm_update_fn fn, void *ctx);

/* Appends every entry as records to a buffer owned by the caller (see runtime/snapshot.h). Outside read
 * sections; takes its own. */
struct snap_buf;
int bkt_snapshot(struct bkt *b, struct snap_buf *buf, uint64_t *damaged);

/* Visits the current files (for stats and flush). Takes its own read-side section; fn must not block long. */
/* Open-time recovery of a bucket whose files were found on disk (no other thread runs): adopts index and
 * data files (NULL where absent), rolls back an active undo record, frees the free ring, restores counts.
 * Returns 0 or BM_ECORRUPT when the files contradict each other. */
int bkt_adopt(struct bkt *b, struct stor_file *index, struct stor_file *data[BKT_NCLASS]);

/* Inspection (runtime/inspect.c). */
int bkt_info(struct bkt *b, bm_bucket_info *out);
void bkt_verify(struct bkt *b, bm_verify_report *r);

void bkt_for_each_file(struct bkt *b, void (*fn)(struct stor_file *f, bool is_index, void *arg), void *arg);

#endif
