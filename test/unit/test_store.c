/* The in-memory cache store: the byte bound, replacement and variants, eviction order,
 * purges, references, and threads working on it at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cache/entry.h"
#include "cache/store.h"

static const enum cache_evict_policy all_policies[] = {CACHE_EVICT_S3FIFO, CACHE_EVICT_LRU,
                                                       CACHE_EVICT_SIEVE};
#define NUM_POLICIES (sizeof(all_policies) / sizeof(all_policies[0]))

/* Body bytes follow from the key hash, so a reader can tell a live body from a freed or
 * foreign one. */
static char body_byte(uint64_t hash, size_t i)
{
    return (char)((hash >> (i % 7 * 8)) + i);
}

static struct cache_entry *make_entry(const char *key, const char *vary, const char *variant,
                                      const char *tags, size_t body_len)
{
    struct cache_entry *e = cache_entry_new();
    assert_non_null(e);
    assert_int_equal(cache_entry_set_key(e, key, strlen(key)), 0);
    if (vary != NULL)
        assert_non_null(e->vary = strdup(vary));
    if (variant != NULL) {
        assert_non_null(e->variant = strdup(variant));
        e->variant_len = (uint32_t)strlen(variant);
    }
    if (tags != NULL)
        assert_non_null(e->tags = strdup(tags));
    e->status = 200;
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n";
    assert_non_null(e->head = slice_copy(head, sizeof(head) - 1));
    if (body_len > 0) {
        assert_non_null(e->body = slice_new(body_len));
        for (size_t i = 0; i < body_len; i++)
            e->body->data[i] = body_byte(e->hash, i);
    }
    cache_entry_finish(e);
    return e;
}

static bool body_intact(const struct cache_entry *e)
{
    if (e->body == NULL)
        return true;
    for (size_t i = 0; i < e->body->len; i += 1 + i / 2)
        if (e->body->data[i] != body_byte(e->hash, i))
            return false;
    return e->body->data[e->body->len - 1] == body_byte(e->hash, e->body->len - 1);
}

static struct cache_store *new_store(size_t memory, size_t max_object, unsigned shards,
                                     enum cache_evict_policy policy)
{
    struct cache_store_options o = {
        .memory = memory, .max_object = max_object, .shards = shards, .policy = policy};
    struct cache_store *s = NULL;
    assert_int_equal(cache_store_new(&o, &s), 0);
    assert_non_null(s);
    return s;
}

static bool match_identity(const struct cache_entry *e, void *arg)
{
    return e == arg;
}

static bool match_variant(const struct cache_entry *e, void *arg)
{
    const char *v = arg;
    if (v == NULL)
        return e->vary == NULL;
    return e->vary != NULL && e->variant_len == strlen(v) &&
           memcmp(e->variant, v, e->variant_len) == 0;
}

/* Whether exactly this entry is stored. A get: it counts as an access. */
static bool stored(struct cache_store *s, struct cache_entry *e)
{
    struct cache_entry *got = cache_store_get(s, e->hash, e->key, e->key_len, match_identity, e);
    if (got == NULL)
        return false;
    cache_entry_unref(got);
    return true;
}

static bool key_stored(struct cache_store *s, const char *key)
{
    size_t len = strlen(key);
    struct cache_entry *got = cache_store_get(s, cache_key_hash(key, len), key, len, NULL, NULL);
    if (got == NULL)
        return false;
    cache_entry_unref(got);
    return true;
}

static uint32_t refs(const struct cache_entry *e)
{
    return atomic_load(&((struct cache_entry *)e)->refs);
}

static void assert_consistent(struct cache_store *s)
{
    struct cache_store_stats audit, stats;
    assert_int_equal(cache_store__audit(s, &audit), 0);
    cache_store_stats(s, &stats);
    assert_int_equal(audit.objects, stats.objects);
    assert_true(audit.bytes <= stats.bytes);
    assert_int_equal(audit.evictions, stats.evictions);
}

static void test_new_rejects_bad_options(void **state)
{
    (void)state;
    struct cache_store *s = NULL;
    struct cache_store_options o = {.memory = 0};
    assert_int_equal(cache_store_new(&o, &s), -EINVAL);
    o = (struct cache_store_options){.memory = 4096, .shards = 3};
    assert_int_equal(cache_store_new(&o, &s), -EINVAL);
    o = (struct cache_store_options){.memory = 4096, .shards = 1u << 17};
    assert_int_equal(cache_store_new(&o, &s), -EINVAL);
    o = (struct cache_store_options){.memory = 4096, .policy = (enum cache_evict_policy)42};
    assert_int_equal(cache_store_new(&o, &s), -EINVAL);
    assert_null(s);
    o = (struct cache_store_options){.memory = 4096}; /* default shards */
    assert_int_equal(cache_store_new(&o, &s), 0);
    assert_non_null(s);
    cache_store_free(s);
}

/* Random keys, variants and sizes; after every put the bound holds, the accounting agrees
 * with a walk of the store and with the entries this test can still find in it. */
static void test_bound_holds_after_every_put(void **state)
{
    (void)state;
    enum { PUTS = 3000, KEYS = 250, TRACK = PUTS };
    const size_t memory = 96 * 1024;
    const unsigned shard_counts[] = {1, 4, 16};
    for (size_t p = 0; p < NUM_POLICIES; p++) {
        for (size_t sc = 0; sc < 3; sc++) {
            struct cache_store *s = new_store(memory, 0, shard_counts[sc], all_policies[p]);
            /* Entries that may still be stored; one found missing never comes back. */
            static struct cache_entry *maybe[TRACK];
            size_t nmaybe = 0;
            srand(11 + (unsigned)(p * 3 + sc));
            for (int i = 0; i < PUTS; i++) {
                char key[64], variant[16];
                int k = rand() % KEYS;
                snprintf(key, sizeof(key), "h\n/obj/%d\n", k);
                snprintf(variant, sizeof(variant), "v%d", rand() % 3);
                bool vary = k % 5 == 0;
                /* Mostly small, some large: sizes differ by two orders of magnitude. */
                size_t len = rand() % 10 == 0 ? 4000 + (size_t)(rand() % 20000)
                                              : (size_t)(rand() % 1500);
                struct cache_entry *e = make_entry(key, vary ? "accept" : NULL,
                                                   vary ? variant : NULL, NULL, len);
                assert_int_equal(cache_store_put(s, e), 0);
                assert_true(stored(s, e));
                maybe[nmaybe++] = e;

                struct cache_store_stats st, audit;
                cache_store_stats(s, &st);
                assert_true(st.bytes <= memory);
                assert_int_equal(cache_store__audit(s, &audit), 0);
                size_t sum = 0, count = 0, kept = 0;
                for (size_t j = 0; j < nmaybe; j++) {
                    if (stored(s, maybe[j])) {
                        sum += cache_store_charge(s, maybe[j]);
                        count++;
                        maybe[kept++] = maybe[j];
                    } else {
                        cache_entry_unref(maybe[j]);
                    }
                }
                nmaybe = kept;
                assert_true(sum <= memory);
                assert_int_equal(sum, audit.bytes);
                assert_int_equal(count, audit.objects);
                assert_int_equal(count, st.objects);
            }
            struct cache_store_stats st;
            cache_store_stats(s, &st);
            /* It did evict, and it kept the store reasonably full while doing so. */
            assert_true(st.evictions > 0);
            assert_true(st.bytes > memory / 2);
            for (size_t j = 0; j < nmaybe; j++)
                cache_entry_unref(maybe[j]);
            cache_store_free(s);
        }
    }
}

static void test_oversize_refused(void **state)
{
    (void)state;
    struct cache_entry *small = make_entry("h\n/small\n", NULL, NULL, NULL, 100);
    struct cache_entry *big = make_entry("h\n/big\n", NULL, NULL, NULL, 5000);
    struct cache_store *s = new_store(64 * 1024, 2000, 1, CACHE_EVICT_S3FIFO);
    assert_int_equal(cache_store_put(s, small), 0);
    assert_int_equal(cache_store_put(s, big), -E2BIG);
    assert_false(stored(s, big));
    assert_true(stored(s, small));
    assert_int_equal(refs(big), 1);
    cache_store_free(s);

    /* No max_object: the memory bound itself refuses what cannot fit at all, and takes
     * what fits exactly. */
    s = new_store(cache_store_charge(NULL, big) - 1, 0, 1, CACHE_EVICT_LRU);
    assert_int_equal(cache_store_put(s, big), -E2BIG);
    cache_store_free(s);
    s = new_store(cache_store_charge(NULL, big), 0, 1, CACHE_EVICT_LRU);
    assert_int_equal(cache_store_put(s, small), 0);
    assert_int_equal(cache_store_put(s, big), 0);
    assert_false(stored(s, small));
    assert_true(stored(s, big));
    struct cache_store_stats st;
    cache_store_stats(s, &st);
    assert_int_equal(st.bytes, cache_store_charge(s, big));
    assert_int_equal(st.evictions, 1);
    cache_store_free(s);
    assert_int_equal(refs(big), 1);
    assert_int_equal(refs(small), 1);
    cache_entry_unref(small);
    cache_entry_unref(big);
}

/* An object larger than one shard's share takes its room from the others: the store does
 * not refuse it, does not empty itself for it, and the bound holds. */
static void test_large_object_takes_room_from_other_shards(void **state)
{
    (void)state;
    const size_t memory = 64 * 1024;
    for (size_t p = 0; p < NUM_POLICIES; p++) {
        struct cache_store *s = new_store(memory, 0, 8, all_policies[p]);
        for (int i = 0; i < 300; i++) {
            char key[32];
            snprintf(key, sizeof(key), "h\n/small/%d\n", i);
            struct cache_entry *e = make_entry(key, NULL, NULL, NULL, 500);
            assert_int_equal(cache_store_put(s, e), 0);
            cache_entry_unref(e);
        }
        struct cache_entry *big = make_entry("h\n/big\n", NULL, NULL, NULL, 30 * 1024);
        assert_true(cache_store_charge(s, big) > 3 * (memory / 8));
        assert_int_equal(cache_store_put(s, big), 0);
        assert_true(stored(s, big));
        struct cache_store_stats st;
        cache_store_stats(s, &st);
        assert_true(st.bytes <= memory);
        assert_true(st.bytes > memory / 2 + 8 * 1024);
        assert_true(st.objects > 20);
        assert_consistent(s);
        cache_store_free(s);
        cache_entry_unref(big);
    }
}

static void test_replace_and_variants(void **state)
{
    (void)state;
    for (size_t p = 0; p < NUM_POLICIES; p++) {
        struct cache_store *s = new_store(1 << 20, 0, 4, all_policies[p]);
        const char *key = "h\n/page\n";
        size_t klen = strlen(key);
        uint64_t hash = cache_key_hash(key, klen);

        struct cache_entry *a = make_entry(key, NULL, NULL, NULL, 10);
        struct cache_entry *b = make_entry(key, NULL, NULL, NULL, 20);
        assert_int_equal(cache_store_put(s, a), 0);
        assert_int_equal(refs(a), 2);
        assert_int_equal(cache_store_put(s, b), 0);
        assert_int_equal(refs(a), 1); /* replaced: the store let go */
        struct cache_entry *got = cache_store_get(s, hash, key, klen, NULL, NULL);
        assert_ptr_equal(got, b);
        cache_entry_unref(got);

        /* Variants of the same key coexist with each other and with the one without Vary. */
        struct cache_entry *gz = make_entry(key, "accept-encoding", "gzip", NULL, 30);
        struct cache_entry *br = make_entry(key, "accept-encoding", "br", NULL, 40);
        struct cache_entry *gz2 = make_entry(key, "accept-encoding", "gzip", NULL, 50);
        assert_int_equal(cache_store_put(s, gz), 0);
        assert_int_equal(cache_store_put(s, br), 0);
        struct cache_store_stats st;
        cache_store_stats(s, &st);
        assert_int_equal(st.objects, 3);
        got = cache_store_get(s, hash, key, klen, match_variant, "gzip");
        assert_ptr_equal(got, gz);
        cache_entry_unref(got);
        got = cache_store_get(s, hash, key, klen, match_variant, "br");
        assert_ptr_equal(got, br);
        cache_entry_unref(got);
        got = cache_store_get(s, hash, key, klen, match_variant, NULL);
        assert_ptr_equal(got, b);
        cache_entry_unref(got);
        assert_null(cache_store_get(s, hash, key, klen, match_variant, "deflate"));
        /* A key that differs only in length must not match. */
        assert_null(cache_store_get(s, hash, key, klen - 1, NULL, NULL));

        /* Same key and variant bytes: replaced; the others stay. */
        assert_int_equal(cache_store_put(s, gz2), 0);
        assert_int_equal(refs(gz), 1);
        got = cache_store_get(s, hash, key, klen, match_variant, "gzip");
        assert_ptr_equal(got, gz2);
        cache_entry_unref(got);
        cache_store_stats(s, &st);
        assert_int_equal(st.objects, 3);
        assert_int_equal(st.bytes, cache_store_charge(s, b) + cache_store_charge(s, br) +
                                       cache_store_charge(s, gz2));
        assert_consistent(s);

        assert_int_equal(cache_store_purge_key(s, hash, key, klen), 3);
        assert_null(cache_store_get(s, hash, key, klen, NULL, NULL));
        assert_int_equal(cache_store_purge_key(s, hash, key, klen), 0);
        assert_consistent(s);
        cache_store_free(s);
        assert_int_equal(refs(b), 1);
        assert_int_equal(refs(br), 1);
        assert_int_equal(refs(gz2), 1);
        cache_entry_unref(a);
        cache_entry_unref(b);
        cache_entry_unref(gz);
        cache_entry_unref(br);
        cache_entry_unref(gz2);
    }
}

/* Put a hot key, get it `hits` times, then scan n one-time keys through the store.
 * Returns whether the hot key is still stored. */
static bool hot_survives_scan(enum cache_evict_policy policy, int hits, int n)
{
    struct cache_entry *sample = make_entry("h\n/scan/00000\n", NULL, NULL, NULL, 1000);
    size_t memory = 40 * cache_store_charge(NULL, sample);
    cache_entry_unref(sample);
    struct cache_store *s = new_store(memory, 0, 1, policy);
    struct cache_entry *hot = make_entry("h\n/hot\n", NULL, NULL, NULL, 1000);
    assert_int_equal(cache_store_put(s, hot), 0);
    for (int i = 0; i < hits; i++)
        assert_true(stored(s, hot));
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "h\n/scan/%05d\n", i);
        struct cache_entry *e = make_entry(key, NULL, NULL, NULL, 1000);
        assert_int_equal(cache_store_put(s, e), 0);
        cache_entry_unref(e);
    }
    struct cache_store_stats st;
    cache_store_stats(s, &st);
    assert_true(st.evictions >= (uint64_t)(n - 40));
    assert_consistent(s);
    bool alive = key_stored(s, "h\n/hot\n");
    cache_store_free(s);
    cache_entry_unref(hot);
    return alive;
}

static void test_get_counts_as_access(void **state)
{
    (void)state;
    /* S3-FIFO: hit entries leave the small queue for main; a scan passes through small. */
    assert_true(hot_survives_scan(CACHE_EVICT_S3FIFO, 3, 1000));
    assert_false(hot_survives_scan(CACHE_EVICT_S3FIFO, 0, 1000));
    /* SIEVE: the hand clears a visited entry's bit and moves on toward the head; a scan of
     * unvisited entries keeps it chasing the head, so it never comes back for the hot one.
     * Unvisited, the hot entry is the first to go. */
    assert_true(hot_survives_scan(CACHE_EVICT_SIEVE, 1, 1000));
    assert_false(hot_survives_scan(CACHE_EVICT_SIEVE, 0, 41));
    /* LRU: a scan longer than the cache flushes even a hot entry. */
    assert_false(hot_survives_scan(CACHE_EVICT_LRU, 3, 1000));

    /* LRU order: the entry got last is evicted last. */
    struct cache_entry *e[4];
    for (int i = 0; i < 4; i++) {
        char key[16];
        snprintf(key, sizeof(key), "h\n/%d\n", i);
        e[i] = make_entry(key, NULL, NULL, NULL, 500);
    }
    struct cache_store *s = new_store(3 * cache_store_charge(NULL, e[0]), 0, 1, CACHE_EVICT_LRU);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cache_store_put(s, e[i]), 0);
    assert_true(stored(s, e[0]));
    assert_int_equal(cache_store_put(s, e[3]), 0);
    assert_true(stored(s, e[0]));
    assert_false(stored(s, e[1]));
    assert_true(stored(s, e[2]));
    cache_store_free(s);
    for (int i = 0; i < 4; i++)
        cache_entry_unref(e[i]);
}

/* A purge returns how many went and exactly those are gone. */
static void test_purge_prefix(void **state)
{
    (void)state;
    static const char *const keys[] = {
        "a.example\n/api/x\n",      "a.example\n/api/y?q=1\nbr", "b.example\n/api/z\n",
        "a.example\n/static/s.css\n", "b.example\n/apix\n",        "\n/api/nohost\n",
        "a.example\n/\n",
    };
    enum { N = sizeof(keys) / sizeof(keys[0]) };
    for (size_t p = 0; p < NUM_POLICIES; p++) {
        struct cache_store *s = new_store(1 << 20, 0, 8, all_policies[p]);
        struct cache_entry *e[N];
        for (int i = 0; i < N; i++) {
            e[i] = make_entry(keys[i], NULL, NULL, NULL, 64);
            assert_int_equal(cache_store_put(s, e[i]), 0);
        }
        assert_int_equal(cache_store_purge_prefix(s, "a.example", "/api/"), 2);
        assert_false(stored(s, e[0]));
        assert_false(stored(s, e[1]));
        assert_true(stored(s, e[2]));
        assert_true(stored(s, e[5]));
        assert_int_equal(cache_store_purge_prefix(s, NULL, "/api/"), 2); /* b.example, no host */
        assert_false(stored(s, e[2]));
        assert_false(stored(s, e[5]));
        assert_true(stored(s, e[4])); /* "/apix" is not under "/api/" */
        assert_int_equal(cache_store_purge_prefix(s, "b.example", "/static"), 0);
        assert_int_equal(cache_store_purge_prefix(s, "a.exampl", "/"), 0);
        assert_int_equal(cache_store_purge_prefix(s, NULL, "/api"), 1);
        assert_false(stored(s, e[4]));
        assert_int_equal(cache_store_purge_prefix(s, "a.example", ""), 2);
        assert_false(stored(s, e[3]));
        assert_false(stored(s, e[6]));
        struct cache_store_stats st;
        cache_store_stats(s, &st);
        assert_int_equal(st.objects, 0);
        assert_int_equal(st.bytes, 0);
        assert_int_equal(st.evictions, 0);
        assert_consistent(s);
        cache_store_free(s);
        for (int i = 0; i < N; i++) {
            assert_int_equal(refs(e[i]), 1);
            cache_entry_unref(e[i]);
        }
    }
}

static void test_purge_tag(void **state)
{
    (void)state;
    struct cache_store *s = new_store(1 << 20, 0, 4, CACHE_EVICT_S3FIFO);
    struct cache_entry *e[5] = {
        make_entry("h\n/1\n", NULL, NULL, "a b product-1", 10),
        make_entry("h\n/2\n", NULL, NULL, "product-10", 10),
        make_entry("h\n/3\n", NULL, NULL, "product-1", 10),
        make_entry("h\n/4\n", NULL, NULL, NULL, 10),
        make_entry("h\n/5\n", NULL, NULL, "product-1x b", 10),
    };
    for (int i = 0; i < 5; i++)
        assert_int_equal(cache_store_put(s, e[i]), 0);
    assert_int_equal(cache_store_purge_tag(s, "product-1"), 2);
    assert_false(stored(s, e[0]));
    assert_true(stored(s, e[1]));
    assert_false(stored(s, e[2]));
    assert_true(stored(s, e[3]));
    assert_int_equal(cache_store_purge_tag(s, ""), 0);
    assert_int_equal(cache_store_purge_tag(s, "product"), 0);
    assert_int_equal(cache_store_purge_tag(s, "b"), 1);
    assert_false(stored(s, e[4]));
    assert_true(stored(s, e[1]));
    assert_consistent(s);
    cache_store_free(s);
    for (int i = 0; i < 5; i++)
        cache_entry_unref(e[i]);
}

/* Stats follow puts and purges, and many entries in few shards make the tables grow
 * (paid for in bytes) and a purge gives all of it back. */
static void test_stats_and_purge_all(void **state)
{
    (void)state;
    enum { N = 3000 };
    for (size_t p = 0; p < NUM_POLICIES; p++) {
        struct cache_store *s = new_store(64u << 20, 0, 2, all_policies[p]);
        size_t sum = 0;
        for (int i = 0; i < N; i++) {
            char key[32];
            snprintf(key, sizeof(key), "h\n/n/%d\n", i);
            struct cache_entry *e = make_entry(key, NULL, NULL, NULL, (size_t)i % 300);
            assert_int_equal(cache_store_put(s, e), 0);
            sum += cache_store_charge(s, e);
            cache_entry_unref(e);
        }
        struct cache_store_stats st, audit;
        cache_store_stats(s, &st);
        assert_int_equal(st.objects, N);
        assert_int_equal(st.evictions, 0);
        assert_int_equal(cache_store__audit(s, &audit), 0);
        assert_int_equal(audit.bytes, sum);
        assert_true(st.bytes > sum); /* the grown tables */
        assert_true(st.bytes < sum + N * 64);
        assert_true(key_stored(s, "h\n/n/1234\n"));
        assert_int_equal(cache_store_purge_all(s), N);
        cache_store_stats(s, &st);
        assert_int_equal(st.objects, 0);
        assert_int_equal(st.bytes, 0);
        assert_false(key_stored(s, "h\n/n/1234\n"));
        assert_int_equal(cache_store_purge_all(s), 0);
        assert_consistent(s);
        cache_store_free(s);
    }
}

static void test_remove(void **state)
{
    (void)state;
    struct cache_store *s = new_store(1 << 20, 0, 4, CACHE_EVICT_S3FIFO);
    struct cache_entry *old = make_entry("h\n/r\n", NULL, NULL, NULL, 10);
    struct cache_entry *new = make_entry("h\n/r\n", NULL, NULL, NULL, 10);
    struct cache_entry *other = make_entry("h\n/other\n", NULL, NULL, NULL, 10);
    assert_int_equal(cache_store_put(s, old), 0);
    assert_int_equal(cache_store_put(s, other), 0);
    assert_int_equal(cache_store_put(s, new), 0);
    /* A reader that found the old entry stale must not remove its replacement. */
    assert_int_equal(cache_store_remove(s, old), 0);
    assert_true(stored(s, new));
    assert_int_equal(cache_store_remove(s, new), 1);
    assert_int_equal(cache_store_remove(s, new), 0);
    assert_false(key_stored(s, "h\n/r\n"));
    assert_true(stored(s, other));
    assert_int_equal(refs(new), 1);
    struct cache_store_stats st;
    cache_store_stats(s, &st);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.bytes, cache_store_charge(s, other));
    assert_consistent(s);
    cache_store_free(s);
    assert_int_equal(refs(other), 1);
    cache_entry_unref(old);
    cache_entry_unref(new);
    cache_entry_unref(other);
}

/* What a reader got stays valid after the store lets go, until the reader does. Freed
 * bytes would show under ASan and in the body check. */
static void test_reader_outlives_eviction_and_purge(void **state)
{
    (void)state;
    for (size_t p = 0; p < NUM_POLICIES; p++) {
        struct cache_entry *e = make_entry("h\n/held\n", NULL, NULL, NULL, 3000);
        struct cache_store *s = new_store(8 * cache_store_charge(NULL, e), 0, 2, all_policies[p]);
        assert_int_equal(cache_store_put(s, e), 0);
        cache_entry_unref(e); /* the store's is the only reference now */
        struct cache_entry *got =
            cache_store_get(s, cache_key_hash("h\n/held\n", 8), "h\n/held\n", 8, NULL, NULL);
        assert_non_null(got);
        assert_int_equal(refs(got), 2);
        /* Push it out with entries that are used as much as it was (a scan of unused
         * ones would leave it alone under SIEVE). */
        for (int i = 0; i < 100; i++) {
            char key[32];
            snprintf(key, sizeof(key), "h\n/push/%d\n", i);
            struct cache_entry *x = make_entry(key, NULL, NULL, NULL, 3000);
            assert_int_equal(cache_store_put(s, x), 0);
            assert_true(stored(s, x));
            cache_entry_unref(x);
        }
        assert_false(key_stored(s, "h\n/held\n"));
        assert_int_equal(refs(got), 1);
        assert_true(body_intact(got));
        assert_string_equal(got->key, "h\n/held\n");
        cache_entry_unref(got);

        /* The same through a purge. */
        struct cache_entry *y = make_entry("h\n/purged\n", NULL, NULL, NULL, 3000);
        assert_int_equal(cache_store_put(s, y), 0);
        cache_entry_unref(y);
        got = cache_store_get(s, cache_key_hash("h\n/purged\n", 10), "h\n/purged\n", 10, NULL,
                              NULL);
        assert_non_null(got);
        assert_true(cache_store_purge_all(s) > 0);
        assert_int_equal(refs(got), 1);
        assert_true(body_intact(got));
        cache_entry_unref(got);
        cache_store_free(s);
    }
}

/* Threads get, put, remove and purge at once; readers check every entry they get, a
 * watcher checks the bound all along. */
struct worker_arg {
    struct cache_store *s;
    unsigned seed;
    int ops;
    _Atomic bool *failed;
    _Atomic uint64_t *hits;
};

#define THREAD_KEYS 400
#define THREAD_MEMORY (256u * 1024)

static void report_failure(_Atomic bool *failed, const char *what)
{
    fprintf(stderr, "concurrent: %s\n", what);
    atomic_store(failed, true);
}

static void *store_worker(void *p)
{
    struct worker_arg *a = p;
    unsigned seed = a->seed;
    uint64_t hits = 0;
    for (int i = 0; i < a->ops && !atomic_load(a->failed); i++) {
        char key[64];
        int k = rand_r(&seed) % THREAD_KEYS;
        int len = snprintf(key, sizeof(key), "host%d\n/t/%d\n", k % 3, k);
        uint64_t hash = cache_key_hash(key, (size_t)len);
        int op = rand_r(&seed) % 100;
        if (op < 60) {
            struct cache_entry *e = cache_store_get(a->s, hash, key, (size_t)len, NULL, NULL);
            if (e == NULL)
                continue;
            hits++;
            if (e->key_len != (uint32_t)len || memcmp(e->key, key, (size_t)len) != 0 ||
                !body_intact(e))
                report_failure(a->failed, "got a wrong or damaged entry");
            if (op < 3)
                cache_store_remove(a->s, e);
            cache_entry_unref(e);
        } else if (op < 95) {
            size_t body = rand_r(&seed) % 8 == 0 ? 8000 + (size_t)(rand_r(&seed) % 16000)
                                                 : (size_t)(rand_r(&seed) % 2000);
            char variant[8];
            snprintf(variant, sizeof(variant), "%d", rand_r(&seed) % 2);
            struct cache_entry *e = make_entry(key, k % 4 == 0 ? "accept" : NULL,
                                               k % 4 == 0 ? variant : NULL,
                                               k % 2 ? "odd all" : "even all", body);
            if (cache_store_put(a->s, e) != 0)
                report_failure(a->failed, "put failed");
            cache_entry_unref(e);
        } else if (op < 98) {
            cache_store_purge_key(a->s, hash, key, (size_t)len);
        } else if (op < 99) {
            cache_store_purge_prefix(a->s, rand_r(&seed) % 2 ? "host1" : NULL, "/t/1");
        } else {
            cache_store_purge_tag(a->s, "odd");
        }
    }
    atomic_fetch_add(a->hits, hits);
    return NULL;
}

struct watcher_arg {
    struct cache_store *s;
    _Atomic bool *stop;
    _Atomic bool *failed;
    uint64_t checks;
};

static void *bound_watcher(void *p)
{
    struct watcher_arg *w = p;
    while (!atomic_load(w->stop)) {
        struct cache_store_stats st;
        cache_store_stats(w->s, &st);
        if (st.bytes > THREAD_MEMORY)
            report_failure(w->failed, "bound exceeded");
        w->checks++;
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    enum { THREADS = 4, OPS = 30000 };
    for (size_t p = 0; p < NUM_POLICIES; p++) {
        struct cache_store *s = new_store(THREAD_MEMORY, 0, 8, all_policies[p]);
        _Atomic bool failed = false, stop = false;
        _Atomic uint64_t hits = 0;
        pthread_t threads[THREADS], watcher;
        struct worker_arg args[THREADS];
        struct watcher_arg w = {.s = s, .stop = &stop, .failed = &failed};
        assert_int_equal(pthread_create(&watcher, NULL, bound_watcher, &w), 0);
        for (int i = 0; i < THREADS; i++) {
            args[i] = (struct worker_arg){.s = s, .seed = (unsigned)(i * 7919 + p), .ops = OPS,
                                          .failed = &failed, .hits = &hits};
            assert_int_equal(pthread_create(&threads[i], NULL, store_worker, &args[i]), 0);
        }
        for (int i = 0; i < THREADS; i++)
            assert_int_equal(pthread_join(threads[i], NULL), 0);
        atomic_store(&stop, true);
        assert_int_equal(pthread_join(watcher, NULL), 0);
        assert_false(atomic_load(&failed));
        assert_true(w.checks > 0);
        assert_true(atomic_load(&hits) > 1000); /* the threads did share entries */

        struct cache_store_stats st;
        cache_store_stats(s, &st);
        assert_true(st.evictions > 0);
        assert_true(st.bytes <= THREAD_MEMORY);
        assert_consistent(s);
        assert_int_equal(cache_store_purge_all(s), st.objects);
        cache_store_stats(s, &st);
        assert_int_equal(st.bytes, 0);
        cache_store_free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_rejects_bad_options),
        cmocka_unit_test(test_bound_holds_after_every_put),
        cmocka_unit_test(test_oversize_refused),
        cmocka_unit_test(test_large_object_takes_room_from_other_shards),
        cmocka_unit_test(test_replace_and_variants),
        cmocka_unit_test(test_get_counts_as_access),
        cmocka_unit_test(test_purge_prefix),
        cmocka_unit_test(test_purge_tag),
        cmocka_unit_test(test_stats_and_purge_all),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_reader_outlives_eviction_and_purge),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
