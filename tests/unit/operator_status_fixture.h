/* What the two test programs of operator/status.c share (test_operator_status.c: a new
 * Sandbox, its Pod, the node's isolation report; test_operator_status_final.c: final phases,
 * the Pod's disappearance, condition times, and inputs that make no sense): building
 * objects, one reconcile's inputs and output, and checking that output. Functions are
 * static inline: each program uses some of them. */
#ifndef MOAT_TEST_OPERATOR_STATUS_FIXTURE_H
#define MOAT_TEST_OPERATOR_STATUS_FIXTURE_H

#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "libmoat/kobj.h"
#include "libmoat/names.h"
#include "libmoat/units.h"
#include "operator/status.h"

/* Every time below is written out by hand, so these tests do not trust moat_rfc3339_format to
 * check itself. */
#define NOW     INT64_C(1795498200)
#define NOW_STR "2026-11-24T05:30:00Z"
#define GEN     3
#define TIMEOUT 300
#define TTL     600

#define SCHEDULED_TRUE "{\"type\": \"PodScheduled\", \"status\": \"True\"}"
#define READY_TRUE     "{\"type\": \"Ready\", \"status\": \"True\"}"
#define READY_FALSE    "{\"type\": \"Ready\", \"status\": \"False\", \"reason\": \"NotReady\"}"

#define GVISOR_REPORT                                                                              \
    "{\"runtime\": \"gvisor\", \"handler\": \"runsc\", \"reason\": \"no usable hypervisor\","      \
    " \"verified\": true}"

/* ---- building objects ---- */

__attribute__((format(printf, 1, 0))) static json_t *jsonv(const char *fmt, va_list ap)
{
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        fail_msg("vasprintf");
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        print_error("test JSON does not parse (%s): %s\n", jerr.text, text);
    free(text);
    if (!v)
        fail();
    return v;
}

/* A new value from printf-formatted JSON text; a typo in a test fails the test. */
__attribute__((format(printf, 1, 2))) static json_t *jsonf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *v = jsonv(fmt, ap);
    va_end(ap);
    return v;
}

/* Sandbox "sb" in "ns" at generation GEN; status is stolen (NULL: none). */
static inline json_t *sandbox_new(json_t *status)
{
    json_t *sbx = jsonf("{\"apiVersion\": \"%s\", \"kind\": \"%s\","
                        " \"metadata\": {\"name\": \"sb\", \"namespace\": \"ns\","
                        " \"uid\": \"uid-1\", \"generation\": %d},"
                        " \"spec\": {\"image\": \"busybox\"}}",
                        MOAT_API_GV, MOAT_SANDBOX_KIND, GEN);
    if (status)
        json_object_set_new(sbx, "status", status);
    return sbx;
}

/* The Sandbox's Pod "sb" on node-a with the given status (formatted JSON text). */
__attribute__((format(printf, 1, 2))) static json_t *pod_new(const char *status_fmt, ...)
{
    va_list ap;
    va_start(ap, status_fmt);
    json_t *status = jsonv(status_fmt, ap);
    va_end(ap);
    json_t *pod = jsonf("{\"apiVersion\": \"v1\", \"kind\": \"Pod\","
                        " \"metadata\": {\"name\": \"sb\", \"namespace\": \"ns\","
                        " \"annotations\": {}},"
                        " \"spec\": {\"nodeName\": \"node-a\"}}");
    json_object_set_new(pod, "status", status);
    return pod;
}

static inline void annotate(json_t *pod, const char *key, const char *value)
{
    json_t *ann = json_object_get(json_object_get(pod, "metadata"), "annotations");
    assert_non_null(ann);
    json_object_set_new(ann, key, json_string(value));
}

/* A string of n bytes: `lead` ASCII bytes of 'x', then as many two-byte "é" as fit. Cutting
 * it at most byte positions splits a UTF-8 sequence. */
static inline char *utf8_text(size_t lead, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    size_t i = 0;
    for (; i < lead && i < n; i++)
        s[i] = 'x';
    for (; i + 2 <= n; i += 2)
        memcpy(s + i, "\xc3\xa9", 2);
    s[i] = '\0';
    return s;
}

/* ---- one reconcile's inputs and output ---- */

typedef struct {
    json_t *sandbox; /* owned */
    json_t *pod;     /* owned, or NULL */
    sandbox_view view;
    cluster_facts facts;
    sandbox_plan plan;
} scenario;

static inline int setup(void **state)
{
    scenario *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->sandbox = sandbox_new(NULL);
    s->view = (sandbox_view){.timeout_s = TIMEOUT, .ttl_s = TTL};
    s->facts = (cluster_facts){.now_s = NOW,
                               .hypervisor_available = true,
                               .gpu_vm_available = true,
                               .gpu_container_available = true};
    *state = s;
    return 0;
}

static inline int teardown(void **state)
{
    scenario *s = *state;
    sandbox_plan_clear(&s->plan);
    json_decref(s->sandbox);
    json_decref(s->pod);
    free(s);
    return 0;
}

static inline void set_pod(scenario *s, json_t *pod)
{
    json_decref(s->pod);
    s->pod = pod;
}

static inline void set_old_status(scenario *s, json_t *status)
{
    json_object_set_new(s->sandbox, "status", status);
}

/* What the controller does after a write: the plan's status becomes the Sandbox's. */
static inline void feed_back(scenario *s)
{
    set_old_status(s, json_deep_copy(s->plan.status));
}

static inline const json_t *plan_raw(scenario *s)
{
    sandbox_plan_clear(&s->plan);
    assert_null(s->plan.status);
    s->view.sandbox = s->sandbox;
    s->view.pod = s->pod;
    s->plan = (sandbox_plan){.action = 99, .requeue_after_s = -99}; /* must be overwritten */
    sandbox_plan_make(&s->plan, &s->view, &s->facts);
    assert_non_null(s->plan.status);
    assert_true(json_is_object(s->plan.status));
    assert_true(s->plan.action == SANDBOX_ACTION_NONE ||
                s->plan.action == SANDBOX_ACTION_CREATE_POD ||
                s->plan.action == SANDBOX_ACTION_DELETE_SANDBOX ||
                s->plan.action == SANDBOX_ACTION_STOP_POD);
    assert_true(s->plan.requeue_after_s >= 0);
    return s->plan.status;
}

/* ---- checking the output ---- */

/* fail_msg(), but the message is freed before cmocka jumps out of the test, so a failing
 * test leaks nothing (ASan and valgrind then show only real leaks). */
__attribute__((format(printf, 1, 2))) static void fail_with(const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    print_error("%s\n", msg ? msg : fmt);
    free(msg);
    fail();
}

static inline void print_json(const char *label, const json_t *v)
{
    char *text = json_dumps(v, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    print_error("%s: %s\n", label, text ? text : "(null)");
    free(text);
}

static inline bool matches(const char *pattern, const char *text)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    bool ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

static inline bool one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

static inline const json_t *find_condition(const json_t *status, const char *type)
{
    const json_t *found = NULL, *c;
    size_t i;
    json_array_foreach (json_object_get(status, "conditions"), i, c) {
        const char *t = kobj_str(c, "type");
        if (t && strcmp(t, type) == 0) {
            if (found)
                fail_msg("condition %s appears twice", type);
            found = c;
        }
    }
    return found;
}

#define schema_fail(st, ...)                                                                       \
    do {                                                                                           \
        print_json("status", st);                                                                  \
        fail_with(__VA_ARGS__);                                                                    \
    } while (0)

static inline void check_time_field(const json_t *st, const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v && (!json_is_string(v) || moat_rfc3339_parse(json_string_value(v)) < 0))
        schema_fail(st, "%s is not an RFC 3339 time", key);
}

static inline void check_string_field(const json_t *st, const json_t *obj, const char *key,
                                      size_t max_len)
{
    json_t *v = json_object_get(obj, key);
    if (v && (!json_is_string(v) || json_string_length(v) > max_len))
        schema_fail(st, "%s is not a string of at most %zu bytes", key, max_len);
}

/* The status as crds/moat.dev_sandboxes.yaml accepts it, with all four conditions at
 * observedGeneration gen: an API server would refuse anything else, and the Sandbox would
 * be stuck with its old status. */
static inline void check_schema(const json_t *st, int64_t gen)
{
    static const char *const phases[] = {"Pending", "Running", "Succeeded",
                                         "Failed",  "Expired", NULL};
    static const char *const runtimes[] = {"", "gvisor", "kata", NULL};
    static const char *const cond_status[] = {"True", "False", "Unknown", NULL};
    static const char *const types[] = {"Scheduled", "Ready", "Isolated", "Finished", NULL};

    const char *phase = kobj_str(st, "phase");
    if (!phase || !one_of(phase, phases))
        schema_fail(st, "phase is missing or not in the enum");
    int64_t og = -1;
    if (!kobj_int(st, "observedGeneration", &og) || og != gen)
        schema_fail(st, "observedGeneration is not %lld", (long long)gen);

    const json_t *iso = json_object_get(st, "isolation");
    if (iso) {
        if (!json_is_object(iso))
            schema_fail(st, "isolation is not an object");
        const char *rt = kobj_str(iso, "runtime");
        if (json_object_get(iso, "runtime") && (!rt || !one_of(rt, runtimes)))
            schema_fail(st, "isolation.runtime is not '', gvisor or kata");
        check_string_field(st, iso, "handler", 253);
        check_string_field(st, iso, "reason", 1024);
        json_t *v = json_object_get(iso, "verified");
        if (v && !json_is_boolean(v))
            schema_fail(st, "isolation.verified is not a boolean");
    }
    check_string_field(st, st, "nodeName", SIZE_MAX);
    check_string_field(st, st, "podName", SIZE_MAX);
    check_string_field(st, st, "message", 32768);
    check_time_field(st, st, "startTime");
    check_time_field(st, st, "completionTime");
    json_t *ec = json_object_get(st, "exitCode");
    if (ec && (!json_is_integer(ec) || json_integer_value(ec) < INT32_MIN ||
               json_integer_value(ec) > INT32_MAX))
        schema_fail(st, "exitCode is not an int32");

    const json_t *conds = json_object_get(st, "conditions"), *c;
    if (!json_is_array(conds) || json_array_size(conds) > 16)
        schema_fail(st, "conditions is not an array of at most 16");
    size_t i;
    json_array_foreach (conds, i, c) {
        const char *type = kobj_str(c, "type"), *cs = kobj_str(c, "status");
        const char *reason = kobj_str(c, "reason");
        if (!type || !one_of(type, types))
            schema_fail(st, "condition %zu has an unknown type", i);
        if (!cs || !one_of(cs, cond_status))
            schema_fail(st, "condition %s: status not True, False or Unknown", type);
        if (!reason || !matches("^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", reason))
            schema_fail(st, "condition %s: reason does not match the CRD's pattern", type);
        if (!kobj_str(c, "message"))
            schema_fail(st, "condition %s: no message", type);
        check_string_field(st, c, "message", 32768);
        if (!kobj_str(c, "lastTransitionTime"))
            schema_fail(st, "condition %s: no lastTransitionTime", type);
        check_time_field(st, c, "lastTransitionTime");
        int64_t cog = -1;
        if (!kobj_int(c, "observedGeneration", &cog) || cog < 0)
            schema_fail(st, "condition %s: observedGeneration missing or negative", type);
    }
    for (const char *const *t = types; *t; t++)
        if (!find_condition(st, *t))
            schema_fail(st, "no %s condition", *t);
}

/* One reconcile whose status must be one the CRD accepts. */
static inline const json_t *plan(scenario *s)
{
    const json_t *st = plan_raw(s);
    check_schema(st, GEN);
    return st;
}

static inline void expect_str(const json_t *obj, const char *path, const char *want)
{
    const char *got = kobj_str(obj, path);
    if (!got) {
        print_json("in", obj);
        fail_with("%s is missing; wanted \"%s\"", path, want);
    }
    assert_string_equal(got, want);
}

static inline void expect_contains(const json_t *obj, const char *path, const char *needle)
{
    const char *got = kobj_str(obj, path);
    if (!got) {
        fail_msg("%s is missing; wanted it to contain \"%s\"", path, needle);
        return; /* fail_msg does not return; the analyzer cannot tell */
    }
    if (!strstr(got, needle))
        fail_msg("%s is \"%s\", which does not contain \"%s\"", path, got, needle);
}

static inline void expect_int(const json_t *obj, const char *path, int64_t want)
{
    int64_t got = 0;
    if (!kobj_int(obj, path, &got)) {
        print_json("in", obj);
        fail_with("%s is missing or not an integer", path);
    }
    assert_int_equal(got, want);
}

static inline void expect_absent(const json_t *obj, const char *path)
{
    if (kobj_get(obj, path)) {
        print_json("in", obj);
        fail_with("%s should be absent", path);
    }
}

/* The condition of that type, with that status and (when not NULL) reason. */
static inline const json_t *expect_cond(const json_t *st, const char *type, const char *status,
                                        const char *reason)
{
    const json_t *c = find_condition(st, type);
    if (!c) {
        print_json("status", st);
        fail_with("no %s condition", type);
    }
    expect_str(c, "status", status);
    if (reason)
        expect_str(c, "reason", reason);
    return c;
}

static inline void expect_cond_time(const json_t *st, const char *type, const char *when)
{
    expect_str(find_condition(st, type), "lastTransitionTime", when);
}

static inline void expect_isolation_unknown(const json_t *st)
{
    expect_str(st, "isolation.runtime", "");
    assert_false(kobj_bool(st, "isolation.verified", true));
    expect_cond(st, "Isolated", "Unknown", "AwaitingNodeReport");
}

/* Reconciling again with nothing new must not write: a status that changes on every pass
 * is a hot loop against the API server. */
static inline void expect_stable(scenario *s)
{
    feed_back(s);
    sandbox_action action = s->plan.action;
    plan_raw(s);
    const json_t *old = kobj_get(s->sandbox, "status");
    if (sandbox_status_changed(old, s->plan.status)) {
        print_json("before", old);
        print_json("after", s->plan.status);
        fail_with("status changed on a second pass");
    }
    if (action == SANDBOX_ACTION_CREATE_POD)
        assert_int_equal(s->plan.action, SANDBOX_ACTION_CREATE_POD);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

#endif
