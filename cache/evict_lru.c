/* Least recently used: one queue, a hit moves the entry to the head, the tail goes. */
#include "cache/store.h"
#include "cache/store_internal.h"

static void lru_insert(struct evict_state *st, struct store_node *n)
{
    n->queue = EVICT_QUEUE_MAIN;
    evict_list_push_head(&st->main, n);
}

static void lru_access(struct evict_state *st, struct store_node *n)
{
    if (st->main.head == n)
        return;
    evict_list_remove(&st->main, n);
    evict_list_push_head(&st->main, n);
}

static void lru_unlink(struct evict_state *st, struct store_node *n)
{
    evict_list_remove(&st->main, n);
}

static struct store_node *lru_victim(struct evict_state *st)
{
    struct store_node *n = st->main.tail;
    if (n != NULL)
        evict_list_remove(&st->main, n);
    return n;
}

const struct evict_ops evict_lru_ops = {
    .insert = lru_insert,
    .access = lru_access,
    .unlink = lru_unlink,
    .victim = lru_victim,
};
