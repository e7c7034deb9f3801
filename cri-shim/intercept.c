#include "intercept.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/log.h"
#include "libmoat/names.h"
#include "libmoat/strbuf.h"
#include "libmoat/macro.h"
#include "messages.h"

#define M_RUN_POD_SANDBOX "/runtime.v1.RuntimeService/RunPodSandbox"
#define M_STATUS          "/runtime.v1.RuntimeService/Status"
#define M_SANDBOX_STATUS  "/runtime.v1.RuntimeService/PodSandboxStatus"
#define M_CREATE          "/runtime.v1.RuntimeService/CreateContainer"
#define M_REMOVE_SANDBOX  "/runtime.v1.RuntimeService/RemovePodSandbox"
#define MAX_METHODS       256 /* distinct methods counted; more share one row */

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,   0.25,   0.5,   1,    2.5};
#define N_BUCKETS ELEMENTSOF(buckets)

typedef struct {
    char *method;
    uint64_t calls, errors, unavailable;
    uint64_t bucket[N_BUCKETS + 1];
    double sum;
} method_stats;

struct shim_intercept {
    const shim_handlers *handlers;
    const iso_probe_result *probe;
    iso_wall *wall;       /* NULL: none */
    pthread_mutex_t lock; /* guards probe, wall, the stats below */
    method_stats methods[MAX_METHODS];
    size_t n_methods;
    json_t *decisions; /* "handler runtime" -> count */
    /* sandbox id -> "internet" or "none": the wall decision as the runtime recorded it
     * (the sandbox's annotations at RunPodSandbox, read back from PodSandboxStatus), so
     * CreateContainer never goes by the mutable pod's annotations alone */
    json_t *walled;
    uint64_t refusals, invalid;
    uint64_t wall_errors, wall_refusals, wall_reasserts, wall_restores;
};

static bool wants(void *user, const char *method)
{
    shim_intercept *s = user;
    if (strcmp(method, M_RUN_POD_SANDBOX) == 0 || strcmp(method, M_STATUS) == 0)
        return true;
    return s->wall && (strcmp(method, M_SANDBOX_STATUS) == 0 || strcmp(method, M_CREATE) == 0 ||
                       strcmp(method, M_REMOVE_SANDBOX) == 0);
}

/* The unary methods of runtime.v1 (k8s.io/cri-api v0.35): every one but GetContainerEvents.
 * A method not listed (a newer one) takes the general streaming relay, which is always
 * right, only slower. */
static bool unary(void *user, const char *method)
{
    static const char *const runtime[] = {"Version",
                                          "RunPodSandbox",
                                          "StopPodSandbox",
                                          "RemovePodSandbox",
                                          "PodSandboxStatus",
                                          "ListPodSandbox",
                                          "CreateContainer",
                                          "StartContainer",
                                          "StopContainer",
                                          "RemoveContainer",
                                          "ListContainers",
                                          "ContainerStatus",
                                          "UpdateContainerResources",
                                          "ReopenContainerLog",
                                          "ExecSync",
                                          "Exec",
                                          "Attach",
                                          "PortForward",
                                          "ContainerStats",
                                          "ListContainerStats",
                                          "PodSandboxStats",
                                          "ListPodSandboxStats",
                                          "UpdateRuntimeConfig",
                                          "Status",
                                          "CheckpointContainer",
                                          "ListMetricDescriptors",
                                          "ListPodSandboxMetrics",
                                          "RuntimeConfig",
                                          "UpdatePodSandboxResources"};
    static const char *const image[] = {"ListImages", "ImageStatus", "PullImage", "RemoveImage",
                                        "ImageFsInfo"};
    static const char rs[] = "/runtime.v1.RuntimeService/", is[] = "/runtime.v1.ImageService/";
    if (strncmp(method, rs, sizeof(rs) - 1) == 0) {
        for (size_t i = 0; i < ELEMENTSOF(runtime); i++)
            if (strcmp(method + sizeof(rs) - 1, runtime[i]) == 0)
                return true;
    } else if (strncmp(method, is, sizeof(is) - 1) == 0) {
        for (size_t i = 0; i < ELEMENTSOF(image); i++)
            if (strcmp(method + sizeof(is) - 1, image[i]) == 0)
                return true;
    }
    return false;
}

/* CreateContainer of a walled pod: only once it is walled, with its DNS servers. */
static int wall_create(shim_intercept *s, const uint8_t *in, size_t len, int *ret_status,
                       char **ret_message)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    shim_wall_facts f = {0};
    if (shim_create_container_facts(in, len, &f, &err) < 0) {
        pthread_mutex_lock(&s->lock);
        s->invalid++;
        pthread_mutex_unlock(&s->lock);
        *ret_status = SHIM_INVALID_ARGUMENT;
        *ret_message = strdup(err.message);
        return -1;
    }
    int r = 0;
    pthread_mutex_lock(&s->lock);
    const char *recorded = json_string_value(json_object_get(s->walled, f.sandbox_id));
    if (recorded) {
        /* the decision taken once, at RunPodSandbox, whatever the request says now */
        f.walled = true;
        f.internet = strcmp(recorded, MOAT_EGRESS_INTERNET) == 0;
    }
    pthread_mutex_unlock(&s->lock);
    if (f.walled) {
        pthread_mutex_lock(&s->lock);
        if (!iso_wall_has(s->wall, f.sandbox_id))
            r = moat_error_set(&err, MOAT_E_NOTFOUND,
                               "egress wall: pod sandbox %s is not walled yet (its "
                               "PodSandboxStatus with its address has not come through the "
                               "shim, or walling it failed: moat-cri's log says)",
                               f.sandbox_id);
        else
            r = iso_wall_set_dns(s->wall, f.sandbox_id, (const char *const *)f.dns,
                                 f.internet ? f.n_dns : 0, &err);
        if (r < 0)
            s->wall_refusals++;
        pthread_mutex_unlock(&s->lock);
    }
    if (r < 0) {
        *ret_status = SHIM_FAILED_PRECONDITION;
        *ret_message = strdup(err.message);
        log_warn(f.pod, "CreateContainer refused: %s", err.message);
    }
    shim_wall_facts_clear(&f);
    return r;
}

static void wall_remove(shim_intercept *s, const uint8_t *in, size_t len)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    _cleanup_free_ char *id = NULL;
    if (shim_remove_pod_sandbox_id(in, len, &id, &err) < 0) {
        log_warn(NULL, "RemovePodSandbox: %s", err.message);
        return;
    }
    pthread_mutex_lock(&s->lock);
    bool had = iso_wall_has(s->wall, id);
    json_object_del(s->walled, id);
    int r = iso_wall_remove(s->wall, id, &err);
    if (r < 0)
        s->wall_errors++;
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        log_error(NULL, "%s (its addresses are released when a pod reuses them)", err.message);
    else if (had)
        log_info(NULL, "pod sandbox %s: egress wall taken down", id);
}

/* A ready pod's addresses: walled if it is walled, released from a gone pod if not. Never
 * changes the answer; a failure is logged, and CreateContainer then refuses. */
static void wall_status(shim_intercept *s, const uint8_t *in, size_t len)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    shim_wall_facts f = {0};
    if (shim_sandbox_status_facts(in, len, &f, &err) < 0) {
        log_warn(NULL, "PodSandboxStatus: %s", err.message);
        return;
    }
    int r = 0;
    bool walled_now = false;
    pthread_mutex_lock(&s->lock);
    if (f.walled && f.sandbox_id && !json_object_get(s->walled, f.sandbox_id) &&
        json_object_set_new(s->walled, f.sandbox_id,
                            json_string(f.internet ? MOAT_EGRESS_INTERNET : MOAT_EGRESS_NONE)) < 0)
        log_warn(f.pod, "egress wall: out of memory recording the decision");
    if (f.ready && f.n_addrs && f.walled && !iso_wall_has(s->wall, f.sandbox_id)) {
        r = iso_wall_add(s->wall, f.sandbox_id, (const char *const *)f.addrs, f.n_addrs, NULL, 0,
                         &err);
        walled_now = r == 0;
    } else if (f.ready && !f.walled) {
        for (size_t i = 0; i < f.n_addrs && r == 0; i++)
            r = iso_wall_release(s->wall, f.addrs[i], f.sandbox_id, &err);
    }
    if (r < 0)
        s->wall_errors++;
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        log_error(f.pod, "%s", err.message);
    if (walled_now)
        log_info(f.pod, "egress wall up for %s%s (sandbox %s)", f.addrs[0],
                 f.n_addrs > 1 ? " and more" : "", f.sandbox_id);
    shim_wall_facts_clear(&f);
}

static int on_request(void *user, const char *method, const uint8_t *in, size_t len,
                      uint8_t **ret_out, size_t *ret_len, int *ret_status, char **ret_message)
{
    shim_intercept *s = user;
    if (s->wall && strcmp(method, M_CREATE) == 0)
        return wall_create(s, in, len, ret_status, ret_message);
    if (s->wall && strcmp(method, M_REMOVE_SANDBOX) == 0) {
        wall_remove(s, in, len);
        return 0;
    }
    if (strcmp(method, M_RUN_POD_SANDBOX) != 0)
        return 0;
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    _cleanup_free_ char *pod = NULL;
    shim_decision d = {0};
    pthread_mutex_lock(&s->lock);
    const iso_probe_result *probe = s->probe;
    int r =
        shim_run_pod_sandbox_rewrite(in, len, s->handlers, probe, ret_out, ret_len, &d, &pod, &err);
    if (r == 1) {
        char key[256];
        snprintf(key, sizeof(key), "%s %s", d.handler, d.runtime);
        json_t *n = json_object_get(s->decisions, key);
        json_object_set_new(s->decisions, key, json_integer(json_integer_value(n) + 1));
    } else if (r < 0) {
        if (err.code == MOAT_E_INVALID)
            s->invalid++;
        else
            s->refusals++;
    }
    pthread_mutex_unlock(&s->lock);

    if (r == 1)
        log_info(pod, "runs under %s, handler %s: %s", d.runtime, d.handler, d.reason);
    if (r < 0) {
        *ret_status = err.code == MOAT_E_INVALID ? SHIM_INVALID_ARGUMENT : SHIM_FAILED_PRECONDITION;
        *ret_message = strdup(err.message);
        log_warn(pod, "RunPodSandbox refused: %s", err.message);
    }
    shim_decision_clear(&d);
    return r;
}

static int on_response(void *user, const char *method, const uint8_t *in, size_t len,
                       uint8_t **ret_out, size_t *ret_len)
{
    shim_intercept *s = user;
    if (s->wall && strcmp(method, M_SANDBOX_STATUS) == 0) {
        wall_status(s, in, len);
        return 0;
    }
    if (strcmp(method, M_STATUS) != 0)
        return 0;
    const char *names[] = {s->handlers->handler_auto, s->handlers->handler_vm,
                           s->handlers->handler_gvisor};
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    int r = shim_status_add_handlers(in, len, names, ELEMENTSOF(names), ret_out, ret_len, &err);
    if (r < 0)
        log_warn(NULL, "Status response left as it was: %s", err.message);
    return r < 0 ? 0 : r;
}

static void on_done(void *user, const char *method, int status, int64_t duration_ns)
{
    shim_intercept *s = user;
    pthread_mutex_lock(&s->lock);
    method_stats *m = NULL;
    for (size_t i = 0; i < s->n_methods && !m; i++)
        if (strcmp(s->methods[i].method, method) == 0)
            m = &s->methods[i];
    if (!m && s->n_methods < MAX_METHODS) {
        m = &s->methods[s->n_methods];
        m->method = strdup(method);
        if (m->method)
            s->n_methods++;
        else
            m = NULL;
    }
    if (m) {
        double secs = (double)duration_ns / 1e9;
        size_t b = 0;
        while (b < N_BUCKETS && secs > buckets[b])
            b++;
        m->calls++;
        m->bucket[b]++;
        m->sum += secs;
        if (status != 0)
            m->errors++;
        if (status == SHIM_UNAVAILABLE)
            m->unavailable++;
    }
    pthread_mutex_unlock(&s->lock);
}

int shim_intercept_new(shim_intercept **out, const shim_handlers *handlers,
                       const iso_probe_result *probe, iso_wall *wall, moat_error *err)
{
    shim_intercept *s = calloc(1, sizeof(*s));
    if (!s)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    s->handlers = handlers;
    s->probe = probe;
    s->wall = wall;
    s->decisions = json_object();
    s->walled = json_object();
    if (!s->decisions || !s->walled) {
        json_decref(s->decisions);
        json_decref(s->walled);
        free(s);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return 0;
}

void shim_intercept_set_probe(shim_intercept *s, const iso_probe_result *probe)
{
    pthread_mutex_lock(&s->lock);
    s->probe = probe;
    pthread_mutex_unlock(&s->lock);
}

shim_hooks shim_intercept_hooks(shim_intercept *s)
{
    return (shim_hooks){wants, unary, on_request, on_response, on_done, s};
}

char *shim_intercept_metrics(shim_intercept *s)
{
    moat_strbuf b = {0};
    pthread_mutex_lock(&s->lock);
    moat_strbuf_appendf(&b, "# HELP moat_cri_calls_total CRI calls relayed, by method and result.\n"
                            "# TYPE moat_cri_calls_total counter\n");
    for (size_t i = 0; i < s->n_methods; i++) {
        method_stats *m = &s->methods[i];
        moat_strbuf_appendf(&b, "moat_cri_calls_total{method=\"%s\",result=\"ok\"} %llu\n",
                            m->method, (unsigned long long)(m->calls - m->errors));
        moat_strbuf_appendf(&b, "moat_cri_calls_total{method=\"%s\",result=\"error\"} %llu\n",
                            m->method, (unsigned long long)m->errors);
    }
    moat_strbuf_appendf(&b,
                        "# HELP moat_cri_upstream_unavailable_total Calls that found containerd "
                        "unavailable.\n# TYPE moat_cri_upstream_unavailable_total counter\n");
    uint64_t unavailable = 0;
    for (size_t i = 0; i < s->n_methods; i++)
        unavailable += s->methods[i].unavailable;
    moat_strbuf_appendf(&b, "moat_cri_upstream_unavailable_total %llu\n",
                        (unsigned long long)unavailable);
    moat_strbuf_appendf(&b, "# HELP moat_cri_call_duration_seconds Time a relayed call takes.\n"
                            "# TYPE moat_cri_call_duration_seconds histogram\n");
    for (size_t i = 0; i < s->n_methods; i++) {
        method_stats *m = &s->methods[i];
        uint64_t cum = 0;
        for (size_t k = 0; k < N_BUCKETS; k++) {
            cum += m->bucket[k];
            moat_strbuf_appendf(
                &b, "moat_cri_call_duration_seconds_bucket{method=\"%s\",le=\"%g\"} %llu\n",
                m->method, buckets[k], (unsigned long long)cum);
        }
        cum += m->bucket[N_BUCKETS];
        moat_strbuf_appendf(
            &b, "moat_cri_call_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %llu\n",
            m->method, (unsigned long long)cum);
        moat_strbuf_appendf(&b, "moat_cri_call_duration_seconds_sum{method=\"%s\"} %.6f\n",
                            m->method, m->sum);
        moat_strbuf_appendf(&b, "moat_cri_call_duration_seconds_count{method=\"%s\"} %llu\n",
                            m->method, (unsigned long long)cum);
    }
    moat_strbuf_appendf(&b, "# HELP moat_cri_decisions_total Pods given a runtime, by handler.\n"
                            "# TYPE moat_cri_decisions_total counter\n");
    const char *key;
    json_t *v;
    json_object_foreach (s->decisions, key, v) {
        char handler[128], runtime[64];
        if (sscanf(key, "%127s %63s", handler, runtime) == 2)
            moat_strbuf_appendf(&b,
                                "moat_cri_decisions_total{handler=\"%s\",runtime=\"%s\"} %lld\n",
                                handler, runtime, (long long)json_integer_value(v));
    }
    moat_strbuf_appendf(&b,
                        "# HELP moat_cri_refusals_total RunPodSandbox calls refused.\n"
                        "# TYPE moat_cri_refusals_total counter\nmoat_cri_refusals_total %llu\n",
                        (unsigned long long)s->refusals);
    moat_strbuf_appendf(&b,
                        "# HELP moat_cri_invalid_requests_total Intercepted requests that did not "
                        "decode.\n# TYPE moat_cri_invalid_requests_total counter\n"
                        "moat_cri_invalid_requests_total %llu\n",
                        (unsigned long long)s->invalid);
    if (s->wall)
        moat_strbuf_appendf(
            &b,
            "# HELP moat_cri_egress_wall_sandboxes Pod sandboxes the egress wall holds now.\n"
            "# TYPE moat_cri_egress_wall_sandboxes gauge\nmoat_cri_egress_wall_sandboxes %zu\n"
            "# HELP moat_cri_egress_wall_errors_total Egress wall changes nftables refused.\n"
            "# TYPE moat_cri_egress_wall_errors_total counter\n"
            "moat_cri_egress_wall_errors_total %llu\n"
            "# HELP moat_cri_egress_wall_refusals_total CreateContainer calls refused because "
            "their pod was not walled.\n"
            "# TYPE moat_cri_egress_wall_refusals_total counter\n"
            "moat_cri_egress_wall_refusals_total %llu\n"
            "# HELP moat_cri_egress_wall_reasserts_total Times the egress wall was put back as "
            "it should be (every " SHIM_WALL_REASSERT_TEXT ").\n"
            "# TYPE moat_cri_egress_wall_reasserts_total counter\n"
            "moat_cri_egress_wall_reasserts_total %llu\n"
            "# HELP moat_cri_egress_wall_restores_total Reasserts that found the kernel's table "
            "changed (flushed, deleted, elements or rules gone) and restored it.\n"
            "# TYPE moat_cri_egress_wall_restores_total counter\n"
            "moat_cri_egress_wall_restores_total %llu\n",
            iso_wall_count(s->wall), (unsigned long long)s->wall_errors,
            (unsigned long long)s->wall_refusals, (unsigned long long)s->wall_reasserts,
            (unsigned long long)s->wall_restores);
    pthread_mutex_unlock(&s->lock);
    return moat_strbuf_take(&b);
}

int shim_intercept_wall_reassert(shim_intercept *s, const char *const *extra, size_t n_extra,
                                 bool *ret_restored, moat_error *err)
{
    bool restored = false;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    if (s->wall) {
        r = iso_wall_reassert(s->wall, extra, n_extra, &restored, err);
        if (r < 0)
            s->wall_errors++;
        else {
            s->wall_reasserts++;
            s->wall_restores += restored;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (ret_restored)
        *ret_restored = restored;
    return r;
}

void shim_intercept_free(shim_intercept *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_methods; i++)
        free(s->methods[i].method);
    json_decref(s->decisions);
    json_decref(s->walled);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
