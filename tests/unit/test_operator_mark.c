#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "libmoat/kobj.h"
#include "libmoat/names.h"
#include "operator/mark.h"

#define KEY   "0123456789abcdef0123456789abcdef"
#define OWNER "uid-of-the-sandbox"

/* A sandbox Pod as the operator writes it, less what the mark does not cover. */
static const char pod_text[] =
    "{\"apiVersion\": \"v1\", \"kind\": \"Pod\","
    " \"metadata\": {\"name\": \"sb\", \"namespace\": \"team-a\","
    "  \"labels\": {\"moat.dev/sandbox\": \"sb\", \"moat.dev/egress\": \"none\", \"app\": \"x\"},"
    "  \"annotations\": {\"moat.dev/isolation\": \"VM\", \"moat.dev/network\": \"none\","
    "   \"moat.dev/gpu-count\": \"0\"},"
    "  \"ownerReferences\": [{\"apiVersion\": \"moat.dev/v1alpha1\", \"kind\": \"Sandbox\","
    "   \"name\": \"sb\", \"uid\": \"" OWNER "\", \"controller\": true}]},"
    " \"spec\": {\"runtimeClassName\": \"moat-vm\", \"automountServiceAccountToken\": false,"
    "  \"hostNetwork\": false, \"restartPolicy\": \"Never\","
    "  \"securityContext\": {\"seccompProfile\": {\"type\": \"RuntimeDefault\"}},"
    "  \"volumes\": [{\"name\": \"scratch\", \"emptyDir\": {}}],"
    "  \"containers\": [{\"name\": \"sandbox\", \"image\": \"python:3\","
    "   \"securityContext\": {\"privileged\": false, \"allowPrivilegeEscalation\": false}}]}}";

static sandbox_mark_key *key_new(const char *text)
{
    sandbox_mark_key *k = NULL;
    moat_error err = MOAT_ERROR_INIT;
    if (sandbox_mark_key_new(&k, text, strlen(text), &err) < 0)
        fail_msg("key: %s", err.message);
    return k;
}

static json_t *marked_pod(const sandbox_mark_key *k)
{
    json_t *pod = json_loads(pod_text, 0, NULL);
    moat_error err = MOAT_ERROR_INIT;
    assert_non_null(pod);
    assert_int_equal(sandbox_mark_set(pod, k, OWNER, &err), 0);
    return pod;
}

static void test_round_trip(void **state)
{
    sandbox_mark_key *k = key_new(KEY);
    json_t *pod = marked_pod(k);
    const char *mark = kobj_annotation(pod, MOAT_ANNOTATION_MARK);
    assert_non_null(mark);
    assert_int_equal(strlen(mark), 3 + 43);
    assert_memory_equal(mark, "v1.", 3);
    assert_true(sandbox_mark_verify(k, pod, OWNER));
    /* marking again gives the same mark: the mark is not in its own subject */
    char *again = sandbox_mark_compute(k, pod, OWNER);
    assert_string_equal(again, mark);
    free(again);
    json_decref(pod);
    sandbox_mark_key_free(k);
}

/* Changes the JSON at path ("a.b.c"; the last part is set) in a copy of a marked Pod. */
static json_t *changed(const json_t *pod, const char *path, json_t *value)
{
    json_t *copy = json_deep_copy(pod), *at = copy;
    char *p = strdup(path), *save = NULL, *part = strtok_r(p, ".", &save), *next;
    while ((next = strtok_r(NULL, ".", &save))) {
        json_t *child =
            json_is_array(at) ? json_array_get(at, (size_t)atoi(part)) : json_object_get(at, part);
        if (!child) {
            child = json_object();
            json_object_set_new(at, part, child);
        }
        at = child;
        part = next;
    }
    if (json_is_array(at))
        json_array_append_new(at, value);
    else if (value)
        json_object_set_new(at, part, value);
    else
        json_object_del(at, part);
    free(p);
    return copy;
}

/* Each field of the subject, changed alone, breaks the mark: a tenant's Pod cannot borrow
 * a mark from another Pod, and a marked Pod changed by anyone is no longer the operator's. */
static void test_every_subject_field_counts(void **state)
{
    static const struct {
        const char *path, *value; /* JSON; NULL deletes */
    } cases[] = {
        {"metadata.namespace", "\"team-b\""},
        {"metadata.name", "\"other\""},
        {"spec.runtimeClassName", "\"runc\""},
        {"spec.runtimeClassName", NULL},
        {"spec.hostNetwork", "true"},
        {"spec.hostPID", "true"},
        {"spec.hostIPC", "true"},
        {"spec.automountServiceAccountToken", "true"},
        {"spec.automountServiceAccountToken", NULL}, /* absent means a token is mounted */
        {"spec.containers.0.image", "\"evil:latest\""},
        {"spec.containers.0.name", "\"other\""},
        {"spec.containers.0.securityContext.privileged", "true"},
        {"spec.containers.x", "{\"name\": \"second\", \"image\": \"busybox\"}"},
        {"spec.initContainers", "[{\"name\": \"i\", \"image\": \"busybox\"}]"},
        {"spec.volumes", "[{\"name\": \"scratch\", \"hostPath\": {\"path\": \"/\"}}]"},
        {"spec.containers.0.securityContext.allowPrivilegeEscalation", "true"},
        {"spec.containers.0.securityContext.allowPrivilegeEscalation", NULL},
        {"spec.containers.0.securityContext.capabilities", "{\"add\": [\"NET_ADMIN\"]}"},
        {"spec.containers.0.ports", "[{\"containerPort\": 80, \"hostPort\": 80}]"},
        {"spec.serviceAccountName", "\"admin\""},
        {"spec.securityContext.seccompProfile.type", "\"Unconfined\""},
        {"spec.hostUsers", "false"},
        {"spec.ephemeralContainers", "[{\"name\": \"debug\", \"image\": \"busybox\"}]"},
        {"metadata.labels.moat.dev/egress", "\"internet\""},
        {"metadata.labels.moat.dev/sandbox", NULL},
        {"metadata.annotations.moat.dev/network", "\"internet\""},
        {"metadata.annotations.moat.dev/isolation", "\"GVisor\""},
        {"metadata.annotations.moat.dev/decision-runtime", "\"kata\""},
        {"metadata.annotations.moat.dev/mark",
         "\"v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\""},
    };
    sandbox_mark_key *k = key_new(KEY);
    json_t *pod = marked_pod(k);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* label and annotation keys hold dots: change them by hand */
        json_t *copy;
        const char *meta = strncmp(cases[i].path, "metadata.labels.", 16) == 0 ? "labels"
                           : strncmp(cases[i].path, "metadata.annotations.", 21) == 0
                               ? "annotations"
                               : NULL;
        json_t *v = cases[i].value ? json_loads(cases[i].value, JSON_DECODE_ANY, NULL) : NULL;
        if (cases[i].value && !v)
            fail_msg("case %zu: bad JSON", i);
        if (meta) {
            copy = json_deep_copy(pod);
            json_t *m = json_object_get(json_object_get(copy, "metadata"), meta);
            const char *key = strchr(cases[i].path + 9, '.') + 1;
            if (v)
                json_object_set_new(m, key, v);
            else
                json_object_del(m, key);
        } else if (strcmp(cases[i].path, "spec.containers.x") == 0) {
            copy = json_deep_copy(pod);
            json_array_append_new(kobj_get(copy, "spec.containers"), v);
        } else {
            copy = changed(pod, cases[i].path, v);
        }
        if (sandbox_mark_verify(k, copy, OWNER))
            fail_msg("changing %s left the mark valid", cases[i].path);
        json_decref(copy);
    }
    /* another owner, another key */
    assert_false(sandbox_mark_verify(k, pod, "uid-of-another-sandbox"));
    sandbox_mark_key *other = key_new(KEY "x");
    assert_false(sandbox_mark_verify(other, pod, OWNER));
    sandbox_mark_key_free(other);
    json_decref(pod);
    sandbox_mark_key_free(k);
}

/* What the API server adds or the node writes later leaves the mark valid. */
static void test_defaults_and_reports_do_not_count(void **state)
{
    sandbox_mark_key *k = key_new(KEY);
    json_t *pod = marked_pod(k);
    json_t *copy = json_deep_copy(pod);
    json_t *spec = json_object_get(copy, "spec"), *meta = json_object_get(copy, "metadata");
    json_object_set_new(spec, "dnsPolicy", json_string("ClusterFirst"));
    json_object_set_new(spec, "serviceAccountName", json_string("default"));
    json_object_set_new(spec, "nodeName", json_string("node-a"));
    json_object_del(spec, "hostNetwork"); /* false is omitted when read back */
    json_object_set_new(meta, "uid", json_string("pod-uid"));
    json_object_set_new(meta, "resourceVersion", json_string("42"));
    json_object_set_new(json_object_get(meta, "labels"), "team", json_string("a"));
    json_object_set_new(json_object_get(meta, "annotations"), MOAT_ANNOTATION_ISOLATION_REPORT,
                        json_string("{\"runtime\": \"kata\"}"));
    json_object_set_new(json_object_get(meta, "annotations"), MOAT_ANNOTATION_LAST_ACTIVITY,
                        json_string("2026-12-06T04:00:00Z"));
    /* a volume source's fields are defaulted: only its kind counts */
    json_object_set_new(json_array_get(json_object_get(spec, "volumes"), 0), "emptyDir",
                        json_pack("{s:s}", "medium", ""));
    json_object_set_new(copy, "status", json_pack("{s:s}", "phase", "Running"));
    assert_true(sandbox_mark_verify(k, copy, OWNER));
    /* the informer's pruned copy verifies as the whole Pod does */
    sandbox_mark_prune_spec(copy);
    assert_null(kobj_get(copy, "spec.restartPolicy"));
    assert_true(sandbox_mark_verify(k, copy, OWNER));
    json_t *bad = changed(pod, "spec.containers.0.image", json_string("evil"));
    sandbox_mark_prune_spec(bad);
    assert_false(sandbox_mark_verify(k, bad, OWNER));
    json_decref(bad);
    json_decref(copy);
    json_decref(pod);
    sandbox_mark_key_free(k);
}

static void test_missing_or_malformed_mark(void **state)
{
    sandbox_mark_key *k = key_new(KEY);
    json_t *pod = json_loads(pod_text, 0, NULL);
    assert_false(sandbox_mark_verify(k, pod, OWNER));
    json_t *ann = kobj_get(pod, "metadata.annotations");
    json_object_set_new(ann, MOAT_ANNOTATION_MARK, json_string("v1."));
    assert_false(sandbox_mark_verify(k, pod, OWNER));
    json_object_set_new(ann, MOAT_ANNOTATION_MARK, json_integer(1));
    assert_false(sandbox_mark_verify(k, pod, OWNER));
    json_decref(pod);
    sandbox_mark_key_free(k);
}

static void test_key_file(void **state)
{
    char path[] = "/tmp/moat-mark-key-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    moat_error err = MOAT_ERROR_INIT;
    sandbox_mark_key *k = NULL;

    /* too short: refused naming the file */
    assert_int_equal(write(fd, "short\n", 6), 6);
    assert_int_equal(sandbox_mark_key_load(&k, path, &err), -1);
    assert_int_equal(err.code, MOAT_E_INVALID);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "at least 32"));
    moat_error_clear(&err);

    /* a key with a trailing newline is the key without it */
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(pwrite(fd, KEY "\n", sizeof(KEY), 0), (ssize_t)sizeof(KEY));
    assert_int_equal(sandbox_mark_key_load(&k, path, &err), 0);
    sandbox_mark_key *direct = key_new(KEY);
    json_t *pod = marked_pod(direct);
    assert_true(sandbox_mark_verify(k, pod, OWNER));
    json_decref(pod);
    sandbox_mark_key_free(direct);
    sandbox_mark_key_free(k);
    close(fd);
    unlink(path);

    assert_int_equal(sandbox_mark_key_load(&k, path, &err), -1);
    assert_int_equal(err.code, MOAT_E_IO);
    assert_non_null(strstr(err.message, "mark key"));
    moat_error_clear(&err);
}

/* ---- whose Pod is it (sandbox_mark_claim) and which one is ours (sandbox_mark_pick) ---- */

/* The sandbox Pod of pod_text named name, its owner references replaced by refs (JSON; NULL
 * keeps pod_text's controller reference to OWNER), marked for mark_owner (NULL: unmarked). */
static json_t *pod_named(const sandbox_mark_key *k, const char *name, const char *refs,
                         const char *mark_owner)
{
    json_t *pod = json_loads(pod_text, 0, NULL);
    json_t *meta = json_object_get(pod, "metadata");
    moat_error err = MOAT_ERROR_INIT;
    json_object_set_new(meta, "name", json_string(name));
    if (refs) {
        json_t *r = json_loads(refs, JSON_DECODE_ANY, NULL);
        if (!r)
            fail_msg("bad test JSON: %s", refs);
        json_object_set_new(meta, "ownerReferences", r);
    }
    if (mark_owner)
        assert_int_equal(sandbox_mark_set(pod, k, mark_owner, &err), 0);
    return pod;
}

#define SANDBOX_REF(uid, ctl)                                                                      \
    "[{\"apiVersion\": \"moat.dev/v1alpha1\", \"kind\": \"Sandbox\", \"name\": \"sb\","            \
    " \"uid\": \"" uid "\", \"controller\": " ctl "}]"

static void test_claim(void **state)
{
    sandbox_mark_key *k = key_new(KEY);
    char why[512];
    static const struct {
        const char *refs, *mark_owner, *deleting;
        sandbox_pod_claim want;
        const char *why; /* in the sentence of a FOREIGN answer */
    } cases[] = {
        /* made by the operator for this Sandbox */
        {NULL, OWNER, NULL, SANDBOX_POD_OURS, NULL},
        {NULL, OWNER, "2026-12-06T04:00:00Z", SANDBOX_POD_OURS, NULL},
        /* the uid of this Sandbox in a controller reference, without the mark: forged */
        {NULL, NULL, NULL, SANDBOX_POD_FOREIGN, "does not carry moat-operator's mark"},
        /* ... or with a mark for another Sandbox: a copied mark is worth nothing */
        {NULL, "uid-of-another-sandbox", NULL, SANDBOX_POD_FOREIGN, "moat-operator's mark"},
        /* the same name and no owner reference: a tenant's Pod */
        {"[]", NULL, NULL, SANDBOX_POD_FOREIGN, "no controller reference to it"},
        /* an owner reference to this Sandbox that is not the controller, even marked */
        {SANDBOX_REF(OWNER, "false"), OWNER, NULL, SANDBOX_POD_FOREIGN,
         "no controller reference to it"},
        {"[{\"apiVersion\": \"apps/v1\", \"kind\": \"ReplicaSet\", \"name\": \"rs\","
         " \"uid\": \"" OWNER "\", \"controller\": true}]",
         OWNER, NULL, SANDBOX_POD_FOREIGN, "its controller is another object"},
        /* an earlier Sandbox of the same name: its Pod is on its way out */
        {SANDBOX_REF("uid-of-an-earlier-sandbox", "true"), NULL, NULL, SANDBOX_POD_WAIT, NULL},
        /* a stranger's Pod being deleted is waited for, not reported */
        {"[]", NULL, "2026-12-06T04:00:00Z", SANDBOX_POD_WAIT, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *pod = pod_named(k, "sb", cases[i].refs, cases[i].mark_owner);
        if (cases[i].deleting)
            json_object_set_new(json_object_get(pod, "metadata"), "deletionTimestamp",
                                json_string(cases[i].deleting));
        strcpy(why, "untouched");
        sandbox_pod_claim got = sandbox_mark_claim(k, pod, OWNER, why, sizeof(why));
        if (got != cases[i].want)
            fail_msg("case %zu: claim %d, want %d", i, got, cases[i].want);
        if (cases[i].why) {
            if (!strstr(why, cases[i].why) || !strstr(why, "pod team-a/sb "))
                fail_msg("case %zu: why is \"%s\"", i, why);
        } else {
            assert_string_equal(why, "untouched");
        }
        json_decref(pod);
    }
    sandbox_mark_key_free(k);
}

static void assert_picks(const json_t *pods, const sandbox_mark_key *k, const char *want)
{
    const json_t *got = sandbox_mark_pick(pods, k, OWNER);
    if (!want && got)
        fail_msg("picked %s, want none", kobj_name(got));
    if (want && (!got || strcmp(kobj_name(got), want) != 0))
        fail_msg("picked %s, want %s", got ? kobj_name(got) : "none", want);
}

/* Only a Pod the operator made for this Sandbox is picked, whatever its name, and among
 * several the same one whatever the order. */
static void test_pick(void **state)
{
    sandbox_mark_key *k = key_new(KEY);
    assert_picks(NULL, k, NULL);
    json_t *pods = json_array();
    assert_picks(pods, k, NULL);
    /* what a tenant can put in the index of OWNER: the uid without the mark, a marked Pod
     * whose reference is not the controller, a Pod of the Sandbox's name with none */
    json_array_append_new(pods, pod_named(k, "sb", NULL, NULL));
    json_array_append_new(pods, pod_named(k, "forged", NULL, "uid-of-another-sandbox"));
    json_array_append_new(pods, pod_named(k, "loose", SANDBOX_REF(OWNER, "false"), OWNER));
    assert_picks(pods, k, NULL);
    /* the operator's Pod under another name than the Sandbox's (a warm pool's, a resume's) */
    json_array_append_new(pods, pod_named(k, "sb-warm-7", NULL, OWNER));
    assert_picks(pods, k, "sb-warm-7");
    /* several of ours: the smallest name, in either order */
    json_t *two = json_array();
    json_array_append_new(two, pod_named(k, "sb-b", NULL, OWNER));
    json_array_append_new(two, pod_named(k, "sb-a", NULL, OWNER));
    assert_picks(two, k, "sb-a");
    json_array_remove(two, 0);
    json_array_append_new(two, pod_named(k, "sb-b", NULL, OWNER));
    assert_picks(two, k, "sb-a");
    /* ... but one being deleted comes after one that is not */
    json_object_set_new(json_object_get(json_array_get(two, 0), "metadata"), "deletionTimestamp",
                        json_string("2026-12-06T04:00:00Z"));
    assert_picks(two, k, "sb-b");
    /* another Sandbox's view of the same Pods: none of them */
    assert_null(sandbox_mark_pick(two, k, "uid-of-another-sandbox"));
    json_decref(two);
    json_decref(pods);
    sandbox_mark_key_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_every_subject_field_counts),
        cmocka_unit_test(test_defaults_and_reports_do_not_count),
        cmocka_unit_test(test_missing_or_malformed_mark),
        cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_claim),
        cmocka_unit_test(test_pick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
