/* support/clock.h — monotonic nanoseconds for the harnesses (stress, bench, examples).
 * clock_gettime goes through the vDSO with the TSC clocksource (no syscall), so a call costs a few tens of
 * ns; the two functions below measure that cost so the harnesses can print it with their results. */
#ifndef BM_SUPPORT_CLOCK_H
#define BM_SUPPORT_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Mean cost of one now_ns() call, measured over a short loop (every recorded latency contains one).
 * Printed by stress. */
double now_ns_mean_cost(void);

/* Cheapest of 100,000 back-to-back now_ns() pairs with nothing between. Printed by bench. */
uint64_t now_ns_pair_min(void);

#endif
