/* S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP'23).
 *
 * New entries enter a small FIFO that holds about 10% of the shard's bytes; most objects
 * are requested once and leave from there quickly, before they can push anything useful
 * out. An entry hit often enough while in the small queue moves to the main FIFO; one that
 * was not leaves a ghost (its hash) behind, and if it is inserted again while the ghost is
 * remembered it goes straight to main. Main is a FIFO with a 2-bit hit counter: a tail
 * entry that was hit goes back to the head with its counter decremented, one that was not
 * is evicted. Hits only bump a counter, so they never reorder a queue.
 *
 * Sizes differ per entry, so both the 10% and the queues are measured in bytes. */
#include "cache/store.h"
#include "cache/store_internal.h"

#include <stdbool.h>
#include <stdlib.h>

/* Hits an entry needs while in the small queue to be moved to main: one, as the paper
 * describes it. (Its simulator defaults to two; on test/bench/hitratio's traces two was
 * 0.1-0.2 points worse everywhere.) */
#define S3FIFO_PROMOTE_HITS 1u
#define S3FIFO_MAX_FREQ 3u
/* The small queue's share of the shard's bytes, in tenths. */
#define S3FIFO_SMALL_TENTHS 1u

static uint32_t ghost_fingerprint(uint64_t hash)
{
    /* The shard and bucket come from the low bits; the fingerprint from the high ones. */
    return (uint32_t)(hash >> 32);
}

/* Ghosts live as long as fewer than this many were added after them: as many as the
 * shard holds entries, like the paper's ghost queue sized to the cache. */
static uint32_t ghost_window(const struct evict_state *st)
{
    size_t n = st->small.count + st->main.count;
    return n > UINT32_MAX / 2 ? UINT32_MAX / 2 : (n > 0 ? (uint32_t)n : 1u);
}

static bool ghost_live(const struct evict_state *st, uint64_t slot)
{
    return slot != 0 && (uint32_t)(st->ghost.seq - (uint32_t)slot) < ghost_window(st);
}

static void ghost_add(struct evict_state *st, uint64_t hash)
{
    struct evict_ghost *g = &st->ghost;
    if (g->slots == NULL)
        return;
    if (++g->seq == 0) /* 0 would make an empty-looking slot */
        g->seq = 1;
    uint32_t fp = ghost_fingerprint(hash);
    g->slots[fp & g->mask] = (uint64_t)fp << 32 | g->seq;
}

/* True if hash was a live ghost; it is forgotten then, as it is about to be stored. */
static bool ghost_take(struct evict_state *st, uint64_t hash)
{
    struct evict_ghost *g = &st->ghost;
    if (g->slots == NULL)
        return false;
    uint32_t fp = ghost_fingerprint(hash);
    uint64_t *slot = &g->slots[fp & g->mask];
    if ((uint32_t)(*slot >> 32) != fp || !ghost_live(st, *slot))
        return false;
    *slot = 0;
    return true;
}

uint64_t *evict_ghost_swap(struct evict_state *st, uint64_t *slots, size_t count)
{
    struct evict_ghost *g = &st->ghost;
    uint64_t *old = g->slots;
    size_t mask = count - 1;
    if (old != NULL) {
        for (size_t i = 0; i <= g->mask; i++) {
            if (!ghost_live(st, old[i]))
                continue;
            uint64_t *to = &slots[(old[i] >> 32) & mask];
            /* Two ghosts meet when the table shrinks; the younger is worth more. */
            if (*to == 0 || (uint32_t)(g->seq - (uint32_t)old[i]) <
                                (uint32_t)(g->seq - (uint32_t)*to))
                *to = old[i];
        }
    }
    g->slots = slots;
    g->mask = mask;
    return old;
}

static struct evict_list *queue_of(struct evict_state *st, const struct store_node *n)
{
    return n->queue == EVICT_QUEUE_SMALL ? &st->small : &st->main;
}

static void s3fifo_insert(struct evict_state *st, struct store_node *n)
{
    n->freq = 0;
    if (ghost_take(st, n->entry->hash)) {
        n->queue = EVICT_QUEUE_MAIN;
        evict_list_push_head(&st->main, n);
    } else {
        n->queue = EVICT_QUEUE_SMALL;
        evict_list_push_head(&st->small, n);
    }
}

static void s3fifo_access(struct evict_state *st, struct store_node *n)
{
    (void)st;
    if (n->freq < S3FIFO_MAX_FREQ)
        n->freq++;
}

static void s3fifo_unlink(struct evict_state *st, struct store_node *n)
{
    evict_list_remove(queue_of(st, n), n);
}

static struct store_node *s3fifo_victim(struct evict_state *st)
{
    /* Ends: every turn evicts, moves an entry from small to main (once each), or
     * decrements a counter in main (at most three times each). */
    for (;;) {
        size_t total = st->small.bytes + st->main.bytes;
        bool small_full = st->small.bytes * 10 >= total * S3FIFO_SMALL_TENTHS;
        bool from_small = st->small.count > 0 && (st->main.count == 0 || small_full);
        if (from_small) {
            struct store_node *n = st->small.tail;
            evict_list_remove(&st->small, n);
            if (n->freq >= S3FIFO_PROMOTE_HITS) {
                n->freq = 0;
                n->queue = EVICT_QUEUE_MAIN;
                evict_list_push_head(&st->main, n);
                continue;
            }
            ghost_add(st, n->entry->hash);
            return n;
        }
        struct store_node *n = st->main.tail;
        if (n == NULL)
            return NULL;
        evict_list_remove(&st->main, n);
        if (n->freq > 0) {
            n->freq--;
            evict_list_push_head(&st->main, n);
            continue;
        }
        return n;
    }
}

const struct evict_ops evict_s3fifo_ops = {
    .insert = s3fifo_insert,
    .access = s3fifo_access,
    .unlink = s3fifo_unlink,
    .victim = s3fifo_victim,
};
