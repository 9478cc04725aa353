/* ringside: wiring. Parse the command line, load the config, pick the io backend,
 * start the log writer, metrics, admin endpoints and workers, then handle signals:
 * SIGHUP reloads, SIGTERM/SIGINT drain and exit. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "proxy/admin.h"
#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "proxy/runtime.h"
#include "proxy/worker.h"

#ifndef RINGSIDE_VERSION
#define RINGSIDE_VERSION "dev"
#endif

enum { LOG_BACKLOG = 8 * 1024 * 1024 };

struct app {
    struct runtime rt;
    struct worker **workers;
    pthread_mutex_t reload_lock; /* SIGHUP and the control port may both reload */
    uint64_t generation;
    const char *config_path;
    metrics_id reload_ok, reload_error;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ringside [--config FILE]\n"
            "       ringside --check-config FILE\n"
            "       ringside --version | --help\n"
            "\n"
            "A sidecar reverse proxy configured by one YAML file.\n"
            "  -c, --config FILE        run with this config (default: ringside.yaml)\n"
            "  -t, --check-config FILE  validate FILE, print what is wrong, and exit 0 or 1\n"
            "  -V, --version            print the version\n"
            "  -h, --help               print this help\n"
            "Signals: SIGHUP reloads the config; SIGTERM and SIGINT drain and exit.\n");
}

/* ---- io backend ---- */

/* Decide before the workers start, so they all run the same backend and one line
 * says which. */
static int choose_backend(enum cfg_io_backend wanted, enum loop_backend *out)
{
    if (wanted == CFG_IO_EPOLL) {
        *out = LOOP_BACKEND_EPOLL;
        return 0;
    }
    struct loop_options probe = {
        .backend = LOOP_BACKEND_URING, .queue_depth = 8, .buf_count = 8, .buf_size = 4096};
    struct loop *l;
    int rc = loop_new(&probe, &l);
    if (rc == 0) {
        loop_free(l);
        *out = LOOP_BACKEND_URING;
        return 0;
    }
    if (wanted == CFG_IO_URING) {
        log_error("io_uring unavailable", "\"error\":\"%s\",\"hint\":\"%s\"", strerror(-rc),
                  "io_backend: uring was configured; use auto or epoll where io_uring is "
                  "blocked (seccomp, kernel.io_uring_disabled)");
        return -1;
    }
    log_warn("io_uring unavailable, using epoll", "\"error\":\"%s\"", strerror(-rc));
    *out = LOOP_BACKEND_EPOLL;
    return 0;
}

/* ---- reload ---- */

static bool addr_changed(const struct cfg_addr *a, const struct cfg_addr *b)
{
    return strcmp(a->text, b->text) != 0;
}

static int reload(struct app *app, char *err, size_t err_len)
{
    pthread_mutex_lock(&app->reload_lock);
    struct cfg *cfg = cfg_load(app->config_path, err, err_len);
    struct rcfg *rc = NULL;
    if (cfg != NULL) {
        struct rcfg *cur = runtime_config(&app->rt);
        const struct cfg *old = cur->cfg;
        /* Sockets and threads stay as they are: these keys take effect on restart. */
        if (addr_changed(&old->listen, &cfg->listen) || old->workers != cfg->workers ||
            old->io_backend != cfg->io_backend ||
            addr_changed(&old->metrics_listen, &cfg->metrics_listen) ||
            addr_changed(&old->control_listen, &cfg->control_listen))
            log_warn("config reload: listen, workers, io_backend, metrics.listen and "
                     "control.listen take effect on restart",
                     NULL);
        rcfg_unref(cur);
        rc = rcfg_new(cfg, app->generation + 1, err, err_len);
    }
    if (rc == NULL) {
        char esc[1024];
        log_error("config reload failed, keeping the running config", "\"error\":\"%s\"",
                  log_json_escape(err, strlen(err), esc, sizeof(esc)));
        metrics_shared_add(app->rt.metrics, app->reload_error, 1);
        pthread_mutex_unlock(&app->reload_lock);
        return -1;
    }
    app->generation++;
    log_set_level(rc->cfg->log.level);
    struct rcfg *prev = runtime_config(&app->rt);
    runtime_set_config(&app->rt, rc);
    cache_reloaded(prev->cfg, rc->cfg);
    rcfg_unref(prev);
    metrics_shared_add(app->rt.metrics, app->reload_ok, 1);
    log_info("config reloaded", "\"generation\":%llu", (unsigned long long)app->generation);
    pthread_mutex_unlock(&app->reload_lock);
    return 0;
}

/* ---- admin hooks ---- */

static int hook_control(void *arg, const char *method, const char *path, const char *req_body,
                        size_t req_len, char **body, size_t *body_len)
{
    (void)arg;
    return cache_control(method, path, req_body, req_len, body, body_len);
}

static bool hook_listeners_up(void *arg)
{
    struct app *app = arg;
    return atomic_load(&app->rt.workers_listening) == app->rt.num_workers &&
           !atomic_load(&app->rt.draining);
}

static int hook_backend_address(void *arg, struct sockaddr_storage *sa, socklen_t *len)
{
    struct app *app = arg;
    struct rcfg *rc = runtime_config(&app->rt);
    *sa = rc->upstream_sa;
    *len = rc->upstream_len;
    rcfg_unref(rc);
    return 0;
}

static int hook_reload(void *arg, char *err, size_t err_len)
{
    return reload(arg, err, err_len);
}

/* ---- start ---- */

static int register_metrics(struct app *app)
{
    struct metrics *m = app->rt.metrics;
    metrics_id build, backend;
    int rc = 0;
    rc |= metrics_gauge(m, "ringside_build_info", "Version of the running binary.",
                        "version=\"" RINGSIDE_VERSION "\"", &build);
    char labels[64];
    snprintf(labels, sizeof(labels), "backend=\"%s\"", loop_backend_name(app->rt.backend));
    rc |= metrics_gauge(m, "ringside_io_backend", "The event loop backend in use.", labels,
                        &backend);
    rc |= metrics_counter(m, "ringside_config_reloads_total", "Config reloads, by result.",
                          "result=\"ok\"", &app->reload_ok);
    rc |= metrics_counter(m, "ringside_config_reloads_total", "Config reloads, by result.",
                          "result=\"error\"", &app->reload_error);
    if (rc != 0)
        return -1;
    metrics_shared_set(m, build, 1);
    metrics_shared_set(m, backend, 1);
    return 0;
}

static int check_config(const char *path)
{
    char err[1024];
    struct cfg *cfg = cfg_load(path, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%s: ok (%zu routes, upstream %s)\n", path, cfg->num_routes,
           cfg->upstream.address.text);
    cfg_free(cfg);
    return 0;
}

static void drain_and_stop(struct app *app, unsigned started)
{
    atomic_store(&app->rt.draining, true);
    for (unsigned i = 0; i < started; i++)
        worker_wake(app->workers[i]);
    for (unsigned i = 0; i < started; i++)
        worker_join(app->workers[i]);
}

/* After the admin thread has stopped: it may post work to worker 0 until then. */
static void free_workers(struct app *app, unsigned started)
{
    for (unsigned i = 0; i < started; i++) {
        atomic_store(&app->rt.workers[i], NULL);
        worker_free(app->workers[i]);
    }
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", required_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = "ringside.yaml";
    int opt;
    if (cache_register_config() < 0) {
        fprintf(stderr, "ringside: cannot register the cache's configuration\n");
        return 1;
    }
    while ((opt = getopt_long(argc, argv, "c:t:Vh", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            return check_config(optarg);
        case 'V':
            printf("ringside %s\n", RINGSIDE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ringside: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    /* Signals are taken by sigwaitinfo below; every thread inherits this mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[1024];
    struct cfg *cfg = cfg_load(config_path, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    log_set_level(cfg->log.level);
    if (log_start(LOG_BACKLOG) < 0) {
        fprintf(stderr, "ringside: cannot start the log writer\n");
        cfg_free(cfg);
        return 1;
    }

    static struct app app; /* lives as long as the process; the admin thread points to it */
    pthread_mutex_init(&app.reload_lock, NULL);
    pthread_mutex_init(&app.rt.config_lock, NULL);
    app.config_path = config_path;
    app.rt.started_ns = runtime_now_ns();
    app.rt.num_workers = cfg->workers;
    int status = 1;
    if (choose_backend(cfg->io_backend, &app.rt.backend) < 0) {
        cfg_free(cfg);
        goto out_log;
    }
    struct rcfg *rc = rcfg_new(cfg, ++app.generation, err, sizeof(err));
    if (rc == NULL) {
        log_error("cannot start", "\"error\":\"%s\"", err);
        goto out_log;
    }
    runtime_set_config(&app.rt, rc);
    app.rt.metrics = metrics_new(app.rt.num_workers);
    app.workers = calloc(app.rt.num_workers, sizeof(*app.workers));
    app.rt.workers = calloc(app.rt.num_workers, sizeof(*app.rt.workers));
    if (app.rt.metrics == NULL || app.workers == NULL || app.rt.workers == NULL ||
        register_metrics(&app) < 0) {
        log_error("cannot start", "\"error\":\"out of memory\"");
        goto out_cfg;
    }
    if (cache_start(rc->cfg, app.rt.metrics, err, sizeof(err)) < 0) {
        log_error("cannot start", "\"error\":\"%s\"", err);
        goto out_cfg;
    }

    struct admin_hooks hooks = {
        .arg = &app,
        .listeners_up = hook_listeners_up,
        .backend_address = hook_backend_address,
        .reload = hook_reload,
        .control = hook_control,
    };
    struct admin *admin = admin_start(&rc->cfg->metrics_listen, &rc->cfg->control_listen,
                                      app.rt.metrics, &hooks, err, sizeof(err));
    if (admin == NULL) {
        log_error("cannot start admin endpoints", "\"error\":\"%s\"", err);
        goto out_cfg;
    }

    unsigned started = 0;
    for (; started < app.rt.num_workers; started++) {
        if (worker_start(&app.rt, started, &app.workers[started], err, sizeof(err)) < 0) {
            log_error("cannot start worker", "\"worker\":%u,\"error\":\"%s\"", started, err);
            drain_and_stop(&app, started);
            goto out_admin;
        }
    }
    log_info("io backend", "\"backend\":\"%s\"", loop_backend_name(app.rt.backend));
    log_info("ringside started",
             "\"version\":\"" RINGSIDE_VERSION "\",\"listen\":\"%s\",\"workers\":%u,"
             "\"upstream\":\"%s\",\"metrics\":\"%s\",\"config\":\"%s\"",
             rc->cfg->listen.text, app.rt.num_workers, rc->cfg->upstream.address.text,
             rc->cfg->metrics_listen.text, config_path);

    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&sigs, &si);
        if (sig < 0)
            continue;
        if (sig == SIGHUP) {
            char rerr[1024];
            reload(&app, rerr, sizeof(rerr));
            continue;
        }
        log_info("draining", "\"signal\":\"%s\"", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    drain_and_stop(&app, started);
    log_info("ringside stopped", NULL);
    status = 0;

out_admin:
    admin_stop(admin);
    free_workers(&app, started);
out_cfg:
    cache_stop();
    free(app.workers);
    free(app.rt.workers);
    runtime_set_config(&app.rt, NULL);
    metrics_free(app.rt.metrics);
out_log:
    log_stop();
    return status;
}
