/*
 * The library's heap. Which malloc a process uses is the host's choice, so the library never links an
 * allocator of its own (linking jemalloc would make it the whole process's malloc: Debian builds it
 * without a symbol prefix). Instead, on first use:
 *   - if the process already has jemalloc (the host linked or preloaded it: that is how a host opts in),
 *     the library allocates from a dedicated jemalloc arena of its own, so its memory is accounted apart
 *     from the host's and never fragments the host's arenas;
 *   - otherwise it uses the process's malloc, whatever that is.
 * The choice is made once and never changes, so every block is freed by the allocator that made it.
 */
#include "common/bm_mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void *libc_aligned_zalloc(size_t align, size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : 1) != 0)
        return NULL;
    memset(p, 0, n);
    return p;
}

#if defined(BM_MEM_LIBC) || !defined(BM_HAVE_JEMALLOC_H)
/* Sanitizer builds (the sanitizers see, and LeakSanitizer checks, only allocations made through malloc),
 * and builds without jemalloc's header: the process's malloc, always. */
void *bm_malloc(size_t n) { return malloc(n ? n : 1); }
void *bm_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
void *bm_realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
void *bm_aligned_zalloc(size_t align, size_t n) { return libc_aligned_zalloc(align, n); }
void bm_free(void *p) { free(p); }
int bm_mem_arena(unsigned *arena)
{
    (void)arena;
    return -1;
}
#else
#include <dlfcn.h>
/* Only for the MALLOCX_* flag encodings; nothing of jemalloc is linked. */
#include <jemalloc/jemalloc.h>

/* jemalloc's entry points as found in the process, all four from the same object. */
static struct {
    void *(*mallocx)(size_t, int);
    void *(*rallocx)(void *, size_t, int);
    void (*dallocx)(void *, int);
    int (*mallctl)(const char *, void *, size_t *, void *, size_t);
} je;
static pthread_once_t mem_once = PTHREAD_ONCE_INIT;
static int arena_flags;      /* MALLOCX_ARENA(ix) | MALLOCX_TCACHE_NONE */
static unsigned arena_index;
static int use_je;           /* 1: jemalloc arena, 0: the process's malloc */

static void *find(const char *name, const void **base)
{
    void *f = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    if (!f || !dladdr(f, &info))
        return NULL;
    if (*base && *base != info.dli_fbase)
        return NULL; /* two jemallocs in one process: use neither rather than mix them */
    *base = info.dli_fbase;
    return f;
}

static void mem_init(void)
{
    const void *base = NULL;
    void *f[4] = {find("mallocx", &base), find("rallocx", &base), find("dallocx", &base),
                  find("mallctl", &base)};
    if (!f[0] || !f[1] || !f[2] || !f[3])
        return;
    /* dlsym returns an object pointer; POSIX guarantees it converts to the function's pointer. */
    memcpy(&je.mallocx, &f[0], sizeof(f[0]));
    memcpy(&je.rallocx, &f[1], sizeof(f[1]));
    memcpy(&je.dallocx, &f[2], sizeof(f[2]));
    memcpy(&je.mallctl, &f[3], sizeof(f[3]));
    unsigned ix;
    size_t sz = sizeof(ix);
    if (je.mallctl("arenas.create", &ix, &sz, NULL, 0) != 0)
        return; /* jemalloc refused an arena: the process's malloc it is */
    /* Thread caches are per thread, not per arena; bypassing them keeps every allocation in our arena.
     * The library allocates only off the hot read path, so the cache buys nothing. */
    arena_flags = MALLOCX_ARENA(ix) | MALLOCX_TCACHE_NONE;
    arena_index = ix;
    use_je = 1;
}

static inline int jemalloc_mode(void)
{
    pthread_once(&mem_once, mem_init);
    return use_je;
}

void *bm_malloc(size_t n)
{
    if (!jemalloc_mode())
        return malloc(n ? n : 1);
    return je.mallocx(n ? n : 1, arena_flags);
}

void *bm_calloc(size_t n, size_t size)
{
    if (size && n > (size_t)-1 / size)
        return NULL;
    if (!jemalloc_mode())
        return calloc(n ? n : 1, size ? size : 1);
    size_t total = n * size;
    return je.mallocx(total ? total : 1, arena_flags | MALLOCX_ZERO);
}

void *bm_realloc(void *p, size_t n)
{
    if (!jemalloc_mode())
        return realloc(p, n ? n : 1);
    if (!p)
        return je.mallocx(n ? n : 1, arena_flags);
    return je.rallocx(p, n ? n : 1, arena_flags);
}

void *bm_aligned_zalloc(size_t align, size_t n)
{
    if (!jemalloc_mode())
        return libc_aligned_zalloc(align, n);
    return je.mallocx(n ? n : 1, arena_flags | MALLOCX_ZERO | MALLOCX_ALIGN(align));
}

void bm_free(void *p)
{
    if (!p)
        return;
    /* A non-NULL p was allocated, so the choice is made: no need to run the once again. */
    if (use_je)
        je.dallocx(p, MALLOCX_TCACHE_NONE);
    else
        free(p);
}

int bm_mem_arena(unsigned *arena)
{
    if (!jemalloc_mode())
        return -1;
    *arena = arena_index;
    return 0;
}
#endif

char *bm_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = bm_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
