/* ringside-origin: the HTTP/1.1 backend that the end-to-end tests and the demo run
 * behind ringside.
 *
 * One thread per connection with blocking sockets: obviously correct beats fast here.
 * It speaks keep-alive, answers pipelined requests in order, reads Content-Length and
 * chunked bodies, honours Expect: 100-continue, and offers endpoints that misbehave on
 * purpose (close mid-body, close without answering, slow answers) so tests can drive
 * the proxy's failure paths. /stats records what actually arrived, so a test can prove
 * that a request the proxy refused was never forwarded. /resp/<anything> answers any
 * method as its query says (status, fields, body, validators, delay) and counts what
 * arrived per path (/resp-count), so cache tests can see every request that got past
 * the cache.
 *
 * usage: ringside-origin [--listen HOST:PORT] [--demo] [--idle-timeout-ms N]
 * Prints "listening HOST:PORT" on stdout once bound. SIGTERM/SIGINT: exit 0. */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    ORIGIN_MAX_HEAD = 64 * 1024,     /* over it: 431 */
    ORIGIN_MAX_HEADERS = 128,
    ORIGIN_MAX_LINE = 8 * 1024,      /* chunk size and trailer lines */
    ORIGIN_TAIL = 50,                /* request targets kept for /stats */
    ORIGIN_TAIL_ENTRY = 256,         /* bytes kept of each */
    ORIGIN_PATTERN_BLOCK = 64 * 1024,
    ORIGIN_LINGER_MS = 1000,         /* reading after our FIN, so the peer gets our bytes */
    ORIGIN_THREAD_STACK = 512 * 1024,
};
#define ORIGIN_MAX_BODY ((uint64_t)1 << 30)
#define ORIGIN_MAX_BYTES ((uint64_t)1 << 36) /* /bytes and /until-close */

/* Set once in main before any thread starts, read-only afterwards. */
static struct {
    bool demo;
    int idle_timeout_ms; /* -1: wait for the next request forever */
} options = {.idle_timeout_ms = -1};

/* 'a' + i % 26, long enough to send ORIGIN_PATTERN_BLOCK bytes from any phase. */
static char pattern[ORIGIN_PATTERN_BLOCK + 26];

/* ---- what arrived, for /stats ---------------------------------------------------- */

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t stats_next_serial;  /* never reset: names a connection in /count */
static uint64_t stats_connections;  /* since start or the last reset */
static uint64_t stats_requests;
static char stats_tail[ORIGIN_TAIL][ORIGIN_TAIL_ENTRY];
static size_t stats_tail_next, stats_tail_count;

static uint64_t stats_connection_accepted(void)
{
    pthread_mutex_lock(&stats_lock);
    uint64_t serial = ++stats_next_serial;
    stats_connections++;
    pthread_mutex_unlock(&stats_lock);
    return serial;
}

/* Record one request (or the first line of something that was not one). Bytes that are
 * not printable ASCII are stored as '?' so /stats stays valid JSON text. */
static void stats_request(const char *what, size_t len)
{
    pthread_mutex_lock(&stats_lock);
    stats_requests++;
    char *slot = stats_tail[stats_tail_next];
    size_t n = len < ORIGIN_TAIL_ENTRY - 1 ? len : ORIGIN_TAIL_ENTRY - 1;
    for (size_t i = 0; i < n; i++)
        slot[i] = what[i] >= 0x20 && what[i] < 0x7f ? what[i] : '?';
    slot[n] = '\0';
    stats_tail_next = (stats_tail_next + 1) % ORIGIN_TAIL;
    if (stats_tail_count < ORIGIN_TAIL)
        stats_tail_count++;
    pthread_mutex_unlock(&stats_lock);
}

static void stats_reset(void)
{
    pthread_mutex_lock(&stats_lock);
    stats_connections = 0;
    stats_requests = 0;
    stats_tail_next = 0;
    stats_tail_count = 0;
    pthread_mutex_unlock(&stats_lock);
}

/* ---- growable string ------------------------------------------------------------ */

/* A failed allocation sets failed and turns later appends into no-ops; the sender
 * checks failed once. */
struct sbuf {
    char *data;
    size_t len, cap;
    bool failed;
};

static void sb_reserve(struct sbuf *sb, size_t more)
{
    if (sb->failed || sb->len + more <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + more)
        cap *= 2;
    char *data = realloc(sb->data, cap);
    if (!data) {
        sb->failed = true;
        return;
    }
    sb->data = data;
    sb->cap = cap;
}

static void sb_append(struct sbuf *sb, const void *p, size_t n)
{
    sb_reserve(sb, n);
    if (sb->failed)
        return;
    memcpy(sb->data + sb->len, p, n);
    sb->len += n;
}

static void sb_str(struct sbuf *sb, const char *s)
{
    sb_append(sb, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void sb_printf(struct sbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->failed = true;
        return;
    }
    sb_reserve(sb, (size_t)n + 1);
    if (sb->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

/* A JSON string. Bytes >= 0x80 become \u00XX (read as Latin-1) so the output is valid
 * JSON whatever a client sent; a test recovers the bytes with .encode("latin-1"). */
static void sb_json_string(struct sbuf *sb, const char *s, size_t n)
{
    sb_append(sb, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            sb_append(sb, esc, 2);
        } else if (ch < 0x20 || ch >= 0x7f) {
            sb_printf(sb, "\\u%04x", ch);
        } else {
            sb_append(sb, &s[i], 1);
        }
    }
    sb_append(sb, "\"", 1);
}

static void sb_free(struct sbuf *sb)
{
    free(sb->data);
    *sb = (struct sbuf){0};
}

/* ---- socket I/O ------------------------------------------------------------------ */

static int send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Close after sending FIN and reading what the peer still sends (briefly), so a
 * response is not destroyed by a reset caused by unread request bytes. */
static void close_gracefully(int fd)
{
    if (shutdown(fd, SHUT_WR) == 0) {
        char sink[4096];
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            long waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
            if (waited >= ORIGIN_LINGER_MS)
                break;
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (poll(&pfd, 1, (int)(ORIGIN_LINGER_MS - waited)) <= 0)
                break;
            if (recv(fd, sink, sizeof sink, 0) <= 0)
                break;
        }
    }
    close(fd);
}

/* ---- one client connection ------------------------------------------------------- */

struct conn {
    int fd;
    uint64_t serial;
    uint64_t requests; /* answered or being answered on this connection */
    char *buf;         /* unread bytes are buf[start, end) */
    size_t start, end, cap;
};

/* Read more into the buffer. Returns bytes read (> 0), 0 on EOF, -1 on error or when
 * the buffer may not grow further, -2 when timeout_ms (>= 0) passed without data. */
static ssize_t conn_fill(struct conn *c, int timeout_ms)
{
    if (c->start == c->end)
        c->start = c->end = 0;
    if (c->end == c->cap && c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16 * 1024;
        if (cap > 2 * ORIGIN_MAX_HEAD)
            return -1;
        char *buf = realloc(c->buf, cap);
        if (!buf)
            return -1;
        c->buf = buf;
        c->cap = cap;
    }
    if (timeout_ms >= 0) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int ready;
        while ((ready = poll(&pfd, 1, timeout_ms)) < 0 && errno == EINTR)
            ;
        if (ready == 0)
            return -2;
        if (ready < 0)
            return -1;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->end, c->cap - c->end, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0)
            c->end += (size_t)n;
        return n;
    }
}

/* Copy n body bytes into dst: first what is buffered, then straight from the socket. */
static int conn_read_exact(struct conn *c, char *dst, size_t n)
{
    size_t buffered = c->end - c->start;
    size_t take = buffered < n ? buffered : n;
    memcpy(dst, c->buf + c->start, take);
    c->start += take;
    while (take < n) {
        ssize_t got = recv(c->fd, dst + take, n - take, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        take += (size_t)got;
    }
    return 0;
}

/* Read one CRLF-terminated line (chunk size or trailer). Returns its length without
 * the CRLF, with *line pointing into the buffer until the next read, or -1. */
static ssize_t conn_read_line(struct conn *c, const char **line)
{
    size_t scanned = 0;
    for (;;) {
        char *p = c->buf + c->start;
        size_t avail = c->end - c->start;
        for (size_t i = scanned ? scanned - 1 : 0; i + 1 < avail; i++) {
            if (p[i] == '\r' && p[i + 1] == '\n') {
                *line = p;
                c->start += i + 2;
                return (ssize_t)i;
            }
        }
        scanned = avail;
        if (avail > ORIGIN_MAX_LINE || conn_fill(c, -1) <= 0)
            return -1;
    }
}

struct header {
    const char *name;  /* NUL-terminated, inside request.head */
    const char *value; /* trimmed, NUL-terminated */
};

struct request {
    char *head; /* owned copy of the head; the strings below point into it */
    const char *method;
    const char *target;
    const char *version;
    int minor;
    struct header headers[ORIGIN_MAX_HEADERS];
    size_t num_headers;
    char *body; /* owned */
    size_t body_len;
    bool is_head;
    bool keep_alive;
};

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static const char *request_header(const struct request *r, const char *name)
{
    for (size_t i = 0; i < r->num_headers; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* True when the comma-separated value lists token (case-insensitive). */
static bool list_has_token(const char *value, const char *token)
{
    size_t token_len = strlen(token);
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == token_len && strncasecmp(start, token, token_len) == 0)
            return true;
    }
    return false;
}

/* Split the head copy in place: NULs end the method, target, version, names and values.
 * Returns 0, or -1 when the head is not a request we accept. */
static int request_parse_head(struct request *r, char *head)
{
    char *line_end = strstr(head, "\r\n");
    if (!line_end)
        return -1;
    *line_end = '\0';
    char *sp1 = strchr(head, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 == head || sp2 == sp1 + 1 || strchr(sp2 + 1, ' '))
        return -1;
    *sp1 = *sp2 = '\0';
    for (const char *m = head; *m; m++)
        if (!is_tchar((unsigned char)*m))
            return -1;
    for (const char *t = sp1 + 1; *t; t++)
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t == 0x7f)
            return -1;
    const char *version = sp2 + 1;
    if (strcmp(version, "HTTP/1.1") == 0)
        r->minor = 1;
    else if (strcmp(version, "HTTP/1.0") == 0)
        r->minor = 0;
    else
        return -1;
    r->method = head;
    r->target = sp1 + 1;
    r->version = version;

    char *line = line_end + 2;
    while (*line) { /* the head copy ends after the last field's CRLF */
        line_end = strstr(line, "\r\n");
        if (!line_end || r->num_headers == ORIGIN_MAX_HEADERS)
            return -1;
        *line_end = '\0';
        char *colon = strchr(line, ':');
        if (!colon || colon == line)
            return -1; /* also refuses obs-fold: a continuation starts with SP/HTAB */
        *colon = '\0';
        for (const char *n = line; *n; n++)
            if (!is_tchar((unsigned char)*n))
                return -1;
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        char *end = line_end;
        while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *end = '\0';
        for (const char *v = value; *v; v++)
            if (((unsigned char)*v < 0x20 && *v != '\t') || (unsigned char)*v == 0x7f)
                return -1;
        r->headers[r->num_headers++] = (struct header){.name = line, .value = value};
        line = line_end + 2;
    }
    r->is_head = strcmp(r->method, "HEAD") == 0;
    const char *connection = request_header(r, "Connection");
    if (r->minor == 1)
        r->keep_alive = !connection || !list_has_token(connection, "close");
    else
        r->keep_alive = connection && list_has_token(connection, "keep-alive");
    return 0;
}

/* The length of the target's path, before any query. */
static size_t path_len(const char *target)
{
    return strcspn(target, "?");
}

static bool path_is(const struct request *r, const char *path)
{
    size_t n = path_len(r->target);
    return n == strlen(path) && strncmp(r->target, path, n) == 0;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Find the nth (0-based) occurrence of key in the query and percent-decode its value
 * ('+' is a space) into out. Returns the decoded length, or -1 when absent or too long. */
static ssize_t query_param(const char *target, const char *key, size_t nth, char *out,
                           size_t out_size)
{
    const char *q = strchr(target, '?');
    if (!q)
        return -1;
    size_t key_len = strlen(key);
    for (const char *p = q + 1; *p;) {
        const char *end = p + strcspn(p, "&");
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *name_end = eq ? eq : end;
        if ((size_t)(name_end - p) == key_len && strncmp(p, key, key_len) == 0 && nth-- == 0) {
            size_t n = 0;
            for (const char *v = eq ? eq + 1 : end; v < end; v++) {
                if (n + 1 >= out_size)
                    return -1;
                if (*v == '%' && end - v >= 3 && hex_value(v[1]) >= 0 && hex_value(v[2]) >= 0) {
                    out[n++] = (char)(hex_value(v[1]) * 16 + hex_value(v[2]));
                    v += 2;
                } else {
                    out[n++] = *v == '+' ? ' ' : *v;
                }
            }
            out[n] = '\0';
            return (ssize_t)n;
        }
        p = *end ? end + 1 : end;
    }
    return -1;
}

/* A decimal query parameter; def when absent. Returns -1 when malformed or > max. */
static int query_u64(const char *target, const char *key, uint64_t def, uint64_t max,
                     uint64_t *value)
{
    char text[32];
    if (query_param(target, key, 0, text, sizeof text) < 0) {
        *value = def;
        return 0;
    }
    if (text[0] < '0' || text[0] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *value = v;
    return 0;
}

/* ---- responses ------------------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

static bool status_has_body(int status)
{
    return status != 204 && status != 304;
}

static void head_start(struct sbuf *sb, int status)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    sb_printf(sb, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: ringside-origin\r\n", status,
              reason_phrase(status), date);
}

static void head_connection(struct sbuf *sb, const struct request *r)
{
    if (!r->keep_alive)
        sb_str(sb, "Connection: close\r\n");
    else if (r->minor == 0)
        sb_str(sb, "Connection: keep-alive\r\n");
}

/* What the connection does after a response. */
enum next {
    NEXT_KEEP,  /* read the next request (or close gracefully if not keep-alive) */
    NEXT_CLOSE, /* close gracefully */
    NEXT_ABORT, /* close now, nothing more is sent */
};

/* A complete response with a Content-Length body. extra holds whole header lines
 * ("Name: value\r\n"...) or is NULL. */
static enum next respond(struct conn *c, const struct request *r, int status,
                         const char *content_type, const char *extra, const void *body,
                         size_t body_len)
{
    struct sbuf sb = {0};
    head_start(&sb, status);
    if (status_has_body(status)) {
        if (content_type)
            sb_printf(&sb, "Content-Type: %s\r\n", content_type);
        sb_printf(&sb, "Content-Length: %zu\r\n", body_len);
    }
    if (extra)
        sb_str(&sb, extra);
    head_connection(&sb, r);
    sb_str(&sb, "\r\n");
    bool send_body = !r->is_head && status_has_body(status) && body_len > 0;
    /* One send for small responses: fewer segments, no Nagle interplay. */
    if (send_body && body_len <= ORIGIN_PATTERN_BLOCK) {
        sb_append(&sb, body, body_len);
        send_body = false;
    }
    int rc = sb.failed ? -1 : send_all(c->fd, sb.data, sb.len);
    sb_free(&sb);
    if (rc == 0 && send_body)
        rc = send_all(c->fd, body, body_len);
    if (rc != 0)
        return NEXT_ABORT;
    return r->keep_alive ? NEXT_KEEP : NEXT_CLOSE;
}

static enum next respond_text(struct conn *c, const struct request *r, int status,
                              const char *text)
{
    return respond(c, r, status, "text/plain", NULL, text, strlen(text));
}

static enum next respond_json(struct conn *c, const struct request *r, struct sbuf *json,
                              const char *extra)
{
    if (json->failed)
        return respond_text(c, r, 500, "out of memory\n");
    return respond(c, r, 200, "application/json", extra, json->data, json->len);
}

/* Send the pattern bytes [offset, offset + len). */
static int send_pattern(int fd, uint64_t offset, uint64_t len)
{
    while (len > 0) {
        size_t n = len < ORIGIN_PATTERN_BLOCK ? (size_t)len : ORIGIN_PATTERN_BLOCK;
        if (send_all(fd, pattern + offset % 26, n) != 0)
            return -1;
        offset += n;
        len -= n;
    }
    return 0;
}

/* ---- endpoints -------------------------------------------------------------------- */

static enum next handle_count(struct conn *c, const struct request *r)
{
    pthread_mutex_lock(&stats_lock);
    uint64_t conns = stats_connections;
    pthread_mutex_unlock(&stats_lock);
    struct sbuf json = {0};
    sb_printf(&json, "{\"conn\":%" PRIu64 ",\"req\":%" PRIu64 ",\"conns\":%" PRIu64 "}\n",
              c->serial, c->requests, conns);
    enum next next = respond_json(c, r, &json, NULL);
    sb_free(&json);
    return next;
}

static enum next handle_echo(struct conn *c, const struct request *r)
{
    uint64_t hash = 0xcbf29ce484222325u; /* FNV-1a 64 */
    for (size_t i = 0; i < r->body_len; i++) {
        hash ^= (unsigned char)r->body[i];
        hash *= 0x100000001b3u;
    }
    struct sbuf json = {0};
    sb_str(&json, "{\"method\":");
    sb_json_string(&json, r->method, strlen(r->method));
    sb_str(&json, ",\"target\":");
    sb_json_string(&json, r->target, strlen(r->target));
    sb_str(&json, ",\"version\":");
    sb_json_string(&json, r->version, strlen(r->version));
    sb_str(&json, ",\"headers\":[");
    for (size_t i = 0; i < r->num_headers; i++) {
        sb_str(&json, i ? ",[" : "[");
        sb_json_string(&json, r->headers[i].name, strlen(r->headers[i].name));
        sb_str(&json, ",");
        sb_json_string(&json, r->headers[i].value, strlen(r->headers[i].value));
        sb_str(&json, "]");
    }
    sb_printf(&json, "],\"body_length\":%zu,\"body_fnv1a64\":\"%016" PRIx64 "\"}\n",
              r->body_len, hash);
    enum next next = respond_json(c, r, &json, NULL);
    sb_free(&json);
    return next;
}

static enum next handle_echo_body(struct conn *c, const struct request *r)
{
    const char *type = request_header(r, "Content-Type");
    return respond(c, r, 200, type ? type : "application/octet-stream", NULL, r->body,
                   r->body_len);
}

static enum next handle_bytes(struct conn *c, const struct request *r)
{
    uint64_t n;
    if (query_u64(r->target, "n", 0, ORIGIN_MAX_BYTES, &n) != 0)
        return respond_text(c, r, 400, "bad n\n");
    struct sbuf sb = {0};
    head_start(&sb, 200);
    sb_printf(&sb, "Content-Type: application/octet-stream\r\nContent-Length: %" PRIu64 "\r\n", n);
    head_connection(&sb, r);
    sb_str(&sb, "\r\n");
    int rc = sb.failed ? -1 : send_all(c->fd, sb.data, sb.len);
    sb_free(&sb);
    if (rc == 0 && !r->is_head)
        rc = send_pattern(c->fd, 0, n);
    if (rc != 0)
        return NEXT_ABORT;
    return r->keep_alive ? NEXT_KEEP : NEXT_CLOSE;
}

static enum next handle_chunked(struct conn *c, const struct request *r)
{
    uint64_t chunks, size, delay_ms;
    if (query_u64(r->target, "chunks", 1, 1000000, &chunks) != 0 ||
        query_u64(r->target, "size", 1024, 16 << 20, &size) != 0 ||
        query_u64(r->target, "delay_ms", 0, 60000, &delay_ms) != 0 || (size == 0 && chunks > 0))
        return respond_text(c, r, 400, "bad chunks, size or delay_ms\n");
    /* HTTP/1.0 has no chunked coding: the body then ends with the connection. */
    bool chunked = r->minor == 1;
    struct sbuf sb = {0};
    head_start(&sb, 200);
    sb_str(&sb, "Content-Type: application/octet-stream\r\n");
    if (chunked) {
        sb_str(&sb, "Transfer-Encoding: chunked\r\n");
        head_connection(&sb, r);
    } else {
        sb_str(&sb, "Connection: close\r\n");
    }
    sb_str(&sb, "\r\n");
    int rc = sb.failed ? -1 : send_all(c->fd, sb.data, sb.len);
    sb_free(&sb);
    for (uint64_t i = 0; rc == 0 && !r->is_head && i < chunks; i++) {
        if (i > 0 && delay_ms > 0)
            sleep_ms(delay_ms);
        char line[32];
        int n = snprintf(line, sizeof line, "%" PRIx64 "\r\n", size);
        if (chunked)
            rc = send_all(c->fd, line, (size_t)n);
        if (rc == 0)
            rc = send_pattern(c->fd, i * size, size);
        if (rc == 0 && chunked)
            rc = send_all(c->fd, "\r\n", 2);
    }
    if (rc == 0 && chunked && !r->is_head)
        rc = send_all(c->fd, "0\r\n\r\n", 5);
    if (rc != 0)
        return NEXT_ABORT;
    return chunked && r->keep_alive ? NEXT_KEEP : NEXT_CLOSE;
}

static enum next handle_delay(struct conn *c, const struct request *r)
{
    uint64_t ms;
    if (query_u64(r->target, "ms", 0, 600000, &ms) != 0)
        return respond_text(c, r, 400, "bad ms\n");
    sleep_ms(ms);
    char text[64];
    snprintf(text, sizeof text, "slept %" PRIu64 "\n", ms);
    return respond_text(c, r, 200, text);
}

static enum next handle_close_mid(struct conn *c, const struct request *r)
{
    struct sbuf sb = {0};
    head_start(&sb, 200);
    sb_str(&sb, "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n");
    if (!r->is_head)
        sb_append(&sb, pattern, 10);
    if (!sb.failed)
        send_all(c->fd, sb.data, sb.len);
    sb_free(&sb);
    return r->is_head ? NEXT_KEEP : NEXT_ABORT;
}

static enum next handle_status(struct conn *c, const struct request *r)
{
    uint64_t code;
    if (query_u64(r->target, "code", 200, 599, &code) != 0 || code < 200)
        return respond_text(c, r, 400, "bad code: 200..599\n");
    char text[64];
    snprintf(text, sizeof text, "status %" PRIu64 "\n", code);
    return respond_text(c, r, (int)code, text);
}

static enum next handle_until_close(struct conn *c, const struct request *r)
{
    uint64_t n;
    if (query_u64(r->target, "n", 0, ORIGIN_MAX_BYTES, &n) != 0)
        return respond_text(c, r, 400, "bad n\n");
    struct sbuf sb = {0};
    head_start(&sb, 200);
    sb_str(&sb, "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
    int rc = sb.failed ? -1 : send_all(c->fd, sb.data, sb.len);
    sb_free(&sb);
    if (rc == 0 && !r->is_head)
        rc = send_pattern(c->fd, 0, n);
    return rc == 0 ? NEXT_CLOSE : NEXT_ABORT;
}

static enum next handle_stats(struct conn *c, const struct request *r)
{
    struct sbuf json = {0};
    pthread_mutex_lock(&stats_lock);
    sb_printf(&json, "{\"requests\":%" PRIu64 ",\"connections\":%" PRIu64 ",\"targets_tail\":[",
              stats_requests, stats_connections);
    size_t first = (stats_tail_next + ORIGIN_TAIL - stats_tail_count) % ORIGIN_TAIL;
    for (size_t i = 0; i < stats_tail_count; i++) {
        const char *entry = stats_tail[(first + i) % ORIGIN_TAIL];
        if (i)
            sb_str(&json, ",");
        sb_json_string(&json, entry, strlen(entry));
    }
    pthread_mutex_unlock(&stats_lock);
    sb_str(&json, "]}\n");
    enum next next = respond_json(c, r, &json, NULL);
    sb_free(&json);
    return next;
}

/* Extra response fields from set=Name:Value, emitted verbatim after the origin's own
 * (a set Content-Length therefore makes a deliberately broken response). */
static enum next handle_headers(struct conn *c, const struct request *r)
{
    struct sbuf extra = {0};
    bool close_after = false;
    char field[1024];
    for (size_t i = 0; query_param(r->target, "set", i, field, sizeof field) >= 0; i++) {
        char *colon = strchr(field, ':');
        if (!colon || colon == field || strpbrk(field, "\r\n")) {
            sb_free(&extra);
            return respond_text(c, r, 400, "set=Name:Value\n");
        }
        *colon = '\0';
        const char *value = colon + 1;
        while (*value == ' ')
            value++;
        sb_printf(&extra, "%s: %s\r\n", field, value);
        if (strcasecmp(field, "Connection") == 0 && list_has_token(value, "close"))
            close_after = true;
    }
    enum next next = extra.failed ? respond_text(c, r, 500, "out of memory\n")
                                  : respond(c, r, 200, "text/plain", extra.data, "ok\n", 3);
    sb_free(&extra);
    return close_after && next == NEXT_KEEP ? NEXT_CLOSE : next;
}

/* ---- /resp/...: responses shaped by the query, and what arrived per path ------------- */

/* Every request to /resp/<anything> is counted under its path (without the query) and
 * method, and the path keeps the header fields of its last request, so a test can tell
 * exactly what a cache in front of the origin forwarded. */

enum {
    RESP_BUCKETS = 4096,
    RESP_METHODS = 16,      /* distinct methods counted per path; later ones only in count */
    RESP_METHOD_NAME = 16,  /* longer method names are counted truncated */
    RESP_PARAM = 8 * 1024,  /* longest decoded query value */
    RESP_CHUNK = 4096,      /* chunk size of chunked=1 bodies */
};
#define RESP_MAX_SIZE ((uint64_t)1 << 30)

struct resp_method {
    char name[RESP_METHOD_NAME];
    uint64_t count;
};

struct resp_path {
    struct resp_path *next;
    uint64_t count;
    struct resp_method methods[RESP_METHODS];
    size_t num_methods;
    char *last_headers; /* a JSON object, owned */
    char path[];
};

static pthread_mutex_t resp_lock = PTHREAD_MUTEX_INITIALIZER;
static struct resp_path *resp_paths[RESP_BUCKETS];

static size_t resp_bucket(const char *path, size_t len)
{
    uint64_t hash = 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; i++) {
        hash ^= (unsigned char)path[i];
        hash *= 0x100000001b3u;
    }
    return (size_t)(hash % RESP_BUCKETS);
}

/* Call with resp_lock held. */
static struct resp_path *resp_find(const char *path, size_t len)
{
    for (struct resp_path *p = resp_paths[resp_bucket(path, len)]; p; p = p->next)
        if (strlen(p->path) == len && memcmp(p->path, path, len) == 0)
            return p;
    return NULL;
}

/* The request's header fields as a JSON object with lowercase names; repeated fields
 * are joined with ", " as a list-based field would be. NULL when out of memory. */
static char *resp_headers_json(const struct request *r)
{
    struct sbuf json = {0};
    sb_str(&json, "{");
    bool first = true;
    for (size_t i = 0; i < r->num_headers; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcasecmp(r->headers[j].name, r->headers[i].name) == 0;
        if (seen)
            continue;
        if (!first)
            sb_str(&json, ",");
        first = false;
        /* Names are tokens (checked when parsed): nothing to escape. */
        sb_str(&json, "\"");
        for (const char *n = r->headers[i].name; *n; n++) {
            char ch = (char)(*n >= 'A' && *n <= 'Z' ? *n + ('a' - 'A') : *n);
            sb_append(&json, &ch, 1);
        }
        sb_str(&json, "\":");
        struct sbuf value = {0};
        for (size_t j = i; j < r->num_headers; j++) {
            if (strcasecmp(r->headers[j].name, r->headers[i].name) != 0)
                continue;
            if (value.len > 0)
                sb_str(&value, ", ");
            sb_str(&value, r->headers[j].value);
        }
        sb_json_string(&json, value.data ? value.data : "", value.len);
        json.failed |= value.failed;
        sb_free(&value);
    }
    sb_str(&json, "}");
    sb_append(&json, "", 1);
    if (json.failed) {
        sb_free(&json);
        return NULL;
    }
    return json.data;
}

/* Count the request under its path and method. Returns the path's count including it
 * (0 when out of memory: the request is then not counted). */
static uint64_t resp_record(const struct request *r)
{
    size_t len = path_len(r->target);
    char *headers = resp_headers_json(r);
    if (!headers)
        return 0;
    pthread_mutex_lock(&resp_lock);
    struct resp_path *p = resp_find(r->target, len);
    if (!p) {
        p = calloc(1, sizeof *p + len + 1);
        if (!p) {
            pthread_mutex_unlock(&resp_lock);
            free(headers);
            return 0;
        }
        memcpy(p->path, r->target, len);
        size_t b = resp_bucket(r->target, len);
        p->next = resp_paths[b];
        resp_paths[b] = p;
    }
    uint64_t count = ++p->count;
    size_t m = 0;
    while (m < p->num_methods && strncmp(p->methods[m].name, r->method, RESP_METHOD_NAME - 1) != 0)
        m++;
    if (m == p->num_methods && m < RESP_METHODS) {
        snprintf(p->methods[m].name, RESP_METHOD_NAME, "%s", r->method);
        p->num_methods++;
    }
    if (m < p->num_methods)
        p->methods[m].count++;
    char *old = p->last_headers;
    p->last_headers = headers;
    pthread_mutex_unlock(&resp_lock);
    free(old);
    return count;
}

static void resp_reset(void)
{
    pthread_mutex_lock(&resp_lock);
    for (size_t b = 0; b < RESP_BUCKETS; b++) {
        struct resp_path *p = resp_paths[b];
        while (p) {
            struct resp_path *next = p->next;
            free(p->last_headers);
            free(p);
            p = next;
        }
        resp_paths[b] = NULL;
    }
    pthread_mutex_unlock(&resp_lock);
}

/* GET /resp-count?path=/resp/x: {"count", "methods", "last_headers"} of that path
 * (zeros and empty objects for a path never asked for). */
static enum next handle_resp_count(struct conn *c, const struct request *r)
{
    char path[RESP_PARAM];
    ssize_t len = query_param(r->target, "path", 0, path, sizeof path);
    if (len < 0)
        return respond_text(c, r, 400, "path=/resp/... is required\n");
    struct sbuf json = {0};
    pthread_mutex_lock(&resp_lock);
    const struct resp_path *p = resp_find(path, (size_t)len);
    sb_printf(&json, "{\"count\":%" PRIu64 ",\"methods\":{", p ? p->count : 0);
    for (size_t m = 0; p && m < p->num_methods; m++) {
        if (m)
            sb_str(&json, ",");
        sb_json_string(&json, p->methods[m].name, strlen(p->methods[m].name));
        sb_printf(&json, ":%" PRIu64, p->methods[m].count);
    }
    sb_printf(&json, "},\"last_headers\":%s}\n", p && p->last_headers ? p->last_headers : "{}");
    pthread_mutex_unlock(&resp_lock);
    enum next next = respond_json(c, r, &json, NULL);
    sb_free(&json);
    return next;
}

/* The opaque part of an entity tag: what weak comparison compares (RFC 9110 §8.8.3.2). */
static void etag_opaque(const char *tag, size_t len, const char **opaque, size_t *opaque_len)
{
    if (len >= 2 && tag[0] == 'W' && tag[1] == '/') {
        tag += 2;
        len -= 2;
    }
    *opaque = tag;
    *opaque_len = len;
}

/* True when the If-None-Match list has "*" or an entity tag weakly equal to etag. */
static bool etag_list_matches(const char *list, const char *etag)
{
    const char *want;
    size_t want_len;
    etag_opaque(etag, strlen(etag), &want, &want_len);
    const char *p = list;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            return false;
        const char *start = p;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p == '"') { /* a quoted tag may hold commas */
            const char *close = strchr(p + 1, '"');
            p = close ? close + 1 : p + strlen(p);
        }
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end - start == 1 && *start == '*')
            return true;
        const char *got;
        size_t got_len;
        etag_opaque(start, (size_t)(end - start), &got, &got_len);
        if (got_len == want_len && memcmp(got, want, got_len) == 0)
            return true;
    }
}

static bool parse_http_date(const char *text, time_t *t)
{
    struct tm tm = {0};
    const char *end = strptime(text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return false;
    *t = timegm(&tm);
    return true;
}

/* What the query asks of a /resp/ response. The strings point into bufs. */
struct resp_spec {
    uint64_t status, size, delay_ms;
    bool chunked, has_size, has_body;
    char body[RESP_PARAM];
    size_t body_len;
    char etag[1024];
    char lm[128];
    struct sbuf fields; /* the h= fields, "Name: value\r\n" each */
    bool fields_type;   /* an h= field sets Content-Type */
    bool fields_close;  /* an h= field says Connection: close */
};

/* Read the query into spec. NULL, or what is wrong with it. */
static const char *resp_parse(const struct request *r, struct resp_spec *spec)
{
    char flag[8];
    if (query_u64(r->target, "status", 200, 599, &spec->status) != 0 || spec->status < 200)
        return "status=200..599\n";
    if (query_u64(r->target, "delay_ms", 0, 600000, &spec->delay_ms) != 0)
        return "delay_ms=0..600000\n";
    if (query_u64(r->target, "size", 0, RESP_MAX_SIZE, &spec->size) != 0)
        return "size=N, at most 1 GiB\n";
    spec->has_size = query_param(r->target, "size", 0, flag, sizeof flag) >= 0;
    ssize_t n = query_param(r->target, "chunked", 0, flag, sizeof flag);
    spec->chunked = n == 1 && flag[0] == '1';
    n = query_param(r->target, "body", 0, spec->body, sizeof spec->body);
    spec->has_body = n >= 0;
    spec->body_len = n >= 0 ? (size_t)n : 0;
    if (spec->has_body && spec->has_size)
        return "body= or size=, not both\n";
    spec->etag[0] = spec->lm[0] = '\0';
    if (query_param(r->target, "etag", 0, spec->etag, sizeof spec->etag) >= 0 &&
        (!spec->etag[0] || strpbrk(spec->etag, "\r\n")))
        return "etag=\"tag\"\n";
    time_t lm;
    if (query_param(r->target, "lm", 0, spec->lm, sizeof spec->lm) >= 0 &&
        !parse_http_date(spec->lm, &lm))
        return "lm=<IMF-fixdate>\n";
    char field[RESP_PARAM];
    for (size_t i = 0; query_param(r->target, "h", i, field, sizeof field) >= 0; i++) {
        char *colon = strchr(field, ':');
        if (!colon || colon == field || strpbrk(field, "\r\n"))
            return "h=Name:Value\n";
        *colon = '\0';
        const char *value = colon + 1;
        while (*value == ' ')
            value++;
        sb_printf(&spec->fields, "%s: %s\r\n", field, value);
        if (strcasecmp(field, "Content-Type") == 0)
            spec->fields_type = true;
        if (strcasecmp(field, "Connection") == 0 && list_has_token(value, "close"))
            spec->fields_close = true;
    }
    return NULL;
}

/* 304 when the request's validators match the etag= / lm= of the query (RFC 9110
 * §13.2.2: If-None-Match decides when present, else If-Modified-Since). */
static bool resp_not_modified(const struct request *r, const struct resp_spec *spec)
{
    if (strcmp(r->method, "GET") != 0 && !r->is_head)
        return false;
    const char *inm = request_header(r, "If-None-Match");
    if (inm)
        return spec->etag[0] && etag_list_matches(inm, spec->etag);
    const char *ims = request_header(r, "If-Modified-Since");
    time_t since, modified;
    return ims && spec->lm[0] && parse_http_date(ims, &since) &&
           parse_http_date(spec->lm, &modified) && modified <= since;
}

/* The body: echo= lines, body=, or "<path> #<count>\n" into body; returns true when it
 * is size= pattern bytes instead. */
static bool resp_body(const struct request *r, const struct resp_spec *spec, uint64_t count,
                      struct sbuf *body)
{
    char name[256];
    bool echo = false;
    for (size_t i = 0; query_param(r->target, "echo", i, name, sizeof name) >= 0; i++) {
        echo = true;
        for (size_t h = 0; h < r->num_headers; h++)
            if (strcasecmp(r->headers[h].name, name) == 0)
                sb_printf(body, "%s: %s\n", name, r->headers[h].value);
    }
    if (echo)
        return false;
    if (spec->has_size)
        return true;
    if (spec->has_body)
        sb_append(body, spec->body, spec->body_len);
    else
        sb_printf(body, "%.*s #%" PRIu64 "\n", (int)path_len(r->target), r->target, count);
    return false;
}

static int send_chunked_bytes(int fd, const char *data, uint64_t pattern_offset, uint64_t len)
{
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < RESP_CHUNK ? (size_t)(len - done) : RESP_CHUNK;
        char line[32];
        int ln = snprintf(line, sizeof line, "%zx\r\n", n);
        if (send_all(fd, line, (size_t)ln) != 0)
            return -1;
        int rc = data ? send_all(fd, data + done, n) : send_pattern(fd, pattern_offset + done, n);
        if (rc != 0 || send_all(fd, "\r\n", 2) != 0)
            return -1;
        done += n;
    }
    return send_all(fd, "0\r\n\r\n", 5);
}

static enum next handle_resp(struct conn *c, const struct request *r)
{
    uint64_t count = resp_record(r);
    struct resp_spec *spec = calloc(1, sizeof *spec);
    if (!spec)
        return respond_text(c, r, 500, "out of memory\n");
    const char *bad = resp_parse(r, spec);
    if (bad) {
        sb_free(&spec->fields);
        free(spec);
        return respond_text(c, r, 400, bad);
    }
    if (spec->delay_ms)
        sleep_ms(spec->delay_ms);

    bool not_modified = resp_not_modified(r, spec);
    int status = not_modified ? 304 : (int)spec->status;
    bool has_body = status_has_body(status);
    struct sbuf body = {0};
    bool pattern_body = has_body && resp_body(r, spec, count, &body);
    uint64_t body_len = pattern_body ? spec->size : body.len;

    struct sbuf head = {0};
    head_start(&head, status);
    if (spec->etag[0])
        sb_printf(&head, "ETag: %s\r\n", spec->etag);
    if (spec->lm[0])
        sb_printf(&head, "Last-Modified: %s\r\n", spec->lm);
    sb_printf(&head, "X-Resp-Count: %" PRIu64 "\r\n", count);
    if (spec->fields.len)
        sb_append(&head, spec->fields.data, spec->fields.len);
    if (has_body) {
        if (!spec->fields_type)
            sb_str(&head, "Content-Type: text/plain\r\n");
        if (spec->chunked)
            sb_str(&head, "Transfer-Encoding: chunked\r\n");
        else
            sb_printf(&head, "Content-Length: %" PRIu64 "\r\n", body_len);
    }
    head_connection(&head, r);
    sb_str(&head, "\r\n");

    int rc = head.failed || body.failed || spec->fields.failed ? -1
                                                               : send_all(c->fd, head.data, head.len);
    if (rc == 0 && has_body && !r->is_head) {
        const char *data = pattern_body ? NULL : body.data;
        if (spec->chunked)
            rc = send_chunked_bytes(c->fd, data, 0, body_len);
        else if (data)
            rc = send_all(c->fd, data, (size_t)body_len);
        else
            rc = send_pattern(c->fd, 0, body_len);
    }
    bool close_after = spec->fields_close;
    sb_free(&head);
    sb_free(&body);
    sb_free(&spec->fields);
    free(spec);
    if (rc != 0)
        return NEXT_ABORT;
    return r->keep_alive && !close_after ? NEXT_KEEP : NEXT_CLOSE;
}
static const char demo_page[] =
    "<!doctype html>\n<title>ringside demo origin</title>\n"
    "<h1>ringside demo origin</h1>\n<p>This backend knows nothing about the proxy in front of it.</p>\n"
    "<ul>\n"
    "<li><a href=\"/api/hello\">/api/hello</a> JSON, Cache-Control: max-age=5</li>\n"
    "<li><a href=\"/count\">/count</a> connection and request serial numbers (keep-alive reuse)</li>\n"
    "<li><a href=\"/echo\">/echo</a> the request as JSON</li>\n"
    "<li>/echo-body the request body back</li>\n"
    "<li><a href=\"/bytes?n=1000\">/bytes?n=N</a> N pattern bytes</li>\n"
    "<li><a href=\"/chunked?chunks=5&amp;size=10\">/chunked?chunks=N&amp;size=S&amp;delay_ms=D</a> a chunked response</li>\n"
    "<li><a href=\"/delay?ms=500\">/delay?ms=M</a> answers after M ms</li>\n"
    "<li><a href=\"/status?code=503\">/status?code=C</a> any status</li>\n"
    "<li><a href=\"/headers?set=X-Demo:1\">/headers?set=Name:Value</a> extra response fields</li>\n"
    "<li><a href=\"/resp/demo?h=Cache-Control:max-age%3D10\">/resp/NAME?status=S&amp;h=Name:Value&amp;body=T&amp;size=N&amp;chunked=1&amp;delay_ms=D&amp;etag=E&amp;lm=DATE&amp;echo=Field</a> a response shaped by the query; <a href=\"/resp-count?path=/resp/demo\">/resp-count?path=P</a> what arrived for a path</li>\n"
    "<li>/close-mid, /close, /until-close?n=N misbehaving on purpose</li>\n"
    "<li><a href=\"/stats\">/stats</a> what arrived here</li>\n"
    "</ul>\n";

static enum next handle_hello(struct conn *c, const struct request *r)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char stamp[40];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    struct sbuf json = {0};
    sb_printf(&json, "{\"hello\":\"world\",\"time\":\"%s.%03ldZ\"}\n", stamp, now.tv_nsec / 1000000);
    enum next next = respond_json(c, r, &json, "Cache-Control: max-age=5\r\n");
    sb_free(&json);
    return next;
}

static bool method_is(const struct request *r, const char *method)
{
    return strcmp(r->method, method) == 0;
}

static enum next method_not_allowed(struct conn *c, const struct request *r, const char *allow)
{
    char extra[64];
    snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
    return respond(c, r, 405, "text/plain", extra, "method not allowed\n", 19);
}

static enum next dispatch(struct conn *c, const struct request *r)
{
    static const struct {
        const char *path;
        enum next (*handle)(struct conn *, const struct request *);
        bool demo_only;
    } get_routes[] = {
        {"/count", handle_count, false},
        {"/bytes", handle_bytes, false},
        {"/chunked", handle_chunked, false},
        {"/delay", handle_delay, false},
        {"/close-mid", handle_close_mid, false},
        {"/status", handle_status, false},
        {"/until-close", handle_until_close, false},
        {"/stats", handle_stats, false},
        {"/headers", handle_headers, false},
        {"/api/hello", handle_hello, true},
    };
    bool get = method_is(r, "GET") || r->is_head;

    if (path_is(r, "/echo"))
        return handle_echo(c, r);
    if (path_is(r, "/echo-body"))
        return handle_echo_body(c, r);
    if (path_is(r, "/close"))
        return NEXT_ABORT;
    if (strncmp(r->target, "/resp/", 6) == 0)
        return handle_resp(c, r);
    if (path_is(r, "/resp-count/reset")) {
        if (!method_is(r, "POST"))
            return method_not_allowed(c, r, "POST");
        resp_reset();
        return respond_text(c, r, 200, "reset\n");
    }
    if (path_is(r, "/resp-count"))
        return get ? handle_resp_count(c, r) : method_not_allowed(c, r, "GET, HEAD");
    if (path_is(r, "/stats/reset")) {
        if (!method_is(r, "POST"))
            return method_not_allowed(c, r, "POST");
        stats_reset();
        return respond_text(c, r, 200, "reset\n");
    }
    if (options.demo && path_is(r, "/"))
        return get ? respond(c, r, 200, "text/html; charset=utf-8", NULL, demo_page,
                             sizeof demo_page - 1)
                   : method_not_allowed(c, r, "GET, HEAD");
    for (size_t i = 0; i < sizeof get_routes / sizeof get_routes[0]; i++) {
        if (!path_is(r, get_routes[i].path) || (get_routes[i].demo_only && !options.demo))
            continue;
        return get ? get_routes[i].handle(c, r) : method_not_allowed(c, r, "GET, HEAD");
    }
    return respond_text(c, r, 404, "not found\n");
}

/* ---- reading requests ------------------------------------------------------------- */

enum read_result {
    READ_OK,
    READ_DONE,     /* clean end: EOF or idle timeout between requests */
    READ_BAD,      /* answer 400 and close */
    READ_HEAD_TOO_BIG, /* answer 431 and close */
    READ_TOO_BIG,  /* answer 413 and close */
    READ_ABORT,    /* close without answering */
};

/* Record what arrived when it is not a request: its first line, marked. */
static void stats_malformed(const char *data, size_t len, const char *mark)
{
    char entry[ORIGIN_TAIL_ENTRY];
    size_t first = 0;
    while (first < len && data[first] != '\r' && data[first] != '\n')
        first++;
    int n = snprintf(entry, sizeof entry, "%s %.*s", mark, (int)first, data);
    stats_request(entry, n < 0 ? 0 : (size_t)n < sizeof entry ? (size_t)n : sizeof entry - 1);
}

static enum read_result read_body(struct conn *c, struct request *r)
{
    const char *te = request_header(r, "Transfer-Encoding");
    const char *cl = NULL;
    for (size_t i = 0; i < r->num_headers; i++) {
        if (strcasecmp(r->headers[i].name, "Content-Length") != 0)
            continue;
        if (cl && strcmp(cl, r->headers[i].value) != 0)
            return READ_BAD;
        cl = r->headers[i].value;
    }
    if (te && cl)
        return READ_BAD;
    uint64_t length = 0;
    if (cl) {
        if (!*cl || strspn(cl, "0123456789") != strlen(cl) || strlen(cl) > 15)
            return READ_BAD;
        length = strtoull(cl, NULL, 10);
        if (length > ORIGIN_MAX_BODY)
            return READ_TOO_BIG;
    }
    if (te) {
        /* Only "chunked" alone: anything else we could not decode. */
        if (strcasecmp(te, "chunked") != 0)
            return READ_BAD;
    }
    if (!te && length == 0)
        return READ_OK;

    const char *expect = request_header(r, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && r->minor == 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (send_all(c->fd, cont, sizeof cont - 1) != 0)
            return READ_ABORT;
    }

    if (!te) {
        r->body = malloc(length);
        if (!r->body)
            return READ_TOO_BIG;
        r->body_len = length;
        return conn_read_exact(c, r->body, length) == 0 ? READ_OK : READ_ABORT;
    }

    size_t cap = 0;
    for (;;) {
        const char *line;
        ssize_t line_len = conn_read_line(c, &line);
        if (line_len < 0)
            return READ_BAD;
        uint64_t size = 0;
        ssize_t i = 0;
        for (; i < line_len && hex_value(line[i]) >= 0; i++) {
            if (size > (ORIGIN_MAX_BODY >> 4))
                return READ_TOO_BIG;
            size = size * 16 + (uint64_t)hex_value(line[i]);
        }
        /* Digits, then optional whitespace and ;extensions, which we ignore. */
        if (i == 0 || (i < line_len && line[i] != ';' && line[i] != ' ' && line[i] != '\t'))
            return READ_BAD;
        if (size == 0)
            break;
        if (r->body_len + size > ORIGIN_MAX_BODY)
            return READ_TOO_BIG;
        if (r->body_len + size > cap) {
            size_t new_cap = cap ? cap : 64 * 1024;
            while (new_cap < r->body_len + size)
                new_cap *= 2;
            char *body = realloc(r->body, new_cap);
            if (!body)
                return READ_TOO_BIG;
            r->body = body;
            cap = new_cap;
        }
        char crlf[2];
        if (conn_read_exact(c, r->body + r->body_len, size) != 0 ||
            conn_read_exact(c, crlf, 2) != 0)
            return READ_ABORT;
        if (crlf[0] != '\r' || crlf[1] != '\n')
            return READ_BAD;
        r->body_len += size;
    }
    for (;;) { /* trailer section: ignored up to its empty line */
        const char *line;
        ssize_t line_len = conn_read_line(c, &line);
        if (line_len < 0)
            return READ_BAD;
        if (line_len == 0)
            return READ_OK;
    }
}

static enum read_result read_request(struct conn *c, struct request *r)
{
    size_t scanned = 0;
    size_t head_len = 0;
    for (;;) {
        /* RFC 9112 2.2: ignore empty lines before a request line. */
        while (scanned == 0 && c->end - c->start >= 2 && c->buf[c->start] == '\r' &&
               c->buf[c->start + 1] == '\n')
            c->start += 2;
        size_t avail = c->end - c->start;
        const char *p = avail > 0 ? c->buf + c->start : "";
        for (size_t i = scanned >= 3 ? scanned - 3 : 0; i + 3 < avail; i++) {
            if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
                head_len = i + 4;
                break;
            }
        }
        if (head_len)
            break;
        scanned = avail;
        if (avail > ORIGIN_MAX_HEAD) {
            stats_malformed(p, avail, "<too-large>");
            return READ_HEAD_TOO_BIG;
        }
        /* The idle timeout applies only while no byte of the next request is here. */
        ssize_t n = conn_fill(c, avail == 0 ? options.idle_timeout_ms : -1);
        if (n == -2)
            return READ_DONE;
        if (n <= 0) {
            if (avail > 0)
                stats_malformed(c->buf + c->start, avail, "<incomplete>");
            return avail > 0 ? READ_ABORT : READ_DONE;
        }
    }

    /* Keep only the field lines' CRLFs: the copy ends after the last field's CRLF. */
    r->head = malloc(head_len - 1);
    if (!r->head)
        return READ_ABORT;
    memcpy(r->head, c->buf + c->start, head_len - 2);
    r->head[head_len - 2] = '\0';
    c->start += head_len;
    if (memchr(r->head, '\0', head_len - 2) || request_parse_head(r, r->head) != 0) {
        stats_malformed(c->buf + c->start - head_len, head_len, "<malformed>");
        return READ_BAD;
    }
    if (!path_is(r, "/stats") && !path_is(r, "/stats/reset"))
        stats_request(r->target, strlen(r->target));
    c->requests++;
    return read_body(c, r);
}

static void request_free(struct request *r)
{
    free(r->head);
    free(r->body);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    enum next next = NEXT_KEEP;
    while (next == NEXT_KEEP) {
        struct request r = {0};
        enum read_result result = read_request(c, &r);
        switch (result) {
        case READ_OK:
            next = dispatch(c, &r);
            if (next == NEXT_KEEP && !r.keep_alive)
                next = NEXT_CLOSE;
            break;
        case READ_DONE:
            next = NEXT_CLOSE;
            break;
        case READ_BAD:
            r.keep_alive = false;
            r.is_head = false;
            next = respond_text(c, &r, 400, "bad request\n");
            break;
        case READ_HEAD_TOO_BIG:
        case READ_TOO_BIG:
            r.keep_alive = false;
            r.is_head = false;
            next = respond_text(c, &r, result == READ_TOO_BIG ? 413 : 431, "too large\n");
            break;
        case READ_ABORT:
            next = NEXT_ABORT;
            break;
        }
        request_free(&r);
    }
    if (next == NEXT_CLOSE)
        close_gracefully(c->fd);
    else
        close(c->fd);
    free(c->buf);
    free(c);
    return NULL;
}

/* ---- listening -------------------------------------------------------------------- */

static int listen_on(const char *text)
{
    char host[128];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host) {
        fprintf(stderr, "ringside-origin: --listen wants HOST:PORT, got %s\n", text);
        return -1;
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end || colon[1] == '\0' || port > 65535) {
        fprintf(stderr, "ringside-origin: bad port in %s\n", text);
        return -1;
    }

    struct sockaddr_storage ss = {0};
    socklen_t ss_len;
    size_t host_len = strlen(host);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        host[host_len - 1] = '\0';
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1)
            goto bad_host;
        ss_len = sizeof *sin6;
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sin->sin_addr) != 1)
            goto bad_host;
        ss_len = sizeof *sin;
    }

    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("ringside-origin: socket");
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, ss_len) != 0 || listen(fd, 1024) != 0) {
        fprintf(stderr, "ringside-origin: listen on %s: %s\n", text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;

bad_host:
    fprintf(stderr, "ringside-origin: bad address %s (a literal IP is needed)\n", text);
    return -1;
}

static int print_listening(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
        printf("listening [%s]:%u\n", ip, ntohs(sin6->sin6_port));
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        printf("listening %s:%u\n", ip, ntohs(sin->sin_port));
    }
    return fflush(stdout) == 0 ? 0 : -1;
}

static void *accept_main(void *arg)
{
    int listen_fd = *(int *)arg;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0 ||
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0 ||
        pthread_attr_setstacksize(&attr, ORIGIN_THREAD_STACK) != 0) {
        fprintf(stderr, "ringside-origin: thread attributes failed\n");
        exit(1);
    }
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                sleep_ms(10); /* out of descriptors: let connections finish */
                continue;
            }
            perror("ringside-origin: accept");
            exit(1);
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->serial = stats_connection_accepted();
        pthread_t thread;
        if (pthread_create(&thread, &attr, conn_main, c) != 0) {
            close(fd);
            free(c);
        }
    }
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: ringside-origin [--listen HOST:PORT] [--demo] [--idle-timeout-ms N]\n"
                 "  --listen           address to listen on (default 127.0.0.1:0, any free port)\n"
                 "  --demo             also serve / and /api/hello\n"
                 "  --idle-timeout-ms  close a connection idle between requests for N ms\n");
}

int main(int argc, char **argv)
{
    const char *listen_text = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_text = argv[++i];
        } else if (strcmp(argv[i], "--demo") == 0) {
            options.demo = true;
        } else if (strcmp(argv[i], "--idle-timeout-ms") == 0 && i + 1 < argc) {
            char *end;
            long ms = strtol(argv[++i], &end, 10);
            if (*end || ms < 0 || ms > 86400000) {
                fprintf(stderr, "ringside-origin: bad --idle-timeout-ms %s\n", argv[i]);
                return 2;
            }
            options.idle_timeout_ms = (int)ms;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (char)('a' + i % 26);

    /* Every thread inherits the blocked set; only sigwait below sees these signals. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &stop, NULL) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);

    int listen_fd = listen_on(listen_text);
    if (listen_fd < 0)
        return 1;
    if (print_listening(listen_fd) != 0)
        return 1;
    pthread_t acceptor;
    if (pthread_create(&acceptor, NULL, accept_main, &listen_fd) != 0) {
        fprintf(stderr, "ringside-origin: cannot start the accept thread\n");
        return 1;
    }
    int sig;
    while (sigwait(&stop, &sig) != 0)
        ;
    /* Connection threads may be mid-send; _exit skips stdio teardown under them. */
    _exit(0);
}
