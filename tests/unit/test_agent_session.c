/* A Session's activity as the node agent judges it (isolation/agent/session.c), pass by
 * pass, and the activity files it reads (agent_activity_latest, with a real directory
 * written the way moat-cri writes it, cri-shim/activity.c). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "isolation/agent/agent.h"
#include "isolation/agent/session.h"
#include "libmoat/names.h"

#define S 1000000000LL /* ns per second */

/* A pass at now with a CPU sample of usage_ns (the pod's total) taken at now. */
static agent_session_pass at(int64_t now, uint64_t usage_ns, int64_t stream)
{
    return (agent_session_pass){.now_s = now,
                                .idle_s = 40,
                                .stream_start_s = stream,
                                .has_cpu = true,
                                .cpu_ns = now * S,
                                .cpu_usage_ns = usage_ns};
}

static void test_exec_start_is_activity_published_at_once(void **state)
{
    (void)state;
    agent_session s;
    agent_session_init(&s);
    agent_session_pass p = at(1000, 0, -1);
    assert_false(agent_session_observe(&s, &p)); /* nothing yet, first sample */
    p = at(1002, 0, 1001);
    assert_true(agent_session_observe(&s, &p));
    assert_int_equal(s.last_activity_s, 1001);
    agent_session_published(&s, 1002);
    assert_false(agent_session_observe(&s, &p)); /* nothing moved */
}

static void test_writes_paced_by_a_quarter_of_idle(void **state)
{
    (void)state;
    agent_session s;
    agent_session_init(&s);
    agent_session_pass p = at(1000, 0, 1000);
    assert_true(agent_session_observe(&s, &p));
    agent_session_published(&s, 1000);
    /* activity every 2 s; idle 40 s: one write per 10 s, not one per pass */
    int writes = 0;
    for (int64_t t = 1002; t <= 1040; t += 2) {
        p = at(t, 0, t);
        if (agent_session_observe(&s, &p)) {
            writes++;
            assert_true(t - s.published_at_s >= 10);
            agent_session_published(&s, t);
        }
    }
    assert_int_equal(writes, 4); /* at 1010, 1020, 1030, 1040 */
    assert_int_equal(s.published_s, 1040);
}

static void test_cpu_at_one_percent_is_activity_below_is_not(void **state)
{
    (void)state;
    agent_session s;
    agent_session_init(&s);
    agent_session_pass p = at(1000, 5 * S, -1);
    assert_false(agent_session_observe(&s, &p));
    /* 10 s at 0.9% of a CPU: 90 ms of CPU */
    p = at(1010, 5 * S + 90000000, -1);
    assert_false(agent_session_observe(&s, &p));
    assert_int_equal(s.last_activity_s, -1);
    /* the next 10 s at exactly 1%: 100 ms */
    p = at(1020, 5 * S + 190000000, -1);
    assert_true(agent_session_observe(&s, &p));
    assert_int_equal(s.last_activity_s, 1020);
}

static void test_busy_keeps_moving_idle_stops(void **state)
{
    (void)state;
    agent_session s;
    agent_session_init(&s);
    uint64_t cpu = 0;
    agent_session_pass p = at(0, cpu, 0); /* the exec start of a long build */
    assert_true(agent_session_observe(&s, &p));
    agent_session_published(&s, 0);
    for (int64_t t = 2; t <= 120; t += 2) { /* the build: a whole CPU for 2 minutes */
        cpu += 2 * S;
        p = at(t, cpu, 0);
        if (agent_session_observe(&s, &p))
            agent_session_published(&s, t);
        assert_true(s.published_s >= t - 12); /* never more than idle/4 and a pass behind */
    }
    for (int64_t t = 122; t <= 300; t += 2) { /* then it waits: no CPU */
        p = at(t, cpu, 0);
        if (agent_session_observe(&s, &p))
            agent_session_published(&s, t);
    }
    assert_int_equal(s.last_activity_s, 120);
    assert_int_equal(s.published_s, 120);
}

static void test_counter_going_back_starts_over(void **state)
{
    (void)state;
    agent_session s;
    agent_session_init(&s);
    agent_session_pass p = at(1000, 50 * S, -1);
    agent_session_observe(&s, &p);
    p = at(1010, 1 * S, -1); /* a new cgroup: no negative use, no activity */
    assert_false(agent_session_observe(&s, &p));
    p = at(1020, 1 * S + S, -1); /* 10% from there */
    assert_true(agent_session_observe(&s, &p));
    assert_int_equal(s.last_activity_s, 1020);
}

static void touch(const char *dir, const char *name, time_t when)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    struct timespec ts[2] = {{when, 0}, {when, 0}};
    assert_int_equal(futimens(fd, ts), 0);
    close(fd);
}

static void test_activity_files_of_a_sandbox_and_its_containers(void **state)
{
    (void)state;
    char dir[] = "/tmp/moat-activity-XXXXXX";
    assert_non_null(mkdtemp(dir));
    touch(dir, "sb1", 1000);
    touch(dir, "c1", 1500); /* sb1's container */
    touch(dir, "c2", 2000); /* another pod's */
    cri_container items[] = {{"c1", "sb1"}, {"c2", "sb2"}, {"c3", "sb1"}};
    cri_container_list l = {items, 3};
    assert_int_equal(agent_activity_latest(dir, "sb1", &l), 1500);
    assert_int_equal(agent_activity_latest(dir, "sb2", &l), 2000);
    assert_int_equal(agent_activity_latest(dir, "sb3", &l), -1);
    assert_int_equal(agent_activity_latest("/nonexistent", "sb1", &l), -1);
    /* an ID that is no file name is never looked up outside the directory */
    cri_container bad[] = {{"../etc", "sb9"}};
    cri_container_list lb = {bad, 1};
    assert_int_equal(agent_activity_latest(dir, "sb9", &lb), -1);
    /* the patch: the time, with the uid as precondition */
    json_t *patch = agent_activity_patch("u-1", 1500);
    assert_non_null(patch);
    if (!patch)
        return;
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(patch, "metadata"), "uid")), "u-1");
    json_t *ann = json_object_get(json_object_get(patch, "metadata"), "annotations");
    assert_string_equal(json_string_value(json_object_get(ann, MOAT_ANNOTATION_LAST_ACTIVITY)),
                        "1970-01-01T00:25:00Z");
    json_decref(patch);
    static const char *const names[] = {"sb1", "c1", "c2"};
    char path[512];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_start_is_activity_published_at_once),
        cmocka_unit_test(test_writes_paced_by_a_quarter_of_idle),
        cmocka_unit_test(test_cpu_at_one_percent_is_activity_below_is_not),
        cmocka_unit_test(test_busy_keeps_moving_idle_stops),
        cmocka_unit_test(test_counter_going_back_starts_over),
        cmocka_unit_test(test_activity_files_of_a_sandbox_and_its_containers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
