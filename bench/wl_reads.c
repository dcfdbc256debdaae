/* Timed read runs (workloads 2, 3, 5 and 8): T threads get keys for a fixed time from a store that no one
 * writes. Every get's result is checked (present keys must return their own value, absent keys must be
 * absent); every o->sample-th get is timed into the thread's histogram, so the clock costs little of the
 * throughput while the percentiles still rest on hundreds of thousands of samples. Workload 8 gets
 * o->batch uniform present keys per get_batch call: its rate counts keys, its latencies are per call. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support/clock.h"
#include "wl_common.h"

#define ZIPF_LEN (1u << 20) /* ranks per thread, streamed cyclically */

typedef struct rd_arg {
    const wl_ctx *c;
    int mode;
    unsigned id;
    const uint32_t *zipf;
    pthread_barrier_t *bar;
    atomic_int *stop;
    hist h;
    uint64_t ops;
    uint64_t elapsed;
    int failed;
    char why[160];
} rd_arg;

/* Workload 8: batches of o->batch random present keys, every result checked. */
static void rd_batch(rd_arg *a, void *tc)
{
    const wl_ctx *c = a->c;
    uint64_t rng = c->o->seed * 31 + a->id + 1;
    uint64_t mask = c->o->sample - 1, ops = 0, calls = 0;
    unsigned nb = c->o->batch;
    uint8_t keys[BATCH_MAX_KEYS][KEY_LEN];
    uint64_t idx[BATCH_MAX_KEYS], vals[BATCH_MAX_KEYS];
    int res[BATCH_MAX_KEYS];
    pthread_barrier_wait(a->bar);
    uint64_t t0 = now_ns();
    while (!atomic_load_explicit(a->stop, memory_order_relaxed)) {
        for (unsigned k = 0; k < nb; k++) {
            idx[k] = rng_below(&rng, c->n);
            key_of(c->o->seed, KEY_PRESENT, idx[k], keys[k]);
        }
        int found;
        if ((calls++ & mask) == 0) {
            uint64_t s = now_ns();
            found = c->s->get_batch(c->db, tc, &keys[0][0], nb, vals, res);
            hist_add(&a->h, now_ns() - s);
        } else {
            found = c->s->get_batch(c->db, tc, &keys[0][0], nb, vals, res);
        }
        for (unsigned k = 0; k < nb; k++)
            if (found != (int)nb || res[k] != SYS_FOUND || vals[k] != val_of(idx[k])) {
                snprintf(a->why, sizeof a->why, "get_batch of %u keys: %d found; key %llu: rc %d (%s), value %llu, "
                         "want %llu", nb, found, (unsigned long long)idx[k], res[k],
                         res[k] < 0 ? c->s->strerror(res[k]) : "-", (unsigned long long)vals[k],
                         (unsigned long long)val_of(idx[k]));
                a->failed = 1;
                goto out;
            }
        ops += nb;
    }
out:
    a->elapsed = now_ns() - t0;
    a->ops = ops;
}

static void *rd_thread(void *p)
{
    rd_arg *a = p;
    const wl_ctx *c = a->c;
    void *tc = c->s->thread_enter(c->db);
    uint64_t rng = c->o->seed * 31 + a->id + 1;
    uint64_t mask = c->o->sample - 1, zi = (uint64_t)a->id * 7919;
    uint8_t key[KEY_LEN];
    hist_init(&a->h);
    if (a->mode == RD_BATCH) {
        rd_batch(a, tc);
        c->s->thread_exit(c->db, tc);
        return NULL;
    }
    pthread_barrier_wait(a->bar);
    uint64_t t0 = now_ns(), ops = 0;
    while (!atomic_load_explicit(a->stop, memory_order_relaxed)) {
        for (unsigned k = 0; k < 64; k++, ops++) {
            uint64_t i = a->mode == RD_ZIPF ? a->zipf[zi++ & (ZIPF_LEN - 1)] : rng_below(&rng, c->n);
            uint64_t v = 0;
            int rc;
            key_of(c->o->seed, a->mode == RD_ABSENT ? KEY_ABSENT : KEY_PRESENT, i, key);
            if ((ops & mask) == 0) {
                uint64_t s = now_ns();
                rc = c->s->get(c->db, tc, key, &v);
                hist_add(&a->h, now_ns() - s);
            } else {
                rc = c->s->get(c->db, tc, key, &v);
            }
            int want = a->mode == RD_ABSENT ? SYS_ABSENT : SYS_FOUND;
            if (rc != want || (want == SYS_FOUND && v != val_of(i))) {
                snprintf(a->why, sizeof a->why, "get of key %llu: rc %d (%s), value %llu, want %llu",
                         (unsigned long long)i, rc, rc < 0 ? c->s->strerror(rc) : "-", (unsigned long long)v,
                         (unsigned long long)val_of(i));
                a->failed = 1;
                goto out;
            }
        }
    }
out:
    a->elapsed = now_ns() - t0;
    a->ops = ops;
    c->s->thread_exit(c->db, tc);
    return NULL;
}

double wl_reads(const wl_ctx *c, int mode, unsigned threads)
{
    static const char *const names[] = {"w2_get", "w3_absent", "w5_zipf", "w8_get_batch"};
    uint32_t *zipf = NULL;
    if (mode == RD_ZIPF) {
        zipf = malloc((size_t)ZIPF_LEN * sizeof *zipf);
        if (!zipf)
            return -1;
        zipf_fill(zipf, ZIPF_LEN, c->n, 0.99, c->o->seed ^ 0x21f);
    }
    rd_arg *a = calloc(threads, sizeof *a);
    pthread_t *th = calloc(threads, sizeof *th);
    pthread_barrier_t bar;
    atomic_int stop = 0;
    int rc = 0;
    if (!a || !th) {
        free(zipf), free(a), free(th);
        return -1;
    }
    pthread_barrier_init(&bar, NULL, threads + 1);
    for (unsigned t = 0; t < threads; t++) {
        a[t] = (rd_arg){.c = c, .mode = mode, .id = t, .zipf = zipf, .bar = &bar, .stop = &stop};
        pthread_create(&th[t], NULL, rd_thread, &a[t]);
    }
    pthread_barrier_wait(&bar);
    struct timespec d = {(time_t)c->o->dur, (long)((c->o->dur - (double)(time_t)c->o->dur) * 1e9)};
    nanosleep(&d, NULL);
    atomic_store(&stop, 1);
    hist all;
    hist_init(&all);
    double mops = 0;
    uint64_t ops = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        if (a[t].failed) {
            fprintf(stderr, "%s %s T=%u: %s\n", c->s->name, names[mode], threads, a[t].why);
            rc = -1;
        }
        hist_merge(&all, &a[t].h);
        ops += a[t].ops;
        mops += (double)a[t].ops / ((double)a[t].elapsed / 1e9) / 1e6;
    }
    pthread_barrier_destroy(&bar);
    if (rc == 0) {
        /* Throughput is the sum of the threads' own rates, so a thread that started late does not
         * dilute it; the histogram rows come from the same helper as everywhere else. */
        wl_emit_hist(c, names[mode], threads, &all, ops, (double)ops / (mops * 1e6));
        if (mode == RD_BATCH)
            res_emit(c->csv, c->s->name, names[mode], threads, "batch", (double)c->o->batch);
    }
    free(zipf), free(a), free(th);
    return rc ? -1 : mops;
}
