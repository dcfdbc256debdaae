/* inspect.c — the read-only inspection API (bmctl's view of a map). */
#include "runtime/map.h"
#include "runtime/restart.h"

#include <string.h>

BM_API uint32_t bm_bucket_count(bm_map *m) { return m ? m->nbuckets : 0; }

BM_API int bm_bucket_info_get(bm_map *m, uint32_t bucket, bm_bucket_info *out)
{
    if (!m || !out || bucket >= m->nbuckets)
        return BM_EINVAL;
    rcu_glue_thread_enter();
    return bkt_info(&m->buckets[bucket], out);
}

BM_API int bm_verify(bm_map *m, bm_verify_report *out)
{
    if (!m || !out)
        return BM_EINVAL;
    rcu_glue_thread_enter();
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < m->nbuckets; i++)
        bkt_verify(&m->buckets[i], out);
    out->orphan_files_removed = m->ctr.orphan_files_removed;
    out->undo_replayed = m->ctr.undo_replayed;
    bool bad = out->bad_entry_sums || out->bad_cells || out->bad_refs || out->misplaced || out->orphan_cells ||
               out->count_mismatches;
    return bad ? BM_ECORRUPT : 0;
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
