/*
 * fork() from a multi-threaded host: threads of the parent use bucketmap (idle since, or still reading and
 * writing while the fork happens), then a thread forks and the child opens a temporary map of its own,
 * inserts, reads, closes and exits 0. The child must neither hang (a grace period waiting for readers that
 * exist only in the parent) nor crash. Each child runs under a timeout enforced by the parent.
 *
 * Usage: embed_fork THREADS busy|idle
 */
#include <bucketmap.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c)                                                                                           \
    do {                                                                                                   \
        if (!(c)) {                                                                                        \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #c);                                 \
            exit(1);                                                                                       \
        }                                                                                                  \
    } while (0)

#define CHILD_TIMEOUT_S 20
#define FORKS 4

static bm_map *parent_map;
static int stop;   /* atomic */
static int busy;   /* threads keep calling bucketmap through the forks */
static int warmed; /* atomic: threads that have used the map */

static bm_key key_of(unsigned t, unsigned i)
{
    bm_key k;
    memset(&k, 0, sizeof(k));
    memcpy(k.bytes, &t, sizeof(t));
    memcpy(k.bytes + 8, &i, sizeof(i));
    k.bytes[0] ^= (uint8_t)(i * 0x9d);
    return k;
}

static void *worker(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    unsigned i = 0;
    do {
        bm_key k = key_of(t, i % 512);
        uint64_t v = i, out;
        CHECK(bm_insert(parent_map, &k, &v, 1, 1) == 0);
        CHECK(bm_get(parent_map, &k, &out, 1, NULL, NULL) == 0);
        if (i % 3 == 0)
            CHECK(bm_delete(parent_map, &k) == 0);
        if (++i == 2000)
            __atomic_fetch_add(&warmed, 1, __ATOMIC_RELEASE);
    } while (i < 2000 || (busy && !__atomic_load_n(&stop, __ATOMIC_ACQUIRE)));
    return NULL;
}

static int child_main(void)
{
    bm_config cfg = {.elem_size = 8, .max_buckets = 2, .flags = BM_F_NO_PREALLOC};
    bm_map *m;
    int err = bm_open(&cfg, &m);
    if (err) {
        fprintf(stderr, "child: bm_open: %s\n", bm_strerror(err));
        return 1;
    }
    /* Enough keys to grow the index, so retired storage goes through grace periods. */
    for (unsigned i = 0; i < 4000; i++) {
        bm_key k = key_of(99, i);
        uint64_t v = i, out = 0;
        if (bm_insert(m, &k, &v, 1, 1) || bm_get(m, &k, &out, 1, NULL, NULL) || out != v)
            return 2;
        if (i % 5 == 0 && bm_delete(m, &k))
            return 3;
    }
    bm_close(m);
    /* The parent's map is the child's too (a copy of its memory): reading it must not hang either. */
    bm_key k = key_of(0, 1);
    uint64_t out;
    int e = bm_get(parent_map, &k, &out, 1, NULL, NULL);
    if (e != 0 && e != BM_ENOTFOUND)
        return 4;
    return 0;
}

/* Waits for pid up to the timeout; kills it on expiry. Returns its exit status or -1. */
static int wait_child(pid_t pid)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= CHILD_TIMEOUT_S) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fprintf(stderr, "child %d hung (killed after %d s)\n", (int)pid, CHILD_TIMEOUT_S);
            return -1;
        }
        usleep(10000);
    }
}

int main(int argc, char **argv)
{
    CHECK(argc == 3);
    int nthreads = atoi(argv[1]);
    busy = strcmp(argv[2], "busy") == 0;
    CHECK(nthreads >= 1 && nthreads <= 64);
    bm_config cfg = {.elem_size = 8, .max_buckets = 4, .flags = BM_F_NO_PREALLOC};
    CHECK(bm_open(&cfg, &parent_map) == 0);
    pthread_t t[64];
    for (int i = 0; i < nthreads; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) == 0);
    while (__atomic_load_n(&warmed, __ATOMIC_ACQUIRE) < nthreads)
        usleep(1000);
    /* The forking (main) thread never called bucketmap on the map's hot path: only other threads did. */
    int failures = 0;
    for (int f = 0; f < FORKS; f++) {
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            _exit(child_main());
        int st = wait_child(pid);
        if (st != 0) {
            fprintf(stderr, "fork %d: child status %d\n", f, st);
            failures++;
        }
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < nthreads; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    bm_close(parent_map);
    printf("%d threads (%s): %d of %d children ok\n", nthreads, argv[2], FORKS - failures, FORKS);
    return failures ? 1 : 0;
}
