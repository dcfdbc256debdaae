/*
 * close_cycle: what a short-lived temporary map costs its host. Prints the bm_close time (median, p99, max)
 * and the time of whole open / insert / close cycles of a small temporary map. Printed, never asserted:
 * timings depend on the machine and on what else runs on it.
 *
 * Usage: bm-close-cycle [cycles=1000] [buckets=2] [inserts=10]
 */
#include <bucketmap.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/clock.h" /* now_ns */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    unsigned cycles = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 1000;
    uint32_t buckets = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 2;
    unsigned inserts = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 10;
    if (!cycles)
        return 2;
    uint64_t *close_ns = malloc(cycles * sizeof(*close_ns)), open_total = 0;
    if (!close_ns)
        return 1;
    uint64_t t0 = now_ns();
    for (unsigned c = 0; c < cycles; c++) {
        bm_config cfg = {.elem_size = 8, .max_buckets = buckets};
        bm_map *m;
        uint64_t a = now_ns();
        int err = bm_open(&cfg, &m);
        open_total += now_ns() - a;
        if (err) {
            fprintf(stderr, "bm_open: %s\n", bm_strerror(err));
            return 1;
        }
        for (unsigned i = 0; i < inserts; i++) {
            bm_key k;
            memset(&k, 0, sizeof(k));
            uint64_t w = (uint64_t)i * 0x9E3779B97F4A7C15ull + c;
            memcpy(k.bytes, &w, 8);
            memcpy(k.bytes + 8, &i, sizeof(i));
            uint64_t v[3] = {i, c, 3};
            if ((err = bm_insert(m, &k, v, i % 4, 0))) {
                fprintf(stderr, "bm_insert: %s\n", bm_strerror(err));
                return 1;
            }
        }
        a = now_ns();
        bm_close(m);
        close_ns[c] = now_ns() - a;
    }
    uint64_t total = now_ns() - t0;
    qsort(close_ns, cycles, sizeof(*close_ns), cmp_u64);
    printf("%u cycles of open / %u inserts / close, %" PRIu32 "-bucket temporary map\n", cycles, inserts,
           buckets);
    printf("bm_close: median %.3f ms, p99 %.3f ms, max %.3f ms\n", close_ns[cycles / 2] / 1e6,
           close_ns[(uint64_t)cycles * 99 / 100] / 1e6, close_ns[cycles - 1] / 1e6);
    printf("bm_open: mean %.3f ms\n", open_total / 1e6 / cycles);
    printf("cycles: %.3f s total, %.3f ms each\n", total / 1e9, total / 1e6 / cycles);
    free(close_ns);
    return 0;
}
