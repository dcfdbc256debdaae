/*
 * snapshot.h — a bucket copied out as a packed sequence of records, so bm_foreach can call the user's
 * function with no lock and no read-side section held.
 */
#ifndef BM_SNAPSHOT_H
#define BM_SNAPSHOT_H

#include "common/bm_mem.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct snap_rec {
    uint64_t key[4];
    uint64_t rc;
    uint32_t n;
    uint32_t bytes; /* n * elem_size; the elements follow, padded to 8 */
};

struct snap_buf {
    uint8_t *p;
    size_t len, cap;
};

static inline size_t snap_rec_size(const struct snap_rec *r) { return sizeof(*r) + ((r->bytes + 7u) & ~7u); }

static inline int snap_append(struct snap_buf *b, const uint64_t k[4], uint64_t rc, uint32_t n, uint32_t bytes,
                              const void *elems)
{
    size_t need = sizeof(struct snap_rec) + ((bytes + 7u) & ~7u);
    if (b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + need)
            cap *= 2;
        uint8_t *p = bm_realloc(b->p, cap);
        if (!p)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    struct snap_rec *r = (struct snap_rec *)(b->p + b->len);
    memcpy(r->key, k, 32);
    r->rc = rc;
    r->n = n;
    r->bytes = bytes;
    if (bytes)
        memcpy(r + 1, elems, bytes);
    b->len += need;
    return 0;
}

#endif
