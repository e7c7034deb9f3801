/* The CRI client, for every Moat program that calls a CRI runtime (the node agent, the
 * installer's check, moat-cri's look at a pod's network, the benchmark).
 *
 * This and moat-cri's relay (the server) are the two modules in Moat that use the gRPC core
 * API; the payload copies both need are libmoat/cri/bytes.c. Each unary call is one batch
 * (send metadata, message and close; receive metadata, message and status) on a completion
 * queue the caller plucks its own tag from, so the call is synchronous and needs no thread.
 * A client shared by threads is one channel with a queue per thread (cri_client_share). */
#include "cri.h"

#include <grpc/byte_buffer_reader.h>
#include <jansson.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/cri/bytes.h"
#include "libmoat/cri/cri.pb-c.h"
#include "libmoat/macro.h"
#include "libmoat/names.h"

/* One channel, freed with its last client. */
typedef struct {
    grpc_channel *grpc;
    atomic_int refs;
} channel;

struct cri_client {
    channel *channel;
    grpc_completion_queue *cq;
};

static void channel_unref(channel *ch)
{
    if (ch && atomic_fetch_sub(&ch->refs, 1) == 1) {
        grpc_channel_destroy(ch->grpc);
        free(ch);
    }
}

static int client_on(cri_client **out, channel *ch, const char *what, moat_error *err)
{
    cri_client *c = calloc(1, sizeof(*c));
    if (!c)
        return moat_error_set(err, MOAT_E_NOMEM, "CRI client for %s: out of memory", what);
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    if (!c->cq) {
        free(c);
        return moat_error_set(err, MOAT_E_NOMEM, "CRI client for %s: gRPC refused a queue", what);
    }
    atomic_fetch_add(&ch->refs, 1);
    c->channel = ch;
    *out = c;
    return 0;
}

static int client_new(cri_client **out, const char *endpoint, bool retries, moat_error *err)
{
    if (!out || !endpoint)
        return moat_error_set(err, MOAT_E_INVALID, "CRI endpoint: missing");
    const char *path;
    if (strncmp(endpoint, "unix://", 7) == 0)
        path = endpoint + 7;
    else if (strncmp(endpoint, "unix:", 5) == 0)
        path = endpoint + 5;
    else
        path = endpoint;
    if (path[0] != '/')
        return moat_error_set(err, MOAT_E_INVALID,
                              "CRI endpoint %s: want unix:///path or an absolute path", endpoint);
    _cleanup_free_ char *target = NULL;
    if (asprintf(&target, "unix:%s", path) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "CRI endpoint: out of memory");
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = CRI_MAX_MESSAGE},
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = CRI_MAX_MESSAGE},
        {.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_ENABLE_RETRIES, .value.integer = 0},
    };
    /* Without retries the last argument is left out: gRPC's default, whose transparent
     * retries ride over a dropped connection (containerd restarting). */
    grpc_channel_args cargs = {.num_args = ELEMENTSOF(args) - (retries ? 1 : 0), .args = args};
    channel *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return moat_error_set(err, MOAT_E_NOMEM, "CRI client for %s: out of memory", endpoint);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    ch->grpc = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (!ch->grpc) {
        free(ch);
        return moat_error_set(err, MOAT_E_NOMEM, "CRI client for %s: gRPC refused", endpoint);
    }
    atomic_init(&ch->refs, 1);
    int r = client_on(out, ch, endpoint, err);
    channel_unref(ch); /* the client holds it now, or nobody does */
    return r;
}

int cri_client_new(cri_client **out, const char *endpoint, moat_error *err)
{
    return client_new(out, endpoint, true, err);
}

int cri_client_new_without_retries(cri_client **out, const char *endpoint, moat_error *err)
{
    return client_new(out, endpoint, false, err);
}

int cri_client_share(cri_client **out, cri_client *c, moat_error *err)
{
    if (!out || !c)
        return moat_error_set(err, MOAT_E_INVALID, "CRI client: missing");
    return client_on(out, c->channel, "a shared channel", err);
}

void cri_client_free(cri_client *c)
{
    if (!c)
        return;
    /* Every call plucked its own completion: nothing is pending, so shutdown is
     * immediate. */
    grpc_completion_queue_shutdown(c->cq);
    grpc_completion_queue_destroy(c->cq);
    channel_unref(c->channel);
    free(c);
}

static moat_error_code status_code_error(grpc_status_code s)
{
    switch (s) {
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return MOAT_E_NETWORK;
    case GRPC_STATUS_NOT_FOUND:
        return MOAT_E_NOTFOUND;
    default:
        return MOAT_E_IO;
    }
}

int cri_client_call(cri_client *c, uint8_t **ret_resp, size_t *ret_len, const char *method,
                    const uint8_t *req, size_t req_len, long timeout_ms, moat_error *err)
{
    if (!c || !ret_resp || !ret_len || !method)
        return moat_error_set(err, MOAT_E_INVALID, "CRI call: missing argument");
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    grpc_slice method_slice = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(c->channel->grpc, NULL, GRPC_PROPAGATE_DEFAULTS,
                                               c->cq, method_slice, NULL, deadline, NULL);
    grpc_slice_unref(method_slice);
    if (!call)
        return moat_error_set(err, MOAT_E_NOMEM, "CRI %s: cannot create the call", method);

    grpc_byte_buffer *send = cri_bytes_to_buffer(req, req_len);
    grpc_byte_buffer *recv = NULL;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &error_string;

    int rc = -1;
    int tag = 0;
    grpc_call_error ce = grpc_call_start_batch(call, ops, ELEMENTSOF(ops), &tag, NULL);
    if (ce != GRPC_CALL_OK) {
        moat_error_set(err, MOAT_E_IO, "CRI %s: start batch: %d", method, (int)ce);
        goto out;
    }
    grpc_event ev =
        grpc_completion_queue_pluck(c->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
        moat_error_set(err, MOAT_E_IO, "CRI %s: the call did not complete", method);
        goto out;
    }
    if (status != GRPC_STATUS_OK) {
        char *d = grpc_slice_to_c_string(details);
        moat_error_set(err, status_code_error(status), "CRI %s: status %d: %s", method, (int)status,
                       d && *d ? d : (error_string ? error_string : "no details"));
        gpr_free(d);
        goto out;
    }
    uint8_t *bytes = NULL;
    size_t n = 0;
    if (recv) {
        bytes = cri_bytes_from_buffer(recv, &n);
        if (!bytes) {
            moat_error_set(err, MOAT_E_NOMEM, "CRI %s: cannot read the response", method);
            goto out;
        }
    }
    *ret_resp = bytes;
    *ret_len = n;
    rc = 0;
out:
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_slice_unref(details);
    gpr_free((void *)error_string); /* the library's debug string: ours to free */
    grpc_call_unref(call);
    return rc;
}

/* Messages. */

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* MOAT_ANNOTATION_IDLE_TIMEOUT's value: whole seconds, 1..86400; 0 for anything else. */
static int64_t idle_seconds(const char *v)
{
    int64_t n = 0;
    if (!v || !*v)
        return 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9' || n > 86400)
            return 0;
        n = n * 10 + (*p - '0');
    }
    return n >= 1 && n <= 86400 ? n : 0;
}

void cri_sandbox_list_clear(cri_sandbox_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].id);
        free(l->items[i].pod_uid);
        free(l->items[i].namespace_);
        free(l->items[i].name);
        free(l->items[i].runtime_handler);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

const cri_sandbox *cri_sandbox_list_newest(const cri_sandbox_list *l)
{
    const cri_sandbox *best = NULL;
    for (size_t i = 0; l && i < l->n; i++) {
        const cri_sandbox *s = &l->items[i];
        if (!best || s->attempt > best->attempt ||
            (s->attempt == best->attempt && s->created_at > best->created_at))
            best = s;
    }
    return best;
}

static bool newer(const cri_sandbox *a, const cri_sandbox *b)
{
    return a->attempt > b->attempt || (a->attempt == b->attempt && a->created_at > b->created_at);
}

bool cri_sandbox_is_newest(const cri_sandbox_list *l, const cri_sandbox *s)
{
    for (size_t i = 0; l && i < l->n; i++)
        if (&l->items[i] != s && strcmp(l->items[i].pod_uid, s->pod_uid) == 0 &&
            newer(&l->items[i], s))
            return false;
    return true;
}

void cri_sandbox_status_clear(cri_sandbox_status *s)
{
    if (!s)
        return;
    free(s->id);
    free(s->pod_uid);
    free(s->runtime_handler);
    free(s->decision_runtime);
    free(s->decision_handler);
    free(s->decision_reason);
    memset(s, 0, sizeof(*s));
}

static int pack(uint8_t **ret, size_t *ret_len, const ProtobufCMessage *m, const char *what,
                moat_error *err)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return moat_error_set(err, MOAT_E_NOMEM, "%s: out of memory", what);
    protobuf_c_message_pack(m, buf);
    *ret = buf;
    *ret_len = n;
    return 0;
}

int cri_list_request_encode(uint8_t **ret, size_t *ret_len, const char *pod_uid, moat_error *err)
{
    Moat__Cri__ListPodSandboxRequest req = MOAT__CRI__LIST_POD_SANDBOX_REQUEST__INIT;
    Moat__Cri__PodSandboxFilter filter = MOAT__CRI__POD_SANDBOX_FILTER__INIT;
    Moat__Cri__PodSandboxFilter__LabelSelectorEntry entry =
        MOAT__CRI__POD_SANDBOX_FILTER__LABEL_SELECTOR_ENTRY__INIT;
    Moat__Cri__PodSandboxFilter__LabelSelectorEntry *entries[1] = {&entry};
    if (pod_uid) {
        entry.key = (char *)CRI_LABEL_POD_UID;
        entry.value = (char *)pod_uid;
        filter.n_label_selector = 1;
        filter.label_selector = entries;
        req.filter = &filter;
    }
    return pack(ret, ret_len, &req.base, "ListPodSandboxRequest", err);
}

int cri_status_request_encode(uint8_t **ret, size_t *ret_len, const char *sandbox_id,
                              moat_error *err)
{
    if (!sandbox_id)
        return moat_error_set(err, MOAT_E_INVALID, "PodSandboxStatusRequest: no sandbox id");
    Moat__Cri__PodSandboxStatusRequest req = MOAT__CRI__POD_SANDBOX_STATUS_REQUEST__INIT;
    req.pod_sandbox_id = (char *)sandbox_id;
    return pack(ret, ret_len, &req.base, "PodSandboxStatusRequest", err);
}

int cri_list_response_decode(cri_sandbox_list *out, const uint8_t *data, size_t len,
                             moat_error *err)
{
    Moat__Cri__ListPodSandboxResponse *resp =
        moat__cri__list_pod_sandbox_response__unpack(NULL, len, data);
    if (!resp)
        return moat_error_set(err, MOAT_E_INVALID, "ListPodSandboxResponse: does not decode");
    cri_sandbox_list l = {calloc(resp->n_items ? resp->n_items : 1, sizeof(cri_sandbox)), 0};
    if (!l.items)
        goto nomem;
    for (size_t i = 0; i < resp->n_items; i++) {
        const Moat__Cri__PodSandbox *p = resp->items[i];
        cri_sandbox *s = &l.items[l.n++];
        s->id = dup_or_empty(p->id);
        s->pod_uid = dup_or_empty(p->metadata ? p->metadata->uid : NULL);
        s->namespace_ = dup_or_empty(p->metadata ? p->metadata->namespace_ : NULL);
        s->name = dup_or_empty(p->metadata ? p->metadata->name : NULL);
        s->runtime_handler = dup_or_empty(p->runtime_handler);
        s->attempt = p->metadata ? p->metadata->attempt : 0;
        s->state = p->state;
        s->created_at = p->created_at;
        for (size_t k = 0; k < p->n_labels && !s->moat_keys; k++)
            s->moat_keys = p->labels[k]->key && strncmp(p->labels[k]->key, MOAT_KEY_PREFIX,
                                                        strlen(MOAT_KEY_PREFIX)) == 0;
        for (size_t k = 0; k < p->n_annotations; k++) {
            const char *key = p->annotations[k]->key, *value = p->annotations[k]->value;
            if (!key)
                continue;
            if (strncmp(key, MOAT_KEY_PREFIX, strlen(MOAT_KEY_PREFIX)) == 0)
                s->moat_keys = true;
            if (strcmp(key, MOAT_ANNOTATION_IDLE_TIMEOUT) == 0)
                s->session_idle_s = idle_seconds(value);
        }
        if (!s->id || !s->pod_uid || !s->namespace_ || !s->name || !s->runtime_handler)
            goto nomem;
    }
    moat__cri__list_pod_sandbox_response__free_unpacked(resp, NULL);
    *out = l;
    return 0;
nomem:
    cri_sandbox_list_clear(&l);
    moat__cri__list_pod_sandbox_response__free_unpacked(resp, NULL);
    return moat_error_set(err, MOAT_E_NOMEM, "ListPodSandboxResponse: out of memory");
}

static int annotation_dup(char **ret, Moat__Cri__PodSandboxStatus__AnnotationsEntry **a, size_t n,
                          const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i]->key && strcmp(a[i]->key, key) == 0) {
            *ret = dup_or_empty(a[i]->value);
            return *ret ? 0 : -1;
        }
    }
    return 0;
}

int cri_status_response_decode(cri_sandbox_status *out, const uint8_t *data, size_t len,
                               moat_error *err)
{
    Moat__Cri__PodSandboxStatusResponse *resp =
        moat__cri__pod_sandbox_status_response__unpack(NULL, len, data);
    if (!resp)
        return moat_error_set(err, MOAT_E_INVALID, "PodSandboxStatusResponse: does not decode");
    if (!resp->status) {
        moat__cri__pod_sandbox_status_response__free_unpacked(resp, NULL);
        return moat_error_set(err, MOAT_E_INVALID, "PodSandboxStatusResponse: no status");
    }
    const Moat__Cri__PodSandboxStatus *st = resp->status;
    cri_sandbox_status s = {0};
    s.id = dup_or_empty(st->id);
    s.pod_uid = dup_or_empty(st->metadata ? st->metadata->uid : NULL);
    s.runtime_handler = dup_or_empty(st->runtime_handler);
    s.state = st->state;
    int rc = (s.id && s.pod_uid && s.runtime_handler) ? 0 : -1;
    if (rc == 0)
        rc = annotation_dup(&s.decision_runtime, st->annotations, st->n_annotations,
                            MOAT_ANNOTATION_DECISION_RUNTIME);
    if (rc == 0)
        rc = annotation_dup(&s.decision_handler, st->annotations, st->n_annotations,
                            MOAT_ANNOTATION_DECISION_HANDLER);
    if (rc == 0)
        rc = annotation_dup(&s.decision_reason, st->annotations, st->n_annotations,
                            MOAT_ANNOTATION_DECISION_REASON);
    moat__cri__pod_sandbox_status_response__free_unpacked(resp, NULL);
    if (rc < 0) {
        cri_sandbox_status_clear(&s);
        return moat_error_set(err, MOAT_E_NOMEM, "PodSandboxStatusResponse: out of memory");
    }
    *out = s;
    return 0;
}

void cri_sandbox_network_clear(cri_sandbox_network *n)
{
    free(n->netns);
    for (size_t i = 0; i < n->n_dns; i++)
        free(n->dns[i]);
    free(n->dns);
    memset(n, 0, sizeof(*n));
}

int cri_network_response_decode(cri_sandbox_network *out, const uint8_t *data, size_t len,
                                moat_error *err)
{
    Moat__Cri__PodSandboxStatusResponse *resp =
        moat__cri__pod_sandbox_status_response__unpack(NULL, len, data);
    if (!resp)
        return moat_error_set(err, MOAT_E_INVALID, "PodSandboxStatusResponse: does not decode");
    const char *info = NULL;
    for (size_t i = 0; i < resp->n_info; i++)
        if (resp->info[i]->key && strcmp(resp->info[i]->key, "info") == 0)
            info = resp->info[i]->value;
    json_t *doc _cleanup_(json_decrefp) = info ? json_loads(info, 0, NULL) : NULL;
    moat__cri__pod_sandbox_status_response__free_unpacked(resp, NULL);
    if (!doc)
        return moat_error_set(err, MOAT_E_INVALID,
                              "PodSandboxStatusResponse: no runtime record (info \"info\") as "
                              "JSON");
    const char *netns = json_string_value(json_object_get(
        json_object_get(json_object_get(doc, "sandboxMetadata"), "Metadata"), "NetNSPath"));
    if (!netns || !*netns)
        return moat_error_set(err, MOAT_E_INVALID,
                              "PodSandboxStatusResponse: the runtime's record names no network "
                              "namespace (sandboxMetadata.Metadata.NetNSPath)");
    json_t *servers =
        json_object_get(json_object_get(json_object_get(doc, "config"), "dns_config"), "servers");
    cri_sandbox_network n = {0};
    n.netns = strdup(netns);
    n.dns = calloc(json_array_size(servers) + 1, sizeof(char *));
    size_t i;
    json_t *v;
    bool ok = n.netns && n.dns;
    json_array_foreach (servers, i, v) {
        if (!ok || !json_is_string(v))
            continue;
        if (!(n.dns[n.n_dns] = strdup(json_string_value(v))))
            ok = false;
        else
            n.n_dns++;
    }
    if (!ok) {
        cri_sandbox_network_clear(&n);
        return moat_error_set(err, MOAT_E_NOMEM, "PodSandboxStatusResponse: out of memory");
    }
    *out = n;
    return 0;
}

int cri_sandbox_network_get(cri_client *c, cri_sandbox_network *out, const char *sandbox_id,
                            long timeout_ms, moat_error *err)
{
    _cleanup_free_ uint8_t *req = NULL, *resp = NULL;
    size_t req_len = 0, resp_len = 0;
    if (!sandbox_id)
        return moat_error_set(err, MOAT_E_INVALID, "PodSandboxStatusRequest: no sandbox id");
    Moat__Cri__PodSandboxStatusRequest r = MOAT__CRI__POD_SANDBOX_STATUS_REQUEST__INIT;
    r.pod_sandbox_id = (char *)sandbox_id;
    r.verbose = true;
    if (pack(&req, &req_len, &r.base, "PodSandboxStatusRequest", err) < 0 ||
        cri_client_call(c, &resp, &resp_len, CRI_POD_SANDBOX_STATUS, req, req_len, timeout_ms,
                        err) < 0 ||
        cri_network_response_decode(out, resp, resp_len, err) < 0)
        return moat_error_prefix(err, "pod sandbox %s", sandbox_id);
    return 0;
}

int cri_list_sandboxes(cri_client *c, cri_sandbox_list *out, long timeout_ms, moat_error *err)
{
    _cleanup_free_ uint8_t *req = NULL, *resp = NULL;
    size_t req_len = 0, resp_len = 0;
    if (cri_list_request_encode(&req, &req_len, NULL, err) < 0 ||
        cri_client_call(c, &resp, &resp_len, CRI_LIST_POD_SANDBOX, req, req_len, timeout_ms, err) <
            0)
        return -1;
    return cri_list_response_decode(out, resp, resp_len, err);
}

int cri_sandbox_status_get(cri_client *c, cri_sandbox_status *out, const char *sandbox_id,
                           long timeout_ms, moat_error *err)
{
    _cleanup_free_ uint8_t *req = NULL, *resp = NULL;
    size_t req_len = 0, resp_len = 0;
    if (cri_status_request_encode(&req, &req_len, sandbox_id, err) < 0 ||
        cri_client_call(c, &resp, &resp_len, CRI_POD_SANDBOX_STATUS, req, req_len, timeout_ms,
                        err) < 0 ||
        cri_status_response_decode(out, resp, resp_len, err) < 0)
        return moat_error_prefix(err, "pod sandbox %s", sandbox_id);
    return 0;
}

int cri_version(cri_client *c, char **ret, long timeout_ms, moat_error *err)
{
    _cleanup_free_ uint8_t *req = NULL, *resp = NULL;
    size_t req_len = 0, resp_len = 0;
    Moat__Cri__VersionRequest r = MOAT__CRI__VERSION_REQUEST__INIT;
    r.version = "0.1.0"; /* what kubelet sends */
    if (pack(&req, &req_len, &r.base, "VersionRequest", err) < 0 ||
        cri_client_call(c, &resp, &resp_len, CRI_VERSION, req, req_len, timeout_ms, err) < 0)
        return -1;
    Moat__Cri__VersionResponse *v = moat__cri__version_response__unpack(NULL, resp_len, resp);
    if (!v)
        return moat_error_set(err, MOAT_E_INVALID, "VersionResponse: does not decode");
    int rc = 0;
    if (!v->runtime_name || !*v->runtime_name)
        rc = moat_error_set(err, MOAT_E_INVALID, "VersionResponse: no runtime_name");
    else if (asprintf(ret, "%s %s", v->runtime_name, v->runtime_version ? v->runtime_version : "") <
             0)
        rc = moat_error_set(err, MOAT_E_NOMEM, "VersionResponse: out of memory");
    moat__cri__version_response__free_unpacked(v, NULL);
    return rc;
}

void cri_container_list_clear(cri_container_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].id);
        free(l->items[i].pod_sandbox_id);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int cri_containers_response_decode(cri_container_list *out, const uint8_t *data, size_t len,
                                   moat_error *err)
{
    Moat__Cri__ListContainersResponse *resp =
        moat__cri__list_containers_response__unpack(NULL, len, data);
    if (!resp)
        return moat_error_set(err, MOAT_E_INVALID, "ListContainersResponse: does not decode");
    cri_container_list l = {
        calloc(resp->n_containers ? resp->n_containers : 1, sizeof(cri_container)), 0};
    bool nomem = !l.items;
    for (size_t i = 0; !nomem && i < resp->n_containers; i++) {
        cri_container *c = &l.items[l.n++];
        c->id = dup_or_empty(resp->containers[i]->id);
        c->pod_sandbox_id = dup_or_empty(resp->containers[i]->pod_sandbox_id);
        nomem = !c->id || !c->pod_sandbox_id;
    }
    moat__cri__list_containers_response__free_unpacked(resp, NULL);
    if (nomem) {
        cri_container_list_clear(&l);
        return moat_error_set(err, MOAT_E_NOMEM, "ListContainersResponse: out of memory");
    }
    *out = l;
    return 0;
}

int cri_list_containers(cri_client *c, cri_container_list *out, long timeout_ms, moat_error *err)
{
    _cleanup_free_ uint8_t *req = NULL, *resp = NULL;
    size_t req_len = 0, resp_len = 0;
    Moat__Cri__ListContainersRequest r = MOAT__CRI__LIST_CONTAINERS_REQUEST__INIT;
    if (pack(&req, &req_len, &r.base, "ListContainersRequest", err) < 0 ||
        cri_client_call(c, &resp, &resp_len, CRI_LIST_CONTAINERS, req, req_len, timeout_ms, err) <
            0)
        return -1;
    return cri_containers_response_decode(out, resp, resp_len, err);
}

void cri_sandbox_cpu_list_clear(cri_sandbox_cpu_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].id);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int cri_sandbox_stats_response_decode(cri_sandbox_cpu_list *out, const uint8_t *data, size_t len,
                                      moat_error *err)
{
    Moat__Cri__ListPodSandboxStatsResponse *resp =
        moat__cri__list_pod_sandbox_stats_response__unpack(NULL, len, data);
    if (!resp)
        return moat_error_set(err, MOAT_E_INVALID, "ListPodSandboxStatsResponse: does not decode");
    cri_sandbox_cpu_list l = {calloc(resp->n_stats ? resp->n_stats : 1, sizeof(cri_sandbox_cpu)),
                              0};
    bool nomem = !l.items;
    for (size_t i = 0; !nomem && i < resp->n_stats; i++) {
        const Moat__Cri__PodSandboxStats *st = resp->stats[i];
        if (!st->attributes || !st->attributes->id || !*st->attributes->id)
            continue; /* nothing to tell it by */
        cri_sandbox_cpu *c = &l.items[l.n++];
        nomem = !(c->id = strdup(st->attributes->id));
        const Moat__Cri__CpuUsage *cpu = st->linux ? st->linux->cpu : NULL;
        if (cpu && cpu->usage_core_nano_seconds && cpu->timestamp > 0) {
            c->has_cpu = true;
            c->timestamp_ns = cpu->timestamp;
            c->usage_ns = cpu->usage_core_nano_seconds->value;
        }
    }
    moat__cri__list_pod_sandbox_stats_response__free_unpacked(resp, NULL);
    if (nomem) {
        cri_sandbox_cpu_list_clear(&l);
        return moat_error_set(err, MOAT_E_NOMEM, "ListPodSandboxStatsResponse: out of memory");
    }
    *out = l;
    return 0;
}

int cri_list_sandbox_cpu(cri_client *c, cri_sandbox_cpu_list *out, long timeout_ms, moat_error *err)
{
    _cleanup_free_ uint8_t *req = NULL, *resp = NULL;
    size_t req_len = 0, resp_len = 0;
    Moat__Cri__ListPodSandboxStatsRequest r = MOAT__CRI__LIST_POD_SANDBOX_STATS_REQUEST__INIT;
    if (pack(&req, &req_len, &r.base, "ListPodSandboxStatsRequest", err) < 0 ||
        cri_client_call(c, &resp, &resp_len, CRI_LIST_SANDBOX_STATS, req, req_len, timeout_ms,
                        err) < 0)
        return -1;
    return cri_sandbox_stats_response_decode(out, resp, resp_len, err);
}
