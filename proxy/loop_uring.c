/* The io_uring backend: operations map one to one onto SQEs. */
#include "proxy/loop_internal.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { BUF_GROUP = 0 };

struct uring_loop {
    struct loop base;
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    int br_mask;
};

static struct io_uring_sqe *get_sqe(struct uring_loop *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (sqe == NULL) {
        /* The queue is full: push what is there to the kernel and take a slot. */
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

#define SQE_OR_FAIL(u, sqe)                                                                   \
    struct io_uring_sqe *sqe = get_sqe(u);                                                    \
    if (sqe == NULL)                                                                          \
        return -ENOMEM

static int u_accept(struct loop *l, int fd, uint64_t tag)
{
    struct uring_loop *u = (struct uring_loop *)l;
    SQE_OR_FAIL(u, sqe);
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

static int u_recv(struct loop *l, int fd, uint64_t tag)
{
    struct uring_loop *u = (struct uring_loop *)l;
    SQE_OR_FAIL(u, sqe);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

static int u_send(struct loop *l, int fd, const struct msghdr *msg, uint64_t tag)
{
    struct uring_loop *u = (struct uring_loop *)l;
    SQE_OR_FAIL(u, sqe);
    io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

static int u_connect(struct loop *l, int fd, const struct sockaddr *addr, socklen_t len,
                     uint64_t tag)
{
    struct uring_loop *u = (struct uring_loop *)l;
    SQE_OR_FAIL(u, sqe);
    io_uring_prep_connect(sqe, fd, addr, len);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

static int u_read(struct loop *l, int fd, void *buf, uint32_t len, uint64_t tag)
{
    struct uring_loop *u = (struct uring_loop *)l;
    SQE_OR_FAIL(u, sqe);
    io_uring_prep_read(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

static int u_poll(struct loop *l, int fd, uint32_t events, uint64_t tag)
{
    struct uring_loop *u = (struct uring_loop *)l;
    SQE_OR_FAIL(u, sqe);
    io_uring_prep_poll_add(sqe, fd, events);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

static int u_cancel_fd(struct loop *l, int fd, uint64_t tag)
{
    struct uring_loop *u = (struct uring_loop *)l;
    SQE_OR_FAIL(u, sqe);
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

static int u_cancel_op(struct loop *l, int fd, uint64_t target_tag, uint64_t tag)
{
    (void)fd;
    struct uring_loop *u = (struct uring_loop *)l;
    SQE_OR_FAIL(u, sqe);
    io_uring_prep_cancel64(sqe, target_tag, 0);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

static void u_buf_release(struct loop *l, uint16_t id)
{
    struct uring_loop *u = (struct uring_loop *)l;
    io_uring_buf_ring_add(u->br, loop_buf(l, id), l->buf_size, id, u->br_mask, 0);
    io_uring_buf_ring_advance(u->br, 1);
}

static int u_wait(struct loop *l, struct loop_event *evs, unsigned max, int64_t timeout_ns)
{
    struct uring_loop *u = (struct uring_loop *)l;
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    int rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, tsp, NULL);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
        return rc;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        if (n == max)
            break;
        struct loop_event *ev = &evs[n++];
        ev->tag = cqe->user_data;
        ev->res = cqe->res;
        ev->flags = 0;
        ev->buf_id = 0;
        if (cqe->flags & IORING_CQE_F_MORE)
            ev->flags |= LOOP_F_MORE;
        if (cqe->flags & IORING_CQE_F_BUFFER) {
            ev->flags |= LOOP_F_BUFFER;
            ev->buf_id = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        }
    }
    io_uring_cq_advance(&u->ring, n);
    return (int)n;
}

static void u_free(struct loop *l)
{
    struct uring_loop *u = (struct uring_loop *)l;
    io_uring_queue_exit(&u->ring);
    munmap(u->br, u->br_bytes);
    munmap(l->bufs, (size_t)l->buf_count * l->buf_size);
    free(u);
}

static const struct loop_ops uring_ops = {
    .accept = u_accept,
    .recv = u_recv,
    .send = u_send,
    .connect = u_connect,
    .read = u_read,
    .poll = u_poll,
    .cancel_fd = u_cancel_fd,
    .cancel_op = u_cancel_op,
    .buf_release = u_buf_release,
    .wait = u_wait,
    .free = u_free,
};

/* Newest flags first: SINGLE_ISSUER and DEFER_TASKRUN (6.1) keep completion work on
 * this thread at the moment it waits; COOP_TASKRUN (5.19) at least avoids IPIs. */
static int init_ring(struct io_uring *ring, unsigned depth)
{
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = depth * 4;
        rc = io_uring_queue_init_params(depth, ring, &p);
        if (rc == 0 || (rc != -EINVAL))
            return rc; /* EPERM, ENOSYS...: refused whatever the flags */
    }
    return rc;
}

int loop__uring_new(const struct loop_options *opt, struct loop **out)
{
    struct uring_loop *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -ENOMEM;
    int rc = init_ring(&u->ring, opt->queue_depth);
    if (rc < 0)
        goto fail_alloc;

    /* A provided-buffer ring (5.19+); liburing 2.3 leaves mapping it to us. */
    u->br_bytes = sizeof(struct io_uring_buf) * opt->buf_count;
    u->br = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (u->br == MAP_FAILED) {
        rc = -ENOMEM;
        goto fail_ring;
    }
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)u->br,
        .ring_entries = opt->buf_count,
        .bgid = BUF_GROUP,
    };
    rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0) {
        rc = rc == -EINVAL ? -EOPNOTSUPP : rc;
        goto fail_br;
    }
    u->base.bufs = loop__map_bufs((size_t)opt->buf_count * opt->buf_size);
    if (u->base.bufs == NULL) {
        rc = -ENOMEM;
        goto fail_br;
    }
    u->br_mask = io_uring_buf_ring_mask(opt->buf_count);
    io_uring_buf_ring_init(u->br);
    for (unsigned i = 0; i < opt->buf_count; i++)
        io_uring_buf_ring_add(u->br, u->base.bufs + (size_t)i * opt->buf_size, opt->buf_size,
                              (unsigned short)i, u->br_mask, (int)i);
    io_uring_buf_ring_advance(u->br, (int)opt->buf_count);

    u->base.ops = &uring_ops;
    *out = &u->base;
    return 0;

fail_br:
    munmap(u->br, u->br_bytes);
fail_ring:
    io_uring_queue_exit(&u->ring);
fail_alloc:
    free(u);
    return rc;
}
