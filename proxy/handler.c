/* The route handler registry and the worker's side of proxy/handler.h. */
#include "proxy/worker.h"
#include "proxy/worker_internal.h"

#include <errno.h>

const struct handler_ops *worker_handler;

void handler_register(const struct handler_ops *ops)
{
    worker_handler = ops;
}

void *hx_state(const struct hx *x)
{
    return ((const struct exchange *)x)->hstate;
}

void hx_set_state(struct hx *x, void *state)
{
    ((struct exchange *)x)->hstate = state;
}

enum http1_method hx_method(const struct hx *x)
{
    return ((const struct exchange *)x)->method;
}

const char *hx_request_id(const struct hx *x)
{
    return ((const struct exchange *)x)->request_id;
}

void hx_watch(struct hx *x)
{
    ((struct exchange *)x)->watch = true;
}

void hx_response_fields(struct hx *x, const char *fields)
{
    ((struct exchange *)x)->resp_fields = fields;
}

struct hw *hx_worker(const struct hx *x)
{
    return (struct hw *)((const struct exchange *)x)->worker;
}

uint32_t hx_route(const struct hx *x)
{
    return ((const struct exchange *)x)->route;
}

unsigned hw_index(const struct hw *w)
{
    return ((const struct worker *)w)->index;
}

unsigned hw_count(const struct hw *w)
{
    return ((const struct worker *)w)->rt->num_workers;
}

struct loop *hw_loop(struct hw *w)
{
    return ((struct worker *)w)->loop;
}

struct timer_heap *hw_timers(struct hw *w)
{
    return &((struct worker *)w)->timers;
}

struct metrics_worker *hw_metrics(struct hw *w)
{
    return ((struct worker *)w)->mw;
}

uint64_t hw_now_ns(const struct hw *w)
{
    return ((const struct worker *)w)->now;
}

int64_t hw_wall(const struct hw *w)
{
    return ((const struct worker *)w)->wall;
}

bool hw_draining(const struct hw *w)
{
    return ((const struct worker *)w)->draining;
}

uint8_t hw_kind(unsigned n)
{
    return (uint8_t)(TAG_HANDLER_FIRST + (n & 7));
}

unsigned hw_kind_index(uint64_t tag)
{
    return (unsigned)((tag & 0xff) - TAG_HANDLER_FIRST);
}

int hw_post(struct hw *from, unsigned index, void (*fn)(void *ws, void *arg), void *arg)
{
    struct runtime *rt = ((struct worker *)from)->rt;
    if (index >= rt->num_workers || rt->workers == NULL)
        return -ENOENT;
    struct worker *to = atomic_load(&rt->workers[index]);
    if (to == NULL)
        return -ENOENT;
    return worker_post(to, fn, arg);
}

int hw_fetch(struct hw *w, uint32_t route, struct slice *head, void *state)
{
    return client_fetch((struct worker *)w, route, head, state);
}

const struct cfg *hx_cfg(const struct hx *x)
{
    return ((const struct exchange *)x)->cfg->cfg;
}

const struct cfg *hw_cfg(const struct hw *w)
{
    return ((const struct worker *)w)->cfg->cfg;
}
