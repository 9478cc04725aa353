/* The in-memory cache store (L1): one per process, shared by every worker thread.
 *
 * Entries are sharded by key hash with a mutex per shard, so workers rarely meet on a
 * lock and the hit rate does not depend on which worker took the connection. The store
 * is bounded in bytes: one global counter of accounted charges and grown tables (see
 * cache_store_charge) never exceeds cache_store_options.memory. A put reserves its bytes
 * in that counter before it links the entry, evicting until the reservation fits, so the
 * bound holds at every instant, not only between calls.
 *
 * Eviction is per shard, by the chosen policy: S3-FIFO (default), LRU or SIEVE. A put
 * evicts from its own shard while that shard holds more than its fair share
 * (memory / shards), otherwise from a shard that does; shards therefore stay near
 * equal size and a large object takes its room from the whole store, not from the few
 * entries that share its shard.
 *
 * References: the store holds one reference to every stored entry. get returns a new
 * reference the caller drops with cache_entry_unref. Evicted, replaced and purged entries
 * lose the store's reference after the shard lock is released, so an entry a reader holds
 * stays valid until the reader lets go (its bytes are then no longer counted). */
#ifndef RINGSIDE_CACHE_STORE_H
#define RINGSIDE_CACHE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/entry.h"

struct cache_store;

enum cache_evict_policy {
    CACHE_EVICT_S3FIFO, /* small FIFO (10%) + main FIFO with 2-bit frequency + ghost hashes */
    CACHE_EVICT_LRU,
    CACHE_EVICT_SIEVE, /* one FIFO, a visited bit and a hand that sweeps toward the head */
};

struct cache_store_options {
    size_t memory;     /* bytes: accounted charges never exceed it; > 0 */
    size_t max_object; /* an entry whose e->charge exceeds it is refused; 0: no limit */
    unsigned shards;   /* power of two, at most 65536; 0 = default 64 */
    enum cache_evict_policy policy;
};

#define CACHE_STORE_DEFAULT_SHARDS 64u

/* A new empty store in *out, owned by the caller (cache_store_free). Returns 0, -EINVAL
 * (memory 0, shards not a power of two or too many, unknown policy) or -ENOMEM. */
int cache_store_new(const struct cache_store_options *o, struct cache_store **out);
/* Drops the store's references and frees it. No other thread may use it any more;
 * entries that readers still hold stay valid until they unref them. */
void cache_store_free(struct cache_store *s);

/* The bytes e counts against memory once stored: e->charge (cache_entry_finish must have
 * run) plus the store's node for it, allocator header included. The same for every store;
 * s may be NULL. The store's hash and ghost tables are counted too, apart from entries:
 * whatever they grow beyond their small initial size (about 24 bytes per entry under
 * S3-FIFO, 8 under LRU and SIEVE) is reserved like an entry's charge. */
size_t cache_store_charge(const struct cache_store *s, const struct cache_entry *e);

/* Find the entry for (hash, key) whose variant matches: match(e, arg) is called under the
 * shard lock for each stored variant of the key (entries with the same key but different
 * Vary variants coexist) and must not call back into the store; match NULL takes the
 * first variant found. Returns a new reference the caller unrefs, or NULL. Counts as an
 * access for eviction. */
struct cache_entry *cache_store_get(struct cache_store *s, uint64_t hash, const char *key,
                                    size_t key_len,
                                    bool (*match)(const struct cache_entry *e, void *arg),
                                    void *arg);

/* Insert e (complete: key, hash and charge set; never changed afterwards). The store takes
 * a new reference; the caller keeps its own. It replaces a stored entry with the same key
 * and the same variant (both without Vary, or both with Vary and equal variant bytes), and
 * evicts others until the bound holds. Returns 0, -E2BIG (e->charge over max_object, or
 * cache_store_charge over memory) or -ENOMEM; on error nothing changed. */
int cache_store_put(struct cache_store *s, struct cache_entry *e);

/* Remove exactly this entry if it is still stored (e.g. found stale beyond use).
 * Returns 1 if it was, else 0. */
int cache_store_remove(struct cache_store *s, struct cache_entry *e);

/* Purges walk the shards, locking each in turn, and return how many entries went.
 * Evictions counts none of them. */
/* Every variant of one key. */
size_t cache_store_purge_key(struct cache_store *s, uint64_t hash, const char *key,
                             size_t key_len);
/* Keys are "<host>\n<path>[?query]\n<extra>". Every entry whose key, from its second
 * line on, starts with path_prefix; host NULL matches any host, otherwise the host part
 * must equal host exactly. A key without a newline has that whole key as its host and an
 * empty rest. */
size_t cache_store_purge_prefix(struct cache_store *s, const char *host,
                                const char *path_prefix);
/* Every entry for one target (path and query, every header variant): its key's second
 * line equals target; host as for cache_store_purge_prefix. */
size_t cache_store_purge_url(struct cache_store *s, const char *host, const char *target);
/* Every entry whose e->tags contains tag as a whole space-separated word. */
size_t cache_store_purge_tag(struct cache_store *s, const char *tag);
size_t cache_store_purge_all(struct cache_store *s);

struct cache_store_stats {
    size_t objects;     /* entries stored */
    size_t bytes;       /* accounted bytes: charges, grown tables, puts in progress */
    uint64_t evictions; /* entries the policy evicted to make room */
};
/* From any thread, without locks: each figure is exact but they may come from slightly
 * different instants while other threads work. */
void cache_store_stats(struct cache_store *s, struct cache_store_stats *out);

/* For tests: walks every shard under its lock and checks the store's internal invariants
 * (hash chains, eviction queues and their byte and object counts agree). Fills *out with
 * what it counted (bytes: the sum of stored charges; evictions: as in stats). Returns 0
 * when consistent, -EUCLEAN when not. Not for the request path. */
int cache_store__audit(struct cache_store *s, struct cache_store_stats *out);

#endif
