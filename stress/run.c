/*
 * run.c — what every layer of bm-stress may call about the run in progress: the stop flag (set by a failure
 * or by SIGINT/SIGTERM) and the failure log. The workers (worker.c), the checker (verify.c) and the
 * conductor (conductor.c) call in; this file calls none of them.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

const char *const role_name[] = {"mixed", "reader", "writer"};

volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

void run_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = (int)SA_RESETHAND; /* a second Ctrl-C kills as usual */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---- failures ---- */

void run_mismatch(struct run *run, uint64_t idx, const char *fmt, ...)
{
    char msg[1024], head[128] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (idx != UINT64_MAX) {
        bm_key k;
        char hex[2 * BM_KEY_LEN + 1];
        key_make(idx, run->key_seed, &k);
        key_hex(&k, hex);
        snprintf(head, sizeof head, "key #%" PRIu64 " %s: ", idx, hex);
    }
    atomic_store(&run->stop, 1);
    pthread_mutex_lock(&run->fail_mu);
    uint64_t nth = atomic_fetch_add(&run->mismatches, 1);
    if (nth < MAX_FAIL_MSGS) {
        if (atomic_exchange(&run->progress_dirty, 0))
            fputc('\n', stderr);
        fprintf(stderr, "bm-stress: MISMATCH %s%s\n", head, msg);
        size_t len = strlen(head) + strlen(msg) + 1;
        char *copy = malloc(len);
        if (copy) {
            snprintf(copy, len, "%s%s", head, msg);
            run->fail_msgs[run->n_fail_msgs++] = copy;
        }
    }
    pthread_mutex_unlock(&run->fail_mu);
}

void run_lib_error(struct run *run, const char *what, uint64_t idx, int err)
{
    atomic_store(&run->stop, 1);
    pthread_mutex_lock(&run->fail_mu);
    if (!run->lib_err) {
        char where[64] = "";
        if (idx != UINT64_MAX)
            snprintf(where, sizeof where, " (key #%" PRIu64 ")", idx);
        snprintf(run->lib_err_msg, sizeof run->lib_err_msg, "%s%s failed: %s (%d)", what, where, bm_strerror(err),
                 err);
        if (atomic_exchange(&run->progress_dirty, 0))
            fputc('\n', stderr);
        fprintf(stderr, "bm-stress: %s\n", run->lib_err_msg);
        atomic_store(&run->lib_err, err ? err : -1);
    }
    pthread_mutex_unlock(&run->fail_mu);
}
