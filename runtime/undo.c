/*
 * undo.c — the one-slot undo record of an in-place rewrite (format.h describes when it is needed).
 *
 * Order: record (slot, old entry) -> armed -> sum -> release fence -> the rewrite's stores -> release fence
 * -> armed = 0. A SIGKILL keeps the page cache, so every store before the kill is in the file in program
 * order: an armed record with a good sum means the rewrite may be half done; an armed record with a bad sum
 * means the kill came before the first live store. After a power loss the record may come from any moment;
 * putting back an older acknowledged version of that slot's key is then still a state the contract allows,
 * and recovery's scrub runs next anyway.
 */
#include "runtime/bucket_int.h"

void undo_arm(struct bkt *b, uint64_t slot)
{
    struct bkt_state *st = b->state;
    struct undo_rec *u = &idx_hdr(st)->undo;
    u->slot = slot;
    u->old = st->entries[slot];
    u->armed = UNDO_ARMED;
    u->sum = undo_sum(u);
    bm_fence_rel();
}

void undo_disarm(struct bkt *b)
{
    bm_fence_rel();
    bm_store_rlx(&idx_hdr(b->state)->undo.armed, 0);
}

int undo_replay(struct bkt *b)
{
    struct bkt_state *st = b->state;
    struct undo_rec *u = &idx_hdr(st)->undo;
    if (u->armed == 0)
        return 0;
    if (u->armed != UNDO_ARMED || u->sum != undo_sum(u) || u->slot >= st->cap)
        return BM_ECORRUPT;
    st->entries[u->slot] = u->old;
    st->entries[u->slot].state &= ~ENTRY_BUSY;
    u->armed = 0;
    stor_file_touch(st->index);
    return 1;
}
