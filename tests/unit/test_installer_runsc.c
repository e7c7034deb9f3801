#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "golden.h"

#include "isolation/gvisor/runsc.h"
#include "libmoat/names.h"

static iso_runtime_paths paths(void)
{
    iso_runtime_paths p;
    iso_runtime_paths_default(&p);
    p.runsc_root = "/run/containerd/runsc";
    return p;
}

static char *toml(iso_runtime_kind kind, const char *platform, const iso_runtime_paths *p)
{
    char *out = NULL;
    moat_error err = MOAT_ERROR_INIT;
    if (iso_runsc_toml(&out, kind, platform, p, &err) < 0)
        fail_msg("runsc.toml: %s", err.message);
    return out;
}

static void test_goldens(void **state)
{
    (void)state;
    iso_runtime_paths p = paths();
    struct {
        iso_runtime_kind kind;
        const char *platform, *golden;
    } cases[] = {
        {ISO_RUNTIME_RUNSC, ISO_RUNSC_PLATFORM_SYSTRAP, "runsc-systrap.toml"},
        {ISO_RUNTIME_RUNSC_NONET, ISO_RUNSC_PLATFORM_SYSTRAP, "runsc-nonet-systrap.toml"},
        {ISO_RUNTIME_RUNSC_NVPROXY, ISO_RUNSC_PLATFORM_SYSTRAP, "runsc-nvproxy-systrap.toml"},
        {ISO_RUNTIME_RUNSC, ISO_RUNSC_PLATFORM_KVM, "runsc-kvm.toml"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        char *t = toml(cases[i].kind, cases[i].platform, &p);
        golden_check(cases[i].golden, t);
        free(t);
    }
    p.runsc_log_dir = "/var/log/moat/runsc";
    char *t = toml(ISO_RUNTIME_RUNSC_NONET, ISO_RUNSC_PLATFORM_SYSTRAP, &p);
    golden_check("runsc-nonet-logs.toml", t);
    free(t);
}

static void test_flags_per_kind(void **state)
{
    (void)state;
    iso_runtime_paths p = paths();
    p.runsc_root = NULL;
    char *plain = toml(ISO_RUNTIME_RUNSC, "systrap", &p);
    char *nonet = toml(ISO_RUNTIME_RUNSC_NONET, "systrap", &p);
    char *gpu = toml(ISO_RUNTIME_RUNSC_NVPROXY, "kvm", &p);
    assert_null(strstr(plain, "network"));
    assert_null(strstr(plain, "nvproxy ="));
    assert_null(strstr(plain, "root ="));
    assert_non_null(strstr(nonet, "\n  network = \"none\"\n"));
    assert_non_null(strstr(gpu, "\n  nvproxy = \"true\"\n"));
    assert_non_null(strstr(gpu, "\n  platform = \"kvm\"\n"));
    assert_non_null(strstr(plain, "binary_name = \"/usr/local/bin/runsc\"\n[runsc_config]\n"));
    free(plain), free(nonet), free(gpu);
}

static void test_platform_from_the_probe(void **state)
{
    (void)state;
    assert_string_equal(iso_runsc_platform(false), "systrap");
    assert_string_equal(iso_runsc_platform(true), "kvm");
}

static void test_refusals(void **state)
{
    (void)state;
    iso_runtime_paths p = paths();
    char *out = (char *)"untouched";
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_runsc_toml(&out, ISO_RUNTIME_KATA_CLH, "systrap", &p, &err), -1);
    assert_non_null(strstr(err.message, "not gVisor"));
    moat_error_clear(&err);
    assert_int_equal(iso_runsc_toml(&out, ISO_RUNTIME_RUNSC, "hvf", &p, &err), -1);
    assert_non_null(strstr(err.message, "hvf"));
    moat_error_clear(&err);
    assert_int_equal(iso_runsc_toml(&out, ISO_RUNTIME_RUNSC, NULL, &p, &err), -1);
    moat_error_clear(&err);
    p.runsc = "runsc";
    assert_int_equal(iso_runsc_toml(&out, ISO_RUNTIME_RUNSC, "systrap", &p, &err), -1);
    assert_non_null(strstr(err.message, "runsc binary"));
    moat_error_clear(&err);
    p = paths();
    p.runsc_log_dir = "/var/log/\"x";
    assert_int_equal(iso_runsc_toml(&out, ISO_RUNTIME_RUNSC, "systrap", &p, &err), -1);
    assert_non_null(strstr(err.message, "quote"));
    moat_error_clear(&err);
    p = paths();
    p.runsc_root = "/run/\nx";
    assert_int_equal(iso_runsc_toml(&out, ISO_RUNTIME_RUNSC, "systrap", &p, &err), -1);
    moat_error_clear(&err);
    assert_string_equal(out, "untouched");
}

static void test_paths(void **state)
{
    (void)state;
    iso_runtime_paths p = paths();
    char *path = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_runsc_toml_path(&path, &p, MOAT_HANDLER_RUNSC_NONET, &err), 0);
    assert_string_equal(path, "/etc/moat/runsc/runsc-nonet.toml");
    free(path);
    p.runsc_config_dir = "/etc/moat/runsc//";
    assert_int_equal(iso_runsc_toml_path(&path, &p, "moat-auto", &err), 0);
    assert_string_equal(path, "/etc/moat/runsc/moat-auto.toml");
    free(path);
    assert_int_equal(iso_runsc_toml_path(&path, &p, "../etc", &err), -1);
    moat_error_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens),
        cmocka_unit_test(test_flags_per_kind),
        cmocka_unit_test(test_platform_from_the_probe),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
