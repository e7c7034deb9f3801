#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "isolation/probe/libvirt.h"

/* ---- a fake libvirt --------------------------------------------------------------------- */

typedef struct {
    bool not_running;       /* open fails: no daemon */
    const char *open_error; /* open fails with this message */
    bool kvm, qemu;         /* domain types offered */
    const char *kvm_error;  /* libvirt's message when kvm is not offered */
    /* What the probe did. */
    char uri[64];
    int opens, closes;
    char asked[4][16];
    int n_asked;
} fake_libvirt;

static int conn_token;

static int fake_open(void *impl, void **ret_conn, bool *ret_not_running, char **ret_msg,
                     const char *uri)
{
    fake_libvirt *f = impl;
    f->opens++;
    snprintf(f->uri, sizeof f->uri, "%s", uri);
    if (f->not_running) {
        *ret_not_running = true;
        *ret_msg = strdup("Failed to connect socket to '/var/run/libvirt/libvirt-sock': No "
                          "such file or directory");
        return -1;
    }
    if (f->open_error) {
        *ret_msg = strdup(f->open_error);
        return -1;
    }
    *ret_conn = &conn_token;
    return 0;
}

static int fake_caps(void *impl, char **ret_xml, char **ret_msg, void *conn, const char *type)
{
    fake_libvirt *f = impl;
    assert_ptr_equal(conn, &conn_token);
    assert_true(f->n_asked < 4);
    snprintf(f->asked[f->n_asked++], sizeof f->asked[0], "%s", type);
    bool offered = strcmp(type, "kvm") == 0 ? f->kvm : strcmp(type, "qemu") == 0 ? f->qemu : false;
    if (offered) {
        char xml[128];
        snprintf(xml, sizeof xml, "<domainCapabilities><domain>%s</domain></domainCapabilities>",
                 type);
        *ret_xml = strdup(xml);
        return 0;
    }
    if (strcmp(type, "kvm") == 0 && f->kvm_error)
        *ret_msg = strdup(f->kvm_error);
    return -1;
}

static void fake_close(void *impl, void *conn)
{
    fake_libvirt *f = impl;
    assert_ptr_equal(conn, &conn_token);
    f->closes++;
}

static const iso_probe_result kvm_usable = {
    .usable = true, .hypervisor = "kvm", .reason = "kvm usable", .found = "kvm"};
static const iso_probe_result pvm = {
    .usable = false,
    .reason = "kvm is kvm_pvm (no vmx/svm): Kata needs hardware virtualization and no /dev/mshv",
    .found = "kvm-pvm"};
static const iso_probe_result mshv_usable = {
    .usable = true, .hypervisor = "mshv", .reason = "mshv usable", .found = "mshv"};

static void run(iso_libvirt_result *r, fake_libvirt *f, const iso_probe_result *direct)
{
    iso_libvirt_ops ops = {fake_open, fake_caps, fake_close, f};
    moat_error err = MOAT_ERROR_INIT;
    if (iso_libvirt_probe(r, &ops, NULL, direct, &err) < 0)
        fail_msg("libvirt probe: %s", err.message);
    assert_null(err.message);
    assert_string_equal(f->uri, "qemu:///system");
    assert_int_equal(f->opens, 1);
}

/* ---- the branches ----------------------------------------------------------------------- */

static void test_agree(void **state)
{
    /* Hardware KVM: both say kvm. */
    fake_libvirt f = {.kvm = true, .qemu = true};
    iso_libvirt_result r;
    run(&r, &f, &kvm_usable);
    assert_true(r.running);
    assert_string_equal(r.status, "connected to qemu:///system");
    assert_int_equal(r.kvm, ISO_TRI_YES);
    assert_int_equal(r.qemu, ISO_TRI_YES);
    assert_null(r.kvm_msg);
    assert_int_equal(r.agrees, ISO_TRI_YES);
    assert_string_equal(r.verdict, "libvirt agrees: kvm usable");
    assert_int_equal(f.n_asked, 2);
    assert_string_equal(f.asked[0], "kvm");
    assert_string_equal(f.asked[1], "qemu");
    assert_int_equal(f.closes, 1);
    iso_libvirt_result_clear(&r);

    /* No KVM anywhere: both say no; qemu (emulation) still offered. */
    f = (fake_libvirt){.qemu = true,
                       .kvm_error = "unsupported configuration: the accel 'kvm' is not "
                                    "supported by '/usr/bin/qemu-system-x86_64' on this host"};
    run(&r, &f, &pvm);
    assert_int_equal(r.kvm, ISO_TRI_NO);
    assert_int_equal(r.qemu, ISO_TRI_YES);
    assert_non_null(strstr(r.kvm_msg, "the accel 'kvm' is not supported"));
    assert_int_equal(r.agrees, ISO_TRI_YES);
    assert_string_equal(r.verdict, "libvirt agrees: kvm not offered");
    iso_libvirt_result_clear(&r);

    /* mshv usable, libvirt's qemu driver offers no kvm: they agree about kvm. */
    f = (fake_libvirt){.qemu = true};
    run(&r, &f, &mshv_usable);
    assert_int_equal(r.agrees, ISO_TRI_YES);
    assert_string_equal(r.kvm_msg, "not offered");
    iso_libvirt_result_clear(&r);
}

static void test_disagree(void **state)
{
    /* This machine: libvirt offers kvm on kvm_pvm; the direct probe wins. */
    fake_libvirt f = {.kvm = true, .qemu = true};
    iso_libvirt_result r;
    run(&r, &f, &pvm);
    assert_int_equal(r.kvm, ISO_TRI_YES);
    assert_int_equal(r.agrees, ISO_TRI_NO);
    assert_string_equal(r.verdict,
                        "libvirt disagrees: it offers the kvm domain type, the direct probe says "
                        "kvm is not usable (kvm is kvm_pvm (no vmx/svm): Kata needs hardware "
                        "virtualization and no /dev/mshv); the direct probe wins");
    iso_libvirt_result_clear(&r);

    /* The other way round. */
    f = (fake_libvirt){.qemu = true, .kvm_error = "no kvm here"};
    run(&r, &f, &kvm_usable);
    assert_int_equal(r.agrees, ISO_TRI_NO);
    assert_string_equal(r.verdict,
                        "libvirt disagrees: it does not offer the kvm domain type (no kvm here), "
                        "the direct probe says kvm is usable; the direct probe wins");
    iso_libvirt_result_clear(&r);

    /* No direct probe to compare with. */
    f = (fake_libvirt){.kvm = true};
    run(&r, &f, NULL);
    assert_int_equal(r.agrees, ISO_TRI_UNKNOWN);
    assert_int_equal(r.qemu, ISO_TRI_NO);
    assert_string_equal(r.verdict, "libvirt: kvm offered (no direct probe to compare)");
    iso_libvirt_result_clear(&r);
}

static void test_not_running(void **state)
{
    fake_libvirt f = {.not_running = true, .kvm = true};
    iso_libvirt_result r;
    run(&r, &f, &pvm);
    assert_false(r.running);
    assert_string_equal(r.status, "not running");
    assert_string_equal(r.verdict, "libvirt: not running");
    assert_int_equal(r.kvm, ISO_TRI_UNKNOWN);
    assert_int_equal(r.qemu, ISO_TRI_UNKNOWN);
    assert_int_equal(r.agrees, ISO_TRI_UNKNOWN);
    assert_int_equal(f.n_asked, 0);
    assert_int_equal(f.closes, 0);
    iso_libvirt_result_clear(&r);

    /* Another failure is reported as such, still not an error of the probe. */
    f = (fake_libvirt){.open_error = "authentication failed: access denied"};
    run(&r, &f, &pvm);
    assert_false(r.running);
    assert_string_equal(r.status,
                        "cannot connect to qemu:///system: authentication failed: access denied");
    assert_string_equal(r.verdict, "libvirt: cannot connect to qemu:///system");
    iso_libvirt_result_clear(&r);
}

static void test_bad_arguments(void **state)
{
    iso_libvirt_result r = {.status = (char *)0x1};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_libvirt_probe(&r, NULL, NULL, NULL, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_ptr_equal(r.status, (char *)0x1);
    moat_error_clear(&err);
    iso_libvirt_result_clear(NULL);
}

/* The real client against a URI whose socket does not exist: "not running", and nothing on
 * stderr (the quiet error handler). */
static void test_real_not_running(void **state)
{
    iso_libvirt_result r;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_libvirt_probe(&r, iso_libvirt_host(),
                                       "qemu+unix:///system?socket=/nonexistent/moat/libvirt-sock",
                                       &pvm, &err),
                     0);
    assert_false(r.running);
    print_message("[  NOTE    ] %s\n", r.status);
    assert_string_equal(r.verdict, "libvirt: not running");
    iso_libvirt_result_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agree),
        cmocka_unit_test(test_disagree),
        cmocka_unit_test(test_not_running),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_real_not_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
