#include "proxy/loop_internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/mman.h>

int loop_new(const struct loop_options *opt, struct loop **out)
{
    if (opt->buf_count == 0 || (opt->buf_count & (opt->buf_count - 1)) != 0 ||
        opt->buf_count > 32768 || opt->buf_size == 0)
        return -EINVAL;
    int rc = opt->backend == LOOP_BACKEND_URING ? loop__uring_new(opt, out)
                                                : loop__epoll_new(opt, out);
    if (rc < 0)
        return rc;
    struct loop *l = *out;
    l->backend = opt->backend;
    l->buf_count = opt->buf_count;
    l->buf_size = opt->buf_size;
    l->bufs_held = 0;
    return 0;
}

/* Both backends keep their receive buffers in one anonymous mapping: pages are only
 * backed once touched. */
char *loop__map_bufs(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void loop_free(struct loop *l)
{
    if (l != NULL)
        l->ops->free(l);
}

enum loop_backend loop_backend(const struct loop *l)
{
    return l->backend;
}

const char *loop_backend_name(enum loop_backend backend)
{
    return backend == LOOP_BACKEND_URING ? "uring" : "epoll";
}

int loop_accept(struct loop *l, int fd, uint64_t tag)
{
    return l->ops->accept(l, fd, tag);
}

int loop_recv(struct loop *l, int fd, uint64_t tag)
{
    return l->ops->recv(l, fd, tag);
}

int loop_send(struct loop *l, int fd, const struct msghdr *msg, uint64_t tag)
{
    return l->ops->send(l, fd, msg, tag);
}

int loop_connect(struct loop *l, int fd, const struct sockaddr *addr, socklen_t len, uint64_t tag)
{
    return l->ops->connect(l, fd, addr, len, tag);
}

int loop_read(struct loop *l, int fd, void *buf, uint32_t len, uint64_t tag)
{
    return l->ops->read(l, fd, buf, len, tag);
}

int loop_poll(struct loop *l, int fd, uint32_t events, uint64_t tag)
{
    if ((events & (POLLIN | POLLOUT)) == 0 || (events & ~(uint32_t)(POLLIN | POLLOUT)) != 0)
        return -EINVAL;
    return l->ops->poll(l, fd, events, tag);
}

int loop_cancel_fd(struct loop *l, int fd, uint64_t tag)
{
    return l->ops->cancel_fd(l, fd, tag);
}

int loop_cancel_op(struct loop *l, int fd, uint64_t target_tag, uint64_t tag)
{
    return l->ops->cancel_op(l, fd, target_tag, tag);
}

char *loop_buf(struct loop *l, uint16_t id)
{
    return l->bufs + (size_t)id * l->buf_size;
}

void loop_buf_release(struct loop *l, uint16_t id)
{
    l->bufs_held--;
    l->ops->buf_release(l, id);
}

unsigned loop_bufs_held(const struct loop *l)
{
    return l->bufs_held;
}

unsigned loop_buf_count(const struct loop *l)
{
    return l->buf_count;
}

unsigned loop_buf_size(const struct loop *l)
{
    return l->buf_size;
}

int loop_wait(struct loop *l, struct loop_event *evs, unsigned max, int64_t timeout_ns)
{
    int n = l->ops->wait(l, evs, max, timeout_ns);
    for (int i = 0; i < n; i++)
        if (evs[i].flags & LOOP_F_BUFFER)
            l->bufs_held++;
    return n;
}
