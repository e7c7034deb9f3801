/* Moat's overrides of Kata's VM sizing, as a Kata drop-in file.
 *
 * Kata's runtime reads its base configuration file (kata-deploy's
 * .../runtimes/<shim>/configuration-<shim>.toml) and then every *.toml in the config.d/
 * directory beside it, in alphabetical order, later files overriding earlier settings
 * (kata-containers docs/runtime-configuration.md, "Drop-in Files"). kata-deploy reserves the
 * prefixes 10-, 20-, 30- and 50-; custom settings are to use 50-89. Moat writes 60-moat.toml,
 * so kata-deploy upgrades keep it and Moat's uninstall removes exactly one file. */
#ifndef MOAT_ISOLATION_KATA_H
#define MOAT_ISOLATION_KATA_H

#include "isolation/installer/containerd.h"
#include "libmoat/error.h"

#define ISO_KATA_DROPIN_NAME "60-moat.toml"

/* Kata's own defaults (default_vcpus = 1, default_memory = 2048 MiB in its shipped
 * configurations): the base VM before the containers' limits are hot-plugged. */
#define ISO_KATA_DEFAULT_VCPUS      1
#define ISO_KATA_DEFAULT_MEMORY_MIB 2048

typedef struct {
    unsigned vcpus;      /* default_vcpus: 1..256 */
    unsigned memory_mib; /* default_memory in MiB: 256..1048576 */
} iso_kata_sizing;

/* The drop-in for a Kata kind: [hypervisor.clh] (ISO_RUNTIME_KATA_CLH) or
 * [hypervisor.qemu] (ISO_RUNTIME_KATA_GPU) with default_vcpus and default_memory. The
 * caller frees *out. Errors (MOAT_E_INVALID/MOAT_E_RANGE): a gVisor kind, sizes out of
 * range. */
int iso_kata_dropin(char **out, iso_runtime_kind kind, const iso_kata_sizing *s, moat_error *err);

/* Where that drop-in goes: <dir of the kind's Kata config in p>/config.d/60-moat.toml. The
 * caller frees *out. */
int iso_kata_dropin_path(char **out, iso_runtime_kind kind, const iso_runtime_paths *p,
                         moat_error *err);

#endif
