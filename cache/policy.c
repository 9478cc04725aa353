/* What a shared cache may store and serve (RFC 9111 §3, §4). */
#include "cache/policy.h"

#include <errno.h>
#include <stdlib.h>

#include "cache/policy_internal.h"

/* Heuristic lifetimes stop at a day: 10% of a long-unchanged resource's age would keep
 * a change invisible for weeks. */
#define HEURISTIC_MAX 86400

static int64_t clamp_delta(int64_t v)
{
    return v < 0 ? 0 : v > CACHE_DELTA_MAX ? CACHE_DELTA_MAX : v;
}

/* ---- requests ------------------------------------------------------------------------ */

void cache_request_init(struct cache_request *r, int method, const struct http1_header *h,
                        size_t n)
{
    *r = (struct cache_request){ .method = method, .if_modified_since = -1 };
    bool has_cache_control = false, pragma_no_cache = false;
    int if_modified_since_fields = 0;
    for (size_t i = 0; i < n; i++) {
        const struct http1_header *f = &h[i];
        if (http1_name_is(f, "cache-control")) {
            has_cache_control = true;
            cache_control_parse(f->value, f->value_len, &r->cc);
        } else if (http1_name_is(f, "pragma")) {
            pragma_no_cache |= http1_list_has_token(f->value, f->value_len, "no-cache");
        } else if (http1_name_is(f, "authorization")) {
            r->has_authorization = true;
        } else if (http1_name_is(f, "range")) {
            r->has_range = true;
        } else if (http1_name_is(f, "content-length")) {
            r->has_body |= !(f->value_len == 1 && f->value[0] == '0');
        } else if (http1_name_is(f, "transfer-encoding")) {
            r->has_body = true;
        } else if (http1_name_is(f, "if-none-match")) {
            /* one pointer cannot hold a list split over lines: leave those to the backend */
            if (r->if_none_match != NULL)
                r->has_other_conditionals = true;
            r->if_none_match = f->value;
            r->if_none_match_len = f->value_len;
        } else if (http1_name_is(f, "if-modified-since")) {
            if_modified_since_fields++;
            r->if_modified_since = http_date_parse(f->value, f->value_len);
        } else if (http1_name_is(f, "if-match") || http1_name_is(f, "if-unmodified-since") ||
                   http1_name_is(f, "if-range")) {
            r->has_other_conditionals = true;
        }
    }
    /* Pragma counts only without Cache-Control (§5.4); an If-Modified-Since with more
     * than one member is ignored (RFC 9110 §13.1.3). */
    r->pragma_no_cache = pragma_no_cache && !has_cache_control;
    if (if_modified_since_fields > 1)
        r->if_modified_since = -1;
}

/* no-cache, Pragma: no-cache, and max-age=0: what a browser's reload sends. An entry
 * stored this very second has age 0 and would satisfy max-age=0 to the letter, but the
 * client plainly asks for a response validated now. */
static bool client_wants_validation(const struct cache_request *r,
                                    const struct cache_route_policy *p)
{
    bool max_age_0 = (r->cc.present & CC_MAX_AGE) && r->cc.max_age == 0;
    return !p->ignore_no_cache &&
           ((r->cc.present & CC_NO_CACHE) || r->pragma_no_cache || max_age_0);
}

enum cache_lookup_mode cache_request_mode(const struct cache_request *r,
                                          const struct cache_route_policy *p)
{
    if ((r->method != HTTP1_GET && r->method != HTTP1_HEAD) || r->has_range ||
        r->has_other_conditionals || r->has_body)
        return CACHE_LOOKUP_BYPASS;
    return client_wants_validation(r, p) ? CACHE_LOOKUP_REVALIDATE : CACHE_LOOKUP_USE;
}

/* ---- responses ----------------------------------------------------------------------- */

void cache_response_init(struct cache_response *r, int status, const struct http1_header *h,
                         size_t n, const char *surrogate_header)
{
    *r = (struct cache_response){
        .status = status, .date = -1, .expires = -1, .age = -1, .last_modified = -1
    };
    bool has_cache_control = false, pragma_no_cache = false;
    bool seen_date = false, seen_expires = false, seen_age = false, seen_last_modified = false;
    size_t surrogate_len = surrogate_header != NULL ? strlen(surrogate_header) : 0;
    for (size_t i = 0; i < n; i++) {
        const struct http1_header *f = &h[i];
        if (http1_name_is(f, "cache-control")) {
            has_cache_control = true;
            cache_control_parse(f->value, f->value_len, &r->cc);
        } else if (http1_name_is(f, "pragma")) {
            pragma_no_cache |= http1_list_has_token(f->value, f->value_len, "no-cache");
        } else if (http1_name_is(f, "date")) {
            if (!seen_date)
                r->date = http_date_parse(f->value, f->value_len);
            seen_date = true;
        } else if (http1_name_is(f, "expires")) {
            if (!seen_expires) {
                r->expires = http_date_parse(f->value, f->value_len);
                r->expires_invalid = r->expires < 0;
            }
            seen_expires = true;
        } else if (http1_name_is(f, "age")) {
            if (!seen_age)
                r->age = cache__delta_seconds(f->value, f->value_len);
            seen_age = true;
        } else if (http1_name_is(f, "last-modified")) {
            if (!seen_last_modified)
                r->last_modified = http_date_parse(f->value, f->value_len);
            seen_last_modified = true;
        } else if (http1_name_is(f, "etag")) {
            if (r->etag == NULL) {
                r->etag = f->value;
                r->etag_len = f->value_len;
            }
        } else if (http1_name_is(f, "vary")) {
            r->vary_star |= http1_list_has_token(f->value, f->value_len, "*");
        } else if (http1_name_is(f, "set-cookie")) {
            r->has_set_cookie = true;
        } else if (surrogate_header != NULL && r->surrogate_keys == NULL &&
                   equal_ci(f->name, f->name_len, surrogate_header, surrogate_len)) {
            r->surrogate_keys = f->value;
            r->surrogate_keys_len = f->value_len;
        }
    }
    r->pragma_no_cache = pragma_no_cache && !has_cache_control;
}

/* RFC 9110 §15.1; 206 is left out because Range requests bypass the cache. */
static bool heuristically_cacheable(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return true;
    default:
        return false;
    }
}

/* Statuses whose caching requirements we implement, for must-understand (§5.2.2.3). */
static bool status_understood(int status)
{
    return heuristically_cacheable(status) || status == 302 || status == 303 ||
           status == 307 || status == 400 || status == 403 || status == 500 ||
           status == 502 || status == 503 || status == 504;
}

static bool has_explicit_freshness(const struct cache_response *r)
{
    return (r->cc.present & (CC_MAX_AGE | CC_S_MAXAGE)) || r->expires >= 0 ||
           r->expires_invalid;
}

/* Stale use forbidden by the response itself (§4.2.4). */
static bool must_revalidate(const struct cache_response *r)
{
    return r->cc.present & (CC_MUST_REVALIDATE | CC_PROXY_REVALIDATE | CC_S_MAXAGE);
}

static bool no_cache(const struct cache_response *r)
{
    return (r->cc.present & CC_NO_CACHE) || r->pragma_no_cache;
}

/* Freshness lifetime for a shared cache (§4.2.1); date is the Date value or, without
 * one, when the response was received. */
static int64_t freshness_lifetime(const struct cache_response *r,
                                  const struct cache_route_policy *p, int64_t date)
{
    if (r->cc.present & CC_S_MAXAGE)
        return r->cc.s_maxage;
    if (r->cc.present & CC_MAX_AGE)
        return r->cc.max_age;
    if (r->expires_invalid)
        return 0;
    if (r->expires >= 0)
        return clamp_delta(r->expires - date);
    /* Heuristics only for these (§4.2.2); the route's default takes their place. */
    if (!heuristically_cacheable(r->status) && !(r->cc.present & CC_PUBLIC))
        return 0;
    if (p->default_ttl > 0)
        return clamp_delta(p->default_ttl);
    if (r->last_modified >= 0 && r->last_modified < date) {
        int64_t h = (date - r->last_modified) / 10;
        return h < HEURISTIC_MAX ? h : HEURISTIC_MAX;
    }
    return 0;
}

static int64_t stale_window(const struct cache_response *r, uint32_t flag, int64_t value,
                            int64_t route_default)
{
    if (must_revalidate(r) || no_cache(r))
        return 0;
    return clamp_delta((r->cc.present & flag) ? value : route_default);
}

const char *cache_storable(const struct cache_request *req, const struct cache_response *resp,
                           const struct cache_route_policy *p)
{
    uint32_t cc = resp->cc.present;
    if (req->method != HTTP1_GET)
        return "method";
    if (req->has_range)
        return "range";
    if (req->has_other_conditionals)
        return "conditional";
    if (req->has_body)
        return "body";
    if (req->cc.present & CC_NO_STORE)
        return "request-no-store";
    if (resp->status < 200 || resp->status == 206 || resp->status == 304)
        return "status";
    /* must-understand lets a cache that knows the status ignore no-store (§5.2.2.3) */
    if (cc & CC_MUST_UNDERSTAND) {
        if (!status_understood(resp->status))
            return "must-understand";
    } else if (cc & CC_NO_STORE) {
        return "no-store";
    }
    if (cc & CC_PRIVATE)
        return "private";
    if (req->has_authorization && !(cc & (CC_PUBLIC | CC_S_MAXAGE | CC_MUST_REVALIDATE)))
        return "authorization";
    if (resp->has_set_cookie && !p->ignore_set_cookie)
        return "set-cookie";
    if (resp->vary_star)
        return "vary-star";
    if (!has_explicit_freshness(resp) && !heuristically_cacheable(resp->status) &&
        !(cc & CC_PUBLIC))
        return "status";
    /* Stored, but could it ever answer a request without a full refetch? Without a Date
     * an Expires is judged against itself minus one second: fresh if it is a date at all. */
    if (resp->etag == NULL && resp->last_modified < 0) {
        if (no_cache(resp))
            return "no-cache";
        int64_t date = resp->date >= 0 ? resp->date : resp->expires - 1;
        bool fresh = freshness_lifetime(resp, p, date) > 0;
        bool stale_use = stale_window(resp, CC_SWR, resp->cc.stale_while_revalidate,
                                      p->stale_while_revalidate) > 0 ||
                         stale_window(resp, CC_SIE, resp->cc.stale_if_error,
                                      p->stale_if_error) > 0;
        if (!fresh && !stale_use)
            return "no-freshness";
    }
    return NULL;
}

int cache_entry_fill_freshness(struct cache_entry *e, const struct cache_response *resp,
                               const struct cache_route_policy *p, int64_t request_time,
                               int64_t response_time)
{
    char *etag = NULL;
    if (resp->etag != NULL) {
        etag = malloc(resp->etag_len + 1);
        if (etag == NULL)
            return -ENOMEM;
        memcpy(etag, resp->etag, resp->etag_len);
        etag[resp->etag_len] = '\0';
    }
    free(e->etag);
    e->etag = etag;
    e->last_modified = resp->last_modified;

    /* §4.2.3. A response without Date is dated when it arrived (RFC 9110 §6.6.1). */
    int64_t date = resp->date >= 0 ? resp->date : response_time;
    int64_t apparent_age = clamp_delta(response_time - date);
    int64_t response_delay = clamp_delta(response_time - request_time);
    int64_t corrected_age = clamp_delta((resp->age > 0 ? resp->age : 0) + response_delay);
    e->response_time = response_time;
    e->initial_age = apparent_age > corrected_age ? apparent_age : corrected_age;
    e->lifetime = freshness_lifetime(resp, p, date);
    e->stale_while_revalidate = stale_window(resp, CC_SWR, resp->cc.stale_while_revalidate,
                                             p->stale_while_revalidate);
    e->stale_if_error = stale_window(resp, CC_SIE, resp->cc.stale_if_error, p->stale_if_error);
    e->flags = (must_revalidate(resp) ? CACHE_ENTRY_MUST_REVALIDATE : 0) |
               (no_cache(resp) ? CACHE_ENTRY_NO_CACHE : 0);
    return 0;
}

/* ---- using stored entries ------------------------------------------------------------ */

enum cache_use cache_entry_usable(const struct cache_entry *e, const struct cache_request *req,
                                  const struct cache_route_policy *p, int64_t now)
{
    const struct cache_control *cc = &req->cc;
    if ((e->flags & CACHE_ENTRY_NO_CACHE) || client_wants_validation(req, p))
        return CACHE_USE_VALIDATE;
    int64_t age = cache_entry_age(e, now);
    int64_t ttl = e->lifetime - age;
    /* A reload's max-age=0 is a no-cache by another name. */
    bool honour_max_age = (cc->present & CC_MAX_AGE) && !(p->ignore_no_cache && cc->max_age == 0);
    if (honour_max_age && age > cc->max_age)
        return CACHE_USE_VALIDATE;
    if (ttl > 0) {
        if ((cc->present & CC_MIN_FRESH) && ttl < cc->min_fresh)
            return CACHE_USE_VALIDATE;
        return CACHE_USE_FRESH;
    }
    if (e->flags & CACHE_ENTRY_MUST_REVALIDATE)
        return CACHE_USE_VALIDATE;
    int64_t staleness = -ttl;
    if (staleness < e->stale_while_revalidate)
        return CACHE_USE_STALE_SWR;
    if ((cc->present & CC_MAX_STALE) && (cc->max_stale < 0 || staleness <= cc->max_stale))
        return CACHE_USE_STALE_OK;
    return CACHE_USE_VALIDATE;
}

bool cache_entry_stale_if_error_ok(const struct cache_entry *e, const struct cache_request *req,
                                   int64_t now)
{
    if (e->flags & (CACHE_ENTRY_NO_CACHE | CACHE_ENTRY_MUST_REVALIDATE))
        return false;
    int64_t ttl = cache_entry_ttl(e, now);
    if (ttl > 0)
        return true;
    int64_t window = e->stale_if_error;
    if (req != NULL && (req->cc.present & CC_SIE) && req->cc.stale_if_error > window)
        window = req->cc.stale_if_error;
    return -ttl < window;
}

/* The opaque-tag of an entity-tag, without any weakness prefix (RFC 9110 §8.8.3.2). */
static void strip_weak(const char **tag, size_t *len)
{
    if (*len >= 2 && (*tag)[0] == 'W' && (*tag)[1] == '/') {
        *tag += 2;
        *len -= 2;
    }
}

/* Weak comparison of each member of an If-None-Match list with etag. Quoted tags may
 * hold commas; a member that is not quoted is taken up to the next comma. */
static bool etag_list_matches(const char *list, size_t len, const char *etag, size_t etag_len)
{
    strip_weak(&etag, &etag_len);
    size_t i = 0;
    while (i < len) {
        while (i < len && (list[i] == ',' || is_ows(list[i])))
            i++;
        if (i == len)
            break;
        size_t start = i;
        if (len - i >= 2 && list[i] == 'W' && list[i + 1] == '/')
            i += 2;
        if (i < len && list[i] == '"') {
            const char *close = memchr(list + i + 1, '"', len - i - 1);
            i = close != NULL ? (size_t)(close - list) + 1 : len;
        } else {
            while (i < len && list[i] != ',')
                i++;
            while (i > start && is_ows(list[i - 1]))
                i--;
        }
        const char *tag = list + start;
        size_t tag_len = i - start;
        strip_weak(&tag, &tag_len);
        if (tag_len == etag_len && memcmp(tag, etag, tag_len) == 0)
            return true;
        while (i < len && list[i] != ',')
            i++;
    }
    return false;
}

bool cache_not_modified(const struct cache_entry *e, const struct cache_request *req)
{
    if (req->if_none_match != NULL) {
        if (req->if_none_match_len == 1 && req->if_none_match[0] == '*')
            return true;
        return e->etag != NULL && etag_list_matches(req->if_none_match, req->if_none_match_len,
                                                    e->etag, strlen(e->etag));
    }
    if (req->if_modified_since < 0 || (req->method != HTTP1_GET && req->method != HTTP1_HEAD))
        return false;
    int64_t modified = e->last_modified >= 0 ? e->last_modified : e->response_time;
    return modified <= req->if_modified_since;
}

bool cache_invalidates(int method, int status)
{
    bool safe = method == HTTP1_GET || method == HTTP1_HEAD || method == HTTP1_OPTIONS ||
                method == HTTP1_TRACE;
    return !safe && status >= 200 && status < 400;
}
