/* The cache's YAML: the top-level "cache:" and "redis:" sections and each route's
 * "cache:". They are registered with the config loader (cache_settings_register) and
 * read back from a loaded config with the accessors below. Durations are ms, sizes
 * bytes. */
#ifndef RINGSIDE_CACHE_SETTINGS_H
#define RINGSIDE_CACHE_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>

#include "cache/policy.h"
#include "proxy/config.h"

enum cache_query_mode_word { CACHE_QUERY_WORD_ALL, CACHE_QUERY_WORD_NONE, CACHE_QUERY_WORD_LIST };

struct cache_settings {          /* cache: */
    uint64_t memory;             /* default 256 MiB */
    uint64_t max_object;         /* default 8 MiB */
    int eviction;                /* enum cache_evict_policy; default s3fifo */
    uint64_t collapse_timeout;   /* ms a collapsed miss waits for the first; default 5s */
    char *header;                /* debug header name (X-Cache); NULL: not sent */
    char *surrogate_key_header;  /* default Surrogate-Key */
    struct cfg_strings warm;     /* URLs fetched at start and on reload */
    /* derived */
    char *header_miss, *header_hit, *header_stale, *header_revalidated, *header_collapsed,
        *header_bypass, *header_uncacheable; /* "X-Cache: MISS\r\n"..., or NULL */
    char *surrogate_lower;       /* lowercase field name for lookups */
};

struct cache_route_settings {    /* routes[i].cache */
    uint64_t default_ttl;
    uint64_t stale_while_revalidate;
    uint64_t stale_if_error;
    bool ignore_no_cache;
    bool ignore_set_cookie;
    int query;                   /* enum cache_query_mode_word */
    struct cfg_strings query_params;
    struct cfg_strings key_headers;
    /* derived */
    struct cache_route_policy policy;
    char **key_headers_lower;
};

struct redis_settings {          /* redis: */
    char *url;                   /* required */
    char *namespace_;            /* key and channel prefix; default "ringside" */
    uint64_t connect_timeout;    /* default 1s */
    uint64_t command_timeout;    /* default 250ms */
    uint64_t reconnect_max;      /* default 5s */
    uint64_t invalidation_delay; /* batch window for published invalidations; default 10ms */
    uint32_t invalidation_batch; /* most invalidations per message; default 100 */
    /* derived */
    char *host;                  /* as written in the URL; resolved at start */
    uint16_t port;
    char *username, *password;
    unsigned db;
};

/* Register the three sections with the loader. 0, or -ENOSPC. */
int cache_settings_register(void);

/* NULL when the section is absent. A route's cache section turns the cache on for it;
 * the top-level sections only tune it. */
const struct cache_settings *cache_settings_of(const struct cfg *cfg);
const struct cache_route_settings *cache_route_settings_of(const struct cfg_route *r);
const struct redis_settings *redis_settings_of(const struct cfg *cfg);
/* The module index of routes' cache sections (for handler_ops.route_module). */
int cache_route_module_index(void);
/* Defaults, for a config that enables caching on a route without a top-level "cache:". */
const struct cache_settings *cache_settings_default(void);

#endif
