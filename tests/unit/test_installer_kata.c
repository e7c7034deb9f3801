#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "golden.h"

#include "isolation/kata/kata.h"

static void test_goldens(void **state)
{
    (void)state;
    iso_kata_sizing s = {ISO_KATA_DEFAULT_VCPUS, ISO_KATA_DEFAULT_MEMORY_MIB};
    char *out = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_kata_dropin(&out, ISO_RUNTIME_KATA_CLH, &s, &err), 0);
    golden_check("kata-clh-60-moat.toml", out);
    free(out);
    s = (iso_kata_sizing){4, 16384};
    assert_int_equal(iso_kata_dropin(&out, ISO_RUNTIME_KATA_GPU, &s, &err), 0);
    golden_check("kata-qemu-nvidia-gpu-60-moat.toml", out);
    assert_non_null(strstr(out, "[hypervisor.qemu]\ndefault_vcpus = 4\ndefault_memory = 16384\n"));
    free(out);
}

static void test_refusals(void **state)
{
    (void)state;
    char *out = (char *)"untouched";
    moat_error err = MOAT_ERROR_INIT;
    iso_kata_sizing ok = {1, 2048};
    assert_int_equal(iso_kata_dropin(&out, ISO_RUNTIME_RUNSC, &ok, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);
    iso_kata_sizing bad[] = {{0, 2048}, {257, 2048}, {1, 255}, {1, 1048577}};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        assert_int_equal(iso_kata_dropin(&out, ISO_RUNTIME_KATA_CLH, &bad[i], &err), -1);
        assert_int_equal(err.code, MOAT_E_RANGE);
        moat_error_clear(&err);
    }
    assert_string_equal(out, "untouched");
}

static void test_paths(void **state)
{
    (void)state;
    iso_runtime_paths p;
    iso_runtime_paths_default(&p);
    char *path = NULL;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_kata_dropin_path(&path, ISO_RUNTIME_KATA_CLH, &p, &err), 0);
    assert_string_equal(path, "/opt/kata/share/defaults/kata-containers/runtimes/clh/config.d/"
                              "60-moat.toml");
    free(path);
    assert_int_equal(iso_kata_dropin_path(&path, ISO_RUNTIME_KATA_GPU, &p, &err), 0);
    assert_string_equal(path, "/opt/kata/share/defaults/kata-containers/runtimes/"
                              "qemu-nvidia-gpu/config.d/60-moat.toml");
    free(path);
    assert_int_equal(iso_kata_dropin_path(&path, ISO_RUNTIME_RUNSC_NONET, &p, &err), -1);
    moat_error_clear(&err);
    p.kata_clh_config = NULL;
    assert_int_equal(iso_kata_dropin_path(&path, ISO_RUNTIME_KATA_CLH, &p, &err), -1);
    moat_error_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
