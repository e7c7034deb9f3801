/* The node installer (moat-install, run by a DaemonSet with the host's root mounted).
 *
 * Two modes:
 *   shim    installs gVisor and moat-cri (a self-contained bundle from isolation/bundle.sh),
 *           gives containerd the concrete handlers (runsc, runsc-nonet; kata-clh where a
 *           hypervisor is usable), writes moat-cri's config, runs moat-cri as a host service
 *           and, only once moat-cri answers a CRI Version with containerd's answer, points
 *           kubelet's runtime endpoint at moat-cri's socket and restarts kubelet. If kubelet
 *           does not come back healthy, kubelet's files get their bytes back, kubelet is
 *           restarted again and moat-cri is stopped and removed.
 *   config  for node pools whose kubelet cannot be reconfigured: containerd gets the logical
 *           handlers directly (moat-auto and moat-gvisor run gVisor; moat-vm runs kata-clh,
 *           and only where a hypervisor is usable). No moat-cri.
 *
 * Every host path in the options is the path as the host sees it (it goes into config
 * files); the installer reaches it as <host_root><path>. A file is written only when its
 * bytes differ, a service restarted only when something it reads changed: a second run
 * changes nothing and restarts nothing. The first time the installer changes a file that
 * existed, it keeps the original bytes under <host_root><state_dir>/backup/, and records
 * every path it wrote in <state_dir>/manifest; uninstall puts back those bytes (containerd's
 * config: Moat's block taken out again when someone changed the file since), removes what
 * it created and stops and removes moat-cri. */
#ifndef MOAT_ISO_INSTALL_H
#define MOAT_ISO_INSTALL_H

#include <stdbool.h>
#include <stddef.h>

#include "isolation/installer/containerd.h"
#include "isolation/installer/service.h"
#include "libmoat/error.h"

typedef enum { ISO_INSTALL_SHIM, ISO_INSTALL_CONFIG } iso_install_mode;

typedef struct {
    iso_install_mode mode;
    const char *host_root; /* the host's / as the installer sees it; "/host" */
    /* installer side: the image's bundle (bin/ and lib/ from bundle.sh: moat-cri, runsc,
     * containerd-shim-runsc-v1) */
    const char *bundle_dir;
    const char *prefix;    /* host: where the bundle goes; "/opt/moat" (bundle.sh's prefix) */
    const char *bin_dir;   /* host: runsc and containerd-shim-runsc-v1 go here, where containerd
                            * finds the shim (its PATH); "/usr/local/bin" */
    const char *state_dir; /* host: "/var/lib/moat" */
    const char *containerd_config;           /* host: "/etc/containerd/config.toml" */
    const char *containerd_socket;           /* host: "/run/containerd/containerd.sock" */
    const char *containerd_service;          /* "containerd" */
    const char *runsc_config_dir;            /* host: "/etc/moat/runsc" */
    const char *runsc_root;                  /* host, optional (NULL: runsc's default) */
    const char *kata_shim, *kata_clh_config; /* host: kata-deploy's; NULL: its defaults */
    /* shim mode */
    const char *cri_config;       /* host: "/etc/moat/cri.yaml" */
    const char *cri_socket;       /* host: "/run/moat/cri.sock" */
    const char *cri_metrics;      /* "127.0.0.1:9466" */
    const char *cri_service;      /* "moat-cri" */
    int cri_timeout_ms;           /* how long moat-cri has to answer Version; 30000 */
    const char *cri_probe_assume; /* moat-cri's probe.assume (kvm, mshv, none); NULL: probe */
    const char *cri_wall_table;   /* moat-cri's egressWall.table (cri-shim/wall.h); "moat" */
    /* moat-cri's egressWall.clusterCIDRs: comma-separated CIDRs (the cluster's pod and
     * service ranges), checked by moat-cri; NULL or "" for none. */
    const char *cri_cluster_cidrs;
    /* This node pool's GPU mode (MOAT_GPU_MODE_*: "container", "vm-passthrough", "none");
     * NULL is none. It adds the GPU handlers below and is moat-cri's gpuMode. */
    const char *gpu_mode;
    const char
        *kubelet_config;       /* host: KubeletConfiguration file; "/var/lib/kubelet/config.yaml" */
    const char *kubelet_flags; /* host, optional: a flags/env file that may hold
                                * --container-runtime-endpoint (kubeadm-flags.env) */
    const char *kubelet_service; /* "kubelet" */
    const char *kubelet_healthz; /* "http://127.0.0.1:10248/healthz" */
    int kubelet_timeout_ms;      /* to come back healthy; 60000 */
    int kubelet_settle_ms;       /* and stay healthy that long; 5000 */
} iso_install_options;

/* Sets every field to its default (above); host_root "/host", bundle_dir "/opt/moat-image". */
void iso_install_options_default(iso_install_options *o);

/* What the installer asks the node: tests answer. */
typedef struct iso_install_checks {
    /* The hypervisor the host probe found: *ret_hypervisor MOAT_HYPERVISOR_KVM or _MSHV
     * (static), or NULL for none. */
    int (*hypervisor)(void *impl, const char **ret_hypervisor, moat_error *err);
    /* A CRI Version on the unix socket at path (as the installer reaches it), retried until
     * timeout_ms; on success *ret_runtime is "<runtime_name> <runtime_version>" (caller
     * frees). */
    int (*cri_version)(void *impl, const char *path, int timeout_ms, char **ret_runtime,
                       moat_error *err);
    /* 0 once url answers 200 and keeps answering for settle_ms, within timeout_ms; else < 0
     * with the last failure in err. */
    int (*healthy)(void *impl, const char *url, int timeout_ms, int settle_ms, moat_error *err);
    /* Deletes moat-cri's egress wall table (cri-shim/wall.h) from the node's nftables; no
     * such table is 0. */
    int (*remove_wall)(void *impl, const char *table, moat_error *err);
    void *impl;
} iso_install_checks;

/* The real checks: the host probe (iso_probe_run under host_root) unless assume is set: "kvm",
 * "mshv" or "none" take that answer without probing), CRI Version over HTTP/2 with libcurl (gRPC
 * framing, no gRPC library), healthz with libcurl, the wall with libnftables (the installer
 * runs in the node's network namespace). assume and host_root are borrowed. */
typedef struct {
    const char *assume_hypervisor;
    const char *host_root;
} iso_install_real;
iso_install_checks iso_install_checks_real(iso_install_real *r);

/* What a run did, one line each ("wrote /etc/moat/cri.yaml", "restarted containerd"), in
 * order; kept also when the run fails (what was done before, and the rollback). */
typedef struct {
    char **lines;
    size_t n;
    size_t restarts; /* services started, restarted or stopped */
} iso_install_report;

/* Frees the lines and zeroes r; accepts NULL. */
void iso_install_report_clear(iso_install_report *r);

/* The containerd handlers for a mode. Shim mode, the concrete names: runsc, runsc-nonet,
 * kata-clh when hypervisor is set, runsc-nvproxy for GPU mode container, and
 * kata-qemu-nvidia-gpu for GPU mode vm-passthrough with a hypervisor. Config mode, the
 * logical ones (one runtime each, so a GPU pool's gVisor is always nvproxy's): moat-auto
 * and moat-gvisor to gVisor (with nvproxy in GPU mode container), moat-vm only when
 * hypervisor is set, to Kata's GPU runtime in GPU mode vm-passthrough and to kata-clh
 * otherwise. gpu_mode NULL is none. Fills out and returns how many. Handler names are
 * static. */
#define ISO_INSTALL_MAX_ENTRIES 5
size_t iso_install_entries(iso_runtime_entry out[ISO_INSTALL_MAX_ENTRIES], iso_install_mode mode,
                           const char *hypervisor, const char *gpu_mode);

/* Installs (or brings up to date) as described above, appending to rep what it did. Errors
 * name the step; a failed kubelet restart returns MOAT_E_IO after the rollback. */
int iso_install_run(iso_install_report *rep, const iso_install_options *o,
                    const iso_service_ops *svc, const iso_install_checks *chk, moat_error *err);

/* Undoes every install: kubelet's files and containerd's config back, containerd restarted
 * (and answering Version) when its config changed, then kubelet when its files did, moat-cri
 * stopped and removed with its egress wall (no pod runs through it any more; an address the
 * wall kept would hold a later pod off private addresses), every file the installer created
 * removed, the state directory removed; kubelet's health checked last (an error if it is not
 * healthy, with everything else done). Running it again changes nothing. */
int iso_install_uninstall(iso_install_report *rep, const iso_install_options *o,
                          const iso_service_ops *svc, const iso_install_checks *chk,
                          moat_error *err);

/* KubeletConfiguration text (YAML or JSON) with containerRuntimeEndpoint set to endpoint,
 * every other byte kept: an existing value (the top-level key's scalar) is replaced in place;
 * a missing key is inserted as a line of its own before the first top-level key of a block
 * mapping (same indentation), or as the first member of a flow mapping ({...}, JSON). The
 * value is written double-quoted (valid YAML and JSON). Refused (MOAT_E_INVALID): text
 * that is not one YAML document whose top node is a mapping, a key that is not a scalar.
 * The caller frees *out. */
int iso_kubelet_config_set_endpoint(char **out, const char *text, size_t len, const char *endpoint,
                                    moat_error *err);

/* The endpoint a KubeletConfiguration names (caller frees), or NULL in *out when it names
 * none. */
int iso_kubelet_config_get_endpoint(char **out, const char *text, size_t len, moat_error *err);

/* A kubelet flags or environment file (kubeadm-flags.env's KUBELET_KUBEADM_ARGS="...", a
 * systemd drop-in's Environment=) with the value of every --container-runtime-endpoint
 * (`=value` or ` value`) replaced by endpoint, every other byte kept. *ret_found tells
 * whether the flag was there (when not, *out is a copy). The caller frees *out. */
int iso_kubelet_flags_set_endpoint(char **out, bool *ret_found, const char *text, size_t len,
                                   const char *endpoint, moat_error *err);

/* Writes data to path (created with mode, or its mode set) through a temporary file and a
 * rename, unless the file already holds exactly these bytes and mode: *changed says which.
 * Creates missing parent directories (0755). */
int iso_install_file_put(const char *path, const char *data, size_t len, unsigned mode,
                         bool *changed, moat_error *err);

#endif
