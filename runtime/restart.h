/*
 * restart.h — a persistent map's identity on disk and the reopening of its files.
 *
 * The restart file holds only what never changes for a map: format, elem_size, max_buckets, max_search,
 * the number of drives, and the random prefix of its file names. The files themselves are self-describing
 * (index and data headers carry bucket, class, capacity and a build generation, and a magic number written
 * last), so reopening is: validate the restart file, list the drives, keep each bucket's newest complete
 * files, remove the rest (unfinished or superseded grows), and let each bucket recover its undo record.
 * Nothing is rewritten at close and nothing depends on a clean shutdown.
 */
#ifndef BM_RESTART_H
#define BM_RESTART_H

#include "bucketmap.h"
#include "runtime/bucket.h"

#define RESTART_FORMAT 1u

struct restart_ident {
    uint32_t elem_size, max_buckets, max_search, n_drives;
    char prefix[24];
};

/* Reads and checks path. 0, -ENOENT (missing), BM_ECORRUPT, BM_EVERSION, or another negated errno. */
int restart_read(const char *path, struct restart_ident *id, uint32_t *format);

/* Writes path atomically (temporary file, fsync, rename, fsync of the directory). 0 or a negated errno. */
int restart_write(const char *path, const struct restart_ident *id);

/* True when some drive holds files named like a bucketmap map's (any prefix). */
bool restart_drives_hold_map_files(const struct stor_drives *d);

/* Adopts every bucket's newest complete files from the drives (prefix from the restart file); removes
 * superseded or unfinished ones. Buckets must be initialized and empty. 0, BM_ECORRUPT, or -errno. */
int restart_adopt(struct stor_drives *d, struct bkt *buckets, uint32_t nbuckets, struct bkt_ctx *ctx);

#endif
