/* The CRI messages moat-cri changes, as bytes in and bytes out. Decoding uses the shim's
 * own cri.proto; every field it does not model is carried through untouched.
 *
 * RunPodSandbox: the decision (decide.h) from the request's runtime handler, the pod's
 * annotations (GPU count, network mode) and security context; a rewritten request carries
 * the concrete handler and the decision in the sandbox's annotations (so PodSandboxStatus
 * reports it, also after a restart of the shim).
 * Status: the logical handlers are added to runtime_handlers, so kubelet publishes them in
 * Node.status.runtimeHandlers. */
#ifndef MOAT_SHIM_MESSAGES_H
#define MOAT_SHIM_MESSAGES_H

#include <stddef.h>
#include <stdint.h>

#include "decide.h"
#include "libmoat/error.h"
#include "isolation/probe.h"

/* Decides about one RunPodSandboxRequest. Returns 0 (pass it through unchanged; *ret_out
 * untouched), 1 with *ret_out and *ret_len (the rewritten request; caller frees), or -1: a
 * malformed request (MOAT_E_INVALID) or a refusal (MOAT_E_RANGE: the pod must not run
 * here; err says why). *ret_decision (caller clears) is filled whenever the handler was a
 * Moat one. */
int shim_run_pod_sandbox_rewrite(const uint8_t *in, size_t len, const shim_handlers *handlers,
                                 const iso_probe_result *probe, uint8_t **ret_out, size_t *ret_len,
                                 shim_decision *ret_decision, char **ret_pod, moat_error *err);

/* Adds each of names (that is missing) to a StatusResponse's runtime_handlers. Returns 1
 * with the new response, 0 when nothing was missing, -1 for a malformed response. */
int shim_status_add_handlers(const uint8_t *in, size_t len, const char *const *names,
                             size_t n_names, uint8_t **ret_out, size_t *ret_len, moat_error *err);

#endif
