/* The completion-based event loop of one worker.
 *
 * Every operation carries a 64-bit tag chosen by the caller and ends in one or more
 * completions with that tag. Two backends implement it: io_uring, and epoll for where
 * io_uring is refused (seccomp, kernel.io_uring_disabled, old kernels), which turns
 * readiness into the same completions. A loop belongs to the thread that created it.
 *
 * Receive operations read into the loop's provided buffers: a completion with
 * LOOP_F_BUFFER names a buffer the caller owns until it calls loop_buf_release. */
#ifndef RINGSIDE_LOOP_H
#define RINGSIDE_LOOP_H

#include <stdint.h>
#include <sys/socket.h>

struct loop;

enum loop_backend { LOOP_BACKEND_URING, LOOP_BACKEND_EPOLL };

struct loop_options {
    enum loop_backend backend;
    unsigned queue_depth; /* submission queue entries (io_uring) */
    unsigned buf_count;   /* provided receive buffers; a power of two */
    unsigned buf_size;    /* bytes per buffer */
};

#define LOOP_F_MORE 1u   /* a multishot operation stays armed after this completion */
#define LOOP_F_BUFFER 2u /* buf_id names the provided buffer holding the data */

struct loop_event {
    uint64_t tag;
    int32_t res; /* >= 0 result, or -errno */
    uint32_t flags;
    uint16_t buf_id;
};

/* Create a loop on the calling thread. Returns 0, or -errno; for the io_uring backend
 * -EPERM, -ENOSYS, -EINVAL or -EOPNOTSUPP mean the kernel refuses it here. */
int loop_new(const struct loop_options *opt, struct loop **out);
void loop_free(struct loop *l);
enum loop_backend loop_backend(const struct loop *l);
const char *loop_backend_name(enum loop_backend backend);

/* Queue operations; they are submitted by the next loop_wait. Each returns 0 or -errno
 * (-ENOMEM only). Memory an operation points to stays the caller's and must stay valid
 * until its last completion. */

/* Multishot accept: a completion per accepted socket (res = fd, non-blocking, CLOEXEC). */
int loop_accept(struct loop *l, int fd, uint64_t tag);
/* Multishot receive into provided buffers: res > 0 bytes with LOOP_F_BUFFER; 0 at end of
 * stream; -ENOBUFS when buffers ran out (re-arm once some are released). It stays armed
 * while LOOP_F_MORE is set. */
int loop_recv(struct loop *l, int fd, uint64_t tag);
/* One sendmsg (MSG_NOSIGNAL); res = bytes sent, possibly fewer than asked. */
int loop_send(struct loop *l, int fd, const struct msghdr *msg, uint64_t tag);
/* Connect a non-blocking socket; res = 0 or -errno. */
int loop_connect(struct loop *l, int fd, const struct sockaddr *addr, socklen_t len, uint64_t tag);
/* One read into buf (for an eventfd); res = bytes or -errno. */
int loop_read(struct loop *l, int fd, void *buf, uint32_t len, uint64_t tag);
/* One-shot poll for readiness: events is POLLIN and/or POLLOUT (<poll.h>), anything else
 * is -EINVAL. Completes once fd is ready for one of them with res = the ready mask (of
 * events, plus POLLERR and POLLHUP, which are always reported), or -errno. Cancel it with
 * loop_cancel_op (target_tag = tag) or loop_cancel_fd. One poll per fd at a time: the epoll
 * backend refuses a second with -EBUSY. */
int loop_poll(struct loop *l, int fd, uint32_t events, uint64_t tag);
/* End every operation on fd: each completes (usually -ECANCELED, without LOOP_F_MORE);
 * then a completion with tag reports the cancel itself. */
int loop_cancel_fd(struct loop *l, int fd, uint64_t tag);

/* End the one operation started on fd with target_tag (a multishot receive, to pause
 * it, or a poll): it completes without LOOP_F_MORE, then a completion with tag reports
 * the cancel (0, or -errno: -ENOENT when nothing matched). */
int loop_cancel_op(struct loop *l, int fd, uint64_t target_tag, uint64_t tag);

/* Provided buffers. */
char *loop_buf(struct loop *l, uint16_t id);
void loop_buf_release(struct loop *l, uint16_t id);
/* Buffers the caller holds now (received, not yet released). */
unsigned loop_bufs_held(const struct loop *l);
unsigned loop_buf_count(const struct loop *l);
unsigned loop_buf_size(const struct loop *l);

/* Submit what is queued and wait up to timeout_ns (-1: no limit, 0: don't wait) for at
 * least one completion. Copies at most max completions into evs and returns how many
 * (0 on timeout or signal), or -errno. */
int loop_wait(struct loop *l, struct loop_event *evs, unsigned max, int64_t timeout_ns);

#endif
