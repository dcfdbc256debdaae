/* support/rng.h — the splitmix64 family, shared by the harnesses (stress, bench, examples). */
#ifndef BM_SUPPORT_RNG_H
#define BM_SUPPORT_RNG_H

#include <stdint.h>
#include <string.h>

/* The splitmix64 finalizer: a bijection on 64-bit words with full avalanche. */
static inline uint64_t mix64(uint64_t z)
{
    z ^= z >> 30;
    z *= UINT64_C(0xbf58476d1ce4e5b9);
    z ^= z >> 27;
    z *= UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    return z;
}

/* The inverse of mix64. */
uint64_t unmix64(uint64_t z);

/* splitmix64: advances *s by the golden gamma and returns the mixed state. */
static inline uint64_t splitmix64(uint64_t *s)
{
    *s += UINT64_C(0x9e3779b97f4a7c15);
    return mix64(*s);
}

/* The 32 key bytes of key i of the persistence benches (bench/persist, bench/scale): four words of the
 * splitmix64 stream seeded with i + 1. */
static inline void splitmix_key(uint64_t i, uint8_t out[32])
{
    uint64_t z = i + 1;
    for (int w = 0; w < 4; w++) {
        uint64_t x = splitmix64(&z);
        memcpy(out + 8 * w, &x, 8);
    }
}

#endif
