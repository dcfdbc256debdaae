/*
 * Power-loss simulator (issue 7, "The contract" and "Tests"), written against the public API only.
 *
 * One run:
 *   1. A forked child opens a persistent map (restart_path and drives set, no flusher) in LIVE/ and runs
 *      random bm_insert (0..40 elements: inline and several size classes), bm_update (write or delete),
 *      bm_delete, bm_addref and bm_unref. Before each call it sends the intended state of the key on a pipe,
 *      after the call returns the acknowledged one. Then bm_flush, "flushed", and it blocks on a pipe read.
 *      The parent SIGSTOPs it and copies every file under LIVE/ (the drive directories and the restart
 *      file's directory, recursively, sizes and holes kept): state A. SIGCONT, go on.
 *   2. The child runs more operations (in "grow" runs new keys until every bucket's index file and one of
 *      its data files have grown since the flush), reporting each one, and is SIGKILLed at a random
 *      acknowledgement or after it finished: state B is copied after the kill. (The "clean" runs close the
 *      map instead, for the sanity test.)
 *   3. Images: for each path in A and B, both: every 4 KiB page from A or B (sometimes torn at a 512-byte
 *      sector boundary, sectors from both), the length from A or B; only in B (created since): absent,
 *      empty, or a random subset of its pages, B's length; only in A (removed since): as in A; a path whose
 *      file was replaced (another inode or birth time): A's file whole, or B's partly.
 *   4. Each image is opened by a fresh forked process with the same config and checked against the ledger
 *      of acknowledged states: bm_open 0; untouched keys exactly as flushed; written keys as flushed or as a
 *      state acknowledged after the flush (or the one call in flight when the child died); no BM_ECORRUPT;
 *      bm_count == keys visited by bm_foreach, bm_foreach 0, bm_verify 0; bm_close, bm_open, every key the
 *      same. The first violation is reported with the run and image seeds.
 *
 * Tests: `sigkill` opens state B as it is (every acknowledged op there, the op in flight all or nothing) and
 * state A as it is (exactly the flushed state); `clean` closes the map instead of being killed and opens B
 * (exactly the last state) and A; `powerloss` checks composed images (BM_POWERLOSS_IMAGES, default 320).
 * Seeds are fixed (BM_TEST_SEED overrides); the kill instant is timing, not seed.
 */
#include "persist_util.h"

#include <dirent.h>
#include <ftw.h>
#include <poll.h>
#include <stdarg.h>

#define PL_MAX_KEYS 65536u
#define PL_MAX_N 40u
#define PL_MAX_ES 24u
#define PL_PAGE 4096
#define PL_SECTOR 512
#define PL_PATH 1024
#define PL_DEFAULT_SEED 0x706f7765726c6f73ull /* "powerlos" */
#define PL_CHECK_DEADLINE_S 30 /* an image whose checker runs longer counts as hung */

/* ---- Shapes ---------------------------------------------------------------------------------------- */

struct pl_shape {
    uint32_t elem_size, drives, buckets;
    int restart_in; /* drive index holding the restart file, or -1: its own directory r/ */
};

static const struct pl_shape pl_shapes[] = {
    {8, 1, 1, 0}, {24, 1, 4, -1}, {8, 2, 2, -1}, {24, 2, 16, 1},
    {8, 3, 8, 2}, {24, 3, 16, -1}, {8, 1, 16, -1}, {24, 3, 1, 0},
};
#define PL_NSHAPES (sizeof(pl_shapes) / sizeof(pl_shapes[0]))

/* snprintf for paths: a path that does not fit is a bug of this test, not a case to go on with. */
static void pl_fmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pl_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "powerloss: path too long: %s...\n", buf);
        abort();
    }
}

struct pl_tree {
    char drive[3][PL_PATH], restart[PL_PATH];
    const char *drives[3];
    bm_config cfg;
};

static void pl_tree_init(struct pl_tree *t, const char *base, const struct pl_shape *sh)
{
    memset(t, 0, sizeof(*t));
    for (uint32_t i = 0; i < sh->drives; i++) {
        pl_fmt(t->drive[i], PL_PATH, "%s/d%u", base, i);
        t->drives[i] = t->drive[i];
    }
    if (sh->restart_in >= 0)
        pl_fmt(t->restart, PL_PATH, "%s/d%d/restart", base, sh->restart_in);
    else
        pl_fmt(t->restart, PL_PATH, "%s/r/restart", base);
    t->cfg = (bm_config){.elem_size = sh->elem_size, .max_buckets = sh->buckets, .drives = t->drives,
                         .n_drives = sh->drives, .restart_path = t->restart};
}

static void pl_mkdirs(const char *base, const struct pl_shape *sh)
{
    char p[PL_PATH];
    ck_assert_int_eq(mkdir(base, 0755), 0);
    for (uint32_t i = 0; i < sh->drives; i++) {
        pl_fmt(p, sizeof(p), "%s/d%u", base, i);
        ck_assert_int_eq(mkdir(p, 0755), 0);
    }
    if (sh->restart_in < 0) {
        pl_fmt(p, sizeof(p), "%s/r", base);
        ck_assert_int_eq(mkdir(p, 0755), 0);
    }
}

/* ---- Keys, values, states -------------------------------------------------------------------------- */

static uint64_t pl_rand(uint64_t *s) { return pu_mix(s); }
static int pl_chance(uint64_t *s, double p) { return (double)(pl_rand(s) >> 11) * 0x1.0p-53 < p; }

/* Bytes 0..7 spread keys over buckets; bytes 8..15 carry the key's number so that a visited key decodes. */
static bm_key pl_key(uint32_t idx)
{
    bm_key k;
    uint64_t s = idx * 0x9E3779B97F4A7C15ull + 7;
    uint64_t w0 = pl_rand(&s), w2 = pl_rand(&s), w3 = pl_rand(&s);
    uint64_t w1 = (uint64_t)idx | ((uint64_t)(idx ^ 0xA5A5A5A5u) << 32);
    memcpy(k.bytes, &w0, 8);
    memcpy(k.bytes + 8, &w1, 8);
    memcpy(k.bytes + 16, &w2, 8);
    memcpy(k.bytes + 24, &w3, 8);
    return k;
}

/* The key's number, or -1 for a key this harness never made. */
static int64_t pl_key_idx(const bm_key *k)
{
    uint64_t w1;
    memcpy(&w1, k->bytes + 8, 8);
    uint32_t idx = (uint32_t)w1;
    if ((uint32_t)(w1 >> 32) != (idx ^ 0xA5A5A5A5u) || idx >= PL_MAX_KEYS)
        return -1;
    bm_key ref = pl_key(idx);
    return memcmp(&ref, k, sizeof(ref)) ? -1 : (int64_t)idx;
}

/* Element j of (key, version): the first word encodes all three, the rest is a hash of the first. */
#define PL_ELEM_MAGIC 0x5A00000000000000ull
static void pl_elem(uint8_t *out, uint32_t es, uint32_t key, uint64_t ver, uint32_t j)
{
    uint64_t w = PL_ELEM_MAGIC ^ ((uint64_t)key << 40) ^ ((ver & 0xFFFFFFFull) << 12) ^ j;
    uint64_t s = w;
    for (uint32_t o = 0; o < es; o += 8) {
        uint64_t v = o ? pl_rand(&s) : w;
        memcpy(out + o, &v, es - o < 8 ? es - o : 8);
    }
}

struct pl_state {
    uint8_t present;
    uint32_t n;
    uint64_t ver, rc;
};

static int pl_state_eq(const struct pl_state *a, const struct pl_state *b)
{
    if (a->present != b->present)
        return 0;
    return !a->present || (a->n == b->n && a->ver == b->ver && a->rc == b->rc);
}

static int pl_fmt_state(char *buf, size_t cap, const struct pl_state *s)
{
    if (!s->present)
        return snprintf(buf, cap, "absent");
    return snprintf(buf, cap, "v%" PRIu64 " n=%u rc=%" PRIu64, s->ver, s->n, s->rc);
}

enum { PL_INTENT = 1, PL_ACK, PL_READY, PL_FLUSHED, PL_PLAN, PL_GROWN, PL_DONE, PL_CLOSED, PL_FAIL };

struct pl_rec {
    uint32_t key;
    uint8_t kind;
    uint8_t op;
    uint8_t pad[2];
    int32_t err;
    struct pl_state s;
};

/* ---- The child: random operations on a persistent map ---------------------------------------------- */

enum { PL_END_KILL, PL_END_CLEAN };

struct pl_run {
    const struct pl_shape *sh;
    uint64_t seed;
    int grow;  /* after the flush: new keys until every bucket's index and a data file grew */
    int end;   /* PL_END_KILL or PL_END_CLEAN */
};

static struct pl_state c_model[PL_MAX_KEYS];

static void c_send(int fd, uint32_t key, int kind, int op, int err, const struct pl_state *s)
{
    struct pl_rec r;
    memset(&r, 0, sizeof(r));
    r.key = key;
    r.kind = (uint8_t)kind;
    r.op = (uint8_t)op;
    r.err = err;
    if (s)
        r.s = *s;
    if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
        _exit(4);
}

static _Noreturn void c_fail(int fd, uint32_t key, int op, int err)
{
    c_send(fd, key, PL_FAIL, op, err, NULL);
    _exit(5);
}

struct c_upd {
    const struct pl_shape *sh;
    uint32_t key;
    struct pl_state want, expect;
    uint8_t e[PL_MAX_N * PL_MAX_ES];
    int wrong;
};

static int c_upd_fn(const bm_value *cur, bm_value *out, void *arg)
{
    struct c_upd *c = arg;
    if (!!cur != c->expect.present || (cur && (cur->n != c->expect.n || cur->refcount != c->expect.rc)))
        c->wrong = 1;
    if (!c->want.present)
        return BM_DELETE;
    for (uint32_t j = 0; j < c->want.n; j++)
        pl_elem(c->e + j * c->sh->elem_size, c->sh->elem_size, c->key, c->want.ver, j);
    out->elems = c->e;
    out->n = c->want.n;
    out->refcount = c->want.rc;
    return BM_WRITE;
}

static uint32_t c_pick_n(uint64_t *s, uint32_t grow_n)
{
    if (grow_n && pl_chance(s, 0.8))
        return grow_n;
    if (pl_chance(s, 0.3))
        return (uint32_t)(pl_rand(s) % 2); /* inline */
    return 2 + (uint32_t)(pl_rand(s) % (PL_MAX_N - 1));
}

static uint64_t c_pick_rc(uint64_t *s)
{
    uint64_t r = pl_rand(s) % 10;
    return r < 7 ? 1 : r < 9 ? pl_rand(s) % 6 : UINT64_MAX - pl_rand(s) % 3;
}

/* One random operation on key `key` (a fresh key when key == nkeys). Returns 0 when it was skipped. */
static int c_op(bm_map *m, const struct pl_shape *sh, int fd, uint64_t *s, uint32_t key, uint64_t *next_ver,
                uint32_t grow_n, int insert_only)
{
    struct pl_state *cur = &c_model[key], want = *cur;
    bm_key k = pl_key(key);
    unsigned r = insert_only ? 0 : (unsigned)(pl_rand(s) % 100);
    int op, err;
    uint64_t nrc = 0;
    uint8_t e[PL_MAX_N * PL_MAX_ES];
    if (r < 35) { /* insert (upsert) a new version */
        op = 0;
        want = (struct pl_state){1, c_pick_n(s, grow_n), (*next_ver)++, c_pick_rc(s)};
        for (uint32_t j = 0; j < want.n; j++)
            pl_elem(e + j * sh->elem_size, sh->elem_size, key, want.ver, j);
        c_send(fd, key, PL_INTENT, op, 0, &want);
        err = bm_insert(m, &k, e, want.n, want.rc);
    } else if (r < 50) { /* read-modify-write: a new version, or a delete */
        op = 1;
        if (cur->present && pl_chance(s, 0.2))
            want = (struct pl_state){0, 0, 0, 0};
        else
            want = (struct pl_state){1, c_pick_n(s, grow_n), (*next_ver)++, cur->present ? cur->rc : 1};
        c_send(fd, key, PL_INTENT, op, 0, &want);
        struct c_upd c = {.sh = sh, .key = key, .want = want, .expect = *cur};
        err = bm_update(m, &k, c_upd_fn, &c);
        if (!err && c.wrong)
            c_fail(fd, key, op, -1);
    } else if (r < 65) { /* delete */
        op = 2;
        if (!cur->present)
            return 0;
        want = (struct pl_state){0, 0, 0, 0};
        c_send(fd, key, PL_INTENT, op, 0, &want);
        err = bm_delete(m, &k);
    } else if (r < 83) { /* addref */
        op = 3;
        if (!cur->present || cur->rc == UINT64_MAX)
            return 0;
        want.rc++;
        c_send(fd, key, PL_INTENT, op, 0, &want);
        err = bm_addref(m, &k, &nrc);
        if (!err && nrc != want.rc)
            c_fail(fd, key, op, -2);
    } else { /* unref */
        op = 4;
        if (!cur->present || cur->rc == 0)
            return 0;
        want.rc--;
        c_send(fd, key, PL_INTENT, op, 0, &want);
        err = bm_unref(m, &k, &nrc);
        if (!err && nrc != want.rc)
            c_fail(fd, key, op, -2);
    }
    if (err)
        c_fail(fd, key, op, err);
    *cur = want;
    c_send(fd, key, PL_ACK, op, 0, &want);
    return 1;
}

struct c_sizes {
    uint64_t idx;
    uint64_t data[32];
};

static void c_sizes_get(bm_map *m, uint32_t b, struct c_sizes *z)
{
    bm_bucket_info bi;
    memset(z, 0, sizeof(*z));
    if (bm_bucket_info_get(m, b, &bi) || !bi.allocated)
        return;
    z->idx = bi.index.cells;
    for (uint32_t d = 0; d < bi.n_data && d < 32; d++)
        if (bi.data[d].cls < 32)
            z->data[bi.data[d].cls] = bi.data[d].cells;
}

/* Every bucket's index and at least one of its data files hold more cells than at the flush. */
static int c_all_grown(bm_map *m, uint32_t buckets, const struct c_sizes *at_flush)
{
    for (uint32_t b = 0; b < buckets; b++) {
        struct c_sizes z;
        c_sizes_get(m, b, &z);
        int data = 0;
        for (int c = 0; c < 32; c++)
            data |= z.data[c] > at_flush[b].data[c];
        if (z.idx <= at_flush[b].idx || !data)
            return 0;
    }
    return 1;
}

static _Noreturn void pl_child(const struct pl_run *run, const struct pl_tree *t, int wfd, int rfd)
{
    const struct pl_shape *sh = run->sh;
    uint64_t s = run->seed;
    bm_map *m;
    memset(c_model, 0, sizeof(c_model));
    int err = bm_open(&t->cfg, &m);
    if (err)
        c_fail(wfd, 0, 9, err);
    c_send(wfd, 0, PL_READY, 0, 0, NULL);
    uint64_t ver = 1;
    uint32_t nkeys = 0;
    /* Phase 1: 30..50 new keys per bucket mixed with operations on the existing ones. */
    uint32_t n1 = sh->buckets * (30 + (uint32_t)(pl_rand(&s) % 21));
    while (nkeys < n1) {
        if (nkeys == 0 || pl_chance(&s, 0.6))
            c_op(m, sh, wfd, &s, nkeys++, &ver, 0, 1);
        else
            c_op(m, sh, wfd, &s, (uint32_t)(pl_rand(&s) % nkeys), &ver, 0, 0);
    }
    err = bm_flush(m);
    if (err)
        c_fail(wfd, 0, 10, err);
    struct c_sizes *at_flush = calloc(sh->buckets, sizeof(*at_flush));
    if (!at_flush)
        c_fail(wfd, 0, 11, -ENOMEM);
    for (uint32_t b = 0; b < sh->buckets; b++)
        c_sizes_get(m, b, &at_flush[b]);
    c_send(wfd, 0, PL_FLUSHED, 0, 0, NULL);
    char go;
    ssize_t r;
    while ((r = read(rfd, &go, 1)) < 0 && errno == EINTR)
        ;
    if (r != 1)
        _exit(6);
    /* Phase 2: operations on existing keys (about a third of them touched), and in grow runs new keys whose
     * values mostly fall in one small size class, until every bucket's files have grown. */
    uint32_t plan = run->grow ? sh->buckets * 200 : n1 / 2 + (uint32_t)(pl_rand(&s) % (n1 / 2 + 1));
    c_send(wfd, plan, PL_PLAN, 0, 0, NULL);
    uint32_t grow_n = 2 + (uint32_t)(pl_rand(&s) % 3);
    int grown = 0;
    for (uint32_t i = 0; i < plan || (run->grow && !grown && i < 20 * plan); i++) {
        if (run->grow && !grown && pl_chance(&s, 0.8) && nkeys < PL_MAX_KEYS)
            c_op(m, sh, wfd, &s, nkeys++, &ver, grow_n, 1);
        else if (!run->grow && nkeys < PL_MAX_KEYS && pl_chance(&s, 0.05))
            c_op(m, sh, wfd, &s, nkeys++, &ver, 0, 1);
        else
            c_op(m, sh, wfd, &s, (uint32_t)(pl_rand(&s) % nkeys), &ver, 0, 0);
        if (run->grow && !grown && i % 16 == 15 && c_all_grown(m, sh->buckets, at_flush)) {
            grown = 1;
            c_send(wfd, 0, PL_GROWN, 0, 0, NULL);
        }
    }
    free(at_flush);
    if (run->end == PL_END_CLEAN) {
        bm_close(m);
        c_send(wfd, 0, PL_CLOSED, 0, 0, NULL);
        _exit(0);
    }
    c_send(wfd, 0, PL_DONE, 0, 0, NULL);
    while ((r = read(rfd, &go, 1)) < 0 && errno == EINTR)
        ;
    _exit(7); /* the parent kills us before that */
}

/* ---- The parent's ledger ----------------------------------------------------------------------------- */

struct pl_post { /* a state acknowledged after the flush */
    struct pl_state s;
    uint32_t next; /* index into post[] + 1 of the key's next one, 0: none */
};

static struct {
    uint32_t nkeys;
    struct pl_state last[PL_MAX_KEYS], flushed[PL_MAX_KEYS];
    uint8_t touched[PL_MAX_KEYS]; /* an intent after the flush */
    uint32_t head[PL_MAX_KEYS], tail[PL_MAX_KEYS];
    struct pl_post *post;
    uint32_t npost, cap;
    int flushed_seen, grown_seen, done_seen, closed_seen;
    int has_inflight;
    uint32_t inflight_key;
    struct pl_state inflight;
    uint64_t acks_after_flush, plan;
} L;

static void pl_ledger_reset(void)
{
    free(L.post);
    memset(&L, 0, sizeof(L));
}

static void pl_ledger_add(const struct pl_rec *r, char *fail, size_t cap)
{
    switch (r->kind) {
    case PL_INTENT:
        ck_assert_uint_lt(r->key, PL_MAX_KEYS);
        L.has_inflight = 1;
        L.inflight_key = r->key;
        L.inflight = r->s;
        if (L.flushed_seen)
            L.touched[r->key] = 1;
        if (r->key >= L.nkeys)
            L.nkeys = r->key + 1;
        break;
    case PL_ACK:
        L.has_inflight = 0;
        L.last[r->key] = r->s;
        if (!L.flushed_seen)
            break;
        L.acks_after_flush++;
        if (L.npost == L.cap) {
            L.cap = L.cap ? 2 * L.cap : 4096;
            L.post = realloc(L.post, L.cap * sizeof(*L.post));
            ck_assert_ptr_nonnull(L.post);
        }
        L.post[L.npost] = (struct pl_post){r->s, 0};
        if (L.tail[r->key])
            L.post[L.tail[r->key] - 1].next = L.npost + 1;
        else
            L.head[r->key] = L.npost + 1;
        L.tail[r->key] = ++L.npost;
        break;
    case PL_FLUSHED:
        L.flushed_seen = 1;
        memcpy(L.flushed, L.last, sizeof(L.flushed));
        break;
    case PL_PLAN:
        L.plan = r->key;
        break;
    case PL_GROWN:
        L.grown_seen = 1;
        break;
    case PL_DONE:
        L.done_seen = 1;
        break;
    case PL_CLOSED:
        L.closed_seen = 1;
        break;
    case PL_FAIL:
        if (!fail[0])
            snprintf(fail, cap, "the workload child failed: op %u on key %u returned %d (%s)", r->op, r->key,
                     r->err, r->err < -9000 ? bm_strerror(r->err) : r->err == -1 ? "bm_update saw a wrong value"
                                                                    : "wrong new refcount");
        break;
    default:
        break;
    }
}

/* ---- Snapshots and images ----------------------------------------------------------------------------- */

struct pl_file {
    char rel[256];
    int is_dir;
    off_t size;
    uint64_t ino, btime;
};

struct pl_snap {
    struct pl_file *f;
    size_t n, cap;
};

static void pl_snap_free(struct pl_snap *s)
{
    free(s->f);
    memset(s, 0, sizeof(*s));
}

static int pl_page_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Copies the regular file src to dst, leaving all-zero pages as holes; returns src's size. */
static off_t pl_copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY);
    ck_assert_msg(in >= 0, "open %s: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0644);
    ck_assert_msg(out >= 0, "create %s: %s", dst, strerror(errno));
    uint8_t buf[PL_PAGE];
    off_t off = 0;
    ssize_t n;
    while ((n = pread(in, buf, sizeof(buf), off)) > 0) {
        if (!pl_page_zero(buf, (size_t)n))
            ck_assert_int_eq(pwrite(out, buf, (size_t)n, off), n);
        off += n;
    }
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(ftruncate(out, off), 0);
    close(out);
    close(in);
    return off;
}

static void pl_snap_add(struct pl_snap *s, const struct pl_file *f)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->f = realloc(s->f, s->cap * sizeof(*s->f));
        ck_assert_ptr_nonnull(s->f);
    }
    s->f[s->n++] = *f;
}

/* Copies the tree src/rel to dst/rel recursively and lists what it copied in s. */
static void pl_copy_tree(const char *src, const char *dst, const char *rel, struct pl_snap *s)
{
    char sp[PL_PATH], dp[PL_PATH];
    pl_fmt(sp, sizeof(sp), "%s%s%s", src, *rel ? "/" : "", rel);
    DIR *d = opendir(sp);
    ck_assert_msg(d != NULL, "opendir %s: %s", sp, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        struct pl_file f;
        memset(&f, 0, sizeof(f));
        ck_assert_int_lt(snprintf(f.rel, sizeof(f.rel), "%s%s%s", rel, *rel ? "/" : "", de->d_name),
                         (int)sizeof(f.rel));
        pl_fmt(sp, sizeof(sp), "%s/%s", src, f.rel);
        pl_fmt(dp, sizeof(dp), "%s/%s", dst, f.rel);
        struct statx stx;
        ck_assert_msg(statx(AT_FDCWD, sp, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_BTIME, &stx) == 0,
                      "statx %s: %s", sp, strerror(errno));
        f.ino = stx.stx_ino;
        f.btime = (stx.stx_mask & STATX_BTIME) ? (uint64_t)stx.stx_btime.tv_sec * 1000000000u + stx.stx_btime.tv_nsec
                                               : 0;
        if (S_ISDIR(stx.stx_mode)) {
            f.is_dir = 1;
            ck_assert_int_eq(mkdir(dp, 0755), 0);
            pl_snap_add(s, &f);
            pl_copy_tree(src, dst, f.rel, s);
        } else if (S_ISREG(stx.stx_mode)) {
            f.size = pl_copy_file(sp, dp);
            pl_snap_add(s, &f);
        } /* nothing else is expected in a map's directories; a symlink or fifo is left out */
    }
    closedir(d);
}

static int pl_file_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pl_file *)a)->rel, ((const struct pl_file *)b)->rel);
}

static void pl_snapshot(const char *src, const char *dst, struct pl_snap *s)
{
    pl_snap_free(s);
    ck_assert_int_eq(mkdir(dst, 0755), 0);
    pl_copy_tree(src, dst, "", s);
    qsort(s->f, s->n, sizeof(*s->f), pl_file_cmp);
}

struct pl_compose_stats {
    uint32_t both, changed, pages_a, pages_b, torn, len_a, len_b, only_b_absent, only_b_empty, only_b_partial,
        only_a, replaced_a, replaced_b;
};

enum { PL_IMG_MIX, PL_IMG_A, PL_IMG_B };

/* Page p of the file (zeros past its end or in a hole). */
static void pl_read_page(int fd, off_t size, off_t p, uint8_t *buf)
{
    memset(buf, 0, PL_PAGE);
    if (fd < 0 || p * PL_PAGE >= size)
        return;
    ssize_t n = pread(fd, buf, PL_PAGE, p * PL_PAGE);
    ck_assert_int_ge(n, 0);
}

/* dst gets B's file with a random subset of its pages (probability keep each), the rest holes, B's length. */
static void pl_partial(const char *bp, off_t bsize, const char *dp, uint64_t *s, double keep)
{
    int in = open(bp, O_RDONLY), out = open(dp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    ck_assert_int_ge(in, 0);
    ck_assert_int_ge(out, 0);
    uint8_t buf[PL_PAGE];
    for (off_t p = 0; p * PL_PAGE < bsize; p++)
        if (pl_chance(s, keep)) {
            pl_read_page(in, bsize, p, buf);
            ck_assert_int_eq(pwrite(out, buf, PL_PAGE, p * PL_PAGE), PL_PAGE);
        }
    ck_assert_int_eq(ftruncate(out, bsize), 0);
    close(out);
    close(in);
}

/* The file both states hold: pages from A or B (probability pb), sometimes torn, the length of either. */
static void pl_mix_file(const char *ap, off_t asize, const char *bp, off_t bsize, const char *dp, uint64_t *s,
                        double pb, double ptear, struct pl_compose_stats *st)
{
    int a = open(ap, O_RDONLY), b = open(bp, O_RDONLY), out = open(dp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    ck_assert_int_ge(a, 0);
    ck_assert_int_ge(b, 0);
    ck_assert_int_ge(out, 0);
    int use_b_len = pl_chance(s, 0.5);
    off_t len = use_b_len ? bsize : asize;
    if (use_b_len)
        st->len_b++;
    else
        st->len_a++;
    uint8_t pa[PL_PAGE], pbuf[PL_PAGE], o[PL_PAGE];
    int changed = asize != bsize;
    for (off_t p = 0; p * PL_PAGE < len; p++) {
        pl_read_page(a, asize, p, pa);
        pl_read_page(b, bsize, p, pbuf);
        int differ = memcmp(pa, pbuf, PL_PAGE) != 0;
        changed |= differ;
        if (!differ) {
            memcpy(o, pa, PL_PAGE);
        } else if (pl_chance(s, ptear)) {
            st->torn++;
            for (int k = 0; k < PL_PAGE / PL_SECTOR; k++)
                memcpy(o + k * PL_SECTOR, (pl_rand(s) & 1 ? pbuf : pa) + k * PL_SECTOR, PL_SECTOR);
        } else if (pl_chance(s, pb)) {
            st->pages_b++;
            memcpy(o, pbuf, PL_PAGE);
        } else {
            st->pages_a++;
            memcpy(o, pa, PL_PAGE);
        }
        if (!pl_page_zero(o, PL_PAGE))
            ck_assert_int_eq(pwrite(out, o, PL_PAGE, p * PL_PAGE), PL_PAGE);
    }
    st->changed += changed;
    ck_assert_int_eq(ftruncate(out, len), 0);
    close(out);
    close(b);
    close(a);
}

/* Builds the image dir from snapshots A (dir ad, list sa) and B, as `mode` says. */
static void pl_compose(const char *ad, const struct pl_snap *sa, const char *bd, const struct pl_snap *sb,
                       const char *dir, int mode, uint64_t seed, struct pl_compose_stats *st)
{
    memset(st, 0, sizeof(*st));
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    if (mode != PL_IMG_MIX) {
        struct pl_snap tmp = {0};
        pl_copy_tree(mode == PL_IMG_A ? ad : bd, dir, "", &tmp);
        pl_snap_free(&tmp);
        return;
    }
    uint64_t s = seed;
    double pb = (double)(pl_rand(&s) % 101) / 100.0; /* this image's share of B pages */
    double ptear = pl_chance(&s, 0.5) ? 0.05 : 0.0;
    char ap[PL_PATH], bp[PL_PATH], dp[PL_PATH];
    size_t i = 0, j = 0;
    while (i < sa->n || j < sb->n) {
        int c = i == sa->n ? 1 : j == sb->n ? -1 : strcmp(sa->f[i].rel, sb->f[j].rel);
        const struct pl_file *fa = c <= 0 ? &sa->f[i] : NULL, *fb = c >= 0 ? &sb->f[j] : NULL;
        i += c <= 0;
        j += c >= 0;
        const struct pl_file *f = fa ? fa : fb;
        pl_fmt(dp, sizeof(dp), "%s/%s", dir, f->rel);
        if (fa)
            pl_fmt(ap, sizeof(ap), "%s/%s", ad, fa->rel);
        if (fb)
            pl_fmt(bp, sizeof(bp), "%s/%s", bd, fb->rel);
        if (f->is_dir || (fa && fb && (fa->is_dir || fb->is_dir))) {
            ck_assert_int_eq(mkdir(dp, 0755), 0); /* sorted: a directory comes before what it holds */
            continue;
        }
        if (fa && fb && fa->ino == fb->ino && fa->btime == fb->btime) {
            st->both++;
            pl_mix_file(ap, fa->size, bp, fb->size, dp, &s, pb, ptear, st);
        } else if (fa && fb) { /* replaced since: the old file whole or the new one partly */
            if (pl_chance(&s, 0.5)) {
                st->replaced_a++;
                pl_copy_file(ap, dp);
            } else {
                st->replaced_b++;
                pl_partial(bp, fb->size, dp, &s, pl_chance(&s, 0.5) ? 1.0 : 0.5);
            }
        } else if (fa) { /* removed since: still there as it was */
            st->only_a++;
            pl_copy_file(ap, dp);
        } else { /* created since: absent, empty, or some of its pages */
            unsigned r = (unsigned)(pl_rand(&s) % 3);
            if (r == 0) {
                st->only_b_absent++;
            } else if (r == 1) {
                st->only_b_empty++;
                int fd = open(dp, O_WRONLY | O_CREAT | O_EXCL, 0644);
                ck_assert_int_ge(fd, 0);
                close(fd);
            } else {
                st->only_b_partial++;
                pl_partial(bp, fb->size, dp, &s, (double)(pl_rand(&s) % 101) / 100.0);
            }
        }
    }
}

/* ---- The checker: a fresh process opens an image and holds it to the contract ------------------------ */

enum {
    PLK_OPEN, PLK_UNTOUCHED, PLK_TOUCHED, PLK_CORRUPT, PLK_FOREIGN, PLK_READERR, PLK_COUNT, PLK_FOREACH,
    PLK_VERIFY, PLK_REOPEN, PLK_REOPEN_DIFF, PLK_HANG, PLK_CRASH, PLK_N
};
static const char *const pl_kind_name[PLK_N] = {
    "bm_open failed", "untouched key wrong", "written key in no acknowledged state", "read BM_ECORRUPT",
    "another key's value", "other read error", "bm_count != bm_foreach visits", "bm_foreach error",
    "bm_verify not clean", "reopen failed", "reopen reads differently", "checker hung", "checker crashed",
};

/* What each key must read as. */
enum { PL_EXPECT_FLUSHED, PL_EXPECT_LAST, PL_EXPECT_SIGKILL, PL_EXPECT_POWERLOSS };

struct pl_result {
    int first; /* first violation's kind, -1: none */
    uint32_t nbad[PLK_N];
    char msg[1024];
    char kmsg[PLK_N][240]; /* the first violation of each kind */
};

struct pl_got {
    int err;
    uint32_t n;
    uint64_t rc, hash;
    int64_t ekey;    /* key encoded in the elements, -1: none / not decodable */
    uint64_t ever;   /* version encoded in the elements */
    int consistent;  /* every element is (ekey, ever, j) */
};

static void pl_read_key(bm_map *m, const struct pl_shape *sh, uint32_t key, struct pl_got *g)
{
    static uint8_t buf[(PL_MAX_N + 24) * PL_MAX_ES];
    uint8_t ref[PL_MAX_ES];
    const uint32_t cap = PL_MAX_N + 24;
    bm_key k = pl_key(key);
    memset(g, 0, sizeof(*g));
    g->ekey = -1;
    g->err = bm_get(m, &k, buf, cap, &g->n, &g->rc);
    if (g->err)
        return;
    uint32_t have = g->n < cap ? g->n : cap;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < (size_t)have * sh->elem_size; i++)
        h = (h ^ buf[i]) * 0x100000001b3ull;
    g->hash = h;
    if (!have)
        return;
    uint64_t w;
    memcpy(&w, buf, 8);
    w ^= PL_ELEM_MAGIC;
    g->ekey = (int64_t)(w >> 40);
    g->ever = (w >> 12) & 0xFFFFFFFull;
    g->consistent = g->n <= cap;
    for (uint32_t j = 0; j < have && g->consistent; j++) {
        pl_elem(ref, sh->elem_size, (uint32_t)g->ekey, g->ever, j);
        g->consistent = !memcmp(ref, buf + (size_t)j * sh->elem_size, sh->elem_size);
    }
}

static int pl_got_is(const struct pl_got *g, uint32_t key, const struct pl_state *s)
{
    if (!s->present)
        return g->err == BM_ENOTFOUND;
    return g->err == 0 && g->n == s->n && g->rc == s->rc &&
           (s->n == 0 || (g->consistent && g->ekey == key && (g->ever & 0xFFFFFFFull) == (s->ver & 0xFFFFFFFull)));
}

static void pl_fmt_got(char *buf, size_t cap, const struct pl_got *g)
{
    if (g->err == BM_ENOTFOUND)
        snprintf(buf, cap, "absent");
    else if (g->err)
        snprintf(buf, cap, "error %d (%s)", g->err, bm_strerror(g->err));
    else if (!g->n)
        snprintf(buf, cap, "n=0 rc=%" PRIu64, g->rc);
    else
        snprintf(buf, cap, "n=%u rc=%" PRIu64 ", elements %s key %" PRId64 " v%" PRIu64, g->n, g->rc,
                 g->consistent ? "of" : "NOT all of (torn/mixed), first one of", g->ekey, g->ever);
}

/* Calls fn(state) for every state key may read as; returns the number of states. */
static int pl_allowed(uint32_t key, int expect, struct pl_state *out, int cap)
{
    int n = 0;
#define PL_ADD(st)                                                                                           \
    do {                                                                                                     \
        int dup_ = 0;                                                                                        \
        for (int q_ = 0; q_ < n; q_++)                                                                       \
            dup_ |= pl_state_eq(&out[q_], &(st));                                                            \
        if (!dup_ && n < cap)                                                                                \
            out[n++] = (st);                                                                                 \
    } while (0)
    switch (expect) {
    case PL_EXPECT_FLUSHED:
        PL_ADD(L.flushed[key]);
        break;
    case PL_EXPECT_LAST:
        PL_ADD(L.last[key]);
        break;
    case PL_EXPECT_SIGKILL:
        PL_ADD(L.last[key]);
        if (L.has_inflight && L.inflight_key == key)
            PL_ADD(L.inflight);
        break;
    default:
        PL_ADD(L.flushed[key]);
        for (uint32_t p = L.head[key]; p; p = L.post[p - 1].next)
            PL_ADD(L.post[p - 1].s);
        if (L.has_inflight && L.inflight_key == key)
            PL_ADD(L.inflight);
        break;
    }
#undef PL_ADD
    return n;
}

struct pl_fe {
    uint64_t visits, unknown;
    int64_t first_unknown;
};

static int pl_fe_fn(const bm_key *k, const bm_value *v, void *arg)
{
    (void)v;
    struct pl_fe *fe = arg;
    fe->visits++;
    int64_t idx = pl_key_idx(k);
    if (idx < 0 || (uint64_t)idx >= L.nkeys) {
        if (!fe->unknown++)
            fe->first_unknown = idx;
    }
    return 0;
}

static void pl_violation(struct pl_result *r, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pl_violation(struct pl_result *r, int kind, const char *fmt, ...)
{
    if (r->nbad[kind]++ && r->first >= 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->kmsg[kind], sizeof(r->kmsg[kind]), fmt, ap);
    va_end(ap);
    if (r->first >= 0)
        return;
    r->first = kind;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
    va_end(ap);
}

struct pl_digest {
    int err;
    uint32_t n;
    uint64_t rc, hash;
};

static void pl_check(const struct pl_shape *sh, const char *dir, int expect, struct pl_result *r)
{
    /* A power loss is followed by a reboot: the library (test build) takes this boot id instead of the
     * kernel's, so it cannot mistake a disk image for a process that was only killed (recovery.c). The
     * checker runs in its own process, so the variable goes nowhere else. */
    if (expect == PL_EXPECT_POWERLOSS || expect == PL_EXPECT_FLUSHED)
        setenv("BM_TEST_BOOT_ID", "bucketmap-powerloss-simulator-reboot", 1);
    struct pl_tree t;
    pl_tree_init(&t, dir, sh);
    memset(r, 0, sizeof(*r));
    r->first = -1;
    bm_map *m = NULL;
    int err = bm_open(&t.cfg, &m);
    if (err) {
        pl_violation(r, PLK_OPEN, "bm_open: %d (%s)", err, bm_strerror(err));
        return;
    }
    struct pl_digest *dg = calloc(L.nkeys ? L.nkeys : 1, sizeof(*dg));
    if (!dg) {
        bm_close(m);
        pl_violation(r, PLK_CRASH, "out of memory");
        return;
    }
    uint64_t present = 0;
    struct pl_state allowed[16];
    char gs[160], es[600];
    for (uint32_t key = 0; key < L.nkeys; key++) {
        struct pl_got g;
        pl_read_key(m, sh, key, &g);
        dg[key] = (struct pl_digest){g.err, g.n, g.rc, g.hash};
        present += g.err == 0;
        int na = pl_allowed(key, expect, allowed, 16), ok = 0;
        for (int q = 0; q < na && !ok; q++)
            ok = pl_got_is(&g, key, &allowed[q]);
        if (ok)
            continue;
        int touched = expect == PL_EXPECT_POWERLOSS ? L.touched[key]
                      : expect == PL_EXPECT_SIGKILL ? L.has_inflight && L.inflight_key == key
                                                    : 0;
        int kind = g.err == BM_ECORRUPT                                ? PLK_CORRUPT
                   : g.err && g.err != BM_ENOTFOUND                    ? PLK_READERR
                   : g.err == 0 && g.ekey >= 0 && g.ekey != (int64_t)key ? PLK_FOREIGN
                   : touched                                           ? PLK_TOUCHED
                                                                       : PLK_UNTOUCHED;
        pl_fmt_got(gs, sizeof(gs), &g);
        int o = 0;
        for (int q = 0; q < na && o < (int)sizeof(es) - 64; q++) {
            o += snprintf(es + o, sizeof(es) - (size_t)o, "%s", q ? " | " : "");
            o += pl_fmt_state(es + o, sizeof(es) - (size_t)o, &allowed[q]);
        }
        if (na == 16)
            snprintf(es + o, sizeof(es) - (size_t)o, " | ...");
        pl_violation(r, kind, "key %u (%s since the flush): got %s; expected %s%s", key,
                     L.touched[key] ? "written" : "not written", gs, na > 1 ? "one of: " : "", es);
    }
    uint64_t count = bm_count(m);
    struct pl_fe fe = {0, 0, -1};
    int fe_err = bm_foreach(m, pl_fe_fn, &fe);
    if (fe_err)
        pl_violation(r, PLK_FOREACH, "bm_foreach returned %d (%s) after %" PRIu64 " visits", fe_err,
                     bm_strerror(fe_err), fe.visits);
    if (fe.unknown)
        pl_violation(r, PLK_FOREACH, "bm_foreach visited %" PRIu64 " keys this test never wrote (first: %" PRId64 ")",
                     fe.unknown, fe.first_unknown);
    if (count != fe.visits || count != present)
        pl_violation(r, PLK_COUNT, "bm_count %" PRIu64 ", bm_foreach visited %" PRIu64 ", bm_get found %" PRIu64,
                     count, fe.visits, present);
    bm_verify_report vr;
    memset(&vr, 0, sizeof(vr));
    err = bm_verify(m, &vr);
    if (err)
        pl_violation(r, PLK_VERIFY,
                     "bm_verify %d (%s): entries %" PRIu64 ", bad entry sums %" PRIu64 ", bad cells %" PRIu64
                     ", bad refs %" PRIu64 ", misplaced %" PRIu64 ", orphan cells %" PRIu64
                     ", count mismatches %" PRIu64,
                     err, bm_strerror(err), vr.entries, vr.bad_entry_sums, vr.bad_cells, vr.bad_refs, vr.misplaced,
                     vr.orphan_cells, vr.count_mismatches);
    bm_close(m);
    m = NULL;
    err = bm_open(&t.cfg, &m);
    if (err) {
        pl_violation(r, PLK_REOPEN, "bm_open after bm_close: %d (%s)", err, bm_strerror(err));
    } else {
        for (uint32_t key = 0; key < L.nkeys; key++) {
            struct pl_got g;
            pl_read_key(m, sh, key, &g);
            struct pl_digest d = {g.err, g.n, g.rc, g.hash};
            if (memcmp(&d, &dg[key], sizeof(d))) {
                pl_fmt_got(gs, sizeof(gs), &g);
                pl_violation(r, PLK_REOPEN_DIFF,
                             "key %u after bm_close + bm_open: got %s; the first open read err %d n=%u rc=%" PRIu64,
                             key,
                             gs, dg[key].err, dg[key].n, dg[key].rc);
            }
        }
        bm_close(m);
    }
    free(dg);
}

/* Runs pl_check in a fresh process (with a deadline: a hang is a violation too). */
static void pl_check_forked(const struct pl_shape *sh, const char *dir, int expect, struct pl_result *r)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        struct pl_result res;
        pl_check(sh, dir, expect, &res);
        ssize_t w = write(p[1], &res, sizeof(res));
        close(p[1]);
        _exit(w == (ssize_t)sizeof(res) ? 0 : 1);
    }
    close(p[1]);
    memset(r, 0, sizeof(*r));
    size_t got = 0;
    struct pollfd pfd = {p[0], POLLIN, 0};
    int hung = 0;
    while (got < sizeof(*r)) {
        int pr = poll(&pfd, 1, PL_CHECK_DEADLINE_S * 1000);
        if (pr == 0) {
            hung = 1;
            break;
        }
        if (pr < 0 && errno == EINTR)
            continue;
        ssize_t n = read(p[0], (char *)r + got, sizeof(*r) - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (hung)
        kill(pid, SIGKILL);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    close(p[0]);
    if (got == sizeof(*r) && WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return;
    memset(r, 0, sizeof(*r));
    r->first = hung ? PLK_HANG : PLK_CRASH;
    r->nbad[r->first] = 1;
    if (hung)
        snprintf(r->msg, sizeof(r->msg), "the checker did not finish in %d s (killed)", PL_CHECK_DEADLINE_S);
    else
        snprintf(r->msg, sizeof(r->msg), "the checker died: %s %d", WIFSIGNALED(st) ? "signal" : "exit status",
                 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

/* ---- Driving runs ------------------------------------------------------------------------------------ */

struct pl_totals {
    uint32_t runs, images, passed, failed, kills_mid, kills_done, grown_runs, selftests;
    uint32_t first_kind[PLK_N], images_with[PLK_N];
    uint64_t keys_bad[PLK_N];
    char example[PLK_N][320]; /* the first of each kind seen in any image, with its image seed */
    uint32_t printed;
    char first_fail[2400];
};

static char pl_work[PL_PATH], pl_live[PL_PATH], pl_a[PL_PATH], pl_b[PL_PATH], pl_img[PL_PATH];

static int pl_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path))
        fprintf(stderr, "powerloss: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

/* Removes a tree this test made (no mounts below it). */
static void pl_rm(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        nftw(path, pl_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void pl_dirs(void)
{
    pl_fmt(pl_work, sizeof(pl_work), "%s/pl", pu_root);
    mkdir(pl_work, 0755);
    pl_fmt(pl_live, sizeof(pl_live), "%s/live", pl_work);
    pl_fmt(pl_a, sizeof(pl_a), "%s/A", pl_work);
    pl_fmt(pl_b, sizeof(pl_b), "%s/B", pl_work);
    pl_fmt(pl_img, sizeof(pl_img), "%s/img", pl_work);
}

/* Reads one record (blocking up to timeout_ms). 1: got one, 0: EOF, -1: timeout. */
static int pl_read_rec(int fd, struct pl_rec *r, int timeout_ms)
{
    size_t got = 0;
    while (got < sizeof(*r)) {
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return -1;
        ssize_t n = read(fd, (char *)r + got, sizeof(*r) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ck_assert_uint_eq(got, 0);
            return 0;
        }
        got += (size_t)n;
    }
    return 1;
}

/* One run: the workload child, snapshot A at the flush, snapshot B after the kill (or the clean close). */
static void pl_do_run(const struct pl_run *run, struct pl_snap *sa, struct pl_snap *sb, struct pl_totals *tot)
{
    pl_ledger_reset();
    pl_rm(pl_live);
    pl_rm(pl_a);
    pl_rm(pl_b);
    pl_mkdirs(pl_live, run->sh);
    struct pl_tree t;
    pl_tree_init(&t, pl_live, run->sh);
    int c2p[2], p2c[2];
    ck_assert_int_eq(pipe(c2p), 0);
    ck_assert_int_eq(pipe(p2c), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(c2p[0]);
        close(p2c[1]);
        pl_child(run, &t, c2p[1], p2c[0]);
    }
    close(c2p[1]);
    close(p2c[0]);
    uint64_t ks = run->seed ^ 0x6b696c6cull; /* the kill point's own stream */
    int kill_after_done = pl_chance(&ks, run->grow ? 0.5 : 0.25);
    uint64_t kill_frac = pl_rand(&ks) % 1000;
    uint64_t kill_at = UINT64_MAX;
    char fail[512] = "";
    int killed = 0, st = 0;
    struct pl_rec r;
    for (;;) {
        int rr = pl_read_rec(c2p[0], &r, 60000);
        if (rr <= 0) {
            if (rr < 0)
                snprintf(fail, sizeof(fail), "the workload child sent nothing for 60 s");
            break;
        }
        pl_ledger_add(&r, fail, sizeof(fail));
        if (r.kind == PL_FAIL)
            break;
        if (r.kind == PL_FLUSHED) {
            /* The child now blocks in read(); stop it anyway (its library threads too) while copying A. */
            ck_assert_int_eq(kill(pid, SIGSTOP), 0);
            ck_assert_int_eq(waitpid(pid, &st, WUNTRACED), pid);
            ck_assert(WIFSTOPPED(st));
            pl_snapshot(pl_live, pl_a, sa);
            ck_assert_int_eq(kill(pid, SIGCONT), 0);
            ck_assert_int_eq(write(p2c[1], "g", 1), 1);
        } else if (r.kind == PL_PLAN) {
            if (!kill_after_done && run->end == PL_END_KILL)
                kill_at = L.plan * kill_frac / 1000;
        } else if ((r.kind == PL_ACK && L.flushed_seen && L.acks_after_flush >= kill_at) || r.kind == PL_DONE) {
            kill(pid, SIGKILL);
            killed = 1;
            if (r.kind == PL_DONE)
                tot->kills_done++;
            else
                tot->kills_mid++;
            break;
        } else if (r.kind == PL_CLOSED) {
            break;
        }
    }
    if (!killed && run->end == PL_END_KILL)
        kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    /* Everything the child sent before it died. */
    while (pl_read_rec(c2p[0], &r, 5000) > 0)
        pl_ledger_add(&r, fail, sizeof(fail));
    close(c2p[0]);
    close(p2c[1]);
    ck_assert_msg(!fail[0], "run seed 0x%" PRIx64 ": %s", run->seed, fail);
    ck_assert_msg(L.flushed_seen, "run seed 0x%" PRIx64 ": the child never reached its flush (status 0x%x)",
                  run->seed, st);
    if (run->end == PL_END_CLEAN)
        ck_assert_msg(L.closed_seen && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "run seed 0x%" PRIx64 ": the child did not close cleanly (status 0x%x)", run->seed, st);
    else
        ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "run seed 0x%" PRIx64 ": child status 0x%x",
                      run->seed, st);
    if (run->end == PL_END_CLEAN)
        L.has_inflight = 0;
    tot->grown_runs += L.grown_seen;
    tot->runs++;
    pl_snapshot(pl_live, pl_b, sb);
    pl_rm(pl_live);
}

/* Composes one image, checks it in a fresh process and counts the result in tot (NULL: the harness's
 * self-test, not counted). Returns the first violation's kind, -1 when the image passed. */
static int pl_image(const struct pl_run *run, int shape_no, const struct pl_snap *sa, const struct pl_snap *sb,
                    int mode, int expect, uint64_t img_seed, struct pl_totals *tot)
{
    static const char *const mode_name[] = {"mixed", "all-A", "all-B"};
    struct pl_compose_stats cs;
    pl_rm(pl_img);
    pl_compose(pl_a, sa, pl_b, sb, pl_img, mode, img_seed, &cs);
    struct pl_result res;
    pl_check_forked(run->sh, pl_img, expect, &res);
    /* BM_POWERLOSS_KEEP=DIR keeps the first failing image (and its A and B) for a look with bmctl. */
    static int kept;
    const char *keep = getenv("BM_POWERLOSS_KEEP");
    if (tot && res.first >= 0 && keep && !kept) {
        char cmd[3 * PL_PATH + 64];
        pl_fmt(cmd, sizeof(cmd), "mkdir -p '%s' && cp -a '%s' '%s' '%s' '%s/'", keep, pl_img, pl_a, pl_b, keep);
        kept = 1;
        if (system(cmd) != 0)
            fprintf(stderr, "powerloss: could not keep the image in %s\n", keep);
        else
            fprintf(stderr, "powerloss: kept the first failing image (img/, A/, B/) in %s\n", keep);
    }
    pl_rm(pl_img);
    if (!tot)
        return res.first;
    tot->images++;
    if (res.first < 0) {
        tot->passed++;
        return -1;
    }
    tot->failed++;
    tot->first_kind[res.first]++;
    for (int k = 0; k < PLK_N; k++) {
        tot->images_with[k] += res.nbad[k] > 0;
        tot->keys_bad[k] += res.nbad[k];
        if (res.nbad[k] && !tot->example[k][0])
            snprintf(tot->example[k], sizeof(tot->example[k]), "image seed 0x%" PRIx64 ": %.280s", img_seed,
                     res.kmsg[k]);
    }
    char line[2400], more[256] = "";
    int o = 0;
    for (int k = 0; k < PLK_N; k++)
        if (res.nbad[k] && o < (int)sizeof(more) - 40)
            o += snprintf(more + o, sizeof(more) - (size_t)o, "%s%u %s", o ? ", " : "", res.nbad[k],
                          pl_kind_name[k]);
    const struct pl_shape *sh = run->sh;
    snprintf(line, sizeof(line),
             "shape %d (elem %u, %u drive%s, %u bucket%s, restart %s) run seed 0x%" PRIx64 " %s image seed 0x%" PRIx64
             " (files: %u in both [%u changed; pages %u A, %u B, %u torn], %u only in A, only in B %u absent / %u empty"
             " / %u partial, replaced %u old / %u new; %" PRIu64 " ops acknowledged after the flush%s): %s: %s"
             " [all: %s]",
             shape_no, sh->elem_size, sh->drives, sh->drives > 1 ? "s" : "", sh->buckets, sh->buckets > 1 ? "s" : "",
             sh->restart_in >= 0 ? "in a drive" : "outside", run->seed, mode_name[mode], img_seed, cs.both, cs.changed,
             cs.pages_a, cs.pages_b, cs.torn, cs.only_a, cs.only_b_absent, cs.only_b_empty, cs.only_b_partial,
             cs.replaced_a, cs.replaced_b, L.acks_after_flush, L.has_inflight ? ", one in flight" : "",
             pl_kind_name[res.first], res.msg, more);
    if (!tot->first_fail[0])
        snprintf(tot->first_fail, sizeof(tot->first_fail), "%s", line);
    if (tot->printed++ < 12 || getenv("BM_POWERLOSS_VERBOSE")) {
        fprintf(stderr, "powerloss: FAIL %s\n", line);
        for (int k = 0; k < PLK_N; k++)
            if (res.nbad[k] && k != res.first)
                fprintf(stderr, "powerloss:      also %s: %s\n", pl_kind_name[k], res.kmsg[k]);
    }
    return res.first;
}

static void pl_summary(const char *what, const struct pl_totals *t, double secs)
{
    fprintf(stderr,
            "%s: %u runs (%u killed mid-run, %u killed after finishing, %u with every bucket grown after the flush), "
            "%u images: %u passed, %u failed%s, %.1f s\n",
            what, t->runs, t->kills_mid, t->kills_done, t->grown_runs, t->images, t->passed, t->failed,
            t->selftests ? " (and the checker found the wrong key in every swapped self-test image)" : "", secs);
    for (int k = 0; k < PLK_N; k++)
        if (t->images_with[k])
            fprintf(stderr, "%s:   %-38s first violation in %4u images, seen in %4u images, %" PRIu64
                    " times; e.g. %s\n", what, pl_kind_name[k], t->first_kind[k], t->images_with[k], t->keys_bad[k],
                    t->example[k]);
}

static uint64_t pl_seed(const char *what)
{
    const char *s = getenv("BM_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : PL_DEFAULT_SEED;
    fprintf(stderr, "%s: seed=0x%" PRIx64 " (replay with BM_TEST_SEED=0x%" PRIx64 "; kill instants are timing)\n",
            what, seed, seed);
    return seed;
}

static double pl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int pl_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Runs `runs_per_shape` runs of every shape; after each, the images `per_run` asks for. */
static void pl_campaign(const char *what, uint64_t seed, int runs_per_shape, int end, int mixed_images,
                        struct pl_totals *tot)
{
    struct pl_snap sa = {0}, sb = {0};
    int fds = pl_count_fds();
    pl_dirs();
    memset(tot, 0, sizeof(*tot));
    for (int rn = 0; rn < runs_per_shape; rn++)
        for (int shn = 0; shn < (int)PL_NSHAPES; shn++) {
            struct pl_run run = {&pl_shapes[shn], pl_rand(&seed), 0, end};
            run.grow = end == PL_END_CLEAN ? rn % 2 == 0 : (rn + shn) % 2 == 0;
            pl_do_run(&run, &sa, &sb, tot);
            if (mixed_images) {
                for (int i = 0; i < mixed_images; i++)
                    pl_image(&run, shn, &sa, &sb, PL_IMG_MIX, PL_EXPECT_POWERLOSS, pl_rand(&seed), tot);
            } else {
                pl_image(&run, shn, &sa, &sb, PL_IMG_A, PL_EXPECT_FLUSHED, 0, tot);
                pl_image(&run, shn, &sa, &sb, PL_IMG_B, end == PL_END_CLEAN ? PL_EXPECT_LAST : PL_EXPECT_SIGKILL, 0,
                         tot);
            }
            if (end == PL_END_CLEAN) {
                /* Self-test of the checker: A held to the last states and B to the flushed ones must fail
                 * whenever some key changed after the flush. */
                int changed = 0;
                for (uint32_t k = 0; k < L.nkeys; k++)
                    changed |= !pl_state_eq(&L.flushed[k], &L.last[k]);
                ck_assert_msg(changed, "run seed 0x%" PRIx64 ": no key changed after the flush", run.seed);
                int a = pl_image(&run, shn, &sa, &sb, PL_IMG_A, PL_EXPECT_LAST, 0, NULL);
                int b = pl_image(&run, shn, &sa, &sb, PL_IMG_B, PL_EXPECT_FLUSHED, 0, NULL);
                ck_assert_msg(a == PLK_UNTOUCHED && b == PLK_UNTOUCHED,
                              "harness self-test, run seed 0x%" PRIx64 ": state A held to the last acknowledged states "
                              "gave %d, state B held to the flushed states gave %d (want %d: a wrong key found)",
                              run.seed, a, b, PLK_UNTOUCHED);
                tot->selftests += 2;
            }
            if (getenv("BM_POWERLOSS_VERBOSE") || (mixed_images && tot->runs % 25 == 0))
                fprintf(stderr, "%s: %u runs, %u images, %u failed so far\n", what, tot->runs, tot->images,
                        tot->failed);
        }
    pl_snap_free(&sa);
    pl_snap_free(&sb);
    pl_ledger_reset();
    pl_rm(pl_work);
    ck_assert_msg(pl_count_fds() == fds, "%s: %d file descriptors open before the runs, %d after", what, fds,
                  pl_count_fds());
}

/* State B opened as the SIGKILL left it (every acknowledged op there, the one in flight all or nothing) and
 * state A opened as it was at the flush (exactly the flushed state: the child was stopped right after it). */
START_TEST(t_sigkill)
{
    uint64_t seed = pl_seed("powerloss/sigkill");
    struct pl_totals t;
    double t0 = pl_now();
    pl_campaign("powerloss/sigkill", seed ^ 1, 2, PL_END_KILL, 0, &t);
    pl_summary("powerloss/sigkill", &t, pl_now() - t0);
    ck_assert_msg(t.failed == 0, "%u of %u images failed; first: %s", t.failed, t.images, t.first_fail);
}
END_TEST

/* The harness's own sanity check: the child closes the map cleanly, B (all B pages, no kill) must read as
 * the last acknowledged state, A as the flushed state. */
START_TEST(t_clean)
{
    uint64_t seed = pl_seed("powerloss/clean");
    struct pl_totals t;
    double t0 = pl_now();
    pl_campaign("powerloss/clean", seed ^ 2, 1, PL_END_CLEAN, 0, &t);
    pl_summary("powerloss/clean", &t, pl_now() - t0);
    ck_assert_msg(t.failed == 0, "%u of %u images failed; first: %s", t.failed, t.images, t.first_fail);
}
END_TEST

#define PL_IMAGES_PER_RUN 10

START_TEST(t_powerloss)
{
    uint64_t seed = pl_seed("powerloss/images");
    const char *env = getenv("BM_POWERLOSS_IMAGES");
    long want = env ? strtol(env, NULL, 0) : 320;
    if (want < 1)
        want = 1;
    long per_round = PL_IMAGES_PER_RUN * (long)PL_NSHAPES;
    int per_shape_runs = (int)((want + per_round - 1) / per_round);
    struct pl_totals t;
    double t0 = pl_now();
    pl_campaign("powerloss/images", seed ^ 3, per_shape_runs, PL_END_KILL, PL_IMAGES_PER_RUN, &t);
    pl_summary("powerloss/images", &t, pl_now() - t0);
    ck_assert_msg(t.failed == 0, "%u of %u power-loss images failed; first: %s", t.failed, t.images, t.first_fail);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("persist_powerloss");
    TCase *tk = tcase_create("sigkill");
    tcase_add_checked_fixture(tk, pu_setup, pu_teardown);
    tcase_set_timeout(tk, 120);
    tcase_add_test(tk, t_sigkill);
    tcase_add_test(tk, t_clean);
    suite_add_tcase(s, tk);
    TCase *tp = tcase_create("powerloss");
    tcase_add_checked_fixture(tp, pu_setup, pu_teardown);
    const char *env = getenv("BM_POWERLOSS_IMAGES");
    long want = env ? strtol(env, NULL, 0) : 320;
    /* CI: 320 images well inside ctest's 180 s; a long run gets about a second per image. */
    tcase_set_timeout(tp, want > 320 ? (double)want * 1.0 + 120 : 170);
    tcase_add_test(tp, t_powerloss);
    suite_add_tcase(s, tp);
    return pu_run_suite(s);
}
