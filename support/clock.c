/* support/clock.c — timer calibration. */
#include "support/clock.h"

#include <stdio.h>

double now_ns_mean_cost(void)
{
    enum { CALLS = 200000 };
    uint64_t sink = 0;
    /* Warm the vDSO page and the branch predictors first. */
    for (int i = 0; i < 1000; i++)
        sink += now_ns();
    uint64_t t0 = now_ns();
    for (int i = 0; i < CALLS; i++)
        sink += now_ns();
    uint64_t t1 = now_ns();
    if (sink == 42)
        fputs("", stderr); /* keeps the loop from being optimised away */
    return (double)(t1 - t0) / CALLS;
}

uint64_t now_ns_pair_min(void)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 100000; i++) {
        uint64_t a = now_ns(), b = now_ns();
        if (b - a < best)
            best = b - a;
    }
    return best;
}
