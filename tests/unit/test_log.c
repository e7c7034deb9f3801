/* The logger's records: one JSON line each, never longer than PIPE_BUF (so two writers'
 * records cannot interleave), a long message cut at a UTF-8 boundary saying how much it
 * lost, a short one untouched. */
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "libmoat/log.h"

/* Logs msg through a pipe and returns the one record read back (caller decrefs). */
static json_t *logged(const char *key, const char *msg, size_t *ret_len)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    moat_log_init("test", MOAT_LOG_DEBUG, p[1]);
    log_warn(key, "%s", msg);
    close(p[1]);
    static char buf[1 << 16];
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], buf + n, sizeof(buf) - n - 1)) > 0)
        n += (size_t)r;
    close(p[0]);
    moat_log_init("test", MOAT_LOG_INFO, STDERR_FILENO);
    buf[n] = '\0';
    assert_true(n > 0);
    assert_int_equal(buf[n - 1], '\n');
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* one line */
    *ret_len = n;
    json_error_t jerr;
    json_t *rec = json_loadb(buf, n, 0, &jerr); /* also: valid UTF-8 */
    if (!rec)
        fail_msg("not JSON: %s", jerr.text);
    return rec;
}

static void test_short_record_untouched(void **state)
{
    (void)state;
    size_t len = 0;
    json_t *rec = logged("ns/pod", "hello \"world\"", &len);
    assert_string_equal(json_string_value(json_object_get(rec, "msg")), "hello \"world\"");
    assert_string_equal(json_string_value(json_object_get(rec, "key")), "ns/pod");
    assert_string_equal(json_string_value(json_object_get(rec, "level")), "warn");
    json_decref(rec);
}

static void test_long_records_fit_one_write(void **state)
{
    (void)state;
    /* plain, multi-byte (é is 2 bytes: a cut must not split one), and control characters
     * (each six bytes once escaped) */
    const char *fill[] = {"x", "\xc3\xa9", "\x01"};
    for (size_t f = 0; f < 3; f++) {
        size_t unit = strlen(fill[f]), n = 20000 / unit;
        char *msg = malloc(n * unit + 1);
        for (size_t i = 0; i < n; i++)
            memcpy(msg + i * unit, fill[f], unit);
        msg[n * unit] = '\0';
        size_t len = 0;
        json_t *rec = logged(NULL, msg, &len);
        assert_true(len <= PIPE_BUF);
        const char *m = json_string_value(json_object_get(rec, "msg"));
        assert_non_null(m);
        assert_non_null(strstr(m, " bytes cut]"));
        assert_true(strncmp(m, msg, 64) == 0); /* the start is kept */
        json_decref(rec);
        free(msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_record_untouched),
        cmocka_unit_test(test_long_records_fit_one_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
