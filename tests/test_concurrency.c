/*
 * test_concurrency — lock-free readers never see a torn value while writers hammer the same buckets.
 *
 * Every value is self-describing: for key number kid at version ver,
 *     refcount   = ver << 16 | kid
 *     n          = val_len(kid, ver)   (lengths across size classes, so data files grow and cells move)
 *     element j  = { tag(kid, ver, j), ver }   (two u64 per 16-byte element)
 * A reader that sees any mix of two versions (old refcount with new elements, old n with new bytes, a
 * half-copied element) finds a mismatch. Each key is owned by one writer, which records the key's exact
 * state; readers also check that the versions they see of one key never go backwards.
 *
 * Threads per run: writers sharing one or two "hot" buckets (update, delete, reinsert, grow), writers on
 * other buckets in parallel, readers (bm_get with various caps, bm_read, bm_get_batch of random keys with
 * various caps), and a bm_foreach walker. All start at one pthread barrier and run for RUN_MS. At the end the
 * map must equal what the writers recorded, read key by key and in batches.
 */
#include "tu.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

enum {
    ES = 16,
    RUN_MS_DEFAULT = 1500,
    MAX_LEN = 600,
    KEYS_PER_WRITER = 512,
    MAX_WRITERS = 8,
    MAX_KEYS = MAX_WRITERS * KEYS_PER_WRITER,
    N_READERS = 3,
    BATCH_MAX = 40, /* keys per bm_get_batch of a reader */
};

typedef struct conc_cfg {
    uint32_t buckets;
    uint32_t max_search;
    int hot_writers;  /* writers whose keys all live in the hot buckets */
    int n_hot;        /* 1 or 2 hot buckets */
    int cold_writers; /* writers each on a bucket of its own */
} conc_cfg;

static const conc_cfg cfgs[] = {
    {8, 8, 4, 2, 2},  /* 2 hot buckets shared by 4 writers, 2 writers on buckets of their own */
    {1, 2, 3, 1, 0},  /* everything in 1 bucket with a tiny probe window: index grows all the time */
    {4, 0, 2, 1, 2},  /* default window, 1 hot bucket */
};

/* ---- value encoding ---- */

static uint32_t val_len(uint64_t kid, uint64_t ver)
{
    static const uint32_t lens[] = {0, 1, 1, 2, 3, 4, 5, 8, 9, 16, 17, 33, 64, 65, 130, 1, 0, 2};
    uint64_t h = tu_mix64(kid * 1000003u + ver);
    if (h % 97 == 0)
        return MAX_LEN;
    return lens[h % (sizeof lens / sizeof lens[0])];
}

static uint64_t tag(uint64_t kid, uint64_t ver, uint32_t j)
{
    return tu_mix64((kid << 40) ^ (ver << 12) ^ j);
}

static void encode(uint64_t kid, uint64_t ver, uint64_t *elems, uint32_t *n, uint64_t *rc)
{
    *n = val_len(kid, ver);
    *rc = ver << 16 | kid;
    for (uint32_t j = 0; j < *n; j++) {
        elems[2 * j] = tag(kid, ver, j);
        elems[2 * j + 1] = ver;
    }
}

/* Checks a value seen for key kid; copied = how many leading elements are available in elems (bm_get with a
 * small cap copies fewer than n). Returns the version, or 0 with why filled in. */
static uint64_t check_value(uint64_t kid, const uint64_t *elems, uint32_t n, uint32_t copied, uint64_t rc,
                            char *why, size_t whylen)
{
    uint64_t ver = rc >> 16;
    if ((rc & 0xFFFF) != kid || ver == 0) {
        snprintf(why, whylen, "key %" PRIu64 ": refcount 0x%" PRIx64 " belongs to key %" PRIu64, kid, rc, rc & 0xFFFF);
        return 0;
    }
    if (n != val_len(kid, ver)) {
        snprintf(why, whylen, "key %" PRIu64 " ver %" PRIu64 ": n=%u, expected %u (torn: n from another version)",
                 kid, ver, n, val_len(kid, ver));
        return 0;
    }
    for (uint32_t j = 0; j < copied; j++)
        if (elems[2 * j] != tag(kid, ver, j) || elems[2 * j + 1] != ver) {
            snprintf(why, whylen,
                     "key %" PRIu64 " ver %" PRIu64 " n=%u: element %u holds version %" PRIu64 " (torn read)", kid,
                     ver, n, j, elems[2 * j + 1]);
            return 0;
        }
    return ver;
}

/* ---- shared state ---- */

typedef struct key_state {
    bm_key key;
    int owner;
    uint32_t bucket;
    uint64_t ver;   /* last version written (versions only grow) */
    bool present;   /* written by the owner only; read by main after join */
} key_state;

typedef struct shared {
    bm_map *m;
    const conc_cfg *cfg;
    key_state keys[MAX_KEYS];
    uint32_t nkeys;
    pthread_barrier_t start;
    atomic_bool stop;
    atomic_uint_fast64_t errors;
    atomic_uint_fast64_t reads_ok, reads_absent, writes, walks, walk_visits;
    pthread_mutex_t msg_lock;
    char first_error[400];
    uint64_t seed;
} shared;

static void report(shared *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(shared *sh, const char *fmt, ...)
{
    if (atomic_fetch_add(&sh->errors, 1) == 0) {
        pthread_mutex_lock(&sh->msg_lock);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sh->first_error, sizeof sh->first_error, fmt, ap);
        va_end(ap);
        pthread_mutex_unlock(&sh->msg_lock);
    }
    atomic_store(&sh->stop, true);
}

/* ---- writers ---- */

typedef struct writer_arg {
    shared *sh;
    int id;
    uint32_t first, count; /* its keys: sh->keys[first .. first+count) */
} writer_arg;

typedef struct upd_ctx {
    shared *sh;
    key_state *ks;
    uint64_t *elems;
    int action;
    uint64_t new_ver;
    int calls;
    bool cur_ok;
    char why[200];
} upd_ctx;

static int writer_upd(const bm_value *cur, bm_value *out, void *ctx)
{
    upd_ctx *u = ctx;
    u->calls++;
    key_state *ks = u->ks;
    uint64_t kid = tu_key_index(&ks->key);
    /* The owner is the only writer of this key, so cur must be exactly its last write. */
    if (!cur) {
        u->cur_ok = !ks->present;
        if (!u->cur_ok)
            snprintf(u->why, sizeof u->why, "bm_update saw key %" PRIu64 " absent, owner wrote ver %" PRIu64, kid,
                     ks->ver);
    } else {
        uint64_t v = check_value(kid, cur->elems, cur->n, cur->n, cur->refcount, u->why, sizeof u->why);
        u->cur_ok = v != 0 && ks->present && v == ks->ver;
        if (v && !u->cur_ok)
            snprintf(u->why, sizeof u->why, "bm_update saw key %" PRIu64 " ver %" PRIu64 ", owner has %s ver %" PRIu64,
                     kid, v, ks->present ? "present" : "deleted", ks->ver);
    }
    if (u->action == BM_WRITE) {
        uint32_t n;
        uint64_t rc;
        encode(kid, u->new_ver, u->elems, &n, &rc);
        *out = (bm_value){.elems = n ? u->elems : NULL, .n = n, .refcount = rc};
    }
    return u->action;
}

static void *writer_main(void *p)
{
    writer_arg *a = p;
    shared *sh = a->sh;
    tu_rng r = {sh->seed ^ tu_mix64((uint64_t)a->id + 1)};
    uint64_t *elems = malloc((size_t)MAX_LEN * ES);
    uint8_t *rbuf = malloc((size_t)MAX_LEN * ES);
    if (!elems || !rbuf) {
        report(sh, "writer %d: out of memory", a->id);
        pthread_barrier_wait(&sh->start);
        free(elems);
        free(rbuf);
        return NULL;
    }
    char why[200];
    pthread_barrier_wait(&sh->start);
    uint64_t ops = 0;
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        /* The working set widens over time, so index and data grows keep happening during the run. */
        uint64_t span = 4 + ops / 8;
        if (span > a->count)
            span = a->count;
        key_state *ks = &sh->keys[a->first + tu_below(&r, span)];
        uint64_t kid = tu_key_index(&ks->key);
        uint64_t op = tu_below(&r, 100);
        int rr;
        if (op < 35) {
            uint64_t ver = ks->ver + 1;
            uint32_t n;
            uint64_t rc;
            encode(kid, ver, elems, &n, &rc);
            rr = bm_insert(sh->m, &ks->key, n ? elems : NULL, n, rc);
            if (rr) {
                report(sh, "writer %d: bm_insert(key %" PRIu64 ", n=%u) returned %d (%s)", a->id, kid, n, rr,
                       bm_strerror(rr));
                break;
            }
            ks->ver = ver;
            ks->present = true;
        } else if (op < 70) {
            upd_ctx u = {.sh = sh, .ks = ks, .elems = elems, .new_ver = ks->ver + 1};
            uint64_t pick = tu_below(&r, 10);
            u.action = pick < 6 ? BM_WRITE : pick < 8 ? BM_KEEP : BM_DELETE;
            rr = bm_update(sh->m, &ks->key, writer_upd, &u);
            if (rr || u.calls != 1 || !u.cur_ok) {
                report(sh, "writer %d: bm_update(key %" PRIu64 ", action %d) returned %d (%s), fn called %d times: %s",
                       a->id, kid, u.action, rr, bm_strerror(rr), u.calls, u.cur_ok ? "" : u.why);
                break;
            }
            if (u.action == BM_WRITE) {
                ks->ver = u.new_ver;
                ks->present = true;
            } else if (u.action == BM_DELETE) {
                ks->present = false;
            }
        } else if (op < 85) {
            rr = bm_delete(sh->m, &ks->key);
            int want = ks->present ? 0 : BM_ENOTFOUND;
            if (rr != want) {
                report(sh, "writer %d: bm_delete(key %" PRIu64 ") returned %d (%s), expected %d", a->id, kid, rr,
                       bm_strerror(rr), want);
                break;
            }
            ks->present = false;
        } else {
            /* Read-your-writes on an owned key. */
            uint32_t n = 0;
            uint64_t rc = 0;
            rr = bm_get(sh->m, &ks->key, rbuf, MAX_LEN, &n, &rc);
            if (!ks->present) {
                if (rr != BM_ENOTFOUND) {
                    report(sh, "writer %d: deleted key %" PRIu64 " reads %d (%s)", a->id, kid, rr, bm_strerror(rr));
                    break;
                }
            } else {
                uint64_t v = rr ? 0 : check_value(kid, (const uint64_t *)rbuf, n, n, rc, why, sizeof why);
                if (rr || v != ks->ver) {
                    report(sh, "writer %d: key %" PRIu64 " (ver %" PRIu64 ") reads %d (%s), ver %" PRIu64 " %s", a->id,
                           kid, ks->ver, rr, bm_strerror(rr), v, v ? "" : why);
                    break;
                }
            }
        }
        ops++;
    }
    atomic_fetch_add(&sh->writes, ops);
    free(elems);
    free(rbuf);
    return NULL;
}

/* ---- readers ---- */

typedef struct reader_arg {
    shared *sh;
    int id;
} reader_arg;

typedef struct rd_ctx {
    uint64_t kid;
    uint64_t ver;
    int calls;
    char why[200];
} rd_ctx;

static void reader_cb(const bm_value *v, void *ctx)
{
    rd_ctx *c = ctx;
    c->calls++;
    c->ver = check_value(c->kid, v->elems, v->n, v->n, v->refcount, c->why, sizeof c->why);
}

/* One bm_get_batch of 1..BATCH_MAX random keys (repeats allowed) with a random cap; every key's result is
 * checked like a single get's. A batch is not one snapshot (the same key twice in a batch may be read at two
 * versions, in either order), so versions must not go back only against what earlier calls saw.
 * Returns 0, or -1 after report(). */
static int reader_batch(shared *sh, int id, tu_rng *r, uint64_t *last, uint8_t *out, uint64_t *ok,
                        uint64_t *absent)
{
    bm_key keys[BATCH_MAX];
    uint32_t idx[BATCH_MAX], n[BATCH_MAX];
    uint64_t rc[BATCH_MAX], seen[BATCH_MAX];
    int st[BATCH_MAX];
    char why[200];
    size_t nb = 1 + tu_below(r, BATCH_MAX);
    uint64_t capsel = tu_below(r, 4);
    uint32_t cap = capsel == 0 ? 0 : capsel == 1 ? (uint32_t)tu_below(r, 20) : MAX_LEN;
    bool arrays = tu_below(r, 8) != 0;
    for (size_t i = 0; i < nb; i++) {
        idx[i] = (uint32_t)tu_below(r, sh->nkeys);
        keys[i] = sh->keys[idx[i]].key;
    }
    int found = bm_get_batch(sh->m, keys, nb, cap ? out : NULL, cap, arrays ? n : NULL, arrays ? rc : NULL, st);
    if (found < 0) {
        report(sh, "reader %d: bm_get_batch(%zu keys, cap %u) returned %d (%s)", id, nb, cap, found,
               bm_strerror(found));
        return -1;
    }
    int counted = 0;
    for (size_t i = 0; i < nb; i++) {
        uint64_t kid = tu_key_index(&keys[i]);
        seen[i] = 0;
        if (st[i] == BM_ENOTFOUND) {
            (*absent)++;
            continue;
        }
        if (st[i] != 0) {
            report(sh, "reader %d: bm_get_batch: key %" PRIu64 " status %d (%s)", id, kid, st[i], bm_strerror(st[i]));
            return -1;
        }
        counted++;
        if (!arrays)
            continue; /* status only: nothing to check the bytes against */
        const uint64_t *e = (const uint64_t *)(out + i * (size_t)cap * ES);
        seen[i] = check_value(kid, e, n[i], n[i] < cap ? n[i] : cap, rc[i], why, sizeof why);
        if (!seen[i]) {
            report(sh, "reader %d: bm_get_batch(%zu keys, cap %u), key %zu: %s", id, nb, cap, i, why);
            return -1;
        }
        if (seen[i] < last[idx[i]]) {
            report(sh, "reader %d: bm_get_batch: key %" PRIu64 " went back from version %" PRIu64 " to %" PRIu64, id,
                   kid, last[idx[i]], seen[i]);
            return -1;
        }
        (*ok)++;
    }
    if (counted != found) {
        report(sh, "reader %d: bm_get_batch returned %d, but %d statuses are 0", id, found, counted);
        return -1;
    }
    for (size_t i = 0; i < nb; i++)
        if (seen[i] > last[idx[i]])
            last[idx[i]] = seen[i];
    return 0;
}

static void *reader_main(void *p)
{
    reader_arg *a = p;
    shared *sh = a->sh;
    tu_rng r = {sh->seed ^ tu_mix64(1000 + (uint64_t)a->id)};
    uint64_t *last = calloc(MAX_KEYS, sizeof *last);
    uint64_t *buf = malloc((size_t)MAX_LEN * ES);
    uint8_t *bbuf = malloc((size_t)BATCH_MAX * MAX_LEN * ES);
    char why[200];
    if (!last || !buf || !bbuf) {
        report(sh, "reader %d: out of memory", a->id);
        pthread_barrier_wait(&sh->start);
        free(last);
        free(buf);
        free(bbuf);
        return NULL;
    }
    pthread_barrier_wait(&sh->start);
    uint64_t ok = 0, absent = 0;
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        if (tu_below(&r, 4) == 0) {
            if (reader_batch(sh, a->id, &r, last, bbuf, &ok, &absent))
                break;
            continue;
        }
        uint32_t idx = (uint32_t)tu_below(&r, sh->nkeys);
        const key_state *ks = &sh->keys[idx];
        uint64_t kid = tu_key_index(&ks->key);
        uint64_t ver = 0;
        int rr;
        if (tu_below(&r, 3) == 0) {
            rd_ctx c = {.kid = kid};
            rr = bm_read(sh->m, &ks->key, reader_cb, &c);
            if (rr == 0 && (c.calls != 1 || c.ver == 0)) {
                report(sh, "reader %d: bm_read: %d calls; %s", a->id, c.calls, c.why);
                break;
            }
            ver = c.ver;
        } else {
            /* Full copies, partial copies and no copy at all. */
            uint64_t capsel = tu_below(&r, 4);
            uint32_t cap = capsel == 0 ? 0 : capsel == 1 ? (uint32_t)tu_below(&r, 20) : MAX_LEN;
            uint32_t n = 0;
            uint64_t rc = 0;
            rr = bm_get(sh->m, &ks->key, cap ? buf : NULL, cap, &n, &rc);
            if (rr == 0) {
                ver = check_value(kid, buf, n, n < cap ? n : cap, rc, why, sizeof why);
                if (!ver) {
                    report(sh, "reader %d: bm_get(cap %u): %s", a->id, cap, why);
                    break;
                }
            }
        }
        if (rr == BM_ENOTFOUND) {
            absent++;
            continue;
        }
        if (rr != 0) {
            report(sh, "reader %d: read of key %" PRIu64 " returned %d (%s)", a->id, kid, rr, bm_strerror(rr));
            break;
        }
        if (ver < last[idx]) {
            report(sh, "reader %d: key %" PRIu64 " went back from version %" PRIu64 " to %" PRIu64, a->id, kid,
                   last[idx], ver);
            break;
        }
        last[idx] = ver;
        ok++;
        if ((ok & 1023) == 0 && bm_count(sh->m) > sh->nkeys) {
            report(sh, "reader %d: bm_count %" PRIu64 " exceeds the %u keys ever written", a->id, bm_count(sh->m),
                   sh->nkeys);
            break;
        }
    }
    atomic_fetch_add(&sh->reads_ok, ok);
    atomic_fetch_add(&sh->reads_absent, absent);
    free(last);
    free(buf);
    free(bbuf);
    return NULL;
}

/* ---- foreach walker ---- */

typedef struct walk_ctx {
    shared *sh;
    uint8_t *seen;
    uint64_t visits;
    char why[300];
} walk_ctx;

static int walk_cb(const bm_key *k, const bm_value *v, void *ctx)
{
    walk_ctx *w = ctx;
    w->visits++;
    uint64_t kid = tu_key_index(k);
    if (kid >= w->sh->nkeys || memcmp(k, &w->sh->keys[kid].key, sizeof *k) != 0) {
        snprintf(w->why, sizeof w->why, "bm_foreach visited an unknown key (index %" PRIu64 ")", kid);
        return 1;
    }
    if (w->seen[kid]++) {
        snprintf(w->why, sizeof w->why, "bm_foreach visited key %" PRIu64 " twice in one walk", kid);
        return 1;
    }
    char why[200];
    if (!check_value(kid, v->elems, v->n, v->n, v->refcount, why, sizeof why)) {
        snprintf(w->why, sizeof w->why, "bm_foreach: %s", why);
        return 1;
    }
    return 0;
}

static void *walker_main(void *p)
{
    shared *sh = p;
    walk_ctx w = {.sh = sh, .seen = calloc(MAX_KEYS, 1)};
    if (!w.seen) {
        report(sh, "walker: out of memory");
        pthread_barrier_wait(&sh->start);
        return NULL;
    }
    pthread_barrier_wait(&sh->start);
    uint64_t walks = 0;
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        memset(w.seen, 0, MAX_KEYS);
        w.visits = 0;
        int rr = bm_foreach(sh->m, walk_cb, &w);
        if (rr) {
            report(sh, "walker: bm_foreach returned %d: %s", rr, w.why);
            break;
        }
        atomic_fetch_add(&sh->walk_visits, w.visits);
        walks++;
    }
    atomic_fetch_add(&sh->walks, walks);
    free(w.seen);
    return NULL;
}

/* ---- the run ---- */

static uint64_t run_ms(void)
{
    const char *s = getenv("BM_CONC_MS");
    return (s && *s) ? strtoull(s, NULL, 0) : RUN_MS_DEFAULT;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

typedef struct final_walk {
    shared *sh;
    uint8_t *seen;
    uint64_t visits;
    uint64_t bad;
    char why[300];
} final_walk;

static int final_cb(const bm_key *k, const bm_value *v, void *ctx)
{
    final_walk *f = ctx;
    f->visits++;
    uint64_t kid = tu_key_index(k);
    char why[200];
    if (kid >= f->sh->nkeys || !f->sh->keys[kid].present || f->seen[kid]++ ||
        check_value(kid, v->elems, v->n, v->n, v->refcount, why, sizeof why) != f->sh->keys[kid].ver) {
        if (!f->bad++)
            snprintf(f->why, sizeof f->why, "final bm_foreach: unexpected visit of key %" PRIu64, kid);
    }
    return 0;
}

static void run_conc(const conc_cfg *c, uint64_t seed)
{
    shared *sh = calloc(1, sizeof *sh);
    ck_assert_ptr_nonnull(sh);
    sh->cfg = c;
    sh->seed = seed;
    pthread_mutex_init(&sh->msg_lock, NULL);
    int nwriters = c->hot_writers + c->cold_writers;
    ck_assert_int_le(nwriters, MAX_WRITERS);

    /* Keys: hot writers' keys alternate between the hot buckets; cold writer w gets bucket n_hot + w. */
    for (int w = 0; w < nwriters; w++)
        for (uint32_t j = 0; j < KEYS_PER_WRITER; j++) {
            uint32_t kid = sh->nkeys++;
            uint32_t bucket = w < c->hot_writers ? j % (uint32_t)c->n_hot
                                                 : ((uint32_t)c->n_hot + (uint32_t)(w - c->hot_writers)) % c->buckets;
            key_state *ks = &sh->keys[kid];
            ks->key = tu_key_in_bucket(kid, bucket, c->buckets);
            ks->owner = w;
            ks->bucket = bucket;
            ck_assert_uint_eq(bm_bucket_of(&ks->key, c->buckets), c->buckets > 1 ? bucket : 0);
        }

    bm_config cfg = {.elem_size = ES, .max_buckets = c->buckets, .max_search = c->max_search};
    sh->m = tu_open_cfg(&cfg);

    int nthreads = nwriters + N_READERS + 1;
    pthread_barrier_init(&sh->start, NULL, (unsigned)nthreads + 1);
    pthread_t th[MAX_WRITERS + N_READERS + 1];
    writer_arg wa[MAX_WRITERS];
    reader_arg ra[N_READERS];
    int t = 0;
    for (int w = 0; w < nwriters; w++) {
        wa[w] = (writer_arg){.sh = sh, .id = w, .first = (uint32_t)w * KEYS_PER_WRITER, .count = KEYS_PER_WRITER};
        ck_assert_int_eq(pthread_create(&th[t++], NULL, writer_main, &wa[w]), 0);
    }
    for (int i = 0; i < N_READERS; i++) {
        ra[i] = (reader_arg){.sh = sh, .id = i};
        ck_assert_int_eq(pthread_create(&th[t++], NULL, reader_main, &ra[i]), 0);
    }
    ck_assert_int_eq(pthread_create(&th[t++], NULL, walker_main, sh), 0);

    pthread_barrier_wait(&sh->start);
    uint64_t until = now_ms() + run_ms();
    while (!atomic_load(&sh->stop) && now_ms() < until) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&sh->stop, true);
    for (int i = 0; i < t; i++)
        pthread_join(th[i], NULL);

    fprintf(stderr,
            "test_concurrency: buckets=%u max_search=%u: %" PRIu64 " writes, %" PRIu64 " reads (+%" PRIu64
            " absent), %" PRIu64 " walks (%" PRIu64 " visits)\n",
            c->buckets, c->max_search, (uint64_t)sh->writes, (uint64_t)sh->reads_ok, (uint64_t)sh->reads_absent,
            (uint64_t)sh->walks, (uint64_t)sh->walk_visits);
    ck_assert_msg(sh->errors == 0, "seed=0x%016" PRIx64 ": %" PRIu64 " error(s), first: %s", seed,
                  (uint64_t)sh->errors, sh->first_error);
    ck_assert_msg(sh->reads_ok > 0 && sh->walks > 0, "readers or walker never ran");

    /* Final contents: exactly what the writers recorded. */
    uint64_t present = 0;
    uint64_t *buf = tu_xmalloc((size_t)MAX_LEN * ES);
    char why[200];
    for (uint32_t i = 0; i < sh->nkeys; i++) {
        key_state *ks = &sh->keys[i];
        uint32_t n = 0;
        uint64_t rc = 0;
        int rr = bm_get(sh->m, &ks->key, buf, MAX_LEN, &n, &rc);
        if (!ks->present) {
            ck_assert_msg(rr == BM_ENOTFOUND, "final: deleted key %u reads %d (%s)", i, rr, bm_strerror(rr));
            continue;
        }
        present++;
        ck_assert_msg(rr == 0, "final: key %u reads %d (%s)", i, rr, bm_strerror(rr));
        uint64_t v = check_value(i, buf, n, n, rc, why, sizeof why);
        ck_assert_msg(v == ks->ver, "final: key %u has version %" PRIu64 ", writer recorded %" PRIu64 " %s", i, v,
                      ks->ver, v ? "" : why);
    }
    free(buf);
    /* The same contents through bm_get_batch, BATCH_MAX keys at a time. */
    uint8_t *bbuf = tu_xmalloc((size_t)BATCH_MAX * MAX_LEN * ES);
    for (uint32_t first = 0; first < sh->nkeys; first += BATCH_MAX) {
        bm_key keys[BATCH_MAX];
        uint32_t n[BATCH_MAX];
        uint64_t rc[BATCH_MAX];
        int st[BATCH_MAX], want = 0;
        size_t nb = sh->nkeys - first < BATCH_MAX ? sh->nkeys - first : BATCH_MAX;
        for (size_t i = 0; i < nb; i++) {
            keys[i] = sh->keys[first + i].key;
            want += sh->keys[first + i].present;
        }
        ck_assert_int_eq(bm_get_batch(sh->m, keys, nb, bbuf, MAX_LEN, n, rc, st), want);
        for (size_t i = 0; i < nb; i++) {
            key_state *ks = &sh->keys[first + i];
            ck_assert_int_eq(st[i], ks->present ? 0 : BM_ENOTFOUND);
            if (!ks->present)
                continue;
            uint64_t v = check_value(first + i, (const uint64_t *)(bbuf + i * (size_t)MAX_LEN * ES), n[i], n[i], rc[i],
                                     why, sizeof why);
            ck_assert_msg(v == ks->ver, "final batch: key %zu has version %" PRIu64 ", writer recorded %" PRIu64 " %s",
                          first + i, v, ks->ver, v ? "" : why);
        }
    }
    free(bbuf);
    ck_assert_uint_eq(bm_count(sh->m), present);
    final_walk f = {.sh = sh, .seen = calloc(MAX_KEYS, 1)};
    ck_assert_ptr_nonnull(f.seen);
    TU_OK(bm_foreach(sh->m, final_cb, &f));
    ck_assert_msg(f.bad == 0, "%s", f.why);
    ck_assert_uint_eq(f.visits, present);
    free(f.seen);

    bm_stats st;
    bm_get_stats(sh->m, &st);
    ck_assert_msg(st.index_grows > 0, "no index grow happened during the run");
    ck_assert_msg(st.data_grows > 0, "no data-file grow happened during the run");
    bm_verify_report vr;
    int vrc = bm_verify(sh->m, &vr);
    ck_assert_msg(vrc == 0, "bm_verify after the run returned %d (%s)", vrc, bm_strerror(vrc));
    bm_close(sh->m);
    pthread_barrier_destroy(&sh->start);
    pthread_mutex_destroy(&sh->msg_lock);
    free(sh);
}

static uint64_t base_seed;

START_TEST(t_concurrent)
{
    uint64_t seed = tu_mix64(base_seed + (uint64_t)_i);
    fprintf(stderr, "test_concurrency: config %d seed=0x%016" PRIx64 "\n", _i, seed);
    run_conc(&cfgs[_i], seed);
}
END_TEST

/* Nested bm_update across two maps in opposite orders on two threads: thread 0 updates a key of map A and,
 * in its callback, one of map B; thread 1 the other way round, same keys. Holding one bucket and waiting for
 * the other would deadlock (the test's timeout would fire); the library instead refuses the inner write
 * with BM_EBUSY when its bucket is taken, and the outer update goes on. Both threads start together on a
 * barrier, and the outer callbacks wait for each other, so every round really overlaps. */
struct nest {
    bm_map *outer, *inner;
    pthread_barrier_t *bar;
    uint64_t ok, busy;
};

static int nest_inner_fn(const bm_value *cur, bm_value *out, void *arg)
{
    (void)cur;
    static const uint64_t v = 7;
    (void)arg;
    out->elems = &v;
    out->n = 1;
    out->refcount = 1;
    return BM_WRITE;
}

static int nest_outer_fn(const bm_value *cur, bm_value *out, void *arg)
{
    struct nest *n = arg;
    (void)cur;
    pthread_barrier_wait(n->bar); /* both threads now hold their outer bucket */
    bm_key k = tu_key(1);
    int err = bm_update(n->inner, &k, nest_inner_fn, NULL);
    if (err == 0)
        n->ok++;
    else if (err == BM_EBUSY)
        n->busy++;
    else
        return err;
    ck_assert_int_eq(bm_flush(n->inner), BM_EBUSY); /* refused inside a callback */
    static const uint64_t v = 9;
    out->elems = &v;
    out->n = 1;
    out->refcount = 1;
    return BM_WRITE;
}

static void *nest_thread(void *arg)
{
    struct nest *n = arg;
    bm_key k = tu_key(1);
    for (int i = 0; i < 200; i++) {
        int err = bm_update(n->outer, &k, nest_outer_fn, n);
        ck_assert_int_eq(err, 0);
    }
    return NULL;
}

START_TEST(t_nested_updates_opposite_order)
{
    bm_map *a = tu_open(8, 1, 0), *b = tu_open(8, 1, 0);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    struct nest n0 = {a, b, &bar, 0, 0}, n1 = {b, a, &bar, 0, 0};
    pthread_t t0, t1;
    pthread_create(&t0, NULL, nest_thread, &n0);
    pthread_create(&t1, NULL, nest_thread, &n1);
    pthread_join(t0, NULL);
    pthread_join(t1, NULL);
    pthread_barrier_destroy(&bar);
    fprintf(stderr, "test_concurrency/nested: inner writes %" PRIu64 " done, %" PRIu64 " refused with BM_EBUSY\n",
            n0.ok + n1.ok, n0.busy + n1.busy);
    ck_assert_uint_eq(n0.ok + n0.busy, 200);
    ck_assert_uint_gt(n0.busy + n1.busy, 0); /* every round overlapped: at least some were refused */
    bm_close(a);
    bm_close(b);
}
END_TEST

/* First touches after a clean reopen (runtime/recovery.c): every bucket starts unloaded and readers, a
 * writer, a bm_foreach walker and a stats/count poller all start at once on one barrier, so several threads
 * race to load the same buckets. Values: key i holds one element, i * 3 + version, refcount 1; in round
 * `round` the writer moves the keys with i % 4 == round from version 0 to 1. Under TSan this checks that a
 * loaded state is published before `unloaded` is cleared and that loads and cuts serialize on the lock. */
enum { LZ_KEYS = 4000, LZ_BUCKETS = 16, LZ_ROUNDS = 3 };

struct lazy_run {
    bm_map *m;
    int round;
    pthread_barrier_t start;
    atomic_int failed;
    atomic_int written[LZ_KEYS];
};

static void *lazy_reader(void *arg)
{
    struct lazy_run *r = arg;
    pthread_barrier_wait(&r->start);
    tu_rng rng = {(uint64_t)(uintptr_t)&rng};
    for (int n = 0; n < 2 * LZ_KEYS; n++) {
        uint64_t i = tu_below(&rng, LZ_KEYS), v = 0, rc = 0;
        bm_key k = tu_key(i);
        uint32_t cnt = 0;
        int was = atomic_load(&r->written[i]);
        int err = bm_get(r->m, &k, &v, 1, &cnt, &rc);
        if (err || cnt != 1 || rc != 1 || (v != i * 3 && !((int)(i % 4) <= r->round && v == i * 3 + 1)) ||
            (was && v != i * 3 + 1))
            atomic_store(&r->failed, 1);
    }
    return NULL;
}

static void *lazy_writer(void *arg)
{
    struct lazy_run *r = arg;
    pthread_barrier_wait(&r->start);
    for (uint64_t i = (uint64_t)r->round; i < LZ_KEYS; i += 4) {
        uint64_t v = i * 3 + 1;
        bm_key k = tu_key(i);
        if (bm_insert(r->m, &k, &v, 1, 1))
            atomic_store(&r->failed, 1);
        atomic_store(&r->written[i], 1);
    }
    return NULL;
}

static int lazy_count_fn(const bm_key *k, const bm_value *v, void *ctx)
{
    (void)k;
    (void)v;
    (*(uint64_t *)ctx)++;
    return 0;
}

static void *lazy_walker(void *arg)
{
    struct lazy_run *r = arg;
    pthread_barrier_wait(&r->start);
    uint64_t seen = 0;
    if (bm_foreach(r->m, lazy_count_fn, &seen) || seen != LZ_KEYS)
        atomic_store(&r->failed, 1);
    for (int n = 0; n < 50; n++) {
        bm_stats st;
        bm_get_stats(r->m, &st);
        if (bm_count(r->m) != LZ_KEYS || st.entries != LZ_KEYS || st.buckets_allocated != LZ_BUCKETS)
            atomic_store(&r->failed, 1);
    }
    return NULL;
}

START_TEST(t_lazy_first_touch)
{
    char dir[PATH_MAX], rp[PATH_MAX + 16];
    tu_mkdtemp(dir, "lazy");
    snprintf(rp, sizeof(rp), "%s/restart", dir);
    const char *drives[] = {dir};
    bm_config cfg = {.elem_size = 8, .max_buckets = LZ_BUCKETS, .drives = drives, .n_drives = 1, .restart_path = rp};
    bm_map *m = tu_open_cfg(&cfg);
    for (uint64_t i = 0; i < LZ_KEYS; i++) {
        uint64_t v = i * 3;
        bm_key k = tu_key(i);
        TU_OK(bm_insert(m, &k, &v, 1, 1));
    }
    bm_close(m);
    static struct lazy_run r;
    for (int round = 0; round < LZ_ROUNDS; round++) {
        r.m = tu_open_cfg(&cfg);
        r.round = round;
        bm_stats st;
        bm_get_stats(r.m, &st);
        ck_assert_uint_eq(st.buckets_unloaded, LZ_BUCKETS);
        atomic_store(&r.failed, 0);
        pthread_barrier_init(&r.start, NULL, 5);
        pthread_t th[5];
        for (int t = 0; t < 3; t++)
            pthread_create(&th[t], NULL, lazy_reader, &r);
        pthread_create(&th[3], NULL, lazy_writer, &r);
        pthread_create(&th[4], NULL, lazy_walker, &r);
        for (int t = 0; t < 5; t++)
            pthread_join(th[t], NULL);
        pthread_barrier_destroy(&r.start);
        ck_assert_msg(!atomic_load(&r.failed), "round %d: a thread saw a wrong value or count", round);
        bm_verify_report rep;
        TU_OK(bm_verify(r.m, &rep));
        ck_assert_uint_eq(rep.entries, LZ_KEYS);
        bm_close(r.m);
    }
    tu_rmrf(dir);
}
END_TEST

int main(void)
{
    base_seed = tu_seed();
    fprintf(stderr, "test_concurrency: BM_TEST_SEED=0x%016" PRIx64 " (thread timing is not reproducible)\n",
            base_seed);
    Suite *s = suite_create("concurrency");
    TCase *tc = tcase_create("concurrency");
    tcase_set_timeout(tc, TU_TIMEOUT);
    tcase_add_loop_test(tc, t_concurrent, 0, (int)(sizeof cfgs / sizeof cfgs[0]));
    tcase_add_test(tc, t_nested_updates_opposite_order);
    tcase_add_test(tc, t_lazy_first_touch);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
