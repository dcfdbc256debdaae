/*
 * core_numbers: the core issue's single-thread numbers — bm_insert of N new keys, bm_get of the same N
 * present keys (1 element of 8 bytes), and bytes on disk per entry. Usage: bm-core-numbers [N] [buckets]
 */
#include <bucketmap.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support/rng.h" /* splitmix64 */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    uint32_t buckets = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 0;
    bm_key *keys = malloc(n * sizeof(*keys));
    if (!keys)
        return 1;
    uint64_t seed = 42;
    for (uint64_t i = 0; i < n; i++)
        for (int w = 0; w < 4; w++) {
            uint64_t r = splitmix64(&seed);
            memcpy(keys[i].bytes + 8 * w, &r, 8);
        }
    bm_config cfg = {.elem_size = 8, .max_buckets = buckets};
    bm_map *m;
    int err = bm_open(&cfg, &m);
    if (err) {
        fprintf(stderr, "bm_open: %s\n", bm_strerror(err));
        return 1;
    }
    double t0 = now();
    for (uint64_t i = 0; i < n; i++)
        if ((err = bm_insert(m, &keys[i], &i, 1, 1))) {
            fprintf(stderr, "bm_insert: %s\n", bm_strerror(err));
            return 1;
        }
    double t1 = now();
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v;
        if (bm_get(m, &keys[i], &v, 1, NULL, NULL) || v != i) {
            fprintf(stderr, "bm_get: wrong value for key %" PRIu64 "\n", i);
            return 1;
        }
        sum += v;
    }
    double t2 = now();
    bm_stats st;
    bm_get_stats(m, &st);
    printf("keys %" PRIu64 "  buckets %u\n", n, buckets ? buckets : 256);
    printf("bm_insert  %.2f Mops/s\n", n / (t1 - t0) / 1e6);
    printf("bm_get     %.2f Mops/s\n", n / (t2 - t1) / 1e6);
    printf("bytes/entry on disk  %.1f  (index %" PRIu64 " + data %" PRIu64 " bytes, %" PRIu64 " files)\n",
           (double)(st.index_bytes + st.data_bytes) / st.entries, st.index_bytes, st.data_bytes, st.files);
    printf("index load factor    %.3f  grows %" PRIu64 " (failed %" PRIu64 ")\n",
           (double)st.entries / st.index_capacity, st.index_grows, st.index_failed_grows);
    bm_close(m);
    free(keys);
    return sum == n * (n - 1) / 2 ? 0 : 1;
}
