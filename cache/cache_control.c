/* Cache-Control directives (RFC 9111 §5.2). */
#include "cache/policy.h"

#include <stddef.h>

#include "cache/policy_internal.h"

int64_t cache__delta_seconds(const char *s, size_t len)
{
    if (len == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        /* stop growing once past the clamp; v * 10 + 9 still fits easily */
        if (v < CACHE_DELTA_MAX)
            v = v * 10 + (s[i] - '0');
    }
    return v < CACHE_DELTA_MAX ? v : CACHE_DELTA_MAX;
}

enum argument {
    ARG_NONE,     /* a flag; an argument (no-cache="Set-Cookie") is ignored */
    ARG_DELTA,    /* delta-seconds required */
    ARG_OPTIONAL, /* delta-seconds or nothing (max-stale: any staleness) */
};

struct directive {
    const char *name;
    uint32_t flag;
    enum argument arg;
    size_t offset; /* of the int64_t value in struct cache_control */
};

#define VALUE(field) offsetof(struct cache_control, field)

static const struct directive directives[] = {
    { "max-age", CC_MAX_AGE, ARG_DELTA, VALUE(max_age) },
    { "s-maxage", CC_S_MAXAGE, ARG_DELTA, VALUE(s_maxage) },
    { "no-cache", CC_NO_CACHE, ARG_NONE, 0 },
    { "no-store", CC_NO_STORE, ARG_NONE, 0 },
    { "private", CC_PRIVATE, ARG_NONE, 0 },
    { "public", CC_PUBLIC, ARG_NONE, 0 },
    { "must-revalidate", CC_MUST_REVALIDATE, ARG_NONE, 0 },
    { "proxy-revalidate", CC_PROXY_REVALIDATE, ARG_NONE, 0 },
    { "stale-while-revalidate", CC_SWR, ARG_DELTA, VALUE(stale_while_revalidate) },
    { "stale-if-error", CC_SIE, ARG_DELTA, VALUE(stale_if_error) },
    { "max-stale", CC_MAX_STALE, ARG_OPTIONAL, VALUE(max_stale) },
    { "min-fresh", CC_MIN_FRESH, ARG_DELTA, VALUE(min_fresh) },
    { "only-if-cached", CC_ONLY_IF_CACHED, ARG_NONE, 0 },
    { "no-transform", CC_NO_TRANSFORM, ARG_NONE, 0 },
    { "must-understand", CC_MUST_UNDERSTAND, ARG_NONE, 0 },
    { "immutable", CC_IMMUTABLE, ARG_NONE, 0 },
};

static void apply(struct cache_control *cc, const char *name, size_t name_len, const char *arg,
                  size_t arg_len, bool has_arg, bool malformed)
{
    for (size_t i = 0; i < sizeof(directives) / sizeof(directives[0]); i++) {
        const struct directive *d = &directives[i];
        if (!equal_ci(name, name_len, d->name, strlen(d->name)))
            continue;
        if (d->arg == ARG_NONE) {
            cc->present |= d->flag;
            return;
        }
        if (cc->present & d->flag) /* the first occurrence counts (§4.2.1) */
            return;
        /* Invalid: the most restrictive reading, e.g. max-age=abc is stale (§4.2.1). */
        int64_t v = 0;
        if (!malformed && has_arg) {
            v = cache__delta_seconds(arg, arg_len);
            if (v < 0)
                v = 0;
        } else if (!malformed && d->arg == ARG_OPTIONAL) {
            v = -1;
        }
        cc->present |= d->flag;
        *(int64_t *)(void *)((char *)cc + d->offset) = v;
        return;
    }
}

void cache_control_parse(const char *value, size_t len, struct cache_control *cc)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (value[i] == ',' || is_ows(value[i])))
            i++;
        if (i == len)
            break;
        size_t name = i;
        while (i < len && is_tchar(value[i]))
            i++;
        size_t name_len = i - name;
        const char *arg = NULL;
        size_t arg_len = 0;
        bool malformed = false;
        while (i < len && is_ows(value[i]))
            i++;
        if (i < len && value[i] == '=') {
            i++;
            while (i < len && is_ows(value[i]))
                i++;
            if (i < len && value[i] == '"') {
                /* quoted-string: may hold commas; a quoted-pair skips the next byte */
                size_t start = ++i;
                while (i < len && value[i] != '"')
                    i += value[i] == '\\' && i + 1 < len ? 2 : 1;
                arg = value + start;
                arg_len = i - start;
                if (i < len)
                    i++;
                else
                    malformed = true;
            } else {
                arg = value + i;
                while (i < len && is_tchar(value[i]))
                    i++;
                arg_len = (size_t)(value + i - arg);
            }
        }
        /* Anything else before the next comma makes the element malformed. */
        while (i < len && value[i] != ',') {
            if (!is_ows(value[i]))
                malformed = true;
            i++;
        }
        if (name_len > 0)
            apply(cc, value + name, name_len, arg, arg_len, arg != NULL, malformed);
    }
}
