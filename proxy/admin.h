/* The admin endpoints: the metrics listener (/metrics, /healthz, /readyz) and the control
 * listener (/reload, /status), served by one dedicated thread that is not a worker.
 *
 * The thread multiplexes both listeners and every admin connection with non-blocking
 * sockets and poll(), so one slow client never holds up another: each connection has a
 * 5 s deadline per phase (read the request, write the answer), at most 64 are open at once
 * (beyond that, new clients wait in the listen backlog), a request head is at most 8 KiB
 * and a body 64 KiB. Every answer is HTTP/1.1 with Connection: close.
 *
 * It counts its answers in ringside_admin_requests_total{listener,code}. */
#ifndef RINGSIDE_ADMIN_H
#define RINGSIDE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "proxy/config.h"

struct metrics;
struct admin;

/* Called on the admin thread, so they must be safe to call from a thread other than the
 * one that set them up. A NULL function skips what it would decide: listeners_up NULL
 * counts as up, backend_address NULL means no backend probe, reload NULL answers 501. */
struct admin_hooks {
    void *arg;
    /* True when the proxy's listeners are up (all workers started, not draining). */
    bool (*listeners_up)(void *arg);
    /* Fill the backend address to probe for /readyz; return 0, or -1 if unknown (not ready). */
    int (*backend_address)(void *arg, struct sockaddr_storage *sa, socklen_t *len);
    /* Reload the config as SIGHUP does; return 0 if the new config was applied, else -1 with
     * a one-line message in err. Runs on the admin thread, which waits for it. */
    int (*reload)(void *arg, char *err, size_t err_len);
    /* Control-port paths the core does not serve (a module's, e.g. /cache/purge): return
     * the status and set *body (malloc'd JSON the admin frees) and *body_len; or return 0
     * when the path is unknown (404). Runs on the admin thread. */
    int (*control)(void *arg, const char *method, const char *path, const char *req_body,
                   size_t req_len, char **body, size_t *body_len);
};

/* Bind both listeners (SO_REUSEADDR; IPv4 or IPv6; port 0 picks a free port) and start the
 * thread. An address that is not resolved is looked up here with getaddrinfo. Either
 * address may be NULL to leave that listener out. m is borrowed and must outlive the admin
 * (the admin registers its own counter in it); hooks is copied. Returns NULL on error with
 * a one-line message in err. */
struct admin *admin_start(const struct cfg_addr *metrics_listen, const struct cfg_addr *control_listen,
                          struct metrics *m, const struct admin_hooks *hooks, char *err,
                          size_t err_len);

/* Stop the thread, close every socket, free a. Connections in progress are dropped. */
void admin_stop(struct admin *a);

/* The bound ports (useful after port 0), or -1 for a listener left out. */
int admin_metrics_port(const struct admin *a);
int admin_control_port(const struct admin *a);

#endif
