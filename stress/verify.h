/*
 * verify.h — self-describing values and the shadow model that lets every read be checked while writers run.
 *
 * VALUES. Each key has a generation counter, bumped by every insert and every update that writes. The value
 * written at generation g of key i is a pure function of (run seed, i, g, d):
 *   refcount = g << 32 | check16(i, g) << 16 | (d + 32768)
 *   n        = len_min + H(i, g) mod (len_max - len_min + 1)
 *   element e, 8-byte word c = mix64(H(i, g) + ((e << 9 | c) + 1) * golden)   (truncated to elem_size)
 * where d is the refcount's offset moved by addref/unref (|d| <= D_LIMIT). A reader decodes g from the
 * refcount, checks check16 (the value belongs to this key), the element count (derived from g) and every
 * element (derived from i, g and e): a value that is torn (elements or count from one generation, refcount
 * from another), truncated, shifted, or copied from another key fails, even for n = 0.
 *
 * SHADOW MODEL. Every key has exactly one owner thread, the only thread that writes it (keys are dealt out
 * round-robin: owner = i mod owners). The owner keeps the key's expected state in a descriptor word (present,
 * generation, d) that only it writes, so its own writes are checked exactly (delete of a present key must
 * return 0, addref must return the expected refcount, bm_update's callback must see exactly the expected
 * value). Other threads only read the key.
 *
 * CONCURRENT READS: a seqcount per key. The owner makes seq odd before calling the library and even after,
 * storing the new descriptor in between:
 *     seq = s+1; release fence;  <bm_insert/...>;  desc = new (release);  seq = s+2 (release)
 * A reader does
 *     s1 = seq (acquire); d1 = desc (acquire);  <bm_get/bm_read>;  acquire fence; s2 = seq
 * If s1 == s2 and even, no write of that key overlapped the read: the value must equal d1 exactly (present
 * or absent, generation, refcount) — a lost write, a stale value or a resurrected key fails here. Otherwise
 * a write overlapped and any state the key passed through during the read is acceptable; the value must
 * still be well-formed, must not be older than d1 (generation >= d1's; a deleted generation never
 * reappears) nor newer than the overlapping writes can explain, and its refcount may have moved by at most
 * the number of overlapping writes. Absence is accepted in that case (the overlapping write may have been a
 * delete).
 * The fences make this sound in the C11 model, not only on x86: a read that observed a write of a later
 * operation also observes that operation's odd seq (release fence before the library call, acquire fence
 * before the second load), and a descriptor read with acquire was published after the library call
 * returned, so the library's read that follows it must see that write.
 *
 * CRASH (--crash-after). Before each write the owner also records the state the write will produce (next).
 * After the workers' process is killed, a key with an even seq must hold exactly desc; a key with an odd seq
 * had a write in flight and must hold exactly desc or exactly next (all or nothing); whichever it holds
 * becomes the model's state for the final check.
 *
 * FINAL CHECK. After the workers stop, every key is compared exactly with its descriptor (bm_get), bm_count
 * and the stats' entry count must equal the number of present keys, and bm_foreach must visit exactly the
 * present keys, once each, with their exact values. With --restart the same check runs after reopening.
 */
#ifndef BM_STRESS_VERIFY_H
#define BM_STRESS_VERIFY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workload.h"

/* addref/unref keep |d| below this so the offset never spills into the check bits. */
#define D_LIMIT 30000

#define DESC_PRESENT (UINT64_C(1) << 63)
/* A write of this key already failed a check: later checks of it would only repeat that report. */
#define DESC_POISON (UINT64_C(1) << 62)

struct key_state {
    _Atomic uint64_t seq;
    _Atomic uint64_t desc;
    /* The state the owner's current write will produce, stored before seq turns odd: after a crash (an odd
     * seq), the map must hold exactly desc or exactly next. */
    _Atomic uint64_t next;
};
/* The README and the --keys memory check count on this size. */
_Static_assert(sizeof(struct key_state) == 24, "struct key_state is documented as 24 bytes");

static inline uint64_t desc_make(bool present, uint32_t gen, int32_t d)
{
    return (present ? DESC_PRESENT : 0) | (uint64_t)gen << 16 | (uint16_t)(d + 32768);
}
static inline bool desc_present(uint64_t x) { return (x & DESC_PRESENT) != 0; }
static inline uint32_t desc_gen(uint64_t x) { return (uint32_t)(x >> 16); }
static inline int32_t desc_d(uint64_t x) { return (int32_t)(x & 0xffff) - 32768; }

struct vcodec {
    uint64_t seed;
    uint32_t elem_size;
    uint32_t len_min;
    uint32_t len_span; /* len_max - len_min + 1 */
};

/* What a well-formed value says about itself. */
struct vinfo {
    uint32_t gen;
    int32_t d;
    uint32_t n;
};

static inline uint64_t val_base(const struct vcodec *vc, uint64_t idx, uint32_t gen)
{
    return mix64(mix64(idx ^ vc->seed) + (uint64_t)gen * UINT64_C(0x9e3779b97f4a7c15));
}
static inline uint32_t val_len(const struct vcodec *vc, uint64_t base)
{
    return vc->len_min + (uint32_t)((base & 0xffffffffu) % vc->len_span);
}
static inline uint64_t val_refcount(const struct vcodec *vc, uint64_t idx, uint32_t gen, int32_t d)
{
    uint64_t check16 = val_base(vc, idx, gen) >> 48;
    return (uint64_t)gen << 32 | check16 << 16 | (uint16_t)(d + 32768);
}

/* Writes generation gen's elements of key idx into buf (room for len_max elements); returns their count. */
uint32_t val_fill(const struct vcodec *vc, uint64_t idx, uint32_t gen, void *buf);

/*
 * Checks that (elems[0..ncopied), ntrue elements in total, refcount) is a well-formed value of key idx and
 * fills *out. Elements are read only after the count has been validated, so a corrupt count never makes
 * it read past what the library handed over. Returns 0, or -1 with the reason in why.
 */
int val_decode(const struct vcodec *vc, uint64_t idx, const void *elems, uint32_t ncopied, uint32_t ntrue,
               uint64_t refcount, struct vinfo *out, char *why, size_t whylen);

/* "present: generation 7, 12 elements, refcount 0x..." / "absent (after generation 7)". */
void desc_describe(const struct vcodec *vc, uint64_t idx, uint64_t desc, char *buf, size_t len);

struct run;
struct worker;

/* Judges one read against the shadow model (see above) and reports a mismatch. found: the library returned
 * a value; decode_rc/vi/why: val_decode's verdict on it. */
void verify_read(struct worker *w, uint64_t idx, const char *op, uint64_t s1, uint64_t d1, uint64_t s2,
                 bool found, int decode_rc, const struct vinfo *vi, const char *why);

/* The exact end-of-run check (single-threaded, no writer running). label: "final" or "after restart".
 * Returns the number of mismatches found. */
uint64_t verify_final(struct run *run, const char *label);

#endif
