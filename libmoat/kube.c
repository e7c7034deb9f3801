#include "kube.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backoff.h"
#include "kobj.h"
#include "kube-internal.h"
#include "strbuf.h"
#include "macro.h"

#define DEFAULT_TIMEOUT_MS        30000L
#define DEFAULT_MAX_RETRIES       5
#define DEFAULT_RETRY_BASE        (100 * 1000000LL)
#define DEFAULT_RETRY_CAP         (10 * 1000000000LL)
#define DEFAULT_PAGE_SIZE         500L
#define CONNECT_TIMEOUT_MS        10000L
#define KUBE_MAX_IDLE_CONNECTIONS 64

const kube_resource KUBE_PODS = {"", "v1", "pods", "Pod", true};
const kube_resource KUBE_NODES = {"", "v1", "nodes", "Node", false};
const kube_resource KUBE_NAMESPACES = {"", "v1", "namespaces", "Namespace", false};
const kube_resource KUBE_CONFIGMAPS = {"", "v1", "configmaps", "ConfigMap", true};
const kube_resource KUBE_SECRETS = {"", "v1", "secrets", "Secret", true};
const kube_resource KUBE_EVENTS = {"", "v1", "events", "Event", true};
const kube_resource KUBE_LEASES = {"coordination.k8s.io", "v1", "leases", "Lease", true};
const kube_resource KUBE_VALIDATINGADMISSIONPOLICIES = {"admissionregistration.k8s.io", "v1",
                                                        "validatingadmissionpolicies",
                                                        "ValidatingAdmissionPolicy", false};
const kube_resource KUBE_VALIDATINGADMISSIONPOLICYBINDINGS = {
    "admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings",
    "ValidatingAdmissionPolicyBinding", false};
const kube_resource KUBE_NETWORKPOLICIES = {"networking.k8s.io", "v1", "networkpolicies",
                                            "NetworkPolicy", true};
const kube_resource KUBE_SANDBOXES = {"moat.dev", "v1alpha1", "sandboxes", "Sandbox", true};
const kube_resource KUBE_CUSTOMRESOURCEDEFINITIONS = {
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false};

/* ---- reasons and Status bodies ----------------------------------------------------- */

static const struct {
    const char *name;
    kube_reason reason;
    long http; /* the code the API server uses for it, for bodies that are not a Status */
} reasons[] = {
    {"NotFound", KUBE_REASON_NOT_FOUND, 404},
    {"AlreadyExists", KUBE_REASON_ALREADY_EXISTS, 409},
    {"Conflict", KUBE_REASON_CONFLICT, 409},
    {"Expired", KUBE_REASON_GONE, 410},
    {"Gone", KUBE_REASON_GONE, 410},
    {"TooManyRequests", KUBE_REASON_TOO_MANY_REQUESTS, 429},
    {"Forbidden", KUBE_REASON_FORBIDDEN, 403},
    {"Unauthorized", KUBE_REASON_UNAUTHORIZED, 401},
    {"Invalid", KUBE_REASON_INVALID, 422},
    {"BadRequest", KUBE_REASON_BAD_REQUEST, 400},
    {"MethodNotAllowed", KUBE_REASON_METHOD_NOT_ALLOWED, 405},
    {"Timeout", KUBE_REASON_TIMEOUT, 504},
    {"ServerTimeout", KUBE_REASON_SERVER_TIMEOUT, 500},
    {"InternalError", KUBE_REASON_INTERNAL_ERROR, 500},
    {"ServiceUnavailable", KUBE_REASON_SERVICE_UNAVAILABLE, 503},
    {"RequestEntityTooLarge", KUBE_REASON_REQUEST_ENTITY_TOO_LARGE, 413},
    {"UnsupportedMediaType", KUBE_REASON_UNSUPPORTED_MEDIA_TYPE, 415},
    {"NotAcceptable", KUBE_REASON_NOT_ACCEPTABLE, 406},
};

kube_reason kube_reason_parse(const char *reason)
{
    for (size_t i = 0; reason && i < ELEMENTSOF(reasons); i++)
        if (strcmp(reason, reasons[i].name) == 0)
            return reasons[i].reason;
    return KUBE_REASON_UNKNOWN;
}

const char *kube_reason_name(kube_reason reason)
{
    for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
        if (reasons[i].reason == reason)
            return reasons[i].name;
    return "Unknown";
}

bool kube_error_is(const moat_error *err, kube_reason reason)
{
    return err && err->code == MOAT_E_KUBE && err->kube_reason == (int)reason;
}

static kube_reason reason_from_http(long status)
{
    if (status == 409)
        return KUBE_REASON_CONFLICT; /* AlreadyExists also uses 409: only the body can tell */
    for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
        if (reasons[i].http == status)
            return reasons[i].reason;
    return status >= 500 ? KUBE_REASON_INTERNAL_ERROR : KUBE_REASON_UNKNOWN;
}

int kube_status_to_error(moat_error *err, long http_status, const char *body, size_t len,
                         const char *what)
{
    if (!err)
        return -1;
    json_t *status = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *kind = kobj_str(status, "kind");
    const char *message = NULL;
    kube_reason reason;
    if (kind && strcmp(kind, "Status") == 0) {
        const char *r = kobj_str(status, "reason");
        message = kobj_str(status, "message");
        reason = r && *r ? kube_reason_parse(r) : reason_from_http(http_status);
    } else {
        /* Not a Status (a proxy's page, a truncated body): the HTTP code is all there is. */
        reason = reason_from_http(http_status);
    }
    if (message && *message)
        moat_error_set(err, MOAT_E_KUBE, "%s: %s (%s, HTTP %ld)", what, message,
                       kube_reason_name(reason), http_status);
    else
        moat_error_set(err, MOAT_E_KUBE, "%s: HTTP %ld %s: %.*s", what, http_status,
                       kube_reason_name(reason), (int)(len > 200 ? 200 : len), body ? body : "");
    err->kube_reason = reason;
    err->http_status = http_status;
    if (body) {
        err->body = malloc(len + 1);
        if (err->body) {
            memcpy(err->body, body, len);
            err->body[len] = '\0';
        }
    }
    json_decref(status);
    return -1;
}

/* ---- the client and its libcurl transport --------------------------------------------- */

struct kube_client {
    kube_config *config;
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    char *user_agent;
    char *impersonate_user;
    char *impersonate_group;
    long timeout_ms;
    int max_retries;
    int64_t retry_base_ns, retry_cap_ns;
    kube_transport transport;
    atomic_uint_fast64_t requests, retries;
};

void kube_http_response_clear(kube_http_response *resp)
{
    if (!resp)
        return;
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
    resp->status = 0;
    resp->retry_after_ns = -1;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *user)
{
    kube_client *c = user;
    pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *user)
{
    kube_client *c = user;
    pthread_mutex_unlock(&c->share_locks[data]);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
    size_t n = size * nmemb;
    return moat_strbuf_append(user, ptr, n) < 0 ? 0 : n; /* 0 aborts the transfer */
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *user)
{
    int64_t *retry_after_ns = user;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof(name) && strncasecmp(ptr, name, sizeof(name) - 1) == 0) {
        long secs = strtol(ptr + sizeof(name) - 1, NULL, 10);
        if (secs >= 0 && secs < 3600)
            *retry_after_ns = (int64_t)secs * 1000000000LL;
    }
    return n;
}

int kube_client_setup_easy(kube_client *c, CURL *h, const char *path,
                           struct curl_slist **ret_headers, moat_error *err)
{
    _cleanup_free_ char *url = NULL, *token = NULL;
    struct curl_slist *headers = NULL;
    size_t len;

    if (asprintf(&url, "%s%s", kube_config_server(c->config), path) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (kube_config_token(c->config, &token, err) < 0)
        return -1;

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, ""); /* gzip when the server offers it */
    /* The shared connection cache closes connections beyond this, counted over all the
     * client's threads: libcurl's default (5) made concurrent workers open a new TLS
     * connection for almost every request. */
    curl_easy_setopt(h, CURLOPT_MAXCONNECTS, (long)KUBE_MAX_IDLE_CONNECTIONS);

    const unsigned char *pem = kube_config_ca(c->config, &len);
    if (pem) {
        struct curl_blob blob = {(void *)pem, len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (kube_config_insecure(c->config)) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    pem = kube_config_client_cert(c->config, &len);
    if (pem) {
        struct curl_blob blob = {(void *)pem, len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &blob);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    }
    pem = kube_config_client_key(c->config, &len);
    if (pem) {
        struct curl_blob blob = {(void *)pem, len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &blob);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }

    headers = curl_slist_append(headers, "Accept: application/json");
    if (token) {
        _cleanup_free_ char *auth = NULL;
        if (asprintf(&auth, "Authorization: Bearer %s", token) >= 0)
            headers = curl_slist_append(headers, auth);
        if (auth)
            explicit_bzero(auth, strlen(auth));
        explicit_bzero(token, strlen(token));
    }
    if (c->impersonate_user) {
        _cleanup_free_ char *hdr = NULL;
        if (asprintf(&hdr, "Impersonate-User: %s", c->impersonate_user) >= 0)
            headers = curl_slist_append(headers, hdr);
    }
    if (c->impersonate_group) {
        _cleanup_free_ char *hdr = NULL;
        if (asprintf(&hdr, "Impersonate-Group: %s", c->impersonate_group) >= 0)
            headers = curl_slist_append(headers, hdr);
    }
    *ret_headers = headers;
    return 0;
}

static int curl_send(void *impl, const kube_http_request *req, kube_http_response *resp,
                     moat_error *err)
{
    kube_client *c = impl;
    CURL *h = curl_easy_init();
    struct curl_slist *headers = NULL;
    moat_strbuf body = {.max = KUBE_MAX_RESPONSE_BYTES};
    int64_t retry_after_ns = -1;
    char errbuf[CURL_ERROR_SIZE] = "";
    int r = -1;

    if (!h)
        return moat_error_set(err, MOAT_E_NOMEM, "curl_easy_init failed");
    if (kube_client_setup_easy(c, h, req->path, &headers, err) < 0)
        goto out;
    if (req->content_type) {
        _cleanup_free_ char *ct = NULL;
        if (asprintf(&ct, "Content-Type: %s", req->content_type) >= 0)
            headers = curl_slist_append(headers, ct);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_SHARE, c->share);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    if (strcmp(req->method, "GET") == 0)
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    if (req->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &retry_after_ns);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);

    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        if (body.over_cap)
            moat_error_set(err, MOAT_E_NOMEM, "answer larger than %zu bytes",
                           KUBE_MAX_RESPONSE_BYTES);
        else if (body.truncated)
            moat_error_set(err, MOAT_E_NOMEM, "out of memory for the answer");
        else
            moat_error_set(err, MOAT_E_NETWORK, "%s", *errbuf ? errbuf : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    if (!(resp->body = moat_strbuf_take_len(&body, &resp->body_len))) {
        moat_error_set(err, MOAT_E_NOMEM, "out of memory for the answer");
        goto out;
    }
    resp->retry_after_ns = retry_after_ns;
    r = 0;
out:
    moat_strbuf_free(&body);
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    return r;
}

int kube_client_new(kube_client **out, kube_config *cfg, const kube_client_options *opts,
                    moat_error *err)
{
    static const kube_client_options defaults = {0};
    if (!opts)
        opts = &defaults;
    if (kube_config_tls_server_name(cfg) && !opts->transport)
        return moat_error_set(err, MOAT_E_INVALID,
                              "kubeconfig context %s: tls-server-name is not supported yet",
                              kube_config_context(cfg));
    kube_client *c = calloc(1, sizeof(*c));
    if (!c)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    c->config = cfg;
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->max_retries = opts->max_retries > 0   ? opts->max_retries
                     : opts->max_retries < 0 ? 0
                                             : DEFAULT_MAX_RETRIES;
    c->retry_base_ns = opts->retry_base_ns > 0 ? opts->retry_base_ns : DEFAULT_RETRY_BASE;
    c->retry_cap_ns = opts->retry_cap_ns > 0 ? opts->retry_cap_ns : DEFAULT_RETRY_CAP;
    c->user_agent = strdup(opts->user_agent ? opts->user_agent : "moat/0.1");
    c->impersonate_user = opts->impersonate_user ? strdup(opts->impersonate_user) : NULL;
    c->impersonate_group = opts->impersonate_group ? strdup(opts->impersonate_group) : NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->share_locks[i], NULL);
    c->share = curl_share_init();
    if (!c->user_agent || !c->share) {
        kube_client_free(c);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    /* Connections, TLS sessions and DNS answers are shared by every request of the client,
     * whatever thread sends it: connection reuse without one handle per thread. */
    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    if (opts->transport)
        c->transport = *opts->transport;
    else
        c->transport = (kube_transport){curl_send, c};
    *out = c;
    return 0;
}

void kube_client_free(kube_client *c)
{
    if (!c)
        return;
    if (c->share)
        curl_share_cleanup(c->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&c->share_locks[i]);
    free(c->user_agent);
    free(c->impersonate_user);
    free(c->impersonate_group);
    free(c);
}

const kube_config *kube_client_config(const kube_client *c)
{
    return c->config;
}

void kube_client_stats(const kube_client *c, uint64_t *ret_requests, uint64_t *ret_retries)
{
    *ret_requests = atomic_load(&((kube_client *)c)->requests);
    *ret_retries = atomic_load(&((kube_client *)c)->retries);
}

void kube_sleep_ns(int64_t ns)
{
    struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
    while (ns > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Sends with retries of 429 and 5xx. On success *resp holds a 2xx answer; any other answer
 * becomes an API error. A POST is not idempotent: a 5xx may come after it took effect (a
 * second create would fail AlreadyExists, or make a second object with generateName), so
 * it is retried on 429 alone, which the API server answers before it handles anything. */
static int send_request(kube_client *c, const kube_http_request *req, kube_http_response *resp,
                        const char *what, moat_error *err)
{
    for (unsigned attempt = 0;; attempt++) {
        kube_http_response_clear(resp);
        atomic_fetch_add(&c->requests, 1);
        if (c->transport.send(c->transport.impl, req, resp, err) < 0)
            return moat_error_prefix(err, "%s", what);
        if (resp->status >= 200 && resp->status < 300)
            return 0;
        bool idempotent = strcmp(req->method, "POST") != 0;
        bool retriable = resp->status == 429 || (idempotent && resp->status >= 500);
        if (!retriable || attempt >= (unsigned)c->max_retries) {
            kube_status_to_error(err, resp->status, resp->body, resp->body_len, what);
            if (retriable && attempt > 0)
                moat_error_prefix(err, "after %u retries", attempt);
            kube_http_response_clear(resp);
            return -1;
        }
        int64_t delay =
            moat_backoff_jittered(c->retry_base_ns, c->retry_cap_ns, attempt, moat_random_unit());
        if (resp->retry_after_ns >= 0)
            delay = resp->retry_after_ns < c->retry_cap_ns ? resp->retry_after_ns : c->retry_cap_ns;
        atomic_fetch_add(&c->retries, 1);
        kube_sleep_ns(delay);
    }
}

static int decode(json_t **ret, const kube_http_response *resp, const char *what, moat_error *err)
{
    if (!ret)
        return 0;
    if (resp->body_len == 0) {
        *ret = NULL;
        return 0;
    }
    json_error_t jerr;
    json_t *v = json_loadb(resp->body, resp->body_len, 0, &jerr);
    if (!v)
        return moat_error_set(err, MOAT_E_INVALID, "%s: answer is not JSON: %s at byte %d", what,
                              jerr.text, jerr.position);
    *ret = v;
    return 0;
}

/* A request to any path; *ret is the decoded answer (NULL when the body is empty). */
static int kube_request(kube_client *c, json_t **ret, const char *method, const char *path,
                        const json_t *body, const char *content_type, moat_error *err)
{
    _cleanup_free_ char *payload = NULL, *what = NULL;
    kube_http_response resp = {.retry_after_ns = -1};
    if (asprintf(&what, "%s %s", method, path) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (body) {
        payload = json_dumps(body, JSON_COMPACT);
        if (!payload)
            return moat_error_set(err, MOAT_E_INVALID, "%s: body cannot be encoded", what);
    }
    kube_http_request req = {
        .method = method,
        .path = path,
        .content_type = body ? (content_type ? content_type : "application/json") : NULL,
        .body = payload,
        .body_len = payload ? strlen(payload) : 0,
    };
    int r = send_request(c, &req, &resp, what, err);
    if (r == 0)
        r = decode(ret, &resp, what, err);
    kube_http_response_clear(&resp);
    return r;
}

char *kube_resource_path(const kube_resource *r, const char *ns, const char *name)
{
    char *path = NULL;
    int n;
    const char *prefix = r->group && *r->group ? "/apis/" : "/api";
    const char *group = r->group && *r->group ? r->group : "";
    if (r->namespaced && ns && *ns)
        n = asprintf(&path, "%s%s/%s/namespaces/%s/%s%s%s", prefix, group, r->version, ns,
                     r->plural, name ? "/" : "", name ? name : "");
    else
        n = asprintf(&path, "%s%s/%s/%s%s%s", prefix, group, r->version, r->plural, name ? "/" : "",
                     name ? name : "");
    return n < 0 ? NULL : path;
}

int kube_get(kube_client *c, json_t **ret, const kube_resource *r, const char *ns, const char *name,
             moat_error *err)
{
    return kube_get_subresource(c, ret, r, ns, name, NULL, err);
}

int kube_get_subresource(kube_client *c, json_t **ret, const kube_resource *r, const char *ns,
                         const char *name, const char *subresource, moat_error *err)
{
    _cleanup_free_ char *path = kube_resource_path(r, ns, name), *full = NULL;
    if (!path ||
        asprintf(&full, "%s%s%s", path, subresource ? "/" : "", subresource ? subresource : "") < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    return kube_request(c, ret, "GET", full, NULL, NULL, err);
}

/* Appends "&key=escaped(value)" (the first one with '?') to *query. */
static int query_add(char **query, const char *key, const char *value)
{
    if (!value)
        return 0;
    char *esc = curl_easy_escape(NULL, value, 0), *q = NULL;
    if (!esc)
        return -1;
    int n = asprintf(&q, "%s%s%s=%s", *query ? *query : "", *query ? "&" : "?", key, esc);
    curl_free(esc);
    if (n < 0)
        return -1;
    free(*query);
    *query = q;
    return 0;
}

int kube_list(kube_client *c, json_t **ret, const kube_resource *r, const char *ns,
              const kube_list_options *opts, moat_error *err)
{
    static const kube_list_options defaults = {0};
    _cleanup_free_ char *path = kube_resource_path(r, ns, NULL);
    _cleanup_free_ char *cont = NULL;
    json_t *list = NULL;
    char limit[32];

    if (!opts)
        opts = &defaults;
    if (!path)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    snprintf(limit, sizeof(limit), "%ld", opts->limit > 0 ? opts->limit : DEFAULT_PAGE_SIZE);
    for (;;) {
        _cleanup_free_ char *query = NULL, *full = NULL;
        json_t *page = NULL;
        if (query_add(&query, "limit", limit) < 0 ||
            query_add(&query, "labelSelector", opts->label_selector) < 0 ||
            query_add(&query, "fieldSelector", opts->field_selector) < 0 ||
            query_add(&query, "continue", cont) < 0 ||
            (!cont && query_add(&query, "resourceVersion", opts->resource_version) < 0) ||
            asprintf(&full, "%s%s", path, query) < 0) {
            json_decref(list);
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
        }
        if (kube_request(c, &page, "GET", full, NULL, NULL, err) < 0) {
            json_decref(list);
            return -1;
        }
        json_t *items = json_object_get(page, "items");
        if (!json_is_array(items)) {
            /* "items": null is how an empty list may come; anything else is not a List. */
            if (items && !json_is_null(items)) {
                json_decref(page);
                json_decref(list);
                return moat_error_set(err, MOAT_E_INVALID, "list %s: answer has no items", path);
            }
            json_object_set_new(page, "items", json_array());
            items = json_object_get(page, "items");
        }
        if (!list) {
            list = json_incref(page);
        } else {
            json_array_extend(json_object_get(list, "items"), items);
        }
        const char *next = kobj_str(page, "metadata.continue");
        free(cont);
        cont = next && *next ? strdup(next) : NULL;
        json_decref(page);
        if (!cont)
            break;
    }
    json_t *meta = json_object_get(list, "metadata");
    if (json_is_object(meta))
        json_object_del(meta, "continue");
    *ret = list;
    return 0;
}

static const char *name_of(const json_t *obj)
{
    const char *n = kobj_name(obj);
    return n ? n : "";
}

int kube_create(kube_client *c, json_t **ret, const kube_resource *r, const char *ns,
                const json_t *obj, moat_error *err)
{
    if (!ns)
        ns = kobj_namespace(obj);
    _cleanup_free_ char *path = kube_resource_path(r, ns, NULL);
    if (!path)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (kube_request(c, ret, "POST", path, obj, NULL, err) < 0)
        return moat_error_prefix(err, "create %s %s/%s", r->plural, ns ? ns : "", name_of(obj));
    return 0;
}

static int put(kube_client *c, json_t **ret, const kube_resource *r, const json_t *obj,
               const char *sub, moat_error *err)
{
    const char *name = kobj_name(obj), *ns = kobj_namespace(obj);
    if (!name)
        return moat_error_set(err, MOAT_E_INVALID, "update %s: object has no name", r->plural);
    _cleanup_free_ char *path = kube_resource_path(r, ns, name), *full = NULL;
    if (!path || asprintf(&full, "%s%s", path, sub) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (kube_request(c, ret, "PUT", full, obj, NULL, err) < 0)
        return moat_error_prefix(err, "update%s %s %s/%s", *sub ? " status of" : "", r->plural,
                                 ns ? ns : "", name);
    return 0;
}

int kube_update(kube_client *c, json_t **ret, const kube_resource *r, const json_t *obj,
                moat_error *err)
{
    return put(c, ret, r, obj, "", err);
}

int kube_update_status(kube_client *c, json_t **ret, const kube_resource *r, const json_t *obj,
                       moat_error *err)
{
    return put(c, ret, r, obj, "/status", err);
}

int kube_patch(kube_client *c, json_t **ret, const kube_resource *r, const char *ns,
               const char *name, kube_patch_type type, const json_t *patch,
               const kube_patch_options *opts, moat_error *err)
{
    static const char *const types[] = {
        [KUBE_PATCH_MERGE] = "application/merge-patch+json",
        [KUBE_PATCH_JSON] = "application/json-patch+json",
        [KUBE_PATCH_STRATEGIC] = "application/strategic-merge-patch+json",
        [KUBE_PATCH_APPLY] = "application/apply-patch+yaml",
    };
    static const kube_patch_options defaults = {0};
    if (!opts)
        opts = &defaults;
    if (type == KUBE_PATCH_APPLY && !opts->field_manager)
        return moat_error_set(err, MOAT_E_INVALID, "apply %s %s: no field manager", r->plural,
                              name);
    _cleanup_free_ char *path = kube_resource_path(r, ns, name), *query = NULL, *full = NULL;
    if (!path || query_add(&query, "fieldManager", opts->field_manager) < 0 ||
        (opts->force && query_add(&query, "force", "true") < 0) ||
        asprintf(&full, "%s%s%s%s", path, opts->subresource ? "/" : "",
                 opts->subresource ? opts->subresource : "", query ? query : "") < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (kube_request(c, ret, "PATCH", full, patch, types[type], err) < 0)
        return moat_error_prefix(err, "patch %s %s/%s", r->plural, ns ? ns : "", name);
    return 0;
}

int kube_delete(kube_client *c, json_t **ret, const kube_resource *r, const char *ns,
                const char *name, const kube_delete_options *opts, moat_error *err)
{
    _cleanup_free_ char *path = kube_resource_path(r, ns, name);
    if (!path)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    json_t *body = json_object();
    json_object_set_new(body, "kind", json_string("DeleteOptions"));
    json_object_set_new(body, "apiVersion", json_string("v1"));
    if (opts && opts->propagation)
        json_object_set_new(body, "propagationPolicy", json_string(opts->propagation));
    if (opts && opts->grace_period_set)
        json_object_set_new(body, "gracePeriodSeconds", json_integer(opts->grace_period_seconds));
    if (opts && (opts->precondition_uid || opts->precondition_resource_version)) {
        json_t *pre = json_object();
        if (opts->precondition_uid)
            json_object_set_new(pre, "uid", json_string(opts->precondition_uid));
        if (opts->precondition_resource_version)
            json_object_set_new(pre, "resourceVersion",
                                json_string(opts->precondition_resource_version));
        json_object_set_new(body, "preconditions", pre);
    }
    int rc = kube_request(c, ret, "DELETE", path, body, NULL, err);
    json_decref(body);
    if (rc < 0)
        return moat_error_prefix(err, "delete %s %s/%s", r->plural, ns ? ns : "", name);
    return 0;
}
