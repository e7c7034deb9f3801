#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "libmoat/kobj.h"
#include "libmoat/watch.h"

typedef struct {
    int n;
    kube_event_type types[16];
    char names[16][32];
} seen;

static int record(void *user, kube_event_type type, json_t *obj)
{
    seen *s = user;
    if (s->n < 16) {
        s->types[s->n] = type;
        const char *name = kobj_name(obj);
        strncpy(s->names[s->n], name ? name : "", sizeof(s->names[0]) - 1);
    }
    s->n++;
    return 0;
}

static const char stream[] =
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"1\"}}}\n"
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"b\",\"resourceVersion\":\"2\"}}}"
    "\r\n"
    "\n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"3\"}}}\n"
    "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"c\"}}}\n";

static void test_every_split_gives_the_same_events(void **state)
{
    size_t len = strlen(stream);
    for (size_t chunk = 1; chunk <= len; chunk++) {
        kube_watch_decoder *d;
        moat_error err = MOAT_ERROR_INIT;
        seen s = {0};
        assert_int_equal(kube_watch_decoder_new(&d, 0, &err), 0);
        for (size_t off = 0; off < len; off += chunk) {
            size_t n = len - off < chunk ? len - off : chunk;
            assert_int_equal(kube_watch_decoder_feed(d, stream + off, n, record, &s, &err), 0);
        }
        assert_int_equal(s.n, 4);
        assert_int_equal(s.types[0], KUBE_EVENT_ADDED);
        assert_string_equal(s.names[0], "a");
        assert_int_equal(s.types[1], KUBE_EVENT_MODIFIED);
        assert_int_equal(s.types[2], KUBE_EVENT_BOOKMARK);
        assert_int_equal(s.types[3], KUBE_EVENT_DELETED);
        assert_string_equal(s.names[3], "c");
        assert_int_equal(kube_watch_decoder_pending(d), 0);
        kube_watch_decoder_free(d);
    }
}

static void test_cut_mid_line_is_pending(void **state)
{
    kube_watch_decoder *d;
    moat_error err = MOAT_ERROR_INIT;
    seen s = {0};
    kube_watch_decoder_new(&d, 0, &err);
    const char part[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"na";
    assert_int_equal(kube_watch_decoder_feed(d, part, strlen(part), record, &s, &err), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(kube_watch_decoder_pending(d), strlen(part));
    kube_watch_decoder_reset(d);
    assert_int_equal(kube_watch_decoder_pending(d), 0);
    kube_watch_decoder_free(d);
}

static void expect_error(const char *input, size_t cap, moat_error_code code, const char *what)
{
    kube_watch_decoder *d;
    moat_error err = MOAT_ERROR_INIT;
    seen s = {0};
    kube_watch_decoder_new(&d, cap, &err);
    assert_int_equal(kube_watch_decoder_feed(d, input, strlen(input), record, &s, &err), -1);
    assert_int_equal(err.code, code);
    assert_non_null(strstr(err.message, what));
    moat_error_clear(&err);
    kube_watch_decoder_free(d);
}

static void test_bad_lines_are_errors(void **state)
{
    expect_error("garbage\n", 0, MOAT_E_INVALID, "not JSON");
    expect_error("{\"type\":\"NOPE\",\"object\":{}}\n", 0, MOAT_E_INVALID, "unknown type");
    expect_error("{\"object\":{}}\n", 0, MOAT_E_INVALID, "unknown type");
    expect_error("{\"type\":\"ADDED\",\"object\":null}\n", 0, MOAT_E_INVALID, "no object");
    expect_error("{\"type\":\"ADDED\",\"object\":{\"x\":\"0123456789012345678901234567\"}}", 32,
                 MOAT_E_RANGE, "longer than 32");
}

static int stop_at_error(void *user, kube_event_type type, json_t *obj)
{
    return type == KUBE_EVENT_ERROR ? -7 : 0;
}

static void test_callback_can_stop(void **state)
{
    kube_watch_decoder *d;
    moat_error err = MOAT_ERROR_INIT;
    kube_watch_decoder_new(&d, 0, &err);
    const char in[] = "{\"type\":\"ERROR\",\"object\":{\"code\":410}}\n{\"type\":\"ADDED\"";
    assert_int_equal(kube_watch_decoder_feed(d, in, strlen(in), stop_at_error, NULL, &err), -7);
    assert_null(err.message);
    kube_watch_decoder_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split_gives_the_same_events),
        cmocka_unit_test(test_cut_mid_line_is_pending),
        cmocka_unit_test(test_bad_lines_are_errors),
        cmocka_unit_test(test_callback_can_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
