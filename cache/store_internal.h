/* Private to the store: its per-entry node and the eviction policies (evict_*.c).
 *
 * A policy keeps the nodes of one shard in its queues and is only ever called with that
 * shard's lock held. It never allocates or frees: the store allocates nodes before it
 * locks and frees victims after it unlocks. */
#ifndef RINGSIDE_CACHE_STORE_INTERNAL_H
#define RINGSIDE_CACHE_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cache/entry.h"

struct store_node {
    struct cache_entry *entry;   /* the store's reference */
    struct store_node *chain;    /* next in the hash bucket */
    struct store_node *newer;    /* queue neighbours: toward the head (newest) */
    struct store_node *older;    /* ... and toward the tail (oldest); a victim list */
    size_t charge;               /* what it counts against memory */
    uint8_t queue;               /* enum evict_queue_id */
    uint8_t freq;                /* S3-FIFO: hits, 0..3; SIEVE: visited bit */
};

struct evict_list {
    struct store_node *head, *tail;
    size_t bytes;
    size_t count;
};

enum evict_queue_id { EVICT_QUEUE_MAIN, EVICT_QUEUE_SMALL };

/* Hashes of entries S3-FIFO evicted from its small queue without a second look. Each
 * slot is direct-mapped by hash and holds (32-bit fingerprint << 32 | 32-bit sequence);
 * an entry counts while fewer than `window` ghosts were added after it, which makes the
 * ghost queue about as long as the shard holds entries. A collision forgets the older
 * ghost: that costs a little hit ratio, never correctness. 0 marks an empty slot. */
struct evict_ghost {
    uint64_t *slots;
    size_t mask; /* slot count - 1 */
    uint32_t seq;
};

struct evict_state {
    struct evict_list main;  /* LRU, SIEVE: the only queue */
    struct evict_list small; /* S3-FIFO */
    struct store_node *hand; /* SIEVE */
    struct evict_ghost ghost;
};

struct evict_ops {
    /* A new node (freq 0) enters. */
    void (*insert)(struct evict_state *st, struct store_node *n);
    /* The node was hit. */
    void (*access)(struct evict_state *st, struct store_node *n);
    /* The node leaves without being a victim (replaced, removed, purged). */
    void (*unlink)(struct evict_state *st, struct store_node *n);
    /* Choose the next victim, take it out of the queues and return it; NULL if empty. */
    struct store_node *(*victim)(struct evict_state *st);
};

extern const struct evict_ops evict_s3fifo_ops;
extern const struct evict_ops evict_lru_ops;
extern const struct evict_ops evict_sieve_ops;

/* The store sizes the ghost table with its hash table: twice as many slots as buckets,
 * and it holds at most one entry per bucket before it grows, so at least half the slots
 * stay free for the window and collisions stay rare. */
#define EVICT_GHOST_SLOTS_PER_BUCKET 2u

/* Install a zeroed table of count slots (a power of two), carrying the live ghosts over.
 * Returns the old table for the caller to free after unlocking. */
uint64_t *evict_ghost_swap(struct evict_state *st, uint64_t *slots, size_t count);

static inline void evict_list_push_head(struct evict_list *l, struct store_node *n)
{
    n->newer = NULL;
    n->older = l->head;
    if (l->head != NULL)
        l->head->newer = n;
    else
        l->tail = n;
    l->head = n;
    l->bytes += n->charge;
    l->count++;
}

static inline void evict_list_remove(struct evict_list *l, struct store_node *n)
{
    if (n->newer != NULL)
        n->newer->older = n->older;
    else
        l->head = n->older;
    if (n->older != NULL)
        n->older->newer = n->newer;
    else
        l->tail = n->newer;
    n->newer = n->older = NULL;
    l->bytes -= n->charge;
    l->count--;
}

#endif
