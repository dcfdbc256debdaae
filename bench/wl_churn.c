/* Workload 4: R reader threads get present keys while one writer keeps inserting new keys and deleting
 * the oldest ones (two inserts per delete, so the store grows all the time and its shards keep
 * resizing). Every read is timed; a reader's stall is the longest time any 64 consecutive reads of that
 * thread took (end of read i minus end of read i-64, from a ring of the last 64 end times).
 *
 * The live keys are the index window [lo, hi): the writer publishes hi after an insert returns and
 * raises lo before it deletes. Readers re-read the window every 64 gets and draw uniformly from it; a
 * get that finds nothing is correct only if the key fell below lo meanwhile.
 *
 * A persistent bucketmap runs with its background flusher (--w4-flush-ms, default 1000 ms, issue 7), opened
 * before the prefill, so the prefill's dirty pages are part of what the first flushes write. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support/clock.h"
#include "wl_common.h"

typedef struct churn_shared {
    const sys_ops *s;
    void *db;
    uint64_t seed;
    _Alignas(64) atomic_uint_fast64_t lo;
    _Alignas(64) atomic_uint_fast64_t hi;
    _Alignas(64) atomic_int stop;
    pthread_barrier_t bar;
} churn_shared;

typedef struct churn_arg {
    churn_shared *sh;
    unsigned id;
    hist h;
    uint64_t ops, raced, elapsed, stall;
    int failed;
    char why[160];
} churn_arg;

static void *reader(void *p)
{
    churn_arg *a = p;
    churn_shared *sh = a->sh;
    void *tc = sh->s->thread_enter(sh->db);
    uint64_t rng = sh->seed * 131 + a->id, ring[64], ops = 0;
    uint8_t key[KEY_LEN];
    hist_init(&a->h);
    pthread_barrier_wait(&sh->bar);
    uint64_t t0 = now_ns();
    for (unsigned k = 0; k < 64; k++)
        ring[k] = t0;
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        uint64_t lo = atomic_load_explicit(&sh->lo, memory_order_acquire);
        uint64_t hi = atomic_load_explicit(&sh->hi, memory_order_acquire);
        for (unsigned k = 0; k < 64; k++, ops++) {
            uint64_t i = lo + rng_below(&rng, hi - lo), v = 0;
            key_of(sh->seed, KEY_PRESENT, i, key);
            uint64_t s = now_ns();
            int rc = sh->s->get(sh->db, tc, key, &v);
            uint64_t e = now_ns();
            hist_add(&a->h, e - s);
            if (e - ring[ops & 63] > a->stall)
                a->stall = e - ring[ops & 63];
            ring[ops & 63] = e;
            if (rc == SYS_FOUND && v == val_of(i))
                continue;
            if (rc == SYS_ABSENT && i < atomic_load_explicit(&sh->lo, memory_order_acquire)) {
                a->raced++;
                continue;
            }
            snprintf(a->why, sizeof a->why, "reader get of key %llu in [%llu, %llu): rc %d (%s), value %llu",
                     (unsigned long long)i, (unsigned long long)lo, (unsigned long long)hi, rc,
                     rc < 0 ? sh->s->strerror(rc) : "-", (unsigned long long)v);
            a->failed = 1;
            goto out;
        }
    }
out:
    a->elapsed = now_ns() - t0;
    a->ops = ops;
    sh->s->thread_exit(sh->db, tc);
    return NULL;
}

static void *writer(void *p)
{
    churn_arg *a = p;
    churn_shared *sh = a->sh;
    void *tc = sh->s->thread_enter(sh->db);
    uint8_t key[KEY_LEN];
    uint64_t ops = 0;
    hist_init(&a->h);
    pthread_barrier_wait(&sh->bar);
    uint64_t t0 = now_ns();
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        uint64_t hi = atomic_load_explicit(&sh->hi, memory_order_relaxed);
        key_of(sh->seed, KEY_PRESENT, hi, key);
        uint64_t s = now_ns();
        int rc = sh->s->insert(sh->db, tc, key, val_of(hi));
        hist_add(&a->h, now_ns() - s);
        if (rc != 0) {
            snprintf(a->why, sizeof a->why, "insert of key %llu: %s", (unsigned long long)hi, sh->s->strerror(rc));
            a->failed = 1;
            break;
        }
        atomic_store_explicit(&sh->hi, hi + 1, memory_order_release);
        ops++;
        if (hi & 1) {
            uint64_t lo = atomic_load_explicit(&sh->lo, memory_order_relaxed);
            atomic_store_explicit(&sh->lo, lo + 1, memory_order_release);
            key_of(sh->seed, KEY_PRESENT, lo, key);
            s = now_ns();
            rc = sh->s->del(sh->db, tc, key);
            hist_add(&a->h, now_ns() - s);
            if (rc != SYS_FOUND) {
                snprintf(a->why, sizeof a->why, "delete of key %llu: %d (%s)", (unsigned long long)lo, rc,
                         rc < 0 ? sh->s->strerror(rc) : "absent");
                a->failed = 1;
                break;
            }
            ops++;
        }
    }
    a->elapsed = now_ns() - t0;
    a->ops = ops;
    sh->s->thread_exit(sh->db, tc);
    return NULL;
}

int wl_churn(const sys_ops *s, const bench_opts *o, FILE *csv, const char *dir, uint32_t buckets, const char *wl)
{
    sys_cfg cfg = {.dir = dir, .buckets = buckets, .n_hint = o->n * 2, .flush_ms = o->w4_flush_ms};
    char err[200] = "";
    void *db;
    int rc = s->open(&cfg, &db, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s %s: open: %s\n", s->name, wl, err);
        return -1;
    }
    rc = wl_fill(s, db, 0, o->n, o->seed);
    if (rc != 0) {
        fprintf(stderr, "%s %s: prefill: %s\n", s->name, wl, s->strerror(rc));
        s->close(db);
        return -1;
    }
    unsigned nr = o->w4_readers;
    churn_shared *sh = aligned_alloc(64, sizeof *sh);
    churn_arg *a = calloc(nr + 1, sizeof *a);
    pthread_t *th = calloc(nr + 1, sizeof *th);
    if (!sh || !a || !th) {
        free(sh), free(a), free(th);
        s->close(db);
        return -1;
    }
    memset(sh, 0, sizeof *sh);
    sh->s = s, sh->db = db, sh->seed = o->seed;
    atomic_init(&sh->lo, 0);
    atomic_init(&sh->hi, o->n);
    atomic_init(&sh->stop, 0);
    pthread_barrier_init(&sh->bar, NULL, nr + 2);
    sys_info before, after;
    s->info(db, &before);
    for (unsigned t = 0; t <= nr; t++) {
        a[t].sh = sh, a[t].id = t;
        pthread_create(&th[t], NULL, t < nr ? reader : writer, &a[t]);
    }
    pthread_barrier_wait(&sh->bar);
    struct timespec d = {(time_t)o->w4_dur, (long)((o->w4_dur - (double)(time_t)o->w4_dur) * 1e9)};
    nanosleep(&d, NULL);
    atomic_store(&sh->stop, 1);
    hist rh;
    hist_init(&rh);
    double mops = 0;
    uint64_t rops = 0, stall = 0, raced = 0;
    int failed = 0;
    for (unsigned t = 0; t <= nr; t++) {
        pthread_join(th[t], NULL);
        if (a[t].failed) {
            fprintf(stderr, "%s %s: %s\n", s->name, wl, a[t].why);
            failed = 1;
        }
        if (t < nr) {
            hist_merge(&rh, &a[t].h);
            rops += a[t].ops;
            raced += a[t].raced;
            mops += (double)a[t].ops / ((double)a[t].elapsed / 1e9) / 1e6;
            if (a[t].stall > stall)
                stall = a[t].stall;
        }
    }
    s->info(db, &after);
    if (!failed) {
        wl_ctx c = {.s = s, .o = o, .csv = csv, .db = db};
        const churn_arg *w = &a[nr];
        wl_emit_hist(&c, wl, nr, &rh, rops, (double)rops / (mops * 1e6));
        res_emit(csv, s->name, wl, nr, "stall_ns", (double)stall);
        res_emit(csv, s->name, wl, nr, "raced_absent", (double)raced);
        res_emit(csv, s->name, wl, nr, "writer_ops", (double)w->ops / ((double)w->elapsed / 1e9));
        res_emit(csv, s->name, wl, nr, "writer_p99_ns", (double)hist_quantile(&w->h, 0.99));
        res_emit(csv, s->name, wl, nr, "writer_max_ns", (double)w->h.max);
        res_emit(csv, s->name, wl, nr, "keys_end",
                 (double)(atomic_load(&sh->hi) - atomic_load(&sh->lo)));
        if (before.has_grows && after.has_grows)
            res_emit(csv, s->name, wl, nr, "grows", (double)(after.grows - before.grows));
        /* Flushes the background flusher completed during the timed run (only systems that have one). */
        if (before.has_flushes && after.has_flushes) {
            res_emit(csv, s->name, wl, nr, "flush_ms", (double)o->w4_flush_ms);
            res_emit(csv, s->name, wl, nr, "flushes", (double)(after.flushes - before.flushes));
        }
    }
    pthread_barrier_destroy(&sh->bar);
    s->close(db);
    free(sh), free(a), free(th);
    return failed ? -1 : 0;
}
