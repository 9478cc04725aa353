/* The in-memory cache store: shards, hash chains, the byte bound and purges. The
 * eviction order itself is the policy's (evict_*.c). */
#include "cache/store.h"
#include "cache/store_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_LINE 64
#define MAX_SHARDS 65536u
/* Buckets a shard starts with and never goes below. The tables at this size are a fixed
 * overhead of the store; only what they grow beyond it counts against memory. */
#define MIN_BUCKETS 8u
/* What malloc adds to every node (glibc: the chunk header, rounded to 16). */
#define ALLOC_OVERHEAD 16u

struct store_shard {
    alignas(CACHE_LINE) pthread_mutex_t lock;
    struct store_node **buckets;
    size_t bucket_mask;
    size_t table_bytes; /* what the tables grew beyond MIN_BUCKETS, counted in s->bytes */
    struct evict_state evict;
    /* Written under the lock; read without it to balance shards and for stats. */
    _Atomic size_t bytes; /* sum of the charges of its nodes */
    _Atomic size_t objects;
    _Atomic uint64_t evictions;
};

struct cache_store {
    size_t memory;
    size_t max_object;
    size_t share; /* memory / shards: a shard above it gives up its own entries first */
    const struct evict_ops *ops;
    bool ghost; /* the policy keeps a ghost table beside the hash table */
    unsigned shard_bits;
    size_t shard_mask;
    struct store_shard *shards;
    /* Charges of stored entries, reservations of puts in progress and grown tables.
     * Only ever raised by reserve(), which refuses to pass memory. */
    alignas(CACHE_LINE) _Atomic size_t bytes;
    _Atomic unsigned cursor; /* where the next search for a shard to evict from starts */
};

static size_t load(_Atomic size_t *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

static void store_relaxed(_Atomic size_t *p, size_t v)
{
    atomic_store_explicit(p, v, memory_order_relaxed);
}

static size_t bucket_bytes(const struct cache_store *s)
{
    size_t ghost = s->ghost ? EVICT_GHOST_SLOTS_PER_BUCKET * sizeof(uint64_t) : 0;
    return sizeof(struct store_node *) + ghost;
}

static struct store_shard *shard_of(const struct cache_store *s, uint64_t hash)
{
    return &s->shards[hash & s->shard_mask];
}

static struct store_node **bucket_of(const struct cache_store *s, const struct store_shard *sh,
                                     uint64_t hash)
{
    return &sh->buckets[(hash >> s->shard_bits) & sh->bucket_mask];
}

/* Take charge bytes from the bound; false, and nothing taken, if they do not fit. */
static bool reserve(struct cache_store *s, size_t charge)
{
    size_t cur = load(&s->bytes);
    do {
        if (charge > s->memory - cur)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&s->bytes, &cur, cur + charge,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

static void unreserve(struct cache_store *s, size_t charge)
{
    atomic_fetch_sub_explicit(&s->bytes, charge, memory_order_relaxed);
}

/* Drop the store's references and the nodes of a victim list. Never under a shard lock:
 * the last reference frees an entry's bytes, which may take a while. */
static void release_nodes(struct store_node *n)
{
    while (n != NULL) {
        struct store_node *next = n->older;
        cache_entry_unref(n->entry);
        free(n);
        n = next;
    }
}

/* A node that left the queues leaves the shard's counts and goes on the victim list. */
static void account_out(struct cache_store *s, struct store_shard *sh, struct store_node *n,
                        struct store_node **dead)
{
    store_relaxed(&sh->objects, load(&sh->objects) - 1);
    store_relaxed(&sh->bytes, load(&sh->bytes) - n->charge);
    unreserve(s, n->charge);
    n->older = *dead;
    *dead = n;
}

/* Take the node *link points at out of its chain and queues. */
static void detach(struct cache_store *s, struct store_shard *sh, struct store_node **link,
                   struct store_node **dead)
{
    struct store_node *n = *link;
    *link = n->chain;
    s->ops->unlink(&sh->evict, n);
    account_out(s, sh, n, dead);
}

static bool evict_one_locked(struct cache_store *s, struct store_shard *sh,
                             struct store_node **dead)
{
    struct store_node *n = s->ops->victim(&sh->evict);
    if (n == NULL)
        return false;
    struct store_node **link = bucket_of(s, sh, n->entry->hash);
    while (*link != n)
        link = &(*link)->chain;
    *link = n->chain;
    account_out(s, sh, n, dead);
    atomic_fetch_add_explicit(&sh->evictions, 1, memory_order_relaxed);
    return true;
}

static size_t objects_of(const struct store_shard *sh)
{
    return load((_Atomic size_t *)&sh->objects);
}

static bool needs_grow(const struct store_shard *sh)
{
    return objects_of(sh) > sh->bucket_mask + 1;
}

static bool needs_shrink(const struct store_shard *sh)
{
    size_t buckets = sh->bucket_mask + 1;
    return buckets > MIN_BUCKETS && objects_of(sh) < buckets / 4;
}

static void shard_shrink(struct cache_store *s, struct store_shard *sh);

/* Evict from some shard other than skip (which the caller may hold locked, or NULL):
 * the first one above its share, searching from a rotating start, else any that holds
 * something. Frees up to need bytes in one visit but leaves the shard at no less than its
 * share. Returns whether anything went. Takes only that shard's lock. */
static bool evict_elsewhere(struct cache_store *s, const struct store_shard *skip, size_t need)
{
    unsigned start = atomic_fetch_add_explicit(&s->cursor, 1, memory_order_relaxed);
    struct store_shard *pick = NULL, *fallback = NULL;
    for (size_t i = 0; i <= s->shard_mask; i++) {
        struct store_shard *sh = &s->shards[(start + i) & s->shard_mask];
        if (sh == skip)
            continue;
        size_t bytes = load(&sh->bytes);
        if (bytes > s->share) {
            pick = sh;
            break;
        }
        if (bytes > 0 && fallback == NULL)
            fallback = sh;
    }
    if (pick == NULL)
        pick = fallback;
    if (pick == NULL)
        return false;

    struct store_node *dead = NULL;
    size_t freed = 0;
    pthread_mutex_lock(&pick->lock);
    while (evict_one_locked(s, pick, &dead)) {
        freed += dead->charge;
        if (freed >= need || load(&pick->bytes) <= s->share)
            break;
    }
    bool shrink = needs_shrink(pick);
    pthread_mutex_unlock(&pick->lock);
    bool any = dead != NULL;
    release_nodes(dead);
    if (shrink)
        shard_shrink(s, pick);
    return any;
}

/* The bytes that doubling tables of `buckets` buckets costs. */
static size_t growth_cost(const struct cache_store *s, size_t buckets)
{
    return buckets * bucket_bytes(s);
}

/* Tables of target buckets, allocated unlocked; false on ENOMEM. */
static bool alloc_tables(const struct cache_store *s, size_t target, struct store_node ***table,
                         uint64_t **ghost)
{
    *table = calloc(target, sizeof(**table));
    *ghost = NULL;
    if (s->ghost)
        *ghost = calloc(target * EVICT_GHOST_SLOTS_PER_BUCKET, sizeof(**ghost));
    if (*table != NULL && (!s->ghost || *ghost != NULL))
        return true;
    free(*table);
    free(*ghost);
    return false;
}

/* Under the lock: move the nodes and ghosts into the new tables and account for them. The
 * old tables are left in *table and *ghost, for the caller to free after unlocking. */
static void swap_tables(struct cache_store *s, struct store_shard *sh, size_t target,
                        struct store_node ***table, uint64_t **ghost)
{
    struct store_node **old = sh->buckets;
    size_t buckets = sh->bucket_mask + 1;
    sh->buckets = *table;
    sh->bucket_mask = target - 1;
    for (size_t i = 0; i < buckets; i++) {
        struct store_node *n = old[i];
        while (n != NULL) {
            struct store_node *next = n->chain;
            struct store_node **link = bucket_of(s, sh, n->entry->hash);
            n->chain = *link;
            *link = n;
            n = next;
        }
    }
    *table = old;
    if (s->ghost)
        *ghost = evict_ghost_swap(&sh->evict, *ghost, target * EVICT_GHOST_SLOTS_PER_BUCKET);
    sh->table_bytes = (target - MIN_BUCKETS) * bucket_bytes(s);
}

/* Double the tables of a shard that holds more entries than buckets. The put that made it
 * so reserved growth_cost(buckets) before it linked its entry, so growing never evicts
 * (least of all that entry); here those bytes are kept or given back. Allocation happens
 * unlocked; the lock is held only to move the nodes. Failing leaves chains longer: slower,
 * not wrong. */
static void shard_grow(struct cache_store *s, struct store_shard *sh, size_t buckets)
{
    size_t target = buckets * 2;
    struct store_node **table;
    uint64_t *ghost;
    if (target > SIZE_MAX / 2 / bucket_bytes(s) || !alloc_tables(s, target, &table, &ghost)) {
        unreserve(s, growth_cost(s, buckets));
        return;
    }
    pthread_mutex_lock(&sh->lock);
    bool still = sh->bucket_mask + 1 == buckets && needs_grow(sh);
    if (still)
        swap_tables(s, sh, target, &table, &ghost);
    pthread_mutex_unlock(&sh->lock);
    if (!still)
        unreserve(s, growth_cost(s, buckets));
    free(table);
    free(ghost);
}

/* Shrink the tables of a shard that holds fewer entries than a quarter of its buckets,
 * to twice its entries, and give their bytes back. */
static void shard_shrink(struct cache_store *s, struct store_shard *sh)
{
    pthread_mutex_lock(&sh->lock);
    size_t buckets = sh->bucket_mask + 1;
    size_t objects = objects_of(sh);
    bool shrink = needs_shrink(sh);
    pthread_mutex_unlock(&sh->lock);
    if (!shrink)
        return;
    size_t target = MIN_BUCKETS;
    while (target < objects * 2)
        target *= 2;
    struct store_node **table;
    uint64_t *ghost;
    if (!alloc_tables(s, target, &table, &ghost))
        return;
    pthread_mutex_lock(&sh->lock);
    size_t before = sh->table_bytes;
    /* Entries may have come meanwhile; the new tables must still hold them. */
    shrink = sh->bucket_mask + 1 == buckets && objects_of(sh) <= target;
    if (shrink)
        swap_tables(s, sh, target, &table, &ghost);
    size_t freed = before - sh->table_bytes;
    pthread_mutex_unlock(&sh->lock);
    unreserve(s, freed);
    free(table);
    free(ghost);
}

static void shrink_all(struct cache_store *s)
{
    for (size_t i = 0; i <= s->shard_mask; i++) {
        struct store_shard *sh = &s->shards[i];
        pthread_mutex_lock(&sh->lock);
        bool shrink = needs_shrink(sh);
        pthread_mutex_unlock(&sh->lock);
        if (shrink)
            shard_shrink(s, sh);
    }
}

static bool same_variant(const struct cache_entry *a, const struct cache_entry *b)
{
    if ((a->vary == NULL) != (b->vary == NULL))
        return false;
    if (a->vary == NULL)
        return true;
    uint32_t alen = a->variant != NULL ? a->variant_len : 0;
    uint32_t blen = b->variant != NULL ? b->variant_len : 0;
    return alen == blen && (alen == 0 || memcmp(a->variant, b->variant, alen) == 0);
}

static bool key_equal(const struct cache_entry *e, uint64_t hash, const char *key, size_t len)
{
    return e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0;
}

int cache_store_new(const struct cache_store_options *o, struct cache_store **out)
{
    unsigned shards = o->shards != 0 ? o->shards : CACHE_STORE_DEFAULT_SHARDS;
    if (o->memory == 0 || shards > MAX_SHARDS || (shards & (shards - 1)) != 0)
        return -EINVAL;
    const struct evict_ops *ops;
    switch (o->policy) {
    case CACHE_EVICT_S3FIFO:
        ops = &evict_s3fifo_ops;
        break;
    case CACHE_EVICT_LRU:
        ops = &evict_lru_ops;
        break;
    case CACHE_EVICT_SIEVE:
        ops = &evict_sieve_ops;
        break;
    default:
        return -EINVAL;
    }

    struct cache_store *s = aligned_alloc(CACHE_LINE, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    memset(s, 0, sizeof(*s));
    s->memory = o->memory;
    s->max_object = o->max_object;
    s->share = o->memory / shards;
    s->ops = ops;
    s->ghost = o->policy == CACHE_EVICT_S3FIFO;
    s->shard_mask = shards - 1;
    while ((1u << s->shard_bits) < shards)
        s->shard_bits++;
    atomic_init(&s->bytes, 0);
    atomic_init(&s->cursor, 0);
    s->shards = aligned_alloc(CACHE_LINE, shards * sizeof(*s->shards));
    if (s->shards == NULL)
        goto fail_store;
    unsigned made = 0;
    for (; made < shards; made++) {
        struct store_shard *sh = &s->shards[made];
        memset(sh, 0, sizeof(*sh));
        sh->bucket_mask = MIN_BUCKETS - 1;
        sh->buckets = calloc(MIN_BUCKETS, sizeof(*sh->buckets));
        if (sh->buckets == NULL)
            goto fail_shards;
        if (s->ghost) {
            size_t slots = MIN_BUCKETS * EVICT_GHOST_SLOTS_PER_BUCKET;
            uint64_t *ghost = calloc(slots, sizeof(*ghost));
            if (ghost == NULL) {
                free(sh->buckets);
                goto fail_shards;
            }
            evict_ghost_swap(&sh->evict, ghost, slots);
        }
        if (pthread_mutex_init(&sh->lock, NULL) != 0) {
            free(sh->buckets);
            free(sh->evict.ghost.slots);
            goto fail_shards;
        }
        atomic_init(&sh->bytes, 0);
        atomic_init(&sh->objects, 0);
        atomic_init(&sh->evictions, 0);
    }
    *out = s;
    return 0;

fail_shards:
    while (made-- > 0) {
        pthread_mutex_destroy(&s->shards[made].lock);
        free(s->shards[made].buckets);
        free(s->shards[made].evict.ghost.slots);
    }
    free(s->shards);
fail_store:
    free(s);
    return -ENOMEM;
}

void cache_store_free(struct cache_store *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i <= s->shard_mask; i++) {
        struct store_shard *sh = &s->shards[i];
        for (size_t b = 0; b <= sh->bucket_mask; b++) {
            struct store_node *n = sh->buckets[b];
            while (n != NULL) {
                struct store_node *next = n->chain;
                cache_entry_unref(n->entry);
                free(n);
                n = next;
            }
        }
        free(sh->buckets);
        free(sh->evict.ghost.slots);
        pthread_mutex_destroy(&sh->lock);
    }
    free(s->shards);
    free(s);
}

size_t cache_store_charge(const struct cache_store *s, const struct cache_entry *e)
{
    (void)s;
    return e->charge + sizeof(struct store_node) + ALLOC_OVERHEAD;
}

struct cache_entry *cache_store_get(struct cache_store *s, uint64_t hash, const char *key,
                                    size_t key_len,
                                    bool (*match)(const struct cache_entry *e, void *arg),
                                    void *arg)
{
    struct store_shard *sh = shard_of(s, hash);
    struct cache_entry *found = NULL;
    pthread_mutex_lock(&sh->lock);
    for (struct store_node *n = *bucket_of(s, sh, hash); n != NULL; n = n->chain) {
        if (key_equal(n->entry, hash, key, key_len) && (match == NULL || match(n->entry, arg))) {
            s->ops->access(&sh->evict, n);
            found = cache_entry_ref(n->entry);
            break;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return found;
}

/* Detach the stored entry that e would replace, if any. */
static void detach_variant(struct cache_store *s, struct store_shard *sh,
                           const struct cache_entry *e, struct store_node **dead)
{
    for (struct store_node **link = bucket_of(s, sh, e->hash); *link != NULL;
         link = &(*link)->chain) {
        const struct cache_entry *old = (*link)->entry;
        if (key_equal(old, e->hash, e->key, e->key_len) && same_variant(old, e)) {
            detach(s, sh, link, dead);
            return;
        }
    }
}

int cache_store_put(struct cache_store *s, struct cache_entry *e)
{
    if (s->max_object != 0 && e->charge > s->max_object)
        return -E2BIG;
    size_t charge = cache_store_charge(s, e);
    if (charge > s->memory)
        return -E2BIG;
    struct store_node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    n->charge = charge;
    n->entry = cache_entry_ref(e);

    struct store_shard *sh = shard_of(s, e->hash);
    struct store_node *dead = NULL;
    size_t grow_from = 0, grow_cost = 0;
    pthread_mutex_lock(&sh->lock);
    for (;;) {
        /* Again on every turn: another put may have stored this variant meanwhile. */
        detach_variant(s, sh, e, &dead);
        /* If this entry makes the shard outgrow its tables, it pays for their growth now,
         * so that growing afterwards never has to evict. */
        grow_from = sh->bucket_mask + 1;
        grow_cost = objects_of(sh) + 1 > grow_from ? growth_cost(s, grow_from) : 0;
        if (grow_cost > s->memory - charge)
            grow_cost = 0;
        if (reserve(s, charge + grow_cost))
            break;
        if ((load(&sh->bytes) > s->share || s->shard_mask == 0) &&
            evict_one_locked(s, sh, &dead))
            continue;
        /* The room must come from another shard; never hold two shard locks. */
        pthread_mutex_unlock(&sh->lock);
        release_nodes(dead);
        dead = NULL;
        size_t room = s->memory - load(&s->bytes);
        size_t want = charge + grow_cost;
        bool freed = evict_elsewhere(s, sh, want > room ? want - room : 1);
        pthread_mutex_lock(&sh->lock);
        if (!freed && !evict_one_locked(s, sh, &dead)) {
            /* Nothing left to evict: what is counted is tables that outgrew the entries
             * now left, or reservations of other puts, which link their entries without
             * waiting (and those can then be evicted). */
            pthread_mutex_unlock(&sh->lock);
            shrink_all(s);
            sched_yield();
            pthread_mutex_lock(&sh->lock);
        }
    }
    struct store_node **link = bucket_of(s, sh, e->hash);
    n->chain = *link;
    *link = n;
    s->ops->insert(&sh->evict, n);
    store_relaxed(&sh->objects, load(&sh->objects) + 1);
    store_relaxed(&sh->bytes, load(&sh->bytes) + charge);
    bool shrink = needs_shrink(sh);
    pthread_mutex_unlock(&sh->lock);
    release_nodes(dead);
    if (grow_cost > 0)
        shard_grow(s, sh, grow_from);
    else if (shrink)
        shard_shrink(s, sh);
    return 0;
}

int cache_store_remove(struct cache_store *s, struct cache_entry *e)
{
    struct store_shard *sh = shard_of(s, e->hash);
    struct store_node *dead = NULL;
    pthread_mutex_lock(&sh->lock);
    for (struct store_node **link = bucket_of(s, sh, e->hash); *link != NULL;
         link = &(*link)->chain) {
        if ((*link)->entry == e) {
            detach(s, sh, link, &dead);
            break;
        }
    }
    bool shrink = needs_shrink(sh);
    pthread_mutex_unlock(&sh->lock);
    if (dead == NULL)
        return 0;
    release_nodes(dead);
    if (shrink)
        shard_shrink(s, sh);
    return 1;
}

size_t cache_store_purge_key(struct cache_store *s, uint64_t hash, const char *key,
                             size_t key_len)
{
    struct store_shard *sh = shard_of(s, hash);
    struct store_node *dead = NULL;
    size_t purged = 0;
    pthread_mutex_lock(&sh->lock);
    struct store_node **link = bucket_of(s, sh, hash);
    while (*link != NULL) {
        if (key_equal((*link)->entry, hash, key, key_len)) {
            detach(s, sh, link, &dead);
            purged++;
        } else {
            link = &(*link)->chain;
        }
    }
    bool shrink = needs_shrink(sh);
    pthread_mutex_unlock(&sh->lock);
    release_nodes(dead);
    if (shrink)
        shard_shrink(s, sh);
    return purged;
}

/* Purge every entry pred accepts, one shard at a time. */
static size_t purge_where(struct cache_store *s,
                          bool (*pred)(const struct cache_entry *e, const void *arg),
                          const void *arg)
{
    size_t purged = 0;
    for (size_t i = 0; i <= s->shard_mask; i++) {
        struct store_shard *sh = &s->shards[i];
        struct store_node *dead = NULL;
        pthread_mutex_lock(&sh->lock);
        for (size_t b = 0; b <= sh->bucket_mask; b++) {
            struct store_node **link = &sh->buckets[b];
            while (*link != NULL) {
                if (pred((*link)->entry, arg)) {
                    detach(s, sh, link, &dead);
                    purged++;
                } else {
                    link = &(*link)->chain;
                }
            }
        }
        bool shrink = needs_shrink(sh);
        pthread_mutex_unlock(&sh->lock);
        release_nodes(dead);
        if (shrink)
            shard_shrink(s, sh);
    }
    return purged;
}

struct prefix_match {
    const char *host; /* NULL: any */
    size_t host_len;
    const char *prefix;
    size_t prefix_len;
};

static bool match_prefix(const struct cache_entry *e, const void *arg)
{
    const struct prefix_match *m = arg;
    const char *nl = memchr(e->key, '\n', e->key_len);
    size_t host_len = nl != NULL ? (size_t)(nl - e->key) : e->key_len;
    if (m->host != NULL && (host_len != m->host_len || memcmp(e->key, m->host, host_len) != 0))
        return false;
    size_t rest = nl != NULL ? e->key_len - host_len - 1 : 0;
    const char *path = e->key + e->key_len - rest;
    return rest >= m->prefix_len && memcmp(path, m->prefix, m->prefix_len) == 0;
}

size_t cache_store_purge_prefix(struct cache_store *s, const char *host,
                                const char *path_prefix)
{
    struct prefix_match m = {
        .host = host,
        .host_len = host != NULL ? strlen(host) : 0,
        .prefix = path_prefix,
        .prefix_len = strlen(path_prefix),
    };
    return purge_where(s, match_prefix, &m);
}

static bool match_url(const struct cache_entry *e, const void *arg)
{
    const struct prefix_match *m = arg;
    if (!match_prefix(e, m))
        return false;
    /* The target must end where the key's second line does. */
    const char *nl = memchr(e->key, '\n', e->key_len);
    size_t at = (size_t)(nl - e->key) + 1 + m->prefix_len;
    return at == e->key_len || e->key[at] == '\n';
}

size_t cache_store_purge_url(struct cache_store *s, const char *host, const char *target)
{
    struct prefix_match m = {
        .host = host,
        .host_len = host != NULL ? strlen(host) : 0,
        .prefix = target,
        .prefix_len = strlen(target),
    };
    return purge_where(s, match_url, &m);
}

static bool match_tag(const struct cache_entry *e, const void *arg)
{
    const char *tag = arg;
    size_t len = strlen(tag);
    if (e->tags == NULL || len == 0)
        return false;
    for (const char *p = e->tags; *p != '\0';) {
        const char *end = strchr(p, ' ');
        size_t word = end != NULL ? (size_t)(end - p) : strlen(p);
        if (word == len && memcmp(p, tag, len) == 0)
            return true;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return false;
}

size_t cache_store_purge_tag(struct cache_store *s, const char *tag)
{
    return purge_where(s, match_tag, tag);
}

static bool match_all(const struct cache_entry *e, const void *arg)
{
    (void)e;
    (void)arg;
    return true;
}

size_t cache_store_purge_all(struct cache_store *s)
{
    return purge_where(s, match_all, NULL);
}

void cache_store_stats(struct cache_store *s, struct cache_store_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i <= s->shard_mask; i++) {
        out->objects += load(&s->shards[i].objects);
        out->evictions += atomic_load_explicit(&s->shards[i].evictions, memory_order_relaxed);
    }
    out->bytes = load(&s->bytes);
}

/* Walk one queue; count and sum it, and check its links and its nodes' queue tag. */
static bool audit_list(const struct evict_list *l, uint8_t queue, size_t *count, size_t *bytes)
{
    size_t n = 0, sum = 0;
    const struct store_node *prev = NULL;
    for (const struct store_node *x = l->head; x != NULL; x = x->older) {
        if (x->newer != prev || x->queue != queue)
            return false;
        n++;
        sum += x->charge;
        prev = x;
    }
    *count += n;
    *bytes += sum;
    return prev == l->tail && n == l->count && sum == l->bytes;
}

static bool audit_shard(const struct cache_store *s, const struct store_shard *sh, size_t *objects,
                        size_t *bytes)
{
    size_t chained = 0, chain_bytes = 0;
    for (size_t b = 0; b <= sh->bucket_mask; b++) {
        for (const struct store_node *n = sh->buckets[b]; n != NULL; n = n->chain) {
            uint64_t hash = n->entry->hash;
            if (shard_of(s, hash) != sh || bucket_of(s, sh, hash) != &sh->buckets[b])
                return false;
            if (n->charge != cache_store_charge(s, n->entry))
                return false;
            chained++;
            chain_bytes += n->charge;
        }
    }
    size_t queued = 0, queue_bytes = 0;
    if (!audit_list(&sh->evict.main, EVICT_QUEUE_MAIN, &queued, &queue_bytes) ||
        !audit_list(&sh->evict.small, EVICT_QUEUE_SMALL, &queued, &queue_bytes))
        return false;
    if (sh->evict.hand != NULL) {
        const struct store_node *x = sh->evict.main.head;
        while (x != NULL && x != sh->evict.hand)
            x = x->older;
        if (x == NULL)
            return false;
    }
    size_t buckets = sh->bucket_mask + 1;
    if (sh->table_bytes != (buckets - MIN_BUCKETS) * bucket_bytes(s))
        return false;
    if (s->ghost && sh->evict.ghost.mask + 1 != buckets * EVICT_GHOST_SLOTS_PER_BUCKET)
        return false;
    *objects += chained;
    *bytes += chain_bytes;
    return chained == queued && chain_bytes == queue_bytes &&
           chained == load((_Atomic size_t *)&sh->objects) &&
           chain_bytes == load((_Atomic size_t *)&sh->bytes);
}

int cache_store__audit(struct cache_store *s, struct cache_store_stats *out)
{
    bool ok = true;
    size_t tables = 0;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i <= s->shard_mask; i++) {
        struct store_shard *sh = &s->shards[i];
        pthread_mutex_lock(&sh->lock);
        ok = audit_shard(s, sh, &out->objects, &out->bytes) && ok;
        tables += sh->table_bytes;
        out->evictions += atomic_load_explicit(&sh->evictions, memory_order_relaxed);
        pthread_mutex_unlock(&sh->lock);
    }
    if (out->bytes + tables != load(&s->bytes) || load(&s->bytes) > s->memory)
        ok = false;
    return ok ? 0 : -EUCLEAN;
}
