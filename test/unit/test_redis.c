/* The Redis client against a real redis-server on a free loopback port, driven by a real
 * loop (both backends) and timer heap the way a worker drives it: round trips with binary
 * data, fire-and-forget, bounds, timeouts, a silent server, a killed and restarted server,
 * AUTH, SELECT, pub/sub across a restart, freeing with commands pending. The metrics and
 * log lines each case must produce are checked too. Without redis-server in PATH only the
 * URL tests run and the program exits 77 (skipped). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "proxy/redis.h"
#include "proxy/timer.h"

/* Tag kinds: client 0 and client 1 of a rig. */
enum { KIND_POLL0 = 1, KIND_TIMER0, KIND_POLL1, KIND_TIMER1 };

static bool redis_present;
static pid_t redis_pid = -1;
static uint16_t redis_port;
static const char *redis_extra[4]; /* extra server arguments of the current test */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool in_path(const char *name)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return false;
    char dir[4096];
    while (*path != '\0') {
        size_t n = strcspn(path, ":");
        snprintf(dir, sizeof(dir), "%.*s/%s", (int)n, path, name);
        if (n > 0 && access(dir, X_OK) == 0)
            return true;
        path += n + (path[n] == ':');
    }
    return false;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* A short-lived blocking connection for setting up and checking; password may be NULL. */
static redisContext *sync_connect(const char *password)
{
    struct timeval tv = {.tv_sec = 1};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    if (rc == NULL || rc->err) {
        if (rc != NULL)
            redisFree(rc);
        return NULL;
    }
    if (password != NULL) {
        redisReply *r = redisCommand(rc, "AUTH %s", password);
        freeReplyObject(r);
    }
    return rc;
}

static void redis_stop(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
}

/* Start redis-server on redis_port with redis_extra and wait until it answers. */
static void redis_start(void)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", redis_port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        const char *argv[16] = {"redis-server", "--save", "", "--appendonly", "no", "--port",
                                port, "--bind", "127.0.0.1"};
        int argc = 9;
        for (int i = 0; redis_extra[i] != NULL; i++)
            argv[argc++] = redis_extra[i];
        execvp("redis-server", (char **)argv);
        _exit(127);
    }
    redis_pid = pid;
    for (int i = 0; i < 300; i++) {
        redisContext *rc = sync_connect(NULL);
        if (rc != NULL) {
            redisReply *r = redisCommand(rc, "PING");
            bool answered = r != NULL; /* PONG, or NOAUTH with requirepass */
            freeReplyObject(r);
            redisFree(rc);
            if (answered)
                return;
        }
        usleep(10000);
    }
    fail_msg("redis-server did not start on port %u", redis_port);
}

/* One command on a blocking connection; the reply is the caller's to free. */
static redisReply *sync_command(const char *password, const char *fmt, ...)
{
    redisContext *rc = sync_connect(password);
    assert_non_null(rc);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    redisFree(rc);
    assert_non_null(r);
    return r;
}

/* ---- a worker's loop in miniature ---- */

struct rig {
    struct loop *loop;
    struct timer_heap timers;
    struct metrics *m;
    struct redis_metrics *rm;
    struct redis_client *cl[2];
    uint64_t now;
};

struct fixture {
    enum loop_backend backend;
    struct rig rig;
};

static int log_saved_fd = -1, log_fd = -1;

static int setup(void **state, enum loop_backend backend)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    f.backend = backend;
    redis_extra[0] = NULL;
    *state = &f;
    return 0;
}

static int setup_uring(void **state) { return setup(state, LOOP_BACKEND_URING); }
static int setup_epoll(void **state) { return setup(state, LOOP_BACKEND_EPOLL); }

static void log_restore(void);

static int teardown(void **state)
{
    struct fixture *f = *state;
    struct rig *r = &f->rig;
    log_restore();
    for (int i = 0; i < 2; i++)
        redis_client_free(r->cl[i]);
    redis_metrics_free(r->rm);
    metrics_free(r->m);
    timer_heap_free(&r->timers);
    loop_free(r->loop);
    redis_stop();
    return 0;
}

/* Start Redis (unless port is given: then nothing listens there yet) and the rig for
 * `clients` clients. Skips when redis-server is absent or the backend is refused. */
static struct rig *rig_start(void **state, unsigned clients, bool start_redis)
{
    struct fixture *f = *state;
    if (!redis_present)
        skip();
    struct loop_options opt = {
        .backend = f->backend, .queue_depth = 64, .buf_count = 8, .buf_size = 4096};
    if (loop_new(&opt, &f->rig.loop) < 0) {
        f->rig.loop = NULL;
        skip(); /* io_uring refused here */
    }
    redis_port = free_port();
    if (start_redis)
        redis_start();
    f->rig.m = metrics_new(1);
    assert_non_null(f->rig.m);
    assert_int_equal(redis_metrics_new(f->rig.m, clients, &f->rig.rm), 0);
    f->rig.now = mono_ns();
    return &f->rig;
}

static struct redis_options options(void)
{
    return (struct redis_options){
        .host = "127.0.0.1",
        .port = redis_port,
        .connect_timeout_ms = 500,
        .command_timeout_ms = 500,
        .reconnect_min_ms = 10,
        .reconnect_max_ms = 40,
    };
}

static struct redis_env env_of(struct rig *r, int i)
{
    return (struct redis_env){
        .loop = r->loop,
        .timers = &r->timers,
        .poll_kind = (uint8_t)(i == 0 ? KIND_POLL0 : KIND_POLL1),
        .timer_kind = (uint8_t)(i == 0 ? KIND_TIMER0 : KIND_TIMER1),
        .mw = metrics_worker(r->m, 0),
        .metrics = r->rm,
    };
}

static struct redis_client *client_new(struct rig *r, int i, const struct redis_options *o)
{
    struct redis_env env = env_of(r, i);
    r->now = mono_ns();
    assert_int_equal(redis_client_new(&env, o, r->now, &r->cl[i]), 0);
    return r->cl[i];
}

/* One loop turn: expired timers, then completions, each to its client by kind. */
static void pump_once(struct rig *r, int64_t max_wait_ns)
{
    r->now = mono_ns();
    struct timer *t;
    while ((t = timer_pop_expired(&r->timers, r->now)) != NULL) {
        int i = (t->tag & 0xff) == KIND_TIMER0 ? 0 : 1;
        redis_client_on_timer(r->cl[i], t->tag, r->now);
    }
    int64_t wait = timer_next_in(&r->timers, r->now);
    if (wait < 0 || wait > max_wait_ns)
        wait = max_wait_ns;
    struct loop_event evs[32];
    int n = loop_wait(r->loop, evs, 32, wait);
    assert_true(n >= 0);
    r->now = mono_ns();
    for (int k = 0; k < n; k++) {
        uint8_t kind = evs[k].tag & 0xff;
        int i = kind == KIND_POLL0 ? 0 : kind == KIND_POLL1 ? 1 : -1;
        assert_true(i >= 0);
        /* A freed client's late completions are the caller's to drop. */
        if (r->cl[i] != NULL)
            redis_client_on_poll(r->cl[i], evs[k].tag, evs[k].res, r->now);
    }
}

typedef bool rig_cond(struct rig *r, void *arg);

static bool pump_until(struct rig *r, rig_cond *cond, void *arg, int ms)
{
    uint64_t end = mono_ns() + (uint64_t)ms * 1000000u;
    while (!cond(r, arg)) {
        if (mono_ns() >= end)
            return false;
        pump_once(r, 5 * 1000000);
    }
    return true;
}

static void pump_for(struct rig *r, int ms)
{
    uint64_t end = mono_ns() + (uint64_t)ms * 1000000u;
    while (mono_ns() < end)
        pump_once(r, 5 * 1000000);
}

static bool cond_up(struct rig *r, void *arg)
{
    return r->cl[(intptr_t)arg] != NULL && redis_client_up(r->cl[(intptr_t)arg]);
}

static void wait_up(struct rig *r, int i)
{
    assert_true(pump_until(r, cond_up, (void *)(intptr_t)i, 2000));
}

/* ---- replies ---- */

struct result {
    int calls;
    enum redis_status st;
    int type;
    char str[256];
    size_t len;
    long long integer;
    uint64_t at;
    /* what the callback saw of the client, and what it did with it */
    struct rig *rig;
    int client;
    bool up_in_callback;
    int command_rc;      /* of a command queued from inside the callback */
    bool command_inside; /* queue one */
    bool free_inside;    /* free the client */
};

static void collect(void *arg, enum redis_status st, const struct redisReply *reply)
{
    struct result *res = arg;
    res->calls++;
    res->st = st;
    res->at = mono_ns();
    res->type = reply != NULL ? reply->type : -1;
    if (reply != NULL && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS ||
                          reply->type == REDIS_REPLY_ERROR)) {
        res->len = reply->len < sizeof(res->str) ? reply->len : sizeof(res->str);
        memcpy(res->str, reply->str, res->len);
    }
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
        res->integer = reply->integer;
    if (res->rig != NULL) {
        struct redis_client *c = res->rig->cl[res->client];
        res->up_in_callback = redis_client_up(c);
        if (res->command_inside) {
            const char *argv[] = {"PING"};
            res->command_rc = redis_command_nowait(c, res->rig->now, 1, argv, NULL);
        }
        if (res->free_inside) {
            redis_client_free(c);
            res->rig->cl[res->client] = NULL;
        }
    }
}

static bool cond_called(struct rig *r, void *arg)
{
    (void)r;
    return ((struct result *)arg)->calls > 0;
}

static void wait_called(struct rig *r, struct result *res, int ms)
{
    assert_true(pump_until(r, cond_called, res, ms));
}

/* Send a command given as NUL-terminated words. */
static int command(struct rig *r, int i, struct result *res, int argc, const char **argv)
{
    r->now = mono_ns();
    return redis_command(r->cl[i], r->now, collect, res, argc, argv, NULL);
}

/* Send a command and wait for its reply. */
static void round_trip(struct rig *r, int i, struct result *res, int argc, const char **argv)
{
    memset(res, 0, sizeof(*res));
    assert_int_equal(command(r, i, res, argc, argv), 0);
    assert_int_equal(res->calls, 0); /* never from inside redis_command */
    wait_called(r, res, 2000);
    assert_int_equal(res->calls, 1);
}

/* ---- metrics and logs ---- */

/* The value of one series in the exposition, e.g. metric(r, "ringside_redis_up"). */
static double metric(struct rig *r, const char *series)
{
    size_t len;
    char *text = metrics_render(r->m, &len);
    assert_non_null(text);
    size_t n = strlen(series);
    double v = -1;
    for (char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            v = strtod(line + n + 1, NULL);
            break;
        }
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    free(text);
    if (v < 0)
        fail_msg("no series %s", series);
    return v;
}

static double commands(struct rig *r, const char *result)
{
    char series[96];
    snprintf(series, sizeof(series), "ringside_redis_commands_total{result=\"%s\"}", result);
    return metric(r, series);
}

/* Log lines go to stdout before log_start: catch them in a memfd. */
static void log_capture(void)
{
    fflush(stdout);
    log_fd = memfd_create("log", MFD_CLOEXEC);
    assert_true(log_fd >= 0);
    log_saved_fd = dup(STDOUT_FILENO);
    dup2(log_fd, STDOUT_FILENO);
}

static void log_restore(void)
{
    if (log_saved_fd >= 0) {
        dup2(log_saved_fd, STDOUT_FILENO);
        close(log_saved_fd);
        log_saved_fd = -1;
    }
    if (log_fd >= 0) {
        close(log_fd);
        log_fd = -1;
    }
}

/* The lines logged since log_capture, NUL-terminated; the caller frees them. */
static char *log_text(void)
{
    off_t size = lseek(log_fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(pread(log_fd, text, (size_t)size, 0), size);
    return text;
}

static int occurrences(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = strstr(text, what); p != NULL; p = strstr(p + 1, what))
        n++;
    return n;
}

/* ---- tests ---- */

static void test_round_trip_binary(void **state)
{
    struct rig *r = rig_start(state, 1, true);
    struct redis_options o = options();
    client_new(r, 0, &o);
    wait_up(r, 0);
    assert_int_equal(metric(r, "ringside_redis_up"), 1);

    static const char key[] = "k\0ey", value[] = "a\0b\r\n\0c";
    const char *argv[] = {"SET", key, value};
    const size_t lens[] = {3, sizeof(key) - 1, sizeof(value) - 1};
    struct result res = {0};
    r->now = mono_ns();
    assert_int_equal(redis_command(r->cl[0], r->now, collect, &res, 3, argv, lens), 0);
    assert_int_equal(res.calls, 0);
    wait_called(r, &res, 2000);
    assert_int_equal(res.st, REDIS_OK);
    assert_int_equal(res.type, REDIS_REPLY_STATUS);
    assert_memory_equal(res.str, "OK", 2);

    memset(&res, 0, sizeof(res));
    const char *get[] = {"GET", key};
    const size_t get_lens[] = {3, sizeof(key) - 1};
    assert_int_equal(redis_command(r->cl[0], r->now, collect, &res, 2, get, get_lens), 0);
    wait_called(r, &res, 2000);
    assert_int_equal(res.st, REDIS_OK);
    assert_int_equal(res.type, REDIS_REPLY_STRING);
    assert_int_equal(res.len, sizeof(value) - 1);
    assert_memory_equal(res.str, value, sizeof(value) - 1);

    /* The key without its NUL is another key. */
    round_trip(r, 0, &res, 2, (const char *[]){"GET", "k"});
    assert_int_equal(res.type, REDIS_REPLY_NIL);

    round_trip(r, 0, &res, 2, (const char *[]){"INCR", "text"});
    round_trip(r, 0, &res, 3, (const char *[]){"SET", "text", "abc"});
    round_trip(r, 0, &res, 2, (const char *[]){"INCR", "text"});
    assert_int_equal(res.st, REDIS_ERROR_REPLY);
    assert_int_equal(res.type, REDIS_REPLY_ERROR);

    /* Pipelined in one turn: replies pair with their commands in order. */
    struct result many[50];
    memset(many, 0, sizeof(many));
    for (int i = 0; i < 50; i++)
        assert_int_equal(command(r, 0, &many[i], 2, (const char *[]){"INCR", "counter"}), 0);
    assert_true(pump_until(r, cond_called, &many[49], 2000));
    for (int i = 0; i < 50; i++) {
        assert_int_equal(many[i].calls, 1);
        assert_int_equal(many[i].integer, i + 1);
    }

    assert_int_equal(commands(r, "ok"), 2 + 3 + 50);
    assert_int_equal(commands(r, "error"), 1);
    assert_int_equal(commands(r, "timeout"), 0);
    assert_int_equal(commands(r, "down"), 0);
    assert_int_equal(metric(r, "ringside_redis_latency_seconds_count"), 2 + 4 + 50);
    assert_true(metric(r, "ringside_redis_latency_seconds_sum") > 0);
    assert_int_equal(metric(r, "ringside_redis_reconnects_total"), 0);
}

static void test_nowait_and_bounds(void **state)
{
    struct rig *r = rig_start(state, 1, true);
    struct redis_options o = options();
    o.max_pending = 8;
    client_new(r, 0, &o);
    wait_up(r, 0);

    r->now = mono_ns();
    const char *set[] = {"SET", "fire", "forget", "EX", "60"};
    assert_int_equal(redis_command_nowait(r->cl[0], r->now, 5, set, NULL), 0);
    struct result res;
    round_trip(r, 0, &res, 2, (const char *[]){"GET", "fire"});
    assert_int_equal(res.len, 6);
    assert_memory_equal(res.str, "forget", 6);
    redisReply *ttl = sync_command(NULL, "TTL fire");
    assert_true(ttl->integer > 0 && ttl->integer <= 60);
    freeReplyObject(ttl);

    /* Eight may be outstanding; the ninth is refused, with or without a callback. */
    for (int i = 0; i < 8; i++)
        assert_int_equal(redis_command_nowait(r->cl[0], r->now, 2,
                                              (const char *[]){"INCR", "n"}, NULL), 0);
    assert_int_equal(redis_command_nowait(r->cl[0], r->now, 2, (const char *[]){"INCR", "n"}, NULL),
                     -ENOBUFS);
    memset(&res, 0, sizeof(res));
    assert_int_equal(command(r, 0, &res, 2, (const char *[]){"GET", "n"}), -ENOBUFS);
    pump_for(r, 30);
    assert_int_equal(res.calls, 0);
    round_trip(r, 0, &res, 2, (const char *[]){"GET", "n"});
    assert_memory_equal(res.str, "8", 1);
    assert_int_equal(commands(r, "dropped"), 2);
    assert_int_equal(commands(r, "ok"), 2 + 8 + 1);

    /* Commands that would change the connection's mode, and empty ones, are refused. */
    assert_int_equal(command(r, 0, &res, 2, (const char *[]){"subscribe", "x"}), -EINVAL);
    assert_int_equal(command(r, 0, &res, 1, (const char *[]){"MONITOR"}), -EINVAL);
    assert_int_equal(command(r, 0, &res, 0, (const char *[]){"GET"}), -EINVAL);
}

/* A command Redis does not answer in time completes with REDIS_TIMEOUT; its late reply
 * is dropped and the next command still gets its own reply. */
static void test_timeout_then_late_reply(void **state)
{
    struct rig *r = rig_start(state, 1, true);
    struct redis_options o = options();
    o.command_timeout_ms = 100;
    o.connect_timeout_ms = 1000; /* the connection counts as dead after 1 s */
    client_new(r, 0, &o);
    wait_up(r, 0);
    freeReplyObject(sync_command(NULL, "SET a first"));
    freeReplyObject(sync_command(NULL, "SET b second"));

    freeReplyObject(sync_command(NULL, "CLIENT PAUSE 400 ALL"));
    struct result res = {0};
    uint64_t t0 = mono_ns();
    assert_int_equal(command(r, 0, &res, 2, (const char *[]){"GET", "a"}), 0);
    wait_called(r, &res, 1000);
    assert_int_equal(res.st, REDIS_TIMEOUT);
    assert_int_equal(res.type, -1);
    assert_true(res.at - t0 >= 100 * 1000000u);
    assert_true(res.at - t0 < 300 * 1000000u);

    /* The pause ends, the late reply arrives and is dropped. */
    pump_for(r, 450);
    assert_int_equal(res.calls, 1);
    assert_true(redis_client_up(r->cl[0]));
    round_trip(r, 0, &res, 2, (const char *[]){"GET", "b"});
    assert_int_equal(res.st, REDIS_OK);
    assert_int_equal(res.len, 6);
    assert_memory_equal(res.str, "second", 6);

    assert_int_equal(commands(r, "timeout"), 1);
    assert_int_equal(commands(r, "ok"), 1);
    assert_int_equal(metric(r, "ringside_redis_latency_seconds_count"), 1);
    assert_int_equal(metric(r, "ringside_redis_reconnects_total"), 0);
}

/* When the oldest command waited max(connect, 4 x command timeout), the connection is
 * dead: it is dropped, what is pending fails with REDIS_DOWN, and a new one is made. */
static void test_silent_server_is_dropped(void **state)
{
    struct rig *r = rig_start(state, 1, true);
    struct redis_options o = options();
    o.command_timeout_ms = 100;
    o.connect_timeout_ms = 100; /* dead after 400 ms */
    client_new(r, 0, &o);
    wait_up(r, 0);
    log_capture();

    freeReplyObject(sync_command(NULL, "CLIENT PAUSE 700 ALL"));
    struct result first = {0}, second = {.rig = r, .client = 0};
    uint64_t t0 = mono_ns();
    assert_int_equal(command(r, 0, &first, 2, (const char *[]){"GET", "x"}), 0);
    wait_called(r, &first, 1000);
    assert_int_equal(first.st, REDIS_TIMEOUT);
    /* Sent 320 ms in, it would time out at 420 ms: the connection is declared dead first. */
    while (mono_ns() - t0 < 320 * 1000000u)
        pump_once(r, 1000000);
    assert_int_equal(command(r, 0, &second, 2, (const char *[]){"GET", "y"}), 0);
    wait_called(r, &second, 1000);
    assert_int_equal(second.st, REDIS_DOWN);
    assert_false(second.up_in_callback);
    assert_true(second.at - t0 >= 400 * 1000000u);
    assert_int_equal(first.calls, 1);

    /* Redis still accepts connections while paused: the client reconnects. */
    wait_up(r, 0);
    assert_int_equal(metric(r, "ringside_redis_reconnects_total"), 1);
    assert_int_equal(commands(r, "timeout"), 1);
    assert_int_equal(commands(r, "down"), 1);
    char *text = log_text();
    assert_int_equal(occurrences(text, "\"msg\":\"redis connection lost\""), 1);
    assert_int_equal(occurrences(text, "\"error\":\"no reply for 4"), 1);
    assert_int_equal(occurrences(text, "\"msg\":\"redis connected\""), 1);
    free(text);

    while (mono_ns() - t0 < 750 * 1000000u)
        pump_once(r, 5 * 1000000);
    struct result after;
    round_trip(r, 0, &after, 1, (const char *[]){"PING"});
    assert_int_equal(after.st, REDIS_OK);
}

static void test_killed_and_restarted(void **state)
{
    struct rig *r = rig_start(state, 1, true);
    struct redis_options o = options();
    o.command_timeout_ms = 3000;
    client_new(r, 0, &o);
    wait_up(r, 0);
    log_capture();

    /* A command Redis holds on to is pending when it dies; the callback tries to go on
     * with Redis and is refused. */
    struct result blocked = {.rig = r, .client = 0, .command_inside = true};
    assert_int_equal(command(r, 0, &blocked, 3, (const char *[]){"BLPOP", "nothing", "5"}), 0);
    pump_for(r, 30);
    assert_int_equal(blocked.calls, 0);
    redis_stop();
    wait_called(r, &blocked, 1000);
    assert_int_equal(blocked.st, REDIS_DOWN);
    assert_false(blocked.up_in_callback);
    assert_int_equal(blocked.command_rc, -ENOTCONN);
    assert_false(redis_client_up(r->cl[0]));
    struct result res = {0};
    assert_int_equal(command(r, 0, &res, 1, (const char *[]){"PING"}), -ENOTCONN);
    assert_int_equal(metric(r, "ringside_redis_up"), 0);
    assert_int_equal(commands(r, "down"), 3);

    /* Refused attempts go on meanwhile; back on the same port, the client reconnects. */
    pump_for(r, 150);
    assert_false(redis_client_up(r->cl[0]));
    redis_start();
    wait_up(r, 0);
    assert_int_equal(metric(r, "ringside_redis_up"), 1);
    assert_int_equal(metric(r, "ringside_redis_reconnects_total"), 1);
    round_trip(r, 0, &res, 1, (const char *[]){"PING"});
    assert_int_equal(res.st, REDIS_OK);
    assert_memory_equal(res.str, "PONG", 4);
    assert_int_equal(res.calls, 1);

    /* One line per change: lost, the first refusal (repeats are debug), connected. */
    char *text = log_text();
    assert_int_equal(occurrences(text, "\"level\":\"warn\",\"msg\":\"redis connection lost\""), 1);
    assert_int_equal(occurrences(text, "\"msg\":\"redis connect failed\""), 1);
    assert_int_equal(occurrences(text, "Connection refused"), 1);
    assert_int_equal(occurrences(text, "\"level\":\"info\",\"msg\":\"redis connected\""), 1);
    assert_int_equal(occurrences(text, "\n"), 3);
    free(text);
}

/* Nothing listens at first: the client is down from the start, then comes up. */
static void test_down_at_start(void **state)
{
    struct rig *r = rig_start(state, 1, false);
    log_capture();
    struct redis_options o = options();

    /* Names are resolved by the caller, off the worker: only addresses are taken. */
    struct redis_env env = env_of(r, 0);
    struct redis_options named = o;
    named.host = "localhost";
    assert_int_equal(redis_client_new(&env, &named, r->now, &r->cl[0]), -EINVAL);
    named = o;
    named.reconnect_min_ms = 100;
    named.reconnect_max_ms = 50;
    assert_int_equal(redis_client_new(&env, &named, r->now, &r->cl[0]), -EINVAL);
    r->cl[0] = NULL;

    client_new(r, 0, &o);
    pump_for(r, 60);
    assert_false(redis_client_up(r->cl[0]));
    struct result res = {0};
    assert_int_equal(command(r, 0, &res, 1, (const char *[]){"PING"}), -ENOTCONN);
    assert_int_equal(metric(r, "ringside_redis_up"), 0);
    assert_int_equal(commands(r, "down"), 1);
    redis_start();
    wait_up(r, 0);
    assert_int_equal(metric(r, "ringside_redis_up"), 1);
    /* The first connection is not a reconnect. */
    assert_int_equal(metric(r, "ringside_redis_reconnects_total"), 0);
    char *text = log_text();
    assert_int_equal(occurrences(text, "\"msg\":\"redis connect failed\""), 1);
    assert_int_equal(occurrences(text, "\"msg\":\"redis connected\""), 1);
    free(text);
}

/* A server that accepts connections but never answers: AUTH hits the connect timeout,
 * and the client keeps trying with backoff. */
static void test_connect_timeout(void **state)
{
    struct rig *r = rig_start(state, 1, false);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(redis_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    log_capture();
    struct redis_options o = options();
    o.password = "secret";
    o.connect_timeout_ms = 60;
    client_new(r, 0, &o);
    pump_for(r, 250);
    assert_false(redis_client_up(r->cl[0]));
    int accepted = 0, fd;
    while ((fd = accept(lfd, NULL, NULL)) >= 0) {
        accepted++;
        close(fd);
    }
    assert_true(accepted >= 2);
    char *text = log_text();
    assert_int_equal(occurrences(text, "\"error\":\"AUTH timed out after 60 ms\""), 1);
    free(text);
    close(lfd);
}

static void test_auth(void **state)
{
    redis_extra[0] = "--requirepass";
    redis_extra[1] = "s3cret";
    redis_extra[2] = NULL;
    struct rig *r = rig_start(state, 2, true);
    log_capture();
    struct redis_options good = options(), bad = options();
    good.password = "s3cret";
    bad.password = "wrong";
    client_new(r, 0, &good);
    client_new(r, 1, &bad);
    wait_up(r, 0);
    struct result res;
    round_trip(r, 0, &res, 3, (const char *[]){"SET", "auth", "ok"});
    assert_int_equal(res.st, REDIS_OK);

    /* A wrong password keeps its client down through every retry; the error is logged
     * once, and the process-wide gauge stays 0 while one client is down. */
    pump_for(r, 150);
    assert_false(redis_client_up(r->cl[1]));
    assert_int_equal(command(r, 1, &res, 1, (const char *[]){"PING"}), -ENOTCONN);
    assert_int_equal(metric(r, "ringside_redis_up"), 0);
    char *text = log_text();
    assert_int_equal(occurrences(text, "\"error\":\"AUTH: WRONGPASS"), 1);
    free(text);

    /* With a user name: AUTH user password. */
    redis_client_free(r->cl[1]);
    r->cl[1] = NULL;
    struct redis_options named = good;
    named.username = "default";
    client_new(r, 1, &named);
    wait_up(r, 1);
    assert_int_equal(metric(r, "ringside_redis_up"), 1);
    round_trip(r, 1, &res, 2, (const char *[]){"GET", "auth"});
    assert_memory_equal(res.str, "ok", 2);
}

static void test_select(void **state)
{
    struct rig *r = rig_start(state, 1, true);
    struct redis_options o = options();
    o.db = 5;
    client_new(r, 0, &o);
    wait_up(r, 0);
    struct result res;
    round_trip(r, 0, &res, 3, (const char *[]){"SET", "where", "five"});
    assert_int_equal(res.st, REDIS_OK);
    redisContext *rc = sync_connect(NULL);
    redisReply *rep = redisCommand(rc, "GET where");
    assert_int_equal(rep->type, REDIS_REPLY_NIL);
    freeReplyObject(rep);
    freeReplyObject(redisCommand(rc, "SELECT 5"));
    rep = redisCommand(rc, "GET where");
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_string_equal(rep->str, "five");
    freeReplyObject(rep);
    redisFree(rc);
}

/* An IPv6 address works as well (skipped where the host has no IPv6 loopback). */
static void test_ipv6(void **state)
{
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have_v6 = probe >= 0 && bind(probe, (struct sockaddr *)&sa6, sizeof(sa6)) == 0;
    if (probe >= 0)
        close(probe);
    if (!have_v6)
        skip();
    redis_extra[0] = "--bind";
    redis_extra[1] = "127.0.0.1";
    redis_extra[2] = "::1";
    redis_extra[3] = NULL;
    struct rig *r = rig_start(state, 1, true);
    log_capture();
    struct redis_options o = options();
    o.host = "::1";
    client_new(r, 0, &o);
    wait_up(r, 0);
    struct result res;
    round_trip(r, 0, &res, 1, (const char *[]){"PING"});
    assert_int_equal(res.st, REDIS_OK);
    char *text = log_text();
    char addr[32];
    snprintf(addr, sizeof(addr), "\"redis\":\"[::1]:%u\"", redis_port);
    assert_int_equal(occurrences(text, addr), 1);
    free(text);
}

struct inbox {
    int messages, resubscribes;
    char last[64];
    size_t last_len;
};

static void on_message(void *arg, const char *payload, size_t len)
{
    struct inbox *in = arg;
    in->messages++;
    in->last_len = len < sizeof(in->last) ? len : sizeof(in->last);
    memcpy(in->last, payload, in->last_len);
}

static void on_resubscribe(void *arg)
{
    ((struct inbox *)arg)->resubscribes++;
}

/* Publish through client 0 until the subscriber hears it (it subscribes once up). */
static void publish_heard(struct rig *r, struct inbox *in, const char *payload, size_t len)
{
    for (int tries = 0; tries < 100; tries++) {
        int before = in->messages;
        struct result res = {0};
        r->now = mono_ns();
        const char *argv[] = {"PUBLISH", "inval", payload};
        const size_t lens[] = {7, 5, len};
        assert_int_equal(redis_command(r->cl[0], r->now, collect, &res, 3, argv, lens), 0);
        wait_called(r, &res, 1000);
        if (res.integer == 1) {
            for (int i = 0; i < 100 && in->messages == before; i++)
                pump_once(r, 5 * 1000000);
            assert_int_equal(in->messages, before + 1);
            return;
        }
        pump_for(r, 10);
    }
    fail_msg("the subscriber never heard");
}

static void test_subscribe_across_restart(void **state)
{
    struct rig *r = rig_start(state, 2, true);
    struct redis_options o = options();
    client_new(r, 0, &o);
    client_new(r, 1, &o);
    struct inbox in = {0};
    assert_int_equal(redis_client_subscribe(r->cl[1], "inval", on_message, on_resubscribe, &in), 0);
    assert_int_equal(redis_client_subscribe(r->cl[1], "other", on_message, NULL, &in), -EINVAL);
    wait_up(r, 0);
    wait_up(r, 1);
    publish_heard(r, &in, "a\0b", 3);
    assert_int_equal(in.last_len, 3);
    assert_memory_equal(in.last, "a\0b", 3);
    assert_int_equal(in.resubscribes, 0);
    struct result res = {0};
    assert_int_equal(command(r, 1, &res, 1, (const char *[]){"PING"}), -EINVAL);

    redis_stop();
    pump_for(r, 80);
    assert_false(redis_client_up(r->cl[1]));
    redis_start();
    wait_up(r, 0);
    wait_up(r, 1);
    publish_heard(r, &in, "after", 5);
    assert_memory_equal(in.last, "after", 5);
    assert_int_equal(in.resubscribes, 1);
    assert_int_equal(metric(r, "ringside_redis_reconnects_total"), 2);
    assert_int_equal(metric(r, "ringside_redis_up"), 1);
}

/* Freeing runs pending callbacks with REDIS_CLOSED, also from inside a callback. */
static void test_free_with_pending(void **state)
{
    struct rig *r = rig_start(state, 1, true);
    struct redis_options o = options();
    o.command_timeout_ms = 2000;
    client_new(r, 0, &o);
    wait_up(r, 0);

    struct result a = {0}, b = {0};
    assert_int_equal(command(r, 0, &a, 3, (const char *[]){"BLPOP", "none", "5"}), 0);
    assert_int_equal(command(r, 0, &b, 1, (const char *[]){"PING"}), 0);
    pump_for(r, 20);
    assert_int_equal(a.calls + b.calls, 0);
    redis_client_free(r->cl[0]);
    r->cl[0] = NULL;
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.st, REDIS_CLOSED);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.st, REDIS_CLOSED);
    assert_int_equal(metric(r, "ringside_redis_up"), 0);
    pump_for(r, 20); /* late completions of the freed client are dropped by kind */

    /* The first reply's callback frees the client; the second command is closed. */
    client_new(r, 0, &o);
    wait_up(r, 0);
    struct result first = {.rig = r, .client = 0, .free_inside = true}, second = {0};
    assert_int_equal(command(r, 0, &first, 1, (const char *[]){"PING"}), 0);
    assert_int_equal(command(r, 0, &second, 3, (const char *[]){"BLPOP", "none", "5"}), 0);
    wait_called(r, &first, 1000);
    assert_int_equal(first.st, REDIS_OK);
    assert_null(r->cl[0]);
    assert_int_equal(second.calls, 1);
    assert_int_equal(second.st, REDIS_CLOSED);
    pump_for(r, 20);
}

/* ---- URLs ---- */

static void test_url_parse(void **state)
{
    (void)state;
    struct redis_url u;
    assert_null(redis_url_parse("redis://127.0.0.1", &u));
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_null(u.username);
    assert_null(u.password);
    redis_url_free(&u);
    assert_null(u.host);

    assert_null(redis_url_parse("REDIS://redis:6380/2", &u));
    assert_string_equal(u.host, "redis");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    redis_url_free(&u);

    assert_null(redis_url_parse("redis://:pa%40ss@cache.local/", &u));
    assert_null(u.username);
    assert_string_equal(u.password, "pa@ss");
    assert_string_equal(u.host, "cache.local");
    assert_int_equal(u.db, 0);
    redis_url_free(&u);

    /* The last '@' ends the credentials, so a password may hold '@', ':' and '/'. */
    assert_null(redis_url_parse("redis://app:p@ss:w/rd@[::1]:7000/15", &u));
    assert_string_equal(u.username, "app");
    assert_string_equal(u.password, "p@ss:w/rd");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 15);
    redis_url_free(&u);

    static const char *const bad[] = {
        "http://h",       "rediss://h",        "redis://",          "redis://:7000",
        "redis://h:0",    "redis://h:65536",   "redis://h:x",       "redis://h:",
        "redis://h/abc",  "redis://h/1?x=1",   "redis://user@h",    "redis://[::1",
        "redis://u:@h",   "redis://:%zz@h",    "redis://:%00@h",    "redis://:%4@h",
        "redis://h/1/2",  "redis://h/99999999999", "redis://ho st", "redis://[]:1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = redis_url_parse(bad[i], &u);
        if (why == NULL)
            fail_msg("%s was accepted", bad[i]);
        assert_null(u.host);
        assert_null(u.password);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as ringside does: hiredis writes with write(2) */
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_url_parse),
    };
    int rc = cmocka_run_group_tests_name("redis_url", pure, NULL, NULL);
    if (rc != 0)
        return rc;
    redis_present = in_path("redis-server");
    if (!redis_present) {
        fprintf(stderr, "redis-server is not in PATH: skipping the Redis client tests\n");
        return 77;
    }
    atexit(redis_stop);
#define BOTH(test)                                                                            \
    cmocka_unit_test_setup_teardown(test, setup_uring, teardown),                            \
        cmocka_unit_test_setup_teardown(test, setup_epoll, teardown)
    const struct CMUnitTest tests[] = {
        BOTH(test_round_trip_binary),     BOTH(test_nowait_and_bounds),
        BOTH(test_timeout_then_late_reply), BOTH(test_silent_server_is_dropped),
        BOTH(test_killed_and_restarted),  BOTH(test_down_at_start),
        BOTH(test_connect_timeout),       BOTH(test_auth),
        BOTH(test_select),                BOTH(test_subscribe_across_restart),
        BOTH(test_free_with_pending),     BOTH(test_ipv6),
    };
    return cmocka_run_group_tests_name("redis_client", tests, NULL, NULL);
}
