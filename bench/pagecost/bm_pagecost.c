/*
 * bm-pagecost — what a page of a shared file mapping costs the thread that stores into it, the numbers
 * behind bucketmap's growth design (bench/README.md "Growth"). For a file of --mib MiB in --dir:
 *   new mapping     stores into a freshly mapped, fallocated file (each page's first touch)
 *   populate call   MADV_POPULATE_WRITE of a fresh mapping (the kernel's faults done in one call)
 *   populated       the stores after that call
 *   mapped          a second pass over the same mapping (pages and page-table entries present)
 *   remapped        munmap + mmap of the same file, pages still cached (what recycling a file costs)
 *   after writeback msync(MS_SYNC) first: writeback write-protects every page, so each store faults again
 *                   (what the kernel's periodic writeback or a checkpoint does to a written index)
 * Each line: ms for the pass and us per 4 KiB page, best of --reps.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "support/clock.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static void die(const char *what)
{
    fprintf(stderr, "bm-pagecost: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* One store per 64-byte line, as a grow's copy does. */
static double pass_ms(uint8_t *m, size_t len)
{
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < len; i += 64)
        *(volatile uint64_t *)(m + i) += 1;
    return (double)(now_ns() - t0) / 1e6;
}

static uint8_t *map_file(int fd, size_t len)
{
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        die("mmap");
    return m;
}

enum { NEW, POPULATE_CALL, POPULATED, MAPPED, REMAPPED, WRITEBACK, NCASES };
static const char *const names[NCASES] = {"new mapping", "populate call", "populated", "mapped", "remapped",
                                           "after writeback"};

int main(int argc, char **argv)
{
    const char *dir = "/tmp";
    size_t mib = 64;
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
            mib = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bm-pagecost [--dir DIR] [--mib N] [--reps R]\n");
            return 2;
        }
    }
    if (!mib || reps < 1)
        return 2;
    size_t len = mib << 20, pages = len / 4096;
    char path[4096];
    snprintf(path, sizeof path, "%s/bm-pagecost-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        die(path);
    unlink(path); /* nothing left behind, whatever happens */
    double best[NCASES];
    for (int c = 0; c < NCASES; c++)
        best[c] = 1e300;
    for (int r = 0; r < reps; r++) {
        /* A fresh file each repetition: its pages are new to the page cache and to every page table. */
        if (ftruncate(fd, 0) || posix_fallocate(fd, 0, (off_t)len))
            die("fallocate");
        uint8_t *m = map_file(fd, len);
        double t[NCASES];
        t[NEW] = pass_ms(m, len);
        t[MAPPED] = pass_ms(m, len);
        munmap(m, len);
        m = map_file(fd, len);
        t[REMAPPED] = pass_ms(m, len);
        if (msync(m, len, MS_SYNC))
            die("msync");
        t[WRITEBACK] = pass_ms(m, len);
        munmap(m, len);
        if (ftruncate(fd, 0) || posix_fallocate(fd, 0, (off_t)len))
            die("fallocate");
        m = map_file(fd, len);
        uint64_t t0 = now_ns();
        if (madvise(m, len, MADV_POPULATE_WRITE))
            die("madvise(MADV_POPULATE_WRITE)");
        t[POPULATE_CALL] = (double)(now_ns() - t0) / 1e6;
        t[POPULATED] = pass_ms(m, len);
        munmap(m, len);
        for (int c = 0; c < NCASES; c++)
            best[c] = t[c] < best[c] ? t[c] : best[c];
    }
    close(fd);
    printf("bm-pagecost: %zu MiB file in %s (%zu pages), one store per 64-byte line, best of %d\n", mib, dir, pages,
           reps);
    for (int c = 0; c < NCASES; c++)
        printf("  %-16s %9.1f ms  %8.2f us/page\n", names[c], best[c], best[c] * 1000.0 / (double)pages);
    return 0;
}
