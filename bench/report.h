/* The merged report, computed from the long-format result CSV alone: the system x workload table, the
 * issue's target ratios, a wide CSV, and the data files the gnuplot scripts in run.sh draw. */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stdio.h>

/* Prints to out; writes table.csv, w2_threads.dat and w4_latency.dat into dir when dir is not NULL.
 * Returns 0, or -1 when the CSV cannot be read. */
int report(const char *csv_path, const char *dir, FILE *out);

#endif
