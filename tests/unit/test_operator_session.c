/* A Session's status (operator/status.c): its limits, its last activity from the node
 * agent's annotation, the idle end and the stop of its Pod, and the Finished reasons that
 * say what ended it. Over the status tests' fixture. */
#include "operator_status_fixture.h"

#define IDLE    60
#define STARTED "2026-11-24T05:20:00Z" /* NOW - 600 */

static void session_view(scenario *s)
{
    s->view.session = true;
    s->view.idle_s = IDLE;
    s->view.timeout_s = 3600;
}

static json_t *running_pod(void)
{
    return pod_new(
        "{\"phase\": \"Running\", \"startTime\": \"%s\", \"conditions\": [%s, %s],"
        " \"containerStatuses\": [{\"name\": \"sandbox\", \"state\": {\"running\": {}}}]}",
        STARTED, SCHEDULED_TRUE, READY_TRUE);
}

static const char *reason_of(const json_t *st, const char *type)
{
    return kobj_str(kobj_condition(st, "conditions", type), "reason");
}

static void test_active_session_runs_and_shows_its_limits(void **state)
{
    scenario *s = *state;
    session_view(s);
    json_t *pod = running_pod();
    annotate(pod, MOAT_ANNOTATION_LAST_ACTIVITY, "2026-11-24T05:29:30Z"); /* 30 s ago */
    set_pod(s, pod);
    const json_t *st = plan_raw(s);
    assert_string_equal(kobj_str(st, "phase"), "Running");
    assert_string_equal(kobj_str(st, "lastActivityTime"), "2026-11-24T05:29:30Z");
    assert_string_equal(kobj_str(st, "limits.timeout"), "1h");
    assert_string_equal(kobj_str(st, "limits.idleTimeout"), "1m");
    assert_string_equal(reason_of(st, "Ready"), "Running");
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
    /* looked at again when it would be idle: 30 s left, and a second */
    assert_int_equal(s->plan.requeue_after_s, 31);
}

static void test_idle_session_ends_and_its_pod_is_stopped(void **state)
{
    scenario *s = *state;
    session_view(s);
    json_t *pod = running_pod();
    annotate(pod, MOAT_ANNOTATION_LAST_ACTIVITY, "2026-11-24T05:29:00Z"); /* 60 s ago */
    set_pod(s, pod);
    const json_t *st = plan_raw(s);
    assert_string_equal(kobj_str(st, "phase"), "Expired");
    assert_string_equal(reason_of(st, "Finished"), "IdleTimeout");
    assert_non_null(strstr(kobj_str(st, "message"), "idle for its idleTimeout of 1m"));
    assert_non_null(strstr(kobj_str(st, "message"), "since 2026-11-24T05:29:00Z"));
    assert_string_equal(kobj_str(st, "completionTime"), NOW_STR);
    assert_int_equal(s->plan.action, SANDBOX_ACTION_STOP_POD);
    assert_int_equal(s->plan.stop_deadline_s, 600); /* now, counted from the Pod's start */
    /* its pod still runs on the next pass: stopped again, the status unchanged */
    feed_back(s);
    s->facts.now_s += 5;
    st = plan_raw(s);
    assert_string_equal(reason_of(st, "Finished"), "IdleTimeout");
    assert_int_equal(s->plan.action, SANDBOX_ACTION_STOP_POD);
    assert_int_equal(s->plan.stop_deadline_s, 605);
    /* once kubelet stopped it, only the TTL runs */
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"reason\": \"DeadlineExceeded\","
                       " \"startTime\": \"%s\"}",
                       STARTED));
    st = plan_raw(s);
    assert_string_equal(reason_of(st, "Finished"), "IdleTimeout");
    assert_int_equal(s->plan.action, SANDBOX_ACTION_NONE);
}

static void test_no_activity_counts_from_the_start(void **state)
{
    scenario *s = *state;
    session_view(s);
    s->view.idle_s = 600; /* exactly as long as it has run */
    set_pod(s, running_pod());
    const json_t *st = plan_raw(s);
    assert_string_equal(kobj_str(st, "lastActivityTime"), STARTED);
    assert_string_equal(reason_of(st, "Finished"), "IdleTimeout");
}

static void test_last_activity_never_moves_back_nor_ahead(void **state)
{
    scenario *s = *state;
    session_view(s);
    json_t *pod = running_pod();
    annotate(pod, MOAT_ANNOTATION_LAST_ACTIVITY, "2026-11-24T05:29:50Z");
    set_pod(s, pod);
    plan_raw(s);
    feed_back(s);
    /* an older annotation (a lagging agent) does not take it back */
    annotate(s->pod, MOAT_ANNOTATION_LAST_ACTIVITY, "2026-11-24T05:25:00Z");
    const json_t *st = plan_raw(s);
    assert_string_equal(kobj_str(st, "lastActivityTime"), "2026-11-24T05:29:50Z");
    assert_string_equal(kobj_str(st, "phase"), "Running");
    /* a time far in the future (a node's clock gone wrong) is not taken */
    annotate(s->pod, MOAT_ANNOTATION_LAST_ACTIVITY, "2027-01-01T00:00:00Z");
    st = plan_raw(s);
    assert_string_equal(kobj_str(st, "lastActivityTime"), "2026-11-24T05:29:50Z");
}

static void test_session_ends_by_timeout_and_exit(void **state)
{
    scenario *s = *state;
    session_view(s);
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"reason\": \"DeadlineExceeded\","
                       " \"startTime\": \"%s\"}",
                       STARTED));
    const json_t *st = plan_raw(s);
    assert_string_equal(kobj_str(st, "phase"), "Expired");
    assert_string_equal(reason_of(st, "Finished"), "Timeout");

    set_old_status(s, json_object());
    set_pod(s, pod_new("{\"phase\": \"Succeeded\", \"startTime\": \"%s\", \"containerStatuses\":"
                       " [{\"name\": \"sandbox\", \"state\": {\"terminated\": {\"exitCode\": 0,"
                       " \"finishedAt\": \"2026-11-24T05:29:00Z\"}}}]}",
                       STARTED));
    st = plan_raw(s);
    assert_string_equal(kobj_str(st, "phase"), "Succeeded");
    assert_string_equal(reason_of(st, "Finished"), "Exited");
}

static void test_run_keeps_its_reasons_and_has_no_idle_limit(void **state)
{
    scenario *s = *state; /* a Run: the fixture's view */
    set_pod(s, pod_new("{\"phase\": \"Failed\", \"reason\": \"DeadlineExceeded\","
                       " \"startTime\": \"%s\"}",
                       STARTED));
    const json_t *st = plan_raw(s);
    assert_string_equal(reason_of(st, "Finished"), "Expired");
    set_old_status(s, json_object());
    set_pod(s, running_pod());
    st = plan_raw(s);
    assert_string_equal(kobj_str(st, "limits.timeout"), "5m");
    assert_null(kobj_get(st, "limits.idleTimeout"));
    assert_null(kobj_get(st, "lastActivityTime"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_active_session_runs_and_shows_its_limits, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idle_session_ends_and_its_pod_is_stopped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_activity_counts_from_the_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_activity_never_moves_back_nor_ahead, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session_ends_by_timeout_and_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_keeps_its_reasons_and_has_no_idle_limit, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
