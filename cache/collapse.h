/* Miss collapsing across the workers of one process.
 *
 * The first request that misses a key becomes its filler; later requests for the key,
 * on any worker, wait for it instead of going to the backend. The table only records
 * who fills a key and which workers have someone waiting; each worker keeps its own
 * waiters and is told, through a posted message, when the fill ends. */
#ifndef RINGSIDE_CACHE_COLLAPSE_H
#define RINGSIDE_CACHE_COLLAPSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct collapse;

int collapse_new(struct collapse **out);
void collapse_free(struct collapse *c);

enum collapse_role { COLLAPSE_FILLER, COLLAPSE_WAITER };

/* Become the filler of key, or, when another request fills it, note that worker has a
 * waiter for it. -ENOMEM when the table cannot grow (the caller then goes to the
 * backend on its own). */
int collapse_join(struct collapse *c, uint64_t hash, const char *key, size_t len,
                  unsigned worker, enum collapse_role *role);
/* Claim the fill only if nobody fills key (background refresh): true when claimed. */
bool collapse_try_fill(struct collapse *c, uint64_t hash, const char *key, size_t len);
/* The fill of key is over. Returns the bitmask of workers that had waiters (bit 63
 * stands for every worker from 63 on). */
uint64_t collapse_done(struct collapse *c, uint64_t hash, const char *key, size_t len);
/* Fills in progress (for tests and status). */
size_t collapse_count(struct collapse *c);

#endif
