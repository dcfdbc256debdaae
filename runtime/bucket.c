/*
 * bucket.c — one shard: lookup, probing and the mutations.
 *
 * Invariants (bucket mutex held by the only writer; readers hold a read-side section):
 *  I1. A key has at most one live (unshadowed) entry in the current index, inside its window
 *      [home, home + min(max_search, cap)) mod cap. Lookups scan the window up to the file's max_disp (the
 *      largest displacement ever placed in it) and never stop at a free slot, so deletes need no tombstones.
 *  I2. Inserts place keys Robin Hood style: a new key takes the slot of a movable entry closer to its own
 *      home, and that entry moves further along. Entries only ever move FORWARD (in probe order), and a move
 *      writes the destination before it overwrites the source, so a reader scanning forward meets a moving
 *      entry at least once. max_disp is raised before any entry goes further than it; a reader that misses
 *      re-reads max_disp and rescans if it grew meanwhile. Deletes just free the slot.
 *  I3. A data cell is immutable while an entry refers to it: a new value always goes to a fresh cell and the
 *      old one waits in the pending queue (bucket_cells.c), so a zero-copy reader's bytes never change.
 *  I4. A write is all-or-nothing: every step that can fail (grow the index, create or grow a data file,
 *      find a cell, room in the pending queue) happens before the first store into a live entry.
 *  I5. An entry's data ref names the data file's pow2 at allocation; a reader whose state has an older,
 *      smaller file reloads the state (the writer published the new one before writing that ref).
 *  I6. Persistent maps (checkpoint.c): an entry that was in the index at the last checkpoint cut is
 *      "frozen": it never moves, and a new value of its key that needs a data cell is written to another
 *      slot while the frozen entry stays as a shadow until the next checkpoint commits. So every page the
 *      last checkpoint made durable keeps what that checkpoint needs, whatever mix of old and new pages a
 *      power loss leaves: an in-place rewrite only ever puts a complete, self-contained version of the same
 *      key into its slot (an inline value, or a refcount change whose cell stays untouched).
 *
 * Writer-side shapes of a mutation and what a SIGKILL in the middle leaves (recovery.c repairs it):
 *   fresh entry:      moves (duplicates at worst), then the new slot (half-written: dropped)
 *   new version (I6): the new slot, then the shadow bit on the old one (two live copies: either is fine)
 *   in-place rewrite: undo record armed around it (undo.c)
 *   delete:           tomb bits on the key's shadows, then the live slot freed
 */
#include "common/bm_probes.h"
#include "runtime/bucket_int.h"

#include "common/bm_mem.h"
#include "runtime/snapshot.h"

#include <signal.h>
#include <string.h>

#define SNAPSHOT_TRIES 4 /* lock-free snapshot attempts before bm_foreach takes the bucket lock */

#ifdef BM_TEST_HOOKS
/* Test builds only (BM_TEST_FAULT=crash-after=N): the N-th mutation kills the process between two stores
 * that recovery must put together, so crash tests reach states a random SIGKILL rarely hits. */
static inline void test_crash_point(struct bkt_ctx *ctx)
{
    if (bm_unlikely(bm_load_rlx(&ctx->crash_countdown)) &&
        __atomic_sub_fetch(&ctx->crash_countdown, 1, __ATOMIC_RELAXED) == 0)
        raise(SIGKILL);
}
#else
static inline void test_crash_point(struct bkt_ctx *ctx) { (void)ctx; }
#endif

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

/* A BUSY bit seen for ENTRY_BUSY_SPINS spins: a writer that is really there keeps the bucket's mutation
 * counter odd, or moves it on; a bit that stays set with no writer came from the disk (damage). */
__attribute__((noinline)) bool bkt_busy_is_damage(const struct bkt *b, const struct bkt_entry *e)
{
    uint64_t w1 = bm_load_acq(&b->wseq);
    if (w1 & 1)
        return false;
    uint64_t s = bm_load_acq(&e->state);
    bm_fence_acq();
    return (s & ENTRY_BUSY) && bm_load_rlx(&b->wseq) == w1;
}

/* Off the retry-free path, so a lookup without retries runs the same instructions with or without probes. */
__attribute__((noinline)) void bkt_count_retries(struct bkt *b, uint64_t retries)
{
    bm_add_rlx(&b->ctx->ctr->reader_retries, retries);
    BM_PROBE2(reader_retry, b->ix, retries);
}

int bkt_lookup(struct bkt *b, const uint64_t k[4], struct bkt_val *out)
{
    const struct bkt_state *st = rcu_glue_deref(b->state);
    if (bm_unlikely(!st)) {
        /* Empty, or not loaded yet. The loader publishes state before it clears `unloaded` (release), so
         * once that reads 0 a second look at state is current. A loaded bucket never gets here. */
        if (bm_load_acq(&b->unloaded))
            return BKT_UNLOADED;
        st = rcu_glue_deref(b->state);
        if (!st)
            return BM_ENOTFOUND; /* created lazily by the first write */
    }
    uint64_t retries = 0, home = lookup_home(st, k);
    struct entry_snap s = {0, 0, {0, 0}};
    __builtin_prefetch(&st->entries[home]);
    int rc = lookup_scan(b, st, k, home, &s, &retries);
    rc = lookup_finish(b, st, k, rc, &s, out, &retries);
    if (bm_unlikely(retries))
        bkt_count_retries(b, retries);
    return rc;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Writers                                                                                                 */

/* Bucket locks this thread holds. A thread inside a bm_update callback holds one and may write another map;
 * two threads doing that in opposite orders would deadlock, so a thread that already holds a bucket lock
 * only tries the next one and gets BM_EBUSY when it is taken (header: "Callbacks"). */
static __thread unsigned tls_locks_held;

static void wunlock(struct bkt *b);

static int wlock(struct bkt *b)
{
    if (tls_locks_held) {
        if (pthread_mutex_trylock(&b->lock))
            return BM_EBUSY;
    } else {
        pthread_mutex_lock(&b->lock);
    }
    tls_locks_held++;
#ifdef BM_READER_RWLOCK
    pthread_rwlock_wrlock(&b->rw);
#endif
    return 0;
}

/* wlock for the writer entry points: also gives the bucket its writer block (cursors and spares, see
 * bucket.h) the first time. Under the lock, so writers never race on it; the maintenance thread touches
 * spares of files a writer's grow retired, which happened after this (publish order), and trims the
 * spares of every bucket that has a block. */
static int wlock_writer(struct bkt *b)
{
    int err = wlock(b);
    if (err || bm_likely(b->cursor != NULL))
        return err;
    uint64_t *blk = bm_calloc(1, BKT_NCLASS * sizeof(uint64_t) + (1 + BKT_NCLASS) * SPARES * sizeof(struct stor_file *));
    if (!blk) {
        wunlock(b);
        return -ENOMEM;
    }
    /* Release: the maintenance thread's spare trim (bkt_trim_spares) looks at any bucket, lock-free. */
    bm_store_rel(&b->spare, (struct stor_file *(*)[SPARES])(blk + BKT_NCLASS));
    b->cursor = blk;
    return 0;
}

static void wunlock(struct bkt *b)
{
#ifdef BM_READER_RWLOCK
    pthread_rwlock_unlock(&b->rw);
#endif
    tls_locks_held--;
    pthread_mutex_unlock(&b->lock);
}

/* Marks the start / end of a mutation of live entries, for lock-free bucket snapshots and bkt_busy_is_damage. */
static inline void mutation_begin(struct bkt *b)
{
    bm_store_rlx(&b->wseq, b->wseq + 1);
    bm_fence_rel();
}

static inline void mutation_end(struct bkt *b) { bm_store_rel(&b->wseq, b->wseq + 1); }

/* k's live slot in the current index, or -1. */
static int64_t find(const struct bkt *b, const uint64_t k[4]) { return live_slot(b->ctx, b->state, k, true); }

/* Adds the tomb bit to every shadow of k (its key is being deleted: recovery must not bring one back). */
static void tomb_shadows(struct bkt *b, const uint64_t k[4])
{
    const struct bkt_state *st = b->state;
    struct probe p = probe_window(b->ctx, st, k, true);
    for (uint64_t d = 0; d < p.len; d++) {
        struct bkt_entry *e = &st->entries[probe_at(&p, d)];
        if ((e->state & (ENTRY_SHADOW | ENTRY_TOMB)) == ENTRY_SHADOW && entry_tag(e->state) != TAG_FREE &&
            key_eq(e->key, k))
            entry_set_flags(e, ENTRY_SHADOW | ENTRY_TOMB);
    }
}

/* Plans the Robin Hood insertion of k into a free slot (I2, I6): path[0] is where k goes, path[i] receives
 * the entry now at path[i-1], and the last slot is free. Frozen and shadowed entries are never displaced;
 * the probe just walks past them. Returns the path length, or 0 if the window cannot take k without
 * pushing an entry out of its own window (grow the index). *md: the largest displacement placed. */
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
        if (!(e->state & ENTRY_SHADOW) && slot_movable(b, j)) {
            uint64_t dj = disp_of(e->key, st->seed, cap, j);
            if (dj < dc) {
                if (n == RH_MAX_PATH - 1)
                    return 0;
                path[n++] = j;
                m = dc > m ? dc : m;
                dc = dj;
            }
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
    entry_write_end_sum(dst, entry_tag(src->state), (uint32_t)(src->state >> 32), 0);
}

static int ensure_state(struct bkt *b)
{
    if (b->state) {
        pend_release_ready(b);
        return 0;
    }
    return grow_create_index(b);
}

/* Validates a stable entry (bucket lock held) as a reader would; 0 and its value, or BM_ECORRUPT. */
static int entry_check(const struct bkt *b, const struct bkt_entry *e, struct bkt_val *v, uint32_t *cs)
{
    struct entry_snap s = entry_snap_of(e);
    int err = resolve(b->state, b->ctx, e->key, &s, v, cs);
    return err == -EAGAIN ? BM_ECORRUPT : err;
}

static bool entry_ok(const struct bkt *b, const struct bkt_entry *e)
{
    struct bkt_val v;
    uint32_t cs;
    return !(e->state & ENTRY_BUSY) && entry_check(b, e, &v, &cs) == 0;
}

/* The entry's data cell, if the entry's sum matches the sum in the cell's header: that binds the cell to
 * this entry even when the elements are damaged (so replacing the entry frees it). A damaged entry's ref
 * may name another entry's cell, so it owns none: overwriting or deleting it leaves its cell for bmctl
 * verify to report. */
static bool entry_cell(const struct bkt *b, const struct bkt_entry *e, unsigned *c, uint64_t *ref)
{
    const struct bkt_state *st = b->state;
    uint32_t n = (uint32_t)e->p[1];
    if (entry_tag(e->state) != TAG_DATA || n == 0 || n > b->ctx->max_elems)
        return false;
    *c = size_class(n);
    *ref = e->p[0];
    if (!cell_ref_ok(st, *c, *ref))
        return false;
    uint64_t hdr = *(const uint64_t *)cell_at(st, *c, *ref);
    return (hdr & CELL_OCCUPIED) && entry_sum_ok(e->state, e->key, e->rc, e->p[0], e->p[1], cell_hdr_sum(hdr));
}

static void entry_store(struct bkt_entry *e, const uint64_t *k, unsigned tag, uint64_t rc, uint64_t p0,
                        uint64_t p1, uint32_t cs)
{
    entry_write_begin(e);
    if (k)
        for (int i = 0; i < 4; i++)
            entry_set(e, key[i], k[i]);
    entry_set(e, rc, rc);
    entry_set(e, p[0], p0);
    entry_set(e, p[1], p1);
    entry_write_end(e, tag, cs);
}

static int write_locked(struct bkt *b, const uint64_t k[4], const void *elems, uint32_t n, uint64_t rc)
{
    struct bkt_ctx *ctx = b->ctx;
    bool need_data = n > 1 || (n == 1 && ctx->elem_size > ENTRY_INLINE_MAX);
    unsigned c = size_class(n);
    uint64_t ref = 0, path[RH_MAX_PATH], md = 0;
    uint32_t plen = 0;
    int64_t slot;
    bool shadow;
    int err = ensure_state(b);
    if (err)
        return err;
    for (;;) {
        slot = find(b, k);
        /* I6: a frozen entry getting a value in a new cell keeps its slot as a shadow (a damaged one has
         * nothing worth keeping and is overwritten in place). */
        shadow = slot >= 0 && need_data && !slot_movable(b, (uint64_t)slot) && entry_ok(b, &b->state->entries[slot]);
        if ((slot < 0 || shadow) && (plen = rh_plan(b, k, path, &md)) == 0) {
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
        if (cells_find(b, c, &ref) == 0)
            break;
        if ((err = grow_data(b, c)))
            return err;
    }
    if ((err = pend_reserve(b, 2)))
        return err;

    /* Commit (I4: nothing below can fail). */
    struct bkt_state *st = b->state;
    bool fresh = slot < 0;
    unsigned oc = 0;
    uint64_t oref = 0;
    bool had_cell = !fresh && entry_cell(b, &st->entries[slot], &oc, &oref);
    uint64_t p0 = 0, p1 = 0;
    uint32_t cs = 0;
    unsigned tag;
    if (need_data) {
        cs = cells_fill(b, c, ref, elems, n);
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
    if (fresh || shadow) {
        mutation_begin(b);
        struct idx_header *h = idx_hdr(st);
        if (md > h->max_disp) {
            bm_store_rlx(&h->max_disp, md); /* I2: before any entry moves past the old bound */
            bm_fence_rel();
        }
        for (uint32_t i = plen - 1; i > 0; i--) {
            entry_move(&st->entries[path[i]], &st->entries[path[i - 1]]);
            mark_movable(b, path[i]);
        }
        test_crash_point(ctx);
        entry_store(&st->entries[path[0]], k, tag, rc, p0, p1, cs);
        mark_movable(b, path[0]);
        if (shadow) {
            entry_set_flags(&st->entries[slot], ENTRY_SHADOW);
            pend_push(b, PEND_SHADOW, 0, (uint64_t)slot);
            bm_add_rlx(&ctx->ctr->shadowed, 1);
        }
        mutation_end(b);
        if (fresh) {
            h->count++;
            bm_add_rlx(&b->count, 1);
        }
    } else {
        undo_arm(b, (uint64_t)slot);
        mutation_begin(b);
        test_crash_point(ctx);
        entry_store(&st->entries[slot], NULL, tag, rc, p0, p1, cs);
        mutation_end(b);
        undo_disarm(b);
    }
    if (had_cell)
        pend_push(b, PEND_CELL, oc, oref);
    stor_file_touch(st->index);
    return 0;
}

static int remove_locked(struct bkt *b, const uint64_t k[4])
{
    if (!b->state)
        return BM_ENOTFOUND;
    pend_release_ready(b);
    int64_t slot = find(b, k);
    if (slot < 0)
        return BM_ENOTFOUND;
    int err = pend_reserve(b, 1);
    if (err)
        return err;
    struct bkt_state *st = b->state;
    struct bkt_entry *e = &st->entries[slot];
    unsigned oc;
    uint64_t oref;
    bool had_cell = entry_cell(b, e, &oc, &oref);
    mutation_begin(b);
    if (b->ctx->durable)
        tomb_shadows(b, k);
    test_crash_point(b->ctx);
    entry_write_begin(e);
    entry_write_end_sum(e, TAG_FREE, 0, 0);
    mutation_end(b);
    if (had_cell)
        pend_push(b, PEND_CELL, oc, oref);
    idx_hdr(st)->count--;
    bm_sub_rlx(&b->count, 1);
    stor_file_touch(st->index);
    return 0;
}

int bkt_upsert(struct bkt *b, const uint64_t k[4], const void *elems, uint32_t n, uint64_t rc)
{
    int err = wlock_writer(b);
    if (err)
        return err;
    err = write_locked(b, k, elems, n, rc);
    wunlock(b);
    return err;
}

int bkt_remove(struct bkt *b, const uint64_t k[4])
{
    int err = wlock_writer(b);
    if (err)
        return err;
    err = remove_locked(b, k);
    wunlock(b);
    return err;
}

int bkt_adjref(struct bkt *b, const uint64_t k[4], int delta, uint64_t *out)
{
    int err = wlock_writer(b);
    if (err)
        return err;
    err = BM_ENOTFOUND;
    int64_t slot = b->state ? find(b, k) : -1;
    if (slot >= 0) {
        struct bkt_entry *e = &b->state->entries[slot];
        struct bkt_val v;
        uint32_t cs = 0;
        uint64_t rc = e->rc;
        if (entry_check(b, e, &v, &cs)) {
            err = BM_ECORRUPT; /* rewriting it would give damaged contents a valid checksum */
        } else if ((delta > 0 && rc == UINT64_MAX) || (delta < 0 && rc == 0)) {
            err = BM_EOVERFLOW;
        } else {
            rc = delta > 0 ? rc + 1 : rc - 1;
            /* In place even when frozen (I6): the cell, if any, stays as the checkpoint has it. */
            undo_arm(b, (uint64_t)slot);
            mutation_begin(b);
            test_crash_point(b->ctx);
            entry_store(e, NULL, entry_tag(e->state), rc, e->p[0], e->p[1], cs);
            mutation_end(b);
            undo_disarm(b);
            stor_file_touch(b->state->index);
            if (out)
                *out = rc;
            err = 0;
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
    int err = wlock_writer(b);
    if (err)
        return err;
    int64_t slot = b->state ? find(b, k) : -1;
    if (slot >= 0) {
        struct bkt_val v;
        uint32_t cs = 0;
        if (entry_check(b, &b->state->entries[slot], &v, &cs)) {
            err = BM_ECORRUPT; /* fn is not called with a damaged value; insert or delete replace it */
            goto out;
        }
        /* fn may hand back cur's own elements; a grow during the write could retire their file, so give fn
         * a private copy. */
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

/* Copies every intact live entry of st and counts the damaged ones in *damaged; -EAGAIN if st went stale
 * under us (a data ref newer than st). */
static int copy_state(const struct bkt *b, const struct bkt_state *st, struct snap_buf *buf, uint64_t *damaged)
{
    uint32_t es = b->ctx->elem_size;
    for (uint64_t i = 0; i < st->cap; i++) {
        const struct bkt_entry *e = &st->entries[i];
        for (unsigned spins = 0;; spins++) {
            uint64_t s1 = bm_load_acq(&e->state);
            if (entry_tag(s1) == TAG_FREE || (s1 & ENTRY_SHADOW))
                break;
            if (s1 & ENTRY_BUSY) {
                if (spins >= ENTRY_BUSY_SPINS && bkt_busy_is_damage(b, e)) {
                    (*damaged)++;
                    break;
                }
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
            uint32_t cs = 0;
            int err = resolve(st, b->ctx, k, &s, &v, &cs);
            if (err == -EAGAIN && rcu_glue_deref(b->state) != st)
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
    int err = wlock(b);
    if (err)
        return err;
    err = b->state ? copy_state(b, b->state, buf, damaged) : 0;
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

int bkt_init(struct bkt *b, struct bkt_ctx *ctx, uint32_t ix)
{
    memset(b, 0, sizeof(*b));
    b->ctx = ctx;
    b->ix = ix;
    b->all_movable = true;
    b->epoch = 1;
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
        bool unlink_it = !b->ctx->durable;
        stor_file_destroy(st->index, unlink_it);
        for (unsigned c = 0; c < BKT_NCLASS; c++)
            stor_file_destroy(st->data[c], unlink_it);
        bm_free(st);
        b->state = NULL;
    }
    if (b->spare)
        grow_drop_spares(b);
    bm_free(b->cursor); /* the writer block, spares included */
    pend_free(b);
    bm_free(b->movable);
    b->movable = NULL;
#ifdef BM_READER_RWLOCK
    pthread_rwlock_destroy(&b->rw);
#endif
    pthread_mutex_destroy(&b->lock);
}

/* Lock helpers for the checkpoint and inspection modules, which work on a bucket between writers. */
int bkt_lock(struct bkt *b) { return wlock(b); }
void bkt_unlock(struct bkt *b) { wunlock(b); }
