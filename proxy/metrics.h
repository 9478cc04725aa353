/* Metrics registry and Prometheus text exposition (format 0.0.4).
 *
 * Counting must not slow the request path, so every worker thread owns a private array
 * of counter slots that only it writes, with relaxed atomic loads and stores: no lock,
 * no read-modify-write, no shared cache line. A scrape sums the slots of all workers.
 *
 * Series are registered up front (any thread, under a mutex) and named afterwards by a
 * metrics_id that callers cache. Capacities are fixed at metrics_new so the hot path
 * never sees storage move. */
#ifndef RINGSIDE_METRICS_H
#define RINGSIDE_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Fixed capacities (METRICS_ID_NONE uses one series and two slots of them). A counter or
 * gauge takes one slot per worker, a histogram with n bounds takes n + 2 (n + 1 buckets
 * and the sum). */
#define METRICS_MAX_SERIES 16384u
#define METRICS_MAX_FAMILIES 1024u
#define METRICS_MAX_SLOTS 65536u
#define METRICS_MAX_BOUNDS 64u

struct metrics;        /* process-wide registry */
struct metrics_worker; /* one worker thread's counters; written only by that thread */
typedef uint32_t metrics_id;
/* Never returned by registration. Counting into it does nothing visible, so a caller whose
 * registration failed can keep 0 and count unconditionally. */
#define METRICS_ID_NONE 0u

/* Default latency buckets in seconds for request durations. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_buckets_count;

/* A registry with storage for num_workers workers (0 is allowed: shared values only).
 * Returns NULL on ENOMEM. Free with metrics_free once no thread uses it. */
struct metrics *metrics_new(unsigned num_workers);
void metrics_free(struct metrics *m);

/* Worker index's counters (index < num_workers), owned by m. Only one thread may write
 * through it at a time. */
struct metrics_worker *metrics_worker(struct metrics *m, unsigned index);

/* Registration. Any thread, takes a mutex: not for the hot path, cache the id.
 * Idempotent: the same name and labels give the same id (help of later calls is ignored).
 * name: [a-zA-Z_:][a-zA-Z0-9_:]*.
 * labels: the label set in Prometheus syntax without braces, e.g.
 *   "route=\"api\",method=\"GET\",code=\"200\"", or "" / NULL for none. Values must already
 *   be escaped (metrics_escape_label). The string is compared as is, so always write a
 *   given set in the same order. Histograms may not use the label "le".
 * help: free text (escaped here), or NULL.
 * Strings are copied. Returns 0 and sets *id, or
 *   -EINVAL  bad name, labels or bounds, or the name is registered with another type
 *            (or, for a histogram, other bounds);
 *   -ENOSPC  beyond METRICS_MAX_SERIES / METRICS_MAX_FAMILIES / METRICS_MAX_SLOTS;
 *   -ENOMEM. */
int metrics_counter(struct metrics *m, const char *name, const char *help, const char *labels,
                    metrics_id *id);
int metrics_gauge(struct metrics *m, const char *name, const char *help, const char *labels,
                  metrics_id *id);
/* upper_bounds: finite, strictly increasing, at most METRICS_MAX_BOUNDS; +Inf is implied. */
int metrics_histogram(struct metrics *m, const char *name, const char *help, const char *labels,
                      const double *upper_bounds, size_t num_bounds, metrics_id *id);

/* Escape a label value (backslash, double quote, newline) into out, NUL-terminated.
 * Returns the escaped length, or -ENOSPC when out_len is too small (out is then ""). */
int metrics_escape_label(const char *in, char *out, size_t out_len);

/* Hot path, from the worker's own thread only. No lock, no allocation. The id must be of
 * the matching type. */
void metrics_add(struct metrics_worker *w, metrics_id id, uint64_t n);         /* counter */
void metrics_gauge_add(struct metrics_worker *w, metrics_id id, int64_t delta); /* gauge */
void metrics_observe(struct metrics_worker *w, metrics_id id, double value);    /* histogram */

/* Process-wide values from any thread (atomic, not for the hot path). A gauge renders as
 * the sum of all workers' deltas plus its shared value. Calls with an id of another type
 * are ignored. */
void metrics_shared_add(struct metrics *m, metrics_id id, uint64_t n);   /* counter */
void metrics_shared_set(struct metrics *m, metrics_id id, double value); /* gauge */

/* Every series in the text exposition format 0.0.4: one HELP and TYPE per family,
 * families in registration order with their series together, histograms as cumulative
 * _bucket{le=...} lines ending in +Inf, then _sum and _count. Any thread; it holds the
 * registry mutex while it runs. Returns a malloc'd NUL-terminated buffer the caller frees,
 * its length in *len, or NULL on ENOMEM. */
char *metrics_render(struct metrics *m, size_t *len);

#endif
