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
            if (d->lock_exclusive) {
                /* Remove the pid while still holding the lock, so it never names a process that has let go. */
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", d->dirs[i], OWNER_NAME);
                unlink(path);
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
    int fd = open(path, O_RDONLY | O_CLOEXEC);
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

static void write_owner(const char *dir)
{
    char path[4096], pid[24];
    snprintf(path, sizeof(path), "%s/%s", dir, OWNER_NAME);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return; /* the pid only speeds up recovery after a crash; the lock itself is held */
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (write(fd, pid, (size_t)len) != len) {
        /* as above */
    }
    close(fd);
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
        if (exclusive)
            write_owner(d->dirs[i]);
    }
    return 0;
}
