#include "proxy/runtime.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rcfg *rcfg_new(struct cfg *cfg, uint64_t generation, char *err, size_t err_len)
{
    struct rcfg *rc = calloc(1, sizeof(*rc));
    if (rc == NULL) {
        snprintf(err, err_len, "out of memory");
        cfg_free(cfg);
        return NULL;
    }
    rc->cfg = cfg;
    atomic_init(&rc->refs, 1);
    rc->generation = generation;
    const struct cfg_addr *a = &cfg->upstream.address;
    if (a->resolved) {
        rc->upstream_sa = a->sa;
        rc->upstream_len = a->sa_len;
        return rc;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    char port[8];
    snprintf(port, sizeof(port), "%u", a->port);
    int gai = getaddrinfo(a->host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, err_len, "upstream.address %s: cannot resolve: %s", a->text,
                 gai_strerror(gai));
        cfg_free(cfg);
        free(rc);
        return NULL;
    }
    memcpy(&rc->upstream_sa, res->ai_addr, res->ai_addrlen);
    rc->upstream_len = res->ai_addrlen;
    freeaddrinfo(res);
    return rc;
}

void rcfg_ref(struct rcfg *rc)
{
    atomic_fetch_add_explicit(&rc->refs, 1, memory_order_relaxed);
}

void rcfg_unref(struct rcfg *rc)
{
    if (atomic_fetch_sub_explicit(&rc->refs, 1, memory_order_acq_rel) == 1) {
        cfg_free(rc->cfg);
        free(rc);
    }
}

void runtime_set_config(struct runtime *rt, struct rcfg *rc)
{
    pthread_mutex_lock(&rt->config_lock);
    struct rcfg *old = rt->current;
    rt->current = rc;
    if (rc != NULL)
        atomic_store(&rt->generation, rc->generation);
    pthread_mutex_unlock(&rt->config_lock);
    if (old != NULL)
        rcfg_unref(old);
}

struct rcfg *runtime_config(struct runtime *rt)
{
    pthread_mutex_lock(&rt->config_lock);
    struct rcfg *rc = rt->current;
    rcfg_ref(rc);
    pthread_mutex_unlock(&rt->config_lock);
    return rc;
}

uint64_t runtime_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t runtime_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec;
}
