/* The README's API example: open a temporary map, write a few values, read them back, print a table. */
#include <bucketmap.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bm_key key_of(const char *name)
{
    bm_key k;
    memset(&k, 0, sizeof(k));
    memcpy(k.bytes, name, strnlen(name, sizeof(k.bytes) - 1));
    return k;
}

static int print_entry(const bm_key *k, const bm_value *v, void *ctx)
{
    (void)ctx;
    const uint64_t *e = v->elems;
    printf("%-10.32s %8u %10" PRIu64 "   ", (const char *)k->bytes, v->n, v->refcount);
    for (uint32_t i = 0; i < v->n && i < 6; i++)
        printf("%" PRIu64 " ", e[i]);
    printf("%s\n", v->n > 6 ? "..." : "");
    return 0;
}

static int bump(const bm_value *cur, bm_value *out, void *ctx)
{
    (void)ctx;
    if (!cur)
        return BM_KEEP;
    *out = *cur;
    out->refcount = cur->refcount + 10;
    return BM_WRITE;
}

int main(void)
{
    bm_config cfg = {.elem_size = sizeof(uint64_t), .max_buckets = 4};
    bm_map *m;
    int err = bm_open(&cfg, &m);
    if (err) {
        fprintf(stderr, "bm_open: %s\n", bm_strerror(err));
        return 1;
    }
    const char *names[] = {"alice", "bob", "carol", "dave", "erin"};
    for (uint32_t i = 0; i < 5; i++) {
        uint64_t elems[8];
        for (uint32_t j = 0; j < 8; j++)
            elems[j] = 100 * (i + 1) + j;
        bm_key k = key_of(names[i]);
        if ((err = bm_insert(m, &k, elems, i * 2, 1))) { /* 0, 2, 4, 6, 8 elements */
            fprintf(stderr, "bm_insert: %s\n", bm_strerror(err));
            return 1;
        }
    }
    bm_key k = key_of("bob");
    uint64_t rc;
    bm_addref(m, &k, &rc);
    k = key_of("carol");
    bm_update(m, &k, bump, NULL);
    k = key_of("erin");
    bm_delete(m, &k);
    uint64_t first[2];
    uint32_t n;
    k = key_of("dave");
    err = bm_get(m, &k, first, 2, &n, &rc);
    printf("bm_get(dave): %s, n=%u refcount=%" PRIu64 " first=%" PRIu64 ",%" PRIu64 "\n", bm_strerror(err), n, rc,
           first[0], first[1]);
    k = key_of("erin");
    printf("bm_get(erin): %s\n\n", bm_strerror(bm_get(m, &k, NULL, 0, NULL, NULL)));
    printf("%-10s %8s %10s   %s\n", "key", "n", "refcount", "elements");
    bm_foreach(m, print_entry, NULL);
    printf("\n%" PRIu64 " keys\n", bm_count(m));
    bm_close(m);
    return 0;
}
