/* gVisor's containerd shim configuration (containerd-shim-runsc-v1 reads the file that the
 * runtime's options.ConfigPath names): one runsc.toml per handler.
 *
 * Format (gvisor.dev/docs/user_guide/containerd/configuration): top-level keys are options
 * of the shim itself (binary_name, root, log_path); every key of [runsc_config] becomes a
 * runsc flag, `flag = "value"` -> `--flag=value`. */
#ifndef MOAT_ISOLATION_GVISOR_RUNSC_H
#define MOAT_ISOLATION_GVISOR_RUNSC_H

#include <stdbool.h>

#include "isolation/installer/containerd.h"
#include "libmoat/error.h"

/* gVisor platforms Moat writes: systrap needs no hypervisor; kvm where the probe proved
 * /dev/kvm usable (gVisor's KVM platform runs the sandbox kernel in guest ring 0). */
#define ISO_RUNSC_PLATFORM_SYSTRAP "systrap"
#define ISO_RUNSC_PLATFORM_KVM     "kvm"

/* The platform for a node: "kvm" when its hypervisor is usable, else "systrap". */
const char *iso_runsc_platform(bool hypervisor_usable);

/* The runsc.toml for a gVisor kind: binary_name, root and log_path (when p sets them), and
 * [runsc_config] with platform, plus network = "none" (ISO_RUNTIME_RUNSC_NONET) or
 * nvproxy = "true" (ISO_RUNTIME_RUNSC_NVPROXY), and debug-log when p sets a log dir. The
 * caller frees *out. Errors (MOAT_E_INVALID): a Kata kind, a platform other than systrap,
 * kvm or ptrace, a missing or unsafe path. */
int iso_runsc_toml(char **out, iso_runtime_kind kind, const char *platform,
                   const iso_runtime_paths *p, moat_error *err);

/* Where the runsc.toml of a handler goes: <p->runsc_config_dir>/<handler>.toml. The same
 * path goes into the containerd block's ConfigPath. The caller frees *out. */
int iso_runsc_toml_path(char **out, const iso_runtime_paths *p, const char *handler,
                        moat_error *err);

#endif
