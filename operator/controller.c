#include "controller.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>
#include <time.h>

#include "libmoat/clock.h"
#include "libmoat/informer.h"
#include "libmoat/kobj.h"
#include "libmoat/lease.h"
#include "libmoat/log.h"
#include "libmoat/strbuf.h"
#include "libmoat/names.h"
#include "libmoat/recorder.h"
#include "libmoat/workqueue.h"
#include "mark.h"
#include "netpol.h"
#include "pod.h"
#include "schema.h"
#include "status.h"
#include "controller-internal.h"

void controller_enqueue(operator_controller *c, const char *key)
{
    moat_error err = MOAT_ERROR_INIT;
    if (workqueue_add(c->queue, key, &err) < 0 && err.code != MOAT_E_CANCELED)
        log_warn(key, "cannot queue: %s", err.message);
    moat_error_clear(&err);
}

/* ---- informer handlers (on the informer thread) -------------------------------------- */

static void sandbox_changed(void *user, json_t *obj)
{
    operator_controller *c = user;
    _cleanup_free_ char *key = kobj_key(obj);
    if (key)
        controller_enqueue(c, key);
}

const double controller_latency_buckets[N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1,    2.5,   5};
const char *const controller_phases[CONTROLLER_PHASES] = {"Pending", "Running", "Succeeded",
                                                          "Failed", "Expired"};
const char *const controller_runtimes[CONTROLLER_RUNTIMES] = {"gvisor", "kata", ""};
const char *const controller_session_ends[CONTROLLER_SESSION_ENDS] = {"Timeout", "IdleTimeout",
                                                                      "Exited", "PodDeleted"};

static bool is_session(const json_t *sbx)
{
    const char *mode = kobj_str(sbx, "spec.mode");
    return mode && strcmp(mode, "Session") == 0;
}

/* Adds delta to the counts obj falls in. */
static void count(operator_controller *c, const json_t *obj, long delta)
{
    const char *p = kobj_str(obj, "status.phase"), *r = kobj_str(obj, "status.isolation.runtime");
    for (size_t k = 0; k < ELEMENTSOF(controller_phases); k++)
        if (strcmp(p ? p : "Pending", controller_phases[k]) == 0)
            atomic_fetch_add(&c->by_phase[k], delta);
    for (size_t k = 0; k < ELEMENTSOF(controller_runtimes); k++)
        if (strcmp(r ? r : "", controller_runtimes[k]) == 0)
            atomic_fetch_add(&c->by_runtime[k], delta);
    if (p && strcmp(p, "Running") == 0 && is_session(obj))
        atomic_fetch_add(&c->sessions_running, delta);
}

static void sandbox_added(void *user, json_t *obj)
{
    count(user, obj, 1);
    sandbox_changed(user, obj);
}

static void sandbox_updated(void *user, json_t *old, json_t *obj)
{
    count(user, old, -1);
    count(user, obj, 1);
    sandbox_changed(user, obj);
}

static void sandbox_deleted(void *user, json_t *obj)
{
    count(user, obj, -1);
    sandbox_changed(user, obj);
}

static void pod_changed(void *user, json_t *pod)
{
    operator_controller *c = user;
    const char *owner = kobj_label(pod, MOAT_LABEL_SANDBOX), *ns = kobj_namespace(pod);
    char key[512];
    if (owner && ns && snprintf(key, sizeof(key), "%s/%s", ns, owner) < (int)sizeof(key))
        controller_enqueue(c, key);
}

static void pod_updated(void *user, json_t *old, json_t *pod)
{
    pod_changed(user, pod);
}

static void cluster_facts_read(operator_controller *c, cluster_facts *f);

/* A node's labels say what it can run. Only a Sandbox still waiting for a node that can run
 * it (no Pod yet: Scheduled is NoHypervisor or NoGPUPassthroughNode) may be helped, and only
 * when what the nodes can run changed: most Node events (heartbeats, other labels) wake
 * nobody, and a change wakes only those that wait. */
/* What the nodes can run now, as bits to compare. */
static int facts_bits_now(operator_controller *c)
{
    cluster_facts f;
    cluster_facts_read(c, &f);
    return (f.hypervisor_available ? 1 : 0) | (f.gpu_vm_available ? 2 : 0) |
           (f.gpu_container_available ? 4 : 0);
}

static void node_changed(void *user, json_t *node)
{
    operator_controller *c = user;
    int bits = facts_bits_now(c);
    if (atomic_exchange(&c->facts_bits, bits) == bits)
        return;
    json_t *all = kube_informer_list(c->sandboxes), *s;
    size_t i;
    json_array_foreach (all, i, s) {
        const char *phase = kobj_str(s, "status.phase");
        const char *why = kobj_str(kobj_condition(s, "status.conditions", "Scheduled"), "reason");
        if (phase && strcmp(phase, "Pending") == 0 && why &&
            (strcmp(why, "NoHypervisor") == 0 || strcmp(why, "NoGPUPassthroughNode") == 0))
            sandbox_changed(c, s);
    }
    json_decref(all);
}

static void node_updated(void *user, json_t *old, json_t *node)
{
    node_changed(user, node);
}

/* Drop what the controller never reads from cached Pods: their memory is the operator's. */
static void prune_pod(void *user, json_t *pod)
{
    json_t *status = json_object_get(pod, "status");
    static const char *const unread[] = {"hostIP",
                                         "hostIPs",
                                         "podIP",
                                         "podIPs",
                                         "qosClass",
                                         "initContainerStatuses",
                                         "ephemeralContainerStatuses"};
    for (size_t i = 0; json_is_object(status) && i < ELEMENTSOF(unread); i++)
        json_object_del(status, unread[i]);
    sandbox_mark_prune_spec(pod); /* spec: what placement and the mark's subject need */
}

/* Policies are read only for their names: their CEL is long. */
static void prune_policy(void *user, json_t *policy)
{
    json_object_del(policy, "spec");
}

/* ---- facts about the nodes ----------------------------------------------------------- */

static void cluster_facts_read(operator_controller *c, cluster_facts *f)
{
    *f = (cluster_facts){.now_s = time(NULL)};
    json_t *nodes = kube_informer_list(c->nodes), *n;
    size_t i;
    json_array_foreach (nodes, i, n) {
        const char *managed = kobj_label(n, c->cfg->managed_node_label);
        if (!managed || strcmp(managed, "true") != 0)
            continue;
        const char *hv = kobj_label(n, c->cfg->hypervisor_node_label);
        bool vm =
            hv && (strcmp(hv, MOAT_HYPERVISOR_KVM) == 0 || strcmp(hv, MOAT_HYPERVISOR_MSHV) == 0);
        const char *gpu = kobj_label(n, c->cfg->gpu_mode_node_label);
        f->hypervisor_available |= vm;
        if (gpu && strcmp(gpu, MOAT_GPU_MODE_VM) == 0 && vm)
            f->gpu_vm_available = true;
        if (gpu && strcmp(gpu, MOAT_GPU_MODE_CONTAINER) == 0)
            f->gpu_container_available = true;
    }
    json_decref(nodes);
}

/* ---- writes ------------------------------------------------------------------------- */

/* Every write first asks whether this replica still leads. */
bool controller_may_write(operator_controller *c)
{
    return !c->leader_elect || (c->leader && kube_leader_is_leading(c->leader));
}

sandbox_pod_claim controller_sandbox_pod(operator_controller *c, json_t **ret_pod, const char *key,
                                         const char *uid, char *why, size_t len)
{
    *ret_pod = NULL;
    /* By owner, not by name: a Pod made for a warm pool or a resume is named otherwise. The
     * index holds every Pod that names the uid in any owner reference, a tenant's forgery
     * included: sandbox_mark_pick keeps only a controller reference with the mark. */
    json_t *owned = uid ? kube_informer_by_owner(c->pods, uid) : NULL, *o;
    /* An owner reference names an owner in the Pod's own namespace: a Pod elsewhere naming
     * the uid is dropped before its mark is checked (an HMAC each, at a tenant's count). */
    size_t ns_len = strcspn(key, "/"), i;
    json_t *here = json_array();
    json_array_foreach (owned, i, o) {
        const char *ns = kobj_namespace(o);
        if (here && ns && strlen(ns) == ns_len && strncmp(ns, key, ns_len) == 0)
            json_array_append(here, o);
    }
    json_decref(owned);
    json_t *pod = json_incref((json_t *)sandbox_mark_pick(here, c->mark_key, uid));
    json_decref(here);
    if (pod) {
        /* A Pod of the Sandbox's name that is not ours is left alone then: no Pod of that
         * name will be created. */
        *ret_pod = pod;
        return SANDBOX_POD_OURS;
    }
    /* None of ours: the Pod of the Sandbox's name, the one a create would collide with, is
     * judged as before (an earlier Sandbox's: wait; a stranger's: reported). */
    pod = kube_informer_get(c->pods, key);
    if (!pod)
        return SANDBOX_POD_OURS;
    sandbox_pod_claim claim = sandbox_mark_claim(c->mark_key, pod, uid, why, len);
    if (claim == SANDBOX_POD_OURS)
        *ret_pod = pod; /* made between the two reads */
    else
        json_decref(pod);
    return claim;
}

static void record_transitions(operator_controller *c, const json_t *sbx, const json_t *old,
                               const json_t *new)
{
    const char *op = kobj_str(old, "phase"), *np = kobj_str(new, "phase");
    const char *on = kobj_str(old, "nodeName"), *nn = kobj_str(new, "nodeName");
    if (nn && !on)
        kube_recorder_event(c->recorder, sbx, "Normal", "Scheduled", "Pod scheduled to %s", nn);
    /* Isolation that is not what was asked, and Pods not the operator's: a Warning each
     * time the Isolated condition turns to that reason, and a count. */
    static const char *const alarms[] = {"IsolationMismatch", "NotIsolated", "UntrustedPod"};
    const json_t *iso = kobj_condition(new, "conditions", "Isolated");
    const char *ir = kobj_str(iso, "reason");
    const char *oir = kobj_str(kobj_condition(old, "conditions", "Isolated"), "reason");
    const char *m = kobj_str(iso, "message");
    for (size_t i = 0; ir && i < ELEMENTSOF(alarms); i++)
        if (strcmp(ir, alarms[i]) == 0 && !(oir && strcmp(oir, ir) == 0)) {
            kube_recorder_event(c->recorder, sbx, "Warning", alarms[i], "%s", m ? m : ir);
            atomic_fetch_add(&c->isolation_alarms[i], 1);
        }
    /* Why a Sandbox cannot be placed, by the Scheduled condition's reason (never by the
     * wording of a message): a Warning each time it turns to one. */
    static const char *const unplaceable[] = {"NoHypervisor", "NoGPUPassthroughNode"};
    const json_t *sc = kobj_condition(new, "conditions", "Scheduled");
    const char *sr = kobj_str(sc, "reason");
    const char *osr = kobj_str(kobj_condition(old, "conditions", "Scheduled"), "reason");
    for (size_t i = 0; sr && i < ELEMENTSOF(unplaceable); i++)
        if (strcmp(sr, unplaceable[i]) == 0 && !(osr && strcmp(osr, sr) == 0))
            kube_recorder_event(c->recorder, sbx, "Warning", sr, "%s",
                                kobj_str(sc, "message") ? kobj_str(sc, "message") : sr);
    if (!np || (op && strcmp(op, np) == 0))
        return;
    const char *msg = kobj_str(new, "message");
    const char *fin = kobj_str(kobj_condition(new, "conditions", "Finished"), "reason");
    if (is_session(sbx) && fin && kobj_str(new, "completionTime") &&
        !kobj_str(old, "completionTime"))
        for (size_t i = 0; i < ELEMENTSOF(controller_session_ends); i++)
            if (strcmp(fin, controller_session_ends[i]) == 0)
                atomic_fetch_add(&c->sessions_ended[i], 1);
    if (fin && strcmp(fin, "IdleTimeout") == 0 && strcmp(np, "Expired") == 0) {
        kube_recorder_event(c->recorder, sbx, "Normal", "IdleTimeout", "%s", msg ? msg : "idle");
        return;
    }
    if (strcmp(np, "Running") == 0)
        kube_recorder_event(c->recorder, sbx, "Normal", "Started", "the sandbox is running");
    else if (strcmp(np, "Succeeded") == 0)
        kube_recorder_event(c->recorder, sbx, "Normal", "Succeeded", "exited with code 0");
    else if (strcmp(np, "Failed") == 0)
        kube_recorder_event(c->recorder, sbx, "Warning", "Failed", "%s", msg ? msg : "failed");
    else if (strcmp(np, "Expired") == 0)
        kube_recorder_event(c->recorder, sbx, "Warning", "Expired", "%s",
                            msg ? msg : "exceeded its timeout");
}

/* ---- reconcile ----------------------------------------------------------------------- */

static outcome reconcile_sandbox(operator_controller *c, const char *key, int64_t *ret_after_s,
                                 moat_error *err)
{
    *ret_after_s = 0;
    json_t *sbx = kube_informer_get(c->sandboxes, key);
    if (!sbx)
        return DONE; /* deleted: its Pod goes with it (owner reference) */
    if (kobj_get(sbx, "metadata.deletionTimestamp")) {
        json_decref(sbx);
        return DONE;
    }
    const char *ns = kobj_namespace(sbx), *name = kobj_name(sbx), *uid = kobj_uid(sbx);
    outcome result = DONE;
    json_t *pod = NULL, *built = NULL;
    char untrusted[512];
    _cleanup_error_ moat_error spec_err = MOAT_ERROR_INIT;
    sandbox_plan plan = {0};

    if (sandbox_pod_build(&built, sbx, c->cfg, &spec_err) < 0 && spec_err.code != MOAT_E_INVALID) {
        moat_error_set(err, spec_err.code, "building the pod: %s", spec_err.message);
        result = FAILED;
        goto out;
    }
    if (built && sandbox_mark_set(built, c->mark_key, uid, err) < 0) {
        result = FAILED;
        goto out;
    }
    sandbox_view view = {.sandbox = sbx,
                         .spec_error = built ? NULL : spec_err.message,
                         .isolation = kobj_str(sbx, "spec.isolation")};
    int64_t timeout_ns = c->cfg->default_timeout_ns, ttl_ns = c->cfg->default_ttl_ns, idle_ns = 0;
    if (built) {
        _cleanup_error_ moat_error e2 = MOAT_ERROR_INIT;
        sandbox_timeout_ns(&timeout_ns, sbx, c->cfg, &e2);
        sandbox_ttl_ns(&ttl_ns, sbx, c->cfg, &e2);
        sandbox_idle_timeout_ns(&idle_ns, sbx, c->cfg, &e2);
        view.session = is_session(sbx);
        const char *iso = kobj_str(sbx, "spec.isolation");
        view.wants_vm = iso && strcmp(iso, "VM") == 0;
        int64_t gpus = 0;
        kobj_int(sbx, "spec.resources.gpu.count", &gpus);
        view.gpus = (int)gpus;
    }
    view.timeout_s = (timeout_ns + 999999999LL) / 1000000000LL; /* as activeDeadlineSeconds */
    view.ttl_s = ttl_ns / 1000000000LL;
    view.idle_s = (idle_ns + 999999999LL) / 1000000000LL; /* as the Pod's annotation */

    sandbox_pod_claim claim =
        controller_sandbox_pod(c, &pod, key, uid, untrusted, sizeof(untrusted));
    if (claim == SANDBOX_POD_WAIT) {
        *ret_after_s = 1;
        goto out;
    }
    if (claim == SANDBOX_POD_FOREIGN)
        view.untrusted_pod = untrusted;
    view.pod = pod;

    cluster_facts facts;
    cluster_facts_read(c, &facts);
    sandbox_plan_make(&plan, &view, &facts);

    if (!controller_may_write(c))
        goto out;
    if (plan.action == SANDBOX_ACTION_CREATE_POD) {
        /* No sandbox Pod before its namespace's policies are in place (the cache says so). */
        if (!netpol_sync_ready(c, ns) && !netpol_sync_wait(c, ns, key)) {
            char pkey[300];
            snprintf(pkey, sizeof(pkey), NETPOL_KEY "%s", ns);
            /* A key that failed waits out its backoff: queueing it now would skip that. */
            if (workqueue_num_requeues(c->queue, pkey) == 0)
                controller_enqueue(c, pkey);
            result = WAIT_POLICIES;
            goto out;
        }
        if (kube_create(c->client, NULL, &KUBE_PODS, ns, built, err) < 0) {
            if (!kube_error_is(err, KUBE_REASON_ALREADY_EXISTS)) {
                result = FAILED;
                goto out;
            }
            moat_error_clear(err);
            /* Made by an earlier pass (the cache will show it), or by someone else, without
             * the label the cache selects on: look, and never wait on a stranger's Pod. */
            json_t *found = NULL;
            if (kube_get(c->client, &found, &KUBE_PODS, ns, name, err) < 0) {
                result = kube_error_is(err, KUBE_REASON_NOT_FOUND) ? REQUEUE_NOW : FAILED;
                if (result == REQUEUE_NOW)
                    moat_error_clear(err);
                goto out;
            }
            sandbox_pod_claim whose =
                sandbox_mark_claim(c->mark_key, found, uid, untrusted, sizeof(untrusted));
            json_decref(found);
            if (whose != SANDBOX_POD_FOREIGN) {
                *ret_after_s = 1;
                goto out;
            }
            view.untrusted_pod = untrusted;
            sandbox_plan_clear(&plan);
            sandbox_plan_make(&plan, &view, &facts);
        } else {
            atomic_fetch_add(&c->pods_created, 1);
            kube_recorder_event(c->recorder, sbx, "Normal", "PodCreated", "created pod %s", name);
        }
    }
    json_t *old_status = kobj_get(sbx, "status");
    if (sandbox_status_changed(old_status, plan.status)) {
        json_t *copy = json_deep_copy(sbx);
        json_object_set(copy, "status", plan.status);
        int r = kube_update_status(c->client, NULL, &KUBE_SANDBOXES, copy, err);
        json_decref(copy);
        if (r < 0) {
            if (kube_error_is(err, KUBE_REASON_CONFLICT)) {
                atomic_fetch_add(&c->conflicts, 1);
                moat_error_clear(err);
                result = REQUEUE_NOW; /* the cache has a newer Sandbox, or soon will */
            } else if (kube_error_is(err, KUBE_REASON_NOT_FOUND)) {
                moat_error_clear(err);
            } else {
                result = FAILED;
            }
            goto out;
        }
        atomic_fetch_add(&c->status_writes, 1);
        record_transitions(c, sbx, old_status, plan.status);
    }
    if (plan.action == SANDBOX_ACTION_STOP_POD && pod) {
        /* Status first (above): the Sandbox says IdleTimeout whatever kubelet reports next.
         * activeDeadlineSeconds may only go down, and kubelet stops the Pod at it, keeping its
         * log for the TTL, where a delete would lose it. */
        json_t *patch = json_pack("{s:{s:I}}", "spec", "activeDeadlineSeconds",
                                  (json_int_t)plan.stop_deadline_s);
        int r = patch ? kube_patch(c->client, NULL, &KUBE_PODS, ns, name, KUBE_PATCH_MERGE, patch,
                                   NULL, err)
                      : moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        json_decref(patch);
        if (r < 0) {
            if (!kube_error_is(err, KUBE_REASON_NOT_FOUND)) {
                result = FAILED;
                goto out;
            }
            moat_error_clear(err);
        } else {
            atomic_fetch_add(&c->idle_stops, 1);
            log_info(key, "idle for its idleTimeout: stopping its pod");
        }
    }
    if (plan.action == SANDBOX_ACTION_DELETE_SANDBOX) {
        kube_delete_options d = {.precondition_uid = uid, .propagation = "Background"};
        if (kube_delete(c->client, NULL, &KUBE_SANDBOXES, ns, name, &d, err) < 0) {
            if (!kube_error_is(err, KUBE_REASON_NOT_FOUND) &&
                !kube_error_is(err, KUBE_REASON_CONFLICT)) {
                result = FAILED;
                goto out;
            }
            moat_error_clear(err);
        } else {
            atomic_fetch_add(&c->deletes, 1);
            log_info(key, "ttlAfterFinished is over: deleted the sandbox");
        }
    }
    *ret_after_s = plan.requeue_after_s;
out:
    sandbox_plan_clear(&plan);
    json_decref(built);
    json_decref(pod);
    json_decref(sbx);
    return result;
}

outcome controller_reconcile(operator_controller *c, const char *key, int64_t *ret_after_s,
                             moat_error *err)
{
    outcome o = reconcile_sandbox(c, key, ret_after_s, err);
    /* waiting for its namespace's policies only while its last look ended so (a deleted
     * Sandbox's key is looked at once more, and leaves then) */
    if (o != WAIT_POLICIES)
        netpol_sync_unwait(c, key);
    return o;
}

static void observe_latency(operator_controller *c, double seconds)
{
    size_t i = 0;
    while (i < N_BUCKETS && seconds > controller_latency_buckets[i])
        i++;
    atomic_fetch_add(&c->latency_buckets[i], 1);
    double cur = atomic_load(&c->latency_sum);
    while (!atomic_compare_exchange_weak(&c->latency_sum, &cur, cur + seconds))
        ;
}

static void *worker(void *arg)
{
    operator_controller *c = arg;
    char *key;
    while (workqueue_get(c->queue, &key) == 0) {
        _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
        int64_t after = 0, t0 = moat_mono_ns();
        outcome o = strncmp(key, NETPOL_KEY, strlen(NETPOL_KEY)) == 0
                        ? netpol_sync(c, key + strlen(NETPOL_KEY), &err)
                        : controller_reconcile(c, key, &after, &err);
        observe_latency(c, (double)(moat_mono_ns() - t0) / 1e9);
        moat_error qerr = MOAT_ERROR_INIT;
        if (o == FAILED) {
            atomic_fetch_add(&c->reconcile_errors, 1);
            log_warn(key, "reconcile failed (retry %d): %s", workqueue_num_requeues(c->queue, key),
                     err.message);
            workqueue_add_rate_limited(c->queue, key, &qerr);
        } else if (o == REQUEUE_NOW) {
            atomic_fetch_add(&c->requeues, 1);
            workqueue_add_after(c->queue, key, CONFLICT_RETRY, &qerr);
        } else if (o == WAIT_POLICIES) {
            /* woken by the policies' watch; meanwhile the key's own backoff, outside the
             * global bucket (a burst of Sandboxes in a new namespace would otherwise queue
             * behind each other's waits): a namespace whose policies never come costs less
             * and less */
            atomic_fetch_add(&c->requeues, 1);
            workqueue_add_backoff(c->queue, key, POLICY_WAIT_CAP_NS, &qerr);
        } else {
            atomic_fetch_add(&c->reconcile_successes, 1);
            workqueue_forget(c->queue, key);
            if (after > 0)
                workqueue_add_after(c->queue, key, after * 1000000000LL, &qerr);
        }
        moat_error_clear(&qerr);
        workqueue_done(c->queue, key);
        free(key);
    }
    return NULL;
}

/* ---- leadership and lifetime --------------------------------------------------------- */

static void wake(operator_controller *c, bool lost)
{
    pthread_mutex_lock(&c->lock);
    if (lost && !c->stop)
        c->lost = true;
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void on_started(void *user)
{
    operator_controller *c = user;
    log_info(NULL, "this replica leads now: reconciling");
    atomic_store(&c->leading, true);
    pthread_mutex_lock(&c->lock);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void on_stopped(void *user, const char *why)
{
    operator_controller *c = user;
    log_warn(NULL, "this replica stopped leading (%s): its work stops", why);
    atomic_store(&c->leading, false);
    wake(c, true);
}

void controller_stop(operator_controller *c)
{
    wake(c, false);
}

/* The first required policy missing from cache (as "ValidatingAdmissionPolicy NAME" or
 * "...Binding NAME"), written into buf; false when all are there. */
static bool missing_policy(operator_controller *c, char *buf, size_t len)
{
    for (char **p = c->cfg->required_policies; *p; p++) {
        struct {
            kube_informer *inf;
            const char *kind;
        } both[] = {{c->policies, "ValidatingAdmissionPolicy"},
                    {c->bindings, "ValidatingAdmissionPolicyBinding"}};
        for (size_t i = 0; i < ELEMENTSOF(both); i++) {
            json_t *o = kube_informer_get(both[i].inf, *p);
            /* A binding must bind the policy of its name, and deny. */
            bool ok = o != NULL;
            if (o && both[i].inf == c->bindings) {
                const char *name = kobj_str(o, "spec.policyName");
                json_t *actions = kobj_get(o, "spec.validationActions"), *a;
                size_t k;
                bool deny = false;
                json_array_foreach (actions, k, a)
                    deny |= json_is_string(a) && strcmp(json_string_value(a), "Deny") == 0;
                ok = name && strcmp(name, *p) == 0 && deny;
            }
            json_decref(o);
            if (!ok) {
                snprintf(buf, len, "%s %s", both[i].kind, *p);
                return true;
            }
        }
    }
    return false;
}

/* How long /readyz trusts its last look at the Sandbox CRD. */
#define CRD_CHECK_NS (10LL * 1000000000LL)

/* Why the served Sandbox CRD is not enough for this operator, into buf ("" when it is);
 * looked up at most every CRD_CHECK_NS. */
static void crd_problem(operator_controller *c, char *buf, size_t len)
{
    int64_t now = moat_mono_ns();
    pthread_mutex_lock(&c->lock);
    bool fresh = c->crd_checked_ns && now - c->crd_checked_ns < CRD_CHECK_NS;
    if (fresh)
        snprintf(buf, len, "%s", c->crd_problem);
    pthread_mutex_unlock(&c->lock);
    if (fresh)
        return;
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    json_t *crd = NULL;
    char field[64];
    if (kube_get(c->client, &crd, &KUBE_CUSTOMRESOURCEDEFINITIONS, NULL, SANDBOX_CRD_NAME, &err) <
        0)
        snprintf(buf, len, "the Sandbox CRD could not be read: %s", err.message);
    else if (sandbox_crd_missing_field(crd, field, sizeof field))
        snprintf(buf, len,
                 "the served Sandbox CRD lacks %s, which this operator uses: apply "
                 "crds/moat.dev_sandboxes.yaml of this release (Helm never upgrades CRDs)",
                 field);
    else
        buf[0] = '\0';
    json_decref(crd);
    pthread_mutex_lock(&c->lock);
    c->crd_checked_ns = now;
    snprintf(c->crd_problem, sizeof c->crd_problem, "%s", buf);
    pthread_mutex_unlock(&c->lock);
}

char *controller_unready(operator_controller *c)
{
    char *why = NULL, missing[320];
    pthread_mutex_lock(&c->lock);
    bool synced = c->ready;
    pthread_mutex_unlock(&c->lock);
    if (!synced)
        return strdup("caches not synced\n");
    char crd[512];
    crd_problem(c, crd, sizeof crd);
    if (*crd) {
        if (asprintf(&why, "%s\n", crd) < 0)
            return strdup("not ready\n");
        return why;
    }
    if (!c->policies)
        return NULL;
    if (!kube_informer_has_synced(c->policies) || !kube_informer_has_synced(c->bindings))
        return strdup("admission policies not read yet (can it list "
                      "validatingadmissionpolicies and their bindings?)\n");
    if (missing_policy(c, missing, sizeof(missing)) &&
        asprintf(&why,
                 "%s is missing or does not deny: without it tenants are not held to the "
                 "Sandbox's rules (README: Threat model)\n",
                 missing) < 0)
        return strdup("not ready\n");
    return why;
}

int controller_new(operator_controller **out, const controller_options *o, moat_error *err)
{
    operator_controller *c = calloc(1, sizeof(*c));
    if (c)
        atomic_init(&c->facts_bits, -1);
    if (!c)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    c->client = o->client;
    c->cfg = o->config;
    c->identity = strdup(o->identity ? o->identity : "moat-operator");
    c->lease_namespace = strdup(o->lease_namespace ? o->lease_namespace : "moat-system");
    c->lease_name = strdup(o->lease_name ? o->lease_name : "moat-operator");
    c->leader_elect = o->leader_elect;
    c->applied = json_object();
    c->pending = json_object();
    c->waiting = json_object();
    pthread_mutex_init(&c->applied_lock, NULL);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (!c->identity || !c->lease_namespace || !c->lease_name || !c->applied || !c->pending ||
        !c->waiting) {
        controller_free(c);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    if (sandbox_mark_key_load(&c->mark_key, c->cfg->mark_key_file, err) < 0) {
        controller_free(c);
        return -1;
    }

    static const char *const pod_indexes[] = {MOAT_LABEL_SANDBOX, NULL};
    /* Sandboxes and their Pods are many and read one at a time: compact caches. */
    kube_informer_options so = {.resource = &KUBE_SANDBOXES, .compact_cache = true};
    kube_informer_options po = {.resource = &KUBE_PODS,
                                .label_selector = MOAT_LABEL_SANDBOX,
                                .label_indexes = pod_indexes,
                                .index_owners = true, /* controller_sandbox_pod */
                                .transform = prune_pod,
                                .compact_cache = true};
    kube_informer_options no = {.resource = &KUBE_NODES};
    kube_informer_options vo = {.resource = &KUBE_VALIDATINGADMISSIONPOLICIES,
                                .transform = prune_policy};
    kube_informer_options bo = {.resource = &KUBE_VALIDATINGADMISSIONPOLICYBINDINGS};
    kube_informer_options npo = {.resource = &KUBE_NETWORKPOLICIES,
                                 .label_selector =
                                     SANDBOX_NETPOL_MANAGED_BY_KEY "=" SANDBOX_NETPOL_MANAGED_BY};
    kube_informer_handlers nph = {netpol_sync_changed, netpol_sync_updated, netpol_sync_deleted, c};
    kube_informer_handlers sh = {sandbox_added, sandbox_updated, sandbox_deleted, c};
    kube_informer_handlers ph = {pod_changed, pod_updated, pod_changed, c};
    kube_informer_handlers nh = {node_changed, node_updated, node_changed, c};
    workqueue_options qo = {0};
    if (kube_loop_new(&c->loop, c->client, err) < 0 ||
        kube_informer_new(&c->sandboxes, c->loop, &so, &sh, err) < 0 ||
        kube_informer_new(&c->pods, c->loop, &po, &ph, err) < 0 ||
        kube_informer_new(&c->nodes, c->loop, &no, &nh, err) < 0 ||
        kube_informer_new(&c->netpols, c->loop, &npo, &nph, err) < 0 ||
        netpol_sync_init(c, err) < 0 ||
        (*c->cfg->required_policies &&
         (kube_informer_new(&c->policies, c->loop, &vo, NULL, err) < 0 ||
          kube_informer_new(&c->bindings, c->loop, &bo, NULL, err) < 0)) ||
        workqueue_new(&c->queue, &qo, err) < 0 ||
        kube_recorder_new(&c->recorder, c->client, FIELD_MANAGER, c->identity, err) < 0) {
        controller_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int controller_run(operator_controller *c, moat_error *err)
{
    pthread_t workers[MAX_WORKERS];
    int n = c->cfg->workers > 0 && c->cfg->workers <= MAX_WORKERS ? c->cfg->workers : 4;
    int started = 0;

    if (kube_loop_start(c->loop, err) < 0)
        return -1;
    kube_informer *all[] = {c->sandboxes, c->pods, c->nodes, c->netpols};
    for (size_t i = 0; i < ELEMENTSOF(all); i++)
        if (kube_informer_wait_synced(all[i], SYNC_TIMEOUT_NS) < 0)
            return moat_error_set(err, MOAT_E_NETWORK, "caches did not sync in %llds",
                                  SYNC_TIMEOUT_NS / 1000000000LL);
    pthread_mutex_lock(&c->lock);
    c->ready = true;
    pthread_mutex_unlock(&c->lock);
    /* what the nodes could run at the start: a later Node event that changes none of it
     * wakes nobody (every Sandbox is reconciled once after the sync anyway) */
    atomic_store(&c->facts_bits, facts_bits_now(c));
    log_info(NULL, "caches synced: %zu sandboxes, %zu pods, %zu nodes",
             kube_informer_size(c->sandboxes), kube_informer_size(c->pods),
             kube_informer_size(c->nodes));

    /* An operator newer than its CRD would write fields the API server prunes (a status
     * that never settles) and read Sessions as Runs: it takes no lease and reconciles
     * nothing until the CRD is applied; /readyz says why meanwhile. */
    for (bool said = false;;) {
        char crd[512];
        crd_problem(c, crd, sizeof crd);
        if (!*crd)
            break;
        if (!said)
            log_warn(NULL, "waiting: %s", crd);
        said = true;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += CRD_CHECK_NS / 1000000000LL;
        pthread_mutex_lock(&c->lock);
        if (!c->stop)
            pthread_cond_timedwait(&c->cond, &c->lock, &until);
        bool stop = c->stop;
        pthread_mutex_unlock(&c->lock);
        if (stop)
            return 0;
    }

    if (c->leader_elect) {
        kube_leader_options lo = {.namespace = c->lease_namespace,
                                  .name = c->lease_name,
                                  .identity = c->identity,
                                  .on_started = on_started,
                                  .on_stopped = on_stopped,
                                  .user = c};
        if (kube_leader_start(&c->leader, c->client, &lo, err) < 0)
            return -1;
        pthread_mutex_lock(&c->lock);
        while (!c->stop && !atomic_load(&c->leading))
            pthread_cond_wait(&c->cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
    } else {
        atomic_store(&c->leading, true);
    }

    pthread_mutex_lock(&c->lock);
    bool stopping = c->stop;
    pthread_mutex_unlock(&c->lock);
    if (!stopping) {
        /* Everything in the cache gets one pass; the handlers queued it already, but a
         * Sandbox may need work with nothing changing (a TTL, a timeout). */
        json_t *sbxs = kube_informer_list(c->sandboxes), *s;
        size_t i;
        json_array_foreach (sbxs, i, s)
            sandbox_changed(c, s);
        json_decref(sbxs);
        for (; started < n; started++)
            if (pthread_create(&workers[started], NULL, worker, c) != 0)
                break;
        log_info(NULL, "%s leads: %d workers reconciling", c->identity, started);
    }

    pthread_mutex_lock(&c->lock);
    while (!c->stop)
        pthread_cond_wait(&c->cond, &c->lock);
    bool lost = c->lost;
    pthread_mutex_unlock(&c->lock);

    if (lost) {
        /* Not the leader any more: stop at once; what is in flight cannot write (may_write). */
        workqueue_shutdown(c->queue);
    } else {
        workqueue_shutdown_drain(c->queue);
        workqueue_shutdown(c->queue);
    }
    for (int i = 0; i < started; i++)
        pthread_join(workers[i], NULL);
    kube_leader_stop(c->leader); /* gives the Lease up if still held */
    c->leader = NULL;
    kube_loop_stop(c->loop);
    if (lost)
        return moat_error_set(err, MOAT_E_CANCELED, "lost the leader lease");
    return 0;
}

void controller_free(operator_controller *c)
{
    if (!c)
        return;
    kube_leader_stop(c->leader);
    kube_loop_free(c->loop);
    workqueue_free(c->queue);
    if (c->recorder)
        kube_recorder_free(c->recorder, 2 * 1000000000LL);
    sandbox_mark_key_free(c->mark_key);
    json_decref(c->applied);
    json_decref(c->pending);
    json_decref(c->waiting);
    pthread_mutex_destroy(&c->applied_lock);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c->identity);
    free(c->lease_namespace);
    free(c->lease_name);
    free(c);
}
