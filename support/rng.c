/* support/rng.c — the inverse of mix64 (stress maps a key met in bm_foreach back to its index). */
#include "support/rng.h"

/* x = z ^ (z >> s)  =>  z = x ^ (x >> s) ^ (x >> 2s) ^ ... */
static uint64_t unxorshift(uint64_t x, int s)
{
    uint64_t z = x;
    for (int k = s; k < 64; k += s)
        z ^= x >> k;
    return z;
}

/* Inverse of an odd number modulo 2^64 by Newton's iteration (each step doubles the correct bits). */
static uint64_t inv_odd(uint64_t a)
{
    uint64_t x = a;
    for (int i = 0; i < 5; i++)
        x *= 2 - a * x;
    return x;
}

uint64_t unmix64(uint64_t z)
{
    z = unxorshift(z, 31);
    z *= inv_odd(UINT64_C(0x94d049bb133111eb));
    z = unxorshift(z, 27);
    z *= inv_odd(UINT64_C(0xbf58476d1ce4e5b9));
    z = unxorshift(z, 30);
    return z;
}
