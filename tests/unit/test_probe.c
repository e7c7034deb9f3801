#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#include "isolation/probe/probe.h"

#define KVM_FD  7
#define VM_FD   9
#define MSHV_FD 11
#define MAX_FDS 32

#define FLAGS_VMX  "flags\t\t: fpu vme de pse tsc msr vmx hypervisor lahf_lm\n"
#define FLAGS_SVM  "flags\t\t: fpu vme de pse tsc msr svm lahf_lm\n"
#define FLAGS_NONE "flags\t\t: fpu vme de pse tsc msr pae hypervisor lahf_lm abm\n"

/* ---- a fake tree (cpuinfo, sysfs) in a temporary directory ------------------------------ */

static void mkdirs(const char *root, const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0755) < 0 && errno != EEXIST)
                fail_msg("mkdir %s: %s", path, strerror(errno));
            *p = '/';
        }
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", path, strerror(errno));
}

static void put_file(const char *root, const char *rel, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    if (slash > path + strlen(root)) {
        *slash = '\0';
        mkdirs(root, path + strlen(root) + 1);
        *slash = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void rm_rf(const char *path)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

typedef struct {
    char root[64];
    char kvm[128], mshv[128];
} tree;

/* A host: cpuinfo with flags (NULL: no cpuinfo), the given modules ("kvm_intel"...), and
 * a nested parameter for the vendor module (NULL: none). */
static void tree_make(tree *t, const char *flags, const char *module, const char *nested)
{
    snprintf(t->root, sizeof t->root, "/tmp/moat-probe-XXXXXX");
    assert_non_null(mkdtemp(t->root));
    snprintf(t->kvm, sizeof t->kvm, "%s/dev/kvm", t->root);
    snprintf(t->mshv, sizeof t->mshv, "%s/dev/mshv", t->root);
    if (flags) {
        char text[512];
        snprintf(text, sizeof text, "processor\t: 0\nvendor_id\t: GenuineIntel\n%s\n", flags);
        put_file(t->root, "proc/cpuinfo", text);
    }
    if (module) {
        char rel[128];
        snprintf(rel, sizeof rel, "sys/module/%s/parameters", module);
        mkdirs(t->root, rel);
        if (nested) {
            snprintf(rel, sizeof rel, "sys/module/%s/parameters/nested", module);
            put_file(t->root, rel, nested);
        }
    }
}

/* ---- a fake kernel ---------------------------------------------------------------------- */

typedef struct {
    unsigned long req, arg;
    int fd;
} ioctl_call;

/* What each call answers (an fd or value, or -errno), and what the probe did. */
typedef struct {
    const char *kvm_path, *mshv_path;
    int kvm_open, api_version, create_vm, mshv_open;

    char opened[4][128];
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
    snprintf(f->opened[f->n_opened++], sizeof f->opened[0], "%s", path);
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

/* A kernel where KVM works and there is no mshv, for the devices of t. */
static fake_sys fake_kvm_ok(const tree *t)
{
    return (fake_sys){
        .kvm_path = t->kvm,
        .mshv_path = t->mshv,
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

/* Probes t with f; the result must be exactly usable/hypervisor/found/reason, with every
 * fd closed. The caller clears *r. */
static void probe_run(iso_probe_result *r, const tree *t, fake_sys *f, bool usable,
                      const char *hypervisor, const char *found, const char *reason)
{
    iso_sys sys = {.open = fake_open, .ioctl = fake_ioctl, .close = fake_close, .impl = f};
    iso_probe_paths paths = {.root = t->root};
    moat_error err = MOAT_ERROR_INIT;
    *r = (iso_probe_result){0};
    if (iso_probe_run(r, &sys, &paths, &err) < 0)
        fail_msg("probe failed: %s", err.message);
    assert_null(err.message);
    assert_int_equal(r->usable, usable);
    if (hypervisor)
        assert_string_equal(r->hypervisor, hypervisor);
    else
        assert_null(r->hypervisor);
    assert_string_equal(r->found, found);
    assert_string_equal(r->reason, reason);
    assert_all_closed(f);
}

static void probe_expect(const tree *t, fake_sys *f, bool usable, const char *hypervisor,
                         const char *found, const char *reason)
{
    iso_probe_result r;
    probe_run(&r, t, f, usable, hypervisor, found, reason);
    iso_probe_result_clear(&r);
    assert_null(r.reason);
    assert_null(r.hypervisor);
    assert_false(r.usable);
}

static void assert_step(const iso_probe_result *r, iso_probe_step_id id, iso_step_outcome o,
                        const char *detail)
{
    if (r->steps[id].outcome != o)
        fail_msg("step %s: %s, want %s (%s)", iso_probe_step_name(id),
                 iso_step_outcome_name(r->steps[id].outcome), iso_step_outcome_name(o),
                 r->steps[id].detail ? r->steps[id].detail : "no detail");
    if (detail)
        assert_string_equal(r->steps[id].detail, detail);
    else
        assert_null(r->steps[id].detail);
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

/* a followed by b, in one of a few rotating buffers (nested calls stay valid). */
static const char *cat(const char *a, const char *b)
{
    static char buf[8][512];
    static int i;
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s%s", a, b);
    i = (i + 1) % 8;
    memcpy(buf[i], tmp, sizeof tmp);
    return buf[i];
}

/* ---- hardware KVM ----------------------------------------------------------------------- */

static void test_vmx_usable(void **state)
{
    tree t;
    tree_make(&t, FLAGS_VMX, "kvm_intel", "Y\n");
    fake_sys f = fake_kvm_ok(&t);
    iso_probe_result r;
    probe_run(&r, &t, &f, true, "kvm", "kvm", "kvm usable");
    assert_string_equal(r.cpu_virt, "vmx");
    assert_int_equal(r.cpu_hypervisor, ISO_TRI_YES);
    assert_string_equal(r.kvm_module, "kvm_intel");
    assert_int_equal(r.nested, ISO_TRI_YES);
    assert_int_equal(r.kvm_api_version, 12);
    assert_step(&r, ISO_STEP_CPU_FLAGS, ISO_STEP_PASS, "vmx, hypervisor bit set (a VM)");
    assert_step(&r, ISO_STEP_KVM_MODULE, ISO_STEP_PASS, "kvm_intel");
    assert_step(&r, ISO_STEP_KVM_NESTED, ISO_STEP_INFO, "kvm_intel nested=Y");
    assert_step(&r, ISO_STEP_KVM_OPEN, ISO_STEP_PASS, t.kvm);
    assert_step(&r, ISO_STEP_KVM_API, ISO_STEP_PASS, "12");
    assert_step(&r, ISO_STEP_KVM_CREATE_VM, ISO_STEP_PASS, "VM created and closed");
    assert_step(&r, ISO_STEP_KVM_HARDWARE, ISO_STEP_PASS, "vmx (kvm_intel)");
    assert_step(&r, ISO_STEP_MSHV_OPEN, ISO_STEP_NOT_RUN, NULL);
    /* Only KVM is asked; the VM is closed before /dev/kvm. */
    assert_int_equal(f.n_opened, 1);
    assert_string_equal(f.opened[0], t.kvm);
    assert_kvm_ioctls(&f, 2);
    assert_int_equal(f.n_closed, 2);
    assert_int_equal(f.closed[0], VM_FD);
    assert_int_equal(f.closed[1], KVM_FD);
    iso_probe_result_clear(&r);
    rm_rf(t.root);
}

static void test_svm_nested(void **state)
{
    tree t;
    tree_make(&t, FLAGS_SVM, "kvm_amd", "0\n");
    fake_sys f = fake_kvm_ok(&t);
    iso_probe_result r;
    probe_run(&r, &t, &f, true, "kvm", "kvm", "kvm usable");
    assert_string_equal(r.cpu_virt, "svm");
    assert_int_equal(r.cpu_hypervisor, ISO_TRI_NO);
    assert_int_equal(r.nested, ISO_TRI_NO);
    assert_step(&r, ISO_STEP_CPU_FLAGS, ISO_STEP_PASS, "svm");
    assert_step(&r, ISO_STEP_KVM_NESTED, ISO_STEP_INFO, "kvm_amd nested=0");
    assert_step(&r, ISO_STEP_KVM_HARDWARE, ISO_STEP_PASS, "svm (kvm_amd)");
    iso_probe_result_clear(&r);
    rm_rf(t.root);

    /* nested=N does not stop Kata here: it is about VMs inside this node's VMs. */
    tree_make(&t, FLAGS_VMX, "kvm_intel", "N");
    f = fake_kvm_ok(&t);
    probe_run(&r, &t, &f, true, "kvm", "kvm", "kvm usable");
    assert_int_equal(r.nested, ISO_TRI_NO);
    assert_step(&r, ISO_STEP_KVM_NESTED, ISO_STEP_INFO, "kvm_intel nested=N");
    iso_probe_result_clear(&r);
    rm_rf(t.root);

    /* No nested parameter to read. */
    tree_make(&t, FLAGS_VMX, "kvm_intel", NULL);
    f = fake_kvm_ok(&t);
    probe_run(&r, &t, &f, true, "kvm", "kvm", "kvm usable");
    assert_int_equal(r.nested, ISO_TRI_UNKNOWN);
    assert_step(&r, ISO_STEP_KVM_NESTED, ISO_STEP_INFO, "kvm_intel nested unreadable: ENOENT");
    iso_probe_result_clear(&r);
    rm_rf(t.root);
}

/* ---- this machine's trap: kvm_pvm ------------------------------------------------------- */

static void test_pvm(void **state)
{
    tree t;
    tree_make(&t, FLAGS_NONE, "kvm_pvm", NULL);
    fake_sys f = fake_kvm_ok(&t);
    iso_probe_result r;
    /* Every ioctl passes, and still no VM sandbox can run. */
    probe_run(
        &r, &t, &f, false, NULL, "kvm-pvm",
        cat("kvm is kvm_pvm (no vmx/svm): Kata needs hardware virtualization and no ", t.mshv));
    assert_null(r.cpu_virt);
    assert_int_equal(r.cpu_hypervisor, ISO_TRI_YES);
    assert_string_equal(r.kvm_module, "kvm_pvm");
    assert_step(&r, ISO_STEP_CPU_FLAGS, ISO_STEP_FAIL, "no vmx/svm, hypervisor bit set (a VM)");
    assert_step(&r, ISO_STEP_KVM_MODULE, ISO_STEP_FAIL, "kvm_pvm");
    assert_step(&r, ISO_STEP_KVM_NESTED, ISO_STEP_NOT_RUN, NULL);
    assert_step(&r, ISO_STEP_KVM_API, ISO_STEP_PASS, "12");
    assert_step(&r, ISO_STEP_KVM_CREATE_VM, ISO_STEP_PASS, "VM created and closed");
    assert_step(&r, ISO_STEP_KVM_HARDWARE, ISO_STEP_FAIL,
                "kvm is kvm_pvm (no vmx/svm): Kata needs hardware virtualization");
    assert_step(&r, ISO_STEP_MSHV_OPEN, ISO_STEP_FAIL, cat("no ", t.mshv));
    assert_kvm_ioctls(&f, 2);
    iso_probe_result_clear(&r);
    rm_rf(t.root);

    /* kvm_pvm on a CPU with vmx, a built-in kvm_intel beside it: still PVM. */
    tree_make(&t, FLAGS_VMX, "kvm_pvm", NULL);
    mkdirs(t.root, "sys/module/kvm_intel/parameters");
    f = fake_kvm_ok(&t);
    probe_run(&r, &t, &f, false, NULL, "kvm-pvm",
              cat("kvm is kvm_pvm (software page tables, not vmx): Kata needs hardware "
                  "virtualization and no ",
                  t.mshv));
    assert_step(&r, ISO_STEP_KVM_MODULE, ISO_STEP_FAIL, "kvm_pvm (kvm_intel present too)");
    iso_probe_result_clear(&r);
    rm_rf(t.root);

    /* PVM and Microsoft's hypervisor: mshv is usable. */
    tree_make(&t, FLAGS_NONE, "kvm_pvm", NULL);
    f = fake_kvm_ok(&t);
    f.mshv_open = MSHV_FD;
    probe_run(&r, &t, &f, true, "mshv", "mshv", "mshv usable");
    assert_step(&r, ISO_STEP_KVM_HARDWARE, ISO_STEP_FAIL,
                "kvm is kvm_pvm (no vmx/svm): Kata needs hardware virtualization");
    assert_step(&r, ISO_STEP_MSHV_OPEN, ISO_STEP_PASS, t.mshv);
    iso_probe_result_clear(&r);
    rm_rf(t.root);
}

static void test_no_hardware_evidence(void **state)
{
    /* /dev/kvm works but the CPU shows no vmx/svm and no PVM module: not hardware. */
    tree t;
    tree_make(&t, FLAGS_NONE, "kvm_intel", NULL);
    fake_sys f = fake_kvm_ok(&t);
    probe_expect(&t, &f, false, NULL, "kvm",
                 cat("/dev/kvm answers but the CPU has no vmx/svm: Kata needs hardware "
                     "virtualization and no ",
                     t.mshv));
    rm_rf(t.root);

    /* No cpuinfo (a container without /proc from the host), but kvm_intel: usable. */
    tree_make(&t, NULL, "kvm_intel", "Y");
    f = fake_kvm_ok(&t);
    iso_probe_result r;
    probe_run(&r, &t, &f, true, "kvm", "kvm", "kvm usable");
    assert_step(&r, ISO_STEP_CPU_FLAGS, ISO_STEP_FAIL,
                cat(cat("cannot read ", t.root), "/proc/cpuinfo: ENOENT"));
    assert_step(&r, ISO_STEP_KVM_HARDWARE, ISO_STEP_PASS, "kvm_intel (CPU flags not visible)");
    assert_int_equal(r.cpu_hypervisor, ISO_TRI_UNKNOWN);
    iso_probe_result_clear(&r);
    rm_rf(t.root);

    /* vmx but no module visible (no /sys): usable on the CPU's word. */
    tree_make(&t, FLAGS_VMX, NULL, NULL);
    f = fake_kvm_ok(&t);
    probe_run(&r, &t, &f, true, "kvm", "kvm", "kvm usable");
    assert_step(&r, ISO_STEP_KVM_MODULE, ISO_STEP_FAIL,
                "none of kvm_intel, kvm_amd, kvm_pvm in /sys/module");
    assert_step(&r, ISO_STEP_KVM_HARDWARE, ISO_STEP_PASS, "vmx (module not visible)");
    iso_probe_result_clear(&r);
    rm_rf(t.root);

    /* Neither: nothing proves hardware virtualization. */
    tree_make(&t, NULL, NULL, NULL);
    f = fake_kvm_ok(&t);
    probe_expect(&t, &f, false, NULL, "kvm",
                 cat("cannot prove /dev/kvm is hardware virtualization: no CPU flags and no "
                     "kvm_intel or kvm_amd module and no ",
                     t.mshv));
    rm_rf(t.root);

    /* A cpuinfo without a flags line (another architecture's format). */
    tree_make(&t, NULL, "kvm_intel", NULL);
    put_file(t.root, "proc/cpuinfo", "processor : 0\nBogoMIPS : 50.00\n");
    f = fake_kvm_ok(&t);
    probe_run(&r, &t, &f, true, "kvm", "kvm", "kvm usable");
    assert_step(&r, ISO_STEP_CPU_FLAGS, ISO_STEP_FAIL,
                cat(cat("no flags line in ", t.root), "/proc/cpuinfo"));
    iso_probe_result_clear(&r);
    rm_rf(t.root);
}

/* ---- the device's branches -------------------------------------------------------------- */

static void test_no_kvm_no_mshv(void **state)
{
    tree t;
    tree_make(&t, FLAGS_VMX, "kvm_intel", "Y");
    fake_sys f = fake_kvm_ok(&t);
    f.kvm_open = -ENOENT;
    iso_probe_result r;
    probe_run(&r, &t, &f, false, NULL, "none", cat(cat(cat("no ", t.kvm), " and no "), t.mshv));
    assert_step(&r, ISO_STEP_KVM_OPEN, ISO_STEP_FAIL, cat("no ", t.kvm));
    assert_step(&r, ISO_STEP_KVM_API, ISO_STEP_NOT_RUN, NULL);
    assert_int_equal(r.kvm_api_version, -1);
    assert_int_equal(f.n_opened, 2);
    assert_string_equal(f.opened[0], t.kvm);
    assert_string_equal(f.opened[1], t.mshv);
    assert_int_equal(f.n_ioctls, 0);
    assert_int_equal(f.n_closed, 0);
    iso_probe_result_clear(&r);
    rm_rf(t.root);
}

static void test_kvm_eacces(void **state)
{
    tree t;
    tree_make(&t, FLAGS_VMX, "kvm_intel", "Y");
    fake_sys f = fake_kvm_ok(&t);
    f.kvm_open = -EACCES;
    probe_expect(&t, &f, false, NULL, "none",
                 cat(cat(cat("EACCES on ", t.kvm), " and no "), t.mshv));
    assert_int_equal(f.n_ioctls, 0);
    assert_int_equal(f.n_closed, 0);

    f = fake_kvm_ok(&t);
    f.kvm_open = -ENXIO; /* the node exists, the module is not loaded */
    probe_expect(&t, &f, false, NULL, "none",
                 cat(cat(cat("ENXIO on ", t.kvm), " and no "), t.mshv));

    f = fake_kvm_ok(&t);
    f.kvm_open = -4000; /* no name we know */
    probe_expect(&t, &f, false, NULL, "none",
                 cat(cat(cat("errno 4000 on ", t.kvm), " and no "), t.mshv));
    rm_rf(t.root);
}

static void test_kvm_wrong_api_version(void **state)
{
    tree t;
    tree_make(&t, FLAGS_VMX, "kvm_intel", "Y");
    fake_sys f = fake_kvm_ok(&t);
    f.api_version = 11;
    iso_probe_result r;
    probe_run(&r, &t, &f, false, NULL, "none",
              cat("KVM_GET_API_VERSION returned 11, want 12 and no ", t.mshv));
    assert_int_equal(r.kvm_api_version, 11);
    assert_step(&r, ISO_STEP_KVM_CREATE_VM, ISO_STEP_NOT_RUN, NULL);
    iso_probe_result_clear(&r);
    /* No VM is created, and /dev/kvm is closed. */
    assert_kvm_ioctls(&f, 1);
    assert_int_equal(f.n_closed, 1);
    assert_int_equal(f.closed[0], KVM_FD);

    f = fake_kvm_ok(&t);
    f.api_version = -ENOTTY; /* /dev/kvm is not KVM */
    probe_expect(&t, &f, false, NULL, "none", cat("KVM_GET_API_VERSION: ENOTTY and no ", t.mshv));
    assert_kvm_ioctls(&f, 1);
    assert_int_equal(f.n_closed, 1);
    rm_rf(t.root);
}

static void test_kvm_create_vm_ebusy(void **state)
{
    tree t;
    tree_make(&t, FLAGS_VMX, "kvm_intel", "Y");
    fake_sys f = fake_kvm_ok(&t);
    f.create_vm = -EBUSY;
    iso_probe_result r;
    probe_run(&r, &t, &f, false, NULL, "none", cat("KVM_CREATE_VM: EBUSY and no ", t.mshv));
    assert_step(&r, ISO_STEP_KVM_CREATE_VM, ISO_STEP_FAIL, "KVM_CREATE_VM: EBUSY");
    assert_step(&r, ISO_STEP_KVM_HARDWARE, ISO_STEP_NOT_RUN, NULL);
    iso_probe_result_clear(&r);
    assert_kvm_ioctls(&f, 2);
    assert_int_equal(f.n_closed, 1);
    assert_int_equal(f.closed[0], KVM_FD);
    assert_int_equal(f.n_opened, 2);
    assert_string_equal(f.opened[1], t.mshv);

    f = fake_kvm_ok(&t);
    f.create_vm = -EPERM;
    probe_expect(&t, &f, false, NULL, "none", cat("KVM_CREATE_VM: EPERM and no ", t.mshv));
    rm_rf(t.root);
}

static void test_mshv(void **state)
{
    tree t;
    tree_make(&t, FLAGS_NONE, NULL, NULL);
    fake_sys f = fake_kvm_ok(&t);
    f.kvm_open = -ENOENT;
    f.mshv_open = MSHV_FD;
    probe_expect(&t, &f, true, "mshv", "mshv", "mshv usable");
    assert_int_equal(f.n_opened, 2);
    assert_string_equal(f.opened[1], t.mshv);
    assert_int_equal(f.n_ioctls, 0);
    assert_int_equal(f.n_closed, 1);
    assert_int_equal(f.closed[0], MSHV_FD);

    /* A KVM that is there but broken does not hide mshv. */
    f = fake_kvm_ok(&t);
    f.create_vm = -EBUSY;
    f.mshv_open = MSHV_FD;
    probe_expect(&t, &f, true, "mshv", "mshv", "mshv usable");
    assert_int_equal(f.n_closed, 2);
    assert_int_equal(f.closed[0], KVM_FD);
    assert_int_equal(f.closed[1], MSHV_FD);

    /* Denied. */
    f = fake_kvm_ok(&t);
    f.kvm_open = -ENOENT;
    f.mshv_open = -EACCES;
    probe_expect(&t, &f, false, NULL, "none",
                 cat(cat(cat("no ", t.kvm), " and EACCES on "), t.mshv));
    rm_rf(t.root);

    /* A usable KVM wins: mshv is never opened. */
    tree_make(&t, FLAGS_VMX, "kvm_intel", "Y");
    f = fake_kvm_ok(&t);
    f.mshv_open = MSHV_FD;
    probe_expect(&t, &f, true, "kvm", "kvm", "kvm usable");
    assert_int_equal(f.n_opened, 1);
    rm_rf(t.root);
}

static void test_other_paths(void **state)
{
    tree t;
    tree_make(&t, FLAGS_VMX, "kvm_intel", "Y");
    fake_sys f = fake_kvm_ok(&t);
    f.kvm_path = "/host/dev/kvm";
    f.mshv_path = "/host/dev/mshv";
    f.kvm_open = -ENOENT;
    iso_sys sys = {.open = fake_open, .ioctl = fake_ioctl, .close = fake_close, .impl = &f};
    iso_probe_paths paths = {.root = t.root, .kvm_path = f.kvm_path, .mshv_path = f.mshv_path};
    iso_probe_result r = {0};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_probe_run(&r, &sys, &paths, &err), 0);
    assert_string_equal(r.reason, "no /host/dev/kvm and no /host/dev/mshv");
    /* The CPU and sysfs still come from the root. */
    assert_string_equal(r.kvm_module, "kvm_intel");
    iso_probe_result_clear(&r);
    rm_rf(t.root);

    /* A root with a trailing slash gives the same paths. */
    tree_make(&t, FLAGS_VMX, "kvm_intel", "Y");
    f = fake_kvm_ok(&t);
    char slashed[80];
    snprintf(slashed, sizeof slashed, "%s//", t.root);
    sys.impl = &f;
    paths = (iso_probe_paths){.root = slashed};
    assert_int_equal(iso_probe_run(&r, &sys, &paths, &err), 0);
    assert_true(r.usable);
    assert_string_equal(f.opened[0], t.kvm);
    iso_probe_result_clear(&r);
    rm_rf(t.root);
}

static void test_bad_arguments(void **state)
{
    tree t;
    tree_make(&t, FLAGS_VMX, "kvm_intel", "Y");
    fake_sys f = fake_kvm_ok(&t);
    iso_sys sys = {.open = fake_open, .ioctl = fake_ioctl, .close = fake_close, .impl = &f};
    iso_probe_result r = {.reason = (char *)0x1};
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_probe_run(&r, NULL, NULL, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_int_equal(iso_probe_run(NULL, &sys, NULL, &err), -1);
    assert_ptr_equal(r.reason, (char *)0x1);
    assert_int_equal(f.n_opened, 0);
    rm_rf(t.root);
}

static void test_assume(void **state)
{
    iso_probe_result r;
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(iso_probe_assume(&r, "kvm", "by the configuration (probe.assume)", &err), 0);
    assert_true(r.usable);
    assert_string_equal(r.hypervisor, "kvm");
    assert_string_equal(r.found, "kvm");
    assert_string_equal(r.reason, "kvm assumed by the configuration (probe.assume)");
    assert_int_equal(r.steps[ISO_STEP_KVM_OPEN].outcome, ISO_STEP_NOT_RUN);
    iso_probe_result_clear(&r);

    assert_int_equal(iso_probe_assume(&r, "mshv", NULL, &err), 0);
    assert_string_equal(r.hypervisor, "mshv");
    assert_string_equal(r.reason, "mshv assumed");
    iso_probe_result_clear(&r);

    assert_int_equal(iso_probe_assume(&r, "none", "by the configuration (probe.assume)", &err), 0);
    assert_false(r.usable);
    assert_null(r.hypervisor);
    assert_string_equal(r.found, "none");
    assert_string_equal(r.reason, "no hypervisor assumed by the configuration (probe.assume)");
    iso_probe_result_clear(&r);

    r = (iso_probe_result){.reason = (char *)0x1};
    assert_int_equal(iso_probe_assume(&r, "xen", NULL, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_string_equal(err.message, "host probe: \"xen\" is not kvm, mshv or none");
    assert_ptr_equal(r.reason, (char *)0x1);
    moat_error_clear(&err);
}

static void test_clear_and_names(void **state)
{
    iso_probe_result_clear(NULL);
    iso_probe_result r = {0};
    iso_probe_result_clear(&r);
    iso_probe_result_clear(&r);
    assert_string_equal(iso_probe_step_name(ISO_STEP_CPU_FLAGS), "cpu-flags");
    assert_string_equal(iso_probe_step_name(ISO_STEP_MSHV_OPEN), "mshv-open");
    assert_null(iso_probe_step_name(ISO_STEP__COUNT));
    assert_null(iso_probe_step_name((iso_probe_step_id)-1));
    for (int i = 0; i < ISO_STEP__COUNT; i++)
        assert_non_null(iso_probe_step_name(i));
    assert_string_equal(iso_step_outcome_name(ISO_STEP_NOT_RUN), "not-run");
    assert_string_equal(iso_step_outcome_name(ISO_STEP_INFO), "info");
}

/* ---- the parsers and helpers ------------------------------------------------------------ */

static void test_parse_cpuinfo(void **state)
{
    const char *virt = "unset";
    bool hv = true;
    static const char two[] = "processor\t: 0\nflags\t\t: fpu svm\n\nprocessor\t: 1\nflags : vmx\n";
    assert_int_equal(iso_probe_parse_cpuinfo(&virt, &hv, two, strlen(two)), 0);
    assert_string_equal(virt, "svm"); /* the first CPU's line */
    assert_false(hv);

    /* Words, not substrings: "vmxfoo" and "nosvm" are not virtualization. */
    static const char tricky[] = "flags: vmxfoo nosvm hypervisor2 xhypervisor\n";
    assert_int_equal(iso_probe_parse_cpuinfo(&virt, &hv, tricky, strlen(tricky)), 0);
    assert_null(virt);
    assert_false(hv);

    /* "flagsx" is another key; a line without ':' is not a flags line. */
    virt = "unset";
    static const char none[] = "flagsx : vmx\nflags vmx\n";
    assert_int_equal(iso_probe_parse_cpuinfo(&virt, &hv, none, strlen(none)), -1);
    assert_string_equal(virt, "unset");
    assert_int_equal(iso_probe_parse_cpuinfo(&virt, &hv, "", 0), -1);

    /* The last line without a newline, and the length respected (no NUL needed). */
    static const char cut[] = "flags : hypervisor vmx";
    assert_int_equal(iso_probe_parse_cpuinfo(&virt, &hv, cut, strlen(cut)), 0);
    assert_string_equal(virt, "vmx");
    assert_true(hv);
    assert_int_equal(iso_probe_parse_cpuinfo(&virt, &hv, cut, strlen(cut) - 4), 0);
    assert_null(virt);
}

static void test_helpers(void **state)
{
    char *s = iso_path_join(NULL, "/dev/kvm");
    assert_string_equal(s, "/dev/kvm");
    free(s);
    s = iso_path_join("/", "/dev/kvm");
    assert_string_equal(s, "/dev/kvm");
    free(s);
    s = iso_path_join("/host/", "/dev/kvm");
    assert_string_equal(s, "/host/dev/kvm");
    free(s);
    s = iso_path_join("/host", "dev");
    assert_string_equal(s, "/host/dev");
    free(s);

    tree t;
    tree_make(&t, NULL, NULL, NULL);
    put_file(t.root, "small", "Y\n\n");
    assert_int_equal(iso_read_small(&s, t.root, "/small", 16), 0);
    assert_string_equal(s, "Y");
    free(s);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    put_file(t.root, "big", big);
    s = (char *)0x1;
    assert_int_equal(iso_read_small(&s, t.root, "/big", 100), -EFBIG);
    assert_ptr_equal(s, (char *)0x1);
    assert_int_equal(iso_read_small(&s, t.root, "/big", 1000), 0);
    assert_int_equal(strlen(s), 999);
    free(s);
    assert_int_equal(iso_read_small(&s, t.root, "/missing", 100), -ENOENT);
    rm_rf(t.root);

    char buf[24];
    assert_string_equal(iso_errno_name(EBUSY, buf), "EBUSY");
    assert_string_equal(iso_errno_name(4000, buf), "errno 4000");
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
    iso_probe_paths paths = {.kvm_path = kvm, .mshv_path = mshv};
    if (iso_probe_run(&r, iso_sys_host(), &paths, &err) < 0)
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

    iso_probe_paths paths = {.kvm_path = "/nonexistent/moat/kvm",
                             .mshv_path = "/nonexistent/moat/mshv"};
    iso_probe_ops ops = iso_probe_host_at(&paths);
    iso_probe_result r = {0};
    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(ops.probe(ops.impl, &r, &err), 0);
    assert_false(r.usable);
    assert_string_equal(r.reason, "no /nonexistent/moat/kvm and no /nonexistent/moat/mshv");
    iso_probe_result_clear(&r);
}

/* This host, as moat-cri sees it. On this project's machine that is kvm_pvm: /dev/kvm
 * passes every ioctl and must still be reported not usable. */
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
    print_message("[  NOTE    ] this host: found %s, %s\n", r.found, r.reason);

    struct stat st;
    bool pvm = stat("/sys/module/kvm_pvm", &st) == 0;
    bool has_kvm = access("/dev/kvm", F_OK) == 0, has_mshv = access("/dev/mshv", F_OK) == 0;
    if (pvm && has_kvm && !has_mshv) {
        assert_false(r.usable);
        assert_null(r.hypervisor);
        assert_string_equal(r.kvm_module, "kvm_pvm");
        assert_non_null(strstr(r.reason, "kvm is kvm_pvm"));
        if (r.steps[ISO_STEP_KVM_CREATE_VM].outcome == ISO_STEP_PASS)
            assert_string_equal(r.found, "kvm-pvm");
    } else if (!has_kvm && !has_mshv) {
        assert_false(r.usable);
        assert_string_equal(r.reason, "no /dev/kvm and no /dev/mshv");
    } else if (r.usable) {
        char want[32];
        snprintf(want, sizeof want, "%s usable", r.hypervisor);
        assert_string_equal(r.reason, want);
    }
    iso_probe_result_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vmx_usable),
        cmocka_unit_test(test_svm_nested),
        cmocka_unit_test(test_pvm),
        cmocka_unit_test(test_no_hardware_evidence),
        cmocka_unit_test(test_no_kvm_no_mshv),
        cmocka_unit_test(test_kvm_eacces),
        cmocka_unit_test(test_kvm_wrong_api_version),
        cmocka_unit_test(test_kvm_create_vm_ebusy),
        cmocka_unit_test(test_mshv),
        cmocka_unit_test(test_other_paths),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_assume),
        cmocka_unit_test(test_clear_and_names),
        cmocka_unit_test(test_parse_cpuinfo),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_real_sys),
        cmocka_unit_test(test_real_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
