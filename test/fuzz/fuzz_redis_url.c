/* Fuzz target: the redis: url parser on arbitrary bytes. It must never crash or leak,
 * and what it accepts must be usable: a host, a port, credentials only as given. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    if (url == NULL)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    struct redis_url u;
    memset(&u, 0xa5, sizeof(u)); /* the parser must set every field it promises */
    const char *why = redis_url_parse(url, &u);
    if (why == NULL) {
        if (u.host == NULL || u.host[0] == '\0' || u.port == 0 ||
            strncasecmp(url, "redis://", 8) != 0) { /* schemes ignore case */
            fprintf(stderr, "fuzz_redis_url: accepted \"%s\" without a usable host and port\n",
                    url);
            abort();
        }
        if (u.username != NULL && u.password == NULL) {
            fprintf(stderr, "fuzz_redis_url: a user without a password from \"%s\"\n", url);
            abort();
        }
        redis_url_free(&u);
    } else if (why[0] == '\0') {
        abort(); /* a refusal says why */
    }
    free(url);
    return 0;
}
