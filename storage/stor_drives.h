/*
 * stor_drives.h — the set of directories ("drives") a map's files live in, and where each new file goes.
 *
 * Placement is round-robin over the drives, so consecutive files (a bucket's index and its data files, and
 * neighbouring buckets) land on different disks and a flush keeps every disk busy.
 * A map given no drives gets a fresh private directory under $TMPDIR (or /tmp), removed at close.
 */
#ifndef STOR_DRIVES_H
#define STOR_DRIVES_H

#include <stdbool.h>
#include <stdint.h>

struct stor_drives {
    char **dirs;
    uint32_t n;
    bool own_tmp;      /* dirs[0] is our temporary directory: rmdir at close */
    uint64_t next;     /* atomic round-robin cursor */
    uint64_t name_seq; /* atomic: makes file names unique within this map */
    char prefix[24];   /* random per open: two maps sharing a directory never pick the same name */
    int *lock_fds;     /* one per drive, -1 when unlocked */
    bool lock_exclusive;
};

/* Validates (exists, is a directory, is writable) and copies the drive list; with n == 0 creates a
 * temporary directory. Returns 0 or a negated errno (-ENOENT, -ENOTDIR, -EACCES, -ENOMEM, ...). */
int stor_drives_open(const char *const *dirs, uint32_t n, struct stor_drives **out);

/* Removes the temporary directory if we made it (it must be empty by then), frees everything. */
void stor_drives_close(struct stor_drives *d);

/* The drive for the next new file. */
uint32_t stor_drives_pick(struct stor_drives *d);

/* Writes a fresh unique file name "<prefix>-<tag>-<seq>.bm" into buf. */
void stor_drives_name(struct stor_drives *d, const char *tag, char *buf, uint32_t len);

/* Locks every drive directory (flock on the directory): exclusive for a persistent map, which owns the
 * files there, shared for a temporary map on the caller's drives, which only adds files of its own. So
 * temporary maps may share drives with each other but never with a persistent map, whose recovery would
 * otherwise see their files. Returns 0, or BM_ELOCKED-worthy -EWOULDBLOCK, or another negated errno;
 * stor_drives_close() releases whatever was taken. */
int stor_drives_lock(struct stor_drives *d, bool exclusive);

#endif
