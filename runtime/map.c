/*
 * map.c — the public API: argument checks, sharding, callback guards, open/close, stats.
 *
 * Every entry point validates its arguments before touching the map and registers the calling thread with
 * RCU (rcu_glue_thread_enter) so callers never have to. Reads run in a read-side section per call; writes
 * take one bucket's mutex (runtime/bucket.c).
 *
 * Callback guards (thread-local): inside a bm_read callback the thread is in a read-side section, where a
 * write could wait for a grace period on itself; inside a bm_update callback it holds a bucket mutex. Calls
 * that could deadlock there return BM_EBUSY instead.
 */
#include "bucketmap.h"

#include "common/bm_atomic.h"
#include "common/bm_mem.h"
#include "runtime/bucket.h"
#include "runtime/map.h"
#include "runtime/restart.h"
#include "runtime/snapshot.h"
#include "storage/stor_drives.h"
#include "urcu_glue/rcu_glue.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_BUCKETS 256u
#define DEFAULT_MAX_SEARCH 32u

/* Maps whose bm_update callback this thread is inside (callbacks may update other maps, so it nests). */
#define UPDATE_NEST_MAX 8
static __thread const bm_map *tls_update_maps[UPDATE_NEST_MAX];
static __thread unsigned tls_update_depth;

static inline bool in_update_of(const bm_map *m)
{
    for (unsigned i = 0; i < tls_update_depth; i++)
        if (tls_update_maps[i] == m)
            return true;
    return false;
}
static __thread int tls_read_depth;           /* inside a bm_read callback (of any map) */

bool map_in_callback(void) { return tls_update_depth || tls_read_depth; }

BM_API uint32_t bm_bucket_of(const bm_key *k, uint32_t max_buckets)
{
    if (!k || max_buckets <= 1 || (max_buckets & (max_buckets - 1)) || max_buckets > BM_MAX_BUCKETS)
        return 0;
    uint64_t w;
    memcpy(&w, k->bytes, 8);
    return (uint32_t)(__builtin_bswap64(w) >> (64 - __builtin_ctz(max_buckets)));
}

/* ---- open / close ---- */

/* Housekeeping tick of the maintenance thread (defer.h), every TRIM_TICK_MS after a batch of retired
 * files: once a whole tick passed without a grow, the map has stopped growing and its spares (each
 * bucket's previous index, kept mapped to be regrown in place) give their memory and disk back; the ticks
 * then stop until the next batch. */
#define TRIM_TICK_MS 1000u

static bool trim_tick(void *arg)
{
    bm_map *m = arg;
    uint64_t g = bm_load_rlx(&m->ctr.index_grows) + bm_load_rlx(&m->ctr.data_grows);
    if (g != m->trim_grows) {
        m->trim_grows = g;
        return true;
    }
    for (uint32_t i = 0; i < m->nbuckets; i++)
        (void)bkt_trim_spares(&m->buckets[i]);
    return false;
}

static int validate_config(const bm_config *cfg)
{
    if (cfg->elem_size == 0 || cfg->elem_size > BM_MAX_ELEM_SIZE)
        return BM_EINVAL;
    if (cfg->max_buckets & (cfg->max_buckets - 1) || cfg->max_buckets > BM_MAX_BUCKETS)
        return BM_EINVAL;
    if (cfg->max_search > BM_MAX_SEARCH_LIMIT)
        return BM_EINVAL;
    if ((cfg->n_drives == 0) != (cfg->drives == NULL) || cfg->n_drives > 1024)
        return BM_EINVAL;
    for (uint32_t i = 0; i < cfg->n_drives; i++)
        if (!cfg->drives[i] || !cfg->drives[i][0])
            return BM_EINVAL;
    if (cfg->flags & ~(BM_F_NO_PREALLOC | BM_F_SALVAGE))
        return BM_EINVAL;
    if ((cfg->flags & BM_F_SALVAGE) && !cfg->restart_path)
        return BM_EINVAL;
    if (cfg->restart_path && !cfg->restart_path[0])
        return BM_EINVAL;
    if (cfg->expected_entries > (1ull << 40))
        return BM_EINVAL;
    return 0;
}

/* Mappings of the buckets' current files, to unmap in as few calls as possible. */
struct map_ranges {
    struct map_range {
        uintptr_t base;
        size_t len;
        struct stor_file *f;
    } *v;
    size_t n, cap;
};

static void count_range(struct stor_file *f, bool is_index, void *arg)
{
    (void)is_index;
    if (f->base)
        ++*(size_t *)arg;
}

static void collect_range(struct stor_file *f, bool is_index, void *arg)
{
    (void)is_index;
    struct map_ranges *r = arg;
    if (!f->base || r->n == r->cap)
        return;
    /* The whole range the file holds: its pages and any address space reserved behind it for a regrow
     * (stor_file.h resv_len, a page multiple), where the next mapping may begin. */
    r->v[r->n++] = (struct map_range){(uintptr_t)f->base, f->resv_len, f};
}

static int cmp_range(const void *a, const void *b)
{
    const struct map_range *x = a, *y = b;
    return x->base < y->base ? -1 : x->base > y->base;
}

/*
 * Unmaps every current file of every bucket, coalescing mappings that are adjacent in the address space
 * (consecutive mmaps usually are) into one munmap each. Each munmap of a process that has run threads
 * costs a TLB shootdown (an IPI per other CPU, tens of us on a virtual machine); one per file made the
 * close of a map with 256 loaded buckets and nothing to write take 25-40 ms, almost all of it there. Only
 * ranges of our own files are merged, exactly adjacent ones, so nothing else is unmapped. Best effort:
 * without memory for the list, stor_file_destroy unmaps file by file as before.
 */
static void unmap_files(bm_map *m)
{
    struct map_ranges r = {NULL, 0, 0};
    for (uint32_t i = 0; i < m->nbuckets; i++)
        bkt_for_each_file(&m->buckets[i], count_range, &r.cap);
    if (!r.cap || !(r.v = bm_malloc(r.cap * sizeof(*r.v))))
        return;
    for (uint32_t i = 0; i < m->nbuckets; i++)
        bkt_for_each_file(&m->buckets[i], collect_range, &r);
    if (r.n)
        qsort(r.v, r.n, sizeof(*r.v), cmp_range);
    for (size_t i = 0; i < r.n;) {
        size_t j = i + 1, len = r.v[i].len;
        while (j < r.n && r.v[j].base == r.v[i].base + len)
            len += r.v[j++].len;
        if (munmap((void *)r.v[i].base, len) == 0)
            for (size_t k = i; k < j; k++)
                r.v[k].f->base = NULL; /* stor_file_destroy: nothing left to unmap */
        i = j;
    }
    bm_free(r.v);
}

static void map_free(bm_map *m)
{
    /* Every deferred release must have run before the buckets go away. */
    defer_stop(&m->ctx.defer);
    defer_drain(&m->ctx.defer);
    if (m->buckets) {
        unmap_files(m);
        for (uint32_t i = 0; i < m->nbuckets; i++)
            bkt_fini(&m->buckets[i]);
        bm_free(m->buckets);
    }
    if (m->dir_fds) {
        for (uint32_t i = 0; i < m->drives->n; i++)
            if (m->dir_fds[i] >= 0)
                close(m->dir_fds[i]);
        bm_free(m->dir_fds);
    }
    if (m->ring_ready)
        stor_ring_fini(&m->ring);
    /* Files still pinned here belong to the last durable checkpoint (a checkpoint failed): keep them. */
    for (struct pinned_file *p = m->ctx.pinned, *next; p; p = next) {
        next = p->next;
        stor_file_destroy(p->f, false);
        bm_free(p);
    }
    pthread_mutex_destroy(&m->ctx.pin_lock);
    pthread_mutex_destroy(&m->lazy_lock);
    bm_free(m->lazy_recs);
    bm_free(m->lazy_first);
    bm_free(m->lazy_n);
    defer_fini(&m->ctx.defer);
    if (m->ckpt_lock_init)
        pthread_mutex_destroy(&m->ckpt_lock);
    if (m->restart_fd >= 0)
        close(m->restart_fd);
    stor_drives_close(m->drives);
    bm_free(m);
}

/* Persistent maps: lock the drives, check or create the restart file, open the directories for syncing,
 * then recover the newest checkpoint (recovery.c). */
static int open_error(const bm_config *cfg, int err, const char *what)
{
    if (cfg->errbuf && cfg->errbuf_len)
        snprintf(cfg->errbuf, cfg->errbuf_len, "%s: %s", what, bm_strerror(err));
    return err;
}

static int open_persistent(bm_map *m, const bm_config *cfg)
{
    int err = stor_drives_lock(m->drives, true);
    if (err)
        return open_error(cfg, err == -EWOULDBLOCK ? BM_ELOCKED : err, "drive lock");
    struct restart_ident want = {m->ctx.elem_size, m->nbuckets, m->ctx.max_search, m->drives->n, {0}};
    struct restart_ident have;
    err = restart_read(cfg->restart_path, &have, NULL);
    if (err == BM_ECORRUPT && (cfg->flags & BM_F_SALVAGE) &&
        restart_find_prefix(m->drives->dirs[0], want.prefix) == 0) {
        /* Salvage: the identity is what the config says, the prefix what drive 0's manifests say. */
        err = restart_rewrite_identity(cfg->restart_path, &want);
        if (!err)
            err = restart_read(cfg->restart_path, &have, NULL);
    }
    if (err == -ENOENT) {
        if (restart_drives_hold_map_files(m->drives))
            return open_error(cfg, BM_ENORESTART, cfg->restart_path);
        memcpy(want.prefix, m->drives->prefix, sizeof(want.prefix));
        err = restart_write(cfg->restart_path, &want);
    } else if (!err) {
        if (have.elem_size != want.elem_size || have.max_buckets != want.max_buckets ||
            have.max_search != want.max_search || have.n_drives != want.n_drives)
            err = BM_EMISMATCH;
        else
            memcpy(m->drives->prefix, have.prefix, sizeof(have.prefix));
    }
    if (err)
        return open_error(cfg, err, cfg->restart_path);
    m->dir_fds = bm_malloc(m->drives->n * sizeof(int));
    if (!m->dir_fds)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->drives->n; i++)
        m->dir_fds[i] = -1;
    for (uint32_t i = 0; i < m->drives->n; i++)
        if ((m->dir_fds[i] = open(m->drives->dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            return -errno;
    if ((err = pthread_mutex_init(&m->ckpt_lock, NULL)))
        return -err;
    m->ckpt_lock_init = true;
    m->persistent = true;
    m->ctx.durable = true;
    m->armed = 0; /* recovery arms it when it commits (unclean open, salvage); a clean open leaves it */
    return recovery_open(m, cfg->restart_path, (cfg->flags & BM_F_SALVAGE) != 0, cfg->errbuf, cfg->errbuf_len);
}

BM_API int bm_open(const bm_config *cfg, bm_map **out)
{
    if (!cfg || !out)
        return BM_EINVAL;
    *out = NULL;
    int err = validate_config(cfg);
    if (err)
        return err;
    rcu_glue_thread_enter();
    if (cfg->errbuf && cfg->errbuf_len)
        cfg->errbuf[0] = 0;
    bm_map *m = bm_aligned_zalloc(BM_CACHELINE, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->restart_fd = -1;
    m->armed = 1; /* temporary maps; a persistent open clears it until recovery commits or a write arms it */
    if ((err = pthread_mutex_init(&m->ctx.pin_lock, NULL))) {
        bm_free(m);
        return -err;
    }
    if ((err = pthread_mutex_init(&m->lazy_lock, NULL))) {
        pthread_mutex_destroy(&m->ctx.pin_lock);
        bm_free(m);
        return -err;
    }
    if ((err = defer_init(&m->ctx.defer))) {
        pthread_mutex_destroy(&m->ctx.pin_lock);
        pthread_mutex_destroy(&m->lazy_lock);
        bm_free(m);
        return err;
    }
    defer_set_housekeeping(&m->ctx.defer, trim_tick, m, TRIM_TICK_MS);
    m->nbuckets = cfg->max_buckets ? cfg->max_buckets : DEFAULT_BUCKETS;
    m->shift = 64 - (uint32_t)__builtin_ctz(m->nbuckets);
    err = stor_drives_open(cfg->drives, cfg->n_drives, &m->drives);
    if (!err && !cfg->restart_path && cfg->n_drives && (err = stor_drives_lock(m->drives, false))) {
        stor_drives_close(m->drives);
        err = err == -EWOULDBLOCK ? BM_ELOCKED : err;
    }
    if (err) {
        pthread_mutex_destroy(&m->ctx.pin_lock);
        pthread_mutex_destroy(&m->lazy_lock);
        defer_fini(&m->ctx.defer);
        bm_free(m);
        return err;
    }
    struct bkt_ctx *ctx = &m->ctx;
    ctx->elem_size = cfg->elem_size;
    ctx->max_search = cfg->max_search ? cfg->max_search : DEFAULT_MAX_SEARCH;
    ctx->max_elems = BM_MAX_VALUE_BYTES / cfg->elem_size;
    /* A bucket's share of the expected keys at 80% load, in whole pages of entries. */
    uint64_t per_page = STOR_PAGE / sizeof(struct bkt_entry), share = cfg->expected_entries / m->nbuckets;
    ctx->first_index_cap = (share * 5 / 4 + per_page - 1) / per_page * per_page;
    if (ctx->first_index_cap < per_page)
        ctx->first_index_cap = per_page;
    ctx->file_flags = (cfg->flags & BM_F_NO_PREALLOC) ? STOR_NO_PREALLOC : 0;
    ctx->drives = m->drives;
    ctx->ctr = &m->ctr;
#ifdef BM_TEST_HOOKS
    const char *fault = getenv("BM_TEST_FAULT");
    if (fault && strncmp(fault, "crash-after=", 12) == 0)
        ctx->crash_countdown = strtoull(fault + 12, NULL, 10);
#endif
    for (unsigned c = 0; c < BKT_NCLASS; c++) {
        uint64_t n = 1ull << c;
        if (n > ctx->max_elems)
            n = ctx->max_elems ? ctx->max_elems : 1;
        ctx->data_cell_size[c] = (uint32_t)((CELL_HEADER + n * cfg->elem_size + 7) & ~7ull);
    }
    m->buckets = bm_aligned_zalloc(_Alignof(struct bkt), (size_t)m->nbuckets * sizeof(struct bkt));
    if (!m->buckets) {
        map_free(m);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < m->nbuckets; i++) {
        if ((err = bkt_init(&m->buckets[i], ctx, i))) {
            m->nbuckets = i; /* fini only what was initialized */
            map_free(m);
            return err;
        }
    }
    if (cfg->restart_path) {
        if ((err = open_persistent(m, cfg))) {
            map_free(m); /* runs what the recovery's own checkpoint deferred, if it got that far */
            return err;
        }
#ifdef BM_TEST_HOOKS
        /* BM_TEST_FAULT=flush-eio: every sync after the open's own checkpoint fails with EIO. */
        const char *f = getenv("BM_TEST_FAULT");
        m->ring_fault_eio = f && strcmp(f, "flush-eio") == 0;
        if (m->ring_ready)
            m->ring.fault_eio = m->ring_fault_eio;
#endif
        m->flush_interval_ms = cfg->flush_interval_ms;
        if (cfg->flush_interval_ms && (err = map_flusher_start(m))) {
            map_free(m);
            return err;
        }
    }
    *out = m;
    return 0;
}

BM_API void bm_close(bm_map *m)
{
    if (!m)
        return;
    rcu_glue_thread_enter();
    /* The maintenance thread (and with it the background checkpoint) stops first; then every deferred
     * release runs here after one grace period, so pinned files have reached the pinned list before the
     * closing checkpoint releases them. No call_rcu barrier: the map defers nothing to liburcu's thread. */
    defer_stop(&m->ctx.defer);
    defer_drain(&m->ctx.defer);
    (void)checkpoint_close(m); /* a failure was sticky and reported to the writers already */
    map_free(m);
}

/* ---- readers ---- */

static inline int check_read(const bm_map *m, const bm_key *k)
{
    if (bm_unlikely(!m || !k))
        return BM_EINVAL;
    if (bm_unlikely(in_update_of(m) || tls_read_depth))
        return BM_EBUSY;
    rcu_glue_thread_enter();
    return 0;
}

BM_API int bm_read(bm_map *m, const bm_key *k, bm_read_fn fn, void *ctx);

/* A get found its bucket not loaded yet (its first touch since a clean open): load it (map_load: outside
 * any read-side section, under the bucket's lock) and read again. Out of line, so the hit path is what it
 * was before lazy loading; it takes kw, not the caller's key: the words are already on bm_get's stack, so
 * the hit path keeps no extra register alive (key_words is a plain copy: the key is its words' bytes). */
static __attribute__((noinline, cold)) int get_after_load(bm_map *m, const uint64_t kw[4], void *out, uint32_t cap,
                                                          uint32_t *n, uint64_t *refcount)
{
    bm_key k;
    memcpy(k.bytes, kw, BM_KEY_LEN);
    int err = map_load(m, map_bucket_for(m, kw));
    return err ? err : bm_get(m, &k, out, cap, n, refcount);
}

BM_API int bm_get(bm_map *m, const bm_key *k, void *out, uint32_t cap, uint32_t *n, uint64_t *refcount)
{
    int err = check_read(m, k);
    if (err)
        return err;
    if (!out && cap)
        return BM_EINVAL;
    uint64_t kw[4];
    key_words(k->bytes, kw);
    struct bkt *b = map_bucket_for(m, kw);
    struct bkt_val v;
    bkt_read_begin(b);
    err = bkt_lookup(b, kw, &v);
    if (!err) {
        uint32_t cp = v.n < cap ? v.n : cap;
        if (cp)
            memcpy(out, v.elems, (size_t)cp * m->ctx.elem_size);
    }
    bkt_read_end(b);
    if (!err) {
        if (n)
            *n = v.n;
        if (refcount)
            *refcount = v.rc;
    } else if (bm_unlikely(err == BKT_UNLOADED)) {
        return get_after_load(m, kw, out, cap, n, refcount);
    }
    return err;
}

BM_API int bm_get_batch(bm_map *m, const bm_key *keys, size_t nkeys, void *out, uint32_t cap, uint32_t *n,
                        uint64_t *refcounts, int *status)
{
    if (bm_unlikely(!m || (nkeys && (!keys || !status)) || (!out && cap)))
        return BM_EINVAL;
    /* The count of found keys is the return value; key i's elements start at byte i * cap * elem_size. */
    if (bm_unlikely(nkeys > INT_MAX || (cap && nkeys > SIZE_MAX / cap / m->ctx.elem_size)))
        return BM_EINVAL;
    if (bm_unlikely(in_update_of(m) || tls_read_depth))
        return BM_EBUSY;
    rcu_glue_thread_enter();
    return map_get_batch(m, keys, nkeys, out, cap, n, refcounts, status);
}

BM_API int bm_read(bm_map *m, const bm_key *k, bm_read_fn fn, void *ctx)
{
    int err = check_read(m, k);
    if (err)
        return err;
    if (!fn)
        return BM_EINVAL;
    uint64_t kw[4];
    key_words(k->bytes, kw);
    struct bkt *b = map_bucket_for(m, kw);
    struct bkt_val v;
    bkt_read_begin(b);
    err = bkt_lookup(b, kw, &v);
    if (!err) {
        bm_value val = {v.elems, v.n, v.rc};
        tls_read_depth++;
        fn(&val, ctx);
        tls_read_depth--;
    }
    bkt_read_end(b);
    if (bm_unlikely(err == BKT_UNLOADED) && !(err = map_load(m, b)))
        return bm_read(m, k, fn, ctx);
    return err;
}

BM_API uint64_t bm_count(bm_map *m)
{
    if (!m)
        return 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < m->nbuckets; i++)
        total += bm_load_rlx(&m->buckets[i].count);
    return total;
}

BM_API int bm_foreach(bm_map *m, bm_foreach_fn fn, void *ctx)
{
    if (!m || !fn)
        return BM_EINVAL;
    if (in_update_of(m) || tls_read_depth)
        return BM_EBUSY;
    rcu_glue_thread_enter();
    struct snap_buf buf = {NULL, 0, 0};
    uint64_t damaged = 0;
    int rc = 0, unloadable = 0;
    for (uint32_t i = 0; i < m->nbuckets && rc == 0; i++) {
        buf.len = 0;
        int lerr = map_load(m, &m->buckets[i]);
        if (lerr) {
            /* Like a damaged entry: the other buckets are still walked, the error comes at the end. */
            unloadable = unloadable ? unloadable : lerr;
            continue;
        }
        rc = bkt_snapshot(&m->buckets[i], &buf, &damaged);
        for (size_t off = 0; rc == 0 && off < buf.len;) {
            const struct snap_rec *r = (const struct snap_rec *)(buf.p + off);
            bm_key key;
            memcpy(key.bytes, r->key, BM_KEY_LEN);
            bm_value v = {r->n ? (const void *)(r + 1) : NULL, r->n, r->rc};
            rc = fn(&key, &v, ctx);
            off += snap_rec_size(r);
        }
    }
    bm_free(buf.p);
    if (rc == 0 && unloadable)
        return unloadable;
    return rc == 0 && damaged ? BM_ECORRUPT : rc;
}

/* ---- writers ---- */

static inline int check_write(bm_map *m, const bm_key *k)
{
    if (bm_unlikely(!m || !k))
        return BM_EINVAL;
    if (bm_unlikely(in_update_of(m) || tls_read_depth))
        return BM_EBUSY;
    if (bm_unlikely(bm_load_rlx(&m->failed)))
        return BM_EFAILED;
    rcu_glue_thread_enter();
    return 0;
}

/* A writer's bucket: loaded (first touch since a clean open), and the map armed (the first write since a
 * clean open commits an unclean record before any store). */
static inline int write_bucket(bm_map *m, const uint64_t kw[4], struct bkt **out)
{
    struct bkt *b = *out = map_bucket_for(m, kw);
    int err = map_load(m, b);
    if (!err && bm_unlikely(!bm_load_acq(&m->armed)))
        err = checkpoint_arm(m);
    return err;
}

BM_API int bm_insert(bm_map *m, const bm_key *k, const void *elems, uint32_t n, uint64_t refcount)
{
    int err = check_write(m, k);
    if (err)
        return err;
    if (n && !elems)
        return BM_EINVAL;
    if (n > m->ctx.max_elems)
        return BM_ETOOBIG;
    uint64_t kw[4];
    key_words(k->bytes, kw);
    struct bkt *b;
    if ((err = write_bucket(m, kw, &b)))
        return err;
    return bkt_upsert(b, kw, elems, n, refcount);
}

BM_API int bm_delete(bm_map *m, const bm_key *k)
{
    int err = check_write(m, k);
    if (err)
        return err;
    uint64_t kw[4];
    key_words(k->bytes, kw);
    struct bkt *b;
    if ((err = write_bucket(m, kw, &b)))
        return err;
    return bkt_remove(b, kw);
}

static int adjref(bm_map *m, const bm_key *k, int delta, uint64_t *out)
{
    int err = check_write(m, k);
    if (err)
        return err;
    uint64_t kw[4];
    key_words(k->bytes, kw);
    struct bkt *b;
    if ((err = write_bucket(m, kw, &b)))
        return err;
    return bkt_adjref(b, kw, delta, out);
}

BM_API int bm_addref(bm_map *m, const bm_key *k, uint64_t *new_refcount) { return adjref(m, k, 1, new_refcount); }
BM_API int bm_unref(bm_map *m, const bm_key *k, uint64_t *new_refcount) { return adjref(m, k, -1, new_refcount); }

BM_API int bm_update(bm_map *m, const bm_key *k, bm_update_fn fn, void *ctx)
{
    int err = check_write(m, k);
    if (err)
        return err;
    if (!fn)
        return BM_EINVAL;
    uint64_t kw[4];
    key_words(k->bytes, kw);
    if (tls_update_depth == UPDATE_NEST_MAX)
        return BM_EBUSY;
    struct bkt *b;
    if ((err = write_bucket(m, kw, &b)))
        return err;
    tls_update_maps[tls_update_depth++] = m;
    err = bkt_update(b, kw, fn, ctx);
    tls_update_depth--;
    return err;
}

/* ---- flush and stats ---- */

BM_API int bm_flush(bm_map *m)
{
    if (!m)
        return BM_EINVAL;
    if (tls_update_depth || tls_read_depth)
        return BM_EBUSY; /* a checkpoint takes every bucket lock of m: never while holding another */
    rcu_glue_thread_enter();
    return map_flush(m);
}

struct stats_walk {
    bm_stats *s;
    uint32_t elem_size;
};

static void stats_file(struct stor_file *f, bool is_index, void *arg)
{
    struct stats_walk *w = arg;
    w->s->files++;
    if (is_index) {
        w->s->index_bytes += f->map_len;
        w->s->index_capacity += f->ncells;
    } else {
        w->s->data_bytes += f->map_len;
    }
}

BM_API void bm_get_stats(bm_map *m, bm_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    if (!m)
        return;
    rcu_glue_thread_enter();
    struct stats_walk w = {out, m->ctx.elem_size};
    for (uint32_t i = 0; i < m->nbuckets; i++) {
        struct bkt *b = &m->buckets[i];
        /* `unloaded` first: once it reads 0 the state is published, so no bucket is counted twice. */
        bool unloaded = bm_load_acq(&b->unloaded) != 0;
        if (unloaded || bm_load_rlx(&b->state)) {
            out->buckets_allocated++;
            for (unsigned c = 0; c < BKT_NCLASS; c++)
                out->data_cells_used += bm_load_rlx(&b->used[c]);
        }
        if (!unloaded) {
            bkt_for_each_file(b, stats_file, &w);
            continue;
        }
        /* Not opened yet: the manifest's records say what its files are. */
        out->buckets_unloaded++;
        const struct manifest_rec *r = m->lazy_recs + m->lazy_first[i];
        for (unsigned j = 0; j < m->lazy_n[i]; j++) {
            out->files++;
            if (r[j].kind == MANIFEST_KIND_INDEX) {
                out->index_bytes += IDX_HEADER_BYTES + r[j].ncells * sizeof(struct bkt_entry);
                out->index_capacity += r[j].ncells;
            } else {
                out->data_bytes += DATA_HEADER_BYTES + r[j].ncells * m->ctx.data_cell_size[r[j].kind - 1];
            }
        }
    }
    out->entries = bm_count(m);
    out->index_grows = bm_load_rlx(&m->ctr.index_grows);
    out->index_failed_grows = bm_load_rlx(&m->ctr.index_failed_grows);
    out->data_grows = bm_load_rlx(&m->ctr.data_grows);
    out->grow_errors = bm_load_rlx(&m->ctr.grow_errors);
    out->grow_ns = bm_load_rlx(&m->ctr.grow_ns);
    out->reader_retries = bm_load_rlx(&m->ctr.reader_retries);
    out->flushes = bm_load_rlx(&m->flushes);
    out->flush_ns = bm_load_rlx(&m->flush_ns);
    out->files_flushed = bm_load_rlx(&m->files_flushed);
    out->orphan_files_removed = bm_load_rlx(&m->ctr.orphan_files_removed);
    out->undo_replayed = bm_load_rlx(&m->ctr.undo_replayed);
    out->shadowed = bm_load_rlx(&m->ctr.shadowed);
    out->recovered_entries_dropped = bm_load_rlx(&m->ctr.recovered_entries_dropped);
    out->recovered_cells_freed = bm_load_rlx(&m->ctr.recovered_cells_freed);
    out->buckets_scrubbed = bm_load_rlx(&m->ctr.buckets_scrubbed);
    out->scrub_ns = bm_load_rlx(&m->ctr.scrub_ns);
    out->bucket_load_errors = bm_load_rlx(&m->load_errors);
}
