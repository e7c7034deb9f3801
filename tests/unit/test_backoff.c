#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "libmoat/backoff.h"
#include "libmoat/clock.h"

#define MS 1000000LL
#define S  1000000000LL

static void test_exponential_doubles_from_base(void **state)
{
    assert_int_equal(moat_backoff_exponential(5 * MS, 1000 * S, 0), 5 * MS);
    assert_int_equal(moat_backoff_exponential(5 * MS, 1000 * S, 1), 10 * MS);
    assert_int_equal(moat_backoff_exponential(5 * MS, 1000 * S, 2), 20 * MS);
    assert_int_equal(moat_backoff_exponential(5 * MS, 1000 * S, 3), 40 * MS);
    assert_int_equal(moat_backoff_exponential(5 * MS, 1000 * S, 10), 5120 * MS);
}

static void test_exponential_cap(void **state)
{
    /* 5 ms * 2^17 = 655.36 s is under 1000 s; 2^18 is over. */
    assert_int_equal(moat_backoff_exponential(5 * MS, 1000 * S, 17), 655360 * MS);
    assert_int_equal(moat_backoff_exponential(5 * MS, 1000 * S, 18), 1000 * S);
    assert_int_equal(moat_backoff_exponential(5 * MS, 1 * S, 7), 640 * MS);
    assert_int_equal(moat_backoff_exponential(5 * MS, 1 * S, 8), 1 * S);
    /* exactly at the cap */
    assert_int_equal(moat_backoff_exponential(1, 8, 3), 8);
    assert_int_equal(moat_backoff_exponential(1, 8, 4), 8);
    /* base above the cap, and degenerate inputs */
    assert_int_equal(moat_backoff_exponential(10 * S, 1 * S, 0), 1 * S);
    assert_int_equal(moat_backoff_exponential(0, 1 * S, 5), 0);
    assert_int_equal(moat_backoff_exponential(-5, 1 * S, 5), 0);
    assert_int_equal(moat_backoff_exponential(5, -1, 5), 0);
}

static void test_exponential_no_overflow(void **state)
{
    assert_int_equal(moat_backoff_exponential(5 * MS, 1000 * S, 200), 1000 * S);
    assert_int_equal(moat_backoff_exponential(5 * MS, INT64_MAX, 200), INT64_MAX);
    assert_int_equal(moat_backoff_exponential(5 * MS, INT64_MAX, UINT32_MAX), INT64_MAX);
    assert_int_equal(moat_backoff_exponential(1, INT64_MAX, 62), INT64_C(1) << 62);
    assert_int_equal(moat_backoff_exponential(1, INT64_MAX, 63), INT64_MAX);
    assert_int_equal(moat_backoff_exponential(1, INT64_MAX, 64), INT64_MAX);
    assert_int_equal(moat_backoff_exponential(3, INT64_MAX, 61), INT64_C(3) << 61);
    assert_int_equal(moat_backoff_exponential(3, INT64_MAX, 62), INT64_MAX); /* 3 * 2^62 */
    assert_int_equal(moat_backoff_exponential(INT64_MAX, INT64_MAX, 1), INT64_MAX);
    for (unsigned a = 0; a < 300; a++) {
        int64_t d = moat_backoff_exponential(5 * MS, 1000 * S, a);
        assert_true(d >= 5 * MS && d <= 1000 * S);
        if (a > 0) /* monotonic */
            assert_true(d >= moat_backoff_exponential(5 * MS, 1000 * S, a - 1));
    }
}

static void test_jitter_bounds(void **state)
{
    /* d = 40 ms: equal jitter lies in [20 ms, 40 ms] */
    assert_int_equal(moat_backoff_jittered(5 * MS, 1000 * S, 3, 0.0), 20 * MS);
    assert_int_equal(moat_backoff_jittered(5 * MS, 1000 * S, 3, 0.5), 30 * MS);
    int64_t top = moat_backoff_jittered(5 * MS, 1000 * S, 3, 0.999999999);
    assert_true(top >= 39 * MS && top <= 40 * MS);
    /* out-of-range draws are clamped */
    assert_int_equal(moat_backoff_jittered(5 * MS, 1000 * S, 3, -1.0), 20 * MS);
    assert_true(moat_backoff_jittered(5 * MS, 1000 * S, 3, 7.0) <= 40 * MS);
    assert_int_equal(moat_backoff_jittered(5 * MS, 1000 * S, 3, NAN), 20 * MS);
    /* no overflow at the largest durations either */
    int64_t big = moat_backoff_jittered(1, INT64_MAX, 200, 0.999999);
    assert_true(big >= INT64_MAX / 2 && big <= INT64_MAX);
    assert_int_equal(moat_backoff_jittered(1, INT64_MAX, 200, 0.0), INT64_MAX / 2);
    /* odd d: the top of the range is d itself, never more */
    assert_true(moat_backoff_jittered(5, 1000, 0, 0.9999999999) <= 5);
    assert_int_equal(moat_backoff_jittered(5, 1000, 0, 0.0), 2);

    for (int i = 0; i < 1000; i++) {
        double u = moat_random_unit();
        int64_t d = moat_backoff_jittered(5 * MS, 1000 * S, 4, u);
        assert_true(d >= 40 * MS && d <= 80 * MS);
    }
}

static void test_random_unit(void **state)
{
    double lo = 1.0, hi = 0.0, sum = 0.0;
    const int n = 10000;
    for (int i = 0; i < n; i++) {
        double u = moat_random_unit();
        assert_true(u >= 0.0 && u < 1.0);
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
        sum += u;
    }
    /* Loose: a broken source (constant, or only a few bits) fails these. */
    assert_true(lo < 0.01);
    assert_true(hi > 0.99);
    assert_true(sum / n > 0.45 && sum / n < 0.55);
    assert_true(moat_random_u64() != moat_random_u64());
}

static void test_ratelimiter_burst_then_qps(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 1000 * S);
    moat_ratelimiter r;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(moat_ratelimiter_init(&r, 10.0, 3, moat_fake_clock_get(&clock), &err), 0);

    /* the bucket starts full: burst tokens without waiting */
    for (int i = 0; i < 3; i++)
        assert_int_equal(moat_ratelimiter_reserve(&r), 0);
    /* then one token every 100 ms, each reservation queued behind the previous */
    assert_int_equal(moat_ratelimiter_reserve(&r), 100 * MS);
    assert_int_equal(moat_ratelimiter_reserve(&r), 200 * MS);

    /* 100 ms later one token has come back, owed to the first waiter */
    moat_fake_clock_advance(&clock, 100 * MS);
    assert_int_equal(moat_ratelimiter_reserve(&r), 200 * MS);

    /* a long idle refills the bucket only up to burst */
    moat_fake_clock_advance(&clock, 60 * S);
    for (int i = 0; i < 3; i++)
        assert_int_equal(moat_ratelimiter_reserve(&r), 0);
    assert_int_equal(moat_ratelimiter_reserve(&r), 100 * MS);

    /* at exactly qps, a caller that waits as told never waits longer */
    moat_fake_clock_advance(&clock, 100 * MS);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(moat_ratelimiter_reserve(&r), 100 * MS);
        moat_fake_clock_advance(&clock, 100 * MS);
    }
    moat_ratelimiter_destroy(&r);
    moat_ratelimiter_destroy(NULL);
}

static void test_ratelimiter_fractional(void **state)
{
    moat_fake_clock clock;
    moat_fake_clock_init(&clock, 0);
    moat_ratelimiter r;
    assert_int_equal(moat_ratelimiter_init(&r, 3.0, 1, moat_fake_clock_get(&clock), NULL), 0);
    assert_int_equal(moat_ratelimiter_reserve(&r), 0);
    /* 1/3 s rounds up, so that after the wait a whole token is there */
    assert_int_equal(moat_ratelimiter_reserve(&r), 333333334);
    moat_ratelimiter_destroy(&r);
}

static void test_ratelimiter_invalid(void **state)
{
    moat_ratelimiter r;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(moat_ratelimiter_init(&r, 0.0, 10, NULL, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_non_null(err.message);
    assert_int_equal(moat_ratelimiter_init(&r, -1.0, 10, NULL, &err), -1);
    assert_int_equal(moat_ratelimiter_init(&r, INFINITY, 10, NULL, &err), -1);
    assert_int_equal(moat_ratelimiter_init(&r, NAN, 10, NULL, &err), -1);
    assert_int_equal(moat_ratelimiter_init(&r, 10.0, 0, NULL, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);

    /* the system clock by default */
    assert_int_equal(moat_ratelimiter_init(&r, 10.0, 1, NULL, &err), 0);
    assert_int_equal(moat_ratelimiter_reserve(&r), 0);
    int64_t d = moat_ratelimiter_reserve(&r);
    assert_true(d > 0 && d <= 100 * MS);
    moat_ratelimiter_destroy(&r);
}

static void test_fake_clock(void **state)
{
    moat_fake_clock c;
    moat_fake_clock_init(&c, 42);
    const moat_clock *clock = moat_fake_clock_get(&c);
    assert_int_equal(moat_clock_now(clock), 42);
    moat_fake_clock_advance(&c, 8);
    assert_int_equal(moat_clock_now(clock), 50);

    const moat_clock *sys = moat_clock_system();
    int64_t a = moat_clock_now(sys), b = moat_clock_now(sys);
    assert_true(a > 0 && b >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exponential_doubles_from_base),
        cmocka_unit_test(test_exponential_cap),
        cmocka_unit_test(test_exponential_no_overflow),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_random_unit),
        cmocka_unit_test(test_ratelimiter_burst_then_qps),
        cmocka_unit_test(test_ratelimiter_fractional),
        cmocka_unit_test(test_ratelimiter_invalid),
        cmocka_unit_test(test_fake_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
