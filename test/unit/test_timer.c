/* The timer heap: ordering, moves, cancels, and a randomized check against a model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "proxy/timer.h"

static void test_pops_in_deadline_order(void **state)
{
    (void)state;
    struct timer_heap h = {0};
    struct timer t[5];
    const uint64_t deadlines[5] = {50, 10, 40, 20, 30};
    for (int i = 0; i < 5; i++) {
        timer_init(&t[i], (uint64_t)i);
        assert_int_equal(timer_set(&h, &t[i], deadlines[i]), 0);
    }
    assert_null(timer_pop_expired(&h, 9));
    assert_int_equal(timer_next_in(&h, 5), 5);
    const uint64_t expect[5] = {1, 3, 4, 2, 0};
    for (int i = 0; i < 5; i++) {
        struct timer *x = timer_pop_expired(&h, 100);
        assert_non_null(x);
        assert_int_equal(x->tag, expect[i]);
        assert_false(timer_armed(x));
    }
    assert_null(timer_pop_expired(&h, 1000));
    assert_int_equal(timer_next_in(&h, 0), -1);
    timer_heap_free(&h);
}

static void test_move_and_cancel(void **state)
{
    (void)state;
    struct timer_heap h = {0};
    struct timer a, b, c;
    timer_init(&a, 1);
    timer_init(&b, 2);
    timer_init(&c, 3);
    timer_set(&h, &a, 100);
    timer_set(&h, &b, 200);
    timer_set(&h, &c, 300);
    timer_set(&h, &c, 50);  /* earlier */
    timer_set(&h, &a, 400); /* later */
    timer_cancel(&h, &b);
    timer_cancel(&h, &b); /* twice is a no-op */
    assert_false(timer_armed(&b));
    assert_int_equal(timer_pop_expired(&h, 1000)->tag, 3);
    assert_int_equal(timer_pop_expired(&h, 1000)->tag, 1);
    assert_null(timer_pop_expired(&h, 1000));
    timer_heap_free(&h);
}

/* Random sets, moves and cancels; every pop must be the minimum of what the model
 * says is armed. */
static void test_randomized_against_model(void **state)
{
    (void)state;
    enum { N = 500, STEPS = 20000 };
    struct timer_heap h = {0};
    static struct timer t[N];
    static uint64_t model[N]; /* 0 = not armed */
    for (int i = 0; i < N; i++) {
        timer_init(&t[i], (uint64_t)i);
        model[i] = 0;
    }
    srand(7);
    uint64_t now = 1;
    for (int step = 0; step < STEPS; step++) {
        int i = rand() % N;
        switch (rand() % 4) {
        case 0:
        case 1: {
            uint64_t d = now + 1 + (uint64_t)(rand() % 1000);
            assert_int_equal(timer_set(&h, &t[i], d), 0);
            model[i] = d;
            break;
        }
        case 2:
            timer_cancel(&h, &t[i]);
            model[i] = 0;
            break;
        case 3: {
            now += (uint64_t)(rand() % 50);
            struct timer *x;
            uint64_t last = 0;
            while ((x = timer_pop_expired(&h, now)) != NULL) {
                size_t k = (size_t)x->tag;
                assert_int_equal(model[k], x->deadline);
                assert_true(x->deadline <= now);
                assert_true(x->deadline >= last);
                last = x->deadline;
                model[k] = 0;
            }
            for (int j = 0; j < N; j++)
                assert_true(model[j] == 0 || model[j] > now);
            break;
        }
        }
    }
    timer_heap_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pops_in_deadline_order),
        cmocka_unit_test(test_move_and_cancel),
        cmocka_unit_test(test_randomized_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
