/* Client connections: read, parse, answer in order, keep alive, time out, close. */
#include "proxy/worker_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/log.h"

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void client_close(struct worker *w, struct client *cl);
static void client_process_input(struct worker *w, struct client *cl);
static void forward_now(struct worker *w, struct client *cl, struct slice *head);

enum timer_mode { TM_NONE, TM_HEADER, TM_IDLE, TM_SEND };

/* The client's one timer, by what the connection waits for. The header deadline is
 * not moved by each byte, so a client trickling a head cannot hold the connection. */
static void client_update_timer(struct worker *w, struct client *cl)
{
    struct conn *c = &cl->c;
    const struct cfg_timeouts *t = &w->cfg->cfg->timeouts;
    uint8_t mode;
    if (c->closing || cl->detached)
        mode = TM_NONE;
    else if (c->out.bytes > 0)
        mode = TM_SEND;
    else if (cl->x.active)
        mode = cl->x.req_done ? TM_NONE : TM_IDLE;
    else if (cl->in.len > 0 || cl->requests == 0)
        mode = TM_HEADER;
    else
        mode = TM_IDLE;
    if (mode == TM_NONE) {
        timer_cancel(&w->timers, &c->timer);
    } else if (mode == TM_HEADER) {
        if (cl->timer_mode != TM_HEADER || !timer_armed(&c->timer))
            conn_set_timer(w, c, t->header);
    } else {
        conn_set_timer(w, c, mode == TM_SEND ? t->send : t->idle);
    }
    cl->timer_mode = mode;
}

/* ---- accept ---- */

void client_accept(struct worker *w, int fd)
{
    struct client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL || worker_slot_alloc(w, &cl->c) < 0) {
        free(cl);
        close(fd);
        return;
    }
    cl->c.fd = fd;
    cl->c.is_client = true;
    outq_init(&cl->c.out);
    timer_init(&cl->c.timer, tag_make(TAG_CLIENT_TIMER, cl->c.slot, cl->c.gen));
    w->clients++;
    metrics_gauge_add(w->mw, w->m.connections_active, 1);

    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    strcpy(cl->peer, "unknown");
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, cl->peer, sizeof(cl->peer));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, cl->peer,
                      sizeof(cl->peer));
    }

    uint32_t limit = w->cfg->cfg->limits.max_connections;
    if (atomic_fetch_add(&w->rt->connections, 1) >= limit) {
        atomic_fetch_sub(&w->rt->connections, 1);
        metrics_add(w->mw, w->m.rejected_max_connections, 1);
        struct slice *s = forward_error_response(503, "too many connections\n", "", true);
        if (s != NULL)
            outq_push(&cl->c.out, s, 0, s->len);
        cl->close_after_send = true;
        conn_flush_later(w, &cl->c);
        return;
    }
    cl->counted = true;
    if (conn_arm_recv(w, &cl->c, TAG_CLIENT_RECV) < 0) {
        client_close(w, cl);
        return;
    }
    client_update_timer(w, cl);
}

/* ---- closing ---- */

static void client_free(struct worker *w, struct client *cl)
{
    timer_cancel(&w->timers, &cl->c.timer);
    if (cl->c.fd >= 0)
        close(cl->c.fd);
    outq_clear(&cl->c.out);
    bytes_free(&cl->in);
    if (cl->counted)
        atomic_fetch_sub(&w->rt->connections, 1);
    if (!cl->detached)
        metrics_gauge_add(w->mw, w->m.connections_active, -1);
    w->clients--;
    worker_slot_free(w, &cl->c);
    free(cl);
}

void client_op_done(struct worker *w, struct client *cl)
{
    if (cl->c.closing && cl->c.inflight == 0)
        client_free(w, cl);
}

static void access_log(struct worker *w, struct client *cl)
{
    struct exchange *x = &cl->x;
    if (!x->cfg->cfg->log.access)
        return;
    log_info("access",
             "\"method\":\"%s\",\"target\":\"%s\",\"status\":%d,\"route\":\"%s\","
             "\"bytes\":%llu,\"duration_ms\":%.3f,\"upstream_ms\":%.3f,\"request_id\":\"%s\","
             "\"client\":\"%s\"%s%s%s",
             http1_method_name(x->method), x->target, x->status,
             x->cfg->cfg->routes[x->route].name, (unsigned long long)x->resp_bytes,
             (double)(w->now - x->start_ns) / 1e6, (double)x->upstream_ns / 1e6, x->request_id,
             cl->peer, x->error ? ",\"error\":\"" : "", x->error ? x->error : "",
             x->error ? "\"" : "");
}

/* The exchange is over (answered, failed or abandoned): count it and let go of what it
 * held. */
static void exchange_end(struct worker *w, struct client *cl)
{
    struct exchange *x = &cl->x;
    if (!x->active)
        return;
    if (x->up != NULL) {
        struct upstream *up = x->up;
        x->up = NULL;
        up->client = NULL;
        upstream_release(w, up, false);
    }
    timer_cancel(&w->timers, &x->deadline);
    if (x->handled) {
        const struct handler_ops *h = worker_handler;
        if (x->watch && h->response_end != NULL)
            h->response_end(w->hstate, (struct hx *)x, x->resp_complete);
        x->watch = false;
        if (h->end != NULL)
            h->end(w->hstate, (struct hx *)x);
    }
    if (x->fwd_head != NULL)
        slice_unref(x->fwd_head);
    if (x->upstream_start_ns != 0 && x->upstream_ns == 0)
        x->upstream_ns = w->now - x->upstream_start_ns;
    metrics_add(w->mw, wcfg_requests_series(w, x->cfg, x->route, x->method, x->status), 1);
    metrics_observe(w->mw, x->cfg->route_duration[x->route], (double)(w->now - x->start_ns) / 1e9);
    access_log(w, cl);
    if (x->head != NULL)
        slice_unref(x->head);
    wcfg_unref(w, x->cfg);
    memset(x, 0, sizeof(*x));
    cl->requests++;
}

static void client_close(struct worker *w, struct client *cl)
{
    if (cl->c.closing)
        return;
    if (cl->x.active) {
        if (!cl->x.resp_done && cl->x.status == 0)
            cl->x.status = 499; /* the client went away first, as nginx counts it */
        if (cl->x.error == NULL && !cl->x.resp_done)
            cl->x.error = "client closed";
        exchange_end(w, cl);
    }
    cl->c.closing = true;
    timer_cancel(&w->timers, &cl->c.timer);
    /* Only what the loop really owes is cancelled; the dispatcher's own hold on the
     * connection is not an operation. */
    if ((cl->c.recv_armed || cl->c.send_busy) &&
        loop_cancel_fd(w->loop, cl->c.fd,
                       tag_make(TAG_CLIENT_CANCEL, cl->c.slot, cl->c.gen)) == 0)
        cl->c.inflight++;
    client_op_done(w, cl);
}

/* ---- answering from ringside itself ---- */

static void queue_slice(struct worker *w, struct client *cl, struct slice *s)
{
    if (s == NULL || outq_push(&cl->c.out, s, 0, s->len) < 0) {
        client_close(w, cl);
        return;
    }
    conn_flush_later(w, &cl->c);
}

/* Answer status with body and close after sending; nothing was or will be forwarded. */
static void reject(struct worker *w, struct client *cl, int status, const char *body)
{
    cl->close_after_send = true;
    queue_slice(w, cl, forward_error_response(status, body, cl->x.active ? cl->x.request_id : "",
                                              true));
    if (!cl->c.closing)
        conn_pause_recv(w, &cl->c, TAG_CLIENT_RECV, TAG_CLIENT_CANCEL);
}

static void reject_parse(struct worker *w, struct client *cl, enum http1_error err)
{
    metrics_add(w->mw, w->m.rejected[err], 1);
    char body[96];
    snprintf(body, sizeof(body), "%s\n", http1_error_name(err));
    log_debug("request rejected", "\"reason\":\"%s\",\"client\":\"%s\"", http1_error_name(err),
              cl->peer);
    reject(w, cl, http1_error_status(err), body);
}

/* ---- exchanges ---- */

static bool idempotent(enum http1_method m)
{
    return m == HTTP1_GET || m == HTTP1_HEAD || m == HTTP1_OPTIONS || m == HTTP1_TRACE ||
           m == HTTP1_PUT || m == HTTP1_DELETE;
}

static uint32_t match_route(const struct cfg *cfg, const struct http1_request *req)
{
    for (size_t i = 0; i < cfg->num_routes; i++) {
        const struct cfg_route *r = &cfg->routes[i];
        size_t plen = strlen(r->prefix);
        if (r->methods != 0 && !(r->methods & (1u << req->method)))
            continue;
        if (req->target_len >= plen && memcmp(req->target, r->prefix, plen) == 0)
            return (uint32_t)i;
    }
    return (uint32_t)(cfg->num_routes - 1); /* the loader guarantees a catch-all last */
}

static bool usable_request_id(const struct http1_header *h)
{
    if (h->value_len == 0 || h->value_len > 64)
        return false;
    for (size_t i = 0; i < h->value_len; i++) {
        char ch = h->value[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.' || ch == ':'))
            return false;
    }
    return true;
}

static void start_exchange(struct worker *w, struct client *cl, const struct http1_request *req)
{
    struct exchange *x = &cl->x;
    memset(x, 0, sizeof(*x));
    x->active = true;
    x->worker = w;
    x->cfg = w->cfg;
    w->cfg->refs++;
    timer_init(&x->deadline, tag_make(TAG_CLIENT_DEADLINE, cl->c.slot, cl->c.gen));
    x->method = req->method;
    x->minor_version = req->msg.minor_version;
    x->keep_alive = req->msg.keep_alive && !w->draining;
    x->start_ns = w->now;
    x->route = match_route(w->cfg->cfg, req);
    if (w->cfg->cfg->log.access) /* only the access log reads it */
        log_json_escape(req->target, req->target_len, x->target, sizeof(x->target));

    const char *id = NULL;
    for (size_t i = 0; i < req->msg.num_headers; i++) {
        const struct http1_header *h = &req->msg.headers[i];
        if (http1_name_is(h, "x-request-id") && usable_request_id(h)) {
            memcpy(x->request_id, h->value, h->value_len);
            x->request_id[h->value_len] = '\0';
            id = x->request_id;
            break;
        }
    }
    if (id == NULL)
        worker_request_id(w, x->request_id);

    x->req_framing = req->msg.framing;
    x->req_remaining = req->msg.content_length;
    http1_chunked_init(&x->req_chunked);
    x->req_done = x->req_framing == HTTP1_BODY_NONE ||
                  (x->req_framing == HTTP1_BODY_LENGTH && x->req_remaining == 0);
    x->may_retry = x->req_done && idempotent(x->method) &&
                   w->cfg->cfg->upstream.retry_idempotent;

    const struct handler_ops *h = worker_handler;
    const void *section =
        h != NULL ? cfg_route_module(&w->cfg->cfg->routes[x->route], h->route_module) : NULL;
    if (section != NULL) {
        x->handled = true;
        enum handler_verdict v = h->request(w->hstate, (struct hx *)x, req, section);
        /* Answered already (a hit), or parked until the handler decides. */
        if (!x->active || cl->c.closing)
            return;
        if (v == HANDLER_TAKEN && x->req_done) {
            x->taken = true;
            return;
        }
    }

    if (req->expect_continue && !x->req_done)
        queue_slice(w, cl, slice_copy(continue_100, sizeof(continue_100) - 1));

    struct slice *head = x->fwd_head;
    x->fwd_head = NULL;
    if (head == NULL) {
        struct forward_info fi = {
            .peer = cl->peer,
            .request_id = x->request_id,
            .upstream_minor = req->msg.minor_version,
        };
        head = forward_request_head(req, &fi);
    }
    if (head == NULL) {
        x->status = 500;
        reject(w, cl, 500, "out of memory\n");
        return;
    }
    forward_now(w, cl, head);
}

/* Send head (taken over) to a backend connection. */
static void forward_now(struct worker *w, struct client *cl, struct slice *head)
{
    struct exchange *x = &cl->x;
    if (x->may_retry)
        x->head = slice_ref(head);
    x->up = upstream_acquire(w, cl, false);
    if (x->up == NULL) {
        slice_unref(head);
        client_upstream_failed(w, cl, UPERR_CONNECT, "cannot open a connection to the backend");
        return;
    }
    x->upstream_start_ns = w->now;
    metrics_add(w->mw, w->m.upstream_requests, 1);
    upstream_send(w, x->up, head, 0, head->len);
}

/* Forward request body bytes from data; returns how many belong to the body. */
static size_t take_body(struct worker *w, struct client *cl, const char *data, size_t len)
{
    struct exchange *x = &cl->x;
    size_t n;
    if (x->req_framing == HTTP1_BODY_LENGTH) {
        n = len < x->req_remaining ? len : (size_t)x->req_remaining;
        x->req_remaining -= n;
        x->req_done = x->req_remaining == 0;
    } else {
        bool done = false;
        enum http1_error err = HTTP1_OK;
        ssize_t r = http1_chunked_scan(&x->req_chunked, data, len, &x->cfg->req_limits, &done, &err);
        if (r < 0) {
            metrics_add(w->mw, w->m.rejected[err], 1);
            x->error = http1_error_name(err);
            if (!x->resp_started) {
                x->status = http1_error_status(err);
                char body[96];
                snprintf(body, sizeof(body), "%s\n", http1_error_name(err));
                /* The backend got part of a body it will never see end: drop it. */
                if (x->up != NULL) {
                    struct upstream *up = x->up;
                    x->up = NULL;
                    up->client = NULL;
                    upstream_release(w, up, false);
                }
                x->resp_done = true;
                reject(w, cl, x->status, body);
                exchange_end(w, cl);
            } else {
                client_close(w, cl);
            }
            return len;
        }
        n = (size_t)r;
        x->req_done = done;
    }
    if (n > 0 && x->up != NULL) {
        struct slice *s = slice_copy(data, n);
        if (s == NULL) {
            client_close(w, cl);
            return len;
        }
        upstream_send(w, x->up, s, 0, (uint32_t)n);
        /* Backpressure: a backend slower than the client holds the client's reads. */
        if (x->up->c.out.bytes > out_high(w))
            conn_pause_recv(w, &cl->c, TAG_CLIENT_RECV, TAG_CLIENT_CANCEL);
    }
    if (x->req_done && x->resp_done)
        client_response_done(w, cl);
    return n;
}

/* Consume what data holds: request heads and bodies, one exchange at a time. Returns
 * the bytes consumed; the rest waits in cl->in. */
static size_t process(struct worker *w, struct client *cl, const char *data, size_t len,
                      size_t prev_len)
{
    size_t off = 0;
    while (!cl->c.closing && !cl->close_after_send) {
        if (!cl->x.active) {
            if (off == len || w->draining || cl->c.out.bytes > out_high(w))
                break;
            struct http1_request req;
            struct http1_header headers[MAX_HEADERS_HARD];
            size_t max_headers = w->cfg->cfg->limits.max_headers;
            enum http1_error err = HTTP1_OK;
            ssize_t r = http1_parse_request(data + off, len - off, prev_len, &w->cfg->req_limits,
                                            &req, headers,
                                            max_headers < MAX_HEADERS_HARD ? max_headers
                                                                           : MAX_HEADERS_HARD,
                                            &err);
            if (r == -2) {
                cl->parsed_len = len - off;
                break;
            }
            if (r < 0) {
                reject_parse(w, cl, err);
                return len;
            }
            cl->parsed_len = 0;
            prev_len = 0;
            start_exchange(w, cl, &req);
            off += (size_t)r;
            continue;
        }
        if (!cl->x.req_done) {
            if (off == len)
                break;
            off += take_body(w, cl, data + off, len - off);
            continue;
        }
        break; /* the next request waits until this response is complete */
    }
    return off;
}

static void client_process_input(struct worker *w, struct client *cl)
{
    if (cl->in.len == 0 || cl->processing)
        return;
    cl->processing = true;
    size_t used = process(w, cl, cl->in.data, cl->in.len, cl->parsed_len);
    cl->processing = false;
    if (!cl->c.closing)
        bytes_consume(&cl->in, used);
}

void client_on_recv(struct worker *w, struct client *cl, const struct loop_event *ev)
{
    struct conn *c = &cl->c;
    conn_recv_done(w, c, ev);
    if (ev->flags & LOOP_F_BUFFER) {
        const char *data = loop_buf(w->loop, ev->buf_id);
        size_t n = (size_t)ev->res;
        if (!c->closing && !cl->close_after_send) {
            if (cl->in.len == 0) {
                /* The common case: a whole message in one buffer, parsed where it lies. */
                cl->processing = true;
                size_t used = process(w, cl, data, n, 0);
                cl->processing = false;
                if (!c->closing && used < n && bytes_append(&cl->in, data + used, n - used) < 0)
                    client_close(w, cl);
            } else if (bytes_append(&cl->in, data, n) < 0) {
                client_close(w, cl);
            } else {
                client_process_input(w, cl);
            }
        }
        loop_buf_release(w->loop, ev->buf_id);
    } else if (ev->res == 0 || (ev->res < 0 && ev->res != -ENOBUFS && ev->res != -ECANCELED)) {
        /* End of stream or a socket error. A client that half-closes after sending its
         * request still gets the answer; an idle one is simply closed. */
        c->recv_eof = true;
        if (!cl->x.active && c->out.bytes == 0)
            client_close(w, cl);
        else if (cl->x.active && !cl->x.req_done)
            client_close(w, cl);
        else
            cl->close_after_send = true;
    }
    if (c->closing) {
        client_op_done(w, cl);
        return;
    }
    /* Pipelined input beyond one head waits in memory: bound it. */
    if (cl->in.len > w->cfg->cfg->limits.max_head)
        conn_pause_recv(w, c, TAG_CLIENT_RECV, TAG_CLIENT_CANCEL);
    else if (!c->recv_armed && !c->recv_paused)
        conn_arm_recv(w, c, TAG_CLIENT_RECV);
    client_update_timer(w, cl);
}

void client_on_send(struct worker *w, struct client *cl, int res)
{
    struct conn *c = &cl->c;
    c->send_busy = false;
    c->inflight--;
    if (c->closing) {
        client_op_done(w, cl);
        return;
    }
    if (res < 0) {
        if (cl->x.active && cl->x.error == NULL)
            cl->x.error = "client send failed";
        client_close(w, cl);
        return;
    }
    outq_consume(&c->out, (size_t)res);
    if (c->out.bytes > 0) {
        conn_flush_later(w, c);
    } else if (cl->close_after_send && !cl->x.active) {
        client_close(w, cl);
        return;
    }
    if (c->out.bytes < out_low(w) && cl->x.active && cl->x.up != NULL)
        upstream_resume(w, cl->x.up);
    if (!cl->x.active && c->out.bytes <= out_high(w))
        client_process_input(w, cl);
    if (!c->closing)
        client_update_timer(w, cl);
}

void client_on_timer(struct worker *w, struct client *cl)
{
    if (cl->c.closing)
        return;
    /* A head begun and not finished, or no first request at all: 408. */
    if (cl->timer_mode == TM_HEADER && (cl->in.len > 0 || cl->requests == 0)) {
        metrics_add(w->mw, w->m.rejected_header_timeout, 1);
        reject(w, cl, 408, "header timeout\n");
        return;
    }
    if (cl->x.active && cl->x.error == NULL)
        cl->x.error = cl->timer_mode == TM_SEND ? "client send timeout" : "client body timeout";
    client_close(w, cl);
}

void client_abort(struct worker *w, struct client *cl, const char *why)
{
    if (cl->x.active && cl->x.error == NULL)
        cl->x.error = why;
    client_close(w, cl);
}

void client_drain(struct worker *w, struct client *cl)
{
    if (cl->c.closing)
        return;
    cl->x.keep_alive = false;
    if (!cl->x.active && cl->c.out.bytes == 0 && cl->in.len == 0)
        client_close(w, cl);
    else if (!cl->x.active)
        cl->close_after_send = true;
}

/* ---- called from upstream.c ---- */

bool client_wants_more(const struct worker *w, const struct client *cl)
{
    return cl->detached || cl->c.out.bytes < out_high(w);
}

int client_queue(struct worker *w, struct client *cl, struct slice *s, uint32_t off, uint32_t len)
{
    cl->x.resp_started = true;
    cl->x.resp_bytes += len;
    if (cl->detached) {
        slice_unref(s);
        return 0;
    }
    if (outq_push(&cl->c.out, s, off, len) < 0)
        return -ENOMEM;
    conn_flush_later(w, &cl->c);
    return 0;
}

void client_response_done(struct worker *w, struct client *cl)
{
    struct exchange *x = &cl->x;
    x->resp_done = true;
    if (x->upstream_ns == 0 && x->upstream_start_ns != 0)
        x->upstream_ns = w->now - x->upstream_start_ns;
    if (!x->req_done) {
        /* The backend answered before the body ended: the rest of it cannot be told
         * from the next request, so this connection ends with this response. */
        x->keep_alive = false;
    }
    bool keep = x->keep_alive && !w->draining;
    exchange_end(w, cl);
    if (!keep) {
        cl->close_after_send = true;
        if (cl->c.out.bytes == 0)
            client_close(w, cl);
        return;
    }
    client_process_input(w, cl);
    if (!cl->c.closing) {
        if (cl->in.len <= w->cfg->cfg->limits.max_head)
            conn_arm_recv(w, &cl->c, TAG_CLIENT_RECV); /* resumes a paused receive */
        client_update_timer(w, cl);
    }
}

void client_upstream_failed(struct worker *w, struct client *cl, enum up_error err,
                            const char *why)
{
    struct exchange *x = &cl->x;
    if (!x->active)
        return;
    metrics_add(w->mw, w->m.upstream_errors[err], 1);
    if (x->up != NULL) {
        struct upstream *up = x->up;
        bool reused = up->reused;
        x->up = NULL;
        up->client = NULL;
        upstream_release(w, up, false);
        /* A reused connection the backend had closed: try once more on a new one. */
        if (reused && x->may_retry && !x->retried && !x->resp_started &&
            (err == UPERR_CLOSED || err == UPERR_RESET) && x->head != NULL) {
            x->retried = true;
            x->up = upstream_acquire(w, cl, true);
            if (x->up != NULL) {
                metrics_add(w->mw, w->m.upstream_requests, 1);
                upstream_send(w, x->up, slice_ref(x->head), 0, x->head->len);
                return;
            }
        }
    }
    x->error = why;
    if (x->resp_started) {
        /* Part of the response is out: the only honest signal left is to cut the
         * connection, so the client sees a truncated message, never a complete one. */
        client_close(w, cl);
        return;
    }
    int status = err == UPERR_TIMEOUT ? 504 : 502;
    if (x->watch && worker_handler->upstream_failed != NULL) {
        if (worker_handler->upstream_failed(w->hstate, (struct hx *)x, status))
            return; /* answered another way (a stale copy) */
        if (!x->active || cl->c.closing)
            return;
    }
    x->status = status;
    if (cl->detached) {
        x->resp_done = true;
        client_response_done(w, cl);
        return;
    }
    char body[256];
    snprintf(body, sizeof(body), "%s: %s\n", x->status == 504 ? "upstream timeout" : "bad gateway",
             why);
    bool close_after = !x->req_done || !x->keep_alive || w->draining;
    struct slice *s = forward_error_response(x->status, body, x->request_id, close_after);
    x->resp_done = true;
    if (s == NULL || outq_push(&cl->c.out, s, 0, s->len) < 0) {
        client_close(w, cl);
        return;
    }
    x->resp_bytes += s->len;
    conn_flush_later(w, &cl->c);
    if (close_after) {
        x->keep_alive = false;
        x->req_done = true; /* whatever body is left is not read */
    }
    client_response_done(w, cl);
}

/* ---- the route handler's side of an exchange (proxy/handler.h) ---- */

static struct client *exchange_client(struct hx *hx)
{
    return (struct client *)((char *)hx - offsetof(struct client, x));
}

struct slice *hx_request_head(struct hx *hx, const struct http1_request *req, const char *extra,
                              bool drop_conditionals)
{
    struct exchange *x = (struct exchange *)hx;
    struct client *cl = exchange_client(hx);
    struct forward_info fi = {
        .peer = cl->peer,
        .request_id = x->request_id,
        .upstream_minor = req->msg.minor_version,
        .extra = extra,
        .drop_conditionals = drop_conditionals,
    };
    return forward_request_head(req, &fi);
}

int hx_prepare(struct hx *hx, const struct http1_request *req, const char *extra,
               bool drop_conditionals)
{
    struct exchange *x = (struct exchange *)hx;
    if (x->fwd_head != NULL)
        slice_unref(x->fwd_head);
    x->fwd_head = hx_request_head(hx, req, extra, drop_conditionals);
    return x->fwd_head != NULL ? 0 : -ENOMEM;
}

int hx_forward(struct hx *hx)
{
    struct exchange *x = (struct exchange *)hx;
    struct client *cl = exchange_client(hx);
    struct worker *w = x->worker;
    if (x->fwd_head == NULL)
        return -EINVAL;
    struct slice *head = x->fwd_head;
    x->fwd_head = NULL;
    x->taken = false;
    timer_cancel(&w->timers, &x->deadline);
    forward_now(w, cl, head);
    return 0;
}

static int status_of(const struct slice *head)
{
    /* "HTTP/1.1 NNN " */
    if (head->len < 12)
        return 0;
    const char *p = head->data + 9;
    if (p[0] < '1' || p[0] > '5' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
        return 0;
    return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

int hx_respond(struct hx *hx, struct slice *head, const char *extra, struct slice *body)
{
    struct exchange *x = (struct exchange *)hx;
    struct client *cl = exchange_client(hx);
    struct worker *w = x->worker;
    if (x->up != NULL) {
        /* The backend's answer was taken (a 304 that refreshed an entry): a bodiless one
         * leaves the connection in step for the next request. */
        struct upstream *up = x->up;
        bool reusable = up->head_done && x->resp_framing == HTTP1_BODY_NONE && up->keep;
        x->up = NULL;
        upstream_release(w, up, reusable);
    }
    timer_cancel(&w->timers, &x->deadline);
    x->taken = false;
    x->watch = false;
    x->status = status_of(head);
    bool close = !x->keep_alive || w->draining || !x->req_done || cl->close_after_send;
    /* The fields that differ per request, after the shared head: built by hand, since
     * this runs for every cache hit. */
    static const char id_name[] = "X-Request-Id: ";
    const char *conn = close                   ? "Connection: close\r\n"
                       : x->minor_version == 0 ? "Connection: keep-alive\r\n"
                                               : "";
    size_t extra_len = extra != NULL ? strlen(extra) : 0;
    size_t id_len = strlen(x->request_id), conn_len = strlen(conn);
    struct slice *tail = slice_new(extra_len + sizeof(id_name) - 1 + id_len + 2 + conn_len + 2);
    int rc = 0;
    if (tail == NULL) {
        rc = -ENOMEM;
    } else {
        char *p = tail->data;
        memcpy(p, extra != NULL ? extra : "", extra_len);
        p += extra_len;
        memcpy(p, id_name, sizeof(id_name) - 1);
        p += sizeof(id_name) - 1;
        memcpy(p, x->request_id, id_len);
        p += id_len;
        memcpy(p, "\r\n", 2);
        p += 2;
        memcpy(p, conn, conn_len);
        p += conn_len;
        memcpy(p, "\r\n", 2);
        p += 2;
        tail->len = (uint32_t)(p - tail->data);
    }
    bool send_body = body != NULL && x->method != HTTP1_HEAD && x->status != 304 &&
                     x->status != 204 && x->status >= 200;
    if (rc == 0) {
        rc = client_queue(w, cl, head, 0, head->len);
        head = NULL;
    }
    if (rc == 0) {
        rc = client_queue(w, cl, tail, 0, tail->len);
        tail = NULL;
    }
    if (rc == 0 && send_body) {
        rc = client_queue(w, cl, body, 0, body->len);
        body = NULL;
    }
    if (head != NULL)
        slice_unref(head);
    if (tail != NULL)
        slice_unref(tail);
    if (body != NULL)
        slice_unref(body);
    if (rc < 0) {
        x->error = "out of memory";
        client_close(w, cl);
        return rc;
    }
    x->keep_alive = !close;
    x->resp_done = true;
    client_response_done(w, cl);
    return 0;
}

void hx_set_deadline(struct hx *hx, uint64_t ms)
{
    struct exchange *x = (struct exchange *)hx;
    struct worker *w = x->worker;
    if (ms == 0)
        timer_cancel(&w->timers, &x->deadline);
    else
        timer_set(&w->timers, &x->deadline, w->now + ms * 1000000u);
}

void client_on_deadline(struct worker *w, struct client *cl)
{
    struct exchange *x = &cl->x;
    if (cl->c.closing || !x->active || !x->taken || worker_handler->deadline == NULL)
        return;
    worker_handler->deadline(w->hstate, (struct hx *)x);
}

/* A request of ringside's own: an exchange with no client socket behind it. */
int client_fetch(struct worker *w, uint32_t route, struct slice *head, void *state)
{
    struct client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL || worker_slot_alloc(w, &cl->c) < 0) {
        free(cl);
        slice_unref(head);
        return -ENOMEM;
    }
    cl->c.fd = -1;
    cl->c.is_client = true;
    cl->detached = true;
    outq_init(&cl->c.out);
    timer_init(&cl->c.timer, tag_make(TAG_CLIENT_TIMER, cl->c.slot, cl->c.gen));
    strcpy(cl->peer, "ringside");
    w->clients++;

    struct exchange *x = &cl->x;
    x->active = true;
    x->worker = w;
    x->cfg = w->cfg;
    w->cfg->refs++;
    timer_init(&x->deadline, tag_make(TAG_CLIENT_DEADLINE, cl->c.slot, cl->c.gen));
    x->method = HTTP1_GET;
    x->minor_version = 1;
    x->start_ns = w->now;
    x->route = route < w->cfg->cfg->num_routes ? route : (uint32_t)w->cfg->cfg->num_routes - 1;
    worker_request_id(w, x->request_id);
    const char *sp = memchr(head->data, ' ', head->len);
    const char *end = sp != NULL ? memchr(sp + 1, ' ', head->len - (size_t)(sp + 1 - head->data))
                                 : NULL;
    if (sp != NULL && end != NULL)
        log_json_escape(sp + 1, (size_t)(end - sp - 1), x->target, sizeof(x->target));
    x->req_done = true;
    x->handled = true;
    x->watch = true;
    x->hstate = state;
    forward_now(w, cl, head);
    return 0;
}
