/* containerd's runtime entries for Moat's concrete handlers, and their merge into a config
 * file that belongs to someone else (the node's /etc/containerd/config.toml).
 *
 * Moat's entries live in one delimited block of whole lines:
 *
 *     # BEGIN moat-managed
 *     # ...do not edit...
 *     [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runsc]
 *     ...
 *     # END moat-managed
 *
 * appended to the file (or replaced where it already is). Nothing outside the block is
 * ever rewritten, so removing the block gives back the original bytes. Before a merged
 * file is used, containerd itself should validate it (`containerd --config F config
 * dump`): this module scans TOML structure (table headers, dotted keys, strings, arrays,
 * inline tables) but is not a TOML parser.
 *
 * Why not containerd's `imports` drop-ins: in containerd 1.x an imported file replaces
 * whole plugin sections rather than merging keys (containerd issue #5837, "config merge via
 * imports overwrites the wrong part of the config": "it actually merges the plugin's
 * configuration by section, not by key-value"; #7982 shows an imported runtimes table
 * replacing `runc`'s). Merging sections arrived only in 2.0 (PR #9982). Checked here with
 * containerd 1.7.35 built from its Go module: a main file with a runc runtime (custom
 * BinaryName) and registry config_path, importing a file with only a runsc runtime, dumps
 * with runsc alone and config_path empty; 2.4.2 keeps all three. One block in the main file
 * works the same way on 1.7 and 2.x (1.7.35 and 2.4.2 both read the merged goldens). */
#ifndef MOAT_ISOLATION_CONTAINERD_H
#define MOAT_ISOLATION_CONTAINERD_H

#include <stddef.h>

#include "libmoat/error.h"

/* containerd config format versions: 2 is containerd 1.x's (1.7 reads it; 2.x converts
 * it), 3 is containerd 2.0-2.2's, 4 containerd 2.3's and later (`containerd config default`
 * of 2.4 writes `version = 4`). Versions 3 and 4 keep the runtimes at the same place
 * (gardener PR #14856: "In v4, the CRI plugin paths are unchanged compared to v3; only
 * server-level fields (grpc, ttrpc, debug, metrics) were moved into plugin blocks"), so
 * their blocks are the same. Version 1 (a file with no `version` line) is refused. */
typedef enum {
    ISO_CONTAINERD_V2 = 2,
    ISO_CONTAINERD_V3 = 3,
    ISO_CONTAINERD_V4 = 4,
} iso_containerd_version;

/* What runs a handler. */
typedef enum {
    ISO_RUNTIME_RUNSC,         /* gVisor, its own network stack */
    ISO_RUNTIME_RUNSC_NONET,   /* gVisor with network = "none" */
    ISO_RUNTIME_RUNSC_NVPROXY, /* gVisor with nvproxy (GPUs in container mode) */
    ISO_RUNTIME_KATA_CLH,      /* Kata on Cloud Hypervisor */
    ISO_RUNTIME_KATA_GPU,      /* Kata on QEMU with NVIDIA GPU passthrough */
} iso_runtime_kind;

/* A handler name in containerd (a DNS label: [a-z0-9-], at most 63) and what runs it.
 * Shim mode uses the concrete names of libmoat/names.h; config mode maps each logical
 * handler straight to a kind, e.g. {"moat-auto", ISO_RUNTIME_RUNSC}. */
typedef struct {
    const char *handler;
    iso_runtime_kind kind;
} iso_runtime_entry;

/* Where things are on the node. Every path is absolute and may not contain '"', '\\' or
 * control characters (they are written into TOML strings unescaped). NULL optional paths
 * leave their setting out. */
typedef struct {
    const char *runsc;            /* the runsc binary (runsc.toml's binary_name) */
    const char *runsc_config_dir; /* runsc.toml files go here, one per handler: <handler>.toml */
    const char *runsc_root;       /* optional: runsc's --root for the shim's sandboxes */
    const char *runsc_log_dir;    /* optional: shim log and runsc debug logs */
    const char *kata_shim;        /* containerd-shim-kata-v2 (runtime_path) */
    const char *kata_clh_config;  /* Kata's configuration-clh.toml */
    const char *kata_gpu_config;  /* Kata's configuration-qemu-nvidia-gpu.toml */
} iso_runtime_paths;

/* The block's marker lines. */
#define ISO_CONTAINERD_BEGIN "# BEGIN moat-managed"
#define ISO_CONTAINERD_END   "# END moat-managed"

/* Config files larger than this are refused (MOAT_E_RANGE). */
#define ISO_CONTAINERD_MAX_CONFIG ((size_t)4 << 20)

/* kata-deploy's layout (/opt/kata, per-runtime directories under
 * share/defaults/kata-containers/runtimes/) and gVisor's release layout
 * (/usr/local/bin/runsc); runsc.toml files in /etc/moat/runsc, no root or logs set. */
void iso_runtime_paths_default(iso_runtime_paths *out);

/* Checks a path for iso_runtime_paths (absolute, no quote, backslash or control
 * character); `what` names it in the error (MOAT_E_INVALID). */
int iso_containerd_path_check(const char *what, const char *path, moat_error *err);

/* Checks a handler name: a DNS label of at most 63 characters (MOAT_E_INVALID). */
int iso_containerd_handler_check(const char *handler, moat_error *err);

/* The config format of a containerd config file: its top-level `version = N` (before the
 * first table). No version line means version 1: refused (MOAT_E_INVALID, saying so), as is
 * any version other than 2, 3 or 4 and text the scanner cannot read (the message names the
 * line). *out is written only on success. */
int iso_containerd_version_detect(iso_containerd_version *out, const char *text, size_t len,
                                  moat_error *err);

/* The block for these handlers in format v, from its BEGIN line to its END line and a final
 * newline; the caller frees *out. Errors: a bad handler name, a handler listed twice, a
 * kind without the paths it needs (MOAT_E_INVALID). */
int iso_containerd_block(char **out, iso_containerd_version v, const iso_runtime_entry *e, size_t n,
                         const iso_runtime_paths *p, moat_error *err);

/* The file with block in it: the existing block replaced in place, else the block appended
 * (after a newline, if the file does not end with one; the BEGIN line then records it, so
 * unmerge takes it away again). Merging the same block again gives the same bytes. The
 * caller frees *out. Refused (MOAT_E_INVALID, naming the line or table):
 *   - a file whose version is not 2, 3 or 4 (see iso_containerd_version_detect), or a block
 *     whose tables are for the other version;
 *   - a file that defines one of the block's handlers outside the block (a table header or
 *     a dotted key under ...containerd.runtimes.<handler>, however quoted), or defines
 *     `runtimes` or a table above it as an inline value, which the block cannot extend;
 *   - key/value lines right after an existing block (they would fall into its last table);
 *   - malformed markers (BEGIN without END, two blocks), NUL bytes, text the scanner
 *     cannot read, a block that is not one from iso_containerd_block's form. */
int iso_containerd_merge(char **out, const char *text, size_t len, const char *block,
                         moat_error *err);

/* The file without Moat's block: the bytes it had before the first merge. A file without a
 * block comes back unchanged. Malformed markers are refused (MOAT_E_INVALID). The caller
 * frees *out. */
int iso_containerd_unmerge(char **out, const char *text, size_t len, moat_error *err);

#endif
