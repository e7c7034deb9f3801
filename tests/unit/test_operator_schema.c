/* operator/schema.c: the served Sandbox CRD against the fields the operator uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "operator/schema.h"

/* A CRD serving v1alpha1 whose spec and status have the given properties (JSON objects). */
static json_t *crd(const char *version, int served, const char *spec, const char *status)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"spec\": {\"versions\": [{\"name\": \"v0\", \"served\": true},"
             " {\"name\": \"%s\", \"served\": %s, \"schema\": {\"openAPIV3Schema\":"
             " {\"properties\": {\"spec\": {\"properties\": %s},"
             " \"status\": {\"properties\": %s}}}}}]}}",
             version, served ? "true" : "false", spec, status);
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    assert_non_null(v);
    return v;
}

static void test_every_field_there(void **state)
{
    (void)state;
    char why[128] = "";
    json_t *c = crd("v1alpha1", 1, "{\"image\": {}, \"mode\": {}, \"idleTimeout\": {}}",
                    "{\"lastActivityTime\": {}, \"limits\": {}}");
    assert_false(sandbox_crd_missing_field(c, why, sizeof why));
    json_decref(c);
}

static void test_an_older_crd_is_named_by_its_first_missing_field(void **state)
{
    (void)state;
    char why[128] = "";
    json_t *c = crd("v1alpha1", 1, "{\"image\": {}, \"timeout\": {}}", "{\"phase\": {}}");
    assert_true(sandbox_crd_missing_field(c, why, sizeof why));
    assert_string_equal(why, "spec.mode");
    json_decref(c);
    c = crd("v1alpha1", 1, "{\"mode\": {}, \"idleTimeout\": {}}", "{\"lastActivityTime\": {}}");
    assert_true(sandbox_crd_missing_field(c, why, sizeof why));
    assert_string_equal(why, "status.limits");
    json_decref(c);
}

static void test_no_served_version(void **state)
{
    (void)state;
    char why[128] = "";
    json_t *c = crd("v1alpha1", 0, "{\"mode\": {}, \"idleTimeout\": {}}",
                    "{\"lastActivityTime\": {}, \"limits\": {}}");
    assert_true(sandbox_crd_missing_field(c, why, sizeof why));
    assert_string_equal(why, "the served version v1alpha1");
    json_decref(c);
    assert_true(sandbox_crd_missing_field(NULL, why, sizeof why));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_there),
        cmocka_unit_test(test_an_older_crd_is_named_by_its_first_missing_field),
        cmocka_unit_test(test_no_served_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
