/* Helpers shared by the files of the cache policy; not part of its interface. */
#ifndef RINGSIDE_CACHE_POLICY_INTERNAL_H
#define RINGSIDE_CACHE_POLICY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

static inline char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* tchar of RFC 9110 §5.6.2 */
static inline bool is_tchar(char c)
{
    unsigned char u = (unsigned char)c;
    if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z'))
        return true;
    return u != '\0' && strchr("!#$%&'*+-.^_`|~", u) != NULL;
}

static inline bool is_token(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_tchar(p[i]))
            return false;
    return len > 0;
}

/* ASCII case-insensitive equality of a[0, alen) and b[0, blen). */
static inline bool equal_ci(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    return true;
}

/* Where bounded writers put bytes. In compare mode (expect != NULL) nothing is written:
 * the bytes are checked against expect[0, expect_len) instead. */
struct sink {
    char *out;
    size_t cap;
    size_t len;
    const char *expect;
    size_t expect_len;
    bool failed; /* no room, or (compare mode) a difference */
};

static inline void sink_put(struct sink *s, const char *p, size_t n)
{
    if (s->failed || n == 0)
        return;
    if (s->expect != NULL) {
        if (n > s->expect_len - s->len || memcmp(s->expect + s->len, p, n) != 0)
            s->failed = true;
        else
            s->len += n;
        return;
    }
    /* keep one byte for the NUL */
    if (s->cap == 0 || n > s->cap - 1 - s->len) {
        s->failed = true;
        return;
    }
    memcpy(s->out + s->len, p, n);
    s->len += n;
}

static inline void sink_putc(struct sink *s, char c)
{
    sink_put(s, &c, 1);
}

/* NUL-terminate and return the length, or -1. */
static inline ssize_t sink_finish(struct sink *s)
{
    if (s->failed || s->cap == 0)
        return -1;
    s->out[s->len] = '\0';
    return (ssize_t)s->len;
}

/* delta-seconds (RFC 9111 §1.2.2): the value clamped to CACHE_DELTA_MAX, or -1 when
 * s[0, len) is not 1*DIGIT. */
int64_t cache__delta_seconds(const char *s, size_t len);

#endif
