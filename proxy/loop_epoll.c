/* The epoll backend: readiness turned into completions, for where io_uring is refused.
 * Operations are attempted at once where that cannot block (send, connect) and wait for
 * readiness otherwise. Completions produced outside epoll_wait queue up and are handed
 * out by the next loop_wait, which then does not sleep. */
#include "proxy/loop_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

enum {
    OP_ACCEPT = 1,
    OP_RECV = 2,
    OP_SEND = 4,
    OP_CONNECT = 8,
    OP_READ = 16,
    OP_POLL = 32,
    ACCEPT_BURST = 64, /* accepts per readiness event, so one listener can't starve the rest */
};

struct fd_state {
    uint8_t ops;
    uint32_t registered; /* epoll events currently registered; 0 = not in the set */
    uint64_t accept_tag, recv_tag, send_tag, connect_tag, read_tag, poll_tag;
    uint32_t poll_events; /* EPOLLIN / EPOLLOUT the poll waits for */
    const struct msghdr *send_msg;
    void *read_buf;
    uint32_t read_len;
};

struct epoll_loop {
    struct loop base;
    int epfd;
    struct fd_state *fds; /* indexed by fd */
    int fds_cap;
    uint16_t *free_bufs; /* stack of buffer ids */
    unsigned free_count;
    struct loop_event *ready; /* ring of completions not yet handed out */
    unsigned ready_head, ready_count, ready_cap;
};

static int push(struct epoll_loop *e, uint64_t tag, int32_t res, uint32_t flags, uint16_t buf)
{
    if (e->ready_count == e->ready_cap) {
        unsigned cap = e->ready_cap ? e->ready_cap * 2 : 256;
        struct loop_event *r = malloc(sizeof(*r) * cap);
        if (r == NULL)
            return -ENOMEM;
        for (unsigned i = 0; i < e->ready_count; i++)
            r[i] = e->ready[(e->ready_head + i) % e->ready_cap];
        free(e->ready);
        e->ready = r;
        e->ready_head = 0;
        e->ready_cap = cap;
    }
    e->ready[(e->ready_head + e->ready_count++) % e->ready_cap] =
        (struct loop_event){.tag = tag, .res = res, .flags = flags, .buf_id = buf};
    return 0;
}

static struct fd_state *state_of(struct epoll_loop *e, int fd)
{
    if (fd < 0)
        return NULL;
    if (fd >= e->fds_cap) {
        int cap = e->fds_cap ? e->fds_cap : 1024;
        while (cap <= fd)
            cap *= 2;
        struct fd_state *f = realloc(e->fds, sizeof(*f) * (size_t)cap);
        if (f == NULL)
            return NULL;
        memset(f + e->fds_cap, 0, sizeof(*f) * (size_t)(cap - e->fds_cap));
        e->fds = f;
        e->fds_cap = cap;
    }
    return &e->fds[fd];
}

/* Register the interest the armed operations need. Level-triggered: an operation that
 * stopped short of EAGAIN is simply reported ready again. */
static int update_interest(struct epoll_loop *e, int fd, struct fd_state *s)
{
    uint32_t want = 0;
    if (s->ops & (OP_ACCEPT | OP_RECV | OP_READ))
        want |= EPOLLIN;
    if (s->ops & (OP_SEND | OP_CONNECT))
        want |= EPOLLOUT;
    if (s->ops & OP_POLL)
        want |= s->poll_events;
    if (want == s->registered)
        return 0;
    struct epoll_event ev = {.events = want, .data.fd = fd};
    int op = s->registered == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(e->epfd, op, fd, &ev) < 0 && !(op == EPOLL_CTL_DEL && errno == EBADF))
        return -errno;
    s->registered = want;
    return 0;
}

static int arm(struct epoll_loop *e, int fd, uint8_t op, uint64_t tag)
{
    struct fd_state *s = state_of(e, fd);
    if (s == NULL)
        return -ENOMEM;
    switch (op) {
    case OP_ACCEPT: s->accept_tag = tag; break;
    case OP_RECV: s->recv_tag = tag; break;
    case OP_SEND: s->send_tag = tag; break;
    case OP_CONNECT: s->connect_tag = tag; break;
    case OP_READ: s->read_tag = tag; break;
    case OP_POLL: s->poll_tag = tag; break;
    }
    s->ops |= op;
    int rc = update_interest(e, fd, s);
    if (rc < 0) {
        s->ops &= (uint8_t)~op;
        return push(e, tag, rc, 0, 0);
    }
    return 0;
}

static int disarm(struct epoll_loop *e, int fd, struct fd_state *s, uint8_t op)
{
    s->ops &= (uint8_t)~op;
    return update_interest(e, fd, s);
}

static int e_accept(struct loop *l, int fd, uint64_t tag)
{
    return arm((struct epoll_loop *)l, fd, OP_ACCEPT, tag);
}

static int e_recv(struct loop *l, int fd, uint64_t tag)
{
    return arm((struct epoll_loop *)l, fd, OP_RECV, tag);
}

static int e_read(struct loop *l, int fd, void *buf, uint32_t len, uint64_t tag)
{
    struct epoll_loop *e = (struct epoll_loop *)l;
    struct fd_state *s = state_of(e, fd);
    if (s == NULL)
        return -ENOMEM;
    s->read_buf = buf;
    s->read_len = len;
    return arm(e, fd, OP_READ, tag);
}

static int e_poll(struct loop *l, int fd, uint32_t events, uint64_t tag)
{
    struct epoll_loop *e = (struct epoll_loop *)l;
    struct fd_state *s = state_of(e, fd);
    if (s == NULL)
        return -ENOMEM;
    if (s->ops & OP_POLL)
        return -EBUSY;
    s->poll_events = (events & POLLIN ? (uint32_t)EPOLLIN : 0) |
                     (events & POLLOUT ? (uint32_t)EPOLLOUT : 0);
    return arm(e, fd, OP_POLL, tag);
}

/* The poll's result in poll(2) bits: what it waits for, plus errors and hangups. */
static int32_t poll_result(uint32_t epoll_events, uint32_t waited)
{
    uint32_t ready = epoll_events & (waited | EPOLLERR | EPOLLHUP);
    return (int32_t)((ready & EPOLLIN ? POLLIN : 0) | (ready & EPOLLOUT ? POLLOUT : 0) |
                     (ready & EPOLLERR ? POLLERR : 0) | (ready & EPOLLHUP ? POLLHUP : 0));
}

static int e_send(struct loop *l, int fd, const struct msghdr *msg, uint64_t tag)
{
    struct epoll_loop *e = (struct epoll_loop *)l;
    ssize_t n = sendmsg(fd, msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
        return push(e, tag, n >= 0 ? (int32_t)n : -errno, 0, 0);
    struct fd_state *s = state_of(e, fd);
    if (s == NULL)
        return -ENOMEM;
    s->send_msg = msg;
    return arm(e, fd, OP_SEND, tag);
}

static int e_connect(struct loop *l, int fd, const struct sockaddr *addr, socklen_t len,
                     uint64_t tag)
{
    struct epoll_loop *e = (struct epoll_loop *)l;
    if (connect(fd, addr, len) == 0)
        return push(e, tag, 0, 0, 0);
    if (errno != EINPROGRESS)
        return push(e, tag, -errno, 0, 0);
    return arm(e, fd, OP_CONNECT, tag);
}

static int e_cancel_fd(struct loop *l, int fd, uint64_t tag)
{
    struct epoll_loop *e = (struct epoll_loop *)l;
    struct fd_state *s = fd < e->fds_cap ? &e->fds[fd] : NULL;
    int cancelled = 0, rc = 0;
    if (s != NULL) {
        const struct {
            uint8_t op;
            uint64_t tag;
        } ops[] = {{OP_ACCEPT, s->accept_tag}, {OP_RECV, s->recv_tag}, {OP_SEND, s->send_tag},
                   {OP_CONNECT, s->connect_tag}, {OP_READ, s->read_tag},
                   {OP_POLL, s->poll_tag}};
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
            if (!(s->ops & ops[i].op))
                continue;
            cancelled++;
            if (rc == 0)
                rc = push(e, ops[i].tag, -ECANCELED, 0, 0);
        }
        s->ops = 0;
        update_interest(e, fd, s);
    }
    if (rc == 0)
        rc = push(e, tag, cancelled, 0, 0);
    return rc;
}

static int e_cancel_op(struct loop *l, int fd, uint64_t target_tag, uint64_t tag)
{
    struct epoll_loop *e = (struct epoll_loop *)l;
    struct fd_state *s = fd < e->fds_cap ? &e->fds[fd] : NULL;
    int found = 0;
    uint8_t op = 0;
    if (s != NULL && (s->ops & OP_RECV) && s->recv_tag == target_tag)
        op = OP_RECV;
    else if (s != NULL && (s->ops & OP_POLL) && s->poll_tag == target_tag)
        op = OP_POLL;
    if (op != 0) {
        disarm(e, fd, s, op);
        found = 1;
        if (push(e, target_tag, -ECANCELED, 0, 0) < 0)
            return -ENOMEM;
    }
    return push(e, tag, found ? 0 : -ENOENT, 0, 0);
}

static void e_buf_release(struct loop *l, uint16_t id)
{
    struct epoll_loop *e = (struct epoll_loop *)l;
    e->free_bufs[e->free_count++] = id;
}

static void on_accept_ready(struct epoll_loop *e, int fd, struct fd_state *s)
{
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            /* ECONNABORTED, EMFILE...: report, stay armed as multishot accept does. */
            push(e, s->accept_tag, -errno, LOOP_F_MORE, 0);
            return;
        }
        if (push(e, s->accept_tag, c, LOOP_F_MORE, 0) < 0) {
            close(c);
            return;
        }
    }
}

static void on_recv_ready(struct epoll_loop *e, int fd, struct fd_state *s)
{
    if (e->free_count == 0) {
        disarm(e, fd, s, OP_RECV);
        push(e, s->recv_tag, -ENOBUFS, 0, 0);
        return;
    }
    uint16_t id = e->free_bufs[e->free_count - 1];
    ssize_t n = recv(fd, loop_buf(&e->base, id), e->base.buf_size, MSG_DONTWAIT);
    if (n > 0) {
        e->free_count--;
        push(e, s->recv_tag, (int32_t)n, LOOP_F_MORE | LOOP_F_BUFFER, id);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    disarm(e, fd, s, OP_RECV);
    push(e, s->recv_tag, n == 0 ? 0 : -errno, 0, 0);
}

static void on_out_ready(struct epoll_loop *e, int fd, struct fd_state *s)
{
    if (s->ops & OP_CONNECT) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        disarm(e, fd, s, OP_CONNECT);
        push(e, s->connect_tag, -err, 0, 0);
    }
    if (s->ops & OP_SEND) {
        ssize_t n = sendmsg(fd, s->send_msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        disarm(e, fd, s, OP_SEND);
        push(e, s->send_tag, n >= 0 ? (int32_t)n : -errno, 0, 0);
    }
}

static unsigned take_ready(struct epoll_loop *e, struct loop_event *evs, unsigned max)
{
    unsigned n = 0;
    while (n < max && e->ready_count > 0) {
        evs[n++] = e->ready[e->ready_head];
        e->ready_head = (e->ready_head + 1) % e->ready_cap;
        e->ready_count--;
    }
    return n;
}

static int e_wait(struct loop *l, struct loop_event *evs, unsigned max, int64_t timeout_ns)
{
    struct epoll_loop *e = (struct epoll_loop *)l;
    int timeout_ms = -1;
    if (e->ready_count > 0)
        timeout_ms = 0;
    else if (timeout_ns >= 0)
        timeout_ms = (int)((timeout_ns + 999999) / 1000000);
    struct epoll_event events[128];
    int n = epoll_wait(e->epfd, events, 128, timeout_ms);
    if (n < 0 && errno != EINTR)
        return -errno;
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        struct fd_state *s = &e->fds[fd];
        uint32_t ev = events[i].events;
        if ((s->ops & OP_POLL) && (ev & (s->poll_events | EPOLLERR | EPOLLHUP))) {
            disarm(e, fd, s, OP_POLL);
            push(e, s->poll_tag, poll_result(ev, s->poll_events), 0, 0);
        }
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            on_out_ready(e, fd, s);
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            if (s->ops & OP_ACCEPT)
                on_accept_ready(e, fd, s);
            if (s->ops & OP_RECV)
                on_recv_ready(e, fd, s);
            if (s->ops & OP_READ) {
                ssize_t r = read(fd, s->read_buf, s->read_len);
                if (!(r < 0 && (errno == EAGAIN || errno == EINTR))) {
                    disarm(e, fd, s, OP_READ);
                    push(e, s->read_tag, r >= 0 ? (int32_t)r : -errno, 0, 0);
                }
            }
        }
    }
    return (int)take_ready(e, evs, max);
}

static void e_free(struct loop *l)
{
    struct epoll_loop *e = (struct epoll_loop *)l;
    close(e->epfd);
    munmap(l->bufs, (size_t)l->buf_count * l->buf_size);
    free(e->fds);
    free(e->free_bufs);
    free(e->ready);
    free(e);
}

static const struct loop_ops epoll_ops = {
    .accept = e_accept,
    .recv = e_recv,
    .send = e_send,
    .connect = e_connect,
    .read = e_read,
    .poll = e_poll,
    .cancel_fd = e_cancel_fd,
    .cancel_op = e_cancel_op,
    .buf_release = e_buf_release,
    .wait = e_wait,
    .free = e_free,
};

int loop__epoll_new(const struct loop_options *opt, struct loop **out)
{
    struct epoll_loop *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    int rc = -ENOMEM;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->epfd < 0) {
        rc = -errno;
        goto fail_alloc;
    }
    e->free_bufs = malloc(sizeof(*e->free_bufs) * opt->buf_count);
    e->base.bufs = loop__map_bufs((size_t)opt->buf_count * opt->buf_size);
    if (e->free_bufs == NULL || e->base.bufs == NULL)
        goto fail_epoll;
    /* Hand out low ids first, like the ring does, so touched pages stay few. */
    for (unsigned i = 0; i < opt->buf_count; i++)
        e->free_bufs[i] = (uint16_t)(opt->buf_count - 1 - i);
    e->free_count = opt->buf_count;
    e->base.ops = &epoll_ops;
    *out = &e->base;
    return 0;

fail_epoll:
    if (e->base.bufs != NULL)
        munmap(e->base.bufs, (size_t)opt->buf_count * opt->buf_size);
    free(e->free_bufs);
    close(e->epfd);
fail_alloc:
    free(e);
    return rc;
}
