/* operator/controller.c's reconcile: the fences before a create (policies, leadership) and
 * the answers a write can get (Conflict, NotFound, Gone, AlreadyExists, errors). */
#include "operator_reconcile_fixture.h"

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

/* netpol_sync applies both policies (answered 200); returns a copy of the "none" policy as
 * it was sent, for the test to feed as the watch would (the caller owns it). */
static json_t *apply_policies(fixture *f)
{
    moat_error err = MOAT_ERROR_INIT;
    char path[256];
    snprintf(path, sizeof(path), NETPOL_PATH, SANDBOX_NETPOL_EGRESS_NONE);
    answer_with(f, 200, NULL);
    answer_with(f, 200, NULL);
    assert_int_equal(netpol_sync(f->c, NS, &err), DONE);
    assert_requests(f, 2);
    json_t *none = json_deep_copy(assert_request(f, 0, "PATCH", path));
    reset(f);
    return none;
}

/* A Sandbox waiting for its namespace's policies is queued when the watch brings one (not
 * left to its backoff), and forgotten once a look at it ends otherwise (here: deleted). */
static void test_policies_wake_the_waiting(void **state)
{
    fixture *f = *state;
    feed(f->c->sandboxes, "ADDED", sandbox("10", SPEC, NULL));
    assert_queue(f, SB);
    reconcile_expect(f, WAIT_POLICIES, 0);
    assert_queue(f, NETPOL_Q);
    moat_error qerr = MOAT_ERROR_INIT; /* as the worker does after WAIT_POLICIES */
    assert_int_equal(workqueue_add_backoff(f->c->queue, SB, POLICY_WAIT_CAP_NS, &qerr), 0);
    assert_int_equal(workqueue_num_requeues(f->c->queue, SB), 1);
    assert_queue(f, ""); /* its backoff not over on the queue's clock */

    json_t *none = apply_policies(f);
    json_object_set_new(json_object_get(none, "metadata"), "resourceVersion", json_string("50"));
    feed(f->c->netpols, "ADDED", none);
    assert_queue(f, NETPOL_Q "," SB);
    assert_int_equal(workqueue_num_requeues(f->c->queue, SB), 0); /* the wait forgotten */
    /* the other policy is not there yet: it waits again, registered again */
    reconcile_expect(f, WAIT_POLICIES, 0);
    assert_queue(f, NETPOL_Q);
    assert_non_null(json_object_get(json_object_get(f->c->waiting, NS), SB));

    json_t *sbx = kube_informer_get(f->c->sandboxes, SB);
    feed(f->c->sandboxes, "DELETED", sbx);
    assert_queue(f, SB);
    reconcile_expect(f, DONE, 0);
    assert_null(json_object_get(f->c->waiting, NS));
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
    json_t *none = apply_policies(f);
    moat_error err = MOAT_ERROR_INIT;
    char path[256];
    snprintf(path, sizeof(path), NETPOL_PATH, SANDBOX_NETPOL_EGRESS_NONE);

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
        T(test_waits_for_policies),
        T(test_policies_wake_the_waiting),
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
