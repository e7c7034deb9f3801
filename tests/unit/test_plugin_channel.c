/* kubectl-moat/channel.c: the v5.channel.k8s.io stream, pieces and Statuses as the API
 * server sends them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "kubectl-moat/channel.h"

typedef struct {
    char out[256], err[256];
    size_t out_len, err_len;
    int fail_after; /* calls before the output fails; 0: never */
    int calls;
} capture;

static int on_output(void *user, int channel, const unsigned char *data, size_t len,
                     moat_error *err)
{
    capture *c = user;
    if (c->fail_after && ++c->calls >= c->fail_after)
        return moat_error_set(err, MOAT_E_IO, "sink full");
    char *buf = channel == CHANNEL_STDOUT ? c->out : c->err;
    size_t *n = channel == CHANNEL_STDOUT ? &c->out_len : &c->err_len;
    memcpy(buf + *n, data, len);
    *n += len;
    return 0;
}

static void feed(channel_demux *d, capture *c, const char *piece, size_t len, bool last)
{
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(
        channel_demux_feed(d, (const unsigned char *)piece, len, last, on_output, c, &err), 0);
}

static void test_channels_and_pieces(void **state)
{
    channel_demux d;
    capture c = {0};
    channel_demux_init(&d);
    feed(&d, &c, "\x01hello ", 7, false); /* a message in three pieces */
    feed(&d, &c, "", 0, false);
    feed(&d, &c, "\x02world", 6, true); /* \x02 here is data, not a channel */
    feed(&d, &c, "\x02oops", 5, true);
    feed(&d, &c, "\x04{\"Width\":1}", 12, true); /* not ours to print */
    feed(&d, &c, "\x00stdin echo", 11, true);
    feed(&d, &c, "\xff\x00", 2, true);
    feed(&d, &c, "", 0, true); /* an empty message: nothing */
    assert_int_equal(c.out_len, 12);
    assert_memory_equal(c.out, "hello \x02world", 12);
    assert_int_equal(c.err_len, 4);
    assert_memory_equal(c.err, "oops", 4);
    assert_false(d.has_status);
    channel_demux_clear(&d);
}

static void test_status_gathered_across_pieces(void **state)
{
    static const char status[] = "{\"metadata\":{},\"status\":\"Success\"}";
    channel_demux d;
    capture c = {0};
    int code = -1;
    moat_error err = MOAT_ERROR_INIT;
    channel_demux_init(&d);
    feed(&d, &c, "\x03{\"metadata\":{},", 16, false);
    feed(&d, &c, status + 15, strlen(status) - 15, true);
    assert_true(d.has_status);
    assert_int_equal(channel_status_exit_code(d.status.buf, d.status.len, &code, &err), 0);
    assert_int_equal(code, 0);
    channel_demux_clear(&d);
}

static void test_status_over_its_cap(void **state)
{
    static char big[CHANNEL_STATUS_MAX + 2];
    channel_demux d;
    capture c = {0};
    moat_error err = MOAT_ERROR_INIT;
    memset(big, 'x', sizeof(big));
    big[0] = CHANNEL_STATUS;
    channel_demux_init(&d);
    assert_int_equal(
        channel_demux_feed(&d, (unsigned char *)big, sizeof(big), true, on_output, &c, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);
    channel_demux_clear(&d);
}

static void test_output_failure_stops(void **state)
{
    channel_demux d;
    capture c = {.fail_after = 1};
    moat_error err = MOAT_ERROR_INIT;
    channel_demux_init(&d);
    assert_int_equal(
        channel_demux_feed(&d, (const unsigned char *)"\x01x", 2, true, on_output, &c, &err), -1);
    assert_string_equal(err.message, "sink full");
    moat_error_clear(&err);
    channel_demux_clear(&d);
}

static void assert_exit(const char *json, int want)
{
    int code = -1;
    moat_error err = MOAT_ERROR_INIT;
    if (channel_status_exit_code(json, strlen(json), &code, &err) < 0)
        fail_msg("%s: %s", json, err.message);
    assert_int_equal(code, want);
}

static void assert_exit_error(const char *json, const char *message)
{
    int code = -7;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(channel_status_exit_code(json, strlen(json), &code, &err), -1);
    assert_int_equal(code, -7);
    assert_non_null(strstr(err.message, message));
    moat_error_clear(&err);
}

static void test_exit_codes(void **state)
{
    assert_exit("{\"metadata\":{},\"status\":\"Success\"}", 0);
    /* as the API server sends a non-zero exit */
    assert_exit("{\"metadata\":{},\"status\":\"Failure\",\"message\":\"command terminated with "
                "non-zero exit code: error executing command [sh -c exit 3], exit code 3\","
                "\"reason\":\"NonZeroExitCode\",\"details\":{\"causes\":[{\"reason\":"
                "\"ExitCode\",\"message\":\"3\"}]}}",
                3);
    assert_exit("{\"status\":\"Failure\",\"reason\":\"NonZeroExitCode\",\"details\":{\"causes\":"
                "[{\"reason\":\"Other\",\"message\":\"9\"},{\"reason\":\"ExitCode\","
                "\"message\":\"137\"}]}}",
                137);
    /* a command that could not start: the Status's own message */
    assert_exit_error("{\"status\":\"Failure\",\"message\":\"container not found (\\\"x\\\")\"}",
                      "container not found");
    assert_exit_error("{\"status\":\"Failure\",\"reason\":\"NonZeroExitCode\",\"message\":\"m\","
                      "\"details\":{\"causes\":[{\"reason\":\"ExitCode\",\"message\":\"300\"}]}}",
                      "exec: m");
    assert_exit_error("{\"status\":\"Failure\",\"reason\":\"NonZeroExitCode\",\"details\":"
                      "{\"causes\":[{\"reason\":\"ExitCode\",\"message\":\"3x\"}]}}",
                      "exec: failed");
    assert_exit_error("not json", "not JSON");
    assert_exit_error("[1]", "not an object");
}

static void test_resize_message(void **state)
{
    char buf[64], tiny[8];
    size_t n = channel_resize_message(buf, sizeof(buf), 120, 40);
    assert_int_equal(n, strlen("{\"Width\":120,\"Height\":40}"));
    assert_string_equal(buf, "{\"Width\":120,\"Height\":40}");
    assert_int_equal(channel_resize_message(tiny, sizeof(tiny), 120, 40), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channels_and_pieces),
        cmocka_unit_test(test_status_gathered_across_pieces),
        cmocka_unit_test(test_status_over_its_cap),
        cmocka_unit_test(test_output_failure_stops),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_resize_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
