/* Connections to the backend: a per-worker pool of keep-alive connections, and the
 * response path from the backend to the client. */
#include "proxy/worker_internal.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/log.h"

static void upstream_close(struct worker *w, struct upstream *up);

static void set_state(struct worker *w, struct upstream *up, enum up_state state)
{
    if (up->state == UP_IDLE)
        metrics_gauge_add(w->mw, w->m.upstream_idle, -1);
    else
        metrics_gauge_add(w->mw, w->m.upstream_active, -1);
    up->state = state;
    if (state == UP_IDLE)
        metrics_gauge_add(w->mw, w->m.upstream_idle, 1);
    else
        metrics_gauge_add(w->mw, w->m.upstream_active, 1);
}

static void idle_unlink(struct worker *w, struct upstream *up)
{
    if (up->idle_prev != NULL)
        up->idle_prev->idle_next = up->idle_next;
    else
        w->idle_head = up->idle_next;
    if (up->idle_next != NULL)
        up->idle_next->idle_prev = up->idle_prev;
    up->idle_next = up->idle_prev = NULL;
    w->idle_count--;
}

static struct upstream *connect_new(struct worker *w)
{
    const struct rcfg *rc = w->cfg->rc;
    int fd = socket(rc->upstream_sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct upstream *up = calloc(1, sizeof(*up));
    if (up == NULL || worker_slot_alloc(w, &up->c) < 0) {
        free(up);
        close(fd);
        return NULL;
    }
    up->c.fd = fd;
    outq_init(&up->c.out);
    timer_init(&up->c.timer, tag_make(TAG_UP_TIMER, up->c.slot, up->c.gen));
    up->sa = rc->upstream_sa;
    up->sa_len = rc->upstream_len;
    up->state = UP_CONNECTING;
    metrics_gauge_add(w->mw, w->m.upstream_active, 1);
    w->upstreams++;
    if (loop_connect(w->loop, fd, (struct sockaddr *)&up->sa, up->sa_len,
                     tag_make(TAG_UP_CONNECT, up->c.slot, up->c.gen)) < 0) {
        up->c.closing = true;
        upstream_op_done(w, up);
        return NULL;
    }
    up->c.inflight++;
    conn_set_timer(w, &up->c, w->cfg->cfg->upstream.connect_timeout);
    return up;
}

struct upstream *upstream_acquire(struct worker *w, struct client *cl, bool fresh)
{
    struct upstream *up = NULL;
    /* Most recently used first: the connection least likely to have been closed by the
     * backend's own idle timeout. A pooled connection from an older config may point to
     * an old address: it is not reused. */
    while (!fresh && w->idle_head != NULL) {
        up = w->idle_head;
        idle_unlink(w, up);
        if (up->sa_len == w->cfg->rc->upstream_len &&
            memcmp(&up->sa, &w->cfg->rc->upstream_sa, up->sa_len) == 0)
            break;
        upstream_close(w, up);
        up = NULL;
    }
    if (up != NULL) {
        set_state(w, up, UP_BUSY);
        conn_set_timer(w, &up->c, w->cfg->cfg->upstream.response_timeout);
    } else {
        up = connect_new(w);
        if (up == NULL)
            return NULL;
    }
    up->client = cl;
    up->head_done = false;
    up->keep = false;
    up->parsed_len = 0;
    up->in.len = 0;
    return up;
}

void upstream_send(struct worker *w, struct upstream *up, struct slice *s, uint32_t off,
                   uint32_t len)
{
    if (outq_push(&up->c.out, s, off, len) < 0) {
        if (up->client != NULL)
            client_upstream_failed(w, up->client, UPERR_RESET, "out of memory");
        return;
    }
    if (up->state != UP_CONNECTING)
        conn_flush_later(w, &up->c);
}

static void upstream_free(struct worker *w, struct upstream *up)
{
    timer_cancel(&w->timers, &up->c.timer);
    close(up->c.fd);
    outq_clear(&up->c.out);
    bytes_free(&up->in);
    if (up->state == UP_IDLE)
        metrics_gauge_add(w->mw, w->m.upstream_idle, -1);
    else
        metrics_gauge_add(w->mw, w->m.upstream_active, -1);
    w->upstreams--;
    worker_slot_free(w, &up->c);
    free(up);
}

void upstream_op_done(struct worker *w, struct upstream *up)
{
    if (up->c.closing && up->c.inflight == 0)
        upstream_free(w, up);
}

static void upstream_close(struct worker *w, struct upstream *up)
{
    if (up->c.closing)
        return;
    up->c.closing = true;
    if (up->idle_next != NULL || up->idle_prev != NULL || w->idle_head == up)
        idle_unlink(w, up);
    timer_cancel(&w->timers, &up->c.timer);
    /* Only what the loop really owes is cancelled (see client_close). */
    if ((up->c.recv_armed || up->c.send_busy || up->state == UP_CONNECTING) &&
        loop_cancel_fd(w->loop, up->c.fd, tag_make(TAG_UP_CANCEL, up->c.slot, up->c.gen)) == 0)
        up->c.inflight++;
    upstream_op_done(w, up);
}

void upstream_close_idle(struct worker *w)
{
    while (w->idle_head != NULL)
        upstream_close(w, w->idle_head);
}

void upstream_release(struct worker *w, struct upstream *up, bool reusable)
{
    up->client = NULL;
    const struct cfg_upstream *cu = &w->cfg->cfg->upstream;
    if (!reusable || up->c.closing || up->c.recv_eof || w->draining || up->c.out.bytes > 0 ||
        up->in.len > 0 || w->idle_count >= cu->pool_size) {
        upstream_close(w, up);
        return;
    }
    set_state(w, up, UP_IDLE);
    up->reused = true;
    up->idle_prev = NULL;
    up->idle_next = w->idle_head;
    if (w->idle_head != NULL)
        w->idle_head->idle_prev = up;
    w->idle_head = up;
    w->idle_count++;
    conn_set_timer(w, &up->c, cu->idle_timeout);
    /* The receive stays armed while idle, so a close by the backend is seen at once. */
    if (!up->c.recv_armed || up->c.recv_paused)
        conn_arm_recv(w, &up->c, TAG_UP_RECV);
}

void upstream_resume(struct worker *w, struct upstream *up)
{
    if (up->c.recv_paused)
        conn_arm_recv(w, &up->c, TAG_UP_RECV);
}

static void fail(struct worker *w, struct upstream *up, enum up_error err, const char *why)
{
    struct client *cl = up->client;
    if (cl != NULL)
        client_upstream_failed(w, cl, err, why); /* releases up */
    else
        upstream_close(w, up);
}

void upstream_on_connect(struct worker *w, struct upstream *up, int res)
{
    up->c.inflight--;
    if (up->c.closing) {
        upstream_op_done(w, up);
        return;
    }
    if (res < 0) {
        char why[160];
        snprintf(why, sizeof(why), "connect to backend failed: %s", strerror(-res));
        log_warn("upstream connect failed", "\"worker\":%u,\"error\":\"%s\"", w->index,
                 strerror(-res));
        fail(w, up, UPERR_CONNECT, why);
        return;
    }
    set_state(w, up, UP_BUSY);
    conn_set_timer(w, &up->c, w->cfg->cfg->upstream.response_timeout);
    if (conn_arm_recv(w, &up->c, TAG_UP_RECV) < 0) {
        fail(w, up, UPERR_RESET, "out of memory");
        return;
    }
    conn_flush_later(w, &up->c);
}

void upstream_on_send(struct worker *w, struct upstream *up, int res)
{
    up->c.send_busy = false;
    up->c.inflight--;
    if (up->c.closing) {
        upstream_op_done(w, up);
        return;
    }
    if (res < 0) {
        /* EPIPE/ECONNRESET on a reused connection: the backend closed it while idle. */
        fail(w, up, res == -EPIPE ? UPERR_CLOSED : UPERR_RESET,
             "backend connection lost while sending the request");
        return;
    }
    outq_consume(&up->c.out, (size_t)res);
    if (up->c.out.bytes > 0)
        conn_flush_later(w, &up->c);
    struct client *cl = up->client;
    if (cl != NULL && up->c.out.bytes < out_low(w) && cl->c.recv_paused && !cl->x.req_done)
        conn_arm_recv(w, &cl->c, TAG_CLIENT_RECV);
}

/* Response payload for a route handler that watches the exchange. */
static void watched_body(void *arg, const char *data, size_t len)
{
    struct exchange *x = arg;
    if (x->watch && worker_handler->response_body != NULL)
        worker_handler->response_body(x->worker->hstate, (struct hx *)x, data, len);
}

/* Forward body bytes data[0, len) of the response; src is the slice they lie in (a
 * receive buffer) or NULL when they must be copied. Returns the bytes that belong to
 * the response, or -1 after a failure was reported. */
static ssize_t forward_body(struct worker *w, struct upstream *up, struct slice *src,
                            const char *data, size_t len)
{
    struct client *cl = up->client;
    struct exchange *x = &cl->x;
    size_t n = len;
    bool done = false;
    switch (x->resp_framing) {
    case HTTP1_BODY_NONE:
        n = 0;
        done = true;
        break;
    case HTTP1_BODY_LENGTH:
        n = len < x->resp_remaining ? len : (size_t)x->resp_remaining;
        x->resp_remaining -= n;
        done = x->resp_remaining == 0;
        break;
    case HTTP1_BODY_CHUNKED: {
        enum http1_error err = HTTP1_OK;
        ssize_t r = x->watch ? http1_chunked_decode(&x->resp_chunked, data, len,
                                                    &x->cfg->resp_limits, &done, &err,
                                                    watched_body, x)
                             : http1_chunked_scan(&x->resp_chunked, data, len,
                                                  &x->cfg->resp_limits, &done, &err);
        if (r < 0) {
            fail(w, up, UPERR_BAD_RESPONSE, "malformed chunked body from the backend");
            return -1;
        }
        n = (size_t)r;
        break;
    }
    case HTTP1_BODY_UNTIL_CLOSE:
        break;
    }
    if (n > 0 && x->watch && x->resp_framing != HTTP1_BODY_CHUNKED)
        watched_body(x, data, n);
    if (n > 0 && x->method != HTTP1_HEAD) {
        struct slice *s;
        uint32_t off = 0;
        if (src != NULL && !worker_bufs_low(w)) {
            s = slice_ref(src);
            off = (uint32_t)(data - src->data);
        } else {
            s = slice_copy(data, n);
        }
        if (s == NULL || client_queue(w, cl, s, off, (uint32_t)n) < 0) {
            fail(w, up, UPERR_RESET, "out of memory");
            return -1;
        }
    }
    if (done) {
        /* Bytes after the end of the response: the backend is out of step; don't reuse. */
        bool reusable = up->keep && n == len;
        x->up = NULL;
        upstream_release(w, up, reusable);
        x->resp_complete = true;
        client_response_done(w, cl);
    }
    return (ssize_t)n;
}

/* Parse the response head from data; forward it and whatever body follows. */
static void on_response_bytes(struct worker *w, struct upstream *up, struct slice *src,
                              const char *data, size_t len)
{
    while (len > 0 && up->client != NULL) {
        struct client *cl = up->client;
        struct exchange *x = &cl->x;
        if (up->head_done) {
            ssize_t n = forward_body(w, up, src, data, len);
            (void)n;
            return;
        }
        const char *p = data;
        size_t plen = len, prev = 0;
        bool from_in = up->in.len > 0;
        if (from_in) {
            if (bytes_append(&up->in, data, len) < 0) {
                fail(w, up, UPERR_RESET, "out of memory");
                return;
            }
            p = up->in.data;
            plen = up->in.len;
            prev = up->parsed_len;
        }
        struct http1_response resp;
        struct http1_header headers[MAX_HEADERS_HARD];
        enum http1_error err = HTTP1_OK;
        ssize_t r = http1_parse_response(p, plen, prev, &x->cfg->resp_limits, x->method, &resp,
                                         headers, MAX_HEADERS_HARD, &err);
        if (r == -2) {
            if (!from_in && bytes_append(&up->in, data, len) < 0) {
                fail(w, up, UPERR_RESET, "out of memory");
                return;
            }
            up->parsed_len = up->in.len;
            return;
        }
        if (r < 0 || resp.status == 101) {
            log_warn("bad response from backend", "\"reason\":\"%s\",\"status\":%d",
                     r < 0 ? http1_error_name(err) : "unexpected upgrade", r < 0 ? 0 : resp.status);
            fail(w, up, UPERR_BAD_RESPONSE, "malformed response from the backend");
            return;
        }
        if (resp.status < 200) {
            /* Interim responses: ringside already answered 100-continue itself; others
             * (103 Early Hints) go to the client, and the final response follows. */
            if (resp.status != 100) {
                struct slice *h = forward_response_head(&resp, x->request_id, NULL, NULL);
                if (h == NULL || client_queue(w, cl, h, 0, h->len) < 0) {
                    fail(w, up, UPERR_RESET, "out of memory");
                    return;
                }
                x->resp_started = false; /* the final response is still to come */
            }
        } else {
            up->head_done = true;
            up->keep = resp.msg.keep_alive && resp.msg.framing != HTTP1_BODY_UNTIL_CLOSE;
            x->status = resp.status;
            x->resp_framing = resp.msg.framing;
            x->resp_remaining = resp.msg.content_length;
            http1_chunked_init(&x->resp_chunked);
            x->upstream_ns = w->now - x->upstream_start_ns;
            if (resp.msg.framing == HTTP1_BODY_UNTIL_CLOSE || !x->req_done)
                x->keep_alive = false;
            bool close = !x->keep_alive || w->draining;
            x->keep_alive = !close;
            if (x->watch && worker_handler->response_head != NULL &&
                worker_handler->response_head(w->hstate, (struct hx *)x, &resp) == HANDLER_TAKEN)
                return; /* the handler answered, and let go of this connection */
            /* HTTP/1.0 clients close unless told otherwise (RFC 9112 §9.3). */
            const char *connection = close                   ? "close"
                                     : x->minor_version == 0 ? "keep-alive"
                                                             : NULL;
            struct slice *h = forward_response_head(&resp, x->request_id, connection,
                                                    x->resp_fields);
            if (h == NULL || client_queue(w, cl, h, 0, h->len) < 0) {
                fail(w, up, UPERR_RESET, "out of memory");
                return;
            }
            /* The backend has answered: from now on its silence is measured between reads. */
        }
        size_t head_len = (size_t)r;
        if (from_in) {
            /* The rest lies in up->in: copy it out before the buffer is reused. */
            size_t rest = up->in.len - head_len;
            struct slice *tail = rest > 0 ? slice_copy(up->in.data + head_len, rest) : NULL;
            up->in.len = 0;
            up->parsed_len = 0;
            if (rest > 0) {
                if (tail == NULL) {
                    fail(w, up, UPERR_RESET, "out of memory");
                    return;
                }
                on_response_bytes(w, up, tail, tail->data, rest);
                slice_unref(tail);
            } else if (up->head_done && up->client != NULL) {
                forward_body(w, up, NULL, "", 0);
            }
            return;
        }
        data += head_len;
        len -= head_len;
        if (len == 0 && up->head_done && up->client != NULL) {
            forward_body(w, up, NULL, "", 0); /* completes bodiless responses */
            return;
        }
    }
}

void upstream_on_recv(struct worker *w, struct upstream *up, const struct loop_event *ev)
{
    struct conn *c = &up->c;
    conn_recv_done(w, c, ev);
    if (ev->flags & LOOP_F_BUFFER) {
        struct slice *s = worker_buf_slice(w, ev->buf_id, (uint32_t)ev->res);
        if (c->closing) {
            /* nothing to do */
        } else if (up->client == NULL) {
            /* Bytes on an idle connection: the backend is out of step. */
            upstream_close(w, up);
        } else {
            conn_set_timer(w, c, w->cfg->cfg->upstream.response_timeout);
            on_response_bytes(w, up, s, s->data, s->len);
        }
        slice_unref(s);
    } else if (ev->res == 0 || (ev->res < 0 && ev->res != -ENOBUFS && ev->res != -ECANCELED)) {
        c->recv_eof = true;
        struct client *cl = up->client;
        if (c->closing) {
            /* nothing to do */
        } else if (cl == NULL) {
            upstream_close(w, up); /* the backend closed an idle connection */
        } else if (!up->head_done) {
            fail(w, up, ev->res == 0 ? UPERR_CLOSED : UPERR_RESET,
                 ev->res == 0 ? "backend closed the connection before answering"
                              : "backend connection reset before answering");
        } else if (cl->x.resp_framing == HTTP1_BODY_UNTIL_CLOSE && ev->res == 0) {
            cl->x.up = NULL;
            upstream_release(w, up, false);
            cl->x.resp_complete = true;
            client_response_done(w, cl);
        } else {
            fail(w, up, UPERR_RESET, "backend closed the connection mid-response");
        }
    }
    if (c->closing) {
        upstream_op_done(w, up);
        return;
    }
    struct client *cl = up->client;
    if (cl != NULL && !client_wants_more(w, cl))
        conn_pause_recv(w, c, TAG_UP_RECV, TAG_UP_CANCEL);
    else if (!c->recv_armed && !c->recv_paused)
        conn_arm_recv(w, c, TAG_UP_RECV);
}

void upstream_on_timer(struct worker *w, struct upstream *up)
{
    if (up->c.closing)
        return;
    switch (up->state) {
    case UP_CONNECTING:
        fail(w, up, UPERR_TIMEOUT, "timed out connecting to the backend");
        break;
    case UP_BUSY:
        fail(w, up, UPERR_TIMEOUT, "backend did not respond within upstream.response_timeout");
        break;
    case UP_IDLE:
        upstream_close(w, up);
        break;
    }
}
