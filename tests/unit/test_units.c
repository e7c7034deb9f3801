#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "libmoat/units.h"

static void assert_quantity(const char *text, int64_t want)
{
    moat_error err = MOAT_ERROR_INIT;
    int64_t got = -12345;
    int r = moat_quantity_parse(&got, text, &err);
    if (r != 0)
        fail_msg("quantity \"%s\": %s", text, err.message);
    assert_int_equal(got, want);
}

static void assert_quantity_error(const char *text, moat_error_code code)
{
    moat_error err = MOAT_ERROR_INIT;
    int64_t got = 777;
    assert_int_equal(moat_quantity_parse(&got, text, &err), -1);
    assert_int_equal(err.code, code);
    assert_non_null(err.message);
    assert_int_equal(got, 777); /* out-parameters are written only on success */
    moat_error_clear(&err);
}

static void test_quantity_valid(void **state)
{
    assert_quantity("1", 1000);
    assert_quantity("500m", 500);
    assert_quantity("0.5", 500);
    assert_quantity(".5", 500);
    assert_quantity("1.", 1000);
    assert_quantity("1Ki", 1024000);
    assert_quantity("1.5Gi", 1610612736000LL);
    assert_quantity("2e3", 2000000);
    assert_quantity("2E3", 2000000);
    assert_quantity("1k", 1000000);
    assert_quantity("1M", 1000000000LL);
    assert_quantity("1P", 1000000000000000000LL);
    assert_quantity("1.5e-3", 2); /* 1.5 milli rounds up */
    assert_quantity("+3", 3000);
    assert_quantity("-3", -3000);
    assert_quantity("0", 0);
    assert_quantity("0.000", 0);
    assert_quantity("1.000000000000000000000000Ki", 1024000);
    /* finer than a milli rounds up, as the API server's MilliValue() does */
    assert_quantity("1u", 1);
    assert_quantity("1n", 1);
    assert_quantity("1.0001", 1001);
    assert_quantity("1e-3", 1);
    assert_quantity("1e-40", 1);
    assert_quantity("9223372036854775807m", INT64_MAX);
}

static void test_quantity_invalid(void **state)
{
    assert_quantity_error("", MOAT_E_INVALID);
    assert_quantity_error("m", MOAT_E_INVALID);
    assert_quantity_error(".", MOAT_E_INVALID);
    assert_quantity_error("1.2.3", MOAT_E_INVALID);
    assert_quantity_error("1x", MOAT_E_INVALID);
    assert_quantity_error("1KiB", MOAT_E_INVALID);
    assert_quantity_error("1e", MOAT_E_INVALID);
    assert_quantity_error("1e+", MOAT_E_INVALID);
    assert_quantity_error(" 1", MOAT_E_INVALID);
    assert_quantity_error("1 ", MOAT_E_INVALID);
    assert_quantity_error("9223372036854775808m", MOAT_E_RANGE);
    assert_quantity_error("10Ei", MOAT_E_RANGE);
    assert_quantity_error("1E", MOAT_E_RANGE); /* 10^21 milli */
    assert_quantity_error("1e1000", MOAT_E_RANGE);
    assert_quantity_error("1234567890123456789012345678901", MOAT_E_RANGE);
}

static void assert_duration(const char *text, int64_t want)
{
    moat_error err = MOAT_ERROR_INIT;
    int64_t got = -12345;
    if (moat_duration_parse(&got, text, &err) != 0)
        fail_msg("duration \"%s\": %s", text, err.message);
    assert_int_equal(got, want);
}

static void assert_duration_error(const char *text, moat_error_code code)
{
    moat_error err = MOAT_ERROR_INIT;
    int64_t got = 777;
    assert_int_equal(moat_duration_parse(&got, text, &err), -1);
    assert_int_equal(err.code, code);
    assert_non_null(err.message);
    assert_int_equal(got, 777);
    moat_error_clear(&err);
}

#define S 1000000000LL

static void test_duration_valid(void **state)
{
    assert_duration("0", 0);
    assert_duration("5m", 300 * S);
    assert_duration("1h30m", 5400 * S);
    assert_duration("24h0m0s", 86400 * S);
    assert_duration("300ms", 300000000LL);
    assert_duration("1.5s", 1500000000LL);
    assert_duration(".5s", 500000000LL);
    assert_duration("-2h", -7200 * S);
    assert_duration("1us", 1000);
    assert_duration("1\xc2\xb5s", 1000);
    assert_duration("7ns", 7);
    assert_duration("1m1s1ms", 61001000000LL);
}

static void test_duration_invalid(void **state)
{
    assert_duration_error("", MOAT_E_INVALID);
    assert_duration_error("5", MOAT_E_INVALID);
    assert_duration_error("h", MOAT_E_INVALID);
    assert_duration_error("5d", MOAT_E_INVALID);
    assert_duration_error("1h 2m", MOAT_E_INVALID);
    assert_duration_error("-", MOAT_E_INVALID);
    assert_duration_error("3000000h", MOAT_E_RANGE);
}

static void test_duration_format_reads_back(void **state)
{
    (void)state;
    static const struct {
        int64_t ns;
        const char *text;
    } cases[] = {{3600000000000LL, "1h"},
                 {900000000000LL, "15m"},
                 {90000000000LL, "90s"},
                 {250000000, "250ms"},
                 {7, "7ns"},
                 {0, "0ns"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        moat_duration_format(buf, sizeof buf, cases[i].ns);
        assert_string_equal(buf, cases[i].text);
        int64_t back = -1;
        moat_error err = MOAT_ERROR_INIT;
        assert_int_equal(moat_duration_parse(&back, buf, &err), 0);
        assert_int_equal(back, cases[i].ns);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantity_valid),   cmocka_unit_test(test_quantity_invalid),
        cmocka_unit_test(test_duration_valid),   cmocka_unit_test(test_duration_format_reads_back),
        cmocka_unit_test(test_duration_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
