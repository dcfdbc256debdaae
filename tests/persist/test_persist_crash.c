/*
 * Crash loop: a forked child opens the persistent map and runs random insert / bm_update / delete / addref /
 * unref on a small key set (values encode key and version). Before each call it writes the intended effect
 * to a pipe, after the call returns it writes the acknowledgement. The parent SIGKILLs it 1..50 ms after it
 * reported the map open, reaps it, reopens and checks: every acknowledged effect is there (the one op in
 * flight may be old or new), nothing is torn, bm_count is exact, bm_verify is clean and the recovery
 * counters are plausible. BM_TEST_ITERATIONS overrides the iteration count, BM_TEST_SEED replays a run.
 */
#include "persist_util.h"

#include <poll.h>

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

static void child(int wfd, uint64_t seed)
{
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

START_TEST(t_crash_loop)
{
    uint64_t seed = pu_seed("persist_crash");
    const char *it_env = getenv("BM_TEST_ITERATIONS");
    int iterations = it_env ? atoi(it_env) : 200;
    memset(model, 0, sizeof(model));
    uint64_t max_removed = 0, replayed = 0, removed = 0, adopted = 0, t0 = ms_now();
    for (int it = 0; it < iterations; it++) {
        int p[2];
        ck_assert_int_eq(pipe(p), 0);
        uint64_t cseed = pu_mix(&seed);
        uint64_t delay = 1 + pu_mix(&seed) % 50;
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(p[0]);
            child(p[1], cseed);
        }
        close(p[1]);
        has_pending = ready = 0;
        partial_len = 0;
        uint64_t start = ms_now(), deadline = 0;
        while (!deadline || ms_now() < deadline) {
            int more = drain(p[0], 1);
            if (ready && !deadline)
                deadline = ms_now() + delay;
            ck_assert_msg(more, "iteration %d: the child exited on its own", it);
            ck_assert_msg(ms_now() - start < 10000, "iteration %d: the child did not open the map in 10 s", it);
        }
        kill(pid, SIGKILL);
        int st;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        while (drain(p[0], 1000))
            ;
        close(p[0]);
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "iteration %d: child status 0x%x (exit %d)", it,
                      st, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        ck_assert_uint_eq(partial_len, 0);

        bm_map *m = pu_open(DRIVES, BUCKETS);
        uint64_t present = 0;
        for (uint32_t k = 0; k < CKEYS; k++) {
            int c = pu_check(m, k, model[k].version, model[k].rc);
            int ok = model[k].present ? c == 0 : c == 1;
            if (!ok && has_pending && pending.key == k) {
                int c2 = pu_check(m, k, pending.version, pending.rc);
                ok = pending.present ? c2 == 0 : c2 == 1;
                if (ok) {
                    model[k] = (struct kstate){pending.present, pending.version, pending.rc};
                    adopted++;
                }
            }
            ck_assert_msg(ok,
                          "iteration %d: key %u: check %d; acknowledged %s v%" PRIu64 " rc %" PRIu64
                          "; in flight: %s",
                          it, k, c, model[k].present ? "present" : "absent", model[k].version, model[k].rc,
                          has_pending && pending.key == k ? "this key" : "another key");
            present += model[k].present;
        }
        ck_assert_uint_eq(bm_count(m), present);
        bm_verify_report vr;
        pu_verify_clean(m, &vr);
        bm_stats s;
        bm_get_stats(m, &s);
        /* One writer thread: at most one mutation was cut short. Orphans are the files of the grow under way
         * plus the spare files prepared ahead of grows (up to two per kind per bucket): bounded by a small
         * multiple of the bucket count, never by the number of operations. */
        ck_assert_uint_le(s.undo_replayed, 1);
        ck_assert_uint_le(s.orphan_files_removed, 8 * BUCKETS + 4);
        if (s.orphan_files_removed > max_removed)
            max_removed = s.orphan_files_removed;
        ck_assert_uint_eq(vr.undo_replayed, s.undo_replayed);
        ck_assert_uint_eq(vr.orphan_files_removed, s.orphan_files_removed);
        replayed += s.undo_replayed;
        removed += s.orphan_files_removed;
        bm_close(m);
    }
    fprintf(stderr,
            "persist_crash: %d kills in %.1f s, %" PRIu64 " acknowledged ops checked, %" PRIu64
            " in-flight ops found applied, %" PRIu64 " undo records replayed, %" PRIu64 " orphan files removed (at most %" PRIu64 " at once)\n",
            iterations, (double)(ms_now() - t0) / 1000.0, acked_ops, adopted, replayed, removed, max_removed);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("persist_crash");
    TCase *tc = tcase_create("crash");
    tcase_add_checked_fixture(tc, pu_setup, pu_teardown);
    tcase_set_timeout(tc, 150);
    tcase_add_test(tc, t_crash_loop);
    suite_add_tcase(s, tc);
    return pu_run_suite(s);
}
