/*
 * worker.h — one worker thread of bm-stress (worker.c), started by the conductor.
 */
#ifndef BM_STRESS_WORKER_H
#define BM_STRESS_WORKER_H

#include <stdint.h>

#include "stress.h"

void *worker_main(void *arg);
/* Inserts the prefill keys of one owner slot with w's buffers; used by writers and, when there are no
 * writers, by the main thread with a worker of its own. */
int prefill_owner(struct worker *w, uint32_t owner, uint64_t *inserted);

#endif
