/*
 * worker.c — what one thread does: draw an operation and a key, time the library call, check the result.
 *
 * Only the library call sits between the two clock readings; key derivation, value generation and the
 * checks of bm_get's copy happen outside. bm_read's callback and bm_update's callback check the value in
 * place, inside the call, because that is where a zero-copy reader must do its work (and checking in place
 * also catches a cell reused before its grace period ended). Writes go only to keys this thread owns
 * (verify.h), reads go to any key.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"
#include "worker.h"

static inline bool verifying(const struct run *run) { return run->o->verify; }

/* ---- the owner's side of the seqcount (verify.h) ---- */

static inline void write_begin(struct run *run, struct key_state *st, uint64_t next)
{
    if (!verifying(run))
        return;
    atomic_store_explicit(&st->next, next, memory_order_relaxed);
    uint64_t s = atomic_load_explicit(&st->seq, memory_order_relaxed);
    atomic_store_explicit(&st->seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static inline void write_end(struct run *run, struct key_state *st, uint64_t desc)
{
    atomic_store_explicit(&st->desc, desc, memory_order_release);
    if (!verifying(run))
        return;
    uint64_t s = atomic_load_explicit(&st->seq, memory_order_relaxed);
    atomic_store_explicit(&st->seq, s + 1, memory_order_release);
}

static inline void timed(struct worker *w, int op, uint64_t t0)
{
    hist_record(&w->hist[op], now_ns() - t0);
}

/* ---- writes (only by the key's owner) ---- */

static void do_insert(struct worker *w, uint64_t idx, struct key_state *st, bool record)
{
    struct run *run = w->run;
    uint64_t d0 = atomic_load_explicit(&st->desc, memory_order_relaxed);
    uint32_t gen = desc_gen(d0) + 1;
    int32_t d = (int32_t)rng_below(&w->rng, 8);
    uint32_t n = val_fill(&run->vc, idx, gen, w->wbuf);
    uint64_t rc = val_refcount(&run->vc, idx, gen, d);
    bm_key k;
    key_make(idx, run->key_seed, &k);
    write_begin(run, st, desc_make(true, gen, d) | (d0 & DESC_POISON));
    uint64_t t0 = now_ns();
    int ret;
    if (w->inject && record && run->o->fault == FAULT_LOST_WRITE && ++w->fault_ctr % FAULT_PERIOD == 0) {
        ret = 0; /* acknowledged, never applied: what a lost write looks like from outside */
        w->faults_injected++;
    } else {
        ret = bm_insert(run->map, &k, w->wbuf, n, rc);
    }
    if (record)
        timed(w, OP_INSERT, t0);
    if (ret != 0) {
        /* The contract says a failed call leaves the map unchanged, so the descriptor stays. */
        write_end(run, st, d0);
        run_lib_error(run, "bm_insert", idx, ret);
        return;
    }
    write_end(run, st, desc_make(true, gen, d) | (d0 & DESC_POISON));
}

struct upd_ctx {
    const struct vcodec *vc;
    uint64_t idx;
    uint64_t expect;
    int action;
    const void *elems;
    uint32_t n;
    uint64_t refcount;
    bool check;
    int calls;
    bool ok;
    char msg[1024];
};

/* Runs under the bucket's write lock: the value handed over must be exactly the owner's expectation. */
static int upd_cb(const bm_value *cur, bm_value *out, void *arg)
{
    struct upd_ctx *c = arg;
    c->calls++;
    char exp[160], why[320];
    if (c->check && !(c->expect & DESC_POISON)) {
        if (!cur && desc_present(c->expect)) {
            desc_describe(c->vc, c->idx, c->expect, exp, sizeof exp);
            snprintf(c->msg, sizeof c->msg, "the callback got no value (absent); expected %s", exp);
            c->ok = false;
        } else if (cur) {
            struct vinfo vi;
            if (val_decode(c->vc, c->idx, cur->elems, cur->n, cur->n, cur->refcount, &vi, why, sizeof why) < 0) {
                desc_describe(c->vc, c->idx, c->expect, exp, sizeof exp);
                snprintf(c->msg, sizeof c->msg, "the callback got a malformed value: %s; expected %s", why, exp);
                c->ok = false;
            } else if (!desc_present(c->expect) || vi.gen != desc_gen(c->expect) || vi.d != desc_d(c->expect)) {
                desc_describe(c->vc, c->idx, c->expect, exp, sizeof exp);
                snprintf(c->msg, sizeof c->msg,
                         "the callback got generation %u, %u elements, refcount offset %d; expected %s", vi.gen,
                         vi.n, vi.d, exp);
                c->ok = false;
            }
        }
    }
    if (!c->ok)
        return BM_KEEP;
    out->elems = c->elems;
    out->n = c->n;
    out->refcount = c->refcount;
    return c->action;
}

static void do_update(struct worker *w, uint64_t idx, struct key_state *st)
{
    struct run *run = w->run;
    uint64_t d0 = atomic_load_explicit(&st->desc, memory_order_relaxed);
    bool present = desc_present(d0);
    uint32_t gen = desc_gen(d0) + 1;
    /* Mostly rewrites, but also the keep and delete outcomes, which take other paths in the library. */
    uint64_t r = rng_below(&w->rng, 10);
    int action = present ? (r == 0 ? BM_KEEP : r == 1 ? BM_DELETE : BM_WRITE) : (r < 2 ? BM_KEEP : BM_WRITE);
    int32_t d = present ? desc_d(d0) : (int32_t)rng_below(&w->rng, 8);
    struct upd_ctx c = {
        .vc = &run->vc, .idx = idx, .expect = d0, .action = action, .check = verifying(run), .ok = true};
    if (action == BM_WRITE) {
        c.n = val_fill(&run->vc, idx, gen, w->wbuf);
        c.elems = w->wbuf;
        c.refcount = val_refcount(&run->vc, idx, gen, d);
    }
    uint64_t nd = action == BM_WRITE    ? desc_make(true, gen, d)
                  : action == BM_DELETE ? desc_make(false, desc_gen(d0), 0)
                                        : d0;
    nd |= d0 & DESC_POISON;
    bm_key k;
    key_make(idx, run->key_seed, &k);
    write_begin(run, st, nd);
    uint64_t t0 = now_ns();
    int ret = bm_update(run->map, &k, upd_cb, &c);
    timed(w, OP_UPDATE, t0);
    if (ret != 0) {
        write_end(run, st, d0);
        run_lib_error(run, "bm_update", idx, ret);
        return;
    }
    if (c.check && (c.calls != 1 || !c.ok)) {
        if (c.calls != 1)
            run_mismatch(run, idx, "update (thread %u): bm_update called its callback %d times (expected once)",
                         w->id, c.calls);
        else
            run_mismatch(run, idx, "update (thread %u): %s", w->id, c.msg);
        write_end(run, st, d0 | DESC_POISON);
        return;
    }
    write_end(run, st, nd);
    w->writes_checked += c.check;
}

static void do_delete(struct worker *w, uint64_t idx, struct key_state *st)
{
    struct run *run = w->run;
    uint64_t d0 = atomic_load_explicit(&st->desc, memory_order_relaxed);
    bm_key k;
    key_make(idx, run->key_seed, &k);
    write_begin(run, st, desc_make(false, desc_gen(d0), 0) | (d0 & DESC_POISON));
    uint64_t t0 = now_ns();
    int ret = bm_delete(run->map, &k);
    timed(w, OP_DELETE, t0);
    if (ret != 0 && ret != BM_ENOTFOUND) {
        write_end(run, st, d0);
        run_lib_error(run, "bm_delete", idx, ret);
        return;
    }
    bool was_present = ret == 0;
    if (verifying(run) && !(d0 & DESC_POISON) && was_present != desc_present(d0)) {
        char exp[160];
        desc_describe(&run->vc, idx, d0, exp, sizeof exp);
        run_mismatch(run, idx, "delete (thread %u) returned %s; expected %s", w->id,
                     was_present ? "0 (it deleted a value)" : "BM_ENOTFOUND", exp);
        write_end(run, st, desc_make(false, desc_gen(d0), 0) | DESC_POISON);
        return;
    }
    write_end(run, st, desc_make(false, desc_gen(d0), 0) | (d0 & DESC_POISON));
    w->writes_checked += verifying(run);
}

static void do_ref(struct worker *w, uint64_t idx, struct key_state *st, int op)
{
    struct run *run = w->run;
    uint64_t d0 = atomic_load_explicit(&st->desc, memory_order_relaxed);
    bool check = verifying(run) && !(d0 & DESC_POISON);
    int32_t d = desc_d(d0);
    /* Keep the offset inside its field: at the limit the other direction is taken instead. */
    if (op == OP_ADDREF && d >= D_LIMIT)
        op = OP_UNREF;
    else if (op == OP_UNREF && d <= -D_LIMIT)
        op = OP_ADDREF;
    int32_t nd = op == OP_ADDREF ? d + 1 : d - 1;
    bm_key k;
    key_make(idx, run->key_seed, &k);
    uint64_t got = 0;
    char exp[160];
    write_begin(run, st, desc_present(d0) ? desc_make(true, desc_gen(d0), nd) | (d0 & DESC_POISON) : d0);
    uint64_t t0 = now_ns();
    int ret = op == OP_ADDREF ? bm_addref(run->map, &k, &got) : bm_unref(run->map, &k, &got);
    timed(w, op, t0);
    if (ret == BM_ENOTFOUND) {
        if (check && desc_present(d0)) {
            desc_describe(&run->vc, idx, d0, exp, sizeof exp);
            run_mismatch(run, idx, "%s (thread %u) returned BM_ENOTFOUND; expected %s", op_name[op], w->id, exp);
            write_end(run, st, d0 | DESC_POISON);
            return;
        }
        write_end(run, st, d0);
        w->writes_checked += check;
        return;
    }
    if (ret != 0) {
        write_end(run, st, d0);
        if (ret == BM_EOVERFLOW && check)
            run_mismatch(run, idx, "%s (thread %u) returned BM_EOVERFLOW for refcount 0x%016" PRIx64, op_name[op],
                         w->id, val_refcount(&run->vc, idx, desc_gen(d0), d));
        else
            run_lib_error(run, op == OP_ADDREF ? "bm_addref" : "bm_unref", idx, ret);
        return;
    }
    uint64_t want = val_refcount(&run->vc, idx, desc_gen(d0), nd);
    if (check && (!desc_present(d0) || got != want)) {
        desc_describe(&run->vc, idx, d0, exp, sizeof exp);
        if (!desc_present(d0))
            run_mismatch(run, idx, "%s (thread %u) succeeded (new refcount 0x%016" PRIx64 ") on a key that should "
                         "be %s", op_name[op], w->id, got, exp);
        else
            run_mismatch(run, idx, "%s (thread %u) reported new refcount 0x%016" PRIx64 ", expected 0x%016" PRIx64
                         " (the key was %s)", op_name[op], w->id, got, want, exp);
        write_end(run, st, d0 | DESC_POISON);
        return;
    }
    write_end(run, st, (desc_present(d0) ? desc_make(true, desc_gen(d0), nd) : d0) | (d0 & DESC_POISON));
    w->writes_checked += check;
}

/* ---- reads (any key) ---- */

static inline void read_begin(const struct key_state *st, uint64_t *s1, uint64_t *d1)
{
    *s1 = atomic_load_explicit(&st->seq, memory_order_acquire);
    *d1 = atomic_load_explicit(&st->desc, memory_order_acquire);
}

static inline uint64_t read_end(const struct key_state *st)
{
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&st->seq, memory_order_relaxed);
}

static void do_get(struct worker *w, uint64_t idx)
{
    struct run *run = w->run;
    struct key_state *st = key_state_of(run, idx);
    bm_key k;
    key_make(idx, run->key_seed, &k);
    /* One get in eight asks for fewer elements than the value may hold: the copy must be cut, the count not. */
    uint32_t cap = run->o->len_max;
    if ((rng_next(&w->rng) & 7) == 0)
        cap = (uint32_t)rng_below(&w->rng, (uint64_t)cap + 1);
    uint32_t n = 0;
    uint64_t rc = 0, s1 = 0, d1 = 0;
    if (verifying(run))
        read_begin(st, &s1, &d1);
    uint64_t t0 = now_ns();
    int ret = bm_get(run->map, &k, w->rbuf, cap, &n, &rc);
    timed(w, OP_GET, t0);
    if (!verifying(run))
        return;
    uint64_t s2 = read_end(st);
    if (ret != 0 && ret != BM_ENOTFOUND) {
        run_lib_error(run, "bm_get", idx, ret);
        return;
    }
    if (ret == 0 && w->inject && run->o->fault == FAULT_TORN_READ && ++w->fault_ctr % FAULT_PERIOD == 0) {
        /* One flipped bit in the copy, or in the refcount when no element was copied. */
        if (n && cap)
            w->rbuf[(size_t)rng_below(&w->rng, (uint64_t)(n < cap ? n : cap) * run->o->elem_size)] ^= 0x10;
        else
            rc ^= UINT64_C(1) << 20;
        w->faults_injected++;
    }
    struct vinfo vi = {0};
    char why[320] = "";
    int drc = 0;
    if (ret == 0)
        drc = val_decode(&run->vc, idx, w->rbuf, n < cap ? n : cap, n, rc, &vi, why, sizeof why);
    verify_read(w, idx, "get", s1, d1, s2, ret == 0, drc, &vi, why);
}

struct read_ctx {
    const struct vcodec *vc;
    uint64_t idx;
    bool verify;
    int calls;
    int drc;
    struct vinfo vi;
    char why[320];
};

/* Inside the library's RCU read-side section: check the elements where they lie, without any bm_* call. */
static void read_cb(const bm_value *v, void *arg)
{
    struct read_ctx *c = arg;
    c->calls++;
    if (c->verify)
        c->drc = val_decode(c->vc, c->idx, v->elems, v->n, v->n, v->refcount, &c->vi, c->why, sizeof c->why);
    else
        c->vi.n = v->n;
}

static void do_read(struct worker *w, uint64_t idx)
{
    struct run *run = w->run;
    struct key_state *st = key_state_of(run, idx);
    bm_key k;
    key_make(idx, run->key_seed, &k);
    struct read_ctx c = {.vc = &run->vc, .idx = idx, .verify = verifying(run)};
    uint64_t s1 = 0, d1 = 0;
    if (c.verify)
        read_begin(st, &s1, &d1);
    uint64_t t0 = now_ns();
    int ret = bm_read(run->map, &k, read_cb, &c);
    timed(w, OP_READ, t0);
    if (!c.verify)
        return;
    uint64_t s2 = read_end(st);
    if (ret != 0 && ret != BM_ENOTFOUND) {
        run_lib_error(run, "bm_read", idx, ret);
        return;
    }
    if (c.calls != (ret == 0 ? 1 : 0)) {
        run_mismatch(run, idx, "read (thread %u): bm_read returned %d after calling its callback %d times", w->id,
                     ret, c.calls);
        return;
    }
    verify_read(w, idx, "read", s1, d1, s2, ret == 0, c.drc, &c.vi, c.why);
}

/* ---- the loop ---- */

static inline int pick_op(struct worker *w)
{
    uint32_t r = (uint32_t)rng_below(&w->rng, w->cum_total);
    int op = 0;
    while (r >= w->cum[op])
        op++;
    return op;
}

static inline uint64_t pick_any(struct worker *w)
{
    struct run *run = w->run;
    return run->o->dist == DIST_ZIPF ? zipf_next(&run->z_all, &w->rng) : rng_below(&w->rng, run->o->keys);
}

static inline uint64_t pick_owned(struct worker *w)
{
    uint64_t r = w->run->o->dist == DIST_ZIPF ? zipf_next(w->z_own, &w->rng) : rng_below(&w->rng, w->n_owned);
    return r * w->run->nowners + w->owner;
}

/* One bm_get_batch of 1..batch_max keys drawn as get's are (repeats allowed). A batch is not one snapshot:
 * each key's lookup happens somewhere inside the call, so each key is judged by the shadow model like a
 * get whose read spans the whole call (its seqcount read before the call and after it). One batch in eight
 * asks for fewer elements per key than a value may hold: the copies must be cut, the counts not. */
static void do_getbatch(struct worker *w)
{
    struct run *run = w->run;
    uint32_t nb = 1 + (uint32_t)rng_below(&w->rng, w->batch_max);
    uint32_t cap = run->o->len_max;
    if ((rng_next(&w->rng) & 7) == 0)
        cap = (uint32_t)rng_below(&w->rng, (uint64_t)cap + 1);
    bm_key keys[GETBATCH_MAX];
    uint64_t idx[GETBATCH_MAX], s1[GETBATCH_MAX], d1[GETBATCH_MAX], rc[GETBATCH_MAX];
    uint32_t n[GETBATCH_MAX];
    int status[GETBATCH_MAX];
    bool verify = verifying(run);
    for (uint32_t i = 0; i < nb; i++) {
        idx[i] = pick_any(w);
        key_make(idx[i], run->key_seed, &keys[i]);
    }
    if (verify)
        for (uint32_t i = 0; i < nb; i++)
            read_begin(key_state_of(run, idx[i]), &s1[i], &d1[i]);
    uint64_t t0 = now_ns();
    int ret = bm_get_batch(run->map, keys, nb, w->bbuf, cap, n, rc, status);
    timed(w, OP_GETBATCH, t0);
    if (!verify)
        return;
    uint64_t s2[GETBATCH_MAX];
    for (uint32_t i = 0; i < nb; i++)
        s2[i] = read_end(key_state_of(run, idx[i]));
    if (ret < 0) {
        run_lib_error(run, "bm_get_batch", idx[0], ret);
        return;
    }
    int found = 0;
    for (uint32_t i = 0; i < nb; i++) {
        if (status[i] != 0 && status[i] != BM_ENOTFOUND) {
            run_lib_error(run, "bm_get_batch", idx[i], status[i]);
            return;
        }
        found += status[i] == 0;
    }
    if (found != ret) {
        run_mismatch(run, idx[0], "getbatch (thread %u): bm_get_batch of %u keys returned %d, but %d keys were found",
                     w->id, nb, ret, found);
        return;
    }
    for (uint32_t i = 0; i < nb; i++) {
        struct vinfo vi = {0};
        char why[320] = "";
        int drc = 0;
        if (status[i] == 0)
            drc = val_decode(&run->vc, idx[i], w->bbuf + (size_t)i * cap * run->o->elem_size, n[i] < cap ? n[i] : cap,
                             n[i], rc[i], &vi, why, sizeof why);
        verify_read(w, idx[i], "getbatch", s1[i], d1[i], s2[i], status[i] == 0, drc, &vi, why);
    }
}

int prefill_owner(struct worker *w, uint32_t owner, uint64_t *inserted)
{
    struct run *run = w->run;
    *inserted = 0;
    for (uint64_t idx = owner;
         idx < run->o->keys && !atomic_load_explicit(&run->stop, memory_order_relaxed) && !interrupted;
         idx += run->nowners)
        if (key_prefilled(run, idx)) {
            do_insert(w, idx, key_state_of(run, idx), false);
            (*inserted)++;
        }
    return 0;
}

void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *run = w->run;
    if (w->owner != NO_OWNER && run->o->prefill_pct && run->cycle == 0)
        prefill_owner(w, w->owner, &w->prefilled);
    pthread_barrier_wait(&run->barrier);

    uint64_t done = 0;
    while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
        if (run->o->ops && done == w->ops_target)
            break;
        int op = pick_op(w);
        switch (op) {
        case OP_GET:
            do_get(w, pick_any(w));
            break;
        case OP_READ:
            do_read(w, pick_any(w));
            break;
        case OP_GETBATCH:
            do_getbatch(w);
            break;
        default: {
            uint64_t idx = pick_owned(w);
            struct key_state *st = key_state_of(run, idx);
            if (op == OP_INSERT)
                do_insert(w, idx, st, true);
            else if (op == OP_UPDATE)
                do_update(w, idx, st);
            else if (op == OP_DELETE)
                do_delete(w, idx, st);
            else
                do_ref(w, idx, st, op);
        }
        }
        done++;
    }
    atomic_fetch_add(&run->finished, 1);
    return NULL;
}
