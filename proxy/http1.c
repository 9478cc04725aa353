/* HTTP/1.1 message parsing (RFC 9112).
 *
 * A head is parsed in two passes. The first finds where the head ends, resuming where
 * the previous call stopped, and applies the size limits as soon as they are exceeded.
 * The second validates the complete head once. It can scan without bounds checks: a
 * complete head ends in CRLF CRLF, and CR belongs to no character class, so every scan
 * stops on it before the end of the head. */
#include "proxy/http1.h"

#include <string.h>

/* Character classes, one bit each in char_class[]. */
enum {
    CC_TCHAR = 1 << 0,  /* token (RFC 9110 §5.6.2): methods, field names */
    CC_TARGET = 1 << 1, /* visible ASCII: request-target */
    CC_VALUE = 1 << 2,  /* field value, reason phrase: HTAB, SP, VCHAR, obs-text */
    CC_HOST = 1 << 3,   /* reg-name (RFC 3986): unreserved, pct-encoded, sub-delims */
    CC_QDTEXT = 1 << 4, /* inside a quoted-string, backslash and DQUOTE excluded */
};

static const uint8_t char_class[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x00 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x10 */
    0x14, 0x1f, 0x06, 0x17, 0x1f, 0x1f, 0x1f, 0x1f, 0x1e, 0x1e, 0x1f, 0x1f, 0x1e, 0x1f, 0x1f, 0x16, /* 0x20 */
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x16, 0x1e, 0x16, 0x1e, 0x16, 0x16, /* 0x30 */
    0x16, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, /* 0x40 */
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x16, 0x06, 0x16, 0x17, 0x1f, /* 0x50 */
    0x17, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, /* 0x60 */
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x16, 0x17, 0x16, 0x1f, 0x00, /* 0x70 */
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, /* 0x80 */
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, /* 0x90 */
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, /* 0xa0 */
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, /* 0xb0 */
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, /* 0xc0 */
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, /* 0xd0 */
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, /* 0xe0 */
    0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, /* 0xf0 */
};

/* RFC 9112 §2.2 lets a server skip empty lines before a request line; a few is plenty. */
#define LEADING_EMPTY_LINES_MAX 4
/* Leading zeros make a chunk size line arbitrarily long; no client sends this many. */
#define CHUNK_SIZE_DIGITS_MAX 32
#define CHUNK_SIZE_MAX (UINT64_C(1) << 62)
#define CONTENT_LENGTH_MAX ((uint64_t)INT64_MAX)

static inline bool has_class(char c, uint8_t cls)
{
    return (char_class[(unsigned char)c] & cls) != 0;
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline bool is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

static inline unsigned char to_lower(unsigned char c)
{
    return (unsigned char)(c - 'A') < 26 ? (unsigned char)(c | 0x20) : c;
}

/* s[0, n) equals lower[0, n) ignoring the case of s; lower is all lowercase. */
static bool equals_lower(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (to_lower((unsigned char)s[i]) != (unsigned char)lower[i])
            return false;
    return true;
}

#define TOKEN_IS(s, n, lit) ((n) == sizeof(lit) - 1 && equals_lower((s), (lit), sizeof(lit) - 1))

/* Word-at-a-time scanning (the classic "has a byte less than n" bit trick). */
#define EVERY_BYTE(c) (UINT64_C(0x0101010101010101) * (c))

static inline uint64_t load_word(const char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof(w));
    return w;
}

static inline uint64_t bytes_below(uint64_t w, uint8_t n) /* n <= 128 */
{
    return (w - EVERY_BYTE(n)) & ~w & EVERY_BYTE(0x80);
}

static inline uint64_t bytes_zero(uint64_t w)
{
    return (w - EVERY_BYTE(0x01)) & ~w & EVERY_BYTE(0x80);
}

/* The offset of the first flagged byte of a nonzero mask from the functions above: the
 * lowest flag is always genuine (a borrow only runs towards higher bytes). */
static inline size_t first_flagged(uint64_t mask)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(mask) / 8;
#else
    (void)mask;
    return 0; /* the byte loop of the caller takes over */
#endif
}

/* Advance over field-value bytes eight at a time; the table settles the last few and
 * any word the bit tricks cannot (an HTAB inside a value). */
static const char *skip_value(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t w = load_word(p);
        uint64_t mask = bytes_below(w, 0x20) | bytes_zero(w ^ EVERY_BYTE(0x7f));
        if (mask == 0) {
            p += 8;
            continue;
        }
        p += first_flagged(mask);
        if (*p != '\t')
            break;
        p++;
    }
    while (has_class(*p, CC_VALUE))
        p++;
    return p;
}

static const char *skip_target(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t w = load_word(p);
        uint64_t mask = bytes_below(w, 0x21) | bytes_zero(w ^ EVERY_BYTE(0x7f)) |
                        (w & EVERY_BYTE(0x80));
        if (mask != 0) {
            p += first_flagged(mask);
            break;
        }
        p += 8;
    }
    while (has_class(*p, CC_TARGET))
        p++;
    return p;
}

static const char *skip_token(const char *p)
{
    while (has_class(*p, CC_TCHAR))
        p++;
    return p;
}

/* The error for an unexpected byte: a CR that does not start CRLF is always a bare CR
 * (a CR inside the head is never its last byte, so p[1] is readable). */
static enum http1_error unexpected(const char *p, enum http1_error otherwise)
{
    return p[0] == '\r' && p[1] != '\n' ? HTTP1_E_BARE_CR : otherwise;
}

static inline bool at_crlf(const char *p)
{
    return p[0] == '\r' && p[1] == '\n';
}

/* ---- small public helpers ---------------------------------------------------------- */

int http1_error_status(enum http1_error err)
{
    switch (err) {
    case HTTP1_OK: return 200;
    case HTTP1_E_URI_TOO_LONG: return 414;
    case HTTP1_E_HEAD_TOO_LARGE: return 431;
    case HTTP1_E_VERSION: return 505;
    case HTTP1_E_BODY_TOO_LARGE: return 413;
    case HTTP1_E_STATUS_LINE: return 502; /* the upstream answered garbage */
    case HTTP1_E_REQUEST_LINE:
    case HTTP1_E_HEADER_SYNTAX:
    case HTTP1_E_OBS_FOLD:
    case HTTP1_E_BARE_CR:
    case HTTP1_E_CL_TE:
    case HTTP1_E_CONTENT_LENGTH:
    case HTTP1_E_TRANSFER_ENCODING:
    case HTTP1_E_HOST:
    case HTTP1_E_CHUNK:
    case HTTP1_E_CHUNK_EXT:
    case HTTP1_E_TRAILERS: return 400;
    case HTTP1_ERROR_COUNT: break;
    }
    return 500;
}

const char *http1_error_name(enum http1_error err)
{
    static const char *const names[HTTP1_ERROR_COUNT] = {
        [HTTP1_OK] = "ok",
        [HTTP1_E_REQUEST_LINE] = "request_line",
        [HTTP1_E_URI_TOO_LONG] = "uri_too_long",
        [HTTP1_E_HEAD_TOO_LARGE] = "head_too_large",
        [HTTP1_E_HEADER_SYNTAX] = "header_syntax",
        [HTTP1_E_OBS_FOLD] = "obs_fold",
        [HTTP1_E_BARE_CR] = "bare_cr",
        [HTTP1_E_CL_TE] = "cl_te",
        [HTTP1_E_CONTENT_LENGTH] = "content_length",
        [HTTP1_E_TRANSFER_ENCODING] = "transfer_encoding",
        [HTTP1_E_VERSION] = "version",
        [HTTP1_E_HOST] = "host",
        [HTTP1_E_CHUNK] = "chunk",
        [HTTP1_E_CHUNK_EXT] = "chunk_ext",
        [HTTP1_E_TRAILERS] = "trailers",
        [HTTP1_E_BODY_TOO_LARGE] = "body_too_large",
        [HTTP1_E_STATUS_LINE] = "status_line",
    };
    if ((unsigned)err >= HTTP1_ERROR_COUNT)
        return "unknown";
    return names[err];
}

static const char *const method_names[HTTP1_METHOD_COUNT] = {
    [HTTP1_GET] = "GET",         [HTTP1_HEAD] = "HEAD",       [HTTP1_POST] = "POST",
    [HTTP1_PUT] = "PUT",         [HTTP1_DELETE] = "DELETE",   [HTTP1_PATCH] = "PATCH",
    [HTTP1_OPTIONS] = "OPTIONS", [HTTP1_CONNECT] = "CONNECT", [HTTP1_TRACE] = "TRACE",
    [HTTP1_OTHER] = "OTHER",
};

const char *http1_method_name(enum http1_method m)
{
    if ((unsigned)m >= HTTP1_METHOD_COUNT)
        return "OTHER";
    return method_names[m];
}

/* Methods are case-sensitive (RFC 9110 §9.1): "get" is a valid, unknown method. */
static enum http1_method method_from_name(const char *s, size_t n)
{
    enum http1_method candidates[2];
    size_t count = 0;
    switch (n) {
    case 3: candidates[count++] = HTTP1_GET; candidates[count++] = HTTP1_PUT; break;
    case 4: candidates[count++] = HTTP1_HEAD; candidates[count++] = HTTP1_POST; break;
    case 5: candidates[count++] = HTTP1_PATCH; candidates[count++] = HTTP1_TRACE; break;
    case 6: candidates[count++] = HTTP1_DELETE; break;
    case 7: candidates[count++] = HTTP1_OPTIONS; candidates[count++] = HTTP1_CONNECT; break;
    default: break;
    }
    for (size_t i = 0; i < count; i++)
        if (memcmp(s, method_names[candidates[i]], n) == 0)
            return candidates[i];
    return HTTP1_OTHER;
}

bool http1_name_is(const struct http1_header *h, const char *lower_name)
{
    size_t n = strlen(lower_name);
    return h->name_len == n && equals_lower(h->name, lower_name, n);
}

/* *pos <= len: an element starts at *pos; *pos == len + 1: no element left. This tells
 * "a," (a trailing empty element) apart from "a". */
bool http1_list_next(const char *value, size_t len, size_t *pos, const char **tok,
                     size_t *tok_len)
{
    size_t start = *pos;
    if (len == 0 || start > len)
        return false;
    const char *comma = memchr(value + start, ',', len - start);
    size_t end = comma ? (size_t)(comma - value) : len;
    *pos = end + 1;
    while (start < end && is_ows(value[start]))
        start++;
    while (end > start && is_ows(value[end - 1]))
        end--;
    *tok = value + start;
    *tok_len = end - start;
    return true;
}

bool http1_list_has_token(const char *value, size_t len, const char *lower_token)
{
    size_t n = strlen(lower_token);
    size_t pos = 0;
    const char *tok;
    size_t tok_len;
    while (http1_list_next(value, len, &pos, &tok, &tok_len))
        if (tok_len == n && equals_lower(tok, lower_token, n))
            return true;
    return false;
}

/* ---- finding the end of a head ----------------------------------------------------- */

/* Where the head in buf[0, len) ends, its first line starting at line_start.
 * Returns the head length, 0 while it is incomplete and within limits, -1 on error.
 *
 * LFs before prev_len were judged by the previous call, so only new ones are looked at
 * (the CR LF CR before a new LF may be old). Each limit fails at the first length that
 * proves it exceeded, in the order the bytes arrive, so the answer does not depend on
 * how the head was split across calls. */
static ssize_t find_head_end(const char *buf, size_t len, size_t prev_len, size_t line_start,
                             size_t max_first_line, size_t max_head,
                             enum http1_error first_line_err, enum http1_error *err)
{
    /* An over-long first line is known once max_first_line bytes hold no LF, unless
     * the head limit is reached first. A previous call that saw at least two bytes
     * more has made this check already; the margin excludes a call that returned
     * before it because the start of the request line was not yet known. */
    if (max_first_line <= len - line_start && line_start + max_first_line <= max_head &&
        prev_len < line_start + max_first_line + 2 &&
        memchr(buf + line_start, '\n', max_first_line) == NULL) {
        *err = HTTP1_E_URI_TOO_LONG;
        return -1;
    }
    size_t from = prev_len > line_start ? prev_len : line_start;
    size_t scan_end = len < max_head ? len : max_head;
    while (from < scan_end) {
        const char *lf = memchr(buf + from, '\n', scan_end - from);
        if (!lf)
            break;
        size_t i = (size_t)(lf - buf);
        if (i == 0 || buf[i - 1] != '\r') {
            bool in_first_line = memchr(buf + line_start, '\n', i - line_start) == NULL;
            *err = in_first_line ? first_line_err : HTTP1_E_HEADER_SYNTAX;
            return -1;
        }
        if (i >= line_start + 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return (ssize_t)(i + 1);
        from = i + 1;
    }
    if (len >= max_head) {
        *err = HTTP1_E_HEAD_TOO_LARGE;
        return -1;
    }
    return 0;
}

/* ---- field lines ------------------------------------------------------------------- */

/* What the framing and connection decisions need from the fields. */
struct head_facts {
    uint64_t content_length;
    bool has_content_length;
    bool has_transfer_encoding;
    bool te_final_chunked; /* the last coding listed so far is chunked */
    unsigned te_chunked_count;
    unsigned host_count;
    const char *host;
    size_t host_len;
    bool conn_close, conn_keep_alive, conn_upgrade;
    bool has_upgrade;
    bool expect_continue;
    int connection_index;
};

/* Content-Length = 1*DIGIT, possibly as a list ("5, 5") or repeated: every element must
 * be the same number (RFC 9112 §6.3 rule 5). */
static bool note_content_length(struct head_facts *f, const char *v, size_t len)
{
    size_t pos = 0;
    const char *tok;
    size_t tok_len;
    bool any = false;
    while (http1_list_next(v, len, &pos, &tok, &tok_len)) {
        if (tok_len == 0)
            return false;
        uint64_t n = 0;
        for (size_t i = 0; i < tok_len; i++) {
            unsigned d = (unsigned char)tok[i] - (unsigned)'0';
            if (d > 9 || n > (CONTENT_LENGTH_MAX - d) / 10)
                return false;
            n = n * 10 + d;
        }
        if (f->has_content_length && f->content_length != n)
            return false;
        f->has_content_length = true;
        f->content_length = n;
        any = true;
    }
    return any;
}

/* The codings of all Transfer-Encoding fields form one list (RFC 9110 §5.3). */
static void note_transfer_encoding(struct head_facts *f, const char *v, size_t len)
{
    size_t pos = 0;
    const char *tok;
    size_t tok_len;
    f->has_transfer_encoding = true;
    while (http1_list_next(v, len, &pos, &tok, &tok_len)) {
        if (tok_len == 0)
            continue; /* empty list elements are ignored (RFC 9110 §5.6.1) */
        f->te_final_chunked = TOKEN_IS(tok, tok_len, "chunked");
        f->te_chunked_count += f->te_final_chunked;
    }
}

static void note_connection(struct head_facts *f, const char *v, size_t len, size_t index)
{
    size_t pos = 0;
    const char *tok;
    size_t tok_len;
    if (f->connection_index < 0)
        f->connection_index = (int)index;
    while (http1_list_next(v, len, &pos, &tok, &tok_len)) {
        if (TOKEN_IS(tok, tok_len, "close"))
            f->conn_close = true;
        else if (TOKEN_IS(tok, tok_len, "keep-alive"))
            f->conn_keep_alive = true;
        else if (TOKEN_IS(tok, tok_len, "upgrade"))
            f->conn_upgrade = true;
    }
}

/* Record what a field means for framing and the connection; false if Content-Length
 * is malformed. The name's length picks the candidate before any comparison. */
static bool note_field(struct head_facts *f, const struct http1_header *h, size_t index)
{
    const char *v = h->value;
    size_t n = h->value_len;
    switch (h->name_len) {
    case 4:
        if (equals_lower(h->name, "host", 4) && f->host_count++ == 0) {
            f->host = v;
            f->host_len = n;
        }
        break;
    case 6:
        if (equals_lower(h->name, "expect", 6) && TOKEN_IS(v, n, "100-continue"))
            f->expect_continue = true;
        break;
    case 7:
        if (equals_lower(h->name, "upgrade", 7))
            f->has_upgrade = true;
        break;
    case 10:
        if (equals_lower(h->name, "connection", 10))
            note_connection(f, v, n, index);
        break;
    case 14:
        if (equals_lower(h->name, "content-length", 14))
            return note_content_length(f, v, n);
        break;
    case 17:
        if (equals_lower(h->name, "transfer-encoding", 17))
            note_transfer_encoding(f, v, n);
        break;
    default:
        break;
    }
    return true;
}

/* Parse the field lines starting at p, up to and including the empty line, within a
 * complete head buf[0, end). Returns the head length or -1. */
static ssize_t parse_fields(const char *buf, size_t p, size_t end, struct http1_header *headers,
                            size_t cap, size_t *num_headers, struct head_facts *f,
                            enum http1_error *err)
{
    size_t n = 0;
    for (;;) {
        const char *line = buf + p;
        if (p >= end) { /* cannot happen in a head ending in CRLF CRLF; kept as a guard */
            *err = HTTP1_E_HEADER_SYNTAX;
            return -1;
        }
        if (line[0] == '\r') {
            if (line[1] != '\n') {
                *err = HTTP1_E_BARE_CR;
                return -1;
            }
            *num_headers = n;
            return (ssize_t)(p + 2);
        }
        if (is_ows(line[0])) {
            *err = HTTP1_E_OBS_FOLD;
            return -1;
        }
        const char *colon = skip_token(line);
        if (colon == line || *colon != ':') {
            /* Covers "Name : value", the whitespace before the colon that lets some
             * parsers see a different field (RFC 9112 §5.1). */
            *err = unexpected(colon, HTTP1_E_HEADER_SYNTAX);
            return -1;
        }
        const char *value = colon + 1;
        while (is_ows(*value))
            value++;
        const char *eol = skip_value(value, buf + end);
        if (!at_crlf(eol)) {
            *err = unexpected(eol, HTTP1_E_HEADER_SYNTAX);
            return -1;
        }
        const char *value_end = eol;
        while (value_end > value && is_ows(value_end[-1]))
            value_end--;
        if (n == cap) {
            *err = HTTP1_E_HEAD_TOO_LARGE;
            return -1;
        }
        struct http1_header *h = &headers[n];
        h->name = line;
        h->name_len = (size_t)(colon - line);
        h->value = value;
        h->value_len = (size_t)(value_end - value);
        if (!note_field(f, h, n)) {
            *err = HTTP1_E_CONTENT_LENGTH;
            return -1;
        }
        n++;
        p = (size_t)(eol + 2 - buf);
    }
}

/* "HTTP/" DIGIT "." DIGIT at p (HTTP-name is case-sensitive). Returns the minor
 * version (0 or 1), -1 for a well-formed other version, -2 for anything else with *bad
 * at the first wrong byte. Compares byte by byte so it stops at the CR ending the line. */
static int parse_version(const char *p, const char **bad)
{
    static const char pattern[] = "HTTP/#.#";
    for (size_t i = 0; i < sizeof(pattern) - 1; i++) {
        if (pattern[i] == '#' ? !is_digit(p[i]) : p[i] != pattern[i]) {
            *bad = p + i;
            return -2;
        }
    }
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return -1;
    return p[7] - '0';
}

/* uri-host [ ":" port ] (RFC 9110 §7.2); an empty value is allowed. */
static bool host_is_valid(const char *h, size_t len)
{
    size_t i = 0;
    if (len > 0 && h[0] == '[') {
        for (i = 1; i < len && h[i] != ']'; i++)
            if (!has_class(h[i], CC_HOST) && h[i] != ':')
                return false;
        if (i == len || i == 1)
            return false;
        i++;
    } else {
        while (i < len && has_class(h[i], CC_HOST))
            i++;
    }
    if (i < len && h[i] == ':')
        for (i++; i < len && is_digit(h[i]); i++)
            ;
    return i == len;
}

static size_t effective_header_cap(const struct http1_limits *lim, size_t max_headers)
{
    return lim->max_headers < max_headers ? lim->max_headers : max_headers;
}

/* ---- requests ---------------------------------------------------------------------- */

static ssize_t fail(enum http1_error *err, enum http1_error e)
{
    *err = e;
    return -1;
}

ssize_t http1_parse_request(const char *buf, size_t len, size_t prev_len,
                            const struct http1_limits *lim, struct http1_request *req,
                            struct http1_header *headers, size_t max_headers,
                            enum http1_error *err)
{
    size_t start = 0;
    for (int skipped = 0; start + 1 < len && at_crlf(buf + start); skipped++) {
        if (skipped == LEADING_EMPTY_LINES_MAX)
            return fail(err, HTTP1_E_REQUEST_LINE);
        start += 2;
    }
    /* Until a byte other than an empty line's arrives, where the request line starts is
     * unknown, and so are its limits. */
    if (start == len || (start + 1 == len && buf[start] == '\r'))
        return -2;
    if (prev_len > len)
        prev_len = 0;

    ssize_t found = find_head_end(buf, len, prev_len, start, lim->max_request_line,
                                  lim->max_head, HTTP1_E_REQUEST_LINE, err);
    if (found <= 0)
        return found < 0 ? -1 : -2;
    size_t end = (size_t)found;

    /* Only a caller that misreports prev_len gets here with an over-long line. */
    if (end - start > lim->max_request_line &&
        memchr(buf + start, '\n', lim->max_request_line) == NULL)
        return fail(err, HTTP1_E_URI_TOO_LONG);

    struct http1_request r = { 0 };
    const char *p = buf + start;
    const char *sp = skip_token(p);
    if (sp == p || *sp != ' ')
        return fail(err, unexpected(sp, HTTP1_E_REQUEST_LINE));
    r.method_name = p;
    r.method_len = (size_t)(sp - p);
    r.method = method_from_name(p, r.method_len);

    p = sp + 1;
    sp = skip_target(p, buf + end);
    if (sp == p || *sp != ' ')
        return fail(err, unexpected(sp, HTTP1_E_REQUEST_LINE));
    r.target = p;
    r.target_len = (size_t)(sp - p);

    p = sp + 1;
    const char *bad = p;
    int minor = parse_version(p, &bad);
    if (minor < 0)
        return fail(err, minor == -1 ? HTTP1_E_VERSION : unexpected(bad, HTTP1_E_REQUEST_LINE));
    p += 8;
    if (!at_crlf(p))
        return fail(err, unexpected(p, HTTP1_E_REQUEST_LINE));
    p += 2;

    struct head_facts f = { .connection_index = -1 };
    size_t num_headers = 0;
    ssize_t head_len = parse_fields(buf, (size_t)(p - buf), end, headers,
                                    effective_header_cap(lim, max_headers), &num_headers, &f,
                                    err);
    if (head_len < 0)
        return -1;

    /* Framing (RFC 9112 §6.3): refuse whatever two parsers could read differently. */
    struct http1_message *m = &r.msg;
    if (f.has_transfer_encoding) {
        if (f.has_content_length)
            return fail(err, HTTP1_E_CL_TE);
        /* HTTP/1.0 has no chunked coding: its framing is faulty (RFC 9112 §6.1). */
        if (minor == 0 || !f.te_final_chunked || f.te_chunked_count != 1)
            return fail(err, HTTP1_E_TRANSFER_ENCODING);
        m->framing = HTTP1_BODY_CHUNKED;
    } else if (f.has_content_length) {
        if (lim->max_body != 0 && f.content_length > lim->max_body)
            return fail(err, HTTP1_E_BODY_TOO_LARGE);
        m->framing = HTTP1_BODY_LENGTH;
        m->content_length = f.content_length;
    } else {
        m->framing = HTTP1_BODY_NONE;
    }

    if (f.host_count > 1 || (minor == 1 && f.host_count == 0) ||
        (f.host_count == 1 && !host_is_valid(f.host, f.host_len)))
        return fail(err, HTTP1_E_HOST);
    r.host = f.host;
    r.host_len = f.host_len;
    r.expect_continue = f.expect_continue;

    m->minor_version = minor;
    m->headers = headers;
    m->num_headers = num_headers;
    m->keep_alive = !f.conn_close && (minor == 1 || f.conn_keep_alive);
    m->connection_upgrade = f.conn_upgrade && f.has_upgrade;
    m->connection_index = f.connection_index;
    *req = r;
    *err = HTTP1_OK;
    return head_len;
}

/* ---- responses --------------------------------------------------------------------- */

ssize_t http1_parse_response(const char *buf, size_t len, size_t prev_len,
                             const struct http1_limits *lim, enum http1_method request_method,
                             struct http1_response *resp, struct http1_header *headers,
                             size_t max_headers, enum http1_error *err)
{
    if (len == 0)
        return -2;
    if (prev_len > len)
        prev_len = 0;
    ssize_t found = find_head_end(buf, len, prev_len, 0, SIZE_MAX, lim->max_head,
                                  HTTP1_E_STATUS_LINE, err);
    if (found <= 0)
        return found < 0 ? -1 : -2;
    size_t end = (size_t)found;

    struct http1_response r = { 0 };
    const char *p = buf;
    const char *bad = p;
    int minor = parse_version(p, &bad);
    if (minor < 0)
        return fail(err, minor == -1 ? HTTP1_E_VERSION : unexpected(bad, HTTP1_E_STATUS_LINE));
    p += 8;
    for (int i = 0; i < 4; i++) /* SP 3DIGIT */
        if (i == 0 ? p[0] != ' ' : !is_digit(p[i]))
            return fail(err, unexpected(p + i, HTTP1_E_STATUS_LINE));
    r.status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    if (r.status < 100 || r.status > 599)
        return fail(err, HTTP1_E_STATUS_LINE);
    p += 4;
    if (*p == ' ') { /* the reason may be empty, and so may "SP reason" as a whole */
        r.reason = ++p;
        p = skip_value(p, buf + end);
        r.reason_len = (size_t)(p - r.reason);
    } else {
        r.reason = p;
    }
    if (!at_crlf(p))
        return fail(err, unexpected(p, HTTP1_E_STATUS_LINE));
    p += 2;

    struct head_facts f = { .connection_index = -1 };
    size_t num_headers = 0;
    ssize_t head_len = parse_fields(buf, (size_t)(p - buf), end, headers,
                                    effective_header_cap(lim, max_headers), &num_headers, &f,
                                    err);
    if (head_len < 0)
        return -1;

    /* A response we cannot frame unambiguously is not forwarded, even one without a
     * body: a sender must never combine the two (RFC 9112 §6.2). */
    if (f.has_transfer_encoding && f.has_content_length)
        return fail(err, HTTP1_E_CL_TE);

    struct http1_message *m = &r.msg;
    m->keep_alive = !f.conn_close && (minor == 1 || f.conn_keep_alive);
    bool bodiless = request_method == HTTP1_HEAD || r.status < 200 || r.status == 204 ||
                    r.status == 304 ||
                    (request_method == HTTP1_CONNECT && r.status < 300);
    if (bodiless) {
        m->framing = HTTP1_BODY_NONE;
    } else if (f.has_transfer_encoding) {
        if (minor == 0 || (f.te_final_chunked && f.te_chunked_count != 1))
            return fail(err, HTTP1_E_TRANSFER_ENCODING);
        if (f.te_final_chunked) {
            m->framing = HTTP1_BODY_CHUNKED;
        } else { /* RFC 9112 §6.3 rule 4: read until the server closes */
            m->framing = HTTP1_BODY_UNTIL_CLOSE;
            m->keep_alive = false;
        }
    } else if (f.has_content_length) {
        m->framing = HTTP1_BODY_LENGTH;
        m->content_length = f.content_length;
    } else {
        m->framing = HTTP1_BODY_UNTIL_CLOSE;
        m->keep_alive = false;
    }

    m->minor_version = minor;
    m->headers = headers;
    m->num_headers = num_headers;
    m->connection_upgrade = f.conn_upgrade && f.has_upgrade;
    m->connection_index = f.connection_index;
    *resp = r;
    *err = HTTP1_OK;
    return head_len;
}

/* ---- chunked bodies ---------------------------------------------------------------- */

/* chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 * chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )   (RFC 9112 §7.1) */
enum chunk_state {
    CS_SIZE = 0,        /* hex digits; _line_len counts them */
    CS_SIZE_BWS,        /* whitespace after the size: only ';' may follow */
    CS_EXT_NAME_START,  /* after ';' */
    CS_EXT_NAME,
    CS_EXT_NAME_BWS,    /* whitespace after a name: '=' or ';' must follow */
    CS_EXT_VALUE_START, /* after '=' */
    CS_EXT_TOKEN,
    CS_EXT_QUOTED,
    CS_EXT_QUOTED_PAIR, /* after a backslash inside quotes */
    CS_EXT_QUOTED_END,  /* after the closing quote */
    CS_EXT_VALUE_BWS,   /* whitespace after a value: ';' must follow */
    CS_SIZE_LF,
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TRAILER_LINE,    /* start of a trailer field line or of the final CRLF */
    CS_TRAILER_NAME,
    CS_TRAILER_VALUE,
    CS_TRAILER_LF,
    CS_END_LF,
    CS_DONE,
    CS_FAILED,
};

void http1_chunked_init(struct http1_chunked *c)
{
    *c = (struct http1_chunked){ ._state = CS_SIZE };
}

static int hex_value(unsigned char ch)
{
    if ((unsigned)(ch - '0') < 10)
        return ch - '0';
    ch = to_lower(ch);
    if ((unsigned)(ch - 'a') < 6)
        return ch - 'a' + 10;
    return -1;
}

/* The state after ch inside a chunk extension (CR is handled by the caller), or -1. */
static int chunk_ext_next(int state, unsigned char ch)
{
    bool ws = ch == ' ' || ch == '\t';
    bool tchar = (char_class[ch] & CC_TCHAR) != 0;
    switch (state) {
    case CS_SIZE_BWS:
    case CS_EXT_VALUE_BWS:
        return ws ? state : ch == ';' ? CS_EXT_NAME_START : -1;
    case CS_EXT_NAME_START:
        return ws ? state : tchar ? CS_EXT_NAME : -1;
    case CS_EXT_NAME:
        return tchar ? state : ws ? CS_EXT_NAME_BWS : ch == '=' ? CS_EXT_VALUE_START
               : ch == ';' ? CS_EXT_NAME_START : -1;
    case CS_EXT_NAME_BWS:
        return ws ? state : ch == '=' ? CS_EXT_VALUE_START : ch == ';' ? CS_EXT_NAME_START : -1;
    case CS_EXT_VALUE_START:
        return ws ? state : tchar ? CS_EXT_TOKEN : ch == '"' ? CS_EXT_QUOTED : -1;
    case CS_EXT_TOKEN:
    case CS_EXT_QUOTED_END:
        return (state == CS_EXT_TOKEN && tchar) ? state : ws ? CS_EXT_VALUE_BWS
               : ch == ';' ? CS_EXT_NAME_START : -1;
    case CS_EXT_QUOTED:
        return ch == '"' ? CS_EXT_QUOTED_END : ch == '\\' ? CS_EXT_QUOTED_PAIR
               : (char_class[ch] & CC_QDTEXT) ? state : -1;
    case CS_EXT_QUOTED_PAIR:
        return (char_class[ch] & CC_VALUE) ? CS_EXT_QUOTED : -1;
    default:
        return -1;
    }
}

/* A size line may end where a name, a token or a closing quote ends; not after BWS. */
static bool chunk_ext_may_end(int state)
{
    return state == CS_EXT_NAME || state == CS_EXT_TOKEN || state == CS_EXT_QUOTED_END;
}

static ssize_t chunk_fail(struct http1_chunked *c, enum http1_error *err, enum http1_error e)
{
    c->_state = CS_FAILED;
    *err = e;
    return -1;
}

static ssize_t chunked_scan(struct http1_chunked *c, const char *buf, size_t len,
                            const struct http1_limits *lim, bool *done, enum http1_error *err,
                            http1_chunk_data_fn *on_data, void *arg);

ssize_t http1_chunked_scan(struct http1_chunked *c, const char *buf, size_t len,
                           const struct http1_limits *lim, bool *done, enum http1_error *err)
{
    return chunked_scan(c, buf, len, lim, done, err, NULL, NULL);
}

ssize_t http1_chunked_decode(struct http1_chunked *c, const char *buf, size_t len,
                             const struct http1_limits *lim, bool *done, enum http1_error *err,
                             http1_chunk_data_fn *on_data, void *arg)
{
    return chunked_scan(c, buf, len, lim, done, err, on_data, arg);
}

static ssize_t chunked_scan(struct http1_chunked *c, const char *buf, size_t len,
                            const struct http1_limits *lim, bool *done, enum http1_error *err,
                            http1_chunk_data_fn *on_data, void *arg)
{
    size_t p = 0;
    *done = false;
    if (c->_state == CS_FAILED)
        return chunk_fail(c, err, HTTP1_E_CHUNK);
    while (p < len) {
        unsigned char ch = (unsigned char)buf[p];
        switch (c->_state) {
        case CS_DATA: {
            uint64_t n = len - p < c->_remaining ? len - p : c->_remaining;
            if (on_data != NULL && n > 0)
                on_data(arg, buf + p, (size_t)n);
            p += n;
            c->_remaining -= n;
            if (c->_remaining == 0)
                c->_state = CS_DATA_CR;
            continue;
        }
        case CS_DATA_CR:
            if (ch != '\r')
                return chunk_fail(c, err, HTTP1_E_CHUNK);
            c->_state = CS_DATA_LF;
            break;
        case CS_DATA_LF:
            if (ch != '\n')
                return chunk_fail(c, err, HTTP1_E_CHUNK);
            c->_state = CS_SIZE;
            c->_remaining = 0;
            c->_line_len = 0;
            c->_size_digits = false;
            break;
        case CS_SIZE: {
            int d = hex_value(ch);
            if (d >= 0) {
                if (c->_line_len == CHUNK_SIZE_DIGITS_MAX ||
                    c->_remaining > (CHUNK_SIZE_MAX - (uint64_t)d) / 16)
                    return chunk_fail(c, err, HTTP1_E_CHUNK);
                c->_remaining = c->_remaining * 16 + (uint64_t)d;
                c->_line_len++;
                c->_size_digits = true;
                break;
            }
            if (!c->_size_digits)
                return chunk_fail(c, err, HTTP1_E_CHUNK);
            /* The size is known: an oversize body fails before its data arrives. */
            if (lim->max_body != 0 && (c->_remaining > lim->max_body ||
                                       c->_body_bytes > lim->max_body - c->_remaining))
                return chunk_fail(c, err, HTTP1_E_BODY_TOO_LARGE);
            c->_body_bytes = c->_body_bytes > UINT64_MAX - c->_remaining
                                 ? UINT64_MAX : c->_body_bytes + c->_remaining;
            c->_line_len = 0; /* from here on: extension bytes */
            if (ch == '\r') {
                c->_state = CS_SIZE_LF;
                break;
            }
            c->_state = CS_SIZE_BWS;
            continue; /* the same byte, now as the start of an extension */
        }
        case CS_SIZE_BWS:
        case CS_EXT_NAME_START:
        case CS_EXT_NAME:
        case CS_EXT_NAME_BWS:
        case CS_EXT_VALUE_START:
        case CS_EXT_TOKEN:
        case CS_EXT_QUOTED:
        case CS_EXT_QUOTED_PAIR:
        case CS_EXT_QUOTED_END:
        case CS_EXT_VALUE_BWS: {
            if (ch == '\r') {
                if (!chunk_ext_may_end(c->_state))
                    return chunk_fail(c, err, HTTP1_E_CHUNK);
                c->_state = CS_SIZE_LF;
                break;
            }
            if (++c->_line_len > lim->max_chunk_ext)
                return chunk_fail(c, err, HTTP1_E_CHUNK_EXT);
            int next = chunk_ext_next(c->_state, ch);
            if (next < 0)
                return chunk_fail(c, err, HTTP1_E_CHUNK);
            c->_state = next;
            break;
        }
        case CS_SIZE_LF:
            if (ch != '\n')
                return chunk_fail(c, err, HTTP1_E_CHUNK);
            c->_line_len = 0;
            c->_state = c->_remaining == 0 ? CS_TRAILER_LINE : CS_DATA;
            break;
        case CS_TRAILER_LINE:
        case CS_TRAILER_NAME:
        case CS_TRAILER_VALUE:
        case CS_TRAILER_LF:
        case CS_END_LF:
            /* The trailer section is a head without a first line: same rules, same
             * limit. Bare CR, bare LF and obs-fold all fail the checks below. */
            if (++c->_line_len > lim->max_head)
                return chunk_fail(c, err, HTTP1_E_TRAILERS);
            switch (c->_state) {
            case CS_TRAILER_LINE:
                if (ch == '\r')
                    c->_state = CS_END_LF;
                else if (char_class[ch] & CC_TCHAR)
                    c->_state = CS_TRAILER_NAME;
                else
                    return chunk_fail(c, err, HTTP1_E_TRAILERS);
                break;
            case CS_TRAILER_NAME:
                if (ch == ':')
                    c->_state = CS_TRAILER_VALUE;
                else if (!(char_class[ch] & CC_TCHAR))
                    return chunk_fail(c, err, HTTP1_E_TRAILERS);
                break;
            case CS_TRAILER_VALUE:
                if (ch == '\r')
                    c->_state = CS_TRAILER_LF;
                else if (!(char_class[ch] & CC_VALUE))
                    return chunk_fail(c, err, HTTP1_E_TRAILERS);
                break;
            case CS_TRAILER_LF:
                if (ch != '\n')
                    return chunk_fail(c, err, HTTP1_E_TRAILERS);
                c->_state = CS_TRAILER_LINE;
                break;
            default: /* CS_END_LF */
                if (ch != '\n')
                    return chunk_fail(c, err, HTTP1_E_TRAILERS);
                c->_state = CS_DONE;
                *done = true;
                return (ssize_t)(p + 1);
            }
            break;
        case CS_DONE:
            *done = true;
            return (ssize_t)p;
        default:
            return chunk_fail(c, err, HTTP1_E_CHUNK);
        }
        p++;
    }
    *done = c->_state == CS_DONE;
    return (ssize_t)p;
}
