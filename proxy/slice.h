/* Reference-counted byte slices and the per-connection output queue built from them.
 *
 * A slice is bytes that one or more connections send. It is freed by its release
 * function when the last reference goes, which lets a slice be heap memory or a
 * provided receive buffer that must go back to its ring. Counts are atomic so a
 * slice may be shared by connections on different workers (a cached body). */
#ifndef RINGSIDE_SLICE_H
#define RINGSIDE_SLICE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct slice {
    _Atomic uint32_t refs;
    uint32_t len;
    char *data;
    void (*release)(struct slice *s); /* called once, when refs reaches 0 */
    void *owner;                       /* for release: e.g. the loop of a receive buffer */
    uint32_t id;                       /* for release: e.g. the buffer id */
};

/* A heap slice of len bytes (uninitialised) with one reference. NULL on ENOMEM. */
struct slice *slice_new(size_t len);
/* A heap slice holding a copy of data[0, len). */
struct slice *slice_copy(const void *data, size_t len);

static inline struct slice *slice_ref(struct slice *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void slice_unref(struct slice *s);

/* Bytes queued for one connection: slice references plus the part of each to send. */
struct outq_item {
    struct slice *slice;
    uint32_t off;
    uint32_t len;
};

struct outq {
    struct outq_item *items; /* ring */
    uint32_t head;
    uint32_t count;
    uint32_t cap;
    size_t bytes; /* total still to send */
};

void outq_init(struct outq *q);
/* Queue s->data[off, off + len). Takes over one reference to s from the caller, also
 * on failure (-ENOMEM), when the reference is dropped. len 0 just drops it. */
int outq_push(struct outq *q, struct slice *s, uint32_t off, uint32_t len);
/* Fill at most max iovecs from the head of the queue; returns how many. */
unsigned outq_iov(const struct outq *q, struct iovec *iov, unsigned max);
/* n bytes were sent: advance, dropping the references of finished items. */
void outq_consume(struct outq *q, size_t n);
/* Drop everything queued and free the ring. */
void outq_clear(struct outq *q);

/* A growable byte buffer owned by one connection, for a message that spans receive
 * buffers. */
struct bytes {
    char *data;
    size_t len;
    size_t cap;
};

/* Append data[0, len); grows geometrically. 0 or -ENOMEM. */
int bytes_append(struct bytes *b, const void *data, size_t len);
/* Drop the first n bytes. */
void bytes_consume(struct bytes *b, size_t n);
void bytes_free(struct bytes *b);

#endif
