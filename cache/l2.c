/* The Redis tier (L2): lookups after a memory miss, stores after a fill, deletes after an
 * invalidation. Redis never decides whether a client is served: a lookup that fails or
 * times out is a miss, and stores are sent without waiting for their replies.
 *
 * Keys live under "<namespace>:<generation>". The generation, kept in Redis at
 * "<namespace>:generation", is bumped by purges Redis cannot carry out key by key (by
 * prefix, by tag, everything): entries under an older generation are never read again
 * and expire by their TTL. */
#include "cache/cache_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/codec.h"
#include "proxy/log.h"
#include "proxy/redis.h"

#include <hiredis/hiredis.h>

enum { KIND_POLL, KIND_TIMER, KIND_SUB_POLL, KIND_SUB_TIMER };
enum { L2_HIT, L2_MISS, L2_ERROR };
enum { NS_MAX = 192, RKEY_MAX = 256 };

bool l2_up(struct cache_worker *cw)
{
    return cw->redis != NULL && redis_client_up(cw->redis) &&
           atomic_load(&the_cache->l2_generation_known);
}

static int generation_ns(char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s:%" PRIu64, the_cache->ns, atomic_load(&the_cache->l2_generation));
    return n > 0 && (size_t)n < cap ? n : -1;
}

/* ---- the generation ---- */

static void on_generation(void *arg, enum redis_status st, const struct redisReply *reply)
{
    struct cache_worker *cw = arg;
    if (st != REDIS_OK || reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_NIL && cw != NULL && cw->redis != NULL &&
        atomic_load(&the_cache->l2_generation) > 0) {
        /* Redis lost its data (a restart without persistence): put the generation this
         * pod uses back, so pods started from now on agree with it. */
        char key[NS_MAX + 16], val[24];
        snprintf(key, sizeof(key), "%s:generation", the_cache->ns);
        int n = snprintf(val, sizeof(val), "%" PRIu64, atomic_load(&the_cache->l2_generation));
        const char *argv[] = {"SET", key, val, "NX"};
        size_t lens[] = {3, strlen(key), (size_t)n, 2};
        redis_command_nowait(cw->redis, hw_now_ns(cw->w), 4, argv, lens);
    }
    uint64_t gen = 0;
    if (reply->type == REDIS_REPLY_STRING)
        gen = strtoull(reply->str, NULL, 10);
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        gen = (uint64_t)reply->integer;
    else if (reply->type != REDIS_REPLY_NIL)
        return;
    uint64_t cur = atomic_load(&the_cache->l2_generation);
    while (gen > cur && !atomic_compare_exchange_weak(&the_cache->l2_generation, &cur, gen))
        ;
    if (!atomic_exchange(&the_cache->l2_generation_known, true))
        log_info("redis cache generation", "\"generation\":%" PRIu64,
                 atomic_load(&the_cache->l2_generation));
}

/* Read the generation once Redis is reachable (at start and after every reconnect). */
static void fetch_generation(struct cache_worker *cw)
{
    if (cw->redis == NULL || !redis_client_up(cw->redis))
        return;
    char key[NS_MAX + 16];
    snprintf(key, sizeof(key), "%s:generation", the_cache->ns);
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, strlen(key)};
    if (redis_command(cw->redis, hw_now_ns(cw->w), on_generation, cw, 2, argv, lens) == 0)
        cw->want_generation = false;
}

void l2_generation_wanted(struct cache_worker *cw)
{
    cw->want_generation = true;
    fetch_generation(cw);
}

/* ---- lookups ---- */

static void count(int which)
{
    metrics_shared_add(the_cache->metrics, the_cache->l2_requests[which], 1);
}

struct l2_lookup {
    struct cx *cx;
    uint64_t vary_generation;
    char *variant; /* NUL-terminated, for the second step */
    size_t variant_len;
};

static void on_reply(void *arg, enum redis_status st, const struct redisReply *reply);

static int get(struct l2_lookup *lk, const char *key, size_t len)
{
    struct cache_worker *cw = lk->cx->cw;
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, len};
    return redis_command(cw->redis, hw_now_ns(cw->w), on_reply, lk, 2, argv, lens);
}

int l2_lookup(struct cx *cx)
{
    struct cache_worker *cw = cx->cw;
    if (!l2_up(cw))
        return -ENOTCONN;
    char ns[NS_MAX], key[RKEY_MAX];
    int len;
    if (generation_ns(ns, sizeof(ns)) < 0 ||
        (len = cache_codec_redis_key(ns, cx->hash, 0, NULL, 0, key, sizeof(key))) < 0)
        return -EINVAL;
    struct l2_lookup *lk = calloc(1, sizeof(*lk));
    if (lk == NULL)
        return -ENOMEM;
    lk->cx = cx;
    int rc = get(lk, key, (size_t)len);
    if (rc < 0) {
        free(lk);
        return rc;
    }
    cx->l2_pending = true;
    return 0;
}

/* An entry from Redis answers the request when it is usable as it is; it then also goes
 * into memory for the next ones. */
static bool use_entry(struct cx *cx, struct cache_entry *e)
{
    int64_t now = hw_wall(cx->cw->w);
    enum cache_use use = cache_entry_usable(e, &cx->creq, &cx->rs->policy, now);
    if (use != CACHE_USE_FRESH && use != CACHE_USE_STALE_OK)
        return false;
    if (cache_store_put(the_cache->store, e) == 0)
        cache_gauges_update();
    /* Wake the collapsed requests before answering: the answer ends the exchange, and
     * with it cx. */
    cache_fill_done(cx, true);
    cache_respond_entry(cx, cx->x, e, use == CACHE_USE_FRESH ? R_HIT : R_STALE);
    return true;
}

static void lookup_done(struct l2_lookup *lk, int outcome, struct cache_entry *e)
{
    struct cx *cx = lk->cx;
    free(lk->variant);
    free(lk);
    cx->l2_pending = false;
    count(outcome);
    if (cx->x == NULL) {
        /* The client left while Redis was asked. */
        cache_entry_unref(e);
        cx_free(cx);
        return;
    }
    if (e != NULL && use_entry(cx, e)) {
        cache_entry_unref(e);
        return;
    }
    cache_entry_unref(e);
    cache_miss_to_backend(cx);
}

static void on_reply(void *arg, enum redis_status st, const struct redisReply *reply)
{
    struct l2_lookup *lk = arg;
    struct cx *cx = lk->cx;
    if (st != REDIS_OK || reply == NULL ||
        (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)) {
        lookup_done(lk, L2_ERROR, NULL);
        return;
    }
    if (reply->type == REDIS_REPLY_NIL || cx->x == NULL) {
        lookup_done(lk, L2_MISS, NULL);
        return;
    }
    const char *why = NULL;
    int kind = cache_codec_kind(reply->str, reply->len, &why);
    if (kind == CACHE_CODEC_ENTRY) {
        struct cache_entry *e = NULL;
        if (cache_codec_decode(reply->str, reply->len, the_cache->max_object, &e, &why) < 0 ||
            !cache_codec_key_matches(e, cx->key, cx->key_len) ||
            !cache_codec_variant_matches(e, lk->variant, lk->variant_len)) {
            cache_entry_unref(e);
            lookup_done(lk, L2_MISS, NULL);
            return;
        }
        lookup_done(lk, L2_HIT, e);
        return;
    }
    if (kind == CACHE_CODEC_VARY && lk->variant == NULL) {
        struct cache_codec_vary v;
        char names[1024], variant[4096], ns[NS_MAX], key[RKEY_MAX];
        ssize_t vl;
        int kl;
        if (cache_codec_decode_vary(reply->str, reply->len, &v, &why) < 0 ||
            v.key_len != cx->key_len || memcmp(v.key, cx->key, v.key_len) != 0 ||
            v.names_len >= sizeof(names)) {
            lookup_done(lk, L2_MISS, NULL);
            return;
        }
        memcpy(names, v.names, v.names_len);
        names[v.names_len] = '\0';
        vl = cache_variant(names, cx->hdrs, cx->nhdrs, variant, sizeof(variant));
        if (vl < 0 || generation_ns(ns, sizeof(ns)) < 0 ||
            (kl = cache_codec_redis_key(ns, cx->hash, v.generation, variant, (size_t)vl, key,
                                        sizeof(key))) < 0 ||
            (lk->variant = malloc((size_t)vl + 1)) == NULL) {
            lookup_done(lk, L2_MISS, NULL);
            return;
        }
        memcpy(lk->variant, variant, (size_t)vl + 1);
        lk->variant_len = (size_t)vl;
        lk->vary_generation = v.generation;
        if (get(lk, key, (size_t)kl) < 0)
            lookup_done(lk, L2_ERROR, NULL);
        return;
    }
    /* Another format version, or a value that is not ours: a miss we will overwrite. */
    lookup_done(lk, L2_MISS, NULL);
}

/* ---- stores and deletes ---- */

static void set_ex(struct cache_worker *cw, const char *key, size_t key_len, const char *val,
                   size_t val_len, int64_t ttl)
{
    char ex[24];
    int n = snprintf(ex, sizeof(ex), "%" PRId64, ttl);
    const char *argv[] = {"SET", key, val, "EX", ex};
    size_t lens[] = {3, key_len, val_len, 2, (size_t)n};
    redis_command_nowait(cw->redis, hw_now_ns(cw->w), 5, argv, lens);
}

void l2_store(struct cache_worker *cw, const struct cache_entry *e)
{
    if (!l2_up(cw))
        return;
    int64_t ttl = cache_entry_keep(e, hw_wall(cw->w));
    if (ttl <= 0)
        return; /* nothing another pod could use */
    char ns[NS_MAX], key[RKEY_MAX];
    if (generation_ns(ns, sizeof(ns)) < 0)
        return;
    char *val = NULL, *rec = NULL;
    size_t val_len, rec_len;
    if (cache_codec_encode(e, &val, &val_len) < 0)
        return;
    if (e->vary == NULL) {
        int kl = cache_codec_redis_key(ns, e->hash, 0, NULL, 0, key, sizeof(key));
        if (kl >= 0)
            set_ex(cw, key, (size_t)kl, val, val_len, ttl);
        free(val);
        return;
    }
    /* A new generation for the record: variants of the key stored before are dropped
     * from Redis (never served wrongly), and readers find this one. */
    uint64_t gen = cache_codec_new_generation();
    int kl = cache_codec_redis_key(ns, e->hash, gen, e->variant, e->variant_len, key, sizeof(key));
    if (kl >= 0 && cache_codec_encode_vary(e->key, e->key_len, e->vary, strlen(e->vary), gen,
                                           &rec, &rec_len) == 0) {
        set_ex(cw, key, (size_t)kl, val, val_len, ttl);
        int bl = cache_codec_redis_key(ns, e->hash, 0, NULL, 0, key, sizeof(key));
        if (bl >= 0)
            set_ex(cw, key, (size_t)bl, rec, rec_len, ttl);
    }
    free(rec);
    free(val);
}

void l2_delete(struct cache_worker *cw, uint64_t hash, const char *key, size_t len)
{
    (void)key;
    (void)len;
    if (!l2_up(cw))
        return;
    char ns[NS_MAX], rkey[RKEY_MAX];
    int kl;
    if (generation_ns(ns, sizeof(ns)) < 0 ||
        (kl = cache_codec_redis_key(ns, hash, 0, NULL, 0, rkey, sizeof(rkey))) < 0)
        return;
    const char *argv[] = {"DEL", rkey};
    size_t lens[] = {3, (size_t)kl};
    redis_command_nowait(cw->redis, hw_now_ns(cw->w), 2, argv, lens);
}

static void on_bumped(void *arg, enum redis_status st, const struct redisReply *reply)
{
    struct cache_worker *cw = arg;
    if (st == REDIS_OK && reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        on_generation(NULL, st, reply);
        sync_publish_generation(cw, atomic_load(&the_cache->l2_generation));
    }
}

void l2_bump_generation(struct cache_worker *cw)
{
    if (cw->redis == NULL || !redis_client_up(cw->redis))
        return;
    char key[NS_MAX + 16];
    snprintf(key, sizeof(key), "%s:generation", the_cache->ns);
    const char *argv[] = {"INCR", key};
    size_t lens[] = {4, strlen(key)};
    redis_command(cw->redis, hw_now_ns(cw->w), on_bumped, cw, 2, argv, lens);
}

/* ---- the worker's clients ---- */

int l2_worker_start(struct cache_worker *cw)
{
    struct cache *c = the_cache;
    if (!c->redis)
        return 0;
    struct redis_options o = {
        .host = c->redis_host,
        .port = c->redis_port,
        .username = c->redis_username,
        .password = c->redis_password,
        .db = c->redis_db,
        .connect_timeout_ms = c->connect_timeout,
        .command_timeout_ms = c->command_timeout,
        .reconnect_min_ms = 100,
        .reconnect_max_ms = c->reconnect_max,
    };
    struct redis_env env = {
        .loop = hw_loop(cw->w),
        .timers = hw_timers(cw->w),
        .poll_kind = hw_kind(KIND_POLL),
        .timer_kind = hw_kind(KIND_TIMER),
        .mw = hw_metrics(cw->w),
        .metrics = c->rm,
    };
    uint64_t now = hw_now_ns(cw->w);
    if (redis_client_new(&env, &o, now, &cw->redis) < 0)
        return -1;
    if (cw->index == 0) {
        env.poll_kind = hw_kind(KIND_SUB_POLL);
        env.timer_kind = hw_kind(KIND_SUB_TIMER);
        char channel[NS_MAX + 16];
        snprintf(channel, sizeof(channel), "%s:invalidate", c->ns);
        if (redis_client_new(&env, &o, now, &cw->sub) < 0 ||
            redis_client_subscribe(cw->sub, channel, sync_on_message, sync_on_resubscribe, cw) < 0)
            return -1;
        cw->want_generation = true;
    }
    return 0;
}

void l2_worker_stop(struct cache_worker *cw)
{
    if (cw->sub != NULL)
        redis_client_free(cw->sub);
    if (cw->redis != NULL)
        redis_client_free(cw->redis);
    cw->sub = cw->redis = NULL;
}

void l2_event(struct cache_worker *cw, const struct loop_event *ev)
{
    uint64_t now = hw_now_ns(cw->w);
    unsigned kind = hw_kind_index(ev->tag);
    if (kind == KIND_POLL && cw->redis != NULL)
        redis_client_on_poll(cw->redis, ev->tag, ev->res, now);
    else if (kind == KIND_SUB_POLL && cw->sub != NULL)
        redis_client_on_poll(cw->sub, ev->tag, ev->res, now);
    if (cw->index == 0 && cw->want_generation)
        fetch_generation(cw);
}

void l2_timer(struct cache_worker *cw, uint64_t tag)
{
    uint64_t now = hw_now_ns(cw->w);
    unsigned kind = hw_kind_index(tag);
    if (kind == KIND_TIMER && cw->redis != NULL)
        redis_client_on_timer(cw->redis, tag, now);
    else if (kind == KIND_SUB_TIMER && cw->sub != NULL)
        redis_client_on_timer(cw->sub, tag, now);
    if (cw->index == 0 && cw->want_generation)
        fetch_generation(cw);
}
