/* The whole host report: the hypervisor probe, libvirt's second opinion, the GPUs and the
 * installed runtimes, collected in one call, printed by moat-probe and published by the
 * node agent as Node labels.
 *
 * The contract for a publisher (the node agent):
 *   - moat.dev/hypervisor = iso_report_hypervisor_label(): "kvm", "mshv" or "none", and it
 *     means *usable for a VM sandbox*; what device answered (e.g. "kvm-pvm", which is not
 *     usable) is report.hypervisor.found, a separate fact;
 *   - moat.dev/gpu-mode = iso_report_gpu_mode(): "container", "vm-passthrough" or "none";
 *     report.gpu.count, .product, .driver_version go with it;
 *   - moat.dev/runtime.gvisor / moat.dev/runtime.kata = "true" when
 *     report.runtimes.gvisor.available / report.runtimes.kata.available;
 *   - every step and every reason is in iso_report_to_json(), whose keys are stable:
 *       {"hypervisor": {"usable", "kind", "found", "reason", "cpu": {"virtualization",
 *          "hypervisor_bit"}, "kvm_module", "nested", "kvm_api_version",
 *          "steps": [{"step", "outcome", "detail"}]},
 *        "libvirt": {"running", "status", "kvm", "kvm_message", "qemu", "qemu_message",
 *          "agrees", "verdict"},
 *        "gpu": {"mode", "reason", "count", "product", "driver_version", "dev_nodes",
 *          "devices": [{"address", "device", "driver", "product"}]},
 *        "runtimes": {"gvisor": {"available", "reason", "version", "platforms", "platform",
 *            "runsc": BINARY, "shim": BINARY},
 *          "kata": {"installed", "available", "reason", "version", "shim": BINARY,
 *            "configs": {"clh"|"qemu"|"qemu-nvidia-gpu": {"path", "present"}}}}}
 *     with BINARY = {"path", "found", "version", "detail"}; unknown values are null. */
#ifndef MOAT_ISO_REPORT_H
#define MOAT_ISO_REPORT_H

#include <jansson.h>
#include <stdbool.h>

#include "isolation/probe/gpu.h"
#include "isolation/probe/libvirt.h"
#include "isolation/probe/probe.h"
#include "isolation/probe/runtimes.h"
#include "libmoat/error.h"

typedef struct {
    iso_probe_result hypervisor;
    iso_libvirt_result libvirt;
    iso_gpu_result gpu;
    iso_runtimes_result runtimes;
} iso_report;

/* Where to look and what to skip; a zeroed struct means this host's defaults. */
typedef struct {
    iso_probe_paths probe;      /* the root prefix and device paths (GPUs use probe.root) */
    iso_runtime_paths runtimes; /* where each runtime is installed */
    const char *libvirt_uri;    /* NULL: ISO_LIBVIRT_URI */
    bool no_libvirt;            /* do not ask libvirt (the report says so) */
} iso_report_config;

/* The backends; NULL fields take the real ones. */
typedef struct {
    const iso_sys *sys;
    const iso_libvirt_ops *libvirt;
    const iso_exec_ops *exec;
} iso_report_backends;

/* Runs every probe. Fills *out (the caller iso_report_clear()s it) and returns 0 whatever
 * the host has; fails only for a NULL out (MOAT_E_INVALID) or out of memory (MOAT_E_NOMEM),
 * *out untouched then. cfg and b may be NULL. */
int iso_report_collect(iso_report *out, const iso_report_config *cfg, const iso_report_backends *b,
                       moat_error *err);

/* Frees what r owns and zeroes it; accepts NULL. */
void iso_report_clear(iso_report *r);

/* The report as JSON (the layout above); a new reference, or NULL when out of memory. */
json_t *iso_report_to_json(const iso_report *r);

/* The report for people, several lines ending in a newline; caller frees; NULL when out
 * of memory. */
char *iso_report_to_text(const iso_report *r);

/* The value of moat.dev/hypervisor: MOAT_HYPERVISOR_KVM or _MSHV when usable, else
 * MOAT_HYPERVISOR_NONE. Static. */
const char *iso_report_hypervisor_label(const iso_report *r);

/* The value of moat.dev/gpu-mode (MOAT_GPU_MODE_*). Static. */
const char *iso_report_gpu_mode(const iso_report *r);

#endif
