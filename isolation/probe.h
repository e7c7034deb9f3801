/* The host probe: can this node run a VM sandbox (Kata) at all? (The core moat-cri uses;
 * the isolation issue extends it.)
 *
 * A hypervisor is usable when /dev/kvm opens read-write, answers KVM_GET_API_VERSION with
 * KVM_API_VERSION (12), and lets us create a VM (closed again at once); or, failing that,
 * when /dev/mshv (Azure's Microsoft Hypervisor) opens. The device node existing is not
 * enough: a container without the device cgroup rule, a host with KVM taken by another
 * hypervisor (EBUSY) or a nested VM without VMX all have the node and still cannot run Kata.
 *
 * The probe's answer is a fact about the node, not an error: "not usable" comes back with
 * a return of 0 and a reason. Only running out of memory fails. */
#ifndef MOAT_ISO_PROBE_H
#define MOAT_ISO_PROBE_H

#include <stdbool.h>

#include "libmoat/error.h"

#define ISO_PROBE_KVM_PATH  "/dev/kvm"
#define ISO_PROBE_MSHV_PATH "/dev/mshv"

typedef struct {
    bool usable;
    char *hypervisor; /* owned: MOAT_HYPERVISOR_KVM, MOAT_HYPERVISOR_MSHV, or NULL */
    /* owned, always set: "kvm usable", "mshv usable", or why not, naming the device and the
     * call, e.g. "no /dev/kvm and no /dev/mshv", "EACCES on /dev/kvm and no /dev/mshv",
     * "KVM_GET_API_VERSION returned 11, want 12 and no /dev/mshv",
     * "KVM_CREATE_VM: EBUSY and EACCES on /dev/mshv". */
    char *reason;
} iso_probe_result;

/* What moat-cri calls; tests replace it. probe() fills *out (which the caller then clears)
 * and returns 0, or returns < 0 with err set and *out untouched. */
typedef struct iso_probe_ops {
    int (*probe)(void *impl, iso_probe_result *out, moat_error *err);
    void *impl;
} iso_probe_ops;

/* The device paths the real probe opens. */
typedef struct {
    const char *kvm_path, *mshv_path;
} iso_probe_paths;

/* The real probe of this host, on ISO_PROBE_KVM_PATH and ISO_PROBE_MSHV_PATH. Static;
 * never NULL. */
const iso_probe_ops *iso_probe_host(void);

/* The real probe on other device paths (moat-cri's probe.kvm and probe.mshv settings).
 * The returned ops borrow paths, which must outlive their use. */
iso_probe_ops iso_probe_host_at(const iso_probe_paths *paths);

/* Frees what r owns and zeroes it; accepts NULL and an already cleared result. */
void iso_probe_result_clear(iso_probe_result *r);

/* The system calls the probe makes, so tests can answer them. open() opens path read-write
 * and close-on-exec and returns an fd or -errno; ioctl() returns the call's value or -errno;
 * close() closes an fd open() or ioctl() returned. */
typedef struct iso_sys {
    int (*open)(void *impl, const char *path);
    int (*ioctl)(void *impl, int fd, unsigned long req, unsigned long arg);
    void (*close)(void *impl, int fd);
    void *impl;
} iso_sys;

/* The real system calls. Static; never NULL. */
const iso_sys *iso_sys_host(void);

/* The probe's steps on sys: kvm_path first, then mshv_path when KVM is not usable. Every fd
 * it opens is closed before it returns. Fills *out and returns 0; fails only for NULL
 * arguments (MOAT_E_INVALID) or out of memory (MOAT_E_NOMEM), leaving *out untouched. */
int iso_probe_with(const iso_sys *sys, const char *kvm_path, const char *mshv_path,
                   iso_probe_result *out, moat_error *err);

#endif
