/* What the workers of one process share: the current configuration and a few
 * process-wide counters. Everything else a worker owns alone. */
#ifndef RINGSIDE_RUNTIME_H
#define RINGSIDE_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/config.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"

struct worker;

/* A loaded configuration plus what was derived from it off the workers (the resolved
 * backend address). Reference-counted: a worker holds one while the config is its
 * current one or a request started under it is still running. */
struct rcfg {
    struct cfg *cfg;
    _Atomic uint32_t refs;
    uint64_t generation;
    struct sockaddr_storage upstream_sa;
    socklen_t upstream_len;
};

/* Build from a loaded config, resolving the backend host name if it is one (blocking:
 * call it off the workers). Takes over cfg, also on failure. NULL with a message in err. */
struct rcfg *rcfg_new(struct cfg *cfg, uint64_t generation, char *err, size_t err_len);
void rcfg_ref(struct rcfg *rc);
void rcfg_unref(struct rcfg *rc);

struct runtime {
    struct metrics *metrics;
    enum loop_backend backend;
    unsigned num_workers;
    pthread_mutex_t config_lock;    /* guards current while it is swapped or referenced */
    struct rcfg *current;           /* holds one reference */
    _Atomic uint64_t generation;    /* of current: workers poll it each loop turn */
    _Atomic uint32_t connections;   /* client connections open in all workers */
    _Atomic bool draining;
    _Atomic unsigned workers_listening;
    uint64_t started_ns;
    struct worker *_Atomic *workers; /* num_workers entries, each set once started */
};

/* Publish a new current config (taking over the caller's reference) and drop the
 * runtime's reference to the old one. */
void runtime_set_config(struct runtime *rt, struct rcfg *rc);
/* A new reference to the current config. */
struct rcfg *runtime_config(struct runtime *rt);

/* Monotonic clock in ns. */
uint64_t runtime_now_ns(void);
/* Wall-clock seconds (HTTP's dates and ages). */
int64_t runtime_wall(void);

#endif
