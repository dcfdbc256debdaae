/*
 * Crash loop: a forked child opens the persistent map and runs random insert / bm_update / delete / addref /
 * unref on a small key set (values encode key and version). Before each call it writes the intended effect
 * to a pipe, after the call returns it writes the acknowledgement. The parent SIGKILLs it 1..50 ms after it
 * reported the map open, reaps it, reopens and checks: every acknowledged effect is there (the one op in
 * flight may be old or new), nothing is torn, bm_count is exact, bm_verify is clean and the recovery
 * counters are plausible. Every tenth iteration `bmctl verify` (the BMCTL environment variable, set by ctest)
 * does the recovery and must report a clean map. A second test uses the library's test hook
 * BM_TEST_FAULT=crash-after=N, which kills the child in the middle of its N-th mutation with the undo record
 * armed: a state that a random SIGKILL rarely hits. A third kills writers that free data cells all the time,
 * hundreds of times, at random moments and (BM_TEST_FAULT=crash-after=N) in the middle of a rewrite, and
 * requires every recovery to verify clean. BM_TEST_ITERATIONS overrides the iteration
 * count, BM_TEST_SEED replays a run.
 */
#include "persist_util.h"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>

#define CKEYS 2000u
#define BUCKETS 4u
#define DRIVES 2u

struct kstate {
    uint8_t present;
    uint64_t version, rc;
};

struct rec {
    uint32_t key;
    uint8_t ack, present, op;
    uint64_t version, rc;
};

static struct kstate model[CKEYS];

struct upd_ctx {
    uint32_t key;
    uint64_t version, rc;
    uint64_t e[PU_MAX_N];
    const struct kstate *expect;
    int saw_wrong;
};

static int upd_fn(const bm_value *cur, bm_value *out, void *arg)
{
    struct upd_ctx *c = arg;
    /* The current value must be the acknowledged one. */
    if (!!cur != !!c->expect->present)
        c->saw_wrong = 1;
    else if (cur && cur->refcount != c->expect->rc)
        c->saw_wrong = 1;
    out->n = pu_fill(c->e, c->key, c->version);
    out->elems = c->e;
    out->refcount = c->rc;
    return BM_WRITE;
}

static void send(int fd, const struct rec *r)
{
    if (write(fd, r, sizeof(*r)) != (ssize_t)sizeof(*r))
        _exit(4);
}

static void child(int wfd, uint64_t seed, uint64_t crash_after)
{
    if (crash_after) {
        char v[48];
        snprintf(v, sizeof(v), "crash-after=%" PRIu64, crash_after);
        setenv("BM_TEST_FAULT", v, 1);
    }
    bm_config cfg = pu_cfg(DRIVES, BUCKETS);
    bm_map *m;
    int err = bm_open(&cfg, &m);
    if (err)
        _exit(3);
    struct rec ready = {UINT32_MAX, 2, 0, 0, 0, 0};
    send(wfd, &ready);
    for (;;) {
        uint32_t key = (uint32_t)(pu_mix(&seed) % CKEYS);
        unsigned op = (unsigned)(pu_mix(&seed) % 10);
        struct kstate *cur = &model[key];
        struct rec r = {key, 0, 1, (uint8_t)op, cur->version, cur->rc};
        bm_key k = pu_key(key);
        uint64_t nrc;
        if (op < 4) { /* insert a new version */
            r.version = cur->version + 1 + pu_mix(&seed) % 1000;
            r.rc = pu_mix(&seed) % 3 == 0 ? UINT64_MAX - 1 : pu_mix(&seed) % 5;
            send(wfd, &r);
            err = pu_put(m, key, r.version, r.rc);
        } else if (op < 6) { /* read-modify-write */
            r.version = cur->version + 1 + pu_mix(&seed) % 1000;
            r.rc = cur->present ? cur->rc : 1;
            send(wfd, &r);
            struct upd_ctx c = {.key = key, .version = r.version, .rc = r.rc, .expect = cur};
            err = bm_update(m, &k, upd_fn, &c);
            if (c.saw_wrong)
                _exit(6);
        } else if (op < 8) { /* delete */
            r.present = 0;
            send(wfd, &r);
            err = bm_delete(m, &k);
            if (err == BM_ENOTFOUND && !cur->present)
                err = 0;
        } else if (op == 8) { /* addref */
            if (!cur->present || cur->rc == UINT64_MAX)
                continue;
            r.rc = cur->rc + 1;
            send(wfd, &r);
            err = bm_addref(m, &k, &nrc);
            if (!err && nrc != r.rc)
                _exit(7);
        } else { /* unref */
            if (!cur->present || cur->rc == 0)
                continue;
            r.rc = cur->rc - 1;
            send(wfd, &r);
            err = bm_unref(m, &k, &nrc);
            if (!err && nrc != r.rc)
                _exit(7);
        }
        if (err)
            _exit(5);
        *cur = (struct kstate){r.present, r.version, r.rc};
        r.ack = 1;
        send(wfd, &r);
    }
}

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads whole records from the pipe into the model. Returns 0 at EOF, 1 if more may come. */
static struct rec pending;
static int has_pending, ready;
static uint8_t partial[sizeof(struct rec)];
static size_t partial_len;
static uint64_t acked_ops;

static int drain(int fd, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 1;
    uint8_t buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0)
        return 0;
    for (ssize_t i = 0; i < n; i++) {
        partial[partial_len++] = buf[i];
        if (partial_len < sizeof(struct rec))
            continue;
        struct rec r;
        memcpy(&r, partial, sizeof(r));
        partial_len = 0;
        if (r.ack == 2)
            ready = 1;
        else if (r.ack == 1) {
            model[r.key] = (struct kstate){r.present, r.version, r.rc};
            has_pending = 0;
            acked_ops++;
        } else {
            pending = r;
            has_pending = 1;
        }
    }
    return 1;
}

/* Runs `bmctl verify --json` on the map (which also recovers it, as bm_open would). Returns its exit status
 * and adds the undo records it replayed to *replayed; -1 when BMCTL is not set. */
static int bmctl_verify(uint64_t *replayed, char *out, size_t cap)
{
    const char *bmctl = getenv("BMCTL");
    if (!bmctl || !*bmctl)
        return -1;
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(bmctl, bmctl, "verify", "--json", "--restart", pu_restart, pu_d[0], pu_d[1], (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(p[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    close(p[0]);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    const char *u = strstr(out, "\"undo_replayed\":");
    if (u)
        *replayed += strtoull(u + 16, NULL, 10);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int count_bm_files(void)
{
    int n = 0;
    for (unsigned d = 0; d < DRIVES; d++) {
        DIR *dir = opendir(pu_d[d]);
        ck_assert_ptr_nonnull(dir);
        struct dirent *de;
        while ((de = readdir(dir))) {
            /* The checkpoint's manifest is the map's record of its files, not one of them. */
            size_t l = strlen(de->d_name);
            n += l > 3 && strcmp(de->d_name + l - 3, ".bm") == 0 && !strstr(de->d_name, "-manifest-");
        }
        closedir(dir);
    }
    return n;
}

struct totals {
    uint64_t max_removed, replayed, removed, adopted, bmctl_runs, hook_kills;
};

/* One iteration: fork a child that works on the map until it is killed (by the parent after `delay` ms,
 * or by the library's crash hook at its crash_after-th mutation), then recover and check against the model.
 * Returns 0, or 1 when the crash hook did not fire (a library without it). */
static int crash_once(int it, uint64_t cseed, uint64_t delay, uint64_t crash_after, struct totals *t)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        child(p[1], cseed, crash_after);
    }
    close(p[1]);
    has_pending = ready = 0;
    partial_len = 0;
    uint64_t start = ms_now(), deadline = 0, acked_before = acked_ops;
    int hook_missing = 0;
    if (crash_after) {
        /* The child dies on its own; give up when it is still going long after its N-th mutation. */
        while (drain(p[0], 10)) {
            if (acked_ops - acked_before > crash_after + 100000 || ms_now() - start > 10000) {
                hook_missing = 1;
                break;
            }
        }
    } else {
        while (!deadline || ms_now() < deadline) {
            int more = drain(p[0], 1);
            if (ready && !deadline)
                deadline = ms_now() + delay;
            ck_assert_msg(more, "iteration %d: the child exited on its own", it);
            ck_assert_msg(ms_now() - start < 10000, "iteration %d: the child did not open the map in 10 s", it);
        }
    }
    kill(pid, SIGKILL);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    while (drain(p[0], 1000))
        ;
    close(p[0]);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "iteration %d: child status 0x%x (exit %d)", it, st,
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    ck_assert_uint_eq(partial_len, 0);
    ck_assert_msg(ready, "iteration %d: the child was killed before it opened the map", it);

    /* Every tenth iteration bmctl does the recovery and the verification, as an operator would. */
    uint64_t bmctl_replayed = 0;
    if (it % 10 == 0) {
        char out[4096];
        int rc = bmctl_verify(&bmctl_replayed, out, sizeof(out));
        if (rc >= 0) {
            ck_assert_msg(rc == 0 && strstr(out, "\"clean\":true"), "iteration %d: bmctl verify exit %d: %s", it, rc,
                          out);
            ck_assert_uint_le(bmctl_replayed, 1);
            t->bmctl_runs++;
        }
    }

    bm_map *m = pu_open(DRIVES, BUCKETS);
    /* No orphan file: right after recovery (before any grow retires a file into a spare) every *.bm file in
     * the drives is one the map uses. */
    bm_stats s0;
    bm_get_stats(m, &s0);
    ck_assert_msg((uint64_t)count_bm_files() == s0.files, "iteration %d: %d *.bm files on the drives, the map uses %" PRIu64,
                  it, count_bm_files(), s0.files);
    uint64_t present = 0;
    for (uint32_t k = 0; k < CKEYS; k++) {
        int c = pu_check(m, k, model[k].version, model[k].rc);
        int ok = model[k].present ? c == 0 : c == 1;
        if (!ok && has_pending && pending.key == k) {
            int c2 = pu_check(m, k, pending.version, pending.rc);
            ok = pending.present ? c2 == 0 : c2 == 1;
            if (ok) {
                model[k] = (struct kstate){pending.present, pending.version, pending.rc};
                t->adopted++;
            }
        }
        ck_assert_msg(ok,
                      "iteration %d: key %u: check %d; acknowledged %s v%" PRIu64 " rc %" PRIu64 "; in flight: %s",
                      it, k, c, model[k].present ? "present" : "absent", model[k].version, model[k].rc,
                      has_pending && pending.key == k ? "this key" : "another key");
        present += model[k].present;
    }
    ck_assert_uint_eq(bm_count(m), present);
    bm_verify_report vr;
    pu_verify_clean(m, &vr);
    bm_stats s;
    bm_get_stats(m, &s);
    /* One writer thread: at most one mutation was cut short. Orphans are the files of the grow under way plus
     * the spare files prepared ahead of grows (up to two per kind per bucket): bounded by a small multiple of
     * the bucket count, never by the number of operations. */
    ck_assert_uint_le(s.undo_replayed, 1);
    ck_assert_uint_le(s.orphan_files_removed, 8 * BUCKETS + 4);
    if (s.orphan_files_removed > t->max_removed)
        t->max_removed = s.orphan_files_removed;
    ck_assert_uint_eq(vr.undo_replayed, s.undo_replayed);
    ck_assert_uint_eq(vr.orphan_files_removed, s.orphan_files_removed);
    t->replayed += s.undo_replayed + bmctl_replayed;
    t->removed += s.orphan_files_removed;
    bm_close(m);
    return hook_missing;
}

START_TEST(t_crash_loop)
{
    uint64_t seed = pu_seed("persist_crash");
    const char *it_env = getenv("BM_TEST_ITERATIONS");
    int iterations = it_env ? atoi(it_env) : 200;
    memset(model, 0, sizeof(model));
    acked_ops = 0;
    struct totals t = {0};
    uint64_t t0 = ms_now();
    for (int it = 0; it < iterations; it++) {
        uint64_t cseed = pu_mix(&seed);
        uint64_t delay = 1 + pu_mix(&seed) % 50;
        crash_once(it, cseed, delay, 0, &t);
    }
    fprintf(stderr,
            "persist_crash: %d kills in %.1f s, %" PRIu64 " acknowledged ops checked, %" PRIu64
            " in-flight ops found applied, %" PRIu64 " undo records replayed, %" PRIu64
            " orphan files removed (at most %" PRIu64 " at once), %" PRIu64 " recoveries by bmctl verify%s\n",
            iterations, (double)(ms_now() - t0) / 1000.0, acked_ops, t.adopted, t.replayed, t.removed,
            t.max_removed, t.bmctl_runs, getenv("BMCTL") ? "" : " (BMCTL not set)");
}
END_TEST

START_TEST(t_crash_hook)
{
    uint64_t seed = pu_seed("persist_crash/hook");
    const char *it_env = getenv("BM_TEST_ITERATIONS");
    int iterations = it_env ? atoi(it_env) / 2 : 100;
    if (iterations < 1)
        iterations = 1;
    memset(model, 0, sizeof(model));
    acked_ops = 0;
    struct totals t = {0};
    uint64_t t0 = ms_now();
    for (int it = 0; it < iterations; it++) {
        uint64_t cseed = pu_mix(&seed);
        uint64_t n = 1 + pu_mix(&seed) % 3000;
        if (crash_once(it, cseed, 0, n, &t)) {
            fprintf(stderr, "persist_crash/hook: SKIPPED: BM_TEST_FAULT=crash-after=%" PRIu64
                            " did not kill the child (library without the crash hook)\n", n);
            return;
        }
        t.hook_kills++;
    }
    fprintf(stderr,
            "persist_crash/hook: %d kills mid-mutation in %.1f s, %" PRIu64 " acknowledged ops checked, %" PRIu64
            " in-flight ops found applied, %" PRIu64 " undo records replayed, %" PRIu64 " orphan files removed\n",
            iterations, (double)(ms_now() - t0) / 1000.0, acked_ops, t.adopted, t.replayed, t.removed);
    /* The hook fires before the mutation's last store: an in-place rewrite (undo record armed) is rolled
     * back, a new entry or a new version written beside a shadow is dropped by the scrub, a delete is
     * undone; so the op in flight is never found applied, and some recoveries replay an undo record. */
    ck_assert_msg(t.replayed > 0 && t.replayed <= t.hook_kills,
                  "%" PRIu64 " undo records replayed after %" PRIu64 " mid-mutation kills", t.replayed, t.hook_kills);
    ck_assert_uint_eq(t.adopted, 0);
}
END_TEST

/* Reclaim under SIGKILL: two buckets, each with a writer thread rewriting 32 keys' 2-element values without
 * pause, so every write frees a data cell and (right after open, where every entry is frozen) writes its new
 * version beside a shadow. After each kill the map must verify clean: recovery rebuilds cell occupancy and
 * used counts from the entries, so no kill between a cell's stores can leave a count off (an earlier design
 * freed cells with two stores and needed a release record for exactly that). The hook variant kills in the
 * middle of the N-th rewrite. */
struct rw_arg {
    bm_map *m;
    uint32_t bucket;
};

static void *rewriter(void *arg)
{
    struct rw_arg *a = arg;
    bm_key keys[32];
    for (uint32_t i = 0, n = 0; n < 32; i++) {
        bm_key k = pu_key(i);
        if (bm_bucket_of(&k, 2) == a->bucket)
            keys[n++] = k;
    }
    for (uint64_t i = 0;; i++) {
        uint64_t e[2] = {i, ~i};
        if (bm_insert(a->m, &keys[i % 32], e, 2, 1))
            _exit(3);
    }
    return NULL;
}

/* One round: a child rewrites (see rewriter()) until killed, by us after delay_us or by the library's
 * crash-after hook; then the map must reopen and verify clean. */
static void reclaim_round(const bm_config *cfg, int round, uint64_t delay_us, uint64_t release_hook)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        bm_map *m;
        close(p[0]);
        if (release_hook) {
            char v[64];
            snprintf(v, sizeof(v), "crash-after=%" PRIu64, release_hook);
            setenv("BM_TEST_FAULT", v, 1);
        }
        if (bm_open(cfg, &m))
            _exit(2);
        struct rw_arg a[2] = {{m, 0}, {m, 1}};
        pthread_t t;
        /* Report first: with the hook, the other thread may kill us at any moment once it runs. */
        if (write(p[1], "R", 1) != 1 || pthread_create(&t, NULL, rewriter, &a[1]))
            _exit(4);
        rewriter(&a[0]);
    }
    close(p[1]);
    char c;
    ck_assert_msg(read(p[0], &c, 1) == 1, "round %d: the child did not open the map", round);
    close(p[0]);
    if (!release_hook) {
        usleep((useconds_t)delay_us);
        kill(pid, SIGKILL);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "round %d: child exit %d", round,
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    bm_map *m = NULL;
    ck_assert_int_eq(bm_open(cfg, &m), 0);
    bm_verify_report r;
    memset(&r, 0, sizeof(r));
    int err = bm_verify(m, &r);
    ck_assert_msg(err == 0,
                  "round %d (kill %" PRIu64 " us after open, release hook %" PRIu64 "): bm_verify %s: entries %" PRIu64
                  ", count mismatches %" PRIu64 ", orphan cells %" PRIu64 ", bad refs %" PRIu64
                  ", undo replayed %" PRIu64,
                  round, delay_us, release_hook, bm_strerror(err), r.entries, r.count_mismatches, r.orphan_cells,
                  r.bad_refs, r.undo_replayed);
    bm_close(m);
}

START_TEST(t_crash_reclaim)
{
    uint64_t seed = pu_seed("persist_crash/reclaim");
    bm_config cfg = pu_cfg(1, 2);
    const char *it_env = getenv("BM_TEST_ITERATIONS");
    int hook_rounds = it_env ? atoi(it_env) / 4 : 50;
    uint64_t budget_ms = it_env ? (uint64_t)atoi(it_env) * 40 : 8000;
    uint64_t t0 = ms_now();
    int rounds = 0;
    for (; rounds < hook_rounds; rounds++)
        reclaim_round(&cfg, rounds, 0, 1 + pu_mix(&seed) % 5000);
    uint64_t t1 = ms_now();
    int random_rounds = 0;
    while (ms_now() - t1 < budget_ms && random_rounds < 10000) {
        reclaim_round(&cfg, rounds++, 300 + pu_mix(&seed) % 3000, 0);
        random_rounds++;
    }
    fprintf(stderr,
            "persist_crash/reclaim: %d kills in the middle of a rewrite and %d random kills in %.1f s, "
            "every recovery verified clean\n",
            hook_rounds, random_rounds, (double)(ms_now() - t0) / 1000.0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("persist_crash");
    TCase *tc = tcase_create("crash");
    tcase_add_checked_fixture(tc, pu_setup, pu_teardown);
    tcase_set_timeout(tc, 150);
    tcase_add_test(tc, t_crash_loop);
    tcase_add_test(tc, t_crash_hook);
    suite_add_tcase(s, tc);
    TCase *rc = tcase_create("reclaim");
    tcase_add_checked_fixture(rc, pu_setup, pu_teardown);
    tcase_set_timeout(rc, 120);
    tcase_add_test(rc, t_crash_reclaim);
    suite_add_tcase(s, rc);
    return pu_run_suite(s);
}
