/* What moat-cri does with the calls it reads: RunPodSandbox is decided (decide.h) and
 * rewritten or refused, Status gains the logical handlers; every call is counted. These are
 * the relay's hooks (relay.h), plus the metrics they keep.
 *
 * With an egress wall (cri-shim/wall.h), a walled pod (messages.h: shim_wall_facts) is
 * walled when its PodSandboxStatus first shows its addresses (kubelet asks for it right
 * after RunPodSandbox, before it creates a container): a worker thread looks up its
 * interfaces on the node and its DNS servers (shim_pod_network) and raises the wall. Its
 * CreateContainer waits while that runs (the relay puts the call off, other calls go on),
 * and is refused when it is not walled (fail closed, kubelet retries); its
 * RemovePodSandbox takes it out. A pod that is not walled releases an address a missed
 * removal left walled. No nftables transaction runs on the relay's thread or under the
 * lock the hooks and the metrics take. */
#ifndef MOAT_SHIM_INTERCEPT_H
#define MOAT_SHIM_INTERCEPT_H

#include <stdbool.h>
#include <stddef.h>

#include "activity.h"
#include "decide.h"
#include "isolation/probe/probe.h"
#include "cri-shim/wall.h"
#include "relay.h"

typedef struct shim_intercept shim_intercept;

/* Where a walled pod's network is: the node's ends of its interfaces and its DNS servers
 * (NULL-terminated lists the caller frees with moat_strv_free). The real one is
 * podnet.h's; tests give their own. Called on the wall's worker thread. */
typedef struct {
    int (*lookup)(void *user, const char *sandbox_id, char ***ret_devices, char ***ret_dns,
                  moat_error *err);
    void *user;
} shim_pod_network;

/* handlers (and the strings in it), probe, wall and net's user are borrowed and must
 * outlive the object; the probe result may be replaced with shim_intercept_set_probe
 * (after a re-probe). wall NULL: no egress wall (egressWall.mode none), net unused; else
 * the wall belongs to the object's worker until shim_intercept_free. */
int shim_intercept_new(shim_intercept **out, const shim_handlers *handlers,
                       const iso_probe_result *probe, iso_wall *wall, const shim_pod_network *net,
                       moat_error *err);

/* Records sessions' activity (activity.h) in activity from now on: every Exec, Attach and
 * PortForward start, and the removals. Borrowed; it must outlive the object. Thread-safe. */
void shim_intercept_set_activity(shim_intercept *s, shim_activity *activity);

/* Swaps in a new probe result; the old one stays owned by the caller. Thread-safe. */
void shim_intercept_set_probe(shim_intercept *s, const iso_probe_result *probe);

/* The hooks to give shim_relay_start. */
shim_hooks shim_intercept_hooks(shim_intercept *s);

/* Prometheus text: calls and latency per method and code, decisions per handler, refusals,
 * upstream errors, the egress wall's sandboxes and failures. Caller frees. */
char *shim_intercept_metrics(shim_intercept *s);

/* How often moat-cri puts its egress wall back (main.c): the bound on how long a flushed
 * ruleset, a deleted table or a removed element stays so. */
#define SHIM_WALL_REASSERT_S    5
#define SHIM_WALL_REASSERT_TEXT "5 s"

/* Puts the egress wall back as it should be (iso_wall_reassert) with extra as its further
 * blocked destinations; counted in the metrics. No wall: nothing, 0. Thread-safe. */
int shim_intercept_wall_reassert(shim_intercept *s, const char *const *extra, size_t n_extra,
                                 bool *ret_restored, moat_error *err);

void shim_intercept_free(shim_intercept *s);

#endif
