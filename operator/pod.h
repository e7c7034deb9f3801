/* The one Pod that runs a Sandbox: a pure function from the Sandbox and the operator's
 * configuration to a hardened Pod manifest, plus the Sandbox's deadlines computed the same
 * way the Pod gets them.
 *
 * The CRD's schema normally refuses a bad Sandbox, but one written with validation off or
 * under an older CRD can still arrive, so every field is checked again here. A refusal is
 * MOAT_E_INVALID with a message that starts with the field's path, e.g.
 *   spec.isolation: "Firecracker" is not Auto, VM or GVisor
 *   spec.resources.cpu: 64 is above the cluster's maximum 8
 * and is meant to go into the Sandbox's status as it is. Running out of memory is
 * MOAT_E_NOMEM. Fields the schema does not know are ignored, as the API server prunes
 * them. */
#ifndef MOAT_OPERATOR_POD_H
#define MOAT_OPERATOR_POD_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "libmoat/error.h"

/* The name of the Pod's one container. */
#define SANDBOX_CONTAINER_NAME "sandbox"

/* Builds the Pod for sandbox (a moat.dev/v1alpha1 Sandbox with metadata.name, .namespace
 * and .uid): same name and namespace, owned by the Sandbox, on a RuntimeClass chosen by
 * spec.isolation, placed on managed nodes by required node affinity, one container with
 * requests equal to limits and every privilege dropped. A Session's container runs Moat's
 * helper as PID 1 (MOAT_HELPER_PATH "init", then "--" and its command when it has one),
 * mounted read-only from cfg->helper_image; its Pod carries MOAT_ANNOTATION_IDLE_TIMEOUT. Missing
 * resources and timeout take cfg's defaults; values above cfg's maximums are refused. On success
 * *out is a new reference the caller owns; on failure *out is untouched. */
int sandbox_pod_build(json_t **out, const json_t *sandbox, const operator_config *cfg,
                      moat_error *err);

/* The Sandbox's timeout in nanoseconds: spec.timeout, or the mode's default when absent
 * (cfg->default_timeout_ns for a Run, cfg->default_session_timeout_ns for a Session). A malformed,
 * non-positive, or above cfg->max_timeout_ns value is refused (MOAT_E_INVALID, "spec.timeout:
 * ..."). The Pod's activeDeadlineSeconds is this rounded up to whole seconds. */
int sandbox_timeout_ns(int64_t *ret_ns, const json_t *sandbox, const operator_config *cfg,
                       moat_error *err);

/* A Session's idle timeout in nanoseconds: spec.idleTimeout, or
 * cfg->default_idle_timeout_ns when absent; 0 for a Run. Refused as sandbox_timeout_ns
 * refuses ("spec.idleTimeout: ..."). */
int sandbox_idle_timeout_ns(int64_t *ret_ns, const json_t *sandbox, const operator_config *cfg,
                            moat_error *err);

/* How long a finished Sandbox is kept, in nanoseconds: spec.ttlAfterFinished, or
 * cfg->default_ttl_ns when absent. A malformed, negative or above 720h (the CRD's limit)
 * value is refused (MOAT_E_INVALID, "spec.ttlAfterFinished: ..."). */
int sandbox_ttl_ns(int64_t *ret_ns, const json_t *sandbox, const operator_config *cfg,
                   moat_error *err);

#endif
