/* The host probe: can this node run a VM sandbox (Kata) at all? moat-cri decides on it; the
 * node agent and moat-probe report it.
 *
 * The probe proves rather than guesses, and keeps every step's outcome so the report says
 * exactly why:
 *   1. CPU flags (<root>/proc/cpuinfo): vmx or svm (hardware virtualization), and the
 *      `hypervisor` bit (this node is itself a VM);
 *   2. the KVM module (<root>/sys/module): kvm_intel, kvm_amd or kvm_pvm, and the vendor
 *      module's `nested` parameter;
 *   3. <root>/dev/kvm opens read-write, KVM_GET_API_VERSION answers 12, KVM_CREATE_VM
 *      succeeds (the VM is closed again at once);
 *   4. only when KVM is not usable: <root>/dev/mshv (Microsoft's hypervisor) opens.
 *
 * Two answers are kept apart: what device answered (`found`) and whether a VM sandbox can
 * run on it (`usable`, `hypervisor`). They differ on a host like PVM (kvm_pvm: KVM on
 * software page tables, no vmx/svm): /dev/kvm passes every ioctl, yet Kata's Cloud
 * Hypervisor and QEMU with their stock guest kernel cannot run there (a PVM host needs a
 * PVM-enabled guest kernel), and gVisor's KVM platform needs VMX/SVM too. KVM counts as
 * usable only with positive evidence of hardware virtualization: vmx/svm in the CPU flags,
 * or (flags unreadable) kvm_intel/kvm_amd loaded, and never with kvm_pvm loaded.
 *
 * The probe's answer is a fact about the node, not an error: "not usable" comes back with
 * a return of 0 and a reason. Only bad arguments and running out of memory fail. */
#ifndef MOAT_ISO_PROBE_H
#define MOAT_ISO_PROBE_H

#include <stdbool.h>
#include <stddef.h>

#include "libmoat/error.h"

#define ISO_PROBE_KVM_PATH  "/dev/kvm"
#define ISO_PROBE_MSHV_PATH "/dev/mshv"

/* What answered, `found`: MOAT_HYPERVISOR_KVM (hardware KVM), ISO_FOUND_KVM_PVM, or
 * MOAT_HYPERVISOR_MSHV, each meaning "its device opened"; ISO_FOUND_NONE otherwise. */
#define ISO_FOUND_KVM_PVM "kvm-pvm"
#define ISO_FOUND_NONE    "none"

/* The probe's steps, in the order they run; each has one entry in iso_probe_result.steps. */
typedef enum {
    ISO_STEP_CPU_FLAGS,     /* vmx/svm and the hypervisor bit in /proc/cpuinfo */
    ISO_STEP_KVM_MODULE,    /* which of kvm_intel, kvm_amd, kvm_pvm is in /sys/module */
    ISO_STEP_KVM_NESTED,    /* the vendor module's nested parameter */
    ISO_STEP_KVM_OPEN,      /* open /dev/kvm read-write */
    ISO_STEP_KVM_API,       /* KVM_GET_API_VERSION == 12 */
    ISO_STEP_KVM_CREATE_VM, /* KVM_CREATE_VM succeeds */
    ISO_STEP_KVM_HARDWARE,  /* the KVM behind /dev/kvm is hardware virtualization */
    ISO_STEP_MSHV_OPEN,     /* open /dev/mshv read-write */
    ISO_STEP__COUNT
} iso_probe_step_id;

typedef enum {
    ISO_STEP_NOT_RUN = 0, /* not reached (an earlier step decided) */
    ISO_STEP_PASS,
    ISO_STEP_FAIL,
    ISO_STEP_INFO, /* a fact that does not decide (nested, the hypervisor bit) */
} iso_step_outcome;

typedef struct {
    iso_step_outcome outcome;
    char *detail; /* owned, NULL when not run: e.g. "vmx", "kvm_pvm", "12", "EBUSY" */
} iso_probe_step;

typedef enum { ISO_TRI_UNKNOWN = -1, ISO_TRI_NO = 0, ISO_TRI_YES = 1 } iso_tri;

typedef struct {
    /* The verdict: a VM sandbox (Kata) can run here. moat-cri's decisions and the node
     * label moat.dev/hypervisor take only this. */
    bool usable;
    char
        *hypervisor; /* owned: MOAT_HYPERVISOR_KVM or MOAT_HYPERVISOR_MSHV when usable, else NULL */
    /* owned, always set: "kvm usable", "mshv usable", or why not, naming the device and the
     * call, e.g. "no /dev/kvm and no /dev/mshv", "EACCES on /dev/kvm and no /dev/mshv",
     * "KVM_GET_API_VERSION returned 11, want 12 and no /dev/mshv",
     * "KVM_CREATE_VM: EBUSY and EACCES on /dev/mshv",
     * "kvm is kvm_pvm (no vmx/svm): Kata needs hardware virtualization and no /dev/mshv". */
    char *reason;

    /* What answered, whatever the verdict (ISO_FOUND_* or MOAT_HYPERVISOR_*); static. */
    const char *found;
    /* The facts the steps read. */
    const char *cpu_virt;   /* static: "vmx", "svm", or NULL (none, or flags unreadable) */
    iso_tri cpu_hypervisor; /* the `hypervisor` CPU flag: this node is a VM */
    const char *kvm_module; /* static: "kvm_intel", "kvm_amd", "kvm_pvm" or NULL */
    iso_tri nested;         /* the vendor module's nested parameter */
    int kvm_api_version;    /* -1 when not asked or failed */
    iso_probe_step steps[ISO_STEP__COUNT];
} iso_probe_result;

/* The step's name in reports: "cpu-flags", "kvm-module", "kvm-nested", "kvm-open",
 * "kvm-api-version", "kvm-create-vm", "kvm-hardware", "mshv-open". Static; NULL when out of
 * range. */
const char *iso_probe_step_name(iso_probe_step_id id);

/* "not-run", "pass", "fail", "info". Static. */
const char *iso_step_outcome_name(iso_step_outcome o);

/* The system calls the probe makes, so tests can answer them. open() opens path read-write
 * and close-on-exec and returns an fd or -errno; ioctl() returns the call's value or -errno;
 * close() closes an fd open() or ioctl() returned. Plain files (cpuinfo, sysfs) are read
 * directly from the root the caller gives, which a test makes in a temporary directory. */
typedef struct iso_sys {
    int (*open)(void *impl, const char *path);
    int (*ioctl)(void *impl, int fd, unsigned long req, unsigned long arg);
    void (*close)(void *impl, int fd);
    void *impl;
} iso_sys;

/* The real system calls. Static; never NULL. */
const iso_sys *iso_sys_host(void);

/* Where the probe looks. root prefixes every path it reads ("/" or NULL: this host; a
 * node agent in a container passes "/host"). kvm_path and mshv_path, when set, replace
 * <root>/dev/kvm and <root>/dev/mshv as given (not prefixed). */
typedef struct {
    const char *root;
    const char *kvm_path, *mshv_path;
} iso_probe_paths;

/* Runs every step on sys under paths (NULL: this host's defaults). Every fd it opens is
 * closed before it returns. Fills *out (the caller clears it) and returns 0; fails only
 * for NULL sys or out (MOAT_E_INVALID) or out of memory (MOAT_E_NOMEM), leaving *out
 * untouched. */
int iso_probe_run(iso_probe_result *out, const iso_sys *sys, const iso_probe_paths *paths,
                  moat_error *err);

/* What moat-cri calls; tests replace it. probe() fills *out (which the caller then clears)
 * and returns 0, or returns < 0 with err set and *out untouched. */
typedef struct iso_probe_ops {
    int (*probe)(void *impl, iso_probe_result *out, moat_error *err);
    void *impl;
} iso_probe_ops;

/* The real probe of this host with the default paths. Static; never NULL. */
const iso_probe_ops *iso_probe_host(void);

/* The real probe with other paths; the returned ops borrow paths, which must outlive
 * their use. */
iso_probe_ops iso_probe_host_at(const iso_probe_paths *paths);

/* An answer taken without probing (moat-cri's probe.assume): kind is MOAT_HYPERVISOR_KVM,
 * MOAT_HYPERVISOR_MSHV or MOAT_HYPERVISOR_NONE; why is appended to the reason, e.g.
 * "kvm assumed by the configuration (probe.assume)". Every step is left not run. Returns
 * 0, or -1 with MOAT_E_INVALID (another kind) or MOAT_E_NOMEM; *out untouched then. */
int iso_probe_assume(iso_probe_result *out, const char *kind, const char *why, moat_error *err);

/* Frees what r owns and zeroes it; accepts NULL and an already cleared result. */
void iso_probe_result_clear(iso_probe_result *r);

/* The parser behind ISO_STEP_CPU_FLAGS, for the fuzzer: reads the first "flags" line of
 * a /proc/cpuinfo text of len bytes (not NUL-terminated) and sets *ret_virt ("vmx", "svm"
 * or NULL) and *ret_hypervisor. Returns 0, or -1 when no flags line is found (nothing
 * written then). */
int iso_probe_parse_cpuinfo(const char **ret_virt, bool *ret_hypervisor, const char *text,
                            size_t len);

/* Reads a file under root into a NUL-terminated string of at most max bytes, without a
 * trailing newline; for the probe's modules (gpu.c, runtimes.c). Returns 0 with *ret
 * (caller frees), or -errno (-EFBIG past max). */
int iso_read_small(char **ret, const char *root, const char *path, size_t max);

/* root joined with path ("/" and NULL root: path itself). NULL when out of memory. */
char *iso_path_join(const char *root, const char *path);

/* A formatted, allocated string; NULL when out of memory (unlike asprintf, whose pointer
 * is undefined then). */
char *iso_strf(const char *fmt, ...) _printf_(1, 2);

/* The errno's symbolic name ("EBUSY"), or "errno N" in buf. */
const char *iso_errno_name(int e, char buf[static 24]);

#endif
