/* Fuzz the cache policy's parsers and bounded writers. The input is a selector byte,
 * then pieces separated by NUL: a Cache-Control value, an HTTP-date, a host, a
 * request-target, a stored head, then "Name: value" fields used as both the request's
 * and the response's. Outputs go to exact-size heap buffers so a write past cap is
 * caught. Invariants are checked with abort(). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/entry.h"
#include "cache/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)        \
    do {                   \
        if (!(cond))       \
            abort();       \
    } while (0)

#define MAX_PIECES 5
#define MAX_FIELDS 64
#define LAST_DATE INT64_C(253402300799)

struct piece {
    const char *p;
    size_t len;
};

static const char *const query_names[] = { "a", "b", "id" };
static const char *const key_fields[] = { "accept", "x-k" };
static const size_t caps[] = { 4096, 64, 16, 1 };
static const int statuses[] = { 200, 203, 206, 301, 302, 304, 404, 500, 299, 100 };

static size_t count_byte(const char *p, size_t len, char c)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += p[i] == c;
    return n;
}

static bool in_range(int64_t v)
{
    return v >= 0 && v <= CACHE_DELTA_MAX;
}

static void fuzz_cache_control(struct piece v)
{
    struct cache_control cc = { 0 };
    cache_control_parse(v.p, v.len, &cc);
    CHECK((cc.present & ~(uint32_t)0xffff) == 0);
    CHECK(!(cc.present & CC_MAX_AGE) || in_range(cc.max_age));
    CHECK(!(cc.present & CC_S_MAXAGE) || in_range(cc.s_maxage));
    CHECK(!(cc.present & CC_MIN_FRESH) || in_range(cc.min_fresh));
    CHECK(!(cc.present & CC_SWR) || in_range(cc.stale_while_revalidate));
    CHECK(!(cc.present & CC_SIE) || in_range(cc.stale_if_error));
    CHECK(!(cc.present & CC_MAX_STALE) || cc.max_stale == -1 || in_range(cc.max_stale));
    /* parsing the same value again adds nothing */
    struct cache_control again = cc;
    cache_control_parse(v.p, v.len, &again);
    CHECK(memcmp(&again, &cc, sizeof(cc)) == 0);
}

static void fuzz_date(struct piece v)
{
    int64_t t = http_date_parse(v.p, v.len);
    CHECK(t == -1 || (t >= 0 && t <= LAST_DATE));
    if (t < 0)
        return;
    char out[30];
    CHECK(http_date_format(t, out) == 29 && out[29] == '\0');
    CHECK(http_date_parse(out, 29) == t);
}

/* A written result: within cap, NUL-terminated, no NUL inside. */
static void check_written(ssize_t r, const char *out, size_t cap)
{
    CHECK(r >= -1);
    if (r < 0)
        return;
    CHECK((size_t)r < cap && out[r] == '\0' && memchr(out, '\0', (size_t)r) == NULL);
}

static void fuzz_key(struct piece host, struct piece target, const struct http1_header *h,
                     size_t n, int mode, size_t cap)
{
    struct cache_key_policy p = { .query_mode = mode, .query = query_names, .num_query = 3,
                                  .headers = key_fields, .num_headers = 2 };
    char *out = malloc(cap);
    CHECK(out != NULL);
    ssize_t r = cache_key_build(host.len ? host.p : NULL, host.len, target.p, target.len, h, n,
                                &p, out, cap);
    check_written(r, out, cap);
    if (r >= 0) {
        /* the lines are host, target and one per configured field: nothing forged more */
        CHECK(count_byte(out, (size_t)r, '\n') == 1 + p.num_headers);
        CHECK(count_byte(out, (size_t)r, '\r') == 0);
    }
    free(out);
}

static void fuzz_vary(const struct http1_header *h, size_t n, size_t cap)
{
    char *names = malloc(cap);
    CHECK(names != NULL);
    ssize_t r = cache_vary_names(h, n, names, cap);
    check_written(r, names, cap);
    if (r <= 0) {
        free(names);
        return;
    }
    /* lowercase tokens, ", "-separated, strictly increasing */
    size_t count = 1;
    const char *prev = NULL;
    size_t prev_len = 0;
    for (const char *p = names, *end = names + r; p < end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t len = comma != NULL ? (size_t)(comma - p) : (size_t)(end - p);
        CHECK(len > 0);
        for (size_t i = 0; i < len; i++)
            CHECK(!(p[i] >= 'A' && p[i] <= 'Z') && p[i] != ' ');
        if (prev != NULL) {
            size_t m = prev_len < len ? prev_len : len;
            int c = memcmp(prev, p, m);
            CHECK(c < 0 || (c == 0 && prev_len < len));
        }
        prev = p;
        prev_len = len;
        if (comma == NULL)
            break;
        CHECK(comma + 1 < end && comma[1] == ' ');
        p = comma + 2;
        count++;
    }

    char *variant = malloc(cap);
    CHECK(variant != NULL);
    ssize_t v = cache_variant(names, h, n, variant, cap);
    check_written(v, variant, cap);
    if (v >= 0) {
        CHECK(count_byte(variant, (size_t)v, '\n') == count - 1);
        /* what was written is what the matcher recomputes */
        struct cache_entry e = { .vary = names, .variant = variant,
                                 .variant_len = (uint32_t)v };
        CHECK(cache_variant_matches(&e, h, n));
        if (v > 0) {
            e.variant_len--;
            CHECK(!cache_variant_matches(&e, h, n));
        }
    }
    free(variant);
    free(names);
}

static void fuzz_head_update(struct piece old, const struct http1_header *h, size_t n,
                             bool strip, size_t cap)
{
    char *out = malloc(cap);
    CHECK(out != NULL);
    ssize_t r = cache_head_update(old.p, old.len, h, n, strip, out, cap);
    check_written(r, out, cap);
    if (r >= 0) {
        CHECK(r >= 2 && out[r - 2] == '\r' && out[r - 1] == '\n');
        for (ssize_t i = 0; i < r; i++) {
            if (out[i] == '\r')
                CHECK(i + 1 < r && out[i + 1] == '\n');
            if (out[i] == '\n')
                CHECK(i > 0 && out[i - 1] == '\r');
        }
        /* the status line is kept */
        const char *eol = memchr(old.p, '\n', old.len);
        CHECK(eol != NULL && memcmp(out, old.p, (size_t)(eol - old.p)) == 0);
    }
    free(out);
}

static void fuzz_policy(const struct http1_header *h, size_t n, uint8_t selector, int status)
{
    struct cache_route_policy p = { .ignore_no_cache = selector & 0x20,
                                    .ignore_set_cookie = selector & 0x04 };
    if (selector & 0x80) {
        p.default_ttl = 30;
        p.stale_while_revalidate = 10;
        p.stale_if_error = 300;
    }
    struct cache_request req;
    cache_request_init(&req, (selector & 0x40) ? HTTP1_HEAD : HTTP1_GET, h, n);
    enum cache_lookup_mode mode = cache_request_mode(&req, &p);
    CHECK(mode == CACHE_LOOKUP_USE || mode == CACHE_LOOKUP_REVALIDATE ||
          mode == CACHE_LOOKUP_BYPASS);

    struct cache_response resp;
    cache_response_init(&resp, status, h, n, "surrogate-key");
    const char *why = cache_storable(&req, &resp, &p);
    CHECK(why == NULL || why[0] != '\0');

    const int64_t t0 = INT64_C(1700000000);
    struct cache_entry *e = cache_entry_new();
    CHECK(e != NULL);
    CHECK(cache_entry_fill_freshness(e, &resp, &p, t0 - 1, t0) == 0);
    CHECK(in_range(e->lifetime) && in_range(e->initial_age));
    CHECK(in_range(e->stale_while_revalidate) && in_range(e->stale_if_error));
    CHECK((e->flags & ~(uint32_t)(CACHE_ENTRY_MUST_REVALIDATE | CACHE_ENTRY_NO_CACHE)) == 0);
    if (e->flags != 0)
        CHECK(e->stale_while_revalidate == 0 && e->stale_if_error == 0);
    CHECK((e->etag == NULL) == (resp.etag == NULL));

    static const int64_t later[] = { 0, 1, 59, 3600, 86400 * 400 };
    for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
        enum cache_use use = cache_entry_usable(e, &req, &p, t0 + later[i]);
        CHECK(use <= CACHE_USE_VALIDATE);
        if (e->flags & CACHE_ENTRY_NO_CACHE)
            CHECK(use == CACHE_USE_VALIDATE);
        if (use == CACHE_USE_FRESH)
            CHECK(cache_entry_ttl(e, t0 + later[i]) > 0);
        if (use == CACHE_USE_STALE_OK || use == CACHE_USE_STALE_SWR)
            CHECK(!(e->flags & CACHE_ENTRY_MUST_REVALIDATE));
        (void)cache_entry_stale_if_error_ok(e, &req, t0 + later[i]);
    }
    (void)cache_not_modified(e, &req);
    cache_entry_unref(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t selector = data[0];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;

    struct piece pieces[MAX_PIECES] = { { "", 0 }, { "", 0 }, { "", 0 }, { "", 0 }, { "", 0 } };
    struct http1_header h[MAX_FIELDS];
    size_t num_pieces = 0, n = 0;
    while (p <= end && n < MAX_FIELDS) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        const char *stop = nul != NULL ? nul : end;
        struct piece v = { p, (size_t)(stop - p) };
        if (num_pieces < MAX_PIECES) {
            pieces[num_pieces++] = v;
        } else {
            /* "Name: value", the value trimmed as the HTTP/1.1 parser trims it */
            const char *colon = memchr(v.p, ':', v.len);
            size_t name_len = colon != NULL ? (size_t)(colon - v.p) : v.len;
            const char *value = colon != NULL ? colon + 1 : stop;
            while (value < stop && (*value == ' ' || *value == '\t'))
                value++;
            const char *value_end = stop;
            while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
                value_end--;
            h[n++] = (struct http1_header){ v.p, name_len, value, (size_t)(value_end - value) };
        }
        if (nul == NULL)
            break;
        p = nul + 1;
    }

    int mode = (selector & 3) == 3 ? CACHE_QUERY_ALL : selector & 3;
    size_t cap = caps[(selector >> 3) & 3];
    bool strip = selector & 0x04;

    fuzz_cache_control(pieces[0]);
    fuzz_date(pieces[1]);
    fuzz_key(pieces[2], pieces[3], h, n, mode, cap);
    fuzz_key(pieces[2], pieces[3], h, n, mode, 4096);
    fuzz_vary(h, n, cap);
    fuzz_vary(h, n, 4096);
    fuzz_head_update(pieces[4], h, n, strip, cap);
    fuzz_head_update(pieces[4], h, n, strip, 8192);
    fuzz_policy(h, n, selector, statuses[size % (sizeof(statuses) / sizeof(statuses[0]))]);
    return 0;
}
