/* String vectors: length, deep copy, free (NULL included). Leaks show under valgrind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "libmoat/strv.h"

static void test_len_copy_free(void **state)
{
    (void)state;
    assert_int_equal(moat_strv_len(NULL), 0);
    assert_null(moat_strv_copy(NULL));
    moat_strv_free(NULL);
    const char *const v[] = {"a", "", "ccc", NULL};
    _cleanup_strv_ char **c = moat_strv_copy(v);
    assert_non_null(c);
    assert_int_equal(moat_strv_len(c), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(c[i], v[i]);
        assert_ptr_not_equal(c[i], v[i]); /* copies, owned by c */
    }
    assert_null(c[3]);
    const char *const empty[] = {NULL};
    _cleanup_strv_ char **e = moat_strv_copy(empty);
    assert_non_null(e);
    assert_int_equal(moat_strv_len(e), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_len_copy_free)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
