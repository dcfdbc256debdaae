/*
 * bm-scale: the scale run of issue 9 (part 4). One persistent map on several drive directories, N keys
 * inserted one bm_insert each from one thread, then every number a user of a large index asks first:
 *   - insert rate over time: one CSV row per window of keys (default 1M keys at N >= 50M, else N/100),
 *     so a plot shows whether the rate falls off a cliff as the map grows;
 *   - get rate of present keys (uniform, 1 thread, values checked) and of absent keys;
 *   - bytes per entry: the drives' files (apparent size and allocated blocks, like du) and
 *     bm_get_stats index_bytes + data_bytes; the index load factor;
 *   - RSS (VmRSS, RssAnon, RssFile, VmHWM) and VmRSS / file bytes; open file descriptors;
 *   - one bm_flush after the load (everything dirty), one with nothing dirty, bm_close;
 *   - clean reopen -> first get, then a sample of gets checked;
 *   - unclean reopen: a forked child opens the map, writes (new keys and overwrites), reports them and is
 *     SIGKILLed without closing; the next bm_open recovers (scrubs every bucket): reopen -> first get, then
 *     a sample of old keys and every key the child acknowledged checked, and the count.
 * Only the public header and support/ are used. bench/scale.sh wraps it and draws the plot; bench/README.md
 * "Scale run" explains each number. Exit status: 0 ok, 1 a check failed (wrong value, count), 2 an error.
 */
#include <bucketmap.h>

#include "support/clock.h"
#include "support/rng.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_DRIVES 16
#define ELEM_SIZE 8
/* Indices of keys that are never inserted (absent gets) start here. */
#define ABSENT_BASE (UINT64_C(1) << 62)

static struct {
    uint64_t n;
    uint32_t n_drives;
    uint32_t buckets;
    uint64_t expected;
    uint32_t flush_ms;
    uint64_t window;
    double get_secs;
    uint64_t sample;
    uint64_t child_writes;
    double progress_secs;
    const char *parent;
    const char *out;
    int keep;
    int full_verify;
    int force;
} opt = {
    .n = 100000000,
    .n_drives = 4,
    .buckets = 2048,
    .flush_ms = 1000,
    .get_secs = 5,
    .sample = 100000,
    .child_writes = 10000,
    .progress_secs = 5,
    .parent = "/tmp",
    .out = ".",
};

static int failures;

/* ---- keys and values ---------------------------------------------------------------------------------- */

/* Key i (support/rng.h splitmix_key, the same keys in every persistence bench). */
static bm_key key_of(uint64_t i)
{
    bm_key k;
    splitmix_key(i, k.bytes);
    return k;
}

/* The element inserted for key i; the unclean phase's child overwrites some keys with val2_of. */
static uint64_t val_of(uint64_t i) { return mix64(i ^ UINT64_C(0x5ca1ab1e0ddba11)); }
static uint64_t val2_of(uint64_t i) { return ~val_of(i); }

/* Uniform in [0, n) by multiply-shift. */
static uint64_t rand_below(uint64_t *s, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)splitmix64(s) * n) >> 64);
}

/* ---- small helpers ------------------------------------------------------------------------------------ */

static double secs(uint64_t ns) { return ns / 1e9; }

static char *scratch;

static void die(const char *what, int err)
{
    fprintf(stderr, "bm-scale: %s: %s\n", what, bm_strerror(err));
    if (scratch)
        fprintf(stderr, "bm-scale: the scratch dir %s is left for a look; remove it with rm -rf\n", scratch);
    exit(2);
}

static void check(int ok, const char *fmt, ...)
{
    if (ok)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bm-scale: CHECK FAILED: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (++failures > 20) {
        fprintf(stderr, "bm-scale: too many failures, stopping\n");
        exit(1);
    }
}

typedef struct {
    uint64_t rss, hwm, anon, file; /* bytes */
} mem_info;

static mem_info read_mem(void)
{
    mem_info m = {0};
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return m;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        unsigned long long kb;
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
            m.rss = kb * 1024;
        else if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
            m.hwm = kb * 1024;
        else if (sscanf(line, "RssAnon: %llu kB", &kb) == 1)
            m.anon = kb * 1024;
        else if (sscanf(line, "RssFile: %llu kB", &kb) == 1)
            m.file = kb * 1024;
    }
    fclose(f);
    return m;
}

static uint64_t meminfo_kb(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    uint64_t v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtoull(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static uint64_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* minus the directory stream's own fd */
}

typedef struct {
    uint64_t files, apparent, allocated;
} du_info;

/* du of the drive directories: regular files only (the restart file included). */
static du_info du_dirs(char **dirs, uint32_t n)
{
    du_info r = {0};
    for (uint32_t i = 0; i < n; i++) {
        DIR *d = opendir(dirs[i]);
        if (!d)
            continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            struct stat st;
            if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
                r.files++;
                r.apparent += (uint64_t)st.st_size;
                r.allocated += (uint64_t)st.st_blocks * 512;
            }
        }
        closedir(d);
    }
    return r;
}

static uint64_t disk_free(const char *path)
{
    struct statvfs v;
    return statvfs(path, &v) == 0 ? (uint64_t)v.f_bavail * v.f_frsize : 0;
}

static const char *fs_name(const char *path)
{
    struct statfs s;
    if (statfs(path, &s) != 0)
        return "?";
    switch ((unsigned long)s.f_type) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794c7630: return "overlayfs";
    default: return "other";
    }
}

static double gib(uint64_t b) { return b / (1024.0 * 1024 * 1024); }
static double mib(uint64_t b) { return b / (1024.0 * 1024); }

static void fmt_dur(char *buf, size_t len, double s)
{
    if (s < 0 || s > 1e7)
        snprintf(buf, len, "?");
    else if (s >= 3600)
        snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60)
        snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, len, "%.0fs", s);
}

static void rm_tree(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bm-scale: warning: could not remove %s\n", dir);
}

/* ---- the map ------------------------------------------------------------------------------------------ */

static char *drive_dirs[MAX_DRIVES];
static char restart_path[4200];

static bm_config make_cfg(uint32_t flush_ms, char *errbuf, uint32_t errlen)
{
    bm_config c = {.elem_size = ELEM_SIZE,
                   .max_buckets = opt.buckets,
                   .drives = (const char *const *)drive_dirs,
                   .n_drives = opt.n_drives,
                   .restart_path = restart_path,
                   .flush_interval_ms = flush_ms,
                   .expected_entries = opt.expected,
                   .errbuf = errbuf,
                   .errbuf_len = errlen};
    return c;
}

static bm_map *open_map(uint32_t flush_ms, const char *what)
{
    char errbuf[512] = "";
    bm_config c = make_cfg(flush_ms, errbuf, sizeof(errbuf));
    bm_map *m;
    int err = bm_open(&c, &m);
    if (err) {
        fprintf(stderr, "bm-scale: %s (%s): ", what, errbuf);
        die("bm_open", err);
    }
    return m;
}

/* Gets key i and checks its one element against want. Returns 0 or the error. */
static int get_check(bm_map *m, uint64_t i, uint64_t want)
{
    bm_key k = key_of(i);
    uint64_t v = 0, rc = 0;
    uint32_t n = 0;
    int err = bm_get(m, &k, &v, 1, &n, &rc);
    if (err)
        return err;
    if (n != 1 || rc != 1 || v != want)
        check(0, "key %" PRIu64 ": n %u rc %" PRIu64 " value %#" PRIx64 ", want %#" PRIx64, i, n, rc, v, want);
    return 0;
}

/* Checks `count` random keys of [0, n); keys below overwritten carry val2_of. Returns seconds taken. */
static double verify_sample(bm_map *m, uint64_t n, uint64_t overwritten, uint64_t count, uint64_t seed)
{
    uint64_t s = seed, t0 = now_ns();
    for (uint64_t j = 0; j < count && n > 0; j++) {
        uint64_t i = rand_below(&s, n);
        int err = get_check(m, i, i < overwritten ? val2_of(i) : val_of(i));
        check(err == 0, "sample get of key %" PRIu64 ": %s", i, bm_strerror(err));
    }
    return secs(now_ns() - t0);
}

static void full_verify(bm_map *m, const char *when)
{
    bm_verify_report r;
    int err = bm_verify(m, &r);
    check(err == 0, "bm_verify %s: %s (bad sums %" PRIu64 ", bad cells %" PRIu64 ", misplaced %" PRIu64 ")", when,
          bm_strerror(err), r.bad_entry_sums, r.bad_cells, r.misplaced);
}

/* ---- phases ------------------------------------------------------------------------------------------- */

typedef struct {
    /* insert */
    double insert_s, win_min, win_max, win_med, win_first, win_last, win_min_at;
    uint64_t windows;
    bm_stats after_insert;
    /* gets */
    double get_mops, absent_mops;
    uint64_t gets, absent_gets;
    /* space and memory */
    du_info du;
    mem_info mem;
    uint64_t fds;
    /* flush and close */
    double flush_s, flush2_s, close_s;
    uint64_t flush_files;
    /* reopen */
    double reopen_open_s, reopen_get_s, reopen_sample_s, reopen_close_s;
    double unclean_open_s, unclean_get_s, unclean_sample_s;
    bm_stats unclean;
    uint64_t unclean_count, child_new, child_over;
    double child_write_s;
    double total_s;
} results;

static results R;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void phase_insert(bm_map *m, FILE *csv)
{
    double *rates = calloc(opt.n / opt.window + 2, sizeof(double));
    if (!rates)
        die("calloc", -ENOMEM);
    fprintf(csv, "keys_m,window_keys,window_s,mops,elapsed_s,rss_bytes,file_bytes,index_grows,flushes,fds\n");
    uint64_t t_start = now_ns(), t_win = t_start, t_prog = t_start, prog_keys = 0, win_start = 0;
    uint64_t prog_every = (uint64_t)(opt.progress_secs * 1e9);
    for (uint64_t i = 0; i < opt.n; i++) {
        bm_key k = key_of(i);
        uint64_t v = val_of(i);
        int err = bm_insert(m, &k, &v, 1, 1);
        if (err) {
            fprintf(stderr, "bm-scale: bm_insert of key %" PRIu64 " (%" PRIu64 " fds open): ", i, count_fds());
            die("bm_insert", err);
        }
        uint64_t done = i + 1;
        if (done - win_start == opt.window || done == opt.n) {
            uint64_t t = now_ns();
            double ws = secs(t - t_win), r = (done - win_start) / ws / 1e6;
            rates[R.windows++] = r;
            if (R.windows == 1)
                R.win_first = r;
            R.win_last = r;
            if (R.windows == 1 || r < R.win_min) {
                R.win_min = r;
                R.win_min_at = done / 1e6;
            }
            if (r > R.win_max)
                R.win_max = r;
            bm_stats st;
            bm_get_stats(m, &st);
            mem_info mi = read_mem();
            fprintf(csv, "%.6f,%" PRIu64 ",%.6f,%.6f,%.3f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n",
                    done / 1e6, done - win_start, ws, r, secs(t - t_start), mi.rss, st.index_bytes + st.data_bytes,
                    st.index_grows, st.flushes, count_fds());
            fflush(csv);
            win_start = done;
            t_win = t;
        }
        if ((done & 0xffff) == 0 && opt.progress_secs > 0) {
            uint64_t t = now_ns();
            if (t - t_prog >= prog_every) {
                bm_stats st;
                bm_get_stats(m, &st);
                mem_info mi = read_mem();
                double el = secs(t - t_start), avg = done / el / 1e6;
                double now_r = (done - prog_keys) / secs(t - t_prog) / 1e6;
                char eta[32];
                fmt_dur(eta, sizeof(eta), (opt.n - done) / (avg * 1e6));
                fprintf(stderr,
                        "[%7.1f s] %8.2fM / %.2fM keys %5.1f%%  %.3f Mops/s now, %.3f avg  RSS %.2f GiB  "
                        "files %.2f GiB  free %.1f GiB  fds %" PRIu64 "  grows %" PRIu64 "  ckpts %" PRIu64
                        "  ETA %s\n",
                        el, done / 1e6, opt.n / 1e6, 100.0 * done / opt.n, now_r, avg, gib(mi.rss),
                        gib(st.index_bytes + st.data_bytes), gib(disk_free(scratch)), count_fds(), st.index_grows,
                        st.flushes, eta);
                t_prog = t;
                prog_keys = done;
            }
        }
    }
    R.insert_s = secs(now_ns() - t_start);
    qsort(rates, R.windows, sizeof(double), cmp_double);
    R.win_med = R.windows ? rates[R.windows / 2] : 0;
    free(rates);
    bm_get_stats(m, &R.after_insert);
    uint64_t count = bm_count(m);
    check(count == opt.n, "bm_count after the load: %" PRIu64 ", want %" PRIu64, count, opt.n);
    fprintf(stderr, "inserted %" PRIu64 " keys in %.1f s (%.3f Mops/s)\n", opt.n, R.insert_s,
            opt.n / R.insert_s / 1e6);
}

/* Random gets for opt.get_secs; absent ones must say BM_ENOTFOUND. Returns Mops/s. */
static double get_rate(bm_map *m, int absent, uint64_t *ops)
{
    uint64_t s = absent ? 77 : 42, n = 0, t0 = now_ns(), limit = (uint64_t)(opt.get_secs * 1e9), t = t0;
    do {
        for (int j = 0; j < 1024; j++, n++) {
            uint64_t i = rand_below(&s, opt.n);
            if (absent) {
                bm_key k = key_of(ABSENT_BASE + i);
                uint64_t v;
                int err = bm_get(m, &k, &v, 1, NULL, NULL);
                if (err != BM_ENOTFOUND)
                    check(0, "absent get %" PRIu64 ": %s", i, bm_strerror(err));
            } else {
                int err = get_check(m, i, val_of(i));
                if (err)
                    check(0, "get of key %" PRIu64 ": %s", i, bm_strerror(err));
            }
        }
        t = now_ns();
    } while (t - t0 < limit);
    *ops = n;
    return n / secs(t - t0) / 1e6;
}

static void phase_gets(bm_map *m)
{
    R.get_mops = get_rate(m, 0, &R.gets);
    fprintf(stderr, "get (present, 1 thread): %.3f Mops/s over %" PRIu64 " gets\n", R.get_mops, R.gets);
    R.absent_mops = get_rate(m, 1, &R.absent_gets);
    fprintf(stderr, "get (absent, 1 thread):  %.3f Mops/s over %" PRIu64 " gets\n", R.absent_mops, R.absent_gets);
}

static void phase_space(void)
{
    R.du = du_dirs(drive_dirs, opt.n_drives);
    R.mem = read_mem();
    R.fds = count_fds();
}

static void phase_flush_close(bm_map *m)
{
    bm_stats a, b;
    bm_get_stats(m, &a);
    uint64_t t0 = now_ns();
    int err = bm_flush(m);
    if (err)
        die("bm_flush", err);
    R.flush_s = secs(now_ns() - t0);
    bm_get_stats(m, &b);
    R.flush_files = b.files_flushed - a.files_flushed;
    fprintf(stderr, "bm_flush after the load: %.3f s (%" PRIu64 " files synced)\n", R.flush_s, R.flush_files);
    t0 = now_ns();
    if ((err = bm_flush(m)))
        die("second bm_flush", err);
    R.flush2_s = secs(now_ns() - t0);
    if (opt.full_verify)
        full_verify(m, "after the load");
    t0 = now_ns();
    bm_close(m);
    R.close_s = secs(now_ns() - t0);
    fprintf(stderr, "bm_flush with nothing dirty: %.1f ms, bm_close: %.1f ms\n", R.flush2_s * 1e3, R.close_s * 1e3);
}

static void phase_clean_reopen(void)
{
    uint64_t t0 = now_ns();
    bm_map *m = open_map(0, "clean reopen");
    uint64_t t1 = now_ns();
    int err = get_check(m, opt.n / 2, val_of(opt.n / 2));
    if (err)
        die("first get after the clean reopen", err);
    uint64_t t2 = now_ns();
    R.reopen_open_s = secs(t1 - t0);
    R.reopen_get_s = secs(t2 - t1);
    R.reopen_sample_s = verify_sample(m, opt.n, 0, opt.sample, 1234);
    uint64_t count = bm_count(m);
    check(count == opt.n, "bm_count after the clean reopen: %" PRIu64 ", want %" PRIu64, count, opt.n);
    if (opt.full_verify)
        full_verify(m, "after the clean reopen");
    t0 = now_ns();
    bm_close(m);
    R.reopen_close_s = secs(now_ns() - t0);
    fprintf(stderr, "clean reopen -> first get: %.2f ms (open %.2f ms, get %.1f us); close %.1f ms\n",
            (R.reopen_open_s + R.reopen_get_s) * 1e3, R.reopen_open_s * 1e3, R.reopen_get_s * 1e6,
            R.reopen_close_s * 1e3);
}

/* The child: open, write new keys [n, n + new) and overwrite keys [0, over) with val2_of, report what was
 * acknowledged through the pipe, then die by SIGKILL with the map open (no flush, no close). */
static void unclean_child(int wfd, uint64_t new_keys, uint64_t over)
{
    bm_map *m = open_map(0, "reopen in the child");
    uint64_t t0 = now_ns();
    for (uint64_t j = 0; j < new_keys; j++) {
        bm_key k = key_of(opt.n + j);
        uint64_t v = val_of(opt.n + j);
        if (bm_insert(m, &k, &v, 1, 1))
            _exit(3);
    }
    for (uint64_t j = 0; j < over; j++) {
        bm_key k = key_of(j);
        uint64_t v = val2_of(j);
        if (bm_insert(m, &k, &v, 1, 1))
            _exit(3);
    }
    uint64_t msg[3] = {new_keys, over, now_ns() - t0};
    if (write(wfd, msg, sizeof(msg)) != (ssize_t)sizeof(msg))
        _exit(4);
    kill(getpid(), SIGKILL);
    _exit(5);
}

static void phase_unclean_reopen(void)
{
    int p[2];
    if (pipe(p) != 0)
        die("pipe", -errno);
    uint64_t over = opt.child_writes / 4 < opt.n ? opt.child_writes / 4 : opt.n;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", -errno);
    if (pid == 0) {
        close(p[0]);
        unclean_child(p[1], opt.child_writes, over);
    }
    close(p[1]);
    uint64_t msg[3] = {0};
    ssize_t got = read(p[0], msg, sizeof(msg));
    close(p[0]);
    int wst;
    waitpid(pid, &wst, 0);
    if (got != (ssize_t)sizeof(msg) || !WIFSIGNALED(wst) || WTERMSIG(wst) != SIGKILL) {
        fprintf(stderr, "bm-scale: the writer child did not report and die by SIGKILL (status %#x)\n", wst);
        die("the unclean phase", -ECHILD);
    }
    R.child_new = msg[0];
    R.child_over = msg[1];
    R.child_write_s = secs(msg[2]);

    uint64_t t0 = now_ns();
    bm_map *m = open_map(0, "unclean reopen");
    uint64_t t1 = now_ns();
    int err = get_check(m, opt.n / 2, opt.n / 2 < over ? val2_of(opt.n / 2) : val_of(opt.n / 2));
    if (err)
        die("first get after the unclean reopen", err);
    uint64_t t2 = now_ns();
    R.unclean_open_s = secs(t1 - t0);
    R.unclean_get_s = secs(t2 - t1);
    bm_get_stats(m, &R.unclean);
    R.unclean_sample_s = verify_sample(m, opt.n, over, opt.sample, 999);
    for (uint64_t j = 0; j < R.child_new; j++) {
        err = get_check(m, opt.n + j, val_of(opt.n + j));
        check(err == 0, "key %" PRIu64 " the killed child wrote: %s", opt.n + j, bm_strerror(err));
    }
    for (uint64_t j = 0; j < over; j++) {
        err = get_check(m, j, val2_of(j));
        check(err == 0, "key %" PRIu64 " the killed child overwrote: %s", j, bm_strerror(err));
    }
    R.unclean_count = bm_count(m);
    check(R.unclean_count == opt.n + R.child_new, "bm_count after the unclean reopen: %" PRIu64 ", want %" PRIu64,
          R.unclean_count, opt.n + R.child_new);
    if (opt.full_verify)
        full_verify(m, "after the unclean reopen");
    bm_close(m);
    fprintf(stderr,
            "unclean reopen -> first get: %.3f s (open %.3f s: %" PRIu64 " buckets scrubbed in %.3f s, %" PRIu64
            " entries dropped)\n",
            R.unclean_open_s + R.unclean_get_s, R.unclean_open_s, R.unclean.buckets_scrubbed,
            secs(R.unclean.scrub_ns), R.unclean.recovered_entries_dropped);
}

/* ---- the report --------------------------------------------------------------------------------------- */

static void report(FILE *f)
{
    struct utsname u;
    uname(&u);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    const bm_stats *s = &R.after_insert;
    uint64_t map_bytes = s->index_bytes + s->data_bytes;
    double n = (double)opt.n;
    fprintf(f, "bm-scale: %" PRIu64 " keys (32-byte keys, one 8-byte element, refcount 1), %u buckets, %u drive dirs "
               "under %s (%s), expected_entries %" PRIu64 ", flusher %s; %ld CPUs, %.1f GiB RAM, Linux %s\n\n",
            opt.n, opt.buckets, opt.n_drives, scratch, fs_name(scratch), opt.expected,
            opt.flush_ms ? "on" : "off", ncpu, meminfo_kb("MemTotal") / 1048576.0, u.release);
    if (opt.flush_ms)
        fprintf(f, "(background flusher every %u ms: %" PRIu64 " checkpoints during the load)\n\n", opt.flush_ms,
                s->flushes);
    fprintf(f, "| measure | result |\n|---|---|\n");
    fprintf(f, "| insert, whole load | %.3f Mops/s (%.1f s, %" PRIu64 " index grows taking %.1f s) |\n",
            n / R.insert_s / 1e6, R.insert_s, s->index_grows, secs(s->grow_ns));
    fprintf(f, "| insert, per %.6gM-key window (%" PRIu64 " windows) | first %.3f, median %.3f, min %.3f (at %.6gM), "
               "max %.3f, last %.3f Mops/s; last / first %.2f |\n",
            opt.window / 1e6, R.windows, R.win_first, R.win_med, R.win_min, R.win_min_at, R.win_max, R.win_last,
            R.win_first > 0 ? R.win_last / R.win_first : 0);
    fprintf(f, "| get, present keys, 1 thread | %.3f Mops/s (%.0f ns/get, %" PRIu64 " gets, values checked) |\n",
            R.get_mops, 1e3 / R.get_mops, R.gets);
    fprintf(f, "| get, absent keys, 1 thread | %.3f Mops/s (%.0f ns/get) |\n", R.absent_mops, 1e3 / R.absent_mops);
    fprintf(f, "| bytes per entry: files in the drives | %.1f B apparent, %.1f B allocated (du); %" PRIu64
               " files, %.2f GiB |\n",
            R.du.apparent / n, R.du.allocated / n, R.du.files, gib(R.du.apparent));
    fprintf(f, "| bytes per entry: bm_get_stats index+data | %.1f B (index %.2f GiB, data %.2f GiB; index load %.3f) |\n",
            map_bytes / n, gib(s->index_bytes), gib(s->data_bytes),
            s->index_capacity ? (double)s->entries / (double)s->index_capacity : 0);
    fprintf(f, "| RSS after load and gets | VmRSS %.2f GiB (anon %.0f MiB, file %.2f GiB), VmHWM %.2f GiB; "
               "VmRSS / map files %.3f |\n",
            gib(R.mem.rss), mib(R.mem.anon), gib(R.mem.file), gib(R.mem.hwm),
            map_bytes ? (double)R.mem.rss / (double)map_bytes : 0);
    fprintf(f, "| open file descriptors | %" PRIu64 " (the map's live files: %" PRIu64 "; other files in the drives: "
               "%" PRIu64 ", i.e. spares, files kept for the checkpoint, restart, manifests, locks) |\n",
            R.fds, s->files, R.du.files > s->files ? R.du.files - s->files : 0);
    fprintf(f, "| bm_flush after the load | %.3f s (%" PRIu64 " files synced) |\n", R.flush_s, R.flush_files);
    fprintf(f, "| bm_flush, nothing dirty | %.2f ms |\n", R.flush2_s * 1e3);
    fprintf(f, "| bm_close (after those flushes) | %.1f ms |\n", R.close_s * 1e3);
    fprintf(f, "| clean reopen -> first get | %.2f ms (bm_open %.2f ms, first bm_get %.1f us) |\n",
            (R.reopen_open_s + R.reopen_get_s) * 1e3, R.reopen_open_s * 1e3, R.reopen_get_s * 1e6);
    fprintf(f, "| after the clean reopen | %" PRIu64 " random gets checked in %.2f s; bm_close %.1f ms |\n", opt.sample,
            R.reopen_sample_s, R.reopen_close_s * 1e3);
    fprintf(f, "| unclean reopen -> first get | %.3f s (bm_open %.3f s: scrub of %" PRIu64 " buckets %.3f s; first "
               "bm_get %.1f us) |\n",
            R.unclean_open_s + R.unclean_get_s, R.unclean_open_s, R.unclean.buckets_scrubbed,
            secs(R.unclean.scrub_ns), R.unclean_get_s * 1e6);
    fprintf(f, "| unclean bm_open beyond the scrub | %.3f s (file checks, orphan removal, syncs, the commit) |\n",
            R.unclean_open_s - secs(R.unclean.scrub_ns));
    fprintf(f, "| the killed writer | reopened, wrote %" PRIu64 " new keys + %" PRIu64 " overwrites in %.2f s, "
               "SIGKILL; after recovery all of them read back, %" PRIu64 " random old keys checked, count %" PRIu64
               ", %" PRIu64 " entries dropped |\n",
            R.child_new, R.child_over, R.child_write_s, opt.sample, R.unclean_count,
            R.unclean.recovered_entries_dropped);
    fprintf(f, "| whole run | %.1f s%s |\n", R.total_s, failures ? ", CHECKS FAILED" : ", every check passed");
}

/* ---- main --------------------------------------------------------------------------------------------- */

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [options]\n"
            "  --n N             keys to insert (default 100000000)\n"
            "  --buckets B       max_buckets, a power of two <= 65536 (default 2048: bench/README.md says why)\n"
            "  --drives D        drive directories (default 4)\n"
            "  --expected E      bm_config.expected_entries (default 0: start small and grow)\n"
            "  --flush-ms MS     background flusher period during the load (default 1000; 0: none, and then\n"
            "                    the map keeps every replaced file until the flush after the load)\n"
            "  --window W        keys per insert-rate window (default 1000000 at N >= 50M, else N/100)\n"
            "  --get-secs S      seconds of each get-rate phase (default 5)\n"
            "  --sample K        random keys checked after each reopen (default 100000)\n"
            "  --child-writes K  new keys the killed writer inserts (plus K/4 overwrites; default 10000)\n"
            "  --progress-secs S seconds between progress lines on stderr (default 5; 0: none)\n"
            "  --dir PARENT      the scratch dir is a fresh PARENT/bm-scale-XXXXXX (default /tmp)\n"
            "  --keep            keep the scratch dir (default: removed at the end)\n"
            "  --out DIR         where scale_insert.csv and scale_results.md go (default .)\n"
            "  --verify          also bm_verify the whole map after the load and after each reopen\n"
            "  --force           run even if the free disk space or the fd limit looks too small\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && ++i)
        if (ARG("--n"))
            opt.n = strtoull(v, NULL, 10);
        else if (ARG("--buckets"))
            opt.buckets = (uint32_t)strtoul(v, NULL, 10);
        else if (ARG("--drives"))
            opt.n_drives = (uint32_t)strtoul(v, NULL, 10);
        else if (ARG("--expected"))
            opt.expected = strtoull(v, NULL, 10);
        else if (ARG("--flush-ms"))
            opt.flush_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (ARG("--window"))
            opt.window = strtoull(v, NULL, 10);
        else if (ARG("--get-secs"))
            opt.get_secs = atof(v);
        else if (ARG("--sample"))
            opt.sample = strtoull(v, NULL, 10);
        else if (ARG("--child-writes"))
            opt.child_writes = strtoull(v, NULL, 10);
        else if (ARG("--progress-secs"))
            opt.progress_secs = atof(v);
        else if (ARG("--dir"))
            opt.parent = v;
        else if (ARG("--out"))
            opt.out = v;
        else if (!strcmp(a, "--keep"))
            opt.keep = 1;
        else if (!strcmp(a, "--verify"))
            opt.full_verify = 1;
        else if (!strcmp(a, "--force"))
            opt.force = 1;
        else
            usage(argv[0]);
#undef ARG
    }
    if (opt.n == 0 || opt.n_drives == 0 || opt.n_drives > MAX_DRIVES || opt.get_secs <= 0)
        usage(argv[0]);
    if (opt.window == 0)
        opt.window = opt.n >= 50000000 ? 1000000 : (opt.n / 100 > 1000 ? opt.n / 100 : 1000);
    if (opt.window > opt.n)
        opt.window = opt.n;

    /* One fd per map file (README "Limits"): use the whole hard limit. A bucket holds its index file, up to
     * two spares and, between checkpoints, the file the last checkpoint named: measured 3.1 fds per bucket
     * with a 1 s flusher, 4.8 with none (bench/README.md "Scale run"). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (uint64_t)opt.buckets * 5 + 64 > (uint64_t)rl.rlim_cur && !opt.force) {
        fprintf(stderr, "bm-scale: %u buckets may need up to %u file descriptors, RLIMIT_NOFILE is %llu: fewer "
                        "buckets, a higher limit, or --force\n", opt.buckets, opt.buckets * 5 + 64,
                (unsigned long long)rl.rlim_cur);
        return 2;
    }

    /* The machine: ~100 bytes of files per key (85 B measured at 1M) plus spares; the page cache should
     * hold them, or the run measures the disk instead of the map. */
    uint64_t need = opt.n * 100 + (256ull << 20), avail = meminfo_kb("MemAvailable") * 1024;
    uint64_t free_b = disk_free(opt.parent);
    if (free_b < need + need / 4 && !opt.force) {
        fprintf(stderr, "bm-scale: %s has %.1f GiB free, the run needs about %.1f GiB (+25%% margin); --force "
                        "to try anyway\n", opt.parent, gib(free_b), gib(need));
        return 2;
    }
    if (avail && avail < need)
        fprintf(stderr, "bm-scale: warning: %.1f GiB available memory < ~%.1f GiB of map files: the page cache "
                        "will not hold the map\n", gib(avail), gib(need));

    char path[4200];
    snprintf(path, sizeof(path), "%s/scale_insert.csv", opt.out);
    FILE *csv = fopen(path, "w");
    if (!csv) {
        perror(path);
        return 2;
    }
    size_t plen = strlen(opt.parent) + 32;
    scratch = malloc(plen);
    snprintf(scratch, plen, "%s/bm-scale-XXXXXX", opt.parent);
    if (!mkdtemp(scratch)) {
        perror(scratch);
        return 2;
    }
    for (uint32_t d = 0; d < opt.n_drives; d++) {
        drive_dirs[d] = malloc(plen + 16);
        snprintf(drive_dirs[d], plen + 16, "%s/drive%u", scratch, d);
        if (mkdir(drive_dirs[d], 0755) != 0) {
            perror(drive_dirs[d]);
            return 2;
        }
    }
    snprintf(restart_path, sizeof(restart_path), "%s/restart", drive_dirs[0]);

    fprintf(stderr,
            "bm-scale: %" PRIu64 " keys, %u buckets, %u drives in %s (%s, %.1f GiB free), window %" PRIu64
            " keys, flusher %u ms, expected_entries %" PRIu64 "\n",
            opt.n, opt.buckets, opt.n_drives, scratch, fs_name(scratch), gib(free_b), opt.window, opt.flush_ms,
            opt.expected);

    uint64_t t0 = now_ns();
    bm_map *m = open_map(opt.flush_ms, "bm_open");
    phase_insert(m, csv);
    fclose(csv);
    phase_gets(m);
    phase_space();
    phase_flush_close(m);
    phase_clean_reopen();
    phase_unclean_reopen();
    R.total_s = secs(now_ns() - t0);

    fputc('\n', stdout);
    report(stdout);
    snprintf(path, sizeof(path), "%s/scale_results.md", opt.out);
    FILE *md = fopen(path, "w");
    if (md) {
        report(md);
        fclose(md);
    } else {
        perror(path);
    }
    if (!opt.keep)
        rm_tree(scratch);
    else
        fprintf(stderr, "bm-scale: kept %s\n", scratch);
    for (uint32_t d = 0; d < opt.n_drives; d++)
        free(drive_dirs[d]);
    free(scratch);
    return failures ? 1 : 0;
}
