/* What moat-cri does with the calls it reads: RunPodSandbox is decided (decide.h) and
 * rewritten or refused, Status gains the logical handlers; every call is counted. These are
 * the relay's hooks (relay.h), plus the metrics they keep. */
#ifndef MOAT_SHIM_INTERCEPT_H
#define MOAT_SHIM_INTERCEPT_H

#include "decide.h"
#include "isolation/probe.h"
#include "relay.h"

typedef struct shim_intercept shim_intercept;

/* handlers (and the strings in it) and probe are borrowed and must outlive the object; the
 * probe result may be replaced with shim_intercept_set_probe (after a re-probe). */
int shim_intercept_new(shim_intercept **out, const shim_handlers *handlers,
                       const iso_probe_result *probe, moat_error *err);

/* Swaps in a new probe result; the old one stays owned by the caller. Thread-safe. */
void shim_intercept_set_probe(shim_intercept *s, const iso_probe_result *probe);

/* The hooks to give shim_relay_start. */
shim_hooks shim_intercept_hooks(shim_intercept *s);

/* Prometheus text: calls and latency per method and code, decisions per handler, refusals,
 * upstream errors. Caller frees. */
char *shim_intercept_metrics(shim_intercept *s);

void shim_intercept_free(shim_intercept *s);

#endif
