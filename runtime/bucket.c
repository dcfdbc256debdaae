/*
 * bucket.c — one shard: probing, data cells, grows, deferred reuse of freed cells.
 *
 * Invariants (bucket mutex held by the only writer; readers hold a read-side section):
 *  I1. A key occupies at most one slot of the current index, inside its window
 *      [home, home + min(max_search, cap)) mod cap. Lookups scan the window up to the file's max_disp (the
 *      largest displacement ever placed in it) and never stop at a free slot, so deletes need no tombstones.
 *  I2. Inserts place keys Robin Hood style: a new key takes the slot of an entry closer to its own home, and
 *      that entry moves further along, so displacements stay short and the index fills to a high load
 *      before a window overflows. Entries only ever move FORWARD (in probe order), and a move writes the
 *      destination before it overwrites the source, so a reader scanning forward meets a moving entry at
 *      least once. max_disp is raised before any entry goes further than it; a reader that misses
 *      re-reads max_disp and rescans if it grew meanwhile. Deletes just free the slot (no backward shift:
 *      that would move entries against the readers' direction).
 *  I2b. An index grow rehashes into a new file, publishes a new bkt_state with one pointer store, and
 *      destroys the old file one grace period later; readers still on the old state see a frozen copy.
 *  I3. A data cell is immutable while an entry refers to it: a new value always goes to a fresh cell and
 *      the old cell is freed only after a grace period (free ring), so a zero-copy reader's bytes never
 *      change under it.
 *  I4. A write is all-or-nothing: every step that can fail (grow the index, create or grow a data file,
 *      allocate a cell) happens before the first store into a live entry; the commit itself cannot fail.
 *  I5. An entry's data ref names the data file's pow2 at allocation; a reader whose state has an older,
 *      smaller file reloads the state (the writer published the new one before writing that ref).
 *
 * A grow's steps:  build new file beside the old  ->  copy / rehash  ->  rcu_assign(state)
 *                  ->  (grace period)  ->  munmap + close + unlink old file, free old state.
 */
#include "runtime/bucket.h"

#include "common/bm_mem.h"
#include "runtime/snapshot.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define MAX_INDEX_CAP (1ull << 36)
#define MAX_DATA_POW2 40
#define ALLOC_SCAN 512       /* cells a data allocation scans before it grows the file instead */
#define SNAPSHOT_TRIES 4     /* lock-free snapshot attempts before bm_foreach takes the bucket lock */
#define ENTRIES_PER_PAGE (STOR_PAGE / sizeof(struct bkt_entry))

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline struct idx_header *idx_hdr(const struct bkt_state *st) { return stor_header(st->index); }

static inline uint64_t window(const struct bkt_ctx *ctx, uint64_t cap)
{
    return ctx->max_search < cap ? ctx->max_search : cap;
}

static inline uint8_t *cell_at(const struct bkt_state *st, unsigned c, uint64_t ref)
{
    uint64_t i = DATA_REF_OFF(ref) << (st->data_pow2[c] - DATA_REF_POW2(ref));
    return stor_cell(st->data[c], i);
}

/* Whether an occupied cell's elements match the checksum in its header. */
static inline bool cell_sum_ok(const uint8_t *cell, size_t bytes)
{
    return (uint32_t)(*(const uint64_t *)cell >> 32) == cell_sum(cell + CELL_HEADER, bytes);
}

/* A data ref (of a ring entry, undo record or entry) that names a cell the files actually have. */
static bool cell_ref_ok(const struct bkt_state *st, uint64_t cls, uint64_t ref)
{
    if (cls >= BKT_NCLASS || !st->data[cls] || DATA_REF_POW2(ref) > st->data_pow2[cls])
        return false;
    return (DATA_REF_OFF(ref) << (st->data_pow2[cls] - DATA_REF_POW2(ref))) < st->data[cls]->ncells;
}

/* ------------------------------------------------------------------------------------------------------ */
/* States                                                                                                  */

static struct bkt_state *state_clone(const struct bkt_state *st)
{
    struct bkt_state *n = bm_aligned_zalloc(BM_CACHELINE, sizeof(*n));
    if (n && st) {
        *n = *st;
        n->retired = NULL;
    }
    return n;
}

/* A spare leaves the pool: a prepared (mapped) one no longer counts against SPARE_BUDGET_BYTES. */
static void spare_uncount(struct bkt *b, struct stor_file *f)
{
    if (f && f->base)
        bm_sub_rlx(&b->ctx->spare_bytes, f->map_len);
}

/* Stores f in a free spare place of its kind; with none free, the file it displaces is removed. */
static void put_spare(struct bkt *b, unsigned slot, struct stor_file *f)
{
    for (unsigned i = 0; i + 1 < SPARES; i++) {
        struct stor_file *expected = NULL;
        if (__atomic_compare_exchange_n(&b->spare[slot][i], &expected, f, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return;
    }
    struct stor_file *old = __atomic_exchange_n(&b->spare[slot][SPARES - 1], f, __ATOMIC_ACQ_REL);
    spare_uncount(b, old);
    stor_file_destroy(old, true);
}

/* Takes a spare of kind slot, preferring one already prepared for ncells cells; NULL if none. Files are
 * only looked at once owned (exchanged out): the call_rcu thread may displace and destroy a stored one. */
static struct stor_file *take_spare(struct bkt *b, unsigned slot, uint64_t ncells)
{
    struct stor_file *got[SPARES], *best = NULL;
    for (unsigned i = 0; i < SPARES; i++) {
        got[i] = __atomic_exchange_n(&b->spare[slot][i], NULL, __ATOMIC_ACQ_REL);
        if (got[i] && (!best || (got[i]->base && got[i]->ncells == ncells)))
            best = got[i];
    }
    for (unsigned i = 0; i < SPARES; i++)
        if (got[i] && got[i] != best)
            put_spare(b, slot, got[i]);
    return best;
}

static uint64_t next_index_cap(uint64_t cap);

static void keep_spare_prepared(struct bkt *b, unsigned slot, struct stor_file *f)
{
    stor_file_unmap(f);
    rcu_glue_read_lock();
    const struct bkt_state *st = rcu_glue_deref(b->state);
    uint64_t next = 0;
    unsigned flags = b->ctx->file_flags | STOR_POPULATE;
    if (st && slot == SPARE_INDEX) {
        next = next_index_cap(st->cap);
        flags |= STOR_RANDOM;
    } else if (st && st->data[slot - 1]) {
        next = 2ull << st->data_pow2[slot - 1];
    }
    rcu_glue_read_unlock();
    uint64_t len = next ? f->header_bytes + next * f->cell_size : 0;
    bool prepared = false;
    if (next && bm_add_rlx(&b->ctx->spare_bytes, len) + len <= SPARE_BUDGET_BYTES) {
        prepared = stor_file_recycle(f, next, flags) == 0;
        if (!prepared)
            bm_sub_rlx(&b->ctx->spare_bytes, len);
    } else if (next) {
        bm_sub_rlx(&b->ctx->spare_bytes, len);
    }
    if (!prepared)
        (void)stor_file_empty(f); /* new_file recycles it when needed; a failure only costs disk space */
    put_spare(b, slot, f);
}

static void keep_spare(struct bkt *b, unsigned slot, struct stor_file *f)
{
    (void)stor_file_empty(f);
    put_spare(b, slot, f);
}

/* Runs on the call_rcu thread: no reader can still use old->retired, so it becomes the bucket's spare,
 * already zeroed, sized and mapped for the grow that will most likely come next. The writer of that grow
 * then finds its file ready and does not wait for the disk (ARCHITECTURE §6: a grow's file prepared ahead
 * of need). A guess that turns out wrong costs one more recycle at grow time. */
static void state_free_cb(rcu_glue_head *h)
{
    rcu_glue_callback_enter(h);
    struct bkt_state *old = caa_container_of(h, struct bkt_state, rcu);
    struct stor_file *f = old->retired;
    if (f) {
        struct bkt *b = old->owner;
        keep_spare_prepared(b, old->retired_slot, f);
    }
    bm_free(old);
}

/* Publishes next in place of the current state; `replaced` (a file of the current state that next does
 * not use) is recycled with the current state after a grace period. */
static void publish(struct bkt *b, struct bkt_state *next, struct stor_file *replaced, unsigned slot)
{
    struct bkt_state *cur = b->state;
    next->owner = b;
    rcu_glue_assign(b->state, next);
    if (cur) {
        cur->retired = replaced;
        cur->retired_slot = slot;
        rcu_glue_defer(&cur->rcu, state_free_cb);
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Files                                                                                                   */

/* A file for a new storage of kind `slot`: the bucket's recycled spare if it has one, else a new file. */
static int new_file(struct bkt *b, unsigned slot, uint32_t header, uint32_t cell, uint64_t ncells,
                    unsigned extra_flags, struct stor_file **out)
{
    struct bkt_ctx *ctx = b->ctx;
    unsigned flags = ctx->file_flags | extra_flags;
    struct stor_file *f = take_spare(b, slot, ncells);
    spare_uncount(b, f);
    if (f && f->base && f->ncells == ncells && f->cell_size == cell) {
        *out = f; /* prepared ahead by state_free_cb: zeroed, sized, mapped */
        return 0;
    }
    if (f) {
        stor_file_unmap(f);
        if (f->cell_size == cell && stor_file_recycle(f, ncells, flags) == 0) {
            *out = f;
            return 0;
        }
        stor_file_destroy(f, true);
    }
    char name[96], tag[32];
    if (slot == SPARE_INDEX)
        snprintf(tag, sizeof(tag), "b%u-idx", b->ix);
    else
        snprintf(tag, sizeof(tag), "b%u-d%u", b->ix, slot - 1);
    stor_drives_name(ctx->drives, tag, name, sizeof(name));
    uint32_t d = stor_drives_pick(ctx->drives);
    return stor_file_create(ctx->drives->dirs[d], name, (int)d, header, cell, ncells, flags, out);
}

static uint64_t random_seed(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof(s), 0) != sizeof(s))
        s = now_ns() * 0x9E3779B97F4A7C15ull;
    return s;
}

static int create_index(struct bkt *b)
{
    struct stor_file *f;
    uint64_t cap = ENTRIES_PER_PAGE;
    int err = new_file(b, SPARE_INDEX, IDX_HEADER_BYTES, sizeof(struct bkt_entry), cap, STOR_RANDOM, &f);
    if (err)
        return err;
    struct bkt_state *st = state_clone(NULL);
    if (!st) {
        stor_file_destroy(f, true);
        return -ENOMEM;
    }
    struct idx_header *h = stor_header(f);
    h->gen = bm_add_rlx(&b->ctx->next_gen, 1);
    h->format = IDX_FORMAT;
    h->elem_size = b->ctx->elem_size;
    h->capacity = cap;
    h->seed = random_seed();
    h->bucket = b->ix;
    h->max_search = b->ctx->max_search;
    h->undo.cell_cls = UNDO_NO_CELL;
    bm_fence_rel();
    h->magic = IDX_MAGIC; /* complete */
    st->index = f;
    st->entries = stor_cell(f, 0);
    st->cap = cap;
    st->seed = h->seed;
    stor_file_touch(f);
    publish(b, st, NULL, 0);
    return 0;
}

/* Upstream grows by 10% (page-rounded) to keep disk use tight. Below SMALL_INDEX entries (64 KiB) a 10%
 * step is a single page and each grow costs a file recycle, so small indexes double instead. */
#define SMALL_INDEX 1024u

static uint64_t next_index_cap(uint64_t cap)
{
    if (cap < SMALL_INDEX)
        return cap * 2;
    uint64_t t = cap * 110 / 100;
    if (t <= cap)
        t = cap + 1;
    return (t + ENTRIES_PER_PAGE - 1) / ENTRIES_PER_PAGE * ENTRIES_PER_PAGE;
}

static inline uint64_t disp_of(const uint64_t k[4], uint64_t seed, uint64_t cap, uint64_t j)
{
    uint64_t home = entry_home(entry_hash(k, seed), cap);
    return j >= home ? j - home : j + cap - home;
}

/* Rehashes every entry of src into the empty index dst (same seed), Robin Hood placement (I2).
 * 0, or -1 if some entry found no slot inside its window. */
static int rehash(const struct bkt_ctx *ctx, const struct bkt_state *src, struct bkt_entry *dst, uint64_t cap,
                  uint64_t *max_disp)
{
    uint64_t win = window(ctx, cap), md = 0;
    for (uint64_t i = 0; i < src->cap; i++) {
        const struct bkt_entry *e = &src->entries[i];
        uint64_t s = bm_load_rlx(&e->state);
        if (entry_tag(s) == TAG_FREE)
            continue;
        struct bkt_entry carry = *e; /* unpublished destination: plain copies */
        carry.state = s & ~ENTRY_BUSY;
        uint64_t j = entry_home(entry_hash(carry.key, src->seed), cap), dc = 0;
        for (;;) {
            if (dc >= win)
                return -1;
            if (entry_tag(dst[j].state) == TAG_FREE) {
                dst[j] = carry;
                md = dc > md ? dc : md;
                break;
            }
            uint64_t dj = disp_of(dst[j].key, src->seed, cap, j);
            if (dj < dc) {
                struct bkt_entry t = dst[j];
                dst[j] = carry;
                carry = t;
                md = dc > md ? dc : md;
                dc = dj;
            }
            j = j + 1 == cap ? 0 : j + 1;
            dc++;
        }
    }
    *max_disp = md;
    return 0;
}

static int grow_index(struct bkt *b)
{
    struct bkt_ctx *ctx = b->ctx;
    struct bkt_state *st = b->state;
    uint64_t t0 = now_ns(), cap = st->cap;
    int err;
    for (;;) {
        cap = next_index_cap(cap);
        if (cap > MAX_INDEX_CAP) {
            err = BM_ENOSPACE;
            break;
        }
        struct stor_file *f;
        err = new_file(b, SPARE_INDEX, IDX_HEADER_BYTES, sizeof(struct bkt_entry), cap, STOR_RANDOM | STOR_POPULATE,
                       &f);
        if (err)
            break;
        uint64_t md;
        if (rehash(ctx, st, stor_cell(f, 0), cap, &md) != 0) {
            keep_spare(b, SPARE_INDEX, f);
            bm_add_rlx(&ctx->ctr->index_failed_grows, 1);
            continue;
        }
        struct bkt_state *next = state_clone(st);
        if (!next) {
            stor_file_destroy(f, true);
            err = -ENOMEM;
            break;
        }
        struct idx_header *h = stor_header(f);
        memcpy(h, idx_hdr(st), sizeof(*h));
        h->magic = 0;
        h->gen = bm_add_rlx(&ctx->next_gen, 1);
        h->capacity = cap;
        h->max_disp = md;
        bm_fence_rel();
        h->magic = IDX_MAGIC; /* complete: from here on this file is the bucket's newest */
        if (ctx->durable_grows && (err = stor_file_sync(f))) {
            stor_file_destroy(f, true);
            bm_free(next);
            break;
        }
        next->index = f;
        next->entries = stor_cell(f, 0);
        next->cap = cap;
        stor_file_touch(f);
        publish(b, next, st->index, SPARE_INDEX);
        bm_add_rlx(&ctx->ctr->index_grows, 1);
        bm_add_rlx(&ctx->ctr->grow_ns, now_ns() - t0);
        return 0;
    }
    bm_add_rlx(&ctx->ctr->grow_errors, 1);
    return err;
}

static unsigned initial_data_pow2(uint32_t cell)
{
    unsigned p = 5; /* 32 cells, as upstream, but at most 1 MiB and at least one page of cells */
    while (p > 0 && ((uint64_t)cell << p) > (1u << 20))
        p--;
    while (((uint64_t)cell << p) < STOR_PAGE)
        p++;
    return p;
}

/* Creates data file c, or doubles it, moving cell i to i << 1 (I5). */
static int grow_data(struct bkt *b, unsigned c)
{
    struct bkt_ctx *ctx = b->ctx;
    struct bkt_state *st = b->state;
    struct stor_file *old = st->data[c];
    uint32_t cell = ctx->data_cell_size[c];
    uint64_t t0 = now_ns();
    unsigned pow2 = old ? st->data_pow2[c] + 1u : initial_data_pow2(cell);
    int err;
    if (pow2 > MAX_DATA_POW2) {
        err = BM_ENOSPACE;
        goto fail;
    }
    struct stor_file *f;
    err = new_file(b, SPARE_DATA(c), DATA_HEADER_BYTES, cell, 1ull << pow2, old ? STOR_POPULATE : 0, &f);
    if (err)
        goto fail;
    struct data_header *h = stor_header(f);
    h->gen = bm_add_rlx(&ctx->next_gen, 1);
    h->cls = c;
    h->elem_size = ctx->elem_size;
    h->pow2 = pow2;
    h->bucket = b->ix;
    if (old) {
        h->used = ((struct data_header *)stor_header(old))->used;
        for (uint64_t i = 0; i < old->ncells; i++) {
            const uint8_t *src = stor_cell(old, i);
            if (*(const uint64_t *)src & CELL_OCCUPIED)
                memcpy(stor_cell(f, i << 1), src, cell);
        }
    }
    bm_fence_rel();
    h->magic = DATA_MAGIC; /* complete */
    struct bkt_state *next = state_clone(st);
    if (!next || (ctx->durable_grows && (err = stor_file_sync(f)))) {
        stor_file_destroy(f, true);
        bm_free(next);
        if (!err)
            err = -ENOMEM;
        goto fail;
    }
    next->data[c] = f;
    next->data_pow2[c] = (uint8_t)pow2;
    stor_file_touch(f);
    b->cursor[c] = 1; /* after a doubling every odd cell is free */
    publish(b, next, old, SPARE_DATA(c));
    if (old)
        bm_add_rlx(&ctx->ctr->data_grows, 1);
    bm_add_rlx(&ctx->ctr->grow_ns, now_ns() - t0);
    return 0;
fail:
    bm_add_rlx(&ctx->ctr->grow_errors, 1);
    return err;
}

/* Test hooks (BM_TEST_FAULT=crash-after=N, crash-in-release=N): the N-th mutation, or the N-th release of
 * a freed cell, kills the process halfway through, between two stores that recovery must put together,
 * so crash tests reach the states a random SIGKILL rarely hits. Zero (the normal case) costs one
 * predictable branch. */
static inline void test_crash_point(uint64_t *countdown)
{
    if (bm_unlikely(bm_load_rlx(countdown)) && __atomic_sub_fetch(countdown, 1, __ATOMIC_RELAXED) == 0)
        raise(SIGKILL);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Data cells and their deferred reuse                                                                     */

static inline struct data_header *data_hdr(const struct bkt_state *st, unsigned c)
{
    return stor_header(st->data[c]);
}

static void set_used(struct bkt *b, unsigned c, uint64_t used)
{
    data_hdr(b->state, c)->used = used;
    bm_store_rlx(&b->used[c], used);
}

/* Finds a free cell of class c without claiming it (the commit claims it, under the undo record). */
static int find_cell(struct bkt *b, unsigned c, uint64_t *ref)
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
            b->cursor[c] = (uint32_t)(i + 1);
            *ref = DATA_REF(st->data_pow2[c], i);
            return 0;
        }
    }
    b->cursor[c] = (uint32_t)i;
    return -1;
}

/* Releases the cell at the ring's head and advances the head. The release record makes the two stores
 * (cell header, used count) replayable: see bkt_adopt(). */
static void release_head(struct bkt *b)
{
    struct idx_header *h = idx_hdr(b->state);
    uint32_t slot = (uint32_t)(h->free_head % FREE_RING);
    unsigned c = (unsigned)h->free_ring[slot].cls;
    uint64_t *hdr = (uint64_t *)cell_at(b->state, c, h->free_ring[slot].ref);
    uint64_t used = data_hdr(b->state, c)->used;
    if (bm_unlikely(!(*hdr & CELL_OCCUPIED) || used == 0)) {
        h->free_head++; /* only a damaged file gets here; never make used wrap */
        return;
    }
    h->release.used = used;
    bm_fence_rel();
    bm_store_rlx(&h->release.head, h->free_head + 1);
    bm_fence_rel();
    *hdr = 0;
    test_crash_point(&b->ctx->crash_release_countdown);
    set_used(b, c, used - 1);
    stor_file_touch(b->state->data[c]);
    h->free_head++;
    bm_fence_rel();
    bm_store_rlx(&h->release.head, 0);
}

static void reclaim_cb(rcu_glue_head *h)
{
    rcu_glue_callback_enter(h);
    struct bkt *b = caa_container_of(h, struct bkt, reclaim_rcu);
    bm_store_rel(&b->reclaim_upto, b->reclaim_target);
    bm_store_rel(&b->reclaim_inflight, 0);
}

/* Frees ring entries up to `upto`, whose grace period has elapsed. */
static void reclaim_to(struct bkt *b, uint64_t upto)
{
    struct idx_header *h = idx_hdr(b->state);
    while (h->free_head < upto)
        release_head(b);
}

static void reclaim_ready(struct bkt *b)
{
    if (b->state)
        reclaim_to(b, bm_load_acq(&b->reclaim_upto));
}

/* Waits for readers and frees everything in the ring. The caller is a writer: never in a read section. */
static void reclaim_all_now(struct bkt *b)
{
    rcu_glue_synchronize();
    reclaim_to(b, idx_hdr(b->state)->free_tail);
}

static void defer_free(struct bkt *b, unsigned c, uint64_t ref)
{
    struct idx_header *h = idx_hdr(b->state);
    /* make_ring_room() ran before the commit began: there is a free ring slot. */
    uint32_t slot = (uint32_t)(h->free_tail % FREE_RING);
    h->free_ring[slot].cls = c;
    h->free_ring[slot].ref = ref;
    h->free_tail++;
    if (!bm_load_acq(&b->reclaim_inflight) && h->free_tail - bm_load_rlx(&b->reclaim_upto) >= FREE_RING / 4) {
        bm_store_rlx(&b->reclaim_inflight, 1);
        b->reclaim_target = h->free_tail;
        rcu_glue_defer(&b->reclaim_rcu, reclaim_cb);
    }
}

/* A commit may push one cell on the ring; make sure it will not have to wait for a grace period there. */
static void make_ring_room(struct bkt *b)
{
    struct idx_header *h = idx_hdr(b->state);
    if (h->free_tail - h->free_head == FREE_RING)
        reclaim_all_now(b);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Undo record (crash consistency, see bucket.h)                                                           */

static void undo_begin(struct bkt *b, const uint64_t *slots, uint32_t n, unsigned cls, uint64_t ref)
{
    struct bkt_state *st = b->state;
    struct idx_header *h = idx_hdr(st);
    struct undo_rec *u = &h->undo;
    u->nslots = n;
    for (uint32_t i = 0; i < n; i++) {
        u->slots[i] = slots[i];
        u->old[i] = st->entries[slots[i]];
    }
    u->cell_cls = cls;
    u->cell_ref = ref;
    u->cell_used = cls == UNDO_NO_CELL ? 0 : data_hdr(st, cls)->used;
    u->count = h->count;
    u->free_tail = h->free_tail;
    /* The record must be complete before it is armed, and armed before the first live store. */
    bm_fence_rel();
    bm_store_rlx(&u->active, 1);
    bm_fence_rel();
}

static void undo_end(struct bkt *b)
{
    bm_fence_rel();
    bm_store_rlx(&idx_hdr(b->state)->undo.active, 0);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Readers                                                                                                 */

void bkt_read_begin(struct bkt *b)
{
#ifdef BM_READER_RWLOCK
    pthread_rwlock_rdlock(&b->rw);
#else
    (void)b;
    rcu_glue_read_lock();
#endif
}

void bkt_read_end(struct bkt *b)
{
#ifdef BM_READER_RWLOCK
    pthread_rwlock_unlock(&b->rw);
#else
    (void)b;
    rcu_glue_read_unlock();
#endif
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

/* Resolves a copy of key k's entry, taken from st, into *v. A copy whose checksum does not match (an entry
 * or a data cell torn by a power loss, or damaged since) is BM_ECORRUPT, so nothing torn reaches a caller;
 * checking the entry first also keeps a damaged ref or length from sending us outside the files. A ref
 * newer than st is -EAGAIN: the bucket grew under a reader, whose st is stale (I5). Readers call it inside
 * a read-side section, where the cell cannot be reused; writers under the bucket lock. */
static inline __attribute__((always_inline)) int resolve(const struct bkt_state *st, const struct bkt_ctx *ctx,
                                                         const uint64_t k[4], const struct entry_snap *s,
                                                         struct bkt_val *v)
{
    if (bm_unlikely(!entry_sum_ok(s->state, k, s->rc, s->p[0], s->p[1])))
        return BM_ECORRUPT;
    decode_value(s, v);
    if (entry_tag(s->state) != TAG_DATA)
        return 0;
    if (bm_unlikely(v->n > ctx->max_elems))
        return BM_ECORRUPT;
    unsigned c = size_class(v->n);
    if (!st->data[c] || DATA_REF_POW2(s->p[0]) > st->data_pow2[c])
        return -EAGAIN;
    if (bm_unlikely(!cell_ref_ok(st, c, s->p[0])))
        return BM_ECORRUPT;
    const uint8_t *cell = cell_at(st, c, s->p[0]);
    if (bm_unlikely(!(*(const uint64_t *)cell & CELL_OCCUPIED) || !cell_sum_ok(cell, (size_t)v->n * ctx->elem_size)))
        return BM_ECORRUPT;
    v->elems = cell + CELL_HEADER;
    return 0;
}

int bkt_lookup(struct bkt *b, const uint64_t k[4], struct bkt_val *out)
{
    const struct bkt_state *st = rcu_glue_deref(b->state);
    uint64_t retries = 0;
    int rc = BM_ENOTFOUND;
    while (st) {
        uint64_t cap = st->cap, home = entry_home(entry_hash(k, st->seed), cap);
        uint64_t *mdp = &idx_hdr(st)->max_disp, md = bm_load_acq(mdp), w = window(b->ctx, cap);
        struct entry_snap s;
        uint64_t d = 0, win;
        __builtin_prefetch(&st->entries[home]);
    scan:
        win = md + 1 < w ? md + 1 : w;
        for (d = 0; d < win; d++) {
            uint64_t j = home + d >= cap ? home + d - cap : home + d;
            if (entry_read_if_key(&st->entries[j], k, &s, &retries))
                break;
        }
        if (d == win) {
            /* I2: an entry may have moved past our bound while we scanned. */
            uint64_t md2 = bm_load_acq(mdp);
            if (md2 != md) {
                md = md2;
                goto scan;
            }
            break;
        }
        rc = resolve(st, b->ctx, k, &s, out);
        if (bm_unlikely(rc == -EAGAIN)) {
            const struct bkt_state *cur = rcu_glue_deref(b->state);
            if (cur != st) {
                st = cur; /* I5: the writer published a newer state first */
                continue;
            }
            rc = BM_ECORRUPT; /* a ref no state can resolve: damaged file (bmctl verify) */
        }
        break;
    }
    if (bm_unlikely(retries))
        bm_add_rlx(&b->ctx->ctr->reader_retries, retries);
    return rc;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Writers                                                                                                 */

static void wlock(struct bkt *b)
{
    pthread_mutex_lock(&b->lock);
#ifdef BM_READER_RWLOCK
    pthread_rwlock_wrlock(&b->rw);
#endif
}

static void wunlock(struct bkt *b)
{
#ifdef BM_READER_RWLOCK
    pthread_rwlock_unlock(&b->rw);
#endif
    pthread_mutex_unlock(&b->lock);
}

/* Marks the start / end of a mutation of live entries, for lock-free bucket snapshots. */
static inline void mutation_begin(struct bkt *b)
{
    bm_store_rlx(&b->wseq, b->wseq + 1);
    bm_fence_rel();
}

static inline void mutation_end(struct bkt *b) { bm_store_rel(&b->wseq, b->wseq + 1); }

/* k's slot in the current index, or -1. */
static int64_t find(const struct bkt *b, const uint64_t k[4])
{
    const struct bkt_state *st = b->state;
    uint64_t cap = st->cap, home = entry_home(entry_hash(k, st->seed), cap);
    uint64_t win = window(b->ctx, cap), md = idx_hdr(st)->max_disp;
    if (md + 1 < win)
        win = md + 1;
    for (uint64_t d = 0; d < win; d++) {
        uint64_t j = home + d >= cap ? home + d - cap : home + d;
        const struct bkt_entry *e = &st->entries[j];
        if (entry_tag(e->state) != TAG_FREE && key_eq(e->key, k))
            return (int64_t)j;
    }
    return -1;
}

/* Plans the Robin Hood insertion of new key k (I2): path[0] is where k goes, path[i] receives the entry
 * now at path[i-1], and the last slot is free. Returns the path length, or 0 if the window cannot take k
 * without pushing an entry out of its own window (grow the index). *md: the largest displacement placed. */
static uint32_t rh_plan(const struct bkt *b, const uint64_t k[4], uint64_t *path, uint64_t *md)
{
    const struct bkt_state *st = b->state;
    uint64_t cap = st->cap, win = window(b->ctx, cap);
    uint64_t j = entry_home(entry_hash(k, st->seed), cap), dc = 0, m = 0;
    uint32_t n = 0;
    for (uint64_t steps = 0; steps < cap && dc < win; steps++) {
        const struct bkt_entry *e = &st->entries[j];
        if (entry_tag(e->state) == TAG_FREE) {
            path[n++] = j;
            *md = dc > m ? dc : m;
            return n;
        }
        uint64_t dj = disp_of(e->key, st->seed, cap, j);
        if (dj < dc) {
            if (n == RH_MAX_PATH - 1)
                return 0;
            path[n++] = j;
            m = dc > m ? dc : m;
            dc = dj;
        }
        j = j + 1 == cap ? 0 : j + 1;
        dc++;
    }
    return 0;
}

/* Copies entry src over dst under dst's seqcount (a Robin Hood move). */
static void entry_move(struct bkt_entry *dst, const struct bkt_entry *src)
{
    entry_write_begin(dst);
    for (int i = 0; i < 4; i++)
        entry_set(dst, key[i], src->key[i]);
    entry_set(dst, rc, src->rc);
    entry_set(dst, p[0], src->p[0]);
    entry_set(dst, p[1], src->p[1]);
    entry_write_end_sum(dst, entry_tag(src->state), (uint32_t)(src->state >> 32));
}

static int ensure_state(struct bkt *b)
{
    if (b->state) {
        reclaim_ready(b);
        return 0;
    }
    return create_index(b);
}

/* Whether a stable entry (bucket lock held) still matches its checksum. */
static bool entry_intact(const struct bkt_entry *e)
{
    return entry_sum_ok(e->state, e->key, e->rc, e->p[0], e->p[1]);
}

/* The entry's current data cell, if any: class and ref. A damaged entry's ref may name another entry's
 * cell, so it owns none: overwriting or deleting it leaves its cell for bmctl verify to report. */
static int entry_cell(const struct bkt_state *st, const struct bkt_entry *e, unsigned *c, uint64_t *ref)
{
    if (entry_tag(e->state) != TAG_DATA || !entry_intact(e))
        return 0;
    *c = size_class((uint32_t)e->p[1]);
    *ref = e->p[0];
    return cell_ref_ok(st, *c, *ref);
}

static int write_locked(struct bkt *b, const uint64_t k[4], const void *elems, uint32_t n, uint64_t rc)
{
    struct bkt_ctx *ctx = b->ctx;
    bool need_data = n > 1 || (n == 1 && ctx->elem_size > ENTRY_INLINE_MAX);
    unsigned c = size_class(n);
    uint64_t ref = 0, path[RH_MAX_PATH], md = 0;
    uint32_t plen = 0;
    int64_t slot;
    int err = ensure_state(b);
    if (err)
        return err;
    bool retried_reclaim = false;
    for (;;) {
        slot = find(b, k);
        if (slot < 0 && (plen = rh_plan(b, k, path, &md)) == 0) {
            if ((err = grow_index(b)))
                return err;
            continue;
        }
        /* Data-file steps below never touch the index, so the plan stays valid. */
        if (!need_data)
            break;
        if (!b->state->data[c]) {
            if ((err = grow_data(b, c)))
                return err;
            continue;
        }
        if (find_cell(b, c, &ref) == 0)
            break;
        struct idx_header *h = idx_hdr(b->state);
        if (!retried_reclaim && h->free_tail != h->free_head) {
            /* Cells awaiting a grace period may be all that is missing: waiting is cheaper than a grow. */
            retried_reclaim = true;
            reclaim_all_now(b);
            continue;
        }
        if ((err = grow_data(b, c)))
            return err;
    }

    bool fresh = slot < 0;
    if (!fresh)
        path[0] = (uint64_t)slot;
    make_ring_room(b);

    /* Commit (I4: nothing below can fail). */
    struct bkt_state *st = b->state;
    undo_begin(b, path, fresh ? plen : 1, need_data ? c : UNDO_NO_CELL, ref);
    uint64_t p0 = 0, p1 = 0;
    unsigned tag;
    if (need_data) {
        uint8_t *cell = cell_at(st, c, ref);
        size_t bytes = (size_t)n * ctx->elem_size;
        memcpy(cell + CELL_HEADER, elems, bytes);
        *(uint64_t *)cell = CELL_OCCUPIED | (uint64_t)cell_sum(cell + CELL_HEADER, bytes) << 32;
        set_used(b, c, data_hdr(st, c)->used + 1);
        stor_file_touch(st->data[c]);
        tag = TAG_DATA;
        p0 = ref;
        p1 = n;
    } else if (n == 1) {
        uint64_t w[2] = {0, 0};
        memcpy(w, elems, ctx->elem_size);
        tag = TAG_INLINE;
        p0 = w[0];
        p1 = w[1];
    } else {
        tag = TAG_EMPTY;
    }
    struct bkt_entry *e = &st->entries[path[0]];
    unsigned oc;
    uint64_t oref;
    int had_cell = fresh ? 0 : entry_cell(st, e, &oc, &oref);
    mutation_begin(b);
    if (fresh) {
        struct idx_header *h = idx_hdr(st);
        if (md > h->max_disp) {
            bm_store_rlx(&h->max_disp, md); /* I2: before any entry moves past the old bound */
            bm_fence_rel();
        }
        for (uint32_t i = plen - 1; i > 0; i--)
            entry_move(&st->entries[path[i]], &st->entries[path[i - 1]]);
    }
    test_crash_point(&ctx->crash_countdown);
    entry_write_begin(e);
    if (fresh)
        for (int i = 0; i < 4; i++)
            entry_set(e, key[i], k[i]);
    entry_set(e, rc, rc);
    entry_set(e, p[0], p0);
    entry_set(e, p[1], p1);
    entry_write_end(e, tag);
    mutation_end(b);
    if (had_cell)
        defer_free(b, oc, oref);
    if (fresh) {
        idx_hdr(st)->count++;
        bm_add_rlx(&b->count, 1);
    }
    undo_end(b);
    stor_file_touch(st->index);
    return 0;
}

static int remove_locked(struct bkt *b, const uint64_t k[4])
{
    if (!b->state)
        return BM_ENOTFOUND;
    reclaim_ready(b);
    int64_t slot = find(b, k);
    if (slot < 0)
        return BM_ENOTFOUND;
    make_ring_room(b);
    struct bkt_state *st = b->state;
    struct bkt_entry *e = &st->entries[slot];
    unsigned oc;
    uint64_t oref;
    int had_cell = entry_cell(st, e, &oc, &oref);
    uint64_t us = (uint64_t)slot;
    undo_begin(b, &us, 1, UNDO_NO_CELL, 0);
    mutation_begin(b);
    entry_write_begin(e);
    entry_write_end(e, TAG_FREE);
    mutation_end(b);
    if (had_cell)
        defer_free(b, oc, oref);
    test_crash_point(&b->ctx->crash_countdown);
    idx_hdr(st)->count--;
    bm_sub_rlx(&b->count, 1);
    undo_end(b);
    stor_file_touch(st->index);
    return 0;
}

int bkt_upsert(struct bkt *b, const uint64_t k[4], const void *elems, uint32_t n, uint64_t rc)
{
    wlock(b);
    int err = write_locked(b, k, elems, n, rc);
    wunlock(b);
    return err;
}

int bkt_remove(struct bkt *b, const uint64_t k[4])
{
    wlock(b);
    int err = remove_locked(b, k);
    wunlock(b);
    return err;
}

int bkt_adjref(struct bkt *b, const uint64_t k[4], int delta, uint64_t *out)
{
    int err = BM_ENOTFOUND;
    wlock(b);
    if (b->state) {
        int64_t slot = find(b, k);
        if (slot >= 0) {
            struct bkt_entry *e = &b->state->entries[slot];
            uint64_t rc = e->rc;
            if (!entry_intact(e)) {
                err = BM_ECORRUPT; /* rewriting it would give damaged contents a valid checksum */
            } else if ((delta > 0 && rc == UINT64_MAX) || (delta < 0 && rc == 0)) {
                err = BM_EOVERFLOW;
            } else {
                rc = delta > 0 ? rc + 1 : rc - 1;
                uint64_t us = (uint64_t)slot;
                undo_begin(b, &us, 1, UNDO_NO_CELL, 0);
                mutation_begin(b);
                entry_write_begin(e);
                entry_set(e, rc, rc);
                entry_write_end(e, entry_tag(e->state));
                mutation_end(b);
                undo_end(b);
                stor_file_touch(b->state->index);
                if (out)
                    *out = rc;
                err = 0;
            }
        }
    }
    wunlock(b);
    return err;
}

int bkt_update(struct bkt *b, const uint64_t k[4], bm_update_fn fn, void *ctx)
{
    uint64_t small[64];
    void *copy = NULL;
    bm_value cur, out = {NULL, 0, 0};
    const bm_value *curp = NULL;
    int err = 0;
    wlock(b);
    if (b->state) {
        int64_t slot = find(b, k);
        if (slot >= 0) {
            const struct bkt_entry *e = &b->state->entries[slot];
            struct entry_snap s = {e->state, e->rc, {e->p[0], e->p[1]}};
            struct bkt_val v;
            if ((err = resolve(b->state, b->ctx, k, &s, &v))) {
                err = BM_ECORRUPT; /* fn is not called with a damaged value; insert or delete replace it */
                goto out;
            }
            /* fn may hand back cur's own elements; a grow during the write could retire their file, so
             * give fn a private copy. */
            size_t bytes = (size_t)v.n * b->ctx->elem_size;
            copy = bytes <= sizeof(small) ? small : bm_malloc(bytes);
            if (!copy) {
                err = -ENOMEM;
                goto out;
            }
            if (bytes)
                memcpy(copy, v.elems, bytes);
            cur = (bm_value){v.n ? copy : NULL, v.n, v.rc};
            curp = &cur;
        }
    }
    int act = fn(curp, &out, ctx);
    if (act < 0) {
        err = act;
    } else if (act == BM_WRITE) {
        if (out.n > b->ctx->max_elems)
            err = BM_ETOOBIG;
        else if (out.n && !out.elems)
            err = BM_EINVAL;
        else
            err = write_locked(b, k, out.elems, out.n, out.refcount);
    } else if (act == BM_DELETE) {
        err = curp ? remove_locked(b, k) : 0;
    } else if (act != BM_KEEP) {
        err = BM_EINVAL;
    }
out:
    wunlock(b);
    if (copy != small)
        bm_free(copy);
    return err;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Snapshots, files, life cycle                                                                            */

/* Copies every intact entry of st and counts the damaged ones in *damaged; -EAGAIN if st went stale under
 * us (a data ref newer than st). */
static int copy_state(const struct bkt *b, const struct bkt_state *st, struct snap_buf *buf, uint64_t *damaged)
{
    uint32_t es = b->ctx->elem_size;
    for (uint64_t i = 0; i < st->cap; i++) {
        const struct bkt_entry *e = &st->entries[i];
        for (;;) {
            uint64_t s1 = bm_load_acq(&e->state);
            if (entry_tag(s1) == TAG_FREE)
                break;
            if (s1 & ENTRY_BUSY) {
                __builtin_ia32_pause();
                continue;
            }
            uint64_t k[4];
            struct entry_snap s;
            entry_load_key(e, k);
            s.rc = bm_load_rlx(&e->rc);
            s.p[0] = bm_load_rlx(&e->p[0]);
            s.p[1] = bm_load_rlx(&e->p[1]);
            bm_fence_acq();
            if (bm_load_rlx(&e->state) != s1)
                continue;
            s.state = s1;
            struct bkt_val v;
            int err = resolve(st, b->ctx, k, &s, &v);
            if (err == -EAGAIN)
                return err;
            if (err) {
                (*damaged)++; /* left out of the walk, which reports BM_ECORRUPT at its end */
                break;
            }
            err = snap_append(buf, k, v.rc, v.n, v.n * es, v.elems);
            if (err)
                return err;
            break;
        }
    }
    return 0;
}

int bkt_snapshot(struct bkt *b, struct snap_buf *buf, uint64_t *damaged)
{
    size_t start = buf->len;
    for (int t = 0; t < SNAPSHOT_TRIES; t++) {
        uint64_t s1 = bm_load_acq(&b->wseq), bad = 0;
        if (s1 & 1)
            continue;
        bkt_read_begin(b);
        const struct bkt_state *st = rcu_glue_deref(b->state);
        int err = st ? copy_state(b, st, buf, &bad) : 0;
        bkt_read_end(b);
        bm_fence_acq();
        if (err == -ENOMEM)
            return err;
        if (!err && bm_load_rlx(&b->wseq) == s1) {
            *damaged += bad;
            return 0;
        }
        buf->len = start;
    }
    /* Writers keep changing this bucket: take one consistent copy under its lock. */
    wlock(b);
    int err = b->state ? copy_state(b, b->state, buf, damaged) : 0;
    wunlock(b);
    return err;
}

void bkt_for_each_file(struct bkt *b, void (*fn)(struct stor_file *f, bool is_index, void *arg), void *arg)
{
    rcu_glue_read_lock();
    const struct bkt_state *st = rcu_glue_deref(b->state);
    if (st) {
        fn(st->index, true, arg);
        for (unsigned c = 0; c < BKT_NCLASS; c++)
            if (st->data[c])
                fn(st->data[c], false, arg);
    }
    rcu_glue_read_unlock();
}

int bkt_adopt(struct bkt *b, struct stor_file *index, struct stor_file *data[BKT_NCLASS])
{
    struct bkt_ctx *ctx = b->ctx;
    struct idx_header *h = stor_header(index);
    if (h->format != IDX_FORMAT)
        return BM_EVERSION;
    if (h->capacity != index->ncells || h->bucket != b->ix || h->elem_size != ctx->elem_size ||
        index->cell_size != sizeof(struct bkt_entry) || h->free_tail - h->free_head > FREE_RING ||
        h->undo.nslots > RH_MAX_PATH)
        return BM_ECORRUPT;
    struct bkt_state *st = state_clone(NULL);
    if (!st)
        return -ENOMEM;
    st->index = index;
    st->entries = stor_cell(index, 0);
    st->cap = index->ncells;
    st->seed = h->seed;
    for (unsigned c = 0; c < BKT_NCLASS; c++) {
        struct stor_file *f = data[c];
        if (!f)
            continue;
        struct data_header *dh = stor_header(f);
        if (dh->cls != c || dh->pow2 > MAX_DATA_POW2 || (1ull << dh->pow2) != f->ncells ||
            f->cell_size != ctx->data_cell_size[c] || dh->used > f->ncells) {
            bm_free(st);
            return BM_ECORRUPT;
        }
        st->data[c] = f;
        st->data_pow2[c] = (uint8_t)dh->pow2;
    }
    st->owner = b;
    b->state = st;
    struct undo_rec *u = &h->undo;
    if (u->active) {
        /* A mutation was cut short: put back every slot it touched, as it was. */
        for (uint32_t i = 0; i < u->nslots; i++) {
            if (u->slots[i] >= st->cap)
                continue;
            st->entries[u->slots[i]] = u->old[i];
            st->entries[u->slots[i]].state &= ~ENTRY_BUSY;
        }
        h->count = u->count;
        h->free_tail = u->free_tail;
        if (u->cell_cls != UNDO_NO_CELL && cell_ref_ok(st, u->cell_cls, u->cell_ref)) {
            *(uint64_t *)cell_at(st, u->cell_cls, u->cell_ref) = 0;
            data_hdr(st, u->cell_cls)->used = u->cell_used;
        }
        u->active = 0;
        bm_add_rlx(&ctx->ctr->undo_replayed, 1);
    }
    /* Nobody can be reading yet: every cell awaiting a grace period is free now. */
    if (h->release.head) {
        /* A release was cut short (release_head()): finish it from the used count it recorded. */
        uint32_t slot = (uint32_t)(h->free_head % FREE_RING);
        if (h->release.head == h->free_head + 1 && h->free_head < h->free_tail &&
            cell_ref_ok(st, h->free_ring[slot].cls, h->free_ring[slot].ref) && h->release.used > 0) {
            unsigned c = (unsigned)h->free_ring[slot].cls;
            *(uint64_t *)cell_at(st, c, h->free_ring[slot].ref) = 0;
            data_hdr(st, c)->used = h->release.used - 1;
            h->free_head++;
        }
        h->release.head = 0;
    }
    while (h->free_head < h->free_tail) {
        uint32_t slot = (uint32_t)(h->free_head % FREE_RING);
        if (cell_ref_ok(st, h->free_ring[slot].cls, h->free_ring[slot].ref))
            release_head(b);
        else
            h->free_head++;
    }
    for (unsigned c = 0; c < BKT_NCLASS; c++)
        if (st->data[c])
            bm_store_rlx(&b->used[c], data_hdr(st, c)->used);
    bm_store_rlx(&b->count, h->count);
    bm_store_rlx(&b->reclaim_upto, h->free_tail);
    stor_file_touch(index);
    return 0;
}

void bkt_quiesce(struct bkt *b)
{
    wlock(b);
    if (b->state)
        reclaim_to(b, idx_hdr(b->state)->free_tail);
    wunlock(b);
}

int bkt_init(struct bkt *b, struct bkt_ctx *ctx, uint32_t ix)
{
    memset(b, 0, sizeof(*b));
    b->ctx = ctx;
    b->ix = ix;
    if (pthread_mutex_init(&b->lock, NULL))
        return -ENOMEM;
#ifdef BM_READER_RWLOCK
    /* Writer-preferring, like Rust's std RwLock that upstream uses: a steady stream of readers cannot
     * starve a writer (glibc's default would let it). */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rwerr = pthread_rwlock_init(&b->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    if (rwerr) {
        pthread_mutex_destroy(&b->lock);
        return -ENOMEM;
    }
#endif
    return 0;
}

void bkt_fini(struct bkt *b)
{
    struct bkt_state *st = b->state;
    if (st) {
        /* No reader is left (the map is closing after a barrier): finish pending frees so the files hold
         * no cell that is marked used but referenced by nothing. */
        reclaim_to(b, idx_hdr(st)->free_tail);
        bool unlink_it = b->ctx->temporary;
        stor_file_destroy(st->index, unlink_it);
        for (unsigned c = 0; c < BKT_NCLASS; c++)
            stor_file_destroy(st->data[c], unlink_it);
        bm_free(st);
        b->state = NULL;
    }
    for (unsigned i = 0; i < 1 + BKT_NCLASS; i++)
        for (unsigned j = 0; j < SPARES; j++) {
            spare_uncount(b, b->spare[i][j]);
            stor_file_destroy(b->spare[i][j], true);
        }
#ifdef BM_READER_RWLOCK
    pthread_rwlock_destroy(&b->rw);
#endif
    pthread_mutex_destroy(&b->lock);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Inspection                                                                                              */

static void file_info(const struct stor_file *f, uint32_t cls, uint64_t used, bm_file_info *out)
{
    snprintf(out->name, sizeof(out->name), "%s", f->name);
    out->drive = (uint32_t)f->drive;
    out->cls = cls;
    out->cells = f->ncells;
    out->used = used;
    out->bytes = f->map_len;
}

int bkt_info(struct bkt *b, bm_bucket_info *out)
{
    memset(out, 0, sizeof(*out));
    out->bucket = b->ix;
    rcu_glue_read_lock();
    const struct bkt_state *st = rcu_glue_deref(b->state);
    if (st) {
        const struct idx_header *h = idx_hdr(st);
        out->allocated = 1;
        out->seed = st->seed;
        out->max_disp = bm_load_rlx(&h->max_disp);
        file_info(st->index, 0, bm_load_rlx(&b->count), &out->index);
        for (unsigned c = 0; c < BKT_NCLASS; c++)
            if (st->data[c])
                file_info(st->data[c], c, bm_load_rlx(&b->used[c]), &out->data[out->n_data++]);
    }
    rcu_glue_read_unlock();
    return 0;
}

/* Marks cell i of class c as referenced; 1 if it already was (two entries share a cell). */
static int mark_ref(uint8_t **seen, unsigned c, uint64_t i)
{
    int was = (seen[c][i >> 3] >> (i & 7)) & 1;
    seen[c][i >> 3] |= (uint8_t)(1u << (i & 7));
    return was;
}

void bkt_verify(struct bkt *b, bm_verify_report *r)
{
    wlock(b);
    struct bkt_state *st = b->state;
    if (!st) {
        wunlock(b);
        return;
    }
    struct bkt_ctx *ctx = b->ctx;
    struct idx_header *h = idx_hdr(st);
    uint8_t *seen[BKT_NCLASS] = {0};
    for (unsigned c = 0; c < BKT_NCLASS; c++)
        if (st->data[c] && !(seen[c] = bm_calloc((st->data[c]->ncells + 7) / 8, 1)))
            r->bad_cells++; /* out of memory: reported as unverifiable rather than clean */
    uint64_t occupied = 0, win = window(ctx, st->cap);
    for (uint64_t i = 0; i < st->cap; i++) {
        const struct bkt_entry *e = &st->entries[i];
        unsigned tag = entry_tag(e->state);
        if (tag == TAG_FREE)
            continue;
        occupied++;
        r->entries++;
        if ((e->state & ENTRY_BUSY) || !entry_intact(e))
            r->bad_entry_sums++;
        uint64_t d = disp_of(e->key, st->seed, st->cap, i);
        if (d >= win || d > h->max_disp || find(b, e->key) != (int64_t)i)
            r->misplaced++;
        if (e->rc == 0)
            r->zero_refcounts++;
        if (tag != TAG_DATA)
            continue;
        uint32_t n = (uint32_t)e->p[1];
        unsigned c = size_class(n);
        if (n > ctx->max_elems || !cell_ref_ok(st, c, e->p[0])) {
            r->bad_refs++;
            continue;
        }
        uint64_t ci = DATA_REF_OFF(e->p[0]) << (st->data_pow2[c] - DATA_REF_POW2(e->p[0]));
        const uint8_t *cell = stor_cell(st->data[c], ci);
        uint64_t hdr = *(const uint64_t *)cell;
        if (!(hdr & CELL_OCCUPIED) || (seen[c] && mark_ref(seen, c, ci)))
            r->bad_refs++;
        else if (!cell_sum_ok(cell, (size_t)n * ctx->elem_size))
            r->bad_cells++;
    }
    if (occupied != h->count)
        r->count_mismatches++;
    /* Cells awaiting reuse are legitimately unreferenced. */
    for (uint64_t p = h->free_head; p < h->free_tail; p++) {
        uint32_t slot = (uint32_t)(p % FREE_RING);
        uint64_t c = h->free_ring[slot].cls, ref = h->free_ring[slot].ref;
        if (cell_ref_ok(st, c, ref) && seen[c])
            mark_ref(seen, (unsigned)c, DATA_REF_OFF(ref) << (st->data_pow2[c] - DATA_REF_POW2(ref)));
    }
    for (unsigned c = 0; c < BKT_NCLASS; c++) {
        if (!st->data[c] || !seen[c])
            continue;
        uint64_t used = 0;
        for (uint64_t i = 0; i < st->data[c]->ncells; i++) {
            if (!(*(const uint64_t *)stor_cell(st->data[c], i) & CELL_OCCUPIED))
                continue;
            used++;
            if (!((seen[c][i >> 3] >> (i & 7)) & 1))
                r->orphan_cells++;
        }
        if (used != data_hdr(st, c)->used)
            r->count_mismatches++;
        bm_free(seen[c]);
    }
    wunlock(b);
}
