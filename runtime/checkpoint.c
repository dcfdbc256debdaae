/*
 * checkpoint.c — the durability protocol: bm_flush as an atomic checkpoint, the background flusher (a
 * periodic task of the map's maintenance thread, runtime/defer.h), and the releases a committed checkpoint
 * allows.
 *
 * NOTES (the order of durable writes; every number is a barrier the next step waits for)
 *
 *   Epochs. Every write belongs to its bucket's epoch E. A checkpoint of epoch E:
 *   1. Cut: for each bucket in turn, under its lock: note the bucket's current files for the manifest,
 *      collect (and clear the dirty flags of) the ones written since the last checkpoint, advance the
 *      bucket to epoch E+1, and freeze every entry now in the index (bucket.c I6). Writers of other
 *      buckets go on; writes after a bucket's cut belong to E+1. A bucket a clean open has not loaded
 *      (recovery.c) is unchanged since that open's commit: its manifest records are carried over as they
 *      are, and none of its files is opened.
 *   2. Sync, in one io_uring batch over all drives: every collected file and every drive directory (new
 *      files' names). Pages written after the cut may go along; that is harmless. With no collected file
 *      nothing is synced: every file created since the last checkpoint is dirty, so no new name exists.
 *   3. Manifest: if the set of files differs from the last commit's, write "<prefix>-manifest-<E>.bm" in
 *      drive 0, fdatasync it, fsync drive 0.
 *   4. Commit record: write (epoch E, manifest, count, clean flag, counters) into the restart file's slot
 *      E % 2, which is not the slot of the last good record; fdatasync. From here the checkpoint is
 *      durable; a power loss at any earlier moment leaves the previous record the newest valid one.
 *   5. Releases (nothing below is needed for durability): wait for a grace period; free the cells and
 *      clear the shadowed slots queued in epochs <= E; files replaced in epochs <= E stop being pinned and
 *      become spares; the manifest the previous record named is removed.
 *
 *   What makes the state a checkpoint names survive a power loss until the next one commits:
 *   - its files are never recycled, zeroed, resized or removed (pinned, bucket_grow.c);
 *   - its entries never move and are never overwritten by another key or by a value whose cell the disk
 *     may not have (bucket.c I6); cells it names are never reused (bucket_cells.c);
 *   - the records that describe it (commit record, manifest) are never overwritten.
 *   Recovery (recovery.c) then opens exactly the files the newest valid record names and repairs the
 *   mix of pages it finds.
 *
 *   Checkpoints are serialized (ckpt_lock): the background flusher and a caller's bm_flush never
 *   interleave, so bm_flush returns only after a checkpoint that began after it was called.
 *
 *   Clean open, arming, clean close. A clean open writes nothing (recovery.c): its newest record is the
 *   clean one, which describes the map exactly until something is written. The first write commits an
 *   unclean record (checkpoint_arm: epoch E, same manifest, into the other slot) before it stores
 *   anything, so a crash after it makes the next open repair instead of trusting headers. Until then
 *   ("unarmed") a checkpoint or close has nothing to do and returns at once. Close of an armed map: a
 *   checkpoint unless no file is dirty (then the last commit holds the state, and nothing waits for a
 *   newer one), every deferred release, then the clean checkpoint. The clean checkpoint stamps a file
 *   (header `closed` = E, manifest record stamp and count) only if it was written since its stamp
 *   (stor_file.restamp, set when a checkpoint collects it dirty): a close syncs what changed, and a stale
 *   copy of any file still carries another stamp than its record (recovery.c checks at first touch).
 *
 *   An fsync error is sticky: Linux may have dropped the dirty pages it failed to write, so retrying
 *   could report success for lost data. The map then refuses writes (BM_EFAILED) and keeps serving reads.
 *   Running out of memory while collecting is not an I/O error: the cut-short checkpoint puts the dirty
 *   flags back and returns -ENOMEM, and the map stays usable.
 */
#include "runtime/map.h"

#include "common/bm_atomic.h"
#include "common/bm_mem.h"
#include "common/bm_probes.h"
#include "runtime/bucket_int.h"
#include "runtime/restart.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct collect {
    struct stor_file **files; /* dirty files of the checkpoint (their flags were cleared) */
    int *fds;
    size_t n, cap;
    struct manifest_rec *recs;
    size_t nrecs, recs_cap;
    int err;
};

static int grow_arrays(struct collect *c, size_t files)
{
    if (c->n + files > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        while (cap < c->n + files)
            cap *= 2;
        struct stor_file **f = bm_realloc(c->files, cap * sizeof(*f));
        if (f)
            c->files = f;
        int *fd = f ? bm_realloc(c->fds, cap * sizeof(*fd)) : NULL;
        if (!fd)
            return -ENOMEM;
        c->fds = fd;
        c->cap = cap;
    }
    if (c->nrecs + files > c->recs_cap) {
        size_t cap = c->recs_cap ? c->recs_cap * 2 : 256;
        while (cap < c->nrecs + files)
            cap *= 2;
        struct manifest_rec *r = bm_realloc(c->recs, cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        c->recs = r;
        c->recs_cap = cap;
    }
    return 0;
}

/* The file's record (with the stamp the manifest keeps for it) and, when written since the last checkpoint,
 * its fd for the sync. A file written since its stamp is restamped at the next clean close. */
static void take_file(struct collect *c, struct stor_file *f, uint32_t bucket, uint32_t kind, uint64_t gen,
                      bool closing)
{
    c->recs[c->nrecs++] = (struct manifest_rec){bucket, kind, (uint32_t)f->drive, 0, f->seq, gen, f->ncells,
                                                f->stamp, f->stamp_count};
    if (__atomic_load_n(&f->dirty, __ATOMIC_RELAXED)) {
        __atomic_store_n(&f->dirty, 0, __ATOMIC_RELAXED);
        if (!closing)
            f->restamp = true;
        c->files[c->n] = f;
        c->fds[c->n++] = f->fd;
    }
}

/* Clean close: a file written since its stamp gets this close's epoch in its header (`closed`), and its
 * record the new stamp and count. An unwritten file keeps the stamp it has, so a close rewrites and syncs
 * only what changed; a clean open then tells a stale copy of any file (put back from a backup, say) from
 * the file itself by comparing the header with the record (recovery.c). */
static void stamp_file(struct stor_file *f, uint64_t *closed, uint64_t count, uint64_t epoch)
{
    if (!f->restamp && !__atomic_load_n(&f->dirty, __ATOMIC_RELAXED))
        return;
    *closed = epoch;
    f->stamp = epoch;
    f->stamp_count = count;
    f->restamp = false;
    stor_file_touch(f);
}

/* Step 1 for one bucket (see NOTES). closing: the clean close's epoch (stamps), else 0. A bucket a clean
 * open has not loaded is unchanged since that open's commit: its records go into the manifest as they
 * were, and none of its files is opened. */
static int cut_bucket(bm_map *m, struct bkt *b, struct collect *c, uint64_t *count, uint64_t closing)
{
    (void)bkt_lock(b); /* checkpoints run with no bucket lock held (bm_flush refuses inside callbacks) */
    struct bkt_state *st = b->state;
    if (bm_load_rlx(&b->unloaded)) {
        unsigned nrec = m->lazy_n[b->ix];
        if (grow_arrays(c, nrec)) {
            bkt_unlock(b);
            return -ENOMEM;
        }
        memcpy(&c->recs[c->nrecs], &m->lazy_recs[m->lazy_first[b->ix]], nrec * sizeof(*c->recs));
        c->nrecs += nrec;
    } else if (st) {
        unsigned nfiles = 1;
        for (unsigned k = 0; k < BKT_NCLASS; k++)
            nfiles += st->data[k] != NULL;
        if (grow_arrays(c, nfiles)) {
            bkt_unlock(b);
            return -ENOMEM;
        }
        if (closing) {
            stamp_file(st->index, &idx_hdr(st)->closed, idx_hdr(st)->count, closing);
            for (unsigned k = 0; k < BKT_NCLASS; k++)
                if (st->data[k])
                    stamp_file(st->data[k], &data_hdr(st, k)->closed, data_hdr(st, k)->used, closing);
        }
        take_file(c, st->index, b->ix, MANIFEST_KIND_INDEX, idx_hdr(st)->gen, closing);
        for (unsigned k = 0; k < BKT_NCLASS; k++)
            if (st->data[k])
                take_file(c, st->data[k], b->ix, 1 + k, data_hdr(st, k)->gen, closing);
        if (b->movable) {
            memset(b->movable, 0, (st->cap + 63) / 64 * sizeof(uint64_t));
            b->all_movable = false;
        }
    }
    b->epoch++;
    *count += bm_load_rlx(&b->count);
    bkt_unlock(b);
    return 0;
}

/* Step 5 for files: pinned files of epochs <= upto go back to their bucket's spares. */
static void release_pinned(bm_map *m, uint64_t upto)
{
    struct bkt_ctx *ctx = &m->ctx;
    struct pinned_file *keep = NULL, *go = NULL;
    pthread_mutex_lock(&ctx->pin_lock);
    for (struct pinned_file *p = ctx->pinned, *next; p; p = next) {
        next = p->next;
        struct pinned_file **to = p->retire_epoch <= upto ? &go : &keep;
        p->next = *to;
        *to = p;
    }
    ctx->pinned = keep;
    pthread_mutex_unlock(&ctx->pin_lock);
    for (struct pinned_file *p = go, *next; p; p = next) {
        next = p->next;
        grow_keep_spare(p->owner, p->slot, p->f);
        bm_free(p);
    }
}

static void remove_manifest(bm_map *m, uint64_t epoch)
{
    if (!epoch)
        return;
    char name[96], path[4096];
    manifest_name(m->drives->prefix, epoch, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", m->drives->dirs[0], name);
    unlink(path);
}

int checkpoint_run(bm_map *m, bool clean)
{
    if (!m->persistent)
        return 0;
    pthread_mutex_lock(&m->ckpt_lock);
    if (bm_load_rlx(&m->failed)) {
        pthread_mutex_unlock(&m->ckpt_lock);
        return BM_EFAILED;
    }
    if (!bm_load_acq(&m->armed)) {
        /* Nothing was written since a clean open (a write arms the map before it stores anything, and a
         * write that returned before this call did so before it): the clean record describes the map. */
        bm_add_rlx(&m->flushes, 1);
        pthread_mutex_unlock(&m->ckpt_lock);
        return 0;
    }
    if (!m->ring_ready) {
        /* Created by the first checkpoint with something to do, not at open: a map that is only read
         * never pays for setting up (and tearing down) the ring. */
        int e = stor_ring_init(&m->ring, 256);
        if (e) {
            pthread_mutex_unlock(&m->ckpt_lock);
            return e;
        }
        m->ring.fault_eio = m->ring_fault_eio;
        m->ring_ready = true;
    }
    uint64_t t0 = now_ns(), E = m->epoch, count = 0;
    struct collect c = {0};
    int err = 0;
    BM_PROBE2(checkpoint_start, E, clean);
    uint32_t cut = 0;
    size_t nsynced = 0;
    /* 1. cut */
    for (; cut < m->nbuckets && !err; cut++)
        err = cut_bucket(m, &m->buckets[cut], &c, &count, clean ? E : 0);
    if (!err && grow_arrays(&c, m->drives->n))
        err = -ENOMEM;
    if (err) {
        /* Nothing was synced: put the flags back; the buckets already cut just wait for the next commit. */
        for (size_t i = 0; i < c.n; i++)
            stor_file_touch(c.files[i]);
        goto out;
    }
    size_t nfiles = c.n;
    nsynced = nfiles;
    /* 2. sync. The directories only along with files: every file created since the last checkpoint is
     * dirty (a grow touches what it builds), so with no dirty file no name needs to become durable (a
     * removed name need not: open ignores or removes files no commit names). */
    if (nfiles) {
        for (uint32_t i = 0; i < m->drives->n; i++)
            c.fds[c.n++] = m->dir_fds[i];
        if ((err = stor_ring_sync(&m->ring, c.fds, c.n, true)))
            goto failed;
    }
    /* 3. manifest */
    struct commit_rec rec = {0};
    rec.epoch = E;
    uint64_t sum = manifest_recs_sum(c.recs, c.nrecs), old_manifest = m->manifest_epoch;
    if (c.nrecs == 0) {
        rec.manifest_epoch = 0;
    } else if (m->manifest_epoch && sum == m->manifest_recs_sum && c.nrecs == m->manifest_nfiles) {
        rec.manifest_epoch = m->manifest_epoch;
        rec.manifest_len = m->manifest_len;
        rec.manifest_sum = m->manifest_sum;
    } else {
        rec.manifest_epoch = E;
        if ((err = manifest_write(m->drives->dirs[0], m->drives->prefix, E, c.recs, (uint32_t)c.nrecs,
                                  &rec.manifest_len, &rec.manifest_sum)) ||
            (err = stor_ring_sync(&m->ring, &m->dir_fds[0], 1, false)))
            goto failed;
    }
    /* 4. commit record */
    rec.count = count;
    rec.next_gen = bm_load_rlx(&m->ctx.next_gen);
    rec.name_seq = bm_load_rlx(&m->drives->name_seq);
    rec.clean = clean;
    rec.nfiles = (uint32_t)c.nrecs;
    rec.boot = m->boot_id;
    if ((err = restart_write_commit(m->restart_fd, &rec)))
        goto failed;
    m->committed_epoch = E;
    m->epoch = E + 1;
    m->manifest_epoch = rec.manifest_epoch;
    m->manifest_len = rec.manifest_len;
    m->manifest_sum = rec.manifest_sum;
    m->manifest_recs_sum = sum;
    m->manifest_nfiles = (uint32_t)c.nrecs;
    if (old_manifest != rec.manifest_epoch)
        remove_manifest(m, old_manifest);
    bm_add_rlx(&m->flushes, 1);
    bm_add_rlx(&m->files_flushed, nfiles);
    /* 5. releases */
    rcu_glue_synchronize();
    for (uint32_t i = 0; i < m->nbuckets; i++) {
        struct bkt *b = &m->buckets[i];
        if (!bm_load_rlx(&b->state))
            continue;
        (void)bkt_lock(b);
        pend_release_epoch(b, E);
        bkt_unlock(b);
    }
    release_pinned(m, E);
    goto out;
failed:
    bm_store_rlx(&m->failed, 1);
out:;
    uint64_t ns = now_ns() - t0;
    bm_add_rlx(&m->flush_ns, ns);
    /* files: data and index files this checkpoint synced (0 when it failed before the sync) */
    BM_PROBE4(checkpoint_end, E, err ? 0 : nsynced, err, ns);
    (void)nsynced;
    pthread_mutex_unlock(&m->ckpt_lock);
    bm_free(c.files);
    bm_free(c.fds);
    bm_free(c.recs);
    return err;
}

int map_flush(bm_map *m) { return checkpoint_run(m, false); }

/* Whether some file of a loaded bucket was written since the last checkpoint cut it (no other call runs). */
static bool anything_dirty(bm_map *m)
{
    bool dirty = false;
    rcu_glue_read_lock();
    for (uint32_t i = 0; i < m->nbuckets && !dirty; i++) {
        const struct bkt_state *st = rcu_glue_deref(m->buckets[i].state);
        if (!st)
            continue;
        dirty = __atomic_load_n(&st->index->dirty, __ATOMIC_RELAXED) != 0;
        for (unsigned k = 0; k < BKT_NCLASS && !dirty; k++)
            dirty = st->data[k] && __atomic_load_n(&st->data[k]->dirty, __ATOMIC_RELAXED);
    }
    rcu_glue_read_unlock();
    return dirty;
}

int checkpoint_close(bm_map *m)
{
    if (!m->persistent || !bm_load_acq(&m->armed))
        return 0; /* never written since a clean open: the clean record stands, no file was touched */
    /* With no file written since the last commit, that commit already holds the state, and nothing waits
     * for a later one (a queued release or a replaced file comes from a write, which dirtied a file): the
     * first checkpoint would commit the same state again. */
    int err = anything_dirty(m) ? checkpoint_run(m, false) : 0;
    if (err)
        return err;
    /* No reader is left: everything queued may go, so the clean state holds no shadow, no waiting cell. */
    for (uint32_t i = 0; i < m->nbuckets; i++) {
        struct bkt *b = &m->buckets[i];
        (void)bkt_lock(b);
        pend_release_all(b);
        bkt_unlock(b);
    }
    release_pinned(m, UINT64_MAX);
    return checkpoint_run(m, true);
}

int checkpoint_arm(bm_map *m)
{
    /* Inside a bm_update callback this thread holds another map's bucket lock: it must not wait for a
     * checkpoint of this map, which may be waiting for bucket locks (header "Callbacks"). */
    if (map_in_callback()) {
        if (pthread_mutex_trylock(&m->ckpt_lock))
            return BM_EBUSY;
    } else {
        pthread_mutex_lock(&m->ckpt_lock);
    }
    int err = 0;
    if (bm_load_rlx(&m->failed)) {
        err = BM_EFAILED;
    } else if (!bm_load_rlx(&m->armed)) {
        /* The same state as the clean record, marked unclean: a crash after the write that follows makes
         * the next open repair (scrub) instead of trusting the headers. Its own epoch, in the other slot,
         * so the clean record stays intact until this one is durable. */
        struct commit_rec rec = {0};
        rec.epoch = m->epoch;
        rec.manifest_epoch = m->manifest_epoch;
        rec.manifest_len = m->manifest_len;
        rec.manifest_sum = m->manifest_sum;
        rec.count = m->committed_count;
        rec.next_gen = bm_load_rlx(&m->ctx.next_gen);
        rec.name_seq = bm_load_rlx(&m->drives->name_seq);
        rec.clean = 0;
        rec.nfiles = m->manifest_nfiles;
        rec.boot = m->boot_id;
        if ((err = restart_write_commit(m->restart_fd, &rec))) {
            bm_store_rlx(&m->failed, 1);
        } else {
            m->committed_epoch = m->epoch;
            m->epoch++; /* the buckets were opened at this epoch already (open_lazy) */
            bm_store_rel(&m->armed, 1);
        }
    }
    pthread_mutex_unlock(&m->ckpt_lock);
    return err;
}

static void flusher_tick(void *arg) { (void)map_flush(arg); }

int map_flusher_start(bm_map *m) { return defer_set_periodic(&m->ctx.defer, flusher_tick, m, m->flush_interval_ms); }
