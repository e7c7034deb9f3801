/* The Sandbox controller: informers on Sandboxes, the Pods it owns and Nodes; a work queue
 * with per-key backoff; workers that reconcile one Sandbox at a time (never one key on two
 * workers); leader election, so only one replica writes; events; metrics.
 *
 * Reconcile is level-based and idempotent: it reads the caches, plans with
 * sandbox_plan_make (status.h), creates the Sandbox's one Pod (named after it, so a second
 * create is AlreadyExists, never a second Pod) and knows it by its controller reference and
 * the operator's mark, not by its name (mark.h), writes status through /status with the
 * resourceVersion it read (a conflict requeues), keeps the namespace's NetworkPolicies,
 * and deletes the Sandbox when its ttlAfterFinished is over. */
#ifndef MOAT_OPERATOR_CONTROLLER_H
#define MOAT_OPERATOR_CONTROLLER_H

#include <stdbool.h>

#include "config.h"
#include "libmoat/error.h"
#include "libmoat/kube.h"

typedef struct {
    kube_client *client;           /* borrowed */
    const operator_config *config; /* borrowed */
    const char *identity;          /* this replica's name in the Lease and in events */
    bool leader_elect;
    const char *lease_namespace;
    const char *lease_name; /* default "moat-operator" */
} controller_options;

typedef struct operator_controller operator_controller;

int controller_new(operator_controller **out, const controller_options *opts, moat_error *err);

/* Runs until controller_stop() (returns 0 after finishing the reconciles in flight and
 * giving up the Lease) or until leadership is lost (returns -1 with err set: the process
 * should exit so that it starts over as a candidate). */
int controller_run(operator_controller *c, moat_error *err);

/* Asks controller_run to return; safe from any thread. */
void controller_stop(operator_controller *c);

/* NULL once the caches have synced and every admission policy of the configuration's
 * security.requiredPolicies, with its binding, is in the cluster; else why not, as a new
 * string the caller frees (for /readyz). */
char *controller_unready(operator_controller *c);

/* The Prometheus text exposition of the controller's metrics. Caller frees. */
char *controller_metrics_render(operator_controller *c);

void controller_free(operator_controller *c);

#endif
