/*
 * The host's malloc is the host's choice. Built three ways (see CMakeLists.txt):
 *   - against libbucketmap.so and against libbucketmap.a, host without jemalloc: after using a map,
 *     malloc/free/realloc must still be libc's, and no jemalloc may be in the process at all;
 *   - with EXPECT_JEMALLOC, a host that linked jemalloc itself (its way of opting in): malloc is the
 *     host's jemalloc, and the library keeps its heap in a dedicated arena of its own (the map object
 *     lives in an arena created by the library, not in the host's).
 */
#define _GNU_SOURCE 1
#include <bucketmap.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef EXPECT_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

/* The malloc a host without jemalloc has: libc's, or the sanitizer runtime's in sanitizer builds. */
#ifndef HOST_MALLOC
#define HOST_MALLOC "libc.so"
#endif

#define CHECK(c)                                                                                           \
    do {                                                                                                   \
        if (!(c)) {                                                                                        \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #c);                                 \
            exit(1);                                                                                       \
        }                                                                                                  \
    } while (0)

/* The file name of the object that defines symbol fn as the process resolves it. */
static const char *provider(void *fn)
{
    Dl_info info;
    if (!fn || !dladdr(fn, &info) || !info.dli_fname)
        return "?";
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

static void use_map(bm_map **keep)
{
    bm_config cfg = {.elem_size = 8, .max_buckets = 4, .flags = BM_F_NO_PREALLOC};
    bm_map *m;
    CHECK(bm_open(&cfg, &m) == 0);
    for (uint64_t i = 0; i < 5000; i++) {
        bm_key k;
        memset(&k, 0, sizeof(k));
        memcpy(k.bytes, &i, sizeof(i));
        uint64_t elems[3] = {i, i + 1, i + 2};
        CHECK(bm_insert(m, &k, elems, 1 + (uint32_t)(i % 3), 1) == 0);
    }
    if (keep)
        *keep = m;
    else
        bm_close(m);
}

int main(void)
{
    /* Resolve through the process's global scope, as any caller of malloc does. */
    void *m_fn = dlsym(RTLD_DEFAULT, "malloc");
    const char *before = provider(m_fn);
#ifndef EXPECT_JEMALLOC
    void *f_fn = dlsym(RTLD_DEFAULT, "free");
    void *r_fn = dlsym(RTLD_DEFAULT, "realloc");
    use_map(NULL);
    printf("malloc from %s, free from %s, realloc from %s\n", provider(m_fn), provider(f_fn), provider(r_fn));
    CHECK(strncmp(provider(m_fn), HOST_MALLOC, strlen(HOST_MALLOC)) == 0);
    CHECK(strncmp(provider(f_fn), HOST_MALLOC, strlen(HOST_MALLOC)) == 0);
    CHECK(strncmp(provider(r_fn), HOST_MALLOC, strlen(HOST_MALLOC)) == 0);
    CHECK(strcmp(before, provider(m_fn)) == 0);
    /* No jemalloc anywhere in the process, neither linked nor loaded behind the host's back. */
    CHECK(dlsym(RTLD_DEFAULT, "mallctl") == NULL);
    CHECK(dlsym(RTLD_DEFAULT, "mallocx") == NULL);
    printf("host malloc untouched\n");
#else
    unsigned narenas_before, narenas_after, map_arena, host_arena;
    size_t sz = sizeof(unsigned);
    CHECK(strncmp(before, "libjemalloc", 11) == 0);
    CHECK(mallctl("arenas.narenas", &narenas_before, &sz, NULL, 0) == 0);
    bm_map *m;
    use_map(&m);
    sz = sizeof(unsigned);
    CHECK(mallctl("arenas.narenas", &narenas_after, &sz, NULL, 0) == 0);
    CHECK(narenas_after == narenas_before + 1); /* the library created one arena */
    /* The map object itself was allocated by the library: it must live in that new arena. */
    const void *mp = m;
    sz = sizeof(unsigned);
    CHECK(mallctl("arenas.lookup", &map_arena, &sz, &mp, sizeof(mp)) == 0);
    void *host_block = malloc(100);
    CHECK(host_block);
    const void *hp = host_block;
    sz = sizeof(unsigned);
    CHECK(mallctl("arenas.lookup", &host_arena, &sz, &hp, sizeof(hp)) == 0);
    printf("malloc from %s; arenas %u -> %u; library map in arena %u, host block in arena %u\n", before,
           narenas_before, narenas_after, map_arena, host_arena);
    CHECK(map_arena == narenas_before);
    CHECK(host_arena != map_arena);
    free(host_block);
    bm_close(m);
    CHECK(strcmp(before, provider(dlsym(RTLD_DEFAULT, "malloc"))) == 0);
#endif
    return 0;
}
