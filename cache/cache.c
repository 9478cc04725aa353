/* The process's cache: built from the start config, wired in as the route handler, and
 * served on the control port. */
#include "cache/cache.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cache/cache_internal.h"
#include "proxy/log.h"
#include "proxy/redis.h"

struct cache *the_cache;

int cache_register_config(void)
{
    return cache_settings_register();
}

static const char *const purge_kind_names[PURGE_KINDS] = {
    [PURGE_URL] = "url", [PURGE_PREFIX] = "prefix", [PURGE_TAG] = "tag", [PURGE_ALL] = "all",
    [PURGE_INVALIDATION] = "invalidation"};

static int register_metrics(struct cache *c)
{
    int rc = 0;
    rc |= metrics_gauge(c->metrics, "ringside_cache_objects", "Entries in the memory cache.", "",
                        &c->objects);
    rc |= metrics_gauge(c->metrics, "ringside_cache_bytes",
                        "Bytes the memory cache accounts for (bounded by cache.memory).", "",
                        &c->bytes);
    rc |= metrics_gauge(c->metrics, "ringside_cache_memory_bytes",
                        "The memory cache's bound (cache.memory).", "", &c->memory_limit);
    rc |= metrics_counter(c->metrics, "ringside_cache_evictions_total",
                          "Entries evicted from memory to make room.", "", &c->evictions);
    for (int k = 0; k < PURGE_KINDS; k++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "kind=\"%s\"", purge_kind_names[k]);
        rc |= metrics_counter(c->metrics, "ringside_cache_purges_total",
                              "Purges and invalidations applied, by kind.", labels,
                              &c->purges[k]);
        rc |= metrics_counter(c->metrics, "ringside_cache_purged_objects_total",
                              "Entries removed from memory by purges and invalidations.", labels,
                              &c->purged[k]);
    }
    static const char *const l2[] = {"hit", "miss", "error"};
    for (int i = 0; i < 3 && c->redis; i++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "result=\"%s\"", l2[i]);
        rc |= metrics_counter(c->metrics, "ringside_cache_l2_requests_total",
                              "Redis lookups after a memory miss, by outcome.", labels,
                              &c->l2_requests[i]);
    }
    return rc == 0 ? 0 : -1;
}

/* Redis is reached by address from the workers: resolve its host now, off them. */
static int resolve_redis(struct cache *c, const struct redis_settings *rs, char *err,
                         size_t err_len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(rs->host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, err_len, "redis.url: cannot resolve %s: %s", rs->host, gai_strerror(rc));
        return -1;
    }
    char ip[INET6_ADDRSTRLEN];
    const void *a = res->ai_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    inet_ntop(res->ai_family, a, ip, sizeof(ip));
    freeaddrinfo(res);
    c->redis_host = strdup(ip);
    return c->redis_host != NULL ? 0 : -1;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

int cache_start(const struct cfg *cfg, struct metrics *m, char *err, size_t err_len)
{
    bool any_route = false;
    for (size_t i = 0; i < cfg->num_routes; i++)
        any_route |= cache_route_settings_of(&cfg->routes[i]) != NULL;
    const struct cache_settings *cs = cache_settings_of(cfg);
    if (cs == NULL)
        cs = cache_settings_default();

    struct cache *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    c->metrics = m;
    c->max_object = cs->max_object;
    /* max_object bounds bodies (the handler checks it); the store only bounds memory. */
    struct cache_store_options so = {.memory = cs->memory, .max_object = 0,
                                     .policy = cs->eviction};
    if (cache_store_new(&so, &c->store) < 0 || collapse_new(&c->collapse) < 0) {
        snprintf(err, err_len, "cannot create the cache store (cache.memory %llu bytes)",
                 (unsigned long long)cs->memory);
        goto fail;
    }
    uint8_t id[16];
    if (getrandom(id, sizeof(id), 0) != sizeof(id))
        memset(id, 0, sizeof(id));
    for (int i = 0; i < 16; i++)
        snprintf(c->pod_id + 2 * i, 3, "%02x", id[i]);

    const struct redis_settings *rs = redis_settings_of(cfg);
    if (rs != NULL) {
        c->redis = true;
        c->redis_port = rs->port;
        c->redis_db = rs->db;
        c->connect_timeout = rs->connect_timeout;
        c->command_timeout = rs->command_timeout;
        c->reconnect_max = rs->reconnect_max;
        c->invalidation_delay = rs->invalidation_delay;
        c->invalidation_batch = rs->invalidation_batch;
        c->ns = strdup(rs->namespace_);
        c->redis_username = dup_or_null(rs->username);
        c->redis_password = dup_or_null(rs->password);
        if (c->ns == NULL || resolve_redis(c, rs, err, err_len) < 0)
            goto fail;
        /* Every worker's client, and worker 0's subscriber. */
        if (redis_metrics_new(m, cfg->workers + 1, &c->rm) < 0) {
            snprintf(err, err_len, "cannot register the redis metrics");
            goto fail;
        }
    }
    if (register_metrics(c) < 0) {
        snprintf(err, err_len, "cannot register the cache metrics");
        goto fail;
    }
    metrics_shared_set(m, c->memory_limit, (double)cs->memory);
    the_cache = c;
    cache_handler_register();
    if (any_route)
        log_info("cache enabled",
                 "\"memory\":%llu,\"max_object\":%llu,\"redis\":%s", (unsigned long long)cs->memory,
                 (unsigned long long)cs->max_object, c->redis ? "true" : "false");
    return 0;
fail:
    cache_store_free(c->store);
    collapse_free(c->collapse);
    redis_metrics_free(c->rm);
    free(c->ns);
    free(c->redis_host);
    free(c->redis_username);
    free(c->redis_password);
    free(c);
    return -1;
}

void cache_stop(void)
{
    struct cache *c = the_cache;
    if (c == NULL)
        return;
    the_cache = NULL;
    cache_store_free(c->store);
    collapse_free(c->collapse);
    redis_metrics_free(c->rm);
    free(c->ns);
    free(c->redis_host);
    free(c->redis_username);
    free(c->redis_password);
    free(c);
}

static bool same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void warm_job(void *ws, void *arg)
{
    (void)arg;
    if (ws != NULL) {
        struct cache_worker *cw = ws;
        sync_warm(cw, hw_cfg(cw->w));
    }
}

void cache_reloaded(const struct cfg *old_cfg, const struct cfg *new_cfg)
{
    if (the_cache == NULL)
        return;
    const struct cache_settings *a = cache_settings_of(old_cfg), *b = cache_settings_of(new_cfg);
    const struct cache_settings *d = cache_settings_default();
    a = a != NULL ? a : d;
    b = b != NULL ? b : d;
    if (a->memory != b->memory || a->max_object != b->max_object || a->eviction != b->eviction)
        log_warn("cache.memory, cache.max_object and cache.eviction take effect on restart", NULL);
    const struct redis_settings *ra = redis_settings_of(old_cfg), *rb = redis_settings_of(new_cfg);
    if ((ra == NULL) != (rb == NULL) ||
        (ra != NULL && (!same_string(ra->url, rb->url) ||
                        !same_string(ra->namespace_, rb->namespace_))))
        log_warn("redis settings take effect on restart", NULL);
    if (b->warm.count == 0)
        return;
    /* Worker 0 adopts the new config before it runs posted work. */
    struct hw *w0 = atomic_load(&the_cache->worker0);
    if (w0 != NULL)
        hw_post(w0, 0, warm_job, NULL);
}

/* ---- control port ---- */

static char *json_text(json_t *obj, size_t *len)
{
    char *s = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (s == NULL)
        return NULL;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (t == NULL) {
        free(s);
        return NULL;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    *len = n + 1;
    return t;
}

static int error_answer(int status, const char *why, char **body, size_t *len)
{
    *body = json_text(json_pack("{s:s,s:s}", "result", "error", "error", why), len);
    return status;
}

static int control_purge(const char *req, size_t req_len, char **body, size_t *len)
{
    json_error_t jerr;
    json_t *in = json_loadb(req, req_len, 0, &jerr);
    if (!json_is_object(in)) {
        json_decref(in);
        return error_answer(400,
                            "expected a JSON object: {\"url\":\"/path\"}, {\"prefix\":\"/p/\"}, "
                            "{\"tag\":\"t\"} or {\"all\":true}, with an optional \"host\"",
                            body, len);
    }
    const char *host = json_string_value(json_object_get(in, "host"));
    const char *arg = NULL;
    enum purge_kind kind;
    int given = 0;
    if ((arg = json_string_value(json_object_get(in, "url"))) != NULL) {
        kind = PURGE_URL;
        given++;
    }
    if (json_string_value(json_object_get(in, "prefix")) != NULL) {
        arg = json_string_value(json_object_get(in, "prefix"));
        kind = PURGE_PREFIX;
        given++;
    }
    if (json_string_value(json_object_get(in, "tag")) != NULL) {
        arg = json_string_value(json_object_get(in, "tag"));
        kind = PURGE_TAG;
        given++;
    }
    if (json_is_true(json_object_get(in, "all"))) {
        kind = PURGE_ALL;
        given++;
    }
    int status = 0;
    if (given != 1)
        status = error_answer(400, "give exactly one of url, prefix, tag, all", body, len);
    else if ((kind == PURGE_URL || kind == PURGE_PREFIX) && (arg[0] != '/'))
        status = error_answer(400, "url and prefix are paths starting with /", body, len);
    else if (kind == PURGE_TAG && (arg[0] == '\0' || strchr(arg, ' ') != NULL))
        status = error_answer(400, "a tag is one word", body, len);
    if (status != 0) {
        json_decref(in);
        return status;
    }
    char hostbuf[256];
    if (host != NULL) {
        /* Keys hold the host in lowercase. */
        size_t i = 0;
        for (; host[i] && i + 1 < sizeof(hostbuf); i++)
            hostbuf[i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] + 32 : host[i]);
        hostbuf[i] = '\0';
        host = hostbuf;
    }
    bool pods = false;
    size_t n = sync_purge(kind, host, arg, &pods);
    json_decref(in);
    *body = json_text(json_pack("{s:s,s:I,s:b}", "result", "ok", "purged", (json_int_t)n,
                                "other_pods", pods),
                      len);
    return 200;
}

static int control_status(char **body, size_t *len)
{
    struct cache_store_stats st;
    cache_store_stats(the_cache->store, &st);
    *body = json_text(json_pack("{s:I,s:I,s:I,s:I,s:b,s:I}", "objects", (json_int_t)st.objects,
                                "bytes", (json_int_t)st.bytes, "evictions",
                                (json_int_t)st.evictions, "fills_in_progress",
                                (json_int_t)collapse_count(the_cache->collapse), "redis",
                                the_cache->redis, "redis_generation",
                                (json_int_t)atomic_load(&the_cache->l2_generation)),
                      len);
    return 200;
}

int cache_control(const char *method, const char *path, const char *req_body, size_t req_len,
                  char **body, size_t *body_len)
{
    if (the_cache == NULL)
        return 0;
    if (strcmp(path, "/cache/purge") == 0) {
        if (strcmp(method, "POST") != 0)
            return error_answer(405, "use POST", body, body_len);
        return control_purge(req_body, req_len, body, body_len);
    }
    if (strcmp(path, "/cache/status") == 0) {
        if (strcmp(method, "GET") != 0)
            return error_answer(405, "use GET", body, body_len);
        return control_status(body, body_len);
    }
    return 0;
}
