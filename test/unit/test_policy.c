/* Cache policy (RFC 9111): Cache-Control, HTTP-date, what is stored, freshness and age,
 * how a stored entry answers a request, conditionals, Vary, keys and 304 head updates.
 * Almost every test is a table; a failing row names itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/entry.h"
#include "cache/policy.h"

#define CHECK(name, cond)                                                                \
    do {                                                                                 \
        if (!(cond))                                                                     \
            fail_msg("case \"%s\": %s (line %d)", (name), #cond, __LINE__);             \
    } while (0)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Sun, 06 Nov 1994 08:49:37 GMT: the Date of most responses below */
#define D INT64_C(784111777)
#define DATE_D "Sun, 06 Nov 1994 08:49:37 GMT"
#define DATE_D_PLUS_60 "Sun, 06 Nov 1994 08:50:37 GMT"
#define DATE_D_PLUS_100 "Sun, 06 Nov 1994 08:51:17 GMT"
#define DATE_D_MINUS_1000 "Sun, 06 Nov 1994 08:32:57 GMT"
#define DATE_D_MINUS_10M "Thu, 13 Jul 1994 23:03:57 GMT" /* D - 10,000,000 */

/* ---- fields from text ----------------------------------------------------------------- */

#define MAX_FIELDS 80

struct fields {
    struct http1_header h[MAX_FIELDS];
    size_t n;
    char buf[4096];
};

/* "Name: value" lines separated by "\n"; values trimmed as the parser trims them. */
static void fields_parse(struct fields *f, const char *text)
{
    f->n = 0;
    if (text == NULL || text[0] == '\0')
        return;
    size_t len = strlen(text);
    assert_true(len < sizeof(f->buf));
    memcpy(f->buf, text, len + 1);
    char *line = f->buf;
    while (line != NULL) {
        char *next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        char *colon = strchr(line, ':');
        assert_non_null(colon);
        assert_true(f->n < MAX_FIELDS);
        char *v = colon + 1, *end = colon + strlen(colon);
        while (*v == ' ' || *v == '\t')
            v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        f->h[f->n++] = (struct http1_header){ .name = line, .name_len = (size_t)(colon - line),
                                              .value = v, .value_len = (size_t)(end - v) };
        line = next;
    }
}

/* ---- Cache-Control -------------------------------------------------------------------- */

struct cc_case {
    const char *value;
    uint32_t present;
    int64_t max_age, s_maxage, max_stale, min_fresh, swr, sie;
};

#define ROW(v, p) .value = (v), .present = (p)

static const struct cc_case cc_cases[] = {
    { ROW("", 0) },
    { ROW("max-age=60", CC_MAX_AGE), .max_age = 60 },
    { ROW("MAX-Age=60", CC_MAX_AGE), .max_age = 60 },
    { ROW("max-age=\"60\"", CC_MAX_AGE), .max_age = 60 },
    { ROW("max-age=60, max-age=10", CC_MAX_AGE), .max_age = 60 },
    { ROW("max-age=abc", CC_MAX_AGE), .max_age = 0 },
    { ROW("max-age=abc, max-age=60", CC_MAX_AGE), .max_age = 0 },
    { ROW("max-age", CC_MAX_AGE), .max_age = 0 },
    { ROW("max-age=", CC_MAX_AGE), .max_age = 0 },
    { ROW("max-age=-1", CC_MAX_AGE), .max_age = 0 },
    { ROW("max-age=+5", CC_MAX_AGE), .max_age = 0 },
    { ROW("max-age=60 junk", CC_MAX_AGE), .max_age = 0 },
    { ROW("max-age=\"6", CC_MAX_AGE), .max_age = 0 },
    { ROW("max-age = 60", CC_MAX_AGE), .max_age = 60 },
    { ROW("max-age=2147483647", CC_MAX_AGE), .max_age = 2147483647 },
    { ROW("max-age=2147483648", CC_MAX_AGE), .max_age = 2147483648 },
    { ROW("max-age=2147483649", CC_MAX_AGE), .max_age = 2147483648 },
    { ROW("max-age=99999999999999999999999999", CC_MAX_AGE), .max_age = 2147483648 },
    { ROW("s-maxage=10,proxy-revalidate", CC_S_MAXAGE | CC_PROXY_REVALIDATE), .s_maxage = 10 },
    { ROW("max-stale", CC_MAX_STALE), .max_stale = -1 },
    { ROW("max-stale=5", CC_MAX_STALE), .max_stale = 5 },
    { ROW("max-stale=x", CC_MAX_STALE), .max_stale = 0 },
    { ROW("min-fresh=7", CC_MIN_FRESH), .min_fresh = 7 },
    { ROW("stale-while-revalidate=30, stale-if-error=300", CC_SWR | CC_SIE), .swr = 30,
      .sie = 300 },
    { ROW("no-cache=\"Set-Cookie, X-Foo\", max-age=5", CC_NO_CACHE | CC_MAX_AGE), .max_age = 5 },
    { ROW("private=\"a,b\"", CC_PRIVATE) },
    { ROW("private, public", CC_PRIVATE | CC_PUBLIC) },
    { ROW("foo=bar, no-store", CC_NO_STORE) },
    { ROW("foo=\"a, no-store\", public", CC_PUBLIC) },
    { ROW(",,, no-store ,,", CC_NO_STORE) },
    { ROW("NO-STORE", CC_NO_STORE) },
    { ROW("no-storex, xno-store", 0) },
    { ROW("must-revalidate, only-if-cached, no-transform, immutable, must-understand",
          CC_MUST_REVALIDATE | CC_ONLY_IF_CACHED | CC_NO_TRANSFORM | CC_IMMUTABLE |
              CC_MUST_UNDERSTAND) },
    { ROW("=5, \"x\", max-age=1", CC_MAX_AGE), .max_age = 1 },
};

static void test_cache_control(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(cc_cases); i++) {
        const struct cc_case *c = &cc_cases[i];
        struct cache_control cc = { 0 };
        cache_control_parse(c->value, strlen(c->value), &cc);
        CHECK(c->value, cc.present == c->present);
        if (c->present & CC_MAX_AGE)
            CHECK(c->value, cc.max_age == c->max_age);
        if (c->present & CC_S_MAXAGE)
            CHECK(c->value, cc.s_maxage == c->s_maxage);
        if (c->present & CC_MAX_STALE)
            CHECK(c->value, cc.max_stale == c->max_stale);
        if (c->present & CC_MIN_FRESH)
            CHECK(c->value, cc.min_fresh == c->min_fresh);
        if (c->present & CC_SWR)
            CHECK(c->value, cc.stale_while_revalidate == c->swr);
        if (c->present & CC_SIE)
            CHECK(c->value, cc.stale_if_error == c->sie);
    }
}

static void test_cache_control_accumulates(void **state)
{
    (void)state;
    struct cache_control cc = { 0 };
    cache_control_parse("max-age=5", 9, &cc);
    cache_control_parse("no-cache, max-age=9", 19, &cc);
    assert_int_equal(cc.present, CC_MAX_AGE | CC_NO_CACHE);
    assert_int_equal(cc.max_age, 5);
    /* the length bounds the parse: what follows is not read */
    struct cache_control cut = { 0 };
    cache_control_parse("max-age=12345", 10, &cut);
    assert_int_equal(cut.max_age, 12);
}

/* ---- HTTP-date ------------------------------------------------------------------------- */

struct date_case {
    const char *text;
    int64_t want;
};

static const struct date_case date_cases[] = {
    { DATE_D, D },
    { "sun, 06 nov 1994 08:49:37 gmt", D },
    { "Sunday, 06-Nov-94 08:49:37 GMT", D },
    { "SUNDAY, 06-NOV-94 08:49:37 GMT", D },
    { "Sun Nov  6 08:49:37 1994", D },
    { "Sun Nov 06 08:49:37 1994", D },
    { "Tue, 29 Feb 2000 00:00:00 GMT", 951782400 },
    { "Thu, 29 Feb 2024 12:00:00 GMT", 1709208000 },
    { "Thu, 01 Jan 1970 00:00:00 GMT", 0 },
    { "Fri, 31 Dec 9999 23:59:59 GMT", INT64_C(253402300799) },
    { "Sat, 31 Dec 2016 23:59:60 GMT", 1483228799 }, /* leap second: the instant before */
    { "Mon, 01 Jan 1900 00:00:00 GMT", 0 },          /* before the epoch */
    { "Mon, 01 Mar 2100 00:00:00 GMT", INT64_C(4107542400) },
    /* invalid */
    { "0", -1 },
    { "", -1 },
    { "-1", -1 },
    { "Sun, 06 Nov 1994 08:49:37 UTC", -1 },
    { "Sun, 06 Nov 1994 08:49:37 +0000", -1 },
    { "Sun, 06 Nov 1994 08:49:37", -1 },
    { "Sun, 06 Nov 1994 08:49:37 GMT ", -1 },
    { "Sun, 6 Nov 1994 08:49:37 GMT", -1 },
    { "Sun, 06 Nov 94 08:49:37 GMT", -1 },
    { "Sun, 00 Nov 1994 08:49:37 GMT", -1 },
    { "Sun, 31 Nov 1994 08:49:37 GMT", -1 },
    { "Mon, 29 Feb 2100 00:00:00 GMT", -1 },
    { "Sun, 06 Foo 1994 08:49:37 GMT", -1 },
    { "Sun, 06 Nov 1994 24:00:00 GMT", -1 },
    { "Sun, 06 Nov 1994 08:60:00 GMT", -1 },
    { "Sun, 06 Nov 1994 08:49:61 GMT", -1 },
    { "Sun, 06 Nov 1994 8:49:37 GMT", -1 },
    { "Xyz, 06 Nov 1994 08:49:37 GMT", -1 },
    { "Sunday, 06 Nov 1994 08:49:37 GMT", -1 },
    { "Sun, 06-Nov-94 08:49:37 GMT", -1 },
    { "Sunday, 06-Nov-1994 08:49:37 GMT", -1 },
    { "Sun Nov  6 08:49:37 94", -1 },
    { "Sun Nov 6 08:49:37 1994", -1 },
    { "Sun Nov  6 08:49:37 1994 GMT", -1 },
};

static void test_http_date_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(date_cases); i++) {
        const struct date_case *c = &date_cases[i];
        int64_t got = http_date_parse(c->text, strlen(c->text));
        if (got != c->want)
            fail_msg("\"%s\": got %lld, want %lld", c->text, (long long)got,
                     (long long)c->want);
    }
    /* the length bounds the parse */
    assert_int_equal(http_date_parse(DATE_D "X", strlen(DATE_D)), D);
    assert_int_equal(http_date_parse(DATE_D, strlen(DATE_D) - 1), -1);
}

/* A two-digit year is the one at most 50 years ahead of this year. */
static void test_http_date_two_digit_year(void **state)
{
    (void)state;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int this_year = tm.tm_year + 1900;
    int ahead = this_year + 49, behind = this_year + 51 - 100;
    char text[64];
    struct tm want = { .tm_mday = 1, .tm_mon = 0 };

    snprintf(text, sizeof(text), "Monday, 01-Jan-%02d 00:00:00 GMT", ahead % 100);
    want.tm_year = ahead - 1900;
    assert_int_equal(http_date_parse(text, strlen(text)), (int64_t)timegm(&want));

    snprintf(text, sizeof(text), "Monday, 01-Jan-%02d 00:00:00 GMT", behind % 100);
    want.tm_year = behind - 1900;
    assert_int_equal(http_date_parse(text, strlen(text)), (int64_t)timegm(&want));
}

/* Formatting agrees with the C library's UTC calendar, and parsing inverts it. */
static void test_http_date_round_trip(void **state)
{
    (void)state;
    char out[30], want[64];
    for (int64_t t = 0; t <= INT64_C(253402300799); t += INT64_C(7777777) + t / 1000) {
        memset(out, 'x', sizeof(out));
        assert_int_equal(http_date_format(t, out), 29);
        assert_int_equal(out[29], '\0');
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (strcmp(out, want) != 0)
            fail_msg("%lld: got \"%s\", want \"%s\"", (long long)t, out, want);
        assert_int_equal(http_date_parse(out, 29), t);
    }
    http_date_format(D, out);
    assert_string_equal(out, DATE_D);
    http_date_format(-5, out);
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    http_date_format(INT64_C(253402300799) + 100, out);
    assert_string_equal(out, "Fri, 31 Dec 9999 23:59:59 GMT");
}

/* ---- request mode ---------------------------------------------------------------------- */

struct mode_case {
    const char *name;
    int method;
    const char *req;
    bool ignore_no_cache;
    enum cache_lookup_mode want;
};

static const struct mode_case mode_cases[] = {
    { "GET", HTTP1_GET, "", false, CACHE_LOOKUP_USE },
    { "HEAD", HTTP1_HEAD, "", false, CACHE_LOOKUP_USE },
    { "POST", HTTP1_POST, "", false, CACHE_LOOKUP_BYPASS },
    { "OPTIONS", HTTP1_OPTIONS, "", false, CACHE_LOOKUP_BYPASS },
    { "Range", HTTP1_GET, "Range: bytes=0-1", false, CACHE_LOOKUP_BYPASS },
    { "If-Match", HTTP1_GET, "If-Match: \"x\"", false, CACHE_LOOKUP_BYPASS },
    { "If-Unmodified-Since", HTTP1_GET, "If-Unmodified-Since: " DATE_D, false,
      CACHE_LOOKUP_BYPASS },
    { "If-Range", HTTP1_GET, "If-Range: \"x\"", false, CACHE_LOOKUP_BYPASS },
    { "If-None-Match once", HTTP1_GET, "If-None-Match: \"x\"", false, CACHE_LOOKUP_USE },
    { "If-None-Match twice", HTTP1_GET, "If-None-Match: \"x\"\nIf-None-Match: \"y\"", false,
      CACHE_LOOKUP_BYPASS },
    { "Content-Length 5", HTTP1_GET, "Content-Length: 5", false, CACHE_LOOKUP_BYPASS },
    { "Content-Length 0", HTTP1_GET, "Content-Length: 0", false, CACHE_LOOKUP_USE },
    { "chunked", HTTP1_GET, "Transfer-Encoding: chunked", false, CACHE_LOOKUP_BYPASS },
    { "no-cache", HTTP1_GET, "Cache-Control: no-cache", false, CACHE_LOOKUP_REVALIDATE },
    { "no-cache ignored", HTTP1_GET, "Cache-Control: no-cache", true, CACHE_LOOKUP_USE },
    { "Pragma", HTTP1_GET, "Pragma: no-cache", false, CACHE_LOOKUP_REVALIDATE },
    { "Pragma ignored", HTTP1_GET, "Pragma: no-cache", true, CACHE_LOOKUP_USE },
    { "Pragma with Cache-Control", HTTP1_GET, "Pragma: no-cache\nCache-Control: max-age=5",
      false, CACHE_LOOKUP_USE },
    { "Pragma other token", HTTP1_GET, "Pragma: x-foo", false, CACHE_LOOKUP_USE },
    { "no-store still looks up", HTTP1_GET, "Cache-Control: no-store", false,
      CACHE_LOOKUP_USE },
    { "Authorization looks up", HTTP1_GET, "Authorization: Basic x", false, CACHE_LOOKUP_USE },
};

static void test_request_mode(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(mode_cases); i++) {
        const struct mode_case *c = &mode_cases[i];
        struct fields f;
        fields_parse(&f, c->req);
        struct cache_request r;
        cache_request_init(&r, c->method, f.h, f.n);
        struct cache_route_policy p = { .ignore_no_cache = c->ignore_no_cache };
        CHECK(c->name, cache_request_mode(&r, &p) == c->want);
    }
}

static void test_request_init(void **state)
{
    (void)state;
    struct fields f;
    fields_parse(&f, "Cache-Control: max-age=5\nCache-Control: only-if-cached\n"
                     "If-None-Match: W/\"a\", \"b\"\nIf-Modified-Since: " DATE_D "\n"
                     "Authorization: Bearer t");
    struct cache_request r;
    cache_request_init(&r, HTTP1_GET, f.h, f.n);
    assert_int_equal(r.method, HTTP1_GET);
    assert_int_equal(r.cc.present, CC_MAX_AGE | CC_ONLY_IF_CACHED);
    assert_int_equal(r.if_modified_since, D);
    assert_int_equal(r.if_none_match_len, strlen("W/\"a\", \"b\""));
    assert_memory_equal(r.if_none_match, "W/\"a\", \"b\"", r.if_none_match_len);
    assert_true(r.has_authorization);
    assert_false(r.has_range || r.has_body || r.has_other_conditionals || r.pragma_no_cache);

    fields_parse(&f, "If-Modified-Since: yesterday");
    cache_request_init(&r, HTTP1_GET, f.h, f.n);
    assert_int_equal(r.if_modified_since, -1);
    assert_null(r.if_none_match);
    fields_parse(&f, "If-Modified-Since: " DATE_D "\nIf-Modified-Since: " DATE_D);
    cache_request_init(&r, HTTP1_GET, f.h, f.n);
    assert_int_equal(r.if_modified_since, -1);
}

/* ---- storable -------------------------------------------------------------------------- */

struct storable_case {
    const char *name;
    int method;
    const char *req;
    int status;
    const char *resp;
    struct cache_route_policy policy;
    const char *want; /* NULL: storable */
};

static const struct storable_case storable_cases[] = {
    { "max-age", HTTP1_GET, "", 200, "Cache-Control: max-age=60", { 0 }, NULL },
    { "heuristic", HTTP1_GET, "", 200, "Date: " DATE_D "\nLast-Modified: " DATE_D_MINUS_1000,
      { 0 }, NULL },
    { "nothing at all", HTTP1_GET, "", 200, "", { 0 }, "no-freshness" },
    { "ETag alone", HTTP1_GET, "", 200, "ETag: \"1\"", { 0 }, NULL },
    { "route default_ttl", HTTP1_GET, "", 200, "", { .default_ttl = 30 }, NULL },
    { "route stale-while-revalidate", HTTP1_GET, "", 200, "",
      { .stale_while_revalidate = 10 }, NULL },
    { "route stale-if-error", HTTP1_GET, "", 200, "", { .stale_if_error = 10 }, NULL },
    { "route stale window, must-revalidate", HTTP1_GET, "", 200,
      "Cache-Control: must-revalidate", { .stale_if_error = 10 }, "no-freshness" },
    { "route stale window, s-maxage=0", HTTP1_GET, "", 200, "Cache-Control: s-maxage=0",
      { .stale_while_revalidate = 10 }, "no-freshness" },
    { "500 bare", HTTP1_GET, "", 500, "ETag: \"1\"", { 0 }, "status" },
    { "500 bare, default_ttl", HTTP1_GET, "", 500, "", { .default_ttl = 30 }, "status" },
    { "500 max-age", HTTP1_GET, "", 500, "Cache-Control: max-age=5", { 0 }, NULL },
    { "500 Expires", HTTP1_GET, "", 500, "Date: " DATE_D "\nExpires: " DATE_D_PLUS_60, { 0 },
      NULL },
    { "302 public, ETag", HTTP1_GET, "", 302, "Cache-Control: public\nETag: \"1\"", { 0 },
      NULL },
    { "302 public, nothing else", HTTP1_GET, "", 302, "Cache-Control: public", { 0 },
      "no-freshness" },
    { "302 public, default_ttl", HTTP1_GET, "", 302, "Cache-Control: public",
      { .default_ttl = 5 }, NULL },
    { "404 default_ttl", HTTP1_GET, "", 404, "", { .default_ttl = 5 }, NULL },
    { "206", HTTP1_GET, "", 206, "Cache-Control: max-age=60", { 0 }, "status" },
    { "304", HTTP1_GET, "", 304, "Cache-Control: max-age=60", { 0 }, "status" },
    { "103", HTTP1_GET, "", 103, "Cache-Control: max-age=60", { 0 }, "status" },
    { "no-store", HTTP1_GET, "", 200, "Cache-Control: max-age=60, no-store", { 0 },
      "no-store" },
    { "no-store, must-understand, known status", HTTP1_GET, "", 200,
      "Cache-Control: must-understand, no-store, max-age=60", { 0 }, NULL },
    { "must-understand, unknown status", HTTP1_GET, "", 299,
      "Cache-Control: must-understand, no-store, max-age=60", { 0 }, "must-understand" },
    { "private", HTTP1_GET, "", 200, "Cache-Control: private, max-age=60", { 0 }, "private" },
    { "qualified private", HTTP1_GET, "", 200,
      "Cache-Control: max-age=60, private=\"Set-Cookie\"", { 0 }, "private" },
    { "public and private", HTTP1_GET, "", 200, "Cache-Control: public, private", { 0 },
      "private" },
    { "Authorization", HTTP1_GET, "Authorization: Basic x", 200, "Cache-Control: max-age=60",
      { 0 }, "authorization" },
    { "Authorization, public", HTTP1_GET, "Authorization: Basic x", 200,
      "Cache-Control: max-age=60, public", { 0 }, NULL },
    { "Authorization, s-maxage", HTTP1_GET, "Authorization: Basic x", 200,
      "Cache-Control: s-maxage=60", { 0 }, NULL },
    { "Authorization, must-revalidate", HTTP1_GET, "Authorization: Basic x", 200,
      "Cache-Control: max-age=60, must-revalidate", { 0 }, NULL },
    { "Set-Cookie", HTTP1_GET, "", 200, "Cache-Control: max-age=60\nSet-Cookie: a=b", { 0 },
      "set-cookie" },
    { "Set-Cookie ignored", HTTP1_GET, "", 200, "Cache-Control: max-age=60\nSet-Cookie: a=b",
      { .ignore_set_cookie = true }, NULL },
    { "Vary: *", HTTP1_GET, "", 200, "Cache-Control: max-age=60\nVary: *", { 0 },
      "vary-star" },
    { "Vary: accept, *", HTTP1_GET, "", 200,
      "Cache-Control: max-age=60\nVary: accept\nVary: accept-language, *", { 0 }, "vary-star" },
    { "Vary: accept", HTTP1_GET, "", 200, "Cache-Control: max-age=60\nVary: accept", { 0 },
      NULL },
    { "POST", HTTP1_POST, "", 200, "Cache-Control: max-age=60", { 0 }, "method" },
    { "HEAD", HTTP1_HEAD, "", 200, "Cache-Control: max-age=60", { 0 }, "method" },
    { "Range", HTTP1_GET, "Range: bytes=0-5", 200, "Cache-Control: max-age=60", { 0 },
      "range" },
    { "If-Match", HTTP1_GET, "If-Match: *", 200, "Cache-Control: max-age=60", { 0 },
      "conditional" },
    { "request body", HTTP1_GET, "Content-Length: 3", 200, "Cache-Control: max-age=60", { 0 },
      "body" },
    { "request no-store", HTTP1_GET, "Cache-Control: no-store", 200,
      "Cache-Control: max-age=60", { 0 }, "request-no-store" },
    { "no-cache without validators", HTTP1_GET, "", 200, "Cache-Control: no-cache, max-age=60",
      { 0 }, "no-cache" },
    { "no-cache with ETag", HTTP1_GET, "", 200,
      "Cache-Control: no-cache, max-age=60\nETag: \"1\"", { 0 }, NULL },
    { "Pragma no-cache without validators", HTTP1_GET, "", 200,
      "Pragma: no-cache\nDate: " DATE_D "\nExpires: " DATE_D_PLUS_60, { 0 }, "no-cache" },
    { "Pragma no-cache beside Cache-Control", HTTP1_GET, "", 200,
      "Pragma: no-cache\nCache-Control: max-age=60", { 0 }, NULL },
    { "Expires: 0", HTTP1_GET, "", 200, "Expires: 0", { 0 }, "no-freshness" },
    { "Expires: 0 with ETag", HTTP1_GET, "", 200, "Expires: 0\nETag: \"x\"", { 0 }, NULL },
    { "Expires: 0 on a 500", HTTP1_GET, "", 500, "Expires: 0\nETag: \"x\"", { 0 }, NULL },
    { "Expires before Date", HTTP1_GET, "", 200,
      "Date: " DATE_D_PLUS_60 "\nExpires: " DATE_D, { 0 }, "no-freshness" },
    { "Expires without Date", HTTP1_GET, "", 200, "Expires: " DATE_D, { 0 }, NULL },
    { "max-age=0", HTTP1_GET, "", 200, "Cache-Control: max-age=0", { 0 }, "no-freshness" },
    { "max-age=0 with stale-while-revalidate", HTTP1_GET, "", 200,
      "Cache-Control: max-age=0, stale-while-revalidate=30", { 0 }, NULL },
    { "max-age invalid", HTTP1_GET, "", 200, "Cache-Control: max-age=soon", { 0 },
      "no-freshness" },
};

static void test_storable(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(storable_cases); i++) {
        const struct storable_case *c = &storable_cases[i];
        struct fields fq, fr;
        fields_parse(&fq, c->req);
        fields_parse(&fr, c->resp);
        struct cache_request req;
        struct cache_response resp;
        cache_request_init(&req, c->method, fq.h, fq.n);
        cache_response_init(&resp, c->status, fr.h, fr.n, NULL);
        const char *got = cache_storable(&req, &resp, &c->policy);
        if (c->want == NULL ? got != NULL : got == NULL || strcmp(got, c->want) != 0)
            fail_msg("case \"%s\": got %s, want %s", c->name, got ? got : "storable",
                     c->want ? c->want : "storable");
    }
}

/* Every heuristically cacheable status is storable with a validator alone. */
static void test_storable_statuses(void **state)
{
    (void)state;
    static const int cacheable[] = { 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501 };
    static const int other[] = { 201, 202, 302, 303, 307, 400, 401, 403, 500, 502, 503 };
    struct fields f;
    fields_parse(&f, "ETag: \"v\"");
    struct cache_request req;
    cache_request_init(&req, HTTP1_GET, NULL, 0);
    struct cache_route_policy p = { 0 };
    struct cache_response resp;
    for (size_t i = 0; i < COUNT(cacheable); i++) {
        cache_response_init(&resp, cacheable[i], f.h, f.n, NULL);
        if (cache_storable(&req, &resp, &p) != NULL)
            fail_msg("status %d refused", cacheable[i]);
    }
    for (size_t i = 0; i < COUNT(other); i++) {
        cache_response_init(&resp, other[i], f.h, f.n, NULL);
        const char *why = cache_storable(&req, &resp, &p);
        if (why == NULL || strcmp(why, "status") != 0)
            fail_msg("status %d stored", other[i]);
    }
}

static void test_response_init(void **state)
{
    (void)state;
    struct fields f;
    fields_parse(&f, "Date: " DATE_D "\nDate: " DATE_D_PLUS_60 "\nAge: 12\nAge: 99\n"
                     "Last-Modified: " DATE_D_MINUS_1000 "\nETag: W/\"e1\"\nETag: \"e2\"\n"
                     "Expires: soon\nSurrogate-Key: a b\nsurrogate-key: c\nSet-Cookie: x=1");
    struct cache_response r;
    cache_response_init(&r, 200, f.h, f.n, "surrogate-key");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.date, D);
    assert_int_equal(r.age, 12);
    assert_int_equal(r.last_modified, D - 1000);
    assert_int_equal(r.expires, -1);
    assert_true(r.expires_invalid);
    assert_int_equal(r.etag_len, 6);
    assert_memory_equal(r.etag, "W/\"e1\"", 6);
    assert_int_equal(r.surrogate_keys_len, 3);
    assert_memory_equal(r.surrogate_keys, "a b", 3);
    assert_true(r.has_set_cookie);
    assert_false(r.vary_star || r.pragma_no_cache);

    fields_parse(&f, "Age: 1x\nPragma: no-cache");
    cache_response_init(&r, 200, f.h, f.n, NULL);
    assert_int_equal(r.age, -1);
    assert_int_equal(r.date, -1);
    assert_int_equal(r.last_modified, -1);
    assert_false(r.expires_invalid);
    assert_null(r.etag);
    assert_null(r.surrogate_keys);
    assert_true(r.pragma_no_cache);
}

/* ---- freshness and age ----------------------------------------------------------------- */

struct fresh_case {
    const char *name;
    int status;
    const char *resp;
    struct cache_route_policy policy;
    int64_t request_time, response_time;
    int64_t lifetime, initial_age, swr, sie;
    uint32_t flags;
};

static const struct fresh_case fresh_cases[] = {
    { "max-age", 200, "Date: " DATE_D "\nCache-Control: max-age=60", { 0 }, D, D, 60, 0, 0, 0, 0 },
    { "s-maxage wins, revalidates", 200, "Date: " DATE_D "\nCache-Control: max-age=60, s-maxage=30",
      { 0 }, D, D, 30, 0, 0, 0, CACHE_ENTRY_MUST_REVALIDATE },
    { "max-age beats Expires", 200,
      "Date: " DATE_D "\nExpires: " DATE_D_PLUS_100 "\nCache-Control: max-age=7", { 0 }, D, D, 7,
      0, 0, 0, 0 },
    { "Expires - Date", 200, "Date: " DATE_D "\nExpires: " DATE_D_PLUS_100, { 0 }, D, D, 100, 0,
      0, 0, 0 },
    { "Expires without Date: received time", 200, "Expires: " DATE_D_PLUS_100, { 0 }, D + 30,
      D + 40, 60, 10, 0, 0, 0 },
    { "Expires invalid", 200, "Date: " DATE_D "\nExpires: 0", { .default_ttl = 99 }, D, D, 0, 0,
      0, 0, 0 },
    { "Expires before Date", 200, "Date: " DATE_D_PLUS_60 "\nExpires: " DATE_D, { 0 }, D + 60,
      D + 60, 0, 0, 0, 0, 0 },
    { "heuristic 10%", 200, "Date: " DATE_D "\nLast-Modified: " DATE_D_MINUS_1000, { 0 }, D, D,
      100, 0, 0, 0, 0 },
    { "heuristic capped at a day", 200, "Date: " DATE_D "\nLast-Modified: " DATE_D_MINUS_10M,
      { 0 }, D, D, 86400, 0, 0, 0, 0 },
    { "heuristic, no Date", 200, "Last-Modified: " DATE_D_MINUS_1000, { 0 }, D, D, 100, 0, 0, 0,
      0 },
    { "no heuristic for 302", 302, "Date: " DATE_D "\nLast-Modified: " DATE_D_MINUS_1000,
      { 0 }, D, D, 0, 0, 0, 0, 0 },
    { "public 302 heuristic", 302,
      "Date: " DATE_D "\nLast-Modified: " DATE_D_MINUS_1000 "\nCache-Control: public", { 0 },
      D, D, 100, 0, 0, 0, 0 },
    { "default_ttl replaces heuristic", 200,
      "Date: " DATE_D "\nLast-Modified: " DATE_D_MINUS_1000, { .default_ttl = 30 }, D, D, 30,
      0, 0, 0, 0 },
    { "default_ttl below explicit", 200, "Cache-Control: max-age=5", { .default_ttl = 30 }, D,
      D, 5, 0, 0, 0, 0 },
    { "default_ttl not for 500", 500, "Cache-Control: stale-if-error=5", { .default_ttl = 30 },
      D, D, 0, 0, 0, 5, 0 },
    { "max-age invalid", 200, "Cache-Control: max-age=1e3", { .default_ttl = 30 }, D, D, 0, 0,
      0, 0, 0 },
    { "max-age clamped", 200, "Cache-Control: max-age=99999999999", { 0 }, D, D,
      CACHE_DELTA_MAX, 0, 0, 0, 0 },
    { "first max-age", 200, "Cache-Control: max-age=10\nCache-Control: max-age=100", { 0 }, D,
      D, 10, 0, 0, 0, 0 },
    /* age (§4.2.3) */
    { "apparent age", 200, "Date: " DATE_D "\nCache-Control: max-age=60", { 0 }, D + 8, D + 10,
      60, 10, 0, 0, 0 },
    { "response delay", 200, "Date: " DATE_D "\nCache-Control: max-age=60", { 0 }, D - 5, D, 60,
      5, 0, 0, 0 },
    { "Age plus delay", 200, "Date: " DATE_D_PLUS_60 "\nAge: 100\nCache-Control: max-age=600",
      { 0 }, D + 57, D + 60, 600, 103, 0, 0, 0 },
    { "Date in the future", 200, "Date: " DATE_D_PLUS_60 "\nCache-Control: max-age=60", { 0 }, D,
      D, 60, 0, 0, 0, 0 },
    { "Age invalid", 200, "Date: " DATE_D "\nAge: -3\nCache-Control: max-age=60", { 0 }, D, D, 60,
      0, 0, 0, 0 },
    /* stale windows and flags */
    { "response windows", 200,
      "Cache-Control: max-age=1, stale-while-revalidate=5, stale-if-error=50",
      { .stale_while_revalidate = 10, .stale_if_error = 100 }, D, D, 1, 0, 5, 50, 0 },
    { "route windows", 200, "Cache-Control: max-age=1",
      { .stale_while_revalidate = 10, .stale_if_error = 100 }, D, D, 1, 0, 10, 100, 0 },
    { "must-revalidate closes windows", 200,
      "Cache-Control: max-age=1, must-revalidate, stale-if-error=50",
      { .stale_while_revalidate = 10 }, D, D, 1, 0, 0, 0, CACHE_ENTRY_MUST_REVALIDATE },
    { "proxy-revalidate", 200, "Cache-Control: max-age=1, proxy-revalidate",
      { .stale_if_error = 10 }, D, D, 1, 0, 0, 0, CACHE_ENTRY_MUST_REVALIDATE },
    { "no-cache", 200, "Cache-Control: no-cache, max-age=60", { .stale_if_error = 10 }, D, D,
      60, 0, 0, 0, CACHE_ENTRY_NO_CACHE },
    { "Pragma: no-cache alone", 200, "Pragma: no-cache", { .default_ttl = 10 }, D, D, 10, 0, 0, 0,
      CACHE_ENTRY_NO_CACHE },
    { "Pragma: no-cache beside Cache-Control", 200, "Pragma: no-cache\nCache-Control: max-age=5",
      { 0 }, D, D, 5, 0, 0, 0, 0 },
};

static void test_fill_freshness(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(fresh_cases); i++) {
        const struct fresh_case *c = &fresh_cases[i];
        struct fields f;
        fields_parse(&f, c->resp);
        struct cache_response resp;
        cache_response_init(&resp, c->status, f.h, f.n, NULL);
        struct cache_entry *e = cache_entry_new();
        assert_non_null(e);
        CHECK(c->name, cache_entry_fill_freshness(e, &resp, &c->policy, c->request_time,
                                                  c->response_time) == 0);
        if (e->lifetime != c->lifetime || e->initial_age != c->initial_age)
            fail_msg("case \"%s\": lifetime %lld initial_age %lld, want %lld %lld", c->name,
                     (long long)e->lifetime, (long long)e->initial_age,
                     (long long)c->lifetime, (long long)c->initial_age);
        CHECK(c->name, e->response_time == c->response_time);
        CHECK(c->name, e->stale_while_revalidate == c->swr);
        CHECK(c->name, e->stale_if_error == c->sie);
        CHECK(c->name, e->flags == c->flags);
        cache_entry_unref(e);
    }
}

static void test_fill_validators(void **state)
{
    (void)state;
    struct fields f;
    fields_parse(&f, "ETag: W/\"v1\"\nLast-Modified: " DATE_D "\nCache-Control: max-age=9");
    struct cache_response resp;
    cache_response_init(&resp, 200, f.h, f.n, NULL);
    struct cache_route_policy p = { 0 };
    struct cache_entry *e = cache_entry_new();
    assert_non_null(e);
    assert_int_equal(cache_entry_fill_freshness(e, &resp, &p, D, D), 0);
    assert_string_equal(e->etag, "W/\"v1\"");
    assert_ptr_not_equal(e->etag, resp.etag); /* a copy: the response buffer goes away */
    assert_int_equal(e->last_modified, D);
    /* refilling from a response without validators clears them */
    fields_parse(&f, "Cache-Control: max-age=9");
    cache_response_init(&resp, 200, f.h, f.n, NULL);
    assert_int_equal(cache_entry_fill_freshness(e, &resp, &p, D, D), 0);
    assert_null(e->etag);
    assert_int_equal(e->last_modified, -1);
    cache_entry_unref(e);
}

/* ---- using an entry -------------------------------------------------------------------- */

#define T INT64_C(1700000000)

struct use_case {
    const char *name;
    int64_t lifetime, initial_age, swr;
    uint32_t flags;
    const char *req;
    bool ignore_no_cache;
    int64_t now;
    enum cache_use want;
};

static const struct use_case use_cases[] = {
    { "fresh", 100, 0, 0, 0, "", false, T + 50, CACHE_USE_FRESH },
    { "last fresh second", 100, 0, 0, 0, "", false, T + 99, CACHE_USE_FRESH },
    { "stale at lifetime", 100, 0, 0, 0, "", false, T + 100, CACHE_USE_VALIDATE },
    { "initial age counts", 100, 90, 0, 0, "", false, T + 9, CACHE_USE_FRESH },
    { "initial age makes stale", 100, 90, 0, 0, "", false, T + 10, CACHE_USE_VALIDATE },
    { "clock went back", 100, 0, 0, 0, "", false, T - 1000, CACHE_USE_FRESH },
    { "in swr window", 100, 0, 60, 0, "", false, T + 150, CACHE_USE_STALE_SWR },
    { "swr window end", 100, 0, 60, 0, "", false, T + 160, CACHE_USE_VALIDATE },
    { "swr but must-revalidate", 100, 0, 60, CACHE_ENTRY_MUST_REVALIDATE, "", false, T + 110,
      CACHE_USE_VALIDATE },
    { "max-stale any", 100, 0, 0, 0, "Cache-Control: max-stale", false, T + 100000,
      CACHE_USE_STALE_OK },
    { "max-stale=30 within", 100, 0, 0, 0, "Cache-Control: max-stale=30", false, T + 130,
      CACHE_USE_STALE_OK },
    { "max-stale=30 beyond", 100, 0, 0, 0, "Cache-Control: max-stale=30", false, T + 131,
      CACHE_USE_VALIDATE },
    { "max-stale but must-revalidate", 100, 0, 0, CACHE_ENTRY_MUST_REVALIDATE,
      "Cache-Control: max-stale", false, T + 101, CACHE_USE_VALIDATE },
    { "swr before max-stale", 100, 0, 60, 0, "Cache-Control: max-stale", false, T + 110,
      CACHE_USE_STALE_SWR },
    { "max-stale past swr", 100, 0, 60, 0, "Cache-Control: max-stale", false, T + 200,
      CACHE_USE_STALE_OK },
    { "entry no-cache", 100, 0, 0, CACHE_ENTRY_NO_CACHE, "", false, T, CACHE_USE_VALIDATE },
    { "entry no-cache, route ignores clients", 100, 0, 0, CACHE_ENTRY_NO_CACHE, "", true, T,
      CACHE_USE_VALIDATE },
    { "client no-cache", 100, 0, 0, 0, "Cache-Control: no-cache", false, T,
      CACHE_USE_VALIDATE },
    { "client no-cache ignored", 100, 0, 0, 0, "Cache-Control: no-cache", true, T,
      CACHE_USE_FRESH },
    { "client Pragma", 100, 0, 0, 0, "Pragma: no-cache", false, T, CACHE_USE_VALIDATE },
    { "client Pragma ignored", 100, 0, 0, 0, "Pragma: no-cache", true, T, CACHE_USE_FRESH },
    { "client max-age below age", 100, 0, 0, 0, "Cache-Control: max-age=10", false, T + 50,
      CACHE_USE_VALIDATE },
    { "client max-age at age", 100, 0, 0, 0, "Cache-Control: max-age=50", false, T + 50,
      CACHE_USE_FRESH },
    { "client max-age=0", 100, 0, 0, 0, "Cache-Control: max-age=0", false, T + 1,
      CACHE_USE_VALIDATE },
    { "client max-age=0 ignored", 100, 0, 0, 0, "Cache-Control: max-age=0", true, T + 1,
      CACHE_USE_FRESH },
    { "client max-age=5 not ignored", 100, 0, 0, 0, "Cache-Control: max-age=5", true, T + 6,
      CACHE_USE_VALIDATE },
    { "client max-age bounds stale", 100, 0, 0, 0, "Cache-Control: max-age=120, max-stale",
      false, T + 121, CACHE_USE_VALIDATE },
    { "client max-age with max-stale", 100, 0, 0, 0, "Cache-Control: max-age=120, max-stale",
      false, T + 120, CACHE_USE_STALE_OK },
    { "client max-age bounds swr", 100, 0, 60, 0, "Cache-Control: max-age=105", false, T + 110,
      CACHE_USE_VALIDATE },
    { "min-fresh met", 100, 0, 0, 0, "Cache-Control: min-fresh=30", false, T + 70,
      CACHE_USE_FRESH },
    { "min-fresh not met", 100, 0, 0, 0, "Cache-Control: min-fresh=30", false, T + 71,
      CACHE_USE_VALIDATE },
    { "zero lifetime", 0, 0, 0, 0, "", false, T, CACHE_USE_VALIDATE },
    { "zero lifetime, swr", 0, 0, 10, 0, "", false, T + 9, CACHE_USE_STALE_SWR },
};

static void entry_at(struct cache_entry *e, int64_t lifetime, int64_t initial_age, int64_t swr,
                     uint32_t flags)
{
    memset(e, 0, sizeof(*e));
    e->last_modified = -1;
    e->response_time = T;
    e->lifetime = lifetime;
    e->initial_age = initial_age;
    e->stale_while_revalidate = swr;
    e->flags = flags;
}

static void test_usable(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(use_cases); i++) {
        const struct use_case *c = &use_cases[i];
        struct cache_entry e;
        entry_at(&e, c->lifetime, c->initial_age, c->swr, c->flags);
        struct fields f;
        fields_parse(&f, c->req);
        struct cache_request req;
        cache_request_init(&req, HTTP1_GET, f.h, f.n);
        struct cache_route_policy p = { .ignore_no_cache = c->ignore_no_cache };
        enum cache_use got = cache_entry_usable(&e, &req, &p, c->now);
        if (got != c->want)
            fail_msg("case \"%s\": got %d, want %d", c->name, got, c->want);
    }
}

struct sie_case {
    const char *name;
    int64_t sie;
    uint32_t flags;
    const char *req; /* NULL: no request */
    int64_t now;
    bool want;
};

static const struct sie_case sie_cases[] = {
    { "fresh", 0, 0, NULL, T + 99, true },
    { "stale, no window", 0, 0, NULL, T + 100, false },
    { "within window", 300, 0, NULL, T + 399, true },
    { "window end", 300, 0, NULL, T + 400, false },
    { "request widens", 300, 0, "Cache-Control: stale-if-error=1000", T + 1000, true },
    { "request alone", 0, 0, "Cache-Control: stale-if-error=50", T + 120, true },
    { "request narrower keeps entry's", 300, 0, "Cache-Control: stale-if-error=1", T + 300, true },
    { "must-revalidate", 300, CACHE_ENTRY_MUST_REVALIDATE, "Cache-Control: stale-if-error=999",
      T + 101, false },
    { "must-revalidate fresh", 300, CACHE_ENTRY_MUST_REVALIDATE, NULL, T + 1, false },
    { "no-cache", 300, CACHE_ENTRY_NO_CACHE, NULL, T + 1, false },
};

static void test_stale_if_error(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(sie_cases); i++) {
        const struct sie_case *c = &sie_cases[i];
        struct cache_entry e;
        entry_at(&e, 100, 0, 0, c->flags);
        e.stale_if_error = c->sie;
        struct cache_request req;
        if (c->req != NULL) {
            struct fields f;
            fields_parse(&f, c->req);
            cache_request_init(&req, HTTP1_GET, f.h, f.n);
        }
        CHECK(c->name,
              cache_entry_stale_if_error_ok(&e, c->req != NULL ? &req : NULL, c->now) == c->want);
    }
}

/* ---- conditional requests -------------------------------------------------------------- */

struct nm_case {
    const char *name;
    const char *etag;
    int64_t last_modified;
    int method;
    const char *req;
    bool want;
};

static const struct nm_case nm_cases[] = {
    { "strong match", "\"abc\"", -1, HTTP1_GET, "If-None-Match: \"abc\"", true },
    { "weak request, strong entry", "\"abc\"", -1, HTTP1_GET, "If-None-Match: W/\"abc\"", true },
    { "strong request, weak entry", "W/\"abc\"", -1, HTTP1_GET, "If-None-Match: \"abc\"", true },
    { "different", "\"abc\"", -1, HTTP1_GET, "If-None-Match: \"abd\"", false },
    { "case matters", "\"abc\"", -1, HTTP1_GET, "If-None-Match: \"ABC\"", false },
    { "list hit", "\"abc\"", -1, HTTP1_GET, "If-None-Match: \"x\", W/\"y\",\"abc\"", true },
    { "list miss", "\"abc\"", -1, HTTP1_GET, "If-None-Match: \"x\", \"y\"", false },
    { "comma inside a tag", "\"a,b\"", -1, HTTP1_GET, "If-None-Match: \"x\", \"a,b\"", true },
    { "part of a tag", "\"a\"", -1, HTTP1_GET, "If-None-Match: \"a,b\"", false },
    { "star", NULL, -1, HTTP1_GET, "If-None-Match: *", true },
    { "entry without ETag", NULL, D, HTTP1_GET, "If-None-Match: \"abc\"", false },
    { "unquoted tags as sent", "abc", -1, HTTP1_GET, "If-None-Match: x, abc", true },
    { "If-None-Match wins over IMS", "\"abc\"", D, HTTP1_GET,
      "If-None-Match: \"zzz\"\nIf-Modified-Since: " DATE_D_PLUS_60, false },
    { "IMS after Last-Modified", "\"abc\"", D, HTTP1_GET, "If-Modified-Since: " DATE_D_PLUS_60,
      true },
    { "IMS at Last-Modified", NULL, D, HTTP1_GET, "If-Modified-Since: " DATE_D, true },
    { "IMS before Last-Modified", NULL, D, HTTP1_GET, "If-Modified-Since: " DATE_D_MINUS_1000,
      false },
    { "IMS on HEAD", NULL, D, HTTP1_HEAD, "If-Modified-Since: " DATE_D, true },
    { "IMS invalid", NULL, D, HTTP1_GET, "If-Modified-Since: yesterday", false },
    { "IMS without Last-Modified: received time", NULL, -1, HTTP1_GET,
      "If-Modified-Since: " DATE_D_PLUS_100, true },
    { "IMS before received time", NULL, -1, HTTP1_GET, "If-Modified-Since: " DATE_D_PLUS_60,
      false },
    { "no conditionals", "\"abc\"", D, HTTP1_GET, "", false },
};

static void test_not_modified(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(nm_cases); i++) {
        const struct nm_case *c = &nm_cases[i];
        struct cache_entry e;
        entry_at(&e, 100, 0, 0, 0);
        e.response_time = D + 100;
        e.etag = (char *)c->etag;
        e.last_modified = c->last_modified;
        struct fields f;
        fields_parse(&f, c->req);
        struct cache_request req;
        cache_request_init(&req, c->method, f.h, f.n);
        CHECK(c->name, cache_not_modified(&e, &req) == c->want);
    }
}

static void test_invalidates(void **state)
{
    (void)state;
    assert_true(cache_invalidates(HTTP1_POST, 200));
    assert_true(cache_invalidates(HTTP1_DELETE, 204));
    assert_true(cache_invalidates(HTTP1_PUT, 303));
    assert_true(cache_invalidates(HTTP1_OTHER, 201));
    assert_false(cache_invalidates(HTTP1_POST, 404));
    assert_false(cache_invalidates(HTTP1_PATCH, 500));
    assert_false(cache_invalidates(HTTP1_POST, 101));
    assert_false(cache_invalidates(HTTP1_GET, 200));
    assert_false(cache_invalidates(HTTP1_HEAD, 200));
    assert_false(cache_invalidates(HTTP1_OPTIONS, 200));
    assert_false(cache_invalidates(HTTP1_TRACE, 200));
}

/* ---- Vary ------------------------------------------------------------------------------ */

struct vary_case {
    const char *resp;
    const char *want; /* NULL: -1 */
};

static const struct vary_case vary_cases[] = {
    { "", "" },
    { "Vary: Accept-Encoding", "accept-encoding" },
    { "Vary: accept-language, Accept-Encoding\nVary: ACCEPT-encoding, cookie",
      "accept-encoding, accept-language, cookie" },
    { "Vary: , ,accept,", "accept" },
    { "Vary: b, a, c, a, b", "a, b, c" },
    { "Vary: x-a, x", "x, x-a" },
    { "Vary: *", NULL },
    { "Vary: accept\nVary: *", NULL },
    { "Vary: a b", NULL },
    { "Vary: \"accept\"", NULL },
    { "Cache-Control: max-age=1\nX-Vary: accept", "" },
};

static void test_vary_names(void **state)
{
    (void)state;
    char out[256];
    for (size_t i = 0; i < COUNT(vary_cases); i++) {
        const struct vary_case *c = &vary_cases[i];
        struct fields f;
        fields_parse(&f, c->resp);
        memset(out, 'x', sizeof(out));
        ssize_t got = cache_vary_names(f.h, f.n, out, sizeof(out));
        if (c->want == NULL) {
            CHECK(c->resp, got == -1);
            continue;
        }
        CHECK(c->resp, got == (ssize_t)strlen(c->want));
        CHECK(c->resp, strcmp(out, c->want) == 0);
    }
}

static void test_vary_limits(void **state)
{
    (void)state;
    char text[2048], out[1024];
    size_t len = (size_t)snprintf(text, sizeof(text), "Vary: ");
    for (int i = 0; i < 64; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%sh%02d", i ? "," : "", i);
    struct fields f;
    fields_parse(&f, text);
    ssize_t n = cache_vary_names(f.h, f.n, out, sizeof(out));
    assert_int_equal(n, 64 * 3 + 63 * 2);
    assert_memory_equal(out, "h00, h01, h02", 13);
    /* exactly room for the bytes and the NUL, then one byte less */
    assert_int_equal(cache_vary_names(f.h, f.n, out, (size_t)n + 1), n);
    assert_int_equal(cache_vary_names(f.h, f.n, out, (size_t)n), -1);
    assert_int_equal(cache_vary_names(f.h, f.n, out, 0), -1);
    snprintf(text + len, sizeof(text) - len, ",h64");
    fields_parse(&f, text);
    assert_int_equal(cache_vary_names(f.h, f.n, out, sizeof(out)), -1);
}

struct variant_case {
    const char *name;
    const char *names;
    const char *req;
    const char *want;
};

static const struct variant_case variant_cases[] = {
    { "one", "accept-encoding", "Accept-Encoding: gzip", "gzip" },
    { "normalised", "accept-encoding, accept-language",
      "Accept-Encoding: gzip,deflate\nAccept-Language:  en \t  us", "gzip, deflate\nen us" },
    { "lines combined", "accept", "Accept: a\nX: y\naccept: b, , c", "a, b, c" },
    { "absent", "accept-encoding, accept-language", "Accept-Language: de", "\nde" },
    { "none present", "a, b", "", "\n" },
    { "empty equals absent", "a", "A: ", "" },
};

static void test_variant(void **state)
{
    (void)state;
    char out[256];
    for (size_t i = 0; i < COUNT(variant_cases); i++) {
        const struct variant_case *c = &variant_cases[i];
        struct fields f;
        fields_parse(&f, c->req);
        ssize_t got = cache_variant(c->names, f.h, f.n, out, sizeof(out));
        CHECK(c->name, got == (ssize_t)strlen(c->want));
        CHECK(c->name, strcmp(out, c->want) == 0);
    }
    struct fields f;
    fields_parse(&f, "Accept: abc");
    assert_int_equal(cache_variant("accept", f.h, f.n, out, 4), 3);
    assert_int_equal(cache_variant("accept", f.h, f.n, out, 3), -1);
    /* a field value able to forge a separator is refused */
    struct http1_header bad = { "Accept", 6, "a\nb", 3 };
    assert_int_equal(cache_variant("accept", &bad, 1, out, sizeof(out)), -1);
}

struct match_case {
    const char *name;
    const char *req;
    bool want;
};

static const struct match_case match_cases[] = {
    { "same", "Accept-Encoding: gzip, br\nAccept-Language: en", true },
    { "same, spelled differently", "accept-language: en\nACCEPT-ENCODING:gzip,   br", true },
    { "split over lines", "Accept-Encoding: gzip\nAccept-Encoding: br\nAccept-Language: en", true },
    { "other value", "Accept-Encoding: gzip\nAccept-Language: en", false },
    { "prefix of stored", "Accept-Encoding: gzip, br", false },
    { "longer than stored", "Accept-Encoding: gzip, br\nAccept-Language: en, de", false },
    { "other order of values", "Accept-Encoding: br, gzip\nAccept-Language: en", false },
    { "unrelated fields ignored", "Accept-Encoding: gzip, br\nCookie: x\nAccept-Language: en",
      true },
};

static void test_variant_matches(void **state)
{
    (void)state;
    struct cache_entry e;
    entry_at(&e, 1, 0, 0, 0);
    char names[] = "accept-encoding, accept-language";
    char variant[] = "gzip, br\nen";
    e.vary = names;
    e.variant = variant;
    e.variant_len = (uint32_t)strlen(variant);
    for (size_t i = 0; i < COUNT(match_cases); i++) {
        const struct match_case *c = &match_cases[i];
        struct fields f;
        fields_parse(&f, c->req);
        CHECK(c->name, cache_variant_matches(&e, f.h, f.n) == c->want);
    }
    /* what cache_variant writes is what cache_variant_matches accepts */
    struct fields f;
    fields_parse(&f, "Accept-Language: fr\nAccept-Encoding: identity");
    char out[128];
    ssize_t n = cache_variant(names, f.h, f.n, out, sizeof(out));
    assert_true(n > 0);
    e.variant = out;
    e.variant_len = (uint32_t)n;
    assert_true(cache_variant_matches(&e, f.h, f.n));
    /* no Vary: every request matches */
    e.vary = NULL;
    e.variant = NULL;
    assert_true(cache_variant_matches(&e, f.h, f.n));
    /* Vary whose fields were all absent: only requests without them */
    e.vary = names;
    e.variant = "\n";
    e.variant_len = 1;
    assert_true(cache_variant_matches(&e, NULL, 0));
    assert_false(cache_variant_matches(&e, f.h, f.n));
}

/* ---- primary keys ---------------------------------------------------------------------- */

static const char *const listed_params[] = { "b", "d" };
static const char *const key_fields[] = { "accept-language", "X-Tenant" };

struct key_case {
    const char *name;
    const char *host; /* NULL: none */
    const char *target;
    const char *req;
    struct cache_key_policy policy;
    const char *want; /* NULL: -1 */
};

static const struct key_case key_cases[] = {
    { "plain", "example.com", "/a", "", { 0 }, "example.com\n/a" },
    { "host lowercased, :80 dropped", "Example.COM:80", "/a?b=1&c=2", "", { 0 },
      "example.com\n/a?b=1&c=2" },
    { "other port kept", "example.com:8080", "/", "", { 0 }, "example.com:8080\n/" },
    { "empty port dropped", "example.com:", "/", "", { 0 }, "example.com\n/" },
    { "port 800 kept", "example.com:800", "/", "", { 0 }, "example.com:800\n/" },
    { "IPv6 default port", "[::1]:80", "/", "", { 0 }, "[::1]\n/" },
    { "IPv6 without port", "[::80]", "/", "", { 0 }, "[::80]\n/" },
    { "no host", NULL, "/a", "", { 0 }, "\n/a" },
    { "absolute-form", "ignored", "http://Other.Example:80/x?y", "", { 0 },
      "other.example\n/x?y" },
    { "absolute-form without path", NULL, "HTTP://h", "", { 0 }, "h\n/" },
    { "absolute-form with query only", NULL, "http://h?q=1", "", { 0 }, "h\n/?q=1" },
    { "query as sent", "h", "/a?z=1&a=2&", "", { .query_mode = CACHE_QUERY_ALL },
      "h\n/a?z=1&a=2&" },
    { "query dropped", "h", "/a?b=1", "", { .query_mode = CACHE_QUERY_NONE }, "h\n/a" },
    { "query listed", "h", "/a?a=1&b=2&c=3&d=4&b=5",
      "", { .query_mode = CACHE_QUERY_LIST, .query = listed_params, .num_query = 2 },
      "h\n/a?b=2&d=4&b=5" },
    { "query listed, none present", "h", "/a?a=1&bb=2&c",
      "", { .query_mode = CACHE_QUERY_LIST, .query = listed_params, .num_query = 2 },
      "h\n/a" },
    { "query listed, bare and empty", "h", "/a?&d&b=&&",
      "", { .query_mode = CACHE_QUERY_LIST, .query = listed_params, .num_query = 2 },
      "h\n/a?d&b=" },
    { "query listed, names are exact", "h", "/a?B=1&d=2",
      "", { .query_mode = CACHE_QUERY_LIST, .query = listed_params, .num_query = 2 },
      "h\n/a?d=2" },
    { "header values", "h", "/a", "Accept-Language: en,  fr\nX-Tenant: 7\naccept-language: de",
      { .headers = key_fields, .num_headers = 2 }, "h\n/a\nen, fr, de\n7" },
    { "header values absent", "h", "/a", "", { .headers = key_fields, .num_headers = 2 },
      "h\n/a\n\n" },
    { "line break in host", "a\nb", "/", "", { 0 }, NULL },
    { "line break in target", "h", "/a\r\n", "", { 0 }, NULL },
};

static void test_key_build(void **state)
{
    (void)state;
    char out[256];
    for (size_t i = 0; i < COUNT(key_cases); i++) {
        const struct key_case *c = &key_cases[i];
        struct fields f;
        fields_parse(&f, c->req);
        ssize_t got = cache_key_build(c->host, c->host ? strlen(c->host) : 0, c->target,
                                      strlen(c->target), f.h, f.n, &c->policy, out, sizeof(out));
        if (c->want == NULL) {
            CHECK(c->name, got == -1);
            continue;
        }
        if (got != (ssize_t)strlen(c->want) || strcmp(out, c->want) != 0)
            fail_msg("case \"%s\": got %zd \"%s\"", c->name, got, got >= 0 ? out : "");
    }
    struct cache_key_policy p = { 0 };
    assert_int_equal(cache_key_build("h", 1, "/abc", 4, NULL, 0, &p, out, 7), 6);
    assert_int_equal(cache_key_build("h", 1, "/abc", 4, NULL, 0, &p, out, 6), -1);
    assert_int_equal(cache_key_build("h", 1, "/abc", 4, NULL, 0, &p, out, 0), -1);
}

/* ---- stored heads ---------------------------------------------------------------------- */

struct stored_case {
    const char *name;
    const char *resp;
    size_t index;
    bool strip_set_cookie;
    bool want;
};

static const struct stored_case stored_cases[] = {
    { "ordinary", "Content-Type: text/plain", 0, false, true },
    { "Content-Length", "Content-Length: 5", 0, false, true },
    { "Connection", "Connection: close", 0, false, false },
    { "Keep-Alive", "Keep-Alive: timeout=5", 0, false, false },
    { "Transfer-Encoding", "Transfer-Encoding: chunked", 0, false, false },
    { "TE", "TE: trailers", 0, false, false },
    { "Trailer", "Trailer: x", 0, false, false },
    { "Upgrade", "Upgrade: h2c", 0, false, false },
    { "Proxy-Authenticate", "Proxy-Authenticate: Basic", 0, false, false },
    { "Proxy-Connection", "proxy-connection: keep-alive", 0, false, false },
    { "Age", "Age: 5", 0, false, false },
    { "named by Connection", "Connection: close, X-Hop\nx-hop: 1", 1, false, false },
    { "named by a later Connection", "X-Hop: 1\nConnection: keep-alive\nConnection: x-hop", 0,
      false, false },
    { "not named", "Connection: x-hop\nX-Hope: 1", 1, false, true },
    { "Set-Cookie kept", "Set-Cookie: a=b", 0, false, true },
    { "Set-Cookie stripped", "Set-Cookie: a=b", 0, true, false },
};

static void test_field_stored(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(stored_cases); i++) {
        const struct stored_case *c = &stored_cases[i];
        struct fields f;
        fields_parse(&f, c->resp);
        CHECK(c->name, cache_field_stored(f.h, f.n, c->index, c->strip_set_cookie) == c->want);
    }
}

#define OLD_HEAD                                                                         \
    "HTTP/1.1 200 OK\r\nDate: " DATE_D "\r\nETag: \"1\"\r\nContent-Length: 5\r\n"       \
    "Cache-Control: max-age=60\r\nX-A: 1\r\nx-a: 2\r\n"

struct update_case {
    const char *name;
    const char *old_head;
    const char *resp304;
    bool strip_set_cookie;
    const char *want; /* NULL: -1 */
};

static const struct update_case update_cases[] = {
    { "nothing new", OLD_HEAD, "", false, OLD_HEAD },
    { "validators and date replaced, framing and hop-by-hop ignored", OLD_HEAD,
      "Date: " DATE_D_PLUS_60 "\nETag: \"2\"\nContent-Length: 0\nConnection: x-secret\n"
      "X-Secret: 1\nKeep-Alive: timeout=5\nAge: 4\nTransfer-Encoding: chunked\n"
      "Proxy-Authenticate: Basic",
      false,
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: max-age=60\r\nX-A: 1\r\n"
      "x-a: 2\r\nDate: " DATE_D_PLUS_60 "\r\nETag: \"2\"\r\n" },
    { "every line of a name replaced", OLD_HEAD, "X-A: 3",
      false,
      "HTTP/1.1 200 OK\r\nDate: " DATE_D "\r\nETag: \"1\"\r\nContent-Length: 5\r\n"
      "Cache-Control: max-age=60\r\nX-A: 3\r\n" },
    { "several lines of a name", OLD_HEAD, "Cache-Control: max-age=5\ncache-control: public",
      false,
      "HTTP/1.1 200 OK\r\nDate: " DATE_D "\r\nETag: \"1\"\r\nContent-Length: 5\r\nX-A: 1\r\n"
      "x-a: 2\r\nCache-Control: max-age=5\r\ncache-control: public\r\n" },
    { "Set-Cookie kept", "HTTP/1.1 200 OK\r\n", "Set-Cookie: a=b", false,
      "HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\n" },
    { "Set-Cookie stripped", "HTTP/1.1 200 OK\r\n", "Set-Cookie: a=b", true,
      "HTTP/1.1 200 OK\r\n" },
    { "stored line without colon", "HTTP/1.1 200 OK\r\nbroken\r\n", "", false, NULL },
    { "stored line with space in name", "HTTP/1.1 200 OK\r\nX Y: 1\r\n", "", false, NULL },
    { "unterminated line", "HTTP/1.1 200 OK\r\nX: 1", "", false, NULL },
    { "bare LF", "HTTP/1.1 200 OK\nX: 1\r\n", "", false, NULL },
    { "empty old head", "", "", false, NULL },
};

static void test_head_update(void **state)
{
    (void)state;
    char out[1024];
    for (size_t i = 0; i < COUNT(update_cases); i++) {
        const struct update_case *c = &update_cases[i];
        struct fields f;
        fields_parse(&f, c->resp304);
        ssize_t got = cache_head_update(c->old_head, strlen(c->old_head), f.h, f.n,
                                        c->strip_set_cookie, out, sizeof(out));
        if (c->want == NULL) {
            CHECK(c->name, got == -1);
            continue;
        }
        if (got != (ssize_t)strlen(c->want) || strcmp(out, c->want) != 0)
            fail_msg("case \"%s\": got %zd\n%s", c->name, got, got >= 0 ? out : "");
    }
    /* fields that could break the head are refused, unless they are not merged anyway */
    struct http1_header bad_value = { "X-A", 3, "1\r\nX-Injected: 1", 17 };
    assert_int_equal(cache_head_update(OLD_HEAD, strlen(OLD_HEAD), &bad_value, 1, false, out,
                                       sizeof(out)),
                     -1);
    struct http1_header bad_name = { "X A", 3, "1", 1 };
    assert_int_equal(cache_head_update(OLD_HEAD, strlen(OLD_HEAD), &bad_name, 1, false, out,
                                       sizeof(out)),
                     -1);
    struct http1_header ignored = { "Content-Length", 14, "1\r\n", 3 };
    assert_int_equal(cache_head_update(OLD_HEAD, strlen(OLD_HEAD), &ignored, 1, false, out,
                                       sizeof(out)),
                     (ssize_t)strlen(OLD_HEAD));
    /* bounded output */
    size_t len = strlen(OLD_HEAD);
    assert_int_equal(cache_head_update(OLD_HEAD, len, NULL, 0, false, out, len + 1), (ssize_t)len);
    assert_int_equal(cache_head_update(OLD_HEAD, len, NULL, 0, false, out, len), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_control),
        cmocka_unit_test(test_cache_control_accumulates),
        cmocka_unit_test(test_http_date_parse),
        cmocka_unit_test(test_http_date_two_digit_year),
        cmocka_unit_test(test_http_date_round_trip),
        cmocka_unit_test(test_request_mode),
        cmocka_unit_test(test_request_init),
        cmocka_unit_test(test_storable),
        cmocka_unit_test(test_storable_statuses),
        cmocka_unit_test(test_response_init),
        cmocka_unit_test(test_fill_freshness),
        cmocka_unit_test(test_fill_validators),
        cmocka_unit_test(test_usable),
        cmocka_unit_test(test_stale_if_error),
        cmocka_unit_test(test_not_modified),
        cmocka_unit_test(test_invalidates),
        cmocka_unit_test(test_vary_names),
        cmocka_unit_test(test_vary_limits),
        cmocka_unit_test(test_variant),
        cmocka_unit_test(test_variant_matches),
        cmocka_unit_test(test_key_build),
        cmocka_unit_test(test_field_stored),
        cmocka_unit_test(test_head_update),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
