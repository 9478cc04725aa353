/* Fuzz target: the configuration loader on arbitrary bytes. It must never crash or
 * leak, and what it accepts must hold the invariants the runtime relies on. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "proxy/config.h"

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_config: accepted a config where %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int registered;
    if (!registered) {
        /* The modules main wires in read their sections through the same loader. */
        if (cache_register_config() < 0)
            abort();
        registered = 1;
    }
    char err[256];
    err[0] = '\0';
    struct cfg *cfg = cfg_load_string((const char *)data, size, "fuzz.yaml", err, sizeof(err));
    if (cfg == NULL) {
        check(strncmp(err, "fuzz.yaml:", 10) == 0, "the error does not name the file");
        return 0;
    }
    check(err[0] == '\0', "success wrote an error");
    check(cfg->upstream.address.text != NULL && cfg->upstream.address.port != 0,
          "upstream.address is missing");
    check(cfg->listen.text != NULL && cfg->metrics_listen.text != NULL &&
              cfg->control_listen.text != NULL,
          "a listener is missing");
    check(cfg->workers >= 1 && cfg->workers <= 1024, "workers is out of range");
    check(cfg->limits.max_head >= cfg->limits.max_request_line, "max_head < max_request_line");
    check(cfg->num_routes >= 1, "there are no routes");
    int catch_all = 0;
    for (size_t i = 0; i < cfg->num_routes; i++) {
        const struct cfg_route *r = &cfg->routes[i];
        check(r->name != NULL && r->name[0] != '\0', "a route has no name");
        check(r->prefix != NULL && r->prefix[0] == '/', "a route prefix lacks the leading /");
        catch_all |= strcmp(r->prefix, "/") == 0 && r->methods == 0;
        for (size_t j = 0; j < i; j++)
            check(strcmp(cfg->routes[j].name, r->name) != 0, "two routes share a name");
    }
    check(catch_all, "no route catches every request");
    cfg_free(cfg);
    return 0;
}
