/* HTTP/1.1 message parsing (RFC 9112): request and response heads, chunked bodies.
 *
 * The parser is zero-copy: every pointer it returns points into the caller's buffer,
 * which must outlive the parsed message. It refuses anything ambiguous (the request
 * smuggling vectors) instead of guessing, so what it accepts can be forwarded as is.
 * It does no I/O and allocates nothing. */
#ifndef RINGSIDE_HTTP1_H
#define RINGSIDE_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum http1_method {
    HTTP1_GET,
    HTTP1_HEAD,
    HTTP1_POST,
    HTTP1_PUT,
    HTTP1_DELETE,
    HTTP1_PATCH,
    HTTP1_OPTIONS,
    HTTP1_CONNECT,
    HTTP1_TRACE,
    HTTP1_OTHER, /* a valid token we have no name for */
    HTTP1_METHOD_COUNT
};

/* Why a message was refused. Each maps to a status code and a metrics label. */
enum http1_error {
    HTTP1_OK = 0,
    HTTP1_E_REQUEST_LINE,     /* 400 malformed request line */
    HTTP1_E_URI_TOO_LONG,     /* 414 request line over max_request_line */
    HTTP1_E_HEAD_TOO_LARGE,   /* 431 head over max_head, or more than max_headers fields */
    HTTP1_E_HEADER_SYNTAX,    /* 400 invalid field name token, whitespace before colon, bad value byte */
    HTTP1_E_OBS_FOLD,         /* 400 obsolete line folding */
    HTTP1_E_BARE_CR,          /* 400 CR not followed by LF */
    HTTP1_E_CL_TE,            /* 400 Content-Length together with Transfer-Encoding */
    HTTP1_E_CONTENT_LENGTH,   /* 400 malformed, or duplicates that differ */
    HTTP1_E_TRANSFER_ENCODING,/* 400 anything but "chunked" as the final coding; 501 is not used */
    HTTP1_E_VERSION,          /* 505 not HTTP/1.0 or HTTP/1.1 */
    HTTP1_E_HOST,             /* 400 HTTP/1.1 request without Host, or several Host fields */
    HTTP1_E_CHUNK,            /* 400 bad chunk size line or missing CRLF after chunk data */
    HTTP1_E_CHUNK_EXT,        /* 400 chunk extensions longer than max_chunk_ext */
    HTTP1_E_TRAILERS,         /* 400/431 malformed or oversize trailer section */
    HTTP1_E_BODY_TOO_LARGE,   /* 413 body over max_body */
    HTTP1_E_STATUS_LINE,      /* response only: malformed status line */
    HTTP1_ERROR_COUNT
};

/* The status code a client is answered with for this error. */
int http1_error_status(enum http1_error err);
/* A short snake_case name for metrics labels and logs, e.g. "cl_te"; never NULL. */
const char *http1_error_name(enum http1_error err);
/* The method's name ("GET"...; "OTHER" for HTTP1_OTHER). */
const char *http1_method_name(enum http1_method m);

struct http1_limits {
    size_t max_request_line; /* request line incl. CRLF; over it: HTTP1_E_URI_TOO_LONG */
    size_t max_head;         /* whole head incl. the final CRLF; over it: HTTP1_E_HEAD_TOO_LARGE */
    size_t max_headers;      /* field lines; also bounded by the caller's array */
    size_t max_chunk_ext;    /* bytes of extensions on one chunk size line */
    uint64_t max_body;       /* decoded body bytes; 0 means no limit */
};

struct http1_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing whitespace trimmed */
    size_t value_len;
};

enum http1_framing {
    HTTP1_BODY_NONE,       /* no body: no CL/TE in a request; HEAD/1xx/204/304 responses */
    HTTP1_BODY_LENGTH,     /* content_length bytes follow the head */
    HTTP1_BODY_CHUNKED,    /* chunked; scan it with http1_chunked_scan */
    HTTP1_BODY_UNTIL_CLOSE /* responses only: body ends when the connection closes */
};

/* What both heads share. */
struct http1_message {
    int minor_version; /* 0 or 1 */
    struct http1_header *headers; /* caller's array, filled in order */
    size_t num_headers;
    enum http1_framing framing;
    uint64_t content_length;    /* when framing is HTTP1_BODY_LENGTH */
    bool keep_alive;            /* from the version and the Connection field */
    bool connection_upgrade;    /* Connection names "upgrade" and an Upgrade field exists */
    /* Index into headers[] of the first field of each kind, or -1. */
    int connection_index;
};

struct http1_request {
    struct http1_message msg;
    enum http1_method method;
    const char *method_name; /* as sent */
    size_t method_len;
    const char *target;      /* request-target as sent */
    size_t target_len;
    const char *host;        /* Host field value, NULL when absent (HTTP/1.0) */
    size_t host_len;
    bool expect_continue;    /* Expect: 100-continue */
};

struct http1_response {
    struct http1_message msg;
    int status;
    const char *reason;
    size_t reason_len;
};

/* Parse a request head at the start of buf[0, len).
 *
 * prev_len is how many of these bytes an earlier call already saw and found
 * incomplete (0 the first time): the search for the end of the head resumes there, so
 * feeding a head in small pieces stays linear. headers/max_headers is the caller's
 * array. The request is filled only on success.
 *
 * Returns the length of the head (> 0, the body starts there); -2 when the head is not
 * complete yet and still within limits; -1 on error with *err set. */
ssize_t http1_parse_request(const char *buf, size_t len, size_t prev_len,
                            const struct http1_limits *lim, struct http1_request *req,
                            struct http1_header *headers, size_t max_headers,
                            enum http1_error *err);

/* Parse a response head; request_method decides framing (a response to HEAD, 1xx, 204
 * and 304 have no body; a 2xx to CONNECT neither). Returns as http1_parse_request. */
ssize_t http1_parse_response(const char *buf, size_t len, size_t prev_len,
                             const struct http1_limits *lim, enum http1_method request_method,
                             struct http1_response *resp, struct http1_header *headers,
                             size_t max_headers, enum http1_error *err);

/* Incremental scanner of a chunked body. It does not decode in place: the proxy
 * forwards the bytes verbatim and uses the scanner to validate them and find where the
 * message ends (after the last chunk and the trailer section). */
struct http1_chunked {
    int _state;
    uint64_t _remaining;   /* data bytes left in the current chunk */
    uint64_t _body_bytes;  /* decoded data so far, checked against max_body */
    size_t _line_len;      /* bytes of the current size line or trailer section */
    bool _size_digits;
};

void http1_chunked_init(struct http1_chunked *c);

/* Scan buf[0, len), the next bytes of a chunked body. Returns how many bytes belong to
 * the body (<= len); *done is set when they end the message, so the rest of buf is the
 * next message. Returns -1 on malformed input with *err set. */
ssize_t http1_chunked_scan(struct http1_chunked *c, const char *buf, size_t len,
                           const struct http1_limits *lim, bool *done, enum http1_error *err);

/* The same, also handing each run of chunk data (the decoded payload) to on_data. */
typedef void http1_chunk_data_fn(void *arg, const char *data, size_t len);
ssize_t http1_chunked_decode(struct http1_chunked *c, const char *buf, size_t len,
                             const struct http1_limits *lim, bool *done, enum http1_error *err,
                             http1_chunk_data_fn *on_data, void *arg);

/* Case-insensitive comparison of a field name with a lowercase literal. */
bool http1_name_is(const struct http1_header *h, const char *lower_name);

/* True when a comma-separated field value (e.g. Connection) lists token, ignoring case
 * and optional whitespace. */
bool http1_list_has_token(const char *value, size_t len, const char *lower_token);

/* Iterate the tokens of a comma-separated value: start with *pos = 0; returns false at
 * the end; otherwise sets *tok and *tok_len (trimmed, may be empty for ",,"). */
bool http1_list_next(const char *value, size_t len, size_t *pos, const char **tok,
                     size_t *tok_len);

#endif
