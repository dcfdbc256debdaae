/*
 * recovery.c — opening a persistent map again: the files of the newest commit, repaired when needed.
 *
 * Steps (no other thread uses the map yet):
 *   0. One listing of every drive (a manifest of another map in drive 0 refuses the open).
 *   1. Read the newest valid commit record (restart.h) and the manifest it names.
 *      After a clean close (and without salvage) the open ends here (open_lazy): the manifest is checked
 *      against the map and the listing (every named file present), the counts come from it, and nothing is
 *      opened, mapped or written. Each bucket's files go through step 2's checks, plus each file's stamp
 *      and count against its manifest record, when a call first touches the bucket
 *      (recovery_load_bucket, under the bucket lock); a failure there is that call's error and leaves the
 *      bucket unloaded (a later touch tries again; nothing is deleted). The first write commits an
 *      unclean record before it stores anything (checkpoint_arm). So a clean open costs O(1) file
 *      operations plus one listing per drive, whatever the map's size.
 *      Otherwise (unclean or salvage) every step below runs at open.
 *   2. Open exactly the files the manifest names and check each one's identity (size, magic, generation,
 *      bucket, class). A missing file is BM_EMISSING, a damaged one BM_ECORRUPT, both naming the file;
 *      nothing is deleted. BM_F_SALVAGE opens anyway without what could not be used and scrubs everything.
 *      After an unclean shutdown in the same boot (the commit record holds the kernel's boot id), only the
 *      process died: the page cache kept every store, so each bucket's newest complete files (a grow's
 *      magic is written last) are its state, including files built since the commit, and every
 *      acknowledged write survives. After a reboot the disk holds only what the commit made durable plus
 *      an unknown mix of later pages, so exactly the commit's files are used.
 *   3. Per bucket: after a clean close, trust the headers (the commit's count must match; O(files));
 *      otherwise replay an intact armed undo record and scrub:
 *        - drop entries that are BUSY, tombs, outside their window, or whose sum, ref or cell fails;
 *        - keep one entry per key (a live one over a shadow; the lowest slot among equals): a SIGKILL
 *          can leave two copies of a moving entry or both versions of an update, a power loss an old
 *          and a new version — each of them a state the contract allows;
 *        - a surviving shadow becomes live again (its newer version did not reach the disk);
 *        - cells no surviving entry names are freed; used counts, count and max_disp are recomputed.
 *      The scrub is idempotent, so a power loss during recovery only means it runs again.
 *   4. Commit (a new epoch, not clean: writes follow), then remove every file of this map that the commit
 *      does not name: grows that were under way, spares, superseded manifests. Only now, because only
 *      the commit proves they are not needed.
 */
#include "runtime/map.h"

#include "common/bm_mem.h"
#include "common/bm_probes.h"
#include "runtime/bucket_int.h"
#include "runtime/restart.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rcv {
    bm_map *m;
    bool salvage;
    char *errbuf;
    size_t errlen;
};

static int fail(struct rcv *r, int err, const char *fmt, ...)
{
    if (r->errbuf && r->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->errbuf, r->errlen, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* ---- step 2: one file of the manifest ---- */

/* Opens the file mr names and checks its identity. stamped: the commit was a clean close, so the file must
 * carry the stamp and count its record holds (a stale copy put back carries another stamp; a header count
 * that disagrees is damage). */
static int open_listed(struct rcv *r, const struct manifest_rec *mr, bool stamped, struct stor_file **out)
{
    bm_map *m = r->m;
    struct bkt_ctx *ctx = &m->ctx;
    char name[96];
    *out = NULL;
    restart_file_name(m->drives->prefix, mr->bucket, mr->kind, mr->seq, name, sizeof(name));
    const char *dir = m->drives->dirs[mr->drive];
    bool is_index = mr->kind == MANIFEST_KIND_INDEX;
    struct stor_file *f;
    int err = stor_file_open(dir, name, (int)mr->drive, is_index ? IDX_HEADER_BYTES : DATA_HEADER_BYTES,
                             is_index ? (uint32_t)sizeof(struct bkt_entry) : ctx->data_cell_size[mr->kind - 1],
                             is_index ? STOR_RANDOM : 0, &f);
    if (err == -ENOENT)
        return fail(r, BM_EMISSING, "%s/%s: missing (the last checkpoint names it; is the drive mounted?)", dir,
                    name);
    if (err == -EBADMSG || err == -ELOOP)
        return fail(r, BM_ECORRUPT, "%s/%s: not a regular file of the expected size", dir, name);
    if (err)
        return fail(r, err, "%s/%s: cannot open: %s", dir, name, bm_strerror(err));
    const char *why = NULL;
    uint64_t stamp, count;
    if (is_index) {
        const struct idx_header *h = stor_header(f);
        if (h->magic != IDX_MAGIC)
            why = "bad magic";
        else if (h->format != IDX_FORMAT)
            err = BM_EVERSION, why = "another index format";
        else if (h->gen != mr->gen || h->bucket != mr->bucket)
            why = "generation or bucket differ from the checkpoint's";
        else if (h->capacity != f->ncells || f->ncells != mr->ncells || h->elem_size != ctx->elem_size)
            why = "capacity or element size differ from the checkpoint's";
        stamp = h->closed;
        count = h->count;
    } else {
        const struct data_header *h = stor_header(f);
        if (h->magic != DATA_MAGIC)
            why = "bad magic";
        else if (h->gen != mr->gen || h->bucket != mr->bucket || h->cls != mr->kind - 1)
            why = "generation, bucket or class differ from the checkpoint's";
        else if (h->pow2 > MAX_DATA_POW2 || (1ull << h->pow2) != f->ncells || f->ncells != mr->ncells ||
                 h->elem_size != ctx->elem_size)
            why = "size differs from the checkpoint's";
        stamp = h->closed;
        count = h->used;
    }
    if (!why && stamped && stamp != mr->stamp)
        why = "a stale copy: not the version the clean close synced";
    if (!why && stamped && count != mr->count) {
        stor_file_destroy(f, false);
        return fail(r, BM_ECORRUPT, "%s/%s: holds %llu %s, the last checkpoint %llu", dir, name,
                    (unsigned long long)count, is_index ? "entries" : "used cells", (unsigned long long)mr->count);
    }
    if (why) {
        stor_file_destroy(f, false);
        return fail(r, err ? err : BM_ECORRUPT, "%s/%s: %s", dir, name, why);
    }
    f->created = true; /* a file of this map: it may be recycled or removed like one we made */
    f->seq = mr->seq;
    f->epoch = 0; /* named by a checkpoint: pinned once replaced */
    f->stamp = mr->stamp;
    f->stamp_count = mr->count;
    *out = f;
    return 0;
}

/* The kernel's boot id, hashed; 0 when unknown (then every unclean open is treated as after a reboot). */
static uint64_t current_boot_id(void)
{
    char buf[64] = {0};
    const char *src = NULL;
#ifdef BM_TEST_HOOKS
    src = getenv("BM_TEST_BOOT_ID"); /* the power-loss simulator opens its disk images "after a reboot" */
#endif
    if (!src) {
        FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
        if (!f)
            return 0;
        src = fgets(buf, sizeof(buf), f);
        fclose(f);
        if (!src)
            return 0;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = src; *p && *p != '\n'; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    return h | 1;
}

/* Same boot, unclean: each bucket's newest complete files, which may be newer than the commit's. */
static int take_newest(struct rcv *r, struct stor_file **files, uint64_t *max_gen)
{
    bm_map *m = r->m;
    struct bkt_ctx *ctx = &m->ctx;
    int err = 0;
    for (uint32_t d = 0; d < m->drives->n && !err; d++) {
        DIR *dir = opendir(m->drives->dirs[d]);
        if (!dir)
            return fail(r, -errno, "%s: cannot list: %s", m->drives->dirs[d], bm_strerror(-errno));
        struct dirent *de;
        while (!err && (de = readdir(dir))) {
            struct parsed_name p;
            if (!restart_parse_name(de->d_name, &p) || p.kind < 0 || strcmp(p.prefix, m->drives->prefix) != 0 ||
                p.bucket >= m->nbuckets)
                continue;
            struct stor_file **slot = &files[(size_t)p.bucket * (1 + BKT_NCLASS) + (size_t)p.kind];
            if (*slot && (*slot)->seq == p.seq && (uint32_t)(*slot)->drive == d)
                continue; /* the commit's own file, already open */
            bool is_index = p.kind == MANIFEST_KIND_INDEX;
            struct stor_file *f;
            int e = stor_file_open(m->drives->dirs[d], de->d_name, (int)d,
                                   is_index ? IDX_HEADER_BYTES : DATA_HEADER_BYTES,
                                   is_index ? (uint32_t)sizeof(struct bkt_entry) : ctx->data_cell_size[p.kind - 1],
                                   is_index ? STOR_RANDOM : 0, &f);
            if (e == -EBADMSG || e == -ENOENT || e == -ELOOP)
                continue; /* an emptied spare, or not a file of ours: the commit will show it is not needed */
            if (e) {
                err = fail(r, e, "%s/%s: cannot open: %s", m->drives->dirs[d], de->d_name, bm_strerror(e));
                break;
            }
            uint64_t gen;
            bool complete;
            if (is_index) {
                const struct idx_header *h = stor_header(f);
                gen = h->gen;
                complete = h->magic == IDX_MAGIC && h->format == IDX_FORMAT && h->bucket == p.bucket &&
                           h->capacity == f->ncells && h->elem_size == ctx->elem_size;
            } else {
                const struct data_header *h = stor_header(f);
                gen = h->gen;
                complete = h->magic == DATA_MAGIC && h->bucket == p.bucket && h->cls == (uint32_t)p.kind - 1 &&
                           h->pow2 <= MAX_DATA_POW2 && (1ull << h->pow2) == f->ncells &&
                           h->elem_size == ctx->elem_size;
            }
            if (!complete || (*slot && gen <= ((const uint64_t *)stor_header(*slot))[1])) {
                stor_file_destroy(f, false);
                continue;
            }
            f->created = true;
            f->seq = p.seq;
            f->epoch = 0;
            stor_file_destroy(*slot, false);
            *slot = f;
            *max_gen = gen + 1 > *max_gen ? gen + 1 : *max_gen;
        }
        closedir(dir);
    }
    return err;
}

/* ---- step 3 ---- */

static int adopt(struct bkt *b, struct stor_file *index, struct stor_file *data[BKT_NCLASS])
{
    struct bkt_state *st = bm_aligned_zalloc(BM_CACHELINE, sizeof(*st));
    uint64_t *mov = bm_calloc((index->ncells + 63) / 64, sizeof(uint64_t));
    if (!st || !mov) {
        bm_free(st);
        bm_free(mov);
        return -ENOMEM;
    }
    st->index = index;
    st->entries = stor_cell(index, 0);
    st->cap = index->ncells;
    st->seed = idx_hdr(st)->seed;
    for (unsigned c = 0; c < BKT_NCLASS; c++) {
        if (!data[c])
            continue;
        st->data[c] = data[c];
        st->data_pow2[c] = (uint8_t)((const struct data_header *)stor_header(data[c]))->pow2;
    }
    st->owner = b;
    b->movable = mov;
    b->all_movable = false; /* everything in it is what the checkpoint holds */
    rcu_glue_assign(b->state, st); /* a lazily loaded bucket may have readers already */
    return 0;
}

static void publish_counts(struct bkt *b)
{
    struct bkt_state *st = b->state;
    for (unsigned c = 0; c < BKT_NCLASS; c++)
        if (st->data[c])
            bm_store_rlx(&b->used[c], data_hdr(st, c)->used);
    bm_store_rlx(&b->count, idx_hdr(st)->count);
}

static void drop(struct bkt_entry *e) { memset(e, 0, sizeof(*e)); }

static inline uint64_t key_hash(const uint64_t k[4]) { return entry_hash(k, 0x2545F4914F6CDD1Dull); }

static int scrub(struct bkt *b)
{
    uint64_t t0 = now_ns();
    struct bkt_ctx *ctx = b->ctx;
    struct bkt_state *st = b->state;
    struct idx_header *h = idx_hdr(st);
    int u = undo_replay(b);
    if (u > 0)
        bm_add_rlx(&ctx->ctr->undo_replayed, 1);
    h->undo.armed = 0;
    uint64_t cap = st->cap, win = window(ctx, cap), dropped = 0;
    uint64_t tsize = 16;
    while (tsize < 2 * cap)
        tsize *= 2;
    uint64_t *table = bm_calloc(tsize, sizeof(uint64_t));
    uint8_t *seen[BKT_NCLASS] = {0};
    int err = table ? 0 : -ENOMEM;
    for (unsigned c = 0; c < BKT_NCLASS && !err; c++)
        if (st->data[c] && !(seen[c] = bm_calloc((st->data[c]->ncells + 7) / 8, 1)))
            err = -ENOMEM;
    for (uint64_t i = 0; i < cap && !err; i++) {
        struct bkt_entry *e = &st->entries[i];
        if (entry_tag(e->state) == TAG_FREE) {
            if (e->state)
                drop(e); /* a free slot with stray bits: make it plain */
            continue;
        }
        struct entry_snap s = entry_snap_of(e);
        struct bkt_val v;
        uint32_t cs = 0;
        if ((e->state & (ENTRY_BUSY | ENTRY_TOMB)) || disp_of(e->key, st->seed, cap, i) >= win ||
            resolve(st, ctx, e->key, &s, &v, &cs) != 0) {
            drop(e);
            dropped++;
            continue;
        }
        /* One entry per key: a live one wins over a shadow, the first (lowest slot) among equals. */
        uint64_t t = key_hash(e->key) & (tsize - 1);
        for (;; t = (t + 1) & (tsize - 1)) {
            if (!table[t]) {
                table[t] = i + 1;
                break;
            }
            struct bkt_entry *o = &st->entries[table[t] - 1];
            if (!key_eq(o->key, e->key))
                continue;
            if ((o->state & ENTRY_SHADOW) && !(e->state & ENTRY_SHADOW)) {
                drop(o);
                table[t] = i + 1;
            } else {
                drop(e);
            }
            dropped++;
            break;
        }
    }
    uint64_t count = 0, md = 0;
    for (uint64_t i = 0; i < cap && !err; i++) {
        struct bkt_entry *e = &st->entries[i];
        if (entry_tag(e->state) == TAG_FREE)
            continue;
        if (entry_tag(e->state) == TAG_DATA) {
            unsigned c = size_class((uint32_t)e->p[1]);
            uint64_t ci = cell_index(st, c, e->p[0]);
            if ((seen[c][ci >> 3] >> (ci & 7)) & 1) {
                drop(e); /* two keys claim one cell: only a stale entry can, keep the first */
                dropped++;
                continue;
            }
            seen[c][ci >> 3] |= (uint8_t)(1u << (ci & 7));
        }
        e->state &= ~(ENTRY_SHADOW | ENTRY_BUSY);
        count++;
        uint64_t d = disp_of(e->key, st->seed, cap, i);
        md = d > md ? d : md;
    }
    uint64_t freed = 0;
    for (unsigned c = 0; c < BKT_NCLASS && !err; c++) {
        struct stor_file *f = st->data[c];
        if (!f)
            continue;
        uint64_t used = 0;
        for (uint64_t i = 0; i < f->ncells; i++) {
            uint64_t *hdr = stor_cell(f, i);
            if ((seen[c][i >> 3] >> (i & 7)) & 1)
                used++;
            else if (*hdr) {
                *hdr = 0;
                freed++;
            }
        }
        data_hdr(st, c)->used = used;
        stor_file_touch(f);
    }
    bm_free(table);
    for (unsigned c = 0; c < BKT_NCLASS; c++)
        bm_free(seen[c]);
    if (err)
        return err;
    h->count = count;
    h->max_disp = md;
    stor_file_touch(st->index);
    publish_counts(b);
    bm_add_rlx(&ctx->ctr->recovered_entries_dropped, dropped);
    bm_add_rlx(&ctx->ctr->recovered_cells_freed, freed);
    bm_add_rlx(&ctx->ctr->buckets_scrubbed, 1);
    uint64_t ns = now_ns() - t0;
    bm_add_rlx(&ctx->ctr->scrub_ns, ns);
    BM_PROBE4(recovery_scrub, b->ix, dropped, freed, ns);
    return 0;
}

/* ---- step 4: files no commit needs ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

struct live_names {
    char **v;
    size_t n, cap;
    int err;
};

static void add_name(struct live_names *l, const char *s)
{
    if (l->err)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        char **p = bm_realloc(l->v, cap * sizeof(*p));
        if (!p) {
            l->err = -ENOMEM;
            return;
        }
        l->v = p;
        l->cap = cap;
    }
    if (!(l->v[l->n] = bm_strdup(s)))
        l->err = -ENOMEM;
    else
        l->n++;
}

static void live_file(struct stor_file *f, bool is_index, void *arg)
{
    (void)is_index;
    add_name(arg, f->path);
}

/* Removes every file of this map's prefix in the drives that the state just committed does not use. */
static uint64_t remove_unneeded(bm_map *m)
{
    struct live_names l = {0};
    for (uint32_t i = 0; i < m->nbuckets; i++)
        bkt_for_each_file(&m->buckets[i], live_file, &l);
    char path[4096], name[96];
    if (m->manifest_epoch) {
        manifest_name(m->drives->prefix, m->manifest_epoch, name, sizeof(name));
        snprintf(path, sizeof(path), "%s/%s", m->drives->dirs[0], name);
        add_name(&l, path);
    }
    uint64_t removed = 0;
    if (!l.err) {
        if (l.n) /* a new map has no file yet: l.v is NULL, which qsort and bsearch may not be given */
            qsort(l.v, l.n, sizeof(*l.v), cmp_str);
        for (uint32_t d = 0; d < m->drives->n; d++) {
            DIR *dir = opendir(m->drives->dirs[d]);
            if (!dir)
                continue;
            struct dirent *de;
            while ((de = readdir(dir))) {
                struct parsed_name p;
                if (!restart_parse_name(de->d_name, &p) || strcmp(p.prefix, m->drives->prefix) != 0)
                    continue; /* not ours: never touched */
                snprintf(path, sizeof(path), "%s/%s", m->drives->dirs[d], de->d_name);
                const char *key = path;
                if (l.n && bsearch(&key, l.v, l.n, sizeof(*l.v), cmp_str))
                    continue;
                if (unlink(path) == 0)
                    removed++;
            }
            closedir(dir);
        }
    }
    for (size_t i = 0; i < l.n; i++)
        bm_free(l.v[i]);
    bm_free(l.v);
    return removed;
}

/* The largest name sequence in the drives, so new files never collide with leftovers. */
static uint64_t max_seq_in_drives(bm_map *m)
{
    uint64_t max = 0;
    for (uint32_t d = 0; d < m->drives->n; d++) {
        DIR *dir = opendir(m->drives->dirs[d]);
        if (!dir)
            continue;
        struct dirent *de;
        while ((de = readdir(dir))) {
            struct parsed_name p;
            if (restart_parse_name(de->d_name, &p) && p.kind >= 0 && strcmp(p.prefix, m->drives->prefix) == 0 &&
                p.seq + 1 > max)
                max = p.seq + 1;
        }
        closedir(dir);
    }
    return max;
}

/* Salvage without a usable commit record: the largest manifest epoch of this map in drive 0, so that the
 * salvage's commit goes past every manifest name in use. */
static uint64_t max_manifest_epoch(bm_map *m)
{
    uint64_t max = 0;
    DIR *dir = opendir(m->drives->dirs[0]);
    if (!dir)
        return 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        struct parsed_name p;
        if (restart_parse_name(de->d_name, &p) && p.kind < 0 && strcmp(p.prefix, m->drives->prefix) == 0 &&
            p.seq > max)
            max = p.seq;
    }
    closedir(dir);
    return max;
}

/* ---- a clean open: the commit record and the manifest, files on first touch ---- */

/* One listing of every drive: this map's file names (with their type, for a cheap check that each file
 * the checkpoint names is there), the largest name sequence, and a manifest of another map in drive 0. */
struct lname {
    char *name;
    uint32_t drive;
    unsigned char type; /* dirent d_type */
    bool keep;          /* named by the commit */
};

struct listing {
    struct lname *v;
    size_t n, cap;
    uint64_t max_seq;
    char foreign[256];
};

static int cmp_lname(const void *a, const void *b)
{
    const struct lname *x = a, *y = b;
    if (x->drive != y->drive)
        return x->drive < y->drive ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        bm_free(l->v[i].name);
    bm_free(l->v);
    memset(l, 0, sizeof(*l));
}

static int list_drives(struct rcv *r, struct listing *l)
{
    bm_map *m = r->m;
    memset(l, 0, sizeof(*l));
    for (uint32_t d = 0; d < m->drives->n; d++) {
        DIR *dir = opendir(m->drives->dirs[d]);
        if (!dir)
            return fail(r, -errno, "%s: cannot list: %s", m->drives->dirs[d], bm_strerror(-errno));
        struct dirent *de;
        int err = 0;
        while (!err && (de = readdir(dir))) {
            struct parsed_name p;
            if (!restart_parse_name(de->d_name, &p))
                continue;
            if (strcmp(p.prefix, m->drives->prefix) != 0) {
                if (d == 0 && p.kind < 0 && !l->foreign[0])
                    snprintf(l->foreign, sizeof(l->foreign), "%s", de->d_name);
                continue;
            }
            if (p.kind >= 0 && p.seq + 1 > l->max_seq)
                l->max_seq = p.seq + 1;
            if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 256;
                struct lname *v = bm_realloc(l->v, cap * sizeof(*v));
                if (!v) {
                    err = -ENOMEM;
                    break;
                }
                l->v = v;
                l->cap = cap;
            }
            struct lname *e = &l->v[l->n];
            if (!(e->name = bm_strdup(de->d_name))) {
                err = -ENOMEM;
                break;
            }
            e->drive = d;
            e->type = de->d_type;
            e->keep = false;
            l->n++;
        }
        closedir(dir);
        if (err)
            return err;
    }
    if (l->n)
        qsort(l->v, l->n, sizeof(*l->v), cmp_lname);
    return 0;
}

static struct lname *listing_find(struct listing *l, uint32_t drive, const char *name)
{
    struct lname key = {(char *)name, drive, 0, false};
    return l->n ? bsearch(&key, l->v, l->n, sizeof(*l->v), cmp_lname) : NULL;
}

static int cmp_rec(const void *a, const void *b)
{
    const struct manifest_rec *x = a, *y = b;
    if (x->bucket != y->bucket)
        return x->bucket < y->bucket ? -1 : 1;
    return x->kind < y->kind ? -1 : x->kind > y->kind;
}

/*
 * After a clean close: the commit record and its manifest are the whole state. Nothing is opened or mapped
 * here; each bucket is loaded when first touched (recovery_load_bucket). What is checked now, cheaply:
 * the manifest against the map (ranges, duplicates, the entry counts against the commit's) and, from one
 * listing per drive, that every file it names is there as a regular file (BM_EMISSING / BM_ECORRUPT
 * naming it). Headers, sizes, stamps and counts are checked at first touch. No commit is written: the clean
 * record describes the state until the first write, which commits an unclean one first (checkpoint_arm).
 * Files of this map no commit names (a spare or an old manifest a close was cut short before removing) are
 * removed, as the unclean path does after its commit: the clean record proves no later state needs them.
 * Takes ownership of recs.
 */
static int open_lazy(struct rcv *r, const struct commit_rec *rec, struct manifest_rec *recs, uint32_t n,
                     struct listing *l)
{
    bm_map *m = r->m;
    int err = 0;
    char mname[96];
    manifest_name(m->drives->prefix, rec->manifest_epoch, mname, sizeof(mname));
    /* The checkpoint writes records in this order already; sorting makes the grouping a checked fact. */
    if (n)
        qsort(recs, n, sizeof(*recs), cmp_rec);
    uint64_t total = 0;
    for (uint32_t i = 0; i < n && !err; i++) {
        const struct manifest_rec *mr = &recs[i];
        bool first_of_bucket = i == 0 || recs[i - 1].bucket != mr->bucket;
        if (mr->bucket >= m->nbuckets || mr->kind > BKT_NCLASS || mr->drive >= m->drives->n ||
            first_of_bucket != (mr->kind == MANIFEST_KIND_INDEX) || (!first_of_bucket && recs[i - 1].kind == mr->kind))
            err = fail(r, BM_ECORRUPT, "%s/%s: entry %u is inconsistent with this map", m->drives->dirs[0], mname, i);
        else if (mr->kind == MANIFEST_KIND_INDEX)
            total += mr->count;
    }
    if (!err && total != rec->count)
        err = fail(r, BM_ECORRUPT, "%s/%s: its index files hold %llu entries, the commit record %llu",
                   m->drives->dirs[0], mname, (unsigned long long)total, (unsigned long long)rec->count);
    char name[96];
    for (uint32_t i = 0; i < n && !err; i++) {
        const struct manifest_rec *mr = &recs[i];
        restart_file_name(m->drives->prefix, mr->bucket, mr->kind, mr->seq, name, sizeof(name));
        struct lname *e = listing_find(l, mr->drive, name);
        if (!e)
            err = fail(r, BM_EMISSING, "%s/%s: missing (the last checkpoint names it; is the drive mounted?)",
                       m->drives->dirs[mr->drive], name);
        else if (e->type != DT_REG && e->type != DT_UNKNOWN)
            err = fail(r, BM_ECORRUPT, "%s/%s: not a regular file of the expected size", m->drives->dirs[mr->drive],
                       name);
        else
            e->keep = true;
    }
    if (!err && !(m->lazy_first = bm_calloc(m->nbuckets, sizeof(*m->lazy_first))))
        err = -ENOMEM;
    if (!err && !(m->lazy_n = bm_calloc(m->nbuckets, sizeof(*m->lazy_n))))
        err = -ENOMEM;
    if (err) {
        bm_free(recs);
        return err;
    }
    m->lazy_recs = recs;
    for (uint32_t i = 0; i < n; i++) {
        const struct manifest_rec *mr = &recs[i];
        struct bkt *b = &m->buckets[mr->bucket];
        if (mr->kind == MANIFEST_KIND_INDEX) {
            m->lazy_first[mr->bucket] = i;
            b->unloaded = 1;
            b->count = mr->count; /* exact after a clean close: bm_count needs no file */
        } else {
            b->used[mr->kind - 1] = mr->count;
        }
        m->lazy_n[mr->bucket]++;
    }
    /* Step 4's bookkeeping, without the commit. The first checkpoint after the first write (checkpoint_arm
     * takes epoch rec->epoch + 1) cuts the buckets from rec->epoch + 2. */
    struct bkt_ctx *ctx = &m->ctx;
    uint64_t max_gen = 0;
    for (uint32_t i = 0; i < n; i++)
        max_gen = recs[i].gen + 1 > max_gen ? recs[i].gen + 1 : max_gen;
    m->drives->name_seq = l->max_seq > rec->name_seq ? l->max_seq : rec->name_seq;
    ctx->next_gen = max_gen > rec->next_gen ? max_gen : rec->next_gen;
    m->committed_epoch = rec->epoch;
    m->committed_count = rec->count;
    m->epoch = rec->epoch + 1;
    m->manifest_epoch = rec->manifest_epoch;
    m->manifest_len = rec->manifest_len;
    m->manifest_sum = rec->manifest_sum;
    m->manifest_nfiles = n;
    m->manifest_recs_sum = n ? manifest_recs_sum(recs, n) : 0;
    for (uint32_t i = 0; i < m->nbuckets; i++)
        m->buckets[i].epoch = rec->epoch + 2;
    m->boot_id = current_boot_id();
    /* Leftovers: only now, when nothing can refuse the open any more. */
    uint64_t removed = 0;
    char path[4200];
    for (size_t i = 0; i < l->n; i++) {
        struct lname *e = &l->v[i];
        if (e->keep || (e->drive == 0 && rec->manifest_epoch && !strcmp(e->name, mname)))
            continue;
        snprintf(path, sizeof(path), "%s/%s", m->drives->dirs[e->drive], e->name);
        if (unlink(path) == 0)
            removed++;
    }
    bm_add_rlx(&ctx->ctr->orphan_files_removed, removed);
    return 0;
}

int recovery_load_bucket(bm_map *m, struct bkt *b, char *errbuf, size_t errlen)
{
    char msg[512] = "";
    struct rcv r = {m, false, msg, sizeof(msg)};
    int err = bkt_lock(b);
    if (err)
        return err;
    if (!bm_load_rlx(&b->unloaded)) { /* another thread loaded it while we waited for the lock */
        bkt_unlock(b);
        return 0;
    }
    struct stor_file *row[1 + BKT_NCLASS] = {0};
    const struct manifest_rec *mr = m->lazy_recs + m->lazy_first[b->ix];
    for (unsigned i = 0; i < m->lazy_n[b->ix] && !err; i++)
        err = open_listed(&r, &mr[i], true, &row[mr[i].kind]);
    if (!err) {
        struct idx_header *h = stor_header(row[0]);
        if (h->undo.armed) {
            err = fail(&r, BM_ECORRUPT, "%s: undo record armed after a clean close", row[0]->path);
        } else {
            if (h->max_disp >= row[0]->ncells)
                h->max_disp = row[0]->ncells - 1;
            err = adopt(b, row[0], row + 1); /* publishes the state: readers may use it from here */
        }
    }
    if (err) {
        for (unsigned k = 0; k <= BKT_NCLASS; k++)
            stor_file_destroy(row[k], false); /* nothing is deleted: a later touch tries again */
    } else {
        publish_counts(b);
        bm_store_rel(&b->unloaded, 0); /* after the state: bkt_lookup relies on this order */
    }
    bkt_unlock(b);
    if (err) {
        pthread_mutex_lock(&m->lazy_lock);
        snprintf(m->load_err, sizeof(m->load_err), "%s", msg[0] ? msg : bm_strerror(err));
        m->load_errors++;
        pthread_mutex_unlock(&m->lazy_lock);
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s", msg[0] ? msg : bm_strerror(err));
    }
    return err;
}

static int recover(bm_map *m, const char *restart_path, bool salvage, char *errbuf, size_t errlen)
{
    struct rcv r = {m, salvage, errbuf, errlen};
    struct bkt_ctx *ctx = &m->ctx;
    int fd = restart_open_rw(restart_path);
    if (fd < 0)
        return fail(&r, fd, "%s: cannot open: %s", restart_path, bm_strerror(fd));
    m->restart_fd = fd;
    struct listing l;
    int err = list_drives(&r, &l);
    if (!err && l.foreign[0])
        err = fail(&r, BM_ECORRUPT, "%s belongs to another map: %s/%s is the checkpoint of a map with another "
                   "file prefix than %s's (%s)", restart_path, m->drives->dirs[0], l.foreign, restart_path,
                   m->drives->prefix);
    if (err) {
        listing_free(&l);
        return err;
    }
    /* Salvage: without a usable commit record or manifest, each bucket's newest complete files found in the
     * drives are taken instead (and scrubbed, as everything under salvage). */
    bool scan_drives = false;
    struct commit_rec rec;
    err = restart_read_commit(fd, &rec);
    if (err && salvage && err != -ENOMEM) {
        fail(&r, 0, "%s: no valid commit record: salvaging the files found in the drives", restart_path);
        memset(&rec, 0, sizeof(rec));
        rec.epoch = max_manifest_epoch(m);
        scan_drives = true;
        err = 0;
    }
    if (err) {
        listing_free(&l);
        return fail(&r, err, "%s: no valid commit record (both slots damaged)", restart_path);
    }
    struct manifest_rec *recs = NULL;
    uint32_t n = 0;
    if (rec.manifest_epoch) {
        err = manifest_read(m->drives->dirs[0], m->drives->prefix, &rec, &recs, &n);
        if (err) {
            char name[96];
            manifest_name(m->drives->prefix, rec.manifest_epoch, name, sizeof(name));
            int code = err == -ENOENT ? BM_EMISSING : err;
            fail(&r, code, "%s/%s: %s", m->drives->dirs[0], name,
                 err == -ENOENT ? "missing (the last checkpoint names it; is the drive mounted?)"
                                : "damaged checkpoint manifest");
            if (!salvage || err == -ENOMEM) {
                listing_free(&l);
                return code;
            }
            scan_drives = true;
            err = 0;
        }
    }
    if (rec.clean && !salvage && !scan_drives) {
        err = open_lazy(&r, &rec, recs, n, &l);
        listing_free(&l);
        return err;
    }
    listing_free(&l);
    /* Unclean or salvage: every file now, repaired, then a commit (the map is armed from here). */
    bm_store_rel(&m->armed, 1);
    /* Step 2: every listed file, into a per-bucket table. */
    size_t rows = (size_t)m->nbuckets * (1 + BKT_NCLASS);
    struct stor_file **files = bm_calloc(rows, sizeof(*files));
    bool *force = bm_calloc(m->nbuckets, sizeof(bool));
    uint64_t max_gen = 0;
    if (!files || !force)
        err = -ENOMEM;
    for (uint32_t i = 0; i < n && !err; i++) {
        const struct manifest_rec *mr = &recs[i];
        if (mr->bucket >= m->nbuckets || mr->kind > BKT_NCLASS || mr->drive >= m->drives->n ||
            files[(size_t)mr->bucket * (1 + BKT_NCLASS) + mr->kind]) {
            err = fail(&r, BM_ECORRUPT, "checkpoint manifest %llu: entry %u is inconsistent with this map",
                       (unsigned long long)rec.manifest_epoch, i);
            break;
        }
        struct stor_file *f;
        err = open_listed(&r, mr, rec.clean, &f);
        if (err && salvage && err != -ENOMEM && err != -EMFILE && err != -ENFILE) {
            err = 0;
            force[mr->bucket] = true; /* without the file: what refers to it is dropped by the scrub */
            continue;
        }
        if (!err) {
            files[(size_t)mr->bucket * (1 + BKT_NCLASS) + mr->kind] = f;
            max_gen = mr->gen + 1 > max_gen ? mr->gen + 1 : max_gen;
        }
    }
    m->boot_id = current_boot_id();
    if (!err && (scan_drives || (!rec.clean && m->boot_id && rec.boot == m->boot_id)))
        err = take_newest(&r, files, &max_gen);
    /* Step 3. */
    uint64_t total = 0;
    for (uint32_t bi = 0; bi < m->nbuckets && !err; bi++) {
        struct stor_file **row = &files[(size_t)bi * (1 + BKT_NCLASS)];
        if (!row[0])
            continue; /* no index: no entry can refer to data files (salvage only) */
        struct bkt *b = &m->buckets[bi];
        if ((err = adopt(b, row[0], row + 1)))
            break;
        for (unsigned k = 0; k <= BKT_NCLASS; k++)
            row[k] = NULL; /* the bucket owns them now */
        struct idx_header *h = idx_hdr(b->state);
        if (!rec.clean || salvage || force[bi]) {
            err = scrub(b);
        } else if (h->undo.armed) {
            err = fail(&r, BM_ECORRUPT, "%s: undo record armed after a clean close", b->state->index->path);
        } else {
            if (h->max_disp >= b->state->cap)
                h->max_disp = b->state->cap - 1;
            publish_counts(b);
        }
        total += h->count;
    }
    if (!err && rec.clean && !salvage && total != rec.count)
        err = fail(&r, BM_ECORRUPT, "index files hold %llu entries, the last checkpoint %llu",
                   (unsigned long long)total, (unsigned long long)rec.count);
    if (files) {
        for (size_t i = 0; i < rows; i++)
            stor_file_destroy(files[i], false);
    }
    bm_free(files);
    bm_free(force);
    /* The same files as the last commit: a checkpoint with nothing new then reuses its manifest. */
    uint64_t listed_sum = recs && !salvage ? manifest_recs_sum(recs, n) : 0;
    bm_free(recs);
    if (err)
        return err;
    /* Step 4. */
    uint64_t seq = max_seq_in_drives(m);
    m->drives->name_seq = seq > rec.name_seq ? seq : rec.name_seq;
    ctx->next_gen = max_gen > rec.next_gen ? max_gen : rec.next_gen;
    m->committed_epoch = rec.epoch;
    m->committed_count = rec.count;
    m->epoch = rec.epoch + 1;
    m->manifest_epoch = rec.manifest_epoch;
    m->manifest_len = rec.manifest_len;
    m->manifest_sum = rec.manifest_sum;
    m->manifest_nfiles = salvage ? UINT32_MAX : rec.nfiles; /* salvage: always write a new manifest */
    m->manifest_recs_sum = listed_sum;
    for (uint32_t i = 0; i < m->nbuckets; i++)
        m->buckets[i].epoch = m->epoch;
    if ((err = checkpoint_run(m, false)))
        return fail(&r, err, "cannot commit the recovered state: %s", bm_strerror(err));
    bm_add_rlx(&ctx->ctr->orphan_files_removed, remove_unneeded(m));
    return 0;
}

int recovery_open(bm_map *m, const char *restart_path, bool salvage, char *errbuf, size_t errlen)
{
    uint64_t t0 = now_ns();
    BM_PROBE2(recovery_start, m->nbuckets, salvage);
    int err = recover(m, restart_path, salvage, errbuf, errlen);
    BM_PROBE4(recovery_end, bm_load_rlx(&m->ctr.buckets_scrubbed), bm_load_rlx(&m->committed_epoch), err,
              now_ns() - t0);
    (void)t0;
    return err;
}
