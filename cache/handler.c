/* The cache on the request path: lookups and hits, misses filled from the backend while
 * the first client streams, collapsed waiters, revalidation, stale serving and the
 * invalidations of unsafe methods. Everything here runs on one worker's thread; what is
 * shared (the store, the collapse table) has its own locks. */
#include "cache/cache_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/config.h"
#include "proxy/log.h"

enum { KEY_MAX = 8192, WAITER_BUCKETS = 1024 };

static const char *const result_names[R_COUNT] = {
    [R_HIT] = "hit",       [R_MISS] = "miss",           [R_STALE] = "stale",
    [R_REVALIDATED] = "revalidated", [R_COLLAPSED] = "collapsed", [R_BYPASS] = "bypass",
    [R_UNCACHEABLE] = "uncacheable"};

/* ---- metrics ---- */

/* Series ids for the routes of cfg, registered the first time a worker sees it. */
static bool route_ids(struct cache_worker *cw, const struct cfg *cfg)
{
    if (cw->ids_cfg == cfg)
        return true;
    metrics_id(*ids)[R_COUNT] = calloc(cfg->num_routes, sizeof(*ids));
    if (ids == NULL)
        return false;
    for (size_t r = 0; r < cfg->num_routes; r++) {
        char route[300], labels[400];
        if (cache_route_settings_of(&cfg->routes[r]) == NULL ||
            metrics_escape_label(cfg->routes[r].name, route, sizeof(route)) < 0)
            continue; /* id 0 counts nowhere */
        for (int i = 0; i < R_COUNT; i++) {
            snprintf(labels, sizeof(labels), "route=\"%s\",result=\"%s\"", route, result_names[i]);
            metrics_counter(the_cache->metrics, "ringside_cache_requests_total",
                            "Requests on cached routes by what the cache did.", labels,
                            &ids[r][i]);
        }
    }
    free(cw->ids);
    cw->ids = ids;
    cw->ids_cfg = cfg;
    cw->ids_routes = cfg->num_routes;
    return true;
}

void cache_count(struct cache_worker *cw, const struct cfg *cfg, uint32_t route,
                 enum cache_result r)
{
    if (route_ids(cw, cfg) && route < cw->ids_routes)
        metrics_add(hw_metrics(cw->w), cw->ids[route][r], 1);
}

void cache_gauges_update(void)
{
    struct cache *c = the_cache;
    struct cache_store_stats st;
    cache_store_stats(c->store, &st);
    metrics_shared_set(c->metrics, c->objects, (double)st.objects);
    metrics_shared_set(c->metrics, c->bytes, (double)st.bytes);
    uint64_t seen = atomic_load(&c->evictions_seen);
    while (st.evictions > seen) {
        if (atomic_compare_exchange_weak(&c->evictions_seen, &seen, st.evictions)) {
            metrics_shared_add(c->metrics, c->evictions, st.evictions - seen);
            break;
        }
    }
}

static const char *result_header(const struct cache_settings *cs, enum cache_result r)
{
    switch (r) {
    case R_HIT: return cs->header_hit;
    case R_MISS: return cs->header_miss;
    case R_STALE: return cs->header_stale;
    case R_REVALIDATED: return cs->header_revalidated;
    case R_COLLAPSED: return cs->header_collapsed;
    case R_BYPASS: return cs->header_bypass;
    case R_UNCACHEABLE: return cs->header_uncacheable;
    case R_COUNT: break;
    }
    return NULL;
}

static const struct cache_settings *settings(const struct cfg *cfg)
{
    const struct cache_settings *cs = cache_settings_of(cfg);
    return cs != NULL ? cs : cache_settings_default();
}

/* ---- per-request state ---- */

static struct cx *cx_new(struct cache_worker *cw, struct hx *x,
                         const struct cache_route_settings *rs)
{
    struct cx *cx = calloc(1, sizeof(*cx));
    if (cx == NULL)
        return NULL;
    cx->cw = cw;
    cx->x = x;
    cx->rs = rs;
    cx->result = R_MISS;
    if (x != NULL) {
        cx->cs = settings(hx_cfg(x));
        cx->route = hx_route(x);
    }
    return cx;
}

/* Keep the request's fields: Vary and revalidation need them after the receive buffer
 * has gone back to the ring. */
static int cx_copy_request(struct cx *cx, int method, const struct http1_header *h, size_t n,
                           const char *host, size_t host_len)
{
    size_t total = host_len;
    for (size_t i = 0; i < n; i++)
        total += h[i].name_len + h[i].value_len;
    cx->reqbuf = malloc(total + 1);
    cx->hdrs = calloc(n + 1, sizeof(*cx->hdrs));
    if (cx->reqbuf == NULL || cx->hdrs == NULL)
        return -ENOMEM;
    char *p = cx->reqbuf;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, h[i].name, h[i].name_len);
        cx->hdrs[i].name = p;
        cx->hdrs[i].name_len = h[i].name_len;
        p += h[i].name_len;
        memcpy(p, h[i].value, h[i].value_len);
        cx->hdrs[i].value = p;
        cx->hdrs[i].value_len = h[i].value_len;
        p += h[i].value_len;
    }
    memcpy(p, host != NULL ? host : "", host_len);
    cx->host = p;
    cx->host_len = host_len;
    cx->nhdrs = n;
    cache_request_init(&cx->creq, method, cx->hdrs, n);
    return 0;
}

static int cx_set_key(struct cx *cx, const char *key, size_t len, uint64_t hash)
{
    cx->key = malloc(len + 1);
    if (cx->key == NULL)
        return -ENOMEM;
    memcpy(cx->key, key, len);
    cx->key[len] = '\0';
    cx->key_len = len;
    cx->hash = hash;
    return 0;
}

static void waiter_unlink(struct cx *cx)
{
    struct cache_worker *cw = cx->cw;
    if (!cx->waiting)
        return;
    if (cx->wprev != NULL)
        cx->wprev->wnext = cx->wnext;
    else
        cw->waiters[cx->hash & cw->waiter_mask] = cx->wnext;
    if (cx->wnext != NULL)
        cx->wnext->wprev = cx->wprev;
    cx->wnext = cx->wprev = NULL;
    cx->waiting = false;
}

static void waiter_link(struct cx *cx)
{
    struct cache_worker *cw = cx->cw;
    struct cx **head = &cw->waiters[cx->hash & cw->waiter_mask];
    cx->wprev = NULL;
    cx->wnext = *head;
    if (*head != NULL)
        (*head)->wprev = cx;
    *head = cx;
    cx->waiting = true;
}

static void building_drop(struct cx *cx)
{
    cx->storing = false;
    cache_entry_unref(cx->building);
    cx->building = NULL;
    free(cx->head);
    cx->head = NULL;
    free(cx->body);
    cx->body = NULL;
    cx->body_len = cx->body_cap = 0;
}

void cx_free(struct cx *cx)
{
    if (cx == NULL)
        return;
    waiter_unlink(cx);
    building_drop(cx);
    if (cx->filler)
        cache_fill_done(cx, false);
    cache_entry_unref(cx->stale);
    free(cx->reqbuf);
    free(cx->hdrs);
    free(cx->key);
    free(cx);
}

/* ---- answering from the cache ---- */

static bool variant_match(const struct cache_entry *e, void *arg)
{
    const struct cx *probe = arg;
    return cache_variant_matches(e, probe->hdrs, probe->nhdrs);
}

/* The fields a 304 carries from the stored response (RFC 9110 §15.4.5). */
static struct slice *not_modified_head(const struct cache_entry *e)
{
    static const char *const keep[] = {"cache-control:", "content-location:", "date:",
                                       "etag:",          "expires:",          "vary:",
                                       "last-modified:", NULL};
    struct slice *s = slice_new(e->head->len + 32);
    if (s == NULL)
        return NULL;
    static const char line[] = "HTTP/1.1 304 Not Modified\r\n";
    memcpy(s->data, line, sizeof(line) - 1);
    size_t len = sizeof(line) - 1;
    const char *p = memchr(e->head->data, '\n', e->head->len);
    const char *end = e->head->data + e->head->len;
    for (p = p != NULL ? p + 1 : end; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol != NULL ? (size_t)(eol - p + 1) : (size_t)(end - p);
        for (int i = 0; keep[i] != NULL; i++) {
            size_t k = strlen(keep[i]);
            if (n > k && strncasecmp(p, keep[i], k) == 0) {
                memcpy(s->data + len, p, n);
                len += n;
                break;
            }
        }
        p += n;
    }
    s->len = (uint32_t)len;
    return s;
}

void cache_respond_entry(struct cx *cx, struct hx *x, struct cache_entry *e, enum cache_result r)
{
    const struct cfg *cfg = hx_cfg(x);
    const struct cache_settings *cs = settings(cfg);
    struct cache_worker *cw = cx->cw;
    int64_t now = hw_wall(hx_worker(x));
    /* "Age: N\r\n" and the debug header, without printf: this runs for every hit. */
    char extra[160], digits[24];
    const char *h = result_header(cs, r);
    int64_t age = cache_entry_age(e, now);
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + age % 10);
        age /= 10;
    } while (age > 0 && nd < sizeof(digits));
    size_t n = 0;
    memcpy(extra, "Age: ", 5);
    n = 5;
    while (nd > 0)
        extra[n++] = digits[--nd];
    extra[n++] = '\r';
    extra[n++] = '\n';
    size_t hl = h != NULL ? strlen(h) : 0;
    if (hl > sizeof(extra) - n - 1)
        hl = 0;
    memcpy(extra + n, h != NULL ? h : "", hl);
    extra[n + hl] = '\0';
    if (hx_state(x) == cx)
        cx->result = r; /* counted when the exchange ends */
    else
        cache_count(cw, cfg, hx_route(x), r);
    if (cache_not_modified(e, &cx->creq)) {
        struct slice *head = not_modified_head(e);
        if (head != NULL) {
            hx_respond(x, head, extra, NULL);
            return;
        }
    }
    hx_respond(x, slice_ref(e->head), extra, e->body != NULL ? slice_ref(e->body) : NULL);
}

static void respond_status(struct hx *x, int status, const char *reason)
{
    char line[160];
    int n = snprintf(line, sizeof(line),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n",
                     status, reason, strlen(reason) + 1);
    struct slice *head = slice_copy(line, (size_t)n);
    char body[128];
    int bn = snprintf(body, sizeof(body), "%s\n", reason);
    struct slice *b = slice_copy(body, (size_t)bn);
    if (head == NULL) {
        if (b != NULL)
            slice_unref(b);
        return;
    }
    hx_respond(x, head, NULL, b);
}

/* ---- collapsed waiters ---- */

struct wake_msg {
    uint64_t hash;
    bool stored;
    size_t len;
    char key[];
};

static void waiter_resume(struct cx *cx, bool stored)
{
    struct hx *x = cx->x;
    if (stored) {
        struct cache_entry *e =
            cache_store_get(the_cache->store, cx->hash, cx->key, cx->key_len, variant_match, cx);
        if (e != NULL) {
            enum cache_use use = cache_entry_usable(e, &cx->creq, &cx->rs->policy,
                                                    hw_wall(cx->cw->w));
            if (use != CACHE_USE_VALIDATE) {
                cache_respond_entry(cx, x, e, R_COLLAPSED);
                cache_entry_unref(e);
                return;
            }
            cache_entry_unref(e);
        }
    }
    /* Nothing to share. Another variant of a cacheable response is fetched and stored
     * for this request's variant; an uncacheable or failed one just goes through. */
    cx->phase = stored ? CX_FILL : CX_PASS;
    cx->result = stored ? R_MISS : R_UNCACHEABLE;
    if (stored)
        hx_watch(x);
    if (cx->cs->header_miss != NULL)
        hx_response_fields(x, stored ? cx->cs->header_miss : cx->cs->header_uncacheable);
    hx_forward(x);
}

static void on_wake(void *ws, void *arg)
{
    struct wake_msg *m = arg;
    struct cache_worker *cw = ws;
    if (cw != NULL) {
        /* Unlink every waiter for the key first: resuming one may park new ones. */
        struct cx *list = NULL;
        struct cx *cx = cw->waiters[m->hash & cw->waiter_mask];
        while (cx != NULL) {
            struct cx *next = cx->wnext;
            if (cx->hash == m->hash && cx->key_len == m->len &&
                memcmp(cx->key, m->key, m->len) == 0) {
                waiter_unlink(cx);
                cx->wnext = list;
                list = cx;
            }
            cx = next;
        }
        while (list != NULL) {
            struct cx *next = list->wnext;
            list->wnext = NULL;
            hx_set_deadline(list->x, 0);
            waiter_resume(list, m->stored);
            list = next;
        }
    }
    free(m);
}

void cache_fill_done(struct cx *cx, bool stored)
{
    if (!cx->filler)
        return;
    cx->filler = false;
    uint64_t waiting = collapse_done(the_cache->collapse, cx->hash, cx->key, cx->key_len);
    unsigned workers = hw_count(cx->cw->w);
    for (unsigned i = 0; i < workers && waiting != 0; i++) {
        uint64_t bit = 1ull << (i < 63 ? i : 63);
        if (!(waiting & bit))
            continue;
        if (i < 63)
            waiting &= ~bit;
        struct wake_msg *m = malloc(sizeof(*m) + cx->key_len);
        if (m == NULL)
            continue; /* its waiters time out and go to the backend */
        m->hash = cx->hash;
        m->stored = stored;
        m->len = cx->key_len;
        memcpy(m->key, cx->key, cx->key_len);
        if (hw_post(cx->cw->w, i, on_wake, m) < 0)
            free(m);
    }
}

/* ---- storing a response ---- */

/* Besides what RFC 9111 keeps out of a stored head: the framing ringside writes itself,
 * the request id of the request that filled it, and Via, which is rebuilt. */
static bool excluded_from_store(const struct http1_message *m, size_t i, bool drop_set_cookie)
{
    const struct http1_header *h = &m->headers[i];
    if (!cache_field_stored(m->headers, m->num_headers, i, drop_set_cookie))
        return true;
    return http1_name_is(h, "content-length") || http1_name_is(h, "x-request-id") ||
           http1_name_is(h, "via");
}

/* The head as stored: status line and end-to-end fields, then the Via chain with our
 * own hop last. */
static int build_stored_head(struct cx *cx, const struct http1_response *resp)
{
    const struct http1_message *m = &resp->msg;
    size_t cap = resp->reason_len + 64;
    for (size_t i = 0; i < m->num_headers; i++)
        cap += m->headers[i].name_len + m->headers[i].value_len + 4;
    char *p = malloc(cap);
    if (p == NULL)
        return -ENOMEM;
    size_t len = (size_t)snprintf(p, cap, "HTTP/1.1 %03d %.*s\r\n", resp->status,
                                  (int)resp->reason_len, resp->reason);
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        /* With ignore_set_cookie the response is stored without it; without, a
         * response with Set-Cookie is not stored at all. */
        if (excluded_from_store(m, i, true))
            continue;
        memcpy(p + len, h->name, h->name_len);
        len += h->name_len;
        memcpy(p + len, ": ", 2);
        len += 2;
        memcpy(p + len, h->value, h->value_len);
        len += h->value_len;
        memcpy(p + len, "\r\n", 2);
        len += 2;
    }
    memcpy(p + len, "Via: ", 5);
    len += 5;
    for (size_t i = 0; i < m->num_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        if (!http1_name_is(h, "via") || h->value_len == 0)
            continue;
        memcpy(p + len, h->value, h->value_len);
        len += h->value_len;
        memcpy(p + len, ", ", 2);
        len += 2;
    }
    static const char mine[] = "1.1 ringside\r\n";
    memcpy(p + len, mine, sizeof(mine) - 1);
    len += sizeof(mine) - 1;
    cx->head = p;
    cx->head_len = len;
    return 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Decide whether the response is stored; prepare the entry when it is. Returns the
 * reason it is not, or NULL. */
static const char *begin_store(struct cx *cx, const struct http1_response *resp)
{
    const struct http1_message *m = &resp->msg;
    struct cache_response cr;
    cache_response_init(&cr, resp->status, m->headers, m->num_headers, cx->cs->surrogate_lower);
    const char *why = cache_storable(&cx->creq, &cr, &cx->rs->policy);
    if (why != NULL)
        return why;
    if (m->framing == HTTP1_BODY_LENGTH && m->content_length > the_cache->max_object)
        return "too-large"; /* cache.max_object bounds the body */
    if (cx->key == NULL)
        return "no-key";
    struct cache_entry *e = cache_entry_new();
    if (e == NULL || cache_entry_set_key(e, cx->key, cx->key_len) < 0) {
        cache_entry_unref(e);
        return "out-of-memory";
    }
    cx->building = e;
    e->status = (uint16_t)resp->status;
    int64_t now = hw_wall(cx->cw->w);
    if (cache_entry_fill_freshness(e, &cr, &cx->rs->policy, cx->request_time, now) < 0)
        return "out-of-memory";
    char names[1024], variant[4096];
    ssize_t nl = cache_vary_names(m->headers, m->num_headers, names, sizeof(names));
    if (nl < 0)
        return "vary-unusable";
    if (nl > 0) {
        ssize_t vl = cache_variant(names, cx->hdrs, cx->nhdrs, variant, sizeof(variant));
        if (vl < 0)
            return "vary-too-long";
        {
            if ((e->vary = dup_n(names, (size_t)nl)) == NULL ||
                (e->variant = dup_n(variant, (size_t)vl)) == NULL)
                return "out-of-memory";
            e->variant_len = (uint32_t)vl;
        }
    }
    if (cr.surrogate_keys != NULL && cr.surrogate_keys_len > 0) {
        /* Normalise to single spaces, so a purge by tag can match whole words. */
        char *t = malloc(cr.surrogate_keys_len + 1);
        if (t == NULL)
            return "out-of-memory";
        size_t n = 0;
        for (size_t i = 0; i < cr.surrogate_keys_len; i++) {
            char c = cr.surrogate_keys[i];
            bool space = c == ' ' || c == '\t' || c == ',';
            if (space) {
                if (n > 0 && t[n - 1] != ' ')
                    t[n++] = ' ';
            } else {
                t[n++] = c;
            }
        }
        while (n > 0 && t[n - 1] == ' ')
            n--;
        t[n] = '\0';
        if (n > 0)
            e->tags = t;
        else
            free(t);
    }
    if (build_stored_head(cx, resp) < 0)
        return "out-of-memory";
    if (m->framing == HTTP1_BODY_LENGTH && m->content_length > 0) {
        cx->body = malloc(m->content_length);
        if (cx->body == NULL)
            return "out-of-memory";
        cx->body_cap = m->content_length;
    }
    cx->storing = true;
    return NULL;
}

static void store_body(struct cx *cx, const char *data, size_t len)
{
    if (!cx->storing)
        return;
    if (cx->body_len + len > the_cache->max_object) {
        /* Bigger than any object may be: the client still gets it all, streamed. */
        building_drop(cx);
        cache_fill_done(cx, false);
        return;
    }
    if (cx->body_len + len > cx->body_cap) {
        size_t cap = cx->body_cap ? cx->body_cap * 2 : 16384;
        while (cap < cx->body_len + len)
            cap *= 2;
        if (cap > the_cache->max_object)
            cap = the_cache->max_object;
        char *b = realloc(cx->body, cap);
        if (b == NULL) {
            building_drop(cx);
            cache_fill_done(cx, false);
            return;
        }
        cx->body = b;
        cx->body_cap = cap;
    }
    memcpy(cx->body + cx->body_len, data, len);
    cx->body_len += len;
}

/* The response arrived whole: publish the entry, then wake whoever waits for it. */
static void finish_store(struct cx *cx)
{
    struct cache_entry *e = cx->building;
    char cl[48];
    int n = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", cx->body_len);
    e->head = slice_new(cx->head_len + (size_t)n);
    if (e->head == NULL)
        goto fail;
    memcpy(e->head->data, cx->head, cx->head_len);
    memcpy(e->head->data + cx->head_len, cl, (size_t)n);
    if (cx->body_len > 0 && (e->body = slice_copy(cx->body, cx->body_len)) == NULL)
        goto fail;
    cache_entry_finish(e);
    int rc = cache_store_put(the_cache->store, e);
    if (rc < 0) {
        log_debug("cache entry not stored", "\"key\":\"%.64s\",\"error\":\"%s\"", "-",
                  strerror(-rc));
        goto fail;
    }
    cache_gauges_update();
    if (cx->cw->redis != NULL)
        l2_store(cx->cw, e);
    building_drop(cx);
    cache_fill_done(cx, true);
    return;
fail:
    building_drop(cx);
    cache_fill_done(cx, false);
}

/* ---- refreshing a stored entry with a 304 (RFC 9111 §4.3.4) ---- */

static struct cache_entry *refreshed_entry(struct cx *cx, const struct http1_response *resp,
                                           bool *storable)
{
    const struct cache_entry *old = cx->stale;
    const struct http1_message *m = &resp->msg;
    size_t cap = old->head->len + 8;
    for (size_t i = 0; i < m->num_headers; i++)
        cap += m->headers[i].name_len + m->headers[i].value_len + 4;
    char *buf = malloc(cap + 2);
    struct cache_entry *e = cache_entry_new();
    if (buf == NULL || e == NULL)
        goto fail;
    /* A cookie set on one client's revalidation is that client's, never the entry's. */
    ssize_t len = cache_head_update(old->head->data, old->head->len, m->headers, m->num_headers,
                                    true, buf, cap);
    if (len < 0)
        goto fail;
    /* Read the merged head back to learn the new freshness. */
    memcpy(buf + len, "\r\n", 2);
    struct http1_limits lim = {cap + 2, cap + 2, 1024, 0, 0};
    struct http1_header hdrs[256];
    struct http1_response merged;
    enum http1_error err;
    if (http1_parse_response(buf, (size_t)len + 2, 0, &lim, HTTP1_GET, &merged, hdrs, 256, &err) <
        0)
        goto fail;
    struct cache_response cr;
    cache_response_init(&cr, old->status, merged.msg.headers, merged.msg.num_headers,
                        cx->cs->surrogate_lower);
    /* The 304 may also say the response must no longer be stored (private, no-store). */
    *storable = cache_storable(&cx->creq, &cr, &cx->rs->policy) == NULL;
    if (cache_entry_set_key(e, old->key, old->key_len) < 0)
        goto fail;
    e->status = old->status;
    if (cache_entry_fill_freshness(e, &cr, &cx->rs->policy, cx->request_time,
                                   hw_wall(cx->cw->w)) < 0)
        goto fail;
    if ((old->vary != NULL && (e->vary = strdup(old->vary)) == NULL) ||
        (old->variant != NULL && (e->variant = dup_n(old->variant, old->variant_len)) == NULL) ||
        (old->tags != NULL && (e->tags = strdup(old->tags)) == NULL))
        goto fail;
    e->variant_len = old->variant_len;
    if ((e->head = slice_copy(buf, (size_t)len)) == NULL)
        goto fail;
    if (old->body != NULL)
        e->body = slice_ref(old->body);
    cache_entry_finish(e);
    free(buf);
    return e;
fail:
    free(buf);
    cache_entry_unref(e);
    return NULL;
}

/* ---- the handler callbacks ---- */

static bool unsafe(enum http1_method m)
{
    return m == HTTP1_POST || m == HTTP1_PUT || m == HTTP1_DELETE || m == HTTP1_PATCH;
}

static ssize_t build_key(const struct cache_route_settings *rs, const char *host, size_t host_len,
                         const char *target, size_t target_len, const struct http1_header *h,
                         size_t n, char *out)
{
    return cache_key_build(host, host_len, target, target_len, h, n, &rs->policy.key, out,
                           KEY_MAX);
}

static void validators(const struct cache_entry *e, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    if (e->etag != NULL)
        len += (size_t)snprintf(out, cap, "If-None-Match: %s\r\n", e->etag);
    if (e->last_modified >= 0 && len < cap) {
        char date[30];
        http_date_format(e->last_modified, date);
        snprintf(out + len, cap - len, "If-Modified-Since: %s\r\n", date);
    }
}

/* Refresh e in the background while its stale copy is served (stale-while-revalidate). */
static void start_background_refresh(struct cache_worker *cw, struct hx *x,
                                     const struct http1_request *req,
                                     const struct cache_route_settings *rs, struct cache_entry *e)
{
    if (!collapse_try_fill(the_cache->collapse, e->hash, e->key, e->key_len))
        return; /* already being refreshed */
    struct cx *bg = cx_new(cw, NULL, rs);
    if (bg == NULL) {
        collapse_done(the_cache->collapse, e->hash, e->key, e->key_len);
        return;
    }
    bg->cs = settings(hx_cfg(x));
    bg->route = hx_route(x);
    bg->background = true;
    bg->phase = CX_REVALIDATE;
    bg->request_time = hw_wall(cw->w);
    bg->stale = cache_entry_ref(e);
    char extra[512];
    validators(e, extra, sizeof(extra));
    struct slice *head = NULL;
    if (cx_copy_request(bg, HTTP1_GET, req->msg.headers, req->msg.num_headers, req->host,
                        req->host_len) < 0 ||
        cx_set_key(bg, e->key, e->key_len, e->hash) < 0 ||
        (head = hx_request_head(x, req, extra, true)) == NULL) {
        collapse_done(the_cache->collapse, e->hash, e->key, e->key_len);
        cx_free(bg);
        return;
    }
    bg->filler = true;
    if (hw_fetch(cw->w, bg->route, head, bg) < 0)
        cx_free(bg); /* releases the fill */
}

int cache_warm_one(struct cache_worker *cw, const struct cfg *cfg, uint32_t route,
                   const struct cache_route_settings *rs, const char *host, size_t host_len,
                   const char *path)
{
    char head[4096];
    int n = snprintf(head, sizeof(head),
                     "GET %s HTTP/1.1\r\nHost: %.*s\r\nUser-Agent: ringside-warm\r\n\r\n", path,
                     (int)host_len, host);
    if (n < 0 || (size_t)n >= sizeof(head))
        return -EINVAL;
    struct http1_header h = {"Host", 4, host, host_len};
    char key[KEY_MAX];
    ssize_t klen = build_key(rs, host, host_len, path, strlen(path), &h, 1, key);
    if (klen < 0)
        return -EINVAL;
    uint64_t hash = cache_key_hash(key, (size_t)klen);
    if (!collapse_try_fill(the_cache->collapse, hash, key, (size_t)klen))
        return 0; /* being fetched already */
    struct cx *cx = cx_new(cw, NULL, rs);
    struct slice *s = NULL;
    if (cx == NULL || cx_set_key(cx, key, (size_t)klen, hash) < 0 ||
        cx_copy_request(cx, HTTP1_GET, &h, 1, host, host_len) < 0 ||
        (s = slice_copy(head, (size_t)n)) == NULL) {
        collapse_done(the_cache->collapse, hash, key, (size_t)klen);
        cx_free(cx);
        return -ENOMEM;
    }
    cx->cs = settings(cfg);
    cx->route = route;
    cx->background = true;
    cx->filler = true;
    cx->phase = CX_FILL;
    cx->request_time = hw_wall(cw->w);
    return hw_fetch(cw->w, route, s, cx) < 0 ? (cx_free(cx), -ENOMEM) : 0;
}

static enum handler_verdict pass_invalidating(struct cache_worker *cw, struct hx *x,
                                              const struct http1_request *req,
                                              const struct cache_route_settings *rs)
{
    struct cx *cx = cx_new(cw, x, rs);
    char key[KEY_MAX];
    ssize_t klen = build_key(rs, req->host, req->host_len, req->target, req->target_len,
                             req->msg.headers, req->msg.num_headers, key);
    if (cx == NULL || klen < 0 ||
        cx_copy_request(cx, req->method, req->msg.headers, req->msg.num_headers, req->host,
                        req->host_len) < 0 ||
        cx_set_key(cx, key, (size_t)klen, cache_key_hash(key, (size_t)klen)) < 0) {
        cx_free(cx);
        return HANDLER_PASS;
    }
    cx->phase = CX_INVALIDATE;
    hx_set_state(x, cx);
    hx_watch(x);
    return HANDLER_PASS;
}

static enum handler_verdict on_request(void *ws, struct hx *x, const struct http1_request *req,
                                       const void *section)
{
    struct cache_worker *cw = ws;
    const struct cache_route_settings *rs = section;
    const struct cfg *cfg = hx_cfg(x);
    const struct cache_settings *cs = settings(cfg);
    uint32_t route = hx_route(x);

    struct cx probe = {.cw = cw, .hdrs = (struct http1_header *)req->msg.headers,
                       .nhdrs = req->msg.num_headers};
    cache_request_init(&probe.creq, req->method, req->msg.headers, req->msg.num_headers);
    probe.creq.has_body = req->msg.framing == HTTP1_BODY_CHUNKED ||
                          (req->msg.framing == HTTP1_BODY_LENGTH && req->msg.content_length > 0);
    enum cache_lookup_mode mode = cache_request_mode(&probe.creq, &rs->policy);
    if (mode == CACHE_LOOKUP_BYPASS) {
        cache_count(cw, cfg, route, R_BYPASS);
        if (cs->header_bypass != NULL)
            hx_response_fields(x, cs->header_bypass);
        if (unsafe(req->method))
            return pass_invalidating(cw, x, req, rs);
        return HANDLER_PASS;
    }

    char key[KEY_MAX];
    ssize_t klen = build_key(rs, req->host, req->host_len, req->target, req->target_len,
                             req->msg.headers, req->msg.num_headers, key);
    if (klen < 0) {
        cache_count(cw, cfg, route, R_BYPASS);
        return HANDLER_PASS;
    }
    uint64_t hash = cache_key_hash(key, (size_t)klen);
    int64_t now = hw_wall(cw->w);
    struct cache_entry *e =
        cache_store_get(the_cache->store, hash, key, (size_t)klen, variant_match, &probe);
    if (e != NULL && e->etag == NULL && e->last_modified < 0 && cache_entry_keep(e, now) <= 0) {
        /* Stale beyond any use and nothing to revalidate with: it is only in the way. */
        cache_store_remove(the_cache->store, e);
        cache_entry_unref(e);
        e = NULL;
    }
    if (e != NULL) {
        enum cache_use use = mode == CACHE_LOOKUP_REVALIDATE
                                 ? CACHE_USE_VALIDATE
                                 : cache_entry_usable(e, &probe.creq, &rs->policy, now);
        if (use == CACHE_USE_FRESH || use == CACHE_USE_STALE_OK || use == CACHE_USE_STALE_SWR) {
            if (use == CACHE_USE_STALE_SWR)
                start_background_refresh(cw, x, req, rs, e);
            cache_respond_entry(&probe, x, e, use == CACHE_USE_FRESH ? R_HIT : R_STALE);
            cache_entry_unref(e);
            return HANDLER_TAKEN;
        }
    }
    if (probe.creq.cc.present & CC_ONLY_IF_CACHED) {
        cache_entry_unref(e);
        cache_count(cw, cfg, route, R_MISS);
        respond_status(x, 504, "Gateway Timeout: not in cache (only-if-cached)");
        return HANDLER_TAKEN;
    }

    struct cx *cx = cx_new(cw, x, rs);
    if (cx == NULL ||
        cx_copy_request(cx, req->method, req->msg.headers, req->msg.num_headers, req->host,
                        req->host_len) < 0 ||
        cx_set_key(cx, key, (size_t)klen, hash) < 0) {
        cache_entry_unref(e);
        cx_free(cx);
        cache_count(cw, cfg, route, R_BYPASS);
        return HANDLER_PASS;
    }
    cx->creq.has_body = probe.creq.has_body;
    cx->request_time = now;
    hx_set_state(x, cx);

    if (e != NULL) {
        /* Stale (or the client insists): ask the backend whether it changed. */
        cx->stale = e;
        cx->phase = CX_REVALIDATE;
        char extra[512];
        validators(e, extra, sizeof(extra));
        if (hx_prepare(x, req, extra[0] ? extra : NULL, true) < 0)
            return HANDLER_PASS;
        hx_watch(x);
        return HANDLER_PASS;
    }

    if (req->method == HTTP1_HEAD) {
        /* A HEAD miss has no body to store: it goes through as it is. */
        cx->phase = CX_PASS;
        cx->result = R_MISS;
        if (cs->header_miss != NULL)
            hx_response_fields(x, cs->header_miss);
        return HANDLER_PASS;
    }

    enum collapse_role role;
    if (hx_prepare(x, req, NULL, true) < 0 ||
        collapse_join(the_cache->collapse, hash, key, (size_t)klen, cw->index, &role) < 0) {
        cx->phase = CX_PASS;
        cx->result = R_MISS;
        return HANDLER_PASS;
    }
    if (role == COLLAPSE_WAITER) {
        cx->phase = CX_WAIT;
        waiter_link(cx);
        hx_set_deadline(x, cs->collapse_timeout);
        return HANDLER_TAKEN;
    }
    cx->filler = true;
    if (cw->redis != NULL && l2_lookup(cx) == 0) {
        cx->phase = CX_L2;
        return HANDLER_TAKEN;
    }
    cx->phase = CX_FILL;
    cx->result = R_MISS;
    hx_watch(x);
    if (cs->header_miss != NULL)
        hx_response_fields(x, cs->header_miss);
    return HANDLER_PASS;
}

void cache_miss_to_backend(struct cx *cx)
{
    struct hx *x = cx->x;
    cx->phase = CX_FILL;
    cx->result = R_MISS;
    hx_watch(x);
    if (cx->cs->header_miss != NULL)
        hx_response_fields(x, cx->cs->header_miss);
    if (hx_forward(x) < 0)
        respond_status(x, 500, "Internal Server Error");
}

static void invalidate_location(struct cx *cx, const struct http1_response *resp,
                                const char *field)
{
    for (size_t i = 0; i < resp->msg.num_headers; i++) {
        const struct http1_header *h = &resp->msg.headers[i];
        if (!http1_name_is(h, field) || h->value_len == 0)
            continue;
        const char *v = h->value;
        size_t vl = h->value_len;
        /* Same origin only (RFC 9111 §4.4): a path, or an absolute URL naming our host. */
        if (vl > 7 && strncasecmp(v, "http://", 7) == 0) {
            const char *slash = memchr(v + 7, '/', vl - 7);
            size_t hl = slash != NULL ? (size_t)(slash - v - 7) : vl - 7;
            if (hl != cx->host_len || strncasecmp(v + 7, cx->host, hl) != 0)
                continue;
            v = slash != NULL ? slash : "/";
            vl = slash != NULL ? vl - 7 - hl : 1;
        } else if (v[0] != '/') {
            continue;
        }
        char key[KEY_MAX];
        ssize_t klen =
            build_key(cx->rs, cx->host, cx->host_len, v, vl, cx->hdrs, cx->nhdrs, key);
        if (klen >= 0)
            sync_invalidate_key(cx->cw, cache_key_hash(key, (size_t)klen), key, (size_t)klen);
    }
}

static enum handler_verdict on_response_head(void *ws, struct hx *x,
                                             const struct http1_response *resp)
{
    (void)ws;
    struct cx *cx = hx_state(x);
    if (cx == NULL)
        return HANDLER_PASS;
    int status = resp->status;
    if (cx->phase == CX_INVALIDATE) {
        if (status >= 200 && status < 400) {
            sync_invalidate_key(cx->cw, cx->hash, cx->key, cx->key_len);
            invalidate_location(cx, resp, "location");
            invalidate_location(cx, resp, "content-location");
        }
        return HANDLER_PASS;
    }
    if (cx->phase == CX_REVALIDATE && cx->stale != NULL) {
        int64_t now = hw_wall(cx->cw->w);
        if (status == 304) {
            bool storable = false;
            struct cache_entry *e = refreshed_entry(cx, resp, &storable);
            if (e != NULL) {
                if (!storable) {
                    cache_store_remove(the_cache->store, cx->stale);
                    if (cx->cw->redis != NULL)
                        l2_delete(cx->cw, cx->stale->hash, cx->stale->key, cx->stale->key_len);
                } else if (cache_store_put(the_cache->store, e) == 0 && cx->cw->redis != NULL) {
                    l2_store(cx->cw, e);
                }
                cache_gauges_update();
                cache_fill_done(cx, storable);
                if (!cx->background) {
                    cache_respond_entry(cx, x, e, R_REVALIDATED);
                    cache_entry_unref(e);
                    return HANDLER_TAKEN;
                }
                cache_entry_unref(e);
                return HANDLER_PASS; /* nobody to answer: the 304 is dropped */
            }
        }
        if (status >= 500 && !cx->background &&
            cache_entry_stale_if_error_ok(cx->stale, &cx->creq, now)) {
            cache_respond_entry(cx, x, cx->stale, R_STALE);
            return HANDLER_TAKEN;
        }
        cx->result = R_MISS;
        /* A new response replaces the stored one. */
        if (status != 304)
            cache_store_remove(the_cache->store, cx->stale);
    }
    if (cx->phase != CX_FILL && cx->phase != CX_REVALIDATE)
        return HANDLER_PASS;
    const char *why = begin_store(cx, resp);
    if (why != NULL) {
        building_drop(cx);
        cache_fill_done(cx, false);
        if (!cx->background) {
            cx->result = R_UNCACHEABLE;
            if (cx->cs->header_uncacheable != NULL)
                hx_response_fields(x, cx->cs->header_uncacheable);
        }
        log_debug("response not cached", "\"reason\":\"%s\",\"request_id\":\"%s\"", why,
                  hx_request_id(x));
    }
    return HANDLER_PASS;
}

static void on_response_body(void *ws, struct hx *x, const char *data, size_t len)
{
    (void)ws;
    struct cx *cx = hx_state(x);
    if (cx != NULL && cx->storing)
        store_body(cx, data, len);
}

static void on_response_end(void *ws, struct hx *x, bool complete)
{
    (void)ws;
    struct cx *cx = hx_state(x);
    if (cx == NULL || !cx->storing)
        return;
    if (complete)
        finish_store(cx);
    else
        building_drop(cx);
}

static bool on_upstream_failed(void *ws, struct hx *x, int status)
{
    (void)ws;
    (void)status;
    struct cx *cx = hx_state(x);
    if (cx == NULL || cx->stale == NULL || cx->background)
        return false;
    if (!cache_entry_stale_if_error_ok(cx->stale, &cx->creq, hw_wall(cx->cw->w)))
        return false;
    cache_respond_entry(cx, x, cx->stale, R_STALE);
    return true;
}

static void on_deadline(void *ws, struct hx *x)
{
    (void)ws;
    struct cx *cx = hx_state(x);
    if (cx == NULL || cx->phase != CX_WAIT)
        return;
    /* The first request takes too long: stop waiting for it. */
    waiter_unlink(cx);
    cx->phase = CX_PASS;
    cx->result = R_MISS;
    if (cx->cs->header_miss != NULL)
        hx_response_fields(x, cx->cs->header_miss);
    hx_forward(x);
}

static void on_end(void *ws, struct hx *x)
{
    (void)ws;
    struct cx *cx = hx_state(x);
    if (cx == NULL)
        return;
    if (!cx->background && cx->phase != CX_INVALIDATE)
        cache_count(cx->cw, hx_cfg(x), cx->route, cx->result);
    hx_set_state(x, NULL);
    cx->x = NULL;
    if (cx->l2_pending) {
        /* The Redis reply still points here: it frees cx when it comes. */
        waiter_unlink(cx);
        return;
    }
    cx_free(cx);
}

/* ---- per worker ---- */

static void *on_worker_start(struct hw *w)
{
    struct cache_worker *cw = calloc(1, sizeof(*cw));
    if (cw == NULL)
        return NULL;
    cw->w = w;
    cw->index = hw_index(w);
    cw->waiter_mask = WAITER_BUCKETS - 1;
    cw->waiters = calloc(WAITER_BUCKETS, sizeof(*cw->waiters));
    timer_init(&cw->batch_timer, hw_kind(4));
    if (cw->waiters == NULL || l2_worker_start(cw) < 0) {
        free(cw->waiters);
        free(cw);
        return NULL;
    }
    route_ids(cw, hw_cfg(w)); /* the series exist from the start, at 0 */
    if (cw->index == 0) {
        atomic_store(&the_cache->worker0, w);
        sync_warm(cw, hw_cfg(w));
    }
    return cw;
}

static void on_worker_stop(void *ws)
{
    struct cache_worker *cw = ws;
    if (cw->index == 0)
        atomic_store(&the_cache->worker0, NULL);
    l2_worker_stop(cw);
    free(cw->waiters);
    free(cw->ids);
        free(cw);
}

static void on_event(void *ws, const struct loop_event *ev)
{
    l2_event(ws, ev);
}

static void on_timer(void *ws, uint64_t tag)
{
    struct cache_worker *cw = ws;
    if (tag == cw->batch_timer.tag)
        sync_batch_timer(cw);
    else
        l2_timer(cw, tag);
}

static struct handler_ops ops = {
    .worker_start = on_worker_start,
    .worker_stop = on_worker_stop,
    .request = on_request,
    .response_head = on_response_head,
    .response_body = on_response_body,
    .response_end = on_response_end,
    .upstream_failed = on_upstream_failed,
    .deadline = on_deadline,
    .end = on_end,
    .event = on_event,
    .timer = on_timer,
};

void cache_handler_register(void)
{
    ops.route_module = cache_route_module_index();
    handler_register(&ops);
}
