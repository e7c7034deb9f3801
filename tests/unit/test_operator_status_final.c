/* operator/status.c: final phases, the Pod's disappearance, conditions' transition times,
 * sandbox_status_changed, RFC 3339 times, and inputs from outside that make no sense or run
 * long. (test_operator_status.c has the Sandbox's way to them.) */
#include "operator_status_fixture.h"

/* ---- final phases ---- */

/* Puts s into Succeeded, finished at NOW - ago, with the Pod gone from the cache. */
static void make_succeeded(scenario *s, int64_t ago)
{
    char finished[32];
    moat_rfc3339_format(finished, sizeof(finished), NOW - ago);
    set_pod(s, pod_new("{\"phase\": \"Succeeded\", \"startTime\": \"2026-11-24T04:30:00Z\","
                       " \"conditions\": [" SCHEDULED_TRUE "],"
                       " \"containerStatuses\": [{\"name\": \"sandbox\", \"state\":"
                       " {\"terminated\": {\"exitCode\": 0, \"finishedAt\": \"%s\"}}}]}",
                       finished));
    plan(s);
    expect_str(s->plan.status, "phase", "Succeeded");
    feed_back(s);
}

static void test_final_ttl_running(void **state)
{
    scenario *s = *state;
    s->view.ttl_s = 60;
    make_succeeded(s, 30);
    expect_str(kobj_get(s->sandbox, "status"), "completionTime", "2026-11-24T05:29:30Z");
    set_pod(s, NULL);
    const json_t *st = plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    assert_int_equal(s->plan.requeue_after_s, 30);
    if (sandbox_status_changed(kobj_get(s->sandbox, "status"), st)) {
        print_json("before", kobj_get(s->sandbox, "status"));
        print_json("after", st);
        fail_with("a final status changed");
    }
}

static void test_final_ttl_over(void **state)
{
    scenario *s = *state;
    s->view.ttl_s = 60;
    make_succeeded(s, 120);
    set_pod(s, NULL);
    const json_t *st = plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_DELETE_SANDBOX);
    assert_int_equal(s->plan.requeue_after_s, 0);
    expect_str(st, "phase", "Succeeded");

    /* Exactly at the end counts as over. */
    s->facts.now_s = NOW - 120 + 60;
    plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_DELETE_SANDBOX);
}

/* A final phase never changes, whatever the Pod (still in the cache) says now. */
static void test_final_phase_never_changes(void **state)
{
    scenario *s = *state;
    make_succeeded(s, 30);
    const json_t *old = kobj_get(s->sandbox, "status");
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"reason\": \"DeadlineExceeded\"}"));
    const json_t *st = plan(s);
    expect_str(st, "phase", "Succeeded");
    expect_int(st, "exitCode", 0);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    if (sandbox_status_changed(old, st)) {
        print_json("before", kobj_get(s->sandbox, "status"));
        print_json("after", st);
        fail_with("a final status changed");
    }

    /* Nor does a spec error found later. */
    s->view.spec_error = "spec: missing";
    st = plan(s);
    expect_str(st, "phase", "Succeeded");
    assert_false(sandbox_status_changed(old, st));

    /* Nor a lost hypervisor. */
    s->view.spec_error = NULL;
    s->view.wants_vm = true;
    s->facts.hypervisor_available = false;
    set_pod(s, NULL);
    st = plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    assert_false(sandbox_status_changed(old, st));
}

/* An old final status without a usable completionTime: the TTL starts now. */
static void test_final_without_completion_time(void **state)
{
    scenario *s = *state;
    set_old_status(s, jsonf("{\"phase\": \"Expired\", \"completionTime\": \"yesterday\"}"));
    const json_t *st = plan_raw(s);
    expect_str(st, "phase", "Expired");
    expect_str(st, "completionTime", NOW_STR);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    assert_int_equal(s->plan.requeue_after_s, TTL);
}

static void test_final_late_isolation_report(void **state)
{
    scenario *s = *state;
    /* Failed before the node agent wrote its report. */
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE "],"
                       " \"containerStatuses\": [{\"name\": \"sandbox\", \"state\":"
                       " {\"terminated\": {\"exitCode\": 3, \"message\": \"boom\","
                       " \"finishedAt\": \"2026-11-24T05:29:30Z\"}}}]}"));
    plan(s);
    expect_isolation_unknown(s->plan.status);
    feed_back(s);
    json_t *old = json_deep_copy(kobj_get(s->sandbox, "status"));

    annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT, GVISOR_REPORT);
    s->facts.now_s = NOW + 60;
    const json_t *st = plan(s);
    expect_str(st, "isolation.runtime", "gvisor");
    expect_str(st, "isolation.handler", "runsc");
    assert_true(kobj_bool(st, "isolation.verified", false));
    expect_cond(st, "Isolated", "True", "NodeReported");
    expect_cond_time(st, "Isolated", "2026-11-24T05:31:00Z");
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    assert_int_equal(s->plan.requeue_after_s, TTL - 90);

    /* Nothing else moved: the same status with the old isolation and Isolated condition. */
    json_t *rest = json_deep_copy(st), *want = json_deep_copy(old);
    json_object_del(rest, "isolation");
    json_object_del(want, "isolation");
    const char *types[] = {"Scheduled", "Ready", "Finished"};
    for (size_t i = 0; i < 3; i++)
        assert_true(json_equal((json_t *)find_condition(old, types[i]),
                               (json_t *)find_condition(st, types[i])));
    json_object_del(rest, "conditions");
    json_object_del(want, "conditions");
    if (!json_equal(rest, want)) {
        print_json("before", want);
        print_json("after", rest);
        fail_with("more than isolation changed");
    }
    json_decref(rest);
    json_decref(want);
    json_decref(old);

    /* Once verified, the report is not looked at again. */
    expect_stable(s);
}

/* ---- the Pod disappears ---- */

static void test_pod_deleted_while_running(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:29:10Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    plan(s);
    feed_back(s);
    set_pod(s, NULL);
    const json_t *st = plan(s);

    /* Never a second Pod for the same run. */
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    assert_int_equal(s->plan.requeue_after_s, TTL);
    expect_str(st, "phase", "Failed");
    expect_contains(st, "message", "deleted while it ran");
    expect_str(st, "completionTime", NOW_STR);
    expect_str(st, "startTime", "2026-11-24T05:29:10Z");
    expect_cond(st, "Finished", "True", "PodDeleted");
    expect_cond(st, "Ready", "False", "PodDeleted");
    expect_cond(st, "Isolated", "Unknown", NULL);
    expect_stable(s);
}

static void test_pod_deleted_after_verified_report(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:29:10Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT, GVISOR_REPORT);
    plan(s);
    feed_back(s);
    set_pod(s, NULL);
    const json_t *st = plan(s);
    expect_str(st, "phase", "Failed");
    expect_cond(st, "Isolated", "True", NULL);
    /* What the node reported stays. */
    expect_str(st, "isolation.runtime", "gvisor");
    assert_true(kobj_bool(st, "isolation.verified", false));
}

/* A Pending Sandbox whose Pod never started gets a new one. */
static void test_pod_deleted_before_start(void **state)
{
    scenario *s = *state;
    set_pod(s, pod_new("{\"phase\": \"Pending\", \"conditions\": [" SCHEDULED_TRUE "]}"));
    plan(s);
    feed_back(s);
    set_pod(s, NULL);
    const json_t *st = plan(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_CREATE_POD);
    expect_str(st, "phase", "Pending");
}

/* ---- lastTransitionTime ---- */

static void test_transition_times(void **state)
{
    scenario *s = *state;
    plan(s);
    feed_back(s);

    /* Nothing flipped: every time stays, and there is nothing to write. */
    s->facts.now_s = NOW + 60;
    const json_t *st = plan(s);
    const char *types[] = {"Scheduled", "Ready", "Isolated", "Finished"};
    for (size_t i = 0; i < 4; i++)
        expect_cond_time(st, types[i], NOW_STR);
    assert_false(sandbox_status_changed(kobj_get(s->sandbox, "status"), st));
    feed_back(s);

    /* Scheduled flips; the others keep their status (Ready's reason changes, not its
     * status), so they keep their time. */
    set_pod(s, pod_new("{\"phase\": \"Pending\", \"conditions\": [" SCHEDULED_TRUE "]}"));
    s->facts.now_s = NOW + 120;
    st = plan(s);
    expect_cond(st, "Scheduled", "True", NULL);
    expect_cond_time(st, "Scheduled", "2026-11-24T05:32:00Z");
    expect_cond(st, "Ready", "False", "Pending");
    expect_cond_time(st, "Ready", NOW_STR);
    expect_cond_time(st, "Isolated", NOW_STR);
    expect_cond_time(st, "Finished", NOW_STR);
    feed_back(s);

    /* Ready flips. */
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:32:00Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    s->facts.now_s = NOW + 180;
    st = plan(s);
    expect_cond_time(st, "Ready", "2026-11-24T05:33:00Z");
    expect_cond_time(st, "Scheduled", "2026-11-24T05:32:00Z");
    expect_cond_time(st, "Finished", NOW_STR);
    feed_back(s);

    /* Later with nothing new: nothing to write. */
    s->facts.now_s = NOW + 200;
    st = plan(s);
    assert_false(sandbox_status_changed(kobj_get(s->sandbox, "status"), st));

    /* Ready flips back: a new time again. */
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:32:00Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_FALSE "]}"));
    s->facts.now_s = NOW + 240;
    st = plan(s);
    expect_cond(st, "Ready", "False", NULL);
    expect_cond_time(st, "Ready", "2026-11-24T05:34:00Z");
}

/* An old condition with a broken time gets a fresh one rather than being copied. */
static void test_transition_time_garbage_replaced(void **state)
{
    scenario *s = *state;
    set_old_status(s, jsonf("{\"phase\": \"Pending\", \"conditions\": [{\"type\": \"Scheduled\","
                            " \"status\": \"False\", \"reason\": \"Pending\","
                            " \"message\": \"\", \"lastTransitionTime\": \"soon\"},"
                            " {\"type\": \"Ready\", \"status\": \"False\","
                            " \"reason\": \"Pending\", \"message\": \"\","
                            " \"lastTransitionTime\": 5}]}"));
    const json_t *st = plan(s);
    expect_cond_time(st, "Scheduled", NOW_STR);
    expect_cond_time(st, "Ready", NOW_STR);
}

/* ---- sandbox_status_changed ---- */

static void test_status_changed(void **state)
{
    (void)state;
    json_t *a = jsonf("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                      " \"isolation\": {\"runtime\": \"gvisor\", \"verified\": true},"
                      " \"conditions\": [{\"type\": \"Ready\", \"status\": \"True\","
                      " \"lastTransitionTime\": \"2026-11-24T05:28:20Z\"}]}");
    /* Same content, keys in another order. */
    json_t *b = jsonf("{\"conditions\": [{\"lastTransitionTime\": \"2026-11-24T05:28:20Z\","
                      " \"status\": \"True\", \"type\": \"Ready\"}],"
                      " \"isolation\": {\"verified\": true, \"runtime\": \"gvisor\"},"
                      " \"startTime\": \"2026-11-24T05:28:20Z\", \"phase\": \"Running\"}");
    assert_false(sandbox_status_changed(a, b));
    assert_false(sandbox_status_changed(a, a));
    assert_false(sandbox_status_changed(NULL, NULL));
    assert_true(sandbox_status_changed(NULL, a));
    assert_true(sandbox_status_changed(a, NULL));

    json_object_set_new(b, "phase", json_string("Expired"));
    assert_true(sandbox_status_changed(a, b));
    json_object_set_new(b, "phase", json_string("Running"));
    assert_false(sandbox_status_changed(a, b));

    json_object_set_new(json_object_get(b, "isolation"), "verified", json_false());
    assert_true(sandbox_status_changed(a, b));
    json_object_set_new(json_object_get(b, "isolation"), "verified", json_true());

    json_object_set_new(json_array_get(json_object_get(b, "conditions"), 0), "lastTransitionTime",
                        json_string("2026-11-24T05:28:21Z"));
    assert_true(sandbox_status_changed(a, b));
    json_object_set_new(json_array_get(json_object_get(b, "conditions"), 0), "lastTransitionTime",
                        json_string("2026-11-24T05:28:20Z"));
    assert_false(sandbox_status_changed(a, b));

    json_object_set_new(b, "exitCode", json_integer(0));
    assert_true(sandbox_status_changed(a, b));
    json_object_del(b, "exitCode");
    json_object_del(b, "startTime");
    assert_true(sandbox_status_changed(a, b));

    json_decref(a);
    json_decref(b);
}

/* ---- RFC 3339 ---- */

static void test_rfc3339(void **state)
{
    (void)state;
    char buf[32];
    assert_int_equal(moat_rfc3339_parse(NOW_STR), NOW);
    assert_int_equal(moat_rfc3339_parse("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(moat_rfc3339_parse("2001-09-09T01:46:40Z"), 1000000000);
    assert_int_equal(moat_rfc3339_parse("2024-02-29T23:59:59Z"), 1709251199);
    moat_rfc3339_format(buf, sizeof(buf), NOW);
    assert_string_equal(buf, NOW_STR);
    moat_rfc3339_format(buf, sizeof(buf), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    moat_rfc3339_format(buf, sizeof(buf), 1709251199);
    assert_string_equal(buf, "2024-02-29T23:59:59Z");

    const int64_t times[] = {0, 1, 59, 86399, 1000000000, NOW, 4102444800, 253402300799};
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        moat_rfc3339_format(buf, sizeof(buf), times[i]);
        assert_int_equal(moat_rfc3339_parse(buf), times[i]);
    }

    /* Fractional seconds are accepted and dropped. */
    assert_int_equal(moat_rfc3339_parse("2026-11-24T05:30:00.5Z"), NOW);
    assert_int_equal(moat_rfc3339_parse("2026-11-24T05:30:00.123456789Z"), NOW);

    /* Only UTC with Z, and nothing after it. */
    const char *bad[] = {
        "2026-11-24T05:30:00+01:00",
        "2026-11-24T05:30:00-05:00",
        "2026-11-24T05:30:00+00:00",
        "2026-11-24T05:30:00.5+01:00",
        "2026-11-24T05:30:00",
        "2026-11-24T05:30:00Zjunk",
        "2026-11-24T05:30:00 Z",
        "2026-11-24",
        "2026-11-24 05:30:00Z",
        "T05:30:00Z",
        "garbage",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (moat_rfc3339_parse(bad[i]) != -1)
            fail_msg("\"%s\" was accepted", bad[i]);
    assert_int_equal(moat_rfc3339_parse(NULL), -1);
}

/* ---- nonsense never crashes ---- */

static void test_sandbox_without_metadata(void **state)
{
    scenario *s = *state;
    json_decref(s->sandbox);
    s->sandbox = json_object();
    const json_t *st = plan_raw(s);
    check_schema(st, 0);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_CREATE_POD);

    json_decref(s->sandbox);
    s->sandbox = jsonf("{\"metadata\": {\"generation\": \"3\"}, \"status\": null}");
    check_schema(plan_raw(s), 0);

    json_decref(s->sandbox);
    s->sandbox = jsonf("[1, 2, 3]");
    check_schema(plan_raw(s), 0);

    json_decref(s->sandbox);
    s->sandbox = NULL;
    check_schema(plan_raw(s), 0);
    s->sandbox = json_object(); /* for teardown */
}

static void test_status_of_wrong_types(void **state)
{
    static const char *const statuses[] = {
        "\"Running\"",
        "[]",
        "42",
        "true",
        "{\"phase\": 7, \"conditions\": \"x\", \"isolation\": \"y\"}",
        "{\"phase\": [\"Succeeded\"], \"conditions\": {\"type\": \"Ready\"}}",
        ("{\"phase\": \"Pending\", \"conditions\": [1, null, \"Ready\", [], {\"type\": 5},"
         " {\"type\": \"Ready\", \"status\": true}]}"),
        "{\"phase\": \"Running\", \"isolation\": {\"verified\": \"yes\"}}",
    };
    scenario *s = *state;
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        set_old_status(s, jsonf("%s", statuses[i]));
        set_pod(s, NULL);
        const json_t *st = plan_raw(s);
        if (s->plan.action != SANDBOX_ACTION_CREATE_POD)
            fail_msg("status %s: no pod created", statuses[i]);
        expect_str(st, "phase", "Pending");
        expect_cond(st, "Scheduled", "False", "Pending");

        set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                           " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
        st = plan_raw(s);
        expect_str(st, "phase", "Running");
        expect_cond(st, "Ready", "True", "Running");
    }

    /* Final phases with broken fields: still final, still on the TTL. */
    set_old_status(s, jsonf("{\"phase\": \"Failed\", \"completionTime\": 12,"
                            " \"conditions\": \"none\", \"isolation\": [] }"));
    set_pod(s, pod_new("{\"phase\": \"Running\"}"));
    annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT, GVISOR_REPORT);
    const json_t *st = plan_raw(s);
    expect_str(st, "phase", "Failed");
    expect_str(st, "completionTime", NOW_STR);
    expect_str(st, "isolation.runtime", "gvisor");
    expect_cond(st, "Isolated", "True", "NodeReported");
    assert_int_equal(s->plan.requeue_after_s, TTL);

    /* A startTime that is not a string does not count as a start. */
    set_old_status(s, jsonf("{\"phase\": \"Running\", \"startTime\": 1795498100}"));
    set_pod(s, NULL);
    plan_raw(s);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_CREATE_POD);
}

static void test_pod_of_wrong_shapes(void **state)
{
    static const char *const pods[] = {
        "{\"phase\": \"Running\", \"containerStatuses\": \"sandbox\", \"conditions\": \"Ready\"}",
        "{\"phase\": \"Running\", \"containerStatuses\": {\"name\": \"sandbox\"},"
        " \"conditions\": {\"type\": \"Ready\", \"status\": \"True\"}}",
        "{\"phase\": \"Pending\", \"containerStatuses\": [1, \"x\", null, [],"
        " {\"name\": 5, \"state\": \"waiting\"}, {\"name\": \"sandbox\", \"state\":"
        " {\"waiting\": {\"reason\": 5, \"message\": []}}}],"
        " \"conditions\": [null, 1, {\"type\": 3}, {\"type\": \"PodScheduled\"}]}",
        "{\"phase\": \"Succeeded\", \"containerStatuses\": [{\"name\": \"sandbox\", \"state\":"
        " {\"terminated\": {\"exitCode\": \"0\", \"finishedAt\": 5, \"message\": 7}}}]}",
        "{\"phase\": \"Failed\", \"reason\": 5, \"message\": [],"
        " \"containerStatuses\": [\"sandbox\"]}",
        "{\"phase\": 5, \"startTime\": 1795498100}",
        "{\"phase\": \"Unknown\", \"startTime\": \"not a time\"}",
        "\"Running\"",
        "[]",
        "null",
    };
    scenario *s = *state;
    for (size_t i = 0; i < sizeof(pods) / sizeof(pods[0]); i++) {
        set_old_status(s, json_object());
        set_pod(s, pod_new("%s", pods[i]));
        const json_t *st = plan_raw(s);
        const char *phase = kobj_str(st, "phase");
        assert_non_null(phase);
        assert_int_equal(json_array_size(kobj_get(st, "conditions")), 4);
        expect_isolation_unknown(st);
    }

    /* A Succeeded Pod without the container's exit code still says 0. */
    set_pod(s, pod_new("{\"phase\": \"Succeeded\", \"containerStatuses\": \"x\"}"));
    const json_t *st = plan_raw(s);
    expect_str(st, "phase", "Succeeded");
    expect_int(st, "exitCode", 0);
    expect_str(st, "completionTime", NOW_STR);

    /* A Failed Pod with a container that is not an object. */
    set_old_status(s, json_object());
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"containerStatuses\": [\"sandbox\"]}"));
    st = plan_raw(s);
    expect_str(st, "phase", "Failed");
    expect_absent(st, "exitCode");
    expect_str(st, "message", "the pod failed");

    /* Pods that are not objects at all. */
    const char *odd[] = {"\"pod\"", "[1]", "3.5"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        set_old_status(s, json_object());
        set_pod(s, jsonf("%s", odd[i]));
        st = plan_raw(s);
        expect_str(st, "phase", "Pending");
        expect_cond(st, "Scheduled", "False", "Pending");
    }
}

/* ---- long text from outside ---- */

/* Termination messages are cut to a cap; the cut text still goes into the status. */
static void test_long_termination_message(void **state)
{
    scenario *s = *state;
    char *long_msg = malloc(10001);
    assert_non_null(long_msg);
    memset(long_msg, 'm', 10000);
    long_msg[10000] = '\0';
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"containerStatuses\": [{\"name\": \"sandbox\","
                       " \"state\": {\"terminated\": {\"exitCode\": 1, \"message\": \"%s\"}}}]}",
                       long_msg));
    free(long_msg);
    const json_t *st = plan(s);
    const char *m = kobj_str(st, "message");
    assert_non_null(m);
    assert_int_equal(strlen(m), 4096);
    assert_int_equal(m[0], 'm');
}

/* Regression test (a bug found and fixed in status.c): text from outside is cut to a fixed buffer
 * with snprintf, which can split a UTF-8 sequence. json_string() then refuses the cut text (returns
 * NULL), so the message is silently not set, and json_pack() fails the same way, so the condition
 * built from it is missing. Each case below is an input the status must survive. */
static void test_cut_text_stays_utf8_termination(void **state)
{
    scenario *s = *state;
    /* 1 + 2 * 3000 bytes: a cut at 4096 bytes falls inside an "é". */
    char *text = utf8_text(1, 6001);
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"containerStatuses\": [{\"name\": \"sandbox\","
                       " \"state\": {\"terminated\": {\"exitCode\": 1, \"message\": \"%s\"}}}]}",
                       text));
    free(text);
    const json_t *st = plan(s);
    expect_str(st, "phase", "Failed");
    /* BUG: status.message is absent (expected: the message, cut at a character boundary). */
    const char *m = kobj_str(st, "message");
    if (!m)
        fail_msg("BUG: a Failed Sandbox lost its termination message (cut inside UTF-8)");
    assert_true(strlen(m) > 4000);
}

static void test_cut_text_stays_utf8_waiting(void **state)
{
    scenario *s = *state;
    /* "ErrImagePull: " is 14 bytes; 14 + 2k puts the 511-byte cut inside an "é". */
    char *text = utf8_text(0, 1000);
    set_pod(s, pod_new("{\"phase\": \"Pending\", \"conditions\": [" SCHEDULED_TRUE "],"
                       " \"containerStatuses\": [{\"name\": \"sandbox\", \"state\":"
                       " {\"waiting\": {\"reason\": \"ErrImagePull\", \"message\": \"%s\"}}}]}",
                       text));
    free(text);
    const json_t *st = plan(s);
    /* BUG: status.message keeps the stale "creating the sandbox's pod" from an earlier pass,
     * or is absent (expected: "ErrImagePull: \u00e9\u00e9...", cut at a character boundary). */
    expect_contains(st, "message", "ErrImagePull: \xc3\xa9");
}

static void test_cut_text_stays_utf8_spec_error(void **state)
{
    scenario *s = *state;
    /* "invalid spec: " is 14 bytes: the same cut as above. */
    char *text = utf8_text(0, 1000);
    s->view.spec_error = text;
    const json_t *st = plan_raw(s);
    s->view.spec_error = NULL;
    free(text);
    expect_str(st, "phase", "Failed");
    /* BUG: Scheduled, Ready and Finished are missing and status.message is absent
     * (expected: all four conditions, Finished True InvalidSpec, a cut message). */
    check_schema(st, GEN);
    expect_cond(st, "Finished", "True", "InvalidSpec");
    expect_contains(st, "message", "invalid spec: \xc3\xa9");
}

static void test_cut_text_stays_utf8_isolation_report(void **state)
{
    scenario *s = *state;
    /* "gvisor (runsc): " is 16 bytes; 16 + 2k puts the 511-byte cut inside an "é".
     * 1000 bytes is within the CRD's 1024 for isolation.reason. */
    char *reason = utf8_text(0, 1000);
    json_t *report = json_pack("{s:s, s:s, s:s, s:b}", "runtime", "gvisor", "handler", "runsc",
                               "reason", reason, "verified", 1);
    free(reason);
    char *text = json_dumps(report, 0);
    json_decref(report);
    set_pod(s, pod_new("{\"phase\": \"Running\", \"startTime\": \"2026-11-24T05:28:20Z\","
                       " \"conditions\": [" SCHEDULED_TRUE ", " READY_TRUE "]}"));
    annotate(s->pod, MOAT_ANNOTATION_ISOLATION_REPORT, text);
    free(text);
    const json_t *st = plan_raw(s);
    expect_str(st, "isolation.runtime", "gvisor");
    /* BUG: the Isolated condition is missing (expected: Isolated True NodeReported). */
    check_schema(st, GEN);
    expect_cond(st, "Isolated", "True", "NodeReported");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_final_ttl_running),
        T(test_final_ttl_over),
        T(test_final_phase_never_changes),
        T(test_final_without_completion_time),
        T(test_final_late_isolation_report),
        T(test_pod_deleted_while_running),
        T(test_pod_deleted_after_verified_report),
        T(test_pod_deleted_before_start),
        T(test_transition_times),
        T(test_transition_time_garbage_replaced),
        T(test_status_changed),
        T(test_rfc3339),
        T(test_sandbox_without_metadata),
        T(test_status_of_wrong_types),
        T(test_pod_of_wrong_shapes),
        T(test_long_termination_message),
        T(test_cut_text_stays_utf8_termination),
        T(test_cut_text_stays_utf8_waiting),
        T(test_cut_text_stays_utf8_spec_error),
        T(test_cut_text_stays_utf8_isolation_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
