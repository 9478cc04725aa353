/* What the two loop backends share. Private to proxy/loop*.c. */
#ifndef RINGSIDE_LOOP_INTERNAL_H
#define RINGSIDE_LOOP_INTERNAL_H

#include "proxy/loop.h"

#include <stddef.h>

struct loop_ops {
    int (*accept)(struct loop *l, int fd, uint64_t tag);
    int (*recv)(struct loop *l, int fd, uint64_t tag);
    int (*send)(struct loop *l, int fd, const struct msghdr *msg, uint64_t tag);
    int (*connect)(struct loop *l, int fd, const struct sockaddr *addr, socklen_t len,
                   uint64_t tag);
    int (*read)(struct loop *l, int fd, void *buf, uint32_t len, uint64_t tag);
    int (*poll)(struct loop *l, int fd, uint32_t events, uint64_t tag);
    int (*cancel_fd)(struct loop *l, int fd, uint64_t tag);
    int (*cancel_op)(struct loop *l, int fd, uint64_t target_tag, uint64_t tag);
    void (*buf_release)(struct loop *l, uint16_t id);
    int (*wait)(struct loop *l, struct loop_event *evs, unsigned max, int64_t timeout_ns);
    void (*free)(struct loop *l);
};

/* Embedded first in each backend's struct. */
struct loop {
    const struct loop_ops *ops;
    enum loop_backend backend;
    char *bufs; /* buf_count * buf_size bytes */
    unsigned buf_count;
    unsigned buf_size;
    unsigned bufs_held;
};

/* An anonymous mapping for receive buffers, or NULL. */
char *loop__map_bufs(size_t bytes);

int loop__uring_new(const struct loop_options *opt, struct loop **out);
int loop__epoll_new(const struct loop_options *opt, struct loop **out);

#endif
