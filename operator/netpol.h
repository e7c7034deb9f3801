/* The NetworkPolicies that fence sandbox Pods, one set per namespace that has Sandboxes.
 *
 * Each policy selects sandbox Pods by their MOAT_LABEL_EGRESS class, so what one class may
 * reach never leaks to another: "none" Pods get no traffic in or out; "internet" Pods get
 * no traffic in, and out only cluster DNS and public addresses (never private, link-local
 * or cloud-metadata ones). */
#ifndef MOAT_OPERATOR_NETPOL_H
#define MOAT_OPERATOR_NETPOL_H

#include <jansson.h>

#include "config.h"
#include "libmoat/error.h"

/* The policies' names, and the label that marks them as the operator's. */
#define SANDBOX_NETPOL_EGRESS_NONE     "moat-egress-none"
#define SANDBOX_NETPOL_EGRESS_INTERNET "moat-egress-internet"
#define SANDBOX_NETPOL_MANAGED_BY_KEY  "app.kubernetes.io/managed-by"
#define SANDBOX_NETPOL_MANAGED_BY      "moat-operator"

/* Builds the networking.k8s.io/v1 NetworkPolicies for namespace ns: a JSON array of
 * SANDBOX_NETPOL_EGRESS_NONE then SANDBOX_NETPOL_EGRESS_INTERNET, each carrying
 * SANDBOX_NETPOL_MANAGED_BY_KEY=SANDBOX_NETPOL_MANAGED_BY. DNS is found by
 * cfg->dns_namespace and cfg->dns_pod_labels. On success *out is a new reference the
 * caller owns; on failure *out is untouched and err says why: MOAT_E_INVALID for an empty
 * ns or dns_namespace, MOAT_E_NOMEM. */
int sandbox_netpols_build(json_t **out, const char *ns, const operator_config *cfg,
                          moat_error *err);

#endif
