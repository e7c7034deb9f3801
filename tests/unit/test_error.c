#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "libmoat/error.h"
#include "libmoat/log.h"

static void test_set_and_prefix(void **state)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(moat_error_set(&err, MOAT_E_INVALID, "key %s: bad value", "timeout"), -1);
    assert_int_equal(moat_error_prefix(&err, "config %s", "/etc/moat.yaml"), -1);
    assert_string_equal(err.message, "config /etc/moat.yaml: key timeout: bad value");
    assert_int_equal(err.code, MOAT_E_INVALID);
    /* a second set replaces the first without leaking it (ASan checks) */
    moat_error_set(&err, MOAT_E_RANGE, "again");
    assert_string_equal(err.message, "again");
}

static void test_errno(void **state)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    moat_error_set_errno(&err, ENOENT, "open %s", "/dev/kvm");
    assert_int_equal(err.code, MOAT_E_IO);
    assert_int_equal(err.errno_value, ENOENT);
    assert_string_equal(err.message, "open /dev/kvm: No such file or directory");
}

static void test_null_error_is_allowed(void **state)
{
    assert_int_equal(moat_error_set(NULL, MOAT_E_INVALID, "ignored"), -1);
    assert_int_equal(moat_error_prefix(NULL, "ignored"), -1);
    moat_error_clear(NULL);
    moat_error unset = MOAT_ERROR_INIT;
    moat_error_prefix(&unset, "no message yet"); /* nothing to prefix: stays unset */
    assert_null(unset.message);
}

static void test_log_level_parse(void **state)
{
    moat_log_level level = MOAT_LOG_INFO;
    assert_int_equal(moat_log_level_parse(&level, "debug"), 0);
    assert_int_equal(level, MOAT_LOG_DEBUG);
    assert_int_equal(moat_log_level_parse(&level, "verbose"), -1);
    assert_int_equal(level, MOAT_LOG_DEBUG);
}

static void test_log_writes_json_lines(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    moat_log_init("test", MOAT_LOG_INFO, fds[1]);
    log_debug("ns/a", "hidden");
    log_warn("ns/b", "quote \" and newline \n inside");
    close(fds[1]);
    char buf[1024] = {0};
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    assert_true(n > 0);
    assert_null(strstr(buf, "hidden"));
    assert_non_null(strstr(buf, "\"level\":\"warn\""));
    assert_non_null(strstr(buf, "\"key\":\"ns/b\""));
    assert_non_null(strstr(buf, "quote \\\" and newline \\n inside"));
    /* exactly one record, ended by one newline */
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
    moat_log_init("test", MOAT_LOG_INFO, STDERR_FILENO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_and_prefix),        cmocka_unit_test(test_errno),
        cmocka_unit_test(test_null_error_is_allowed), cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_writes_json_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
