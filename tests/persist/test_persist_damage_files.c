/*
 * Damaged, missing or foreign files (issue 7): recovery never loses data silently.
 *
 * Every test builds a cleanly closed map (three shapes: 1 drive / 4 buckets, 2 drives / 8 buckets, 3 drives /
 * 16 buckets; elem_size 8; values of 0 elements, 1 element held inline in the index entry, and 2..31
 * elements in data cells of several size classes), backs its files up, then applies one kind of damage
 * with a fixed seed and checks the outcome:
 *   - refusals: bm_open fails with the expected code and cfg.errbuf names the damaged file, or, for damage
 *     inside a file (a clean open does not open the files: each bucket's are checked when it is first
 *     touched), the open succeeds and every call that touches the bucket fails with that code (the
 *     damaged bucket's keys never read as anything else) while bm_verify returns it and names the file;
 *     either way nothing changed on disk (names, types, sizes and contents of every file are the same
 *     before and after); with the damage undone (the backup put back) the map opens with every key intact;
 *   - salvage ((a)-(j)): bm_open with BM_F_SALVAGE succeeds, every key whose files are intact reads exactly
 *     as written, every other key is absent, bm_count / bm_foreach / bm_verify agree and are clean, and a
 *     plain reopen shows the same state;
 *   - damage inside a file that open cannot see ((l) a stuck BUSY bit, (m) a damaged data cell): open
 *     succeeds, readers return promptly (alarm() guards against a hang) and report exactly that key.
 * Runs below /dev/shm when it is writable (BM_TEST_DIR overrides). The map's file layout comes from runtime/format.h (index header, entries) and runtime/restart.h
 * (manifest records): the test reads the manifest of the last checkpoint to know which file holds what.
 */
#include "persist_util.h"

#include "runtime/format.h"
#include "runtime/restart.h"

#include <dirent.h>
#include <stdbool.h>

/* ---- the map under test -------------------------------------------------------------------------------- */

struct shape {
    uint32_t drives, buckets, keys;
};
static const struct shape shapes[] = {{1, 4, 240}, {2, 8, 320}, {3, 16, 400}};
static struct shape S;

#define MAXK 8192u
static struct kstate {
    bool present;
    uint64_t ver, rc;
} K[MAXK];
static uint32_t nk; /* keys 0..nk-1 have been used */

/* Values: a third inline (n = 1), a few empty (n = 0), the rest 2..31 elements (size classes 1..5). */
static uint32_t n_of(uint32_t i, uint64_t ver)
{
    uint64_t s = (uint64_t)i * 1000003u + ver;
    uint32_t t = (uint32_t)(pu_mix(&s) % 6);
    return t < 2 ? 1 : t == 2 ? 0 : 2 + (uint32_t)(pu_mix(&s) % 30);
}

static unsigned cls_of(uint32_t n) { return size_class(n); }

static int put(bm_map *m, uint32_t i, uint64_t ver, uint64_t rc)
{
    uint64_t e[40];
    uint32_t n = n_of(i, ver);
    for (uint32_t j = 0; j < n; j++)
        e[j] = pu_elem(i, ver, j);
    bm_key k = pu_key(i);
    int err = bm_insert(m, &k, e, n, rc);
    if (!err) {
        K[i].present = true;
        K[i].ver = ver;
        K[i].rc = rc;
        if (i >= nk)
            nk = i + 1;
    }
    return err;
}

/* 0: exactly as recorded; 1: absent; -1: anything else (the bm_get error in *errp). */
static int check(bm_map *m, uint32_t i, int *errp)
{
    uint64_t e[48];
    uint32_t n = 0;
    uint64_t rc = 0;
    bm_key k = pu_key(i);
    int err = bm_get(m, &k, e, 48, &n, &rc);
    if (errp)
        *errp = err;
    if (err == BM_ENOTFOUND)
        return 1;
    if (err || n != n_of(i, K[i].ver) || rc != K[i].rc)
        return -1;
    for (uint32_t j = 0; j < n; j++)
        if (e[j] != pu_elem(i, K[i].ver, j))
            return -1;
    return 0;
}

static uint32_t bucket_of(uint32_t i)
{
    bm_key k = pu_key(i);
    return bm_bucket_of(&k, S.buckets);
}

static bm_config cfg_of(uint32_t flags, char *errbuf, uint32_t len)
{
    bm_config c = pu_cfg(S.drives, S.buckets);
    c.flags = flags;
    c.errbuf = errbuf;
    c.errbuf_len = len;
    return c;
}

static char errbuf[512];

static int try_open(uint32_t flags, bm_map **m)
{
    memset(errbuf, 'X', sizeof(errbuf)); /* the library must terminate whatever it writes */
    errbuf[sizeof(errbuf) - 1] = 0;
    bm_config c = cfg_of(flags, errbuf, sizeof(errbuf));
    *m = NULL;
    int err = bm_open(&c, m);
    if (!err && !(flags & BM_F_SALVAGE)) /* salvage may say what it could not use */
        ck_assert_msg(errbuf[0] == 0, "a successful bm_open left a message in errbuf: %.80s", errbuf);
    return err;
}

static bm_map *open_ok(void)
{
    bm_map *m;
    int err = try_open(0, &m);
    ck_assert_msg(err == 0, "bm_open: %s (%s)", bm_strerror(err), errbuf);
    return m;
}

static void build(const struct shape *sh)
{
    S = *sh;
    memset(K, 0, sizeof(K));
    nk = 0;
    bm_map *m = open_ok();
    for (uint32_t i = 0; i < S.keys; i++)
        ck_assert_int_eq(put(m, i, i, i + 1), 0);
    bm_close(m);
}

/* ---- the files of the last checkpoint ------------------------------------------------------------------ */

struct mfile {
    char name[128], path[600];
    uint32_t drive, bucket;
    int kind; /* MANIFEST_KIND_INDEX (0), 1 + class, or -1 for the manifest */
    uint64_t seq;
};
static struct mfile F[512];
static uint32_t nf;
static char prefix[17];

static bool parse(const char *name, struct mfile *f)
{
    int len = 0;
    unsigned b, c;
    unsigned long long seq;
    if (strlen(name) < 20 || name[16] != '-')
        return false;
    const char *rest = name + 17;
    if (sscanf(rest, "b%u-idx-%llu.bm%n", &b, &seq, &len) == 2 && rest[len] == 0)
        f->kind = 0;
    else if (sscanf(rest, "b%u-d%u-%llu.bm%n", &b, &c, &seq, &len) == 3 && rest[len] == 0)
        f->kind = 1 + (int)c;
    else if (sscanf(rest, "manifest-%llu.bm%n", &seq, &len) == 1 && rest[len] == 0)
        f->kind = -1, b = 0;
    else
        return false;
    f->bucket = b;
    f->seq = seq;
    snprintf(f->name, sizeof(f->name), "%s", name);
    return true;
}

/* Reads the restart file's prefix and the newest manifest in drive 0; F[] = the manifest, then its files. */
static void scan(void)
{
    nf = 0;
    DIR *dir = opendir(pu_d[0]);
    ck_assert_ptr_nonnull(dir);
    struct dirent *de;
    struct mfile man = {.kind = 0};
    while ((de = readdir(dir))) {
        struct mfile f;
        if (parse(de->d_name, &f) && f.kind == -1 && (man.kind != -1 || f.seq > man.seq))
            man = f;
    }
    closedir(dir);
    ck_assert_msg(man.kind == -1, "no manifest in %s", pu_d[0]);
    memcpy(prefix, man.name, 16);
    prefix[16] = 0;
    man.drive = 0;
    snprintf(man.path, sizeof(man.path), "%s/%s", pu_d[0], man.name);
    F[nf++] = man;
    uint8_t buf[65536];
    ssize_t got = pu_read_file(man.path, buf, sizeof(buf));
    ck_assert_int_ge(got, 24);
    uint32_t n;
    memcpy(&n, buf + 16, 4);
    ck_assert_int_eq((size_t)got, 24 + (size_t)n * sizeof(struct manifest_rec));
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = buf + 24 + (size_t)i * sizeof(struct manifest_rec);
        uint32_t bucket, kind, drive;
        uint64_t seq;
        memcpy(&bucket, r, 4);
        memcpy(&kind, r + 4, 4);
        memcpy(&drive, r + 8, 4);
        memcpy(&seq, r + 16, 8);
        struct mfile *f = &F[nf++];
        ck_assert_uint_lt(nf, 512);
        f->bucket = bucket;
        f->kind = (int)kind;
        f->drive = drive;
        f->seq = seq;
        if (kind == 0)
            snprintf(f->name, sizeof(f->name), "%s-b%u-idx-%llu.bm", prefix, bucket, (unsigned long long)seq);
        else
            snprintf(f->name, sizeof(f->name), "%s-b%u-d%u-%llu.bm", prefix, bucket, kind - 1,
                     (unsigned long long)seq);
        char nm[128];
        memcpy(nm, f->name, sizeof(nm));
        snprintf(f->path, sizeof(f->path), "%s/%s", pu_d[drive], nm);
        struct stat st;
        ck_assert_msg(lstat(f->path, &st) == 0 && S_ISREG(st.st_mode), "manifest names %s, not there", f->path);
    }
}

/* The file of bucket b and kind k, or NULL. */
static const struct mfile *file_of(uint32_t b, int kind)
{
    for (uint32_t i = 0; i < nf; i++)
        if (F[i].kind == kind && F[i].bucket == b)
            return &F[i];
    return NULL;
}

/* A file of the given kind picked with seed: kind 0 = an index file, 1 = any data file. */
static const struct mfile *pick(uint64_t seed, int data)
{
    uint32_t cand[512], n = 0;
    for (uint32_t i = 0; i < nf; i++)
        if (data ? F[i].kind > 0 : F[i].kind == 0)
            cand[n++] = i;
    ck_assert_uint_gt(n, 0);
    return &F[cand[pu_mix(&seed) % n]];
}

/* ---- backup, restore, listings ------------------------------------------------------------------------- */

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY);
    ck_assert_msg(in >= 0, "open %s: %s", from, strerror(errno));
    int out = open(to, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ck_assert_msg(out >= 0, "create %s: %s", to, strerror(errno));
    char buf[65536];
    ssize_t r;
    while ((r = read(in, buf, sizeof(buf))) > 0)
        ck_assert_int_eq(write(out, buf, (size_t)r), r);
    ck_assert_int_ge(r, 0);
    close(in);
    close(out);
}

static void bak_dir(int d, char *buf, size_t len) { snprintf(buf, len, "%s/bak%d", pu_root, d); }

/* Removes every entry of dir (files and symlinks; the map makes no subdirectories). */
static void clear_dir(const char *path)
{
    DIR *dir = opendir(path);
    ck_assert_ptr_nonnull(dir);
    struct dirent *de;
    char p[700];
    while ((de = readdir(dir))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
        ck_assert_int_eq(unlink(p), 0);
    }
    closedir(dir);
}

static void copy_dir(const char *from, const char *to)
{
    DIR *dir = opendir(from);
    ck_assert_ptr_nonnull(dir);
    struct dirent *de;
    char a[700], b[700];
    while ((de = readdir(dir))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(a, sizeof(a), "%s/%s", from, de->d_name);
        snprintf(b, sizeof(b), "%s/%s", to, de->d_name);
        copy_file(a, b);
    }
    closedir(dir);
}

/* Backs up the restart file and every drive (the map is closed). */
static void backup(void)
{
    char b[256];
    for (uint32_t d = 0; d < S.drives; d++) {
        bak_dir((int)d, b, sizeof(b));
        mkdir(b, 0755);
        clear_dir(b);
        copy_dir(pu_d[d], b);
    }
    snprintf(b, sizeof(b), "%s/bak-restart", pu_root);
    copy_file(pu_restart, b);
}

/* Undoes any damage: the drives and the restart file as backed up. */
static void restore(void)
{
    char b[256];
    for (uint32_t d = 0; d < S.drives; d++) {
        clear_dir(pu_d[d]);
        bak_dir((int)d, b, sizeof(b));
        copy_dir(b, pu_d[d]);
    }
    snprintf(b, sizeof(b), "%s/bak-restart", pu_root);
    unlink(pu_restart);
    copy_file(b, pu_restart);
}

/* "name type size hash" of every entry (dot files, i.e. the drive lock's pid file, excepted) in the drives
 * and of the restart file, sorted, one line each. */
static uint64_t hash_file(const char *path)
{
    uint64_t h = 0xcbf29ce484222325ull;
    int fd = open(path, O_RDONLY | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    uint8_t buf[65536];
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < r; i++)
            h = (h ^ buf[i]) * 0x100000001b3ull;
    close(fd);
    return h;
}

static int cmp_line(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *listing(void)
{
    char *lines[2048];
    size_t n = 0;
    for (uint32_t d = 0; d <= S.drives; d++) {
        const char *base = d < S.drives ? pu_d[d] : pu_root;
        DIR *dir = opendir(base);
        ck_assert_ptr_nonnull(dir);
        struct dirent *de;
        while ((de = readdir(dir))) {
            if (de->d_name[0] == '.' || (d == S.drives && strcmp(de->d_name, "restart")))
                continue;
            char p[700];
            snprintf(p, sizeof(p), "%s/%s", base, de->d_name);
            struct stat st;
            ck_assert_int_eq(lstat(p, &st), 0);
            ck_assert_uint_lt(n, 2048);
            lines[n] = malloc(900);
            ck_assert_ptr_nonnull(lines[n]);
            snprintf(lines[n], 900, "%s %s %lld %016" PRIx64, p, S_ISLNK(st.st_mode) ? "link" : "file",
                     (long long)st.st_size, hash_file(p));
            n++;
        }
        closedir(dir);
    }
    qsort(lines, n, sizeof(*lines), cmp_line);
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(lines[i]) + 1;
    char *out = malloc(total);
    ck_assert_ptr_nonnull(out);
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        strcat(out, lines[i]);
        strcat(out, "\n");
        free(lines[i]);
    }
    return out;
}

/* ---- byte-level damage --------------------------------------------------------------------------------- */

static void flip_bit(const char *path, off_t off, unsigned bit)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t b;
    ck_assert_int_eq(pread(fd, &b, 1, off), 1);
    b ^= (uint8_t)(1u << bit);
    ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void garbage(const char *path, off_t off, size_t len, uint64_t seed)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    for (size_t i = 0; i < len; i += 8) {
        uint64_t r = pu_mix(&seed);
        size_t n = len - i < 8 ? len - i : 8;
        ck_assert_int_eq(pwrite(fd, &r, n, off + (off_t)i), (ssize_t)n);
    }
    close(fd);
}

static off_t file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_size;
}

/* ---- expectations -------------------------------------------------------------------------------------- */

/* Files a damage made unusable: the bucket's index (all its keys) or one data class (its keys' values). */
static bool lost_idx[64], lost_cls[64][40];

static void lost_reset(void)
{
    memset(lost_idx, 0, sizeof(lost_idx));
    memset(lost_cls, 0, sizeof(lost_cls));
}

static void lost_file(const struct mfile *f)
{
    if (f->kind == 0)
        lost_idx[f->bucket] = true;
    else if (f->kind > 0)
        lost_cls[f->bucket][f->kind - 1] = true;
}

static bool kept(uint32_t i)
{
    if (!K[i].present)
        return false;
    uint32_t b = bucket_of(i), n = n_of(i, K[i].ver);
    return !lost_idx[b] && !(n >= 2 && lost_cls[b][cls_of(n)]);
}

static int count_fn(const bm_key *k, const bm_value *v, void *arg)
{
    (void)k;
    (void)v;
    (*(uint64_t *)arg)++;
    return 0;
}

/* Every key reads as expected (kept() exactly, the rest absent); count, walk and verify agree, clean. */
static void check_state(bm_map *m, const char *when)
{
    uint64_t want = 0;
    for (uint32_t i = 0; i < nk; i++) {
        int err = 0, r = check(m, i, &err);
        bool keep = kept(i);
        want += keep;
        if (keep)
            ck_assert_msg(r == 0, "%s: key %u (bucket %u, n %u) intact on disk but reads %s", when, i, bucket_of(i),
                          n_of(i, K[i].ver), r > 0 ? "absent (silently lost)" : bm_strerror(err));
        else
            ck_assert_msg(r == 1, "%s: key %u (bucket %u, n %u) should be dropped, bm_get: %s", when, i,
                          bucket_of(i), n_of(i, K[i].ver), r == 0 ? "its value" : bm_strerror(err));
    }
    ck_assert_uint_eq(bm_count(m), want);
    uint64_t seen = 0;
    ck_assert_int_eq(bm_foreach(m, count_fn, &seen), 0);
    ck_assert_uint_eq(seen, want);
    pu_verify_clean(m, NULL);
}

static void reopen_intact(const char *when)
{
    lost_reset();
    bm_map *m = open_ok();
    check_state(m, when);
    bm_close(m);
}

/* A clean open checks the manifest and that each file it names is there; a bucket's headers, sizes, stamps
 * and counts are checked when the bucket is first touched (recovery.c). So damage inside a file is refused
 * by the calls that touch its bucket: every get of a key there fails (with `want`, never a wrong or missing
 * value), the others read, and bm_verify, which loads every bucket, returns the error and names the file.
 * Returns bm_verify's error (0: the damage was accepted) with its message in errbuf. */
static int refused_at_touch(bm_map *m, int want, const char *what)
{
    uint32_t failed = 0;
    for (uint32_t i = 0; i < nk; i++) {
        if (!K[i].present)
            continue;
        bm_key k = pu_key(i);
        uint64_t e[40];
        uint32_t n = 0;
        uint64_t rc = 0;
        int err = bm_get(m, &k, e, 40, &n, &rc);
        if (err) {
            ck_assert_msg(!want || err == want, "%s: bm_get of key %u (bucket %u): %s, expected %s", what, i,
                          bucket_of(i), bm_strerror(err), bm_strerror(want));
            failed++;
        }
    }
    ck_assert_msg(failed > 0, "%s: bm_open succeeded and every key reads: damage accepted silently", what);
    bm_verify_report rep;
    int err = bm_verify(m, &rep);
    snprintf(errbuf, sizeof(errbuf), "%s", rep.error);
    if (err)
        ck_assert_msg(rep.unloadable_buckets > 0, "%s: bm_verify: %s, but no bucket failed to load", what,
                      bm_strerror(err));
    bm_stats st;
    bm_get_stats(m, &st);
    ck_assert_msg(st.bucket_load_errors > 0, "%s: no failed bucket load counted", what);
    return err;
}

/* bm_open (or, for damage inside a file, the first touch of its bucket) refuses with `want` (or, want == 0,
 * any error), names `name` in errbuf (unless NULL) and leaves every file as it was. */
static void refused(int want, const char *name, const char *what)
{
    char *before = listing();
    bm_map *m;
    int err = try_open(0, &m);
    if (!err) {
        err = refused_at_touch(m, want, what);
        uint64_t cnt = bm_count(m);
        bm_close(m);
        if (!err)
            ck_abort_msg("%s: bm_open and bm_verify succeeded (%" PRIu64 " of %u keys visible): damage accepted "
                         "silently", what, cnt, S.keys);
    }
    if (want)
        ck_assert_msg(err == want, "%s: bm_open returned %s, expected %s (errbuf: %s)", what, bm_strerror(err),
                      bm_strerror(want), errbuf);
    ck_assert_msg(memchr(errbuf, 0, sizeof(errbuf)) && errbuf[0] && errbuf[0] != 'X',
                  "%s: bm_open failed (%s) but wrote no message to errbuf", what, bm_strerror(err));
    if (name)
        ck_assert_msg(strstr(errbuf, name) != NULL, "%s: errbuf does not name %s: \"%s\"", what, name, errbuf);
    char *after = listing();
    ck_assert_msg(!strcmp(before, after), "%s: the refused open changed the files:\nbefore:\n%s\nafter:\n%s", what,
                  before, after);
    free(before);
    free(after);
}

/* BM_F_SALVAGE opens, keeps what kept() says, verifies clean; a plain reopen shows the same. */
static void salvaged(const char *what)
{
    bm_map *m;
    int err = try_open(BM_F_SALVAGE, &m);
    ck_assert_msg(err == 0, "%s: salvage open: %s (%s)", what, bm_strerror(err), errbuf);
    char when[600];
    snprintf(when, sizeof(when), "%s, salvaged", what);
    check_state(m, when);
    bm_close(m);
    m = open_ok();
    snprintf(when, sizeof(when), "%s, reopened after salvage", what);
    check_state(m, when);
    bm_close(m);
}

/* The whole protocol for one damage: damage() then refusal, undo, salvage of the same damage. */
typedef void (*damage_fn)(void *arg);

static void run_case(damage_fn damage, void *arg, int want, const char *name, const char *what, bool salvage)
{
    restore();
    lost_reset();
    damage(arg);
    refused(want, name, what);
    restore();
    char when[600];
    snprintf(when, sizeof(when), "%s, damage undone", what);
    reopen_intact(when);
    if (salvage) {
        restore();
        lost_reset();
        damage(arg);
        salvaged(what);
    }
    restore();
}

static void setup_shape(int s)
{
    build(&shapes[s]);
    backup();
    scan();
}

/* ---- (a) a bit flipped in an index file's identity ----------------------------------------------------- */

struct flip_arg {
    const struct mfile *f;
    off_t off;
    unsigned bit;
};

static void do_flip(void *p)
{
    struct flip_arg *a = p;
    flip_bit(a->f->path, a->off, a->bit);
    lost_file(a->f);
}

START_TEST(t_a_index_header_bit)
{
    setup_shape(_i);
    static const struct {
        const char *field;
        off_t off;
        unsigned bit;
    } fields[] = {{"magic", offsetof(struct idx_header, magic), 0},
                  {"bucket", offsetof(struct idx_header, bucket), 0},
                  {"gen", offsetof(struct idx_header, gen), 0},
                  {"capacity", offsetof(struct idx_header, capacity) + 1, 3}};
    for (unsigned v = 0; v < 4; v++) {
        struct flip_arg a = {pick(0xA0 + v * 7 + (uint64_t)_i, 0), fields[v].off, fields[v].bit};
        char what[400];
        snprintf(what, sizeof(what), "(a) %s bit in %s", fields[v].field, a.f->name);
        run_case(do_flip, &a, BM_ECORRUPT, a.f->name, what, true);
    }
    /* The same for a data file's identity. */
    static const struct {
        const char *field;
        off_t off;
        unsigned bit;
    } dfields[] = {{"magic", offsetof(struct data_header, magic) + 7, 1},
                   {"class", offsetof(struct data_header, cls), 0},
                   {"gen", offsetof(struct data_header, gen), 2}};
    for (unsigned v = 0; v < 3; v++) {
        struct flip_arg a = {pick(0xA8 + v * 5 + (uint64_t)_i, 1), dfields[v].off, dfields[v].bit};
        char what[400];
        snprintf(what, sizeof(what), "(a) %s bit in data file %s", dfields[v].field, a.f->name);
        run_case(do_flip, &a, BM_ECORRUPT, a.f->name, what, true);
    }
}
END_TEST

/* ---- (b) truncated index or data file ------------------------------------------------------------------ */

struct trunc_arg {
    const struct mfile *f;
    int how; /* 0 odd length, 1 a page shorter, 2 zero */
};

static void do_trunc(void *p)
{
    struct trunc_arg *a = p;
    off_t sz = file_size(a->f->path);
    off_t to = a->how == 0 ? sz - 7 - (sz % 2 == 0 ? 0 : 1) : a->how == 1 ? sz - 4096 : 0;
    ck_assert_int_eq(truncate(a->f->path, to), 0);
    lost_file(a->f);
}

START_TEST(t_b_truncated)
{
    setup_shape(_i);
    static const char *hows[] = {"odd length", "a page shorter", "zero length"};
    for (int data = 0; data < 2; data++) {
        for (int how = 0; how < 3; how++) {
            struct trunc_arg a = {pick(0xB0 + (uint64_t)(data * 3 + how) * 11 + (uint64_t)_i, data), how};
            char what[400];
            snprintf(what, sizeof(what), "(b) %s truncated to %s", a.f->name, hows[how]);
            run_case(do_trunc, &a, BM_ECORRUPT, a.f->name, what, true);
        }
    }
}
END_TEST

/* ---- (c) a listed file deleted ------------------------------------------------------------------------- */

static void do_delete(void *p)
{
    const struct mfile *f = p;
    ck_assert_int_eq(unlink(f->path), 0);
    lost_file(f);
}

START_TEST(t_c_deleted)
{
    setup_shape(_i);
    for (int data = 0; data < 2; data++) {
        const struct mfile *f = pick(0xC0 + (uint64_t)data * 5 + (uint64_t)_i, data);
        char what[400];
        snprintf(what, sizeof(what), "(c) %s deleted", f->name);
        run_case(do_delete, (void *)f, BM_EMISSING, f->name, what, true);
    }
}
END_TEST

/* ---- (d) a file replaced by a symlink to a copy -------------------------------------------------------- */

static void do_symlink(void *p)
{
    const struct mfile *f = p;
    char copy[700];
    snprintf(copy, sizeof(copy), "%s/copy-%s", pu_root, f->name);
    copy_file(f->path, copy);
    ck_assert_int_eq(unlink(f->path), 0);
    ck_assert_int_eq(symlink(copy, f->path), 0);
    lost_file(f);
}

START_TEST(t_d_symlink)
{
    setup_shape(_i);
    for (int data = 0; data < 2; data++) {
        const struct mfile *f = pick(0xD0 + (uint64_t)data * 5 + (uint64_t)_i, data);
        char what[400];
        snprintf(what, sizeof(what), "(d) %s replaced by a symlink to a copy", f->name);
        run_case(do_symlink, (void *)f, BM_ECORRUPT, f->name, what, true);
    }
}
END_TEST

/* ---- (e) two buckets' index files swapped -------------------------------------------------------------- */

static void do_swap(void *p)
{
    const struct mfile **f = p;
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s/swap.tmp", pu_root);
    ck_assert_int_eq(rename(f[0]->path, tmp), 0);
    ck_assert_int_eq(rename(f[1]->path, f[0]->path), 0);
    ck_assert_int_eq(rename(tmp, f[1]->path), 0);
    lost_file(f[0]);
    lost_file(f[1]);
}

START_TEST(t_e_swapped)
{
    setup_shape(_i);
    const struct mfile *f[2] = {pick(0xE0 + (uint64_t)_i, 0), NULL};
    for (uint64_t s = 0xE1; !f[1] || f[1] == f[0]; s++)
        f[1] = pick(s, 0);
    char what[400];
    snprintf(what, sizeof(what), "(e) %s and %s swapped", f[0]->name, f[1]->name);
    /* Either file may be the one open checks first. */
    restore();
    do_swap(f);
    refused(BM_ECORRUPT, NULL, what);
    ck_assert_msg(strstr(errbuf, f[0]->name) || strstr(errbuf, f[1]->name), "%s: errbuf names neither: %s", what,
                  errbuf);
    run_case(do_swap, f, BM_ECORRUPT, NULL, what, true);
}
END_TEST

/* ---- (f) a stale older copy of an index file put back ------------------------------------------------- */

/* A key id >= nk whose bucket is b. */
static uint32_t new_key_in(uint32_t b)
{
    for (uint32_t i = nk;; i++) {
        ck_assert_uint_lt(i, MAXK);
        if (bucket_of(i) == b)
            return i;
    }
}

struct stale_arg {
    char stale[700], cur[700], name[128];
    uint32_t bucket;
};

static void do_stale(void *p)
{
    struct stale_arg *a = p;
    copy_file(a->stale, a->cur);
    lost_idx[a->bucket] = true;
}

/* Salvage cannot know which of the bucket's values the stale file holds; it may keep a key of that bucket
 * only with its current value. */
static void salvage_stale(struct stale_arg *a, const char *what)
{
    restore();
    lost_reset();
    do_stale(a);
    bm_map *m;
    int err = try_open(BM_F_SALVAGE, &m);
    ck_assert_msg(err == 0, "%s: salvage open: %s (%s)", what, bm_strerror(err), errbuf);
    uint64_t want = 0;
    for (uint32_t i = 0; i < nk; i++) {
        int e = 0, r = check(m, i, &e);
        if (bucket_of(i) == a->bucket) {
            ck_assert_msg(r == 1 || (r == 0 && K[i].present),
                          "%s, salvaged: key %u of the stale bucket reads %s (the key is %s now): silent rollback",
                          what, i, r == 0 || e == 0 ? "an older value or refcount" : bm_strerror(e),
                          K[i].present ? "present" : "deleted");
            want += r == 0;
        } else {
            ck_assert_msg(r == (K[i].present ? 0 : 1), "%s, salvaged: key %u of an intact bucket reads %s", what, i,
                          r == 0 ? "a value" : r == 1 ? "absent" : bm_strerror(e));
            want += K[i].present;
        }
    }
    ck_assert_uint_eq(bm_count(m), want);
    pu_verify_clean(m, NULL);
    bm_close(m);
    restore();
}

/* variant 0: the bucket's index grew since the copy (the name moved on; the copy goes under the new name);
 * 1: keys were added and deleted in the bucket (its count changed); 2: only values and refcounts of the
 * bucket's keys changed (count and file the same). */
static void stale_variant(int variant, int shape, bool salvage_only)
{
    const struct mfile *f = pick(0xF0 + (uint64_t)variant * 3 + (uint64_t)shape, 0);
    struct stale_arg a;
    a.bucket = f->bucket;
    char old_name[128];
    memcpy(old_name, f->name, sizeof(old_name)); /* F[] is read again below */
    snprintf(a.stale, sizeof(a.stale), "%s/stale-%s", pu_root, f->name);
    copy_file(f->path, a.stale);
    bm_map *m = open_ok();
    uint32_t b = f->bucket;
    if (variant == 0) {
        bm_bucket_info bi;
        ck_assert_int_eq(bm_bucket_info_get(m, b, &bi), 0);
        char was[BM_FILE_NAME_MAX];
        memcpy(was, bi.index.name, sizeof(was));
        for (int j = 0; !strcmp(bi.index.name, was); j++) {
            ck_assert_int_lt(j, 2000);
            ck_assert_int_eq(put(m, new_key_in(b), 1000 + (uint64_t)j, 7), 0);
            ck_assert_int_eq(bm_bucket_info_get(m, b, &bi), 0);
        }
    } else if (variant == 1) {
        for (int j = 0; j < 3; j++)
            ck_assert_int_eq(put(m, new_key_in(b), 2000 + (uint64_t)j, 8), 0);
        for (uint32_t i = 0; i < nk; i++) {
            if (bucket_of(i) == b && K[i].present) {
                bm_key k = pu_key(i);
                ck_assert_int_eq(bm_delete(m, &k), 0);
                K[i].present = false;
                break;
            }
        }
    } else {
        int changed = 0;
        for (uint32_t i = 0; i < nk && changed < 6; i++) {
            if (bucket_of(i) != b || !K[i].present)
                continue;
            if (changed % 2 == 0) {
                /* a new inline value: rewritten in place, like a refcount (a value in a data cell would go to
                 * a new slot beside its frozen version, which can grow the index) */
                if (n_of(i, K[i].ver) != 1)
                    continue;
                uint64_t v = K[i].ver + 1;
                while (n_of(i, v) != n_of(i, K[i].ver))
                    v++;
                ck_assert_int_eq(put(m, i, v, K[i].rc), 0);
            } else {
                bm_key k = pu_key(i);
                uint64_t rc;
                ck_assert_int_eq(bm_addref(m, &k, &rc), 0);
                K[i].rc = rc;
            }
            changed++;
        }
        ck_assert_int_eq(changed, 6);
    }
    ck_assert_int_eq(bm_flush(m), 0);
    bm_close(m);
    backup();
    scan();
    const struct mfile *now = file_of(b, 0);
    ck_assert_ptr_nonnull(now);
    if (variant == 0)
        ck_assert_msg(strcmp(now->name, old_name), "bucket %u's index did not grow (%s)", b, old_name);
    else if (variant == 2)
        ck_assert_msg(!strcmp(now->name, old_name), "bucket %u's index grew (%s, %s)", b, old_name, now->name);
    snprintf(a.cur, sizeof(a.cur), "%s", now->path);
    snprintf(a.name, sizeof(a.name), "%s", now->name);
    char what[400];
    snprintf(what, sizeof(what), "(f%d) stale copy of bucket %u's index put back as %s", variant, b, a.name);
    /* variant 1 may be caught by the count check, which names no file */
    if (!salvage_only)
        run_case(do_stale, &a, BM_ECORRUPT, variant == 1 ? NULL : a.name, what, false);
    salvage_stale(&a, what);
}

START_TEST(t_f_stale_grown)
{
    setup_shape(_i);
    stale_variant(0, _i, false);
}
END_TEST

START_TEST(t_f_stale_count)
{
    setup_shape(_i);
    stale_variant(1, _i, false);
}
END_TEST

START_TEST(t_f_stale_values)
{
    setup_shape(_i);
    stale_variant(2, _i, false);
}
END_TEST

/* The same damage under salvage alone (the refusal above fails first while the library misses it). */
START_TEST(t_f_stale_values_salvage)
{
    setup_shape(_i);
    stale_variant(2, _i, true);
}
END_TEST

/* ---- (g) garbage in the restart file ------------------------------------------------------------------- */

static void do_restart_ident(void *p)
{
    (void)p;
    garbage(pu_restart, 0, 64, 0x6001);
}

static void do_restart_prefix_bit(void *p)
{
    (void)p;
    flip_bit(pu_restart, 24 + 3, 2); /* a byte of the file-name prefix */
}

static void do_restart_slots(void *p)
{
    (void)p;
    garbage(pu_restart, 4096, 4096, 0x6002);
    garbage(pu_restart, 8192, 4096, 0x6003);
}

START_TEST(t_g_restart_identity)
{
    setup_shape(_i);
    run_case(do_restart_ident, NULL, BM_ECORRUPT, pu_restart, "(g) garbage in the restart file's identity", true);
}
END_TEST

START_TEST(t_g_restart_prefix_bit)
{
    setup_shape(_i);
    run_case(do_restart_prefix_bit, NULL, BM_ECORRUPT, pu_restart, "(g) a bit of the restart file's prefix", true);
}
END_TEST

/* Salvage with a damaged identity: the drives still say which map they hold. */
START_TEST(t_g_identity_salvage)
{
    setup_shape(_i);
    restore();
    lost_reset();
    do_restart_ident(NULL);
    salvaged("(g) garbage in the restart file's identity");
}
END_TEST

START_TEST(t_g_commit_slots)
{
    setup_shape(_i);
    run_case(do_restart_slots, NULL, BM_ECORRUPT, pu_restart, "(g) garbage in both commit slots", true);
}
END_TEST

/* Only the newest commit slot damaged: the older record names an older checkpoint. Open may refuse, or
 * recover every key; it must not open with keys missing. */
START_TEST(t_g_newest_slot)
{
    setup_shape(_i);
    /* A flush, then a clean close: two records of different epochs in the two slots. */
    bm_map *m = open_ok();
    ck_assert_int_eq(put(m, new_key_in(0), 3000, 1), 0);
    ck_assert_int_eq(bm_flush(m), 0);
    ck_assert_int_eq(put(m, new_key_in(0), 3001, 1), 0);
    bm_close(m);
    backup();
    uint64_t ep[2] = {0, 0};
    for (int s = 0; s < 2; s++) {
        int fd = open(pu_restart, O_RDONLY);
        ck_assert_int_ge(fd, 0);
        uint64_t w[2];
        ck_assert_int_eq(pread(fd, w, 16, 4096 * (1 + s)), 16);
        ep[s] = w[1];
        close(fd);
    }
    int newest = ep[1] > ep[0];
    garbage(pu_restart, 4096 * (1 + newest), 4096, 0x6004);
    bm_map *m2;
    int err = try_open(0, &m2);
    if (err) {
        ck_assert_msg(errbuf[0] && errbuf[0] != 'X', "refused without a message");
    } else {
        lost_reset();
        check_state(m2, "(g) newest commit slot damaged");
        bm_close(m2);
    }
}
END_TEST

/* ---- (h) a drive directory emptied (the disk not mounted) --------------------------------------------- */

static void do_empty_drive(void *p)
{
    uint32_t d = *(uint32_t *)p;
    char away[256];
    snprintf(away, sizeof(away), "%s/away%u", pu_root, d);
    mkdir(away, 0755);
    clear_dir(away);
    DIR *dir = opendir(pu_d[d]);
    ck_assert_ptr_nonnull(dir);
    struct dirent *de;
    char a[700], b[700];
    while ((de = readdir(dir))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(a, sizeof(a), "%s/%s", pu_d[d], de->d_name);
        snprintf(b, sizeof(b), "%s/%s", away, de->d_name);
        ck_assert_int_eq(rename(a, b), 0);
    }
    closedir(dir);
    for (uint32_t i = 0; i < nf; i++)
        if (F[i].drive == d)
            lost_file(&F[i]);
}

START_TEST(t_h_empty_drive)
{
    setup_shape(_i);
    uint32_t drives[2] = {0, S.drives - 1};
    for (int v = 0; v < (S.drives > 1 ? 2 : 1); v++) {
        char what[400];
        snprintf(what, sizeof(what), "(h) drive %u of %u emptied", drives[v], S.drives);
        /* the error names a file of that drive: its directory is in the path */
        run_case(do_empty_drive, &drives[v], BM_EMISSING, pu_d[drives[v]], what, true);
    }
}
END_TEST

/* ---- (i) the restart file of another map --------------------------------------------------------------- */

static char other_restart[512];

/* Another map of the same shape in other directories; with keys when full. */
static void make_other(bool full)
{
    char od[3][400];
    const char *odp[3] = {od[0], od[1], od[2]};
    char base[200];
    snprintf(base, sizeof(base), "%s/other%d", pu_root, full);
    ck_assert_int_eq(mkdir(base, 0755), 0);
    for (int d = 0; d < 3; d++) {
        snprintf(od[d], sizeof(od[d]), "%s/d%d", base, d);
        ck_assert_int_eq(mkdir(od[d], 0755), 0);
    }
    snprintf(other_restart, sizeof(other_restart), "%s/restart", base);
    bm_config c = {.elem_size = PU_ES, .max_buckets = S.buckets, .drives = odp, .n_drives = S.drives,
                   .restart_path = other_restart};
    bm_map *m;
    ck_assert_int_eq(bm_open(&c, &m), 0);
    if (full) {
        uint64_t e[3] = {1, 2, 3};
        for (uint32_t i = 0; i < 50; i++) {
            bm_key k = pu_key(5000 + i);
            ck_assert_int_eq(bm_insert(m, &k, e, 1 + i % 3, 1), 0);
        }
    }
    bm_close(m);
}

static void do_foreign_restart(void *p)
{
    copy_file(p, pu_restart);
}

START_TEST(t_i_foreign_restart)
{
    setup_shape(_i);
    for (int full = 1; full >= 0; full--) {
        make_other(full);
        char what[400], foreign[600];
        snprintf(what, sizeof(what), "(i) restart file of another %s map", full ? "non-empty" : "empty");
        snprintf(foreign, sizeof(foreign), "%s", other_restart);
        restore();
        do_foreign_restart(foreign);
        refused(BM_ECORRUPT, pu_restart, what);
        restore();
        reopen_intact(what);
        /* Salvage with a foreign restart file: keep every key (the files are intact) or refuse; never an
         * empty map committed over ours. */
        restore();
        do_foreign_restart(foreign);
        bm_map *m;
        int err = try_open(BM_F_SALVAGE, &m);
        if (!err) {
            lost_reset();
            check_state(m, "(i) salvage with a foreign restart file");
            bm_close(m);
        }
        restore();
    }
}
END_TEST

/* ---- (j) the manifest deleted or damaged --------------------------------------------------------------- */

static void do_manifest(void *p)
{
    int how = *(int *)p;
    const char *path = F[0].path;
    if (how == 0)
        ck_assert_int_eq(unlink(path), 0);
    else if (how == 1)
        flip_bit(path, file_size(path) / 2, 5);
    else
        ck_assert_int_eq(truncate(path, file_size(path) - 8), 0);
}

START_TEST(t_j_manifest)
{
    setup_shape(_i);
    static const char *hows[] = {"deleted", "a bit flipped", "truncated"};
    for (int how = 0; how < 3; how++) {
        char what[400];
        snprintf(what, sizeof(what), "(j) manifest %s %s", F[0].name, hows[how]);
        run_case(do_manifest, &how, how == 0 ? BM_EMISSING : BM_ECORRUPT, F[0].name, what, true);
    }
}
END_TEST

/* ---- (k) the undo record armed in a cleanly closed map ------------------------------------------------ */

static void do_undo_armed(void *p)
{
    const struct mfile *f = p;
    flip_bit(f->path, offsetof(struct idx_header, undo) + offsetof(struct undo_rec, armed), 0);
}

START_TEST(t_k_undo_armed)
{
    setup_shape(_i);
    const struct mfile *f = pick(0x4B + (uint64_t)_i, 0);
    run_case(do_undo_armed, (void *)f, BM_ECORRUPT, f->name, "(k) undo record's armed word flipped", false);
}
END_TEST

/* ---- (l) a stuck BUSY bit ------------------------------------------------------------------------------ */

static int key_id(const uint64_t w[4])
{
    for (uint32_t i = 0; i < nk; i++) {
        bm_key k = pu_key(i);
        if (!memcmp(k.bytes, w, 32))
            return (int)i;
    }
    return -1;
}

struct walk {
    uint64_t n;
    int skip;
    bool saw_skip;
};

static int walk_fn(const bm_key *k, const bm_value *v, void *arg)
{
    (void)v;
    struct walk *w = arg;
    bm_key s = pu_key((uint32_t)w->skip);
    if (!memcmp(k, &s, sizeof(s)))
        w->saw_skip = true;
    w->n++;
    return 0;
}

START_TEST(t_l_busy_bit)
{
    setup_shape(_i);
    /* An entry whose next slot holds a key displaced past it: that key's probe crosses the BUSY entry. */
    const struct mfile *f = NULL;
    int victim = -1, behind = -1;
    off_t voff = 0;
    for (uint64_t s = 0x1B + (uint64_t)_i; victim < 0 && s < 0x1B + 64; s++) {
        f = pick(s, 0);
        int fd = open(f->path, O_RDWR);
        ck_assert_int_ge(fd, 0);
        struct idx_header h;
        ck_assert_int_eq(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
        struct bkt_entry *e = malloc(h.capacity * sizeof(*e));
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(pread(fd, e, h.capacity * sizeof(*e), IDX_HEADER_BYTES),
                         (ssize_t)(h.capacity * sizeof(*e)));
        for (uint64_t i = 0; i + 1 < h.capacity && victim < 0; i++) {
            if (entry_tag(e[i].state) == TAG_FREE || entry_tag(e[i + 1].state) == TAG_FREE)
                continue;
            uint64_t home = entry_home(entry_hash(e[i + 1].key, h.seed), h.capacity);
            if (home > i)
                continue; /* the next key does not probe through slot i */
            victim = key_id(e[i].key);
            behind = key_id(e[i + 1].key);
            voff = IDX_HEADER_BYTES + (off_t)(i * sizeof(*e));
        }
        free(e);
        close(fd);
    }
    ck_assert_msg(victim >= 0 && behind >= 0, "no entry with a displaced neighbour found");
    flip_bit(f->path, voff, 2); /* state word bit 2: BUSY */
    alarm(20);
    bm_map *m = open_ok();
    int err;
    ck_assert_msg(check(m, (uint32_t)victim, &err) == -1 && err == BM_ECORRUPT,
                  "(l) bm_get of the key whose entry is BUSY on disk: %s, expected BM_ECORRUPT", bm_strerror(err));
    struct walk w = {0, victim, false};
    ck_assert_int_eq(bm_foreach(m, walk_fn, &w), BM_ECORRUPT);
    ck_assert_uint_eq(w.n, S.keys - 1);
    ck_assert(!w.saw_skip);
    bm_verify_report rep;
    memset(&rep, 0, sizeof(rep));
    ck_assert_int_eq(bm_verify(m, &rep), BM_ECORRUPT);
    ck_assert_uint_eq(rep.bad_entry_sums, 1);
    ck_assert_uint_eq(rep.entries, S.keys);
    /* The BUSY entry's key is unknowable to a reader, but a key stored past it is intact and must be found.
     * Problems from here on are collected, so that one does not hide the next. */
    char bugs[1024] = "";
    int r = check(m, (uint32_t)behind, &err);
    if (r != 0)
        snprintf(bugs, sizeof(bugs), "key %d, displaced past the BUSY entry of key %d, reads %s (intact on disk); ",
                 behind, victim, r > 0 ? "absent" : bm_strerror(err));
    uint32_t unreadable = 0;
    for (uint32_t i = 0; i < nk; i++)
        unreadable += (int)i != victim && check(m, i, &err) != 0;
    if (unreadable)
        snprintf(bugs + strlen(bugs), sizeof(bugs) - strlen(bugs), "%u intact keys unreadable; ", unreadable);
    /* Writers return too, and rewriting the damaged key repairs the map. */
    struct kstate was = K[victim];
    ck_assert_int_eq(put(m, (uint32_t)victim, K[victim].ver + 1, 3), 0);
    ck_assert_int_eq(check(m, (uint32_t)victim, &err), 0);
    ck_assert_int_eq(bm_flush(m), 0); /* the old version may stay as a shadow until a checkpoint */
    memset(&rep, 0, sizeof(rep));
    if (bm_verify(m, &rep) != 0 || bm_count(m) != S.keys)
        snprintf(bugs + strlen(bugs), sizeof(bugs) - strlen(bugs),
                 "after bm_insert of the BUSY key: bm_verify bad_entry_sums %" PRIu64 ", misplaced %" PRIu64
                 ", count_mismatches %" PRIu64 ", bm_count %" PRIu64 " (want a clean map of %u keys); ",
                 rep.bad_entry_sums, rep.misplaced, rep.count_mismatches, bm_count(m), S.keys);
    bm_close(m);
    alarm(0);
    K[victim] = was;
    ck_assert_msg(!bugs[0], "(l) %s", bugs);
    restore();
    reopen_intact("(l) BUSY bit undone");
}
END_TEST

/* ---- (m) an element flipped in a data cell ------------------------------------------------------------- */

START_TEST(t_m_cell_flip)
{
    setup_shape(_i);
    /* A key with a value in a data cell; its last element is unique in the files (pu_elem encodes the key). */
    uint64_t seed = 0x3D + (uint64_t)_i;
    uint32_t victim;
    do
        victim = (uint32_t)(pu_mix(&seed) % S.keys);
    while (n_of(victim, K[victim].ver) < 2);
    uint32_t n = n_of(victim, K[victim].ver);
    uint64_t elem = pu_elem(victim, K[victim].ver, n - 1);
    const struct mfile *f = file_of(bucket_of(victim), 1 + (int)cls_of(n));
    ck_assert_ptr_nonnull(f);
    off_t sz = file_size(f->path);
    uint8_t *buf = malloc((size_t)sz);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(pu_read_file(f->path, buf, (size_t)sz), sz);
    off_t at = -1;
    for (off_t o = 0; o + 8 <= sz; o += 8)
        if (!memcmp(buf + o, &elem, 8)) {
            ck_assert_msg(at < 0, "element found twice");
            at = o;
        }
    free(buf);
    ck_assert_msg(at >= 0, "element of key %u not found in %s", victim, f->name);
    flip_bit(f->path, at + 2, 6);
    alarm(20);
    bm_map *m = open_ok();
    int err;
    ck_assert_msg(check(m, victim, &err) == -1 && err == BM_ECORRUPT,
                  "(m) bm_get of the damaged value: %s, expected BM_ECORRUPT", bm_strerror(err));
    for (uint32_t i = 0; i < nk; i++)
        if (i != victim)
            ck_assert_msg(check(m, i, &err) == 0, "(m) intact key %u reads %s", i, bm_strerror(err));
    struct walk w = {0, (int)victim, false};
    ck_assert_int_eq(bm_foreach(m, walk_fn, &w), BM_ECORRUPT);
    ck_assert_uint_eq(w.n, S.keys - 1);
    bm_verify_report rep;
    memset(&rep, 0, sizeof(rep));
    ck_assert_int_eq(bm_verify(m, &rep), BM_ECORRUPT);
    ck_assert_uint_eq(rep.bad_cells, 1);
    ck_assert_uint_eq(rep.bad_entry_sums, 0);
    ck_assert_uint_eq(rep.entries, S.keys);
    bm_close(m);
    alarm(0);
    restore();
    reopen_intact("(m) cell damage undone");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("persist_damage_files");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"a_index_header_bit", t_a_index_header_bit},
        {"b_truncated", t_b_truncated},
        {"c_deleted", t_c_deleted},
        {"d_symlink", t_d_symlink},
        {"e_swapped", t_e_swapped},
        {"f_stale_grown", t_f_stale_grown},
        {"f_stale_count", t_f_stale_count},
        {"f_stale_values", t_f_stale_values},
        {"f_stale_values_salvage", t_f_stale_values_salvage},
        {"g_restart_identity", t_g_restart_identity},
        {"g_restart_prefix_bit", t_g_restart_prefix_bit},
        {"g_identity_salvage", t_g_identity_salvage},
        {"g_commit_slots", t_g_commit_slots},
        {"g_newest_slot", t_g_newest_slot},
        {"h_empty_drive", t_h_empty_drive},
        {"i_foreign_restart", t_i_foreign_restart},
        {"j_manifest", t_j_manifest},
        {"k_undo_armed", t_k_undo_armed},
        {"l_busy_bit", t_l_busy_bit},
        {"m_cell_flip", t_m_cell_flip},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, pu_setup, pu_teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_loop_test(tc, cases[i].t, 0, (int)(sizeof(shapes) / sizeof(shapes[0])));
        suite_add_tcase(s, tc);
    }
    /* Every case opens and closes its map a dozen times, and each close syncs every file: on tmpfs the
     * suite takes a few seconds instead of most of a minute. BM_TEST_DIR=/tmp runs it on a disk. */
    const char *dir = getenv("BM_TEST_DIR");
    if (!dir)
        dir = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
    return pu_run_suite_in(s, dir);
}
