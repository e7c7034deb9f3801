/* Each namespace's NetworkPolicies, kept level-based: one work-queue key per namespace, an
 * informer on the operator's policies, and the hash of each policy's spec, carried in an
 * annotation and remembered from the API server's answer, to see that one is as built. */
#include <openssl/sha.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller-internal.h"
#include "libmoat/clock.h"
#include "libmoat/kobj.h"
#include "libmoat/log.h"
#include "libmoat/macro.h"
#include "netpol.h"

#define NETPOL_HASH_ANNOTATION "moat.dev/spec-sha256"

/* SHA-256 of the policy's spec as canonical JSON, in hex, into out[65]; false when out of
 * memory. */
static bool spec_hash(char out[65], const json_t *policy)
{
    _cleanup_free_ char *text =
        json_dumps(json_object_get(policy, "spec"), JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char d[SHA256_DIGEST_LENGTH];
    if (!text || !SHA256((const unsigned char *)text, strlen(text), d))
        return false;
    for (size_t i = 0; i < sizeof(d); i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    return true;
}

/* How the cache's copy of policy `key` compares with what the operator applied. */
typedef enum {
    NETPOL_MISSING, /* not in the cache (nor just applied), or built from another configuration */
    NETPOL_CHANGED, /* its spec is not what the API server answered our apply with */
    NETPOL_UNKNOWN, /* ours, but not applied by this process yet (after a restart) */
    NETPOL_PENDING, /* not in the cache, but applied by this process moments ago */
    NETPOL_SAME,
} netpol_state;

static netpol_state netpol_compare(operator_controller *c, const char *key, size_t i)
{
    json_t *p = kube_informer_get(c->netpols, key);
    if (!p) {
        /* Applied by this process moments ago, and the watch has not brought it yet: the
         * API server has it as built (a deletion since comes as an event, which forgets the
         * apply; a watch that lost events is caught when the moment is over). */
        pthread_mutex_lock(&c->applied_lock);
        json_t *at = json_object_get(c->pending, key);
        bool pending = at && moat_mono_ns() - json_integer_value(at) < NETPOL_PENDING_NS;
        pthread_mutex_unlock(&c->applied_lock);
        return pending ? NETPOL_PENDING : NETPOL_MISSING;
    }
    const char *h = kobj_annotation(p, NETPOL_HASH_ANNOTATION);
    char now[65];
    netpol_state st = NETPOL_MISSING;
    if (p && h && strcmp(h, c->netpol_hashes[i]) == 0 && spec_hash(now, p)) {
        pthread_mutex_lock(&c->applied_lock);
        const char *applied = json_string_value(json_object_get(c->applied, key));
        st = !applied ? NETPOL_UNKNOWN : strcmp(applied, now) == 0 ? NETPOL_SAME : NETPOL_CHANGED;
        pthread_mutex_unlock(&c->applied_lock);
    }
    json_decref(p);
    return st;
}

/* Whether the cache shows every policy of ns as built (a policy edited by hand is put back
 * by its own key; it still fences the namespace meanwhile, so Pods wait only for a missing
 * one). */
bool netpol_sync_ready(operator_controller *c, const char *ns)
{
    char key[512];
    bool ready = true, recheck = false;
    for (size_t i = 0; i < ELEMENTSOF(c->netpol_names); i++) {
        snprintf(key, sizeof(key), "%s/%s", ns, c->netpol_names[i]);
        netpol_state st = netpol_compare(c, key, i);
        /* pending: applied moments ago, but not yet seen by the watch, which is what would
         * tell of a deletion since: Pods wait for it (milliseconds, usually) */
        ready &= st != NETPOL_MISSING && st != NETPOL_PENDING;
        recheck |= st != NETPOL_SAME && st != NETPOL_PENDING;
    }
    if (ready && recheck) {
        snprintf(key, sizeof(key), NETPOL_KEY "%s", ns);
        controller_enqueue(c, key);
    }
    return ready;
}

bool netpol_sync_wait(operator_controller *c, const char *ns, const char *key)
{
    pthread_mutex_lock(&c->applied_lock);
    json_t *keys = json_object_get(c->waiting, ns);
    if (!keys && json_object_set_new(c->waiting, ns, keys = json_object()) < 0)
        keys = NULL;
    if (keys)
        json_object_set_new(keys, key, json_true());
    pthread_mutex_unlock(&c->applied_lock);
    /* out of memory: not registered, the key's own backoff still brings it back */
    return netpol_sync_ready(c, ns);
}

void netpol_sync_unwait(operator_controller *c, const char *key)
{
    const char *slash = strchr(key, '/');
    char ns[300];
    if (!slash || slash - key >= (ptrdiff_t)sizeof(ns))
        return;
    memcpy(ns, key, (size_t)(slash - key));
    ns[slash - key] = '\0';
    pthread_mutex_lock(&c->applied_lock);
    json_t *keys = json_object_get(c->waiting, ns);
    json_object_del(keys, key);
    if (keys && json_object_size(keys) == 0)
        json_object_del(c->waiting, ns);
    pthread_mutex_unlock(&c->applied_lock);
}

/* The Sandboxes waiting for ns's policies, queued now (the watch brought one), their count of
 * waits forgotten: a failure after the wait backs off from the base delay. */
static void wake_waiting(operator_controller *c, const char *ns)
{
    pthread_mutex_lock(&c->applied_lock);
    json_t *keys = json_incref(json_object_get(c->waiting, ns));
    json_object_del(c->waiting, ns);
    pthread_mutex_unlock(&c->applied_lock);
    const char *key;
    json_t *v;
    json_object_foreach (keys, key, v) {
        workqueue_forget(c->queue, key);
        controller_enqueue(c, key);
    }
    json_decref(keys);
}

/* Whether ns has a Sandbox that is not being deleted: a namespace going away (its
 * Sandboxes deleted with it) gets no policy back. */
static bool namespace_has_sandboxes(operator_controller *c, const char *ns)
{
    json_t *all = kube_informer_list(c->sandboxes), *s;
    size_t i;
    bool any = false;
    json_array_foreach (all, i, s) {
        const char *sns = kobj_namespace(s);
        if (sns && strcmp(sns, ns) == 0 && !kobj_get(s, "metadata.deletionTimestamp")) {
            any = true;
            break;
        }
    }
    json_decref(all);
    return any;
}

outcome netpol_sync(operator_controller *c, const char *ns, moat_error *err)
{
    if (!controller_may_write(c) || !namespace_has_sandboxes(c, ns))
        return DONE;
    json_t *policies = NULL, *p;
    size_t i;
    if (sandbox_netpols_build(&policies, ns, c->cfg, err) < 0)
        return FAILED;
    kube_patch_options po = {.field_manager = FIELD_MANAGER, .force = true};
    outcome result = DONE;
    bool pending = false;
    json_array_foreach (policies, i, p) {
        char key[512];
        if (i >= ELEMENTSOF(c->netpol_hashes))
            break;
        snprintf(key, sizeof(key), "%s/%s", ns, kobj_name(p));
        netpol_state st = netpol_compare(c, key, i);
        if (st == NETPOL_SAME)
            continue;
        if (st == NETPOL_PENDING) {
            pending = true;
            continue;
        }
        json_t *meta = json_object_get(p, "metadata"), *answer = NULL;
        json_object_set_new(meta, "annotations",
                            json_pack("{s:s}", NETPOL_HASH_ANNOTATION, c->netpol_hashes[i]));
        if (kube_patch(c->client, &answer, &KUBE_NETWORKPOLICIES, ns, kobj_name(p),
                       KUBE_PATCH_APPLY, p, &po, err) < 0) {
            /* a namespace being deleted takes no new policy (NamespaceLifecycle): it and
             * its Sandboxes are going, nothing to retry */
            if (kube_error_is(err, KUBE_REASON_FORBIDDEN) && err->message &&
                strstr(err->message, "being terminated")) {
                moat_error_clear(err);
                break;
            }
            moat_error_prefix(err, "network policy %s/%s", ns, kobj_name(p));
            result = FAILED;
            break;
        }
        char h[65];
        /* Server-side apply leaves alone what another manager added (an egress rule on the
         * none policy, say): when the answer is not the spec as built, the spec is written
         * whole. */
        if (spec_hash(h, answer) && strcmp(h, c->netpol_hashes[i]) != 0 &&
            json_object_set(answer, "spec", json_object_get(p, "spec")) == 0) {
            json_t *put = NULL;
            if (kube_update(c->client, &put, &KUBE_NETWORKPOLICIES, answer, err) < 0) {
                json_decref(answer);
                moat_error_prefix(err, "network policy %s/%s", ns, kobj_name(p));
                result = kube_error_is(err, KUBE_REASON_CONFLICT) ? REQUEUE_NOW : FAILED;
                if (result == REQUEUE_NOW)
                    moat_error_clear(err);
                break;
            }
            json_decref(answer);
            answer = put;
        }
        if (spec_hash(h, answer)) {
            pthread_mutex_lock(&c->applied_lock);
            json_object_set_new(c->applied, key, json_string(h));
            json_object_set_new(c->pending, key, json_integer(moat_mono_ns()));
            pthread_mutex_unlock(&c->applied_lock);
        }
        json_decref(answer);
        atomic_fetch_add(&c->netpol_applies, 1);
        log_debug(key, "network policy applied (it was %s)",
                  st == NETPOL_MISSING   ? "missing"
                  : st == NETPOL_CHANGED ? "changed"
                                         : "not applied by this process yet");
    }
    json_decref(policies);
    if (pending && result == DONE) {
        /* Another look once the moment is over, should the watch never bring them. */
        moat_error qerr = MOAT_ERROR_INIT;
        char nkey[300];
        snprintf(nkey, sizeof(nkey), NETPOL_KEY "%s", ns);
        if (workqueue_add_after(c->queue, nkey, NETPOL_PENDING_NS + 1000000, &qerr) < 0)
            log_warn(nkey, "cannot queue: %s", qerr.message); /* shutting down */
        moat_error_clear(&qerr);
    }
    return result;
}

/* The watch brought policy (added, changed or deleted): no longer pending. */
static void forget_pending(operator_controller *c, json_t *policy, bool deleted)
{
    const char *ns = kobj_namespace(policy), *name = kobj_name(policy);
    char key[512];
    if (!ns || !name || snprintf(key, sizeof(key), "%s/%s", ns, name) >= (int)sizeof(key))
        return;
    pthread_mutex_lock(&c->applied_lock);
    json_object_del(c->pending, key);
    if (deleted)
        json_object_del(c->applied, key);
    pthread_mutex_unlock(&c->applied_lock);
}

static void enqueue_namespace(operator_controller *c, json_t *policy)
{
    const char *ns = kobj_namespace(policy);
    char key[300];
    if (ns && snprintf(key, sizeof(key), NETPOL_KEY "%s", ns) < (int)sizeof(key))
        controller_enqueue(c, key);
}

void netpol_sync_changed(void *user, json_t *policy)
{
    forget_pending(user, policy, false);
    enqueue_namespace(user, policy);
    const char *ns = kobj_namespace(policy);
    if (ns)
        wake_waiting(user, ns);
}

void netpol_sync_updated(void *user, json_t *old, json_t *policy)
{
    netpol_sync_changed(user, policy);
}

void netpol_sync_deleted(void *user, json_t *policy)
{
    forget_pending(user, policy, true);
    enqueue_namespace(user, policy);
}

/* The names and spec hashes of the policies every namespace gets (their spec does not
 * depend on the namespace). */
int netpol_sync_init(operator_controller *c, moat_error *err)
{
    json_t *policies = NULL, *p;
    size_t i;
    if (sandbox_netpols_build(&policies, "any", c->cfg, err) < 0)
        return -1;
    int r = json_array_size(policies) == ELEMENTSOF(c->netpol_names) ? 0 : -1;
    json_array_foreach (policies, i, p) {
        if (r < 0 || i >= ELEMENTSOF(c->netpol_names))
            break;
        snprintf(c->netpol_names[i], sizeof(c->netpol_names[i]), "%s", kobj_name(p));
        if (!spec_hash(c->netpol_hashes[i], p))
            r = -1;
    }
    json_decref(policies);
    return r < 0 ? moat_error_set(err, MOAT_E_NOMEM, "hashing the network policies") : 0;
}
