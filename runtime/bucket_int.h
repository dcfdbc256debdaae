/*
 * bucket_int.h — what the bucket's modules share: address arithmetic, entry validation, and the functions
 * each module offers the others.
 *
 *   bucket.c        lookup, probing, the mutations, snapshots
 *   bucket_grow.c   files, spares, index and data grows, publishing a new state
 *   bucket_cells.c  data-cell allocation and deferred releases (cells and shadowed slots)
 *   undo.c          the one-slot undo record
 *   recovery.c      adopting a checkpoint's files at open, scrubbing after an unclean shutdown
 *   checkpoint.c    the durability protocol (cut, sync, manifest, commit record, post-commit releases)
 *   inspect.c       bucket info and verify
 */
#ifndef BM_BUCKET_INT_H
#define BM_BUCKET_INT_H

#include "runtime/bucket.h"

#include <errno.h>
#include <time.h>

#define MAX_INDEX_CAP (1ull << 36)
#define MAX_DATA_POW2 40
#define ENTRIES_PER_PAGE (STOR_PAGE / sizeof(struct bkt_entry))

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline struct idx_header *idx_hdr(const struct bkt_state *st) { return stor_header(st->index); }

static inline struct data_header *data_hdr(const struct bkt_state *st, unsigned c)
{
    return stor_header(st->data[c]);
}

static inline uint64_t window(const struct bkt_ctx *ctx, uint64_t cap)
{
    return ctx->max_search < cap ? ctx->max_search : cap;
}

static inline uint64_t cell_index(const struct bkt_state *st, unsigned c, uint64_t ref)
{
    return DATA_REF_OFF(ref) << (st->data_pow2[c] - DATA_REF_POW2(ref));
}

static inline uint8_t *cell_at(const struct bkt_state *st, unsigned c, uint64_t ref)
{
    return stor_cell(st->data[c], cell_index(st, c, ref));
}

/* A data ref that names a cell the files actually have. */
static inline bool cell_ref_ok(const struct bkt_state *st, uint64_t cls, uint64_t ref)
{
    if (cls >= BKT_NCLASS || !st->data[cls] || DATA_REF_POW2(ref) > st->data_pow2[cls])
        return false;
    return (DATA_REF_OFF(ref) << (st->data_pow2[cls] - DATA_REF_POW2(ref))) < st->data[cls]->ncells;
}

static inline uint64_t disp_of(const uint64_t k[4], uint64_t seed, uint64_t cap, uint64_t j)
{
    uint64_t home = entry_home(entry_hash(k, seed), cap);
    return j >= home ? j - home : j + cap - home;
}

/* Writers' walk over k's probe window (bucket lock held): for (d = 0; d < w.len; d++) slot probe_at(&w, d).
 * bounded: stop at max_disp as readers do; else the whole window (verify, which checks max_disp itself). */
struct probe {
    uint64_t home, cap, len;
};

static inline struct probe probe_window(const struct bkt_ctx *ctx, const struct bkt_state *st, const uint64_t k[4],
                                        bool bounded)
{
    struct probe p = {entry_home(entry_hash(k, st->seed), st->cap), st->cap, window(ctx, st->cap)};
    uint64_t md = idx_hdr(st)->max_disp;
    if (bounded && md + 1 < p.len)
        p.len = md + 1;
    return p;
}

static inline uint64_t probe_at(const struct probe *p, uint64_t d)
{
    return p->home + d >= p->cap ? p->home + d - p->cap : p->home + d;
}

/* k's live (unshadowed) slot, or -1 (bucket lock held). */
static inline int64_t live_slot(const struct bkt_ctx *ctx, const struct bkt_state *st, const uint64_t k[4],
                                bool bounded)
{
    struct probe p = probe_window(ctx, st, k, bounded);
    for (uint64_t d = 0; d < p.len; d++) {
        uint64_t j = probe_at(&p, d);
        const struct bkt_entry *e = &st->entries[j];
        if (entry_tag(e->state) != TAG_FREE && !(e->state & ENTRY_SHADOW) && key_eq(e->key, k))
            return (int64_t)j;
    }
    return -1;
}

/* Whether slot j's entry arrived since the last checkpoint cut (may move or be rewritten elsewhere). */
static inline bool slot_movable(const struct bkt *b, uint64_t j)
{
    return b->all_movable || ((b->movable[j >> 6] >> (j & 63)) & 1);
}

static inline void mark_movable(struct bkt *b, uint64_t j)
{
    if (!b->all_movable)
        b->movable[j >> 6] |= 1ull << (j & 63);
}

static inline void decode_value(const struct entry_snap *s, struct bkt_val *out)
{
    out->rc = s->rc;
    switch (entry_tag(s->state)) {
    case TAG_EMPTY:
        out->n = 0;
        out->elems = NULL;
        break;
    case TAG_INLINE:
        out->n = 1;
        out->inl[0] = s->p[0];
        out->inl[1] = s->p[1];
        out->elems = out->inl;
        break;
    default:
        out->n = (uint32_t)s->p[1];
        break;
    }
}

/*
 * Resolves a copy of key k's entry, taken from st, into *v, and returns 0 only when the entry and its data
 * cell are exactly what the writer stored: the entry's sum covers the cell's sum, which covers its
 * elements. A damaged, torn or stale entry or cell is BM_ECORRUPT, so nothing torn reaches a caller; the
 * ref is range-checked before the cell is touched. A ref newer than st is -EAGAIN: the bucket grew under
 * a reader, whose st is stale (bucket.c I5). *cellsum gets the cell's sum (0 for other tags). Readers call
 * it inside a read-side section, where the cell cannot be reused; writers under the bucket lock.
 */
static inline __attribute__((always_inline)) int resolve(const struct bkt_state *st, const struct bkt_ctx *ctx,
                                                         const uint64_t k[4], const struct entry_snap *s,
                                                         struct bkt_val *v, uint32_t *cellsum)
{
    decode_value(s, v);
    if (entry_tag(s->state) != TAG_DATA) {
        *cellsum = 0;
        return bm_likely(entry_sum_ok(s->state, k, s->rc, s->p[0], s->p[1], 0)) ? 0 : BM_ECORRUPT;
    }
    if (bm_unlikely(v->n > ctx->max_elems || v->n == 0))
        return BM_ECORRUPT;
    unsigned c = size_class(v->n);
    if (!st->data[c] || DATA_REF_POW2(s->p[0]) > st->data_pow2[c])
        return -EAGAIN;
    if (bm_unlikely(!cell_ref_ok(st, c, s->p[0])))
        return BM_ECORRUPT;
    const uint8_t *cell = cell_at(st, c, s->p[0]);
    uint64_t hdr = *(const uint64_t *)cell;
    uint32_t cs = cell_hdr_sum(hdr);
    if (bm_unlikely(!(hdr & CELL_OCCUPIED) || !entry_sum_ok(s->state, k, s->rc, s->p[0], s->p[1], cs) ||
                    cell_sum(cell + CELL_HEADER, (size_t)v->n * ctx->elem_size) != cs))
        return BM_ECORRUPT;
    v->elems = cell + CELL_HEADER;
    *cellsum = cs;
    return 0;
}

/* ---- bucket.c: the reader's slow paths, shared with the batch (batch.c) ---- */
/* A BUSY bit seen for ENTRY_BUSY_SPINS spins: whether it is damage rather than a writer at work. */
bool bkt_busy_is_damage(const struct bkt *b, const struct bkt_entry *e);
/* Adds a lookup's retries to the map's counter (and fires the reader_retry probe). */
void bkt_count_retries(struct bkt *b, uint64_t retries);

/* ---- the reader's lookup, in stages (bkt_lookup runs them back to back; the batch, batch.c, runs each
 * stage over a group of keys so that their cache misses overlap). All inside a read-side section. ---- */

/* k's home slot in st. */
static inline uint64_t lookup_home(const struct bkt_state *st, const uint64_t k[4])
{
    return entry_home(entry_hash(k, st->seed), st->cap);
}

/*
 * Scans k's window in st from its home slot up to the index's max_disp (I1, I2): 1 with k's entry copied
 * into *s; BM_ENOTFOUND; or BM_ECORRUPT when k is not there but an entry of the window stays BUSY with no
 * writer in the bucket (damage: it may be k's). *retries counts re-reads forced by writers.
 */
static inline __attribute__((always_inline)) int lookup_scan(const struct bkt *b, const struct bkt_state *st,
                                                             const uint64_t k[4], uint64_t home,
                                                             struct entry_snap *s, uint64_t *retries)
{
    uint64_t cap = st->cap;
    uint64_t *mdp = &idx_hdr(st)->max_disp, md = bm_load_acq(mdp), w = window(b->ctx, cap);
    bool damaged = false; /* a stuck BUSY entry in the window: it may be k's */
    uint64_t d, win;
scan:
    win = md + 1 < w ? md + 1 : w;
    for (d = 0; d < win; d++) {
        uint64_t j = home + d >= cap ? home + d - cap : home + d;
        int r = entry_read_if_key(&st->entries[j], k, s, retries);
        if (bm_likely(r == 0))
            continue;
        if (r > 0)
            return 1;
        if (bkt_busy_is_damage(b, &st->entries[j])) {
            damaged = true; /* not readable, but other keys past it are */
            continue;
        }
        d--; /* a writer is there: look again */
    }
    /* I2: an entry may have moved past our bound while we scanned. */
    uint64_t md2 = bm_load_acq(mdp);
    if (md2 != md) {
        md = md2;
        goto scan;
    }
    return damaged ? BM_ECORRUPT : BM_ENOTFOUND; /* whose the damaged entry is, bmctl verify can tell */
}

/*
 * Finishes a lookup whose scan of st returned `found` (and, when 1, k's entry in *s): resolves the entry into
 * *out. A data ref newer than st (I5: the writer published a newer state first) scans the newer state again.
 * Returns 0, BM_ENOTFOUND or BM_ECORRUPT.
 */
static inline __attribute__((always_inline)) int lookup_finish(const struct bkt *b, const struct bkt_state *st,
                                                               const uint64_t k[4], int found, struct entry_snap *s,
                                                               struct bkt_val *out, uint64_t *retries)
{
    for (;;) {
        if (found != 1)
            return found;
        uint32_t cs = 0;
        int rc = resolve(st, b->ctx, k, s, out, &cs);
        if (bm_likely(rc != -EAGAIN))
            return rc;
        const struct bkt_state *cur = rcu_glue_deref(b->state);
        if (cur == st)
            return BM_ECORRUPT; /* a ref no state can resolve: damaged file (bmctl verify) */
        st = cur;
        found = lookup_scan(b, st, k, lookup_home(st, k), s, retries);
    }
}

/* A stable entry (bucket lock held) as a snapshot. */
static inline struct entry_snap entry_snap_of(const struct bkt_entry *e)
{
    struct entry_snap s = {e->state, e->rc, {e->p[0], e->p[1]}};
    return s;
}

/* ---- bucket.c: the bucket's writer lock, for the checkpoint and inspection ---- */
/* 0, or BM_EBUSY when this thread already holds another bucket lock and this one is taken. */
int bkt_lock(struct bkt *b);
void bkt_unlock(struct bkt *b);

/* ---- bucket_grow.c (bucket lock held) ---- */
int grow_create_index(struct bkt *b);
int grow_index(struct bkt *b);
int grow_data(struct bkt *b, unsigned c);
/* A replaced or superseded file goes back to the bucket's spares (may do I/O; no lock needed). */
void grow_keep_spare(struct bkt *b, unsigned slot, struct stor_file *f);
/* Closes every spare (unlinking it). */
void grow_drop_spares(struct bkt *b);

/* ---- bucket_cells.c (bucket lock held) ---- */
/* Finds a free cell of class c without claiming it; -1 when the scan found none. */
int cells_find(struct bkt *b, unsigned c, uint64_t *ref);
/* Writes n elements into the free cell ref of class c and marks it occupied; returns the cell's sum. */
uint32_t cells_fill(struct bkt *b, unsigned c, uint64_t ref, const void *elems, uint32_t n);
void cells_set_used(struct bkt *b, unsigned c, uint64_t used);
/* Room for n more deferred releases, so a commit never fails halfway. 0 or -ENOMEM. */
int pend_reserve(struct bkt *b, uint64_t n);
void pend_push(struct bkt *b, uint32_t kind, uint32_t cls, uint64_t a);
/* Releases what readers (temporary maps) or readers and a committed checkpoint (persistent) allow. */
void pend_release_ready(struct bkt *b);
/* Checkpoint: after a grace period, every item of epoch <= epoch may go. */
void pend_release_epoch(struct bkt *b, uint64_t epoch);
/* No reader is left (close): release everything. */
void pend_release_all(struct bkt *b);
void pend_free(struct bkt *b);

/* ---- undo.c (bucket lock held) ---- */
void undo_arm(struct bkt *b, uint64_t slot);
void undo_disarm(struct bkt *b);
/* Open-time: 1 if an armed, intact record was replayed, 0 if none was armed, BM_ECORRUPT if the record is
 * damaged (armed word neither 0 nor armed, or a bad sum). */
int undo_replay(struct bkt *b);

#endif
