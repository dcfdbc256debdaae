/*
 * stress.h — one run of bm-stress: the map, the workers, the shadow model, and what is reported about it.
 *
 * Lifecycle of a run (conductor.c): open the map -> start workers, which prefill the keys they own -> barrier
 * -> timed phase (the main thread prints progress and ends it) -> join -> merge histograms -> final check
 * -> close (and with --restart: reopen, check again, close) -> report.
 */
#ifndef BM_STRESS_H
#define BM_STRESS_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bucketmap.h"
#include "hist.h"
#include "options.h"
#include "verify.h"
#include "workload.h"

enum role { ROLE_MIXED, ROLE_READER, ROLE_WRITER };
extern const char *const role_name[]; /* run.c */

#define MAX_FAIL_MSGS 20
#define GETBATCH_MAX 32u               /* keys per getbatch op, drawn from 1..this */
#define GETBATCH_BYTES (1u << 20)      /* a getbatch's output buffer is bounded by this (unless one value is larger) */
#define NO_OWNER UINT32_MAX

struct worker {
    struct hist hist[OP_N]; /* written only by this worker, read live by the progress loop */
    struct run *run;
    uint32_t id;
    int role;
    uint32_t owner; /* owner slot of the keys it writes; NO_OWNER for readers */
    uint64_t n_owned;
    const struct zipf *z_own;
    rng_t rng;
    uint32_t cum[OP_N]; /* cumulative op weights for this worker's role */
    uint32_t cum_total;
    uint64_t ops_target; /* with --ops: this worker's share */
    uint8_t *wbuf, *rbuf;
    uint8_t *bbuf;      /* getbatch: batch_max values of len_max elements */
    uint32_t batch_max; /* keys per getbatch, at most GETBATCH_MAX (fewer for large values) */
    /* Verification tallies; read by the main thread only after join. */
    uint64_t reads_exact, reads_window, reads_skipped, writes_checked;
    uint64_t prefilled;
    /* --inject-fault: this worker fakes the fault (one worker per run), counting eligible operations. */
    bool inject;
    uint64_t fault_ctr, faults_injected;
    pthread_t th;
};

/* What a --crash-after child leaves for the processes after it. */
struct crash_shared {
    _Atomic uint64_t started_ns; /* when the current child's timed phase began, 0 before */
    uint64_t inflight;           /* keys whose write a kill interrupted, over all recoveries */
    uint64_t inflight_applied;   /* of those, found in their new state */
    uint64_t prefill_ns;         /* the first child's open + prefill */
};

struct run {
    const struct options *o;
    const char *const *drives;
    uint32_t n_drives;
    bm_map *map;
    uint32_t nthreads, nmixed, nreaders, nwriters;
    uint32_t nowners; /* key i belongs to owner i % nowners */
    struct key_state *states;
    struct vcodec vc;
    uint64_t key_seed;
    struct zipf z_all, z_own_hi, z_own_lo; /* owners hold ceil or floor of keys/nowners keys */
    struct worker **w;
    pthread_barrier_t barrier;
    _Atomic int stop;
    _Atomic uint32_t finished;

    pthread_mutex_t fail_mu;
    _Atomic uint64_t mismatches;
    char *fail_msgs[MAX_FAIL_MSGS];
    uint32_t n_fail_msgs;
    _Atomic int lib_err;
    char lib_err_msg[512];
    _Atomic int progress_dirty; /* a progress line without newline is on the terminal */

    /* Results. */
    double elapsed_s;
    uint64_t prefill_keys;
    double prefill_s;
    struct hist_snap *op_hist; /* [OP_N] merged over the workers */
    struct hist_snap *all_hist;
    bm_stats stats;
    uint64_t rss, rss_peak;
    uint64_t reads_exact, reads_window, reads_skipped, writes_checked;
    uint64_t faults_injected;
    bool final_done;
    uint64_t final_present, final_count, final_foreach;
    bool restart_done;
    double reopen_ms;
    /* --crash-after: the workers run in a child process; what both processes see lives in shared memory. */
    bool shared;                  /* states and workers are MAP_SHARED (survive the child) */
    struct crash_shared *cs;      /* shared with the children */
    uint32_t cycle;               /* crashes survived so far: a child with cycle > 0 recovers before working */
    bool crashed;                 /* the map was reopened after a SIGKILL: in-flight writes may be either way */
    int child_status;             /* the child's wait status when it ended before the kill, else -1 */
    bool interrupted;
    int leaked_files; /* entries left in the drives by a temporary map, -1 if not checked */
};

static inline struct key_state *key_state_of(const struct run *run, uint64_t idx)
{
    uint64_t n = run->nowners, owner = idx % n, rank = idx / n;
    uint64_t q = run->o->keys / n, rem = run->o->keys % n;
    return &run->states[owner * q + (owner < rem ? owner : rem) + rank];
}

/* Whether key idx is inserted by the prefill (the same keys whatever the thread count). */
static inline bool key_prefilled(const struct run *run, uint64_t idx)
{
    return mix64(idx ^ run->key_seed ^ UINT64_C(0x5ca1ab1e)) % 100 < run->o->prefill_pct;
}

#endif
