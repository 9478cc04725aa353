#include "proxy/slice.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void release_heap(struct slice *s)
{
    free(s);
}

struct slice *slice_new(size_t len)
{
    if (len > UINT32_MAX)
        return NULL;
    /* Header and bytes in one allocation: one malloc, one free, one cache miss less. */
    struct slice *s = malloc(sizeof(*s) + len);
    if (s == NULL)
        return NULL;
    atomic_init(&s->refs, 1);
    s->len = (uint32_t)len;
    s->data = (char *)(s + 1);
    s->release = release_heap;
    s->owner = NULL;
    s->id = 0;
    return s;
}

struct slice *slice_copy(const void *data, size_t len)
{
    struct slice *s = slice_new(len);
    if (s != NULL && len > 0)
        memcpy(s->data, data, len);
    return s;
}

void slice_unref(struct slice *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        s->release(s);
}

void outq_init(struct outq *q)
{
    memset(q, 0, sizeof(*q));
}

static int outq_grow(struct outq *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : 8;
    struct outq_item *items = malloc(sizeof(*items) * cap);
    if (items == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < q->count; i++)
        items[i] = q->items[(q->head + i) % q->cap];
    free(q->items);
    q->items = items;
    q->head = 0;
    q->cap = cap;
    return 0;
}

int outq_push(struct outq *q, struct slice *s, uint32_t off, uint32_t len)
{
    if (len == 0) {
        slice_unref(s);
        return 0;
    }
    if (q->count == q->cap && outq_grow(q) < 0) {
        slice_unref(s);
        return -ENOMEM;
    }
    q->items[(q->head + q->count) % q->cap] =
        (struct outq_item){.slice = s, .off = off, .len = len};
    q->count++;
    q->bytes += len;
    return 0;
}

unsigned outq_iov(const struct outq *q, struct iovec *iov, unsigned max)
{
    unsigned n = q->count < max ? q->count : max;
    for (unsigned i = 0; i < n; i++) {
        const struct outq_item *it = &q->items[(q->head + i) % q->cap];
        iov[i].iov_base = it->slice->data + it->off;
        iov[i].iov_len = it->len;
    }
    return n;
}

void outq_consume(struct outq *q, size_t n)
{
    q->bytes -= n;
    while (n > 0) {
        struct outq_item *it = &q->items[q->head];
        if (n < it->len) {
            it->off += (uint32_t)n;
            it->len -= (uint32_t)n;
            return;
        }
        n -= it->len;
        slice_unref(it->slice);
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
}

void outq_clear(struct outq *q)
{
    for (uint32_t i = 0; i < q->count; i++)
        slice_unref(q->items[(q->head + i) % q->cap].slice);
    free(q->items);
    outq_init(q);
}

int bytes_append(struct bytes *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL)
            return -ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

void bytes_consume(struct bytes *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void bytes_free(struct bytes *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
