/* Which systems a bench binary carries. The ablation library exports the same bm_* symbols as the real
 * one, so bm-bench-rwlock (BENCH_RWLOCK) carries only the ablation, and bm-bench carries everything else. */
#include <string.h>

#include "system.h"

#ifdef BENCH_RWLOCK
static const sys_ops *const all[] = {&sys_bucketmap, &sys_bucketmap_tmp};
#else
static const sys_ops *const all[] = {&sys_bucketmap, &sys_bucketmap_tmp, &sys_lfht, &sys_lmdb, &sys_lmdb_wmap};
#endif

const sys_ops *sys_find(const char *name)
{
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(all[i]->name, name))
            return all[i];
    return NULL;
}

const char *sys_default_list(void)
{
#ifdef BENCH_RWLOCK
    return "rwlock";
#else
    return "bucketmap,bucketmap-tmp,lfht,lmdb,lmdb-wmap";
#endif
}
