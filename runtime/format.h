/*
 * format.h — the on-disk headers of index and data files, and the undo record.
 *
 * Index file:  [ idx_header, 2 pages ][ 64-byte entries (entry.h) ... ]
 * Data file:   [ data_header, 1 page ][ cells: u64 header (occupied:1 | sum:32 in the upper half), elements ]
 *
 * A file's identity (magic, gen, bucket, class, capacity) is written once when the file is built and never
 * changes while a checkpoint may name it; the mutable fields (count, max_disp, used, undo) are exact after a
 * clean close and rebuilt by recovery otherwise (runtime/recovery.c).
 */
#ifndef BM_FORMAT_H
#define BM_FORMAT_H

#include "runtime/entry.h"
#include "storage/stor_file.h"

#include <stddef.h>
#include <stdint.h>

#define IDX_HEADER_BYTES (2 * STOR_PAGE)
#define DATA_HEADER_BYTES STOR_PAGE
#define IDX_MAGIC 0x3130305844494d42ull  /* "BMIDX001" */
#define DATA_MAGIC 0x3130305441444d42ull /* "BMDAT001" */
/* 3: entries bound to their cell's sum, shadow bit, one-slot undo record with its own sum, no free ring.
 * Older files get BM_EVERSION rather than being read as damaged. */
#define IDX_FORMAT 3u

#define CELL_OCCUPIED 1ull
#define CELL_HEADER 8u

static inline uint32_t cell_hdr_sum(uint64_t hdr) { return (uint32_t)(hdr >> 32); }

/*
 * Undo record: the old contents of the one slot that a mutation rewrites in place (update, addref, unref),
 * armed before the first store and disarmed after the last. A process killed in between leaves it armed
 * and the next open puts the slot back. Every other mutation is safe without it: a fresh entry or a new
 * version goes to a free slot and a Robin Hood move writes its destination before its source, so a kill
 * leaves at most a duplicate or a half-written slot that recovery drops. The record has its own sum: a
 * damaged record is damage, never an instruction.
 */
#define UNDO_ARMED 0x44454d5241444e55ull /* "UNDARMED" */
struct undo_rec {
    uint64_t armed; /* 0 or UNDO_ARMED */
    uint64_t slot;
    struct bkt_entry old;
    uint64_t sum; /* over armed, slot and old */
};

static inline uint64_t undo_sum(const struct undo_rec *u)
{
    const uint64_t *w = (const uint64_t *)u;
    uint64_t h = 0x243f6a8885a308d3ull;
    for (unsigned i = 0; i < offsetof(struct undo_rec, sum) / 8; i++)
        h = fold_mul(h ^ w[i], 0x9E3779B97F4A7C15ull);
    return h;
}

struct idx_header {
    uint64_t magic; /* written last when the file is built */
    uint64_t gen;   /* map-wide build counter: the checkpoint's manifest names each file by it */
    uint32_t format;
    uint32_t elem_size;
    uint64_t capacity;
    uint64_t seed;
    uint32_t bucket;
    uint32_t max_search;
    uint64_t count;    /* live entries (exact after a clean close) */
    uint64_t max_disp; /* largest probe displacement placed in this file (atomic; readers bound scans by it) */
    uint64_t closed;   /* epoch of the clean-close checkpoint that last synced it (recovery: a stale copy) */
    struct undo_rec undo __attribute__((aligned(64)));
};
_Static_assert(sizeof(struct idx_header) <= IDX_HEADER_BYTES, "index header fits its pages");

struct data_header {
    uint64_t magic; /* written last */
    uint64_t gen;
    uint32_t cls;
    uint32_t elem_size;
    uint32_t pow2;
    uint32_t bucket;
    uint64_t used; /* occupied cells, frees awaiting a checkpoint included */
    uint64_t closed; /* as idx_header.closed */
};

#endif
