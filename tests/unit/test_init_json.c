/* moat-init's JSON lines (init/json.c) and its error line (init/error.c): escaping, field
 * order, the errno's symbolic name. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "init/error.h"
#include "init/json.h"

/* What write(f) printed, as a string the caller frees. */
typedef struct {
    char *data;
    size_t size;
    FILE *f;
} capture;

static FILE *capture_start(capture *c)
{
    *c = (capture){0};
    c->f = open_memstream(&c->data, &c->size);
    assert_non_null(c->f);
    return c->f;
}

static char *capture_end(capture *c)
{
    assert_int_equal(fclose(c->f), 0);
    return c->data;
}

static char *escaped(const char *s, size_t len)
{
    capture c;
    json_string_write(capture_start(&c), s, len);
    return capture_end(&c);
}

static void assert_escaped(const char *s, const char *want)
{
    char *got = escaped(s, strlen(s));
    assert_string_equal(got, want);
    free(got);
}

static void test_escape(void **state)
{
    (void)state;
    assert_escaped("", "\"\"");
    assert_escaped("plain /path", "\"plain /path\"");
    assert_escaped("a\"b", "\"a\\\"b\"");
    assert_escaped("a\\b", "\"a\\\\b\"");
    assert_escaped("\n\t\r\x01\x1f", "\"\\u000a\\u0009\\u000d\\u0001\\u001f\"");
    assert_escaped(" \x7f", "\" \x7f\""); /* DEL needs no escape in JSON */
    /* bytes >= 0x80 pass as they are, valid UTF-8 or not */
    assert_escaped("caf\xc3\xa9 \xff\xfe", "\"caf\xc3\xa9 \xff\xfe\"");
    /* a NUL inside a counted string is a control character like the others */
    char *got = escaped("a\0b", 3);
    assert_string_equal(got, "\"a\\u0000b\"");
    free(got);
}

static void test_line(void **state)
{
    (void)state;
    capture c;
    json_line j;
    json_line_begin(&j, capture_start(&c));
    json_line_string(&j, "path", "/a \"b\"");
    json_line_uint(&j, "size", UINT64_MAX);
    json_line_stringn(&j, "name", "abcdef", 3);
    assert_int_equal(json_line_end(&j), 0);
    char *got = capture_end(&c);
    assert_string_equal(
        got, "{\"path\":\"/a \\\"b\\\"\",\"size\":18446744073709551615,\"name\":\"abc\"}\n");
    free(got);

    json_line_begin(&j, capture_start(&c));
    assert_int_equal(json_line_end(&j), 0);
    got = capture_end(&c);
    assert_string_equal(got, "{}\n");
    free(got);
}

static void test_line_stream_failure(void **state)
{
    (void)state;
    FILE *f = fopen("/dev/full", "w");
    if (!f)
        skip();
    json_line j;
    json_line_begin(&j, f);
    json_line_string(&j, "a", "b");
    assert_int_equal(json_line_end(&j), -1);
    assert_int_equal(errno, ENOSPC);
    fclose(f);
}

static char *printed(const init_error *err)
{
    capture c;
    init_error_print(err, capture_start(&c));
    return capture_end(&c);
}

static void test_error_errno(void **state)
{
    (void)state;
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    assert_int_equal(init_error_errno(&err, ENOENT, "stat", "/x\n"), -1);
    assert_string_equal(err.code, "ENOENT");
    assert_int_equal(err.errnum, ENOENT);
    assert_int_equal(err.status, INIT_EXIT_FAILURE);
    char *got = printed(&err);
    assert_string_equal(got, "{\"error\":\"ENOENT\",\"op\":\"stat\",\"path\":\"/x\\u000a\","
                             "\"message\":\"No such file or directory\"}\n");
    free(got);

    /* a second error replaces the first, path included */
    init_error_errno(&err, EACCES, "open", NULL);
    got = printed(&err);
    assert_string_equal(got, "{\"error\":\"EACCES\",\"op\":\"open\","
                             "\"message\":\"Permission denied\"}\n");
    free(got);
}

static void test_error_usage(void **state)
{
    (void)state;
    _cleanup_init_error_ init_error err = INIT_ERROR_INIT;
    assert_int_equal(init_error_usage(&err, "exec", "--timeout: \"%s\"", "x"), -1);
    assert_int_equal(err.status, INIT_EXIT_USAGE);
    char *got = printed(&err);
    assert_string_equal(
        got, "{\"error\":\"EUSAGE\",\"op\":\"exec\",\"message\":\"--timeout: \\\"x\\\"\"}\n");
    free(got);

    init_error_set(&err, "ETIMEDOUT", INIT_EXIT_TIMEOUT, "exec", NULL, "timed out after %s", "2s");
    assert_int_equal(err.status, 124);
    got = printed(&err);
    assert_string_equal(got, "{\"error\":\"ETIMEDOUT\",\"op\":\"exec\","
                             "\"message\":\"timed out after 2s\"}\n");
    free(got);

    /* a message longer than the cap is cut, not overrun */
    char long_text[2 * INIT_ERROR_MESSAGE_MAX];
    memset(long_text, 'm', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    init_error_usage(&err, "x", "%s", long_text);
    assert_int_equal(strlen(err.message), INIT_ERROR_MESSAGE_MAX - 1);
    init_error_clear(&err);
    init_error_clear(NULL);
    assert_null(err.code);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_line_stream_failure),
        cmocka_unit_test(test_error_errno),
        cmocka_unit_test(test_error_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
