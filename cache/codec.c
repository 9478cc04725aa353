/* Cache entries as Redis values. Encoder and decoder share one validation of the plain
 * values (struct entry_view), so what one writes the other accepts, and what the decoder
 * accepts re-encodes to the same bytes. */
#include "cache/codec.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "proxy/http1.h"

#define MAGIC "RSCE"
#define MAGIC_LEN 4
#define HEADER_LEN (MAGIC_LEN + 2 + 1) /* magic, version, kind */
#define ABSENT UINT32_MAX              /* string length of an absent string */
#define ENTRY_FIXED_LEN (2 + 4 + 6 * 8) /* status, flags, six times */
#define KNOWN_FLAGS ((uint32_t)(CACHE_ENTRY_MUST_REVALIDATE | CACHE_ENTRY_NO_CACHE))

/* data NULL: absent. */
struct span {
    const char *data;
    size_t len;
};

/* An entry as plain values: what is encoded, and what a decode checks before it
 * allocates. head and body point into the entry's slices or the decoded buffer. */
struct entry_view {
    uint16_t status;
    uint32_t flags;
    int64_t response_time, initial_age, lifetime, stale_while_revalidate, stale_if_error,
        last_modified;
    struct span key, vary, variant, tags, etag;
    struct span head, body; /* body.len 0: none */
};

/* ---- validation ---------------------------------------------------------------------- */

static bool has_nul(struct span s)
{
    return s.len > 0 && memchr(s.data, '\0', s.len) != NULL;
}

/* HTAB, SP, VCHAR, obs-text (RFC 9110 §5.5). */
static bool is_value_byte(char c)
{
    unsigned char u = (unsigned char)c;
    return u == '\t' || (u >= 0x20 && u != 0x7f);
}

static bool is_value(struct span s)
{
    for (size_t i = 0; i < s.len; i++)
        if (!is_value_byte(s.data[i]))
            return false;
    return true;
}

/* tchar (RFC 9110 §5.6.2). */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool crlf_at(const char *h, size_t len, size_t p)
{
    return p + 1 < len && h[p] == '\r' && h[p + 1] == '\n';
}

/* A Content-Length value (OWS around digits) equal to want. */
static bool content_length_is(const char *v, size_t len, uint64_t want)
{
    while (len > 0 && (v[0] == ' ' || v[0] == '\t'))
        v++, len--;
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len == 0)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(v[i]))
            return false;
        n = n * 10 + (uint64_t)(v[i] - '0');
        if (n > want) /* also stops before n can overflow */
            return false;
    }
    return n == want;
}

/* The head as entry.h describes it; the framing fields must agree with the body. */
static const char *check_head(struct span head, unsigned status, size_t body_len)
{
    static const char version[] = "HTTP/1.1 ";
    const char *h = head.data;
    size_t len = head.len;
    size_t p = sizeof(version) - 1;
    if (len < p + 3 || memcmp(h, version, p) != 0 || !is_digit(h[p]) || !is_digit(h[p + 1]) ||
        !is_digit(h[p + 2]))
        return "head: bad status line";
    if ((unsigned)((h[p] - '0') * 100 + (h[p + 1] - '0') * 10 + (h[p + 2] - '0')) != status)
        return "head: status differs";
    p += 3;
    if (p < len && h[p] == ' ')
        for (p++; p < len && is_value_byte(h[p]);)
            p++;
    if (!crlf_at(h, len, p))
        return "head: bad status line";
    p += 2;

    bool content_length = false;
    while (p < len) {
        struct http1_header f = {.name = h + p};
        while (p < len && is_tchar(h[p]))
            p++;
        f.name_len = (size_t)(h + p - f.name);
        if (f.name_len == 0 || p == len || h[p] != ':')
            return "head: bad field name";
        f.value = h + ++p;
        while (p < len && is_value_byte(h[p]))
            p++;
        f.value_len = (size_t)(h + p - f.value);
        if (!crlf_at(h, len, p))
            return "head: bad field value";
        p += 2;
        if (http1_name_is(&f, "content-length")) {
            if (content_length || !content_length_is(f.value, f.value_len, body_len))
                return "head: content-length differs from the body";
            content_length = true;
        } else if (http1_name_is(&f, "transfer-encoding")) {
            return "head: transfer-encoding";
        } else if (http1_name_is(&f, "age")) {
            return "head: age";
        }
    }
    return NULL;
}

static bool time_ok(int64_t t)
{
    return t >= 0 && t <= CACHE_CODEC_MAX_SECONDS;
}

static const char *check_view(const struct entry_view *v)
{
    if (v->key.data == NULL)
        return "no key";
    if (has_nul(v->key) || has_nul(v->variant))
        return "NUL in key or variant";
    if (!is_value(v->vary) || !is_value(v->tags) || !is_value(v->etag))
        return "control byte in vary, tags or etag";
    if ((v->vary.data == NULL) != (v->variant.data == NULL))
        return "vary and variant disagree";
    if (v->status < 100 || v->status > 599)
        return "status out of range";
    if ((v->flags & ~KNOWN_FLAGS) != 0)
        return "unknown flags";
    if (!time_ok(v->response_time) || !time_ok(v->initial_age) ||
        !time_ok(v->stale_while_revalidate) || !time_ok(v->stale_if_error) ||
        (v->last_modified != -1 && !time_ok(v->last_modified)) ||
        v->lifetime < -CACHE_CODEC_MAX_SECONDS || v->lifetime > CACHE_CODEC_MAX_SECONDS)
        return "time out of range";
    return check_head(v->head, v->status, v->body.len);
}

/* ---- entries ----------------------------------------------------------------------- */

static struct span cstr(const char *s)
{
    return (struct span){s, s != NULL ? strlen(s) : 0};
}

static struct span bytes_or_absent(const char *s, size_t len)
{
    return (struct span){s, s != NULL ? len : 0};
}

static const char *view_entry(const struct cache_entry *e, struct entry_view *v)
{
    if (e->head == NULL)
        return "no head";
    *v = (struct entry_view){
        .status = e->status,
        .flags = e->flags,
        .response_time = e->response_time,
        .initial_age = e->initial_age,
        .lifetime = e->lifetime,
        .stale_while_revalidate = e->stale_while_revalidate,
        .stale_if_error = e->stale_if_error,
        .last_modified = e->last_modified,
        .key = bytes_or_absent(e->key, e->key_len),
        .vary = cstr(e->vary),
        .variant = bytes_or_absent(e->variant, e->variant_len),
        .tags = cstr(e->tags),
        .etag = cstr(e->etag),
        .head = {e->head->data, e->head->len},
    };
    if (e->body != NULL)
        v->body = (struct span){e->body->data, e->body->len};
    /* A length of ABSENT could not be told from an absent string. */
    if (v->vary.len >= ABSENT || v->tags.len >= ABSENT || v->etag.len >= ABSENT ||
        v->key.len >= ABSENT || v->variant.len >= ABSENT)
        return "string too long";
    return check_view(v);
}

const char *cache_codec_check(const struct cache_entry *e)
{
    struct entry_view v;
    return view_entry(e, &v);
}

static char *put_u16(char *p, uint16_t v)
{
    p[0] = (char)(v & 0xff);
    p[1] = (char)(v >> 8);
    return p + 2;
}

static char *put_u32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)((v >> (8 * i)) & 0xff);
    return p + 4;
}

static char *put_u64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (char)((v >> (8 * i)) & 0xff);
    return p + 8;
}

static char *put_bytes(char *p, struct span s)
{
    if (s.len > 0)
        memcpy(p, s.data, s.len);
    return p + s.len;
}

static char *put_string(char *p, struct span s)
{
    p = put_u32(p, s.data != NULL ? (uint32_t)s.len : ABSENT);
    return put_bytes(p, s);
}

static char *put_header(char *p, enum cache_codec_kind kind)
{
    memcpy(p, MAGIC, MAGIC_LEN);
    p = put_u16(p + MAGIC_LEN, CACHE_CODEC_VERSION);
    *p = (char)kind;
    return p + 1;
}

int cache_codec_encode(const struct cache_entry *e, char **out, size_t *len)
{
    struct entry_view v;
    if (view_entry(e, &v) != NULL)
        return -EINVAL;
    /* Each part is below 4 GiB: the sum fits in 64 bits, not always in a size_t. */
    uint64_t total = HEADER_LEN + ENTRY_FIXED_LEN + 5 * 4 + (uint64_t)v.key.len + v.vary.len +
                     v.variant.len + v.tags.len + v.etag.len + 4 + v.head.len + 4 + v.body.len;
    char *buf = total <= SIZE_MAX ? malloc((size_t)total) : NULL;
    if (buf == NULL)
        return -ENOMEM;
    char *p = put_header(buf, CACHE_CODEC_ENTRY);
    p = put_u16(p, v.status);
    p = put_u32(p, v.flags);
    p = put_u64(p, (uint64_t)v.response_time);
    p = put_u64(p, (uint64_t)v.initial_age);
    p = put_u64(p, (uint64_t)v.lifetime);
    p = put_u64(p, (uint64_t)v.stale_while_revalidate);
    p = put_u64(p, (uint64_t)v.stale_if_error);
    p = put_u64(p, (uint64_t)v.last_modified);
    p = put_string(p, v.key);
    p = put_string(p, v.vary);
    p = put_string(p, v.variant);
    p = put_string(p, v.tags);
    p = put_string(p, v.etag);
    p = put_u32(p, (uint32_t)v.head.len);
    p = put_bytes(p, v.head);
    p = put_u32(p, (uint32_t)v.body.len);
    p = put_bytes(p, v.body);
    *out = buf;
    *len = (size_t)(p - buf);
    return 0;
}

/* A cursor over untrusted bytes: every read checks what is left. */
struct reader {
    const unsigned char *p;
    size_t left;
};

static bool get_u16(struct reader *r, uint16_t *v)
{
    if (r->left < 2)
        return false;
    *v = (uint16_t)(r->p[0] | r->p[1] << 8);
    r->p += 2;
    r->left -= 2;
    return true;
}

static bool get_u32(struct reader *r, uint32_t *v)
{
    if (r->left < 4)
        return false;
    *v = 0;
    for (int i = 3; i >= 0; i--)
        *v = *v << 8 | r->p[i];
    r->p += 4;
    r->left -= 4;
    return true;
}

static bool get_u64(struct reader *r, uint64_t *v)
{
    if (r->left < 8)
        return false;
    *v = 0;
    for (int i = 7; i >= 0; i--)
        *v = *v << 8 | r->p[i];
    r->p += 8;
    r->left -= 8;
    return true;
}

static bool get_i64(struct reader *r, int64_t *v)
{
    uint64_t u;
    if (!get_u64(r, &u))
        return false;
    /* Two's complement by value: the conversion of an unsigned over INT64_MAX to int64_t
     * is implementation-defined. */
    *v = u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
    return true;
}

static bool get_bytes(struct reader *r, size_t len, struct span *s)
{
    if (r->left < len)
        return false;
    *s = (struct span){(const char *)r->p, len};
    r->p += len;
    r->left -= len;
    return true;
}

static bool get_string(struct reader *r, struct span *s)
{
    uint32_t len;
    if (!get_u32(r, &len))
        return false;
    if (len == ABSENT) {
        *s = (struct span){NULL, 0};
        return true;
    }
    return get_bytes(r, len, s);
}

static int fail(const char **why, const char *reason, int err)
{
    if (why != NULL)
        *why = reason;
    return err;
}

int cache_codec_kind(const char *buf, size_t len, const char **why)
{
    if (len < MAGIC_LEN || memcmp(buf, MAGIC, MAGIC_LEN) != 0)
        return fail(why, "not a cache value", -EINVAL);
    if (len < HEADER_LEN)
        return fail(why, "truncated", -EINVAL);
    const unsigned char *p = (const unsigned char *)buf + MAGIC_LEN;
    /* Checked before the kind: another version may have other kinds. */
    if ((p[0] | p[1] << 8) != CACHE_CODEC_VERSION)
        return fail(why, "another format version", -EPROTONOSUPPORT);
    if (p[2] != CACHE_CODEC_ENTRY && p[2] != CACHE_CODEC_VARY)
        return fail(why, "unknown kind", -EINVAL);
    return p[2];
}

/* Read the entry after the header into v; the spans point into the reader's buffer. */
static const char *read_entry(struct reader *r, size_t max_body, struct entry_view *v, int *err)
{
    uint32_t head_len, body_len;
    *err = -EINVAL;
    if (!get_u16(r, &v->status) || !get_u32(r, &v->flags) || !get_i64(r, &v->response_time) ||
        !get_i64(r, &v->initial_age) || !get_i64(r, &v->lifetime) ||
        !get_i64(r, &v->stale_while_revalidate) || !get_i64(r, &v->stale_if_error) ||
        !get_i64(r, &v->last_modified) || !get_string(r, &v->key) ||
        !get_string(r, &v->vary) || !get_string(r, &v->variant) || !get_string(r, &v->tags) ||
        !get_string(r, &v->etag) || !get_u32(r, &head_len) || !get_bytes(r, head_len, &v->head) ||
        !get_u32(r, &body_len))
        return "truncated";
    if (body_len > max_body) {
        *err = -E2BIG;
        return "body over the limit";
    }
    if (!get_bytes(r, body_len, &v->body))
        return "truncated";
    if (r->left != 0)
        return "trailing bytes";
    return check_view(v);
}

static char *copy_string(struct span s)
{
    char *c = malloc(s.len + 1);
    if (c != NULL) {
        if (s.len > 0)
            memcpy(c, s.data, s.len);
        c[s.len] = '\0';
    }
    return c;
}

/* Fill e from a checked view. Returns 0 or -ENOMEM, leaving what it allocated in e. */
static int fill_entry(struct cache_entry *e, const struct entry_view *v)
{
    e->status = v->status;
    e->flags = v->flags;
    e->response_time = v->response_time;
    e->initial_age = v->initial_age;
    e->lifetime = v->lifetime;
    e->stale_while_revalidate = v->stale_while_revalidate;
    e->stale_if_error = v->stale_if_error;
    e->last_modified = v->last_modified;
    if (cache_entry_set_key(e, v->key.data, v->key.len) < 0)
        return -ENOMEM;
    if ((v->vary.data != NULL && (e->vary = copy_string(v->vary)) == NULL) ||
        (v->variant.data != NULL && (e->variant = copy_string(v->variant)) == NULL) ||
        (v->tags.data != NULL && (e->tags = copy_string(v->tags)) == NULL) ||
        (v->etag.data != NULL && (e->etag = copy_string(v->etag)) == NULL))
        return -ENOMEM;
    e->variant_len = (uint32_t)v->variant.len;
    if ((e->head = slice_copy(v->head.data, v->head.len)) == NULL)
        return -ENOMEM;
    if (v->body.len > 0 && (e->body = slice_copy(v->body.data, v->body.len)) == NULL)
        return -ENOMEM;
    return 0;
}

int cache_codec_decode(const char *buf, size_t len, size_t max_body, struct cache_entry **out,
                       const char **why)
{
    int kind = cache_codec_kind(buf, len, why);
    if (kind < 0)
        return kind;
    if (kind != CACHE_CODEC_ENTRY)
        return fail(why, "not an entry", -EINVAL);
    struct reader r = {(const unsigned char *)buf + HEADER_LEN, len - HEADER_LEN};
    struct entry_view v = {0};
    int err;
    const char *reason = read_entry(&r, max_body, &v, &err);
    if (reason != NULL)
        return fail(why, reason, err);

    struct cache_entry *e = cache_entry_new();
    if (e == NULL)
        return fail(why, "out of memory", -ENOMEM);
    if (fill_entry(e, &v) < 0) {
        cache_entry_unref(e);
        return fail(why, "out of memory", -ENOMEM);
    }
    cache_entry_finish(e);
    *out = e;
    return 0;
}

bool cache_codec_key_matches(const struct cache_entry *e, const char *key, size_t key_len)
{
    return e->key != NULL && e->key_len == key_len &&
           (key_len == 0 || memcmp(e->key, key, key_len) == 0);
}

bool cache_codec_variant_matches(const struct cache_entry *e, const char *variant,
                                 size_t variant_len)
{
    if (variant == NULL || e->variant == NULL)
        return variant == NULL && e->variant == NULL;
    return e->variant_len == variant_len &&
           (variant_len == 0 || memcmp(e->variant, variant, variant_len) == 0);
}

/* ---- vary records ------------------------------------------------------------------ */

static const char *check_vary(struct span key, struct span names)
{
    if (key.data == NULL || names.data == NULL)
        return "no key or names";
    if (has_nul(key))
        return "NUL in key";
    if (!is_value(names))
        return "control byte in names";
    return NULL;
}

int cache_codec_encode_vary(const char *key, size_t key_len, const char *names,
                            size_t names_len, uint64_t generation, char **out, size_t *len)
{
    struct span k = {key, key_len}, n = {names, names_len};
    if (key_len >= ABSENT || names_len >= ABSENT || check_vary(k, n) != NULL)
        return -EINVAL;
    uint64_t total = HEADER_LEN + 8 + 4 + (uint64_t)key_len + 4 + names_len;
    char *buf = total <= SIZE_MAX ? malloc((size_t)total) : NULL;
    if (buf == NULL)
        return -ENOMEM;
    char *p = put_header(buf, CACHE_CODEC_VARY);
    p = put_u64(p, generation);
    p = put_string(p, k);
    p = put_string(p, n);
    *out = buf;
    *len = (size_t)(p - buf);
    return 0;
}

int cache_codec_decode_vary(const char *buf, size_t len, struct cache_codec_vary *out,
                            const char **why)
{
    int kind = cache_codec_kind(buf, len, why);
    if (kind < 0)
        return kind;
    if (kind != CACHE_CODEC_VARY)
        return fail(why, "not a vary record", -EINVAL);
    struct reader r = {(const unsigned char *)buf + HEADER_LEN, len - HEADER_LEN};
    uint64_t generation;
    struct span key, names;
    if (!get_u64(&r, &generation) || !get_string(&r, &key) || !get_string(&r, &names))
        return fail(why, "truncated", -EINVAL);
    if (r.left != 0)
        return fail(why, "trailing bytes", -EINVAL);
    const char *reason = check_vary(key, names);
    if (reason != NULL)
        return fail(why, reason, -EINVAL);
    *out = (struct cache_codec_vary){
        .generation = generation,
        .key = key.data,
        .key_len = key.len,
        .names = names.data,
        .names_len = names.len,
    };
    return 0;
}

uint64_t cache_codec_new_generation(void)
{
    uint64_t g;
    if (getrandom(&g, sizeof(g), GRND_NONBLOCK) == (ssize_t)sizeof(g))
        return g;
    /* Only before the kernel's pool is seeded, early in boot: unique enough. */
    static _Atomic uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed[4] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)getpid(),
                        atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed)};
    return XXH3_64bits(seed, sizeof(seed));
}

/* ---- keys -------------------------------------------------------------------------- */

static char *put_hex(char *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        p[i] = digits[v & 0xf];
    return p + 16;
}

int cache_codec_redis_key(const char *ns, uint64_t key_hash, uint64_t generation,
                          const char *variant, size_t variant_len, char *out, size_t cap)
{
    size_t ns_len = strlen(ns);
    size_t len = ns_len + 3 + 16 + (variant != NULL ? 1 + 16 : 0);
    if (len >= cap || len > INT32_MAX)
        return -1;
    memcpy(out, ns, ns_len);
    memcpy(out + ns_len, ":e:", 3);
    char *p = put_hex(out + ns_len + 3, key_hash);
    if (variant != NULL) {
        *p++ = ':';
        p = put_hex(p, XXH3_64bits_withSeed(variant, variant_len, generation));
    }
    *p = '\0';
    return (int)len;
}
