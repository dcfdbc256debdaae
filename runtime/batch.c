/*
 * batch.c — bm_get_batch: many lookups per call, with their cache misses in flight together.
 *
 * A single get on a map larger than the caches waits for each miss in turn: the key's index entry (and the
 * page walk to it), then, for a multi-element value, its data cell. The CPU can have about ten misses
 * outstanding, but a lookup cannot issue its entry's load before it has hashed the key, so one get keeps
 * one miss in flight. A batch runs each stage of the lookup over a group of keys before the next stage, and
 * prefetches what the next stage will touch:
 *
 *   A. key words and bucket of every key; prefetch the bucket's read-mostly line   (no read section yet)
 *      (a bucket a clean open left unloaded is loaded first, outside any read section)
 *   B. read section begins. Each bucket's state (none yet: the key is absent); prefetch it
 *   C. home slot (seeded hash); prefetch the home entry and the one after it (most hits are within two)
 *   D. scan each key's window (lookup_scan); a DATA entry: prefetch its cell
 *   E. resolve (checksums, I5 retry) and copy out, key by key (lookup_finish); read section ends
 *
 * So the misses of stage C's group overlap, then those of D's cells. Stages D and E are bkt_lookup's own
 * code (bucket_int.h), run on the same state snapshot inside one read-side section, so every guarantee of
 * bm_get holds per key: lock-free, never torn (seqcount copy, retried while a writer is there), checksums
 * checked (BM_ECORRUPT for that key only), and a key whose entry names a cell newer than the group's
 * snapshot of its bucket rescans the bucket's current state, exactly as bm_get does.
 *
 * Read sections stay short: one per group of at most BATCH_GROUP keys, and a group is cut after stage D at
 * the key where the values found exceed BATCH_SECTION_BYTES (resolving reads every element to check its
 * sum), so a batch of large values does not hold a grace period open for the whole call. Keys cut off are
 * looked up again in the next group.
 *
 * The BM_READER_RWLOCK ablation locks each bucket for reading, so a group cannot share one section there:
 * it looks keys up one by one (the ablation exists to measure single gets against).
 */
#include "runtime/bucket_int.h"
#include "runtime/map.h"

#include <string.h>

/* Keys whose misses are in flight together (two prefetched lines each): enough to keep the CPU's miss
 * buffers full for a DRAM latency, few enough that a group's state (3 KiB) stays in L1. At 10M keys on the
 * shared 2-core EPYC VM this was tuned on, 32 gave the best batch/single ratio (median of 16 paired runs:
 * 3.75x, against 3.18x for 16 and 3.56x for 64; 3.35x without the second line's prefetch; one noisy run
 * each). */
#define BATCH_GROUP 32u
/* Value bytes one read section may resolve and copy before the group is cut. */
#define BATCH_SECTION_BYTES (256u << 10)
/* Lines of a data cell prefetched ahead of resolving it; the hardware prefetcher streams the rest. */
#define BATCH_CELL_LINES 4u

struct batch_key {
    uint64_t k[4];
    struct bkt *b;
    const struct bkt_state *st; /* NULL: the bucket has no files, the key is absent */
    int load_err;               /* the bucket was left unloaded by a clean open and could not be loaded */
    uint64_t home;
    uint64_t retries;
    int found; /* lookup_scan's result */
    struct entry_snap s;
};

/* Stores key i's result: status, count, refcount and up to cap elements. Returns 1 if found. */
static inline int put_result(const struct bkt_ctx *ctx, size_t i, int rc, const struct bkt_val *v, void *out,
                             uint32_t cap, uint32_t *n, uint64_t *refcounts, int *status)
{
    status[i] = rc;
    if (rc) {
        if (n)
            n[i] = 0;
        if (refcounts)
            refcounts[i] = 0;
        return 0;
    }
    uint32_t cp = v->n < cap ? v->n : cap;
    if (cp)
        memcpy((char *)out + i * cap * ctx->elem_size, v->elems, (size_t)cp * ctx->elem_size);
    if (n)
        n[i] = v->n;
    if (refcounts)
        refcounts[i] = v->rc;
    return 1;
}

#ifndef BM_READER_RWLOCK

/* Prefetches the first lines of the data cell a DATA snapshot names, if the ref is in range (resolve checks
 * it again; a bad one is left for it to report). */
static inline void prefetch_cell(const struct bkt_ctx *ctx, const struct bkt_state *st, const struct entry_snap *s)
{
    uint64_t n = s->p[1];
    if (entry_tag(s->state) != TAG_DATA || n == 0 || n > ctx->max_elems)
        return;
    unsigned c = size_class((uint32_t)n);
    if (!cell_ref_ok(st, c, s->p[0]))
        return;
    const char *cell = (const char *)cell_at(st, c, s->p[0]);
    size_t bytes = CELL_HEADER + (size_t)n * ctx->elem_size;
    for (size_t off = 0; off < bytes && off < BATCH_CELL_LINES * BM_CACHELINE; off += BM_CACHELINE)
        __builtin_prefetch(cell + off);
}

/* Value bytes resolving a found key reads (DATA: every element, for its checksum) plus what it copies. */
static inline size_t value_bytes(const struct bkt_ctx *ctx, const struct batch_key *q, uint32_t cap)
{
    if (q->found != 1)
        return 0;
    size_t n = entry_tag(q->s.state) == TAG_DATA ? (size_t)q->s.p[1] : 1;
    return (n + (n < cap ? n : cap)) * ctx->elem_size;
}

/* Looks up keys[0..g) (a group) in one read section; returns how many of them it did (>= 1: the rest are
 * cut off by BATCH_SECTION_BYTES) and adds the found ones to *found. */
static size_t run_group(bm_map *m, const bm_key *keys, size_t base, size_t g, void *out, uint32_t cap,
                        uint32_t *n, uint64_t *refcounts, int *status, int *found)
{
    const struct bkt_ctx *ctx = &m->ctx;
    struct batch_key q[BATCH_GROUP];
    for (size_t i = 0; i < g; i++) { /* A */
        key_words(keys[base + i].bytes, q[i].k);
        q[i].b = map_bucket_for(m, q[i].k);
        q[i].retries = 0;
        __builtin_prefetch(&q[i].b->state);
    }
    /* Outside the read section, once their lines are on the way: a bucket a clean open left unloaded is
     * loaded here (map.h; `unloaded` shares the line of `state`). */
    for (size_t i = 0; i < g; i++)
        q[i].load_err = map_load(m, q[i].b);
    rcu_glue_read_lock();
    for (size_t i = 0; i < g; i++) { /* B */
        q[i].st = q[i].load_err ? NULL : rcu_glue_deref(q[i].b->state);
        if (q[i].st)
            __builtin_prefetch(q[i].st);
    }
    for (size_t i = 0; i < g; i++) { /* C */
        const struct bkt_state *st = q[i].st;
        if (!st)
            continue;
        uint64_t h = lookup_home(st, q[i].k);
        q[i].home = h;
        __builtin_prefetch(&st->entries[h]);
        __builtin_prefetch(&st->entries[h + 1 < st->cap ? h + 1 : 0]);
    }
    size_t done = g, bytes = 0;
    for (size_t i = 0; i < g; i++) { /* D */
        struct batch_key *p = &q[i];
        p->found = BM_ENOTFOUND;
        if (!p->st)
            continue;
        p->found = lookup_scan(p->b, p->st, p->k, p->home, &p->s, &p->retries);
        if (p->found == 1)
            prefetch_cell(ctx, p->st, &p->s);
        bytes += value_bytes(ctx, p, cap);
        if (bytes > BATCH_SECTION_BYTES && i + 1 < g) {
            done = i + 1; /* the rest go to the next group */
            break;
        }
    }
    for (size_t i = 0; i < done; i++) { /* E */
        struct batch_key *p = &q[i];
        struct bkt_val v;
        int rc = p->load_err ? p->load_err : lookup_finish(p->b, p->st, p->k, p->found, &p->s, &v, &p->retries);
        *found += put_result(ctx, base + i, rc, &v, out, cap, n, refcounts, status);
    }
    rcu_glue_read_unlock();
    for (size_t i = 0; i < done; i++)
        if (bm_unlikely(q[i].retries))
            bkt_count_retries(q[i].b, q[i].retries);
    return done;
}

int map_get_batch(bm_map *m, const bm_key *keys, size_t nkeys, void *out, uint32_t cap, uint32_t *n,
                  uint64_t *refcounts, int *status)
{
    int found = 0;
    for (size_t i = 0; i < nkeys;) {
        size_t g = nkeys - i < BATCH_GROUP ? nkeys - i : BATCH_GROUP;
        i += run_group(m, keys, i, g, out, cap, n, refcounts, status, &found);
    }
    return found;
}

#else /* BM_READER_RWLOCK */

int map_get_batch(bm_map *m, const bm_key *keys, size_t nkeys, void *out, uint32_t cap, uint32_t *n,
                  uint64_t *refcounts, int *status)
{
    int found = 0;
    for (size_t i = 0; i < nkeys; i++) {
        uint64_t k[4];
        key_words(keys[i].bytes, k);
        struct bkt *b = map_bucket_for(m, k);
        struct bkt_val v;
        int rc = map_load(m, b);
        if (rc) {
            found += put_result(&m->ctx, i, rc, &v, out, cap, n, refcounts, status);
            continue;
        }
        bkt_read_begin(b);
        rc = bkt_lookup(b, k, &v);
        found += put_result(&m->ctx, i, rc, &v, out, cap, n, refcounts, status);
        bkt_read_end(b);
    }
    return found;
}

#endif
