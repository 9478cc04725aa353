/* Slices and the output queue: references, partial sends, ring growth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/slice.h"

static int released;

static void count_release(struct slice *s)
{
    (void)s;
    released++;
}

static void test_refcount_releases_once(void **state)
{
    (void)state;
    char buf[8] = "abcdefg";
    struct slice s = {.len = 7, .data = buf, .release = count_release};
    atomic_init(&s.refs, 1);
    released = 0;
    slice_ref(&s);
    slice_ref(&s);
    slice_unref(&s);
    slice_unref(&s);
    assert_int_equal(released, 0);
    slice_unref(&s);
    assert_int_equal(released, 1);
}

static void test_outq_partial_sends(void **state)
{
    (void)state;
    struct outq q;
    outq_init(&q);
    struct slice *a = slice_copy("hello ", 6);
    struct slice *b = slice_copy("wide world", 10);
    assert_int_equal(outq_push(&q, a, 0, 6), 0);
    assert_int_equal(outq_push(&q, b, 5, 5), 0); /* "world" */
    assert_int_equal(q.bytes, 11);

    struct iovec iov[4];
    assert_int_equal(outq_iov(&q, iov, 4), 2);
    assert_memory_equal(iov[1].iov_base, "world", 5);

    outq_consume(&q, 4); /* "hell" sent */
    assert_int_equal(q.bytes, 7);
    assert_int_equal(outq_iov(&q, iov, 4), 2);
    assert_int_equal(iov[0].iov_len, 2);
    assert_memory_equal(iov[0].iov_base, "o ", 2);

    outq_consume(&q, 3); /* "o w" */
    assert_int_equal(outq_iov(&q, iov, 4), 1);
    assert_memory_equal(iov[0].iov_base, "orld", 4);
    outq_consume(&q, 4);
    assert_int_equal(q.bytes, 0);
    assert_int_equal(q.count, 0);
    outq_clear(&q);
}

static void test_outq_grows_and_keeps_order(void **state)
{
    (void)state;
    struct outq q;
    outq_init(&q);
    /* Interleave pushes and consumes so the ring wraps before it grows. */
    char expect[200];
    int next = 0, sent = 0;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 7 && next < 200; i++, next++) {
            char ch = (char)('A' + next % 26);
            expect[next] = ch;
            assert_int_equal(outq_push(&q, slice_copy(&ch, 1), 0, 1), 0);
        }
        struct iovec iov[3];
        unsigned n = outq_iov(&q, iov, 3);
        for (unsigned i = 0; i < n; i++)
            assert_int_equal(*(char *)iov[i].iov_base, expect[sent + (int)i]);
        outq_consume(&q, n);
        sent += (int)n;
    }
    assert_int_equal(q.bytes, (size_t)(next - sent));
    outq_clear(&q);
    assert_int_equal(q.bytes, 0);
}

static void test_bytes_append_consume(void **state)
{
    (void)state;
    struct bytes b = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(bytes_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 10000);
    bytes_consume(&b, 9995);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "56789", 5);
    bytes_consume(&b, 100);
    assert_int_equal(b.len, 0);
    bytes_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refcount_releases_once),
        cmocka_unit_test(test_outq_partial_sends),
        cmocka_unit_test(test_outq_grows_and_keeps_order),
        cmocka_unit_test(test_bytes_append_consume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
