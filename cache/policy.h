/* HTTP caching rules for a shared cache (RFC 9111, with RFC 9110 dates and conditionals).
 *
 * Pure functions: no I/O, no threads, no allocation except cache_entry_fill_freshness,
 * which copies the ETag into the entry. Structs filled from message fields point into the
 * caller's buffers (zero-copy) and are valid while those are.
 *
 * Every writer into a bounded buffer (key, Vary names, variant, head update) writes the
 * bytes and a terminating NUL, returns the length without the NUL, and returns -1 when
 * length + 1 would exceed cap or the input cannot be represented. */
#ifndef RINGSIDE_CACHE_POLICY_H
#define RINGSIDE_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/entry.h"
#include "proxy/http1.h"

/* ---- route policy ------------------------------------------------------------------- */

enum cache_query_mode {
    CACHE_QUERY_ALL,  /* the whole query as sent */
    CACHE_QUERY_NONE, /* the query is dropped */
    CACHE_QUERY_LIST, /* only the parameters named in query[], in their original order */
};

struct cache_key_policy {
    int query_mode;            /* enum cache_query_mode */
    const char *const *query;  /* parameter names (exact bytes) for CACHE_QUERY_LIST */
    size_t num_query;
    const char *const *headers;/* request field names whose values join the key */
    size_t num_headers;
};

/* From the route's YAML section; times in seconds. A zeroed policy is RFC behaviour. */
struct cache_route_policy {
    int64_t default_ttl;            /* lifetime instead of the heuristic one; 0: heuristic */
    int64_t stale_while_revalidate; /* when the response has no stale-while-revalidate */
    int64_t stale_if_error;         /* when the response has no stale-if-error */
    bool ignore_no_cache;           /* ignore client no-cache, Pragma: no-cache, max-age=0 */
    bool ignore_set_cookie;         /* store responses with Set-Cookie, without that field */
    struct cache_key_policy key;
};

/* ---- Cache-Control (RFC 9111 §5.2) --------------------------------------------------- */

enum cache_control_flags {
    CC_MAX_AGE = 1u << 0,
    CC_S_MAXAGE = 1u << 1,
    CC_NO_STORE = 1u << 2,
    CC_NO_CACHE = 1u << 3,
    CC_PRIVATE = 1u << 4,
    CC_PUBLIC = 1u << 5,
    CC_MUST_REVALIDATE = 1u << 6,
    CC_PROXY_REVALIDATE = 1u << 7,
    CC_SWR = 1u << 8,
    CC_SIE = 1u << 9,
    CC_MAX_STALE = 1u << 10,
    CC_MIN_FRESH = 1u << 11,
    CC_ONLY_IF_CACHED = 1u << 12,
    CC_NO_TRANSFORM = 1u << 13,
    CC_MUST_UNDERSTAND = 1u << 14,
    CC_IMMUTABLE = 1u << 15,
};

/* Largest delta-seconds kept; bigger values clamp to it (RFC 9111 §1.2.2). */
#define CACHE_DELTA_MAX INT64_C(2147483648)

struct cache_control {
    uint32_t present; /* enum cache_control_flags */
    /* Valid when their flag is set. max_stale is -1 for a bare max-stale (any staleness). */
    int64_t max_age, s_maxage, max_stale, min_fresh, stale_while_revalidate, stale_if_error;
};

/* Parse one Cache-Control field value into cc, which must be zeroed before the first
 * field: call once per field line, directives accumulate. Names are case-insensitive,
 * arguments may be tokens or quoted strings, unknown directives are ignored. A repeated
 * directive keeps its first value (RFC 9111 §4.2.1). An argument that is not valid
 * delta-seconds counts as 0, the most restrictive reading (a max-age that makes the
 * response stale, no stale window). The qualified forms no-cache="..." and
 * private="..." count as their unqualified forms. */
void cache_control_parse(const char *value, size_t len, struct cache_control *cc);

/* ---- HTTP-date (RFC 9110 §5.6.7) ---------------------------------------------------- */

/* IMF-fixdate, RFC 850 and asctime forms, names matched case-insensitively, GMT only
 * (RFC 9111 §4.2). Returns seconds since the epoch (dates before 1970 give 0), or -1 when
 * s[0, len) is not an HTTP-date. A leap second counts as :59. A two-digit RFC 850 year
 * more than 50 years in the future of the current clock is taken from the century before. */
int64_t http_date_parse(const char *s, size_t len);

/* Write t as IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") and a NUL; returns 29.
 * t is clamped to years 1970..9999. */
size_t http_date_format(int64_t t, char out[30]);

/* ---- requests ------------------------------------------------------------------------ */

struct cache_request {
    int method;                 /* enum http1_method */
    struct cache_control cc;
    bool pragma_no_cache;       /* Pragma: no-cache and no Cache-Control field (§5.4) */
    bool has_authorization;
    bool has_range;
    bool has_body;              /* Content-Length other than 0, or Transfer-Encoding;
                                   the caller may set it from what it knows */
    const char *if_none_match;  /* NULL when absent */
    size_t if_none_match_len;
    int64_t if_modified_since;  /* -1 when absent or invalid */
    bool has_other_conditionals;/* If-Match, If-Unmodified-Since, If-Range, or
                                   If-None-Match in more than one field line */
};

/* Read what the request asks of the cache from its fields h[0, n). */
void cache_request_init(struct cache_request *r, int method, const struct http1_header *h,
                        size_t n);

enum cache_lookup_mode {
    CACHE_LOOKUP_USE,        /* look up; serve fresh or stale as cache_entry_usable says */
    CACHE_LOOKUP_REVALIDATE, /* a stored entry may answer only after validation */
    CACHE_LOOKUP_BYPASS,     /* neither look up nor store */
};

/* BYPASS for methods other than GET and HEAD, Range, If-Match/If-Unmodified-Since/If-Range
 * and requests with a body; REVALIDATE for client no-cache, Pragma: no-cache and max-age=0
 * (unless p->ignore_no_cache); otherwise USE. A request no-store still looks up; cache_storable refuses to store. */
enum cache_lookup_mode cache_request_mode(const struct cache_request *r,
                                          const struct cache_route_policy *p);

/* ---- responses ----------------------------------------------------------------------- */

struct cache_response {
    int status;
    struct cache_control cc;
    bool pragma_no_cache;       /* Pragma: no-cache and no Cache-Control: as no-cache */
    int64_t date;               /* -1 when absent or invalid */
    int64_t expires;            /* -1 when absent or invalid */
    bool expires_invalid;       /* present but not a date: already expired (§5.3) */
    int64_t age;                /* Age field, -1 when absent or invalid */
    int64_t last_modified;      /* -1 when absent or invalid */
    const char *etag;           /* NULL when absent */
    size_t etag_len;
    bool vary_star;             /* Vary lists "*" */
    bool has_set_cookie;
    const char *surrogate_keys; /* first field named surrogate_header, NULL when none */
    size_t surrogate_keys_len;
};

/* Read the response's caching fields from h[0, n). A field that may occur once (Date,
 * Expires, Age, Last-Modified, ETag) counts from its first line. surrogate_header is
 * the configured field name carrying purge tags (any case), or NULL. */
void cache_response_init(struct cache_response *r, int status, const struct http1_header *h,
                         size_t n, const char *surrogate_header);

/* Whether a shared cache may store the response (RFC 9111 §3, §3.5). Returns NULL when it
 * may, else a short static reason for logs and metrics: "method" (only GET responses are
 * stored; a HEAD miss can be fetched as GET to fill), "range", "conditional", "body",
 * "request-no-store", "status" (not final, 206, 304, or neither heuristically cacheable
 * nor made cacheable by public, max-age, s-maxage or Expires), "no-store",
 * "must-understand", "private", "authorization", "set-cookie", "vary-star", "no-cache"
 * (validated before every use, without validators to do it), "no-freshness" (stale on
 * arrival, no validators, no stale window). */
const char *cache_storable(const struct cache_request *req, const struct cache_response *resp,
                           const struct cache_route_policy *p);

/* Set e's response_time, initial_age (RFC 9111 §4.2.3), lifetime (§4.2.1 for a shared
 * cache: s-maxage, max-age, Expires - Date, then p->default_ttl, then 10% of
 * Date - Last-Modified up to a day), stale windows (the response's, else the route's; 0
 * when stale use is forbidden), flags, etag (a copy, replacing any) and last_modified.
 * request_time and response_time are wall-clock seconds when the request was sent and
 * the response head received. Returns 0, or -ENOMEM with e unchanged. */
int cache_entry_fill_freshness(struct cache_entry *e, const struct cache_response *resp,
                               const struct cache_route_policy *p, int64_t request_time,
                               int64_t response_time);

/* ---- using stored entries ------------------------------------------------------------ */

enum cache_use {
    CACHE_USE_FRESH,     /* serve it */
    CACHE_USE_STALE_OK,  /* serve it stale: the client's max-stale allows */
    CACHE_USE_STALE_SWR, /* serve it stale and refresh it in the background */
    CACHE_USE_VALIDATE,  /* validate first (conditional if it has validators, else refetch);
                            on backend failure see cache_entry_stale_if_error_ok */
};

/* How e may answer req at wall-clock now: the client's no-cache, max-age, min-fresh and
 * max-stale, the entry's flags, lifetime and stale-while-revalidate window (§4.2, §4.2.4,
 * RFC 5861). Entries flagged CACHE_ENTRY_MUST_REVALIDATE are never served stale. */
enum cache_use cache_entry_usable(const struct cache_entry *e, const struct cache_request *req,
                                  const struct cache_route_policy *p, int64_t now);

/* Whether e may be served at now because the backend failed: it is still fresh, or its
 * staleness is within its stale-if-error window or the request's (req may be NULL).
 * Never for entries flagged NO_CACHE or MUST_REVALIDATE. */
bool cache_entry_stale_if_error_ok(const struct cache_entry *e, const struct cache_request *req,
                                   int64_t now);

/* Whether the client's own conditional request is answered 304 from e (RFC 9110 §13.2.2):
 * If-None-Match by weak comparison ("*" matches); otherwise If-Modified-Since against the
 * entry's Last-Modified, or its response_time when it has none (RFC 9111 §4.3.2). */
bool cache_not_modified(const struct cache_entry *e, const struct cache_request *req);

/* Whether a response with this status to this method invalidates what is stored for the
 * request's target (RFC 9111 §4.4): an unsafe method and a 2xx or 3xx status. */
bool cache_invalidates(int method, int status);

/* ---- keys and variants --------------------------------------------------------------- */

/* The primary key, one line each: the host (lowercase, without a default ":80" port or an
 * empty port), the target with its query per p->query_mode, then for each of
 * p->headers the request's values of that field (as cache_variant joins them). An
 * absolute-form "http://" target supplies the host. host may be NULL (HTTP/1.0). */
ssize_t cache_key_build(const char *host, size_t host_len, const char *target,
                        size_t target_len, const struct http1_header *h, size_t n,
                        const struct cache_key_policy *p, char *out, size_t cap);

/* The field names the response's Vary fields (all of them, h[0, n)) list: lowercase,
 * sorted, duplicates removed, joined by ", ". Returns 0 without Vary, -1 for "*", a name
 * that is not a token, more than 64 names, or no room. */
ssize_t cache_vary_names(const struct http1_header *h, size_t n, char *out, size_t cap);

/* The request's variant for names (NUL-terminated, as cache_vary_names writes them): for
 * each name in order, the values of the request's fields of that name, split at commas,
 * each element trimmed with inner whitespace runs made one space, joined by ", "; the
 * names' values separated by "\n". An absent field and an empty one give the same. */
ssize_t cache_variant(const char *names, const struct http1_header *h, size_t n, char *out,
                      size_t cap);

/* Whether e was stored for the variant of a request with fields h[0, n): always without
 * Vary. Needs no buffer: the variant is compared as it is produced. */
bool cache_variant_matches(const struct cache_entry *e, const struct http1_header *h, size_t n);

/* ---- stored heads -------------------------------------------------------------------- */

/* Whether field i of a response's fields h[0, n) belongs in a stored head: not
 * hop-by-hop (Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*),
 * not named by a Connection field, not Age, and not Set-Cookie when strip_set_cookie. */
bool cache_field_stored(const struct http1_header *h, size_t n, size_t i, bool strip_set_cookie);

/* The head after a 304 (RFC 9111 §3.2): old_head's status line and fields, minus those
 * named by a field of the 304 (h[0, n)) that cache_field_stored admits and that is not
 * Content-Length, followed by those 304 fields as "Name: value" lines. old_head is in
 * cache_entry head format (lines ending CRLF, no blank line). Returns -1 also when
 * old_head is malformed or a 304 field has a name that is not a token or a value with
 * CR, LF or NUL. */
ssize_t cache_head_update(const char *old_head, size_t old_len, const struct http1_header *h,
                          size_t n, bool strip_set_cookie, char *out, size_t cap);

#endif
