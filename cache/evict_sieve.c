/* SIEVE (Zhang et al., NSDI'24): one FIFO queue with a visited bit per entry. A hit only
 * sets the bit, so hits never reorder the queue. The hand sweeps from the tail toward the
 * head, clearing bits, and evicts the first unvisited entry; it stays where it stopped,
 * so survivors keep their place and new entries wait at the head for their first look. */
#include "cache/store.h"
#include "cache/store_internal.h"

static void sieve_insert(struct evict_state *st, struct store_node *n)
{
    n->queue = EVICT_QUEUE_MAIN;
    n->freq = 0;
    evict_list_push_head(&st->main, n);
}

static void sieve_access(struct evict_state *st, struct store_node *n)
{
    (void)st;
    n->freq = 1;
}

static void sieve_unlink(struct evict_state *st, struct store_node *n)
{
    if (st->hand == n)
        st->hand = n->newer;
    evict_list_remove(&st->main, n);
}

static struct store_node *sieve_victim(struct evict_state *st)
{
    struct store_node *n = st->hand != NULL ? st->hand : st->main.tail;
    if (n == NULL)
        return NULL;
    /* Ends within one lap: every visited entry passed is cleared. */
    while (n->freq != 0) {
        n->freq = 0;
        n = n->newer != NULL ? n->newer : st->main.tail;
    }
    st->hand = n->newer;
    evict_list_remove(&st->main, n);
    return n;
}

const struct evict_ops evict_sieve_ops = {
    .insert = sieve_insert,
    .access = sieve_access,
    .unlink = sieve_unlink,
    .victim = sieve_victim,
};
