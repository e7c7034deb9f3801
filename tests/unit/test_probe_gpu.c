#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "isolation/probe/gpu.h"

/* ---- a fake sysfs/proc/dev tree --------------------------------------------------------- */

static void mkdirs(const char *path)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = '\0';
            if (mkdir(p, 0755) < 0 && errno != EEXIST)
                fail_msg("mkdir %s: %s", p, strerror(errno));
            *c = '/';
        }
    if (mkdir(p, 0755) < 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", p, strerror(errno));
}

static void put(const char *root, const char *rel, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdirs(path);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A PCI function as sysfs shows it; driver NULL: none bound. */
static void pci(const char *root, const char *addr, const char *vendor, const char *class,
                const char *device, const char *driver)
{
    char rel[256], path[4096], target[256];
    snprintf(rel, sizeof rel, "sys/bus/pci/devices/%s/vendor", addr);
    put(root, rel, vendor);
    snprintf(rel, sizeof rel, "sys/bus/pci/devices/%s/class", addr);
    put(root, rel, class);
    snprintf(rel, sizeof rel, "sys/bus/pci/devices/%s/device", addr);
    put(root, rel, device);
    if (driver) {
        snprintf(path, sizeof path, "%s/sys/bus/pci/devices/%s/driver", root, addr);
        snprintf(target, sizeof target, "../../../bus/pci/drivers/%s", driver);
        assert_int_equal(symlink(target, path), 0);
    }
}

static void gpu_info(const char *root, const char *addr, const char *model)
{
    char rel[256], text[256];
    snprintf(rel, sizeof rel, "proc/driver/nvidia/gpus/%s/information", addr);
    snprintf(text, sizeof text,
             "Model: \t\t %s\nIRQ:   \t\t 140\nGPU UUID: \t GPU-1234\nBus Location: \t %s\n", model,
             addr);
    put(root, rel, text);
}

static char *tree(void)
{
    static char root[64];
    snprintf(root, sizeof root, "/tmp/moat-gpu-XXXXXX");
    assert_non_null(mkdtemp(root));
    return root;
}

static void rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static void probe(iso_gpu_result *r, const char *root)
{
    moat_error err = MOAT_ERROR_INIT;
    if (iso_gpu_probe(r, root, &err) < 0)
        fail_msg("GPU probe: %s", err.message);
    assert_null(err.message);
}

#define H100  "0000:3b:00.0"
#define H100B "0000:86:00.0"

/* ---- the branches ----------------------------------------------------------------------- */

static void test_none(void **state)
{
    char *root = tree();
    iso_gpu_result r;
    probe(&r, root); /* no /sys at all */
    assert_string_equal(r.mode, "none");
    assert_string_equal(r.reason, "no NVIDIA GPU");
    assert_int_equal(r.count, 0);
    assert_null(r.product);
    assert_null(r.driver_version);
    assert_int_equal(r.n_devices, 0);
    iso_gpu_result_clear(&r);

    /* A virtio device, an NVIDIA audio function (class 0x0403) and a non-NVIDIA VGA. */
    pci(root, "0000:00:01.0", "0x1af4", "0xffff00", "0x1000", "virtio-pci");
    pci(root, "0000:3b:00.1", "0x10de", "0x040300", "0x22bc", "snd_hda_intel");
    pci(root, "0000:00:02.0", "0x8086", "0x030000", "0x3e92", "i915");
    probe(&r, root);
    assert_string_equal(r.mode, "none");
    assert_string_equal(r.reason, "no NVIDIA GPU");
    assert_int_equal(r.n_devices, 0);
    iso_gpu_result_clear(&r);
    rm_rf(root);
}

static void test_nvidia_driver(void **state)
{
    char *root = tree();
    pci(root, H100, "0x10de", "0x030200", "0x2330", "nvidia");
    pci(root, H100B, "0x10de\n", "0x030200\n", "0x2330\n", "nvidia");
    gpu_info(root, H100, "NVIDIA H100 80GB HBM3");
    gpu_info(root, H100B, "NVIDIA H100 80GB HBM3");
    put(root, "sys/module/nvidia/version", "550.54.15\n");
    put(root, "dev/nvidia0", "");
    put(root, "dev/nvidia1", "");
    put(root, "dev/nvidiactl", "");
    put(root, "dev/nvidia-uvm", "");
    iso_gpu_result r;
    probe(&r, root);
    assert_string_equal(r.mode, "container");
    assert_string_equal(r.reason, "2 GPUs on nvidia");
    assert_int_equal(r.count, 2);
    assert_string_equal(r.product, "NVIDIA-H100-80GB-HBM3");
    assert_string_equal(r.driver_version, "550.54.15");
    assert_int_equal(r.dev_nodes, 2);
    assert_int_equal(r.n_devices, 2);
    assert_string_equal(r.devices[0].address, H100);
    assert_string_equal(r.devices[0].device, "0x2330");
    assert_string_equal(r.devices[0].driver, "nvidia");
    assert_string_equal(r.devices[1].address, H100B);
    iso_gpu_result_clear(&r);
    assert_null(r.devices);
    rm_rf(root);

    /* The version from /proc when the module has no version file; a model not starting with
     * NVIDIA; no device nodes yet; one GPU on no driver. */
    root = tree();
    pci(root, H100, "0x10de", "0x030000", "0x1eb8", "nvidia");
    pci(root, H100B, "0x10de", "0x030000", "0x1eb8", NULL);
    gpu_info(root, H100, "Tesla T4");
    put(root, "proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.104.05  Release Build  "
        "(dvs-builder@U16-I3-B03-4-3)  Tue Aug 22 20:42:51 UTC 2023\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n");
    probe(&r, root);
    assert_string_equal(r.mode, "container");
    assert_int_equal(r.count, 1);
    assert_string_equal(r.product, "NVIDIA-Tesla-T4");
    assert_string_equal(r.driver_version, "535.104.05");
    assert_string_equal(
        r.reason, "1 GPU on nvidia; 1 on no usable driver; no /dev/nvidia<N> device nodes yet");
    assert_null(r.devices[1].driver);
    assert_string_equal(r.devices[1].product, "NVIDIA-1eb8");
    iso_gpu_result_clear(&r);
    rm_rf(root);
}

static void test_vfio(void **state)
{
    char *root = tree();
    pci(root, H100, "0x10de", "0x030200", "0x2330", "vfio-pci");
    iso_gpu_result r;
    probe(&r, root);
    assert_string_equal(r.mode, "vm-passthrough");
    assert_string_equal(r.reason, "1 GPU on vfio-pci");
    assert_int_equal(r.count, 1);
    assert_string_equal(r.product, "NVIDIA-2330"); /* no NVIDIA driver to name it */
    assert_null(r.driver_version);
    assert_int_equal(r.dev_nodes, 0);
    iso_gpu_result_clear(&r);
    rm_rf(root);
}

static void test_mixed(void **state)
{
    char *root = tree();
    pci(root, H100, "0x10de", "0x030200", "0x2330", "nvidia");
    pci(root, H100B, "0x10de", "0x030200", "0x2330", "vfio-pci");
    iso_gpu_result r;
    probe(&r, root);
    assert_string_equal(r.mode, "none");
    assert_string_equal(r.reason, "mixed: 1 on nvidia, 1 on vfio-pci; one GPU mode per node");
    assert_int_equal(r.count, 0);
    assert_null(r.product);
    assert_int_equal(r.n_devices, 2);
    iso_gpu_result_clear(&r);
    rm_rf(root);

    /* Only nouveau: GPUs, none usable. */
    root = tree();
    pci(root, H100, "0x10de", "0x030000", "0x2330", "nouveau");
    probe(&r, root);
    assert_string_equal(r.mode, "none");
    assert_string_equal(r.reason, "1 NVIDIA GPU, none on nvidia or vfio-pci (nouveau)");
    iso_gpu_result_clear(&r);
    rm_rf(root);
}

static void test_parse_driver_version(void **state)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"550.54.15", "550.54.15"},
        {"NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC "
         "2024",
         "550.54.15"},
        {"x86_64 535.104 ", "535.104"},
        {"version 1. 2.3", "2.3"},
        {"1..2 .3 4. 5", NULL},
        {"a.b.c", NULL},
        {"", NULL},
        {"12345678901234567890123456789012.1", NULL}, /* too long to be a version */
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        char *v = iso_gpu_parse_driver_version(cases[i].text, strlen(cases[i].text));
        if (cases[i].want)
            assert_string_equal(v, cases[i].want);
        else if (v)
            fail_msg("\"%s\" gave %s", cases[i].text, v);
        free(v);
    }
    /* The length is respected. */
    char *v = iso_gpu_parse_driver_version("550.54.15", 3);
    assert_null(v);
    v = iso_gpu_parse_driver_version("550.54.15", 6);
    assert_string_equal(v, "550.54");
    free(v);
}

static void test_bad_arguments(void **state)
{
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_gpu_probe(NULL, "/", &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    moat_error_clear(&err);
    iso_gpu_result_clear(NULL);
}

/* This machine: no GPU. */
static void test_real_host(void **state)
{
    iso_gpu_result r;
    probe(&r, NULL);
    print_message("[  NOTE    ] this host: %s (%s)\n", r.mode, r.reason);
    assert_non_null(r.reason);
    iso_gpu_result_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_nvidia_driver),
        cmocka_unit_test(test_vfio),
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_parse_driver_version),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_real_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
