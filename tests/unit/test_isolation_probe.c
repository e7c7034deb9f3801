#include <dirent.h>
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
#include <unistd.h>
#include <cmocka.h>

#include "isolation/probe.h"

#define KVM     "/dev/kvm"
#define MSHV    "/dev/mshv"
#define KVM_FD  7
#define VM_FD   9
#define MSHV_FD 11
#define MAX_FDS 32

/* ---- a fake kernel ---------------------------------------------------------------------- */

typedef struct {
    unsigned long req, arg;
    int fd;
} ioctl_call;

/* What each call answers (an fd or value, or -errno), and what the probe did. */
typedef struct {
    const char *kvm_path, *mshv_path;
    int kvm_open, api_version, create_vm, mshv_open;

    const char *opened[4];
    size_t n_opened;
    ioctl_call ioctls[4];
    size_t n_ioctls;
    int closed[4];
    size_t n_closed;
    bool open[MAX_FDS];
} fake_sys;

static void fd_opened(fake_sys *f, int fd)
{
    assert_in_range(fd, 0, MAX_FDS - 1);
    assert_false(f->open[fd]);
    f->open[fd] = true;
}

static int fake_open(void *impl, const char *path)
{
    fake_sys *f = impl;
    assert_true(f->n_opened < ELEMENTSOF(f->opened));
    f->opened[f->n_opened++] = path;
    int r = -ENOENT;
    if (strcmp(path, f->kvm_path) == 0)
        r = f->kvm_open;
    else if (strcmp(path, f->mshv_path) == 0)
        r = f->mshv_open;
    else
        fail_msg("opened %s", path);
    if (r >= 0)
        fd_opened(f, r);
    return r;
}

static int fake_ioctl(void *impl, int fd, unsigned long req, unsigned long arg)
{
    fake_sys *f = impl;
    assert_in_range(fd, 0, MAX_FDS - 1);
    assert_true(f->open[fd]);
    assert_true(f->n_ioctls < ELEMENTSOF(f->ioctls));
    f->ioctls[f->n_ioctls++] = (ioctl_call){.req = req, .arg = arg, .fd = fd};
    if (req == KVM_GET_API_VERSION)
        return f->api_version;
    if (req == KVM_CREATE_VM) {
        if (f->create_vm >= 0)
            fd_opened(f, f->create_vm);
        return f->create_vm;
    }
    fail_msg("ioctl 0x%lx", req);
    return -ENOTTY;
}

static void fake_close(void *impl, int fd)
{
    fake_sys *f = impl;
    assert_in_range(fd, 0, MAX_FDS - 1);
    assert_true(f->open[fd]);
    f->open[fd] = false;
    assert_true(f->n_closed < ELEMENTSOF(f->closed));
    f->closed[f->n_closed++] = fd;
}

/* A kernel where KVM works and there is no mshv. */
static fake_sys fake_kvm_ok(void)
{
    return (fake_sys){
        .kvm_path = KVM,
        .mshv_path = MSHV,
        .kvm_open = KVM_FD,
        .api_version = KVM_API_VERSION,
        .create_vm = VM_FD,
        .mshv_open = -ENOENT,
    };
}

static void assert_all_closed(const fake_sys *f)
{
    for (int fd = 0; fd < MAX_FDS; fd++)
        if (f->open[fd])
            fail_msg("fd %d left open", fd);
}

/* Probes with f; the result must be exactly usable/hypervisor/reason, with every fd closed. */
static void probe_expect(fake_sys *f, bool usable, const char *hypervisor, const char *reason)
{
    iso_sys sys = {.open = fake_open, .ioctl = fake_ioctl, .close = fake_close, .impl = f};
    iso_probe_result r = {0};
    moat_error err = MOAT_ERROR_INIT;
    if (iso_probe_with(&sys, f->kvm_path, f->mshv_path, &r, &err) < 0)
        fail_msg("probe failed: %s", err.message);
    assert_null(err.message);
    assert_int_equal(r.usable, usable);
    if (hypervisor)
        assert_string_equal(r.hypervisor, hypervisor);
    else
        assert_null(r.hypervisor);
    assert_string_equal(r.reason, reason);
    assert_all_closed(f);
    iso_probe_result_clear(&r);
    assert_null(r.reason);
    assert_null(r.hypervisor);
    assert_false(r.usable);
}

static void assert_kvm_ioctls(const fake_sys *f, size_t n)
{
    assert_int_equal(f->n_ioctls, n);
    static const unsigned long reqs[] = {KVM_GET_API_VERSION, KVM_CREATE_VM};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(f->ioctls[i].req, reqs[i]);
        assert_int_equal(f->ioctls[i].arg, 0);
        assert_int_equal(f->ioctls[i].fd, KVM_FD);
    }
}

/* ---- the probe's branches --------------------------------------------------------------- */

static void test_kvm_usable(void **state)
{
    fake_sys f = fake_kvm_ok();
    probe_expect(&f, true, "kvm", "kvm usable");
    /* Only KVM is asked; the VM is closed before /dev/kvm. */
    assert_int_equal(f.n_opened, 1);
    assert_string_equal(f.opened[0], KVM);
    assert_kvm_ioctls(&f, 2);
    assert_int_equal(f.n_closed, 2);
    assert_int_equal(f.closed[0], VM_FD);
    assert_int_equal(f.closed[1], KVM_FD);
}

static void test_no_kvm_no_mshv(void **state)
{
    fake_sys f = fake_kvm_ok();
    f.kvm_open = -ENOENT;
    probe_expect(&f, false, NULL, "no /dev/kvm and no /dev/mshv");
    assert_int_equal(f.n_opened, 2);
    assert_string_equal(f.opened[0], KVM);
    assert_string_equal(f.opened[1], MSHV);
    assert_int_equal(f.n_ioctls, 0);
    assert_int_equal(f.n_closed, 0);
}

static void test_kvm_eacces(void **state)
{
    fake_sys f = fake_kvm_ok();
    f.kvm_open = -EACCES;
    probe_expect(&f, false, NULL, "EACCES on /dev/kvm and no /dev/mshv");
    assert_int_equal(f.n_ioctls, 0);
    assert_int_equal(f.n_closed, 0);

    f = fake_kvm_ok();
    f.kvm_open = -ENXIO; /* the node exists, the module is not loaded */
    probe_expect(&f, false, NULL, "ENXIO on /dev/kvm and no /dev/mshv");

    f = fake_kvm_ok();
    f.kvm_open = -4000; /* no name we know */
    probe_expect(&f, false, NULL, "errno 4000 on /dev/kvm and no /dev/mshv");
}

static void test_kvm_wrong_api_version(void **state)
{
    fake_sys f = fake_kvm_ok();
    f.api_version = 11;
    probe_expect(&f, false, NULL, "KVM_GET_API_VERSION returned 11, want 12 and no /dev/mshv");
    /* No VM is created, and /dev/kvm is closed. */
    assert_kvm_ioctls(&f, 1);
    assert_int_equal(f.n_closed, 1);
    assert_int_equal(f.closed[0], KVM_FD);

    f = fake_kvm_ok();
    f.api_version = -ENOTTY; /* /dev/kvm is not KVM */
    probe_expect(&f, false, NULL, "KVM_GET_API_VERSION: ENOTTY and no /dev/mshv");
    assert_kvm_ioctls(&f, 1);
    assert_int_equal(f.n_closed, 1);
}

static void test_kvm_create_vm_ebusy(void **state)
{
    fake_sys f = fake_kvm_ok();
    f.create_vm = -EBUSY;
    probe_expect(&f, false, NULL, "KVM_CREATE_VM: EBUSY and no /dev/mshv");
    assert_kvm_ioctls(&f, 2);
    assert_int_equal(f.n_closed, 1);
    assert_int_equal(f.closed[0], KVM_FD);
    assert_int_equal(f.n_opened, 2);
    assert_string_equal(f.opened[1], MSHV);

    f = fake_kvm_ok();
    f.create_vm = -EPERM;
    probe_expect(&f, false, NULL, "KVM_CREATE_VM: EPERM and no /dev/mshv");
}

static void test_mshv_fallback(void **state)
{
    fake_sys f = fake_kvm_ok();
    f.kvm_open = -ENOENT;
    f.mshv_open = MSHV_FD;
    probe_expect(&f, true, "mshv", "mshv usable");
    assert_int_equal(f.n_opened, 2);
    assert_string_equal(f.opened[1], MSHV);
    assert_int_equal(f.n_ioctls, 0);
    assert_int_equal(f.n_closed, 1);
    assert_int_equal(f.closed[0], MSHV_FD);

    /* A KVM that is there but broken does not hide mshv. */
    f = fake_kvm_ok();
    f.create_vm = -EBUSY;
    f.mshv_open = MSHV_FD;
    probe_expect(&f, true, "mshv", "mshv usable");
    assert_int_equal(f.n_closed, 2);
    assert_int_equal(f.closed[0], KVM_FD);
    assert_int_equal(f.closed[1], MSHV_FD);

    /* A usable KVM wins: mshv is never opened. */
    f = fake_kvm_ok();
    f.mshv_open = MSHV_FD;
    probe_expect(&f, true, "kvm", "kvm usable");
    assert_int_equal(f.n_opened, 1);
}

static void test_mshv_denied(void **state)
{
    fake_sys f = fake_kvm_ok();
    f.kvm_open = -ENOENT;
    f.mshv_open = -EACCES;
    probe_expect(&f, false, NULL, "no /dev/kvm and EACCES on /dev/mshv");
}

static void test_other_paths(void **state)
{
    fake_sys f = fake_kvm_ok();
    f.kvm_path = "/host/dev/kvm";
    f.mshv_path = "/host/dev/mshv";
    f.kvm_open = -ENOENT;
    probe_expect(&f, false, NULL, "no /host/dev/kvm and no /host/dev/mshv");
}

static void test_bad_arguments(void **state)
{
    fake_sys f = fake_kvm_ok();
    iso_sys sys = {.open = fake_open, .ioctl = fake_ioctl, .close = fake_close, .impl = &f};
    iso_probe_result r = {.reason = (char *)0x1};
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_probe_with(NULL, KVM, MSHV, &r, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_int_equal(iso_probe_with(&sys, NULL, MSHV, &r, &err), -1);
    assert_int_equal(iso_probe_with(&sys, KVM, NULL, &r, &err), -1);
    assert_int_equal(iso_probe_with(&sys, KVM, MSHV, NULL, &err), -1);
    assert_ptr_equal(r.reason, (char *)0x1);
    assert_int_equal(f.n_opened, 0);
}

static void test_clear(void **state)
{
    iso_probe_result_clear(NULL);
    iso_probe_result r = {0};
    iso_probe_result_clear(&r);
    iso_probe_result_clear(&r);
}

/* ---- the real system calls -------------------------------------------------------------- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void real_expect(const char *kvm, const char *mshv, bool usable, const char *hypervisor,
                        const char *reason)
{
    int before = count_fds();
    iso_probe_result r = {0};
    moat_error err = MOAT_ERROR_INIT;
    if (iso_probe_with(iso_sys_host(), kvm, mshv, &r, &err) < 0)
        fail_msg("probe failed: %s", err.message);
    assert_int_equal(r.usable, usable);
    if (hypervisor)
        assert_string_equal(r.hypervisor, hypervisor);
    else
        assert_null(r.hypervisor);
    assert_string_equal(r.reason, reason);
    assert_int_equal(count_fds(), before);
    iso_probe_result_clear(&r);
}

static void test_real_sys(void **state)
{
    real_expect("/nonexistent/moat/kvm", "/nonexistent/moat/mshv", false, NULL,
                "no /nonexistent/moat/kvm and no /nonexistent/moat/mshv");
    /* A device that is not KVM answers its ioctl with ENOTTY. */
    real_expect("/dev/null", "/nonexistent/moat/mshv", false, NULL,
                "KVM_GET_API_VERSION: ENOTTY and no /nonexistent/moat/mshv");
    /* mshv needs only to open. */
    real_expect("/nonexistent/moat/kvm", "/dev/null", true, "mshv", "mshv usable");
    /* A directory does not open read-write. */
    real_expect("/tmp", "/nonexistent/moat/mshv", false, NULL,
                "EISDIR on /tmp and no /nonexistent/moat/mshv");

    iso_probe_paths paths = {"/nonexistent/moat/kvm", "/nonexistent/moat/mshv"};
    iso_probe_ops ops = iso_probe_host_at(&paths);
    iso_probe_result r = {0};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(ops.probe(ops.impl, &r, &err), 0);
    assert_false(r.usable);
    assert_string_equal(r.reason, "no /nonexistent/moat/kvm and no /nonexistent/moat/mshv");
    iso_probe_result_clear(&r);
}

/* This host, as moat-cri would see it. */
static void test_real_host(void **state)
{
    const iso_probe_ops *ops = iso_probe_host();
    assert_non_null(ops);
    assert_ptr_equal(ops, iso_probe_host());
    iso_probe_result r = {0};
    moat_error err = MOAT_ERROR_INIT;
    int before = count_fds();
    if (ops->probe(ops->impl, &r, &err) < 0)
        fail_msg("probe failed: %s", err.message);
    assert_int_equal(count_fds(), before);
    assert_non_null(r.reason);

    bool has_kvm = access(KVM, F_OK) == 0, has_mshv = access(MSHV, F_OK) == 0;
    if (!has_kvm && !has_mshv) {
        assert_false(r.usable);
        assert_null(r.hypervisor);
        assert_string_equal(r.reason, "no /dev/kvm and no /dev/mshv");
    } else if (!has_kvm) {
        assert_non_null(strstr(r.reason, "no /dev/kvm"));
    } else {
        /* The "no /dev/kvm" fact does not hold on this host; check what can be checked. */
        print_message("[  NOTE    ] this host has /dev/kvm; the probe says: %s\n", r.reason);
        if (r.usable) {
            assert_non_null(r.hypervisor);
            char want[32];
            snprintf(want, sizeof want, "%s usable", r.hypervisor);
            assert_string_equal(r.reason, want);
        } else {
            assert_null(r.hypervisor);
            assert_non_null(strstr(r.reason, "/dev/kvm"));
        }
    }
    iso_probe_result_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kvm_usable),
        cmocka_unit_test(test_no_kvm_no_mshv),
        cmocka_unit_test(test_kvm_eacces),
        cmocka_unit_test(test_kvm_wrong_api_version),
        cmocka_unit_test(test_kvm_create_vm_ebusy),
        cmocka_unit_test(test_mshv_fallback),
        cmocka_unit_test(test_mshv_denied),
        cmocka_unit_test(test_other_paths),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_real_sys),
        cmocka_unit_test(test_real_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
