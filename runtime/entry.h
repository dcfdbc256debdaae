/*
 * entry.h — the on-disk index entry, its state word, and the seqcount protocol that lets readers copy an
 * entry without locks and never return a torn one.
 *
 * Index entry: 64 bytes, one cache line, 64-byte aligned in the file:
 *
 *   word 0     state      tag:2 | busy:1 | shadow:1 | tomb:1 | version:27 | sum:32
 *   words 1-4  key        32 bytes
 *   word 5     refcount   full u64
 *   words 6-7  payload    INLINE: the one element (elem_size <= 16)
 *                         DATA:   word 6 = data ref (created_pow2:8 | offset:56), word 7 = n
 *
 * Tags (the durable state of a slot; there is no RAM occupancy map, so a reopened file reads back as is):
 *
 *   FREE --insert--> EMPTY | INLINE | DATA --delete--> FREE
 *                    (any of the three) --update/addref/unref--> (any of the three), same key
 *
 * Shadow bit (persistent maps, runtime/checkpoint.c): an entry that the last checkpoint holds and whose key
 * got a new value in a data cell keeps its old contents, marked SHADOW, until the next checkpoint commits;
 * the new value lives in another slot. Readers skip shadowed entries; recovery after a power loss brings
 * one back when the newer slot did not reach the disk. Deleting the key adds the tomb bit to its shadows, so
 * recovery after a SIGKILL never brings back a deleted key. The checksum covers neither bit.
 *
 * Seqcount protocol (writer holds the bucket's mutex; one writer per entry at a time):
 *   writer: state |= BUSY (relaxed); release fence; store fields (relaxed);
 *           state = new tag | version+1 | sum (release)
 *   reader: s1 = state (acquire); skip FREE; spin while BUSY; load fields (relaxed); acquire fence;
 *           s2 = state (relaxed); the copy is good iff s1 == s2.
 * Retries are bounded by concurrent writes to that same entry. The version makes ABA need 2^29 writes to one
 * entry during one read. Every field is accessed as an aligned 8-byte atomic, so a copy is word-exact and
 * race-free in the C11 sense.
 *
 * sum: a 32-bit checksum of tag, key, refcount and payload and, for DATA entries, of the checksum stored in
 * the data cell's header (which covers the cell's elements). So an entry accepts only the exact cell
 * contents it was written with: a cell that another key or another version of this key reused since can
 * never pass as this entry's value. Readers check it after a good copy and refuse a mismatch with
 * BM_ECORRUPT; the verify tool reports it. It catches an entry torn by a power loss or damaged on disk.
 *
 * Data ref: a data file of size class c doubles by moving cell i to i << 1, so a ref stores the file's pow2
 * when the cell was allocated and the offset then; today's cell = offset << (pow2_now - created_pow2), and
 * index entries never need rewriting when data files grow.
 */
#ifndef BM_ENTRY_H
#define BM_ENTRY_H

#include "common/bm_atomic.h"

#include <stdint.h>
#include <string.h>

enum entry_tag { TAG_FREE = 0, TAG_EMPTY = 1, TAG_INLINE = 2, TAG_DATA = 3 };

#define ENTRY_TAG_MASK 0x3ull
#define ENTRY_BUSY 0x4ull
#define ENTRY_SHADOW 0x8ull
#define ENTRY_TOMB 0x10ull /* with SHADOW: the key was deleted since; recovery drops it */
#define ENTRY_VER_SHIFT 5
#define ENTRY_VER_MASK ((1ull << 27) - 1)
#define ENTRY_INLINE_MAX 16u

struct bkt_entry {
    uint64_t state;
    uint64_t key[4];
    uint64_t rc;
    uint64_t p[2];
};
_Static_assert(sizeof(struct bkt_entry) == 64, "an entry is one cache line");

/* A copy of an entry's value words, taken under the seqcount. */
struct entry_snap {
    uint64_t state;
    uint64_t rc;
    uint64_t p[2];
};

static inline unsigned entry_tag(uint64_t state) { return (unsigned)(state & ENTRY_TAG_MASK); }

static inline void key_words(const void *key, uint64_t w[4]) { memcpy(w, key, 32); }

static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* Keyed 64-bit hash of a key; good mixing in every bit for random and structured keys alike. */
static inline uint64_t entry_hash(const uint64_t k[4], uint64_t seed)
{
    uint64_t a = fold_mul(k[0] ^ seed ^ 0xa0761d6478bd642full, k[1] ^ 0xe7037ed1a0b428dbull);
    uint64_t b = fold_mul(k[2] ^ seed ^ 0x8ebc6af09c88c6e3ull, k[3] ^ 0x589965cc75374cc3ull);
    return fold_mul(a ^ 0x1d8e4e27c47d124full, b ^ seed);
}

/* hash -> [0, cap) without a division. */
static inline uint64_t entry_home(uint64_t h, uint64_t cap) { return (uint64_t)(((__uint128_t)h * cap) >> 64); }

/* Every reader computes this, so its words are mixed in parallel (independent multiplies by distinct odd
 * constants, summed) rather than in a chain: a few cycles of latency on top of the entry's cache miss. Any
 * single torn or flipped word changes it; two words changed together go undetected with odds ~2^-32. */
static inline uint32_t entry_sum(unsigned tag, const uint64_t k[4], uint64_t rc, uint64_t p0, uint64_t p1)
{
    uint64_t a = k[0] * 0x9E3779B97F4A7C15ull + k[1] * 0xC2B2AE3D27D4EB4Full;
    uint64_t b = k[2] * 0x165667B19E3779F9ull + k[3] * 0xD6E8FEB86659FD93ull;
    uint64_t c = rc * 0xFF51AFD7ED558CCDull + p0 * 0xC4CEB9FE1A85EC53ull;
    uint64_t d = p1 * 0x94D049BB133111EBull + (uint64_t)(tag + 1) * 0xBF58476D1CE4E5B9ull;
    uint64_t h = (a + b) + (c + d);
    return (uint32_t)(h >> 32) ^ (uint32_t)h;
}

/* The checksum an entry stores: its own words' sum, bound to its data cell's sum (0 for other tags). */
static inline uint32_t entry_sum_bound(unsigned tag, const uint64_t k[4], uint64_t rc, uint64_t p0, uint64_t p1,
                                       uint32_t cellsum)
{
    return entry_sum(tag, k, rc, p0, p1) ^ (cellsum * 0x9E3779B1u);
}

/* Whether a state word's checksum matches the entry words read with it and (DATA) the cell's stored sum. */
static inline int entry_sum_ok(uint64_t state, const uint64_t k[4], uint64_t rc, uint64_t p0, uint64_t p1,
                               uint32_t cellsum)
{
    return (uint32_t)(state >> 32) == entry_sum_bound(entry_tag(state), k, rc, p0, p1, cellsum);
}

/* Checksum of a data cell's elements (stored in the cell header's upper half). */
static inline uint32_t cell_sum(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0x6a09e667f3bcc909ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = fold_mul(h ^ w, 0x9E3779B97F4A7C15ull);
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, b + i, n - i);
        h = fold_mul(h ^ w, 0xbb67ae8584caa73bull);
    }
    return (uint32_t)(h ^ (h >> 32));
}

/* ---- reader side ---- */

static inline void entry_load_key(const struct bkt_entry *e, uint64_t k[4])
{
    for (int i = 0; i < 4; i++)
        k[i] = bm_load_rlx(&e->key[i]);
}

static inline int key_eq(const uint64_t a[4], const uint64_t b[4])
{
    return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* Spins on a BUSY entry before the reader asks whether a writer is really there. */
#define ENTRY_BUSY_SPINS 4096u

/*
 * If e holds key k, copies its value words to *out and returns 1; returns 0 if it holds another key or is
 * free or shadowed; -1 after ENTRY_BUSY_SPINS spins on a BUSY bit. *retries counts how often a concurrent
 * writer forced a re-read. Call inside a read-side section.
 */
static inline int entry_read_if_key(const struct bkt_entry *e, const uint64_t k[4], struct entry_snap *out,
                                    uint64_t *retries)
{
    for (;;) {
        uint64_t s1 = bm_load_acq(&e->state);
        if (entry_tag(s1) == TAG_FREE || (s1 & ENTRY_SHADOW))
            return 0; /* FREE, FREE being filled (BUSY), or an older version kept for recovery */
        if (bm_unlikely(s1 & ENTRY_BUSY)) {
            /* A writer is mid-store; a bit that stays set with no writer in the bucket is damage, which the
             * caller tells apart (bkt_lookup checks the bucket's mutation counter). */
            if (++*retries % ENTRY_BUSY_SPINS == 0)
                return -1;
            __builtin_ia32_pause();
            continue;
        }
        uint64_t ek[4];
        entry_load_key(e, ek);
        if (!key_eq(ek, k)) {
            /* A torn key can only hide k if k was being deleted or replaced meanwhile: then "not here" is a
             * valid answer at some instant of the read. A false match is caught by the validation below. */
            return 0;
        }
        out->rc = bm_load_rlx(&e->rc);
        out->p[0] = bm_load_rlx(&e->p[0]);
        out->p[1] = bm_load_rlx(&e->p[1]);
        bm_fence_acq();
        if (bm_likely(bm_load_rlx(&e->state) == s1)) {
            out->state = s1;
            return 1;
        }
        (*retries)++;
    }
}

/* ---- writer side (bucket mutex held) ---- */

static inline void entry_write_begin(struct bkt_entry *e)
{
    bm_store_rlx(&e->state, bm_load_rlx(&e->state) | ENTRY_BUSY);
    bm_fence_rel();
}

/* Publishes the entry with the given checksum and shadow bit: a moved entry keeps its own sum, so moving
 * never launders damage into a valid-looking entry. */
static inline void entry_write_end_sum(struct bkt_entry *e, unsigned tag, uint32_t sum, uint64_t shadow)
{
    uint64_t s = bm_load_rlx(&e->state);
    uint64_t ver = ((s >> ENTRY_VER_SHIFT) + 1) & ENTRY_VER_MASK;
    bm_store_rel(&e->state, (uint64_t)sum << 32 | ver << ENTRY_VER_SHIFT | shadow | tag);
}

/* cellsum: the sum in the header of the entry's data cell (DATA), else 0. */
static inline void entry_write_end(struct bkt_entry *e, unsigned tag, uint32_t cellsum)
{
    entry_write_end_sum(e, tag, entry_sum_bound(tag, e->key, e->rc, e->p[0], e->p[1], cellsum), 0);
}

/* Sets the shadow / tomb bits to `flags` with one release store (contents and sum unchanged): readers that
 * copied the entry before see the version change and re-read. */
static inline void entry_set_flags(struct bkt_entry *e, uint64_t flags)
{
    uint64_t s = bm_load_rlx(&e->state);
    uint64_t ver = ((s >> ENTRY_VER_SHIFT) + 1) & ENTRY_VER_MASK;
    s = (s & ~(ENTRY_VER_MASK << ENTRY_VER_SHIFT) & ~(ENTRY_SHADOW | ENTRY_TOMB)) | ver << ENTRY_VER_SHIFT;
    bm_store_rel(&e->state, s | flags);
}

/* Stores one value word of an entry being written (between begin and end). */
#define entry_set(e, field, v) bm_store_rlx(&(e)->field, (v))

/* ---- data refs and size classes ---- */

#define DATA_REF(pow2, off) (((uint64_t)(off) << 8) | (uint64_t)(pow2))
#define DATA_REF_POW2(ref) ((unsigned)((ref) & 0xff))
#define DATA_REF_OFF(ref) ((ref) >> 8)

/* Size class of a list of n elements: class c holds up to 2^c elements. */
static inline unsigned size_class(uint32_t n) { return n <= 1 ? 0 : 64 - (unsigned)__builtin_clzll((uint64_t)n - 1); }

#endif
