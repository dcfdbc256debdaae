/* restart.c — the restart file, its commit slots and the checkpoint manifests (layout in restart.h). */
#include "runtime/restart.h"

#include "common/bm_mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESTART_MAGIC 0x5452545345524d42ull  /* "BMRESTRT" */
#define MANIFEST_MAGIC 0x5346494e414d4d42ull /* "BMMANIFS" */
#define SLOT_OFFSET(i) ((off_t)(1 + (i)) * 4096)

/* Identity, little-endian, 64 bytes at offset 0. */
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

struct manifest_head {
    uint64_t magic;
    uint64_t epoch;
    uint32_t n;
    uint32_t reserved;
};

static uint32_t sum_bytes(const void *p, size_t n)
{
    /* FNV-1a: the identity is tiny; this only has to catch damage, not adversaries. */
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static uint64_t sum_words(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = fold_mul(h ^ w, 0x9E3779B97F4A7C15ull);
    }
    return h ^ n;
}

/* Full-length pread/pwrite: a short transfer without an errno is -EIO, never a stale errno. */
static int pread_all(int fd, void *buf, size_t n, off_t off, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(fd, (const char *)buf + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        done += (size_t)r;
    }
    return 0;
}

int restart_read(const char *path, struct restart_ident *id, uint32_t *format)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct restart_disk r;
    struct stat st;
    size_t n = 0;
    int err = fstat(fd, &st) ? -errno : pread_all(fd, &r, sizeof(r), 0, &n);
    close(fd);
    if (err)
        return err;
    if (n < 12 || r.magic != RESTART_MAGIC)
        return BM_ECORRUPT;
    if (format)
        *format = r.format;
    if (r.format != RESTART_FORMAT)
        return BM_EVERSION;
    if (n != sizeof(r) || st.st_size != RESTART_FILE_BYTES ||
        r.sum != sum_bytes(&r, offsetof(struct restart_disk, sum)) || memchr(r.prefix, 0, sizeof(r.prefix)) == NULL)
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

static uint64_t commit_sum(const struct commit_rec *c) { return sum_words(0x13198a2e03707344ull, c, offsetof(struct commit_rec, sum)); }

/* Opens path for a new file: exclusively and never through a symlink, replacing a leftover regular file
 * (our own temporary from a cut-short attempt) once. */
static int create_excl(const char *path)
{
    for (int attempt = 0;; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd >= 0 || errno != EEXIST || attempt)
            return fd >= 0 ? fd : -errno;
        struct stat st;
        if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
            return -EEXIST;
        if (unlink(path) != 0)
            return -errno; /* unlinking a symlink removes the link, never its target */
    }
}

static void identity_of(const struct restart_ident *id, struct restart_disk *r)
{
    memset(r, 0, sizeof(*r));
    r->magic = RESTART_MAGIC;
    r->format = RESTART_FORMAT;
    r->elem_size = id->elem_size;
    r->max_buckets = id->max_buckets;
    r->max_search = id->max_search;
    r->n_drives = id->n_drives;
    memcpy(r->prefix, id->prefix, sizeof(r->prefix));
    r->sum = sum_bytes(r, offsetof(struct restart_disk, sum));
}

int restart_write(const char *path, const struct restart_ident *id)
{
    uint8_t *page = bm_calloc(1, RESTART_FILE_BYTES);
    if (!page)
        return -ENOMEM;
    identity_of(id, (struct restart_disk *)page);
    struct commit_rec c0 = {.magic = COMMIT_MAGIC, .epoch = 0, .clean = 1};
    c0.sum = commit_sum(&c0);
    memcpy(page + SLOT_OFFSET(0), &c0, sizeof(c0));
    size_t len = strlen(path) + 8;
    char *tmp = bm_malloc(len);
    int err = 0;
    if (!tmp) {
        bm_free(page);
        return -ENOMEM;
    }
    snprintf(tmp, len, "%s.tmp", path);
    int fd = create_excl(tmp);
    if (fd < 0) {
        err = fd;
    } else {
        err = pwrite_all(fd, page, RESTART_FILE_BYTES, 0);
        if (!err && fsync(fd))
            err = -errno;
        close(fd);
        if (!err && rename(tmp, path))
            err = -errno;
        if (err)
            unlink(tmp);
    }
    bm_free(tmp);
    bm_free(page);
    return err ? err : fsync_dir_of(path);
}

int restart_rewrite_identity(const char *path, const struct restart_ident *id)
{
    struct restart_disk r;
    identity_of(id, &r);
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int err = fstat(fd, &st) ? -errno : 0;
    if (!err && st.st_size != RESTART_FILE_BYTES && ftruncate(fd, RESTART_FILE_BYTES))
        err = -errno;
    if (!err)
        err = pwrite_all(fd, &r, sizeof(r), 0);
    if (!err && fsync(fd))
        err = -errno;
    close(fd);
    return err;
}

int restart_find_prefix(const char *dir, char prefix[24])
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *de;
    int found = 0;
    while ((de = readdir(d))) {
        struct parsed_name p;
        if (!restart_parse_name(de->d_name, &p) || p.kind != -1)
            continue;
        if (found && strcmp(prefix, p.prefix) != 0) {
            found = 2;
            break;
        }
        memcpy(prefix, p.prefix, 17);
        found = 1;
    }
    closedir(d);
    return found == 1 ? 0 : found ? BM_ECORRUPT : -ENOENT;
}

int restart_open_rw(const char *path)
{
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

int restart_read_commit(int fd, struct commit_rec *out)
{
    bool found = false;
    for (int i = 0; i < 2; i++) {
        struct commit_rec c;
        size_t got = 0;
        int err = pread_all(fd, &c, sizeof(c), SLOT_OFFSET(i), &got);
        if (err)
            return err;
        if (got != sizeof(c) || c.magic != COMMIT_MAGIC || c.sum != commit_sum(&c) || c.epoch % 2 != (uint64_t)i)
            continue;
        if (!found || c.epoch > out->epoch)
            *out = c;
        found = true;
    }
    return found ? 0 : BM_ECORRUPT;
}

int restart_write_commit(int fd, struct commit_rec *c)
{
    c->magic = COMMIT_MAGIC;
    c->sum = commit_sum(c);
    int err = pwrite_all(fd, c, sizeof(*c), SLOT_OFFSET(c->epoch % 2));
    if (!err && fdatasync(fd))
        err = -errno;
    return err;
}

uint64_t manifest_recs_sum(const struct manifest_rec *r, size_t n)
{
    return sum_words(0x452821e638d01377ull ^ n, r, n * sizeof(*r));
}

void manifest_name(const char *prefix, uint64_t epoch, char *buf, size_t len)
{
    snprintf(buf, len, "%s-manifest-%llu.bm", prefix, (unsigned long long)epoch);
}

int manifest_write(const char *dir, const char *prefix, uint64_t epoch, const struct manifest_rec *recs,
                   uint32_t n, uint64_t *len, uint64_t *sum)
{
    char name[96], path[4096];
    manifest_name(prefix, epoch, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct manifest_head h = {MANIFEST_MAGIC, epoch, n, 0};
    int fd = create_excl(path);
    if (fd < 0)
        return fd;
    size_t body = (size_t)n * sizeof(*recs);
    int err = pwrite_all(fd, &h, sizeof(h), 0);
    if (!err && body)
        err = pwrite_all(fd, recs, body, sizeof(h));
    if (!err && fdatasync(fd))
        err = -errno;
    close(fd);
    if (err) {
        unlink(path);
        return err;
    }
    *len = sizeof(h) + body;
    *sum = sum_words(sum_words(0xa4093822299f31d0ull, &h, sizeof(h)), recs, body);
    return 0;
}

int manifest_read(const char *dir, const char *prefix, const struct commit_rec *c, struct manifest_rec **recs,
                  uint32_t *n)
{
    char name[96], path[4096];
    manifest_name(prefix, c->manifest_epoch, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    *recs = NULL;
    *n = 0;
    if (c->manifest_len < sizeof(struct manifest_head) || c->manifest_len > (1ull << 32))
        return BM_ECORRUPT;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint8_t *buf = bm_malloc(c->manifest_len);
    size_t got = 0;
    int err = buf ? pread_all(fd, buf, c->manifest_len, 0, &got) : -ENOMEM;
    close(fd);
    if (!err) {
        struct manifest_head h;
        memcpy(&h, buf, sizeof(h));
        size_t body = c->manifest_len - sizeof(h);
        if (got != c->manifest_len || h.magic != MANIFEST_MAGIC || h.epoch != c->manifest_epoch ||
            (size_t)h.n * sizeof(struct manifest_rec) != body ||
            sum_words(sum_words(0xa4093822299f31d0ull, buf, sizeof(h)), buf + sizeof(h), body) != c->manifest_sum) {
            err = BM_ECORRUPT;
        } else {
            memmove(buf, buf + sizeof(h), body);
            *recs = (struct manifest_rec *)buf;
            *n = h.n;
            return 0;
        }
    }
    bm_free(buf);
    return err;
}

bool restart_parse_name(const char *name, struct parsed_name *p)
{
    size_t len = strlen(name);
    if (len < 22 || strcmp(name + len - 3, ".bm") != 0 || name[16] != '-')
        return false;
    for (int i = 0; i < 16; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    memcpy(p->prefix, name, 16);
    p->prefix[16] = 0;
    char *end;
    const char *k;
    if (strncmp(name + 17, "manifest-", 9) == 0) {
        p->kind = -1;
        p->bucket = 0;
        k = name + 26;
    } else {
        if (name[17] != 'b')
            return false;
        unsigned long b = strtoul(name + 18, &end, 10);
        if (end == name + 18 || *end != '-' || b > UINT32_MAX)
            return false;
        p->bucket = (uint32_t)b;
        k = end + 1;
        if (strncmp(k, "idx-", 4) == 0) {
            p->kind = MANIFEST_KIND_INDEX;
            k += 4;
        } else if (k[0] == 'd') {
            unsigned long c = strtoul(k + 1, &end, 10);
            if (end == k + 1 || *end != '-' || c >= BKT_NCLASS)
                return false;
            p->kind = 1 + (int)c;
            k = end + 1;
        } else {
            return false;
        }
    }
    if (*k < '0' || *k > '9')
        return false;
    unsigned long long seq = strtoull(k, &end, 10);
    if (strcmp(end, ".bm") != 0)
        return false;
    p->seq = seq;
    return true;
}

void restart_file_name(const char *prefix, uint32_t bucket, uint32_t kind, uint64_t seq, char *buf, size_t len)
{
    if (kind == MANIFEST_KIND_INDEX)
        snprintf(buf, len, "%s-b%u-idx-%llu.bm", prefix, bucket, (unsigned long long)seq);
    else
        snprintf(buf, len, "%s-b%u-d%u-%llu.bm", prefix, bucket, kind - 1, (unsigned long long)seq);
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
            found = restart_parse_name(de->d_name, &p);
        closedir(dir);
        if (found)
            return true;
    }
    return false;
}
