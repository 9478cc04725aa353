#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/metrics.h"

static char *render(struct metrics *m)
{
    size_t len = 0;
    char *text = metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void assert_render(struct metrics *m, const char *expected)
{
    char *text = render(m);
    assert_string_equal(text, expected);
    free(text);
}

static void test_empty(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    assert_render(m, "");
    assert_non_null(metrics_worker(m, 0));
    assert_null(metrics_worker(m, 1));
    metrics_free(m);
}

/* Counting into METRICS_ID_NONE changes nothing that renders. */
static void test_id_none(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    metrics_id c, h;
    const double bounds[] = {1};
    assert_int_equal(metrics_counter(m, "c_total", NULL, "", &c), 0);
    assert_int_equal(metrics_histogram(m, "h", NULL, "", bounds, 1, &h), 0);
    assert_int_not_equal(c, METRICS_ID_NONE);
    assert_int_not_equal(h, METRICS_ID_NONE);
    struct metrics_worker *w = metrics_worker(m, 0);
    metrics_add(w, METRICS_ID_NONE, 5);
    metrics_gauge_add(w, METRICS_ID_NONE, -5);
    metrics_observe(w, METRICS_ID_NONE, 7.5);
    metrics_shared_add(m, METRICS_ID_NONE, 5);
    metrics_shared_set(m, METRICS_ID_NONE, 5);
    assert_render(m, "# TYPE c_total counter\n"
                     "c_total 0\n"
                     "# TYPE h histogram\n"
                     "h_bucket{le=\"1\"} 0\n"
                     "h_bucket{le=\"+Inf\"} 0\n"
                     "h_sum 0\n"
                     "h_count 0\n");
    metrics_free(m);
}

static void test_counter_render(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(2);
    assert_non_null(m);
    metrics_id get, post, plain;
    assert_int_equal(metrics_counter(m, "ringside_requests_total", "Requests served.",
                                     "route=\"api\",method=\"GET\"", &get), 0);
    assert_int_equal(metrics_counter(m, "ringside_requests_total", "ignored",
                                     "route=\"api\",method=\"POST\"", &post), 0);
    assert_int_equal(metrics_counter(m, "ringside_errors_total", NULL, "", &plain), 0);
    assert_int_not_equal(get, post);

    metrics_add(metrics_worker(m, 0), get, 3);
    metrics_add(metrics_worker(m, 1), get, 4);
    metrics_shared_add(m, get, 10);
    metrics_add(metrics_worker(m, 1), post, 1);
    metrics_add(metrics_worker(m, 0), plain, UINT64_C(18446744073709551000));

    assert_render(m, "# HELP ringside_requests_total Requests served.\n"
                     "# TYPE ringside_requests_total counter\n"
                     "ringside_requests_total{route=\"api\",method=\"GET\"} 17\n"
                     "ringside_requests_total{route=\"api\",method=\"POST\"} 1\n"
                     "# TYPE ringside_errors_total counter\n"
                     "ringside_errors_total 18446744073709551000\n");
    metrics_free(m);
}

/* Series registered interleaved still render grouped under one HELP/TYPE. */
static void test_families_grouped(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    metrics_id a1, b, a2, a1_again;
    assert_int_equal(metrics_counter(m, "a_total", "A.", "x=\"1\"", &a1), 0);
    assert_int_equal(metrics_gauge(m, "b", "B.", NULL, &b), 0);
    assert_int_equal(metrics_counter(m, "a_total", "A.", "x=\"2\"", &a2), 0);
    assert_int_equal(metrics_counter(m, "a_total", "A.", "x=\"1\"", &a1_again), 0);
    assert_int_equal(a1, a1_again);
    metrics_add(metrics_worker(m, 0), a2, 2);
    assert_render(m, "# HELP a_total A.\n"
                     "# TYPE a_total counter\n"
                     "a_total{x=\"1\"} 0\n"
                     "a_total{x=\"2\"} 2\n"
                     "# HELP b B.\n"
                     "# TYPE b gauge\n"
                     "b 0\n");
    metrics_free(m);
}

static void test_gauge(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(3);
    assert_non_null(m);
    metrics_id conns, info, neg, frac;
    assert_int_equal(metrics_gauge(m, "conns", "Open.", "", &conns), 0);
    assert_int_equal(metrics_gauge(m, "build_info", "Build.", "version=\"1.2\"", &info), 0);
    assert_int_equal(metrics_gauge(m, "neg", NULL, "", &neg), 0);
    assert_int_equal(metrics_gauge(m, "frac", NULL, "", &frac), 0);

    metrics_gauge_add(metrics_worker(m, 0), conns, 5);
    metrics_gauge_add(metrics_worker(m, 1), conns, -2);
    metrics_gauge_add(metrics_worker(m, 2), conns, 1);
    metrics_shared_set(m, conns, 10);
    metrics_shared_set(m, info, 1);
    metrics_gauge_add(metrics_worker(m, 1), neg, -7);
    metrics_gauge_add(metrics_worker(m, 2), neg, 4);
    metrics_shared_set(m, frac, 0.1);
    /* A call with the wrong type is ignored. */
    metrics_shared_add(m, info, 5);

    assert_render(m, "# HELP conns Open.\n"
                     "# TYPE conns gauge\n"
                     "conns 14\n"
                     "# HELP build_info Build.\n"
                     "# TYPE build_info gauge\n"
                     "build_info{version=\"1.2\"} 1\n"
                     "# TYPE neg gauge\n"
                     "neg -3\n"
                     "# TYPE frac gauge\n"
                     "frac 0.1\n");
    metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(2);
    assert_non_null(m);
    const double bounds[] = {0.5, 1, 2.5};
    metrics_id h, plain;
    assert_int_equal(metrics_histogram(m, "lat_seconds", "Latency.", "route=\"a\"", bounds, 3, &h),
                     0);
    assert_int_equal(metrics_histogram(m, "lat_seconds", "Latency.", "", bounds, 3, &plain), 0);

    metrics_observe(metrics_worker(m, 0), h, 0.25);
    metrics_observe(metrics_worker(m, 1), h, 0.5); /* le is inclusive */
    metrics_observe(metrics_worker(m, 0), h, 2);
    metrics_observe(metrics_worker(m, 1), h, 4);
    metrics_observe(metrics_worker(m, 1), h, 100);

    assert_render(m, "# HELP lat_seconds Latency.\n"
                     "# TYPE lat_seconds histogram\n"
                     "lat_seconds_bucket{route=\"a\",le=\"0.5\"} 2\n"
                     "lat_seconds_bucket{route=\"a\",le=\"1\"} 2\n"
                     "lat_seconds_bucket{route=\"a\",le=\"2.5\"} 3\n"
                     "lat_seconds_bucket{route=\"a\",le=\"+Inf\"} 5\n"
                     "lat_seconds_sum{route=\"a\"} 106.75\n"
                     "lat_seconds_count{route=\"a\"} 5\n"
                     "lat_seconds_bucket{le=\"0.5\"} 0\n"
                     "lat_seconds_bucket{le=\"1\"} 0\n"
                     "lat_seconds_bucket{le=\"2.5\"} 0\n"
                     "lat_seconds_bucket{le=\"+Inf\"} 0\n"
                     "lat_seconds_sum 0\n"
                     "lat_seconds_count 0\n");
    metrics_free(m);
}

static void test_latency_buckets(void **state)
{
    (void)state;
    assert_int_equal(metrics_latency_buckets_count, 14);
    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    metrics_id h;
    assert_int_equal(metrics_histogram(m, "d_seconds", NULL, "", metrics_latency_buckets,
                                       metrics_latency_buckets_count, &h), 0);
    metrics_observe(metrics_worker(m, 0), h, 0.003);
    char *text = render(m);
    /* Bounds print in their shortest exact form. */
    assert_non_null(strstr(text, "d_seconds_bucket{le=\"0.0005\"} 0\n"
                                 "d_seconds_bucket{le=\"0.001\"} 0\n"
                                 "d_seconds_bucket{le=\"0.0025\"} 0\n"
                                 "d_seconds_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(strstr(text, "d_seconds_bucket{le=\"10\"} 1\n"
                                 "d_seconds_bucket{le=\"+Inf\"} 1\n"
                                 "d_seconds_sum 0.003\n"
                                 "d_seconds_count 1\n"));
    free(text);
    metrics_free(m);
}

static void test_registration_errors(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    metrics_id id;
    const double bounds[] = {1, 2};
    const double other[] = {1, 3};
    const double descending[] = {2, 1};
    const double inf[] = {1, INFINITY};
    const double nan[] = {NAN};

    assert_int_equal(metrics_counter(m, "x_total", NULL, "", &id), 0);
    assert_int_equal(metrics_gauge(m, "x_total", NULL, "", &id), -EINVAL);
    assert_int_equal(metrics_gauge(m, "x_total", NULL, "a=\"b\"", &id), -EINVAL);
    assert_int_equal(metrics_histogram(m, "h", NULL, "", bounds, 2, &id), 0);
    assert_int_equal(metrics_histogram(m, "h", NULL, "a=\"b\"", other, 2, &id), -EINVAL);
    assert_int_equal(metrics_histogram(m, "h", NULL, "a=\"b\"", bounds, 1, &id), -EINVAL);
    assert_int_equal(metrics_histogram(m, "h2", NULL, "", descending, 2, &id), -EINVAL);
    assert_int_equal(metrics_histogram(m, "h2", NULL, "", inf, 2, &id), -EINVAL);
    assert_int_equal(metrics_histogram(m, "h2", NULL, "", nan, 1, &id), -EINVAL);
    assert_int_equal(metrics_histogram(m, "h2", NULL, "le=\"1\"", bounds, 2, &id), -EINVAL);
    assert_int_equal(metrics_histogram(m, "h2", NULL, "a=\"1\",le=\"1\"", bounds, 2, &id), -EINVAL);
    /* "le" is fine on other types, and a name merely starting with le on histograms. */
    assert_int_equal(metrics_gauge(m, "g", NULL, "le=\"1\"", &id), 0);
    assert_int_equal(metrics_histogram(m, "h2", NULL, "lex=\"1\"", bounds, 2, &id), 0);

    static const char *const bad_names[] = {"", "1abc", "a-b", "a b", "a{"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        assert_int_equal(metrics_counter(m, bad_names[i], NULL, "", &id), -EINVAL);
    assert_int_equal(metrics_counter(m, "ns:sub_total", NULL, "", &id), 0);

    static const char *const bad_labels[] = {
        "a", "a=", "a=\"x", "a=x", "a=\"x\"y", "a=\"x\",", ",a=\"x\"", "a=\"x\" ,b=\"y\"",
        "a:b=\"x\"", "1a=\"x\"", "a=\"x\"y\"", "a=\"\\x\"", "a=\"line\nbreak\"", "{a=\"x\"}",
    };
    for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++)
        assert_int_equal(metrics_counter(m, "y_total", NULL, bad_labels[i], &id), -EINVAL);
    assert_int_equal(metrics_counter(m, "y_total", NULL, "a=\"\",b=\"\\\"\\\\\\n\"", &id), 0);
    metrics_free(m);
}

static void test_escaping(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(metrics_escape_label("plain", out, sizeof out), 5);
    assert_string_equal(out, "plain");
    assert_int_equal(metrics_escape_label("a\"b\\c\nd", out, sizeof out), 10);
    assert_string_equal(out, "a\\\"b\\\\c\\nd");
    assert_int_equal(metrics_escape_label("", out, sizeof out), 0);
    assert_string_equal(out, "");
    /* Exactly fits: 5 bytes + NUL. One less does not. */
    assert_int_equal(metrics_escape_label("ab\"c", out, 6), 5);
    assert_int_equal(metrics_escape_label("ab\"c", out, 5), -ENOSPC);
    assert_string_equal(out, "");
    assert_int_equal(metrics_escape_label("abcde", out, 5), -ENOSPC);

    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    char value[64], labels[96];
    assert_int_equal(metrics_escape_label("/a\"b\\", value, sizeof value), 7);
    snprintf(labels, sizeof labels, "path=\"%s\"", value);
    metrics_id id;
    assert_int_equal(metrics_counter(m, "p_total", "Back\\slash and\nnewline.", labels, &id), 0);
    metrics_shared_add(m, id, 1);
    assert_render(m, "# HELP p_total Back\\\\slash and\\nnewline.\n"
                     "# TYPE p_total counter\n"
                     "p_total{path=\"/a\\\"b\\\\\"} 1\n");
    metrics_free(m);
}

static void test_capacity_series(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    char labels[32];
    metrics_id id, first;
    assert_int_equal(metrics_counter(m, "c_total", NULL, "i=\"0\"", &first), 0);
    assert_int_not_equal(first, METRICS_ID_NONE);
    for (unsigned i = 1; i < METRICS_MAX_SERIES - 1; i++) {
        snprintf(labels, sizeof labels, "i=\"%u\"", i);
        assert_int_equal(metrics_counter(m, "c_total", NULL, labels, &id), 0);
        metrics_add(metrics_worker(m, 0), id, i);
    }
    assert_int_equal(metrics_counter(m, "c_total", NULL, "i=\"full\"", &id), -ENOSPC);
    assert_int_equal(metrics_gauge(m, "other", NULL, "", &id), -ENOSPC);
    /* Existing series are still found when full. */
    assert_int_equal(metrics_counter(m, "c_total", NULL, "i=\"0\"", &id), 0);
    assert_int_equal(id, first);

    char *text = render(m);
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, METRICS_MAX_SERIES); /* the TYPE line and all but METRICS_ID_NONE */
    snprintf(labels, sizeof labels, "c_total{i=\"%u\"} %u\n", METRICS_MAX_SERIES - 2,
             METRICS_MAX_SERIES - 2);
    assert_non_null(strstr(text, labels));
    free(text);
    metrics_free(m);
}

static void test_capacity_families_and_slots(void **state)
{
    (void)state;
    struct metrics *m = metrics_new(1);
    assert_non_null(m);
    char name[32];
    metrics_id id;
    for (unsigned i = 0; i < METRICS_MAX_FAMILIES; i++) {
        snprintf(name, sizeof name, "f%u", i);
        assert_int_equal(metrics_gauge(m, name, NULL, "", &id), 0);
    }
    assert_int_equal(metrics_gauge(m, "one_more", NULL, "", &id), -ENOSPC);
    assert_int_equal(metrics_gauge(m, "f0", NULL, "x=\"new series\"", &id), 0);
    metrics_free(m);

    /* Histograms of 64 bounds take 66 slots each. */
    m = metrics_new(1);
    assert_non_null(m);
    double bounds[METRICS_MAX_BOUNDS + 1];
    for (size_t i = 0; i <= METRICS_MAX_BOUNDS; i++)
        bounds[i] = (double)i;
    assert_int_equal(metrics_histogram(m, "h", NULL, "", bounds, METRICS_MAX_BOUNDS + 1, &id),
                     -EINVAL);
    unsigned fitted = 0;
    char labels[32];
    for (;; fitted++) {
        snprintf(labels, sizeof labels, "i=\"%u\"", fitted);
        int ret = metrics_histogram(m, "h", NULL, labels, bounds, METRICS_MAX_BOUNDS, &id);
        if (ret != 0) {
            assert_int_equal(ret, -ENOSPC);
            break;
        }
        metrics_observe(metrics_worker(m, 0), id, 1e9);
    }
    assert_int_equal(fitted, (METRICS_MAX_SLOTS - 2) / (METRICS_MAX_BOUNDS + 2));
    /* The remaining slots still take counters. */
    assert_int_equal(metrics_counter(m, "c_total", NULL, "", &id), 0);
    metrics_add(metrics_worker(m, 0), id, 1);
    char *text = render(m);
    assert_non_null(strstr(text, "\nc_total 1\n"));
    snprintf(labels, sizeof labels, "h_count{i=\"%u\"} 1\n", fitted - 1);
    assert_non_null(strstr(text, labels));
    free(text);
    metrics_free(m);
}

#define THREAD_ITERATIONS 200000

struct worker_arg {
    struct metrics_worker *w;
    metrics_id counter, gauge, histogram;
    int64_t sign;
};

static void *worker_main(void *p)
{
    struct worker_arg *a = p;
    for (int i = 0; i < THREAD_ITERATIONS; i++) {
        metrics_add(a->w, a->counter, 1);
        metrics_gauge_add(a->w, a->gauge, a->sign);
        metrics_observe(a->w, a->histogram, (i & 1) ? 0.5 : 2);
    }
    return NULL;
}

struct scraper_arg {
    struct metrics *m;
    bool *stop;
    unsigned scrapes;
    bool monotonic;
};

/* Scrapes while workers count: values must never go backwards or read torn. */
static void *scraper_main(void *p)
{
    struct scraper_arg *a = p;
    unsigned long long last = 0;
    a->monotonic = true;
    while (!__atomic_load_n(a->stop, __ATOMIC_ACQUIRE)) {
        size_t len;
        char *text = metrics_render(a->m, &len);
        if (!text)
            continue;
        const char *line = strstr(text, "\nops_total ");
        unsigned long long v = line ? strtoull(line + 11, NULL, 10) : 0;
        if (!line || v < last || v > 4ull * THREAD_ITERATIONS)
            a->monotonic = false;
        last = v;
        a->scrapes++;
        free(text);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    enum { N = 4 };
    struct metrics *m = metrics_new(N);
    assert_non_null(m);
    metrics_id counter, gauge, histogram;
    const double bounds[] = {1};
    assert_int_equal(metrics_counter(m, "ops_total", "Ops.", "", &counter), 0);
    assert_int_equal(metrics_gauge(m, "level", "Level.", "", &gauge), 0);
    assert_int_equal(metrics_histogram(m, "size", "Size.", "", bounds, 1, &histogram), 0);

    bool stop = false;
    struct scraper_arg scraper = {.m = m, .stop = &stop};
    pthread_t scraper_thread;
    assert_int_equal(pthread_create(&scraper_thread, NULL, scraper_main, &scraper), 0);

    pthread_t threads[N];
    struct worker_arg args[N];
    for (unsigned i = 0; i < N; i++) {
        args[i] = (struct worker_arg){metrics_worker(m, i), counter, gauge, histogram,
                                      i == 0 ? -1 : 1};
        assert_int_equal(pthread_create(&threads[i], NULL, worker_main, &args[i]), 0);
    }
    /* Registration while workers count and scrapes run. */
    for (int i = 0; i < 100; i++) {
        char labels[32];
        metrics_id id;
        snprintf(labels, sizeof labels, "n=\"%d\"", i);
        assert_int_equal(metrics_counter(m, "late_total", NULL, labels, &id), 0);
    }
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    __atomic_store_n(&stop, true, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(scraper_thread, NULL), 0);
    assert_true(scraper.monotonic);
    assert_true(scraper.scrapes > 0);

    char *text = render(m);
    char expected[512];
    snprintf(expected, sizeof expected,
             "# HELP ops_total Ops.\n# TYPE ops_total counter\nops_total %d\n"
             "# HELP level Level.\n# TYPE level gauge\nlevel %d\n"
             "# HELP size Size.\n# TYPE size histogram\n"
             "size_bucket{le=\"1\"} %d\nsize_bucket{le=\"+Inf\"} %d\n"
             "size_sum %d\nsize_count %d\n",
             N * THREAD_ITERATIONS, (N - 2) * THREAD_ITERATIONS, N * THREAD_ITERATIONS / 2,
             N * THREAD_ITERATIONS, N * THREAD_ITERATIONS / 2 * 5 / 2, N * THREAD_ITERATIONS);
    assert_memory_equal(text, expected, strlen(expected));
    assert_non_null(strstr(text, "late_total{n=\"99\"} 0\n"));
    free(text);
    metrics_free(m);
}

/* The exposition must parse and lint clean for Prometheus's own checker. */
static void test_promtool(void **state)
{
    (void)state;
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        print_message("promtool not found; skipping the promtool check\n");
        skip();
    }
    struct metrics *m = metrics_new(2);
    assert_non_null(m);
    metrics_id id;
    char value[64], labels[128];
    assert_int_equal(metrics_escape_label("we\"ird\\ro\nute", value, sizeof value), 16);
    snprintf(labels, sizeof labels, "route=\"%s\",method=\"GET\",code=\"200\"", value);
    assert_int_equal(metrics_counter(m, "ringside_requests_total", "Requests.", labels, &id), 0);
    metrics_add(metrics_worker(m, 1), id, 5);
    assert_int_equal(metrics_counter(m, "ringside_requests_total", "Requests.",
                                     "route=\"api\",method=\"GET\",code=\"200\"", &id), 0);
    metrics_add(metrics_worker(m, 0), id, 1);
    assert_int_equal(metrics_gauge(m, "ringside_connections", "Open connections.", "", &id), 0);
    metrics_gauge_add(metrics_worker(m, 0), id, 3);
    assert_int_equal(metrics_gauge(m, "ringside_build_info", "Build.", "version=\"0.1.0\"", &id),
                     0);
    metrics_shared_set(m, id, 1);
    assert_int_equal(metrics_histogram(m, "ringside_request_duration_seconds", "Durations.",
                                       "route=\"api\"", metrics_latency_buckets,
                                       metrics_latency_buckets_count, &id), 0);
    metrics_observe(metrics_worker(m, 0), id, 0.0123);
    metrics_observe(metrics_worker(m, 1), id, 42);
    assert_int_equal(metrics_histogram(m, "ringside_request_duration_seconds", "Durations.",
                                       "route=\"ws\"", metrics_latency_buckets,
                                       metrics_latency_buckets_count, &id), 0);

    const char *tmpdir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/ringside-metrics-XXXXXX", tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len;
    char *text = metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    free(text);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    int status = system(cmd);
    unlink(path);
    assert_int_equal(status, 0);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_id_none),
        cmocka_unit_test(test_counter_render),
        cmocka_unit_test(test_families_grouped),
        cmocka_unit_test(test_gauge),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_latency_buckets),
        cmocka_unit_test(test_registration_errors),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_capacity_series),
        cmocka_unit_test(test_capacity_families_and_slots),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
