/*
 * bucket_cells.c — data cells (allocation, filling) and deferred releases.
 *
 * A data cell is immutable while any entry names it (bucket.c I3). A cell that an entry stops naming is not
 * free at once; it waits in the bucket's pending queue:
 *   - for a grace period, so a zero-copy reader that found it keeps stable bytes (every map);
 *   - in a persistent map, also until a checkpoint of the epoch in which it was freed has committed, so that
 *     after a power loss the entry that the last checkpoint holds still finds its cell intact (checkpoint.c).
 * Shadowed slots (entry.h) wait in the same queue for the same checkpoint, then become FREE.
 *
 * Temporary maps advance through the map's deferral queue (runtime/defer.h): once enough items wait, a
 * queued node marks them ready after a grace period and the next writer of the bucket releases them. Persistent maps release at the checkpoint
 * (pend_release_epoch), which has waited for a grace period first. Nothing here waits for a grace period
 * under the bucket lock.
 */
#include "runtime/bucket_int.h"

#include "common/bm_mem.h"

#include <string.h>

#define ALLOC_SCAN 512  /* cells an allocation scans before it grows the file instead */
#define RECLAIM_BATCH 32 /* temporary maps: pending cells that start a grace period */

void cells_set_used(struct bkt *b, unsigned c, uint64_t used)
{
    data_hdr(b->state, c)->used = used;
    bm_store_rlx(&b->used[c], used);
}

int cells_find(struct bkt *b, unsigned c, uint64_t *ref)
{
    const struct bkt_state *st = b->state;
    struct stor_file *f = st->data[c];
    if (data_hdr(st, c)->used >= f->ncells)
        return -1;
    uint64_t n = f->ncells, i = b->cursor[c] % n;
    uint64_t scan = n < ALLOC_SCAN ? n : ALLOC_SCAN;
    for (uint64_t k = 0; k < scan; k++, i = i + 1 == n ? 0 : i + 1) {
        const uint64_t *hdr = stor_cell(f, i);
        if (!(*hdr & CELL_OCCUPIED)) {
            b->cursor[c] = i + 1;
            *ref = DATA_REF(st->data_pow2[c], i);
            return 0;
        }
    }
    b->cursor[c] = i;
    return -1;
}

uint32_t cells_fill(struct bkt *b, unsigned c, uint64_t ref, const void *elems, uint32_t n)
{
    struct bkt_state *st = b->state;
    uint8_t *cell = cell_at(st, c, ref);
    size_t bytes = (size_t)n * b->ctx->elem_size;
    memcpy(cell + CELL_HEADER, elems, bytes);
    uint32_t sum = cell_sum(cell + CELL_HEADER, bytes);
    *(uint64_t *)cell = CELL_OCCUPIED | (uint64_t)sum << 32;
    cells_set_used(b, c, data_hdr(st, c)->used + 1);
    stor_file_touch(st->data[c]);
    return sum;
}

/* ---- pending queue ---- */

int pend_reserve(struct bkt *b, uint64_t n)
{
    if (b->npend + n <= b->pend_cap)
        return 0;
    uint64_t cap = b->pend_cap ? b->pend_cap * 2 : 64;
    while (cap < b->npend + n)
        cap *= 2;
    struct pend_item *p = bm_realloc(b->pend, cap * sizeof(*p));
    if (!p)
        return -ENOMEM;
    b->pend = p;
    b->pend_cap = cap;
    return 0;
}

static void reclaim_cb(struct defer_node *n)
{
    struct bkt *b = caa_container_of(n, struct bkt, reclaim_node);
    bm_store_rel(&b->ready_seq, b->reclaim_target);
    bm_store_rel(&b->reclaim_inflight, 0);
}

/* pend_reserve() made room before the commit began. */
void pend_push(struct bkt *b, uint32_t kind, uint32_t cls, uint64_t a)
{
    struct pend_item *it = &b->pend[b->npend++];
    it->a = a;
    it->kind = kind;
    it->cls = cls;
    it->epoch = b->epoch;
    it->gen = kind == PEND_SHADOW ? idx_hdr(b->state)->gen : 0;
    if (b->ctx->durable)
        return;
    uint64_t end = b->pend_base + b->npend;
    if (!bm_load_acq(&b->reclaim_inflight) && end - bm_load_rlx(&b->ready_seq) >= RECLAIM_BATCH) {
        bm_store_rlx(&b->reclaim_inflight, 1);
        b->reclaim_target = end;
        defer_push(&b->ctx->defer, &b->reclaim_node, reclaim_cb, true);
    }
}

static void release_cell(struct bkt *b, unsigned c, uint64_t ref)
{
    struct bkt_state *st = b->state;
    if (!cell_ref_ok(st, c, ref))
        return; /* only a damaged file gets here */
    uint64_t *hdr = (uint64_t *)cell_at(st, c, ref);
    uint64_t used = data_hdr(st, c)->used;
    if (!(*hdr & CELL_OCCUPIED) || used == 0)
        return;
    *hdr = 0;
    cells_set_used(b, c, used - 1);
    stor_file_touch(st->data[c]);
}

static void release_shadow(struct bkt *b, uint64_t slot, uint64_t gen)
{
    struct bkt_state *st = b->state;
    if (idx_hdr(st)->gen != gen || slot >= st->cap)
        return; /* a grow left the shadow behind in the old file */
    struct bkt_entry *e = &st->entries[slot];
    if (!(e->state & ENTRY_SHADOW))
        return;
    entry_write_begin(e);
    entry_write_end_sum(e, TAG_FREE, 0, 0);
    stor_file_touch(st->index);
}

/* Releases the first n items. */
static void release_head(struct bkt *b, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        const struct pend_item *it = &b->pend[i];
        if (it->kind == PEND_CELL)
            release_cell(b, it->cls, it->a);
        else
            release_shadow(b, it->a, it->gen);
    }
    memmove(b->pend, b->pend + n, (b->npend - n) * sizeof(*b->pend));
    b->npend -= n;
    b->pend_base += n;
}

void pend_release_ready(struct bkt *b)
{
    if (b->ctx->durable || !b->npend)
        return;
    uint64_t ready = bm_load_acq(&b->ready_seq);
    if (ready > b->pend_base)
        release_head(b, ready - b->pend_base < b->npend ? ready - b->pend_base : b->npend);
}

void pend_release_epoch(struct bkt *b, uint64_t epoch)
{
    uint64_t n = 0;
    while (n < b->npend && b->pend[n].epoch <= epoch)
        n++;
    if (n && b->state)
        release_head(b, n);
}

void pend_release_all(struct bkt *b)
{
    if (b->npend && b->state)
        release_head(b, b->npend);
}

void pend_free(struct bkt *b)
{
    bm_free(b->pend);
    b->pend = NULL;
    b->npend = b->pend_cap = 0;
}
