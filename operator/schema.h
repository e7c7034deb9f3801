/* Whether the Sandbox CRD the API server serves knows every field this operator uses.
 * Helm never upgrades crds/: an operator newer than its CRD would write fields the API
 * server prunes (a Session's status.lastActivityTime) and read specs whose new fields were
 * dropped at admission (spec.mode: a Session taken for a Run). /readyz says so, naming the
 * field, until the CRD is applied (README: Upgrade notes). */
#ifndef MOAT_OPERATOR_SCHEMA_H
#define MOAT_OPERATOR_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The CRD's name. */
#define SANDBOX_CRD_NAME "sandboxes.moat.dev"

/* The first field (as "spec.mode") the served version (MOAT_API_VERSION) of crd's schema
 * lacks, written into buf; "the served version v1alpha1" when the CRD serves no such
 * version. Returns false when every field is there. */
bool sandbox_crd_missing_field(const json_t *crd, char *buf, size_t len);

#endif
