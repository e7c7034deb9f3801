/* moat-init's command lines (init/args.c): --timeout's seconds, modes, exec's options up to
 * the command, the file operations' options in any order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "init/args.h"

#define ARGC(v) ((int)(sizeof(v) / sizeof((v)[0])) - 1)

static void assert_duration(const char *text, int64_t want)
{
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    int64_t got = -1;
    if (args_duration_parse(&got, text, "exec", &err) != 0)
        fail_msg("duration \"%s\": %s", text, err.message);
    assert_int_equal(got, want);
}

static void assert_duration_invalid(const char *text)
{
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    int64_t got = 777;
    assert_int_equal(args_duration_parse(&got, text, "exec", &err), -1);
    assert_string_equal(err.code, "EUSAGE");
    assert_int_equal(err.status, INIT_EXIT_USAGE);
    assert_non_null(strstr(err.message, "--timeout"));
    assert_int_equal(got, 777); /* written only on success */
}

static void test_duration(void **state)
{
    (void)state;
    assert_duration("0", 0);
    assert_duration("2", 2000000000LL);
    assert_duration("0.5", 500000000LL);
    assert_duration(".25", 250000000LL);
    assert_duration("1.", 1000000000LL);
    assert_duration("0.000000001", 1);
    assert_duration("1.123456789", 1123456789LL);
    /* finer than a nanosecond rounds up: a positive timeout never becomes "none" */
    assert_duration("0.0000000001", 1);
    assert_duration("0.0000000000", 0);
    assert_duration("1000000000", 1000000000LL * 1000000000LL);
    assert_duration_invalid("");
    assert_duration_invalid(".");
    assert_duration_invalid("-1");
    assert_duration_invalid("+1");
    assert_duration_invalid("1s");
    assert_duration_invalid("1e3");
    assert_duration_invalid(" 1");
    assert_duration_invalid("abc");
    assert_duration_invalid("1000000000.5");
    assert_duration_invalid("1000000001");
    assert_duration_invalid("99999999999999999999999");
}

static void test_duration_format(void **state)
{
    (void)state;
    char buf[32];
    args_duration_format(buf, sizeof(buf), 2000000000LL);
    assert_string_equal(buf, "2s");
    args_duration_format(buf, sizeof(buf), 500000000LL);
    assert_string_equal(buf, "0.5s");
    args_duration_format(buf, sizeof(buf), 1000000001LL);
    assert_string_equal(buf, "1.000000001s");
    args_duration_format(buf, sizeof(buf), 12340000000LL);
    assert_string_equal(buf, "12.34s");
}

static void test_mode(void **state)
{
    (void)state;
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    mode_t m = 0;
    assert_int_equal(args_mode_parse(&m, "644", "write", &err), 0);
    assert_int_equal(m, 0644);
    assert_int_equal(args_mode_parse(&m, "04755", "write", &err), 0);
    assert_int_equal(m, 04755);
    assert_int_equal(args_mode_parse(&m, "0", "write", &err), 0);
    assert_int_equal(m, 0);
    m = 0123;
    assert_int_equal(args_mode_parse(&m, "8", "write", &err), -1);
    assert_int_equal(args_mode_parse(&m, "", "write", &err), -1);
    assert_int_equal(args_mode_parse(&m, "10000", "write", &err), -1);
    assert_int_equal(args_mode_parse(&m, "0777777777777777777777", "write", &err), -1);
    assert_int_equal(args_mode_parse(&m, "-1", "write", &err), -1);
    assert_int_equal(m, 0123);
    assert_string_equal(err.op, "write");
}

static void test_exec(void **state)
{
    (void)state;
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    char *argv[] = {"exec",     "--timeout", "2.5", "--env", "A=1", "--cwd", "/w",
                    "--env=B=", "sh",        "-c",  "--env", "x",   NULL};
    args_exec a;
    assert_int_equal(args_exec_parse(&a, ARGC(argv), argv, &err), 0);
    assert_int_equal(a.timeout_ns, 2500000000LL);
    assert_string_equal(a.cwd, "/w");
    assert_non_null(a.env);
    if (!a.env)
        return;
    assert_string_equal(a.env[0], "A=1");
    assert_string_equal(a.env[1], "B=");
    assert_null(a.env[2]);
    /* the command's own options are its own, "--env" included */
    assert_ptr_equal(a.argv, &argv[8]);
    assert_string_equal(a.argv[2], "--env");
    assert_null(a.argv[4]);
    args_exec_done(&a);

    char *dashdash[] = {"exec", "--", "--weird", "arg", NULL};
    assert_int_equal(args_exec_parse(&a, ARGC(dashdash), dashdash, &err), 0);
    assert_int_equal(a.timeout_ns, 0);
    assert_null(a.cwd);
    assert_string_equal(a.argv[0], "--weird");
    assert_null(a.env[0]);
    args_exec_done(&a);
}

static void assert_exec_usage(char **argv, int argc, const char *in_message)
{
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    args_exec a = {.timeout_ns = 42};
    assert_int_equal(args_exec_parse(&a, argc, argv, &err), -1);
    assert_string_equal(err.code, "EUSAGE");
    assert_int_equal(err.status, INIT_EXIT_USAGE);
    assert_string_equal(err.op, "exec");
    if (!strstr(err.message, in_message))
        fail_msg("message \"%s\" lacks \"%s\"", err.message, in_message);
    assert_int_equal(a.timeout_ns, 42);
}

static void test_exec_usage(void **state)
{
    (void)state;
    char *none[] = {"exec", NULL};
    assert_exec_usage(none, ARGC(none), "no command");
    char *only_dashdash[] = {"exec", "--timeout", "1", "--", NULL};
    assert_exec_usage(only_dashdash, ARGC(only_dashdash), "no command");
    char *unknown[] = {"exec", "--bogus", "sh", NULL};
    assert_exec_usage(unknown, ARGC(unknown), "unknown option --bogus");
    char *missing[] = {"exec", "--timeout", NULL};
    assert_exec_usage(missing, ARGC(missing), "--timeout needs a value");
    char *bad_timeout[] = {"exec", "--timeout", "soon", "sh", NULL};
    assert_exec_usage(bad_timeout, ARGC(bad_timeout), "soon");
    char *bad_env[] = {"exec", "--env", "NOEQUALS", "sh", NULL};
    assert_exec_usage(bad_env, ARGC(bad_env), "NAME=VALUE");
    char *empty_name[] = {"exec", "--env", "=v", "sh", NULL};
    assert_exec_usage(empty_name, ARGC(empty_name), "NAME=VALUE");
    char *empty_cwd[] = {"exec", "--cwd", "", "sh", NULL};
    assert_exec_usage(empty_cwd, ARGC(empty_cwd), "--cwd");
}

static void test_init(void **state)
{
    (void)state;
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    char **cmd = (char **)1;
    char *bare[] = {"init", NULL};
    assert_int_equal(args_init_parse(&cmd, ARGC(bare), bare, &err), 0);
    assert_null(cmd);
    char *with[] = {"init", "--", "sleep", "1", NULL};
    assert_int_equal(args_init_parse(&cmd, ARGC(with), with, &err), 0);
    assert_ptr_equal(cmd, &with[2]);
    char *plain[] = {"init", "sleep", NULL};
    assert_int_equal(args_init_parse(&cmd, ARGC(plain), plain, &err), 0);
    assert_ptr_equal(cmd, &plain[1]);
    char *empty[] = {"init", "--", NULL};
    assert_int_equal(args_init_parse(&cmd, ARGC(empty), empty, &err), -1);
    assert_string_equal(err.code, "EUSAGE");
    char *option[] = {"init", "-x", NULL};
    assert_int_equal(args_init_parse(&cmd, ARGC(option), option, &err), -1);
}

static void test_file(void **state)
{
    (void)state;
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    args_file a;
    char *write_argv[] = {"write", "--mode", "600", "/d/f", "--parents", NULL};
    assert_int_equal(
        args_file_parse(&a, ARGC(write_argv), write_argv, ARGS_OPT_MODE | ARGS_OPT_PARENTS, &err),
        0);
    assert_string_equal(a.path, "/d/f");
    assert_true(a.has_mode);
    assert_int_equal(a.mode, 0600);
    assert_true(a.parents);
    assert_false(a.recursive);
    assert_int_equal(a.depth, 1);

    char *list[] = {"list", "--depth=3", "/", NULL};
    assert_int_equal(args_file_parse(&a, ARGC(list), list, ARGS_OPT_DEPTH, &err), 0);
    assert_int_equal(a.depth, 3);
    assert_false(a.has_mode);

    char *dashed[] = {"remove", "--recursive", "--", "--parents", NULL};
    assert_int_equal(args_file_parse(&a, ARGC(dashed), dashed, ARGS_OPT_RECURSIVE, &err), 0);
    assert_string_equal(a.path, "--parents");
    assert_true(a.recursive);
}

static void assert_file_usage(char **argv, int argc, unsigned allowed, const char *in_message)
{
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    args_file a = {.path = "untouched"};
    assert_int_equal(args_file_parse(&a, argc, argv, allowed, &err), -1);
    assert_string_equal(err.code, "EUSAGE");
    assert_string_equal(err.op, argv[0]);
    if (!strstr(err.message, in_message))
        fail_msg("message \"%s\" lacks \"%s\"", err.message, in_message);
    assert_string_equal(a.path, "untouched");
}

static void test_file_usage(void **state)
{
    (void)state;
    char *none[] = {"read", NULL};
    assert_file_usage(none, ARGC(none), 0, "no path");
    char *two[] = {"read", "/a", "/b", NULL};
    assert_file_usage(two, ARGC(two), 0, "one path only");
    char *empty[] = {"stat", "", NULL};
    assert_file_usage(empty, ARGC(empty), 0, "empty path");
    char *not_allowed[] = {"read", "--recursive", "/a", NULL};
    assert_file_usage(not_allowed, ARGC(not_allowed), ARGS_OPT_PARENTS, "--recursive");
    char *unknown[] = {"read", "/a", "--follow", NULL};
    assert_file_usage(unknown, ARGC(unknown), 0, "unknown option --follow");
    char *missing[] = {"write", "/a", "--mode", NULL};
    assert_file_usage(missing, ARGC(missing), ARGS_OPT_MODE, "--mode needs a value");
    char *depth0[] = {"list", "--depth", "0", "/", NULL};
    assert_file_usage(depth0, ARGC(depth0), ARGS_OPT_DEPTH, "--depth");
    char *depth_big[] = {"list", "--depth", "257", "/", NULL};
    assert_file_usage(depth_big, ARGC(depth_big), ARGS_OPT_DEPTH, "--depth");
    char *depth_neg[] = {"list", "--depth", "-1", "/", NULL};
    assert_file_usage(depth_neg, ARGC(depth_neg), ARGS_OPT_DEPTH, "--depth");
    char *depth_junk[] = {"list", "--depth", "2x", "/", NULL};
    assert_file_usage(depth_junk, ARGC(depth_junk), ARGS_OPT_DEPTH, "--depth");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration),   cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_mode),       cmocka_unit_test(test_exec),
        cmocka_unit_test(test_exec_usage), cmocka_unit_test(test_init),
        cmocka_unit_test(test_file),       cmocka_unit_test(test_file_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
