/*
 * stor_file.h — one memory-mapped file of fixed-size cells behind a page-aligned header.
 *
 *   [ header: header_bytes (a page multiple) ][ cell 0 ][ cell 1 ] ... [ cell ncells-1 ]
 *
 * A file is created at its final size and preallocated (fallocate), so stores into the mapping never fault
 * on a full disk (a sparse file would raise SIGBUS there). Growing a storage means building a larger file
 * beside the old one: the file itself never changes size while mapped.
 *
 * The fd stays open for the life of the file: flushes (fsync, sync_file_range) need it.
 * Thread safety: none inside; the owner (a bucket) serializes creation and destruction, and readers only
 * dereference the mapping, which stays valid until stor_file_destroy.
 */
#ifndef STOR_FILE_H
#define STOR_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STOR_PAGE 4096u

struct stor_file {
    uint8_t *base;          /* the mapping: header then cells */
    uint64_t ncells;
    uint32_t cell_size;
    uint32_t header_bytes;
    size_t map_len;
    size_t resv_len;        /* address space held at base (>= map_len): room for stor_file_regrow */
    int fd;
    int drive;              /* index into the map's drive set */
    bool created;           /* this process created it: only such files are ever unlinked at close */
    uint32_t dirty;         /* atomic: written since the last checkpoint picked it up */
    uint64_t epoch;         /* the owner's: checkpoint epoch the current contents were built in */
    uint64_t seq;           /* the owner's: sequence number in the file name */
    uint64_t stamp;         /* the owner's: clean-close epoch in the header, as the manifest records it */
    uint64_t stamp_count;   /* the owner's: the count the manifest records with that stamp */
    bool restamp;           /* the owner's: written since stamped (checkpoint lock) */
    char *path;
    char *name;             /* path's last component (what the restart file records) */
};

enum stor_create_flags {
    STOR_NO_PREALLOC = 1u << 0, /* sparse file (ftruncate) instead of fallocate */
    STOR_RANDOM = 1u << 1,      /* madvise(MADV_RANDOM): probe-heavy index files */
    STOR_POPULATE = 1u << 2,    /* prefault the whole mapping now: a grow is about to write all of it */
};

/* Creates dir/name exclusively (never overwrites a file), sizes it for ncells cells, maps it. Returns 0 or a
 * negated errno (-EEXIST, -ENOSPC, -EFBIG, -ENOMEM, ...); on error nothing is left on disk. */
int stor_file_create(const char *dir, const char *name, int drive, uint32_t header_bytes, uint32_t cell_size,
                     uint64_t ncells, unsigned flags, struct stor_file **out);

/* Maps an existing file whose size must be exactly header_bytes + ncells * cell_size for some ncells >= 1.
 * Returns 0, BM_ECORRUPT-style -EBADF... see stor_file.c; -ENOENT when missing. */
int stor_file_open(const char *dir, const char *name, int drive, uint32_t header_bytes, uint32_t cell_size,
                   unsigned flags, struct stor_file **out);

/* Unmaps and closes; unlinks the file too when unlink_it and this process created it. NULL is ignored. */
void stor_file_destroy(struct stor_file *f, bool unlink_it);

/* Drops the mapping but keeps the file and its fd, for stor_file_recycle. */
void stor_file_unmap(struct stor_file *f);

/* Turns a file into a fresh, zeroed one of ncells cells, mapped: much cheaper than creating and unlinking a
 * file per grow (no inode or directory updates). A file still mapped is regrown where it is when it fits
 * its reservation (stor_file_regrow), else unmapped and remapped. Returns 0 or a negated errno; on error
 * the file may be left unmapped. */
int stor_file_recycle(struct stor_file *f, uint64_t ncells, unsigned flags);

/* Regrows (or shrinks) a still-mapped file in place to ncells cells, zeroed: the tail is mapped into the
 * address space reserved behind it, the rest zeroed through the mapping it has. Cheaper than
 * stor_file_recycle whenever a page's first touch through a new mapping is dear (bench/README
 * "Growth"). -EAGAIN when it cannot (unmapped, or past the reservation; the file is unchanged and
 * still mapped), else 0 or a negated errno (the file may then be unmapped). */
int stor_file_regrow(struct stor_file *f, uint64_t ncells, unsigned flags);

/* Unmaps the file and gives its blocks back (length 0), keeping the fd and name for a later
 * stor_file_recycle. 0 or a negated errno. */
int stor_file_empty(struct stor_file *f);

/* Synchronous msync(MS_SYNC) of the whole mapping. Returns 0 or a negated errno. */
int stor_file_msync(struct stor_file *f);

static inline void *stor_cell(const struct stor_file *f, uint64_t i)
{
    return f->base + f->header_bytes + (size_t)i * f->cell_size;
}

static inline void *stor_header(const struct stor_file *f) { return f->base; }

/* Marks the file as written since the last flush. Cheap when already set (a load, no store). */
static inline void stor_file_touch(struct stor_file *f)
{
    if (!__atomic_load_n(&f->dirty, __ATOMIC_RELAXED))
        __atomic_store_n(&f->dirty, 1, __ATOMIC_RELAXED);
}

#endif
