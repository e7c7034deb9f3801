/* operator/status.c: a new Sandbox before its Pod, a Sandbox whose Pod cannot be built, the
 * Pod's life, and the node's isolation report. (test_operator_status_final.c has the rest.) */
#include "operator_status_fixture.h"

/* ---- a new Sandbox, before its Pod ---- */

static void test_new_sandbox_creates_pod(void **state)
{
    scenario *s = *state;
    const json_t *st = plan(s);

    assert_int_equal(s->plan.action, SANDBOX_ACTION_CREATE_POD);
    assert_int_equal(s->plan.requeue_after_s, 0);
    expect_str(st, "phase", "Pending");
    expect_int(st, "observedGeneration", GEN);
    expect_cond(st, "Scheduled", "False", "Pending");
    expect_cond(st, "Ready", "False", "Pending");
    expect_cond(st, "Finished", "False", "Pending");
    expect_isolation_unknown(st);
    expect_str(st, "isolation.handler", "");
    expect_str(st, "isolation.reason", "");
    assert_true(json_is_false(kobj_get(st, "isolation.verified")));
    assert_int_equal(json_array_size(kobj_get(st, "conditions")), 4);

    const char *types[] = {"Scheduled", "Ready", "Isolated", "Finished"};
    for (size_t i = 0; i < 4; i++) {
        const json_t *c = find_condition(st, types[i]);
        expect_int(c, "observedGeneration", GEN);
        expect_str(c, "lastTransitionTime", NOW_STR);
    }
    expect_absent(st, "startTime");
    expect_absent(st, "completionTime");
    expect_absent(st, "exitCode");
    expect_str(st, "podName", "sb"); /* the Pod about to be created is named after it */
    expect_stable(s);
}

static void test_new_sandbox_observed_generation_follows_metadata(void **state)
{
    scenario *s = *state;
    json_object_set_new(json_object_get(s->sandbox, "metadata"), "generation", json_integer(17));
    const json_t *st = plan_raw(s);
    check_schema(st, 17);
    const json_t *c;
    size_t i;
    json_array_foreach (kobj_get(st, "conditions"), i, c)
        expect_int(c, "observedGeneration", 17);
}

static void test_vm_without_hypervisor(void **state)
{
    scenario *s = *state;
    s->view.wants_vm = true;
    s->facts.hypervisor_available = false;
    const json_t *st = plan(s);

    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    expect_str(st, "phase", "Pending");
    const json_t *c = expect_cond(st, "Scheduled", "False", "NoHypervisor");
    expect_contains(c, "message", "hypervisor");
    expect_contains(st, "message", "hypervisor");
    expect_cond(st, "Finished", "False", "NoHypervisor");
    expect_isolation_unknown(st);
    expect_stable(s);

    /* With GPUs too, the missing hypervisor is what the user must hear about first. */
    s->view.gpus = 2;
    s->facts.gpu_vm_available = false;
    st = plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    expect_cond(st, "Scheduled", "False", "NoHypervisor");
}

static void test_vm_gpus_without_passthrough_node(void **state)
{
    scenario *s = *state;
    s->view.wants_vm = true;
    s->view.gpus = 1;
    s->facts.gpu_vm_available = false;
    const json_t *st = plan(s);

    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    expect_str(st, "phase", "Pending");
    const json_t *c = expect_cond(st, "Scheduled", "False", "NoGPUPassthroughNode");
    expect_contains(c, "message", "GPU");
    expect_contains(st, "message", "GPU");
    expect_stable(s);
}

static void test_vm_with_hypervisor_creates_pod(void **state)
{
    scenario *s = *state;
    s->view.wants_vm = true;
    const json_t *st = plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_CREATE_POD);
    expect_cond(st, "Scheduled", "False", "Pending");

    s->view.gpus = 1;
    plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_CREATE_POD);

    /* Auto and GVisor do not need a hypervisor, nor a VM-passthrough node for GPUs. */
    s->view.wants_vm = false;
    s->facts.hypervisor_available = false;
    s->facts.gpu_vm_available = false;
    plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_CREATE_POD);
}

/* A hypervisor that appears later lets the waiting Sandbox go on. */
static void test_hypervisor_appears(void **state)
{
    scenario *s = *state;
    s->view.wants_vm = true;
    s->facts.hypervisor_available = false;
    plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    feed_back(s);
    s->facts.hypervisor_available = true;
    s->facts.now_s = NOW + 60;
    const json_t *st = plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_CREATE_POD);
    expect_cond(st, "Scheduled", "False", "Pending");
    expect_absent(st, "message"); /* the NoHypervisor message no longer holds */
    /* Still False: the transition time stays. */
    expect_cond_time(st, "Scheduled", NOW_STR);
}

/* ---- a Sandbox whose Pod cannot be built ---- */

static void test_spec_error(void **state)
{
    scenario *s = *state;
    s->view.spec_error = "spec.isolation: \"Firecracker\" is not Auto, VM or GVisor";
    const json_t *st = plan(s);

    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    assert_int_equal(s->plan.requeue_after_s, TTL);
    expect_str(st, "phase", "Failed");
    expect_contains(st, "message", "spec.isolation: \"Firecracker\" is not Auto, VM or GVisor");
    expect_str(st, "completionTime", NOW_STR);
    const json_t *c = expect_cond(st, "Finished", "True", "InvalidSpec");
    expect_contains(c, "message", "Firecracker");
    expect_cond(st, "Scheduled", "False", "InvalidSpec");
    expect_cond(st, "Ready", "False", "InvalidSpec");
    expect_cond(st, "Isolated", "Unknown", "InvalidSpec");
    expect_absent(st, "exitCode");

    /* Final: the TTL runs from completionTime on later passes. */
    expect_stable(s);
    assert_int_equal(s->plan.requeue_after_s, TTL);
    s->facts.now_s = NOW + TTL - 1;
    plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    assert_int_equal(s->plan.requeue_after_s, 1);
    s->facts.now_s = NOW + TTL;
    plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_DELETE_SANDBOX);
}

static void test_spec_error_zero_ttl_still_requeues(void **state)
{
    scenario *s = *state;
    s->view.spec_error = "spec: missing";
    s->view.ttl_s = 0;
    plan(s);
    assert_int_equal(s->plan.requeue_after_s, 1);
    feed_back(s);
    plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_DELETE_SANDBOX);
}

/* A spec error wins over a Pod in the cache (the controller reports a foreign Pod that
 * way). */
static void test_spec_error_with_pod(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    s->view.spec_error = "a Pod of that name exists and does not belong to this Sandbox";
    const json_t *st = plan(s);
    expect_str(st, "phase", "Failed");
    expect_contains(st, "message", "does not belong");
    expect_cond(st, "Finished", "True", "InvalidSpec");
}

/* ---- the Pod exists ---- */

static void test_pod_scheduled_pending_image_pull(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Pending\", \"conditions\": [" SCHEDULED_TRUE "],"
                       " \"containerStatuses\": [{\"name\": \"sandbox\", \"state\":"
                       " {\"waiting\": {\"reason\": \"ErrImagePull\","
                       " \"message\": \"pull access denied for busybox\"}}}]}"));
    const json_t *st = plan(s);

    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    assert_int_equal(s->plan.requeue_after_s, 0);
    expect_str(st, "phase", "Pending");
    expect_str(st, "podName", "sb");
    expect_str(st, "nodeName", "node-a");
    const json_t *c = expect_cond(st, "Scheduled", "True", "Scheduled");
    expect_str(c, "message", "on node node-a");
    expect_str(st, "message", "ErrImagePull: pull access denied for busybox");
    c = expect_cond(st, "Ready", "False", "Pending");
    expect_contains(c, "message", "ErrImagePull");
    expect_cond(st, "Finished", "False", "Pending");
    expect_isolation_unknown(st);
    expect_absent(st, "startTime");
    expect_absent(st, "completionTime");
    expect_stable(s);
}

static void test_pod_waiting_reason_without_message(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Pending\", \"conditions\": [" SCHEDULED_TRUE "],"
                       " \"containerStatuses\": [{\"name\": \"sandbox\", \"state\":"
                       " {\"waiting\": {\"reason\": \"ContainerCreating\"}}}]}"));
    const json_t *st = plan(s);
    expect_str(st, "message", "ContainerCreating");
}

static void test_pod_unschedulable(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Pending\", \"conditions\": [{\"type\": \"PodScheduled\","
                       " \"status\": \"False\", \"reason\": \"Unschedulable\","
                       " \"message\": \"0/3 nodes are available: 3 Insufficient cpu.\"}]}"));
    json_object_del(json_object_get(s->pod, "spec"), "nodeName");
    const json_t *st = plan(s);

    expect_str(st, "phase", "Pending");
    const json_t *c = expect_cond(st, "Scheduled", "False", "Unschedulable");
    expect_str(c, "message", "0/3 nodes are available: 3 Insufficient cpu.");
    expect_absent(st, "nodeName");
    expect_stable(s);
}

static void test_pod_not_yet_seen_by_scheduler(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Pending\"}"));
    json_object_del(json_object_get(s->pod, "spec"), "nodeName");
    const json_t *st = plan(s);
    const json_t *c = expect_cond(st, "Scheduled", "False", "Pending");
    expect_contains(c, "message", "scheduler");
}

static void test_pod_running_ready(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "],"
                       " \"containerStatuses\": [{\"name\": \"sandbox\", \"ready\": true,"
                       " \"state\": {\"running\": {\"startedAt\": \"2026-11-24T05:28:25Z\"}}}]}"));
    const json_t *st = plan(s);

    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    /* startTime + timeout - now + 1 = -100 + 300 + 1 */
    assert_int_equal(s->plan.requeue_after_s, 201);
    expect_str(st, "phase", "Running");
    expect_str(st, "startTime", "2026-11-24T05:28:20Z");
    expect_cond(st, "Ready", "True", "Running");
    expect_cond(st, "Scheduled", "True", "Scheduled");
    expect_cond(st, "Finished", "False", "Running");
    expect_absent(st, "message");
    expect_absent(st, "completionTime");
    expect_absent(st, "exitCode");
    expect_stable(s);

    /* Later, the requeue shrinks with the time left. */
    s->facts.now_s = NOW + 100;
    plan(s);
    assert_int_equal(s->plan.requeue_after_s, 101);
}

static void test_pod_running_not_ready(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_FALSE "]}"));
    const json_t *st = plan(s);
    expect_str(st, "phase", "Running");
    expect_cond(st, "Ready", "False", "Running");
}

/* A Running Sandbox's message from its Pending days is gone. */
static void test_running_clears_old_message(void **state)
{
    scenario *s = *state;
    plan(s);
    feed_back(s);
    /* While it waits for a node there is nothing to say beyond the conditions. */
    expect_absent(kobj_get(s->sandbox, "status"), "message");
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    const json_t *st = plan(s);
    expect_absent(st, "message");
}

/* The status's startTime, once set, is the one the timeout counts from. */
static void test_start_time_kept_from_status(void **state)
{
    scenario *s = *state;
    set_old_status(s, jsonf("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\"}"));
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:29:50Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    const json_t *st = plan(s);
    expect_str(st, "startTime", "2026-11-24T05:28:20Z");
    assert_int_equal(s->plan.requeue_after_s, 201);
}

/* A start time far ahead of the operator's clock is taken as now: the timeout (and a
 * session's idle clock) still run. */
static void test_start_time_far_ahead_is_now(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2099-01-01T00:00:00Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    const json_t *st = plan(s);
    expect_str(st, "startTime", NOW_STR);
    assert_int_equal(s->plan.requeue_after_s, 301);
}

/* A Pending Pod that kubelet has started (pulling the image) is on the clock too. */
static void test_pending_pod_with_start_time_requeues(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Pending\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE "]}"));
    const json_t *st = plan(s);
    expect_str(st, "phase", "Pending");
    expect_str(st, "startTime", "2026-11-24T05:28:20Z");
    assert_int_equal(s->plan.requeue_after_s, 201);
}

static void test_running_timeout_passed(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:13:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    const json_t *st = plan(s);

    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    assert_int_equal(s->plan.requeue_after_s, TTL);
    expect_str(st, "phase", "Expired");
    expect_str(st, "message", "exceeded its timeout of 300s");
    expect_str(st, "completionTime", NOW_STR);
    expect_str(st, "startTime", "2026-11-24T05:13:20Z");
    const json_t *c = expect_cond(st, "Finished", "True", "Expired");
    expect_contains(c, "message", "exceeded its timeout");
    expect_cond(st, "Ready", "False", "Expired");
    expect_stable(s);
    expect_str(s->plan.status, "phase", "Expired");
}

static void test_timeout_boundary(void **state)
{
    scenario *s = *state;
    /* One second left. */
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:25:01Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    const json_t *st = plan(s);
    expect_str(st, "phase", "Running");
    assert_int_equal(s->plan.requeue_after_s, 2);

    /* None left. */
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:25:00Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    st = plan(s);
    expect_str(st, "phase", "Expired");
}

/* The node is gone and its Pod's status is stale: the status's own startTime still ends
 * the Sandbox. */
static void test_timeout_from_status_when_pod_is_stale(void **state)
{
    scenario *s = *state;
    set_old_status(s, jsonf("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:13:20Z\"}"));
    set_pod(s, pod_new("{\"phase\": \"Running\", \"conditions\": [" SCHEDULED_TRUE "]}"));
    const json_t *st = plan(s);
    expect_str(st, "phase", "Expired");
    expect_cond(st, "Finished", "True", "Expired");
}

static void test_zero_timeout_never_expires(void **state)
{
    scenario *s = *state;
    s->view.timeout_s = 0;
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:13:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    const json_t *st = plan(s);
    expect_str(st, "phase", "Running");
    assert_int_equal(s->plan.requeue_after_s, 0);
}

static void test_pod_succeeded(void **state)
{
    scenario *s = *state;
    /* A sidecar listed first must not be taken for the sandbox's container. */
    set_pod(s, pod_new("{\"phase\": \"Succeeded\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE "],"
                       " \"containerStatuses\": ["
                       "  {\"name\": \"helper\", \"state\": {\"terminated\": {\"exitCode\": 7,"
                       "   \"reason\": \"Error\", \"finishedAt\": \"2026-11-24T05:29:00Z\"}}},"
                       "  {\"name\": \"sandbox\", \"state\": {\"terminated\": {\"exitCode\": 0,"
                       "   \"reason\": \"Completed\", \"finishedAt\": \"2026-11-24T05:29:50Z\"}}}"
                       "]}"));
    const json_t *st = plan(s);

    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    assert_int_equal(s->plan.requeue_after_s, TTL);
    expect_str(st, "phase", "Succeeded");
    expect_int(st, "exitCode", 0);
    expect_str(st, "completionTime", "2026-11-24T05:29:50Z");
    expect_str(st, "startTime", "2026-11-24T05:28:20Z");
    expect_cond(st, "Finished", "True", "Succeeded");
    expect_cond(st, "Ready", "False", "Succeeded");
    expect_stable(s);
    /* The TTL counts from completionTime, not from when the operator saw it. */
    assert_int_equal(s->plan.requeue_after_s, TTL - 10);
}

static void test_pod_failed_exit_code(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE "],"
                       " \"containerStatuses\": [{\"name\": \"sandbox\", \"state\":"
                       " {\"terminated\": {\"exitCode\": 3, \"reason\": \"Error\","
                       " \"message\": \"assertion failed: x > 0\","
                       " \"finishedAt\": \"2026-11-24T05:29:30Z\"}}}]}"));
    const json_t *st = plan(s);

    expect_str(st, "phase", "Failed");
    expect_int(st, "exitCode", 3);
    expect_str(st, "message", "assertion failed: x > 0");
    expect_str(st, "completionTime", "2026-11-24T05:29:30Z");
    const json_t *c = expect_cond(st, "Finished", "True", "Failed");
    expect_str(c, "message", "assertion failed: x > 0");
    assert_int_equal(s->plan.requeue_after_s, TTL);
    expect_stable(s);
}

static void test_pod_failed_reason_only(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"containerStatuses\": [{\"name\": \"sandbox\","
                       " \"state\": {\"terminated\": {\"exitCode\": 137,"
                       " \"reason\": \"OOMKilled\"}}}]}"));
    const json_t *st = plan(s);
    expect_str(st, "phase", "Failed");
    expect_int(st, "exitCode", 137);
    expect_str(st, "message", "OOMKilled");
    /* No finishedAt: now. */
    expect_str(st, "completionTime", NOW_STR);
}

/* A Pod without a container named "sandbox" (an older operator's Pod): its first container
 * speaks for it. */
static void test_pod_first_container_when_none_named_sandbox(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"containerStatuses\": [{\"name\": \"main\","
                       " \"state\": {\"terminated\": {\"exitCode\": 2, \"reason\": \"Error\","
                       " \"finishedAt\": \"2026-11-24T05:29:50Z\"}}},"
                       " {\"name\": \"other\", \"state\": {\"terminated\": {\"exitCode\": 9}}}]}"));
    const json_t *st = plan(s);
    expect_str(st, "phase", "Failed");
    expect_int(st, "exitCode", 2);
    expect_str(st, "message", "Error");
    expect_str(st, "completionTime", "2026-11-24T05:29:50Z");
}

static void test_pod_evicted(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"reason\": \"Evicted\","
                       " \"message\": \"The node was low on resource: memory.\"}"));
    const json_t *st = plan(s);
    expect_str(st, "phase", "Failed");
    expect_str(st, "message", "The node was low on resource: memory.");
    expect_absent(st, "exitCode");
    expect_str(st, "completionTime", NOW_STR);

    set_pod(s, pod_new("{\"phase\": \"Failed\", \"reason\": \"Evicted\"}"));
    st = plan(s);
    expect_str(st, "message", "Evicted");

    set_pod(s, pod_new("{\"phase\": \"Failed\"}"));
    st = plan(s);
    expect_str(st, "message", "the pod failed");
}

static void test_pod_deadline_exceeded(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"reason\": \"DeadlineExceeded\","
                       " \"message\": \"Pod was active on the node longer than the specified"
                       " deadline\", \"startTime\": \"2026-11-24T05:24:50Z\"}"));
    const json_t *st = plan(s);
    expect_str(st, "phase", "Expired");
    expect_str(st, "message", "exceeded its timeout of 300s");
    expect_str(st, "completionTime", NOW_STR);
    expect_absent(st, "exitCode");
    expect_cond(st, "Finished", "True", "Expired");
    expect_cond(st, "Ready", "False", "Expired");
    assert_int_equal(s->plan.requeue_after_s, TTL);
    expect_stable(s);
}

/* ---- the node's isolation report ---- */

static void test_isolation_report_accepted(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT, GVISOR_REPORT);
    const json_t *st = plan(s);

    expect_str(st, "isolation.runtime", "gvisor");
    expect_str(st, "isolation.handler", "runsc");
    expect_str(st, "isolation.reason", "no usable hypervisor");
    assert_true(json_is_true(kobj_get(st, "isolation.verified")));
    const json_t *c = expect_cond(st, "Isolated", "True", "NodeReported");
    expect_contains(c, "message", "gvisor");
    expect_contains(c, "message", "runsc");
    expect_contains(c, "message", "no usable hypervisor");
    expect_stable(s);
}

static void test_isolation_report_kata(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Pending\", \"conditions\": [" SCHEDULED_TRUE "]}"));
    annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT,
             "{\"runtime\": \"kata\", \"handler\": \"kata-clh\", \"verified\": true}");
    const json_t *st = plan(s);
    expect_str(st, "isolation.runtime", "kata");
    expect_str(st, "isolation.handler", "kata-clh");
    expect_str(st, "isolation.reason", "");
    expect_cond(st, "Isolated", "True", "NodeReported");
}

/* A runtime that is no isolation (what a pod on runc would be reported as) makes Isolated
 * False: status never claims an isolation that did not run. */
static void test_isolation_report_not_isolated(void **state)
{
    static const char *const reports[] = {
        "{\"runtime\": \"runc\", \"handler\": \"runc\", \"verified\": true}",
        "{\"runtime\": \"GVISOR\", \"verified\": true}",
    };
    scenario *s = *state;
    for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++) {
        set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                           " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
        annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT, reports[i]);
        const json_t *st = plan(s);
        expect_str(st, "isolation.runtime", "");
        assert_false(kobj_bool(st, "isolation.verified", true));
        expect_cond(st, "Isolated", "False", "NotIsolated");
        expect_contains(st, "isolation.reason", "not an isolation Moat provides");
    }
}

/* The report must be of the isolation the Sandbox asked for: VM asked and gVisor reported
 * (or GVisor asked and Kata reported) is never Isolated True, whatever "verified" says. */
static void test_isolation_report_contradicts_spec(void **state)
{
    static const struct {
        const char *wanted, *report, *runtime;
    } cases[] = {
        {"VM", GVISOR_REPORT, "gvisor"},
        {"GVisor", "{\"runtime\": \"kata\", \"handler\": \"kata-clh\", \"verified\": true}",
         "kata"},
    };
    scenario *s = *state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        s->view.isolation = cases[i].wanted;
        set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                           " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
        annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT, cases[i].report);
        const json_t *st = plan(s);
        expect_str(st, "isolation.runtime", cases[i].runtime);
        assert_false(kobj_bool(st, "isolation.verified", true));
        const json_t *c = expect_cond(st, "Isolated", "False", "IsolationMismatch");
        expect_contains(c, "message", cases[i].wanted);
        expect_stable(s);
    }
    /* ... and Auto takes either. */
    s->view.isolation = "Auto";
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT, GVISOR_REPORT);
    expect_cond(plan(s), "Isolated", "True", "NodeReported");
}

/* A reason longer than the CRD's 1,024 characters, or a handler that is no handler name,
 * would fail every status write (and so the timeout and the TTL): cut and dropped. */
static void test_isolation_report_bounded(void **state)
{
    scenario *s = *state;
    char *reason = utf8_text(3, 5000);
    char *report = NULL;
    assert_true(asprintf(&report,
                         "{\"runtime\": \"gvisor\", \"handler\": \"%0300d\", \"reason\": \"%s\","
                         " \"verified\": true}",
                         7, reason) > 0);
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT, report);
    const json_t *st = plan(s); /* check_schema: within every maxLength, valid UTF-8 */
    assert_true(strlen(kobj_str(st, "isolation.reason")) <= 1024);
    assert_true(strlen(kobj_str(st, "isolation.reason")) > 1000);
    expect_str(st, "isolation.handler", "");
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    annotate(
        s->pod, MOAT_ANNOTATION_ISOLATION_REPORT,
        "{\"runtime\": \"gvisor\", \"handler\": \"runsc\\nX-Injected: 1\", \"verified\": true}");
    expect_str(plan(s), "isolation.handler", "");
    free(report);
    free(reason);
}

/* A Pod the operator did not make (the controller says why): the Sandbox fails, and
 * nothing of that Pod reaches its status. */
static void test_untrusted_pod(void **state)
{
    scenario *s = *state;
    s->view.isolation = "VM";
    s->view.untrusted_pod = "pod ns/sb exists and was not made by moat-operator";
    set_pod(s, NULL);
    const json_t *st = plan(s);
    expect_str(st, "phase", "Failed");
    expect_contains(st, "message", "not made by moat-operator");
    expect_str(st, "isolation.runtime", "");
    assert_false(kobj_bool(st, "isolation.verified", true));
    expect_cond(st, "Isolated", "False", "UntrustedPod");
    expect_cond(st, "Finished", "True", "UntrustedPod");
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    expect_stable(s);
}

/* Fields of the wrong type in an accepted report are dropped, not copied. */
static void test_isolation_report_wrong_field_types(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Pending\"}"));
    annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT,
             "{\"runtime\": \"gvisor\", \"handler\": 7, \"reason\": [], \"verified\": \"yes\"}");
    const json_t *st = plan(s);
    expect_str(st, "isolation.runtime", "gvisor");
    expect_str(st, "isolation.handler", "");
    expect_str(st, "isolation.reason", "");
    assert_true(json_is_false(kobj_get(st, "isolation.verified")));
}

static void test_isolation_report_refused(void **state)
{
    static const char *const reports[] = {
        "not json at all",
        "",
        "null",
        "[\"gvisor\"]",
        "\"gvisor\"",
        "{\"runtime\": \"\", \"verified\": true}",
        "{\"runtime\": 1, \"verified\": true}",
        "{\"handler\": \"runsc\", \"verified\": true}",
        "{\"runtime\": \"gvisor\"", /* cut short */
    };
    scenario *s = *state;
    for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++) {
        set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                           " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
        annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT, reports[i]);
        const json_t *st = plan(s);
        if (strcmp(kobj_str(st, "isolation.runtime") ?: "?", "") != 0)
            fail_msg("report %s was accepted", reports[i]);
        expect_isolation_unknown(st);
        expect_str(st, "phase", "Running");
    }

    /* An annotation that is not a string, and annotations that are not an object. */
    json_object_set_new(json_object_get(json_object_get(s->pod, "metadata"), "annotations"),
                        MOAT_ANNOTATION_ISOLATION_REPORT, json_integer(1));
    expect_isolation_unknown(plan(s));
    json_object_set_new(json_object_get(s->pod, "metadata"), "annotations",
                        json_string(GVISOR_REPORT));
    expect_isolation_unknown(plan(s));
}

/* The report's runtime wins over whatever the old status said. */
static void test_isolation_only_from_report(void **state)
{
    scenario *s = *state;
    set_old_status(s, jsonf("{\"phase\": \"Pending\", \"isolation\": {\"runtime\": \"kata\","
                            " \"handler\": \"kata-clh\", \"reason\": \"guess\","
                            " \"verified\": true}}"));
    set_pod(s, pod_new("{\"phase\": \"Pending\", \"conditions\": [" SCHEDULED_TRUE "]}"));
    expect_isolation_unknown(plan(s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_new_sandbox_creates_pod),
        T(test_new_sandbox_observed_generation_follows_metadata),
        T(test_vm_without_hypervisor),
        T(test_vm_gpus_without_passthrough_node),
        T(test_vm_with_hypervisor_creates_pod),
        T(test_hypervisor_appears),
        T(test_spec_error),
        T(test_spec_error_zero_ttl_still_requeues),
        T(test_spec_error_with_pod),
        T(test_pod_scheduled_pending_image_pull),
        T(test_pod_waiting_reason_without_message),
        T(test_pod_unschedulable),
        T(test_pod_not_yet_seen_by_scheduler),
        T(test_pod_running_ready),
        T(test_pod_running_not_ready),
        T(test_running_clears_old_message),
        T(test_start_time_kept_from_status),
        T(test_start_time_far_ahead_is_now),
        T(test_pending_pod_with_start_time_requeues),
        T(test_running_timeout_passed),
        T(test_timeout_boundary),
        T(test_timeout_from_status_when_pod_is_stale),
        T(test_zero_timeout_never_expires),
        T(test_pod_succeeded),
        T(test_pod_failed_exit_code),
        T(test_pod_failed_reason_only),
        T(test_pod_first_container_when_none_named_sandbox),
        T(test_pod_evicted),
        T(test_pod_deadline_exceeded),
        T(test_isolation_report_accepted),
        T(test_isolation_report_kata),
        T(test_isolation_report_wrong_field_types),
        T(test_isolation_report_refused),
        T(test_isolation_report_not_isolated),
        T(test_isolation_report_contradicts_spec),
        T(test_isolation_report_bounded),
        T(test_untrusted_pod),
        T(test_isolation_only_from_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
