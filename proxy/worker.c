/* A worker's thread: its loop, the dispatch of completions and timers, the flush of
 * queued writes once per turn, and config adoption between turns. */
#include "proxy/worker.h"
#include "proxy/worker_internal.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "proxy/log.h"

enum {
    EVENTS_PER_TURN = 256,
    QUEUE_DEPTH = 2048,
    LISTEN_BACKLOG = 4096,
};

/* ---- slots ---- */

int worker_slot_alloc(struct worker *w, struct conn *obj)
{
    if (w->free_slot == UINT32_MAX) {
        uint32_t cap = w->slots_cap ? w->slots_cap * 2 : 1024;
        if (cap > 0xffffff)
            return -ENOSPC;
        struct slot *s = realloc(w->slots, sizeof(*s) * cap);
        if (s == NULL)
            return -ENOMEM;
        for (uint32_t i = w->slots_cap; i < cap; i++) {
            s[i].obj = NULL;
            s[i].gen = 1;
            s[i].next_free = i + 1 < cap ? i + 1 : UINT32_MAX;
        }
        w->free_slot = w->slots_cap;
        w->slots = s;
        w->slots_cap = cap;
    }
    uint32_t i = w->free_slot;
    w->free_slot = w->slots[i].next_free;
    w->slots[i].obj = obj;
    obj->slot = i;
    obj->gen = w->slots[i].gen;
    return 0;
}

void worker_slot_free(struct worker *w, struct conn *obj)
{
    struct slot *s = &w->slots[obj->slot];
    s->obj = NULL;
    s->gen++; /* late completions for this slot now miss */
    s->next_free = w->free_slot;
    w->free_slot = obj->slot;
}

static struct conn *slot_lookup(struct worker *w, uint64_t tag)
{
    uint32_t i = tag_slot(tag);
    if (i >= w->slots_cap || w->slots[i].gen != tag_gen(tag))
        return NULL;
    return w->slots[i].obj;
}

/* ---- connection helpers ---- */

void conn_flush_later(struct worker *w, struct conn *c)
{
    if (c->on_flush_list)
        return;
    c->on_flush_list = true;
    c->flush_next = w->flush_list;
    w->flush_list = c;
}

/* Arm (or resume) the multishot receive. A pause whose cancel has not completed yet is
 * simply called off: the cancelled receive is re-armed when its last completion comes. */
int conn_arm_recv(struct worker *w, struct conn *c, enum tag_kind kind)
{
    c->recv_paused = false;
    if (c->recv_armed || c->closing || c->recv_eof || c->wants_buffers)
        return 0;
    int rc = loop_recv(w->loop, c->fd, tag_make(kind, c->slot, c->gen));
    if (rc < 0)
        return rc;
    c->recv_armed = true;
    c->recv_paused = false;
    c->inflight++;
    return 0;
}

/* Stop a multishot receive on purpose (backpressure); conn_arm_recv resumes it. */
void conn_pause_recv(struct worker *w, struct conn *c, enum tag_kind recv_kind,
                     enum tag_kind cancel_kind)
{
    if (!c->recv_armed || c->recv_paused || c->closing)
        return;
    if (loop_cancel_op(w->loop, c->fd, tag_make(recv_kind, c->slot, c->gen),
                       tag_make(cancel_kind, c->slot, c->gen)) == 0) {
        c->recv_paused = true;
        c->inflight++;
    }
}

void conn_set_timer(struct worker *w, struct conn *c, uint64_t ms)
{
    if (timer_set(&w->timers, &c->timer, w->now + ms * 1000000u) < 0)
        log_error("timer", "\"error\":\"out of memory\"");
}

static void conn_send(struct worker *w, struct conn *c, enum tag_kind kind)
{
    if (c->send_busy || c->closing || c->out.bytes == 0)
        return;
    unsigned n = outq_iov(&c->out, c->iov, MAX_IOV);
    memset(&c->msg, 0, sizeof(c->msg));
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = n;
    if (loop_send(w->loop, c->fd, &c->msg, tag_make(kind, c->slot, c->gen)) < 0)
        return; /* out of memory: the next flush tries again */
    c->send_busy = true;
    c->inflight++;
}

/* One sendmsg per connection per turn, of everything queued (Redis's beforeSleep). */
static void flush_all(struct worker *w)
{
    while (w->flush_list != NULL) {
        struct conn *c = w->flush_list;
        w->flush_list = c->flush_next;
        c->on_flush_list = false;
        /* The slot says which kind of connection this is. */
        conn_send(w, c, c->is_client ? TAG_CLIENT_SEND : TAG_UP_SEND);
    }
}

static void conn_release_hold(struct worker *w, struct conn *c);

void conn_recv_done(struct worker *w, struct conn *c, const struct loop_event *ev)
{
    if (ev->flags & LOOP_F_MORE)
        return;
    c->recv_armed = false;
    c->inflight--;
    if (ev->res == -ENOBUFS && !c->closing) {
        /* Waiting for buffers counts as an operation in flight, so a connection closed
         * meanwhile stays allocated until the list lets go of it. */
        metrics_add(w->mw, w->m.recv_buffer_waits, 1);
        c->wants_buffers = true;
        c->inflight++;
        c->bufwait_next = w->bufwait_list;
        w->bufwait_list = c;
    }
}

/* Re-arm the receives that ran out of buffers once buffers are back; let go of closed
 * connections on the list at once. */
static void rearm_buffer_waiters(struct worker *w)
{
    if (w->bufwait_list == NULL)
        return;
    bool low = worker_bufs_low(w);
    struct conn *list = w->bufwait_list;
    w->bufwait_list = NULL;
    while (list != NULL) {
        struct conn *c = list;
        list = c->bufwait_next;
        if (low && !c->closing) {
            c->bufwait_next = w->bufwait_list;
            w->bufwait_list = c;
            continue;
        }
        c->wants_buffers = false;
        conn_arm_recv(w, c, c->is_client ? TAG_CLIENT_RECV : TAG_UP_RECV);
        conn_release_hold(w, c);
    }
}

/* ---- provided buffers as slices ---- */

static void release_buffer_slice(struct slice *s)
{
    loop_buf_release(s->owner, (uint16_t)s->id);
}

struct slice *worker_buf_slice(struct worker *w, uint16_t id, uint32_t n)
{
    struct slice *s = &w->bufslices[id];
    atomic_store_explicit(&s->refs, 1, memory_order_relaxed);
    s->len = n;
    s->data = loop_buf(w->loop, id);
    return s;
}

/* Sending received bytes as they are holds their buffer until the send completes. Past
 * three quarters of the buffers held, copy instead, so slow clients cannot starve
 * every receive of buffers. */
bool worker_bufs_low(const struct worker *w)
{
    return loop_bufs_held(w->loop) * 4 > loop_buf_count(w->loop) * 3;
}

/* ---- config ---- */

static struct wcfg *wcfg_new(struct worker *w, struct rcfg *rc)
{
    const struct cfg *cfg = rc->cfg;
    struct wcfg *wc = calloc(1, sizeof(*wc));
    if (wc == NULL)
        return NULL;
    wc->route_duration = calloc(cfg->num_routes, sizeof(metrics_id));
    wc->series_cap = 256;
    wc->series = calloc(wc->series_cap, sizeof(*wc->series));
    if (wc->route_duration == NULL || wc->series == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->num_routes; i++) {
        char name[256], labels[300];
        metrics_escape_label(cfg->routes[i].name, name, sizeof(name));
        snprintf(labels, sizeof(labels), "route=\"%s\"", name);
        if (metrics_histogram(w->rt->metrics, "ringside_http_request_duration_seconds",
                              "Time from a request's head to the end of its response.",
                              labels, metrics_latency_buckets, metrics_latency_buckets_count,
                              &wc->route_duration[i]) < 0)
            goto fail;
    }
    wc->rc = rc;
    wc->cfg = cfg;
    wc->refs = 1;
    wc->req_limits = (struct http1_limits){
        .max_request_line = cfg->limits.max_request_line,
        .max_head = cfg->limits.max_head,
        .max_headers = cfg->limits.max_headers,
        .max_chunk_ext = cfg->limits.max_chunk_ext,
        .max_body = cfg->limits.max_body,
    };
    wc->resp_limits = wc->req_limits;
    wc->resp_limits.max_body = 0;
    wc->resp_limits.max_request_line = cfg->limits.max_head; /* a status line */
    return wc;
fail:
    free(wc->route_duration);
    free(wc->series);
    free(wc);
    return NULL;
}

void wcfg_unref(struct worker *w, struct wcfg *wc)
{
    (void)w;
    if (--wc->refs > 0)
        return;
    rcfg_unref(wc->rc);
    free(wc->route_duration);
    free(wc->series);
    free(wc);
}

metrics_id wcfg_requests_series(struct worker *w, struct wcfg *wc, uint32_t route,
                                enum http1_method method, int code)
{
    uint32_t key = (route + 1) << 16 | (uint32_t)method << 10 | (uint32_t)code;
    uint32_t mask = wc->series_cap - 1;
    uint32_t i = (key * 2654435761u) & mask;
    while (wc->series[i].key != 0) {
        if (wc->series[i].key == key)
            return wc->series[i].id;
        i = (i + 1) & mask;
    }
    char name[256], labels[400];
    metrics_escape_label(wc->cfg->routes[route].name, name, sizeof(name));
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",code=\"%d\"", name,
             http1_method_name(method), code);
    metrics_id id = 0;
    if (metrics_counter(w->rt->metrics, "ringside_http_requests_total",
                        "Requests answered, by route, method and status code.", labels, &id) < 0)
        return 0;
    /* Keep the table at most half full; past that, new series are looked up afresh. */
    if (wc->series_count * 2 < wc->series_cap) {
        wc->series[i].key = key;
        wc->series[i].id = id;
        wc->series_count++;
    }
    return id;
}

static void adopt_config(struct worker *w)
{
    uint64_t gen = atomic_load_explicit(&w->rt->generation, memory_order_acquire);
    if (gen == w->cfg_generation)
        return;
    struct rcfg *rc = runtime_config(w->rt);
    struct wcfg *wc = wcfg_new(w, rc);
    if (wc == NULL) {
        rcfg_unref(rc);
        log_error("config not adopted", "\"worker\":%u,\"error\":\"out of memory\"", w->index);
        return;
    }
    /* Requests in flight keep their reference to the old one. */
    if (w->cfg != NULL)
        wcfg_unref(w, w->cfg);
    w->cfg = wc;
    w->cfg_generation = rc->generation;
}

/* ---- request ids ---- */

static uint64_t next_random(struct worker *w)
{
    /* xorshift128+: fast, and ids need to be unique, not secret. */
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return w->rng[1] + s0;
}

void worker_request_id(struct worker *w, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = next_random(w), b = next_random(w);
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (i * 4)) & 15];
        out[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    out[32] = '\0';
}

/* ---- drain ---- */

static void begin_drain(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    if (w->accepting) {
        /* Closing the listener makes the kernel refuse new connections to this worker
         * at once; the accept completes cancelled. */
        loop_cancel_fd(w->loop, w->listen_fd, tag_make(TAG_LISTEN_CANCEL, 0, 0));
    }
    w->drain_deadline = w->now + w->cfg->cfg->timeouts.drain * 1000000u;
    timer_init(&w->drain_timer, tag_make(TAG_DRAIN_TIMER, 0, 0));
    timer_set(&w->timers, &w->drain_timer, w->drain_deadline);
    for (uint32_t i = 0; i < w->slots_cap; i++) {
        struct conn *c = w->slots[i].obj;
        if (c != NULL && c->is_client)
            client_drain(w, (struct client *)c);
    }
    upstream_close_idle(w);
}

static void force_close_all(struct worker *w)
{
    for (uint32_t i = 0; i < w->slots_cap; i++) {
        struct conn *c = w->slots[i].obj;
        if (c != NULL && c->is_client)
            client_abort(w, (struct client *)c, "drain timeout");
    }
}

/* ---- dispatch ---- */

static void on_accept(struct worker *w, const struct loop_event *ev)
{
    if (ev->res >= 0) {
        if (w->draining)
            close(ev->res);
        else
            client_accept(w, ev->res);
    } else if (ev->res != -ECANCELED) {
        log_warn("accept failed", "\"worker\":%u,\"error\":\"%s\"", w->index, strerror(-ev->res));
    }
    if (!(ev->flags & LOOP_F_MORE)) {
        w->accepting = false;
        if (!w->draining && loop_accept(w->loop, w->listen_fd, tag_make(TAG_ACCEPT, 0, 0)) == 0)
            w->accepting = true;
        else if (w->draining && w->listen_fd >= 0) {
            close(w->listen_fd);
            w->listen_fd = -1;
        }
    }
}

/* Drop one count of c's operations in flight and free it if it was the last of a
 * closed connection. */
static void conn_release_hold(struct worker *w, struct conn *c)
{
    c->inflight--;
    if (c->is_client)
        client_op_done(w, (struct client *)c);
    else
        upstream_op_done(w, (struct upstream *)c);
}

/* ---- work posted from other threads ---- */

static void run_posts(struct worker *w, void *ws)
{
    pthread_mutex_lock(&w->post_lock);
    struct post *p = w->posts;
    w->posts = NULL;
    pthread_mutex_unlock(&w->post_lock);
    /* The list is newest first: run in the order posted. */
    struct post *ordered = NULL;
    while (p != NULL) {
        struct post *next = p->next;
        p->next = ordered;
        ordered = p;
        p = next;
    }
    while (ordered != NULL) {
        struct post *next = ordered->next;
        ordered->fn(ws, ordered->arg);
        free(ordered);
        ordered = next;
    }
}

int worker_post(struct worker *w, void (*fn)(void *ws, void *arg), void *arg)
{
    struct post *p = malloc(sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&w->post_lock);
    bool stopped = w->stopped;
    if (!stopped) {
        p->next = w->posts;
        w->posts = p;
    }
    pthread_mutex_unlock(&w->post_lock);
    if (stopped) {
        free(p);
        return -ENOENT;
    }
    worker_wake(w);
    return 0;
}

static void dispatch(struct worker *w, const struct loop_event *ev)
{
    enum tag_kind kind = tag_kind(ev->tag);
    if (kind == TAG_ACCEPT) {
        on_accept(w, ev);
        return;
    }
    if (kind == TAG_LISTEN_CANCEL)
        return; /* the accept's own completion ends it */
    if (kind == TAG_WAKE) {
        if (atomic_load(&w->rt->draining))
            begin_drain(w);
        /* Posted work keeps arriving while draining (a waiter woken by another worker). */
        loop_read(w->loop, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf),
                  tag_make(TAG_WAKE, 0, 0));
        adopt_config(w); /* posted work may be about a config just published */
        run_posts(w, w->hstate);
        return;
    }
    if (kind >= TAG_HANDLER_FIRST && kind <= TAG_HANDLER_LAST) {
        if (worker_handler != NULL && worker_handler->event != NULL)
            worker_handler->event(w->hstate, ev);
        else if (ev->flags & LOOP_F_BUFFER)
            loop_buf_release(w->loop, ev->buf_id);
        return;
    }
    struct conn *c = slot_lookup(w, ev->tag);
    if (c == NULL) {
        /* The object is gone: only a buffer may need to go back. */
        if (ev->flags & LOOP_F_BUFFER)
            loop_buf_release(w->loop, ev->buf_id);
        return;
    }
    /* Hold the object across its handler: whatever the handler closes is freed after
     * it returns, never under it. */
    c->inflight++;
    switch (kind) {
    case TAG_CLIENT_RECV:
        client_on_recv(w, (struct client *)c, ev);
        break;
    case TAG_CLIENT_SEND:
        client_on_send(w, (struct client *)c, ev->res);
        break;
    case TAG_CLIENT_CANCEL:
        c->inflight--;
        client_op_done(w, (struct client *)c);
        break;
    case TAG_UP_CONNECT:
        upstream_on_connect(w, (struct upstream *)c, ev->res);
        break;
    case TAG_UP_RECV:
        upstream_on_recv(w, (struct upstream *)c, ev);
        break;
    case TAG_UP_SEND:
        upstream_on_send(w, (struct upstream *)c, ev->res);
        break;
    case TAG_UP_CANCEL:
        c->inflight--;
        upstream_op_done(w, (struct upstream *)c);
        break;
    default:
        break;
    }
    conn_release_hold(w, c);
}

static void run_timers(struct worker *w)
{
    struct timer *t;
    while ((t = timer_pop_expired(&w->timers, w->now)) != NULL) {
        enum tag_kind kind = tag_kind(t->tag);
        if (kind == TAG_DRAIN_TIMER) {
            force_close_all(w);
            continue;
        }
        if (kind >= TAG_HANDLER_FIRST && kind <= TAG_HANDLER_LAST) {
            if (worker_handler != NULL && worker_handler->timer != NULL)
                worker_handler->timer(w->hstate, t->tag);
            continue;
        }
        struct conn *c = slot_lookup(w, t->tag);
        if (c == NULL)
            continue;
        c->inflight++;
        if (kind == TAG_CLIENT_TIMER)
            client_on_timer(w, (struct client *)c);
        else if (kind == TAG_CLIENT_DEADLINE)
            client_on_deadline(w, (struct client *)c);
        else
            upstream_on_timer(w, (struct upstream *)c);
        conn_release_hold(w, c);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    log_thread_batches();
    /* The ring is sized once, by the config the worker starts with. */
    struct rcfg *start_cfg = runtime_config(w->rt);
    struct loop_options opt = {
        .backend = w->rt->backend,
        .queue_depth = QUEUE_DEPTH,
        .buf_count = start_cfg->cfg->limits.recv_buffers,
        .buf_size = start_cfg->cfg->limits.recv_buffer_size,
    };
    rcfg_unref(start_cfg);
    int rc = loop_new(&opt, &w->loop);
    if (rc < 0) {
        log_error("worker loop failed", "\"worker\":%u,\"backend\":\"%s\",\"error\":\"%s\"",
                  w->index, loop_backend_name(opt.backend), strerror(-rc));
        log_flush_thread();
        return NULL;
    }
    w->bufslices = calloc(opt.buf_count, sizeof(*w->bufslices));
    if (w->bufslices == NULL)
        goto out;
    for (unsigned i = 0; i < opt.buf_count; i++) {
        w->bufslices[i].release = release_buffer_slice;
        w->bufslices[i].owner = w->loop;
        w->bufslices[i].id = i;
    }
    w->now = runtime_now_ns();
    w->wall = runtime_wall();
    adopt_config(w);
    if (w->cfg == NULL)
        goto out;
    if (worker_handler != NULL && worker_handler->worker_start != NULL) {
        w->hstate = worker_handler->worker_start((struct hw *)w);
        if (w->hstate == NULL) {
            log_error("route handler failed to start", "\"worker\":%u", w->index);
            goto out;
        }
    }
    if (loop_accept(w->loop, w->listen_fd, tag_make(TAG_ACCEPT, 0, 0)) < 0 ||
        loop_read(w->loop, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf),
                  tag_make(TAG_WAKE, 0, 0)) < 0)
        goto out;
    w->accepting = true;
    atomic_fetch_add(&w->rt->workers_listening, 1);
    if (atomic_load(&w->rt->draining))
        begin_drain(w);

    struct loop_event evs[EVENTS_PER_TURN];
    while (!w->draining || w->clients > 0 || w->accepting) {
        int64_t wait_ns = timer_next_in(&w->timers, w->now);
        int n = loop_wait(w->loop, evs, EVENTS_PER_TURN, wait_ns);
        if (n < 0) {
            log_error("loop wait failed", "\"worker\":%u,\"error\":\"%s\"", w->index,
                      strerror(-n));
            break;
        }
        w->now = runtime_now_ns();
        w->wall = runtime_wall();
        for (int i = 0; i < n; i++)
            dispatch(w, &evs[i]);
        run_timers(w);
        rearm_buffer_waiters(w);
        flush_all(w);
        adopt_config(w);
        log_flush_thread();
    }
out:
    upstream_close_idle(w);
    /* Let the loop hand back what is still outstanding before it goes. */
    for (int spins = 0; spins < 100 && (w->upstreams > 0 || w->clients > 0); spins++) {
        struct loop_event evs2[64];
        int n = loop_wait(w->loop, evs2, 64, 10 * 1000000);
        for (int i = 0; i < n; i++)
            dispatch(w, &evs2[i]);
    }
    pthread_mutex_lock(&w->post_lock);
    w->stopped = true;
    pthread_mutex_unlock(&w->post_lock);
    run_posts(w, w->hstate);
    if (w->hstate != NULL && worker_handler->worker_stop != NULL)
        worker_handler->worker_stop(w->hstate);
    w->hstate = NULL;
    log_debug("worker stopped", "\"worker\":%u", w->index);
    log_flush_thread();
    return NULL;
}

/* ---- start / stop ---- */

static int bind_listener(const struct cfg_addr *a, char *err, size_t err_len)
{
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_len, "listen %s: socket: %s", a->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->sa, a->sa_len) < 0 ||
        listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, err_len, "listen %s: %s", a->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int worker_start(struct runtime *rt, unsigned index, struct worker **out, char *err,
                 size_t err_len)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    w->index = index;
    w->rt = rt;
    pthread_mutex_init(&w->post_lock, NULL);
    w->mw = metrics_worker(rt->metrics, index);
    w->free_slot = UINT32_MAX;
    w->listen_fd = -1;
    if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng)) {
        w->rng[0] = runtime_now_ns() ^ ((uint64_t)index << 32);
        w->rng[1] = (uint64_t)getpid() * 0x9e3779b97f4a7c15u;
    }
    w->rng[0] |= 1;

    struct rcfg *rc = runtime_config(rt);
    w->listen_fd = bind_listener(&rc->cfg->listen, err, err_len);
    rcfg_unref(rc);
    if (w->listen_fd < 0)
        goto fail;
    w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->wake_fd < 0) {
        snprintf(err, err_len, "eventfd: %s", strerror(errno));
        goto fail_listen;
    }

    struct metrics *m = rt->metrics;
    struct worker_metrics *wm = &w->m;
    int mrc = 0;
    mrc |= metrics_gauge(m, "ringside_connections_active", "Client connections open.", "",
                         &wm->connections_active);
    mrc |= metrics_counter(m, "ringside_upstream_requests_total",
                           "Requests sent to the backend, retries included.", "",
                           &wm->upstream_requests);
    mrc |= metrics_gauge(m, "ringside_upstream_connections",
                         "Connections to the backend, by state.", "state=\"idle\"",
                         &wm->upstream_idle);
    mrc |= metrics_gauge(m, "ringside_upstream_connections",
                         "Connections to the backend, by state.", "state=\"active\"",
                         &wm->upstream_active);
    static const char *const up_reasons[] = {"connect", "timeout", "reset", "closed",
                                             "bad_response"};
    for (int i = 0; i < 5; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "reason=\"%s\"", up_reasons[i]);
        mrc |= metrics_counter(m, "ringside_upstream_errors_total",
                               "Failed exchanges with the backend, by reason.", labels,
                               &wm->upstream_errors[i]);
    }
    for (int i = 1; i < HTTP1_ERROR_COUNT; i++) {
        if (i == HTTP1_E_STATUS_LINE)
            continue; /* a response's fault, counted as an upstream error */
        char labels[64];
        snprintf(labels, sizeof(labels), "reason=\"%s\"", http1_error_name((enum http1_error)i));
        mrc |= metrics_counter(m, "ringside_rejected_requests_total",
                               "Requests refused before reaching the backend, by reason.", labels,
                               &wm->rejected[i]);
    }
    mrc |= metrics_counter(m, "ringside_rejected_requests_total",
                           "Requests refused before reaching the backend, by reason.",
                           "reason=\"max_connections\"", &wm->rejected_max_connections);
    mrc |= metrics_counter(m, "ringside_rejected_requests_total",
                           "Requests refused before reaching the backend, by reason.",
                           "reason=\"header_timeout\"", &wm->rejected_header_timeout);
    mrc |= metrics_counter(m, "ringside_recv_buffer_waits_total",
                           "Receives that found every receive buffer in use and waited; "
                           "raise limits.recv_buffers if it climbs.",
                           "", &wm->recv_buffer_waits);
    if (mrc != 0) {
        snprintf(err, err_len, "metrics registration failed");
        goto fail_wake;
    }

    int rc2 = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc2 != 0) {
        snprintf(err, err_len, "pthread_create: %s", strerror(rc2));
        goto fail_wake;
    }
    if (rt->workers != NULL)
        atomic_store(&rt->workers[index], w);
    *out = w;
    return 0;

fail_wake:
    close(w->wake_fd);
fail_listen:
    close(w->listen_fd);
fail:
    free(w);
    return -1;
}

void worker_wake(struct worker *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof(one));
    (void)n; /* a full counter still wakes the reader */
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
    /* Posts that raced the stop: their functions free what they carry. */
    run_posts(w, NULL);
    pthread_mutex_destroy(&w->post_lock);
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    close(w->wake_fd);
    if (w->cfg != NULL)
        wcfg_unref(w, w->cfg);
    timer_heap_free(&w->timers);
    free(w->slots);
    loop_free(w->loop);
    free(w->bufslices);
    free(w);
}
