/* The table of fills in progress: a small chained hash table per shard, each behind its
 * own mutex. Entries live only while a fill runs, so the table stays small. */
#include "cache/collapse.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { SHARDS = 64, BUCKETS = 64 };

struct fill {
    struct fill *next;
    uint64_t hash;
    uint64_t waiting; /* bitmask of workers */
    size_t len;
    char key[];
};

struct shard {
    pthread_mutex_t lock;
    struct fill *buckets[BUCKETS];
    size_t count;
};

struct collapse {
    struct shard shards[SHARDS];
};

int collapse_new(struct collapse **out)
{
    struct collapse *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_init(&c->shards[i].lock, NULL);
    *out = c;
    return 0;
}

void collapse_free(struct collapse *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < SHARDS; i++) {
        for (int b = 0; b < BUCKETS; b++) {
            struct fill *f = c->shards[i].buckets[b];
            while (f != NULL) {
                struct fill *next = f->next;
                free(f);
                f = next;
            }
        }
        pthread_mutex_destroy(&c->shards[i].lock);
    }
    free(c);
}

static struct shard *shard_of(struct collapse *c, uint64_t hash)
{
    return &c->shards[hash % SHARDS];
}

static struct fill **find(struct shard *s, uint64_t hash, const char *key, size_t len)
{
    struct fill **p = &s->buckets[(hash / SHARDS) % BUCKETS];
    for (; *p != NULL; p = &(*p)->next)
        if ((*p)->hash == hash && (*p)->len == len && memcmp((*p)->key, key, len) == 0)
            return p;
    return p;
}

static int add(struct shard *s, struct fill **slot, uint64_t hash, const char *key, size_t len)
{
    struct fill *f = malloc(sizeof(*f) + len);
    if (f == NULL)
        return -ENOMEM;
    f->next = NULL;
    f->hash = hash;
    f->waiting = 0;
    f->len = len;
    memcpy(f->key, key, len);
    *slot = f;
    s->count++;
    return 0;
}

int collapse_join(struct collapse *c, uint64_t hash, const char *key, size_t len,
                  unsigned worker, enum collapse_role *role)
{
    struct shard *s = shard_of(c, hash);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    struct fill **slot = find(s, hash, key, len);
    if (*slot != NULL) {
        (*slot)->waiting |= 1ull << (worker < 63 ? worker : 63);
        *role = COLLAPSE_WAITER;
    } else {
        rc = add(s, slot, hash, key, len);
        *role = COLLAPSE_FILLER;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

bool collapse_try_fill(struct collapse *c, uint64_t hash, const char *key, size_t len)
{
    struct shard *s = shard_of(c, hash);
    pthread_mutex_lock(&s->lock);
    struct fill **slot = find(s, hash, key, len);
    bool claimed = *slot == NULL && add(s, slot, hash, key, len) == 0;
    pthread_mutex_unlock(&s->lock);
    return claimed;
}

uint64_t collapse_done(struct collapse *c, uint64_t hash, const char *key, size_t len)
{
    struct shard *s = shard_of(c, hash);
    uint64_t waiting = 0;
    pthread_mutex_lock(&s->lock);
    struct fill **slot = find(s, hash, key, len);
    struct fill *f = *slot;
    if (f != NULL) {
        *slot = f->next;
        s->count--;
        waiting = f->waiting;
    }
    pthread_mutex_unlock(&s->lock);
    free(f);
    return waiting;
}

size_t collapse_count(struct collapse *c)
{
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&c->shards[i].lock);
        n += c->shards[i].count;
        pthread_mutex_unlock(&c->shards[i].lock);
    }
    return n;
}
