/* What the operator's controller modules share (controller.c: informers, reconcile, workers,
 * leadership; netpol_sync.c: each namespace's NetworkPolicies; metrics.c: /metrics): the
 * controller's state and the few calls between them. Not a contract for anything else. */
#ifndef MOAT_OPERATOR_CONTROLLER_INTERNAL_H
#define MOAT_OPERATOR_CONTROLLER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "controller.h"
#include "libmoat/informer.h"
#include "libmoat/lease.h"
#include "libmoat/recorder.h"
#include "libmoat/workqueue.h"
#include "mark.h"

#define MAX_WORKERS     64
#define FIELD_MANAGER   "moat-operator"
#define CONFLICT_RETRY  (5 * 1000000LL)
#define SYNC_TIMEOUT_NS (120 * 1000000000LL)

/* Reconcile latency histogram buckets, in seconds. */
#define N_BUCKETS 12
extern const double controller_latency_buckets[N_BUCKETS];

/* What the Sandbox counts are by: phases, and the runtime their node reported ("" until). */
#define CONTROLLER_PHASES   5
#define CONTROLLER_RUNTIMES 3
extern const char *const controller_phases[CONTROLLER_PHASES];
extern const char *const controller_runtimes[CONTROLLER_RUNTIMES];
/* The Finished reasons that end a Session. */
#define CONTROLLER_SESSION_ENDS 4
extern const char *const controller_session_ends[CONTROLLER_SESSION_ENDS];

struct operator_controller {
    kube_client *client;
    const operator_config *cfg;
    char *identity, *lease_namespace, *lease_name;
    bool leader_elect;

    kube_loop *loop;
    kube_informer *sandboxes, *pods, *nodes;
    /* The chart's admission policies and their bindings: /readyz names one that is missing
     * (cfg->required_policies; no informers when that list is empty). */
    kube_informer *policies, *bindings;
    sandbox_mark_key *mark_key;
    workqueue *queue;
    kube_recorder *recorder;
    kube_leader *leader;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop, lost, ready;

    /* The NetworkPolicies of each namespace with Sandboxes, kept level-based: an informer on
     * the operator's policies, one work-queue key per namespace (NETPOL_KEY), and the hash
     * of each policy's spec, carried in an annotation, to see that one is as built. */
    kube_informer *netpols;
    char netpol_names[2][64], netpol_hashes[2][65];
    /* "ns/name" -> the hash of the spec the API server answered our last apply with: a
     * cached policy whose spec hashes otherwise was changed by someone else. */
    pthread_mutex_t applied_lock;
    json_t *applied;
    /* "ns/name" -> when (moat_mono_ns) this process applied a policy the watch has not
     * brought yet: for NETPOL_PENDING_NS it counts as there, a lagging cache being no reason
     * to apply again; after that it is missing (a watch that lost its events). */
    json_t *pending;
    /* ns -> {"ns/name": true}: the Sandboxes waiting for ns's policies before their Pod
     * (WAIT_POLICIES), queued at once when the watch brings one of them; their own backoff,
     * capped at POLICY_WAIT_CAP_NS, is only the fallback. Under applied_lock. */
    json_t *waiting;

    /* One counter per result of a reconcile: a result computed by subtracting counters
     * read one after another wraps when a worker counts between the reads. */
    atomic_uint_fast64_t reconcile_successes, reconcile_errors, requeues, pods_created,
        status_writes, conflicts, deletes, netpol_applies;
    /* Isolated turned IsolationMismatch, NotIsolated, UntrustedPod (record_transitions) */
    atomic_uint_fast64_t isolation_alarms[3];
    atomic_uint_fast64_t latency_buckets[N_BUCKETS + 1];
    _Atomic double latency_sum;
    atomic_bool leading;
    atomic_int facts_bits; /* what the nodes could run when last looked at; -1: not yet */
    /* Sandboxes by phase and by reported runtime, kept by the informer's handlers (a scrape
     * of /metrics never walks the cache) */
    atomic_long by_phase[CONTROLLER_PHASES], by_runtime[CONTROLLER_RUNTIMES];
    atomic_long sessions_running; /* Sessions in phase Running, by the same handlers */
    atomic_uint_fast64_t sessions_ended[CONTROLLER_SESSION_ENDS]; /* by Finished reason */
    atomic_uint_fast64_t idle_stops; /* idle Sessions whose Pod was told to stop */
    /* The served Sandbox CRD, as /readyz last looked (schema.h), under lock: when
     * (moat_mono_ns; 0: never), and why it is not enough ("" when it is). */
    int64_t crd_checked_ns;
    char crd_problem[512];
};

/* What a reconcile asks of the worker: nothing more, a quick retry (a conflict), a retry
 * with backoff (a failure), or a wait for its namespace's NetworkPolicies (woken by their
 * watch, netpol_sync_wait). */
typedef enum { DONE, REQUEUE_NOW, FAILED, WAIT_POLICIES } outcome;

/* Reconciles the Sandbox of key ("ns/name") once, from the caches: creates its Pod, writes
 * its status through /status with the resourceVersion it read, deletes it when its TTL is
 * over. *ret_after_s is always written: > 0 asks for another look after that many seconds
 * (with DONE). FAILED leaves err set; every other outcome leaves it clear. The worker's
 * step, called directly by the unit tests. */
outcome controller_reconcile(operator_controller *c, const char *key, int64_t *ret_after_s,
                             moat_error *err);

/* Queues a key for the workers (a warning when it cannot). */
void controller_enqueue(operator_controller *c, const char *key);

/* Whether this replica may write: it leads, or there is no election. */
bool controller_may_write(operator_controller *c);

/* The Sandbox's Pod in the Pod cache, and whose it is. A Pod is the Sandbox's by its
 * controller reference and the operator's mark (sandbox_mark_pick over the Pods that name
 * uid as owner), never by its name. When none is, the Pod named after the Sandbox (key
 * "ns/name": the name a create would take) is judged by sandbox_mark_claim: an earlier
 * Sandbox's is SANDBOX_POD_WAIT, a stranger's SANDBOX_POD_FOREIGN with why[len] written.
 * SANDBOX_POD_OURS and *ret_pod a new reference the caller releases: the Pod; or
 * SANDBOX_POD_OURS and *ret_pod NULL: no Pod in the way yet. *ret_pod is always written
 * (NULL but for a Pod of ours). */
sandbox_pod_claim controller_sandbox_pod(operator_controller *c, json_t **ret_pod, const char *key,
                                         const char *uid, char *why, size_t len);

/* A namespace's NetworkPolicies are one work-queue key of their own (NETPOL_KEY "<ns>"), so
 * no two workers apply them at once. A Sandbox key always holds a '/', this one never. */
#define NETPOL_KEY "networkpolicies:"

/* The policies every namespace gets: their names and spec hashes (at start). */
int netpol_sync_init(operator_controller *c, moat_error *err);

/* Whether the cache shows every policy of ns as built; queues ns's key when one is not the
 * spec the operator applied. */
bool netpol_sync_ready(operator_controller *c, const char *ns);

/* Sandbox key waits for ns's policies: it is queued when the watch next brings one of
 * them. Then whether the cache shows them all now (netpol_sync_ready again, so that one
 * brought between the caller's look and the registration is not missed); the key may be
 * woken once for nothing, which costs a reconcile. */
bool netpol_sync_wait(operator_controller *c, const char *ns, const char *key);

/* Sandbox key ("ns/name") no longer waits: its reconcile ended otherwise than WAIT_POLICIES
 * (controller_reconcile calls it). */
void netpol_sync_unwait(operator_controller *c, const char *key);

/* The longest a Sandbox waiting for its namespace's policies goes without a look of its
 * own, should no event wake it. */
#define POLICY_WAIT_CAP_NS (10 * 1000000000LL)

/* The NETPOL_KEY reconcile: every policy of a namespace that has Sandboxes, applied where
 * the cache lacks it or holds another spec (deleted or edited by hand). */
outcome netpol_sync(operator_controller *c, const char *ns, moat_error *err);

/* How long a policy this process applied counts as there while the watch has yet to bring
 * it (a lagging cache is no reason to apply again); then it is missing. */
#define NETPOL_PENDING_NS (5 * 1000000000LL)

/* The policies' informer handlers: a change queues its namespace's key (and ends the
 * policy's pending moment); a deletion also forgets that this process applied it. */
void netpol_sync_changed(void *user, json_t *policy);
void netpol_sync_updated(void *user, json_t *old, json_t *policy);
void netpol_sync_deleted(void *user, json_t *policy);

#endif
