/* moat-cri's configuration, from a YAML file; moat-cri's flags override it.
 *
 * Every key is optional; a missing key keeps its default (shown below). An unknown key, a
 * value of the wrong type, an empty string or a bad value stops startup with a message
 * naming the file and the key, e.g.
 *   "/etc/moat/cri.yaml: gpuMode: \"gpu\" is not container, vm-passthrough or none".
 *
 *   listen: /run/moat/cri.sock                # the socket kubelet talks to (absolute path)
 *   upstream: /run/containerd/containerd.sock # containerd's socket (absolute path)
 *   metrics: 127.0.0.1:9466                   # host:port of the metrics endpoint
 *   handlers:                                 # logical handlers kubelet asks for
 *     auto: moat-auto                         #   (RuntimeClass handlers: DNS labels)
 *     vm: moat-vm
 *     gvisor: moat-gvisor
 *   runtimes:                                 # containerd handlers the shim chooses among
 *     runsc: runsc
 *     runscNoNetwork: runsc-nonet
 *     runscNvproxy: runsc-nvproxy
 *     kataClh: kata-clh
 *     kataGpu: kata-qemu-nvidia-gpu
 *   gpuMode: none                             # container | vm-passthrough | none
 *   probe:                                    # the devices the host probe opens
 *     kvm: /dev/kvm
 *     mshv: /dev/mshv
 *   socketMode: "0660"                        # octal, always (quoted or not); no bits for
 *                                             #   others: the socket starts any container
 *   socketGroup: ""                           # the socket's group, a name or a number;
 *                                             #   empty leaves it alone
 *   egressWall:                               # cri-shim/wall.h: sandboxes kept off
 *     mode: nftables                          #   private addresses from their first
 *     table: moat                             #   instant; none leaves it to the
 *                                             #   NetworkPolicy alone (a choice to write
 *                                             #   down); table: the inet table it owns
 *     clusterCIDRs: []                        #   the cluster's pod and service ranges,
 *                                             #   v4 and v6, blocked besides the private
 *                                             #   ones (the node's addresses always are)
 *
 * The three logical handlers must differ from each other and from every containerd
 * handler, and listen from upstream. */
#ifndef MOAT_SHIM_CONFIG_H
#define MOAT_SHIM_CONFIG_H

#include <stddef.h>

#include "libmoat/error.h"

typedef struct {
    char *listen, *upstream, *metrics;
    char *handler_auto, *handler_vm, *handler_gvisor;
    char *runsc, *runsc_nonet, *runsc_nvproxy, *kata_clh, *kata_gpu;
    char *gpu_mode; /* MOAT_GPU_MODE_* */
    char *probe_kvm, *probe_mshv;
    /* probe.assume: kvm, mshv or none to skip the probe and take that answer (for tests,
     * and nodes whose devices the shim cannot see); NULL: probe. */
    char *probe_assume;
    unsigned int socket_mode;  /* permission bits of listen, e.g. 0660 */
    char *socket_group;        /* NULL: leave the group alone */
    char *wall_mode;           /* SHIM_WALL_* */
    char *wall_table;          /* the nftables inet table of the egress wall */
    char **wall_cluster_cidrs; /* NULL-terminated, never NULL */
} shim_config;

#define SHIM_WALL_NFTABLES "nftables"
#define SHIM_WALL_NONE     "none"

/* A configuration holding every default. Caller frees. */
int shim_config_new_default(shim_config **out, moat_error *err);

/* Parses YAML text (at most 1 MiB); origin names it in errors ("<origin>: <key>: ...").
 * Caller frees. On failure *out is untouched. */
int shim_config_parse(shim_config **out, const char *text, size_t len, const char *origin,
                      moat_error *err);

/* Reads and parses a file (at most 1 MiB); errors start with the path. */
int shim_config_load(shim_config **out, const char *path, moat_error *err);

/* Sets one key, named as in the file ("gpuMode", "handlers.auto", "socketMode"), from its
 * text, checked as the file's value would be: for command-line flags. Errors start with the
 * key; an unknown key or a section is MOAT_E_INVALID. c is unchanged on failure. Run
 * shim_config_check() once every flag is set. */
int shim_config_set(shim_config *c, const char *key, const char *value, moat_error *err);

/* The checks across keys (distinct handlers, listen not upstream); parse runs them too. */
int shim_config_check(const shim_config *c, moat_error *err);

/* Accepts NULL. */
void shim_config_free(shim_config *c);

#endif
