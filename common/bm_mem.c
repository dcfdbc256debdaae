/*
 * One jemalloc arena for the library, created on first use. If the arena cannot be created (jemalloc
 * refuses, e.g. under a sanitizer build that replaces malloc), allocations fall back to jemalloc's default
 * arenas: correctness never depends on the arena, only accounting does.
 */
#include "common/bm_mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef BM_MEM_LIBC
/* Sanitizer builds: the sanitizers see (and LeakSanitizer checks) only allocations made through malloc. */
void *bm_malloc(size_t n) { return malloc(n ? n : 1); }
void *bm_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
void *bm_realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
void *bm_aligned_zalloc(size_t align, size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : 1) != 0)
        return NULL;
    memset(p, 0, n);
    return p;
}
void bm_free(void *p) { free(p); }
#else
#include <jemalloc/jemalloc.h>

static pthread_once_t arena_once = PTHREAD_ONCE_INIT;
static int arena_flags; /* MALLOCX_ARENA(ix) | MALLOCX_TCACHE_NONE, or 0 for the default arenas */

static void arena_init(void)
{
    unsigned ix;
    size_t sz = sizeof(ix);
    if (mallctl("arenas.create", &ix, &sz, NULL, 0) == 0)
        /* Thread caches are per-thread, not per-arena; bypassing them keeps every allocation in our arena.
         * The library allocates only off the hot read path, so the cache buys nothing. */
        arena_flags = MALLOCX_ARENA(ix) | MALLOCX_TCACHE_NONE;
}

void *bm_malloc(size_t n)
{
    pthread_once(&arena_once, arena_init);
    return mallocx(n ? n : 1, arena_flags);
}

void *bm_calloc(size_t n, size_t size)
{
    pthread_once(&arena_once, arena_init);
    if (size && n > (size_t)-1 / size)
        return NULL;
    size_t total = n * size;
    return mallocx(total ? total : 1, arena_flags | MALLOCX_ZERO);
}

void *bm_realloc(void *p, size_t n)
{
    if (!p)
        return bm_malloc(n);
    return rallocx(p, n ? n : 1, arena_flags);
}

void *bm_aligned_zalloc(size_t align, size_t n)
{
    pthread_once(&arena_once, arena_init);
    return mallocx(n ? n : 1, arena_flags | MALLOCX_ZERO | MALLOCX_ALIGN(align));
}

void bm_free(void *p)
{
    if (p)
        dallocx(p, arena_flags & ~MALLOCX_ZERO);
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
