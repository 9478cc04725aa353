/* Which response fields a stored head keeps, and merging a 304 into it (RFC 9111 §3.1,
 * §3.2). */
#include "cache/policy.h"

#include "cache/policy_internal.h"

static bool hop_by_hop(const struct http1_header *f)
{
    return http1_name_is(f, "connection") || http1_name_is(f, "keep-alive") ||
           http1_name_is(f, "te") || http1_name_is(f, "trailer") ||
           http1_name_is(f, "transfer-encoding") || http1_name_is(f, "upgrade") ||
           (f->name_len >= 6 && equal_ci(f->name, 6, "proxy-", 6));
}

static bool named_by_connection(const struct http1_header *h, size_t n, const char *name,
                                size_t name_len)
{
    for (size_t i = 0; i < n; i++) {
        if (!http1_name_is(&h[i], "connection"))
            continue;
        size_t pos = 0;
        const char *tok;
        size_t tok_len;
        while (http1_list_next(h[i].value, h[i].value_len, &pos, &tok, &tok_len))
            if (equal_ci(tok, tok_len, name, name_len))
                return true;
    }
    return false;
}

bool cache_field_stored(const struct http1_header *h, size_t n, size_t i, bool strip_set_cookie)
{
    const struct http1_header *f = &h[i];
    if (hop_by_hop(f) || http1_name_is(f, "age") ||
        (strip_set_cookie && http1_name_is(f, "set-cookie")))
        return false;
    return !named_by_connection(h, n, f->name, f->name_len);
}

/* Field i of the 304 replaces the stored fields of its name. */
static bool updates(const struct http1_header *h, size_t n, size_t i, bool strip_set_cookie)
{
    return !http1_name_is(&h[i], "content-length") &&
           cache_field_stored(h, n, i, strip_set_cookie);
}

static bool clean_value(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
            return false;
    return true;
}

/* The length of the CRLF-terminated line at p (with its CRLF), or 0 when the line is
 * unterminated or holds a CR, LF or NUL of its own. */
static size_t line_length(const char *p, const char *end)
{
    for (const char *q = p; q < end; q++) {
        if (*q == '\r')
            return q + 1 < end && q[1] == '\n' ? (size_t)(q + 2 - p) : 0;
        if (*q == '\n' || *q == '\0')
            return 0;
    }
    return 0;
}

static bool replaced(const struct http1_header *h, size_t n, bool strip_set_cookie,
                     const char *name, size_t name_len)
{
    for (size_t i = 0; i < n; i++)
        if (equal_ci(h[i].name, h[i].name_len, name, name_len) &&
            updates(h, n, i, strip_set_cookie))
            return true;
    return false;
}

ssize_t cache_head_update(const char *old_head, size_t old_len, const struct http1_header *h,
                          size_t n, bool strip_set_cookie, char *out, size_t cap)
{
    for (size_t i = 0; i < n; i++)
        if (updates(h, n, i, strip_set_cookie) &&
            (!is_token(h[i].name, h[i].name_len) || !clean_value(h[i].value, h[i].value_len)))
            return -1;

    struct sink s = { .out = out, .cap = cap };
    const char *end = old_head + old_len;
    size_t len = line_length(old_head, end);
    if (len == 0)
        return -1;
    sink_put(&s, old_head, len); /* the status line */
    for (const char *line = old_head + len; line < end; line += len) {
        len = line_length(line, end);
        const char *colon = len > 0 ? memchr(line, ':', len) : NULL;
        if (colon == NULL || !is_token(line, (size_t)(colon - line)))
            return -1;
        if (!replaced(h, n, strip_set_cookie, line, (size_t)(colon - line)))
            sink_put(&s, line, len);
    }
    for (size_t i = 0; i < n; i++) {
        if (!updates(h, n, i, strip_set_cookie))
            continue;
        sink_put(&s, h[i].name, h[i].name_len);
        sink_put(&s, ": ", 2);
        sink_put(&s, h[i].value, h[i].value_len);
        sink_put(&s, "\r\n", 2);
    }
    return sink_finish(&s);
}
