/* kubectl-moat/cli.c: what every command shares that runs without a cluster: cp's file
 * arguments, fresh names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kubectl-moat/cli.h"

static void assert_arg(const char *text, const char *name, const char *path)
{
    char *copy = strdup(text);
    cli_file_arg a;
    cli_file_arg_parse(&a, copy);
    if (name)
        assert_string_equal(a.name, name);
    else
        assert_null(a.name);
    assert_string_equal(a.path, path);
    free(copy);
}

static void test_file_args(void **state)
{
    assert_arg("box:/tmp/a", "box", "/tmp/a");
    assert_arg("my-session.v2:/a:b", "my-session.v2", "/a:b"); /* the first ':' splits */
    assert_arg("box:rel", "box", "rel");                       /* cmd_cp refuses it later */
    assert_arg("./box:/tmp/a", NULL, "./box:/tmp/a");          /* a local path */
    assert_arg("/abs:x", NULL, "/abs:x");
    assert_arg("Box:/a", NULL, "Box:/a"); /* not a Sandbox name: local */
    assert_arg("c:\\x", "c", "\\x");
    assert_arg(":/a", NULL, ":/a");
    assert_arg("plain", NULL, "plain");
    assert_arg("-", NULL, "-");
}

static void test_command_argv(void **state)
{
    char *a[] = {"exec", "box", "--", "sh", "-c", "x", NULL};
    assert_ptr_equal(cli_command_argv(6, a, 2), a + 3);
    char *b[] = {"exec", "box", "ls", NULL};
    assert_ptr_equal(cli_command_argv(3, b, 2), b + 2);
    char *c[] = {"exec", "box", "--", NULL};
    assert_null(cli_command_argv(3, c, 2));
    assert_null(cli_command_argv(2, c, 2));
}

static void test_random_names(void **state)
{
    char *a = cli_random_name("run"), *b = cli_random_name("run");
    assert_int_equal(strlen(a), strlen("run-") + 8);
    assert_memory_equal(a, "run-", 4);
    assert_int_equal(strspn(a + 4, "0123456789abcdef"), 8);
    assert_string_not_equal(a, b);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_args),
        cmocka_unit_test(test_command_argv),
        cmocka_unit_test(test_random_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
