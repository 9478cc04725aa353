/* Cached responses: lifetime and the arithmetic of age. */
#include "cache/entry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct cache_entry *cache_entry_new(void)
{
    struct cache_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    atomic_init(&e->refs, 1);
    e->last_modified = -1;
    return e;
}

void cache_entry_unref(struct cache_entry *e)
{
    if (e == NULL || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(e->key);
    free(e->vary);
    free(e->variant);
    free(e->tags);
    free(e->etag);
    if (e->head != NULL)
        slice_unref(e->head);
    if (e->body != NULL)
        slice_unref(e->body);
    free(e);
}

uint64_t cache_key_hash(const char *key, size_t len)
{
    return XXH3_64bits(key, len);
}

int cache_entry_set_key(struct cache_entry *e, const char *key, size_t len)
{
    char *k = malloc(len + 1);
    if (k == NULL)
        return -ENOMEM;
    memcpy(k, key, len);
    k[len] = '\0';
    free(e->key);
    e->key = k;
    e->key_len = (uint32_t)len;
    e->hash = cache_key_hash(key, len);
    return 0;
}

/* What malloc keeps per allocation besides the bytes asked for (glibc: a 16-byte header
 * and rounding), so the bound covers the heap the entry really takes. */
enum { ALLOC_OVERHEAD = 16 };

static size_t str_charge(const char *s)
{
    return s != NULL ? strlen(s) + 1 + ALLOC_OVERHEAD : 0;
}

void cache_entry_finish(struct cache_entry *e)
{
    /* Heap slices carry their header in the same allocation; count it with the bytes. */
    size_t slices = 0;
    if (e->head != NULL)
        slices += sizeof(struct slice) + e->head->len + ALLOC_OVERHEAD;
    if (e->body != NULL)
        slices += sizeof(struct slice) + e->body->len + ALLOC_OVERHEAD;
    e->charge = sizeof(*e) + ALLOC_OVERHEAD + e->key_len + 1 + ALLOC_OVERHEAD +
                str_charge(e->vary) +
                (e->variant != NULL ? e->variant_len + 1u + ALLOC_OVERHEAD : 0) +
                str_charge(e->tags) + str_charge(e->etag) + slices;
}

int64_t cache_entry_age(const struct cache_entry *e, int64_t now)
{
    int64_t resident = now - e->response_time;
    int64_t age = e->initial_age + (resident > 0 ? resident : 0);
    return age > 0 ? age : 0;
}

int64_t cache_entry_ttl(const struct cache_entry *e, int64_t now)
{
    return e->lifetime - cache_entry_age(e, now);
}

int64_t cache_entry_keep(const struct cache_entry *e, int64_t now)
{
    int64_t stale = e->stale_while_revalidate > e->stale_if_error ? e->stale_while_revalidate
                                                                  : e->stale_if_error;
    return cache_entry_ttl(e, now) + stale;
}

uint64_t cache_entry_body_len(const struct cache_entry *e)
{
    return e->body != NULL ? e->body->len : 0;
}
