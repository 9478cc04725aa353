/* A cached response: what the store keeps, the Redis codec serialises and hits send.
 *
 * An entry is built by one thread, then published (inserted into the store) and never
 * changed again: a 304 that refreshes it builds a new entry that shares the body slice.
 * Readers on any worker hold a reference while they look at it; a hit sends the head and
 * body slices themselves (slice references), so it needs no entry reference once queued.
 *
 * Times are wall-clock seconds (HTTP's resolution), so entries keep their meaning when
 * another pod reads them from Redis. */
#ifndef RINGSIDE_CACHE_ENTRY_H
#define RINGSIDE_CACHE_ENTRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/slice.h"

enum cache_entry_flags {
    CACHE_ENTRY_MUST_REVALIDATE = 1u << 0, /* must-revalidate / proxy-revalidate / s-maxage */
    CACHE_ENTRY_NO_CACHE = 1u << 1,        /* stored, but validated before every use */
};

struct cache_entry {
    _Atomic uint32_t refs;

    /* identity */
    uint64_t hash;          /* of key (XXH3-64) */
    char *key;              /* primary key, NUL-terminated; key_len excludes the NUL */
    uint32_t key_len;
    char *vary;             /* lowercase field names from Vary, ", "-joined; NULL: none */
    char *variant;          /* the request's values for those names (policy_variant) */
    uint32_t variant_len;
    char *tags;             /* surrogate keys, single-space-separated; NULL: none */

    /* response */
    uint16_t status;
    /* Status line and stored fields, each line ending in CRLF, including Content-Length,
     * excluding Age, hop-by-hop fields and the blank line that ends the head. */
    struct slice *head;
    struct slice *body;     /* NULL when the body is empty */
    char *etag;             /* as the backend sent it (quotes, W/), NULL: none */
    int64_t last_modified;  /* -1: none */

    /* freshness (RFC 9111 §4.2), seconds */
    int64_t response_time;  /* wall clock when the response was received */
    int64_t initial_age;    /* corrected_initial_age, at response_time */
    int64_t lifetime;       /* freshness lifetime */
    int64_t stale_while_revalidate; /* may be served stale this long while refreshing */
    int64_t stale_if_error;         /* may be served stale this long when the backend fails */
    uint32_t flags;         /* enum cache_entry_flags */

    size_t charge;          /* bytes counted against cache.memory (cache_entry_finish) */
};

/* A zeroed entry with one reference (last_modified = -1). NULL on ENOMEM. */
struct cache_entry *cache_entry_new(void);
static inline struct cache_entry *cache_entry_ref(struct cache_entry *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}
/* Drop a reference; the last frees the strings and drops the slice references. */
void cache_entry_unref(struct cache_entry *e);

/* Set key and hash from key[0, len). 0 or -ENOMEM. */
int cache_entry_set_key(struct cache_entry *e, const char *key, size_t len);
/* The hash used for keys everywhere (store shards, collapsing, Redis). */
uint64_t cache_key_hash(const char *key, size_t len);

/* Compute charge once every field is set: the bytes this entry keeps alive. */
void cache_entry_finish(struct cache_entry *e);

/* Current age (RFC 9111 §4.2.3) at wall-clock now; never negative. */
int64_t cache_entry_age(const struct cache_entry *e, int64_t now);
/* Seconds the entry stays fresh at now; <= 0 when stale (-staleness). */
int64_t cache_entry_ttl(const struct cache_entry *e, int64_t now);
/* Seconds the entry may still be served at now: fresh time plus the longest stale window
 * it may be served in. Redis keeps it that long; in memory an entry with validators
 * outlives it until evicted, since a 304 can make it fresh again. */
int64_t cache_entry_keep(const struct cache_entry *e, int64_t now);
uint64_t cache_entry_body_len(const struct cache_entry *e);

#endif
