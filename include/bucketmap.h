/*
 * bucketmap.h — an embeddable, persistent, concurrent hash index.
 *
 * A map stores  key (32 bytes) -> (a list of 0..N elements of elem_size bytes, a u64 refcount).
 * Keys are sharded into max_buckets buckets by their leading bits; every bucket is an open-addressing
 * index file plus lazily created size-class data files, all memory-mapped, spread over the drives.
 *
 * Concurrency contract (every function):
 *   - Thread-safe from any thread, with no set-up by the caller: the library registers a calling thread
 *     with its RCU machinery on first use and unregisters it when the thread exits.
 *   - Readers (bm_get, bm_get_batch, bm_read, bm_count, bm_foreach, bm_get_stats) take no lock, never wait
 *     for a writer and never see a torn value (half old, half new elements or refcount). One exception:
 *     the first touch of a bucket after a clean reopen opens its files under the bucket's lock (once per
 *     bucket and open; inside a bm_update callback it may return BM_EBUSY if that lock is taken).
 *   - Writers of one bucket serialize; writers of different buckets run in parallel.
 *   - bm_close must not race with any other call on the same map.
 *   - Callbacks: bm_read's callback runs inside a read-side section and must not call bm_* functions
 *     that touch a map (a write could wait for a grace period on itself); bm_update's
 *     callback holds a bucket's lock and must not call any bm_* function on the same map, but may read
 *     and write other maps (nesting up to 8 bm_update calls deep). A write there only tries the other
 *     map's bucket lock and returns BM_EBUSY when it is taken, so two threads nesting updates of two maps
 *     in opposite orders get BM_EBUSY instead of a deadlock; bm_flush and bm_verify are refused there.
 *     bm_foreach's callback runs with no lock and may call anything but bm_close of that map. Every
 *     detected violation returns BM_EBUSY instead of deadlocking.
 *
 * Errors: 0 is success; failures are negative — one of the BM_E* codes below, or a negated errno
 * (-ENOMEM, -ENOSPC, -EIO, -EACCES, ...). bm_strerror() describes every one. A failed call leaves the map
 * unchanged and usable, except after an I/O error while making data durable, which is sticky (BM_EFAILED):
 * writes are refused from then on, reads keep working.
 *
 * Embedding (README "Embedding"):
 *   - Link with `pkg-config --libs bucketmap` (add --static for libbucketmap.a) or CMake
 *     find_package(bucketmap) -> bucketmap::bucketmap. Dependencies: liburcu-bp, liburing, pthreads.
 *   - Allocator: the library links none, so the host's malloc stays the host's. When the process has
 *     jemalloc (the host linked or preloaded it: that is the opt-in), the library's own heap goes to a
 *     dedicated jemalloc arena it creates; otherwise it uses the process's malloc.
 *   - liburcu: the library uses the bulletproof flavour (liburcu-bp). A host may use liburcu itself, any
 *     flavour, on the same threads, registering them before or after the library first ran there. A host
 *     that uses bp too shares its registry: it must not call a bucketmap write inside its own bp read-side
 *     section (a write may wait for a grace period), and must not install liburcu-bp's fork handlers
 *     (urcu_bp_before_fork & co.) again: the library installs them.
 *   - fork(): a child of a multi-threaded host may open and use maps of its own (the library's fork
 *     handlers reset its RCU state to the forking thread). Maps the parent had open stay the parent's
 *     (their files, locks and flusher): the child may read them but must not write or close them.
 */
#ifndef BUCKETMAP_H
#define BUCKETMAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BM_VERSION_MAJOR 0
#define BM_VERSION_MINOR 1

#define BM_KEY_LEN 32
/* Largest elem_size. */
#define BM_MAX_ELEM_SIZE 4096u
/* Largest value: n * elem_size may not exceed this many bytes (4 MiB). */
#define BM_MAX_VALUE_BYTES (4u << 20)
/* Largest max_search (linear-probe window). */
#define BM_MAX_SEARCH_LIMIT 255u
/* Largest max_buckets. */
#define BM_MAX_BUCKETS (1u << 16)

/* Error codes. Negated errno values are also returned and stay below 4096 in magnitude. */
enum bm_error {
    BM_OK = 0,
    BM_ENOTFOUND = -10001, /* the key is absent */
    BM_EINVAL = -10002,    /* an argument is invalid (NULL, out of range, inconsistent) */
    BM_ETOOBIG = -10003,   /* the value exceeds BM_MAX_VALUE_BYTES */
    BM_EBUSY = -10004,     /* called from a callback where that call is not allowed */
    BM_ECORRUPT = -10005,  /* a file or the restart file fails its checks */
    BM_EVERSION = -10006,  /* the restart file or a map file has another format version */
    BM_EMISMATCH = -10007, /* the restart file belongs to a map with other elem_size/buckets/max_search */
    BM_EOVERFLOW = -10008, /* addref at UINT64_MAX or unref at 0 */
    BM_ELOCKED = -10009,   /* the drive set is in use by another open map */
    BM_EFAILED = -10010,   /* an earlier I/O error made the map read-only (sticky) */
    BM_ENOSPACE = -10011,  /* a bucket cannot grow further (index or data file at its size limit) */
    BM_ENORESTART = -10012, /* restart_path is missing but the drives hold this kind of map's files */
    BM_EMISSING = -10013,  /* a file the last checkpoint names is missing (an unmounted drive?) */
};

typedef struct bm_key {
    uint8_t bytes[BM_KEY_LEN];
} bm_key;

typedef struct bm_map bm_map;

/* Zero means "default" for every field but elem_size. */
typedef struct bm_config {
    uint32_t elem_size;        /* bytes of one value element, required, 1..BM_MAX_ELEM_SIZE */
    uint32_t max_buckets;      /* shard count, a power of two, 1..BM_MAX_BUCKETS; default 256 */
    const char *const *drives; /* directories for the files; NULL = a fresh temporary directory */
    uint32_t n_drives;         /* entries in drives; 0 with drives == NULL */
    uint32_t max_search;       /* linear-probe window, 1..BM_MAX_SEARCH_LIMIT; default 32 */
    const char *restart_path;  /* NULL = temporary map: every file it creates is removed at close */
    uint32_t flush_interval_ms; /* > 0 starts a background flusher with this period (persistent maps) */
    uint32_t flags;            /* BM_F_* below */
    char *errbuf;              /* optional: a failed bm_open writes a one-line reason here, naming the file */
    uint32_t errbuf_len;       /* bytes at errbuf */
    uint64_t expected_entries; /* optional hint: each bucket's first index is sized for its share of this
                                * many keys (at 80% load), so filling the map to it needs no index grow;
                                * 0 = start small (one page) and grow. At most 2^40. */
} bm_config;

/* Do not wait for the disk when creating or growing files (skip preallocation). Files may then be
 * sparse, and a full disk shows up as SIGBUS instead of -ENOSPC: for tests and throwaway maps only. */
#define BM_F_NO_PREALLOC 0x1u
/* Persistent maps: open even when files the last checkpoint names are missing or damaged, keep what is
 * intact (every bucket is scrubbed; entries whose files are gone are dropped) and commit that. Without it
 * such a map is refused (BM_EMISSING / BM_ECORRUPT). For salvaging a damaged map (bmctl salvage). */
#define BM_F_SALVAGE 0x2u

typedef struct bm_value {
    const void *elems; /* n * elem_size bytes; may be NULL when n == 0 */
    uint32_t n;
    uint64_t refcount;
} bm_value;

enum bm_update_action { BM_KEEP = 0, BM_WRITE = 1, BM_DELETE = 2 };

/* cur is the current value or NULL when the key is absent. Fill *out (its memory is the callback's and
 * must stay valid until bm_update returns) and return BM_WRITE, BM_KEEP or BM_DELETE, or a negative error
 * that aborts the update with the map unchanged. */
typedef int (*bm_update_fn)(const bm_value *cur, bm_value *out, void *ctx);
/* v->elems points into the map and is valid only during the call. */
typedef void (*bm_read_fn)(const bm_value *v, void *ctx);
/* Nonzero stops the iteration and is returned by bm_foreach. k and v are valid only during the call. */
typedef int (*bm_foreach_fn)(const bm_key *k, const bm_value *v, void *ctx);

typedef struct bm_stats {
    uint64_t entries;           /* keys in the map (as bm_count) */
    uint64_t buckets_allocated; /* buckets that have files */
    uint64_t index_grows;       /* completed index grows */
    uint64_t index_failed_grows; /* rehash attempts that did not fit and were retried larger */
    uint64_t data_grows;        /* completed data-file grows */
    uint64_t grow_errors;       /* grows that failed (disk full, out of memory) */
    uint64_t grow_ns;           /* nanoseconds spent creating and growing files (index and data) */
    uint64_t files;             /* files currently owned by the map */
    uint64_t index_bytes;       /* bytes of index files */
    uint64_t data_bytes;        /* bytes of data files */
    uint64_t index_capacity;    /* index slots over all buckets */
    uint64_t data_cells_used;   /* occupied data cells (including ones awaiting a grace period) */
    uint64_t flushes;           /* completed bm_flush calls (explicit or background) */
    uint64_t flush_ns;          /* nanoseconds spent in flushes */
    uint64_t files_flushed;     /* files synced by flushes */
    uint64_t reader_retries;    /* reads retried because a writer changed the entry meanwhile */
    uint64_t orphan_files_removed; /* at open: files no checkpoint needed (unfinished grows, spares) removed */
    uint64_t undo_replayed;     /* at open: buckets whose cut-short in-place rewrite was rolled back */
    uint64_t shadowed;          /* new versions written beside an entry the last checkpoint holds */
    uint64_t recovered_entries_dropped; /* at open after an unclean shutdown: torn, stale or duplicate entries */
    uint64_t recovered_cells_freed;     /* ... and data cells no entry referred to */
    uint64_t buckets_scrubbed;  /* at open: buckets checked entry by entry (unclean shutdown or salvage) */
    uint64_t scrub_ns;          /* nanoseconds those scrubs took */
    uint64_t buckets_unloaded;  /* buckets whose files a clean open has not opened yet (first touch loads) */
    uint64_t bucket_load_errors; /* first touches that failed (BM_EMISSING / BM_ECORRUPT ...; bm_verify names
                                  * the file) */
} bm_stats;

/* Opens (creates, or with a valid restart file reopens) a map and stores it in *out.
 * Errors: BM_EINVAL (NULL cfg/out, elem_size 0 or > BM_MAX_ELEM_SIZE, max_buckets not a power of two or
 * too large, max_search > BM_MAX_SEARCH_LIMIT, n_drives without drives or drives without n_drives, a NULL
 * drive, expected_entries > 2^40), -ENOENT / -ENOTDIR / -EACCES (a drive does not exist, is not a directory or is not writable),
 * BM_ELOCKED (a persistent map is open on one of the drives, or this persistent map's drives are used by
 * another open map; temporary maps may share drives with each other), BM_ECORRUPT / BM_EVERSION / BM_EMISMATCH (the
 * restart file, a commit record, the checkpoint manifest or a map file it names; see README "Persistence
 * and restart"), BM_EMISSING (a file the last checkpoint names is gone), BM_ENORESTART (restart file
 * missing while the drives hold map files), -ENOMEM, -EMFILE and other negated errno values. On failure
 * cfg->errbuf (if given) holds a one-line reason naming the file.
 * After a clean close the open reads only the restart file, the checkpoint's manifest and one listing of
 * each drive: a file missing from its directory is refused here, but damage inside a file (header, size,
 * a stale copy, a count that disagrees with the checkpoint) is found when a call first touches its bucket.
 * That call, and every later one touching the bucket, returns BM_ECORRUPT / BM_EMISSING / BM_EVERSION
 * (the bucket stays unloaded, nothing is deleted); bm_verify loads every bucket and names the file. */
int bm_open(const bm_config *cfg, bm_map **out);

/* Flushes (persistent maps: a clean checkpoint that restamps and syncs only the files written since their
 * last stamp; nothing at all when nothing was written since a clean open), releases every mapping, fd and
 * lock, and joins the map's maintenance thread
 * (which recycles replaced files and runs the background flusher; at most one per map); a temporary map
 * removes every file and directory it created. Waits for one RCU grace period, not for liburcu's call_rcu
 * machinery. NULL is ignored. No other call on m may run concurrently or follow. */
void bm_close(bm_map *m);

/* Upsert: key k gets exactly n elements copied from elems and the refcount.
 * Errors: BM_EINVAL (NULL m/k, elems NULL with n > 0), BM_ETOOBIG (n * elem_size > BM_MAX_VALUE_BYTES),
 * BM_ENOSPACE, BM_EFAILED, BM_EBUSY, -ENOSPC, -ENOMEM, -EIO. On error the map is unchanged. Every call that
 * touches a bucket (writes, bm_get, bm_read, bm_update, bm_addref/unref, bm_delete) may also return the
 * bucket's first-touch error after a clean reopen: BM_ECORRUPT, BM_EMISSING, BM_EVERSION (bm_open). */
int bm_insert(bm_map *m, const bm_key *k, const void *elems, uint32_t n, uint64_t refcount);

/* Copies min(cap, n) elements into out (cap counts elements; out may be NULL when cap is 0) and reports the
 * true element count in *n and the refcount in *refcount (either pointer may be NULL). Lock-free.
 * Errors: BM_ENOTFOUND, BM_EINVAL (NULL m/k, out NULL with cap > 0), BM_ECORRUPT (the stored entry or its
 * elements fail their checksum, e.g. torn by a power loss: nothing is copied; bm_insert or bm_delete
 * replaces it, bmctl verify lists every such entry). */
int bm_get(bm_map *m, const bm_key *k, void *out, uint32_t cap, uint32_t *n, uint64_t *refcount);

/* Looks up nkeys keys in one call, as nkeys bm_get calls would, but several times faster on a map larger
 * than the caches: it hashes a group of keys and prefetches their index entries (and multi-element values'
 * data cells) before reading any, so their cache misses overlap. Per key i: status[i] gets 0, BM_ENOTFOUND
 * or BM_ECORRUPT (as bm_get; one damaged key does not fail the others); when found, min(cap, n_i) elements
 * go to (char *)out + i * cap * elem_size (cap counts elements per key; the rest of that slot is left as
 * it was), the true element count to n[i] and the refcount to refcounts[i]; when not found, n[i] and
 * refcounts[i] are set to 0 and nothing is copied. n and refcounts may be NULL; out may be NULL when cap
 * is 0; keys and status may be NULL when nkeys is 0. Lock-free, with bm_get's guarantees per key (never
 * torn, checksums checked); the keys are not one atomic snapshot (a writer may change one key between the
 * lookups of two others). Keys may repeat. Returns the number of keys found (0..nkeys), or BM_EINVAL (NULL
 * m, keys or status with nkeys > 0, out NULL with cap > 0, nkeys > INT_MAX, nkeys * cap * elem_size beyond
 * SIZE_MAX) or BM_EBUSY (inside a bm_read callback, or a bm_update callback of m), with nothing written. */
int bm_get_batch(bm_map *m, const bm_key *keys, size_t nkeys, void *out, uint32_t cap, uint32_t *n,
                 uint64_t *refcounts, int *status);

/* Zero-copy read: calls fn once with the value (elements point into the mapping, valid during the call).
 * Lock-free; fn runs inside an RCU read-side section, so it must be short and must not block or call
 * bm_* functions of this map. Errors: BM_ENOTFOUND, BM_ECORRUPT (as bm_get; fn not called for either),
 * BM_EINVAL, BM_EBUSY. Checking a multi-element value's checksum reads it once before fn does. */
int bm_read(bm_map *m, const bm_key *k, bm_read_fn fn, void *ctx);

/* Read-modify-write: calls fn exactly once, under the bucket's write lock, with the current value (NULL
 * when absent), then applies its decision. Returns 0 after BM_WRITE/BM_KEEP/BM_DELETE (deleting an absent
 * key is 0 too), fn's own negative error (map unchanged), BM_EINVAL (NULL arguments, or fn returned an
 * unknown action or an out value with elems NULL and n > 0), BM_ETOOBIG, BM_ECORRUPT (the stored value
 * fails its checksum, as in bm_get: fn is not called), or the errors of bm_insert. */
int bm_update(bm_map *m, const bm_key *k, bm_update_fn fn, void *ctx);

/* Removes k. Errors: BM_ENOTFOUND, BM_EINVAL, BM_EFAILED, BM_EBUSY. */
int bm_delete(bm_map *m, const bm_key *k);

/* Refcount += 1 / -= 1; the new value goes to *new_refcount (may be NULL). addref at UINT64_MAX and unref
 * at 0 return BM_EOVERFLOW and change nothing. Errors also: BM_ENOTFOUND, BM_EINVAL, BM_EFAILED, BM_EBUSY,
 * BM_ECORRUPT (the entry fails its checksum; it is left as it is). */
int bm_addref(bm_map *m, const bm_key *k, uint64_t *new_refcount);
int bm_unref(bm_map *m, const bm_key *k, uint64_t *new_refcount);

/* Number of keys. Exact when no writer runs concurrently; 0 for NULL. Lock-free. */
uint64_t bm_count(bm_map *m);

/* Calls fn for every entry, bucket by bucket; each bucket is a consistent snapshot taken without locks
 * (copied out, retried if a writer changed the bucket meanwhile; after repeated interference the snapshot is
 * taken under the bucket's write lock). fn runs outside any lock. A nonzero return from fn stops the walk and
 * is returned. An entry that fails its checksum (as in bm_get) is left out and the walk goes on; it then
 * returns BM_ECORRUPT after the last entry. A bucket whose files cannot be loaded at its first touch
 * (bm_open) is skipped likewise and its error returned at the end. Errors: BM_EINVAL, BM_EBUSY, -ENOMEM,
 * BM_ECORRUPT, BM_EMISSING, BM_EVERSION. */
int bm_foreach(bm_map *m, bm_foreach_fn fn, void *ctx);

/* A checkpoint: every write that returned before the call is durable when it returns 0, atomically. If
 * power is cut at any instant before the next checkpoint returns, the next bm_open gives every key not
 * written since exactly as it was here, and every key written since as it was here or as a state some
 * call acknowledged later; never torn, mixed or another key's value (README "Persistence"). Writers of
 * other buckets are not blocked; checkpoints (with the background flusher's) are serialized. Between
 * checkpoints freed data cells are not reused and replaced files are kept, so a map that is never flushed
 * grows. Temporary maps, and a map not written since a clean open (its clean commit already holds it): 0
 * without syncing. Errors: BM_EINVAL, BM_EBUSY (inside a callback), -ENOMEM
 * (nothing changed; try again), BM_EFAILED, -EIO, -ENOSPC (I/O errors are sticky: writes are refused). */
int bm_flush(bm_map *m);

/* Fills *out with a snapshot of the counters (zeroes for a NULL m). Lock-free. */
void bm_get_stats(bm_map *m, bm_stats *out);

/* A static message for any value returned by this library (never NULL). */
const char *bm_strerror(int err);

/* Shard of a key for a map with max_buckets buckets (the top log2(max_buckets) bits of key bytes 0..7 read
 * big-endian). Returns 0 for invalid arguments. */
uint32_t bm_bucket_of(const bm_key *k, uint32_t max_buckets);


/* ---- Persistence and inspection ----------------------------------------------------------------------
 *
 * A map opened with a restart_path is persistent. The first bm_open creates the restart file (the map's
 * identity: format, elem_size, max_buckets, max_search, drive count, and two commit-record slots); later
 * opens validate it and use the files the newest checkpoint (bm_flush, close) names; after a clean close
 * each bucket's files are opened when the bucket is first touched (bm_open above). After a process crash
 * (SIGKILL) every acknowledged write is there; after a power loss, exactly what the last checkpoint made
 * durable plus whole later writes (see bm_flush). An unclean open repairs the files (a scrub of every
 * entry: O(entries)) and commits before it returns; it removes only files the commit proves unneeded. A
 * missing or damaged file the checkpoint names is an error (BM_EMISSING / BM_ECORRUPT naming the file, in
 * cfg.errbuf at open or in bm_verify_report.error at first touch), never a smaller map; BM_F_SALVAGE opens
 * what is intact.
 * While open, the drives are locked (flock on each drive directory, exclusive; the owner's pid is in
 * DRIVE/.bucketmap.lock): any other opener of them, persistent or temporary, gets BM_ELOCKED. A temporary
 * map takes a shared lock on the caller's drives, so temporary maps share drives only with each other.
 * To start over: delete the restart file and the map's *.bm files in the drive directories.
 */

typedef struct bm_restart_info {
    uint32_t format;      /* restart file format version */
    uint32_t elem_size;
    uint32_t max_buckets;
    uint32_t max_search;
    uint32_t n_drives;
} bm_restart_info;

/* Reads and checks a restart file without opening the map (so a tool can open it with the right config).
 * Errors: BM_EINVAL, -ENOENT and other negated errno, BM_ECORRUPT (truncated or bad checksum), BM_EVERSION. */
int bm_read_restart_info(const char *restart_path, bm_restart_info *out);

#define BM_FILE_NAME_MAX 96

typedef struct bm_file_info {
    char name[BM_FILE_NAME_MAX]; /* file name inside its drive directory */
    uint32_t drive;              /* index into bm_config.drives */
    uint32_t cls;                /* data files: size class (holds up to 2^cls elements); index files: 0 */
    uint64_t cells;              /* capacity in entries (index) or cells (data) */
    uint64_t used;               /* occupied entries / cells */
    uint64_t bytes;              /* file size */
} bm_file_info;

typedef struct bm_bucket_info {
    uint32_t bucket;
    uint32_t allocated;          /* 0: the bucket has no files yet (nothing below is set) */
    uint64_t seed;
    uint64_t max_disp;           /* longest probe displacement in the index */
    bm_file_info index;
    uint32_t n_data;             /* valid entries in data[] */
    bm_file_info data[32];
} bm_bucket_info;

/* Number of buckets of m (max_buckets), 0 for NULL. */
uint32_t bm_bucket_count(bm_map *m);

/* Describes bucket `bucket`. Lock-free once the bucket is loaded (the first touch since a clean open loads
 * it, as bm_get does). Errors: BM_EINVAL (NULL, bucket >= bm_bucket_count), and a failed load's. */
int bm_bucket_info_get(bm_map *m, uint32_t bucket, bm_bucket_info *out);

typedef struct bm_verify_report {
    uint64_t entries;            /* occupied index entries checked */
    uint64_t bad_entry_sums;     /* entries whose checksum does not match (torn by a power loss) */
    uint64_t bad_cells;          /* data cells whose checksum does not match */
    uint64_t bad_refs;           /* entries referring to a free or out-of-range data cell */
    uint64_t misplaced;          /* keys outside their probe window, or present twice */
    uint64_t orphan_cells;       /* cells marked used that no entry refers to (and not awaiting reuse) */
    uint64_t count_mismatches;   /* buckets whose recorded count differs from their occupied entries */
    uint64_t zero_refcounts;     /* entries with refcount 0 (legal; reported for information) */
    uint64_t orphan_files_removed; /* at the last open: files of unfinished grows or older generations */
    uint64_t undo_replayed;      /* at the last open: buckets whose cut-short mutation was rolled back */
    uint64_t unloadable_buckets; /* buckets whose files could not be loaded (missing, damaged, stale copy) */
    char error[512];             /* the first such bucket's reason, naming the file ("" when none) */
} bm_verify_report;

/* Checks every entry, cell and count of m against each other (takes each bucket's write lock in turn, so
 * writers of that bucket wait; readers do not). Loads every bucket a clean open left unloaded, so it is the
 * way to check all files of a reopened map at once. Returns 0 when clean; the first failed load's error
 * (BM_ECORRUPT, BM_EMISSING, BM_EVERSION, ...; out->error names the file) when a bucket could not be
 * loaded; BM_ECORRUPT when any of the problem counters (bad_*, misplaced, orphan_cells,
 * count_mismatches) is nonzero; BM_EINVAL for NULLs. */
int bm_verify(bm_map *m, bm_verify_report *out);

#ifdef __cplusplus
}
#endif
#endif /* BUCKETMAP_H */
