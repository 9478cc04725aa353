/* HTTP/1.1 parser: request, response and chunked-body vectors, each fed whole, byte by
 * byte and in random pieces, every time placed right before an unreadable page so that
 * any read past the input crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "proxy/http1.h"

#define RAW(s) .raw = (s), .raw_len = sizeof(s) - 1
#define CHECK(tc, cond)                                                                  \
    do {                                                                                 \
        if (!(cond))                                                                     \
            fail_msg("case \"%s\": %s (line %d)", (tc)->name, #cond, __LINE__);         \
    } while (0)

static const struct http1_limits base_limits = {
    .max_request_line = 256,
    .max_head = 1024,
    .max_headers = 16,
    .max_chunk_ext = 64,
    .max_body = 100000,
};

#define HEADERS_CAP 64

/* ---- guard page ---------------------------------------------------------------------- */

/* Readable pages followed by one PROT_NONE page: input copied to guarded_copy() ends
 * exactly at the unreadable page. */
static char *guard_base;
static size_t guard_size;

static int guard_setup(void **state)
{
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    guard_size = 64 * 1024;
    guard_base = mmap(NULL, guard_size + page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard_base == MAP_FAILED)
        return -1;
    if (mprotect(guard_base + guard_size, page, PROT_NONE) != 0)
        return -1;
    return 0;
}

static int guard_teardown(void **state)
{
    (void)state;
    munmap(guard_base, guard_size + (size_t)sysconf(_SC_PAGESIZE));
    return 0;
}

static const char *guarded_copy(const char *data, size_t len)
{
    assert_true(len <= guard_size);
    char *dst = guard_base + guard_size - len;
    memmove(dst, data, len);
    return dst;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- requests ------------------------------------------------------------------------ */

struct req_case {
    const char *name;
    const char *raw;
    size_t raw_len;
    enum http1_error err; /* HTTP1_OK: the fields below are checked */
    size_t head_len;      /* 0: all of raw */
    enum http1_method method;
    const char *method_name; /* NULL: the enum's name */
    const char *target;      /* NULL: "/" */
    int minor;
    enum http1_framing framing;
    uint64_t content_length;
    bool keep_alive;
    bool upgrade;
    bool expect_continue;
    const char *host;       /* NULL: no Host field */
    const char *connection; /* value of the first Connection field, NULL: none */
    size_t num_headers;
    /* limits other than base_limits when nonzero */
    size_t max_request_line, max_head, max_headers;
    bool incomplete; /* the parser must ask for more bytes */
};

static const struct req_case request_cases[] = {
    /* accepted */
    { "simple get", RAW("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), .minor = 1,
      .keep_alive = true, .host = "example.com", .num_headers = 1 },
    { "http/1.0 without host", RAW("GET /index.html HTTP/1.0\r\n\r\n"), .minor = 0,
      .target = "/index.html" },
    { "http/1.0 keep-alive", RAW("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
      .keep_alive = true, .connection = "Keep-Alive", .num_headers = 1 },
    { "http/1.0 keep-alive and close",
      RAW("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"),
      .connection = "keep-alive, close", .num_headers = 1 },
    { "connection close", RAW("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
      .minor = 1, .host = "a", .connection = "close", .num_headers = 2 },
    { "second connection field counts",
      RAW("GET / HTTP/1.1\r\nConnection: foo\r\nHost: a\r\nConnection: close\r\n\r\n"),
      .minor = 1, .host = "a", .connection = "foo", .num_headers = 3 },
    { "websocket upgrade",
      RAW("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
          "Connection: keep-alive, Upgrade\r\n\r\n"),
      .target = "/chat", .minor = 1, .keep_alive = true, .upgrade = true, .host = "a",
      .connection = "keep-alive, Upgrade", .num_headers = 3 },
    { "connection upgrade without upgrade field",
      RAW("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"), .minor = 1,
      .keep_alive = true, .host = "a", .connection = "upgrade", .num_headers = 2 },
    { "upgrade field without connection upgrade",
      RAW("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"), .minor = 1,
      .keep_alive = true, .host = "a", .num_headers = 2 },
    { "post with content-length and pipelined body",
      RAW("POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n"),
      .head_len = 48, .method = HTTP1_POST, .target = "/f", .minor = 1,
      .framing = HTTP1_BODY_LENGTH, .content_length = 5, .keep_alive = true, .host = "a",
      .num_headers = 2 },
    { "content-length zero", RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
      .method = HTTP1_POST, .minor = 1, .framing = HTTP1_BODY_LENGTH, .keep_alive = true,
      .host = "a", .num_headers = 2 },
    { "content-length leading zeros",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n"), .method = HTTP1_POST,
      .minor = 1, .framing = HTTP1_BODY_LENGTH, .content_length = 7, .keep_alive = true,
      .host = "a", .num_headers = 2 },
    { "same content-length twice",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
      .method = HTTP1_POST, .minor = 1, .framing = HTTP1_BODY_LENGTH, .content_length = 5,
      .keep_alive = true, .host = "a", .num_headers = 3 },
    { "content-length list of equal values",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5,5\r\n\r\n"),
      .method = HTTP1_POST, .minor = 1, .framing = HTTP1_BODY_LENGTH, .content_length = 5,
      .keep_alive = true, .host = "a", .num_headers = 2 },
    { "content-length at max_body",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"),
      .method = HTTP1_POST, .minor = 1, .framing = HTTP1_BODY_LENGTH,
      .content_length = 100000, .keep_alive = true, .host = "a", .num_headers = 2 },
    { "chunked", RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
      .method = HTTP1_POST, .minor = 1, .framing = HTTP1_BODY_CHUNKED, .keep_alive = true,
      .host = "a", .num_headers = 2 },
    { "chunked in capitals",
      RAW("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: CHUNKED\r\n\r\n"),
      .method = HTTP1_POST, .minor = 1, .framing = HTTP1_BODY_CHUNKED, .keep_alive = true,
      .host = "a", .num_headers = 2 },
    { "gzip then chunked",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
      .method = HTTP1_POST, .minor = 1, .framing = HTTP1_BODY_CHUNKED, .keep_alive = true,
      .host = "a", .num_headers = 2 },
    { "codings over two fields",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
          "Transfer-Encoding: chunked\r\n\r\n"),
      .method = HTTP1_POST, .minor = 1, .framing = HTTP1_BODY_CHUNKED, .keep_alive = true,
      .host = "a", .num_headers = 3 },
    { "tab before chunked is whitespace",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n"),
      .method = HTTP1_POST, .minor = 1, .framing = HTTP1_BODY_CHUNKED, .keep_alive = true,
      .host = "a", .num_headers = 2 },
    { "whitespace after chunked",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked \t \r\n\r\n"),
      .method = HTTP1_POST, .minor = 1, .framing = HTTP1_BODY_CHUNKED, .keep_alive = true,
      .host = "a", .num_headers = 2 },
    { "expect 100-continue",
      RAW("PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n"),
      .method = HTTP1_PUT, .target = "/x", .minor = 1, .framing = HTTP1_BODY_LENGTH,
      .content_length = 3, .keep_alive = true, .expect_continue = true, .host = "a",
      .num_headers = 3 },
    { "other expectation", RAW("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continuez\r\n\r\n"),
      .minor = 1, .keep_alive = true, .host = "a", .num_headers = 2 },
    { "lowercase get is another method", RAW("get / HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = HTTP1_OTHER, .method_name = "get", .minor = 1, .keep_alive = true,
      .host = "a", .num_headers = 1 },
    { "extension method", RAW("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = HTTP1_OTHER, .method_name = "M-SEARCH", .target = "*", .minor = 1,
      .keep_alive = true, .host = "a", .num_headers = 1 },
    { "head", RAW("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"), .method = HTTP1_HEAD, .minor = 1,
      .keep_alive = true, .host = "a", .num_headers = 1 },
    { "delete", RAW("DELETE /r/1 HTTP/1.1\r\nHost: a\r\n\r\n"), .method = HTTP1_DELETE,
      .target = "/r/1", .minor = 1, .keep_alive = true, .host = "a", .num_headers = 1 },
    { "patch", RAW("PATCH / HTTP/1.1\r\nHost: a\r\n\r\n"), .method = HTTP1_PATCH,
      .minor = 1, .keep_alive = true, .host = "a", .num_headers = 1 },
    { "options asterisk", RAW("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
      .method = HTTP1_OPTIONS, .target = "*", .minor = 1, .keep_alive = true, .host = "a",
      .num_headers = 1 },
    { "connect authority", RAW("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
      .method = HTTP1_CONNECT, .target = "a:443", .minor = 1, .keep_alive = true,
      .host = "a:443", .num_headers = 1 },
    { "trace", RAW("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"), .method = HTTP1_TRACE,
      .minor = 1, .keep_alive = true, .host = "a", .num_headers = 1 },
    { "absolute form", RAW("GET http://a.example/p?q=1#f HTTP/1.1\r\nHost: a.example\r\n\r\n"),
      .target = "http://a.example/p?q=1#f", .minor = 1, .keep_alive = true,
      .host = "a.example", .num_headers = 1 },
    { "one leading empty line", RAW("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), .minor = 1,
      .keep_alive = true, .host = "a", .num_headers = 1 },
    { "four leading empty lines", RAW("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
      .minor = 1, .keep_alive = true, .host = "a", .num_headers = 1 },
    { "host with port", RAW("GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"), .minor = 1,
      .keep_alive = true, .host = "example.com:8080", .num_headers = 1 },
    { "host ipv6", RAW("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), .minor = 1,
      .keep_alive = true, .host = "[::1]:80", .num_headers = 1 },
    { "empty host", RAW("GET / HTTP/1.1\r\nHost:\r\n\r\n"), .minor = 1, .keep_alive = true,
      .host = "", .num_headers = 1 },
    { "obs-text, inner whitespace and empty values",
      RAW("GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\r\nX-B:  a \t b \r\nX-C:\r\n"
          "X-D: a:b\r\n\r\n"),
      .minor = 1, .keep_alive = true, .host = "a", .num_headers = 5 },
    { "max_headers fields", RAW("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n"), .minor = 1,
      .keep_alive = true, .host = "a", .num_headers = 2, .max_headers = 2 },
    { "request line exactly at the limit", RAW("GET /aaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n"),
      .target = "/aaaaaaaaaaaaaaaa", .minor = 1, .keep_alive = true, .host = "a",
      .num_headers = 1, .max_request_line = 32 },
    { "head exactly at the limit", RAW("GET / HTTP/1.1\r\nHost: a\r\nX: 12345\r\n\r\n"),
      .minor = 1, .keep_alive = true, .host = "a", .num_headers = 2, .max_head = 37 },

    /* refused: framing */
    { "content-length and transfer-encoding",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
      .err = HTTP1_E_CL_TE },
    { "transfer-encoding and content-length",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
      .err = HTTP1_E_CL_TE },
    { "space before colon", RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"),
      .err = HTTP1_E_HEADER_SYNTAX },
    { "tab before colon", RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n"),
      .err = HTTP1_E_HEADER_SYNTAX },
    { "chunked twice in one field",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "chunked twice in two fields",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
          "Transfer-Encoding: chunked\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "chunked not last", RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "chunked not last over two fields",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
          "Transfer-Encoding: gzip\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "identity", RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "xchunked", RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "chunked with a parameter",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "quoted chunked", RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "empty transfer-encoding", RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "vertical tab before chunked",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0b" "chunked\r\n\r\n"),
      .err = HTTP1_E_HEADER_SYNTAX },
    { "transfer-encoding in http/1.0",
      RAW("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "content-length plus sign", RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "content-length negative", RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "content-length with inner space",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "content-length hex", RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "content-length empty", RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "content-length empty element",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "content-length decimal", RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "content-length overflow",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551621\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "content-length above int64",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "differing content-length fields",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "differing content-length list",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "body over max_body",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100001\r\n\r\n"),
      .err = HTTP1_E_BODY_TOO_LARGE },
    { "huge body over max_body",
      RAW("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n"),
      .err = HTTP1_E_BODY_TOO_LARGE },

    /* refused: syntax */
    { "obs-fold", RAW("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"), .err = HTTP1_E_OBS_FOLD },
    { "obs-fold with tab", RAW("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"),
      .err = HTTP1_E_OBS_FOLD },
    { "whitespace before the first field", RAW("GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
      .err = HTTP1_E_OBS_FOLD },
    { "bare cr in a value", RAW("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"),
      .err = HTTP1_E_BARE_CR },
    { "bare cr in a name", RAW("GET / HTTP/1.1\r\nHost: a\r\nX\rY: a\r\n\r\n"),
      .err = HTTP1_E_BARE_CR },
    { "bare cr in the target", RAW("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), .err = HTTP1_E_BARE_CR },
    { "bare cr in the version", RAW("GET / HTTP/1\r1\r\nHost: a\r\n\r\n"), .err = HTTP1_E_BARE_CR },
    { "bare cr before crlf", RAW("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"), .err = HTTP1_E_BARE_CR },
    { "bare cr starting a line", RAW("GET / HTTP/1.1\r\nHost: a\r\n\rX: a\r\n\r\n"),
      .err = HTTP1_E_BARE_CR },
    { "bare lf ending the request line", RAW("GET / HTTP/1.1\nHost: a\r\n\r\n"),
      .err = HTTP1_E_REQUEST_LINE },
    { "bare lf ending a field", RAW("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"),
      .err = HTTP1_E_HEADER_SYNTAX },
    { "bare lf ending the head", RAW("GET / HTTP/1.1\r\nHost: a\r\n\n"),
      .err = HTTP1_E_HEADER_SYNTAX },
    { "only bare lfs", RAW("GET / HTTP/1.1\nHost: a\n\n"), .err = HTTP1_E_REQUEST_LINE },
    { "leading bare lf", RAW("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), .err = HTTP1_E_REQUEST_LINE },
    { "nul in a value", RAW("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"),
      .err = HTTP1_E_HEADER_SYNTAX },
    { "nul in a name", RAW("GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n"),
      .err = HTTP1_E_HEADER_SYNTAX },
    { "nul in the target", RAW("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"),
      .err = HTTP1_E_REQUEST_LINE },
    { "del in a value", RAW("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"),
      .err = HTTP1_E_HEADER_SYNTAX },
    { "name with a space", RAW("GET / HTTP/1.1\r\nHost: a\r\nX Y: a\r\n\r\n"),
      .err = HTTP1_E_HEADER_SYNTAX },
    { "empty name", RAW("GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n"), .err = HTTP1_E_HEADER_SYNTAX },
    { "no colon", RAW("GET / HTTP/1.1\r\nHost: a\r\nX-Y\r\n\r\n"), .err = HTTP1_E_HEADER_SYNTAX },
    { "name with a separator", RAW("GET / HTTP/1.1\r\nHost: a\r\nX(Y): a\r\n\r\n"),
      .err = HTTP1_E_HEADER_SYNTAX },
    { "missing host", RAW("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), .err = HTTP1_E_HOST },
    { "two hosts", RAW("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), .err = HTTP1_E_HOST },
    { "two equal hosts", RAW("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), .err = HTTP1_E_HOST },
    { "two hosts in http/1.0", RAW("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
      .err = HTTP1_E_HOST },
    { "host with a space", RAW("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), .err = HTTP1_E_HOST },
    { "host with a slash", RAW("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), .err = HTTP1_E_HOST },
    { "host with userinfo", RAW("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), .err = HTTP1_E_HOST },
    { "host with a bad port", RAW("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n"), .err = HTTP1_E_HOST },
    { "host with two colons", RAW("GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n"), .err = HTTP1_E_HOST },
    { "host unclosed bracket", RAW("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), .err = HTTP1_E_HOST },
    { "host with obs-text", RAW("GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n"), .err = HTTP1_E_HOST },
    { "http/2.0", RAW("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), .err = HTTP1_E_VERSION },
    { "http/1.2", RAW("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), .err = HTTP1_E_VERSION },
    { "http/0.9", RAW("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), .err = HTTP1_E_VERSION },
    { "http/1.10", RAW("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), .err = HTTP1_E_REQUEST_LINE },
    { "lowercase http", RAW("GET / http/1.1\r\nHost: a\r\n\r\n"), .err = HTTP1_E_REQUEST_LINE },
    { "short version", RAW("GET / HTTP/1\r\nHost: a\r\n\r\n"), .err = HTTP1_E_REQUEST_LINE },
    { "no version", RAW("GET /\r\nHost: a\r\n\r\n"), .err = HTTP1_E_REQUEST_LINE },
    { "two spaces", RAW("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), .err = HTTP1_E_REQUEST_LINE },
    { "trailing space", RAW("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), .err = HTTP1_E_REQUEST_LINE },
    { "tab separator", RAW("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), .err = HTTP1_E_REQUEST_LINE },
    { "empty method", RAW(" / HTTP/1.1\r\nHost: a\r\n\r\n"), .err = HTTP1_E_REQUEST_LINE },
    { "del in the target", RAW("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), .err = HTTP1_E_REQUEST_LINE },
    { "obs-text in the target", RAW("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"),
      .err = HTTP1_E_REQUEST_LINE },
    { "five leading empty lines", RAW("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
      .err = HTTP1_E_REQUEST_LINE },

    /* refused: limits */
    { "request line over the limit", RAW("GET /aaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n"),
      .err = HTTP1_E_URI_TOO_LONG, .max_request_line = 32 },
    { "request line far over the limit, head incomplete",
      RAW("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
      .err = HTTP1_E_URI_TOO_LONG, .max_request_line = 32 },
    { "request line limit counts after leading empty lines",
      RAW("\r\n\r\nGET /aaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n"),
      .target = "/aaaaaaaaaaaaaaaa", .minor = 1, .keep_alive = true, .host = "a",
      .num_headers = 1, .max_request_line = 32 },
    { "head over the limit", RAW("GET / HTTP/1.1\r\nHost: a\r\nX: 123456\r\n\r\n"),
      .err = HTTP1_E_HEAD_TOO_LARGE, .max_head = 37 },
    { "head over the limit, incomplete", RAW("GET / HTTP/1.1\r\nHost: a\r\nX: 123456789012"),
      .err = HTTP1_E_HEAD_TOO_LARGE, .max_head = 37 },
    { "head limit reached before the request line limit",
      RAW("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n"),
      .err = HTTP1_E_HEAD_TOO_LARGE, .max_request_line = 40, .max_head = 30 },
    { "too many fields", RAW("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"),
      .err = HTTP1_E_HEAD_TOO_LARGE, .max_headers = 2 },

    /* incomplete */
    { "only empty lines", RAW("\r\n\r\n"), .err = HTTP1_OK, .incomplete = true },
    { "partial head", RAW("GET / HTTP/1.1\r\nHost: a\r\n\r"), .incomplete = true },
    { "partial request line", RAW("GET /index"), .incomplete = true },
    { "lone cr", RAW("\r"), .incomplete = true },
    { "empty", RAW(""), .incomplete = true },
};

static struct http1_limits request_limits(const struct req_case *tc)
{
    struct http1_limits lim = base_limits;
    if (tc->max_request_line)
        lim.max_request_line = tc->max_request_line;
    if (tc->max_head)
        lim.max_head = tc->max_head;
    if (tc->max_headers)
        lim.max_headers = tc->max_headers;
    return lim;
}

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && p + n <= buf + len;
}

static bool text_is(const char *p, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

static void check_error(const char *name, ssize_t ret, enum http1_error err,
                        enum http1_error want)
{
    if (ret != -1 || err != want)
        fail_msg("case \"%s\": got %zd/%s, want -1/%s", name, ret, http1_error_name(err),
                 http1_error_name(want));
}

static void check_headers(const struct req_case *tc, const struct http1_message *m,
                          const struct http1_header *headers, const char *buf, size_t head_len)
{
    CHECK(tc, m->headers == headers);
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct http1_header *h = &headers[i];
        CHECK(tc, h->name_len > 0 && inside(h->name, h->name_len, buf, head_len));
        CHECK(tc, inside(h->value, h->value_len, buf, head_len));
        CHECK(tc, h->value_len == 0 ||
                      (h->value[0] != ' ' && h->value[0] != '\t' &&
                       h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t'));
    }
}

static void check_request(const struct req_case *tc, const char *buf, ssize_t ret,
                          enum http1_error err, const struct http1_request *req,
                          const struct http1_header *headers)
{
    if (tc->incomplete) {
        if (ret != -2)
            fail_msg("case \"%s\": got %zd/%s, want -2", tc->name, ret, http1_error_name(err));
        return;
    }
    if (tc->err != HTTP1_OK) {
        check_error(tc->name, ret, err, tc->err);
        return;
    }
    size_t head_len = tc->head_len ? tc->head_len : tc->raw_len;
    if (ret != (ssize_t)head_len)
        fail_msg("case \"%s\": got %zd/%s, want %zu", tc->name, ret, http1_error_name(err),
                 head_len);
    CHECK(tc, err == HTTP1_OK);
    const struct http1_message *m = &req->msg;
    CHECK(tc, req->method == tc->method);
    const char *method = tc->method_name ? tc->method_name : http1_method_name(tc->method);
    CHECK(tc, text_is(req->method_name, req->method_len, method));
    CHECK(tc, inside(req->method_name, req->method_len, buf, head_len));
    CHECK(tc, text_is(req->target, req->target_len, tc->target ? tc->target : "/"));
    CHECK(tc, inside(req->target, req->target_len, buf, head_len));
    CHECK(tc, m->minor_version == tc->minor);
    CHECK(tc, m->framing == tc->framing);
    if (tc->framing == HTTP1_BODY_LENGTH)
        CHECK(tc, m->content_length == tc->content_length);
    CHECK(tc, m->keep_alive == tc->keep_alive);
    CHECK(tc, m->connection_upgrade == tc->upgrade);
    CHECK(tc, req->expect_continue == tc->expect_continue);
    if (tc->host) {
        CHECK(tc, req->host && text_is(req->host, req->host_len, tc->host));
        CHECK(tc, inside(req->host, req->host_len, buf, head_len));
    } else {
        CHECK(tc, req->host == NULL);
    }
    if (tc->connection) {
        CHECK(tc, m->connection_index >= 0 && (size_t)m->connection_index < m->num_headers);
        const struct http1_header *h = &headers[m->connection_index];
        CHECK(tc, http1_name_is(h, "connection"));
        CHECK(tc, text_is(h->value, h->value_len, tc->connection));
    } else {
        CHECK(tc, m->connection_index == -1);
    }
    CHECK(tc, m->num_headers == tc->num_headers);
    check_headers(tc, m, headers, buf, head_len);
}

static ssize_t parse_request_at(const struct req_case *tc, size_t len, size_t prev_len,
                                const char **buf, struct http1_request *req,
                                struct http1_header *headers, enum http1_error *err)
{
    struct http1_limits lim = request_limits(tc);
    *buf = guarded_copy(tc->raw, len);
    *err = HTTP1_OK;
    return http1_parse_request(*buf, len, prev_len, &lim, req, headers, HEADERS_CAP, err);
}

/* Feed growing prefixes, passing what the previous call saw as prev_len, until the
 * parser answers; the answer must be the one for the whole input. */
static void feed_request(const struct req_case *tc, bool byte_by_byte)
{
    struct http1_header headers[HEADERS_CAP];
    struct http1_request req;
    enum http1_error err;
    const char *buf = NULL;
    ssize_t ret = -2;
    size_t prev = 0;
    for (size_t k = 0; k <= tc->raw_len;) {
        ret = parse_request_at(tc, k, prev, &buf, &req, headers, &err);
        if (ret != -2)
            break;
        prev = k;
        if (k == tc->raw_len)
            break;
        k += byte_by_byte ? 1 : 1 + rng_next() % 24;
        if (k > tc->raw_len)
            k = tc->raw_len;
    }
    check_request(tc, buf, ret, err, &req, headers);
}

static void test_request_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(request_cases) / sizeof(request_cases[0]); i++) {
        const struct req_case *tc = &request_cases[i];
        struct http1_header headers[HEADERS_CAP];
        struct http1_request req, untouched;
        enum http1_error err;
        const char *buf;
        memset(&req, 0xa5, sizeof(req));
        memcpy(&untouched, &req, sizeof(req));
        ssize_t ret = parse_request_at(tc, tc->raw_len, 0, &buf, &req, headers, &err);
        check_request(tc, buf, ret, err, &req, headers);
        if (ret < 0)
            CHECK(tc, memcmp(&req, &untouched, sizeof(req)) == 0);
        feed_request(tc, true);
        for (int round = 0; round < 8; round++)
            feed_request(tc, false);
    }
}

/* ---- responses ----------------------------------------------------------------------- */

struct resp_case {
    const char *name;
    const char *raw;
    size_t raw_len;
    enum http1_method method;
    enum http1_error err;
    int status;
    const char *reason;
    int minor;
    enum http1_framing framing;
    uint64_t content_length;
    bool keep_alive;
    bool upgrade;
    size_t head_len; /* 0: all of raw */
};

static const struct resp_case response_cases[] = {
    { "content-length", RAW("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), .status = 200,
      .reason = "OK", .minor = 1, .framing = HTTP1_BODY_LENGTH, .content_length = 5,
      .keep_alive = true, .head_len = 38 },
    { "chunked", RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), .status = 200,
      .reason = "OK", .minor = 1, .framing = HTTP1_BODY_CHUNKED, .keep_alive = true },
    { "gzip then chunked", RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = HTTP1_BODY_CHUNKED,
      .keep_alive = true },
    { "until close", RAW("HTTP/1.1 200 OK\r\n\r\n"), .status = 200, .reason = "OK", .minor = 1,
      .framing = HTTP1_BODY_UNTIL_CLOSE },
    { "gzip only: until close", RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = HTTP1_BODY_UNTIL_CLOSE },
    { "chunked not last: until close",
      RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), .status = 200,
      .reason = "OK", .minor = 1, .framing = HTTP1_BODY_UNTIL_CLOSE },
    { "chunked twice", RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "content-length and chunked",
      RAW("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
      .err = HTTP1_E_CL_TE },
    { "content-length and chunked on a 304",
      RAW("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
      .err = HTTP1_E_CL_TE },
    { "chunked in http/1.0", RAW("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
      .err = HTTP1_E_TRANSFER_ENCODING },
    { "response to head", RAW("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
      .method = HTTP1_HEAD, .status = 200, .reason = "OK", .minor = 1,
      .framing = HTTP1_BODY_NONE, .keep_alive = true },
    { "response to head, chunked", RAW("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
      .method = HTTP1_HEAD, .status = 200, .reason = "OK", .minor = 1,
      .framing = HTTP1_BODY_NONE, .keep_alive = true },
    { "204", RAW("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"), .status = 204,
      .reason = "No Content", .minor = 1, .framing = HTTP1_BODY_NONE, .keep_alive = true },
    { "304", RAW("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"), .status = 304,
      .reason = "Not Modified", .minor = 1, .framing = HTTP1_BODY_NONE, .keep_alive = true },
    { "100 continue", RAW("HTTP/1.1 100 Continue\r\n\r\n"), .status = 100,
      .reason = "Continue", .minor = 1, .framing = HTTP1_BODY_NONE, .keep_alive = true },
    { "101 switching protocols",
      RAW("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
      .status = 101, .reason = "Switching Protocols", .minor = 1, .framing = HTTP1_BODY_NONE,
      .keep_alive = true, .upgrade = true },
    { "connect 200", RAW("HTTP/1.1 200 Connection Established\r\n\r\n"),
      .method = HTTP1_CONNECT, .status = 200, .reason = "Connection Established",
      .minor = 1, .framing = HTTP1_BODY_NONE, .keep_alive = true },
    { "connect 407", RAW("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 2\r\n\r\n"),
      .method = HTTP1_CONNECT, .status = 407, .reason = "Proxy Authentication Required",
      .minor = 1, .framing = HTTP1_BODY_LENGTH, .content_length = 2, .keep_alive = true },
    { "no reason", RAW("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), .status = 200,
      .reason = "", .minor = 1, .framing = HTTP1_BODY_LENGTH, .keep_alive = true },
    { "empty reason", RAW("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"), .status = 200,
      .reason = "", .minor = 1, .framing = HTTP1_BODY_LENGTH, .keep_alive = true },
    { "reason with obs-text and tab", RAW("HTTP/1.1 404 Nicht \tgefunden \xc3\xa4\r\nContent-Length: 0\r\n\r\n"),
      .status = 404, .reason = "Nicht \tgefunden \xc3\xa4", .minor = 1,
      .framing = HTTP1_BODY_LENGTH, .keep_alive = true },
    { "http/1.0 keep-alive",
      RAW("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 0, .framing = HTTP1_BODY_LENGTH,
      .content_length = 1, .keep_alive = true },
    { "http/1.0 default close", RAW("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 0, .framing = HTTP1_BODY_LENGTH,
      .content_length = 1 },
    { "connection close", RAW("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = HTTP1_BODY_LENGTH,
      .content_length = 1 },
    { "content-length list", RAW("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n"),
      .status = 200, .reason = "OK", .minor = 1, .framing = HTTP1_BODY_LENGTH,
      .content_length = 3, .keep_alive = true },
    { "content-length not limited by max_body",
      RAW("HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n"), .status = 200,
      .reason = "OK", .minor = 1, .framing = HTTP1_BODY_LENGTH,
      .content_length = 1000000000, .keep_alive = true },
    { "differing content-length", RAW("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "malformed content-length", RAW("HTTP/1.1 200 OK\r\nContent-Length: 3a\r\n\r\n"),
      .err = HTTP1_E_CONTENT_LENGTH },
    { "obs-fold", RAW("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
      .err = HTTP1_E_OBS_FOLD },
    { "bare cr in the reason", RAW("HTTP/1.1 200 O\rK\r\n\r\n"), .err = HTTP1_E_BARE_CR },
    { "bare cr in the status", RAW("HTTP/1.1 2\r0 OK\r\n\r\n"), .err = HTTP1_E_BARE_CR },
    { "bare lf ending the status line", RAW("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),
      .err = HTTP1_E_STATUS_LINE },
    { "http/2.0", RAW("HTTP/2.0 200 OK\r\n\r\n"), .err = HTTP1_E_VERSION },
    { "http/1.2", RAW("HTTP/1.2 200 OK\r\n\r\n"), .err = HTTP1_E_VERSION },
    { "not http", RAW("ICY 200 OK\r\n\r\n"), .err = HTTP1_E_STATUS_LINE },
    { "two-digit status", RAW("HTTP/1.1 20 OK\r\n\r\n"), .err = HTTP1_E_STATUS_LINE },
    { "four-digit status", RAW("HTTP/1.1 2000 OK\r\n\r\n"), .err = HTTP1_E_STATUS_LINE },
    { "status below 100", RAW("HTTP/1.1 099 Odd\r\n\r\n"), .err = HTTP1_E_STATUS_LINE },
    { "status above 599", RAW("HTTP/1.1 600 Odd\r\n\r\n"), .err = HTTP1_E_STATUS_LINE },
    { "two spaces", RAW("HTTP/1.1  200 OK\r\n\r\n"), .err = HTTP1_E_STATUS_LINE },
    { "nul in the reason", RAW("HTTP/1.1 200 O\0K\r\n\r\n"), .err = HTTP1_E_STATUS_LINE },
    { "empty status line", RAW("\r\nHTTP/1.1 200 OK\r\n\r\n"), .err = HTTP1_E_STATUS_LINE },
};

static void check_response(const struct resp_case *tc, const char *buf, size_t len, ssize_t ret,
                           enum http1_error err, const struct http1_response *resp,
                           const struct http1_header *headers)
{
    if (tc->err != HTTP1_OK) {
        check_error(tc->name, ret, err, tc->err);
        return;
    }
    size_t head_len = tc->head_len ? tc->head_len : tc->raw_len;
    if (ret != (ssize_t)head_len)
        fail_msg("case \"%s\": got %zd/%s, want %zu (fed %zu)", tc->name, ret,
                 http1_error_name(err), head_len, len);
    const struct http1_message *m = &resp->msg;
    CHECK(tc, resp->status == tc->status);
    CHECK(tc, text_is(resp->reason, resp->reason_len, tc->reason));
    CHECK(tc, inside(resp->reason, resp->reason_len, buf, head_len));
    CHECK(tc, m->minor_version == tc->minor);
    CHECK(tc, m->framing == tc->framing);
    if (tc->framing == HTTP1_BODY_LENGTH)
        CHECK(tc, m->content_length == tc->content_length);
    CHECK(tc, m->keep_alive == tc->keep_alive);
    CHECK(tc, m->connection_upgrade == tc->upgrade);
    struct req_case as_req = { .name = tc->name };
    check_headers(&as_req, m, headers, buf, head_len);
}

static void test_response_vectors(void **state)
{
    (void)state;
    struct http1_limits lim = base_limits;
    lim.max_body = 1000; /* must not apply to responses */
    for (size_t i = 0; i < sizeof(response_cases) / sizeof(response_cases[0]); i++) {
        const struct resp_case *tc = &response_cases[i];
        struct http1_header headers[HEADERS_CAP];
        struct http1_response resp;
        enum http1_error err = HTTP1_OK;
        const char *buf = guarded_copy(tc->raw, tc->raw_len);
        ssize_t ret = http1_parse_response(buf, tc->raw_len, 0, &lim, tc->method, &resp,
                                           headers, HEADERS_CAP, &err);
        check_response(tc, buf, tc->raw_len, ret, err, &resp, headers);

        size_t prev = 0;
        for (size_t k = 0; k <= tc->raw_len; k++) {
            buf = guarded_copy(tc->raw, k);
            err = HTTP1_OK;
            ret = http1_parse_response(buf, k, prev, &lim, tc->method, &resp, headers,
                                       HEADERS_CAP, &err);
            if (ret != -2)
                break;
            prev = k;
        }
        check_response(tc, buf, tc->raw_len, ret, err, &resp, headers);
    }
}

/* ---- chunked bodies ------------------------------------------------------------------ */

struct chunk_case {
    const char *name;
    const char *raw;
    size_t raw_len;
    enum http1_error err;
    size_t body_len; /* bytes of the body when it ends inside raw; 0: does not end */
    size_t max_chunk_ext, max_head;
    uint64_t max_body;
    bool unlimited_body; /* max_body 0 */
};

#define NEXT "GET / HTTP/1.1\r\n"

static const struct chunk_case chunk_cases[] = {
    { "last chunk only", RAW("0\r\n\r\n" NEXT), .body_len = 5 },
    { "one chunk", RAW("5\r\nhello\r\n0\r\n\r\n" NEXT), .body_len = 15 },
    { "two chunks", RAW("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), .body_len = 26 },
    { "hex sizes", RAW("a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n"), .body_len = 35 },
    { "leading zeros", RAW("0005\r\nhello\r\n000\r\n\r\n"), .body_len = 20 },
    { "data holding crlf", RAW("4\r\n\r\n\r\n\r\n0\r\n\r\n"), .body_len = 14 },
    { "extension", RAW("5;name=value\r\nhello\r\n0;last\r\n\r\n"), .body_len = 31 },
    { "extensions with bws",
      RAW("5 ; a = b ;c\t;d=\"x y\"\r\nhello\r\n0\r\n\r\n"), .body_len = 35 },
    { "quoted extension with escapes", RAW("1;a=\"b;c\\\"d\\\\\"\r\nx\r\n0\r\n\r\n"),
      .body_len = 24 },
    { "trailers", RAW("3\r\nabc\r\n0\r\nX-Sum: 1234\r\nY: \t z\xc3\xa4\r\n\r\n" NEXT),
      .body_len = 36 },
    { "empty trailer value", RAW("0\r\nX:\r\n\r\n"), .body_len = 9 },
    { "body at max_body", RAW("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"), .body_len = 25,
      .max_body = 10 },
    { "extension at max_chunk_ext", RAW("1;abcdefg\r\nx\r\n0\r\n\r\n"), .body_len = 19,
      .max_chunk_ext = 8 },
    { "trailers at max_head", RAW("0\r\nX: 12\r\n\r\n"), .body_len = 12, .max_head = 9 },
    { "incomplete data", RAW("10\r\nhello") },
    { "incomplete size line", RAW("5;a=b") },
    { "incomplete trailers", RAW("0\r\nX: y\r\n") },

    { "no size", RAW("\r\nhello\r\n0\r\n\r\n"), .err = HTTP1_E_CHUNK },
    { "size not hex", RAW("x\r\n"), .err = HTTP1_E_CHUNK },
    { "negative size", RAW("-5\r\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "0x prefix", RAW("0x5\r\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "plus sign", RAW("+5\r\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "space in the size", RAW("1 0\r\n"), .err = HTTP1_E_CHUNK },
    { "whitespace before crlf", RAW("5 \r\nhello\r\n0\r\n\r\n"), .err = HTTP1_E_CHUNK },
    { "whitespace before the size", RAW(" 5\r\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "size at 2^62", RAW("4000000000000000\r\n"), .unlimited_body = true },
    { "size over 2^62", RAW("4000000000000001\r\n"), .err = HTTP1_E_CHUNK, .unlimited_body = true },
    { "size over 2^64", RAW("10000000000000000\r\n"), .err = HTTP1_E_CHUNK },
    { "too many leading zeros", RAW("000000000000000000000000000000001\r\nx\r\n"),
      .err = HTTP1_E_CHUNK },
    { "bare lf after the size", RAW("5\nhello\r\n0\r\n\r\n"), .err = HTTP1_E_CHUNK },
    { "bare cr after the size", RAW("5\rhello\r\n0\r\n\r\n"), .err = HTTP1_E_CHUNK },
    { "data longer than the size", RAW("5\r\nhello!\r\n0\r\n\r\n"), .err = HTTP1_E_CHUNK },
    { "bare lf after data", RAW("5\r\nhello\n0\r\n\r\n"), .err = HTTP1_E_CHUNK },
    { "bare cr after data", RAW("5\r\nhello\r0\r\n\r\n"), .err = HTTP1_E_CHUNK },
    { "other byte then lf after data", RAW("5\r\nhelloX\n0\r\n\r\n"), .err = HTTP1_E_CHUNK },
    { "two lfs after data", RAW("5\r\nhello\n\n0\r\n\r\n"), .err = HTTP1_E_CHUNK },
    { "empty extension", RAW("5;\r\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "extension without value", RAW("5;a=\r\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "extension with whitespace before crlf", RAW("5;a \r\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "unterminated quote", RAW("5;a=\"b\r\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "extension name not a token", RAW("5;a@b\r\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "nul in an extension", RAW("5;a=b\0\r\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "bare lf in an extension", RAW("5;a\nhello\r\n"), .err = HTTP1_E_CHUNK },
    { "extension over max_chunk_ext", RAW("1;abcdefgh\r\nx\r\n0\r\n\r\n"),
      .err = HTTP1_E_CHUNK_EXT, .max_chunk_ext = 8 },
    { "long extension", RAW("1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
      .err = HTTP1_E_CHUNK_EXT },
    { "body over max_body", RAW("5\r\nhello\r\n6\r\n"), .err = HTTP1_E_BODY_TOO_LARGE,
      .max_body = 10 },
    { "one chunk over max_body", RAW("b\r\n"), .err = HTTP1_E_BODY_TOO_LARGE, .max_body = 10 },
    { "obs-fold in trailers", RAW("0\r\nX: a\r\n b\r\n\r\n"), .err = HTTP1_E_TRAILERS },
    { "space before colon in trailers", RAW("0\r\nX : a\r\n\r\n"), .err = HTTP1_E_TRAILERS },
    { "no colon in trailers", RAW("0\r\nX\r\n\r\n"), .err = HTTP1_E_TRAILERS },
    { "bare lf in trailers", RAW("0\r\nX: a\n\r\n"), .err = HTTP1_E_TRAILERS },
    { "bare lf ending trailers", RAW("0\r\n\n"), .err = HTTP1_E_TRAILERS },
    { "bare cr ending trailers", RAW("0\r\n\rX"), .err = HTTP1_E_TRAILERS },
    { "nul in trailers", RAW("0\r\nX: a\0\r\n\r\n"), .err = HTTP1_E_TRAILERS },
    { "trailers over max_head", RAW("0\r\nX: 123\r\n\r\n"), .err = HTTP1_E_TRAILERS,
      .max_head = 9 },
};

static struct http1_limits chunk_limits(const struct chunk_case *tc)
{
    struct http1_limits lim = base_limits;
    if (tc->max_chunk_ext)
        lim.max_chunk_ext = tc->max_chunk_ext;
    if (tc->max_head)
        lim.max_head = tc->max_head;
    if (tc->max_body || tc->unlimited_body)
        lim.max_body = tc->max_body;
    return lim;
}

/* Feed raw in pieces whose lengths come from next_piece, each piece copied right before
 * the guard page, and check the outcome. */
static void feed_chunked(const struct chunk_case *tc, size_t (*next_piece)(size_t step))
{
    struct http1_limits lim = chunk_limits(tc);
    struct http1_chunked c;
    http1_chunked_init(&c);
    size_t off = 0;
    enum http1_error err = HTTP1_OK;
    bool done = false, failed = false;
    for (size_t step = 0; off < tc->raw_len && !done && !failed; step++) {
        size_t n = next_piece(step);
        if (n == 0 || n > tc->raw_len - off)
            n = tc->raw_len - off;
        const char *piece = guarded_copy(tc->raw + off, n);
        bool piece_done = true;
        ssize_t ret = http1_chunked_scan(&c, piece, n, &lim, &piece_done, &err);
        if (ret < 0) {
            failed = true;
            break;
        }
        CHECK(tc, (size_t)ret <= n);
        CHECK(tc, piece_done || (size_t)ret == n);
        done = piece_done;
        off += (size_t)ret;
    }
    if (tc->err != HTTP1_OK) {
        if (!failed || err != tc->err)
            fail_msg("case \"%s\": got %s, want %s", tc->name,
                     failed ? http1_error_name(err) : "no error", http1_error_name(tc->err));
        return;
    }
    if (failed)
        fail_msg("case \"%s\": unexpected %s", tc->name, http1_error_name(err));
    if (tc->body_len) {
        CHECK(tc, done);
        CHECK(tc, off == tc->body_len);
        /* a finished scanner consumes nothing more */
        bool again = false;
        CHECK(tc, http1_chunked_scan(&c, "x", 1, &lim, &again, &err) == 0 && again);
    } else {
        CHECK(tc, !done);
        CHECK(tc, off == tc->raw_len);
    }
}

static size_t piece_whole(size_t step)
{
    (void)step;
    return 0;
}

static size_t piece_one(size_t step)
{
    (void)step;
    return 1;
}

/* Scripted sizes in the manner of wslay's feedseq. */
static size_t piece_script(size_t step)
{
    static const size_t script[] = { 1, 2, 3, 5, 7, 11, 4, 2, 1, 13 };
    return script[step % (sizeof(script) / sizeof(script[0]))];
}

static size_t piece_random(size_t step)
{
    (void)step;
    return 1 + rng_next() % 9;
}

static void test_chunked_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(chunk_cases) / sizeof(chunk_cases[0]); i++) {
        const struct chunk_case *tc = &chunk_cases[i];
        feed_chunked(tc, piece_whole);
        feed_chunked(tc, piece_one);
        feed_chunked(tc, piece_script);
        for (int round = 0; round < 50; round++)
            feed_chunked(tc, piece_random);
    }
}

/* A large chunk's data is skipped in one step, however it is split. */
static void test_chunked_large(void **state)
{
    (void)state;
    static char body[40000];
    int n = snprintf(body, sizeof(body), "8000\r\n");
    memset(body + n, 'x', 0x8000);
    size_t len = (size_t)n + 0x8000;
    len += (size_t)snprintf(body + len, sizeof(body) - len, "\r\n0\r\n\r\n");
    struct http1_limits lim = base_limits;
    struct http1_chunked c;
    http1_chunked_init(&c);
    bool done = false;
    enum http1_error err = HTTP1_OK;
    size_t off = 0;
    while (!done) {
        size_t piece = 1 + rng_next() % 5000;
        if (piece > len - off)
            piece = len - off;
        ssize_t ret = http1_chunked_scan(&c, guarded_copy(body + off, piece), piece, &lim,
                                         &done, &err);
        assert_true(ret >= 0);
        off += (size_t)ret;
        assert_true(off <= len);
    }
    assert_int_equal(off, len);
}

/* ---- character classes, checked byte by byte against the RFC grammar ----------------- */

static bool ref_tchar(int b)
{
    return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
           (b != 0 && strchr("!#$%&'*+-.^_`|~", b) != NULL);
}

static bool ref_value(int b)
{
    return b == '\t' || (b >= 0x20 && b <= 0x7e) || b >= 0x80;
}

static bool ref_host(int b)
{
    return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
           (b != 0 && strchr("-._~%!$&'()*+,;=", b) != NULL);
}

static ssize_t parse_request_text(const char *fmt, int b, struct http1_request *req,
                                  enum http1_error *err)
{
    static struct http1_header headers[HEADERS_CAP];
    char text[256];
    const char *marker = strchr(fmt, '?');
    size_t prefix = (size_t)(marker - fmt);
    memcpy(text, fmt, prefix);
    text[prefix] = (char)b;
    strcpy(text + prefix + 1, marker + 1);
    size_t len = strlen(fmt);
    return http1_parse_request(guarded_copy(text, len), len, 0, &base_limits, req, headers,
                               HEADERS_CAP, err);
}

static void test_byte_classes(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        struct http1_request req;
        enum http1_error err;
        bool ok;

        ok = parse_request_text("G?T / HTTP/1.1\r\nHost: a\r\n\r\n", b, &req, &err) > 0;
        if (ok != ref_tchar(b))
            fail_msg("method byte 0x%02x: ok=%d", b, ok);
        if (ok)
            assert_int_equal(req.method_len, 3);

        ok = parse_request_text("GET /a?b HTTP/1.1\r\nHost: a\r\n\r\n", b, &req, &err) > 0;
        if (ok != (b >= 0x21 && b <= 0x7e))
            fail_msg("target byte 0x%02x: ok=%d", b, ok);

        ok = parse_request_text("GET / HTTP/1.1\r\nHost: a\r\nX?Y: v\r\n\r\n", b, &req, &err) > 0;
        if (ok != (ref_tchar(b) || b == ':'))
            fail_msg("name byte 0x%02x: ok=%d", b, ok);
        if (ok && b != ':')
            assert_int_equal(req.msg.headers[1].name_len, 3);

        ok = parse_request_text("GET / HTTP/1.1\r\nHost: a\r\nX: a?b\r\n\r\n", b, &req, &err) > 0;
        if (ok != ref_value(b))
            fail_msg("value byte 0x%02x: ok=%d", b, ok);
        if (ok)
            assert_int_equal(req.msg.headers[1].value_len, 3);

        ok = parse_request_text("GET / HTTP/1.1\r\nHost: a?b\r\n\r\n", b, &req, &err) > 0;
        if (ok != ref_host(b))
            fail_msg("host byte 0x%02x: ok=%d", b, ok);

        char text[64];
        int n = snprintf(text, sizeof(text), "HTTP/1.1 200 O?K\r\nContent-Length: 0\r\n\r\n");
        text[14] = (char)b;
        struct http1_response resp;
        struct http1_header headers[4];
        ok = http1_parse_response(guarded_copy(text, (size_t)n), (size_t)n, 0, &base_limits,
                                  HTTP1_GET, &resp, headers, 4, &err) > 0;
        if (ok != ref_value(b))
            fail_msg("reason byte 0x%02x: ok=%d", b, ok);

        /* chunk extension name and trailer value */
        n = snprintf(text, sizeof(text), "1;a?b\r\nx\r\n0\r\nT: a?b\r\n\r\n");
        text[3] = (char)b;
        struct http1_chunked c;
        http1_chunked_init(&c);
        bool done = false;
        ok = http1_chunked_scan(&c, guarded_copy(text, (size_t)n), (size_t)n, &base_limits,
                                &done, &err) == n && done;
        if (ok != (ref_tchar(b) || b == '=' || b == ';'))
            fail_msg("extension byte 0x%02x: ok=%d", b, ok);
        n = snprintf(text, sizeof(text), "1\r\nx\r\n0\r\nT: a?b\r\n\r\n");
        text[13] = (char)b;
        http1_chunked_init(&c);
        ok = http1_chunked_scan(&c, guarded_copy(text, (size_t)n), (size_t)n, &base_limits,
                                &done, &err) == n && done;
        if (ok != ref_value(b))
            fail_msg("trailer byte 0x%02x: ok=%d", b, ok);
    }
}

/* ---- limits on incomplete input, resumption -------------------------------------------- */

static ssize_t parse_with(const char *text, size_t len, size_t prev_len,
                          const struct http1_limits *lim, size_t cap, enum http1_error *err)
{
    struct http1_header headers[HEADERS_CAP];
    struct http1_request req;
    *err = HTTP1_OK;
    return http1_parse_request(guarded_copy(text, len), len, prev_len, lim, &req, headers, cap,
                               err);
}

static void test_limits_fire_before_the_head_is_complete(void **state)
{
    (void)state;
    char text[512];
    struct http1_limits lim = base_limits;
    enum http1_error err;
    lim.max_request_line = 100;
    lim.max_head = 300;

    /* request line: 99 bytes without LF may still end in time, 100 cannot */
    memset(text, 'a', sizeof(text));
    memcpy(text, "GET /", 5);
    assert_int_equal(parse_with(text, 99, 0, &lim, HEADERS_CAP, &err), -2);
    assert_int_equal(parse_with(text, 100, 99, &lim, HEADERS_CAP, &err), -1);
    assert_int_equal(err, HTTP1_E_URI_TOO_LONG);
    assert_int_equal(parse_with(text, 400, 0, &lim, HEADERS_CAP, &err), -1);
    assert_int_equal(err, HTTP1_E_URI_TOO_LONG);

    /* head: 299 bytes without the final CRLF may still end in time, 300 cannot */
    int n = snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(text + n, 'v', sizeof(text) - (size_t)n);
    assert_int_equal(parse_with(text, 299, 0, &lim, HEADERS_CAP, &err), -2);
    assert_int_equal(parse_with(text, 300, 299, &lim, HEADERS_CAP, &err), -1);
    assert_int_equal(err, HTTP1_E_HEAD_TOO_LARGE);

    /* a head of exactly max_head bytes, then one more */
    memcpy(text + 296, "\r\n\r\n", 4);
    assert_int_equal(parse_with(text, 300, 0, &lim, HEADERS_CAP, &err), 300);
    memcpy(text + 296, "v\r\n\r\n", 5);
    assert_int_equal(parse_with(text, 301, 0, &lim, HEADERS_CAP, &err), -1);
    assert_int_equal(err, HTTP1_E_HEAD_TOO_LARGE);
}

static void test_header_array_bounds_fields(void **state)
{
    (void)state;
    static const char text[] = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    size_t len = sizeof(text) - 1;
    enum http1_error err;
    assert_int_equal(parse_with(text, len, 0, &base_limits, 3, &err), (ssize_t)len);
    assert_int_equal(parse_with(text, len, 0, &base_limits, 2, &err), -1);
    assert_int_equal(err, HTTP1_E_HEAD_TOO_LARGE);
    assert_int_equal(parse_with(text, len, 0, &base_limits, 0, &err), -1);
    assert_int_equal(err, HTTP1_E_HEAD_TOO_LARGE);
}

/* The end of the head may straddle the previous call's boundary at any offset. */
static void test_prev_len_at_every_split(void **state)
{
    (void)state;
    static const char text[] = "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nBODY";
    size_t head = sizeof(text) - 1 - 4;
    enum http1_error err;
    for (size_t first = 0; first < head; first++) {
        ssize_t ret = parse_with(text, first, 0, &base_limits, HEADERS_CAP, &err);
        assert_int_equal(ret, -2);
        for (size_t len = first + 1; len <= sizeof(text) - 1; len++) {
            ret = parse_with(text, len, first, &base_limits, HEADERS_CAP, &err);
            assert_int_equal(ret, len < head ? -2 : (ssize_t)head);
        }
    }
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Fed one byte at a time, a large head costs linear time: a parser that rescans from
 * the start on each call needs minutes for this instead of milliseconds. */
static void test_byte_by_byte_is_linear(void **state)
{
    (void)state;
    enum { HEAD = 1 << 19 };
    static struct http1_header headers[20000];
    char *text = malloc(HEAD);
    assert_non_null(text);
    size_t len = (size_t)snprintf(text, HEAD, "GET /%0200d HTTP/1.1\r\nHost: a\r\n", 0);
    while (len < HEAD - 64)
        len += (size_t)snprintf(text + len, HEAD - len, "X-Field-%05zu: some value\r\n",
                                len % 100000);
    memcpy(text + len, "\r\n", 2);
    len += 2;
    struct http1_limits lim = base_limits;
    lim.max_head = HEAD;
    lim.max_headers = 20000;
    struct http1_request req;
    enum http1_error err = HTTP1_OK;
    double start = seconds_now();
    ssize_t ret = -2;
    for (size_t k = 1; k <= len && ret == -2; k++)
        ret = http1_parse_request(text, k, k - 1, &lim, &req, headers, 20000, &err);
    double elapsed = seconds_now() - start;
    free(text);
    assert_int_equal(ret, (ssize_t)len);
    if (elapsed > 3.0)
        fail_msg("%zu single-byte calls took %.2f s", len, elapsed);
}

/* ---- small helpers --------------------------------------------------------------------- */

static void test_error_status_and_names(void **state)
{
    (void)state;
    assert_int_equal(http1_error_status(HTTP1_E_REQUEST_LINE), 400);
    assert_int_equal(http1_error_status(HTTP1_E_URI_TOO_LONG), 414);
    assert_int_equal(http1_error_status(HTTP1_E_HEAD_TOO_LARGE), 431);
    assert_int_equal(http1_error_status(HTTP1_E_CL_TE), 400);
    assert_int_equal(http1_error_status(HTTP1_E_TRANSFER_ENCODING), 400);
    assert_int_equal(http1_error_status(HTTP1_E_VERSION), 505);
    assert_int_equal(http1_error_status(HTTP1_E_BODY_TOO_LARGE), 413);
    assert_int_equal(http1_error_status(HTTP1_E_STATUS_LINE), 502);
    assert_string_equal(http1_error_name(HTTP1_E_CL_TE), "cl_te");
    assert_string_equal(http1_error_name(HTTP1_OK), "ok");
    assert_string_equal(http1_error_name(HTTP1_ERROR_COUNT), "unknown");
    for (int e = 0; e < HTTP1_ERROR_COUNT; e++) {
        const char *name = http1_error_name((enum http1_error)e);
        assert_non_null(name);
        for (const char *p = name; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || *p == '_' || (*p >= '0' && *p <= '9'));
        for (int other = 0; other < e; other++)
            assert_string_not_equal(name, http1_error_name((enum http1_error)other));
        int status = http1_error_status((enum http1_error)e);
        assert_true(status >= 200 && status <= 599);
    }
    assert_string_equal(http1_method_name(HTTP1_GET), "GET");
    assert_string_equal(http1_method_name(HTTP1_CONNECT), "CONNECT");
    assert_string_equal(http1_method_name(HTTP1_OTHER), "OTHER");
    assert_string_equal(http1_method_name(HTTP1_METHOD_COUNT), "OTHER");
}

static void test_names_and_lists(void **state)
{
    (void)state;
    struct http1_header h = { .name = "Content-LENGTH", .name_len = 14 };
    assert_true(http1_name_is(&h, "content-length"));
    assert_false(http1_name_is(&h, "content-lengt"));
    assert_false(http1_name_is(&h, "content-type"));

    static const char conn[] = " keep-alive ,\tUpgrade,,close ";
    assert_true(http1_list_has_token(conn, strlen(conn), "upgrade"));
    assert_true(http1_list_has_token(conn, strlen(conn), "close"));
    assert_true(http1_list_has_token(conn, strlen(conn), "keep-alive"));
    assert_false(http1_list_has_token(conn, strlen(conn), "keep"));
    assert_false(http1_list_has_token("upgrade2", 8, "upgrade"));
    assert_false(http1_list_has_token("", 0, "close"));

    static const char *const want[] = { "a", "", "b c", "" };
    static const char list[] = "a, ,\tb c ,";
    size_t pos = 0, count = 0;
    const char *tok;
    size_t tok_len;
    while (http1_list_next(list, strlen(list), &pos, &tok, &tok_len)) {
        assert_true(count < 4);
        assert_int_equal(tok_len, strlen(want[count]));
        assert_memory_equal(tok, want[count], tok_len);
        count++;
    }
    assert_int_equal(count, 4);
    pos = 0;
    assert_false(http1_list_next("", 0, &pos, &tok, &tok_len));
    pos = 0;
    assert_true(http1_list_next("x", 1, &pos, &tok, &tok_len));
    assert_false(http1_list_next("x", 1, &pos, &tok, &tok_len));
}

/* Field lines come back in order, trimmed, pointing into the buffer. */
static void test_header_contents(void **state)
{
    (void)state;
    static const char text[] =
        "GET /p HTTP/1.1\r\nHost:  h  \r\nX-Empty:\r\nX-Tabs:\t\tv a l\t\r\nCookie: a=b; c=d\r\n\r\n";
    struct http1_header headers[8];
    struct http1_request req;
    enum http1_error err = HTTP1_OK;
    size_t len = sizeof(text) - 1;
    const char *buf = guarded_copy(text, len);
    assert_int_equal(http1_parse_request(buf, len, 0, &base_limits, &req, headers, 8, &err),
                     (ssize_t)len);
    static const char *const names[] = { "Host", "X-Empty", "X-Tabs", "Cookie" };
    static const char *const values[] = { "h", "", "v a l", "a=b; c=d" };
    assert_int_equal(req.msg.num_headers, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_true(text_is(headers[i].name, headers[i].name_len, names[i]));
        assert_true(text_is(headers[i].value, headers[i].value_len, values[i]));
    }
    assert_true(text_is(req.host, req.host_len, "h"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_vectors),
        cmocka_unit_test(test_response_vectors),
        cmocka_unit_test(test_chunked_vectors),
        cmocka_unit_test(test_chunked_large),
        cmocka_unit_test(test_byte_classes),
        cmocka_unit_test(test_limits_fire_before_the_head_is_complete),
        cmocka_unit_test(test_header_array_bounds_fields),
        cmocka_unit_test(test_prev_len_at_every_split),
        cmocka_unit_test(test_byte_by_byte_is_linear),
        cmocka_unit_test(test_error_status_and_names),
        cmocka_unit_test(test_names_and_lists),
        cmocka_unit_test(test_header_contents),
    };
    return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
