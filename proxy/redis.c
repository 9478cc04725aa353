/* The hiredis async context of a client is driven by hand: hiredis reports what it wants
 * to wait for through its ev hooks, which only note it; after every call into hiredis one
 * function (settle) arms a one-shot loop_poll for exactly that, drops a connection that
 * something asked to drop, and notices a context hiredis freed itself.
 *
 * hiredis frees a context from inside its own calls (a read error, a failed connect) and
 * forbids freeing it from inside connect callbacks, so no callback here frees or
 * disconnects anything: they note what should happen and settle does it once hiredis has
 * returned. For the same reason a client freed from inside a callback goes only then. */
#include "proxy/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/log.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "proxy/timer.h"

enum {
    DEFAULT_CONNECT_MS = 1000,
    DEFAULT_COMMAND_MS = 250,
    DEFAULT_RECONNECT_MIN_MS = 100,
    DEFAULT_RECONNECT_MAX_MS = 5000,
    DEFAULT_MAX_PENDING = 1024,
    DEFAULT_PORT = 6379,
};

#define NS_PER_MS 1000000ull

/* ---- metrics ---- */

enum result { RESULT_OK, RESULT_ERROR, RESULT_TIMEOUT, RESULT_DOWN, RESULT_DROPPED, RESULT_COUNT };

static const char *const result_labels[RESULT_COUNT] = {
    "result=\"ok\"", "result=\"error\"", "result=\"timeout\"", "result=\"down\"",
    "result=\"dropped\"",
};

/* Round trips on a local network take tens of microseconds; past a second nobody waits. */
static const double latency_buckets[] = {
    .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
};

struct redis_metrics {
    struct metrics *m;
    metrics_id up, commands[RESULT_COUNT], latency, reconnects;
    unsigned clients;
    atomic_uint connected;
    /* Orders the writes of the up gauge, so the last one reflects the last count. */
    pthread_mutex_t publish;
};

int redis_metrics_new(struct metrics *m, unsigned clients, struct redis_metrics **out)
{
    if (clients == 0)
        return -EINVAL;
    struct redis_metrics *rm = calloc(1, sizeof(*rm));
    if (rm == NULL)
        return -ENOMEM;
    rm->m = m;
    rm->clients = clients;
    atomic_init(&rm->connected, 0);
    int rc = metrics_gauge(m, "ringside_redis_up",
                           "1 when every Redis connection is up, 0 while any is down", NULL,
                           &rm->up);
    for (int i = 0; rc == 0 && i < RESULT_COUNT; i++)
        rc = metrics_counter(m, "ringside_redis_commands_total",
                             "Redis commands by outcome (down: refused or lost with the "
                             "connection, dropped: too many outstanding)",
                             result_labels[i], &rm->commands[i]);
    if (rc == 0)
        rc = metrics_histogram(m, "ringside_redis_latency_seconds",
                               "Time from sending a Redis command to its reply", NULL,
                               latency_buckets,
                               sizeof(latency_buckets) / sizeof(latency_buckets[0]), &rm->latency);
    if (rc == 0)
        rc = metrics_counter(m, "ringside_redis_reconnects_total",
                             "Redis connections re-established after one was lost", NULL,
                             &rm->reconnects);
    if (rc == 0)
        rc = -pthread_mutex_init(&rm->publish, NULL);
    if (rc < 0) {
        free(rm);
        return rc;
    }
    metrics_shared_set(m, rm->up, 0);
    *out = rm;
    return 0;
}

void redis_metrics_free(struct redis_metrics *rm)
{
    if (rm == NULL)
        return;
    pthread_mutex_destroy(&rm->publish);
    free(rm);
}

static void publish_up(struct redis_metrics *rm, int delta)
{
    pthread_mutex_lock(&rm->publish);
    unsigned n = delta > 0 ? atomic_fetch_add(&rm->connected, 1) + 1
                           : atomic_fetch_sub(&rm->connected, 1) - 1;
    metrics_shared_set(rm->m, rm->up, n >= rm->clients ? 1 : 0);
    pthread_mutex_unlock(&rm->publish);
}

/* ---- the client ---- */

enum state {
    ST_WAIT,       /* no connection; the timer is the next attempt */
    ST_CONNECTING, /* TCP connect in progress; the timer is the connect deadline */
    ST_HANDSHAKE,  /* AUTH / SELECT in flight, same deadline */
    ST_UP,         /* the timer is the earliest command deadline, if any */
};

enum handshake_step { STEP_AUTH, STEP_SELECT, STEP_DONE };

/* A command awaiting its reply. They sit in a ring in the order sent, which is the order
 * Redis replies in. */
struct pending {
    redis_callback *cb; /* NULL: fire and forget */
    void *arg;
    uint64_t sent;
    bool timed_out; /* its callback ran with REDIS_TIMEOUT; the reply is still owed */
};

struct redis_client {
    struct redis_env env;
    char *host, *username, *password, *channel;
    uint16_t port;
    unsigned db;
    char addr[INET6_ADDRSTRLEN + 8]; /* host:port, for logs */
    uint64_t connect_timeout, command_timeout, dead_after, reconnect_min, reconnect_max;

    enum state state;
    enum handshake_step step;
    redisAsyncContext *ac;
    int fd;
    uint64_t now;
    struct timer timer;

    /* the socket's poll */
    uint32_t want;     /* POLLIN / POLLOUT, from hiredis' ev hooks */
    uint64_t poll_tag; /* of the poll in flight; 0: none */
    uint32_t poll_events;
    uint32_t poll_gen; /* 0 is kept for the tags of cancels */

    /* the end of the current connection */
    bool drop;        /* close it at the next settle */
    bool ac_dying;    /* hiredis is failing its callbacks: take no more commands */
    char why[160];    /* first reason noted */
    char logged[160]; /* last reason logged at warn, so repeats go to debug */

    unsigned attempts; /* failed attempts since the last time up, for the backoff */
    bool was_up;       /* up at least once: a later up is a reconnect */
    bool counted_up;   /* holds one of metrics->connected */
    uint64_t rng;

    unsigned depth; /* calls into hiredis or user callbacks on the stack */
    bool closing;   /* redis_client_free was called */

    struct pending *ring;
    unsigned ring_cap, head, count;

    /* subscriber */
    void (*on_message)(void *arg, const char *payload, size_t len);
    void (*on_resubscribe)(void *arg);
    void *sub_arg;
    uint64_t sub_sent;  /* when SUBSCRIBE went out, 0 once confirmed */
    bool sub_confirmed; /* on the current connection */
    bool sub_lost;      /* a confirmed subscription was lost since */
};

static void settle(struct redis_client *c);

static uint64_t poll_tag_of(const struct redis_client *c, uint32_t gen)
{
    return (uint64_t)c->env.poll_kind | (uint64_t)gen << 32;
}

static void count_result(struct redis_client *c, enum result r)
{
    metrics_add(c->env.mw, c->env.metrics->commands[r], 1);
}

static void set_counted_up(struct redis_client *c, bool up)
{
    if (c->counted_up == up)
        return;
    c->counted_up = up;
    publish_up(c->env.metrics, up ? 1 : -1);
}

/* Note why the current connection ends; the first reason wins. */
static void note_why(struct redis_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note_why(struct redis_client *c, const char *fmt, ...)
{
    if (c->why[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
}

static void arm_timer(struct redis_client *c, uint64_t deadline)
{
    if (timer_set(c->env.timers, &c->timer, deadline) < 0)
        log_error("redis timer failed", "\"redis\":\"%s\",\"error\":\"out of memory\"", c->addr);
}

/* ---- hiredis' ev hooks: note what it waits for; settle arms the poll ---- */

static void ev_add_read(void *p)
{
    ((struct redis_client *)p)->want |= POLLIN;
}

static void ev_del_read(void *p)
{
    ((struct redis_client *)p)->want &= ~(uint32_t)POLLIN;
}

static void ev_add_write(void *p)
{
    ((struct redis_client *)p)->want |= POLLOUT;
}

static void ev_del_write(void *p)
{
    ((struct redis_client *)p)->want &= ~(uint32_t)POLLOUT;
}

/* The context is being freed (by us or by hiredis after an error); its socket is closed
 * right after this returns, so the poll must be cancelled now: the epoll backend finds
 * it by fd. */
static void ev_cleanup(void *p)
{
    struct redis_client *c = p;
    if (c->poll_tag != 0) {
        int rc = loop_cancel_op(c->env.loop, c->fd, c->poll_tag, poll_tag_of(c, 0));
        if (rc < 0)
            log_error("redis poll cancel failed", "\"redis\":\"%s\",\"error\":\"%s\"",
                      c->addr, strerror(-rc));
    }
    c->poll_tag = 0;
    c->want = 0;
    if (c->ac != NULL)
        note_why(c, "%s", c->ac->errstr[0] != '\0' ? c->ac->errstr : "connection closed");
    c->ac = NULL;
    c->fd = -1;
}

/* One poll for what hiredis wants, re-armed when that changes. 0, or -errno when the
 * socket cannot be watched. */
static int sync_poll(struct redis_client *c)
{
    if (c->poll_tag != 0 && c->poll_events == c->want)
        return 0;
    if (c->poll_tag != 0) {
        /* The old poll's completion, if it still comes, no longer matches. */
        int rc = loop_cancel_op(c->env.loop, c->fd, c->poll_tag, poll_tag_of(c, 0));
        c->poll_tag = 0;
        if (rc < 0)
            return rc;
    }
    if (c->want == 0)
        return 0;
    if (++c->poll_gen == 0)
        c->poll_gen = 1;
    uint64_t tag = poll_tag_of(c, c->poll_gen);
    int rc = loop_poll(c->env.loop, c->fd, c->want, tag);
    if (rc < 0)
        return rc;
    c->poll_tag = tag;
    c->poll_events = c->want;
    return 0;
}

/* ---- connection life ---- */

static uint64_t next_random(struct redis_client *c)
{
    /* xorshift64: jitter only needs to spread clients apart */
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

/* Exponential backoff with jitter: a delay drawn from [base/2, base], base doubling from
 * reconnect_min up to reconnect_max, so clients that lost Redis together spread out. */
static uint64_t backoff(struct redis_client *c)
{
    unsigned shift = c->attempts < 30 ? c->attempts : 30;
    uint64_t base = c->reconnect_min;
    if (base > (c->reconnect_max >> shift))
        base = c->reconnect_max;
    else
        base <<= shift;
    if (base > c->reconnect_max)
        base = c->reconnect_max;
    c->attempts++;
    uint64_t half = base / 2;
    return half + next_random(c) % (half + 1);
}

static void schedule_reconnect(struct redis_client *c)
{
    c->state = ST_WAIT;
    arm_timer(c, c->now + backoff(c));
}

static void log_failure(struct redis_client *c, const char *msg, bool state_change)
{
    char why[sizeof(c->why) * 2];
    log_json_escape(c->why, strlen(c->why), why, sizeof(why));
    bool repeat = !state_change && strcmp(c->why, c->logged) == 0;
    log_msg(repeat ? CFG_LOG_DEBUG : CFG_LOG_WARN, msg,
            "\"redis\":\"%s\",\"error\":\"%s\",\"retry_ms\":%llu", c->addr, why,
            (unsigned long long)((c->timer.deadline - c->now) / NS_PER_MS));
    snprintf(c->logged, sizeof(c->logged), "%s", c->why);
}

/* The context is gone (its callbacks all ran): go down and try again later. */
static void connection_lost(struct redis_client *c)
{
    bool was_up = c->state == ST_UP;
    if (c->why[0] == '\0')
        snprintf(c->why, sizeof(c->why), "connection closed");
    set_counted_up(c, false);
    if (c->sub_confirmed)
        c->sub_lost = true;
    c->sub_confirmed = false;
    c->sub_sent = 0;
    schedule_reconnect(c);
    log_failure(c, was_up ? "redis connection lost" : "redis connect failed", was_up);
}

static void on_subscribe_reply(redisAsyncContext *ac, void *r, void *privdata);

static void send_subscribe(struct redis_client *c)
{
    const char *argv[] = {"SUBSCRIBE", c->channel};
    if (redisAsyncCommandArgv(c->ac, on_subscribe_reply, NULL, 2, argv, NULL) != REDIS_OK) {
        note_why(c, "SUBSCRIBE could not be queued");
        c->drop = true;
        return;
    }
    c->sub_sent = c->now;
    if (!timer_armed(&c->timer) || c->timer.deadline > c->now + c->dead_after)
        arm_timer(c, c->now + c->dead_after);
}

static void became_up(struct redis_client *c)
{
    c->state = ST_UP;
    c->attempts = 0;
    c->logged[0] = '\0';
    timer_cancel(c->env.timers, &c->timer);
    set_counted_up(c, true);
    if (c->was_up)
        metrics_add(c->env.mw, c->env.metrics->reconnects, 1);
    c->was_up = true;
    log_info("redis connected", "\"redis\":\"%s\",\"db\":%u", c->addr, c->db);
    if (c->channel != NULL)
        send_subscribe(c);
}

static void on_handshake_reply(redisAsyncContext *ac, void *r, void *privdata);

/* AUTH, then SELECT, one at a time: a failed AUTH must not leave other replies queued
 * behind it. */
static void handshake_next(struct redis_client *c)
{
    for (; c->step < STEP_DONE; c->step++) {
        const char *argv[3];
        int argc = 0;
        char db[16];
        if (c->step == STEP_AUTH && c->password != NULL) {
            argv[argc++] = "AUTH";
            if (c->username != NULL)
                argv[argc++] = c->username;
            argv[argc++] = c->password;
        } else if (c->step == STEP_SELECT && c->db != 0) {
            snprintf(db, sizeof(db), "%u", c->db);
            argv[argc++] = "SELECT";
            argv[argc++] = db;
        } else {
            continue;
        }
        if (redisAsyncCommandArgv(c->ac, on_handshake_reply, NULL, argc, argv, NULL) != REDIS_OK) {
            note_why(c, "%s could not be queued", argv[0]);
            c->drop = true;
        }
        return;
    }
    became_up(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_client *c = ac->data;
    if (status != REDIS_OK) {
        note_why(c, "%s", ac->errstr[0] != '\0' ? ac->errstr : "connect failed");
        return; /* hiredis frees the context after this */
    }
    c->state = ST_HANDSHAKE;
    c->step = STEP_AUTH;
    handshake_next(c);
}

static void on_handshake_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    struct redis_client *c = ac->data;
    redisReply *reply = r;
    if (reply == NULL || c->state != ST_HANDSHAKE || c->drop)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        note_why(c, "%s: %.*s", c->step == STEP_AUTH ? "AUTH" : "SELECT",
                 (int)(reply->len < 120 ? reply->len : 120), reply->str);
        c->drop = true;
        return;
    }
    c->step++;
    handshake_next(c);
}

static void start_connect(struct redis_client *c)
{
    c->state = ST_CONNECTING;
    c->why[0] = '\0';
    c->drop = false;
    c->ac_dying = false;
    arm_timer(c, c->now + c->connect_timeout);
    redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
    if (ac == NULL) {
        note_why(c, "out of memory");
        return; /* settle sees no context and schedules the next attempt */
    }
    if (ac->err != 0) {
        note_why(c, "%s", ac->errstr);
        redisAsyncFree(ac);
        return;
    }
    /* Keepalive notices a peer that vanished without a word while nothing is pending (a
     * subscriber); failing to set it costs only that. */
    (void)redisEnableKeepAlive(&ac->c);
    c->ac = ac;
    c->fd = ac->c.fd;
    ac->data = c;
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    /* It waits for writability: the end of the non-blocking connect. */
    redisAsyncSetConnectCallback(ac, on_connect);
}

/* Close the current context: its pending callbacks run (REDIS_DOWN, or REDIS_CLOSED when
 * closing) and ev_cleanup clears c->ac. */
static void drop_context(struct redis_client *c)
{
    c->drop = false;
    c->depth++;
    redisAsyncFree(c->ac);
    c->depth--;
}

static void destroy(struct redis_client *c)
{
    c->closing = true;
    if (c->ac != NULL)
        drop_context(c);
    timer_cancel(c->env.timers, &c->timer);
    set_counted_up(c, false);
    free(c->ring);
    free(c->host);
    free(c->username);
    free(c->password);
    free(c->channel);
    free(c);
}

/* After every call that may have run hiredis or a user callback: carry out what they
 * asked for. May free c (a free requested from inside a callback). */
static void settle(struct redis_client *c)
{
    if (c->depth > 0)
        return;
    for (;;) {
        if (c->closing) {
            destroy(c);
            return;
        }
        if (c->ac != NULL && c->drop) {
            drop_context(c);
            continue;
        }
        if (c->ac == NULL && c->state != ST_WAIT) {
            connection_lost(c);
            continue;
        }
        if (c->ac != NULL) {
            int rc = sync_poll(c);
            if (rc < 0) {
                note_why(c, "cannot poll the socket: %s", strerror(-rc));
                c->drop = true;
                continue;
            }
        }
        return;
    }
}

/* ---- commands ---- */

static struct pending *ring_at(struct redis_client *c, unsigned i)
{
    return &c->ring[(c->head + i) % c->ring_cap];
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_client *c = ac->data;
    redisReply *reply = r;
    /* Replies come in the order sent, so this is the oldest: privdata == ring_at(c, 0). */
    struct pending p = *(struct pending *)privdata;
    c->head = (c->head + 1) % c->ring_cap;
    c->count--;
    enum redis_status st;
    if (c->closing) {
        st = REDIS_CLOSED;
    } else if (reply == NULL) {
        /* hiredis is failing everything pending: the connection is going. */
        c->ac_dying = true;
        st = REDIS_DOWN;
    } else {
        st = reply->type == REDIS_REPLY_ERROR ? REDIS_ERROR_REPLY : REDIS_OK;
    }
    if (p.timed_out)
        return; /* its callback already ran */
    if (st == REDIS_OK || st == REDIS_ERROR_REPLY) {
        count_result(c, st == REDIS_OK ? RESULT_OK : RESULT_ERROR);
        metrics_observe(c->env.mw, c->env.metrics->latency, (double)(c->now - p.sent) / 1e9);
    } else if (st == REDIS_DOWN) {
        count_result(c, RESULT_DOWN);
    }
    if (p.cb != NULL)
        p.cb(p.arg, st, st == REDIS_OK || st == REDIS_ERROR_REPLY ? reply : NULL);
}

/* Commands that would put the connection in a mode where replies no longer pair with
 * commands one to one. */
static bool switches_mode(const char *name, size_t len)
{
    static const char *const names[] = {"subscribe", "psubscribe", "unsubscribe",
                                        "punsubscribe", "monitor", "ssubscribe",
                                        "sunsubscribe"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (len == strlen(names[i]) && strncasecmp(name, names[i], len) == 0)
            return true;
    return false;
}

static int queue_command(struct redis_client *c, uint64_t now, redis_callback *cb, void *arg,
                         int argc, const char **argv, const size_t *argvlen)
{
    c->now = now;
    if (argc < 1 || c->channel != NULL ||
        switches_mode(argv[0], argvlen != NULL ? argvlen[0] : strlen(argv[0])))
        return -EINVAL;
    if (c->state != ST_UP || c->ac == NULL || c->ac_dying || c->drop || c->closing) {
        count_result(c, RESULT_DOWN);
        return -ENOTCONN;
    }
    if (c->count == c->ring_cap) {
        count_result(c, RESULT_DROPPED);
        return -ENOBUFS;
    }
    uint64_t deadline = now + c->command_timeout;
    if (!timer_armed(&c->timer) || c->timer.deadline > deadline) {
        if (timer_set(c->env.timers, &c->timer, deadline) < 0)
            return -ENOMEM;
    }
    struct pending *p = ring_at(c, c->count);
    *p = (struct pending){.cb = cb, .arg = arg, .sent = now};
    /* hiredis runs no callback from here, only the ev hooks. */
    if (redisAsyncCommandArgv(c->ac, on_reply, p, argc, argv, argvlen) != REDIS_OK)
        return -ENOMEM; /* formatting failed; the context takes nothing when closing */
    c->count++;
    settle(c);
    return 0;
}

int redis_command(struct redis_client *c, uint64_t now, redis_callback *cb, void *arg, int argc,
                  const char **argv, const size_t *argvlen)
{
    return queue_command(c, now, cb, arg, argc, argv, argvlen);
}

int redis_command_nowait(struct redis_client *c, uint64_t now, int argc, const char **argv,
                         const size_t *argvlen)
{
    return queue_command(c, now, NULL, NULL, argc, argv, argvlen);
}

/* Time out the commands past command_timeout; a connection whose oldest command waited
 * past dead_after (or whose SUBSCRIBE is unconfirmed that long) is dead. */
static void check_deadlines(struct redis_client *c)
{
    uint64_t now = c->now;
    for (unsigned i = 0; i < c->count && !c->closing; i++) {
        struct pending *p = ring_at(c, i);
        if (p->timed_out)
            continue;
        if (now < p->sent + c->command_timeout)
            break;
        p->timed_out = true;
        count_result(c, RESULT_TIMEOUT);
        if (p->cb != NULL)
            p->cb(p->arg, REDIS_TIMEOUT, NULL);
    }
    if (c->closing)
        return;
    if (c->count > 0 && now >= ring_at(c, 0)->sent + c->dead_after) {
        note_why(c, "no reply for %llu ms",
                 (unsigned long long)((now - ring_at(c, 0)->sent) / NS_PER_MS));
        c->drop = true;
        return;
    }
    if (c->sub_sent != 0 && now >= c->sub_sent + c->dead_after) {
        note_why(c, "SUBSCRIBE unconfirmed for %llu ms",
                 (unsigned long long)((now - c->sub_sent) / NS_PER_MS));
        c->drop = true;
        return;
    }
    uint64_t next = UINT64_MAX;
    if (c->count > 0)
        next = ring_at(c, 0)->sent + c->dead_after;
    for (unsigned i = 0; i < c->count; i++) {
        struct pending *p = ring_at(c, i);
        if (!p->timed_out) {
            if (p->sent + c->command_timeout < next)
                next = p->sent + c->command_timeout;
            break;
        }
    }
    if (c->sub_sent != 0 && c->sub_sent + c->dead_after < next)
        next = c->sub_sent + c->dead_after;
    if (next == UINT64_MAX)
        timer_cancel(c->env.timers, &c->timer);
    else
        arm_timer(c, next);
}

/* ---- subscriber ---- */

static void on_subscribe_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    struct redis_client *c = ac->data;
    redisReply *reply = r;
    if (reply == NULL || c->closing || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    if (strcasecmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        c->on_message(c->sub_arg, reply->element[2]->str, reply->element[2]->len);
    } else if (strcasecmp(kind, "subscribe") == 0) {
        c->sub_confirmed = true;
        c->sub_sent = 0;
        if (c->sub_lost) {
            c->sub_lost = false;
            if (c->on_resubscribe != NULL)
                c->on_resubscribe(c->sub_arg);
        }
    }
}

int redis_client_subscribe(struct redis_client *c, const char *channel,
                           void (*on_message)(void *arg, const char *payload, size_t len),
                           void (*on_resubscribe)(void *arg), void *arg)
{
    if (c->channel != NULL || c->count > 0 || on_message == NULL)
        return -EINVAL;
    c->channel = strdup(channel);
    if (c->channel == NULL)
        return -ENOMEM;
    c->on_message = on_message;
    c->on_resubscribe = on_resubscribe;
    c->sub_arg = arg;
    if (c->state == ST_UP && c->ac != NULL && !c->ac_dying) {
        send_subscribe(c);
        settle(c);
    }
    return 0;
}

/* ---- entry points ---- */

int redis_client_new(const struct redis_env *env, const struct redis_options *o, uint64_t now,
                     struct redis_client **out)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (o->host == NULL || o->port == 0 ||
        (inet_pton(AF_INET, o->host, &a4) != 1 && inet_pton(AF_INET6, o->host, &a6) != 1))
        return -EINVAL;
    if (o->username != NULL && o->password == NULL)
        return -EINVAL;
    uint64_t connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_MS;
    uint64_t command_ms = o->command_timeout_ms ? o->command_timeout_ms : DEFAULT_COMMAND_MS;
    uint64_t min_ms = o->reconnect_min_ms ? o->reconnect_min_ms : DEFAULT_RECONNECT_MIN_MS;
    uint64_t max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : DEFAULT_RECONNECT_MAX_MS;
    const uint64_t limit_ms = UINT64_MAX / NS_PER_MS / 8; /* deadlines cannot overflow */
    if (connect_ms > limit_ms || command_ms > limit_ms || max_ms > limit_ms || min_ms > max_ms)
        return -EINVAL;

    struct redis_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->env = *env;
    c->port = o->port;
    c->db = o->db;
    c->fd = -1;
    c->now = now;
    c->connect_timeout = connect_ms * NS_PER_MS;
    c->command_timeout = command_ms * NS_PER_MS;
    c->dead_after = 4 * c->command_timeout > c->connect_timeout ? 4 * c->command_timeout
                                                                : c->connect_timeout;
    c->reconnect_min = min_ms * NS_PER_MS;
    c->reconnect_max = max_ms * NS_PER_MS;
    c->ring_cap = o->max_pending ? o->max_pending : DEFAULT_MAX_PENDING;
    c->rng = (now ^ (uint64_t)(uintptr_t)c) | 1;
    if (strchr(o->host, ':') != NULL)
        snprintf(c->addr, sizeof(c->addr), "[%s]:%u", o->host, o->port);
    else
        snprintf(c->addr, sizeof(c->addr), "%s:%u", o->host, o->port);
    timer_init(&c->timer, env->timer_kind);
    c->host = strdup(o->host);
    c->username = o->username ? strdup(o->username) : NULL;
    c->password = o->password ? strdup(o->password) : NULL;
    c->ring = calloc(c->ring_cap, sizeof(*c->ring));
    if (c->host == NULL || c->ring == NULL || (o->username && !c->username) ||
        (o->password && !c->password)) {
        free(c->ring);
        free(c->host);
        free(c->username);
        free(c->password);
        free(c);
        return -ENOMEM;
    }
    c->depth++;
    start_connect(c);
    c->depth--;
    settle(c);
    *out = c;
    return 0;
}

void redis_client_free(struct redis_client *c)
{
    if (c == NULL)
        return;
    c->closing = true;
    settle(c); /* now, or when the callback on the stack returns */
}

void redis_client_on_poll(struct redis_client *c, uint64_t tag, int res, uint64_t now)
{
    if (c->poll_tag == 0 || tag != c->poll_tag)
        return; /* a cancel's own completion, or a poll replaced since */
    c->poll_tag = 0;
    c->now = now;
    if (res < 0) {
        note_why(c, "poll failed: %s", strerror(-res));
        c->drop = true;
        settle(c);
        return;
    }
    uint32_t want = c->want;
    c->depth++;
    if ((want & POLLOUT) && (res & (POLLOUT | POLLERR | POLLHUP)))
        redisAsyncHandleWrite(c->ac);
    if (c->ac != NULL && (want & POLLIN) && (res & (POLLIN | POLLERR | POLLHUP)))
        redisAsyncHandleRead(c->ac);
    c->depth--;
    settle(c);
}

void redis_client_on_timer(struct redis_client *c, uint64_t tag, uint64_t now)
{
    if (tag != c->timer.tag)
        return;
    c->now = now;
    c->depth++;
    switch (c->state) {
    case ST_WAIT:
        start_connect(c);
        break;
    case ST_CONNECTING:
    case ST_HANDSHAKE:
        note_why(c, "%s timed out after %llu ms",
                 c->state == ST_CONNECTING ? "connect" : c->step == STEP_AUTH ? "AUTH" : "SELECT",
                 (unsigned long long)(c->connect_timeout / NS_PER_MS));
        c->drop = true;
        break;
    case ST_UP:
        check_deadlines(c);
        break;
    }
    c->depth--;
    settle(c);
}

bool redis_client_up(const struct redis_client *c)
{
    return c->state == ST_UP && c->ac != NULL && !c->ac_dying && !c->drop;
}

/* ---- URLs ---- */

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

/* Percent-decode [p, end) into a new string; NULL into *out when empty. */
static const char *decode(const char *p, const char *end, char **out)
{
    *out = NULL;
    if (p == end)
        return NULL;
    char *s = malloc((size_t)(end - p) + 1), *d = s;
    if (s == NULL)
        return "out of memory";
    while (p < end) {
        if (*p != '%') {
            *d++ = *p++;
            continue;
        }
        int hi = end - p >= 3 ? hex_value(p[1]) : -1, lo = hi >= 0 ? hex_value(p[2]) : -1;
        if (lo < 0 || (hi == 0 && lo == 0)) {
            free(s);
            return "bad percent-encoding in the credentials";
        }
        *d++ = (char)(hi << 4 | lo);
        p += 3;
    }
    *d = '\0';
    *out = s;
    return NULL;
}

/* Decimal digits [p, *end) up to max; -1 when none, too many or too large. */
static long long parse_number(const char *p, const char **end, long long max)
{
    long long v = 0;
    const char *q = p;
    while (*q >= '0' && *q <= '9') {
        v = v * 10 + (*q - '0');
        if (v > max)
            return -1;
        q++;
    }
    *end = q;
    return q == p ? -1 : v;
}

static const char *parse_url(const char *url, struct redis_url *out)
{
    static const char scheme[] = "redis://";
    if (strncasecmp(url, "rediss://", 9) == 0)
        return "TLS (rediss://) is not supported";
    if (strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
        return "must start with redis://";
    const char *p = url + sizeof(scheme) - 1;
    const char *why;
    /* '@' cannot occur after the credentials, so the last one ends them; a password
     * may then hold '/', '@' or ':' even unencoded. */
    const char *at = strrchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL)
            return "credentials must be user:password or :password";
        if ((why = decode(p, colon, &out->username)) != NULL ||
            (why = decode(colon + 1, at, &out->password)) != NULL)
            return why;
        if (out->password == NULL)
            return "empty password";
        p = at + 1;
    }
    const char *host, *host_end;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL)
            return "unterminated [ in the host";
        p = host_end + 1;
    } else {
        host = p;
        host_end = p + strcspn(p, ":/?#");
        p = host_end;
    }
    if (host == host_end)
        return "missing host";
    for (const char *h = host; h < host_end; h++)
        if ((unsigned char)*h <= 0x20 || (unsigned char)*h >= 0x7f || *h == '[' || *h == ']')
            return "bad character in the host";
    out->host = strndup(host, (size_t)(host_end - host));
    if (out->host == NULL)
        return "out of memory";
    out->port = DEFAULT_PORT;
    if (*p == ':') {
        long long port = parse_number(p + 1, &p, 65535);
        if (port <= 0)
            return "port must be 1 to 65535";
        out->port = (uint16_t)port;
    }
    if (*p == '/') {
        p++;
        if (*p != '\0') {
            long long db = parse_number(p, &p, INT_MAX);
            if (db < 0)
                return "database must be a number";
            out->db = (unsigned)db;
        }
    }
    if (*p == '?')
        return "query parameters are not supported";
    if (*p != '\0')
        return "unexpected text after host, port or database";
    return NULL;
}

const char *redis_url_parse(const char *url, struct redis_url *out)
{
    memset(out, 0, sizeof(*out));
    const char *why = parse_url(url, out);
    if (why != NULL)
        redis_url_free(out);
    return why;
}

void redis_url_free(struct redis_url *u)
{
    free(u->host);
    free(u->username);
    free(u->password);
    u->host = u->username = u->password = NULL;
}
