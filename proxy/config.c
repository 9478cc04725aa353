/* ringside.yaml loader.
 *
 * Two passes, as h2o's yoml and nginx do it: libyaml events become a small tree of
 * nodes that remember their line:column, then a table-driven walk maps the tree onto
 * struct cfg, which starts out filled with defaults. Checks that involve several keys
 * run last. The first error stops the load; nothing here logs or exits. */
#include "proxy/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "proxy/http1.h"

#define CFG_MAX_FILE_BYTES (4u << 20)
#define CFG_MAX_DEPTH 32       /* the schema needs 5; bounds recursion on hostile input */
#define CFG_MAX_ROUTES 1024
#define CFG_MAX_WORKERS 1024
#define CFG_MAX_ROUTE_NAME 128
#define CFG_MAX_PREFIX 1024
#define CFG_MAX_ENV_NAME 128
#define MS_PER_DAY (24ull * 3600 * 1000)

/* ---- the node tree ---------------------------------------------------------------- */

enum node_type { NODE_SCALAR, NODE_MAPPING, NODE_SEQUENCE };

struct node {
    enum node_type type;
    yaml_scalar_style_t style;
    unsigned line, column;         /* 1-based */
    unsigned end_line, end_column; /* scalars: just past the text, 1-based */
    char *text;                    /* scalars: NUL-terminated, but may hold NULs ("\0") */
    size_t len;
    struct node **kids;            /* mapping: key, value, key, value...; sequence: items */
    size_t num_kids, cap_kids;
};

static void node_free(struct node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->num_kids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n);
}

static int node_add_kid(struct node *parent, struct node *kid)
{
    if (parent->num_kids == parent->cap_kids) {
        size_t cap = parent->cap_kids ? parent->cap_kids * 2 : 8;
        struct node **kids = realloc(parent->kids, cap * sizeof(*kids));
        if (kids == NULL)
            return -1;
        parent->kids = kids;
        parent->cap_kids = cap;
    }
    parent->kids[parent->num_kids++] = kid;
    return 0;
}

static bool node_is_key(const struct node *n, const char *key)
{
    return n->type == NODE_SCALAR && n->len == strlen(key) && memcmp(n->text, key, n->len) == 0;
}

/* The value under key in a mapping, or NULL. Keys are unique once the walk passed. */
static const struct node *node_get(const struct node *map, const char *key)
{
    if (map == NULL || map->type != NODE_MAPPING)
        return NULL;
    for (size_t i = 0; i + 1 < map->num_kids; i += 2)
        if (node_is_key(map->kids[i], key))
            return map->kids[i + 1];
    return NULL;
}

/* ---- loader state and errors -------------------------------------------------------- */

struct loader {
    const char *name; /* file name for messages */
    const char *input;
    size_t input_len;
    char *err;
    size_t err_len;
    bool failed;
    char path[256]; /* key path of the node being read, e.g. "routes[2].match.prefix" */
    size_t path_len;
    char *scratch; /* the current scalar after ${} expansion */
    size_t scratch_len, scratch_cap;
    struct cfg *cfg;
};

static void vreport(struct loader *ld, unsigned line, unsigned column, bool with_path,
                    const char *fmt, va_list ap)
{
    if (ld->failed)
        return;
    ld->failed = true;
    if (ld->err == NULL || ld->err_len == 0)
        return;
    int n;
    if (line > 0)
        n = snprintf(ld->err, ld->err_len, "%s:%u:%u: ", ld->name, line, column);
    else
        n = snprintf(ld->err, ld->err_len, "%s: ", ld->name);
    if (n < 0 || (size_t)n >= ld->err_len)
        return;
    if (with_path && ld->path_len > 0) {
        int m = snprintf(ld->err + n, ld->err_len - (size_t)n, "%s: ", ld->path);
        if (m < 0 || (size_t)m >= ld->err_len - (size_t)n)
            return;
        n += m;
    }
    vsnprintf(ld->err + n, ld->err_len - (size_t)n, fmt, ap);
}

/* An error at a position, the message standing alone. Returns -1. */
__attribute__((format(printf, 4, 5))) static int
fail_at(struct loader *ld, unsigned line, unsigned column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ld, line, column, false, fmt, ap);
    va_end(ap);
    return -1;
}

/* An error about node, prefixed with the current key path. Returns -1. */
__attribute__((format(printf, 3, 4))) static int fail(struct loader *ld, const struct node *n,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ld, n ? n->line : 0, n ? n->column : 0, true, fmt, ap);
    va_end(ap);
    return -1;
}

static int fail_oom(struct loader *ld)
{
    return fail_at(ld, 0, 0, "out of memory");
}

/* Appends ".key" (or "[index]") to the path; returns the length to restore. */
__attribute__((format(printf, 2, 3))) static size_t path_push(struct loader *ld,
                                                             const char *fmt, ...)
{
    size_t saved = ld->path_len;
    size_t room = sizeof(ld->path) - ld->path_len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ld->path + ld->path_len, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    ld->path_len += (size_t)n < room ? (size_t)n : room - 1;
    return saved;
}

/* Keys come from the file: keep the message on one line and short. */
static size_t path_push_key(struct loader *ld, const char *key, size_t len)
{
    char shown[65];
    size_t n = len < sizeof(shown) - 1 ? len : sizeof(shown) - 1;
    for (size_t i = 0; i < n; i++)
        shown[i] = key[i] >= 0x20 && key[i] < 0x7f ? key[i] : '?';
    shown[n] = '\0';
    return path_push(ld, "%s%s", ld->path_len ? "." : "", shown);
}

static void path_pop(struct loader *ld, size_t saved)
{
    ld->path_len = saved;
    ld->path[saved] = '\0';
}

static void path_set(struct loader *ld, const char *path)
{
    path_pop(ld, 0);
    path_push(ld, "%s", path);
}

/* s quoted for a message: escapes what is not printable ASCII, cuts long values. */
static const char *quote(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 8 >= cap) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, cap - o, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

#define QUOTE_MAX 80

static const char *kind_name(const struct node *n)
{
    return n->type == NODE_MAPPING ? "a mapping" : "a list";
}

/* "expected WHAT, got ..." about value, whose expanded text is s (NULL: not a scalar). */
static int fail_expected(struct loader *ld, const struct node *n, const char *what,
                         const char *s, const char *note)
{
    char q[QUOTE_MAX];
    if (n->type != NODE_SCALAR)
        return fail(ld, n, "expected %s, got %s", what, kind_name(n));
    if (s == NULL)
        s = n->text;
    if (*s == '\0' && n->style == YAML_PLAIN_SCALAR_STYLE)
        return fail(ld, n, "expected %s, got an empty value", what);
    return fail(ld, n, "expected %s, got %s%s", what, quote(s, strlen(s), q, sizeof(q)),
                note ? note : "");
}

/* ---- YAML events to nodes ----------------------------------------------------------- */

/* 1-based line:column of a byte offset, for libyaml reader errors that only give one. */
static void offset_position(const struct loader *ld, size_t offset, unsigned *line,
                            unsigned *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < offset && i < ld->input_len; i++) {
        unsigned char c = (unsigned char)ld->input[i];
        if (c == '\n') {
            ++*line;
            *column = 1;
        } else if ((c & 0xc0) != 0x80) {
            ++*column;
        }
    }
}

static int fail_yaml(struct loader *ld, const yaml_parser_t *p)
{
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return fail_oom(ld);
    case YAML_READER_ERROR: {
        unsigned line, column;
        offset_position(ld, p->problem_offset, &line, &column);
        if (p->problem_value != -1)
            return fail_at(ld, line, column, "invalid input: %s (byte 0x%02x)", p->problem,
                           (unsigned)p->problem_value & 0xffu);
        return fail_at(ld, line, column, "invalid input: %s", p->problem);
    }
    default:
        break;
    }
    const char *problem = p->problem ? p->problem : "malformed document";
    unsigned line = (unsigned)p->problem_mark.line + 1;
    unsigned column = (unsigned)p->problem_mark.column + 1;
    if (p->context != NULL)
        return fail_at(ld, line, column, "YAML syntax error: %s (%s at line %u, column %u)",
                       problem, p->context, (unsigned)p->context_mark.line + 1,
                       (unsigned)p->context_mark.column + 1);
    return fail_at(ld, line, column, "YAML syntax error: %s", problem);
}

static struct node *node_new(enum node_type type, const yaml_mark_t *start)
{
    struct node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->type = type;
    n->line = (unsigned)start->line + 1;
    n->column = (unsigned)start->column + 1;
    return n;
}

/* Parses the whole input into *root (NULL for a stream without a document). */
static int build_tree(struct loader *ld, struct node **root)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct node *stack[CFG_MAX_DEPTH];
    size_t depth = 0;
    int documents = 0;
    int rc = -1;

    *root = NULL;
    if (!yaml_parser_initialize(&parser))
        return fail_oom(ld);
    yaml_parser_set_input_string(&parser, (const unsigned char *)ld->input, ld->input_len);

    for (;;) {
        if (!yaml_parser_parse(&parser, &ev)) {
            fail_yaml(ld, &parser);
            goto out;
        }
        struct node *n = NULL;
        bool opens = false;
        unsigned line = (unsigned)ev.start_mark.line + 1;
        unsigned column = (unsigned)ev.start_mark.column + 1;

        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            yaml_event_delete(&ev);
            rc = 0;
            goto out;
        case YAML_DOCUMENT_START_EVENT:
            if (++documents > 1) {
                fail_at(ld, line, column, "only one YAML document is allowed");
                goto fail_event;
            }
            break;
        case YAML_ALIAS_EVENT:
            fail_at(ld, line, column, "YAML aliases (*%s) are not supported; write the value out",
                    (const char *)ev.data.alias.anchor);
            goto fail_event;
        case YAML_SCALAR_EVENT:
            n = node_new(NODE_SCALAR, &ev.start_mark);
            if (n == NULL)
                goto fail_oom_event;
            n->style = ev.data.scalar.style;
            n->end_line = (unsigned)ev.end_mark.line + 1;
            n->end_column = (unsigned)ev.end_mark.column + 1;
            n->len = ev.data.scalar.length;
            n->text = malloc(n->len + 1);
            if (n->text == NULL) {
                node_free(n);
                goto fail_oom_event;
            }
            memcpy(n->text, ev.data.scalar.value, n->len);
            n->text[n->len] = '\0';
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth == CFG_MAX_DEPTH) {
                fail_at(ld, line, column, "nesting deeper than %d levels", CFG_MAX_DEPTH);
                goto fail_event;
            }
            n = node_new(ev.type == YAML_MAPPING_START_EVENT ? NODE_MAPPING : NODE_SEQUENCE,
                         &ev.start_mark);
            if (n == NULL)
                goto fail_oom_event;
            opens = true;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);

        if (n == NULL)
            continue;
        if (depth == 0) {
            if (*root != NULL) { /* libyaml allows one root per document; be defensive */
                node_free(n);
                fail_at(ld, line, column, "only one YAML document is allowed");
                goto out;
            }
            *root = n;
        } else if (node_add_kid(stack[depth - 1], n) != 0) {
            node_free(n);
            fail_oom(ld);
            goto out;
        }
        if (opens)
            stack[depth++] = n;
    }

fail_oom_event:
    fail_oom(ld);
fail_event:
    yaml_event_delete(&ev);
out:
    yaml_parser_delete(&parser);
    if (rc != 0) {
        node_free(*root);
        *root = NULL;
    }
    return rc;
}

/* ---- scalars and ${ENV} ----------------------------------------------------------------- */

static int scratch_append(struct loader *ld, const char *s, size_t len)
{
    if (ld->scratch_len + len + 1 > ld->scratch_cap) {
        size_t cap = ld->scratch_cap ? ld->scratch_cap : 64;
        while (cap < ld->scratch_len + len + 1)
            cap *= 2;
        char *p = realloc(ld->scratch, cap);
        if (p == NULL)
            return fail_oom(ld);
        ld->scratch = p;
        ld->scratch_cap = cap;
    }
    memcpy(ld->scratch + ld->scratch_len, s, len);
    ld->scratch_len += len;
    ld->scratch[ld->scratch_len] = '\0';
    return 0;
}

static unsigned utf8_chars(const char *s, size_t len)
{
    unsigned n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

/* Column of byte offset off inside a scalar, when the source shows the text verbatim on
 * one line; else the scalar's own column. */
static unsigned scalar_column_at(const struct node *n, size_t off)
{
    if (n->end_line != n->line)
        return n->column;
    unsigned chars = utf8_chars(n->text, n->len);
    unsigned width = n->end_column - n->column;
    if (n->style == YAML_PLAIN_SCALAR_STYLE && width == chars)
        return n->column + utf8_chars(n->text, off);
    bool quoted = n->style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                  n->style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    if (quoted && width == chars + 2)
        return n->column + 1 + utf8_chars(n->text, off);
    return n->column;
}

__attribute__((format(printf, 4, 5))) static int
fail_in_scalar(struct loader *ld, const struct node *n, size_t off, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ld, n->line, scalar_column_at(n, off), true, fmt, ap);
    va_end(ap);
    return -1;
}

static bool env_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > CFG_MAX_ENV_NAME || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

/* Expands ${NAME}, ${NAME:-default} and $$ in n's text into ld->scratch. The default is
 * taken literally and values are not expanded again, so the result is predictable. */
static int expand(struct loader *ld, const struct node *n)
{
    const char *t = n->text;
    ld->scratch_len = 0;
    if (scratch_append(ld, "", 0) != 0)
        return -1;
    for (size_t i = 0; i < n->len;) {
        const char *dollar = memchr(t + i, '$', n->len - i);
        size_t plain = dollar ? (size_t)(dollar - (t + i)) : n->len - i;
        if (scratch_append(ld, t + i, plain) != 0)
            return -1;
        i += plain;
        if (dollar == NULL)
            break;
        if (i + 1 < n->len && t[i + 1] == '$') {
            if (scratch_append(ld, "$", 1) != 0)
                return -1;
            i += 2;
            continue;
        }
        if (!(i + 1 < n->len && t[i + 1] == '{')) {
            if (scratch_append(ld, "$", 1) != 0) /* a lone $ stays as written */
                return -1;
            i++;
            continue;
        }
        const char *body = t + i + 2;
        const char *close = memchr(body, '}', n->len - (i + 2));
        if (close == NULL)
            return fail_in_scalar(ld, n, i, "unterminated \"${\" (write $$ for a literal $)");
        size_t body_len = (size_t)(close - body);
        const char *sep = NULL;
        for (size_t k = 0; k + 1 < body_len; k++)
            if (body[k] == ':' && body[k + 1] == '-') {
                sep = body + k;
                break;
            }
        size_t name_len = sep ? (size_t)(sep - body) : body_len;
        if (!env_name_ok(body, name_len)) {
            char q[QUOTE_MAX];
            return fail_in_scalar(ld, n, i, "invalid environment variable name %s in ${...}",
                                  quote(body, name_len, q, sizeof(q)));
        }
        char name[CFG_MAX_ENV_NAME + 1];
        memcpy(name, body, name_len);
        name[name_len] = '\0';
        const char *value = getenv(name);
        size_t value_len = value ? strlen(value) : 0;
        if (sep != NULL && value_len == 0) {
            value = sep + 2;
            value_len = (size_t)(close - value);
        } else if (value == NULL) {
            return fail_in_scalar(ld, n, i,
                                  "environment variable %s is not set (write ${%s:-default} to "
                                  "give a default)",
                                  name, name);
        }
        if (scratch_append(ld, value, value_len) != 0)
            return -1;
        i = (size_t)(close - t) + 1;
    }
    return 0;
}

/* The expanded text of a scalar (valid until the next call), or NULL after reporting
 * that n is not a scalar of the expected kind. */
static const char *scalar(struct loader *ld, const struct node *n, const char *what)
{
    if (n->type != NODE_SCALAR || (n->len == 0 && n->style == YAML_PLAIN_SCALAR_STYLE)) {
        fail_expected(ld, n, what, NULL, NULL);
        return NULL;
    }
    if (expand(ld, n) != 0)
        return NULL;
    if (strlen(ld->scratch) != ld->scratch_len) {
        fail(ld, n, "contains a NUL character");
        return NULL;
    }
    return ld->scratch;
}

/* ---- value parsers ------------------------------------------------------------------------ */

struct unit {
    const char *suffix;
    uint64_t factor;
};

static const struct unit duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {NULL, 0}};

static const struct unit size_units[] = {
    {"B", 1},           {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
    {"kB", 1000},       {"MB", 1000000},     {"GB", 1000000000},  {NULL, 0}};

enum { PARSE_OK = 0, PARSE_BAD = -1, PARSE_TOO_LARGE = -2 };

/* "<digits>[.<digits>]<unit>" with an exact integer result. A bare number is taken in
 * the first unit when bare_ok, and must be an integer. */
static int parse_with_unit(const char *s, const struct unit *units, bool bare_ok, uint64_t *out)
{
    uint64_t whole = 0, frac = 0, scale = 1;
    const char *p = s;
    bool overflow = false;

    if (*p < '0' || *p > '9')
        return PARSE_BAD;
    for (; *p >= '0' && *p <= '9'; p++)
        if (__builtin_mul_overflow(whole, 10, &whole) ||
            __builtin_add_overflow(whole, (uint64_t)(*p - '0'), &whole))
            overflow = true;
    bool has_frac = *p == '.';
    if (has_frac) {
        p++;
        if (*p < '0' || *p > '9')
            return PARSE_BAD;
        for (int digits = 0; *p >= '0' && *p <= '9'; p++, digits++) {
            if (digits == 9)
                return PARSE_BAD;
            frac = frac * 10 + (uint64_t)(*p - '0');
            scale *= 10;
        }
    }
    uint64_t factor = 0;
    if (*p == '\0') {
        if (!bare_ok || has_frac)
            return PARSE_BAD;
        factor = units[0].factor;
    } else {
        for (const struct unit *u = units; u->suffix != NULL; u++)
            if (strcmp(p, u->suffix) == 0)
                factor = u->factor;
        if (factor == 0)
            return PARSE_BAD;
    }
    if (overflow)
        return PARSE_TOO_LARGE;
    /* frac < 1e9 and factor < 2^31, so the product fits. */
    uint64_t frac_units = frac * factor;
    if (frac_units % scale != 0)
        return PARSE_BAD; /* not a whole millisecond or byte */
    uint64_t value;
    if (__builtin_mul_overflow(whole, factor, &value) ||
        __builtin_add_overflow(value, frac_units / scale, &value))
        return PARSE_TOO_LARGE;
    *out = value;
    return PARSE_OK;
}

static int parse_duration(const char *s, uint64_t *ms)
{
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return PARSE_OK;
    }
    return parse_with_unit(s, duration_units, false, ms);
}

int cfg_parse_duration(const char *s, uint64_t *ms)
{
    return s != NULL && parse_duration(s, ms) == PARSE_OK ? 0 : -1;
}

int cfg_parse_size(const char *s, uint64_t *bytes)
{
    return s != NULL && parse_with_unit(s, size_units, true, bytes) == PARSE_OK ? 0 : -1;
}

/* Decimal digits only: no sign, no spaces, no hex. */
static int parse_count(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    bool overflow = false;
    if (*s < '0' || *s > '9')
        return PARSE_BAD;
    for (; *s >= '0' && *s <= '9'; s++)
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            overflow = true;
    if (*s != '\0')
        return PARSE_BAD;
    if (overflow)
        return PARSE_TOO_LARGE;
    *out = v;
    return PARSE_OK;
}

/* RFC 1123 host name. A name whose last label is all digits is a mistyped IPv4 address. */
static bool hostname_ok(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    bool all_digits = true;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            if (i == len && all_digits)
                return false;
            label = 0;
            all_digits = true;
            continue;
        }
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && label > 0))
            return false;
        if (c < '0' || c > '9')
            all_digits = false;
        label++;
    }
    return true;
}

/* Parses s into addr; returns NULL or why s is not an address (addr then zeroed). */
static const char *parse_addr(const char *s, struct cfg_addr *addr)
{
    const char *host, *port;
    size_t host_len;
    bool bracketed = s[0] == '[';

    memset(addr, 0, sizeof(*addr));
    if (bracketed) {
        const char *end = strchr(s, ']');
        if (end == NULL)
            return "missing \"]\" after the IPv6 address";
        if (end[1] != ':')
            return "expected \":port\" after \"]\"";
        host = s + 1;
        host_len = (size_t)(end - host);
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL)
            return "expected host:port, e.g. 127.0.0.1:3000 or :8080; the port is missing";
        host = s;
        host_len = (size_t)(colon - s);
        if (memchr(host, ':', host_len) != NULL)
            return "IPv6 addresses must be in brackets, e.g. [::1]:8080";
        port = colon + 1;
    }

    uint64_t port_num;
    int rc = parse_count(port, &port_num);
    if (rc == PARSE_BAD)
        return "the port must be a number from 1 to 65535";
    if (rc == PARSE_TOO_LARGE || port_num > 65535)
        return "the port must be at most 65535";
    if (port_num == 0)
        return "port 0 is not allowed";

    char host_buf[256];
    if (host_len >= sizeof(host_buf))
        return "the host name is too long";
    if (host_len == 0) {
        if (bracketed)
            return "empty IPv6 address in brackets";
        strcpy(host_buf, "0.0.0.0");
    } else {
        memcpy(host_buf, host, host_len);
        host_buf[host_len] = '\0';
    }

    struct sockaddr_in *sin = (struct sockaddr_in *)&addr->sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&addr->sa;
    if (bracketed) {
        if (inet_pton(AF_INET6, host_buf, &sin6->sin6_addr) != 1)
            return "invalid IPv6 address in brackets";
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port_num);
        addr->sa_len = sizeof(*sin6);
        addr->resolved = true;
    } else if (inet_pton(AF_INET, host_buf, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port_num);
        addr->sa_len = sizeof(*sin);
        addr->resolved = true;
    } else if (!hostname_ok(host_buf, strlen(host_buf))) {
        memset(addr, 0, sizeof(*addr));
        return "invalid host: expected an IPv4 address, [IPv6] address or host name";
    }
    addr->port = (uint16_t)port_num;
    addr->text = strdup(s);
    addr->host = strdup(host_buf);
    if (addr->text == NULL || addr->host == NULL) {
        cfg_addr_free(addr);
        return "out of memory";
    }
    return NULL;
}

int cfg_parse_addr(const char *s, struct cfg_addr *addr)
{
    if (s == NULL) {
        memset(addr, 0, sizeof(*addr));
        return -1;
    }
    return parse_addr(s, addr) == NULL ? 0 : -1;
}

void cfg_addr_free(struct cfg_addr *addr)
{
    free(addr->text);
    free(addr->host);
    memset(addr, 0, sizeof(*addr));
}

/* "24h", "90s", "1500ms": the largest unit that divides ms exactly. */
static const char *format_duration(uint64_t ms, char *buf, size_t cap)
{
    const struct unit *best = &duration_units[0];
    for (const struct unit *u = duration_units; u->suffix != NULL; u++)
        if (ms % u->factor == 0)
            best = u;
    snprintf(buf, cap, "%llu%s", (unsigned long long)(ms / best->factor),
             ms == 0 ? "" : best->suffix);
    return buf;
}

static const char *format_size(uint64_t bytes, char *buf, size_t cap)
{
    static const struct unit binary[] = {
        {"GiB", 1ull << 30}, {"MiB", 1ull << 20}, {"KiB", 1ull << 10}};
    for (size_t i = 0; i < sizeof(binary) / sizeof(binary[0]); i++)
        if (bytes != 0 && bytes % binary[i].factor == 0) {
            snprintf(buf, cap, "%llu%s", (unsigned long long)(bytes / binary[i].factor),
                     binary[i].suffix);
            return buf;
        }
    snprintf(buf, cap, "%llu", (unsigned long long)bytes);
    return buf;
}

/* ---- the schema ---------------------------------------------------------------------- */

enum field_kind {
    F_SECTION,    /* a nested mapping described by .fields */
    F_ADDR,       /* struct cfg_addr */
    F_DURATION,   /* uint64_t ms */
    F_SIZE32,     /* uint32_t bytes */
    F_SIZE64,     /* uint64_t bytes */
    F_COUNT32,    /* uint32_t */
    F_BOOL,       /* bool */
    F_WORKERS,    /* uint32_t, "auto" sets cfg.workers_auto */
    F_IO_BACKEND, /* enum cfg_io_backend */
    F_LOG_LEVEL,  /* enum cfg_log_level */
    F_ROUTES,     /* struct cfg_route[] */
    F_ROUTE_NAME, /* char *, a metrics label */
    F_PREFIX,     /* char *, a path prefix */
    F_METHODS,    /* uint32_t bitmask */
};

struct field {
    const char *key;
    enum field_kind kind;
    size_t offset; /* into the struct being filled: struct cfg, or struct cfg_route */
    uint64_t min, max;
    bool required;
    const struct field *fields; /* F_SECTION */
};

#define CFG_OFF(member) offsetof(struct cfg, member)
#define ROUTE_OFF(member) offsetof(struct cfg_route, member)

static const struct field upstream_fields[] = {
    {"address", F_ADDR, CFG_OFF(upstream.address), 0, 0, true, NULL},
    {"connect_timeout", F_DURATION, CFG_OFF(upstream.connect_timeout), 1, MS_PER_DAY, false, NULL},
    {"response_timeout", F_DURATION, CFG_OFF(upstream.response_timeout), 1, MS_PER_DAY, false,
     NULL},
    {"idle_timeout", F_DURATION, CFG_OFF(upstream.idle_timeout), 1, MS_PER_DAY, false, NULL},
    {"pool_size", F_COUNT32, CFG_OFF(upstream.pool_size), 0, 100000, false, NULL},
    {"retry_idempotent", F_BOOL, CFG_OFF(upstream.retry_idempotent), 0, 0, false, NULL},
    {NULL, 0, 0, 0, 0, false, NULL}};

static const struct field metrics_fields[] = {
    {"listen", F_ADDR, CFG_OFF(metrics_listen), 0, 0, false, NULL},
    {NULL, 0, 0, 0, 0, false, NULL}};

static const struct field control_fields[] = {
    {"listen", F_ADDR, CFG_OFF(control_listen), 0, 0, false, NULL},
    {NULL, 0, 0, 0, 0, false, NULL}};

static const struct field limits_fields[] = {
    {"max_connections", F_COUNT32, CFG_OFF(limits.max_connections), 1, 10000000, false, NULL},
    {"max_request_line", F_SIZE32, CFG_OFF(limits.max_request_line), 16, 16u << 20, false, NULL},
    {"max_head", F_SIZE32, CFG_OFF(limits.max_head), 16, 16u << 20, false, NULL},
    {"max_headers", F_COUNT32, CFG_OFF(limits.max_headers), 1, 10000, false, NULL},
    {"max_chunk_ext", F_SIZE32, CFG_OFF(limits.max_chunk_ext), 0, 1u << 20, false, NULL},
    {"max_body", F_SIZE64, CFG_OFF(limits.max_body), 0, UINT64_MAX, false, NULL},
    {"max_output", F_SIZE32, CFG_OFF(limits.max_output), 4u << 10, 1u << 30, false, NULL},
    {"recv_buffers", F_COUNT32, CFG_OFF(limits.recv_buffers), 8, 32768, false, NULL},
    {"recv_buffer_size", F_SIZE32, CFG_OFF(limits.recv_buffer_size), 1u << 10, 1u << 20, false, NULL},
    {NULL, 0, 0, 0, 0, false, NULL}};

static const struct field timeouts_fields[] = {
    {"header", F_DURATION, CFG_OFF(timeouts.header), 1, MS_PER_DAY, false, NULL},
    {"idle", F_DURATION, CFG_OFF(timeouts.idle), 1, MS_PER_DAY, false, NULL},
    {"send", F_DURATION, CFG_OFF(timeouts.send), 1, MS_PER_DAY, false, NULL},
    /* 0 is meaningful here: close in-flight requests at once. */
    {"drain", F_DURATION, CFG_OFF(timeouts.drain), 0, MS_PER_DAY, false, NULL},
    {NULL, 0, 0, 0, 0, false, NULL}};

static const struct field log_fields[] = {
    {"level", F_LOG_LEVEL, CFG_OFF(log.level), 0, 0, false, NULL},
    {"access", F_BOOL, CFG_OFF(log.access), 0, 0, false, NULL},
    {NULL, 0, 0, 0, 0, false, NULL}};

static const struct field root_fields[] = {
    {"listen", F_ADDR, CFG_OFF(listen), 0, 0, false, NULL},
    {"workers", F_WORKERS, CFG_OFF(workers), 1, CFG_MAX_WORKERS, false, NULL},
    {"io_backend", F_IO_BACKEND, CFG_OFF(io_backend), 0, 0, false, NULL},
    {"upstream", F_SECTION, 0, 0, 0, true, upstream_fields},
    {"metrics", F_SECTION, 0, 0, 0, false, metrics_fields},
    {"control", F_SECTION, 0, 0, 0, false, control_fields},
    {"limits", F_SECTION, 0, 0, 0, false, limits_fields},
    {"timeouts", F_SECTION, 0, 0, 0, false, timeouts_fields},
    {"log", F_SECTION, 0, 0, 0, false, log_fields},
    {"routes", F_ROUTES, 0, 0, 0, false, NULL},
    {NULL, 0, 0, 0, 0, false, NULL}};

static const struct field match_fields[] = {
    {"prefix", F_PREFIX, ROUTE_OFF(prefix), 0, 0, false, NULL},
    {"methods", F_METHODS, ROUTE_OFF(methods), 0, 0, false, NULL},
    {NULL, 0, 0, 0, 0, false, NULL}};

static const struct field route_fields[] = {
    {"name", F_ROUTE_NAME, ROUTE_OFF(name), 0, 0, false, NULL},
    {"match", F_SECTION, 0, 0, 0, false, match_fields},
    {NULL, 0, 0, 0, 0, false, NULL}};

static const char *const method_names[HTTP1_METHOD_COUNT] = {
    [HTTP1_GET] = "GET",         [HTTP1_HEAD] = "HEAD",       [HTTP1_POST] = "POST",
    [HTTP1_PUT] = "PUT",         [HTTP1_DELETE] = "DELETE",   [HTTP1_PATCH] = "PATCH",
    [HTTP1_OPTIONS] = "OPTIONS", [HTTP1_CONNECT] = "CONNECT", [HTTP1_TRACE] = "TRACE",
};

static const char *const io_backend_names[] = {
    [CFG_IO_AUTO] = "auto", [CFG_IO_URING] = "uring", [CFG_IO_EPOLL] = "epoll", NULL};

static const char *const log_level_names[] = {
    [CFG_LOG_DEBUG] = "debug", [CFG_LOG_INFO] = "info", [CFG_LOG_WARN] = "warn",
    [CFG_LOG_ERROR] = "error", NULL};

static bool route_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > CFG_MAX_ROUTE_NAME)
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '/' || c == '-'))
            return false;
    }
    return true;
}

/* ---- the walk ------------------------------------------------------------------------ */

static int load_mapping(struct loader *ld, const struct node *map, const struct field *fields,
                        void *base);
static int load_routes(struct loader *ld, const struct node *seq);

static int word_index(const char *s, const char *const *words)
{
    for (int i = 0; words[i] != NULL; i++)
        if (strcmp(s, words[i]) == 0)
            return i;
    return -1;
}

static int load_number(struct loader *ld, const struct node *n, const struct field *f,
                       uint64_t *out)
{
    const char *what;
    switch (f->kind) {
    case F_DURATION:
        what = "a duration like 250ms, 5s or 2m";
        break;
    case F_SIZE32:
    case F_SIZE64:
        what = "a size like 512, 64KiB or 16MiB";
        break;
    default:
        what = "a whole number";
        break;
    }
    const char *s = scalar(ld, n, what);
    if (s == NULL)
        return -1;
    int rc;
    if (f->kind == F_DURATION)
        rc = parse_duration(s, out);
    else if (f->kind == F_COUNT32)
        rc = parse_count(s, out);
    else
        rc = parse_with_unit(s, size_units, true, out);
    if (rc == PARSE_TOO_LARGE)
        return fail_expected(ld, n, what, s, " (too large)");
    if (rc != PARSE_OK)
        return fail_expected(ld, n, what, s,
                             s[0] == '-' ? " (negative values are not allowed)" : NULL);

    if (*out >= f->min && *out <= f->max)
        return 0;
    char lo[32], hi[32];
    if (f->kind == F_DURATION) {
        format_duration(f->min, lo, sizeof(lo));
        format_duration(f->max, hi, sizeof(hi));
    } else if (f->kind == F_COUNT32) {
        snprintf(lo, sizeof(lo), "%llu", (unsigned long long)f->min);
        snprintf(hi, sizeof(hi), "%llu", (unsigned long long)f->max);
    } else {
        format_size(f->min, lo, sizeof(lo));
        format_size(f->max, hi, sizeof(hi));
    }
    if (*out < f->min && f->min == 1)
        return fail(ld, n, "must be greater than 0, got \"%s\"", s);
    if (*out < f->min)
        return fail(ld, n, "must be at least %s, got \"%s\"", lo, s);
    return fail(ld, n, "must be at most %s, got \"%s\"", hi, s);
}

static int load_methods(struct loader *ld, const struct node *seq, uint32_t *mask)
{
    static const char what[] = "a list of methods, e.g. [GET, HEAD]";
    if (seq->type != NODE_SEQUENCE)
        return fail_expected(ld, seq, what, NULL, NULL);
    if (seq->num_kids == 0)
        return fail(ld, seq, "the list is empty; leave methods out to match every method");
    *mask = 0;
    for (size_t i = 0; i < seq->num_kids; i++) {
        const struct node *item = seq->kids[i];
        size_t saved = path_push(ld, "[%zu]", i);
        const char *s = scalar(ld, item, "a method name");
        if (s == NULL)
            return -1;
        int m = -1;
        for (int k = 0; k < HTTP1_METHOD_COUNT; k++)
            if (method_names[k] != NULL && strcmp(s, method_names[k]) == 0)
                m = k;
        if (m < 0)
            return fail_expected(ld, item,
                                 "one of GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, "
                                 "TRACE (upper case)",
                                 s, NULL);
        *mask |= 1u << m;
        path_pop(ld, saved);
    }
    return 0;
}

static int load_field(struct loader *ld, const struct field *f, const struct node *n, void *base)
{
    void *target = (char *)base + f->offset;
    const char *s;
    uint64_t v;
    int idx;

    switch (f->kind) {
    case F_SECTION:
        return load_mapping(ld, n, f->fields, base);
    case F_ROUTES:
        return load_routes(ld, n);
    case F_ADDR: {
        s = scalar(ld, n, "an address like 127.0.0.1:3000, [::1]:3000 or :8080");
        if (s == NULL)
            return -1;
        struct cfg_addr *addr = target;
        const char *why = parse_addr(s, addr);
        if (why != NULL) {
            char q[QUOTE_MAX];
            return fail(ld, n, "%s (got %s)", why, quote(s, strlen(s), q, sizeof(q)));
        }
        return 0;
    }
    case F_DURATION:
    case F_SIZE64:
        if (load_number(ld, n, f, &v) != 0)
            return -1;
        *(uint64_t *)target = v;
        return 0;
    case F_SIZE32:
    case F_COUNT32:
        if (load_number(ld, n, f, &v) != 0)
            return -1;
        *(uint32_t *)target = (uint32_t)v; /* f->max fits */
        return 0;
    case F_BOOL:
        s = scalar(ld, n, "true or false");
        if (s == NULL)
            return -1;
        if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0)
            return fail_expected(ld, n, "true or false", s, NULL);
        *(bool *)target = s[0] == 't';
        return 0;
    case F_WORKERS: {
        static const char what[] = "\"auto\" or a number of workers from 1 to 1024";
        s = scalar(ld, n, what);
        if (s == NULL)
            return -1;
        if (strcmp(s, "auto") == 0) {
            ld->cfg->workers_auto = true;
            return 0;
        }
        if (parse_count(s, &v) != PARSE_OK || v < f->min || v > f->max)
            return fail_expected(ld, n, what, s, NULL);
        ld->cfg->workers_auto = false;
        *(uint32_t *)target = (uint32_t)v;
        return 0;
    }
    case F_IO_BACKEND:
        s = scalar(ld, n, "one of auto, uring, epoll");
        if (s == NULL)
            return -1;
        if ((idx = word_index(s, io_backend_names)) < 0)
            return fail_expected(ld, n, "one of auto, uring, epoll", s, NULL);
        *(enum cfg_io_backend *)target = (enum cfg_io_backend)idx;
        return 0;
    case F_LOG_LEVEL:
        s = scalar(ld, n, "one of debug, info, warn, error");
        if (s == NULL)
            return -1;
        if ((idx = word_index(s, log_level_names)) < 0)
            return fail_expected(ld, n, "one of debug, info, warn, error", s, NULL);
        *(enum cfg_log_level *)target = (enum cfg_log_level)idx;
        return 0;
    case F_ROUTE_NAME: {
        static const char what[] = "a route name of letters, digits and _ . / - (a metrics label)";
        s = scalar(ld, n, what);
        if (s == NULL)
            return -1;
        if (!route_name_ok(s))
            return fail_expected(ld, n, what, s, NULL);
        if ((*(char **)target = strdup(s)) == NULL)
            return fail_oom(ld);
        return 0;
    }
    case F_PREFIX: {
        static const char what[] = "a path prefix starting with \"/\"";
        s = scalar(ld, n, what);
        if (s == NULL)
            return -1;
        if (s[0] != '/')
            return fail_expected(ld, n, what, s, NULL);
        size_t len = strlen(s);
        if (len > CFG_MAX_PREFIX)
            return fail(ld, n, "longer than %d bytes", CFG_MAX_PREFIX);
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
                return fail_expected(ld, n, "a path prefix of visible ASCII characters", s,
                                     " (percent-encode other bytes)");
        if ((*(char **)target = strdup(s)) == NULL)
            return fail_oom(ld);
        return 0;
    }
    case F_METHODS:
        return load_methods(ld, n, target);
    }
    return fail(ld, n, "internal error: unhandled key");
}

/* ---- module sections ------------------------------------------------------------------ */

static const struct cfg_module *modules[CFG_MAX_MODULES];
static int num_modules;

int cfg_register_module(const struct cfg_module *m)
{
    for (int i = 0; i < num_modules; i++)
        if (strcmp(modules[i]->key, m->key) == 0 && modules[i]->per_route == m->per_route)
            return i;
    if (num_modules == CFG_MAX_MODULES)
        return -ENOSPC;
    modules[num_modules] = m;
    return num_modules++;
}

static int module_index(const char *key_text, size_t len, bool per_route)
{
    for (int i = 0; i < num_modules; i++)
        if (modules[i]->per_route == per_route && strlen(modules[i]->key) == len &&
            memcmp(modules[i]->key, key_text, len) == 0)
            return i;
    return -1;
}

static void module_fields_free(const struct cfg_field *fields, void *base)
{
    for (const struct cfg_field *f = fields; f->key != NULL; f++) {
        void *target = (char *)base + f->offset;
        if (f->kind == CFG_K_STRING) {
            free(*(char **)target);
        } else if (f->kind == CFG_K_STRING_LIST) {
            struct cfg_strings *l = target;
            for (size_t i = 0; i < l->count; i++)
                free(l->items[i]);
            free(l->items);
        } else if (f->kind == CFG_K_SECTION) {
            module_fields_free(f->fields, base);
        }
    }
}

static void modules_free(void *const *sections, bool per_route)
{
    for (int i = 0; i < num_modules; i++) {
        if (sections[i] == NULL || modules[i]->per_route != per_route)
            continue;
        if (modules[i]->release != NULL)
            modules[i]->release(sections[i]);
        module_fields_free(modules[i]->fields, sections[i]);
        free(sections[i]);
    }
}

static int load_module_mapping(struct loader *ld, const struct node *map,
                               const struct cfg_field *fields, void *base);

static int module_fail_unknown(struct loader *ld, const struct node *key,
                               const struct cfg_field *fields)
{
    char list[512];
    size_t o = 0;
    list[0] = '\0';
    for (const struct cfg_field *f = fields; f->key != NULL && o < sizeof(list); f++) {
        int n = snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "", f->key);
        if (n > 0)
            o += (size_t)n;
    }
    return fail(ld, key, "unknown key (expected one of: %s)", list);
}

static int load_module_string(struct loader *ld, const struct cfg_field *f, const struct node *n,
                              char **out)
{
    const char *s = scalar(ld, n, "a string");
    if (s == NULL)
        return -1;
    size_t len = strlen(s);
    if (len < f->min)
        return fail(ld, n, "must not be empty");
    if (f->max != 0 && len > f->max)
        return fail(ld, n, "longer than %llu bytes", (unsigned long long)f->max);
    if ((*out = strdup(s)) == NULL)
        return fail_oom(ld);
    return 0;
}

static int load_module_field(struct loader *ld, const struct cfg_field *f, const struct node *n,
                             void *base)
{
    void *target = (char *)base + f->offset;
    static const enum field_kind numeric[] = {
        [CFG_K_DURATION] = F_DURATION, [CFG_K_SIZE64] = F_SIZE64,
        [CFG_K_COUNT32] = F_COUNT32,   [CFG_K_BOOL] = F_BOOL,
    };
    switch (f->kind) {
    case CFG_K_DURATION:
    case CFG_K_SIZE64:
    case CFG_K_COUNT32:
    case CFG_K_BOOL: {
        struct field core = {f->key, numeric[f->kind], f->offset, f->min, f->max, false, NULL};
        return load_field(ld, &core, n, base);
    }
    case CFG_K_STRING:
        free(*(char **)target);
        *(char **)target = NULL;
        return load_module_string(ld, f, n, target);
    case CFG_K_STRING_LIST: {
        if (n->type != NODE_SEQUENCE)
            return fail_expected(ld, n, "a list of strings", NULL, NULL);
        struct cfg_strings *l = target;
        if ((l->items = calloc(n->num_kids + 1, sizeof(*l->items))) == NULL)
            return fail_oom(ld);
        for (size_t i = 0; i < n->num_kids; i++) {
            size_t saved = path_push(ld, "[%zu]", i);
            if (load_module_string(ld, f, n->kids[i], &l->items[i]) != 0)
                return -1;
            l->count++;
            path_pop(ld, saved);
        }
        return 0;
    }
    case CFG_K_WORD: {
        char what[256];
        size_t o = (size_t)snprintf(what, sizeof(what), "one of");
        for (int i = 0; f->words[i] != NULL && o < sizeof(what); i++)
            o += (size_t)snprintf(what + o, sizeof(what) - o, "%s %s", i ? "," : "", f->words[i]);
        const char *s = scalar(ld, n, what);
        if (s == NULL)
            return -1;
        int idx = word_index(s, f->words);
        if (idx < 0)
            return fail_expected(ld, n, what, s, NULL);
        *(int *)target = idx;
        return 0;
    }
    case CFG_K_SECTION:
        return load_module_mapping(ld, n, f->fields, base);
    }
    return fail(ld, n, "internal error: unhandled key");
}

static int load_module_mapping(struct loader *ld, const struct node *map,
                               const struct cfg_field *fields, void *base)
{
    if (map->type != NODE_MAPPING)
        return fail_expected(ld, map, "a mapping", NULL, NULL);
    for (size_t i = 0; i + 1 < map->num_kids; i += 2) {
        const struct node *key = map->kids[i], *value = map->kids[i + 1];
        if (key->type != NODE_SCALAR)
            return fail(ld, key, "expected a key name, got %s", kind_name(key));
        size_t saved = path_push_key(ld, key->text, key->len);
        const struct cfg_field *f = fields;
        while (f->key != NULL && !node_is_key(key, f->key))
            f++;
        if (f->key == NULL)
            return module_fail_unknown(ld, key, fields);
        for (size_t j = 0; j < i; j += 2)
            if (node_is_key(map->kids[j], f->key))
                return fail(ld, key, "duplicate key (first at line %u, column %u)",
                            map->kids[j]->line, map->kids[j]->column);
        if (load_module_field(ld, f, value, base) != 0)
            return -1;
        path_pop(ld, saved);
    }
    return 0;
}

/* Read a module's section into a new struct stored in sections[index]. */
static int load_module(struct loader *ld, int index, const struct node *n, void **sections)
{
    const struct cfg_module *m = modules[index];
    void *section = calloc(1, m->size);
    if (section == NULL)
        return fail_oom(ld);
    sections[index] = section; /* freed with the config, also on failure */
    if (m->defaults != NULL)
        m->defaults(section);
    /* "cache: {}" and a bare "cache:" both turn the module on with its defaults. */
    bool empty = n->type == NODE_SCALAR && n->len == 0 && n->style == YAML_PLAIN_SCALAR_STYLE;
    if (!empty && load_module_mapping(ld, n, m->fields, section) != 0)
        return -1;
    if (m->check != NULL) {
        const char *key = NULL;
        const char *why = m->check(section, &key);
        if (why != NULL) {
            const struct node *at = key != NULL && node_get(n, key) != NULL ? node_get(n, key) : n;
            if (key != NULL)
                path_push_key(ld, key, strlen(key));
            return fail(ld, at, "%s", why);
        }
    }
    return 0;
}

static int fail_unknown_key(struct loader *ld, const struct node *key, const struct field *fields)
{
    char list[512];
    size_t o = 0;
    list[0] = '\0';
    for (const struct field *f = fields; f->key != NULL && o < sizeof(list); f++) {
        int n = snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "", f->key);
        if (n > 0)
            o += (size_t)n;
    }
    if (fields == root_fields || fields == route_fields)
        for (int i = 0; i < num_modules && o < sizeof(list); i++) {
            if (modules[i]->per_route != (fields == route_fields))
                continue;
            int n = snprintf(list + o, sizeof(list) - o, ", %s", modules[i]->key);
            if (n > 0)
                o += (size_t)n;
        }
    return fail(ld, key, "unknown key (expected one of: %s)", list);
}

/* Fills base from map's keys as fields describes them. Unknown and repeated keys are
 * errors, and so is a missing required one. */
static int load_mapping(struct loader *ld, const struct node *map, const struct field *fields,
                        void *base)
{
    if (map->type != NODE_MAPPING)
        return fail_expected(ld, map, "a mapping", NULL, NULL);

    for (size_t i = 0; i + 1 < map->num_kids; i += 2) {
        const struct node *key = map->kids[i], *value = map->kids[i + 1];
        if (key->type != NODE_SCALAR)
            return fail(ld, key, "expected a key name, got %s", kind_name(key));
        size_t saved = path_push_key(ld, key->text, key->len);
        const struct field *f = fields;
        while (f->key != NULL && !node_is_key(key, f->key))
            f++;
        if (f->key == NULL && (fields == root_fields || fields == route_fields)) {
            bool per_route = fields == route_fields;
            int mi = module_index(key->text, key->len, per_route);
            if (mi >= 0) {
                for (size_t j = 0; j < i; j += 2)
                    if (node_is_key(map->kids[j], modules[mi]->key))
                        return fail(ld, key, "duplicate key (first at line %u, column %u)",
                                    map->kids[j]->line, map->kids[j]->column);
                void **sections = per_route ? ((struct cfg_route *)base)->modules : ld->cfg->modules;
                if (load_module(ld, mi, value, sections) != 0)
                    return -1;
                path_pop(ld, saved);
                continue;
            }
        }
        if (f->key == NULL)
            return fail_unknown_key(ld, key, fields);
        for (size_t j = 0; j < i; j += 2)
            if (node_is_key(map->kids[j], f->key))
                return fail(ld, key, "duplicate key (first at line %u, column %u)",
                            map->kids[j]->line, map->kids[j]->column);
        if (load_field(ld, f, value, base) != 0)
            return -1;
        path_pop(ld, saved);
    }

    for (const struct field *f = fields; f->key != NULL; f++) {
        if (!f->required || node_get(map, f->key) != NULL)
            continue;
        path_push_key(ld, f->key, strlen(f->key));
        if (f->kind == F_SECTION) /* name the first thing the section must hold */
            for (const struct field *g = f->fields; g->key != NULL; g++)
                if (g->required) {
                    path_push_key(ld, g->key, strlen(g->key));
                    break;
                }
        return fail_at(ld, map->line, map->column, "%s is required", ld->path);
    }
    return 0;
}

/* True when every request route b would take is taken by route a first. Only prefixes
 * ending at a path segment boundary count, so this holds for any prefix semantics. */
static bool route_shadows(const struct cfg_route *a, const struct cfg_route *b)
{
    size_t alen = strlen(a->prefix);
    bool methods = a->methods == 0 || (b->methods != 0 && (b->methods & ~a->methods) == 0);
    bool prefix = strncmp(a->prefix, b->prefix, alen) == 0 &&
                  (a->prefix[alen - 1] == '/' || b->prefix[alen] == '\0');
    return methods && prefix;
}

static const struct node *route_node(const struct node *item, const char *key, const char *sub)
{
    const struct node *n = node_get(item, key);
    if (n != NULL && sub != NULL)
        n = node_get(n, sub);
    return n != NULL ? n : item;
}

static int load_routes(struct loader *ld, const struct node *seq)
{
    struct cfg *cfg = ld->cfg;
    if (seq->type != NODE_SEQUENCE)
        return fail_expected(ld, seq, "a list of routes", NULL, NULL);
    if (seq->num_kids > CFG_MAX_ROUTES)
        return fail(ld, seq, "more than %d routes", CFG_MAX_ROUTES);
    /* One spare slot for the catch-all route. */
    cfg->routes = calloc(seq->num_kids + 1, sizeof(*cfg->routes));
    if (cfg->routes == NULL)
        return fail_oom(ld);

    for (size_t i = 0; i < seq->num_kids; i++) {
        const struct node *item = seq->kids[i];
        struct cfg_route *r = &cfg->routes[cfg->num_routes++];
        size_t saved = path_push(ld, "[%zu]", i);
        if (load_mapping(ld, item, route_fields, r) != 0)
            return -1;
        if (r->prefix == NULL && (r->prefix = strdup("/")) == NULL)
            return fail_oom(ld);
        if (r->name == NULL) {
            if (!route_name_ok(r->prefix)) {
                path_push(ld, ".match.prefix");
                return fail(ld, route_node(item, "match", "prefix"),
                            "cannot serve as the route's name (a metrics label of letters, "
                            "digits and _ . / -); give the route a name:");
            }
            if ((r->name = strdup(r->prefix)) == NULL)
                return fail_oom(ld);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->routes[j].name, r->name) == 0) {
                path_push(ld, ".name");
                return fail(ld, route_node(item, "name", NULL),
                            "duplicate route name \"%s\" (routes[%zu] has it)", r->name, j);
            }
            if (route_shadows(&cfg->routes[j], r))
                return fail(ld, item,
                            "unreachable: routes[%zu] (prefix \"%s\") comes first and matches "
                            "every request this route would",
                            j, cfg->routes[j].prefix);
        }
        path_pop(ld, saved);
    }
    return 0;
}

/* ---- defaults and whole-config checks --------------------------------------------------- */

static void set_defaults(struct cfg *cfg)
{
    cfg->workers_auto = true;
    cfg->io_backend = CFG_IO_AUTO;
    cfg->upstream.connect_timeout = 1000;
    cfg->upstream.response_timeout = 30000;
    cfg->upstream.idle_timeout = 60000;
    cfg->upstream.pool_size = 64;
    cfg->upstream.retry_idempotent = true;
    cfg->limits.max_connections = 10000;
    cfg->limits.max_request_line = 8u << 10;
    cfg->limits.max_head = 32u << 10;
    cfg->limits.max_headers = 100;
    cfg->limits.max_chunk_ext = 1u << 10;
    cfg->limits.max_body = 64ull << 20;
    cfg->limits.max_output = 256u << 10;
    cfg->limits.recv_buffers = 256;
    cfg->limits.recv_buffer_size = 16u << 10;
    cfg->timeouts.header = 10000;
    cfg->timeouts.idle = 60000;
    cfg->timeouts.send = 60000;
    cfg->timeouts.drain = 25000;
    cfg->log.level = CFG_LOG_INFO;
    cfg->log.access = true;
}

static int default_addr(struct loader *ld, struct cfg_addr *addr, const char *text)
{
    if (addr->text != NULL)
        return 0;
    return cfg_parse_addr(text, addr) == 0 ? 0 : fail_oom(ld);
}

static bool is_wildcard(const struct cfg_addr *a)
{
    return strcmp(a->host, "0.0.0.0") == 0 || strcmp(a->host, "::") == 0;
}

/* Two listeners on one port would share it through SO_REUSEPORT instead of failing. */
static int check_listeners(struct loader *ld, const struct node *root)
{
    const struct {
        const char *path;
        const struct cfg_addr *addr;
        const struct node *node;
    } l[] = {
        {"listen", &ld->cfg->listen, node_get(root, "listen")},
        {"metrics.listen", &ld->cfg->metrics_listen, node_get(node_get(root, "metrics"), "listen")},
        {"control.listen", &ld->cfg->control_listen, node_get(node_get(root, "control"), "listen")},
    };
    for (size_t i = 0; i < 3; i++)
        for (size_t j = i + 1; j < 3; j++) {
            const struct cfg_addr *a = l[i].addr, *b = l[j].addr;
            if (a->port != b->port ||
                !(strcmp(a->host, b->host) == 0 || is_wildcard(a) || is_wildcard(b)))
                continue;
            size_t at = j, other = i; /* blame the later of the two in the file */
            if (l[j].node == NULL ||
                (l[i].node != NULL && (l[i].node->line > l[j].node->line ||
                                       (l[i].node->line == l[j].node->line &&
                                        l[i].node->column > l[j].node->column)))) {
                at = i;
                other = j;
            }
            path_set(ld, l[at].path);
            return fail(ld, l[at].node, "port %u is also used by %s (%s)", l[at].addr->port,
                        l[other].path, l[other].addr->text);
        }
    return 0;
}

static int finish(struct loader *ld, const struct node *root)
{
    struct cfg *cfg = ld->cfg;

    if (default_addr(ld, &cfg->listen, "0.0.0.0:8080") != 0 ||
        default_addr(ld, &cfg->metrics_listen, "0.0.0.0:9090") != 0 ||
        default_addr(ld, &cfg->control_listen, "127.0.0.1:9091") != 0)
        return -1;
    if (check_listeners(ld, root) != 0)
        return -1;

    if (cfg->limits.max_head < cfg->limits.max_request_line) {
        const struct node *limits = node_get(root, "limits");
        const struct node *head = node_get(limits, "max_head");
        char head_size[32], line_size[32];
        format_size(cfg->limits.max_head, head_size, sizeof(head_size));
        format_size(cfg->limits.max_request_line, line_size, sizeof(line_size));
        if (head != NULL) {
            path_set(ld, "limits.max_head");
            return fail(ld, head, "must be at least limits.max_request_line (%s), got %s",
                        line_size, head_size);
        }
        path_set(ld, "limits.max_request_line");
        return fail(ld, node_get(limits, "max_request_line"),
                    "must be at most limits.max_head (%s), got %s", head_size, line_size);
    }

    uint32_t nbufs = cfg->limits.recv_buffers;
    if ((nbufs & (nbufs - 1)) != 0) {
        path_set(ld, "limits.recv_buffers");
        return fail(ld, node_get(node_get(root, "limits"), "recv_buffers"),
                    "must be a power of two (8, 16, ... 32768), got %u", nbufs);
    }

    bool has_catch_all = false;
    for (size_t i = 0; i < cfg->num_routes; i++)
        if (strcmp(cfg->routes[i].prefix, "/") == 0 && cfg->routes[i].methods == 0)
            has_catch_all = true;
    if (!has_catch_all) {
        for (size_t i = 0; i < cfg->num_routes; i++)
            if (strcmp(cfg->routes[i].name, "default") == 0) {
                const struct node *item = node_get(root, "routes")->kids[i];
                path_pop(ld, 0);
                path_push(ld, "routes[%zu].name", i);
                return fail(ld, route_node(item, "name", NULL),
                            "\"default\" is reserved for the catch-all route added when no "
                            "route has prefix \"/\" for every method; rename it or add such "
                            "a route");
            }
        if (cfg->routes == NULL && (cfg->routes = calloc(1, sizeof(*cfg->routes))) == NULL)
            return fail_oom(ld);
        struct cfg_route *r = &cfg->routes[cfg->num_routes++];
        r->name = strdup("default");
        r->prefix = strdup("/");
        if (r->name == NULL || r->prefix == NULL)
            return fail_oom(ld);
    }

    if (cfg->workers_auto)
        cfg->workers = cfg_auto_workers("/sys/fs/cgroup");
    return 0;
}

/* ---- entry points ------------------------------------------------------------------- */

struct cfg *cfg_load_string(const char *yaml, size_t len, const char *name, char *err,
                            size_t err_len)
{
    struct loader ld = {
        .name = name ? name : "<config>", .input = yaml, .input_len = len,
        .err = err, .err_len = err_len,
    };
    struct node *root = NULL;

    ld.cfg = calloc(1, sizeof(*ld.cfg));
    if (ld.cfg == NULL) {
        fail_oom(&ld);
        return NULL;
    }
    set_defaults(ld.cfg);
    if ((ld.cfg->path = strdup(ld.name)) == NULL) {
        fail_oom(&ld);
        goto fail;
    }
    if (build_tree(&ld, &root) != 0)
        goto fail;

    /* An empty document reads as an empty mapping, which then lacks upstream. */
    bool empty = root == NULL || (root->type == NODE_SCALAR && root->len == 0 &&
                                  root->style == YAML_PLAIN_SCALAR_STYLE);
    if (empty) {
        fail_at(&ld, root ? root->line : 0, root ? root->column : 0,
                "upstream.address is required (the configuration is empty)");
        goto fail;
    }
    if (root->type != NODE_MAPPING) {
        fail_expected(&ld, root, "a mapping of settings at the top level", NULL, NULL);
        goto fail;
    }
    if (load_mapping(&ld, root, root_fields, ld.cfg) != 0 || finish(&ld, root) != 0)
        goto fail;

    node_free(root);
    free(ld.scratch);
    return ld.cfg;

fail:
    node_free(root);
    free(ld.scratch);
    cfg_free(ld.cfg);
    return NULL;
}

struct cfg *cfg_load(const char *path, char *err, size_t err_len)
{
    struct loader ld = {.name = path, .err = err, .err_len = err_len};
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail_at(&ld, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    /* Read without trusting st_size: the file may be a pipe or a ConfigMap symlink. */
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (len == cap) {
            char *p = cap >= CFG_MAX_FILE_BYTES ? NULL : realloc(buf, cap * 2);
            if (p == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    bool read_error = ferror(f) != 0;
    int saved_errno = errno;
    fclose(f);
    if (buf == NULL) {
        if (cap >= CFG_MAX_FILE_BYTES)
            fail_at(&ld, 0, 0, "larger than %u MiB", CFG_MAX_FILE_BYTES >> 20);
        else
            fail_oom(&ld);
        return NULL;
    }
    if (read_error) {
        free(buf);
        fail_at(&ld, 0, 0, "cannot read: %s", strerror(saved_errno));
        return NULL;
    }
    struct cfg *cfg = cfg_load_string(buf, len, path, err, err_len);
    free(buf);
    return cfg;
}

void cfg_free(struct cfg *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    cfg_addr_free(&cfg->listen);
    cfg_addr_free(&cfg->upstream.address);
    cfg_addr_free(&cfg->metrics_listen);
    cfg_addr_free(&cfg->control_listen);
    for (size_t i = 0; i < cfg->num_routes; i++) {
        free(cfg->routes[i].name);
        free(cfg->routes[i].prefix);
        modules_free(cfg->routes[i].modules, true);
    }
    free(cfg->routes);
    modules_free(cfg->modules, false);
    free(cfg);
}

/* ---- worker count ----------------------------------------------------------------------- */

uint32_t cfg_auto_workers(const char *cgroup_root)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1)
        online = 1;
    if (online > CFG_MAX_WORKERS)
        online = CFG_MAX_WORKERS;

    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/cpu.max",
                     cgroup_root ? cgroup_root : "/sys/fs/cgroup");
    if (n < 0 || (size_t)n >= sizeof(path))
        return (uint32_t)online;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return (uint32_t)online;
    char line[128];
    bool got = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    if (!got)
        return (uint32_t)online;

    /* "max 100000" (no limit) or "<quota> <period>", both in microseconds. */
    char *end;
    errno = 0;
    if (strncmp(line, "max", 3) == 0 || line[0] < '0' || line[0] > '9')
        return (uint32_t)online;
    unsigned long long quota = strtoull(line, &end, 10);
    if (errno != 0 || *end != ' ' || end[1] < '0' || end[1] > '9')
        return (uint32_t)online;
    unsigned long long period = strtoull(end + 1, &end, 10);
    if (errno != 0 || period == 0 || (*end != '\n' && *end != '\0'))
        return (uint32_t)online;
    unsigned long long cpus = quota / period + (quota % period != 0);
    if (cpus < 1)
        cpus = 1;
    if (cpus > (unsigned long long)online)
        cpus = (unsigned long long)online;
    return (uint32_t)cpus;
}
