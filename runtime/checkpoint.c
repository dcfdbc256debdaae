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
 *      buckets go on; writes after a bucket's cut belong to E+1.
 *   2. Sync, in one io_uring batch over all drives: every collected file and every drive directory (new
 *      files' names). Pages written after the cut may go along; that is harmless.
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

static void take_file(struct collect *c, struct stor_file *f, uint32_t bucket, uint32_t kind, uint64_t gen)
{
    c->recs[c->nrecs++] = (struct manifest_rec){bucket, kind, (uint32_t)f->drive, 0, f->seq, gen, f->ncells};
    if (__atomic_load_n(&f->dirty, __ATOMIC_RELAXED)) {
        __atomic_store_n(&f->dirty, 0, __ATOMIC_RELAXED);
        c->files[c->n] = f;
        c->fds[c->n++] = f->fd;
    }
}

/* Step 1 for one bucket (see NOTES). A clean-close checkpoint also stamps every file with its epoch, so a
 * clean open can tell a stale copy of a file (put back from a backup, say) from the file itself. */
static int cut_bucket(struct bkt *b, struct collect *c, uint64_t *count, uint64_t closing)
{
    (void)bkt_lock(b); /* checkpoints run with no bucket lock held (bm_flush refuses inside callbacks) */
    struct bkt_state *st = b->state;
    if (st) {
        unsigned nfiles = 1;
        for (unsigned k = 0; k < BKT_NCLASS; k++)
            nfiles += st->data[k] != NULL;
        if (grow_arrays(c, nfiles)) {
            bkt_unlock(b);
            return -ENOMEM;
        }
        if (closing) {
            idx_hdr(st)->closed = closing;
            stor_file_touch(st->index);
            for (unsigned k = 0; k < BKT_NCLASS; k++)
                if (st->data[k]) {
                    data_hdr(st, k)->closed = closing;
                    stor_file_touch(st->data[k]);
                }
        }
        take_file(c, st->index, b->ix, MANIFEST_KIND_INDEX, idx_hdr(st)->gen);
        for (unsigned k = 0; k < BKT_NCLASS; k++)
            if (st->data[k])
                take_file(c, st->data[k], b->ix, 1 + k, data_hdr(st, k)->gen);
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
    uint64_t t0 = now_ns(), E = m->epoch, count = 0;
    struct collect c = {0};
    int err = 0;
    BM_PROBE2(checkpoint_start, E, clean);
    uint32_t cut = 0;
    size_t nsynced = 0;
    /* 1. cut */
    for (; cut < m->nbuckets && !err; cut++)
        err = cut_bucket(&m->buckets[cut], &c, &count, clean ? E : 0);
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
    for (uint32_t i = 0; i < m->drives->n; i++)
        c.fds[c.n++] = m->dir_fds[i];
    /* 2. sync */
    if ((err = stor_ring_sync(&m->ring, c.fds, c.n, true)))
        goto failed;
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

int checkpoint_close(bm_map *m)
{
    if (!m->persistent)
        return 0;
    int err = checkpoint_run(m, false);
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

static void flusher_tick(void *arg) { (void)map_flush(arg); }

int map_flusher_start(bm_map *m) { return defer_set_periodic(&m->ctx.defer, flusher_tick, m, m->flush_interval_ms); }
