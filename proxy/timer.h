/* Deadlines of one worker: a binary min-heap of timers embedded in their owners.
 *
 * The worker sleeps in its ring until the earliest deadline, then pops what expired.
 * A timer carries a completion tag, so an expiry is dispatched like any completion and
 * a timer of a freed object is never touched (owners cancel before freeing). */
#ifndef RINGSIDE_TIMER_H
#define RINGSIDE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define TIMER_IDLE UINT32_MAX

struct timer {
    uint64_t deadline; /* ns, monotonic */
    uint64_t tag;
    uint32_t _index; /* position in the heap, TIMER_IDLE when not armed */
};

struct timer_heap {
    struct timer **items;
    uint32_t count;
    uint32_t cap;
};

static inline void timer_init(struct timer *t, uint64_t tag)
{
    t->deadline = 0;
    t->tag = tag;
    t->_index = TIMER_IDLE;
}

static inline bool timer_armed(const struct timer *t)
{
    return t->_index != TIMER_IDLE;
}

/* Arm t for deadline, or move it there if armed. 0 or -ENOMEM. */
int timer_set(struct timer_heap *h, struct timer *t, uint64_t deadline);
/* Disarm t; a no-op when it is not armed. */
void timer_cancel(struct timer_heap *h, struct timer *t);
/* Remove and return the earliest timer whose deadline is <= now, or NULL. */
struct timer *timer_pop_expired(struct timer_heap *h, uint64_t now);
/* ns until the earliest deadline (0 if due), or -1 with no timer armed. */
int64_t timer_next_in(const struct timer_heap *h, uint64_t now);
void timer_heap_free(struct timer_heap *h);

#endif
