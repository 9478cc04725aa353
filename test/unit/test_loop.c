/* The loop's contract, checked the same way on both backends with real loopback
 * sockets: multishot accept and receive, sends, connect, polls, cancels, buffer
 * exhaustion. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/loop.h"

/* Completions received but not yet asked for, in arrival order. */
static struct loop_event pending[64];
static int npending;

struct fixture {
    struct loop *loop;
    enum loop_backend backend;
};

static int setup(void **state, enum loop_backend backend, unsigned bufs)
{
    static struct fixture f;
    struct loop_options opt = {
        .backend = backend, .queue_depth = 64, .buf_count = bufs, .buf_size = 4096};
    f.backend = backend;
    int rc = loop_new(&opt, &f.loop);
    if (rc < 0) {
        /* io_uring refused here: that backend's tests are skipped, not failed. */
        f.loop = NULL;
    }
    *state = &f;
    return 0;
}

static int setup_uring(void **state) { return setup(state, LOOP_BACKEND_URING, 8); }
static int setup_epoll(void **state) { return setup(state, LOOP_BACKEND_EPOLL, 8); }
static int setup_uring_2bufs(void **state) { return setup(state, LOOP_BACKEND_URING, 2); }
static int setup_epoll_2bufs(void **state) { return setup(state, LOOP_BACKEND_EPOLL, 2); }

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < npending; i++)
        if (pending[i].flags & LOOP_F_BUFFER)
            loop_buf_release(f->loop, pending[i].buf_id);
    npending = 0;
    loop_free(f->loop);
    return 0;
}

static struct loop *loop_or_skip(void **state)
{
    struct fixture *f = *state;
    if (f->loop == NULL)
        skip();
    return f->loop;
}

static int listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    return fd;
}

static int blocking_client(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Wait until a completion with tag arrives; others are kept for later calls, and the
 * buffers of those nobody asks for are released at the end of each test. */
static struct loop_event wait_for(struct loop *l, uint64_t tag)
{
    for (int tries = 0; tries < 200; tries++) {
        for (int i = 0; i < npending; i++) {
            if (pending[i].tag == tag) {
                struct loop_event ev = pending[i];
                memmove(&pending[i], &pending[i + 1], sizeof(pending[0]) * (size_t)(npending - i - 1));
                npending--;
                return ev;
            }
        }
        int n = loop_wait(l, pending + npending, (unsigned)(64 - npending), 10 * 1000000);
        assert_true(n >= 0);
        npending += n;
    }
    fail_msg("no completion with tag %llu", (unsigned long long)tag);
    return (struct loop_event){0};
}

static void test_accept_recv_send(void **state)
{
    struct loop *l = loop_or_skip(state);
    uint16_t port;
    int lfd = listener(&port);
    assert_int_equal(loop_accept(l, lfd, 1), 0);
    int cfd = blocking_client(port);

    struct loop_event ev = wait_for(l, 1);
    assert_true(ev.res >= 0);
    assert_true(ev.flags & LOOP_F_MORE);
    int sfd = ev.res;

    assert_int_equal(loop_recv(l, sfd, 2), 0);
    assert_int_equal(write(cfd, "ping", 4), 4);
    ev = wait_for(l, 2);
    assert_int_equal(ev.res, 4);
    assert_true(ev.flags & LOOP_F_BUFFER);
    assert_true(ev.flags & LOOP_F_MORE);
    assert_memory_equal(loop_buf(l, ev.buf_id), "ping", 4);
    assert_int_equal(loop_bufs_held(l), 1);
    loop_buf_release(l, ev.buf_id);
    assert_int_equal(loop_bufs_held(l), 0);

    /* The multishot receive is still armed: a second message arrives without re-arming. */
    assert_int_equal(write(cfd, "again", 5), 5);
    ev = wait_for(l, 2);
    assert_int_equal(ev.res, 5);
    loop_buf_release(l, ev.buf_id);

    struct iovec iov[2] = {{"po", 2}, {"ng", 2}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    assert_int_equal(loop_send(l, sfd, &msg, 3), 0);
    ev = wait_for(l, 3);
    assert_int_equal(ev.res, 4);
    char buf[8];
    assert_int_equal(read(cfd, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "pong", 4);

    /* End of stream ends the multishot receive. */
    close(cfd);
    ev = wait_for(l, 2);
    assert_int_equal(ev.res, 0);
    assert_false(ev.flags & LOOP_F_MORE);

    assert_int_equal(loop_cancel_fd(l, lfd, 4), 0);
    ev = wait_for(l, 1);
    assert_false(ev.flags & LOOP_F_MORE);
    close(sfd);
    close(lfd);
}

static void test_cancel_op_pauses_only_the_receive(void **state)
{
    struct loop *l = loop_or_skip(state);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(loop_recv(l, sv[0], 10), 0);
    /* Let the receive be armed before cancelling it. */
    struct loop_event evs[4];
    loop_wait(l, evs, 4, 1000000);
    assert_int_equal(loop_cancel_op(l, sv[0], 10, 11), 0);
    struct loop_event ev = wait_for(l, 10);
    assert_false(ev.flags & LOOP_F_MORE);
    assert_int_equal(ev.res, -ECANCELED);

    /* Data sent now stays in the socket until the receive is armed again. */
    assert_int_equal(write(sv[1], "later", 5), 5);
    int n = loop_wait(l, evs, 4, 20 * 1000000);
    for (int i = 0; i < n; i++)
        assert_true(evs[i].tag != 10 || evs[i].res < 0);
    assert_int_equal(loop_recv(l, sv[0], 12), 0);
    ev = wait_for(l, 12);
    assert_int_equal(ev.res, 5);
    assert_memory_equal(loop_buf(l, ev.buf_id), "later", 5);
    loop_buf_release(l, ev.buf_id);
    loop_cancel_fd(l, sv[0], 13);
    wait_for(l, 12);
    close(sv[0]);
    close(sv[1]);
}

static void test_connect_refused_and_ok(void **state)
{
    struct loop *l = loop_or_skip(state);
    uint16_t port;
    int lfd = listener(&port);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_int_equal(loop_connect(l, fd, (struct sockaddr *)&sa, sizeof(sa), 20), 0);
    assert_int_equal(wait_for(l, 20).res, 0);
    close(fd);
    close(lfd); /* nobody listens there any more */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_int_equal(loop_connect(l, fd, (struct sockaddr *)&sa, sizeof(sa), 21), 0);
    assert_int_equal(wait_for(l, 21).res, -ECONNREFUSED);
    close(fd);
}

/* With every buffer held, the receive ends with -ENOBUFS and no data is lost: it comes
 * once buffers are back and the receive is armed again. */
static void test_buffer_exhaustion_loses_nothing(void **state)
{
    struct loop *l = loop_or_skip(state);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(loop_recv(l, sv[0], 30), 0);
    uint16_t held[2];
    for (int i = 0; i < 2; i++) {
        char msg[2] = {(char)('a' + i), 0};
        assert_int_equal(write(sv[1], msg, 1), 1);
        struct loop_event ev = wait_for(l, 30);
        assert_int_equal(ev.res, 1);
        held[i] = ev.buf_id;
    }
    assert_int_equal(write(sv[1], "c", 1), 1);
    struct loop_event ev = wait_for(l, 30);
    assert_int_equal(ev.res, -ENOBUFS);
    assert_false(ev.flags & LOOP_F_MORE);
    loop_buf_release(l, held[0]);
    loop_buf_release(l, held[1]);
    assert_int_equal(loop_recv(l, sv[0], 31), 0);
    ev = wait_for(l, 31);
    assert_int_equal(ev.res, 1);
    assert_int_equal(loop_buf(l, ev.buf_id)[0], 'c');
    loop_buf_release(l, ev.buf_id);
    loop_cancel_fd(l, sv[0], 32);
    wait_for(l, 31);
    close(sv[0]);
    close(sv[1]);
}

/* True when no completion with tag arrives within ms. */
static bool silent_for(struct loop *l, uint64_t tag, int ms)
{
    for (int i = 0; i < npending; i++)
        if (pending[i].tag == tag)
            return false;
    for (int waited = 0; waited < ms; waited += 5) {
        int n = loop_wait(l, pending + npending, (unsigned)(64 - npending), 5 * 1000000);
        assert_true(n >= 0);
        for (int i = 0; i < n; i++)
            if (pending[npending + i].tag == tag)
                return false;
        npending += n;
    }
    return true;
}

static void test_poll_readable_once(void **state)
{
    struct loop *l = loop_or_skip(state);
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(loop_poll(l, p[0], POLLIN, 40), 0);
    assert_true(silent_for(l, 40, 30));
    assert_int_equal(write(p[1], "x", 1), 1);
    struct loop_event ev = wait_for(l, 40);
    assert_int_equal(ev.res, POLLIN);
    assert_false(ev.flags & LOOP_F_MORE);

    /* One-shot: still readable, but nothing more comes until it is armed again. */
    assert_true(silent_for(l, 40, 30));
    assert_int_equal(loop_poll(l, p[0], POLLIN, 41), 0);
    assert_int_equal(wait_for(l, 41).res, POLLIN);

    /* The writer's end closing is a hangup, reported though not asked for. */
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(loop_poll(l, p[0], POLLIN, 42), 0);
    assert_true(silent_for(l, 42, 20));
    close(p[1]);
    assert_true(wait_for(l, 42).res & POLLHUP);
    close(p[0]);
}

static void test_poll_writable_and_mask(void **state)
{
    struct loop *l = loop_or_skip(state);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    /* Writable at once; readability is not reported when not asked for. */
    assert_int_equal(loop_poll(l, sv[0], POLLOUT, 50), 0);
    assert_int_equal(wait_for(l, 50).res, POLLOUT);
    assert_int_equal(write(sv[1], "r", 1), 1);
    assert_int_equal(loop_poll(l, sv[0], POLLIN | POLLOUT, 51), 0);
    assert_int_equal(wait_for(l, 51).res, POLLIN | POLLOUT);
    assert_int_equal(loop_poll(l, sv[0], POLLOUT, 52), 0);
    assert_int_equal(wait_for(l, 52).res, POLLOUT);
    assert_int_equal(loop_poll(l, sv[0], POLLPRI, 53), -EINVAL);
    assert_int_equal(loop_poll(l, sv[0], 0, 53), -EINVAL);
    close(sv[0]);
    close(sv[1]);
}

/* A poll waits beside a multishot receive on another socket: each completes for its own
 * fd only. */
static void test_poll_beside_receive(void **state)
{
    struct loop *l = loop_or_skip(state);
    int a[2], b[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    assert_int_equal(loop_recv(l, a[0], 60), 0);
    assert_int_equal(loop_poll(l, b[0], POLLIN, 61), 0);
    assert_int_equal(write(a[1], "one", 3), 3);
    struct loop_event ev = wait_for(l, 60);
    assert_int_equal(ev.res, 3);
    loop_buf_release(l, ev.buf_id);
    assert_true(silent_for(l, 61, 20));
    assert_int_equal(write(b[1], "two", 3), 3);
    assert_int_equal(wait_for(l, 61).res, POLLIN);
    /* The data is still there for whoever reads it. */
    char buf[4];
    assert_int_equal(read(b[0], buf, sizeof(buf)), 3);
    loop_cancel_fd(l, a[0], 62);
    wait_for(l, 60);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
}

static void test_poll_cancel(void **state)
{
    struct loop *l = loop_or_skip(state);
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(loop_poll(l, p[0], POLLIN, 70), 0);
    assert_true(silent_for(l, 70, 10));
    assert_int_equal(loop_cancel_op(l, p[0], 70, 71), 0);
    assert_int_equal(wait_for(l, 70).res, -ECANCELED);
    assert_int_equal(wait_for(l, 71).res, 0);
    /* Cancelled means gone: readiness now completes nothing. */
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_true(silent_for(l, 70, 30));

    /* A cancel that finds nothing says so. */
    assert_int_equal(loop_cancel_op(l, p[0], 70, 72), 0);
    assert_int_equal(wait_for(l, 72).res, -ENOENT);

    /* The fd takes a new poll after the cancel; loop_cancel_fd ends it too. */
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(loop_poll(l, p[0], POLLIN, 73), 0);
    assert_true(silent_for(l, 73, 10));
    assert_int_equal(loop_cancel_fd(l, p[0], 74), 0);
    assert_int_equal(wait_for(l, 73).res, -ECANCELED);
    wait_for(l, 74);
    assert_int_equal(write(p[1], "y", 1), 1);
    assert_true(silent_for(l, 73, 30));
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accept_recv_send, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_accept_recv_send, setup_epoll, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_op_pauses_only_the_receive, setup_uring,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_op_pauses_only_the_receive, setup_epoll,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused_and_ok, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused_and_ok, setup_epoll, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_exhaustion_loses_nothing, setup_uring_2bufs,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_buffer_exhaustion_loses_nothing, setup_epoll_2bufs,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_poll_readable_once, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_poll_readable_once, setup_epoll, teardown),
        cmocka_unit_test_setup_teardown(test_poll_writable_and_mask, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_poll_writable_and_mask, setup_epoll, teardown),
        cmocka_unit_test_setup_teardown(test_poll_beside_receive, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_poll_beside_receive, setup_epoll, teardown),
        cmocka_unit_test_setup_teardown(test_poll_cancel, setup_uring, teardown),
        cmocka_unit_test_setup_teardown(test_poll_cancel, setup_epoll, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
