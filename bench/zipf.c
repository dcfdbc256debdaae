/* Zipf sampling by the closed-form approximation of Gray et al., "Quickly generating billion-record
 * synthetic databases" (SIGMOD '94), the method YCSB popularised: O(n) set-up for zeta(n), O(1) per draw. */
#include "keys.h"

#include <math.h>

static double zeta(uint64_t n, double theta)
{
    double s = 0;
    for (uint64_t i = 1; i <= n; i++)
        s += 1.0 / pow((double)i, theta);
    return s;
}

void zipf_fill(uint32_t *out, uint64_t len, uint64_t n, double theta, uint64_t seed)
{
    double zetan = zeta(n, theta);
    double zeta2 = 1.0 + pow(0.5, theta);
    double alpha = 1.0 / (1.0 - theta);
    double eta = (1.0 - pow(2.0 / (double)n, 1.0 - theta)) / (1.0 - zeta2 / zetan);
    uint64_t s = seed;
    for (uint64_t k = 0; k < len; k++) {
        double u = (double)(rng_next(&s) >> 11) * 0x1.0p-53;
        double uz = u * zetan;
        uint64_t r;
        if (uz < 1.0)
            r = 0;
        else if (uz < zeta2)
            r = 1;
        else
            r = (uint64_t)((double)n * pow(eta * u - eta + 1.0, alpha));
        out[k] = (uint32_t)(r < n ? r : n - 1);
    }
}
