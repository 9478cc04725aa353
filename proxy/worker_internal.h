/* The worker's private state, shared by worker.c (loop, dispatch, accept), client.c
 * (client connections and requests), upstream.c (the backend pool and responses) and
 * forward.c (head rewriting). Nothing outside those files includes it. */
#ifndef RINGSIDE_WORKER_INTERNAL_H
#define RINGSIDE_WORKER_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "proxy/handler.h"
#include "proxy/http1.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "proxy/runtime.h"
#include "proxy/slice.h"
#include "proxy/timer.h"

/* A tag is kind | slot << 8 | generation << 32: the slot finds the object, the
 * generation proves it is still the object the operation was started for. */
enum tag_kind {
    TAG_ACCEPT = 1,
    TAG_WAKE,
    TAG_CLIENT_RECV,
    TAG_CLIENT_SEND,
    TAG_CLIENT_CANCEL,
    TAG_CLIENT_TIMER,
    TAG_UP_CONNECT,
    TAG_UP_RECV,
    TAG_UP_SEND,
    TAG_UP_CANCEL,
    TAG_UP_TIMER,
    TAG_DRAIN_TIMER,
    TAG_LISTEN_CANCEL, /* the cancel of the listener's accept, at drain */
    TAG_CLIENT_DEADLINE, /* a route handler's deadline for an exchange */
    TAG_HANDLER_FIRST = 0x40, /* kinds a route handler makes with hw_kind */
    TAG_HANDLER_LAST = 0x47,
};

static inline uint64_t tag_make(enum tag_kind kind, uint32_t slot, uint32_t gen)
{
    return (uint64_t)kind | (uint64_t)(slot & 0xffffff) << 8 | (uint64_t)gen << 32;
}
static inline enum tag_kind tag_kind(uint64_t tag) { return (enum tag_kind)(tag & 0xff); }
static inline uint32_t tag_slot(uint64_t tag) { return (uint32_t)(tag >> 8) & 0xffffff; }
static inline uint32_t tag_gen(uint64_t tag) { return (uint32_t)(tag >> 32); }

enum { MAX_IOV = 64, MAX_HEADERS_HARD = 256 };

/* Bookkeeping every connection has: its slot, socket and outstanding operations.
 * Memory is freed only after the last operation completed (closing only marks it). */
struct conn {
    uint32_t slot;
    uint32_t gen;
    int fd;
    bool is_client;     /* struct client, else struct upstream */
    uint8_t inflight;   /* operations the loop still owes a completion */
    bool recv_armed;    /* multishot receive active */
    bool recv_paused;   /* receive cancelled on purpose, to be re-armed */
    bool recv_eof;      /* the peer finished sending */
    bool send_busy;     /* a sendmsg is in flight */
    bool closing;
    bool wants_buffers; /* receive ended with -ENOBUFS */
    struct outq out;
    struct msghdr msg; /* of the send in flight */
    struct iovec iov[MAX_IOV];
    struct timer timer;
    struct conn *flush_next; /* on the worker's flush list */
    bool on_flush_list;
    struct conn *bufwait_next;
};

/* Per-worker view of a config: the config plus metric ids resolved for it. */
struct wcfg {
    struct rcfg *rc;
    const struct cfg *cfg;
    uint32_t refs; /* exchanges that started under it, +1 while current */
    struct http1_limits req_limits, resp_limits;
    metrics_id *route_duration; /* histogram id per route */
    /* (route, method, code) -> ringside_http_requests_total series, open addressing */
    struct series_slot {
        uint32_t key;
        metrics_id id;
    } *series;
    uint32_t series_cap, series_count;
};

struct upstream;

/* One request/response exchange of a client connection. */
struct exchange {
    bool active;
    struct worker *worker;
    struct wcfg *cfg;
    uint32_t route;
    enum http1_method method;
    int minor_version;
    bool keep_alive;        /* the client wants the connection kept */
    uint64_t start_ns;
    char request_id[65];
    char target[160];       /* for the access log, escaped */
    struct slice *head;     /* the forwarded head, kept for one retry */
    bool may_retry;
    bool retried;
    /* request body */
    enum http1_framing req_framing;
    uint64_t req_remaining;
    struct http1_chunked req_chunked;
    bool req_done;
    /* response */
    struct upstream *up;
    int status;
    bool resp_started;      /* bytes of the response were queued for the client */
    bool resp_done;
    enum http1_framing resp_framing;
    uint64_t resp_remaining;
    struct http1_chunked resp_chunked;
    uint64_t resp_bytes;
    uint64_t upstream_start_ns;
    uint64_t upstream_ns;
    const char *error; /* what went wrong, for the access log */
    /* route handler (proxy/handler.h) */
    bool handled;           /* the handler saw the request: it gets the end callback */
    bool taken;             /* the handler answers, or forwards later */
    bool watch;             /* response callbacks */
    bool resp_complete;     /* the backend's response arrived whole */
    void *hstate;
    const char *resp_fields;  /* added to the forwarded response head */
    struct slice *fwd_head;   /* built by hx_prepare */
    struct timer deadline;
};

struct client {
    struct conn c;
    struct bytes in;      /* received, not yet consumed */
    size_t parsed_len;    /* of in, already seen incomplete by the head parser */
    bool close_after_send;
    bool counted;         /* holds one of runtime.connections */
    struct exchange x;
    uint32_t requests;    /* served on this connection */
    uint8_t timer_mode;   /* what the timer waits for (client.c) */
    bool detached;        /* no socket: a request of ringside's own (hw_fetch) */
    bool processing;      /* inside process(): a nested call must not parse again */
    char peer[INET6_ADDRSTRLEN];
};

enum up_state { UP_CONNECTING, UP_IDLE, UP_BUSY };

struct upstream {
    struct conn c;
    enum up_state state;
    struct client *client; /* while busy; the client detaches before it goes */
    struct bytes in;       /* a response head that spans buffers */
    size_t parsed_len;
    bool head_done;
    bool reused;           /* served an earlier exchange */
    bool keep;             /* the backend lets this connection serve another request */
    struct upstream *idle_next, *idle_prev;
    struct sockaddr_storage sa;
    socklen_t sa_len;
};

struct worker_metrics {
    metrics_id connections_active;
    metrics_id upstream_requests;
    metrics_id upstream_idle, upstream_active;
    metrics_id upstream_errors[5]; /* enum up_error */
    metrics_id rejected[HTTP1_ERROR_COUNT];
    metrics_id rejected_max_connections, rejected_header_timeout;
    metrics_id recv_buffer_waits;
};

enum up_error { UPERR_CONNECT, UPERR_TIMEOUT, UPERR_RESET, UPERR_CLOSED, UPERR_BAD_RESPONSE };

struct worker {
    unsigned index;
    pthread_t thread;
    struct runtime *rt;
    struct loop *loop;
    struct metrics_worker *mw;
    struct worker_metrics m;
    int listen_fd;
    int wake_fd;
    uint64_t wake_buf;
    bool accepting;
    bool draining;
    uint64_t drain_deadline;
    struct timer drain_timer;
    uint64_t now;
    struct timer_heap timers;
    /* slots: index -> object; generation bumps when an object goes */
    struct slot {
        struct conn *obj;
        uint32_t gen;
        uint32_t next_free;
    } *slots;
    uint32_t slots_cap, free_slot;
    struct wcfg *cfg;   /* current */
    uint64_t cfg_generation;
    uint32_t clients;
    uint32_t upstreams; /* connections to the backend, any state */
    struct conn *flush_list;
    struct conn *bufwait_list;
    struct upstream *idle_head; /* most recently used first */
    uint32_t idle_count;
    struct slice *bufslices; /* one per provided buffer, to send received bytes as is */
    uint64_t rng[2];
    int64_t wall;            /* wall-clock seconds, once per turn */
    void *hstate;            /* the route handler's per-worker state */
    /* Work posted by other threads (hw_post), run on this worker's thread. */
    pthread_mutex_t post_lock;
    struct post *posts;
    bool stopped;            /* the thread has left its loop */
};

struct post {
    void (*fn)(void *ws, void *arg);
    void *arg;
    struct post *next;
};

/* The registered route handler, or NULL. */
extern const struct handler_ops *worker_handler;

/* A connection's queued output above which its source stops being read, and below
 * which reading resumes. */
static inline size_t out_high(const struct worker *w)
{
    return w->cfg->cfg->limits.max_output;
}
static inline size_t out_low(const struct worker *w)
{
    return w->cfg->cfg->limits.max_output / 4;
}

/* worker.c */
int worker_slot_alloc(struct worker *w, struct conn *obj);
void worker_slot_free(struct worker *w, struct conn *obj);
void conn_flush_later(struct worker *w, struct conn *c);
int conn_arm_recv(struct worker *w, struct conn *c, enum tag_kind kind);
/* Bookkeeping of a receive completion shared by clients and upstreams: the end of a
 * multishot receive, and the wait for buffers after -ENOBUFS. */
void conn_recv_done(struct worker *w, struct conn *c, const struct loop_event *ev);
void conn_pause_recv(struct worker *w, struct conn *c, enum tag_kind recv_kind,
                     enum tag_kind cancel_kind);
void conn_set_timer(struct worker *w, struct conn *c, uint64_t ms);
/* Wrap received buffer id (n bytes) as a slice holding one reference. */
struct slice *worker_buf_slice(struct worker *w, uint16_t id, uint32_t n);
bool worker_bufs_low(const struct worker *w);
void wcfg_unref(struct worker *w, struct wcfg *wc);
metrics_id wcfg_requests_series(struct worker *w, struct wcfg *wc, uint32_t route,
                                enum http1_method method, int code);
void worker_request_id(struct worker *w, char out[33]);

/* client.c */
void client_accept(struct worker *w, int fd);
int client_fetch(struct worker *w, uint32_t route, struct slice *head, void *state);
void client_on_deadline(struct worker *w, struct client *cl);
void client_on_recv(struct worker *w, struct client *cl, const struct loop_event *ev);
void client_on_send(struct worker *w, struct client *cl, int res);
void client_on_timer(struct worker *w, struct client *cl);
void client_op_done(struct worker *w, struct client *cl);
void client_drain(struct worker *w, struct client *cl);
/* Close now, whatever is in flight; why goes to the access log. */
void client_abort(struct worker *w, struct client *cl, const char *why);
/* The upstream's side of an exchange, called by upstream.c. */
int client_queue(struct worker *w, struct client *cl, struct slice *s, uint32_t off, uint32_t len);
void client_response_done(struct worker *w, struct client *cl);
void client_upstream_failed(struct worker *w, struct client *cl, enum up_error err,
                            const char *why);
bool client_wants_more(const struct worker *w, const struct client *cl);

/* upstream.c */
struct upstream *upstream_acquire(struct worker *w, struct client *cl, bool fresh);
void upstream_send(struct worker *w, struct upstream *up, struct slice *s, uint32_t off,
                   uint32_t len);
void upstream_release(struct worker *w, struct upstream *up, bool reusable);
void upstream_on_connect(struct worker *w, struct upstream *up, int res);
void upstream_on_recv(struct worker *w, struct upstream *up, const struct loop_event *ev);
void upstream_on_send(struct worker *w, struct upstream *up, int res);
void upstream_on_timer(struct worker *w, struct upstream *up);
void upstream_op_done(struct worker *w, struct upstream *up);
void upstream_resume(struct worker *w, struct upstream *up);
void upstream_close_idle(struct worker *w);

/* forward.c */
struct forward_info {
    const char *peer;
    const char *request_id; /* the client's own when it sent a usable one */
    int upstream_minor; /* version of the request line sent upstream */
    const char *extra;  /* fields to add, "Name: value\r\n"..., or NULL */
    bool drop_conditionals; /* leave out If-None-Match and If-Modified-Since */
};
/* The request head to send upstream; NULL on ENOMEM. */
struct slice *forward_request_head(const struct http1_request *req, const struct forward_info *fi);
/* The response head to send the client, with "Connection: <connection>" when it is not
 * NULL; NULL on ENOMEM. */
struct slice *forward_response_head(const struct http1_response *resp, const char *request_id,
                                    const char *connection, const char *extra);
/* A complete response made by ringside itself (errors, 503 at the limit). */
struct slice *forward_error_response(int status, const char *body, const char *request_id,
                                     bool close);

#endif
