#include "storage/stor_file.h"

#include "common/bm_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = bm_malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels say EINVAL and we fall back */
#endif

static size_t page_up(size_t n) { return (n + STOR_PAGE - 1) / STOR_PAGE * STOR_PAGE; }

/* Faults [p, p + len) in writable, then touches every page. MAP_POPULATE would map a shared mapping
 * read-only (the kernel will not dirty pages for nothing), leaving one write-protect fault per page to the
 * grow that follows. And under a hypervisor that builds its own page tables lazily the first access of
 * each page still traps even after the guest's fault: the touch pays that here, on whichever thread
 * prepares the file (usually the maintenance thread), not on the writer's. The file is unpublished: no
 * reader sees the stores, which write back what is there. Only after the kernel populated every page. */
static void populate(uint8_t *p, size_t len)
{
    if (!len)
        return;
    if (madvise(p, len, MADV_POPULATE_WRITE) != 0) {
        /* Old kernel, or the pages could not be had (a sparse file on a full disk): touching them now
         * could raise SIGBUS where the writer's stores would have; leave it to them. */
        (void)madvise(p, len, MADV_WILLNEED);
        return;
    }
    for (size_t off = 0; off < len; off += STOR_PAGE) {
        volatile uint8_t *q = p + off;
        *q = *q;
    }
}

/* STOR_POPULATE marks a file a grow is about to fill, which will most likely be grown again: its mapping
 * sits at the start of an address-space reservation (PROT_NONE, no memory) GROW_RESERVE times its size
 * (at least GROW_RESERVE_MIN, at most GROW_RESERVE_MAX more), so stor_file_regrow can extend it where it is for the next dozen or so
 * 10% grows. Moving or remapping pages costs far more than the pages' contents here: on this project's
 * VMs the first touch of a page through a new mapping costs 5-20 us, against 0.2 us for a page already
 * mapped (bench/README "Growth"). */
#define GROW_RESERVE 16u
#define GROW_RESERVE_MIN (4ull << 20)
#define GROW_RESERVE_MAX (16ull << 30)

static size_t reservation(size_t len)
{
    size_t extra = len <= SIZE_MAX / GROW_RESERVE ? len * (GROW_RESERVE - 1) : GROW_RESERVE_MAX;
    extra = extra < GROW_RESERVE_MIN ? GROW_RESERVE_MIN : extra < GROW_RESERVE_MAX ? extra : GROW_RESERVE_MAX;
    return len <= SIZE_MAX - extra ? len + extra : len;
}

static int map_fd(struct stor_file *f, unsigned flags)
{
    size_t resv = page_up(f->map_len);
    uint8_t *m;
    if (flags & STOR_POPULATE) {
        resv = reservation(resv);
        void *r = mmap(NULL, resv, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (r == MAP_FAILED)
            return -errno;
        m = mmap(r, f->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f->fd, 0);
        if (m == MAP_FAILED) {
            int err = -errno;
            munmap(r, resv);
            return err;
        }
        populate(m, f->map_len);
    } else {
        m = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
        if (m == MAP_FAILED)
            return -errno;
    }
    if (flags & STOR_RANDOM)
        (void)madvise(m, f->map_len, MADV_RANDOM); /* advice only: failure changes nothing */
    f->base = m;
    f->resv_len = resv;
    return 0;
}

static int size_file(int fd, size_t len, unsigned flags);

static struct stor_file *file_new(const char *dir, const char *name, int drive, uint32_t header_bytes,
                                  uint32_t cell_size)
{
    struct stor_file *f = bm_calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->fd = -1;
    f->drive = drive;
    f->header_bytes = header_bytes;
    f->cell_size = cell_size;
    f->path = join_path(dir, name);
    if (!f->path) {
        bm_free(f);
        return NULL;
    }
    f->name = strrchr(f->path, '/') + 1;
    return f;
}

static void file_free(struct stor_file *f)
{
    bm_free(f->path);
    bm_free(f);
}

int stor_file_create(const char *dir, const char *name, int drive, uint32_t header_bytes, uint32_t cell_size,
                     uint64_t ncells, unsigned flags, struct stor_file **out)
{
    if (ncells == 0 || cell_size == 0 || header_bytes % STOR_PAGE)
        return -EINVAL;
    if (ncells > (SIZE_MAX - header_bytes) / cell_size)
        return -EFBIG;
    struct stor_file *f = file_new(dir, name, drive, header_bytes, cell_size);
    if (!f)
        return -ENOMEM;
    f->ncells = ncells;
    f->map_len = header_bytes + (size_t)ncells * cell_size;
    int err;
    f->fd = open(f->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        err = -errno;
        file_free(f);
        return err;
    }
    f->created = true;
    err = size_file(f->fd, f->map_len, flags);
    if (!err)
        err = map_fd(f, flags);
    if (err) {
        close(f->fd);
        unlink(f->path);
        file_free(f);
        return err;
    }
    *out = f;
    return 0;
}

int stor_file_open(const char *dir, const char *name, int drive, uint32_t header_bytes, uint32_t cell_size,
                   unsigned flags, struct stor_file **out)
{
    if (cell_size == 0 || header_bytes % STOR_PAGE)
        return -EINVAL;
    struct stor_file *f = file_new(dir, name, drive, header_bytes, cell_size);
    if (!f)
        return -ENOMEM;
    int err;
    struct stat st;
    f->fd = open(f->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (f->fd < 0) {
        err = -errno;
        file_free(f);
        return err;
    }
    if (fstat(f->fd, &st) != 0) {
        err = -errno;
        goto fail;
    }
    /* A file whose size is not header + whole cells was not written by us, or was cut short. */
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < header_bytes + (uint64_t)cell_size ||
        ((uint64_t)st.st_size - header_bytes) % cell_size) {
        err = -EBADMSG;
        goto fail;
    }
    f->map_len = (size_t)st.st_size;
    f->ncells = ((uint64_t)st.st_size - header_bytes) / cell_size;
    err = map_fd(f, flags);
    if (err)
        goto fail;
    *out = f;
    return 0;
fail:
    close(f->fd);
    file_free(f);
    return err;
}

void stor_file_destroy(struct stor_file *f, bool unlink_it)
{
    if (!f)
        return;
    if (f->base)
        munmap(f->base, f->resv_len);
    if (f->fd >= 0)
        close(f->fd);
    if (unlink_it && f->created)
        unlink(f->path);
    file_free(f);
}

void stor_file_unmap(struct stor_file *f)
{
    if (f->base)
        munmap(f->base, f->resv_len);
    f->base = NULL;
}

static int size_file(int fd, size_t len, unsigned flags)
{
    if (flags & STOR_NO_PREALLOC)
        return ftruncate(fd, (off_t)len) ? -errno : 0;
    return -posix_fallocate(fd, 0, (off_t)len);
}

int stor_file_recycle(struct stor_file *f, uint64_t ncells, unsigned flags)
{
    if (ncells == 0 || ncells > (SIZE_MAX - f->header_bytes) / f->cell_size)
        return -EFBIG;
    if (f->base) {
        int err = stor_file_regrow(f, ncells, flags); /* where it is mapped, when it fits */
        if (err != -EAGAIN)
            return err;
        stor_file_unmap(f);
    }
    size_t len = f->header_bytes + (size_t)ncells * f->cell_size;
    /* Zeroing by converting extents to unwritten writes no data; where unsupported (tmpfs), truncate. */
    int err = 0;
    if ((flags & STOR_NO_PREALLOC) || fallocate(f->fd, FALLOC_FL_ZERO_RANGE, 0, (off_t)f->map_len) != 0)
        err = ftruncate(f->fd, 0) ? -errno : 0;
    if (!err && len < f->map_len)
        err = ftruncate(f->fd, (off_t)len) ? -errno : 0;
    if (!err)
        err = size_file(f->fd, len, flags);
    if (err)
        return err;
    f->ncells = ncells;
    f->map_len = len;
    __atomic_store_n(&f->dirty, 0, __ATOMIC_RELAXED);
    f->stamp = f->stamp_count = 0; /* a new file: its zeroed header carries no stamp */
    f->restamp = false;
    return map_fd(f, flags);
}

int stor_file_regrow(struct stor_file *f, uint64_t ncells, unsigned flags)
{
    if (!f->base || ncells == 0 || ncells > (SIZE_MAX - f->header_bytes) / f->cell_size)
        return -EAGAIN;
    size_t len = f->header_bytes + (size_t)ncells * f->cell_size, old = page_up(f->map_len);
    if (page_up(len) > f->resv_len)
        return -EAGAIN;
    int err;
    if (page_up(len) < old) {
        /* Shrinking: the pages past the new end go back to the reservation, then the file is cut. */
        void *r = mmap(f->base + page_up(len), old - page_up(len), PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
        if (r == MAP_FAILED || ftruncate(f->fd, (off_t)len) != 0) {
            err = -errno;
            stor_file_unmap(f);
            return err;
        }
        old = page_up(len);
    }
    if ((err = size_file(f->fd, len, flags)))
        return err;
    if (page_up(len) > old) {
        void *t = mmap(f->base + old, page_up(len) - old, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f->fd,
                       (off_t)old);
        if (t == MAP_FAILED) {
            err = -errno;
            /* MAP_FIXED failed: the reservation's tail may be gone; give the whole range up. */
            stor_file_unmap(f);
            return err;
        }
        populate(t, page_up(len) - old);
        if (flags & STOR_RANDOM)
            (void)madvise(t, page_up(len) - old, MADV_RANDOM);
    }
    /* The old part through the mapping it already has: stores into mapped pages, no fault, no new page. */
    memset(f->base, 0, len < old ? len : old);
    f->ncells = ncells;
    f->map_len = len;
    __atomic_store_n(&f->dirty, 0, __ATOMIC_RELAXED);
    f->stamp = f->stamp_count = 0; /* a new file, as after stor_file_recycle: no stamp in its header */
    f->restamp = false;
    return 0;
}

int stor_file_empty(struct stor_file *f)
{
    stor_file_unmap(f);
    if (ftruncate(f->fd, 0) != 0)
        return -errno;
    f->ncells = 0;
    f->map_len = 0;
    return 0;
}

int stor_file_msync(struct stor_file *f)
{
    return msync(f->base, f->map_len, MS_SYNC) ? -errno : 0;
}
