/* Rewriting heads on their way through: hop-by-hop fields out (RFC 9110 §7.6.1),
 * forwarding fields in. Each head is written once into one slice. */
#include "proxy/worker_internal.h"

#include <stdio.h>
#include <string.h>

#define VIA_TOKEN "1.1 ringside"

enum { MAX_CONNECTION_TOKENS = 16 };

struct writer {
    char *p;
    char *end;
};

static void put(struct writer *wr, const char *s, size_t len)
{
    /* The slice is sized from the input up front; the check is a last guard. */
    if ((size_t)(wr->end - wr->p) < len)
        len = (size_t)(wr->end - wr->p);
    if (len == 0)
        return;
    memcpy(wr->p, s, len);
    wr->p += len;
}

static void puts_lit(struct writer *wr, const char *s)
{
    put(wr, s, strlen(s));
}

static void put_field(struct writer *wr, const char *name, size_t name_len, const char *value,
                      size_t value_len)
{
    put(wr, name, name_len);
    put(wr, ": ", 2);
    put(wr, value, value_len);
    put(wr, "\r\n", 2);
}

/* Field names listed in the Connection fields (hop-by-hop by declaration). */
struct conn_tokens {
    const char *tok[MAX_CONNECTION_TOKENS];
    size_t len[MAX_CONNECTION_TOKENS];
    unsigned n;
};

static void collect_connection_tokens(const struct http1_message *m, struct conn_tokens *ct)
{
    ct->n = 0;
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (!http1_name_is(h, "connection"))
            continue;
        size_t pos = 0;
        const char *tok;
        size_t tok_len;
        while (http1_list_next(h->value, h->value_len, &pos, &tok, &tok_len))
            if (tok_len > 0 && ct->n < MAX_CONNECTION_TOKENS) {
                ct->tok[ct->n] = tok;
                ct->len[ct->n++] = tok_len;
            }
    }
}

static bool named_by_connection(const struct http1_header *h, const struct conn_tokens *ct)
{
    for (unsigned i = 0; i < ct->n; i++)
        if (ct->len[i] == h->name_len && strncasecmp(ct->tok[i], h->name, h->name_len) == 0)
            return true;
    return false;
}

static bool is_hop_by_hop(const struct http1_header *h)
{
    switch (h->name_len) {
    case 2:
        return http1_name_is(h, "te");
    case 7:
        return http1_name_is(h, "upgrade");
    case 10:
        return http1_name_is(h, "connection") || http1_name_is(h, "keep-alive");
    case 16:
        return http1_name_is(h, "proxy-connection");
    }
    return false;
}

static size_t headers_bytes(const struct http1_message *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->num_headers; i++)
        n += m->headers[i].name_len + m->headers[i].value_len + 4;
    return n;
}

/* Append the values of every field called lower_name, comma-separated, then extra. */
static void put_merged(struct writer *wr, const struct http1_message *m, const char *name,
                       const char *lower_name, const char *extra, size_t extra_len)
{
    puts_lit(wr, name);
    put(wr, ": ", 2);
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (h->value_len == 0 || !http1_name_is(h, lower_name))
            continue;
        put(wr, h->value, h->value_len);
        put(wr, ", ", 2);
    }
    put(wr, extra, extra_len);
    put(wr, "\r\n", 2);
}

struct slice *forward_request_head(const struct http1_request *req, const struct forward_info *fi)
{
    const struct http1_message *m = &req->msg;
    size_t extra_len = fi->extra != NULL ? strlen(fi->extra) : 0;
    size_t cap = req->method_len + req->target_len + headers_bytes(m) + strlen(fi->peer) +
                 strlen(fi->request_id) + extra_len + 256;
    struct slice *s = slice_new(cap);
    if (s == NULL)
        return NULL;
    struct writer wr = {s->data, s->data + cap};
    struct conn_tokens ct;
    collect_connection_tokens(m, &ct);

    put(&wr, req->method_name, req->method_len);
    put(&wr, " ", 1);
    put(&wr, req->target, req->target_len);
    puts_lit(&wr, fi->upstream_minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");

    bool have_proto = false, have_fwd_host = false;
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (is_hop_by_hop(h) || named_by_connection(h, &ct))
            continue;
        /* ringside answered 100-continue itself; the backend gets the whole body. */
        if (http1_name_is(h, "expect") && req->expect_continue)
            continue;
        if (http1_name_is(h, "x-forwarded-for") || http1_name_is(h, "via"))
            continue; /* merged below */
        if (http1_name_is(h, "x-request-id"))
            continue; /* written below, once, with the id ringside logs */
        if (fi->drop_conditionals &&
            (http1_name_is(h, "if-none-match") || http1_name_is(h, "if-modified-since")))
            continue;
        have_proto |= http1_name_is(h, "x-forwarded-proto");
        have_fwd_host |= http1_name_is(h, "x-forwarded-host");
        put_field(&wr, h->name, h->name_len, h->value, h->value_len);
    }
    put_merged(&wr, m, "X-Forwarded-For", "x-forwarded-for", fi->peer, strlen(fi->peer));
    if (!have_proto)
        puts_lit(&wr, "X-Forwarded-Proto: http\r\n");
    if (!have_fwd_host && req->host != NULL)
        put_field(&wr, "X-Forwarded-Host", 16, req->host, req->host_len);
    put_merged(&wr, m, "Via", "via", VIA_TOKEN, sizeof(VIA_TOKEN) - 1);
    put_field(&wr, "X-Request-Id", 12, fi->request_id, strlen(fi->request_id));
    put(&wr, fi->extra, extra_len);
    if (fi->upstream_minor == 0)
        puts_lit(&wr, "Connection: keep-alive\r\n");
    put(&wr, "\r\n", 2);
    s->len = (uint32_t)(wr.p - s->data);
    return s;
}

struct slice *forward_response_head(const struct http1_response *resp, const char *request_id,
                                    const char *connection, const char *extra)
{
    const struct http1_message *m = &resp->msg;
    size_t extra_len = extra != NULL ? strlen(extra) : 0;
    size_t cap = resp->reason_len + headers_bytes(m) + strlen(request_id) + extra_len + 128;
    struct slice *s = slice_new(cap);
    if (s == NULL)
        return NULL;
    struct writer wr = {s->data, s->data + cap};
    struct conn_tokens ct;
    collect_connection_tokens(m, &ct);

    char status[16];
    int n = snprintf(status, sizeof(status), "HTTP/1.1 %03d ", resp->status);
    put(&wr, status, (size_t)n);
    put(&wr, resp->reason, resp->reason_len);
    put(&wr, "\r\n", 2);
    bool have_id = false;
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (is_hop_by_hop(h) || named_by_connection(h, &ct) || http1_name_is(h, "via"))
            continue;
        have_id |= http1_name_is(h, "x-request-id");
        put_field(&wr, h->name, h->name_len, h->value, h->value_len);
    }
    put_merged(&wr, m, "Via", "via", VIA_TOKEN, sizeof(VIA_TOKEN) - 1);
    if (!have_id)
        put_field(&wr, "X-Request-Id", 12, request_id, strlen(request_id));
    put(&wr, extra, extra_len);
    if (connection != NULL) {
        puts_lit(&wr, "Connection: ");
        puts_lit(&wr, connection);
        put(&wr, "\r\n", 2);
    }
    put(&wr, "\r\n", 2);
    s->len = (uint32_t)(wr.p - s->data);
    return s;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    }
    return "Error";
}

struct slice *forward_error_response(int status, const char *body, const char *request_id,
                                     bool close)
{
    size_t body_len = strlen(body);
    size_t cap = body_len + strlen(request_id) + 256;
    struct slice *s = slice_new(cap);
    if (s == NULL)
        return NULL;
    int n = snprintf(s->data, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nVia: " VIA_TOKEN "\r\n%s%s%s%s\r\n%s",
                     status, reason_phrase(status), body_len,
                     request_id[0] ? "X-Request-Id: " : "", request_id,
                     request_id[0] ? "\r\n" : "", close ? "Connection: close\r\n" : "", body);
    s->len = (uint32_t)((size_t)n < cap ? (size_t)n : cap - 1);
    return s;
}
