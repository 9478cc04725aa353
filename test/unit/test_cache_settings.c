/* The cache's YAML sections: read through the config loader as main registers them,
 * with defaults, derived values and file:line:column errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cache/settings.h"
#include "cache/store.h"

#define UP "upstream: {address: 127.0.0.1:3000}\n"

static struct cfg *load(const char *yaml, char *err, size_t err_len)
{
    return cfg_load_string(yaml, strlen(yaml), "t.yaml", err, err_len);
}

static void test_absent_sections(void **state)
{
    (void)state;
    char err[512] = "";
    struct cfg *cfg = load(UP, err, sizeof(err));
    assert_non_null(cfg);
    assert_null(cache_settings_of(cfg));
    assert_null(redis_settings_of(cfg));
    assert_null(cache_route_settings_of(&cfg->routes[0]));
    cfg_free(cfg);
    const struct cache_settings *d = cache_settings_default();
    assert_int_equal(d->memory, 256u << 20);
    assert_int_equal(d->max_object, 8u << 20);
    assert_int_equal(d->eviction, CACHE_EVICT_S3FIFO);
    assert_int_equal(d->collapse_timeout, 5000);
    assert_null(d->header_hit);
}

static void test_full_sections(void **state)
{
    (void)state;
    static const char yaml[] =
        UP "cache:\n"
        "  memory: 64MiB\n"
        "  max_object: 1MiB\n"
        "  eviction: lru\n"
        "  collapse_timeout: 2s\n"
        "  header: X-Cache\n"
        "  surrogate_key_header: Edge-Tag\n"
        "  warm: [/a, \"http://example.com/b\"]\n"
        "redis:\n"
        "  url: redis://user:secret@127.0.0.1:6380/2\n"
        "  namespace: shop\n"
        "  command_timeout: 100ms\n"
        "  invalidation_batch: 7\n"
        "routes:\n"
        "  - match: { prefix: /api/ }\n"
        "    cache:\n"
        "      default_ttl: 30s\n"
        "      stale_while_revalidate: 10s\n"
        "      stale_if_error: 5m\n"
        "      ignore_no_cache: true\n"
        "      key: { query: list, query_params: [page, sort], headers: [Accept-Language] }\n"
        "  - match: { prefix: / }\n"
        "    cache:\n";
    char err[512] = "";
    struct cfg *cfg = load(yaml, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("%s", err);
    const struct cache_settings *cs = cache_settings_of(cfg);
    assert_non_null(cs);
    assert_int_equal(cs->memory, 64u << 20);
    assert_int_equal(cs->max_object, 1u << 20);
    assert_int_equal(cs->eviction, CACHE_EVICT_LRU);
    assert_int_equal(cs->collapse_timeout, 2000);
    assert_string_equal(cs->header_hit, "X-Cache: HIT\r\n");
    assert_string_equal(cs->header_uncacheable, "X-Cache: UNCACHEABLE\r\n");
    assert_string_equal(cs->surrogate_lower, "edge-tag");
    assert_int_equal(cs->warm.count, 2);
    assert_string_equal(cs->warm.items[1], "http://example.com/b");

    const struct redis_settings *rs = redis_settings_of(cfg);
    assert_non_null(rs);
    assert_string_equal(rs->host, "127.0.0.1");
    assert_int_equal(rs->port, 6380);
    assert_int_equal(rs->db, 2);
    assert_string_equal(rs->username, "user");
    assert_string_equal(rs->password, "secret");
    assert_string_equal(rs->namespace_, "shop");
    assert_int_equal(rs->command_timeout, 100);
    assert_int_equal(rs->connect_timeout, 1000);
    assert_int_equal(rs->invalidation_batch, 7);
    assert_int_equal(rs->invalidation_delay, 10);

    const struct cache_route_settings *r0 = cache_route_settings_of(&cfg->routes[0]);
    assert_non_null(r0);
    assert_int_equal(r0->policy.default_ttl, 30);
    assert_int_equal(r0->policy.stale_while_revalidate, 10);
    assert_int_equal(r0->policy.stale_if_error, 300);
    assert_true(r0->policy.ignore_no_cache);
    assert_false(r0->policy.ignore_set_cookie);
    assert_int_equal(r0->policy.key.query_mode, CACHE_QUERY_LIST);
    assert_int_equal(r0->policy.key.num_query, 2);
    assert_string_equal(r0->policy.key.query[1], "sort");
    assert_int_equal(r0->policy.key.num_headers, 1);
    assert_string_equal(r0->policy.key.headers[0], "accept-language");
    /* A bare "cache:" turns the cache on with RFC behaviour. */
    const struct cache_route_settings *r1 = cache_route_settings_of(&cfg->routes[1]);
    assert_non_null(r1);
    assert_int_equal(r1->policy.default_ttl, 0);
    assert_int_equal(r1->policy.key.query_mode, CACHE_QUERY_ALL);
    cfg_free(cfg);
}

struct error_case {
    const char *yaml;
    const char *position;
    const char *needle;
};

static const struct error_case error_cases[] = {
    {UP "cache: { memry: 1MiB }\n", "2:10", "cache.memry: unknown key (expected one of: memory, max_object"},
    {UP "cache: { memory: 1KiB }\n", "2:18", "must be at least 1MiB"},
    {UP "cache: { memory: 2MiB, max_object: 4MiB }\n", "2:36", "cache.max_object: must not be larger than cache.memory"},
    {UP "cache: { eviction: fifo }\n", "2:20", "one of s3fifo, lru, sieve"},
    {UP "cache: { header: \"X Cache\" }\n", "2:18", "header field name"},
    {UP "cache: { warm: [ftp://x/] }\n", "2:16", "a path"},
    {UP "cache: [1]\n", "2:8", "expected a mapping"},
    {UP "cache: {}\ncache: {}\n", "3:1", "duplicate key"},
    {UP "redis: { namespace: a }\n", "2:8", "redis.url is required"},
    {UP "redis: { url: \"http://x\" }\n", "2:15", NULL},
    {UP "redis: { url: \"redis://h:1\", namespace: \"a b\" }\n", "2:41", "visible ASCII"},
    {UP "routes:\n  - cache: { default_ttl: forever }\n", "3:27", "routes[0].cache.default_ttl: expected a duration"},
    {UP "routes:\n  - cache: { key: { query: list } }\n", "3:19", "routes[0].cache.key: query: list needs query_params"},
    {UP "routes:\n  - cache: { key: { query_params: [a] } }\n", "3:19", "routes[0].cache.key: query_params needs query: list"},
    {UP "routes:\n  - cache: { key: { headers: [\"a b\"] } }\n", "3:19", "routes[0].cache.key: headers must be header field names"},
    {UP "routes:\n  - cache: { stale: 1s }\n", "3:14", "unknown key (expected one of: default_ttl"},
    {UP "routes:\n  - caches: {}\n", "3:5", "unknown key (expected one of: name, match, cache"},
};

static void test_errors(void **state)
{
    (void)state;
    size_t failed = 0;
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        const struct error_case *c = &error_cases[i];
        char err[512] = "", want[64];
        struct cfg *cfg = load(c->yaml, err, sizeof(err));
        if (cfg != NULL) {
            cfg_free(cfg);
            print_error("expected an error for:\n%s\n", c->yaml);
            failed++;
            continue;
        }
        snprintf(want, sizeof(want), "t.yaml:%s: ", c->position);
        if (strncmp(err, want, strlen(want)) != 0 ||
            (c->needle != NULL && strstr(err, c->needle) == NULL)) {
            print_error("for:\n%s\nwant \"%s...%s...\"\ngot  \"%s\"\n", c->yaml, want,
                        c->needle ? c->needle : "", err);
            failed++;
        }
    }
    assert_int_equal(failed, 0);
}

int main(void)
{
    if (cache_settings_register() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absent_sections),
        cmocka_unit_test(test_full_sections),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
