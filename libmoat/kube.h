/* The Kubernetes API client: requests and their errors.
 *
 * A kube_client sends requests to one API server, as configured by a kube_config, over
 * libcurl with connection reuse, TLS verification on, a timeout on every request and no
 * signals. Objects are jansson values and stay json_t; libmoat/kobj.h reads typed fields
 * safely. Every function here is thread-safe.
 *
 * Errors: a request the API server refuses fails with MOAT_E_KUBE; err->kube_reason is
 * taken from the Status body's `reason` (never guessed from the HTTP code, except for a
 * body that is not a Status at all), err->message keeps the server's message with context
 * ("create configmaps default/a: ..."), and err->body keeps the body. Network failures are
 * MOAT_E_NETWORK. 429 and 5xx answers are retried with capped exponential backoff and
 * jitter, honouring Retry-After, up to max_retries; every other error goes straight back. */
#ifndef MOAT_KUBE_H
#define MOAT_KUBE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "kubeconfig.h"

typedef enum {
    KUBE_REASON_UNKNOWN = 0,
    KUBE_REASON_NOT_FOUND,
    KUBE_REASON_ALREADY_EXISTS,
    KUBE_REASON_CONFLICT,
    KUBE_REASON_GONE, /* "Expired" or "Gone": a resourceVersion or continue token too old */
    KUBE_REASON_TOO_MANY_REQUESTS,
    KUBE_REASON_FORBIDDEN,
    KUBE_REASON_UNAUTHORIZED,
    KUBE_REASON_INVALID,
    KUBE_REASON_BAD_REQUEST,
    KUBE_REASON_METHOD_NOT_ALLOWED,
    KUBE_REASON_TIMEOUT,
    KUBE_REASON_SERVER_TIMEOUT,
    KUBE_REASON_INTERNAL_ERROR,
    KUBE_REASON_SERVICE_UNAVAILABLE,
    KUBE_REASON_REQUEST_ENTITY_TOO_LARGE,
    KUBE_REASON_UNSUPPORTED_MEDIA_TYPE,
    KUBE_REASON_NOT_ACCEPTABLE,
} kube_reason;

/* "NotFound" -> KUBE_REASON_NOT_FOUND, ...; unknown or NULL -> KUBE_REASON_UNKNOWN. */
kube_reason kube_reason_parse(const char *reason);
const char *kube_reason_name(kube_reason reason);

/* True when err holds an API error with that reason. */
bool kube_error_is(const moat_error *err, kube_reason reason);

/* Fills err from an error answer: MOAT_E_KUBE, the reason and message of the Status body
 * (or, when the body is not a Status, a reason from the HTTP code and the body's start as
 * message), http_status, and a copy of the body. `what` prefixes the message. Returns -1. */
int kube_status_to_error(moat_error *err, long http_status, const char *body, size_t len,
                         const char *what);

/* Where a kind of object lives in the API. */
typedef struct {
    const char *group; /* "" for the core group */
    const char *version;
    const char *plural;
    const char *kind;
    bool namespaced;
} kube_resource;

extern const kube_resource KUBE_PODS, KUBE_NODES, KUBE_NAMESPACES, KUBE_CONFIGMAPS, KUBE_SECRETS,
    KUBE_EVENTS, KUBE_LEASES, KUBE_NETWORKPOLICIES, KUBE_SANDBOXES,
    KUBE_VALIDATINGADMISSIONPOLICIES, KUBE_VALIDATINGADMISSIONPOLICYBINDINGS,
    KUBE_CUSTOMRESOURCEDEFINITIONS;

/* The HTTP exchange, behind a function pointer so unit tests can replace the network. */
typedef struct {
    const char *method;
    const char *path; /* "/api/v1/namespaces/x/pods?limit=5": joined to the server URL */
    const char *content_type;
    const char *body; /* NULL for none */
    size_t body_len;
} kube_http_request;

typedef struct {
    long status;
    char *body; /* owned, NUL-terminated */
    size_t body_len;
    int64_t retry_after_ns; /* from Retry-After (seconds), -1 when absent */
} kube_http_response;

void kube_http_response_clear(kube_http_response *resp);

typedef struct {
    /* Sends one request; fills resp (any HTTP status) and returns 0, or returns -1 with
     * MOAT_E_NETWORK when no answer came. */
    int (*send)(void *impl, const kube_http_request *req, kube_http_response *resp,
                moat_error *err);
    void *impl;
} kube_transport;

typedef struct {
    long timeout_ms;                 /* each request; default 30000 */
    int max_retries;                 /* for 429 and 5xx; default 5; 0 = default, -1 = none */
    int64_t retry_base_ns;           /* first retry delay; default 100 ms */
    int64_t retry_cap_ns;            /* default 10 s */
    const char *user_agent;          /* default "moat/<version>" */
    const char *impersonate_user;    /* sent as Impersonate-User when set */
    const char *impersonate_group;   /* sent as Impersonate-Group when set */
    const kube_transport *transport; /* NULL: libcurl to the configured server */
} kube_client_options;

typedef struct kube_client kube_client;

/* Creates a client for cfg. The client borrows cfg, which must outlive it. opts may be
 * NULL. curl_global_init must have run (in main). */
int kube_client_new(kube_client **out, kube_config *cfg, const kube_client_options *opts,
                    moat_error *err);
void kube_client_free(kube_client *c);

const kube_config *kube_client_config(const kube_client *c);

/* The path of a collection or an object: "/apis/moat.dev/v1alpha1/namespaces/ns/sandboxes"
 * with name NULL; ns is ignored for cluster-scoped resources. Caller frees. */
char *kube_resource_path(const kube_resource *r, const char *ns, const char *name);

int kube_get(kube_client *c, json_t **ret, const kube_resource *r, const char *ns, const char *name,
             moat_error *err);

/* GET of a subresource by name ("status", "log", "scale", ...). */
int kube_get_subresource(kube_client *c, json_t **ret, const kube_resource *r, const char *ns,
                         const char *name, const char *subresource, moat_error *err);

typedef struct {
    const char *label_selector;
    const char *field_selector;
    long limit;                   /* page size; default 500 */
    const char *resource_version; /* e.g. "0" to allow the watch cache */
} kube_list_options;

/* Lists every object, following `continue` across pages of one consistent snapshot. *ret is
 * a List: "items" holds all of them and "metadata.resourceVersion" the snapshot's version,
 * from which a watch can start. A continue token that expired fails with KUBE_REASON_GONE:
 * list again. */
int kube_list(kube_client *c, json_t **ret, const kube_resource *r, const char *ns,
              const kube_list_options *opts, moat_error *err);

/* POST obj into ns (ns may be NULL when obj's metadata.namespace is set). */
int kube_create(kube_client *c, json_t **ret, const kube_resource *r, const char *ns,
                const json_t *obj, moat_error *err);

/* PUT obj (name, namespace and resourceVersion from its metadata): a stale resourceVersion
 * fails with KUBE_REASON_CONFLICT. */
int kube_update(kube_client *c, json_t **ret, const kube_resource *r, const json_t *obj,
                moat_error *err);

/* The same through the status subresource: only status changes. */
int kube_update_status(kube_client *c, json_t **ret, const kube_resource *r, const json_t *obj,
                       moat_error *err);

typedef enum {
    KUBE_PATCH_MERGE, /* application/merge-patch+json */
    KUBE_PATCH_JSON,  /* application/json-patch+json */
    KUBE_PATCH_STRATEGIC,
    KUBE_PATCH_APPLY, /* server-side apply; field_manager required */
} kube_patch_type;

typedef struct {
    const char *subresource;   /* NULL, or "status" */
    const char *field_manager; /* required for KUBE_PATCH_APPLY */
    bool force;                /* server-side apply: take ownership of conflicting fields */
} kube_patch_options;

int kube_patch(kube_client *c, json_t **ret, const kube_resource *r, const char *ns,
               const char *name, kube_patch_type type, const json_t *patch,
               const kube_patch_options *opts, moat_error *err);

typedef struct {
    const char *propagation;      /* "Background", "Foreground", "Orphan", or NULL */
    const char *precondition_uid; /* delete only if the object still has this uid */
    const char *precondition_resource_version;
    long grace_period_seconds; /* -1 (or 0 in a zeroed struct): the server's default */
    bool grace_period_set;
} kube_delete_options;

/* Deletes; a failed precondition is KUBE_REASON_CONFLICT. *ret (may be NULL) receives the
 * answer: the object being deleted or a Status. */
int kube_delete(kube_client *c, json_t **ret, const kube_resource *r, const char *ns,
                const char *name, const kube_delete_options *opts, moat_error *err);

/* A GET whose body is handed to on_data as it arrives, for answers that do not end by
 * themselves (a container's log with follow=true): no overall timeout and no retries; it
 * returns when the server ends the body (0). An answer that is not 2xx fails as the
 * requests above do (MOAT_E_KUBE, the Status's reason and message). on_data returning < 0
 * stops the transfer: -1 with MOAT_E_CANCELED. While nothing arrives, on_data is called
 * with len 0 about once a second, so its caller can stop a quiet stream. Always over
 * libcurl: a replaced transport is not used. */
typedef int (*kube_stream_cb)(void *user, const char *data, size_t len);
int kube_stream_get(kube_client *c, const char *path, kube_stream_cb on_data, void *user,
                    moat_error *err);

/* How many requests were sent and retried since the client was made (for metrics). */
void kube_client_stats(const kube_client *c, uint64_t *ret_requests, uint64_t *ret_retries);

#endif
