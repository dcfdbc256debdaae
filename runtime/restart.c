#include "runtime/restart.h"

#include "common/bm_mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESTART_MAGIC 0x5452545345524d42ull /* "BMRESTRT" */

/* On-disk layout, little-endian, 64 bytes. */
struct restart_disk {
    uint64_t magic;
    uint32_t format;
    uint32_t elem_size;
    uint32_t max_buckets;
    uint32_t max_search;
    uint32_t n_drives;
    uint32_t reserved;
    char prefix[24];
    uint32_t pad;
    uint32_t sum; /* over every byte before it */
};
_Static_assert(sizeof(struct restart_disk) == 64, "restart file layout");

static uint32_t sum_bytes(const void *p, size_t n)
{
    /* FNV-1a: the restart file is tiny; this only has to catch damage, not adversaries. */
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

int restart_read(const char *path, struct restart_ident *id, uint32_t *format)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct restart_disk r;
    uint8_t extra;
    ssize_t n = read(fd, &r, sizeof(r));
    ssize_t more = n == (ssize_t)sizeof(r) ? read(fd, &extra, 1) : 0;
    int err = n < 0 ? -errno : 0;
    close(fd);
    if (err)
        return err;
    if (n < 12 || r.magic != RESTART_MAGIC)
        return BM_ECORRUPT;
    if (format)
        *format = r.format;
    if (r.format != RESTART_FORMAT)
        return BM_EVERSION;
    if (n != (ssize_t)sizeof(r) || more != 0 || r.sum != sum_bytes(&r, offsetof(struct restart_disk, sum)) ||
        memchr(r.prefix, 0, sizeof(r.prefix)) == NULL)
        return BM_ECORRUPT;
    id->elem_size = r.elem_size;
    id->max_buckets = r.max_buckets;
    id->max_search = r.max_search;
    id->n_drives = r.n_drives;
    memcpy(id->prefix, r.prefix, sizeof(id->prefix));
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char *copy = bm_strdup(path);
    if (!copy)
        return -ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bm_free(copy);
    if (fd < 0)
        return -errno;
    int err = fsync(fd) ? -errno : 0;
    close(fd);
    return err;
}

int restart_write(const char *path, const struct restart_ident *id)
{
    struct restart_disk r;
    memset(&r, 0, sizeof(r));
    r.magic = RESTART_MAGIC;
    r.format = RESTART_FORMAT;
    r.elem_size = id->elem_size;
    r.max_buckets = id->max_buckets;
    r.max_search = id->max_search;
    r.n_drives = id->n_drives;
    memcpy(r.prefix, id->prefix, sizeof(r.prefix));
    r.sum = sum_bytes(&r, offsetof(struct restart_disk, sum));
    size_t len = strlen(path) + 8;
    char *tmp = bm_malloc(len);
    if (!tmp)
        return -ENOMEM;
    snprintf(tmp, len, "%s.tmp", path);
    int err = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = -errno;
    } else {
        if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
            err = errno ? -errno : -EIO;
        else if (fsync(fd))
            err = -errno;
        close(fd);
        if (!err && rename(tmp, path))
            err = -errno;
        if (err)
            unlink(tmp);
    }
    bm_free(tmp);
    return err ? err : fsync_dir_of(path);
}

/* ---- file names: "<prefix:16 hex>-b<bucket>-idx-<seq>.bm" / "<prefix>-b<bucket>-d<class>-<seq>.bm" ---- */

struct parsed_name {
    char prefix[17];
    uint32_t bucket;
    int cls; /* -1 for an index file */
    uint64_t seq;
};

static bool parse_name(const char *name, struct parsed_name *p)
{
    size_t len = strlen(name);
    if (len < 24 || strcmp(name + len - 3, ".bm") != 0 || name[16] != '-' || name[17] != 'b')
        return false;
    for (int i = 0; i < 16; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    memcpy(p->prefix, name, 16);
    p->prefix[16] = 0;
    char *end;
    unsigned long b = strtoul(name + 18, &end, 10);
    if (end == name + 18 || *end != '-' || b > UINT32_MAX)
        return false;
    p->bucket = (uint32_t)b;
    const char *k = end + 1;
    if (strncmp(k, "idx-", 4) == 0) {
        p->cls = -1;
        k += 4;
    } else if (k[0] == 'd') {
        unsigned long c = strtoul(k + 1, &end, 10);
        if (end == k + 1 || *end != '-' || c >= BKT_NCLASS)
            return false;
        p->cls = (int)c;
        k = end + 1;
    } else {
        return false;
    }
    unsigned long long seq = strtoull(k, &end, 10);
    if (end == k || strcmp(end, ".bm") != 0)
        return false;
    p->seq = seq;
    return true;
}

bool restart_drives_hold_map_files(const struct stor_drives *d)
{
    for (uint32_t i = 0; i < d->n; i++) {
        DIR *dir = opendir(d->dirs[i]);
        if (!dir)
            continue;
        struct dirent *de;
        struct parsed_name p;
        bool found = false;
        while (!found && (de = readdir(dir)))
            found = parse_name(de->d_name, &p);
        closedir(dir);
        if (found)
            return true;
    }
    return false;
}

/* The best (newest complete) file of one kind of one bucket so far. */
struct pick {
    struct stor_file *f;
    uint64_t gen;
};

static void consider(struct pick *slot, struct stor_file *f, uint64_t gen, uint64_t *removed)
{
    if (slot->f && slot->gen >= gen) {
        stor_file_destroy(f, true);
        (*removed)++;
        return;
    }
    if (slot->f) {
        stor_file_destroy(slot->f, true);
        (*removed)++;
    }
    slot->f = f;
    slot->gen = gen;
}

int restart_adopt(struct stor_drives *d, struct bkt *buckets, uint32_t nbuckets, struct bkt_ctx *ctx)
{
    struct pick *picks = bm_calloc((size_t)nbuckets * (1 + BKT_NCLASS), sizeof(*picks));
    if (!picks)
        return -ENOMEM;
    uint64_t removed = 0, max_gen = 0, max_seq = 0;
    int err = 0;
    for (uint32_t di = 0; di < d->n && !err; di++) {
        DIR *dir = opendir(d->dirs[di]);
        if (!dir) {
            err = -errno;
            break;
        }
        struct dirent *de;
        while (!err && (de = readdir(dir))) {
            struct parsed_name p;
            if (!parse_name(de->d_name, &p) || strcmp(p.prefix, d->prefix) != 0)
                continue; /* not ours: never touched */
            if (p.seq >= max_seq)
                max_seq = p.seq + 1;
            bool is_index = p.cls < 0;
            struct stor_file *f;
            int e = stor_file_open(d->dirs[di], de->d_name, (int)di, is_index ? IDX_HEADER_BYTES : DATA_HEADER_BYTES,
                                   is_index ? (uint32_t)sizeof(struct bkt_entry) : ctx->data_cell_size[p.cls],
                                   is_index ? STOR_RANDOM : 0, &f);
            if (e == -ENOMEM || e == -EMFILE || e == -ENFILE) {
                err = e;
                break;
            }
            if (e) {
                /* Wrong size for its kind: a grow cut short before its file was sized. Ours to remove. */
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", d->dirs[di], de->d_name);
                unlink(path);
                removed++;
                continue;
            }
            f->created = true; /* a file of this map: it may be recycled or removed like one we made */
            uint64_t magic = is_index ? ((struct idx_header *)stor_header(f))->magic
                                      : ((struct data_header *)stor_header(f))->magic;
            uint64_t gen = is_index ? ((struct idx_header *)stor_header(f))->gen
                                    : ((struct data_header *)stor_header(f))->gen;
            uint32_t hb = is_index ? ((struct idx_header *)stor_header(f))->bucket
                                   : ((struct data_header *)stor_header(f))->bucket;
            if (magic != (is_index ? IDX_MAGIC : DATA_MAGIC) || p.bucket >= nbuckets || hb != p.bucket) {
                stor_file_destroy(f, true); /* unfinished build, or from a map of another shape */
                removed++;
                continue;
            }
            if (gen >= max_gen)
                max_gen = gen + 1;
            consider(&picks[(size_t)p.bucket * (1 + BKT_NCLASS) + (size_t)(p.cls + 1)], f, gen, &removed);
        }
        closedir(dir);
    }
    d->name_seq = max_seq;
    ctx->next_gen = max_gen;
    for (uint32_t b = 0; b < nbuckets; b++) {
        struct pick *row = &picks[(size_t)b * (1 + BKT_NCLASS)];
        struct stor_file *data[BKT_NCLASS];
        bool any_data = false;
        for (unsigned c = 0; c < BKT_NCLASS; c++) {
            data[c] = row[1 + c].f;
            any_data |= data[c] != NULL;
        }
        if (!err && row[0].f) {
            err = bkt_adopt(&buckets[b], row[0].f, data);
            if (!err)
                continue;
        } else if (!err && any_data) {
            /* Data files without an index: the index was never completed, so no entry refers to them. */
            for (unsigned c = 0; c < BKT_NCLASS; c++) {
                if (data[c]) {
                    stor_file_destroy(data[c], true);
                    removed++;
                }
            }
            continue;
        }
        /* Error path: release what this bucket would have adopted (never unlink the user's data). */
        stor_file_destroy(row[0].f, false);
        for (unsigned c = 0; c < BKT_NCLASS; c++)
            stor_file_destroy(data[c], false);
    }
    bm_add_rlx(&ctx->ctr->orphan_files_removed, removed);
    bm_free(picks);
    return err;
}
