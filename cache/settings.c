/* The cache's configuration sections. */
#include "cache/settings.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/store.h"
#include "proxy/redis.h"

#define MS_PER_DAY (24ull * 3600 * 1000)

static int cache_index = -1, route_index = -1, redis_index = -1;

static const char *const eviction_words[] = {[CACHE_EVICT_S3FIFO] = "s3fifo",
                                             [CACHE_EVICT_LRU] = "lru",
                                             [CACHE_EVICT_SIEVE] = "sieve", NULL};
static const char *const query_words[] = {[CACHE_QUERY_WORD_ALL] = "all",
                                          [CACHE_QUERY_WORD_NONE] = "none",
                                          [CACHE_QUERY_WORD_LIST] = "list", NULL};

#define C_OFF(m) offsetof(struct cache_settings, m)
#define R_OFF(m) offsetof(struct cache_route_settings, m)
#define D_OFF(m) offsetof(struct redis_settings, m)

static const struct cfg_field cache_fields[] = {
    {"memory", CFG_K_SIZE64, C_OFF(memory), 1u << 20, 1ull << 40, NULL, NULL},
    {"max_object", CFG_K_SIZE64, C_OFF(max_object), 1, 1ull << 32, NULL, NULL},
    {"eviction", CFG_K_WORD, C_OFF(eviction), 0, 0, NULL, eviction_words},
    {"collapse_timeout", CFG_K_DURATION, C_OFF(collapse_timeout), 1, MS_PER_DAY, NULL, NULL},
    {"header", CFG_K_STRING, C_OFF(header), 1, 64, NULL, NULL},
    {"surrogate_key_header", CFG_K_STRING, C_OFF(surrogate_key_header), 1, 64, NULL, NULL},
    {"warm", CFG_K_STRING_LIST, C_OFF(warm), 1, 8192, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};

static const struct cfg_field key_fields[] = {
    {"query", CFG_K_WORD, R_OFF(query), 0, 0, NULL, query_words},
    {"query_params", CFG_K_STRING_LIST, R_OFF(query_params), 1, 256, NULL, NULL},
    {"headers", CFG_K_STRING_LIST, R_OFF(key_headers), 1, 64, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};

static const struct cfg_field route_fields[] = {
    {"default_ttl", CFG_K_DURATION, R_OFF(default_ttl), 0, 365 * MS_PER_DAY, NULL, NULL},
    {"stale_while_revalidate", CFG_K_DURATION, R_OFF(stale_while_revalidate), 0,
     365 * MS_PER_DAY, NULL, NULL},
    {"stale_if_error", CFG_K_DURATION, R_OFF(stale_if_error), 0, 365 * MS_PER_DAY, NULL, NULL},
    {"ignore_no_cache", CFG_K_BOOL, R_OFF(ignore_no_cache), 0, 0, NULL, NULL},
    {"ignore_set_cookie", CFG_K_BOOL, R_OFF(ignore_set_cookie), 0, 0, NULL, NULL},
    {"key", CFG_K_SECTION, 0, 0, 0, key_fields, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};

static const struct cfg_field redis_fields[] = {
    {"url", CFG_K_STRING, D_OFF(url), 1, 1024, NULL, NULL},
    {"namespace", CFG_K_STRING, D_OFF(namespace_), 1, 128, NULL, NULL},
    {"connect_timeout", CFG_K_DURATION, D_OFF(connect_timeout), 1, 60000, NULL, NULL},
    {"command_timeout", CFG_K_DURATION, D_OFF(command_timeout), 1, 60000, NULL, NULL},
    {"reconnect_max", CFG_K_DURATION, D_OFF(reconnect_max), 100, 3600000, NULL, NULL},
    {"invalidation_delay", CFG_K_DURATION, D_OFF(invalidation_delay), 0, 10000, NULL, NULL},
    {"invalidation_batch", CFG_K_COUNT32, D_OFF(invalidation_batch), 1, 10000, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL}};

/* ---- cache: ---- */

static void cache_defaults(void *p)
{
    struct cache_settings *s = p;
    s->memory = 256ull << 20;
    s->max_object = 8ull << 20;
    s->eviction = CACHE_EVICT_S3FIFO;
    s->collapse_timeout = 5000;
}

static bool field_name_ok(const char *s)
{
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s) != NULL))
            return false;
    return true;
}

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    if (d != NULL)
        for (char *p = d; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    return d;
}

static char *header_line(const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 5;
    char *s = malloc(len);
    if (s != NULL)
        snprintf(s, len, "%s: %s\r\n", name, value);
    return s;
}

static const char *cache_check(void *p, const char **key)
{
    struct cache_settings *s = p;
    if (s->max_object > s->memory) {
        *key = "max_object";
        return "must not be larger than cache.memory";
    }
    if (s->header != NULL && !field_name_ok(s->header)) {
        *key = "header";
        return "must be a header field name (letters, digits, - and the like)";
    }
    if (s->surrogate_key_header != NULL && !field_name_ok(s->surrogate_key_header)) {
        *key = "surrogate_key_header";
        return "must be a header field name (letters, digits, - and the like)";
    }
    for (size_t i = 0; i < s->warm.count; i++) {
        const char *u = s->warm.items[i];
        if (u[0] != '/' && strncmp(u, "http://", 7) != 0) {
            *key = "warm";
            return "each URL must be a path (\"/x\") or an http:// URL";
        }
        for (const char *c = u; *c; c++)
            if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
                *key = "warm";
                return "URLs must be visible ASCII (percent-encode other bytes)";
            }
    }
    const char *sk = s->surrogate_key_header != NULL ? s->surrogate_key_header : "surrogate-key";
    if ((s->surrogate_lower = lower_dup(sk)) == NULL)
        return "out of memory";
    if (s->header != NULL) {
        static const char *const values[] = {"MISS",        "HIT",    "STALE",
                                             "REVALIDATED", "COLLAPSED", "BYPASS",
                                             "UNCACHEABLE"};
        char **slots[] = {&s->header_miss,        &s->header_hit,       &s->header_stale,
                          &s->header_revalidated, &s->header_collapsed, &s->header_bypass,
                          &s->header_uncacheable};
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
            if ((*slots[i] = header_line(s->header, values[i])) == NULL)
                return "out of memory";
    }
    return NULL;
}

static void cache_release(void *p)
{
    struct cache_settings *s = p;
    free(s->header_miss);
    free(s->header_hit);
    free(s->header_stale);
    free(s->header_revalidated);
    free(s->header_collapsed);
    free(s->header_bypass);
    free(s->header_uncacheable);
    free(s->surrogate_lower);
}

/* ---- routes[i].cache: ---- */

static const char *route_check(void *p, const char **key)
{
    struct cache_route_settings *r = p;
    if (r->query == CACHE_QUERY_WORD_LIST && r->query_params.count == 0) {
        *key = "key";
        return "query: list needs query_params";
    }
    if (r->query != CACHE_QUERY_WORD_LIST && r->query_params.count > 0) {
        *key = "key";
        return "query_params needs query: list";
    }
    for (size_t i = 0; i < r->key_headers.count; i++)
        if (!field_name_ok(r->key_headers.items[i])) {
            *key = "key";
            return "headers must be header field names";
        }
    if (r->key_headers.count > 0) {
        r->key_headers_lower = calloc(r->key_headers.count, sizeof(char *));
        if (r->key_headers_lower == NULL)
            return "out of memory";
        for (size_t i = 0; i < r->key_headers.count; i++)
            if ((r->key_headers_lower[i] = lower_dup(r->key_headers.items[i])) == NULL)
                return "out of memory";
    }
    struct cache_route_policy *pol = &r->policy;
    pol->default_ttl = (int64_t)(r->default_ttl / 1000);
    pol->stale_while_revalidate = (int64_t)(r->stale_while_revalidate / 1000);
    pol->stale_if_error = (int64_t)(r->stale_if_error / 1000);
    pol->ignore_no_cache = r->ignore_no_cache;
    pol->ignore_set_cookie = r->ignore_set_cookie;
    pol->key.query_mode = r->query == CACHE_QUERY_WORD_ALL    ? CACHE_QUERY_ALL
                          : r->query == CACHE_QUERY_WORD_NONE ? CACHE_QUERY_NONE
                                                              : CACHE_QUERY_LIST;
    pol->key.query = (const char *const *)r->query_params.items;
    pol->key.num_query = r->query_params.count;
    pol->key.headers = (const char *const *)r->key_headers_lower;
    pol->key.num_headers = r->key_headers.count;
    return NULL;
}

static void route_release(void *p)
{
    struct cache_route_settings *r = p;
    if (r->key_headers_lower != NULL)
        for (size_t i = 0; i < r->key_headers.count; i++)
            free(r->key_headers_lower[i]);
    free(r->key_headers_lower);
}

/* ---- redis: ---- */

static void redis_defaults(void *p)
{
    struct redis_settings *s = p;
    s->connect_timeout = 1000;
    s->command_timeout = 250;
    s->reconnect_max = 5000;
    s->invalidation_delay = 10;
    s->invalidation_batch = 100;
}

static const char *redis_check(void *p, const char **key)
{
    struct redis_settings *s = p;
    if (s->url == NULL) {
        *key = NULL;
        return "redis.url is required (e.g. redis://127.0.0.1:6379/0)";
    }
    if (s->namespace_ == NULL && (s->namespace_ = strdup("ringside")) == NULL)
        return "out of memory";
    for (const char *c = s->namespace_; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
            *key = "namespace";
            return "must be visible ASCII without spaces";
        }
    struct redis_url u;
    const char *why = redis_url_parse(s->url, &u);
    if (why != NULL) {
        *key = "url";
        return why;
    }
    s->host = u.host;
    s->port = u.port;
    s->username = u.username;
    s->password = u.password;
    s->db = u.db;
    return NULL;
}

static void redis_release(void *p)
{
    struct redis_settings *s = p;
    struct redis_url u = {s->host, s->port, s->username, s->password, s->db};
    redis_url_free(&u);
}

static const struct cfg_module cache_module = {
    "cache", false, sizeof(struct cache_settings), cache_fields, cache_defaults, cache_check,
    cache_release};
static const struct cfg_module route_module = {
    "cache", true, sizeof(struct cache_route_settings), route_fields, NULL, route_check,
    route_release};
static const struct cfg_module redis_module = {
    "redis", false, sizeof(struct redis_settings), redis_fields, redis_defaults, redis_check,
    redis_release};

int cache_settings_register(void)
{
    cache_index = cfg_register_module(&cache_module);
    route_index = cfg_register_module(&route_module);
    redis_index = cfg_register_module(&redis_module);
    return cache_index < 0 || route_index < 0 || redis_index < 0 ? -ENOSPC : 0;
}

const struct cache_settings *cache_settings_of(const struct cfg *cfg)
{
    return cfg_module(cfg, cache_index);
}

const struct cache_route_settings *cache_route_settings_of(const struct cfg_route *r)
{
    return cfg_route_module(r, route_index);
}

const struct redis_settings *redis_settings_of(const struct cfg *cfg)
{
    return cfg_module(cfg, redis_index);
}

int cache_route_module_index(void)
{
    return route_index;
}

const struct cache_settings *cache_settings_default(void)
{
    static struct cache_settings defaults;
    static char surrogate[] = "surrogate-key";
    if (defaults.memory == 0) {
        cache_defaults(&defaults);
        defaults.surrogate_lower = surrogate;
    }
    return &defaults;
}
