/* The host probe: can this node run a VM sandbox (Kata) at all?
 *
 * A hypervisor is usable when /dev/kvm opens read-write, answers KVM_GET_API_VERSION with
 * KVM_API_VERSION (12), and lets us create a VM (closed again at once); or, failing that,
 * when /dev/mshv (Azure's Microsoft Hypervisor) opens. The device node existing is not
 * enough: a container without the device cgroup rule, a host with KVM taken by another
 * hypervisor (EBUSY) or a nested VM without VMX all have the node and still cannot run Kata.
 *
 * The probe's answer is a fact about the node, not an error: "not usable" comes back with
 * a return of 0 and a reason. Only running out of memory fails. */
#ifndef MOAT_SHIM_PROBE_H
#define MOAT_SHIM_PROBE_H

#include <stdbool.h>

#include "libmoat/error.h"

#define SHIM_PROBE_KVM_PATH  "/dev/kvm"
#define SHIM_PROBE_MSHV_PATH "/dev/mshv"

typedef struct {
    bool usable;
    char *hypervisor; /* owned: MOAT_HYPERVISOR_KVM, MOAT_HYPERVISOR_MSHV, or NULL */
    /* owned, always set: "kvm usable", "mshv usable", or why not, naming the device and the
     * call, e.g. "no /dev/kvm and no /dev/mshv", "EACCES on /dev/kvm and no /dev/mshv",
     * "KVM_GET_API_VERSION returned 11, want 12 and no /dev/mshv",
     * "KVM_CREATE_VM: EBUSY and EACCES on /dev/mshv". */
    char *reason;
} shim_probe_result;

/* What moat-cri calls; tests replace it. probe() fills *out (which the caller then clears)
 * and returns 0, or returns < 0 with err set and *out untouched. */
typedef struct shim_probe_ops {
    int (*probe)(void *impl, shim_probe_result *out, moat_error *err);
    void *impl;
} shim_probe_ops;

/* The device paths the real probe opens. */
typedef struct {
    const char *kvm_path, *mshv_path;
} shim_probe_paths;

/* The real probe of this host, on SHIM_PROBE_KVM_PATH and SHIM_PROBE_MSHV_PATH. Static;
 * never NULL. */
const shim_probe_ops *shim_probe_host(void);

/* The real probe on other device paths (moat-cri's probe.kvm and probe.mshv settings).
 * The returned ops borrow paths, which must outlive their use. */
shim_probe_ops shim_probe_host_at(const shim_probe_paths *paths);

/* Frees what r owns and zeroes it; accepts NULL and an already cleared result. */
void shim_probe_result_clear(shim_probe_result *r);

/* The system calls the probe makes, so tests can answer them. open() opens path read-write
 * and close-on-exec and returns an fd or -errno; ioctl() returns the call's value or -errno;
 * close() closes an fd open() or ioctl() returned. */
typedef struct shim_sys {
    int (*open)(void *impl, const char *path);
    int (*ioctl)(void *impl, int fd, unsigned long req, unsigned long arg);
    void (*close)(void *impl, int fd);
    void *impl;
} shim_sys;

/* The real system calls. Static; never NULL. */
const shim_sys *shim_sys_host(void);

/* The probe's steps on sys: kvm_path first, then mshv_path when KVM is not usable. Every fd
 * it opens is closed before it returns. Fills *out and returns 0; fails only for NULL
 * arguments (MOAT_E_INVALID) or out of memory (MOAT_E_NOMEM), leaving *out untouched. */
int shim_probe_with(const shim_sys *sys, const char *kvm_path, const char *mshv_path,
                    shim_probe_result *out, moat_error *err);

#endif
