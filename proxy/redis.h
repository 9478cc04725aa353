/* An asynchronous Redis client for one worker, driven by the worker's loop.
 *
 * Each client owns one hiredis async connection whose socket is watched with loop_poll
 * and whose deadlines (connect, command, reconnect) sit on the worker's timer heap. It
 * never blocks: the connect is non-blocking and the host is a numeric address. When the
 * connection is lost or stops answering, pending commands fail at once, new ones are
 * refused (-ENOTCONN, so the caller goes on without Redis) and the client reconnects with
 * exponential backoff and jitter; ringside_redis_up says whether every client is up, and
 * one log line marks each change.
 *
 * Every function runs on the worker thread that owns the client and takes that thread's
 * "now" (monotonic ns, once per loop turn). Callbacks run later, from one of the entry
 * points (on_poll, on_timer, free), never from the call that queued the command.
 *
 * hiredis writes with write(2): the process must ignore SIGPIPE. */
#ifndef RINGSIDE_REDIS_H
#define RINGSIDE_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct timer_heap;
struct metrics;
struct metrics_worker;
struct redisReply;
struct redis_client;
struct redis_metrics;

struct redis_options {
    const char *host;  /* numeric IPv4 or IPv6 address (resolved by the caller, off the worker) */
    uint16_t port;
    const char *username, *password; /* NULL: no AUTH; username NULL + password: AUTH password */
    unsigned db;       /* SELECT when not 0 */
    uint64_t connect_timeout_ms; /* connect, AUTH and SELECT; 0: 1000 */
    uint64_t command_timeout_ms; /* a command without reply by then completes with
                                    REDIS_TIMEOUT; 0: 250 */
    uint64_t reconnect_min_ms, reconnect_max_ms; /* backoff bounds; 0: 100 and 5000 */
    unsigned max_pending; /* commands awaiting a reply, timed-out ones included; 0: 1024 */
};

/* How a client lives in its worker. Everything it points to must outlive the client. */
struct redis_env {
    struct loop *loop;
    struct timer_heap *timers;
    /* Tag kinds the worker routes to redis_client_on_poll and redis_client_on_timer; the
     * client builds its tags as kind | gen << 32. Give each client of a loop its own. */
    uint8_t poll_kind, timer_kind;
    struct metrics_worker *mw;     /* this worker's counters */
    struct redis_metrics *metrics; /* shared ids, see redis_metrics_new */
};

/* Create a client and start connecting. The options' strings are copied; env is copied.
 * Returns 0, -EINVAL (host not a numeric address, port 0, a username without a password,
 * reconnect_min_ms above reconnect_max_ms) or -ENOMEM. A Redis that cannot be reached is
 * not an error: the client keeps trying. */
int redis_client_new(const struct redis_env *env, const struct redis_options *o, uint64_t now,
                     struct redis_client **out);
/* Close the connection and free c. Callbacks of pending commands run with REDIS_CLOSED
 * before it returns (or, when called from inside a callback, as soon as that returns).
 * Completions and timers with the client's tags that arrive later must be dropped by the
 * caller. NULL is allowed. */
void redis_client_free(struct redis_client *c);
/* The worker's dispatch: a completion or an expired timer with one of the client's kinds.
 * Stale completions (of an older connection or poll) are recognised and ignored. */
void redis_client_on_poll(struct redis_client *c, uint64_t tag, int res, uint64_t now);
void redis_client_on_timer(struct redis_client *c, uint64_t tag, uint64_t now);
/* Connected, and AUTH and SELECT (if any) accepted. */
bool redis_client_up(const struct redis_client *c);

enum redis_status {
    REDIS_STATUS_OK,   /* REDIS_OK: a reply (of any type but error) */
    REDIS_ERROR_REPLY, /* Redis answered with an error reply */
    REDIS_TIMEOUT,     /* no reply within command_timeout; a late one is ignored */
    REDIS_DOWN,        /* the connection was lost before the reply */
    REDIS_CLOSED,      /* redis_client_free */
};
/* hiredis defines REDIS_OK as 0 too. As a macro with the same definition, the name works
 * whichever of the two headers comes first. */
#ifndef REDIS_OK
#define REDIS_OK 0
#endif

/* reply is hiredis' redisReply, valid only during the call; NULL unless st is REDIS_OK or
 * REDIS_ERROR_REPLY. The callback may queue further commands or free the client. */
typedef void redis_callback(void *arg, enum redis_status st, const struct redisReply *reply);

/* Queue a command in argv form (binary safe; argv and argvlen are copied before it
 * returns). Returns 0, after which cb(arg, ...) runs exactly once, later; or, with cb not
 * called:
 *   -ENOTCONN  the client is not up: go on without Redis at once;
 *   -ENOBUFS   max_pending commands are outstanding;
 *   -EINVAL    argc < 1, a subscribe client, or a command that would switch the
 *              connection's mode ((P)SUBSCRIBE, (P)UNSUBSCRIBE, MONITOR);
 *   -ENOMEM. */
int redis_command(struct redis_client *c, uint64_t now, redis_callback *cb, void *arg, int argc,
                  const char **argv, const size_t *argvlen);
/* Fire and forget (SET with EX, PUBLISH, DEL): the same, without a callback. Its outcome
 * is only counted; over max_pending it is dropped (result="dropped", -ENOBUFS). */
int redis_command_nowait(struct redis_client *c, uint64_t now, int argc, const char **argv,
                         const size_t *argvlen);

/* Turn a new client into a subscriber of channel (copied): it SUBSCRIBEs after every
 * (re)connect and calls on_message(arg, payload, len) for each message (payload valid
 * during the call). After a re-subscription that followed a lost connection it calls
 * on_resubscribe(arg) (may be NULL): messages published meanwhile are lost, so the caller
 * drops what it can no longer trust. Such a client takes no other commands. Returns 0,
 * -EINVAL (already a subscriber, or it has commands outstanding) or -ENOMEM. */
int redis_client_subscribe(struct redis_client *c, const char *channel,
                           void (*on_message)(void *arg, const char *payload, size_t len),
                           void (*on_resubscribe)(void *arg), void *arg);

/* Metrics shared by all clients of the process, registered once:
 *   ringside_redis_up                 gauge, 1 when all `clients` clients are up
 *   ringside_redis_commands_total     {result="ok|error|timeout|down|dropped"}; a command
 *                                     refused because the client is down counts as down
 *   ringside_redis_latency_seconds    histogram of replies (ok and error)
 *   ringside_redis_reconnects_total   connections re-established after one was lost
 * clients is how many clients will be made with it (every worker's, subscribers too).
 * Returns 0 and *out (the caller frees it after the last client), -EINVAL (clients 0) or
 * -errno from registration. */
int redis_metrics_new(struct metrics *m, unsigned clients, struct redis_metrics **out);
void redis_metrics_free(struct redis_metrics *rm);

/* "redis://[[user]:password@]host[:port][/db]"; host may be a name or an address, IPv6 in
 * brackets; user and password may be percent-encoded. Port defaults to 6379, db to 0. */
struct redis_url {
    char *host;
    uint16_t port;
    char *username, *password; /* NULL when absent */
    unsigned db;
};
/* Parse url into *out (malloc'd strings, freed with redis_url_free). Returns NULL on
 * success, else a short reason (and *out holds nothing to free). */
const char *redis_url_parse(const char *url, struct redis_url *out);
/* Free the strings of u (any of them may be NULL) and clear them. */
void redis_url_free(struct redis_url *u);

#endif
