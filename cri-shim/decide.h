/* Which containerd handler runs a pod sandbox: a pure function of the handler kubelet asked
 * for, the pod's facts, this node's GPU mode and the host probe.
 *
 *   requested      node / pod                              verdict
 *   other handler  anything                                PASS (relayed untouched)
 *   any Moat one   privileged, or a host namespace         REFUSE
 *                  a Kata or CDI pod annotation            REFUSE
 *                  a malformed Moat annotation             REFUSE
 *   moat-vm        no usable hypervisor                    REFUSE
 *                  GPUs, GPU mode vm-passthrough           kata_gpu
 *                  GPUs, other GPU mode                    REFUSE
 *                  no GPUs                                 kata_clh
 *   moat-auto      GPUs, GPU mode container                runsc_nvproxy
 *                  GPUs, other GPU mode                    REFUSE
 *                  usable hypervisor                       kata_clh
 *                  no usable hypervisor                    runsc, or runsc_nonet (no network)
 *   moat-gvisor    GPUs, GPU mode container                runsc_nvproxy
 *                  GPUs, other GPU mode                    REFUSE
 *                  no GPUs                                 runsc, or runsc_nonet (no network)
 *
 * A Kata or nvproxy sandbox without network keeps a network stack (there is no handler
 * without one); its reason says the NetworkPolicy is then the only network wall.
 *
 * The operator places sandboxes so that a REFUSE should not happen; when it does (a node
 * whose probe changed, a hand-written Pod) the pod fails instead of running with weaker
 * isolation than it asked for. */
#ifndef MOAT_SHIM_DECIDE_H
#define MOAT_SHIM_DECIDE_H

#include <stdbool.h>

#include "isolation/probe/probe.h"

typedef enum { SHIM_PASS = 0, SHIM_REWRITE, SHIM_REFUSE } shim_verdict;

typedef struct {
    /* The logical handlers kubelet passes (MOAT_RUNTIMECLASS_*). */
    const char *handler_auto, *handler_vm, *handler_gvisor;
    /* The concrete containerd handlers (MOAT_HANDLER_*). */
    const char *runsc, *runsc_nonet, *runsc_nvproxy, *kata_clh, *kata_gpu;
    /* This node's MOAT_GPU_MODE_*: "container", "vm-passthrough" or "none"; NULL is none. */
    const char *gpu_mode;
} shim_handlers;

typedef struct {
    const char *runtime_handler; /* from the request; NULL or "" is containerd's default */
    int gpu_count;               /* from MOAT_ANNOTATION_GPU_COUNT; 0 without */
    bool no_network;             /* MOAT_ANNOTATION_NETWORK is MOAT_EGRESS_NONE */
    bool privileged;             /* any container, or the sandbox, asks for it */
    bool host_network, host_pid, host_ipc;
    /* The first pod annotation no Moat sandbox may carry (io.katacontainers...: hypervisor,
     * kernel and virtiofsd overrides; cdi.k8s.io/...: devices), or NULL. */
    const char *forbidden_annotation;
    /* Why a Moat annotation (MOAT_ANNOTATION_GPU_COUNT, _NETWORK) does not parse, or NULL:
     * the operator writes them, so a malformed one is not the operator's. */
    const char *malformed;
} shim_pod_facts;

typedef struct {
    shim_verdict verdict;
    const char *handler; /* REWRITE: the concrete handler, borrowed from the shim_handlers */
    const char *runtime; /* REWRITE: MOAT_RUNTIME_GVISOR or MOAT_RUNTIME_KATA (static) */
    /* Owned. REWRITE: why this handler, for MOAT_ANNOTATION_DECISION_REASON, e.g.
     * "no usable hypervisor: no /dev/kvm". REFUSE: the error for kubelet, e.g. "isolation
     * VM needs a usable hypervisor on this node: no /dev/kvm". PASS: NULL. */
    char *reason;
} shim_decision;

/* Decides for pod; probe may be NULL (not probed: no usable hypervisor). Always fills *out,
 * which the caller clears. Out of memory while writing a reason is a REFUSE whose reason
 * says so: a pod never runs on a guess. */
void shim_decide(shim_decision *out, const shim_handlers *h, const iso_probe_result *probe,
                 const shim_pod_facts *pod);

/* Frees what d owns and zeroes it; accepts NULL and an already cleared decision. */
void shim_decision_clear(shim_decision *d);

#endif
