/* Route handlers: how a module (the cache) takes part in the requests of the routes it
 * is configured on, without the proxy knowing what it does.
 *
 * main registers a handler with the config module section that turns it on for a route.
 * For every request on such a route the handler sees the head first and either lets the
 * proxy forward it (optionally watching the response) or takes the exchange and answers
 * it itself, now or later. All callbacks run on the worker thread that owns the
 * exchange; a handler's per-worker state is its own and needs no locks.
 *
 * Ownership: a struct hx is the proxy's (the client's current exchange). It stays valid
 * from the request callback until the end callback, which always comes last. Slices
 * passed in are taken over (one reference each). */
#ifndef RINGSIDE_HANDLER_H
#define RINGSIDE_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/http1.h"
#include "proxy/loop.h"
#include "proxy/slice.h"

struct hx;          /* one exchange */
struct hw;          /* one worker, as handlers see it */
struct timer_heap;
struct metrics;
struct metrics_worker;
struct cfg;

enum handler_verdict {
    HANDLER_PASS,  /* the proxy forwards the request as usual */
    HANDLER_TAKEN, /* the handler answers (hx_respond) or forwards later (hx_forward) */
};

struct handler_ops {
    /* The module section (struct cfg_route modules[]) that enables it on a route. */
    int route_module;

    /* Per worker: made on the worker's thread before it serves, freed after it stops. */
    void *(*worker_start)(struct hw *w);
    void (*worker_stop)(void *ws);

    /* A request head on a route with the handler's section. req is valid only during
     * the call. Requests with a body are only ever passed. */
    enum handler_verdict (*request)(void *ws, struct hx *x, const struct http1_request *req,
                                    const void *route_section);
    /* For an exchange the handler watches (hx_watch): the backend's final response head.
     * HANDLER_TAKEN means the handler answers the client itself (a 304 that refreshed a
     * stored entry): the response goes no further, its body is discarded. */
    enum handler_verdict (*response_head)(void *ws, struct hx *x,
                                          const struct http1_response *resp);
    /* The response payload (chunked framing removed), in order. */
    void (*response_body)(void *ws, struct hx *x, const char *data, size_t len);
    /* The response ended: complete, or cut short (backend or client failure). */
    void (*response_end)(void *ws, struct hx *x, bool complete);
    /* The backend failed before a response head (status 502 or 504 would be sent).
     * Returning true means the handler answered instead (stale-if-error). */
    bool (*upstream_failed)(void *ws, struct hx *x, int status);
    /* A deadline set with hx_set_deadline passed. */
    void (*deadline)(void *ws, struct hx *x);
    /* The exchange is over, for whatever reason: free what hx_state holds. */
    void (*end)(void *ws, struct hx *x);

    /* A completion or timer with a tag the handler made with hw_tag. */
    void (*event)(void *ws, const struct loop_event *ev);
    void (*timer)(void *ws, uint64_t tag);
};

/* Register before workers start (not thread-safe). One handler per process. */
void handler_register(const struct handler_ops *ops);

/* ---- the exchange ---- */
void *hx_state(const struct hx *x);
void hx_set_state(struct hx *x, void *state);
enum http1_method hx_method(const struct hx *x);
/* The request id (for logs). */
const char *hx_request_id(const struct hx *x);
/* Only during the request callback: build the head to forward now, so the exchange can
 * go to the backend later. extra: fields to add ("Name: value\r\n"...), or NULL; with
 * drop_conditionals the client's If-None-Match / If-Modified-Since are not forwarded
 * (the handler sends its own validators in extra). 0 or -ENOMEM. */
int hx_prepare(struct hx *x, const struct http1_request *req, const char *extra,
               bool drop_conditionals);
/* Only during the request callback: a head for the same request that hw_fetch can send
 * on its own (a background refresh); NULL on ENOMEM. */
struct slice *hx_request_head(struct hx *x, const struct http1_request *req, const char *extra,
                              bool drop_conditionals);
/* Call the response callbacks for this exchange. */
void hx_watch(struct hx *x);
/* Add fields ("Name: value\r\n") to the response head forwarded to the client. The
 * string must stay valid until the head is sent (a literal). */
void hx_response_fields(struct hx *x, const char *fields);
/* Forward a taken exchange now, with the head hx_prepare built (or the request as it
 * came when hx_prepare was not called during the request callback: then -EINVAL). */
int hx_forward(struct hx *x);
/* Answer the client: head is the status line and fields each ending in CRLF (no blank
 * line), extra more fields (copied, may be NULL); the proxy adds X-Request-Id and the
 * connection fields. body may be NULL; it is not sent to HEAD or for status 304. Takes
 * over head and body. 0, or -ENOMEM after which the exchange has failed. */
int hx_respond(struct hx *x, struct slice *head, const char *extra, struct slice *body);
/* Arm (or with ms 0 cancel) the exchange's deadline callback. Only for a taken exchange
 * that has not been answered. */
void hx_set_deadline(struct hx *x, uint64_t ms);
/* The worker the exchange runs on. */
struct hw *hx_worker(const struct hx *x);
/* The route the exchange matched: an index into hx_cfg's routes. */
uint32_t hx_route(const struct hx *x);
/* The configuration the exchange started under (held until its end callback). */
const struct cfg *hx_cfg(const struct hx *x);

/* ---- the worker ---- */
unsigned hw_index(const struct hw *w);
/* The worker's current configuration (valid during the callback). */
const struct cfg *hw_cfg(const struct hw *w);
unsigned hw_count(const struct hw *w);
struct loop *hw_loop(struct hw *w);
struct timer_heap *hw_timers(struct hw *w);
struct metrics_worker *hw_metrics(struct hw *w);
uint64_t hw_now_ns(const struct hw *w);        /* monotonic, once per loop turn */
int64_t hw_wall(const struct hw *w);          /* wall-clock seconds, once per loop turn */
bool hw_draining(const struct hw *w);
/* Tag kinds (the low byte of a tag) the worker routes to the handler: completions to
 * its event callback, timers on hw_timers to its timer callback. n < 8; the other 56
 * bits of the tag are the handler's. */
uint8_t hw_kind(unsigned n);
/* The n a tag of the handler's kinds was made with. */
unsigned hw_kind_index(uint64_t tag);
/* Run fn(ws, arg) on worker index's thread soon (any thread may call). If that worker
 * stops first, fn runs with ws NULL at its end, to free arg. 0, -ENOENT (no such worker
 * running), or -ENOMEM. */
int hw_post(struct hw *from, unsigned index, void (*fn)(void *ws, void *arg), void *arg);

/* A request to the backend that no client waits for (a background refresh, cache
 * warming): head is the whole request head, taken over. It runs like a watched
 * exchange of route on worker w: the response callbacks and end get its struct hx,
 * whose state is set to state first. 0 or -errno (the end callback is then not called). */
int hw_fetch(struct hw *w, uint32_t route, struct slice *head, void *state);

#endif
