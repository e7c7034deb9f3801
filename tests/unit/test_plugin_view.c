/* kubectl-moat/view.c: what ls and get show of a Sandbox. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kubectl-moat/view.h"

#define NOW 1765036800 /* 2025-12-06T16:00:00Z */

static const char session_json[] =
    "{\"metadata\":{\"name\":\"box\",\"creationTimestamp\":\"2025-12-06T15:00:00Z\"},"
    "\"spec\":{\"image\":\"i\",\"mode\":\"Session\",\"isolation\":\"Auto\"},"
    "\"status\":{\"phase\":\"Running\",\"podName\":\"box\",\"nodeName\":\"moat-node\","
    "\"lastActivityTime\":\"2025-12-06T15:58:30Z\","
    "\"isolation\":{\"runtime\":\"gvisor\",\"handler\":\"runsc-nonet\",\"reason\":\"no usable "
    "hypervisor\",\"verified\":true},"
    "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"},"
    "{\"type\":\"Finished\",\"status\":\"False\",\"reason\":\"Running\"}]}}";

static const char vm_json[] =
    "{\"metadata\":{\"name\":\"vm\"},\"spec\":{\"isolation\":\"VM\",\"command\":[\"true\"]},"
    "\"status\":{\"phase\":\"Pending\",\"conditions\":[{\"type\":\"Scheduled\",\"status\":"
    "\"False\",\"reason\":\"NoHypervisor\",\"message\":\"no Moat node has a usable "
    "hypervisor\"}]}}";

static json_t *load(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    return j;
}

/* What print wrote, NUL-terminated (through a temporary file: open_memstream's buffer, a
 * local whose address the stream keeps, reads as dangling to GCC's -O2 analysis). */
static char *printed(void (*print)(FILE *, const void *), const void *arg)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    print(f, arg);
    long len = ftell(f);
    assert_true(len >= 0);
    char *buf = calloc((size_t)len + 1, 1);
    assert_non_null(buf);
    rewind(f);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    return buf;
}

static void print_detail(FILE *f, const void *v)
{
    view_print_detail(f, v, NOW);
}
static void print_table(FILE *f, const void *items)
{
    view_print_table(f, items, NOW);
}

static void test_session(void **state)
{
    json_t *j = load(session_json);
    sandbox_view v;
    sandbox_view_read(&v, j);
    assert_string_equal(v.name, "box");
    assert_string_equal(v.mode, "Session");
    assert_string_equal(v.runtime, "gvisor");
    assert_true(v.verified);
    assert_true(v.ready);
    assert_false(sandbox_view_final(&v));
    assert_false(v.no_hypervisor);
    assert_string_equal(v.finished_reason, ""); /* Finished is False */
    char *out = printed(print_detail, &v);
    assert_non_null(strstr(out, "Isolation:  gvisor (runsc-nonet)\n"));
    assert_non_null(strstr(out, "Why:        no usable hypervisor\n"));
    assert_non_null(strstr(out, "Age:        60m\n"));
    assert_non_null(strstr(out, "Idle:       90s\n"));
    free(out);
    json_t *items = json_pack("[O]", j);
    out = printed(print_table, items);
    char name[64], phase[64], mode[64], iso[64], node[64], age[64], idle[64];
    const char *line = strchr(out, '\n') + 1;
    assert_int_equal(
        sscanf(line, "%63s %63s %63s %63s %63s %63s %63s", name, phase, mode, iso, node, age, idle),
        7);
    assert_string_equal(phase, "Running");
    assert_string_equal(iso, "gvisor");
    assert_string_equal(age, "60m");
    assert_string_equal(idle, "90s");
    free(out);
    json_decref(items);
    json_decref(j);
}

static void test_vm_without_hypervisor(void **state)
{
    json_t *j = load(vm_json);
    sandbox_view v;
    sandbox_view_read(&v, j);
    assert_string_equal(v.mode, "Run"); /* unset: the default */
    assert_true(v.no_hypervisor);
    assert_string_equal(v.scheduled_message, "no Moat node has a usable hypervisor");
    assert_string_equal(v.runtime, "");
    assert_int_equal(v.created, -1);
    char *out = printed(print_detail, &v);
    assert_non_null(strstr(out, "Isolation:  - (not reported yet)\n"));
    assert_non_null(strstr(out, "Placement:  isolation VM: no node has a usable hypervisor"));
    assert_null(strstr(out, "Idle:")); /* a Run has no idle time */
    free(out);
    json_decref(j);
}

static void test_ended(void **state)
{
    json_t *j = load("{\"metadata\":{\"name\":\"r\"},\"status\":{\"phase\":\"Failed\","
                     "\"exitCode\":3,\"message\":\"exit 3\",\"conditions\":[{\"type\":"
                     "\"Finished\",\"status\":\"True\",\"reason\":\"Exited\"}]}}");
    sandbox_view v;
    sandbox_view_read(&v, j);
    assert_true(sandbox_view_final(&v));
    assert_true(v.has_exit_code);
    assert_int_equal(v.exit_code, 3);
    assert_string_equal(v.finished_reason, "Exited");
    char *out = printed(print_detail, &v);
    assert_non_null(strstr(out, "Phase:      Failed (Exited)\n"));
    assert_non_null(strstr(out, "Exit code:  3\n"));
    free(out);
    json_decref(j);
    /* an exit code out of range is not one */
    j = load("{\"status\":{\"exitCode\":300}}");
    sandbox_view_read(&v, j);
    assert_false(v.has_exit_code);
    json_decref(j);
}

static void test_age(void **state)
{
    char buf[32];
    view_age(buf, sizeof(buf), 5);
    assert_string_equal(buf, "5s");
    view_age(buf, sizeof(buf), 119);
    assert_string_equal(buf, "119s");
    view_age(buf, sizeof(buf), 600);
    assert_string_equal(buf, "10m");
    view_age(buf, sizeof(buf), 3 * 3600);
    assert_string_equal(buf, "3h");
    view_age(buf, sizeof(buf), 3 * 86400);
    assert_string_equal(buf, "3d");
    view_age(buf, sizeof(buf), -1);
    assert_string_equal(buf, "<unknown>");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session),
        cmocka_unit_test(test_vm_without_hypervisor),
        cmocka_unit_test(test_ended),
        cmocka_unit_test(test_age),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
