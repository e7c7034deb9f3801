/* The runtimes part of the host probe: which sandbox runtimes are installed, at paths the
 * caller chooses, and which of them can run pods on this node.
 *
 * gVisor is available when `runsc` runs (`runsc --version`, under a time limit) and
 * `containerd-shim-runsc-v1` is there; its platforms are systrap and ptrace always, kvm
 * only where the host probe found hardware KVM usable (gVisor's KVM platform needs
 * VMX/SVM: not on kvm_pvm). Kata is installed when `containerd-shim-kata-v2` runs, and
 * available when, in addition, its Cloud Hypervisor configuration is there and the host
 * probe found a usable hypervisor. */
#ifndef MOAT_ISO_RUNTIMES_H
#define MOAT_ISO_RUNTIMES_H

#include <stdbool.h>
#include <stddef.h>

#include "isolation/probe/probe.h"
#include "libmoat/error.h"

#define ISO_RUNSC_PATH      "/usr/local/bin/runsc"
#define ISO_RUNSC_SHIM_PATH "/usr/local/bin/containerd-shim-runsc-v1"
#define ISO_KATA_SHIM_PATH  "/opt/kata/bin/containerd-shim-kata-v2"
#define ISO_KATA_CONFIG_DIR "/opt/kata/share/defaults/kata-containers"
#define ISO_EXEC_TIMEOUT_MS 5000
#define ISO_EXEC_OUTPUT_MAX (64u << 10)

/* How programs are run; tests answer instead. run() starts argv[0] (an absolute path) with
 * argv, stdin from /dev/null, stdout and stderr captured together, and kills it after
 * timeout_ms. Returns 0 with *ret_out (owned by the caller, at most ISO_EXEC_OUTPUT_MAX
 * bytes, NUL-terminated) and *ret_status (its exit code, or 128 + the signal that ended it),
 * or < 0 with err set: MOAT_E_IO (it could not start; errno_value says why),
 * MOAT_E_CANCELED (timed out; killed and reaped), MOAT_E_NOMEM (out of memory, or more
 * output than the cap). */
typedef struct iso_exec_ops {
    int (*run)(void *impl, char **ret_out, int *ret_status, char *const argv[], int timeout_ms,
               moat_error *err);
    void *impl;
} iso_exec_ops;

/* posix_spawn with a pipe and poll; safe in threaded programs. Static; never NULL. */
const iso_exec_ops *iso_exec_host(void);

/* Where each runtime's files are; NULL fields take the ISO_* defaults above, timeout_ms 0
 * ISO_EXEC_TIMEOUT_MS. */
typedef struct {
    const char *runsc, *runsc_shim, *kata_shim, *kata_config_dir;
    int timeout_ms;
} iso_runtime_paths;

typedef struct {
    char *path;    /* owned */
    bool found;    /* there and executable (and, for those asked, answered --version) */
    char *version; /* owned: "release-20260905.0", "3.2.0"; NULL when not asked or unknown */
    char *detail;  /* owned: "ok", or why not: "no <path>", "<path>: not executable",
                    * "<path> --version: timed out after 5000 ms", "... exited 1: <output>" */
} iso_binary;

typedef enum {
    ISO_KATA_CONFIG_CLH,
    ISO_KATA_CONFIG_QEMU,
    ISO_KATA_CONFIG_QEMU_NVIDIA_GPU,
    ISO_KATA_CONFIG__COUNT
} iso_kata_config_id;

typedef struct {
    const char *name; /* static: "clh", "qemu", "qemu-nvidia-gpu" */
    char *path;       /* owned: <dir>/configuration-<name>.toml */
    bool present;
} iso_kata_config;

typedef struct {
    bool available; /* runsc and its shim are there: gVisor pods can run */
    char *reason;   /* owned, always set: "runsc release-... and its shim", or why not */
    iso_binary runsc, shim;
    const char *platforms[3]; /* static: "systrap", "ptrace", then "kvm" when usable */
    size_t n_platforms;
    const char *platform; /* static: the one to configure: "kvm" when usable, else "systrap" */
} iso_gvisor_result;

typedef struct {
    bool installed; /* the shim runs */
    bool available; /* installed, the clh configuration present, and a usable hypervisor */
    char *reason;   /* owned, always set */
    iso_binary shim;
    iso_kata_config configs[ISO_KATA_CONFIG__COUNT];
} iso_kata_result;

typedef struct {
    iso_gvisor_result gvisor;
    iso_kata_result kata;
} iso_runtimes_result;

/* Probes the runtimes at paths (NULL: the defaults) with exec (NULL: iso_exec_host());
 * hv is the host probe's answer (NULL: no usable hypervisor). Fills *out (the caller
 * clears it) and returns 0, whatever it finds; fails only for a NULL out (MOAT_E_INVALID)
 * or out of memory (MOAT_E_NOMEM), *out untouched then. */
int iso_runtimes_probe(iso_runtimes_result *out, const iso_runtime_paths *paths,
                       const iso_exec_ops *exec, const iso_probe_result *hv, moat_error *err);

/* Frees what r owns and zeroes it; accepts NULL. */
void iso_runtimes_result_clear(iso_runtimes_result *r);

/* The version in `runsc --version` output ("runsc version release-20260905.0\nspec: ...":
 * "release-20260905.0"), or in Kata's shim's ("... version: 3.2.0, commit: ...": "3.2.0").
 * text is len bytes, not NUL-terminated. An allocated copy, or NULL when none (or out of
 * memory). */
char *iso_runtimes_parse_runsc_version(const char *text, size_t len);
char *iso_runtimes_parse_kata_version(const char *text, size_t len);

#endif
