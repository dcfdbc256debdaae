/*
 * bm_atomic.h — every shared-memory access of the library goes through these helpers, so the ordering of
 * each one is visible at the call site and ThreadSanitizer sees atomics, not plain races.
 *
 * Conventions: *_acq / *_rel name the C11 ordering; *_rlx is relaxed (a counter, or data validated later by
 * a seqcount). Fences pair with the seqcount protocol in runtime/entry.h.
 */
#ifndef BM_ATOMIC_H
#define BM_ATOMIC_H

#include <stdint.h>

#define bm_load_rlx(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define bm_load_acq(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define bm_store_rlx(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define bm_store_rel(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define bm_add_rlx(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define bm_sub_rlx(p, v) __atomic_fetch_sub((p), (v), __ATOMIC_RELAXED)
#define bm_fence_acq() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define bm_fence_rel() __atomic_thread_fence(__ATOMIC_RELEASE)

/* Raise *p to at least v (statistics only). */
static inline void bm_max_rlx(uint64_t *p, uint64_t v)
{
    uint64_t cur = bm_load_rlx(p);
    while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

#define BM_CACHELINE 64
#define bm_likely(x) __builtin_expect(!!(x), 1)
#define bm_unlikely(x) __builtin_expect(!!(x), 0)

#endif
