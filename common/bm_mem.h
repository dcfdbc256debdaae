/*
 * bm_mem.h — the library's heap. Every allocation comes from one dedicated jemalloc arena, so the
 * library's memory is accounted apart from the host's and never fragments the host's arenas.
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

#endif
