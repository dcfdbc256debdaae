/*
 * report.h — everything bm-stress prints: the live progress line (stderr), the result tables and the
 * scalability table (stdout), or one JSON document (stdout).
 */
#ifndef BM_STRESS_REPORT_H
#define BM_STRESS_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "stress.h"

/* What every report says about the invocation as a whole. */
struct report_info {
    const struct options *o;
    const char *variant;    /* "RCU readers" or "rwlock ablation" */
    const char *drive_desc; /* e.g. "temporary drive /tmp/bm-stress.x1y2z3" */
    double timer_ns;
    struct run **runs;
    uint32_t n_runs;
    int exit_status;
};

/* Live progress: one line per second with the last second's ops/s per kind and latency percentiles. */
struct progress {
    struct hist_snap *prev; /* [OP_N] totals at the previous tick */
    struct hist_snap *cur, *tmp, *interval;
    uint64_t prev_ns;
    bool tty;
};
int progress_init(struct progress *p, const struct run *run);
void progress_free(struct progress *p);
/* Called by the main thread once a second while the workers run. */
void progress_tick(struct run *run, struct progress *p, uint64_t start_ns, uint64_t now_ns);
/* Ends a terminal progress line before something else is printed. */
void progress_finish(struct run *run, struct progress *p);

void report_text(const struct report_info *ri);
void report_json(const struct report_info *ri);

/* VmRSS and VmHWM in bytes of process pid, 0 = this one (0 when /proc is unavailable). */
void process_rss(int pid, uint64_t *rss, uint64_t *peak);

#endif
