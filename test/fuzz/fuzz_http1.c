/* Fuzz the HTTP/1.1 parser: request and response heads under several limits, then the
 * chunked scanner on what follows. Every input is parsed whole and again in pieces
 * (each piece an exact-size copy, so the sanitizer sees any read past it); both must
 * give the same answer. Invariants are checked with abort(). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)        \
    do {                   \
        if (!(cond))       \
            abort();       \
    } while (0)

static const struct http1_limits limit_sets[] = {
    { .max_request_line = 8192, .max_head = 32768, .max_headers = 100, .max_chunk_ext = 1024,
      .max_body = 0 },
    { .max_request_line = 64, .max_head = 256, .max_headers = 8, .max_chunk_ext = 16,
      .max_body = 1000 },
    { .max_request_line = 16, .max_head = 40, .max_headers = 2, .max_chunk_ext = 2,
      .max_body = 10 },
};
#define LIMIT_SETS (sizeof(limit_sets) / sizeof(limit_sets[0]))
#define HEADERS_CAP 128

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    return x;
}

/* Piece lengths for the incremental feeds: deterministic per input. */
static size_t next_step(uint64_t *seed, size_t len)
{
    *seed = mix(*seed + UINT64_C(0x9e3779b97f4a7c15));
    return 1 + (size_t)(*seed % (len / 4 + 2));
}

static bool within(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && n <= len && p <= buf + len - n;
}

/* What a parser accepted is exactly what we forward: it must be plain CRLF-delimited
 * text without NUL. */
static void check_head_bytes(const char *buf, size_t head_len)
{
    CHECK(head_len >= 4 && memcmp(buf + head_len - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i < head_len; i++) {
        CHECK(buf[i] != '\0');
        if (buf[i] == '\r')
            CHECK(i + 1 < head_len && buf[i + 1] == '\n');
        if (buf[i] == '\n')
            CHECK(i > 0 && buf[i - 1] == '\r');
    }
}

static void check_message(const struct http1_message *m, const struct http1_header *headers,
                          size_t cap, const char *buf, size_t head_len)
{
    CHECK(m->headers == headers);
    CHECK(m->num_headers <= cap);
    CHECK(m->minor_version == 0 || m->minor_version == 1);
    CHECK(m->framing <= HTTP1_BODY_UNTIL_CLOSE);
    for (size_t i = 0; i < m->num_headers; i++) {
        CHECK(headers[i].name_len > 0);
        CHECK(within(headers[i].name, headers[i].name_len, buf, head_len));
        CHECK(within(headers[i].value, headers[i].value_len, buf, head_len));
    }
    if (m->connection_index >= 0) {
        CHECK((size_t)m->connection_index < m->num_headers);
        CHECK(http1_name_is(&headers[m->connection_index], "connection"));
    } else {
        CHECK(m->connection_index == -1);
    }
    if (m->framing == HTTP1_BODY_UNTIL_CLOSE)
        CHECK(!m->keep_alive);
}

static void check_result(ssize_t ret, enum http1_error err, size_t len)
{
    CHECK(ret == -1 || ret == -2 || (ret > 0 && (size_t)ret <= len));
    if (ret == -1)
        CHECK(err > HTTP1_OK && err < HTTP1_ERROR_COUNT);
    CHECK(http1_error_name(err) != NULL);
}

static char *copy_exact(const char *data, size_t len)
{
    char *p = malloc(len ? len : 1);
    CHECK(p != NULL);
    memcpy(p, data, len);
    return p;
}

static ssize_t fuzz_request(const char *buf, size_t len, const struct http1_limits *lim,
                            size_t cap, uint64_t seed)
{
    struct http1_header headers[HEADERS_CAP];
    struct http1_request req;
    enum http1_error err = HTTP1_OK;
    ssize_t ret = http1_parse_request(buf, len, 0, lim, &req, headers, cap, &err);
    check_result(ret, err, len);
    if (ret > 0) {
        size_t head_len = (size_t)ret;
        CHECK(head_len <= lim->max_head);
        check_head_bytes(buf, head_len);
        check_message(&req.msg, headers, cap, buf, head_len);
        CHECK(req.method_len > 0 && within(req.method_name, req.method_len, buf, head_len));
        CHECK(req.target_len > 0 && within(req.target, req.target_len, buf, head_len));
        CHECK(req.method < HTTP1_METHOD_COUNT);
        if (req.method != HTTP1_OTHER)
            CHECK(strlen(http1_method_name(req.method)) == req.method_len &&
                  memcmp(http1_method_name(req.method), req.method_name, req.method_len) == 0);
        if (req.host)
            CHECK(within(req.host, req.host_len, buf, head_len));
        else
            CHECK(req.msg.minor_version == 0);
        CHECK(req.msg.framing != HTTP1_BODY_UNTIL_CLOSE);
        if (req.msg.framing == HTTP1_BODY_LENGTH && lim->max_body)
            CHECK(req.msg.content_length <= lim->max_body);
        if (req.msg.framing == HTTP1_BODY_CHUNKED)
            CHECK(req.msg.minor_version == 1);
    }

    /* The same bytes in pieces, resuming with prev_len, must give the same answer. */
    size_t prev = 0, k = 0;
    ssize_t piecewise = -2;
    enum http1_error piecewise_err = HTTP1_OK;
    struct http1_request req2;
    for (;;) {
        k += next_step(&seed, len);
        if (k > len)
            k = len;
        char *copy = copy_exact(buf, k);
        piecewise_err = HTTP1_OK;
        piecewise = http1_parse_request(copy, k, prev, lim, &req2, headers, cap,
                                        &piecewise_err);
        free(copy);
        if (piecewise != -2 || k == len)
            break;
        prev = k;
    }
    CHECK(piecewise == ret);
    if (ret == -1)
        CHECK(piecewise_err == err);
    if (ret > 0)
        CHECK(req2.method == req.method && req2.target_len == req.target_len &&
              req2.msg.framing == req.msg.framing &&
              req2.msg.content_length == req.msg.content_length &&
              req2.msg.num_headers == req.msg.num_headers &&
              req2.msg.keep_alive == req.msg.keep_alive);
    return ret;
}

static void fuzz_response(const char *buf, size_t len, const struct http1_limits *lim,
                          size_t cap, enum http1_method method, uint64_t seed)
{
    struct http1_header headers[HEADERS_CAP];
    struct http1_response resp;
    enum http1_error err = HTTP1_OK;
    ssize_t ret = http1_parse_response(buf, len, 0, lim, method, &resp, headers, cap, &err);
    check_result(ret, err, len);
    if (ret > 0) {
        size_t head_len = (size_t)ret;
        CHECK(head_len <= lim->max_head);
        check_head_bytes(buf, head_len);
        check_message(&resp.msg, headers, cap, buf, head_len);
        CHECK(resp.status >= 100 && resp.status <= 599);
        CHECK(within(resp.reason, resp.reason_len, buf, head_len));
        if (method == HTTP1_HEAD || resp.status < 200 || resp.status == 204 ||
            resp.status == 304)
            CHECK(resp.msg.framing == HTTP1_BODY_NONE);
    }

    size_t prev = 0, k = 0;
    ssize_t piecewise = -2;
    enum http1_error piecewise_err = HTTP1_OK;
    struct http1_response resp2;
    for (;;) {
        k += next_step(&seed, len);
        if (k > len)
            k = len;
        char *copy = copy_exact(buf, k);
        piecewise_err = HTTP1_OK;
        piecewise = http1_parse_response(copy, k, prev, lim, method, &resp2, headers, cap,
                                         &piecewise_err);
        free(copy);
        if (piecewise != -2 || k == len)
            break;
        prev = k;
    }
    CHECK(piecewise == ret);
    if (ret == -1)
        CHECK(piecewise_err == err);
    if (ret > 0)
        CHECK(resp2.status == resp.status && resp2.msg.framing == resp.msg.framing &&
              resp2.msg.content_length == resp.msg.content_length);
}

struct chunk_outcome {
    bool failed;
    bool done;
    enum http1_error err;
    size_t consumed;
};

/* Scan buf in pieces of the given seed's lengths (0: whole). */
static struct chunk_outcome scan_chunked(const char *buf, size_t len,
                                         const struct http1_limits *lim, uint64_t seed)
{
    struct chunk_outcome out = { 0 };
    struct http1_chunked c;
    http1_chunked_init(&c);
    while (out.consumed < len) {
        size_t n = seed ? next_step(&seed, len) : len;
        if (n > len - out.consumed)
            n = len - out.consumed;
        char *piece = copy_exact(buf + out.consumed, n);
        bool done = false;
        enum http1_error err = HTTP1_OK;
        ssize_t ret = http1_chunked_scan(&c, piece, n, lim, &done, &err);
        free(piece);
        if (ret < 0) {
            CHECK(ret == -1 && err > HTTP1_OK && err < HTTP1_ERROR_COUNT);
            out.failed = true;
            out.err = err;
            return out;
        }
        CHECK((size_t)ret <= n);
        CHECK(done || (size_t)ret == n);
        out.consumed += (size_t)ret;
        if (done) {
            out.done = true;
            /* the body ends with the CRLF that closes the trailer section */
            CHECK(out.consumed >= 5 && memcmp(buf + out.consumed - 2, "\r\n", 2) == 0);
            return out;
        }
    }
    return out;
}

static void fuzz_chunked(const char *buf, size_t len, const struct http1_limits *lim,
                         uint64_t seed)
{
    struct chunk_outcome whole = scan_chunked(buf, len, lim, 0);
    struct chunk_outcome pieces = scan_chunked(buf, len, lim, seed | 1);
    CHECK(whole.failed == pieces.failed && whole.done == pieces.done);
    if (whole.failed)
        CHECK(whole.err == pieces.err);
    else
        CHECK(whole.consumed == pieces.consumed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    uint64_t seed = size;
    for (size_t i = 0; i < size && i < 64; i++)
        seed = mix(seed ^ data[i]);
    enum http1_method method = (enum http1_method)(seed % HTTP1_METHOD_COUNT);

    ssize_t head_len = -1;
    for (size_t i = 0; i < LIMIT_SETS; i++) {
        size_t cap = i == 0 ? HEADERS_CAP : (size_t)(seed >> 8) % 6;
        ssize_t r = fuzz_request(buf, size, &limit_sets[i], cap, seed + i);
        if (i == 0)
            head_len = r;
        fuzz_response(buf, size, &limit_sets[i], cap, method, seed + i);
    }

    /* The chunked scanner sees the body of a request that parsed, else all the input. */
    size_t body = head_len > 0 ? (size_t)head_len : 0;
    for (size_t i = 0; i < LIMIT_SETS; i++)
        fuzz_chunked(buf + body, size - body, &limit_sets[i], seed + i);
    return 0;
}
