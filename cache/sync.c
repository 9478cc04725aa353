/* Keeping pods in step: invalidations (RFC 9111 §4.4) and control-port purges act on
 * this process's memory at once and reach the other pods through Redis pub/sub, batched
 * when they burst. Also cache warming.
 *
 * A message on "<namespace>:invalidate" is JSON:
 *   {"origin":"<pod id>","ops":[{"key":"..."},{"url":"/p","host":"h"},
 *    {"prefix":"/p/","host":null},{"tag":"t"},{"all":true}],"generation":7}
 * Every field but origin is optional. A pod ignores its own messages. */
#include "cache/cache_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/redis.h"

static void count_purge(enum purge_kind kind, size_t removed)
{
    metrics_shared_add(the_cache->metrics, the_cache->purges[kind], 1);
    metrics_shared_add(the_cache->metrics, the_cache->purged[kind], removed);
}

static void publish(struct cache_worker *cw, json_t *msg)
{
    if (cw->redis == NULL || !redis_client_up(cw->redis))
        return; /* other pods miss it; their copies expire by their own freshness */
    json_object_set_new(msg, "origin", json_string(the_cache->pod_id));
    char *payload = json_dumps(msg, JSON_COMPACT);
    if (payload == NULL)
        return;
    char channel[256];
    snprintf(channel, sizeof(channel), "%s:invalidate", the_cache->ns);
    const char *argv[] = {"PUBLISH", channel, payload};
    size_t lens[] = {7, strlen(channel), strlen(payload)};
    redis_command_nowait(cw->redis, hw_now_ns(cw->w), 3, argv, lens);
    free(payload);
}

/* ---- batched invalidations ---- */

static void batch_flush(struct cache_worker *cw)
{
    timer_cancel(hw_timers(cw->w), &cw->batch_timer);
    json_t *ops = cw->batch;
    cw->batch = NULL;
    cw->batch_items = 0;
    if (ops == NULL)
        return;
    json_t *msg = json_object();
    if (msg != NULL && json_object_set_new(msg, "ops", ops) == 0)
        publish(cw, msg);
    json_decref(msg);
}

void sync_batch_timer(struct cache_worker *cw)
{
    batch_flush(cw);
}

static void batch_add(struct cache_worker *cw, json_t *op)
{
    if (op == NULL || the_cache->redis == false) {
        json_decref(op);
        return;
    }
    if (cw->batch == NULL && (cw->batch = json_array()) == NULL) {
        json_decref(op);
        return;
    }
    json_array_append_new(cw->batch, op);
    if (++cw->batch_items >= the_cache->invalidation_batch || the_cache->invalidation_delay == 0) {
        batch_flush(cw);
        return;
    }
    if (!timer_armed(&cw->batch_timer))
        timer_set(hw_timers(cw->w), &cw->batch_timer,
                  hw_now_ns(cw->w) + the_cache->invalidation_delay * 1000000u);
}

void sync_invalidate_key(struct cache_worker *cw, uint64_t hash, const char *key, size_t len)
{
    size_t n = cache_store_purge_key(the_cache->store, hash, key, len);
    count_purge(PURGE_INVALIDATION, n);
    cache_gauges_update();
    l2_delete(cw, hash, key, len);
    batch_add(cw, json_pack("{s:s%}", "key", key, len));
}

/* ---- applying purges ---- */

static size_t apply(enum purge_kind kind, const char *host, const char *arg)
{
    struct cache_store *s = the_cache->store;
    switch (kind) {
    case PURGE_URL:
        return cache_store_purge_url(s, host, arg);
    case PURGE_PREFIX:
        return cache_store_purge_prefix(s, host, arg);
    case PURGE_TAG:
        return cache_store_purge_tag(s, arg);
    case PURGE_ALL:
        return cache_store_purge_all(s);
    case PURGE_INVALIDATION:
        return cache_store_purge_key(s, cache_key_hash(arg, strlen(arg)), arg, strlen(arg));
    case PURGE_KINDS:
        break;
    }
    return 0;
}

static void apply_op(json_t *op)
{
    const char *host = json_string_value(json_object_get(op, "host"));
    const char *s;
    enum purge_kind kind;
    if ((s = json_string_value(json_object_get(op, "key"))) != NULL)
        kind = PURGE_INVALIDATION;
    else if ((s = json_string_value(json_object_get(op, "url"))) != NULL)
        kind = PURGE_URL;
    else if ((s = json_string_value(json_object_get(op, "prefix"))) != NULL)
        kind = PURGE_PREFIX;
    else if ((s = json_string_value(json_object_get(op, "tag"))) != NULL)
        kind = PURGE_TAG;
    else if (json_is_true(json_object_get(op, "all")))
        kind = PURGE_ALL;
    else
        return;
    count_purge(kind, apply(kind, host, s));
}

void sync_on_message(void *arg, const char *payload, size_t len)
{
    (void)arg;
    json_error_t jerr;
    json_t *msg = json_loadb(payload, len, 0, &jerr);
    if (!json_is_object(msg)) {
        log_warn("invalid cache invalidation message", "\"error\":\"%s\"", jerr.text);
        json_decref(msg);
        return;
    }
    const char *origin = json_string_value(json_object_get(msg, "origin"));
    if (origin != NULL && strcmp(origin, the_cache->pod_id) == 0) {
        json_decref(msg);
        return;
    }
    json_t *gen = json_object_get(msg, "generation");
    if (json_is_integer(gen) && json_integer_value(gen) > 0) {
        uint64_t g = (uint64_t)json_integer_value(gen);
        uint64_t cur = atomic_load(&the_cache->l2_generation);
        while (g > cur && !atomic_compare_exchange_weak(&the_cache->l2_generation, &cur, g))
            ;
    }
    size_t i;
    json_t *op;
    json_array_foreach(json_object_get(msg, "ops"), i, op)
        apply_op(op);
    cache_gauges_update();
    json_decref(msg);
}

void sync_on_resubscribe(void *arg)
{
    struct cache_worker *cw = arg;
    /* Messages sent while the subscription was down are lost: at least pick up a
     * generation bumped meanwhile, so Redis copies purged meanwhile are not read. */
    log_info("cache invalidation channel subscribed", "\"channel\":\"%s:invalidate\"",
             the_cache->ns);
    l2_generation_wanted(cw);
}

void sync_publish_generation(struct cache_worker *cw, uint64_t generation)
{
    json_t *msg = json_pack("{s:I}", "generation", (json_int_t)generation);
    if (msg != NULL)
        publish(cw, msg);
    json_decref(msg);
}

/* ---- control-port purges ---- */

struct purge_job {
    enum purge_kind kind;
    char *host, *arg;
};

static void purge_job_run(void *ws, void *p)
{
    struct purge_job *job = p;
    struct cache_worker *cw = ws;
    if (cw != NULL) {
        json_t *op = json_object();
        if (job->host != NULL)
            json_object_set_new(op, "host", json_string(job->host));
        switch (job->kind) {
        case PURGE_URL:
            json_object_set_new(op, "url", json_string(job->arg));
            break;
        case PURGE_PREFIX:
            json_object_set_new(op, "prefix", json_string(job->arg));
            break;
        case PURGE_TAG:
            json_object_set_new(op, "tag", json_string(job->arg));
            break;
        default:
            json_object_set_new(op, "all", json_true());
            break;
        }
        batch_add(cw, op);
        /* Redis keys are hashes: a purge wider than one key moves every pod to a new
         * generation, under which nothing stored before is found. */
        l2_bump_generation(cw);
    }
    free(job->host);
    free(job->arg);
    free(job);
}

size_t sync_purge(enum purge_kind kind, const char *host, const char *arg, bool *reached_pods)
{
    size_t n = apply(kind, host, arg);
    count_purge(kind, n);
    cache_gauges_update();
    *reached_pods = false;
    struct hw *w0 = atomic_load(&the_cache->worker0);
    if (!the_cache->redis || w0 == NULL)
        return n;
    struct purge_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return n;
    job->kind = kind;
    job->host = host != NULL ? strdup(host) : NULL;
    job->arg = arg != NULL ? strdup(arg) : NULL;
    if (hw_post(w0, 0, purge_job_run, job) == 0)
        *reached_pods = true;
    else
        purge_job_run(NULL, job);
    return n;
}

/* ---- warming ---- */

static uint32_t route_for(const struct cfg *cfg, const char *path)
{
    for (size_t i = 0; i < cfg->num_routes; i++) {
        const struct cfg_route *r = &cfg->routes[i];
        if (r->methods != 0 && !(r->methods & (1u << HTTP1_GET)))
            continue;
        if (strncmp(path, r->prefix, strlen(r->prefix)) == 0)
            return (uint32_t)i;
    }
    return (uint32_t)cfg->num_routes - 1;
}

void sync_warm(struct cache_worker *cw, const struct cfg *cfg)
{
    const struct cache_settings *cs = cache_settings_of(cfg);
    if (cs == NULL)
        return;
    for (size_t i = 0; i < cs->warm.count; i++) {
        const char *url = cs->warm.items[i];
        const char *host = "localhost", *path = url;
        size_t host_len = strlen(host);
        if (strncmp(url, "http://", 7) == 0) {
            host = url + 7;
            path = strchr(host, '/');
            host_len = path != NULL ? (size_t)(path - host) : strlen(host);
            if (path == NULL)
                path = "/";
        }
        uint32_t route = route_for(cfg, path);
        const struct cache_route_settings *rs = cache_route_settings_of(&cfg->routes[route]);
        if (rs == NULL) {
            log_warn("cache warm URL is not on a cached route", "\"url\":\"%s\"", url);
            continue;
        }
        if (cache_warm_one(cw, cfg, route, rs, host, host_len, path) < 0)
            log_warn("cache warm request failed to start", "\"url\":\"%s\"", url);
    }
}
