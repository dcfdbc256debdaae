/* Monotonic nanoseconds. clock_gettime goes through the vDSO with the TSC clocksource (no syscall), so a
 * pair of calls costs a few tens of ns; the harness measures that cost and prints it with the results. */
#ifndef BENCH_CLOCK_H
#define BENCH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
