/*
 * bm_mem.h — the library's heap: a dedicated jemalloc arena when the host process has jemalloc (the host
 * opts in by linking or preloading it), else the process's own malloc. The library never links an
 * allocator itself, so linking it never changes the host's malloc. See bm_mem.c.
 */
#ifndef BM_MEM_H
#define BM_MEM_H

#include <stddef.h>

/* NULL on failure (never aborts). */
void *bm_malloc(size_t n);
void *bm_calloc(size_t n, size_t size);
void *bm_realloc(void *p, size_t n);
/* Aligned to align (a power of two), zeroed. */
void *bm_aligned_zalloc(size_t align, size_t n);
void bm_free(void *p);
char *bm_strdup(const char *s);
/* 0 and the library's jemalloc arena index in *arena, or -1 when the library uses the process's malloc. */
int bm_mem_arena(unsigned *arena);

#endif
