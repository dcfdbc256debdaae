/*
 * workload.h — what the workers draw: random numbers, key indexes (uniform or Zipf), and the 32-byte keys
 * themselves.
 *
 * Keys are numbered 0..nkeys-1. Key i's bytes 0..7 are an invertible 64-bit mix of i (stored big-endian,
 * so bm_bucket_of() spreads consecutive indexes over all buckets), bytes 8..31 are derived from the same
 * mix. Because the mix is invertible, a key met in bm_foreach maps back to its index without a lookup
 * table, and a foreign or corrupted key is recognised.
 */
#ifndef BM_STRESS_WORKLOAD_H
#define BM_STRESS_WORKLOAD_H

#include <math.h>
#include <stdint.h>
#include <time.h>

#include "bucketmap.h"
#include "support/clock.h" /* now_ns, now_ns_mean_cost */
#include "support/rng.h"   /* mix64, unmix64 */

/* xoshiro256**: fast, 256 bits of state, good enough for workload choices (not for cryptography). */
typedef struct rng {
    uint64_t s[4];
} rng_t;

void rng_seed(rng_t *r, uint64_t seed);

static inline uint64_t rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t out = rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return out;
}

/* Uniform in [0, n) by multiply-shift (Lemire); the bias for n << 2^64 is far below anything measurable. */
static inline uint64_t rng_below(rng_t *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Uniform in [0, 1). */
static inline double rng_unit(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/*
 * Zipf over ranks 0..n-1 (rank 0 most frequent, P(rank k) proportional to 1/(k+1)^theta), by Gray et al.,
 * "Quickly generating billion-record synthetic databases" (SIGMOD 1994): zeta(n, theta) is computed once,
 * then each draw costs one uniform number and at most one pow(). Requires 0 <= theta < 1.
 */
struct zipf {
    uint64_t n;
    double theta, alpha, zetan, eta, two_cut;
};

void zipf_init(struct zipf *z, uint64_t n, double theta);

static inline uint64_t zipf_next(const struct zipf *z, rng_t *r)
{
    double u = rng_unit(r);
    double uz = u * z->zetan;
    if (uz < 1.0 || z->n == 1)
        return 0;
    if (uz < z->two_cut)
        return 1;
    double x = (double)z->n * pow(z->eta * u - z->eta + 1.0, z->alpha);
    uint64_t k = (uint64_t)x;
    return k < z->n ? k : z->n - 1;
}

/* Key bytes of index idx for a run seeded with key_seed. */
void key_make(uint64_t idx, uint64_t key_seed, bm_key *out);
/* The index of k if k is one of this run's keys below nkeys; -1 otherwise. */
int key_index(const bm_key *k, uint64_t key_seed, uint64_t nkeys, uint64_t *idx);
/* 64 hex digits and a NUL. */
void key_hex(const bm_key *k, char out[2 * BM_KEY_LEN + 1]);

#endif
