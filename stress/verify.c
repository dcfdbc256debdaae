/*
 * verify.c — value codec, the per-read judgement and the final exact check (design in verify.h).
 */
#include "verify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"

static inline uint64_t val_word(uint64_t base, uint32_t e, uint32_t c)
{
    return mix64(base + (((uint64_t)e << 9 | c) + 1) * UINT64_C(0x9e3779b97f4a7c15));
}

uint32_t val_fill(const struct vcodec *vc, uint64_t idx, uint32_t gen, void *buf)
{
    uint64_t base = val_base(vc, idx, gen);
    uint32_t n = val_len(vc, base), es = vc->elem_size;
    uint8_t *p = buf;
    for (uint32_t e = 0; e < n; e++, p += es)
        for (uint32_t off = 0; off < es; off += 8) {
            uint64_t w = val_word(base, e, off / 8);
            memcpy(p + off, &w, es - off < 8 ? es - off : 8);
        }
    return n;
}

int val_decode(const struct vcodec *vc, uint64_t idx, const void *elems, uint32_t ncopied, uint32_t ntrue,
               uint64_t refcount, struct vinfo *out, char *why, size_t whylen)
{
    uint32_t gen = (uint32_t)(refcount >> 32);
    int32_t d = (int32_t)(refcount & 0xffff) - 32768;
    if (gen == 0) {
        snprintf(why, whylen, "refcount 0x%016" PRIx64 " carries generation 0, which is never written", refcount);
        return -1;
    }
    uint64_t base = val_base(vc, idx, gen);
    if ((uint16_t)(refcount >> 16) != (uint16_t)(base >> 48)) {
        snprintf(why, whylen,
                 "refcount 0x%016" PRIx64 " does not belong to this key (check bits 0x%04x, generation %u "
                 "of this key has 0x%04x): a value of another key, or a torn/garbage refcount",
                 refcount, (unsigned)(uint16_t)(refcount >> 16), gen, (unsigned)(uint16_t)(base >> 48));
        return -1;
    }
    if (d < -D_LIMIT || d > D_LIMIT) {
        snprintf(why, whylen, "refcount 0x%016" PRIx64 " has offset %d, beyond what addref/unref can reach",
                 refcount, d);
        return -1;
    }
    uint32_t n = val_len(vc, base);
    if (ntrue != n) {
        snprintf(why, whylen,
                 "%u elements with refcount 0x%016" PRIx64 " (generation %u), but generation %u has %u elements: "
                 "torn (count and refcount from different writes) or truncated",
                 ntrue, refcount, gen, gen, n);
        return -1;
    }
    uint32_t check = ncopied < ntrue ? ncopied : ntrue, es = vc->elem_size;
    const uint8_t *p = elems;
    for (uint32_t e = 0; e < check; e++, p += es)
        for (uint32_t off = 0; off < es; off += 8) {
            uint64_t w = val_word(base, e, off / 8);
            uint32_t k = es - off < 8 ? es - off : 8;
            if (memcmp(p + off, &w, k) != 0) {
                uint64_t found = 0;
                memcpy(&found, p + off, k);
                snprintf(why, whylen,
                         "element %u of %u (bytes %u..%u) holds 0x%016" PRIx64 " but generation %u (from the "
                         "refcount 0x%016" PRIx64 ") has 0x%016" PRIx64 " there: torn, stale or foreign elements",
                         e, n, off, off + k - 1, found, gen, refcount, k < 8 ? w & ((UINT64_C(1) << 8 * k) - 1) : w);
                return -1;
            }
        }
    out->gen = gen;
    out->d = d;
    out->n = n;
    return 0;
}

void desc_describe(const struct vcodec *vc, uint64_t idx, uint64_t desc, char *buf, size_t len)
{
    uint32_t gen = desc_gen(desc);
    if (!desc_present(desc)) {
        if (gen)
            snprintf(buf, len, "absent (deleted after generation %u)", gen);
        else
            snprintf(buf, len, "absent (never written)");
        return;
    }
    snprintf(buf, len, "present: generation %u, %u elements, refcount 0x%016" PRIx64, gen,
             val_len(vc, val_base(vc, idx, gen)), val_refcount(vc, idx, gen, desc_d(desc)));
}

static void found_describe(bool found, const struct vinfo *vi, int decode_rc, char *buf, size_t len)
{
    if (!found)
        snprintf(buf, len, "absent (BM_ENOTFOUND)");
    else if (decode_rc == 0)
        snprintf(buf, len, "present: generation %u, %u elements, refcount offset %d", vi->gen, vi->n, vi->d);
    else
        snprintf(buf, len, "a malformed value");
}

void verify_read(struct worker *w, uint64_t idx, const char *op, uint64_t s1, uint64_t d1, uint64_t s2,
                 bool found, int decode_rc, const struct vinfo *vi, const char *why)
{
    struct run *run = w->run;
    if (d1 & DESC_POISON) {
        w->reads_skipped++;
        return;
    }
    char exp[160], got[160];
    if (found && decode_rc != 0) {
        desc_describe(&run->vc, idx, d1, exp, sizeof exp);
        run_mismatch(run, idx, "%s (thread %u): malformed value: %s; expected %s", op, w->id, why, exp);
        return;
    }
    bool exact = s1 == s2 && !(s1 & 1);
    if (exact) {
        w->reads_exact++;
        bool ok = found == desc_present(d1) &&
                  (!found || (vi->gen == desc_gen(d1) && vi->d == desc_d(d1)));
        if (!ok) {
            desc_describe(&run->vc, idx, d1, exp, sizeof exp);
            found_describe(found, vi, decode_rc, got, sizeof got);
            run_mismatch(run, idx,
                         "%s (thread %u), no write of this key overlapped the read: expected %s; found %s%s", op,
                         w->id, exp, got,
                         !found ? " (a lost key)"
                         : !desc_present(d1) ? " (a deleted key came back)"
                         : vi->gen < desc_gen(d1) ? " (a stale value)"
                                                   : "");
        }
        return;
    }
    w->reads_window++;
    if (!found)
        return; /* an overlapping write may have been a delete */
    uint32_t g1 = desc_gen(d1);
    const char *bad = NULL;
    /* Each write the owner began during the read adds at most one generation; one more covers a write that
     * was in flight at s1 and had not yet published its descriptor when d1 was loaded. */
    uint64_t overlapping = (s2 - s1 + 1) / 2 + 1;
    if ((uint64_t)vi->gen > (uint64_t)g1 + overlapping) {
        bad = "a generation the owner had not yet written when the read ended";
    } else if (desc_present(d1)) {
        int64_t moved = (int64_t)vi->d - desc_d(d1);
        if (vi->gen < g1)
            bad = "older than the value committed before the read began (a rollback)";
        else if (vi->gen == g1 && (uint64_t)(moved < 0 ? -moved : moved) > overlapping)
            bad = "its refcount moved further than the overlapping addref/unref calls can explain";
    } else if (vi->gen <= g1) {
        bad = "a generation that was deleted before the read began came back";
    }
    if (bad) {
        desc_describe(&run->vc, idx, d1, exp, sizeof exp);
        found_describe(found, vi, decode_rc, got, sizeof got);
        char when[96];
        if (s2 == s1)
            snprintf(when, sizeof when, "while a write of this key was in progress");
        else
            snprintf(when, sizeof when, "while %" PRIu64 " write(s) of this key began or ended", s2 - s1);
        run_mismatch(run, idx, "%s (thread %u) %s: found %s, %s; state when the read began: %s", op, w->id, when,
                     got, bad, exp);
    }
}

/* ---- final check ---- */

struct foreach_ctx {
    struct run *run;
    const char *label;
    uint8_t *seen;
    uint64_t visited, bad;
};

static int foreach_cb(const bm_key *k, const bm_value *v, void *arg)
{
    struct foreach_ctx *c = arg;
    struct run *run = c->run;
    uint64_t idx;
    char hex[2 * BM_KEY_LEN + 1];
    c->visited++;
    if (key_index(k, run->key_seed, run->o->keys, &idx) < 0) {
        key_hex(k, hex);
        run_mismatch(run, UINT64_MAX, "%s bm_foreach: visited key %s, which this run never wrote", c->label, hex);
        c->bad++;
        return 0;
    }
    if (c->seen[idx]) {
        run_mismatch(run, idx, "%s bm_foreach: visited this key twice", c->label);
        c->bad++;
        return 0;
    }
    c->seen[idx] = 1;
    uint64_t d = atomic_load_explicit(&key_state_of(run, idx)->desc, memory_order_relaxed);
    if (d & DESC_POISON)
        return 0;
    char exp[160], why[320];
    struct vinfo vi;
    desc_describe(&run->vc, idx, d, exp, sizeof exp);
    if (val_decode(&run->vc, idx, v->elems, v->n, v->n, v->refcount, &vi, why, sizeof why) < 0) {
        run_mismatch(run, idx, "%s bm_foreach: malformed value: %s; expected %s", c->label, why, exp);
        c->bad++;
    } else if (!desc_present(d) || vi.gen != desc_gen(d) || vi.d != desc_d(d)) {
        run_mismatch(run, idx, "%s bm_foreach: found generation %u, refcount offset %d; expected %s", c->label,
                     vi.gen, vi.d, exp);
        c->bad++;
    }
    return 0;
}

/* Present with the same generation and refcount offset, or both absent (whatever generation came before). */
static bool same_state(uint64_t a, uint64_t b)
{
    if (desc_present(a) != desc_present(b))
        return false;
    return !desc_present(a) || (desc_gen(a) == desc_gen(b) && desc_d(a) == desc_d(b));
}

/* The state the map holds for key idx, read with bm_get, as a descriptor; -1 after reporting why it is not a
 * well-formed value of this key (or a library error). */
static int observe(struct run *run, uint64_t idx, uint8_t *buf, const char *label, uint64_t *out)
{
    bm_key k;
    key_make(idx, run->key_seed, &k);
    uint32_t n = 0;
    uint64_t rc = 0;
    int ret = bm_get(run->map, &k, buf, run->o->len_max, &n, &rc);
    if (ret == BM_ENOTFOUND) {
        *out = desc_make(false, 0, 0);
        return 0;
    }
    if (ret != 0) {
        run_lib_error(run, "bm_get (final check)", idx, ret);
        return -1;
    }
    struct vinfo vi;
    char why[320];
    if (val_decode(&run->vc, idx, buf, n, n, rc, &vi, why, sizeof why) < 0) {
        run_mismatch(run, idx, "%s check (bm_get) of a key whose write the crash interrupted: malformed value: %s",
                     label, why);
        return -1;
    }
    *out = desc_make(true, vi.gen, vi.d);
    return 0;
}

/* After a crash (verify.h): settle every key whose write was in flight to the outcome the map holds, after
 * checking it is the state before or after that write, nothing in between. */
static void resolve_inflight(struct run *run, uint8_t *buf, const char *label)
{
    for (uint64_t idx = 0; idx < run->o->keys; idx++) {
        struct key_state *st = key_state_of(run, idx);
        uint64_t s = atomic_load_explicit(&st->seq, memory_order_relaxed);
        if (!(s & 1))
            continue;
        run->cs->inflight++;
        uint64_t d = atomic_load_explicit(&st->desc, memory_order_relaxed);
        uint64_t next = atomic_load_explicit(&st->next, memory_order_relaxed);
        uint64_t got;
        if (d & DESC_POISON) {
            atomic_store_explicit(&st->seq, s + 1, memory_order_relaxed);
            continue;
        }
        if (observe(run, idx, buf, label, &got) < 0) {
            atomic_store_explicit(&st->desc, d | DESC_POISON, memory_order_relaxed);
        } else if (same_state(got, d) || same_state(got, next)) {
            bool applied = !same_state(got, d);
            run->cs->inflight_applied += applied;
            /* An absent key keeps the generation it had, so a later check still rejects that one's return. */
            uint64_t settled = applied ? next : d;
            atomic_store_explicit(&st->desc, settled, memory_order_relaxed);
        } else {
            char a[160], b[160], c[160];
            desc_describe(&run->vc, idx, d, a, sizeof a);
            desc_describe(&run->vc, idx, next, b, sizeof b);
            if (desc_present(got))
                desc_describe(&run->vc, idx, got, c, sizeof c);
            else
                snprintf(c, sizeof c, "absent (BM_ENOTFOUND)");
            run_mismatch(run, idx, "%s check: the crash interrupted a write of this key, so it must be either %s "
                         "(before) or %s (after); found %s", label, a, b, c);
            atomic_store_explicit(&st->desc, d | DESC_POISON, memory_order_relaxed);
        }
        atomic_store_explicit(&st->seq, s + 1, memory_order_relaxed);
    }
}

uint64_t verify_final(struct run *run, const char *label)
{
    const struct options *o = run->o;
    uint64_t before = atomic_load(&run->mismatches);
    uint8_t *buf = malloc((size_t)o->len_max * o->elem_size + 1);
    uint8_t *seen = calloc(o->keys, 1);
    if (!buf || !seen) {
        free(buf);
        free(seen);
        run_lib_error(run, "allocating the final check's buffers", UINT64_MAX, -12);
        return 0;
    }
    if (run->crashed)
        resolve_inflight(run, buf, label);
    uint64_t present = 0;
    char why[320], exp[160], got[160];
    for (uint64_t idx = 0; idx < o->keys; idx++) {
        uint64_t d = atomic_load_explicit(&key_state_of(run, idx)->desc, memory_order_relaxed);
        if (desc_present(d))
            present++;
        if (d & DESC_POISON)
            continue;
        bm_key k;
        key_make(idx, run->key_seed, &k);
        uint32_t n = 0;
        uint64_t rc = 0;
        int ret = bm_get(run->map, &k, buf, o->len_max, &n, &rc);
        if (ret != 0 && ret != BM_ENOTFOUND) {
            run_lib_error(run, "bm_get (final check)", idx, ret);
            break;
        }
        struct vinfo vi = {0};
        int drc = ret == 0 ? val_decode(&run->vc, idx, buf, n, n, rc, &vi, why, sizeof why) : 0;
        bool ok = ret == 0 ? drc == 0 && desc_present(d) && vi.gen == desc_gen(d) && vi.d == desc_d(d)
                           : !desc_present(d);
        if (!ok) {
            desc_describe(&run->vc, idx, d, exp, sizeof exp);
            found_describe(ret == 0, &vi, drc, got, sizeof got);
            run_mismatch(run, idx, "%s check (bm_get): expected %s; found %s%s%s", label, exp, got,
                         drc ? ": " : "", drc ? why : "");
        }
    }
    free(buf);
    run->final_present = present;

    run->final_count = bm_count(run->map);
    if (run->final_count != present)
        run_mismatch(run, UINT64_MAX, "%s check: bm_count() = %" PRIu64 " but the model has %" PRIu64
                     " present keys", label, run->final_count, present);
    bm_stats st;
    bm_get_stats(run->map, &st);
    if (st.entries != present)
        run_mismatch(run, UINT64_MAX, "%s check: bm_get_stats().entries = %" PRIu64 " but the model has %" PRIu64
                     " present keys", label, st.entries, present);

    struct foreach_ctx c = {.run = run, .label = label, .seen = seen};
    int ret = bm_foreach(run->map, foreach_cb, &c);
    if (ret != 0)
        run_lib_error(run, "bm_foreach (final check)", UINT64_MAX, ret);
    else {
        run->final_foreach = c.visited;
        for (uint64_t idx = 0; idx < o->keys; idx++) {
            uint64_t d = atomic_load_explicit(&key_state_of(run, idx)->desc, memory_order_relaxed);
            if (desc_present(d) && !seen[idx] && !(d & DESC_POISON))
                run_mismatch(run, idx, "%s bm_foreach: never visited this present key", label);
        }
    }
    free(seen);

    /* The library's own cross-check of entries, cells and counts, which sees what no API call can (orphan
     * cells, misplaced entries, wrong per-bucket counts). */
    bm_verify_report vr;
    ret = bm_verify(run->map, &vr);
    if (ret == BM_ECORRUPT)
        run_mismatch(run, UINT64_MAX,
                     "%s bm_verify: BM_ECORRUPT (bad entry sums %" PRIu64 ", bad cells %" PRIu64 ", bad refs %" PRIu64
                     ", misplaced %" PRIu64 ", orphan cells %" PRIu64 ", count mismatches %" PRIu64 ")",
                     label, vr.bad_entry_sums, vr.bad_cells, vr.bad_refs, vr.misplaced, vr.orphan_cells,
                     vr.count_mismatches);
    else if (ret != 0)
        run_lib_error(run, "bm_verify (final check)", UINT64_MAX, ret);
    else if (vr.entries != present)
        run_mismatch(run, UINT64_MAX, "%s bm_verify: checked %" PRIu64 " entries but the model has %" PRIu64
                     " present keys", label, vr.entries, present);
    run->final_done = true;
    return atomic_load(&run->mismatches) - before;
}
