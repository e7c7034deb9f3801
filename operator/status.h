/* What a Sandbox's status should be, and what to do next, from the Sandbox, its Pod and
 * what the cluster offers. A pure function: the controller reads the cache, calls it, and
 * carries the plan out; unit tests call it with hand-written objects.
 *
 * Phases: Pending (no Pod yet, or the Pod not running), Running, and the final Succeeded,
 * Failed and Expired, which never change again. Conditions (standard shape): Scheduled,
 * Ready, Finished, Isolated; a condition's lastTransitionTime changes only when its status
 * flips. status.isolation comes only from the node's own report on the Pod (the
 * MOAT_ANNOTATION_ISOLATION_REPORT annotation the node agent writes), never from the
 * RuntimeClass: until the report arrives, runtime is "" and verified false. A report of
 * another isolation than spec.isolation asked for (VM asked, gVisor ran) or of a runtime
 * that is no isolation (runc) makes Isolated False, never True. Timers (the
 * timeout, ttlAfterFinished) are computed from status times, so they survive a restart. */
#ifndef MOAT_OPERATOR_STATUS_H
#define MOAT_OPERATOR_STATUS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "libmoat/error.h"

typedef struct {
    int64_t now_s;                /* wall-clock seconds since the epoch */
    bool hypervisor_available;    /* some Moat-managed node has a usable hypervisor */
    bool gpu_vm_available;        /* ... is in VM-passthrough GPU mode */
    bool gpu_container_available; /* ... is in container GPU mode */
} cluster_facts;

typedef enum {
    SANDBOX_ACTION_NONE = 0,
    SANDBOX_ACTION_CREATE_POD,     /* create the Pod the caller built */
    SANDBOX_ACTION_DELETE_SANDBOX, /* its ttlAfterFinished is over */
    SANDBOX_ACTION_STOP_POD,       /* an idle Session: set the Pod's activeDeadlineSeconds to
                                      stop_deadline_s, so kubelet stops it (its log kept) */
} sandbox_action;

typedef struct {
    json_t *status; /* the status the Sandbox should have (owned) */
    sandbox_action action;
    int64_t requeue_after_s; /* > 0: look at it again after this long */
    int64_t stop_deadline_s; /* SANDBOX_ACTION_STOP_POD: seconds since the Pod started */
} sandbox_plan;

typedef struct {
    const json_t *sandbox;
    const json_t *pod;      /* the Sandbox's Pod from the cache, or NULL */
    const char *spec_error; /* the Pod could not be built: why (the spec is nonsense) */
    /* A Pod of the Sandbox's name that the operator did not make (no controller reference
     * to the Sandbox, or no valid mark): why. The Sandbox fails; pod is NULL then. */
    const char *untrusted_pod;
    const char *isolation; /* spec.isolation: "Auto" (or NULL), "VM", "GVisor" */
    bool wants_vm;         /* isolation: VM */
    int gpus;              /* GPUs requested */
    int64_t timeout_s, ttl_s;
    bool session;   /* spec.mode: Session */
    int64_t idle_s; /* a Session's idleTimeout in seconds (0: none) */
} sandbox_view;

/* Fills *out with the plan. Never fails for any input: a nonsense Sandbox or Pod gives a
 * Failed status with a message.
 *
 * A Session: status.lastActivityTime is the latest of its start and the node agent's
 * MOAT_ANNOTATION_LAST_ACTIVITY on its Pod (never moving back); idle for idle_s since then,
 * it ends Expired with the Finished reason IdleTimeout and SANDBOX_ACTION_STOP_POD (asked
 * again on every pass while its Pod still runs). Its other ends are the Finished reasons
 * Timeout (phase Expired), Exited (its command ended: Succeeded or Failed) and PodDeleted.
 * A Run keeps its reasons (Expired, Succeeded, Failed). status.limits shows the timeout
 * and idle timeout in force. */
void sandbox_plan_make(sandbox_plan *out, const sandbox_view *view, const cluster_facts *facts);

void sandbox_plan_clear(sandbox_plan *p);

/* True when two statuses differ in anything but the order of keys. */
bool sandbox_status_changed(const json_t *old_status, const json_t *new_status);

#endif
