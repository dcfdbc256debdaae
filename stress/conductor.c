/*
 * conductor.c — bm-stress's conductor: runs the workload once (or once per --sweep point, each on a fresh
 * map), then reports. The main thread is the conductor: it opens the map, starts the workers, prints
 * progress, ends the timed phase, runs the final check and closes the map.
 *
 * Layering: main.c -> conductor.c -> worker.c, verify.c, report.c -> run.c (stop flag, failure log). No
 * file calls back up.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp, nftw */
#endif
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conductor.h"
#include "report.h"
#include "run.h"
#include "worker.h"

#ifndef BM_STRESS_VARIANT
#define BM_STRESS_VARIANT "RCU readers"
#endif

/* ---- drives ---- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "bm-stress: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

/* Entries in a directory, -1 if it cannot be read: a temporary map must leave none of its own behind. */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* ---- one run ---- */

/* Zeroed memory; with run->shared it stays visible to this process after a forked child that writes it
 * dies (the shadow model and the histograms of --crash-after). */
static void *run_alloc(const struct run *run, size_t size)
{
    if (!run->shared)
        return calloc(1, size);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void run_dealloc(const struct run *run, void *p, size_t size)
{
    if (!p)
        return;
    if (run->shared)
        munmap(p, size);
    else
        free(p);
}

static size_t worker_size(void) { return (sizeof(struct worker) + 63) & ~(size_t)63; }

static struct worker *worker_new(struct run *run, uint32_t id, int role, uint32_t owner)
{
    struct worker *w;
    if (run->shared) {
        w = run_alloc(run, worker_size()); /* page-aligned */
    } else {
        w = aligned_alloc(64, worker_size());
        if (w)
            memset(w, 0, worker_size());
    }
    if (!w)
        return NULL;
    size_t buf = (size_t)run->o->len_max * run->o->elem_size + 8;
    size_t value = buf - 8;
    w->batch_max = value && GETBATCH_BYTES / value < GETBATCH_MAX ? (uint32_t)(GETBATCH_BYTES / value) : GETBATCH_MAX;
    if (!w->batch_max)
        w->batch_max = 1;
    w->wbuf = malloc(buf);
    w->rbuf = malloc(buf);
    w->bbuf = malloc((size_t)w->batch_max * value + 8);
    if (!w->wbuf || !w->rbuf || !w->bbuf) {
        free(w->wbuf);
        free(w->rbuf);
        free(w->bbuf);
        run_dealloc(run, w, worker_size());
        return NULL;
    }
    w->run = run;
    w->id = id;
    w->role = role;
    w->owner = owner;
    rng_seed(&w->rng, run->o->seed * UINT64_C(0x100000001b3) + id + 1);
    if (owner != NO_OWNER) {
        uint64_t q = run->o->keys / run->nowners, rem = run->o->keys % run->nowners;
        w->n_owned = q + (owner < rem);
        w->z_own = w->n_owned == run->z_own_hi.n ? &run->z_own_hi : &run->z_own_lo;
    }
    uint32_t acc = 0;
    for (int k = 0; k < OP_N; k++) {
        bool allowed = role == ROLE_MIXED || (role == ROLE_READER) == op_is_read(k);
        acc += allowed ? run->o->mix[k] : 0;
        w->cum[k] = acc;
    }
    w->cum_total = acc;
    return w;
}

static void worker_free(const struct run *run, struct worker *w)
{
    if (!w)
        return;
    free(w->wbuf);
    free(w->rbuf);
    free(w->bbuf);
    run_dealloc(run, w, worker_size());
}

static int open_map(struct run *run)
{
    const struct options *o = run->o;
    bm_config cfg = {
        .elem_size = o->elem_size,
        .max_buckets = o->buckets,
        .drives = run->drives,
        .n_drives = run->n_drives,
        .max_search = o->max_search,
        .restart_path = o->restart,
        .flush_interval_ms = o->flush_ms,
        .flags = o->no_prealloc ? BM_F_NO_PREALLOC : 0,
    };
    int ret = bm_open(&cfg, &run->map);
    if (ret != 0) {
        run->map = NULL;
        run_lib_error(run, "bm_open", UINT64_MAX, ret);
    }
    return ret;
}

static void merge_results(struct run *run);

/* The conductor's part of a run: everything between opening and closing the map. */
static void run_workers(struct run *run)
{
    const struct options *o = run->o;
    struct worker *pre = NULL;
    uint64_t t_pre = now_ns();
    if (run->nwriters == 0 && run->nmixed == 0 && o->prefill_pct && run->cycle == 0) {
        /* Readers only: the main thread plays owner 0 for the prefill, and nobody writes afterwards. */
        pre = worker_new(run, UINT32_MAX, ROLE_WRITER, 0);
        if (!pre || prefill_owner(pre, 0, &run->prefill_keys) < 0) {
            run_lib_error(run, "allocating the prefill buffers", UINT64_MAX, -ENOMEM);
            worker_free(run, pre);
            return;
        }
        worker_free(run, pre);
    }
    uint32_t started = 0;
    pthread_barrier_init(&run->barrier, NULL, run->nthreads + 1);
    for (uint32_t t = 0; t < run->nthreads; t++) {
        struct worker *w = run->w[t];
        if (o->ops)
            w->ops_target = o->ops / run->nthreads + (t < o->ops % run->nthreads);
        int err = pthread_create(&w->th, NULL, worker_main, w);
        if (err) {
            /* The barrier counts every thread: without all of them nobody could pass it. */
            fprintf(stderr, "bm-stress: pthread_create: %s\n", strerror(err));
            exit(2);
        }
        started++;
    }
    pthread_barrier_wait(&run->barrier);
    uint64_t start = now_ns();
    if (run->cs)
        atomic_store(&run->cs->started_ns, start);
    run->prefill_s = (double)(start - t_pre) / 1e9;
    for (uint32_t t = 0; t < run->nthreads; t++)
        run->prefill_keys += run->w[t]->prefilled;

    struct progress prog;
    bool show = !o->quiet && progress_init(&prog, run) == 0;
    uint64_t end = o->ops || o->crash_after > 0 ? UINT64_MAX : start + (uint64_t)(o->duration_s * 1e9);
    uint64_t next_tick = start + 1000000000u;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= end || atomic_load(&run->stop) || atomic_load(&run->finished) == run->nthreads)
            break;
        if (interrupted) {
            run->interrupted = true;
            break;
        }
        if (now >= next_tick) {
            if (show)
                progress_tick(run, &prog, start, now);
            next_tick += 1000000000u;
        }
        uint64_t wake = next_tick < end ? next_tick : end;
        /* Short naps so --ops runs, failures and Ctrl-C end the phase promptly. */
        uint64_t nap = wake - now < 20000000u ? wake - now : 20000000u;
        struct timespec ts = {0, (long)nap};
        nanosleep(&ts, NULL);
    }
    atomic_store(&run->stop, 1);
    for (uint32_t t = 0; t < started; t++)
        pthread_join(run->w[t]->th, NULL);
    run->elapsed_s = (double)(now_ns() - start) / 1e9;
    pthread_barrier_destroy(&run->barrier);
    if (show) {
        progress_finish(run, &prog);
        progress_free(&prog);
    }

    merge_results(run);
}

/* Per-thread histograms and tallies into the run's totals (after the workers are gone). */
static void merge_results(struct run *run)
{
    struct hist_snap *tmp = malloc(sizeof *tmp);
    if (tmp) {
        for (uint32_t t = 0; t < run->nthreads; t++) {
            struct worker *w = run->w[t];
            for (int k = 0; k < OP_N; k++) {
                hist_snapshot(&w->hist[k], tmp);
                hist_snap_add(&run->op_hist[k], tmp);
                hist_snap_add(run->all_hist, tmp);
            }
            run->reads_exact += w->reads_exact;
            run->reads_window += w->reads_window;
            run->reads_skipped += w->reads_skipped;
            run->writes_checked += w->writes_checked;
            run->faults_injected += w->faults_injected;
        }
        free(tmp);
    }
}

static struct run *run_new(const struct options *o, const char *const *drives, uint32_t n_drives, uint32_t mixed,
                           uint32_t readers, uint32_t writers)
{
    struct run *run = calloc(1, sizeof *run);
    if (!run)
        return NULL;
    run->o = o;
    run->drives = drives;
    run->n_drives = n_drives;
    run->nmixed = mixed;
    run->nreaders = readers;
    run->nwriters = writers;
    run->nthreads = mixed + readers + writers;
    run->nowners = mixed ? mixed : writers ? writers : 1;
    run->leaked_files = -1;
    run->child_status = -1;
    run->shared = o->crash_after > 0;
    pthread_mutex_init(&run->fail_mu, NULL);
    /* Keys and values depend on the seed only, so every sweep point works on the same key set. */
    run->key_seed = mix64(o->seed ^ UINT64_C(0x6b657973));
    run->vc.seed = mix64(o->seed ^ UINT64_C(0x76616c73));
    run->vc.elem_size = o->elem_size;
    run->vc.len_min = o->len_min;
    run->vc.len_span = o->len_max - o->len_min + 1;
    run->op_hist = calloc(OP_N, sizeof *run->op_hist);
    run->all_hist = calloc(1, sizeof *run->all_hist);
    run->states = run_alloc(run, o->keys * sizeof *run->states);
    if (run->shared)
        run->cs = run_alloc(run, sizeof *run->cs);
    run->w = calloc(run->nthreads ? run->nthreads : 1, sizeof *run->w);
    if (!run->op_hist || !run->all_hist || !run->states || !run->w)
        return run; /* run_exec reports -ENOMEM */
    if (o->dist == DIST_ZIPF) {
        uint64_t q = o->keys / run->nowners;
        zipf_init(&run->z_all, o->keys, o->theta);
        zipf_init(&run->z_own_hi, q + (o->keys % run->nowners != 0), o->theta);
        if (o->keys % run->nowners)
            zipf_init(&run->z_own_lo, q, o->theta);
        else
            run->z_own_lo = run->z_own_hi;
    } else {
        /* Uniform draws only need the slice sizes, which worker_new reads from here. */
        run->z_own_hi.n = o->keys / run->nowners + (o->keys % run->nowners != 0);
        run->z_own_lo.n = o->keys / run->nowners;
    }
    uint32_t id = 0;
    for (uint32_t i = 0; i < mixed; i++, id++)
        run->w[id] = worker_new(run, id, ROLE_MIXED, i);
    for (uint32_t i = 0; i < writers; i++, id++)
        run->w[id] = worker_new(run, id, ROLE_WRITER, i);
    for (uint32_t i = 0; i < readers; i++, id++)
        run->w[id] = worker_new(run, id, ROLE_READER, NO_OWNER);
    /* One faulty worker: the first that does the faulted kind of operation at all. */
    for (uint32_t t = 0; t < run->nthreads && o->fault != FAULT_NONE; t++) {
        struct worker *w = run->w[t];
        if (w && (o->fault == FAULT_LOST_WRITE ? w->role != ROLE_READER : w->role != ROLE_WRITER)) {
            w->inject = true;
            break;
        }
    }
    return run;
}

static bool run_ready(const struct run *run)
{
    if (!run->op_hist || !run->all_hist || !run->states || !run->w || (run->shared && !run->cs))
        return false;
    for (uint32_t t = 0; t < run->nthreads; t++)
        if (!run->w[t])
            return false;
    return true;
}

static void run_exec(struct run *run)
{
    const struct options *o = run->o;
    if (!run_ready(run)) {
        run_lib_error(run, "allocating the shadow model", UINT64_MAX, -ENOMEM);
        return;
    }
    int before[MAX_DRIVES];
    for (uint32_t i = 0; i < run->n_drives; i++)
        before[i] = o->restart ? -1 : dir_entries(run->drives[i]);
    if (open_map(run) != 0)
        return;
    run_workers(run);
    bm_get_stats(run->map, &run->stats);
    process_rss(0, &run->rss, &run->rss_peak);
    if (o->verify)
        verify_final(run, "final");
    bm_close(run->map);
    run->map = NULL;

    if (o->restart) {
        uint64_t t0 = now_ns();
        if (open_map(run) != 0)
            return;
        run->reopen_ms = (double)(now_ns() - t0) / 1e6;
        if (o->verify)
            verify_final(run, "after restart");
        run->restart_done = o->verify;
        bm_close(run->map);
        run->map = NULL;
        return;
    }
    int leaked = 0;
    for (uint32_t i = 0; i < run->n_drives; i++) {
        int after = dir_entries(run->drives[i]);
        if (before[i] >= 0 && after > before[i])
            leaked += after - before[i];
    }
    run->leaked_files = leaked;
    if (leaked && o->verify)
        run_mismatch(run, UINT64_MAX,
                     "bm_close of a temporary map left %d new entr%s in the drive directories (the header "
                     "promises a temporary map removes every file it created)",
                     leaked, leaked == 1 ? "y" : "ies");
}

/*
 * --crash-after: a forked child opens the persistent map and runs the workers (prefill, then the timed
 * phase) until this process SIGKILLs it; the shadow model and the histograms are in shared memory, so they
 * survive it. Every later round's child first recovers the map and checks it (verify_final), then works on
 * from there; after the last kill the map is reopened and checked here. Each check: every write acknowledged
 * before a kill is there exactly, and a write the kill cut short happened entirely or not at all.
 * This process touches the library only after the last kill, so no child inherits liburcu's threads.
 */
static void run_exec_crash(struct run *run)
{
    const struct options *o = run->o;
    if (!run_ready(run)) {
        run_lib_error(run, "allocating the shadow model", UINT64_MAX, -ENOMEM);
        return;
    }
    uint64_t timed_ns = 0;
    for (; run->cycle < o->crash_cycles; run->cycle++) {
        atomic_store(&run->cs->started_ns, 0);
        fflush(NULL); /* nothing buffered may be printed twice */
        uint64_t t_fork = now_ns();
        pid_t pid = fork();
        if (pid < 0) {
            run_lib_error(run, "fork", UINT64_MAX, -errno);
            break;
        }
        if (pid == 0) {
            /* A workers' process: recover and check what the previous one left, then work until killed. */
            if (open_map(run) != 0)
                _exit(2);
            if (run->cycle > 0) {
                char label[48];
                snprintf(label, sizeof label, "recovery %u", run->cycle);
                run->crashed = true;
                if (verify_final(run, label) || run->lib_err)
                    _exit(run->lib_err && !atomic_load(&run->mismatches) ? 2 : 1);
                run->crashed = false;
            }
            run_workers(run);
            _exit(atomic_load(&run->mismatches) ? 1 : 2);
        }

        uint64_t killed_at = 0;
        int status = 0;
        for (;;) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                run->child_status = status; /* it stopped by itself: its messages are on stderr already */
                break;
            }
            uint64_t start = atomic_load(&run->cs->started_ns), now = now_ns();
            if (interrupted || (start && now >= start + (uint64_t)(o->crash_after * 1e9))) {
                process_rss(pid, &run->rss, &run->rss_peak);
                killed_at = now_ns();
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                break;
            }
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
        uint64_t start = atomic_load(&run->cs->started_ns);
        if (start && killed_at > start)
            timed_ns += killed_at - start;
        if (run->cycle == 0 && start)
            run->prefill_s = (double)(start - t_fork) / 1e9;
        if (run->child_status >= 0 || interrupted)
            break;
    }
    run->interrupted = interrupted;
    run->elapsed_s = (double)timed_ns / 1e9;
    for (uint32_t t = 0; t < run->nthreads; t++)
        run->prefill_keys += run->w[t]->prefilled;
    merge_results(run);
    if (run->child_status >= 0) {
        int code = WIFEXITED(run->child_status) ? WEXITSTATUS(run->child_status) : 128 + WTERMSIG(run->child_status);
        if (code == 1) {
            run_mismatch(run, UINT64_MAX, "the workers' process of round %u found a mismatch (see above)",
                         run->cycle + 1);
        } else {
            snprintf(run->lib_err_msg, sizeof run->lib_err_msg,
                     "the workers' process of round %u ended before its kill with status %d (its error is above)",
                     run->cycle + 1, code);
            atomic_store(&run->lib_err, -1);
        }
        return;
    }
    if (run->cycle < o->crash_cycles)
        run->cycle++; /* interrupted: that round's kill still happened */

    /* The last recovery happens here, so its checks and statistics make the report. */
    run->crashed = true;
    uint64_t t0 = now_ns();
    if (open_map(run) != 0)
        return;
    run->reopen_ms = (double)(now_ns() - t0) / 1e6;
    bm_get_stats(run->map, &run->stats);
    verify_final(run, "after the last crash");
    run->restart_done = true;
    bm_close(run->map);
    run->map = NULL;
}

static void run_free(struct run *run)
{
    if (!run)
        return;
    if (run->w)
        for (uint32_t t = 0; t < run->nthreads; t++)
            worker_free(run, run->w[t]);
    free(run->w);
    run_dealloc(run, run->states, run->o->keys * sizeof *run->states);
    run_dealloc(run, run->cs, sizeof *run->cs);
    free(run->op_hist);
    free(run->all_hist);
    for (uint32_t i = 0; i < run->n_fail_msgs; i++)
        free(run->fail_msgs[i]);
    pthread_mutex_destroy(&run->fail_mu);
    free(run);
}

int conduct(const struct options *opts)
{
    struct options o = *opts;

    char tmpdir[4096] = "", restart_buf[4200];
    const char *drives[MAX_DRIVES];
    uint32_t n_drives = o.n_drives;
    char drive_desc[4200];
    if (n_drives == 0) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/bm-stress.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            fprintf(stderr, "bm-stress: cannot create a temporary drive %s: %s\n", tmpdir, strerror(errno));
            return 2;
        }
        drives[0] = tmpdir;
        n_drives = 1;
        snprintf(drive_desc, sizeof drive_desc, "temporary drive %s", tmpdir);
        if (o.crash_after > 0 && !o.restart) {
            /* Beside the drive, not in it: the drive holds only the map's own files. */
            snprintf(restart_buf, sizeof restart_buf, "%s.restart", tmpdir);
            o.restart = restart_buf;
        }
    } else {
        size_t used = (size_t)snprintf(drive_desc, sizeof drive_desc, "drive%s", n_drives > 1 ? "s" : "");
        for (uint32_t i = 0; i < n_drives; i++) {
            drives[i] = o.drives[i];
            if (used < sizeof drive_desc)
                used += (size_t)snprintf(drive_desc + used, sizeof drive_desc - used, " %s", o.drives[i]);
        }
    }

    run_catch_signals();

    struct report_info ri = {
        .o = &o,
        .variant = BM_STRESS_VARIANT,
        .drive_desc = drive_desc,
        .timer_ns = now_ns_mean_cost(),
    };
    uint32_t points = o.sweep == SWEEP_NONE ? 1 : o.n_sweep;
    ri.runs = calloc(points, sizeof *ri.runs);
    if (!ri.runs)
        return 2;
    bool failed = false, errored = false;
    for (uint32_t i = 0; i < points; i++) {
        uint32_t mixed = o.split_roles ? 0 : o.threads, readers = o.readers, writers = o.writers;
        if (o.sweep == SWEEP_THREADS)
            mixed = o.sweep_vals[i];
        else if (o.sweep == SWEEP_READERS)
            readers = o.sweep_vals[i];
        else if (o.sweep == SWEEP_WRITERS)
            writers = o.sweep_vals[i];
        if (o.sweep != SWEEP_NONE && !o.quiet)
            fprintf(stderr, "bm-stress: sweep point %u/%u: %s=%u\n", i + 1, points, sweep_name[o.sweep],
                    o.sweep_vals[i]);
        struct run *run = run_new(&o, drives, n_drives, mixed, readers, writers);
        if (!run) {
            fprintf(stderr, "bm-stress: out of memory\n");
            return 2;
        }
        if (o.crash_after > 0)
            run_exec_crash(run);
        else
            run_exec(run);
        ri.runs[ri.n_runs++] = run;
        failed |= atomic_load(&run->mismatches) != 0;
        errored |= run->lib_err != 0;
        if (failed || errored || run->interrupted)
            break;
    }
    ri.exit_status = failed ? 1 : errored ? 2 : 0;
    if (o.json)
        report_json(&ri);
    else
        report_text(&ri);
    fflush(stdout);

    if (tmpdir[0]) {
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        if (o.restart)
            unlink(o.restart); /* it describes files that are gone now */
    }
    for (uint32_t i = 0; i < ri.n_runs; i++)
        run_free(ri.runs[i]);
    free(ri.runs);
    return ri.exit_status;
}
