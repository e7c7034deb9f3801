#include "messages.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/cri/cri.pb-c.h"
#include "libmoat/macro.h"
#include "libmoat/names.h"

#define NS_NODE 2 /* NamespaceMode NODE: the host's namespace */

static const char *map_get(Moat__Cri__PodSandboxConfig__AnnotationsEntry **entries, size_t n,
                           const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (entries[i]->key && strcmp(entries[i]->key, key) == 0)
            return entries[i]->value;
    return NULL;
}

/* Sets key=value in the annotations, replacing an existing entry. */
static int map_set(Moat__Cri__PodSandboxConfig *cfg, const char *key, const char *value)
{
    for (size_t i = 0; i < cfg->n_annotations; i++)
        if (cfg->annotations[i]->key && strcmp(cfg->annotations[i]->key, key) == 0) {
            char *v = strdup(value);
            if (!v)
                return -1;
            free(cfg->annotations[i]->value);
            cfg->annotations[i]->value = v;
            return 0;
        }
    Moat__Cri__PodSandboxConfig__AnnotationsEntry **grown =
        realloc(cfg->annotations, (cfg->n_annotations + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    cfg->annotations = grown;
    Moat__Cri__PodSandboxConfig__AnnotationsEntry *e = malloc(sizeof(*e));
    if (!e)
        return -1;
    moat__cri__pod_sandbox_config__annotations_entry__init(e);
    e->key = strdup(key);
    e->value = strdup(value);
    if (!e->key || !e->value) {
        free(e->key);
        free(e->value);
        free(e);
        return -1;
    }
    cfg->annotations[cfg->n_annotations++] = e;
    return 0;
}

#define DECISION_PREFIX "moat.dev/decision-"

/* Removes every decision annotation (MOAT_ANNOTATION_DECISION_*) from cfg: only moat-cri
 * writes them, and the node agent must never read one a pod's author wrote. Returns how
 * many it removed. */
static size_t strip_decisions(Moat__Cri__PodSandboxConfig *cfg)
{
    size_t kept = 0, n = cfg->n_annotations;
    for (size_t i = 0; i < n; i++) {
        Moat__Cri__PodSandboxConfig__AnnotationsEntry *e = cfg->annotations[i];
        if (e->key && strncmp(e->key, DECISION_PREFIX, strlen(DECISION_PREFIX)) == 0)
            protobuf_c_message_free_unpacked(&e->base, NULL);
        else
            cfg->annotations[kept++] = e;
    }
    cfg->n_annotations = kept;
    return n - kept;
}

/* protobuf-c's unpack allocates with the system allocator (NULL allocator), so the message
 * tree can be edited with malloc/free and freed with free_unpacked. */
/* The request packed again: 1 with *ret_out (caller frees) and *ret_len, or -1. */
static int encode(const Moat__Cri__RunPodSandboxRequest *req, uint8_t **ret_out, size_t *ret_len,
                  moat_error *err)
{
    size_t n = moat__cri__run_pod_sandbox_request__get_packed_size(req);
    uint8_t *out = malloc(n ? n : 1);
    if (!out)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    size_t packed = moat__cri__run_pod_sandbox_request__pack(req, out);
    /* protobuf-c keeps what it does not know, including what it only tolerated (a field
     * numbered 0, say), and may then write bytes it refuses to read back: send nothing
     * upstream that does not decode. */
    Moat__Cri__RunPodSandboxRequest *check =
        moat__cri__run_pod_sandbox_request__unpack(NULL, packed, out);
    if (!check) {
        free(out);
        return moat_error_set(err, MOAT_E_INVALID,
                              "RunPodSandboxRequest does not survive re-encoding");
    }
    moat__cri__run_pod_sandbox_request__free_unpacked(check, NULL);
    *ret_len = packed;
    *ret_out = out;
    return 1;
}

int shim_run_pod_sandbox_rewrite(const uint8_t *in, size_t len, const shim_handlers *handlers,
                                 const iso_probe_result *probe, uint8_t **ret_out, size_t *ret_len,
                                 shim_decision *ret_decision, char **ret_pod, moat_error *err)
{
    Moat__Cri__RunPodSandboxRequest *req =
        moat__cri__run_pod_sandbox_request__unpack(NULL, len, in);
    if (!req)
        return moat_error_set(err, MOAT_E_INVALID, "RunPodSandboxRequest does not decode");
    int r = -1;
    Moat__Cri__PodSandboxConfig *cfg = req->config;
    shim_pod_facts facts = {.runtime_handler = req->runtime_handler ? req->runtime_handler : ""};
    if (cfg) {
        const char *gpus = map_get(cfg->annotations, cfg->n_annotations, MOAT_ANNOTATION_GPU_COUNT);
        const char *net = map_get(cfg->annotations, cfg->n_annotations, MOAT_ANNOTATION_NETWORK);
        /* Strictly: "0".."8" and "none" or "internet", as the operator writes them on every
         * Sandbox's Pod; a Moat pod without them is not the operator's (shim_decide refuses
         * it: its egress class, and so its wall, would be the pod author's guess). */
        if (!net)
            facts.malformed = "annotation " MOAT_ANNOTATION_NETWORK " is missing (the operator "
                              "puts it on every Sandbox's Pod)";
        else if (!gpus)
            facts.malformed = "annotation " MOAT_ANNOTATION_GPU_COUNT " is missing (the "
                              "operator puts it on every Sandbox's Pod)";
        else if (!(gpus[0] >= '0' && gpus[0] <= '8' && gpus[1] == '\0'))
            facts.malformed = "annotation " MOAT_ANNOTATION_GPU_COUNT " is not 0 to 8";
        else if (net && strcmp(net, MOAT_EGRESS_NONE) != 0 &&
                 strcmp(net, MOAT_EGRESS_INTERNET) != 0)
            facts.malformed = "annotation " MOAT_ANNOTATION_NETWORK " is not none or internet";
        facts.gpu_count = gpus && !facts.malformed ? gpus[0] - '0' : 0;
        facts.no_network = net && strcmp(net, MOAT_EGRESS_NONE) == 0;
        for (size_t i = 0; i < cfg->n_annotations && !facts.forbidden_annotation; i++) {
            const char *k = cfg->annotations[i]->key;
            if (k &&
                (strncmp(k, "io.katacontainers.", 18) == 0 || strncmp(k, "cdi.k8s.io/", 11) == 0))
                facts.forbidden_annotation = k;
        }
        Moat__Cri__LinuxSandboxSecurityContext *sc =
            cfg->linux ? cfg->linux->security_context : NULL;
        if (sc) {
            facts.privileged = sc->privileged;
            if (sc->namespace_options) {
                facts.host_network = sc->namespace_options->network == NS_NODE;
                facts.host_pid = sc->namespace_options->pid == NS_NODE;
                facts.host_ipc = sc->namespace_options->ipc == NS_NODE;
            }
        }
        if (ret_pod && cfg->metadata) {
            char *pod = NULL;
            if (asprintf(&pod, "%s/%s", cfg->metadata->namespace_ ? cfg->metadata->namespace_ : "",
                         cfg->metadata->name ? cfg->metadata->name : "") >= 0)
                *ret_pod = pod;
        }
    }

    shim_decide(ret_decision, handlers, probe, &facts);
    /* Decision annotations a pod's author wrote never reach the runtime's record: on a
     * handler passed through, nothing would overwrite them. */
    bool stripped = cfg && strip_decisions(cfg) > 0;
    switch (ret_decision->verdict) {
    case SHIM_PASS:
        r = stripped ? encode(req, ret_out, ret_len, err) : 0;
        break;
    case SHIM_REFUSE:
        r = moat_error_set(err, MOAT_E_RANGE, "%s", ret_decision->reason);
        break;
    case SHIM_REWRITE: {
        if (!cfg) {
            r = moat_error_set(err, MOAT_E_INVALID, "RunPodSandboxRequest has no config");
            break;
        }
        char *handler = strdup(ret_decision->handler);
        if (!handler || map_set(cfg, MOAT_ANNOTATION_DECISION_RUNTIME, ret_decision->runtime) < 0 ||
            map_set(cfg, MOAT_ANNOTATION_DECISION_HANDLER, ret_decision->handler) < 0 ||
            map_set(cfg, MOAT_ANNOTATION_DECISION_REASON, ret_decision->reason) < 0) {
            free(handler);
            r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            break;
        }
        if (req->runtime_handler != protobuf_c_empty_string)
            free(req->runtime_handler);
        req->runtime_handler = handler;
        r = encode(req, ret_out, ret_len, err);
        break;
    }
    }
    moat__cri__run_pod_sandbox_request__free_unpacked(req, NULL);
    return r;
}

int shim_status_add_handlers(const uint8_t *in, size_t len, const char *const *names,
                             size_t n_names, uint8_t **ret_out, size_t *ret_len, moat_error *err)
{
    Moat__Cri__StatusResponse *resp = moat__cri__status_response__unpack(NULL, len, in);
    if (!resp)
        return moat_error_set(err, MOAT_E_INVALID, "StatusResponse does not decode");
    size_t added = 0;
    int r = 0;
    for (size_t k = 0; k < n_names; k++) {
        bool present = false;
        for (size_t i = 0; i < resp->n_runtime_handlers; i++)
            if (resp->runtime_handlers[i]->name &&
                strcmp(resp->runtime_handlers[i]->name, names[k]) == 0)
                present = true;
        if (present)
            continue;
        Moat__Cri__RuntimeHandler **grown =
            realloc(resp->runtime_handlers, (resp->n_runtime_handlers + 1) * sizeof(*grown));
        Moat__Cri__RuntimeHandler *h = malloc(sizeof(*h));
        if (grown)
            resp->runtime_handlers = grown;
        if (!grown || !h) {
            free(h);
            r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            goto out;
        }
        moat__cri__runtime_handler__init(h);
        h->name = strdup(names[k]);
        resp->runtime_handlers[resp->n_runtime_handlers++] = h;
        added++;
    }
    if (added) {
        size_t n = moat__cri__status_response__get_packed_size(resp);
        uint8_t *out = malloc(n ? n : 1);
        if (!out) {
            r = moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            goto out;
        }
        *ret_len = moat__cri__status_response__pack(resp, out);
        *ret_out = out;
        r = 1;
    }
out:
    moat__cri__status_response__free_unpacked(resp, NULL);
    return r;
}

/* ---- the egress wall's facts ------------------------------------------------------------ */

#define SANDBOX_READY 0 /* PodSandboxState */
#define MAX_FACTS                                                                                  \
    8 /* addresses or DNS servers taken (a pod has one or two addresses,                           \
       * kubelet passes at most three servers) */

static int facts_strdup(char **slot, const char *s)
{
    return (*slot = strdup(s ? s : "")) ? 0 : -1;
}

static int facts_push(char ***list, size_t *n, const char *s)
{
    if (!s || !*s || *n >= MAX_FACTS)
        return 0;
    char **grown = realloc(*list, (*n + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    *list = grown;
    if (facts_strdup(&grown[*n], s) < 0)
        return -1;
    (*n)++;
    return 0;
}

static int facts_pod(shim_wall_facts *f, const Moat__Cri__PodSandboxMetadata *m)
{
    if (m && asprintf(&f->pod, "%s/%s", m->namespace_ ? m->namespace_ : "",
                      m->name ? m->name : "") < 0) {
        f->pod = NULL;
        return -1;
    }
    return 0;
}

static void facts_network(shim_wall_facts *f, const char *net)
{
    f->walled = net != NULL;
    f->internet = net && strcmp(net, MOAT_EGRESS_INTERNET) == 0;
}

int shim_sandbox_status_facts(const uint8_t *in, size_t len, shim_wall_facts *out, moat_error *err)
{
    Moat__Cri__PodSandboxStatusResponse *resp =
        moat__cri__pod_sandbox_status_response__unpack(NULL, len, in);
    if (!resp || !resp->status) {
        if (resp)
            moat__cri__pod_sandbox_status_response__free_unpacked(resp, NULL);
        return moat_error_set(err, MOAT_E_INVALID, "PodSandboxStatusResponse %s",
                              resp ? "has no status" : "does not decode");
    }
    Moat__Cri__PodSandboxStatus *st = resp->status;
    shim_wall_facts f = {.ready = st->state == SANDBOX_READY};
    const char *net = NULL;
    for (size_t i = 0; i < st->n_annotations; i++)
        if (st->annotations[i]->key &&
            strcmp(st->annotations[i]->key, MOAT_ANNOTATION_NETWORK) == 0)
            net = st->annotations[i]->value;
    facts_network(&f, net);
    int r = facts_strdup(&f.sandbox_id, st->id);
    if (r == 0)
        r = facts_pod(&f, st->metadata);
    if (r == 0 && st->network) {
        r = facts_push(&f.addrs, &f.n_addrs, st->network->ip);
        for (size_t i = 0; r == 0 && i < st->network->n_additional_ips; i++)
            r = facts_push(&f.addrs, &f.n_addrs, st->network->additional_ips[i]->ip);
    }
    moat__cri__pod_sandbox_status_response__free_unpacked(resp, NULL);
    if (r < 0) {
        shim_wall_facts_clear(&f);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    *out = f;
    return 0;
}

int shim_create_container_facts(const uint8_t *in, size_t len, shim_wall_facts *out,
                                moat_error *err)
{
    Moat__Cri__CreateContainerRequest *req =
        moat__cri__create_container_request__unpack(NULL, len, in);
    if (!req)
        return moat_error_set(err, MOAT_E_INVALID, "CreateContainerRequest does not decode");
    shim_wall_facts f = {0};
    Moat__Cri__PodSandboxConfig *cfg = req->sandbox_config;
    int r = facts_strdup(&f.sandbox_id, req->pod_sandbox_id);
    if (cfg) {
        facts_network(&f, map_get(cfg->annotations, cfg->n_annotations, MOAT_ANNOTATION_NETWORK));
        if (r == 0)
            r = facts_pod(&f, cfg->metadata);
        for (size_t i = 0; r == 0 && cfg->dns_config && i < cfg->dns_config->n_servers; i++)
            r = facts_push(&f.dns, &f.n_dns, cfg->dns_config->servers[i]);
    }
    moat__cri__create_container_request__free_unpacked(req, NULL);
    if (r < 0) {
        shim_wall_facts_clear(&f);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    *out = f;
    return 0;
}

int shim_remove_pod_sandbox_id(const uint8_t *in, size_t len, char **ret_id, moat_error *err)
{
    Moat__Cri__RemovePodSandboxRequest *req =
        moat__cri__remove_pod_sandbox_request__unpack(NULL, len, in);
    if (!req)
        return moat_error_set(err, MOAT_E_INVALID, "RemovePodSandboxRequest does not decode");
    char *id = strdup(req->pod_sandbox_id ? req->pod_sandbox_id : "");
    moat__cri__remove_pod_sandbox_request__free_unpacked(req, NULL);
    if (!id)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    *ret_id = id;
    return 0;
}

void shim_wall_facts_clear(shim_wall_facts *f)
{
    if (!f)
        return;
    free(f->sandbox_id);
    free(f->pod);
    for (size_t i = 0; i < f->n_addrs; i++)
        free(f->addrs[i]);
    free(f->addrs);
    for (size_t i = 0; i < f->n_dns; i++)
        free(f->dns[i]);
    free(f->dns);
    *f = (shim_wall_facts){0};
}

int shim_request_target_id(const char *method, const uint8_t *in, size_t len, char **ret_id,
                           moat_error *err)
{
    static const char rs[] = "/runtime.v1.RuntimeService/";
    const char *m = strncmp(method, rs, sizeof(rs) - 1) == 0 ? method + sizeof(rs) - 1 : "";
    ProtobufCMessage *msg = NULL;
    const char *id = NULL;

    if (strcmp(m, "Exec") == 0) {
        Moat__Cri__ExecRequest *r = moat__cri__exec_request__unpack(NULL, len, in);
        msg = r ? &r->base : NULL;
        id = r ? r->container_id : NULL;
    } else if (strcmp(m, "Attach") == 0) {
        Moat__Cri__AttachRequest *r = moat__cri__attach_request__unpack(NULL, len, in);
        msg = r ? &r->base : NULL;
        id = r ? r->container_id : NULL;
    } else if (strcmp(m, "RemoveContainer") == 0) {
        Moat__Cri__RemoveContainerRequest *r =
            moat__cri__remove_container_request__unpack(NULL, len, in);
        msg = r ? &r->base : NULL;
        id = r ? r->container_id : NULL;
    } else if (strcmp(m, "PortForward") == 0) {
        Moat__Cri__PortForwardRequest *r = moat__cri__port_forward_request__unpack(NULL, len, in);
        msg = r ? &r->base : NULL;
        id = r ? r->pod_sandbox_id : NULL;
    } else if (strcmp(m, "RemovePodSandbox") == 0) {
        Moat__Cri__RemovePodSandboxRequest *r =
            moat__cri__remove_pod_sandbox_request__unpack(NULL, len, in);
        msg = r ? &r->base : NULL;
        id = r ? r->pod_sandbox_id : NULL;
    } else {
        return moat_error_set(err, MOAT_E_INVALID, "%s: names no container or pod sandbox", method);
    }
    if (!msg)
        return moat_error_set(err, MOAT_E_INVALID, "%s: the request does not decode", method);
    if (!id || !*id) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return moat_error_set(err, MOAT_E_INVALID, "%s: the request names no ID", method);
    }
    char *copy = strdup(id);
    protobuf_c_message_free_unpacked(msg, NULL);
    if (!copy)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    *ret_id = copy;
    return 0;
}
