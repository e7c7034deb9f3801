/* The operator's mark on the Pods it makes, so that it adopts no other.
 *
 * A tenant who may create and patch Pods can make a Pod that looks like a sandbox Pod: the
 * Sandbox's name, an owner reference with its uid, Moat's labels, a forged isolation
 * report. The chart's admission policies refuse that; this mark is the second wall, for a
 * cluster whose policies are missing or wrong. The mark is HMAC-SHA256, keyed by a Secret
 * only the operator reads (mounted into its pod), over the Pod's identity and every field
 * that decides its isolation:
 *
 *   namespace, name, the owning Sandbox's uid, runtimeClassName, hostNetwork, hostPID,
 *   hostIPC, hostUsers, automountServiceAccountToken, serviceAccountName, the pod's
 *   seccomp profile type, each container's (init and ephemeral ones too) name, image,
 *   privileged and allowPrivilegeEscalation flags, added capabilities and host ports, each
 *   volume's name and the kind of its source, and Moat's labels and annotations that the
 *   operator writes (every moat.dev/ key but the node agent's report and activity).
 *
 * An absent field reads as what the API server or kubelet make of it (serviceAccountName
 * "default", a token mounted, ...), and a volume's source only by its kind, so the mark
 * computed on the manifest before it is created equals the one computed on the Pod read
 * back. The node agent's annotations are outside the mark: the admission policy
 * moat-pod-guard alone keeps them the agent's. The owner's
 * uid is in the subject so that a mark copied from an earlier Pod of the same name is
 * worth nothing: a Pod made before its Sandbox existed (a warm pool) is marked again, with
 * the new owner, in the same write that binds it; a resumed Sandbox's new Pod is marked
 * when it is made. */
#ifndef MOAT_OPERATOR_MARK_H
#define MOAT_OPERATOR_MARK_H

#include <jansson.h>
#include <stdbool.h>

#include "libmoat/error.h"

typedef struct sandbox_mark_key sandbox_mark_key;

/* At least this many bytes of key (256 bits), and at most MARK_KEY_MAX. */
#define MARK_KEY_MIN 32
#define MARK_KEY_MAX 4096

/* Loads the key from path: its bytes, less one trailing newline. MOAT_E_IO when the file
 * cannot be read, MOAT_E_INVALID when it is shorter than MARK_KEY_MIN or longer than
 * MARK_KEY_MAX (the message names the file). *out is the caller's (sandbox_mark_key_free). */
int sandbox_mark_key_load(sandbox_mark_key **out, const char *path, moat_error *err);

/* A key from bytes (tests). Same limits and ownership. */
int sandbox_mark_key_new(sandbox_mark_key **out, const void *bytes, size_t len, moat_error *err);

/* Accepts NULL. */
void sandbox_mark_key_free(sandbox_mark_key *k);

/* The mark of pod as owned by the Sandbox whose uid is owner_uid: a new string ("v1." and
 * 43 characters of base64url) the caller frees, or NULL when out of memory. */
char *sandbox_mark_compute(const sandbox_mark_key *key, const json_t *pod, const char *owner_uid);

/* Sets the mark annotation on pod (a manifest about to be created). MOAT_E_NOMEM only. */
int sandbox_mark_set(json_t *pod, const sandbox_mark_key *key, const char *owner_uid,
                     moat_error *err);

/* True when pod carries the mark sandbox_mark_compute() gives for it and owner_uid,
 * compared in constant time. */
bool sandbox_mark_verify(const sandbox_mark_key *key, const json_t *pod, const char *owner_uid);

/* Whose Pod is this, for the Sandbox the controller reconciles? */
typedef enum {
    SANDBOX_POD_OURS,    /* made by the operator for this Sandbox */
    SANDBOX_POD_WAIT,    /* an earlier Sandbox's Pod of the same name, on its way out */
    SANDBOX_POD_FOREIGN, /* anything else: never trusted, the Sandbox fails */
} sandbox_pod_claim;

/* SANDBOX_POD_OURS only when pod's controller reference (the ownerReferences entry with
 * controller: true) is a moat.dev Sandbox whose uid is owner_uid and pod carries the mark
 * for owner_uid: an owner reference and labels are something any tenant who may create
 * Pods can write (README: Threat model); a Pod of ours being deleted is still ours.
 * SANDBOX_POD_WAIT when its controller is another Sandbox (an earlier one of the same name:
 * the garbage collector takes its Pod), or it is not ours and being deleted. Otherwise
 * SANDBOX_POD_FOREIGN, with a sentence naming the Pod and why it is not trusted (for the Sandbox's
 * status) written into why[len] (why may be NULL when len is 0); why is left alone for the other
 * answers. */
sandbox_pod_claim sandbox_mark_claim(const sandbox_mark_key *key, const json_t *pod,
                                     const char *owner_uid, char *why, size_t len);

/* Of pods (a JSON array of Pods, e.g. kube_informer_by_owner's answer), the one
 * sandbox_mark_claim() calls SANDBOX_POD_OURS for owner_uid; every other Pod is skipped,
 * not reported (a non-controller owner reference, or the uid named without the mark, is
 * a tenant's writing). When several are ours: one not being deleted before one that is,
 * then the smallest metadata.name, so the answer does not depend on the order of pods.
 * Returns a pointer into pods (borrowed: valid while pods is), or NULL when none is ours
 * (pods NULL or not an array included). */
const json_t *sandbox_mark_pick(const json_t *pods, const sandbox_mark_key *key,
                                const char *owner_uid);

/* Keeps in a cached Pod's spec only what the controller reads, the mark's subject
 * included; everything else of spec is dropped (the informer's transform). */
void sandbox_mark_prune_spec(json_t *pod);

#endif
