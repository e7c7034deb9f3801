/* The reconcile of one Sandbox (controller_reconcile, operator/controller.c), driven
 * directly: a controller made as main.c makes it, its caches filled by replaying watch
 * events (kube_informer_apply_stream) with the loop never started, on a client whose
 * transport records every request and answers from a script written by each test.
 *
 * Each test asserts the exact requests (method, path, the body's key fields) and the
 * outcome: the phases of a Sandbox (Pod created, Running, Succeeded, Failed, Expired, the
 * TTL's delete), the answers a write can get (Conflict, NotFound, Gone, AlreadyExists on
 * the Pod's create), and the fences before a create (the namespace's NetworkPolicies,
 * leadership). Events go through the recorder's own thread: a test that checks them
 * stops the recorder first, which posts everything queued.
 *
 * The reconcile reads the wall clock (time(NULL): status times are RFC 3339), not a
 * moat_clock, so timers are driven by status times written relative to now or long past;
 * the work queue runs on a moat_fake_clock, so a key's backoff is checked without
 * sleeping. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "libmoat/clock.h"
#include "libmoat/kobj.h"
#include "libmoat/kubeconfig.h"
#include "libmoat/names.h"
#include "operator/controller-internal.h"
#include "operator/netpol.h"
#include "operator/pod.h"
#include "operator/status.h"

#define KEY        "0123456789abcdef0123456789abcdef"
#define UID        "uid-of-sb"
#define OTHER      "uid-of-an-earlier-sb"
#define NS         "team-a"
#define SB         "team-a/sb"
#define GENERATION 3
#define NETPOL_Q   NETPOL_KEY NS

#define PODS_PATH   "/api/v1/namespaces/team-a/pods"
#define POD_PATH    PODS_PATH "/sb"
#define SBX_PATH    "/apis/moat.dev/v1alpha1/namespaces/team-a/sandboxes/sb"
#define STATUS_PATH SBX_PATH "/status"
#define NETPOL_PATH                                                                                \
    "/apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies/%s?fieldManager=moat-operator"   \
    "&force=true"

#define LONG_AGO "2020-01-01T00:00:00Z"

#define MAX_REQUESTS 16
#define MAX_ANSWERS  16
#define MAX_EVENTS   16

static const char kubeconfig[] = "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                                 "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                                 "users: [{name: u, user: {token: t}}]\n"
                                 "contexts: [{name: c, context: {cluster: k, user: u}}]\n";

typedef struct {
    char *method, *path;
    json_t *body; /* parsed, or NULL */
} request;

typedef struct {
    long status;
    char *body; /* NULL: the request's own body comes back (as the API server answers a write) */
} answer;

typedef struct {
    pthread_mutex_t lock; /* the recorder posts from its own thread */
    request requests[MAX_REQUESTS];
    size_t n_requests, dropped;
    answer answers[MAX_ANSWERS];
    size_t n_answers, next_answer, unscripted;
    char *events[MAX_EVENTS]; /* "Type Reason: message", in the order posted */
    size_t n_events;

    char key_path[64];
    moat_fake_clock clock;
    kube_config *kcfg;
    kube_client *client;
    operator_config *cfg;
    sandbox_mark_key *key;
    operator_controller *c;
    json_t *created; /* the Pod the first create sent (start_pending) */
} fixture;

/* ---- the transport ---------------------------------------------------------------------- */

static int scripted_send(void *impl, const kube_http_request *req, kube_http_response *resp,
                         moat_error *err)
{
    fixture *f = impl;
    json_t *body = req->body ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;
    int rc = 0;
    pthread_mutex_lock(&f->lock);
    if (strstr(req->path, "/events")) {
        char *e = NULL;
        if (f->n_events < MAX_EVENTS &&
            (strcmp(req->method, "POST") == 0
                 ? asprintf(&e, "%s %s: %s", kobj_str(body, "type"), kobj_str(body, "reason"),
                            kobj_str(body, "message"))
                 : asprintf(&e, "%s (a repeat)", req->method)) >= 0)
            f->events[f->n_events++] = e;
        resp->status = 201;
        resp->body = strdup("{}");
    } else {
        if (f->n_requests < MAX_REQUESTS) {
            request *r = &f->requests[f->n_requests++];
            r->method = strdup(req->method);
            r->path = strdup(req->path);
            r->body = json_incref(body);
        } else {
            f->dropped++;
        }
        if (f->next_answer < f->n_answers) {
            answer *a = &f->answers[f->next_answer++];
            resp->status = a->status;
            resp->body = a->body     ? strdup(a->body)
                         : req->body ? strndup(req->body, req->body_len)
                                     : strdup("{}");
        } else {
            f->unscripted++;
            rc = moat_error_set(err, MOAT_E_NETWORK, "unscripted request %s %s", req->method,
                                req->path);
        }
    }
    if (resp->body)
        resp->body_len = strlen(resp->body);
    pthread_mutex_unlock(&f->lock);
    json_decref(body);
    return rc;
}

/* The next request is answered with status and body (NULL: the request's body). */
static void answer_with(fixture *f, long status, const char *body)
{
    assert_true(f->n_answers < MAX_ANSWERS);
    f->answers[f->n_answers++] = (answer){status, body ? strdup(body) : NULL};
}

/* ... with a Status body of that reason, as the API server refuses. */
static void answer_refusal(fixture *f, long code, const char *reason)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
             "\"message\":\"refused as %s by the test\",\"reason\":\"%s\",\"code\":%ld}",
             reason, reason, code);
    answer_with(f, code, body);
}

/* Forgets the requests and answers so far. */
static void reset(fixture *f)
{
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->n_requests; i++) {
        free(f->requests[i].method);
        free(f->requests[i].path);
        json_decref(f->requests[i].body);
    }
    for (size_t i = 0; i < f->n_answers; i++)
        free(f->answers[i].body);
    f->n_requests = f->n_answers = f->next_answer = f->unscripted = f->dropped = 0;
    pthread_mutex_unlock(&f->lock);
}

static void dump_requests(fixture *f)
{
    for (size_t i = 0; i < f->n_requests; i++)
        print_message("  request %zu: %s %s\n", i, f->requests[i].method, f->requests[i].path);
}

/* Exactly n requests were sent, and every one had a scripted answer. */
static void assert_requests(fixture *f, size_t n)
{
    if (f->n_requests != n || f->unscripted || f->dropped) {
        dump_requests(f);
        fail_msg("%zu requests (%zu unscripted), want %zu", f->n_requests + f->dropped,
                 f->unscripted, n);
    }
}

/* Request i was method path; its body (borrowed, may be NULL). */
static const json_t *assert_request(fixture *f, size_t i, const char *method, const char *path)
{
    if (i >= f->n_requests) {
        dump_requests(f);
        fail_msg("no request %zu", i);
    }
    request *r = &f->requests[i];
    if (strcmp(r->method, method) != 0 || strcmp(r->path, path) != 0) {
        dump_requests(f);
        fail_msg("request %zu is %s %s, want %s %s", i, r->method, r->path, method, path);
    }
    return r->body;
}

/* Stops the recorder (posting everything queued) and checks the events posted, in order
 * (NULL-terminated). The controller records nothing afterwards: call it last. */
static void assert_events(fixture *f, ...)
{
    kube_recorder_free(f->c->recorder, 10 * 1000000000LL);
    f->c->recorder = NULL;
    va_list ap;
    va_start(ap, f);
    size_t i = 0;
    for (const char *want = va_arg(ap, const char *); want; want = va_arg(ap, const char *), i++)
        if (i >= f->n_events || strcmp(f->events[i], want) != 0)
            fail_msg("event %zu is \"%s\", want \"%s\"", i, i < f->n_events ? f->events[i] : "none",
                     want);
    va_end(ap);
    if (i != f->n_events)
        fail_msg("%zu events, want %zu (the next: \"%s\")", f->n_events, i, f->events[i]);
}

/* ---- objects and the caches ----------------------------------------------------------- */

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (!v)
        fail_msg("bad test JSON (%s): %s", je.text, text);
    return v;
}

static void rfc3339(char buf[32], int64_t t)
{
    rfc3339_format(buf, 32, t);
}

/* Sandbox "sb" (uid UID, generation GENERATION) at resourceVersion rv, with spec (JSON)
 * and status (JSON, NULL: none). */
static json_t *sandbox(const char *rv, const char *spec, const char *status)
{
    json_t *s =
        json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:I, s:s}, s:o}", "apiVersion", MOAT_API_GV, "kind",
                  MOAT_SANDBOX_KIND, "metadata", "name", "sb", "namespace", NS, "uid", UID,
                  "generation", (json_int_t)GENERATION, "resourceVersion", rv, "spec", parse(spec));
    if (status)
        json_object_set_new(s, "status", parse(status));
    return s;
}

#define SPEC "{\"image\": \"python:3\"}"

/* Puts obj into inf's cache as a watch event of type would (handlers included). Takes obj. */
static void feed(kube_informer *inf, const char *type, json_t *obj)
{
    moat_error err = MOAT_ERROR_INIT;
    json_t *ev = json_pack("{s:s, s:o}", "type", type, "object", obj);
    char *line = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    assert_non_null(line);
    size_t len = strlen(line);
    char *nl = realloc(line, len + 2);
    assert_non_null(nl);
    memcpy(nl + len, "\n", 2);
    if (kube_informer_apply_stream(inf, nl, len + 1, &err) < 0)
        fail_msg("%s", err.message);
    free(nl);
}

/* The keys ready in the work queue now, comma-separated in the order handed out, into buf
 * (each handed back as a worker would). */
static const char *drain(fixture *f, char *buf, size_t len)
{
    char *key;
    size_t at = 0;
    buf[0] = '\0';
    while (workqueue_try_get(f->c->queue, &key) == 0) {
        at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? "," : "", key);
        assert_true(at < len);
        workqueue_done(f->c->queue, key);
        free(key);
    }
    return buf;
}

#define assert_queue(f, want)                                                                      \
    do {                                                                                           \
        char q_[512];                                                                              \
        assert_string_equal(drain(f, q_, sizeof(q_)), want);                                       \
    } while (0)

/* The Pod the operator builds for sandbox: what a create sends. */
static json_t *built_pod(fixture *f, const json_t *sbx)
{
    moat_error err = MOAT_ERROR_INIT;
    json_t *pod = NULL;
    if (sandbox_pod_build(&pod, sbx, f->cfg, &err) < 0 ||
        sandbox_mark_set(pod, f->key, kobj_uid(sbx), &err) < 0)
        fail_msg("%s", err.message);
    return pod;
}

/* A copy of pod as the API server would show it: resourceVersion rv, on node (NULL: not
 * scheduled), with status (JSON, NULL: none). */
static json_t *pod_at(const json_t *pod, const char *rv, const char *node, const char *status)
{
    json_t *p = json_deep_copy(pod);
    json_object_set_new(json_object_get(p, "metadata"), "resourceVersion", json_string(rv));
    if (node)
        json_object_set_new(json_object_get(p, "spec"), "nodeName", json_string(node));
    if (status)
        json_object_set_new(p, "status", parse(status));
    return p;
}

/* The namespace's NetworkPolicies as netpol_sync applies them (two server-side applies,
 * answered with what they sent), then in the cache as the watch shows them. A Sandbox of
 * the namespace must be cached first. Leaves no request and no queued key behind. */
static void policies_in_place(fixture *f)
{
    moat_error err = MOAT_ERROR_INIT;
    char path[2][256];
    answer_with(f, 200, NULL);
    answer_with(f, 200, NULL);
    if (netpol_sync(f->c, NS, &err) != DONE)
        fail_msg("netpol_sync: %s", err.message);
    assert_requests(f, 2);
    snprintf(path[0], sizeof(path[0]), NETPOL_PATH, SANDBOX_NETPOL_EGRESS_NONE);
    snprintf(path[1], sizeof(path[1]), NETPOL_PATH, SANDBOX_NETPOL_EGRESS_INTERNET);
    for (size_t i = 0; i < 2; i++) {
        json_t *p = json_deep_copy(assert_request(f, i, "PATCH", path[i]));
        json_object_set_new(json_object_get(p, "metadata"), "resourceVersion",
                            json_string(i ? "51" : "50"));
        feed(f->c->netpols, "ADDED", p);
    }
    reset(f);
    char q[512];
    drain(f, q, sizeof(q));
}

/* The status a write sent (its body's status), after checking that it went to
 * /status with the Sandbox as the cache holds it: its name and the resourceVersion read,
 * so that a Sandbox changed since is a Conflict, not overwritten. */
static const json_t *status_written(fixture *f, size_t i, const char *rv)
{
    const json_t *body = assert_request(f, i, "PUT", STATUS_PATH);
    assert_non_null(body);
    assert_string_equal(kobj_str(body, "kind"), MOAT_SANDBOX_KIND);
    assert_string_equal(kobj_name(body), "sb");
    assert_string_equal(kobj_namespace(body), NS);
    assert_string_equal(kobj_uid(body), UID);
    const char *got_rv = kobj_resource_version(body);
    if (!got_rv || strcmp(got_rv, rv) != 0)
        fail_msg("status written at resourceVersion %s, want %s", got_rv ? got_rv : "(none)", rv);
    assert_string_equal(kobj_str(body, "spec.image"), "python:3");
    int64_t og = -1;
    assert_true(kobj_int(body, "status.observedGeneration", &og));
    assert_int_equal(og, GENERATION);
    return kobj_get(body, "status");
}

static void assert_str(const json_t *obj, const char *path, const char *want)
{
    const char *got = kobj_str(obj, path);
    if (!want && got)
        fail_msg("%s is \"%s\", want none", path, got);
    if (want && (!got || strcmp(got, want) != 0))
        fail_msg("%s is \"%s\", want \"%s\"", path, got ? got : "(none)", want);
}

/* A condition of status: its status, reason and (unless NULL) message, at the generation
 * read, with a time. */
static void assert_condition(const json_t *status, const char *type, const char *want,
                             const char *reason, const char *message)
{
    const json_t *c = kobj_condition(status, "conditions", type);
    if (!c)
        fail_msg("no condition %s", type);
    assert_str(c, "status", want);
    assert_str(c, "reason", reason);
    if (message)
        assert_str(c, "message", message);
    int64_t og = -1;
    assert_true(kobj_int(c, "observedGeneration", &og));
    assert_int_equal(og, GENERATION);
    assert_true(rfc3339_parse(kobj_str(c, "lastTransitionTime")) > 0);
}

static outcome run(fixture *f, int64_t *ret_after_s, moat_error *err)
{
    *ret_after_s = -12345; /* a sentinel: always written */
    outcome o = controller_reconcile(f->c, SB, ret_after_s, err);
    assert_true(*ret_after_s != -12345);
    if (o != FAILED)
        assert_null(err->message);
    return o;
}

/* Runs the reconcile and checks its outcome and requeue delay. */
static void reconcile_expect(fixture *f, outcome want, int64_t want_after_s)
{
    moat_error err = MOAT_ERROR_INIT;
    int64_t after;
    outcome o = run(f, &after, &err);
    if (o != want)
        fail_msg("outcome %d, want %d (%s)", o, want, err.message ? err.message : "no error");
    assert_int_equal(after, want_after_s);
    moat_error_clear(&err);
}

/* ---- fixture ------------------------------------------------------------------------ */

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    moat_error err = MOAT_ERROR_INIT;
    assert_non_null(f);
    pthread_mutex_init(&f->lock, NULL);
    moat_fake_clock_init(&f->clock, 1000000000LL);
    strcpy(f->key_path, "/tmp/moat-reconcile-key-XXXXXX");
    int fd = mkstemp(f->key_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, KEY, strlen(KEY)), (ssize_t)strlen(KEY));
    close(fd);
    if (kube_config_parse(&f->kcfg, kubeconfig, strlen(kubeconfig), "test", NULL, NULL, &err) < 0)
        fail_msg("%s", err.message);
    kube_transport t = {scripted_send, f};
    kube_client_options o = {.transport = &t, .max_retries = -1};
    if (kube_client_new(&f->client, f->kcfg, &o, &err) < 0 ||
        operator_config_new_default(&f->cfg, &err) < 0 ||
        sandbox_mark_key_new(&f->key, KEY, strlen(KEY), &err) < 0)
        fail_msg("%s", err.message);
    free(f->cfg->mark_key_file);
    f->cfg->mark_key_file = strdup(f->key_path);
    controller_options co = {.client = f->client, .config = f->cfg, .identity = "test"};
    if (controller_new(&f->c, &co, &err) < 0)
        fail_msg("controller_new: %s", err.message);
    /* the same queue, on the fake clock: nothing has used it yet */
    workqueue_free(f->c->queue);
    workqueue_options qo = {.clock = moat_fake_clock_get(&f->clock)};
    if (workqueue_new(&f->c->queue, &qo, &err) < 0)
        fail_msg("%s", err.message);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    controller_free(f->c);
    reset(f);
    for (size_t i = 0; i < f->n_events; i++)
        free(f->events[i]);
    json_decref(f->created);
    sandbox_mark_key_free(f->key);
    operator_config_free(f->cfg);
    kube_client_free(f->client);
    kube_config_free(f->kcfg);
    unlink(f->key_path);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return 0;
}

/* A new Sandbox (resourceVersion 10) whose namespace has its policies. */
static void new_sandbox(fixture *f, const char *spec)
{
    feed(f->c->sandboxes, "ADDED", sandbox("10", spec, NULL));
    policies_in_place(f);
}

/* The Pending status a new Sandbox gets when its Pod is created. */
static void assert_pending_status(const json_t *st)
{
    assert_str(st, "phase", "Pending");
    assert_str(st, "podName", "sb");
    assert_str(st, "message", NULL);
    assert_str(st, "nodeName", NULL);
    assert_str(st, "startTime", NULL);
    assert_condition(st, "Scheduled", "False", "Pending", "waiting for the scheduler");
    assert_condition(st, "Ready", "False", "Pending", "");
    assert_condition(st, "Isolated", "Unknown", "AwaitingNodeReport", NULL);
    assert_condition(st, "Finished", "False", "Pending", "");
    assert_str(st, "isolation.runtime", "");
    assert_false(kobj_bool(st, "isolation.verified", true));
}

/* A Sandbox past its first reconcile: its Pod created (f->created), the Pending status
 * written; both back in the caches as the watches bring them (Sandbox at resourceVersion
 * 11, Pod at 100, not yet scheduled). No request or key left. */
static void start_pending(fixture *f)
{
    new_sandbox(f, SPEC);
    answer_with(f, 201, NULL);
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 2);
    f->created = json_deep_copy(assert_request(f, 0, "POST", PODS_PATH));
    json_t *sbx = json_deep_copy(assert_request(f, 1, "PUT", STATUS_PATH));
    json_object_set_new(json_object_get(sbx, "metadata"), "resourceVersion", json_string("11"));
    feed(f->c->sandboxes, "MODIFIED", sbx);
    feed(f->c->pods, "ADDED", pod_at(f->created, "100", NULL, "{\"phase\": \"Pending\"}"));
    reset(f);
    assert_queue(f, SB);
}

/* The Sandbox as its last status write left it, back from the watch at resourceVersion rv. */
static void status_comes_back(fixture *f, size_t i, const char *rv)
{
    json_t *sbx = json_deep_copy(assert_request(f, i, "PUT", STATUS_PATH));
    json_object_set_new(json_object_get(sbx, "metadata"), "resourceVersion", json_string(rv));
    feed(f->c->sandboxes, "MODIFIED", sbx);
}

/* ---- a Sandbox's phases ---------------------------------------------------------------- */

/* A new Sandbox: its one Pod is created as built and marked (owned by the Sandbox, with
 * Moat's label, the mark verifying for its uid), then its status says Pending with the
 * Pod's name, written through /status at the resourceVersion read. */
static void test_new_sandbox_creates_pod(void **state)
{
    fixture *f = *state;
    new_sandbox(f, SPEC);
    assert_int_equal(f->c->pods_created, 0);
    answer_with(f, 201, NULL);
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 2);

    const json_t *pod = assert_request(f, 0, "POST", PODS_PATH);
    json_t *sbx = sandbox("10", SPEC, NULL), *want = built_pod(f, sbx);
    if (!json_equal(want, (json_t *)pod)) {
        char *got = json_dumps(pod, JSON_INDENT(1) | JSON_SORT_KEYS);
        fail_msg("the Pod created is not the one built:\n%s", got);
    }
    json_decref(want);
    assert_str(pod, "metadata.name", "sb");
    assert_str(pod, "metadata.namespace", NS);
    assert_string_equal(kobj_label(pod, MOAT_LABEL_SANDBOX), "sb");
    const json_t *ref = json_array_get(kobj_get(pod, "metadata.ownerReferences"), 0);
    assert_int_equal(json_array_size(kobj_get(pod, "metadata.ownerReferences")), 1);
    assert_str(ref, "kind", MOAT_SANDBOX_KIND);
    assert_str(ref, "apiVersion", MOAT_API_GV);
    assert_str(ref, "name", "sb");
    assert_str(ref, "uid", UID);
    assert_true(kobj_bool(ref, "controller", false));
    assert_true(sandbox_mark_verify(f->key, pod, UID));
    assert_false(sandbox_mark_verify(f->key, pod, OTHER));
    assert_str(pod, "spec.runtimeClassName", f->cfg->runtime_class_auto);
    assert_str(json_array_get(kobj_get(pod, "spec.containers"), 0), "image", "python:3");
    assert_false(kobj_bool(pod, "spec.automountServiceAccountToken", true));
    int64_t deadline = 0;
    assert_true(kobj_int(pod, "spec.activeDeadlineSeconds", &deadline));
    assert_int_equal(deadline, f->cfg->default_timeout_ns / 1000000000LL);

    assert_pending_status(status_written(f, 1, "10"));
    assert_int_equal(f->c->pods_created, 1);
    assert_int_equal(f->c->status_writes, 1);
    json_decref(sbx);
    assert_events(f, "Normal PodCreated: created pod sb", NULL);
}

/* Level-based and idempotent: the Pod in the cache, not scheduled yet, and the status as
 * written: nothing to send. */
static void test_pending_pod_no_write(void **state)
{
    fixture *f = *state;
    start_pending(f);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 0);
    assert_int_equal(f->c->pods_created, 1);
    assert_int_equal(f->c->status_writes, 1);
}

#define RUNNING_POD                                                                                \
    "{\"phase\": \"Running\", \"startTime\": \"%s\", \"conditions\": ["                            \
    "{\"type\": \"PodScheduled\", \"status\": \"True\"}, {\"type\": \"Ready\", \"status\": "       \
    "\"True\"}], \"containerStatuses\": [{\"name\": \"sandbox\", \"state\": {\"running\": "        \
    "{\"startedAt\": \"%s\"}}}]}"

/* The Pod scheduled and Running: the Sandbox is Running on its node, since the Pod's start,
 * Ready, not Finished; the next look is due when its timeout would be over. */
static void test_pod_running(void **state)
{
    fixture *f = *state;
    start_pending(f);
    char started[32], status[1024];
    int64_t t0 = time(NULL) - 10;
    rfc3339(started, t0);
    snprintf(status, sizeof(status), RUNNING_POD, started, started);
    feed(f->c->pods, "MODIFIED", pod_at(f->created, "101", "node-1", status));
    assert_queue(f, SB); /* a change of its Pod wakes the Sandbox */

    answer_with(f, 200, NULL);
    moat_error err = MOAT_ERROR_INIT;
    int64_t before = time(NULL), after_s;
    assert_int_equal(run(f, &after_s, &err), DONE);
    int64_t after = time(NULL), timeout_s = f->cfg->default_timeout_ns / 1000000000LL;
    /* left + 1: looked at again just after the timeout */
    assert_in_range(after_s, t0 + timeout_s - after + 1, t0 + timeout_s - before + 1);
    assert_requests(f, 1);
    const json_t *st = status_written(f, 0, "11");
    assert_str(st, "phase", "Running");
    assert_str(st, "podName", "sb");
    assert_str(st, "nodeName", "node-1");
    assert_str(st, "startTime", started);
    assert_str(st, "message", NULL);
    assert_str(st, "completionTime", NULL);
    assert_condition(st, "Scheduled", "True", "Scheduled", "on node node-1");
    assert_condition(st, "Ready", "True", "Running", "");
    assert_condition(st, "Finished", "False", "Running", "");
    assert_condition(st, "Isolated", "Unknown", "AwaitingNodeReport", NULL);
    assert_events(f, "Normal PodCreated: created pod sb",
                  "Normal Scheduled: Pod scheduled to node-1",
                  "Normal Started: the sandbox is running", NULL);
}

/* The same Running Sandbox seen again after its write: nothing to send. */
static void test_running_again_no_write(void **state)
{
    fixture *f = *state;
    start_pending(f);
    char started[32], status[1024];
    rfc3339(started, time(NULL) - 10);
    snprintf(status, sizeof(status), RUNNING_POD, started, started);
    feed(f->c->pods, "MODIFIED", pod_at(f->created, "101", "node-1", status));
    answer_with(f, 200, NULL);
    moat_error err = MOAT_ERROR_INIT;
    int64_t after_s;
    assert_int_equal(run(f, &after_s, &err), DONE);
    assert_requests(f, 1);
    status_comes_back(f, 0, "12");
    reset(f);
    assert_int_equal(run(f, &after_s, &err), DONE);
    assert_true(after_s > 0);
    assert_requests(f, 0);
}

#define FINISHED_POD                                                                               \
    "{\"phase\": \"%s\", \"startTime\": \"%s\", \"conditions\": [{\"type\": \"PodScheduled\", "    \
    "\"status\": \"True\"}], \"containerStatuses\": [{\"name\": \"sandbox\", \"state\": "          \
    "{\"terminated\": {\"exitCode\": %d, \"reason\": \"%s\", %s \"finishedAt\": \"%s\"}}}]}"

/* Runs a started Sandbox to the Pod status given (pod phase, exit code, container reason,
 * extra fields of terminated): the one status write's status. */
static const json_t *finish_pod(fixture *f, const char *phase, int code, const char *reason,
                                const char *extra, const char *finished)
{
    char started[32], status[1024];
    rfc3339(started, time(NULL) - 20);
    snprintf(status, sizeof(status), FINISHED_POD, phase, started, code, reason, extra, finished);
    feed(f->c->pods, "MODIFIED", pod_at(f->created, "102", "node-1", status));
    answer_with(f, 200, NULL);
    /* final: the next look is when ttlAfterFinished is over */
    reconcile_expect(f, DONE, f->cfg->default_ttl_ns / 1000000000LL);
    assert_requests(f, 1);
    const json_t *st = status_written(f, 0, "11");
    assert_str(st, "startTime", started);
    assert_str(st, "nodeName", "node-1");
    return st;
}

/* The Pod Succeeded: so does the Sandbox, with the exit code and the container's finish
 * time, Finished True. */
static void test_pod_succeeded(void **state)
{
    fixture *f = *state;
    start_pending(f);
    char finished[32];
    rfc3339(finished, time(NULL) - 5);
    const json_t *st = finish_pod(f, "Succeeded", 0, "Completed", "", finished);
    assert_str(st, "phase", "Succeeded");
    int64_t code = -1;
    assert_true(kobj_int(st, "exitCode", &code));
    assert_int_equal(code, 0);
    assert_str(st, "completionTime", finished);
    assert_str(st, "message", "Completed");
    assert_condition(st, "Finished", "True", "Succeeded", "Completed");
    assert_condition(st, "Ready", "False", "Succeeded", NULL);
    assert_events(f, "Normal PodCreated: created pod sb",
                  "Normal Scheduled: Pod scheduled to node-1",
                  "Normal Succeeded: exited with code 0", NULL);
}

/* The Pod Failed: the Sandbox Failed, the container's exit code and termination message
 * kept, Finished True. */
static void test_pod_failed(void **state)
{
    fixture *f = *state;
    start_pending(f);
    char finished[32];
    rfc3339(finished, time(NULL) - 5);
    const json_t *st = finish_pod(f, "Failed", 3, "Error", "\"message\": \"boom\",", finished);
    assert_str(st, "phase", "Failed");
    int64_t code = -1;
    assert_true(kobj_int(st, "exitCode", &code));
    assert_int_equal(code, 3);
    assert_str(st, "completionTime", finished);
    assert_str(st, "message", "boom");
    assert_condition(st, "Finished", "True", "Failed", "boom");
    assert_condition(st, "Ready", "False", "Failed", "boom");
    assert_events(f, "Normal PodCreated: created pod sb",
                  "Normal Scheduled: Pod scheduled to node-1", "Warning Failed: boom", NULL);
}

/* The kubelet ended the Pod at activeDeadlineSeconds (Failed, DeadlineExceeded): the
 * Sandbox is Expired, not Failed. */
static void test_pod_deadline_exceeded(void **state)
{
    fixture *f = *state;
    start_pending(f);
    char started[32];
    rfc3339(started, time(NULL) - 400);
    json_t *pod = pod_at(f->created, "102", "node-1", "{\"phase\": \"Failed\"}");
    json_t *ps = json_object_get(pod, "status");
    json_object_set_new(ps, "reason", json_string("DeadlineExceeded"));
    json_object_set_new(ps, "startTime", json_string(started));
    feed(f->c->pods, "MODIFIED", pod);
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, f->cfg->default_ttl_ns / 1000000000LL);
    assert_requests(f, 1);
    const json_t *st = status_written(f, 0, "11");
    assert_str(st, "phase", "Expired");
    assert_str(st, "message", "exceeded its timeout of 300s");
    assert_true(rfc3339_parse(kobj_str(st, "completionTime")) > 0);
    assert_condition(st, "Finished", "True", "Expired", "exceeded its timeout of 300s");
}

/* Past its timeout by the status times while the Pod still runs (its node gone quiet):
 * the Sandbox is Expired, Finished True. The operator deletes no Pod (the kubelet's
 * activeDeadlineSeconds ends it; the Sandbox's delete at its TTL takes it along): the one
 * request is the status write. */
static void test_timeout_expires(void **state)
{
    fixture *f = *state;
    start_pending(f);
    char status[1024];
    snprintf(status, sizeof(status), RUNNING_POD, LONG_AGO, LONG_AGO);
    feed(f->c->pods, "MODIFIED", pod_at(f->created, "101", "node-1", status));
    answer_with(f, 200, NULL);
    int64_t before = time(NULL);
    reconcile_expect(f, DONE, f->cfg->default_ttl_ns / 1000000000LL);
    assert_requests(f, 1);
    const json_t *st = status_written(f, 0, "11");
    assert_str(st, "phase", "Expired");
    assert_str(st, "startTime", LONG_AGO);
    assert_str(st, "message", "exceeded its timeout of 300s");
    assert_true(rfc3339_parse(kobj_str(st, "completionTime")) >= before);
    assert_condition(st, "Finished", "True", "Expired", "exceeded its timeout of 300s");
    assert_condition(st, "Ready", "False", "Expired", NULL);
    assert_events(f, "Normal PodCreated: created pod sb",
                  "Normal Scheduled: Pod scheduled to node-1",
                  "Warning Expired: exceeded its timeout of 300s", NULL);
}

/* A spec.timeout of its own: the Pod's deadline and the Sandbox's timer both use it. */
static void test_own_timeout(void **state)
{
    fixture *f = *state;
    new_sandbox(f, "{\"image\": \"python:3\", \"timeout\": \"90s\"}");
    answer_with(f, 201, NULL);
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 2);
    int64_t deadline = 0;
    assert_true(
        kobj_int(assert_request(f, 0, "POST", PODS_PATH), "spec.activeDeadlineSeconds", &deadline));
    assert_int_equal(deadline, 90);
    json_t *pod = json_deep_copy(assert_request(f, 0, "POST", PODS_PATH));
    status_comes_back(f, 1, "11");
    char started[32], status[1024];
    rfc3339(started, time(NULL) - 100);
    snprintf(status, sizeof(status), RUNNING_POD, started, started);
    feed(f->c->pods, "ADDED", pod_at(pod, "100", "node-1", status));
    json_decref(pod);
    reset(f);
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, f->cfg->default_ttl_ns / 1000000000LL);
    assert_requests(f, 1);
    const json_t *st = status_written(f, 0, "11");
    assert_str(st, "phase", "Expired");
    assert_str(st, "message", "exceeded its timeout of 90s");
}

/* A final Sandbox whose ttlAfterFinished is over: deleted, only if it is still the same
 * Sandbox (uid precondition), its Pod with it (Background); no status write. */
static void test_ttl_deletes_sandbox(void **state)
{
    fixture *f = *state;
    feed(f->c->sandboxes, "ADDED",
         sandbox("20", SPEC,
                 "{\"phase\": \"Succeeded\", \"observedGeneration\": 3, \"completionTime\": "
                 "\"" LONG_AGO "\"}"));
    answer_with(f, 200, "{\"kind\": \"Status\", \"status\": \"Success\"}");
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 1);
    const json_t *d = assert_request(f, 0, "DELETE", SBX_PATH);
    assert_str(d, "kind", "DeleteOptions");
    assert_str(d, "preconditions.uid", UID);
    assert_str(d, "propagationPolicy", "Background");
    assert_int_equal(f->c->deletes, 1);
    assert_int_equal(f->c->status_writes, 0);
}

/* ... gone already (NotFound) or another Sandbox of its name by now (the precondition's
 * Conflict): done, no error. Any other answer is a failure to retry. */
static void test_ttl_delete_answers(void **state)
{
    fixture *f = *state;
    feed(f->c->sandboxes, "ADDED",
         sandbox("20", SPEC,
                 "{\"phase\": \"Failed\", \"observedGeneration\": 3, \"completionTime\": "
                 "\"" LONG_AGO "\"}"));
    answer_refusal(f, 404, "NotFound");
    answer_refusal(f, 409, "Conflict");
    answer_refusal(f, 500, "InternalError");
    reconcile_expect(f, DONE, 0);
    reconcile_expect(f, DONE, 0);
    moat_error err = MOAT_ERROR_INIT;
    int64_t after;
    assert_int_equal(run(f, &after, &err), FAILED);
    assert_true(kube_error_is(&err, KUBE_REASON_INTERNAL_ERROR));
    assert_non_null(strstr(err.message, "delete sandboxes team-a/sb"));
    moat_error_clear(&err);
    assert_requests(f, 3);
    for (size_t i = 0; i < 3; i++)
        assert_request(f, i, "DELETE", SBX_PATH);
    assert_int_equal(f->c->deletes, 0);
}

/* A final Sandbox before its TTL: nothing to send, the next look when the TTL is over. */
static void test_ttl_not_over(void **state)
{
    fixture *f = *state;
    char done[32], status[256];
    int64_t t = time(NULL) - 100;
    rfc3339(done, t);
    snprintf(status, sizeof(status),
             "{\"phase\": \"Succeeded\", \"observedGeneration\": 3, \"completionTime\": \"%s\"}",
             done);
    feed(f->c->sandboxes, "ADDED", sandbox("20", SPEC, status));
    moat_error err = MOAT_ERROR_INIT;
    int64_t before = time(NULL), after_s;
    assert_int_equal(run(f, &after_s, &err), DONE);
    int64_t after = time(NULL), ttl = f->cfg->default_ttl_ns / 1000000000LL;
    assert_in_range(after_s, t + ttl - after, t + ttl - before);
    assert_requests(f, 0);
}

/* The Sandbox deleted (gone from the cache): nothing created, nothing written. */
static void test_deleted_sandbox(void **state)
{
    fixture *f = *state;
    new_sandbox(f, SPEC);
    feed(f->c->sandboxes, "DELETED", sandbox("12", SPEC, NULL));
    assert_queue(f, SB);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 0);
}

/* ... or being deleted (a deletionTimestamp, finalizers pending): the same. */
static void test_sandbox_being_deleted(void **state)
{
    fixture *f = *state;
    feed(f->c->sandboxes, "ADDED", sandbox("10", SPEC, NULL));
    policies_in_place(f);
    json_t *s = sandbox("11", SPEC, NULL);
    json_object_set_new(json_object_get(s, "metadata"), "deletionTimestamp", json_string(LONG_AGO));
    feed(f->c->sandboxes, "MODIFIED", s);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 0);
}

/* The Pod deleted while the Sandbox ran: the Sandbox Failed (PodDeleted), no new Pod. */
static void test_pod_deleted_while_running(void **state)
{
    fixture *f = *state;
    start_pending(f);
    char started[32], status[1024];
    rfc3339(started, time(NULL) - 10);
    snprintf(status, sizeof(status), RUNNING_POD, started, started);
    feed(f->c->pods, "MODIFIED", pod_at(f->created, "101", "node-1", status));
    answer_with(f, 200, NULL);
    moat_error err = MOAT_ERROR_INIT;
    int64_t after_s;
    assert_int_equal(run(f, &after_s, &err), DONE);
    status_comes_back(f, 0, "12");
    feed(f->c->pods, "DELETED", pod_at(f->created, "103", "node-1", status));
    assert_queue(f, SB); /* the Sandbox's key, once */
    reset(f);
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, f->cfg->default_ttl_ns / 1000000000LL);
    assert_requests(f, 1);
    const json_t *st = status_written(f, 0, "12");
    assert_str(st, "phase", "Failed");
    assert_str(st, "message", "the sandbox's pod was deleted while it ran");
    assert_condition(st, "Finished", "True", "PodDeleted", NULL);
}

/* A spec the CRD should have refused: no Pod, the Sandbox Failed with the field's path. */
static void test_invalid_spec(void **state)
{
    fixture *f = *state;
    feed(f->c->sandboxes, "ADDED",
         sandbox("10", "{\"image\": \"python:3\", \"isolation\": \"Firecracker\"}", NULL));
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, f->cfg->default_ttl_ns / 1000000000LL);
    assert_requests(f, 1);
    const json_t *st = status_written(f, 0, "10");
    assert_str(st, "phase", "Failed");
    assert_non_null(strstr(kobj_str(st, "message"), "invalid spec: spec.isolation"));
    assert_condition(st, "Finished", "True", "InvalidSpec", NULL);
    assert_int_equal(f->c->pods_created, 0);
}

/* isolation: VM with no node that has a hypervisor: no Pod, Pending (NoHypervisor), a
 * Warning. A Node that can run it wakes the Sandbox, whose Pod is then created on the VM
 * RuntimeClass. */
static void test_vm_waits_for_hypervisor(void **state)
{
    fixture *f = *state;
    new_sandbox(f, "{\"image\": \"python:3\", \"isolation\": \"VM\"}");
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 1);
    const json_t *st = status_written(f, 0, "10");
    assert_str(st, "phase", "Pending");
    assert_str(st, "podName", NULL);
    assert_condition(st, "Scheduled", "False", "NoHypervisor", NULL);
    status_comes_back(f, 0, "11");
    reset(f);
    assert_queue(f, SB);

    json_t *node = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}}}", "apiVersion", "v1", "kind",
                             "Node", "metadata", "name", "node-1", "resourceVersion", "7", "labels",
                             f->cfg->managed_node_label, "true", f->cfg->hypervisor_node_label,
                             MOAT_HYPERVISOR_KVM);
    feed(f->c->nodes, "ADDED", node);
    assert_queue(f, SB);
    answer_with(f, 201, NULL);
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 2);
    assert_str(assert_request(f, 0, "POST", PODS_PATH), "spec.runtimeClassName",
               f->cfg->runtime_class_vm);
    assert_pending_status(status_written(f, 1, "11"));
    assert_events(f,
                  "Warning NoHypervisor: no Moat-managed node has a usable hypervisor; isolation "
                  "VM never falls back to a weaker runtime",
                  "Normal PodCreated: created pod sb", NULL);
}

/* ---- the fences before a create --------------------------------------------------------- */

/* No Pod before the namespace's NetworkPolicies are in the cache: no request, the
 * namespace's key queued. A namespace key in backoff is left to it (queued again only
 * when its delay is over, on the queue's clock). */
static void test_waits_for_policies(void **state)
{
    fixture *f = *state;
    feed(f->c->sandboxes, "ADDED", sandbox("10", SPEC, NULL));
    assert_queue(f, SB);
    reconcile_expect(f, WAIT_POLICIES, 0);
    assert_requests(f, 0);
    assert_queue(f, NETPOL_Q);

    moat_error err = MOAT_ERROR_INIT;
    assert_int_equal(workqueue_add_rate_limited(f->c->queue, NETPOL_Q, &err), 0);
    reconcile_expect(f, WAIT_POLICIES, 0);
    assert_queue(f, "");
    moat_fake_clock_advance(&f->clock, 5 * 1000000LL); /* the first backoff: 5 ms */
    assert_queue(f, NETPOL_Q);
    assert_requests(f, 0);
}

/* A policy just applied is not applied again while the watch has yet to bring it (a second
 * pass sends nothing, and looks again once the pending moment is over, on the queue's
 * clock); a deletion the watch reports is put back at once. */
static void test_policies_not_applied_twice_while_the_watch_lags(void **state)
{
    fixture *f = *state;
    feed(f->c->sandboxes, "ADDED", sandbox("10", SPEC, NULL));
    char q[512];
    drain(f, q, sizeof(q));
    moat_error err = MOAT_ERROR_INIT;
    char path[256];
    snprintf(path, sizeof(path), NETPOL_PATH, SANDBOX_NETPOL_EGRESS_NONE);
    answer_with(f, 200, NULL);
    answer_with(f, 200, NULL);
    assert_int_equal(netpol_sync(f->c, NS, &err), DONE);
    assert_requests(f, 2);
    json_t *none = json_deep_copy(assert_request(f, 0, "PATCH", path));
    reset(f);

    /* The cache has neither yet: nothing sent; Pods wait until the watch shows them. */
    assert_int_equal(netpol_sync(f->c, NS, &err), DONE);
    assert_requests(f, 0);
    assert_false(netpol_sync_ready(f->c, NS));
    assert_queue(f, "");
    moat_fake_clock_advance(&f->clock, NETPOL_PENDING_NS + 1000000);
    assert_queue(f, NETPOL_Q);

    /* The watch brings one, then its deletion: that one is applied again. */
    json_object_set_new(json_object_get(none, "metadata"), "resourceVersion", json_string("50"));
    feed(f->c->netpols, "ADDED", json_incref(none));
    feed(f->c->netpols, "DELETED", none);
    drain(f, q, sizeof(q));
    answer_with(f, 200, NULL);
    assert_int_equal(netpol_sync(f->c, NS, &err), DONE);
    assert_requests(f, 1);
    assert_request(f, 0, "PATCH", path);
}

/* A replica that does not lead writes nothing. */
static void test_not_leading_writes_nothing(void **state)
{
    fixture *f = *state;
    new_sandbox(f, SPEC);
    f->c->leader_elect = true; /* and no Lease held */
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 0);
}

/* ---- the answers a write can get ------------------------------------------------------ */

/* Conflict on the status write (the Sandbox changed since the cache's copy): requeued at
 * once, no error, counted. The Pod was created and is not created again: the next pass
 * finds it in the cache and writes the status at the newer resourceVersion. */
static void test_status_conflict_requeues(void **state)
{
    fixture *f = *state;
    new_sandbox(f, SPEC);
    answer_with(f, 201, NULL);
    answer_refusal(f, 409, "Conflict");
    reconcile_expect(f, REQUEUE_NOW, 0);
    assert_requests(f, 2);
    json_t *pod = json_deep_copy(assert_request(f, 0, "POST", PODS_PATH));
    status_written(f, 1, "10");
    assert_int_equal(f->c->conflicts, 1);
    assert_int_equal(f->c->status_writes, 0);
    assert_int_equal(f->c->pods_created, 1);

    /* what the conflict was about: someone labelled the Sandbox */
    json_t *s = sandbox("12", SPEC, NULL);
    json_object_set_new(json_object_get(s, "metadata"), "labels", json_pack("{s:s}", "a", "b"));
    feed(f->c->sandboxes, "MODIFIED", s);
    feed(f->c->pods, "ADDED", pod_at(pod, "100", NULL, NULL));
    json_decref(pod);
    reset(f);
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 1);
    const json_t *st = status_written(f, 0, "12");
    assert_str(f->requests[0].body, "metadata.labels.a", "b");
    assert_pending_status(st);
    assert_int_equal(f->c->pods_created, 1);
    assert_int_equal(f->c->status_writes, 1);
}

/* NotFound on the status write (the Sandbox deleted between the cache and the write): done,
 * no error and no retry; its deletion then reaches the cache and nothing more is sent. */
static void test_status_not_found_done(void **state)
{
    fixture *f = *state;
    start_pending(f);
    char started[32], status[1024];
    rfc3339(started, time(NULL) - 10);
    snprintf(status, sizeof(status), RUNNING_POD, started, started);
    feed(f->c->pods, "MODIFIED", pod_at(f->created, "101", "node-1", status));
    answer_refusal(f, 404, "NotFound");
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 1);
    status_written(f, 0, "11");
    assert_int_equal(f->c->status_writes, 1); /* start_pending's only */
    assert_int_equal(f->c->conflicts, 0);

    feed(f->c->sandboxes, "DELETED", sandbox("13", SPEC, NULL));
    reset(f);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 0);
    /* the Sandbox's only Event: no Started for a status never written */
    assert_events(f, "Normal PodCreated: created pod sb", NULL);
}

/* Gone (410) is not the reconciler's: an answer to a write never says it (it is for
 * watches and continue tokens, and the informer relists on it). Were one to come, it is a
 * failure like any other: FAILED (backoff), the error with its reason, context and body
 * kept. */
static void test_status_gone_fails(void **state)
{
    fixture *f = *state;
    start_pending(f);
    char started[32], status[1024];
    rfc3339(started, time(NULL) - 10);
    snprintf(status, sizeof(status), RUNNING_POD, started, started);
    feed(f->c->pods, "MODIFIED", pod_at(f->created, "101", "node-1", status));
    answer_refusal(f, 410, "Expired");
    moat_error err = MOAT_ERROR_INIT;
    int64_t after;
    assert_int_equal(run(f, &after, &err), FAILED);
    assert_int_equal(after, 0);
    assert_true(kube_error_is(&err, KUBE_REASON_GONE));
    assert_int_equal(err.http_status, 410);
    assert_non_null(strstr(err.message, "update status of sandboxes team-a/sb"));
    assert_non_null(strstr(err.body, "\"reason\":\"Expired\""));
    moat_error_clear(&err);
    assert_requests(f, 1);
    assert_int_equal(f->c->status_writes, 1); /* start_pending's only */
}

/* A 410 in the Sandbox watch (an ERROR event) ends that watch for a relist: the cache keeps
 * serving its last state and reconcile goes on from it, never seeing the 410. */
static void test_watch_gone_is_the_informers(void **state)
{
    fixture *f = *state;
    start_pending(f);
    static const char gone[] = "{\"type\": \"ERROR\", \"object\": {\"kind\": \"Status\", "
                               "\"status\": \"Failure\", \"reason\": \"Expired\", \"code\": 410, "
                               "\"message\": \"too old resource version\"}}\n";
    moat_error err = MOAT_ERROR_INIT;
    /* -1: this watch ends (the loop then relists) */
    assert_int_equal(kube_informer_apply_stream(f->c->sandboxes, gone, strlen(gone), &err), -1);
    moat_error_clear(&err);
    json_t *cached = kube_informer_get(f->c->sandboxes, SB);
    assert_non_null(cached);
    assert_string_equal(kobj_resource_version(cached), "11");
    json_decref(cached);
    reconcile_expect(f, DONE, 0);
    assert_requests(f, 0);
}

/* Another failure of the status write (500): FAILED with the error kept. */
static void test_status_error_fails(void **state)
{
    fixture *f = *state;
    new_sandbox(f, SPEC);
    answer_with(f, 201, NULL);
    answer_refusal(f, 500, "InternalError");
    moat_error err = MOAT_ERROR_INIT;
    int64_t after;
    assert_int_equal(run(f, &after, &err), FAILED);
    assert_true(kube_error_is(&err, KUBE_REASON_INTERNAL_ERROR));
    moat_error_clear(&err);
    assert_requests(f, 2);
}

/* AlreadyExists on the Pod's create, and the Pod of that name is ours (an earlier pass made
 * it; the cache has not shown it yet): done, looked at again in a second, no status write
 * (the cache will bring the Pod) and no second create. */
static void test_create_exists_ours(void **state)
{
    fixture *f = *state;
    new_sandbox(f, SPEC);
    json_t *sbx = sandbox("10", SPEC, NULL), *built = built_pod(f, sbx);
    json_t *ours = pod_at(built, "100", NULL, NULL);
    char *text = json_dumps(ours, JSON_COMPACT);
    answer_refusal(f, 409, "AlreadyExists");
    answer_with(f, 200, text);
    reconcile_expect(f, DONE, 1);
    assert_requests(f, 2);
    assert_request(f, 0, "POST", PODS_PATH);
    assert_null(assert_request(f, 1, "GET", POD_PATH));
    assert_int_equal(f->c->pods_created, 0);
    assert_int_equal(f->c->status_writes, 0);
    free(text);
    json_decref(ours);
    json_decref(built);
    json_decref(sbx);
    assert_events(f, NULL);
}

/* ... an earlier Sandbox's Pod of the same name, on its way out: wait, as for ours. */
static void test_create_exists_earlier_sandbox(void **state)
{
    fixture *f = *state;
    new_sandbox(f, SPEC);
    json_t *earlier = sandbox("1", SPEC, NULL);
    json_object_set_new(json_object_get(earlier, "metadata"), "uid", json_string(OTHER));
    json_t *built = built_pod(f, earlier), *pod = pod_at(built, "90", "node-1", NULL);
    char *text = json_dumps(pod, JSON_COMPACT);
    answer_refusal(f, 409, "AlreadyExists");
    answer_with(f, 200, text);
    reconcile_expect(f, DONE, 1);
    assert_requests(f, 2);
    assert_request(f, 1, "GET", POD_PATH);
    assert_int_equal(f->c->status_writes, 0);
    free(text);
    json_decref(pod);
    json_decref(built);
    json_decref(earlier);
}

/* ... a stranger's Pod of that name, outside the cache (without Moat's label): never
 * adopted; the Sandbox Failed (UntrustedPod), in the same pass. */
static void test_create_exists_foreign(void **state)
{
    fixture *f = *state;
    new_sandbox(f, SPEC);
    answer_refusal(f, 409, "AlreadyExists");
    answer_with(f, 200,
                "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"sb\", "
                "\"namespace\": \"team-a\", \"uid\": \"tenant-pod\", \"resourceVersion\": \"5\"}, "
                "\"spec\": {\"containers\": [{\"name\": \"c\", \"image\": \"evil\"}]}}");
    answer_with(f, 200, NULL);
    reconcile_expect(f, DONE, f->cfg->default_ttl_ns / 1000000000LL);
    assert_requests(f, 3);
    assert_request(f, 0, "POST", PODS_PATH);
    assert_request(f, 1, "GET", POD_PATH);
    const json_t *st = status_written(f, 2, "10");
    assert_str(st, "phase", "Failed");
    const char *msg = kobj_str(st, "message");
    assert_non_null(msg);
    assert_non_null(strstr(msg, "pod team-a/sb exists and was not made by moat-operator"));
    assert_condition(st, "Isolated", "False", "UntrustedPod", msg);
    assert_condition(st, "Finished", "True", "UntrustedPod", msg);
    assert_false(kobj_bool(st, "isolation.verified", true));
    assert_int_equal(f->c->pods_created, 0);
    assert_int_equal(f->c->isolation_alarms[2], 1);
}

/* ... gone again before the GET (NotFound): requeued at once, no error. */
static void test_create_exists_then_gone(void **state)
{
    fixture *f = *state;
    new_sandbox(f, SPEC);
    answer_refusal(f, 409, "AlreadyExists");
    answer_refusal(f, 404, "NotFound");
    reconcile_expect(f, REQUEUE_NOW, 0);
    assert_requests(f, 2);
    assert_request(f, 1, "GET", POD_PATH);
    assert_int_equal(f->c->status_writes, 0);
}

/* Any other refusal of the create (Forbidden: the pod-shape policy, a quota): FAILED,
 * the error kept, no status write. */
static void test_create_forbidden_fails(void **state)
{
    fixture *f = *state;
    new_sandbox(f, SPEC);
    answer_refusal(f, 403, "Forbidden");
    moat_error err = MOAT_ERROR_INIT;
    int64_t after;
    assert_int_equal(run(f, &after, &err), FAILED);
    assert_true(kube_error_is(&err, KUBE_REASON_FORBIDDEN));
    assert_non_null(strstr(err.message, "create pods team-a/sb"));
    moat_error_clear(&err);
    assert_requests(f, 1);
    assert_int_equal(f->c->pods_created, 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_new_sandbox_creates_pod),
        T(test_pending_pod_no_write),
        T(test_pod_running),
        T(test_running_again_no_write),
        T(test_pod_succeeded),
        T(test_pod_failed),
        T(test_pod_deadline_exceeded),
        T(test_timeout_expires),
        T(test_own_timeout),
        T(test_ttl_deletes_sandbox),
        T(test_ttl_delete_answers),
        T(test_ttl_not_over),
        T(test_deleted_sandbox),
        T(test_sandbox_being_deleted),
        T(test_pod_deleted_while_running),
        T(test_invalid_spec),
        T(test_vm_waits_for_hypervisor),
        T(test_waits_for_policies),
        T(test_policies_not_applied_twice_while_the_watch_lags),
        T(test_not_leading_writes_nothing),
        T(test_status_conflict_requeues),
        T(test_status_not_found_done),
        T(test_status_gone_fails),
        T(test_watch_gone_is_the_informers),
        T(test_status_error_fails),
        T(test_create_exists_ours),
        T(test_create_exists_earlier_sandbox),
        T(test_create_exists_foreign),
        T(test_create_exists_then_gone),
        T(test_create_forbidden_fails),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return r;
}
