#include "isolation/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "libmoat/names.h"

/* ---- the real system calls -------------------------------------------------------------- */

static int host_open(_unused_ void *impl, const char *path)
{
    int fd;
    do
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

static int host_ioctl(_unused_ void *impl, int fd, unsigned long req, unsigned long arg)
{
    int r;
    do
        r = ioctl(fd, req, arg);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static void host_close(_unused_ void *impl, int fd)
{
    close(fd);
}

static const iso_sys host_sys = {
    .open = host_open,
    .ioctl = host_ioctl,
    .close = host_close,
};

const iso_sys *iso_sys_host(void)
{
    return &host_sys;
}

/* ---- the probe -------------------------------------------------------------------------- */

/* The errno's symbolic name, which is what a reader searches the kernel's documentation
 * for: "EBUSY" says "another hypervisor holds VMX", "Device or resource busy" does not. */
static const char *errno_name(int e, char buf[static 24])
{
    static const struct {
        int e;
        const char *name;
    } names[] = {
        {EPERM, "EPERM"},     {ENOENT, "ENOENT"},         {EINTR, "EINTR"},   {EIO, "EIO"},
        {ENXIO, "ENXIO"},     {EBADF, "EBADF"},           {EAGAIN, "EAGAIN"}, {ENOMEM, "ENOMEM"},
        {EACCES, "EACCES"},   {EFAULT, "EFAULT"},         {EBUSY, "EBUSY"},   {ENODEV, "ENODEV"},
        {ENOTDIR, "ENOTDIR"}, {EISDIR, "EISDIR"},         {EINVAL, "EINVAL"}, {ENFILE, "ENFILE"},
        {EMFILE, "EMFILE"},   {ENOTTY, "ENOTTY"},         {EROFS, "EROFS"},   {ENOSYS, "ENOSYS"},
        {ELOOP, "ELOOP"},     {EOPNOTSUPP, "EOPNOTSUPP"},
    };
    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        if (names[i].e == e)
            return names[i].name;
    snprintf(buf, 24, "errno %d", e);
    return buf;
}

/* Why a device did not open: "no <path>" or "<ERRNO> on <path>". */
static char *open_failure(int e, const char *path)
{
    char buf[24];
    char *s = NULL;
    int r = e == ENOENT ? asprintf(&s, "no %s", path)
                        : asprintf(&s, "%s on %s", errno_name(e, buf), path);
    return r < 0 ? NULL : s;
}

/* Tries KVM: true when it is usable; else false, with why in *ret_reason (NULL there means
 * out of memory). Every fd opened is closed again. */
static bool probe_kvm(char **ret_reason, const iso_sys *sys, const char *path)
{
    char buf[24];
    char *s = NULL;
    int r = 0;

    int fd = sys->open(sys->impl, path);
    if (fd < 0) {
        *ret_reason = open_failure(-fd, path);
        return false;
    }

    int version = sys->ioctl(sys->impl, fd, KVM_GET_API_VERSION, 0);
    if (version < 0)
        r = asprintf(&s, "KVM_GET_API_VERSION: %s", errno_name(-version, buf));
    else if (version != KVM_API_VERSION)
        r = asprintf(&s, "KVM_GET_API_VERSION returned %d, want %d", version, KVM_API_VERSION);
    else {
        /* Type 0: the architecture's default VM. Creating one is what fails when another
         * hypervisor (VirtualBox, a nested host's) holds the CPU's virtualization. */
        int vm = sys->ioctl(sys->impl, fd, KVM_CREATE_VM, 0);
        if (vm < 0)
            r = asprintf(&s, "KVM_CREATE_VM: %s", errno_name(-vm, buf));
        else
            sys->close(sys->impl, vm);
    }
    sys->close(sys->impl, fd);

    *ret_reason = r < 0 ? NULL : s;
    return r >= 0 && !s;
}

int iso_probe_with(const iso_sys *sys, const char *kvm_path, const char *mshv_path,
                   iso_probe_result *out, moat_error *err)
{
    if (!sys || !kvm_path || !mshv_path || !out)
        return moat_error_set(err, MOAT_E_INVALID, "host probe: no system calls or device path");

    _cleanup_free_ char *kvm_reason = NULL;
    const char *hypervisor = NULL;
    _cleanup_free_ char *reason = NULL;

    if (probe_kvm(&kvm_reason, sys, kvm_path)) {
        hypervisor = MOAT_HYPERVISOR_KVM;
        reason = strdup(MOAT_HYPERVISOR_KVM " usable");
    } else if (!kvm_reason) {
        return moat_error_set(err, MOAT_E_NOMEM, "host probe: out of memory");
    } else {
        /* Kata on Azure's Microsoft Hypervisor needs only the device: Cloud Hypervisor asks
         * it for everything else. */
        int fd = sys->open(sys->impl, mshv_path);
        if (fd >= 0) {
            sys->close(sys->impl, fd);
            hypervisor = MOAT_HYPERVISOR_MSHV;
            reason = strdup(MOAT_HYPERVISOR_MSHV " usable");
        } else {
            _cleanup_free_ char *mshv_reason = open_failure(-fd, mshv_path);
            if (!mshv_reason || asprintf(&reason, "%s and %s", kvm_reason, mshv_reason) < 0)
                reason = NULL;
        }
    }
    if (!reason)
        return moat_error_set(err, MOAT_E_NOMEM, "host probe: out of memory");

    char *hv = NULL;
    if (hypervisor && !(hv = strdup(hypervisor)))
        return moat_error_set(err, MOAT_E_NOMEM, "host probe: out of memory");
    *out = (iso_probe_result){
        .usable = hypervisor != NULL,
        .hypervisor = hv,
        .reason = TAKE_PTR(reason),
    };
    return 0;
}

/* ---- the real probe --------------------------------------------------------------------- */

static int host_probe(void *impl, iso_probe_result *out, moat_error *err)
{
    const iso_probe_paths *paths = impl;
    return iso_probe_with(&host_sys, paths->kvm_path, paths->mshv_path, out, err);
}

static const iso_probe_paths default_paths = {
    .kvm_path = ISO_PROBE_KVM_PATH,
    .mshv_path = ISO_PROBE_MSHV_PATH,
};

static const iso_probe_ops host_ops = {
    .probe = host_probe,
    .impl = (void *)&default_paths,
};

const iso_probe_ops *iso_probe_host(void)
{
    return &host_ops;
}

iso_probe_ops iso_probe_host_at(const iso_probe_paths *paths)
{
    return (iso_probe_ops){.probe = host_probe, .impl = (void *)paths};
}

void iso_probe_result_clear(iso_probe_result *r)
{
    if (!r)
        return;
    free(r->hypervisor);
    free(r->reason);
    *r = (iso_probe_result){0};
}
