/* Tests for the configuration loader: files, defaults, every kind of error with its
 * position, ${ENV} expansion, the value parsers and the cgroup CPU quota. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "proxy/config.h"
#include "proxy/http1.h"

#define M(m) (1u << (m))

static const char *data_dir(void)
{
    static char dir[PATH_MAX];
    const char *env = getenv("RINGSIDE_TEST_DATA");
    if (env != NULL && *env != '\0')
        return env;
    /* Run by hand: the data directory sits next to this file. */
    snprintf(dir, sizeof(dir), "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return "data";
    snprintf(slash, sizeof(dir) - (size_t)(slash - dir), "/data");
    return dir;
}

static void data_path(char *out, size_t cap, const char *rel)
{
    int n = snprintf(out, cap, "%s/%s", data_dir(), rel);
    assert_true(n > 0 && (size_t)n < cap);
}

static struct cfg *load_ok(const char *yaml)
{
    char err[512] = "";
    struct cfg *cfg = cfg_load_string(yaml, strlen(yaml), "t.yaml", err, sizeof(err));
    if (cfg == NULL)
        fail_msg("expected success for:\n%s\ngot: %s", yaml, err);
    return cfg;
}

/* The load must fail with a message that starts with "t.yaml:LINE:COL: " (or "t.yaml: "
 * when position is NULL) and contains needle. Prints why and returns false otherwise. */
static bool error_matches(const char *yaml, const char *position, const char *needle)
{
    char err[512] = "";
    char want[64];
    struct cfg *cfg = cfg_load_string(yaml, strlen(yaml), "t.yaml", err, sizeof(err));
    if (cfg != NULL) {
        cfg_free(cfg);
        print_error("expected an error for:\n%s\n", yaml);
        return false;
    }
    snprintf(want, sizeof(want), "t.yaml:%s%s ", position ? position : "", position ? ":" : "");
    if (strncmp(err, want, strlen(want)) != 0 || strstr(err, needle) == NULL) {
        print_error("for:\n%s\nwant \"%s...%s...\"\ngot  \"%s\"\n", yaml, want, needle, err);
        return false;
    }
    return true;
}

static void expect_error(const char *yaml, const char *position, const char *needle)
{
    if (!error_matches(yaml, position, needle))
        fail();
}

static void check_defaults_except_routes(const struct cfg *cfg)
{
    assert_string_equal(cfg->listen.text, "0.0.0.0:8080");
    assert_int_equal(cfg->listen.port, 8080);
    assert_true(cfg->workers_auto);
    assert_int_equal(cfg->workers, cfg_auto_workers("/sys/fs/cgroup"));
    assert_int_equal(cfg->io_backend, CFG_IO_AUTO);
    assert_int_equal(cfg->upstream.connect_timeout, 1000);
    assert_int_equal(cfg->upstream.response_timeout, 30000);
    assert_int_equal(cfg->upstream.idle_timeout, 60000);
    assert_int_equal(cfg->upstream.pool_size, 64);
    assert_true(cfg->upstream.retry_idempotent);
    assert_string_equal(cfg->metrics_listen.text, "0.0.0.0:9090");
    assert_string_equal(cfg->control_listen.text, "127.0.0.1:9091");
    assert_int_equal(cfg->limits.max_connections, 10000);
    assert_int_equal(cfg->limits.max_request_line, 8192);
    assert_int_equal(cfg->limits.max_head, 32768);
    assert_int_equal(cfg->limits.max_headers, 100);
    assert_int_equal(cfg->limits.max_chunk_ext, 1024);
    assert_int_equal(cfg->limits.max_body, 64u << 20);
    assert_int_equal(cfg->limits.max_output, 256u << 10);
    assert_int_equal(cfg->limits.recv_buffers, 256);
    assert_int_equal(cfg->limits.recv_buffer_size, 16u << 10);
    assert_int_equal(cfg->timeouts.header, 10000);
    assert_int_equal(cfg->timeouts.idle, 60000);
    assert_int_equal(cfg->timeouts.send, 60000);
    assert_int_equal(cfg->timeouts.drain, 25000);
    assert_int_equal(cfg->log.level, CFG_LOG_INFO);
    assert_true(cfg->log.access);
}

static void check_route(const struct cfg *cfg, size_t i, const char *name, const char *prefix,
                        uint32_t methods)
{
    assert_true(i < cfg->num_routes);
    assert_string_equal(cfg->routes[i].name, name);
    assert_string_equal(cfg->routes[i].prefix, prefix);
    assert_int_equal(cfg->routes[i].methods, methods);
}

/* ---- good files ---------------------------------------------------------------------- */

static void test_example_file(void **state)
{
    (void)state;
    char path[PATH_MAX], err[512] = "";
    data_path(path, sizeof(path), "../../../examples/ringside.yaml");
    unsetenv("RINGSIDE_UPSTREAM");
    struct cfg *cfg = cfg_load(path, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_string_equal(cfg->path, path);
    /* The example spells out every default. */
    check_defaults_except_routes(cfg);
    assert_true(cfg->listen.resolved);
    assert_string_equal(cfg->upstream.address.text, "127.0.0.1:3000");
    assert_string_equal(cfg->upstream.address.host, "127.0.0.1");
    assert_int_equal(cfg->upstream.address.port, 3000);
    assert_true(cfg->upstream.address.resolved);
    assert_int_equal(cfg->num_routes, 3);
    check_route(cfg, 0, "api", "/api/", M(HTTP1_GET) | M(HTTP1_HEAD));
    check_route(cfg, 1, "api-writes", "/api/", 0);
    check_route(cfg, 2, "default", "/", 0);
    cfg_free(cfg);

    /* Its upstream can be pointed elsewhere from the environment. */
    setenv("RINGSIDE_UPSTREAM", "backend:3000", 1);
    cfg = cfg_load(path, err, sizeof(err));
    unsetenv("RINGSIDE_UPSTREAM");
    if (cfg == NULL)
        fail_msg("%s", err);
    assert_string_equal(cfg->upstream.address.host, "backend");
    assert_false(cfg->upstream.address.resolved);
    cfg_free(cfg);
}

static void test_full_file(void **state)
{
    (void)state;
    char path[PATH_MAX], err[512] = "";
    data_path(path, sizeof(path), "config/full.yaml");
    struct cfg *cfg = cfg_load(path, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("%s", err);

    assert_string_equal(cfg->listen.text, "[::1]:8443");
    assert_string_equal(cfg->listen.host, "::1");
    assert_int_equal(cfg->listen.port, 8443);
    assert_true(cfg->listen.resolved);
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&cfg->listen.sa;
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(sin6->sin6_port), 8443);
    assert_int_equal(cfg->listen.sa_len, sizeof(struct sockaddr_in6));
    assert_memory_equal(&sin6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback));
    assert_false(cfg->workers_auto);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->io_backend, CFG_IO_EPOLL);

    assert_string_equal(cfg->upstream.address.host, "backend.default.svc.cluster.local");
    assert_int_equal(cfg->upstream.address.port, 8000);
    assert_false(cfg->upstream.address.resolved);
    assert_int_equal(cfg->upstream.address.sa_len, 0);
    assert_int_equal(cfg->upstream.connect_timeout, 250);
    assert_int_equal(cfg->upstream.response_timeout, 1500);
    assert_int_equal(cfg->upstream.idle_timeout, 120000);
    assert_int_equal(cfg->upstream.pool_size, 0);
    assert_false(cfg->upstream.retry_idempotent);

    assert_string_equal(cfg->metrics_listen.text, ":9100");
    assert_string_equal(cfg->metrics_listen.host, "0.0.0.0");
    assert_int_equal(cfg->metrics_listen.port, 9100);
    assert_true(cfg->metrics_listen.resolved);
    assert_string_equal(cfg->control_listen.text, "127.0.0.1:9101");

    assert_int_equal(cfg->limits.max_connections, 500);
    assert_int_equal(cfg->limits.max_request_line, 4096);
    assert_int_equal(cfg->limits.max_head, 1000000);
    assert_int_equal(cfg->limits.max_headers, 50);
    assert_int_equal(cfg->limits.max_chunk_ext, 0);
    assert_int_equal(cfg->limits.max_body, 0);
    assert_int_equal(cfg->timeouts.header, 5000);
    assert_int_equal(cfg->timeouts.idle, 3600000);
    assert_int_equal(cfg->timeouts.send, 90000);
    assert_int_equal(cfg->timeouts.drain, 0);
    assert_int_equal(cfg->log.level, CFG_LOG_DEBUG);
    assert_false(cfg->log.access);

    assert_int_equal(cfg->num_routes, 3); /* "everything" is the catch-all: none appended */
    check_route(cfg, 0, "ws", "/live", M(HTTP1_GET));
    check_route(cfg, 1, "/events/", "/events/",
                M(HTTP1_POST) | M(HTTP1_PUT) | M(HTTP1_DELETE) | M(HTTP1_PATCH) |
                    M(HTTP1_OPTIONS) | M(HTTP1_CONNECT) | M(HTTP1_TRACE) | M(HTTP1_HEAD));
    check_route(cfg, 2, "everything", "/", 0);
    cfg_free(cfg);
}

static void test_minimal_defaults(void **state)
{
    (void)state;
    char path[PATH_MAX], err[512] = "";
    data_path(path, sizeof(path), "config/minimal.yaml");
    struct cfg *cfg = cfg_load(path, err, sizeof(err));
    if (cfg == NULL)
        fail_msg("%s", err);
    check_defaults_except_routes(cfg);
    assert_true(cfg->workers >= 1);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->listen.sa;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 8080);
    assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
    assert_int_equal(cfg->num_routes, 1);
    check_route(cfg, 0, "default", "/", 0);
    cfg_free(cfg);
}

static void test_success_leaves_err_alone(void **state)
{
    (void)state;
    char err[16];
    memset(err, 'x', sizeof(err));
    const char *yaml = "upstream: {address: 127.0.0.1:3000}";
    struct cfg *cfg = cfg_load_string(yaml, strlen(yaml), NULL, err, sizeof(err));
    assert_non_null(cfg);
    for (size_t i = 0; i < sizeof(err); i++)
        assert_int_equal(err[i], 'x');
    cfg_free(cfg);
    /* No error buffer at all is allowed too. */
    assert_null(cfg_load_string("x: 1", 4, "t.yaml", NULL, 0));
}

static void test_flow_and_block_styles_agree(void **state)
{
    (void)state;
    struct cfg *a = load_ok("upstream: {address: 127.0.0.1:3000, pool_size: 7}\n"
                            "limits: {max_body: 1GiB}\n");
    struct cfg *b = load_ok("---\nupstream:\n  address: '127.0.0.1:3000'\n  pool_size: \"7\"\n"
                            "limits:\n  max_body: 1073741824\n...\n");
    assert_string_equal(a->upstream.address.text, b->upstream.address.text);
    assert_int_equal(a->upstream.pool_size, 7);
    assert_int_equal(b->upstream.pool_size, 7);
    assert_int_equal(a->limits.max_body, 1ull << 30);
    assert_int_equal(b->limits.max_body, 1ull << 30);
    cfg_free(a);
    cfg_free(b);
}

/* ---- errors -------------------------------------------------------------------------- */

struct error_case {
    const char *yaml;
    const char *position; /* "LINE:COL", or NULL for none */
    const char *needle;
};

#define UP "upstream: {address: 127.0.0.1:3000}\n"

static const struct error_case error_cases[] = {
    /* YAML syntax, reported at libyaml's problem mark. */
    {"upstream: {address: 1.2.3.4:5\n", "2:1", "YAML syntax error: did not find expected ',' or '}'"},
    {"upstream:\n  address: 1.2.3.4:5\n bad: 1\n", "3:2", "YAML syntax error"},
    {"a: b: c\n", "1:5", "mapping values are not allowed"},
    {"\tupstream: {}\n", "1:1", "YAML syntax error"},
    {UP "listen: \"\\q\"\n", "2:10", "YAML syntax error"},
    {UP "listen: \x01\n", "2:9", "invalid input: control characters are not allowed"},
    {UP "listen: \xff\n", "2:9", "invalid input"},
    {UP "---\n" UP, "2:1", "only one YAML document is allowed"},
    {"x: &a 1\n" UP "listen: *a\n", "3:9", "aliases (*a) are not supported"},
    {UP "routes: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
     "2:40", "nesting deeper than 32 levels"},

    /* Structure: root, unknown keys, duplicates, required keys. */
    {"", NULL, "upstream.address is required"},
    {"# nothing but a comment\n", NULL, "upstream.address is required"},
    {"- a\n- b\n", "1:1", "expected a mapping of settings at the top level, got a list"},
    {"just text\n", "1:1", "expected a mapping of settings at the top level, got \"just text\""},
    {"listen: 0.0.0.0:80\n", "1:1", "upstream.address is required"},
    {"listen: 0.0.0.0:80\nupstream:\n  pool_size: 3\n", "3:3", "upstream.address is required"},
    {"upstream: {}\n", "1:11", "upstream.address is required"},
    {UP "lisen: 0.0.0.0:80\n", "2:1", "lisen: unknown key (expected one of: listen, workers,"},
    {"upstream:\n  address: a:1\n  adress: b:2\n", "3:3",
     "upstream.adress: unknown key (expected one of: address, connect_timeout,"},
    {UP "websocket: {queue: 1}\n", "2:1", "websocket: unknown key"},
    /* Module sections are listed with the core's keys. */
    {UP "cach: {}\n", "2:1", "log, routes, cache, redis)"},
    {UP "\"a\\nb\\x01\": 1\n", "2:1", "t.yaml:2:1: a?b?: unknown key"},
    {UP "? [a]\n: 1\n", "2:3", "expected a key name, got a list"},
    {UP "log: {level: info, level: warn}\n", "2:20", "log.level: duplicate key (first at line 2, column 7)"},
    {UP "workers: 2\nworkers: 3\n", "3:1", "workers: duplicate key (first at line 2, column 1)"},

    /* Wrong types. */
    {"upstream: 127.0.0.1:3000\n", "1:11", "upstream: expected a mapping, got \"127.0.0.1:3000\""},
    {"upstream:\n", "1:10", "upstream: expected a mapping, got an empty value"},
    {UP "workers: many\n", "2:10", "workers: expected \"auto\" or a number of workers from 1 to 1024, got \"many\""},
    {UP "workers: 0\n", "2:10", "workers: expected \"auto\" or a number"},
    {UP "workers: 1025\n", "2:10", "got \"1025\""},
    {UP "workers: [1]\n", "2:10", "workers: expected \"auto\" or a number of workers from 1 to 1024, got a list"},
    {UP "io_backend: kqueue\n", "2:13", "io_backend: expected one of auto, uring, epoll, got \"kqueue\""},
    {UP "listen: {host: a}\n", "2:9", "listen: expected an address like 127.0.0.1:3000"},
    {UP "log:\n  level: verbose\n", "3:10", "log.level: expected one of debug, info, warn, error, got \"verbose\""},
    {UP "log: {access: yes}\n", "2:15", "log.access: expected true or false, got \"yes\""},
    {UP "log: {access: True}\n", "2:15", "expected true or false"},
    {UP "metrics: [a]\n", "2:10", "metrics: expected a mapping, got a list"},
    {UP "routes: {a: 1}\n", "2:9", "routes: expected a list of routes, got a mapping"},

    /* Durations. */
    {"upstream:\n  address: 127.0.0.1:3000\n  connect_timeout: fast\n", "3:20",
     "upstream.connect_timeout: expected a duration like 250ms, 5s or 2m, got \"fast\""},
    {"upstream:\n  address: 127.0.0.1:3000\n  connect_timeout: 5\n", "3:20", "expected a duration"},
    {"upstream: {address: 1.2.3.4:5, response_timeout: -5s}\n", "1:50",
     "upstream.response_timeout: expected a duration like 250ms, 5s or 2m, got \"-5s\" (negative"},
    {"upstream: {address: 1.2.3.4:5, idle_timeout: 0}\n", "1:46",
     "upstream.idle_timeout: must be greater than 0, got \"0\""},
    {"upstream: {address: 1.2.3.4:5, connect_timeout: 0.5ms}\n", "1:49", "expected a duration"},
    {"upstream: {address: 1.2.3.4:5, connect_timeout: 25h}\n", "1:49",
     "upstream.connect_timeout: must be at most 24h, got \"25h\""},
    {UP "timeouts: {header: 99999999999999999999s}\n", "2:20", "(too large)"},
    {UP "timeouts: {header: 0s}\n", "2:20", "timeouts.header: must be greater than 0"},
    {UP "timeouts: {drain: 1d}\n", "2:19", "timeouts.drain: expected a duration"},

    /* Sizes and counts. */
    {UP "limits: {max_body: lots}\n", "2:20",
     "limits.max_body: expected a size like 512, 64KiB or 16MiB, got \"lots\""},
    {UP "limits: {max_body: 64mb}\n", "2:20", "expected a size"},
    {UP "limits: {max_body: 64 MiB}\n", "2:20", "expected a size"},
    {UP "limits: {max_body: 20000000000GiB}\n", "2:20", "(too large)"},
    {UP "limits: {max_head: 4KiB}\n", "2:20",
     "limits.max_head: must be at least limits.max_request_line (8KiB), got 4KiB"},
    {UP "limits:\n  max_request_line: 64KiB\n", "3:21",
     "limits.max_request_line: must be at most limits.max_head (32KiB), got 64KiB"},
    {UP "limits: {max_head: 32MiB}\n", "2:20", "limits.max_head: must be at most 16MiB"},
    {UP "limits: {max_request_line: 8}\n", "2:28", "must be at least 16"},
    {UP "limits: {max_connections: 0}\n", "2:27", "limits.max_connections: must be greater than 0"},
    {UP "limits: {max_headers: -1}\n", "2:23", "(negative values are not allowed)"},
    {UP "limits: {max_headers: 0x10}\n", "2:23", "expected a whole number, got \"0x10\""},
    {UP "limits: {max_headers: 1.0}\n", "2:23", "expected a whole number"},
    {UP "limits: {recv_buffers: 100}\n", "2:24", "must be a power of two"},
    {UP "limits: {recv_buffers: 4}\n", "2:24", ""},
    {UP "limits: {recv_buffer_size: 512}\n", "2:28", ""},
    {UP "limits: {max_output: 1KiB}\n", "2:22", ""},
    {UP "limits: {max_headers: 99999999999999999999999}\n", "2:23", "(too large)"},
    {"upstream: {address: 1.2.3.4:5, pool_size: 100001}\n", "1:43",
     "upstream.pool_size: must be at most 100000, got \"100001\""},

    /* Addresses. */
    {"upstream: {address: \"db:0\"}\n", "1:21", "upstream.address: port 0 is not allowed (got \"db:0\")"},
    {"upstream: {address: db:65536}\n", "1:21", "the port must be at most 65535"},
    {"upstream: {address: db}\n", "1:21", "the port is missing"},
    {"upstream: {address: \"db:\"}\n", "1:21", "the port must be a number"},
    {"upstream: {address: \"::1:80\"}\n", "1:21", "IPv6 addresses must be in brackets"},
    {"upstream: {address: \"[::g]:80\"}\n", "1:21", "invalid IPv6 address"},
    {"upstream: {address: \"[::1]80\"}\n", "1:21", "expected \":port\" after \"]\""},
    {"upstream: {address: bad_host:80}\n", "1:21", "invalid host"},
    {"upstream: {address: 300.1.1.1:80}\n", "1:21", "invalid host"},
    {"upstream: {address: \"\"}\n", "1:21", "the port is missing"},
    {"upstream: {address: }\n", "1:21", "expected an address like 127.0.0.1:3000, [::1]:3000 or :8080, got an empty value"},

    /* Listeners that would share a port. */
    {UP "listen: :9090\n", "2:9", "listen: port 9090 is also used by metrics.listen (0.0.0.0:9090)"},
    {UP "metrics: {listen: 127.0.0.1:7000}\ncontrol: {listen: 127.0.0.1:7000}\n", "3:19",
     "control.listen: port 7000 is also used by metrics.listen (127.0.0.1:7000)"},
    {UP "control: {listen: 127.0.0.1:7000}\nmetrics: {listen: 0.0.0.0:7000}\n", "3:19",
     "metrics.listen: port 7000 is also used by control.listen"},

    /* Routes. */
    {UP "routes:\n  - match: {prefix: api}\n", "3:21",
     "routes[0].match.prefix: expected a path prefix starting with \"/\", got \"api\""},
    {UP "routes:\n  - match: {prefix: \"/a b\"}\n", "3:21", "visible ASCII"},
    {UP "routes:\n  - match: {prefix: \"/a~b\"}\n", "3:21",
     "routes[0].match.prefix: cannot serve as the route's name"},
    {UP "routes:\n  - name: \"my api\"\n    match: {prefix: /api}\n", "3:11",
     "routes[0].name: expected a route name of letters, digits and _ . / -"},
    {UP "routes:\n  - name: a\n    match: {prefix: /a/}\n  - name: a\n    match: {prefix: /b/}\n",
     "5:11", "routes[1].name: duplicate route name \"a\" (routes[0] has it)"},
    {UP "routes:\n  - match: {prefix: /a/}\n  - match: {prefix: /a/}\n", "4:5",
     "routes[1].name: duplicate route name \"/a/\""},
    {UP "routes:\n  - match: {prefix: /, methods: [GET]}\n  - name: default\n    match: {prefix: /x}\n",
     "4:11", "routes[1].name: \"default\" is reserved"},
    {UP "routes:\n  - name: all\n  - name: api\n    match: {prefix: /api/}\n", "4:5",
     "routes[1]: unreachable: routes[0] (prefix \"/\")"},
    {UP "routes:\n  - {name: a, match: {prefix: /api/, methods: [GET, POST]}}\n"
        "  - {name: b, match: {prefix: /api/v1, methods: [GET]}}\n",
     "4:5", "routes[1]: unreachable: routes[0] (prefix \"/api/\")"},
    {UP "routes:\n  - match: {prefix: /, methods: []}\n", "3:33",
     "routes[0].match.methods: the list is empty"},
    {UP "routes:\n  - match: {prefix: /, methods: GET}\n", "3:33",
     "routes[0].match.methods: expected a list of methods"},
    {UP "routes:\n  - match:\n      methods: [GET, get]\n", "4:22",
     "routes[0].match.methods[1]: expected one of GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, "
     "CONNECT, TRACE (upper case), got \"get\""},
    {UP "routes:\n  - match: {prefix: /, methods: [BREW]}\n", "3:34", "got \"BREW\""},
    {UP "routes:\n  - match: {prefix: /}\n    cache: {ttl: 5s}\n", "4:13",
     "routes[0].cache.ttl: unknown key (expected one of: default_ttl,"},
    {UP "routes:\n  - match: {prefix: /}\n    batch: {}\n", "4:5",
     "routes[0].batch: unknown key (expected one of: name, match, cache)"},
    {UP "routes:\n  - match: {path: /}\n", "3:13", "routes[0].match.path: unknown key (expected one of: prefix, methods)"},
    {UP "routes: [/api]\n", "2:10", "routes[0]: expected a mapping, got \"/api\""},

    /* ${ENV}: positions point at the "$". */
    {"upstream: {address: \"${RS_TEST_UNSET_VAR}:80\"}\n", "1:22",
     "upstream.address: environment variable RS_TEST_UNSET_VAR is not set"},
    {"upstream: {address: x:80}\nlisten: 0.0.0.0:${RS_TEST_UNSET_VAR}\n", "2:17",
     "listen: environment variable RS_TEST_UNSET_VAR is not set"},
    {"upstream: {address: \"${RS_TEST_UNSET_VAR\"}\n", "1:22", "unterminated \"${\""},
    {"upstream: {address: \"${9x}\"}\n", "1:22", "invalid environment variable name \"9x\""},
    {"upstream: {address: \"${}\"}\n", "1:22", "invalid environment variable name \"\""},
    {"upstream: {address: \"a\\0b:80\"}\n", "1:21", "contains a NUL character"},
};

static void test_errors(void **state)
{
    (void)state;
    unsetenv("RS_TEST_UNSET_VAR");
    size_t failed = 0;
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++)
        failed += !error_matches(error_cases[i].yaml, error_cases[i].position, error_cases[i].needle);
    assert_int_equal(failed, 0);
}

static void test_error_names_the_file(void **state)
{
    (void)state;
    char path[PATH_MAX], want[PATH_MAX + 64], err[512] = "";
    data_path(path, sizeof(path), "config/bad_timeout.yaml");
    assert_null(cfg_load(path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s:5:20: upstream.connect_timeout: expected a duration", path);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("want \"%s...\", got \"%s\"", want, err);

    data_path(path, sizeof(path), "config/no-such-file.yaml");
    assert_null(cfg_load(path, err, sizeof(err)));
    snprintf(want, sizeof(want), "%s: cannot open: ", path);
    assert_true(strncmp(err, want, strlen(want)) == 0);

    assert_null(cfg_load(data_dir(), err, sizeof(err))); /* a directory */
    assert_non_null(strstr(err, data_dir()));
}

static void test_error_message_is_truncated_safely(void **state)
{
    (void)state;
    char err[24];
    memset(err, 'x', sizeof(err));
    assert_null(cfg_load_string("upstream: 1", 11, "a-rather-long-file-name.yaml", err, 10));
    assert_int_equal(strlen(err), 9);
    assert_int_equal(err[10], 'x');
    assert_null(cfg_load_string("upstream: 1", 11, "t.yaml", err, 1));
    assert_int_equal(err[0], '\0');
}

/* ---- ${ENV} ---------------------------------------------------------------------------- */

static void test_env_expansion(void **state)
{
    (void)state;
    setenv("RS_TEST_HOST", "10.1.2.3", 1);
    setenv("RS_TEST_EMPTY", "", 1);
    unsetenv("RS_TEST_UNSET_VAR");
    struct cfg *cfg = load_ok("upstream:\n"
                              "  address: ${RS_TEST_HOST}:${RS_TEST_UNSET_VAR:-3001}\n"
                              "  pool_size: ${RS_TEST_EMPTY:-12}\n"
                              "listen: \"${RS_TEST_EMPTY}:${RS_TEST_UNSET_VAR:-8081}\"\n"
                              "routes:\n"
                              "  - name: money\n"
                              "    match: {prefix: '/$$/a$b/${RS_TEST_UNSET_VAR:-x}$'}\n");
    assert_string_equal(cfg->upstream.address.text, "10.1.2.3:3001");
    assert_true(cfg->upstream.address.resolved);
    assert_int_equal(cfg->upstream.pool_size, 12);
    assert_string_equal(cfg->listen.text, ":8081");
    assert_string_equal(cfg->listen.host, "0.0.0.0");
    check_route(cfg, 0, "money", "/$/a$b/x$", 0);
    cfg_free(cfg);

    /* Values are not expanded again, and keys are never expanded. */
    setenv("RS_TEST_HOST", "${RS_TEST_UNSET_VAR}", 1);
    cfg = load_ok(UP "routes:\n  - match: {prefix: '/${RS_TEST_HOST}'}\n    name: n\n");
    check_route(cfg, 0, "n", "/${RS_TEST_UNSET_VAR}", 0);
    cfg_free(cfg);
    setenv("RS_TEST_KEY", "listen", 1);
    expect_error(UP "${RS_TEST_KEY}: :1\n", "2:1", "unknown key");

    /* A set but empty variable without a default expands to nothing. */
    expect_error("upstream: {address: \"${RS_TEST_EMPTY}\"}\n", "1:21", "the port is missing");
    unsetenv("RS_TEST_HOST");
    unsetenv("RS_TEST_EMPTY");
    unsetenv("RS_TEST_KEY");
}

/* ---- value parsers ---------------------------------------------------------------------- */

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"0", 0},          {"0ms", 0},         {"1ms", 1},        {"250ms", 250},
        {"5s", 5000},      {"1.5s", 1500},     {"0.25s", 250},    {"0.001s", 1},
        {"2m", 120000},    {"1.5m", 90000},    {"1h", 3600000},   {"0.5h", 1800000},
        {"24h", 86400000}, {"007s", 7000},     {"1.000ms", 1},
        {"5124095576030431ms", 5124095576030431ull},
    };
    static const char *const bad[] = {
        "",     "5",    "00",   "1.5",  "s",    "ms",     ".5s",   "5.s",  "-1s",   "+1s",
        " 5s",  "5s ",  "5 s",  "5S",   "5sec", "1h30m",  "1e3ms", "0.5ms", "1.0001s",
        "1d",   "5us",  "0x10s", "1.0000000001h", "99999999999999999999ms", "5124095576030431h",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t ms = 12345;
        if (cfg_parse_duration(good[i].s, &ms) != 0)
            fail_msg("\"%s\" should parse", good[i].s);
        if (ms != good[i].ms)
            fail_msg("\"%s\": want %llu, got %llu", good[i].s, (unsigned long long)good[i].ms,
                     (unsigned long long)ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 12345;
        if (cfg_parse_duration(bad[i], &ms) != -1)
            fail_msg("\"%s\" should be refused", bad[i]);
        assert_int_equal(ms, 12345);
    }
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t bytes;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"512B", 512},
        {"1KiB", 1024},
        {"64KiB", 65536},
        {"1.5KiB", 1536},
        {"64MiB", 64ull << 20},
        {"1GiB", 1ull << 30},
        {"10kB", 10000},
        {"10MB", 10000000},
        {"2GB", 2000000000},
        {"0.5MB", 500000},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183GiB", 17179869183ull << 30},
    };
    static const char *const bad[] = {
        "",      "B",     "-1",     "+1",    "1.5",   "1.5B",   "0.1KiB", "64 KiB", "64kib",
        "64KB",  "64K",   "64Ki",   "1TiB",  "1e3",   "0x10",   " 1",     "1 ",     "1..5MiB",
        "18446744073709551616", "17179869184GiB", "99999999999999999999999999MB",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t bytes = 12345;
        if (cfg_parse_size(good[i].s, &bytes) != 0)
            fail_msg("\"%s\" should parse", good[i].s);
        if (bytes != good[i].bytes)
            fail_msg("\"%s\": want %llu, got %llu", good[i].s,
                     (unsigned long long)good[i].bytes, (unsigned long long)bytes);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t bytes = 12345;
        if (cfg_parse_size(bad[i], &bytes) != -1)
            fail_msg("\"%s\" should be refused", bad[i]);
        assert_int_equal(bytes, 12345);
    }
}

static void test_parse_addr(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        const char *host;
        uint16_t port;
        int family; /* 0: a host name, left unresolved */
    } good[] = {
        {"127.0.0.1:3000", "127.0.0.1", 3000, AF_INET},
        {"0.0.0.0:1", "0.0.0.0", 1, AF_INET},
        {":8080", "0.0.0.0", 8080, AF_INET},
        {"[::1]:65535", "::1", 65535, AF_INET6},
        {"[::]:80", "::", 80, AF_INET6},
        {"[2001:db8::1]:443", "2001:db8::1", 443, AF_INET6},
        {"localhost:3000", "localhost", 3000, 0},
        {"backend:80", "backend", 80, 0},
        {"my-svc.ns.svc.cluster.local:8000", "my-svc.ns.svc.cluster.local", 8000, 0},
        {"a1.example.com:080", "a1.example.com", 80, 0},
        {"123abc:9", "123abc", 9, 0},
    };
    static const char *const bad[] = {
        "",           ":",          "host",        "host:",       ":0",          "h:65536",
        "h:-1",       "h:+80",      "h:80x",       "h: 80",       "::1:80",      "[::1]",
        "[::1]:",     "[::1]80",    "[::1:80",     "[]:80",       "[1.2.3.4]:80", "[::g]:80",
        "1.2.3:80",   "1.2.3.4.5:80", "256.0.0.1:80", "-host:80",  "host-:80",    "ho_st:80",
        "a..b:80",    ".a:80",      "a.:80",       "*:80",        "h o:80",      "h:99999999999999999999",
        "[fe80::1%eth0]:80",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct cfg_addr a;
        if (cfg_parse_addr(good[i].s, &a) != 0)
            fail_msg("\"%s\" should parse", good[i].s);
        assert_string_equal(a.text, good[i].s);
        assert_string_equal(a.host, good[i].host);
        assert_int_equal(a.port, good[i].port);
        assert_int_equal(a.resolved, good[i].family != 0);
        if (good[i].family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.sa;
            char text[INET_ADDRSTRLEN];
            assert_int_equal(a.sa_len, sizeof(*sin));
            assert_int_equal(sin->sin_family, AF_INET);
            assert_int_equal(ntohs(sin->sin_port), good[i].port);
            assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)));
            assert_string_equal(text, good[i].host);
        } else if (good[i].family == AF_INET6) {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.sa;
            char text[INET6_ADDRSTRLEN];
            assert_int_equal(a.sa_len, sizeof(*sin6));
            assert_int_equal(sin6->sin6_family, AF_INET6);
            assert_int_equal(ntohs(sin6->sin6_port), good[i].port);
            assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)));
            assert_string_equal(text, good[i].host);
        } else {
            assert_int_equal(a.sa_len, 0);
            assert_int_equal(a.sa.ss_family, 0);
        }
        cfg_addr_free(&a);
        assert_null(a.text);
        assert_null(a.host);
    }
    char long_host[300];
    memset(long_host, 'a', sizeof(long_host));
    strcpy(long_host + 250, ":80"); /* 250 characters in one label */
    for (size_t i = 0; i <= sizeof(bad) / sizeof(bad[0]); i++) {
        const char *s = i < sizeof(bad) / sizeof(bad[0]) ? bad[i] : long_host;
        struct cfg_addr a;
        memset(&a, 0x5a, sizeof(a));
        if (cfg_parse_addr(s, &a) != -1)
            fail_msg("\"%s\" should be refused", s);
        assert_null(a.text);
        assert_null(a.host);
        cfg_addr_free(&a); /* harmless on a refused address */
    }
}

/* ---- routes ----------------------------------------------------------------------------- */

static void test_route_names_and_catch_all(void **state)
{
    (void)state;
    struct cfg *cfg = load_ok(UP "routes:\n"
                                 "  - match: {prefix: /api/, methods: [POST]}\n"
                                 "  - match: {prefix: /api/v2/, methods: [GET]}\n"
                                 "  - name: api-other\n"
                                 "    match: {prefix: /api/}\n"
                                 "  - {name: root-reads, match: {prefix: /, methods: [GET, HEAD]}}\n"
                                 "  - {name: live, match: {prefix: /live}}\n"
                                 "  - name: Only_Name.v1\n");
    assert_int_equal(cfg->num_routes, 6);
    check_route(cfg, 0, "/api/", "/api/", M(HTTP1_POST));
    check_route(cfg, 1, "/api/v2/", "/api/v2/", M(HTTP1_GET));
    check_route(cfg, 2, "api-other", "/api/", 0);
    check_route(cfg, 3, "root-reads", "/", M(HTTP1_GET) | M(HTTP1_HEAD));
    check_route(cfg, 4, "live", "/live", 0);
    check_route(cfg, 5, "Only_Name.v1", "/", 0); /* no match: prefix "/", every method */
    cfg_free(cfg);

    /* A user route named "default" is fine when it is the catch-all. */
    cfg = load_ok(UP "routes:\n  - {name: default, match: {prefix: /}}\n");
    assert_int_equal(cfg->num_routes, 1);
    check_route(cfg, 0, "default", "/", 0);
    cfg_free(cfg);

    /* An empty list still gets the catch-all. */
    cfg = load_ok(UP "routes: []\n");
    assert_int_equal(cfg->num_routes, 1);
    check_route(cfg, 0, "default", "/", 0);
    cfg_free(cfg);

    /* "/live" does not end at a segment boundary, so "/lively" may be reachable. */
    cfg = load_ok(UP "routes:\n  - match: {prefix: /live}\n  - match: {prefix: /lively}\n");
    assert_int_equal(cfg->num_routes, 3);
    cfg_free(cfg);

    /* Every method by name. */
    cfg = load_ok(UP "routes:\n  - match: {methods: [GET, HEAD, POST, PUT, DELETE, PATCH, "
                     "OPTIONS, CONNECT, TRACE, GET]}\n    name: named\n");
    assert_int_equal(cfg->routes[0].methods, 0x1ff);
    assert_int_equal(cfg->num_routes, 2);
    cfg_free(cfg);
}

static void test_workers_setting(void **state)
{
    (void)state;
    struct cfg *cfg = load_ok(UP "workers: 1024\n");
    assert_false(cfg->workers_auto);
    assert_int_equal(cfg->workers, 1024);
    cfg_free(cfg);
    cfg = load_ok(UP "workers: auto\n");
    assert_true(cfg->workers_auto);
    assert_int_equal(cfg->workers, cfg_auto_workers("/sys/fs/cgroup"));
    cfg_free(cfg);
    cfg = load_ok(UP "io_backend: uring\nlog: {level: error}\n");
    assert_int_equal(cfg->io_backend, CFG_IO_URING);
    assert_int_equal(cfg->log.level, CFG_LOG_ERROR);
    cfg_free(cfg);
    cfg = load_ok(UP "log: {level: warn}\n");
    assert_int_equal(cfg->log.level, CFG_LOG_WARN);
    cfg_free(cfg);
}

/* ---- cfg_auto_workers -------------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_auto_workers(void **state)
{
    (void)state;
    long online_l = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t online = online_l < 1 ? 1 : online_l > 1024 ? 1024 : (uint32_t)online_l;
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/ringside-cgroup-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));

    assert_int_equal(cfg_auto_workers(dir), online); /* no cpu.max: cgroup v1 or none */

    static const struct {
        const char *content;
        uint32_t want; /* before capping at the online CPUs */
    } cases[] = {
        {"max 100000\n", UINT32_MAX},
        {"150000 100000\n", 2},
        {"100000 100000\n", 1},
        {"100001 100000\n", 2},
        {"50000 100000\n", 1},
        {"1000 100000\n", 1},
        {"0 100000\n", 1},
        {"200000 100000", 2},
        {"100000000 100000\n", 1000},
        {"garbage\n", UINT32_MAX},
        {"150000\n", UINT32_MAX},
        {"150000 0\n", UINT32_MAX},
        {"-150000 100000\n", UINT32_MAX},
        {"", UINT32_MAX},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(dir, "cpu.max", cases[i].content);
        uint32_t want = cases[i].want < online ? cases[i].want : online;
        uint32_t got = cfg_auto_workers(dir);
        if (got != want)
            fail_msg("cpu.max \"%s\": want %u, got %u", cases[i].content, want, got);
    }

    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/cpu.max", dir);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    /* The example file configures the cache, whose keys main registers. */
    if (cache_register_config() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_success_leaves_err_alone),
        cmocka_unit_test(test_flow_and_block_styles_agree),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_error_names_the_file),
        cmocka_unit_test(test_error_message_is_truncated_safely),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_route_names_and_catch_all),
        cmocka_unit_test(test_workers_setting),
        cmocka_unit_test(test_auto_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
