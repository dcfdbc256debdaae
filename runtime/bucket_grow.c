/*
 * bucket_grow.c — a bucket's files: creating the index, growing the index and the data files, publishing
 * the new state, and keeping replaced files as spares for the next grow.
 *
 * A grow's steps (bucket lock held):
 *   build the new file beside the old (a prepared spare, a recycled one, or a new file)
 *   -> copy (data: cell i to i << 1) or rehash (index, Robin Hood, shadowed entries left behind)
 *   -> header magic last -> rcu_assign(state) -> the old state goes on the map's deferral queue, and after a
 *      grace period, on the map's maintenance thread (state_free_cb, runtime/defer.h):
 *        the old file becomes a spare, or, when a checkpoint may name it, is pinned until a later
 *        checkpoint commits (runtime/checkpoint.c) and only then becomes a spare.
 * Nothing here syncs: a grown file becomes durable with the next checkpoint, which names it in its
 * manifest; until then recovery uses the pinned old file.
 */
#include "runtime/bucket_int.h"

#include "common/bm_mem.h"
#include "common/bm_probes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

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

static struct bkt_state *state_clone(const struct bkt_state *st)
{
    struct bkt_state *n = bm_aligned_zalloc(BM_CACHELINE, sizeof(*n));
    if (n && st) {
        *n = *st;
        n->retired = NULL;
        n->pin = NULL;
    }
    return n;
}

/* ---- spares ---- */

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
 * only looked at once owned (exchanged out): another thread may displace and destroy a stored one. */
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

/* No reader and no checkpoint needs f any more: it becomes a spare, already zeroed, sized and mapped for
 * the grow that most likely comes next (within SPARE_BUDGET_BYTES map-wide), so that grow's writer does
 * not wait for the disk. A guess that turns out wrong costs one more recycle at grow time. */
void grow_keep_spare(struct bkt *b, unsigned slot, struct stor_file *f)
{
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
    int64_t grown = bm_load_rlx(&b->ctx->grown_bytes);
    uint64_t extra = grown > 0 ? (uint64_t)grown / 4 * 5 : 0;
    uint64_t budget = SPARE_BUDGET_BYTES + (extra < SPARE_GROWN_MAX ? extra : SPARE_GROWN_MAX);
    bool prepared = false;
    if (next && bm_add_rlx(&b->ctx->spare_bytes, len) + len <= budget) {
        /* Regrown where it is mapped, the file's pages stay mapped: only the tail is new (stor_file.h). */
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

bool bkt_trim_spares(struct bkt *b)
{
    bool trimmed = false;
    if (!bm_load_acq(&b->spare))
        return false; /* never written since open: it has no spares (bucket.h) */
    for (unsigned i = 0; i < 1 + BKT_NCLASS; i++)
        for (unsigned j = 0; j < SPARES; j++) {
            struct stor_file *f = __atomic_exchange_n(&b->spare[i][j], NULL, __ATOMIC_ACQ_REL);
            if (!f)
                continue;
            if (f->base) {
                spare_uncount(b, f);
                (void)stor_file_empty(f); /* a failure only costs disk space */
                trimmed = true;
            }
            put_spare(b, i, f);
        }
    return trimmed;
}

void grow_drop_spares(struct bkt *b)
{
    for (unsigned i = 0; i < 1 + BKT_NCLASS; i++)
        for (unsigned j = 0; j < SPARES; j++) {
            struct stor_file *f = __atomic_exchange_n(&b->spare[i][j], NULL, __ATOMIC_ACQ_REL);
            spare_uncount(b, f);
            stor_file_destroy(f, true);
        }
}

/* ---- publishing ---- */

/* Runs on the map's maintenance thread (or at close), never on liburcu's call_rcu thread: recycling a file
 * is I/O. No reader can still use old->retired. */
static void state_free_cb(struct defer_node *n)
{
    struct bkt_state *old = caa_container_of(n, struct bkt_state, defer);
    struct stor_file *f = old->retired;
    if (f && old->pin) {
        struct bkt_ctx *ctx = old->owner->ctx;
        pthread_mutex_lock(&ctx->pin_lock);
        old->pin->next = ctx->pinned;
        ctx->pinned = old->pin;
        pthread_mutex_unlock(&ctx->pin_lock);
    } else if (f) {
        grow_keep_spare(old->owner, old->retired_slot, f);
    }
    bm_free(old);
}

/* Publishes next in place of the current state; `replaced` (a file of the current state that next does not
 * use) is released with the current state after a grace period, through `pin` when a checkpoint may name
 * it. */
static void publish(struct bkt *b, struct bkt_state *next, struct stor_file *replaced, unsigned slot,
                    struct pinned_file *pin)
{
    struct bkt_state *cur = b->state;
    const struct stor_file *made = slot == SPARE_INDEX ? next->index : next->data[slot - 1];
    bm_add_rlx(&b->ctx->grown_bytes, (int64_t)made->map_len - (replaced ? (int64_t)replaced->map_len : 0));
    next->owner = b;
    rcu_glue_assign(b->state, next);
    if (cur) {
        cur->retired = replaced;
        cur->retired_slot = slot;
        cur->retire_epoch = b->epoch;
        cur->pin = pin;
        if (pin) {
            pin->f = replaced;
            pin->owner = b;
            pin->retire_epoch = b->epoch;
            pin->slot = slot;
        }
        defer_push(&b->ctx->defer, &cur->defer, state_free_cb, replaced != NULL);
    }
}

/* A pin record for f when a checkpoint may name it (it was built before the current epoch), else NULL with
 * *err 0. */
static struct pinned_file *pin_for(struct bkt *b, const struct stor_file *f, int *err)
{
    *err = 0;
    if (!b->ctx->durable || !f || f->epoch >= b->epoch)
        return NULL;
    struct pinned_file *p = bm_calloc(1, sizeof(*p));
    if (!p)
        *err = -ENOMEM;
    return p;
}

/* ---- files ---- */

/* A file for a new storage of kind `slot`: the bucket's recycled spare if it has one, else a new file. */
static int new_file(struct bkt *b, unsigned slot, uint32_t header, uint32_t cell, uint64_t ncells,
                    unsigned extra_flags, struct stor_file **out)
{
    struct bkt_ctx *ctx = b->ctx;
    unsigned flags = ctx->file_flags | extra_flags;
    struct stor_file *f = take_spare(b, slot, ncells);
    spare_uncount(b, f);
    int err = 0;
    if (f && f->base && f->ncells == ncells && f->cell_size == cell)
        goto got; /* prepared ahead by grow_keep_spare: zeroed, sized, mapped */
    if (f) {
        if (f->cell_size == cell && stor_file_recycle(f, ncells, flags) == 0)
            goto got; /* prepared for another size, or emptied: regrown in place when still mapped */
        stor_file_destroy(f, true);
    }
    char name[96], tag[32];
    if (slot == SPARE_INDEX)
        snprintf(tag, sizeof(tag), "b%u-idx", b->ix);
    else
        snprintf(tag, sizeof(tag), "b%u-d%u", b->ix, slot - 1);
    stor_drives_name(ctx->drives, tag, name, sizeof(name));
    uint32_t d = stor_drives_pick(ctx->drives);
    if ((err = stor_file_create(ctx->drives->dirs[d], name, (int)d, header, cell, ncells, flags, &f)))
        return err;
    f->seq = strtoull(strrchr(name, '-') + 1, NULL, 10); /* "<prefix>-<tag>-<seq>.bm" */
got:
    f->epoch = b->epoch;
    *out = f;
    return 0;
}

static uint64_t random_seed(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof(s), 0) != sizeof(s))
        s = now_ns() * 0x9E3779B97F4A7C15ull;
    return s;
}

/* A fresh index belongs to no checkpoint yet: every slot may move until the next cut. */
static int movable_for(struct bkt *b, uint64_t cap, uint64_t **out)
{
    *out = NULL;
    if (!b->ctx->durable)
        return 0;
    *out = bm_calloc((cap + 63) / 64, sizeof(uint64_t));
    return *out ? 0 : -ENOMEM;
}

static void adopt_movable(struct bkt *b, uint64_t *mov)
{
    bm_free(b->movable);
    b->movable = mov;
    b->all_movable = true;
}

int grow_create_index(struct bkt *b)
{
    struct stor_file *f;
    uint64_t cap = b->ctx->first_index_cap, *mov;
    int err = movable_for(b, cap, &mov);
    if (err)
        return err;
    /* Populated: a first index sized by expected_entries is filled from the start, and a small one will
     * grow, where being mapped in a reservation (stor_file.h) lets it be regrown in place as a spare. */
    unsigned flags = STOR_RANDOM | STOR_POPULATE;
    if ((err = new_file(b, SPARE_INDEX, IDX_HEADER_BYTES, sizeof(struct bkt_entry), cap, flags, &f))) {
        bm_free(mov);
        return err;
    }
    struct bkt_state *st = state_clone(NULL);
    if (!st) {
        bm_free(mov);
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
    bm_fence_rel();
    h->magic = IDX_MAGIC; /* complete */
    st->index = f;
    st->entries = stor_cell(f, 0);
    st->cap = cap;
    st->seed = h->seed;
    stor_file_touch(f);
    adopt_movable(b, mov);
    publish(b, st, NULL, 0, NULL);
    return 0;
}

/* Rehashes every live entry of src into the empty index dst (same seed), Robin Hood placement (bucket.c
 * I2). Shadowed entries stay behind: the old file keeps them for as long as a checkpoint names it.
 * 0, or -1 if some entry found no slot inside its window. */
static int rehash(const struct bkt_ctx *ctx, const struct bkt_state *src, struct bkt_entry *dst, uint64_t cap,
                  uint64_t *max_disp)
{
    uint64_t win = window(ctx, cap), md = 0;
    for (uint64_t i = 0; i < src->cap; i++) {
        const struct bkt_entry *e = &src->entries[i];
        uint64_t s = bm_load_rlx(&e->state);
        if (entry_tag(s) == TAG_FREE || (s & ENTRY_SHADOW))
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

int grow_index(struct bkt *b)
{
    struct bkt_ctx *ctx = b->ctx;
    struct bkt_state *st = b->state;
    /* Once published, st may be freed by the maintenance thread: the probes use this copy. */
    const uint64_t old_cap = st->cap;
    uint64_t t0 = now_ns(), cap = old_cap;
    int err;
    BM_PROBE3(grow_start, b->ix, SPARE_INDEX, old_cap);
    for (;;) {
        cap = next_index_cap(cap);
        if (cap > MAX_INDEX_CAP) {
            err = BM_ENOSPACE;
            break;
        }
        uint64_t *mov;
        if ((err = movable_for(b, cap, &mov)))
            break;
        struct stor_file *f;
        err = new_file(b, SPARE_INDEX, IDX_HEADER_BYTES, sizeof(struct bkt_entry), cap, STOR_RANDOM | STOR_POPULATE,
                       &f);
        if (err) {
            bm_free(mov);
            break;
        }
        uint64_t md;
        if (rehash(ctx, st, stor_cell(f, 0), cap, &md) != 0) {
            bm_free(mov);
            grow_keep_spare(b, SPARE_INDEX, f);
            bm_add_rlx(&ctx->ctr->index_failed_grows, 1);
            continue;
        }
        struct pinned_file *pin = pin_for(b, st->index, &err);
        struct bkt_state *next = err ? NULL : state_clone(st);
        if (!next) {
            bm_free(pin);
            bm_free(mov);
            stor_file_destroy(f, true);
            err = -ENOMEM;
            break;
        }
        struct idx_header *h = stor_header(f), *oh = idx_hdr(st);
        memset(h, 0, sizeof(*h));
        h->gen = bm_add_rlx(&ctx->next_gen, 1);
        h->format = IDX_FORMAT;
        h->elem_size = oh->elem_size;
        h->capacity = cap;
        h->seed = oh->seed;
        h->bucket = oh->bucket;
        h->max_search = oh->max_search;
        h->count = oh->count;
        h->max_disp = md;
        bm_fence_rel();
        h->magic = IDX_MAGIC; /* complete */
        next->index = f;
        next->entries = stor_cell(f, 0);
        next->cap = cap;
        stor_file_touch(f);
        adopt_movable(b, mov);
        publish(b, next, st->index, SPARE_INDEX, pin);
        bm_add_rlx(&ctx->ctr->index_grows, 1);
        uint64_t ns = now_ns() - t0;
        bm_add_rlx(&ctx->ctr->grow_ns, ns);
        BM_PROBE5(grow_end, b->ix, SPARE_INDEX, old_cap, cap, ns);
        return 0;
    }
    bm_add_rlx(&ctx->ctr->grow_errors, 1);
    BM_PROBE5(grow_end, b->ix, SPARE_INDEX, old_cap, 0, now_ns() - t0); /* new size 0: the grow failed */
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

/* Creates data file c, or doubles it, moving cell i to i << 1 (bucket.c I5). */
int grow_data(struct bkt *b, unsigned c)
{
    struct bkt_ctx *ctx = b->ctx;
    struct bkt_state *st = b->state;
    struct stor_file *old = st->data[c];
    uint32_t cell = ctx->data_cell_size[c];
    uint64_t t0 = now_ns();
    unsigned pow2 = old ? st->data_pow2[c] + 1u : initial_data_pow2(cell);
    struct pinned_file *pin = NULL;
    int err;
    /* Once published, old may be recycled or closed by the maintenance thread: the probes use this copy. */
    const uint64_t old_cells = old ? old->ncells : 0;
    BM_PROBE3(grow_start, b->ix, SPARE_DATA(c), old_cells);
    (void)old_cells;
    if (pow2 > MAX_DATA_POW2) {
        err = BM_ENOSPACE;
        goto fail;
    }
    if ((pin = pin_for(b, old, &err), err))
        goto fail;
    struct stor_file *f;
    if ((err = new_file(b, SPARE_DATA(c), DATA_HEADER_BYTES, cell, 1ull << pow2, old ? STOR_POPULATE : 0, &f)))
        goto fail;
    struct data_header *h = stor_header(f);
    h->gen = bm_add_rlx(&ctx->next_gen, 1);
    h->cls = c;
    h->elem_size = ctx->elem_size;
    h->pow2 = pow2;
    h->bucket = b->ix;
    if (old) {
        h->used = data_hdr(st, c)->used;
        for (uint64_t i = 0; i < old->ncells; i++) {
            const uint8_t *src = stor_cell(old, i);
            if (*(const uint64_t *)src & CELL_OCCUPIED)
                memcpy(stor_cell(f, i << 1), src, cell);
        }
    }
    bm_fence_rel();
    h->magic = DATA_MAGIC; /* complete */
    struct bkt_state *next = state_clone(st);
    if (!next) {
        stor_file_destroy(f, true);
        err = -ENOMEM;
        goto fail;
    }
    next->data[c] = f;
    next->data_pow2[c] = (uint8_t)pow2;
    stor_file_touch(f);
    b->cursor[c] = 1; /* after a doubling every odd cell is free */
    publish(b, next, old, SPARE_DATA(c), pin);
    if (old)
        bm_add_rlx(&ctx->ctr->data_grows, 1);
    uint64_t ns = now_ns() - t0;
    bm_add_rlx(&ctx->ctr->grow_ns, ns);
    BM_PROBE5(grow_end, b->ix, SPARE_DATA(c), old_cells, 1ull << pow2, ns);
    return 0;
fail:
    bm_free(pin);
    bm_add_rlx(&ctx->ctr->grow_errors, 1);
    BM_PROBE5(grow_end, b->ix, SPARE_DATA(c), old_cells, 0, now_ns() - t0);
    return err;
}
