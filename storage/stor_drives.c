#include "storage/stor_drives.h"

#include "common/bm_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* The lock is a flock on each drive directory itself, so it needs no file (a temporary map leaves nothing
 * behind) and cannot be defeated by someone unlinking a lock file. An exclusive owner also writes its pid
 * here; the file only lets the next opener tell a killed owner from a live one. */
#define OWNER_NAME ".bucketmap.lock"

static bool owner_is_us(int dirfd);

static int check_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    if (access(dir, W_OK | X_OK) != 0)
        return -errno;
    return 0;
}

static int make_tmp_dir(char **out)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base || check_dir(base) != 0)
        base = "/tmp";
    size_t len = strlen(base) + sizeof("/bucketmap-XXXXXX");
    char *p = bm_malloc(len);
    if (!p)
        return -ENOMEM;
    snprintf(p, len, "%s/bucketmap-XXXXXX", base);
    if (!mkdtemp(p)) {
        int err = -errno;
        bm_free(p);
        return err;
    }
    *out = p;
    return 0;
}

int stor_drives_open(const char *const *dirs, uint32_t n, struct stor_drives **out)
{
    struct stor_drives *d = bm_calloc(1, sizeof(*d));
    uint32_t cnt = n ? n : 1;
    int err = -ENOMEM;
    if (!d)
        return -ENOMEM;
    d->dirs = bm_calloc(cnt, sizeof(char *));
    d->lock_fds = bm_malloc(cnt * sizeof(int));
    if (!d->dirs || !d->lock_fds)
        goto fail;
    for (uint32_t i = 0; i < cnt; i++)
        d->lock_fds[i] = -1;
    if (n == 0) {
        err = make_tmp_dir(&d->dirs[0]);
        if (err)
            goto fail;
        d->n = 1;
        d->own_tmp = true;
    } else {
        for (uint32_t i = 0; i < n; i++) {
            err = check_dir(dirs[i]);
            if (err)
                goto fail;
            d->dirs[i] = bm_strdup(dirs[i]);
            if (!d->dirs[i]) {
                err = -ENOMEM;
                goto fail;
            }
            d->n = i + 1;
        }
    }
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)d;
    snprintf(d->prefix, sizeof(d->prefix), "%016llx", (unsigned long long)r);
    *out = d;
    return 0;
fail:
    stor_drives_close(d);
    return err;
}

void stor_drives_close(struct stor_drives *d)
{
    if (!d)
        return;
    for (uint32_t i = 0; i < d->n; i++) {
        if (d->lock_fds && d->lock_fds[i] >= 0) {
            if (d->lock_exclusive && owner_is_us(d->lock_fds[i])) {
                /* Remove the pid while still holding the lock, so it never names a process that has let go.
                 * Anything else planted under that name is not ours to delete. */
                (void)unlinkat(d->lock_fds[i], OWNER_NAME, 0);
            }
            close(d->lock_fds[i]);
        }
    }
    if (d->own_tmp && d->dirs && d->dirs[0])
        rmdir(d->dirs[0]);
    for (uint32_t i = 0; d->dirs && i < d->n; i++)
        bm_free(d->dirs[i]);
    bm_free(d->dirs);
    bm_free(d->lock_fds);
    bm_free(d);
}

uint32_t stor_drives_pick(struct stor_drives *d)
{
    return (uint32_t)(__atomic_fetch_add(&d->next, 1, __ATOMIC_RELAXED) % d->n);
}

void stor_drives_name(struct stor_drives *d, const char *tag, char *buf, uint32_t len)
{
    uint64_t seq = __atomic_fetch_add(&d->name_seq, 1, __ATOMIC_RELAXED);
    snprintf(buf, len, "%s-%s-%llu.bm", d->prefix, tag, (unsigned long long)seq);
}

#define DEAD_OWNER_WAIT_MS 3000

/* True when the owner file of dir names a process that no longer exists or is on its way out. */
static bool owner_dead(const char *dir)
{
    char path[4096], buf[24] = {0};
    snprintf(path, sizeof(path), "%s/%s", dir, OWNER_NAME);
    /* O_NOFOLLOW|O_NONBLOCK: a symlink or FIFO planted under the name is no owner record (and must not make
     * us read another file or block). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return false;
    ssize_t got = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (got <= 0)
        return false;
    long pid = strtol(buf, NULL, 10);
    if (pid <= 0 || pid == (long)getpid())
        return false;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return true;
    /* A zombie still counts as the owner for kill(), but it will never touch the map again. */
    char stat[256] = {0};
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    int sfd = open(path, O_RDONLY | O_CLOEXEC);
    if (sfd < 0)
        return false;
    ssize_t n = read(sfd, stat, sizeof(stat) - 1);
    close(sfd);
    const char *paren = n > 0 ? strrchr(stat, ')') : NULL;
    if (!paren || paren[1] != ' ')
        return false;
    if (paren[2] == 'Z' || paren[2] == 'X')
        return true;
    /* A process killed a moment ago is still running its exit path: its flags (the 7th field after the
     * state) carry PF_EXITING. */
    char st;
    int ppid, pgrp, session, tty, tpgid;
    unsigned long flags;
    if (sscanf(paren + 2, "%c %d %d %d %d %d %lu", &st, &ppid, &pgrp, &session, &tty, &tpgid, &flags) != 7)
        return false;
    return (flags & 0x4ul) != 0; /* PF_EXITING */
}

/* Opens the owner file in the locked directory dirfd for writing, refusing anything that is not a plain
 * file of its own: a symlink (O_NOFOLLOW: never write through it), a FIFO or device (O_NONBLOCK, S_ISREG)
 * or a hard link to some other file (st_nlink), so a planted name cannot make us truncate or overwrite a
 * file elsewhere. Truncation happens only after these checks, on the file itself. */
static int open_owner(int dirfd, int flags)
{
    int fd = openat(dirfd, OWNER_NAME, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
        close(fd);
        return -EPERM;
    }
    return fd;
}

static int format_pid(char *buf, size_t len) { return snprintf(buf, len, "%ld\n", (long)getpid()); }

/* True when dirfd's owner file is a plain file naming this process: ours to remove. */
static bool owner_is_us(int dirfd)
{
    int fd = open_owner(dirfd, O_RDONLY);
    if (fd < 0)
        return false;
    char buf[24] = {0}, pid[24];
    ssize_t got = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    int len = format_pid(pid, sizeof(pid));
    return got == len && memcmp(buf, pid, (size_t)len) == 0;
}

/* Writes our pid into the owner file. Returns 0 or a negated errno; a short write is -EIO, not whatever
 * errno an earlier call left behind. */
static int write_owner(int dirfd)
{
    int fd = open_owner(dirfd, O_WRONLY | O_CREAT);
    if (fd < 0)
        return fd;
    char pid[24];
    int len = format_pid(pid, sizeof(pid));
    int err = 0;
    if (ftruncate(fd, 0) != 0)
        err = -errno;
    for (ssize_t off = 0; !err && off < len;) {
        ssize_t w = pwrite(fd, pid + off, (size_t)(len - off), off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            err = -errno;
        else if (w == 0)
            err = -EIO;
        else
            off += w;
    }
    close(fd);
    return err;
}

int stor_drives_lock(struct stor_drives *d, bool exclusive)
{
    unsigned waited_ms = 0;
    d->lock_exclusive = exclusive;
    for (uint32_t i = 0; i < d->n; i++) {
        int fd = open(d->dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        while (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
            int err = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
            if (err == -EWOULDBLOCK && owner_dead(d->dirs[i]) && waited_ms < DEAD_OWNER_WAIT_MS) {
                /* A killed owner's lock lives until the kernel has torn down its io_uring workers, which
                 * share its file table: wait for that instead of refusing a legitimate reopen. */
                usleep(5000);
                waited_ms += 5;
                continue;
            }
            close(fd);
            return err;
        }
        d->lock_fds[i] = fd;
        /* The pid only speeds up recovery after a crash (owner_dead); the flock is the lock. So a drive
         * where it cannot be written (a planted name, a full disk) is still locked and usable. */
        if (exclusive)
            (void)write_owner(fd);
    }
    return 0;
}
