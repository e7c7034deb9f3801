/* The names every part of Moat shares: API group, labels, annotations, RuntimeClasses and
 * containerd handlers. crds/NAMES.md documents each one; this header is the only place
 * code takes them from. Changing a value here changes the wire contract between the
 * operator, the CRI shim and the node agent. */
#ifndef MOAT_NAMES_H
#define MOAT_NAMES_H

/* The Sandbox API. */
#define MOAT_API_GROUP      "moat.dev"
#define MOAT_API_VERSION    "v1alpha1"
#define MOAT_API_GV         "moat.dev/v1alpha1"
#define MOAT_SANDBOX_KIND   "Sandbox"
#define MOAT_SANDBOX_PLURAL "sandboxes"

/* Labels on a sandbox Pod. */
#define MOAT_LABEL_SANDBOX "moat.dev/sandbox" /* value: the Sandbox's name */
#define MOAT_LABEL_EGRESS  "moat.dev/egress"  /* value: "none" or "internet" */

/* Annotations the operator puts on a sandbox Pod; the CRI shim reads them from the pod
 * sandbox config. */
#define MOAT_ANNOTATION_GPU_COUNT   "moat.dev/gpu-count"   /* decimal, "0".."8" */
#define MOAT_ANNOTATION_GPU_PRODUCT "moat.dev/gpu-product" /* e.g. NVIDIA-H100-80GB-HBM3 */
#define MOAT_ANNOTATION_NETWORK     "moat.dev/network"     /* "none" or "internet" */
#define MOAT_ANNOTATION_ISOLATION   "moat.dev/isolation"   /* the Sandbox's requested mode */

/* The shim's decision, added to the pod sandbox's annotations (reported by
 * PodSandboxStatus), and the node agent's report of it on the Pod. */
#define MOAT_ANNOTATION_DECISION_RUNTIME "moat.dev/decision-runtime" /* "gvisor", "kata" */
#define MOAT_ANNOTATION_DECISION_HANDLER "moat.dev/decision-handler" /* concrete handler */
#define MOAT_ANNOTATION_DECISION_REASON  "moat.dev/decision-reason"
/* On the Pod, written by the node agent: JSON {"runtime","handler","reason","verified"}. */
#define MOAT_ANNOTATION_ISOLATION_REPORT "moat.dev/isolation-report"

/* On the Pod, written by the node agent (the sessions issue): when the sandbox was last
 * active. Like the report, the agent's to write, so outside the operator's mark. */
#define MOAT_ANNOTATION_LAST_ACTIVITY "moat.dev/last-activity"

/* On a Session's Pod, written by the operator: its idleTimeout in whole seconds, so the
 * node agent (which reads no Pod from the API) knows the session and paces its writes. */
#define MOAT_ANNOTATION_IDLE_TIMEOUT "moat.dev/idle-timeout"

/* Moat's helper in every Session (init/): the image volume holding it, the folder of the
 * helper image it mounts (subPath), and where it appears in the sandbox's container. */
#define MOAT_HELPER_VOLUME  "moat-init"
#define MOAT_HELPER_SUBPATH "moat-init"
#define MOAT_HELPER_MOUNT   "/.moat"
#define MOAT_HELPER_PATH    "/.moat/moat-init"

/* The operator's mark on each Pod it made (operator/mark.h): "v1." and an HMAC-SHA256 in
 * unpadded base64url, keyed by a Secret only the operator reads. */
#define MOAT_ANNOTATION_MARK "moat.dev/mark"

/* The chart's admission policies (helm/moat/templates/admission-*.yaml); each has a
 * ValidatingAdmissionPolicyBinding of the same name. moat-operator is not Ready while one
 * of them, or its binding, is missing (README: Threat model). */
#define MOAT_POLICY_SANDBOX_SECRETS   "moat-sandbox-secrets"
#define MOAT_POLICY_SANDBOX_PLACEMENT "moat-sandbox-placement"
#define MOAT_POLICY_POD_GUARD         "moat-pod-guard"
#define MOAT_POLICY_SANDBOX_POD_SHAPE "moat-sandbox-pod-shape"
#define MOAT_POLICY_AGENT_OWN_NODE    "moat-agent-own-node"
#define MOAT_POLICIES_DEFAULT                                                                      \
    MOAT_POLICY_SANDBOX_SECRETS "," MOAT_POLICY_SANDBOX_PLACEMENT "," MOAT_POLICY_POD_GUARD        \
                                "," MOAT_POLICY_SANDBOX_POD_SHAPE "," MOAT_POLICY_AGENT_OWN_NODE

/* Where a Sandbox may not name a nodeSelector or toleration key outside the operator's
 * allow-list, Moat's own keys (this prefix) are always allowed. */
#define MOAT_KEY_PREFIX "moat.dev/"

/* Node labels, written by the node agent from the host probe. */
#define MOAT_NODE_LABEL_MANAGED    "moat.dev/managed"    /* "true" */
#define MOAT_NODE_LABEL_HYPERVISOR "moat.dev/hypervisor" /* "kvm", "mshv" or "none" */
#define MOAT_NODE_LABEL_GPU_MODE   "moat.dev/gpu-mode"   /* "container", "vm-passthrough", "none" */
/* One label per available runtime: "moat.dev/runtime.<name>" = "true", and absent (never
 * "false") where the runtime is not available: the RuntimeClasses select on them, and a
 * RuntimeClass nodeSelector can only require label=value. The moat-vm RuntimeClass selects
 * on MOAT_NODE_LABEL_RUNTIME_KATA, so it is set only where Kata's shim is installed AND the
 * host probe proved a usable hypervisor (iso_probe usable), never for a /dev/kvm that merely
 * opens. */
#define MOAT_NODE_LABEL_RUNTIME_PREFIX "moat.dev/runtime."
#define MOAT_NODE_LABEL_RUNTIME_GVISOR "moat.dev/runtime.gvisor"
#define MOAT_NODE_LABEL_RUNTIME_KATA   "moat.dev/runtime.kata"
#define MOAT_NODE_LABEL_TRUE           "true" /* the value of managed and runtime labels */

/* Values of the labels and annotations above. */
#define MOAT_EGRESS_NONE        "none"
#define MOAT_EGRESS_INTERNET    "internet"
#define MOAT_RUNTIME_GVISOR     "gvisor"
#define MOAT_RUNTIME_KATA       "kata"
#define MOAT_HYPERVISOR_KVM     "kvm"
#define MOAT_HYPERVISOR_MSHV    "mshv"
#define MOAT_HYPERVISOR_NONE    "none"
#define MOAT_GPU_MODE_CONTAINER "container"
#define MOAT_GPU_MODE_VM        "vm-passthrough"
#define MOAT_GPU_MODE_NONE      "none"

/* RuntimeClasses: logical handlers that kubelet passes to the CRI shim. */
#define MOAT_RUNTIMECLASS_AUTO   "moat-auto"
#define MOAT_RUNTIMECLASS_VM     "moat-vm"
#define MOAT_RUNTIMECLASS_GVISOR "moat-gvisor"

/* Concrete containerd handlers the shim chooses among. */
#define MOAT_HANDLER_RUNSC            "runsc"
#define MOAT_HANDLER_RUNSC_NVPROXY    "runsc-nvproxy"
#define MOAT_HANDLER_RUNSC_NONET      "runsc-nonet"
#define MOAT_HANDLER_KATA_CLH         "kata-clh"
#define MOAT_HANDLER_KATA_QEMU_NV_GPU "kata-qemu-nvidia-gpu"

#endif
