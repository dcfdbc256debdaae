/*
 * restart.h — a persistent map's records on disk: the restart file (identity and the two commit-record
 * slots) and the checkpoint manifests.
 *
 * Restart file, 3 pages:
 *   page 0  identity: format, elem_size, max_buckets, max_search, drive count, file-name prefix (written
 *           once, atomically, when the map is created)
 *   page 1  commit slot 0 (even epochs)
 *   page 2  commit slot 1 (odd epochs)
 * A commit record names the checkpoint's epoch, its manifest (by epoch, length and checksum), the entry
 * count, whether the map was closed cleanly, and the counters a reopened map continues from. A checkpoint
 * writes its record into the slot the last good record does not occupy, so a torn write never destroys
 * the record it replaces; open takes the valid record with the highest epoch.
 *
 * Manifest "<prefix>-manifest-<epoch>.bm" in drive 0: every file the checkpoint's state consists of
 * (bucket, kind, drive, name sequence, build generation, cells, and the file's stamp: the clean-close
 * epoch its header carries and its entry / used-cell count as of that stamp). Written and synced before
 * the commit record that names it; immutable afterwards; removed once a later commit names another one.
 * A clean open reads only the commit record and the manifest; each bucket's files are opened when the
 * bucket is first touched and checked against their record then (recovery.c).
 */
#ifndef BM_RESTART_H
#define BM_RESTART_H

#include "bucketmap.h"
#include "runtime/bucket.h"

/* 3: manifest records carry each file's clean-close stamp and count (lazy bucket loading, recovery.c). */
#define RESTART_FORMAT 3u
#define RESTART_FILE_BYTES (3 * 4096)

struct restart_ident {
    uint32_t elem_size, max_buckets, max_search, n_drives;
    char prefix[24];
};

#define COMMIT_MAGIC 0x54494d4d4f434d42ull /* "BMCOMMIT" */
struct commit_rec {
    uint64_t magic;
    uint64_t epoch;
    uint64_t manifest_epoch; /* 0: no files */
    uint64_t manifest_len;
    uint64_t manifest_sum;
    uint64_t count;    /* entries at the checkpoint */
    uint64_t next_gen; /* build counter to continue from */
    uint64_t name_seq; /* file-name counter to continue from */
    uint32_t clean;    /* 1: written by bm_close after everything was synced: open needs no scrub */
    uint32_t nfiles;
    uint64_t boot;     /* hash of the kernel's boot id when written (recovery.c: SIGKILL or power loss) */
    uint64_t sum;
};

#define MANIFEST_KIND_INDEX 0u /* data files: 1 + class */
struct manifest_rec {
    uint32_t bucket;
    uint32_t kind;
    uint32_t drive;
    uint32_t reserved;
    uint64_t seq;
    uint64_t gen;
    uint64_t ncells;
    /* The stamp: the epoch of the clean close that last wrote the file's header `closed` field, and the
     * file's count then (index: entries; data: used cells). A file is restamped only at a clean close after
     * it was written, so a file whose header differs from its record is a stale copy (recovery.c); and
     * after a clean close the counts are exact, so bm_count needs no file opened. 0/0: never stamped. */
    uint64_t stamp;
    uint64_t count;
};
_Static_assert(sizeof(struct manifest_rec) == 56, "manifest record layout");

/* Reads and checks the identity. 0, -ENOENT (missing), BM_ECORRUPT, BM_EVERSION, or another negated errno. */
int restart_read(const char *path, struct restart_ident *id, uint32_t *format);

/* Creates path atomically (a temporary file opened exclusively, never through a symlink; fsync, rename,
 * fsync of the directory) with the identity and commit 0 (an empty map). 0 or a negated errno. */
int restart_write(const char *path, const struct restart_ident *id);

/* Salvage: rewrites a damaged identity page in place (the commit slots are kept as they are; a short file is
 * extended). 0 or a negated errno. */
int restart_rewrite_identity(const char *path, const struct restart_ident *id);

/* Salvage: the prefix of the only map whose manifests are in dir; -ENOENT for none, BM_ECORRUPT for several. */
int restart_find_prefix(const char *dir, char prefix[24]);

/* Opens the restart file for commits. fd or a negated errno. */
int restart_open_rw(const char *path);

/* The valid commit record with the highest epoch; BM_ECORRUPT when neither slot holds one. */
int restart_read_commit(int fd, struct commit_rec *out);

/* Writes c (its sum filled in here) into slot c->epoch % 2 and fdatasyncs. 0 or a negated errno. */
int restart_write_commit(int fd, struct commit_rec *c);

/* A checksum of a file set, to tell whether a checkpoint's manifest would differ from the last one. */
uint64_t manifest_recs_sum(const struct manifest_rec *r, size_t n);

void manifest_name(const char *prefix, uint64_t epoch, char *buf, size_t len);

/* Creates the manifest of `epoch` in dir (exclusively; a leftover of an unfinished checkpoint with the same
 * name is replaced) and fdatasyncs it; *len and *sum describe it for the commit record. */
int manifest_write(const char *dir, const char *prefix, uint64_t epoch, const struct manifest_rec *recs,
                   uint32_t n, uint64_t *len, uint64_t *sum);

/* Reads the manifest a commit record names and checks its length and sum. *recs is bm_malloc'ed.
 * 0, -ENOENT, BM_ECORRUPT, -ENOMEM or another negated errno. */
int manifest_read(const char *dir, const char *prefix, const struct commit_rec *c, struct manifest_rec **recs,
                  uint32_t *n);

/* File names: "<prefix:16 hex>-b<bucket>-idx-<seq>.bm", "<prefix>-b<bucket>-d<class>-<seq>.bm",
 * "<prefix>-manifest-<epoch>.bm". */
struct parsed_name {
    char prefix[17];
    uint32_t bucket;
    int kind; /* MANIFEST_KIND_INDEX, 1 + class, or -1 for a manifest */
    uint64_t seq; /* manifests: epoch */
};
bool restart_parse_name(const char *name, struct parsed_name *p);
void restart_file_name(const char *prefix, uint32_t bucket, uint32_t kind, uint64_t seq, char *buf, size_t len);

/* True when some drive holds files named like a bucketmap map's (any prefix). */
bool restart_drives_hold_map_files(const struct stor_drives *d);

#endif
