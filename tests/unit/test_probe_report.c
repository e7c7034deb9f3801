#include <errno.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "isolation/probe/report.h"

/* The whole report over a fake tree: this machine's shape (kvm_pvm, libvirt offering kvm,
 * runsc installed, no GPU, no Kata), then a hardware KVM host with GPUs. */

static void put(const char *root, const char *rel, const char *text, mode_t mode)
{
    char path[4096], cmd[4200];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

/* /dev/kvm opens and answers everything; no mshv. */
static int sys_open(void *impl, const char *path)
{
    return strstr(path, "/dev/kvm") ? 5 : -ENOENT;
}

static int sys_ioctl(void *impl, int fd, unsigned long req, unsigned long arg)
{
    return req == KVM_GET_API_VERSION ? KVM_API_VERSION : 6;
}

static void sys_close(void *impl, int fd)
{
}

static int lv_open(void *impl, void **ret_conn, bool *ret_nr, char **ret_msg, const char *uri)
{
    *ret_conn = impl;
    return 0;
}

static int lv_caps(void *impl, char **ret_xml, char **ret_msg, void *conn, const char *type)
{
    *ret_xml = strdup("<domainCapabilities/>");
    return 0; /* kvm and qemu both offered, as this machine's libvirt does */
}

static void lv_close(void *impl, void *conn)
{
}

static int ex_run(void *impl, char **ret_out, int *ret_status, char *const argv[], int timeout_ms,
                  moat_error *err)
{
    *ret_out = strdup("runsc version release-20260905.0\nspec: 1.1.0\n");
    *ret_status = 0;
    return 0;
}

static json_t *path(json_t *j, const char *a, const char *b)
{
    json_t *v = json_object_get(j, a);
    if (b)
        v = json_object_get(v, b);
    if (!v)
        fail_msg("no %s.%s", a, b ? b : "");
    return v;
}

static void test_pvm_host(void **state)
{
    char root[] = "/tmp/moat-report-XXXXXX";
    assert_non_null(mkdtemp(root));
    put(root, "proc/cpuinfo", "processor : 0\nflags : fpu hypervisor avx\n", 0644);
    put(root, "sys/module/kvm_pvm/parameters/verbose", "N\n", 0644);
    put(root, "bin/runsc", "", 0755);
    put(root, "bin/containerd-shim-runsc-v1", "", 0755);
    char runsc[128], shim[128], kata[128], kdir[128];
    snprintf(runsc, sizeof runsc, "%s/bin/runsc", root);
    snprintf(shim, sizeof shim, "%s/bin/containerd-shim-runsc-v1", root);
    snprintf(kata, sizeof kata, "%s/bin/containerd-shim-kata-v2", root);
    snprintf(kdir, sizeof kdir, "%s/kata", root);

    iso_sys sys = {sys_open, sys_ioctl, sys_close, NULL};
    iso_libvirt_ops lv = {lv_open, lv_caps, lv_close, &sys};
    iso_exec_ops ex = {ex_run, NULL};
    iso_report_config cfg = {.probe = {.root = root}, .runtimes = {runsc, shim, kata, kdir, 0}};
    iso_report_backends b = {&sys, &lv, &ex};
    iso_report r;
    moat_error err = MOAT_ERROR_INIT;
    if (iso_report_collect(&r, &cfg, &b, &err) < 0)
        fail_msg("%s", err.message);

    assert_string_equal(iso_report_hypervisor_label(&r), "none");
    assert_string_equal(iso_report_gpu_mode(&r), "none");
    assert_true(r.runtimes.gvisor.available);
    assert_false(r.runtimes.kata.available);

    json_t *j = iso_report_to_json(&r);
    assert_non_null(j);
    assert_false(json_boolean_value(path(j, "hypervisor", "usable")));
    assert_string_equal(json_string_value(path(j, "hypervisor", "kind")), "none");
    assert_string_equal(json_string_value(path(j, "hypervisor", "found")), "kvm-pvm");
    assert_non_null(strstr(json_string_value(path(j, "hypervisor", "reason")),
                           "kvm is kvm_pvm (no vmx/svm): Kata needs hardware virtualization"));
    assert_true(json_is_null(path(json_object_get(j, "hypervisor"), "cpu", "virtualization")));
    assert_true(json_is_true(path(json_object_get(j, "hypervisor"), "cpu", "hypervisor_bit")));
    assert_string_equal(json_string_value(path(j, "hypervisor", "kvm_module")), "kvm_pvm");
    assert_int_equal(json_integer_value(path(j, "hypervisor", "kvm_api_version")), 12);
    json_t *steps = path(j, "hypervisor", "steps");
    assert_int_equal(json_array_size(steps), ISO_STEP__COUNT);
    json_t *hw = json_array_get(steps, ISO_STEP_KVM_HARDWARE);
    assert_string_equal(json_string_value(json_object_get(hw, "step")), "kvm-hardware");
    assert_string_equal(json_string_value(json_object_get(hw, "outcome")), "fail");
    json_t *nested = json_array_get(steps, ISO_STEP_KVM_NESTED);
    assert_string_equal(json_string_value(json_object_get(nested, "outcome")), "not-run");
    assert_true(json_is_null(json_object_get(nested, "detail")));

    assert_true(json_is_true(path(j, "libvirt", "running")));
    assert_true(json_is_true(path(j, "libvirt", "kvm")));
    assert_true(json_is_true(path(j, "libvirt", "qemu")));
    assert_true(json_is_false(path(j, "libvirt", "agrees")));
    assert_non_null(strstr(json_string_value(path(j, "libvirt", "verdict")), "disagrees"));

    assert_string_equal(json_string_value(path(j, "gpu", "mode")), "none");
    assert_int_equal(json_integer_value(path(j, "gpu", "count")), 0);
    assert_true(json_is_null(path(j, "gpu", "product")));

    json_t *gv = path(j, "runtimes", "gvisor");
    assert_true(json_is_true(json_object_get(gv, "available")));
    assert_string_equal(json_string_value(json_object_get(gv, "version")), "release-20260905.0");
    assert_string_equal(json_string_value(json_object_get(gv, "platform")), "systrap");
    json_t *plats = json_object_get(gv, "platforms");
    assert_int_equal(json_array_size(plats), 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(gv, "runsc"), "path")),
                        runsc);
    json_t *ka = path(j, "runtimes", "kata");
    assert_true(json_is_false(json_object_get(ka, "installed")));
    assert_true(json_is_false(
        json_object_get(json_object_get(json_object_get(ka, "configs"), "clh"), "present")));
    json_decref(j);

    char *text = iso_report_to_text(&r);
    assert_non_null(text);
    assert_non_null(strstr(text, "hypervisor: NOT usable for a VM sandbox (kind none, found "
                                 "kvm-pvm)\n"));
    assert_non_null(strstr(text, "libvirt disagrees"));
    assert_non_null(strstr(text, "gvisor: available (runsc release-20260905.0"));
    assert_non_null(strstr(text, "platform systrap (supported: systrap ptrace)"));
    free(text);
    iso_report_clear(&r);
    iso_report_clear(&r);

    /* Without libvirt. */
    cfg.no_libvirt = true;
    assert_int_equal(iso_report_collect(&r, &cfg, &b, &err), 0);
    assert_string_equal(r.libvirt.verdict, "libvirt: not asked");
    iso_report_clear(&r);
    rm_rf(root);
}

static void test_hardware_host(void **state)
{
    char root[] = "/tmp/moat-report-XXXXXX";
    assert_non_null(mkdtemp(root));
    put(root, "proc/cpuinfo", "flags : fpu vmx\n", 0644);
    put(root, "sys/module/kvm_intel/parameters/nested", "Y\n", 0644);
    put(root, "sys/bus/pci/devices/0000:3b:00.0/vendor", "0x10de\n", 0644);
    put(root, "sys/bus/pci/devices/0000:3b:00.0/class", "0x030200\n", 0644);
    put(root, "sys/bus/pci/devices/0000:3b:00.0/device", "0x2330\n", 0644);
    char link[256];
    snprintf(link, sizeof link, "%s/sys/bus/pci/devices/0000:3b:00.0/driver", root);
    assert_int_equal(symlink("../../../bus/pci/drivers/vfio-pci", link), 0);

    iso_sys sys = {sys_open, sys_ioctl, sys_close, NULL};
    iso_libvirt_ops lv = {lv_open, lv_caps, lv_close, &sys};
    iso_exec_ops ex = {ex_run, NULL};
    char nothing[128];
    snprintf(nothing, sizeof nothing, "%s/none", root);
    iso_report_config cfg = {.probe = {.root = root},
                             .runtimes = {nothing, nothing, nothing, nothing, 0}};
    iso_report_backends b = {&sys, &lv, &ex};
    iso_report r;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_report_collect(&r, &cfg, &b, &err), 0);
    assert_string_equal(iso_report_hypervisor_label(&r), "kvm");
    assert_string_equal(iso_report_gpu_mode(&r), "vm-passthrough");
    json_t *j = iso_report_to_json(&r);
    assert_true(json_is_true(path(j, "hypervisor", "usable")));
    assert_string_equal(json_string_value(path(j, "hypervisor", "found")), "kvm");
    assert_true(json_is_true(path(j, "hypervisor", "nested")));
    assert_true(json_is_true(path(j, "libvirt", "agrees")));
    assert_int_equal(json_integer_value(path(j, "gpu", "count")), 1);
    assert_string_equal(json_string_value(path(j, "gpu", "product")), "NVIDIA-2330");
    json_t *dev = json_array_get(path(j, "gpu", "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(dev, "driver")), "vfio-pci");
    json_t *gv = path(j, "runtimes", "gvisor");
    assert_false(json_is_true(json_object_get(gv, "available")));
    assert_string_equal(json_string_value(json_object_get(gv, "platform")), "kvm");
    json_decref(j);
    iso_report_clear(&r);

    assert_string_equal(iso_report_hypervisor_label(NULL), "none");
    assert_null(iso_report_to_json(NULL));
    assert_int_equal(iso_report_collect(NULL, NULL, NULL, &err), -1);
    moat_error_clear(&err);
    rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pvm_host),
        cmocka_unit_test(test_hardware_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
