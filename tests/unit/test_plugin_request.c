/* kubectl-moat/request.c: the API server's address for libwebsockets, and the exec path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "kubectl-moat/request.h"

static void assert_address(const char *url, const char *host, int port, bool tls,
                           const char *prefix)
{
    server_address a;
    moat_error err = MOAT_ERROR_INIT;
    if (server_address_parse(&a, url, &err) < 0)
        fail_msg("%s: %s", url, err.message);
    assert_string_equal(a.host, host);
    assert_int_equal(a.port, port);
    assert_int_equal(a.tls, tls);
    assert_string_equal(a.prefix, prefix);
    server_address_clear(&a);
}

static void assert_address_error(const char *url)
{
    server_address a;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(server_address_parse(&a, url, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_non_null(err.message);
    moat_error_clear(&err);
}

static void test_addresses(void **state)
{
    assert_address("https://127.0.0.1:6443", "127.0.0.1", 6443, true, "");
    assert_address("https://kube.example", "kube.example", 443, true, "");
    assert_address("http://kube.example/", "kube.example", 80, false, "");
    assert_address("https://[fd00::1]:8443/k8s/clusters/c-1/", "fd00::1", 8443, true,
                   "/k8s/clusters/c-1");
    assert_address_error("kube.example:6443");
    assert_address_error("https://");
    assert_address_error("https://[fd00::1");
    assert_address_error("https://h:0");
    assert_address_error("https://h:65536");
    assert_address_error("https://h:64x");
    assert_address_error("https://h?x=1");
}

static void test_exec_path(void **state)
{
    char *argv[] = {"/.moat/moat-init", "exec", "--", "sh", "-c", "echo a&b=c; x+y %", NULL};
    exec_call call = {.ns = "team-a", .pod = "box", .argv = argv, .with_stdin = true};
    char *path = exec_path_build("/k8s", &call);
    assert_string_equal(path, "/k8s/api/v1/namespaces/team-a/pods/box/exec?"
                              "command=%2F.moat%2Fmoat-init&command=exec&command=--&command=sh&"
                              "command=-c&command=echo%20a%26b%3Dc%3B%20x%2By%20%25&"
                              "stdin=true&stdout=true&stderr=true&tty=false");
    free(path);
    /* a terminal carries stderr; a container named; odd names escaped, not trusted */
    char *one[] = {"sh", NULL};
    call = (exec_call){.ns = "a/b", .pod = "p?q", .container = "c", .argv = one, .tty = true};
    path = exec_path_build("", &call);
    assert_string_equal(path, "/api/v1/namespaces/a%2Fb/pods/p%3Fq/exec?command=sh&container=c&"
                              "stdin=false&stdout=true&stderr=false&tty=true");
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_exec_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
