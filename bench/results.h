/* Results travel as long-format CSV rows "system,workload,threads,metric,value": each worker process
 * appends its own rows, so the systems that cannot share a process still end up in one file, and the
 * report (table, ratios, JSON, plots) is computed from that file alone. */
#ifndef BENCH_RESULTS_H
#define BENCH_RESULTS_H

#include <stdio.h>

#define RES_TEXT 160

typedef struct res_row {
    char sys[24];
    char wl[24];
    unsigned threads;
    char metric[24];
    int is_text;
    double v;
    char text[RES_TEXT];
} res_row;

typedef struct res_set {
    res_row *rows;
    size_t n, cap;
} res_set;

/* Writers: one line per call, flushed so a crash later in the worker keeps what was measured. */
void res_emit(FILE *f, const char *sys, const char *wl, unsigned threads, const char *metric, double v);
void res_emit_text(FILE *f, const char *sys, const char *wl, unsigned threads, const char *metric,
                   const char *text);

int res_load(const char *path, res_set *out);
void res_free(res_set *s);
/* NULL when absent. */
const res_row *res_find(const res_set *s, const char *sys, const char *wl, unsigned threads, const char *metric);
/* NaN when absent or text. */
double res_get(const res_set *s, const char *sys, const char *wl, unsigned threads, const char *metric);

#endif
