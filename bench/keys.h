/* Keys are derived from (domain, index) by a mixing function instead of being stored: a 1M-key array is
 * 32 MB, and fetching a random key from it would add a DRAM miss to every measured get, hiding the very
 * miss the targets are about. Domain 0 holds the keys that get inserted, domain 1 keys that never are. */
#ifndef BENCH_KEYS_H
#define BENCH_KEYS_H

#include <stdint.h>
#include <string.h>

#include "support/rng.h" /* mix64 */

#define KEY_LEN 32
enum { KEY_PRESENT = 0, KEY_ABSENT = 1 };

static inline void key_of(uint64_t seed, unsigned domain, uint64_t i, uint8_t out[KEY_LEN])
{
    uint64_t x = mix64(seed ^ (i * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)domain << 62));
    uint64_t w[4];
    for (unsigned j = 0; j < 4; j++)
        w[j] = mix64(x + (j + 1) * 0xd1b54a32d192ed03ull);
    memcpy(out, w, KEY_LEN);
}

/* wyrand: one multiply per number, good enough to pick indices. */
static inline uint64_t rng_next(uint64_t *s)
{
    *s += 0xa0761d6478bd642full;
    __uint128_t t = (__uint128_t)*s * (*s ^ 0xe7037ed1a0b428dbull);
    return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

/* Uniform in [0, n) by multiply-shift (no division on the hot path). */
static inline uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return (uint64_t)(((__uint128_t)rng_next(s) * n) >> 64);
}

/* Fills out[0..len) with Zipf(theta)-distributed ranks in [0, n) (rank 0 the hottest). The samples are
 * drawn once before the timed loop because the inverse-CDF step needs pow(), which would otherwise cost
 * about as much as the get being measured; the loop then streams through the array (prefetch-friendly). */
void zipf_fill(uint32_t *out, uint64_t len, uint64_t n, double theta, uint64_t seed);

#endif
