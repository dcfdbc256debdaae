/*
 * options.h — bm-stress's command line: what a run does, as parsed and validated by options_parse().
 */
#ifndef BM_STRESS_OPTIONS_H
#define BM_STRESS_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum op_kind { OP_GET, OP_READ, OP_GETBATCH, OP_INSERT, OP_UPDATE, OP_DELETE, OP_ADDREF, OP_UNREF, OP_N };
extern const char *const op_name[OP_N];
static inline bool op_is_read(int op) { return op == OP_GET || op == OP_READ || op == OP_GETBATCH; }

enum dist_kind { DIST_UNIFORM, DIST_ZIPF };
/* --inject-fault: harness-side faults that prove the checks are alive (README "Testing the checker"). */
enum fault_kind { FAULT_NONE, FAULT_LOST_WRITE, FAULT_TORN_READ };
extern const char *const fault_name[];
/* One worker (the first that does the faulted kind of operation) fakes one fault per FAULT_PERIOD such
 * operations. */
#define FAULT_PERIOD 1000
enum sweep_param { SWEEP_NONE, SWEEP_THREADS, SWEEP_READERS, SWEEP_WRITERS };
extern const char *const sweep_name[];

#define MAX_SWEEP 32
#define MAX_DRIVES 64
#define MAX_THREADS 1024

struct options {
    /* Either mixed workers (threads > 0, every one reads and writes) or split roles. */
    uint32_t threads;
    uint32_t readers, writers;
    bool split_roles;
    double duration_s; /* 0 when ops or crash_after is set */
    double crash_after; /* > 0: SIGKILL the workers' process this long into the timed phase, then recover */
    uint32_t crash_cycles; /* kill/recover this many times (default 1) */
    uint64_t ops;      /* total over all threads; 0 = run for duration_s */
    uint64_t keys;
    int dist;
    double theta;
    uint32_t len_min, len_max; /* elements per value */
    uint32_t elem_size;
    uint32_t mix[OP_N]; /* relative weights (percentages by convention) */
    uint32_t buckets;   /* 0 = library default */
    uint32_t max_search;
    uint32_t flush_ms;
    bool no_prealloc;
    const char *drives[MAX_DRIVES];
    uint32_t n_drives;
    const char *restart;
    uint64_t seed;
    uint32_t prefill_pct;
    bool json, verify, quiet;
    int fault;
    int sweep;
    uint32_t sweep_vals[MAX_SWEEP];
    uint32_t n_sweep;
};

/* 0: run; 1: --help was printed (exit 0); -1: usage error, already reported on stderr (exit 2). */
int options_parse(int argc, char **argv, struct options *o);
void options_usage(FILE *f, const char *prog);
/* "get=50,read=10,..." for the header and the JSON. */
void options_mix_string(const struct options *o, char *buf, size_t len);

#endif
