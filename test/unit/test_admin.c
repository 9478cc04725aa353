#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "proxy/admin.h"
#include "proxy/config.h"
#include "proxy/metrics.h"

#ifndef RINGSIDE_VERSION
#define RINGSIDE_VERSION "dev"
#endif

/* The hooks' view of the proxy. The admin thread reads it, the test thread writes it. */
struct fake {
    pthread_mutex_t lock;
    bool up;
    bool have_backend;
    struct sockaddr_storage backend;
    socklen_t backend_len;
    int address_calls;
    int reload_calls;
    int reload_result;
    char reload_err[128];
};

struct fixture {
    struct fake fake;
    struct metrics *m;
    int backend_fd; /* a listening socket the readiness probe connects to */
    struct admin *admin;
    int metrics_port, control_port;
};

static bool fake_listeners_up(void *arg)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->lock);
    bool up = f->up;
    pthread_mutex_unlock(&f->lock);
    return up;
}

static int fake_backend_address(void *arg, struct sockaddr_storage *sa, socklen_t *len)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->lock);
    f->address_calls++;
    int ret = f->have_backend ? 0 : -1;
    if (f->have_backend) {
        *sa = f->backend;
        *len = f->backend_len;
    }
    pthread_mutex_unlock(&f->lock);
    return ret;
}

static int fake_reload(void *arg, char *err, size_t err_len)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->lock);
    f->reload_calls++;
    int ret = f->reload_result;
    if (ret != 0)
        snprintf(err, err_len, "%s", f->reload_err);
    pthread_mutex_unlock(&f->lock);
    return ret;
}

static int fake_get(struct fake *f, int *field)
{
    pthread_mutex_lock(&f->lock);
    int v = *field;
    pthread_mutex_unlock(&f->lock);
    return v;
}

static void loopback_addr(struct cfg_addr *addr, int port)
{
    memset(addr, 0, sizeof(*addr));
    addr->text = "127.0.0.1:0";
    addr->host = "127.0.0.1";
    addr->port = (uint16_t)port;
    addr->resolved = true;
    struct sockaddr_in *sin = (struct sockaddr_in *)&addr->sa;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr->sa_len = sizeof(*sin);
}

static int listen_loopback(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(fd, backlog), 0);
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void fake_set_backend(struct fake *f, int port)
{
    pthread_mutex_lock(&f->lock);
    struct sockaddr_in *sin = (struct sockaddr_in *)&f->backend;
    memset(&f->backend, 0, sizeof f->backend);
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->backend_len = sizeof(*sin);
    f->have_backend = true;
    pthread_mutex_unlock(&f->lock);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    pthread_mutex_init(&fx->fake.lock, NULL);
    fx->fake.up = true;
    int backend_port;
    fx->backend_fd = listen_loopback(16, &backend_port);
    fake_set_backend(&fx->fake, backend_port);

    fx->m = metrics_new(2);
    assert_non_null(fx->m);
    struct cfg_addr metrics_addr, control_addr;
    loopback_addr(&metrics_addr, 0);
    loopback_addr(&control_addr, 0);
    struct admin_hooks hooks = {
        .arg = &fx->fake,
        .listeners_up = fake_listeners_up,
        .backend_address = fake_backend_address,
        .reload = fake_reload,
    };
    char err[256] = "";
    fx->admin = admin_start(&metrics_addr, &control_addr, fx->m, &hooks, err, sizeof err);
    if (!fx->admin)
        fail_msg("admin_start: %s", err);
    fx->metrics_port = admin_metrics_port(fx->admin);
    fx->control_port = admin_control_port(fx->admin);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    admin_stop(fx->admin);
    metrics_free(fx->m);
    if (fx->backend_fd >= 0)
        close(fx->backend_fd);
    pthread_mutex_destroy(&fx->fake.lock);
    free(fx);
    return 0;
}

/* --- a small blocking HTTP client ------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_recv_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
}

static int connect_family(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int ret;
    if (family == AF_INET6) {
        struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                                    .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        ret = connect(fd, (struct sockaddr *)&sin6, sizeof sin6);
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ret = connect(fd, (struct sockaddr *)&sin, sizeof sin);
    }
    assert_int_equal(ret, 0);
    set_recv_timeout(fd, 10000);
    return fd;
}

static int connect_to(int port)
{
    return connect_family(AF_INET, port);
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

struct response {
    char *raw; /* NUL-terminated */
    size_t len;
    int status;
    const char *body;
    size_t body_len;
};

/* Read until EOF; returns false if the timeout hit first. */
static bool read_response(int fd, struct response *r)
{
    size_t cap = 4096;
    memset(r, 0, sizeof(*r));
    r->raw = malloc(cap);
    assert_non_null(r->raw);
    for (;;) {
        if (r->len + 1 == cap) {
            cap *= 2;
            r->raw = realloc(r->raw, cap);
            assert_non_null(r->raw);
        }
        ssize_t n = recv(fd, r->raw + r->len, cap - r->len - 1, 0);
        if (n == 0)
            break;
        if (n < 0) {
            r->raw[r->len] = '\0';
            return false;
        }
        r->len += (size_t)n;
    }
    r->raw[r->len] = '\0';
    if (sscanf(r->raw, "HTTP/1.1 %d ", &r->status) != 1)
        r->status = -1;
    const char *end = strstr(r->raw, "\r\n\r\n");
    r->body = end ? end + 4 : r->raw + r->len;
    r->body_len = (size_t)(r->raw + r->len - r->body);
    return true;
}

static void response_free(struct response *r)
{
    free(r->raw);
}

static int request(int port, const char *raw, struct response *r)
{
    int fd = connect_to(port);
    send_all(fd, raw, strlen(raw));
    assert_true(read_response(fd, r));
    close(fd);
    return r->status;
}

static bool has_header(const struct response *r, const char *line)
{
    char needle[256];
    snprintf(needle, sizeof needle, "\r\n%s\r\n", line);
    const char *head_end = strstr(r->raw, "\r\n\r\n");
    const char *hit = strstr(r->raw, needle);
    return hit && head_end && hit <= head_end;
}

static void assert_request(int port, const char *raw, int status, const char *body)
{
    struct response r;
    request(port, raw, &r);
    if (r.status != status || (body && strcmp(r.body, body) != 0))
        fail_msg("%s-> expected %d \"%s\", got:\n%s", raw, status, body ? body : "*", r.raw);
    response_free(&r);
}

/* --- tests ------------------------------------------------------------------------ */

static void test_ports(void **state)
{
    struct fixture *fx = *state;
    assert_true(fx->metrics_port > 0);
    assert_true(fx->control_port > 0);
    assert_int_not_equal(fx->metrics_port, fx->control_port);
}

static void test_healthz(void **state)
{
    struct fixture *fx = *state;
    struct response r;
    assert_int_equal(request(fx->metrics_port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "ok\n");
    assert_true(has_header(&r, "Content-Type: text/plain; charset=utf-8"));
    assert_true(has_header(&r, "Content-Length: 3"));
    assert_true(has_header(&r, "Connection: close"));
    response_free(&r);

    assert_int_equal(request(fx->metrics_port, "HEAD /healthz HTTP/1.1\r\n\r\n", &r), 200);
    assert_true(has_header(&r, "Content-Length: 3"));
    assert_int_equal(r.body_len, 0);
    response_free(&r);

    assert_request(fx->metrics_port, "GET /healthz?probe=1 HTTP/1.0\r\n\r\n", 200, "ok\n");
}

static void test_metrics_endpoint(void **state)
{
    struct fixture *fx = *state;
    metrics_id g, c;
    assert_int_equal(metrics_gauge(fx->m, "test_value", "A value.", "k=\"v\"", &g), 0);
    assert_int_equal(metrics_counter(fx->m, "test_events_total", "Events.", "", &c), 0);
    metrics_shared_set(fx->m, g, 42);
    metrics_add(metrics_worker(fx->m, 1), c, 7);

    struct response r;
    assert_int_equal(request(fx->metrics_port, "GET /metrics HTTP/1.1\r\n\r\n", &r), 200);
    assert_true(has_header(&r, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    assert_non_null(strstr(r.body, "# TYPE test_value gauge\ntest_value{k=\"v\"} 42\n"));
    assert_non_null(strstr(r.body, "\ntest_events_total 7\n"));
    /* The admin's own counter is there from the start. */
    assert_non_null(strstr(r.body, "# TYPE ringside_admin_requests_total counter\n"
                                   "ringside_admin_requests_total{listener=\"metrics\",code=\"200\"} 0\n"
                                   "ringside_admin_requests_total{listener=\"control\",code=\"200\"} 0\n"));
    char length[64];
    snprintf(length, sizeof length, "Content-Length: %zu", r.body_len);
    assert_true(has_header(&r, length));
    response_free(&r);

    assert_request(fx->metrics_port, "GET /nothing HTTP/1.1\r\n\r\n", 404, NULL);
    assert_request(fx->control_port, "GET /status HTTP/1.1\r\n\r\n", 200, NULL);
    assert_int_equal(request(fx->metrics_port, "GET /metrics HTTP/1.1\r\n\r\n", &r), 200);
    assert_non_null(strstr(r.body, "ringside_admin_requests_total{listener=\"metrics\",code=\"200\"} 1\n"));
    assert_non_null(strstr(r.body, "ringside_admin_requests_total{listener=\"control\",code=\"200\"} 1\n"));
    assert_non_null(strstr(r.body, "ringside_admin_requests_total{listener=\"metrics\",code=\"404\"} 1\n"));
    response_free(&r);

    assert_int_equal(request(fx->metrics_port, "HEAD /metrics HTTP/1.1\r\n\r\n", &r), 200);
    assert_int_equal(r.body_len, 0);
    response_free(&r);
}

/* A body larger than the server's send buffer can grow (4 MiB by default) plus what the
 * client buffers, so the server must stop on EAGAIN and resume on POLLOUT. */
static void test_metrics_large(void **state)
{
    struct fixture *fx = *state;
    char pad[513], labels[600];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    metrics_id id;
    for (int i = 0; i < 15000; i++) {
        snprintf(labels, sizeof labels, "series=\"%d\",pad=\"%s\"", i, pad);
        assert_int_equal(metrics_counter(fx->m, "big_total", NULL, labels, &id), 0);
    }
    int fd = connect_to(fx->metrics_port);
    int rcvbuf = 256 * 1024; /* fixed, so the kernel does not grow it while we sleep */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    send_all(fd, "GET /metrics HTTP/1.1\r\n\r\n", 25);
    usleep(300 * 1000);
    /* Meanwhile the admin serves others. */
    assert_request(fx->metrics_port, "GET /healthz HTTP/1.1\r\n\r\n", 200, "ok\n");
    struct response r;
    assert_true(read_response(fd, &r));
    close(fd);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len > 8000000);
    char length[64];
    snprintf(length, sizeof length, "Content-Length: %zu", r.body_len);
    assert_true(has_header(&r, length));
    snprintf(labels, sizeof labels, "big_total{series=\"14999\",pad=\"%s\"} 0\n", pad);
    assert_non_null(strstr(r.body, labels));
    response_free(&r);
}

static void test_readyz_ready(void **state)
{
    struct fixture *fx = *state;
    struct response r;
    assert_int_equal(request(fx->metrics_port, "GET /readyz HTTP/1.1\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "ready\n");
    response_free(&r);
    assert_int_equal(fake_get(&fx->fake, &fx->fake.address_calls), 1);
}

static void test_readyz_listeners_not_up(void **state)
{
    struct fixture *fx = *state;
    pthread_mutex_lock(&fx->fake.lock);
    fx->fake.up = false;
    pthread_mutex_unlock(&fx->fake.lock);
    assert_request(fx->metrics_port, "GET /readyz HTTP/1.1\r\n\r\n", 503, "listeners not up\n");
    assert_int_equal(fake_get(&fx->fake, &fx->fake.address_calls), 0);
}

static void test_readyz_backend_down(void **state)
{
    struct fixture *fx = *state;
    close(fx->backend_fd); /* nothing listens on that port any more */
    fx->backend_fd = -1;
    assert_request(fx->metrics_port, "GET /readyz HTTP/1.1\r\n\r\n", 503,
                   "backend unreachable: Connection refused\n");
}

static void test_readyz_address_unknown(void **state)
{
    struct fixture *fx = *state;
    pthread_mutex_lock(&fx->fake.lock);
    fx->fake.have_backend = false;
    pthread_mutex_unlock(&fx->fake.lock);
    assert_request(fx->metrics_port, "GET /readyz HTTP/1.1\r\n\r\n", 503,
                   "backend address unknown\n");
}

/* One probe per second however many requests; a stale result is probed again. */
static void test_readyz_cache(void **state)
{
    struct fixture *fx = *state;
    assert_request(fx->metrics_port, "GET /readyz HTTP/1.1\r\n\r\n", 200, "ready\n");
    close(fx->backend_fd);
    fx->backend_fd = -1;
    for (int i = 0; i < 5; i++)
        assert_request(fx->metrics_port, "GET /readyz HTTP/1.1\r\n\r\n", 200, "ready\n");
    assert_int_equal(fake_get(&fx->fake, &fx->fake.address_calls), 1);
    usleep(1100 * 1000);
    assert_request(fx->metrics_port, "GET /readyz HTTP/1.1\r\n\r\n", 503,
                   "backend unreachable: Connection refused\n");
    assert_int_equal(fake_get(&fx->fake, &fx->fake.address_calls), 2);
}

/* A backend whose accept queue is full drops our SYN: the probe times out after 1 s, and
 * the admin keeps serving meanwhile. */
static void test_readyz_timeout(void **state)
{
    struct fixture *fx = *state;
    int port;
    int backend = listen_loopback(0, &port);
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        connect(fillers[i], (struct sockaddr *)&sin, sizeof sin);
    }
    usleep(50 * 1000);
    fake_set_backend(&fx->fake, port);

    int64_t start = now_ms();
    int probe_fd = connect_to(fx->metrics_port);
    send_all(probe_fd, "GET /readyz HTTP/1.1\r\n\r\n", 24);
    int probe_fd2 = connect_to(fx->metrics_port);
    send_all(probe_fd2, "GET /readyz HTTP/1.1\r\n\r\n", 24);
    usleep(100 * 1000);
    assert_request(fx->metrics_port, "GET /healthz HTTP/1.1\r\n\r\n", 200, "ok\n");
    assert_true(now_ms() - start < 700);

    struct response r;
    assert_true(read_response(probe_fd, &r));
    int64_t waited = now_ms() - start;
    if (r.status == 503 && strstr(r.body, "Connection timed out")) {
        assert_true(waited >= 900 && waited < 3000);
    } else {
        /* Some kernels answer a full queue differently; then this test proves less. */
        print_message("probe did not time out (%d %s); timing not checked\n", r.status, r.body);
        assert_int_equal(r.status, 503);
    }
    response_free(&r);
    assert_true(read_response(probe_fd2, &r));
    assert_int_equal(r.status, 503);
    response_free(&r);
    /* Both waiters shared one connect attempt. */
    assert_int_equal(fake_get(&fx->fake, &fx->fake.address_calls), 1);
    close(probe_fd);
    close(probe_fd2);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(backend);
}

static void test_reload(void **state)
{
    struct fixture *fx = *state;
    struct response r;
    assert_int_equal(request(fx->control_port, "POST /reload HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r),
                     200);
    assert_string_equal(r.body, "{\"result\":\"ok\"}\n");
    assert_true(has_header(&r, "Content-Type: application/json"));
    response_free(&r);
    assert_int_equal(fake_get(&fx->fake, &fx->fake.reload_calls), 1);

    pthread_mutex_lock(&fx->fake.lock);
    fx->fake.reload_result = -1;
    snprintf(fx->fake.reload_err, sizeof fx->fake.reload_err,
             "ringside.yaml:3:5: unknown key \"lisen\"");
    pthread_mutex_unlock(&fx->fake.lock);
    assert_request(fx->control_port, "POST /reload HTTP/1.1\r\n\r\n", 500,
                   "{\"result\":\"error\",\"error\":\"ringside.yaml:3:5: unknown key \\\"lisen\\\"\"}\n");
    assert_int_equal(fake_get(&fx->fake, &fx->fake.reload_calls), 2);

    /* Invalid UTF-8 in the message still gives valid JSON. */
    pthread_mutex_lock(&fx->fake.lock);
    snprintf(fx->fake.reload_err, sizeof fx->fake.reload_err, "bad \xff byte");
    pthread_mutex_unlock(&fx->fake.lock);
    assert_request(fx->control_port, "POST /reload HTTP/1.1\r\n\r\n", 500,
                   "{\"result\":\"error\",\"error\":\"bad ? byte\"}\n");

    /* A body is read completely, even when it arrives in pieces, before the hook runs. */
    pthread_mutex_lock(&fx->fake.lock);
    fx->fake.reload_result = 0;
    pthread_mutex_unlock(&fx->fake.lock);
    int fd = connect_to(fx->control_port);
    const char *head = "POST /reload HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234";
    send_all(fd, head, strlen(head));
    usleep(100 * 1000);
    assert_int_equal(fake_get(&fx->fake, &fx->fake.reload_calls), 3);
    send_all(fd, "56789", 5);
    assert_true(read_response(fd, &r));
    close(fd);
    assert_int_equal(r.status, 200);
    response_free(&r);
    assert_int_equal(fake_get(&fx->fake, &fx->fake.reload_calls), 4);

    assert_int_equal(request(fx->control_port, "GET /reload HTTP/1.1\r\n\r\n", &r), 405);
    assert_true(has_header(&r, "Allow: POST"));
    assert_string_equal(r.body, "{\"result\":\"error\",\"error\":\"method not allowed\"}\n");
    response_free(&r);
    assert_int_equal(fake_get(&fx->fake, &fx->fake.reload_calls), 4);
}

static void test_reload_unsupported(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    struct cfg_addr addr;
    loopback_addr(&addr, 0);
    char err[256];
    struct admin *a = admin_start(NULL, &addr, m, NULL, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(admin_metrics_port(a), -1);
    assert_request(admin_control_port(a), "POST /reload HTTP/1.1\r\n\r\n", 501,
                   "{\"result\":\"error\",\"error\":\"reload not supported\"}\n");
    admin_stop(a);
    metrics_free(m);
}

static void test_status(void **state)
{
    struct fixture *fx = *state;
    struct response r;
    assert_int_equal(request(fx->control_port, "GET /status HTTP/1.1\r\n\r\n", &r), 200);
    json_error_t jerr;
    json_t *obj = json_loadb(r.body, r.body_len, 0, &jerr);
    assert_non_null(obj);
    assert_true(json_is_object(obj));
    assert_string_equal(json_string_value(json_object_get(obj, "version")), RINGSIDE_VERSION);
    json_t *uptime = json_object_get(obj, "uptime_seconds");
    assert_true(json_is_integer(uptime));
    assert_true(json_integer_value(uptime) >= 0 && json_integer_value(uptime) < 5);
    assert_int_equal(json_object_size(obj), 2);
    json_decref(obj);
    response_free(&r);
}

static void test_not_found_and_methods(void **state)
{
    struct fixture *fx = *state;
    struct response r;
    assert_request(fx->metrics_port, "GET /metricsx HTTP/1.1\r\n\r\n", 404, "not found\n");
    assert_request(fx->metrics_port, "GET /reload HTTP/1.1\r\n\r\n", 404, "not found\n");
    assert_request(fx->metrics_port, "POST /nothing HTTP/1.1\r\n\r\n", 404, "not found\n");
    assert_int_equal(request(fx->metrics_port, "POST /metrics HTTP/1.1\r\n\r\n", &r), 405);
    assert_true(has_header(&r, "Allow: GET, HEAD"));
    assert_string_equal(r.body, "method not allowed\n");
    response_free(&r);
    assert_request(fx->metrics_port, "DELETE /readyz HTTP/1.1\r\n\r\n", 405, NULL);
    assert_request(fx->metrics_port, "get /healthz HTTP/1.1\r\n\r\n", 405, NULL);

    assert_request(fx->control_port, "GET /metrics HTTP/1.1\r\n\r\n", 404,
                   "{\"result\":\"error\",\"error\":\"not found\"}\n");
    assert_int_equal(request(fx->control_port, "PUT /status HTTP/1.1\r\n\r\n", &r), 405);
    assert_true(has_header(&r, "Allow: GET, HEAD"));
    response_free(&r);
}

static void test_malformed(void **state)
{
    struct fixture *fx = *state;
    static const struct {
        const char *request;
        int status;
    } cases[] = {
        {"GET /healthz HTTP/1.1\n\n", 400},
        {"GET /healthz HTTP/1.1\r\nHost: x\n\r\n", 400},
        {"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400},
        {"GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},
        {"GET /healthz HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400},
        {"GET /healthz HTTP/1.1\r\n: empty\r\n\r\n", 400},
        {"GET healthz HTTP/1.1\r\n\r\n", 400},
        {"GET  /healthz HTTP/1.1\r\n\r\n", 400},
        {"GET /healthz\r\n\r\n", 400},
        {"GET /healthz HTTP/1.1 \r\n\r\n", 400},
        {"GET /healthz HTTP/1.x\r\n\r\n", 400},
        {"GET /healthz HTTP/2.0\r\n\r\n", 505},
        {" GET /healthz HTTP/1.1\r\n\r\n", 400},
        {"GET /healthz HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
        {"GET /healthz HTTP/1.1\r\nContent-Length:\r\n\r\n", 400},
        {"GET /healthz HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", 400},
        {"POST /reload HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413},
        {"POST /reload HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
        {"POST /reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_request(fx->metrics_port, cases[i].request, cases[i].status, NULL);
    /* Equal duplicates are fine; the body is read and ignored. */
    assert_request(fx->metrics_port,
                   "GET /healthz HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nxy", 200,
                   "ok\n");
    /* The control port answers in JSON. */
    assert_request(fx->control_port, "GET /status HTTP/1.1\n\n", 400,
                   "{\"result\":\"error\",\"error\":\"bad request\"}\n");

    /* A head over 8 KiB. */
    size_t big = 9000;
    char *raw = malloc(big + 1);
    assert_non_null(raw);
    memcpy(raw, "GET /healthz HTTP/1.1\r\nX: ", 26);
    memset(raw + 26, 'a', big - 26);
    raw[big] = '\0';
    assert_request(fx->metrics_port, raw, 431, "request head too large\n");
    /* Just under the limit is fine. */
    size_t fits = 8192;
    memset(raw + 26, 'a', fits - 30);
    memcpy(raw + fits - 4, "\r\n\r\n", 5);
    assert_int_equal(strlen(raw), 8192);
    assert_request(fx->metrics_port, raw, 200, "ok\n");
    free(raw);
}

/* A client that sends nothing, or half a head, does not hold up anyone else. */
static void test_slow_clients(void **state)
{
    struct fixture *fx = *state;
    int idle = connect_to(fx->metrics_port);
    int partial = connect_to(fx->metrics_port);
    int idle_control = connect_to(fx->control_port);
    send_all(partial, "GET /hea", 8);
    usleep(50 * 1000);

    int64_t start = now_ms();
    assert_request(fx->metrics_port, "GET /healthz HTTP/1.1\r\n\r\n", 200, "ok\n");
    assert_request(fx->control_port, "GET /status HTTP/1.1\r\n\r\n", 200, NULL);
    assert_true(now_ms() - start < 1000);

    /* The slow ones are still waiting, and one can still finish. */
    send_all(partial, "lthz HTTP/1.1\r\n\r\n", 17);
    struct response r;
    assert_true(read_response(partial, &r));
    assert_int_equal(r.status, 200);
    response_free(&r);
    close(partial);
    close(idle);
    close(idle_control);
}

/* Beyond 64 connections a client waits in the backlog until a slot frees. */
static void test_connection_limit(void **state)
{
    struct fixture *fx = *state;
    int idle[64];
    for (int i = 0; i < 64; i++)
        idle[i] = connect_to(fx->metrics_port);
    usleep(100 * 1000);
    int waiting = connect_to(fx->metrics_port); /* the kernel completes the handshake */
    send_all(waiting, "GET /healthz HTTP/1.1\r\n\r\n", 25);
    struct pollfd pfd = {.fd = waiting, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 300), 0);

    close(idle[0]);
    set_recv_timeout(waiting, 2000);
    struct response r;
    assert_true(read_response(waiting, &r));
    assert_int_equal(r.status, 200);
    response_free(&r);
    close(waiting);
    for (int i = 1; i < 64; i++)
        close(idle[i]);
}

/* A client silent for the read timeout (5 s) is closed. */
static void test_idle_timeout(void **state)
{
    struct fixture *fx = *state;
    int64_t start = now_ms();
    int fd = connect_to(fx->metrics_port);
    send_all(fd, "GET /healthz HTTP/1.1\r\n", 23);
    char c;
    ssize_t n = recv(fd, &c, 1, 0); /* SO_RCVTIMEO is 10 s */
    int64_t waited = now_ms() - start;
    assert_int_equal(n, 0);
    assert_true(waited >= 4900 && waited < 7000);
    close(fd);
}

static void test_start_errors(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    int port;
    int taken = listen_loopback(4, &port);
    struct cfg_addr busy, free_addr;
    loopback_addr(&busy, port);
    busy.text = "127.0.0.1:busy";
    loopback_addr(&free_addr, 0);
    char err[256] = "";
    assert_null(admin_start(&free_addr, &busy, m, NULL, err, sizeof err));
    assert_non_null(strstr(err, "control listen 127.0.0.1:busy: bind: Address already in use"));
    err[0] = '\0';
    assert_null(admin_start(&busy, &free_addr, m, NULL, err, sizeof err));
    assert_non_null(strstr(err, "metrics listen"));
    close(taken);

    /* A name that does not resolve. */
    struct cfg_addr unresolved = {.text = "nonexistent.invalid:0", .host = "nonexistent.invalid"};
    err[0] = '\0';
    assert_null(admin_start(&unresolved, NULL, m, NULL, err, sizeof err));
    assert_non_null(strstr(err, "metrics listen nonexistent.invalid:0: "));

    assert_null(admin_start(&free_addr, NULL, NULL, NULL, err, sizeof err));
    metrics_free(m);
}

/* An unresolved name is looked up at start. */
static void test_resolve_name(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    struct cfg_addr addr = {.text = "localhost:0", .host = "localhost"};
    char err[256] = "";
    struct admin *a = admin_start(&addr, NULL, m, NULL, err, sizeof err);
    if (!a)
        fail_msg("admin_start: %s", err);
    assert_true(admin_metrics_port(a) > 0);
    admin_stop(a);
    metrics_free(m);
}

static void test_ipv6(void **state)
{
    (void)state;
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (probe < 0 || bind(probe, (struct sockaddr *)&sin6, sizeof sin6) != 0) {
        if (probe >= 0)
            close(probe);
        skip();
    }
    close(probe);

    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    struct cfg_addr addr = {.text = "[::1]:0", .host = "::1", .resolved = true};
    memcpy(&addr.sa, &sin6, sizeof sin6);
    addr.sa_len = sizeof sin6;
    char err[256] = "";
    /* No backend_address hook: ready without a probe. */
    struct admin *a = admin_start(&addr, NULL, m, NULL, err, sizeof err);
    if (!a)
        fail_msg("admin_start: %s", err);
    int fd = connect_family(AF_INET6, admin_metrics_port(a));
    send_all(fd, "GET /readyz HTTP/1.1\r\n\r\n", 24);
    struct response r;
    assert_true(read_response(fd, &r));
    close(fd);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready\n");
    response_free(&r);
    admin_stop(a);
    metrics_free(m);
}

/* Stopping with connections in every state leaks nothing (checked under ASan). */
static void test_stop_with_clients(void **state)
{
    struct fixture *fx = *state;
    int idle = connect_to(fx->metrics_port);
    int partial = connect_to(fx->control_port);
    send_all(partial, "POST /reload HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 50);
    usleep(100 * 1000);
    admin_stop(fx->admin);
    fx->admin = NULL;
    char c;
    assert_int_equal(recv(idle, &c, 1, 0), 0);
    close(idle);
    close(partial);
    assert_int_equal(fake_get(&fx->fake, &fx->fake.reload_calls), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_healthz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz_listeners_not_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz_backend_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz_address_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
        cmocka_unit_test(test_reload_unsupported),
        cmocka_unit_test_setup_teardown(test_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_and_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_resolve_name),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test_setup_teardown(test_stop_with_clients, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
