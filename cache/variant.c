/* Cache keys and Vary variants (RFC 9111 §2, §4.1). Keys and variants are lines joined
 * by "\n", so any CR, LF or NUL in what goes into them refuses the whole: a byte like
 * that could make two different requests share a key. */
#include "cache/policy.h"

#include "cache/policy_internal.h"

#define VARY_MAX_NAMES 64

/* Bytes from a request: refused if they could forge a line break. */
static void put_text(struct sink *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0') {
            s->failed = true;
            return;
        }
    }
    sink_put(s, p, n);
}

/* p[0, n) with each run of spaces and tabs made one space. */
static void put_collapsed(struct sink *s, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t word = i;
        while (i < n && !is_ows(p[i]))
            i++;
        put_text(s, p + word, i - word);
        if (i < n) {
            sink_putc(s, ' ');
            while (i < n && is_ows(p[i]))
                i++;
        }
    }
}

/* The values of every field named name, element by element, joined by ", ". */
static void put_field_values(struct sink *s, const char *name, size_t name_len,
                             const struct http1_header *h, size_t n)
{
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (!equal_ci(h[i].name, h[i].name_len, name, name_len))
            continue;
        size_t pos = 0;
        const char *tok;
        size_t tok_len;
        while (http1_list_next(h[i].value, h[i].value_len, &pos, &tok, &tok_len)) {
            if (tok_len == 0)
                continue;
            if (!first)
                sink_put(s, ", ", 2);
            first = false;
            put_collapsed(s, tok, tok_len);
        }
    }
}

/* ---- primary key --------------------------------------------------------------------- */

/* host without an empty or default port ("example.com:80", "[::1]:"). */
static size_t without_default_port(const char *host, size_t len)
{
    size_t colon = len;
    while (colon > 0 && host[colon - 1] != ':' && host[colon - 1] != ']')
        colon--;
    if (colon == 0 || host[colon - 1] != ':')
        return len;
    size_t port_len = len - colon;
    if (port_len == 0 || (port_len == 2 && host[colon] == '8' && host[colon + 1] == '0'))
        return colon - 1;
    return len;
}

static bool listed(const char *name, size_t len, const struct cache_key_policy *p)
{
    for (size_t i = 0; i < p->num_query; i++)
        if (strlen(p->query[i]) == len && memcmp(p->query[i], name, len) == 0)
            return true;
    return false;
}

/* "?" and the parameters of query[0, len) that p lists, in their order, joined by "&". */
static void put_listed_params(struct sink *s, const char *query, size_t len,
                              const struct cache_key_policy *p)
{
    bool first = true;
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(query + i, '&', len - i);
        size_t end = amp != NULL ? (size_t)(amp - query) : len;
        const char *eq = memchr(query + i, '=', end - i);
        size_t name_len = (eq != NULL ? (size_t)(eq - query) : end) - i;
        if (name_len > 0 && listed(query + i, name_len, p)) {
            sink_putc(s, first ? '?' : '&');
            put_text(s, query + i, end - i);
            first = false;
        }
        i = end + 1;
    }
}

ssize_t cache_key_build(const char *host, size_t host_len, const char *target,
                        size_t target_len, const struct http1_header *h, size_t n,
                        const struct cache_key_policy *p, char *out, size_t cap)
{
    struct sink s = { .out = out, .cap = cap };
    /* absolute-form: the target's authority is the host (RFC 9112 §3.2.2) */
    if (target_len >= 7 && equal_ci(target, 7, "http://", 7)) {
        const char *authority = target + 7;
        size_t rest = target_len - 7, len = 0;
        while (len < rest && authority[len] != '/' && authority[len] != '?')
            len++;
        host = authority;
        host_len = len;
        target = authority + len;
        target_len = rest - len;
    }
    if (host == NULL)
        host_len = 0;
    host_len = without_default_port(host, host_len);
    for (size_t i = 0; i < host_len; i++) {
        char c = ascii_lower(host[i]);
        put_text(&s, &c, 1);
    }
    sink_putc(&s, '\n');

    const char *query = memchr(target, '?', target_len);
    size_t path_len = query != NULL ? (size_t)(query - target) : target_len;
    if (target_len == 0 || target[0] == '?')
        sink_putc(&s, '/');
    put_text(&s, target, path_len);
    if (query != NULL) {
        size_t query_len = target_len - path_len - 1;
        if (p->query_mode == CACHE_QUERY_ALL)
            put_text(&s, query, query_len + 1);
        else if (p->query_mode == CACHE_QUERY_LIST)
            put_listed_params(&s, query + 1, query_len, p);
    }

    for (size_t i = 0; i < p->num_headers; i++) {
        sink_putc(&s, '\n');
        put_field_values(&s, p->headers[i], strlen(p->headers[i]), h, n);
    }
    return sink_finish(&s);
}

/* ---- Vary ---------------------------------------------------------------------------- */

struct name_ref {
    const char *p;
    size_t len;
};

static int compare_ci(const struct name_ref *a, const struct name_ref *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)ascii_lower(a->p[i]);
        unsigned char y = (unsigned char)ascii_lower(b->p[i]);
        if (x != y)
            return x < y ? -1 : 1;
    }
    return a->len < b->len ? -1 : a->len > b->len;
}

ssize_t cache_vary_names(const struct http1_header *h, size_t n, char *out, size_t cap)
{
    struct name_ref names[VARY_MAX_NAMES];
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!http1_name_is(&h[i], "vary"))
            continue;
        size_t pos = 0;
        struct name_ref name;
        while (http1_list_next(h[i].value, h[i].value_len, &pos, &name.p, &name.len)) {
            if (name.len == 0)
                continue;
            if (!is_token(name.p, name.len) || (name.len == 1 && name.p[0] == '*') ||
                count == VARY_MAX_NAMES)
                return -1;
            /* insertion sort: lists are short */
            size_t j = count++;
            while (j > 0 && compare_ci(&names[j - 1], &name) > 0) {
                names[j] = names[j - 1];
                j--;
            }
            names[j] = name;
        }
    }
    struct sink s = { .out = out, .cap = cap };
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && compare_ci(&names[i - 1], &names[i]) == 0)
            continue;
        if (s.len > 0)
            sink_put(&s, ", ", 2);
        for (size_t k = 0; k < names[i].len; k++)
            sink_putc(&s, ascii_lower(names[i].p[k]));
    }
    return sink_finish(&s);
}

static void put_variant(struct sink *s, const char *names, const struct http1_header *h,
                        size_t n)
{
    size_t pos = 0, names_len = strlen(names);
    const char *name;
    size_t name_len;
    bool first = true;
    while (http1_list_next(names, names_len, &pos, &name, &name_len)) {
        if (name_len == 0)
            continue;
        if (!first)
            sink_putc(s, '\n');
        first = false;
        put_field_values(s, name, name_len, h, n);
    }
}

ssize_t cache_variant(const char *names, const struct http1_header *h, size_t n, char *out,
                      size_t cap)
{
    struct sink s = { .out = out, .cap = cap };
    put_variant(&s, names, h, n);
    return sink_finish(&s);
}

bool cache_variant_matches(const struct cache_entry *e, const struct http1_header *h, size_t n)
{
    if (e->vary == NULL)
        return true;
    struct sink s = { .expect = e->variant != NULL ? e->variant : "",
                      .expect_len = e->variant != NULL ? e->variant_len : 0 };
    put_variant(&s, e->vary, h, n);
    return !s.failed && s.len == s.expect_len;
}
