/* What the two test programs of the Sandbox reconcile share (test_operator_reconcile.c: a
 * Sandbox's phases; test_operator_reconcile_answers.c: the fences before a create and the
 * answers a write can get): a scripted kube_transport that records requests, objects fed to
 * the caches as watch events, and a controller built as main.c builds it. Functions are
 * static inline: each program uses some of them. */
#ifndef MOAT_TEST_OPERATOR_RECONCILE_FIXTURE_H
#define MOAT_TEST_OPERATOR_RECONCILE_FIXTURE_H

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
#include "libmoat/units.h"
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

static inline int scripted_send(void *impl, const kube_http_request *req, kube_http_response *resp,
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
static inline void answer_with(fixture *f, long status, const char *body)
{
    assert_true(f->n_answers < MAX_ANSWERS);
    f->answers[f->n_answers++] = (answer){status, body ? strdup(body) : NULL};
}

/* ... with a Status body of that reason, as the API server refuses. */
static inline void answer_refusal(fixture *f, long code, const char *reason)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
             "\"message\":\"refused as %s by the test\",\"reason\":\"%s\",\"code\":%ld}",
             reason, reason, code);
    answer_with(f, code, body);
}

/* Forgets the requests and answers so far. */
static inline void reset(fixture *f)
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

static inline void dump_requests(fixture *f)
{
    for (size_t i = 0; i < f->n_requests; i++)
        print_message("  request %zu: %s %s\n", i, f->requests[i].method, f->requests[i].path);
}

/* Exactly n requests were sent, and every one had a scripted answer. */
static inline void assert_requests(fixture *f, size_t n)
{
    if (f->n_requests != n || f->unscripted || f->dropped) {
        dump_requests(f);
        fail_msg("%zu requests (%zu unscripted), want %zu", f->n_requests + f->dropped,
                 f->unscripted, n);
    }
}

/* Request i was method path; its body (borrowed, may be NULL). */
static inline const json_t *assert_request(fixture *f, size_t i, const char *method,
                                           const char *path)
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
static inline void assert_events(fixture *f, ...)
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

static inline json_t *parse(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (!v)
        fail_msg("bad test JSON (%s): %s", je.text, text);
    return v;
}

static inline void rfc3339(char buf[32], int64_t t)
{
    moat_rfc3339_format(buf, 32, t);
}

/* Sandbox "sb" (uid UID, generation GENERATION) at resourceVersion rv, with spec (JSON)
 * and status (JSON, NULL: none). */
static inline json_t *sandbox(const char *rv, const char *spec, const char *status)
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
static inline void feed(kube_informer *inf, const char *type, json_t *obj)
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
static inline const char *drain(fixture *f, char *buf, size_t len)
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
static inline json_t *built_pod(fixture *f, const json_t *sbx)
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
static inline json_t *pod_at(const json_t *pod, const char *rv, const char *node,
                             const char *status)
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
static inline void policies_in_place(fixture *f)
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
static inline const json_t *status_written(fixture *f, size_t i, const char *rv)
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

static inline void assert_str(const json_t *obj, const char *path, const char *want)
{
    const char *got = kobj_str(obj, path);
    if (!want && got)
        fail_msg("%s is \"%s\", want none", path, got);
    if (want && (!got || strcmp(got, want) != 0))
        fail_msg("%s is \"%s\", want \"%s\"", path, got ? got : "(none)", want);
}

/* A condition of status: its status, reason and (unless NULL) message, at the generation
 * read, with a time. */
static inline void assert_condition(const json_t *status, const char *type, const char *want,
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
    assert_true(moat_rfc3339_parse(kobj_str(c, "lastTransitionTime")) > 0);
}

static inline outcome run(fixture *f, int64_t *ret_after_s, moat_error *err)
{
    *ret_after_s = -12345; /* a sentinel: always written */
    outcome o = controller_reconcile(f->c, SB, ret_after_s, err);
    assert_true(*ret_after_s != -12345);
    if (o != FAILED)
        assert_null(err->message);
    return o;
}

/* Runs the reconcile and checks its outcome and requeue delay. */
static inline void reconcile_expect(fixture *f, outcome want, int64_t want_after_s)
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

static inline int setup(void **state)
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

static inline int teardown(void **state)
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
static inline void new_sandbox(fixture *f, const char *spec)
{
    feed(f->c->sandboxes, "ADDED", sandbox("10", spec, NULL));
    policies_in_place(f);
}

/* The Pending status a new Sandbox gets when its Pod is created. */
static inline void assert_pending_status(const json_t *st)
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
static inline void start_pending(fixture *f)
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
static inline void status_comes_back(fixture *f, size_t i, const char *rv)
{
    json_t *sbx = json_deep_copy(assert_request(f, i, "PUT", STATUS_PATH));
    json_object_set_new(json_object_get(sbx, "metadata"), "resourceVersion", json_string(rv));
    feed(f->c->sandboxes, "MODIFIED", sbx);
}

/* A Running Pod's status: printf with its startTime and its container's startedAt. */
#define RUNNING_POD                                                                                \
    "{\"phase\": \"Running\", \"startTime\": \"%s\", \"conditions\": ["                            \
    "{\"type\": \"PodScheduled\", \"status\": \"True\"}, {\"type\": \"Ready\", \"status\": "       \
    "\"True\"}], \"containerStatuses\": [{\"name\": \"sandbox\", \"state\": {\"running\": "        \
    "{\"startedAt\": \"%s\"}}}]}"

#endif
