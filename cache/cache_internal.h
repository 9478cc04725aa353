/* Shared by the cache's files: handler.c (the request path), l2.c (the Redis tier) and
 * sync.c (purges, invalidations across pods, warming). */
#ifndef RINGSIDE_CACHE_INTERNAL_H
#define RINGSIDE_CACHE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cache/collapse.h"
#include "cache/entry.h"
#include "cache/policy.h"
#include "cache/settings.h"
#include "cache/store.h"
#include "proxy/handler.h"
#include "proxy/metrics.h"
#include "proxy/timer.h"

enum cache_result {
    R_HIT,
    R_MISS,
    R_STALE,
    R_REVALIDATED,
    R_COLLAPSED,
    R_BYPASS,
    R_UNCACHEABLE,
    R_COUNT
};

enum purge_kind { PURGE_URL, PURGE_PREFIX, PURGE_TAG, PURGE_ALL, PURGE_INVALIDATION, PURGE_KINDS };

struct redis_client;
struct redis_metrics;

/* The process's cache. */
struct cache {
    struct cache_store *store;
    struct collapse *collapse;
    struct metrics *metrics;
    size_t max_object;
    metrics_id objects, bytes, memory_limit, evictions, purges[PURGE_KINDS], purged[PURGE_KINDS];
    metrics_id l2_requests[3]; /* hit, miss, error */
    _Atomic uint64_t evictions_seen;
    /* Redis, when configured at start */
    bool redis;
    char *redis_host; /* numeric */
    uint16_t redis_port;
    char *redis_username, *redis_password;
    unsigned redis_db;
    char *ns;
    uint64_t connect_timeout, command_timeout, reconnect_max, invalidation_delay;
    uint32_t invalidation_batch;
    struct redis_metrics *rm;
    char pod_id[33];                 /* who published an invalidation */
    _Atomic uint64_t l2_generation;  /* bumped by purges L2 cannot do one by one */
    _Atomic bool l2_generation_known;
    struct hw *_Atomic worker0;      /* runs control-port work that needs Redis */
};

extern struct cache *the_cache;

/* One worker's part. */
struct cx;
struct cache_worker {
    struct hw *w;
    unsigned index;
    struct redis_client *redis;      /* commands; NULL without Redis */
    struct redis_client *sub;        /* worker 0: the invalidation channel */
    struct cx **waiters;             /* buckets of parked collapsed misses */
    unsigned waiter_mask;
    /* ringside_cache_requests_total ids for the routes of one config */
    const struct cfg *ids_cfg;
    metrics_id (*ids)[R_COUNT];
    size_t ids_routes;
    /* invalidations waiting to be published as one message (a json_t array) */
    void *batch;
    uint32_t batch_items;
    struct timer batch_timer;
    bool want_generation;            /* worker 0: read it once Redis answers */
};

/* One request's state while the cache is involved beyond a plain hit. */
enum cx_phase { CX_INVALIDATE, CX_WAIT, CX_L2, CX_FILL, CX_REVALIDATE, CX_PASS };

struct cx {
    struct cache_worker *cw;
    struct hx *x;                /* NULL once the exchange ended (an L2 reply may be late) */
    const struct cache_settings *cs;
    const struct cache_route_settings *rs;
    uint32_t route;
    enum cx_phase phase;
    enum cache_result result;    /* counted when the exchange ends */
    bool filler;                 /* owns the collapse entry for key */
    bool background;             /* a refresh or warm-up no client waits for */
    /* the request, copied: its fields outlive the receive buffer */
    char *reqbuf;
    struct http1_header *hdrs;
    size_t nhdrs;
    char *host;
    size_t host_len;
    struct cache_request creq;
    char *key;
    size_t key_len;
    uint64_t hash;
    int64_t request_time;
    struct cache_entry *stale;   /* the stored entry being revalidated */
    /* the response being stored */
    struct cache_entry *building;
    char *head;                  /* stored head being built, without Content-Length */
    size_t head_len;
    char *body;
    size_t body_len, body_cap;
    bool storing;
    /* parked */
    struct cx *wnext, *wprev;
    bool waiting;
    bool l2_pending;             /* a Redis reply will come back to this state */
};

/* handler.c */
/* Make the cache the proxy's route handler. */
void cache_handler_register(void);
void cache_count(struct cache_worker *cw, const struct cfg *cfg, uint32_t route,
                 enum cache_result r);
void cache_gauges_update(void);
/* A stored or fetched entry answers the exchange (hit or 304). */
void cache_respond_entry(struct cx *cx, struct hx *x, struct cache_entry *e, enum cache_result r);
/* The fill for cx's key ended: tell every worker with waiters. */
void cache_fill_done(struct cx *cx, bool stored);
/* Continue a miss after the L2 lookup found nothing usable. */
void cache_miss_to_backend(struct cx *cx);
void cx_free(struct cx *cx);
/* Fetch path on host in the background and store the answer (cache warming). */
int cache_warm_one(struct cache_worker *cw, const struct cfg *cfg, uint32_t route,
                   const struct cache_route_settings *rs, const char *host, size_t host_len,
                   const char *path);

/* l2.c */
bool l2_up(struct cache_worker *cw);
/* Look cx's key up in Redis; the answer continues cx later. 0, or <0 when Redis cannot
 * be asked now (the caller goes on without it). */
int l2_lookup(struct cx *cx);
void l2_store(struct cache_worker *cw, const struct cache_entry *e);
void l2_delete(struct cache_worker *cw, uint64_t hash, const char *key, size_t len);
int l2_worker_start(struct cache_worker *cw);
void l2_worker_stop(struct cache_worker *cw);
void l2_event(struct cache_worker *cw, const struct loop_event *ev);
void l2_timer(struct cache_worker *cw, uint64_t tag);
/* Worker 0: purges that Redis cannot do key by key move every pod to a new generation. */
void l2_bump_generation(struct cache_worker *cw);
/* Worker 0: (re)read the generation once Redis answers. */
void l2_generation_wanted(struct cache_worker *cw);

/* sync.c */
/* Invalidate a URL key here and in every pod (RFC 9111 §4.4). */
void sync_invalidate_key(struct cache_worker *cw, uint64_t hash, const char *key, size_t len);
void sync_batch_timer(struct cache_worker *cw);
void sync_on_message(void *arg, const char *payload, size_t len);
void sync_on_resubscribe(void *arg);
void sync_warm(struct cache_worker *cw, const struct cfg *cfg);
/* Worker 0: tell the other pods about a new generation. */
void sync_publish_generation(struct cache_worker *cw, uint64_t generation);
/* Purge from the control port (any thread): memory here, then Redis and the other pods
 * through worker 0. Returns the entries removed here. */
size_t sync_purge(enum purge_kind kind, const char *host, const char *arg, bool *reached_pods);

#endif
