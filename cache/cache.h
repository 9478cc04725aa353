/* The response cache: what main wires in.
 *
 * One cache per process (DESIGN §2): an in-memory store shared by every worker, an
 * optional Redis tier shared by every pod, miss collapsing, background refresh,
 * invalidation and purges. It plugs into the proxy as its route handler. */
#ifndef RINGSIDE_CACHE_H
#define RINGSIDE_CACHE_H

#include <stddef.h>

struct cfg;
struct metrics;

/* Register the cache's config sections. Call before loading any config. 0 or -ENOSPC. */
int cache_register_config(void);

/* Create the cache from the configuration ringside starts with (store size, Redis) and
 * register it as the route handler. Call before workers start. 0, or -1 with a message
 * in err. Redis host names are resolved here (blocking). */
int cache_start(const struct cfg *cfg, struct metrics *m, char *err, size_t err_len);
/* After every worker has stopped. */
void cache_stop(void);

/* A new configuration was adopted: warm its URLs, and log the keys that only a restart
 * changes. Any thread. */
void cache_reloaded(const struct cfg *old_cfg, const struct cfg *new_cfg);

/* The control port's cache endpoints (POST /cache/purge, GET /cache/status). Returns
 * the HTTP status and sets *body to a malloc'd JSON answer (*body_len bytes). Returns
 * 0 when path is not the cache's. Any thread. */
int cache_control(const char *method, const char *path, const char *req_body, size_t req_len,
                  char **body, size_t *body_len);

#endif
