#include "proxy/admin.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "proxy/metrics.h"

#ifndef RINGSIDE_VERSION
#define RINGSIDE_VERSION "dev"
#endif

#define ADMIN_MAX_CONNS 64
#define ADMIN_HEAD_MAX 8192
#define ADMIN_BODY_MAX 65536
#define ADMIN_IO_TIMEOUT_MS 5000  /* to receive a request, and again to send the answer */
#define ADMIN_LINGER_MS 1000      /* after answering, to let the client read it and close */
#define ADMIN_PROBE_TIMEOUT_MS 1000
#define ADMIN_PROBE_CACHE_MS 1000
#define ADMIN_ACCEPT_BACKOFF_MS 100 /* after EMFILE and the like, which poll would report forever */
#define ADMIN_BACKLOG 128

#define REQUESTS_METRIC "ringside_admin_requests_total"
#define REQUESTS_HELP "Requests answered on the metrics and control listeners."

#define TEXT_TYPE "text/plain; charset=utf-8"
#define JSON_TYPE "application/json"
#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum admin_listener { ADMIN_METRICS, ADMIN_CONTROL, ADMIN_NUM_LISTENERS };
static const char *const listener_names[ADMIN_NUM_LISTENERS] = {"metrics", "control"};

enum conn_state {
    CONN_FREE,
    CONN_READ,       /* receiving the request */
    CONN_WAIT_PROBE, /* /readyz waiting for the backend probe */
    CONN_WRITE,      /* sending the answer */
    CONN_LINGER,     /* answered and shut down for writing; discarding input until EOF */
};

struct admin_conn {
    enum conn_state state;
    int fd;
    enum admin_listener listener;
    int64_t deadline; /* ms, monotonic */
    char *in;
    size_t in_len, in_cap;
    size_t scanned;  /* bytes already searched for the end of the head */
    size_t head_len; /* 0 until the head is complete */
    size_t content_length;
    /* The request, as offsets into in (which may move when it grows for the body). */
    size_t method_off, method_len, path_off, path_len;
    bool head_only; /* a HEAD request: answer without the body */
    char *out;
    size_t out_len, out_sent;
};

/* Readiness costs at most one backend connect per ADMIN_PROBE_CACHE_MS however many
 * probes arrive; requests that come while a connect is in flight wait for it. */
enum { PROBE_NO_ADDRESS = -1 };
struct admin_probe {
    int fd; /* connect in flight, or -1 */
    int64_t deadline;
    bool have_result;
    int64_t checked_at;
    int error; /* 0 reachable, an errno, or PROBE_NO_ADDRESS */
};

struct admin {
    pthread_t thread;
    int wake_fd;
    int listen_fd[ADMIN_NUM_LISTENERS];
    int port[ADMIN_NUM_LISTENERS];
    struct metrics *metrics;
    struct admin_hooks hooks;
    int64_t started_at;
    int64_t now;
    int64_t accept_resume_at;
    unsigned num_conns;
    struct admin_probe probe;
    struct admin_conn conns[ADMIN_MAX_CONNS];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* --- connections ------------------------------------------------------------------ */

static void conn_close(struct admin *a, struct admin_conn *c)
{
    close(c->fd);
    free(c->in);
    free(c->out);
    memset(c, 0, sizeof(*c));
    c->state = CONN_FREE;
    c->fd = -1;
    a->num_conns--;
}

static void conn_write(struct admin *a, struct admin_conn *c)
{
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n >= 0) {
            c->out_sent += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else if (errno != EINTR) {
            conn_close(a, c);
            return;
        }
    }
    /* Closing with unread input would make the kernel send RST, which can destroy the
     * answer before the client reads it; so shut down writing and wait for the EOF. */
    free(c->out);
    c->out = NULL;
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    c->deadline = a->now + ADMIN_LINGER_MS;
}

static void conn_drain(struct admin *a, struct admin_conn *c)
{
    char buf[4096];
    for (int i = 0; i < 16; i++) { /* bounded: the deadline ends a client that keeps sending */
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    conn_close(a, c);
}

static const char *status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static void count_request(struct admin *a, enum admin_listener listener, int status)
{
    char labels[64];
    metrics_id id;
    snprintf(labels, sizeof labels, "listener=\"%s\",code=\"%d\"", listener_names[listener], status);
    if (metrics_counter(a->metrics, REQUESTS_METRIC, REQUESTS_HELP, labels, &id) == 0)
        metrics_shared_add(a->metrics, id, 1);
}

/* Queue the answer and start sending it. allow may be NULL. */
static void respond(struct admin *a, struct admin_conn *c, int status, const char *content_type,
                    const char *allow, const char *body, size_t body_len)
{
    char head[512];
    int head_len = snprintf(head, sizeof head,
                            "HTTP/1.1 %d %s\r\n"
                            "Content-Type: %s\r\n"
                            "Content-Length: %zu\r\n"
                            "%s%s%s"
                            "Cache-Control: no-store\r\n"
                            "Connection: close\r\n"
                            "\r\n",
                            status, status_reason(status), content_type, body_len,
                            allow ? "Allow: " : "", allow ? allow : "", allow ? "\r\n" : "");
    size_t send_body = c->head_only ? 0 : body_len;
    count_request(a, c->listener, status);
    free(c->in);
    c->in = NULL;
    c->out = malloc((size_t)head_len + send_body);
    if (!c->out) {
        conn_close(a, c);
        return;
    }
    memcpy(c->out, head, (size_t)head_len);
    if (send_body)
        memcpy(c->out + head_len, body, send_body);
    c->out_len = (size_t)head_len + send_body;
    c->out_sent = 0;
    c->state = CONN_WRITE;
    c->deadline = a->now + ADMIN_IO_TIMEOUT_MS;
    conn_write(a, c);
}

static void respond_text(struct admin *a, struct admin_conn *c, int status, const char *allow,
                         const char *text)
{
    respond(a, c, status, TEXT_TYPE, allow, text, strlen(text));
}

/* jansson refuses invalid UTF-8; a message from a hook may quote any bytes. */
static json_t *json_string_lossy(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

/* Answer with obj as compact JSON plus a newline; takes the reference to obj. */
static void respond_json(struct admin *a, struct admin_conn *c, int status, const char *allow,
                         json_t *obj)
{
    size_t len = obj ? json_dumpb(obj, NULL, 0, JSON_COMPACT) : 0;
    char *body = len ? malloc(len + 1) : NULL;
    if (!body || json_dumpb(obj, body, len, JSON_COMPACT) != len) {
        json_decref(obj);
        free(body);
        static const char fallback[] = "{\"result\":\"error\",\"error\":\"out of memory\"}\n";
        respond(a, c, 500, JSON_TYPE, NULL, fallback, sizeof fallback - 1);
        return;
    }
    json_decref(obj);
    body[len] = '\n';
    respond(a, c, status, JSON_TYPE, allow, body, len + 1);
    free(body);
}

static json_t *json_result(const char *error)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    if (json_object_set_new(obj, "result", json_string(error ? "error" : "ok")) != 0 ||
        (error && json_object_set_new(obj, "error", json_string_lossy(error)) != 0)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* An error in the listener's own dialect: a text line, or JSON on the control port. */
static void respond_error(struct admin *a, struct admin_conn *c, int status, const char *allow,
                          const char *message)
{
    if (c->listener == ADMIN_CONTROL) {
        respond_json(a, c, status, allow, json_result(message));
        return;
    }
    char line[256];
    snprintf(line, sizeof line, "%s\n", message);
    respond_text(a, c, status, allow, line);
}

/* --- the endpoints ---------------------------------------------------------------- */

static void handle_metrics(struct admin *a, struct admin_conn *c)
{
    size_t len;
    char *text = metrics_render(a->metrics, &len);
    if (!text) {
        respond_text(a, c, 500, NULL, "out of memory\n");
        return;
    }
    respond(a, c, 200, METRICS_TYPE, NULL, text, len);
    free(text);
}

static void handle_healthz(struct admin *a, struct admin_conn *c)
{
    respond_text(a, c, 200, NULL, "ok\n");
}

static void answer_readiness(struct admin *a, struct admin_conn *c)
{
    char line[256];
    int error = a->probe.error;
    if (error == 0) {
        respond_text(a, c, 200, NULL, "ready\n");
        return;
    }
    if (error == PROBE_NO_ADDRESS) {
        snprintf(line, sizeof line, "backend address unknown\n");
    } else {
        char buf[128];
        snprintf(line, sizeof line, "backend unreachable: %s\n", strerror_r(error, buf, sizeof buf));
    }
    respond_text(a, c, 503, NULL, line);
}

static void probe_finish(struct admin *a, int error)
{
    if (a->probe.fd >= 0)
        close(a->probe.fd);
    a->probe.fd = -1;
    a->probe.have_result = true;
    a->probe.checked_at = a->now;
    a->probe.error = error;
    for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++)
        if (a->conns[i].state == CONN_WAIT_PROBE)
            answer_readiness(a, &a->conns[i]);
}

static void probe_start(struct admin *a)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    if (a->hooks.backend_address(a->hooks.arg, &sa, &len) != 0) {
        probe_finish(a, PROBE_NO_ADDRESS);
        return;
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        probe_finish(a, errno);
        return;
    }
    a->probe.fd = fd;
    if (connect(fd, (struct sockaddr *)&sa, len) == 0) {
        probe_finish(a, 0);
    } else if (errno == EINPROGRESS) {
        a->probe.deadline = a->now + ADMIN_PROBE_TIMEOUT_MS;
    } else {
        probe_finish(a, errno);
    }
}

/* The non-blocking connect finished (poll reported the socket). */
static void probe_complete(struct admin *a)
{
    int error = 0;
    socklen_t len = sizeof error;
    if (getsockopt(a->probe.fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0)
        error = errno;
    probe_finish(a, error);
}

static void handle_readyz(struct admin *a, struct admin_conn *c)
{
    if (a->hooks.listeners_up && !a->hooks.listeners_up(a->hooks.arg)) {
        respond_text(a, c, 503, NULL, "listeners not up\n");
        return;
    }
    if (!a->hooks.backend_address) {
        respond_text(a, c, 200, NULL, "ready\n");
        return;
    }
    if (a->probe.have_result && a->now - a->probe.checked_at < ADMIN_PROBE_CACHE_MS) {
        answer_readiness(a, c);
        return;
    }
    /* Wait for the probe; probe_start may finish at once and answer every waiter. */
    c->state = CONN_WAIT_PROBE;
    if (a->probe.fd < 0)
        probe_start(a);
}

static void handle_reload(struct admin *a, struct admin_conn *c)
{
    if (!a->hooks.reload) {
        respond_json(a, c, 501, NULL, json_result("reload not supported"));
        return;
    }
    char err[512] = "";
    if (a->hooks.reload(a->hooks.arg, err, sizeof err) != 0) {
        respond_json(a, c, 500, NULL, json_result(err[0] ? err : "reload failed"));
        return;
    }
    respond_json(a, c, 200, NULL, json_result(NULL));
}

static void handle_status(struct admin *a, struct admin_conn *c)
{
    json_t *obj = json_pack("{s:s,s:I}", "version", RINGSIDE_VERSION, "uptime_seconds",
                            (json_int_t)((a->now - a->started_at) / 1000));
    respond_json(a, c, 200, NULL, obj);
}

struct admin_route {
    enum admin_listener listener;
    const char *path;
    const char *allow; /* the methods served, as the Allow header lists them */
    void (*handle)(struct admin *a, struct admin_conn *c);
};

static const struct admin_route admin_routes[] = {
    {ADMIN_METRICS, "/metrics", "GET, HEAD", handle_metrics},
    {ADMIN_METRICS, "/healthz", "GET, HEAD", handle_healthz},
    {ADMIN_METRICS, "/readyz", "GET, HEAD", handle_readyz},
    {ADMIN_CONTROL, "/reload", "POST", handle_reload},
    {ADMIN_CONTROL, "/status", "GET, HEAD", handle_status},
};

static bool method_allowed(const char *allow, const char *method, size_t len)
{
    for (const char *p = allow;;) {
        size_t n = strcspn(p, ",");
        if (n == len && memcmp(p, method, len) == 0)
            return true;
        if (p[n] == '\0')
            return false;
        p += n + 1;
        p += strspn(p, " ");
    }
}

static void dispatch(struct admin *a, struct admin_conn *c)
{
    const char *method = c->in + c->method_off;
    const char *path = c->in + c->path_off;
    for (size_t i = 0; i < sizeof(admin_routes) / sizeof(admin_routes[0]); i++) {
        const struct admin_route *r = &admin_routes[i];
        if (r->listener != c->listener || strlen(r->path) != c->path_len ||
            memcmp(r->path, path, c->path_len) != 0)
            continue;
        if (!method_allowed(r->allow, method, c->method_len)) {
            respond_error(a, c, 405, r->allow, "method not allowed");
            return;
        }
        r->handle(a, c);
        return;
    }
    if (c->listener == ADMIN_CONTROL && a->hooks.control != NULL) {
        char m[16], p[1024];
        if (c->method_len < sizeof(m) && c->path_len < sizeof(p)) {
            memcpy(m, method, c->method_len);
            m[c->method_len] = '\0';
            memcpy(p, path, c->path_len);
            p[c->path_len] = '\0';
            char *body = NULL;
            size_t body_len = 0;
            int status = a->hooks.control(a->hooks.arg, m, p, c->in + c->head_len,
                                          c->content_length, &body, &body_len);
            if (status != 0) {
                if (body == NULL)
                    respond_error(a, c, status, NULL, "control request failed");
                else
                    respond(a, c, status, JSON_TYPE, NULL, body, body_len);
                free(body);
                return;
            }
        }
    }
    respond_error(a, c, 404, NULL, "not found");
}

/* --- request parsing -------------------------------------------------------------- */

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool is_field_vchar(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/* Find the CRLFCRLF that ends the head. 1 found (head_len set), 0 need more, -1 a bare LF. */
static int find_head_end(struct admin_conn *c)
{
    for (size_t i = c->scanned; i < c->in_len; i++) {
        if (c->in[i] != '\n')
            continue;
        if (i == 0 || c->in[i - 1] != '\r')
            return -1;
        if (i >= 3 && c->in[i - 2] == '\n') {
            c->head_len = i + 1;
            return 1;
        }
    }
    c->scanned = c->in_len;
    return 0;
}

/* Parse the complete head in c->in[0, head_len): the request line and the fields this
 * server cares about. Every line ends in CRLF (find_head_end refused bare LFs). Returns 0,
 * or the status code to refuse the request with. */
static int parse_head(struct admin_conn *c)
{
    const char *p = c->in;
    const char *end = c->in + c->head_len - 2; /* the final empty line */

    const char *method = p;
    while (is_tchar((unsigned char)*p))
        p++;
    if (p == method || *p != ' ')
        return 400;
    c->method_off = 0;
    c->method_len = (size_t)(p - method);
    c->head_only = c->method_len == 4 && memcmp(method, "HEAD", 4) == 0;

    const char *target = ++p;
    while ((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
        p++;
    if (*target != '/' || *p != ' ')
        return 400;
    c->path_off = (size_t)(target - c->in);
    c->path_len = strcspn(target, "? ");

    p++;
    if (strncmp(p, "HTTP/1.1\r\n", 10) != 0 && strncmp(p, "HTTP/1.0\r\n", 10) != 0) {
        if (strncmp(p, "HTTP/", 5) == 0 && p[5] >= '0' && p[5] <= '9' && p[6] == '.' &&
            p[7] >= '0' && p[7] <= '9' && p[8] == '\r')
            return 505;
        return 400;
    }
    p += 10;

    bool have_length = false;
    while (p < end) {
        const char *name = p;
        while (is_tchar((unsigned char)*p))
            p++;
        size_t name_len = (size_t)(p - name);
        if (name_len == 0 || *p != ':') /* also refuses obs-fold and space before the colon */
            return 400;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        const char *value = p;
        while (*p != '\r') {
            if (!is_field_vchar((unsigned char)*p))
                return 400;
            p++;
        }
        const char *value_end = p;
        while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
            value_end--;
        if (p[1] != '\n')
            return 400;
        p += 2;

        if (name_len == 17 && strncasecmp(name, "transfer-encoding", 17) == 0)
            return 501;
        if (name_len == 14 && strncasecmp(name, "content-length", 14) == 0) {
            if (value == value_end)
                return 400;
            uint64_t length = 0;
            for (const char *d = value; d < value_end; d++) {
                if (*d < '0' || *d > '9')
                    return 400;
                if (length > ADMIN_BODY_MAX)
                    return 413; /* stop before the digits can overflow */
                length = length * 10 + (uint64_t)(*d - '0');
            }
            if (have_length && length != c->content_length)
                return 400;
            have_length = true;
            c->content_length = length;
        }
    }
    if (c->content_length > ADMIN_BODY_MAX)
        return 413;
    return 0;
}

static const char *error_message(int status)
{
    switch (status) {
    case 413: return "request body too large";
    case 431: return "request head too large";
    case 501: return "transfer-encoding not supported";
    case 505: return "HTTP version not supported";
    default: return "bad request";
    }
}

/* After new input: refuse, wait for more, or serve. */
static void conn_progress(struct admin *a, struct admin_conn *c)
{
    if (c->head_len == 0) {
        int found = find_head_end(c);
        if (found == 0 && c->in_len < ADMIN_HEAD_MAX)
            return;
        int status = found < 0 ? 400 : found == 0 ? 431 : parse_head(c);
        if (status != 0) {
            c->head_only = false;
            respond_error(a, c, status, NULL, error_message(status));
            return;
        }
        size_t need = c->head_len + c->content_length;
        if (need > c->in_cap) {
            char *in = realloc(c->in, need);
            if (!in) {
                conn_close(a, c);
                return;
            }
            c->in = in;
            c->in_cap = need;
        }
    }
    /* Bytes past the body (pipelining) are ignored: the connection closes after this. */
    if (c->in_len >= c->head_len + c->content_length)
        dispatch(a, c);
}

static void conn_read(struct admin *a, struct admin_conn *c)
{
    while (c->state == CONN_READ) {
        size_t room = c->in_cap - c->in_len;
        if (room == 0) { /* cannot happen: a full buffer is always answered */
            conn_close(a, c);
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            conn_progress(a, c);
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            conn_close(a, c); /* EOF or error before a complete request */
            return;
        }
    }
}

static void accept_clients(struct admin *a, enum admin_listener l)
{
    while (a->num_conns < ADMIN_MAX_CONNS) {
        int fd = accept4(a->listen_fd[l], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                a->accept_resume_at = a->now + ADMIN_ACCEPT_BACKOFF_MS;
            return;
        }
        struct admin_conn *c = NULL;
        for (unsigned i = 0; i < ADMIN_MAX_CONNS && !c; i++)
            if (a->conns[i].state == CONN_FREE)
                c = &a->conns[i];
        char *in = malloc(ADMIN_HEAD_MAX);
        if (!c || !in) {
            free(in);
            close(fd);
            a->accept_resume_at = a->now + ADMIN_ACCEPT_BACKOFF_MS;
            return;
        }
        memset(c, 0, sizeof(*c));
        c->state = CONN_READ;
        c->fd = fd;
        c->listener = l;
        c->deadline = a->now + ADMIN_IO_TIMEOUT_MS;
        c->in = in;
        c->in_cap = ADMIN_HEAD_MAX;
        a->num_conns++;
    }
}

/* --- the loop --------------------------------------------------------------------- */

enum { PFD_WAKE, PFD_LISTEN, PFD_PROBE = PFD_LISTEN + ADMIN_NUM_LISTENERS, PFD_CONNS };

static void *admin_main(void *arg)
{
    struct admin *a = arg;
    struct pollfd pfds[PFD_CONNS + ADMIN_MAX_CONNS];
    struct admin_conn *pfd_conn[PFD_CONNS + ADMIN_MAX_CONNS];

    for (;;) {
        a->now = now_ms();
        int64_t next = INT64_MAX;
        bool accepting = a->num_conns < ADMIN_MAX_CONNS && a->now >= a->accept_resume_at;
        if (a->num_conns < ADMIN_MAX_CONNS && !accepting)
            next = a->accept_resume_at;

        /* Negative fds are ignored by poll: that is how a listener pauses. */
        pfds[PFD_WAKE] = (struct pollfd){.fd = a->wake_fd, .events = POLLIN};
        for (int l = 0; l < ADMIN_NUM_LISTENERS; l++)
            pfds[PFD_LISTEN + l] = (struct pollfd){.fd = accepting ? a->listen_fd[l] : -1,
                                                   .events = POLLIN};
        pfds[PFD_PROBE] = (struct pollfd){.fd = a->probe.fd, .events = POLLOUT};
        if (a->probe.fd >= 0 && a->probe.deadline < next)
            next = a->probe.deadline;
        nfds_t n = PFD_CONNS;
        for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++) {
            struct admin_conn *c = &a->conns[i];
            if (c->state == CONN_FREE)
                continue;
            short events = c->state == CONN_WRITE      ? POLLOUT
                           : c->state == CONN_WAIT_PROBE ? 0
                                                         : POLLIN;
            pfds[n] = (struct pollfd){.fd = c->fd, .events = events};
            pfd_conn[n++] = c;
            if (c->state != CONN_WAIT_PROBE && c->deadline < next)
                next = c->deadline;
        }

        int timeout = -1;
        if (next != INT64_MAX)
            timeout = next <= a->now ? 0 : next - a->now > INT_MAX ? INT_MAX : (int)(next - a->now);
        if (poll(pfds, n, timeout) < 0 && errno != EINTR) {
            /* Only EFAULT/EINVAL/ENOMEM: nothing to serve; don't spin. */
            usleep(100 * 1000);
            continue;
        }
        a->now = now_ms();
        if (pfds[PFD_WAKE].revents)
            break;

        if (a->probe.fd >= 0 && pfds[PFD_PROBE].revents)
            probe_complete(a);
        for (nfds_t i = PFD_CONNS; i < n; i++) {
            struct admin_conn *c = pfd_conn[i];
            if (!pfds[i].revents)
                continue;
            switch (c->state) {
            case CONN_READ: conn_read(a, c); break;
            case CONN_WRITE: conn_write(a, c); break;
            case CONN_LINGER: conn_drain(a, c); break;
            case CONN_WAIT_PROBE:
                if (pfds[i].revents & (POLLERR | POLLHUP | POLLNVAL))
                    conn_close(a, c);
                break;
            case CONN_FREE: break; /* closed earlier in this turn */
            }
        }
        for (int l = 0; l < ADMIN_NUM_LISTENERS; l++)
            if (pfds[PFD_LISTEN + l].revents)
                accept_clients(a, (enum admin_listener)l);

        if (a->probe.fd >= 0 && a->probe.deadline <= a->now)
            probe_finish(a, ETIMEDOUT);
        for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++) {
            struct admin_conn *c = &a->conns[i];
            if (c->state != CONN_FREE && c->state != CONN_WAIT_PROBE && c->deadline <= a->now)
                conn_close(a, c); /* a slow client gets closed, not an answer it won't read */
        }
    }
    return NULL;
}

/* --- start and stop --------------------------------------------------------------- */

static int bind_listener(const struct sockaddr *sa, socklen_t len, const char **step)
{
    int one = 1;
    *step = "socket";
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    *step = "setsockopt(SO_REUSEADDR)";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        goto fail;
    *step = "bind";
    if (bind(fd, sa, len) != 0)
        goto fail;
    *step = "listen";
    if (listen(fd, ADMIN_BACKLOG) != 0)
        goto fail;
    return fd;
fail:;
    int error = errno;
    close(fd);
    return -error;
}

static int open_listener(const struct cfg_addr *addr, const char *what, char *err, size_t err_len)
{
    const char *text = addr->text ? addr->text : addr->host ? addr->host : "?";
    const char *step = "bind";
    int fd;
    char buf[128];
    if (addr->resolved) {
        fd = bind_listener((const struct sockaddr *)&addr->sa, addr->sa_len, &step);
    } else {
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned)addr->port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *res;
        int gai = getaddrinfo(addr->host, port, &hints, &res);
        if (gai != 0) {
            set_err(err, err_len, "%s listen %s: %s", what, text, gai_strerror(gai));
            return -1;
        }
        fd = -EADDRNOTAVAIL;
        for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
            fd = bind_listener(ai->ai_addr, ai->ai_addrlen, &step);
        freeaddrinfo(res);
    }
    if (fd < 0) {
        set_err(err, err_len, "%s listen %s: %s: %s", what, text, step,
                strerror_r(-fd, buf, sizeof buf));
        return -1;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    if (sa.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    if (sa.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return -1;
}

static void admin_free(struct admin *a)
{
    for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++)
        if (a->conns[i].state != CONN_FREE)
            conn_close(a, &a->conns[i]);
    if (a->probe.fd >= 0)
        close(a->probe.fd);
    for (int l = 0; l < ADMIN_NUM_LISTENERS; l++)
        if (a->listen_fd[l] >= 0)
            close(a->listen_fd[l]);
    if (a->wake_fd >= 0)
        close(a->wake_fd);
    free(a);
}

struct admin *admin_start(const struct cfg_addr *metrics_listen, const struct cfg_addr *control_listen,
                          struct metrics *m, const struct admin_hooks *hooks, char *err,
                          size_t err_len)
{
    if (!m) {
        set_err(err, err_len, "admin: no metrics registry");
        return NULL;
    }
    struct admin *a = calloc(1, sizeof(*a));
    if (!a) {
        set_err(err, err_len, "admin: out of memory");
        return NULL;
    }
    a->metrics = m;
    if (hooks)
        a->hooks = *hooks;
    a->wake_fd = -1;
    a->probe.fd = -1;
    for (unsigned i = 0; i < ADMIN_MAX_CONNS; i++)
        a->conns[i].fd = -1;

    const struct cfg_addr *addrs[ADMIN_NUM_LISTENERS] = {metrics_listen, control_listen};
    for (int l = 0; l < ADMIN_NUM_LISTENERS; l++) {
        a->listen_fd[l] = a->port[l] = -1;
        if (!addrs[l])
            continue;
        a->listen_fd[l] = open_listener(addrs[l], listener_names[l], err, err_len);
        if (a->listen_fd[l] < 0)
            goto fail;
        a->port[l] = bound_port(a->listen_fd[l]);
        /* The family shows on the first scrape, before any admin request was answered. */
        metrics_id id;
        char labels[64];
        snprintf(labels, sizeof labels, "listener=\"%s\",code=\"200\"", listener_names[l]);
        metrics_counter(m, REQUESTS_METRIC, REQUESTS_HELP, labels, &id);
    }
    a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (a->wake_fd < 0) {
        set_err(err, err_len, "admin: eventfd: %s", strerror(errno));
        goto fail;
    }
    a->started_at = now_ms();

    /* Process signals (SIGHUP, SIGTERM) belong to the main thread, never to this one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int ret = pthread_create(&a->thread, NULL, admin_main, a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret != 0) {
        set_err(err, err_len, "admin: pthread_create: %s", strerror(ret));
        goto fail;
    }
    return a;
fail:
    admin_free(a);
    return NULL;
}

void admin_stop(struct admin *a)
{
    if (!a)
        return;
    uint64_t one = 1;
    while (write(a->wake_fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
    pthread_join(a->thread, NULL);
    admin_free(a);
}

int admin_metrics_port(const struct admin *a)
{
    return a->port[ADMIN_METRICS];
}

int admin_control_port(const struct admin *a)
{
    return a->port[ADMIN_CONTROL];
}
