/* inspect.c — the read-only inspection API (bmctl's view of a map). */
#include "runtime/map.h"

#include "common/bm_mem.h"
#include "runtime/bucket_int.h"
#include "runtime/restart.h"

#include <stdio.h>
#include <string.h>

BM_API uint32_t bm_bucket_count(bm_map *m) { return m ? m->nbuckets : 0; }

BM_API int bm_bucket_info_get(bm_map *m, uint32_t bucket, bm_bucket_info *out)
{
    if (!m || !out || bucket >= m->nbuckets)
        return BM_EINVAL;
    rcu_glue_thread_enter();
    int err = map_load(m, &m->buckets[bucket]);
    return err ? err : bkt_info(&m->buckets[bucket], out);
}

BM_API int bm_verify(bm_map *m, bm_verify_report *out)
{
    if (!m || !out)
        return BM_EINVAL;
    if (map_in_callback())
        return BM_EBUSY; /* it takes every bucket lock in turn */
    rcu_glue_thread_enter();
    memset(out, 0, sizeof(*out));
    int load_err = 0;
    for (uint32_t i = 0; i < m->nbuckets; i++) {
        struct bkt *b = &m->buckets[i];
        if (bm_load_acq(&b->unloaded)) {
            char why[sizeof(out->error)];
            int err = recovery_load_bucket(m, b, why, sizeof(why));
            if (err) {
                if (!load_err) {
                    load_err = err;
                    memcpy(out->error, why, sizeof(out->error));
                }
                out->unloadable_buckets++;
                continue;
            }
        }
        bkt_verify(b, out);
    }
    out->orphan_files_removed = m->ctr.orphan_files_removed;
    out->undo_replayed = m->ctr.undo_replayed;
    bool bad = out->bad_entry_sums || out->bad_cells || out->bad_refs || out->misplaced || out->orphan_cells ||
               out->count_mismatches;
    return load_err ? load_err : bad ? BM_ECORRUPT : 0;
}

BM_API int bm_read_restart_info(const char *restart_path, bm_restart_info *out)
{
    if (!restart_path || !out)
        return BM_EINVAL;
    struct restart_ident id;
    uint32_t format = 0;
    int err = restart_read(restart_path, &id, &format);
    if (err)
        return err;
    out->format = format;
    out->elem_size = id.elem_size;
    out->max_buckets = id.max_buckets;
    out->max_search = id.max_search;
    out->n_drives = id.n_drives;
    return 0;
}

/* ---- per bucket ---- */

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
    (void)bkt_lock(b); /* bm_verify refuses inside callbacks, so no other bucket lock is held here */
    struct bkt_state *st = b->state;
    if (!st) {
        bkt_unlock(b);
        return;
    }
    struct bkt_ctx *ctx = b->ctx;
    struct idx_header *h = idx_hdr(st);
    uint8_t *seen[BKT_NCLASS] = {0};
    for (unsigned c = 0; c < BKT_NCLASS; c++)
        if (st->data[c] && !(seen[c] = bm_calloc((st->data[c]->ncells + 7) / 8, 1)))
            r->bad_cells++; /* out of memory: reported as unverifiable rather than clean */
    uint64_t live = 0, win = window(ctx, st->cap);
    for (uint64_t i = 0; i < st->cap; i++) {
        const struct bkt_entry *e = &st->entries[i];
        unsigned tag = entry_tag(e->state);
        if (tag == TAG_FREE)
            continue;
        bool shadow = (e->state & ENTRY_SHADOW) != 0;
        if (!shadow) {
            live++;
            r->entries++;
            uint64_t d = disp_of(e->key, st->seed, st->cap, i);
            if (d >= win || d > h->max_disp || live_slot(ctx, st, e->key, false) != (int64_t)i)
                r->misplaced++;
            if (e->rc == 0)
                r->zero_refcounts++;
        }
        struct entry_snap s = entry_snap_of(e);
        struct bkt_val v;
        uint32_t cs = 0;
        int err = (e->state & ENTRY_BUSY) ? BM_ECORRUPT : resolve(st, ctx, e->key, &s, &v, &cs);
        if (tag == TAG_DATA) {
            uint32_t n = (uint32_t)e->p[1];
            unsigned c = size_class(n);
            if (n == 0 || n > ctx->max_elems || !cell_ref_ok(st, c, e->p[0])) {
                r->bad_refs++;
                continue;
            }
            uint64_t ci = cell_index(st, c, e->p[0]);
            uint64_t hdr = *(const uint64_t *)stor_cell(st->data[c], ci);
            if (!(hdr & CELL_OCCUPIED) || (seen[c] && mark_ref(seen, c, ci))) {
                r->bad_refs++;
                continue;
            }
            cs = cell_hdr_sum(hdr);
        }
        if (err) {
            /* The entry matches the sum its cell claims: the elements are what is damaged. */
            if (tag == TAG_DATA && !(e->state & ENTRY_BUSY) && entry_sum_ok(e->state, e->key, e->rc, e->p[0], e->p[1], cs))
                r->bad_cells++;
            else
                r->bad_entry_sums++;
        }
    }
    if (live != h->count)
        r->count_mismatches++;
    /* Cells awaiting reuse are legitimately unreferenced. */
    for (uint64_t p = 0; p < b->npend; p++) {
        const struct pend_item *it = &b->pend[p];
        if (it->kind == PEND_CELL && cell_ref_ok(st, it->cls, it->a) && seen[it->cls])
            mark_ref(seen, it->cls, cell_index(st, it->cls, it->a));
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
    bkt_unlock(b);
}
