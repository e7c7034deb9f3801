/* The event recorder against a fake API server behind the client's kube_transport: what it
 * creates and patches, aggregation of repeats, the per-object burst cap, the queue's cap.
 *
 * The recorder posts from a thread of its own; kube_recorder_free() waits for the queue to
 * drain and joins that thread, so once it returns every request has been answered and the
 * test reads the fake's log without racing it. The one test that needs the thread held
 * mid-request blocks it in the transport on a condition variable.
 *
 * Not reachable here: the refill of the burst (one event per 5 minutes after the 25) and
 * the end of the ten-minute aggregation window. recorder.c reads the monotonic clock
 * (moat_mono_ns) and the wall clock (time) itself, not a moat_clock, so the fake clock
 * cannot move them; within a test's run no token comes back. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <cmocka.h>

#include "libmoat/kobj.h"
#include "libmoat/kube.h"
#include "libmoat/kubeconfig.h"
#include "libmoat/recorder.h"

#define S          1000000000LL
#define MAX_LOG    2048
#define WAIT_BOUND (10 * S)

typedef struct {
    char method[8];
    char path[160];
    char content_type[48];
    json_t *body;
} request;

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool gate_closed; /* requests wait until the test opens it */
    int patch_404s;   /* the next n PATCHes answer 404 NotFound (the Event expired) */
    request log[MAX_LOG];
    size_t n;
    kube_config *kcfg;
    kube_client *client;
    kube_recorder *rec;
} fake;

static const char kubeconfig[] = "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                                 "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                                 "users: [{name: u, user: {token: t}}]\n"
                                 "contexts: [{name: c, context: {cluster: k, user: u}}]\n";

static int fake_send(void *impl, const kube_http_request *req, kube_http_response *resp,
                     moat_error *err)
{
    fake *f = impl;
    pthread_mutex_lock(&f->lock);
    if (f->n == MAX_LOG) {
        pthread_mutex_unlock(&f->lock);
        return moat_error_set(err, MOAT_E_NETWORK, "the test's log is full");
    }
    request *r = &f->log[f->n++];
    snprintf(r->method, sizeof(r->method), "%s", req->method);
    snprintf(r->path, sizeof(r->path), "%s", req->path);
    snprintf(r->content_type, sizeof(r->content_type), "%s",
             req->content_type ? req->content_type : "");
    r->body = req->body ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;
    pthread_cond_broadcast(&f->cond); /* the test may wait for this request to arrive */
    while (f->gate_closed)
        pthread_cond_wait(&f->cond, &f->lock);
    if (strcmp(req->method, "PATCH") == 0 && f->patch_404s > 0) {
        f->patch_404s--;
        resp->status = 404;
        resp->body = strdup("{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"NotFound\","
                            "\"code\":404}");
    } else {
        resp->status = strcmp(req->method, "POST") == 0 ? 201 : 200;
        resp->body = strndup(req->body ? req->body : "{}", req->body ? req->body_len : 2);
    }
    resp->body_len = strlen(resp->body);
    resp->retry_after_ns = -1;
    pthread_mutex_unlock(&f->lock);
    return 0;
}

static int setup(void **state)
{
    fake *f = calloc(1, sizeof(*f));
    moat_error err = MOAT_ERROR_INIT;
    assert_non_null(f);
    pthread_mutex_init(&f->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (kube_config_parse(&f->kcfg, kubeconfig, strlen(kubeconfig), "test", NULL, NULL, &err) < 0)
        fail_msg("%s", err.message);
    kube_transport t = {fake_send, f};
    kube_client_options o = {.transport = &t, .max_retries = -1};
    if (kube_client_new(&f->client, f->kcfg, &o, &err) < 0 ||
        kube_recorder_new(&f->rec, f->client, "moat-operator", "host-1", &err) < 0)
        fail_msg("%s", err.message);
    *state = f;
    return 0;
}

/* Posts what is queued and joins the recorder's thread: the log is complete after this. */
static void drain(fake *f)
{
    kube_recorder_free(f->rec, WAIT_BOUND);
    f->rec = NULL;
}

static int teardown(void **state)
{
    fake *f = *state;
    /* After a failed assertion: let a held request go, so that the thread can be joined. */
    pthread_mutex_lock(&f->lock);
    f->gate_closed = false;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    kube_recorder_free(f->rec, WAIT_BOUND);
    for (size_t i = 0; i < f->n; i++)
        json_decref(f->log[i].body);
    kube_client_free(f->client);
    kube_config_free(f->kcfg);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return 0;
}

static json_t *pod(const char *name, const char *uid)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}}", "apiVersion", "v1", "kind", "Pod",
                     "metadata", "name", name, "namespace", "ns", "uid", uid, "resourceVersion",
                     "5");
}

static size_t count(fake *f, const char *method)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n; i++)
        n += strcmp(f->log[i].method, method) == 0;
    return n;
}

static int64_t count_of(const request *r)
{
    int64_t c = -1;
    kobj_int(r->body, "count", &c);
    return c;
}

static void test_event_fields(void **state)
{
    fake *f = *state;
    json_t *p = pod("p", "u1");
    json_t *node = json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion", "v1", "kind", "Node",
                             "metadata", "name", "n1", "uid", "u-node");
    kube_recorder_event(f->rec, p, "Normal", "Started", "started %s in %d ms", "x", 12);
    kube_recorder_event(f->rec, node, "Warning", "NoHypervisor", "no usable hypervisor");
    json_decref(p);
    json_decref(node);
    drain(f);

    assert_int_equal(f->n, 2);
    request *r = &f->log[0];
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->path, "/api/v1/namespaces/ns/events");
    json_t *b = r->body;
    assert_string_equal(kobj_str(b, "kind"), "Event");
    assert_string_equal(kobj_str(b, "metadata.namespace"), "ns");
    assert_true(strncmp(kobj_str(b, "metadata.name"), "p.", 2) == 0);
    assert_string_equal(kobj_str(b, "involvedObject.apiVersion"), "v1");
    assert_string_equal(kobj_str(b, "involvedObject.kind"), "Pod");
    assert_string_equal(kobj_str(b, "involvedObject.name"), "p");
    assert_string_equal(kobj_str(b, "involvedObject.namespace"), "ns");
    assert_string_equal(kobj_str(b, "involvedObject.uid"), "u1");
    assert_string_equal(kobj_str(b, "involvedObject.resourceVersion"), "5");
    assert_string_equal(kobj_str(b, "type"), "Normal");
    assert_string_equal(kobj_str(b, "reason"), "Started");
    assert_string_equal(kobj_str(b, "message"), "started x in 12 ms");
    assert_int_equal(count_of(r), 1);
    assert_string_equal(kobj_str(b, "firstTimestamp"), kobj_str(b, "lastTimestamp"));
    assert_string_equal(kobj_str(b, "source.component"), "moat-operator");
    assert_string_equal(kobj_str(b, "source.host"), "host-1");
    assert_string_equal(kobj_str(b, "reportingComponent"), "moat-operator");
    assert_string_equal(kobj_str(b, "reportingInstance"), "host-1");

    /* Events about cluster-scoped objects live in "default". */
    r = &f->log[1];
    assert_string_equal(r->path, "/api/v1/namespaces/default/events");
    assert_string_equal(kobj_str(r->body, "metadata.namespace"), "default");
    assert_null(kobj_get(r->body, "involvedObject.namespace"));
    assert_string_equal(kobj_str(r->body, "type"), "Warning");
}

/* The same event again: one Event, its count and lastTimestamp patched. */
static void test_repeats_are_aggregated(void **state)
{
    fake *f = *state;
    json_t *p = pod("p", "u1");
    for (int i = 0; i < 3; i++)
        kube_recorder_event(f->rec, p, "Warning", "BackOff", "restarting %s", "c");
    json_decref(p);
    drain(f);

    assert_int_equal(f->n, 3);
    assert_string_equal(f->log[0].method, "POST");
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/namespaces/ns/events/%s",
             kobj_str(f->log[0].body, "metadata.name"));
    for (size_t i = 1; i < 3; i++) {
        request *r = &f->log[i];
        assert_string_equal(r->method, "PATCH");
        assert_string_equal(r->path, path);
        assert_string_equal(r->content_type, "application/merge-patch+json");
        assert_int_equal(count_of(r), (int64_t)i + 1);
        assert_non_null(kobj_str(r->body, "lastTimestamp"));
        assert_int_equal(json_object_size(r->body), 2); /* nothing else changes */
    }
}

/* Events that differ in reason, message, type or object are separate Events. */
static void test_different_events_are_not_merged(void **state)
{
    fake *f = *state;
    json_t *p = pod("p", "u1"), *q = pod("q", "u2");
    kube_recorder_event(f->rec, p, "Normal", "Scheduled", "on n1");
    kube_recorder_event(f->rec, p, "Normal", "Started", "on n1");
    kube_recorder_event(f->rec, p, "Normal", "Scheduled", "on n2");
    kube_recorder_event(f->rec, p, "Warning", "Scheduled", "on n1");
    kube_recorder_event(f->rec, q, "Normal", "Scheduled", "on n1");
    kube_recorder_event(f->rec, p, "Normal", "Scheduled", "on n1"); /* the first one again */
    json_decref(p);
    json_decref(q);
    drain(f);

    assert_int_equal(f->n, 6);
    assert_int_equal(count(f, "POST"), 5);
    static const char *const reasons[] = {"Scheduled", "Started", "Scheduled", "Scheduled",
                                          "Scheduled"};
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(f->log[i].method, "POST");
        assert_string_equal(kobj_str(f->log[i].body, "reason"), reasons[i]);
        assert_int_equal(count_of(&f->log[i]), 1);
    }
    assert_string_equal(f->log[5].method, "PATCH");
    assert_non_null(strstr(f->log[5].path, kobj_str(f->log[0].body, "metadata.name")));
    assert_int_equal(count_of(&f->log[5]), 2);
}

/* 25 events per object, then none until a token comes back (every 5 minutes); repeats
 * count, and each object has a burst of its own. */
static void test_burst_cap_per_object(void **state)
{
    fake *f = *state;
    json_t *p = pod("p", "u1"), *q = pod("q", "u2"), *o = pod("o", "u3");
    for (int i = 0; i < 30; i++)
        kube_recorder_event(f->rec, p, "Normal", "Tick", "tick %d", i);
    for (int i = 0; i < 3; i++)
        kube_recorder_event(f->rec, q, "Normal", "Tick", "tick %d", i);
    for (int i = 0; i < 30; i++)
        kube_recorder_event(f->rec, o, "Normal", "Same", "the same");
    json_decref(p);
    json_decref(q);
    json_decref(o);
    drain(f);

    size_t of_p = 0, of_q = 0, of_o = 0;
    int64_t last_count = 0;
    for (size_t i = 0; i < f->n; i++) {
        request *r = &f->log[i];
        if (strcmp(r->method, "POST") == 0) {
            const char *uid = kobj_str(r->body, "involvedObject.uid");
            of_p += strcmp(uid, "u1") == 0;
            of_q += strcmp(uid, "u2") == 0;
            of_o += strcmp(uid, "u3") == 0;
        } else {
            of_o++; /* only o's events are repeats */
            last_count = count_of(r);
        }
    }
    assert_int_equal(of_p, 25);
    assert_string_equal(kobj_str(f->log[24].body, "message"), "tick 24");
    assert_int_equal(of_q, 3);
    assert_int_equal(of_o, 25);
    assert_int_equal(count(f, "PATCH"), 24);
    assert_int_equal(last_count, 25);
}

/* Until the recorder has sent n requests (a bounded wait). */
static void wait_requests(fake *f, size_t n)
{
    for (int i = 0; i < 10000; i++) {
        pthread_mutex_lock(&f->lock);
        size_t have = f->n;
        pthread_mutex_unlock(&f->lock);
        if (have >= n)
            return;
        usleep(1000);
    }
    fail_msg("the recorder sent fewer than %zu requests in 10 s", n);
}

/* Past its burst, an object earns one event per 5 minutes on the recorder's clock: not a
 * nanosecond sooner. Events of another object mark where the recorder's thread is. */
static void test_burst_refills_one_per_five_minutes(void **state)
{
    fake *f = *state;
    moat_fake_clock clk;
    moat_fake_clock_init(&clk, 1000);
    kube_recorder_set_clock(f->rec, moat_fake_clock_get(&clk));
    json_t *p = pod("p", "u1"), *m = pod("m", "u9");
    for (int i = 0; i < 30; i++)
        kube_recorder_event(f->rec, p, "Normal", "Tick", "tick %d", i);
    kube_recorder_event(f->rec, m, "Normal", "Marker", "after the thirty");
    wait_requests(f, 26); /* p's 25 and the marker */
    moat_fake_clock_advance(&clk, 300 * S - 1);
    kube_recorder_event(f->rec, p, "Normal", "Tick", "too early");
    kube_recorder_event(f->rec, m, "Normal", "Marker2", "after the early one");
    wait_requests(f, 27);
    moat_fake_clock_advance(&clk, 1);
    kube_recorder_event(f->rec, p, "Normal", "Tick", "refilled");
    json_decref(p);
    json_decref(m);
    drain(f);
    size_t of_p = 0;
    const char *last = NULL;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->log[i].method, "POST") == 0 &&
            strcmp(kobj_str(f->log[i].body, "involvedObject.uid"), "u1") == 0) {
            of_p++;
            last = kobj_str(f->log[i].body, "message");
        }
    assert_int_equal(of_p, 26);
    assert_string_equal(last, "refilled");
}

/* The aggregated Event is gone (expired, deleted): a new one is created and then patched. */
static void test_lost_event_is_created_again(void **state)
{
    fake *f = *state;
    f->patch_404s = 1;
    json_t *p = pod("p", "u1");
    for (int i = 0; i < 3; i++)
        kube_recorder_event(f->rec, p, "Normal", "Pulled", "pulled");
    json_decref(p);
    drain(f);

    assert_int_equal(f->n, 4);
    assert_string_equal(f->log[0].method, "POST");
    assert_string_equal(f->log[1].method, "PATCH"); /* 404 */
    assert_string_equal(f->log[2].method, "POST");
    assert_int_equal(count_of(&f->log[2]), 1);
    assert_string_equal(f->log[3].method, "PATCH");
    assert_int_equal(count_of(&f->log[3]), 2);
    assert_non_null(strstr(f->log[3].path, kobj_str(f->log[2].body, "metadata.name")));
}

/* While the thread is busy, at most KUBE_RECORDER_QUEUE_MAX events wait; more are dropped
 * and the caller never blocks. */
static void test_queue_cap(void **state)
{
    fake *f = *state;
    char name[32];
    f->gate_closed = true;
    json_t *p = pod("first", "u-first");
    kube_recorder_event(f->rec, p, "Normal", "Busy", "first");
    json_decref(p);

    /* The thread has taken the first event off the queue and is inside the request. */
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += WAIT_BOUND / S;
    pthread_mutex_lock(&f->lock);
    while (f->n == 0)
        if (pthread_cond_timedwait(&f->cond, &f->lock, &dl) != 0)
            break;
    size_t n = f->n;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(n, 1);

    for (int i = 0; i < KUBE_RECORDER_QUEUE_MAX + 5; i++) {
        snprintf(name, sizeof(name), "p%d", i);
        p = pod(name, name); /* one object each: the burst cap is not what drops them */
        kube_recorder_event(f->rec, p, "Normal", "Busy", "queued");
        json_decref(p);
    }
    pthread_mutex_lock(&f->lock);
    f->gate_closed = false;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    drain(f);

    assert_int_equal(f->n, 1 + KUBE_RECORDER_QUEUE_MAX);
    snprintf(name, sizeof(name), "p%d", KUBE_RECORDER_QUEUE_MAX - 1);
    assert_string_equal(kobj_str(f->log[f->n - 1].body, "involvedObject.name"), name);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_event_fields),
        T(test_repeats_are_aggregated),
        T(test_different_events_are_not_merged),
        T(test_burst_cap_per_object),
        T(test_burst_refills_one_per_five_minutes),
        T(test_lost_event_is_created_again),
        T(test_queue_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
