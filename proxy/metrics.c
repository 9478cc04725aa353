#include "proxy/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Open-addressing tables, kept at most half full so probes stay short. */
#define FAMILY_TABLE_SIZE (2 * METRICS_MAX_FAMILIES)
#define SERIES_TABLE_SIZE (2 * METRICS_MAX_SERIES)
#define NO_SERIES UINT32_MAX

const double metrics_latency_buckets[] = {
    .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10,
};
const size_t metrics_latency_buckets_count =
    sizeof(metrics_latency_buckets) / sizeof(metrics_latency_buckets[0]);

/* METRICS_SINK is series 0, in no family: counting into it is harmless, so a caller may
 * use 0 for "no series" (e.g. after a failed registration). */
enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM, METRICS_SINK };

struct metrics_family {
    char *name;
    char *help; /* already escaped for the HELP line; NULL when none */
    enum metrics_type type;
    double *bounds; /* histogram upper bounds without +Inf */
    size_t num_bounds;
    uint32_t first_series, last_series; /* registration-order list through series.next */
};

/* Read by the hot path without the lock: an entry is complete before its id is returned
 * and never changes afterwards, and the array never moves. */
struct metrics_series {
    enum metrics_type type;
    uint32_t slot; /* first slot in each worker's array */
    const double *bounds;
    size_t num_bounds;
    uint32_t family;
    uint32_t next;
    char *labels;
    _Atomic uint64_t shared; /* counter: a count; gauge: the bits of a double */
};

/* Each worker's block is its own mmap: page aligned, so no two workers share a cache line,
 * and untouched slots cost no memory. */
struct metrics_worker {
    const struct metrics_series *series;
    _Atomic uint64_t slots[]; /* METRICS_MAX_SLOTS */
};

struct metrics {
    pthread_mutex_t lock;
    unsigned num_workers;
    struct metrics_worker **workers;
    uint32_t num_families;
    uint32_t num_series;
    uint32_t num_slots;
    struct metrics_family *families;   /* METRICS_MAX_FAMILIES */
    struct metrics_series *series;     /* METRICS_MAX_SERIES */
    uint32_t *family_table;            /* family index + 1; 0 = empty */
    uint32_t *series_table;            /* series index + 1; 0 = empty */
};

#define WORKER_SIZE (sizeof(struct metrics_worker) + METRICS_MAX_SLOTS * sizeof(_Atomic uint64_t))

static uint64_t load_relaxed(_Atomic uint64_t *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

static void store_relaxed(_Atomic uint64_t *p, uint64_t v)
{
    atomic_store_explicit(p, v, memory_order_relaxed);
}

static double bits_to_double(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return bits;
}

struct metrics *metrics_new(unsigned num_workers)
{
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0)
        goto fail_m;
    m->families = calloc(METRICS_MAX_FAMILIES, sizeof(*m->families));
    m->series = calloc(METRICS_MAX_SERIES, sizeof(*m->series));
    m->family_table = calloc(FAMILY_TABLE_SIZE, sizeof(*m->family_table));
    m->series_table = calloc(SERIES_TABLE_SIZE, sizeof(*m->series_table));
    m->workers = calloc(num_workers ? num_workers : 1, sizeof(*m->workers));
    if (!m->families || !m->series || !m->family_table || !m->series_table || !m->workers)
        goto fail_tables;
    for (; m->num_workers < num_workers; m->num_workers++) {
        void *p = mmap(NULL, WORKER_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (p == MAP_FAILED)
            goto fail_tables;
        m->workers[m->num_workers] = p;
        m->workers[m->num_workers]->series = m->series;
    }
    /* Two slots: enough for add, gauge_add and observe (one bucket and the sum). */
    m->series[METRICS_ID_NONE].type = METRICS_SINK;
    m->series[METRICS_ID_NONE].family = UINT32_MAX;
    m->num_series = 1;
    m->num_slots = 2;
    return m;

fail_tables:
    metrics_free(m);
    return NULL;
fail_m:
    free(m);
    return NULL;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (unsigned i = 0; i < m->num_workers; i++)
        munmap(m->workers[i], WORKER_SIZE);
    for (uint32_t i = 0; i < m->num_series; i++)
        free(m->series[i].labels);
    for (uint32_t i = 0; i < m->num_families; i++) {
        free(m->families[i].name);
        free(m->families[i].help);
        free(m->families[i].bounds);
    }
    free(m->workers);
    free(m->series_table);
    free(m->family_table);
    free(m->series);
    free(m->families);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

struct metrics_worker *metrics_worker(struct metrics *m, unsigned index)
{
    return index < m->num_workers ? m->workers[index] : NULL;
}

/* --- validation ------------------------------------------------------------------- */

static bool is_name_start(char c, bool colon_ok)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
}

static bool is_name_char(char c, bool colon_ok)
{
    return is_name_start(c, colon_ok) || (c >= '0' && c <= '9');
}

static bool valid_metric_name(const char *s)
{
    if (!is_name_start(*s, true))
        return false;
    for (s++; *s; s++)
        if (!is_name_char(*s, true))
            return false;
    return true;
}

/* name="value"(,name="value")* with values escaped as the exposition format requires.
 * Catches a caller that forgot to escape, which would corrupt the whole scrape. */
static bool valid_labels(const char *s, bool histogram)
{
    if (*s == '\0')
        return true;
    for (;;) {
        const char *name = s;
        if (!is_name_start(*s, false))
            return false;
        while (is_name_char(*s, false))
            s++;
        if (histogram && s - name == 2 && memcmp(name, "le", 2) == 0)
            return false;
        if (s[0] != '=' || s[1] != '"')
            return false;
        for (s += 2; *s != '"'; s++) {
            if (*s == '\0' || *s == '\n')
                return false;
            if (*s == '\\') {
                s++;
                if (*s != '\\' && *s != '"' && *s != 'n')
                    return false;
            }
        }
        s++;
        if (*s == '\0')
            return true;
        if (*s != ',')
            return false;
        s++;
    }
}

static bool valid_bounds(const double *b, size_t n)
{
    if (n > METRICS_MAX_BOUNDS || (n > 0 && !b))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(b[i]) || (i > 0 && !(b[i] > b[i - 1])))
            return false;
    }
    return true;
}

int metrics_escape_label(const char *in, char *out, size_t out_len)
{
    size_t o = 0;
    for (; *in; in++) {
        const char *rep = NULL;
        if (*in == '\\')
            rep = "\\\\";
        else if (*in == '"')
            rep = "\\\"";
        else if (*in == '\n')
            rep = "\\n";
        size_t n = rep ? 2 : 1;
        if (o + n >= out_len)
            goto full;
        if (rep)
            memcpy(out + o, rep, 2);
        else
            out[o] = *in;
        o += n;
    }
    if (o >= out_len || o > INT32_MAX)
        goto full;
    out[o] = '\0';
    return (int)o;
full:
    if (out_len > 0)
        out[0] = '\0';
    return -ENOSPC;
}

/* HELP text escapes only backslash and newline. */
static char *escape_help(const char *help)
{
    size_t n = 0;
    for (const char *p = help; *p; p++)
        n += (*p == '\\' || *p == '\n') ? 2 : 1;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = help; *p; p++) {
        if (*p == '\\') {
            *o++ = '\\';
            *o++ = '\\';
        } else if (*p == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

/* --- registration ----------------------------------------------------------------- */

static uint64_t hash_bytes(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t hash_series(const char *name, const char *labels)
{
    uint64_t h = hash_bytes(0xcbf29ce484222325ull, name);
    h ^= 0xff; /* a byte no name contains, so ("ab","c") and ("a","bc") differ */
    h *= 0x100000001b3ull;
    return hash_bytes(h, labels);
}

/* The table position holding name (found) or where it would go. */
static uint32_t *family_lookup(struct metrics *m, const char *name)
{
    size_t i = hash_series(name, "") & (FAMILY_TABLE_SIZE - 1);
    for (;; i = (i + 1) & (FAMILY_TABLE_SIZE - 1)) {
        uint32_t *e = &m->family_table[i];
        if (*e == 0 || strcmp(m->families[*e - 1].name, name) == 0)
            return e;
    }
}

static uint32_t *series_lookup(struct metrics *m, const char *name, const char *labels)
{
    size_t i = hash_series(name, labels) & (SERIES_TABLE_SIZE - 1);
    for (;; i = (i + 1) & (SERIES_TABLE_SIZE - 1)) {
        uint32_t *e = &m->series_table[i];
        if (*e == 0)
            return e;
        const struct metrics_series *s = &m->series[*e - 1];
        if (strcmp(m->families[s->family].name, name) == 0 && strcmp(s->labels, labels) == 0)
            return e;
    }
}

static bool same_bounds(const struct metrics_family *f, const double *b, size_t n)
{
    return f->num_bounds == n && (n == 0 || memcmp(f->bounds, b, n * sizeof(*b)) == 0);
}

static int family_init(struct metrics_family *f, const char *name, const char *help,
                       enum metrics_type type, const double *bounds, size_t num_bounds)
{
    memset(f, 0, sizeof(*f));
    f->type = type;
    f->first_series = f->last_series = NO_SERIES;
    f->name = strdup(name);
    if (!f->name)
        goto fail;
    if (help && !(f->help = escape_help(help)))
        goto fail;
    if (num_bounds > 0) {
        f->bounds = malloc(num_bounds * sizeof(*bounds));
        if (!f->bounds)
            goto fail;
        memcpy(f->bounds, bounds, num_bounds * sizeof(*bounds));
        f->num_bounds = num_bounds;
    }
    return 0;
fail:
    free(f->help);
    free(f->name);
    return -ENOMEM;
}

static int metrics_register(struct metrics *m, const char *name, const char *help,
                            const char *labels, enum metrics_type type, const double *bounds,
                            size_t num_bounds, metrics_id *id)
{
    if (!labels)
        labels = "";
    if (!name || !valid_metric_name(name) || !valid_labels(labels, type == METRICS_HISTOGRAM))
        return -EINVAL;
    if (type == METRICS_HISTOGRAM && !valid_bounds(bounds, num_bounds))
        return -EINVAL;

    int ret = 0;
    pthread_mutex_lock(&m->lock);
    uint32_t *fam_entry = family_lookup(m, name);
    if (*fam_entry) {
        const struct metrics_family *f = &m->families[*fam_entry - 1];
        if (f->type != type || (type == METRICS_HISTOGRAM && !same_bounds(f, bounds, num_bounds))) {
            ret = -EINVAL;
            goto out;
        }
    }
    uint32_t *series_entry = series_lookup(m, name, labels);
    if (*series_entry) {
        *id = *series_entry - 1;
        goto out;
    }

    uint32_t slots = type == METRICS_HISTOGRAM ? (uint32_t)num_bounds + 2 : 1;
    if (m->num_series >= METRICS_MAX_SERIES || METRICS_MAX_SLOTS - m->num_slots < slots ||
        (!*fam_entry && m->num_families >= METRICS_MAX_FAMILIES)) {
        ret = -ENOSPC;
        goto out;
    }
    char *labels_copy = strdup(labels);
    if (!labels_copy) {
        ret = -ENOMEM;
        goto out;
    }
    if (!*fam_entry) {
        ret = family_init(&m->families[m->num_families], name, help, type, bounds, num_bounds);
        if (ret < 0) {
            free(labels_copy);
            goto out;
        }
        *fam_entry = ++m->num_families;
    }
    uint32_t fam_index = *fam_entry - 1;
    struct metrics_family *f = &m->families[fam_index];
    uint32_t index = m->num_series++;
    struct metrics_series *s = &m->series[index];
    s->type = type;
    s->slot = m->num_slots;
    s->bounds = f->bounds;
    s->num_bounds = f->num_bounds;
    s->family = fam_index;
    s->next = NO_SERIES;
    s->labels = labels_copy;
    atomic_init(&s->shared, type == METRICS_GAUGE ? double_to_bits(0.0) : 0);
    m->num_slots += slots;
    if (f->last_series == NO_SERIES)
        f->first_series = index;
    else
        m->series[f->last_series].next = index;
    f->last_series = index;
    *series_entry = index + 1;
    *id = index;
out:
    pthread_mutex_unlock(&m->lock);
    return ret;
}

int metrics_counter(struct metrics *m, const char *name, const char *help, const char *labels,
                    metrics_id *id)
{
    return metrics_register(m, name, help, labels, METRICS_COUNTER, NULL, 0, id);
}

int metrics_gauge(struct metrics *m, const char *name, const char *help, const char *labels,
                  metrics_id *id)
{
    return metrics_register(m, name, help, labels, METRICS_GAUGE, NULL, 0, id);
}

int metrics_histogram(struct metrics *m, const char *name, const char *help, const char *labels,
                      const double *upper_bounds, size_t num_bounds, metrics_id *id)
{
    return metrics_register(m, name, help, labels, METRICS_HISTOGRAM, upper_bounds, num_bounds,
                            id);
}

/* --- hot path --------------------------------------------------------------------- */

/* The worker is its slots' only writer, so load + store is an exact increment; the
 * atomics only keep a concurrent scrape from reading a torn value. */
void metrics_add(struct metrics_worker *w, metrics_id id, uint64_t n)
{
    _Atomic uint64_t *slot = &w->slots[w->series[id].slot];
    store_relaxed(slot, load_relaxed(slot) + n);
}

void metrics_gauge_add(struct metrics_worker *w, metrics_id id, int64_t delta)
{
    /* Deltas wrap in two's complement; the scrape reads the sum back as int64. */
    _Atomic uint64_t *slot = &w->slots[w->series[id].slot];
    store_relaxed(slot, load_relaxed(slot) + (uint64_t)delta);
}

/* Buckets are stored per interval, not cumulative, and the count is their total: one
 * bucket store plus the sum per observation, and a scrape's +Inf always equals _count. */
void metrics_observe(struct metrics_worker *w, metrics_id id, double value)
{
    const struct metrics_series *s = &w->series[id];
    size_t b = 0;
    while (b < s->num_bounds && !(value <= s->bounds[b])) /* NaN lands in +Inf */
        b++;
    _Atomic uint64_t *bucket = &w->slots[s->slot + b];
    _Atomic uint64_t *sum = &w->slots[s->slot + s->num_bounds + 1];
    store_relaxed(bucket, load_relaxed(bucket) + 1);
    store_relaxed(sum, double_to_bits(bits_to_double(load_relaxed(sum)) + value));
}

void metrics_shared_add(struct metrics *m, metrics_id id, uint64_t n)
{
    if (id >= METRICS_MAX_SERIES || m->series[id].type != METRICS_COUNTER)
        return;
    atomic_fetch_add_explicit(&m->series[id].shared, n, memory_order_relaxed);
}

void metrics_shared_set(struct metrics *m, metrics_id id, double value)
{
    if (id >= METRICS_MAX_SERIES || m->series[id].type != METRICS_GAUGE)
        return;
    atomic_store_explicit(&m->series[id].shared, double_to_bits(value), memory_order_relaxed);
}

/* --- rendering -------------------------------------------------------------------- */

struct render_buf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void buf_printf(struct render_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buf_printf(struct render_buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* Shortest of %.15g / %.17g that reads back exactly, so 0.1 prints as 0.1. */
static const char *format_double(double v, char out[32])
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(out, 32, "%.15g", v);
    if (strtod(out, NULL) != v)
        snprintf(out, 32, "%.17g", v);
    return out;
}

/* "{labels}" or "" */
static void put_labels(struct render_buf *b, const char *labels)
{
    if (*labels)
        buf_printf(b, "{%s}", labels);
}

static void render_counter(struct metrics *m, struct render_buf *b, const char *name,
                           struct metrics_series *s)
{
    uint64_t v = atomic_load_explicit(&s->shared, memory_order_relaxed);
    for (unsigned w = 0; w < m->num_workers; w++)
        v += load_relaxed(&m->workers[w]->slots[s->slot]);
    buf_printf(b, "%s", name);
    put_labels(b, s->labels);
    buf_printf(b, " %" PRIu64 "\n", v);
}

static void render_gauge(struct metrics *m, struct render_buf *b, const char *name,
                         struct metrics_series *s)
{
    uint64_t deltas = 0;
    for (unsigned w = 0; w < m->num_workers; w++)
        deltas += load_relaxed(&m->workers[w]->slots[s->slot]);
    double v = (double)(int64_t)deltas +
               bits_to_double(atomic_load_explicit(&s->shared, memory_order_relaxed));
    char num[32];
    buf_printf(b, "%s", name);
    put_labels(b, s->labels);
    buf_printf(b, " %s\n", format_double(v, num));
}

static void render_histogram(struct metrics *m, struct render_buf *b, const char *name,
                             const struct metrics_series *s)
{
    uint64_t cumulative = 0;
    char num[32];
    for (size_t i = 0; i <= s->num_bounds; i++) {
        for (unsigned w = 0; w < m->num_workers; w++)
            cumulative += load_relaxed(&m->workers[w]->slots[s->slot + i]);
        const char *le = i < s->num_bounds ? format_double(s->bounds[i], num) : "+Inf";
        buf_printf(b, "%s_bucket{%s%sle=\"%s\"} %" PRIu64 "\n", name, s->labels,
                   *s->labels ? "," : "", le, cumulative);
    }
    double sum = 0;
    for (unsigned w = 0; w < m->num_workers; w++)
        sum += bits_to_double(load_relaxed(&m->workers[w]->slots[s->slot + s->num_bounds + 1]));
    buf_printf(b, "%s_sum", name);
    put_labels(b, s->labels);
    buf_printf(b, " %s\n", format_double(sum, num));
    buf_printf(b, "%s_count", name);
    put_labels(b, s->labels);
    buf_printf(b, " %" PRIu64 "\n", cumulative);
}

char *metrics_render(struct metrics *m, size_t *len)
{
    static const char *const type_names[] = {
        [METRICS_COUNTER] = "counter",
        [METRICS_GAUGE] = "gauge",
        [METRICS_HISTOGRAM] = "histogram",
    };
    struct render_buf b = {.cap = 4096};
    b.p = malloc(b.cap);
    if (!b.p)
        return NULL;
    b.p[0] = '\0';

    pthread_mutex_lock(&m->lock);
    for (uint32_t fi = 0; fi < m->num_families && !b.failed; fi++) {
        const struct metrics_family *f = &m->families[fi];
        if (f->help)
            buf_printf(&b, "# HELP %s %s\n", f->name, f->help);
        buf_printf(&b, "# TYPE %s %s\n", f->name, type_names[f->type]);
        for (uint32_t si = f->first_series; si != NO_SERIES; si = m->series[si].next) {
            struct metrics_series *s = &m->series[si];
            if (f->type == METRICS_COUNTER)
                render_counter(m, &b, f->name, s);
            else if (f->type == METRICS_GAUGE)
                render_gauge(m, &b, f->name, s);
            else
                render_histogram(m, &b, f->name, s);
        }
    }
    pthread_mutex_unlock(&m->lock);

    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
