#include "proxy/timer.h"

#include <errno.h>
#include <stdlib.h>

static void place(struct timer_heap *h, uint32_t i, struct timer *t)
{
    h->items[i] = t;
    t->_index = i;
}

static void sift_up(struct timer_heap *h, uint32_t i)
{
    struct timer *t = h->items[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (h->items[parent]->deadline <= t->deadline)
            break;
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct timer_heap *h, uint32_t i)
{
    struct timer *t = h->items[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= h->count)
            break;
        if (child + 1 < h->count && h->items[child + 1]->deadline < h->items[child]->deadline)
            child++;
        if (t->deadline <= h->items[child]->deadline)
            break;
        place(h, i, h->items[child]);
        i = child;
    }
    place(h, i, t);
}

int timer_set(struct timer_heap *h, struct timer *t, uint64_t deadline)
{
    if (timer_armed(t)) {
        uint64_t old = t->deadline;
        t->deadline = deadline;
        if (deadline < old)
            sift_up(h, t->_index);
        else
            sift_down(h, t->_index);
        return 0;
    }
    if (h->count == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        struct timer **items = realloc(h->items, sizeof(*items) * cap);
        if (items == NULL)
            return -ENOMEM;
        h->items = items;
        h->cap = cap;
    }
    t->deadline = deadline;
    place(h, h->count++, t);
    sift_up(h, t->_index);
    return 0;
}

void timer_cancel(struct timer_heap *h, struct timer *t)
{
    if (!timer_armed(t))
        return;
    uint32_t i = t->_index;
    t->_index = TIMER_IDLE;
    struct timer *last = h->items[--h->count];
    if (i == h->count)
        return;
    place(h, i, last);
    if (i > 0 && h->items[(i - 1) / 2]->deadline > last->deadline)
        sift_up(h, i);
    else
        sift_down(h, i);
}

struct timer *timer_pop_expired(struct timer_heap *h, uint64_t now)
{
    if (h->count == 0 || h->items[0]->deadline > now)
        return NULL;
    struct timer *t = h->items[0];
    timer_cancel(h, t);
    return t;
}

int64_t timer_next_in(const struct timer_heap *h, uint64_t now)
{
    if (h->count == 0)
        return -1;
    uint64_t d = h->items[0]->deadline;
    return d <= now ? 0 : (int64_t)(d - now);
}

void timer_heap_free(struct timer_heap *h)
{
    free(h->items);
    h->items = NULL;
    h->count = h->cap = 0;
}
