/* operator/controller.c's reconcile: a Sandbox's phases, driven through controller_reconcile
 * with the requests asserted (test_operator_reconcile_answers.c: fences and answers). */
#include "operator_reconcile_fixture.h"

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
    assert_true(moat_rfc3339_parse(kobj_str(st, "completionTime")) > 0);
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
    assert_true(moat_rfc3339_parse(kobj_str(st, "completionTime")) >= before);
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
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return r;
}
