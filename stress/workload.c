/*
 * workload.c — seeding, the Zipf generator's set-up, key bytes.
 */
#include "workload.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void rng_seed(rng_t *r, uint64_t seed)
{
    /* splitmix64 expands one word into the four state words; it never yields an all-zero state. */
    for (int i = 0; i < 4; i++) {
        seed += UINT64_C(0x9e3779b97f4a7c15);
        r->s[i] = mix64(seed);
    }
}

/* Summing 10^7 terms takes ~0.1 s; beyond that the Euler–Maclaurin tail is accurate to ~1e-12. */
#define ZETA_EXACT_TERMS 10000000u

static double zeta(uint64_t n, double theta)
{
    uint64_t m = n < ZETA_EXACT_TERMS ? n : ZETA_EXACT_TERMS;
    double sum = 0;
    /* Smallest terms first, so they are not lost against the large partial sum. */
    for (uint64_t i = m; i >= 1; i--)
        sum += pow((double)i, -theta);
    if (n > m) {
        double a = (double)m, b = (double)n;
        sum += (pow(b, 1 - theta) - pow(a, 1 - theta)) / (1 - theta) + (pow(b, -theta) - pow(a, -theta)) / 2;
    }
    return sum;
}

void zipf_init(struct zipf *z, uint64_t n, double theta)
{
    memset(z, 0, sizeof *z);
    z->n = n ? n : 1;
    z->theta = theta;
    z->alpha = 1.0 / (1.0 - theta);
    z->zetan = zeta(z->n, theta);
    z->two_cut = 1.0 + pow(0.5, theta);
    if (z->n > 2) {
        double zeta2 = 1.0 + pow(0.5, theta);
        z->eta = (1.0 - pow(2.0 / (double)z->n, 1.0 - theta)) / (1.0 - zeta2 / z->zetan);
    }
}

void key_make(uint64_t idx, uint64_t key_seed, bm_key *out)
{
    uint64_t h = mix64(idx ^ key_seed);
    for (int i = 0; i < 8; i++)
        out->bytes[i] = (uint8_t)(h >> (56 - 8 * i));
    for (int w = 1; w < 4; w++) {
        uint64_t t = mix64(h + (uint64_t)w * UINT64_C(0x9e3779b97f4a7c15));
        memcpy(out->bytes + 8 * w, &t, 8);
    }
}

int key_index(const bm_key *k, uint64_t key_seed, uint64_t nkeys, uint64_t *idx)
{
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = (h << 8) | k->bytes[i];
    uint64_t i = unmix64(h) ^ key_seed;
    if (i >= nkeys)
        return -1;
    bm_key again;
    key_make(i, key_seed, &again);
    if (memcmp(&again, k, sizeof again) != 0)
        return -1;
    *idx = i;
    return 0;
}

void key_hex(const bm_key *k, char out[2 * BM_KEY_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < BM_KEY_LEN; i++) {
        out[2 * i] = hex[k->bytes[i] >> 4];
        out[2 * i + 1] = hex[k->bytes[i] & 15];
    }
    out[2 * BM_KEY_LEN] = 0;
}
