/* moat-operator's configuration: what a cluster admin decides, from a YAML file.
 *
 * Every key is optional; a missing key keeps its default (shown below). An unknown key, a
 * value of the wrong type, a malformed quantity or duration, or a default above its
 * maximum stops startup with a message naming the file and the key, e.g.
 *   "/etc/moat/operator.yaml: defaults.memory: quantity "1GB" has an unknown suffix".
 *
 *   runtimeClasses:
 *     auto: moat-auto            # RuntimeClass for isolation: Auto
 *     vm: moat-vm                # ... VM
 *     gvisor: moat-gvisor        # ... GVisor
 *   nodes:
 *     managedLabel: moat.dev/managed      # sandboxes land only on nodes with <label>=true
 *     hypervisorLabel: moat.dev/hypervisor # VM sandboxes: nodes whose value is kvm or mshv
 *     gpuModeLabel: moat.dev/gpu-mode      # container | vm-passthrough
 *   defaults:
 *     cpu: "1"
 *     memory: 512Mi
 *     ephemeralStorage: 1Gi
 *     timeout: 5m                # mode Run
 *     ttlAfterFinished: 10m
 *     sessionTimeout: 1h         # mode Session: its timeout
 *     idleTimeout: 15m           # mode Session
 *   maximums:
 *     cpu: "8"
 *     memory: 32Gi
 *     ephemeralStorage: 100Gi
 *     gpus: 8
 *     timeout: 24h
 *   imagePullPolicy: IfNotPresent         # Always | IfNotPresent | Never
 *   gpu:
 *     containerResource: nvidia.com/gpu   # what container-mode GPU nodes advertise
 *     vmResource: nvidia.com/pgpu         # what VM-passthrough nodes advertise
 *     productLabel: nvidia.com/gpu.product
 *     taintKey: nvidia.com/gpu            # tolerated (Exists) by GPU sandboxes
 *   network:
 *     dnsNamespace: kube-system           # where cluster DNS runs (Internet egress may reach it)
 *     dnsPodLabels: {k8s-app: kube-dns}
 *     clusterCIDRs: []                    # the cluster's pod and service ranges, v4 and v6:
 *                                         # never reachable with egress Internet
 *   workers: 4                            # reconciles in parallel (1..64)
 *   placement:                            # what a Sandbox may say about its node
 *     nodeSelectorKeys: []                # spec.nodeSelector keys besides moat.dev/...; "*": any
 *     tolerationKeys: []                  # spec.tolerations keys besides moat.dev/...; "*": any,
 *                                         # and an empty key with operator Exists
 *   security:
 *     markKeyFile: /etc/moat-operator/mark/key  # the key of the mark on its Pods (mark.h)
 *     requiredPolicies: [moat-sandbox-secrets, moat-sandbox-placement, moat-pod-guard,
 *                        moat-sandbox-pod-shape, moat-agent-own-node]
 *                                         # /readyz fails while one, or its binding, is absent
 *   sessions:
 *     helperImage: moat.local/moat-node:<version>  # the image whose /moat-init holds the
 *                                         # helper (moat-init), mounted into every Session
 */
#ifndef MOAT_OPERATOR_CONFIG_H
#define MOAT_OPERATOR_CONFIG_H

#include <stdint.h>

#include "libmoat/error.h"

typedef struct {
    char *runtime_class_auto, *runtime_class_vm, *runtime_class_gvisor;
    char *managed_node_label, *hypervisor_node_label, *gpu_mode_node_label;

    /* Quantities in milli-units (libmoat/units.h): cpu 1 = 1000; memory 1Ki = 1024000. The
     * original strings are kept for the Pod spec. */
    int64_t default_cpu_milli, default_memory_milli, default_storage_milli;
    char *default_cpu, *default_memory, *default_storage;
    int64_t max_cpu_milli, max_memory_milli, max_storage_milli;
    int max_gpus;

    int64_t default_timeout_ns, max_timeout_ns, default_ttl_ns;
    int64_t default_session_timeout_ns, default_idle_timeout_ns;
    char *helper_image;

    char *image_pull_policy;
    char *gpu_container_resource, *gpu_vm_resource, *gpu_product_label, *gpu_taint_key;

    char *dns_namespace;
    char **dns_pod_label_keys, **dns_pod_label_values; /* NULL-terminated, same length */
    char **cluster_cidrs;                              /* NULL-terminated, never NULL */

    int workers;

    /* NULL-terminated lists, never NULL (empty: { NULL }). */
    char **placement_node_selector_keys, **placement_toleration_keys;
    char *mark_key_file;
    char **required_policies;
} operator_config;

/* The helper's image when the configuration names none: the node image of this release. */
#define OPERATOR_HELPER_IMAGE_DEFAULT "moat.local/moat-node:" MOAT_VERSION_STRING

/* Where the chart mounts the mark key Secret. */
#define OPERATOR_MARK_KEY_FILE "/etc/moat-operator/mark/key"

/* A configuration holding every default. Caller frees. */
int operator_config_new_default(operator_config **out, moat_error *err);

/* Parses YAML text; origin names it in errors. Caller frees. */
int operator_config_parse(operator_config **out, const char *text, size_t len, const char *origin,
                          moat_error *err);

/* Reads and parses a file (at most 1 MiB). */
int operator_config_load(operator_config **out, const char *path, moat_error *err);

/* Accepts NULL. */
void operator_config_free(operator_config *c);

#endif
