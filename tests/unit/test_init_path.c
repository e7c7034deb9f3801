/* moat-init's path strings (init/path.c): the last component, and the walk's growing path
 * with its cap. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "init/path.h"

static void assert_base(const char *path, const char *want)
{
    const char *start = NULL;
    size_t len = path_base(path, &start);
    assert_int_equal(len, strlen(want));
    if (len > 0)
        assert_memory_equal(start, want, len);
}

static void test_base(void **state)
{
    (void)state;
    assert_base("/a/b", "b");
    assert_base("/a/b/", "b");
    assert_base("/a/b//", "b");
    assert_base("b", "b");
    assert_base("/", "/");
    assert_base("//", "/");
    assert_base("/b", "b");
    assert_base("a/.", ".");
    assert_base("", "");
}

static void test_buf(void **state)
{
    (void)state;
    path_buf b;
    assert_int_equal(path_buf_init(&b, "/"), 0);
    size_t m1, m2;
    assert_int_equal(path_buf_push(&b, "a", &m1), 0);
    assert_string_equal(b.data, "/a"); /* no second slash after the root */
    assert_int_equal(path_buf_push(&b, "b c", &m2), 0);
    assert_string_equal(b.data, "/a/b c");
    path_buf_pop(&b, m2);
    assert_string_equal(b.data, "/a");
    path_buf_pop(&b, m1);
    assert_string_equal(b.data, "/");
    path_buf_done(&b);
    assert_null(b.data);

    assert_int_equal(path_buf_init(&b, "rel/"), 0);
    assert_int_equal(path_buf_push(&b, "x", &m1), 0);
    assert_string_equal(b.data, "rel/x");
    path_buf_done(&b);
}

static void test_buf_cap(void **state)
{
    (void)state;
    path_buf b;
    assert_int_equal(path_buf_init(&b, "d"), 0);
    char name[256];
    memset(name, 'n', 255);
    name[255] = '\0';
    size_t mark, pushed = 0;
    int r;
    /* grows past its first allocation, then stops at PATH_BUF_MAX, unchanged */
    while ((r = path_buf_push(&b, name, &mark)) == 0)
        pushed++;
    assert_int_equal(r, -1);
    assert_int_equal(errno, ENAMETOOLONG);
    assert_int_equal(b.len, 1 + pushed * 256);
    assert_true(b.len < PATH_BUF_MAX);
    assert_true(b.len + 256 + 1 > PATH_BUF_MAX);
    assert_int_equal(strlen(b.data), b.len);
    path_buf_done(&b);

    char *huge = malloc(PATH_BUF_MAX + 1);
    assert_non_null(huge);
    if (!huge)
        return;
    memset(huge, 'h', PATH_BUF_MAX);
    huge[PATH_BUF_MAX] = '\0';
    assert_int_equal(path_buf_init(&b, huge), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    free(huge);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_buf_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
