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

#define LOCK_NAME ".bucketmap.lock"

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
            /* Unlink before unlocking: a waiter that then locks our unlinked inode retries (see lock). */
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", d->dirs[i], LOCK_NAME);
            unlink(path);
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

/* True when the lock file names a process that no longer exists. */
static bool owner_dead(int fd)
{
    char buf[24] = {0};
    if (pread(fd, buf, sizeof(buf) - 1, 0) <= 0)
        return false;
    long pid = strtol(buf, NULL, 10);
    if (pid <= 0 || pid == (long)getpid())
        return false;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return true;
    /* A zombie still counts as the owner for kill(), but it will never touch the map again. */
    char path[64], stat[256] = {0};
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

int stor_drives_lock(struct stor_drives *d)
{
    unsigned waited_ms = 0;
    for (uint32_t i = 0; i < d->n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", d->dirs[i], LOCK_NAME);
        for (;;) {
            int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0)
                return -errno;
            if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
                int err = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
                if (err == -EWOULDBLOCK && owner_dead(fd) && waited_ms < DEAD_OWNER_WAIT_MS) {
                    /* A killed owner's lock lives until the kernel has torn down its io_uring workers,
                     * which share its file table: wait for that instead of refusing a legitimate reopen. */
                    close(fd);
                    usleep(5000);
                    waited_ms += 5;
                    continue;
                }
                close(fd);
                return err;
            }
            /* The previous owner may have unlinked the file between our open and our flock: then we hold a
             * lock on a dead inode and must retry on the live path. */
            struct stat a, b;
            if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
                char pid[24];
                int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
                if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)len, 0) != len) {
                    /* the pid only speeds up recovery after a crash; the lock itself is held */
                }
                d->lock_fds[i] = fd;
                break;
            }
            close(fd);
        }
    }
    return 0;
}
