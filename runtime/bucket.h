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
#include "runtime/defer.h"
#include "runtime/entry.h"
#include "runtime/format.h"
#include "storage/stor_drives.h"
#include "storage/stor_file.h"
#include "urcu_glue/rcu_glue.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define BKT_NCLASS 23 /* classes 0..22: 2^22 one-byte elements = BM_MAX_VALUE_BYTES */
_Static_assert((1u << (BKT_NCLASS - 1)) >= BM_MAX_VALUE_BYTES, "a class for the largest value");

#define RH_MAX_PATH 64u /* longest Robin Hood move chain */

/* What a bucket is made of at one instant. Immutable once published; replaced whole by a grow. */
struct bkt_state {
    struct stor_file *index;
    struct bkt_entry *entries;
    uint64_t cap;
    uint64_t seed;
    struct stor_file *data[BKT_NCLASS];
    uint8_t data_pow2[BKT_NCLASS];
    struct defer_node defer; /* queued on the map's deferral queue when replaced (bucket_grow.c) */
    struct bkt *owner;
    struct stor_file *retired; /* a storage the successor state replaced: recycled after a grace period */
    unsigned retired_slot;     /* SPARE_INDEX or SPARE_DATA(c) */
    uint64_t retire_epoch;     /* the bucket's epoch when it was replaced (checkpoint pins, checkpoint.c) */
    struct pinned_file *pin;   /* preallocated when the retired file must stay until a checkpoint */
};

/* A release that must wait: a freed data cell (readers may still copy it; and in a persistent map the last
 * checkpoint may still name it), or a shadowed slot (the last checkpoint holds it). Items are queued in
 * epoch order; seq = pend_base + position. */
enum { PEND_CELL = 0, PEND_SHADOW = 1 };
struct pend_item {
    uint64_t a;     /* PEND_CELL: data ref; PEND_SHADOW: slot */
    uint64_t gen;   /* PEND_SHADOW: the index file's gen (a grow drops shadows, so an older gen is void) */
    uint64_t epoch; /* the bucket's epoch when queued */
    uint32_t kind;
    uint32_t cls;
};

#define SPARE_INDEX 0u
#define SPARES 2u
/* Disk that spares prepared ahead of a grow may hold, map-wide: this much plus 1.25x the bytes the map's
 * files grew by since open, the latter at most SPARE_GROWN_MAX (a growing map's spares are its buckets'
 * previous files, kept mapped and regrown in place, each ~1.2x its bucket's live index; bucket_grow.c).
 * Beyond it a retired file is kept empty (length 0, no blocks): it still saves the grow a file creation,
 * which on ext4 after many unlinks costs more than the copy. So a growing map's footprint is at most
 * about 2.25x its live files, and at most 2 GiB more than them. */
#define SPARE_BUDGET_BYTES (32ull << 20)
#define SPARE_GROWN_MAX (2ull << 30)
#define SPARE_DATA(c) (1u + (c))

/* Map-wide counters the buckets update (relaxed atomics). */
struct bkt_counters {
    uint64_t index_grows, index_failed_grows, data_grows, grow_errors, grow_ns, reader_retries;
    uint64_t orphan_files_removed, undo_replayed, shadowed, recovered_entries_dropped, recovered_cells_freed;
    uint64_t buckets_scrubbed, scrub_ns;
};

/* A file that the last checkpoint may name, replaced since: kept as it is until a checkpoint of epoch
 * >= retire_epoch has committed (checkpoint.c). */
struct pinned_file {
    struct pinned_file *next;
    struct stor_file *f;
    struct bkt *owner;
    uint64_t retire_epoch;
    unsigned slot;
};

/* Settings shared by all buckets of a map. */
struct bkt_ctx {
    uint32_t elem_size;
    uint32_t max_search;
    uint32_t data_cell_size[BKT_NCLASS];
    uint32_t max_elems;   /* BM_MAX_VALUE_BYTES / elem_size */
    uint64_t first_index_cap; /* entries of a bucket's first index file (bm_config.expected_entries) */
    unsigned file_flags;  /* STOR_* for new files */
    bool durable;         /* persistent map: checkpoints (frozen slots, shadows, pinned files); a temporary
                           * map (false) unlinks every file at close */
    uint64_t next_gen;    /* atomic: build counter for file headers */
    uint64_t spare_bytes; /* atomic: bytes held by prepared (mapped) spares, see SPARE_BUDGET_BYTES */
    int64_t grown_bytes;  /* atomic: bytes the map's files grew by since open (grows' new minus replaced) */
    uint64_t crash_countdown;         /* test hooks, see test_crash_point() */
    struct stor_drives *drives;
    struct bkt_counters *ctr;
    /* Files replaced since the checkpoint that may name them (persistent maps). */
    pthread_mutex_t pin_lock;
    struct pinned_file *pinned;
    /* Releases that wait for a grace period, and the thread that runs them (runtime/defer.h). */
    struct defer_queue defer;
};

struct bkt {
    /* Read-mostly line: what readers touch. */
    struct bkt_state *state; /* RCU-protected; NULL until the first write or, while `unloaded`, the first touch */
    struct bkt_ctx *ctx;
    /* atomic: 1 while the bucket's files, named by the checkpoint a clean open found, are not opened yet
     * (recovery.c loads them on first touch, under the bucket lock, then publishes state and clears this
     * with release order; it is never set again). Only read where state is NULL: a loaded bucket's readers
     * never look at it. */
    uint32_t unloaded;
#ifdef BM_READER_RWLOCK
    pthread_rwlock_t rw;
#endif
    /* Writers' lines. */
    pthread_mutex_t lock __attribute__((aligned(BM_CACHELINE)));
    uint64_t wseq;  /* odd while a writer mutates entries: lets bm_foreach take lock-free snapshots */
    uint64_t count; /* atomic; bm_count sums these */
    uint32_t ix;
    uint64_t epoch; /* checkpoint epoch this bucket's writes belong to (bucket lock) */
    /* Writer-only arrays (cursor[BKT_NCLASS], spare[1 + BKT_NCLASS][SPARES]) live in one block allocated by
     * the bucket's first writer (bucket.c wlock_writer), not inline: they are 70% of a bucket, and every
     * page of the bucket array a clean open initializes is a first touch (on a VM ~5-15 us a page). NULL
     * until then; a bucket that was never written has no spare and allocates no cell. */
    uint64_t *cursor;
    uint64_t used[BKT_NCLASS]; /* atomic mirror of each data header's used count, for lock-free stats */
    /* Slots whose entry arrived since the last checkpoint cut: only those may move (Robin Hood) or be
     * rewritten in another slot; NULL or all_movable when no checkpoint can name the index. */
    uint64_t *movable;
    bool all_movable;
    /* Deferred releases (bucket lock). */
    struct pend_item *pend;
    uint64_t npend, pend_cap, pend_base;
    uint64_t ready_seq;        /* atomic: items with a smaller seq may be released */
    uint64_t reclaim_target;
    uint32_t reclaim_inflight; /* atomic */
    struct defer_node reclaim_node;
    /* atomic elements: up to SPARES retired files per kind, kept for the next grows to recycle (grows of a
     * small index come faster than grace periods end, so one spare is often still in use when the next is
     * due). Points into the writer block (cursor). */
    struct stor_file *(*spare)[SPARES];
    /* Aligned (so sized) to a power of two: bm_get finds a bucket with a shift, not a multiply. */
} __attribute__((aligned(512)));

/* A value found by a reader. elems points into the mapping (DATA) or into inl (INLINE); valid inside the
 * read-side section in which it was found. */
struct bkt_val {
    uint64_t rc;
    uint32_t n;
    const void *elems;
    uint64_t inl[2];
};

/* Empties every prepared spare (unmapped, length 0; the file and its fd stay for a later grow): a map that
 * has stopped growing gives its spares' memory and disk back. True if there was one. Any thread. */
bool bkt_trim_spares(struct bkt *b);
int bkt_init(struct bkt *b, struct bkt_ctx *ctx, uint32_t ix);
/* After the map's deferral queue was stopped and drained: no reader, writer or deferred node may still use b. */
void bkt_fini(struct bkt *b);

/* bkt_lookup's answer for a bucket whose files are not loaded yet (never returned to a user): the caller
 * leaves its read-side section, loads the bucket (map.c) and looks again. */
#define BKT_UNLOADED 1

/* Inside a read-side section (or the ablation's read lock, which bkt_read_begin/end take). 0, BM_ENOTFOUND,
 * BM_ECORRUPT or BKT_UNLOADED. */
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

/* Visits the current files. Takes its own read-side section; fn must not block. */
void bkt_for_each_file(struct bkt *b, void (*fn)(struct stor_file *f, bool is_index, void *arg), void *arg);

/* Inspection (runtime/inspect.c). */
int bkt_info(struct bkt *b, bm_bucket_info *out);
void bkt_verify(struct bkt *b, bm_verify_report *r);

#endif
