/* The CRI messages moat-cri changes, as bytes in and bytes out. Decoding uses the schema
 * libmoat/cri/cri.proto; every field it does not model is carried through untouched.
 *
 * RunPodSandbox: the decision (decide.h) from the request's runtime handler, the pod's
 * annotations (GPU count, network mode) and security context; a rewritten request carries
 * the concrete handler and the decision in the sandbox's annotations (so PodSandboxStatus
 * reports it, also after a restart of the shim).
 * Status: the logical handlers are added to runtime_handlers, so kubelet publishes them in
 * Node.status.runtimeHandlers.
 * PodSandboxStatus, CreateContainer, RemovePodSandbox: read (never changed) for the egress
 * wall (cri-shim/wall.h). */
#ifndef MOAT_SHIM_MESSAGES_H
#define MOAT_SHIM_MESSAGES_H

#include <stddef.h>
#include <stdint.h>

#include "decide.h"
#include "libmoat/error.h"
#include "isolation/probe/probe.h"

/* Decides about one RunPodSandboxRequest. Returns 0 (pass it through unchanged; *ret_out
 * untouched), 1 with *ret_out and *ret_len (the rewritten request; caller frees), or -1: a
 * malformed request (MOAT_E_INVALID) or a refusal (MOAT_E_RANGE: the pod must not run
 * here; err says why). *ret_decision (caller clears) is filled whenever the handler was a
 * Moat one. Decision annotations (moat.dev/decision-*) in the request are the pod author's,
 * never the shim's: they are removed, from a request passed through too (which then comes
 * back rewritten, 1). */
int shim_run_pod_sandbox_rewrite(const uint8_t *in, size_t len, const shim_handlers *handlers,
                                 const iso_probe_result *probe, uint8_t **ret_out, size_t *ret_len,
                                 shim_decision *ret_decision, char **ret_pod, moat_error *err);

/* Adds each of names (that is missing) to a StatusResponse's runtime_handlers. Returns 1
 * with the new response, 0 when nothing was missing, -1 for a malformed response. */
int shim_status_add_handlers(const uint8_t *in, size_t len, const char *const *names,
                             size_t n_names, uint8_t **ret_out, size_t *ret_len, moat_error *err);

/* The one ID a request names in its first field: the container of an ExecRequest,
 * AttachRequest or RemoveContainerRequest, the pod sandbox of a PortForwardRequest or
 * RemovePodSandboxRequest (activity.h). method is the full gRPC method name; *ret_id
 * (caller frees) is never empty. -1 (MOAT_E_INVALID) when it does not decode, names no ID,
 * or is none of those methods. */
int shim_request_target_id(const char *method, const uint8_t *in, size_t len, char **ret_id,
                           moat_error *err);

/* What the egress wall needs from the calls around a pod's life. A pod is walled when its
 * annotations carry MOAT_ANNOTATION_NETWORK (the operator puts it on every sandbox Pod; a
 * Pod that asks for Moat's egress class gets its wall), and keeps its DNS servers only
 * when that is MOAT_EGRESS_INTERNET. Everything owned; shim_wall_facts_clear frees. */
typedef struct {
    char *sandbox_id;
    char *pod;     /* "namespace/name", for logs; NULL when the message has no metadata */
    bool walled;   /* MOAT_ANNOTATION_NETWORK is present */
    bool internet; /* ... and is MOAT_EGRESS_INTERNET */
    bool ready;    /* PodSandboxStatus: SANDBOX_READY */
    char **addrs;  /* PodSandboxStatus: the pod's IPs */
    size_t n_addrs;
    char **dns; /* CreateContainer: the DNS servers kubelet gave the sandbox */
    size_t n_dns;
} shim_wall_facts;

/* From a PodSandboxStatusResponse: sandbox_id, pod, walled, internet, ready, addrs.
 * -1 (MOAT_E_INVALID) when it does not decode or has no status. */
int shim_sandbox_status_facts(const uint8_t *in, size_t len, shim_wall_facts *out, moat_error *err);

/* From a CreateContainerRequest: sandbox_id, pod, walled, internet, dns. */
int shim_create_container_facts(const uint8_t *in, size_t len, shim_wall_facts *out,
                                moat_error *err);

/* The pod_sandbox_id of a RemovePodSandboxRequest (caller frees). */
int shim_remove_pod_sandbox_id(const uint8_t *in, size_t len, char **ret_id, moat_error *err);

void shim_wall_facts_clear(shim_wall_facts *f);

#endif
