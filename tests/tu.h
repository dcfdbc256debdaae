/*
 * tu.h — helpers shared by the API test suites (header-only so every suite stays one .c file).
 *
 * Everything here goes through the public header only. Helpers that assert use Check's ck_assert family,
 * so they may only be called from inside a Check test function.
 */
#ifndef BM_TESTS_TU_H
#define BM_TESTS_TU_H

#include <bucketmap.h>
#include <check.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- result checks that print the library's own message on failure ---- */

#define TU_OK(expr)                                                                                    \
    do {                                                                                               \
        int tu_r_ = (expr);                                                                            \
        ck_assert_msg(tu_r_ == 0, "%s returned %d (%s)", #expr, tu_r_, bm_strerror(tu_r_));            \
    } while (0)

#define TU_ERR(expr, want)                                                                             \
    do {                                                                                               \
        int tu_r_ = (expr);                                                                            \
        int tu_w_ = (want);                                                                            \
        ck_assert_msg(tu_r_ == tu_w_, "%s returned %d (%s), expected %d (%s)", #expr, tu_r_,            \
                      bm_strerror(tu_r_), tu_w_, bm_strerror(tu_w_));                                  \
    } while (0)

#define TU_FAILS(expr)                                                                                 \
    do {                                                                                               \
        int tu_r_ = (expr);                                                                            \
        ck_assert_msg(tu_r_ < 0, "%s returned %d, expected an error", #expr, tu_r_);                   \
    } while (0)

/* ---- deterministic pseudo-randomness (splitmix64: tiny, good enough, reproducible from a seed) ---- */

static inline uint64_t tu_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct tu_rng {
    uint64_t s;
} tu_rng;

static inline uint64_t tu_next(tu_rng *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    uint64_t x = r->s;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Uniform in [0, n); the modulo bias is irrelevant for tests. */
static inline uint64_t tu_below(tu_rng *r, uint64_t n)
{
    return n ? tu_next(r) % n : 0;
}

/* BM_TEST_SEED pins a run; otherwise every run explores a new seed (printed by the caller). */
static inline uint64_t tu_seed(void)
{
    const char *s = getenv("BM_TEST_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return tu_mix64((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ (uint64_t)getpid();
}

/* ---- keys ---- */

/* Key number i: random-looking leading bytes (so keys spread over buckets and probe windows like real
 * hashes would), the number itself in bytes 8..15 so a test can map a key seen in bm_foreach back to i. */
static inline bm_key tu_key(uint64_t i)
{
    bm_key k;
    uint64_t h0 = tu_mix64(i ^ 0x5151515151515151ull);
    for (int b = 0; b < 8; b++)
        k.bytes[b] = (uint8_t)(h0 >> (56 - 8 * b));
    for (int b = 0; b < 8; b++)
        k.bytes[8 + b] = (uint8_t)(i >> (8 * b));
    uint64_t h1 = tu_mix64(i + 17), h2 = tu_mix64(i + 91);
    memcpy(k.bytes + 16, &h1, 8);
    memcpy(k.bytes + 24, &h2, 8);
    return k;
}

static inline uint64_t tu_key_index(const bm_key *k)
{
    uint64_t i = 0;
    for (int b = 0; b < 8; b++)
        i |= (uint64_t)k->bytes[8 + b] << (8 * b);
    return i;
}

/* tu_key(i) moved into bucket `bucket` of a map with nbuckets (a power of two) buckets, by overwriting the
 * top log2(nbuckets) bits of byte 0..7 read big-endian (the documented sharding rule). */
static inline bm_key tu_key_in_bucket(uint64_t i, uint32_t bucket, uint32_t nbuckets)
{
    bm_key k = tu_key(i);
    unsigned bits = 0;
    while ((1u << bits) < nbuckets)
        bits++;
    if (bits == 0)
        return k;
    uint64_t lead = 0;
    for (int b = 0; b < 8; b++)
        lead = (lead << 8) | k.bytes[b];
    lead = (lead & (~0ull >> bits)) | ((uint64_t)bucket << (64 - bits));
    for (int b = 0; b < 8; b++)
        k.bytes[b] = (uint8_t)(lead >> (56 - 8 * b));
    return k;
}

/* ---- values ---- */

/* A byte pattern determined by (seed, byte offset) so any slice of a value can be checked on its own. */
static inline void tu_fill(void *buf, size_t bytes, uint64_t seed)
{
    uint8_t *p = buf;
    for (size_t off = 0; off < bytes; off += 8) {
        uint64_t w = tu_mix64(seed * 0x100000001b3ull + off);
        size_t chunk = bytes - off < 8 ? bytes - off : 8;
        memcpy(p + off, &w, chunk);
    }
}

static inline void *tu_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    ck_assert_msg(p != NULL, "malloc(%zu) failed", n);
    return p;
}

/* The value stored under k must be exactly (elems[0..n), rc). Checks bm_get (with a larger buffer than
 * needed, to catch over-copies) and bm_read (the zero-copy path). */
typedef struct tu_read_capture {
    int calls;
    uint32_t n;
    uint64_t rc;
    bool match;
    const void *want;
    size_t want_bytes;
} tu_read_capture;

static inline void tu_read_capture_fn(const bm_value *v, void *ctx)
{
    tu_read_capture *c = ctx;
    c->calls++;
    c->n = v->n;
    c->rc = v->refcount;
    c->match = c->want_bytes == 0 || (v->elems != NULL && memcmp(v->elems, c->want, c->want_bytes) == 0);
}

/* The helpers below report the caller's line: Check would otherwise blame the helper's own line. */
#define tu_expect_value(m, k, es, elems, n, rc) tu_expect_value_at(__LINE__, m, k, es, elems, n, rc)
#define tu_expect_u64(m, k, x, rc) tu_expect_u64_at(__LINE__, m, k, x, rc)
#define tu_expect_absent(m, k) tu_expect_absent_at(__LINE__, m, k)

static inline void tu_expect_value_at(int line, bm_map *m, const bm_key *k, uint32_t elem_size,
                                      const void *elems, uint32_t n, uint64_t rc)
{
    size_t bytes = (size_t)n * elem_size;
    size_t cap_elems = (size_t)n + 2;
    uint8_t *buf = tu_xmalloc(cap_elems * elem_size);
    memset(buf, 0xA5, cap_elems * elem_size);
    uint32_t got_n = 0xDEADBEEF;
    uint64_t got_rc = 0xDEADBEEFDEADBEEFull;
    int r = bm_get(m, k, buf, (uint32_t)cap_elems, &got_n, &got_rc);
    ck_assert_msg(r == 0, "line %d: bm_get returned %d (%s)", line, r, bm_strerror(r));
    ck_assert_msg(got_n == n, "line %d: bm_get n=%u, expected %u", line, got_n, n);
    ck_assert_msg(got_rc == rc, "line %d: bm_get refcount=%" PRIu64 ", expected %" PRIu64, line, got_rc, rc);
    ck_assert_msg(bytes == 0 || memcmp(buf, elems, bytes) == 0, "line %d: bm_get returned wrong element bytes",
                  line);
    for (size_t b = bytes; b < cap_elems * elem_size; b++)
        ck_assert_msg(buf[b] == 0xA5, "line %d: bm_get wrote past the value's %zu bytes (byte %zu)", line, bytes,
                      b);
    free(buf);

    tu_read_capture c = {.want = elems, .want_bytes = bytes};
    r = bm_read(m, k, tu_read_capture_fn, &c);
    ck_assert_msg(r == 0, "line %d: bm_read returned %d (%s)", line, r, bm_strerror(r));
    ck_assert_msg(c.calls == 1, "line %d: bm_read called its callback %d times", line, c.calls);
    ck_assert_msg(c.n == n, "line %d: bm_read n=%u, expected %u", line, c.n, n);
    ck_assert_msg(c.rc == rc, "line %d: bm_read refcount=%" PRIu64 ", expected %" PRIu64, line, c.rc, rc);
    ck_assert_msg(c.match, "line %d: bm_read saw wrong element bytes", line);
}

/* A u64 list of one element — the upstream tests' value type. */
static inline void tu_expect_u64_at(int line, bm_map *m, const bm_key *k, uint64_t x, uint64_t rc)
{
    tu_expect_value_at(line, m, k, 8, &x, 1, rc);
}

static inline void tu_expect_absent_at(int line, bm_map *m, const bm_key *k)
{
    uint32_t n = 77;
    uint64_t rc = 77;
    uint8_t buf[64];
    int r = bm_get(m, k, buf, 1, &n, &rc);
    ck_assert_msg(r == BM_ENOTFOUND, "line %d: bm_get of an absent key returned %d (%s)", line, r, bm_strerror(r));
    r = bm_get(m, k, NULL, 0, NULL, NULL);
    ck_assert_msg(r == BM_ENOTFOUND, "line %d: bm_get(cap 0) of an absent key returned %d (%s)", line, r,
                  bm_strerror(r));
    tu_read_capture c = {0};
    r = bm_read(m, k, tu_read_capture_fn, &c);
    ck_assert_msg(r == BM_ENOTFOUND, "line %d: bm_read of an absent key returned %d (%s)", line, r,
                  bm_strerror(r));
    ck_assert_msg(c.calls == 0, "line %d: bm_read called its callback for an absent key", line);
}

/* ---- maps ---- */

static inline bm_map *tu_open_cfg(const bm_config *cfg)
{
    bm_map *m = NULL;
    int r = bm_open(cfg, &m);
    ck_assert_msg(r == 0, "bm_open(elem_size=%u, max_buckets=%u, max_search=%u) returned %d (%s)", cfg->elem_size,
                  cfg->max_buckets, cfg->max_search, r, bm_strerror(r));
    ck_assert_ptr_nonnull(m);
    return m;
}

static inline bm_map *tu_open(uint32_t elem_size, uint32_t max_buckets, uint32_t max_search)
{
    bm_config cfg = {.elem_size = elem_size, .max_buckets = max_buckets, .max_search = max_search};
    return tu_open_cfg(&cfg);
}

/* ---- file system ---- */

static inline const char *tu_tmp_base(void)
{
    const char *t = getenv("TMPDIR");
    return (t && *t) ? t : "/tmp";
}

/* A fresh private directory; path must hold PATH_MAX bytes. */
static inline void tu_mkdtemp(char *path, const char *tag)
{
    snprintf(path, PATH_MAX, "%s/bmtest_%s_XXXXXX", tu_tmp_base(), tag);
    ck_assert_msg(mkdtemp(path) != NULL, "mkdtemp(%s): %s", path, strerror(errno));
}

static inline int tu_rm_cb(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    remove(p);
    return 0;
}

/* rm -rf; used only on directories the test created itself. */
static inline void tu_rmrf(const char *path)
{
    nftw(path, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Entries of a directory other than . and ..; -1 when it cannot be opened. */
static inline int tu_dir_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* Open descriptors of this process (the directory stream's own fd is excluded). */
static inline int tu_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_msg(d != NULL, "cannot open /proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* Lines of /proc/self/maps whose path starts with prefix. */
static inline int tu_maps_under(const char *prefix)
{
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_msg(f != NULL, "cannot open /proc/self/maps");
    char line[PATH_MAX + 256];
    int n = 0;
    size_t plen = strlen(prefix);
    while (fgets(line, sizeof line, f)) {
        char *p = strchr(line, '/');
        if (p && strncmp(p, prefix, plen) == 0 && (p[plen] == '/' || p[plen] == '\n' || p[plen] == ' ' ||
                                                   p[plen] == '\0'))
            n++;
    }
    fclose(f);
    return n;
}

static inline void tu_write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "fopen(%s): %s", path, strerror(errno));
    fputs(content, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* True when the file exists and holds exactly content. */
static inline bool tu_file_is(const char *path, const char *content)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[4096];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    return strcmp(buf, content) == 0;
}

/* Check's timeouts assume an optimized build; sanitizers make everything several times slower. */
/* Flips one bit of byte `at` of the first copy of pat found in the *.bm files of dirs[0..ndirs) (an open
 * map sees it at once: its mappings share the page cache pwrite changes). Returns the copies found: a test
 * needs exactly one, or it cannot tell which copy the map uses. */
static inline int tu_flip_in_bm_files(const char *const *dirs, int ndirs, const void *pat, size_t len, size_t at)
{
    int found = 0;
    for (int d = 0; d < ndirs; d++) {
        DIR *dir = opendir(dirs[d]);
        ck_assert_ptr_nonnull(dir);
        struct dirent *de;
        while ((de = readdir(dir))) {
            size_t nl = strlen(de->d_name);
            if (nl < 4 || strcmp(de->d_name + nl - 3, ".bm"))
                continue;
            char path[PATH_MAX + 256];
            snprintf(path, sizeof path, "%s/%s", dirs[d], de->d_name);
            int fd = open(path, O_RDWR);
            ck_assert_int_ge(fd, 0);
            struct stat sb;
            ck_assert_int_eq(fstat(fd, &sb), 0);
            uint8_t *buf = tu_xmalloc((size_t)sb.st_size + 1);
            ck_assert_int_eq(pread(fd, buf, (size_t)sb.st_size, 0), sb.st_size);
            for (off_t o = 0; o + (off_t)len <= sb.st_size; o++) {
                if (memcmp(buf + o, pat, len))
                    continue;
                if (!found++) {
                    uint8_t b = buf[o + (off_t)at] ^ 0x10;
                    ck_assert_int_eq(pwrite(fd, &b, 1, o + (off_t)at), 1);
                }
            }
            free(buf);
            close(fd);
        }
        closedir(dir);
    }
    return found;
}

#define TU_TIMEOUT 240

#endif /* BM_TESTS_TU_H */
