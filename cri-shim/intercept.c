#include "intercept.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libmoat/clock.h"
#include "libmoat/log.h"
#include "libmoat/names.h"
#include "libmoat/strbuf.h"
#include "libmoat/strv.h"
#include "libmoat/macro.h"
#include "messages.h"

#define M_RUN_POD_SANDBOX "/runtime.v1.RuntimeService/RunPodSandbox"
#define M_STATUS          "/runtime.v1.RuntimeService/Status"
#define M_SANDBOX_STATUS  "/runtime.v1.RuntimeService/PodSandboxStatus"
#define M_CREATE          "/runtime.v1.RuntimeService/CreateContainer"
#define M_REMOVE_SANDBOX  "/runtime.v1.RuntimeService/RemovePodSandbox"
#define M_EXEC            "/runtime.v1.RuntimeService/Exec"
#define M_ATTACH          "/runtime.v1.RuntimeService/Attach"
#define M_PORT_FORWARD    "/runtime.v1.RuntimeService/PortForward"
#define M_REMOVE_CONT     "/runtime.v1.RuntimeService/RemoveContainer"
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

/* A change of the egress wall, for the worker. */
typedef enum { JOB_WALL, JOB_REMOVE, JOB_RELEASE } job_kind;

typedef struct job {
    job_kind kind;
    char *id;
    iso_wall_mode mode;
    char **addrs; /* NULL-terminated */
    struct job *next;
} job;

/* The states of a pod in `pods` (its "state"). */
#define ST_NEW     "new"     /* a walled pod whose addresses have not shown yet */
#define ST_PENDING "pending" /* its wall is being raised */
#define ST_WALLED  "walled"
#define ST_FAILED  "failed" /* raising it failed ("error"); its next status tries again */
#define ST_OPEN    "open"   /* not walled: no Moat egress class */

/* How long a CreateContainer waits for its pod's wall before it is refused. */
#define WALL_WAIT_NS (10LL * 1000000000LL)

struct shim_intercept {
    const shim_handlers *handlers;
    const iso_probe_result *probe;
    pthread_mutex_t lock; /* guards probe, the stats, pods and the queue; never held
                           * across nftables or another call */
    method_stats methods[MAX_METHODS];
    size_t n_methods;
    json_t *decisions; /* handler -> runtime -> count */
    /* sandbox id -> {"mode": "internet"|"none", "state": ST_*, "error", "since"}: the wall
     * decision as the runtime recorded it (the sandbox's annotations at RunPodSandbox, read
     * back from PodSandboxStatus), so CreateContainer never goes by the mutable pod's
     * annotations alone, and how far its wall is */
    json_t *pods;
    uint64_t refusals, invalid;
    uint64_t wall_errors, wall_refusals, wall_reasserts, wall_restores;
    size_t wall_count;

    /* The wall and its worker: every nftables transaction runs on the worker (or the
     * reassert's thread), under wall_lock, never on the relay's thread. */
    iso_wall *wall; /* NULL: none */
    shim_pod_network net;
    pthread_mutex_t wall_lock;
    pthread_cond_t wake;
    pthread_t worker;
    bool worker_started, stopping;
    job *head, **tail;

    shim_activity *activity; /* NULL: sessions' activity is not recorded */
    uint64_t starts[3];      /* Exec, Attach, PortForward relayed (stream_kinds) */
    uint64_t activity_errors;
};

/* The streaming starts that are a session's activity, as the metrics name them. */
static const char *const stream_methods[] = {M_EXEC, M_ATTACH, M_PORT_FORWARD};
static const char *const stream_kinds[] = {"exec", "attach", "port-forward"};

static bool is_activity_method(const char *method)
{
    for (size_t i = 0; i < ELEMENTSOF(stream_methods); i++)
        if (strcmp(method, stream_methods[i]) == 0)
            return true;
    return strcmp(method, M_REMOVE_CONT) == 0 || strcmp(method, M_REMOVE_SANDBOX) == 0;
}

static bool wants(void *user, const char *method)
{
    shim_intercept *s = user;
    if (strcmp(method, M_RUN_POD_SANDBOX) == 0 || strcmp(method, M_STATUS) == 0)
        return true;
    if (s->activity && is_activity_method(method))
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

/* the worker */

static void job_free(job *j)
{
    if (!j)
        return;
    free(j->id);
    moat_strv_free(j->addrs);
    free(j);
}

/* Queues a job (caller holds s->lock); false when out of memory. */
static bool enqueue(shim_intercept *s, job_kind kind, const char *id, iso_wall_mode mode,
                    char *const *addrs, size_t n_addrs)
{
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return false;
    j->kind = kind;
    j->mode = mode;
    j->id = strdup(id);
    j->addrs = calloc(n_addrs + 1, sizeof(char *));
    bool ok = j->id && j->addrs;
    for (size_t i = 0; ok && i < n_addrs; i++)
        ok = (j->addrs[i] = strdup(addrs[i])) != NULL;
    if (!ok) {
        job_free(j);
        return false;
    }
    *s->tail = j;
    s->tail = &j->next;
    pthread_cond_signal(&s->wake);
    return true;
}

static void set_state(json_t *pod, const char *state, const char *error)
{
    json_object_set_new(pod, "state", json_string(state));
    if (error)
        json_object_set_new(pod, "error", json_string(error));
    else
        json_object_del(pod, "error");
}

/* Raises one pod's wall: its interfaces and DNS servers from the runtime and the kernel,
 * then one nftables transaction. */
static void do_wall(shim_intercept *s, const job *j)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    char **devices = NULL, **dns = NULL;
    int r = s->net.lookup(s->net.user, j->id, &devices, &dns, &err);
    size_t count = 0;
    if (r == 0) {
        iso_wall_pod pod = {.id = j->id,
                            .mode = j->mode,
                            .addrs = (const char *const *)j->addrs,
                            .n_addrs = moat_strv_len(j->addrs),
                            .dns = (const char *const *)dns,
                            .n_dns = moat_strv_len(dns),
                            .devices = (const char *const *)devices,
                            .n_devices = moat_strv_len(devices)};
        pthread_mutex_lock(&s->wall_lock);
        r = iso_wall_add(s->wall, &pod, &err);
        count = iso_wall_count(s->wall);
        pthread_mutex_unlock(&s->wall_lock);
    }
    pthread_mutex_lock(&s->lock);
    json_t *p = json_object_get(s->pods, j->id);
    if (p && strcmp(json_string_value(json_object_get(p, "state")), ST_PENDING) == 0)
        set_state(p, r == 0 ? ST_WALLED : ST_FAILED, r == 0 ? NULL : err.message);
    if (r < 0)
        s->wall_errors++;
    else
        s->wall_count = count;
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        log_error(NULL, "egress wall: sandbox %s: %s", j->id, err.message);
    else
        log_info(NULL, "egress wall up for sandbox %s (%s, %s%s on %s%s)", j->id,
                 j->mode == ISO_WALL_NONE ? "none" : "internet", j->addrs[0],
                 j->addrs[1] ? " and more" : "", devices[0], devices[1] ? " and more" : "");
    moat_strv_free(devices);
    moat_strv_free(dns);
}

static void do_change(shim_intercept *s, const job *j)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    pthread_mutex_lock(&s->wall_lock);
    bool had = j->kind == JOB_REMOVE && iso_wall_has(s->wall, j->id);
    int r = 0;
    if (j->kind == JOB_REMOVE)
        r = iso_wall_remove(s->wall, j->id, &err);
    for (size_t i = 0; j->kind == JOB_RELEASE && r == 0 && j->addrs[i]; i++)
        r = iso_wall_release(s->wall, j->addrs[i], j->id, &err);
    size_t count = iso_wall_count(s->wall);
    pthread_mutex_unlock(&s->wall_lock);
    pthread_mutex_lock(&s->lock);
    s->wall_count = count;
    s->wall_errors += r < 0;
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        log_error(NULL, "%s (its addresses are released when a pod reuses them)", err.message);
    else if (had)
        log_info(NULL, "pod sandbox %s: egress wall taken down", j->id);
}

static void *work(void *arg)
{
    shim_intercept *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->wake, &s->lock);
        if (s->stopping)
            break;
        job *j = s->head;
        s->head = j->next;
        if (!s->head)
            s->tail = &s->head;
        pthread_mutex_unlock(&s->lock);
        if (j->kind == JOB_WALL)
            do_wall(s, j);
        else
            do_change(s, j);
        job_free(j);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* the hooks */

/* CreateContainer of a walled pod: only once it is walled. Reads the state the worker
 * keeps; a wall still being raised puts the call off (SHIM_HOOK_LATER) for up to
 * WALL_WAIT_NS. */
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
    json_t *p = json_object_get(s->pods, f.sandbox_id);
    const char *state = json_string_value(json_object_get(p, "state"));
    /* the decision taken once, at RunPodSandbox, whatever the request says now */
    bool walled = (p && json_object_get(p, "mode")) || f.walled;
    if (!walled || (state && strcmp(state, ST_WALLED) == 0))
        r = 0;
    else if (state && strcmp(state, ST_PENDING) == 0 &&
             moat_mono_ns() - json_integer_value(json_object_get(p, "since")) < WALL_WAIT_NS)
        r = SHIM_HOOK_LATER;
    else if (state && strcmp(state, ST_PENDING) == 0)
        r = moat_error_set(&err, MOAT_E_NOTFOUND,
                           "egress wall: pod sandbox %s: its wall is not up after %lld s "
                           "(moat-cri's log says why)",
                           f.sandbox_id, WALL_WAIT_NS / 1000000000LL);
    else if (state && strcmp(state, ST_FAILED) == 0)
        r = moat_error_set(&err, MOAT_E_NOTFOUND, "egress wall: pod sandbox %s: %s", f.sandbox_id,
                           json_string_value(json_object_get(p, "error")));
    else
        r = moat_error_set(&err, MOAT_E_NOTFOUND,
                           "egress wall: pod sandbox %s is not walled yet (its "
                           "PodSandboxStatus with its address has not come through the "
                           "shim)",
                           f.sandbox_id);
    if (r < 0)
        s->wall_refusals++;
    pthread_mutex_unlock(&s->lock);
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
    json_object_del(s->pods, id);
    if (!enqueue(s, JOB_REMOVE, id, ISO_WALL_INTERNET, NULL, 0))
        s->wall_errors++;
    pthread_mutex_unlock(&s->lock);
}

/* A ready pod's addresses: its wall goes up (on the worker) if it is walled and not yet,
 * or failed before; a pod that is not walled releases an address a gone pod left walled,
 * once. Never changes the answer. */
static void wall_status(shim_intercept *s, const uint8_t *in, size_t len)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    shim_wall_facts f = {0};
    if (shim_sandbox_status_facts(in, len, &f, &err) < 0) {
        log_warn(NULL, "PodSandboxStatus: %s", err.message);
        return;
    }
    pthread_mutex_lock(&s->lock);
    json_t *p = f.sandbox_id ? json_object_get(s->pods, f.sandbox_id) : NULL;
    if (!p && f.sandbox_id) {
        p = json_object();
        if (f.walled)
            json_object_set_new(p, "mode",
                                json_string(f.internet ? MOAT_EGRESS_INTERNET : MOAT_EGRESS_NONE));
        set_state(p, f.walled ? ST_NEW : ST_OPEN, NULL);
        if (json_object_set_new(s->pods, f.sandbox_id, p) < 0) {
            p = NULL;
            log_warn(f.pod, "egress wall: out of memory recording the decision");
        }
        if (p && !f.walled && f.ready && f.n_addrs &&
            !enqueue(s, JOB_RELEASE, f.sandbox_id, ISO_WALL_INTERNET, f.addrs, f.n_addrs))
            s->wall_errors++;
    }
    const char *state = json_string_value(json_object_get(p, "state"));
    bool again = state && (strcmp(state, ST_NEW) == 0 || strcmp(state, ST_FAILED) == 0);
    if (again && f.ready && f.n_addrs) {
        const char *mode = json_string_value(json_object_get(p, "mode"));
        iso_wall_mode m =
            mode && strcmp(mode, MOAT_EGRESS_INTERNET) == 0 ? ISO_WALL_INTERNET : ISO_WALL_NONE;
        if (enqueue(s, JOB_WALL, f.sandbox_id, m, f.addrs, f.n_addrs)) {
            set_state(p, ST_PENDING, NULL);
            json_object_set_new(p, "since", json_integer(moat_mono_ns()));
        } else
            s->wall_errors++;
    }
    pthread_mutex_unlock(&s->lock);
    shim_wall_facts_clear(&f);
}

/* An Exec, Attach or PortForward start: its container's or pod's activity file now; a
 * removal: its file goes. Never refuses the call: a session's activity is worth a log line,
 * not a failed exec. */
static void record_activity(shim_intercept *s, const char *method, const uint8_t *in, size_t len)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    _cleanup_free_ char *id = NULL;
    size_t kind = ELEMENTSOF(stream_methods);
    for (size_t i = 0; i < ELEMENTSOF(stream_methods); i++)
        if (strcmp(method, stream_methods[i]) == 0)
            kind = i;
    int r = shim_request_target_id(method, in, len, &id, &err);
    if (r == 0)
        r = kind < ELEMENTSOF(stream_methods) ? shim_activity_touch(s->activity, id, &err)
                                              : shim_activity_forget(s->activity, id, &err);
    pthread_mutex_lock(&s->lock);
    if (kind < ELEMENTSOF(stream_methods))
        s->starts[kind]++;
    if (r < 0)
        s->activity_errors++;
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        log_warn(id, "session activity not recorded: %s", err.message);
}

static int on_request(void *user, const char *method, const uint8_t *in, size_t len,
                      uint8_t **ret_out, size_t *ret_len, int *ret_status, char **ret_message)
{
    shim_intercept *s = user;
    if (s->activity && is_activity_method(method))
        record_activity(s, method, in, len);
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
        json_t *by_runtime = json_object_get(s->decisions, d.handler);
        if (!by_runtime && json_object_set_new(s->decisions, d.handler, json_object()) == 0)
            by_runtime = json_object_get(s->decisions, d.handler);
        json_t *n = json_object_get(by_runtime, d.runtime);
        json_object_set_new(by_runtime, d.runtime, json_integer(json_integer_value(n) + 1));
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

static void record_walled(void *user, const char *id, iso_wall_mode mode)
{
    json_t *p = json_object();
    if (!p)
        return; /* out of memory: its CreateContainer is refused, kubelet retries */
    json_object_set_new(
        p, "mode", json_string(mode == ISO_WALL_NONE ? MOAT_EGRESS_NONE : MOAT_EGRESS_INTERNET));
    set_state(p, ST_WALLED, NULL);
    json_object_set_new(user, id, p);
}

int shim_intercept_new(shim_intercept **out, const shim_handlers *handlers,
                       const iso_probe_result *probe, iso_wall *wall, const shim_pod_network *net,
                       moat_error *err)
{
    shim_intercept *s = calloc(1, sizeof(*s));
    if (!s)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    s->handlers = handlers;
    s->probe = probe;
    s->wall = wall;
    if (net)
        s->net = *net;
    s->decisions = json_object();
    s->pods = json_object();
    if (!s->decisions || !s->pods) {
        json_decref(s->decisions);
        json_decref(s->pods);
        free(s);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->wall_lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    s->tail = &s->head;
    if (wall) {
        /* the pods a moat-cri before this one walled: the kernel kept them */
        iso_wall_foreach(wall, record_walled, s->pods);
        s->wall_count = iso_wall_count(wall);
        if (pthread_create(&s->worker, NULL, work, s) != 0) {
            shim_intercept_free(s);
            return moat_error_set(err, MOAT_E_NOMEM, "egress wall: no thread for its worker");
        }
        s->worker_started = true;
    }
    *out = s;
    return 0;
}

void shim_intercept_set_activity(shim_intercept *s, shim_activity *activity)
{
    pthread_mutex_lock(&s->lock);
    s->activity = activity;
    pthread_mutex_unlock(&s->lock);
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
    moat_strbuf_appendf(&b, "# HELP moat_cri_stream_starts_total Exec, Attach and PortForward "
                            "calls relayed: a session's activity (never ExecSync).\n"
                            "# TYPE moat_cri_stream_starts_total counter\n");
    for (size_t i = 0; i < ELEMENTSOF(stream_kinds); i++)
        moat_strbuf_appendf(&b, "moat_cri_stream_starts_total{kind=\"%s\"} %llu\n", stream_kinds[i],
                            (unsigned long long)s->starts[i]);
    moat_strbuf_appendf(&b,
                        "# HELP moat_cri_activity_errors_total Starts or removals whose activity "
                        "file could not be written.\n"
                        "# TYPE moat_cri_activity_errors_total counter\n"
                        "moat_cri_activity_errors_total %llu\n",
                        (unsigned long long)s->activity_errors);
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
    const char *handler, *runtime;
    json_t *by_runtime, *v;
    json_object_foreach (s->decisions, handler, by_runtime)
        json_object_foreach (by_runtime, runtime, v)
            moat_strbuf_appendf(&b,
                                "moat_cri_decisions_total{handler=\"%s\",runtime=\"%s\"} %lld\n",
                                handler, runtime, (long long)json_integer_value(v));
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
            s->wall_count, (unsigned long long)s->wall_errors, (unsigned long long)s->wall_refusals,
            (unsigned long long)s->wall_reasserts, (unsigned long long)s->wall_restores);
    pthread_mutex_unlock(&s->lock);
    return moat_strbuf_take(&b);
}

int shim_intercept_wall_reassert(shim_intercept *s, const char *const *extra, size_t n_extra,
                                 bool *ret_restored, moat_error *err)
{
    bool restored = false;
    int r = 0;
    if (s->wall) {
        pthread_mutex_lock(&s->wall_lock);
        r = iso_wall_reassert(s->wall, extra, n_extra, &restored, err);
        pthread_mutex_unlock(&s->wall_lock);
        pthread_mutex_lock(&s->lock);
        if (r < 0)
            s->wall_errors++;
        else {
            s->wall_reasserts++;
            s->wall_restores += restored;
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (ret_restored)
        *ret_restored = restored;
    return r;
}

void shim_intercept_free(shim_intercept *s)
{
    if (!s)
        return;
    if (s->worker_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->worker, NULL);
    }
    while (s->head) {
        job *j = s->head;
        s->head = j->next;
        job_free(j);
    }
    for (size_t i = 0; i < s->n_methods; i++)
        free(s->methods[i].method);
    json_decref(s->decisions);
    json_decref(s->pods);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->wall_lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
