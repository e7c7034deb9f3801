/* The growing buffer: text and bytes, its cap, and a failure that sticks (no hole in the
 * middle: once an append fails, nothing after it lands, and take answers NULL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "libmoat/strbuf.h"

static void test_text_and_bytes(void **state)
{
    (void)state;
    moat_strbuf b = {0};
    char *empty = moat_strbuf_take(&b);
    assert_string_equal(empty, "");
    free(empty);
    moat_strbuf_appendf(&b, "%s=%d;", "a", 1);
    assert_int_equal(moat_strbuf_append(&b, "\0x", 2), 0); /* bytes, NUL included */
    for (int i = 0; i < 2000; i++)                         /* past the first allocation */
        moat_strbuf_appendf(&b, "%04d", i);
    size_t len = 0;
    char *s = moat_strbuf_take_len(&b, &len);
    assert_non_null(s);
    assert_int_equal(len, 4 + 2 + 8000);
    assert_memory_equal(s, "a=1;\0x0000", 10);
    assert_string_equal(s + len - 4, "1999");
    free(s);
    assert_null(b.buf); /* taken: the buffer is empty again */
    assert_int_equal(b.len, 0);
}

static void test_cap_fails_for_good(void **state)
{
    (void)state;
    moat_strbuf b = {.max = 16};
    moat_strbuf_appendf(&b, "0123456789");
    assert_int_equal(moat_strbuf_append(&b, "abcdefgh", 8), -1); /* 18 + NUL > 16 */
    assert_true(b.truncated);
    assert_true(b.over_cap);
    /* what comes after does not land: no hole in the middle */
    assert_int_equal(moat_strbuf_append(&b, "z", 1), -1);
    moat_strbuf_appendf(&b, "y");
    assert_int_equal(b.len, 10);
    assert_null(moat_strbuf_take(&b));
    assert_null(b.buf);
    assert_int_equal(b.max, 16); /* the cap stays */
    /* reset: the same memory, a new start */
    moat_strbuf_appendf(&b, "abc");
    assert_int_equal(moat_strbuf_append(&b, "0123456789abcdef", 16), -1);
    moat_strbuf_reset(&b);
    assert_false(b.truncated);
    assert_int_equal(moat_strbuf_append(&b, "ok", 2), 0);
    assert_string_equal(b.buf, "ok");
    moat_strbuf_free(&b);
    assert_null(b.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_bytes),
        cmocka_unit_test(test_cap_fails_for_good),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
