/* The Redis value format of cache entries: round trips, the documented layout, every
 * truncation and corruption, versions, limits, and the key scheme, the last against a
 * real redis-server. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <xxhash.h>

#include "cache/codec.h"

extern char **environ;

/* ---- entries described as plain fields ------------------------------------------- */

struct str {
    const char *s; /* NULL: absent */
    size_t len;
};
#define S(lit) ((struct str){lit, sizeof(lit) - 1})
#define NONE ((struct str){NULL, 0})

struct fields {
    uint16_t status;
    uint32_t flags;
    int64_t response_time, initial_age, lifetime, stale_while_revalidate, stale_if_error,
        last_modified;
    struct str key, vary, variant, tags, etag, head, body;
};

static const char body_bytes[] = "{\"a\":12}\0\r\n\xff"; /* 12 bytes */

static struct fields full_fields(void)
{
    return (struct fields){
        .status = 200,
        .flags = CACHE_ENTRY_MUST_REVALIDATE | CACHE_ENTRY_NO_CACHE,
        .response_time = 1700000000,
        .initial_age = 3,
        .lifetime = 60,
        .stale_while_revalidate = 10,
        .stale_if_error = 300,
        .last_modified = 1690000000,
        .key = S("example.com\n/api/items?page=2\n"),
        .vary = S("accept-encoding, accept-language"),
        .variant = S("gzip\nen-US, en"),
        .tags = S("items page-2"),
        .etag = S("W/\"abc\""),
        .head = S("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  "Content-Length: 12\r\nVia: 1.1 ringside\r\n"),
        .body = {body_bytes, sizeof(body_bytes) - 1},
    };
}

static struct fields bare_fields(void)
{
    return (struct fields){
        .status = 204,
        .response_time = 1700000000,
        .last_modified = -1,
        .key = S("/k"),
        .head = S("HTTP/1.1 204 No Content\r\n"),
    };
}

static char *dup_str(struct str s)
{
    char *d = malloc(s.len + 1);
    assert_non_null(d);
    memcpy(d, s.s, s.len);
    d[s.len] = '\0';
    return d;
}

static struct cache_entry *entry_from(const struct fields *f)
{
    struct cache_entry *e = cache_entry_new();
    assert_non_null(e);
    e->status = f->status;
    e->flags = f->flags;
    e->response_time = f->response_time;
    e->initial_age = f->initial_age;
    e->lifetime = f->lifetime;
    e->stale_while_revalidate = f->stale_while_revalidate;
    e->stale_if_error = f->stale_if_error;
    e->last_modified = f->last_modified;
    if (f->key.s != NULL)
        assert_int_equal(cache_entry_set_key(e, f->key.s, f->key.len), 0);
    if (f->vary.s != NULL)
        e->vary = dup_str(f->vary);
    if (f->variant.s != NULL) {
        e->variant = dup_str(f->variant);
        e->variant_len = (uint32_t)f->variant.len;
    }
    if (f->tags.s != NULL)
        e->tags = dup_str(f->tags);
    if (f->etag.s != NULL)
        e->etag = dup_str(f->etag);
    if (f->head.s != NULL)
        assert_non_null(e->head = slice_copy(f->head.s, f->head.len));
    if (f->body.len > 0)
        assert_non_null(e->body = slice_copy(f->body.s, f->body.len));
    cache_entry_finish(e);
    return e;
}

static void assert_same_string(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_same_slice(const struct slice *a, const struct slice *b)
{
    if (a == NULL || b == NULL) {
        assert_ptr_equal(a, b);
        return;
    }
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->data, b->data, a->len);
}

static void assert_same_entry(const struct cache_entry *a, const struct cache_entry *b)
{
    assert_int_equal(a->hash, b->hash);
    assert_int_equal(a->key_len, b->key_len);
    assert_memory_equal(a->key, b->key, a->key_len);
    assert_same_string(a->vary, b->vary);
    if (a->variant == NULL || b->variant == NULL) {
        assert_ptr_equal(a->variant, b->variant);
    } else {
        assert_int_equal(a->variant_len, b->variant_len);
        assert_memory_equal(a->variant, b->variant, a->variant_len);
    }
    assert_same_string(a->tags, b->tags);
    assert_same_string(a->etag, b->etag);
    assert_int_equal(a->status, b->status);
    assert_same_slice(a->head, b->head);
    assert_same_slice(a->body, b->body);
    assert_int_equal(a->last_modified, b->last_modified);
    assert_int_equal(a->response_time, b->response_time);
    assert_int_equal(a->initial_age, b->initial_age);
    assert_int_equal(a->lifetime, b->lifetime);
    assert_int_equal(a->stale_while_revalidate, b->stale_while_revalidate);
    assert_int_equal(a->stale_if_error, b->stale_if_error);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->charge, b->charge);
}

/* Decode from an exact-size heap copy, so ASan sees any read past the end. */
static int decode_exact(const char *buf, size_t len, size_t max_body, struct cache_entry **out,
                        const char **why)
{
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    int rc = cache_codec_decode(copy, len, max_body, out, why);
    free(copy);
    return rc;
}

static void round_trip(const struct fields *f)
{
    struct cache_entry *e = entry_from(f);
    assert_null(cache_codec_check(e));
    char *buf;
    size_t len;
    assert_int_equal(cache_codec_encode(e, &buf, &len), 0);

    struct cache_entry *d = NULL;
    const char *why = NULL;
    assert_int_equal(decode_exact(buf, len, SIZE_MAX, &d, &why), 0);
    assert_non_null(d);
    assert_int_equal(atomic_load(&d->refs), 1);
    assert_int_equal(d->hash, cache_key_hash(f->key.s, f->key.len));
    assert_true(d->charge > 0);
    assert_same_entry(e, d);

    char *again;
    size_t again_len;
    assert_int_equal(cache_codec_encode(d, &again, &again_len), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, buf, len);
    free(again);
    free(buf);
    cache_entry_unref(d);
    cache_entry_unref(e);
}

static void test_round_trip_every_field(void **state)
{
    (void)state;
    struct fields f = full_fields();
    round_trip(&f);
}

static void test_round_trip_no_optional_field(void **state)
{
    (void)state;
    struct fields f = bare_fields();
    round_trip(&f);
}

static void test_round_trip_each_optional_field_alone(void **state)
{
    (void)state;
    const struct fields full = full_fields();
    for (int i = 0; i < 4; i++) {
        struct fields f = bare_fields();
        switch (i) {
        case 0:
            f.vary = full.vary;
            f.variant = full.variant;
            break;
        case 1:
            f.tags = full.tags;
            break;
        case 2:
            f.etag = full.etag;
            f.last_modified = full.last_modified;
            break;
        case 3:
            f.status = 200;
            f.head = full.head;
            f.body = full.body;
            break;
        }
        round_trip(&f);
    }
}

/* Present-but-empty strings and extreme values survive as such. */
static void test_round_trip_empty_and_extreme(void **state)
{
    (void)state;
    struct fields f = bare_fields();
    f.key = S("");
    f.vary = S("");
    f.variant = S("");
    f.tags = S("");
    f.etag = S("");
    f.lifetime = -CACHE_CODEC_MAX_SECONDS;
    f.response_time = CACHE_CODEC_MAX_SECONDS;
    f.initial_age = CACHE_CODEC_MAX_SECONDS;
    f.stale_while_revalidate = CACHE_CODEC_MAX_SECONDS;
    f.stale_if_error = 0;
    f.last_modified = 0;
    f.head = S("HTTP/1.1 204\r\n");
    round_trip(&f);

    /* Absent and empty encode differently. */
    struct fields g = bare_fields();
    struct fields h = bare_fields();
    h.etag = S("");
    struct cache_entry *a = entry_from(&g), *b = entry_from(&h);
    char *ab, *bb;
    size_t al, bl;
    assert_int_equal(cache_codec_encode(a, &ab, &al), 0);
    assert_int_equal(cache_codec_encode(b, &bb, &bl), 0);
    assert_int_equal(al, bl);
    assert_memory_not_equal(ab, bb, al);
    struct cache_entry *d;
    assert_int_equal(cache_codec_decode(bb, bl, 0, &d, NULL), 0);
    assert_non_null(d->etag);
    assert_string_equal(d->etag, "");
    cache_entry_unref(d);
    free(ab);
    free(bb);
    cache_entry_unref(a);
    cache_entry_unref(b);
}

/* An empty body slice is the same as no body. */
static void test_empty_body_slice_decodes_as_none(void **state)
{
    (void)state;
    struct fields f = bare_fields();
    struct cache_entry *e = entry_from(&f);
    e->body = slice_new(0);
    assert_non_null(e->body);
    char *buf;
    size_t len;
    assert_int_equal(cache_codec_encode(e, &buf, &len), 0);
    struct cache_entry *d;
    assert_int_equal(cache_codec_decode(buf, len, 0, &d, NULL), 0);
    assert_null(d->body);
    assert_int_equal(cache_entry_body_len(d), 0);
    cache_entry_unref(d);
    free(buf);
    cache_entry_unref(e);
}

/* ---- the documented layout, written by hand ----------------------------------------- */

struct raw {
    char buf[4096];
    size_t len;
};

static void raw_bytes(struct raw *r, const void *p, size_t n)
{
    assert_true(r->len + n <= sizeof(r->buf));
    if (n > 0) /* p may be NULL then */
        memcpy(r->buf + r->len, p, n);
    r->len += n;
}

static void raw_le(struct raw *r, uint64_t v, int width)
{
    for (int i = 0; i < width; i++)
        r->buf[r->len++] = (char)(v >> (8 * i));
}

static void raw_str(struct raw *r, struct str s)
{
    raw_le(r, s.s != NULL ? s.len : 0xffffffffu, 4);
    raw_bytes(r, s.s, s.len);
}

static void raw_header(struct raw *r, uint16_t version, uint8_t kind)
{
    r->len = 0;
    raw_bytes(r, "RSCE", 4);
    raw_le(r, version, 2);
    raw_le(r, kind, 1);
}

static void raw_entry(struct raw *r, const struct fields *f)
{
    raw_header(r, 1, 1);
    raw_le(r, f->status, 2);
    raw_le(r, f->flags, 4);
    raw_le(r, (uint64_t)f->response_time, 8);
    raw_le(r, (uint64_t)f->initial_age, 8);
    raw_le(r, (uint64_t)f->lifetime, 8);
    raw_le(r, (uint64_t)f->stale_while_revalidate, 8);
    raw_le(r, (uint64_t)f->stale_if_error, 8);
    raw_le(r, (uint64_t)f->last_modified, 8);
    raw_str(r, f->key);
    raw_str(r, f->vary);
    raw_str(r, f->variant);
    raw_str(r, f->tags);
    raw_str(r, f->etag);
    raw_le(r, f->head.len, 4);
    raw_bytes(r, f->head.s, f->head.len);
    raw_le(r, f->body.len, 4);
    raw_bytes(r, f->body.s, f->body.len);
}

static void test_layout_is_as_documented(void **state)
{
    (void)state;
    struct fields cases[] = {full_fields(), bare_fields()};
    cases[1].lifetime = -7; /* two's complement */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct raw r;
        raw_entry(&r, &cases[i]);
        struct cache_entry *e = entry_from(&cases[i]);
        char *buf;
        size_t len;
        assert_int_equal(cache_codec_encode(e, &buf, &len), 0);
        assert_int_equal(len, r.len);
        assert_memory_equal(buf, r.buf, len);
        free(buf);
        cache_entry_unref(e);
    }
}

/* ---- what both sides refuse -------------------------------------------------------- */

struct bad_case {
    const char *name;
    void (*mutate)(struct fields *f);
    const char *why;
};

static void no_key(struct fields *f) { f->key = NONE; }
static void nul_in_key(struct fields *f) { f->key = S("a\0b"); }
static void nul_in_variant(struct fields *f) { f->variant = S("\0"); }
static void vary_without_variant(struct fields *f) { f->variant = NONE; }
static void variant_without_vary(struct fields *f) { f->vary = NONE; }
static void crlf_in_etag(struct fields *f) { f->etag = S("\"a\"\r\nX-Injected: 1"); }
static void lf_in_tags(struct fields *f) { f->tags = S("a\nb"); }
static void del_in_vary(struct fields *f) { f->vary = S("accept\x7f"); }
static void nul_in_etag(struct fields *f) { f->etag = S("\"a\0\""); }
static void status_99(struct fields *f) { f->status = 99; f->head = S("HTTP/1.1 099 X\r\n"); }
static void status_600(struct fields *f) { f->status = 600; f->head = S("HTTP/1.1 600 X\r\n"); }
static void unknown_flag(struct fields *f) { f->flags |= 1u << 2; }
static void negative_response_time(struct fields *f) { f->response_time = -1; }
static void huge_initial_age(struct fields *f) { f->initial_age = CACHE_CODEC_MAX_SECONDS + 1; }
static void huge_lifetime(struct fields *f) { f->lifetime = CACHE_CODEC_MAX_SECONDS + 1; }
static void tiny_lifetime(struct fields *f) { f->lifetime = -CACHE_CODEC_MAX_SECONDS - 1; }
static void negative_swr(struct fields *f) { f->stale_while_revalidate = -1; }
static void huge_sie(struct fields *f) { f->stale_if_error = INT64_MAX; }
static void last_modified_minus_2(struct fields *f) { f->last_modified = -2; }
static void status_differs(struct fields *f) { f->status = 203; }
static void http10(struct fields *f) { f->head = S("HTTP/1.0 200 OK\r\nContent-Length: 12\r\n"); }
static void lowercase_http(struct fields *f)
{
    f->head = S("http/1.1 200 OK\r\nContent-Length: 12\r\n");
}
static void two_digit_status(struct fields *f) { f->head = S("HTTP/1.1 20 OK\r\n"); }
static void four_digit_status(struct fields *f) { f->head = S("HTTP/1.1 2000 OK\r\n"); }
static void bare_lf_status(struct fields *f)
{
    f->head = S("HTTP/1.1 200 OK\nContent-Length: 12\r\n");
}
static void no_crlf_status(struct fields *f) { f->head = S("HTTP/1.1 200 OK"); }
static void empty_head(struct fields *f) { f->head = S(""); }
static void ctl_in_reason(struct fields *f) { f->head = S("HTTP/1.1 200 O\x01K\r\n"); }
static void unterminated_field(struct fields *f) { f->head = S("HTTP/1.1 200 OK\r\nA: b"); }
static void bare_lf_field(struct fields *f) { f->head = S("HTTP/1.1 200 OK\r\nA: b\nC: d\r\n"); }
static void blank_line(struct fields *f) { f->head = S("HTTP/1.1 200 OK\r\n\r\n"); }
static void obs_fold(struct fields *f) { f->head = S("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n"); }
static void space_before_colon(struct fields *f) { f->head = S("HTTP/1.1 200 OK\r\nA : b\r\n"); }
static void no_colon(struct fields *f) { f->head = S("HTTP/1.1 200 OK\r\nAb\r\n"); }
static void nul_in_value(struct fields *f) { f->head = S("HTTP/1.1 200 OK\r\nA: b\0c\r\n"); }
static void cl_differs(struct fields *f)
{
    f->head = S("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n");
}
static void cl_twice(struct fields *f)
{
    f->head = S("HTTP/1.1 200 OK\r\nContent-Length: 12\r\ncontent-length: 12\r\n");
}
static void cl_not_a_number(struct fields *f)
{
    f->head = S("HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n");
}
static void cl_empty(struct fields *f) { f->head = S("HTTP/1.1 200 OK\r\nContent-Length:\r\n"); }
static void cl_overflow(struct fields *f)
{
    /* 2^64 + 12 wraps to 12 in 64-bit arithmetic */
    f->head = S("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551628\r\n");
}
static void cl_without_body(struct fields *f) { f->body = NONE; }
static void transfer_encoding(struct fields *f)
{
    f->head = S("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nTransfer-Encoding: chunked\r\n");
}
static void age(struct fields *f) { f->head = S("HTTP/1.1 200 OK\r\nAGE: 5\r\n"); }

static const struct bad_case bad_cases[] = {
    {"no key", no_key, "no key"},
    {"NUL in key", nul_in_key, "NUL in key or variant"},
    {"NUL in variant", nul_in_variant, "NUL in key or variant"},
    {"vary without variant", vary_without_variant, "vary and variant disagree"},
    {"variant without vary", variant_without_vary, "vary and variant disagree"},
    {"CRLF in etag", crlf_in_etag, "control byte in vary, tags or etag"},
    {"LF in tags", lf_in_tags, "control byte in vary, tags or etag"},
    {"DEL in vary", del_in_vary, "control byte in vary, tags or etag"},
    {"NUL in etag", nul_in_etag, "control byte in vary, tags or etag"},
    {"status 99", status_99, "status out of range"},
    {"status 600", status_600, "status out of range"},
    {"unknown flag", unknown_flag, "unknown flags"},
    {"negative response_time", negative_response_time, "time out of range"},
    {"huge initial_age", huge_initial_age, "time out of range"},
    {"huge lifetime", huge_lifetime, "time out of range"},
    {"tiny lifetime", tiny_lifetime, "time out of range"},
    {"negative stale_while_revalidate", negative_swr, "time out of range"},
    {"huge stale_if_error", huge_sie, "time out of range"},
    {"last_modified -2", last_modified_minus_2, "time out of range"},
    {"status differs from head", status_differs, "head: status differs"},
    {"HTTP/1.0", http10, "head: bad status line"},
    {"lowercase http", lowercase_http, "head: bad status line"},
    {"two-digit status", two_digit_status, "head: bad status line"},
    {"four-digit status", four_digit_status, "head: bad status line"},
    {"bare LF after status", bare_lf_status, "head: bad status line"},
    {"no CRLF after status", no_crlf_status, "head: bad status line"},
    {"empty head", empty_head, "head: bad status line"},
    {"control byte in reason", ctl_in_reason, "head: bad status line"},
    {"unterminated field", unterminated_field, "head: bad field value"},
    {"bare LF in field", bare_lf_field, "head: bad field value"},
    {"blank line", blank_line, "head: bad field name"},
    {"obs-fold", obs_fold, "head: bad field name"},
    {"space before colon", space_before_colon, "head: bad field name"},
    {"no colon", no_colon, "head: bad field name"},
    {"NUL in value", nul_in_value, "head: bad field value"},
    {"content-length differs", cl_differs, "head: content-length differs from the body"},
    {"content-length twice", cl_twice, "head: content-length differs from the body"},
    {"content-length not a number", cl_not_a_number, "head: content-length differs from the body"},
    {"content-length empty", cl_empty, "head: content-length differs from the body"},
    {"content-length overflow", cl_overflow, "head: content-length differs from the body"},
    {"content-length without body", cl_without_body,
     "head: content-length differs from the body"},
    {"transfer-encoding", transfer_encoding, "head: transfer-encoding"},
    {"age", age, "head: age"},
};

/* Strings an entry holds NUL-terminated cannot carry a NUL: only the decoder sees those. */
static bool representable(const struct fields *f)
{
    const struct str *s[] = {&f->vary, &f->tags, &f->etag};
    for (size_t i = 0; i < 3; i++)
        if (s[i]->s != NULL && memchr(s[i]->s, '\0', s[i]->len) != NULL)
            return false;
    return true;
}

static void test_malformed_refused_by_both_sides(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct fields f = full_fields();
        c->mutate(&f);
        struct raw r;
        raw_entry(&r, &f);
        struct cache_entry *out = (struct cache_entry *)&r; /* must stay untouched */
        const char *why = NULL;
        int rc = decode_exact(r.buf, r.len, SIZE_MAX, &out, &why);
        if (rc != -EINVAL || why == NULL || strcmp(why, c->why) != 0)
            fail_msg("%s: decode returned %d (%s), want -EINVAL (%s)", c->name, rc,
                     why ? why : "no reason", c->why);
        assert_ptr_equal(out, (struct cache_entry *)&r);

        if (!representable(&f))
            continue;
        struct cache_entry *e = entry_from(&f);
        const char *reason = cache_codec_check(e);
        if (reason == NULL || strcmp(reason, c->why) != 0)
            fail_msg("%s: check said %s, want %s", c->name, reason ? reason : "fine", c->why);
        char *buf = NULL;
        size_t len = 0;
        assert_int_equal(cache_codec_encode(e, &buf, &len), -EINVAL);
        assert_null(buf);
        cache_entry_unref(e);
    }
}

static void ok_no_reason(struct fields *f)
{
    f->head = S("HTTP/1.1 200\r\nContent-Length: 12\r\n");
}
static void ok_empty_reason(struct fields *f)
{
    f->head = S("HTTP/1.1 200 \r\nContent-Length: 12\r\n");
}
static void ok_cl_ows_and_zeros(struct fields *f)
{
    f->head = S("HTTP/1.1 200 OK\r\ncontent-LENGTH: \t0012 \r\n");
}
static void ok_no_cl(struct fields *f) { f->head = S("HTTP/1.1 200 OK\r\n"); }
static void ok_obs_text(struct fields *f)
{
    f->head = S("HTTP/1.1 200 \xc3\xa9t\xc3\xa9\r\nX-Name:\t\xff v\t\r\nContent-Length: 12\r\n");
    f->etag = S("\"\xe2\x82\xac\"");
}
static void ok_negative_lifetime(struct fields *f) { f->lifetime = -5; }
static void ok_max_times(struct fields *f)
{
    f->response_time = f->initial_age = f->lifetime = f->stale_while_revalidate =
        f->stale_if_error = f->last_modified = CACHE_CODEC_MAX_SECONDS;
}
static void ok_status_100_599(struct fields *f)
{
    f->status = 599;
    f->head = S("HTTP/1.1 599 Whatever\r\nContent-Length: 12\r\n");
}
static void ok_variant_controls(struct fields *f) { f->variant = S("a\nb\tc\x01\x7f"); }

static void test_edge_values_accepted(void **state)
{
    (void)state;
    void (*const ok[])(struct fields *) = {
        ok_no_reason,      ok_empty_reason,     ok_cl_ows_and_zeros, ok_no_cl,
        ok_obs_text,       ok_negative_lifetime, ok_max_times,        ok_status_100_599,
        ok_variant_controls,
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct fields f = full_fields();
        ok[i](&f);
        struct raw r;
        raw_entry(&r, &f);
        struct cache_entry *e = NULL;
        const char *why = NULL;
        int rc = decode_exact(r.buf, r.len, SIZE_MAX, &e, &why);
        if (rc != 0)
            fail_msg("case %zu: %d (%s)", i, rc, why);
        char *buf;
        size_t len;
        assert_int_equal(cache_codec_encode(e, &buf, &len), 0);
        assert_int_equal(len, r.len);
        assert_memory_equal(buf, r.buf, len);
        free(buf);
        cache_entry_unref(e);
    }
}

static void test_trailing_bytes_refused(void **state)
{
    (void)state;
    struct fields f = full_fields();
    struct raw r;
    raw_entry(&r, &f);
    r.buf[r.len++] = '\0';
    struct cache_entry *e;
    const char *why;
    assert_int_equal(decode_exact(r.buf, r.len, SIZE_MAX, &e, &why), -EINVAL);
    assert_string_equal(why, "trailing bytes");
}

/* ---- truncation and corruption ----------------------------------------------------- */

static void encode_fields(const struct fields *f, char **buf, size_t *len)
{
    struct cache_entry *e = entry_from(f);
    assert_int_equal(cache_codec_encode(e, buf, len), 0);
    cache_entry_unref(e);
}

static void test_every_truncation_fails(void **state)
{
    (void)state;
    struct fields cases[] = {full_fields(), bare_fields()};
    for (size_t c = 0; c < 2; c++) {
        char *buf;
        size_t len;
        encode_fields(&cases[c], &buf, &len);
        for (size_t n = 0; n < len; n++) {
            struct cache_entry *out = (struct cache_entry *)buf;
            const char *why = NULL;
            int rc = decode_exact(buf, n, SIZE_MAX, &out, &why);
            if (rc != -EINVAL)
                fail_msg("prefix of %zu of %zu bytes: %d", n, len, rc);
            assert_non_null(why);
            assert_ptr_equal(out, (struct cache_entry *)buf);
        }
        free(buf);
    }
}

/* Deterministic, so a failure reproduces. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Decode a corrupted value: a failure must be a clean error, a success an entry that
 * passes every check and encodes back to exactly these bytes. Returns rc. */
static int decode_corrupt(const char *buf, size_t len)
{
    struct cache_entry *e = NULL;
    const char *why = NULL;
    int rc = decode_exact(buf, len, 1 << 20, &e, &why);
    if (rc != 0) {
        if (rc != -EINVAL && rc != -EPROTONOSUPPORT && rc != -E2BIG)
            fail_msg("unexpected error %d", rc);
        assert_non_null(why);
        return rc;
    }
    assert_null(cache_codec_check(e));
    char *again;
    size_t again_len;
    assert_int_equal(cache_codec_encode(e, &again, &again_len), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, buf, len);
    free(again);
    cache_entry_unref(e);
    return 0;
}

static void test_flipped_bytes(void **state)
{
    (void)state;
    struct fields f = full_fields();
    char *buf;
    size_t len;
    encode_fields(&f, &buf, &len);
    char *copy = malloc(len);
    assert_non_null(copy);
    static const unsigned char masks[] = {0x01, 0x02, 0x10, 0x80, 0xff};
    size_t decoded = 0, refused = 0;
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            memcpy(copy, buf, len);
            copy[i] = (char)(copy[i] ^ masks[m]);
            if (decode_corrupt(copy, len) == 0)
                decoded++;
            else
                refused++;
        }
    }
    /* Body bytes, times and most string bytes may change; magic, version, lengths and
     * the status line may not. */
    assert_true(decoded > 0);
    assert_true(refused > 0);

    /* A few flips whose outcome is certain. */
    memcpy(copy, buf, len);
    copy[len - 1] ^= 0x01; /* last body byte */
    struct cache_entry *e;
    assert_int_equal(cache_codec_decode(copy, len, SIZE_MAX, &e, NULL), 0);
    assert_int_equal(e->body->data[e->body->len - 1], body_bytes[sizeof(body_bytes) - 2] ^ 0x01);
    cache_entry_unref(e);
    memcpy(copy, buf, len);
    copy[7] ^= 0x01; /* status 200 -> 201: the status line disagrees */
    const char *why;
    assert_int_equal(cache_codec_decode(copy, len, SIZE_MAX, &e, &why), -EINVAL);
    assert_string_equal(why, "head: status differs");

    /* Random multi-byte damage, sometimes with a cut. */
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 20000; round++) {
        memcpy(copy, buf, len);
        int flips = 1 + (int)(next_random(&seed) % 4);
        for (int k = 0; k < flips; k++)
            copy[next_random(&seed) % len] = (char)next_random(&seed);
        size_t n = next_random(&seed) % 4 == 0 ? next_random(&seed) % (len + 1) : len;
        decode_corrupt(copy, n);
    }
    free(copy);
    free(buf);
}

/* ---- versions, kinds and limits ---------------------------------------------------- */

static void test_other_versions_are_not_supported(void **state)
{
    (void)state;
    struct fields f = full_fields();
    char *buf;
    size_t len;
    encode_fields(&f, &buf, &len);
    static const uint16_t versions[] = {0, 2, 0x100, 0xffff};
    for (size_t i = 0; i < 4; i++) {
        buf[4] = (char)(versions[i] & 0xff);
        buf[5] = (char)(versions[i] >> 8);
        struct cache_entry *e = NULL;
        const char *why = NULL;
        assert_int_equal(decode_exact(buf, len, SIZE_MAX, &e, &why), -EPROTONOSUPPORT);
        assert_null(e);
        assert_string_equal(why, "another format version");
        /* Whatever follows the version is another format's business. */
        assert_int_equal(decode_exact(buf, 7, SIZE_MAX, &e, NULL), -EPROTONOSUPPORT);
        assert_int_equal(cache_codec_kind(buf, len, NULL), -EPROTONOSUPPORT);
        struct cache_codec_vary v;
        assert_int_equal(cache_codec_decode_vary(buf, len, &v, NULL), -EPROTONOSUPPORT);
    }
    buf[4] = 1;
    buf[5] = 0;
    buf[0] = 'X';
    const char *why;
    assert_int_equal(cache_codec_kind(buf, len, &why), -EINVAL);
    assert_string_equal(why, "not a cache value");
    free(buf);
}

static void test_body_limit(void **state)
{
    (void)state;
    struct fields f = full_fields();
    char *buf;
    size_t len;
    encode_fields(&f, &buf, &len);
    struct cache_entry *e = NULL;
    const char *why = NULL;
    assert_int_equal(decode_exact(buf, len, f.body.len - 1, &e, &why), -E2BIG);
    assert_null(e);
    assert_string_equal(why, "body over the limit");
    assert_int_equal(decode_exact(buf, len, f.body.len, &e, NULL), 0);
    cache_entry_unref(e);
    free(buf);

    struct fields g = bare_fields(); /* no body at all */
    encode_fields(&g, &buf, &len);
    assert_int_equal(decode_exact(buf, len, 0, &e, NULL), 0);
    cache_entry_unref(e);
    free(buf);
}

static void test_matches(void **state)
{
    (void)state;
    struct fields f = full_fields();
    struct cache_entry *e = entry_from(&f);
    assert_true(cache_codec_key_matches(e, f.key.s, f.key.len));
    assert_false(cache_codec_key_matches(e, f.key.s, f.key.len - 1));
    assert_false(cache_codec_key_matches(e, "example.com\n/api/items?page=3\n", f.key.len));
    assert_true(cache_codec_variant_matches(e, f.variant.s, f.variant.len));
    assert_false(cache_codec_variant_matches(e, "gzip\nen-US, fr", f.variant.len));
    assert_false(cache_codec_variant_matches(e, f.variant.s, f.variant.len - 1));
    assert_false(cache_codec_variant_matches(e, NULL, 0));
    cache_entry_unref(e);

    struct fields g = bare_fields();
    e = entry_from(&g);
    assert_true(cache_codec_variant_matches(e, NULL, 0));
    assert_false(cache_codec_variant_matches(e, "", 0));
    cache_entry_unref(e);
}

/* ---- vary records ------------------------------------------------------------------ */

static void test_vary_record(void **state)
{
    (void)state;
    static const char key[] = "example.com\n/a\n";
    static const char names[] = "accept-encoding, accept-language";
    char *buf;
    size_t len;
    assert_int_equal(cache_codec_encode_vary(key, sizeof(key) - 1, names, sizeof(names) - 1,
                                             0x0123456789abcdefu, &buf, &len),
                     0);
    struct raw r;
    raw_header(&r, 1, 2);
    raw_le(&r, 0x0123456789abcdefu, 8);
    raw_str(&r, S("example.com\n/a\n"));
    raw_str(&r, S("accept-encoding, accept-language"));
    assert_int_equal(len, r.len);
    assert_memory_equal(buf, r.buf, len);

    assert_int_equal(cache_codec_kind(buf, len, NULL), CACHE_CODEC_VARY);
    struct cache_codec_vary v;
    assert_int_equal(cache_codec_decode_vary(buf, len, &v, NULL), 0);
    assert_int_equal(v.generation, 0x0123456789abcdefu);
    assert_int_equal(v.key_len, sizeof(key) - 1);
    assert_memory_equal(v.key, key, v.key_len);
    assert_int_equal(v.names_len, sizeof(names) - 1);
    assert_memory_equal(v.names, names, v.names_len);

    /* Neither decoder takes the other's value. */
    struct cache_entry *e;
    const char *why;
    assert_int_equal(cache_codec_decode(buf, len, SIZE_MAX, &e, &why), -EINVAL);
    assert_string_equal(why, "not an entry");
    struct fields f = full_fields();
    char *ebuf;
    size_t elen;
    encode_fields(&f, &ebuf, &elen);
    assert_int_equal(cache_codec_kind(ebuf, elen, NULL), CACHE_CODEC_ENTRY);
    assert_int_equal(cache_codec_decode_vary(ebuf, elen, &v, &why), -EINVAL);
    assert_string_equal(why, "not a vary record");
    free(ebuf);

    for (size_t n = 0; n < len; n++) {
        char *cut = malloc(n > 0 ? n : 1);
        memcpy(cut, buf, n);
        why = NULL;
        assert_int_equal(cache_codec_decode_vary(cut, n, &v, &why), -EINVAL);
        assert_non_null(why);
        free(cut);
    }
    free(buf);

    /* Empty names are names; absent ones, a NUL in the key or a control byte in the
     * names are not. */
    assert_int_equal(cache_codec_encode_vary("k", 1, "", 0, 1, &buf, &len), 0);
    assert_int_equal(cache_codec_decode_vary(buf, len, &v, NULL), 0);
    assert_int_equal(v.names_len, 0);
    free(buf);
    assert_int_equal(cache_codec_encode_vary("k", 1, NULL, 0, 1, &buf, &len), -EINVAL);
    assert_int_equal(cache_codec_encode_vary("k\0", 2, "a", 1, 1, &buf, &len), -EINVAL);
    assert_int_equal(cache_codec_encode_vary("k", 1, "a\r\nb", 4, 1, &buf, &len), -EINVAL);

    raw_header(&r, 1, 2);
    raw_le(&r, 1, 8);
    raw_str(&r, S("k"));
    raw_str(&r, NONE);
    assert_int_equal(cache_codec_decode_vary(r.buf, r.len, &v, &why), -EINVAL);
    assert_string_equal(why, "no key or names");
    raw_header(&r, 1, 2);
    raw_le(&r, 1, 8);
    raw_str(&r, S("k"));
    raw_str(&r, S("a\nb"));
    assert_int_equal(cache_codec_decode_vary(r.buf, r.len, &v, &why), -EINVAL);
    assert_string_equal(why, "control byte in names");
    r.buf[r.len++] = 'x';
    assert_int_equal(cache_codec_decode_vary(r.buf, r.len, &v, &why), -EINVAL);
    assert_string_equal(why, "trailing bytes");
    raw_header(&r, 1, 3);
    assert_int_equal(cache_codec_kind(r.buf, r.len, &why), -EINVAL);
    assert_string_equal(why, "unknown kind");
}

/* ---- keys -------------------------------------------------------------------------- */

static void test_redis_keys(void **state)
{
    (void)state;
    char out[CACHE_CODEC_REDIS_KEY_MAX(8)];
    char want[128];
    uint64_t h = cache_key_hash("example.com\n/a\n", 15);

    int n = cache_codec_redis_key("ringside", h, 42, NULL, 0, out, sizeof(out));
    snprintf(want, sizeof(want), "ringside:e:%016llx", (unsigned long long)h);
    assert_string_equal(out, want);
    assert_int_equal(n, (int)strlen(want));
    /* The generation does not move the base slot. */
    char other[sizeof(out)];
    cache_codec_redis_key("ringside", h, 43, NULL, 0, other, sizeof(other));
    assert_string_equal(other, out);

    n = cache_codec_redis_key("ringside", h, 42, "gzip", 4, out, sizeof(out));
    snprintf(want, sizeof(want), "ringside:e:%016llx:%016llx", (unsigned long long)h,
             (unsigned long long)XXH3_64bits_withSeed("gzip", 4, 42));
    assert_string_equal(out, want);
    assert_int_equal(n, (int)strlen(want));
    assert_int_equal((size_t)n + 1, sizeof(out)); /* the macro is exact */

    cache_codec_redis_key("ringside", h, 43, "gzip", 4, other, sizeof(other));
    assert_string_not_equal(other, out);
    cache_codec_redis_key("ringside", h, 42, "br", 2, other, sizeof(other));
    assert_string_not_equal(other, out);
    cache_codec_redis_key("ringside", h, 42, "", 0, other, sizeof(other));
    assert_int_equal(strlen(other), (size_t)n); /* an empty variant is a variant */

    /* Too small by one byte: nothing but -1. */
    assert_int_equal(cache_codec_redis_key("ringside", h, 42, "gzip", 4, out, sizeof(out) - 1),
                     -1);
    assert_int_equal(cache_codec_redis_key("ringside", h, 0, NULL, 0, out, 28), 27);
    assert_int_equal(cache_codec_redis_key("ringside", h, 0, NULL, 0, out, 27), -1);
    assert_int_equal(cache_codec_redis_key("", 0, 0, NULL, 0, out, sizeof(out)), 19);
    assert_string_equal(out, ":e:0000000000000000");

    assert_int_not_equal(cache_codec_new_generation(), cache_codec_new_generation());
}

/* ---- the scheme against a real Redis ----------------------------------------------- */

struct redis_fixture {
    pid_t pid;
    redisContext *c;
    int round_trips;
};

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static bool in_path(const char *name)
{
    const char *path = getenv("PATH");
    char buf[4096];
    while (path != NULL && *path != '\0') {
        size_t n = strcspn(path, ":");
        if (snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, name) < (int)sizeof(buf) &&
            access(buf, X_OK) == 0)
            return true;
        path += n + (path[n] == ':');
    }
    return false;
}

/* Start redis-server on a free loopback port and connect; a few tries, since another
 * process may take the port between the probe and the bind. */
static int start_redis(struct redis_fixture *f)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = free_port();
        if (port < 0)
            return -1;
        char port_s[16];
        snprintf(port_s, sizeof(port_s), "%d", port);
        char *argv[] = {"redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--loglevel", "warning", NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
        int rc = posix_spawnp(&f->pid, "redis-server", &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0)
            return -1;
        for (int i = 0; i < 200; i++) { /* up to 2 s */
            int status;
            if (waitpid(f->pid, &status, WNOHANG) == f->pid) {
                f->pid = 0;
                break;
            }
            struct timeval tv = {1, 0};
            redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
            if (c != NULL && c->err == 0) {
                f->c = c;
                return 0;
            }
            redisFree(c);
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
        }
        if (f->pid > 0) {
            kill(f->pid, SIGKILL);
            waitpid(f->pid, NULL, 0);
            f->pid = 0;
        }
    }
    return -1;
}

static int redis_setup(void **state)
{
    struct redis_fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    if (!in_path("redis-server"))
        return 0; /* the test skips */
    return start_redis(f);
}

static int redis_teardown(void **state)
{
    struct redis_fixture *f = *state;
    if (f->c != NULL)
        redisFree(f->c);
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
    }
    free(f);
    return 0;
}

static const char ns[] = "t";

/* The writer of codec.h: one pipelined round trip. */
static void l2_store(struct redis_fixture *f, const struct cache_entry *e, uint64_t generation,
                     int64_t now)
{
    char base[CACHE_CODEC_REDIS_KEY_MAX(sizeof(ns))], slot[sizeof(base)];
    char *value, *record = NULL;
    size_t value_len, record_len = 0;
    char ex[32];
    snprintf(ex, sizeof(ex), "%lld", (long long)cache_entry_keep(e, now));
    assert_int_equal(cache_codec_encode(e, &value, &value_len), 0);
    cache_codec_redis_key(ns, e->hash, 0, NULL, 0, base, sizeof(base));
    int commands = 1;
    if (e->vary == NULL) {
        redisAppendCommand(f->c, "SET %s %b EX %s", base, value, value_len, ex);
    } else {
        assert_int_equal(cache_codec_encode_vary(e->key, e->key_len, e->vary, strlen(e->vary),
                                                 generation, &record, &record_len),
                         0);
        cache_codec_redis_key(ns, e->hash, generation, e->variant, e->variant_len, slot,
                              sizeof(slot));
        redisAppendCommand(f->c, "SET %s %b EX %s", base, record, record_len, ex);
        redisAppendCommand(f->c, "SET %s %b EX %s", slot, value, value_len, ex);
        commands = 2;
    }
    for (int i = 0; i < commands; i++) {
        redisReply *r;
        assert_int_equal(redisGetReply(f->c, (void **)&r), REDIS_OK);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    f->round_trips++;
    free(value);
    free(record);
}

static redisReply *l2_get(struct redis_fixture *f, const char *key)
{
    redisReply *r = redisCommand(f->c, "GET %s", key);
    assert_non_null(r);
    assert_true(r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL);
    f->round_trips++;
    return r;
}

/* The reader of codec.h. variant_of maps the record's names to this request's variant
 * (cache_variant in the proxy). Sets *generation when a vary record was read. */
static struct cache_entry *l2_lookup(struct redis_fixture *f, const char *key,
                                     const char *(*variant_of)(const char *names, size_t len),
                                     uint64_t *generation)
{
    size_t key_len = strlen(key);
    char slot[CACHE_CODEC_REDIS_KEY_MAX(sizeof(ns))];
    uint64_t hash = cache_key_hash(key, key_len);
    cache_codec_redis_key(ns, hash, 0, NULL, 0, slot, sizeof(slot));
    redisReply *r = l2_get(f, slot);
    struct cache_entry *e = NULL;
    const char *variant = NULL;
    if (r->type == REDIS_REPLY_STRING &&
        cache_codec_kind(r->str, r->len, NULL) == CACHE_CODEC_VARY) {
        struct cache_codec_vary v;
        assert_int_equal(cache_codec_decode_vary(r->str, r->len, &v, NULL), 0);
        if (v.key_len != key_len || memcmp(v.key, key, key_len) != 0) {
            freeReplyObject(r);
            return NULL;
        }
        *generation = v.generation;
        variant = variant_of(v.names, v.names_len);
        cache_codec_redis_key(ns, hash, v.generation, variant, strlen(variant), slot,
                              sizeof(slot));
        freeReplyObject(r);
        r = l2_get(f, slot);
    }
    if (r->type == REDIS_REPLY_STRING &&
        cache_codec_decode(r->str, r->len, SIZE_MAX, &e, NULL) == 0 &&
        (!cache_codec_key_matches(e, key, key_len) ||
         !cache_codec_variant_matches(e, variant, variant ? strlen(variant) : 0))) {
        cache_entry_unref(e);
        e = NULL;
    }
    freeReplyObject(r);
    return e;
}

static const char *wants_gzip(const char *names, size_t len)
{
    assert_int_equal(len, strlen("accept-encoding"));
    assert_memory_equal(names, "accept-encoding", len);
    return "gzip";
}

static const char *wants_br(const char *names, size_t len)
{
    (void)names, (void)len;
    return "br";
}

static const char *wants_identity(const char *names, size_t len)
{
    (void)names, (void)len;
    return "identity";
}

static struct cache_entry *variant_entry(const char *variant, const char *body)
{
    struct fields f = bare_fields();
    char head[128];
    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n", strlen(body));
    f.status = 200;
    f.key = S("example.com\n/v\n");
    f.head = (struct str){head, strlen(head)};
    f.body = (struct str){body, strlen(body)};
    f.vary = S("accept-encoding");
    f.variant = (struct str){variant, strlen(variant)};
    f.lifetime = 600;
    return entry_from(&f);
}

static void test_scheme_against_redis(void **state)
{
    struct redis_fixture *f = *state;
    if (f->c == NULL) {
        print_message("redis-server is not in PATH: skipped\n");
        skip();
    }
    int64_t now = 1700000000;
    uint64_t generation = 0;

    /* No Vary: one round trip, binary body intact. */
    struct fields plain = full_fields();
    plain.vary = plain.variant = NONE;
    plain.response_time = now;
    struct cache_entry *e = entry_from(&plain);
    l2_store(f, e, 0, now);
    f->round_trips = 0;
    struct cache_entry *got = l2_lookup(f, "example.com\n/api/items?page=2\n", wants_br,
                                        &generation);
    assert_non_null(got);
    assert_int_equal(f->round_trips, 1);
    assert_same_entry(e, got);
    cache_entry_unref(got);
    redisReply *ttl = redisCommand(f->c, "TTL t:e:%016llx", (unsigned long long)e->hash);
    assert_true(ttl->integer > 0 && ttl->integer <= cache_entry_keep(e, now));
    freeReplyObject(ttl);
    cache_entry_unref(e);

    /* Vary: two variants under one generation; each found in two round trips. */
    uint64_t g1 = cache_codec_new_generation();
    struct cache_entry *gz = variant_entry("gzip", "gzip body");
    struct cache_entry *br = variant_entry("br", "br body");
    l2_store(f, gz, g1, now);
    l2_store(f, br, g1, now);
    f->round_trips = 0;
    got = l2_lookup(f, "example.com\n/v\n", wants_gzip, &generation);
    assert_int_equal(f->round_trips, 2);
    assert_int_equal(generation, g1);
    assert_non_null(got);
    assert_same_entry(gz, got);
    cache_entry_unref(got);
    got = l2_lookup(f, "example.com\n/v\n", wants_br, &generation);
    assert_non_null(got);
    assert_same_entry(br, got);
    cache_entry_unref(got);
    f->round_trips = 0;
    assert_null(l2_lookup(f, "example.com\n/v\n", wants_identity, &generation));
    assert_int_equal(f->round_trips, 2);

    /* Purge: DEL the base slot. A writer that read no record starts a new generation;
     * the old br variant is still in Redis but never read again. */
    char base[64], old_br[64];
    cache_codec_redis_key(ns, gz->hash, 0, NULL, 0, base, sizeof(base));
    cache_codec_redis_key(ns, gz->hash, g1, "br", 2, old_br, sizeof(old_br));
    redisReply *r = redisCommand(f->c, "DEL %s", base);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    assert_null(l2_lookup(f, "example.com\n/v\n", wants_br, &generation));
    struct cache_entry *gz2 = variant_entry("gzip", "new gzip body");
    l2_store(f, gz2, cache_codec_new_generation(), now);
    got = l2_lookup(f, "example.com\n/v\n", wants_gzip, &generation);
    assert_non_null(got);
    assert_same_entry(gz2, got);
    cache_entry_unref(got);
    assert_null(l2_lookup(f, "example.com\n/v\n", wants_br, &generation));
    r = redisCommand(f->c, "EXISTS %s", old_br);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);

    /* A response that stops varying replaces the record. */
    struct fields flat = bare_fields();
    flat.key = S("example.com\n/v\n");
    flat.lifetime = 600;
    struct cache_entry *plain_v = entry_from(&flat);
    l2_store(f, plain_v, 0, now);
    f->round_trips = 0;
    got = l2_lookup(f, "example.com\n/v\n", wants_gzip, &generation);
    assert_int_equal(f->round_trips, 1);
    assert_non_null(got);
    assert_same_entry(plain_v, got);
    cache_entry_unref(got);

    /* A hash collision: another key's value in this key's slot is a miss. */
    char *value;
    size_t value_len;
    assert_int_equal(cache_codec_encode(plain_v, &value, &value_len), 0);
    uint64_t other = cache_key_hash("example.com\n/w\n", 15);
    r = redisCommand(f->c, "SET t:e:%016llx %b", (unsigned long long)other, value, value_len);
    freeReplyObject(r);
    assert_null(l2_lookup(f, "example.com\n/w\n", wants_gzip, &generation));
    /* And a value of another format version is a miss too. */
    value[4] = 2;
    r = redisCommand(f->c, "SET t:e:%016llx %b", (unsigned long long)plain_v->hash, value,
                     value_len);
    freeReplyObject(r);
    assert_null(l2_lookup(f, "example.com\n/v\n", wants_gzip, &generation));
    free(value);

    cache_entry_unref(plain_v);
    cache_entry_unref(gz2);
    cache_entry_unref(gz);
    cache_entry_unref(br);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_field),
        cmocka_unit_test(test_round_trip_no_optional_field),
        cmocka_unit_test(test_round_trip_each_optional_field_alone),
        cmocka_unit_test(test_round_trip_empty_and_extreme),
        cmocka_unit_test(test_empty_body_slice_decodes_as_none),
        cmocka_unit_test(test_layout_is_as_documented),
        cmocka_unit_test(test_malformed_refused_by_both_sides),
        cmocka_unit_test(test_edge_values_accepted),
        cmocka_unit_test(test_trailing_bytes_refused),
        cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_flipped_bytes),
        cmocka_unit_test(test_other_versions_are_not_supported),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_matches),
        cmocka_unit_test(test_vary_record),
        cmocka_unit_test(test_redis_keys),
        cmocka_unit_test_setup_teardown(test_scheme_against_redis, redis_setup, redis_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
