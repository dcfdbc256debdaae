/*
 * run.h — the run in progress, as the workers, the checker and the conductor see it: the stop flag and the
 * failure log (run.c). The bottom layer of bm-stress's own files: it calls nothing above it.
 */
#ifndef BM_STRESS_RUN_H
#define BM_STRESS_RUN_H

#include <signal.h>
#include <stdint.h>

#include "stress.h"

/* Records a mismatch (the first MAX_FAIL_MSGS are printed on stderr and kept for the report) and stops the
 * run. Thread-safe. */
void run_mismatch(struct run *run, uint64_t idx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Records the first unexpected library error and stops the run. Thread-safe. */
void run_lib_error(struct run *run, const char *what, uint64_t idx, int err);

/* Set by SIGINT/SIGTERM once run_catch_signals() is called; the prefill polls it too, since the conductor
 * waits at the barrier then. */
extern volatile sig_atomic_t interrupted;
void run_catch_signals(void);

#endif
